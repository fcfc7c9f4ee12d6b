//! The known GitHub-hosted runner labels (`ci/runners.toml`, with their source): the matrix may
//! only name these, and a runner must give the OS and CPU its variant's target is built for.

use serde::Deserialize;

pub const RUNNERS_PATH: &str = "ci/runners.toml";
/// Embedded so a built xtask validates without files beside it; a test keeps it in sync.
const RUNNERS: &str = include_str!("../../../ci/runners.toml");

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Label {
    pub name: String,
    /// `std::env::consts::OS` spelling.
    pub os: String,
    /// `std::env::consts::ARCH` spelling.
    pub arch: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RunnersFile {
    schema: u32,
    label: Vec<Label>,
}

/// Every known label, in file order.
pub fn known() -> Vec<Label> {
    let f: RunnersFile = toml::from_str(RUNNERS).expect("ci/runners.toml parses (tested)");
    assert_eq!(f.schema, 1, "ci/runners.toml schema");
    f.label
}

/// The label named `name`, or a message listing the known ones (and the nearest, for typos).
pub fn find(name: &str) -> Result<Label, String> {
    let all = known();
    if let Some(l) = all.iter().find(|l| l.name == name) {
        return Ok(l.clone());
    }
    let nearest = all
        .iter()
        .min_by_key(|l| strsim::levenshtein(&l.name, name))
        .filter(|l| strsim::levenshtein(&l.name, name) <= 3)
        .map(|l| format!(" (did you mean `{}`?)", l.name))
        .unwrap_or_default();
    Err(format!(
        "runner `{name}` is not a known GitHub-hosted runner label{nearest}; known: {} ({RUNNERS_PATH})",
        all.iter()
            .map(|l| l.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_parses_and_has_unique_names() {
        let all = known();
        assert!(all.len() >= 10);
        let mut names: Vec<_> = all.iter().map(|l| &l.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), all.len());
        for l in &all {
            assert!(
                ["linux", "macos", "windows"].contains(&l.os.as_str()),
                "{l:?}"
            );
            assert!(["x86_64", "aarch64"].contains(&l.arch.as_str()), "{l:?}");
        }
    }

    #[test]
    fn a_typo_is_refused_with_the_nearest_label() {
        let e = find("ubuntu-24.4").unwrap_err();
        assert!(e.contains("`ubuntu-24.4` is not a known"), "{e}");
        assert!(e.contains("did you mean `ubuntu-24.04`?"), "{e}");
        assert!(e.contains(RUNNERS_PATH), "{e}");
        assert_eq!(find("ubuntu-24.04-arm").unwrap().arch, "aarch64");
    }
}
