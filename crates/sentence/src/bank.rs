//! Real sentences' latents to pull sampled plans toward (issue 39, part 4: Diffusion-LM's
//! rounding lifted from words to sentences). A bank is a safetensors file whose `embeddings`
//! `(N, D)` are a frozen encoder's raw sentence embeddings, such as an embedding cache that
//! `plandiff embed` wrote (`DATA/embeddings/train-*.safetensors`); it is normalised into the
//! plan space once, on load.

use crate::encoder::EncoderError;
use crate::space::PlanSpace;
use std::path::Path;
use std::sync::{Arc, Mutex};
use tch::{Device, Kind, Tensor};

/// Candidates per slot when a plan's slots must take distinct bank sentences.
const DISTINCT_CANDIDATES: i64 = 8;

/// The most rows a bank may hold (the training cache of every story has about 325,000).
pub const MAX_BANK_ROWS: i64 = 4_000_000;

/// Real sentences' latents `(N, D)` in a plan space.
pub struct SentenceBank {
    latents: Tensor,
    /// The latents scaled to norm 1, `(N, D)`: the nearest is the most similar in direction,
    /// so a short, plain sample is not drawn to the plainest sentences (those nearest the
    /// space's mean) as a Euclidean nearest would be.
    units: Tensor,
    /// Per-dimension quantile bounds `(q, low, high)` for [`SentenceBank::clip`], each `q`'s
    /// computed once and shared by the bank's clones.
    bounds: Arc<Mutex<Vec<(f64, Tensor, Tensor)>>>,
}

impl SentenceBank {
    /// Reads `path`'s `embeddings` (f32 or f16, as wide as `space`) and normalises them by
    /// `space`. Unreadable files, another width, NaN or an empty bank are one-line errors.
    pub fn load(path: &Path, space: &PlanSpace, device: Device) -> Result<Self, EncoderError> {
        let bad = |m: String| {
            EncoderError::Run(format!("{}: {m}; give an embedding cache that `plandiff embed` wrote", path.display()))
        };
        let named =
            Tensor::read_safetensors(path).map_err(|e| bad(e.to_string().lines().next().unwrap_or("").into()))?;
        let e = named
            .into_iter()
            .find(|(k, _)| k == "embeddings")
            .map(|(_, t)| t)
            .ok_or_else(|| bad("no `embeddings` tensor".into()))?;
        let size = e.size();
        if size.len() != 2 || size[1] != space.width() || size[0] == 0 || size[0] > MAX_BANK_ROWS {
            return Err(bad(format!(
                "holds {size:?}, not 1 to {MAX_BANK_ROWS} sentences of the plan space's width {}",
                space.width()
            )));
        }
        if !matches!(e.kind(), Kind::Float | Kind::Half) {
            return Err(bad(format!("holds {:?}, not f32 or f16", e.kind())));
        }
        let e = e.to_kind(Kind::Float);
        if e.isnan().any().int64_value(&[]) != 0 {
            return Err(bad("holds NaN".into()));
        }
        Ok(Self::from_latents(space.normalise(&e).to_device(device)))
    }

    /// A bank of latents `(N, D)` already in the plan space.
    pub fn from_latents(latents: Tensor) -> Self {
        let units = &latents / latents.norm_scalaropt_dim(2, [-1i64].as_slice(), true).clamp_min(1e-12);
        Self { latents, units, bounds: Arc::default() }
    }

    /// The same bank, sharing its storage.
    pub fn shallow_clone(&self) -> Self {
        Self {
            latents: self.latents.shallow_clone(),
            units: self.units.shallow_clone(),
            bounds: Arc::clone(&self.bounds),
        }
    }

    pub fn rows(&self) -> i64 {
        self.latents.size()[0]
    }

