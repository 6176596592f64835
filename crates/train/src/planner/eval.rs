//! `plandiff eval --stage planner`: denoising loss and sampled-plan quality against chance
//! and copy-the-past baselines.

use super::latents::{fixed_loss, window_batch, LatentSet, Trainee};
use crate::objectives::PlannerObjective;
use crate::stages::EvalRequest;
use crate::{Result, TrainError};
use plandiff_bundle::{load_autoencoder, load_planner, open_split, Bundle};
use plandiff_planner::{Planner, Steering};
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
    /// Fréchet distance between Gaussians fitted to the sampled and the true latents of the
    /// same slots (FID's formula on plan latents; 0 for equal distributions).
    pub frechet: f64,
    /// k-NN precision and recall (Kynkäänniemi et al. 2019, k = 3): the share of sampled
    /// latents inside some true latent's neighbourhood, and of true latents inside some sampled
    /// latent's.
    pub knn_precision: f64,
    pub knn_recall: f64,
    /// Round trip: the decoder writes one sentence from each latent alone (greedy, the latent
    /// in slot 0), the frozen encoder re-encodes it, and the cosine to the latent is averaged;
    /// for sampled latents and, as the reference, for the true ones (at most 256 of each).
    pub round_trip_sampled: f64,
    pub round_trip_true: f64,
    pub steps: usize,
}

/// Denoising loss and sampled-plan quality of `BUNDLE/planner` on a prepared split.
pub fn evaluate_planner(req: &EvalRequest) -> Result<PlannerEval> {
    let b = Bundle::open(req.bundle)?;
    let ae = load_autoencoder(&b, req.device)?;
    let pl = load_planner(&b, req.device)?;
    open_split(req.data, req.split, &ae.tokenizer)?; // the tokenizer and split checked
    let lat = LatentSet::frozen(&ae.space, req.data, req.split)?;
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
    let enc = plandiff_bundle::PlanEncoder::load(&ae.space, req.device)?;
    let bank = match &req.plan.bank {
        Some(path) if req.plan.snap > 0.0 || req.plan.clip > 0.0 => Some(
            plandiff_sentence::SentenceBank::load(path, enc.space(), req.device)
                .map_err(|e| TrainError::Invalid(e.to_string()))?,
        ),
        _ => None,
    };
    let mapped = req.plan.sphere || bank.is_some() || req.plan.norm > 0.0;
    let map = |z: &Tensor| {
        let z = if req.plan.sphere { enc.to_sphere(z) } else { z.shallow_clone() };
        let z = enc.space().to_norm(&z, req.plan.norm);
        match &bank {
            Some(b) => b.steer(&z, req.plan.clip, req.plan.snap),
            None => z,
        }
    };
    let steer = Steering {
        soft: None,
        x0: mapped.then_some(&map as &dyn Fn(&Tensor) -> Tensor),
        rescale: req.plan.rescale,
        noise_scale: req.plan.noise_scale,
        epsilon_scaling: req.plan.epsilon_scaling,
    };
    let (c, sampled, truth) = sampled_cosines(&pl.planner, steer, &lat, &docs, (batch, req.device))?;
    let n = c[3].max(1.0);
    let (knn_precision, knn_recall) = knn_precision_recall(&sampled, &truth, 3);
    let trip = |z: &Tensor| round_trip(&ae, &enc, &z.narrow(0, 0, z.size()[0].min(256)));
    Ok(PlannerEval {
        windows: docs.len(),
        denoising_loss: loss,
        cosine_sampled: c[0] / n,
        cosine_random: c[1] / n,
        cosine_previous: c[2] / n,
        norm_ratio: c[4] / c[5].max(1e-12),
        contrastive_accuracy: plandiff_layers::bounded::share(c[6] / n),
        cosine_sampled_previous: plandiff_layers::bounded::cosine(c[7] / n),
        frechet: frechet(&sampled, &truth),
        knn_precision,
        knn_recall,
        round_trip_sampled: trip(&sampled)?,
        round_trip_true: trip(&truth)?,
        steps: pl.planner.sampling.steps,
    })
}

/// Fréchet distance `|mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a^1/2 S_b S_a^1/2)^1/2)` between
/// Gaussians fitted to the rows of `a` and `b` `(N, d)` (in f64, square roots by eigh).
pub fn frechet(a: &Tensor, b: &Tensor) -> f64 {
    let (a, b) = (a.to_kind(Kind::Double), b.to_kind(Kind::Double));
    let stats = |x: &Tensor| {
        let mu = x.mean_dim(0, false, Kind::Double);
        let c = x - &mu;
        let cov = c.tr().matmul(&c) / (x.size()[0] - 1).max(1) as f64;
        (mu, cov)
    };
    let sqrtm = |m: &Tensor| {
        let (w, v) = m.linalg_eigh("L");
        (&v * w.clamp_min(0.0).sqrt().unsqueeze(0)).matmul(&v.tr())
    };
    let ((ma, ca), (mb, cb)) = (stats(&a), stats(&b));
    let sa = sqrtm(&ca);
    let inner = sqrtm(&sa.matmul(&cb).matmul(&sa));
    let d = (&ma - &mb).square().sum(Kind::Double) + ca.trace() + cb.trace() - inner.trace() * 2.0;
    d.double_value(&[]).max(0.0)
}

