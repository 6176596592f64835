//! Plans from a frozen pretrained sentence encoder (all-MiniLM-L6-v2): each sentence's latent is its embedding from the corpus cache of `plandiff_sentence`, normalised
//! per dimension with the training split's mean and standard deviation, looked up by the
//! sentence's place in the split (the cache and the windows index the same documents).

use super::batch::DocSet;
use crate::{Result, TrainError};
use plandiff_data::DocBatch;
use plandiff_sentence::{embed_corpus, find_encoder, CacheOptions, PlanSpace, SentenceEncoder};
use std::path::Path;
use tch::{Device, Tensor};

/// A split's normalised sentence latents and where each document's sentences start.
pub(super) struct FrozenPlans {
    /// `(N, D)` on the training device.
    z: Tensor,
    offsets: Vec<i64>,
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

/// The frozen encoder's width: the plans' (`d_latent`).
pub const WIDTH: i64 = 384;

/// Loads (computing it first when missing) the cache of `split` of `data`, checked against
/// the split's documents.
fn split_embeddings(enc: &SentenceEncoder, data: &Path, split: &str, set: &DocSet) -> Result<(Tensor, Vec<i64>)> {
    let opts = CacheOptions { progress: true, ..CacheOptions::default() };
    let c = embed_corpus(enc, data, split, opts).map_err(|e| TrainError::Invalid(format!("plan space: {e}")))?;
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

/// The frozen plans of the training split and, when there is one, of the validation split, and
/// the plan space: fitted on the training split, or `space` (a resumed run's).
pub(super) fn frozen_plans(
    data: &Path,
    train: &DocSet,
    valid: Option<&DocSet>,
    device: Device,
    space: Option<PlanSpace>,
) -> Result<(FrozenPlans, Option<FrozenPlans>, PlanSpace)> {
    let dir = find_encoder(None).map_err(|e| TrainError::Invalid(format!("plan space: {e}")))?;
    let enc = SentenceEncoder::load(&dir, Device::Cpu).map_err(|e| TrainError::Invalid(e.to_string()))?;
    if enc.width() != WIDTH {
        return Err(TrainError::Invalid(format!(
            "plan space: {} has width {}, not {WIDTH}",
            dir.display(),
            enc.width()
        )));
    }
    let (e, offsets) = split_embeddings(&enc, data, "train", train)?;
    let space = match space {
        Some(s) => {
            s.check(&enc).map_err(invalid)?;
            s
        }
        None => PlanSpace::fit(enc.id().map_err(|e| TrainError::Invalid(e.to_string()))?, &e),
    };
    let train_plans = FrozenPlans { z: space.normalise(&e).to_device(device), offsets };
    let valid_plans = match valid {
        Some(v) => Some(split_plans(&enc, &space, data, "valid", v, device)?),
        None => None,
    };
    Ok((train_plans, valid_plans, space))
}

pub(super) fn invalid(e: plandiff_sentence::EncoderError) -> TrainError {
    TrainError::Invalid(e.to_string())
}

/// The latents of a split in a given plan space (its encoder checked).
pub(super) fn split_plans(
    enc: &SentenceEncoder,
    space: &PlanSpace,
    data: &Path,
    split: &str,
    set: &DocSet,
    device: Device,
) -> Result<FrozenPlans> {
    let (e, offsets) = split_embeddings(enc, data, split, set)?;
    Ok(FrozenPlans { z: space.normalise(&e).to_device(device), offsets })
}
