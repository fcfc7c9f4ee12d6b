//! Turns flags into run settings: range checks with the value and the limit in the message (exit
//! code 2), and the tuned defaults from runtime-info.json for whatever was not given, each with
//! the reason it has the value it has.

use crate::error::{CliError, Result};
use crate::gguf::Header;
use crate::runtime_info::RuntimeInfo;
use std::sync::OnceLock;

pub const MAX_THREADS: i64 = 1024;
/// More generated tokens than any context we can hold: surely a typo.
pub const MAX_TOKENS: i64 = 1 << 20;
pub const MAX_TEMP: f32 = 100.0;
pub const MAX_REPEAT_PENALTY: f32 = 100.0;
pub const MAX_GPU_LAYERS: i64 = 100_000;
pub const MAX_REPS: i64 = 1000;

/// The build's runtime-info.json, embedded at compile time.
pub fn info() -> &'static RuntimeInfo {
    static INFO: OnceLock<RuntimeInfo> = OnceLock::new();
    INFO.get_or_init(|| {
        RuntimeInfo::parse(include_str!(concat!(env!("OUT_DIR"), "/runtime-info.json")))
            .expect("build.rs already validated runtime-info.json")
    })
}

/// A value and why it is that value.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Chosen<T> {
    pub value: T,
    pub why: String,
}

fn chosen<T>(value: T, why: impl Into<String>) -> Chosen<T> {
    Chosen {
        value,
        why: why.into(),
    }
}

pub fn threads(flag: Option<i64>) -> Result<Chosen<u32>> {
    match flag {
        Some(t) if !(1..=MAX_THREADS).contains(&t) => Err(CliError::bad_input(format!(
            "--threads {t} is out of range: give 1 to {MAX_THREADS} threads"
        ))),
        Some(t) => Ok(chosen(t as u32, "--threads")),
        None => {
            let d = &info().defaults;
            if d.threads > 0 {
                Ok(chosen(
                    d.threads,
                    format!("tuned default: {}", d.threads_why),
                ))
            } else {
                let n = std::thread::available_parallelism().map_or(1, |n| n.get()) as u32;
                Ok(chosen(n, "available parallelism (no tuned default)"))
            }
        }
    }
}

/// Total RAM of the machine this runs on, read now (never baked in at build time): /proc/meminfo
/// on Linux, `hw.memsize` on macOS; a figure in runtime-info.json (written by older setups) only
/// where neither exists.
pub fn total_ram() -> Option<u64> {
    let from_proc = std::fs::read_to_string("/proc/meminfo").ok().and_then(|t| {
        let line = t.lines().find(|l| l.starts_with("MemTotal:"))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib * 1024)
    });
    from_proc
        .or_else(macos_memsize)
        .or(info().defaults.ram_bytes)
}

#[cfg(target_os = "macos")]
fn macos_memsize() -> Option<u64> {
    let mut v: u64 = 0;
    let mut len = std::mem::size_of::<u64>();
    // SAFETY: a NUL-terminated name and an out-pointer to a u64 with its size, as sysctl(3) says.
    let rc = unsafe {
        libc::sysctlbyname(
            c"hw.memsize".as_ptr(),
            (&mut v as *mut u64).cast(),
            &mut len,
            std::ptr::null_mut(),
            0,
        )
    };
    (rc == 0 && v > 0).then_some(v)
}

#[cfg(not(target_os = "macos"))]
fn macos_memsize() -> Option<u64> {
    None
}

/// KV cache bytes for `n_ctx` tokens: K and V, every layer, f16 (2 bytes).
pub fn kv_bytes(h: &Header, n_ctx: u64) -> Option<u64> {
    Some(2 * h.block_count()? * n_ctx * h.n_embd_kv()? * 2)
}

fn gib(b: u64) -> String {
    format!("{:.2} GiB", b as f64 / (1u64 << 30) as f64)
}

