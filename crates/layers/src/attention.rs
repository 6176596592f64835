//! One multi-head attention for self- and cross-attention.
//!
//! Self-attention takes keys and values from the same sequence as the queries and may append
//! them to a [`KvCache`]; cross-attention takes them from a context (the plan) whose
//! projections are computed once with [`Attention::project_kv`] and reused at every step.
//! The kernel is `scaled_dot_product_attention`, which picks flash/efficient kernels on CUDA.

use crate::{InitStd, Rotary};
use tch::{nn, nn::Module, Tensor};

/// Which keys each query may see.
#[derive(Debug, Clone, Copy)]
pub enum AttnMask<'a> {
    /// Every query sees every key (bidirectional, or one new token against its cache).
    None,
    /// Query `i` sees keys `0..=i`; only valid when queries and keys have the same length.
    Causal,
    /// Boolean mask broadcastable to `(B, H, Tq, Tk)`; `true` means "may attend". A float
    /// tensor is added to the scores instead (a bias, `-inf` where a key is hidden).
    Custom(&'a Tensor),
}

/// Projected keys and values, `(B, H, Tk, Dh)` each.
#[derive(Debug)]
pub struct KvPair {
    pub k: Tensor,
    pub v: Tensor,
}

impl KvPair {
    pub fn shallow_clone(&self) -> Self {
        Self { k: self.k.shallow_clone(), v: self.v.shallow_clone() }
    }
}

/// Cross-attention to a fixed context with the query and output projections folded into
/// the context once (decode time): for each head `h`,
/// `scores_h = (x W_q,h^T + b_q,h) K_h^T / sqrt(Dh) = x A_h + c_h` with `A_h = W_q,h^T K_h^T / sqrt(Dh)`,
/// and `out = sum_h softmax(scores_h) (V_h W_o,h^T) + b_o = P U + b_o`. Per token that is two
/// small batched matmuls and a softmax instead of two `D x D` projections and an attention call.
#[derive(Debug)]
pub struct FoldedCross {
    /// `(B, D, H*S)`
    a: Tensor,
    /// `(B, 1, H*S)`
    c: Tensor,
    /// `(B, H*S, D)`
    u: Tensor,
    /// `(B, 1, D)`
    b_o: Tensor,
    heads: i64,
    slots: i64,
}

impl FoldedCross {
    /// Number of context slots.
    pub fn slots(&self) -> i64 {
        self.slots
    }

    /// Batch row `r` becomes row `idx[r]` (`idx` int64 on the context's device).
    pub fn select_rows(&mut self, idx: &Tensor) {
        for t in [&mut self.a, &mut self.c, &mut self.u, &mut self.b_o] {
            *t = t.index_select(0, idx);
        }
    }
}

/// Self-attention cache: keys and values of every position seen so far.
///
/// Keys and values live in one buffer `(2, B, H, cap, Dh)` with spare capacity along the time
/// axis (doubled when full), so appending one position copies one position instead of the
/// whole prefix (one copy for keys and values together when they come stacked); the attention
/// reads a narrowed view. This keeps the per-token cost nearly flat in position. The cache also
/// holds the layer's query, key and value projections fused into one (built at its first step:
/// the weights are fixed while a cache lives), so a decoding step projects with one matmul.
#[derive(Debug, Default)]
pub struct KvCache {
    buf: Option<Tensor>,
    len: i64,
    qkv: Option<(Tensor, Option<Tensor>)>,
    /// Set by [`KvCache::overwrite_from`]: new positions replace the cached ones from here on
    /// instead of being appended.
    overwrite: Option<i64>,
}

