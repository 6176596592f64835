//! `plandiff export`: a compact copy of a bundle for shipping: weights stored in fp16 or bf16
//! (loading restores the f32 compute dtype: `load_weights` copies into f32 variables), no
//! optimizer state or trainer state (an exported bundle generates and evaluates; it does not
//! resume training). The planner's fingerprint of the autoencoder is updated to the exported
//! autoencoder's weights, so the pair still loads together.

use crate::registry::STAGES;
use crate::{Result, TrainError};
use plandiff_bundle::fsutil::write_json;
use plandiff_bundle::{read_weights, Bundle, ExportProvenance};
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
    type Err = TrainError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "f32" | "float32" => Ok(Self::F32),
            "f16" | "float16" | "fp16" => Ok(Self::F16),
            "bf16" | "bfloat16" => Ok(Self::Bf16),
            _ => Err(TrainError::Invalid(format!("unknown dtype `{s}`; use f16, bf16 or f32"))),
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

fn file_len(p: &Path) -> u64 {
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

/// A stage's config.json as exported: provenance completed (corpus and plan settings from a
/// checkpoint that predates them) and stamped with the export.
fn exported_config(dir: &Path, from: &Path, kind: StorageKind) -> Result<serde_json::Value> {
    let path = dir.join("config.json");
    let text = std::fs::read_to_string(&path).map_err(|e| TrainError::io(&path, e))?;
    let mut cfg: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
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
        let export = ExportProvenance { from: from.display().to_string(), dtype: kind.name().into() };
        prov.insert("export".into(), serde_json::to_value(export).map_err(TrainError::json)?);
    }
    Ok(cfg)
}

/// Copies the stages of `from` into `to` with weights stored as `kind`.
/// Whether `dir` is an earlier export: a tokenizer, stages that each carry
/// `provenance.export`, and nothing to resume or prepare from.
fn is_exported_bundle(dir: &Path) -> bool {
    let b = Bundle::new(dir);
    let stages: Vec<_> = STAGES.iter().filter(|s| b.has_stage(s.name())).collect();
    let exported = |name: &str| {
        let d = b.stage_dir(name);
        let cfg = std::fs::read_to_string(d.join("config.json")).ok();
        let cfg = cfg.and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok());
        cfg.is_some_and(|c| !c["provenance"]["export"].is_null()) && !d.join("trainer_state.json").exists()
    };
    b.tokenizer_path().exists()
        && !dir.join("stats.json").exists()
        && !stages.is_empty()
        && stages.iter().all(|s| exported(s.name()))
}

/// Copies the stages of `from` into `to` with weights stored as `kind`. The whole bundle is
/// written in a staging folder and swapped in, so a failure or a kill leaves `to` as it was.
/// `to` must be new, empty or an earlier export, unless `force`.
pub fn export_bundle(from: &Path, to: &Path, kind: StorageKind, force: bool) -> Result<ExportReport> {
    let src = Bundle::new(from);
    let tokenizer = src.load_tokenizer()?;
    let same = match (from.canonicalize(), to.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if same {
        return Err(TrainError::Invalid("--out is the bundle itself; export into another folder".into()));
    }
    if !force && !plandiff_data::is_empty_dir(to) && !is_exported_bundle(to) {
        return Err(TrainError::Invalid(format!(
            "{} holds files that `plandiff export` did not write (a trained bundle, prepared data?); choose another --out, or pass --force to replace the folder",
            to.display()
        )));
    }
    let staged = plandiff_data::StagedDir::begin(to)?;
    let dst = Bundle::new(staged.path());
    dst.write_tokenizer(&tokenizer)?;
    // The training corpus's word list travels with the models (the invented-word check).
    let words = from.join(plandiff_bundle::WORDS_FILE);
    if words.is_file() {
        std::fs::copy(&words, staged.path().join(plandiff_bundle::WORDS_FILE))
            .map_err(|e| TrainError::io(&words, e))?;
    }
    let mut stages = Vec::new();
    // In training order: the planner records the exported autoencoder's fingerprint.
    for stage in STAGES.iter().copied().filter(|s| src.has_stage(s.name())) {
        let dir = src.stage_dir(stage.name());
        let mut cfg = exported_config(&dir, from, kind)?;
        stage.on_export(&mut cfg, &dst).map_err(|e| TrainError::Invalid(format!("{}: {e}", from.display())))?;
        let weights = dir.join("model.safetensors");
        let converted: Vec<(String, Tensor)> = read_weights(&weights)?
            .into_iter()
            .map(|(n, t)| {
                let t = if t.is_floating_point() { t.to_kind(kind.kind()) } else { t };
                (n, t)
            })
            .collect();
        let out = dst.save_stage(stage.name(), |d| -> Result<()> {
            write_json(&d.join("config.json"), &cfg)?;
            Tensor::write_safetensors(&converted, d.join("model.safetensors"))?;
            Ok(())
        })?;
        stages.push(ExportedStage {
            stage: stage.name().to_string(),
            bytes_before: file_len(&weights),
            bytes_after: file_len(&out.join("model.safetensors")),
        });
    }
    if stages.is_empty() {
        return Err(TrainError::Invalid(format!("{}: the bundle holds no model to export", from.display())));
    }
    staged.commit()?;
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
