use crate::args::InfoArgs;
use anyhow::{Context, Result};
use plandiff_bundle::Bundle;
use plandiff_train::registry::held_by;
use plandiff_train::Stage;
use serde_json::json;
use std::process::ExitCode;

/// Tensor count and parameter count from a safetensors header, without reading the weights.
fn count_params(path: &std::path::Path) -> Result<(usize, u64)> {
    let h = plandiff_bundle::weights::read_header(path)?;
    Ok((h.tensors.len(), u64::try_from(h.elements).unwrap_or(u64::MAX)))
}

/// Each stage the bundle holds: its config (checked by its own type), tensor and parameter
/// counts, size, whether its tokenizer matches, whether it can resume.
fn describe_stages(bundle: &Bundle, tokenizer_hash: &str) -> Result<Vec<(&'static Stage, serde_json::Value)>> {
    let mut out = Vec::new();
    for stage in held_by(bundle) {
        let cfg = stage.read_config(bundle)?;
        let dir = bundle.stage_dir(stage.name());
        let (tensors, params) = count_params(&dir.join("model.safetensors"))?;
        let size: u64 = std::fs::metadata(dir.join("model.safetensors")).map(|m| m.len()).unwrap_or(0);
        let matches = cfg["tokenizer_hash"].as_str() == Some(tokenizer_hash);
        out.push((
            stage,
            json!({"config": cfg, "tensors": tensors, "parameters": params, "model_bytes": size,
                   "tokenizer_matches": matches, "resumable": dir.join("trainer_state.json").exists()}),
        ));
    }
    Ok(out)
}

pub fn run(a: InfoArgs) -> Result<ExitCode> {
    let bundle = Bundle::new(&a.checkpoint);
    let tk = bundle.load_tokenizer().with_context(|| format!("--checkpoint {}", a.checkpoint.display()))?;
    let stages = describe_stages(&bundle, tk.hash())?;
    if stages.is_empty() {
        anyhow::bail!(
            "--checkpoint {}: the bundle holds no model yet; train one with `plandiff train ar`",
            a.checkpoint.display()
        );
    }
    if a.json {
        let map: serde_json::Map<String, serde_json::Value> =
            stages.iter().map(|(s, v)| (s.name().to_string(), v.clone())).collect();
        let out = json!({"bundle": a.checkpoint.display().to_string(),
            "tokenizer": {"vocab_size": tk.vocab_size(), "hash": tk.hash(), "special": tk.special()},
            "stages": map});
        crate::outln!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(ExitCode::SUCCESS);
    }
    crate::outln!("bundle {}", a.checkpoint.display());
    crate::outln!("  tokenizer: {} tokens, sha256 {}", tk.vocab_size(), &tk.hash()[..16]);
    // Where the weights came from (the first stage that says; every stage of a recipe shares it).
    let prov = |key: &str| stages.iter().map(|(_, s)| &s["config"]["provenance"][key]).find(|v| !v.is_null());
    if let Some(c) = prov("corpus").and_then(|c| c.as_array()) {
        let files: Vec<&str> = c.iter().filter_map(|f| f.as_str()).collect();
        crate::outln!("  trained on: {}", files.join(", "));
    }
    if let Some(e) = prov("export") {
        crate::outln!(
            "  weights stored as {} (exported from {})",
            e["dtype"].as_str().unwrap_or("?"),
            e["from"].as_str().unwrap_or("?")
        );
    }
    // By name, as the JSON's stage map orders them.
    let mut by_name: Vec<&(&Stage, serde_json::Value)> = stages.iter().collect();
    by_name.sort_by_key(|(s, _)| s.name());
    for (stage, s) in by_name {
        let params = s["parameters"].as_u64().unwrap_or(0);
        let mismatch = if s["tokenizer_matches"].as_bool() == Some(true) { "" } else { "  [TOKENIZER MISMATCH]" };
        crate::outln!("  {}: {}{mismatch}", stage.name(), stage.describe(&s["config"], params));
    }
    Ok(ExitCode::SUCCESS)
}
