//! Stage `diffusion`'s model (docs/design.md, section 3.5): Diffusion-LM over token embeddings, with
//! its schedule and stored sampling defaults. The training objective lives in
//! `plandiff-train`.

use crate::format::ModelConfig;
use crate::store::Bundle;
use crate::weights::load_weights;
use crate::{stage, BundleError, ModelConfigError, Result};
use plandiff_data::TextTokenizer;
use plandiff_diffusion::{NoiseSchedule, PredictionType, SamplerKind, ScheduleConfig};
use plandiff_embedding::{TextDiffusion, TextDiffusionConfig};
use serde::{Deserialize, Serialize};
use tch::{nn, Device};

/// Sampling defaults stored with the model; each has a flag.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TextSamplingDefaults {
    pub steps: usize,
    pub sampler: SamplerKind,
    pub eta: f64,
    /// The clamping trick.
    pub clamp: bool,
}

/// The `model` section of `BUNDLE/diffusion/config.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiffusionModel {
    pub model: TextDiffusionConfig,
    pub schedule: ScheduleConfig,
    /// Share of steps that first predict x0 without gradient and feed it back.
    pub self_condition_prob: f64,
    pub sampling: TextSamplingDefaults,
}

impl ModelConfig for DiffusionModel {
    fn validate(&self) -> std::result::Result<(), ModelConfigError> {
        let rule = |m: &str| Err(ModelConfigError::Rule(m.into()));
        self.model.validate()?;
        if self.schedule.prediction_type != PredictionType::Sample {
            return rule("diffusion: prediction_type must be \"sample\" (the model predicts x0)");
        }
        NoiseSchedule::new(self.schedule.clone())?;
        if self.sampling.steps == 0 || !(0.0..=1.0).contains(&self.sampling.eta) {
            return rule("diffusion sampling: steps must be >= 1 and eta in [0, 1]");
        }
        if !(0.0..=1.0).contains(&self.self_condition_prob) {
            return rule("diffusion: self_condition_prob must be in [0, 1]");
        }
        Ok(())
    }

    fn min_parameters(&self) -> u128 {
        let m = &self.model;
        crate::format::table(m.vocab_size, m.d_emb)
            .saturating_add(crate::format::table(m.seq_len, m.shape.d_model))
            .saturating_add(crate::format::blocks_min_parameters(m.shape.n_layers, m.shape.d_model, m.shape.d_ff))
    }
}

/// The text denoiser with its schedule and config.
pub struct DiffusionBundle {
    pub model: TextDiffusion,
    pub schedule: NoiseSchedule,
    pub config: DiffusionModel,
}

impl DiffusionBundle {
    /// A fresh (or to-be-loaded) model under `p`.
    pub fn new(p: nn::Path, config: DiffusionModel) -> std::result::Result<Self, ModelConfigError> {
        config.validate()?;
        let model = TextDiffusion::new(p, &config.model);
        let schedule = NoiseSchedule::new(config.schedule.clone())?;
        Ok(Self { model, schedule, config })
    }
}

/// A loaded `BUNDLE/diffusion`.
pub struct LoadedDiffusion {
    pub diffusion: DiffusionBundle,
    pub vs: nn::VarStore,
    pub tokenizer: TextTokenizer,
}

/// Loads `BUNDLE/diffusion` with its tokenizer (hash and vocabulary checked).
pub fn load_diffusion(bundle: &Bundle, device: Device) -> Result<LoadedDiffusion> {
    let bundle = Bundle::open(bundle.root())?;
    let cfg = bundle.read_config_as::<DiffusionModel>(stage::DIFFUSION)?;
    let tokenizer = bundle.load_tokenizer()?;
    bundle.check_tokenizer(&tokenizer, stage::DIFFUSION, &cfg.tokenizer_hash, Some(cfg.model.model.vocab_size))?;
    let path = bundle.stage_dir(stage::DIFFUSION).join("config.json");
    crate::weights::check_fits(&bundle.weights_path(stage::DIFFUSION), cfg.model.min_parameters())?;
    let mut vs = nn::VarStore::new(device);
    let diffusion = DiffusionBundle::new(vs.root(), cfg.model).map_err(|source| BundleError::Model { path, source })?;
    load_weights(&mut vs, &bundle.weights_path(stage::DIFFUSION))?;
    Ok(LoadedDiffusion { diffusion, vs, tokenizer })
}
