//! Modes `hybrid` and `edit`: plan sentence latents with the diffusion planner, then write
//! each sentence with the plan-conditioned decoder (docs/design.md, sections 1 and 3.7).
//!
//! The loop ([`HybridGenerator::generate`]) reads window -> plan what is missing -> write ->
//! absorb: take the decoder window that holds the next sentence ([`window::decoder_window`]);
//! plan the latents it lacks, conditioned on the latents of the last sentences actually
//! written (re-encoded from the text, so the plan follows what the decoder wrote, not what was
//! planned; `steps.rs`); assemble the window's plan (written sentences: their own latents;
//! future ones: the planned latents; slots past the end: the null plan) and text; write the
//! window's sentences with the [`WindowDecoder`]; re-encode what was written. `edit` reuses
//! the same steps for sentences in the middle of a text.

mod drafts;
mod edit;
#[cfg(test)]
mod loop_tests;
pub mod outline;
mod output;
mod settings;
mod steps;
pub mod window;

pub use edit::{Edit, RewrittenSentence};
pub use settings::{HybridSettings, PlanSteering};

use crate::mode::{settings_from, ArmInput, ArmVariant, Event, GenRequest, Generation, Generator, Given, Mode};
use crate::text::TextStream;
use crate::{PipelineError, Result};
use plandiff_bundle::{load_autoencoder, load_planner, Autoencoder, Bundle, PlanEncoder};
use plandiff_data::{split_sentences, SpecialIds, TextTokenizer};
use plandiff_decoder::{Decoder, GenerateOptions, Models, Prior, StopReason, Window, WindowDecoder};
use plandiff_layers::FieldError;
use plandiff_planner::{HostNoise, PlanSampling, Planner};
use serde_json::json;
use std::path::Path;
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
    edit: Some(edit::EDIT),
    arms: &[
        ArmVariant {
            name: "oracle",
            about: "the hybrid decoder given the plan of the prompt's reference continuation (what a perfect planner would give)",
            input: ArmInput::ReferencePlan,
        },
        ArmVariant {
            name: "outline",
            about: "hybrid writing to the prompt's outline (`generate --outline`)",
            input: ArmInput::Outline,
        },
    ],
};

pub struct HybridGenerator {
    ae: Autoencoder,
    planner: Planner,
    tokenizer: TextTokenizer,
    device: Device,
    /// The plan space's frozen encoder: sentences are its embeddings, normalised by the space.
    plan_enc: PlanEncoder,
    /// The bundle's plain `ar` model, the fluency prior of `--ar-prior` (`None` when the bundle
    /// has none, or it does not share the decoder's tokenizer and positions).
    ar: Option<(Decoder, nn::VarStore)>,
    /// The bundle's defaults of the levers a request leaves unset.
    defaults: plandiff_bundle::HybridDefaults,
    /// The bundle's training words (`words.txt`), for the drafts' invented-word check.
    lexicon: Option<crate::lexicon::Lexicon>,
    /// The sentence bank of `--plan-snap` (read once, kept for later requests of the same file).
    bank: std::sync::Mutex<Option<(std::path::PathBuf, plandiff_sentence::SentenceBank)>>,
    _vs: (nn::VarStore, nn::VarStore),
}

impl HybridGenerator {
    /// Loads `BUNDLE/autoencoder` and `BUNDLE/planner` (every load check applies, and the
    /// planner must have been trained on this autoencoder).
    pub fn load(bundle: &Path, device: Device) -> Result<Self> {
        let b = Bundle::open(bundle)?;
        let ae = load_autoencoder(&b, device)?;
        // The plan space's encoder first: a missing or different one names its fix.
        let plan_enc = PlanEncoder::load(&ae.space, device)?;
        let pl = load_planner(&b, device)?;
        let tokenizer = ae.tokenizer;
        if pl.planner.d_latent() != ae.ae.d_latent() {
            return Err(PipelineError::Invalid(format!(
                "{}: planner and autoencoder latent widths differ; retrain the planner",
                bundle.display()
            )));
        }
        let ar = Self::load_prior(&b, &ae.ae, device)?;
        let defaults = pl.config.model.hybrid;
        let lexicon = crate::lexicon::Lexicon::load(bundle)?;
        Ok(Self {
            ae: ae.ae,
            planner: pl.planner,
            tokenizer,
            device,
            plan_enc,
            ar,
            defaults,
            lexicon,
            bank: std::sync::Mutex::new(None),
            _vs: (ae.vs, pl.vs),
        })
    }

