//! Editing by remasking (mode `masked`): a span of a text (sentences, or characters widened
//! to whole tokens) or the tokens the model itself finds least likely are remasked and
//! denoised with everything else fixed. Everything not remasked stays byte-identical: each
//! token knows the bytes of the input it came from, and only runs of changed tokens are
//! replaced (in a sentence whose tokens do not map back to its bytes one to one, e.g. where
//! lowercasing changes a character's length, the whole sentence is rewritten instead).

use super::revision::{ChangedSpan, Doc, EditSettings, EditTarget, MaskedEdit, ReviseScore};
use super::score::pick_weakest;
use super::MaskedGenerator;
use crate::{PipelineError, Result};
use plandiff_data::split_sentences;
use plandiff_masked::{token_logprobs, MaskedSampling, Start};
use tch::Tensor;

impl MaskedGenerator {
    fn doc<'t>(&self, text: &'t str) -> Result<Doc<'t>> {
        let d = self.doc_open(text, true)?;
        let l = self.config.model.seq_len as usize;
        if d.ids.len() > l {
            return Err(PipelineError::Invalid(format!(
                "the text is {} tokens and the masked model reads at most {l}; edit a shorter text",
                d.ids.len()
            )));
        }
        Ok(d)
    }

    /// The text's tokens; `close`: `<eos>` after the last sentence (the text ends there).
    pub(super) fn doc_open<'t>(&self, text: &'t str, close: bool) -> Result<Doc<'t>> {
        let sp = self.tokenizer.special();
        let sents = split_sentences(text);
        if sents.is_empty() {
            return Err(PipelineError::Invalid("the text is empty; give a text to edit".into()));
        }
        let mut d =
            Doc { text, ids: vec![sp.bos as i64], sentence: vec![None], bytes: vec![(0, 0)], sentences: vec![] };
        for (k, s) in sents.iter().enumerate() {
            // The splitter returns slices of the text: a sentence's offset is its distance.
            let off = (s.as_ptr() as usize)
                .checked_sub(text.as_ptr() as usize)
                .filter(|&o| o + s.len() <= text.len())
                .ok_or_else(|| PipelineError::Invalid("internal: a sentence outside the text".into()))?;
            let spaced = format!(" {s}");
            let toks = self.tokenizer.encode(&spaced)?;
            let pieces =
                toks.iter().map(|&t| self.tokenizer.decode(&[t])).collect::<plandiff_data::Result<Vec<_>>>()?;
            let joined: String = pieces.concat();
            let aligned = joined.len() == spaced.len() && (joined == spaced || joined == spaced.to_lowercase());
            // Byte `c` of " {s}" is byte `off + c - 1` of the input (its leading space is not).
            let mut c = 0;
            for (t, p) in toks.iter().zip(&pieces) {
                let end = (c + p.len()).max(1);
                let range = if aligned { (off + c.max(1) - 1, off + end - 1) } else { (off, off + s.len()) };
                c += p.len();
                d.ids.push(*t as i64);
                d.sentence.push(Some(k));
                d.bytes.push(range);
            }
            d.ids.push(sp.sep as i64);
            d.sentence.push(None);
            d.bytes.push((off + s.len(), off + s.len()));
            d.sentences.push(((off, off + s.len()), aligned));
        }
        if close {
            d.ids.push(sp.eos as i64);
            d.sentence.push(None);
            d.bytes.push((text.len(), text.len()));
        }
        Ok(d)
    }

    /// Byte ranges of `text` that each fit the model, of whole sentences, in order (the
    /// text's own whitespace between them); a sentence longer than the model is an error.
    fn windows(&self, text: &str) -> Result<Vec<(usize, usize)>> {
        let d = self.doc_open(text, true)?;
        let l = self.config.model.seq_len as usize;
        let mut out: Vec<(usize, usize)> = Vec::new();
        let mut open: Option<(usize, usize)> = None; // (first byte, tokens so far with <bos>)
        for (k, &((a, _), _)) in d.sentences.iter().enumerate() {
            let n = d.sentence.iter().filter(|&&x| x == Some(k)).count() + 1; // + <sep>
            if n + 2 > l {
                return Err(PipelineError::Invalid(format!(
                    "sentence {} is {n} tokens and the masked model reads at most {l}; split it",
                    k + 1
                )));
            }
            open = match open {
                // Room for it and a closing <eos>: the window grows.
                Some((s0, used)) if used + n < l => Some((s0, used + n)),
                Some((s0, _)) => {
                    out.push((s0, d.sentences[k - 1].0 .1));
                    Some((a, 1 + n))
                }
                None => Some((a, 1 + n)),
            };
        }
        if let (Some((s0, _)), Some(last)) = (open, d.sentences.last()) {
            out.push((s0, last.0 .1));
        }
        Ok(out)
    }

    /// Edits `text`: remasks `target` and denoises it with the rest fixed.
    pub fn edit(&self, text: &str, target: EditTarget, s: &EditSettings) -> Result<MaskedEdit> {
        if let EditTarget::Revise { .. } = target {
            return self.revise_windows(text, target, s);
        }
        let doc = self.doc(text)?;
        let pick = span_tokens(&doc, target)?;
        let ids = self.refill(&doc.ids, &pick, s, s.seed)?;
        let (text, changed) = self.rebuild(&doc, &ids)?;
        Ok(MaskedEdit { text, remasked: pick.len(), changed, rounds: Vec::new() })
    }

    /// Revision of a text of any length: each window of whole sentences that fits the model is
    /// revised on its own (the text between windows, whitespace, stays as it is).
    fn revise_windows(&self, text: &str, target: EditTarget, s: &EditSettings) -> Result<MaskedEdit> {
        let windows = self.windows(text)?;
        if windows.is_empty() {
            return Err(PipelineError::Invalid("the text is empty; give a text to edit".into()));
        }
        let last = windows.len() - 1;
        let mut out =
            MaskedEdit { text: String::with_capacity(text.len()), remasked: 0, changed: vec![], rounds: vec![] };
        let mut at = 0;
        for (w, &(a, b)) in windows.iter().enumerate() {
            let doc = self.doc_open(&text[a..b], w == last)?;
            let e = self.revise(&doc, target, s)?;
            out.text.push_str(&text[at..a]);
            out.text.push_str(&e.text);
            at = b;
            out.remasked += e.remasked;
            out.changed.extend(e.changed.into_iter().map(|c| ChangedSpan { start: c.start + a, end: c.end + a, ..c }));
            out.rounds.extend(e.rounds);
        }
        out.text.push_str(&text[at..]);
        Ok(out)
    }

    /// Revises one window (see [`EditTarget::Revise`]).
    fn revise(&self, doc: &Doc, target: EditTarget, s: &EditSettings) -> Result<MaskedEdit> {
        let EditTarget::Revise { score, insert_delete, .. } = target else {
            return Err(PipelineError::Invalid("internal: not a revision".into()));
        };
        if matches!(score, ReviseScore::Visible | ReviseScore::ArVisible) && !self.reads_visible() {
            return Err(PipelineError::Invalid(
                "--score visible reads errors in view, which this masked model was not trained for (substitute_prob 0); use --score ar or pll".into(),
            ));
        }
        if !insert_delete {
            return self.substitutions(doc, target, s, 1);
        }
        // Length edits first, so an extra word is deleted before a substitution makes it
        // plausible; then the substitutions, on the text they leave, mapped back to the input.
        let mut rounds = Vec::new();
        let (text, changed) = self.insert_delete(doc, &[], &mut rounds, target)?;
        let close = doc.ids.last() == Some(&(self.tokenizer.special().eos as i64));
        let d = self.doc_open(&text, close)?;
        let sub = self.substitutions(&d, target, s, rounds.len() + 1)?;
        let mut applied = super::lengths::Applied::new(doc.text, &changed);
        for c in sub.changed.iter().rev() {
            applied.apply(&super::lengths::ByteEdit { start: c.start, end: c.end, new: c.after.clone() });
        }
        rounds.extend(sub.rounds);
        Ok(MaskedEdit { text: applied.text(), remasked: sub.remasked, changed: applied.changed(), rounds })
    }

    /// The substitution rounds of [`Self::revise`], numbered from `first`.
    fn substitutions(&self, doc: &Doc, target: EditTarget, s: &EditSettings, first: usize) -> Result<MaskedEdit> {
        let EditTarget::Revise { below, fraction, rounds: n, min_gain, score, .. } = target else {
            return Err(PipelineError::Invalid("internal: not a revision".into()));
        };
        let mut ids = doc.ids.clone();
        let mut rounds = Vec::new();
        let mut remasked = 0;
        let mut scored = self.scores(&ids, doc)?;
        let text_score = |ids: &[i64], doc: &Doc| self.text_score(score, ids, doc);
        let mut total = text_score(&ids, doc)?;
        for round in first..first + n.max(1) {
            let pll: f64 = scored.iter().map(|x| x.1).sum();
            let pick = pick_weakest(&scored, below, fraction);
            if pick.is_empty() {
                rounds.push(self.round_report(round, (pll, 0.0), &scored, &pick, &ids, &ids)?);
                break;
            }
            // Each picked word is one candidate change: remasked alone (every token of the
            // word), refilled with the rest of the text in view, scored on the whole text.
            let mut best: Option<(f64, Vec<i64>, (f64, f64))> = None;
            for span in self.word_spans(&ids, &pick, doc)? {
                for cand in self.proposals(&ids, &span, s, s.seed.wrapping_add(round as u64))? {
                    let now = text_score(&cand, doc)?;
                    let gain = score.gain(total, now);
                    if gain >= min_gain && best.as_ref().is_none_or(|b| gain > b.0) {
                        best = Some((gain, cand, now));
                    }
                }
            }
            let Some((gain, cand, now)) = best else {
                rounds.push(self.round_report(round, (pll, 0.0), &scored, &pick, &ids, &ids)?);
                break; // nothing improves the text: it stays as it is
            };
            rounds.push(self.round_report(round, (pll, gain), &scored, &pick, &ids, &cand)?);
            remasked += pick.len();
            total = now;
            scored = self.scores(&cand, doc)?;
            ids = cand;
        }
        let (text, changed) = self.rebuild(doc, &ids)?;
        Ok(MaskedEdit { text, remasked, changed, rounds })
    }

    /// `(index, logprob)` of every word token of `ids`: each with it masked, or, for a model
    /// trained to read errors in view ([`Self::reads_visible`]), all in one pass as they are.
    pub(super) fn scores(&self, ids: &[i64], doc: &Doc) -> Result<Vec<(usize, f64)>> {
        let pos: Vec<usize> = (0..ids.len()).filter(|&i| doc.sentence[i].is_some()).collect();
        if self.reads_visible() {
            let lp = self.visible_logprobs(ids)?;
            return Ok(pos.into_iter().map(|i| (i, lp[i])).collect());
        }
        let x = Tensor::from_slice(ids).to_device(self.device);
        let lp = token_logprobs(&x, &pos, self.mask_id(), |b| self.logits(b))
            .map_err(|e| PipelineError::Invalid(format!("scoring the text's tokens: {e}")))?;
        Ok(pos.into_iter().zip(lp).collect())
    }

    /// `ids` with positions `pick` remasked and denoised (special tokens banned there).
    pub(super) fn refill(&self, ids: &[i64], pick: &[usize], s: &EditSettings, seed: u64) -> Result<Vec<i64>> {
        let mut known: Vec<Option<i64>> = ids.iter().map(|&t| Some(t)).collect();
        pick.iter().for_each(|&i| known[i] = None);
        let opts = MaskedSampling {
            steps: s.steps.unwrap_or(pick.len()).max(1),
            block_length: None,
            remasking: s.remasking,
            temperature: s.temperature,
            start: Start::Mask,
            repetition_penalty: 1.0,
            threshold: None,
            block_cache: None,
        };
        let out = self.fill(&known, 1, &self.banned(true, true), &opts, seed, |_, _| {})?;
        Vec::try_from(out.get(0).to_device(tch::Device::Cpu))
            .map_err(|e| PipelineError::Invalid(format!("reading edited tokens: {e}")))
    }

    /// The words of `ids` that the positions `pick` touch, each as all its token positions
    /// (a word starts at a token whose text starts with a space, or at its sentence's start).
    pub(super) fn word_spans(&self, ids: &[i64], pick: &[usize], doc: &Doc) -> Result<Vec<Vec<usize>>> {
        let starts = |i: usize| -> Result<bool> {
            Ok(doc.sentence[i.saturating_sub(1)] != doc.sentence[i]
                || self.tokenizer.decode(&[ids[i] as u32])?.starts_with(' '))
        };
        let mut spans: Vec<Vec<usize>> = Vec::new();
        for &p in pick {
            if doc.sentence[p].is_none() || spans.last().is_some_and(|w| w.contains(&p)) {
                continue;
            }
            let mut a = p;
            while a > 0 && !starts(a)? {
                a -= 1;
            }
            let mut b = p;
            while b + 1 < ids.len() && doc.sentence[b + 1] == doc.sentence[p] && !starts(b + 1)? {
                b += 1;
            }
            spans.push((a..=b).collect());
        }
        Ok(spans)
    }

    /// The input with each run of changed tokens replaced by their text.
    fn rebuild(&self, doc: &Doc, ids: &[i64]) -> Result<(String, Vec<ChangedSpan>)> {
        let mut spans: Vec<(usize, usize, String)> = Vec::new();
        let mut i = 0;
        while i < ids.len() {
            let Some(k) = doc.sentence[i].filter(|_| ids[i] != doc.ids[i]) else {
                i += 1;
                continue;
            };
            let ((s0, s1), aligned) = doc.sentences[k];
            if !aligned {
                let toks: Vec<u32> =
                    (0..ids.len()).filter(|&j| doc.sentence[j] == Some(k)).map(|j| ids[j] as u32).collect();
                spans.push((s0, s1, self.tokenizer.decode_text(&toks)?.trim().to_string()));
                i = (i..ids.len()).find(|&j| doc.sentence[j] != Some(k)).unwrap_or(ids.len());
                continue;
            }
            let mut j = i;
            while j + 1 < ids.len() && doc.sentence[j + 1] == Some(k) && ids[j + 1] != doc.ids[j + 1] {
                j += 1;
            }
            let toks: Vec<u32> = ids[i..=j].iter().map(|&t| t as u32).collect();
            let mut new = self.tokenizer.decode(&toks)?;
            if doc.bytes[i].0 == s0 {
                // The sentence's first token: its leading space is not in the input.
                new = new.strip_prefix(' ').map(str::to_string).unwrap_or(new);
            }
            spans.push((doc.bytes[i].0, doc.bytes[j].1, new));
            i = j + 1;
        }
        let mut out = String::with_capacity(doc.text.len());
        let mut at = 0;
        let mut changed = Vec::with_capacity(spans.len());
        for (a, b, new) in spans {
            out.push_str(&doc.text[at..a]);
            out.push_str(&new);
            changed.push(ChangedSpan { start: a, end: b, before: doc.text[a..b].to_string(), after: new });
            at = b;
        }
        out.push_str(&doc.text[at..]);
        Ok((out, changed))
    }
}

