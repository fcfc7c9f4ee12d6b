//! Profile: the per-machine build decisions, rendered from the minijinja template in `profiles/`
//! into a CMake initial-cache script, plus the runtime defaults for this machine.
//!
//! Pure and deterministic: the same Machine, overrides and templates give byte-identical output.

pub mod cuda;
pub mod overrides;
pub mod proof;
pub mod rules;

use crate::machine::{Machine, Origin};
use overrides::Overrides;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The CMake template, embedded so a built xtask needs no files beside it.
pub const CMAKE_TEMPLATE: &str = include_str!("../../../profiles/profile.cmake.j2");
/// Bumped when the Profile JSON shape changes.
pub const PROFILE_SCHEMA: u32 = 1;

/// One CMake cache entry and the fact that chose it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    pub name: String,
    pub value: String,
    /// CMake cache type: BOOL or STRING.
    pub kind: String,
    /// What the setting does for this machine.
    pub reason: String,
    /// The fact (or rule) that chose it.
    pub fact: String,
    /// The override file that set it, when it did not come from a rule.
    #[serde(default)]
    pub overridden: Option<String>,
}

impl Decision {
    pub fn new(
        name: &str,
        value: &str,
        kind: &str,
        reason: impl Into<String>,
        fact: impl Into<String>,
    ) -> Decision {
        Decision {
            name: name.into(),
            value: value.into(),
            kind: kind.into(),
            reason: reason.into(),
            fact: fact.into(),
            overridden: None,
        }
    }
}

/// A GPU backend considered: chosen (with what) or not (and why not).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Backend {
    pub name: String,
    pub chosen: bool,
    pub why: String,
}

impl Backend {
    fn from_result(name: &str, r: Result<String, String>) -> Backend {
        match r {
            Ok(why) => Backend {
                name: name.into(),
                chosen: true,
                why,
            },
            Err(why) => Backend {
                name: name.into(),
                chosen: false,
                why,
            },
        }
    }
}

/// What the runtime uses when a flag is not given, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuntimeDefaults {
    pub threads: u32,
    pub threads_why: String,
    /// `all`, `auto` (fit VRAM from the GGUF header) or a number.
    pub gpu_layers: String,
    pub gpu_layers_why: String,
    pub ctx_size: u32,
    pub ctx_why: String,
    /// `on`/`off`, set only by `setup --tune` (absent: llama.cpp's default, auto).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flash_attn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flash_attn_why: Option<String>,
    /// Physical batch, set only by `setup --tune` (absent: the whole batch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ubatch: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ubatch_why: Option<String>,
    /// The measurement behind the tuned values (`setup --tune`, `tune.json`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tuned: Option<TunedEvidence>,
}

/// Where tuned runtime defaults came from; embedded in runtime-info.json, shown by `info`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TunedEvidence {
    /// `YYYY-MM-DD HH:MM UTC`.
    pub on: String,
    /// The key of the rule-based build that was measured (where tune.json lives).
    pub base_key: String,
    /// One line per tuned choice, e.g. `threads 1: measured 1.31x tg over 2 (noise 2.0%)`.
    pub evidence: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    pub schema: u32,
    /// A label for the machine ("probed linux x86_64", or a declared machine's name).
    pub machine: String,
    /// sha256 of the decisions (CMake name, value, type; see [`decisions_hash`]): the identity of
    /// what is compiled. Explanations, facts, GPU names and driver versions are not in it, so a
    /// GPU or driver change that compiles the same code keeps the build key.
    pub hash: String,
    /// The rendered CMake initial-cache script (`cmake -C`).
    pub cmake: String,
    pub decisions: Vec<Decision>,
    pub backends: Vec<Backend>,
    pub runtime: RuntimeDefaults,
    pub warnings: Vec<String>,
    pub hints: Vec<String>,
    /// What `setup` proves about this build (`proof::statement`), for `--explain`.
    pub proof: String,
}

impl Profile {
    pub fn decision(&self, name: &str) -> Option<&str> {
        self.decisions
            .iter()
            .find(|d| d.name == name)
            .map(|d| d.value.as_str())
    }
    pub fn short_hash(&self) -> &str {
        &self.hash[..12]
    }
}

/// The documented template context: what `profiles/*.j2` may use.
#[derive(Debug, Serialize)]
pub struct TemplateContext<'a> {
    /// Machine label.
    pub machine: &'a str,
    /// Every decision, in rule order.
    pub decisions: &'a [Decision],
}

fn machine_label(m: &Machine) -> String {
    match (&m.origin, &m.name) {
        (Origin::Declared, Some(n)) => {
            format!("declared machine {n} ({} {})", m.os.value, m.arch.value)
        }
        (Origin::Declared, None) => format!("declared machine ({} {})", m.os.value, m.arch.value),
        (Origin::Probed, _) => format!("probed {} {} machine", m.os.value, m.arch.value),
    }
}

