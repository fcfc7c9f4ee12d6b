//! Writes GGUF v3 files (metadata plus F32/F16/Q8_0/Q4_0 tensors) streamed tensor by tensor, so
//! test models of any size are made without holding them in memory and published atomically.
//!
//! Layout: header (magic, version, tensor count, kv count), kvs, tensor infos (name, n_dims,
//! dims with ne0 first, ggml type, offset relative to the data section), zero padding to
//! `general.alignment`, then each tensor's data padded to the alignment. Metadata values are the
//! reader's [`Value`]s, so what we write is what `gguf::read_header` gives back. Quantisation
//! follows ggml's reference code (`quantize_row_q8_0_ref`, `quantize_row_q4_0_ref` and
//! `ggml_compute_fp32_to_fp16` in `ggml-quants.c`/`ggml-impl.h`) bit for bit, so our bytes are the
//! bytes llama.cpp's own tools would produce from the same floats.

use crate::gguf::{write_string, write_value, Value};
use crate::hashing::hex;
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// GGUF's default alignment, and what ggml uses when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// ggml's `GGML_MAX_NAME` (64) minus the terminating NUL.
const MAX_NAME: usize = 63;
/// ggml's `GGML_MAX_DIMS`.
const MAX_DIMS: usize = 4;
/// Elements per block of Q8_0 and Q4_0 (`QK8_0`, `QK4_0`).
pub const QK: usize = 32;

/// The ggml tensor types we write, with ggml's type ids (`enum ggml_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum GgmlType {
    F32,
    F16,
    #[serde(rename = "Q4_0")]
    Q4_0,
    #[serde(rename = "Q8_0")]
    Q8_0,
}

impl GgmlType {
    /// The id stored in a tensor info (`GGML_TYPE_*`).
    pub fn id(self) -> u32 {
        match self {
            GgmlType::F32 => 0,
            GgmlType::F16 => 1,
            GgmlType::Q4_0 => 2,
            GgmlType::Q8_0 => 8,
        }
    }
    pub fn from_id(id: u32) -> Option<GgmlType> {
        [GgmlType::F32, GgmlType::F16, GgmlType::Q4_0, GgmlType::Q8_0]
            .into_iter()
            .find(|t| t.id() == id)
    }
    pub fn name(self) -> &'static str {
        match self {
            GgmlType::F32 => "F32",
            GgmlType::F16 => "F16",
            GgmlType::Q4_0 => "Q4_0",
            GgmlType::Q8_0 => "Q8_0",
        }
    }
    /// Elements per block (1 for plain floats).
    pub fn block_len(self) -> usize {
        match self {
            GgmlType::F32 | GgmlType::F16 => 1,
            GgmlType::Q4_0 | GgmlType::Q8_0 => QK,
        }
    }
    /// Bytes per block: f16 scale + 32 × i8 for Q8_0, f16 scale + 16 nibble pairs for Q4_0.
    pub fn block_bytes(self) -> usize {
        match self {
            GgmlType::F32 => 4,
            GgmlType::F16 => 2,
            GgmlType::Q4_0 => 2 + QK / 2,
            GgmlType::Q8_0 => 2 + QK,
        }
    }
    /// Bytes of `n` elements (`n` a multiple of the block length).
    pub fn bytes_for(self, n: u64) -> u64 {
        n / self.block_len() as u64 * self.block_bytes() as u64
    }
}

/// One tensor to write: its name, dims in ggml order (ne0, the contiguous row length, first) and
/// type. Its data comes row by row (ne0 floats at a time) from the caller.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TensorInfo {
    pub name: String,
    pub dims: Vec<u64>,
    pub ty: GgmlType,
}

