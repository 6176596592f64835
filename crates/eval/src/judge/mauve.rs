//! MAUVE (Pillutla et al. 2021), as the `mauve-text` package computes it from features:
//! L2-normalise the pooled rows of both sets, PCA to the components that hold 90% of the
//! variance, k-means with k = n/10 (the smaller set's n), the two histograms over the
//! clusters, the divergence frontier at 25 mixture weights, and its area with scaling 5.
//! k-means is seeded Lloyd's algorithm with the best of 5 random starts (faiss draws its
//! starts from its own generator, so single runs differ; the score does not by much).

use rand::seq::index::sample;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tch::{Device, Kind, Tensor};

#[derive(Debug, Clone, Copy)]
pub struct MauveOptions {
    /// Variance the PCA keeps.
    pub explained_variance: f64,
    /// Clusters; `None`: max(2, round(min(n_p, n_q) / 10)).
    pub num_buckets: Option<usize>,
    pub kmeans_redo: usize,
    pub kmeans_max_iter: usize,
    /// The constant c of the paper.
    pub scaling: f64,
    /// Points on the divergence frontier.
    pub discretization: usize,
    pub seed: u64,
}

impl Default for MauveOptions {
    fn default() -> Self {
        Self {
            explained_variance: 0.9,
            num_buckets: None,
            kmeans_redo: 5,
            kmeans_max_iter: 500,
            scaling: 5.0,
            discretization: 25,
            seed: 25,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Mauve {
    pub mauve: f64,
    pub num_buckets: usize,
    pub p_hist: Vec<f64>,
    pub q_hist: Vec<f64>,
}

/// Rows L2-normalised, then projected on the principal components that hold
/// `explained` of the variance.
fn pca(rows: &[Vec<f32>], explained: f64) -> Vec<Vec<f64>> {
    let (n, d) = (rows.len() as i64, rows[0].len() as i64);
    let flat: Vec<f64> = rows.iter().flat_map(|r| r.iter().map(|&x| f64::from(x))).collect();
    let x = Tensor::from_slice(&flat).view([n, d]).to_device(Device::Cpu);
    let x = &x / x.norm_scalaropt_dim(2.0, [1], true).clamp_min(1e-300); // (n, d)
    let xc = &x - x.mean_dim([0i64].as_slice(), true, Kind::Double);
    let (_, s, v) = xc.svd(true, true); // v: (d, r), right singular vectors as columns
    let var: Vec<f64> = Vec::try_from(s.square()).unwrap_or_default();
    let total: f64 = var.iter().sum();
    let mut cum = 0.0;
    let mut keep = 1;
    if total > 0.0 {
        for (i, v) in var.iter().enumerate() {
            cum += v / total;
            if cum >= explained {
                keep = i + 1;
                break;
            }
            keep = i + 1;
        }
    }
    let proj = xc.matmul(&v.narrow(1, 0, keep as i64)); // (n, keep)
    (0..n).map(|i| Vec::<f64>::try_from(proj.get(i)).unwrap_or_default()).collect()
}

fn dist2(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

/// One Lloyd run from `k` distinct random rows; returns (objective, labels).
fn lloyd(x: &[Vec<f64>], k: usize, max_iter: usize, rng: &mut ChaCha8Rng) -> (f64, Vec<usize>) {
    let mut centers: Vec<Vec<f64>> = sample(rng, x.len(), k).into_iter().map(|i| x[i].clone()).collect();
    let mut labels = vec![usize::MAX; x.len()];
    for _ in 0..max_iter {
        let mut changed = false;
        for (i, row) in x.iter().enumerate() {
            let best = (0..k).min_by(|&a, &b| dist2(row, &centers[a]).total_cmp(&dist2(row, &centers[b]))).unwrap_or(0);
            changed |= labels[i] != best;
            labels[i] = best;
        }
        if !changed {
            break;
        }
        let d = x[0].len();
        let mut sums = vec![vec![0f64; d]; k];
        let mut counts = vec![0usize; k];
        for (row, &l) in x.iter().zip(&labels) {
            sums[l].iter_mut().zip(row).for_each(|(s, v)| *s += v);
            counts[l] += 1;
        }
        for c in 0..k {
            if counts[c] > 0 {
                centers[c] = sums[c].iter().map(|s| s / counts[c] as f64).collect();
            } else {
                // An empty cluster takes the row farthest from its own center.
                let far = (0..x.len())
                    .max_by(|&a, &b| dist2(&x[a], &centers[labels[a]]).total_cmp(&dist2(&x[b], &centers[labels[b]])));
                if let Some(f) = far {
                    centers[c] = x[f].clone();
                }
            }
        }
    }
    let obj = x.iter().zip(&labels).map(|(r, &l)| dist2(r, &centers[l])).sum();
    (obj, labels)
}

fn kl(p: &[f64], q: &[f64]) -> f64 {
    let mut s = 0.0;
    for (a, b) in p.iter().zip(q) {
        if *a > 0.0 {
            if *b == 0.0 {
                return f64::INFINITY;
            }
            s += a * (a / b).ln();
        }
    }
    s
}

/// Trapezoid area of `y` over `x`, the points taken in increasing `x`.
fn area(x: &[f64], y: &[f64]) -> f64 {
    let mut idx: Vec<usize> = (0..x.len()).collect();
    idx.sort_by(|&a, &b| x[a].total_cmp(&x[b]));
    idx.windows(2).map(|w| (x[w[1]] - x[w[0]]) * (y[w[1]] + y[w[0]]) / 2.0).sum()
}

/// MAUVE of `p` (e.g. human text) against `q` (e.g. generated text), from their features.
pub fn mauve(p: &[Vec<f32>], q: &[Vec<f32>], o: &MauveOptions) -> Result<Mauve, String> {
    if p.is_empty() || q.is_empty() || p[0].is_empty() {
        return Err("MAUVE needs features of both sets".into());
    }
    let data: Vec<Vec<f32>> = q.iter().chain(p).cloned().collect();
    let x = pca(&data, o.explained_variance);
    let auto = ((p.len().min(q.len()) as f64 / 10.0).round() as usize).max(2);
    let k = o.num_buckets.unwrap_or(auto).min(x.len());
    let mut best: Option<(f64, Vec<usize>)> = None;
    for redo in 0..o.kmeans_redo.max(1) {
        let mut rng = ChaCha8Rng::seed_from_u64(o.seed.wrapping_add(2).wrapping_mul(1000).wrapping_add(redo as u64));
        let run = lloyd(&x, k, o.kmeans_max_iter, &mut rng);
        if best.as_ref().is_none_or(|b| run.0 < b.0) {
            best = Some(run);
        }
    }
    let labels = best.map(|b| b.1).unwrap_or_default();
    let hist = |range: std::ops::Range<usize>| {
        let mut h = vec![0f64; k];
        range.clone().for_each(|i| h[labels[i]] += 1.0);
        let n = range.len() as f64;
        h.iter_mut().for_each(|v| *v /= n);
        h
    };
    let (q_hist, p_hist) = (hist(0..q.len()), hist(q.len()..x.len()));
    let m = o.discretization.max(2);
    let (mut xs, mut ys) = (vec![0.0], vec![f64::INFINITY]);
    for i in 0..m {
        let w = 1e-6 + (1.0 - 2e-6) * i as f64 / (m - 1) as f64;
        let r: Vec<f64> = p_hist.iter().zip(&q_hist).map(|(a, b)| w * a + (1.0 - w) * b).collect();
        xs.push(kl(&q_hist, &r));
        ys.push(kl(&p_hist, &r));
    }
    xs.push(f64::INFINITY);
    ys.push(0.0);
    let ex = |v: &[f64]| -> Vec<f64> { v.iter().map(|d| (-o.scaling * d).exp()).collect() };
    let (xs, ys) = (ex(&xs), ex(&ys));
    // A probability-like area in [0, 1]: clamped, as the trapezoids can round past 1 for
    // identical histograms.
    let score = plandiff_layers::bounded::share(0.5 * (area(&xs, &ys) + area(&ys, &xs)));
    Ok(Mauve { mauve: score, num_buckets: k, p_hist, q_hist })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cloud(n: usize, d: usize, shift: f32, seed: u64) -> Vec<Vec<f32>> {
        use rand::Rng;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (0..n).map(|_| (0..d).map(|j| rng.gen::<f32>() - 0.5 + if j == 0 { shift } else { 0.0 }).collect()).collect()
    }

    #[test]
    fn identical_sets_score_one_and_disjoint_near_zero() {
        let a = cloud(100, 8, 0.0, 1);
        let same = mauve(&a, &a, &MauveOptions::default()).unwrap();
        // 1 up to the trapezoids' rounding, and never past it (clamped where computed).
        assert!((same.mauve - 1.0).abs() < 1e-9 && same.mauve <= 1.0, "{}", same.mauve);
        assert_eq!(same.num_buckets, 10);
        let far = mauve(&a, &cloud(100, 8, 50.0, 2), &MauveOptions::default()).unwrap();
        assert!(far.mauve < 0.05, "{}", far.mauve);
        let s1 = mauve(&a, &cloud(100, 8, 0.3, 3), &MauveOptions::default()).unwrap().mauve;
        let s2 = mauve(&a, &cloud(100, 8, 0.3, 3), &MauveOptions::default()).unwrap().mauve;
        assert_eq!(s1, s2, "seeded");
        assert!(far.mauve < s1 && s1 < same.mauve);
    }
}
