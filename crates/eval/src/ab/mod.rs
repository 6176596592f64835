//! A/B comparisons (`plandiff ab`): every arm writes continuations of the same prompts with
//! the same sampling settings and seeds; each sample is scored, scores are averaged per
//! prompt, and arms are compared by paired per-prompt differences (bootstrap interval,
//! permutation test).
//!
//! Arms are the generation modes ([`plandiff_pipeline::MODES`]: `ar`, `hybrid`, `diffusion`),
//! plus `oracle` (the hybrid decoder with the plan encoded from the prompt's reference
//! continuation: the ceiling a perfect planner could reach), `outline` (hybrid writing to the
//! prompt's outline) and `ar-outline` (ar with the outline's lines before the prompt, its
//! baseline), each optionally from another bundle (`ar=PATH`).

mod arms;
mod fluency;
mod metric_list;
mod prompts;
mod scoring;
#[cfg(test)]
mod tests;
mod text_metrics;

pub use arms::{parse_arms, ArmSpec};
pub use fluency::BundleLm;
pub use metric_list::{Better, METRICS};
pub use prompts::{read_prompts, PromptItem};
pub use text_metrics::{
    plan_space_coherence, text_set_metrics, PlanSpaceOf, TextJudges, SENTENCE_JUDGE_METRICS, TEXT_METRICS,
};

use crate::metrics::{distinct_n, rep_n, self_bleu, words};
use crate::stats::{paired, PairedTest};
use crate::{PipelineError, Result};
use plandiff_data::split_sentences;
use plandiff_decoder::SamplingConfig;
use plandiff_pipeline::{GenOptions, Generator, ModeSettings};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use tch::Device;

pub struct AbConfig {
    pub bundle: PathBuf,
    pub arms: Vec<ArmSpec>,
    pub samples: usize,
    pub sentences: usize,
    pub max_tokens: usize,
    pub seed: u64,
    pub sampling: SamplingConfig,
    /// Each mode's settings (its flags), by mode name; a mode not listed keeps its model's
    /// stored defaults.
    pub modes: Vec<(String, Box<dyn ModeSettings>)>,
    /// The bundle whose `ar` stage gives self perplexity (`self_ppl`); default: `bundle`.
    pub judge: Option<PathBuf>,
    /// The fluency judge's GGUF file (`fluency_ppl`); default: the one `make judge-smollm`
    /// installs.
    pub fluency_judge: Option<PathBuf>,
    /// The independent sentence encoder's folder; default: found in the project's `.venv`
    /// (without it, its metrics are left out with a note).
    pub judge_encoder: Option<PathBuf>,
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
    /// The sentence judge's view, kept for the metrics fitted on every sample (restarts, MAUVE).
    #[serde(skip)]
    pub judge: Option<crate::judge::SampleScores>,
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
    /// The fluency judge (`fluency_ppl`): its name and file.
    pub fluency_judge: String,
    /// The independent sentence encoder's folder, when it was found.
    pub judge_encoder: Option<String>,
    /// Its name (`sentence-transformers/all-mpnet-base-v2` by default).
    pub judge_encoder_name: Option<String>,
    /// The restart threshold, fitted on the references (see [`crate::judge::scores`]).
    pub restart_threshold: Option<f64>,
    /// Seconds the sentence judge spent per scored sample (its cost).
    pub judge_seconds_per_sample: Option<f64>,
    /// What was left out, and why.
    pub notes: Vec<String>,
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
    SampleRecord { sample, seed, text, continuation, metrics: m, judge: None }
}

