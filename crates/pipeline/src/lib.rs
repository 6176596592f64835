//! Generation modes behind one interface: a [`Generator`] takes a [`GenRequest`] (prompt
//! in) and returns [`Generation`]s (text out), with one event stream for what grows on the
//! way; [`MODES`] lists them (`ar`, `hybrid`, `diffusion`, `masked`), and `plandiff generate` and the
//! A/B harness both read that list, so a new mode is one module plus one line there.
//! `edit` (re-plan and rewrite sentences in place) is the hybrid model's second use, and
//! the masked model's (remask a span, or its own weakest tokens, and denoise them).
//!
//! Depends on `bundle` (the models it loads) and the model crates; never on `train`.

pub mod ar;
pub mod diffusion;
pub mod hybrid;
pub mod masked;
pub mod mode;
pub mod positions;
pub mod text;

pub use ar::ArGenerator;
pub use diffusion::DiffusionGenerator;
pub use hybrid::{Edit, HybridGenerator, PlanSlot, RewrittenSentence};
pub use masked::{MaskedEdit, MaskedGenerator};
pub use mode::{
    find_mode, mode_names, Detail, Event, GenOptions, GenRequest, Generation, Generator, MaskedOverrides, Mode,
    PlanOverrides,
};
pub use text::join_text;

/// Every mode, in the order `--help` lists them. A new mode is a module above with a [`Mode`]
/// constant, and one line here.
pub static MODES: &[Mode] = &[ar::MODE, hybrid::MODE, diffusion::MODE, masked::MODE];

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Bundle(#[from] plandiff_bundle::BundleError),
    #[error(transparent)]
    Data(#[from] plandiff_data::DataError),
    /// A request setting out of range; the binary shows the field as its flag.
    #[error(transparent)]
    Field(#[from] plandiff_layers::FieldError),
    #[error("{0}")]
    Invalid(String),
}

pub type Result<T> = std::result::Result<T, PipelineError>;