    /// The bundle's `ar` model when it can be the decoder's fluency prior: the same vocabulary
    /// and rotary positions (a bundle without one, or with another, can still plan and write).
    fn load_prior(b: &Bundle, ae: &Autoencoder, device: Device) -> Result<Option<(Decoder, nn::VarStore)>> {
        if !b.has_stage(plandiff_bundle::stage::AR) {
            return Ok(None);
        }
        let d = b.load_decoder(plandiff_bundle::stage::AR, device)?;
        let dec = ae.decoder.config();
        let fits =
            d.config.model.vocab_size == dec.vocab_size && d.config.model.rotary.is_some() && dec.rotary.is_some();
        Ok(fits.then_some((d.model, d.vs)))
    }

    /// A request's token sampler: the bundle's n-gram default unless given; the prompt's and outline's n-grams exempt.
    fn token_sampler(
        &self,
        gen: &crate::mode::GenOptions,
        prompt: &[i64],
        outline: &[Option<(String, Tensor)>],
    ) -> Result<plandiff_decoder::LogitsProcessor> {
        let sampling = gen.sampling.or_ngram(self.defaults.ngram);
        let lp = crate::text::token_sampler(&self.tokenizer, sampling, gen.seed, prompt);
        let lines: Vec<&str> = outline.iter().flatten().map(|(line, _)| line.as_str()).collect();
        Ok(self.tokenize_sentences(&lines)?.iter().fold(lp, |lp, ids| lp.exempting(ids)))
    }

