//! C/C++ compiler facts, found by asking the compiler: it preprocesses a probe file whose
//! predefined macros reveal its family and version (the approach cc-rs uses), never guessed from
//! the executable's name (`cc` is gcc on Debian and clang on macOS).

use crate::machine::CompilerFamily;

/// The probe source. Each family is tested most-specific first: Apple clang also defines
/// `__clang__`, and clang also defines `__GNUC__`.
pub const PROBE_SOURCE: &str = r#"
#if defined(_MSC_VER) && !defined(__clang__)
tunellama_family msvc
tunellama_version _MSC_VER
#elif defined(__apple_build_version__)
tunellama_family apple-clang
tunellama_version __clang_major__ __clang_minor__ __clang_patchlevel__
#elif defined(__clang__)
tunellama_family clang
tunellama_version __clang_major__ __clang_minor__ __clang_patchlevel__
#elif defined(__GNUC__)
tunellama_family gcc
tunellama_version __GNUC__ __GNUC_MINOR__ __GNUC_PATCHLEVEL__
#else
tunellama_family unknown
#endif
"#;

/// Family and version from the preprocessed probe source.
pub fn parse_preprocessed(text: &str) -> Option<(CompilerFamily, String)> {
    let mut family = None;
    let mut version = String::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("tunellama_family") => {
                family = Some(match words.next()? {
                    "gcc" => CompilerFamily::Gcc,
                    "clang" => CompilerFamily::Clang,
                    "apple-clang" => CompilerFamily::AppleClang,
                    "msvc" => CompilerFamily::Msvc,
                    _ => CompilerFamily::Unknown,
                })
            }
            Some("tunellama_version") => {
                let parts: Vec<&str> = words.collect();
                version = if parts.len() == 1 && parts[0].len() == 4 {
                    // _MSC_VER 1939 is 19.39
                    format!("{}.{}", &parts[0][..2], &parts[0][2..])
                } else {
                    parts.join(".")
                };
            }
            _ => {}
        }
    }
    family.map(|f| (f, version))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clang_that_also_defines_gnuc_is_clang() {
        // What `clang -E` prints for the probe (only the clang branch survives).
        let out = "# 1 \"probe.c\"\n\n\n\n\n\n\ntunellama_family clang\ntunellama_version 14 0 6\n";
        assert_eq!(
            parse_preprocessed(out),
            Some((CompilerFamily::Clang, "14.0.6".into()))
        );
    }

    #[test]
    fn msvc_version_is_split_into_major_minor() {
        let out = "tunellama_family msvc\ntunellama_version 1939\n";
        assert_eq!(
            parse_preprocessed(out),
            Some((CompilerFamily::Msvc, "19.39".into()))
        );
    }

    #[test]
    fn output_without_marker_is_not_a_compiler() {
        assert_eq!(parse_preprocessed("error: unknown option -E"), None);
    }
}
