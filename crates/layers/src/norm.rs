//! LayerNorm and RMSNorm behind one type, chosen by the model config.

use serde::{Deserialize, Serialize};
use tch::{nn, nn::Module, Kind, Tensor};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NormKind {
    Layer,
    Rms,
}

#[derive(Debug)]
pub enum Norm {
    Layer(nn::LayerNorm),
    /// `x / sqrt(mean(x^2) + eps) * weight` (Zhang & Sennrich 2019).
    Rms {
        weight: Tensor,
        eps: f64,
    },
}

impl Norm {
    pub fn new(p: nn::Path, kind: NormKind, dim: i64) -> Self {
        match kind {
            NormKind::Layer => Norm::Layer(nn::layer_norm(p, vec![dim], Default::default())),
            NormKind::Rms => Norm::Rms { weight: p.ones("weight", &[dim]), eps: 1e-5 },
        }
    }

    pub fn forward(&self, x: &Tensor) -> Tensor {
        match self {
            Norm::Layer(ln) => ln.forward(x),
            Norm::Rms { weight, eps } => {
                let ms = x.pow_tensor_scalar(2).mean_dim(-1, true, Kind::Float);
                x * (ms + *eps).rsqrt() * weight
            }
        }
    }
}