/// CMake quoting for `set()` arguments: always a quoted argument, with `\`, `"` and `$` escaped.
fn cmake_quote(v: String) -> String {
    let mut s = String::with_capacity(v.len() + 2);
    s.push('"');
    for c in v.chars() {
        match c {
            '\\' | '"' | '$' => {
                s.push('\\');
                s.push(c);
            }
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s.push('"');
    s
}

pub fn render_cmake(template: &str, ctx: &TemplateContext) -> Result<String, minijinja::Error> {
    let mut env = minijinja::Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    env.add_filter("cmake_quote", cmake_quote);
    env.add_template("profile.cmake", template)?;
    let mut out = env.get_template("profile.cmake")?.render(ctx)?;
    if !out.ends_with('\n') {
        out.push('\n');
    }
    Ok(out)
}

/// The profile for a Machine: pure, deterministic.
pub fn plan(m: &Machine, o: &Overrides) -> Profile {
    plan_with(m, o, CMAKE_TEMPLATE, &cuda::CudaTable::embedded())
}

pub fn plan_with(m: &Machine, o: &Overrides, template: &str, table: &cuda::CudaTable) -> Profile {
    let out = rules::decide(m, o, table);
    let label = machine_label(m);
    let decisions = out.decisions;
    let cmake = render_cmake(
        template,
        &TemplateContext {
            machine: &label,
            decisions: &decisions,
        },
    )
    .expect("the embedded template renders (checked by tests)");
    let hash = decisions_hash(&decisions);
    let proof = proof::statement(m, &out.backends);
    Profile {
        schema: PROFILE_SCHEMA,
        machine: label,
        hash,
        cmake,
        decisions,
        backends: out.backends,
        runtime: out.runtime,
        warnings: out.warnings,
        hints: out.hints,
        proof,
    }
}

pub use crate::hashing::hex;

/// sha256 over `name=value:type` lines of the decisions, in rule order (order matters to CMake
/// only for duplicates, which the rules never produce; it is kept for a stable, explainable hash).
pub fn decisions_hash(decisions: &[Decision]) -> String {
    let mut h = Sha256::new();
    h.update(b"tunellama decisions v1\n");
    for d in decisions {
        h.update(format!("{}={}:{}\n", d.name, d.value, d.kind).as_bytes());
    }
    hex(&h.finalize())
}

/// `cargo xtask profile`.
pub fn run(
    ctx: &crate::context::Ctx,
    args: &ProfileArgs,
) -> anyhow::Result<std::process::ExitCode> {
    let mut machine = ctx.machine(args.machine.machine.as_deref())?;
    if args.machine.cuda_toolkit.as_deref() == Some("wheels") {
        crate::cuda_wheels::substitute(ctx, &mut machine)?;
    }
    let overrides = load_overrides(ctx, args.overrides.as_deref())?;
    let mut p = plan(&machine, &overrides);
    // This machine's tuned choice (`setup --tune`), when one is recorded for its build's key.
    if args.machine.machine.is_none() {
        if let Some(r) = crate::tune::record_for_this_machine(ctx, &machine, &p) {
            p = crate::tune::tuned_profile(&machine, &overrides, &r);
        }
    }
    if ctx.json {
        println!("{}", serde_json::to_string_pretty(&p)?);
    } else if args.explain {
        print!("{}", crate::report::profile_explain(&p));
    } else {
        print!("{}", p.cmake);
        for w in &p.warnings {
            eprintln!("warning: {w}");
        }
        for h in &p.hints {
            eprintln!("hint: {h}");
        }
        eprintln!("profile hash: {}", p.hash);
    }
    if let Some(out) = &args.output {
        crate::fsx::write_atomic(out, p.cmake.as_bytes())?;
        ctx.info(format!("wrote {}", out.display()));
    }
    Ok(std::process::ExitCode::SUCCESS)
}

/// The override file: `--overrides FILE`, else `profiles/local.toml` in the repository.
pub fn load_overrides(
    ctx: &crate::context::Ctx,
    file: Option<&std::path::Path>,
) -> anyhow::Result<Overrides> {
    let path = match file {
        Some(f) => {
            if !f.exists() {
                anyhow::bail!("override file {} does not exist", f.display());
            }
            f.to_path_buf()
        }
        None => ctx.repo_root.join("profiles/local.toml"),
    };
    Ok(Overrides::load(&path)?)
}

// --- command-line options of this stage (composed by `crate::cli`; nothing here imports it)

#[derive(Debug, clap::Args)]
pub struct ProfileArgs {
    #[command(flatten)]
    pub machine: crate::machine::MachineArg,
    /// Print every decision with the fact that chose it, and why each backend was or was not chosen
    #[arg(long)]
    pub explain: bool,
    /// Override file [default: profiles/local.toml when it exists]
    #[arg(long, value_name = "FILE")]
    pub overrides: Option<std::path::PathBuf>,
    /// Also write the CMake script to FILE (atomically)
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<std::path::PathBuf>,
}
