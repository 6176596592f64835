//! The run config file (TOML): one section per stage, `[ar.model]` and `[ar.train]` today.
//! Unknown fields are errors; architecture fields have no defaults.

use crate::{Result, TrainError};
use plandiff_decoder::DecoderConfig;
use plandiff_layers::NormKind;
use serde::{Deserialize, Serialize};
use std::path::Path;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    pub ar: Option<StageSection>,
    pub autoencoder: Option<AutoencoderSection>,
    pub planner: Option<PlannerSection>,
    pub diffusion: Option<DiffusionSection>,
}

/// `[diffusion]`: the pure-diffusion model over token embeddings (Diffusion-LM).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiffusionSection {
    pub model: TextDiffusionSection,
    /// The noise schedule (diffusers' names; Diffusion-LM uses `sqrt`); the model predicts
    /// x0, so `prediction_type = "sample"`.
    pub diffusion: plandiff_diffusion::ScheduleConfig,
    pub self_condition_prob: f64,
    pub sampling: crate::diffusion::TextSamplingDefaults,
    /// `batch_size` counts documents; `seq_len` is unused (`model.seq_len` is the length).
    pub train: TrainConfig,
}

/// Architecture of the text denoiser; the vocabulary comes from the data's tokenizer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TextDiffusionSection {
    pub d_emb: i64,
    pub seq_len: i64,
    pub d_model: i64,
    pub n_layers: i64,
    pub n_heads: i64,
    pub d_ff: i64,
    pub dropout: f64,
    pub norm: NormKind,
    pub self_condition: bool,
    pub rounding: plandiff_embedding::Rounding,
}

impl TextDiffusionSection {
    pub fn config(&self, vocab_size: i64) -> plandiff_embedding::TextDiffusionConfig {
        plandiff_embedding::TextDiffusionConfig {
            vocab_size,
            d_emb: self.d_emb,
            seq_len: self.seq_len,
            d_model: self.d_model,
            n_layers: self.n_layers,
            n_heads: self.n_heads,
            d_ff: self.d_ff,
            dropout: self.dropout,
            norm: self.norm,
            self_condition: self.self_condition,
            rounding: self.rounding,
        }
    }
}

/// `[planner]`: the denoiser over sentence slots, trained on the frozen encoder's latents
/// (design section 3.4). The latent width comes from the bundle's autoencoder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlannerSection {
    pub model: DenoiserSection,
    /// The noise schedule, with diffusers' field names and meanings.
    pub diffusion: plandiff_diffusion::ScheduleConfig,
    pub objective: PlannerObjective,
    /// Defaults for `generate --mode hybrid` and `edit`, stored with the model.
    pub sampling: plandiff_planner::SamplingDefaults,
    /// `batch_size` counts sentence windows; `seq_len` is unused (windows are `max_slots`).
    pub train: TrainConfig,
}

/// Denoiser architecture.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DenoiserSection {
    /// Sentence slots the planner sees at once (its window).
    pub max_slots: i64,
    pub d_model: i64,
    pub n_layers: i64,
    pub n_heads: i64,
    pub d_ff: i64,
    pub dropout: f64,
    pub norm: NormKind,
    pub self_condition: bool,
}

impl DenoiserSection {
    pub fn denoiser(&self, d_latent: i64) -> plandiff_planner::DenoiserConfig {
        plandiff_planner::DenoiserConfig {
            d_latent,
            max_slots: self.max_slots,
            d_model: self.d_model,
            n_layers: self.n_layers,
            n_heads: self.n_heads,
            d_ff: self.d_ff,
            dropout: self.dropout,
            norm: self.norm,
            self_condition: self.self_condition,
        }
    }
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

impl PlannerObjective {
    pub fn validate(&self) -> Result<()> {
        let p = |x: f64| (0.0..=1.0).contains(&x);
        if !p(self.cfg_dropout) || !p(self.prefix_prob) || !p(self.self_condition_prob) {
            return Err(TrainError::Invalid("config [planner.objective]: probabilities must be in [0, 1]".into()));
        }
        Ok(())
    }
}

/// `[autoencoder]`: sentence encoder + plan-conditioned decoder, trained together.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AutoencoderSection {
    pub encoder: EncoderSection,
    pub decoder: ModelSection,
    pub plan: PlanSection,
    /// `batch_size` counts documents; `seq_len` caps a document window's tokens.
    pub train: TrainConfig,
}

/// Sentence encoder architecture; the vocabulary comes from the data's tokenizer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncoderSection {
    pub d_model: i64,
    pub n_layers: i64,
    pub n_heads: i64,
    pub d_ff: i64,
    pub max_len: i64,
    pub d_latent: i64,
    pub dropout: f64,
    pub norm: NormKind,
    pub bound: plandiff_planner::LatentBound,
}

