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

use crate::ngram::penalize_repeated_ngrams;
pub use crate::ngram::NgramPenalty;

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SamplingConfig {
    /// 0 means greedy.
    pub temperature: f64,
    pub top_k: Option<usize>,
    pub top_p: Option<f64>,
    /// 1.0 disables it.
    pub repetition_penalty: f64,
    /// Soft no-repeat n-grams; `None` is the mode's default (off, except where a bundle stores
    /// one for its mode: `hybrid`'s `ngram`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ngram: Option<NgramPenalty>,
}

impl Default for SamplingConfig {
    fn default() -> Self {
        Self { temperature: 0.8, top_k: Some(50), top_p: Some(0.95), repetition_penalty: 1.1, ngram: None }
    }
}

impl SamplingConfig {
    /// Greedy decoding: the argmax, no penalty.
    pub const fn greedy() -> Self {
        Self { temperature: 0.0, top_k: None, top_p: None, repetition_penalty: 1.0, ngram: None }
    }

    /// This config with `default` as its n-gram penalty where it has none (a mode's default).
    pub fn or_ngram(self, default: Option<NgramPenalty>) -> Self {
        Self { ngram: self.ngram.or(default), ..self }
    }

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
        if let Some(n) = &self.ngram {
            n.validate()?;
        }
        Ok(())
    }
}

pub struct LogitsProcessor {
    cfg: SamplingConfig,
    rng: ChaCha8Rng,
    /// Scratch for the repetition penalty: which ids this call has already penalized.
    seen: Vec<bool>,
    /// The ids the n-gram penalty may lower (by id; `None`: every id). See
    /// [`LogitsProcessor::with_word_starts`].
    ngram_targets: Option<std::sync::Arc<[bool]>>,
    /// N-grams the penalty leaves alone: the prompt's ([`LogitsProcessor::exempting`]).
    ngram_exempt: std::collections::HashSet<Vec<i64>>,
}

impl LogitsProcessor {
    pub fn new(cfg: SamplingConfig, seed: u64) -> Self {
        Self {
            cfg,
            rng: ChaCha8Rng::seed_from_u64(seed),
            seen: Vec::new(),
            ngram_targets: None,
            ngram_exempt: Default::default(),
        }
    }

    /// The n-gram penalty lowers only these ids (by id, `true`: a token that begins a word),
    /// so it moves the text to another word and never respells one: a word's later pieces
    /// follow its first, and lowering one of them turns the word into an invented one.
    pub fn with_word_starts(mut self, starts: std::sync::Arc<[bool]>) -> Self {
        self.ngram_targets = Some(starts);
        self
    }

