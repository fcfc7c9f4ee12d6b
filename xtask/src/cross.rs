//! Cross builds: a declared arm64 Linux machine built on an x86-64 Linux host with Debian's cross
//! compilers (`gcc-aarch64-linux-gnu`, `g++-aarch64-linux-gnu`) through a generated CMake toolchain
//! file, and run under user-mode emulation (`qemu-aarch64 -cpu MODEL`, package `qemu-user`). Finding
//! the tools is separate from the pure parts (toolchain file, emulated CPU choice, HWCAP names), which
//! are tested alone. The Rust runtime is not cross-built (rustup here has no aarch64 target), so
//! arm64 builds are proven at the C level (`verify::emulated`); `cargo xtask cross` is the command.

use crate::artifact::{self, Reference, Request};
use crate::cmd::{which_in, Cmd};
use crate::context::Ctx;
use crate::machine::{Machine, Origin};
use crate::progress::Progress;
use serde::{Deserialize, Serialize};
use std::process::ExitCode;

/// The GNU triple of Debian's arm64 cross compilers and the root of their target libraries.
pub const AARCH64_TRIPLE: &str = "aarch64-linux-gnu";
pub const AARCH64_SYSROOT: &str = "/usr/aarch64-linux-gnu";

/// A cross toolchain found on this host for one target architecture (arm64 with GCC and qemu, or
/// wasm32 with Emscripten and node: `wasm.rs`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CrossToolchain {
    pub target_arch: String,
    pub cc: String,
    pub cxx: String,
    /// `gcc -dumpfullversion` of the C compiler (the C++ one is the same GCC release).
    pub version: String,
    pub cxx_version: String,
    pub sysroot: String,
    /// What runs the verification program: `qemu-aarch64` for arm64, `node` for wasm32; its
    /// version.
    pub runner: String,
    pub runner_version: String,
    /// For wasm32: Emscripten's own CMake toolchain file, which the generated one includes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub emscripten_toolchain: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum CrossError {
    #[error(
        "no cross build from {host} to {target}: only x86_64 Linux → aarch64 Linux and Linux → wasm32 emscripten are supported"
    )]
    Unsupported { host: String, target: String },
    #[error("cross build for {target} needs `{tool}` ({why}), which is not on PATH")]
    Missing {
        target: String,
        tool: String,
        why: String,
    },
    #[error("`{command}` did not report a version: {output}")]
    Version { command: String, output: String },
}

impl crate::error::Hint for CrossError {
    fn hint(&self) -> Option<String> {
        Some(match self {
            CrossError::Unsupported { .. } => {
                "build this variant on its own CI runner (`cargo xtask ci matrix`)".into()
            }
            CrossError::Missing { target, .. } if target == "wasm32" => "run `cargo xtask prereqs --install --cross wasm32` (Debian/Ubuntu packages emscripten nodejs)".into(),
            _ => "run `cargo xtask prereqs --install --cross aarch64` (Debian/Ubuntu packages gcc-aarch64-linux-gnu g++-aarch64-linux-gnu qemu-user)".into(),
        })
    }
}

/// Whether `target` is built on `host` by cross-compiling (another CPU architecture).
pub fn is_cross(host: &Machine, target: &Machine) -> bool {
    host.arch.value != target.arch.value
}

/// Whether this project can cross-build `target` on `host` at all.
pub fn supported(host: &Machine, target: &Machine) -> bool {
    let arm64 = host.os.value == "linux"
        && target.os.value == "linux"
        && host.arch.value == "x86_64"
        && target.arch.value == "aarch64";
    arm64 || crate::wasm::is_wasm(target) && host.os.value == "linux"
}

