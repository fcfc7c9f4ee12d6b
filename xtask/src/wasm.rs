//! The WebAssembly variant: a declared `wasm32-emscripten` Machine built with Debian's Emscripten
//! through the cross path (`cross.rs`: its own toolchain file and cache key), then linked with our
//! C shim (`wasm/tunellama_wasm.c`) and JavaScript API (`wasm/api.js`) into one module,
//! `tunellama.js` + `tunellama.wasm`, which `verify::wasm` runs under node. Finding the tools is
//! separate from the pure parts (toolchain file, version parsers, link line), tested alone.
//! The workarounds of LLAMA_CPP_FACTS.md ("Other backends and targets") are applied here:
//! `EMSCRIPTEN_SYSTEM_PROCESSOR=wasm32` (a profile decision), `NODE_PATH` for emcc's linker,
//! `--no-experimental-fetch` for node 20.

use crate::cmd::{which_in, Cmd};
use crate::cross::{CrossError, CrossToolchain};
use crate::machine::Machine;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The variant's target name (Emscripten's triple).
pub const TRIPLE: &str = "wasm32-emscripten";
/// Where Debian's `node-acorn` & co. live: emcc's JavaScript optimizer `require`s them, and
/// Debian's emcc does not set the path itself ("Cannot find module 'acorn'" when linking).
pub const NODE_PATH: &str = "/usr/share/nodejs";
/// node 20 fetches the `.wasm` with its experimental `fetch` and fails on a file path ("Failed to
/// parse URL from ...wasm"); without it emscripten's generated code reads the file.
pub const NODE_FLAG: &str = "--no-experimental-fetch";
/// The module's file names in a prefix (`prefix/wasm/`) and in a dist archive.
pub const MODULE_DIR: &str = "wasm";
pub const MODULE_JS: &str = "tunellama.js";
pub const MODULE_WASM: &str = "tunellama.wasm";
pub const MODULE_DTS: &str = "tunellama.d.ts";

/// The module's sources, embedded so the key can hash them (a change rebuilds the module).
pub const SHIM_C: &str = include_str!("../../wasm/tunellama_wasm.c");
pub const API_JS: &str = include_str!("../../wasm/api.js");
pub const API_DTS: &str = include_str!("../../wasm/tunellama.d.ts");

/// The C functions the module exports (EXPORTED_FUNCTIONS; `wasm/api.js` cwraps them).
pub const EXPORTED: &[&str] = &[
    "tl_load",
    "tl_error",
    "tl_system_info",
    "tl_logits",
    "tl_logits_ptr",
    "tl_tokens_ptr",
    "tl_n_tokens",
    "tl_start",
    "tl_next",
    "tl_last_token",
    "tl_stop",
    "tl_free",
    "tl_utf8_filter",
    "malloc",
    "free",
];

/// Whether `m` describes the WebAssembly target.
pub fn is_wasm(m: &Machine) -> bool {
    m.arch.value == "wasm32"
}

/// `emcc (Emscripten gcc/clang-like replacement + linker emulating GNU ld) 3.1.6 ()` → `3.1.6`:
/// the first word after the description's closing parenthesis.
pub fn parse_emcc_version(text: &str) -> Option<String> {
    let line = text.lines().find(|l| l.starts_with("emcc ("))?;
    let v = line.split_once(") ")?.1.split_whitespace().next()?;
    v.chars()
        .next()
        .filter(char::is_ascii_digit)
        .map(|_| v.to_string())
}

/// `v20.20.2` → `20.20.2`.
pub fn parse_node_version(text: &str) -> Option<String> {
    let v = text.lines().next()?.trim().strip_prefix('v')?;
    v.chars()
        .next()
        .filter(char::is_ascii_digit)
        .map(|_| v.to_string())
}

