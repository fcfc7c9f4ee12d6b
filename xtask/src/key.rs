//! The cache key, computed in one place: everything compiled or embedded into a build (tree,
//! rendered profile, toolchain and the build environment CMake and cargo read, the runtime's
//! sources, the runtime-info.json it embeds, the generator of link.json/runtime-info.json) goes in;
//! what the build only runs on (GPUs, drivers) is its fingerprint. `setup` (through
//! `artifact::ensure`), `dist`, `bench` and `status` all call [`inputs`], so `status` says
//! "fresh" exactly when `setup` would hit.
//!
//! Capture (running `rustc -vV`, reading environment variables) is [`BuildEnv::capture`]; the
//! rest is pure and tested on plain data.

use crate::cache::{Fingerprint, KeyInputs, Toolchain};
use crate::machine::{Detection, Machine};
use crate::profile::Profile;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// Version of the code that writes `link.json` (`build::describe_link`), `llama.pc`
/// (`build::pkg_config`) and `runtime-info.json` (`runtime_build::info_for`): all three are
/// compiled into or shipped with the build. Bump it whenever their output changes; the test
/// `generator_output_is_recorded_for_this_generator_version` fails until you do.
pub const GENERATOR_VERSION: u32 = 3;

/// Environment variables CMake (and the compilers it runs) read while configuring and building
/// llama.cpp: compilers and their flags, CUDA's compiler/architectures/toolkit search, package
/// search paths, and CMake's own defaults from the environment.
pub const CMAKE_ENV: &[&str] = &[
    "CC",
    "CXX",
    "CFLAGS",
    "CXXFLAGS",
    "LDFLAGS",
    "CUDACXX",
    "CUDAHOSTCXX",
    "CUDAFLAGS",
    "CUDAARCHS",
    "CUDAToolkit_ROOT",
    "CUDA_PATH",
    "CMAKE_PREFIX_PATH",
    "CMAKE_TOOLCHAIN_FILE",
    "CMAKE_BUILD_TYPE",
    "VULKAN_SDK",
    "MACOSX_DEPLOYMENT_TARGET",
    "SDKROOT",
];

/// Environment variables cargo passes to rustc when it builds the runtime.
pub const RUST_ENV: &[&str] = &[
    "RUSTFLAGS",
    "CARGO_ENCODED_RUSTFLAGS",
    "CARGO_BUILD_RUSTFLAGS",
];

/// What the process environment adds to a build: captured once, then plain data.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct BuildEnv {
    /// `rustc -vV` of the compiler cargo uses for the runtime (`RUSTC`, else `rustc`).
    pub rustc: Option<String>,
    /// Set variables of [`RUST_ENV`].
    pub rust_vars: BTreeMap<String, String>,
    /// Set variables of [`CMAKE_ENV`].
    pub cmake_vars: BTreeMap<String, String>,
}

impl BuildEnv {
    /// Reads the variables and asks rustc for its version (in `runtime/`, where cargo runs it,
    /// so a directory toolchain override applies).
    pub fn capture(repo_root: &Path) -> BuildEnv {
        let read = |names: &[&str]| {
            names
                .iter()
                .filter_map(|n| crate::env::var(n).map(|v| (n.to_string(), v)))
                .collect::<BTreeMap<_, _>>()
        };
        let rustc = crate::env::var("RUSTC").unwrap_or_else(|| "rustc".into());
        let rustc = crate::cmd::Cmd::new(rustc)
            .arg("-vV")
            .cwd(repo_root.join("runtime"))
            .output()
            .ok()
            .filter(|o| o.status == Some(0))
            .map(|o| o.stdout.trim().to_string());
        BuildEnv {
            rustc,
            rust_vars: read(RUST_ENV),
            cmake_vars: read(CMAKE_ENV),
        }
    }

    /// The `rust` key input: rustc's version and the flags cargo hands it.
    pub fn rust_identity(&self) -> String {
        let mut s = self
            .rustc
            .clone()
            .unwrap_or_else(|| "rustc: not found".into());
        for (k, v) in &self.rust_vars {
            s.push_str(&format!("\n{k}={v}"));
        }
        s
    }
}

