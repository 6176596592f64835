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

/// A training objective's settings as a stage's config.json records them. The concrete types
/// are `plandiff-train`'s (the objectives are training code); the format carries them, and
/// inference reads them as JSON (`serde_json::Value`, the default), which checks nothing.
pub trait Objective: Serialize + serde::de::DeserializeOwned + Clone + std::fmt::Debug + PartialEq {
    /// The settings' own checks, in words.
    fn validate(&self) -> Result<(), String>;
}

impl Objective for serde_json::Value {
    fn validate(&self) -> Result<(), String> {
        Ok(())
    }
}

/// The `model` section of a stage's config.json: the decoder's config for `ar` and
/// `autoencoder`, the planner's for `planner`, the text denoiser's for `diffusion`.
pub trait ModelConfig: Serialize + serde::de::DeserializeOwned + Clone {
    fn validate(&self) -> Result<(), ModelConfigError>;
    /// A lower bound of the parameters a model of this config has (embeddings and the
    /// blocks' projections), checked against the weights' header before anything is built.
    fn min_parameters(&self) -> u128;
}

/// Parameters of `n` transformer blocks of width `d` and MLP width `d_ff`, at least (the
/// attention's four projections and the MLP's two).
pub fn blocks_min_parameters(n: i64, d: i64, d_ff: i64) -> u128 {
    let (n, d, f) = (n.max(0) as u128, d.max(0) as u128, d_ff.max(0) as u128);
    n.saturating_mul(
        4u128.saturating_mul(d).saturating_mul(d).saturating_add(2u128.saturating_mul(d).saturating_mul(f)),
    )
}

/// `rows x cols` parameters (an embedding table), saturating.
pub fn table(rows: i64, cols: i64) -> u128 {
    (rows.max(0) as u128).saturating_mul(cols.max(0) as u128)
}

impl ModelConfig for DecoderConfig {
    fn validate(&self) -> Result<(), ModelConfigError> {
        Ok(DecoderConfig::validate(self)?)
    }

    fn min_parameters(&self) -> u128 {
        // Learned positions are a table of max_seq_len rows; rotary ones have no weights.
        let positions = if self.rotary.is_some() { 0 } else { table(self.max_seq_len, self.shape.d_model) };
        // A plan decoder's null plan: `max_slots x d_latent`.
        let plan = self.plan.map_or(0, |p| table(p.max_slots, p.d_latent));
        table(self.vocab_size, self.shape.d_model)
            .saturating_add(positions)
            .saturating_add(plan)
            .saturating_add(blocks_min_parameters(self.shape.n_layers, self.shape.d_model, self.shape.d_ff))
    }
}

/// `BUNDLE/<stage>/config.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, bound(deserialize = "M: serde::de::DeserializeOwned"))]
pub struct StageConfigFile<M = DecoderConfig> {
    pub format_version: u32,
    pub kind: String,
    pub model: M,
    /// The jointly trained sentence encoder of autoencoders from before issue 39 (read, never
    /// used: their plans are `plan_space`'s; a bundle whose plans were that encoder's is
    /// refused at load).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoder: Option<serde_json::Value>,
    /// The frozen sentence encoder's plan space (stage `autoencoder`): which encoder made the
    /// plans, and its normaliser. The encoder's weights are not copied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan_space: Option<plandiff_sentence::PlanSpace>,
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
            plan_space: None,
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
    /// Ranks the run trained on (`train.batch_size` is per rank); 1 before distributed
    /// training existed.
    #[serde(default = "one_rank")]
    pub world_size: usize,
}

fn one_rank() -> usize {
    1
}