/// Finds emcc, em++, node and Emscripten's CMake toolchain file.
pub fn detect() -> Result<CrossToolchain, CrossError> {
    let path = crate::env::path_var();
    let find = |tool: &str, why: &str| {
        which_in(tool, &path)
            .map(|p| p.display().to_string())
            .ok_or_else(|| CrossError::Missing {
                target: "wasm32".into(),
                tool: tool.into(),
                why: why.into(),
            })
    };
    let cc = find("emcc", "the Emscripten C compiler, package emscripten")?;
    let cxx = find("em++", "the Emscripten C++ compiler, package emscripten")?;
    let node = find(
        "node",
        "runs the WebAssembly verification program, package nodejs",
    )?;
    let ask = |cmd: Cmd, parse: fn(&str) -> Option<String>| {
        let out = cmd.clone().timeout(Duration::from_secs(60)).output();
        let text = out.as_ref().map(|o| o.combined()).unwrap_or_default();
        parse(&text).ok_or_else(|| CrossError::Version {
            command: cmd.display(),
            output: out.map(|o| o.combined()).unwrap_or_else(|e| e.to_string()),
        })
    };
    let version = ask(Cmd::new(&cc).arg("--version"), parse_emcc_version)?;
    let runner_version = ask(Cmd::new(&node).arg("--version"), parse_node_version)?;
    let root = ask(
        Cmd::new(find(
            "em-config",
            "Emscripten's configuration query, package emscripten",
        )?)
        .arg("EMSCRIPTEN_ROOT"),
        |t| {
            let l = t.lines().next()?.trim();
            (!l.is_empty()).then(|| l.to_string())
        },
    )?;
    let toolchain = Path::new(&root).join("cmake/Modules/Platform/Emscripten.cmake");
    if !toolchain.is_file() {
        return Err(CrossError::Missing {
            target: "wasm32".into(),
            tool: toolchain.display().to_string(),
            why: "Emscripten's CMake toolchain file (em-config EMSCRIPTEN_ROOT)".into(),
        });
    }
    Ok(CrossToolchain {
        target_arch: "wasm32".into(),
        cc,
        cxx: cxx.clone(),
        version: version.clone(),
        cxx_version: version,
        sysroot: root,
        runner: node,
        runner_version,
        emscripten_toolchain: Some(toolchain.display().to_string()),
    })
}

/// The generated CMake toolchain file: Emscripten's own, plus the linker's module path. The
/// system processor comes from the profile's `EMSCRIPTEN_SYSTEM_PROCESSOR` (initial cache, read by
/// Emscripten.cmake); `NODE_PATH` is set for the configure checks (and `build.rs` sets it for
/// every step through `BuildPlan::env`).
pub fn toolchain_file(emscripten_cmake: &str) -> String {
    format!(
        "# generated by tunellama (xtask/src/wasm.rs): WebAssembly with Emscripten\n\
         set(ENV{{NODE_PATH}} {NODE_PATH})\n\
         include({emscripten_cmake})\n"
    )
}

/// What the module's key adds to the toolchain identity: its sources, so a change of the shim
/// or the API rebuilds the module.
pub fn module_digest() -> String {
    let mut h = Sha256::new();
    for part in [SHIM_C, API_JS, API_DTS, &EXPORTED.join(",")] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    crate::hashing::hex(&h.finalize())[..16].to_string()
}

/// The environment every Emscripten step runs with.
pub fn env() -> Vec<(String, String)> {
    vec![("NODE_PATH".into(), NODE_PATH.into())]
}

/// emcc's `-s` settings of the module: one factory `createTunellama()` usable from a page
/// (`<script>`) and from node (`require`), a growable wasm32 heap, MEMFS for the model bytes,
/// the exported C functions and the runtime helpers `wasm/api.js` uses.
pub fn link_settings() -> Vec<String> {
    let exported = EXPORTED
        .iter()
        .map(|f| format!("_{f}"))
        .collect::<Vec<_>>()
        .join(",");
    vec![
        "-sMODULARIZE=1".into(),
        "-sEXPORT_NAME=createTunellama".into(),
        "-sENVIRONMENT=web,node".into(),
        "-sALLOW_MEMORY_GROWTH=1".into(),
        "-sMAXIMUM_MEMORY=4GB".into(),
        "-sFORCE_FILESYSTEM=1".into(),
        format!("-sEXPORTED_FUNCTIONS=[{exported}]"),
        "-sEXPORTED_RUNTIME_METHODS=[FS,cwrap,ccall,UTF8ToString,HEAPU8,HEAP32,HEAPF32]".into(),
    ]
}

/// Compiles the shim and links it with the prefix's libraries (in link.json's order) into
/// `prefix/wasm/tunellama.{js,wasm}`, and copies the `.d.ts` beside them. Returns the link command.
pub fn build_module(tc: &CrossToolchain, prefix: &Path, log: &Path) -> anyhow::Result<String> {
    let link = crate::verify::read_link(prefix)?;
    let out = prefix.join(MODULE_DIR);
    fs_err::create_dir_all(&out)?;
    let work = tempfile::tempdir_in(prefix)?;
    let src = work.path().join("tunellama_wasm.c");
    let api = work.path().join("api.js");
    fs_err::write(&src, SHIM_C)?;
    fs_err::write(&api, API_JS)?;
    let obj = work.path().join("tunellama_wasm.o");
    let with_env = |c: Cmd| {
        env()
            .into_iter()
            .fold(c, |c, (k, v)| c.env(k, v))
            .timeout(Duration::from_secs(900))
    };
    let compile = with_env(
        Cmd::new(&tc.cc)
            .arg("-c")
            .arg(&src)
            .arg("-o")
            .arg(&obj)
            .args(["-O2", "-msimd128"])
            .arg(format!("-I{}", prefix.join(&link.include_dir).display())),
    );
    // em++ links: llama.cpp is C++ (libc++ comes with the C++ driver).
    let link_cmd = with_env(
        Cmd::new(&tc.cxx)
            .arg(&obj)
            .arg("-o")
            .arg(out.join(MODULE_JS))
            .arg("-O2")
            .args(link_settings())
            .arg("--post-js")
            .arg(&api)
            .args(link_args(prefix, &link)),
    );
    let mut text = String::new();
    for cmd in [&compile, &link_cmd] {
        let o = cmd.run()?;
        text.push_str(&format!("$ {}\n{}", cmd.display(), o.combined()));
    }
    use std::io::Write;
    fs_err::OpenOptions::new()
        .append(true)
        .create(true)
        .open(log)?
        .write_all(text.as_bytes())?;
    fs_err::write(out.join(MODULE_DTS), API_DTS)?;
    for f in [MODULE_JS, MODULE_WASM] {
        if !out.join(f).is_file() {
            anyhow::bail!("emcc did not write {}", out.join(f).display());
        }
    }
    Ok(link_cmd.display())
}

