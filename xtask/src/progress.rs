//! The narrow progress interface library code reports through. Only the CLI (`bars.rs`) knows
//! about terminal bars; library code and tests see this trait.

use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Bytes transferred (shown with rate and ETA).
    Bytes,
    /// Steps of a job (compile units: ninja's `[n/m]`).
    Steps,
}

pub trait Progress: Send + Sync {
    /// A new piece of long work begins; `total` when known.
    fn start(&self, what: &str, total: Option<u64>, unit: Unit);
    /// Amount done so far (absolute, not a delta); `total` may become known late.
    fn update(&self, done: u64, total: Option<u64>);
    /// The current piece of work has ended with this one-line summary.
    fn finish(&self, summary: &str);
    /// A one-line remark while work goes on (a retry, a wait for a lock).
    fn note(&self, _msg: &str) {}
}

/// Reports nothing (quiet mode, tests).
pub struct Silent;

impl Progress for Silent {
    fn start(&self, _: &str, _: Option<u64>, _: Unit) {}
    fn update(&self, _: u64, _: Option<u64>) {}
    fn finish(&self, _: &str) {}
}

/// Plain lines on stderr at most every `every`, for logs and CI where bars would be noise.
pub struct Lines {
    every: Duration,
    state: Mutex<LineState>,
}

struct LineState {
    what: String,
    unit: Unit,
    started: Instant,
    last: Option<Instant>,
}

impl Lines {
    pub fn new(every: Duration) -> Lines {
        Lines {
            every,
            state: Mutex::new(LineState {
                what: String::new(),
                unit: Unit::Steps,
                started: Instant::now(),
                last: None,
            }),
        }
    }
}

pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < UNITS.len() {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[i])
    }
}

impl Progress for Lines {
    fn start(&self, what: &str, total: Option<u64>, unit: Unit) {
        let mut s = self.state.lock().unwrap();
        s.what = what.to_string();
        s.unit = unit;
        s.started = Instant::now();
        s.last = None;
        let size = match (total, unit) {
            (Some(t), Unit::Bytes) => format!(" ({})", human_bytes(t)),
            (Some(t), Unit::Steps) => format!(" ({t} steps)"),
            (None, _) => String::new(),
        };
        eprintln!("{what}{size} ...");
    }
    fn update(&self, done: u64, total: Option<u64>) {
        let mut s = self.state.lock().unwrap();
        let now = Instant::now();
        if s.last.is_some_and(|l| now - l < self.every) {
            return;
        }
        s.last = Some(now);
        let secs = (now - s.started).as_secs_f64().max(1e-3);
        let line = match s.unit {
            Unit::Bytes => {
                let rate = done as f64 / secs;
                let of = total
                    .map(|t| format!(" of {}", human_bytes(t)))
                    .unwrap_or_default();
                format!(
                    "{}: {}{of} ({}/s)",
                    s.what,
                    human_bytes(done),
                    human_bytes(rate as u64)
                )
            }
            Unit::Steps => {
                let of = total.map(|t| format!("/{t}")).unwrap_or_default();
                format!("{}: [{done}{of}] {secs:.0} s", s.what)
            }
        };
        eprintln!("{line}");
    }
    fn finish(&self, summary: &str) {
        let s = self.state.lock().unwrap();
        eprintln!(
            "{}: {summary} ({:.1} s)",
            s.what,
            s.started.elapsed().as_secs_f64()
        );
    }
    fn note(&self, msg: &str) {
        eprintln!("{msg}");
    }
}
