//! Build: configure the verified llama.cpp tree with the rendered profile (`cmake -C`), compile
//! with live `[n/m]` progress, install into a staging prefix, and write the link description the
//! runtime's build script reads.

use crate::cmd::{Cmd, CmdError};
use crate::progress::{Progress, Unit};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Lines of log shown when a step fails.
const FAIL_TAIL: usize = 40;
/// The link description's file name inside the prefix.
pub const LINK_FILE: &str = "link.json";

/// Everything the build will do, decided up front (printed by `plan`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BuildPlan {
    pub tree: PathBuf,
    /// The rendered profile, written beside the build.
    pub profile_cmake: String,
    pub build_dir: PathBuf,
    pub prefix: PathBuf,
    pub log: PathBuf,
    pub generator: Option<String>,
    pub jobs: usize,
    /// Extra `-D` definitions that are not machine decisions (build number/commit, prefix).
    pub defines: Vec<(String, String)>,
    pub cmake: PathBuf,
    /// A CMake toolchain file for cross builds (`cross.rs`), written beside the profile and
    /// passed as `CMAKE_TOOLCHAIN_FILE`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub toolchain_file: Option<String>,
    /// Environment variables every step runs with (Emscripten's `NODE_PATH`, `wasm.rs`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<(String, String)>,
}

/// The static libraries in link order, system libraries and search paths: written by the build
/// from what it installed, so the runtime never guesses (llama.pc's order is wrong for static).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinkDescription {
    /// Relative to the prefix.
    pub lib_dir: String,
    pub include_dir: String,
    /// Library names without `lib`/`.a`, in link order.
    pub static_libs: Vec<String>,
    pub system_libs: Vec<String>,
    #[serde(default)]
    pub frameworks: Vec<String>,
    #[serde(default)]
    pub search_paths: Vec<String>,
    /// Directories the runtime binary searches for shared libraries at run time (`-rpath`): the
    /// CUDA toolkit's lib dir when cuBLAS is only available as a shared library.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rpath: Vec<String>,
    /// GGML_* values the build actually used (read back from ggml-config.cmake).
    #[serde(default)]
    pub ggml_options: std::collections::BTreeMap<String, String>,
}

