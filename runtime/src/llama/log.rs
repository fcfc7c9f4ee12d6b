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
}

static STATE: Mutex<State> = Mutex::new(State {
    verbose: false,
    partial: String::new(),
    partial_level: 0,
    errors: VecDeque::new(),
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
