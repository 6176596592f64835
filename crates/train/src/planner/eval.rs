//! `plandiff eval --stage planner`: denoising loss and sampled-plan quality against chance
//! and copy-the-past baselines.

use super::latents::{fixed_loss, window_batch, LatentSet, Trainee};
use crate::objectives::PlannerObjective;
use crate::stages::EvalRequest;
use crate::{Result, TrainError};
use plandiff_bundle::{load_autoencoder, load_planner, open_split, Bundle};
use plandiff_planner::Planner;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use tch::{Device, Kind, Tensor};

/// `plandiff eval --stage planner`.
#[derive(Debug, Clone, Serialize)]
pub struct PlannerEval {
    pub windows: usize,
    /// Mean denoising loss (fixed masks, timesteps and noise), as logged in training.
    pub denoising_loss: f64,
    /// Each window's first half known, its second half sampled: mean cosine between a
    /// sampled latent and the true latent of its slot.
    pub cosine_sampled: f64,
    /// The same with the latent of a random sentence of the split (chance level).
    pub cosine_random: f64,
    /// The same with the last known sentence's latent repeated (a copy-the-past planner).
    pub cosine_previous: f64,
    /// Mean norm of the sampled latents over the true ones' (plan space; 1 is on the manifold's
    /// scale: issue 39 measured 16.7 against 19.8).
    pub norm_ratio: f64,
    /// Share of sampled latents closer (cosine) to their slot's true latent than to a random
    /// sentence of another place in the split (LCM's contrastive accuracy; 0.5 is chance).
    pub contrastive_accuracy: f64,
    /// Mean cosine of a sampled latent to the last known sentence's (copying the context).
    pub cosine_sampled_previous: f64,
    pub steps: usize,
}

/// Denoising loss and sampled-plan quality of `BUNDLE/planner` on a prepared split.
pub fn evaluate_planner(req: &EvalRequest) -> Result<PlannerEval> {
    let b = Bundle::open(req.bundle)?;
    let ae = load_autoencoder(&b, req.device)?;
    let pl = load_planner(&b, req.device)?;
    let set = open_split(req.data, req.split, &ae.tokenizer)?;
    let lat = LatentSet::of(&ae, req.data, &set, req.split)?;
    let usable: Vec<(usize, usize)> =
        lat.docs.iter().enumerate().filter(|(_, &(_, n))| n >= 2).map(|(d, _)| (d, 0)).collect();
    if usable.is_empty() {
        return Err(TrainError::Invalid(format!(
            "{}: the {} split holds no document of two or more sentences",
            req.data.display(),
            req.split
        )));
    }
    let batch = req.batch;
    let batches = req.max_batches.unwrap_or(8).max(1);
    let objective: PlannerObjective = crate::objectives::typed(&pl.config.model.objective, "planner")?;
    let trainee = Trainee { planner: &pl.planner, objective: &objective };
    let loss = fixed_loss(trainee, &lat, batch, batches, req.device);
    // Sampling: documents' first windows, first half known.
    let docs: Vec<(usize, usize)> = usable.iter().copied().take(batch * batches).collect();
    let c = sampled_cosines(&pl.planner, &lat, &docs, batch, req.device)?;
    let n = c[3].max(1.0);
    Ok(PlannerEval {
        windows: docs.len(),
        denoising_loss: loss,
        cosine_sampled: c[0] / n,
        cosine_random: c[1] / n,
        cosine_previous: c[2] / n,
        norm_ratio: c[4] / c[5].max(1e-12),
        contrastive_accuracy: plandiff_layers::bounded::share(c[6] / n),
        cosine_sampled_previous: plandiff_layers::bounded::cosine(c[7] / n),
        steps: pl.planner.sampling.steps,
    })
}

/// Over the second half of each document's first window: sums of the cosine to the true latent
/// of sampled, random and previous-sentence latents, the count of such slots, the sampled and
/// true latents' norms, the slots whose sample is closer to the truth than to the random
/// sentence, and the sampled latents' cosine to the previous sentence.
fn sampled_cosines(
    planner: &Planner,
    lat: &LatentSet,
    docs: &[(usize, usize)],
    batch: usize,
    device: Device,
) -> Result<[f64; 8]> {
    let slots = planner.max_slots();
    let mut noise = plandiff_planner::HostNoise::new(0x5eed, device);
    let mut rng = ChaCha8Rng::seed_from_u64(0x5eed);
    let total_sent = lat.latents.size()[0];
    let mut acc = [0f64; 8];
    for chunk in docs.chunks(batch.max(1)) {
        // Rows are grouped by window length so each sample runs unpadded.
        for len in 2..=slots {
            let rows: Vec<(usize, usize)> =
                chunk.iter().copied().filter(|&(d, _)| lat.docs[d].1.min(slots) == len).collect();
            if rows.is_empty() {
                continue;
            }
            let (x0, _, _) = window_batch(lat, &rows, len, device);
            let k = len / 2;
            let mask: Vec<bool> = (0..len).map(|i| i < k).collect();
            let mask = Tensor::from_slice(&mask)
                .view([1, len as i64])
                .expand([rows.len() as i64, len as i64], false)
                .to_device(device);
            let z = planner
                .sample(&x0, &mask, planner.sampling, |s| noise.sample(s))
                .map_err(|e| TrainError::Invalid(e.to_string()))?;
            let cos = |a: &Tensor, b: &Tensor| plandiff_layers::bounded::cosine_similarity(a, b, -1).sum(Kind::Double); // (B, n)
            let truth = x0.narrow(1, k as i64, (len - k) as i64);
            let sampled = z.narrow(1, k as i64, (len - k) as i64);
            let prev = x0.narrow(1, k as i64 - 1, 1).expand_as(&truth);
            let rand_idx: Vec<i64> = (0..rows.len() * (len - k)).map(|_| rng.gen_range(0..total_sent)).collect();
            let random = lat
                .latents
                .index_select(0, &Tensor::from_slice(&rand_idx).to_device(lat.latents.device()))
                .view([rows.len() as i64, (len - k) as i64, -1])
                .to_device(device);
            acc[0] += cos(&sampled, &truth).double_value(&[]);
            acc[1] += cos(&random, &truth).double_value(&[]);
            acc[2] += cos(&prev, &truth).double_value(&[]);
            acc[3] += (rows.len() * (len - k)) as f64;
            let norms =
                |x: &Tensor| x.norm_scalaropt_dim(2, [-1i64].as_slice(), false).sum(Kind::Double).double_value(&[]);
            acc[4] += norms(&sampled);
            acc[5] += norms(&truth);
            let each = |a: &Tensor, b: &Tensor| plandiff_layers::bounded::cosine_similarity(a, b, -1); // (B, n)
            let closer = each(&sampled, &truth).gt_tensor(&each(&sampled, &random));
            acc[6] += closer.to_kind(Kind::Double).sum(Kind::Double).double_value(&[]);
            acc[7] += cos(&sampled, &prev).double_value(&[]);
        }
    }
    Ok(acc)
}
