//! Decoder architecture, serialized into `config.json` beside the weights.

use plandiff_layers::TransformerShape;
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("model config: {0}")]
    Invalid(#[from] plandiff_layers::FieldError),
}

/// Cross-attention to a plan of `max_slots` sentence latents of width `d_latent`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanConfig {
    pub d_latent: i64,
    pub max_slots: i64,
}

/// Every architecture field is required: no silent defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecoderConfig {
    pub vocab_size: i64,
    #[serde(flatten)]
    pub shape: TransformerShape,
    /// Longest sequence (prompt + generated tokens) the learned positions cover.
    pub max_seq_len: i64,
    /// `None` for a plain causal LM without cross-attention.
    pub plan: Option<PlanConfig>,
}

impl DecoderConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        let sizes = [("vocab_size", self.vocab_size), ("max_seq_len", self.max_seq_len)];
        self.shape.validate("", &sizes)?;
        if let Some(p) = self.plan {
            for (field, v) in [("plan.d_latent", p.d_latent), ("plan.max_slots", p.max_slots)] {
                if v <= 0 {
                    return Err(plandiff_layers::FieldError::new(field, v, "must be positive").into());
                }
            }
        }
        Ok(())
    }

    /// A tiny config for tests.
    pub fn test(vocab_size: i64, plan: Option<PlanConfig>) -> Self {
        Self { vocab_size, shape: TransformerShape::test(), max_seq_len: 64, plan }
    }
}