impl LinkDescription {
    /// The compiler arguments that build a C program against `prefix` exactly as this
    /// description says (include and library dirs, libraries in link order, frameworks, rpath,
    /// OpenMP where GCC needs `-fopenmp`); `-fopenmp` only off Apple, whose link line names omp.
    pub fn c_args(&self, prefix: &Path, apple: bool) -> Vec<String> {
        let mut a = vec![
            format!("-I{}", prefix.join(&self.include_dir).display()),
            format!("-L{}", prefix.join(&self.lib_dir).display()),
        ];
        a.extend(self.search_paths.iter().map(|p| format!("-L{p}")));
        a.extend(
            self.static_libs
                .iter()
                .chain(&self.system_libs)
                .map(|l| format!("-l{l}")),
        );
        for f in &self.frameworks {
            a.push("-framework".into());
            a.push(f.clone());
        }
        a.extend(self.rpath.iter().map(|d| format!("-Wl,-rpath,{d}")));
        if !apple
            && self
                .ggml_options
                .get("GGML_OPENMP")
                .is_some_and(|v| v == "ON")
        {
            a.push("-fopenmp".into());
        }
        a
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BuildOutput {
    pub prefix: PathBuf,
    pub link: LinkDescription,
    pub seconds: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(
        "{step} failed: `{command}` ({status})\n--- last {FAIL_TAIL} lines of {log} ---\n{tail}"
    )]
    Step {
        step: &'static str,
        command: String,
        status: String,
        tail: String,
        log: String,
    },
    #[error("cannot run `{command}`")]
    Spawn {
        command: String,
        #[source]
        source: Box<CmdError>,
    },
    #[error("build I/O error at {path}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the install tree at {prefix} has no {what}")]
    Incomplete { prefix: String, what: String },
}

impl crate::error::Hint for BuildError {
    fn hint(&self) -> Option<String> {
        Some(match self {
            BuildError::Step { step: "configure", log, .. } => format!("read the configure output in {log}; an unknown or conflicting option usually comes from profiles/local.toml ([defines])"),
            BuildError::Step { log, .. } => format!("the full log is {log}; run `cargo xtask setup --force` after fixing the cause"),
            BuildError::Spawn { .. } => "run `cargo xtask prereqs --install` to install cmake and ninja".into(),
            _ => "run `cargo xtask setup --force` to rebuild".into(),
        })
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BuildError + '_ {
    move |source| BuildError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Runs configure, build and install. Every line of every step goes to the log.
pub fn run(plan: &BuildPlan, progress: &dyn Progress) -> Result<BuildOutput, BuildError> {
    let started = Instant::now();
    fs_err::create_dir_all(&plan.build_dir).map_err(io(&plan.build_dir))?;
    let profile = plan.build_dir.join("profile.cmake");
    fs_err::write(&profile, &plan.profile_cmake).map_err(io(&profile))?;
    let mut log = fs_err::File::create(&plan.log).map_err(io(&plan.log))?;

    let mut configure = Cmd::new(&plan.cmake)
        .arg("-C")
        .arg(&profile)
        .arg("-S")
        .arg(&plan.tree)
        .arg("-B")
        .arg(&plan.build_dir);
    if let Some(g) = &plan.generator {
        configure = configure.args(["-G", g]);
    }
    configure = configure.arg(format!("-DCMAKE_INSTALL_PREFIX={}", plan.prefix.display()));
    for (k, v) in &plan.defines {
        configure = configure.arg(format!("-D{k}={v}"));
    }
    if let Some(text) = &plan.toolchain_file {
        let file = plan.build_dir.join("toolchain.cmake");
        fs_err::write(&file, text).map_err(io(&file))?;
        configure = configure.arg(format!("-DCMAKE_TOOLCHAIN_FILE={}", file.display()));
    }
    let with_env = |c: Cmd| plan.env.iter().fold(c, |c, (k, v)| c.env(k, v));
    let configure = with_env(configure);
    progress.start("configure", None, Unit::Steps);
    step("configure", &configure, &mut log, &plan.log, |_| {})?;
    progress.finish("done");

    let build = with_env(
        Cmd::new(&plan.cmake)
            .args(["--build"])
            .arg(&plan.build_dir)
            .args(["--config", "Release", "--parallel", &plan.jobs.to_string()]),
    );
    progress.start("compile llama.cpp", None, Unit::Steps);
    step("compile", &build, &mut log, &plan.log, |line| {
        if let Some((done, total)) = ninja_progress(line) {
            progress.update(done, Some(total));
        }
    })?;
    progress.finish("done");

    let install = with_env(
        Cmd::new(&plan.cmake)
            .arg("--install")
            .arg(&plan.build_dir)
            .args(["--config", "Release"]),
    );
    step("install", &install, &mut log, &plan.log, |_| {})?;
    record_cuda_library_dir(&plan.build_dir, &plan.prefix)?;
    let link = write_link_files(&plan.prefix)?;
    Ok(BuildOutput {
        prefix: plan.prefix.clone(),
        link,
        seconds: started.elapsed().as_secs_f64(),
    })
}

fn step(
    name: &'static str,
    cmd: &Cmd,
    log: &mut fs_err::File,
    log_path: &Path,
    mut on_line: impl FnMut(&str),
) -> Result<(), BuildError> {
    let _ = writeln!(log, "$ {}", cmd.display());
    let mut tail: std::collections::VecDeque<String> = std::collections::VecDeque::new();
    let status = cmd
        .stream_lines(|line| {
            let _ = writeln!(log, "{line}");
            if tail.len() == FAIL_TAIL {
                tail.pop_front();
            }
            tail.push_back(line.to_string());
            on_line(line);
        })
        .map_err(|source| BuildError::Spawn {
            command: cmd.display(),
            source: Box::new(source),
        })?;
    let _ = log.flush();
    if status == Some(0) {
        return Ok(());
    }
    Err(BuildError::Step {
        step: name,
        command: cmd.display(),
        status: status.map_or("killed by a signal".into(), |c| format!("exit status {c}")),
        tail: tail.into_iter().collect::<Vec<_>>().join("\n"),
        log: log_path.display().to_string(),
    })
}

/// Ninja's status line `[12/345] Building C object ...` → (12, 345).
pub fn ninja_progress(line: &str) -> Option<(u64, u64)> {
    let rest = line.strip_prefix('[')?;
    let (inner, _) = rest.split_once(']')?;
    let (a, b) = inner.split_once('/')?;
    Some((a.trim().parse().ok()?, b.trim().parse().ok()?))
}

/// Where the configured CUDA toolkit's libraries are (kept inside the prefix's lib dir, so a copy
/// of `lib/` carries it): `lib/tunellama-cuda.json`.
pub const CUDA_FILE: &str = "tunellama-cuda.json";

/// The CUDA library dir CMake found (`CUDA_cudart_static_LIBRARY` in CMakeCache.txt, set by
/// FindCUDAToolkit), recorded into the prefix for [`describe_link`]. Nothing for non-CUDA builds.
fn record_cuda_library_dir(build_dir: &Path, prefix: &Path) -> Result<(), BuildError> {
    let cache = std::fs::read_to_string(build_dir.join("CMakeCache.txt")).unwrap_or_default();
    let Some(dir) = cuda_library_dir(&cache) else {
        return Ok(());
    };
    let lib = ["lib", "lib64"]
        .into_iter()
        .map(|d| prefix.join(d))
        .find(|d| d.is_dir())
        .unwrap_or_else(|| prefix.join("lib"));
    let path = lib.join(CUDA_FILE);
    let json = serde_json::json!({ "library_dir": dir, "source": "CMakeCache.txt" });
    crate::fsx::write_atomic(&path, &serde_json::to_vec_pretty(&json).expect("json"))
        .map_err(io(&path))
}

/// `CUDA_cudart_static_LIBRARY:FILEPATH=/x/lib/libcudart_static.a` → `/x/lib`.
pub fn cuda_library_dir(cmake_cache: &str) -> Option<String> {
    ["CUDA_cudart_static_LIBRARY", "CUDA_cudart_LIBRARY"]
        .iter()
        .find_map(|var| {
            cmake_cache.lines().find_map(|l| {
                let (k, v) = l.split_once('=')?;
                (k.split(':').next() == Some(var) && !v.ends_with("-NOTFOUND"))
                    .then(|| Path::new(v).parent().map(|p| p.display().to_string()))
                    .flatten()
            })
        })
}

/// GPU backend libraries, in the order they go between `ggml` and `ggml-cpu`.
const GPU_LIBS: &[&str] = &[
    "ggml-cuda",
    "ggml-hip",
    "ggml-metal",
    "ggml-vulkan",
    "ggml-blas",
    "ggml-sycl",
    "ggml-opencl",
    "ggml-rpc",
];

/// Builds the link description from what was installed (LLAMA_CPP_FACTS.md, "Install tree").
pub fn describe_link(prefix: &Path) -> Result<LinkDescription, BuildError> {
    let lib_dir = ["lib", "lib64"]
        .into_iter()
        .find(|d| prefix.join(d).join(static_name("llama")).is_file())
        .ok_or_else(|| BuildError::Incomplete {
            prefix: prefix.display().to_string(),
            what: format!("lib/{}", static_name("llama")),
        })?;
    let has = |n: &str| prefix.join(lib_dir).join(static_name(n)).is_file();
    let mut libs = vec!["llama".to_string()];
    if has("ggml") {
        libs.push("ggml".into());
    }
    libs.extend(GPU_LIBS.iter().filter(|l| has(l)).map(|l| l.to_string()));
    for l in ["ggml-cpu", "ggml-base"] {
        if has(l) {
            libs.push(l.into());
        }
    }
    let options = read_ggml_options(&prefix.join(lib_dir).join("cmake/ggml/ggml-config.cmake"));
    let mut system_libs = Vec::new();
    let mut frameworks = Vec::new();
    let mut search_paths = Vec::new();
    let mut rpath = Vec::new();
    if libs.iter().any(|l| l == "ggml-cuda") {
        let root = std::fs::read_to_string(prefix.join(lib_dir).join(CUDA_FILE))
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|v| v.get("library_dir")?.as_str().map(str::to_string));
        let no_vmm = options.get("GGML_CUDA_NO_VMM").is_some_and(|v| v == "ON");
        let (cuda_libs, cuda_rpath) = cuda_link(root.as_deref().map(Path::new), no_vmm);
        if let Some(root) = root {
            search_paths.push(root.clone());
            if !no_vmm {
                search_paths.push(format!("{root}/stubs"));
            }
        }
        system_libs.extend(cuda_libs);
        rpath.extend(cuda_rpath);
    }
    if libs.iter().any(|l| l == "ggml-vulkan") {
        system_libs.push("vulkan".into());
    }
    if cfg!(target_os = "macos") {
        system_libs.push("c++".into());
        frameworks.extend(["Foundation", "Accelerate"].map(String::from));
        if libs.iter().any(|l| l == "ggml-metal") {
            frameworks.extend(["Metal", "MetalKit"].map(String::from));
        }
    } else {
        system_libs.push("stdc++".into());
    }
    if options.get("GGML_OPENMP").is_some_and(|v| v == "ON") {
        system_libs.push(if cfg!(target_os = "macos") {
            "omp".into()
        } else {
            "gomp".into()
        });
    }
    system_libs.extend(["m", "pthread"].map(String::from));
    Ok(LinkDescription {
        lib_dir: lib_dir.into(),
        include_dir: "include".into(),
        static_libs: libs,
        system_libs,
        frameworks,
        search_paths,
        rpath,
        ggml_options: options,
    })
}

/// Describes the installed prefix and writes what others link with: `link.json` (read by the
/// runtime's build script) and `<lib_dir>/pkgconfig/llama.pc` (for your own programs), both from
/// the same description.
pub fn write_link_files(prefix: &Path) -> Result<LinkDescription, BuildError> {
    let link = describe_link(prefix)?;
    let link_path = prefix.join(LINK_FILE);
    let json = serde_json::to_vec_pretty(&link).expect("serialisable");
    crate::fsx::write_atomic(&link_path, &json).map_err(io(&link_path))?;
    let pc_dir = prefix.join(&link.lib_dir).join("pkgconfig");
    let pc_path = pc_dir.join("llama.pc");
    // llama.cpp's own llama.pc names the version; the rest of it is replaced.
    let version = std::fs::read_to_string(&pc_path)
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("Version:").map(|v| v.trim().to_string()))
        })
        .unwrap_or_else(|| "0".into());
    fs_err::create_dir_all(&pc_dir).map_err(io(&pc_dir))?;
    crate::fsx::write_atomic(
        &pc_path,
        pkg_config(&link, &version, cfg!(target_os = "macos")).as_bytes(),
    )
    .map_err(io(&pc_path))?;
    Ok(link)
}

