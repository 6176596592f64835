//! Model bundles (design section 5):
//!
//! ```text
//! BUNDLE/tokenizer.json
//! BUNDLE/ar/config.json  model.safetensors  [optimizer.safetensors trainer_state.json]
//! ```
//!
//! A stage folder is written whole into `BUNDLE/.ar.staging`, every file fsynced, then
//! swapped in by two renames (`ar -> .ar.old`, `.ar.staging -> ar`), so a crash or a full
//! disk never leaves a half-written checkpoint: readers find either the old or the new one
//! (and fall back to `.ar.old` if the crash fell between the renames).

use crate::adamw::first_line;
use crate::config::{PlanSection, TrainConfig};
use crate::{fsutil, Result, TrainError};
use plandiff_data::TextTokenizer;
use plandiff_decoder::{Decoder, DecoderConfig};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use tch::{nn, Device, Tensor};

pub const FORMAT_VERSION: u32 = 1;

/// Where a model came from.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    pub plandiff_version: String,
    pub steps: u64,
    pub tokens_seen: u64,
    pub data: String,
    pub seed: u64,
    pub train_loss: Option<f64>,
    pub val_loss: Option<f64>,
    pub wall_seconds: f64,
    pub train: Option<TrainConfig>,
    /// The corpus files the prepared data was made from (its `stats.json`), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub corpus: Option<Vec<String>>,
    /// How the decoder learned to read plans (stage `autoencoder`): dropouts, noise, warm start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<PlanSection>,
    /// Set by `plandiff export`: the bundle it was exported from and the storage dtype.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub export: Option<ExportProvenance>,
}

/// `provenance.export` of an exported stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExportProvenance {
    pub from: String,
    pub dtype: String,
}

/// The `model` section of a stage's config.json: the decoder's config for `ar` and
/// `autoencoder`, the planner's for `planner`.
pub trait ModelConfig: Serialize + serde::de::DeserializeOwned + Clone {
    fn validate(&self) -> std::result::Result<(), String>;
}

impl ModelConfig for DecoderConfig {
    fn validate(&self) -> std::result::Result<(), String> {
        DecoderConfig::validate(self).map_err(|e| e.to_string())
    }
}

/// `BUNDLE/<stage>/config.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, bound(deserialize = "M: serde::de::DeserializeOwned"))]
pub struct StageConfigFile<M = DecoderConfig> {
    pub format_version: u32,
    pub kind: String,
    pub model: M,
    /// The sentence encoder (stage `autoencoder`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoder: Option<plandiff_planner::EncoderConfig>,
    pub tokenizer_hash: String,
    pub provenance: Provenance,
}

/// `BUNDLE/<stage>/trainer_state.json`: everything besides weights and moments that a
/// resumed run needs. Data order and dropout noise are pure functions of `(seed, step)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainerState {
    pub format_version: u32,
    pub step: u64,
    pub tokens_seen: u64,
    pub seed: u64,
    pub train: TrainConfig,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<PlanSection>,
    pub data: String,
    pub elapsed_seconds: f64,
    pub last_train_loss: Option<f64>,
    pub last_val_loss: Option<f64>,
}

pub struct Bundle {
    root: PathBuf,
}

fn invalid(m: String) -> TrainError {
    TrainError::Invalid(m)
}

impl Bundle {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn tokenizer_path(&self) -> PathBuf {
        self.root.join("tokenizer.json")
    }

    /// The live folder of a stage (or the pre-swap one if a crash fell between renames).
    pub fn stage_dir(&self, kind: &str) -> PathBuf {
        let live = self.root.join(kind);
        let old = self.root.join(format!(".{kind}.old"));
        if !live.exists() && old.exists() {
            return old;
        }
        live
    }

    pub fn has_stage(&self, kind: &str) -> bool {
        self.stage_dir(kind).join("config.json").exists()
    }

