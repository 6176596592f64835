//! Insert and delete edits for revision (issue 26): a word the models find out of place may
//! be an extra one (the text reads better without it) or stand after a missing one (a word
//! put before it helps). Each candidate is a byte edit of the text, tokenized afresh and
//! scored whole by the AR model like a substitution, so the rest of the text stays byte for
//! byte. The masked model proposes the inserted words: a mask is put in the gap and its
//! likeliest tokens there are tried.

use super::revision::{ChangedSpan, Doc, EditTarget};
use super::score::pick_weakest;
use super::MaskedGenerator;
use crate::{PipelineError, Result};
use tch::{Kind, Tensor};

/// A byte edit: `text[start..end]` becomes `new`.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct ByteEdit {
    pub start: usize,
    pub end: usize,
    pub new: String,
}

/// Edits of the pass's input kept so far (sorted, disjoint, in input bytes) and the text
/// they make.
pub(super) struct Applied<'t> {
    input: &'t str,
    edits: Vec<ByteEdit>,
}

impl<'t> Applied<'t> {
    /// `input` with the substitutions already made (`changed`: byte ranges of `input`).
    pub fn new(input: &'t str, changed: &[ChangedSpan]) -> Self {
        let mut edits: Vec<ByteEdit> =
            changed.iter().map(|c| ByteEdit { start: c.start, end: c.end, new: c.after.clone() }).collect();
        edits.sort_by_key(|e| e.start);
        Self { input, edits }
    }

    pub fn text(&self) -> String {
        let mut out = String::with_capacity(self.input.len());
        let mut at = 0;
        for e in &self.edits {
            out.push_str(&self.input[at..e.start]);
            out.push_str(&e.new);
            at = e.end;
        }
        out.push_str(&self.input[at..]);
        out
    }

    /// Maps a byte edit of [`Self::text`] to one of the input, with the index it goes in at;
    /// `None` when it touches text an earlier edit wrote (revision never edits its own edit).
    fn to_input(&self, e: &ByteEdit) -> Option<(usize, ByteEdit)> {
        let mut delta: isize = 0; // input byte - text byte, left of the edit
        let mut at = self.edits.len();
        for (i, x) in self.edits.iter().enumerate() {
            let a = (x.start as isize - delta) as usize;
            let b = a + x.new.len();
            if e.end <= a {
                at = i;
                break;
            }
            if e.start < b {
                return None;
            }
            delta += (x.end - x.start) as isize - x.new.len() as isize;
        }
        let (s, t) = (e.start as isize + delta, e.end as isize + delta);
        (s >= 0 && s <= t && t as usize <= self.input.len())
            .then(|| (at, ByteEdit { start: s as usize, end: t as usize, new: e.new.clone() }))
    }

    /// Keeps `e` (a byte edit of [`Self::text`]); false when it cannot be mapped.
    pub fn apply(&mut self, e: &ByteEdit) -> bool {
        let Some((at, m)) = self.to_input(e) else { return false };
        self.edits.insert(at, m);
        true
    }

    pub fn changed(&self) -> Vec<ChangedSpan> {
        self.edits
            .iter()
            .map(|e| ChangedSpan {
                start: e.start,
                end: e.end,
                before: self.input[e.start..e.end].to_string(),
                after: e.new.clone(),
            })
            .collect()
    }
}

/// What an insert or delete gains: over the tokens the two texts share (their common prefix
/// and suffix), the smaller over the score's models of the sum of `after - before`. A word's
/// own score is left out: deleting any word raises a text's log-likelihood by that word's
/// cost, so the rest of the text must read better without it (or with the new word) for the
/// edit to be kept.
pub(super) fn shared_gain(old: &[i64], before: &[Vec<f64>], new: &[i64], after: &[Vec<f64>]) -> f64 {
    let p = old.iter().zip(new).take_while(|(a, b)| a == b).count();
    let room = old.len().min(new.len()) - p;
    let q = old.iter().rev().zip(new.iter().rev()).take(room).take_while(|(a, b)| a == b).count();
    let shared = |i: usize| -> Option<usize> {
        match i {
            i if i < p => Some(i),
            i if i >= old.len() - q => Some(i + new.len() - old.len()),
            _ => None,
        }
    };
    before
        .iter()
        .zip(after)
        .map(|(b, a)| (0..old.len()).filter_map(|i| shared(i).map(|j| a[j] - b[i])).sum::<f64>())
        .fold(f64::INFINITY, f64::min)
}

