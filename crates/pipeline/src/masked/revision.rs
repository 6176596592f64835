//! What a masked edit reads and reports: what to remask and the score a change must raise, the denoising settings, a text tied to its bytes
//! ([`Doc`]), and the spans, scored tokens and rounds of a revision. Data only, so the edit,
//! its scores and its length changes ([`super::edit`], [`super::score`], [`super::lengths`])
//! all read it without reading each other.

use crate::{PipelineError, Result};
use plandiff_masked::Remasking;
use serde::Serialize;

/// The score a revision raises before it keeps a change ([`super::score`] computes it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ReviseScore {
    Ar,
    Pll,
    /// The masked model's log-probability of every word token with the text in view (one
    /// pass; a model trained on substitutes only).
    Visible,
    /// `ar` and `visible` both: a change's gain is the smaller of the two.
    #[serde(rename = "ar+visible")]
    ArVisible,
}

impl ReviseScore {
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "ar" => Ok(Self::Ar),
            "pll" => Ok(Self::Pll),
            "visible" => Ok(Self::Visible),
            "ar+visible" => Ok(Self::ArVisible),
            _ => Err(PipelineError::Invalid(format!(
                "--score {s}: use ar (the bundle's ar model's log-likelihood of the text), pll (the masked model's pseudo-log-likelihood), visible (the masked model's log-likelihood of the text in view; a model trained with substitute_prob) or ar+visible (both must rise)"
            ))),
        }
    }

    /// Whether the bundle's ar model is read.
    pub fn needs_ar(self) -> bool {
        matches!(self, Self::Ar | Self::ArVisible)
    }

    /// What a change from scores `before` to `after` ([`super::MaskedGenerator::text_score`]) gains.
    pub(super) fn gain(self, before: (f64, f64), after: (f64, f64)) -> f64 {
        let (a, b) = (after.0 - before.0, after.1 - before.1);
        if self == Self::ArVisible {
            a.min(b)
        } else {
            a
        }
    }
}

/// What to remask.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum EditTarget {
    /// Sentences `from..=to`, 1-based.
    Sentences(usize, usize),
    /// Characters `from..to`, 0-based, end exclusive; every token they touch is remasked.
    Chars(usize, usize),
    /// The tokens whose log-probability (each with it masked and the rest in view) is below
    /// `below`, or the lowest `fraction` of them, are remasked and refilled, up to `rounds`
    /// times; of a refill's changes (runs of changed tokens) only the one that raises the
    /// text's `score` most, by at least `min_gain` nats, is kept, and revision stops when
    /// none does. A text longer than the model's context is revised window by window (whole
    /// sentences).
    /// With `insert_delete`, up to `rounds` more rounds then try deleting each weak word and
    /// putting a word before or after it ([`super::lengths`]), kept by the same rule.
    Revise {
        below: Option<f64>,
        fraction: Option<f64>,
        rounds: usize,
        min_gain: f64,
        score: ReviseScore,
        insert_delete: bool,
    },
}

/// How the remasked tokens are denoised.
#[derive(Debug, Clone, Copy)]
pub struct EditSettings {
    /// `None`: one step per remasked token.
    pub steps: Option<usize>,
    pub remasking: Remasking,
    pub temperature: f64,
    pub seed: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ChangedSpan {
    /// Byte range in the input.
    pub start: usize,
    pub end: usize,
    pub before: String,
    pub after: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ScoredToken {
    /// Token index in the text (`<bos>` is 0).
    pub index: usize,
    pub text: String,
    pub logprob: f64,
    pub remasked: bool,
    /// The token written in its place (remasked tokens only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReviseRound {
    pub round: usize,
    pub remasked: usize,
    /// The text's pseudo-log-likelihood before the round, and what the kept change added
    /// (0: nothing raised it by `min_gain`, the revision stopped).
    pub pll: f64,
    pub gain: f64,
    pub tokens: Vec<ScoredToken>,
}

#[derive(Debug, Clone, Serialize)]
pub struct MaskedEdit {
    pub text: String,
    pub remasked: usize,
    pub changed: Vec<ChangedSpan>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rounds: Vec<ReviseRound>,
}

/// A text as the model reads it, each token tied to the input bytes it came from.
pub(super) struct Doc<'t> {
    pub(super) text: &'t str,
    /// `<bos> s1 <sep> ... sN <sep> <eos>`.
    pub(super) ids: Vec<i64>,
    /// Per token: its sentence (None for special tokens).
    pub(super) sentence: Vec<Option<usize>>,
    /// Per token: its byte range in `text` (aligned sentences), else the sentence's range.
    pub(super) bytes: Vec<(usize, usize)>,
    /// Per sentence: byte range, and whether its tokens map back to its bytes one to one.
    pub(super) sentences: Vec<((usize, usize), bool)>,
}
