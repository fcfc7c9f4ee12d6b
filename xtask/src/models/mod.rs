//! `cargo xtask models ...`: the catalog, recommendation, checksummed fetch into the store, and
//! `ensure` (what `setup --model` uses).

pub mod catalog;
pub mod fetch;
pub mod recommend;
pub mod store;

use crate::context::Ctx;
use crate::download::{self, DownloadError};
use crate::machine::Machine;
use crate::progress::{human_bytes, Progress};
use catalog::{Catalog, CatalogError, Model, Purpose};
use fetch::FetchOptions;
use recommend::{Placement, RecommendError};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;
use store::{Store, Stored};

#[derive(Debug, thiserror::Error)]
pub enum ModelsError {
    #[error("no model named `{name}` in the catalogs ({})", files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>().join(", "))]
    Unknown { name: String, files: Vec<PathBuf> },
    #[error("{name} is not stored and --offline forbids downloading it")]
    Offline { name: String },
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Download(#[from] DownloadError),
    #[error(transparent)]
    Recommend(#[from] RecommendError),
    #[error(transparent)]
    Io(std::io::Error),
}

impl crate::error::Hint for ModelsError {
    fn hint(&self) -> Option<String> {
        match self {
            ModelsError::Unknown { .. } => Some("`cargo xtask models list` shows the names; add your own with --catalog FILE or models/local.toml".into()),
            ModelsError::Offline { name } => Some(format!("run `cargo xtask models fetch {name}` while online")),
            ModelsError::Catalog(e) => e.hint(),
            ModelsError::Download(e) => e.hint(),
            ModelsError::Recommend(e) => e.hint(),
            ModelsError::Io(_) => None,
        }
    }
}

fn load(ctx: &Ctx, extra: &[PathBuf]) -> Result<Catalog, ModelsError> {
    Ok(Catalog::load_default(&ctx.repo_root, extra)?)
}

/// Fills in header facts for the models that are stored, so sizing uses the real file.
fn with_facts(mut cat: Catalog, store: &Store) -> Catalog {
    for m in &mut cat.models {
        if store.status(m) == Stored::Present {
            m.gguf = facts(&store.blob(&m.sha256)).ok();
        }
    }
    cat
}

fn find<'a>(cat: &'a Catalog, name: &str) -> Result<&'a Model, ModelsError> {
    cat.get(name).ok_or_else(|| ModelsError::Unknown {
        name: name.to_string(),
        files: cat.files.clone(),
    })
}

/// For `setup --model NAME|auto`: the verified file of a catalog model (the best fit for `machine`
/// when `auto`), fetched when it is not stored yet. Returns its friendly path.
pub fn ensure(
    ctx: &Ctx,
    name_or_auto: &str,
    machine: &Machine,
    progress: &dyn Progress,
) -> anyhow::Result<PathBuf> {
    let store = Store::new(&ctx.cache_dir);
    let cat = with_facts(load(ctx, &[])?, &store);
    let name = if name_or_auto == "auto" {
        let r = recommend::recommend(&cat, machine, Purpose::Chat)?;
        ctx.info(format!(
            "model: {} ({})",
            r.name,
            r.why.last().cloned().unwrap_or_default()
        ));
        r.name
    } else {
        name_or_auto.to_string()
    };
    let m = find(&cat, &name)?;
    let f = fetch::fetch(
        &Store::new(&ctx.cache_dir),
        m,
        &FetchOptions::from_env(),
        progress,
    )?;
    Ok(f.path)
}

