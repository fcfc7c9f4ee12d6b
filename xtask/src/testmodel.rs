//! Deterministic llama-architecture test models made from a seed: a tiny one that `setup` can
//! load and decode in a second, and a ~0.37B-parameter one whose cost per token is that of a
//! real small model (random weights cost the same per token as trained ones).
//!
//! Same [`Spec`] ⇒ byte-identical file: weights come from a per-tensor splitmix64 stream (seeded
//! from the spec's seed and the tensor's name), so the file depends on nothing else, not on
//! threads, platform or time. The vocabulary is SentencePiece-style with byte fallback: `<unk>`,
//! `<s>`, `</s>`, the 256 byte tokens `<0x00>`..`<0xFF>`, then unused `<pad_N>` up to n_vocab, so
//! llama.cpp can tokenize any text (every byte has a token) without merges.

use crate::context::Ctx;
use crate::gguf::Value;
use crate::gguf_write::{self, GgmlType, GgufWriteError, TensorInfo};
use crate::progress::{human_bytes, Progress, Unit};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Special tokens and byte tokens come first; a vocabulary needs at least these.
pub const BASE_VOCAB: u32 = 3 + 256;
/// Spread of the random weights: uniform in ±A has standard deviation A/√3 = 0.02, the usual
/// init scale, so activations of a random model stay small and finite.
const WEIGHT_AMPLITUDE: f32 = 0.034_641;

/// Named shapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ShapeName {
    /// 64-wide, 2 layers, grouped-query attention: loads and decodes in well under a second.
    Tiny,
    /// ~0.37B parameters (1024 wide, 24 layers, 32000 tokens): a realistic benchmark load.
    Bench,
}

/// How the 2-D weight matrices are stored (norms are always F32, as llama.cpp's converters do).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Quant {
    F32,
    F16,
    #[value(name = "q8_0")]
    #[serde(rename = "q8_0")]
    Q8_0,
    #[value(name = "q4_0")]
    #[serde(rename = "q4_0")]
    Q4_0,
}

impl Quant {
    pub fn weight_type(self) -> GgmlType {
        match self {
            Quant::F32 => GgmlType::F32,
            Quant::F16 => GgmlType::F16,
            Quant::Q8_0 => GgmlType::Q8_0,
            Quant::Q4_0 => GgmlType::Q4_0,
        }
    }
    /// llama.cpp's `general.file_type` (`LLAMA_FTYPE_ALL_F32` = 0, `MOSTLY_F16` = 1,
    /// `MOSTLY_Q4_0` = 2, `MOSTLY_Q8_0` = 7).
    pub fn file_type(self) -> u32 {
        match self {
            Quant::F32 => 0,
            Quant::F16 => 1,
            Quant::Q4_0 => 2,
            Quant::Q8_0 => 7,
        }
    }
}

/// Hyperparameters of a llama-architecture model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Shape {
    pub n_vocab: u32,
    pub n_embd: u32,
    pub n_layer: u32,
    pub n_head: u32,
    pub n_head_kv: u32,
    pub n_ff: u32,
    pub n_ctx: u32,
    pub rms_eps: f32,
    pub rope_freq_base: f32,
}

impl Shape {
    pub fn named(name: ShapeName) -> Shape {
        match name {
            ShapeName::Tiny => Shape {
                // 61 unused tokens past the 259 base ones, so padding is exercised by the cheap
                // model too, and 320 is a multiple of 64 for ggml's repacked kernels.
                n_vocab: 320,
                n_embd: 64,
                n_layer: 2,
                n_head: 4,
                // Two query heads per KV head: grouped-query attention, as most current models.
                n_head_kv: 2,
                n_ff: 128,
                n_ctx: 256,
                rms_eps: 1e-5,
                rope_freq_base: 10000.0,
            },
            ShapeName::Bench => Shape {
                n_vocab: 32000,
                n_embd: 1024,
                n_layer: 24,
                n_head: 16,
                n_head_kv: 16,
                n_ff: 2816,
                n_ctx: 2048,
                rms_eps: 1e-5,
                rope_freq_base: 10000.0,
            },
        }
    }
    pub fn head_dim(&self) -> u32 {
        self.n_embd / self.n_head
    }
    pub fn n_embd_kv(&self) -> u32 {
        self.head_dim() * self.n_head_kv
    }
}

