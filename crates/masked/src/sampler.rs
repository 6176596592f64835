//! LLaDA's sampler (Nie et al. 2025, `generate.py`), generalised to any set of positions to
//! fill (a continuation after a prompt, or `[MASK:n]` spans of a template):
//!
//! - The positions to fill are split, in order, into blocks of `block_length` (semi-
//!   autoregressive decoding); `steps` are divided equally among the blocks (the first blocks
//!   take one more when they do not divide evenly), and a position beyond the current block
//!   is never committed before its block.
//! - At each step the model reads the committed tokens with every other position masked,
//!   proposes a token for each (Gumbel-max in float64 at `temperature`; 0 is argmax), and the
//!   `k` most confident positions of the block are committed, `k` from
//!   [`crate::num_transfer_tokens`] (linear in t). A committed token never changes.
//! - Confidence (`remasking`): the proposal's probability (`low_confidence`: the least
//!   confident stay masked), a uniform draw (`random`), the gap between the two likeliest
//!   tokens (`margin`), or the negative entropy of the position's distribution (`entropy`).
//! - `start`: from all masks (LLaDA), or from uniform random tokens: each uncommitted
//!   position then holds a draft token, and a draft less probable under the model than the
//!   model's own proposal is remasked and replaced by it; the k most confident are committed.
//!   From all masks the draft is the mask (probability 0), which is LLaDA exactly.

use crate::schedule::num_transfer_tokens;
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Remasking {
    LowConfidence,
    Random,
    Margin,
    Entropy,
}

impl Remasking {
    pub const NAMES: &'static str = "low_confidence, random, margin, entropy";

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "low_confidence" => Some(Self::LowConfidence),
            "random" => Some(Self::Random),
            "margin" => Some(Self::Margin),
            "entropy" => Some(Self::Entropy),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Start {
    Mask,
    Random,
}

impl Start {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "mask" => Some(Self::Mask),
            "random" => Some(Self::Random),
            _ => None,
        }
    }
}

/// Settings of one masked sampling run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct MaskedSampling {
    pub steps: usize,
    /// Positions per semi-autoregressive block; `None`: one block.
    pub block_length: Option<usize>,
    pub remasking: Remasking,
    /// Gumbel temperature; 0 is argmax.
    pub temperature: f64,
    pub start: Start,
    /// HF's repetition penalty over the tokens a row holds so far (given or committed): a
    /// positive logit of such a token is divided by it, a negative one multiplied. 1 is off.
    pub repetition_penalty: f64,
    /// Fast-dLLM's parallel decoding: besides the step's scheduled `k`, every open position of
    /// the block whose proposal is at least this probable is committed at once, and a block
    /// whose positions are all committed ends early (its remaining steps run no model call;
    /// `on_step` still sees each). `None` is off (LLaDA).
    pub threshold: Option<f64>,
    /// `Some(n)`: the caller runs the model with [`crate::BlockCache`], a full pass every `n`
    /// blocks (the sampler reads only the [`Denoiser`] it is given; this records the choice
    /// with the settings). `None`: a full forward every step.
    pub block_cache: Option<usize>,
}

/// What the sampler asks of a model at each step: logits at the current block's positions.
/// Any `FnMut(&Tensor) -> Tensor` from `(B, L)` ids to `(B, L, V)` logits is one (a full
/// forward, narrowed to the block); [`crate::BlockCache`] is the cached one.
pub trait Denoiser {
    /// `x`: `(B, L)` ids, masks included; `block`: the block's positions, ascending (`at` is
    /// the same as an int64 tensor on `x`'s device); `fresh`: the first step of this block.
    /// Returns logits `(B, block.len(), V)`.
    fn block_logits(&mut self, x: &Tensor, block: &[usize], at: &Tensor, fresh: bool) -> Tensor;
}

