//! PyTorch's c10d from Rust: the rendezvous torchrun sets up, a Gloo (CPU) or NCCL (CUDA)
//! process group, the collectives a data-parallel trainer needs, and bf16 autocast; and
//! operator counts for benchmarks ([`ops`]).
//!
//! The C++ side is `shim/dist.cpp` (and `shim/ops.cpp`), compiled by `build.rs` against the libtorch torch-sys links;
//! a backend whose headers were missing at build time is reported by [`available`] and refused
//! by [`ProcessGroup::init`] in one line.
//!
//! | torchrun sets | here |
//! |---|---|
//! | `RANK`, `WORLD_SIZE`, `LOCAL_RANK` | [`Launch`] |
//! | `MASTER_ADDR`, `MASTER_PORT` | the TCPStore's address |
//! | `TORCHELASTIC_USE_AGENT_STORE=True` | the agent hosts the store; every rank is a client |
//! | `TORCHELASTIC_RESTART_COUNT` | the store prefix (`/worker/attempt_N`), as PyTorch's |

mod ffi;
mod grads;
mod launch;
pub mod ops;

pub use grads::GradSync;
pub use launch::Launch;

use std::ffi::CString;
use std::time::Duration;
use tch::{Device, Tensor};

#[derive(Debug, thiserror::Error)]
pub enum DistError {
    #[error("{0}")]
    Launch(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("c10d {op}: {message}")]
    Comm { op: &'static str, message: String },
}

pub type Result<T> = std::result::Result<T, DistError>;

/// c10d's backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Gloo,
    Nccl,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Gloo => "gloo",
            Backend::Nccl => "nccl",
        }
    }

    /// `auto`: NCCL for CUDA devices, Gloo otherwise (torch's default pairing).
    pub fn for_device(device: Device) -> Backend {
        if device.is_cuda() {
            Backend::Nccl
        } else {
            Backend::Gloo
        }
    }

    pub fn compiled(self) -> bool {
        let (gloo, nccl) = available();
        match self {
            Backend::Gloo => gloo,
            Backend::Nccl => nccl,
        }
    }
}

/// Which backends this build has: (Gloo, NCCL).
pub fn available() -> (bool, bool) {
    // SAFETY: plain functions returning a constant.
    unsafe { (ffi::pd_has_gloo() != 0, ffi::pd_has_nccl() != 0) }
}

/// c10d's reduce operations used here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReduceOp {
    Sum = 0,
    Max = 1,
    Min = 2,
}

/// A joined process group: this rank's handle to the collectives.
pub struct ProcessGroup {
    ptr: *mut std::ffi::c_void,
    rank: usize,
    world_size: usize,
    backend: Backend,
    timeout: Duration,
}

// The group is used from the thread that owns it; c10d's own threads are internal.
unsafe impl Send for ProcessGroup {}

impl ProcessGroup {
    /// Joins the group `launch` describes. Blocks until every rank has joined or `timeout`.
    pub fn init(launch: &Launch, backend: Backend, timeout: Duration) -> Result<Self> {
        if !backend.compiled() {
            return Err(DistError::Unavailable(unavailable_message(backend)));
        }
        let cstr = |s: &str| CString::new(s).map_err(|_| DistError::Launch(format!("{s:?} has a NUL byte")));
        let (name, host, prefix) = (cstr(backend.name())?, cstr(&launch.master_addr)?, cstr(&launch.store_prefix())?);
        let mut ptr = std::ptr::null_mut();
        let ms = i64::try_from(timeout.as_millis()).unwrap_or(i64::MAX);
        // SAFETY: valid C strings; `ptr` is written only on success.
        let options = ffi::InitOptions {
            backend: name.as_ptr(),
            host: host.as_ptr(),
            port: i32::from(launch.master_port),
            rank: launch.rank as i32,
            world: launch.world_size as i32,
            is_server: i32::from(!launch.agent_store && launch.rank == 0),
            prefix: prefix.as_ptr(),
            timeout_ms: ms,
        };
        let err = unsafe { ffi::pd_init(&options, &mut ptr) };
        ffi::check("init", err)?;
        Ok(Self { ptr, rank: launch.rank, world_size: launch.world_size, backend, timeout })
    }

