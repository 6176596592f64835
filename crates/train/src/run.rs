//! What a training run is asked ([`TrainArgs`]) and what it reports ([`TrainReport`]).

use crate::config::RunConfig;
use crate::world::{Precision, World};
use serde::Serialize;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use tch::Device;

pub struct TrainArgs {
    /// Required for a fresh run; on `--resume` the checkpoint's own config is used.
    pub config: Option<RunConfig>,
    pub data: PathBuf,
    pub out: PathBuf,
    pub resume: bool,
    /// Overrides `train.max_steps` (the schedule length).
    pub max_steps: Option<u64>,
    /// Stop after this step with a checkpoint, as if interrupted (for time-limited jobs).
    pub stop_at: Option<u64>,
    pub device: Device,
    pub seed: Option<u64>,
    pub interrupt: Arc<AtomicBool>,
    pub progress: bool,
    /// One process, or this rank of a torchrun job.
    pub world: World,
    pub precision: Precision,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TrainEnd {
    Finished,
    Interrupted,
    Stopped,
}

#[derive(Debug, Clone, Serialize)]
pub struct TrainReport {
    pub kind: String,
    pub end: TrainEnd,
    pub step: u64,
    pub max_steps: u64,
    pub train_loss: Option<f64>,
    pub val_loss: Option<f64>,
    pub tokens_per_s: f64,
    pub seconds: f64,
    pub parameters: i64,
    pub checkpoint: PathBuf,
    pub world_size: usize,
    pub precision: Precision,
    /// Mean seconds per step in collectives (gradient and metric all-reduces).
    pub comm_seconds_per_step: f64,
}
