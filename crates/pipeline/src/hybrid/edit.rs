//! `plandiff edit`: re-plan sentences A..B of a text by inpainting, with every other
//! sentence's latent fixed, and rewrite only them, with the hybrid loop's steps.

use super::steps::plan_error;
use super::{window, HybridGenerator};
use crate::mode::GenOptions;
use crate::{PipelineError, Result};
use plandiff_data::split_sentences;
use plandiff_decoder::{generate, GenerateOptions, LogitsProcessor};
use plandiff_planner::{HostNoise, PlanSampling};
use serde::Serialize;
use std::time::Instant;
use tch::{Kind, Tensor};

/// The result of `plandiff edit`.
#[derive(Debug, Clone, Serialize)]
pub struct Edit {
    pub text: String,
    pub rewritten: Vec<RewrittenSentence>,
    pub sentences: usize,
    pub seconds: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct RewrittenSentence {
    /// 1-based.
    pub sentence: usize,
    pub before: String,
    pub after: String,
}

impl HybridGenerator {
    /// Re-plans sentences `a..=b` (1-based) of `text` by inpainting with every other
    /// sentence's latent fixed, and rewrites only them: each rewritten sentence is decoded
    /// from the text before it (within its decoder window) and the window's whole plan, so
    /// the decoder knows what follows. Every byte outside the rewritten sentences is kept.
    pub fn edit(&self, text: &str, a: usize, b: usize, gen: &GenOptions, plan: PlanSampling) -> Result<Edit> {
        gen.sampling.validate()?;
        let spans = split_sentences(text);
        let n = spans.len();
        if n == 0 {
            return Err(PipelineError::Invalid("the input holds no sentence; give a text to edit".into()));
        }
        if a == 0 || a > b || b > n {
            return Err(PipelineError::Invalid(format!(
                "sentences {a}..{b} are outside the text's sentences 1..{n}; give A..B with 1 <= A <= B <= {n}"
            )));
        }
        let sp_slots = self.planner.max_slots();
        let len = b - a + 1;
        if len >= sp_slots.max(2) {
            return Err(PipelineError::Invalid(format!(
                "sentences {a}..{b} are {len} sentences; the planner rewrites at most {} at once (its window is {sp_slots}); edit in parts",
                sp_slots - 1
            )));
        }
        let t0 = Instant::now();
        let (a0, b0) = (a - 1, b - 1);
        let mut toks = self.tokenize_sentences(&spans)?;
        let mut lat = self.inpaint(&self.encode(&toks)?, a0, b0, gen.seed, plan)?;
        let mut lp = LogitsProcessor::new(gen.sampling, gen.seed);
        let mut rewritten = Vec::new();
        for i in a0..=b0 {
            let sentence = self.rewrite_one(&toks, &lat, i, gen, &mut lp)?;
            let after = self.tokenizer.decode(&sentence.iter().map(|&t| t as u32).collect::<Vec<_>>())?;
            rewritten.push(RewrittenSentence {
                sentence: i + 1,
                before: spans[i].to_string(),
                after: after.trim().into(),
            });
            toks[i] = sentence;
            lat[i] = self.encode(std::slice::from_ref(&toks[i]))?.get(0);
        }
        // Splice: bytes before sentence A and after sentence B are the input's own.
        let offset = |s: &str| s.as_ptr() as usize - text.as_ptr() as usize;
        let from = offset(spans[a0]);
        let to = offset(spans[b0]) + spans[b0].len();
        let middle: Vec<&str> = rewritten.iter().map(|r| r.after.as_str()).collect();
        let out = format!("{}{}{}", &text[..from], middle.join(" "), &text[to..]);
        Ok(Edit { text: out, rewritten, sentences: n, seconds: t0.elapsed().as_secs_f64() })
    }

    /// Every sentence's latent, sentences `a0..=b0` re-planned by inpainting in a planner
    /// window centred on them.
    fn inpaint(&self, latents: &Tensor, a0: usize, b0: usize, seed: u64, plan: PlanSampling) -> Result<Vec<Tensor>> {
        let n = latents.size()[0] as usize;
        let (start, w) = window::edit_window(a0, b0 - a0 + 1, n, self.planner.max_slots());
        let d = self.planner.model.denoiser.d_latent;
        let edited = |i: usize| (a0..=b0).contains(&i);
        let known: Vec<Tensor> = (start..start + w)
            .map(|i| if edited(i) { Tensor::zeros([d], (Kind::Float, self.device)) } else { latents.get(i as i64) })
            .collect();
        let known = Tensor::stack(&known, 0).unsqueeze(0);
        let mask: Vec<bool> = (start..start + w).map(|i| !edited(i)).collect();
        let mask = Tensor::from_slice(&mask).view([1, w as i64]).to_device(self.device);
        let mut noise = HostNoise::new(seed ^ 0x6564_6974, self.device);
        let z = self.planner.sample(&known, &mask, plan, |s| noise.sample(s)).map_err(plan_error)?;
        let z = self.bounded(z).squeeze_dim(0);
        Ok((0..n).map(|i| if edited(i) { z.get((i - start) as i64) } else { latents.get(i as i64) }).collect())
    }

    /// Sentence `i` written anew from the text before it in its decoder window and the
    /// window's plan `lat`; a sentence that decodes to nothing is drawn again.
    fn rewrite_one(
        &self,
        toks: &[Vec<i64>],
        lat: &[Tensor],
        i: usize,
        gen: &GenOptions,
        lp: &mut LogitsProcessor,
    ) -> Result<Vec<i64>> {
        let sp = self.sp();
        let max_len = self.ae.decoder.config().max_seq_len as usize;
        let lens: Vec<usize> = toks.iter().map(Vec::len).collect();
        let ws = window::fit_start(window::window_start(i, self.decoder_slots()), i, &lens, 0, max_len / 4, max_len);
        let plan =
            self.slots_plan(window::DecoderView::from(ws), |j| lat.get(j).map(Tensor::shallow_clone)).unsqueeze(0);
        let ids = window::decoder_prompt(sp.bos as i64, sp.sep as i64, &toks[ws..i], &[]);
        if ids.len() + 2 > max_len {
            return Err(PipelineError::Invalid(format!(
                "the text before sentence {} in its window takes {} tokens, more than the decoder's context of {max_len}; split the long sentences",
                i + 1,
                ids.len()
            )));
        }
        let gopts = GenerateOptions {
            max_new_tokens: gen.max_tokens.min(max_len - ids.len() - 1).max(1),
            max_sentences: Some(1),
            eos_id: sp.eos as i64,
            sep_id: sp.sep as i64,
            pad_id: sp.pad as i64,
            banned: vec![sp.bos as i64, sp.pad as i64, sp.eos as i64],
        };
        for _ in 0..4 {
            let g = generate(&self.ae.decoder, std::slice::from_ref(&ids), Some(&plan), lp, &gopts, |_, _| {});
            let sentence: Vec<i64> = g.tokens[0].iter().copied().filter(|&t| !sp.is_special(t as u32)).collect();
            let text = self.tokenizer.decode(&sentence.iter().map(|&t| t as u32).collect::<Vec<_>>())?;
            if !text.trim().is_empty() {
                return Ok(sentence);
            }
        }
        Err(PipelineError::Invalid(format!("the model wrote an empty sentence {} four times; try another seed", i + 1)))
    }
}
