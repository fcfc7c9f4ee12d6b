//! Test models as other readers see them: our header reader, a second parser of the tensor table
//! written here from the GGUF spec, llama.cpp's own Python reader (gguf-py, in a venv under
//! `target/`), and `cargo xtask testmodel` as a user runs it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use xtask::gguf::{read_header, Value};
use xtask::gguf_write::{self, GgmlType, TensorInfo};
use xtask::testmodel::{self, Quant, ShapeName, Spec};

const QUANTS: [Quant; 4] = [Quant::F32, Quant::F16, Quant::Q8_0, Quant::Q4_0];

fn tiny(quant: Quant, seed: u64) -> Spec {
    Spec::named(ShapeName::Tiny, Some(quant), seed)
}

/// The tensor table of a GGUF file, parsed independently of the writer (only the spec's layout).
struct Parsed {
    tensors: Vec<(TensorInfo, u64)>,
    data_start: u64,
    bytes: Vec<u8>,
}

fn parse(path: &Path, alignment: u64) -> Parsed {
    let bytes = std::fs::read(path).unwrap();
    let mut at = 0usize;
    let mut take = |n: usize| {
        let s = &bytes[at..at + n];
        at += n;
        s.to_vec()
    };
    fn u32_(b: Vec<u8>) -> u32 {
        u32::from_le_bytes(b.try_into().unwrap())
    }
    fn u64_(b: Vec<u8>) -> u64 {
        u64::from_le_bytes(b.try_into().unwrap())
    }
    assert_eq!(take(4), b"GGUF");
    assert_eq!(u32_(take(4)), 3);
    let n_tensors = u64_(take(8));
    let n_kv = u64_(take(8));
    // Skip the key/values: only the types this writer emits need handling here.
    fn skip_value(take: &mut dyn FnMut(usize) -> Vec<u8>, ty: u32) {
        match ty {
            0 | 1 | 7 => drop(take(1)),
            4..=6 => drop(take(4)),
            10..=12 => drop(take(8)),
            8 => {
                let n = u64_(take(8)) as usize;
                take(n);
            }
            9 => {
                let elem = u32_(take(4));
                let n = u64_(take(8));
                for _ in 0..n {
                    skip_value(take, elem);
                }
            }
            other => panic!("unexpected value type {other}"),
        }
    }
    for _ in 0..n_kv {
        let n = u64_(take(8)) as usize;
        take(n);
        let ty = u32_(take(4));
        skip_value(&mut take, ty);
    }
    let mut tensors = Vec::new();
    for _ in 0..n_tensors {
        let n = u64_(take(8)) as usize;
        let name = String::from_utf8(take(n)).unwrap();
        let n_dims = u32_(take(4));
        let dims: Vec<u64> = (0..n_dims).map(|_| u64_(take(8))).collect();
        let ty = GgmlType::from_id(u32_(take(4))).expect("a type we write");
        let offset = u64_(take(8));
        tensors.push((TensorInfo { name, dims, ty }, offset));
    }
    let data_start = (at as u64).div_ceil(alignment) * alignment;
    assert!(
        bytes[at..data_start as usize].iter().all(|b| *b == 0),
        "padding is zeros"
    );
    Parsed {
        tensors,
        data_start,
        bytes,
    }
}

impl Parsed {
    fn data(&self, i: usize) -> &[u8] {
        let (t, off) = &self.tensors[i];
        let start = (self.data_start + off) as usize;
        &self.bytes[start..start + t.data_bytes() as usize]
    }

    /// Our own dequantization of tensor `i`'s stored bytes.
    fn dequantized(&self, i: usize) -> Vec<f32> {
        let d = self.data(i);
        match self.tensors[i].0.ty {
            GgmlType::F32 => d
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                .collect(),
            GgmlType::F16 => d
                .chunks_exact(2)
                .map(|b| gguf_write::f16_to_f32(u16::from_le_bytes([b[0], b[1]])))
                .collect(),
            GgmlType::Q8_0 => d
                .chunks_exact(34)
                .flat_map(gguf_write::dequantize_q8_0_block)
                .collect(),
            GgmlType::Q4_0 => d
                .chunks_exact(18)
                .flat_map(gguf_write::dequantize_q4_0_block)
                .collect(),
        }
    }
}

