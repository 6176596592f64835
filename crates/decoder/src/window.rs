//! Writing a long text window by window under a plan ([`WindowDecoder`]): chosen once, from
//! the decoder's positions. A decoder with learned positions re-reads each window's text (a
//! prefill of its sentences) and writes its new sentences; a rotary decoder keeps one
//! [`SlidingSession`] for the whole text, which starts from the first window's text and then
//! only forgets what no window reaches. Both run the crate's one token loop.

use crate::generate::generate_guided;
use crate::model::Decoder;
use crate::prior::Models;
use crate::sampling::LogitsProcessor;
use crate::session::SlidingSession;
use crate::token_loop::{GenerateOptions, Generated};
use tch::Tensor;

/// One window to write.
pub struct Window<'a> {
    /// Per batch row, the text the decoder reads before it writes (`<bos> s_1 <sep> ...` and the
    /// open sentence). Read unless [`WindowDecoder::holds_text`] says otherwise; a sliding session
    /// already holds its text after its first window.
    pub text: &'a [Vec<i64>],
    /// The window's plan `(B, S, d_latent)`; its slot 0 is sentence `origin` of the text.
    pub plan: &'a Tensor,
    pub origin: i64,
}

/// How a text is written window by window (see the module doc).
pub enum WindowDecoder {
    /// Learned positions: every window re-reads its text.
    ReRead { guidance: f64 },
    /// Rotary positions and a sentence window of `window` sentences: one session slides over
    /// the text (`None` until the first window starts it).
    Sliding { guidance: f64, window: i64, session: Option<Box<SlidingSession>> },
}

impl WindowDecoder {
    /// The way `model` writes windows, with plan guidance `guidance` (1: the plan alone).
    pub fn new(model: &Decoder, guidance: f64) -> Self {
        match model.config().rotary {
            Some(r) => Self::Sliding { guidance, window: r.window.max(1), session: None },
            None => Self::ReRead { guidance },
        }
    }

    /// For a sliding session already under way, the sentences its windows hold (the one being
    /// written included); `None` when the next window must be given its text (always when
    /// re-reading, and for a sliding decoder's first window).
    pub fn holds_text(&self) -> Option<usize> {
        match self {
            Self::Sliding { window, session: Some(_), .. } => Some(*window as usize),
            _ => None,
        }
    }

    /// Whether a [`crate::Prior`] can join the writing: only a sliding session keeps the prior's
    /// cache beside its own.
    pub fn takes_prior(&self) -> bool {
        matches!(self, Self::Sliding { .. })
    }

    /// Row `r` of a sliding session goes on as a copy of row `from[r]` (the drafts it keeps);
    /// `false` for a decoder that re-reads its windows (it holds no rows between calls).
    pub fn keep_rows(&mut self, model: &Decoder, from: &[usize]) -> bool {
        match self {
            Self::Sliding { session: Some(s), .. } => {
                s.keep_rows(model, from);
                true
            }
            _ => false,
        }
    }

    /// Writes the window's sentences (up to `opts.max_sentences` in every row) with
    /// `models.decoder` and, for a sliding session, its prior (the same prior every window: its
    /// cache starts with the first). `on_token(row, token)` sees each token as it is drawn. A
    /// sliding session's rows are the rows of its first window; rows that ended since get no
    /// tokens.
    pub fn write(
        &mut self,
        models: Models,
        w: &Window,
        sampler: &mut LogitsProcessor,
        opts: &GenerateOptions,
        on_token: impl FnMut(usize, i64),
    ) -> Generated {
        match self {
            Self::ReRead { guidance } => {
                generate_guided(models.decoder, w.text, w.plan, *guidance, sampler, opts, on_token)
            }
            Self::Sliding { guidance, window, session } => {
                let s = match session {
                    Some(s) => s,
                    None => session.insert(Box::new(SlidingSession::start(
                        models.decoder,
                        w.text,
                        w.origin,
                        *guidance,
                        *window,
                        models.prior,
                    ))),
                };
                s.write(models, w.plan, w.origin, sampler, opts, on_token)
            }
        }
    }
}
