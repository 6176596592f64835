//! The models every arm is scored with, the same for all: the fluency judge's perplexity (a
//! general LM neither arm trained), the bundle's own ar model's (self perplexity), the
//! bundle's own sentence encoder (plan-space coherence), and the independent sentence
//! encoder (relevance, coherence, first-last, restarts, MAUVE).

use super::{AbConfig, ArmSpec, SampleRecord};
use crate::judge::{find_encoder, load_judge, mauve, scores, MauveOptions, Score, SentenceEncoder};
use crate::{PipelineError, Result};

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use super::fluency::BundleLm;
use super::text_metrics::{plan_space_coherence, PlanSpaceOf};
use super::PromptRecord;
use crate::lexicon::{Lexicon, WORDS_FILE};
use plandiff_fluency::{find_judge, FluencyJudge};

/// MAUVE needs this many references (below it the histograms say little).
pub const MAUVE_MIN_REFERENCES: usize = 20;
/// The restart threshold needs this many references.
pub const RESTART_MIN_REFERENCES: usize = 20;

pub(super) struct Scorers {
    /// The bundle's own ar model: self perplexity.
    pub self_judge: BundleLm,
    /// The independent fluency judge.
    fluency: FluencyJudge,
    /// The bundle's training words (the invented-word rate), if it keeps them.
    lexicon: Option<Lexicon>,
    encoder: Option<PlanSpaceOf>,
    sentence: Option<SentenceEncoder>,
    /// all-MiniLM-L6-v2 when the judge is another encoder: relevance, coherence and first-last
    /// again, as `*_minilm`.
    second: Option<SentenceEncoder>,
    judge_seconds: f64,
    judged: usize,
    pub notes: Vec<String>,
}

/// The sentence judge, or why it is missing. An explicit folder that does not load is an
/// error; a model missing from the `.venv` is a note, and every other metric still runs.
fn load_sentence(cfg: &AbConfig, notes: &mut Vec<String>) -> Result<Option<SentenceEncoder>> {
    match load_judge(cfg.judge_encoder.as_deref(), cfg.device) {
        Ok((e, note)) => {
            notes.extend(note);
            Ok(Some(e))
        }
        Err(e) if cfg.judge_encoder.is_some() => Err(PipelineError::Invalid(e.to_string())),
        Err(e) => {
            tracing::warn!("{e}; relevance, coherence, first_last, restarts and MAUVE are left out");
            notes.push(format!("relevance, coherence, first_last, restarts and MAUVE left out: {e}"));
            Ok(None)
        }
    }
}

impl Scorers {
    pub fn load(cfg: &AbConfig) -> Result<(Self, PathBuf)> {
        let judge_path = cfg.judge.clone().unwrap_or_else(|| cfg.bundle.clone());
        // The fluency judge first: a missing or damaged file stops the A/B before anything
        // is generated, naming `make judge-smollm`.
        let fluency = find_judge(cfg.fluency_judge.as_deref())
            .and_then(|p| FluencyJudge::load(&p, cfg.device))
            .map_err(|e| PipelineError::Invalid(e.to_string()))?;
        let self_judge = BundleLm::load(&judge_path, cfg.device)?;
        let mut notes = Vec::new();
        let lexicon = Lexicon::load(&cfg.bundle)?;
        if lexicon.is_none() {
            notes.push(format!(
                "invented_words left out: {} has no {WORDS_FILE} (scripts/word_list.py writes it)",
                cfg.bundle.display()
            ));
        }
        // Plan-space coherence uses the --checkpoint bundle's sentence encoder for every arm.
        let encoder = match PlanSpaceOf::load(&cfg.bundle, cfg.device) {
            Ok(e) => Some(e),
            Err(e) => {
                tracing::warn!("{}: plan_space_coherence is not measured ({e})", cfg.bundle.display());
                None
            }
        };
        let sentence = load_sentence(cfg, &mut notes)?;
        let minilm = plandiff_sentence::NAME;
        let second = match &sentence {
            Some(j) if j.name() != minilm => {
                find_encoder(None).and_then(|d| SentenceEncoder::load(&d, cfg.device)).ok()
            }
            _ => None,
        };
        let s = Self { self_judge, fluency, lexicon, encoder, sentence, second, judge_seconds: 0.0, judged: 0, notes };
        Ok((s, judge_path))
    }

