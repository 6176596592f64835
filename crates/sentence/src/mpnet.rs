//! all-mpnet-base-v2 (Song et al. 2020, tuned by sentence-transformers) on tch: MPNet is BERT
//! with its token type table dropped, positions counted from `padding_idx + 1` over the real
//! tokens (RoBERTa's rule), and a bucketed relative position bias (T5's buckets, bidirectional,
//! 32 buckets up to distance 128) shared by every layer and added to the attention scores.
//! Post-LayerNorm blocks (eps 1e-5), GELU; mean pooling over the mask, L2 normalisation.
//! Weights are read by their Hugging Face names (`encoder.layer.0.attention.attn.q.weight`).

use crate::minilm::{pool, LayerNorm, Linear, Weights};
use tch::{Kind, Tensor};

const LN_EPS: f64 = 1e-5;
/// MPNet's padding id, and its position table's padding row.
pub const PAD: i64 = 1;
const BUCKETS: i64 = 32;
const MAX_DISTANCE: f64 = 128.0;

struct Layer {
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    attn_norm: LayerNorm,
    ff_in: Linear,
    ff_out: Linear,
    ff_norm: LayerNorm,
}

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
        let layers =
            (0..).take_while(|i| w.0.contains_key(&format!("encoder.layer.{i}.attention.attn.q.weight"))).count();
        let mut out = Vec::with_capacity(layers);
        for i in 0..layers {
            let p = format!("encoder.layer.{i}");
            out.push(Layer {
                q: w.linear(&format!("{p}.attention.attn.q"))?,
                k: w.linear(&format!("{p}.attention.attn.k"))?,
                v: w.linear(&format!("{p}.attention.attn.v"))?,
                o: w.linear(&format!("{p}.attention.attn.o"))?,
                attn_norm: w.norm(&format!("{p}.attention.LayerNorm"))?,
                ff_in: w.linear(&format!("{p}.intermediate.dense"))?,
                ff_out: w.linear(&format!("{p}.output.dense"))?,
                ff_norm: w.norm(&format!("{p}.output.LayerNorm"))?,
            });
        }
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
        let mv = |t: Tensor| t.to_device(device);
        let lin = |l: Linear| l.moved_to(device);
        let norm = |n: LayerNorm| n.moved_to(device);
        Self {
            word: mv(self.word),
            position: mv(self.position),
            emb_norm: norm(self.emb_norm),
            relative_bias: mv(self.relative_bias),
            layers: self
                .layers
                .into_iter()
                .map(|l| Layer {
                    q: lin(l.q),
                    k: lin(l.k),
                    v: lin(l.v),
                    o: lin(l.o),
                    attn_norm: norm(l.attn_norm),
                    ff_in: lin(l.ff_in),
                    ff_out: lin(l.ff_out),
                    ff_norm: norm(l.ff_norm),
                })
                .collect(),
            hidden: self.hidden,
            heads: self.heads,
        }
    }

    pub fn hidden(&self) -> i64 {
        self.hidden
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
        let mut x = self.emb_norm.forward_eps(&x, LN_EPS);
        let pad = (mask.to_kind(Kind::Float).ones_like() - mask.to_kind(Kind::Float)) * f64::from(f32::MIN);
        let rel = self.relative_bias.index_select(0, &buckets(t, ids.device()).reshape(-1)); // (T*T, H)
        let bias = rel.view([t, t, self.heads]).permute([2, 0, 1]).unsqueeze(0) + pad.view([b, 1, 1, t]); // (B, H, T, T)
        let (h, dh) = (self.heads, self.hidden / self.heads);
        let split = |y: Tensor| y.view([b, t, h, dh]).transpose(1, 2); // (B, H, T, Dh)
        for l in &self.layers {
            let (q, k, v) = (split(l.q.forward(&x)), split(l.k.forward(&x)), split(l.v.forward(&x)));
            let scores = q.matmul(&k.transpose(-2, -1)) / (dh as f64).sqrt() + &bias; // (B, H, T, T)
            let ctx = scores.softmax(-1, Kind::Float).matmul(&v).transpose(1, 2).reshape([b, t, -1]); // (B, T, H*Dh)
            x = l.attn_norm.forward_eps(&(l.o.forward(&ctx) + &x), LN_EPS);
            let ff = l.ff_out.forward(&l.ff_in.forward(&x).gelu("none"));
            x = l.ff_norm.forward_eps(&(ff + &x), LN_EPS);
        }
        x
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