/// `llama.pc` for a static build: relocatable (`prefix=${pcfiledir}/../..`, so it stays right
/// after the staging dir is renamed into the cache or an archive is unpacked elsewhere), and with
/// every library in link order in `Libs` (there is no shared libllama to hide them behind), so
/// `pkg-config --libs --cflags llama` links a working program. llama.cpp's own llama.pc names the
/// install dir of the staging build and lists the static libraries in an order that does not link.
pub fn pkg_config(link: &LinkDescription, version: &str, apple: bool) -> String {
    let mut libs = vec!["-L${libdir}".to_string()];
    libs.extend(link.search_paths.iter().map(|p| format!("-L{p}")));
    libs.extend(
        link.static_libs
            .iter()
            .chain(&link.system_libs)
            .map(|l| format!("-l{l}")),
    );
    for f in &link.frameworks {
        libs.push(format!("-framework {f}"));
    }
    libs.extend(link.rpath.iter().map(|d| format!("-Wl,-rpath,{d}")));
    if !apple
        && link
            .ggml_options
            .get("GGML_OPENMP")
            .is_some_and(|v| v == "ON")
    {
        libs.push("-fopenmp".into());
    }
    format!(
        "# written by tunellama (build.rs): relocatable, static link order from link.json\n\
prefix=${{pcfiledir}}/../..\n\
exec_prefix=${{prefix}}\n\
libdir=${{prefix}}/{lib}\n\
includedir=${{prefix}}/{inc}\n\
\n\
Name: llama\n\
Description: llama.cpp static libraries (library-only build by tunellama)\n\
Version: {version}\n\
Libs: {libs}\n\
Cflags: -I${{includedir}}\n",
        lib = link.lib_dir,
        inc = link.include_dir,
        libs = libs.join(" "),
    )
}