/// The source tree as the key and runtime-info.json see it: from a verified [`crate::source::Tree`],
/// or, for `status`, from the pin without fetching (the pin's digest is a pinned tree's digest).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceId {
    pub digest: String,
    pub origin: String,
    pub commit: Option<String>,
    pub build_number: u64,
    pub build_commit: String,
    pub pinned: bool,
}

impl SourceId {
    /// A pinned source with placeholder fields, for unit tests that need some key.
    #[cfg(test)]
    pub fn fixture() -> SourceId {
        SourceId {
            digest: "d".into(),
            origin: "o".into(),
            commit: None,
            build_number: 0,
            build_commit: "c".into(),
            pinned: true,
        }
    }

    pub fn of_tree(t: &crate::source::Tree) -> SourceId {
        SourceId {
            digest: t.digest.clone(),
            origin: t.origin.clone(),
            commit: t.commit.clone(),
            build_number: t.build_number,
            build_commit: t.build_commit.clone(),
            pinned: t.pinned,
        }
    }

    /// What `obtain` would return for `plan` when the tree matches the pin (nothing is fetched).
    pub fn of_plan(plan: &crate::source::SourcePlan) -> SourceId {
        use crate::source::Step;
        let (origin, commit) = match &plan.step {
            Step::Registry(s) => (format!("{} {}", s.crate_name, s.version), None),
            Step::Git(s) => (format!("{} {}", s.url, s.rev), s.expected_commit.clone()),
            Step::Path { root } => (root.display().to_string(), None),
        };
        SourceId {
            digest: plan.expected_digest.clone(),
            origin,
            commit,
            build_number: plan.build_number,
            build_commit: plan.build_commit.clone(),
            pinned: true,
        }
    }
}

/// What the key is computed from.
pub struct KeyRequest<'a> {
    pub profile: &'a Profile,
    /// The machine the profile was planned for (its runtime-info.json describes it).
    pub target: &'a Machine,
    /// The machine whose toolchain builds.
    pub host: &'a Machine,
    pub source: &'a SourceId,
    /// `Some(sha256 of runtime/)` when the runtime is built (not `--lib-only`, not cross).
    pub runtime_source: Option<String>,
    pub env: &'a BuildEnv,
    pub cross: Option<&'a crate::cross::CrossToolchain>,
}

/// The key inputs of a build: everything that changes its bytes.
pub fn inputs(r: &KeyRequest) -> KeyInputs {
    let mut toolchain = toolchain_for(r.profile, r.host);
    toolchain.build_env = r.env.cmake_vars.clone();
    if let Some(tc) = r.cross {
        toolchain = tc.key_toolchain(&toolchain);
    }
    // A wasm build's "runtime" is its module (C shim + JavaScript API, linked in the build): its
    // sources are the runtime source, so a changed module reuses the llama.cpp libraries of the
    // same inputs (`artifact::sibling_with_same_libraries`); no Rust is compiled, so rustc and
    // runtime-info.json do not count.
    let wasm = r.cross.is_some_and(|tc| tc.emscripten_toolchain.is_some());
    let runtime_source = if wasm {
        Some(format!("wasm module {}", crate::wasm::module_digest()))
    } else {
        r.runtime_source.clone()
    };
    let with_runtime = runtime_source.is_some() && !wasm;
    KeyInputs {
        tree_digest: r.source.digest.clone(),
        profile_hash: r.profile.hash.clone(),
        toolchain,
        runtime_source,
        generator: GENERATOR_VERSION,
        rust: with_runtime.then(|| r.env.rust_identity()),
        runtime_info: with_runtime.then(|| {
            runtime_info_digest(&crate::runtime_build::info_for(
                r.target, r.profile, r.source, "",
            ))
        }),
    }
}

/// sha256 of the runtime-info.json a build embeds, written with an empty key (the key is the
/// one thing in it that cannot be an input of itself).
pub fn runtime_info_digest(info: &crate::runtime_build::RuntimeInfo) -> String {
    use sha2::Digest;
    let mut info = info.clone();
    info.provenance.key.clear();
    let json = serde_json::to_vec(&info).expect("plain data serializes");
    crate::hashing::hex(&sha2::Sha256::digest(&json))
}

/// The key of `r`.
pub fn key(r: &KeyRequest) -> String {
    crate::cache::key_of(&inputs(r))
}

