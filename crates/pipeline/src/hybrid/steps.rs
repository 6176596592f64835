//! The steps of the hybrid loop on the samples it writes ([`Text`]): start the rows, plan
//! what the window lacks, assemble the window's plan and text ([`WindowInput`]), re-encode
//! what was written.

use super::window::{self, DecoderView, DecoderWindow, PlanCall};
use super::{HybridGenerator, Job, Outline};
use crate::text::ends_sentence;
use crate::Result;
use plandiff_data::split_sentences;
use plandiff_decoder::{GenerateOptions, Generated, StopReason, WindowDecoder};
use plandiff_planner::{HostNoise, SoftHold, Steering};
use std::time::Instant;
use tch::{Kind, Tensor};

/// The samples being written: one [`Row`] each, the prompt's `prompt` sentences, and the
/// `total` sentences each will have.
pub(super) struct Text {
    pub rows: Vec<Row>,
    pub prompt: usize,
    pub total: usize,
}

impl Text {
    /// The prompt's tokens, its sentences in order (every row starts from the same prompt).
    pub fn prompt_tokens(&self) -> Vec<i64> {
        self.rows.first().map_or_else(Vec::new, |r| r.sentences[..self.prompt].concat())
    }

    /// The next sentence to write (the first live row's; rows are sentence-aligned), or `None`
    /// when every row has stopped or has all its sentences (those then stop with
    /// [`StopReason::Sentences`]).
    pub fn next_sentence(&mut self) -> Option<usize> {
        let written = self.rows.iter().find(|r| r.stop.is_none())?.sentences.len();
        if written >= self.total {
            self.stop_live(StopReason::Sentences);
            return None;
        }
        Some(written)
    }

    /// Stops every live row for `why`.
    pub fn stop_live(&mut self, why: StopReason) {
        self.rows.iter_mut().filter(|r| r.stop.is_none()).for_each(|r| r.stop = Some(why));
    }

    fn live(&self) -> Vec<&Row> {
        self.rows.iter().filter(|r| r.stop.is_none()).collect()
    }

    pub fn live_mut(&mut self) -> Vec<&mut Row> {
        self.rows.iter_mut().filter(|r| r.stop.is_none()).collect()
    }

    /// The first live row: rows write their windows together, so it says where all stand.
    fn lead(&self) -> Option<&Row> {
        self.rows.iter().find(|r| r.stop.is_none())
    }
}

/// Wall time of a generation and the part spent planning.
#[derive(Default)]
pub(super) struct Timing {
    pub seconds: f64,
    pub planning: f64,
    pub planner_calls: usize,
    /// Encoding the prompt's sentences and re-encoding the written ones (the sample's
    /// `seconds` include both).
    pub encoding: f64,
}