/// The libraries of the prefix for emcc: link.json's static libraries in order; its system
/// libraries are the host's (`m`, `pthread`), which Emscripten's libc provides anyway.
fn link_args(prefix: &Path, link: &crate::build::LinkDescription) -> Vec<String> {
    let mut a = vec![format!("-L{}", prefix.join(&link.lib_dir).display())];
    a.extend(link.static_libs.iter().map(|l| format!("-l{l}")));
    a
}

/// The module files of a prefix.
pub fn module_files(prefix: &Path) -> Vec<PathBuf> {
    [MODULE_JS, MODULE_WASM, MODULE_DTS]
        .iter()
        .map(|f| prefix.join(MODULE_DIR).join(f))
        .collect()
}

/// The page's files in the repository (`web/`).
pub const PAGE_FILES: &[&str] = &["index.html", "app.js"];

/// Writes a complete static site into `to`: the page (`web/`) and the module of `prefix`.
pub fn stage_site(repo_root: &Path, prefix: &Path, to: &Path) -> anyhow::Result<()> {
    fs_err::create_dir_all(to)?;
    for f in PAGE_FILES {
        fs_err::copy(repo_root.join("web").join(f), to.join(f))?;
    }
    for f in module_files(prefix) {
        fs_err::copy(&f, to.join(f.file_name().expect("a file name")))?;
    }
    Ok(())
}

/// `node --no-experimental-fetch SCRIPT` (add the script's arguments).
pub fn node(node: &str, script: &Path) -> Cmd {
    Cmd::new(node)
        .arg(NODE_FLAG)
        .arg(script)
        .timeout(Duration::from_secs(600))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A file of tests/fixtures/recorded/ (SOURCES.md says where each comes from).
    pub(crate) fn recorded(name: &str) -> String {
        std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../tests/fixtures/recorded")
                .join(name),
        )
        .unwrap()
    }

    #[test]
    fn emcc_and_node_versions_are_read_from_their_output() {
        assert_eq!(
            parse_emcc_version(&recorded("emcc-3.1.6-version.txt")).as_deref(),
            Some("3.1.6")
        );
        assert_eq!(
            parse_node_version(&recorded("node-20-version.txt")).as_deref(),
            Some("20.20.2")
        );
        assert_eq!(parse_emcc_version("clang version 14.0.6"), None);
        assert_eq!(parse_node_version("node: command not found"), None);
    }

    #[test]
    fn the_toolchain_file_includes_emscriptens_and_sets_the_node_path() {
        let f = toolchain_file("/usr/share/emscripten/cmake/Modules/Platform/Emscripten.cmake");
        assert!(f.contains("set(ENV{NODE_PATH} /usr/share/nodejs)"), "{f}");
        assert!(
            f.contains("include(/usr/share/emscripten/cmake/Modules/Platform/Emscripten.cmake)")
        );
    }

    #[test]
    fn the_module_exports_every_function_the_api_wraps() {
        let settings = link_settings().join(" ");
        for f in EXPORTED {
            assert!(settings.contains(&format!("_{f}")), "{f} not exported");
            if !["malloc", "free", "tl_utf8_filter"].contains(f) {
                assert!(API_JS.contains(&format!("'{f}'")), "{f} not used by api.js");
            }
            assert!(
                SHIM_C.contains(&format!("{f}(")) || ["malloc", "free"].contains(f),
                "{f} not in the shim"
            );
        }
        // Every function api.js cwraps is exported (else cwrap fails at run time).
        for part in API_JS.split("cwrap('").skip(1) {
            let name = part.split('\'').next().unwrap();
            assert!(
                EXPORTED.contains(&name),
                "api.js wraps {name}, not exported"
            );
        }
    }
}
