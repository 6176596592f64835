//! What a stage adds to the shared loop ([`StageRunner`]) and the pure functions that make a
//! run reproducible on any number of ranks: seeds per step, rank and micro-batch, and the
//! sample numbers of a rank's rows.

use crate::world::Shard;
use crate::Result;
use plandiff_bundle::{ModelConfig, Provenance, StageConfigFile, TrainerState};

pub(crate) fn step_seed(seed: u64, step: u64) -> i64 {
    (seed.wrapping_mul(1_000_003).wrapping_add(step) & (i64::MAX as u64)) as i64
}

/// libtorch's seed for step `step` on `rank` (dropout, noise): rank 0 keeps the single
/// process's, other ranks draw their own.
pub(crate) fn rank_seed(seed: u64, step: u64, rank: usize) -> i64 {
    step_seed(seed, step) ^ (((rank as u64) << 40) & (i64::MAX as u64)) as i64
}

/// libtorch's seed for draws a stage makes for the whole global micro-batch (the same on every
/// rank).
pub(crate) fn global_seed(seed: u64, step: u64, micro: usize) -> i64 {
    step_seed(seed, step) ^ (((micro as u64) << 48) & (i64::MAX as u64)) as i64
}

/// Sample indices of this rank's rows of micro-batch `micro` of optimizer step `step`: a
/// pure function of the sampler's seed and the global sample number, so a resumed run
/// (on any number of ranks) draws the same data.
pub(crate) fn batch_indices(
    sampler: &mut plandiff_data::WindowSampler,
    shard: Shard,
    step: u64,
    micro: usize,
    accum: usize,
    batch: usize,
) -> Vec<usize> {
    shard.rows(step, micro, accum, batch).map(|g| sampler.start(g)).collect()
}

/// A host RNG for the draws of micro-batch `micro` of step `step` (masks, timesteps), reseeded
/// like libtorch's generator so resume stays exact. The same on every rank: a stage that
/// draws for the whole global micro-batch with it gives each rank the single process's draws.
pub(crate) fn step_rng(seed: u64, step: u64, micro: usize) -> rand_chacha::ChaCha8Rng {
    use rand::SeedableRng;
    rand_chacha::ChaCha8Rng::seed_from_u64(step_seed(seed, step) as u64 ^ ((micro as u64) << 48))
}

/// [`step_rng`] for draws over this rank's rows only: rank 0's equals `step_rng`, other ranks
/// draw their own.
pub(crate) fn rank_rng(seed: u64, step: u64, micro: usize, shard: Shard) -> rand_chacha::ChaCha8Rng {
    use rand::SeedableRng;
    let mix = (shard.rank as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    rand_chacha::ChaCha8Rng::seed_from_u64(step_seed(seed, step) as u64 ^ ((micro as u64) << 48) ^ mix)
}

/// Seeds libtorch for the initial weights of a run.
pub(crate) fn seed_init(seed: u64) {
    tch::manual_seed(step_seed(seed, u64::MAX));
}

/// What every stage's runner draws its batches with: the data order, this rank's share of a
/// batch, the batch and validation sizes, the run's seed and the device.
pub(crate) struct Feed {
    pub sampler: plandiff_data::WindowSampler,
    pub shard: Shard,
    /// Rows per micro-batch on this rank.
    pub batch: usize,
    pub eval_batches: usize,
    pub seed: u64,
    pub device: tch::Device,
}

impl Feed {
    pub fn new(sampler: plandiff_data::WindowSampler, args: &crate::run::TrainArgs, state: &TrainerState) -> Self {
        Self {
            sampler,
            shard: args.world.shard(),
            batch: state.train.batch_size,
            eval_batches: state.train.eval_batches,
            seed: state.seed,
            device: args.device,
        }
    }

    /// Sample indices of this rank's rows of micro-batch `micro` of step `step`.
    pub fn indices(&mut self, step: u64, micro: usize, accum: usize) -> Vec<usize> {
        batch_indices(&mut self.sampler, self.shard, step, micro, accum, self.batch)
    }
}

/// What a stage adds to the shared loop.
pub(crate) trait StageRunner {
    /// The `model` section of the stage's config.json.
    type Model: ModelConfig;
    /// The stage's name (its folder in the bundle).
    const KIND: &'static str;
    /// Forward and backward of micro-batch `micro` of optimizer step `step` (gradients
    /// scaled by `1 / grad_accum`); returns the unscaled loss.
    fn micro_step(&mut self, step: u64, micro: usize, accum: usize) -> Result<f64>;
    /// Tokens one optimizer step trains on (for throughput).
    fn tokens_per_step(&self) -> u64;
    /// Validation: the main loss and extra metrics; `None` without validation data.
    fn validate(&mut self) -> Option<(f64, serde_json::Map<String, serde_json::Value>)>;
    /// `config.json` of the stage.
    fn config_file(&self, tokenizer_hash: &str, provenance: Provenance) -> StageConfigFile<Self::Model>;
}