impl<F: FnMut(&Tensor) -> Tensor> Denoiser for F {
    fn block_logits(&mut self, x: &Tensor, _block: &[usize], at: &Tensor, _fresh: bool) -> Tensor {
        self(x).index_select(1, at)
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SampleError {
    #[error("--steps {steps} must be at least the {blocks} blocks of --block-length {block} over {fill} positions to fill (each block takes at least one step); try --steps {blocks} or more, or a longer --block-length")]
    Steps { steps: usize, blocks: usize, block: usize, fill: usize },
    #[error("--steps {0} is more than {MAX_STEPS}; steps beyond the positions to fill change nothing (one per position is LLaDA's best)")]
    TooManySteps(usize),
    #[error("--block-length must be >= 1")]
    BlockLength,
    #[error("--temperature {0} must be finite and >= 0")]
    Temperature(f64),
    #[error("--repetition-penalty {0} must be finite and >= 1 (1 is off)")]
    RepetitionPenalty(f64),
    #[error("--threshold {0} must be a probability in (0, 1] (Fast-dLLM uses 0.9)")]
    Threshold(f64),
    #[error("every token is banned at the positions to fill")]
    AllBanned,
}

/// The most steps one run may take.
pub const MAX_STEPS: usize = 1 << 16;

/// What the sampler reads besides its settings.
pub struct Problem<'a> {
    /// One entry per position: `Some(token)` is given, `None` is filled.
    pub known: &'a [Option<i64>],
    pub rows: usize,
    /// The mask's id (the vocabulary's size: ids `0..mask_id` are tokens).
    pub mask_id: i64,
    /// Tokens never placed at a filled position (e.g. `<bos>`; `<eos>` when the text must not end).
    pub banned: &'a [i64],
    pub device: Device,
}

/// The blocks of positions to fill, and the steps of each: `steps` divided equally (LLaDA);
/// when the blocks do not divide them (their number follows the prompt's length), the first
/// `steps % blocks` blocks take one step more.
fn blocks(fill: &[usize], opts: &MaskedSampling) -> Result<Vec<(Vec<usize>, usize)>, SampleError> {
    let block = match opts.block_length {
        Some(0) => return Err(SampleError::BlockLength),
        Some(b) => b.min(fill.len()).max(1),
        None => fill.len().max(1),
    };
    let blocks: Vec<Vec<usize>> = fill.chunks(block).map(<[usize]>::to_vec).collect();
    let n = blocks.len().max(1);
    if opts.steps > MAX_STEPS {
        return Err(SampleError::TooManySteps(opts.steps));
    }
    if opts.steps < n {
        return Err(SampleError::Steps { steps: opts.steps, blocks: n, block, fill: fill.len() });
    }
    let (base, extra) = (opts.steps / n, opts.steps % n);
    Ok(blocks.into_iter().enumerate().map(|(i, b)| (b, base + usize::from(i < extra))).collect())
}

/// Samples `p.rows` sequences; `logits_fn` gives the logits of the block's positions (the
/// model, its block cache, or an oracle in tests; see [`Denoiser`]); `uniform(shape)` supplies every random draw
/// (float64 in (0, 1)); `on_step(i, x)` sees the tokens `(B, L)` after step `i` (masks, or
/// drafts, where nothing is committed yet). Returns tokens `(B, L)` with every position filled.
pub fn sample_masked(
    p: &Problem,
    opts: &MaskedSampling,
    mut logits_fn: impl Denoiser,
    mut uniform: impl FnMut(&[i64]) -> Tensor,
    mut on_step: impl FnMut(usize, &Tensor),
) -> Result<Tensor, SampleError> {
    if let Some(t) = opts.threshold.filter(|t| !(*t > 0.0 && *t <= 1.0)) {
        return Err(SampleError::Threshold(t));
    }
    if !opts.temperature.is_finite() || opts.temperature < 0.0 {
        return Err(SampleError::Temperature(opts.temperature));
    }
    if !(opts.repetition_penalty.is_finite() && opts.repetition_penalty >= 1.0) {
        return Err(SampleError::RepetitionPenalty(opts.repetition_penalty));
    }
    let (b, l, v) = (p.rows as i64, p.known.len() as i64, p.mask_id);
    let fill: Vec<usize> = p.known.iter().enumerate().filter(|(_, k)| k.is_none()).map(|(i, _)| i).collect();
    let allowed: Vec<i64> = (0..v).filter(|t| !p.banned.contains(t)).collect();
    if allowed.is_empty() {
        return Err(SampleError::AllBanned);
    }
    let blocks = blocks(&fill, opts)?;
    tch::no_grad(|| {
        let row: Vec<i64> = p.known.iter().map(|k| k.unwrap_or(p.mask_id)).collect();
        let mut x = Tensor::from_slice(&row).view([1, l]).repeat([b, 1]).to_device(p.device);
        let known: Vec<bool> = p.known.iter().map(Option::is_some).collect();
        let mut committed = Tensor::from_slice(&known).view([1, l]).repeat([b, 1]).to_device(p.device);
        if opts.start == Start::Random && !fill.is_empty() {
            let u = uniform(&[b, fill.len() as i64]).to_device(p.device);
            let pick = (u * allowed.len() as f64).floor().to_kind(Kind::Int64).clamp(0, allowed.len() as i64 - 1);
            let drafts = Tensor::from_slice(&allowed).to_device(p.device).index_select(0, &pick.view([-1]));
            let idx = Tensor::from_slice(&fill.iter().map(|&i| i as i64).collect::<Vec<_>>()).to_device(p.device);
            x = x.index_copy(1, &idx, &drafts.view([b, fill.len() as i64]));
        }
        let mut ban = vec![0f64; v as usize];
        for &t in p.banned.iter().filter(|&&t| (0..v).contains(&t)) {
            ban[t as usize] = -1e30;
        }
        let ban = Tensor::from_slice(&ban).to_device(p.device);
        let mut step = 0;
        for (block, per_block) in &blocks {
            let at: Vec<i64> = block.iter().map(|&i| i as i64).collect();
            let at = Tensor::from_slice(&at).to_device(p.device);
            let mut fresh = true;
            let mut filled = false;
            for k in num_transfer_tokens(block.len(), *per_block) {
                // A block the threshold filled early runs no more steps (each still reported).
                filled = filled || (opts.threshold.is_some() && !fresh && block_done(&committed, &at));
                if k > 0 && !filled {
                    let s =
                        Step { x: &x, committed: &committed, block: block.as_slice(), at: &at, ban: &ban, k: k as i64 };
                    let (nx, nc) = s.run(p.mask_id, opts, fresh, &mut logits_fn, &mut uniform);
                    (x, committed, fresh) = (nx, nc, false);
                }
                on_step(step, &x);
                step += 1;
            }
        }
        Ok(x)
    })
}

/// Whether every row has committed every position of the block.
fn block_done(committed: &Tensor, at: &Tensor) -> bool {
    committed.index_select(1, at).all().int64_value(&[]) != 0
}

/// One denoising step over the current block: the float64 work (softmax, Gumbel draws,
/// confidence) runs on the block's positions only.
struct Step<'a> {
    x: &'a Tensor,
    committed: &'a Tensor,
    block: &'a [usize],
    /// The block's positions `(nb,)`.
    at: &'a Tensor,
    ban: &'a Tensor,
    k: i64,
}

