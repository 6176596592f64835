//! Operator counts through libtorch's RecordFunction hook (`shim/ops.cpp`, the hook PyTorch's
//! profiler uses): how many operators a piece of work dispatches, for benchmarks (ops per
//! decoded token). Counting is process-wide; [`OpCounter`] stops it when dropped.

use std::sync::Mutex;

extern "C" {
    fn pd_ops_start(by_name: i32);
    fn pd_ops_names(buf: *mut std::ffi::c_char, cap: usize) -> usize;
    fn pd_ops_read(all: *mut i64, top: *mut i64);
    fn pd_ops_stop();
}

/// Operators dispatched: every one, and the top-level ones (not called from inside another).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OpCounts {
    pub all: i64,
    pub top: i64,
}

static COUNTING: Mutex<()> = Mutex::new(());

/// Counts every operator dispatched (on any thread) while it lives; one at a time.
pub struct OpCounter {
    _only: std::sync::MutexGuard<'static, ()>,
}

impl OpCounter {
    /// Starts counting from zero (waits while another counter lives).
    pub fn start() -> Self {
        Self::start_with(false)
    }

    /// [`OpCounter::start`], also counting the top-level operators by name
    /// ([`OpCounter::by_name`]; slower).
    pub fn start_with(by_name: bool) -> Self {
        let only = COUNTING.lock().unwrap_or_else(|e| e.into_inner());
        // SAFETY: installs a callback once and zeroes the counts.
        unsafe { pd_ops_start(i32::from(by_name)) };
        Self { _only: only }
    }

    /// The top-level operators by name, most frequent first (empty unless started with
    /// `by_name`).
    pub fn by_name(&self) -> Vec<(String, i64)> {
        // SAFETY: a null buffer of capacity 0 asks for the size only.
        let need = unsafe { pd_ops_names(std::ptr::null_mut(), 0) };
        let mut buf = vec![0u8; need + 1024];
        // SAFETY: `buf` holds `buf.len()` bytes; the shim writes at most that many.
        unsafe { pd_ops_names(buf.as_mut_ptr().cast(), buf.len()) };
        let text = std::ffi::CStr::from_bytes_until_nul(&buf).map(|c| c.to_string_lossy().into_owned());
        let mut v: Vec<(String, i64)> = text
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.rsplit_once(' ').and_then(|(n, c)| Some((n.to_string(), c.parse().ok()?))))
            .collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        v
    }

    /// Counts since the start.
    pub fn read(&self) -> OpCounts {
        let (mut all, mut top) = (0i64, 0i64);
        // SAFETY: both pointers are valid for one write each.
        unsafe { pd_ops_read(&mut all, &mut top) };
        OpCounts { all, top }
    }
}

impl Drop for OpCounter {
    fn drop(&mut self) {
        // SAFETY: removes the callback installed by `start`, if still there.
        unsafe { pd_ops_stop() };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind, Tensor};

    #[test]
    fn counts_the_operators_dispatched_while_it_lives() {
        let x = Tensor::ones([4, 4], (Kind::Float, Device::Cpu));
        let c = OpCounter::start();
        let base = c.read();
        let _y = (&x + 1.0).matmul(&x).relu();
        let n = c.read();
        assert!(n.top - base.top >= 3, "add, matmul, relu at least: {n:?} from {base:?}");
        assert!(n.all >= n.top);
        assert!(c.by_name().is_empty(), "names only when asked for");
        drop(c);
        let c = OpCounter::start_with(true);
        let _y = (&x + 1.0).relu();
        let names = c.by_name();
        assert!(names.iter().any(|(n, k)| n == "aten::relu" && *k >= 1), "{names:?}");
        assert!(c.read().all < n.all, "a new counter starts from zero: {:?}", c.read());
    }
}
