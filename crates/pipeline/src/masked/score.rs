//! What revision asks of a change before it keeps it: that it raises a score of the whole
//! text. Two scores: the bundle's AR model's log-likelihood of the text (`ar`: another model
//! than the one that proposed the change, one forward pass per candidate) or the masked
//! model's own pseudo-log-likelihood less each word's prior (`pll`: one forward pass per
//! token, and biased towards the model's own proposals).

use super::revision::ReviseScore;
use super::MaskedGenerator;
use crate::{PipelineError, Result};
use plandiff_bundle::{stage, Bundle};
use plandiff_decoder::Decoder;
use std::path::Path;
use tch::{nn, Kind, Tensor};

/// Candidate words a revision tries at a one-token word: the masked model's likeliest.
const ONE_TOKEN_CANDIDATES: i64 = 4;

/// The bundle's AR model, scoring whole texts.
pub(crate) struct ArScorer {
    model: Decoder,
    _vs: nn::VarStore,
}

impl MaskedGenerator {
    /// Loads the bundle's `ar` model for [`ReviseScore::Ar`] (the same tokenizer: a bundle
    /// holds one).
    pub fn with_ar_scorer(mut self, bundle: &Path) -> Result<Self> {
        let l = Bundle::new(bundle).load_decoder(stage::AR, self.device).map_err(|e| {
            PipelineError::Invalid(format!(
                "revise --score ar reads the bundle's ar model: {e} (train it, or use --score pll)"
            ))
        })?;
        self.ar = Some(ArScorer { model: l.model, _vs: l.vs });
        Ok(self)
    }

    /// The texts a revision tries for the word at positions `span` of `ids`: for a one-token
    /// word, the masked model's [`ONE_TOKEN_CANDIDATES`] likeliest other tokens there (the
    /// rest of the text in view); for a longer word, its refill. Texts equal to `ids` are
    /// left out.
    pub(super) fn proposals(
        &self,
        ids: &[i64],
        span: &[usize],
        s: &super::revision::EditSettings,
        seed: u64,
    ) -> Result<Vec<Vec<i64>>> {
        let &[at] = span else {
            let cand = self.refill(ids, span, s, seed)?;
            return Ok(if cand == ids { Vec::new() } else { vec![cand] });
        };
        let mut x = ids.to_vec();
        x[at] = self.mask_id();
        let x = Tensor::from_slice(&x).unsqueeze(0).to_device(self.device);
        let logits = tch::no_grad(|| self.logits(&x)).get(0).get(at as i64).to_kind(Kind::Float);
        let mut top = self.top_other(&logits, ids[at])?;
        if self.reads_visible() {
            // The model that was trained on substitutes also names, with the word in view,
            // what it most likely replaced ("cat" read in "the cat barked" -> "dog").
            let x = Tensor::from_slice(ids).unsqueeze(0).to_device(self.device);
            let seen = tch::no_grad(|| self.logits(&x)).get(0).get(at as i64).to_kind(Kind::Float);
            for t in self.top_other(&seen, ids[at])? {
                if !top.contains(&t) {
                    top.push(t);
                }
            }
        }
        Ok(top
            .into_iter()
            .map(|t| {
                let mut c = ids.to_vec();
                c[at] = t;
                c
            })
            .collect())
    }