/// Everything that determines a test model's bytes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Spec {
    /// `general.name`.
    pub name: String,
    pub shape: Shape,
    pub quant: Quant,
    pub seed: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum TestModelError {
    #[error("test model spec: {field} = {value}: {reason}")]
    Spec {
        field: &'static str,
        value: String,
        reason: String,
    },
    #[error(transparent)]
    Write(#[from] GgufWriteError),
}

impl crate::error::Hint for TestModelError {
    fn hint(&self) -> Option<String> {
        Some(match self {
            TestModelError::Spec { .. } => {
                "use a named shape (`--shape tiny|bench`) or fix the field named above".into()
            }
            TestModelError::Write(e) => return e.hint(),
        })
    }
}

/// What `write` made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WrittenModel {
    pub path: PathBuf,
    pub sha256: String,
    pub bytes: u64,
    pub params: u64,
    pub spec: Spec,
}

impl Spec {
    /// A named shape with its default storage: F32 for `tiny` (exact, and small anyway), Q8_0 for
    /// `bench` (~0.4 GB, llama.cpp's fast CPU path).
    pub fn named(shape: ShapeName, quant: Option<Quant>, seed: u64) -> Spec {
        let quant = quant.unwrap_or(match shape {
            ShapeName::Tiny => Quant::F32,
            ShapeName::Bench => Quant::Q8_0,
        });
        let shape_name = match shape {
            ShapeName::Tiny => "tiny",
            ShapeName::Bench => "bench",
        };
        Spec {
            name: format!("tunellama-test-{shape_name}"),
            shape: Shape::named(shape),
            quant,
            seed,
        }
    }

