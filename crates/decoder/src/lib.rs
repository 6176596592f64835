//! The autoregressive decoder: a causal transformer LM whose blocks may cross-attend to a
//! plan `(B, S, d_latent)` of sentence latents, with KV-cached batched generation and the
//! usual logits processors.
//!
//! The decoder knows only the plan's shape; it depends on `layers` alone, never on the
//! planner or embedding crates. Without a plan it uses its learned null plan, so one set of weights serves both
//! the plain AR arm and the plan-guided arm.

mod cache;
pub mod config;
pub mod generate;
pub mod model;
mod ngram;
pub mod prior;
pub mod sampling;
pub mod session;
mod token_loop;
pub mod window;

pub use cache::DecoderCache;
pub use config::{ConfigError, DecoderConfig, PlanConfig, RotaryConfig};
pub use generate::{generate, generate_guided};
pub use model::{slot_ids, Decoder, DecoderInput};
pub use prior::{Models, Prior};
pub use sampling::{LogitsProcessor, NgramPenalty, SamplingConfig};
pub use session::SlidingSession;
pub use token_loop::{GenerateOptions, Generated, StopReason};
pub use window::{Window, WindowDecoder};