    /// The decoder's writing models for a request: with `--ar-prior`, the bundle's `ar` model.
    fn models(&self, levers: &HybridSettings) -> Models<'_> {
        let prior = self.ar.as_ref().filter(|_| levers.ar_prior() > 0.0);
        Models { decoder: &self.ae.decoder, prior: prior.map(|(model, _)| Prior { model, weight: levers.ar_prior() }) }
    }

    pub fn planner(&self) -> &Planner {
        &self.planner
    }

    pub fn autoencoder(&self) -> &Autoencoder {
        &self.ae
    }

    fn special(&self) -> SpecialIds {
        self.tokenizer.special()
    }

    /// Token ids of each sentence as the model saw it in training (one leading space).
    fn tokenize_sentences(&self, sentences: &[&str]) -> Result<Vec<Vec<i64>>> {
        let texts: Vec<String> = sentences.iter().map(|s| format!(" {s}")).collect();
        let enc = self.tokenizer.encode_batch(texts)?;
        Ok(enc.into_iter().map(|s| s.into_iter().map(i64::from).collect()).collect())
    }

    /// Plan latents `(N, d)` of token sentences: the frozen encoder's embeddings of their
    /// text, normalised by the plan space.
    pub fn encode(&self, sentences: &[Vec<i64>]) -> Result<Tensor> {
        let texts = sentences
            .iter()
            .map(|s| self.tokenizer.decode_text(&s.iter().map(|&t| t as u32).collect::<Vec<_>>()))
            .collect::<std::result::Result<Vec<String>, _>>()?;
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        Ok(self.plan_enc.encode_texts(&refs, self.device)?)
    }

    /// Plan latents of text sentences.
    pub fn encode_text(&self, sentences: &[&str]) -> Result<Tensor> {
        self.encode(&self.tokenize_sentences(sentences)?)
    }

    fn decoder_slots(&self) -> usize {
        self.ae.max_slots as usize
    }

    /// The planner's stored sampling defaults with the request's overrides.
    fn plan_sampling(&self, req: &GenRequest) -> Result<PlanSampling> {
        req.settings_as::<HybridSettings>()?.plan_sampling(self.planner.sampling)
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
        act: &[&Row],
        view: window::DecoderView,
        written: usize,
    ) -> Result<(window::DecoderView, Vec<Vec<i64>>)> {
        let (special, max_len) = (self.special(), self.ae.decoder.config().max_seq_len as usize);
        let pinned_len = act.iter().map(|r| r.sentences[..view.pinned].iter().map(|s| s.len() + 1).sum::<usize>());
        let room = max_len.saturating_sub(pinned_len.max().unwrap_or(0));
        let view = window::DecoderView { start: self.fit_window(act, view.start, written, room), ..view };
        let prompts: Vec<Vec<i64>> = act
            .iter()
            .map(|r| {
                let seen = r.sentences[..view.pinned].iter().chain(&r.sentences[view.start..written]);
                window::decoder_prompt(special.bos as i64, special.sep as i64, seen, &r.open)
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

    /// The decoder's options for a window that writes `sentences` sentences within `budget`
    /// tokens: every planned slot gets its sentence (the document may not end early).
    fn window_options(&self, budget: usize, sentences: usize) -> GenerateOptions {
        let special = self.special();
        GenerateOptions {
            max_new_tokens: budget,
            max_sentences: Some(sentences),
            eos_id: special.eos as i64,
            sep_id: special.sep as i64,
            pad_id: special.pad as i64,
            banned: vec![special.bos as i64, special.pad as i64, special.eos as i64],
        }
    }

    /// Checks a request and reads what every window of it needs ([`Job`]).
    fn check(&self, req: &GenRequest) -> Result<Job> {
        req.gen.sampling.validate()?;
        if req.gen.max_tokens == 0 {
            return Err(FieldError::new("max_tokens", 0, "must be >= 1").into());
        }
        let settings = req.settings_as::<HybridSettings>()?;
        let levers = settings.or_defaults(&self.defaults, Self::writes_to_outline(req, &settings));
        let outline = match (req.given, levers.outline.as_deref()) {
            (Some(Given::Outline(lines)), _) => Some(lines.to_vec()),
            (_, Some(path)) => Some(outline::read_outline(path)?),
            (_, None) => None,
        };
        let reference = match req.given {
            Some(Given::Reference(r)) => Some(r),
            _ => None,
        };
        if req.prompt.trim().is_empty() && outline.is_none() {
            return Err(PipelineError::Invalid(
                "the prompt is empty; give some text to continue (or an --outline)".into(),
            ));
        }
        self.check_window_levers(&levers)?;
        if levers.drafts() > 1 && self.ae.decoder.config().rotary.is_none() {
            return Err(PipelineError::Invalid(
                "--drafts needs a plan decoder with relative (rotary) positions, which keeps its drafts' rows between sentences; this bundle's re-reads its windows, so leave --drafts out".into(),
            ));
        }
        if levers.ar_prior() > 0.0 && (self.ar.is_none() || self.ae.decoder.config().rotary.is_none()) {
            return Err(PipelineError::Invalid(
                "--ar-prior needs the bundle's `ar` model with the plan decoder's vocabulary, and both with relative (rotary) positions; this bundle lacks them, so leave --ar-prior out".into(),
            ));
        }
        let bank = self.sentence_bank(&levers)?;
        let plan = self.plan_sampling(req)?;
        let oracle = reference.map(|r| self.reference_plan(r, req.gen.sentences.unwrap_or(8))).transpose()?;
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
        Ok(Job { plan, oracle, outline: fixed, want, levers, bank, max_tokens: req.gen.max_tokens })
    }

    /// Whether a request writes to an outline (`--outline`, or `ab`'s outline arm).
    fn writes_to_outline(req: &GenRequest, settings: &HybridSettings) -> bool {
        matches!(req.given, Some(Given::Outline(_))) || settings.outline.is_some()
    }

    /// The bank of `--plan-snap` and `--plan-clip` (`None` when both are off), read once per file.
    fn sentence_bank(&self, levers: &HybridSettings) -> Result<Option<plandiff_sentence::SentenceBank>> {
        if !levers.steer.bank_levers() {
            return Ok(None);
        }
        levers.steer.check()?;
        let Some(path) = levers.steer.plan_bank.as_ref() else { return Ok(None) };
        let space = self.plan_enc.space();
        let mut held = self.bank.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((p, b)) = held.as_ref().filter(|(p, _)| p == path) {
            tracing::debug!("sentence bank {} already read", p.display());
            return Ok(Some(b.shallow_clone()));
        }
        let bank = plandiff_sentence::SentenceBank::load(path, space, self.device)
            .map_err(|e| PipelineError::Invalid(format!("--plan-bank {e}")))?;
        tracing::info!(rows = bank.rows(), "read the sentence bank {}", path.display());
        *held = Some((path.clone(), bank.shallow_clone()));
        Ok(Some(bank))
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
    /// planned sentences (8 when unset; with a reference, its sentences), window by window.
    fn generate(&self, req: &GenRequest, on: &mut dyn FnMut(Event)) -> Result<Vec<Generation>> {
        let job = self.check(req)?;
        let rows = req.samples.max(1);
        // The clock starts before the prompt's sentences are encoded: their time counts.
        let mut stream = TextStream::new(&self.tokenizer, req.prompt, rows, req.gen.stream);
        let mut text = self.start_text(req.prompt, rows, &job)?;
        let mut timing = steps::Timing { encoding: stream.seconds(), ..Default::default() };
        let mut decoder = WindowDecoder::new(&self.ae.decoder, job.levers.plan_guidance());
        let mut noise = HostNoise::new(req.gen.seed ^ 0x706c_616e, self.device);
        let mut lp = self.token_sampler(&req.gen, &text.prompt_tokens(), &job.outline)?;
        while let Some(written) = text.next_sentence() {
            let t0 = std::time::Instant::now();
            self.encode_written(&mut text.live_mut())?;
            timing.encoding += t0.elapsed().as_secs_f64();
            let win = self.window(written, text.total, &job);
            self.plan_missing(&mut text, win, &job, &mut noise, &mut timing)?;
            let Some(w) = self.window_input(&text, win, &decoder, &job)? else {
                text.stop_live(StopReason::MaxTokens);
                break;
            };
            let emit = |row: usize, tok: i64| stream.token(w.rows[row], tok, on);
            let out = match job.levers.drafts() {
                1 => {
                    let window = Window { text: &w.text, plan: &w.plan, origin: w.origin };
                    decoder.write(self.models(&job.levers), &window, &mut lp, &w.options, emit)
                }
                n => {
                    let d = drafts::Drafting { models: self.models(&job.levers), written, n };
                    self.write_drafts(&mut decoder, &w, d, &mut lp, emit)?
                }
            };
            self.absorb(&mut text, &w.rows, &out)?;
        }
        timing.seconds = stream.seconds();
        // The text is done; the last sentences' latents are for the plan's adherence only.
        self.encode_written(&mut text.rows.iter_mut().collect::<Vec<_>>())?;
        self.finish(&text.rows, text.prompt, &stream, (job.levers.show_plan, &job.outline), timing)
    }

    fn settings(&self, req: &GenRequest) -> Result<serde_json::Map<String, serde_json::Value>> {
        let p = self.plan_sampling(req)?;
        let settings = req.settings_as::<HybridSettings>()?;
        let levers = settings.or_defaults(&self.defaults, Self::writes_to_outline(req, &settings));
        let v = json!({
            "plan_sampling": {"steps": p.steps, "sampler": p.sampler, "eta": p.eta, "guidance": p.guidance},
            "plan_candidates": levers.candidates(),
            "plan_guidance": levers.plan_guidance(),
            "ar_prior": levers.ar_prior(),
            "drafts": levers.drafts(),
            "window_stride": levers.stride(),
            "window_pin": levers.pin(),
            "plan_sphere": levers.plan_sphere(),
            "plan_rescale": levers.plan_rescale(),
            "plan_noise_scale": levers.plan_noise_scale(),
            "plan_epsilon_scaling": levers.plan_epsilon_scaling(),
            "plan_norm": levers.plan_norm(),
            "plan_snap": levers.plan_snap(),
            "plan_clip": levers.plan_clip(),
            "ngram": req.gen.sampling.or_ngram(self.defaults.ngram).ngram,
        });
        Ok(v.as_object().cloned().unwrap_or_default())
    }
}

/// A checked request: what every window of it reads.
struct Job {
    /// The planner's sampling (its stored defaults with the request's overrides).
    plan: PlanSampling,
    /// The `oracle` arm's reference plan `(N, d)`, planned slots after the prompt.
    oracle: Option<Tensor>,
    /// The outline's fixed slots by new sentence (empty without an outline).
    outline: Outline,
    /// Sentences to write after the prompt.
    want: usize,
    levers: HybridSettings,
    /// `--plan-bank`'s sentences when `--plan-snap` is on.
    bank: Option<plandiff_sentence::SentenceBank>,
    max_tokens: usize,
}
