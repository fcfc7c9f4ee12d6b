//! Refuses to run on a CPU that lacks a feature this build was compiled for, with a message and
//! exit code 3, instead of dying later with SIGILL.
//!
//! On Linux the check runs from `.preinit_array`, before every `.init_array` constructor: ggml's
//! C++ static initialisers, compiled with `-march=native`, could otherwise execute AVX-512 code
//! before `main`. It reads CPUID/XGETBV itself (no allocation, no std runtime needed there) and
//! writes with `libc::write` + `_exit`. `main` repeats the check for other platforms.

include!(concat!(env!("OUT_DIR"), "/required_features.rs"));

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

const MSG_A: &str = "error: this tunellama build requires the CPU feature";
const MSG_B: &str = ", which this CPU lacks (it was built for another machine); run `cargo xtask setup` on this machine to build one that fits\n";

/// Writes the refusal with plain `write(2)` calls and exits; safe before `main`.
fn refuse_if_missing() {
    let mut n = 0;
    for f in missing() {
        if n == 0 {
            write_err(MSG_A);
        } else {
            write_err(",");
        }
        write_err(" `");
        write_err(f);
        write_err("`");
        n += 1;
    }
    if n > 0 {
        write_err(MSG_B);
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
    use core::arch::x86_64::{__cpuid, __cpuid_count};

    /// XCR0: which register states the OS saves (a CPU feature is usable only with them).
    fn xcr0() -> u64 {
        let (lo, hi): (u32, u32);
        // SAFETY: XGETBV with ECX=0 is valid whenever CPUID.1:ECX.OSXSAVE is set (checked by the
        // caller); it only reads a register.
        unsafe {
            core::arch::asm!("xgetbv", in("ecx") 0u32, out("eax") lo, out("edx") hi, options(nomem, nostack, preserves_flags));
        }
        (u64::from(hi) << 32) | u64::from(lo)
    }

    struct Regs {
        l1_ecx: u32,
        l7_ebx: u32,
        l7_ecx: u32,
        l7_edx: u32,
        l7s1_eax: u32,
        xcr0: u64,
    }

    fn regs() -> Regs {
        // SAFETY: CPUID exists on every x86_64 CPU; leaves above the maximum are checked.
        // (Newer compilers consider these intrinsics safe; older ones, down to our 1.89, do not.)
        #[allow(unused_unsafe)]
        unsafe {
            let max = __cpuid(0).eax;
            let l1 = __cpuid(1);
            let (l7, l7s1) = if max >= 7 {
                (__cpuid_count(7, 0), __cpuid_count(7, 1))
            } else {
                (__cpuid(0), __cpuid(0))
            };
            let osxsave = l1.ecx & (1 << 27) != 0;
            Regs {
                l1_ecx: l1.ecx,
                l7_ebx: if max >= 7 { l7.ebx } else { 0 },
                l7_ecx: if max >= 7 { l7.ecx } else { 0 },
                l7_edx: if max >= 7 { l7.edx } else { 0 },
                l7s1_eax: if max >= 7 && l7.eax >= 1 { l7s1.eax } else { 0 },
                xcr0: if osxsave { xcr0() } else { 0 },
            }
        }
    }

    pub fn detect(name: &str) -> Option<bool> {
        let r = regs();
        let bit = |v: u32, b: u32| v & (1 << b) != 0;
        // OS-enabled state: SSE+AVX (bits 1,2), AVX-512 opmask/ZMM (5,6,7), AMX tiles (17,18).
        let avx_os = r.xcr0 & 0x6 == 0x6;
        let avx512_os = avx_os && r.xcr0 & 0xe0 == 0xe0;
        let amx_os = r.xcr0 & 0x6_0000 == 0x6_0000;
        let v = match name {
            "sse4.2" => bit(r.l1_ecx, 20),
            "avx" => bit(r.l1_ecx, 28) && avx_os,
            "fma" => bit(r.l1_ecx, 12) && avx_os,
            "f16c" => bit(r.l1_ecx, 29) && avx_os,
            "avx2" => bit(r.l7_ebx, 5) && avx_os,
            "bmi2" => bit(r.l7_ebx, 8),
            "avx512f" => bit(r.l7_ebx, 16) && avx512_os,
            "avx512dq" => bit(r.l7_ebx, 17) && avx512_os,
            "avx512ifma" => bit(r.l7_ebx, 21) && avx512_os,
            "avx512cd" => bit(r.l7_ebx, 28) && avx512_os,
            "avx512bw" => bit(r.l7_ebx, 30) && avx512_os,
            "avx512vl" => bit(r.l7_ebx, 31) && avx512_os,
            "avx512vbmi" => bit(r.l7_ecx, 1) && avx512_os,
            "avx512vbmi2" => bit(r.l7_ecx, 6) && avx512_os,
            "avx512vnni" => bit(r.l7_ecx, 11) && avx512_os,
            "avx512bf16" => bit(r.l7s1_eax, 5) && avx512_os,
            "avxvnni" => bit(r.l7s1_eax, 4) && avx_os,
            "amx-bf16" => bit(r.l7_edx, 22) && amx_os,
            "amx-tile" => bit(r.l7_edx, 24) && amx_os,
            "amx-int8" => bit(r.l7_edx, 25) && amx_os,
            _ => return None,
        };
        Some(v)
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
        assert_eq!(super::detect("no-such-feature"), None);
    }
}