/// What the decoder reads for one window: the text of each of its batch rows (`rows`, indices
/// into [`Text::rows`]), the plan whose slot 0 is sentence `origin`, and its budget.
pub(super) struct WindowInput {
    pub text: Vec<Vec<i64>>,
    pub plan: Tensor,
    pub origin: i64,
    pub rows: Vec<usize>,
    pub options: GenerateOptions,
}

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
    /// `n` samples of `prompt` to write, `job.want` sentences after its own.
    pub(super) fn start_text(&self, prompt: &str, n: usize, job: &Job) -> Result<Text> {
        let mut toks = self.tokenize_sentences(&split_sentences(prompt))?;
        let open = if ends_sentence(prompt) { Vec::new() } else { toks.pop().unwrap_or_default() };
        let rows = self.start_rows(&toks, &open, n, job.oracle.as_ref())?;
        Ok(Text { rows, prompt: toks.len(), total: toks.len() + job.want })
    }

    /// The decoder window that writes sentence `written` of `total`.
    pub(super) fn window(&self, written: usize, total: usize, job: &Job) -> DecoderWindow {
        window::decoder_window(written, total, self.decoder_slots(), self.planner.max_slots(), job.levers.stride())
    }

    /// Plans the sentences of `win` that have no latent yet, in one planner call for every live
    /// row (timed in `timing`).
    pub(super) fn plan_missing(
        &self,
        text: &mut Text,
        win: DecoderWindow,
        job: &Job,
        noise: &mut HostNoise,
        timing: &mut Timing,
    ) -> Result<()> {
        let Some(lead) = text.lead() else { return Ok(()) };
        let written = lead.sentences.len();
        if (written..win.end).all(|i| matches!(lead.planned.get(i), Some(Some(_)))) {
            return Ok(());
        }
        let t0 = Instant::now();
        let call = window::plan_call(written, text.total, win.end, self.planner.max_slots());
        let prompt = text.prompt;
        self.plan_rows(&mut text.live_mut(), call, job, noise, |i| fixed_slot(&job.outline, prompt, i))?;
        timing.planning += t0.elapsed().as_secs_f64();
        timing.planner_calls += 1;
        Ok(())
    }

    /// What the decoder reads for window `win`, or `None` when the token budget is spent. A
    /// decoder that reads the window's text gets the live rows' text in view (cut to fit its
    /// context) and their plan; a sliding session already holds its text and takes the plan of
    /// every row from the oldest sentence its window still reaches.
    pub(super) fn window_input(
        &self,
        text: &Text,
        win: DecoderWindow,
        decoder: &WindowDecoder,
        job: &Job,
    ) -> Result<Option<WindowInput>> {
        let Some(lead) = text.lead() else { return Ok(None) };
        let written = lead.sentences.len();
        let budget = job.max_tokens.saturating_sub(lead.new_tokens.len());
        let input = match decoder.holds_text() {
            Some(held) => {
                let origin = written.saturating_sub(held - 1);
                if budget == 0 {
                    return Ok(None);
                }
                let all: Vec<&Row> = text.rows.iter().collect();
                let plan = self.window_plan(&all, DecoderView::from(origin), written);
                WindowInput {
                    text: Vec::new(),
                    plan,
                    origin: origin as i64,
                    rows: (0..all.len()).collect(),
                    options: self.window_options(budget, win.end - written),
                }
            }
            None => {
                let live = text.live();
                let view = window::pinned_view(win, written, job.levers.pin(), self.decoder_slots());
                let (view, prompts) = self.window_prompts(&live, view, written)?;
                let plan = self.window_plan(&live, view, written);
                let longest = prompts.iter().map(Vec::len).max().unwrap_or(1);
                let max_len = self.ae.decoder.config().max_seq_len as usize;
                let budget = budget.min(max_len.saturating_sub(longest + 1));
                if budget == 0 {
                    return Ok(None);
                }
                let rows = (0..text.rows.len()).filter(|&i| text.rows[i].stop.is_none()).collect();
                WindowInput {
                    text: prompts,
                    plan,
                    origin: view.start as i64,
                    rows,
                    options: self.window_options(budget, win.end - written),
                }
            }
        };
        Ok(Some(input))
    }

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
    fn plan_rows<'a>(
        &self,
        rows: &mut [&mut Row],
        call: PlanCall,
        job: &Job,
        noise: &mut HostNoise,
        fixed: impl Fn(usize) -> Option<&'a Tensor>,
    ) -> Result<()> {
        let PlanCall { from, ctx, new } = call;
        let (opts, candidates, hold) = (job.plan, job.levers.candidates(), job.levers.hold());
        let d = self.planner.d_latent();
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
        // The x0 map: onto the encoder's sphere (--plan-sphere), toward real sentences' norm
        // (--plan-norm), then within the bank's quantiles (--plan-clip) and toward its nearest
        // real sentence (--plan-snap); also applied to the sampled latents.
        let (sphere, bank, norm) = (job.levers.plan_sphere(), job.bank.as_ref(), job.levers.plan_norm());
        let (clip, pull) = (job.levers.plan_clip(), job.levers.plan_snap());
        let mapped = sphere || bank.is_some() || norm > 0.0;
        let map = |z: &Tensor| {
            let z = if sphere { self.plan_enc.to_sphere(z) } else { z.shallow_clone() };
            let z = self.plan_enc.space().to_norm(&z, norm);
            match bank {
                Some(bank) => bank.steer(&z, clip, pull),
                None => z,
            }
        };
        let steer = Steering {
            soft,
            x0: mapped.then_some(&map as &dyn Fn(&Tensor) -> Tensor),
            rescale: job.levers.plan_rescale(),
            noise_scale: job.levers.plan_noise_scale(),
            epsilon_scaling: job.levers.plan_epsilon_scaling(),
        };
        let z =
            self.planner.sample_held(&known, &mask, steer, opts, |shape| noise.sample(shape)).map_err(plan_error)?;
        let z = if mapped { map(&z) } else { z };
        let z = best_candidates(z, n, ctx, new);
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
    pub(super) fn fit_window(&self, rows: &[&Row], start: usize, written: usize, max_len: usize) -> usize {
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
    pub(super) fn window_plan(&self, rows: &[&Row], view: DecoderView, written: usize) -> Tensor {
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

    /// Takes a decoded window (batch row `k` is text row `batch[k]`) into the rows still
    /// writing (a sliding session's batch also holds rows that ended earlier, which wrote
    /// nothing).
    pub(super) fn absorb(&self, text: &mut Text, batch: &[usize], out: &Generated) -> Result<()> {
        let live: Vec<usize> = (0..batch.len()).filter(|&k| text.rows[batch[k]].stop.is_none()).collect();
        let out = Generated {
            tokens: live.iter().map(|&k| out.tokens[k].clone()).collect(),
            stop: live.iter().map(|&k| out.stop[k]).collect(),
        };
        self.absorb_rows(&mut text.live_mut(), &out)
    }

    /// Takes a decoded window into `rows`: new tokens, sentences split at `<sep>` (the open
    /// sentence completed first). The new sentences are re-encoded when a later step reads
    /// them ([`Self::encode_written`]).
    fn absorb_rows(&self, rows: &mut [&mut Row], out: &Generated) -> Result<()> {
        let special = self.special();
        for (k, r) in rows.iter_mut().enumerate() {
            let toks = &out.tokens[k];
            r.new_tokens.extend_from_slice(toks);
            let mut cur = std::mem::take(&mut r.open);
            for &t in toks {
                if t == special.sep as i64 {
                    r.sentences.push(std::mem::take(&mut cur));
                } else if t != special.eos as i64 {
                    cur.push(t);
                }
            }
            if !cur.is_empty() {
                r.sentences.push(cur); // an unfinished last sentence (end of document or token budget)
            }
            if out.stop[k] != StopReason::Sentences {
                r.stop = Some(out.stop[k]);
            }
        }
        Ok(())
    }

    /// Re-encodes, in one batch, every written sentence of `rows` that has no latent yet: the
    /// next window's plan and planner call read them. The last window's sentences are read
    /// only by the plan's adherence figures, which the loop computes once the text is done.
    pub(super) fn encode_written(&self, rows: &mut [&mut Row]) -> Result<()> {
        let fresh: Vec<(usize, usize)> = rows
            .iter()
            .enumerate()
            .flat_map(|(k, r)| (r.latents.len()..r.sentences.len()).map(move |i| (k, i)))
            .collect();
        if fresh.is_empty() {
            return Ok(());
        }
        let sents: Vec<Vec<i64>> = fresh.iter().map(|&(k, i)| rows[k].sentences[i].clone()).collect();
        let z = self.encode(&sents)?;
        for (j, &(k, _)) in fresh.iter().enumerate() {
            rows[k].latents.push(z.get(j as i64)); // in sentence order within each row
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

/// The outline's latent for sentence `i` of a text whose prompt has `prompt` sentences.
fn fixed_slot(outline: &Outline, prompt: usize, i: usize) -> Option<&Tensor> {
    i.checked_sub(prompt).and_then(|k| outline.get(k)?.as_ref()).map(|f| &f.1)
}

/// A planner failure (a window wider than the planner) as a pipeline error.
pub(super) fn plan_error(e: plandiff_planner::PlannerError) -> crate::PipelineError {
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