/// Finds the cross compilers and the emulator for `target` on this host.
pub fn detect(host: &Machine, target: &Machine) -> Result<CrossToolchain, CrossError> {
    if !supported(host, target) {
        return Err(CrossError::Unsupported {
            host: format!("{} {}", host.os.value, host.arch.value),
            target: format!("{} {}", target.os.value, target.arch.value),
        });
    }
    if crate::wasm::is_wasm(target) {
        return crate::wasm::detect();
    }
    let path = crate::env::path_var();
    let find = |tool: &str, why: &str| {
        which_in(tool, &path)
            .map(|p| p.display().to_string())
            .ok_or_else(|| CrossError::Missing {
                target: "aarch64".into(),
                tool: tool.into(),
                why: why.into(),
            })
    };
    let cc = find(
        &format!("{AARCH64_TRIPLE}-gcc"),
        "the C cross compiler, package gcc-aarch64-linux-gnu",
    )?;
    let cxx = find(
        &format!("{AARCH64_TRIPLE}-g++"),
        "the C++ cross compiler, package g++-aarch64-linux-gnu",
    )?;
    let qemu = find(
        "qemu-aarch64",
        "runs the arm64 verification program, package qemu-user",
    )?;
    let gcc_version = |c: &str| {
        let cmd = Cmd::new(c).arg("-dumpfullversion");
        let out = cmd.run().map_err(|e| CrossError::Version {
            command: cmd.display(),
            output: e.to_string(),
        })?;
        let v = out.stdout.trim().to_string();
        if v.is_empty() {
            return Err(CrossError::Version {
                command: cmd.display(),
                output: out.combined(),
            });
        }
        Ok(v)
    };
    let version = gcc_version(&cc)?;
    let cxx_version = gcc_version(&cxx)?;
    let qcmd = Cmd::new(&qemu).arg("--version");
    let qout = qcmd.run().map_err(|e| CrossError::Version {
        command: qcmd.display(),
        output: e.to_string(),
    })?;
    let qemu_version = parse_qemu_version(&qout.stdout).ok_or_else(|| CrossError::Version {
        command: qcmd.display(),
        output: qout.combined(),
    })?;
    Ok(CrossToolchain {
        target_arch: target.arch.value.clone(),
        cc,
        cxx,
        version,
        cxx_version,
        sysroot: AARCH64_SYSROOT.into(),
        runner: qemu,
        runner_version: qemu_version,
        emscripten_toolchain: None,
    })
}

/// `qemu-aarch64 version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)` → `7.2.22`.
pub fn parse_qemu_version(text: &str) -> Option<String> {
    let line = text.lines().next()?;
    let rest = line.split_once(" version ")?.1;
    let v = rest.split_whitespace().next()?;
    v.chars()
        .next()
        .filter(char::is_ascii_digit)
        .map(|_| v.to_string())
}

impl CrossToolchain {
    /// The CMake toolchain file (`-DCMAKE_TOOLCHAIN_FILE`): Linux on aarch64, the cross
    /// compilers, and libraries/headers/packages looked up only under the target's root.
    pub fn toolchain_file(&self) -> String {
        if let Some(ems) = &self.emscripten_toolchain {
            return crate::wasm::toolchain_file(ems);
        }
        format!(
            "# generated by tunellama (xtask/src/cross.rs): cross-compile for {arch} Linux\n\
             set(CMAKE_SYSTEM_NAME Linux)\n\
             set(CMAKE_SYSTEM_PROCESSOR {arch})\n\
             set(CMAKE_C_COMPILER {cc})\n\
             set(CMAKE_CXX_COMPILER {cxx})\n\
             set(CMAKE_FIND_ROOT_PATH {root})\n\
             set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)\n\
             set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)\n\
             set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)\n\
             set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)\n",
            arch = self.target_arch,
            cc = self.cc,
            cxx = self.cxx,
            root = self.sysroot
        )
    }

    /// The compiler family as the key names it.
    fn family(&self) -> &'static str {
        if self.emscripten_toolchain.is_some() {
            "emscripten"
        } else {
            "gcc"
        }
    }

    /// The toolchain identity of the cache key: the cross compilers (as `setup` records the
    /// native ones: `family version path`) and the toolchain file's hash.
    pub fn key_toolchain(&self, host: &crate::cache::Toolchain) -> crate::cache::Toolchain {
        use sha2::{Digest, Sha256};
        let file = crate::profile::hex(&Sha256::digest(self.toolchain_file().as_bytes()));
        crate::cache::Toolchain {
            c: format!("{} {} {}", self.family(), self.version, self.cc),
            cxx: format!("{} {} {}", self.family(), self.cxx_version, self.cxx),
            cmake: host.cmake.clone(),
            ninja: host.ninja.clone(),
            nvcc: None,
            vulkan_headers: None,
            build_env: host.build_env.clone(),
            cross: Some(format!(
                "{} toolchain file sha256:{}",
                if self.emscripten_toolchain.is_some() {
                    crate::wasm::TRIPLE
                } else {
                    AARCH64_TRIPLE
                },
                &file[..16]
            )),
        }
    }
}

