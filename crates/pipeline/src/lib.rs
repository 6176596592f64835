//! Generation modes glued together: `ar` (the decoder alone), `hybrid` (plan sentence
//! latents with the diffusion planner, then decode), `edit` (re-plan and rewrite a range of
//! sentences in place) and `diffusion` (Diffusion-LM over token embeddings, infilling).

pub mod ar;
pub mod diffusion;
pub mod hybrid;

pub use ar::{join_text, ArGenerator, GenOptions, Generation};
pub use diffusion::{DiffusionGenerator, DiffusionOptions, DiffusionSample};
pub use hybrid::{Edit, HybridGeneration, HybridGenerator, HybridOptions, PlanSlot, RewrittenSentence};

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
