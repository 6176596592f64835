//! The shape every transformer of the project shares, [`TransformerShape`]: one struct that
//! each model's config flattens (`#[serde(flatten)]`), so config.json and the run config keep
//! these fields at the top level of a model's table.

use crate::{check_transformer, BlockConfig, FieldError, InitStd, NormKind};
use serde::{Deserialize, Serialize};

/// Width, depth, heads, MLP width, dropout and norm of a stack of transformer blocks.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TransformerShape {
    pub d_model: i64,
    pub n_layers: i64,
    pub n_heads: i64,
    pub d_ff: i64,
    pub dropout: f64,
    pub norm: NormKind,
}

impl TransformerShape {
    /// Checks the shape and a model's own `sizes` (all must be positive); `what` names the
    /// model in messages (`"planner d_model 0 must be positive"`).
    pub fn validate(&self, what: &str, sizes: &[(&str, i64)]) -> Result<(), FieldError> {
        let mut all = sizes.to_vec();
        all.extend([
            ("d_model", self.d_model),
            ("n_layers", self.n_layers),
            ("n_heads", self.n_heads),
            ("d_ff", self.d_ff),
        ]);
        check_transformer(what, &all, self.d_model, self.n_heads, self.dropout)
    }

    /// The config of one block of this stack (GPT-2 initialisation scaled by its depth);
    /// `d_context`: the width its cross-attention reads, if it has one.
    pub fn block(&self, d_context: Option<i64>) -> BlockConfig {
        BlockConfig {
            d_model: self.d_model,
            n_heads: self.n_heads,
            d_ff: self.d_ff,
            dropout: self.dropout,
            norm: self.norm,
            d_context,
            init: InitStd::gpt2(self.n_layers),
        }
    }

    /// A tiny shape for tests: d_model 32, 2 layers, 4 heads, d_ff 64, no dropout.
    pub fn test() -> Self {
        Self { d_model: 32, n_layers: 2, n_heads: 4, d_ff: 64, dropout: 0.0, norm: NormKind::Layer }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flattened_fields_stay_at_the_top_level_and_unknown_ones_are_refused() {
        #[derive(Debug, Serialize, Deserialize, PartialEq)]
        #[serde(deny_unknown_fields)]
        struct M {
            vocab: i64,
            #[serde(flatten)]
            shape: TransformerShape,
        }
        let m = M { vocab: 9, shape: TransformerShape::test() };
        let v = serde_json::to_value(&m).unwrap();
        assert_eq!(v["d_model"], 32, "{v}");
        assert_eq!(serde_json::from_value::<M>(v.clone()).unwrap(), m);
        let mut bad = v;
        bad["extra"] = serde_json::json!(1);
        assert!(serde_json::from_value::<M>(bad).unwrap_err().to_string().contains("extra"));
    }

    #[test]
    fn validate_names_the_model_and_the_field() {
        let s = TransformerShape { n_heads: 5, ..TransformerShape::test() };
        let e = s.validate("planner", &[("max_slots", 4)]).unwrap_err();
        assert!(e.to_string().contains("planner d_model"), "{e}");
        let e = TransformerShape::test().validate("", &[("seq_len", 0)]).unwrap_err();
        assert!(e.to_string().contains("seq_len"), "{e}");
        assert_eq!(TransformerShape::test().block(Some(8)).d_context, Some(8));
    }
}
