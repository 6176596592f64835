//! A/B comparisons (`plandiff ab`): every arm writes continuations of the same prompts with
//! the same sampling settings and seeds; each sample is scored, scores are averaged per
//! prompt, and arms are compared by paired per-prompt differences (bootstrap interval,
//! permutation test).
//!
//! Arms: `ar` (the bundle's plain LM), `hybrid` (planner + decoder), `oracle` (the decoder
//! with the plan encoded from the prompt's reference continuation: the ceiling a perfect
//! planner could reach), `diffusion` (pure diffusion, the prompt as a known prefix), each
//! optionally from another bundle (`ar=PATH`).

use crate::metrics::{distinct_n, rep_n, self_bleu, words};
use crate::stats::{paired, PairedTest};
use crate::{PipelineError, Result};
use plandiff_data::{split_sentences, TextTokenizer};
use plandiff_decoder::{Decoder, SamplingConfig};
use plandiff_pipeline::{
    ArGenerator, DiffusionGenerator, DiffusionOptions, GenOptions, HybridGenerator, HybridOptions,
};
use plandiff_planner::PlanSampling;
use plandiff_train::{load_autoencoder, Autoencoder, Bundle};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tch::{nn, Device, Kind, Tensor};

/// One prompt, with its reference continuation when the prompt file has one.
#[derive(Debug, Clone, Serialize)]
pub struct PromptItem {
    pub prompt: String,
    pub reference: Option<String>,
}

/// Prompts from a text file (one per non-empty line) or JSONL (`{"prompt", "reference"?}`).
pub fn read_prompts(path: &Path) -> Result<Vec<PromptItem>> {
    let bytes = std::fs::read(path)
        .map_err(|e| PipelineError::Invalid(format!("--prompts {}: {e}; give a readable file", path.display())))?;
    let text = String::from_utf8(bytes)
        .map_err(|_| PipelineError::Invalid(format!("--prompts {}: not valid UTF-8", path.display())))?;
    let jsonl = path.extension().is_some_and(|e| e == "jsonl") || text.trim_start().starts_with('{');
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if jsonl {
            let v: serde_json::Value = serde_json::from_str(line).map_err(|e| {
                PipelineError::Invalid(format!("--prompts {} line {}: not JSON ({e})", path.display(), i + 1))
            })?;
            let prompt = v["prompt"].as_str().filter(|p| !p.trim().is_empty()).ok_or_else(|| {
                PipelineError::Invalid(format!(
                    "--prompts {} line {}: needs a non-empty \"prompt\" string",
                    path.display(),
                    i + 1
                ))
            })?;
            let reference = v["reference"].as_str().map(str::to_string).filter(|r| !r.trim().is_empty());
            out.push(PromptItem { prompt: prompt.to_string(), reference });
        } else {
            out.push(PromptItem { prompt: line.to_string(), reference: None });
        }
    }
    if out.is_empty() {
        return Err(PipelineError::Invalid(format!("--prompts {}: no prompt in the file", path.display())));
    }
    Ok(out)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ArmKind {
    Ar,
    Hybrid,
    Oracle,
    /// Pure diffusion (stage `diffusion`): the prompt is a known prefix, the model fills the
    /// rest of its positions and chooses the length (`--sentences` does not apply).
    Diffusion,
}

#[derive(Debug, Clone, Serialize)]
pub struct ArmSpec {
    /// As written in `--arms` (`ar`, `ar=PATH`, ...).
    pub name: String,
    pub kind: ArmKind,
    pub bundle: PathBuf,
}

