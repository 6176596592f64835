//! Text shared by the token-by-token modes: joining a prompt and its continuation, the
//! streamed text, and a sample's [`Generation`] from its tokens.

use crate::mode::{Event, Generation};
use crate::Result;
use plandiff_data::TextTokenizer;
use plandiff_decoder::StopReason;
use std::time::Instant;

/// Prompt and decoded continuation as one text. A complete prompt ended with `<sep>`, so the
/// continuation is a new sentence after one space; an open prompt continues as written.
pub fn join_text(prompt: &str, raw: &str, prompt_complete: bool) -> String {
    if prompt.trim().is_empty() {
        return raw.trim_start().to_string(); // no prompt (an outline alone)
    }
    if prompt_complete {
        let cont = raw.trim_start();
        if cont.is_empty() {
            return prompt.trim_end().to_string();
        }
        format!("{} {cont}", prompt.trim_end())
    } else {
        format!("{prompt}{raw}")
    }
}

pub(crate) use plandiff_data::ends_sentence;

/// Each sample's text as it grows, for [`Event::Text`], and the time to the first token.
pub(crate) struct TextStream<'a> {
    tokenizer: &'a TextTokenizer,
    prompt: &'a str,
    complete: bool,
    on: bool,
    partial: Vec<Vec<u32>>,
    t0: Instant,
    first_ms: Option<f64>,
}

impl<'a> TextStream<'a> {
    pub fn new(tokenizer: &'a TextTokenizer, prompt: &'a str, samples: usize, on: bool) -> Self {
        let complete = ends_sentence(prompt);
        Self { tokenizer, prompt, complete, on, partial: vec![Vec::new(); samples], t0: Instant::now(), first_ms: None }
    }

    /// Sample `sample` wrote `tok`.
    pub fn token(&mut self, sample: usize, tok: i64, on: &mut dyn FnMut(Event)) {
        self.first_ms.get_or_insert_with(|| self.t0.elapsed().as_secs_f64() * 1e3);
        if self.on && !self.tokenizer.special().is_special(tok as u32) {
            self.partial[sample].push(tok as u32);
            if let Ok(raw) = self.tokenizer.decode(&self.partial[sample]) {
                on(Event::Text { sample, text: &join_text(self.prompt, &raw, self.complete) });
            }
        }
    }

    pub fn seconds(&self) -> f64 {
        self.t0.elapsed().as_secs_f64()
    }

    /// A sample's [`Generation`] from its new tokens and sentences.
    pub fn finish(&self, tokens: &[i64], sentences: Vec<String>, stop: StopReason, seconds: f64) -> Result<Generation> {
        let sp = self.tokenizer.special();
        let plain: Vec<u32> = tokens.iter().map(|&t| t as u32).filter(|&t| !sp.is_special(t)).collect();
        let raw = self.tokenizer.decode(&plain)?;
        Ok(Generation {
            text: join_text(self.prompt, raw.trim_end(), self.complete),
            continuation: raw.trim().to_string(),
            sentences,
            new_tokens: tokens.len(),
            stop: Some(stop),
            seconds,
            first_token_ms: Some(self.first_ms.unwrap_or(0.0)),
            tokens_per_s: tokens.len() as f64 / seconds.max(1e-9),
            detail: None,
        })
    }
}

/// The token sampler of a request: `sampling` drawn with `seed`, its n-gram penalty lowering
/// only the tokens of `tokenizer` that begin a word and leaving the `prompt`'s n-grams alone
/// ([`plandiff_decoder::LogitsProcessor::with_word_starts`], `exempting`).
pub fn token_sampler(
    tokenizer: &plandiff_data::TextTokenizer,
    sampling: plandiff_decoder::SamplingConfig,
    seed: u64,
    prompt: &[i64],
) -> plandiff_decoder::LogitsProcessor {
    let lp = plandiff_decoder::LogitsProcessor::new(sampling, seed);
    match sampling.ngram {
        Some(_) => lp.with_word_starts(tokenizer.word_starts().into()).exempting(prompt),
        None => lp,
    }
}

#[cfg(test)]
mod tests {
    use super::join_text;

    #[test]
    fn joins_complete_and_open_prompts() {
        assert_eq!(join_text("It rained. ", " Tom ran.", true), "It rained. Tom ran.");
        assert_eq!(join_text("It rained.", "!\" he said.", true), "It rained. !\" he said.");
        assert_eq!(join_text("Tom went to the", " park.", false), "Tom went to the park.");
        assert_eq!(join_text("Tom went to the pa", "rk.", false), "Tom went to the park.");
        assert_eq!(join_text("Done.", "", true), "Done.");
        assert_eq!(join_text("", " Tom ran.", false), "Tom ran.");
    }
}
