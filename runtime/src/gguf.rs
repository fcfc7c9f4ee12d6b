//! Reads what the runtime checks before handing a file to llama.cpp: the GGUF magic and version,
//! and the metadata that sizes a run (architecture, trained context, layers, embedding and head
//! counts). Tensor data is never read.
//!
//! Layout (GGUF v2/v3, little-endian): magic `GGUF`, u32 version, u64 tensor_count, u64 kv_count,
//! then kv_count × (string key, u32 value type, value); a string is u64 length + bytes.

use std::collections::BTreeMap;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use crate::error::{CliError, Result};

const MAX_KV: u64 = 1 << 20;
const MAX_KEY: u64 = 1 << 16;
const MAX_STRING: u64 = 64 << 20;
pub const VERSIONS: [u32; 2] = [2, 3];

/// The facts we use; integers kept as u64, strings as strings.
#[derive(Debug, Default)]
pub struct Header {
    pub version: u32,
    pub file_size: u64,
    pub ints: BTreeMap<String, u64>,
    pub strings: BTreeMap<String, String>,
    /// `tokenizer.ggml.tokens` (each token's text), read only by [`read_with_tokens`].
    pub tokens: Option<Vec<String>>,
}

impl Header {
    pub fn architecture(&self) -> Option<&str> {
        self.strings.get("general.architecture").map(String::as_str)
    }

    /// `<arch>.<name>`, e.g. `llama.context_length`.
    pub fn arch_int(&self, name: &str) -> Option<u64> {
        self.ints
            .get(&format!("{}.{name}", self.architecture()?))
            .copied()
    }

    pub fn context_length(&self) -> Option<u64> {
        self.arch_int("context_length")
    }

    pub fn block_count(&self) -> Option<u64> {
        self.arch_int("block_count")
    }

    /// Width of one token's K (or V) across the KV heads: head size × KV heads.
    pub fn n_embd_kv(&self) -> Option<u64> {
        let n_embd = self.arch_int("embedding_length")?;
        let heads = self.arch_int("attention.head_count").filter(|&h| h > 0)?;
        let kv_heads = self.arch_int("attention.head_count_kv").unwrap_or(heads);
        let head_dim = self
            .arch_int("attention.key_length")
            .unwrap_or(n_embd / heads);
        Some(head_dim * kv_heads)
    }
}

/// Reads and checks the header of `path`; every failure is bad input naming the file.
pub fn read(path: &Path) -> Result<Header> {
    read_opts(path, false)
}

/// [`read`], also keeping the vocabulary's token texts (`tokenizer.ggml.tokens`).
pub fn read_with_tokens(path: &Path) -> Result<Header> {
    read_opts(path, true)
}

