use crate::args::ExportArgs;
use anyhow::{Context, Result};
use plandiff_train::{export_bundle, StorageKind};
use std::process::ExitCode;

pub fn run(a: ExportArgs) -> Result<ExitCode> {
    let kind: StorageKind = a.dtype.parse().map_err(|e| anyhow::anyhow!("--dtype: {e}"))?;
    let r = export_bundle(&a.checkpoint, &a.out, kind, a.force)
        .with_context(|| format!("--checkpoint {}", a.checkpoint.display()))?;
    if a.json {
        crate::outln!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        for s in &r.stages {
            crate::outln!("{}: {:.1} MB -> {:.1} MB", s.stage, s.bytes_before as f64 / 1e6, s.bytes_after as f64 / 1e6);
        }
        crate::outln!("{}: {:.1} MB in all", a.out.display(), r.total_bytes as f64 / 1e6);
    }
    Ok(ExitCode::SUCCESS)
}
