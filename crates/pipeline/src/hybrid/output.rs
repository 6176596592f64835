//! The hybrid mode's output: each sample's [`Generation`] with its plan, and the previews
//! of `--show-plan` (what the decoder writes from each planned latent alone).

use super::steps::{Row, Timing};
use super::HybridGenerator;
use crate::mode::{Detail, Generation, PlanSlot};
use crate::text::TextStream;
use crate::Result;
use plandiff_decoder::{generate, GenerateOptions, Generated, LogitsProcessor, SamplingConfig, StopReason};
use tch::{Kind, Tensor};

fn cosine(a: &Tensor, b: &Tensor) -> f64 {
    let a = a.to_kind(Kind::Double);
    let b = b.to_kind(Kind::Double);
    let den = (a.norm().double_value(&[]) * b.norm().double_value(&[])).max(1e-12);
    plandiff_layers::bounded::cosine((a * b).sum(Kind::Double).double_value(&[]) / den)
}

impl HybridGenerator {
    /// Each row's [`Generation`]: text, sentences after the prompt's `p`, and the plan.
    pub(super) fn finish(
        &self,
        rows: &[Row],
        p: usize,
        stream: &TextStream,
        (previews, outline): (bool, &super::Outline),
        t: Timing,
    ) -> Result<Vec<Generation>> {
        let previews = if previews { Some(self.previews(rows, p)?) } else { None };
        let mut gens = Vec::with_capacity(rows.len());
        for (ri, r) in rows.iter().enumerate() {
            let sentences: Vec<String> = r.sentences[p..]
                .iter()
                .map(|s| self.tokenizer.decode_text(&s.iter().map(|&t| t as u32).collect::<Vec<_>>()))
                .collect::<std::result::Result<Vec<_>, _>>()?
                .into_iter()
                .map(|s| s.trim().to_string())
                .collect();
            let plan = (p..r.planned.len())
                .filter_map(|i| {
                    let z = r.planned[i].as_ref()?;
                    Some(PlanSlot {
                        sentence: i + 1,
                        preview: previews.as_ref().and_then(|pv| pv[ri].get(i - p).cloned()),
                        adherence: r.latents.get(i).map(|w| cosine(z, w)),
                        written: sentences.get(i - p).cloned(),
                        outline: outline.get(i - p).and_then(|f| f.as_ref().map(|f| f.0.clone())),
                    })
                })
                .collect();
            let kept = sentences.into_iter().filter(|s| !s.is_empty()).collect();
            let mut g = stream.finish(&r.new_tokens, kept, r.stop.unwrap_or(StopReason::Sentences), t.seconds)?;
            g.detail = Some(Detail::Plan {
                plan,
                planning_seconds: t.planning,
                planner_calls: t.planner_calls,
                encoding_seconds: t.encoding,
            });
            gens.push(g);
        }
        Ok(gens)
    }

    /// One sentence after each prompt under its plan `(B, S, d)`, greedy (at most 48 tokens).
    pub(super) fn greedy_sentence(&self, prompts: &[Vec<i64>], plans: &Tensor, banned: Vec<i64>) -> Generated {
        let special = self.special();
        let greedy = SamplingConfig::greedy();
        let gopts = GenerateOptions {
            max_new_tokens: 48,
            max_sentences: Some(1),
            eos_id: special.eos as i64,
            sep_id: special.sep as i64,
            pad_id: special.pad as i64,
            banned,
        };
        generate(&self.ae.decoder, prompts, Some(plans), &mut LogitsProcessor::new(greedy, 0), &gopts, |_, _| {})
    }

    /// What the decoder writes from each planned latent alone: greedy, one sentence, the
    /// latent in slot 0 and the null plan elsewhere.
    fn previews(&self, rows: &[Row], from: usize) -> Result<Vec<Vec<String>>> {
        let null = self.ae.null_plan();
        let mut plans = Vec::new();
        let mut owner = Vec::new();
        for (ri, r) in rows.iter().enumerate() {
            for z in r.planned.iter().skip(from).flatten() {
                let p = Tensor::cat(&[z.unsqueeze(0).to_kind(null.kind()), null.narrow(0, 1, null.size()[0] - 1)], 0);
                plans.push(p);
                owner.push(ri);
            }
        }
        let mut out = vec![Vec::new(); rows.len()];
        if plans.is_empty() {
            return Ok(out);
        }
        let special = self.special();
        let prompts = vec![vec![special.bos as i64]; plans.len()];
        let g = self.greedy_sentence(&prompts, &Tensor::stack(&plans, 0), vec![special.bos as i64, special.pad as i64]);
        for (k, toks) in g.tokens.iter().enumerate() {
            let ids: Vec<u32> = toks.iter().map(|&t| t as u32).filter(|&t| !special.is_special(t)).collect();
            out[owner[k]].push(self.tokenizer.decode(&ids)?.trim().to_string());
        }
        Ok(out)
    }
}
