//! The planner side of plandiff: the sentence encoder that turns one sentence into a latent
//! vector. The latent normalizer, the denoiser over sentence slots and the planning sampler
//! (CFG, inpainting) follow with the planner stage.
//!
//! Uses the leaf crates only (`layers`, and `diffusion` for sampling); never the decoder or
//! embedding crates: the decoder only knows the plan's shape `(B, S, d_latent)`.

pub mod encoder;

pub use encoder::{EncoderConfig, LatentBound, SentenceEncoder};
