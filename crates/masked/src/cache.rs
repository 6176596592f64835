//! Fast-dLLM's approximate block cache (Wu et al. 2025, "DualCache"): in semi-autoregressive
//! decoding, the positions outside the current block change only when a block is finished, so
//! the first step of a block reads the whole sequence once and keeps every layer's keys and
//! values; each later step of the block runs only a window over the block and recomputes its
//! keys and values, while the prefix and the still-masked suffix are read from the cache.
//! The logits are those of a full forward at the block's first step and approximate after it
//! (the cached positions do not see the block's newly committed tokens); a step costs a window
//! of `block_length + 1` positions instead of the whole sequence.
//!
//! The full pass can also be taken every `refresh` blocks only (dKV-Cache's delayed refresh,
//! Ma et al. 2025): between full passes, a block's first step runs its window from the previous
//! block's start, so the tokens that block committed last are read with their final values; the
//! rest of the cache is as old as the last full pass. At this model's size a full pass over 128
//! positions costs eight windowed steps, so with blocks of 4 it is most of the time.

use crate::sampler::Denoiser;
use crate::MaskedLm;
use plandiff_layers::KvCache;
use tch::Tensor;

/// A [`Denoiser`] over a [`MaskedLm`] with the block cache: build one per sampling run.
pub struct BlockCache<'m> {
    model: &'m MaskedLm,
    caches: Vec<KvCache>,
    /// Blocks between full passes (1: every block's first step is one).
    refresh: usize,
    /// Blocks begun since the last full pass, and the current block's first position.
    since: usize,
    current: Option<usize>,
}

impl<'m> BlockCache<'m> {
    /// A full pass at every block's first step (Fast-dLLM).
    pub fn new(model: &'m MaskedLm) -> Self {
        Self::every(model, 1)
    }

    /// A full pass at the first step of every `refresh`-th block (at least 1).
    pub fn every(model: &'m MaskedLm, refresh: usize) -> Self {
        Self { model, caches: Vec::new(), refresh: refresh.max(1), since: 0, current: None }
    }

    /// Reads all of `x`, keeping each layer's keys and values; logits `(B, n, V)` at `at`.
    fn full(&mut self, x: &Tensor, at: &Tensor) -> Tensor {
        self.caches = (0..self.model.n_layers()).map(|_| KvCache::new()).collect();
        self.since = 1;
        self.model.logits_at(x, at, Some(&mut self.caches))
    }

    /// Runs positions `lo..=last` of `x` against the cache, their keys and values recomputed;
    /// logits at `block` (each `> lo`).
    fn window(&mut self, x: &Tensor, lo: usize, last: usize, block: &[usize]) -> Tensor {
        let lo = lo as i64;
        let window = x.narrow(1, lo, last as i64 - lo + 1);
        for c in &mut self.caches {
            c.overwrite_from(Some(lo));
        }
        let h = self.model.hidden(&window, lo, Some(&mut self.caches), false); // (B, w, D)
        let rows: Vec<i64> = block.iter().map(|&i| i as i64 - 1 - lo).collect();
        self.model.head(&h.index_select(1, &Tensor::from_slice(&rows).to_device(x.device())))
    }
}

/// The uncached [`Denoiser`]: a full forward every step, the output head on the block only.
impl Denoiser for &MaskedLm {
    fn block_logits(&mut self, x: &Tensor, _block: &[usize], at: &Tensor, _fresh: bool) -> Tensor {
        self.logits_at(x, at, None)
    }
}