impl Step<'_> {
    fn run(
        &self,
        mask_id: i64,
        opts: &MaskedSampling,
        fresh: bool,
        logits_fn: &mut impl Denoiser,
        uniform: &mut impl FnMut(&[i64]) -> Tensor,
    ) -> (Tensor, Tensor) {
        let dev = self.x.device();
        let input = self.x.where_self(self.committed, &Tensor::from(mask_id).to_device(dev));
        let mut logits = logits_fn.block_logits(&input, self.block, self.at, fresh).to_kind(Kind::Double); // (B, nb, V)
        if opts.repetition_penalty > 1.0 {
            // The tokens each row holds (the mask excluded), as a (B, 1, V) mask.
            let (rows, v) = (logits.size()[0], logits.size()[2]);
            let held = Tensor::zeros([rows, v + 1], (Kind::Float, dev)).scatter_value(1, &input.clamp(0, v), 1.0);
            let held = held.narrow(1, 0, v).gt(0.0).unsqueeze(1);
            let pen = logits.where_self(&logits.lt(0.0), &(&logits / opts.repetition_penalty));
            let pen = pen.where_self(&logits.ge(0.0), &(&logits * opts.repetition_penalty));
            logits = pen.where_self(&held, &logits);
        }
        let logits = logits + self.ban;
        let logp = logits.log_softmax(-1, Kind::Double);
        let x0 = if opts.temperature == 0.0 {
            logits.argmax(-1, false)
        } else {
            // Gumbel-max in float64: argmax(l + T g) = argmax(exp(l) / (-ln u)^T), LLaDA's form.
            let g = -(-uniform(&logits.size()).to_device(dev).to_kind(Kind::Double).log()).log();
            (&logits + g * opts.temperature).argmax(-1, false)
        }; // (B, nb)
        let p_x0 = logp.gather(-1, &x0.unsqueeze(-1), false).squeeze_dim(-1).exp();
        let xb = self.x.index_select(1, self.at); // (B, nb)
        let done = self.committed.index_select(1, self.at);
        let open = done.logical_not();
        let (cand, p_cand) = if opts.start == Start::Random {
            // A draft at least as probable as the proposal stays; a weaker one is remasked.
            let draft = xb.clamp(0, mask_id - 1);
            let p_draft = logp.gather(-1, &draft.unsqueeze(-1), false).squeeze_dim(-1).exp();
            let keep = p_draft.ge_tensor(&p_x0);
            (draft.where_self(&keep, &x0), p_draft.maximum(&p_x0))
        } else {
            (x0, p_x0)
        };
        let conf = match opts.remasking {
            Remasking::LowConfidence => p_cand.shallow_clone(),
            Remasking::Random => uniform(&p_cand.size()).to_device(dev).to_kind(Kind::Double),
            Remasking::Margin => {
                let (top, _) = logp.exp().topk(2, -1, true, true); // (B, nb, 2)
                top.select(-1, 0) - top.select(-1, 1)
            }
            Remasking::Entropy => (logp.exp() * &logp).sum_dim_intlist(-1, false, Kind::Double),
        };
        let conf = conf.where_self(&open, &Tensor::from(f64::NEG_INFINITY).to_device(dev));
        let (_, idx) = conf.topk(self.k, -1, true, false); // (B, k)
        let mut sel = done.zeros_like().scatter_value(1, &idx, 1).logical_and(&open);
        if let Some(t) = opts.threshold {
            sel = sel.logical_or(&p_cand.ge(t).logical_and(&open));
        }
        let mut new = cand.where_self(&sel, &xb);
        if opts.start == Start::Random {
            new = cand.where_self(&open.logical_and(&sel.logical_not()), &new);
        }
        let x = self.x.index_copy(1, self.at, &new);
        (x, self.committed.index_copy(1, self.at, &done.logical_or(&sel)))
    }
}

#[cfg(test)]
mod tests;
