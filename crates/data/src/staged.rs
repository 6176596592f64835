//! A folder written whole, then swapped in: the work goes into a hidden sibling
//! (`.NAME.staging`); [`StagedDir::commit`] renames the old folder away, the staging folder
//! into place, and removes the old one. A failure (or a kill) before the commit leaves the
//! target as it was; a drop without commit removes the staging folder.

use crate::{DataError, Result};
use std::path::{Path, PathBuf};

pub struct StagedDir {
    target: PathBuf,
    staging: PathBuf,
    old: PathBuf,
    committed: bool,
}

fn sibling(target: &Path, suffix: &str) -> Result<PathBuf> {
    let name = target.file_name().ok_or_else(|| {
        DataError::Invalid(format!("{}: give a named folder to write (not `.`, `..` or `/`)", target.display()))
    })?;
    let parent = target.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    Ok(parent.join(format!(".{}.{suffix}", name.to_string_lossy())))
}

/// Whether `dir` is missing or an empty folder (a file, or a folder that cannot be read, is
/// not: nothing is written over it).
pub fn is_empty_dir(dir: &Path) -> bool {
    match std::fs::read_dir(dir) {
        Ok(mut d) => d.next().is_none(),
        Err(_) => std::fs::symlink_metadata(dir).is_err(),
    }
}

impl StagedDir {
    /// A fresh, empty staging folder for `target` (a stale one from a killed run is removed).
    pub fn begin(target: &Path) -> Result<Self> {
        let staging = sibling(target, "staging")?;
        let old = sibling(target, "old")?;
        let _ = std::fs::remove_dir_all(&staging);
        std::fs::create_dir_all(&staging).map_err(|e| {
            DataError::Invalid(format!("{}: cannot create the folder ({e}); choose a writable path", target.display()))
        })?;
        Ok(Self { target: target.to_path_buf(), staging, old, committed: false })
    }

    /// Where to write.
    pub fn path(&self) -> &Path {
        &self.staging
    }

    /// Swaps the staging folder in for the target.
    pub fn commit(mut self) -> Result<()> {
        for entry in std::fs::read_dir(&self.staging).map_err(|e| DataError::io(&self.staging, e))?.flatten() {
            if let Ok(f) = std::fs::File::open(entry.path()) {
                let _ = f.sync_all();
            }
        }
        if self.target.exists() {
            let _ = std::fs::remove_dir_all(&self.old);
            std::fs::rename(&self.target, &self.old).map_err(|e| DataError::io(&self.target, e))?;
        }
        std::fs::rename(&self.staging, &self.target).map_err(|e| DataError::io(&self.target, e))?;
        let _ = std::fs::remove_dir_all(&self.old);
        self.committed = true;
        Ok(())
    }
}

impl Drop for StagedDir {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_dir_all(&self.staging);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_swaps_and_drop_keeps_the_target() {
        let dir = tempfile::tempdir().unwrap();
        let t = dir.path().join("out");
        std::fs::create_dir(&t).unwrap();
        std::fs::write(t.join("a"), "old").unwrap();
        {
            let s = StagedDir::begin(&t).unwrap();
            std::fs::write(s.path().join("a"), "new").unwrap();
            // Dropped without commit: the target keeps its old file, no staging is left.
        }
        assert_eq!(std::fs::read_to_string(t.join("a")).unwrap(), "old");
        assert!(!dir.path().join(".out.staging").exists());
        let s = StagedDir::begin(&t).unwrap();
        std::fs::write(s.path().join("b"), "new").unwrap();
        s.commit().unwrap();
        assert!(!t.join("a").exists() && t.join("b").exists(), "the folder is replaced whole");
        assert!(!dir.path().join(".out.old").exists());
        assert!(StagedDir::begin(Path::new("/")).is_err());
    }
}
