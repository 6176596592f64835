//! Training metrics, one JSON object per line.

use crate::{Result, TrainError};
use indicatif::{ProgressBar, ProgressStyle};
use plandiff_bundle::fsutil;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

pub struct MetricsLog {
    /// `None`: a rank other than 0, which logs nothing.
    path: Option<PathBuf>,
}

impl MetricsLog {
    /// Opens `path` for appending; on resume, drops lines logged after `keep_until_step` by
    /// the interrupted run, so the log reads as one uninterrupted run.
    pub fn open(path: &Path, keep_until_step: Option<u64>) -> Result<Self> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| TrainError::io(parent, e))?;
        }
        match keep_until_step {
            Some(step) if path.exists() => {
                let text = std::fs::read_to_string(path).map_err(|e| TrainError::io(path, e))?;
                let kept: String = text
                    .lines()
                    .filter(|l| {
                        serde_json::from_str::<serde_json::Value>(l)
                            .ok()
                            .and_then(|v| v.get("step").and_then(|s| s.as_u64()))
                            .is_some_and(|s| s <= step)
                    })
                    .map(|l| format!("{l}\n"))
                    .collect();
                fsutil::write_atomic(path, kept.as_bytes())?;
            }
            None => fsutil::write_atomic(path, b"")?,
            _ => {}
        }
        Ok(Self { path: Some(path.to_path_buf()) })
    }

    /// A log that writes nothing (ranks other than 0).
    pub fn disabled() -> Self {
        Self { path: None }
    }

    pub fn write(&self, v: &serde_json::Value) -> Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let mut f = OpenOptions::new().append(true).create(true).open(path).map_err(|e| TrainError::io(path, e))?;
        writeln!(f, "{v}").map_err(|e| TrainError::io(path, e))
    }
}

/// The training progress bar (hidden when `on` is false: not a terminal, or not rank 0).
pub(crate) fn progress_bar(on: bool, len: u64, pos: u64) -> ProgressBar {
    if !on {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(len);
    pb.set_style(
        ProgressStyle::with_template("{spinner} step {pos}/{len} [{bar:30}] {msg} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    pb.set_position(pos);
    pb
}
