//! Shared transformer building blocks for every plandiff model.
//!
//! This crate is a leaf: it depends on `tch` only, never on another plandiff crate.
//! Each layer is a plain struct with `new(path, ...)` and `forward`; parameter names mirror
//! the checkpoint keys (`blocks.0.attn.q_proj.weight`, ...).

pub mod attention;
pub mod block;
pub mod embedding;
pub mod mlp;
pub mod norm;

pub use attention::{AttnMask, Attention, KvCache, KvPair};
pub use block::{Block, BlockConfig};
pub use embedding::{sinusoidal_embedding, LearnedPositions};
pub use mlp::Mlp;
pub use norm::{Norm, NormKind};