    /// The n-gram penalty never lowers a token that would repeat an n-gram of `text` (the
    /// prompt, an outline's lines: the text may say again what it was given; it is its own
    /// n-grams that it should not repeat). Each call adds to the exempt n-grams.
    pub fn exempting(mut self, text: &[i64]) -> Self {
        if let Some(n) = self.cfg.ngram.map(|n| n.size) {
            self.ngram_exempt.extend(text.windows(n).map(<[i64]>::to_vec));
        }
        self
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
        if let Some(n) = c.ngram.filter(|n| n.penalty > 0.0) {
            let only = self.ngram_targets.as_deref();
            penalize_repeated_ngrams(logits, history, n, only, &self.ngram_exempt);
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
        SamplingConfig { temperature: t, top_k: k, top_p: p, repetition_penalty: r, ..SamplingConfig::default() }
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

    /// A token that would repeat an n-gram of the history loses the penalty, once however
    /// often the n-gram occurred; other tokens keep their logits; infinity bans it.
    #[test]
    fn ngram_penalty_lowers_only_tokens_that_repeat_an_ngram() {
        let with = |size, penalty| SamplingConfig {
            ngram: Some(NgramPenalty { size, penalty, allow: 0, grow: false }),
            ..cfg(0.0, None, None, 1.0)
        };
        let logits = [0.0f32, 0.0, 2.0, 1.5, 0.0];
        // After `1`, `2` followed twice: the bigram (1, 2) would repeat.
        let history = [1i64, 2, 4, 1, 2, 0, 1];
        let bigram = NgramPenalty { size: 2, penalty: 1.0, allow: 0, grow: false };
        let mut out = logits;
        penalize_repeated_ngrams(&mut out, &history, bigram, None, &Default::default());
        assert_eq!(out, [0.0, 0.0, 1.0, 1.5, 0.0]);
        assert_eq!(LogitsProcessor::new(with(2, 1.0), 0).sample(&mut logits.clone(), &history, &[]), 3);
        assert_eq!(LogitsProcessor::new(with(2, 0.3), 0).sample(&mut logits.clone(), &history, &[]), 2);
        assert_eq!(LogitsProcessor::new(with(2, f64::INFINITY), 0).sample(&mut logits.clone(), &history, &[]), 3);
        // (1, 2) came twice: one free occurrence still penalises it, two do not.
        for (allow, want) in [(1, 1.0), (2, 2.0)] {
            let mut out = logits;
            penalize_repeated_ngrams(&mut out, &history, NgramPenalty { allow, ..bigram }, None, &Default::default());
            assert_eq!(out, [0.0, 0.0, want, 1.5, 0.0], "allow {allow}");
        }
        // Growing: (1, 2) came twice, so 2 x 0.5, or 1 x 0.5 past one free occurrence.
        for (allow, want) in [(0, 1.0), (1, 1.5)] {
            let mut out = logits;
            let grown = NgramPenalty { allow, grow: true, penalty: 0.5, ..bigram };
            penalize_repeated_ngrams(&mut out, &history, grown, None, &Default::default());
            assert_eq!(out, [0.0, 0.0, want, 1.5, 0.0], "grow, allow {allow}");
        }
        let allowing = |allow| SamplingConfig { ngram: Some(NgramPenalty { allow, ..bigram }), ..with(2, 1.0) };
        assert_eq!(LogitsProcessor::new(allowing(2), 0).sample(&mut logits.clone(), &history, &[]), 2);
        assert!(allowing(64).validate().is_ok() && allowing(65).validate().is_err());
        // Trigrams: (0, 1) never came before, so nothing repeats.
        assert_eq!(LogitsProcessor::new(with(3, 9.0), 0).sample(&mut logits.clone(), &history, &[]), 2);
        // Unigrams: every token of the history.
        let mut out = logits;
        penalize_repeated_ngrams(&mut out, &history, NgramPenalty { size: 1, ..bigram }, None, &Default::default());
        assert_eq!(out, [-1.0, -1.0, 1.0, 1.5, -1.0]);
        // Only the word starts: id 2 continues a word, so it is never lowered.
        let starts: std::sync::Arc<[bool]> = vec![true, true, false, true, true].into();
        let mut lp = LogitsProcessor::new(with(2, 1.0), 0).with_word_starts(starts);
        assert_eq!(lp.sample(&mut logits.clone(), &history, &[]), 2);
        // The prompt's n-grams are exempt: (1, 2) was the prompt's.
        let mut lp = LogitsProcessor::new(with(2, 1.0), 0).exempting(&[1, 2]);
        assert_eq!(lp.sample(&mut logits.clone(), &history, &[]), 2);
        let mut lp = LogitsProcessor::new(with(2, 1.0), 0).exempting(&[2, 1]);
        assert_eq!(lp.sample(&mut logits.clone(), &history, &[]), 3);
        // Each call adds to the exempt n-grams (hybrid's prompt, then an outline's lines).
        let mut lp = LogitsProcessor::new(with(2, 1.0), 0).exempting(&[1, 2]).exempting(&[2, 1]);
        assert_eq!(lp.sample(&mut logits.clone(), &history, &[]), 2);
        assert!(
            with(0, 1.0).validate().is_err() && with(2, -1.0).validate().is_err() && with(17, 1.0).validate().is_err()
        );
        assert!(with(2, f64::INFINITY).validate().is_ok());
        // A mode's default fills only a config that has none.
        let (mine, theirs) = (
            NgramPenalty { size: 3, penalty: 0.5, allow: 0, grow: false },
            NgramPenalty { size: 2, penalty: 1.0, allow: 1, grow: true },
        );
        assert_eq!(SamplingConfig::default().or_ngram(Some(theirs)).ngram, Some(theirs));
        assert_eq!(with(3, 0.5).or_ngram(Some(theirs)).ngram, Some(mine));
        assert_eq!(SamplingConfig::default().or_ngram(None).ngram, None);
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
