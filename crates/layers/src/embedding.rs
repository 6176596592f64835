//! Position and timestep embeddings.

use tch::{nn, Device, Kind, Tensor};

/// Learned absolute positions, `max_len x d`.
#[derive(Debug)]
pub struct LearnedPositions {
    table: nn::Embedding,
    max_len: i64,
}

impl LearnedPositions {
    pub fn new(p: nn::Path, max_len: i64, dim: i64) -> Self {
        let cfg = nn::EmbeddingConfig { ws_init: nn::Init::Randn { mean: 0.0, stdev: 0.02 }, ..Default::default() };
        Self { table: nn::embedding(p, max_len, dim, cfg), max_len }
    }

    pub fn max_len(&self) -> i64 {
        self.max_len
    }

    /// # Shapes
    /// - `positions`: any integer shape `S` -> `S x d`
    pub fn forward(&self, positions: &Tensor) -> Tensor {
        tch::nn::Module::forward(&self.table, positions)
    }
}

/// Sinusoidal embedding of (possibly fractional) positions or diffusion timesteps,
/// "Attention Is All You Need" section 3.5: `[sin(t w_i), cos(t w_i)]`,
/// `w_i = 10000^(-i / (dim/2))`. Computed in f64 on the host, returned as f32.
///
/// # Shapes
/// - `t`: `(N,)` -> `(N, dim)`
pub fn sinusoidal_embedding(t: &[f64], dim: usize, device: Device) -> Tensor {
    let half = dim / 2;
    let mut out = Vec::with_capacity(t.len() * dim);
    for &ti in t {
        let freqs = (0..half).map(|i| ti * (-(10000f64.ln()) * i as f64 / half as f64).exp());
        let f: Vec<f64> = freqs.collect();
        out.extend(f.iter().map(|a| a.sin() as f32));
        out.extend(f.iter().map(|a| a.cos() as f32));
        if dim % 2 == 1 {
            out.push(0.0);
        }
    }
    Tensor::from_slice(&out).view([t.len() as i64, dim as i64]).to_kind(Kind::Float).to_device(device)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sinusoidal_position_zero_is_sin0_cos0() {
        let e = sinusoidal_embedding(&[0.0, 1.0], 8, Device::Cpu);
        assert_eq!(e.size(), vec![2, 8]);
        let row0: Vec<f32> = Vec::try_from(e.get(0)).unwrap();
        assert_eq!(&row0[..4], &[0.0; 4]);
        assert_eq!(&row0[4..], &[1.0; 4]);
        let row1: Vec<f32> = Vec::try_from(e.get(1)).unwrap();
        assert!((row1[0] - 1f32.sin()).abs() < 1e-6);
    }
}
