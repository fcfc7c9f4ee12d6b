//! Probe: read the facts of the machine we run on into a [`Machine`].
//!
//! Capture (running commands, reading files) lives here; every parser is a pure function in a
//! submodule, tested on recorded real outputs. Nothing here fails: a missing or broken tool
//! becomes a fact (`not_found` with where we looked, or `failed` with why).

pub mod accel;
pub mod compiler;
pub mod cpu;
pub mod nvidia;
pub mod tools;

use crate::cmd::{which_in, Cmd, CmdError};
use crate::machine::*;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where and how to look. Tests point `path` at directories of recorded tools.
#[derive(Debug, Clone)]
pub struct ProbeOptions {
    /// PATH-style search list for executables.
    pub path: OsString,
    /// The directory whose free space matters (the cache root).
    pub disk_path: PathBuf,
    /// Per-command limit: a wedged `nvidia-smi` must not hang the probe.
    pub timeout: Duration,
    pub cuda_roots: Vec<(String, PathBuf)>,
    /// The toolkit installed from the CUDA wheels into the cache, when there is one.
    pub cuda_wheels: Option<PathBuf>,
    pub cc: Option<String>,
    pub cxx: Option<String>,
    /// Where the compiler probe makes its private temporary directory (`<cache>/tmp/`); the
    /// system's temporary directory when `None`.
    pub cache_dir: Option<PathBuf>,
}

impl ProbeOptions {
    pub fn for_host(cache_dir: &Path) -> ProbeOptions {
        ProbeOptions {
            path: crate::env::path_var(),
            disk_path: cache_dir.to_path_buf(),
            timeout: Duration::from_secs(10),
            cuda_roots: crate::env::cuda_roots(),
            cuda_wheels: crate::cuda_wheels::installed(cache_dir),
            cc: crate::env::cc(),
            cxx: crate::env::cxx(),
            cache_dir: Some(cache_dir.to_path_buf()),
        }
    }
}

/// Probes everything; independent probes run on their own threads (the slowest, a GPU driver
/// query, sets the pace).
pub fn probe(opts: &ProbeOptions) -> Machine {
    let os = os_name();
    let arch = std::env::consts::ARCH.to_string();
    std::thread::scope(|s| {
        let c = s.spawn(|| probe_compiler(opts, Lang::C));
        let cxx = s.spawn(|| probe_compiler(opts, Lang::Cxx));
        let cmake = s.spawn(|| probe_tool(opts, "cmake", tools::parse_cmake_version));
        let ninja = s.spawn(|| probe_tool(opts, "ninja", tools::parse_ninja_version));
        let git = s.spawn(|| probe_tool(opts, "git", tools::parse_git_version));
        let emcc = s.spawn(|| probe_tool(opts, "emcc", crate::wasm::parse_emcc_version));
        let node = s.spawn(|| probe_tool(opts, "node", crate::wasm::parse_node_version));
        let cuda = s.spawn(|| probe_cuda(opts));
        let nvidia = s.spawn(|| probe_nvidia(opts));
        let vulkan = s.spawn(|| probe_vulkan(opts));
        let rocm = s.spawn(|| probe_rocm(opts));
        let (memory, disk, sys_cores) = probe_system(&opts.disk_path);
        let mut cpu = probe_cpu(&arch);
        if cpu.physical_cores.is_none() {
            cpu.physical_cores = sys_cores;
        }
        Machine {
            schema: MACHINE_SCHEMA,
            origin: Origin::Probed,
            name: None,
            os: Fact::new(os.clone(), "std::env::consts::OS"),
            arch: Fact::new(arch.clone(), "std::env::consts::ARCH"),
            cpu,
            memory,
            disk,
            compilers: Compilers {
                c: c.join().expect("compiler probe thread"),
                cxx: cxx.join().expect("compiler probe thread"),
            },
            tools: Tools {
                cmake: cmake.join().expect("probe thread"),
                ninja: ninja.join().expect("probe thread"),
                git: git.join().expect("probe thread"),
                emcc: emcc.join().expect("probe thread"),
                node: node.join().expect("probe thread"),
            },
            cuda: cuda.join().expect("probe thread"),
            nvidia: nvidia.join().expect("probe thread"),
            vulkan: vulkan.join().expect("probe thread"),
            metal: probe_metal(&os, &arch),
            rocm: rocm.join().expect("probe thread"),
        }
    })
}

