//! Reads a GGUF file's header (metadata key/values) without touching its tensors, so model facts
//! (architecture, layers, heads, context length, file type) come from the file itself.
//!
//! Layout (GGUF v2/v3, little-endian): magic `GGUF`, u32 version, u64 tensor_count, u64 kv_count,
//! then kv_count × (string key, u32 value type, value), where a string is u64 length + UTF-8 bytes.
//! A small writer is included for tests and fixtures.

use std::collections::BTreeMap;
use std::io::{BufReader, Read, Seek, Write};
use std::path::{Path, PathBuf};

/// Arrays longer than this are kept as a length only (tokenizer vocabularies have 100k+ entries).
const KEEP_ARRAY: u64 = 16;
const MAX_KV: u64 = 1 << 20;
const MAX_STRING: u64 = 64 << 20;

/// A metadata value. Long arrays are summarised by element type and length.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    String(String),
    Array(Vec<Value>),
    LongArray { elem_type: u32, len: u64 },
    U64(u64),
    I64(i64),
    F64(f64),
}

impl Value {
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::U8(v) => Some(v.into()),
            Value::U16(v) => Some(v.into()),
            Value::U32(v) => Some(v.into()),
            Value::U64(v) => Some(v),
            Value::I8(v) => u64::try_from(v).ok(),
            Value::I16(v) => u64::try_from(v).ok(),
            Value::I32(v) => u64::try_from(v).ok(),
            Value::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }
    /// GGUF's value type number (`gguf_type` in ggml's gguf.h).
    pub fn type_id(&self) -> u32 {
        match self {
            Value::U8(_) => 0,
            Value::I8(_) => 1,
            Value::U16(_) => 2,
            Value::I16(_) => 3,
            Value::U32(_) => 4,
            Value::I32(_) => 5,
            Value::F32(_) => 6,
            Value::Bool(_) => 7,
            Value::String(_) => 8,
            Value::Array(_) | Value::LongArray { .. } => 9,
            Value::U64(_) => 10,
            Value::I64(_) => 11,
            Value::F64(_) => 12,
        }
    }
}

/// The header of a GGUF file and the facts later stages use.
#[derive(Debug, Clone, PartialEq)]
pub struct Header {
    pub version: u32,
    pub tensor_count: u64,
    pub metadata: BTreeMap<String, Value>,
}

/// Model facts read from the header (`None` when the file does not state them).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Facts {
    pub architecture: Option<String>,
    pub name: Option<String>,
    pub block_count: Option<u64>,
    pub embedding_length: Option<u64>,
    pub head_count: Option<u64>,
    pub head_count_kv: Option<u64>,
    pub context_length: Option<u64>,
    /// llama.cpp's `general.file_type` (e.g. 15 = Q4_K_M).
    pub file_type: Option<u32>,
    pub key_length: Option<u64>,
    pub value_length: Option<u64>,
}

impl Header {
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.metadata.get(key)
    }

    pub fn facts(&self) -> Facts {
        let arch = self
            .get("general.architecture")
            .and_then(Value::as_str)
            .map(str::to_string);
        let num = |k: &str| -> Option<u64> {
            let a = arch.as_deref()?;
            self.get(&format!("{a}.{k}")).and_then(Value::as_u64)
        };
        Facts {
            name: self
                .get("general.name")
                .and_then(Value::as_str)
                .map(str::to_string),
            block_count: num("block_count"),
            embedding_length: num("embedding_length"),
            head_count: num("attention.head_count"),
            head_count_kv: num("attention.head_count_kv"),
            context_length: num("context_length"),
            key_length: num("attention.key_length"),
            value_length: num("attention.value_length"),
            file_type: self
                .get("general.file_type")
                .and_then(Value::as_u64)
                .and_then(|v| u32::try_from(v).ok()),
            architecture: arch,
        }
    }
}

