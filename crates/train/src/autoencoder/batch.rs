//! Document windows of a split and their tensors: the autoencoder's batches.

use crate::Result;
use plandiff_bundle::Autoencoder;
use plandiff_data::{doc_batch, index_documents, DocBatch, Document, SpecialIds, TokenSet};
use std::path::Path;
use tch::{Device, Tensor};

/// A split's documents as windows of up to `max_slots` sentences starting at every sentence:
/// the decoder learns to continue a story from anywhere in it, as the hybrid loop's sliding
/// window asks of it.
pub(super) struct DocSet {
    pub(super) set: TokenSet,
    pub(super) docs: Vec<Document>,
    /// (document, first sentence)
    pub(super) windows: Vec<(usize, usize)>,
    pub(super) sp: SpecialIds,
    pub(super) max_slots: usize,
}

impl DocSet {
    pub(super) fn open(dir: &Path, split: &str, sp: SpecialIds, max_slots: usize) -> Result<Self> {
        Ok(Self::from_set(TokenSet::open(dir, split)?, sp, max_slots))
    }

    pub(super) fn from_set(set: TokenSet, sp: SpecialIds, max_slots: usize) -> Self {
        let docs = index_documents(&set.tokens, sp);
        let windows =
            docs.iter().enumerate().flat_map(|(d, doc)| (0..doc.sentences.len()).map(move |f| (d, f))).collect();
        Self { set, docs, windows, sp, max_slots }
    }

    /// Windows `idx`, sentences cut to `max_len` tokens for the encoder.
    pub(super) fn batch(&self, idx: &[usize], max_len: usize) -> DocBatch {
        let w: Vec<(&Document, usize)> =
            idx.iter().map(|&i| (&self.docs[self.windows[i].0], self.windows[i].1)).collect();
        doc_batch(&self.set.tokens, &w, self.max_slots, max_len, self.sp)
    }
}

/// Tensors of a document batch on a device.
pub(super) struct BatchTensors {
    pub(super) inputs: Tensor,
    pub(super) targets: Tensor,
    pub(super) slots: Tensor,
    pub(super) sentences: Tensor,
    pub(super) sentence_mask: Tensor,
    pub(super) sent_doc: Tensor,
    pub(super) sent_slot: Tensor,
}

pub(super) fn to_device(b: &DocBatch, max_tokens: usize, device: Device) -> BatchTensors {
    let (bs, t) = (b.batch as i64, b.len as i64);
    let keep = t.min(max_tokens as i64);
    let cut = |v: &[i64]| Tensor::from_slice(v).view([bs, t]).narrow(1, 0, keep).to_device(device);
    let n = b.sentence_pos.len() as i64;
    let l = b.sentence_len as i64;
    BatchTensors {
        inputs: cut(&b.inputs),
        targets: cut(&b.targets),
        slots: cut(&b.slots),
        sentences: Tensor::from_slice(&b.sentences).view([n, l]).to_device(device),
        sentence_mask: Tensor::from_slice(&b.sentence_mask).view([n, l]).to_device(device),
        sent_doc: Tensor::from_slice(&b.sentence_pos.iter().map(|p| p.0 as i64).collect::<Vec<_>>()).to_device(device),
        sent_slot: Tensor::from_slice(&b.sentence_pos.iter().map(|p| p.1 as i64).collect::<Vec<_>>()).to_device(device),
    }
}

/// The oracle plan `(B, S, d_latent)` of a batch: each sentence's latent in its slot,
/// the null plan's entries in empty slots, plus optional per-document noise.
pub(super) fn oracle_plan(ae: &Autoencoder, b: &BatchTensors, batch: i64, noise_max: f64, train: bool) -> Tensor {
    let z = ae.encoder.forward(&b.sentences, &b.sentence_mask, train); // (N, d_latent)
    let z = if noise_max > 0.0 {
        let std = Tensor::rand([batch], (z.kind(), z.device())) * noise_max; // per document
        &z + z.randn_like() * std.index_select(0, &b.sent_doc).unsqueeze(1)
    } else {
        z
    };
    let null = ae.null_plan();
    let base = null.unsqueeze(0).expand([batch, -1, -1], false).contiguous(); // (B, S, d_latent)
    base.index_put(&[Some(b.sent_doc.shallow_clone()), Some(b.sent_slot.shallow_clone())], &z, false)
}