    /// [`Self::scores`] less each token's log-probability with every word masked (its prior
    /// at that position): how much better its context explains it than nothing does. A change
    /// to a merely more frequent word ("fox" -> "dog") gains nothing here; a word that fits its
    /// context where the old one did not ("was sky" -> "was sad") does.
    pub(super) fn context_scores(&self, ids: &[i64], doc: &super::revision::Doc) -> Result<Vec<(usize, f64)>> {
        let scored = self.scores(ids, doc)?;
        let mut blank = ids.to_vec();
        scored.iter().for_each(|&(i, _)| blank[i] = self.mask_id());
        let x = Tensor::from_slice(&blank).to_device(self.device).unsqueeze(0);
        let prior = tch::no_grad(|| self.logits(&x))
            .squeeze_dim(0)
            .to_kind(tch::Kind::Double)
            .log_softmax(-1, tch::Kind::Double);
        let at: Vec<i64> = scored.iter().map(|&(i, _)| i as i64).collect();
        let tok: Vec<i64> = scored.iter().map(|&(i, _)| ids[i]).collect();
        let idx = Tensor::from_slice(&at).to_device(self.device);
        let t = Tensor::from_slice(&tok).to_device(self.device).unsqueeze(1);
        let p = prior.index_select(0, &idx).gather(1, &t, false).squeeze_dim(1).to_device(tch::Device::Cpu);
        let p =
            Vec::<f64>::try_from(p).map_err(|e| PipelineError::Invalid(format!("scoring the text's tokens: {e}")))?;
        Ok(scored.into_iter().zip(p).map(|((i, lp), q)| (i, lp - q)).collect())
    }

    /// The score a revision raises ([`ReviseScore`]) of `ids`, the tokens of `doc`.
    /// Per position of `ids` (0 where nothing is scored), each of the score's models: `ar` the
    /// AR model's log-probability of each token after its prefix, `visible` the masked model's
    /// in view, `pll` each word token's context score.
    pub(super) fn token_scores(
        &self,
        score: ReviseScore,
        ids: &[i64],
        doc: &super::revision::Doc,
    ) -> Result<Vec<Vec<f64>>> {
        let visible = || -> Result<Vec<f64>> {
            let lp = self.visible_logprobs(ids)?;
            Ok((0..ids.len()).map(|i| if doc.sentence[i].is_some() { lp[i] } else { 0.0 }).collect())
        };
        Ok(match score {
            ReviseScore::Ar => vec![self.ar_token_logprobs(ids)?],
            ReviseScore::Pll => {
                let mut v = vec![0.0; ids.len()];
                self.context_scores(ids, doc)?.into_iter().for_each(|(i, x)| v[i] = x);
                vec![v]
            }
            ReviseScore::Visible => vec![visible()?],
            ReviseScore::ArVisible => vec![self.ar_token_logprobs(ids)?, visible()?],
        })
    }

    /// Two numbers: `ar+visible` gives both models' scores, the others one and 0.
    pub(super) fn text_score(&self, score: ReviseScore, ids: &[i64], doc: &super::revision::Doc) -> Result<(f64, f64)> {
        // The sum of each model's token scores ([`Self::token_scores`]), one pass each.
        let sums: Vec<f64> = self.token_scores(score, ids, doc)?.iter().map(|v| v.iter().sum()).collect();
        Ok((sums.first().copied().unwrap_or(0.0), sums.get(1).copied().unwrap_or(0.0)))
    }

    pub(super) fn round_report(
        &self,
        round: usize,
        (pll, gain): (f64, f64),
        scored: &[(usize, f64)],
        pick: &[usize],
        before: &[i64],
        after: &[i64],
    ) -> Result<super::revision::ReviseRound> {
        let piece = |t: i64| self.tokenizer.decode(&[t as u32]);
        let mut tokens = Vec::with_capacity(scored.len());
        for &(i, lp) in scored {
            let re = pick.contains(&i);
            let after = if re { Some(piece(after[i])?) } else { None };
            tokens.push(super::revision::ScoredToken {
                index: i,
                text: piece(before[i])?,
                logprob: lp,
                remasked: re,
                after,
            });
        }
        Ok(super::revision::ReviseRound { round, remasked: pick.len(), pll, gain, tokens })
    }

