//! Weights as safetensors: read (a missing or damaged file is one line naming it), load
//! into a `VarStore` with every name and shape checked, save, and fingerprint.

use crate::error::first_line;
use crate::{BundleError, Result};
use std::collections::HashMap;
use std::path::Path;
use tch::{nn, Device, Tensor};

/// The header of a safetensors file, read without its data: every tensor's name, dtype and
/// shape, and their element count.
#[derive(Debug, Clone)]
pub struct Header {
    pub tensors: Vec<(String, String, Vec<u64>)>,
    pub elements: u128,
}

/// Floating-point dtypes plandiff stores weights in.
const FLOAT_DTYPES: [&str; 4] = ["F32", "F16", "BF16", "F64"];
/// The largest header read (the format allows 100 MB).
const MAX_HEADER: u64 = 100 << 20;

/// Reads and checks a safetensors header: its length against the file, every dtype a float.
pub fn read_header(path: &Path) -> Result<Header> {
    use std::io::Read as _;
    let bad = |m: String| BundleError::file(path, format!("{m}; retrain or restore the bundle"));
    if !path.exists() {
        return Err(BundleError::file(path, "not found; the bundle is incomplete, retrain or restore it"));
    }
    let mut f = std::fs::File::open(path).map_err(|e| BundleError::io(path, e))?;
    let len = f.metadata().map_err(|e| BundleError::io(path, e))?.len();
    let mut n = [0u8; 8];
    f.read_exact(&mut n).map_err(|_| bad("corrupt or truncated (no header)".into()))?;
    let n = u64::from_le_bytes(n);
    if n > MAX_HEADER || n > len.saturating_sub(8) {
        return Err(bad(format!("corrupt or truncated (a header of {n} bytes in a file of {len})")));
    }
    let mut buf = vec![0u8; n as usize];
    f.read_exact(&mut buf).map_err(|_| bad("corrupt or truncated header".into()))?;
    let v: serde_json::Value = serde_json::from_slice(&buf).map_err(|e| bad(format!("corrupt header ({e})")))?;
    let obj = v.as_object().ok_or_else(|| bad("corrupt header (not an object)".into()))?;
    let mut tensors = Vec::new();
    let mut elements: u128 = 0;
    for (name, t) in obj.iter().filter(|(k, _)| k.as_str() != "__metadata__") {
        let dtype = t["dtype"].as_str().unwrap_or("?").to_string();
        if !FLOAT_DTYPES.contains(&dtype.as_str()) {
            return Err(bad(format!(
                "tensor `{name}` is stored as {dtype}, but plandiff weights are floating point (F32, F16, BF16)"
            )));
        }
        let shape: Vec<u64> = t["shape"].as_array().into_iter().flatten().filter_map(|d| d.as_u64()).collect();
        let count = shape.iter().try_fold(1u128, |a, &d| a.checked_mul(u128::from(d)));
        elements =
            count.and_then(|c| elements.checked_add(c)).ok_or_else(|| bad("corrupt header (sizes overflow)".into()))?;
        tensors.push((name.clone(), dtype, shape));
    }
    Ok(Header { tensors, elements })
}

/// Refuses a config that asks for more parameters than the weights hold, before anything
/// is built from it (a hostile or damaged config.json must not allocate what it likes).
pub fn check_fits(path: &Path, min_parameters: u128) -> Result<()> {
    let h = read_header(path)?;
    if min_parameters > h.elements {
        return Err(BundleError::file(
            path,
            format!(
                "config.json describes a model of at least {min_parameters} parameters but the weights hold {}; the config does not match its weights, restore the bundle",
                h.elements
            ),
        ));
    }
    Ok(())
}

/// Every tensor of a bundle's safetensors file.
pub fn read_weights(path: &Path) -> Result<Vec<(String, Tensor)>> {
    if !path.exists() {
        return Err(BundleError::file(path, "not found; the bundle is incomplete, retrain or restore it"));
    }
    Tensor::read_safetensors(path).map_err(|e| {
        BundleError::file(
            path,
            format!("corrupt or truncated ({}); retrain or restore the bundle", first_line(&e.to_string())),
        )
    })
}

/// Copies weights from a safetensors file into `vs`, checking names and shapes.
pub fn load_weights(vs: &mut nn::VarStore, path: &Path) -> Result<()> {
    load_weights_except(vs, path, "")
}

/// [`load_weights`], with the file's tensors whose names start with `skip` (non-empty) left
/// out: a bundle's unused legacy tensors.
pub fn load_weights_except(vs: &mut nn::VarStore, path: &Path, skip: &str) -> Result<()> {
    let mut file: HashMap<String, Tensor> =
        read_weights(path)?.into_iter().filter(|(n, _)| skip.is_empty() || !n.starts_with(skip)).collect();
    let vars = vs.variables();
    let mut names: Vec<&String> = vars.keys().collect();
    names.sort();
    let mismatch = |m: String| BundleError::file(path, format!("{m}; the weights do not match config.json"));
    tch::no_grad(|| -> Result<()> {
        for name in names {
            let mut dst = vars[name].shallow_clone();
            let src = file.remove(name).ok_or_else(|| mismatch(format!("no tensor `{name}`")))?;
            if src.size() != dst.size() {
                return Err(mismatch(format!(
                    "tensor `{name}` has shape {:?} but config.json needs {:?}",
                    src.size(),
                    dst.size()
                )));
            }
            if src.isfinite().all().int64_value(&[]) == 0 {
                return Err(BundleError::file(
                    path,
                    format!("tensor `{name}` holds NaN or infinite values; the weights are damaged, retrain or restore them"),
                ));
            }
            dst.copy_(&src);
        }
        Ok(())
    })?;
    if let Some(extra) = file.keys().next() {
        return Err(mismatch(format!("unexpected tensor `{extra}`")));
    }
    Ok(())
}

/// Saves all variables of `vs` as safetensors (CPU copies, sorted names).
pub fn save_weights(vs: &nn::VarStore, path: &Path) -> Result<()> {
    let mut named: Vec<(String, Tensor)> =
        vs.variables().into_iter().map(|(n, t)| (n, t.to_device(Device::Cpu))).collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    Tensor::write_safetensors(&named, path)?;
    Ok(())
}
