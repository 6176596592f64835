//! Modes `hybrid` and `edit`: plan sentence latents with the diffusion planner, then write
//! each sentence with the plan-conditioned decoder (design sections 1 and 3.4).
//!
//! The loop, in named steps: take the decoder window that holds the next sentence
//! ([`window::decoder_window`]); plan the latents it lacks, conditioned on the latents of
//! the last sentences actually written ([`HybridGenerator::plan_rows`]: re-encoded from the
//! text, so the plan follows what the decoder wrote, not what was planned); assemble the
//! window's plan (written sentences: their own latents; future ones: the planned latents;
//! slots past the end: the null plan) and the decoder's prompt; decode the window's
//! sentences; re-encode what was written ([`HybridGenerator::absorb`]). `edit` reuses the
//! same steps for sentences in the middle of a text.

mod edit;
pub mod outline;
mod output;
mod settings;
mod steps;
pub mod window;

pub use edit::{Edit, RewrittenSentence};
pub use settings::HybridSettings;

use crate::mode::{settings_from, Event, GenRequest, Generation, Generator, Mode};
use crate::text::{ends_sentence, TextStream};
use crate::{PipelineError, Result};
use plandiff_bundle::{load_autoencoder, load_planner, Autoencoder, Bundle, PlanEncoder, Planner};
use plandiff_data::{split_sentences, SpecialIds, TextTokenizer};
use plandiff_decoder::{generate_guided, GenerateOptions, Generated, LogitsProcessor, SlidingSession, StopReason};
use plandiff_layers::FieldError;
use plandiff_planner::{HostNoise, LatentBound, PlanSampling};
use serde_json::json;
use std::path::Path;
use std::time::Instant;
use steps::Row;
use tch::{nn, Device, Tensor};

/// An outline's slots by new sentence: the line and its latent, `None` where the planner fills.
type Outline = Vec<Option<(String, Tensor)>>;

pub const MODE: Mode = Mode {
    name: "hybrid",
    about: "plan sentence latents with the diffusion planner, then decode them (stages `autoencoder` and `planner`)",
    flags: <HybridSettings as clap::Args>::augment_args,
    settings: settings_from::<HybridSettings>,
    load: |path, device| Ok(Box::new(HybridGenerator::load(path, device)?)),
};

pub struct HybridGenerator {
    ae: Autoencoder,
    planner: Planner,
    tokenizer: TextTokenizer,
    device: Device,
    /// The plan space's encoder: a frozen encoder's (an autoencoder trained with
    /// `frozen_encoder`), whose sentences
    /// are encoded by that encoder and normalised by the space, not by the trained encoder.
    plan_enc: PlanEncoder,
    _vs: (nn::VarStore, nn::VarStore),
}

impl HybridGenerator {
    /// Loads `BUNDLE/autoencoder` and `BUNDLE/planner` (every load check applies, and the
    /// planner must have been trained on this autoencoder).
    pub fn load(bundle: &Path, device: Device) -> Result<Self> {
        let b = Bundle::open(bundle)?;
        let ae = load_autoencoder(&b, device)?;
        // The plan space's encoder first: a missing or different one names its fix.
        let plan_enc = PlanEncoder::load(&ae.config, device)?;
        let pl = load_planner(&b, device)?;
        let tokenizer = ae.tokenizer;
        if pl.planner.model.denoiser.d_latent != ae.ae.encoder.config().d_latent {
            return Err(PipelineError::Invalid(format!(
                "{}: planner and autoencoder latent widths differ; retrain the planner",
                bundle.display()
            )));
        }
        Ok(Self { ae: ae.ae, planner: pl.planner, tokenizer, device, plan_enc, _vs: (ae.vs, pl.vs) })
    }

    pub fn planner(&self) -> &Planner {
        &self.planner
    }

    pub fn autoencoder(&self) -> &Autoencoder {
        &self.ae
    }

    fn sp(&self) -> SpecialIds {
        self.tokenizer.special()
    }