impl Denoiser for BlockCache<'_> {
    fn block_logits(&mut self, x: &Tensor, block: &[usize], at: &Tensor, fresh: bool) -> Tensor {
        let (Some(&first), Some(&last)) = (block.first(), block.last()) else {
            return self.full(x, at);
        };
        let previous = if fresh { self.current.replace(first) } else { self.current };
        if first == 0 || self.caches.is_empty() {
            return self.full(x, at);
        }
        // Position i's logits come from the hidden state at i - 1: the window runs from the
        // state before the block's first position through its last position (whose keys and
        // values the states before it read).
        if !fresh {
            return self.window(x, first - 1, last, block);
        }
        match previous.filter(|&p| p > 0 && p < first && self.since < self.refresh) {
            Some(p) => {
                self.since += 1;
                self.window(x, p - 1, last, block)
            }
            None => self.full(x, at),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::tests::tiny;
    use tch::{nn, Device, Kind};

    /// At a block's first step the cache gives a full forward's logits exactly; at a later
    /// step, with nothing outside the block changed since, it gives them too (the cached keys
    /// and values are those a full forward would compute, up to the block's own, which are
    /// recomputed); once the block's tokens change, the approximation shows only in how the
    /// cached positions read them.
    #[test]
    fn block_cache_matches_full_forward_where_it_must() {
        tch::manual_seed(0);
        let vs = nn::VarStore::new(Device::Cpu);
        let m = MaskedLm::new(vs.root(), &tiny());
        let x = Tensor::from_slice(&[1i64, 5, 6, 30, 30, 30, 30, 30, 30, 30]).view([1, 10]);
        let block = [3usize, 4, 5];
        let at = Tensor::from_slice(&[3i64, 4, 5]);
        let mut cache = BlockCache::new(&m);
        let full = |x: &Tensor| m.forward(x, false).index_select(1, &at);
        let a = cache.block_logits(&x, &block, &at, true);
        assert!((&a - full(&x)).abs().max().double_value(&[]) < 1e-5);
        let b = cache.block_logits(&x, &block, &at, false);
        assert!((&b - full(&x)).abs().max().double_value(&[]) < 1e-5, "same input, windowed step");
        // Commit a token in the block: the window's own states are exact for what they read,
        // the change is seen by the block's positions, not (yet) by the cached suffix.
        let x2 = x.index_copy(1, &Tensor::from_slice(&[4i64]), &Tensor::from_slice(&[9i64]).view([1, 1]));
        let c = cache.block_logits(&x2, &block, &at, false);
        assert_eq!(c.size(), vec![1, 3, 30]);
        assert!((&c - &b).abs().max().double_value(&[]) > 1e-6, "the block sees its new token");
        let d = (&c - full(&x2)).abs().max().double_value(&[]);
        assert!(d < 0.5, "the approximation stays close to the full forward: {d}");
        // A fresh step rebuilds the cache: exact again.
        let e = cache.block_logits(&x2, &block, &at, true);
        assert!((&e - full(&x2)).abs().max().double_value(&[]) < 1e-5);
        assert_eq!(e.kind(), Kind::Float);
    }

    fn at(p: &[usize]) -> Tensor {
        Tensor::from_slice(&p.iter().map(|&i| i as i64).collect::<Vec<_>>())
    }

    /// With a full pass every 3 blocks: the second block's first step re-reads the first block
    /// (whose tokens were committed since the full pass), which brings it closer to the full
    /// forward than a window over its own block alone; the fourth block's first step is a full
    /// pass again, exact.
    #[test]
    fn delayed_refresh_rereads_the_previous_block_and_refreshes_on_schedule() {
        tch::manual_seed(1);
        let vs = nn::VarStore::new(Device::Cpu);
        let m = MaskedLm::new(vs.root(), &tiny());
        let x = Tensor::from_slice(&[1i64, 5, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30]).view([1, 14]);
        let blocks: [&[usize]; 4] = [&[2, 3, 4], &[5, 6, 7], &[8, 9, 10], &[11, 12, 13]];
        let commit = |x: &Tensor, b: &[usize], t: i64| {
            x.index_copy(1, &at(b), &Tensor::full([1, 3], t, (tch::Kind::Int64, Device::Cpu)))
        };
        let full = |x: &Tensor, b: &[usize]| m.forward(x, false).index_select(1, &at(b));
        let dist = |a: &Tensor, b: &Tensor| (a - b).abs().max().double_value(&[]);
        let (mut rereads, mut own) = (BlockCache::every(&m, 3), BlockCache::every(&m, 3));
        for c in [&mut rereads, &mut own] {
            let first = c.block_logits(&x, blocks[0], &at(blocks[0]), true);
            assert!(dist(&first, &full(&x, blocks[0])) < 1e-5, "the first block's first step is a full pass");
        }
        let x2 = commit(&x, blocks[0], 7);
        let a = rereads.block_logits(&x2, blocks[1], &at(blocks[1]), true);
        let b = own.block_logits(&x2, blocks[1], &at(blocks[1]), false);
        let f = full(&x2, blocks[1]);
        assert!(dist(&a, &b) > 1e-6, "the previous block is read again");
        assert!(dist(&a, &f) < dist(&b, &f), "{} vs {}", dist(&a, &f), dist(&b, &f));
        let x3 = commit(&x2, blocks[1], 9);
        let c = rereads.block_logits(&x3, blocks[2], &at(blocks[2]), true);
        assert!(dist(&c, &full(&x3, blocks[2])) > 1e-6, "the third block is still between full passes");
        let x4 = commit(&x3, blocks[2], 11);
        let d = rereads.block_logits(&x4, blocks[3], &at(blocks[3]), true);
        assert!(dist(&d, &full(&x4, blocks[3])) < 1e-5, "the fourth block's first step is a full pass");
    }
}
