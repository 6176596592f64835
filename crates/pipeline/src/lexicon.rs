//! The invented-word rate: the share of a text's words found in no story the bundle was
//! trained on (`BUNDLE/words.txt`, written by `scripts/word_list.py`). A word is a run of
//! letters with inner apostrophes (`leo's`), lowercased; digits and punctuation are not words.

use crate::{PipelineError, Result};
use std::collections::HashSet;
use std::path::Path;

pub use plandiff_bundle::WORDS_FILE;

pub struct Lexicon {
    words: HashSet<String>,
}

/// The words of `text`, lowercased.
pub fn words_of(text: &str) -> Vec<String> {
    let lower = text.to_lowercase();
    let chars: Vec<char> = lower.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        if !chars[i].is_alphabetic() {
            i += 1;
            continue;
        }
        let mut w = String::new();
        while i < chars.len() {
            if chars[i].is_alphabetic() {
                w.push(chars[i]);
            } else if chars[i] == '\'' && chars.get(i + 1).is_some_and(|c| c.is_alphabetic()) && !w.is_empty() {
                w.push('\'');
            } else {
                break;
            }
            i += 1;
        }
        out.push(w);
    }
    out
}

impl Lexicon {
    /// The word list of `bundle`, or `None` when it has none (its metric is then left out).
    pub fn load(bundle: &Path) -> Result<Option<Self>> {
        let path = bundle.join(WORDS_FILE);
        if !path.exists() {
            return Ok(None);
        }
        let bytes = plandiff_data::read_capped(&path, 64 << 20).map_err(|e| PipelineError::Invalid(e.to_string()))?;
        let text = String::from_utf8(bytes).map_err(|_| {
            PipelineError::Invalid(format!("{}: not UTF-8; rebuild it with scripts/word_list.py", path.display()))
        })?;
        let words: HashSet<String> = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| l.trim().to_string())
            .filter(|l| !l.is_empty())
            .collect();
        if words.is_empty() {
            return Err(PipelineError::Invalid(format!(
                "{}: no words; rebuild it with scripts/word_list.py",
                path.display()
            )));
        }
        Ok(Some(Self { words }))
    }

    pub fn from_words<I: IntoIterator<Item = S>, S: Into<String>>(words: I) -> Self {
        Self { words: words.into_iter().map(Into::into).collect() }
    }

    /// The words of `text` found in no training story.
    pub fn invented(&self, text: &str) -> Vec<String> {
        words_of(text).into_iter().filter(|w| !self.words.contains(w)).collect()
    }

    /// Their share of `text`'s words, in [0, 1] (NaN for a text without words).
    pub fn invented_share(&self, text: &str) -> f64 {
        let all = words_of(text);
        if all.is_empty() {
            return f64::NAN;
        }
        let new = all.iter().filter(|w| !self.words.contains(*w)).count();
        plandiff_layers::bounded::share(new as f64 / all.len() as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_and_invented_ones_by_hand() {
        assert_eq!(
            words_of("Leo's ball, 42 times... 'hi' don't-stop"),
            vec!["leo's", "ball", "times", "hi", "don't", "stop"]
        );
        let lex = Lexicon::from_words(["the", "fox", "ran", "leo's"]);
        assert_eq!(lex.invented("The grownt fox ran; leo's microphge!"), vec!["grownt", "microphge"]);
        assert!((lex.invented_share("the grownt fox ran") - 0.25).abs() < 1e-12);
        assert!(lex.invented_share("42 !!").is_nan());
        assert_eq!(lex.invented_share("the fox"), 0.0);
    }
}
