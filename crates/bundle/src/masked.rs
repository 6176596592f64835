//! Stage `masked`'s config file and loader: the bidirectional denoiser of absorbing-state
//! diffusion (MDLM / LLaDA) and its stored sampling defaults. The objective's settings and the
//! training loop are `plandiff-train`'s, the sampler `plandiff-masked`'s.

use crate::format::{ModelConfig, Objective};
use crate::store::Bundle;
use crate::weights::load_weights;
use crate::{stage, ModelConfigError, Result};
use plandiff_data::TextTokenizer;
use plandiff_masked::{MaskedLm, MaskedLmConfig, Remasking};
use serde::{Deserialize, Serialize};
use tch::{nn, Device};

/// Sampling defaults stored with the model; each has a flag.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaskedSamplingDefaults {
    pub steps: usize,
    /// Positions per semi-autoregressive block (absent: one block).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_length: Option<usize>,
    pub remasking: Remasking,
}

/// The `model` section of `BUNDLE/masked/config.json`; `O` the objective's settings
/// (`plandiff_train::objectives::MaskedObjective` when training, JSON when loading to sample).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, bound(deserialize = "O: serde::de::DeserializeOwned"))]
pub struct MaskedModel<O = serde_json::Value> {
    pub model: MaskedLmConfig,
    pub objective: O,
    pub sampling: MaskedSamplingDefaults,
}

impl MaskedModel {
    /// Whether the model was trained to read errors in view (its objective substituted
    /// visible tokens: `substitute_prob` above 0).
    pub fn reads_visible(&self) -> bool {
        self.objective.get("substitute_prob").and_then(serde_json::Value::as_f64).is_some_and(|q| q > 0.0)
    }
}

impl<O: Objective> ModelConfig for MaskedModel<O> {
    fn validate(&self) -> std::result::Result<(), ModelConfigError> {
        let rule = |m: &str| Err(ModelConfigError::Rule(m.into()));
        self.model.validate()?;
        self.objective.validate().map_err(|e| ModelConfigError::Rule(format!("masked objective: {e}")))?;
        if self.sampling.steps == 0 || self.sampling.block_length == Some(0) {
            return rule("masked sampling: steps and block_length must be >= 1");
        }
        Ok(())
    }

    fn min_parameters(&self) -> u128 {
        let m = &self.model;
        crate::format::table(m.vocab_size + 1, m.shape.d_model)
            .saturating_add(crate::format::table(m.seq_len, m.shape.d_model))
            .saturating_add(crate::format::blocks_min_parameters(m.shape.n_layers, m.shape.d_model, m.shape.d_ff))
    }
}

/// A loaded `BUNDLE/masked`.
pub struct LoadedMasked {
    pub model: MaskedLm,
    pub config: MaskedModel,
    pub vs: nn::VarStore,
    pub tokenizer: TextTokenizer,
}

/// Loads `BUNDLE/masked` with its tokenizer (hash and vocabulary checked).
pub fn load_masked(bundle: &Bundle, device: Device) -> Result<LoadedMasked> {
    let bundle = Bundle::open(bundle.root())?;
    let cfg = bundle.read_config_as::<MaskedModel>(stage::MASKED)?;
    let tokenizer = bundle.load_tokenizer()?;
    bundle.check_tokenizer(&tokenizer, stage::MASKED, &cfg.tokenizer_hash, Some(cfg.model.model.vocab_size))?;
    crate::weights::check_fits(&bundle.weights_path(stage::MASKED), cfg.model.min_parameters())?;
    let mut vs = nn::VarStore::new(device);
    let model = MaskedLm::new(vs.root(), &cfg.model.model);
    load_weights(&mut vs, &bundle.weights_path(stage::MASKED))?;
    Ok(LoadedMasked { model, config: cfg.model, vs, tokenizer })
}