impl Facts {
    /// Bytes of f16 KV cache one token of context costs, when the header says enough.
    pub fn kv_bytes_per_token(&self) -> Option<u64> {
        let layers = self.block_count?;
        let heads = self.head_count.filter(|h| *h > 0)?;
        let kv_heads = self.head_count_kv.unwrap_or(heads);
        let head_dim = self.embedding_length? / heads;
        let k = self.key_length.unwrap_or(head_dim);
        let v = self.value_length.unwrap_or(head_dim);
        Some(layers * kv_heads * (k + v) * 2)
    }

    /// The quantisation name of `file_type` ("Q4_K_M"), as llama.cpp names its file types.
    pub fn file_type_name(&self) -> Option<String> {
        self.file_type.map(file_type_name)
    }
}

pub fn file_type_name(t: u32) -> String {
    match t {
        0 => "F32",
        1 => "F16",
        2 => "Q4_0",
        3 => "Q4_1",
        7 => "Q8_0",
        8 => "Q5_0",
        9 => "Q5_1",
        10 => "Q2_K",
        11 => "Q3_K_S",
        12 => "Q3_K_M",
        13 => "Q3_K_L",
        14 => "Q4_K_S",
        15 => "Q4_K_M",
        16 => "Q5_K_S",
        17 => "Q5_K_M",
        18 => "Q6_K",
        32 => "BF16",
        other => return format!("file type {other}"),
    }
    .to_string()
}

#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a GGUF file: it starts with {found} instead of \"GGUF\"")]
    NotGguf { path: PathBuf, found: String },
    #[error("{path}: GGUF version {version} is not supported (versions 2 and 3 are)")]
    Version { path: PathBuf, version: u32 },
    #[error("{path}: header ends early (at byte {offset}, reading {what})")]
    Truncated {
        path: PathBuf,
        offset: u64,
        what: String,
    },
    #[error("{path}: invalid header at byte {offset}: {reason}")]
    Invalid {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
}

impl crate::error::Hint for GgufError {
    fn hint(&self) -> Option<String> {
        Some(match self {
            GgufError::NotGguf { .. } | GgufError::Truncated { .. } => {
                "the file is not a (complete) GGUF model: fetch it again with `cargo xtask models fetch NAME`".into()
            }
            GgufError::Version { .. } => "convert the model with a current llama.cpp (`convert_hf_to_gguf.py`)".into(),
            _ => "check that the path names a GGUF model file".into(),
        })
    }
}

/// Reads the header of the GGUF file at `path`.
pub fn read_header(path: &Path) -> Result<Header, GgufError> {
    let f = std::fs::File::open(path).map_err(|e| GgufError::Io {
        path: path.to_path_buf(),
        source: e,
    })?;
    let mut r = Reader {
        inner: BufReader::with_capacity(1 << 16, f),
        offset: 0,
        path: path.to_path_buf(),
    };
    r.header()
}

struct Reader<R> {
    inner: BufReader<R>,
    offset: u64,
    path: PathBuf,
}

impl<R: Read + Seek> Reader<R> {
    fn exact<const N: usize>(&mut self, what: &str) -> Result<[u8; N], GgufError> {
        let mut b = [0u8; N];
        self.inner
            .read_exact(&mut b)
            .map_err(|e| self.io(e, what))?;
        self.offset += N as u64;
        Ok(b)
    }