    /// Token ids of each sentence as the model saw it in training (one leading space).
    fn tokenize_sentences(&self, sentences: &[&str]) -> Result<Vec<Vec<i64>>> {
        let texts: Vec<String> = sentences.iter().map(|s| format!(" {s}")).collect();
        let enc = self.tokenizer.encode_batch(texts)?;
        Ok(enc.into_iter().map(|s| s.into_iter().map(i64::from).collect()).collect())
    }

    /// Encoder latents `(N, d)` of token sentences: the frozen encoder's, normalised by the
    /// plan space, or the trained encoder's.
    pub fn encode(&self, sentences: &[Vec<i64>]) -> Result<Tensor> {
        if !self.plan_enc.is_frozen() {
            let refs: Vec<&[i64]> = sentences.iter().map(Vec::as_slice).collect();
            return Ok(self.ae.encoder.encode(&refs, self.sp().pad as i64, 64));
        }
        let texts = sentences
            .iter()
            .map(|s| self.tokenizer.decode_text(&s.iter().map(|&t| t as u32).collect::<Vec<_>>()))
            .collect::<std::result::Result<Vec<String>, _>>()?;
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        Ok(self.plan_enc.encode_texts(&self.ae, &self.tokenizer, &refs)?)
    }

    /// Encoder latents of text sentences.
    pub fn encode_text(&self, sentences: &[&str]) -> Result<Tensor> {
        self.encode(&self.tokenize_sentences(sentences)?)
    }

    /// Planned latents kept inside the encoder's range (tanh latents in [-1, 1]).
    fn bounded(&self, z: Tensor) -> Tensor {
        if self.plan_enc.is_frozen() {
            return z; // normalised embeddings: unbounded by design
        }
        match self.ae.encoder.config().bound {
            LatentBound::Tanh => z.clamp(-1.0, 1.0),
            LatentBound::Sphere => z,
        }
    }

    fn decoder_slots(&self) -> usize {
        self.ae.max_slots as usize
    }

    /// The planner's stored sampling defaults with the request's overrides.
    fn plan_sampling(&self, req: &GenRequest) -> Result<PlanSampling> {
        req.settings_as::<HybridSettings>().plan_sampling(self.planner.model.sampling)
    }

    /// The plan a reference continuation gives (the `oracle` arm): its first `want`
    /// sentences' latents `(N, d)`.
    fn reference_plan(&self, reference: &str, want: usize) -> Result<Tensor> {
        let sents = split_sentences(reference);
        let n = sents.len().min(want);
        self.encode_text(&sents[..n])
    }

    /// The text a re-read window shows the decoder, each row's `<bos> ... open sentence`, with
    /// the view cut so that it fits the decoder's context.
    fn window_prompts(
        &self,
        act: &[&mut Row],
        view: window::DecoderView,
        written: usize,
    ) -> Result<(window::DecoderView, Vec<Vec<i64>>)> {
        let (sp, max_len) = (self.sp(), self.ae.decoder.config().max_seq_len as usize);
        let pinned_len = act.iter().map(|r| r.sentences[..view.pinned].iter().map(|s| s.len() + 1).sum::<usize>());
        let room = max_len.saturating_sub(pinned_len.max().unwrap_or(0));
        let view = window::DecoderView { start: self.fit_window(act, view.start, written, room), ..view };
        let prompts: Vec<Vec<i64>> = act
            .iter()
            .map(|r| {
                let seen = r.sentences[..view.pinned].iter().chain(&r.sentences[view.start..written]);
                window::decoder_prompt(sp.bos as i64, sp.sep as i64, seen, &r.open)
            })
            .collect();
        let longest = prompts.iter().map(Vec::len).max().unwrap_or(1);
        if longest + 2 > max_len {
            return Err(PipelineError::Invalid(format!(
                "the open sentence takes {longest} tokens, more than the decoder's context of {max_len}; shorten the prompt's last sentence"
            )));
        }
        Ok((view, prompts))
    }

