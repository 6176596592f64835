//! Mode `masked`: text written by absorbing-state diffusion (MDLM / LLaDA): from all masks
//! (or uniform random tokens), the model commits its most confident tokens step by step,
//! block by block; a prompt is a known prefix, a template's `[MASK:n]` spans are filled.
//! Its second use, editing by remasking, is in [`edit`].

pub mod edit;
mod edit_op;
mod lengths;
pub mod revision;
mod score;

pub use edit_op::{masked_reviser, revise_score, MaskedEditFlags};
pub use revision::{EditSettings, EditTarget, MaskedEdit, ReviseScore};

use crate::flags::{StepsFlag, TemplateFlags};
use crate::mode::{settings_from, Checked, Event, GenRequest, Generation, Generator, Mode, ModeSettings};
use crate::positions::Layout;
use crate::{PipelineError, Result};
use plandiff_bundle::{load_masked, Bundle, MaskedModel};
use plandiff_data::TextTokenizer;
use plandiff_masked::{sample_masked, BlockCache, MaskedLm, MaskedSampling, Problem, Remasking, Start};
use serde_json::json;
use std::path::Path;
use std::time::Instant;
use tch::{nn, Device, Kind, Tensor};

pub const MODE: Mode = Mode {
    name: "masked",
    about: "masked diffusion, MDLM / LLaDA (stage `masked`): --prompt as a known prefix or --template with [MASK:n] spans; --steps, --block-length, --remasking, --start, --threshold, --block-cache",
    flags: <MaskedSettings as clap::Args>::augment_args,
    settings: settings_from::<MaskedSettings>,
    load: |path, device| Ok(Box::new(MaskedGenerator::load(path, device)?)),
    edit: Some(edit_op::EDIT),
    arms: &[],
};

/// Mode `masked`'s flags; `None` keeps the masked model's stored default (the start: masks).
/// `--temperature` is its Gumbel temperature.
#[derive(clap::Args, Debug, Clone, Default, PartialEq)]
pub struct MaskedSettings {
    #[command(flatten)]
    pub steps: StepsFlag,
    #[command(flatten)]
    pub template: TemplateFlags,
    /// Masked: positions per semi-autoregressive block (LLaDA); steps are divided equally
    /// among the blocks.
    #[arg(long)]
    pub block_length: Option<usize>,
    /// Masked: which positions a step commits: low_confidence (the most probable tokens),
    /// random, margin (largest gap between the two likeliest tokens) or entropy (lowest).
    #[arg(long)]
    pub remasking: Option<String>,
    /// Masked: start from all masks (`mask`) or from uniform random tokens (`random`), whose
    /// tokens less likely than the model's own are remasked and replaced.
    #[arg(long)]
    pub start: Option<String>,
    /// Masked: Fast-dLLM's parallel decoding: also commit every position of the block whose
    /// proposal is at least this probable (e.g. 0.9), and end a block once it is filled.
    #[arg(long)]
    pub threshold: Option<f64>,
    /// Masked: Fast-dLLM's approximate block cache: a block's first step reads the whole text,
    /// its later steps only a window over the block (faster; the text differs from the
    /// uncached run's). `--block-cache N`: the whole text is read every N blocks only, the
    /// blocks between start their window at the previous block.
    #[arg(long, value_name = "N", num_args = 0..=1, default_missing_value = "1")]
    pub block_cache: Option<usize>,
}

impl MaskedSettings {
    /// `--remasking`, parsed: one line naming a bad value and the choices.
    pub fn remasking(&self) -> Result<Option<Remasking>> {
        self.remasking.as_deref().map(parse_remasking).transpose()
    }

    pub fn start(&self) -> Result<Option<Start>> {
        match self.start.as_deref() {
            None => Ok(None),
            Some(s) => Start::parse(s)
                .map(Some)
                .ok_or_else(|| PipelineError::Invalid(format!("--start {s}: use mask or random"))),
        }
    }
}

/// A remasking rule by name (`--remasking`).
pub fn parse_remasking(s: &str) -> Result<Remasking> {
    Remasking::parse(s)
        .ok_or_else(|| PipelineError::Invalid(format!("--remasking {s}: use one of {}", Remasking::NAMES)))
}

