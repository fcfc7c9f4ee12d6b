//! Command-line surface: typed options for every command. Parsing only; no work happens here.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    about = "Probe this machine, render its llama.cpp build profile, build, verify and cache it",
    version
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct Global {
    /// Where everything the tool writes outside `target/` goes [default: the platform cache dir]
    #[arg(long, global = true, env = crate::env::CACHE_DIR_VAR, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Print data as JSON on stdout (human messages stay on stderr)
    #[arg(long, global = true)]
    pub json: bool,
    /// Only errors
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// More detail (repeat for more)
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Answer yes to questions (installing missing prerequisites); implied when not interactive
    #[arg(short = 'y', long, global = true)]
    pub yes: bool,
}

/// Where the Machine comes from.
#[derive(Debug, Args, Clone, Default)]
pub struct MachineArg {
    /// Use a recorded Machine (JSON printed by `probe --json`) instead of probing this one
    #[arg(long, value_name = "FILE")]
    pub machine: Option<PathBuf>,
    /// `wheels`: compile CUDA with the toolkit from NVIDIA's CUDA 13 Python wheels, installed
    /// into the cache on first use (replaces the machine's own toolkit; see docs/cuda.md)
    #[arg(long, value_name = "wheels", value_parser = ["wheels"])]
    pub cuda_toolkit: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// The main job: probe, install missing build tools, render the profile, build and cache llama.cpp
    Setup(SetupArgs),
    /// Print this machine's facts (compilers, CPU features, GPUs, toolkits), each with its source
    Probe(ProbeArgs),
    /// Render this machine's CMake profile and runtime defaults; --explain says why for each flag
    Profile(ProfileArgs),
    /// Show the system tools a source build needs (cmake, ninja, compilers); --install installs them
    Prereqs(PrereqArgs),
    /// Which build is current for this machine, its key inputs, and whether it is fresh
    Status(StatusArgs),
    /// List or garbage-collect cached builds
    Cache(CacheArgs),
    /// Run the project's checks: install test prerequisites, cargo fmt --check, clippy, cargo test
    Test(TestArgs),
    /// Hash a llama.cpp tree and show (or --write) the pin: moving to a newer llama.cpp
    Pin(PinArgs),
    /// Obtain the pinned llama.cpp tree and verify its digest; prints the verified tree
    Source(SourceArgs),
    /// Model catalog: list, recommend, fetch (checksummed), verify, path, rm
    Models(ModelsArgs),
    /// Tuned vs portable llama.cpp: pp and tg tokens/s of both runtimes and their ratio
    /// (`bench download`: download throughput against curl on loopback)
    Bench(BenchArgs),
    /// The prebuilt CI matrix: print it (--json for an Actions matrix), generate or lint the workflow
    Ci(CiArgs),
    /// The prebuilt index: gather dist manifests into it, or show which artifact fits this machine
    Prebuilt(PrebuiltArgs),
    /// Write a deterministic llama-architecture test model (GGUF) from a seed
    Testmodel(TestModelArgs),
    /// Build one CI matrix variant (ci/matrix.toml) and pack it as a prebuilt archive + manifest
    Dist(DistArgs),
    /// Cross-build a declared arm64 Machine on this x86-64 host and verify it under qemu-aarch64
    Cross(CrossArgs),
    /// Run the current build's runtime binary with ARGS (`cargo xtask run -- info --json`)
    Run(RunArgs),
    /// Regenerate the runtime's FFI bindings from the pinned llama.h (needs libclang; installs it)
    Bindings(BindingsArgs),
}

#[derive(Debug, Args)]
pub struct DistArgs {
    /// The variant to build (`cargo xtask ci matrix` lists them)
    #[arg(long, value_name = "NAME")]
    pub variant: String,
    /// Folder for the archive and its manifest
    #[arg(long, default_value = "dist", value_name = "DIR")]
    pub out: PathBuf,
    /// Rebuild even when the cache holds the variant's build
    #[arg(long)]
    pub force: bool,
    /// `wheels`: compile a CUDA variant with the CUDA 13 toolkit from NVIDIA's Python wheels
    /// (installed into the cache on first use; docs/cuda.md)
    #[arg(long, value_name = "wheels", value_parser = ["wheels"])]
    pub cuda_toolkit: Option<String>,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Arguments for the runtime (after `--`)
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "ARGS"
    )]
    pub args: Vec<std::ffi::OsString>,
}

#[derive(Debug, Args)]
pub struct BindingsArgs {
    /// Compare instead of writing: fail with a diff when the checked-in bindings are stale
    #[arg(long)]
    pub check: bool,
}

