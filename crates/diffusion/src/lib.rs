//! Gaussian diffusion math, no weights: beta schedules, the forward process `q_sample`, and
//! the DDPM (Ho et al. 2020) and DDIM (Song et al. 2021) reverse steps, with the meaning of
//! the diffusers schedulers of the same names (`DDPMScheduler`, `DDIMScheduler`).
//!
//! Schedule tables are computed on the host in f64; tensors are built where they are used.
//! The one sampler choice of every plandiff sampler is [`SamplerKind`] (here, so the plan
//! and text samplers share it). This crate is a leaf: no other plandiff crate.
//!
//! | here | paper | diffusers |
//! |---|---|---|
//! | `betas[t]` | β_t | `betas` |
//! | `alphas_cumprod[t]` | ᾱ_t = Π_{s<=t} (1 - β_s) | `alphas_cumprod` |
//! | `final_alpha_cumprod` | ᾱ_{-1} | `final_alpha_cumprod` (DDIM), `one` (DDPM) |
//! | `eta` | η (DDIM stochasticity) | `eta` |
//! | `snr(t)` | ᾱ_t / (1 - ᾱ_t) | |

pub mod config;
pub mod sampler;
pub mod schedule;

pub use config::{BetaSchedule, PredictionType, ScheduleConfig, TimestepSpacing};
pub use sampler::{abs_sum_mean, SamplerKind, StepOutput, Stepping};
pub use schedule::{betas_for, rescale_zero_terminal_snr, NoiseSchedule};

#[derive(Debug, thiserror::Error)]
pub enum DiffusionError {
    #[error("diffusion schedule: {0}")]
    Invalid(String),
    /// A name that is not one of a setting's choices (a beta schedule, a sampler).
    #[error("unknown {what} `{name}`; use {expected}")]
    UnknownName { what: &'static str, name: String, expected: &'static str },
}

pub type Result<T> = std::result::Result<T, DiffusionError>;