/// The CUDA libraries to link and the run-time search path they need. cudart is linked
/// statically when the toolkit has `libcudart_static.a` (always); cuBLAS statically when the
/// toolkit ships `libcublas_static.a` (NVIDIA's installers), else shared (the Python wheels ship
/// only `libcublas.so.13`), with the toolkit's lib dir as rpath so the binary finds it. The driver
/// library (`-lcuda`) is linked only without `GGML_CUDA_NO_VMM`: with it, ggml never calls the
/// driver API directly and cudart opens `libcuda.so.1` at run time, so a binary starts (and says
/// why CUDA is unusable) on a machine without the NVIDIA driver (docs/cuda.md).
pub fn cuda_link(lib_dir: Option<&Path>, no_vmm: bool) -> (Vec<String>, Vec<String>) {
    let has = |f: &str| lib_dir.is_some_and(|d| d.join(f).is_file());
    let mut libs = vec!["cudart_static".to_string()];
    let mut rpath = Vec::new();
    match lib_dir {
        Some(dir) if !has("libcublas_static.a") => {
            libs.extend(["cublas", "cublasLt"].map(String::from));
            rpath.push(dir.display().to_string());
        }
        _ => {
            libs.extend(["cublas_static", "cublasLt_static"].map(String::from));
            if has("libculibos.a") || lib_dir.is_none() {
                libs.push("culibos".into());
            }
        }
    }
    if !no_vmm {
        libs.push("cuda".into());
    }
    libs.extend(["dl", "rt"].map(String::from));
    (libs, rpath)
}

