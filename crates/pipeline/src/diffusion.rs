//! Mode `diffusion`: text written by Diffusion-LM over token embeddings, with infilling
//! templates (`[MASK:n]`) or a prompt as a known prefix.

use crate::ar::ends_sentence;
use crate::{PipelineError, Result};
use plandiff_data::{split_sentences, SpecialIds, TextTokenizer};
use plandiff_embedding::{parse_template, sample_tokens, TemplatePart, TextSampler, TextSampling};
use plandiff_planner::{PlanSampling, SamplerKind, SamplingDefaults};
use plandiff_train::{load_diffusion, Bundle, DiffusionBundle};
use serde::Serialize;
use std::path::Path;
use std::time::Instant;
use tch::{nn, Device};

pub struct DiffusionGenerator {
    d: DiffusionBundle,
    tokenizer: TextTokenizer,
    device: Device,
    _vs: nn::VarStore,
}

/// One sample of mode diffusion.
#[derive(Debug, Clone, Serialize)]
pub struct DiffusionSample {
    pub text: String,
    /// The filled positions alone (after a prompt: the continuation).
    pub continuation: String,
    /// Every position's token (`<pad>` included): the template's length.
    pub tokens: Vec<i64>,
    /// Positions fixed by the template or prompt.
    pub known: Vec<bool>,
    pub new_tokens: usize,
    pub seconds: f64,
    pub tokens_per_s: f64,
}

pub struct DiffusionOptions {
    pub sampling: TextSampling,
    pub seed: u64,
}

impl DiffusionGenerator {
    pub fn load(bundle: &Path, device: Device) -> Result<Self> {
        let (d, vs, tokenizer) = load_diffusion(&Bundle::new(bundle), device)?;
        Ok(Self { d, tokenizer, device, _vs: vs })
    }

    pub fn defaults(&self) -> plandiff_train::diffusion::TextSamplingDefaults {
        self.d.config.sampling
    }

    pub fn rounding(&self) -> plandiff_embedding::Rounding {
        self.d.config.model.rounding
    }

    /// Text sampling from planner-style settings (steps, sampler, eta: the same flags) and
    /// the clamping switch; rounding is the model's.
    pub fn text_sampling(&self, plan: PlanSampling, clamp: bool) -> TextSampling {
        let sampler = match plan.sampler {
            SamplerKind::Ddim { eta } => TextSampler::Ddim { eta },
            SamplerKind::Ddpm => TextSampler::Ddpm,
        };
        TextSampling { steps: plan.steps, sampler, clamp, rounding: self.rounding() }
    }

    /// The stored defaults (`BUNDLE/diffusion/config.json`) as a [`TextSampling`].
    pub fn default_sampling(&self) -> TextSampling {
        let d = self.defaults();
        let plan = SamplingDefaults { steps: d.steps, sampler: d.sampler, eta: d.eta, guidance: 1.0 }.to_sampling();
        self.text_sampling(plan, d.clamp)
    }

    fn sp(&self) -> SpecialIds {
        self.tokenizer.special()
    }

    /// Tokens of a known text piece as the model saw text in training: sentences with a
    /// leading space, `<sep>` after each complete one.
    fn encode_piece(&self, text: &str, close_last: bool) -> Result<Vec<i64>> {
        let sents = split_sentences(text);
        let mut out = Vec::new();
        for (i, s) in sents.iter().enumerate() {
            out.extend(self.tokenizer.encode(&format!(" {s}"))?.into_iter().map(i64::from));
            if i + 1 < sents.len() || (close_last && ends_sentence(s)) {
                out.push(self.sp().sep as i64);
            }
        }
        Ok(out)
    }

    /// Known tokens of a template (`None`: fill), after `<bos>`.
    pub fn template_positions(&self, template: &str) -> Result<Vec<Option<i64>>> {
        let parts = parse_template(template).map_err(PipelineError::Invalid)?;
        let mut pos = vec![Some(self.sp().bos as i64)];
        for (i, p) in parts.iter().enumerate() {
            match p {
                TemplatePart::Text(t) => {
                    let more = i + 1 < parts.len();
                    pos.extend(self.encode_piece(t, more)?.into_iter().map(Some));
                }
                TemplatePart::Mask(n) => pos.extend(std::iter::repeat_n(None, *n)),
            }
        }
        self.check_len(pos.len())?;
        Ok(pos)
    }

