//! The independent judge of the A/B harness and of `eval --metrics`: an off-the-shelf
//! sentence encoder that belongs to neither arm (all-mpnet-base-v2 by default, all-MiniLM-L6-v2
//! as a second column; both from `plandiff_sentence`),
//! the topic and coherence scores it gives ([`scores`], through [`Score`]), and MAUVE against
//! human text ([`mauve`]).

pub mod mauve;
pub mod scores;

pub use mauve::{mauve, Mauve, MauveOptions};
pub use plandiff_sentence::{find_encoder, find_mpnet, EncoderError, SentenceEncoder};

/// The independent judge: the encoder in `explicit`'s folder (either model), else
/// all-mpnet-base-v2 (`make judge-mpnet`), else all-MiniLM-L6-v2 with a note saying so (it is
/// the plan space's own encoder, so it flatters plans made in its space).
pub fn load_judge(
    explicit: Option<&std::path::Path>,
    device: tch::Device,
) -> Result<(SentenceEncoder, Option<String>), EncoderError> {
    if let Some(dir) = explicit {
        return Ok((SentenceEncoder::load(dir, device)?, None));
    }
    match find_mpnet(None) {
        Ok(dir) => Ok((SentenceEncoder::load(&dir, device)?, None)),
        Err(missing) => {
            let e = SentenceEncoder::load(&find_encoder(None)?, device)?;
            Ok((e, Some(format!("{missing}; judged by all-MiniLM-L6-v2, the plan space's own encoder, instead"))))
        }
    }
}

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
    /// Each written sentence's embedding (the outline scores).
    pub sentences: Vec<Vec<f32>>,
}

/// What the judge's encoder scores: a continuation of a prompt.
pub trait Score {
    /// Scores `continuation` as a continuation of `prompt`.
    fn score(&self, prompt: &str, continuation: &str) -> Result<SampleScores, EncoderError>;
    /// Scores several continuations of one prompt in one batched pass.
    fn score_many(&self, prompt: &str, continuations: &[&str]) -> Result<Vec<SampleScores>, EncoderError>;
}

impl Score for SentenceEncoder {
    /// Scores `continuation` as a continuation of `prompt`.
    fn score(&self, prompt: &str, continuation: &str) -> Result<SampleScores, EncoderError> {
        Ok(self.score_many(prompt, &[continuation])?.pop().unwrap_or_else(|| SampleScores {
            relevance: f64::NAN,
            coherence: f64::NAN,
            first_last: f64::NAN,
            prior: Vec::new(),
            features: Vec::new(),
            sentences: Vec::new(),
        }))
    }

    /// Scores several continuations of one prompt: the prompt and its sentences are embedded
    /// once, every continuation and its sentences with them, in one batched pass.
    fn score_many(&self, prompt: &str, continuations: &[&str]) -> Result<Vec<SampleScores>, EncoderError> {
        let ps = split_sentences(prompt);
        let mut texts = vec![prompt];
        texts.extend(ps.iter().copied());
        let mut spans = Vec::with_capacity(continuations.len()); // (index of the continuation, sentences)
        for c in continuations {
            let ws = split_sentences(c);
            spans.push((texts.len(), ws.len()));
            texts.push(c);
            texts.extend(ws);
        }
        let e = self.embed(&texts)?;
        let (p, prompt_sents) = (&e[0], &e[1..1 + ps.len()]);
        Ok(spans
            .into_iter()
            .map(|(i, n)| {
                let written = &e[i + 1..i + 1 + n];
                SampleScores {
                    relevance: scores::relevance(p, written),
                    coherence: scores::coherence(written),
                    first_last: scores::first_last(written),
                    prior: scores::prior_cosines(prompt_sents, written),
                    features: e[i].clone(),
                    sentences: written.to_vec(),
                }
            })
            .collect())
    }
}
