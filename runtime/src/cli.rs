//! The command line: typed options for each command, parsed by clap. Values are range-checked in
//! `settings`, not here, so a bad value gets our message (with the limit) and exit code 2.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

pub const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  failure (llama.cpp failed, output could not be written, ...)
  2  bad input (a flag value out of range, a missing or invalid model file, a prompt that does not fit)
  3  this build needs a CPU feature this CPU lacks (run `cargo xtask setup` on this machine)";

#[derive(Debug, Parser)]
#[command(
    name = "tunellama",
    version,
    about = "Run the llama.cpp build that `cargo xtask setup` tuned for this machine",
    after_help = EXIT_CODES,
    allow_negative_numbers = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Where this build came from, what it was compiled for, and this machine's defaults
    #[command(after_help = EXIT_CODES)]
    Info {
        /// Print one JSON object on stdout
        #[arg(long)]
        json: bool,
    },
    /// Generate text from a prompt, streaming it to stdout (summary on stderr)
    #[command(after_help = EXIT_CODES, allow_negative_numbers = true)]
    Generate(GenerateArgs),
    /// Print the logits of the last prompt position (all n_vocab values) and the prompt tokens
    #[command(after_help = EXIT_CODES, allow_negative_numbers = true)]
    Logits(LogitsArgs),
    /// Measure prompt processing (pp) and token generation (tg) speed, like llama-bench
    #[command(after_help = EXIT_CODES, allow_negative_numbers = true)]
    Bench(BenchArgs),
    /// Serve the model over an OpenAI-compatible HTTP API (streaming; several requests at once)
    #[command(after_help = EXIT_CODES, allow_negative_numbers = true)]
    Serve(ServeArgs),
    /// Render a chat with a model's own chat template (`tokenizer.chat_template`) as Hugging
    /// Face's `apply_chat_template` does, without loading the model; the prompt goes to stdout
    #[command(after_help = EXIT_CODES)]
    Template(TemplateArgs),
}

/// Options every model-running command shares; unset ones come from runtime-info.json.
#[derive(Debug, Args)]
pub struct ModelArgs {
    /// The GGUF model file
    #[arg(short = 'm', long, value_name = "MODEL")]
    pub model: PathBuf,
    /// CPU threads (default: the build's tuned value, see `tunellama info`)
    #[arg(short = 't', long, value_name = "N")]
    pub threads: Option<i64>,
    /// Layers to offload to the GPU: a number, `all` or `auto` (fit into free VRAM)
    #[arg(
        short = 'g',
        long,
        value_name = "N|all|auto",
        allow_hyphen_values = true
    )]
    pub gpu_layers: Option<String>,
    /// Show llama.cpp's own log on stderr
    #[arg(long)]
    pub verbose: bool,
}

