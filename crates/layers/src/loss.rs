//! The output layer and its cross-entropy in one pass, chunk by chunk (the fused
//! linear-cross-entropy of Liger-Kernel and Apple's Cut Cross-Entropy, written with libtorch
//! ops): the `(N, V)` logits never exist whole, and the gradients of the hidden states and of
//! the output weights are computed in the forward pass, while each chunk's logits are hot in
//! the cache.
//!
//! For rows `h_i` of `(N, D)`, weights `W` `(V, D)` and targets `t_i` (`ignore_index` rows do
//! not count), `n` counted rows:
//! `loss = 1/n sum_i (logsumexp(W h_i) - (W h_i)[t_i])`,
//! `dloss/dh_i = (p_i - e_{t_i})^T W / n`, `dloss/dW = sum_i (p_i - e_{t_i}) h_i^T / n`,
//! with `p_i = softmax(W h_i)`. The result carries these gradients into autograd through a
//! surrogate `s = <h, dh> + <W, dW>` (`loss + s - detach(s)`: the value is the loss, the
//! gradient is `dh` and `dW`), so the rest of the graph (the hidden states' producers, a tied
//! embedding's other use) backpropagates as usual.
//!
//! Why: at the tiny decoder's shape (16 x 256 tokens, vocabulary 4096) the unfused path spends
//! more time in `log_softmax`, `nll_loss` and their backward passes over 67 MB of logits than
//! in the three output matmuls (docs/benchmarks.md).

use tch::{Kind, Tensor};

/// Logits per chunk: about 2M elements (8 MB in fp32) whatever the vocabulary.
const CHUNK_ELEMENTS: i64 = 1 << 21;

/// Mean cross-entropy of the logits `h W^T` against `targets`, ignoring targets equal to
/// `ignore_index` (like `cross_entropy_loss` with `Reduction::Mean`: NaN when no target
/// counts). The logits are computed in the matmuls' precision (bf16 under autocast) and
/// normalized in fp32.
///
/// # Shapes
/// - `h`: `(N, D)`, `w`: `(V, D)`, `targets`: `(N,)` int64; returns a 0-d fp32 tensor.
pub fn linear_cross_entropy(h: &Tensor, w: &Tensor, targets: &Tensor, ignore_index: i64) -> Tensor {
    let (safe, weights) = tch::no_grad(|| {
        let valid = targets.ne(ignore_index);
        let count = valid.sum(Kind::Float); // stays on the device: no host sync
        (targets.masked_fill(&valid.logical_not(), 0), valid.to_kind(Kind::Float) / count)
    });
    weighted_linear_cross_entropy(h, w, &safe, &weights)
}

