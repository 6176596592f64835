//! The format of a stage's files: `config.json` ([`StageConfigFile`], with its
//! [`Provenance`]) and a training checkpoint's `trainer_state.json` ([`TrainerState`]).

use crate::settings::{PlanSection, TrainConfig};
use crate::ModelConfigError;
use plandiff_decoder::DecoderConfig;
use serde::{Deserialize, Serialize};

/// The version every `config.json` and `trainer_state.json` carries; a reader refuses others.
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
/// `autoencoder`, the planner's for `planner`, the text denoiser's for `diffusion`.
pub trait ModelConfig: Serialize + serde::de::DeserializeOwned + Clone {
    fn validate(&self) -> Result<(), ModelConfigError>;
}

impl ModelConfig for DecoderConfig {
    fn validate(&self) -> Result<(), ModelConfigError> {
        Ok(DecoderConfig::validate(self)?)
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

impl<M> StageConfigFile<M> {
    /// A config of the current format.
    pub fn new(kind: &str, model: M, tokenizer_hash: &str, provenance: Provenance) -> Self {
        Self {
            format_version: FORMAT_VERSION,
            kind: kind.into(),
            model,
            encoder: None,
            tokenizer_hash: tokenizer_hash.into(),
            provenance,
        }
    }
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