impl KvCache {
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of cached positions.
    pub fn len(&self) -> i64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Batch row `r` becomes a copy of row `idx[r]` (int64 on the cache's device): a batch of
    /// drafts continues from the kept ones.
    pub fn select_rows(&mut self, idx: &Tensor) {
        if let Some(buf) = &self.buf {
            self.buf = Some(buf.index_select(1, idx));
        }
    }

    /// Forgets the `n` cached positions from `from` on (a sliding window's oldest sentence);
    /// the positions after them move down, in place.
    pub fn remove(&mut self, from: i64, n: i64) {
        let n = n.min(self.len - from).max(0);
        if n == 0 {
            return;
        }
        if let Some(buf) = &self.buf {
            let keep = self.len - from - n;
            let tail = buf.narrow(3, from + n, keep).copy(); // the ranges overlap: copy first
            buf.narrow(3, from, keep).copy_(&tail);
        }
        self.len -= n;
    }

    /// From now on, the keys and values of `t` new positions replace cached positions
    /// `at..at + t` (which must be cached) instead of being appended, and queries see all the
    /// cached positions: a bidirectional model's approximate block cache (Fast-dLLM's
    /// DualCache), where the positions being denoised are recomputed and the rest are read
    /// from the last full pass. `None` appends again.
    pub fn overwrite_from(&mut self, at: Option<i64>) {
        self.overwrite = at;
    }

    /// Writes `kv` (`(2, B, H, t, Dh)`) over positions `at..at + t` when overwriting.
    fn overwrite(&mut self, kv: &Tensor) -> Option<KvPair> {
        let (at, buf) = (self.overwrite?, self.buf.as_ref()?);
        let t = kv.size()[3];
        assert!(
            at >= 0 && at + t <= self.len,
            "overwrite of positions {at}..{} beyond the {} cached",
            at + t,
            self.len
        );
        buf.narrow(3, at, t).copy_(kv);
        Some(Self::view(buf, self.len))
    }

    fn capacity(&self) -> i64 {
        self.buf.as_ref().map_or(0, |b| b.size()[3])
    }

    /// The buffer, with room for `t` more positions like `like` (`(B, H, t, Dh)`).
    fn reserve(&mut self, t: i64, like: &Tensor) -> Tensor {
        let need = self.len + t;
        match &self.buf {
            Some(buf) if need <= buf.size()[3] => return buf.shallow_clone(),
            _ => {}
        }
        let cap = need.max(2 * self.capacity()).max(64);
        let mut shape = vec![2];
        shape.extend(like.size());
        shape[3] = cap;
        let grown = like.new_empty(&shape, (like.kind(), like.device()));
        if let Some(old) = &self.buf {
            grown.narrow(3, 0, self.len).copy_(&old.narrow(3, 0, self.len));
        }
        self.buf = Some(grown.shallow_clone());
        grown
    }

    /// Appends the new positions and returns keys/values of the whole sequence so far.
    fn append(&mut self, new: KvPair) -> KvPair {
        if self.overwrite.is_some() {
            if let Some(kv) = self.overwrite(&Tensor::stack(&[&new.k, &new.v], 0)) {
                return kv;
            }
        }
        let t = new.k.size()[2];
        let buf = self.reserve(t, &new.k);
        buf.get(0).narrow(2, self.len, t).copy_(&new.k); // (B, H, t, Dh) into (B, H, cap, Dh)
        buf.get(1).narrow(2, self.len, t).copy_(&new.v);
        self.len += t;
        Self::view(&buf, self.len)
    }

    /// [`KvCache::append`] of keys and values stacked `(2, B, H, t, Dh)`: one copy.
    fn append_stacked(&mut self, kv: &Tensor) -> KvPair {
        if let Some(kv) = self.overwrite(kv) {
            return kv;
        }
        let t = kv.size()[3];
        let buf = self.reserve(t, &kv.get(0));
        buf.narrow(3, self.len, t).copy_(kv);
        self.len += t;
        Self::view(&buf, self.len)
    }

    /// Keys and values of the first `len` positions of `buf`.
    fn view(buf: &Tensor, len: i64) -> KvPair {
        let all = buf.narrow(3, 0, len);
        KvPair { k: all.get(0), v: all.get(1) }
    }
}

#[derive(Debug)]
pub struct Attention {
    q_proj: nn::Linear,
    /// Keys and values projected together: `(d_context -> 2 * d_model)`.
    kv_proj: nn::Linear,
    out_proj: nn::Linear,
    n_heads: i64,
    head_dim: i64,
    dropout: f64,
}

impl Attention {
    /// `d_context` is the width of the key/value input: `d_model` for self-attention, the
    /// plan's width for cross-attention.
    pub fn new(p: nn::Path, d_model: i64, d_context: i64, n_heads: i64, dropout: f64, init: InitStd) -> Self {
        assert!(d_model % n_heads == 0, "d_model must be divisible by n_heads (checked by config validation)");
        Self {
            q_proj: nn::linear(&p / "q_proj", d_model, d_model, init.linear(init.proj)),
            kv_proj: nn::linear(&p / "kv_proj", d_context, 2 * d_model, init.linear(init.proj)),
            out_proj: nn::linear(&p / "out_proj", d_model, d_model, init.linear(init.resid)),
            n_heads,
            head_dim: d_model / n_heads,
            dropout,
        }
    }