/// The machine part of the toolchain: compilers, cmake, ninja, nvcc (probed).
pub fn toolchain_of(m: &Machine) -> Toolchain {
    let comp = |d: &Detection<crate::machine::Compiler>| match d {
        Detection::Found(c) => format!("{} {} {}", c.family.as_str(), c.version, c.path),
        other => other.why_absent(),
    };
    let tool = |d: &Detection<crate::machine::Tool>| {
        d.found().map(|t| format!("{} {}", t.version, t.path))
    };
    Toolchain {
        c: comp(&m.compilers.c),
        cxx: comp(&m.compilers.cxx),
        cmake: tool(&m.tools.cmake).unwrap_or_else(|| "none".into()),
        ninja: tool(&m.tools.ninja),
        nvcc: m.cuda.found().map(|c| format!("{} {}", c.version, c.nvcc)),
        cross: None,
        // Set by `toolchain_for` for Vulkan builds only.
        vulkan_headers: None,
        // Set by `inputs` from the captured environment.
        build_env: BTreeMap::new(),
    }
}

/// What a build runs on: GPUs, driver, CUDA version (a change re-verifies, never rebuilds).
pub fn fingerprint_of(m: &Machine) -> Fingerprint {
    let gpus = m.gpus();
    Fingerprint {
        gpus: gpus
            .iter()
            .map(|g| format!("{} (sm_{})", g.name, g.compute_capability.replace('.', "")))
            .collect(),
        driver: gpus.first().map(|g| g.driver_version.clone()),
        cuda: m.cuda.found().map(|c| c.version.clone()),
    }
}

/// The toolchain that compiles `profile`: nvcc only counts when the profile compiles CUDA, so
/// installing a toolkit does not invalidate CPU builds.
pub fn toolchain_for(profile: &Profile, host: &Machine) -> Toolchain {
    let mut t = toolchain_of(host);
    if profile.decision("GGML_CUDA") != Some("ON") {
        t.nvcc = None;
    }
    if profile.decision("GGML_VULKAN") == Some("ON") {
        t.vulkan_headers = vulkan_headers_identity(host);
    }
    t
}

/// The machine fingerprint of a build of `profile` on `host`: what it runs on but what does not
/// change its bytes (a change re-verifies).
pub fn fingerprint_for(profile: &Profile, host: &Machine) -> Fingerprint {
    fingerprint_with(|name| profile.decision(name) == Some("ON"), host)
}

/// The GPUs and driver of `host` for every build (a GPU or driver change re-verifies, and says
/// so); the CUDA toolkit's version only for a CUDA build (installing the CUDA wheels into the cache
/// must not make a CPU build look like another machine); the Vulkan devices for a Vulkan build.
fn fingerprint_with(on: impl Fn(&str) -> bool, host: &Machine) -> Fingerprint {
    let mut f = fingerprint_of(host);
    if !on("GGML_CUDA") {
        f.cuda = None;
    }
    if on("GGML_VULKAN") {
        f.gpus.extend(vulkan_devices_identity(host));
    }
    f
}

/// The Vulkan headers a Vulkan build compiles against (`version include_dir`).
pub fn vulkan_headers_identity(host: &Machine) -> Option<String> {
    host.vulkan
        .found()
        .and_then(|v| v.headers.as_ref())
        .map(|h| format!("{} {}", h.version, h.include_dir))
}