    /// A plain prompt is a known prefix; the rest, up to `max_tokens` or `seq_len`, is filled.
    pub fn prompt_positions(&self, prompt: &str, max_tokens: Option<usize>) -> Result<Vec<Option<i64>>> {
        if prompt.trim().is_empty() {
            return Err(PipelineError::Invalid("the prompt is empty; give --prompt TEXT or a --template".into()));
        }
        let mut pos = vec![Some(self.sp().bos as i64)];
        pos.extend(self.encode_piece(prompt, true)?.into_iter().map(Some));
        let l = self.d.config.model.seq_len as usize;
        let total = max_tokens.map_or(l, |m| (pos.len() + m).min(l));
        if pos.len() >= total {
            return Err(PipelineError::Invalid(format!(
                "the prompt takes {} of the model's {l} positions and leaves none to write; shorten it",
                pos.len()
            )));
        }
        pos.resize(total, None);
        Ok(pos)
    }

    fn check_len(&self, n: usize) -> Result<()> {
        let l = self.d.config.model.seq_len as usize;
        if n > l {
            return Err(PipelineError::Invalid(format!(
                "the template needs {n} positions (<bos> included) but the model writes at most {l}; shorten it"
            )));
        }
        Ok(())
    }

    /// Text of generated tokens: `<pad>` and `<bos>` dropped, sentences joined by a space,
    /// stopping at `<eos>`.
    pub fn detokenize(&self, tokens: &[i64]) -> Result<String> {
        let sp = self.sp();
        let mut sents: Vec<Vec<u32>> = vec![Vec::new()];
        for &t in tokens {
            let t = t as u32;
            if t == sp.eos {
                break;
            }
            if t == sp.sep {
                sents.push(Vec::new());
            } else if !sp.is_special(t) {
                if let Some(s) = sents.last_mut() {
                    s.push(t);
                }
            }
        }
        let mut out = Vec::new();
        for s in sents.iter().filter(|s| !s.is_empty()) {
            out.push(self.tokenizer.decode_text(s)?.trim().to_string());
        }
        Ok(out.join(" "))
    }

    /// Writes `n` samples over `positions`; `on_step(step, texts)` sees the rounded text of
    /// every sample after each step it is called for (`every` > 0).
    pub fn generate(
        &self,
        positions: &[Option<i64>],
        n: usize,
        opts: &DiffusionOptions,
        every: usize,
        mut on_step: impl FnMut(usize, &[String]),
    ) -> Result<Vec<DiffusionSample>> {
        let n = n.max(1);
        let mut noise = plandiff_planner::HostNoise::new(opts.seed ^ 0x6469_6666, self.device);
        let t0 = Instant::now();
        let mut step_err = None;
        let toks = sample_tokens(
            &self.d.model,
            &self.d.schedule,
            positions,
            n,
            opts.sampling,
            |x, t, prev| self.d.model.forward(x, &vec![t as f64; n], prev, false),
            |s| noise.sample(s),
            |i, tok| {
                if every > 0 && ((i + 1) % every == 0 || i + 1 == opts.sampling.steps) {
                    let rows: Vec<Vec<i64>> = (0..n as i64).filter_map(|r| Vec::try_from(tok.get(r)).ok()).collect();
                    match rows.iter().map(|r| self.detokenize(r)).collect::<Result<Vec<_>>>() {
                        Ok(texts) => on_step(i + 1, &texts),
                        Err(e) => step_err = Some(e),
                    }
                }
            },
        )
        .map_err(PipelineError::Invalid)?;
        if let Some(e) = step_err {
            return Err(e);
        }
        let seconds = t0.elapsed().as_secs_f64();
        let known: Vec<bool> = positions.iter().map(Option::is_some).collect();
        let pad = self.sp().pad as i64;
        let mut out = Vec::with_capacity(n);
        for r in 0..n as i64 {
            let tokens: Vec<i64> = Vec::try_from(toks.get(r).to_device(Device::Cpu))
                .map_err(|e| PipelineError::Invalid(format!("reading generated tokens: {e}")))?;
            let new_tokens = tokens.iter().zip(&known).filter(|(&t, &k)| !k && t != pad).count();
            let filled: Vec<i64> = tokens.iter().zip(&known).filter(|(_, &k)| !k).map(|(&t, _)| t).collect();
            out.push(DiffusionSample {
                text: self.detokenize(&tokens)?,
                continuation: self.detokenize(&filled)?,
                tokens,
                known: known.clone(),
                new_tokens,
                seconds,
                tokens_per_s: new_tokens as f64 / seconds.max(1e-9),
            });
        }
        Ok(out)
    }
}