impl TensorInfo {
    pub fn new(name: impl Into<String>, dims: &[u64], ty: GgmlType) -> TensorInfo {
        TensorInfo {
            name: name.into(),
            dims: dims.to_vec(),
            ty,
        }
    }
    pub fn elements(&self) -> u64 {
        self.dims.iter().product()
    }
    /// Rows of ne0 elements.
    pub fn rows(&self) -> u64 {
        self.dims.iter().skip(1).product()
    }
    pub fn data_bytes(&self) -> u64 {
        self.ty.bytes_for(self.elements())
    }
}

/// Where everything lands in the file, computed before a byte is written.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Layout {
    pub alignment: u64,
    /// Absolute offset of the data section (end of tensor infos, padded).
    pub data_start: u64,
    /// Offset of each tensor's data relative to `data_start` (what the tensor info records).
    pub offsets: Vec<u64>,
    /// Total file size.
    pub file_size: u64,
}

/// What was written: the final path, its sha256 (hashed while writing) and size.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Written {
    pub path: PathBuf,
    pub sha256: String,
    pub bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum GgufWriteError {
    #[error("cannot write {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("GGUF metadata `{key}`: {reason}")]
    Metadata { key: String, reason: String },
    #[error("GGUF tensor `{name}`: {reason}")]
    Tensor { name: String, reason: String },
}

impl crate::error::Hint for GgufWriteError {
    fn hint(&self) -> Option<String> {
        Some(match self {
            GgufWriteError::Io { path, .. } => format!(
                "check that the folder of {} exists, is writable and has room for the file",
                path.display()
            ),
            _ => "this is a bug in the model description that was written; nothing was written under the final name".into(),
        })
    }
}

fn round_up(n: u64, align: u64) -> u64 {
    n.div_ceil(align) * align
}

/// The alignment the metadata asks for (`general.alignment`, a power of two), else the default.
fn alignment(metadata: &[(String, Value)]) -> Result<u64, GgufWriteError> {
    let Some((k, v)) = metadata.iter().find(|(k, _)| k == "general.alignment") else {
        return Ok(DEFAULT_ALIGNMENT);
    };
    match v {
        // ggml reads it as a u32 and refuses other types.
        Value::U32(a) if a.is_power_of_two() => Ok(u64::from(*a)),
        _ => Err(GgufWriteError::Metadata {
            key: k.clone(),
            reason: format!("must be a u32 power of two, not {v:?}"),
        }),
    }
}

/// GGUF value type ids (`enum gguf_type`), as the reader decodes them.
fn check_value(key: &str, v: &Value) -> Result<(), GgufWriteError> {
    let bad = |reason: String| GgufWriteError::Metadata {
        key: key.to_string(),
        reason,
    };
    match v {
        // The reader's summary of a long array has no elements to write.
        Value::LongArray { .. } => Err(bad("a length-only array summary cannot be written".into())),
        Value::Array(items) => {
            let Some(first) = items.first() else {
                return Ok(());
            };
            let t = first.type_id();
            if t == 9 {
                return Err(bad("arrays of arrays are not supported".into()));
            }
            match items.iter().position(|i| i.type_id() != t) {
                Some(i) => Err(bad(format!(
                    "array element {i} is {:?} but element 0 is {first:?}: GGUF arrays have one element type",
                    items[i]
                ))),
                None => Ok(()),
            }
        }
        _ => Ok(()),
    }
}

fn check_tensor(t: &TensorInfo) -> Result<(), GgufWriteError> {
    let bad = |reason: String| GgufWriteError::Tensor {
        name: t.name.clone(),
        reason,
    };
    if t.name.is_empty() || t.name.len() > MAX_NAME {
        return Err(bad(format!(
            "names must be 1 to {MAX_NAME} bytes (ggml's limit), this one is {}",
            t.name.len()
        )));
    }
    if t.dims.is_empty() || t.dims.len() > MAX_DIMS {
        return Err(bad(format!(
            "{} dims; ggml tensors have 1 to {MAX_DIMS}",
            t.dims.len()
        )));
    }
    if t.dims.contains(&0) {
        return Err(bad(format!("dims {:?} contain 0", t.dims)));
    }
    let block = t.ty.block_len() as u64;
    if !t.dims[0].is_multiple_of(block) {
        return Err(bad(format!(
            "{} packs {block} elements per block but ne0 = {} is not a multiple of it",
            t.ty.name(),
            t.dims[0]
        )));
    }
    Ok(())
}