    /// `(B, T, H*Dh) -> (B, H, T, Dh)`
    fn split_heads(&self, x: &Tensor) -> Tensor {
        let (b, t, _) = x.size3().expect("3-d input");
        x.view([b, t, self.n_heads, self.head_dim]).transpose(1, 2) // (B, H, T, Dh)
    }

    /// Projects a context to keys and values; cross-attention calls this once per plan.
    ///
    /// # Shapes
    /// - `context`: `(B, Tk, d_context)` -> `KvPair` of `(B, H, Tk, Dh)`
    pub fn project_kv(&self, context: &Tensor) -> KvPair {
        let kv = self.kv_proj.forward(context); // (B, Tk, 2 * D)
        let parts = kv.chunk(2, -1);
        KvPair { k: self.split_heads(&parts[0]), v: self.split_heads(&parts[1]) }
    }

    /// Attention of `x` over already projected keys/values.
    ///
    /// # Shapes
    /// - `x`: `(B, Tq, D)`, `kv`: `(B, H, Tk, Dh)`, returns `(B, Tq, D)`
    pub fn attend(&self, x: &Tensor, kv: &KvPair, mask: AttnMask, train: bool) -> Tensor {
        let q = self.split_heads(&self.q_proj.forward(x)); // (B, H, Tq, Dh)
        self.attend_q(x, q, kv, mask, train)
    }

    fn attend_q(&self, x: &Tensor, q: Tensor, kv: &KvPair, mask: AttnMask, train: bool) -> Tensor {
        let (b, t, d) = x.size3().expect("3-d input");
        let dropout = if train { self.dropout } else { 0.0 };
        let (m, causal) = match mask {
            AttnMask::None => (None, false),
            AttnMask::Causal => (None, true),
            AttnMask::Custom(m) => (Some(m), false),
        };
        let y = Tensor::scaled_dot_product_attention(&q, &kv.k, &kv.v, m, dropout, causal, None, false);
        let y = y.transpose(1, 2).contiguous().view([b, t, d]); // (B, Tq, D)
        self.out_proj.forward(&y)
    }

    /// Folds the query and output projections into a fixed context's keys and values.
    ///
    /// # Shapes
    /// - `kv`: `(B, H, S, Dh)` from [`Attention::project_kv`]
    pub fn fold_context(&self, kv: &KvPair) -> FoldedCross {
        let (b, h, s, dh) = kv.k.size4().expect("(B, H, S, Dh) keys");
        let d = h * dh;
        let scale = 1.0 / (dh as f64).sqrt();
        let kt = kv.k.transpose(2, 3); // (B, H, Dh, S)
        let wq = self.q_proj.ws.view([h, dh, d]); // (H, Dh, D): rows of head h
        let a = wq.transpose(1, 2).unsqueeze(0).matmul(&kt); // (B, H, D, S)
        let a = a.permute([0, 2, 1, 3]).reshape([b, d, h * s]) * scale; // (B, D, H*S)
        let c = match &self.q_proj.bs {
            Some(bq) => bq.view([1, h, 1, dh]).matmul(&kt).reshape([b, 1, h * s]) * scale, // (B, 1, H*S)
            None => Tensor::zeros([b, 1, h * s], (kv.k.kind(), kv.k.device())),
        };
        let wo = self.out_proj.ws.view([d, h, dh]).permute([1, 2, 0]); // (H, Dh, D): columns of head h
        let u = kv.v.matmul(&wo.unsqueeze(0)).reshape([b, h * s, d]); // (B, H*S, D)
        let b_o = match &self.out_proj.bs {
            Some(bo) => bo.view([1, 1, d]).expand([b, 1, d], false).contiguous(),
            None => Tensor::zeros([b, 1, d], (kv.v.kind(), kv.v.device())),
        };
        FoldedCross { a, c, u, b_o, heads: h, slots: s }
    }