/// How far stored values may be from the generated ones (weights are within ±0.0347).
fn tolerance(ty: GgmlType) -> f32 {
    let amp = 0.0347f32;
    match ty {
        GgmlType::F32 => 0.0,
        GgmlType::F16 => amp / 2048.0,
        // Half a step, plus the f16 rounding of the scale (relative 2^-11, times up to 127 or 8
        // steps: at most amp/2048 either way).
        GgmlType::Q8_0 => amp / 127.0 * 0.5 + amp / 2048.0,
        // The far end of a Q4_0 block clamps to 7d: one full step of max/8.
        GgmlType::Q4_0 => amp / 8.0 + amp / 2048.0,
    }
}

#[test]
fn our_readers_get_back_the_metadata_tensor_table_and_data() {
    let dir = tempfile::tempdir().unwrap();
    for quant in QUANTS {
        let spec = tiny(quant, 5);
        let path = dir.path().join(format!("tiny-{quant:?}.gguf"));
        let w = testmodel::write(&spec, &path).unwrap();
        assert_eq!(w.bytes, std::fs::metadata(&path).unwrap().len());
        assert_eq!(w.bytes, spec.file_size().unwrap());
        assert_eq!(w.params, 115_008);

        let h = read_header(&path).unwrap();
        assert_eq!(h.version, 3);
        assert_eq!(h.tensor_count, spec.tensors().len() as u64);
        let md = spec.metadata();
        assert_eq!(h.metadata.len(), md.len());
        for (k, v) in &md {
            let got = h.get(k).unwrap_or_else(|| panic!("{k} missing"));
            match v {
                // The reader keeps long arrays as a type and length only.
                Value::Array(items) if items.len() > 16 => assert_eq!(
                    got,
                    &Value::LongArray {
                        elem_type: match items[0] {
                            Value::String(_) => 8,
                            Value::F32(_) => 6,
                            _ => 5,
                        },
                        len: 320
                    },
                    "{k}"
                ),
                _ => assert_eq!(got, v, "{k}"),
            }
        }
        let f = h.facts();
        assert_eq!(f.architecture.as_deref(), Some("llama"));
        assert_eq!(
            (
                f.block_count,
                f.embedding_length,
                f.head_count,
                f.head_count_kv
            ),
            (Some(2), Some(64), Some(4), Some(2))
        );
        assert_eq!(f.file_type, Some(quant.file_type()));

        let p = parse(&path, 32);
        let layout = gguf_write::layout(&md, &spec.tensors()).unwrap();
        assert_eq!(p.data_start, layout.data_start);
        let table: Vec<TensorInfo> = p.tensors.iter().map(|(t, _)| t.clone()).collect();
        assert_eq!(table, spec.tensors());
        for (i, (t, off)) in p.tensors.iter().enumerate() {
            assert_eq!(off % 32, 0, "{} is aligned", t.name);
            assert_eq!(*off, layout.offsets[i]);
            let stored = p.dequantized(i);
            let made = spec.tensor_values(i);
            let tol = tolerance(t.ty);
            for (j, (a, b)) in stored.iter().zip(&made).enumerate() {
                assert!((a - b).abs() <= tol, "{} [{j}]: {a} vs {b}", t.name);
            }
        }
        // Norms are exactly 1.0 at the offset the table gives.
        let norm = p
            .tensors
            .iter()
            .position(|(t, _)| t.name == "output_norm.weight")
            .unwrap();
        assert!(p.dequantized(norm).iter().all(|v| *v == 1.0));
    }
}

#[test]
fn the_same_spec_gives_the_same_bytes_and_another_seed_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let a = testmodel::write(&tiny(Quant::Q8_0, 9), &dir.path().join("a.gguf")).unwrap();
    let b = testmodel::write(&tiny(Quant::Q8_0, 9), &dir.path().join("b.gguf")).unwrap();
    let c = testmodel::write(&tiny(Quant::Q8_0, 10), &dir.path().join("c.gguf")).unwrap();
    assert_eq!(a.sha256, b.sha256);
    assert_eq!(
        a.sha256,
        xtask::hashing::sha256_file(&a.path).unwrap().0,
        "the hash taken while writing is the file's"
    );
    assert_ne!(a.sha256, c.sha256);
    assert_eq!(a.bytes, c.bytes);
}

#[test]
fn a_failed_write_leaves_no_file_and_keeps_the_old_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.gguf");
    let old = testmodel::write(&tiny(Quant::F32, 1), &path).unwrap();
    let spec = tiny(Quant::Q4_0, 2);
    let tensors = spec.tensors();
    // The generator dies halfway through the tensors, as a killed or crashing writer would.
    let r = std::panic::catch_unwind(|| {
        gguf_write::write(
            &path,
            &spec.metadata(),
            &tensors,
            &mut |i, _, row| {
                assert!(i < 10, "generator failure");
                row.fill(0.5);
            },
            &mut |_, _| {},
        )
    });
    assert!(r.is_err());
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["m.gguf"], "no temporary file is left behind");
    assert_eq!(xtask::hashing::sha256_file(&path).unwrap().0, old.sha256);
}

