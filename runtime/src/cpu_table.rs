//! Every x86 CPU feature the runtime's pre-main check can test: its name, the compiler macros that
//! say a build may use it, and where CPUID reports it (plus the OS register state it needs).
//!
//! Shared as source with xtask (`#[path]`), which maps the macros `-march=native` defines to these
//! names; so a native build can only ask the runtime for features this table knows, and a name it
//! does not know makes the runtime refuse (exit 3), never pass.
//!
//! Sources: CPUID leaves and bits from the Intel 64 and IA-32 Architectures Software Developer's
//! Manual, Vol. 2A, "CPUID—CPU Identification" (tables "Feature Information Returned in the ECX/EDX
//! Register", "Structured Extended Feature Flags Enumeration Leaf"), the AMD64 Architecture
//! Programmer's Manual Vol. 3, Appendix E (leaves 8000_0001h, 8000_0008h), cross-checked with the
//! Linux kernel's `arch/x86/include/asm/cpufeatures.h` (word/bit of each `X86_FEATURE_*`). XCR0
//! state bits from the SDM Vol. 1, 13.1 "XSAVE-Supported Features and State-Component Bitmaps".
//! Names are those of Rust's `is_x86_feature_detected!` where it has one, else GCC's `-m` option.
//! Macros are the ones GCC and Clang predefine for the feature (`cc -march=native -dM -E -`).

#![allow(dead_code)]

/// A CPUID output register.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reg {
    Eax,
    Ebx,
    Ecx,
    Edx,
}

/// Register state the OS must have enabled in XCR0 for the feature to be usable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OsState {
    /// Nothing beyond the CPU bit.
    None,
    /// CR4.OSXSAVE (CPUID.1:ECX bit 27): XSAVE-family instructions.
    Xsave,
    /// XCR0 bits 1 (SSE) and 2 (AVX): VEX-encoded instructions.
    Avx,
    /// XCR0 bits 1, 2, 5 (opmask), 6 (ZMM_Hi256), 7 (Hi16_ZMM): EVEX-encoded instructions.
    Avx512,
    /// XCR0 bits 17 (XTILECFG) and 18 (XTILEDATA): AMX tiles.
    Amx,
}

/// One feature: `name` is present when CPUID leaf `leaf`, sub-leaf `subleaf`, register `reg` has
/// bit `bit` set and the OS enables `os`.
#[derive(Debug, Clone, Copy)]
pub struct X86Feature {
    pub name: &'static str,
    /// Predefined macros that mean "the compiler may emit this feature's instructions".
    pub macros: &'static [&'static str],
    pub leaf: u32,
    pub subleaf: u32,
    pub reg: Reg,
    pub bit: u8,
    pub os: OsState,
}

const fn f(
    name: &'static str,
    macros: &'static [&'static str],
    leaf: u32,
    subleaf: u32,
    reg: Reg,
    bit: u8,
    os: OsState,
) -> X86Feature {
    X86Feature {
        name,
        macros,
        leaf,
        subleaf,
        reg,
        bit,
        os,
    }
}

use OsState as S;
use Reg::*;