fn os_name() -> String {
    match std::env::consts::OS {
        "macos" => "macos".into(),
        other => other.into(),
    }
}

fn probe_cpu(arch: &str) -> Cpu {
    let path = "/proc/cpuinfo";
    if let Ok(text) = std::fs::read_to_string(path) {
        let info = cpu::parse_cpuinfo(&text);
        let features = cpu::features(arch, &info.raw_flags);
        return Cpu {
            vendor: info.vendor,
            model: info.model,
            features,
            x86_64_level: (arch == "x86_64").then(|| cpu::x86_64_level(&info.raw_flags)),
            physical_cores: info.physical_cores,
            logical_cores: Some(info.logical_cores).filter(|n| *n > 0).or_else(|| {
                std::thread::available_parallelism()
                    .ok()
                    .map(|n| n.get() as u32)
            }),
            source: path.into(),
        };
    }
    let features = cpu::detected_features();
    Cpu {
        vendor: None,
        model: None,
        x86_64_level: (arch == "x86_64").then(|| cpu::level_from_features(&features)),
        features,
        physical_cores: None,
        logical_cores: std::thread::available_parallelism()
            .ok()
            .map(|n| n.get() as u32),
        source: "runtime CPUID/HWCAP detection (std::arch)".into(),
    }
}

fn probe_system(disk_path: &Path) -> (Option<Memory>, Option<Disk>, Option<u32>) {
    let mut sys = sysinfo::System::new();
    sys.refresh_memory();
    let memory = (sys.total_memory() > 0).then(|| Memory {
        total_bytes: sys.total_memory(),
        available_bytes: Some(sys.available_memory()),
        source: "sysinfo (OS memory counters)".into(),
    });
    let cores = sysinfo::System::physical_core_count().map(|n| n as u32);
    // The cache dir may not exist yet: measure the nearest existing ancestor.
    let mut probe_at = disk_path.to_path_buf();
    while !probe_at.exists() {
        if !probe_at.pop() {
            break;
        }
    }
    let probe_at = probe_at.canonicalize().unwrap_or(probe_at);
    let disks = sysinfo::Disks::new_with_refreshed_list();
    let disk = disks
        .list()
        .iter()
        .filter(|d| probe_at.starts_with(d.mount_point()))
        .max_by_key(|d| d.mount_point().as_os_str().len())
        .map(|d| Disk {
            path: disk_path.display().to_string(),
            free_bytes: d.available_space(),
            source: format!(
                "sysinfo (file system mounted at {})",
                d.mount_point().display()
            ),
        });
    (memory, disk, cores)
}

#[derive(Clone, Copy)]
enum Lang {
    C,
    Cxx,
}

