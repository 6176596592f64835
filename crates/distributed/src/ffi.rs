//! The shim's C ABI (`shim/dist.cpp`).

use crate::{DistError, Result};
use std::ffi::{c_char, c_void, CStr};
use tch::Tensor;
use torch_sys::C_tensor;

/// How `pd_init` joins a group (`struct PdInitOptions` of `shim/dist.cpp`, field for field).
#[repr(C)]
pub struct InitOptions {
    /// "gloo" or "nccl".
    pub backend: *const c_char,
    pub host: *const c_char,
    pub port: i32,
    pub rank: i32,
    pub world: i32,
    /// Non-zero: host the TCPStore (a launch without torchrun's agent).
    pub is_server: i32,
    pub prefix: *const c_char,
    pub timeout_ms: i64,
}

extern "C" {
    pub fn pd_free_error(e: *mut c_char);
    pub fn pd_has_gloo() -> i32;
    pub fn pd_has_nccl() -> i32;
    pub fn pd_autocast_bf16(device_type: i32, enabled: i32) -> *mut c_char;
    pub fn pd_set_cuda_device(index: i32) -> *mut c_char;
    pub fn pd_init(options: *const InitOptions, out: *mut *mut c_void) -> *mut c_char;
    pub fn pd_all_reduce(group: *mut c_void, ts: *const *const C_tensor, n: usize, op: i32) -> *mut c_char;
    pub fn pd_broadcast(group: *mut c_void, ts: *const *const C_tensor, n: usize, root: i32) -> *mut c_char;
    pub fn pd_barrier(group: *mut c_void) -> *mut c_char;
    pub fn pd_destroy(group: *mut c_void);
    pub fn pd_set_grad(param: *mut C_tensor, grad: *mut C_tensor) -> *mut c_char;
}

pub fn tensor_ptrs(tensors: &[Tensor]) -> Vec<*const C_tensor> {
    tensors.iter().map(Tensor::as_ptr).collect()
}

/// Turns the shim's error (a malloc'd first line, or NULL) into a result.
pub fn check(op: &'static str, err: *mut c_char) -> Result<()> {
    if err.is_null() {
        return Ok(());
    }
    // SAFETY: a NUL-terminated string from the shim, freed here once.
    let message = unsafe {
        let m = CStr::from_ptr(err).to_string_lossy().into_owned();
        pd_free_error(err);
        m
    };
    Err(DistError::Comm { op, message })
}
