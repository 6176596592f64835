//! A GGUF file (llama.cpp's format) read into what the judge needs: its metadata and its tensors
//! dequantised into f32 tch tensors.
//!
//! The container (header, metadata, tensor table, alignment) is read by `gguf-rs-lib`, a
//! maintained crate that depends on no tensor library and checks what a hostile file can get
//! wrong before it allocates (metadata and file-size limits, tensor ranges inside the file,
//! aligned and non-overlapping offsets, duplicate names). The payloads' codecs are here (it
//! has none): `F32`, `F16`, `Q8_0` and `Q4_1` (the types SmolLM2's file uses, and the plain
//! ones), after ggml's `dequantize_row_*`:
//!
//! | type | block | bytes | value |
//! |---|---|---|---|
//! | `Q4_1` | 32 | `d: f16, m: f16, qs: [u8; 16]` | `x[j] = (qs[j] & 15) d + m`, `x[j + 16] = (qs[j] >> 4) d + m` |
//! | `Q8_0` | 32 | `d: f16, qs: [i8; 32]` | `x[j] = qs[j] d` |
//!
//! GGUF lists a tensor's dimensions fastest first (`ne0` = columns), so a matrix `[ne0, ne1]`
//! is a `(ne1, ne0)` tensor here: a linear layer's `(out, in)`.

use gguf_rs_lib::format::metadata::MetadataValue;
use gguf_rs_lib::prelude::GGUFTensorType;
use gguf_rs_lib::reader::file_reader::{open_gguf_file, GGUFFileReader};
use std::collections::HashMap;
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use tch::Tensor;

/// Why a GGUF file cannot be read; the message names the file.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {problem}")]
pub struct GgufError {
    pub path: PathBuf,
    pub problem: String,
}

/// An open GGUF file: its metadata, read; its tensors, read on demand.
pub struct Gguf {
    path: PathBuf,
    reader: GGUFFileReader<BufReader<File>>,
}

impl Gguf {
    /// Opens `path`: header, metadata and tensor table, checked (a truncated or foreign file
    /// is an error here, before any tensor is read).
    pub fn open(path: &Path) -> Result<Self, GgufError> {
        let reader = open_gguf_file(path).map_err(|e| GgufError {
            path: path.to_path_buf(),
            problem: format!("not a readable GGUF file ({})", first_line(&e.to_string())),
        })?;
        Ok(Self { path: path.to_path_buf(), reader })
    }

    pub fn error(&self, problem: impl Into<String>) -> GgufError {
        GgufError { path: self.path.clone(), problem: problem.into() }
    }

    fn value(&self, key: &str) -> Result<&MetadataValue, GgufError> {
        self.reader.metadata().get(key).ok_or_else(|| self.error(format!("no metadata `{key}`")))
    }

    /// A string value.
    pub fn string(&self, key: &str) -> Result<String, GgufError> {
        let v = self.value(key)?;
        v.as_str().map(str::to_string).ok_or_else(|| self.error(format!("metadata `{key}` is not a string")))
    }

    /// An unsigned integer value, at most `max` (every size is bounded before it is used).
    pub fn uint(&self, key: &str, max: u64) -> Result<u64, GgufError> {
        let v = self.value(key)?.as_u64().ok_or_else(|| self.error(format!("metadata `{key}` is not an integer")))?;
        if v > max {
            return Err(self.error(format!("metadata `{key}` = {v} is above {max}")));
        }
        Ok(v)
    }

    /// A float value.
    pub fn float(&self, key: &str) -> Result<f64, GgufError> {
        let v = self.value(key)?.as_f64().ok_or_else(|| self.error(format!("metadata `{key}` is not a number")))?;
        if !v.is_finite() {
            return Err(self.error(format!("metadata `{key}` = {v} is not finite")));
        }
        Ok(v)
    }

    /// An array of strings.
    pub fn strings(&self, key: &str) -> Result<Vec<String>, GgufError> {
        match self.value(key)? {
            MetadataValue::Array(a) => a
                .values
                .iter()
                .map(|v| v.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| self.error(format!("metadata `{key}` holds a value that is not a string"))),
            _ => Err(self.error(format!("metadata `{key}` is not an array"))),
        }
    }