fn static_name(lib: &str) -> String {
    if cfg!(windows) {
        format!("{lib}.lib")
    } else {
        format!("lib{lib}.a")
    }
}

/// `set(GGML_OPENMP ON)`-style lines of ggml-config.cmake → map.
fn read_ggml_options(path: &Path) -> std::collections::BTreeMap<String, String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let inner = l.trim().strip_prefix("set(")?.strip_suffix(')')?;
            let (k, v) = inner.split_once(char::is_whitespace)?;
            (k.starts_with("GGML_") || k.starts_with("CUDAToolkit_"))
                .then(|| (k.to_string(), v.trim().trim_matches('"').to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ninja_status_lines_become_progress() {
        assert_eq!(
            ninja_progress("[12/345] Building C object ggml/src/x.c.o"),
            Some((12, 345))
        );
        assert_eq!(ninja_progress("-- Configuring done"), None);
        assert_eq!(ninja_progress("[ 50%] Building"), None);
    }

    #[test]
    fn link_order_puts_gpu_backends_between_ggml_and_cpu() {
        let dir = tempfile::tempdir().unwrap();
        let lib = dir.path().join("lib");
        std::fs::create_dir_all(lib.join("cmake/ggml")).unwrap();
        for l in ["llama", "ggml", "ggml-base", "ggml-cpu", "ggml-cuda"] {
            std::fs::write(lib.join(static_name(l)), b"!<arch>\n").unwrap();
        }
        std::fs::write(
            lib.join("cmake/ggml/ggml-config.cmake"),
            "set(GGML_OPENMP ON)\nset(GGML_CUDA ON)\n",
        )
        .unwrap();
        let d = describe_link(dir.path()).unwrap();
        assert_eq!(
            d.static_libs,
            ["llama", "ggml", "ggml-cuda", "ggml-cpu", "ggml-base"]
        );
        assert!(d.system_libs.contains(&"gomp".to_string()) || cfg!(target_os = "macos"));
        assert!(d.system_libs.contains(&"cudart_static".to_string()));
    }

    #[test]
    fn llama_pc_is_relocatable_and_lists_every_library_in_link_order() {
        let link = LinkDescription {
            lib_dir: "lib".into(),
            include_dir: "include".into(),
            static_libs: ["llama", "ggml", "ggml-cpu", "ggml-base"]
                .map(String::from)
                .to_vec(),
            system_libs: ["stdc++", "gomp", "m", "pthread"]
                .map(String::from)
                .to_vec(),
            frameworks: vec![],
            search_paths: vec![],
            rpath: vec![],
            ggml_options: [("GGML_OPENMP".to_string(), "ON".to_string())].into(),
        };
        let pc = pkg_config(&link, "0.6.0-dev", false);
        assert!(pc.contains("\nprefix=${pcfiledir}/../..\n"), "{pc}");
        assert!(pc.contains("\nlibdir=${prefix}/lib\n"), "{pc}");
        assert!(pc.contains("\nVersion: 0.6.0-dev\n"), "{pc}");
        assert!(
            pc.contains("\nLibs: -L${libdir} -lllama -lggml -lggml-cpu -lggml-base -lstdc++ -lgomp -lm -lpthread -fopenmp\n"),
            "{pc}"
        );
        assert!(!pc.contains(".staging-"), "{pc}");
    }

    #[test]
    fn cuda_library_dir_comes_from_the_cmake_cache() {
        let cache = "CUDA_cublas_LIBRARY:FILEPATH=/t/lib/libcublas.so\nCUDA_cudart_static_LIBRARY:FILEPATH=/t/lib/libcudart_static.a\n";
        assert_eq!(cuda_library_dir(cache).as_deref(), Some("/t/lib"));
        assert_eq!(
            cuda_library_dir(
                "CUDA_cudart_static_LIBRARY:FILEPATH=CUDA_cudart_static_LIBRARY-NOTFOUND\n"
            ),
            None
        );
    }

    #[test]
    fn wheel_toolkit_links_shared_cublas_with_rpath_and_no_driver_under_no_vmm() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("libcudart_static.a"), b"").unwrap();
        std::fs::write(dir.path().join("libcublas.so.13"), b"").unwrap();
        let (libs, rpath) = cuda_link(Some(dir.path()), true);
        assert_eq!(libs, ["cudart_static", "cublas", "cublasLt", "dl", "rt"]);
        assert_eq!(rpath, [dir.path().display().to_string()]);
        // A full installer toolkit: everything static, and the driver only without NO_VMM.
        std::fs::write(dir.path().join("libcublas_static.a"), b"").unwrap();
        std::fs::write(dir.path().join("libculibos.a"), b"").unwrap();
        let (libs, rpath) = cuda_link(Some(dir.path()), false);
        assert!(libs.contains(&"cublas_static".to_string()) && libs.contains(&"cuda".to_string()));
        assert!(rpath.is_empty());
    }
}