/// Context size: the flag (checked against the trained context and RAM) or the tuned default
/// capped at both.
pub fn ctx_size(flag: Option<i64>, h: &Header) -> Result<Chosen<u32>> {
    let trained = h.context_length();
    let ram = total_ram();
    let fits = |n: u64| match (ram, kv_bytes(h, n)) {
        (Some(ram), Some(kv)) => h.file_size.saturating_add(kv) <= ram,
        _ => true,
    };
    if let Some(c) = flag {
        if c < 1 {
            return Err(CliError::bad_input(format!(
                "--ctx-size {c} is out of range: the context must hold at least 1 token"
            )));
        }
        let c = c as u64;
        if let Some(t) = trained {
            if c > t {
                return Err(CliError::bad_input(format!(
                    "--ctx-size {c} is larger than the model's trained context ({t} tokens, `{}.context_length`)",
                    h.architecture().unwrap_or("?")
                ))
                .hint(format!("use --ctx-size {t} or less")));
            }
        }
        if c > u64::from(u32::MAX) {
            return Err(CliError::bad_input(format!(
                "--ctx-size {c} is larger than llama.cpp's limit of {} tokens",
                u32::MAX
            )));
        }
        if !fits(c) {
            let kv = kv_bytes(h, c).unwrap_or(0);
            return Err(CliError::bad_input(format!(
                "--ctx-size {c} needs {} of KV cache plus the {} model file, more than this machine's {} of RAM",
                gib(kv),
                gib(h.file_size),
                gib(ram.unwrap_or(0))
            ))
            .hint("use a smaller --ctx-size"));
        }
        return Ok(chosen(c as u32, "--ctx-size"));
    }
    let d = &info().defaults;
    let mut value = u64::from(d.ctx_size);
    let mut why = format!("tuned default: {}", d.ctx_why);
    if value == 0 {
        value = trained.unwrap_or(4096);
        why = "the model's trained context (tuned default is 0)".into();
    }
    if let Some(t) = trained.filter(|&t| t > 0 && t < value) {
        value = t;
        why = format!(
            "the model's trained context ({t}), below the tuned default {}",
            d.ctx_size
        );
    }
    value = value.min(u64::from(u32::MAX));
    if !fits(value) {
        let (mut lo, mut hi) = (0u64, value);
        while lo < hi {
            let mid = (lo + hi).div_ceil(2);
            if fits(mid) {
                lo = mid
            } else {
                hi = mid - 1
            }
        }
        if lo == 0 {
            return Err(CliError::bad_input(format!(
                "the model file ({}) does not leave room for a KV cache in this machine's {} of RAM",
                gib(h.file_size),
                gib(ram.unwrap_or(0))
            )));
        }
        why = format!("largest context whose KV cache fits in RAM with the model (wanted {value})");
        value = lo;
    }
    Ok(chosen(value as u32, why))
}

/// The tuned context size capped at a model's trained context, for a model loaded without our
/// GGUF header read (`Model::load`); `load::open` uses [`ctx_size`], which also caps at RAM.
pub fn ctx_size_for_trained(n_ctx_train: i32) -> Chosen<u32> {
    let d = &info().defaults;
    let trained = u32::try_from(n_ctx_train).ok().filter(|&t| t > 0);
    match (d.ctx_size, trained) {
        (0, Some(t)) => chosen(t, "the model's trained context (tuned default is 0)"),
        (0, None) => chosen(4096, "4096 (no tuned default, no trained context)"),
        (c, Some(t)) if t < c => chosen(
            t,
            format!("the model's trained context ({t}), below the tuned default {c}"),
        ),
        (c, _) => chosen(c, format!("tuned default: {}", d.ctx_why)),
    }
}

fn has_gpu_backend() -> bool {
    info().compiled_for.backends.iter().any(|b| b != "cpu")
}

