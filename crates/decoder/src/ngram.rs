//! The soft no-repeat n-gram penalty of token sampling (`--ngram-penalty`, `--ngram-size`,
//! `--ngram-allow`, `--ngram-grow`); `LogitsProcessor` applies it (its tests are there).

use plandiff_layers::FieldError;
use serde::{Deserialize, Serialize};

/// Soft no-repeat n-grams (HF's `no_repeat_ngram_size`, softened): a token that would complete
/// an n-gram of `size` tokens already in the text (prompt included) more than `allow` times
/// loses `penalty` from its logit, once however often the n-gram occurred (or, with `grow`,
/// `penalty` for each occurrence past `allow`); an infinite penalty bans it (HF's rule, with
/// `allow` 0).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NgramPenalty {
    pub size: usize,
    pub penalty: f64,
    /// Occurrences an n-gram may have before repeating it costs the penalty: 0 penalises the
    /// first repeat, 1 lets each n-gram come twice (as stories repeat "the little girl").
    #[serde(default, skip_serializing_if = "is_zero")]
    pub allow: usize,
    /// The penalty times the occurrences past `allow`, so a phrase template pays more each
    /// time it comes back while a single repeat pays little.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub grow: bool,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

impl NgramPenalty {
    /// Checks ranges (1 to 16 tokens, a penalty >= 0, at most 64 free occurrences).
    pub fn validate(&self) -> Result<(), FieldError> {
        if !(1..=16).contains(&self.size) {
            return Err(FieldError::new("ngram_size", self.size, "must be from 1 to 16 tokens"));
        }
        if self.penalty.is_nan() || self.penalty < 0.0 {
            return Err(FieldError::new("ngram_penalty", self.penalty, "must be >= 0 (0: off, inf: never repeat)"));
        }
        if self.allow > 64 {
            return Err(FieldError::new("ngram_allow", self.allow, "must be from 0 to 64 occurrences"));
        }
        Ok(())
    }
}

/// Lowers by `ngram.penalty` (once each) the logit of every token that would complete an
/// n-gram found more than `ngram.allow` times in `history`: a token that followed an earlier
/// occurrence of the history's last `n - 1` tokens.
pub(crate) fn penalize_repeated_ngrams(
    logits: &mut [f32],
    history: &[i64],
    ngram: NgramPenalty,
    only: Option<&[bool]>,
    exempt: &std::collections::HashSet<Vec<i64>>,
) {
    let (n, penalty) = (ngram.size, ngram.penalty as f32);
    if history.len() < n {
        return;
    }
    let tail = &history[history.len() + 1 - n..];
    let mut hit: Vec<i64> =
        (0..=history.len() - n).filter(|&i| history[i..i + n - 1] == *tail).map(|i| history[i + n - 1]).collect();
    hit.sort_unstable();
    // Each token once, with its occurrences past `allow` (kept when there are some).
    let mut counted: Vec<(i64, usize)> = Vec::with_capacity(hit.len());
    for run in hit.chunk_by(|a, b| a == b) {
        if run.len() > ngram.allow {
            counted.push((run[0], run.len() - ngram.allow));
        }
    }
    counted.retain(|&(t, _)| only.is_none_or(|o| o.get(t as usize).copied().unwrap_or(true)));
    if !exempt.is_empty() {
        let mut gram = tail.to_vec();
        gram.push(0);
        counted.retain(|&(t, _)| {
            gram[n - 1] = t;
            !exempt.contains(&gram)
        });
    }
    for (t, past) in counted {
        if let Some(l) = logits.get_mut(t as usize) {
            *l -= if ngram.grow { penalty * past as f32 } else { penalty };
        }
    }
}
