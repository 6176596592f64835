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
/// `sum_{b, l} masked[b, l] * CE(logits[b, l], targets[b, l]) / p[b]`, divided by `B x L`,
/// over whole logits (training fuses the head and this loss: [`crate::MaskedLm::weighted_loss`]
/// with [`objective_weights`]; this is its reference).
///
/// # Shapes
/// - `logits`: `(B, L, V)`; `targets`: `(B, L)` int64; `masked`: `(B, L)` bool; `p`: `B` values.
pub fn weighted_masked_loss(logits: &Tensor, targets: &Tensor, masked: &Tensor, p: &[f64]) -> Tensor {
    (token_ce(logits, targets) * objective_weights(masked, p, None)).sum(Kind::Float)
}

/// The cross-entropy of every position, `(B, L)` fp32.
fn token_ce(logits: &Tensor, targets: &Tensor) -> Tensor {
    let v = logits.size().last().copied().unwrap_or(1);
    logits
        .reshape([-1, v])
        .to_kind(Kind::Float)
        .cross_entropy_loss::<Tensor>(&targets.reshape(-1), None, tch::Reduction::None, -100, 0.0)
        .view_as(targets)
}

/// The per-position weights that make [`weighted_masked_loss`] (plus [`substitution_loss`]
/// with `picked`) a weighted sum of cross-entropies, for the fused head and loss
/// ([`crate::MaskedLm::weighted_loss`]): `(masked[b, l] / p[b] + picked[b, l]) / (B x L)`,
/// `(B, L)` fp32.
pub fn objective_weights(masked: &Tensor, p: &[f64], picked: Option<&Tensor>) -> Tensor {
    let inv_p: Vec<f32> = p.iter().map(|&p| (1.0 / p) as f32).collect();
    let w = Tensor::from_slice(&inv_p).to_device(masked.device()).view([-1, 1]); // (B, 1)
    let mut weights = masked.to_kind(Kind::Float) * w;
    if let Some(picked) = picked {
        weights = weights + picked.to_kind(Kind::Float);
    }
    weights / masked.numel().max(1) as f64
}

/// Rows of the neighbour table [`substitute`] reads at a time (a `chunk x V` similarity).
const NEIGHBOUR_CHUNK: i64 = 1024;

/// Each token's `k` nearest other tokens by cosine similarity of the rows of `emb` `(V, D)`:
/// `(V, k)` int64, the closest first ("dog" -> "cat", "tom" -> "tim").
pub fn neighbour_table(emb: &Tensor, k: i64) -> Tensor {
    tch::no_grad(|| {
        let e = emb.to_kind(Kind::Float);
        let e = &e / e.norm_scalaropt_dim(2, [1], true).clamp_min(1e-12);
        let v = e.size()[0];
        let k = k.clamp(1, (v - 1).max(1));
        let mut parts = Vec::new();
        let mut start = 0;
        while start < v {
            let n = NEIGHBOUR_CHUNK.min(v - start);
            let sim = e.narrow(0, start, n).matmul(&e.tr()); // (n, V)
            let own = Tensor::arange_start(start, start + n, (Kind::Int64, e.device())).view([n, 1]);
            let sim = sim.scatter_value(1, &own, f64::NEG_INFINITY);
            parts.push(sim.topk(k, 1, true, true).1);
            start += n;
        }
        Tensor::cat(&parts, 0)
    })
}

/// Realistic corruption of the visible tokens (issue 26; BERT's 80-10-10 with nearer
/// substitutes): each position where `eligible` `(B, L)` holds is picked with probability
/// `q`; a picked position keeps its token (a quarter), or takes a uniform random token, another
/// token of its row, or one of its token's `neighbours` `(V, k)` rows (random when `None`), a
/// quarter each. A substitute that would be `special` stays the original. Returns
/// `(corrupted tokens, picked)`; the loss reads the picked positions (the original is the
/// target). Draws come from libtorch's generator.
pub fn substitute(
    tokens: &Tensor,
    eligible: &Tensor,
    q: f64,
    neighbours: Option<&Tensor>,
    special: &[i64],
) -> (Tensor, Tensor) {
    let (b, l) = (tokens.size()[0], tokens.size()[1]);
    let dev = tokens.device();
    let vocab = neighbours.map(|n| n.size()[0]);
    let picked = Tensor::rand([b, l], (Kind::Float, dev)).lt(q).logical_and(eligible);
    let kind = Tensor::randint(4, [b, l], (Kind::Int64, dev));
    let hi = vocab.unwrap_or_else(|| tokens.max().int64_value(&[]) + 1).max(1);
    let random = Tensor::randint(hi, [b, l], (Kind::Int64, dev));
    let other = tokens.gather(1, &Tensor::randint(l.max(1), [b, l], (Kind::Int64, dev)), false);
    let near = match neighbours {
        Some(n) => {
            let k = n.size()[1];
            let col = Tensor::randint(k.max(1), [b, l], (Kind::Int64, dev));
            n.index_select(0, &tokens.clamp(0, n.size()[0] - 1).view(-1))
                .view([b, l, k])
                .gather(2, &col.unsqueeze(2), false)
                .squeeze_dim(2)
        }
        None => random.shallow_clone(),
    };
    let mut sub = tokens.shallow_clone();
    for (i, cand) in [(1i64, &random), (2, &other), (3, &near)] {
        sub = sub.where_self(&kind.ne(i), cand);
    }
    let mut ok = Tensor::ones([b, l], (Kind::Bool, dev));
    for &s in special {
        ok = ok.logical_and(&sub.ne(s));
    }
    let corrupted = tokens.where_self(&picked.logical_not().logical_or(&ok.logical_not()), &sub);
    (corrupted, picked)
}

