//! Evaluation: text metrics (`metrics`), paired statistics (`stats`), the A/B harness
//! (`ab`: arms, scoring, aggregation) and its reports (`report`: Markdown, self-contained
//! HTML). Sits on top of `pipeline` (the generation modes it compares) and `bundle` (the
//! models it scores with); never on `train`.

pub mod ab;
pub mod judge;
pub use plandiff_pipeline::lexicon;
pub mod metrics;
pub mod repair;
pub mod report;
pub mod stats;

pub use plandiff_pipeline::{PipelineError, Result};
