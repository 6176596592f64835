//! Logits processors and seeded sampling, on the host.
//!
//! Logits of one row come to the CPU (a few thousand floats) and are processed in this
//! order: repetition penalty (CTRL, Keskar et al. 2019: divide positive logits of seen
//! tokens by the penalty, multiply negative ones), temperature, top-k, top-p (nucleus,
//! Holtzman et al. 2019), then one draw from a seeded ChaCha stream. Sampling on the host
//! makes a seed give the same text on CPU and GPU.

use plandiff_layers::FieldError;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SamplingConfig {
    /// 0 means greedy.
    pub temperature: f64,
    pub top_k: Option<usize>,
    pub top_p: Option<f64>,
    /// 1.0 disables it.
    pub repetition_penalty: f64,
}

impl Default for SamplingConfig {
    fn default() -> Self {
        Self { temperature: 0.8, top_k: Some(50), top_p: Some(0.95), repetition_penalty: 1.1 }
    }
}

impl SamplingConfig {
    /// Checks ranges; the error names the field (the binary shows it as its flag).
    pub fn validate(&self) -> Result<(), FieldError> {
        if !self.temperature.is_finite() || self.temperature < 0.0 {
            return Err(FieldError::new("temperature", self.temperature, "must be a finite number >= 0 (0 = greedy)"));
        }
        if let Some(p) = self.top_p {
            if !(p > 0.0 && p <= 1.0) {
                return Err(FieldError::new("top_p", p, "must be in (0, 1]"));
            }
        }
        if self.top_k == Some(0) {
            return Err(FieldError::new("top_k", 0, "would keep no token; use a value >= 1 or leave it out"));
        }
        if !self.repetition_penalty.is_finite() || self.repetition_penalty <= 0.0 {
            return Err(FieldError::new("repetition_penalty", self.repetition_penalty, "must be > 0 (1 = off)"));
        }
        Ok(())
    }
}

pub struct LogitsProcessor {
    cfg: SamplingConfig,
    rng: ChaCha8Rng,
    /// Scratch for the repetition penalty: which ids this call has already penalized.
    seen: Vec<bool>,
}

impl LogitsProcessor {
    pub fn new(cfg: SamplingConfig, seed: u64) -> Self {
        Self { cfg, rng: ChaCha8Rng::seed_from_u64(seed), seen: Vec::new() }
    }

    /// Draws the next token from `logits` (modified in place); `banned` ids never come out.
    pub fn sample(&mut self, logits: &mut [f32], history: &[i64], banned: &[i64]) -> i64 {
        let c = self.cfg;
        for &b in banned {
            if let Some(l) = logits.get_mut(b as usize) {
                *l = f32::NEG_INFINITY;
            }
        }
        if c.repetition_penalty != 1.0 {
            let p = c.repetition_penalty as f32;
            // Each seen token once: mark it in a vocabulary-sized table kept between calls,
            // and clear only the marks this call set.
            self.seen.resize(self.seen.len().max(logits.len()), false);
            for &h in history {
                if let Some(l) = logits.get_mut(h as usize) {
                    if !std::mem::replace(&mut self.seen[h as usize], true) {
                        *l = if *l > 0.0 { *l / p } else { *l * p };
                    }
                }
            }
            for &h in history {
                if let Some(m) = self.seen.get_mut(h as usize) {
                    *m = false;
                }
            }
        }
        if c.temperature == 0.0 {
            return argmax(logits) as i64;
        }
        // Candidates sorted by logit, descending.
        let mut idx: Vec<usize> = (0..logits.len()).filter(|&i| logits[i].is_finite()).collect();
        if idx.is_empty() {
            return argmax(logits) as i64;
        }
        // Descending logit, ties by id: a total order, so the k first after a selection are
        // the k first of the full sort, and sorting just them gives the same list.
        let order = |&a: &usize, &b: &usize| logits[b].total_cmp(&logits[a]).then(a.cmp(&b));
        if let Some(k) = c.top_k.map(|k| k.max(1)).filter(|&k| k < idx.len()) {
            idx.select_nth_unstable_by(k - 1, order);
            idx.truncate(k);
        }
        idx.sort_unstable_by(order);
        let max = logits[idx[0]] as f64;
        let mut probs: Vec<f64> = idx.iter().map(|&i| ((logits[i] as f64 - max) / c.temperature).exp()).collect();
        let total: f64 = probs.iter().sum();
        probs.iter_mut().for_each(|p| *p /= total);
        if let Some(top_p) = c.top_p {
            let mut cum = 0.0;
            let mut keep = probs.len();
            for (n, p) in probs.iter().enumerate() {
                cum += p;
                if cum >= top_p {
                    keep = n + 1;
                    break;
                }
            }
            probs.truncate(keep);
            idx.truncate(keep);
        }
        let total: f64 = probs.iter().sum();
        let mut u = self.rng.gen::<f64>() * total;
        for (n, p) in probs.iter().enumerate() {
            u -= p;
            if u <= 0.0 {
                return idx[n] as i64;
            }
        }
        idx[idx.len() - 1] as i64
    }
}

