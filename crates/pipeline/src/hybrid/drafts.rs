//! Verified drafts (`--drafts N`, issue 39): each sentence is written N times in one batch,
//! the plan space's encoder re-encodes the drafts, and each sample keeps the draft with the
//! best score, its cosine to the sentence's plan slot less two for every word of it found in
//! no training story (the bundle's `words.txt`; the cosine alone without one): a cosine spans
//! at most 2, so a draft without invented words always beats one with. The sliding
//! session then goes on from the kept draft in all N of the sample's rows, so the next
//! sentence's drafts start from it.

use super::steps::WindowInput;
use super::HybridGenerator;
use crate::{PipelineError, Result};
use plandiff_decoder::{GenerateOptions, Generated, LogitsProcessor, Models, StopReason, Window, WindowDecoder};
use tch::{Kind, Tensor};

/// A draft's score: its latent's cosine to the slot, less two per invented word.
pub(super) fn draft_score(cosine: f64, invented: usize) -> f64 {
    cosine - 2.0 * invented as f64
}

impl HybridGenerator {
    /// [`draft_score`] of a draft's text and its cosine (no lexicon in the bundle: the cosine).
    pub(super) fn score_draft(&self, text: &str, cosine: f64) -> f64 {
        draft_score(cosine, self.lexicon.as_ref().map_or(0, |l| l.invented(text).len()))
    }
}

/// What a drafted window needs beyond its input: the sentence it starts at and N.
pub(super) struct Drafting<'a> {
    pub models: Models<'a>,
    pub written: usize,
    pub n: usize,
}

impl HybridGenerator {
    /// Writes window `w` sentence by sentence, `d.n` drafts of each (see the module doc);
    /// `on_token(row, token)` sees the kept drafts' tokens. Returns each row's kept tokens.
    pub(super) fn write_drafts(
        &self,
        decoder: &mut WindowDecoder,
        w: &WindowInput,
        d: Drafting,
        sampler: &mut LogitsProcessor,
        mut on_token: impl FnMut(usize, i64),
    ) -> Result<Generated> {
        let (b, n) = (w.rows.len(), d.n);
        let text: Vec<Vec<i64>> = w.text.iter().flat_map(|t| std::iter::repeat_n(t.clone(), n)).collect();
        let plan = w.plan.repeat_interleave_self_int(n as i64, Some(0), None);
        let window = Window { text: &text, plan: &plan, origin: w.origin };
        let mut out = Generated { tokens: vec![Vec::new(); b], stop: vec![StopReason::Sentences; b] };
        let budget = w.options.max_new_tokens;
        for k in 0..w.options.max_sentences.unwrap_or(1) {
            let used = out.tokens.iter().map(Vec::len).max().unwrap_or(0);
            if used >= budget {
                out.stop.iter_mut().filter(|s| **s == StopReason::Sentences).for_each(|s| *s = StopReason::MaxTokens);
                break;
            }
            let opts = GenerateOptions { max_new_tokens: budget - used, max_sentences: Some(1), ..w.options.clone() };
            let g = decoder.write(d.models, &window, sampler, &opts, |_, _| {});
            if g.tokens.len() != b * n {
                return Err(PipelineError::Invalid(format!(
                    "the decoder wrote {} rows for {b} samples x {n} drafts; --drafts needs a decoder with relative positions",
                    g.tokens.len()
                )));
            }
            let slot = (d.written + k) as i64 - w.origin;
            let best = self.best_drafts(&g, &w.plan, slot, n)?;
            let from: Vec<usize> = (0..b * n).map(|i| (i / n) * n + best[i / n]).collect();
            decoder.keep_rows(d.models.decoder, &from);
            for (r, &j) in best.iter().enumerate() {
                if out.stop[r] != StopReason::Sentences {
                    continue;
                }
                let kept = r * n + j;
                for &t in &g.tokens[kept] {
                    on_token(r, t);
                }
                out.tokens[r].extend_from_slice(&g.tokens[kept]);
                out.stop[r] = g.stop[kept];
            }
            if out.stop.iter().all(|s| *s != StopReason::Sentences) {
                break;
            }
        }
        Ok(out)
    }

    /// For each sample, the index (0..n) of its best-scoring draft of window slot `slot`.
    fn best_drafts(&self, g: &Generated, plan: &Tensor, slot: i64, n: usize) -> Result<Vec<usize>> {
        let texts = g
            .tokens
            .iter()
            .map(|t| self.tokenizer.decode_text(&t.iter().map(|&t| t as u32).collect::<Vec<_>>()))
            .collect::<std::result::Result<Vec<String>, _>>()?;
        let refs: Vec<&str> = texts.iter().map(|t| t.trim()).map(|t| if t.is_empty() { "." } else { t }).collect();
        let z = self.encode_text(&refs)?.to_kind(Kind::Float); // (B*n, d)
        let b = texts.len() / n.max(1);
        let slots = plan.select(1, slot.clamp(0, plan.size()[1] - 1)).to_kind(Kind::Float); // (B, d)
        let target = slots.repeat_interleave_self_int(n as i64, Some(0), None);
        let cos = Vec::<f64>::try_from(
            plandiff_layers::bounded::cosine_similarity(&z, &target.to_device(z.device()), -1).to_kind(Kind::Double),
        )
        .unwrap_or_default();
        Ok((0..b)
            .map(|r| {
                let score = |j: usize| {
                    let i = r * n + j;
                    self.score_draft(&texts[i], cos.get(i).copied().unwrap_or(f64::NEG_INFINITY))
                };
                (0..n).max_by(|&a, &c| score(a).total_cmp(&score(c)).then(c.cmp(&a))).unwrap_or(0)
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    /// An invented word costs more than any cosine difference can give back.
    #[test]
    fn an_invented_word_outweighs_any_cosine() {
        assert!(super::draft_score(-1.0, 0) >= super::draft_score(1.0, 1));
        assert!(super::draft_score(-1.0, 1) >= super::draft_score(1.0, 2));
        assert!(super::draft_score(0.6, 0) > super::draft_score(0.5, 0));
    }
}