fn read_opts(path: &Path, keep_tokens: bool) -> Result<Header> {
    let shown = path.display();
    let meta = std::fs::metadata(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            CliError::bad_input(format!("model file {shown} does not exist"))
                .hint("pass the path of a .gguf model with -m (`cargo xtask models path NAME` prints one)")
        } else {
            CliError::bad_input(format!("cannot read model file {shown}: {e}"))
        }
    })?;
    if !meta.is_file() {
        return Err(CliError::bad_input(format!(
            "model path {shown} is not a file"
        )));
    }
    let file = std::fs::File::open(path)
        .map_err(|e| CliError::bad_input(format!("cannot read model file {shown}: {e}")))?;
    let mut r = BufReader::new(file);
    let bad =
        |what: String| CliError::bad_input(format!("{shown} is not a valid GGUF file: {what}"));
    let mut magic = [0u8; 4];
    let got = read_up_to(&mut r, &mut magic)
        .map_err(|e| CliError::bad_input(format!("cannot read model file {shown}: {e}")))?;
    if got < 4 || &magic != b"GGUF" {
        return Err(CliError::bad_input(format!(
            "{shown} is not a GGUF file: it starts with {:?} ({} bytes), expected the magic `GGUF`",
            String::from_utf8_lossy(&magic[..got]),
            got
        ))
        .hint("the runtime loads GGUF models only; convert other formats with llama.cpp's convert scripts"));
    }
    let io = |e: std::io::Error| bad(format!("truncated header ({e})"));
    let version = u32_(&mut r).map_err(io)?;
    if !VERSIONS.contains(&version) {
        return Err(CliError::bad_input(format!(
            "{shown} is GGUF version {version}; this runtime reads versions {:?}",
            VERSIONS
        )));
    }
    let _tensors = u64_(&mut r).map_err(io)?;
    let n_kv = u64_(&mut r).map_err(io)?;
    if n_kv > MAX_KV {
        return Err(bad(format!("{n_kv} metadata entries (limit {MAX_KV})")));
    }
    let mut h = Header {
        version,
        file_size: meta.len(),
        ..Header::default()
    };
    for _ in 0..n_kv {
        let key = string(&mut r, MAX_KEY).map_err(io)?;
        let ty = u32_(&mut r).map_err(io)?;
        match ty {
            0 | 1 => h
                .ints
                .insert(key, u64::from(fixed::<1>(&mut r).map_err(io)?[0])),
            7 => {
                fixed::<1>(&mut r).map_err(io)?;
                None
            }
            2 | 3 => h.ints.insert(
                key,
                u64::from(u16::from_le_bytes(fixed(&mut r).map_err(io)?)),
            ),
            4 | 5 => h.ints.insert(key, u64::from(u32_(&mut r).map_err(io)?)),
            10 | 11 => h.ints.insert(key, u64_(&mut r).map_err(io)?),
            6 => {
                fixed::<4>(&mut r).map_err(io)?;
                None
            }
            12 => {
                fixed::<8>(&mut r).map_err(io)?;
                None
            }
            8 => {
                let v = string(&mut r, MAX_STRING).map_err(io)?;
                h.strings.insert(key, v);
                None
            }
            9 if keep_tokens && key == "tokenizer.ggml.tokens" => {
                h.tokens =
                    Some(string_array(&mut r).map_err(|e| bad(format!("metadata `{key}`: {e}")))?);
                None
            }
            9 => {
                skip_array(&mut r).map_err(|e| bad(format!("metadata `{key}`: {e}")))?;
                None
            }
            t => return Err(bad(format!("metadata `{key}` has unknown value type {t}"))),
        };
    }
    Ok(h)
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

fn fixed<const N: usize>(r: &mut impl Read) -> std::io::Result<[u8; N]> {
    let mut b = [0u8; N];
    r.read_exact(&mut b)?;
    Ok(b)
}

fn u32_(r: &mut impl Read) -> std::io::Result<u32> {
    fixed(r).map(u32::from_le_bytes)
}

fn u64_(r: &mut impl Read) -> std::io::Result<u64> {
    fixed(r).map(u64::from_le_bytes)
}

fn invalid(msg: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, msg)
}

fn string(r: &mut impl Read, limit: u64) -> std::io::Result<String> {
    let n = u64_(r)?;
    if n > limit {
        return Err(invalid(format!("string of {n} bytes (limit {limit})")));
    }
    let mut b = vec![0u8; n as usize];
    r.read_exact(&mut b)?;
    Ok(String::from_utf8_lossy(&b).into_owned())
}

/// An array that must hold strings.
fn string_array(r: &mut impl Read) -> std::io::Result<Vec<String>> {
    let ty = u32_(r)?;
    let n = u64_(r)?;
    if ty != 8 {
        return Err(invalid(format!("array of type {ty}, expected strings (8)")));
    }
    if n > MAX_STRING {
        return Err(invalid(format!("array of {n} elements")));
    }
    (0..n).map(|_| string(r, MAX_STRING)).collect()
}

fn skip_array<R: Read + Seek>(r: &mut R) -> std::io::Result<()> {
    let ty = u32_(r)?;
    let n = u64_(r)?;
    let size = match ty {
        0 | 1 | 7 => 1,
        2 | 3 => 2,
        4..=6 => 4,
        10..=12 => 8,
        8 => {
            for _ in 0..n {
                let len = u64_(r)?;
                if len > MAX_STRING {
                    return Err(invalid(format!(
                        "string of {len} bytes (limit {MAX_STRING})"
                    )));
                }
                r.seek(SeekFrom::Current(len as i64))?;
            }
            return Ok(());
        }
        t => return Err(invalid(format!("array of unknown type {t}"))),
    };
    let bytes = n
        .checked_mul(size)
        .filter(|&b| b <= i64::MAX as u64)
        .ok_or_else(|| invalid(format!("array of {n} elements")))?;
    r.seek(SeekFrom::Current(bytes as i64))?;
    Ok(())
}
