//! Modes `hybrid` and `edit`: plan sentence latents with the diffusion planner, then write
//! each sentence with the plan-conditioned decoder (design sections 1 and 3.4).
//!
//! Windows. The decoder was trained on windows of `S_d` sentences (its plan's slots) that
//! start at sentence 0, S_d, 2 S_d, ... of a document, seeing only that window's text; the
//! planner sees `S_p` slots at once. A long text is therefore written window by window:
//! before each decoder window the planner fills the latents it lacks, conditioned on the
//! latents of the last sentences actually written (re-encoded from the text, so the plan
//! follows what the decoder wrote, not what was planned); the decoder then writes the
//! window's sentences with the window's plan (written sentences: their own latents; future
//! ones: the planned latents; slots past the end: the null plan).

use crate::ar::{ends_sentence, join_text, GenOptions, Generation};
use crate::{PipelineError, Result};
use plandiff_data::{split_sentences, SpecialIds, TextTokenizer};
use plandiff_decoder::{generate, GenerateOptions, LogitsProcessor, SamplingConfig, StopReason};
use plandiff_planner::{HostNoise, LatentBound, PlanSampling};
use plandiff_train::{load_autoencoder, load_planner, Autoencoder, Bundle, Planner};
use serde::Serialize;
use std::path::Path;
use std::time::Instant;
use tch::{nn, Device, Kind, Tensor};

/// One planned slot, for `--show-plan` and plan adherence.
#[derive(Debug, Clone, Serialize)]
pub struct PlanSlot {
    /// 1-based sentence number in the whole text (prompt sentences included).
    pub sentence: usize,
    /// What the decoder writes from this latent alone (greedy, no text before it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preview: Option<String>,
    /// The sentence actually written in this slot.
    pub written: Option<String>,
    /// Cosine between the planned latent and the latent of the written sentence.
    pub adherence: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct HybridGeneration {
    #[serde(flatten)]
    pub generation: Generation,
    pub plan: Vec<PlanSlot>,
    /// Time spent sampling plans (part of `seconds`).
    pub planning_seconds: f64,
    /// Planner calls (one per window that needed new latents).
    pub planner_calls: usize,
}

#[derive(Debug)]
pub struct HybridOptions {
    pub gen: GenOptions,
    pub plan: PlanSampling,
    /// Decode each planned latent alone for `--show-plan`.
    pub previews: bool,
    /// The plan itself, `(N, d)` encoder latents of the sentences to write (e.g. encoded
    /// from a reference continuation: the A/B harness's `oracle` arm). The planner is not
    /// called; `N` sentences are written.
    pub oracle: Option<Tensor>,
}

/// One sample's text as sentences of token ids (no `<sep>`), and its latents.
struct Row {
    sentences: Vec<Vec<i64>>,
    /// Encoder latents of `sentences` (`(d,)` each).
    latents: Vec<Tensor>,
    /// Planned latents by sentence index.
    planned: Vec<Option<Tensor>>,
    /// Tokens of the prompt's unfinished last sentence, completed by the first window.
    open: Vec<i64>,
    new_tokens: Vec<i64>,
    stop: Option<StopReason>,
}

pub struct HybridGenerator {
    ae: Autoencoder,
    planner: Planner,
    tokenizer: TextTokenizer,
    device: Device,
    _vs: (nn::VarStore, nn::VarStore),
}

fn cosine(a: &Tensor, b: &Tensor) -> f64 {
    let a = a.to_kind(Kind::Double);
    let b = b.to_kind(Kind::Double);
    let den = (a.norm().double_value(&[]) * b.norm().double_value(&[])).max(1e-12);
    (a * b).sum(Kind::Double).double_value(&[]) / den
}

impl HybridGenerator {
    /// Loads `BUNDLE/autoencoder` and `BUNDLE/planner` (every load check applies, and the
    /// planner must have been trained on this autoencoder).
    pub fn load(bundle: &Path, device: Device) -> Result<Self> {
        if !bundle.is_dir() {
            return Err(PipelineError::Invalid(format!(
                "{}: no such folder; point --checkpoint at a bundle made by `plandiff train`",
                bundle.display()
            )));
        }
        let b = Bundle::new(bundle);
        let (ae, ae_vs, _, tokenizer) = load_autoencoder(&b, device)?;
        let (planner, pl_vs, pl_cfg) = load_planner(&b, device)?;
        if pl_cfg.tokenizer_hash != tokenizer.hash() {
            return Err(PipelineError::Invalid(format!(
                "{}: the planner was trained with another tokenizer; retrain it with `plandiff train planner`",
                bundle.display()
            )));
        }
        if planner.model.denoiser.d_latent != ae.encoder.config().d_latent {
            return Err(PipelineError::Invalid(format!(
                "{}: planner and autoencoder latent widths differ; retrain the planner",
                bundle.display()
            )));
        }
        Ok(Self { ae, planner, tokenizer, device, _vs: (ae_vs, pl_vs) })
    }

