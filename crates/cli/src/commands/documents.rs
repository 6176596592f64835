//! The documents `eval` reads from `--data`, for its metrics and for the repair benchmark.

use crate::args::EvalArgs;
use anyhow::{bail, Context, Result};

/// The documents of --data (at most --max-docs): blank-line separated paragraphs or JSONL
/// "text" records, empty ones skipped.
pub fn read_documents(a: &EvalArgs) -> Result<Vec<String>> {
    let files = plandiff_data::expand_inputs(std::slice::from_ref(&a.data))
        .with_context(|| format!("--data {}", a.data.display()))?;
    let mut docs = Vec::new();
    'files: for f in &files {
        for d in plandiff_data::DocumentReader::open(f)? {
            let d = d?;
            if !d.trim().is_empty() {
                docs.push(d);
            }
            if docs.len() >= a.max_docs {
                break 'files;
            }
        }
    }
    if docs.is_empty() {
        bail!(
            "--data {}: no document found (documents are blank-line separated paragraphs or JSONL \"text\" records)",
            a.data.display()
        );
    }
    Ok(docs)
}