fn probe_compiler(opts: &ProbeOptions, lang: Lang) -> Detection<Compiler> {
    let (user, candidates, ext, var) = match lang {
        Lang::C => (&opts.cc, ["cc", "gcc", "clang", "cl"], "c", "$CC"),
        Lang::Cxx => (&opts.cxx, ["c++", "g++", "clang++", "cl"], "cpp", "$CXX"),
    };
    let mut looked = Vec::new();
    let found = match user {
        Some(u) => {
            looked.push(format!("{var}={u}"));
            let p = Path::new(u);
            if p.is_absolute() {
                p.is_file().then(|| p.to_path_buf())
            } else {
                which_in(u, &opts.path)
            }
        }
        None => {
            looked.push(format!("PATH ({})", candidates.join(", ")));
            candidates.iter().find_map(|c| which_in(c, &opts.path))
        }
    };
    let Some(path) = found else {
        return Detection::NotFound { looked_in: looked };
    };
    // A private directory created exclusively (never a predictable /tmp path whose planted link
    // would make us write elsewhere); removed when `dir` drops.
    let dir = match crate::fsx::private_temp_dir(opts.cache_dir.as_deref(), "probe-") {
        Ok(d) => d,
        Err(e) => {
            return Detection::Failed {
                command: path.display().to_string(),
                reason: format!("cannot make a temporary directory for the probe file: {e}"),
            }
        }
    };
    let file = dir.path().join(format!("probe.{ext}"));
    if let Err(e) = std::fs::write(&file, compiler::PROBE_SOURCE) {
        return Detection::Failed {
            command: path.display().to_string(),
            reason: format!("cannot write probe file {}: {e}", file.display()),
        };
    }
    let is_msvc = path.file_stem().is_some_and(|s| s == "cl");
    let cmd = Cmd::new(&path)
        .arg(if is_msvc { "/EP" } else { "-E" })
        .arg(&file)
        .timeout(opts.timeout);
    let result = cmd.output();
    drop(dir);
    match result {
        Ok(out) => match compiler::parse_preprocessed(&out.stdout) {
            Some((family, version)) => Detection::Found(Compiler {
                native_cpu_features: (std::env::consts::ARCH == "x86_64"
                    && family != CompilerFamily::Msvc)
                    .then(|| native_features(opts, &path, lang))
                    .flatten(),
                path: path.display().to_string(),
                family,
                version,
                source: format!("{} (predefined macros)", cmd.display()),
            }),
            None => Detection::Failed {
                command: cmd.display(),
                reason: "preprocessing the probe file did not reveal a compiler family".into(),
            },
        },
        Err(e) => failed(&cmd, e),
    }
}

/// What `-march=native` enables for this compiler on this host: its predefined macros with
/// `-march=native` against those with `-march=x86-64` (`requirements::native_x86_features`).
/// `None` when the compiler cannot be asked (then the requirements fall back to the CPU's
/// features).
fn native_features(opts: &ProbeOptions, compiler: &Path, lang: Lang) -> Option<Vec<String>> {
    let x = match lang {
        Lang::C => "c",
        Lang::Cxx => "c++",
    };
    let macros = |march: &str| {
        Cmd::new(compiler)
            .arg(format!("-march={march}"))
            .args(["-dM", "-E", "-x", x, "-"])
            .stdin_bytes(Vec::new())
            .timeout(opts.timeout)
            .output()
            .ok()
            .map(|o| o.stdout)
    };
    let (base, native) = (macros("x86-64")?, macros("native")?);
    Some(crate::requirements::native_x86_features(&base, &native))
}

fn failed<T>(cmd: &Cmd, e: CmdError) -> Detection<T> {
    Detection::Failed {
        command: cmd.display(),
        reason: e.to_string(),
    }
}

fn probe_tool(
    opts: &ProbeOptions,
    name: &str,
    parse: fn(&str) -> Option<String>,
) -> Detection<Tool> {
    let Some(path) = which_in(name, &opts.path) else {
        return Detection::NotFound {
            looked_in: vec!["PATH".into()],
        };
    };
    let cmd = Cmd::new(&path).arg("--version").timeout(opts.timeout);
    match cmd.output() {
        Ok(out) => match parse(&out.combined()) {
            Some(version) => Detection::Found(Tool {
                path: path.display().to_string(),
                version,
                source: cmd.display(),
            }),
            None => Detection::Failed {
                command: cmd.display(),
                reason: format!("unrecognised output: {}", out.combined().trim()),
            },
        },
        Err(e) => failed(&cmd, e),
    }
}

pub fn probe_cuda(opts: &ProbeOptions) -> Detection<CudaToolkit> {
    // Order: explicit toolkit variables, then PATH, then the installers' default locations, then
    // the toolkit installed from the CUDA wheels into the cache. A root is recorded (and passed to
    // CMake by the profile) when CMake would not find the toolkit by itself.
    let mut looked = Vec::new();
    let mut candidates: Vec<(PathBuf, Option<PathBuf>, bool)> = Vec::new();
    for (var, root) in &opts.cuda_roots {
        looked.push(format!("{var}/bin"));
        candidates.push((
            root.join("bin").join(exe("nvcc")),
            Some(root.clone()),
            false,
        ));
    }
    looked.push("PATH".into());
    if let Some(p) = which_in("nvcc", &opts.path) {
        candidates.push((p, None, false));
    }
    for root in ["/usr/local/cuda", "/opt/cuda"] {
        looked.push(format!("{root}/bin"));
        candidates.push((Path::new(root).join("bin/nvcc"), None, false));
    }
    if let Some(root) = &opts.cuda_wheels {
        looked.push(format!("{} (CUDA wheels)", root.display()));
        candidates.push((root.join("bin").join(exe("nvcc")), Some(root.clone()), true));
    }
    let Some((nvcc, root, from_wheels)) = candidates.into_iter().find(|(p, _, _)| p.is_file())
    else {
        return Detection::NotFound { looked_in: looked };
    };
    ask_nvcc(&nvcc, root.as_deref(), from_wheels, opts.timeout)
}

