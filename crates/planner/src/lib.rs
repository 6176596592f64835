//! The planner side of plandiff: the denoiser over sentence slots (each slot a frozen sentence
//! encoder's normalised embedding, `plandiff-sentence`), and the planning sampler (DDIM/DDPM,
//! classifier-free guidance, inpainting of known slots), the latent normalizer, and a seeded
//! host-side Gaussian stream so plans are the same on every device; the [`Planner`] puts the
//! denoiser, normalizer and schedule together and samples plans. `plandiff-bundle` reads its
//! config and weights from a bundle; its training stage is in `plandiff-train` (`planner/`).
//!
//! Uses the leaf crates only (`layers`, and `diffusion` for sampling); never the decoder or
//! embedding crates: the decoder only knows the plan's shape `(B, S, d_latent)`.

pub mod denoiser;
pub mod model;
pub mod noise;
pub mod normalizer;
pub mod sampler;

pub use denoiser::{Denoiser, DenoiserConfig, DenoiserInput};
pub use model::{Planner, PlannerError};
pub use noise::HostNoise;
pub use normalizer::LatentNormalizer;
pub use sampler::{sample_plan, sample_plan_held, PlanSampling, SoftHold, Steering};
