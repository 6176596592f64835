//! Paired statistics of an A/B: per-prompt differences between two arms, a percentile
//! bootstrap 95% confidence interval of their mean, and a two-sided paired permutation test
//! (random sign flips). Both are seeded, so a report is reproducible.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

#[derive(Debug, Clone, Copy, Serialize)]
pub struct PairedTest {
    /// Prompts with a value in both arms.
    pub n: usize,
    /// Mean of `a - b`.
    pub diff: f64,
    pub ci_low: f64,
    pub ci_high: f64,
    /// Two-sided p-value of "no difference": `(1 + #{|mean of flipped| >= |observed|}) / (1 + R)`.
    pub p_value: f64,
}

impl PairedTest {
    /// Whether the interval excludes zero.
    pub fn significant(&self) -> bool {
        self.n > 1 && (self.ci_low > 0.0 || self.ci_high < 0.0)
    }
}

fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.iter().sum::<f64>() / v.len() as f64
}

/// Linear-interpolated quantile of sorted values (NumPy's default).
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let pos = q * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

/// Paired test of `a[i] - b[i]` over the pairs where both are finite.
pub fn paired(a: &[f64], b: &[f64], resamples: usize, seed: u64) -> PairedTest {
    let d: Vec<f64> = a.iter().zip(b).filter(|(x, y)| x.is_finite() && y.is_finite()).map(|(x, y)| x - y).collect();
    let n = d.len();
    let obs = mean(&d);
    if n == 0 {
        return PairedTest { n, diff: f64::NAN, ci_low: f64::NAN, ci_high: f64::NAN, p_value: f64::NAN };
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut boots: Vec<f64> =
        (0..resamples).map(|_| (0..n).map(|_| d[rng.gen_range(0..n)]).sum::<f64>() / n as f64).collect();
    boots.sort_by(f64::total_cmp);
    let (ci_low, ci_high) =
        if boots.is_empty() { (obs, obs) } else { (quantile(&boots, 0.025), quantile(&boots, 0.975)) };
    let tol = 1e-12 * obs.abs().max(1.0);
    let extreme = (0..resamples)
        .filter(|_| {
            let m = d.iter().map(|&x| if rng.gen::<bool>() { x } else { -x }).sum::<f64>() / n as f64;
            m.abs() >= obs.abs() - tol
        })
        .count();
    PairedTest { n, diff: obs, ci_low, ci_high, p_value: (1 + extreme) as f64 / (1 + resamples) as f64 }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Gaussian draws from a seeded stream.
    fn normal(rng: &mut ChaCha8Rng, n: usize, mu: f64) -> Vec<f64> {
        (0..n)
            .map(|_| {
                let (u1, u2): (f64, f64) = (rng.gen::<f64>().max(1e-300), rng.gen());
                mu + (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
            })
            .collect()
    }

    #[test]
    fn no_difference_is_rarely_significant() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut small_p = 0;
        let mut covered = 0;
        let runs = 100;
        for r in 0..runs {
            let a = normal(&mut rng, 40, 0.0);
            let b = normal(&mut rng, 40, 0.0);
            let t = paired(&a, &b, 1000, r);
            if t.p_value < 0.05 {
                small_p += 1;
            }
            if t.ci_low <= 0.0 && 0.0 <= t.ci_high {
                covered += 1;
            }
        }
        assert!(small_p <= 12, "p < 0.05 in {small_p} of {runs} null runs");
        assert!(covered >= 85, "the 95% interval covered 0 in {covered} of {runs} runs");
    }

    #[test]
    fn planted_difference_is_found() {
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let mut found = 0;
        for r in 0..20 {
            let b = normal(&mut rng, 40, 0.0);
            let a: Vec<f64> = b.iter().zip(normal(&mut rng, 40, 0.8)).map(|(x, e)| x + e).collect();
            let t = paired(&a, &b, 1000, r);
            assert!((t.diff - (a.iter().sum::<f64>() - b.iter().sum::<f64>()) / 40.0).abs() < 1e-9);
            if t.significant() && t.p_value < 0.01 && t.ci_low > 0.0 {
                found += 1;
            }
        }
        assert!(found >= 19, "the planted difference was found in {found} of 20 runs");
    }

    #[test]
    fn skips_missing_pairs_and_is_seeded() {
        let a = [1.0, f64::NAN, 3.0, 4.0];
        let b = [0.0, 1.0, 1.0, 1.0];
        let t = paired(&a, &b, 500, 9);
        assert_eq!(t.n, 3);
        assert!((t.diff - (1.0 + 2.0 + 3.0) / 3.0).abs() < 1e-12);
        let u = paired(&a, &b, 500, 9);
        assert_eq!((t.ci_low, t.ci_high, t.p_value), (u.ci_low, u.ci_high, u.p_value));
        assert!(paired(&[], &[], 10, 0).diff.is_nan());
    }
}