    /// The bank's nearest latent to each row of `z` `(..., D)`: the largest cosine in the plan
    /// space. In a plan `(B, S, D)` no two slots of one plan take the same bank sentence (a
    /// slot whose nearest an earlier slot took gets its next nearest, among the 8 nearest), so
    /// neighbouring slots do not all become one sentence.
    pub fn nearest(&self, z: &Tensor) -> Tensor {
        let shape = z.size();
        let d = *shape.last().unwrap_or(&0);
        let q = z.to_kind(Kind::Float).reshape([-1, d]);
        let k = DISTINCT_CANDIDATES.min(self.rows());
        // The k largest q.b / |b| (|q| is the same for every b), in chunks of queries (bounded memory).
        let top: Vec<Tensor> =
            q.split(64, 0).iter().map(|c| c.matmul(&self.units.tr()).topk(k, -1, true, true).1).collect();
        let top = Vec::<i64>::try_from(Tensor::cat(&top, 0).flatten(0, -1).to_device(Device::Cpu)).unwrap_or_default();
        let (k, slots) = (k as usize, if shape.len() == 3 { shape[1] as usize } else { 1 });
        let mut picks = Vec::with_capacity(top.len() / k.max(1));
        for plan in top.chunks(k * slots) {
            let mut taken: Vec<i64> = Vec::with_capacity(slots);
            for cands in plan.chunks(k) {
                let pick = cands.iter().copied().find(|c| !taken.contains(c)).unwrap_or(cands[0]);
                taken.push(pick);
                picks.push(pick);
            }
        }
        let picks = Tensor::from_slice(&picks).to_device(self.latents.device());
        self.latents.index_select(0, &picks).reshape(shape.as_slice()).to_kind(z.kind())
    }

