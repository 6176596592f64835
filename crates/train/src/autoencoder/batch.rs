//! Document windows of a split and their tensors: the autoencoder's batches.

use crate::Result;
use plandiff_bundle::{Autoencoder, LatentNoise};
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

    /// The mean length in tokens of the windows (they overlap: one starts at every sentence).
    pub(super) fn mean_window_tokens(&self) -> f64 {
        let tokens: usize = self
            .windows
            .iter()
            .map(|&(d, f)| {
                let s = &self.docs[d].sentences;
                s[f..(f + self.max_slots).min(s.len())].iter().map(|&(a, b)| b - a + 1).sum::<usize>() + 1
            })
            .sum();
        tokens as f64 / self.windows.len().max(1) as f64
    }

    /// Windows `idx`, sentences cut to `max_len` tokens (the bag-of-words targets).
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

/// The plan `(B, S, d_latent)` of a batch from its sentences' latents `z` `(N, d_latent)`:
/// each sentence's latent in its slot, the null plan's entries in empty slots, with
/// per-document noise of level s ~ U(0, `noise.0`) added as `noise.1` says (none: the oracle
/// plan validation reads).
pub(super) fn plan_of(ae: &Autoencoder, b: &BatchTensors, z: &Tensor, batch: i64, noise: (f64, LatentNoise)) -> Tensor {
    let (noise_max, kind) = noise;
    let z = if noise_max > 0.0 {
        let std = Tensor::rand([batch], (z.kind(), z.device())) * noise_max; // per document
        let s = std.index_select(0, &b.sent_doc).unsqueeze(1); // (N, 1)
        match kind {
            LatentNoise::Additive => z + z.randn_like() * s,
            LatentNoise::VariancePreserving => z * (s.square().neg() + 1.0).clamp_min(0.0).sqrt() + z.randn_like() * s,
        }
    } else {
        z.shallow_clone()
    };
    let null = ae.null_plan();
    let base = null.unsqueeze(0).expand([batch, -1, -1], false).contiguous(); // (B, S, d_latent)
    base.index_put(&[Some(b.sent_doc.shallow_clone()), Some(b.sent_slot.shallow_clone())], &z, false)
}

/// Bag-of-words loss: the mean negative log-probability of each sentence token under its
/// sentence's word distribution `softmax(logits)` (tokens past `mask` do not count).
///
/// # Shapes
/// - `logits`: `(N, V)`; `tokens`, `mask`: `(N, L)` (int64, bool)
pub(super) fn bow_loss(logits: &Tensor, tokens: &Tensor, mask: &Tensor) -> Tensor {
    let lp = logits.log_softmax(-1, logits.kind()).gather(1, tokens, false); // (N, L)
    let m = mask.to_kind(lp.kind());
    let kind = lp.kind();
    -(lp * &m).sum(kind) / m.sum(kind).clamp_min(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use plandiff_layers::TransformerShape;
    use tch::{Device, Kind};

    #[test]
    fn bow_loss_is_the_mean_token_nll_over_real_tokens() {
        let logits = Tensor::from_slice(&[0.5f32, -1.0, 2.0, 0.0, 1.0, 0.0, 0.0, 3.0]).view([2, 4]);
        let tokens = Tensor::from_slice(&[2i64, 0, 3, 1, 3, 0]).view([2, 3]);
        let mask = Tensor::from_slice(&[true, true, false, true, true, true]).view([2, 3]);
        let got = bow_loss(&logits, &tokens, &mask).double_value(&[]);
        // By hand: log-softmax per row, the masked-in tokens (row 0: 2, 0; row 1: 1, 3, 0).
        let lse = |r: &[f64]| r.iter().map(|x| x.exp()).sum::<f64>().ln();
        let (r0, r1) = ([0.5, -1.0, 2.0, 0.0], [1.0, 0.0, 0.0, 3.0]);
        let (l0, l1) = (lse(&r0), lse(&r1));
        let want = -((r0[2] - l0) + (r0[0] - l0) + (r1[1] - l1) + (r1[3] - l1) + (r1[0] - l1)) / 5.0;
        assert!((got - want).abs() < 1e-5, "{got} vs {want}");
        // An all-masked batch is 0, not NaN.
        let none = Tensor::zeros([2, 3], (Kind::Bool, Device::Cpu));
        assert_eq!(bow_loss(&logits, &tokens, &none).double_value(&[]), 0.0);
    }

    #[test]
    fn bow_loss_trains_the_plan_projection_only() {
        use plandiff_decoder::{DecoderConfig, PlanConfig};
        use plandiff_layers::NormKind;
        use tch::nn::OptimizerConfig;
        tch::manual_seed(0);
        let (v, d, dl) = (40, 16, 8);
        let shape =
            TransformerShape { d_model: d, n_layers: 1, n_heads: 2, d_ff: 32, dropout: 0.0, norm: NormKind::Layer };
        let dec = DecoderConfig {
            vocab_size: v,
            shape,
            max_seq_len: 16,
            plan: Some(PlanConfig { d_latent: dl, max_slots: 4 }),
            rotary: None,
            cross_blocks: None,
        };
        let vs = tch::nn::VarStore::new(Device::Cpu);
        let ae = Autoencoder::new(&vs.root(), &dec).unwrap();
        let tokens = Tensor::randint(v, [6, 5], (Kind::Int64, Device::Cpu));
        let mask = Tensor::ones([6, 5], (Kind::Bool, Device::Cpu));
        // Frozen latents: the sentences' plans, not trained.
        let z = Tensor::randn([6, dl], (Kind::Float, Device::Cpu));
        // Token embeddings of a trained model's scale (norms near 1).
        let wte = Tensor::randn([v, d], (Kind::Float, Device::Cpu)) / (d as f64).sqrt();
        tch::no_grad(|| vs.variables()["decoder.wte.weight"].shallow_clone().copy_(&wte));
        let mut opt = tch::nn::Adam::default().build(&vs, 1e-2).unwrap();
        let loss = || bow_loss(&ae.decoder.plan_word_logits(&z).unwrap(), &tokens, &mask);
        let first = loss().double_value(&[]);
        for _ in 0..60 {
            opt.backward_step(&loss());
        }
        let last = loss().double_value(&[]);
        assert!(last < first - 0.5, "bag-of-words loss {first} -> {last}");
        assert!(vs.variables()["decoder.wte.weight"].equal(&wte), "the token embeddings moved");
    }
}