/// Dispatches `models` subcommands.
pub fn run(ctx: &Ctx, args: &ModelsArgs, progress: &dyn Progress) -> anyhow::Result<ExitCode> {
    let store = Store::new(&ctx.cache_dir);
    match &args.command {
        ModelsCommand::List { catalog, machine } => {
            let cat = with_facts(load(ctx, &catalog.catalog)?, &store);
            let m = ctx.machine(machine.machine.as_deref())?;
            list(ctx, &cat, &store, &m)
        }
        ModelsCommand::Recommend {
            catalog,
            machine,
            purpose,
        } => {
            let cat = with_facts(load(ctx, &catalog.catalog)?, &store);
            let m = ctx.machine(machine.machine.as_deref())?;
            let purpose = Purpose::parse(purpose).unwrap_or_default();
            let r = recommend::recommend(&cat, &m, purpose)?;
            let defaults = find(&cat, &r.name)
                .ok()
                .filter(|model| store.status(model) == Stored::Present)
                .and_then(|model| {
                    let facts = crate::gguf::read_header(&store.blob(&model.sha256))
                        .ok()?
                        .facts();
                    Some(recommend::runtime_defaults(&facts, model.size, &m))
                });
            if ctx.json {
                #[derive(Serialize)]
                struct Out<'a> {
                    #[serde(flatten)]
                    r: &'a recommend::Recommendation,
                    runtime: Option<recommend::RuntimeDefaults>,
                }
                println!(
                    "{}",
                    serde_json::to_string_pretty(&Out {
                        r: &r,
                        runtime: defaults
                    })?
                );
            } else {
                println!("{}", r.name);
                for w in &r.why {
                    eprintln!("  {w}");
                }
                if let Some(d) = defaults {
                    for w in &d.why {
                        eprintln!("  runtime: {w}");
                    }
                }
                if !r.alternatives.is_empty() {
                    eprintln!("  alternatives: {}", r.alternatives.join(", "));
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        ModelsCommand::Fetch(a) => {
            let cat = load(ctx, &a.catalog.catalog)?;
            let models: Vec<&Model> = a
                .names
                .iter()
                .map(|n| find(&cat, n))
                .collect::<Result<_, _>>()?;
            let mut opts = FetchOptions::from_env();
            opts.offline = a.offline;
            opts.download.allow_http = a.allow_http;
            opts.download.retries = a.retries;
            if let Some(ms) = a.backoff_ms {
                opts.download.backoff = Duration::from_millis(ms);
            }
            if let Some(s) = a.stall_timeout {
                opts.download.stall_timeout = Duration::from_secs_f64(s);
            }
            for m in models {
                let f = fetch::fetch(&store, m, &opts, progress)?;
                if !f.downloaded {
                    ctx.info(format!("{}: already stored and verified", m.name));
                }
                println!("{}", f.path.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        ModelsCommand::Verify { name, catalog } => {
            let cat = load(ctx, &catalog.catalog)?;
            let models: Vec<&Model> = match name {
                Some(n) => vec![find(&cat, n)?],
                None => cat
                    .models
                    .iter()
                    .filter(|m| store.status(m) == Stored::Present)
                    .collect(),
            };
            verify(ctx, &store, &models)
        }
        ModelsCommand::Path { name, catalog } => {
            let cat = load(ctx, &catalog.catalog)?;
            let m = find(&cat, name)?;
            if store.status(m) != Stored::Present {
                eprintln!(
                    "{} is not stored (fetch it with `cargo xtask models fetch {}`)",
                    m.name, m.name
                );
                return Ok(ExitCode::from(1));
            }
            let p = store.link(m).map_err(ModelsError::Io)?;
            println!("{}", p.display());
            Ok(ExitCode::SUCCESS)
        }
        ModelsCommand::Rm { name, catalog } => {
            let cat = load(ctx, &catalog.catalog)?;
            let m = find(&cat, name)?;
            let removed = store
                .remove(m, |_| {
                    progress.note(&format!("{name}: waiting for a running fetch"))
                })
                .map_err(ModelsError::Io)?;
            if removed.is_empty() {
                ctx.info(format!("{name}: nothing stored"));
            }
            for p in removed {
                ctx.info(format!("removed {}", p.display()));
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

#[derive(Serialize)]
struct Row<'a> {
    #[serde(flatten)]
    model: &'a Model,
    memory_needed: u64,
    fits: Placement,
    stored: &'static str,
}

fn list(ctx: &Ctx, cat: &Catalog, store: &Store, m: &Machine) -> anyhow::Result<ExitCode> {
    let budget = recommend::Budget::of(m);
    let rows: Vec<Row> = cat
        .models
        .iter()
        .map(|model| Row {
            model,
            memory_needed: model.memory_needed(),
            fits: budget
                .as_ref()
                .map(|b| recommend::placement(model, b))
                .unwrap_or(Placement::None),
            stored: match store.status(model) {
                Stored::Present => "yes",
                Stored::Partial(_) => "partial",
                Stored::Absent => "no",
            },
        })
        .collect();
    if ctx.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<46} {:>10} {:>7} {:>9} {:>10} {:<9} {:>4} {:<6}",
        "NAME", "SIZE", "PARAMS", "QUANT", "NEEDS", "PURPOSE", "FITS", "STORED"
    );
    for r in &rows {
        println!(
            "{:<46} {:>10} {:>7} {:>9} {:>10} {:<9} {:>4} {:<6}",
            r.model.name,
            human_bytes(r.model.size),
            r.model.parameters.as_deref().unwrap_or("?"),
            r.model.quantization.as_deref().unwrap_or("?"),
            human_bytes(r.memory_needed),
            r.model.purpose.as_str(),
            r.fits.as_str(),
            r.stored
        );
    }
    match budget {
        Some(b) => ctx.info(format!(
            "FITS: gpu = entirely in VRAM{}, cpu = in RAM ({} usable of {})",
            b.gpu
                .map(|g| format!(" ({} usable on {})", human_bytes(g.vram_usable), g.name))
                .unwrap_or_default(),
            human_bytes(b.ram_usable),
            human_bytes(b.ram_total)
        )),
        None => ctx.info("FITS: unknown (the machine does not state its memory)"),
    }
    Ok(ExitCode::SUCCESS)
}

fn verify(ctx: &Ctx, store: &Store, models: &[&Model]) -> anyhow::Result<ExitCode> {
    let mut bad = 0;
    if models.is_empty() {
        ctx.info("nothing stored to verify");
    }
    for m in models {
        let blob = store.blob(&m.sha256);
        if store.status(m) != Stored::Present {
            eprintln!("{}: not stored", m.name);
            bad += 1;
            continue;
        }
        let actual = download::sha256_file(&blob).map_err(ModelsError::Io)?;
        if actual == m.sha256 {
            println!("{}: ok ({})", m.name, blob.display());
        } else {
            fs_err::remove_file(&blob).map_err(ModelsError::Io)?;
            eprintln!(
                "{}: CHECKSUM MISMATCH, removed {}\n  expected sha256 {}\n  actual   sha256 {}",
                m.name,
                blob.display(),
                m.sha256,
                actual
            );
            bad += 1;
        }
    }
    Ok(if bad == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Facts about a stored model's file, read from its GGUF header.
pub fn facts(path: &Path) -> Result<crate::gguf::Facts, crate::gguf::GgufError> {
    Ok(crate::gguf::read_header(path)?.facts())
}

// --- command-line options of this stage (composed by `crate::cli`; nothing here imports it)

#[derive(Debug, clap::Args)]
pub struct ModelsArgs {
    #[command(subcommand)]
    pub command: ModelsCommand,
}

/// Extra catalogs, read after `models/catalog.toml` and `models/local.toml`.
#[derive(Debug, clap::Args, Clone, Default)]
pub struct CatalogArg {
    /// A catalog file of your own (repeatable); its entries override same-named ones
    #[arg(long = "catalog", value_name = "FILE")]
    pub catalog: Vec<std::path::PathBuf>,
}

#[derive(Debug, clap::Subcommand)]
pub enum ModelsCommand {
    /// List the catalog's models with what fits this machine and what is stored
    List {
        #[command(flatten)]
        catalog: CatalogArg,
        #[command(flatten)]
        machine: crate::machine::MachineArg,
    },
    /// The best model for this machine's RAM/VRAM, and why
    Recommend {
        #[command(flatten)]
        catalog: CatalogArg,
        #[command(flatten)]
        machine: crate::machine::MachineArg,
        /// What the model is for
        #[arg(long, default_value = "chat", value_parser = ["chat", "code", "embedding"])]
        purpose: String,
    },
    /// Download models, verify size and sha256, and store them
    Fetch(FetchArgs),
    /// Re-hash stored models (all stored ones, or NAME); a mismatching file is removed
    Verify {
        name: Option<String>,
        #[command(flatten)]
        catalog: CatalogArg,
    },
    /// Print the absolute path of a stored, verified model (exit status 1 when absent)
    Path {
        name: String,
        #[command(flatten)]
        catalog: CatalogArg,
    },
    /// Remove a stored model
    Rm {
        name: String,
        #[command(flatten)]
        catalog: CatalogArg,
    },
}

#[derive(Debug, clap::Args)]
pub struct FetchArgs {
    /// Catalog names of the models to fetch
    #[arg(required = true, value_name = "NAME")]
    pub names: Vec<String>,
    #[command(flatten)]
    pub catalog: CatalogArg,
    /// Accept plain http:// sources (no integrity or privacy on the way; the sha256 still holds)
    #[arg(long)]
    pub allow_http: bool,
    /// Use only what is stored; fail instead of downloading
    #[arg(long)]
    pub offline: bool,
    /// Retries after transient failures (connection errors, timeouts, 5xx)
    #[arg(long, default_value_t = 5, value_name = "N")]
    pub retries: u32,
    /// First wait before a retry, doubled each time [default: 1000]
    #[arg(long, value_name = "MS", hide = true)]
    pub backoff_ms: Option<u64>,
    /// Seconds without data after which a transfer counts as stalled [default: 60]
    #[arg(long, value_name = "SECS")]
    pub stall_timeout: Option<f64>,
}