#[derive(Debug, Args)]
pub struct GenerateArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// The prompt; read from stdin when absent or `-`
    pub prompt: Option<String>,
    /// Context size in tokens (default: the tuned value, capped at the model's trained context
    /// and at what RAM holds)
    #[arg(short = 'c', long, value_name = "N")]
    pub ctx_size: Option<i64>,
    /// Stop after this many generated tokens
    #[arg(short = 'n', long, value_name = "N", default_value_t = 128)]
    pub max_tokens: i64,
    /// Sampling temperature; 0 = greedy (always the most likely token)
    #[arg(long, default_value_t = 0.8)]
    pub temp: f32,
    /// Keep only the K most likely tokens (0 = off)
    #[arg(long, default_value_t = 40)]
    pub top_k: i64,
    /// Keep the most likely tokens up to this cumulative probability (1 = off)
    #[arg(long, default_value_t = 0.95)]
    pub top_p: f32,
    /// Drop tokens less likely than this fraction of the best one (0 = off)
    #[arg(long, default_value_t = 0.05)]
    pub min_p: f32,
    /// Penalise tokens seen in the last 64 (1 = off)
    #[arg(long, default_value_t = 1.0)]
    pub repeat_penalty: f32,
    /// Random seed: the same seed, model, prompt and options give the same text
    #[arg(long, default_value_t = 42)]
    pub seed: u32,
    /// Print one JSON object (text, token counts, timings) instead of streaming
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct LogitsArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// The prompt to evaluate
    pub prompt: String,
    /// Context size in tokens (default as for `generate`)
    #[arg(short = 'c', long, value_name = "N")]
    pub ctx_size: Option<i64>,
    /// Print `{"tokens":[...],"n_vocab":N,"logits":[...]}`
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Prompt tokens processed as one batch (0 skips the pp test)
    #[arg(short = 'p', long = "n-prompt", default_value_t = 512)]
    pub n_prompt: i64,
    /// Tokens generated one at a time (0 skips the tg test)
    #[arg(short = 'n', long = "n-gen", default_value_t = 128)]
    pub n_gen: i64,
    /// Tokens put into the KV memory before each test, untimed (llama-bench's -d): the speed
    /// after a prompt of this many tokens
    #[arg(short = 'd', long = "n-depth", default_value_t = 0)]
    pub n_depth: i64,
    /// Repetitions of each test (after one warm-up run that is not counted)
    #[arg(short = 'r', long, default_value_t = 5)]
    pub repetitions: i64,
    /// Flash attention: on, off or auto (default: the build's tuned value, else auto)
    #[arg(long, value_name = "on|off|auto")]
    pub flash_attn: Option<String>,
    /// Physical batch size for pp (default: the build's tuned value, else the whole prompt)
    #[arg(long, value_name = "N")]
    pub ubatch_size: Option<i64>,
    /// Print one JSON object
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Address to listen on; anything but loopback without an API key prints a warning
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port to listen on (0: a free port, printed on stderr)
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Requests decoded together, each in its own slot (default: from cores and RAM, see `info`)
    #[arg(long, value_name = "N")]
    pub parallel: Option<i64>,
    /// Context size of each slot in tokens (default as for `generate`)
    #[arg(short = 'c', long, value_name = "N")]
    pub ctx_size: Option<i64>,
    /// Require `Authorization: Bearer K` on every endpoint but /health
    #[arg(long, value_name = "K", conflicts_with = "api_key_file")]
    pub api_key: Option<String>,
    /// Read the API key from a file (its first line, trimmed)
    #[arg(long, value_name = "F")]
    pub api_key_file: Option<PathBuf>,
    /// Allow browser requests from this origin (CORS); none without it
    #[arg(long, value_name = "O")]
    pub cors_origin: Option<String>,
}

#[derive(Debug, Args)]
pub struct TemplateArgs {
    /// The GGUF model whose template, BOS and EOS tokens are used (only its header is read)
    #[arg(
        short = 'm',
        long,
        value_name = "MODEL",
        required_unless_present = "template"
    )]
    pub model: Option<PathBuf>,
    /// A Jinja template file to use instead of the model's
    #[arg(long, value_name = "FILE")]
    pub template: Option<PathBuf>,
    /// The `bos_token` text (default: the model's, else empty)
    #[arg(long, value_name = "TEXT", allow_hyphen_values = true)]
    pub bos_token: Option<String>,
    /// The `eos_token` text (default: the model's, else empty)
    #[arg(long, value_name = "TEXT", allow_hyphen_values = true)]
    pub eos_token: Option<String>,
    /// The chat, a JSON array of `{"role": ..., "content": ...}`: a file, or `-` for stdin
    #[arg(long, value_name = "FILE", default_value = "-")]
    pub messages: PathBuf,
    /// End the prompt where the assistant's answer begins
    #[arg(long)]
    pub add_generation_prompt: bool,
    /// Print one JSON object (prompt, template source, tokens) instead of the bare prompt
    #[arg(long)]
    pub json: bool,
}