// ---- gguf-py (llama.cpp's Python reader) ----

const GGUF_PY_CHECK: &str = r#"
import json, os, sys
import numpy as np
from gguf import GGUFReader
from gguf.quants import dequantize, quantize

path, work = sys.argv[1], sys.argv[2]
r = GGUFReader(path)
tokens = r.fields["tokenizer.ggml.tokens"].contents()
out = {
    "architecture": r.fields["general.architecture"].contents(),
    "context_length": r.fields["llama.context_length"].contents(),
    "head_count_kv": r.fields["llama.attention.head_count_kv"].contents(),
    "eps": r.fields["llama.attention.layer_norm_rms_epsilon"].contents(),
    "seed": r.fields["tunellama.testmodel.seed"].contents(),
    "add_bos": r.fields["tokenizer.ggml.add_bos_token"].contents(),
    "token_types": sorted(set(int(t) for t in r.fields["tokenizer.ggml.token_type"].contents())),
    "tokens": [tokens[0], tokens[2], tokens[3 + 10], tokens[-1]],
    "n_tokens": len(tokens),
    "alignment": r.alignment,
    "tensors": [],
}
for i, t in enumerate(r.tensors):
    ne0 = int(t.shape[0])
    dequantize(t.data, t.tensor_type).astype(np.float32).ravel().tofile(os.path.join(work, f"{i}.deq"))
    # gguf-py's numpy port of ggml's reference quantizers, applied to the values we generated.
    made = np.fromfile(os.path.join(work, f"{i}.made"), dtype=np.float32).reshape(-1, ne0)
    ref = np.ascontiguousarray(quantize(made, t.tensor_type)).view(np.uint8).ravel()
    ours = np.ascontiguousarray(t.data).view(np.uint8).ravel()
    out["tensors"].append({
        "name": t.name,
        "shape": [int(x) for x in t.shape],
        "type": t.tensor_type.name,
        "n_bytes": int(t.n_bytes),
        "same_bytes_as_reference_quantizer": bool(np.array_equal(ref, ours)),
    })
print(json.dumps(out, default=lambda o: o.item()))
"#;