    pub fn rank(&self) -> usize {
        self.rank
    }

    pub fn world_size(&self) -> usize {
        self.world_size
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// All-reduces each tensor in place (all launched, then awaited). The tensors must be
    /// contiguous and on this rank's device.
    pub fn all_reduce(&self, tensors: &[Tensor], op: ReduceOp) -> Result<()> {
        let ptrs = ffi::tensor_ptrs(tensors);
        // SAFETY: the pointers are live tch tensors for the duration of the call.
        let err = unsafe { ffi::pd_all_reduce(self.ptr, ptrs.as_ptr(), ptrs.len(), op as i32) };
        ffi::check("all_reduce", err)
    }

    /// Broadcasts each tensor in place from `root`.
    pub fn broadcast(&self, tensors: &[Tensor], root: usize) -> Result<()> {
        let ptrs = ffi::tensor_ptrs(tensors);
        // SAFETY: as in `all_reduce`.
        let err = unsafe { ffi::pd_broadcast(self.ptr, ptrs.as_ptr(), ptrs.len(), root as i32) };
        ffi::check("broadcast", err)
    }

    pub fn barrier(&self) -> Result<()> {
        // SAFETY: a live group.
        ffi::check("barrier", unsafe { ffi::pd_barrier(self.ptr) })
    }

    /// Sums host values over ranks (metrics, flags) in float64.
    pub fn sum_f64(&self, values: &[f64], device: Device) -> Result<Vec<f64>> {
        let t = Tensor::from_slice(values).to_device(device);
        self.all_reduce(std::slice::from_ref(&t), ReduceOp::Sum)?;
        Vec::<f64>::try_from(t.to_device(Device::Cpu))
            .map_err(|e| DistError::Comm { op: "all_reduce", message: e.to_string() })
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        // SAFETY: created by pd_init, destroyed once.
        unsafe { ffi::pd_destroy(self.ptr) }
    }
}

fn unavailable_message(backend: Backend) -> String {
    match backend {
        Backend::Gloo => "this plandiff was built without Gloo (c10d's CPU backend): install gloo's headers \
            (`apt-get install libgloo-dev`) and rebuild (`make build`)"
            .into(),
        Backend::Nccl => "this plandiff was built without NCCL: it needs a CUDA PyTorch and the headers of \
            nvidia-nccl-cu13, nvidia-cuda-runtime, nvidia-cuda-crt==13.0.*, nvidia-cuda-cccl==13.0.* in its venv \
            (`make build` installs them); or train on CPU with --dist gloo"
            .into(),
    }
}

/// Makes CUDA device `index` current (NCCL binds its communicator to it). tch has no call
/// for it; the shim sets it from `LOCAL_RANK` before NCCL starts.
pub fn set_cuda_device(index: usize) -> Result<()> {
    // SAFETY: plain call.
    ffi::check("set_device", unsafe { ffi::pd_set_cuda_device(index as i32) })
}

/// bf16 autocast on `device`'s type while the guard lives (fp32 weights; matmuls and
/// attention in bf16, as `torch.autocast(device_type, dtype=torch.bfloat16)`).
pub struct Bf16Autocast {
    device_type: i32,
}

impl Bf16Autocast {
    pub fn enter(device: Device) -> Result<Self> {
        let device_type = i32::from(device.is_cuda());
        // SAFETY: plain call.
        ffi::check("autocast", unsafe { ffi::pd_autocast_bf16(device_type, 1) })?;
        Ok(Self { device_type })
    }
}

impl Drop for Bf16Autocast {
    fn drop(&mut self) {
        // SAFETY: paired with `enter`.
        let _ = ffi::check("autocast", unsafe { ffi::pd_autocast_bf16(self.device_type, 0) });
    }
}