fn string_bytes(s: &str) -> u64 {
    8 + s.len() as u64
}

fn value_bytes(v: &Value) -> u64 {
    match v {
        Value::U8(_) | Value::I8(_) | Value::Bool(_) => 1,
        Value::U16(_) | Value::I16(_) => 2,
        Value::U32(_) | Value::I32(_) | Value::F32(_) => 4,
        Value::U64(_) | Value::I64(_) | Value::F64(_) => 8,
        Value::String(s) => string_bytes(s),
        Value::Array(items) => 4 + 8 + items.iter().map(value_bytes).sum::<u64>(),
        Value::LongArray { .. } => 0,
    }
}

/// Validates the inputs and computes where every tensor goes (also the exact file size).
pub fn layout(
    metadata: &[(String, Value)],
    tensors: &[TensorInfo],
) -> Result<Layout, GgufWriteError> {
    let align = alignment(metadata)?;
    let mut keys = BTreeSet::new();
    let mut pos = 4 + 4 + 8 + 8;
    for (k, v) in metadata {
        if !keys.insert(k.as_str()) {
            return Err(GgufWriteError::Metadata {
                key: k.clone(),
                reason: "appears twice (ggml refuses duplicate keys)".into(),
            });
        }
        check_value(k, v)?;
        pos += string_bytes(k) + 4 + value_bytes(v);
    }
    let mut names = BTreeSet::new();
    for t in tensors {
        check_tensor(t)?;
        if !names.insert(t.name.as_str()) {
            return Err(GgufWriteError::Tensor {
                name: t.name.clone(),
                reason: "appears twice".into(),
            });
        }
        pos += string_bytes(&t.name) + 4 + 8 * t.dims.len() as u64 + 4 + 8;
    }
    let data_start = round_up(pos, align);
    let mut offsets = Vec::with_capacity(tensors.len());
    let mut rel = 0;
    for t in tensors {
        offsets.push(rel);
        // ggml pads every tensor, the last one included, so the file ends aligned.
        rel += round_up(t.data_bytes(), align);
    }
    Ok(Layout {
        alignment: align,
        data_start,
        offsets,
        file_size: data_start + rel,
    })
}

