//! The planner side of plandiff: the sentence encoder that turns one sentence into a latent
//! vector, the denoiser over sentence slots, and the planning sampler (DDIM/DDPM,
//! classifier-free guidance, inpainting of known slots). The latent normalizer and the
//! planner training stage follow.
//!
//! Uses the leaf crates only (`layers`, and `diffusion` for sampling); never the decoder or
//! embedding crates: the decoder only knows the plan's shape `(B, S, d_latent)`.

pub mod denoiser;
pub mod encoder;
pub mod sampler;

pub use denoiser::{Denoiser, DenoiserConfig};
pub use encoder::{EncoderConfig, LatentBound, SentenceEncoder};
pub use sampler::{sample_plan, PlanSampling, SamplerKind};
