//! One writer per bundle: `BUNDLE/.lock` holds the writer's PID and host, made with
//! `create_new` (atomic), removed when the [`BundleLock`] drops. A lock whose process is gone
//! (same host, no such PID) is stale and taken over; any other is a one-line refusal.

use crate::{BundleError, Result};
use std::io::Write;
use std::path::{Path, PathBuf};

pub struct BundleLock {
    path: PathBuf,
}

fn host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "unknown-host".into())
}

/// Whether process `pid` is alive on this machine (where /proc tells; else assume it is).
fn alive(pid: u32) -> bool {
    if Path::new("/proc/self").exists() {
        Path::new(&format!("/proc/{pid}")).exists()
    } else {
        true
    }
}

impl BundleLock {
    /// Takes the lock of the bundle at `root` (created if missing) for `what` (e.g. "training
    /// ar").
    pub fn acquire(root: &Path, what: &str) -> Result<Self> {
        std::fs::create_dir_all(root).map_err(|e| BundleError::io(root, e))?;
        let path = root.join(".lock");
        for _ in 0..2 {
            match std::fs::OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(mut f) => {
                    let line = format!("{} {} {what}\n", std::process::id(), host());
                    f.write_all(line.as_bytes()).and_then(|_| f.sync_all()).map_err(|e| BundleError::io(&path, e))?;
                    return Ok(Self { path });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let text = std::fs::read_to_string(&path).unwrap_or_default();
                    let mut it = text.split_whitespace();
                    let pid = it.next().and_then(|p| p.parse::<u32>().ok());
                    let holder_host = it.next().unwrap_or("").to_string();
                    let doing: Vec<&str> = it.collect();
                    let stale = pid.is_none() || (holder_host == host() && pid.is_some_and(|p| !alive(p)));
                    if stale {
                        let _ = std::fs::remove_file(&path);
                        continue;
                    }
                    return Err(BundleError::file(
                        root,
                        format!(
                            "another plandiff (pid {} on {holder_host}, {}) is writing this bundle; wait for it to finish, or remove {} if that process is gone",
                            pid.unwrap_or(0),
                            doing.join(" "),
                            path.display()
                        ),
                    ));
                }
                Err(e) => return Err(BundleError::io(&path, e)),
            }
        }
        Err(BundleError::file(&path, "could not take the bundle's lock; remove the file and retry"))
    }
}

impl Drop for BundleLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_writer_and_stale_locks_are_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let l = BundleLock::acquire(dir.path(), "training ar").unwrap();
        let e = BundleLock::acquire(dir.path(), "training planner").err().unwrap().to_string();
        assert!(e.contains("another plandiff") && e.contains("training ar"), "{e}");
        drop(l);
        assert!(!dir.path().join(".lock").exists());
        // A dead writer's lock (a PID that cannot exist) is stale.
        std::fs::write(dir.path().join(".lock"), format!("4294967290 {} training ar\n", host())).unwrap();
        let l = BundleLock::acquire(dir.path(), "training ar").unwrap();
        drop(l);
        // Another host's lock is never taken over.
        std::fs::write(dir.path().join(".lock"), "1 some-other-host training ar\n").unwrap();
        assert!(BundleLock::acquire(dir.path(), "x").is_err());
    }
}
