//! KV-cached, batched generation of a batch of prompts.
//!
//! Prompts of different lengths are left-padded; a key mask hides the padding and each
//! row's positions start at 0 at its first real token, so a row's tokens do not depend on
//! what it is batched with. Each step feeds one token per row; rows that finished keep
//! feeding padding (masked out) until every row is done. The token loop is the crate's one
//! ([`crate::token_loop`]).

use crate::model::{slot_ids, Decoder, DecoderCache};
use crate::sampling::LogitsProcessor;
use crate::token_loop::{token_loop, Feeder, GenerateOptions, Generated, History};
use tch::Tensor;

/// The prompts left-padded to one length: tokens, positions, sentence slots, key mask, and
/// the length.
fn left_padded(
    prompts: &[Vec<i64>],
    opts: &GenerateOptions,
    max_slots: i64,
) -> (Vec<i64>, Vec<i64>, Vec<i64>, Vec<bool>, usize) {
    let b = prompts.len();
    let lmax = prompts.iter().map(Vec::len).max().unwrap_or(0).max(1);
    let mut tok = Vec::with_capacity(b * lmax);
    let mut pos = Vec::with_capacity(b * lmax);
    let mut slots = Vec::with_capacity(b * lmax);
    let mut mask = Vec::with_capacity(b * lmax);
    for p in prompts {
        let pad = lmax - p.len();
        let s = slot_ids(p, opts.sep_id, max_slots);
        tok.extend(std::iter::repeat_n(opts.pad_id, pad).chain(p.iter().copied()));
        pos.extend(std::iter::repeat_n(0i64, pad).chain(0..p.len() as i64));
        slots.extend(std::iter::repeat_n(0i64, pad).chain(s));
        mask.extend(std::iter::repeat_n(false, pad).chain(std::iter::repeat_n(true, p.len())));
    }
    (tok, pos, slots, mask, lmax)
}

/// Classifier-free guidance on the plan (see [`generate_guided`]): with a weight, the batch's
/// rows run twice, under the plan (rows `0..b`) and under the learned null plan (`b..2b`).
pub(crate) struct Guide {
    pub(crate) b: usize,
    pub(crate) weight: Option<f64>,
}

impl Guide {
    /// `v` (one entry per row) as the model's batch: repeated once more when guided.
    pub(crate) fn rows<T: Clone>(&self, v: &[T]) -> Vec<T> {
        let copies = if self.weight.is_some() { 2 } else { 1 };
        v.iter().cycle().take(v.len() * copies).cloned().collect()
    }

    /// The model's plan input: `plan`, then the null plan for every row when guided.
    pub(crate) fn plan(&self, model: &Decoder, plan: Option<&Tensor>) -> Option<Tensor> {
        let plan = plan?;
        let (Some(_), Some(null)) = (self.weight, model.null_plan()) else { return Some(plan.shallow_clone()) };
        let &[b, s, d] = plan.size().as_slice() else { return Some(plan.shallow_clone()) };
        let null = null.narrow(0, 0, s).unsqueeze(0).expand([b, s, d], false).to_kind(plan.kind());
        Some(Tensor::cat(&[plan, &null], 0))
    }

    /// Next-token logits `(B, V)` from the model's `(B or 2B, V)`: `null + w (plan - null)`.
    pub(crate) fn logits(&self, l: Tensor) -> Tensor {
        match self.weight {
            Some(w) => {
                let b = self.b as i64;
                let (c, u) = (l.narrow(0, 0, b), l.narrow(0, b, b));
                &u + (c - &u) * w
            }
            None => l,
        }
    }
}

/// Generates a continuation of every prompt. `on_token(row, token)` is called as soon as a
/// token is drawn (for streaming).
pub fn generate(
    model: &Decoder,
    prompts: &[Vec<i64>],
    plan: Option<&Tensor>,
    sampler: &mut LogitsProcessor,
    opts: &GenerateOptions,
    on_token: impl FnMut(usize, i64),
) -> Generated {
    run(model, prompts, plan, None, sampler, opts, on_token)
}