/// What `cargo xtask cross --json` prints.
#[derive(Debug, Serialize)]
pub struct CrossReport {
    pub machine: String,
    pub outcome: artifact::Outcome,
    pub key: String,
    pub entry: std::path::PathBuf,
    pub profile_hash: String,
    /// `GGML_CPU_ARM_ARCH` of the profile.
    pub arm_arch: Option<String>,
    pub verification: serde_json::Value,
}

/// Builds (or finds in the cache) a declared Machine of another architecture through the path
/// `dist` takes on this host (same `artifact::ensure`, same cache): `cross` and `serve-wasm` use it.
pub fn ensure_declared(
    ctx: &Ctx,
    machine: &std::path::Path,
    force: bool,
    progress: &dyn Progress,
) -> anyhow::Result<(artifact::Ensured, crate::profile::Profile, String)> {
    let host = crate::prereq::ensure_build_tools(ctx)?;
    let target = ctx.machine(Some(machine))?;
    if target.origin != Origin::Declared {
        anyhow::bail!(
            "{} is a probed machine (GGML_NATIVE=ON): a cross build needs a declared one (\"origin\": \"declared\") whose features the profile sets explicitly",
            machine.display()
        );
    }
    if !supported(&host, &target) {
        return Err(CrossError::Unsupported {
            host: format!("{} {}", host.os.value, host.arch.value),
            target: format!("{} {}", target.os.value, target.arch.value),
        }
        .into());
    }
    crate::prereq::ensure_cross_tools(ctx, &target.arch.value)?;
    let profile = crate::profile::plan(&target, &Default::default());
    let plan = crate::source::plan_from_args(ctx, &crate::source::SourceArgs::default())?;
    let tree = crate::source::obtain(&plan, progress)?;
    let name = target.name.clone().unwrap_or_else(|| "cross".into());
    let e = artifact::ensure(
        ctx,
        &Request {
            label: &name,
            target: &target,
            host: &host,
            profile: &profile,
            tree: &tree,
            force,
            reference: Reference::Portable,
            with_runtime: false,
        },
        progress,
    )?;
    Ok((e, profile, name))
}

/// `cargo xtask cross --machine FILE`: the path `dist` takes for an arm64 or wasm32 variant on
/// this host, for any declared Machine, without packing.
pub fn run(ctx: &Ctx, args: &CrossArgs, progress: &dyn Progress) -> anyhow::Result<ExitCode> {
    let (e, profile, name) = ensure_declared(ctx, &args.machine, args.force, progress)?;
    let report = CrossReport {
        machine: name,
        outcome: e.outcome,
        key: e.key.clone(),
        entry: e.entry.clone(),
        profile_hash: profile.hash.clone(),
        arm_arch: profile
            .decisions
            .iter()
            .find(|d| d.name == "GGML_CPU_ARM_ARCH")
            .map(|d| d.value.clone()),
        verification: e.manifest.verification.clone().unwrap_or_default(),
    };
    if ctx.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "{} ({}): build {} ({:?})",
            report.machine,
            report
                .arm_arch
                .as_deref()
                .or(profile.decision("EMSCRIPTEN_SYSTEM_PROCESSOR"))
                .unwrap_or("?"),
            report.key,
            report.outcome
        );
        if let Some(m) = e.manifest.verification.as_ref().and(Some(e.prefix())) {
            let module = m.join(crate::wasm::MODULE_DIR);
            if module.is_dir() {
                println!("  module: {}", module.display());
            }
        }
        if let Some(s) = report.verification.pointer("/emulated/summary") {
            println!("  {}", s.as_str().unwrap_or_default());
        }
        if let Some(s) = report.verification.pointer("/emulated/portable_arm64") {
            println!("  {}", s.as_str().unwrap_or_default());
        }
        println!("  prefix: {}", e.prefix().display());
    }
    Ok(ExitCode::SUCCESS)
}

/// A CPU model of `qemu-aarch64 -cpu` and the optional features (our spelling) it has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EmulatedCpu {
    pub model: &'static str,
    pub arch: &'static str,
    pub features: &'static [&'static str],
}

