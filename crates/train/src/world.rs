//! The ranks a run trains on: one process, or a c10d process group (torchrun).
//!
//! Batch rule: `train.batch_size` is each rank's micro-batch, so one optimizer step sees
//! `batch_size x world_size x grad_accum` samples (the global batch). Rank r takes rows
//! `[r B, (r + 1) B)` of each global micro-batch, the rows a single process with batch
//! `B x world_size` would take, so data order and (for stages whose draws are made for the
//! whole global batch, `ar` and `planner`) the whole run equal that single process's. A
//! resume on another world size keeps the global batch and changes the per-rank batch.
//!
//! Only rank 0 writes (lock, tokenizer, metrics, checkpoints after every rank finished the
//! step); every rank reads the same checkpoint on resume and starts from rank 0's weights.

use crate::{Result, TrainError};
use plandiff_distributed::{Backend, GradSync, Launch, ProcessGroup, ReduceOp};
use std::cell::OnceCell;
use std::ops::Range;
use std::time::{Duration, Instant};
use tch::{Device, Tensor};

/// DDP's default bucket size.
const BUCKET_BYTES: usize = 25 << 20;

/// This rank's place in the global batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub rank: usize,
    pub world_size: usize,
}

impl Shard {
    pub const SINGLE: Shard = Shard { rank: 0, world_size: 1 };

    /// Global sample numbers of this rank's rows of micro-batch `micro` of step `step`.
    pub fn rows(&self, step: u64, micro: usize, accum: usize, batch: usize) -> Range<u64> {
        let global = (batch * self.world_size) as u64;
        let first = (step * accum as u64 + micro as u64) * global + (self.rank * batch) as u64;
        first..first + batch as u64
    }

    /// This rank's rows within a global micro-batch of `batch x world_size` rows.
    pub fn local(&self, batch: usize) -> Range<usize> {
        self.rank * batch..(self.rank + 1) * batch
    }
}

/// Numeric precision of the forward and backward passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Precision {
    Fp32,
    /// bf16 autocast (matmuls and attention in bf16), fp32 weights, gradients and AdamW.
    Bf16,
}

/// One process, or this rank of a process group.
pub struct World {
    shard: Shard,
    group: Option<ProcessGroup>,
    sync: OnceCell<GradSync>,
    /// Check after every step that the ranks hold identical parameters (for tests).
    pub check_sync: bool,
    comm_seconds: std::cell::Cell<f64>,
}

impl World {
    pub fn single() -> Self {
        Self::from_parts(Shard::SINGLE, None)
    }

    fn from_parts(shard: Shard, group: Option<ProcessGroup>) -> Self {
        Self { shard, group, sync: OnceCell::new(), check_sync: false, comm_seconds: std::cell::Cell::new(0.0) }
    }

    /// Joins the group `launch` describes with `backend` (`None`: NCCL for CUDA, else Gloo).
    /// On CUDA the device becomes `cuda:LOCAL_RANK`.
    pub fn join(
        launch: &Launch,
        backend: Option<Backend>,
        timeout: Duration,
        device: Device,
    ) -> Result<(Self, Device)> {
        let device = match device {
            Device::Cuda(_) => Device::Cuda(launch.local_rank),
            d => d,
        };
        let backend = backend.unwrap_or_else(|| Backend::for_device(device));
        if backend == Backend::Nccl && !device.is_cuda() {
            return Err(TrainError::Invalid("--dist nccl needs --device cuda (use --dist gloo on CPU)".into()));
        }
        if device.is_cuda() {
            plandiff_distributed::set_cuda_device(launch.local_rank).map_err(dist_error)?;
        }
        let group = ProcessGroup::init(launch, backend, timeout).map_err(dist_error)?;
        tracing::info!(
            rank = launch.rank,
            world_size = launch.world_size,
            backend = backend.name(),
            "joined the process group at {}:{}",
            launch.master_addr,
            launch.master_port
        );
        let shard = Shard { rank: launch.rank, world_size: launch.world_size };
        Ok((Self::from_parts(shard, Some(group)), device))
    }

    pub fn shard(&self) -> Shard {
        self.shard
    }

    pub fn rank(&self) -> usize {
        self.shard.rank
    }

