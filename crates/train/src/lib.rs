//! Training: one loop for every stage (`trainer`: resume, signals, checkpoints, progress,
//! metrics, ranks), which a stage plugs into with its batch, its loss and its evaluation
//! (`runner::StageRunner`); AdamW written on tensors (so its moments can be saved and a
//! resumed run continues exactly), warmup + cosine LR, metrics as JSONL; and the stages
//! themselves, listed once in [`registry::STAGES`].
//!
//! Depends on `bundle` (the on-disk format and the models it loads) and the model crates;
//! never on `pipeline` or `eval`, and nothing of inference depends on it.

pub mod adamw;
pub mod ar;
pub mod autoencoder;
pub mod config;
pub mod diffusion;
pub mod eval;
pub mod export;
pub mod masked;
pub mod metrics;
pub mod objectives;
pub mod planner;
pub mod registry;
pub mod run;
mod runner;
pub mod schedule;
mod setup;
pub mod stages;
pub mod trainer;
pub mod world;

pub use adamw::{AdamW, AdamWConfig};
pub use config::{ModelSection, RunConfig, StageSection};
pub use eval::{evaluate_loss, EvalResult};
pub use export::{export_bundle, ExportReport, StorageKind};
pub use registry::{load_config, parse_config, STAGES};
pub use schedule::LrSchedule;
pub use stages::{EvalRequest, PlanSteer, Stage, StageEval};

pub use run::{TrainArgs, TrainEnd, TrainReport};
pub use world::{Precision, Shard, World};

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Bundle(#[from] plandiff_bundle::BundleError),
    #[error(transparent)]
    Data(#[from] plandiff_data::DataError),
    #[error("libtorch: {0}")]
    Torch(String),
    #[error("distributed: {0}")]
    Dist(String),
    #[error("loss became {value} at step {step}; lower lr in the config (or raise warmup_steps) and resume from the last checkpoint with --resume")]
    NonFinite { step: u64, value: f64 },
}

impl TrainError {
    pub fn io(path: impl AsRef<std::path::Path>, source: std::io::Error) -> Self {
        TrainError::Io { path: path.as_ref().display().to_string(), source }
    }

    pub fn json(e: serde_json::Error) -> Self {
        TrainError::Invalid(format!("JSON: {e}"))
    }
}

impl From<tch::TchError> for TrainError {
    fn from(e: tch::TchError) -> Self {
        // libtorch messages carry a C++ backtrace after the first line.
        TrainError::Torch(e.to_string().lines().next().unwrap_or_default().to_string())
    }
}

pub type Result<T> = std::result::Result<T, TrainError>;
