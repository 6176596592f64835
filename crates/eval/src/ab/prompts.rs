//! A/B prompts: one per line of a text file, or JSONL with a reference continuation.

use crate::{PipelineError, Result};
use serde::Serialize;
use std::path::Path;

/// One prompt, with its reference continuation when the prompt file has one.
#[derive(Debug, Clone, Serialize)]
pub struct PromptItem {
    pub prompt: String,
    pub reference: Option<String>,
    /// The outline of the `outline` and `ar-outline` arms: a line per new sentence, `None`
    /// where the planner fills the slot (JSONL `"outline": ["...", "", ...]`, `""` or `"_"`
    /// free).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outline: Option<Vec<Option<String>>>,
}

/// A JSONL line's `"outline"`: an array of strings, checked as `--outline` checks a file.
fn outline_of(v: &serde_json::Value) -> std::result::Result<Option<Vec<Option<String>>>, String> {
    let Some(o) = v.get("outline").filter(|o| !o.is_null()) else { return Ok(None) };
    let lines = o.as_array().ok_or("\"outline\" must be an array of strings (\"\" or \"_\" for a free slot)")?;
    let mut text = String::new();
    for l in lines {
        let l = l.as_str().ok_or("\"outline\" must be an array of strings (\"\" or \"_\" for a free slot)")?;
        if l.contains('\n') {
            return Err("an \"outline\" line holds a line break; give one string per line".into());
        }
        text.push_str(l);
        text.push('\n');
    }
    plandiff_pipeline::hybrid::outline::parse_outline(&text).map(Some)
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
            let outline = outline_of(&v)
                .map_err(|e| PipelineError::Invalid(format!("{} line {}: {e}", path.display(), i + 1)))?;
            out.push(PromptItem { prompt: prompt.to_string(), reference, outline });
        } else {
            out.push(PromptItem { prompt: line.to_string(), reference: None, outline: None });
        }
    }
    if out.is_empty() {
        return Err(PipelineError::Invalid(format!("{}: no prompt in the file", path.display())));
    }
    Ok(out)
}
