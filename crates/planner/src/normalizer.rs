//! Latent normalizer: per-dimension mean and standard deviation of the training latents, so
//! the planner's diffusion runs on zero-mean, unit-variance coordinates. Fitted once on the
//! frozen encoder's latents and stored with the planner's weights (`normalizer.mean`,
//! `normalizer.std`, not trained).

use tch::{nn, Kind, Tensor};

#[derive(Debug)]
pub struct LatentNormalizer {
    mean: Tensor,
    std: Tensor,
}

impl LatentNormalizer {
    /// Identity statistics under `p` (filled by [`LatentNormalizer::fit`] or by loading).
    pub fn new(p: nn::Path, d_latent: i64) -> Self {
        Self { mean: p.zeros_no_train("mean", &[d_latent]), std: p.ones_no_train("std", &[d_latent]) }
    }

    /// Sets the statistics from latents `(N, d_latent)`; a dimension that never varies keeps
    /// std 1 (floor 1e-4), so it is only centred.
    pub fn fit(&mut self, latents: &Tensor) {
        tch::no_grad(|| {
            let z = latents.to_kind(Kind::Double);
            let mean = z.mean_dim(0, false, Kind::Double);
            let std = z.std_dim(0, false, false);
            let std = std.where_self(&std.gt(1e-4), &std.ones_like());
            self.mean.copy_(&mean);
            self.std.copy_(&std);
        });
    }

    /// `(z - mean) / std`, any leading shape.
    pub fn normalize(&self, z: &Tensor) -> Tensor {
        (z - &self.mean) / &self.std
    }

    /// Inverse of [`LatentNormalizer::normalize`].
    pub fn denormalize(&self, x: &Tensor) -> Tensor {
        x * &self.std + &self.mean
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    #[test]
    fn fit_standardizes_and_round_trips() {
        let vs = nn::VarStore::new(Device::Cpu);
        let mut n = LatentNormalizer::new(vs.root() / "normalizer", 3);
        let raw = Tensor::randn([4000, 3], (Kind::Float, Device::Cpu)) * Tensor::from_slice(&[0.1f32, 2.0, 0.0])
            + Tensor::from_slice(&[5.0f32, -1.0, 0.3]);
        n.fit(&raw);
        let x = n.normalize(&raw);
        let m: Vec<f32> = Vec::try_from(x.mean_dim(0, false, Kind::Float)).unwrap();
        let s: Vec<f32> = Vec::try_from(x.std_dim(0, false, false)).unwrap();
        assert!(m.iter().all(|v| v.abs() < 1e-3), "{m:?}");
        assert!((s[0] - 1.0).abs() < 1e-3 && (s[1] - 1.0).abs() < 1e-3, "{s:?}");
        assert!(s[2].abs() < 1e-6, "a constant dimension stays constant (std 1 floor): {s:?}");
        assert!((n.denormalize(&x) - &raw).abs().max().double_value(&[]) < 1e-4);
        // Stored as non-trainable variables: saved with the weights, never optimized.
        let vars = vs.variables();
        assert!(vars.contains_key("normalizer.mean") && vars.contains_key("normalizer.std"));
        assert!(vs.trainable_variables().is_empty());
    }
}