/// Writes a GGUF file to `path` atomically: the bytes go to a temporary file beside it that is
/// renamed into place only when complete and synced; on any error the temporary file is removed
/// and nothing appears under `path`. The parent folder must exist (a typo in it should fail,
/// not create folders).
///
/// `rows(i, r, out)` fills row `r` (ne0 floats) of tensor `i`; rows are asked for in order, tensor
/// by tensor, so a generator can keep its state in the closure. `progress(done, total)` is
/// called with bytes written.
pub fn write(
    path: &Path,
    metadata: &[(String, Value)],
    tensors: &[TensorInfo],
    rows: &mut dyn FnMut(usize, u64, &mut [f32]),
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Written, GgufWriteError> {
    let lay = layout(metadata, tensors)?;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // Process id and a counter: two writers of the same file (other processes, or threads of
    // this one) never share a temporary file.
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = dir.join(format!(".{file_name}.tmp-{}-{seq}", std::process::id()));
    let io = |source: std::io::Error| GgufWriteError::Io {
        path: path.to_path_buf(),
        source,
    };
    // Created exclusively: a file or link already at this name is an error, never followed.
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .map_err(io)?;
    let guard = RemoveOnDrop(Some(tmp.clone()));
    let mut out = Hashing {
        inner: BufWriter::with_capacity(1 << 20, file),
        hash: Sha256::new(),
        written: 0,
    };
    write_body(&mut out, metadata, tensors, &lay, rows, progress).map_err(io)?;
    if out.written != lay.file_size {
        // A mismatch means layout() and the writer disagree: the offsets in the file are wrong.
        return Err(io(std::io::Error::other(format!(
            "wrote {} bytes but the layout says {}",
            out.written, lay.file_size
        ))));
    }
    let sha256 = hex(&out.hash.finalize_reset());
    let file = out.inner.into_inner().map_err(|e| io(e.into_error()))?;
    file.sync_all().map_err(io)?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(io)?;
    std::mem::forget(guard);
    Ok(Written {
        path: path.to_path_buf(),
        sha256,
        bytes: lay.file_size,
    })
}

/// Removes the temporary file unless the write got as far as the rename.
struct RemoveOnDrop(Option<PathBuf>);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// A writer that hashes and counts what passes through it.
struct Hashing<W> {
    inner: W,
    hash: Sha256,
    written: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn pad(w: &mut impl Write, pos: u64, align: u64) -> std::io::Result<u64> {
    let n = round_up(pos, align) - pos;
    w.write_all(&vec![0u8; n as usize])?;
    Ok(pos + n)
}

fn write_body(
    w: &mut Hashing<impl Write>,
    metadata: &[(String, Value)],
    tensors: &[TensorInfo],
    lay: &Layout,
    rows: &mut dyn FnMut(usize, u64, &mut [f32]),
    progress: &mut dyn FnMut(u64, u64),
) -> std::io::Result<()> {
    w.write_all(b"GGUF")?;
    w.write_all(&3u32.to_le_bytes())?;
    w.write_all(&(tensors.len() as u64).to_le_bytes())?;
    w.write_all(&(metadata.len() as u64).to_le_bytes())?;
    for (k, v) in metadata {
        write_string(w, k)?;
        w.write_all(&v.type_id().to_le_bytes())?;
        write_value(w, v)?;
    }
    for (t, off) in tensors.iter().zip(&lay.offsets) {
        write_string(w, &t.name)?;
        w.write_all(&(t.dims.len() as u32).to_le_bytes())?;
        for d in &t.dims {
            w.write_all(&d.to_le_bytes())?;
        }
        w.write_all(&t.ty.id().to_le_bytes())?;
        w.write_all(&off.to_le_bytes())?;
    }
    let pos = w.written;
    pad(w, pos, lay.alignment)?;
    progress(w.written, lay.file_size);
    let mut row = Vec::new();
    let mut bytes = Vec::new();
    for (i, t) in tensors.iter().enumerate() {
        let ne0 = t.dims[0] as usize;
        row.resize(ne0, 0.0f32);
        for r in 0..t.rows() {
            rows(i, r, &mut row);
            bytes.clear();
            encode_row(t.ty, &row, &mut bytes);
            w.write_all(&bytes)?;
        }
        let pos = w.written;
        pad(w, pos, lay.alignment)?;
        progress(w.written, lay.file_size);
    }
    w.flush()
}

/// Appends `x` encoded as `ty` (`x.len()` a multiple of the block length) to `out`.
pub fn encode_row(ty: GgmlType, x: &[f32], out: &mut Vec<u8>) {
    match ty {
        GgmlType::F32 => x
            .iter()
            .for_each(|v| out.extend_from_slice(&v.to_le_bytes())),
        GgmlType::F16 => x
            .iter()
            .for_each(|v| out.extend_from_slice(&f32_to_f16(*v).to_le_bytes())),
        GgmlType::Q8_0 => x.chunks_exact(QK).for_each(|b| {
            out.extend_from_slice(&quantize_q8_0_block(b.try_into().unwrap()));
        }),
        GgmlType::Q4_0 => x.chunks_exact(QK).for_each(|b| {
            out.extend_from_slice(&quantize_q4_0_block(b.try_into().unwrap()));
        }),
    }
}

/// ggml's `ggml_compute_fp32_to_fp16`: round to nearest even, overflow to infinity, NaN kept
/// (as 0x7E00). Ported bit for bit rather than via `as` casts so the bytes match ggml's.
pub fn f32_to_f16(f: f32) -> u16 {
    let scale_to_inf = f32::from_bits(0x7780_0000); // 2^112
    let scale_to_zero = f32::from_bits(0x0880_0000); // 2^-110
    let mut base = (f.abs() * scale_to_inf) * scale_to_zero;
    let w = f.to_bits();
    let shl1_w = w.wrapping_add(w);
    let sign = w & 0x8000_0000;
    let bias = (shl1_w & 0xFF00_0000).max(0x7100_0000);
    base += f32::from_bits((bias >> 1) + 0x0780_0000);
    let bits = base.to_bits();
    let exp_bits = (bits >> 13) & 0x0000_7C00;
    let mantissa_bits = bits & 0x0000_0FFF;
    let nonsign = exp_bits + mantissa_bits;
    ((sign >> 16)
        | if shl1_w > 0xFF00_0000 {
            0x7E00
        } else {
            nonsign
        }) as u16
}

/// IEEE half to f32 (exact: every half is an f32).
pub fn f16_to_f32(h: u16) -> f32 {
    let sign = u32::from(h >> 15) << 31;
    let exp = u32::from((h >> 10) & 0x1F);
    let man = u32::from(h & 0x3FF);
    match exp {
        // Zero and subnormals: man × 2^-24, exact in f32.
        0 => f32::from_bits(sign | (man as f32 * f32::from_bits(0x3380_0000)).to_bits()),
        0x1F => f32::from_bits(sign | 0x7F80_0000 | (man << 13)),
        _ => f32::from_bits(sign | ((exp + 112) << 23) | (man << 13)),
    }
}

/// One Q8_0 block as ggml's `quantize_row_q8_0_ref` makes it: `d = max|x| / 127` stored as
/// f16, then `round(x / d)` as i8 (the scale is applied as `x * (1/d)`, as ggml does).
pub fn quantize_q8_0_block(x: &[f32; QK]) -> [u8; 2 + QK] {
    let amax = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    let mut b = [0u8; 2 + QK];
    b[..2].copy_from_slice(&f32_to_f16(d).to_le_bytes());
    for (o, v) in b[2..].iter_mut().zip(x) {
        *o = ((v * id).round() as i8) as u8;
    }
    b
}

/// One Q4_0 block as ggml's `quantize_row_q4_0_ref` makes it: `d = max / -8` where `max` is the
/// element of largest magnitude with its sign, `q = min(15, trunc(x/d + 8.5))`; byte `j` holds
/// element `j` in its low nibble and element `j + 16` in its high nibble.
pub fn quantize_q4_0_block(x: &[f32; QK]) -> [u8; 2 + QK / 2] {
    let (mut amax, mut max) = (0.0f32, 0.0f32);
    for &v in x {
        // Strictly greater: the first of equal magnitudes wins, as in ggml.
        if amax < v.abs() {
            amax = v.abs();
            max = v;
        }
    }
    let d = max / -8.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    let q = |v: f32| -> u8 { ((v * id + 8.5) as i8).min(15) as u8 };
    let mut b = [0u8; 2 + QK / 2];
    b[..2].copy_from_slice(&f32_to_f16(d).to_le_bytes());
    for j in 0..QK / 2 {
        b[2 + j] = q(x[j]) | (q(x[j + QK / 2]) << 4);
    }
    b
}

/// Q8_0 block back to floats (`d * q`), for checks.
pub fn dequantize_q8_0_block(b: &[u8]) -> [f32; QK] {
    let d = f16_to_f32(u16::from_le_bytes([b[0], b[1]]));
    std::array::from_fn(|j| d * f32::from(b[2 + j] as i8))
}

/// Q4_0 block back to floats (`d * (q - 8)`), for checks.
pub fn dequantize_q4_0_block(b: &[u8]) -> [f32; QK] {
    let d = f16_to_f32(u16::from_le_bytes([b[0], b[1]]));
    std::array::from_fn(|j| {
        let byte = b[2 + j % (QK / 2)];
        let q = if j < QK / 2 { byte & 0x0F } else { byte >> 4 };
        d * (f32::from(q) - 8.0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f16_conversion_matches_known_bit_patterns() {
        let cases: [(f32, u16); 10] = [
            (0.0, 0x0000),
            (-0.0, 0x8000),
            (1.0, 0x3C00),
            (-2.0, 0xC000),
            (0.5, 0x3800),
            (65504.0, 0x7BFF),
            (1e6, 0x7C00),                // overflow → +inf
            (5.960_464_5e-8, 0x0001),     // smallest subnormal
            (1.0 + 1.0 / 2048.0, 0x3C00), // exact tie rounds to even (down)
            (1.0 + 3.0 / 2048.0, 0x3C02), // exact tie rounds to even (up)
        ];
        for (f, h) in cases {
            assert_eq!(f32_to_f16(f), h, "{f}");
        }
        assert_eq!(f32_to_f16(f32::NAN), 0x7E00);
        for h in [0x0000u16, 0x0001, 0x03FF, 0x3C00, 0xC000, 0x7BFF, 0x3555] {
            assert_eq!(f32_to_f16(f16_to_f32(h)), h, "{h:#06x}");
        }
        assert_eq!(f16_to_f32(0x3555), 0.333_251_95);
        assert_eq!(f16_to_f32(0x8001), -5.960_464_5e-8);
    }

    #[test]
    fn q8_0_block_matches_hand_computed_bytes() {
        // max |x| = 127 ⇒ d = 1.0 (f16 0x3C00) and q = round(x) away from zero at .5.
        let mut x = [0.0f32; QK];
        x[0] = 127.0;
        x[1] = -127.0;
        x[2] = 2.5;
        x[3] = -2.5;
        x[4] = 0.49;
        x[31] = 64.0;
        let b = quantize_q8_0_block(&x);
        assert_eq!(&b[..2], &[0x00, 0x3C]);
        assert_eq!(b[2], 127);
        assert_eq!(b[3] as i8, -127);
        assert_eq!(b[4], 3);
        assert_eq!(b[5] as i8, -3);
        assert_eq!(b[6], 0);
        assert_eq!(b[33], 64);
        assert_eq!(b.len(), 34);
        // All zeros: d = 0 and every q = 0 (no division by zero).
        assert_eq!(quantize_q8_0_block(&[0.0; QK]), [0u8; 34]);
    }

    #[test]
    fn q4_0_block_matches_hand_computed_bytes() {
        // The signed max is -8 ⇒ d = 1.0; q = x + 8 (rounded half up), clamped to 15.
        let mut x = [0.0f32; QK];
        x[0] = -8.0; // q 0
        x[1] = 7.0; // q 15
        x[2] = 8.0; // 16.5 truncates to 16 → clamped to 15
        x[3] = 0.5; // 9.0 → 9
        x[16] = 1.0; // q 9, high nibble of byte 0
        x[17] = -3.0; // q 5, high nibble of byte 1
        x[31] = 2.4; // 10.9 → 10, high nibble of byte 15
        let b = quantize_q4_0_block(&x);
        assert_eq!(&b[..2], &[0x00, 0x3C]);
        assert_eq!(b[2], 0x90); // low 0 (x0), high 9 (x16)
        assert_eq!(b[3], 0x5F); // low 15 (x1), high 5 (x17)
        assert_eq!(b[4], 0x8F); // low 15 (x2), high 8 (x18 = 0)
        assert_eq!(b[5], 0x89);
        assert_eq!(b[17], 0xA8); // low 8 (x15 = 0), high 10 (x31)
        assert_eq!(b.len(), 18);
        // A positive signed max gives a negative scale: d = 16 / -8 = -2.
        let mut y = [0.0f32; QK];
        y[5] = 16.0;
        y[6] = -4.0;
        let b = quantize_q4_0_block(&y);
        assert_eq!(f16_to_f32(u16::from_le_bytes([b[0], b[1]])), -2.0);
        assert_eq!(b[7] & 0x0F, 0); // 16 / -2 + 8 = 0
        assert_eq!(b[8] & 0x0F, 10); // -4 / -2 + 8 = 10
    }

    #[test]
    fn quantized_blocks_dequantize_within_half_a_step() {
        let x: [f32; QK] = std::array::from_fn(|i| ((i as f32) * 0.37).sin() * 0.05);
        let amax = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let q8 = dequantize_q8_0_block(&quantize_q8_0_block(&x));
        let q4 = dequantize_q4_0_block(&quantize_q4_0_block(&x));
        for i in 0..QK {
            // Half a step plus the f16 rounding of the scale.
            assert!((q8[i] - x[i]).abs() <= amax / 127.0 * 0.51 + 1e-4, "q8 {i}");
            // Q4_0 has 16 levels for [-8d, 8d]: the far end (+8d) clamps to 7d, a full step.
            let step4 = amax / 8.0;
            let bound = if (x[i] - q4[i]).abs() > step4 * 0.51 {
                assert!(q4[i].abs() >= 7.0 * step4 * 0.99, "q4 {i}: only +8d clamps");
                step4 * 1.01
            } else {
                step4 * 0.51
            };
            assert!((q4[i] - x[i]).abs() <= bound, "q4 {i}");
        }
    }

    #[test]
    fn layout_aligns_the_data_section_and_every_tensor() {
        let md = vec![
            ("general.alignment".to_string(), Value::U32(32)),
            ("a".to_string(), Value::String("x".into())),
        ];
        let ts = vec![
            TensorInfo::new("t0", &[3], GgmlType::F32), // 12 bytes → padded to 32
            TensorInfo::new("t1", &[32, 2], GgmlType::Q8_0), // 68 bytes → 96
            TensorInfo::new("t2", &[64], GgmlType::Q4_0), // 36 bytes → 64
        ];
        let l = layout(&md, &ts).unwrap();
        assert_eq!(l.data_start % 32, 0);
        assert_eq!(l.offsets, [0, 32, 128]);
        assert_eq!(l.file_size, l.data_start + 192);

        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.gguf");
        let w = write(&p, &md, &ts, &mut |_, _, r| r.fill(1.0), &mut |_, _| {}).unwrap();
        let bytes = std::fs::read(&p).unwrap();
        assert_eq!(bytes.len() as u64, l.file_size);
        assert_eq!(w.bytes, l.file_size);
        assert_eq!(w.sha256, crate::hashing::sha256_file(&p).unwrap().0);
        // Padding is zeros; t0's three floats are 1.0 and its padding follows.
        let d = l.data_start as usize;
        assert_eq!(&bytes[d..d + 4], &1.0f32.to_le_bytes());
        assert!(bytes[d + 12..d + 32].iter().all(|b| *b == 0));
        assert!(bytes[d - 1] == 0);
    }

    #[test]
    fn invalid_inputs_are_refused_before_anything_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bad.gguf");
        let e = write(
            &p,
            &[],
            &[TensorInfo::new("w", &[33, 2], GgmlType::Q4_0)],
            &mut |_, _, _| {},
            &mut |_, _| {},
        )
        .unwrap_err();
        assert!(e.to_string().contains("ne0 = 33"), "{e}");
        let e = layout(
            &[(
                "k".into(),
                Value::Array(vec![Value::U32(1), Value::String("x".into())]),
            )],
            &[],
        )
        .unwrap_err();
        assert!(e.to_string().contains("one element type"), "{e}");
        let e = layout(&[("general.alignment".into(), Value::U32(24))], &[]).unwrap_err();
        assert!(e.to_string().contains("power of two"), "{e}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