/// `hybrid,ar[,oracle][,ar=PATH]`.
pub fn parse_arms(spec: &str, default: &Path) -> Result<Vec<ArmSpec>> {
    let mut arms: Vec<ArmSpec> = Vec::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (kind, bundle) = match part.split_once('=') {
            Some((k, p)) => (k, PathBuf::from(p)),
            None => (part, default.to_path_buf()),
        };
        let kind = match kind {
            "ar" => ArmKind::Ar,
            "hybrid" => ArmKind::Hybrid,
            "oracle" => ArmKind::Oracle,
            "diffusion" => ArmKind::Diffusion,
            other => {
                return Err(PipelineError::Invalid(format!(
                "--arms: unknown arm `{other}`; use ar, hybrid, oracle or diffusion (each may name a bundle: ar=PATH)"
            )))
            }
        };
        if arms.iter().any(|a| a.name == part) {
            return Err(PipelineError::Invalid(format!("--arms: `{part}` is listed twice")));
        }
        arms.push(ArmSpec { name: part.to_string(), kind, bundle });
    }
    if arms.len() < 2 {
        return Err(PipelineError::Invalid("--arms needs at least two arms, e.g. hybrid,ar".into()));
    }
    Ok(arms)
}

/// Which way is better for a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Better {
    Lower,
    Higher,
    Neither,
}

/// Every metric, in report order: (name, better, per-sample (else per-prompt), meaning).
pub const METRICS: &[(&str, Better, bool, &str)] = &[
    ("tokens", Better::Neither, true, "new tokens"),
    ("sentences", Better::Neither, true, "new sentences"),
    ("rep_2", Better::Lower, true, "repeated bigrams within a sample"),
    ("rep_3", Better::Lower, true, "repeated trigrams within a sample"),
    ("rep_4", Better::Lower, true, "repeated 4-grams within a sample"),
    ("distinct_1", Better::Higher, false, "unique unigrams across a prompt's samples"),
    ("distinct_2", Better::Higher, false, "unique bigrams across a prompt's samples"),
    ("distinct_3", Better::Higher, false, "unique trigrams across a prompt's samples"),
    ("self_bleu", Better::Lower, false, "BLEU-4 of each sample against the prompt's other samples"),
    ("judge_ppl", Better::Lower, true, "perplexity of the continuation under the judge model"),
    ("coherence", Better::Higher, true, "cosine of consecutive sentence latents"),
    ("plan_adherence", Better::Higher, true, "cosine of each planned latent to the written sentence's"),
    ("latency_s", Better::Lower, true, "seconds to write the prompt's samples"),
    ("planning_s", Better::Lower, true, "seconds of latency spent sampling plans (hybrid)"),
    ("tokens_per_s", Better::Higher, true, "new tokens per second"),
    ("decode_tokens_per_s", Better::Higher, true, "new tokens per second of decoding (planning left out)"),
];