/// The Vulkan devices of this host with type and driver, for a Vulkan build's fingerprint.
pub fn vulkan_devices_identity(host: &Machine) -> Vec<String> {
    host.vulkan
        .found()
        .map(|v| {
            v.physical_devices
                .iter()
                .map(|d| {
                    format!(
                        "{} (vulkan {}, driver {})",
                        d.name,
                        d.device_type.as_str(),
                        d.driver.as_deref().unwrap_or("?")
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::overrides::Overrides;

    fn machine() -> Machine {
        Machine::from_json_file(
            &Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../tests/fixtures/machines/this-machine-epyc-avx512.json"),
        )
        .unwrap()
    }

    fn source() -> SourceId {
        SourceId {
            digest: "6a52492e".into(),
            origin: "llama-cpp-sys-2 0.1.161".into(),
            commit: None,
            build_number: 0,
            build_commit: "tree-6a52492e".into(),
            pinned: true,
        }
    }

    fn key_with(m: &Machine, overrides: &str, env: &BuildEnv, runtime: bool) -> String {
        let o = Overrides::parse(overrides, "local.toml").unwrap();
        let p = crate::profile::plan(m, &o);
        key(&KeyRequest {
            profile: &p,
            target: m,
            host: m,
            source: &source(),
            runtime_source: runtime.then(|| "runtime-sources".to_string()),
            env,
            cross: None,
        })
    }

    #[test]
    fn a_runtime_default_override_changes_the_key_of_a_build_with_a_runtime() {
        let m = machine();
        let env = BuildEnv::default();
        let base = key_with(&m, "", &env, true);
        assert_eq!(base, key_with(&m, "", &env, true), "deterministic");
        for o in [
            "[runtime]\nthreads = 1\n",
            "[runtime]\nctx_size = 1024\n",
            "[runtime]\ngpu_layers = \"0\"\n",
        ] {
            assert_ne!(key_with(&m, o, &env, true), base, "{o}");
        }
        // A --lib-only build embeds no runtime defaults: its key does not move.
        assert_eq!(
            key_with(&m, "[runtime]\nthreads = 1\n", &env, false),
            key_with(&m, "", &env, false)
        );
    }

    /// Installing the CUDA wheels (a toolkit, no GPU) neither rebuilds nor re-verifies a CPU
    /// build; a CUDA build's fingerprint has the toolkit version, so a change there re-verifies.
    /// (A GPU or driver change re-verifies every build: tests/setup_cache.rs.)
    #[test]
    fn a_cpu_builds_fingerprint_ignores_a_cuda_toolkit_appearing() {
        let m = machine();
        let o = Overrides::parse("", "local.toml").unwrap();
        let p = crate::profile::plan(&m, &o);
        let mut with_tk = m.clone();
        with_tk.cuda = Detection::Found(crate::machine::CudaToolkit {
            nvcc: "/cache/toolchains/cuda/bin/nvcc".into(),
            version: "13.5".into(),
            source: "wheels".into(),
            root: None,
            from_wheels: true,
        });
        assert_eq!(p.decision("GGML_CUDA"), None);
        assert_eq!(fingerprint_for(&p, &m), fingerprint_for(&p, &with_tk));
        assert_eq!(fingerprint_for(&p, &with_tk).cuda, None);
        let cuda = Profile {
            decisions: vec![crate::profile::Decision::new(
                "GGML_CUDA",
                "ON",
                "BOOL",
                "test",
                "test",
            )],
            ..p.clone()
        };
        assert_eq!(
            fingerprint_for(&cuda, &with_tk).cuda.as_deref(),
            Some("13.5")
        );
    }

    #[test]
    fn ram_is_not_baked_into_the_binary() {
        let m = machine();
        let mut more = m.clone();
        more.memory
            .as_mut()
            .expect("fixture has memory")
            .total_bytes *= 2;
        let (a, mut b) = (
            crate::profile::plan(&m, &Default::default()),
            crate::profile::plan(&more, &Default::default()),
        );
        let info = crate::runtime_build::info_for(&more, &b, &source(), "k");
        assert_eq!(
            info.defaults.ram_bytes, None,
            "the runtime reads RAM when it runs"
        );
        // What still mentions RAM is the tuned default's explanation (which the runtime prints):
        // with the same explanation, more RAM gives the same embedded file, so the same key.
        assert_eq!(a.runtime.ctx_size, b.runtime.ctx_size);
        b.runtime.ctx_why = a.runtime.ctx_why.clone();
        assert_eq!(
            runtime_info_digest(&crate::runtime_build::info_for(&m, &a, &source(), "k")),
            runtime_info_digest(&crate::runtime_build::info_for(&more, &b, &source(), "k"))
        );
    }

    #[test]
    fn rustc_rustflags_and_the_variables_cmake_reads_change_the_key() {
        let m = machine();
        let base_env = BuildEnv {
            rustc: Some(
                "rustc 1.89.0 (29483883e 2025-08-04)\nhost: x86_64-unknown-linux-gnu".into(),
            ),
            ..Default::default()
        };
        let base = key_with(&m, "", &base_env, true);
        let mut rustc = base_env.clone();
        rustc.rustc =
            Some("rustc 1.90.0 (1159e78c4 2025-09-14)\nhost: x86_64-unknown-linux-gnu".into());
        assert_ne!(key_with(&m, "", &rustc, true), base, "rustc version");
        for var in RUST_ENV {
            let mut e = base_env.clone();
            e.rust_vars
                .insert(var.to_string(), "-C target-cpu=native".into());
            assert_ne!(key_with(&m, "", &e, true), base, "{var}");
            // rustc and its flags do not touch a --lib-only build.
            assert_eq!(
                key_with(&m, "", &e, false),
                key_with(&m, "", &base_env, false),
                "{var}"
            );
        }
        for var in [
            "CFLAGS",
            "CXXFLAGS",
            "LDFLAGS",
            "CMAKE_PREFIX_PATH",
            "CUDAToolkit_ROOT",
            "CUDA_PATH",
            "CUDACXX",
            "CC",
            "CXX",
        ] {
            assert!(CMAKE_ENV.contains(&var), "{var}");
            let mut e = base_env.clone();
            e.cmake_vars.insert(var.to_string(), "x".into());
            assert_ne!(key_with(&m, "", &e, true), base, "{var}");
            assert_ne!(
                key_with(&m, "", &e, false),
                key_with(&m, "", &base_env, false),
                "{var} changes the libraries too"
            );
        }
    }

    #[test]
    fn captured_build_env_reads_rustc_and_set_variables() {
        let e = BuildEnv::capture(Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap());
        let rustc = e
            .rustc
            .expect("rustc -vV runs (cargo is running this test)");
        assert!(
            rustc.starts_with("rustc ") && rustc.contains("\nhost: "),
            "{rustc}"
        );
        for k in e.cmake_vars.keys() {
            assert!(CMAKE_ENV.contains(&k.as_str()));
        }
    }

    /// sha256 of everything the generators write for one fixture build. When it changes, the
    /// generator's output changed: bump [`GENERATOR_VERSION`] (so every cache entry is rebuilt
    /// with the new output) and record the new digest here.
    const RECORDED: (u32, &str) = (
        3,
        "d0eb36528d6adc0a9373b9e5c24bf9efaa1dc1f47180a889884e2bdb10a2386f",
    );

    #[test]
    fn generator_output_is_recorded_for_this_generator_version() {
        let m = machine();
        let p = crate::profile::plan(&m, &Default::default());
        let info = crate::runtime_build::info_for(&m, &p, &source(), "fixture-key");
        // link.json and llama.pc of a fixture install tree (CPU build with OpenMP).
        let dir = tempfile::tempdir().unwrap();
        let lib = dir.path().join("lib");
        std::fs::create_dir_all(lib.join("cmake/ggml")).unwrap();
        for l in ["llama", "ggml", "ggml-base", "ggml-cpu"] {
            std::fs::write(lib.join(format!("lib{l}.a")), b"!<arch>\n").unwrap();
        }
        std::fs::write(
            lib.join("cmake/ggml/ggml-config.cmake"),
            "set(GGML_OPENMP ON)\nset(GGML_NATIVE ON)\n",
        )
        .unwrap();
        let link = crate::build::write_link_files(dir.path()).unwrap();
        let mut out = serde_json::to_string_pretty(&info).unwrap();
        out.push_str(&std::fs::read_to_string(dir.path().join("link.json")).unwrap());
        out.push_str(&std::fs::read_to_string(lib.join("pkgconfig/llama.pc")).unwrap());
        assert!(!link.static_libs.is_empty());
        use sha2::Digest;
        let digest = crate::hashing::hex(&sha2::Sha256::digest(out.as_bytes()));
        let bumped = if RECORDED.0 == GENERATOR_VERSION {
            GENERATOR_VERSION + 1
        } else {
            GENERATOR_VERSION
        };
        assert_eq!(
            (GENERATOR_VERSION, digest.as_str()),
            RECORDED,
            "the output of the link.json/llama.pc/runtime-info.json generators changed: set \
             key::GENERATOR_VERSION to {bumped} (so cached builds with the old output are rebuilt) \
             and RECORDED in xtask/src/key.rs to ({bumped}, \"{digest}\")\n--- output ---\n{out}"
        );
    }
}
