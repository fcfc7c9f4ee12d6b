//! Captures llama.cpp's (and ggml's) log through `llama_log_set`: hidden unless `--verbose`, but
//! its last warning and error lines are kept so our error messages can show them.

use crate::ffi;
use std::collections::VecDeque;
use std::ffi::{c_char, c_void, CStr};
use std::sync::Mutex;

const KEEP: usize = 8;

struct State {
    verbose: bool,
    /// A line being assembled from continuation pieces (GGML_LOG_LEVEL_CONT).
    partial: String,
    partial_level: ffi::ggml_log_level,
    errors: VecDeque<String>,
    load: LoadReport,
}

/// Where a model load put the layers, from llama.cpp's own log lines (`load_tensors: offloaded
/// 9/9 layers to GPU`, `load_tensors:      Vulkan0 model buffer size =     1.23 MiB`).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct LoadReport {
    /// Layers llama.cpp put on a GPU device (None: it logged no offload line, a CPU-only build).
    pub offloaded_layers: Option<u32>,
    pub total_layers: Option<u32>,
    /// The model's weight buffers: (buffer name, MiB), e.g. ("Vulkan0", 1.2), ("CPU_Mapped", 0.1).
    pub buffers: Vec<ModelBuffer>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ModelBuffer {
    pub name: String,
    pub mib: f64,
}

/// Reads one complete log line into `r` when it is one of the two load lines.
pub fn parse_load_line(line: &str, r: &mut LoadReport) {
    if let Some(i) = line.find("offloaded ") {
        let rest = &line[i + "offloaded ".len()..];
        if let Some((nm, _)) = rest.split_once(" layers to GPU") {
            if let Some((n, m)) = nm.split_once('/') {
                r.offloaded_layers = n.trim().parse().ok();
                r.total_layers = m.trim().parse().ok();
            }
        }
    } else if let Some((before, after)) = line.split_once(" model buffer size =") {
        let name = before.rsplit(':').next().unwrap_or("").trim();
        let mib = after
            .trim()
            .trim_end_matches("MiB")
            .trim()
            .parse()
            .unwrap_or(0.0);
        if !name.is_empty() {
            r.buffers.push(ModelBuffer {
                name: name.to_string(),
                mib,
            });
        }
    }
}

/// What the last model load logged about its layers, and forgets it.
pub fn take_load_report() -> LoadReport {
    std::mem::take(&mut lock().load)
}

pub(super) fn set_verbose(verbose: bool) {
    lock().verbose = verbose;
}

static STATE: Mutex<State> = Mutex::new(State {
    verbose: false,
    partial: String::new(),
    partial_level: 0,
    errors: VecDeque::new(),
    load: LoadReport {
        offloaded_layers: None,
        total_layers: None,
        buffers: Vec::new(),
    },
});

pub(super) fn install(verbose: bool) {
    lock().verbose = verbose;
    // SAFETY: the callback is a plain function valid for the whole process; no user data.
    unsafe { ffi::llama_log_set(Some(callback), std::ptr::null_mut()) };
}

fn lock() -> std::sync::MutexGuard<'static, State> {
    // A panic elsewhere must not silence the log: take the data even if poisoned.
    STATE.lock().unwrap_or_else(|e| e.into_inner())
}

/// The last warning/error lines llama.cpp logged (oldest first), and forgets them.
pub fn recent_errors() -> Vec<String> {
    lock().errors.drain(..).collect()
}

extern "C" fn callback(level: ffi::ggml_log_level, text: *const c_char, _user: *mut c_void) {
    if text.is_null() {
        return;
    }
    // SAFETY: llama.cpp passes a NUL-terminated string valid for the duration of the call.
    let text = unsafe { CStr::from_ptr(text) }.to_string_lossy();
    // Never unwind into C: catch anything (there should be nothing) and drop the message.
    let _ = std::panic::catch_unwind(|| {
        let mut s = lock();
        if s.verbose {
            eprint!("{text}");
        }
        if level != ffi::ggml_log_level_GGML_LOG_LEVEL_CONT {
            s.partial_level = level;
        }
        s.partial.push_str(&text);
        while let Some(i) = s.partial.find('\n') {
            let line: String = s.partial.drain(..=i).collect();
            let line = line.trim_end().to_string();
            let lvl = s.partial_level;
            parse_load_line(&line, &mut s.load);
            if !line.is_empty()
                && (lvl == ffi::ggml_log_level_GGML_LOG_LEVEL_ERROR
                    || lvl == ffi::ggml_log_level_GGML_LOG_LEVEL_WARN)
            {
                if s.errors.len() == KEEP {
                    s.errors.pop_front();
                }
                s.errors.push_back(line);
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offload_and_buffer_lines_are_read() {
        let mut r = LoadReport::default();
        // llama-model.cpp's formats: "%s: offloaded %d/%d layers to GPU" and
        // "%s: %12s model buffer size = %8.2f MiB".
        parse_load_line("load_tensors: offloaded 9/9 layers to GPU", &mut r);
        parse_load_line(
            "load_tensors:      Vulkan0 model buffer size =     1.25 MiB",
            &mut r,
        );
        parse_load_line(
            "load_tensors:   CPU_Mapped model buffer size =     0.50 MiB",
            &mut r,
        );
        parse_load_line("load_tensors: offloading output layer to GPU", &mut r);
        assert_eq!((r.offloaded_layers, r.total_layers), (Some(9), Some(9)));
        assert_eq!(r.buffers.len(), 2);
        assert_eq!(r.buffers[0].name, "Vulkan0");
        assert!((r.buffers[0].mib - 1.25).abs() < 1e-9);
    }
}