/// `sum_i weights_i CE(h_i W^T, targets_i)`: [`linear_cross_entropy`] with a weight per row
/// (0 for a row that does not count; its target must still be a valid id).
///
/// # Shapes
/// - `h`: `(N, D)`, `w`: `(V, D)`, `targets`: `(N,)` int64 in `0..V`, `weights`: `(N,)` fp32;
///   returns a 0-d fp32 tensor.
pub fn weighted_linear_cross_entropy(h: &Tensor, w: &Tensor, targets: &Tensor, weights: &Tensor) -> Tensor {
    let (n, d) = h.size2().expect("hidden states must be (N, D)");
    let v = w.size2().expect("output weights must be (V, D)").0;
    let chunk = (CHUNK_ELEMENTS / v.max(1)).max(1);
    let (loss, dh, dw) = tch::no_grad(|| {
        let (hd, wd) = (h.detach(), w.detach());
        let targets = targets.unsqueeze(1); // (N, 1)
        let weights = weights.to_kind(Kind::Float);
        let dh = Tensor::empty([n, d], (h.kind(), h.device()));
        let mut dw = Tensor::zeros([v, d], (Kind::Float, w.device()));
        let mut loss = Tensor::zeros([], (Kind::Float, h.device()));
        let minus_one = Tensor::full([chunk, 1], -1.0, (Kind::Float, h.device()));
        let mut start = 0;
        while start < n {
            let c = chunk.min(n - start);
            let hc = hd.narrow(0, start, c);
            let mut logits = hc.matmul(&wd.tr()).to_kind(Kind::Float); // (c, V), fp32
            let t = targets.narrow(0, start, c);
            let wc = weights.narrow(0, start, c);
            let lse = logits.logsumexp([-1], true); // (c, 1)
            let picked = logits.gather(1, &t, false); // (c, 1)
            loss += ((lse.squeeze_dim(1) - picked.squeeze_dim(1)) * &wc).sum(Kind::Float);
            // The softmax minus the target's one-hot, times the row's weight, in the logits' storage.
            let mut g = logits.g_sub_(&lse).exp_();
            let _ = g.scatter_add_(1, &t, &minus_one.narrow(0, 0, c));
            let g = g.g_mul_(&wc.unsqueeze(1));
            let gk = g.to_kind(hd.kind());
            dh.narrow(0, start, c).copy_(&gk.matmul(&wd.to_kind(gk.kind())));
            let _ = dw.g_add_(&gk.tr().matmul(&hc).to_kind(Kind::Float));
            start += c;
        }
        (loss, dh, dw.to_kind(w.kind()))
    });
    let s = (h * &dh).sum(Kind::Float) + (w * &dw).sum(Kind::Float);
    &s - s.detach() + loss
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Reduction};

    /// Value and both gradients equal the unfused `cross_entropy_loss` (mean, ignore_index),
    /// over several chunks with a ragged last one and ignored rows, with `W` also used
    /// elsewhere in the graph (a tied embedding): its gradients add up.
    #[test]
    fn equals_unfused_cross_entropy_and_its_gradients() {
        tch::manual_seed(0);
        let (n, d, v) = (1500i64, 16i64, 4096i64); // chunk = 512 rows: 3 chunks, the last ragged
        let opts = (Kind::Float, Device::Cpu);
        let h0 = Tensor::randn([n, d], opts) * 2.0;
        let w0 = Tensor::randn([v, d], opts);
        let targets = Tensor::randint(v, [n], (Kind::Int64, Device::Cpu));
        let _ = targets.narrow(0, 100, 50).fill_(-100);
        let run = |fused: bool| {
            let h = h0.copy().set_requires_grad(true);
            let w = w0.copy().set_requires_grad(true);
            let x = &h * 1.5; // something before the head
            let loss = if fused {
                linear_cross_entropy(&x, &w, &targets, -100)
            } else {
                x.matmul(&w.tr()).cross_entropy_loss::<Tensor>(&targets, None, Reduction::Mean, -100, 0.0)
            };
            let total = &loss + w.narrow(0, 0, 3).sum(Kind::Float); // another use of W
            total.backward();
            (loss.double_value(&[]), h.grad(), w.grad())
        };
        let (l1, gh1, gw1) = run(true);
        let (l0, gh0, gw0) = run(false);
        assert!((l1 - l0).abs() < 1e-5 * l0.abs(), "loss {l1} vs {l0}");
        let rel = |a: &Tensor, b: &Tensor| ((a - b).abs().max() / b.abs().max()).double_value(&[]);
        assert!(rel(&gh1, &gh0) < 1e-5, "dh off by {}", rel(&gh1, &gh0));
        assert!(rel(&gw1, &gw0) < 1e-5, "dW off by {}", rel(&gw1, &gw0));
        assert!(gh1.narrow(0, 100, 50).abs().max().double_value(&[]) == 0.0, "ignored rows get no gradient");
        // The test would notice a wrong target: shift them and the loss changes.
        let shifted = (&targets + 1).remainder(v).masked_fill(&targets.eq(-100), -100);
        let l2 = linear_cross_entropy(&h0, &w0, &shifted, -100).double_value(&[]);
        assert!((l2 - linear_cross_entropy(&h0, &w0, &targets, -100).double_value(&[])).abs() > 1e-3);
    }

    #[test]
    fn no_counted_target_gives_nan_like_the_unfused_loss() {
        let h = Tensor::randn([4, 8], (Kind::Float, Device::Cpu));
        let w = Tensor::randn([10, 8], (Kind::Float, Device::Cpu));
        let t = Tensor::from_slice(&[-100i64; 4]);
        assert!(linear_cross_entropy(&h, &w, &t, -100).double_value(&[]).is_nan());
    }
}
