//! The steps of the hybrid loop on the samples it writes: start the rows, plan the window,
//! assemble the window's plan, re-encode what was written.

use super::window::{self, DecoderView, PlanCall};
use super::HybridGenerator;
use crate::Result;
use plandiff_decoder::{Generated, StopReason};
use plandiff_planner::{HostNoise, PlanSampling, SoftHold};
use tch::{Kind, Tensor};

/// One sample's text as sentences of token ids (no `<sep>`), and its latents.
pub(super) struct Row {
    pub sentences: Vec<Vec<i64>>,
    /// Encoder latents of `sentences` (`(d,)` each).
    pub latents: Vec<Tensor>,
    /// Planned latents by sentence index.
    pub planned: Vec<Option<Tensor>>,
    /// Tokens of the prompt's unfinished last sentence, completed by the first window.
    pub open: Vec<i64>,
    pub new_tokens: Vec<i64>,
    pub stop: Option<StopReason>,
}

impl HybridGenerator {
    /// `n` rows holding the prompt's sentences `toks` (and its open sentence), their
    /// latents, and, for the oracle arm, the reference plan `(N, d)` after them.
    pub(super) fn start_rows(
        &self,
        toks: &[Vec<i64>],
        open: &[i64],
        n: usize,
        oracle: Option<&Tensor>,
    ) -> Result<Vec<Row>> {
        let latents = self.encode(toks)?;
        let known: Vec<Tensor> = (0..toks.len() as i64).map(|i| latents.get(i)).collect();
        let planned: Vec<Option<Tensor>> = match oracle {
            Some(z) => {
                let z = z.to_device(self.device).to_kind(Kind::Float);
                let mut p: Vec<Option<Tensor>> = (0..toks.len()).map(|_| None).collect();
                p.extend((0..z.size()[0]).map(|k| Some(z.get(k))));
                p
            }
            None => Vec::new(),
        };
        Ok((0..n)
            .map(|_| Row {
                sentences: toks.to_vec(),
                latents: known.iter().map(Tensor::shallow_clone).collect(),
                planned: planned.iter().map(|z| z.as_ref().map(Tensor::shallow_clone)).collect(),
                open: open.to_vec(),
                new_tokens: Vec::new(),
                stop: None,
            })
            .collect())
    }

    /// Plans sentences `[call.from, call.from + call.new)` of every row, conditioned on the
    /// latents of the `call.ctx` sentences before `call.from` and on the outline's `fixed`
    /// slots. With `candidates` > 1, that many plans are sampled per row (one batch) and the
    /// one whose new latents are closest (mean cosine) to the mean of the context latents is
    /// kept. With `hold` below 1, fixed slots are held for that fraction of the planner's steps
    /// and then refined with the rest (their planned latent is the refined one).
    pub(super) fn plan_rows<'a>(
        &self,
        rows: &mut [&mut Row],
        call: PlanCall,
        opts: PlanSampling,
        (candidates, hold): (usize, f64),
        noise: &mut HostNoise,
        fixed: impl Fn(usize) -> Option<&'a Tensor>,
    ) -> Result<()> {
        let PlanCall { from, ctx, new } = call;
        let d = self.planner.model.denoiser.d_latent;
        let s = ctx + new;
        let mut known = Vec::with_capacity(rows.len());
        for r in rows.iter() {
            let mut slots: Vec<Tensor> = r.latents[from - ctx..from].iter().map(Tensor::shallow_clone).collect();
            slots.extend((0..new).map(|k| match fixed(from + k) {
                Some(z) => z.to_device(self.device).to_kind(Kind::Float),
                None => Tensor::zeros([d], (Kind::Float, self.device)),
            }));
            known.push(Tensor::stack(&slots, 0));
        }
        let k = candidates.max(1) as i64;
        let known = Tensor::stack(&known, 0).repeat([k, 1, 1]); // (K*B, S, d): candidate c of row i at c*B + i
                                                                // Known: the context, and the outline's fixed slots (inpainted around).
        let outline: Vec<bool> = (0..s).map(|k| k >= ctx && fixed(from + k - ctx).is_some()).collect();
        let mask: Vec<bool> = (0..s).map(|k| k < ctx || outline[k]).collect();
        let n = rows.len() as i64;
        let rows_mask = |m: &[bool]| {
            Tensor::from_slice(m).view([1, s as i64]).expand([k * n, s as i64], false).to_device(self.device)
        };
        let mask = rows_mask(&mask);
        let refine = hold < 1.0 && outline.iter().any(|&o| o);
        let soft_mask = refine.then(|| rows_mask(&outline));
        let soft = soft_mask.as_ref().map(|soft| SoftHold { soft, hold });
        let z = self.planner.sample_held(&known, &mask, soft, opts, |shape| noise.sample(shape)).map_err(plan_error)?;
        let z = best_candidates(self.bounded(z), n, ctx, new);
        for (i, r) in rows.iter_mut().enumerate() {
            if r.planned.len() < from + new {
                r.planned.resize_with(from + new, || None);
            }
            for k in 0..new {
                let z = match fixed(from + k) {
                    Some(f) if !refine => f.shallow_clone(),
                    _ => z.get(i as i64).get((ctx + k) as i64),
                };
                r.planned[from + k] = Some(z);
            }
        }
        Ok(())
    }

    /// The decoder's plan `(S_d, d)` for the sentences of `view`: `slot(i)` for the view's
    /// sentence `i` where it gives a latent, the null plan's entry elsewhere.
    pub(super) fn slots_plan(&self, view: DecoderView, slot: impl Fn(usize) -> Option<Tensor>) -> Tensor {
        let null = self.ae.null_plan();
        let slots: Vec<Tensor> =
            (0..self.decoder_slots()).map(|k| slot(view.sentence(k)).unwrap_or_else(|| null.get(k as i64))).collect();
        Tensor::stack(&slots, 0).to_kind(null.kind())
    }

    /// The window's first sentence once every row's text in view leaves room for a sentence
    /// (a quarter of the context) in the decoder's `max_len` (see [`window::fit_start`]).
    pub(super) fn fit_window(&self, rows: &[&mut Row], start: usize, written: usize, max_len: usize) -> usize {
        rows.iter()
            .map(|r| {
                let lens: Vec<usize> = r.sentences.iter().map(Vec::len).collect();
                window::fit_start(start, written, &lens, r.open.len(), max_len / 4, max_len)
            })
            .max()
            .unwrap_or(start)
    }

    /// The decoder's plan `(B, S_d, d)` for the sentences of `view`: written sentences' own
    /// latents, planned latents after them.
    pub(super) fn window_plan(&self, rows: &[&mut Row], view: DecoderView, written: usize) -> Tensor {
        let plans: Vec<Tensor> = rows
            .iter()
            .map(|r| {
                self.slots_plan(view, |i| {
                    if i < written {
                        r.latents.get(i).map(Tensor::shallow_clone) // a row that ended has fewer
                    } else {
                        r.planned.get(i).and_then(|z| z.as_ref().map(Tensor::shallow_clone))
                    }
                })
            })
            .collect();
        Tensor::stack(&plans, 0)
    }

    /// Takes a decoded window into the rows: new tokens, sentences split at `<sep>` (the
    /// open sentence completed first), each new sentence re-encoded in one batch.
    pub(super) fn absorb(&self, rows: &mut [&mut Row], out: &Generated) -> Result<()> {
        let sp = self.sp();
        let mut fresh: Vec<(usize, usize)> = Vec::new(); // (row, sentence index)
        for (k, r) in rows.iter_mut().enumerate() {
            let toks = &out.tokens[k];
            r.new_tokens.extend_from_slice(toks);
            let mut cur = std::mem::take(&mut r.open);
            for &t in toks {
                if t == sp.sep as i64 {
                    r.sentences.push(std::mem::take(&mut cur));
                    fresh.push((k, r.sentences.len() - 1));
                } else if t != sp.eos as i64 {
                    cur.push(t);
                }
            }
            if !cur.is_empty() {
                // An unfinished last sentence (end of document or token budget).
                r.sentences.push(cur);
                fresh.push((k, r.sentences.len() - 1));
            }
            if out.stop[k] != StopReason::Sentences {
                r.stop = Some(out.stop[k]);
            }
        }
        if fresh.is_empty() {
            return Ok(());
        }
        let sents: Vec<Vec<i64>> = fresh.iter().map(|&(k, i)| rows[k].sentences[i].clone()).collect();
        let z = self.encode(&sents)?;
        for (j, &(k, i)) in fresh.iter().enumerate() {
            if rows[k].latents.len() == i {
                rows[k].latents.push(z.get(j as i64));
            }
        }
        Ok(())
    }
}

