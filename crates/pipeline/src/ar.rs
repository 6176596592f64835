//! Mode `ar`: prompt -> sentences -> tokens -> KV-cached sampling -> text.

use crate::{PipelineError, Result};
use plandiff_data::{split_sentences, TextTokenizer};
use plandiff_decoder::{generate, Decoder, GenerateOptions, LogitsProcessor, SamplingConfig, StopReason};
use plandiff_train::bundle::LoadedDecoder;
use plandiff_train::{Bundle, StageConfigFile};
use serde::Serialize;
use std::path::Path;
use std::time::Instant;
use tch::{nn, Device};

#[derive(Debug, Clone)]
pub struct GenOptions {
    pub max_tokens: usize,
    pub sentences: Option<usize>,
    pub sampling: SamplingConfig,
    pub seed: u64,
    /// Never end the document early: with `sentences`, write exactly that many (the A/B
    /// harness gives every arm the same length; hybrid mode always does this).
    pub no_eos: bool,
    /// Call `on_text` as the text grows (decodes the partial text at every token; leave it
    /// off when nothing streams).
    pub stream: bool,
}

/// One generated sample.
#[derive(Debug, Clone, Serialize)]
pub struct Generation {
    /// Prompt and continuation, as a reader would see them.
    pub text: String,
    pub continuation: String,
    /// The generated sentences (a last unfinished one included).
    pub sentences: Vec<String>,
    pub new_tokens: usize,
    pub stop: StopReason,
    pub seconds: f64,
    pub first_token_ms: f64,
    pub tokens_per_s: f64,
}

pub struct ArGenerator {
    model: Decoder,
    tokenizer: TextTokenizer,
    config: StageConfigFile,
    _vs: nn::VarStore,
}

/// Prompt and decoded continuation as one text. A complete prompt ended with `<sep>`, so the
/// continuation is a new sentence after one space; an open prompt continues as written.
pub fn join_text(prompt: &str, raw: &str, prompt_complete: bool) -> String {
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

pub(crate) fn ends_sentence(s: &str) -> bool {
    let t = s.trim_end().trim_end_matches(['"', '\'', '”', '’', ')']);
    t.ends_with(['.', '!', '?', '…'])
}

impl ArGenerator {
    /// Loads `BUNDLE/ar` (every check of [`Bundle::load_decoder`] applies).
    pub fn load(bundle: &Path, device: Device) -> Result<Self> {
        let LoadedDecoder { model, vs, config, tokenizer } = Bundle::new(bundle).load_decoder("ar", device)?;
        Ok(Self { model, tokenizer, config, _vs: vs })
    }

    pub fn config(&self) -> &StageConfigFile {
        &self.config
    }

    pub fn tokenizer(&self) -> &TextTokenizer {
        &self.tokenizer
    }

    pub fn model(&self) -> &Decoder {
        &self.model
    }

    /// `<bos> s1 <sep> s2 <sep> ...`; a prompt whose last sentence is unfinished is left
    /// open so the model completes it. Long prompts keep their last tokens.
    pub fn encode_prompt(&self, prompt: &str, max_new: usize) -> Result<Vec<i64>> {
        if prompt.trim().is_empty() {
            return Err(PipelineError::Invalid(
                "the prompt is empty; give some text with --prompt or --prompt-file".into(),
            ));
        }
        let sentences = split_sentences(prompt);
        let ids = self.tokenizer.encode_document(&sentences, false)?;
        let mut ids: Vec<i64> = ids.into_iter().map(i64::from).collect();
        if ends_sentence(prompt) {
            ids.push(self.tokenizer.special().sep as i64);
        }
        let room = (self.model.config().max_seq_len as usize)
            .saturating_sub(max_new.min(self.model.config().max_seq_len as usize / 2));
        if ids.len() > room {
            tracing::warn!(
                tokens = ids.len(),
                kept = room,
                "the prompt is longer than the context allows; keeping its end"
            );
            let cut = ids.len() - room + 1;
            let mut kept = vec![ids[0]];
            kept.extend_from_slice(&ids[cut..]);
            ids = kept;
        }
        Ok(ids)
    }

    /// Generates `n` samples of one prompt in one batch; `on_text(sample, text_so_far)` is
    /// called with each sample's whole text (prompt and continuation) as it grows.
    pub fn generate(
        &self,
        prompt: &str,
        n: usize,
        opts: &GenOptions,
        mut on_text: impl FnMut(usize, &str),
    ) -> Result<Vec<Generation>> {
        opts.sampling.validate().map_err(PipelineError::Invalid)?;
        if opts.max_tokens == 0 {
            return Err(PipelineError::Invalid("--max-tokens must be >= 1".into()));
        }
        let ids = self.encode_prompt(prompt, opts.max_tokens)?;
        let complete = ends_sentence(prompt);
        let sp = self.tokenizer.special();
        let gopts = GenerateOptions {
            max_new_tokens: opts.max_tokens,
            max_sentences: opts.sentences,
            eos_id: sp.eos as i64,
            sep_id: sp.sep as i64,
            pad_id: sp.pad as i64,
            banned: if opts.no_eos {
                vec![sp.bos as i64, sp.pad as i64, sp.eos as i64]
            } else {
                vec![sp.bos as i64, sp.pad as i64]
            },
        };
        let mut lp = LogitsProcessor::new(opts.sampling, opts.seed);
        let prompts = vec![ids; n.max(1)];
        let t0 = Instant::now();
        let mut first: Option<f64> = None;
        let mut partial: Vec<Vec<u32>> = vec![Vec::new(); prompts.len()];
        let out = generate(&self.model, &prompts, None, &mut lp, &gopts, |row, tok| {
            first.get_or_insert_with(|| t0.elapsed().as_secs_f64() * 1e3);
            if opts.stream && !sp.is_special(tok as u32) {
                partial[row].push(tok as u32);
                if let Ok(raw) = self.tokenizer.decode(&partial[row]) {
                    on_text(row, &join_text(prompt, &raw, complete));
                }
            }
        });
        let seconds = t0.elapsed().as_secs_f64();
        let mut gens = Vec::with_capacity(out.tokens.len());
        for (toks, stop) in out.tokens.iter().zip(&out.stop) {
            let toks: Vec<u32> = toks.iter().map(|&t| t as u32).collect();
            let raw = {
                let plain: Vec<u32> = toks.iter().copied().filter(|&t| !sp.is_special(t)).collect();
                self.tokenizer.decode(&plain)?
            };
            let sentences = toks
                .split(|&t| t == sp.sep || t == sp.eos)
                .map(|s| self.tokenizer.decode_text(s))
                .collect::<std::result::Result<Vec<_>, _>>()?
                .into_iter()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect();
            let continuation = raw.trim().to_string();
            let text = join_text(prompt, raw.trim_end(), complete);
            gens.push(Generation {
                text,
                continuation,
                sentences,
                new_tokens: toks.len(),
                stop: *stop,
                seconds,
                first_token_ms: first.unwrap_or(0.0),
                tokens_per_s: toks.len() as f64 / seconds.max(1e-9),
            });
        }
        Ok(gens)
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
    }
}