/// [`generate`] with classifier-free guidance on the plan (Ho & Salimans; for LMs, Sanchez
/// et al. 2023): each row is also decoded under the learned null plan, and tokens are drawn
/// from `null + weight * (plan - null)` of the two rows' logits. `weight` 1 is the plan
/// alone (no second pass); above 1 the text follows the plan more closely, at the cost of a
/// batch twice as large. A decoder without a plan ignores it.
pub fn generate_guided(
    model: &Decoder,
    prompts: &[Vec<i64>],
    plan: &Tensor,
    weight: f64,
    sampler: &mut LogitsProcessor,
    opts: &GenerateOptions,
    on_token: impl FnMut(usize, i64),
) -> Generated {
    let weight = (weight != 1.0 && model.null_plan().is_some()).then_some(weight);
    run(model, prompts, Some(plan), weight, sampler, opts, on_token)
}

/// `t` on `dev`, with no operator dispatched when it is there already (a decoding step's small
/// host-made tensors on CPU).
fn on(t: Tensor, dev: tch::Device) -> Tensor {
    if t.device() == dev {
        t
    } else {
        t.to_device(dev)
    }
}

/// A batch of left-padded prompts in one KV cache: each step feeds one token per row at the
/// row's next position and sentence slot; rows that stopped feed padding, masked out.
struct Prefilled<'m> {
    model: &'m Decoder,
    guide: Guide,
    /// The model's batch: `b`, or `2b` when guided.
    rows: i64,
    cache: DecoderCache,
    key_mask: Tensor,
    /// Whether any key is masked (left padding, or a row that stopped).
    padded: bool,
    next_pos: Vec<i64>,
    slot_now: Vec<i64>,
    max_slots: i64,
    pad_id: i64,
    sep_id: i64,
}

impl Feeder for Prefilled<'_> {
    fn context_full(&self, r: usize) -> bool {
        self.next_pos[r] + 1 >= self.model.config().max_seq_len
    }

    fn feed(&mut self, step: &[Option<i64>], live: &[bool]) -> Tensor {
        let (dev, max_len) = (self.model.device(), self.model.config().max_seq_len);
        let b = step.len();
        let bm = self.rows;
        let step_tok: Vec<i64> = step.iter().map(|t| t.unwrap_or(self.pad_id)).collect();
        self.padded |= live.iter().any(|a| !a);
        let p: Vec<i64> = (0..b).map(|r| self.next_pos[r].min(max_len - 1)).collect();
        let col = |v: &[i64]| on(Tensor::from_slice(&self.guide.rows(v)).view([bm, 1]), dev);
        let s_t = col(&self.slot_now);
        for r in (0..b).filter(|&r| live[r]) {
            self.next_pos[r] += 1;
            if step_tok[r] == self.sep_id {
                self.slot_now[r] = (self.slot_now[r] + 1).min(self.max_slots - 1);
            }
        }
        let live_t = on(Tensor::from_slice(&self.guide.rows(live)).view([bm, 1]), dev);
        self.key_mask = Tensor::cat(&[&self.key_mask, &live_t], 1);
        let mask = self.padded.then_some(&self.key_mask);
        let logits = self.model.forward_step(&col(&step_tok), &col(&p), Some(&s_t), mask, &mut self.cache);
        self.guide.logits(logits.select(1, 0))
    }
}

