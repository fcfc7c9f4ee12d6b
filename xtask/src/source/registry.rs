//! Registry transport: the llama.cpp tree shipped inside the pinned crate, obtained with cargo
//! itself (a throw-away manifest, `cargo fetch`, `cargo metadata`), so the user's registry and
//! mirror configuration, `--offline` and cargo's own checksum verification all apply.

use super::pin::Pin;
use super::{Fetched, SourceError, SourceOptions};
use crate::cmd::Cmd;
use crate::progress::{Progress, Unit};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegistryStep {
    pub crate_name: String,
    pub version: String,
    pub subfolder: String,
    /// The pinned `.crate` sha256; `None` only when making a new pin (record, don't check).
    pub checksum: Option<String>,
    /// The throw-away workspace (`<cache>/sources-v1/registry/<crate>-<version>`).
    pub workspace: PathBuf,
    pub cargo: PathBuf,
    pub workdir: Option<PathBuf>,
    pub offline: bool,
}

pub fn plan(pin: &Pin, opts: &SourceOptions, sources: &Path) -> Result<RegistryStep, SourceError> {
    let r = pin.registry.as_ref().ok_or_else(|| {
        SourceError::Options(
            "the pin has no [registry] section; use --transport git or --transport path".into(),
        )
    })?;
    Ok(step(
        &r.crate_name,
        &r.version,
        &r.subfolder,
        Some(r.checksum.clone()),
        opts,
        sources,
    ))
}

pub fn step(
    crate_name: &str,
    version: &str,
    subfolder: &str,
    checksum: Option<String>,
    opts: &SourceOptions,
    sources: &Path,
) -> RegistryStep {
    RegistryStep {
        crate_name: crate_name.to_string(),
        version: version.to_string(),
        subfolder: subfolder.to_string(),
        checksum,
        workspace: sources
            .join("registry")
            .join(format!("{crate_name}-{version}")),
        cargo: opts.cargo.clone().unwrap_or_else(|| PathBuf::from("cargo")),
        workdir: opts.workdir.clone(),
        offline: opts.offline,
    }
}

/// The throw-away manifest: a package with no code that depends on exactly the pinned crate.
pub fn manifest_text(crate_name: &str, version: &str) -> String {
    format!(
        "# Written by `cargo xtask source`: lets cargo fetch the crate that ships the pinned llama.cpp.\n\
         [package]\nname = \"tunellama-source-fetch\"\nversion = \"0.0.0\"\nedition = \"2021\"\npublish = false\n\n\
         [lib]\npath = \"lib.rs\"\n\n\
         [dependencies]\n{} = {}\n\n\
         # Not part of any enclosing workspace.\n[workspace]\n",
        toml::Value::String(crate_name.into()),
        toml::Value::String(format!("={version}")),
    )
}

fn write_if_changed(path: &Path, text: &str) -> Result<(), SourceError> {
    if std::fs::read_to_string(path).ok().as_deref() == Some(text) {
        return Ok(());
    }
    let io = |e: std::io::Error| SourceError::Cargo {
        command: format!("write {}", path.display()),
        message: e.to_string(),
    };
    if let Some(dir) = path.parent() {
        fs_err::create_dir_all(dir).map_err(io)?;
    }
    fs_err::write(path, text).map_err(io)
}

fn cargo(step: &RegistryStep, sub: &str) -> Cmd {
    let mut c = Cmd::new(&step.cargo)
        .arg(sub)
        .arg("--manifest-path")
        .arg(step.workspace.join("Cargo.toml"));
    if step.offline {
        c = c.arg("--offline");
    }
    if let Some(d) = &step.workdir {
        c = c.cwd(d);
    }
    c
}

fn run_cargo(c: Cmd) -> Result<crate::cmd::Output, SourceError> {
    c.run().map_err(|e| SourceError::Cargo {
        command: c.display(),
        message: e.to_string(),
    })
}

