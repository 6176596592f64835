//! What the BERT-family encoders share: linear and LayerNorm weights read from a checkpoint by
//! name, the post-LayerNorm transformer layer (self-attention, GELU MLP), and
//! sentence-transformers' mean pooling with L2 normalisation.

use std::collections::HashMap;
use tch::{Kind, Tensor};

pub(crate) struct Linear {
    w: Tensor,
    b: Tensor,
}

impl Linear {
    pub(crate) fn forward(&self, x: &Tensor) -> Tensor {
        x.linear(&self.w, Some(&self.b))
    }

    fn moved_to(self, device: tch::Device) -> Self {
        Self { w: self.w.to_device(device), b: self.b.to_device(device) }
    }
}

pub(crate) struct LayerNorm {
    w: Tensor,
    b: Tensor,
}

impl LayerNorm {
    pub(crate) fn forward(&self, x: &Tensor, eps: f64) -> Tensor {
        x.layer_norm([self.w.size()[0]], Some(&self.w), Some(&self.b), eps, false)
    }

    pub(crate) fn moved_to(self, device: tch::Device) -> Self {
        Self { w: self.w.to_device(device), b: self.b.to_device(device) }
    }
}

/// The tensors of a checkpoint by name, taken out one by one.
pub(crate) struct Weights(pub(crate) HashMap<String, Tensor>);

impl Weights {
    pub(crate) fn take(&mut self, name: &str) -> Result<Tensor, String> {
        self.0.remove(name).map(|t| t.to_kind(Kind::Float)).ok_or_else(|| format!("no tensor `{name}`"))
    }

    fn linear(&mut self, p: &str) -> Result<Linear, String> {
        Ok(Linear { w: self.take(&format!("{p}.weight"))?, b: self.take(&format!("{p}.bias"))? })
    }

    pub(crate) fn norm(&mut self, p: &str) -> Result<LayerNorm, String> {
        Ok(LayerNorm { w: self.take(&format!("{p}.weight"))?, b: self.take(&format!("{p}.bias"))? })
    }

    /// Every layer `encoder.layer.{i}` whose tensors are named by `names` (query, key, value,
    /// attention output, attention norm, MLP in, MLP out, output norm).
    pub(crate) fn layers(&mut self, names: &[&str; 8]) -> Result<Vec<Layer>, String> {
        let n = (0..).take_while(|i| self.0.contains_key(&format!("encoder.layer.{i}.{}.weight", names[0]))).count();
        (0..n)
            .map(|i| {
                let p = |k: usize| format!("encoder.layer.{i}.{}", names[k]);
                Ok(Layer {
                    q: self.linear(&p(0))?,
                    k: self.linear(&p(1))?,
                    v: self.linear(&p(2))?,
                    o: self.linear(&p(3))?,
                    attn_norm: self.norm(&p(4))?,
                    ff_in: self.linear(&p(5))?,
                    ff_out: self.linear(&p(6))?,
                    ff_norm: self.norm(&p(7))?,
                })
            })
            .collect()
    }
}

/// A post-LayerNorm transformer layer.
pub(crate) struct Layer {
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    attn_norm: LayerNorm,
    ff_in: Linear,
    ff_out: Linear,
    ff_norm: LayerNorm,
}

impl Layer {
    pub(crate) fn moved_to(self, device: tch::Device) -> Self {
        Self {
            q: self.q.moved_to(device),
            k: self.k.moved_to(device),
            v: self.v.moved_to(device),
            o: self.o.moved_to(device),
            attn_norm: self.attn_norm.moved_to(device),
            ff_in: self.ff_in.moved_to(device),
            ff_out: self.ff_out.moved_to(device),
            ff_norm: self.ff_norm.moved_to(device),
        }
    }

    /// `x` `(B, T, D)` through the layer; `bias` is added to the attention scores (the padding
    /// mask, and a position bias where the model has one).
    ///
    /// # Shapes
    /// `bias`: broadcastable to `(B, H, T, T)`.
    pub(crate) fn forward(&self, x: &Tensor, bias: &Tensor, heads: i64, eps: f64) -> Tensor {
        let (b, t, d) = x.size3().unwrap_or((1, 1, 1));
        let dh = d / heads;
        let split = |y: Tensor| y.view([b, t, heads, dh]).transpose(1, 2); // (B, H, T, Dh)
        let (q, k, v) = (split(self.q.forward(x)), split(self.k.forward(x)), split(self.v.forward(x)));
        let scores = q.matmul(&k.transpose(-2, -1)) / (dh as f64).sqrt() + bias; // (B, H, T, T)
        let ctx = scores.softmax(-1, Kind::Float).matmul(&v).transpose(1, 2).reshape([b, t, -1]); // (B, T, H*Dh)
        let x = self.attn_norm.forward(&(self.o.forward(&ctx) + x), eps);
        let ff = self.ff_out.forward(&self.ff_in.forward(&x).gelu("none"));
        self.ff_norm.forward(&(ff + &x), eps)
    }
}

/// The additive key mask `(B, 1, 1, T)` of a 0/1 mask `(B, T)`, as transformers builds it: 0 on
/// real tokens, the dtype's minimum on padding.
pub(crate) fn padding_bias(mask: &Tensor) -> Tensor {
    let (b, t) = mask.size2().unwrap_or((1, 1));
    let m = mask.to_kind(Kind::Float);
    ((m.ones_like() - m) * f64::from(f32::MIN)).view([b, 1, 1, t])
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
