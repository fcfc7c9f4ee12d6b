//! Terminal progress bars (indicatif) behind the library's `Progress` trait. CLI only: the
//! library never sees indicatif.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::Duration;
use xtask::context::Ctx;
use xtask::progress::{Lines, Progress, Silent, Unit};

/// Bars on an interactive terminal; plain periodic lines when stderr is not a terminal or on CI;
/// nothing when quiet.
pub fn for_ctx(ctx: &Ctx) -> Box<dyn Progress> {
    if ctx.quiet {
        Box::new(Silent)
    } else if std::io::stderr().is_terminal() && !xtask::env::is_ci() {
        Box::new(Bars {
            bar: Mutex::new(None),
        })
    } else {
        Box::new(Lines::new(Duration::from_secs(5)))
    }
}

struct Bars {
    bar: Mutex<Option<ProgressBar>>,
}

impl Progress for Bars {
    fn start(&self, what: &str, total: Option<u64>, unit: Unit) {
        let bar = match total {
            Some(t) => ProgressBar::new(t),
            None => ProgressBar::new_spinner(),
        };
        bar.set_draw_target(ProgressDrawTarget::stderr());
        let template = match unit {
            Unit::Bytes => "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
            Unit::Steps => "{msg} [{bar:30}] {pos}/{len} {elapsed}",
        };
        if let Ok(style) = ProgressStyle::with_template(template) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_message(what.to_string());
        bar.enable_steady_tick(Duration::from_millis(200));
        *self.bar.lock().unwrap() = Some(bar);
    }

    fn update(&self, done: u64, total: Option<u64>) {
        if let Some(b) = self.bar.lock().unwrap().as_ref() {
            if let Some(t) = total {
                b.set_length(t);
            }
            b.set_position(done);
        }
    }

    fn finish(&self, summary: &str) {
        if let Some(b) = self.bar.lock().unwrap().take() {
            let what = b.message();
            b.finish_and_clear();
            eprintln!("{what}: {summary} ({:.1} s)", b.elapsed().as_secs_f64());
        }
    }

    fn note(&self, msg: &str) {
        match self.bar.lock().unwrap().as_ref() {
            Some(b) => b.println(msg),
            None => eprintln!("{msg}"),
        }
    }
}
