//! Weights as safetensors: read (a missing or damaged file is one line naming it), load
//! into a `VarStore` with every name and shape checked, save, and fingerprint.

use crate::error::first_line;
use crate::{BundleError, Result};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::Read;
use std::path::Path;
use tch::{nn, Device, Tensor};

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
    let mut file: HashMap<String, Tensor> = read_weights(path)?.into_iter().collect();
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

/// SHA-256 (hex) of a file, streamed.
pub fn file_sha256(path: &Path) -> Result<String> {
    let mut f = std::fs::File::open(path).map_err(|e| BundleError::io(path, e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| BundleError::io(path, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}