/// Oldest first. Source: QEMU 7.2 `target/arm/cpu64.c` (`aarch64_a72_initfn`: ID_AA64ISAR0 without
/// DP, ID_AA64PFR0 without FP16; `aarch64_neoverse_n1_initfn`: DP=1, FP/AdvSIMD with half
/// precision; `max` enables every implemented feature). The verification program reads the
/// HWCAPs the emulated CPU really reports, so a wrong row fails loudly instead of lying.
pub const QEMU_CPUS: &[EmulatedCpu] = &[
    EmulatedCpu {
        model: "cortex-a72",
        arch: "Armv8.0-A",
        features: &[],
    },
    EmulatedCpu {
        model: "neoverse-n1",
        arch: "Armv8.2-A",
        features: &["fp16", "dotprod"],
    },
    EmulatedCpu {
        model: "max",
        arch: "all QEMU implements",
        features: &["fp16", "dotprod", "i8mm", "sve"],
    },
];

/// The oldest emulated CPU that has every required feature: the build runs there.
pub fn cpu_for(required: &[String]) -> Option<EmulatedCpu> {
    QEMU_CPUS
        .iter()
        .copied()
        .find(|c| required.iter().all(|f| c.features.contains(&f.as_str())))
}

/// The oldest emulated CPU lacking at least one required feature (where the build must be
/// refused), with the features it lacks; `None` when the build needs nothing beyond Armv8.0.
pub fn cpu_lacking(required: &[String]) -> Option<(EmulatedCpu, Vec<String>)> {
    QEMU_CPUS.iter().copied().find_map(|c| {
        let missing: Vec<String> = required
            .iter()
            .filter(|f| !c.features.contains(&f.as_str()))
            .cloned()
            .collect();
        (!missing.is_empty()).then_some((c, missing))
    })
}

/// Required feature (our spelling, as in `GGML_CPU_ARM_ARCH`) → the Linux HWCAP bits that must all
/// be set (`<asm/hwcap.h>` macro, the name `/proc/cpuinfo` prints). Source: Linux
/// `arch/arm64/include/uapi/asm/hwcap.h` and `Documentation/arch/arm64/elf_hwcaps.rst`.
pub const HWCAPS: &[(&str, &[(&str, &str)])] = &[
    ("neon", &[("HWCAP_ASIMD", "asimd")]),
    (
        "fp16",
        &[("HWCAP_FPHP", "fphp"), ("HWCAP_ASIMDHP", "asimdhp")],
    ),
    ("dotprod", &[("HWCAP_ASIMDDP", "asimddp")]),
    ("sve", &[("HWCAP_SVE", "sve")]),
    ("i8mm", &[("HWCAP2_I8MM", "i8mm")]),
    ("bf16", &[("HWCAP2_BF16", "bf16")]),
];

/// The HWCAP bits of one required feature; `None` for a feature we cannot check.
pub fn hwcaps_of(feature: &str) -> Option<&'static [(&'static str, &'static str)]> {
    HWCAPS.iter().find(|(f, _)| *f == feature).map(|(_, h)| *h)
}

// --- command-line options of this stage (composed by `crate::cli`; nothing here imports it)

#[derive(Debug, clap::Args)]
pub struct CrossArgs {
    /// A declared Machine (JSON) of another architecture, e.g. tests/fixtures/machines/declared-linux-arm64-v82-dotprod.json
    #[arg(long, value_name = "FILE")]
    pub machine: std::path::PathBuf,
    /// Rebuild even when the cache holds this build
    #[arg(long)]
    pub force: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn qemu_version_is_read_from_its_first_line() {
        // Recorded: `qemu-aarch64 --version` of Debian 12's qemu-user.
        let text = "qemu-aarch64 version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)\nCopyright (c) 2003-2022 Fabrice Bellard and the QEMU Project developers\n";
        assert_eq!(parse_qemu_version(text).as_deref(), Some("7.2.22"));
        assert_eq!(parse_qemu_version("qemu-aarch64: unknown option"), None);
    }

    #[test]
    fn a_build_runs_on_the_oldest_emulated_cpu_that_has_its_features() {
        assert_eq!(cpu_for(&[]).unwrap().model, "cortex-a72");
        assert_eq!(cpu_for(&s(&["dotprod"])).unwrap().model, "neoverse-n1");
        assert_eq!(
            cpu_for(&s(&["dotprod", "fp16"])).unwrap().model,
            "neoverse-n1"
        );
        assert_eq!(cpu_for(&s(&["i8mm", "sve"])).unwrap().model, "max");
        assert!(cpu_for(&s(&["sme"])).is_none());
    }

