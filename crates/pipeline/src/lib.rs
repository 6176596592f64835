//! Generation modes behind one interface: a [`Generator`] takes a [`GenRequest`] (prompt
//! in) and returns [`Generation`]s (text out), with one event stream for what grows on the
//! way; [`MODES`] lists them (`ar`, `hybrid`, `diffusion`, `masked`). Each mode's module
//! declares its settings (a clap `Args` struct: its flags, defaults and checks), and
//! `plandiff generate` and the A/B harness ask the list which flags a mode reads, so a new
//! mode is one module plus one line in [`registry`].
//! `edit` (re-plan and rewrite sentences in place) is the hybrid model's second use, and
//! the masked model's (remask a span, or its own weakest tokens, and denoise them).
//!
//! Depends on `bundle` (the models it loads) and the model crates; never on `train`.

pub mod ar;
pub mod diffusion;
pub mod flags;
pub mod hybrid;
pub mod lexicon;
pub mod masked;
pub mod mode;
pub mod positions;
pub mod registry;
pub mod text;

pub use ar::{ArGenerator, ArSettings};
pub use diffusion::{DiffusionGenerator, DiffusionSettings};
pub use hybrid::{Edit, HybridGenerator, HybridSettings, RewrittenSentence};
pub use masked::{MaskedEdit, MaskedGenerator, MaskedSettings};
pub use mode::{
    AnySettings, Detail, Event, GenOptions, GenRequest, Generation, Generator, Mode, ModeSettings, PlanSlot,
};
pub use registry::{find_mode, mode_names, MODES};
pub use text::join_text;

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