/// The table. Keep names unique; a test checks it.
pub const X86_FEATURES: &[X86Feature] = &[
    // Leaf 1, EDX.
    f("mmx", &["__MMX__"], 1, 0, Edx, 23, S::None),
    f("fxsr", &["__FXSR__"], 1, 0, Edx, 24, S::None),
    f("sse", &["__SSE__"], 1, 0, Edx, 25, S::None),
    f("sse2", &["__SSE2__"], 1, 0, Edx, 26, S::None),
    // Leaf 1, ECX.
    f("sse3", &["__SSE3__"], 1, 0, Ecx, 0, S::None),
    f("pclmulqdq", &["__PCLMUL__"], 1, 0, Ecx, 1, S::None),
    f("ssse3", &["__SSSE3__"], 1, 0, Ecx, 9, S::None),
    f("fma", &["__FMA__"], 1, 0, Ecx, 12, S::Avx),
    f("cmpxchg16b", &["__CX16__"], 1, 0, Ecx, 13, S::None),
    f("sse4.1", &["__SSE4_1__"], 1, 0, Ecx, 19, S::None),
    // CRC32 is part of SSE4.2 (SDM: "CRC32 — Accumulate CRC32 Value", CPUID.01H:ECX.SSE4_2).
    f(
        "sse4.2",
        &["__SSE4_2__", "__CRC32__"],
        1,
        0,
        Ecx,
        20,
        S::None,
    ),
    f("movbe", &["__MOVBE__"], 1, 0, Ecx, 22, S::None),
    f("popcnt", &["__POPCNT__"], 1, 0, Ecx, 23, S::None),
    f("aes", &["__AES__"], 1, 0, Ecx, 25, S::None),
    f("xsave", &["__XSAVE__"], 1, 0, Ecx, 26, S::Xsave),
    f("avx", &["__AVX__"], 1, 0, Ecx, 28, S::Avx),
    f("f16c", &["__F16C__"], 1, 0, Ecx, 29, S::Avx),
    f("rdrand", &["__RDRND__"], 1, 0, Ecx, 30, S::None),
    // Leaf 7 sub-leaf 0, EBX.
    f("fsgsbase", &["__FSGSBASE__"], 7, 0, Ebx, 0, S::None),
    f("sgx", &["__SGX__"], 7, 0, Ebx, 2, S::None),
    f("bmi1", &["__BMI__"], 7, 0, Ebx, 3, S::None),
    f("hle", &["__HLE__"], 7, 0, Ebx, 4, S::None),
    f("avx2", &["__AVX2__"], 7, 0, Ebx, 5, S::Avx),
    f("bmi2", &["__BMI2__"], 7, 0, Ebx, 8, S::None),
    f("invpcid", &["__INVPCID__"], 7, 0, Ebx, 10, S::None),
    f("rtm", &["__RTM__"], 7, 0, Ebx, 11, S::None),
    f("avx512f", &["__AVX512F__"], 7, 0, Ebx, 16, S::Avx512),
    f("avx512dq", &["__AVX512DQ__"], 7, 0, Ebx, 17, S::Avx512),
    f("rdseed", &["__RDSEED__"], 7, 0, Ebx, 18, S::None),
    f("adx", &["__ADX__"], 7, 0, Ebx, 19, S::None),
    f("avx512ifma", &["__AVX512IFMA__"], 7, 0, Ebx, 21, S::Avx512),
    f("clflushopt", &["__CLFLUSHOPT__"], 7, 0, Ebx, 23, S::None),
    f("clwb", &["__CLWB__"], 7, 0, Ebx, 24, S::None),
    f("avx512pf", &["__AVX512PF__"], 7, 0, Ebx, 26, S::Avx512),
    f("avx512er", &["__AVX512ER__"], 7, 0, Ebx, 27, S::Avx512),
    f("avx512cd", &["__AVX512CD__"], 7, 0, Ebx, 28, S::Avx512),
    f("sha", &["__SHA__"], 7, 0, Ebx, 29, S::None),
    f("avx512bw", &["__AVX512BW__"], 7, 0, Ebx, 30, S::Avx512),
    f("avx512vl", &["__AVX512VL__"], 7, 0, Ebx, 31, S::Avx512),
    // Leaf 7 sub-leaf 0, ECX.
    f("prefetchwt1", &["__PREFETCHWT1__"], 7, 0, Ecx, 0, S::None),
    f("avx512vbmi", &["__AVX512VBMI__"], 7, 0, Ecx, 1, S::Avx512),
    // OSPKE (bit 4): PKU present and enabled by the OS (CR4.PKE).
    f("pku", &["__PKU__"], 7, 0, Ecx, 4, S::None),
    f("waitpkg", &["__WAITPKG__"], 7, 0, Ecx, 5, S::None),
    f("avx512vbmi2", &["__AVX512VBMI2__"], 7, 0, Ecx, 6, S::Avx512),
    f("shstk", &["__SHSTK__"], 7, 0, Ecx, 7, S::None),
    f("gfni", &["__GFNI__"], 7, 0, Ecx, 8, S::None),
    f("vaes", &["__VAES__"], 7, 0, Ecx, 9, S::Avx),
    f("vpclmulqdq", &["__VPCLMULQDQ__"], 7, 0, Ecx, 10, S::Avx),
    f("avx512vnni", &["__AVX512VNNI__"], 7, 0, Ecx, 11, S::Avx512),
    f(
        "avx512bitalg",
        &["__AVX512BITALG__"],
        7,
        0,
        Ecx,
        12,
        S::Avx512,
    ),
    f(
        "avx512vpopcntdq",
        &["__AVX512VPOPCNTDQ__"],
        7,
        0,
        Ecx,
        14,
        S::Avx512,
    ),
    f("rdpid", &["__RDPID__"], 7, 0, Ecx, 22, S::None),
    f("kl", &["__KL__"], 7, 0, Ecx, 23, S::None),
    f("cldemote", &["__CLDEMOTE__"], 7, 0, Ecx, 25, S::None),
    f("movdiri", &["__MOVDIRI__"], 7, 0, Ecx, 27, S::None),
    f("movdir64b", &["__MOVDIR64B__"], 7, 0, Ecx, 28, S::None),
    f("enqcmd", &["__ENQCMD__"], 7, 0, Ecx, 29, S::None),
    // Leaf 7 sub-leaf 0, EDX.
    f(
        "avx5124vnniw",
        &["__AVX5124VNNIW__"],
        7,
        0,
        Edx,
        2,
        S::Avx512,
    ),
    f(
        "avx5124fmaps",
        &["__AVX5124FMAPS__"],
        7,
        0,
        Edx,
        3,
        S::Avx512,
    ),
    f("uintr", &["__UINTR__"], 7, 0, Edx, 5, S::None),
    f(
        "avx512vp2intersect",
        &["__AVX512VP2INTERSECT__"],
        7,
        0,
        Edx,
        8,
        S::Avx512,
    ),
    f("serialize", &["__SERIALIZE__"], 7, 0, Edx, 14, S::None),
    f("tsxldtrk", &["__TSXLDTRK__"], 7, 0, Edx, 16, S::None),
    f("pconfig", &["__PCONFIG__"], 7, 0, Edx, 18, S::None),
    f("amx-bf16", &["__AMX_BF16__"], 7, 0, Edx, 22, S::Amx),
    f("avx512fp16", &["__AVX512FP16__"], 7, 0, Edx, 23, S::Avx512),
    f("amx-tile", &["__AMX_TILE__"], 7, 0, Edx, 24, S::Amx),
    f("amx-int8", &["__AMX_INT8__"], 7, 0, Edx, 25, S::Amx),
    // Leaf 7 sub-leaf 1, EAX.
    f("sha512", &["__SHA512__"], 7, 1, Eax, 0, S::Avx),
    f("sm3", &["__SM3__"], 7, 1, Eax, 1, S::Avx),
    f("sm4", &["__SM4__"], 7, 1, Eax, 2, S::Avx),
    f("raoint", &["__RAOINT__"], 7, 1, Eax, 3, S::None),
    f("avxvnni", &["__AVXVNNI__"], 7, 1, Eax, 4, S::Avx),
    f("avx512bf16", &["__AVX512BF16__"], 7, 1, Eax, 5, S::Avx512),
    f("cmpccxadd", &["__CMPCCXADD__"], 7, 1, Eax, 7, S::None),
    f("amx-fp16", &["__AMX_FP16__"], 7, 1, Eax, 21, S::Amx),
    f("hreset", &["__HRESET__"], 7, 1, Eax, 22, S::None),
    f("avxifma", &["__AVXIFMA__"], 7, 1, Eax, 23, S::Avx),
    // Leaf 7 sub-leaf 1, EDX.
    f("avxvnniint8", &["__AVXVNNIINT8__"], 7, 1, Edx, 4, S::Avx),
    f("avxneconvert", &["__AVXNECONVERT__"], 7, 1, Edx, 5, S::Avx),
    f("amx-complex", &["__AMX_COMPLEX__"], 7, 1, Edx, 8, S::Amx),
    f("avxvnniint16", &["__AVXVNNIINT16__"], 7, 1, Edx, 10, S::Avx),
    f("prefetchi", &["__PREFETCHI__"], 7, 1, Edx, 14, S::None),
    f("usermsr", &["__USER_MSR__"], 7, 1, Edx, 15, S::None),
    // Leaf 0Dh sub-leaf 1, EAX.
    f("xsaveopt", &["__XSAVEOPT__"], 0xd, 1, Eax, 0, S::Xsave),
    f("xsavec", &["__XSAVEC__"], 0xd, 1, Eax, 1, S::Xsave),
    f("xsaves", &["__XSAVES__"], 0xd, 1, Eax, 3, S::Xsave),
    // Leaf 14h sub-leaf 0, EBX.
    f("ptwrite", &["__PTWRITE__"], 0x14, 0, Ebx, 4, S::None),
    // Leaf 19h, EBX.
    f("widekl", &["__WIDEKL__"], 0x19, 0, Ebx, 2, S::None),
    // Leaf 8000_0001h, ECX.
    f("sahf", &["__LAHF_SAHF__"], 0x8000_0001, 0, Ecx, 0, S::None),
    f(
        "lzcnt",
        &["__LZCNT__", "__ABM__"],
        0x8000_0001,
        0,
        Ecx,
        5,
        S::None,
    ),
    f("sse4a", &["__SSE4A__"], 0x8000_0001, 0, Ecx, 6, S::None),
    f("prfchw", &["__PRFCHW__"], 0x8000_0001, 0, Ecx, 8, S::None),
    f("xop", &["__XOP__"], 0x8000_0001, 0, Ecx, 11, S::Avx),
    f("lwp", &["__LWP__"], 0x8000_0001, 0, Ecx, 15, S::None),
    f("fma4", &["__FMA4__"], 0x8000_0001, 0, Ecx, 16, S::Avx),
    f("tbm", &["__TBM__"], 0x8000_0001, 0, Ecx, 21, S::None),
    f("mwaitx", &["__MWAITX__"], 0x8000_0001, 0, Ecx, 29, S::None),
    // Leaf 8000_0001h, EDX.
    f("3dnowa", &["__3dNOW_A__"], 0x8000_0001, 0, Edx, 30, S::None),
    f("3dnow", &["__3dNOW__"], 0x8000_0001, 0, Edx, 31, S::None),
    // Leaf 8000_0008h, EBX.
    f("clzero", &["__CLZERO__"], 0x8000_0008, 0, Ebx, 0, S::None),
    f("rdpru", &["__RDPRU__"], 0x8000_0008, 0, Ebx, 4, S::None),
    f(
        "wbnoinvd",
        &["__WBNOINVD__"],
        0x8000_0008,
        0,
        Ebx,
        9,
        S::None,
    ),
];

