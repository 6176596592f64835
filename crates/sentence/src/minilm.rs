//! all-MiniLM-L6-v2 (Wang et al. 2020, tuned by sentence-transformers) on tch: a BERT
//! encoder (6 layers, width 384, 12 heads, post-LayerNorm, GELU), mean pooling over the
//! attention mask, L2 normalisation: the sentence embedding `SentenceTransformer(...)` gives.
//! Weights are read by their Hugging Face names (`encoder.layer.0.attention.self.query.weight`);
//! the pooler is not used.

use std::collections::HashMap;
use tch::{Kind, Tensor};

/// Width, depth and heads of the checkpoint (checked against the weights' shapes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BertShape {
    pub hidden: i64,
    pub layers: usize,
    pub heads: i64,
}

const LN_EPS: f64 = 1e-12;

pub(crate) struct Linear {
    w: Tensor,
    b: Tensor,
}

impl Linear {
    pub(crate) fn forward(&self, x: &Tensor) -> Tensor {
        x.linear(&self.w, Some(&self.b))
    }

    pub(crate) fn moved_to(self, device: tch::Device) -> Self {
        Self { w: self.w.to_device(device), b: self.b.to_device(device) }
    }
}

pub(crate) struct LayerNorm {
    w: Tensor,
    b: Tensor,
}

impl LayerNorm {
    fn forward(&self, x: &Tensor) -> Tensor {
        self.forward_eps(x, LN_EPS)
    }

    pub(crate) fn forward_eps(&self, x: &Tensor, eps: f64) -> Tensor {
        x.layer_norm([self.w.size()[0]], Some(&self.w), Some(&self.b), eps, false)
    }

    pub(crate) fn moved_to(self, device: tch::Device) -> Self {
        Self { w: self.w.to_device(device), b: self.b.to_device(device) }
    }
}

struct Layer {
    query: Linear,
    key: Linear,
    value: Linear,
    attn_out: Linear,
    attn_norm: LayerNorm,
    ff_in: Linear,
    ff_out: Linear,
    ff_norm: LayerNorm,
}

pub struct MiniLm {
    word: Tensor,
    position: Tensor,
    token_type: Tensor,
    emb_norm: LayerNorm,
    layers: Vec<Layer>,
    shape: BertShape,
}

/// The tensors of a checkpoint by name, taken out one by one.
pub(crate) struct Weights(pub(crate) HashMap<String, Tensor>);

impl Weights {
    pub(crate) fn take(&mut self, name: &str) -> Result<Tensor, String> {
        self.0.remove(name).map(|t| t.to_kind(Kind::Float)).ok_or_else(|| format!("no tensor `{name}`"))
    }

    pub(crate) fn linear(&mut self, p: &str) -> Result<Linear, String> {
        Ok(Linear { w: self.take(&format!("{p}.weight"))?, b: self.take(&format!("{p}.bias"))? })
    }

    pub(crate) fn norm(&mut self, p: &str) -> Result<LayerNorm, String> {
        Ok(LayerNorm { w: self.take(&format!("{p}.weight"))?, b: self.take(&format!("{p}.bias"))? })
    }
}

