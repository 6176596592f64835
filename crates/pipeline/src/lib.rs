//! Generation modes glued together. Today: `ar` (the decoder alone, with its null plan when
//! it has cross-attention). The planner issue adds `hybrid` and `edit`, the embedding issue
//! `diffusion`.

pub mod ar;

pub use ar::{join_text, ArGenerator, GenOptions, Generation};

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Train(#[from] plandiff_train::TrainError),
    #[error(transparent)]
    Data(#[from] plandiff_data::DataError),
    #[error("{0}")]
    Invalid(String),
}

pub type Result<T> = std::result::Result<T, PipelineError>;
