//! NVIDIA facts: GPUs from `nvidia-smi`'s CSV query and the CUDA toolkit release from `nvcc`.

use crate::machine::Gpu;

/// The query whose output [`parse_gpu_csv`] reads: one line per GPU.
pub const NVIDIA_SMI_ARGS: &[&str] = &[
    "--query-gpu=index,name,compute_cap,memory.total,driver_version",
    "--format=csv,noheader,nounits",
];

#[derive(Debug, PartialEq)]
pub struct CsvError {
    pub line: usize,
    pub text: String,
    pub reason: String,
}

/// Parses `index, name, compute_cap, memory.total [MiB], driver_version` lines. The name is taken
/// as everything between the first and the last three fields, so a comma inside a name is safe.
pub fn parse_gpu_csv(text: &str) -> Result<Vec<Gpu>, CsvError> {
    let mut gpus = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let err = |reason: &str| CsvError {
            line: i + 1,
            text: line.to_string(),
            reason: reason.to_string(),
        };
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        if fields.len() < 5 {
            return Err(err("expected 5 comma-separated fields"));
        }
        let n = fields.len();
        let index = fields[0]
            .parse()
            .map_err(|_| err("first field is not a GPU index"))?;
        let cc = fields[n - 3];
        if !cc.contains('.') || cc.split('.').any(|p| p.parse::<u32>().is_err()) {
            return Err(err("compute capability is not MAJOR.MINOR"));
        }
        let vram_mib = fields[n - 2]
            .parse()
            .map_err(|_| err("memory.total is not a number of MiB"))?;
        gpus.push(Gpu {
            index,
            name: fields[1..n - 3].join(","),
            compute_capability: cc.to_string(),
            vram_mib,
            driver_version: fields[n - 1].to_string(),
        });
    }
    Ok(gpus)
}

/// `Cuda compilation tools, release 12.4, V12.4.131` → `12.4`.
pub fn parse_nvcc_version(text: &str) -> Option<String> {
    let rest = text.split("release ").nth(1)?;
    let v: String = rest
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    (!v.is_empty()).then_some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_with_comma_survives() {
        let gpus = parse_gpu_csv("0, Weird, GPU, 8.6, 12288, 535.104.05\n").unwrap();
        assert_eq!(gpus[0].name, "Weird,GPU");
        assert_eq!(gpus[0].compute_capability, "8.6");
    }

    #[test]
    fn unsupported_field_is_an_error_with_line() {
        // Drivers older than the compute_cap query print "[N/A]"-style junk.
        let e = parse_gpu_csv("0, Tesla K80, [N/A], 11441, 470.82.01").unwrap_err();
        assert_eq!(e.line, 1);
    }
}
