//! Position-wise feed-forward network: `fc2(gelu(fc1(x)))`, exact (erf) GELU.

use crate::InitStd;
use tch::{nn, nn::Module, Tensor};

#[derive(Debug)]
pub struct Mlp {
    fc1: nn::Linear,
    fc2: nn::Linear,
}

impl Mlp {
    pub fn new(p: nn::Path, d_model: i64, d_ff: i64, init: InitStd) -> Self {
        Self {
            fc1: nn::linear(&p / "fc1", d_model, d_ff, init.linear(init.proj)),
            fc2: nn::linear(&p / "fc2", d_ff, d_model, init.linear(init.resid)),
        }
    }

    /// # Shapes
    /// - `x`: `(B, T, D)` -> `(B, T, D)`
    pub fn forward(&self, x: &Tensor) -> Tensor {
        self.fc2.forward(&self.fc1.forward(x).gelu("none"))
    }
}
