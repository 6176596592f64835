//! Sentence latents of a split, windows over them, and the planner's denoising loss.

use crate::objectives::PlannerObjective;
use plandiff_diffusion::NoiseSchedule;
use plandiff_planner::DenoiserInput;
use plandiff_planner::Planner;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::ops::Range;
use tch::{Device, Kind, Tensor};

/// Every sentence latent of a split, and each document's range of sentences.
pub(super) struct LatentSet {
    /// `(N, d)`, encoder space.
    pub(super) latents: Tensor,
    /// (first sentence, sentence count) per document.
    pub(super) docs: Vec<(usize, usize)>,
    /// (document, first slot) of every window start.
    pub(super) windows: Vec<(usize, usize)>,
}

impl LatentSet {
    /// The latents of a split in a frozen encoder's plan space: the corpus cache's embeddings (computed first when missing),
    /// normalised by the space, in the cache's document order.
    pub(super) fn frozen(
        space: &plandiff_sentence::PlanSpace,
        data: &std::path::Path,
        split: &str,
    ) -> crate::Result<Self> {
        use crate::TrainError;
        let enc = space.encoder(Device::Cpu).map_err(|e| TrainError::Invalid(e.to_string()))?;
        let opts = plandiff_sentence::CacheOptions::default();
        let c =
            plandiff_sentence::embed_corpus(&enc, data, split, opts).map_err(|e| TrainError::Invalid(e.to_string()))?;
        let docs: Vec<(usize, usize)> =
            c.doc_offsets.windows(2).map(|w| (w[0] as usize, (w[1] - w[0]) as usize)).collect();
        let windows = docs.iter().enumerate().flat_map(|(d, &(_, n))| (0..n).map(move |f| (d, f))).collect();
        tracing::info!(
            sentences = c.info.sentences,
            documents = docs.len(),
            "read the {split} sentences' frozen latents"
        );
        Ok(Self { latents: space.normalise(&c.embeddings), docs, windows })
    }
}

/// A batch of windows: latents `(B, S, d)` (zeros beyond a document's end) and real-slot
/// mask `(B, S)`.
pub(super) fn window_batch(
    set: &LatentSet,
    windows: &[(usize, usize)],
    slots: usize,
    device: Device,
) -> (Tensor, Tensor, Vec<usize>) {
    let b = windows.len();
    let mut idx = Vec::with_capacity(b * slots);
    let mut real = Vec::with_capacity(b * slots);
    let mut lens = Vec::with_capacity(b);
    for &(d, first) in windows {
        let (off, n) = set.docs[d];
        let len = (n - first).min(slots);
        lens.push(len);
        for k in 0..slots {
            idx.push(if k < len { (off + first + k) as i64 } else { 0 });
            real.push(k < len);
        }
    }
    let d = set.latents.size()[1];
    let idx = Tensor::from_slice(&idx).to_device(set.latents.device());
    let x0 = set.latents.index_select(0, &idx).view([b as i64, slots as i64, d]).to_device(device);
    let real = Tensor::from_slice(&real).view([b as i64, slots as i64]).to_device(device);
    let x0 = x0 * real.unsqueeze(-1).to_kind(Kind::Float);
    (x0, real, lens)
}

/// Known-slot masks for windows of the given real lengths (host RNG, so a resumed run
/// draws the same ones).
pub(super) fn known_masks(lens: &[usize], slots: usize, obj: &PlannerObjective, rng: &mut ChaCha8Rng) -> Vec<bool> {
    let mut out = vec![false; lens.len() * slots];
    for (r, &len) in lens.iter().enumerate() {
        let row = &mut out[r * slots..r * slots + len];
        if len < 2 || rng.gen::<f64>() < obj.cfg_dropout {
            continue;
        }
        if rng.gen::<f64>() < obj.prefix_prob {
            let k = rng.gen_range(0..len);
            row[..k].iter_mut().for_each(|m| *m = true);
        } else {
            let q: f64 = rng.gen();
            row.iter_mut().for_each(|m| *m = rng.gen::<f64>() < q);
            if row.iter().all(|&m| m) {
                row[rng.gen_range(0..len)] = false;
            }
        }
    }
    out
}

/// A planner with the objective it trains with (a bundle's `planner.objective`).
#[derive(Clone, Copy)]
pub(super) struct Trainee<'a> {
    pub planner: &'a Planner,
    pub objective: &'a PlannerObjective,
}