    /// Refuses shapes llama.cpp would reject or that the block formats cannot hold.
    pub fn check(&self) -> Result<(), TestModelError> {
        let s = &self.shape;
        let bad = |field: &'static str, value: u32, reason: &str| {
            Err(TestModelError::Spec {
                field,
                value: value.to_string(),
                reason: reason.to_string(),
            })
        };
        if s.n_vocab < BASE_VOCAB {
            return bad(
                "n_vocab",
                s.n_vocab,
                "needs room for 3 special and 256 byte tokens (259)",
            );
        }
        if s.n_layer == 0 || s.n_ctx == 0 {
            return bad("n_layer", s.n_layer, "n_layer and n_ctx must be positive");
        }
        if s.n_head == 0 || !s.n_embd.is_multiple_of(s.n_head) {
            return bad("n_head", s.n_head, "must divide n_embd");
        }
        if s.n_head_kv == 0 || !s.n_head.is_multiple_of(s.n_head_kv) {
            return bad("n_head_kv", s.n_head_kv, "must divide n_head");
        }
        let block = self.quant.weight_type().block_len() as u32;
        // ne0 of every quantized matrix is n_embd or n_ff (ffn_down).
        for (field, v) in [("n_embd", s.n_embd), ("n_ff", s.n_ff)] {
            if v == 0 || !v.is_multiple_of(block) {
                return bad(
                    field,
                    v,
                    "must be a positive multiple of the quantization block (32)",
                );
            }
        }
        Ok(())
    }

    /// The tensors in file order, names and dims (ne0 first) as llama.cpp's LLM_ARCH_LLAMA
    /// loader asks for them.
    pub fn tensors(&self) -> Vec<TensorInfo> {
        let s = &self.shape;
        let (e, kv, ff, v) = (
            u64::from(s.n_embd),
            u64::from(s.n_embd_kv()),
            u64::from(s.n_ff),
            u64::from(s.n_vocab),
        );
        let w = self.quant.weight_type();
        let f = GgmlType::F32;
        let mut t = vec![
            TensorInfo::new("token_embd.weight", &[e, v], w),
            TensorInfo::new("output_norm.weight", &[e], f),
            TensorInfo::new("output.weight", &[e, v], w),
        ];
        for i in 0..s.n_layer {
            let n = |x: &str| format!("blk.{i}.{x}.weight");
            t.extend([
                TensorInfo::new(n("attn_norm"), &[e], f),
                TensorInfo::new(n("attn_q"), &[e, e], w),
                TensorInfo::new(n("attn_k"), &[e, kv], w),
                TensorInfo::new(n("attn_v"), &[e, kv], w),
                TensorInfo::new(n("attn_output"), &[e, e], w),
                TensorInfo::new(n("ffn_norm"), &[e], f),
                TensorInfo::new(n("ffn_gate"), &[e, ff], w),
                TensorInfo::new(n("ffn_up"), &[e, ff], w),
                TensorInfo::new(n("ffn_down"), &[ff, e], w),
            ]);
        }
        t
    }

    /// The GGUF metadata: llama hyperparameters, then the tokenizer.
    pub fn metadata(&self) -> Vec<(String, Value)> {
        let s = &self.shape;
        let kv = |k: &str, v: Value| (k.to_string(), v);
        let mut md = vec![
            kv("general.architecture", Value::String("llama".into())),
            kv("general.name", Value::String(self.name.clone())),
            kv(
                "general.alignment",
                Value::U32(gguf_write::DEFAULT_ALIGNMENT as u32),
            ),
            kv("general.file_type", Value::U32(self.quant.file_type())),
            kv("llama.vocab_size", Value::U32(s.n_vocab)),
            kv("llama.context_length", Value::U32(s.n_ctx)),
            kv("llama.embedding_length", Value::U32(s.n_embd)),
            kv("llama.block_count", Value::U32(s.n_layer)),
            kv("llama.feed_forward_length", Value::U32(s.n_ff)),
            kv("llama.attention.head_count", Value::U32(s.n_head)),
            kv("llama.attention.head_count_kv", Value::U32(s.n_head_kv)),
            kv("llama.rope.dimension_count", Value::U32(s.head_dim())),
            kv("llama.rope.freq_base", Value::F32(s.rope_freq_base)),
            kv(
                "llama.attention.layer_norm_rms_epsilon",
                Value::F32(s.rms_eps),
            ),
            // Where the file came from, for whoever finds it later.
            kv("tunellama.testmodel.seed", Value::U64(self.seed)),
        ];
        let (tokens, scores, types) = vocab(s.n_vocab);
        md.extend([
            kv("tokenizer.ggml.model", Value::String("llama".into())),
            kv("tokenizer.ggml.tokens", Value::Array(tokens)),
            kv("tokenizer.ggml.scores", Value::Array(scores)),
            kv("tokenizer.ggml.token_type", Value::Array(types)),
            kv("tokenizer.ggml.unknown_token_id", Value::U32(0)),
            kv("tokenizer.ggml.bos_token_id", Value::U32(1)),
            kv("tokenizer.ggml.eos_token_id", Value::U32(2)),
            kv("tokenizer.ggml.add_bos_token", Value::Bool(true)),
            kv("tokenizer.ggml.add_eos_token", Value::Bool(false)),
        ]);
        md
    }

    pub fn param_count(&self) -> u64 {
        self.tensors().iter().map(TensorInfo::elements).sum()
    }

    /// The exact size of the file `write` makes (computed from the layout, nothing generated).
    pub fn file_size(&self) -> Result<u64, TestModelError> {
        self.check()?;
        Ok(gguf_write::layout(&self.metadata(), &self.tensors())?.file_size)
    }
}

/// llama.cpp's token types (`enum llama_token_type`).
const TOKEN_UNKNOWN: i32 = 2;
const TOKEN_CONTROL: i32 = 3;
const TOKEN_UNUSED: i32 = 5;
const TOKEN_BYTE: i32 = 6;

/// Tokens, scores and types of a byte-fallback SentencePiece vocabulary of `n` entries.
fn vocab(n: u32) -> (Vec<Value>, Vec<Value>, Vec<Value>) {
    let mut tokens = Vec::with_capacity(n as usize);
    let mut types = Vec::with_capacity(n as usize);
    for (t, ty) in [
        ("<unk>", TOKEN_UNKNOWN),
        ("<s>", TOKEN_CONTROL),
        ("</s>", TOKEN_CONTROL),
    ] {
        tokens.push(Value::String(t.into()));
        types.push(Value::I32(ty));
    }
    for b in 0..=255u8 {
        // Upper-case hex: llama.cpp looks byte tokens up as `<0x0A>`.
        tokens.push(Value::String(format!("<0x{b:02X}>")));
        types.push(Value::I32(TOKEN_BYTE));
    }
    for id in BASE_VOCAB..n {
        tokens.push(Value::String(format!("<pad_{id}>")));
        types.push(Value::I32(TOKEN_UNUSED));
    }
    let scores = vec![Value::F32(0.0); n as usize];
    (tokens, scores, types)
}

