//! Pre-norm transformer block with optional cross-attention:
//! `x += attn(norm1(x)); x += cross(norm_c(x), plan); x += mlp(norm2(x))`.

use crate::{dropout, Attention, AttnMask, FoldedCross, InitStd, KvCache, KvPair, Mlp, Norm, NormKind, Rotary};

/// What a block's cross-attention reads: the context's keys and values (training, full
/// forwards), or their folded form (cached decoding), each with an optional additive bias on
/// the scores (`(B, H, T, S)` and `(B, T, H*S)`: relative slot offsets, `-inf` for a hidden
/// slot).
#[derive(Debug, Clone, Copy)]
pub enum CrossContext<'a> {
    Kv(&'a KvPair, Option<&'a Tensor>),
    Folded(&'a FoldedCross, Option<&'a Tensor>),
}
use tch::{nn, Tensor};

#[derive(Debug, Clone, Copy)]
pub struct BlockConfig {
    pub d_model: i64,
    pub n_heads: i64,
    pub d_ff: i64,
    pub dropout: f64,
    pub norm: NormKind,
    /// Width of the cross-attention context; `None` for a block without cross-attention.
    pub d_context: Option<i64>,
    pub init: InitStd,
}

#[derive(Debug)]
pub struct Block {
    norm1: Norm,
    attn: Attention,
    cross: Option<(Norm, Attention)>,
    norm2: Norm,
    mlp: Mlp,
    dropout: f64,
}

impl Block {
    pub fn new(p: nn::Path, cfg: &BlockConfig) -> Self {
        let cross = cfg.d_context.map(|dc| {
            (
                Norm::new(&p / "norm_cross", cfg.norm, cfg.d_model),
                Attention::new(&p / "cross_attn", cfg.d_model, dc, cfg.n_heads, cfg.dropout, cfg.init),
            )
        });
        Self {
            norm1: Norm::new(&p / "norm1", cfg.norm, cfg.d_model),
            attn: Attention::new(&p / "attn", cfg.d_model, cfg.d_model, cfg.n_heads, cfg.dropout, cfg.init),
            cross,
            norm2: Norm::new(&p / "norm2", cfg.norm, cfg.d_model),
            mlp: Mlp::new(&p / "mlp", cfg.d_model, cfg.d_ff, cfg.init),
            dropout: cfg.dropout,
        }
    }

    pub fn has_cross(&self) -> bool {
        self.cross.is_some()
    }

    /// Cross-attention keys/values of a context, computed once per plan.
    pub fn project_context(&self, context: &Tensor) -> Option<KvPair> {
        self.cross.as_ref().map(|(_, a)| a.project_kv(context))
    }

    /// [`Block::project_context`] folded with the cross-attention's projections (decoding).
    pub fn fold_context(&self, context: &Tensor) -> Option<FoldedCross> {
        self.cross.as_ref().map(|(_, a)| a.fold_context(&a.project_kv(context)))
    }

    /// # Shapes
    /// - `x`: `(B, T, D)`; `context`: keys/values `(B, H, S, Dh)` from [`Block::project_context`]
    ///   or their folded form from [`Block::fold_context`]
    pub fn forward(
        &self,
        x: &Tensor,
        mask: AttnMask,
        cache: Option<&mut KvCache>,
        context: Option<CrossContext>,
        train: bool,
        rope: Option<&Rotary>,
    ) -> Tensor {
        let h = self.attn.forward_self(&self.norm1.forward(x), cache, mask, train, rope);
        let mut x = x + dropout(h, self.dropout, train);
        if let (Some((norm, cross)), Some(ctx)) = (&self.cross, context) {
            let h = match ctx {
                CrossContext::Kv(kv, bias) => {
                    let mask = bias.map_or(AttnMask::None, AttnMask::Custom);
                    cross.attend(&norm.forward(&x), kv, mask, train)
                }
                CrossContext::Folded(f, bias) => cross.attend_folded(&norm.forward(&x), f, bias),
            };
            x = x + dropout(h, self.dropout, train);
        }
        let h = self.mlp.forward(&self.norm2.forward(&x));
        x + dropout(h, self.dropout, train)
    }
}
