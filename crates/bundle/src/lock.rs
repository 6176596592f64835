//! One writer per bundle: `BUNDLE/.lock` ([`plandiff_data::FileLock`]: the writer's PID,
//! host and job; a dead writer's lock is taken over, any other is a one-line refusal).

use crate::{BundleError, Result};
use plandiff_data::FileLock;
use std::path::Path;

pub struct BundleLock {
    _lock: FileLock,
}

impl BundleLock {
    /// Takes the lock of the bundle at `root` (created if missing) for `what` (e.g. "training
    /// ar").
    pub fn acquire(root: &Path, what: &str) -> Result<Self> {
        std::fs::create_dir_all(root).map_err(|e| BundleError::io(root, e))?;
        let lock = FileLock::acquire(&root.join(".lock"), what, "this bundle")
            .map_err(|e| BundleError::file(root, e.to_string()))?;
        Ok(Self { _lock: lock })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_writer_per_bundle() {
        let dir = tempfile::tempdir().unwrap();
        let l = BundleLock::acquire(dir.path(), "training ar").unwrap();
        let e = BundleLock::acquire(dir.path(), "training planner").err().unwrap().to_string();
        assert!(e.contains("another plandiff") && e.contains("training ar"), "{e}");
        drop(l);
        assert!(!dir.path().join(".lock").exists());
    }
}