/// The cross-entropy of the picked positions of [`substitute`], normalised by `B x L` (the
/// masked loss's normaliser, so the two add).
pub fn substitution_loss(logits: &Tensor, targets: &Tensor, picked: &Tensor) -> Tensor {
    (token_ce(logits, targets) * picked.to_kind(Kind::Float)).sum(Kind::Float) / targets.numel().max(1) as f64
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

    #[test]
    fn neighbours_are_the_closest_other_rows() {
        // Rows 0 and 1 point the same way, 2 and 3 the opposite; 4 is orthogonal to all.
        let e = Tensor::from_slice(&[1f32, 0.0, 0.9, 0.1, -1.0, 0.0, -0.8, -0.1, 0.0, 1.0]).view([5, 2]);
        let n = neighbour_table(&e, 1);
        assert_eq!(Vec::<i64>::try_from(n.view(-1)).unwrap()[..4], [1, 0, 3, 2]);
        assert_eq!(neighbour_table(&e, 9).size(), vec![5, 4], "k is at most V - 1");
    }

    #[test]
    fn substitution_picks_only_eligible_positions_and_never_writes_a_special() {
        tch::manual_seed(7);
        let (b, l) = (64i64, 32i64);
        let tokens = (Tensor::arange(b * l, (Kind::Int64, Device::Cpu)).remainder(20) + 5).view([b, l]);
        let eligible = Tensor::arange(l, (Kind::Int64, Device::Cpu)).ge(4).view([1, l]).expand([b, l], false);
        let nb = (Tensor::arange(25, (Kind::Int64, Device::Cpu)).view([25, 1]) + 1).clamp(0, 24).repeat([1, 2]);
        let special = [0i64, 1, 2, 3];
        let (c, picked) = substitute(&tokens, &eligible, 0.5, Some(&nb), &special);
        let changed = c.ne_tensor(&tokens);
        assert!(
            !bool::try_from(changed.logical_and(&picked.logical_not()).any()).unwrap(),
            "only picked positions change"
        );
        assert!(!bool::try_from(picked.logical_and(&eligible.logical_not()).any()).unwrap());
        for s in special {
            assert!(!bool::try_from(c.eq(s).logical_and(&changed).any()).unwrap(), "no special written");
        }
        let share = picked.sum(Kind::Float).double_value(&[]) / eligible.sum(Kind::Float).double_value(&[]);
        assert!((share - 0.5).abs() < 0.05, "picked share {share}");
        let ch = changed.sum(Kind::Float).double_value(&[]) / picked.sum(Kind::Float).double_value(&[]);
        assert!(ch > 0.55 && ch < 0.8, "about three quarters of the picked change: {ch}");
        // The neighbour kind writes token + 1 (the table's only neighbour).
        let plus1 = c.eq_tensor(&(&tokens + 1)).logical_and(&changed).sum(Kind::Float).double_value(&[]);
        assert!(plus1 / picked.sum(Kind::Float).double_value(&[]) > 0.2, "neighbours used: {plus1}");
        // The loss reads the picked positions only.
        let logits = Tensor::zeros([b, l, 25], (Kind::Float, Device::Cpu));
        let none = Tensor::zeros([b, l], (Kind::Bool, Device::Cpu));
        assert_eq!(substitution_loss(&logits, &tokens, &none).double_value(&[]), 0.0);
        let all = substitution_loss(&logits, &tokens, &eligible.copy()).double_value(&[]);
        assert!((all - 25f64.ln() * 28.0 / 32.0).abs() < 1e-4, "{all}");
    }
}