    pub fn load_tokenizer(&self) -> Result<TextTokenizer> {
        let p = self.tokenizer_path();
        if !p.exists() {
            return Err(invalid(format!(
                "{}: not found; is {} a plandiff bundle (made by `plandiff train`)?",
                p.display(),
                self.root.display()
            )));
        }
        Ok(TextTokenizer::from_file(&p)?)
    }

    pub fn write_tokenizer(&self, tk: &TextTokenizer) -> Result<()> {
        std::fs::create_dir_all(&self.root).map_err(|e| {
            invalid(format!(
                "--out {}: cannot create the bundle folder ({e}); choose a writable path",
                self.root.display()
            ))
        })?;
        fsutil::write_atomic(&self.tokenizer_path(), tk.to_json()?.as_bytes())
    }

    pub fn read_config(&self, kind: &str) -> Result<StageConfigFile> {
        self.read_config_as(kind)
    }

    /// [`Bundle::read_config`] for any stage's model section.
    pub fn read_config_as<M: ModelConfig>(&self, kind: &str) -> Result<StageConfigFile<M>> {
        let p = self.stage_dir(kind).join("config.json");
        let text = std::fs::read_to_string(&p).map_err(|e| {
            invalid(format!(
                "{}: {e}; the bundle has no `{kind}` model (train it with `plandiff train {kind}`)",
                p.display()
            ))
        })?;
        let c: StageConfigFile<M> = serde_json::from_str(&text).map_err(|e| {
            invalid(format!(
                "{}: not a valid model config ({e}); the bundle is damaged, retrain or restore it",
                p.display()
            ))
        })?;
        if c.format_version != FORMAT_VERSION {
            return Err(invalid(format!(
                "{}: format_version {} but this plandiff reads {FORMAT_VERSION}; use a matching plandiff or retrain",
                p.display(),
                c.format_version
            )));
        }
        if c.kind != kind {
            return Err(invalid(format!("{}: kind is `{}`, expected `{kind}`", p.display(), c.kind)));
        }
        c.model.validate().map_err(|e| invalid(format!("{}: {e}", p.display())))?;
        Ok(c)
    }

    pub fn read_trainer_state(&self, kind: &str) -> Result<TrainerState> {
        let p = self.stage_dir(kind).join("trainer_state.json");
        let text = std::fs::read_to_string(&p).map_err(|e| {
            invalid(format!("{}: {e}; nothing to resume (train without --resume to start a run)", p.display()))
        })?;
        serde_json::from_str(&text).map_err(|e| invalid(format!("{}: damaged trainer state ({e})", p.display())))
    }

    /// Loads a decoder with every check: config kind and version, tokenizer hash, tensor
    /// names and shapes.
    pub fn load_decoder(&self, kind: &str, device: Device) -> Result<LoadedDecoder> {
        if !self.root.is_dir() {
            return Err(invalid(format!(
                "{}: no such folder; point --checkpoint at a bundle made by `plandiff train`",
                self.root.display()
            )));
        }
        let config = self.read_config(kind)?;
        let tokenizer = self.load_tokenizer()?;
        if tokenizer.hash() != config.tokenizer_hash {
            return Err(invalid(format!(
                "{}: this tokenizer (hash {}) is not the one the `{kind}` model was trained with (hash {}); put the model's own tokenizer.json back in the bundle",
                self.tokenizer_path().display(),
                &tokenizer.hash()[..12],
                &config.tokenizer_hash[..config.tokenizer_hash.len().min(12)]
            )));
        }
        if tokenizer.vocab_size() as i64 != config.model.vocab_size {
            return Err(invalid(format!(
                "tokenizer has {} tokens but the model's vocab_size is {}",
                tokenizer.vocab_size(),
                config.model.vocab_size
            )));
        }
        let mut vs = nn::VarStore::new(device);
        let model = Decoder::new(vs.root(), &config.model);
        load_weights(&mut vs, &self.stage_dir(kind).join("model.safetensors"))?;
        Ok(LoadedDecoder { model, vs, config, tokenizer })
    }