impl Checked for MaskedSettings {
    fn check(&self) -> Result<()> {
        self.template.check()?;
        if self.block_length == Some(0) {
            return Err(PipelineError::Invalid("--block-length must be >= 1".into()));
        }
        self.remasking()?;
        if self.block_cache == Some(0) {
            return Err(PipelineError::Invalid(
                "--block-cache 0: the whole text must be read every N >= 1 blocks".into(),
            ));
        }
        if let Some(t) = self.threshold.filter(|t| !(*t > 0.0 && *t <= 1.0)) {
            return Err(PipelineError::Invalid(format!(
                "--threshold {t} must be a probability in (0, 1] (Fast-dLLM uses 0.9)"
            )));
        }
        self.start().map(drop)
    }
}

impl ModeSettings for MaskedSettings {
    fn set_steps(&mut self, steps: usize) {
        self.steps.steps = Some(steps);
    }
    fn template(&self) -> Option<&str> {
        self.template.template.as_deref()
    }
}

pub struct MaskedGenerator {
    model: MaskedLm,
    config: MaskedModel,
    tokenizer: TextTokenizer,
    device: Device,
    /// The AR model that scores revisions (`with_ar_scorer`).
    ar: Option<score::ArScorer>,
    _vs: nn::VarStore,
}

impl MaskedGenerator {
    pub fn load(bundle: &Path, device: Device) -> Result<Self> {
        let l = load_masked(&Bundle::new(bundle), device)?;
        Ok(Self { model: l.model, config: l.config, tokenizer: l.tokenizer, device, ar: None, _vs: l.vs })
    }

    pub fn config(&self) -> &MaskedModel {
        &self.config
    }

    pub(crate) fn layout(&self) -> Layout<'_> {
        Layout { tokenizer: &self.tokenizer, seq_len: self.config.model.seq_len as usize }
    }

    /// The stored defaults with the request's overrides (`--steps`, `--block-length`,
    /// `--remasking`, `--start`, and `--temperature` as the Gumbel temperature).
    pub fn sampling(&self, req: &GenRequest) -> Result<MaskedSampling> {
        let d = self.config.sampling;
        let s = req.settings_as::<MaskedSettings>()?;
        Ok(MaskedSampling {
            steps: s.steps.steps.unwrap_or(d.steps),
            block_length: s.block_length.or(d.block_length),
            remasking: s.remasking()?.unwrap_or(d.remasking),
            temperature: req.gen.sampling.temperature,
            start: s.start()?.unwrap_or(Start::Mask),
            repetition_penalty: req.gen.sampling.repetition_penalty,
            threshold: s.threshold,
            block_cache: s.block_cache,
        })
    }

    /// `(B, L)` ids -> `(B, L, V)` logits.
    pub(crate) fn logits(&self, x: &Tensor) -> Tensor {
        self.model.forward(x, false)
    }

    pub(crate) fn mask_id(&self) -> i64 {
        self.config.model.mask_id()
    }

    /// Tokens never written at a filled position: `<bos>` always; `<eos>` and `<pad>` when
    /// the text must not end (`no_eos`); every special token when `specials`.
    pub(crate) fn banned(&self, no_eos: bool, specials: bool) -> Vec<i64> {
        let sp = self.tokenizer.special();
        let mut b = vec![sp.bos as i64];
        if no_eos || specials {
            b.extend([sp.eos as i64, sp.pad as i64]);
        }
        if specials {
            b.push(sp.sep as i64);
        }
        b
    }

    /// Runs the sampler over `known` for `rows` rows, seeded; `on_step(i, x)` sees each step.
    pub(crate) fn fill(
        &self,
        known: &[Option<i64>],
        rows: usize,
        banned: &[i64],
        opts: &MaskedSampling,
        seed: u64,
        on_step: impl FnMut(usize, &Tensor),
    ) -> Result<Tensor> {
        let p = Problem { known, rows, mask_id: self.mask_id(), banned, device: self.device };
        tch::manual_seed((seed & (i64::MAX as u64)) as i64);
        let uniform = |shape: &[i64]| Tensor::rand(shape, (Kind::Double, Device::Cpu)).clamp(1e-12, 1.0 - 1e-12);
        let out = if let Some(n) = opts.block_cache {
            sample_masked(&p, opts, BlockCache::every(&self.model, n), uniform, on_step)
        } else {
            sample_masked(&p, opts, &self.model, uniform, on_step)
        };
        out.map_err(|e| PipelineError::Invalid(e.to_string()))
    }

    /// A sequence as a reader follows the denoising: text, with `_` for each masked position.
    pub(crate) fn render(&self, tokens: &[i64]) -> Result<String> {
        let mut parts = Vec::new();
        let mut run = Vec::new();
        for &t in tokens {
            if t == self.mask_id() {
                if !run.is_empty() {
                    parts.push(self.layout().detokenize(&std::mem::take(&mut run))?);
                }
                parts.push("_".to_string());
            } else {
                run.push(t);
            }
        }
        if !run.is_empty() {
            parts.push(self.layout().detokenize(&run)?);
        }
        Ok(parts.into_iter().filter(|p| !p.is_empty()).collect::<Vec<_>>().join(" "))
    }

    /// One sample's [`Generation`]: filled positions after the `sentences`-th new sentence
    /// become `<eos>`, so the text and the continuation agree.
    fn sample(&self, tokens: Vec<i64>, known: &[bool], sentences: Option<usize>, seconds: f64) -> Result<Generation> {
        let sp = self.tokenizer.special();
        let mut tokens = tokens;
        if let Some(n) = sentences {
            let mut seps = 0;
            for (t, _) in tokens.iter_mut().zip(known).filter(|(_, &k)| !k) {
                if seps >= n {
                    *t = sp.eos as i64;
                } else if *t == sp.sep as i64 {
                    seps += 1;
                }
            }
        }
        self.layout().generation(tokens, known, seconds)
    }
}

