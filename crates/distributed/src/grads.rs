//! Data-parallel gradient averaging: gradients packed into flat buckets (DDP's 25 MB
//! default), one all-reduce per bucket (all launched, then awaited), divided by the world
//! size and copied back. Called once per optimizer step, after the last accumulation
//! micro-step, so accumulation micro-steps never synchronise.

use crate::{ffi, DistError, ProcessGroup, ReduceOp, Result};
use tch::{Kind, Tensor};

/// The bucketing of a fixed list of parameters.
pub struct GradSync {
    buckets: Vec<Vec<usize>>,
}

impl GradSync {
    /// Buckets of consecutive parameters of up to `bucket_bytes` each (a larger parameter
    /// gets a bucket of its own).
    pub fn new(params: &[Tensor], bucket_bytes: usize) -> Self {
        let mut buckets: Vec<Vec<usize>> = Vec::new();
        let mut bytes = 0usize;
        for (i, p) in params.iter().enumerate() {
            let size = p.numel() * p.kind().elt_size_in_bytes();
            if buckets.is_empty() || bytes + size > bucket_bytes {
                buckets.push(Vec::new());
                bytes = 0;
            }
            if let Some(b) = buckets.last_mut() {
                b.push(i);
            }
            bytes += size;
        }
        buckets.retain(|b| !b.is_empty());
        Self { buckets }
    }

    pub fn buckets(&self) -> usize {
        self.buckets.len()
    }

    /// Replaces every parameter's gradient by its mean over the ranks. A parameter without a
    /// gradient on some rank (unused in its micro-batches) counts as zeros there, and every
    /// rank then holds the mean, so the ranks' optimizers stay identical.
    pub fn all_reduce_mean(&self, pg: &ProcessGroup, params: &[Tensor]) -> Result<()> {
        let bad = |message: String| DistError::Comm { op: "all_reduce", message };
        // Which gradients exist somewhere: reduced first so every rank packs the same buckets.
        let defined: Vec<f32> = params.iter().map(|p| f32::from(u8::from(p.grad().defined()))).collect();
        if defined.is_empty() {
            return Ok(());
        }
        let device = params[0].device();
        let flags = Tensor::from_slice(&defined).to_device(device);
        pg.all_reduce(std::slice::from_ref(&flags), ReduceOp::Max)?;
        let flags = Vec::<f32>::try_from(flags.to_device(tch::Device::Cpu)).map_err(|e| bad(e.to_string()))?;
        for (p, (&anywhere, &here)) in params.iter().zip(flags.iter().zip(&defined)) {
            if anywhere > 0.0 && here == 0.0 {
                let zeros = p.zeros_like().detach();
                // SAFETY: live tensors; the shim sets `p.grad = zeros`.
                ffi::check("set_grad", unsafe { ffi::pd_set_grad(p.as_ptr() as *mut _, zeros.as_ptr() as *mut _) })?;
            }
        }
        let world = pg.world_size() as f64;
        tch::no_grad(|| -> Result<()> {
            let mut packed = Vec::new();
            for bucket in &self.buckets {
                let grads: Vec<Tensor> = bucket.iter().map(|&i| params[i].grad()).filter(Tensor::defined).collect();
                if grads.is_empty() {
                    continue;
                }
                let flat =
                    Tensor::cat(&grads.iter().map(|g| g.reshape(-1).to_kind(Kind::Float)).collect::<Vec<_>>(), 0);
                packed.push((grads, flat));
            }
            let flats: Vec<Tensor> = packed.iter().map(|(_, f)| f.shallow_clone()).collect();
            pg.all_reduce(&flats, ReduceOp::Sum)?;
            for (grads, flat) in packed {
                let mut offset = 0i64;
                for mut g in grads {
                    let n = g.numel() as i64;
                    let avg = flat.narrow(0, offset, n).view_as(&g).to_kind(g.kind()) / world;
                    g.copy_(&avg);
                    offset += n;
                }
            }
            Ok(())
        })
    }
}
