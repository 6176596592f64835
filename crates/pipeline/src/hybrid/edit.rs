//! `plandiff edit`: re-plan sentences A..B of a text by inpainting, with every other
//! sentence's latent fixed, and rewrite only them, with the hybrid loop's steps.

use super::settings::PlanFlags;
use super::steps::plan_error;
use super::{window, HybridGenerator};
use crate::mode::{EditOp, EditOutput, EditRequest, GenOptions};
use crate::{PipelineError, Result};
use clap::FromArgMatches;
use plandiff_data::split_sentences;
use plandiff_decoder::{generate, GenerateOptions, LogitsProcessor};
use plandiff_planner::{HostNoise, PlanSampling};
use serde::Serialize;
use std::time::Instant;
use tch::{Kind, Tensor};

/// `edit --mode hybrid`: re-plan sentences `--rewrite A..B` by inpainting, or rewrite
/// sentence `--at K` to say `--to PHRASE`.
pub const EDIT: EditOp = EditOp { flags: <HybridEdit as clap::Args>::augment_args, run: run_edit };

/// The flags `edit --mode hybrid` reads besides `edit`'s own.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct HybridEdit {
    #[command(flatten)]
    pub plan: PlanFlags,
    /// Hybrid: the sentence (1-based) that --to rewrites; every other sentence is kept byte
    /// for byte.
    #[arg(long)]
    pub at: Option<usize>,
    /// Hybrid, with --at: what sentence K should say, a sentence or a short phrase; it becomes
    /// the sentence's plan slot and the decoder writes it in the text's own words.
    #[arg(long)]
    pub to: Option<String>,
    /// Hybrid, with --at: drafts written for the sentence (1 to 16, default 4); the one closest
    /// to the phrase in the plan space, less two per invented word (`--drafts`' score), is kept.
    #[arg(long)]
    pub candidates: Option<usize>,
}

/// What `edit --mode hybrid` was asked: sentences to re-plan, or one to aim at a phrase.
enum HybridTarget<'a> {
    Rewrite(usize, usize),
    To { at: usize, phrase: &'a str, candidates: usize },
}

impl HybridEdit {
    fn target<'a>(&'a self, rewrite: Option<&str>) -> Result<HybridTarget<'a>> {
        let bad = |m: &str| Err(PipelineError::Invalid(m.to_string()));
        if self.at.is_some() != self.to.is_some() {
            return bad("--at K and --to PHRASE go together: --at names the sentence, --to what it should say");
        }
        if self.candidates.is_some() && self.at.is_none() {
            return bad("--candidates is read by --at K --to PHRASE only; leave it out");
        }
        if let (Some(_), Some(flag)) = (self.at, self.plan.given()) {
            return Err(PipelineError::Invalid(format!(
                "{flag} is the planner's, and --at samples no plan (the phrase is the sentence's slot); leave it out"
            )));
        }
        match (rewrite, self.at, &self.to) {
            (Some(r), None, _) => {
                let (a, b) = crate::flags::parse_range("--rewrite", r)?;
                Ok(HybridTarget::Rewrite(a, b))
            }
            (None, Some(at), Some(phrase)) => {
                Ok(HybridTarget::To { at, phrase, candidates: self.candidates.unwrap_or(4) })
            }
            _ => bad("give exactly one of --rewrite A..B or --at K --to PHRASE"),
        }
    }
}

/// `edit --mode hybrid`.
fn run_edit(req: &EditRequest, flags: &clap::ArgMatches) -> Result<EditOutput> {
    let h = HybridEdit::from_arg_matches(flags).map_err(|e| PipelineError::Invalid(e.to_string()))?;
    let target = h.target(req.rewrite)?;
    let gen = HybridGenerator::load(req.bundle, req.device)
        .map_err(|e| PipelineError::Invalid(format!("--checkpoint {}: {e}", req.bundle.display())))?;
    let edit = match target {
        HybridTarget::To { at, phrase, candidates } => gen.edit_to(req.text, at, phrase, &req.gen, candidates)?,
        HybridTarget::Rewrite(a, b) => {
            let plan = h.plan.apply(gen.planner().sampling)?;
            let r = req.rewrite.unwrap_or_default();
            gen.edit(req.text, a, b, &req.gen, plan)
                .map_err(|e| PipelineError::Invalid(format!("--rewrite {r}: {e}")))?
        }
    };
    let changes =
        edit.rewritten.iter().map(|r| format!("sentence {}: {:?} -> {:?}", r.sentence, r.before, r.after)).collect();
    let report = serde_json::to_value(&edit).map_err(|e| PipelineError::Invalid(e.to_string()))?;
    Ok(EditOutput { text: edit.text, changes, report })
}

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
    /// `edit --to`: the phrase and the plan-space cosine of the sentence before and after to it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<ToPhrase>,
}