    fn io(&self, e: std::io::Error, what: &str) -> GgufError {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            GgufError::Truncated {
                path: self.path.clone(),
                offset: self.offset,
                what: what.to_string(),
            }
        } else {
            GgufError::Io {
                path: self.path.clone(),
                source: e,
            }
        }
    }

    fn invalid(&self, reason: String) -> GgufError {
        GgufError::Invalid {
            path: self.path.clone(),
            offset: self.offset,
            reason,
        }
    }

    fn u32(&mut self, what: &str) -> Result<u32, GgufError> {
        Ok(u32::from_le_bytes(self.exact(what)?))
    }
    fn u64(&mut self, what: &str) -> Result<u64, GgufError> {
        Ok(u64::from_le_bytes(self.exact(what)?))
    }

    fn string(&mut self, what: &str) -> Result<String, GgufError> {
        let len = self.u64(what)?;
        if len > MAX_STRING {
            return Err(self.invalid(format!("{what} claims {len} bytes")));
        }
        let mut b = Vec::new();
        (&mut self.inner)
            .take(len)
            .read_to_end(&mut b)
            .map_err(|e| self.io(e, what))?;
        if (b.len() as u64) < len {
            return Err(self.io(std::io::ErrorKind::UnexpectedEof.into(), what));
        }
        self.offset += len;
        String::from_utf8(b).map_err(|_| self.invalid(format!("{what} is not UTF-8")))
    }

    fn skip(&mut self, n: u64, what: &str) -> Result<(), GgufError> {
        let n = i64::try_from(n).map_err(|_| self.invalid(format!("{what} is too long")))?;
        self.inner.seek_relative(n).map_err(|e| self.io(e, what))?;
        self.offset += n as u64;
        Ok(())
    }

    fn header(&mut self) -> Result<Header, GgufError> {
        let mut magic = [0u8; 4];
        let n = read_up_to(&mut self.inner, &mut magic).map_err(|e| self.io(e, "magic"))?;
        if &magic[..n] != b"GGUF" {
            return Err(GgufError::NotGguf {
                path: self.path.clone(),
                found: describe_bytes(&magic[..n]),
            });
        }
        self.offset = 4;
        let version = self.u32("version")?;
        if !(2..=3).contains(&version) {
            return Err(GgufError::Version {
                path: self.path.clone(),
                version,
            });
        }
        let tensor_count = self.u64("tensor count")?;
        let kv_count = self.u64("metadata count")?;
        if kv_count > MAX_KV {
            return Err(self.invalid(format!("{kv_count} metadata entries is implausible")));
        }
        let mut metadata = BTreeMap::new();
        for i in 0..kv_count {
            let key = self.string(&format!("key of metadata entry {i}"))?;
            let ty = self.u32(&format!("type of `{key}`"))?;
            let v = self.value(ty, &key, 0)?;
            metadata.insert(key, v);
        }
        Ok(Header {
            version,
            tensor_count,
            metadata,
        })
    }

    fn value(&mut self, ty: u32, key: &str, depth: u32) -> Result<Value, GgufError> {
        let w = format!("value of `{key}`");
        Ok(match ty {
            0 => Value::U8(self.exact::<1>(&w)?[0]),
            1 => Value::I8(i8::from_le_bytes(self.exact(&w)?)),
            2 => Value::U16(u16::from_le_bytes(self.exact(&w)?)),
            3 => Value::I16(i16::from_le_bytes(self.exact(&w)?)),
            4 => Value::U32(self.u32(&w)?),
            5 => Value::I32(i32::from_le_bytes(self.exact(&w)?)),
            6 => Value::F32(f32::from_le_bytes(self.exact(&w)?)),
            7 => Value::Bool(self.exact::<1>(&w)?[0] != 0),
            8 => Value::String(self.string(&w)?),
            9 => {
                if depth > 4 {
                    return Err(self.invalid(format!("`{key}` nests arrays too deeply")));
                }
                let elem = self.u32(&w)?;
                let len = self.u64(&w)?;
                if len <= KEEP_ARRAY {
                    let mut items = Vec::with_capacity(len as usize);
                    for _ in 0..len {
                        items.push(self.value(elem, key, depth + 1)?);
                    }
                    Value::Array(items)
                } else {
                    match fixed_size(elem) {
                        Some(sz) => self.skip(len.saturating_mul(sz), &w)?,
                        None => {
                            for _ in 0..len {
                                self.value(elem, key, depth + 1)?;
                            }
                        }
                    }
                    Value::LongArray {
                        elem_type: elem,
                        len,
                    }
                }
            }
            10 => Value::U64(self.u64(&w)?),
            11 => Value::I64(i64::from_le_bytes(self.exact(&w)?)),
            12 => Value::F64(f64::from_le_bytes(self.exact(&w)?)),
            other => return Err(self.invalid(format!("`{key}` has unknown value type {other}"))),
        })
    }
}

