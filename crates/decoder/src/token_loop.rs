//! The one token loop of the decoder crate: every decoding path (a batch of prompts through a
//! KV cache, a sliding session over a whole text) draws each live row's next token from the
//! logits, stops the rows that are done, and feeds the drawn tokens back. What feeding means
//! (positions, sentence ids, key masks, forgetting old cache entries) is the [`Feeder`]'s.

use crate::sampling::LogitsProcessor;
use serde::Serialize;
use tch::{Kind, Tensor};

/// What a decoding call may write.
#[derive(Debug, Clone)]
pub struct GenerateOptions {
    pub max_new_tokens: usize,
    /// Stop a row after this many completed sentences (`<sep>` tokens generated).
    pub max_sentences: Option<usize>,
    pub eos_id: i64,
    pub sep_id: i64,
    pub pad_id: i64,
    /// Never generated (e.g. `<bos>`, `<pad>`).
    pub banned: Vec<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    EndOfDocument,
    Sentences,
    MaxTokens,
    ContextFull,
}

#[derive(Debug, Clone)]
pub struct Generated {
    /// New tokens of each row (without the prompt).
    pub tokens: Vec<Vec<i64>>,
    pub stop: Vec<StopReason>,
}

/// The model state a token loop drives.
pub(crate) trait Feeder {
    /// Whether row `r`'s next position reaches the end of the model's context (the row then
    /// stops with [`StopReason::ContextFull`] after the token it just drew).
    fn context_full(&self, r: usize) -> bool;
    /// Row `r` drew `id`, which stops it (`stop`) or not; before anything is fed.
    fn drawn(&mut self, _r: usize, _id: i64, _stop: Option<StopReason>) {}
    /// Feeds the step's tokens (`step[r]`: the token row `r` drew, `None` if it drew none;
    /// `live[r]`: whether it goes on) and returns the next logits `(B, V)`.
    fn feed(&mut self, step: &[Option<i64>], live: &[bool]) -> Tensor;
}

/// What the repetition penalty reads of each row: the tokens so far, the last `cap` of them
/// when capped (a sliding session's long text), and the first-token rule's view of the text.
pub(crate) struct History {
    pub rows: Vec<Vec<i64>>,
    pub cap: Option<usize>,
}

impl History {
    fn push(&mut self, r: usize, id: i64) {
        let row = &mut self.rows[r];
        row.push(id);
        if let Some(cap) = self.cap {
            let excess = row.len().saturating_sub(cap);
            row.drain(..excess);
        }
    }
}

/// Draws a row's next token. No empty sentences: `<sep>` never directly follows `<sep>` or
/// a bare `<bos>` (`out`: the row's tokens drawn in this call; `prompt`: what it read before).
pub(crate) fn draw(
    sampler: &mut LogitsProcessor,
    row: &mut [f32],
    history: &[i64],
    out: &[i64],
    prompt: &[i64],
    opts: &GenerateOptions,
) -> i64 {
    let at_start = match out.last() {
        Some(&t) => t == opts.sep_id,
        None => prompt.len() <= 1 || prompt.last() == Some(&opts.sep_id),
    };
    if at_start {
        let mut banned = opts.banned.clone();
        banned.push(opts.sep_id);
        sampler.sample(row, history, &banned)
    } else {
        sampler.sample(row, history, &opts.banned)
    }
}

/// Why a row stops after drawing `id` (its `sents`-th sentence end in this call, `written`
/// new tokens), if it does; `context_full`: its next position is the context's last.
pub(crate) fn stop_after(
    id: i64,
    sents: usize,
    written: usize,
    context_full: bool,
    opts: &GenerateOptions,
) -> Option<StopReason> {
    if id == opts.eos_id {
        Some(StopReason::EndOfDocument)
    } else if opts.max_sentences.is_some_and(|n| sents >= n) {
        Some(StopReason::Sentences)
    } else if written >= opts.max_new_tokens {
        Some(StopReason::MaxTokens)
    } else if context_full {
        Some(StopReason::ContextFull)
    } else {
        None
    }
}

/// A row of logits as host f32, flattened, converting only what needs converting.
pub(crate) fn on_host_f32(t: &Tensor) -> Vec<f32> {
    let t = if t.kind() == Kind::Float { t.shallow_clone() } else { t.to_kind(Kind::Float) };
    let t = if t.device() == tch::Device::Cpu { t } else { t.to_device(tch::Device::Cpu) };
    Vec::try_from(t.reshape(-1)).unwrap_or_default()
}

/// Draws tokens for every row whose `stop` is `None`, from the logits `first` `(B, V)` on,
/// until each row stops (`opts`); `on_token(row, token)` sees each token as it is drawn.
/// Rows stopped from the start draw nothing and keep their reason.
pub(crate) fn token_loop(
    first: Tensor,
    feeder: &mut impl Feeder,
    history: &mut History,
    mut stop: Vec<Option<StopReason>>,
    (sampler, opts): (&mut LogitsProcessor, &GenerateOptions),
    mut on_token: impl FnMut(usize, i64),
) -> Generated {
    let b = stop.len();
    let mut out: Vec<Vec<i64>> = vec![Vec::new(); b];
    let mut sents = vec![0usize; b];
    let mut last = first;
    loop {
        let host = on_host_f32(&last);
        let v = host.len() / b.max(1);
        let mut step: Vec<Option<i64>> = vec![None; b];
        for r in 0..b {
            if stop[r].is_some() {
                continue;
            }
            let mut row = host[r * v..(r + 1) * v].to_vec();
            let id = draw(sampler, &mut row, &history.rows[r], &out[r], &history.rows[r], opts);
            history.push(r, id);
            out[r].push(id);
            on_token(r, id);
            sents[r] += usize::from(id == opts.sep_id);
            stop[r] = stop_after(id, sents[r], out[r].len(), feeder.context_full(r), opts);
            feeder.drawn(r, id, stop[r]);
            step[r] = Some(id);
        }
        if stop.iter().all(Option::is_some) {
            break;
        }
        let live: Vec<bool> = stop.iter().map(Option::is_none).collect();
        last = feeder.feed(&step, &live);
    }
    Generated { tokens: out, stop: stop.into_iter().map(|s| s.unwrap_or(StopReason::MaxTokens)).collect() }
}
