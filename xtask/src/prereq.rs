//! System prerequisites (cmake, ninja, a C/C++ compiler): find what is missing, say what will be
//! installed and why, install it through the system package manager, or print the exact command.

use crate::cmd::{which_in, Cmd};
use crate::context::Ctx;
use crate::machine::{Detection, Machine};
use crate::probe::tools::version_at_least;
use std::io::{BufRead, Write};
use std::path::Path;

/// llama.cpp's `cmake_minimum_required(VERSION 3.14...)`.
pub const CMAKE_MIN: &str = "3.14";

/// One missing tool and the package that provides it on each package manager.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Need {
    pub tool: String,
    pub why: String,
    pub apt: &'static str,
    pub dnf: &'static str,
    pub pacman: &'static str,
    pub brew: &'static str,
    pub winget: &'static str,
}

/// What a source build needs that the Machine lacks.
pub fn missing_for_build(m: &Machine) -> Vec<Need> {
    let mut out = Vec::new();
    match &m.tools.cmake {
        Detection::Found(t) if version_at_least(&t.version, CMAKE_MIN) => {}
        Detection::Found(t) => out.push(need(
            "cmake",
            &format!(
                "cmake {} is older than {CMAKE_MIN}, which llama.cpp requires",
                t.version
            ),
            "cmake",
        )),
        _ => out.push(need("cmake", "configures the llama.cpp build", "cmake")),
    }
    if m.tools.ninja.found().is_none() {
        out.push(Need {
            apt: "ninja-build",
            dnf: "ninja-build",
            ..need(
                "ninja",
                "runs the compile in parallel with [n/m] progress",
                "ninja",
            )
        });
    }
    if m.compilers.c.found().is_none() || m.compilers.cxx.found().is_none() {
        out.push(Need {
            apt: "build-essential",
            dnf: "gcc-c++",
            pacman: "base-devel",
            brew: "llvm",
            winget: "Microsoft.VisualStudio.2022.BuildTools",
            ..need("c/c++ compiler", "compiles llama.cpp", "gcc")
        });
    }
    out
}

/// What cross-building for `target_arch` on this host and running the result under emulation
/// needs (`aarch64`: Debian's arm64 cross compilers and qemu-user; `cross.rs`).
pub fn missing_for_cross(target_arch: &str) -> Vec<Need> {
    let path = crate::env::path_var();
    cross_needs(target_arch)
        .into_iter()
        .filter(|n| which_in(&n.tool, &path).is_none())
        .collect()
}

/// Every tool a cross build for `target_arch` uses, with its packages (Debian 12 names for apt).
pub fn cross_needs(target_arch: &str) -> Vec<Need> {
    if target_arch == "wasm32" {
        return wasm_needs();
    }
    if target_arch != "aarch64" {
        return Vec::new();
    }
    let triple = crate::cross::AARCH64_TRIPLE;
    [
        (
            format!("{triple}-gcc"),
            "the C cross compiler for arm64 builds of llama.cpp",
            "gcc-aarch64-linux-gnu",
            "gcc-aarch64-linux-gnu",
            "aarch64-linux-gnu-gcc",
        ),
        (
            format!("{triple}-g++"),
            "the C++ cross compiler for arm64 builds of llama.cpp",
            "g++-aarch64-linux-gnu",
            "gcc-c++-aarch64-linux-gnu",
            "aarch64-linux-gnu-gcc",
        ),
        (
            "qemu-aarch64".to_string(),
            "runs the arm64 verification program on emulated Cortex-A72/Neoverse-N1 CPUs",
            "qemu-user",
            "qemu-user",
            "qemu-user",
        ),
    ]
    .into_iter()
    .map(|(tool, why, apt, dnf, pacman)| Need {
        apt,
        dnf,
        pacman,
        ..need(&tool, why, apt)
    })
    .collect()
}

