//! `plandiff export`: a compact copy of a bundle for shipping: weights stored in fp16 or bf16
//! (loading restores the f32 compute dtype: `load_weights` copies into f32 variables), no
//! optimizer state or trainer state (an exported bundle generates and evaluates; it does not
//! resume training). The planner's fingerprint of the autoencoder is updated to the exported
//! autoencoder's weights, so the pair still loads together.

use crate::bundle::Bundle;
use crate::fsutil;
use crate::planner::file_sha256;
use crate::{Result, TrainError};
use serde::Serialize;
use std::path::Path;
use tch::{Kind, Tensor};

/// Storage dtype of exported weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageKind {
    F32,
    F16,
    Bf16,
}

impl std::str::FromStr for StorageKind {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "f32" | "float32" => Ok(Self::F32),
            "f16" | "float16" | "fp16" => Ok(Self::F16),
            "bf16" | "bfloat16" => Ok(Self::Bf16),
            _ => Err(format!("unknown dtype `{s}`; use f16, bf16 or f32")),
        }
    }
}

impl StorageKind {
    pub fn name(self) -> &'static str {
        match self {
            Self::F32 => "f32",
            Self::F16 => "f16",
            Self::Bf16 => "bf16",
        }
    }

    fn kind(self) -> Kind {
        match self {
            Self::F32 => Kind::Float,
            Self::F16 => Kind::Half,
            Self::Bf16 => Kind::BFloat16,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ExportedStage {
    pub stage: String,
    pub bytes_before: u64,
    pub bytes_after: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ExportReport {
    pub stages: Vec<ExportedStage>,
    pub total_bytes: u64,
}

const STAGES: [&str; 4] = ["ar", "autoencoder", "planner", "diffusion"];

fn file_len(p: &Path) -> u64 {
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

/// Copies the stages of `from` into `to` with weights stored as `kind`.
pub fn export_bundle(from: &Path, to: &Path, kind: StorageKind) -> Result<ExportReport> {
    let src = Bundle::new(from);
    let tokenizer = src.load_tokenizer()?;
    let same = match (from.canonicalize(), to.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if same {
        return Err(TrainError::Invalid("--out is the bundle itself; export into another folder".into()));
    }
    let dst = Bundle::new(to);
    dst.write_tokenizer(&tokenizer)?;
    let mut stages = Vec::new();
    // The autoencoder first: the planner records the exported autoencoder's fingerprint.
    for stage in STAGES.iter().copied().filter(|s| src.has_stage(s)) {
        let dir = src.stage_dir(stage);
        let cfg_text =
            std::fs::read_to_string(dir.join("config.json")).map_err(|e| TrainError::io(dir.join("config.json"), e))?;
        let mut cfg: serde_json::Value = serde_json::from_str(&cfg_text).map_err(|e| {
            TrainError::Invalid(format!("{}: not a valid model config ({e}); the bundle is damaged", dir.display()))
        })?;
        if let Some(prov) = cfg.get_mut("provenance").and_then(|p| p.as_object_mut()) {
            // A stage trained before `corpus` was recorded gets it from its data's stats.json.
            if !prov.contains_key("corpus") {
                let data = prov.get("data").and_then(|d| d.as_str()).map(std::path::PathBuf::from);
                if let Some(stats) = data.and_then(|d| plandiff_data::PrepareStats::load(&d).ok()) {
                    prov.insert("corpus".into(), serde_json::json!(stats.inputs));
                }
            }
            // Likewise the plan settings, which a training checkpoint keeps in trainer_state.json.
            if !prov.contains_key("plan") {
                let state = std::fs::read_to_string(dir.join("trainer_state.json")).ok();
                let plan =
                    state.and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok()).map(|t| t["plan"].clone());
                if let Some(plan) = plan.filter(|p| !p.is_null()) {
                    prov.insert("plan".into(), plan);
                }
            }
            let export =
                crate::bundle::ExportProvenance { from: from.display().to_string(), dtype: kind.name().into() };
            prov.insert("export".into(), serde_json::to_value(export).map_err(|e| TrainError::Invalid(e.to_string()))?);
        }
        if stage == "planner" {
            if !dst.has_stage("autoencoder") {
                return Err(TrainError::Invalid(format!(
                    "{}: the planner needs its autoencoder, which the bundle lacks",
                    from.display()
                )));
            }
            let sha = file_sha256(&dst.stage_dir("autoencoder").join("model.safetensors"))?;
            cfg["model"]["autoencoder_sha256"] = serde_json::Value::String(sha);
        }
        let weights = dir.join("model.safetensors");
        let tensors = crate::bundle::read_weights(&weights)?;
        let converted: Vec<(String, Tensor)> = tensors
            .into_iter()
            .map(|(n, t)| {
                let t = if t.is_floating_point() { t.to_kind(kind.kind()) } else { t };
                (n, t)
            })
            .collect();
        let out = dst.save_stage(stage, |d| {
            let j = serde_json::to_string_pretty(&cfg).map_err(|e| TrainError::Invalid(e.to_string()))?;
            fsutil::write_atomic(&d.join("config.json"), j.as_bytes())?;
            Tensor::write_safetensors(&converted, d.join("model.safetensors"))?;
            Ok(())
        })?;
        stages.push(ExportedStage {
            stage: stage.to_string(),
            bytes_before: file_len(&weights),
            bytes_after: file_len(&out.join("model.safetensors")),
        });
    }
    if stages.is_empty() {
        return Err(TrainError::Invalid(format!("{}: the bundle holds no model to export", from.display())));
    }
    let total_bytes = walk_size(to);
    Ok(ExportReport { stages, total_bytes })
}

fn walk_size(p: &Path) -> u64 {
    let mut n = 0;
    if let Ok(rd) = std::fs::read_dir(p) {
        for e in rd.flatten() {
            let path = e.path();
            n += if path.is_dir() { walk_size(&path) } else { file_len(&path) };
        }
    }
    n
}