    /// The fluency judge's name and file, for the report.
    pub fn fluency_name(&self) -> String {
        format!("{} ({})", self.fluency.name(), self.fluency.path().display())
    }

    pub fn encoder_dir(&self) -> Option<String> {
        self.sentence.as_ref().map(|s| s.dir().display().to_string())
    }

    /// The judge encoder's name (`sentence-transformers/all-mpnet-base-v2`).
    pub fn encoder_name(&self) -> Option<String> {
        self.sentence.as_ref().map(|s| s.name().to_string())
    }

    pub fn seconds_per_sample(&self) -> Option<f64> {
        (self.judged > 0).then(|| self.judge_seconds / self.judged as f64)
    }

    /// Adds the model-based scores to every sample of a prompt (the sentence judge embeds the
    /// prompt once for all of them), and with an outline, how each sample follows it.
    pub fn score(
        &mut self,
        prompt: &str,
        outline: Option<&[Option<String>]>,
        samples: &mut BTreeMap<String, Vec<SampleRecord>>,
    ) -> Result<()> {
        let pairs: Vec<(&str, String)> = samples.values().flatten().map(|s| (prompt, s.continuation.clone())).collect();
        let refs: Vec<(&str, &str)> = pairs.iter().map(|(p, c)| (*p, c.as_str())).collect();
        let fluency = self.fluency.perplexities(&refs).map_err(|e| PipelineError::Invalid(e.to_string()))?;
        for (s, f) in samples.values_mut().flatten().zip(fluency) {
            s.metrics.insert("fluency_ppl".into(), f);
            if let Some(lex) = &self.lexicon {
                s.metrics.insert("invented_words".into(), lex.invented_share(&s.continuation));
            }
            s.metrics.insert("self_ppl".into(), self.self_judge.perplexity(prompt, &s.continuation)?);
            if let Some(e) = &self.encoder {
                let c = plan_space_coherence(e, prompt, &s.continuation)?;
                s.metrics.insert("plan_space_coherence".into(), c);
            }
        }
        let Some(j) = &self.sentence else { return Ok(()) };
        let t0 = Instant::now();
        let owned: Vec<String> = samples.values().flatten().map(|s| s.continuation.clone()).collect();
        let texts: Vec<&str> = owned.iter().map(String::as_str).collect();
        let scored = j.score_many(prompt, &texts).map_err(|e| PipelineError::Invalid(e.to_string()))?;
        self.judge_seconds += t0.elapsed().as_secs_f64();
        self.judged += scored.len();
        for (s, sc) in samples.values_mut().flatten().zip(scored) {
            s.metrics.insert("relevance".into(), sc.relevance);
            s.metrics.insert("coherence".into(), sc.coherence);
            s.metrics.insert("first_last".into(), sc.first_last);
            s.judge = Some(sc);
        }
        // With a reference continuation: each arm's k-th sentence against the reference's k-th.
        let reference = samples.get("reference").and_then(|r| r.first()).and_then(|r| r.judge.as_ref());
        if let Some(refs) = reference.map(|j| j.sentences.clone()) {
            for (_, list) in samples.iter_mut().filter(|(arm, _)| arm.as_str() != "reference") {
                for s in list.iter_mut() {
                    let Some(sc) = &s.judge else { continue };
                    s.metrics.insert("aligned_cosine".into(), scores::aligned(&refs, &sc.sentences));
                }
            }
        }
        if let Some(o) = outline {
            let slots: Vec<(usize, &str)> =
                o.iter().enumerate().filter_map(|(k, l)| l.as_deref().map(|l| (k, l))).collect();
            let texts: Vec<&str> = slots.iter().map(|&(_, l)| l).collect();
            let e = j.embed(&texts).map_err(|e| PipelineError::Invalid(e.to_string()))?;
            let lines: Vec<(usize, Vec<f32>)> = slots.iter().map(|&(k, _)| k).zip(e).collect();
            for s in samples.values_mut().flatten() {
                let Some(sc) = &s.judge else { continue };
                s.metrics.insert("outline_adherence".into(), scores::outline_adherence(&lines, &sc.sentences));
                s.metrics.insert("outline_order".into(), scores::outline_order(&lines, &sc.sentences));
            }
        }
        let Some(m) = &self.second else { return Ok(()) };
        let scored = m.score_many(prompt, &texts).map_err(|e| PipelineError::Invalid(e.to_string()))?;
        for (s, sc) in samples.values_mut().flatten().zip(scored) {
            s.metrics.insert("relevance_minilm".into(), sc.relevance);
            s.metrics.insert("coherence_minilm".into(), sc.coherence);
            s.metrics.insert("first_last_minilm".into(), sc.first_last);
        }
        Ok(())
    }