/// Predefined macros that `-march=native` may add but that name no instruction set of their own
/// (math and ABI settings implied by the features above).
pub const NON_FEATURE_MACROS: &[&str] = &["__MMX_WITH_SSE__", "__SSE_MATH__", "__SSE2_MATH__"];

pub fn x86_feature(name: &str) -> Option<&'static X86Feature> {
    X86_FEATURES.iter().find(|f| f.name == name)
}

pub fn x86_feature_for_macro(m: &str) -> Option<&'static X86Feature> {
    X86_FEATURES.iter().find(|f| f.macros.contains(&m))
}

/// Whether this CPU (and OS) supports `name`; `None` for names the table does not know.
/// Reads CPUID/XGETBV only: no allocation, safe before `main`.
#[cfg(target_arch = "x86_64")]
pub fn x86_detect(name: &str) -> Option<bool> {
    use core::arch::x86_64::{__cpuid, __cpuid_count};
    let feat = x86_feature(name)?;
    // SAFETY: CPUID exists on every x86_64 CPU; leaves above the reported maxima are not read.
    // (Newer compilers consider these intrinsics safe; older ones, down to our 1.89, do not.)
    #[allow(unused_unsafe)]
    let (max_basic, max_ext, l1_ecx) =
        unsafe { (__cpuid(0).eax, __cpuid(0x8000_0000).eax, __cpuid(1).ecx) };
    let max = if feat.leaf >= 0x8000_0000 {
        max_ext
    } else {
        max_basic
    };
    if feat.leaf > max {
        return Some(false);
    }
    if feat.leaf == 7 && feat.subleaf > 0 {
        // Leaf 7 reports its highest sub-leaf in EAX of sub-leaf 0.
        #[allow(unused_unsafe)]
        let max_sub = unsafe { __cpuid_count(7, 0).eax };
        if feat.subleaf > max_sub {
            return Some(false);
        }
    }
    #[allow(unused_unsafe)]
    let r = unsafe { __cpuid_count(feat.leaf, feat.subleaf) };
    let v = match feat.reg {
        Reg::Eax => r.eax,
        Reg::Ebx => r.ebx,
        Reg::Ecx => r.ecx,
        Reg::Edx => r.edx,
    };
    if v & (1 << feat.bit) == 0 {
        return Some(false);
    }
    let osxsave = l1_ecx & (1 << 27) != 0;
    let xcr0 = if osxsave { xcr0() } else { 0 };
    Some(match feat.os {
        OsState::None => true,
        OsState::Xsave => osxsave,
        OsState::Avx => xcr0 & 0x6 == 0x6,
        OsState::Avx512 => xcr0 & 0xe6 == 0xe6,
        OsState::Amx => xcr0 & 0x6_0000 == 0x6_0000,
    })
}

/// XCR0: which register states the OS saves (a feature is usable only with them).
#[cfg(target_arch = "x86_64")]
fn xcr0() -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: XGETBV with ECX=0 is valid whenever CPUID.1:ECX.OSXSAVE is set (checked by the
    // caller); it only reads a register.
    unsafe {
        core::arch::asm!("xgetbv", in("ecx") 0u32, out("eax") lo, out("edx") hi, options(nomem, nostack, preserves_flags));
    }
    (u64::from(hi) << 32) | u64::from(lo)
}