pub struct AbConfig {
    pub bundle: PathBuf,
    pub arms: Vec<ArmSpec>,
    pub samples: usize,
    pub sentences: usize,
    pub max_tokens: usize,
    pub seed: u64,
    pub sampling: SamplingConfig,
    /// `None`: each planner's stored defaults.
    pub plan: Option<PlanSampling>,
    /// Judge bundle (its `ar` stage); default: `bundle`.
    pub judge: Option<PathBuf>,
    pub device: Device,
    pub resamples: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct SampleRecord {
    pub sample: usize,
    pub seed: u64,
    pub text: String,
    pub continuation: String,
    pub metrics: BTreeMap<String, f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PromptRecord {
    pub prompt: String,
    pub reference: Option<String>,
    /// Samples by arm (`reference` holds the reference continuation, when given).
    pub samples: BTreeMap<String, Vec<SampleRecord>>,
    /// Per-prompt values by arm: per-sample metrics averaged, plus the diversity metrics.
    pub per_prompt: BTreeMap<String, BTreeMap<String, f64>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub a: String,
    pub b: String,
    pub metric: String,
    pub better: Better,
    #[serde(flatten)]
    pub test: PairedTest,
    /// The winning arm where the interval excludes zero and p < 0.05 (and the metric has a
    /// direction); "differs" for direction-free metrics; "no difference" otherwise.
    pub verdict: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct AbResults {
    pub bundle: String,
    pub arms: Vec<ArmSpec>,
    pub samples_per_prompt: usize,
    pub sentences: usize,
    pub seed: u64,
    pub sampling: SamplingConfig,
    pub judge: String,
    pub prompts: Vec<PromptRecord>,
    /// By arm: per-sample metrics averaged over all samples, per-prompt metrics over prompts.
    pub aggregates: BTreeMap<String, BTreeMap<String, f64>>,
    pub comparisons: Vec<Comparison>,
    pub wall_seconds: f64,
}

/// The judge: a plain LM that scores continuations.
pub struct Judge {
    model: Decoder,
    tokenizer: TextTokenizer,
    _vs: nn::VarStore,
}

impl Judge {
    pub fn load(bundle: &Path, device: Device) -> Result<Self> {
        let l = Bundle::new(bundle).load_decoder("ar", device).map_err(|e| {
            PipelineError::Invalid(format!(
                "judge {}: {e} (the judge is a bundle's `ar` model; see --judge)",
                bundle.display()
            ))
        })?;
        Ok(Self { model: l.model, tokenizer: l.tokenizer, _vs: l.vs })
    }

    /// Perplexity of `continuation` after `prompt` (NaN when the continuation is empty).
    pub fn perplexity(&self, prompt: &str, continuation: &str) -> Result<f64> {
        if continuation.trim().is_empty() {
            return Ok(f64::NAN);
        }
        let p_sent = split_sentences(prompt);
        let mut all: Vec<&str> = p_sent.clone();
        let c_sent = split_sentences(continuation);
        all.extend(c_sent.iter().copied());
        let sep = self.tokenizer.special().sep;
        let mut ids = self.tokenizer.encode_document(&all, false)?;
        ids.push(sep);
        // bos + prompt + sep (just bos without a prompt).
        let np = if p_sent.is_empty() { 1 } else { self.tokenizer.encode_document(&p_sent, false)?.len() + 1 };
        let max = self.model.config().max_seq_len as usize;
        ids.truncate(max);
        if ids.len() <= np {
            return Ok(f64::NAN);
        }
        let t: Vec<i64> = ids.iter().map(|&x| x as i64).collect();
        let dev = self.model.device();
        let x = Tensor::from_slice(&t[..t.len() - 1]).unsqueeze(0).to_device(dev);
        let y = Tensor::from_slice(&t[1..]).to_device(dev);
        let nll = tch::no_grad(|| {
            let logits = self.model.forward(&x, None, None, false).squeeze_dim(0).to_kind(Kind::Float);
            let lp = logits.log_softmax(-1, Kind::Float);
            let picked = lp.gather(1, &y.unsqueeze(1), false).squeeze_dim(1).neg();
            picked.narrow(0, (np - 1) as i64, (t.len() - np) as i64).mean(Kind::Double).double_value(&[])
        });
        Ok(nll.exp())
    }
}

/// Text metrics a text set can have without generation (`plandiff eval --metrics`).
pub const TEXT_METRICS: &[&str] =
    &["rep_2", "rep_3", "rep_4", "distinct_1", "distinct_2", "distinct_3", "self_bleu", "judge_ppl", "coherence"];

/// Text metrics of a set of documents: per-document ones averaged over documents,
/// set-level ones (distinct-n over all documents, self-BLEU over the first `bleu_cap`).
/// `judge_ppl` is each document's perplexity from its start; `coherence` runs over all of
/// a document's sentences.
pub fn text_set_metrics(
    docs: &[String],
    wanted: &[&str],
    judge: Option<&Judge>,
    encoder: Option<(&Autoencoder, &TextTokenizer)>,
    bleu_cap: usize,
) -> Result<BTreeMap<String, f64>> {
    let mut out = BTreeMap::new();
    let ws: Vec<Vec<String>> = docs.iter().map(|d| words(d)).collect();
    for &m in wanted {
        let v = match m {
            "rep_2" | "rep_3" | "rep_4" => {
                let n: usize = m[4..].parse().unwrap_or(2);
                mean_of(ws.iter().map(|w| rep_n(w, n)))
            }
            "distinct_1" | "distinct_2" | "distinct_3" => distinct_n(&ws, m[9..].parse().unwrap_or(1)),
            "self_bleu" => self_bleu(&ws[..ws.len().min(bleu_cap)]),
            "judge_ppl" => {
                let j = judge.ok_or_else(|| PipelineError::Invalid("judge_ppl needs a judge model".into()))?;
                let v: Vec<f64> = docs.iter().map(|d| j.perplexity("", d)).collect::<Result<_>>()?;
                mean_of(v.into_iter())
            }
            "coherence" => {
                let (ae, tk) = encoder.ok_or_else(|| {
                    PipelineError::Invalid("coherence needs a bundle with an autoencoder (its sentence encoder)".into())
                })?;
                let v: Vec<f64> = docs.iter().map(|d| coherence(ae, tk, "", d)).collect::<Result<_>>()?;
                mean_of(v.into_iter())
            }
            other => {
                return Err(PipelineError::Invalid(format!(
                    "--metrics: unknown metric `{other}`; use {} or all",
                    TEXT_METRICS.join(", ")
                )))
            }
        };
        out.insert(m.to_string(), v);
    }
    Ok(out)
}

/// Mean cosine of consecutive sentence latents, from the prompt's last sentence through the
/// continuation (NaN with fewer than two sentences).
pub fn coherence(ae: &Autoencoder, tk: &TextTokenizer, prompt: &str, continuation: &str) -> Result<f64> {
    let p = split_sentences(prompt);
    let mut s: Vec<&str> = p.last().copied().into_iter().collect();
    s.extend(split_sentences(continuation));
    if s.len() < 2 {
        return Ok(f64::NAN);
    }
    let texts: Vec<String> = s.iter().map(|x| format!(" {x}")).collect();
    let toks: Vec<Vec<i64>> =
        tk.encode_batch(texts)?.into_iter().map(|v| v.into_iter().map(i64::from).collect()).collect();
    let refs: Vec<&[i64]> = toks.iter().map(Vec::as_slice).collect();
    let z = ae.encoder.encode(&refs, tk.special().pad as i64, 64);
    let n = z.size()[0];
    let c = Tensor::cosine_similarity(&z.narrow(0, 0, n - 1), &z.narrow(0, 1, n - 1), -1, 1e-8);
    Ok(c.mean(Kind::Double).double_value(&[]))
}

enum ArmGen {
    Ar(Box<ArGenerator>),
    Hybrid(Box<HybridGenerator>),
    Diffusion(Box<DiffusionGenerator>),
}

fn text_metrics(continuation: &str) -> BTreeMap<String, f64> {
    let w = words(continuation);
    let mut m = BTreeMap::new();
    m.insert("sentences".into(), split_sentences(continuation).len() as f64);
    for n in 2..=4 {
        m.insert(format!("rep_{n}"), rep_n(&w, n));
    }
    m
}

/// Length and timing of one sample (`planning`: seconds of `seconds` spent planning).
struct Speed {
    tokens: usize,
    seconds: f64,
    planning: f64,
}

/// A sample with its text metrics and speed (model-based scores are added later).
fn record(sample: usize, seed: u64, text: String, continuation: String, speed: Speed) -> SampleRecord {
    let mut m = text_metrics(&continuation);
    m.insert("tokens".into(), speed.tokens as f64);
    m.insert("latency_s".into(), speed.seconds);
    m.insert("tokens_per_s".into(), speed.tokens as f64 / speed.seconds.max(1e-9));
    m.insert("decode_tokens_per_s".into(), speed.tokens as f64 / (speed.seconds - speed.planning).max(1e-9));
    SampleRecord { sample, seed, text, continuation, metrics: m }
}

fn mean_of(v: impl Iterator<Item = f64>) -> f64 {
    let v: Vec<f64> = v.filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        f64::NAN
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

/// Per-prompt values of one arm's samples.
fn per_prompt(samples: &[SampleRecord]) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for (name, _, per_sample, _) in METRICS {
        if *per_sample {
            let v = mean_of(samples.iter().filter_map(|s| s.metrics.get(*name).copied()));
            if samples.iter().any(|s| s.metrics.contains_key(*name)) {
                out.insert(name.to_string(), v);
            }
        }
    }
    let ws: Vec<Vec<String>> = samples.iter().map(|s| words(&s.continuation)).collect();
    for n in 1..=3 {
        out.insert(format!("distinct_{n}"), distinct_n(&ws, n));
    }
    if ws.len() >= 2 {
        out.insert("self_bleu".into(), self_bleu(&ws));
    }
    out
}

/// Runs the A/B. `progress(done, total)` is called after each (prompt, arm).
pub fn run_ab(cfg: &AbConfig, prompts: &[PromptItem], mut progress: impl FnMut(usize, usize)) -> Result<AbResults> {
    let t0 = std::time::Instant::now();
    if cfg.samples == 0 || cfg.sentences == 0 {
        return Err(PipelineError::Invalid("--samples and --sentences must be >= 1".into()));
    }
    cfg.sampling.validate().map_err(PipelineError::Invalid)?;
    if cfg.arms.iter().any(|a| a.kind == ArmKind::Oracle) && prompts.iter().any(|p| p.reference.is_none()) {
        return Err(PipelineError::Invalid(
            "--arms oracle needs a reference continuation for every prompt: give JSONL lines {\"prompt\": ..., \"reference\": ...}".into(),
        ));
    }
    let mut gens: Vec<ArmGen> = Vec::new();
    for a in &cfg.arms {
        let g = match a.kind {
            ArmKind::Ar => ArmGen::Ar(Box::new(ArGenerator::load(&a.bundle, cfg.device)?)),
            ArmKind::Hybrid | ArmKind::Oracle => {
                ArmGen::Hybrid(Box::new(HybridGenerator::load(&a.bundle, cfg.device)?))
            }
            ArmKind::Diffusion => ArmGen::Diffusion(Box::new(DiffusionGenerator::load(&a.bundle, cfg.device)?)),
        };
        gens.push(g);
    }
    let judge_path = cfg.judge.clone().unwrap_or_else(|| cfg.bundle.clone());
    let judge = Judge::load(&judge_path, cfg.device)?;
    // Coherence uses the --checkpoint bundle's sentence encoder, the same for every arm.
    let enc = load_autoencoder(&Bundle::new(&cfg.bundle), cfg.device).ok();
    if enc.is_none() {
        tracing::warn!("{} has no autoencoder: coherence is not measured", cfg.bundle.display());
    }
    let total = prompts.len() * cfg.arms.len();
    let mut done = 0;
    let mut records = Vec::with_capacity(prompts.len());
    for (pi, item) in prompts.iter().enumerate() {
        let seed = cfg.seed.wrapping_add(pi as u64);
        let gen_opts = GenOptions {
            max_tokens: cfg.max_tokens,
            sentences: Some(cfg.sentences),
            sampling: cfg.sampling,
            seed,
            no_eos: true,
            stream: false,
        };
        let mut samples: BTreeMap<String, Vec<SampleRecord>> = BTreeMap::new();
        for (arm, g) in cfg.arms.iter().zip(&gens) {
            let mut recs = Vec::with_capacity(cfg.samples);
            match g {
                ArmGen::Ar(g) => {
                    for (k, s) in g.generate(&item.prompt, cfg.samples, &gen_opts, |_, _| {})?.into_iter().enumerate() {
                        let speed = Speed { tokens: s.new_tokens, seconds: s.seconds, planning: 0.0 };
                        recs.push(record(k, seed, s.text, s.continuation, speed));
                    }
                }
                ArmGen::Diffusion(g) => {
                    let positions = g.prompt_positions(&item.prompt, Some(cfg.max_tokens))?;
                    let opts = DiffusionOptions { sampling: g.default_sampling(), seed };
                    for (k, s) in g.generate(&positions, cfg.samples, &opts, 0, |_, _| {})?.into_iter().enumerate() {
                        let speed = Speed { tokens: s.new_tokens, seconds: s.seconds, planning: 0.0 };
                        recs.push(record(k, seed, s.text, s.continuation, speed));
                    }
                }
                ArmGen::Hybrid(g) => {
                    let oracle = match (arm.kind, &item.reference) {
                        (ArmKind::Oracle, Some(r)) => {
                            let sents = split_sentences(r);
                            let n = sents.len().min(cfg.sentences);
                            Some(g.encode_text(&sents[..n])?)
                        }
                        _ => None,
                    };
                    let plan = cfg.plan.unwrap_or_else(|| g.planner().model.sampling.to_sampling());
                    let opts = HybridOptions { gen: gen_opts.clone(), plan, previews: false, oracle };
                    for (k, s) in g.generate(&item.prompt, cfg.samples, &opts, |_, _| {})?.into_iter().enumerate() {
                        let adherence = mean_of(s.plan.iter().filter_map(|p| p.adherence));
                        let gen = s.generation;
                        let speed =
                            Speed { tokens: gen.new_tokens, seconds: gen.seconds, planning: s.planning_seconds };
                        let mut r = record(k, seed, gen.text, gen.continuation, speed);
                        r.metrics.insert("planning_s".into(), s.planning_seconds);
                        r.metrics.insert("plan_adherence".into(), adherence);
                        recs.push(r);
                    }
                }
            }
            samples.insert(arm.name.clone(), recs);
            done += 1;
            progress(done, total);
        }
        if let Some(r) = &item.reference {
            let mut m = text_metrics(r);
            m.insert("tokens".into(), judge.tokenizer.encode(r).map(|v| v.len()).unwrap_or(0) as f64);
            let text = format!("{} {}", item.prompt.trim_end(), r.trim());
            samples.insert(
                "reference".into(),
                vec![SampleRecord { sample: 0, seed, text, continuation: r.clone(), metrics: m }],
            );
        }
        // Model-based scores, the same judge and encoder for every arm.
        for recs in samples.values_mut() {
            for s in recs.iter_mut() {
                s.metrics.insert("judge_ppl".into(), judge.perplexity(&item.prompt, &s.continuation)?);
                if let Some((ae, _, _, tk)) = &enc {
                    s.metrics.insert("coherence".into(), coherence(ae, tk, &item.prompt, &s.continuation)?);
                }
            }
        }
        let per: BTreeMap<String, BTreeMap<String, f64>> =
            samples.iter().map(|(arm, recs)| (arm.clone(), per_prompt(recs))).collect();
        records.push(PromptRecord {
            prompt: item.prompt.clone(),
            reference: item.reference.clone(),
            samples,
            per_prompt: per,
        });
    }
    let mut names: Vec<String> = cfg.arms.iter().map(|a| a.name.clone()).collect();
    if records.iter().any(|r| r.reference.is_some()) {
        names.push("reference".into());
    }
    let aggregates = aggregate(&records, &names);
    let mut comparisons = Vec::new();
    for b in &cfg.arms[1..] {
        let a = &cfg.arms[0];
        for (mi, (metric, better, _, _)) in METRICS.iter().enumerate() {
            let col = |arm: &str| -> Vec<f64> {
                records
                    .iter()
                    .map(|r| r.per_prompt.get(arm).and_then(|m| m.get(*metric)).copied().unwrap_or(f64::NAN))
                    .collect()
            };
            let (va, vb) = (col(&a.name), col(&b.name));
            if va.iter().zip(&vb).all(|(x, y)| !x.is_finite() || !y.is_finite()) {
                continue;
            }
            let test = paired(&va, &vb, cfg.resamples, cfg.seed ^ (mi as u64 + 1).wrapping_mul(0x9e37_79b9));
            let verdict = if !(test.significant() && test.p_value < 0.05) {
                "no difference".to_string()
            } else {
                match better {
                    Better::Neither => "differs".to_string(),
                    Better::Lower => (if test.diff < 0.0 { &a.name } else { &b.name }).clone(),
                    Better::Higher => (if test.diff > 0.0 { &a.name } else { &b.name }).clone(),
                }
            };
            comparisons.push(Comparison {
                a: a.name.clone(),
                b: b.name.clone(),
                metric: metric.to_string(),
                better: *better,
                test,
                verdict,
            });
        }
    }
    Ok(AbResults {
        bundle: cfg.bundle.display().to_string(),
        arms: cfg.arms.clone(),
        samples_per_prompt: cfg.samples,
        sentences: cfg.sentences,
        seed: cfg.seed,
        sampling: cfg.sampling,
        judge: judge_path.display().to_string(),
        prompts: records,
        aggregates,
        comparisons,
        wall_seconds: t0.elapsed().as_secs_f64(),
    })
}

/// Per-sample metrics: mean over every sample of the arm; per-prompt metrics: mean over
/// prompts. Non-finite values (e.g. the perplexity of an empty continuation) are left out.
pub fn aggregate(records: &[PromptRecord], arms: &[String]) -> BTreeMap<String, BTreeMap<String, f64>> {
    let mut out = BTreeMap::new();
    for arm in arms {
        let mut m = BTreeMap::new();
        for (name, _, per_sample, _) in METRICS {
            let v = if *per_sample {
                mean_of(
                    records
                        .iter()
                        .filter_map(|r| r.samples.get(arm))
                        .flatten()
                        .filter_map(|s| s.metrics.get(*name).copied()),
                )
            } else {
                mean_of(records.iter().filter_map(|r| r.per_prompt.get(arm).and_then(|p| p.get(*name)).copied()))
            };
            if v.is_finite() {
                m.insert(name.to_string(), v);
            }
        }
        out.insert(arm.clone(), m);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arms_parse() {
        let d = Path::new("b");
        let a = parse_arms("hybrid, ar,ar=other/b", d).unwrap();
        assert_eq!(a.len(), 3);
        assert_eq!((a[0].kind, a[0].bundle.as_path()), (ArmKind::Hybrid, d));
        assert_eq!((a[2].kind, a[2].bundle.as_path()), (ArmKind::Ar, Path::new("other/b")));
        assert!(parse_arms("hybrid", d).is_err());
        assert!(parse_arms("hybrid,ar,ar", d).is_err());
        assert!(parse_arms("hybrid,gpt", d).unwrap_err().to_string().contains("unknown arm"));
        assert_eq!(parse_arms("ar,diffusion", d).unwrap()[1].kind, ArmKind::Diffusion);
    }

    #[test]
    fn prompts_from_lines_and_jsonl() {
        let dir = tempfile::tempdir().unwrap();
        let t = dir.path().join("p.txt");
        std::fs::write(&t, "one.\n\n two. \n").unwrap();
        let p = read_prompts(&t).unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(p[1].prompt, "two.");
        let j = dir.path().join("p.jsonl");
        std::fs::write(&j, "{\"prompt\": \"a.\", \"reference\": \"b.\"}\n{\"prompt\": \"c.\"}\n").unwrap();
        let p = read_prompts(&j).unwrap();
        assert_eq!(p[0].reference.as_deref(), Some("b."));
        assert!(p[1].reference.is_none());
        std::fs::write(&j, "{\"prompt\": \"a.\"}\n{oops\n").unwrap();
        assert!(read_prompts(&j).unwrap_err().to_string().contains("line 2"));
        std::fs::write(&t, "\n\n").unwrap();
        assert!(read_prompts(&t).unwrap_err().to_string().contains("no prompt"));
    }

    #[test]
    fn per_prompt_and_aggregates_are_means() {
        let rec = |c: &str, tokens: f64| SampleRecord {
            sample: 0,
            seed: 0,
            text: c.into(),
            continuation: c.into(),
            metrics: BTreeMap::from([("tokens".to_string(), tokens)]),
        };
        let p1 = vec![rec("a b", 2.0), rec("a c", 4.0)];
        let p2 = vec![rec("x", 9.0)];
        let mk = |s: Vec<SampleRecord>| PromptRecord {
            prompt: "p".into(),
            reference: None,
            per_prompt: BTreeMap::from([("ar".to_string(), per_prompt(&s))]),
            samples: BTreeMap::from([("ar".to_string(), s)]),
        };
        let recs = vec![mk(p1), mk(p2)];
        assert_eq!(recs[0].per_prompt["ar"]["tokens"], 3.0);
        assert!((recs[0].per_prompt["ar"]["distinct_1"] - 3.0 / 4.0).abs() < 1e-12);
        let agg = aggregate(&recs, &["ar".to_string()]);
        assert!((agg["ar"]["tokens"] - 5.0).abs() < 1e-12, "per-sample metrics average over samples");
        let d1 = (0.75 + 1.0) / 2.0;
        assert!((agg["ar"]["distinct_1"] - d1).abs() < 1e-12, "per-prompt metrics average over prompts");
    }
}