/// The toolkit whose compiler is `nvcc`: its release from `nvcc --version`, never from the path.
pub fn ask_nvcc(
    nvcc: &Path,
    root: Option<&Path>,
    from_wheels: bool,
    timeout: Duration,
) -> Detection<CudaToolkit> {
    let cmd = Cmd::new(nvcc).arg("--version").timeout(timeout);
    match cmd.output() {
        Ok(out) => match nvidia::parse_nvcc_version(&out.stdout) {
            Some(version) => Detection::Found(CudaToolkit {
                nvcc: nvcc.display().to_string(),
                version,
                source: cmd.display(),
                root: root.map(|r| r.display().to_string()),
                from_wheels,
            }),
            None => Detection::Failed {
                command: cmd.display(),
                reason: "no `release X.Y` in its output".into(),
            },
        },
        Err(e) => failed(&cmd, e),
    }
}

fn exe(name: &str) -> String {
    if cfg!(windows) {
        format!("{name}.exe")
    } else {
        name.to_string()
    }
}

fn probe_nvidia(opts: &ProbeOptions) -> Detection<NvidiaGpus> {
    let Some(smi) = which_in("nvidia-smi", &opts.path) else {
        return Detection::NotFound {
            looked_in: vec!["PATH (nvidia-smi)".into()],
        };
    };
    let cmd = Cmd::new(&smi)
        .args(nvidia::NVIDIA_SMI_ARGS)
        .timeout(opts.timeout);
    let out = match cmd.run() {
        Ok(o) => o,
        Err(e) => return failed(&cmd, e),
    };
    match nvidia::parse_gpu_csv(&out.stdout) {
        Ok(gpus) => Detection::Found(NvidiaGpus {
            gpus,
            source: cmd.display(),
        }),
        Err(e) => Detection::Failed {
            command: cmd.display(),
            reason: format!("line {}: {} ({:?})", e.line, e.reason, e.text),
        },
    }
}

fn probe_vulkan(opts: &ProbeOptions) -> Detection<Vulkan> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    if let Some(sdk) = crate::env::vulkan_sdk() {
        dirs.push(sdk.join("lib"));
    }
    for d in [
        "/usr/lib/x86_64-linux-gnu",
        "/usr/lib/aarch64-linux-gnu",
        "/usr/lib64",
        "/usr/lib",
        "/usr/local/lib",
    ] {
        dirs.push(PathBuf::from(d));
    }
    let names = [
        "libvulkan.so.1",
        "libvulkan.so",
        "libvulkan.1.dylib",
        "vulkan-1.dll",
    ];
    let loader = dirs
        .iter()
        .flat_map(|d| names.iter().map(move |n| d.join(n)))
        .find(|p| p.exists());
    let Some(loader) = loader else {
        return Detection::NotFound {
            looked_in: dirs.iter().map(|d| d.display().to_string()).collect(),
        };
    };
    // Ask the loader: `vulkaninfo` enumerates the physical devices through it (full output: the
    // summary has no memory heaps).
    let (physical_devices, asked) = match which_in("vulkaninfo", &opts.path) {
        Some(p) => {
            let cmd = Cmd::new(p).timeout(opts.timeout);
            match cmd.run() {
                Ok(o) => (accel::parse_vulkaninfo(&o.stdout), cmd.display()),
                Err(e) => (Vec::new(), format!("`{}` failed: {e}", cmd.display())),
            }
        }
        None => (
            Vec::new(),
            "no vulkaninfo in PATH (package vulkan-tools): devices unknown".into(),
        ),
    };
    let glslc = which_in("glslc", &opts.path).or_else(|| {
        crate::env::vulkan_sdk()
            .map(|s| s.join("bin").join(exe("glslc")))
            .filter(|p| p.is_file())
    });
    Detection::Found(Vulkan {
        loader: loader.display().to_string(),
        devices: physical_devices.iter().map(|d| d.name.clone()).collect(),
        physical_devices,
        glslc: glslc.map(|p| p.display().to_string()),
        spirv_headers: spirv_headers(),
        headers: vulkan_headers(&opts.disk_path),
        source: format!("loader library on disk; devices from `{asked}`"),
    })
}

