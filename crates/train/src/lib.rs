//! Training: one loop per stage, AdamW written on tensors (so its moments can be saved and
//! a resumed run continues exactly), warmup + cosine LR, checkpoint bundles written
//! atomically, metrics as JSONL.

pub mod adamw;
pub mod ar;
pub mod autoencoder;
pub mod bundle;
pub mod config;
pub mod diffusion;
pub mod eval;
pub mod export;
pub mod fsutil;
pub mod metrics;
pub mod planner;
pub mod schedule;
pub mod trainer;

pub use adamw::{AdamW, AdamWConfig};
pub use ar::train_ar;
pub use autoencoder::{evaluate_autoencoder, load_autoencoder, train_autoencoder, Autoencoder, PlanEval};
pub use bundle::{Bundle, Provenance, StageConfigFile, FORMAT_VERSION};
pub use config::{
    AutoencoderSection, DenoiserSection, EncoderSection, ModelSection, PlanSection, PlannerObjective, PlannerSection,
    RunConfig, StageSection, TrainConfig,
};
pub use diffusion::{
    evaluate_diffusion, load_diffusion, train_diffusion, DiffusionBundle, DiffusionEval, DiffusionModel,
};
pub use eval::{evaluate_loss, EvalResult};
pub use export::{export_bundle, ExportReport, StorageKind};
pub use planner::{evaluate_planner, load_planner, train_planner, Planner, PlannerEval, PlannerModel};
pub use schedule::LrSchedule;
pub use trainer::{TrainArgs, TrainEnd, TrainReport};

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Data(#[from] plandiff_data::DataError),
    #[error("libtorch: {0}")]
    Torch(String),
    #[error("loss became {value} at step {step}; lower lr in the config (or raise warmup_steps) and resume from the last checkpoint with --resume")]
    NonFinite { step: u64, value: f64 },
}

impl TrainError {
    pub fn io(path: impl AsRef<std::path::Path>, source: std::io::Error) -> Self {
        TrainError::Io { path: path.as_ref().display().to_string(), source }
    }
}

impl From<tch::TchError> for TrainError {
    fn from(e: tch::TchError) -> Self {
        // libtorch messages carry a C++ backtrace after the first line.
        TrainError::Torch(e.to_string().lines().next().unwrap_or_default().to_string())
    }
}

pub type Result<T> = std::result::Result<T, TrainError>;
