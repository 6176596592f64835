//! Shared transformer building blocks for every plandiff model.
//!
//! This crate is a leaf: it depends on `tch` only, never on another plandiff crate.
//! Each layer is a plain struct with `new(path, ...)` and `forward`; parameter names mirror
//! the checkpoint keys (`blocks.0.attn.q_proj.weight`, ...).

pub mod attention;
pub mod block;
pub mod bounded;
pub mod embedding;
pub mod loss;
pub mod mlp;
pub mod norm;
pub mod rotary;
pub mod shape;

pub use attention::{Attention, AttnMask, FoldedCross, KvCache, KvPair};
pub use block::{Block, BlockConfig, CrossContext};
pub use embedding::{sinusoidal_embedding, LearnedPositions};
pub use loss::{linear_cross_entropy, weighted_linear_cross_entropy};
pub use mlp::Mlp;
pub use norm::{Norm, NormKind};
pub use rotary::Rotary;
pub use shape::TransformerShape;

/// Initial weight scales (GPT-2): projections N(0, `proj`), projections that write into the
/// residual stream (`out_proj`, `fc2`) N(0, `resid`), biases zero.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InitStd {
    pub proj: f64,
    pub resid: f64,
}

impl Default for InitStd {
    fn default() -> Self {
        Self { proj: 0.02, resid: 0.02 }
    }
}

impl InitStd {
    /// GPT-2's residual scaling for a stack of `n_layers` blocks.
    pub fn gpt2(n_layers: i64) -> Self {
        Self { proj: 0.02, resid: 0.02 / (2.0 * n_layers as f64).sqrt() }
    }

    pub fn linear(&self, std: f64) -> tch::nn::LinearConfig {
        tch::nn::LinearConfig {
            ws_init: tch::nn::Init::Randn { mean: 0.0, stdev: std },
            bs_init: Some(tch::nn::Init::Const(0.0)),
            bias: true,
        }
    }
}

/// Dropout that is a no-op (no kernel, no copy) when `p == 0` or outside training.
pub fn dropout(x: tch::Tensor, p: f64, train: bool) -> tch::Tensor {
    if train && p > 0.0 {
        x.dropout(p, true)
    } else {
        x
    }
}

/// A config value out of range, by name: `"{field} = {value} {rule}"`, e.g.
/// `encoder d_model = 64 must be divisible by n_heads = 3`. Libraries return it; the binary
/// turns a field into its flag (`temperature` -> `--temperature`) where a flag set it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{field} = {value} {rule}")]
pub struct FieldError {
    /// The field, with its model prefix where there is one (`encoder d_model`).
    pub field: String,
    pub value: String,
    /// What the value must be, and how to fix it.
    pub rule: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, value: impl std::fmt::Display, rule: impl Into<String>) -> Self {
        Self { field: field.into(), value: value.to_string(), rule: rule.into() }
    }

    /// The same message with the field written as a command-line flag (`--top-p 1.5 ...`).
    pub fn as_flag(&self) -> String {
        let name = self.field.rsplit(' ').next().unwrap_or(&self.field).replace('_', "-");
        format!("--{name} {} {}", self.value, self.rule)
    }
}

/// The largest size (a width, a depth, a vocabulary, a context) a config may declare: a
/// bound before anything is allocated, far above what a model of this project needs.
pub const MAX_SIZE: i64 = 1 << 20;

/// The checks every transformer config shares, so a bad value fails with its field's name
/// instead of deep inside libtorch: each `sizes` entry positive, `d_model` divisible by
/// `n_heads`, `dropout` in `[0, 1)`. `what` prefixes the field names ("encoder", "planner", ...).
pub fn check_transformer(
    what: &str,
    sizes: &[(&str, i64)],
    d_model: i64,
    n_heads: i64,
    dropout: f64,
) -> Result<(), FieldError> {
    let field = |name: &str| if what.is_empty() { name.to_string() } else { format!("{what} {name}") };
    for (name, v) in sizes {
        if *v <= 0 {
            return Err(FieldError::new(field(name), v, "must be positive"));
        }
        if *v > MAX_SIZE {
            return Err(FieldError::new(field(name), v, format!("must be at most {MAX_SIZE}")));
        }
    }
    if n_heads > 0 && d_model % n_heads != 0 {
        return Err(FieldError::new(field("d_model"), d_model, format!("must be divisible by n_heads = {n_heads}")));
    }
    if !(0.0..1.0).contains(&dropout) {
        return Err(FieldError::new(field("dropout"), dropout, "must be in [0, 1)"));
    }
    Ok(())
}
