//! Plans from a frozen pretrained sentence encoder (`[autoencoder.plan] frozen_encoder`): each
//! sentence's latent is its embedding from the corpus cache of `plandiff_sentence`, normalised
//! per dimension with the training split's mean and standard deviation, looked up by the
//! sentence's place in the split (the cache and the windows index the same documents).

use super::batch::DocSet;
use crate::{Result, TrainError};
use plandiff_data::DocBatch;
use plandiff_sentence::{embed_corpus, find_encoder, CacheOptions, SentenceEncoder};
use std::path::Path;
use tch::{Device, Kind, Tensor};

/// A split's normalised sentence latents and where each document's sentences start.
pub(super) struct FrozenPlans {
    /// `(N, D)` on the training device.
    z: Tensor,
    offsets: Vec<i64>,
}

/// Per-dimension statistics of the training split's embeddings.
pub(super) struct Normaliser {
    mean: Tensor,
    std: Tensor,
}

impl FrozenPlans {
    /// The latents `(N_batch, D)` of a batch made from windows `idx` of `set`, in the batch's
    /// sentence order.
    pub(super) fn latents(&self, set: &DocSet, idx: &[usize], b: &DocBatch) -> Tensor {
        let rows: Vec<i64> = b
            .sentence_pos
            .iter()
            .map(|&(row, slot)| {
                let (doc, first) = set.windows[idx[row]];
                self.offsets[doc] + (first + slot) as i64
            })
            .collect();
        self.z.index_select(0, &Tensor::from_slice(&rows).to_device(self.z.device()))
    }
}

/// The frozen encoder's width.
pub(super) const WIDTH: i64 = 384;

/// Loads (computing it first when missing) the cache of `split` of `data`, checked against
/// the split's documents.
fn split_embeddings(enc: &SentenceEncoder, data: &Path, split: &str, set: &DocSet) -> Result<(Tensor, Vec<i64>)> {
    let opts = CacheOptions { progress: true, ..CacheOptions::default() };
    let c = embed_corpus(enc, data, split, opts).map_err(|e| TrainError::Invalid(format!("frozen_encoder: {e}")))?;
    let docs = c.doc_offsets.len().saturating_sub(1);
    if docs != set.docs.len() {
        return Err(TrainError::Invalid(format!(
            "{}: holds {docs} documents, the {split} split {}; delete it so `plandiff embed` rebuilds it",
            c.path.display(),
            set.docs.len()
        )));
    }
    Ok((c.embeddings, c.doc_offsets))
}

/// The frozen plans of the training split and, when there is one, of the validation split.
pub(super) fn frozen_plans(
    data: &Path,
    train: &DocSet,
    valid: Option<&DocSet>,
    device: Device,
) -> Result<(FrozenPlans, Option<FrozenPlans>)> {
    let dir = find_encoder(None).map_err(|e| TrainError::Invalid(format!("frozen_encoder: {e}")))?;
    let enc = SentenceEncoder::load(&dir, Device::Cpu).map_err(|e| TrainError::Invalid(e.to_string()))?;
    if enc.width() != WIDTH {
        return Err(TrainError::Invalid(format!(
            "frozen_encoder: {} has width {}, not {WIDTH}",
            dir.display(),
            enc.width()
        )));
    }
    let (e, offsets) = split_embeddings(&enc, data, "train", train)?;
    let norm = Normaliser::fit(&e);
    let train_plans = FrozenPlans { z: norm.apply(&e).to_device(device), offsets };
    let valid_plans = match valid {
        Some(v) => {
            let (e, offsets) = split_embeddings(&enc, data, "valid", v)?;
            Some(FrozenPlans { z: norm.apply(&e).to_device(device), offsets })
        }
        None => None,
    };
    Ok((train_plans, valid_plans))
}

impl Normaliser {
    pub(super) fn fit(e: &Tensor) -> Self {
        let e = e.to_kind(Kind::Double);
        let mean = e.mean_dim(0, false, Kind::Double);
        let std = e.std_dim(0, true, false).clamp_min(1e-6);
        Self { mean: mean.to_kind(Kind::Float), std: std.to_kind(Kind::Float) }
    }

    pub(super) fn apply(&self, e: &Tensor) -> Tensor {
        (e - &self.mean) / &self.std
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_normaliser_gives_zero_mean_unit_variance_per_dimension() {
        tch::manual_seed(0);
        let e = Tensor::randn([500, 8], (Kind::Float, Device::Cpu)) * 0.05 + 0.3;
        let n = Normaliser::fit(&e);
        let z = n.apply(&e);
        let mean = z.mean_dim(0, false, Kind::Float).abs().max().double_value(&[]);
        let std = (z.std_dim(0, true, false) - 1.0).abs().max().double_value(&[]);
        assert!(mean < 1e-4 && std < 1e-4, "{mean} {std}");
    }
}
