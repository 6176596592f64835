//! Token positions of the modes that fill a fixed-length sequence (`diffusion`, `masked`):
//! a template's known tokens and gaps, a prompt as a known prefix, and the text of filled
//! tokens. Known text is tokenized as the models saw text in training: sentences with a
//! leading space, `<sep>` after each complete one, after `<bos>`.

use crate::mode::{Detail, Generation};
use crate::text::ends_sentence;
use crate::{PipelineError, Result};
use plandiff_data::{split_sentences, TextTokenizer};
use plandiff_embedding::{parse_template, TemplatePart};

/// A tokenizer and the number of positions a model reads.
pub struct Layout<'a> {
    pub tokenizer: &'a TextTokenizer,
    pub seq_len: usize,
}

impl Layout<'_> {
    /// Tokens of a known text piece; `close_last`: a `<sep>` after a last complete sentence.
    pub fn encode_piece(&self, text: &str, close_last: bool) -> Result<Vec<i64>> {
        let sep = self.tokenizer.special().sep as i64;
        let sents = split_sentences(text);
        let mut out = Vec::new();
        for (i, s) in sents.iter().enumerate() {
            out.extend(self.tokenizer.encode(&format!(" {s}"))?.into_iter().map(i64::from));
            if i + 1 < sents.len() || (close_last && ends_sentence(s)) {
                out.push(sep);
            }
        }
        Ok(out)
    }

    /// Known tokens of a template (`None`: fill), after `<bos>`.
    pub fn template_positions(&self, template: &str) -> Result<Vec<Option<i64>>> {
        let parts = parse_template(template).map_err(|e| PipelineError::Invalid(e.to_string()))?;
        let mut pos = vec![Some(self.tokenizer.special().bos as i64)];
        for (i, p) in parts.iter().enumerate() {
            match p {
                TemplatePart::Text(t) => {
                    let more = i + 1 < parts.len();
                    pos.extend(self.encode_piece(t, more)?.into_iter().map(Some));
                }
                TemplatePart::Mask(n) => pos.extend(std::iter::repeat_n(None, *n)),
            }
        }
        if pos.len() > self.seq_len {
            return Err(PipelineError::Invalid(format!(
                "the template needs {} positions (<bos> included) but the model writes at most {}; shorten it",
                pos.len(),
                self.seq_len
            )));
        }
        Ok(pos)
    }

    /// A plain prompt is a known prefix; the rest, up to `max_tokens` or `seq_len`, is filled.
    pub fn prompt_positions(&self, prompt: &str, max_tokens: Option<usize>) -> Result<Vec<Option<i64>>> {
        if prompt.trim().is_empty() {
            return Err(PipelineError::Invalid(
                "the prompt is empty; give a prompt to continue or a template to fill".into(),
            ));
        }
        let mut pos = vec![Some(self.tokenizer.special().bos as i64)];
        pos.extend(self.encode_piece(prompt, true)?.into_iter().map(Some));
        let l = self.seq_len;
        let total = max_tokens.map_or(l, |m| (pos.len().saturating_add(m)).min(l));
        if pos.len() >= total {
            return Err(PipelineError::Invalid(format!(
                "the prompt takes {} of the model's {l} positions and leaves none to write; shorten it",
                pos.len()
            )));
        }
        pos.resize(total, None);
        Ok(pos)
    }

    /// Text of tokens: `<pad>`, `<bos>` and ids past the vocabulary (a mask) dropped,
    /// sentences joined by a space, stopping at `<eos>`.
    pub fn detokenize(&self, tokens: &[i64]) -> Result<String> {
        let sp = self.tokenizer.special();
        let vocab = self.tokenizer.vocab_size() as i64;
        let mut sents: Vec<Vec<u32>> = vec![Vec::new()];
        for &t in tokens {
            if t == sp.eos as i64 {
                break;
            }
            if t == sp.sep as i64 {
                sents.push(Vec::new());
            } else if (0..vocab).contains(&t) && !sp.is_special(t as u32) {
                if let Some(s) = sents.last_mut() {
                    s.push(t as u32);
                }
            }
        }
        let mut out = Vec::new();
        for s in sents.iter().filter(|s| !s.is_empty()) {
            out.push(self.tokenizer.decode_text(s)?.trim().to_string());
        }
        Ok(out.join(" "))
    }

    /// One sample's [`Generation`] from every position's token and which were given: the
    /// continuation is the filled positions' text; new tokens are those before `<eos>`, `<pad>`
    /// left out.
    pub fn generation(&self, tokens: Vec<i64>, known: &[bool], seconds: f64) -> Result<Generation> {
        let sp = self.tokenizer.special();
        let filled: Vec<i64> = tokens.iter().zip(known).filter(|(_, &k)| !k).map(|(&t, _)| t).collect();
        let end = filled.iter().position(|&t| t == sp.eos as i64).unwrap_or(filled.len());
        let new_tokens = filled[..end].iter().filter(|&&t| t != sp.pad as i64).count();
        let continuation = self.detokenize(&filled)?;
        Ok(Generation {
            text: self.detokenize(&tokens)?,
            sentences: split_sentences(&continuation).into_iter().map(str::to_string).collect(),
            continuation,
            new_tokens,
            stop: None,
            seconds,
            first_token_ms: None,
            tokens_per_s: new_tokens as f64 / seconds.max(1e-9),
            detail: Some(Detail::Positions { tokens, known: known.to_vec() }),
        })
    }
}
