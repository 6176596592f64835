//! A decoder's generation state ([`DecoderCache`]): the self-attention caches, the plan's
//! folded cross-attention and its slot bias table.

use plandiff_layers::{FoldedCross, KvCache};
use tch::Tensor;

/// Per-sequence generation state: one self-attention cache per block and the plan's
/// cross-attention keys/values (computed once, reused at every step).
#[derive(Debug)]
pub struct DecoderCache {
    pub(crate) layers: Vec<KvCache>,
    /// Rotary models: the sentence id of every cached position `(B, len)`, for the window.
    pub(crate) sentences: Option<Tensor>,
    /// The sentence id of plan slot 0 (rotary models; 0 for a window that starts the text).
    pub(crate) origin: i64,
    /// Cross-attention to the plan, folded once per plan (see `FoldedCross`).
    pub(crate) cross: Option<Vec<FoldedCross>>,
    /// Rotary plan models: the cross-attention bias of every sentence a token can be in, in
    /// the folded layout, computed once per plan ([`SlotBiasTable`]).
    pub(crate) bias: Option<SlotBiasTable>,
}

/// The cross-attention bias `(Q, H*S)` of tokens of sentences `first..first + Q` relative to
/// plan slot 0, over the plan's `S` slots: both end rows reach no slot (all `-1e4`), so a
/// sentence beyond them takes the nearer end row. A decoding step gathers its tokens' rows
/// instead of rebuilding the bias from the learned table (a dozen small ops a token).
#[derive(Debug)]
pub(crate) struct SlotBiasTable {
    pub(crate) first: i64,
    pub(crate) rows: Tensor,
}

impl SlotBiasTable {
    /// `(B, T, H*S)` for tokens of sentences `slots` `(B, T)`, relative to plan slot 0.
    pub(crate) fn gather(&self, slots: &Tensor) -> Tensor {
        let (b, t) = slots.size2().expect("slots must be (B, T)");
        let idx = (slots - self.first).clamp(0, self.rows.size()[0] - 1);
        self.rows.index_select(0, &idx.reshape([-1])).view([b, t, -1])
    }
}

impl DecoderCache {
    /// Number of positions already in the cache.
    pub fn len(&self) -> i64 {
        self.layers.first().map_or(0, KvCache::len)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forgets the cached positions `[from, from + n)` of every row and layer: a sliding
    /// window's oldest sentence. With rotary positions and the sentence window, what the
    /// remaining positions attend to is unchanged, so the next logits equal a full forward.
    pub fn forget(&mut self, from: i64, n: i64) {
        let len = self.len();
        let n = n.min(len - from).max(0);
        if n == 0 {
            return;
        }
        self.layers.iter_mut().for_each(|c| c.remove(from, n));
        if let Some(s) = &self.sentences {
            self.sentences = Some(Tensor::cat(&[s.narrow(1, 0, from), s.narrow(1, from + n, len - from - n)], 1));
        }
    }

    /// Batch row `r` becomes a copy of row `idx[r]` (int64 on the model's device), plan included.
    pub fn select_rows(&mut self, idx: &Tensor) {
        self.layers.iter_mut().for_each(|c| c.select_rows(idx));
        self.sentences = self.sentences.as_ref().map(|s| s.index_select(0, idx));
        self.cross.iter_mut().flatten().for_each(|c| c.select_rows(idx));
    }

    /// The sentence id of every cached position, row by row (rotary models; empty otherwise).
    pub fn sentence_ids(&self) -> Vec<Vec<i64>> {
        let Some(s) = &self.sentences else { return Vec::new() };
        let (b, len) = s.size2().expect("(B, len) sentence ids");
        let host = Vec::<i64>::try_from(s.reshape([-1])).expect("int64 sentence ids");
        (0..b as usize).map(|r| host[r * len as usize..(r + 1) * len as usize].to_vec()).collect()
    }
}
