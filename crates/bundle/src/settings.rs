//! Training settings that a bundle records (in `trainer_state.json` and in each stage's
//! provenance), so they are part of the format: `[<stage>.train]` and `[autoencoder.plan]`
//! of a run config.

use crate::{BundleError, Result};
use serde::{Deserialize, Serialize};

fn setting(section: &'static str, problem: &str) -> BundleError {
    BundleError::Setting { section, problem: problem.into() }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Sequences per micro-batch.
    pub batch_size: usize,
    /// Tokens per training sequence.
    pub seq_len: usize,
    /// Micro-batches per optimizer step.
    pub grad_accum: usize,
    /// Length of the LR schedule and of the run.
    pub max_steps: u64,
    pub lr: f64,
    pub min_lr: f64,
    pub warmup_steps: u64,
    pub weight_decay: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    /// Global gradient-norm clip; 0 disables it.
    pub grad_clip: f64,
    pub eval_interval: u64,
    pub eval_batches: usize,
    pub checkpoint_interval: u64,
    pub log_interval: u64,
    pub seed: u64,
}

impl TrainConfig {
    pub fn validate(&self) -> Result<()> {
        let bad = |m: &str| Err(setting("train", m));
        if self.batch_size == 0 || self.seq_len == 0 || self.grad_accum == 0 {
            return bad("batch_size, seq_len and grad_accum must be >= 1");
        }
        if self.batch_size > 1 << 16 || self.seq_len > 1 << 20 || self.grad_accum > 1 << 16 {
            return bad("batch_size and grad_accum must be at most 65536, seq_len at most 1048576");
        }
        if (self.batch_size as u64).saturating_mul(self.seq_len as u64) > 1 << 26 {
            return bad("batch_size x seq_len must be at most 67108864 tokens a micro-batch (use grad_accum)");
        }
        if self.max_steps == 0 {
            return bad("max_steps must be >= 1");
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) || self.min_lr < 0.0 || self.min_lr > self.lr {
            return bad("need 0 <= min_lr <= lr and lr > 0");
        }
        if !(0.0..1.0).contains(&self.beta1) || !(0.0..1.0).contains(&self.beta2) || self.eps <= 0.0 {
            return bad("beta1 and beta2 must be in [0, 1) and eps > 0");
        }
        if self.eval_interval == 0 || self.checkpoint_interval == 0 || self.log_interval == 0 {
            return bad("eval_interval, checkpoint_interval and log_interval must be >= 1");
        }
        Ok(())
    }
}

/// How the decoder learns to read plans.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanSection {
    /// Sentences per document window (the plan's slots).
    pub max_slots: i64,
    /// Share of documents trained with the null plan, so one decoder also runs as plain AR.
    pub null_plan_prob: f64,
    /// Latents get Gaussian noise of a std drawn from U(0, this) per document.
    pub latent_noise_max: f64,
    /// Share of documents whose tokens attend only within their own sentence, so the
    /// rest of the document reaches them through the plan alone.
    pub context_dropout: f64,
    /// Share of the decoder's input tokens (not `<bos>`/`<sep>`) replaced by `<pad>` during
    /// training (word dropout, Bowman et al. 2016): the decoder must take the words from the
    /// plan rather than copy its own prefix. Optional; 0 turns it off.
    #[serde(default)]
    pub word_dropout: f64,
    /// Start the decoder from the bundle's `ar` model (same architecture; cross-attention
    /// and plan embeddings start fresh), so it writes fluently from the first step and
    /// only has to learn to read plans. Optional; needs `ar` trained into the bundle first.
    #[serde(default)]
    pub init_from_ar: bool,
    /// Weight of a bag-of-words loss on the latents (Zhao et al. 2017): each sentence's
    /// latent, through the decoder's plan projection and the token embeddings, must predict
    /// the sentence's tokens, so the latent carries what the sentence says (its words), not
    /// only its form. Optional; 0 turns it off.
    #[serde(default)]
    pub bow_weight: f64,
    /// Plans are a frozen pretrained sentence encoder's: each sentence's latent is its
    /// all-MiniLM-L6-v2 embedding from the corpus cache (`plandiff embed`; computed first when
    /// missing), normalised per dimension with the training split's statistics. The only plan
    /// space since issue 39 removed the jointly learned encoder: `true` by default, and `false`
    /// (a run or config from before) is refused with that fix.
    #[serde(default = "frozen_encoder_default")]
    pub frozen_encoder: bool,
    /// How the latent noise is added (issue 39): `additive`, `z + s e` (the norm grows with
    /// s), or `variance_preserving`, `sqrt(1 - s^2) z + s e` with `latent_noise_max <= 1` (a
    /// diffusion forward step at noise level s: STAR-LDM's re-noised plans, whose norm stays
    /// a real sentence's). Optional; additive by default.
    #[serde(default)]
    pub latent_noise: LatentNoise,
    /// Start from another bundle's autoencoder (the same decoder architecture and plan space):
    /// its decoder's weights and its plan space's statistics, with a fresh optimiser and
    /// schedule, to fine-tune it under other plan settings. Optional; excludes init_from_ar.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_from: Option<std::path::PathBuf>,
    /// Distil a bundle's whole hybrid sampler into this decoder (issue 39): the loss is the
    /// KL divergence from the teacher's next-token distribution under its levers (plan
    /// guidance toward the null plan, the `ar` fluency prior) to this decoder's, so one pass a
    /// token writes what the teacher's three did. Optional; off by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distill: Option<Distill>,
}