/// The median of the finite values (NaN without any).
fn median_of(v: impl Iterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = v.filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// A per-sample metric's value over `values`: the median for a `*_median` metric (of its base
/// metric's values), else the mean.
fn summary_of(name: &str, values: impl Iterator<Item = f64>) -> f64 {
    if name.ends_with("_median") {
        median_of(values)
    } else {
        mean_of(values)
    }
}

/// The per-sample metric a metric reads (`fluency_ppl` for `fluency_ppl_median`).
fn base_metric(name: &str) -> &str {
    name.strip_suffix("_median").unwrap_or(name)
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
            let base = base_metric(name);
            let v = summary_of(name, samples.iter().filter_map(|s| s.metrics.get(base).copied()));
            if samples.iter().any(|s| s.metrics.contains_key(base)) {
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

/// The reference continuation as a sample (the human baseline).
fn reference_sample(item: &PromptItem, judge: &BundleLm, seed: u64) -> Option<SampleRecord> {
    let r = item.reference.as_ref()?;
    let mut m = text_metrics(r);
    m.insert("tokens".into(), judge.tokenizer.encode(r).map(|v| v.len()).unwrap_or(0) as f64);
    let text = format!("{} {}", item.prompt.trim_end(), r.trim());
    Some(SampleRecord { sample: 0, seed, text, continuation: r.clone(), metrics: m, judge: None })
}

/// Checks an A/B before anything loads or is generated: sizes, sampling, and what every arm
/// needs of every prompt (a reference, an outline no longer than `--sentences`).
pub fn check(cfg: &AbConfig, prompts: &[PromptItem]) -> Result<()> {
    if cfg.samples == 0 || cfg.sentences == 0 {
        let (field, v) = if cfg.samples == 0 { ("samples", cfg.samples) } else { ("sentences", cfg.sentences) };
        return Err(plandiff_layers::FieldError::new(field, v, "must be >= 1").into());
    }
    cfg.sampling.validate()?;
    for a in &cfg.arms {
        let Some(v) = a.variant() else { continue };
        if v.input.needs_reference() {
            if let Some(i) = prompts.iter().position(|p| p.reference.is_none()) {
                return Err(PipelineError::Invalid(format!(
                    "arm {} needs a reference continuation for every prompt, and prompt {} has none: give JSONL lines {{\"prompt\": ..., \"reference\": ...}}",
                    v.name,
                    i + 1
                )));
            }
        } else if let Some(i) = prompts.iter().position(|p| p.outline.is_none()) {
            return Err(PipelineError::Invalid(format!(
                "arm {} needs an outline for every prompt, and prompt {} has none: give JSONL lines {{\"prompt\": ..., \"outline\": [\"a line\", \"\", ...]}} (python/ab_prompts.py --outline makes them)",
                v.name,
                i + 1
            )));
        } else if let Some((i, n)) = prompts
            .iter()
            .enumerate()
            .find_map(|(i, p)| p.outline.as_ref().map(|o| (i, o.len())).filter(|(_, n)| *n > cfg.sentences))
        {
            // Found before anything is generated, and the prompt named.
            return Err(PipelineError::Invalid(format!(
                "prompt {}'s outline has {n} lines, more than --sentences {}; ask for at least {n} sentences or shorten it",
                i + 1,
                cfg.sentences
            )));
        }
    }
    Ok(())
}

/// Runs the A/B. `progress(done, total)` is called after each (prompt, arm).
pub fn run_ab(cfg: &AbConfig, prompts: &[PromptItem], mut progress: impl FnMut(usize, usize)) -> Result<AbResults> {
    let t0 = std::time::Instant::now();
    check(cfg, prompts)?;
    let gens: Vec<Box<dyn Generator>> = cfg.arms.iter().map(|a| a.load(cfg.device)).collect::<Result<_>>()?;
    let (mut scorers, judge_path) = scoring::Scorers::load(cfg)?;
    let total = prompts.len() * cfg.arms.len();
    let mut done = 0;
    let mut records = Vec::with_capacity(prompts.len());
    for (pi, item) in prompts.iter().enumerate() {
        let seed = cfg.seed.wrapping_add(pi as u64);
        let gen = GenOptions {
            max_tokens: cfg.max_tokens,
            sentences: Some(cfg.sentences),
            sampling: cfg.sampling,
            seed,
            no_eos: true,
            stream: false,
        };
        let mut samples: BTreeMap<String, Vec<SampleRecord>> = BTreeMap::new();
        for (arm, g) in cfg.arms.iter().zip(&gens) {
            samples.insert(arm.name.clone(), arm.samples(g.as_ref(), item, cfg, &gen)?);
            done += 1;
            progress(done, total);
        }
        if let Some(r) = reference_sample(item, &scorers.self_judge, seed) {
            samples.insert("reference".into(), vec![r]);
        }
        scorers.score(&item.prompt, item.outline.as_deref(), &mut samples)?;
        records.push(PromptRecord {
            prompt: item.prompt.clone(),
            reference: item.reference.clone(),
            samples,
            per_prompt: BTreeMap::new(),
        });
    }
    // Metrics fitted on every sample: restarts need the references' threshold first.
    let restart_threshold = scorers.restarts(&mut records);
    for r in records.iter_mut() {
        r.per_prompt = r.samples.iter().map(|(arm, recs)| (arm.clone(), per_prompt(recs))).collect();
    }
    let mut names: Vec<String> = cfg.arms.iter().map(|a| a.name.clone()).collect();
    if records.iter().any(|r| r.reference.is_some()) {
        names.push("reference".into());
    }
    let mut aggregates = aggregate(&records, &names);
    scorers.mauve(&records, &cfg.arms, &mut aggregates);
    Ok(AbResults {
        bundle: cfg.bundle.display().to_string(),
        arms: cfg.arms.clone(),
        samples_per_prompt: cfg.samples,
        sentences: cfg.sentences,
        seed: cfg.seed,
        sampling: cfg.sampling,
        judge: judge_path.display().to_string(),
        aggregates,
        comparisons: compare(cfg, &records),
        prompts: records,
        wall_seconds: t0.elapsed().as_secs_f64(),
        fluency_judge: scorers.fluency_name(),
        judge_encoder: scorers.encoder_dir(),
        judge_encoder_name: scorers.encoder_name(),
        restart_threshold,
        judge_seconds_per_sample: scorers.seconds_per_sample(),
        notes: scorers.notes,
    })
}

/// The first arm against each other one, metric by metric, on per-prompt values.
fn compare(cfg: &AbConfig, records: &[PromptRecord]) -> Vec<Comparison> {
    let mut comparisons = Vec::new();
    let a = &cfg.arms[0];
    for b in &cfg.arms[1..] {
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
    comparisons
}

/// Per-sample metrics: mean over every sample of the arm (the median for `*_median`);
/// per-prompt metrics: mean over prompts. Non-finite values (e.g. the perplexity of an empty
/// continuation) are left out.
pub fn aggregate(records: &[PromptRecord], arms: &[String]) -> BTreeMap<String, BTreeMap<String, f64>> {
    let mut out = BTreeMap::new();
    for arm in arms {
        let mut m = BTreeMap::new();
        for (name, _, per_sample, _) in METRICS {
            let v = if *per_sample {
                summary_of(
                    name,
                    records
                        .iter()
                        .filter_map(|r| r.samples.get(arm))
                        .flatten()
                        .filter_map(|s| s.metrics.get(base_metric(name)).copied()),
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
