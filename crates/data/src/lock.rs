//! One writer per folder: a lock file holds the writer's PID, host and what it is doing,
//! made with `create_new` (atomic) and removed when the [`FileLock`] drops. A lock whose
//! process is gone (same host, no such PID) is stale and taken over; any other is a one-line
//! refusal that names the holder. The bundle store and the embedding cache both use it.

use crate::{DataError, Result};
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Debug)]
pub struct FileLock {
    path: PathBuf,
}

/// This machine's name (a lock from another host is never taken over).
pub fn host() -> String {
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

impl FileLock {
    /// Takes the lock file `path` (its folder created if missing) for `what` (e.g. "training
    /// ar"); `of` names what it guards in the refusal ("this bundle").
    pub fn acquire(path: &Path, what: &str, of: &str) -> Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| DataError::io(dir, e))?;
        }
        for _ in 0..2 {
            match std::fs::OpenOptions::new().write(true).create_new(true).open(path) {
                Ok(mut f) => {
                    let line = format!("{} {} {what}\n", std::process::id(), host());
                    f.write_all(line.as_bytes()).and_then(|_| f.sync_all()).map_err(|e| DataError::io(path, e))?;
                    return Ok(Self { path: path.to_path_buf() });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let text = std::fs::read_to_string(path).unwrap_or_default();
                    let mut it = text.split_whitespace();
                    let pid = it.next().and_then(|p| p.parse::<u32>().ok());
                    let holder_host = it.next().unwrap_or("").to_string();
                    let doing: Vec<&str> = it.collect();
                    let stale = pid.is_none() || (holder_host == host() && pid.is_some_and(|p| !alive(p)));
                    if stale {
                        let _ = std::fs::remove_file(path);
                        continue;
                    }
                    return Err(DataError::Invalid(format!(
                        "another plandiff (pid {} on {holder_host}, {}) is writing {of}; wait for it to finish, or remove {} if that process is gone",
                        pid.unwrap_or(0),
                        doing.join(" "),
                        path.display()
                    )));
                }
                Err(e) => return Err(DataError::io(path, e)),
            }
        }
        Err(DataError::Invalid(format!("{}: could not take the lock; remove the file and retry", path.display())))
    }
}

impl Drop for FileLock {
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
        let path = dir.path().join("x/.lock");
        let l = FileLock::acquire(&path, "training ar", "this bundle").unwrap();
        let e = FileLock::acquire(&path, "training planner", "this bundle").err().unwrap().to_string();
        assert!(e.contains("another plandiff") && e.contains("training ar") && e.contains("this bundle"), "{e}");
        drop(l);
        assert!(!path.exists());
        // A dead writer's lock (a PID that cannot exist) is stale.
        std::fs::write(&path, format!("4294967290 {} training ar\n", host())).unwrap();
        drop(FileLock::acquire(&path, "training ar", "this bundle").unwrap());
        // Another host's lock is never taken over.
        std::fs::write(&path, "1 some-other-host training ar\n").unwrap();
        assert!(FileLock::acquire(&path, "x", "this bundle").is_err());
    }
}