    /// Cross-attention through a [`FoldedCross`]; equals [`Attention::attend`] with the
    /// context's keys and values (no mask, no dropout).
    ///
    /// # Shapes
    /// - `x`: `(B, T, D)` -> `(B, T, D)`
    ///   `bias`: `(B, T, H*S)` added to the scores (relative slot offsets, `-inf` hides a slot)
    pub fn attend_folded(&self, x: &Tensor, f: &FoldedCross, bias: Option<&Tensor>) -> Tensor {
        let (b, t, _) = x.size3().expect("3-d input");
        let scores = f.c.baddbmm(x, &f.a, 1.0, 1.0); // (B, T, H*S)
        let scores = match bias {
            Some(bias) => scores + bias,
            None => scores,
        };
        let p = scores.view([b, t, f.heads, f.slots]).softmax(-1, scores.kind()).view([b, t, f.heads * f.slots]);
        f.b_o.baddbmm(&p, &f.u, 1.0, 1.0) // (B, T, D)
    }

    /// Self-attention; with a cache, the new keys/values are appended and queries see the
    /// whole cached prefix (the caller builds a mask when `T > 1` and the cache is not empty).
    /// With `rope`, queries and the new keys are rotated by their positions (the cache holds
    /// rotated keys). With a cache, the three projections run as one (the cache's fused
    /// weights) and the new keys and values are written into it.
    pub fn forward_self(
        &self,
        x: &Tensor,
        cache: Option<&mut KvCache>,
        mask: AttnMask,
        train: bool,
        rope: Option<&Rotary>,
    ) -> Tensor {
        let Some(cache) = cache else {
            let kv = self.project_kv(x);
            let mut q = self.split_heads(&self.q_proj.forward(x)); // (B, H, T, Dh)
            let kv = match rope {
                Some(r) => {
                    q = r.apply(&q);
                    KvPair { k: r.apply(&kv.k), v: kv.v }
                }
                None => kv,
            };
            return self.attend_q(x, q, &kv, mask, train);
        };
        let (w, b) = cache.qkv.get_or_insert_with(|| self.fused_qkv());
        let (bsz, t, _) = x.size3().expect("3-d input");
        let qkv = x.linear(w, b.as_ref()).view([bsz, t, 3, self.n_heads, self.head_dim]).permute([2, 0, 3, 1, 4]); // (3, B, H, T, Dh)
        let q = qkv.get(0);
        let (q, kv) = match rope {
            Some(r) => (r.apply(&q), cache.append(KvPair { k: r.apply(&qkv.get(1)), v: qkv.get(2) })),
            None => (q, cache.append_stacked(&qkv.narrow(0, 1, 2))),
        };
        self.attend_q(x, q, &kv, mask, train)
    }

