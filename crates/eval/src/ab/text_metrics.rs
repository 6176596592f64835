//! Text metrics of any text set (`plandiff eval --metrics`), and coherence in the bundle's
//! own plan space.

use super::fluency::BundleLm;
use super::mean_of;
use crate::judge::{Score, SentenceEncoder};
use crate::metrics::{distinct_n, rep_n, self_bleu, words};
use crate::{PipelineError, Result};
use plandiff_bundle::{LoadedAutoencoder, PlanEncoder};
use plandiff_data::split_sentences;
use std::collections::BTreeMap;
use tch::Kind;

/// Text metrics a text set can have without generation (`plandiff eval --metrics`).
pub const TEXT_METRICS: &[&str] = &[
    "rep_2",
    "rep_3",
    "rep_4",
    "distinct_1",
    "distinct_2",
    "distinct_3",
    "self_bleu",
    "fluency_ppl",
    "invented_words",
    "self_ppl",
    "relevance",
    "coherence",
    "first_last",
    "plan_space_coherence",
];

/// A bundle's autoencoder with the encoder of its plan space, loaded once.
pub struct PlanSpaceOf {
    pub loaded: LoadedAutoencoder,
    pub plan: PlanEncoder,
}

impl PlanSpaceOf {
    pub fn load(bundle: &std::path::Path, device: tch::Device) -> Result<Self> {
        let loaded = plandiff_bundle::load_autoencoder(&plandiff_bundle::Bundle::new(bundle), device)?;
        let plan = PlanEncoder::load(&loaded.space, device)?;
        Ok(Self { loaded, plan })
    }
}

/// The metrics of the independent sentence encoder (all-MiniLM-L6-v2).
pub const SENTENCE_JUDGE_METRICS: &[&str] = &["relevance", "coherence", "first_last"];

/// Sentences of a document that `eval --metrics` takes as its prompt (as the A/B prompts do).
pub const DOC_PROMPT_SENTENCES: usize = 2;

/// A document as a prompt (its first two sentences) and the rest; with `keep_one`, a shorter
/// document keeps its last sentence as the rest (what the fluency judge scores is never empty).
fn doc_as_continuation(doc: &str, keep_one: bool) -> (String, String) {
    let s = split_sentences(doc);
    let k = DOC_PROMPT_SENTENCES.min(s.len().saturating_sub(usize::from(keep_one)));
    (s[..k].join(" "), s[k..].join(" "))
}

/// The models `eval --metrics` scores with, each loaded only when a metric needs it.
#[derive(Clone, Copy, Default)]
pub struct TextJudges<'a> {
    /// The bundle's ar model (`self_ppl`).
    pub self_lm: Option<&'a BundleLm>,
    /// The independent fluency judge (`fluency_ppl`).
    pub fluency: Option<&'a plandiff_fluency::FluencyJudge>,
    /// The bundle's training words (`invented_words`).
    pub lexicon: Option<&'a crate::lexicon::Lexicon>,
    /// The bundle's plan space (`plan_space_coherence`).
    pub encoder: Option<&'a PlanSpaceOf>,
    /// The independent sentence encoder (`relevance`, `coherence`, `first_last`).
    pub sentence: Option<&'a SentenceEncoder>,
}

/// Text metrics of a set of documents: per-document ones averaged over documents,
/// set-level ones (distinct-n over all documents, self-BLEU over the first `bleu_cap`).
/// `self_ppl` is each document's perplexity from its start under the bundle's ar model;
/// `fluency_ppl` each document's continuation's (after its first two sentences, or all but
/// its last) under the fluency judge; `plan_space_coherence` runs
/// over all of a document's sentences; the sentence judge's metrics take a document's first
/// two sentences as its prompt.
pub fn text_set_metrics(
    docs: &[String],
    wanted: &[&str],
    with: &TextJudges,
    bleu_cap: usize,
) -> Result<BTreeMap<String, f64>> {
    let TextJudges { self_lm: judge, fluency, lexicon, encoder, sentence } = *with;
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
            "fluency_ppl" => {
                let j = fluency.ok_or_else(|| {
                    PipelineError::Invalid("fluency_ppl needs the fluency judge (make judge-smollm)".into())
                })?;
                let split: Vec<(String, String)> = docs.iter().map(|d| doc_as_continuation(d, true)).collect();
                let pairs: Vec<(&str, &str)> = split.iter().map(|(p, c)| (p.as_str(), c.as_str())).collect();
                mean_of(j.perplexities(&pairs).map_err(|e| PipelineError::Invalid(e.to_string()))?.into_iter())
            }
            "invented_words" => {
                let lex = lexicon.ok_or_else(|| {
                    PipelineError::Invalid(
                        "invented_words needs the bundle's words.txt (scripts/word_list.py writes it)".into(),
                    )
                })?;
                mean_of(docs.iter().map(|d| lex.invented_share(d)))
            }
            "self_ppl" => {
                let j = judge.ok_or_else(|| PipelineError::Invalid("self_ppl needs the bundle's ar model".into()))?;
                let v: Vec<f64> = docs.iter().map(|d| j.perplexity("", d)).collect::<Result<_>>()?;
                mean_of(v.into_iter())
            }
            "plan_space_coherence" => {
                let ae = encoder.ok_or_else(|| {
                    PipelineError::Invalid(
                        "plan_space_coherence needs a bundle with an autoencoder (its sentence encoder)".into(),
                    )
                })?;
                let v: Vec<f64> = docs.iter().map(|d| plan_space_coherence(ae, "", d)).collect::<Result<_>>()?;
                mean_of(v.into_iter())
            }
            "relevance" | "coherence" | "first_last" => {
                let enc = sentence
                    .ok_or_else(|| PipelineError::Invalid(format!("{m} needs the judge's sentence encoder")))?;
                let mut v = Vec::with_capacity(docs.len());
                for d in docs {
                    let (p, c) = doc_as_continuation(d, false);
                    let s = enc.score(&p, &c).map_err(|e| PipelineError::Invalid(e.to_string()))?;
                    v.push(match m {
                        "relevance" => s.relevance,
                        "coherence" => s.coherence,
                        _ => s.first_last,
                    });
                }
                mean_of(v.into_iter())
            }
            other => {
                return Err(PipelineError::Invalid(format!(
                    "unknown metric `{other}`; use {} or all",
                    TEXT_METRICS.join(", ")
                )))
            }
        };
        out.insert(m.to_string(), v);
    }
    Ok(out)
}

/// Mean cosine of consecutive sentence latents in the bundle's plan space (its frozen
/// encoder's normalised embeddings), from the prompt's last
/// sentence through the continuation (NaN with fewer than two sentences).
pub fn plan_space_coherence(ae: &PlanSpaceOf, prompt: &str, continuation: &str) -> Result<f64> {
    let p = split_sentences(prompt);
    let mut s: Vec<&str> = p.last().copied().into_iter().collect();
    s.extend(split_sentences(continuation));
    if s.len() < 2 {
        return Ok(f64::NAN);
    }
    let z = ae.plan.encode_texts(&s, ae.loaded.ae.decoder.device())?;
    let n = z.size()[0];
    let c = plandiff_layers::bounded::cosine_similarity(&z.narrow(0, 0, n - 1), &z.narrow(0, 1, n - 1), -1);
    Ok(plandiff_layers::bounded::cosine(c.mean(Kind::Double).double_value(&[])))
}
