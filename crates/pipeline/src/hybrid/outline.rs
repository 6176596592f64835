//! `--outline`: the user fixes some plan slots in words. One line per planned sentence after
//! the prompt, in order; a line of text (a sentence or a short phrase) is encoded into the
//! plan space and held fixed as a known slot, an empty line or `_` leaves the slot to the
//! planner, which inpaints the free slots around the fixed ones; the decoder writes every slot.

use super::HybridGenerator;
use crate::{PipelineError, Result};
use std::io::Read;
use std::path::Path;

/// The longest outline line, in characters: a plan slot holds one sentence.
pub const MAX_LINE_CHARS: usize = 400;
/// The most outline lines (a plan is windowed, so this bounds only the work).
pub const MAX_LINES: usize = 256;

/// Reads an outline from `path` (`-`: standard input): each line's text, `None` for a free slot.
pub fn read_outline(path: &Path) -> Result<Vec<Option<String>>> {
    let text = if path.as_os_str() == "-" {
        let mut buf = Vec::new();
        std::io::stdin()
            .take(plandiff_data::SMALL_FILE_CAP + 1)
            .read_to_end(&mut buf)
            .map_err(|e| PipelineError::Invalid(format!("--outline -: reading standard input: {e}")))?;
        if buf.len() as u64 > plandiff_data::SMALL_FILE_CAP {
            return Err(PipelineError::Invalid(
                "--outline -: more than 16 MiB; an outline is a line per sentence".into(),
            ));
        }
        String::from_utf8(buf)
            .map_err(|_| PipelineError::Invalid("--outline -: not valid UTF-8; convert it to UTF-8".into()))?
    } else {
        plandiff_data::read_text_capped(path, plandiff_data::SMALL_FILE_CAP)
            .map_err(|e| PipelineError::Invalid(format!("--outline {}: {e}", path.display())))?
    };
    parse_outline(&text).map_err(|e| PipelineError::Invalid(format!("--outline {}: {e}", path.display())))
}

/// An outline's slots: every line up to the last one with text; `_` or blank is free.
pub fn parse_outline(text: &str) -> std::result::Result<Vec<Option<String>>, String> {
    let mut slots: Vec<Option<String>> = text
        .lines()
        .map(|l| l.trim())
        .map(|l| if l.is_empty() || l == "_" { None } else { Some(l.to_string()) })
        .collect();
    while slots.last().is_some_and(Option::is_none) {
        slots.pop();
    }
    if slots.is_empty() {
        return Err("the outline has no line of text; write one sentence or phrase per line, `_` or an empty line for a slot the planner fills".into());
    }
    if slots.len() > MAX_LINES {
        return Err(format!("{} lines, more than {MAX_LINES}; write a shorter outline", slots.len()));
    }
    for (k, s) in slots.iter().enumerate() {
        if let Some(n) = s.as_ref().map(|s| s.chars().count()).filter(|&n| n > MAX_LINE_CHARS) {
            return Err(format!(
                "line {} is {n} characters; a line is one planned sentence (at most {MAX_LINE_CHARS})",
                k + 1
            ));
        }
    }
    Ok(slots)
}

/// `edit --to`'s phrase, trimmed: one planned sentence's worth of text.
pub fn check_phrase(phrase: &str) -> Result<&str> {
    let p = phrase.trim();
    if p.is_empty() {
        return Err(PipelineError::Invalid("--to is empty; give the phrase the sentence should say".into()));
    }
    let n = p.chars().count();
    if n > MAX_LINE_CHARS {
        return Err(PipelineError::Invalid(format!(
            "--to is {n} characters; a phrase stands for one sentence (at most {MAX_LINE_CHARS})"
        )));
    }
    Ok(p)
}

/// Whether an outline line ends a sentence: the one rule of `plandiff_data::ends_sentence`.
pub use plandiff_data::ends_sentence;

impl HybridGenerator {
    /// Each line, with every phrase (a line that does not end a sentence) completed to one
    /// sentence by the decoder under its null plan, greedily (one batch).
    pub(super) fn complete_phrases(&self, lines: &[&str]) -> Result<Vec<String>> {
        let mut out: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
        let open: Vec<usize> = (0..lines.len()).filter(|&i| !ends_sentence(lines[i])).collect();
        if open.is_empty() {
            return Ok(out);
        }
        let special = self.special();
        let toks = self.tokenize_sentences(&open.iter().map(|&i| lines[i]).collect::<Vec<_>>())?;
        let prompts: Vec<Vec<i64>> = toks.iter().map(|t| [&[special.bos as i64][..], t].concat()).collect();
        let null = self.ae.null_plan();
        let plans = null.unsqueeze(0).repeat([prompts.len() as i64, 1, 1]);
        let g =
            self.greedy_sentence(&prompts, &plans, vec![special.bos as i64, special.pad as i64, special.eos as i64]);
        for (k, &i) in open.iter().enumerate() {
            let ids: Vec<u32> =
                toks[k].iter().chain(&g.tokens[k]).map(|&t| t as u32).filter(|&t| !special.is_special(t)).collect();
            out[i] = self.tokenizer.decode(&ids)?.trim().to_string();
            tracing::info!("outline line {:?} completed as {:?}", lines[i], out[i]);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::{ends_sentence, parse_outline};

    #[test]
    fn a_line_ends_a_sentence_at_its_final_stop() {
        assert!(ends_sentence("they go home.") && ends_sentence("\"help!\" she said?\" ") && ends_sentence("is it?"));
        assert!(!ends_sentence("the dog finds the ball") && !ends_sentence("mr. smith went"));
    }

    #[test]
    fn lines_are_fixed_or_free_slots() {
        let o = parse_outline("the dog finds the ball\n_\n\n  they go home. \n\n_\n").unwrap();
        assert_eq!(
            o,
            vec![Some("the dog finds the ball".into()), None, None, Some("they go home.".into())],
            "trailing free lines are dropped"
        );
        assert!(parse_outline("\n_\n  \n").unwrap_err().contains("no line of text"));
        assert!(parse_outline(&"x".repeat(401)).unwrap_err().contains("line 1 is 401 characters"));
        assert!(parse_outline(&"a\n".repeat(300)).unwrap_err().contains("300 lines"));
    }
}