/// k-NN precision and recall of `fake` against `real` `(N, d)` with neighbourhoods of the
/// `k`-th nearest neighbour (Euclidean) within each set.
pub fn knn_precision_recall(fake: &Tensor, real: &Tensor, k: i64) -> (f64, f64) {
    let (fake, real) = (fake.to_kind(Kind::Double), real.to_kind(Kind::Double));
    let radii = |x: &Tensor| {
        let d = Tensor::cdist(x, x, 2.0, None::<i64>);
        // The k-th nearest other point: sorted distances, index k (0 is the point itself).
        d.sort(1, false).0.select(1, k.min(x.size()[0] - 1))
    };
    let inside = |probe: &Tensor, set: &Tensor, r: &Tensor| {
        let d = Tensor::cdist(probe, set, 2.0, None::<i64>); // (P, S)
        let within = d.le_tensor(&r.unsqueeze(0)).any_dim(1, false);
        plandiff_layers::bounded::share(within.to_kind(Kind::Double).mean(Kind::Double).double_value(&[]))
    };
    (inside(&fake, &real, &radii(&real)), inside(&real, &fake, &radii(&fake)))
}

/// Mean cosine between each latent of `z` `(N, d)` and the frozen encoder's latent of what the
/// decoder writes from it alone (greedy, one sentence, the latent in slot 0, the null plan
/// elsewhere).
fn round_trip(ae: &plandiff_bundle::LoadedAutoencoder, enc: &plandiff_bundle::PlanEncoder, z: &Tensor) -> Result<f64> {
    use plandiff_decoder::{generate, GenerateOptions, LogitsProcessor, SamplingConfig};
    let n = z.size()[0];
    if n == 0 {
        return Ok(f64::NAN);
    }
    let null = ae.ae.null_plan();
    let rest = null.narrow(0, 1, null.size()[0] - 1).unsqueeze(0).expand([n, -1, -1], false);
    let plans = Tensor::cat(&[z.unsqueeze(1).to_kind(null.kind()), rest.to_kind(null.kind())], 1);
    let sp = ae.tokenizer.special();
    let opts = GenerateOptions {
        max_new_tokens: 48,
        max_sentences: Some(1),
        eos_id: sp.eos as i64,
        sep_id: sp.sep as i64,
        pad_id: sp.pad as i64,
        banned: vec![sp.bos as i64, sp.pad as i64],
    };
    let greedy = SamplingConfig::greedy();
    let prompts = vec![vec![sp.bos as i64]; n as usize];
    let g = tch::no_grad(|| {
        generate(&ae.ae.decoder, &prompts, Some(&plans), &mut LogitsProcessor::new(greedy, 0), &opts, |_, _| {})
    });
    let texts = g
        .tokens
        .iter()
        .map(|t| ae.tokenizer.decode(&t.iter().map(|&t| t as u32).filter(|&t| !sp.is_special(t)).collect::<Vec<_>>()))
        .collect::<std::result::Result<Vec<String>, _>>()
        .map_err(|e| TrainError::Invalid(e.to_string()))?;
    let refs: Vec<&str> = texts.iter().map(|t| t.trim()).map(|t| if t.is_empty() { "." } else { t }).collect();
    let back = enc.encode_texts(&refs, z.device())?;
    let cos = plandiff_layers::bounded::cosine_similarity(&back.to_kind(Kind::Float), &z.to_kind(Kind::Float), -1);
    Ok(plandiff_layers::bounded::cosine(cos.mean(Kind::Double).double_value(&[])))
}

/// Over the second half of each document's first window: sums of the cosine to the true latent
/// of sampled, random and previous-sentence latents, the count of such slots, the sampled and
/// true latents' norms, the slots whose sample is closer to the truth than to the random
/// sentence, and the sampled latents' cosine to the previous sentence; with every sampled
/// latent and its true one `(N, d)`.
fn sampled_cosines(
    planner: &Planner,
    steer: Steering,
    lat: &LatentSet,
    docs: &[(usize, usize)],
    (batch, device): (usize, Device),
) -> Result<([f64; 8], Tensor, Tensor)> {
    let slots = planner.max_slots();
    let mut noise = plandiff_planner::HostNoise::new(0x5eed, device);
    let mut rng = ChaCha8Rng::seed_from_u64(0x5eed);
    let total_sent = lat.latents.size()[0];
    let mut acc = [0f64; 8];
    let (mut all_sampled, mut all_truth) = (Vec::new(), Vec::new());
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
                .sample_held(&x0, &mask, steer, planner.sampling, |s| noise.sample(s))
                .map_err(|e| TrainError::Invalid(e.to_string()))?;
            let z = steer.x0.map_or(z.shallow_clone(), |f| f(&z)); // as the hybrid loop keeps them
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
            let d = sampled.size()[2];
            all_sampled.push(sampled.reshape([-1, d]));
            all_truth.push(truth.reshape([-1, d]));
        }
    }
    Ok((acc, Tensor::cat(&all_sampled, 0), Tensor::cat(&all_truth, 0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Fréchet distance of a set to itself is 0 and to a shifted copy the shift's squared
    /// length; k-NN precision and recall are 1 for one set against itself and 0 for two sets
    /// far apart.
    #[test]
    fn frechet_and_knn_on_known_sets() {
        tch::manual_seed(0);
        let a = Tensor::randn([200, 6], (Kind::Double, Device::Cpu));
        assert!(frechet(&a, &a).abs() < 1e-6, "{}", frechet(&a, &a));
        let shift = Tensor::from_slice(&[1.0f64, -2.0, 0.0, 0.5, 0.0, 0.0]);
        let d = frechet(&a, &(&a + &shift));
        assert!((d - 5.25).abs() < 1e-6, "{d}");
        assert_eq!(knn_precision_recall(&a, &a, 3), (1.0, 1.0));
        assert_eq!(knn_precision_recall(&(&a + 100.0), &a, 3), (0.0, 0.0));
        let half = a.narrow(0, 0, 100) * 0.01; // a collapsed set inside the real one
        let (p, r) = knn_precision_recall(&half, &a, 3);
        assert!(p > 0.9 && r < 0.5, "{p} {r}");
    }
}