fn run_ok(cmd: &mut Command, what: &str) -> Output {
    let o = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run: {e}"));
    assert!(
        o.status.success(),
        "{what} failed ({}):\n{}\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

/// A venv with gguf-py and numpy under `target/`, made once and reused by later runs.
fn gguf_py() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let venv = root.join("gguf-py-venv");
    let python = venv.join("bin/python");
    let works = |py: &Path| {
        Command::new(py)
            .args(["-c", "import gguf.quants, numpy"])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if works(&python) {
        return python;
    }
    // Build beside it and rename, so an interrupted install is never mistaken for a good one.
    let tmp = root.join(format!("gguf-py-venv.tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    run_ok(
        Command::new("python3").args(["-m", "venv"]).arg(&tmp),
        "python3 -m venv (needs python3 with the venv module, e.g. apt install python3-venv)",
    );
    run_ok(
        Command::new(tmp.join("bin/python")).args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "gguf",
            "numpy",
        ]),
        "pip install gguf numpy (needs access to the Python package index)",
    );
    let _ = std::fs::remove_dir_all(&venv);
    std::fs::rename(&tmp, &venv).unwrap();
    assert!(works(&python), "gguf-py still not importable from {venv:?}");
    python
}

fn f32s(path: &Path) -> Vec<f32> {
    std::fs::read(path)
        .unwrap()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect()
}

#[test]
fn gguf_py_reads_our_models_and_agrees_on_every_byte() {
    let python = gguf_py();
    for quant in QUANTS {
        let dir = tempfile::tempdir().unwrap();
        let spec = tiny(quant, 3);
        let path = dir.path().join("m.gguf");
        testmodel::write(&spec, &path).unwrap();
        let tensors = spec.tensors();
        for i in 0..tensors.len() {
            let made: Vec<u8> = spec
                .tensor_values(i)
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect();
            std::fs::write(dir.path().join(format!("{i}.made")), made).unwrap();
        }
        let o = run_ok(
            Command::new(&python)
                .arg("-c")
                .arg(GGUF_PY_CHECK)
                .arg(&path)
                .arg(dir.path()),
            "gguf-py check",
        );
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(v["architecture"], "llama");
        assert_eq!(v["context_length"], 256);
        assert_eq!(v["head_count_kv"], 2);
        assert!((v["eps"].as_f64().unwrap() - 1e-5).abs() < 1e-9);
        assert_eq!(v["seed"], 3);
        assert_eq!(v["add_bos"], true);
        assert_eq!(v["token_types"], serde_json::json!([2, 3, 5, 6]));
        assert_eq!(
            v["tokens"],
            serde_json::json!(["<unk>", "</s>", "<0x0A>", "<pad_319>"])
        );
        assert_eq!(v["n_tokens"], 320);
        assert_eq!(v["alignment"], 32);
        let got = v["tensors"].as_array().unwrap();
        assert_eq!(got.len(), tensors.len());
        let parsed = parse(&path, 32);
        for (i, (t, g)) in tensors.iter().zip(got).enumerate() {
            assert_eq!(g["name"], t.name.as_str());
            assert_eq!(g["shape"], serde_json::json!(t.dims), "{}", t.name);
            assert_eq!(g["type"], t.ty.name(), "{}", t.name);
            assert_eq!(g["n_bytes"], t.data_bytes(), "{}", t.name);
            assert_eq!(
                g["same_bytes_as_reference_quantizer"],
                true,
                "{} ({}): our encoding differs from gguf-py's port of ggml's",
                t.name,
                t.ty.name()
            );
            let theirs = f32s(&dir.path().join(format!("{i}.deq")));
            let ours = parsed.dequantized(i);
            assert_eq!(theirs.len(), ours.len());
            // Same bytes, same formula (f16 scale × small integer, exact in f32): same values.
            assert!(
                theirs.iter().zip(&ours).all(|(a, b)| a == b),
                "{}: dequantized values differ",
                t.name
            );
            let made = spec.tensor_values(i);
            let tol = tolerance(t.ty);
            for (j, (a, b)) in theirs.iter().zip(&made).enumerate() {
                assert!((a - b).abs() <= tol, "{} [{j}]: {a} vs {b}", t.name);
            }
        }
    }
}

// ---- the command ----

fn xtask(args: &[&str]) -> Output {
    xtask::testcmd::command(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .env("CI", "true")
        .output()
        .expect("run xtask")
}

#[test]
fn the_command_writes_a_model_and_reports_it_as_json() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.gguf");
    let p = path.to_str().unwrap();
    let o = xtask(&[
        "testmodel",
        "--shape",
        "tiny",
        "--quant",
        "q4_0",
        "--seed",
        "7",
        "-o",
        p,
        "--json",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["path"], p);
    assert_eq!(v["params"], 115_008);
    assert_eq!(v["spec"]["quant"], "q4_0");
    assert_eq!(v["spec"]["seed"], 7);
    assert_eq!(v["spec"]["shape"]["n_vocab"], 320);
    let (sha, len) = xtask::hashing::sha256_file(&path).unwrap();
    assert_eq!(v["sha256"], sha.as_str());
    assert_eq!(v["bytes"], len);
    assert!(v["seconds"].as_f64().is_some());
    // The library makes the same file.
    let lib = testmodel::write(&tiny(Quant::Q4_0, 7), &dir.path().join("lib.gguf")).unwrap();
    assert_eq!(lib.sha256, sha);

    let o = xtask(&["testmodel", "--shape", "tiny", "-o", p]);
    assert!(o.status.success());
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains(p) && out.contains("sha256") && out.contains("115008"),
        "{out}"
    );
}

#[test]
fn a_bad_shape_is_refused_with_the_choices() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("x.gguf");
    let o = xtask(&["testmodel", "--shape", "huge", "-o", p.to_str().unwrap()]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("'huge'") && err.contains("tiny") && err.contains("bench"),
        "{err}"
    );
    assert!(!p.exists());
}

#[test]
fn an_output_path_that_cannot_be_written_fails_with_the_path_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, "not a folder").unwrap();
    for target in [
        dir.path().join("missing/m.gguf"),
        // Its "folder" is a file: unwritable whoever runs the test (root ignores modes).
        file.join("m.gguf"),
    ] {
        let t = target.to_str().unwrap();
        let o = xtask(&["testmodel", "--shape", "tiny", "-o", t]);
        assert!(!o.status.success());
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(t), "{err}");
        assert!(err.contains("hint:"), "{err}");
        assert!(o.stdout.is_empty());
    }
    let mut names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    assert_eq!(names, ["a-file"], "no partial or temporary file");
}