/// `SPIRV-HeadersConfig.cmake` in CMake's package search locations (`<prefix>/share/cmake`,
/// `<prefix>/lib/<triple>/cmake`, ...), where `find_package(SPIRV-Headers CONFIG)` finds it.
fn spirv_headers() -> Option<String> {
    let mut prefixes: Vec<PathBuf> = Vec::new();
    if let Some(sdk) = crate::env::vulkan_sdk() {
        prefixes.push(sdk);
    }
    prefixes.extend(["/usr", "/usr/local"].map(PathBuf::from));
    let subdirs = [
        "share/cmake",
        "lib/cmake",
        "lib64/cmake",
        "lib/x86_64-linux-gnu/cmake",
        "lib/aarch64-linux-gnu/cmake",
    ];
    prefixes
        .iter()
        .flat_map(|p| subdirs.iter().map(move |s| p.join(s)))
        .map(|d| d.join("SPIRV-Headers/SPIRV-HeadersConfig.cmake"))
        .find(|f| f.is_file())
        .map(|f| f.display().to_string())
}

/// The Vulkan headers a build would use: the system's when they are new enough for the pinned
/// tree, else the newest sufficient ones `prereqs` put into the cache, else the system's (too
/// old: the profile says so and `prereqs` provides newer ones).
fn vulkan_headers(cache_dir: &Path) -> Option<VulkanHeaders> {
    let read = |include: PathBuf, provider: &str| -> Option<VulkanHeaders> {
        let file = include.join("vulkan/vulkan_core.h");
        let text = std::fs::read_to_string(&file).ok()?;
        let (version, sufficient) = accel::parse_vulkan_core_h(&text)?;
        Some(VulkanHeaders {
            include_dir: include.display().to_string(),
            version,
            sufficient,
            provider: provider.into(),
            source: format!("{} (VK_HEADER_VERSION_COMPLETE)", file.display()),
        })
    };
    let mut system_dirs: Vec<PathBuf> = Vec::new();
    if let Some(sdk) = crate::env::vulkan_sdk() {
        system_dirs.push(sdk.join("include"));
    }
    system_dirs.extend(["/usr/include", "/usr/local/include"].map(PathBuf::from));
    let system = system_dirs.into_iter().find_map(|d| read(d, "system"));
    if system.as_ref().is_some_and(|h| h.sufficient) {
        return system;
    }
    let cached = crate::vulkan_headers::installed(cache_dir)
        .into_iter()
        .filter_map(|d| read(d, "cache"))
        .filter(|h| h.sufficient)
        .reduce(|a, b| {
            if tools::version_at_least(&a.version, &b.version) {
                a
            } else {
                b
            }
        });
    cached.or(system)
}

fn probe_metal(os: &str, arch: &str) -> Detection<Metal> {
    if os == "macos" {
        Detection::Found(Metal {
            source: format!("macOS on {arch}: Metal is part of the operating system"),
        })
    } else {
        Detection::NotApplicable {
            reason: format!("Metal exists only on Apple platforms (this is {os})"),
        }
    }
}

