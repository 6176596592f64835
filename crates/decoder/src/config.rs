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

/// The longest context a rotary decoder may declare (learned positions are bounded by their
/// table's size against the weights).
pub const MAX_ROTARY_LEN: i64 = 1 << 20;

/// Relative positions: rotary token positions and sentence-relative plan slots (issue 25).
///
/// Self-attention sees the `window` sentences up to a token's own (given sentence ids), so a
/// sliding window forgets its oldest sentence's cache entries and keeps the rest as they are;
/// cross-attention reads the plan slots from `window - 1` before a token's sentence to
/// `lookahead` after it, scored with a learned bias per head and offset (no absolute slot
/// embedding).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotaryConfig {
    /// RoPE base, 10000 in most models.
    pub base: f64,
    /// Sentences a token's self-attention sees, its own included.
    pub window: i64,
    /// Plan slots after a token's own that its cross-attention reads.
    pub lookahead: i64,
}

/// Every architecture field is required: no silent defaults (`rotary` absent is a bundle from
/// before relative positions: learned absolute positions and slot embeddings).
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
    /// `None`: learned absolute positions (`wpe`) and slot embeddings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotary: Option<RotaryConfig>,
    /// Plan models: the blocks (0-based, ascending) that have cross-attention to the plan;
    /// `None`, every block. Fewer blocks read the plan at less cost a token (issue 39: a
    /// student distilled from a decoder with cross-attention in every block).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cross_blocks: Option<Vec<i64>>,
}

impl DecoderConfig {
    /// Whether block `i` has cross-attention to the plan (never without a plan).
    pub fn has_cross(&self, i: i64) -> bool {
        self.plan.is_some() && self.cross_blocks.as_ref().is_none_or(|c| c.contains(&i))
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let sizes = [("vocab_size", self.vocab_size), ("max_seq_len", self.max_seq_len)];
        self.shape.validate("", &sizes)?;
        if let Some(p) = self.plan {
            for (field, v, most) in [("plan.d_latent", p.d_latent, 65_536), ("plan.max_slots", p.max_slots, 4096)] {
                if !(1..=most).contains(&v) {
                    return Err(plandiff_layers::FieldError::new(field, v, format!("must be 1 to {most}")).into());
                }
            }
        }
        if let Some(c) = &self.cross_blocks {
            let n = self.shape.n_layers;
            let ascending = c.windows(2).all(|w| w[0] < w[1]);
            if self.plan.is_none() || c.is_empty() || !ascending || c.iter().any(|&i| !(0..n).contains(&i)) {
                return Err(plandiff_layers::FieldError::new(
                    "cross_blocks",
                    format!("{c:?}"),
                    format!(
                        "must list, in ascending order, at least one of the {n} blocks (0 to {}) of a decoder with a plan; leave it out for cross-attention in every block",
                        n - 1
                    ),
                )
                .into());
            }
        }
        if let Some(r) = self.rotary {
            // No position table bounds the context of a rotary model: bound it here.
            if self.max_seq_len > MAX_ROTARY_LEN {
                return Err(plandiff_layers::FieldError::new(
                    "max_seq_len",
                    self.max_seq_len,
                    format!("must be at most {MAX_ROTARY_LEN} tokens (a window the decoder reads at once)"),
                )
                .into());
            }
            let invalid = |field: &str, v: f64, why: &str| plandiff_layers::FieldError::new(field, v, why).into();
            if !(r.base.is_finite() && r.base > 1.0) {
                return Err(invalid("rotary.base", r.base, "must be a finite number above 1 (10000 is usual)"));
            }
            if r.window < 1 || r.window > 4096 {
                return Err(invalid("rotary.window", r.window as f64, "must be 1 to 4096 sentences"));
            }
            if r.lookahead < 0 || r.lookahead > 4096 {
                return Err(invalid("rotary.lookahead", r.lookahead as f64, "must be 0 to 4096 slots"));
            }
            if (self.shape.d_model / self.shape.n_heads.max(1)) % 2 != 0 {
                return Err(invalid(
                    "n_heads",
                    self.shape.n_heads as f64,
                    "rotary positions need an even head width (d_model / n_heads)",
                ));
            }
        }
        Ok(())
    }

    /// A tiny config for tests.
    pub fn test(vocab_size: i64, plan: Option<PlanConfig>) -> Self {
        Self { vocab_size, shape: TransformerShape::test(), max_seq_len: 64, plan, rotary: None, cross_blocks: None }
    }
}