    /// An array of integers.
    pub fn ints(&self, key: &str) -> Result<Vec<i64>, GgufError> {
        match self.value(key)? {
            MetadataValue::Array(a) => a
                .values
                .iter()
                .map(|v| v.as_i64().or_else(|| v.as_u64().and_then(|u| i64::try_from(u).ok())))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| self.error(format!("metadata `{key}` holds a value that is not an integer"))),
            _ => Err(self.error(format!("metadata `{key}` is not an array"))),
        }
    }

    /// Tensor `name` dequantised to f32, shaped `(ne_{n-1}, .., ne0)`, checked against `shape`.
    pub fn tensor(&mut self, name: &str, shape: &[i64]) -> Result<Tensor, GgufError> {
        let info = self.reader.get_tensor_info(name).ok_or_else(|| self.error(format!("no tensor `{name}`")))?;
        let dims: Vec<i64> = info.shape().dims().iter().rev().map(|&d| d as i64).collect();
        if dims != shape {
            return Err(self.error(format!("tensor `{name}` is {dims:?}, the model needs {shape:?}")));
        }
        let kind = info.tensor_type();
        let n: usize = dims.iter().product::<i64>() as usize;
        let data = self
            .reader
            .load_tensor_data(name)
            .map_err(|e| self.error(format!("tensor `{name}`: {}", first_line(&e.to_string()))))?
            .ok_or_else(|| self.error(format!("no tensor `{name}`")))?;
        let values = dequantize(kind, data.as_slice(), n).map_err(|m| self.error(format!("tensor `{name}`: {m}")))?;
        if values.iter().any(|v| !v.is_finite()) {
            return Err(self.error(format!("tensor `{name}` holds NaN or infinite values")));
        }
        Ok(Tensor::from_slice(&values).view(shape))
    }

    /// Names and shapes of every tensor (`(ne_{n-1}, .., ne0)`).
    pub fn tensor_shapes(&self) -> HashMap<String, Vec<i64>> {
        self.reader
            .tensor_infos()
            .iter()
            .map(|t| (t.name().to_string(), t.shape().dims().iter().rev().map(|&d| d as i64).collect()))
            .collect()
    }
}

fn f16(lo: u8, hi: u8) -> f32 {
    half::f16::from_bits(u16::from_le_bytes([lo, hi])).to_f32()
}

/// `n` values of a tensor of type `kind` from its bytes.
pub fn dequantize(kind: GGUFTensorType, bytes: &[u8], n: usize) -> Result<Vec<f32>, String> {
    let need = |per_block: usize, block: usize| {
        if !n.is_multiple_of(block) {
            return Err(format!("{n} values are not whole blocks of {block}"));
        }
        let want = n / block * per_block;
        if bytes.len() != want {
            return Err(format!("{} bytes, {kind:?} of {n} values takes {want}", bytes.len()));
        }
        Ok(())
    };
    match kind {
        GGUFTensorType::F32 => {
            need(4, 1)?;
            Ok(bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
        }
        GGUFTensorType::F16 => {
            need(2, 1)?;
            Ok(bytes.chunks_exact(2).map(|c| f16(c[0], c[1])).collect())
        }
        GGUFTensorType::Q8_0 => {
            need(34, 32)?;
            let mut out = Vec::with_capacity(n);
            for b in bytes.chunks_exact(34) {
                let d = f16(b[0], b[1]);
                out.extend(b[2..].iter().map(|&q| f32::from(q as i8) * d));
            }
            Ok(out)
        }
        GGUFTensorType::Q4_1 => {
            need(20, 32)?;
            let mut out = vec![0f32; n];
            for (i, b) in bytes.chunks_exact(20).enumerate() {
                let (d, m) = (f16(b[0], b[1]), f16(b[2], b[3]));
                let o = &mut out[i * 32..(i + 1) * 32];
                for (j, &q) in b[4..].iter().enumerate() {
                    o[j] = f32::from(q & 0x0F) * d + m;
                    o[j + 16] = f32::from(q >> 4) * d + m;
                }
            }
            Ok(out)
        }
        other => Err(format!("its type {other:?} is not one the judge reads (F32, F16, Q8_0, Q4_1)")),
    }
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or_default().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(x: f32) -> [u8; 2] {
        half::f16::from_f32(x).to_bits().to_le_bytes()
    }

    /// Blocks written by hand dequantise to the values ggml's formulas give.
    #[test]
    fn blocks_by_hand() {
        // Q4_1: d = 0.5, m = -1; nibbles j (low) and 15 - j (high).
        let mut b = Vec::new();
        b.extend(h(0.5));
        b.extend(h(-1.0));
        b.extend((0..16u8).map(|j| j | ((15 - j) << 4)));
        let v = dequantize(GGUFTensorType::Q4_1, &b, 32).unwrap();
        assert_eq!(v[3], 3.0 * 0.5 - 1.0);
        assert_eq!(v[16 + 3], 12.0 * 0.5 - 1.0);
        // Q8_0: d = 0.25, qs = -16..16.
        let mut b = Vec::new();
        b.extend(h(0.25));
        b.extend((-16i8..16).map(|q| q as u8));
        let v = dequantize(GGUFTensorType::Q8_0, &b, 32).unwrap();
        assert_eq!((v[0], v[31]), (-4.0, 3.75));
        // F16 and F32.
        let v = dequantize(GGUFTensorType::F16, &[h(1.5), h(-2.0)].concat(), 2).unwrap();
        assert_eq!(v, vec![1.5, -2.0]);
        let v = dequantize(GGUFTensorType::F32, &7.25f32.to_le_bytes(), 1).unwrap();
        assert_eq!(v, vec![7.25]);
        // Wrong sizes and other types are errors, not reads past the buffer.
        assert!(dequantize(GGUFTensorType::Q4_1, &b[..10], 32).is_err());
        assert!(dequantize(GGUFTensorType::Q4_1, &b, 31).is_err());
        assert!(dequantize(GGUFTensorType::Q4_0, &b, 32).unwrap_err().contains("not one the judge reads"));
    }
}
