//! Rotary position embedding (RoPE, Su et al. 2021): queries and keys are rotated by an angle
//! proportional to their position, so a score depends only on the distance between the two.
//! That is what lets a decoder drop its oldest cache entries and keep every other one as it is:
//! nothing in the cache depends on where the window starts.
//!
//! The rotation pairs dimension `i` with `i + Dh/2` (GPT-NeoX layout):
//! `rot(x) = x * cos + rotate_half(x) * sin`, `rotate_half([x1, x2]) = [-x2, x1]`,
//! angle `p * base^(-2i / Dh)`. Angles are computed in f64, so a position of a few thousand
//! loses no precision before the cast.

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
    /// Angles of `positions` `(B|1, T)` int64, on their device (no copy to the host: a decode
    /// step does not wait on it), for heads of width `head_dim` (even).
    pub fn new(positions: &Tensor, head_dim: i64, base: f64) -> Self {
        assert!(head_dim % 2 == 0, "rotary positions need an even head width (checked by config validation)");
        let (rows, t) = positions.size2().expect("positions must be (B, T)");
        let half = head_dim / 2;
        let inv: Vec<f64> = (0..half).map(|i| base.powf(-2.0 * i as f64 / head_dim as f64)).collect();
        let inv = Tensor::from_slice(&inv).to_device(positions.device());
        let ang = positions.to_kind(Kind::Double).unsqueeze(-1) * inv; // (B, T, Dh/2)
        let ang = Tensor::cat(&[&ang, &ang], -1).view([rows, 1, t, head_dim]);
        Self { cos: ang.cos().to_kind(Kind::Float), sin: ang.sin().to_kind(Kind::Float) }
    }

    /// Positions `0..t` for every row.
    pub fn arange(t: i64, head_dim: i64, base: f64, device: Device) -> Self {
        Self::new(&Tensor::arange(t, (Kind::Int64, device)).unsqueeze(0), head_dim, base)
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
            let at = |p: i64| Tensor::from_slice(&[p]).view([1, 1]);
            let rq = Rotary::new(&at(pq), 8, 10000.0).apply(&q);
            let rk = Rotary::new(&at(pk), 8, 10000.0).apply(&k);
            (rq * rk).sum(Kind::Float).double_value(&[])
        };
        let a = score(7, 3);
        assert!((a - score(1007, 1003)).abs() < 1e-4, "{a} vs {}", score(1007, 1003));
        assert!((a - score(6, 3)).abs() > 1e-4, "another distance, another score");
        // Position 0 is the identity; the rotation keeps norms.
        let r0 = Rotary::arange(1, 8, 10000.0, Device::Cpu).apply(&q);
        assert!(r0.allclose(&q, 0.0, 0.0, false));
        let r = Rotary::new(&Tensor::from_slice(&[123i64]).view([1, 1]), 8, 10000.0).apply(&q);
        assert!((r.norm().double_value(&[]) - q.norm().double_value(&[])).abs() < 1e-5);
    }
}