    pub fn tokenizer(&self) -> &TextTokenizer {
        &self.tokenizer
    }

    pub fn planner(&self) -> &Planner {
        &self.planner
    }

    pub fn autoencoder(&self) -> &Autoencoder {
        &self.ae
    }

    fn sp(&self) -> SpecialIds {
        self.tokenizer.special()
    }

    /// Token ids of each sentence as the model saw it in training (one leading space).
    fn tokenize_sentences(&self, sentences: &[&str]) -> Result<Vec<Vec<i64>>> {
        let texts: Vec<String> = sentences.iter().map(|s| format!(" {s}")).collect();
        let enc = self.tokenizer.encode_batch(texts)?;
        Ok(enc.into_iter().map(|s| s.into_iter().map(i64::from).collect()).collect())
    }

    /// Encoder latents `(N, d)` of token sentences.
    pub fn encode(&self, sentences: &[Vec<i64>]) -> Tensor {
        let refs: Vec<&[i64]> = sentences.iter().map(Vec::as_slice).collect();
        self.ae.encoder.encode(&refs, self.sp().pad as i64, 64)
    }

    /// Encoder latents of text sentences.
    pub fn encode_text(&self, sentences: &[&str]) -> Result<Tensor> {
        Ok(self.encode(&self.tokenize_sentences(sentences)?))
    }

    /// Planned latents kept inside the encoder's range (tanh latents in [-1, 1]).
    fn bounded(&self, z: Tensor) -> Tensor {
        match self.ae.encoder.config().bound {
            LatentBound::Tanh => z.clamp(-1.0, 1.0),
            LatentBound::Sphere => z,
        }
    }

    fn decoder_slots(&self) -> usize {
        self.ae.max_slots as usize
    }

    /// Plans sentences `[from, from + new)` of every row in `rows`, conditioned on the
    /// latents of the `ctx` sentences before `from`.
    fn plan_rows(
        &self,
        rows: &mut [&mut Row],
        from: usize,
        ctx: usize,
        new: usize,
        opts: PlanSampling,
        noise: &mut HostNoise,
    ) -> Result<()> {
        let d = self.planner.model.denoiser.d_latent;
        let s = ctx + new;
        let mut known = Vec::with_capacity(rows.len());
        for r in rows.iter() {
            let mut slots: Vec<Tensor> = r.latents[from - ctx..from].iter().map(Tensor::shallow_clone).collect();
            slots.extend((0..new).map(|_| Tensor::zeros([d], (Kind::Float, self.device))));
            known.push(Tensor::stack(&slots, 0));
        }
        let known = Tensor::stack(&known, 0);
        let mask: Vec<bool> = (0..s).map(|k| k < ctx).collect();
        let mask = Tensor::from_slice(&mask)
            .view([1, s as i64])
            .expand([rows.len() as i64, s as i64], false)
            .to_device(self.device);
        let z = self.bounded(self.planner.sample(&known, &mask, opts, |shape| noise.sample(shape))?);
        for (i, r) in rows.iter_mut().enumerate() {
            if r.planned.len() < from + new {
                r.planned.resize_with(from + new, || None);
            }
            for k in 0..new {
                r.planned[from + k] = Some(z.get(i as i64).get((ctx + k) as i64));
            }
        }
        Ok(())
    }