    /// Fits the restart threshold on the references (the 5% quantile of each reference's
    /// lowest prior cosine, so 5% of human continuations count as restarting) and counts every
    /// sample's restarts; returns the threshold (`None`, with a note, under 20 references).
    pub fn restarts(&mut self, records: &mut [PromptRecord]) -> Option<f64> {
        self.sentence.as_ref()?;
        let human: Vec<f64> = records
            .iter()
            .flat_map(|r| r.samples.get("reference").into_iter().flatten())
            .filter_map(|s| s.judge.as_ref())
            .filter_map(|j| j.prior.iter().copied().filter(|c| c.is_finite()).reduce(f64::min))
            .collect();
        if human.len() < RESTART_MIN_REFERENCES {
            self.notes.push(format!(
                "restarts left out: the threshold is fitted on the references, and there are {} (need {RESTART_MIN_REFERENCES}; give prompts with references)",
                human.len()
            ));
            return None;
        }
        let threshold = scores::restart_threshold(&human)?;
        for s in records.iter_mut().flat_map(|r| r.samples.values_mut().flatten()) {
            if let Some(j) = &s.judge {
                let n = scores::restarts(&j.prior, threshold);
                s.metrics.insert("restarts".into(), n as f64);
                s.metrics.insert("restarted".into(), f64::from(u8::from(n > 0)));
            }
        }
        Some(threshold)
    }

    /// MAUVE of every arm's continuations against the references, into the aggregates.
    pub fn mauve(
        &mut self,
        records: &[PromptRecord],
        arms: &[ArmSpec],
        aggregates: &mut BTreeMap<String, BTreeMap<String, f64>>,
    ) {
        if self.sentence.is_none() {
            return;
        }
        let feats = |arm: &str| -> Vec<Vec<f32>> {
            records
                .iter()
                .flat_map(|r| r.samples.get(arm).into_iter().flatten())
                .filter_map(|s| s.judge.as_ref().map(|j| j.features.clone()))
                .collect()
        };
        let human = feats("reference");
        if human.len() < MAUVE_MIN_REFERENCES {
            self.notes.push(format!(
                "MAUVE left out: {} references (need {MAUVE_MIN_REFERENCES}; give prompts with references)",
                human.len()
            ));
            return;
        }
        for arm in arms {
            let q = feats(&arm.name);
            match mauve(&human, &q, &MauveOptions::default()) {
                Ok(m) => {
                    aggregates.entry(arm.name.clone()).or_default().insert("mauve".into(), m.mauve);
                }
                Err(e) => self.notes.push(format!("MAUVE of {}: {e}", arm.name)),
            }
        }
    }
}