fn fixed_size(ty: u32) -> Option<u64> {
    match ty {
        0 | 1 | 7 => Some(1),
        2 | 3 => Some(2),
        4..=6 => Some(4),
        10..=12 => Some(8),
        _ => None,
    }
}

fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

fn describe_bytes(b: &[u8]) -> String {
    if b.is_empty() {
        return "nothing (the file is empty)".into();
    }
    let hex: Vec<String> = b.iter().map(|x| format!("{x:02x}")).collect();
    let text: String = b
        .iter()
        .map(|&c| if c.is_ascii_graphic() { c as char } else { '.' })
        .collect();
    format!("bytes {} (\"{text}\")", hex.join(" "))
}

/// Writes a GGUF v3 header with these metadata entries and no tensors (tests, fixtures).
pub fn write_header(w: &mut impl Write, metadata: &[(&str, Value)]) -> std::io::Result<()> {
    w.write_all(b"GGUF")?;
    w.write_all(&3u32.to_le_bytes())?;
    w.write_all(&0u64.to_le_bytes())?;
    w.write_all(&(metadata.len() as u64).to_le_bytes())?;
    for (k, v) in metadata {
        write_string(w, k)?;
        w.write_all(&v.type_id().to_le_bytes())?;
        write_value(w, v)?;
    }
    Ok(())
}

/// A GGUF string: u64 length, then the bytes.
pub(crate) fn write_string(w: &mut impl Write, s: &str) -> std::io::Result<()> {
    w.write_all(&(s.len() as u64).to_le_bytes())?;
    w.write_all(s.as_bytes())
}

/// A metadata value's bytes (not its type number); a summarised array cannot be written.
pub(crate) fn write_value(w: &mut impl Write, v: &Value) -> std::io::Result<()> {
    match v {
        Value::U8(x) => w.write_all(&[*x]),
        Value::I8(x) => w.write_all(&x.to_le_bytes()),
        Value::U16(x) => w.write_all(&x.to_le_bytes()),
        Value::I16(x) => w.write_all(&x.to_le_bytes()),
        Value::U32(x) => w.write_all(&x.to_le_bytes()),
        Value::I32(x) => w.write_all(&x.to_le_bytes()),
        Value::F32(x) => w.write_all(&x.to_le_bytes()),
        Value::Bool(x) => w.write_all(&[u8::from(*x)]),
        Value::String(s) => write_string(w, s),
        Value::Array(items) => {
            let elem = items.first().map(Value::type_id).unwrap_or(4);
            w.write_all(&elem.to_le_bytes())?;
            w.write_all(&(items.len() as u64).to_le_bytes())?;
            items.iter().try_for_each(|i| write_value(w, i))
        }
        Value::LongArray { .. } => Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "a summarised array cannot be written",
        )),
        Value::U64(x) => w.write_all(&x.to_le_bytes()),
        Value::I64(x) => w.write_all(&x.to_le_bytes()),
        Value::F64(x) => w.write_all(&x.to_le_bytes()),
    }
}