fn probe_rocm(opts: &ProbeOptions) -> Detection<Rocm> {
    let root = crate::env::rocm_path().unwrap_or_else(|| PathBuf::from("/opt/rocm"));
    let rocminfo = which_in("rocminfo", &opts.path)
        .or_else(|| Some(root.join("bin/rocminfo")).filter(|p| p.is_file()));
    let Some(rocminfo) = rocminfo else {
        return Detection::NotFound {
            looked_in: vec!["PATH".into(), root.join("bin").display().to_string()],
        };
    };
    let cmd = Cmd::new(&rocminfo).timeout(opts.timeout);
    let out = match cmd.run() {
        Ok(o) => o,
        Err(e) => return failed(&cmd, e),
    };
    let hip_version = which_in("hipconfig", &opts.path)
        .or_else(|| Some(root.join("bin/hipconfig")).filter(|p| p.is_file()))
        .and_then(|p| {
            Cmd::new(p)
                .arg("--version")
                .timeout(opts.timeout)
                .run()
                .ok()
        })
        .and_then(|o| accel::parse_hipconfig_version(&o.stdout));
    Detection::Found(Rocm {
        gfx_targets: accel::parse_rocminfo_targets(&out.stdout),
        hip_version,
        source: cmd.display(),
    })
}

/// `cargo xtask probe`: print the Machine.
pub fn run(ctx: &crate::context::Ctx, args: &ProbeArgs) -> anyhow::Result<std::process::ExitCode> {
    let mut opts = ProbeOptions::for_host(&ctx.cache_dir);
    opts.timeout = Duration::from_secs(args.timeout);
    let m = probe(&opts);
    if ctx.json {
        println!("{}", serde_json::to_string_pretty(&m)?);
    } else {
        print!("{}", crate::report::machine_text(&m));
    }
    Ok(std::process::ExitCode::SUCCESS)
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    /// The old probe wrote `probe.c` into `<tmp>/tunellama-probe-<pid>/`, following links: a
    /// directory link planted there, holding a `probe.c` link to a victim file, made the probe
    /// overwrite the victim. Now the probe makes its own private directory and removes it.
    #[test]
    fn the_compiler_probe_never_follows_a_link_planted_at_a_predictable_temp_path() {
        let attacker = tempfile::tempdir().unwrap();
        let victim = attacker.path().join("victim.txt");
        std::fs::write(&victim, "precious\n").unwrap();
        let trap = attacker.path().join("trap");
        std::fs::create_dir(&trap).unwrap();
        std::os::unix::fs::symlink(&victim, trap.join("probe.c")).unwrap();
        let planted = std::env::temp_dir().join(format!("tunellama-probe-{}", std::process::id()));
        // An older version's probe may have left a real directory there (same pid, another run).
        let _ = std::fs::remove_file(&planted);
        let _ = std::fs::remove_dir_all(&planted);
        std::os::unix::fs::symlink(&trap, &planted).unwrap();

        let cache = tempfile::tempdir().unwrap();
        let mut opts = ProbeOptions::for_host(cache.path());
        opts.cc = None;
        let found = probe_compiler(&opts, Lang::C);
        let _ = std::fs::remove_file(&planted);

        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
        assert_eq!(
            std::fs::read_dir(&trap).unwrap().count(),
            1,
            "nothing new in the planted directory"
        );
        assert!(
            matches!(found, Detection::Found(_)),
            "the probe still finds this machine's C compiler: {found:?}"
        );
        let tmp = cache.path().join("tmp");
        let left: Vec<_> = std::fs::read_dir(&tmp)
            .unwrap_or_else(|e| panic!("{}: {e}", tmp.display()))
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert!(
            left.is_empty(),
            "left behind in {}: {left:?}",
            tmp.display()
        );
    }

    #[test]
    fn the_private_temp_dir_is_mode_0700_and_removed_on_drop() {
        use std::os::unix::fs::PermissionsExt;
        let cache = tempfile::tempdir().unwrap();
        let d = crate::fsx::private_temp_dir(Some(cache.path()), "probe-").unwrap();
        let path = d.path().to_path_buf();
        assert!(path.starts_with(cache.path().join("tmp")));
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        drop(d);
        assert!(!path.exists());
        let sys = crate::fsx::private_temp_dir(None, "probe-").unwrap();
        assert!(sys.path().starts_with(std::env::temp_dir()));
    }
}

// --- command-line options of this stage (composed by `crate::cli`; nothing here imports it)

#[derive(Debug, clap::Args)]
pub struct ProbeArgs {
    /// Seconds after which a probe command (e.g. a wedged nvidia-smi) is stopped
    #[arg(long, default_value_t = 10, value_name = "SECS")]
    pub timeout: u64,
}