/// Denoising loss of rows `part` of a batch of `windows` (a rank's share of the global
/// micro-batch; all of it in one process). `rng` draws known masks and timesteps and libtorch
/// the noise for every row of `windows`, so a row's draws do not depend on how the batch is
/// split. The squared error over unknown real slots, divided by the whole batch's count of
/// them and scaled by the number of parts: the mean over the parts is the whole batch's mean.
pub(super) fn denoise_loss(
    trainee: Trainee,
    set: &LatentSet,
    windows: &[(usize, usize)],
    part: Range<usize>,
    rng: &mut ChaCha8Rng,
    device: Device,
    train: bool,
) -> Tensor {
    let Trainee { planner, objective } = trainee;
    let slots = planner.max_slots();
    let lens_all: Vec<usize> = windows.iter().map(|&(d, first)| (set.docs[d].1 - first).min(slots)).collect();
    let known_all = known_masks(&lens_all, slots, objective, rng);
    let t_max = planner.schedule.num_train_timesteps();
    let t_all: Vec<usize> = (0..windows.len()).map(|_| rng.gen_range(0..t_max)).collect();
    let unknown_all: usize =
        (0..windows.len()).map(|r| (0..lens_all[r]).filter(|&k| !known_all[r * slots + k]).count()).sum();
    let (x0, real, _) = window_batch(set, &windows[part.clone()], slots, device);
    let x0 = planner.normalizer.normalize(&x0) * real.unsqueeze(-1).to_kind(Kind::Float);
    let b = part.len() as i64;
    let known =
        Tensor::from_slice(&known_all[part.start * slots..part.end * slots]).view([b, slots as i64]).to_device(device);
    let t = t_all[part.clone()].to_vec();
    let tf: Vec<f64> = t.iter().map(|&t| t as f64).collect();
    let eps = Tensor::randn([windows.len() as i64, slots as i64, x0.size()[2]], (x0.kind(), device)).narrow(
        0,
        part.start as i64,
        b,
    );
    let x_t = planner.schedule.q_sample(&x0, &t, &eps);
    let target = planner.schedule.target(&x0, &t, &eps);
    let den = &planner.denoiser;
    let self_cond = (den.config().self_condition && rng.gen::<f64>() < objective.self_condition_prob).then(|| {
        tch::no_grad(|| {
            let input = DenoiserInput { slots: Some(&real), ..DenoiserInput::new(&x_t, &x0, &known) };
            let out = den.forward(&input, &tf, train);
            x0_estimate(&planner.schedule, &out, &t, &x_t)
        })
    });
    let input =
        DenoiserInput { self_cond: self_cond.as_ref(), slots: Some(&real), ..DenoiserInput::new(&x_t, &x0, &known) };
    let out = den.forward(&input, &tf, train);
    let w = real.logical_and(&known.logical_not()).to_kind(Kind::Float).unsqueeze(-1); // (B, S, 1)
    let se = (out - target).square() * &w;
    let d = x0.size()[2] as f64;
    let parts = windows.len() as f64 / part.len().max(1) as f64;
    se.sum(Kind::Float) * (parts / (unknown_all as f64 * d).max(1.0))
}

/// Fixed validation windows, strided through a split.
pub(super) fn eval_windows(set: &LatentSet, count: usize) -> Vec<(usize, usize)> {
    let n = set.windows.len();
    let stride = (n / count.max(1)).max(1);
    (0..count.min(n)).map(|i| set.windows[(i * stride) % n]).collect()
}

/// Mean denoising loss over fixed windows, masks, timesteps and noise.
pub(super) fn fixed_loss(trainee: Trainee, set: &LatentSet, batch: usize, batches: usize, device: Device) -> f64 {
    let windows = eval_windows(set, batch * batches);
    let mut rng = ChaCha8Rng::seed_from_u64(0x5eed);
    tch::manual_seed(0x5eed);
    let (mut sum, mut count) = (0f64, 0usize);
    tch::no_grad(|| {
        for chunk in windows.chunks(batch.max(1)) {
            sum += denoise_loss(trainee, set, chunk, 0..chunk.len(), &mut rng, device, false).double_value(&[]);
            count += 1;
        }
    });
    sum / count.max(1) as f64
}

/// x0 implied by a model output, one timestep per row.
pub(super) fn x0_estimate(schedule: &NoiseSchedule, out: &Tensor, t: &[usize], x_t: &Tensor) -> Tensor {
    let rows: Vec<Tensor> = t
        .iter()
        .enumerate()
        .map(|(r, &t)| schedule.split_prediction(&out.get(r as i64), t, &x_t.get(r as i64)).0)
        .collect();
    Tensor::stack(&rows, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_masks_follow_the_objective() {
        let obj = PlannerObjective { cfg_dropout: 0.0, prefix_prob: 1.0, self_condition_prob: 0.0 };
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let lens = vec![5usize; 200];
        let m = known_masks(&lens, 8, &obj, &mut rng);
        for r in 0..200 {
            let row = &m[r * 8..r * 8 + 8];
            let k = row.iter().take_while(|&&x| x).count();
            assert!(row[k..].iter().all(|&x| !x), "prefix masks are a prefix");
            assert!(k < 5, "at least one unknown real slot");
        }
        let obj = PlannerObjective { cfg_dropout: 1.0, ..obj };
        assert!(known_masks(&lens, 8, &obj, &mut rng).iter().all(|&x| !x), "cfg dropout clears every mask");
        let obj = PlannerObjective { cfg_dropout: 0.0, prefix_prob: 0.0, self_condition_prob: 0.0 };
        let m = known_masks(&lens, 8, &obj, &mut rng);
        for r in 0..200 {
            let row = &m[r * 8..r * 8 + 8];
            assert!(row[5..].iter().all(|&x| !x), "padding slots are never known");
            assert!(row[..5].iter().any(|&x| !x));
        }
        assert!(m.iter().any(|&x| x));
    }
}
