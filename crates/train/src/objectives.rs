//! The training objectives' settings that a stage's config.json records (`[planner.objective]`,
//! `[masked.objective]` of a run config). They are training code's: the bundle's format carries
//! them as `plandiff_bundle::Objective`s, and inference reads them as JSON.

use crate::{Result, TrainError};
use plandiff_bundle::{MaskedModel, Objective, PlannerModel};
use serde::{Deserialize, Serialize};

/// The planner's config file as training reads and writes it.
pub type PlannerConfig = PlannerModel<PlannerObjective>;
/// The masked model's config file as training reads and writes it.
pub type MaskedConfig = MaskedModel<MaskedObjective>;

/// A loaded config's objective (JSON, as inference reads it) as training's type.
pub fn typed<O: Objective>(objective: &serde_json::Value, stage: &str) -> Result<O> {
    let o: O = serde_json::from_value(objective.clone())
        .map_err(|e| TrainError::Invalid(format!("the {stage} config.json's objective: {e}")))?;
    o.validate().map_err(|e| TrainError::Invalid(format!("the {stage} config.json's objective: {e}")))?;
    Ok(o)
}

/// Which slots are known while training, and the guidance / self-conditioning dropout.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlannerObjective {
    /// Share of windows trained with no known slot (classifier-free guidance's
    /// unconditional model).
    pub cfg_dropout: f64,
    /// Of the other windows, the share whose known slots are a prefix (continuing a text);
    /// the rest get a random subset (editing a sentence in the middle).
    pub prefix_prob: f64,
    /// Share of steps that first predict x0 without gradient and feed it back
    /// (self-conditioning; needs `model.self_condition`).
    pub self_condition_prob: f64,
}

impl Objective for PlannerObjective {
    fn validate(&self) -> std::result::Result<(), String> {
        let p = |x: f64| (0.0..=1.0).contains(&x);
        if !p(self.cfg_dropout) || !p(self.prefix_prob) || !p(self.self_condition_prob) {
            return Err("probabilities must be in [0, 1]".into());
        }
        Ok(())
    }
}

/// The masked objective's settings (MDLM / LLaDA).
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

impl Objective for MaskedObjective {
    fn validate(&self) -> std::result::Result<(), String> {
        if !(self.eps > 0.0 && self.eps < 1.0) {
            return Err("eps must be in (0, 1)".into());
        }
        if !(0.0..=1.0).contains(&self.prompt_prob) || !(0.0..=1.0).contains(&self.random_length_prob) {
            return Err("prompt_prob and random_length_prob must be in [0, 1]".into());
        }
        if !(0.0..=1.0).contains(&self.substitute_prob) {
            return Err("substitute_prob must be in [0, 1]".into());
        }
        Ok(())
    }
}