    /// The decoder's plan `(B, S_d, d)` for the window starting at sentence `ws`.
    fn window_plan(&self, rows: &[&mut Row], ws: usize, written: usize) -> Tensor {
        let null = self.ae.null_plan();
        let sd = self.decoder_slots();
        let plans: Vec<Tensor> = rows
            .iter()
            .map(|r| {
                let slots: Vec<Tensor> = (0..sd)
                    .map(|k| {
                        let i = ws + k;
                        if i < written {
                            r.latents[i].shallow_clone()
                        } else if let Some(Some(z)) = r.planned.get(i) {
                            z.shallow_clone()
                        } else {
                            null.get(k as i64)
                        }
                    })
                    .collect();
                Tensor::stack(&slots, 0)
            })
            .collect();
        Tensor::stack(&plans, 0).to_kind(null.kind())
    }

    /// Writes `n` samples of `prompt`, each continued by `opts.gen.sentences` planned
    /// sentences (8 when unset). `on_text(sample, text_so_far)` sees each sample grow.
    pub fn generate(
        &self,
        prompt: &str,
        n: usize,
        opts: &HybridOptions,
        mut on_text: impl FnMut(usize, &str),
    ) -> Result<Vec<HybridGeneration>> {
        opts.gen.sampling.validate().map_err(PipelineError::Invalid)?;
        if opts.gen.max_tokens == 0 {
            return Err(PipelineError::Invalid("--max-tokens must be >= 1".into()));
        }
        if prompt.trim().is_empty() {
            return Err(PipelineError::Invalid(
                "the prompt is empty; give some text with --prompt or --prompt-file".into(),
            ));
        }
        let want = match &opts.oracle {
            Some(z) => z.size()[0] as usize,
            None => opts.gen.sentences.unwrap_or(8),
        };
        if want == 0 {
            return Err(PipelineError::Invalid("--sentences must be >= 1".into()));
        }
        let sp = self.sp();
        let complete = ends_sentence(prompt);
        let texts = split_sentences(prompt);
        let mut toks = self.tokenize_sentences(&texts)?;
        let open = if complete { Vec::new() } else { toks.pop().unwrap_or_default() };
        let max_len = self.ae.decoder.config().max_seq_len as usize;
        let sd = self.decoder_slots();
        let sp_slots = self.planner.max_slots();
        let latents = self.encode(&toks);
        let known: Vec<Tensor> = (0..toks.len() as i64).map(|i| latents.get(i)).collect();
        let n = n.max(1);
        let mut rows: Vec<Row> = (0..n)
            .map(|_| Row {
                sentences: toks.clone(),
                latents: known.iter().map(Tensor::shallow_clone).collect(),
                planned: Vec::new(),
                open: open.clone(),
                new_tokens: Vec::new(),
                stop: None,
            })
            .collect();
        let p = toks.len();
        let total = p + want;
        if let Some(z) = &opts.oracle {
            let z = z.to_device(self.device).to_kind(Kind::Float);
            for r in rows.iter_mut() {
                r.planned = (0..p).map(|_| None).collect();
                r.planned.extend((0..want as i64).map(|k| Some(z.get(k))));
            }
        }
        let mut noise = HostNoise::new(opts.gen.seed ^ 0x706c_616e, self.device);
        let mut lp = LogitsProcessor::new(opts.gen.sampling, opts.gen.seed);
        let t0 = Instant::now();
        let mut first: Option<f64> = None;
        let mut planning = 0f64;
        let mut planner_calls = 0usize;
        let mut partial: Vec<Vec<u32>> = vec![Vec::new(); n];
        loop {
            let active: Vec<usize> = (0..n).filter(|&i| rows[i].stop.is_none()).collect();
            if active.is_empty() {
                break;
            }
            let written = rows[active[0]].sentences.len();
            if written >= total {
                for &i in &active {
                    rows[i].stop = Some(StopReason::Sentences);
                }
                break;
            }
            let ws = (written / sd) * sd;
            let we = (ws + sd).min(total).min(written + sp_slots);
            let mut act: Vec<&mut Row> = rows.iter_mut().filter(|r| r.stop.is_none()).collect();
            let missing = (written..we).any(|i| !matches!(act[0].planned.get(i), Some(Some(_))));
            if missing {
                let ctx = written.min(sp_slots - (we - written)).min(sp_slots / 2);
                let new = (total - written).min(sp_slots - ctx);
                let tp = Instant::now();
                self.plan_rows(&mut act, written, ctx, new, opts.plan, &mut noise)?;
                planning += tp.elapsed().as_secs_f64();
                planner_calls += 1;
            }
            let plan = self.window_plan(&act, ws, written);
            let prompts: Vec<Vec<i64>> = act
                .iter()
                .map(|r| {
                    let mut ids = vec![sp.bos as i64];
                    for s in &r.sentences[ws..written] {
                        ids.extend_from_slice(s);
                        ids.push(sp.sep as i64);
                    }
                    ids.extend_from_slice(&r.open);
                    ids
                })
                .collect();
            let longest = prompts.iter().map(Vec::len).max().unwrap_or(1);
            if longest + 2 > max_len {
                return Err(PipelineError::Invalid(format!(
                    "the sentences of the current decoder window take {longest} tokens, more than the decoder's context of {max_len}; shorten the prompt's sentences"
                )));
            }
            let used = act[0].new_tokens.len();
            let budget = opts.gen.max_tokens.saturating_sub(used).min(max_len.saturating_sub(longest + 1));
            if budget == 0 {
                for r in act.iter_mut() {
                    r.stop = Some(StopReason::MaxTokens);
                }
                break;
            }
            let gopts = GenerateOptions {
                max_new_tokens: budget,
                max_sentences: Some(we - written),
                eos_id: sp.eos as i64,
                sep_id: sp.sep as i64,
                pad_id: sp.pad as i64,
                // Every planned slot gets its sentence: the document may not end early.
                banned: vec![sp.bos as i64, sp.pad as i64, sp.eos as i64],
            };
            let out = generate(&self.ae.decoder, &prompts, Some(&plan), &mut lp, &gopts, |row, tok| {
                first.get_or_insert_with(|| t0.elapsed().as_secs_f64() * 1e3);
                let sample = active[row];
                if opts.gen.stream && !sp.is_special(tok as u32) {
                    partial[sample].push(tok as u32);
                    if let Ok(raw) = self.tokenizer.decode(&partial[sample]) {
                        on_text(sample, &join_text(prompt, &raw, complete));
                    }
                }
            });
            let mut fresh: Vec<(usize, usize)> = Vec::new(); // (row in act, sentence index)
            for (k, r) in act.iter_mut().enumerate() {
                let toks = &out.tokens[k];
                r.new_tokens.extend_from_slice(toks);
                let mut cur = std::mem::take(&mut r.open);
                for &t in toks {
                    if t == sp.sep as i64 {
                        r.sentences.push(std::mem::take(&mut cur));
                        fresh.push((k, r.sentences.len() - 1));
                    } else if t != sp.eos as i64 {
                        cur.push(t);
                    }
                }
                if !cur.is_empty() {
                    // An unfinished last sentence (end of document or token budget).
                    r.sentences.push(cur);
                    fresh.push((k, r.sentences.len() - 1));
                }
                match out.stop[k] {
                    StopReason::Sentences => {}
                    other => r.stop = Some(other),
                }
            }
            if !fresh.is_empty() {
                let sents: Vec<Vec<i64>> = fresh.iter().map(|&(k, i)| act[k].sentences[i].clone()).collect();
                let z = self.encode(&sents);
                for (j, &(k, i)) in fresh.iter().enumerate() {
                    let r = &mut act[k];
                    if r.latents.len() == i {
                        r.latents.push(z.get(j as i64));
                    }
                }
            }
        }
        let seconds = t0.elapsed().as_secs_f64();
        let previews = if opts.previews { Some(self.previews(&rows, p)?) } else { None };
        let mut gens = Vec::with_capacity(n);
        for (ri, r) in rows.iter().enumerate() {
            let plain: Vec<u32> = r.new_tokens.iter().map(|&t| t as u32).filter(|&t| !sp.is_special(t)).collect();
            let raw = self.tokenizer.decode(&plain)?;
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
                    let written = sentences.get(i - p).cloned();
                    Some(PlanSlot {
                        sentence: i + 1,
                        preview: previews.as_ref().and_then(|pv| pv[ri].get(i - p).cloned()),
                        adherence: r.latents.get(i).map(|w| cosine(z, w)),
                        written,
                    })
                })
                .collect();
            gens.push(HybridGeneration {
                generation: Generation {
                    text: join_text(prompt, raw.trim_end(), complete),
                    continuation: raw.trim().to_string(),
                    sentences: sentences.into_iter().filter(|s| !s.is_empty()).collect(),
                    new_tokens: r.new_tokens.len(),
                    stop: r.stop.unwrap_or(StopReason::Sentences),
                    seconds,
                    first_token_ms: first.unwrap_or(0.0),
                    tokens_per_s: r.new_tokens.len() as f64 / seconds.max(1e-9),
                },
                plan,
                planning_seconds: planning,
                planner_calls,
            });
        }
        Ok(gens)
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
        let sp = self.sp();
        let greedy = SamplingConfig { temperature: 0.0, top_k: None, top_p: None, repetition_penalty: 1.0 };
        let mut lp = LogitsProcessor::new(greedy, 0);
        let gopts = GenerateOptions {
            max_new_tokens: 48,
            max_sentences: Some(1),
            eos_id: sp.eos as i64,
            sep_id: sp.sep as i64,
            pad_id: sp.pad as i64,
            banned: vec![sp.bos as i64, sp.pad as i64],
        };
        let prompts = vec![vec![sp.bos as i64]; plans.len()];
        let g = generate(&self.ae.decoder, &prompts, Some(&Tensor::stack(&plans, 0)), &mut lp, &gopts, |_, _| {});
        for (k, toks) in g.tokens.iter().enumerate() {
            let ids: Vec<u32> = toks.iter().map(|&t| t as u32).filter(|&t| !sp.is_special(t)).collect();
            out[owner[k]].push(self.tokenizer.decode(&ids)?.trim().to_string());
        }
        Ok(out)
    }
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
}