/// Metadata of a small llama-like model, for tests of everything that reads model facts.
pub fn sample_metadata(
    arch: &str,
    layers: u32,
    embd: u32,
    heads: u32,
    kv_heads: u32,
    ctx: u32,
) -> Vec<(String, Value)> {
    vec![
        ("general.architecture".into(), Value::String(arch.into())),
        (
            "general.name".into(),
            Value::String("tiny test model".into()),
        ),
        ("general.file_type".into(), Value::U32(15)),
        (format!("{arch}.block_count"), Value::U32(layers)),
        (format!("{arch}.embedding_length"), Value::U32(embd)),
        (format!("{arch}.attention.head_count"), Value::U32(heads)),
        (
            format!("{arch}.attention.head_count_kv"),
            Value::U32(kv_heads),
        ),
        (format!("{arch}.context_length"), Value::U32(ctx)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_file(dir: &Path, name: &str, kvs: &[(String, Value)], extra: &[u8]) -> PathBuf {
        let p = dir.join(name);
        let mut buf = Vec::new();
        let refs: Vec<(&str, Value)> = kvs.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
        write_header(&mut buf, &refs).unwrap();
        buf.extend_from_slice(extra);
        std::fs::write(&p, buf).unwrap();
        p
    }

    #[test]
    fn facts_are_read_from_a_written_v3_header() {
        let dir = tempfile::tempdir().unwrap();
        let mut kvs = sample_metadata("llama", 16, 2048, 32, 8, 131072);
        let vocab: Vec<Value> = (0..1000)
            .map(|i| Value::String(format!("tok{i}")))
            .collect();
        kvs.push(("tokenizer.ggml.tokens".into(), Value::Array(vocab)));
        kvs.push((
            "tokenizer.ggml.scores".into(),
            Value::Array(vec![Value::F32(0.5); 100]),
        ));
        kvs.push(("general.alignment".into(), Value::U32(32)));
        let p = write_file(dir.path(), "m.gguf", &kvs, &[0u8; 64]);
        let h = read_header(&p).unwrap();
        assert_eq!(h.version, 3);
        assert_eq!(
            h.get("tokenizer.ggml.tokens"),
            Some(&Value::LongArray {
                elem_type: 8,
                len: 1000
            })
        );
        assert_eq!(h.get("general.alignment"), Some(&Value::U32(32)));
        let f = h.facts();
        assert_eq!(f.architecture.as_deref(), Some("llama"));
        assert_eq!(f.block_count, Some(16));
        assert_eq!(f.embedding_length, Some(2048));
        assert_eq!(f.head_count, Some(32));
        assert_eq!(f.head_count_kv, Some(8));
        assert_eq!(f.context_length, Some(131072));
        assert_eq!(f.file_type_name().as_deref(), Some("Q4_K_M"));
        // 16 layers × 8 kv heads × (64 + 64) dims × 2 bytes
        assert_eq!(f.kv_bytes_per_token(), Some(16 * 8 * 128 * 2));
    }

    #[test]
    fn a_non_gguf_file_is_named_with_what_was_found() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("page.html");
        std::fs::write(&p, b"<!DOCTYPE html>").unwrap();
        let e = read_header(&p).unwrap_err().to_string();
        assert!(e.contains("page.html"), "{e}");
        assert!(e.contains("not a GGUF file"), "{e}");
        assert!(e.contains("\"<!DO\""), "{e}");

        let empty = dir.path().join("empty.gguf");
        std::fs::write(&empty, b"").unwrap();
        let e = read_header(&empty).unwrap_err().to_string();
        assert!(e.contains("empty"), "{e}");
    }

    #[test]
    fn a_truncated_header_says_where_it_ends() {
        let dir = tempfile::tempdir().unwrap();
        let p = write_file(
            dir.path(),
            "full.gguf",
            &sample_metadata("qwen2", 24, 896, 14, 2, 32768),
            &[],
        );
        let bytes = std::fs::read(&p).unwrap();
        let cut = dir.path().join("cut.gguf");
        std::fs::write(&cut, &bytes[..bytes.len() - 3]).unwrap();
        let e = read_header(&cut).unwrap_err();
        assert!(matches!(e, GgufError::Truncated { .. }), "{e}");
        assert!(e.to_string().contains("qwen2.context_length"), "{e}");
    }

    #[test]
    fn unsupported_versions_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("v1.gguf");
        let mut b = b"GGUF".to_vec();
        b.extend_from_slice(&1u32.to_le_bytes());
        b.extend_from_slice(&[0u8; 16]);
        std::fs::write(&p, b).unwrap();
        assert!(matches!(
            read_header(&p),
            Err(GgufError::Version { version: 1, .. })
        ));
    }
}