    /// The [`ONE_TOKEN_CANDIDATES`] likeliest tokens of `logits` `(V,)` other than `current`
    /// and the special tokens.
    pub(super) fn top_other(&self, logits: &Tensor, current: i64) -> Result<Vec<i64>> {
        let logits = logits.copy();
        for b in self.banned(true, true).into_iter().chain([current, self.mask_id()]) {
            if b >= 0 && b < logits.size()[0] {
                let _ = logits.get(b).fill_(f64::NEG_INFINITY);
            }
        }
        let top = logits.topk(ONE_TOKEN_CANDIDATES, 0, true, true).1.to_device(tch::Device::Cpu);
        Vec::<i64>::try_from(top).map_err(|e| PipelineError::Invalid(format!("revise candidates: {e}")))
    }

    /// Whether the model was trained to read errors in view (`substitute_prob > 0`): its
    /// logits at an unmasked position say what the token there most likely was, so one pass
    /// scores every token ([`Self::visible_logprobs`]) and names candidates for it.
    pub(super) fn reads_visible(&self) -> bool {
        self.config.reads_visible()
    }

    /// `log p(ids[i] | ids)` at every position, in one pass with nothing masked.
    pub(super) fn visible_logprobs(&self, ids: &[i64]) -> Result<Vec<f64>> {
        let x = Tensor::from_slice(ids).unsqueeze(0).to_device(self.device);
        let lp = tch::no_grad(|| self.logits(&x)).squeeze_dim(0).log_softmax(-1, Kind::Double);
        let got = lp.gather(1, &x.squeeze_dim(0).clamp_max(lp.size()[1] - 1).unsqueeze(1), false).squeeze_dim(1);
        Vec::<f64>::try_from(got.to_device(tch::Device::Cpu))
            .map_err(|e| PipelineError::Invalid(format!("scoring the text's tokens: {e}")))
    }

    /// Per position of `ids`: `log p(ids[i] | ids[..i])` under the AR model (0 at `<bos>`).
    pub(super) fn ar_token_logprobs(&self, ids: &[i64]) -> Result<Vec<f64>> {
        let ar = self
            .ar
            .as_ref()
            .ok_or_else(|| PipelineError::Invalid("internal: revise --score ar without the ar model loaded".into()))?;
        let max = ar.model.config().max_seq_len as usize;
        if ids.len() < 2 || ids.len() > max {
            return Err(PipelineError::Invalid(format!(
                "the text is {} tokens and the ar model scores at most {max}; use --score pll",
                ids.len()
            )));
        }
        let x = Tensor::from_slice(&ids[..ids.len() - 1]).unsqueeze(0).to_device(self.device);
        let y = Tensor::from_slice(&ids[1..]).to_device(self.device);
        let lp = tch::no_grad(|| {
            let lp = ar.model.forward(&x, None, None, false).squeeze_dim(0).log_softmax(-1, Kind::Double);
            lp.gather(1, &y.unsqueeze(1), false).squeeze_dim(1).to_device(tch::Device::Cpu)
        });
        let lp = Vec::<f64>::try_from(lp).map_err(|e| PipelineError::Invalid(format!("scoring the text: {e}")))?;
        Ok(std::iter::once(0.0).chain(lp).collect())
    }
}

/// The scored tokens to remask: below `below`, or the lowest `fraction` (at least one).
pub(super) fn pick_weakest(scored: &[(usize, f64)], below: Option<f64>, fraction: Option<f64>) -> Vec<usize> {
    let mut pick: Vec<usize> = match (below, fraction) {
        (Some(p), _) => scored.iter().filter(|(_, lp)| *lp < p).map(|(i, _)| *i).collect(),
        (None, Some(f)) => {
            let mut by: Vec<(usize, f64)> = scored.to_vec();
            by.sort_by(|a, b| a.1.total_cmp(&b.1));
            let n = ((f * scored.len() as f64).ceil() as usize).clamp(1, scored.len());
            by.into_iter().take(n).map(|(i, _)| i).collect()
        }
        (None, None) => Vec::new(),
    };
    pick.sort_unstable();
    pick
}
