//! A/B prompts: one per line of a text file, or JSONL with a reference continuation.

use crate::{PipelineError, Result};
use serde::Serialize;
use std::path::Path;

/// One prompt, with its reference continuation when the prompt file has one.
#[derive(Debug, Clone, Serialize)]
pub struct PromptItem {
    pub prompt: String,
    pub reference: Option<String>,
}

/// Prompts from a text file (one per non-empty line) or JSONL (`{"prompt", "reference"?}`).
pub fn read_prompts(path: &Path) -> Result<Vec<PromptItem>> {
    let bytes = plandiff_data::read_capped(path, 64 << 20)
        .map_err(|e| PipelineError::Invalid(format!("{e}; give a readable file of at most 64 MB")))?;
    let text =
        String::from_utf8(bytes).map_err(|_| PipelineError::Invalid(format!("{}: not valid UTF-8", path.display())))?;
    let jsonl = path.extension().is_some_and(|e| e == "jsonl") || text.trim_start().starts_with('{');
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if jsonl {
            let v: serde_json::Value = serde_json::from_str(line)
                .map_err(|e| PipelineError::Invalid(format!("{} line {}: not JSON ({e})", path.display(), i + 1)))?;
            let prompt = v["prompt"].as_str().filter(|p| !p.trim().is_empty()).ok_or_else(|| {
                PipelineError::Invalid(format!(
                    "{} line {}: needs a non-empty \"prompt\" string",
                    path.display(),
                    i + 1
                ))
            })?;
            let reference = v["reference"].as_str().map(str::to_string).filter(|r| !r.trim().is_empty());
            out.push(PromptItem { prompt: prompt.to_string(), reference });
        } else {
            out.push(PromptItem { prompt: line.to_string(), reference: None });
        }
    }
    if out.is_empty() {
        return Err(PipelineError::Invalid(format!("{}: no prompt in the file", path.display())));
    }
    Ok(out)
}
