//! Helpers shared by the source-stage tests: small llama.cpp-shaped trees and pins made on the fly.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use xtask::source::digest::{hash_tree, DEFAULT_INPUTS};
use xtask::source::pin::{BuildInfo, Pin, TreePin, Upstream, PIN_SCHEMA};
use xtask::source::pin_cmd::MANIFEST_HEADER;
use xtask::source::{SourceOptions, Transport};

pub fn write(root: &Path, rel: &str, text: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

/// A tiny tree with the shape of llama.cpp: build inputs plus files that are not inputs.
pub fn small_tree(root: &Path) {
    write(root, "CMakeLists.txt", "project(\"llama.cpp\" C CXX)\n");
    write(root, "LICENSE", "MIT\n");
    write(root, "cmake/common.cmake", "# common\n");
    write(root, "ggml/CMakeLists.txt", "set(GGML_VERSION_MAJOR 0)\n");
    write(root, "ggml/src/ggml.c", "int ggml;\n");
    write(root, "include/llama.h", "int llama(void);\n");
    write(root, "src/llama.cpp", "int llama(void) { return 0; }\n");
    write(root, "vendor/nlohmann/json.hpp", "// json\n");
    write(root, "README.md", "not a build input\n");
    write(root, "common/common.cpp", "not a build input either\n");
}

/// Writes `pin.toml` + `pin.files` into `dir` for the tree at `tree`; returns the pin path.
pub fn make_pin(dir: &Path, tree: &Path, commit: Option<String>) -> PathBuf {
    let inputs: Vec<String> = DEFAULT_INPUTS.iter().map(|s| s.to_string()).collect();
    let m = hash_tree(tree, &inputs).unwrap();
    let pin = Pin {
        schema: PIN_SCHEMA,
        upstream: Upstream {
            repository: "file:///nonexistent/upstream".into(),
            commit,
            tag: None,
            ggml_version: "0.0.0".into(),
            llama_version: "0.0.0".into(),
        },
        build: BuildInfo {
            number: 7,
            commit: "testpin".into(),
        },
        tree: TreePin {
            inputs,
            digest: m.digest(),
            files: "pin.files".into(),
        },
        registry: None,
    };
    let path = dir.join("pin.toml");
    std::fs::write(&path, pin.render()).unwrap();
    std::fs::write(
        dir.join("pin.files"),
        format!("{MANIFEST_HEADER}{}", m.render()),
    )
    .unwrap();
    path
}

pub fn opts(transport: Transport) -> SourceOptions {
    SourceOptions {
        transport,
        cargo: Some(xtask::env::cargo()),
        ..SourceOptions::default()
    }
}