    #[test]
    fn a_build_is_refused_on_the_oldest_cpu_lacking_a_feature() {
        assert!(cpu_lacking(&[]).is_none());
        let (cpu, missing) = cpu_lacking(&s(&["dotprod", "fp16"])).unwrap();
        assert_eq!(cpu.model, "cortex-a72");
        assert_eq!(missing, ["dotprod", "fp16"]);
    }

    #[test]
    fn toolchain_file_names_system_processor_compilers_and_root() {
        let t = CrossToolchain {
            target_arch: "aarch64".into(),
            cc: "/usr/bin/aarch64-linux-gnu-gcc".into(),
            cxx: "/usr/bin/aarch64-linux-gnu-g++".into(),
            version: "12.2.0".into(),
            cxx_version: "12.2.0".into(),
            sysroot: AARCH64_SYSROOT.into(),
            runner: "/usr/bin/qemu-aarch64".into(),
            runner_version: "7.2.22".into(),
            emscripten_toolchain: None,
        };
        let f = t.toolchain_file();
        for line in [
            "set(CMAKE_SYSTEM_NAME Linux)",
            "set(CMAKE_SYSTEM_PROCESSOR aarch64)",
            "set(CMAKE_C_COMPILER /usr/bin/aarch64-linux-gnu-gcc)",
            "set(CMAKE_CXX_COMPILER /usr/bin/aarch64-linux-gnu-g++)",
            "set(CMAKE_FIND_ROOT_PATH /usr/aarch64-linux-gnu)",
        ] {
            assert!(f.contains(line), "{line} not in\n{f}");
        }
        let host = crate::cache::Toolchain {
            c: "gcc 12.2.0 /usr/bin/cc".into(),
            cxx: "gcc 12.2.0 /usr/bin/c++".into(),
            cmake: "3.25.1 /usr/bin/cmake".into(),
            ninja: None,
            nvcc: None,
            cross: None,
            vulkan_headers: None,
            ..Default::default()
        };
        let k = t.key_toolchain(&host);
        assert_eq!(k.c, "gcc 12.2.0 /usr/bin/aarch64-linux-gnu-gcc");
        assert!(k
            .cross
            .unwrap()
            .starts_with("aarch64-linux-gnu toolchain file sha256:"));
        // another compiler is another toolchain: another cache key
        let mut t2 = t.clone();
        t2.cc = "/opt/cross/bin/aarch64-linux-gnu-gcc".into();
        assert_ne!(t2.key_toolchain(&host), t.key_toolchain(&host));
    }

    #[test]
    fn a_wasm_toolchain_is_emscripten_in_the_key_with_its_own_toolchain_file() {
        let ems = "/usr/share/emscripten/cmake/Modules/Platform/Emscripten.cmake";
        let t = CrossToolchain {
            target_arch: "wasm32".into(),
            cc: "/usr/bin/emcc".into(),
            cxx: "/usr/bin/em++".into(),
            version: "3.1.6".into(),
            cxx_version: "3.1.6".into(),
            sysroot: "/usr/share/emscripten".into(),
            runner: "/usr/bin/node".into(),
            runner_version: "20.20.2".into(),
            emscripten_toolchain: Some(ems.into()),
        };
        assert!(t.toolchain_file().contains(&format!("include({ems})")));
        let k = t.key_toolchain(&crate::cache::Toolchain::default());
        assert_eq!(k.c, "emscripten 3.1.6 /usr/bin/emcc");
        assert_eq!(k.cxx, "emscripten 3.1.6 /usr/bin/em++");
        assert!(k
            .cross
            .unwrap()
            .starts_with("wasm32-emscripten toolchain file sha256:"));
    }

    #[test]
    fn every_arm_extension_of_the_profile_has_hwcaps_to_check() {
        for (f, _) in crate::profile::rules::ARM_V82_EXTENSIONS {
            assert!(hwcaps_of(f).is_some(), "{f} has no HWCAP mapping");
        }
        assert_eq!(hwcaps_of("dotprod").unwrap()[0].1, "asimddp");
    }
}
