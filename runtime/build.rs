//! Finds the llama.cpp build prefix that `cargo xtask setup` produced, links exactly what its
//! `link.json` lists, and hands `runtime-info.json` (plus the CPU features it requires, as Rust)
//! to the crate. Bindings are checked in (`src/ffi/bindings.rs`), so no libclang is needed here.

use std::path::{Path, PathBuf};

#[path = "src/runtime_info.rs"]
#[allow(dead_code)]
mod runtime_info;

const PREFIX_VAR: &str = "TUNELLAMA_PREFIX";
const CACHE_VAR: &str = "TUNELLAMA_CACHE_DIR";

#[derive(serde::Deserialize)]
struct Link {
    lib_dir: String,
    static_libs: Vec<String>,
    system_libs: Vec<String>,
    #[serde(default)]
    frameworks: Vec<String>,
    #[serde(default)]
    search_paths: Vec<String>,
    /// Run-time library directories (a CUDA toolkit whose cuBLAS is only a shared library).
    #[serde(default)]
    rpath: Vec<String>,
}

/// One clear line and no backtrace: cargo prints it as `error: ...` and fails the build.
fn fail(msg: &str) -> ! {
    println!("cargo::error={msg}");
    std::process::exit(0)
}

fn var(name: &str) -> Option<String> {
    println!("cargo::rerun-if-env-changed={name}");
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// The cache root, spelled as xtask spells it: TUNELLAMA_CACHE_DIR, XDG, then ~/.cache.
fn cache_root() -> Option<PathBuf> {
    if let Some(d) = var(CACHE_VAR) {
        return Some(PathBuf::from(d));
    }
    if let Some(x) = var("XDG_CACHE_HOME") {
        return Some(PathBuf::from(x).join("tunellama"));
    }
    var("HOME").map(|h| PathBuf::from(h).join(".cache/tunellama"))
}

fn find_prefix() -> PathBuf {
    if let Some(p) = var(PREFIX_VAR) {
        let p = PathBuf::from(p);
        if !p.is_absolute() {
            fail(&format!(
                "{PREFIX_VAR}={} is not an absolute path: give the absolute path of a llama.cpp build prefix, or unset it and run `cargo xtask setup`",
                p.display()
            ));
        }
        return p;
    }
    let root = cache_root().unwrap_or_else(|| {
        fail("no llama.cpp build found (TUNELLAMA_PREFIX unset, no cache directory: HOME unset): run `cargo xtask setup` first")
    });
    let current = root.join("builds-v1/current.json");
    println!("cargo::rerun-if-changed={}", current.display());
    let key = std::fs::read_to_string(&current)
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| v.get("key")?.as_str().map(str::to_string));
    match key {
        Some(k) => root.join("builds-v1").join(k).join("prefix"),
        None => fail(&format!(
            "no llama.cpp build found (TUNELLAMA_PREFIX unset, no current build in {}): run `cargo xtask setup` first",
            root.display()
        )),
    }
}

fn read(prefix: &Path, name: &str) -> String {
    let p = prefix.join(name);
    println!("cargo::rerun-if-changed={}", p.display());
    std::fs::read_to_string(&p).unwrap_or_else(|e| {
        fail(&format!(
            "the llama.cpp build prefix {} has no readable {name} ({e}): run `cargo xtask setup` to (re)build it",
            prefix.display()
        ))
    })
}

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-changed=src/runtime_info.rs");
    let prefix = find_prefix();
    let link_text = read(&prefix, "link.json");
    let info_text = read(&prefix, "runtime-info.json");
    let link: Link = serde_json::from_str(&link_text).unwrap_or_else(|e| {
        fail(&format!(
            "{}: {e}: run `cargo xtask setup` to rebuild it",
            prefix.join("link.json").display()
        ))
    });
    let info = runtime_info::RuntimeInfo::parse(&info_text).unwrap_or_else(|e| {
        fail(&format!(
            "{}: {e}: run `cargo xtask setup` to rewrite it",
            prefix.join("runtime-info.json").display()
        ))
    });

    let lib_dir = prefix.join(&link.lib_dir);
    println!("cargo::rustc-link-search=native={}", lib_dir.display());
    for p in &link.search_paths {
        println!("cargo::rustc-link-search=native={p}");
    }
    // link.json lists the static libraries in link order; system libraries come after them.
    for l in &link.static_libs {
        let file = lib_dir.join(format!("lib{l}.a"));
        if file.exists() {
            println!("cargo::rerun-if-changed={}", file.display());
        }
        println!("cargo::rustc-link-lib=static={l}");
    }
    for l in &link.system_libs {
        println!("cargo::rustc-link-lib=dylib={l}");
    }
    for f in &link.frameworks {
        println!("cargo::rustc-link-lib=framework={f}");
    }
    for dir in &link.rpath {
        println!("cargo::rustc-link-arg=-Wl,-rpath,{dir}");
    }

    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let write = |name: &str, text: &str| {
        std::fs::write(out.join(name), text)
            .unwrap_or_else(|e| fail(&format!("{}: {e}", out.join(name).display())))
    };
    write("runtime-info.json", &info_text);
    // A plain Rust constant: the pre-main CPU check runs before anything could parse JSON.
    let features: Vec<String> = info
        .compiled_for
        .required_cpu_features
        .iter()
        .map(|f| format!("{f:?}"))
        .collect();
    write(
        "required_features.rs",
        &format!(
            "/// From runtime-info.json's `compiled_for.required_cpu_features`.\npub const REQUIRED_CPU_FEATURES: &[&str] = &[{}];\n",
            features.join(", ")
        ),
    );
    println!(
        "cargo::rustc-env=TUNELLAMA_BUILD_PREFIX={}",
        prefix.display()
    );
}