/// `[autoencoder.plan.distill]`: the teacher whose hybrid sampler the decoder learns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Distill {
    /// The teacher bundle: its autoencoder (the same plan space) and, with `ar_prior`, its `ar`.
    pub teacher: std::path::PathBuf,
    /// The teacher's `--plan-guidance`: logits `null + w (plan - null)` (1: the plan alone).
    pub plan_guidance: f64,
    /// The teacher's `--ar-prior`: logits `(1 - p) decoder + p ar` (0: no prior).
    pub ar_prior: f64,
}

fn frozen_encoder_default() -> bool {
    true
}

/// How `[autoencoder.plan]` adds its latent noise ([`PlanSection::latent_noise`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LatentNoise {
    #[default]
    Additive,
    VariancePreserving,
}

impl PlanSection {
    pub fn validate(&self) -> Result<()> {
        let p = |x: f64| (0.0..=1.0).contains(&x);
        if self.max_slots < 1
            || !p(self.null_plan_prob)
            || !p(self.context_dropout)
            || !(0.0..1.0).contains(&self.word_dropout)
            || !(0.0..f64::INFINITY).contains(&self.latent_noise_max)
            || !(0.0..=100.0).contains(&self.bow_weight)
        {
            return Err(setting(
                "autoencoder.plan",
                "need max_slots >= 1, probabilities in [0, 1], word_dropout below 1, latent_noise_max finite and >= 0, bow_weight in [0, 100]",
            ));
        }
        if !self.frozen_encoder {
            return Err(setting(
                "autoencoder.plan",
                "frozen_encoder = false asks for the jointly learned sentence encoder, removed in issue 39 (plans are the frozen all-MiniLM-L6-v2's embeddings); delete the line and any [autoencoder.encoder] section, and train afresh",
            ));
        }
        if self.latent_noise == LatentNoise::VariancePreserving && self.latent_noise_max > 1.0 {
            return Err(setting(
                "autoencoder.plan",
                "variance_preserving latent noise needs latent_noise_max <= 1 (a noise level; 1 is pure noise)",
            ));
        }
        if let Some(d) = &self.distill {
            if !(0.0..1.0).contains(&d.ar_prior) || !(0.0..=10.0).contains(&d.plan_guidance) {
                return Err(setting(
                    "autoencoder.plan.distill",
                    "need ar_prior in [0, 1) and plan_guidance in [0, 10] (the teacher's levers)",
                ));
            }
            if self.context_dropout > 0.0 || self.word_dropout > 0.0 || self.bow_weight > 0.0 {
                return Err(setting(
                    "autoencoder.plan",
                    "distill learns the teacher's distribution on the text the decoder reads when it writes; set context_dropout, word_dropout and bow_weight to 0",
                ));
            }
        }
        if self.init_from.is_some() && self.init_from_ar {
            return Err(setting(
                "autoencoder.plan",
                "init_from and init_from_ar both say where the decoder starts; keep one",
            ));
        }
        Ok(())
    }
}