    /// Writes a stage atomically: `fill` writes the files into a staging folder.
    pub fn save_stage(&self, kind: &str, fill: impl FnOnce(&Path) -> Result<()>) -> Result<PathBuf> {
        std::fs::create_dir_all(&self.root).map_err(|e| TrainError::io(&self.root, e))?;
        let staging = self.root.join(format!(".{kind}.staging"));
        let old = self.root.join(format!(".{kind}.old"));
        let live = self.root.join(kind);
        let _ = std::fs::remove_dir_all(&staging);
        std::fs::create_dir_all(&staging).map_err(|e| TrainError::io(&staging, e))?;
        let res = (|| {
            fill(&staging)?;
            for entry in std::fs::read_dir(&staging).map_err(|e| TrainError::io(&staging, e))? {
                let entry = entry.map_err(|e| TrainError::io(&staging, e))?;
                fsutil::fsync_file(&entry.path())?;
            }
            fsutil::fsync_dir(&staging)
        })();
        if let Err(e) = res {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(e);
        }
        if live.exists() {
            let _ = std::fs::remove_dir_all(&old);
            std::fs::rename(&live, &old).map_err(|e| TrainError::io(&live, e))?;
        }
        std::fs::rename(&staging, &live).map_err(|e| TrainError::io(&live, e))?;
        fsutil::fsync_dir(&self.root)?;
        let _ = std::fs::remove_dir_all(&old);
        Ok(live)
    }
}

pub struct LoadedDecoder {
    pub model: Decoder,
    pub vs: nn::VarStore,
    pub config: StageConfigFile,
    pub tokenizer: TextTokenizer,
}

/// Every tensor of a bundle's safetensors file; a missing or damaged file is one line naming it.
pub(crate) fn read_weights(path: &Path) -> Result<Vec<(String, Tensor)>> {
    if !path.exists() {
        return Err(invalid(format!("{}: not found; the bundle is incomplete, retrain or restore it", path.display())));
    }
    Tensor::read_safetensors(path).map_err(|e| {
        invalid(format!(
            "{}: corrupt or truncated ({}); retrain or restore the bundle",
            path.display(),
            first_line(&e.to_string())
        ))
    })
}

/// Copies weights from a safetensors file into `vs`, checking names and shapes.
pub fn load_weights(vs: &mut nn::VarStore, path: &Path) -> Result<()> {
    let tensors = read_weights(path)?;
    let mut file: std::collections::HashMap<String, Tensor> = tensors.into_iter().collect();
    let vars = vs.variables();
    let mut names: Vec<&String> = vars.keys().collect();
    names.sort();
    tch::no_grad(|| -> Result<()> {
        for name in names {
            let mut dst = vars[name].shallow_clone();
            let src = file.remove(name).ok_or_else(|| {
                invalid(format!("{}: no tensor `{name}`; the weights do not match config.json", path.display()))
            })?;
            if src.size() != dst.size() {
                return Err(invalid(format!(
                    "{}: tensor `{name}` has shape {:?} but config.json needs {:?}; the weights do not match the config",
                    path.display(),
                    src.size(),
                    dst.size()
                )));
            }
            dst.copy_(&src);
        }
        Ok(())
    })?;
    if let Some(extra) = file.keys().next() {
        return Err(invalid(format!(
            "{}: unexpected tensor `{extra}`; the weights do not match config.json",
            path.display()
        )));
    }
    Ok(())
}

/// Saves all variables of `vs` as safetensors (CPU copies, sorted names).
pub fn save_weights(vs: &nn::VarStore, path: &Path) -> Result<()> {
    let mut named: Vec<(String, Tensor)> =
        vs.variables().into_iter().map(|(n, t)| (n, t.to_device(Device::Cpu))).collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    Tensor::write_safetensors(&named, path)?;
    Ok(())
}