impl MaskedGenerator {
    /// Up to `target`'s `rounds` rounds of insert and delete edits after a window's
    /// substitutions (`changed`, byte ranges of `doc`'s text), each keeping the candidate that
    /// raises the text's `score` most, by at least `min_gain`; stops when none does. Returns the
    /// text and every change.
    pub(super) fn insert_delete(
        &self,
        doc: &Doc,
        changed: &[ChangedSpan],
        rounds: &mut Vec<super::revision::ReviseRound>,
        target: EditTarget,
    ) -> Result<(String, Vec<ChangedSpan>)> {
        let EditTarget::Revise { below, fraction, rounds: n, min_gain, score, .. } = target else {
            return Err(PipelineError::Invalid("internal: not a revision".into()));
        };
        let mut applied = super::lengths::Applied::new(doc.text, changed);
        let close = doc.ids.last() == Some(&(self.tokenizer.special().eos as i64));
        for round in rounds.len() + 1..=rounds.len() + n.max(1) {
            let cur = applied.text();
            let d = self.doc_open(&cur, close)?;
            let total = self.token_scores(score, &d.ids, &d)?;
            let pick = pick_weakest(&self.scores(&d.ids, &d)?, below, fraction);
            let mut best: Option<(f64, super::lengths::ByteEdit)> = None;
            for e in self.length_candidates(&cur, close, &pick)? {
                let new = format!("{}{}{}", &cur[..e.start], e.new, &cur[e.end..]);
                let c = self.doc_open(&new, close)?;
                if c.ids.len() > self.config.model.seq_len as usize {
                    continue;
                }
                let gain = shared_gain(&d.ids, &total, &c.ids, &self.token_scores(score, &c.ids, &c)?);
                if gain >= min_gain && best.as_ref().is_none_or(|b| gain > b.0) {
                    best = Some((gain, e));
                }
            }
            let kept = best.as_ref().is_some_and(|(_, e)| applied.apply(e));
            let gain = best.filter(|_| kept).map_or(0.0, |b| b.0);
            rounds.push(super::revision::ReviseRound {
                round,
                remasked: pick.len(),
                pll: total[0].iter().sum(),
                gain,
                tokens: Vec::new(),
            });
            if !kept {
                break;
            }
        }
        Ok((applied.text(), applied.changed()))
    }

    /// The insert and delete edits of `text` (one window, `close`: it ends the text) that
    /// touch the words at token positions `pick` of its tokens: each word deleted, and each
    /// gap before and after it given one of the masked model's likeliest words.
    pub(super) fn length_candidates(&self, text: &str, close: bool, pick: &[usize]) -> Result<Vec<ByteEdit>> {
        let doc = self.doc_open(text, close)?;
        let l = self.config.model.seq_len as usize;
        let mut out = Vec::new();
        let mut gaps = Vec::new();
        for span in self.word_spans(&doc.ids, pick, &doc)? {
            let (a, b) = (span[0], span[span.len() - 1]);
            let Some(k) = doc.sentence[a] else { continue };
            let ((s0, _), aligned) = doc.sentences[k];
            if !aligned {
                continue;
            }
            let first = doc.bytes[a].0 == s0;
            let next_is_word = doc.sentence[b + 1] == Some(k) && self.piece(doc.ids[b + 1])?.starts_with(' ');
            if !first {
                out.push(ByteEdit { start: doc.bytes[a].0, end: doc.bytes[b].1, new: String::new() });
            } else if next_is_word {
                out.push(ByteEdit { start: s0, end: doc.bytes[b + 1].0 + 1, new: String::new() });
            }
            if b > a && doc.ids.len() - (b - a) <= l {
                // A word of several tokens may be one wrong word for one right one-token word.
                for t in self.word_for(&doc.ids, a, b)? {
                    let piece = self.piece(t)?;
                    if let Some(word) = piece.strip_prefix(' ').filter(|w| !w.is_empty() && !w.contains(' ')) {
                        let new = if first { word.to_string() } else { piece.clone() };
                        out.push(ByteEdit { start: doc.bytes[a].0, end: doc.bytes[b].1, new });
                    }
                }
            }
            gaps.push((a, first));
            if next_is_word {
                gaps.push((b + 1, false));
            }
        }
        gaps.dedup();
        for (at, first) in gaps {
            if doc.ids.len() + 1 > l {
                break;
            }
            let pos = if first { doc.sentences[doc.sentence[at].unwrap_or(0)].0 .0 } else { doc.bytes[at].0 };
            for t in self.gap_words(&doc.ids, at)? {
                let piece = self.piece(t)?;
                let Some(word) = piece.strip_prefix(' ').filter(|w| !w.is_empty() && !w.contains(' ')) else {
                    continue; // a piece of a word, not a word
                };
                let new = if first { format!("{word} ") } else { piece.clone() };
                out.push(ByteEdit { start: pos, end: pos, new });
            }
        }
        Ok(out)
    }