    /// A sliding decoder's next window: the plan of sentences from `origin` on (every row's; a
    /// session keeps them all), the session writes the window's sentences, and the rows still
    /// writing take them in.
    fn slide(
        &self,
        sess: &mut SlidingSession,
        rows: &mut [Row],
        (origin, written): (usize, usize),
        lp: &mut LogitsProcessor,
        gopts: &GenerateOptions,
        emit: &mut dyn FnMut(usize, i64),
    ) -> Result<()> {
        let active: Vec<usize> = (0..rows.len()).filter(|&i| rows[i].stop.is_none()).collect();
        let plan = self.window_plan(&all_rows(rows), window::DecoderView::from(origin), written);
        let out = sess.write(&self.ae.decoder, &plan, origin as i64, lp, gopts, emit);
        let out = Generated {
            tokens: active.iter().map(|&i| out.tokens[i].clone()).collect(),
            stop: active.iter().map(|&i| out.stop[i]).collect(),
        };
        let mut act: Vec<&mut Row> = rows.iter_mut().filter(|r| r.stop.is_none()).collect();
        self.absorb(&mut act, &out)
    }

    /// The decoder's options for a window that writes `sentences` sentences within `budget`
    /// tokens: every planned slot gets its sentence (the document may not end early).
    fn window_options(&self, budget: usize, sentences: usize) -> GenerateOptions {
        let sp = self.sp();
        GenerateOptions {
            max_new_tokens: budget,
            max_sentences: Some(sentences),
            eos_id: sp.eos as i64,
            sep_id: sp.sep as i64,
            pad_id: sp.pad as i64,
            banned: vec![sp.bos as i64, sp.pad as i64, sp.eos as i64],
        }
    }

    /// Checks a request; returns the plan sampling, the reference plan (`oracle`) or the
    /// outline's fixed slots (`(line, latent)` by new sentence), and the number of sentences
    /// to write.
    fn check(&self, req: &GenRequest) -> Result<(PlanSampling, Option<Tensor>, Outline, usize)> {
        req.gen.sampling.validate()?;
        if req.gen.max_tokens == 0 {
            return Err(FieldError::new("max_tokens", 0, "must be >= 1").into());
        }
        let levers = req.settings_as::<HybridSettings>();
        let outline = match &levers.outline_lines {
            Some(lines) => Some(lines.clone()),
            None => levers.outline.as_deref().map(outline::read_outline).transpose()?,
        };
        if req.prompt.trim().is_empty() && outline.is_none() {
            return Err(PipelineError::Invalid(
                "the prompt is empty; give some text to continue (or an --outline)".into(),
            ));
        }
        self.check_window_levers(&levers)?;
        let plan = self.plan_sampling(req)?;
        let oracle =
            levers.reference.as_ref().map(|r| self.reference_plan(r, req.gen.sentences.unwrap_or(8))).transpose()?;
        let want = match (&oracle, &outline) {
            (Some(_), Some(_)) => {
                return Err(PipelineError::Invalid("an outline and a reference plan exclude each other".into()))
            }
            (Some(z), None) => z.size()[0] as usize,
            (None, Some(o)) => match req.gen.sentences {
                Some(n) if n < o.len() => {
                    return Err(PipelineError::Invalid(format!(
                        "--sentences {n} is fewer than the outline's {} lines; ask for at least {} (or leave it out)",
                        o.len(),
                        o.len()
                    )))
                }
                n => n.unwrap_or(o.len()),
            },
            (None, None) => req.gen.sentences.unwrap_or(8),
        };
        if want == 0 {
            return Err(FieldError::new("sentences", 0, "must be >= 1").into());
        }
        let fixed = match outline {
            Some(o) => self.outline_slots(o, levers.outline_complete)?,
            None => Vec::new(),
        };
        Ok((plan, oracle, fixed, want))
    }

