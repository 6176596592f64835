//! Mode `diffusion`: text written by Diffusion-LM over token embeddings, with infilling
//! templates (`[MASK:n]`) or a prompt as a known prefix.

use crate::flags::{GaussianFlags, TemplateFlags};
use crate::mode::{settings_from, Checked, Event, GenRequest, Generation, Generator, Mode, ModeSettings};
use crate::positions::Layout;
use crate::{PipelineError, Result};
use plandiff_bundle::{load_diffusion, Bundle, DiffusionBundle, TextSamplingDefaults};
use plandiff_data::TextTokenizer;
use plandiff_embedding::{sample_tokens, Infill, TextSampling};
use plandiff_planner::PlanSampling;
use serde_json::json;
use std::path::Path;
use std::time::Instant;
use tch::{nn, Device, Tensor};

pub const MODE: Mode = Mode {
    name: "diffusion",
    about: "Diffusion-LM over token embeddings (stage `diffusion`): --template with [MASK:n] spans to fill, or --prompt as a known prefix",
    flags: <DiffusionSettings as clap::Args>::augment_args,
    settings: settings_from::<DiffusionSettings>,
    load: |path, device| Ok(Box::new(DiffusionGenerator::load(path, device)?)),
    edit: None,
    arms: &[],
};

/// Mode `diffusion`'s flags; `None` keeps the model's stored default.
#[derive(clap::Args, Debug, Clone, Default, PartialEq)]
pub struct DiffusionSettings {
    #[command(flatten)]
    pub sampling: GaussianFlags,
    #[command(flatten)]
    pub template: TemplateFlags,
    /// Diffusion: turn off the clamping trick (snapping each step's x0 to token embeddings).
    #[arg(long)]
    pub no_clamp: bool,
}

impl Checked for DiffusionSettings {
    fn check(&self) -> Result<()> {
        self.template.check()?;
        self.sampling.check(None)
    }
}

impl ModeSettings for DiffusionSettings {
    fn set_steps(&mut self, steps: usize) {
        self.sampling.steps.steps = Some(steps);
    }
    fn template(&self) -> Option<&str> {
        self.template.template.as_deref()
    }
}

pub struct DiffusionGenerator {
    d: DiffusionBundle,
    tokenizer: TextTokenizer,
    device: Device,
    _vs: nn::VarStore,
}

impl DiffusionGenerator {
    pub fn load(bundle: &Path, device: Device) -> Result<Self> {
        let l = load_diffusion(&Bundle::new(bundle), device)?;
        Ok(Self { d: l.diffusion, tokenizer: l.tokenizer, device, _vs: l.vs })
    }

    pub fn defaults(&self) -> TextSamplingDefaults {
        self.d.config.sampling
    }

    /// The stored defaults (`BUNDLE/diffusion/config.json`) with the settings' overrides
    /// (steps, sampler, eta) and clamping switch; rounding is the model's.
    pub fn text_sampling(&self, s: &DiffusionSettings) -> Result<TextSampling> {
        let d = self.defaults();
        let base = PlanSampling { steps: d.steps, sampler: d.sampler, eta: d.eta, guidance: 1.0 };
        let p = s.sampling.apply(base, None)?;
        let rounding = self.d.config.model.rounding;
        Ok(TextSampling { steps: p.steps, sampler: p.sampler, eta: p.eta, clamp: d.clamp && !s.no_clamp, rounding })
    }

    fn layout(&self) -> Layout<'_> {
        Layout { tokenizer: &self.tokenizer, seq_len: self.d.config.model.seq_len as usize }
    }

    /// Text of generated tokens (see [`Layout::detokenize`]).
    fn detokenize(&self, tokens: &[i64]) -> Result<String> {
        self.layout().detokenize(tokens)
    }

    /// The positions a request fills: its template's, or its prompt's as a known prefix.
    fn positions(&self, req: &GenRequest) -> Result<Vec<Option<i64>>> {
        match req.settings.template() {
            Some(t) => self.layout().template_positions(t),
            None => self.layout().prompt_positions(req.prompt, Some(req.gen.max_tokens)),
        }
    }

    /// One sample's [`Generation`] from its tokens `(L,)`.
    fn sample(&self, toks: &Tensor, known: &[bool], seconds: f64) -> Result<Generation> {
        let tokens: Vec<i64> = Vec::try_from(toks.to_device(Device::Cpu))
            .map_err(|e| PipelineError::Invalid(format!("reading generated tokens: {e}")))?;
        self.layout().generation(tokens, known, seconds)
    }
}

impl Generator for DiffusionGenerator {
    /// Writes `req.samples` samples over the request's positions; [`Event::Step`] shows the
    /// rounded text of every sample every `--show-steps` steps.
    fn generate(&self, req: &GenRequest, on: &mut dyn FnMut(Event)) -> Result<Vec<Generation>> {
        req.refuse_given(MODE.name)?;
        let settings = req.settings_as::<DiffusionSettings>()?;
        let sampling = self.text_sampling(&settings)?;
        let positions = self.positions(req)?;
        let n = req.samples.max(1);
        let every = settings.template.show_steps.unwrap_or(0);
        let mut noise = plandiff_planner::HostNoise::new(req.gen.seed ^ 0x6469_6666, self.device);
        let t0 = Instant::now();
        let mut step_err = None;
        let toks = sample_tokens(
            &self.d.model,
            &self.d.schedule,
            Infill { known: &positions, rows: n },
            sampling,
            |x, t, prev| self.d.model.forward(x, &vec![t as f64; n], prev, false),
            |s| noise.sample(s),
            |i, tok| {
                if every > 0 && ((i + 1) % every == 0 || i + 1 == sampling.steps) {
                    let rows: Vec<Vec<i64>> = (0..n as i64).filter_map(|r| Vec::try_from(tok.get(r)).ok()).collect();
                    match rows.iter().map(|r| self.detokenize(r)).collect::<Result<Vec<_>>>() {
                        Ok(texts) => on(Event::Step { step: i + 1, texts: &texts }),
                        Err(e) => step_err = Some(e),
                    }
                }
            },
        )
        .map_err(|e| PipelineError::Invalid(e.to_string()))?;
        if let Some(e) = step_err {
            return Err(e);
        }
        let seconds = t0.elapsed().as_secs_f64();
        let known: Vec<bool> = positions.iter().map(Option::is_some).collect();
        (0..n as i64).map(|r| self.sample(&toks.get(r), &known, seconds)).collect()
    }

    fn settings(&self, req: &GenRequest) -> Result<serde_json::Map<String, serde_json::Value>> {
        let s = self.text_sampling(&*req.settings_as::<DiffusionSettings>()?)?;
        let v = json!({"template": req.settings.template(), "steps": s.steps, "clamp": s.clamp});
        Ok(v.as_object().cloned().unwrap_or_default())
    }
}
