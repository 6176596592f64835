use crate::args::InfoArgs;
use anyhow::{Context, Result};
use plandiff_train::Bundle;
use serde_json::json;
use std::process::ExitCode;

const STAGES: [&str; 4] = ["ar", "autoencoder", "planner", "diffusion"];

/// Tensor count and parameter count from a safetensors header, without loading weights.
fn count_params(path: &std::path::Path) -> Result<(usize, u64)> {
    let bytes = std::fs::read(path).with_context(|| path.display().to_string())?;
    let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| {
        anyhow::anyhow!("{}: corrupt or truncated ({e}); retrain or restore the bundle", path.display())
    })?;
    let n = st.tensors().iter().map(|(_, v)| v.shape().iter().product::<usize>() as u64).sum();
    Ok((st.len(), n))
}

pub fn run(a: InfoArgs) -> Result<ExitCode> {
    let bundle = Bundle::new(&a.checkpoint);
    let tk = bundle.load_tokenizer().with_context(|| format!("--checkpoint {}", a.checkpoint.display()))?;
    let mut stages = serde_json::Map::new();
    for kind in STAGES {
        if !bundle.has_stage(kind) {
            continue;
        }
        // Each stage's own config type validates its model section.
        let cfg = if kind == "planner" {
            serde_json::to_value(bundle.read_config_as::<plandiff_train::PlannerModel>(kind)?)?
        } else if kind == "diffusion" {
            serde_json::to_value(bundle.read_config_as::<plandiff_train::DiffusionModel>(kind)?)?
        } else {
            serde_json::to_value(bundle.read_config(kind)?)?
        };
        let dir = bundle.stage_dir(kind);
        let (tensors, params) = count_params(&dir.join("model.safetensors"))?;
        let size: u64 = std::fs::metadata(dir.join("model.safetensors")).map(|m| m.len()).unwrap_or(0);
        stages.insert(
            kind.into(),
            json!({"config": cfg, "tensors": tensors, "parameters": params, "model_bytes": size,
                   "tokenizer_matches": cfg["tokenizer_hash"].as_str() == Some(tk.hash()),
                   "resumable": dir.join("trainer_state.json").exists()}),
        );
    }
    if stages.is_empty() {
        anyhow::bail!(
            "--checkpoint {}: the bundle holds no model yet; train one with `plandiff train ar`",
            a.checkpoint.display()
        );
    }
    if a.json {
        let out = json!({"bundle": a.checkpoint.display().to_string(),
            "tokenizer": {"vocab_size": tk.vocab_size(), "hash": tk.hash(), "special": tk.special()},
            "stages": stages});
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("bundle {}", a.checkpoint.display());
    println!("  tokenizer: {} tokens, sha256 {}", tk.vocab_size(), &tk.hash()[..16]);
    // Where the weights came from (the first stage that says; every stage of a recipe shares it).
    let prov = |key: &str| stages.iter().map(|(_, s)| &s["config"]["provenance"][key]).find(|v| !v.is_null());
    if let Some(c) = prov("corpus").and_then(|c| c.as_array()) {
        let files: Vec<&str> = c.iter().filter_map(|f| f.as_str()).collect();
        println!("  trained on: {}", files.join(", "));
    }
    if let Some(e) = prov("export") {
        println!(
            "  weights stored as {} (exported from {})",
            e["dtype"].as_str().unwrap_or("?"),
            e["from"].as_str().unwrap_or("?")
        );
    }
    for (kind, s) in &stages {
        let m = &s["config"]["model"];
        let p = &s["config"]["provenance"];
        if kind == "planner" {
            let d = &m["denoiser"];
            println!(
                "  planner: {} parameters (d_model {}, {} layers, {} slots of d_latent {}; {} schedule, predicts {}, {} {} steps by default), {} steps, val loss {}",
                s["parameters"], d["d_model"], d["n_layers"], d["max_slots"], d["d_latent"],
                m["schedule"]["beta_schedule"].as_str().unwrap_or("?"),
                m["schedule"]["prediction_type"].as_str().unwrap_or("?"),
                m["sampling"]["sampler"].as_str().unwrap_or("?"),
                m["sampling"]["steps"], p["steps"], loss(&p["val_loss"])
            );
            continue;
        }
        if kind == "diffusion" {
            let d = &m["model"];
            println!(
                "  diffusion: {} parameters (d_emb {}, {} positions, d_model {}, {} layers; {} schedule, {} {} steps by default), {} steps, val loss {}",
                s["parameters"], d["d_emb"], d["seq_len"], d["d_model"], d["n_layers"],
                m["schedule"]["beta_schedule"].as_str().unwrap_or("?"),
                m["sampling"]["sampler"].as_str().unwrap_or("?"), m["sampling"]["steps"], p["steps"], loss(&p["val_loss"])
            );
            continue;
        }
        println!(
            "  {kind}: {} parameters (d_model {}, {} layers, {} heads, context {}), {} steps, {} tokens seen, train loss {}, val loss {}{}",
            s["parameters"], m["d_model"], m["n_layers"], m["n_heads"], m["max_seq_len"], p["steps"], p["tokens_seen"],
            loss(&p["train_loss"]), loss(&p["val_loss"]),
            if s["tokenizer_matches"].as_bool() == Some(true) { "" } else { "  [TOKENIZER MISMATCH]" }
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// A loss from a config.json (null before the first evaluation).
fn loss(v: &serde_json::Value) -> String {
    v.as_f64().map_or_else(|| "-".to_string(), |x| format!("{x:.4}"))
}