fn argmax(v: &[f32]) -> usize {
    let mut best = 0;
    for (i, x) in v.iter().enumerate() {
        if *x > v[best] {
            best = i;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(t: f64, k: Option<usize>, p: Option<f64>, r: f64) -> SamplingConfig {
        SamplingConfig { temperature: t, top_k: k, top_p: p, repetition_penalty: r }
    }

    #[test]
    fn greedy_topk1_and_tiny_top_p_pick_the_argmax() {
        let logits = [0.1f32, 2.0, 1.9, -1.0];
        for c in [cfg(0.0, None, None, 1.0), cfg(1.0, Some(1), None, 1.0), cfg(1.0, None, Some(1e-6), 1.0)] {
            let mut lp = LogitsProcessor::new(c, 0);
            for _ in 0..20 {
                assert_eq!(lp.sample(&mut logits.clone(), &[], &[]), 1);
            }
        }
    }

    #[test]
    fn top_k_restricts_support_and_ban_is_respected() {
        let logits = [3.0f32, 2.9, 2.8, 2.7, 2.6];
        let mut lp = LogitsProcessor::new(cfg(1.0, Some(2), None, 1.0), 3);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..200 {
            seen.insert(lp.sample(&mut logits.clone(), &[], &[0]));
        }
        assert_eq!(seen, [1i64, 2].into_iter().collect());
    }

    #[test]
    fn repetition_penalty_moves_probability_away_from_seen_tokens() {
        let logits = [2.0f32, 1.9];
        let mut lp = LogitsProcessor::new(cfg(0.0, None, None, 1.5), 0);
        assert_eq!(lp.sample(&mut logits.clone(), &[], &[]), 0);
        assert_eq!(lp.sample(&mut logits.clone(), &[0], &[]), 1);
    }

    #[test]
    fn seeded_draws_repeat_and_follow_the_distribution() {
        let logits = [0.0f32, (3.0f32).ln()]; // p = 0.25, 0.75
        let draws = |seed| {
            let mut lp = LogitsProcessor::new(cfg(1.0, None, None, 1.0), seed);
            (0..4000).map(|_| lp.sample(&mut logits.clone(), &[], &[])).collect::<Vec<_>>()
        };
        let a = draws(11);
        assert_eq!(a, draws(11));
        assert_ne!(a, draws(12));
        let frac = a.iter().filter(|&&x| x == 1).count() as f64 / a.len() as f64;
        assert!((frac - 0.75).abs() < 0.03, "{frac}");
    }

    /// The selection of the top k draws exactly what sorting every candidate drew (the
    /// previous code, kept here as the reference), ties and repeated history included.
    #[test]
    fn top_k_selection_draws_what_a_full_sort_draws() {
        fn reference(c: SamplingConfig, rng: &mut ChaCha8Rng, logits: &mut [f32], history: &[i64]) -> i64 {
            let p = c.repetition_penalty as f32;
            let mut seen = std::collections::HashSet::new();
            for &h in history {
                if seen.insert(h) {
                    if let Some(l) = logits.get_mut(h as usize) {
                        *l = if *l > 0.0 { *l / p } else { *l * p };
                    }
                }
            }
            let mut idx: Vec<usize> = (0..logits.len()).filter(|&i| logits[i].is_finite()).collect();
            idx.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]).then(a.cmp(&b)));
            idx.truncate(c.top_k.unwrap_or(usize::MAX).max(1));
            let max = logits[idx[0]] as f64;
            let mut probs: Vec<f64> = idx.iter().map(|&i| ((logits[i] as f64 - max) / c.temperature).exp()).collect();
            let total: f64 = probs.iter().sum();
            probs.iter_mut().for_each(|p| *p /= total);
            let (mut cum, mut keep) = (0.0, probs.len());
            for (n, p) in probs.iter().enumerate() {
                cum += p;
                if cum >= c.top_p.unwrap_or(1.0) {
                    keep = n + 1;
                    break;
                }
            }
            probs.truncate(keep);
            idx.truncate(keep);
            let mut u = rng.gen::<f64>() * probs.iter().sum::<f64>();
            for (n, p) in probs.iter().enumerate() {
                u -= p;
                if u <= 0.0 {
                    return idx[n] as i64;
                }
            }
            idx[idx.len() - 1] as i64
        }
        let mut gen = ChaCha8Rng::seed_from_u64(7);
        for (case, k) in [Some(1), Some(5), Some(50), Some(500), None].into_iter().enumerate() {
            let c = cfg(0.9, k, Some(0.95), 1.3);
            let mut lp = LogitsProcessor::new(c, case as u64);
            let mut rng = ChaCha8Rng::seed_from_u64(case as u64);
            let mut differs_from_argmax = false;
            for _ in 0..300 {
                // Few distinct values: many ties.
                let logits: Vec<f32> = (0..300).map(|_| (gen.gen_range(0..40) as f32) / 8.0 - 2.0).collect();
                let history: Vec<i64> = (0..20).map(|_| gen.gen_range(0..300)).collect();
                let a = lp.sample(&mut logits.clone(), &history, &[]);
                assert_eq!(a, reference(c, &mut rng, &mut logits.clone(), &history), "top-k {k:?}");
                differs_from_argmax |= a != argmax(&logits) as i64;
            }
            assert!(differs_from_argmax || k == Some(1), "top-k {k:?} never sampled");
        }
    }

    #[test]
    fn validation_names_the_flag() {
        assert!(cfg(1.0, None, Some(1.5), 1.0).validate().unwrap_err().as_flag().contains("--top-p 1.5"));
        assert!(cfg(-1.0, None, None, 1.0).validate().unwrap_err().as_flag().contains("--temperature"));
        assert!(cfg(1.0, Some(0), None, 1.0).validate().is_err());
        assert!(SamplingConfig::default().validate().is_ok());
    }
}
