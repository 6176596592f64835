//! Crash-safe file writes: write to a temporary name, fsync, rename, fsync the folder.

use crate::{BundleError, Result};
use std::fs::File;
use std::io::Write;
use std::path::Path;

pub fn fsync_file(path: &Path) -> Result<()> {
    File::open(path).and_then(|f| f.sync_all()).map_err(|e| BundleError::io(path, e))
}

pub fn fsync_dir(path: &Path) -> Result<()> {
    // Directories can be opened read-only and fsynced on Linux; elsewhere this is best effort.
    if let Ok(f) = File::open(path) {
        let _ = f.sync_all();
    }
    Ok(())
}

/// Writes `bytes` to `path` atomically.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension(format!("{}.tmp", path.extension().and_then(|e| e.to_str()).unwrap_or("")));
    let res = (|| {
        let mut f = File::create(&tmp).map_err(|e| BundleError::io(&tmp, e))?;
        f.write_all(bytes).map_err(|e| BundleError::io(&tmp, e))?;
        f.sync_all().map_err(|e| BundleError::io(&tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| BundleError::io(path, e))
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res?;
    if let Some(parent) = path.parent() {
        fsync_dir(parent)?;
    }
    Ok(())
}

/// `value` as pretty JSON, written atomically.
pub fn write_json(path: &Path, value: &impl serde::Serialize) -> Result<()> {
    let j = serde_json::to_string_pretty(value).map_err(|e| BundleError::file(path, e.to_string()))?;
    write_atomic(path, j.as_bytes())
}