impl Generator for MaskedGenerator {
    /// Writes `req.samples` samples over the request's positions; [`Event::Step`] shows every
    /// sample (masks as `_`) every `--show-steps` steps.
    fn generate(&self, req: &GenRequest, on: &mut dyn FnMut(Event)) -> Result<Vec<Generation>> {
        req.refuse_given(MODE.name)?;
        let opts = self.sampling(req)?;
        let positions = match req.settings.template() {
            Some(t) => self.layout().template_positions(t)?,
            None => self.layout().prompt_positions(req.prompt, Some(req.gen.max_tokens))?,
        };
        let n = req.samples.max(1);
        let every = req.settings_as::<MaskedSettings>()?.template.show_steps.unwrap_or(0);
        let banned = self.banned(req.gen.no_eos, false);
        let t0 = Instant::now();
        let mut step_err = None;
        let out = self.fill(&positions, n, &banned, &opts, req.gen.seed, |i, x| {
            if every > 0 && ((i + 1) % every == 0 || i + 1 == opts.steps) {
                let rows: Vec<Vec<i64>> = (0..n as i64).filter_map(|r| Vec::try_from(x.get(r)).ok()).collect();
                match rows.iter().map(|r| self.render(r)).collect::<Result<Vec<_>>>() {
                    Ok(texts) => on(Event::Step { step: i + 1, texts: &texts }),
                    Err(e) => step_err = Some(e),
                }
            }
        })?;
        if let Some(e) = step_err {
            return Err(e);
        }
        let seconds = t0.elapsed().as_secs_f64();
        let known: Vec<bool> = positions.iter().map(Option::is_some).collect();
        (0..n as i64)
            .map(|r| {
                let toks: Vec<i64> = Vec::try_from(out.get(r).to_device(Device::Cpu))
                    .map_err(|e| PipelineError::Invalid(format!("reading generated tokens: {e}")))?;
                self.sample(toks, &known, req.gen.sentences, seconds)
            })
            .collect()
    }

    fn settings(&self, req: &GenRequest) -> Result<serde_json::Map<String, serde_json::Value>> {
        let s = self.sampling(req)?;
        let v = json!({"template": req.settings.template(), "masked_sampling": s});
        Ok(v.as_object().cloned().unwrap_or_default())
    }
}
