//! The independent judge of the A/B harness and of `eval --metrics`: an off-the-shelf
//! sentence encoder (all-MiniLM-L6-v2, [`encoder`] on [`minilm`]) that belongs to neither arm,
//! the topic and coherence scores it gives ([`scores`]), and MAUVE against human text
//! ([`mauve`]).

pub mod encoder;
pub mod mauve;
pub mod minilm;
pub mod scores;

pub use encoder::{find_encoder, EncoderError, SentenceEncoder};
pub use mauve::{mauve, Mauve, MauveOptions};

use plandiff_data::split_sentences;

/// What the judge says of one sample (a continuation of a prompt).
#[derive(Debug, Clone)]
pub struct SampleScores {
    pub relevance: f64,
    pub coherence: f64,
    pub first_last: f64,
    /// Each written sentence's cosine to everything before it (for restarts, once the
    /// threshold is fitted on human text).
    pub prior: Vec<f64>,
    /// The continuation's embedding as a whole (MAUVE's features).
    pub features: Vec<f32>,
}

impl SentenceEncoder {
    /// Scores `continuation` as a continuation of `prompt`: the prompt, the continuation and
    /// every sentence of both embedded in one batch.
    pub fn score(&self, prompt: &str, continuation: &str) -> Result<SampleScores, EncoderError> {
        let ps = split_sentences(prompt);
        let ws = split_sentences(continuation);
        let mut texts = vec![prompt, continuation];
        texts.extend(ps.iter().copied());
        texts.extend(ws.iter().copied());
        let mut e = self.embed(&texts)?.into_iter();
        let (p, c) = (e.next().unwrap_or_default(), e.next().unwrap_or_default());
        let prompt_sents: Vec<Vec<f32>> = e.by_ref().take(ps.len()).collect();
        let written: Vec<Vec<f32>> = e.collect();
        Ok(SampleScores {
            relevance: scores::relevance(&p, &written),
            coherence: scores::coherence(&written),
            first_last: scores::first_last(&written),
            prior: scores::prior_cosines(&prompt_sents, &written),
            features: c,
        })
    }
}