impl MiniLm {
    /// Builds the encoder from a checkpoint's tensors (`model.safetensors`).
    pub fn from_tensors(tensors: Vec<(String, Tensor)>, heads: i64) -> Result<Self, String> {
        let mut w = Weights(tensors.into_iter().collect());
        let layers =
            (0..).take_while(|i| w.0.contains_key(&format!("encoder.layer.{i}.attention.self.query.weight"))).count();
        let mut out = Vec::with_capacity(layers);
        for i in 0..layers {
            let p = format!("encoder.layer.{i}");
            out.push(Layer {
                query: w.linear(&format!("{p}.attention.self.query"))?,
                key: w.linear(&format!("{p}.attention.self.key"))?,
                value: w.linear(&format!("{p}.attention.self.value"))?,
                attn_out: w.linear(&format!("{p}.attention.output.dense"))?,
                attn_norm: w.norm(&format!("{p}.attention.output.LayerNorm"))?,
                ff_in: w.linear(&format!("{p}.intermediate.dense"))?,
                ff_out: w.linear(&format!("{p}.output.dense"))?,
                ff_norm: w.norm(&format!("{p}.output.LayerNorm"))?,
            });
        }
        let word = w.take("embeddings.word_embeddings.weight")?;
        let hidden = word.size()[1];
        if layers == 0 || heads <= 0 || hidden % heads != 0 {
            return Err(format!("not a BERT checkpoint of {heads} heads ({layers} layers, width {hidden})"));
        }
        Ok(Self {
            word,
            position: w.take("embeddings.position_embeddings.weight")?,
            token_type: w.take("embeddings.token_type_embeddings.weight")?,
            emb_norm: w.norm("embeddings.LayerNorm")?,
            layers: out,
            shape: BertShape { hidden, layers, heads },
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
            token_type: mv(self.token_type),
            emb_norm: norm(self.emb_norm),
            layers: self
                .layers
                .into_iter()
                .map(|l| Layer {
                    query: lin(l.query),
                    key: lin(l.key),
                    value: lin(l.value),
                    attn_out: lin(l.attn_out),
                    attn_norm: norm(l.attn_norm),
                    ff_in: lin(l.ff_in),
                    ff_out: lin(l.ff_out),
                    ff_norm: norm(l.ff_norm),
                })
                .collect(),
            shape: self.shape,
        }
    }

    /// Width of its hidden states and embeddings.
    pub fn hidden(&self) -> i64 {
        self.shape.hidden
    }

    /// The longest input the position table covers.
    pub fn max_positions(&self) -> i64 {
        self.position.size()[0]
    }

    /// Hidden states `(B, T, H)` of token ids `(B, T)` with `mask` `(B, T)` (1 on real
    /// tokens): BERT with post-LayerNorm blocks, token type 0 everywhere.
    ///
    /// # Shapes
    /// `ids`, `mask`: `(B, T)`, `T <= max_positions()`.
    pub fn forward(&self, ids: &Tensor, mask: &Tensor) -> Tensor {
        let (b, t) = ids.size2().unwrap_or((1, 1));
        let pos = Tensor::arange(t, (Kind::Int64, ids.device()));
        let x = self.word.index_select(0, &ids.reshape(-1)).view([b, t, -1])
            + self.position.index_select(0, &pos).unsqueeze(0)
            + self.token_type.get(0).view([1, 1, -1]);
        let mut x = self.emb_norm.forward(&x);
        // Additive key mask, as transformers builds it: 0 on real tokens, the dtype's minimum on padding.
        let bias = (mask.to_kind(Kind::Float).ones_like() - mask.to_kind(Kind::Float)) * f64::from(f32::MIN);
        let bias = bias.view([b, 1, 1, t]);
        let (h, dh) = (self.shape.heads, self.shape.hidden / self.shape.heads);
        let split = |y: Tensor| y.view([b, t, h, dh]).transpose(1, 2); // (B, H, T, Dh)
        for l in &self.layers {
            let (q, k, v) = (split(l.query.forward(&x)), split(l.key.forward(&x)), split(l.value.forward(&x)));
            let scores = q.matmul(&k.transpose(-2, -1)) / (dh as f64).sqrt() + &bias; // (B, H, T, T)
            let ctx = scores.softmax(-1, Kind::Float).matmul(&v).transpose(1, 2).reshape([b, t, -1]); // (B, T, H*Dh)
            x = l.attn_norm.forward(&(l.attn_out.forward(&ctx) + &x));
            let ff = l.ff_out.forward(&l.ff_in.forward(&x).gelu("none"));
            x = l.ff_norm.forward(&(ff + &x));
        }
        x
    }

    /// L2-normalised mean-pooled embeddings `(B, H)`.
    pub fn embed(&self, ids: &Tensor, mask: &Tensor) -> Tensor {
        pool(&self.forward(ids, mask), mask)
    }
}

/// sentence-transformers' mean pooling over the real tokens of hidden states `(B, T, H)`, then
/// L2 normalisation: `(B, H)`.
pub(crate) fn pool(h: &Tensor, mask: &Tensor) -> Tensor {
    let m = mask.to_kind(Kind::Float).unsqueeze(-1); // (B, T, 1)
    let summed = (h * &m).sum_dim_intlist(1, false, Kind::Float);
    let count = m.sum_dim_intlist(1, false, Kind::Float).clamp_min(1e-9);
    let mean = summed / count;
    let norm = mean.norm_scalaropt_dim(2.0, [1], true).clamp_min(1e-12);
    mean / norm
}
