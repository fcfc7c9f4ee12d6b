//! Server counters, shared between connection threads and the engine thread, rendered as
//! Prometheus text for `GET /metrics`.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

#[derive(Debug, Default)]
pub struct Metrics {
    pub requests: AtomicU64,
    pub requests_ok: AtomicU64,
    pub requests_rejected_busy: AtomicU64,
    pub requests_cancelled: AtomicU64,
    pub prompt_tokens: AtomicU64,
    pub prompt_tokens_cached: AtomicU64,
    pub prompt_micros: AtomicU64,
    pub generated_tokens: AtomicU64,
    pub generate_micros: AtomicU64,
    pub decode_calls: AtomicU64,
    /// Gauges.
    pub queue_depth: AtomicU64,
    pub busy_slots: AtomicU64,
    pub slots: AtomicU64,
}

impl Metrics {
    pub fn render(&self) -> String {
        let g = |a: &AtomicU64| a.load(Relaxed);
        let rate = |n: u64, us: u64| {
            if us == 0 {
                0.0
            } else {
                n as f64 / (us as f64 / 1e6)
            }
        };
        let mut s = String::new();
        let mut m = |name: &str, kind: &str, help: &str, v: String| {
            let _ = writeln!(s, "# HELP tunellama_{name} {help}");
            let _ = writeln!(s, "# TYPE tunellama_{name} {kind}");
            let _ = writeln!(s, "tunellama_{name} {v}");
        };
        m(
            "requests_total",
            "counter",
            "Generation requests received.",
            g(&self.requests).to_string(),
        );
        m(
            "requests_completed_total",
            "counter",
            "Generation requests answered to the end.",
            g(&self.requests_ok).to_string(),
        );
        m(
            "requests_rejected_total",
            "counter",
            "Requests refused with 503 because the wait queue was full.",
            g(&self.requests_rejected_busy).to_string(),
        );
        m(
            "requests_cancelled_total",
            "counter",
            "Generations stopped because the client went away.",
            g(&self.requests_cancelled).to_string(),
        );
        m(
            "prompt_tokens_total",
            "counter",
            "Prompt tokens evaluated (not counting reused ones).",
            g(&self.prompt_tokens).to_string(),
        );
        m(
            "prompt_tokens_cached_total",
            "counter",
            "Prompt tokens reused from a slot's KV cache.",
            g(&self.prompt_tokens_cached).to_string(),
        );
        m(
            "generated_tokens_total",
            "counter",
            "Tokens generated.",
            g(&self.generated_tokens).to_string(),
        );
        m(
            "prompt_tokens_per_second",
            "gauge",
            "Prompt tokens per second of prompt processing time, over the server's life.",
            format!(
                "{:.3}",
                rate(g(&self.prompt_tokens), g(&self.prompt_micros))
            ),
        );
        m("generated_tokens_per_second", "gauge", "Generated tokens per second of generation time (all slots together), over the server's life.", format!("{:.3}", rate(g(&self.generated_tokens), g(&self.generate_micros))));
        m(
            "decode_calls_total",
            "counter",
            "llama_decode calls (each carries every active sequence).",
            g(&self.decode_calls).to_string(),
        );
        m(
            "queue_depth",
            "gauge",
            "Requests waiting for a free slot.",
            g(&self.queue_depth).to_string(),
        );
        m(
            "busy_slots",
            "gauge",
            "Slots running a request.",
            g(&self.busy_slots).to_string(),
        );
        m(
            "slots",
            "gauge",
            "Slots (--parallel).",
            g(&self.slots).to_string(),
        );
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_is_prometheus_text_with_rates() {
        let m = Metrics::default();
        m.generated_tokens.store(50, Relaxed);
        m.generate_micros.store(2_000_000, Relaxed);
        m.busy_slots.store(2, Relaxed);
        let t = m.render();
        assert!(
            t.contains("# TYPE tunellama_busy_slots gauge\ntunellama_busy_slots 2\n"),
            "{t}"
        );
        assert!(
            t.contains("tunellama_generated_tokens_per_second 25.000\n"),
            "{t}"
        );
    }
}
