//! Rotary position embedding (RoPE, Su et al. 2021): queries and keys are rotated by an angle
//! proportional to their position, so a score depends only on the distance between the two.
//! That is what lets a decoder drop its oldest cache entries and keep every other one as it is:
//! nothing in the cache depends on where the window starts.
//!
//! The rotation pairs dimension `i` with `i + Dh/2` (GPT-NeoX layout):
//! `rot(x) = x * cos + rotate_half(x) * sin`, `rotate_half([x1, x2]) = [-x2, x1]`,
//! angle `p * base^(-2i / Dh)`. Angles are computed in f64 on the host, so a position of a
//! few thousand loses no precision before the cast.

use tch::{Device, Kind, Tensor};

/// The cosines and sines of a set of positions, built once per forward and shared by every
/// block's self-attention.
#[derive(Debug)]
pub struct Rotary {
    /// `(B|1, 1, T, Dh)`
    cos: Tensor,
    /// `(B|1, 1, T, Dh)`
    sin: Tensor,
}

impl Rotary {
    /// Angles of `positions`, row-major `(rows, t)`, for heads of width `head_dim` (even).
    pub fn new(positions: &[i64], rows: i64, t: i64, head_dim: i64, base: f64, device: Device) -> Self {
        assert!(head_dim % 2 == 0, "rotary positions need an even head width (checked by config validation)");
        assert_eq!(positions.len() as i64, rows * t, "positions must be (rows, t)");
        let half = (head_dim / 2) as usize;
        let inv: Vec<f64> = (0..half).map(|i| base.powf(-2.0 * i as f64 / head_dim as f64)).collect();
        let mut cos = Vec::with_capacity(positions.len() * 2 * half);
        let mut sin = Vec::with_capacity(positions.len() * 2 * half);
        for &p in positions {
            for _ in 0..2 {
                for w in &inv {
                    let a = p as f64 * w;
                    cos.push(a.cos() as f32);
                    sin.push(a.sin() as f32);
                }
            }
        }
        let shape = [rows, 1, t, head_dim];
        Self {
            cos: Tensor::from_slice(&cos).view(shape).to_device(device),
            sin: Tensor::from_slice(&sin).view(shape).to_device(device),
        }
    }

    /// Positions `0..t` for every row.
    pub fn arange(t: i64, head_dim: i64, base: f64, device: Device) -> Self {
        let pos: Vec<i64> = (0..t).collect();
        Self::new(&pos, 1, t, head_dim, base, device)
    }

    /// The positions' rotation of queries or keys.
    ///
    /// # Shapes
    /// - `x`: `(B, H, T, Dh)` -> `(B, H, T, Dh)`
    pub fn apply(&self, x: &Tensor) -> Tensor {
        let half = x.size()[3] / 2;
        let rotated = Tensor::cat(&[-x.narrow(3, half, half), x.narrow(3, 0, half)], 3);
        let (cos, sin) = if x.kind() == Kind::Float {
            (self.cos.shallow_clone(), self.sin.shallow_clone())
        } else {
            (self.cos.to_kind(x.kind()), self.sin.to_kind(x.kind()))
        };
        x * cos + rotated * sin
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_depend_only_on_the_distance() {
        tch::manual_seed(3);
        let (q, k) = (
            Tensor::randn([1, 2, 1, 8], (Kind::Float, Device::Cpu)),
            Tensor::randn([1, 2, 1, 8], (Kind::Float, Device::Cpu)),
        );
        let score = |pq: i64, pk: i64| {
            let rq = Rotary::new(&[pq], 1, 1, 8, 10000.0, Device::Cpu).apply(&q);
            let rk = Rotary::new(&[pk], 1, 1, 8, 10000.0, Device::Cpu).apply(&k);
            (rq * rk).sum(Kind::Float).double_value(&[])
        };
        let a = score(7, 3);
        assert!((a - score(1007, 1003)).abs() < 1e-4, "{a} vs {}", score(1007, 1003));
        assert!((a - score(6, 3)).abs() > 1e-4, "another distance, another score");
        // Position 0 is the identity; the rotation keeps norms.
        let r0 = Rotary::arange(1, 8, 10000.0, Device::Cpu).apply(&q);
        assert!(r0.allclose(&q, 0.0, 0.0, false));
        let r = Rotary::new(&[123], 1, 1, 8, 10000.0, Device::Cpu).apply(&q);
        assert!((r.norm().double_value(&[]) - q.norm().double_value(&[])).abs() < 1e-5);
    }
}