impl HybridGenerator {
    /// Re-plans sentences `a..=b` (1-based) of `text` by inpainting with every other
    /// sentence's latent fixed, and rewrites only them: each rewritten sentence is decoded
    /// from the text before it (within its decoder window) and the window's whole plan, so
    /// the decoder knows what follows. Every byte outside the rewritten sentences is kept.
    pub fn edit(&self, text: &str, a: usize, b: usize, opts: &HybridOptions) -> Result<Edit> {
        opts.gen.sampling.validate().map_err(PipelineError::Invalid)?;
        let spans = split_sentences(text);
        let n = spans.len();
        if n == 0 {
            return Err(PipelineError::Invalid("the input holds no sentence; give a text to edit".into()));
        }
        if a == 0 || a > b || b > n {
            return Err(PipelineError::Invalid(format!(
                "--rewrite {a}..{b} is outside the text's sentences 1..{n}; give A..B with 1 <= A <= B <= {n}"
            )));
        }
        let sp_slots = self.planner.max_slots();
        let len = b - a + 1;
        if len >= sp_slots.max(2) {
            return Err(PipelineError::Invalid(format!(
                "--rewrite {a}..{b} spans {len} sentences; the planner rewrites at most {} at once (its window is {sp_slots}); edit in parts",
                sp_slots - 1
            )));
        }
        let t0 = Instant::now();
        let (a0, b0) = (a - 1, b - 1);
        let mut toks = self.tokenize_sentences(&spans)?;
        let latents = self.encode(&toks);
        // A planner window of up to S_p slots around the rewritten range, centred.
        let w = sp_slots.min(n);
        let start = a0.saturating_sub((w - len) / 2).min(n - w);
        let d = self.planner.model.denoiser.d_latent;
        let known: Vec<Tensor> = (start..start + w)
            .map(|i| {
                if (a0..=b0).contains(&i) {
                    Tensor::zeros([d], (Kind::Float, self.device))
                } else {
                    latents.get(i as i64)
                }
            })
            .collect();
        let known = Tensor::stack(&known, 0).unsqueeze(0);
        let mask: Vec<bool> = (start..start + w).map(|i| !(a0..=b0).contains(&i)).collect();
        let mask = Tensor::from_slice(&mask).view([1, w as i64]).to_device(self.device);
        let mut noise = HostNoise::new(opts.gen.seed ^ 0x6564_6974, self.device);
        let z = self.bounded(self.planner.sample(&known, &mask, opts.plan, |s| noise.sample(s))?).squeeze_dim(0);
        let mut lat: Vec<Tensor> = (0..n as i64).map(|i| latents.get(i)).collect();
        for (i, l) in lat.iter_mut().enumerate().take(b0 + 1).skip(a0) {
            *l = z.get((i - start) as i64);
        }
        let sp = self.sp();
        let sd = self.decoder_slots();
        let null = self.ae.null_plan();
        let mut lp = LogitsProcessor::new(opts.gen.sampling, opts.gen.seed);
        let max_len = self.ae.decoder.config().max_seq_len as usize;
        let mut rewritten = Vec::new();
        for i in a0..=b0 {
            let ws = (i / sd) * sd;
            let plan: Vec<Tensor> = (0..sd)
                .map(|k| if ws + k < n { lat[ws + k].to_kind(null.kind()) } else { null.get(k as i64) })
                .collect();
            let plan = Tensor::stack(&plan, 0).unsqueeze(0);
            let mut ids = vec![sp.bos as i64];
            for s in &toks[ws..i] {
                ids.extend_from_slice(s);
                ids.push(sp.sep as i64);
            }
            if ids.len() + 2 > max_len {
                return Err(PipelineError::Invalid(format!(
                    "the text before sentence {} in its window takes {} tokens, more than the decoder's context of {max_len}; split the long sentences",
                    i + 1,
                    ids.len()
                )));
            }
            let gopts = GenerateOptions {
                max_new_tokens: opts.gen.max_tokens.min(max_len - ids.len() - 1).max(1),
                max_sentences: Some(1),
                eos_id: sp.eos as i64,
                sep_id: sp.sep as i64,
                pad_id: sp.pad as i64,
                banned: vec![sp.bos as i64, sp.pad as i64, sp.eos as i64],
            };
            // A sentence that decodes to nothing is drawn again (the sampler moves on).
            let mut sentence = Vec::new();
            for _ in 0..4 {
                let g = generate(&self.ae.decoder, std::slice::from_ref(&ids), Some(&plan), &mut lp, &gopts, |_, _| {});
                sentence = g.tokens[0].iter().copied().filter(|&t| !sp.is_special(t as u32)).collect();
                let text = self.tokenizer.decode(&sentence.iter().map(|&t| t as u32).collect::<Vec<_>>())?;
                if !text.trim().is_empty() {
                    break;
                }
            }
            let after = self.tokenizer.decode(&sentence.iter().map(|&t| t as u32).collect::<Vec<_>>())?;
            let after = after.trim().to_string();
            if after.is_empty() {
                return Err(PipelineError::Invalid(format!(
                    "the model wrote an empty sentence {} four times; try another --seed",
                    i + 1
                )));
            }
            rewritten.push(RewrittenSentence { sentence: i + 1, before: spans[i].to_string(), after });
            toks[i] = sentence;
            lat[i] = self.encode(std::slice::from_ref(&toks[i])).get(0);
        }
        // Splice: bytes before sentence A and after sentence B are the input's own.
        let offset = |s: &str| s.as_ptr() as usize - text.as_ptr() as usize;
        let from = offset(spans[a0]);
        let to = offset(spans[b0]) + spans[b0].len();
        let middle: Vec<&str> = rewritten.iter().map(|r| r.after.as_str()).collect();
        let out = format!("{}{}{}", &text[..from], middle.join(" "), &text[to..]);
        Ok(Edit { text: out, rewritten, sentences: n, seconds: t0.elapsed().as_secs_f64() })
    }
}