/// Of `z` `(K*B, S, d)`, each row's candidate whose new slots (after `ctx`) have the
/// highest mean cosine to the mean of its context slots: `(B, S, d)`.
pub(super) fn best_candidates(z: Tensor, rows: i64, ctx: usize, new: usize) -> Tensor {
    let k = z.size()[0] / rows.max(1);
    if k <= 1 || ctx == 0 {
        return z.narrow(0, 0, rows);
    }
    let d = z.size()[2];
    let z4 = z.view([k, rows, -1, d]); // (K, B, S, d)
    let context = z4.narrow(2, 0, ctx as i64).mean_dim([2i64].as_slice(), true, Kind::Float); // (K, B, 1, d)
    let planned = z4.narrow(2, ctx as i64, new as i64); // (K, B, new, d)
    let score = Tensor::cosine_similarity(&planned, &context, -1, 1e-8).mean_dim([2i64].as_slice(), false, Kind::Float); // (K, B)
    let best = score.argmax(0, false); // (B,)
    let idx = &best * rows + Tensor::arange(rows, (tch::Kind::Int64, best.device()));
    z.index_select(0, &idx)
}

/// A planner failure (a window wider than the planner) as a pipeline error.
pub(super) fn plan_error(e: plandiff_bundle::ModelConfigError) -> crate::PipelineError {
    crate::PipelineError::Invalid(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::best_candidates;
    use tch::Tensor;

    #[test]
    fn the_candidate_closest_to_the_context_is_kept() {
        // K = 2 candidates, B = 2 rows, S = 2 slots (1 context, 1 new), d = 2.
        let z = Tensor::from_slice(&[
            1.0f32, 0.0, 0.0, 1.0, // candidate 0, row 0: new slot orthogonal to its context
            0.0, 1.0, 0.0, 1.0, // candidate 0, row 1: new slot along its context
            1.0, 0.0, 1.0, 0.1, // candidate 1, row 0: new slot close to its context
            0.0, 1.0, 1.0, 0.0, // candidate 1, row 1: orthogonal
        ])
        .view([4, 2, 2]);
        let best = best_candidates(z.shallow_clone(), 2, 1, 1);
        let want = Tensor::stack(&[z.get(2), z.get(1)], 0);
        assert!(best.allclose(&want, 0.0, 0.0, false), "{best}");
        // One candidate, or no context: the first candidates, unchanged.
        assert!(best_candidates(z.narrow(0, 0, 2), 2, 1, 1).allclose(&z.narrow(0, 0, 2), 0.0, 0.0, false));
        assert_eq!(best_candidates(z.shallow_clone(), 2, 0, 2).size(), vec![2, 2, 2]);
    }
}
