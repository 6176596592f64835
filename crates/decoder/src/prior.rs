//! A second model mixed into the decoder's next-token distribution ([`Prior`]), the models
//! a session writes with ([`Models`]), and the prior's step, run beside the decoder's.

use crate::model::{Decoder, DecoderCache};
use tch::{Kind, Tensor};

/// A model whose next-token distribution is mixed into the decoder's, a product of experts:
/// tokens are drawn from `p_decoder^(1 - weight) p_prior^weight`, normalised (the decoder's
/// distribution after plan guidance). The bundle's plain `ar` model is the fluency prior of
/// `generate --mode hybrid --ar-prior` (issue 39); the prior must share the decoder's
/// vocabulary and have rotary positions.
#[derive(Clone, Copy)]
pub struct Prior<'m> {
    pub model: &'m Decoder,
    pub weight: f64,
}

/// The models a session writes with: the decoder and its optional [`Prior`].
#[derive(Clone, Copy)]
pub struct Models<'m> {
    pub decoder: &'m Decoder,
    pub prior: Option<Prior<'m>>,
}

impl<'m> From<&'m Decoder> for Models<'m> {
    fn from(decoder: &'m Decoder) -> Self {
        Self { decoder, prior: None }
    }
}

impl Prior<'_> {
    /// `(1 - w) decoder + w prior` of two models' logits `(B, V)`: the product's log-probabilities
    /// up to a constant per row (softmax removes it), kept on the logits' scale so that the
    /// sampler's repetition penalty acts on it as on any model's logits.
    fn mix(&self, decoder: &Tensor, prior: &Tensor) -> Tensor {
        decoder.to_kind(Kind::Float) * (1.0 - self.weight) + prior.to_kind(Kind::Float) * self.weight
    }
}

/// One step of the prior model, sent to the thread it runs on.
pub(crate) struct PriorStep<'a> {
    model: &'a Decoder,
    tokens: Tensor,
    positions: Tensor,
    sentences: Tensor,
    cache: &'a mut DecoderCache,
}

// SAFETY: the step only reads `model` (inference without gradients; the decoder has no
// interior mutability) while its thread runs, no other thread uses that model or `cache`
// meanwhile, and libtorch's operators may run concurrently on tensors they only read.
unsafe impl Send for PriorStep<'_> {}

impl PriorStep<'_> {
    /// The prior's next-token logits `(B, V)`.
    fn run(self) -> Tensor {
        tch::no_grad(|| {
            let l = self.model.forward_step(&self.tokens, &self.positions, Some(&self.sentences), None, self.cache);
            l.select(1, -1)
        })
    }
}

impl<'a> PriorStep<'a> {
    /// The prior's step over `[tokens, positions, sentence ids]` `(B, t)` each, into `cache`.
    pub(crate) fn new(
        model: &'a Decoder,
        [tokens, positions, sentences]: [Tensor; 3],
        cache: &'a mut DecoderCache,
    ) -> Self {
        Self { model, tokens, positions, sentences, cache }
    }
}

impl Prior<'_> {
    /// The mixed next-token logits of `decode` (the decoder's step) and the prior's `step`. With
    /// one intra-op thread the prior's step runs beside the decoder's on a second thread; with
    /// more, libtorch's threads already share the cores and a second caller would oversubscribe
    /// them (measured: 3x slower on two cores), so it runs after.
    pub(crate) fn step_beside(&self, step: PriorStep, decode: impl FnOnce() -> Tensor) -> Tensor {
        if tch::get_num_threads() > 1 {
            let logits = decode();
            return self.mix(&logits, &step.run());
        }
        let (logits, prior_logits) = std::thread::scope(|scope| {
            let beside = scope.spawn(move || step.run());
            (decode(), beside.join())
        });
        match prior_logits {
            Ok(l) => self.mix(&logits, &l),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
}