/// The WebAssembly variant (`wasm.rs`): Debian's Emscripten 3.1.6 (emcc, em++, em-config, emnm;
/// it brings clang/lld 14, binaryen and node-acorn) and node, which runs the module.
fn wasm_needs() -> Vec<Need> {
    vec![
        Need {
            dnf: "emscripten",
            pacman: "emscripten",
            ..need(
                "emcc",
                "compiles llama.cpp and the tunellama module to WebAssembly (Emscripten)",
                "emscripten",
            )
        },
        Need {
            pacman: "nodejs",
            ..need(
                "node",
                "runs the WebAssembly module for its verification and the JavaScript API test",
                "nodejs",
            )
        },
    ]
}

/// Browsers the wasm browser test drives (DevTools protocol over a pipe), in order of preference:
/// Debian's package, Ubuntu's name for it, Google's build (preinstalled on GitHub's runners).
pub const CHROMIUM_NAMES: &[&str] = &["chromium", "chromium-browser", "google-chrome"];

/// The Chromium-family browser on PATH, if any.
pub fn chromium() -> Option<std::path::PathBuf> {
    let path = crate::env::path_var();
    CHROMIUM_NAMES.iter().find_map(|n| which_in(n, &path))
}

/// What the browser test of the wasm variant needs (`tests/wasm_browser.rs`): a Chromium-family
/// browser (Debian's `chromium` is installed when none is there), run headless against
/// `cargo xtask serve-wasm`.
pub fn missing_for_browser() -> Vec<Need> {
    if chromium().is_some() {
        return Vec::new();
    }
    vec![need(
        "chromium",
        "the wasm variant's page is tested in headless Chromium (tests/wasm_browser.rs)",
        "chromium",
    )]
}

/// Installs Chromium for the browser test (saying what and why), then checks again.
pub fn ensure_browser(ctx: &Ctx) -> anyhow::Result<()> {
    let needs = missing_for_browser();
    if needs.is_empty() {
        return Ok(());
    }
    install(ctx, &needs)?;
    none_still_missing(&missing_for_browser())
}

/// Installs what cross-building for `target_arch` needs (saying what and why), then checks again.
pub fn ensure_cross_tools(ctx: &Ctx, target_arch: &str) -> anyhow::Result<()> {
    let needs = missing_for_cross(target_arch);
    if needs.is_empty() {
        return Ok(());
    }
    install(ctx, &needs)?;
    none_still_missing(&missing_for_cross(target_arch))
}

/// What the test suite needs beyond a build: pkg-config (tests/lib_pkg_config.rs compiles and runs
/// a C program through the installed `llama.pc`, as `--lib-only` users link their programs), and
/// Python's jinja2 for the system `python3` (tests/chat_template.rs renders every chat template
/// with it, configured as Hugging Face's `apply_chat_template` configures it, and compares).
pub fn missing_for_tests() -> Vec<Need> {
    let path = crate::env::path_var();
    let mut out = Vec::new();
    if which_in("pkg-config", &path).is_none() {
        out.push(Need {
            dnf: "pkgconf-pkg-config",
            pacman: "pkgconf",
            brew: "pkgconf",
            winget: "bloodrush.pkg-config-lite",
            ..need(
                "pkg-config",
                "the tests link a C program through the installed llama.pc",
                "pkg-config",
            )
        });
    }
    if !python_imports("jinja2") {
        out.push(Need {
            pacman: "python-jinja",
            ..need(
                "python3 jinja2",
                "the chat-template tests compare tunellama's renderer with Python's jinja2, byte for byte",
                "python3-jinja2",
            )
        });
    }
    // tests/serve_openai.rs runs the openai Python client from a venv (crate::test_python).
    if cfg!(target_os = "linux") && !python_imports("venv, ensurepip") {
        out.push(need(
            "python3-venv",
            "the server tests run the openai Python client from a venv",
            "python3-venv",
        ));
    }
    out
}

/// The Python the system's package manager installs modules for: `/usr/bin/python3` where it
/// exists (a pyenv or venv `python3` first on PATH does not see `apt-get install python3-...`),
/// else `python3` from PATH. The tests run their Python reference scripts with it.
pub fn system_python() -> std::path::PathBuf {
    let usr = Path::new("/usr/bin/python3");
    if usr.exists() {
        usr.to_path_buf()
    } else {
        "python3".into()
    }
}