    pub fn size(&self) -> usize {
        self.shard.world_size
    }

    /// Rank 0: the one that writes and reports.
    pub fn is_main(&self) -> bool {
        self.shard.rank == 0
    }

    /// Seconds spent in collectives so far (gradient and metric all-reduces).
    pub fn comm_seconds(&self) -> f64 {
        self.comm_seconds.get()
    }

    fn timed<T>(&self, f: impl FnOnce(&ProcessGroup) -> plandiff_distributed::Result<T>) -> Result<Option<T>> {
        let Some(g) = &self.group else {
            return Ok(None);
        };
        let t0 = Instant::now();
        let out = f(g).map_err(|e| self.lost(e))?;
        self.comm_seconds.set(self.comm_seconds.get() + t0.elapsed().as_secs_f64());
        Ok(Some(out))
    }

    fn lost(&self, e: plandiff_distributed::DistError) -> TrainError {
        TrainError::Dist(format!(
            "rank {} of {}: {e}; another rank failed or hung (see its log); restart the job with --resume, which continues from the last checkpoint",
            self.shard.rank, self.shard.world_size
        ))
    }

    /// Every rank starts from rank 0's parameters (and, on resume, the same AdamW moments
    /// are read from the same checkpoint).
    pub fn broadcast(&self, tensors: &[Tensor]) -> Result<()> {
        tch::no_grad(|| self.timed(|g| g.broadcast(tensors, 0))).map(drop)
    }

    /// Replaces each gradient by its mean over the ranks (once per optimizer step).
    pub fn average_gradients(&self, params: &[Tensor]) -> Result<()> {
        self.timed(|g| self.sync.get_or_init(|| GradSync::new(params, BUCKET_BYTES)).all_reduce_mean(g, params))
            .map(drop)
    }

    /// Sums host values over the ranks.
    pub fn sum(&self, values: &[f64]) -> Result<Vec<f64>> {
        Ok(self.timed(|g| g.sum_f64(values, Device::Cpu))?.unwrap_or_else(|| values.to_vec()))
    }

    pub fn barrier(&self) -> Result<()> {
        self.timed(|g| g.barrier()).map(drop)
    }

    /// Fails unless every rank holds bit-identical `params` (max == min elementwise).
    pub fn check_identical(&self, params: &[Tensor], step: u64) -> Result<()> {
        if self.group.is_none() {
            return Ok(());
        }
        let flat = tch::no_grad(|| Tensor::cat(&params.iter().map(|p| p.detach().reshape(-1)).collect::<Vec<_>>(), 0));
        let (hi, lo) = (flat.copy(), flat.copy());
        self.timed(|g| g.all_reduce(std::slice::from_ref(&hi), ReduceOp::Max))?;
        self.timed(|g| g.all_reduce(std::slice::from_ref(&lo), ReduceOp::Min))?;
        if hi.equal(&lo) {
            Ok(())
        } else {
            let diff = (hi - lo).abs().max().double_value(&[]);
            Err(TrainError::Dist(format!("the ranks' parameters differ after step {step} (max difference {diff:e})")))
        }
    }
}

pub(crate) fn dist_error(e: plandiff_distributed::DistError) -> TrainError {
    TrainError::Dist(e.to_string())
}

/// Enters autocast for the precision (a guard; `None` for fp32).
pub(crate) fn autocast(precision: Precision, device: Device) -> Result<Option<plandiff_distributed::Bf16Autocast>> {
    match precision {
        Precision::Fp32 => Ok(None),
        Precision::Bf16 => plandiff_distributed::Bf16Autocast::enter(device).map(Some).map_err(dist_error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_take_the_rows_of_the_single_process_batch() {
        let single = Shard { rank: 0, world_size: 1 };
        for (step, micro) in [(0u64, 0usize), (3, 1), (7, 0)] {
            let whole: Vec<u64> = single.rows(step, micro, 2, 8).collect();
            let parts: Vec<u64> = (0..2)
                .flat_map(|rank| Shard { rank, world_size: 2 }.rows(step, micro, 2, 4).collect::<Vec<_>>())
                .collect();
            assert_eq!(whole, parts, "step {step} micro {micro}");
        }
        assert_eq!(Shard { rank: 1, world_size: 2 }.local(4), 4..8);
    }
}