    /// `--window-stride` and `--window-pin` re-arrange the windows a decoder with absolute
    /// positions re-reads; a rotary decoder slides over its last sentences whatever they are
    /// (its text does not change with them), so a value other than the neutral one is refused.
    fn check_window_levers(&self, levers: &HybridSettings) -> Result<()> {
        let Some(r) = self.ae.decoder.config().rotary else { return Ok(()) };
        let given = [
            ("--window-stride", levers.window_stride.is_some_and(|k| k != 1)),
            ("--window-pin", levers.window_pin.is_some_and(|k| k != 0)),
        ];
        match given.iter().find(|(_, set)| *set) {
            Some((flag, _)) => Err(PipelineError::Invalid(format!(
                "{flag} acts on a decoder that re-reads its window; this bundle's decoder has relative positions and slides over its last {} sentences by itself, so {flag} would change nothing: leave it out",
                r.window
            ))),
            None => Ok(()),
        }
    }

    /// The outline's lines with their latents (one batch), `None` for free slots; with
    /// `complete`, a phrase's latent is its completed sentence's ([`Self::complete_phrases`]).
    fn outline_slots(&self, o: Vec<Option<String>>, complete: bool) -> Result<Outline> {
        let texts: Vec<&str> = o.iter().flatten().map(String::as_str).collect();
        let z = if complete {
            let done = self.complete_phrases(&texts)?;
            self.encode_text(&done.iter().map(String::as_str).collect::<Vec<_>>())?
        } else {
            self.encode_text(&texts)?
        };
        let mut k = 0;
        Ok(o.into_iter()
            .map(|line| {
                line.map(|l| {
                    k += 1;
                    (l, z.get(k as i64 - 1))
                })
            })
            .collect())
    }
}

impl Generator for HybridGenerator {
    /// Writes `req.samples` samples of the prompt, each continued by `req.gen.sentences`
    /// planned sentences (8 when unset; with a reference, its sentences).
    fn generate(&self, req: &GenRequest, on: &mut dyn FnMut(Event)) -> Result<Vec<Generation>> {
        let (plan_opts, oracle, fixed, want) = self.check(req)?;
        let levers = req.settings_as::<HybridSettings>();
        let texts = split_sentences(req.prompt);
        let mut toks = self.tokenize_sentences(&texts)?;
        let open = if ends_sentence(req.prompt) { Vec::new() } else { toks.pop().unwrap_or_default() };
        let n = req.samples.max(1);
        let mut rows = self.start_rows(&toks, &open, n, oracle.as_ref())?;
        let (p, total) = (toks.len(), toks.len() + want);
        let (sd, sp_slots) = (self.decoder_slots(), self.planner.max_slots());
        let max_len = self.ae.decoder.config().max_seq_len as usize;
        let mut noise = HostNoise::new(req.gen.seed ^ 0x706c_616e, self.device);
        let mut lp = LogitsProcessor::new(req.gen.sampling, req.gen.seed);
        let mut stream = TextStream::new(&self.tokenizer, req.prompt, n, req.gen.stream);
        let (mut planning, mut planner_calls) = (0f64, 0usize);
        let mut session: Option<SlidingSession> = None;
        let known = |i| fixed_slot(&fixed, p, i);
        loop {
            let active: Vec<usize> = (0..n).filter(|&i| rows[i].stop.is_none()).collect();
            let Some(&lead) = active.first() else { break };
            let written = rows[lead].sentences.len();
            if written >= total {
                active.iter().for_each(|&i| rows[i].stop = Some(StopReason::Sentences));
                break;
            }
            let win = window::decoder_window(written, total, sd, sp_slots, levers.stride());
            let mut act: Vec<&mut Row> = rows.iter_mut().filter(|r| r.stop.is_none()).collect();
            if (written..win.end).any(|i| !matches!(act[0].planned.get(i), Some(Some(_)))) {
                let tp = Instant::now();
                let call = window::plan_call(written, total, win.end, sp_slots);
                self.plan_rows(&mut act, call, plan_opts, (levers.candidates(), levers.hold()), &mut noise, known)?;
                planning += tp.elapsed().as_secs_f64();
                planner_calls += 1;
            }
            // A rotary decoder slides: one cache for the whole text, the oldest sentence forgotten as
            // the window moves (the first window reads the prompt); else each window re-reads.
            let w = levers.plan_guidance();
            let slide = self.ae.decoder.config().rotary; // pinning is refused there (check_window_levers)
            if let (Some(r), Some(sess)) = (slide, session.as_mut()) {
                let origin = written.saturating_sub(r.window.max(1) as usize - 1);
                let budget = req.gen.max_tokens.saturating_sub(rows[lead].new_tokens.len());
                if budget == 0 {
                    rows.iter_mut().filter(|r| r.stop.is_none()).for_each(|r| r.stop = Some(StopReason::MaxTokens));
                    break;
                }
                let gopts = self.window_options(budget, win.end - written);
                let mut emit = |row: usize, tok: i64| stream.token(row, tok, on);
                self.slide(sess, &mut rows, (origin, written), &mut lp, &gopts, &mut emit)?;
                continue;
            }
            let view = window::pinned_view(win, written, levers.pin(), sd);
            let (view, prompts) = self.window_prompts(&act, view, written)?;
            let plan = self.window_plan(&act, view, written);
            let longest = prompts.iter().map(Vec::len).max().unwrap_or(1);
            let budget =
                req.gen.max_tokens.saturating_sub(act[0].new_tokens.len()).min(max_len.saturating_sub(longest + 1));
            if budget == 0 {
                act.iter_mut().for_each(|r| r.stop = Some(StopReason::MaxTokens));
                break;
            }
            let gopts = self.window_options(budget, win.end - written);
            if slide.is_some() {
                // The first window of a sliding decoder: its session starts with this text.
                let mut sess = SlidingSession::new(&self.ae.decoder, &prompts, view.start as i64, w)
                    .expect("a rotary decoder starts a session");
                let out = sess.write(&self.ae.decoder, &plan, view.start as i64, &mut lp, &gopts, |row, tok| {
                    stream.token(active[row], tok, on)
                });
                session = Some(sess);
                self.absorb(&mut act, &out)?;
                continue;
            }
            let out = generate_guided(&self.ae.decoder, &prompts, &plan, w, &mut lp, &gopts, |row, tok| {
                stream.token(active[row], tok, on)
            });
            self.absorb(&mut act, &out)?;
        }
        let timing = output::Timing { seconds: stream.seconds(), planning, planner_calls };
        self.finish(&rows, p, &stream, (levers.show_plan, &fixed), timing)
    }

