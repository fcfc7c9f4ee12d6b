//! Parsers for the other GPU stacks: Vulkan (`vulkaninfo --summary`) and ROCm (`rocminfo`,
//! `hipconfig --version`).

/// Device names from `vulkaninfo --summary` (`deviceName = ...` lines).
pub fn parse_vulkaninfo_devices(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once('=')?;
            (k.trim() == "deviceName").then(|| v.trim().to_string())
        })
        .collect()
}

/// Distinct `gfx*` agent names from `rocminfo`, in order of appearance.
pub fn parse_rocminfo_targets(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for l in text.lines() {
        let Some(v) = l.trim().strip_prefix("Name:") else {
            continue;
        };
        let v = v.trim();
        if v.starts_with("gfx") && !out.iter().any(|x| x == v) {
            out.push(v.to_string());
        }
    }
    out
}

/// `6.0.32830-d62f6a171` → `6.0.32830`.
pub fn parse_hipconfig_version(text: &str) -> Option<String> {
    let first = text.split_whitespace().next()?;
    let v = first.split('-').next()?;
    v.chars()
        .next()
        .filter(char::is_ascii_digit)
        .map(|_| v.to_string())
}
