//! Version parsers for the build tools (cmake, ninja, git), tested on recorded outputs.

/// `cmake version 3.25.1` → `3.25.1`.
pub fn parse_cmake_version(text: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.trim().strip_prefix("cmake version "))
        .map(|v| v.trim().to_string())
}

/// `1.11.1` → `1.11.1` (ninja prints only the version).
pub fn parse_ninja_version(text: &str) -> Option<String> {
    let v = text.lines().next()?.trim();
    v.chars()
        .next()
        .filter(char::is_ascii_digit)
        .map(|_| v.to_string())
}

/// `git version 2.47.3` → `2.47.3`.
pub fn parse_git_version(text: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.trim().strip_prefix("git version "))
        .map(|v| v.split_whitespace().next().unwrap_or(v).to_string())
}

/// Compares dotted versions numerically ("3.9" < "3.25").
pub fn version_at_least(version: &str, min: &str) -> bool {
    let parse = |s: &str| -> Vec<u64> {
        s.split(['.', '-'])
            .map_while(|p| p.parse::<u64>().ok())
            .collect()
    };
    let (a, b) = (parse(version), parse(min));
    for i in 0..a.len().max(b.len()) {
        let (x, y) = (
            a.get(i).copied().unwrap_or(0),
            b.get(i).copied().unwrap_or(0),
        );
        if x != y {
            return x > y;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_numerically_not_as_text() {
        assert!(version_at_least("3.25.1", "3.9"));
        assert!(!version_at_least("11.8", "12.0"));
        assert!(version_at_least("12.8", "12.8"));
    }

    #[test]
    fn ninja_error_text_is_not_a_version() {
        assert_eq!(
            parse_ninja_version("ninja: error: loading 'build.ninja'"),
            None
        );
    }
}