impl EncoderSection {
    pub fn encoder(&self, vocab_size: i64) -> plandiff_planner::EncoderConfig {
        plandiff_planner::EncoderConfig {
            vocab_size,
            d_model: self.d_model,
            n_layers: self.n_layers,
            n_heads: self.n_heads,
            d_ff: self.d_ff,
            max_len: self.max_len,
            d_latent: self.d_latent,
            dropout: self.dropout,
            norm: self.norm,
            bound: self.bound,
        }
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
}

impl PlanSection {
    pub fn validate(&self) -> Result<()> {
        let p = |x: f64| (0.0..=1.0).contains(&x);
        if self.max_slots < 1
            || !p(self.null_plan_prob)
            || !p(self.context_dropout)
            || !(0.0..1.0).contains(&self.word_dropout)
            || self.latent_noise_max < 0.0
        {
            return Err(TrainError::Invalid(
                "config [autoencoder.plan]: need max_slots >= 1, probabilities in [0, 1], word_dropout below 1, latent_noise_max >= 0".into(),
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageSection {
    pub model: ModelSection,
    pub train: TrainConfig,
}

/// Architecture of a decoder; the vocabulary size comes from the tokenizer of the data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSection {
    pub d_model: i64,
    pub n_layers: i64,
    pub n_heads: i64,
    pub d_ff: i64,
    pub max_seq_len: i64,
    pub dropout: f64,
    pub norm: NormKind,
}

impl ModelSection {
    pub fn decoder(&self, vocab_size: i64) -> DecoderConfig {
        DecoderConfig {
            vocab_size,
            d_model: self.d_model,
            n_layers: self.n_layers,
            n_heads: self.n_heads,
            d_ff: self.d_ff,
            max_seq_len: self.max_seq_len,
            dropout: self.dropout,
            norm: self.norm,
            plan: None,
        }
    }
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
        let bad = |m: &str| Err(TrainError::Invalid(format!("config [train]: {m}")));
        if self.batch_size == 0 || self.seq_len == 0 || self.grad_accum == 0 {
            return bad("batch_size, seq_len and grad_accum must be >= 1");
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

impl RunConfig {
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| TrainError::io(path, e))?;
        Self::parse(&text).map_err(|e| TrainError::Invalid(format!("{}: {e}", path.display())))
    }

    pub fn parse(text: &str) -> std::result::Result<Self, String> {
        toml::from_str(text).map_err(|e| {
            // toml's message spans several lines (with a caret); keep it on one.
            e.to_string().split_whitespace().collect::<Vec<_>>().join(" ")
        })
    }

    pub fn autoencoder(&self) -> Result<&AutoencoderSection> {
        self.autoencoder.as_ref().ok_or_else(|| {
            TrainError::Invalid("the config has no [autoencoder] section (see configs/tiny.toml)".into())
        })
    }

    pub fn diffusion(&self) -> Result<&DiffusionSection> {
        self.diffusion
            .as_ref()
            .ok_or_else(|| TrainError::Invalid("the config has no [diffusion] section (see configs/tiny.toml)".into()))
    }

    pub fn planner(&self) -> Result<&PlannerSection> {
        self.planner
            .as_ref()
            .ok_or_else(|| TrainError::Invalid("the config has no [planner] section (see configs/tiny.toml)".into()))
    }

    pub fn ar(&self) -> Result<&StageSection> {
        self.ar
            .as_ref()
            .ok_or_else(|| TrainError::Invalid("the config has no [ar] section (see configs/tiny.toml)".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_configs_parse_and_validate() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs");
        for name in ["tiny.toml", "base.toml", "demo.toml", "shipped.toml"] {
            let c = RunConfig::load(&root.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
            let ar = c.ar().unwrap();
            ar.train.validate().unwrap();
            ar.model.decoder(4096).validate().unwrap();
            let ae = c.autoencoder().unwrap();
            ae.train.validate().unwrap();
            ae.plan.validate().unwrap();
            ae.decoder.decoder(4096).validate().unwrap();
            assert!(ae.train.seq_len as i64 <= ae.decoder.max_seq_len, "{name}");
            let pl = c.planner().unwrap();
            pl.train.validate().unwrap();
            pl.objective.validate().unwrap();
            pl.sampling.validate().unwrap();
            pl.model.denoiser(ae.encoder.d_latent).validate().unwrap();
            plandiff_diffusion::NoiseSchedule::new(pl.diffusion.clone()).unwrap();
            let df = c.diffusion().unwrap();
            df.train.validate().unwrap();
            use crate::bundle::ModelConfig;
            crate::diffusion::DiffusionModel {
                model: df.model.config(4096),
                schedule: df.diffusion.clone(),
                self_condition_prob: df.self_condition_prob,
                sampling: df.sampling,
            }
            .validate()
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }

    #[test]
    fn unknown_field_is_named() {
        let text =
            std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/tiny.toml")).unwrap();
        let bad = text.replace("n_layers", "n_layerz");
        let err = RunConfig::parse(&bad).unwrap_err();
        assert!(err.contains("n_layerz"), "{err}");
        assert!(!err.contains('\n'));
    }
}
