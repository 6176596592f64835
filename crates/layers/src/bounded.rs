//! Metrics that are bounded in mathematics stay inside their bounds in floating point.
//!
//! A cosine of a vector with itself is 1 on paper, but the rounding of its dot product and
//! norms (which differs by BLAS kernel, instruction set and thread count) can give
//! 1.0000000141 on one machine and 0.9999999 on another. Every cosine the project reports (the
//! judge's relevance, coherence, first-last and outline adherence, plan adherence, plan-space
//! figures) is clamped to [-1, 1] where it is computed, and every share or probability to
//! [0, 1], so that a report never shows 1.00000001 and a range check holds on any hardware.
//! NaN (an undefined score, such as coherence of one sentence) passes through unchanged.

use tch::Tensor;

/// `x` clamped to [-1, 1], the range of a cosine; NaN stays NaN.
pub fn cosine(x: f64) -> f64 {
    x.clamp(-1.0, 1.0)
}

/// `x` clamped to [0, 1], the range of a share or a probability; NaN stays NaN.
pub fn share(x: f64) -> f64 {
    x.clamp(0.0, 1.0)
}

/// Cosine of unit vectors, accumulated in f64 and clamped to [-1, 1].
pub fn unit_cosine(a: &[f32], b: &[f32]) -> f64 {
    cosine(a.iter().zip(b).map(|(x, y)| f64::from(*x) * f64::from(*y)).sum())
}

/// `Tensor::cosine_similarity` along `dim`, clamped to [-1, 1].
///
/// # Shapes
/// `a`, `b`: broadcastable; the result drops `dim`.
pub fn cosine_similarity(a: &Tensor, b: &Tensor, dim: i64) -> Tensor {
    Tensor::cosine_similarity(a, b, dim, 1e-8).clamp(-1.0, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    /// A deterministic stream of f32 vectors in [-1, 1) (a 64-bit LCG, so no seed differs by
    /// platform).
    fn vectors(d: usize) -> impl Iterator<Item = Vec<f32>> {
        let mut s: u64 = 0x9e37_79b9_7f4a_7c15;
        std::iter::repeat_with(move || {
            (0..d)
                .map(|_| {
                    s = s.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
                    ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
                })
                .collect()
        })
    }

    #[test]
    fn a_unit_vector_with_itself_rounds_past_one_and_is_clamped() {
        // f32 unit vectors whose f64 self-dot exceeds 1: about half of them do.
        let over = vectors(384)
            .take(1000)
            .map(|v| {
                let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
                v.iter().map(|x| x / n).collect::<Vec<f32>>()
            })
            .find(|u| u.iter().map(|x| f64::from(*x) * f64::from(*x)).sum::<f64>() > 1.0)
            .expect("some f32 unit vector's f64 self-dot rounds past 1");
        assert_eq!(unit_cosine(&over, &over), 1.0);
        let neg: Vec<f32> = over.iter().map(|x| -x).collect();
        assert_eq!(unit_cosine(&over, &neg), -1.0);
    }

    #[test]
    fn tensor_cosine_of_a_vector_with_itself_is_clamped() {
        // Rows whose raw f32 cosine with themselves exceeds 1 (found in the stream, so the
        // test shows the clamp doing work on this machine's kernels, whichever they are).
        let rows: Vec<f32> = vectors(384).take(256).flatten().collect();
        let x = Tensor::from_slice(&rows).view([256, 384]).to_device(Device::Cpu);
        let raw = Tensor::cosine_similarity(&x, &x, -1, 1e-8);
        let clamped = cosine_similarity(&x, &x, -1);
        let raw_max = raw.max().double_value(&[]);
        assert!(clamped.max().double_value(&[]) <= 1.0);
        assert!(clamped.min().double_value(&[]) >= 1.0 - 1e-6, "a vector with itself: cosine 1 up to rounding");
        if raw_max > 1.0 {
            assert_eq!(clamped.max().double_value(&[]), 1.0);
        }
        // In f64 too.
        let x64 = x.to_kind(Kind::Double);
        assert!(cosine_similarity(&x64, &x64, -1).max().double_value(&[]) <= 1.0);
    }

    #[test]
    fn scalars_clamp_and_nan_passes() {
        assert_eq!(cosine(1.000_000_014_179_612_6), 1.0);
        assert_eq!(cosine(-1.000_000_1), -1.0);
        assert_eq!(cosine(0.25), 0.25);
        assert!(cosine(f64::NAN).is_nan());
        assert_eq!((share(1.0 + 1e-12), share(-1e-15), share(0.5)), (1.0, 0.0, 0.5));
        assert!(share(f64::NAN).is_nan());
    }
}
