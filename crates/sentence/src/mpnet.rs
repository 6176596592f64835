//! all-mpnet-base-v2 (Song et al. 2020, tuned by sentence-transformers) on tch: MPNet is BERT
//! with its token type table dropped, positions counted from `padding_idx + 1` over the real
//! tokens (RoBERTa's rule), and a bucketed relative position bias (T5's buckets, bidirectional,
//! 32 buckets up to distance 128) shared by every layer and added to the attention scores.
//! Post-LayerNorm blocks (eps 1e-5), GELU; mean pooling over the mask, L2 normalisation.
//! Weights are read by their Hugging Face names (`encoder.layer.0.attention.attn.q.weight`).

use crate::bert::{padding_bias, pool, Layer, LayerNorm, Weights};
use tch::{Kind, Tensor};

const LN_EPS: f64 = 1e-5;
/// MPNet's padding id, and its position table's padding row.
pub const PAD: i64 = 1;
const BUCKETS: i64 = 32;
const MAX_DISTANCE: f64 = 128.0;

const NAMES: [&str; 8] = [
    "attention.attn.q",
    "attention.attn.k",
    "attention.attn.v",
    "attention.attn.o",
    "attention.LayerNorm",
    "intermediate.dense",
    "output.dense",
    "output.LayerNorm",
];

pub struct Mpnet {
    word: Tensor,
    position: Tensor,
    emb_norm: LayerNorm,
    /// `(BUCKETS, H)`
    relative_bias: Tensor,
    layers: Vec<Layer>,
    hidden: i64,
    heads: i64,
}

/// T5's bidirectional bucket of each relative position `memory - context` `(T, T)`, computed
/// with the same tensor ops as transformers' `MPNetEncoder.relative_position_bucket`.
fn buckets(t: i64, device: tch::Device) -> Tensor {
    let pos = Tensor::arange(t, (Kind::Int64, device));
    let n = pos.unsqueeze(1) - pos.unsqueeze(0); // -(memory - context)
    let half = BUCKETS / 2;
    let ret = n.lt(0).to_kind(Kind::Int64) * half;
    let n = n.abs();
    let max_exact = half / 2;
    let is_small = n.lt(max_exact);
    let large = (n.to_kind(Kind::Float) / max_exact as f64).log() / (MAX_DISTANCE / max_exact as f64).ln()
        * (half - max_exact) as f64;
    let large = (large.to_kind(Kind::Int64) + max_exact).clamp_max(half - 1);
    ret + n.where_self(&is_small, &large)
}

impl Mpnet {
    /// Builds the encoder from a checkpoint's tensors (`model.safetensors`).
    pub fn from_tensors(tensors: Vec<(String, Tensor)>, heads: i64) -> Result<Self, String> {
        let mut w = Weights(tensors.into_iter().collect());
        let out = w.layers(&NAMES)?;
        let layers = out.len();
        let word = w.take("embeddings.word_embeddings.weight")?;
        let hidden = word.size()[1];
        if layers == 0 || heads <= 0 || hidden % heads != 0 {
            return Err(format!("not an MPNet checkpoint of {heads} heads ({layers} layers, width {hidden})"));
        }
        Ok(Self {
            word,
            position: w.take("embeddings.position_embeddings.weight")?,
            emb_norm: w.norm("embeddings.LayerNorm")?,
            relative_bias: w.take("encoder.relative_attention_bias.weight")?,
            layers: out,
            hidden,
            heads,
        })
    }

    /// The same model on `device`.
    pub fn to_device(self, device: tch::Device) -> Self {
        Self {
            word: self.word.to_device(device),
            position: self.position.to_device(device),
            emb_norm: self.emb_norm.moved_to(device),
            relative_bias: self.relative_bias.to_device(device),
            layers: self.layers.into_iter().map(|l| l.moved_to(device)).collect(),
            hidden: self.hidden,
            heads: self.heads,
        }
    }

    pub fn hidden(&self) -> i64 {
        self.hidden
    }

    /// Rows of its word-embedding table: every token id must be below it.
    pub fn vocab_rows(&self) -> i64 {
        self.word.size()[0]
    }

    /// The longest input: the position table less its padding rows.
    pub fn max_positions(&self) -> i64 {
        self.position.size()[0] - PAD - 1
    }

    /// Hidden states `(B, T, H)` of token ids `(B, T)` with `mask` `(B, T)` (1 on real tokens,
    /// which come first in a row).
    pub fn forward(&self, ids: &Tensor, mask: &Tensor) -> Tensor {
        let (b, t) = ids.size2().unwrap_or((1, 1));
        let m = mask.to_kind(Kind::Int64);
        let pos = m.cumsum(1, Kind::Int64) * &m + PAD; // (B, T): PAD + 1, PAD + 2, ... on real tokens
        let x = self.word.index_select(0, &ids.reshape(-1)).view([b, t, -1])
            + self.position.index_select(0, &pos.reshape(-1)).view([b, t, -1]);
        let x = self.emb_norm.forward(&x, LN_EPS);
        let rel = self.relative_bias.index_select(0, &buckets(t, ids.device()).reshape(-1)); // (T*T, H)
        let bias = rel.view([t, t, self.heads]).permute([2, 0, 1]).unsqueeze(0) + padding_bias(mask); // (B, H, T, T)
        self.layers.iter().fold(x, |x, l| l.forward(&x, &bias, self.heads, LN_EPS))
    }

    /// L2-normalised mean-pooled embeddings `(B, H)`.
    pub fn embed(&self, ids: &Tensor, mask: &Tensor) -> Tensor {
        pool(&self.forward(ids, mask), mask)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_follow_t5_bidirectional_rule() {
        let b = buckets(200, tch::Device::Cpu);
        let at = |i: i64, j: i64| b.int64_value(&[i, j]);
        // memory - context = j - i; n = i - j; n < 0 (looking ahead) gets the upper half.
        assert_eq!((at(0, 0), at(5, 0), at(0, 5)), (0, 5, 16 + 5));
        assert_eq!((at(8, 0), at(0, 8)), (8, 24));
        assert_eq!((at(16, 0), at(32, 0), at(199, 0)), (10, 12, 15));
        assert_eq!(at(0, 199), 31);
    }
}
