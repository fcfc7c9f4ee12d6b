//! A cancellation flag shared between threads: the generating side checks it between decode
//! steps (and a [`Context`](super::Context) can also stop inside `decode`), any other thread
//! sets it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Cloning gives another handle to the same flag.
#[derive(Debug, Clone, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    pub fn new() -> CancelToken {
        CancelToken::default()
    }

    /// Asks every holder of the token to stop; cannot be undone.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// The flag, for llama.cpp's abort callback (valid while a clone of the token lives).
    pub(super) fn flag_ptr(&self) -> *const AtomicBool {
        Arc::as_ptr(&self.0)
    }
}

/// Set by the SIGINT handler `CancelToken::cancel_on_interrupt` installs.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

#[cfg(unix)]
extern "C" fn on_interrupt(_signal: libc::c_int) {
    // Only an atomic store: async-signal-safe.
    INTERRUPTED.store(true, Ordering::Relaxed);
}

impl CancelToken {
    /// Cancels this token when the process gets Ctrl-C (SIGINT), instead of the process being
    /// killed: installs a SIGINT handler (once per process, replacing the default) and a small
    /// thread that watches for it until the token is cancelled either way. Unix only; elsewhere
    /// Ctrl-C keeps its default effect.
    pub fn cancel_on_interrupt(&self) {
        #[cfg(unix)]
        {
            static INSTALL: std::sync::Once = std::sync::Once::new();
            INSTALL.call_once(|| {
                // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
                unsafe {
                    libc::signal(
                        libc::SIGINT,
                        on_interrupt as extern "C" fn(libc::c_int) as libc::sighandler_t,
                    );
                }
            });
            let token = self.clone();
            std::thread::spawn(move || {
                while !token.is_cancelled() {
                    if INTERRUPTED.load(Ordering::Relaxed) {
                        token.cancel();
                        break;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::CancelToken;
    use std::time::{Duration, Instant};

    #[test]
    fn clones_share_one_flag() {
        let a = CancelToken::new();
        let b = a.clone();
        assert!(!b.is_cancelled());
        std::thread::spawn(move || a.cancel()).join().unwrap();
        assert!(b.is_cancelled());
    }

    #[cfg(unix)]
    #[test]
    fn ctrl_c_cancels_a_token_that_asked_for_it_instead_of_killing_the_process() {
        let t = CancelToken::new();
        t.cancel_on_interrupt();
        // SAFETY: raising a signal whose handler was installed above (it stores to an atomic).
        assert_eq!(unsafe { libc::raise(libc::SIGINT) }, 0);
        let start = Instant::now();
        while !t.is_cancelled() && start.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(t.is_cancelled(), "SIGINT did not cancel the token");
    }
}