/// Whether [`system_python`] imports `module` (false when there is no python3).
fn python_imports(module: &str) -> bool {
    Cmd::new(system_python())
        .args(["-c", &format!("import {module}")])
        .output()
        .is_ok_and(|o| o.success())
}

/// Installs what the tests need (saying what and why), then checks again.
pub fn ensure_test_tools(ctx: &Ctx) -> anyhow::Result<()> {
    let needs = missing_for_tests();
    if needs.is_empty() {
        return Ok(());
    }
    install(ctx, &needs)?;
    none_still_missing(&missing_for_tests())
}

/// After an install: an error naming what is still missing, if anything is.
fn none_still_missing(still: &[Need]) -> anyhow::Result<()> {
    if !still.is_empty() {
        anyhow::bail!(
            "still missing after installing: {}",
            still
                .iter()
                .map(|n| n.tool.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(())
}

/// What a Vulkan build needs that the Machine lacks (the loader's development files, glslc,
/// SPIR-V headers, vulkaninfo to ask the loader for devices); `software_device` adds Mesa's
/// lavapipe, the CPU-type Vulkan device the tests run on. Headers too old for the pinned tree
/// are not a package here: [`vulkan_headers_needed`] says so and `ensure_vulkan` provides them.
pub fn missing_for_vulkan(m: &Machine, software_device: bool) -> Vec<Need> {
    let mut out = Vec::new();
    let v = m.vulkan.found();
    let dev_loader = v.is_some_and(|v| {
        Path::new(&v.loader)
            .parent()
            .is_some_and(|d| d.join("libvulkan.so").exists() || d.join("vulkan-1.lib").exists())
            && v.headers.is_some()
    });
    if !dev_loader {
        out.push(Need {
            apt: "libvulkan-dev",
            dnf: "vulkan-loader-devel",
            pacman: "vulkan-icd-loader",
            ..need(
                "vulkan loader (development files)",
                "the Vulkan backend links the loader (libvulkan.so) and includes its headers",
                "vulkan-loader",
            )
        });
    }
    if v.and_then(|v| v.glslc.as_ref()).is_none() {
        out.push(Need {
            dnf: "glslc",
            pacman: "shaderc",
            brew: "shaderc",
            ..need("glslc", "compiles ggml's Vulkan shaders to SPIR-V", "glslc")
        });
    }
    if v.and_then(|v| v.spirv_headers.as_ref()).is_none() {
        out.push(Need {
            dnf: "spirv-headers-devel",
            brew: "spirv-headers",
            ..need(
                "SPIR-V headers",
                "ggml-vulkan's CMake requires the SPIRV-Headers package",
                "spirv-headers",
            )
        });
    }
    if which_in("vulkaninfo", &crate::env::path_var()).is_none() {
        out.push(Need {
            pacman: "vulkan-tools",
            brew: "vulkan-tools",
            ..need(
                "vulkaninfo",
                "asks the Vulkan loader which devices (type, memory) this machine has",
                "vulkan-tools",
            )
        });
    }
    if software_device
        && !v.is_some_and(|v| {
            v.physical_devices
                .iter()
                .any(|d| d.device_type == crate::machine::VulkanDeviceType::Cpu)
        })
    {
        out.push(Need {
            dnf: "mesa-vulkan-drivers",
            pacman: "vulkan-swrast",
            ..need(
                "lavapipe (Mesa's CPU Vulkan device)",
                "the Vulkan tests run the offload path on this CPU-type device",
                "mesa-vulkan-drivers",
            )
        });
    }
    out
}

/// The Vulkan headers a build would use are too old for the pinned tree (or absent).
pub fn vulkan_headers_needed(m: &Machine) -> bool {
    !m.vulkan
        .found()
        .and_then(|v| v.headers.as_ref())
        .is_some_and(|h| h.sufficient)
}

/// Installs what a Vulkan build (and, with `software_device`, the Vulkan tests) needs: system
/// packages through the package manager, then newer headers into the cache when the system's are
/// too old. Says what and why first (asks on a terminal). Returns the re-probed Machine.
pub fn ensure_vulkan(ctx: &Ctx, software_device: bool) -> anyhow::Result<Machine> {
    let opts = crate::probe::ProbeOptions::for_host(&ctx.cache_dir);
    let mut m = crate::probe::probe(&opts);
    let needs = missing_for_vulkan(&m, software_device);
    if !needs.is_empty() {
        install(ctx, &needs)?;
        m = crate::probe::probe(&opts);
    }
    if vulkan_headers_needed(&m) {
        let plan = crate::vulkan_headers::plan(&ctx.cache_dir)?;
        let have = m
            .vulkan
            .found()
            .and_then(|v| v.headers.as_ref())
            .map(|h| format!("{} at {}", h.version, h.include_dir))
            .unwrap_or_else(|| "none".into());
        eprintln!(
            "the Vulkan headers here ({have}) are too old for the pinned llama.cpp (it uses VK_EXT_layer_settings)."
        );
        eprintln!(
            "tunellama will fetch the headers of Debian {}'s {} into {} (apt-get download with a private source list `{}` and state in {}; the system's apt is not touched, nothing is installed system-wide)",
            crate::vulkan_headers::SUITE,
            crate::vulkan_headers::PACKAGE,
            plan.toolchains.display(),
            plan.source_line,
            plan.apt_dir.display()
        );
        if ctx.interactive {
            eprint!("proceed? [y/N] ");
            let _ = std::io::stderr().flush();
            let mut answer = String::new();
            let _ = std::io::stdin().lock().read_line(&mut answer);
            if !matches!(answer.trim(), "y" | "Y" | "yes") {
                anyhow::bail!("newer Vulkan headers are needed for a Vulkan build; declined");
            }
        }
        let dir = crate::vulkan_headers::provide(&plan)?;
        ctx.info(format!("Vulkan headers ready: {}", dir.display()));
        m = crate::probe::probe(&opts);
    }
    let still = missing_for_vulkan(&m, software_device);
    if !still.is_empty() || vulkan_headers_needed(&m) {
        anyhow::bail!(
            "still missing for a Vulkan build after installing: {}{}",
            still
                .iter()
                .map(|n| n.tool.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            if vulkan_headers_needed(&m) {
                " (and headers new enough)"
            } else {
                ""
            }
        );
    }
    Ok(m)
}

fn need(tool: &str, why: &str, pkg: &'static str) -> Need {
    Need {
        tool: tool.into(),
        why: why.into(),
        apt: pkg,
        dnf: pkg,
        pacman: pkg,
        brew: pkg,
        winget: match pkg {
            "cmake" => "Kitware.CMake",
            "ninja" => "Ninja-build.Ninja",
            _ => pkg,
        },
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Manager {
    Apt,
    Dnf,
    Pacman,
    Brew,
    Winget,
    Choco,
}

impl Manager {
    pub fn detect() -> Option<Manager> {
        let path = crate::env::path_var();
        [
            ("apt-get", Manager::Apt),
            ("dnf", Manager::Dnf),
            ("pacman", Manager::Pacman),
            ("brew", Manager::Brew),
            ("winget", Manager::Winget),
        ]
        .into_iter()
        .find(|(bin, _)| which_in(bin, &path).is_some())
        .map(|(_, m)| m)
    }

    fn package(self, n: &Need) -> &'static str {
        match self {
            Manager::Apt => n.apt,
            Manager::Dnf => n.dnf,
            Manager::Pacman => n.pacman,
            Manager::Brew => n.brew,
            Manager::Winget => n.winget,
            Manager::Choco => match n.tool.as_str() {
                "cmake" => "cmake",
                "ninja" => "ninja",
                _ => "visualstudio2022buildtools",
            },
        }
    }

    /// The commands that install `needs`, as argv lists (the first element is the program).
    pub fn commands(self, needs: &[Need], root: bool) -> Vec<Vec<String>> {
        let pkgs: Vec<String> = needs.iter().map(|n| self.package(n).to_string()).collect();
        let sudo = |mut v: Vec<String>| {
            if !root && matches!(self, Manager::Apt | Manager::Dnf | Manager::Pacman) {
                v.insert(0, "sudo".into());
            }
            v
        };
        let s = |x: &[&str]| x.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        match self {
            Manager::Apt => vec![
                sudo(s(&["apt-get", "update"])),
                sudo(
                    [
                        s(&["apt-get", "install", "-y", "--no-install-recommends"]),
                        pkgs,
                    ]
                    .concat(),
                ),
            ],
            Manager::Dnf => vec![sudo([s(&["dnf", "install", "-y"]), pkgs].concat())],
            Manager::Pacman => vec![sudo(
                [s(&["pacman", "-S", "--needed", "--noconfirm"]), pkgs].concat(),
            )],
            Manager::Brew => vec![[s(&["brew", "install"]), pkgs].concat()],
            Manager::Choco => vec![[s(&["choco", "install", "-y"]), pkgs].concat()],
            Manager::Winget => pkgs
                .into_iter()
                .map(|p| s(&["winget", "install", "--silent", "--id", &p]))
                .collect(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PrereqError {
    #[error("missing {tools}, and no supported package manager (apt-get, dnf, pacman, brew, winget, choco) was found")]
    NoManager { tools: String },
    #[error("missing {tools}; installation declined")]
    Declined { tools: String, command: String },
    #[error("installing {tools} failed")]
    InstallFailed {
        tools: String,
        command: String,
        #[source]
        source: Box<crate::cmd::CmdError>,
    },
    #[error("missing {tools} and not allowed to install (not root and no sudo)")]
    NoPrivilege { tools: String, command: String },
}

impl crate::error::Hint for PrereqError {
    fn hint(&self) -> Option<String> {
        Some(match self {
            PrereqError::NoManager { tools } => format!(
                "install {tools} with your system's package manager, then run the command again"
            ),
            PrereqError::Declined { command, .. }
            | PrereqError::NoPrivilege { command, .. }
            | PrereqError::InstallFailed { command, .. } => {
                format!("run `{command}` yourself, then run the command again")
            }
        })
    }
}

fn is_root() -> bool {
    #[cfg(unix)]
    {
        Cmd::new("id")
            .arg("-u")
            .run()
            .map(|o| o.stdout.trim() == "0")
            .unwrap_or(false)
    }
    #[cfg(not(unix))]
    {
        false
    }
}

/// Installs `needs` after saying what and why; asks first when interactive (unless `--yes`).
pub fn install(ctx: &Ctx, needs: &[Need]) -> Result<(), PrereqError> {
    if needs.is_empty() {
        return Ok(());
    }
    let tools = needs
        .iter()
        .map(|n| n.tool.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    let Some(mgr) = Manager::detect() else {
        return Err(PrereqError::NoManager { tools });
    };
    let root = is_root();
    let cmds = mgr.commands(needs, root);
    let shown = cmds
        .iter()
        .map(|c| c.join(" "))
        .collect::<Vec<_>>()
        .join(" && ");
    if !root
        && matches!(mgr, Manager::Apt | Manager::Dnf | Manager::Pacman)
        && which_in("sudo", &crate::env::path_var()).is_none()
    {
        return Err(PrereqError::NoPrivilege {
            tools,
            command: shown,
        });
    }
    eprintln!("tunellama needs these system tools, which are missing:");
    for n in needs {
        eprintln!("  - {} ({}): package {}", n.tool, n.why, mgr.package(n));
    }
    eprintln!("it will run: {shown}");
    if ctx.interactive {
        eprint!("proceed? [y/N] ");
        let _ = std::io::stderr().flush();
        let mut answer = String::new();
        let _ = std::io::stdin().lock().read_line(&mut answer);
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            return Err(PrereqError::Declined {
                tools,
                command: shown,
            });
        }
    }
    for argv in &cmds {
        let mut c = Cmd::new(&argv[0]).args(&argv[1..]);
        if mgr == Manager::Apt {
            c = c.env("DEBIAN_FRONTEND", "noninteractive");
        }
        c.run_to_stderr().map_err(|e| PrereqError::InstallFailed {
            tools: tools.clone(),
            command: shown.clone(),
            source: Box::new(e),
        })?;
    }
    Ok(())
}

/// What installing some missing tools would do, decided without doing it (`setup --dry-run`
/// and `setup`'s plan): the tools and why, the package manager, its packages and commands.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct InstallPlan {
    pub tools: Vec<PlannedTool>,
    /// The package manager that would run (`None`: none found, installing would fail).
    pub manager: Option<Manager>,
    /// The exact commands, joined as a shell would show them (empty when nothing is missing).
    pub commands: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PlannedTool {
    pub tool: String,
    pub why: String,
    /// The package of the detected manager (the apt name when none was found).
    pub package: String,
}

/// What [`install`] would do for `needs`. Reads PATH only; runs nothing, installs nothing.
pub fn would_install(needs: &[Need]) -> InstallPlan {
    let manager = Manager::detect();
    InstallPlan {
        tools: needs
            .iter()
            .map(|n| PlannedTool {
                tool: n.tool.clone(),
                why: n.why.clone(),
                package: manager.map_or(n.apt, |m| m.package(n)).to_string(),
            })
            .collect(),
        manager,
        commands: match manager {
            Some(m) if !needs.is_empty() => m
                .commands(needs, is_root())
                .iter()
                .map(|c| c.join(" "))
                .collect(),
            _ => Vec::new(),
        },
    }
}

/// What [`ensure_build_tools`] would install on a host probed as `m` (nothing is run).
pub fn would_install_build_tools(m: &Machine) -> InstallPlan {
    would_install(&missing_for_build(m))
}

/// What [`ensure_vulkan`] would install on a host probed as `m` (nothing is run), and whether it
/// would also fetch newer Vulkan headers into the cache.
pub fn would_install_vulkan(m: &Machine, software_device: bool) -> (InstallPlan, bool) {
    (
        would_install(&missing_for_vulkan(m, software_device)),
        vulkan_headers_needed(m),
    )
}

/// Probes the host, installs what a source build lacks, and returns the re-probed Machine.
pub fn ensure_build_tools(ctx: &Ctx) -> anyhow::Result<Machine> {
    let opts = crate::probe::ProbeOptions::for_host(&ctx.cache_dir);
    let m = crate::probe::probe(&opts);
    let needs = missing_for_build(&m);
    if needs.is_empty() {
        return Ok(m);
    }
    install(ctx, &needs)?;
    let m = crate::probe::probe(&opts);
    none_still_missing(&missing_for_build(&m))?;
    Ok(m)
}

/// `cargo xtask prereqs`: show (or install, with `--install`) what a build needs.
pub fn run(ctx: &Ctx, args: &PrereqArgs) -> anyhow::Result<std::process::ExitCode> {
    let wants_vulkan = |m: &Machine| -> anyhow::Result<bool> {
        if args.vulkan {
            return Ok(true);
        }
        let o = crate::profile::load_overrides(ctx, args.overrides.as_deref())?;
        Ok(crate::profile::plan(m, &o).decision("GGML_VULKAN") == Some("ON"))
    };
    if let Some(arch) = args
        .cross
        .as_deref()
        .filter(|a| !["aarch64", "wasm32"].contains(a))
    {
        anyhow::bail!(
            "--cross {arch}: only aarch64 (arm64 Linux on an x86-64 Linux host) and wasm32 (Emscripten) are supported"
        );
    }
    if args.install {
        let mut m = ensure_build_tools(ctx)?;
        if let Some(arch) = &args.cross {
            ensure_cross_tools(ctx, arch)?;
        }
        if args.cuda_wheels {
            let root = crate::cuda_wheels::ensure(ctx)?;
            ctx.info(format!(
                "CUDA toolkit from the wheels: {} (the probe finds it there; `--cuda-toolkit wheels` uses it for a recorded machine)",
                root.display()
            ));
        } else if !m.gpus().is_empty() && m.cuda.found().is_none() {
            ctx.info(format!("an NVIDIA GPU but no CUDA toolkit: `cargo xtask prereqs --install --cuda-wheels` installs CUDA {} from NVIDIA's Python wheels into the cache ({})", crate::cuda_wheels::NVCC_VERSION, crate::cuda_wheels::CU12_NOTE));
        }
        if wants_vulkan(&m)? {
            m = ensure_vulkan(ctx, false)?;
            ctx.info(format!(
                "Vulkan build prerequisites present (headers {})",
                m.vulkan
                    .found()
                    .and_then(|v| v.headers.as_ref())
                    .map(|h| format!("{} at {}", h.version, h.include_dir))
                    .unwrap_or_default()
            ));
        }
        ctx.info(format!(
            "all build prerequisites present (cmake {}, ninja {})",
            m.tools
                .cmake
                .found()
                .map(|t| t.version.as_str())
                .unwrap_or("?"),
            m.tools
                .ninja
                .found()
                .map(|t| t.version.as_str())
                .unwrap_or("?")
        ));
        if ctx.json {
            // What is still missing after the install (nothing when it worked), as the plain
            // `prereqs --json` reports it.
            let mut still = missing_for_build(&m);
            if let Some(arch) = &args.cross {
                still.extend(missing_for_cross(arch));
            }
            if wants_vulkan(&m)? {
                still.extend(missing_for_vulkan(&m, false));
            }
            println!(
                "{}",
                serde_json::to_string_pretty(
                    &serde_json::json!({ "installed": true, "missing": still })
                )?
            );
        }
        return Ok(std::process::ExitCode::SUCCESS);
    }
    let m = crate::probe::probe(&crate::probe::ProbeOptions::for_host(&ctx.cache_dir));
    let mut needs = missing_for_build(&m);
    if let Some(arch) = &args.cross {
        needs.extend(missing_for_cross(arch));
    }
    let vulkan = wants_vulkan(&m)?;
    let mut headers_missing = false;
    if vulkan {
        needs.extend(missing_for_vulkan(&m, false));
        headers_missing = vulkan_headers_needed(&m);
    }
    if headers_missing {
        let have = m
            .vulkan
            .found()
            .and_then(|v| v.headers.as_ref())
            .map(|h| h.version.clone())
            .unwrap_or_else(|| "none".into());
        needs.push(Need {
            tool: "Vulkan headers new enough for the pinned llama.cpp".into(),
            why: format!(
                "the headers here ({have}) lack VK_EXT_layer_settings, which ggml-vulkan.cpp uses; `prereqs --install` fetches Debian {}'s {} headers into {} with a private apt state (the system is not touched)",
                crate::vulkan_headers::SUITE,
                crate::vulkan_headers::PACKAGE,
                crate::vulkan_headers::toolchains_dir(&ctx.cache_dir).display()
            ),
            apt: "",
            dnf: "",
            pacman: "",
            brew: "",
            winget: "",
        });
    }
    if ctx.json {
        println!("{}", serde_json::to_string_pretty(&needs)?);
    } else if needs.is_empty() {
        println!("all build prerequisites present");
        if !m.gpus().is_empty() && m.cuda.found().is_none() {
            println!(
                "optional: CUDA toolkit for the NVIDIA GPU: `cargo xtask prereqs --install --cuda-wheels` installs CUDA {} from NVIDIA's Python wheels into the cache ({})",
                crate::cuda_wheels::NVCC_VERSION,
                crate::cuda_wheels::CU12_NOTE
            );
        }
    } else {
        for n in &needs {
            println!("missing: {} ({})", n.tool, n.why);
        }
        let packaged: Vec<Need> = needs
            .iter()
            .filter(|n| !n.apt.is_empty())
            .cloned()
            .collect();
        if let (Some(mgr), false) = (Manager::detect(), packaged.is_empty()) {
            let cmds = mgr.commands(&packaged, is_root());
            println!(
                "install with: {}",
                cmds.iter()
                    .map(|c| c.join(" "))
                    .collect::<Vec<_>>()
                    .join(" && ")
            );
        }
    }
    Ok(if needs.is_empty() {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::from(1)
    })
}

// --- command-line options of this stage (composed by `crate::cli`; nothing here imports it)

#[derive(Debug, clap::Args)]
pub struct PrereqArgs {
    /// Install what is missing through the system package manager (asks first unless --yes/CI)
    #[arg(long)]
    pub install: bool,
    /// With --install: also install the CUDA 13 toolkit from NVIDIA's Python wheels into the
    /// cache (nvcc, cudart, cuBLAS; about 1 GiB; python3-pip through the package manager if missing)
    #[arg(long, requires = "install")]
    pub cuda_wheels: bool,
    /// Also what cross-building for ARCH and running it under emulation needs (`aarch64`: the
    /// arm64 cross compilers and qemu-user; `wasm32`: emscripten and nodejs)
    #[arg(long, value_name = "ARCH")]
    pub cross: Option<String>,
    /// Also what a Vulkan build needs (loader, glslc, SPIR-V headers, vulkaninfo, headers new
    /// enough for the pinned tree); implied when the profile (with --overrides) chooses Vulkan
    #[arg(long)]
    pub vulkan: bool,
    /// Override file consulted for `[backends] vulkan` [default: profiles/local.toml]
    #[arg(long, value_name = "FILE")]
    pub overrides: Option<std::path::PathBuf>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arm64_cross_builds_install_debian_cross_compilers_and_qemu_user() {
        let needs = cross_needs("aarch64");
        let tools: Vec<&str> = needs.iter().map(|n| n.tool.as_str()).collect();
        assert_eq!(
            tools,
            [
                "aarch64-linux-gnu-gcc",
                "aarch64-linux-gnu-g++",
                "qemu-aarch64"
            ]
        );
        assert_eq!(
            Manager::Apt.commands(&needs, true)[1].join(" "),
            "apt-get install -y --no-install-recommends gcc-aarch64-linux-gnu g++-aarch64-linux-gnu qemu-user"
        );
        assert!(cross_needs("riscv64").is_empty());
    }

    #[test]
    fn wasm_builds_install_emscripten_and_nodejs() {
        let needs = cross_needs("wasm32");
        let tools: Vec<&str> = needs.iter().map(|n| n.tool.as_str()).collect();
        assert_eq!(tools, ["emcc", "node"]);
        assert_eq!(
            Manager::Apt.commands(&needs, true)[1].join(" "),
            "apt-get install -y --no-install-recommends emscripten nodejs"
        );
    }

    #[test]
    fn a_machine_without_vulkan_needs_the_loader_glslc_spirv_headers_and_newer_headers() {
        let m: Machine = serde_json::from_value(serde_json::json!({
            "schema": 1, "origin": "probed",
            "os": {"value": "linux", "source": "t"}, "arch": {"value": "x86_64", "source": "t"},
            "cpu": {}, "vulkan": {"status": "not_found", "looked_in": ["/usr/lib"]}
        }))
        .unwrap();
        let apt: Vec<&str> = missing_for_vulkan(&m, true).iter().map(|n| n.apt).collect();
        for pkg in [
            "libvulkan-dev",
            "glslc",
            "spirv-headers",
            "mesa-vulkan-drivers",
        ] {
            assert!(apt.contains(&pkg), "{pkg} missing from {apt:?}");
        }
        assert!(!missing_for_vulkan(&m, false)
            .iter()
            .any(|n| n.apt == "mesa-vulkan-drivers"));
        assert!(vulkan_headers_needed(&m));
    }

    #[test]
    fn apt_installs_debian_package_names_after_an_update() {
        let needs = vec![
            need("cmake", "x", "cmake"),
            Need {
                apt: "ninja-build",
                ..need("ninja", "y", "ninja")
            },
        ];
        let cmds = Manager::Apt.commands(&needs, false);
        assert_eq!(cmds[0], ["sudo", "apt-get", "update"]);
        assert_eq!(
            cmds[1].join(" "),
            "sudo apt-get install -y --no-install-recommends cmake ninja-build"
        );
        assert_eq!(Manager::Apt.commands(&needs, true)[1][0], "apt-get");
    }
}