    /// The per-dimension `q` and `1 - q` quantiles of the bank's latents `(D,)` each (nearest
    /// rank), computed once per `q`.
    pub fn quantile_bounds(&self, q: f64) -> (Tensor, Tensor) {
        let mut held = self.bounds.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, lo, hi)) = held.iter().find(|(k, _, _)| *k == q) {
            return (lo.shallow_clone(), hi.shallow_clone());
        }
        let n = self.rows();
        let rank = |p: f64| ((p.clamp(0.0, 1.0) * (n - 1) as f64).round() as i64 + 1).clamp(1, n);
        let (lo, hi) = (self.latents.kthvalue(rank(q), 0, false).0, self.latents.kthvalue(rank(1.0 - q), 0, false).0);
        held.push((q, lo.shallow_clone(), hi.shallow_clone()));
        (lo, hi)
    }

    /// `z` `(..., D)` clamped per dimension to the bank's `q` and `1 - q` quantiles
    /// (large_concept_model's normaliser `clip_proba`); `q = 0` changes nothing.
    pub fn clip(&self, z: &Tensor, q: f64) -> Tensor {
        if q <= 0.0 {
            return z.shallow_clone();
        }
        let (lo, hi) = self.quantile_bounds(q);
        z.clamp_tensor(Some(&lo.to_kind(z.kind())), Some(&hi.to_kind(z.kind())))
    }

    /// A sampled x0 steered by the bank: clamped to its quantiles (`clip`, 0: off), then pulled
    /// `snap` of the way to its nearest sentence (0: off).
    pub fn steer(&self, z: &Tensor, clip: f64, snap: f64) -> Tensor {
        self.pull(&self.clip(z, clip), snap)
    }

    /// `z` moved `weight` (0 to 1) of the way to its nearest bank latent; 1 snaps onto it.
    pub fn pull(&self, z: &Tensor, weight: f64) -> Tensor {
        if weight <= 0.0 {
            return z.shallow_clone();
        }
        let nn = self.nearest(z);
        z + (nn - z) * weight
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pull_moves_each_row_toward_its_nearest_latent() {
        // Three directions; the short (1, 0) would be the Euclidean nearest of a small sample
        // along (1, 0.1), the long (10, 1) is the nearest in direction.
        let bank = SentenceBank::from_latents(Tensor::from_slice(&[1f32, 0., 10., 1., 0., 10.]).view([3, 2]));
        let z = Tensor::from_slice(&[2f32, 0.2, 1., 8., 0.5, -0.6]).view([1, 3, 2]);
        let near = Vec::<f32>::try_from(bank.nearest(&z).flatten(0, -1)).unwrap();
        assert_eq!(near, vec![10., 1., 0., 10., 1., 0.]);
        let half = Vec::<f32>::try_from(bank.pull(&z, 0.5).flatten(0, -1)).unwrap();
        let want = [6., 0.6, 0.5, 9., 0.75, -0.3];
        assert!(half.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-6), "{half:?}");
        assert_eq!(bank.pull(&z, 0.0).size(), vec![1, 3, 2]);
        assert!(bank.pull(&z, 0.0).equal(&z), "weight 0 changes nothing");
    }

    /// Clipping clamps each dimension to the bank's quantiles; q = 0 changes nothing.
    #[test]
    fn clip_clamps_each_dimension_to_the_banks_quantiles() {
        // Dimension 0 holds 0..=100, dimension 1 holds 100..=0 (101 rows).
        let up = Tensor::arange(101, (Kind::Float, Device::Cpu));
        let bank = SentenceBank::from_latents(Tensor::stack(&[&up, &(100.0 - &up)], 1));
        let (lo, hi) = bank.quantile_bounds(0.1);
        assert_eq!(Vec::<f32>::try_from(&lo).unwrap(), vec![10., 10.]);
        assert_eq!(Vec::<f32>::try_from(&hi).unwrap(), vec![90., 90.]);
        let z = Tensor::from_slice(&[-5f32, 50., 200., 95.]).view([1, 2, 2]);
        let c = Vec::<f32>::try_from(bank.clip(&z, 0.1).flatten(0, -1)).unwrap();
        assert_eq!(c, vec![10., 50., 90., 90.]);
        assert!(bank.clip(&z, 0.0).equal(&z));
        assert!(bank.shallow_clone().quantile_bounds(0.1).0.equal(&lo), "clones share the bounds");
        assert!(bank.steer(&z, 0.0, 0.0).equal(&z), "steering off changes nothing");
    }

    #[test]
    fn the_slots_of_one_plan_take_distinct_sentences() {
        let bank = SentenceBank::from_latents(Tensor::from_slice(&[1f32, 0., 0.9, 0.3, 0., 1.]).view([3, 2]));
        // Two plans of two slots, both slots nearest (1, 0): the second takes the next nearest.
        let z = Tensor::from_slice(&[1f32, 0.01, 1., 0.02, 1., 0., 0., 1.]).view([2, 2, 2]);
        let near = Vec::<f32>::try_from(bank.nearest(&z).flatten(0, -1)).unwrap();
        assert_eq!(near, vec![1., 0., 0.9, 0.3, 1., 0., 0., 1.]);
        // Rows of a flat batch `(N, D)` are independent.
        let flat = Vec::<f32>::try_from(bank.nearest(&z.view([4, 2])).flatten(0, -1)).unwrap();
        assert_eq!(&flat[..4], &[1., 0., 1., 0.]);
    }

    #[test]
    fn load_refuses_a_file_of_another_width() {
        let dir = std::env::temp_dir().join(format!("plandiff-bank-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("bank.safetensors");
        Tensor::write_safetensors(&[("embeddings", Tensor::ones([4, 3], (Kind::Float, Device::Cpu)))], &path).unwrap();
        let space = PlanSpace {
            encoder: crate::EncoderId {
                name: "x".into(),
                weights_sha256: String::new(),
                tokenizer_sha256: String::new(),
            },
            mean: vec![0.0; 2],
            std: vec![1.0; 2],
        };
        let err = SentenceBank::load(&path, &space, Device::Cpu).err().expect("width 3 against 2").to_string();
        assert!(err.contains("width 2"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