/// GPU layers: `all` (-1 for llama.cpp), a number, or `auto` (as many layers as fit in VRAM).
pub fn gpu_layers(flag: Option<&str>, h: &Header) -> Result<Chosen<i32>> {
    let d = &info().defaults;
    let (text, from) = match flag {
        Some(f) => (f.trim().to_string(), "--gpu-layers".to_string()),
        None => (
            d.gpu_layers.clone(),
            format!("tuned default: {}", d.gpu_layers_why),
        ),
    };
    let no_gpu = !has_gpu_backend();
    let note = |why: String, n: i32| {
        if no_gpu && n != 0 {
            format!("{why} (no GPU backend in this build: every layer runs on the CPU)")
        } else {
            why
        }
    };
    match text.as_str() {
        "all" => Ok(chosen(-1, note(format!("{from}: all layers"), -1))),
        "auto" => {
            if no_gpu {
                return Ok(chosen(0, format!("{from}: auto, and this build has no GPU backend")));
            }
            // Free memory as the devices report it now (ggml_backend_dev_memory), not a figure
            // recorded at setup: other programs' use and driver changes count.
            crate::llama::init(false);
            let gpus: Vec<crate::llama::Device> = crate::llama::devices()
                .into_iter()
                .filter(|d| d.kind == "gpu" || d.kind == "igpu")
                .collect();
            let free: u64 = gpus.iter().map(|d| d.memory_free).sum();
            let names: Vec<String> = gpus
                .iter()
                .map(|d| format!("{} {} free", d.name, gib(d.memory_free)))
                .collect();
            if gpus.is_empty() || free == 0 {
                return Ok(chosen(
                    0,
                    format!("{from}: auto, and no GPU device reports free memory (every layer on the CPU)"),
                ));
            }
            let blocks = h.block_count().unwrap_or(1).max(1);
            let (n, per_layer) = auto_layers(h.file_size, blocks, free);
            Ok(chosen(
                n as i32,
                format!(
                    "{from}: auto, {n} of {} layers of {} each fit in 90% of the free device memory ({}, read from the device)",
                    blocks + 1,
                    gib(per_layer),
                    names.join(", ")
                ),
            ))
        }
        s => match s.parse::<i64>() {
            Ok(n) if (0..=MAX_GPU_LAYERS).contains(&n) => Ok(chosen(n as i32, note(from, n as i32))),
            Ok(n) => Err(CliError::bad_input(format!(
                "--gpu-layers {n} is out of range: give 0 to {MAX_GPU_LAYERS} layers, `all` or `auto`"
            ))),
            Err(_) => Err(CliError::bad_input(format!(
                "--gpu-layers `{s}` is not a number of layers, `all` or `auto`"
            ))),
        },
    }
}

/// Layers that fit in `free` bytes: the model's file size spread over its blocks plus the
/// output layer, 10% of the free memory kept for the KV cache and compute buffers. Returns
/// (layers, bytes per layer).
pub fn auto_layers(file_size: u64, blocks: u64, free: u64) -> (u64, u64) {
    let per_layer = (file_size / (blocks + 1)).max(1);
    let usable = free / 10 * 9;
    ((usable / per_layer).min(blocks + 1), per_layer)
}

/// `lo <= v <= hi` for an integer flag, else bad input naming the flag, value and range.
pub fn int_in(flag: &str, v: i64, lo: i64, hi: i64) -> Result<i64> {
    if (lo..=hi).contains(&v) {
        Ok(v)
    } else {
        Err(CliError::bad_input(format!(
            "{flag} {v} is out of range: give {lo} to {hi}"
        )))
    }
}

/// Same for a float flag; NaN and infinities are out of range too.
pub fn float_in(flag: &str, v: f32, lo: f32, hi: f32, lo_open: bool) -> Result<f32> {
    let ok = v.is_finite() && v <= hi && if lo_open { v > lo } else { v >= lo };
    if ok {
        Ok(v)
    } else {
        let low = if lo_open { "more than" } else { "from" };
        Err(CliError::bad_input(format!(
            "{flag} {v} is out of range: give {low} {lo} to {hi}"
        )))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn auto_layers_fit_ninety_percent_of_free_memory() {
        // 10 blocks + output, 110 MiB file: 10 MiB per layer.
        let mib = 1u64 << 20;
        assert_eq!(
            super::auto_layers(110 * mib, 10, 1000 * mib),
            (11, 10 * mib)
        );
        assert_eq!(super::auto_layers(110 * mib, 10, 50 * mib).0, 4);
        assert_eq!(super::auto_layers(110 * mib, 10, 0).0, 0);
    }
}
