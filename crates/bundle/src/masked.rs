//! Stage `masked`'s model: the bidirectional denoiser of absorbing-state diffusion (MDLM /
//! LLaDA), its objective's settings and stored sampling defaults. The training loop lives in
//! `plandiff-train`, the sampler in `plandiff-masked`.

use crate::format::ModelConfig;
use crate::store::Bundle;
use crate::weights::load_weights;
use crate::{stage, ModelConfigError, Result};
use plandiff_data::TextTokenizer;
use plandiff_masked::{MaskedLm, MaskedLmConfig, Remasking};
use serde::{Deserialize, Serialize};
use tch::{nn, Device};

/// The objective's settings (MDLM / LLaDA).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaskedObjective {
    /// Smallest mask probability: `p(t) = (1 - eps) t + eps`.
    pub eps: f64,
    /// Share of rows whose first tokens (a random prompt) stay unmasked.
    pub prompt_prob: f64,
    /// Share of batches cut to a random length, so lengths vary (LLaDA: 1%).
    pub random_length_prob: f64,
    /// Realistic corruption (issue 26): the share of the visible tokens (not masked, past the
    /// prompt, not special) that are picked and must be predicted as they were; of those a
    /// quarter stay, a quarter become a random token, a quarter another token of the row (the
    /// wrong name), a quarter one of the token's nearest neighbours in the ar model's
    /// embeddings ("dog" -> "cat"), so the model finds and fixes plausible errors in text it
    /// reads. 0 (the default): the plain MDLM objective.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub substitute_prob: f64,
}

fn is_zero(x: &f64) -> bool {
    *x == 0.0
}

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

/// The `model` section of `BUNDLE/masked/config.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaskedModel {
    pub model: MaskedLmConfig,
    pub objective: MaskedObjective,
    pub sampling: MaskedSamplingDefaults,
}

impl ModelConfig for MaskedModel {
    fn validate(&self) -> std::result::Result<(), ModelConfigError> {
        let rule = |m: &str| Err(ModelConfigError::Rule(m.into()));
        self.model.validate()?;
        let o = &self.objective;
        if !(o.eps > 0.0 && o.eps < 1.0) {
            return rule("masked objective: eps must be in (0, 1)");
        }
        if !(0.0..=1.0).contains(&o.prompt_prob) || !(0.0..=1.0).contains(&o.random_length_prob) {
            return rule("masked objective: prompt_prob and random_length_prob must be in [0, 1]");
        }
        if !(0.0..=1.0).contains(&o.substitute_prob) {
            return rule("masked objective: substitute_prob must be in [0, 1]");
        }
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
