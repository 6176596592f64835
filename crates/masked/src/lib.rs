//! The masked mode (docs/design.md, section 1): absorbing-state discrete diffusion over tokens, the
//! idea plandiff grew from ("a masked language model is one denoising step").
//!
//! - [`MaskedLm`]: a bidirectional transformer over token ids whose input vocabulary has one
//!   extra id, the mask (`mask_id = vocab_size`); it predicts the vocabulary only, so the mask
//!   is never predicted (MDLM's SUBS parameterization; unmasked positions are copied through
//!   by the sampler, and the loss reads masked positions only).
//! - [`objective`]: MDLM / LLaDA's training objective: `t ~ U(0, 1)` per sequence (antithetic
//!   across the batch), each token masked with probability `p(t) = (1 - eps) t + eps`,
//!   cross-entropy on the masked positions weighted by `1 / p(t)`, normalised by `B x L`.
//! - [`schedule`]: how many tokens a step commits (LLaDA's `get_num_transfer_tokens`).
//! - [`sampler`]: LLaDA's sampler: semi-autoregressive blocks, four remasking strategies, Gumbel
//!   sampling in float64, a start from all masks or from uniform random tokens.
//! - [`cache`]: Fast-dLLM's approximate block cache (a block's later steps run a window).
//! - [`score`]: each token's log-probability with it masked (pseudo-log-likelihood), for
//!   revising a text's weakest tokens.
//!
//! Uses the leaf crate `layers` only.

pub mod cache;
pub mod model;
pub mod objective;
pub mod sampler;
pub mod schedule;
pub mod score;

pub use cache::BlockCache;
pub use model::{MaskedLm, MaskedLmConfig};
pub use objective::{
    antithetic_times, mask_prob, neighbour_table, objective_weights, substitute, substitution_loss,
    weighted_masked_loss,
};
pub use sampler::{sample_masked, Denoiser, MaskedSampling, Problem, Remasking, SampleError, Start};
pub use schedule::num_transfer_tokens;
pub use score::token_logprobs;