    fn settings(&self, req: &GenRequest) -> Result<serde_json::Map<String, serde_json::Value>> {
        let p = self.plan_sampling(req)?;
        let levers = req.settings_as::<HybridSettings>();
        let v = json!({
            "plan_sampling": {"steps": p.steps, "sampler": p.sampler, "eta": p.eta, "guidance": p.guidance},
            "plan_candidates": levers.candidates(),
            "plan_guidance": levers.plan_guidance(),
            "window_stride": levers.stride(),
            "window_pin": levers.pin(),
        });
        Ok(v.as_object().cloned().unwrap_or_default())
    }
}

/// Every row, for the steps that take a list of rows (a sliding session keeps them all).
/// The outline's latent for sentence `i` of a text whose prompt has `p` sentences.
fn fixed_slot(fixed: &Outline, p: usize, i: usize) -> Option<&Tensor> {
    i.checked_sub(p).and_then(|k| fixed.get(k)?.as_ref()).map(|f| &f.1)
}

fn all_rows(rows: &mut [Row]) -> Vec<&mut Row> {
    rows.iter_mut().collect()
}

#[cfg(test)]
mod tests {
    /// The prompt's decoder window text is what the loop's prompt step reads: every written
    /// sentence of the window, then the open one.
    #[test]
    fn decoder_prompt_reads_the_window_only() {
        let sentences: Vec<Vec<i64>> = (10..20).map(|i| vec![i]).collect();
        let w = super::window::decoder_window(10, 14, 4, 16, 1);
        assert_eq!(w.start, 7);
        let ids = super::window::decoder_prompt(1, 2, &sentences[w.start..10], &[99]);
        assert_eq!(ids, vec![1, 17, 2, 18, 2, 19, 2, 99]);
    }
}