fn run(
    model: &Decoder,
    prompts: &[Vec<i64>],
    plan: Option<&Tensor>,
    weight: Option<f64>,
    sampler: &mut LogitsProcessor,
    opts: &GenerateOptions,
    on_token: impl FnMut(usize, i64),
) -> Generated {
    tch::no_grad(|| {
        let (dev, cfg, b) = (model.device(), model.config(), prompts.len());
        let guide = Guide { b, weight };
        let max_slots = cfg.plan.map_or(1, |p| p.max_slots);
        let (tok, pos, slots, mask, lmax) = left_padded(&guide.rows(prompts), opts, max_slots);
        let bm = (tok.len() / lmax) as i64; // the model's batch: b, or 2b when guided
        let shape = [bm, lmax as i64];
        let t = |v: &[i64]| Tensor::from_slice(v).view(shape).to_device(dev);
        let key_mask = Tensor::from_slice(&mask).view(shape).to_device(dev);
        let padded = mask.iter().any(|m| !m);
        let mut cache = model.new_cache(guide.plan(model, plan).as_ref(), bm);
        let logits = model.forward_step(&t(&tok), &t(&pos), Some(&t(&slots)), padded.then_some(&key_mask), &mut cache);
        let first = guide.logits(logits.select(1, -1)); // (B, V)
        let slot_now = prompts
            .iter()
            .map(|p| (p.iter().filter(|&&x| x == opts.sep_id).count() as i64).min(max_slots - 1))
            .collect();
        let next_pos = prompts.iter().map(|p| p.len() as i64).collect();
        let mut feeder = Prefilled {
            model,
            guide,
            rows: bm,
            cache,
            key_mask,
            padded,
            next_pos,
            slot_now,
            max_slots,
            pad_id: opts.pad_id,
            sep_id: opts.sep_id,
        };
        let mut history = History { rows: prompts.to_vec(), cap: None };
        token_loop(first, &mut feeder, &mut history, vec![None; b], (sampler, opts), on_token)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DecoderConfig, SamplingConfig, StopReason};
    use tch::{nn, Device, Kind};

    fn opts(max_new: usize) -> GenerateOptions {
        GenerateOptions {
            max_new_tokens: max_new,
            max_sentences: None,
            eos_id: 1,
            sep_id: 2,
            pad_id: 3,
            banned: vec![0, 3],
        }
    }

    #[test]
    fn greedy_cached_generation_matches_argmax_of_full_forward() {
        tch::manual_seed(3);
        let vs = nn::VarStore::new(Device::Cpu);
        let model = Decoder::new(vs.root(), &DecoderConfig::test(30, None));
        let mut lp = LogitsProcessor::new(SamplingConfig::greedy(), 0);
        let prompt = vec![0i64, 7, 8, 9];
        let mut o = opts(10);
        o.eos_id = -1;
        o.sep_id = -2;
        let g = generate(&model, std::slice::from_ref(&prompt), None, &mut lp, &o, |_, _| {});
        // Recompute greedily with full forward passes, no cache.
        let mut seq = prompt;
        for _ in 0..10 {
            let logits = tch::no_grad(|| model.forward(&Tensor::from_slice(&seq).unsqueeze(0), None, None, false));
            let mut last: Vec<f32> = Vec::try_from(logits.select(1, -1).view(-1)).unwrap();
            last[0] = f32::NEG_INFINITY;
            last[3] = f32::NEG_INFINITY;
            let id = last.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).unwrap().0 as i64;
            seq.push(id);
        }
        assert_eq!(g.tokens[0], seq[4..].to_vec());
        assert_eq!(g.stop[0], StopReason::MaxTokens);
    }

    #[test]
    fn batched_rows_equal_single_rows() {
        tch::manual_seed(4);
        let vs = nn::VarStore::new(Device::Cpu);
        let model = Decoder::new(vs.root(), &DecoderConfig::test(30, None));
        let greedy = SamplingConfig { repetition_penalty: 1.3, ..SamplingConfig::greedy() };
        let prompts = vec![vec![0i64, 5], vec![0i64, 6, 7, 8, 9, 10]];
        let mut lp = LogitsProcessor::new(greedy, 0);
        let batched = generate(&model, &prompts, None, &mut lp, &opts(12), |_, _| {});
        for (r, p) in prompts.iter().enumerate() {
            let single = generate(&model, std::slice::from_ref(p), None, &mut lp, &opts(12), |_, _| {});
            assert_eq!(batched.tokens[r], single.tokens[0], "row {r}");
        }
    }

    #[test]
    fn stops_after_n_sentences_and_at_context_end() {
        tch::manual_seed(5);
        let vs = nn::VarStore::new(Device::Cpu);
        let model = Decoder::new(vs.root(), &DecoderConfig::test(6, None));
        let mut lp = LogitsProcessor::new(SamplingConfig { temperature: 1.0, ..SamplingConfig::greedy() }, 9);
        let mut o = opts(1000);
        o.eos_id = -1;
        o.max_sentences = Some(3);
        let g = generate(&model, &[vec![0, 4]], None, &mut lp, &o, |_, _| {});
        assert_eq!(g.stop[0], StopReason::Sentences);
        assert_eq!(g.tokens[0].iter().filter(|&&t| t == 2).count(), 3);
        assert_eq!(*g.tokens[0].last().unwrap(), 2);
        o.max_sentences = None;
        o.sep_id = -2;
        let g = generate(&model, &[vec![0, 4]], None, &mut lp, &o, |_, _| {});
        assert_eq!(g.stop[0], StopReason::ContextFull);
        assert_eq!(g.tokens[0].len() + 2, 64 - 1 + 1);
    }

    /// Guided decoding is the reference computation: greedy tokens are the argmax of
    /// `null + w (plan - null)` over full, uncached forward passes (slots from `<sep>`s), for
    /// two rows of different lengths; weight 0 is the null plan's own generation.
    #[test]
    fn plan_guidance_matches_full_forward_reference() {
        tch::manual_seed(6);
        let vs = nn::VarStore::new(Device::Cpu);
        let model =
            Decoder::new(vs.root(), &DecoderConfig::test(30, Some(crate::PlanConfig { d_latent: 8, max_slots: 4 })));
        // Larger weights than the init's, so the plan and the null plan pick different tokens.
        tch::no_grad(|| vs.variables().values().for_each(|v| drop(v.shallow_clone().g_mul_scalar_(8.0))));
        let greedy = SamplingConfig::greedy();
        let prompts = vec![vec![0i64, 7, 2, 8], vec![0i64, 9]];
        let plan = Tensor::randn([2, 4, 8], (Kind::Float, Device::Cpu)) * 3.0;
        let mut o = opts(9);
        o.eos_id = -1;
        let w = 2.5;
        let g = generate_guided(&model, &prompts, &plan, w, &mut LogitsProcessor::new(greedy, 0), &o, |_, _| {});
        for (r, p) in prompts.iter().enumerate() {
            let mut seq = p.clone();
            for _ in 0..g.tokens[r].len() {
                let x = Tensor::from_slice(&seq).unsqueeze(0);
                let slots = Tensor::from_slice(&crate::slot_ids(&seq, 2, 4)).unsqueeze(0);
                let row_plan = plan.get(r as i64).unsqueeze(0);
                let (c, u) = tch::no_grad(|| {
                    (
                        model.forward(&x, Some(&slots), Some(&row_plan), false),
                        model.forward(&x, Some(&slots), None, false),
                    )
                });
                let (c, u) = (c.select(1, -1), u.select(1, -1));
                let mut last: Vec<f32> = Vec::try_from((&u + (c - &u) * w).view(-1)).unwrap();
                last[0] = f32::NEG_INFINITY;
                last[3] = f32::NEG_INFINITY;
                if seq.last() == Some(&2) || seq.len() <= 1 {
                    last[2] = f32::NEG_INFINITY;
                }
                seq.push(last.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).unwrap().0 as i64);
            }
            assert_eq!(g.tokens[r], seq[p.len()..].to_vec(), "row {r}");
        }
        let plain = generate(&model, &prompts, Some(&plan), &mut LogitsProcessor::new(greedy, 0), &o, |_, _| {});
        assert_ne!(g.tokens, plain.tokens, "guidance 2.5 changed nothing: the test would not notice it missing");
        let zero = generate_guided(&model, &prompts, &plan, 0.0, &mut LogitsProcessor::new(greedy, 0), &o, |_, _| {});
        let null = generate(&model, &prompts, None, &mut LogitsProcessor::new(greedy, 0), &o, |_, _| {});
        assert_eq!(zero.tokens, null.tokens);
    }
}
