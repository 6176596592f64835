//! The bundle's errors: each names the file (or the setting) and says what to do. Flag
//! names are the binary's to add: a bundle is loaded through `--checkpoint`, an A/B arm, or
//! a judge, and the message must fit all of them.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    /// A file or folder of a bundle that is missing, damaged, or does not match another one;
    /// `problem` ends with the fix.
    #[error("{}: {problem}", path.display())]
    File { path: PathBuf, problem: String },
    /// A model config (`config.json`'s `model` section, or a run config's) that breaks a rule.
    #[error("{}: {source}", path.display())]
    Model { path: PathBuf, source: ModelConfigError },
    /// A training setting out of range (`config [train]: ...`).
    #[error("config [{section}]: {problem}")]
    Setting { section: &'static str, problem: String },
    #[error(transparent)]
    Data(#[from] plandiff_data::DataError),
    /// The frozen sentence encoder of a plan space: missing, different, or failing.
    #[error(transparent)]
    Encoder(#[from] plandiff_sentence::EncoderError),
    #[error("libtorch: {0}")]
    Torch(String),
}

/// What is wrong with a model config.
#[derive(Debug, thiserror::Error)]
pub enum ModelConfigError {
    #[error(transparent)]
    Field(#[from] plandiff_layers::FieldError),
    #[error(transparent)]
    Schedule(#[from] plandiff_diffusion::DiffusionError),
    #[error(transparent)]
    Decoder(#[from] plandiff_decoder::ConfigError),
    #[error(transparent)]
    Planner(#[from] plandiff_planner::PlannerError),
    /// A rule across fields, in words (`prediction_type must be "sample"`).
    #[error("{0}")]
    Rule(String),
}

impl BundleError {
    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        Self::Io { path: path.as_ref().to_path_buf(), source }
    }

    pub fn file(path: impl AsRef<Path>, problem: impl Into<String>) -> Self {
        Self::File { path: path.as_ref().to_path_buf(), problem: problem.into() }
    }
}

impl From<tch::TchError> for BundleError {
    fn from(e: tch::TchError) -> Self {
        // libtorch messages carry a C++ backtrace after the first line.
        Self::Torch(first_line(&e.to_string()))
    }
}

/// The first line of a message (libtorch appends backtraces).
pub fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or_default().to_string()
}

pub type Result<T> = std::result::Result<T, BundleError>;