/// splitmix64: tiny, fast, and good enough for weights nobody will ever train.
#[derive(Debug, Clone)]
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// FNV-1a of a tensor name: mixes the name into its stream's seed, so adding or reordering
/// tensors never changes another tensor's values.
fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xCBF2_9CE4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01B3)
    })
}

/// Fills `out` with uniform values in ±`amp`, two 24-bit draws per splitmix64 call.
fn fill_uniform(rng: &mut SplitMix64, amp: f32, out: &mut [f32]) {
    // 24-bit integers are exact in f32; map [0, 2^24) to [-amp, amp).
    let scale = 2.0 * amp / (1u32 << 24) as f32;
    for pair in out.chunks_mut(2) {
        let r = rng.next_u64();
        let draws = [(r >> 40) as u32, ((r >> 8) & 0xFF_FFFF) as u32];
        for (o, d) in pair.iter_mut().zip(draws) {
            *o = d as f32 * scale - amp;
        }
    }
}

/// The values of every tensor, produced row by row in file order.
struct Weights {
    seed: u64,
    rng: SplitMix64,
}

impl Weights {
    fn new(seed: u64) -> Weights {
        Weights {
            seed,
            rng: SplitMix64(0),
        }
    }

    /// Row `r` of `t`; rows of a tensor must come in order from 0 (the stream restarts at 0).
    fn row(&mut self, t: &TensorInfo, r: u64, out: &mut [f32]) {
        if t.dims.len() == 1 {
            // RMS-norm weights of 1.0: the norm passes activations through unscaled.
            out.fill(1.0);
            return;
        }
        if r == 0 {
            self.rng = SplitMix64(self.seed ^ fnv1a(&t.name));
        }
        fill_uniform(&mut self.rng, WEIGHT_AMPLITUDE, out);
    }
}

impl Spec {
    /// The f32 values tensor `index` of [`Spec::tensors`] is made from, before F16/Q8_0/Q4_0
    /// storage rounds them: what a reader's dequantized data should approximate. Holds the whole
    /// tensor in memory, so meant for small models and tests.
    pub fn tensor_values(&self, index: usize) -> Vec<f32> {
        let t = &self.tensors()[index];
        let ne0 = t.dims[0] as usize;
        let mut out = vec![0.0f32; t.elements() as usize];
        let mut gen = Weights::new(self.seed);
        for (r, row) in out.chunks_exact_mut(ne0).enumerate() {
            gen.row(t, r as u64, row);
        }
        out
    }
}

/// Writes the model described by `spec` to `path` (atomically; the folder must exist).
pub fn write(spec: &Spec, path: &Path) -> Result<WrittenModel, TestModelError> {
    write_with_progress(spec, path, &crate::progress::Silent)
}

/// [`write`], reporting bytes written through `progress`.
pub fn write_with_progress(
    spec: &Spec,
    path: &Path,
    progress: &dyn Progress,
) -> Result<WrittenModel, TestModelError> {
    spec.check()?;
    let tensors = spec.tensors();
    let metadata = spec.metadata();
    let size = gguf_write::layout(&metadata, &tensors)?.file_size;
    progress.start(
        &format!("writing {}", path.display()),
        Some(size),
        Unit::Bytes,
    );
    let mut gen = Weights::new(spec.seed);
    let mut rows = |i: usize, r: u64, out: &mut [f32]| gen.row(&tensors[i], r, out);
    let w = gguf_write::write(path, &metadata, &tensors, &mut rows, &mut |done, total| {
        progress.update(done, Some(total))
    })?;
    progress.finish(&human_bytes(w.bytes));
    Ok(WrittenModel {
        path: w.path,
        sha256: w.sha256,
        bytes: w.bytes,
        params: spec.param_count(),
        spec: spec.clone(),
    })
}

/// `cargo xtask testmodel`.
pub fn run(ctx: &Ctx, args: &TestModelArgs, progress: &dyn Progress) -> anyhow::Result<ExitCode> {
    let spec = Spec::named(args.shape, args.quant, args.seed);
    let started = std::time::Instant::now();
    let w = write_with_progress(&spec, &args.output, progress)?;
    let seconds = started.elapsed().as_secs_f64();
    if ctx.json {
        #[derive(Serialize)]
        struct Out<'a> {
            #[serde(flatten)]
            model: &'a WrittenModel,
            seconds: f64,
        }
        println!(
            "{}",
            serde_json::to_string_pretty(&Out { model: &w, seconds })?
        );
    } else {
        println!("path    {}", w.path.display());
        println!("sha256  {}", w.sha256);
        println!("size    {} ({} bytes)", human_bytes(w.bytes), w.bytes);
        println!(
            "params  {:.1}M ({}), {:?} weights, seed {}",
            w.params as f64 / 1e6,
            w.params,
            spec.quant,
            spec.seed
        );
        ctx.info(format!("written in {seconds:.1} s"));
    }
    Ok(ExitCode::SUCCESS)
}