    /// The query, key and value projections as one `(3 D, D)` weight and its bias
    /// (self-attention: keys and values read the same width as queries).
    fn fused_qkv(&self) -> (Tensor, Option<Tensor>) {
        let w = Tensor::cat(&[&self.q_proj.ws, &self.kv_proj.ws], 0).detach();
        let b = match (&self.q_proj.bs, &self.kv_proj.bs) {
            (Some(q), Some(kv)) => Some(Tensor::cat(&[q, kv], 0).detach()),
            _ => None,
        };
        (w, b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn cached_self_attention_equals_full_causal() {
        tch::manual_seed(0);
        let vs = nn::VarStore::new(Device::Cpu);
        let attn = Attention::new(vs.root() / "attn", 32, 32, 4, 0.0, InitStd::default());
        let x = Tensor::randn([2, 7, 32], (Kind::Float, Device::Cpu));
        let full = attn.forward_self(&x, None, AttnMask::Causal, false, None);
        let mut cache = KvCache::new();
        let mut steps = Vec::new();
        for i in 0..7 {
            let xi = x.narrow(1, i, 1);
            steps.push(attn.forward_self(&xi, Some(&mut cache), AttnMask::None, false, None));
        }
        let inc = Tensor::cat(&steps, 1);
        let diff = (full - inc).abs().max().double_value(&[]);
        assert!(diff < 1e-5, "max abs diff {diff}");
        assert_eq!(cache.len(), 7);
    }

    /// Overwrite mode: a window's new keys and values replace the cached ones in place, the
    /// length stays, and the window's queries see every position: with the same input, the
    /// window's output equals the full bidirectional pass's rows; with a changed window, it
    /// equals a full pass over the cached rest and the new window.
    #[test]
    fn overwriting_a_window_equals_full_attention_over_the_mixed_keys() {
        tch::manual_seed(1);
        let vs = nn::VarStore::new(Device::Cpu);
        let attn = Attention::new(vs.root() / "attn", 16, 16, 2, 0.0, InitStd::default());
        let x = Tensor::randn([1, 6, 16], (Kind::Float, Device::Cpu));
        let full = attn.forward_self(&x, None, AttnMask::None, false, None);
        let mut cache = KvCache::new();
        let _ = attn.forward_self(&x, Some(&mut cache), AttnMask::None, false, None);
        cache.overwrite_from(Some(2));
        let w = attn.forward_self(&x.narrow(1, 2, 3), Some(&mut cache), AttnMask::None, false, None);
        assert_eq!(cache.len(), 6, "overwriting keeps the length");
        assert!((&w - full.narrow(1, 2, 3)).abs().max().double_value(&[]) < 1e-5);
        // A new window: the same as attention over the old keys outside it and the new inside.
        let x2 = x.copy();
        x2.narrow(1, 2, 3).copy_(&Tensor::randn([1, 3, 16], (Kind::Float, Device::Cpu)));
        let w2 = attn.forward_self(&x2.narrow(1, 2, 3), Some(&mut cache), AttnMask::None, false, None);
        let want = attn.forward_self(&x2, None, AttnMask::None, false, None).narrow(1, 2, 3);
        assert!((&w2 - want).abs().max().double_value(&[]) < 1e-5, "keys 0..2 and 5 are unchanged inputs");
        assert_eq!(cache.len(), 6);
    }

    #[test]
    fn cross_attention_uses_context_width() {
        let vs = nn::VarStore::new(Device::Cpu);
        let attn = Attention::new(vs.root() / "cross", 16, 8, 2, 0.0, InitStd::default());
        let x = Tensor::randn([3, 5, 16], (Kind::Float, Device::Cpu));
        let ctx = Tensor::randn([3, 4, 8], (Kind::Float, Device::Cpu));
        let kv = attn.project_kv(&ctx);
        assert_eq!(kv.k.size(), vec![3, 2, 4, 8]);
        let y = attn.attend(&x, &kv, AttnMask::None, false);
        assert_eq!(y.size(), vec![3, 5, 16]);
        // Output depends on the context: a different plan gives a different result.
        // The folded form gives the same output.
        let folded = attn.attend_folded(&x, &attn.fold_context(&kv), None);
        assert!((&y - folded).abs().max().double_value(&[]) < 1e-5);
        let kv2 = attn.project_kv(&(ctx + 1.0));
        let y2 = attn.attend(&x, &kv2, AttnMask::None, false);
        assert!((y - y2).abs().max().double_value(&[]) > 1e-4);
    }
}