#[derive(Debug, Args)]
pub struct ProbeArgs {
    /// Seconds after which a probe command (e.g. a wedged nvidia-smi) is stopped
    #[arg(long, default_value_t = 10, value_name = "SECS")]
    pub timeout: u64,
}

#[derive(Debug, Args)]
pub struct ProfileArgs {
    #[command(flatten)]
    pub machine: MachineArg,
    /// Print every decision with the fact that chose it, and why each backend was or was not chosen
    #[arg(long)]
    pub explain: bool,
    /// Override file [default: profiles/local.toml when it exists]
    #[arg(long, value_name = "FILE")]
    pub overrides: Option<PathBuf>,
    /// Also write the CMake script to FILE (atomically)
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct CrossArgs {
    /// A declared Machine (JSON) of another architecture, e.g. tests/fixtures/machines/declared-linux-arm64-v82-dotprod.json
    #[arg(long, value_name = "FILE")]
    pub machine: PathBuf,
    /// Rebuild even when the cache holds this build
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct PrereqArgs {
    /// Install what is missing through the system package manager (asks first unless --yes/CI)
    #[arg(long)]
    pub install: bool,
    /// With --install: also install the CUDA 13 toolkit from NVIDIA's Python wheels into the
    /// cache (nvcc, cudart, cuBLAS; about 1 GiB; python3-pip through the package manager if missing)
    #[arg(long, requires = "install")]
    pub cuda_wheels: bool,
    /// Also what cross-building for ARCH and running it under emulation needs (`aarch64`: the
    /// arm64 cross compilers and qemu-user)
    #[arg(long, value_name = "ARCH")]
    pub cross: Option<String>,
    /// Also what a Vulkan build needs (loader, glslc, SPIR-V headers, vulkaninfo, headers new
    /// enough for the pinned tree); implied when the profile (with --overrides) chooses Vulkan
    #[arg(long)]
    pub vulkan: bool,
    /// Override file consulted for `[backends] vulkan` [default: profiles/local.toml]
    #[arg(long, value_name = "FILE")]
    pub overrides: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct TestArgs {
    /// Extra arguments passed to `cargo test` (e.g. a test name filter)
    #[arg(last = true)]
    pub cargo_test_args: Vec<String>,
}

#[derive(Debug, Args)]
pub struct SetupArgs {
    /// Override file [default: profiles/local.toml when it exists]
    #[arg(long, value_name = "FILE")]
    pub overrides: Option<PathBuf>,
    #[command(flatten)]
    pub machine: MachineArg,
    /// Rebuild from source even when the cache holds this machine's build for the key; no
    /// prebuilt is installed
    #[arg(long)]
    pub force: bool,
    /// Build and verify only the llama.cpp libraries (for linking your own program): no runtime
    #[arg(long)]
    pub lib_only: bool,
    /// Build, verify and cache, but leave `current` (what `status` and `run` use) unchanged:
    /// for a second variant beside the machine's tuned build (e.g. Vulkan on lavapipe)
    #[arg(long)]
    pub keep_current: bool,
    /// Prebuilt index (a path or an https:// URL; repeatable): a fitting prebuilt is installed
    /// only when this machine's tuned build is not cached for the current key (a fresh tuned
    /// build always wins) and neither --from-source nor --force is given
    #[arg(
        long,
        value_name = "PATH|URL",
        env = "TUNELLAMA_PREBUILT_INDEX",
        value_delimiter = ' '
    )]
    pub prebuilt_index: Vec<String>,
    /// Never install a prebuilt (even with indexes configured): always build from source
    #[arg(long)]
    pub from_source: bool,
    /// Accept plain http:// prebuilt URLs (loopback test servers)
    #[arg(long)]
    pub allow_http: bool,
    /// Also fetch (checksummed) a model from the catalog: a name, or `auto` for the recommended one
    #[arg(long, value_name = "NAME|auto")]
    pub model: Option<String>,
    #[command(flatten)]
    pub source: SourceArgs,
}

#[derive(Debug, Args, Default)]
pub struct SourceArgs {
    /// How to obtain the tree
    #[arg(long, value_enum, default_value_t)]
    pub transport: crate::source::Transport,
    /// git: repository URL or local path [default: the pin's upstream repository]
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
    /// git: commit, tag or branch to fetch [default: the pin's upstream commit]
    #[arg(long, value_name = "REV")]
    pub rev: Option<String>,
    /// path: the llama.cpp checkout to use
    #[arg(long, value_name = "DIR", required_if_eq("transport", "path"))]
    pub path: Option<PathBuf>,
    /// Accept a tree that differs from the pin; it is marked unpinned everywhere it is shown
    #[arg(long)]
    pub allow_unpinned: bool,
    /// Use only what cargo's cache (or the git cache) already holds
    #[arg(long)]
    pub offline: bool,
    /// The pin to verify against [default: profiles/llama.pin.toml]
    #[arg(long, value_name = "FILE")]
    pub pin: Option<PathBuf>,
    /// Print the plan and change nothing (`setup`: tools it would install, source, key, cache hit
    /// or build, prebuilt candidate and which is used and why; text, or JSON with --json.
    /// `source`: the source plan as JSON)
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args, Default)]
pub struct PinArgs {
    /// The llama.cpp tree to pin (a folder)
    #[arg(long, value_name = "DIR", conflicts_with = "crate_version")]
    pub tree: Option<PathBuf>,
    /// Fetch this version of the pin's crate through cargo and pin the tree it ships
    #[arg(long, value_name = "VERSION")]
    pub crate_version: Option<String>,
    /// Record this upstream commit (full 40-hex id)
    #[arg(long, value_name = "SHA")]
    pub commit: Option<String>,
    /// Record this upstream release tag (`b6123` also sets the build number)
    #[arg(long, value_name = "TAG")]
    pub tag: Option<String>,
    /// The upstream repository URL to record
    #[arg(long, value_name = "URL")]
    pub repository: Option<String>,
    /// LLAMA_BUILD_NUMBER to record [default: from the tag, else 0]
    #[arg(long, value_name = "N")]
    pub build_number: Option<u64>,
    /// Write the pin and its manifest instead of printing the pin; also (re)computes this
    /// machine's shipped reference logits (profiles/reference-logits.json) unless --no-reference
    #[arg(long)]
    pub write: bool,
    /// Compute the reference logits of the pinned tree on this machine (portable build, cached)
    /// and compare them with the shipped ones; with --write, write them beside the pin. Alone
    /// (without --tree/--crate-version) it leaves the pin as it is
    #[arg(long, conflicts_with = "no_reference")]
    pub reference: bool,
    /// With --write: do not compute the reference logits (setup then builds the portable
    /// reference until `pin --reference --write` runs)
    #[arg(long)]
    pub no_reference: bool,
    /// With --crate-version: use only cargo's cache
    #[arg(long)]
    pub offline: bool,
    /// The pin file [default: profiles/llama.pin.toml]
    #[arg(long, value_name = "FILE")]
    pub pin: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Override file [default: profiles/local.toml when it exists]
    #[arg(long, value_name = "FILE")]
    pub overrides: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct CacheArgs {
    #[command(subcommand)]
    pub command: CacheCommand,
}

#[derive(Debug, Subcommand)]
pub enum CacheCommand {
    /// List cached builds (the current one is marked *)
    Ls,
    /// Remove cached builds except the current one and the N most recent others
    Gc {
        /// How many non-current entries to keep
        #[arg(long, default_value_t = 1)]
        keep: usize,
    },
}

#[derive(Debug, Args)]
pub struct ModelsArgs {
    #[command(subcommand)]
    pub command: ModelsCommand,
}

/// Extra catalogs, read after `models/catalog.toml` and `models/local.toml`.
#[derive(Debug, Args, Clone, Default)]
pub struct CatalogArg {
    /// A catalog file of your own (repeatable); its entries override same-named ones
    #[arg(long = "catalog", value_name = "FILE")]
    pub catalog: Vec<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum ModelsCommand {
    /// List the catalog's models with what fits this machine and what is stored
    List {
        #[command(flatten)]
        catalog: CatalogArg,
        #[command(flatten)]
        machine: MachineArg,
    },
    /// The best model for this machine's RAM/VRAM, and why
    Recommend {
        #[command(flatten)]
        catalog: CatalogArg,
        #[command(flatten)]
        machine: MachineArg,
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

#[derive(Debug, Args)]
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

#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub command: Option<BenchCommand>,
    #[command(flatten)]
    pub builds: BenchBuildsArgs,
}

/// `cargo xtask bench` without a subcommand: the tuned build against the portable baseline.
#[derive(Debug, Args, Clone)]
pub struct BenchBuildsArgs {
    /// Model shape: `bench` (~0.4B parameters, realistic) or `tiny` (seconds; for tests)
    #[arg(long, default_value = "bench", value_name = "SHAPE")]
    pub shape: String,
    /// Weight types to measure, comma-separated
    #[arg(
        long,
        default_value = "q8_0,q4_0",
        value_delimiter = ',',
        value_name = "TYPES"
    )]
    pub quant: Vec<String>,
    /// Prompt-processing test size (tokens in one batch)
    #[arg(short = 'p', long, default_value_t = 512, value_name = "N")]
    pub prompt_tokens: u32,
    /// Generation test size (tokens, one at a time)
    #[arg(short = 'n', long, default_value_t = 128, value_name = "N")]
    pub gen_tokens: u32,
    /// Rounds; each round runs both builds once, alternating, so drift hits both alike
    #[arg(short = 'r', long, default_value_t = 3, value_name = "N")]
    pub rounds: u32,
    /// Threads for both builds [default: the profile's]
    #[arg(short = 't', long, value_name = "N")]
    pub threads: Option<u32>,
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Download throughput with hashing, against `curl -o` on the same loopback server
    Download(BenchDownloadArgs),
    /// The first setup (fresh clone, empty target dir and cache) against a cold release build of
    /// a project depending on the `llama-cpp-2` crate (same llama.cpp tree), in one run
    FirstSetup(BenchFirstSetupArgs),
}

#[derive(Debug, Args)]
pub struct BenchFirstSetupArgs {
    /// The `llama-cpp-2` version of the peer (its `llama-cpp-sys-2` is held at the pin's version)
    #[arg(long, default_value = "0.1.160", value_name = "VERSION")]
    pub peer_version: String,
    /// Scratch folder (must not exist) [default: a new folder under the cache's tmp/]
    #[arg(long, value_name = "DIR")]
    pub work_dir: Option<PathBuf>,
    /// Replace the first-setup section of docs/bench.md with this run's figures
    #[arg(long)]
    pub write_doc: bool,
    /// Keep the scratch folder (clone, target dirs, cache, logs) afterwards
    #[arg(long)]
    pub keep: bool,
}

#[derive(Debug, Args)]
pub struct BenchDownloadArgs {
    /// Size of the served file
    #[arg(long, default_value_t = 1024, value_name = "N")]
    pub size_mib: u64,
    /// Runs of each client (the best run counts)
    #[arg(long, default_value_t = 3, value_name = "N")]
    pub runs: u32,
}

#[derive(Debug, Args)]
pub struct TestModelArgs {
    /// Model shape: tiny (64 wide, 2 layers) or bench (~0.37B parameters)
    #[arg(long, value_enum)]
    pub shape: crate::testmodel::ShapeName,
    /// Storage of the weight matrices [default: f32 for tiny, q8_0 for bench]
    #[arg(long, value_enum)]
    pub quant: Option<crate::testmodel::Quant>,
    /// Seed of the weights: same seed, same bytes
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub seed: u64,
    /// The .gguf file to write (its folder must exist)
    #[arg(long, short, value_name = "PATH")]
    pub output: PathBuf,
}

#[derive(Debug, Args)]
pub struct CiArgs {
    #[command(subcommand)]
    pub command: CiCommand,
}

#[derive(Debug, Subcommand)]
pub enum CiCommand {
    /// Print ci/matrix.toml's variants and their requirements (--json: `{"include": [...]}`)
    Matrix,
    /// Render .github/workflows/prebuilt.yml from ci/matrix.toml and ci/workflow.yml.j2
    Generate {
        /// Write nothing; fail with a diff when the checked-in file differs
        #[arg(long)]
        check: bool,
    },
    /// Run actionlint on the generated workflow (installs it into target/actionlint first)
    Lint,
}

#[derive(Debug, Args)]
pub struct PrebuiltArgs {
    #[command(subcommand)]
    pub command: PrebuiltCommand,
}

#[derive(Debug, Subcommand)]
pub enum PrebuiltCommand {
    /// Build the prebuilt index from the manifests (and archives) `dist` wrote into DIR
    Index {
        /// Folder with `*.manifest.json` and the archives they name
        #[arg(long, value_name = "DIR")]
        from: PathBuf,
        /// URL the archives will be published under [default: none: URLs relative to the index]
        #[arg(long, value_name = "URL")]
        base_url: Option<String>,
        /// Write the index to FILE (atomically) instead of stdout
        #[arg(long, short, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Which artifact of an index fits this machine, and why each other one does not
    Select {
        /// The index: a path or an https:// URL
        #[arg(long, value_name = "PATH|URL")]
        index: String,
        #[command(flatten)]
        machine: MachineArg,
        /// Accept plain http:// URLs
        #[arg(long)]
        allow_http: bool,
    },
}