// --- command-line options of this stage (composed by `crate::cli`; nothing here imports it)

#[derive(Debug, clap::Args)]
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
    pub output: std::path::PathBuf,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix64_matches_the_reference_sequence() {
        // First outputs for seed 1234567 of Vigna's reference splitmix64.c.
        let mut r = SplitMix64(1234567);
        assert_eq!(r.next_u64(), 6457827717110365317);
        assert_eq!(r.next_u64(), 3203168211198807973);
    }

    #[test]
    fn uniform_weights_stay_in_range_with_the_intended_spread() {
        let mut r = SplitMix64(7);
        let mut v = vec![0.0f32; 10_001];
        fill_uniform(&mut r, WEIGHT_AMPLITUDE, &mut v);
        assert!(v.iter().all(|x| x.abs() <= WEIGHT_AMPLITUDE));
        let mean = v.iter().sum::<f32>() / v.len() as f32;
        let sd = (v.iter().map(|x| (x - mean).powi(2)).sum::<f32>() / v.len() as f32).sqrt();
        assert!(mean.abs() < 0.001, "{mean}");
        assert!((sd - 0.02).abs() < 0.001, "{sd}");
    }

    #[test]
    fn named_shapes_have_the_documented_sizes() {
        let tiny = Spec::named(ShapeName::Tiny, None, 1);
        tiny.check().unwrap();
        assert_eq!(tiny.quant, Quant::F32);
        // 2 × 64 × 320 embeddings/output + 64 norm + 2 layers × (64·64·2 + 64·32·2 + 3·64·128 + 2·64)
        assert_eq!(
            tiny.param_count(),
            2 * 64 * 320 + 64 + 2 * (8192 + 4096 + 24576 + 128)
        );
        let bench = Spec::named(ShapeName::Bench, None, 1);
        bench.check().unwrap();
        assert_eq!(bench.quant, Quant::Q8_0);
        let p = bench.param_count();
        assert!((360_000_000..380_000_000).contains(&p), "{p}");
        let size = bench.file_size().unwrap();
        // Q8_0 is 34 bytes per 32 weights; the f32 norms and header are a rounding error.
        assert!(
            (size as f64 / (p as f64 * 34.0 / 32.0) - 1.0).abs() < 0.01,
            "{size}"
        );
    }

    #[test]
    fn the_vocabulary_has_specials_bytes_and_padding() {
        let (tokens, scores, types) = vocab(300);
        assert_eq!((tokens.len(), scores.len(), types.len()), (300, 300, 300));
        assert_eq!(tokens[0], Value::String("<unk>".into()));
        assert_eq!(tokens[3 + 0x0A], Value::String("<0x0A>".into()));
        assert_eq!(tokens[258], Value::String("<0xFF>".into()));
        assert_eq!(tokens[299], Value::String("<pad_299>".into()));
        assert_eq!(types[1], Value::I32(TOKEN_CONTROL));
        assert_eq!(types[100], Value::I32(TOKEN_BYTE));
        assert_eq!(types[259], Value::I32(TOKEN_UNUSED));
    }

    #[test]
    fn impossible_shapes_are_refused_with_the_field() {
        let mut s = Spec::named(ShapeName::Tiny, Some(Quant::Q4_0), 1);
        s.shape.n_ff = 100;
        let e = s.check().unwrap_err().to_string();
        assert!(e.contains("n_ff = 100"), "{e}");
        let mut s = Spec::named(ShapeName::Tiny, None, 1);
        s.shape.n_vocab = 10;
        assert!(s.check().unwrap_err().to_string().contains("n_vocab = 10"));
        s.shape.n_vocab = 320;
        s.shape.n_head_kv = 3;
        assert!(s.check().unwrap_err().to_string().contains("n_head_kv"));
    }
}
