//! Decoder architecture, serialized into `config.json` beside the weights.

use plandiff_layers::NormKind;
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
    pub d_model: i64,
    pub n_layers: i64,
    pub n_heads: i64,
    pub d_ff: i64,
    /// Longest sequence (prompt + generated tokens) the learned positions cover.
    pub max_seq_len: i64,
    pub dropout: f64,
    pub norm: NormKind,
    /// `None` for a plain causal LM without cross-attention.
    pub plan: Option<PlanConfig>,
}

impl DecoderConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        let sizes = [
            ("vocab_size", self.vocab_size),
            ("d_model", self.d_model),
            ("n_layers", self.n_layers),
            ("n_heads", self.n_heads),
            ("d_ff", self.d_ff),
            ("max_seq_len", self.max_seq_len),
        ];
        plandiff_layers::check_transformer("", &sizes, self.d_model, self.n_heads, self.dropout)?;
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
        Self {
            vocab_size,
            d_model: 32,
            n_layers: 2,
            n_heads: 4,
            d_ff: 64,
            max_seq_len: 64,
            dropout: 0.0,
            norm: NormKind::Layer,
            plan,
        }
    }
}