/// Fetches the crate; returns its unpacked folder and the checksum cargo recorded.
pub fn fetch_crate(
    step: &RegistryStep,
    progress: &dyn Progress,
) -> Result<(PathBuf, String), SourceError> {
    write_if_changed(
        &step.workspace.join("Cargo.toml"),
        &manifest_text(&step.crate_name, &step.version),
    )?;
    write_if_changed(&step.workspace.join("lib.rs"), "")?;
    progress.start(
        &format!("cargo fetch {} {}", step.crate_name, step.version),
        None,
        Unit::Steps,
    );
    run_cargo(cargo(step, "fetch"))?;
    let meta = cargo(step, "metadata").args(["--format-version", "1"]);
    let out = run_cargo(meta.clone())?;
    let pkg = package_dir(&out.stdout, &step.crate_name, &step.version).ok_or_else(|| {
        SourceError::Cargo {
            command: meta.display(),
            message: format!(
                "no package {} {} in its output",
                step.crate_name, step.version
            ),
        }
    })?;
    let lock_path = step.workspace.join("Cargo.lock");
    let lock = std::fs::read_to_string(&lock_path).map_err(|e| SourceError::Cargo {
        command: format!("read {}", lock_path.display()),
        message: e.to_string(),
    })?;
    let checksum = lock_checksum(&lock, &step.crate_name, &step.version).ok_or_else(|| {
        SourceError::Cargo {
            command: format!("read {}", lock_path.display()),
            message: format!(
                "no checksum recorded for {} {}",
                step.crate_name, step.version
            ),
        }
    })?;
    progress.finish(&format!("{}", pkg.display()));
    Ok((pkg, checksum))
}

pub(crate) fn obtain(step: &RegistryStep, progress: &dyn Progress) -> Result<Fetched, SourceError> {
    let (pkg, checksum) = fetch_crate(step, progress)?;
    if let Some(expected) = &step.checksum {
        if *expected != checksum {
            return Err(SourceError::CrateChecksum {
                name: step.crate_name.clone(),
                version: step.version.clone(),
                expected: expected.clone(),
                actual: checksum,
            });
        }
    }
    let root = pkg.join(&step.subfolder);
    if !root.is_dir() {
        return Err(SourceError::NotADirectory { path: root });
    }
    Ok(Fetched {
        root,
        origin: format!("{} {}", step.crate_name, step.version),
        commit: None,
        expected_commit: None,
        crate_checksum: Some(checksum),
    })
}

/// The folder holding `Cargo.toml` of `name` `version` in `cargo metadata` JSON.
pub fn package_dir(metadata_json: &str, name: &str, version: &str) -> Option<PathBuf> {
    let v: serde_json::Value = serde_json::from_str(metadata_json).ok()?;
    v.get("packages")?
        .as_array()?
        .iter()
        .find(|p| p["name"] == name && p["version"] == version)
        .and_then(|p| p["manifest_path"].as_str())
        .and_then(|m| Path::new(m).parent().map(Path::to_path_buf))
}

/// The `checksum` cargo recorded in `Cargo.lock` for `name` `version`.
pub fn lock_checksum(lock: &str, name: &str, version: &str) -> Option<String> {
    let v: toml::Value = toml::from_str(lock).ok()?;
    v.get("package")?
        .as_array()?
        .iter()
        .find(|p| {
            p.get("name").and_then(|n| n.as_str()) == Some(name)
                && p.get("version").and_then(|n| n.as_str()) == Some(version)
        })?
        .get("checksum")?
        .as_str()
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throwaway_manifest_asks_for_exactly_the_pinned_version() {
        let t = manifest_text("llama-cpp-sys-2", "0.1.161");
        let v: toml::Value = toml::from_str(&t).unwrap();
        assert_eq!(
            v["dependencies"]["llama-cpp-sys-2"].as_str(),
            Some("=0.1.161")
        );
        assert!(v.get("workspace").is_some());
    }

    #[test]
    fn lock_checksum_is_read_for_the_named_package_only() {
        let lock = r#"
version = 4
[[package]]
name = "a"
version = "1.0.0"
checksum = "aaaa"
[[package]]
name = "llama-cpp-sys-2"
version = "0.1.161"
source = "registry+https://example.invalid/index"
checksum = "bbbb"
"#;
        assert_eq!(
            lock_checksum(lock, "llama-cpp-sys-2", "0.1.161").as_deref(),
            Some("bbbb")
        );
        assert_eq!(lock_checksum(lock, "llama-cpp-sys-2", "0.1.160"), None);
    }

    #[test]
    fn package_dir_comes_from_the_manifest_path() {
        let json = r#"{"packages":[{"name":"x","version":"1.0.0","manifest_path":"/r/x-1.0.0/Cargo.toml"}]}"#;
        assert_eq!(
            package_dir(json, "x", "1.0.0"),
            Some(PathBuf::from("/r/x-1.0.0"))
        );
        assert_eq!(package_dir(json, "x", "2.0.0"), None);
    }
}
