//! MDLM / LLaDA's absorbing-state objective, as pure functions of the draws so each piece
//! is tested on hand-computed cases.

use tch::{Kind, Tensor};

/// `n` times in `[0, 1)`, antithetic (MDLM's low-discrepancy sampler): `t_i = (u + i / n) mod 1`
/// for one uniform draw `u`, so a batch covers the unit interval evenly.
pub fn antithetic_times(n: usize, u: f64) -> Vec<f64> {
    (0..n).map(|i| (u + i as f64 / n as f64).fract()).collect()
}

/// The probability that a token is masked at time `t`: `(1 - eps) t + eps` (never 0, so the
/// weight `1 / p` stays finite).
pub fn mask_prob(t: f64, eps: f64) -> f64 {
    (1.0 - eps) * t + eps
}

/// The weighted cross-entropy of MDLM / LLaDA:
/// `sum_{b, l} masked[b, l] * CE(logits[b, l], targets[b, l]) / p[b]`, divided by `B x L`.
///
/// # Shapes
/// - `logits`: `(B, L, V)`; `targets`: `(B, L)` int64; `masked`: `(B, L)` bool; `p`: `B` values.
pub fn weighted_masked_loss(logits: &Tensor, targets: &Tensor, masked: &Tensor, p: &[f64]) -> Tensor {
    let v = logits.size().last().copied().unwrap_or(1);
    let ce = logits
        .reshape([-1, v])
        .to_kind(Kind::Float)
        .cross_entropy_loss::<Tensor>(&targets.reshape(-1), None, tch::Reduction::None, -100, 0.0)
        .view_as(targets); // (B, L)
    let inv_p: Vec<f32> = p.iter().map(|&p| (1.0 / p) as f32).collect();
    let w = Tensor::from_slice(&inv_p).to_device(logits.device()).view([-1, 1]); // (B, 1)
    (ce * masked.to_kind(Kind::Float) * w).sum(Kind::Float) / targets.numel().max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    #[test]
    fn times_are_antithetic_and_mask_prob_is_affine() {
        assert_eq!(antithetic_times(4, 0.1), vec![0.1, 0.35, 0.6, 0.85]);
        let t = antithetic_times(4, 0.9);
        assert!((t[1] - 0.15).abs() < 1e-12 && t.iter().all(|&x| (0.0..1.0).contains(&x)), "{t:?}");
        assert!((mask_prob(0.0, 1e-3) - 1e-3).abs() < 1e-15);
        assert!((mask_prob(1.0, 1e-3) - 1.0).abs() < 1e-15);
        assert!((mask_prob(0.5, 1e-3) - 0.5005).abs() < 1e-12);
    }

    #[test]
    fn loss_weights_masked_positions_by_one_over_p() {
        // Uniform logits over V = 4: the cross-entropy is ln 4 at every position.
        let logits = Tensor::zeros([2, 3, 4], (Kind::Float, Device::Cpu));
        let targets = Tensor::from_slice(&[0i64, 1, 2, 3, 0, 1]).view([2, 3]);
        let masked = Tensor::from_slice(&[true, false, true, false, true, false]).view([2, 3]);
        // Row 0: two masked at p = 0.5; row 1: one masked at p = 0.25. (2/0.5 + 1/0.25) ln4 / 6.
        let got = weighted_masked_loss(&logits, &targets, &masked, &[0.5, 0.25]).double_value(&[]);
        let want = (2.0 / 0.5 + 1.0 / 0.25) * 4f64.ln() / 6.0;
        assert!((got - want).abs() < 1e-5, "{got} vs {want}");
        // A confident right answer costs ~0 whatever its weight; unmasked positions cost nothing.
        let sure = Tensor::from_slice(&[0f32, 0.0, 0.0, 0.0, 50.0, 0.0, 0.0, 0.0]).view([1, 2, 4]);
        let t = Tensor::from_slice(&[3i64, 0]).view([1, 2]);
        let m = Tensor::from_slice(&[false, true]).view([1, 2]);
        assert!(weighted_masked_loss(&sure, &t, &m, &[0.01]).double_value(&[]) < 1e-6);
        // The same wrong answer at a lower p weighs more.
        let m2 = Tensor::from_slice(&[true, false]).view([1, 2]);
        let hi = weighted_masked_loss(&sure, &t, &m2, &[0.1]).double_value(&[]);
        let lo = weighted_masked_loss(&sure, &t, &m2, &[0.9]).double_value(&[]);
        assert!((hi / lo - 9.0).abs() < 1e-4, "{hi} / {lo}");
    }
}