    fn piece(&self, t: i64) -> Result<String> {
        Ok(self.tokenizer.decode(&[t as u32])?)
    }

    /// The masked model's likeliest tokens for a mask put before token position `at`.
    fn gap_words(&self, ids: &[i64], at: usize) -> Result<Vec<i64>> {
        let mut x = ids.to_vec();
        x.insert(at, self.mask_id());
        self.likeliest_at(x, at)
    }

    /// The masked model's likeliest tokens for one mask in place of tokens `a..=b`.
    fn word_for(&self, ids: &[i64], a: usize, b: usize) -> Result<Vec<i64>> {
        let mut x = ids[..a].to_vec();
        x.push(self.mask_id());
        x.extend_from_slice(&ids[b + 1..]);
        self.likeliest_at(x, a)
    }

    /// The masked model's likeliest words at position `at` of `x` (the same candidates a
    /// one-token substitution gets).
    fn likeliest_at(&self, x: Vec<i64>, at: usize) -> Result<Vec<i64>> {
        let x = Tensor::from_slice(&x).unsqueeze(0).to_device(self.device);
        let logits = tch::no_grad(|| self.logits(&x)).get(0).get(at as i64).to_kind(Kind::Float);
        self.top_other(&logits, self.mask_id())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_gain_reads_only_the_tokens_both_texts_hold() {
        // Deleting token 7 (cost -5): the shared tokens 1, 2 (prefix) and 3, 4 (suffix) gain
        // 0 + 0 + 1 + 0.5; the deleted token's own score is left out.
        let old = [1i64, 2, 7, 3, 4];
        let new = [1i64, 2, 3, 4];
        let before = vec![vec![0.0, -1.0, -5.0, -3.0, -2.0]];
        let after = vec![vec![0.0, -1.0, -2.0, -1.5]];
        assert!((shared_gain(&old, &before, &new, &after) - 1.5).abs() < 1e-12);
        // Two models: the smaller gain. An insertion mirrors a deletion.
        let two_b = vec![before[0].clone(), vec![0.0; 5]];
        let two_a = vec![after[0].clone(), vec![0.0, 0.0, -1.0, 0.0]];
        assert!((shared_gain(&old, &two_b, &new, &two_a) + 1.0).abs() < 1e-12);
        assert!((shared_gain(&new, &after, &old, &before) + 1.5).abs() < 1e-12);
    }

    fn span(start: usize, end: usize, before: &str, after: &str) -> ChangedSpan {
        ChangedSpan { start, end, before: before.into(), after: after.into() }
    }

    #[test]
    fn edits_map_back_to_the_input_and_never_overlap_an_earlier_one() {
        let input = "the cat ran to park.";
        // A substitution made before the pass: "cat" -> "horse" (bytes 4..7).
        let mut a = Applied::new(input, &[span(4, 7, "cat", "horse")]);
        assert_eq!(a.text(), "the horse ran to park.");
        // Insert " the" before " park" in the new text (byte 16 of it, 14 of the input).
        assert!(a.apply(&ByteEdit { start: 16, end: 16, new: " the".into() }));
        assert_eq!(a.text(), "the horse ran to the park.");
        // Delete " ran" (bytes 9..13 of the text now, 7..11 of the input).
        assert!(a.apply(&ByteEdit { start: 9, end: 13, new: String::new() }));
        assert_eq!(a.text(), "the horse to the park.");
        // Touching "horse" (written by an edit) is refused.
        assert!(!a.apply(&ByteEdit { start: 4, end: 9, new: "dog".into() }));
        let c = a.changed();
        assert_eq!(
            c.iter().map(|s| (s.start, s.end, s.before.as_str(), s.after.as_str())).collect::<Vec<_>>(),
            vec![(4, 7, "cat", "horse"), (7, 11, " ran", ""), (14, 14, "", " the")]
        );
        // Rebuilding from the input and the spans gives the text.
        let mut out = String::new();
        let mut at = 0;
        for s in &c {
            out.push_str(&input[at..s.start]);
            out.push_str(&s.after);
            at = s.end;
        }
        out.push_str(&input[at..]);
        assert_eq!(out, a.text());
    }
}
