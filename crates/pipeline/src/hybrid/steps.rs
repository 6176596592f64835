//! The steps of the hybrid loop on the samples it writes: start the rows, plan the window,
//! assemble the window's plan, re-encode what was written.

use super::window::PlanCall;
use super::HybridGenerator;
use crate::Result;
use plandiff_decoder::{Generated, StopReason};
use plandiff_planner::{HostNoise, PlanSampling};
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
    pub(super) fn start_rows(&self, toks: &[Vec<i64>], open: &[i64], n: usize, oracle: Option<&Tensor>) -> Vec<Row> {
        let latents = self.encode(toks);
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
        (0..n)
            .map(|_| Row {
                sentences: toks.to_vec(),
                latents: known.iter().map(Tensor::shallow_clone).collect(),
                planned: planned.iter().map(|z| z.as_ref().map(Tensor::shallow_clone)).collect(),
                open: open.to_vec(),
                new_tokens: Vec::new(),
                stop: None,
            })
            .collect()
    }

    /// Plans sentences `[call.from, call.from + call.new)` of every row, conditioned on the
    /// latents of the `call.ctx` sentences before `call.from`.
    pub(super) fn plan_rows(
        &self,
        rows: &mut [&mut Row],
        call: PlanCall,
        opts: PlanSampling,
        noise: &mut HostNoise,
    ) -> Result<()> {
        let PlanCall { from, ctx, new } = call;
        let d = self.planner.model.denoiser.d_latent;
        let s = ctx + new;
        let mut known = Vec::with_capacity(rows.len());
        for r in rows.iter() {
            let mut slots: Vec<Tensor> = r.latents[from - ctx..from].iter().map(Tensor::shallow_clone).collect();
            slots.extend((0..new).map(|_| Tensor::zeros([d], (Kind::Float, self.device))));
            known.push(Tensor::stack(&slots, 0));
        }
        let known = Tensor::stack(&known, 0);
        let mask: Vec<bool> = (0..s).map(|k| k < ctx).collect();
        let mask = Tensor::from_slice(&mask)
            .view([1, s as i64])
            .expand([rows.len() as i64, s as i64], false)
            .to_device(self.device);
        let z = self.planner.sample(&known, &mask, opts, |shape| noise.sample(shape)).map_err(plan_error)?;
        let z = self.bounded(z);
        for (i, r) in rows.iter_mut().enumerate() {
            if r.planned.len() < from + new {
                r.planned.resize_with(from + new, || None);
            }
            for k in 0..new {
                r.planned[from + k] = Some(z.get(i as i64).get((ctx + k) as i64));
            }
        }
        Ok(())
    }

    /// The decoder's plan `(S_d, d)` for the window starting at sentence `ws`: `slot(i)`
    /// where it gives a latent, the null plan's entry elsewhere.
    pub(super) fn slots_plan(&self, ws: usize, slot: impl Fn(usize) -> Option<Tensor>) -> Tensor {
        let null = self.ae.null_plan();
        let slots: Vec<Tensor> =
            (0..self.decoder_slots()).map(|k| slot(ws + k).unwrap_or_else(|| null.get(k as i64))).collect();
        Tensor::stack(&slots, 0).to_kind(null.kind())
    }

    /// The decoder's plan `(B, S_d, d)` for the window starting at sentence `ws`: written
    /// sentences' own latents, planned latents after them.
    pub(super) fn window_plan(&self, rows: &[&mut Row], ws: usize, written: usize) -> Tensor {
        let plans: Vec<Tensor> = rows
            .iter()
            .map(|r| {
                self.slots_plan(ws, |i| {
                    if i < written {
                        Some(r.latents[i].shallow_clone())
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
    pub(super) fn absorb(&self, rows: &mut [&mut Row], out: &Generated) {
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
            return;
        }
        let sents: Vec<Vec<i64>> = fresh.iter().map(|&(k, i)| rows[k].sentences[i].clone()).collect();
        let z = self.encode(&sents);
        for (j, &(k, i)) in fresh.iter().enumerate() {
            if rows[k].latents.len() == i {
                rows[k].latents.push(z.get(j as i64));
            }
        }
    }
}

/// A planner failure (a window wider than the planner) as a pipeline error.
pub(super) fn plan_error(e: plandiff_bundle::ModelConfigError) -> crate::PipelineError {
    crate::PipelineError::Invalid(e.to_string())
}