/// What `edit --at K --to PHRASE` aimed at and how close it came (plan-space cosine).
#[derive(Debug, Clone, Serialize)]
pub struct ToPhrase {
    pub phrase: String,
    pub cosine_before: f64,
    pub cosine_after: f64,
    /// Every draft's cosine, in the order written (the kept one is the largest).
    pub drafts: Vec<f64>,
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
        let planner_slots = self.planner.max_slots();
        let len = b - a + 1;
        if len >= planner_slots.max(2) {
            return Err(PipelineError::Invalid(format!(
                "sentences {a}..{b} are {len} sentences; the planner rewrites at most {} at once (its window is {planner_slots}); edit in parts",
                planner_slots - 1
            )));
        }
        let t0 = Instant::now();
        let (a0, b0) = (a - 1, b - 1);
        let mut toks = self.tokenize_sentences(&spans)?;
        let mut lat = self.inpaint(&self.encode(&toks)?, a0, b0, gen.seed, plan)?;
        let mut lp = self.token_sampler(gen, &[], &[])?;
        let mut rewritten = Vec::new();
        for i in a0..=b0 {
            let sentence = self.rewrite_one(&toks, &lat, i, gen, &mut lp)?;
            let after = self.tokenizer.decode(&sentence.iter().map(|&t| t as u32).collect::<Vec<_>>())?;
            rewritten.push(RewrittenSentence {
                sentence: i + 1,
                before: spans[i].to_string(),
                after: after.trim().into(),
                to: None,
            });
            toks[i] = sentence;
            lat[i] = self.encode(std::slice::from_ref(&toks[i]))?.get(0);
        }
        let out = splice(text, &spans, a0, b0, &rewritten);
        Ok(Edit { text: out, rewritten, sentences: n, seconds: t0.elapsed().as_secs_f64() })
    }

    /// Rewrites sentence `k` (1-based) of `text` so that it says what `phrase` says: plan slot
    /// `k` is the phrase's latent (the plan encoder's), every other slot is its sentence's own,
    /// and the decoder writes sentence `k` from the text before it and that plan. Of
    /// `candidates` drafts the one whose latent is closest (cosine) to the phrase's is kept,
    /// less two per invented word, as `--drafts` scores drafts.
    /// Every byte outside sentence `k` is kept.
    pub fn edit_to(&self, text: &str, k: usize, phrase: &str, gen: &GenOptions, candidates: usize) -> Result<Edit> {
        gen.sampling.validate()?;
        let spans = split_sentences(text);
        let n = spans.len();
        if n == 0 {
            return Err(PipelineError::Invalid("the input holds no sentence; give a text to edit".into()));
        }
        if k == 0 || k > n {
            return Err(PipelineError::Invalid(format!(
                "--at {k} is outside the text's sentences 1..{n}; give a sentence number from 1 to {n}"
            )));
        }
        let phrase = super::outline::check_phrase(phrase)?;
        if !(1..=16).contains(&candidates) {
            return Err(PipelineError::Invalid(format!("--candidates {candidates} must be in 1..=16")));
        }
        let t0 = Instant::now();
        let i = k - 1;
        let toks = self.tokenize_sentences(&spans)?;
        let enc = self.encode(&toks)?;
        let target = self.encode_text(&[phrase])?.get(0);
        let lat: Vec<Tensor> =
            (0..n).map(|j| if j == i { target.shallow_clone() } else { enc.get(j as i64) }).collect();
        let mut lp = self.token_sampler(gen, &[], &[])?;
        let drafts =
            (0..candidates).map(|_| self.rewrite_one(&toks, &lat, i, gen, &mut lp)).collect::<Result<Vec<_>>>()?;
        let z = Tensor::cat(&[enc.narrow(0, i as i64, 1), self.encode(&drafts)?], 0);
        let cos = plandiff_layers::bounded::cosine_similarity(&z, &target.unsqueeze(0).to_kind(z.kind()), 1);
        let cos = Vec::<f64>::try_from(cos.to_kind(Kind::Double)).map_err(|e| PipelineError::Invalid(e.to_string()))?;
        // The verified drafts' rule (`--drafts`): the cosine, less two per invented word.
        let texts = drafts
            .iter()
            .map(|d| self.tokenizer.decode(&d.iter().map(|&t| t as u32).collect::<Vec<_>>()))
            .collect::<std::result::Result<Vec<String>, _>>()?;
        let score = |j: usize| self.score_draft(&texts[j - 1], cos[j]);
        let best = (1..cos.len()).max_by(|&a, &b| score(a).total_cmp(&score(b)).then(b.cmp(&a))).unwrap_or(1);
        let after = texts[best - 1].clone();
        let to = ToPhrase {
            phrase: phrase.into(),
            cosine_before: cos[0],
            cosine_after: cos[best],
            drafts: cos[1..].to_vec(),
        };
        let rewritten = vec![RewrittenSentence {
            sentence: k,
            before: spans[i].to_string(),
            after: after.trim().into(),
            to: Some(to),
        }];
        let out = splice(text, &spans, i, i, &rewritten);
        Ok(Edit { text: out, rewritten, sentences: n, seconds: t0.elapsed().as_secs_f64() })
    }

    /// Every sentence's latent, sentences `a0..=b0` re-planned by inpainting in a planner
    /// window centred on them.
    fn inpaint(&self, latents: &Tensor, a0: usize, b0: usize, seed: u64, plan: PlanSampling) -> Result<Vec<Tensor>> {
        let n = latents.size()[0] as usize;
        let (start, w) = window::edit_window(a0, b0 - a0 + 1, n, self.planner.max_slots());
        let d = self.planner.d_latent();
        let edited = |i: usize| (a0..=b0).contains(&i);
        let known: Vec<Tensor> = (start..start + w)
            .map(|i| if edited(i) { Tensor::zeros([d], (Kind::Float, self.device)) } else { latents.get(i as i64) })
            .collect();
        let known = Tensor::stack(&known, 0).unsqueeze(0);
        let mask: Vec<bool> = (start..start + w).map(|i| !edited(i)).collect();
        let mask = Tensor::from_slice(&mask).view([1, w as i64]).to_device(self.device);
        let mut noise = HostNoise::new(seed ^ 0x6564_6974, self.device);
        let z = self.planner.sample(&known, &mask, plan, |s| noise.sample(s)).map_err(plan_error)?;
        let z = z.squeeze_dim(0);
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
        let special = self.special();
        let max_len = self.ae.decoder.config().max_seq_len as usize;
        let lens: Vec<usize> = toks.iter().map(Vec::len).collect();
        let ws = window::fit_start(window::window_start(i, self.decoder_slots()), i, &lens, 0, max_len / 4, max_len);
        let plan =
            self.slots_plan(window::DecoderView::from(ws), |j| lat.get(j).map(Tensor::shallow_clone)).unsqueeze(0);
        let ids = window::decoder_prompt(special.bos as i64, special.sep as i64, &toks[ws..i], &[]);
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
            eos_id: special.eos as i64,
            sep_id: special.sep as i64,
            pad_id: special.pad as i64,
            banned: vec![special.bos as i64, special.pad as i64, special.eos as i64],
        };
        for _ in 0..4 {
            let g = generate(&self.ae.decoder, std::slice::from_ref(&ids), Some(&plan), lp, &gopts, |_, _| {});
            let sentence: Vec<i64> = g.tokens[0].iter().copied().filter(|&t| !special.is_special(t as u32)).collect();
            let text = self.tokenizer.decode(&sentence.iter().map(|&t| t as u32).collect::<Vec<_>>())?;
            if !text.trim().is_empty() {
                return Ok(sentence);
            }
        }
        Err(PipelineError::Invalid(format!("the model wrote an empty sentence {} four times; try another seed", i + 1)))
    }
}

/// `text` with sentences `a0..=b0` (0-based, of `spans`, which borrow from `text`) replaced by
/// the rewritten ones: the bytes before sentence `a0` and after `b0` are the input's own.
fn splice(text: &str, spans: &[&str], a0: usize, b0: usize, rewritten: &[RewrittenSentence]) -> String {
    let offset = |s: &str| s.as_ptr() as usize - text.as_ptr() as usize;
    let from = offset(spans[a0]);
    let to = offset(spans[b0]) + spans[b0].len();
    let middle: Vec<&str> = rewritten.iter().map(|r| r.after.as_str()).collect();
    format!("{}{}{}", &text[..from], middle.join(" "), &text[to..])
}