/// Word tokens of a span target.
fn span_tokens(doc: &Doc, target: EditTarget) -> Result<Vec<usize>> {
    let n = doc.sentences.len();
    let pick: Vec<usize> = match target {
        EditTarget::Sentences(a, b) => {
            if a == 0 || a > b || b > n {
                return Err(PipelineError::Invalid(format!(
                    "--rewrite {a}..{b}: the text has {n} sentences; give 1-based A..B with A <= B <= {n}"
                )));
            }
            (0..doc.ids.len()).filter(|&i| doc.sentence[i].is_some_and(|k| k + 1 >= a && k < b)).collect()
        }
        EditTarget::Chars(a, b) => {
            let chars = doc.text.chars().count();
            if a >= b || b > chars {
                return Err(PipelineError::Invalid(format!(
                    "--chars {a}..{b}: the text has {chars} characters; give 0-based I..J with I < J <= {chars}"
                )));
            }
            let byte = |c: usize| doc.text.char_indices().nth(c).map_or(doc.text.len(), |(i, _)| i);
            let (lo, hi) = (byte(a), byte(b));
            (0..doc.ids.len())
                .filter(|&i| doc.sentence[i].is_some() && doc.bytes[i].0 < hi && doc.bytes[i].1 > lo)
                .collect()
        }
        EditTarget::Revise { .. } => Vec::new(),
    };
    if pick.is_empty() {
        return Err(PipelineError::Invalid("the span covers no word of the text (only spaces?); widen it".into()));
    }
    Ok(pick)
}

#[cfg(test)]
#[path = "edit_tests.rs"]
mod tests;
