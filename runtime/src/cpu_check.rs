//! Refuses to run on a CPU that lacks a feature this build was compiled for, with a message and
//! exit code 3, instead of dying later with SIGILL.
//!
//! On Linux the check runs from `.preinit_array`, before every `.init_array` constructor: ggml's
//! C++ static initialisers, compiled with `-march=native`, could otherwise execute AVX-512 code
//! before `main`. It reads CPUID/XGETBV itself (no allocation, no std runtime needed there) and
//! writes with `libc::write` + `_exit`. `main` repeats the check for other platforms.
//!
//! x86 features are read from the table in `cpu_table.rs` (CPUID leaf/bit and OS state of every
//! feature a native build can be asked for; xtask derives the requirements from the same table).
//! A required name this check does not know refuses too: it cannot be shown to be present.

include!(concat!(env!("OUT_DIR"), "/required_features.rs"));

#[path = "cpu_table.rs"]
mod cpu_table;

/// Exit code of the refusal (documented in `--help` and README).
pub const EXIT_CPU: i32 = 3;

/// Whether this CPU (and OS) supports a feature; `None` for names this check does not know.
pub fn detect(name: &str) -> Option<bool> {
    imp::detect(name)
}

/// Names this build requires that the CPU lacks.
pub fn missing() -> impl Iterator<Item = &'static str> {
    REQUIRED_CPU_FEATURES
        .iter()
        .copied()
        .filter(|f| detect(f) == Some(false))
}

/// Names this build requires that this check cannot test (they refuse as well).
pub fn unknown() -> impl Iterator<Item = &'static str> {
    REQUIRED_CPU_FEATURES
        .iter()
        .copied()
        .filter(|f| detect(f).is_none())
}

const MSG_A: &str = "error: this tunellama build requires the CPU feature";
const MSG_B: &str = ", which this CPU lacks (it was built for another machine); run `cargo xtask setup` on this machine to build one that fits\n";
const MSG_C: &str = ", which this build's CPU check does not know, so it cannot tell whether this CPU has it; run `cargo xtask setup` on this machine to build one that fits\n";

fn list(names: impl Iterator<Item = &'static str>, tail: &str) -> bool {
    let mut n = 0;
    for f in names {
        write_err(if n == 0 { MSG_A } else { "," });
        write_err(" `");
        write_err(f);
        write_err("`");
        n += 1;
    }
    if n > 0 {
        write_err(tail);
    }
    n > 0
}

/// Writes the refusal with plain `write(2)` calls and exits; safe before `main`.
fn refuse_if_missing() {
    let lacking = list(missing(), MSG_B);
    let unknown = list(unknown(), MSG_C);
    if lacking || unknown {
        // SAFETY: `_exit` ends the process without running destructors, which is what we want
        // before (or instead of) any llama.cpp code running.
        unsafe { libc::_exit(EXIT_CPU) }
    }
}

fn write_err(s: &str) {
    let mut b = s.as_bytes();
    while !b.is_empty() {
        // SAFETY: writes from a valid buffer of the given length to fd 2.
        let n = unsafe { libc::write(2, b.as_ptr().cast(), b.len()) };
        if n <= 0 {
            return;
        }
        b = &b[n as usize..];
    }
}

/// Called at the start of `main`: on Linux the pre-init entry already ran, elsewhere this is it.
pub fn check_at_main() {
    refuse_if_missing();
}

#[cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
#[used]
#[link_section = ".preinit_array"]
static PREINIT_CHECK: extern "C" fn() = {
    extern "C" fn check() {
        refuse_if_missing();
    }
    check
};

#[cfg(target_arch = "x86_64")]
mod imp {
    pub fn detect(name: &str) -> Option<bool> {
        super::cpu_table::x86_detect(name)
    }
}

#[cfg(target_arch = "aarch64")]
mod imp {
    pub fn detect(name: &str) -> Option<bool> {
        use std::arch::is_aarch64_feature_detected as d;
        Some(match name {
            "neon" => d!("neon"),
            "fp16" => d!("fp16"),
            "dotprod" => d!("dotprod"),
            "i8mm" => d!("i8mm"),
            "sve" => d!("sve"),
            "sve2" => d!("sve2"),
            // `sme` detection is not stable in std yet: reported as unchecked.
            _ => return None,
        })
    }
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
mod imp {
    pub fn detect(_name: &str) -> Option<bool> {
        None
    }
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    #[test]
    fn agrees_with_std_detection_for_names_std_knows() {
        assert_eq!(
            super::detect("avx2"),
            Some(is_x86_feature_detected!("avx2"))
        );
        assert_eq!(
            super::detect("avx512f"),
            Some(is_x86_feature_detected!("avx512f"))
        );
        assert_eq!(
            super::detect("avx512bf16"),
            Some(is_x86_feature_detected!("avx512bf16"))
        );
        assert_eq!(
            super::detect("gfni"),
            Some(is_x86_feature_detected!("gfni"))
        );
        assert_eq!(super::detect("no-such-feature"), None);
    }
}
