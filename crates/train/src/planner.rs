//! Stage `planner` (design section 3.4): a denoiser over windows of `max_slots` sentence
//! latents, trained on the frozen sentence encoder of the bundle's autoencoder.
//!
//! - Latents: every sentence of the training documents is encoded once, up front. The
//!   normalizer is fitted on them (fresh run) and saved with the weights; the diffusion runs
//!   on normalized latents.
//! - Known slots: per window, none (the classifier-free-guidance dropout), a prefix
//!   (continuing a text) or a random subset (editing in the middle). The loss covers the
//!   unknown real slots only; windows shorter than `max_slots` mask the missing slots out of
//!   attention.
//! - The planner records the SHA-256 of the autoencoder weights it was trained on, so a
//!   retrained autoencoder cannot silently be paired with a stale planner.

use crate::bundle::{load_weights, Bundle, ModelConfig, Provenance, StageConfigFile, FORMAT_VERSION};
use crate::config::PlannerObjective;
use crate::trainer::{batch_indices, run_loop, seed_init, setup_run, step_rng, StageRunner, TrainArgs, TrainReport};
use crate::{Result, TrainError};
use plandiff_data::{index_documents, SpecialIds, TokenSet, WindowSampler};
use plandiff_diffusion::{NoiseSchedule, ScheduleConfig};
use plandiff_planner::{
    sample_plan, Denoiser, DenoiserConfig, LatentNormalizer, PlanSampling, SamplingDefaults, SentenceEncoder,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::Path;
use tch::{nn, Device, Kind, Tensor};

pub const KIND: &str = "planner";

/// The `model` section of `BUNDLE/planner/config.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlannerModel {
    pub denoiser: DenoiserConfig,
    pub schedule: ScheduleConfig,
    pub objective: PlannerObjective,
    pub sampling: SamplingDefaults,
    /// SHA-256 of the `autoencoder/model.safetensors` whose encoder made the latents.
    pub autoencoder_sha256: String,
}

impl ModelConfig for PlannerModel {
    fn validate(&self) -> std::result::Result<(), String> {
        self.denoiser.validate()?;
        self.sampling.validate()?;
        NoiseSchedule::new(self.schedule.clone()).map_err(|e| e.to_string())?;
        Ok(())
    }
}

/// A loaded (or training) planner: denoiser, normalizer and schedule.
pub struct Planner {
    pub denoiser: Denoiser,
    pub normalizer: LatentNormalizer,
    pub schedule: NoiseSchedule,
    pub model: PlannerModel,
}

impl Planner {
    pub fn new(p: &nn::Path, model: &PlannerModel) -> Result<Self> {
        model.validate().map_err(|e| TrainError::Invalid(format!("planner config: {e}")))?;
        Ok(Self {
            denoiser: Denoiser::new(p / "denoiser", &model.denoiser),
            normalizer: LatentNormalizer::new(p / "normalizer", model.denoiser.d_latent),
            schedule: NoiseSchedule::new(model.schedule.clone()).map_err(|e| TrainError::Invalid(e.to_string()))?,
            model: model.clone(),
        })
    }

    pub fn max_slots(&self) -> usize {
        self.model.denoiser.max_slots as usize
    }

    /// Samples latents for the unknown slots of `known` `(B, S, d)` (encoder space; `mask`
    /// `(B, S)` is `true` on known slots), with `noise` supplying every Gaussian draw.
    /// Returns encoder-space latents `(B, S, d)` whose known slots equal `known`.
    pub fn sample(
        &self,
        known: &Tensor,
        mask: &Tensor,
        opts: PlanSampling,
        noise: impl FnMut(&[i64]) -> Tensor,
    ) -> Result<Tensor> {
        let s = known.size()[1];
        if s > self.model.denoiser.max_slots {
            return Err(TrainError::Invalid(format!(
                "{s} slots exceed the planner's window of {}",
                self.model.denoiser.max_slots
            )));
        }
        let rows = known.size()[0] as usize;
        let known_n = self.normalizer.normalize(known);
        // Timestep and slot embeddings once per timestep (the guided pass reuses them).
        let mut step_emb: std::collections::HashMap<usize, Tensor> = std::collections::HashMap::new();
        let x = tch::no_grad(|| {
            sample_plan(
                &self.schedule,
                &known_n,
                mask,
                opts,
                |x, t, k, m, prev| {
                    let emb = step_emb.entry(t).or_insert_with(|| {
                        self.denoiser.step_embedding(&vec![t as f64; rows], s, x.kind(), x.device())
                    });
                    self.denoiser.forward_embedded(x, emb, k, m, prev, None, false)
                },
                noise,
            )
        })
        .map_err(|e| TrainError::Invalid(e.to_string()))?;
        let z = self.normalizer.denormalize(&x);
        // Exactly the given latents on known slots (denormalize(normalize(z)) rounds).
        let m = mask.unsqueeze(-1);
        Ok(known.where_self(&m, &z))
    }
}

/// SHA-256 (hex) of a file, streamed.
pub fn file_sha256(path: &Path) -> Result<String> {
    let mut f = std::fs::File::open(path).map_err(|e| TrainError::io(path, e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| TrainError::io(path, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// Every sentence latent of a split, and each document's range of sentences.
struct LatentSet {
    /// `(N, d)`, encoder space.
    latents: Tensor,
    /// (first sentence, sentence count) per document.
    docs: Vec<(usize, usize)>,
    /// (document, first slot) of every window start.
    windows: Vec<(usize, usize)>,
}

impl LatentSet {
    fn encode(encoder: &SentenceEncoder, set: &TokenSet, sp: SpecialIds, what: &str) -> Self {
        let pad = sp.pad as i64;
        let docs = index_documents(&set.tokens, sp);
        let mut sentences: Vec<Vec<i64>> = Vec::new();
        let mut ranges = Vec::with_capacity(docs.len());
        for d in &docs {
            ranges.push((sentences.len(), d.sentences.len()));
            for &(s, e) in &d.sentences {
                sentences.push(set.tokens[s..e].iter().map(|&t| t as i64).collect());
            }
        }
        let t0 = std::time::Instant::now();
        let refs: Vec<&[i64]> = sentences.iter().map(Vec::as_slice).collect();
        let latents = encoder.encode(&refs, pad, 256);
        tracing::info!(
            sentences = sentences.len(),
            documents = ranges.len(),
            seconds = t0.elapsed().as_secs_f64(),
            "encoded the {what} sentences"
        );
        let windows = ranges.iter().enumerate().flat_map(|(d, &(_, n))| (0..n).map(move |f| (d, f))).collect();
        Self { latents, docs: ranges, windows }
    }
}

/// A batch of windows: latents `(B, S, d)` (zeros beyond a document's end) and real-slot
/// mask `(B, S)`.
fn window_batch(
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
fn known_masks(lens: &[usize], slots: usize, obj: &PlannerObjective, rng: &mut ChaCha8Rng) -> Vec<bool> {
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

struct PlannerRunner {
    planner: Planner,
    train: LatentSet,
    valid: Option<LatentSet>,
    sampler: WindowSampler,
    batch: usize,
    eval_batches: usize,
    seed: u64,
    device: Device,
}

/// Denoising loss of a batch of windows; `rng` draws known masks and timesteps, libtorch
/// the noise. The mean squared error over unknown real slots.
fn denoise_loss(
    planner: &Planner,
    set: &LatentSet,
    windows: &[(usize, usize)],
    rng: &mut ChaCha8Rng,
    device: Device,
    train: bool,
) -> Tensor {
    let slots = planner.max_slots();
    let (x0, real, lens) = window_batch(set, windows, slots, device);
    let x0 = planner.normalizer.normalize(&x0) * real.unsqueeze(-1).to_kind(Kind::Float);
    let b = windows.len() as i64;
    let known = known_masks(&lens, slots, &planner.model.objective, rng);
    let known = Tensor::from_slice(&known).view([b, slots as i64]).to_device(device);
    let t_max = planner.schedule.num_train_timesteps();
    let t: Vec<usize> = (0..b).map(|_| rng.gen_range(0..t_max)).collect();
    let tf: Vec<f64> = t.iter().map(|&t| t as f64).collect();
    let eps = x0.randn_like();
    let x_t = planner.schedule.q_sample(&x0, &t, &eps);
    let target = planner.schedule.target(&x0, &t, &eps);
    let den = &planner.denoiser;
    let self_cond = (den.config().self_condition && rng.gen::<f64>() < planner.model.objective.self_condition_prob)
        .then(|| {
            tch::no_grad(|| {
                let out = den.forward(&x_t, &tf, &x0, &known, None, Some(&real), train);
                x0_estimate(&planner.schedule, &out, &t, &x_t)
            })
        });
    let out = den.forward(&x_t, &tf, &x0, &known, self_cond.as_ref(), Some(&real), train);
    let w = real.logical_and(&known.logical_not()).to_kind(Kind::Float).unsqueeze(-1); // (B, S, 1)
    let se = (out - target).square() * &w;
    let d = x0.size()[2] as f64;
    se.sum(Kind::Float) / (w.sum(Kind::Float) * d).clamp_min(1.0)
}

/// Fixed validation windows, strided through a split.
fn eval_windows(set: &LatentSet, count: usize) -> Vec<(usize, usize)> {
    let n = set.windows.len();
    let stride = (n / count.max(1)).max(1);
    (0..count.min(n)).map(|i| set.windows[(i * stride) % n]).collect()
}

/// Mean denoising loss over fixed windows, masks, timesteps and noise.
fn fixed_loss(planner: &Planner, set: &LatentSet, batch: usize, batches: usize, device: Device) -> f64 {
    let windows = eval_windows(set, batch * batches);
    let mut rng = ChaCha8Rng::seed_from_u64(0x5eed);
    tch::manual_seed(0x5eed);
    let (mut sum, mut count) = (0f64, 0usize);
    tch::no_grad(|| {
        for chunk in windows.chunks(batch.max(1)) {
            sum += denoise_loss(planner, set, chunk, &mut rng, device, false).double_value(&[]);
            count += 1;
        }
    });
    sum / count.max(1) as f64
}

/// x0 implied by a model output, one timestep per row.
fn x0_estimate(schedule: &NoiseSchedule, out: &Tensor, t: &[usize], x_t: &Tensor) -> Tensor {
    let rows: Vec<Tensor> = t
        .iter()
        .enumerate()
        .map(|(r, &t)| schedule.split_prediction(&out.get(r as i64), t, &x_t.get(r as i64)).0)
        .collect();
    Tensor::stack(&rows, 0)
}

impl StageRunner for PlannerRunner {
    type Model = PlannerModel;

    fn kind(&self) -> &'static str {
        KIND
    }

    fn micro_step(&mut self, step: u64, micro: usize, accum: usize) -> Result<f64> {
        let windows: Vec<(usize, usize)> = batch_indices(&mut self.sampler, step, micro, accum, self.batch)
            .into_iter()
            .map(|i| self.train.windows[i])
            .collect();
        let mut rng = step_rng(self.seed, step, micro);
        let loss = denoise_loss(&self.planner, &self.train, &windows, &mut rng, self.device, true);
        (&loss / accum as f64).backward();
        Ok(loss.double_value(&[]))
    }

    fn tokens_per_step(&self) -> u64 {
        // Sentence slots per step (the planner's "tokens").
        (self.batch * self.planner.max_slots()) as u64
    }

    fn validate(&mut self) -> Option<(f64, serde_json::Map<String, serde_json::Value>)> {
        let set = self.valid.as_ref()?;
        Some((fixed_loss(&self.planner, set, self.batch, self.eval_batches, self.device), serde_json::Map::new()))
    }

    fn config_file(&self, tokenizer_hash: &str, provenance: Provenance) -> StageConfigFile<PlannerModel> {
        StageConfigFile {
            format_version: FORMAT_VERSION,
            kind: KIND.into(),
            model: self.planner.model.clone(),
            encoder: None,
            tokenizer_hash: tokenizer_hash.into(),
            provenance,
        }
    }
}

/// Runs (or resumes) stage `planner` into `--out`, which must hold a trained autoencoder.
pub fn train_planner(args: TrainArgs) -> Result<TrainReport> {
    let bundle = Bundle::new(&args.out);
    if !bundle.has_stage("autoencoder") {
        return Err(TrainError::Invalid(format!(
            "{} has no autoencoder; the planner learns the autoencoder's latents, so train it first: `plandiff train autoencoder --out {}`",
            args.out.display(),
            args.out.display()
        )));
    }
    let fresh = match &args.config {
        Some(c) if !args.resume => Some((c.planner()?.train.clone(), None)),
        _ => None,
    };
    let setup = setup_run::<PlannerModel>(&args, KIND, fresh)?;
    let (ae, _ae_vs, _ae_cfg, tokenizer) = crate::autoencoder::load_autoencoder(&bundle, args.device)?;
    if tokenizer.hash() != setup.tokenizer.hash() {
        return Err(TrainError::Invalid(format!(
            "--data {} was tokenized with another tokenizer than the autoencoder in {}",
            args.data.display(),
            args.out.display()
        )));
    }
    let ae_sha = file_sha256(&bundle.stage_dir("autoencoder").join("model.safetensors"))?;
    let d_latent = ae.encoder.config().d_latent;
    let model = match (&setup.resumed, &args.config) {
        (Some(c), _) => {
            if c.model.autoencoder_sha256 != ae_sha {
                return Err(TrainError::Invalid(format!(
                    "{}: the autoencoder changed since this planner run started; start a new planner run (remove {}/planner) instead of --resume",
                    args.out.display(),
                    args.out.display()
                )));
            }
            c.model.clone()
        }
        (None, Some(rc)) => {
            let s = rc.planner()?;
            s.objective.validate()?;
            let m = PlannerModel {
                denoiser: s.model.denoiser(d_latent),
                schedule: s.diffusion.clone(),
                objective: s.objective,
                sampling: s.sampling,
                autoencoder_sha256: ae_sha,
            };
            m.validate().map_err(|e| TrainError::Invalid(format!("config [planner]: {e}")))?;
            m
        }
        (None, None) => return Err(TrainError::Invalid("--config is required for a new run".into())),
    };
    let sp = tokenizer.special();
    for split in ["train", "valid"] {
        if let Ok(set) = TokenSet::open(&args.data, split) {
            if set.stats.tokenizer_hash != tokenizer.hash() {
                return Err(TrainError::Invalid(format!(
                    "--data {}: the {split} split was tokenized with another tokenizer than the bundle",
                    args.data.display()
                )));
            }
        }
    }
    let train_set = TokenSet::open(&args.data, "train")?;
    let train = LatentSet::encode(&ae.encoder, &train_set, sp, "training");
    drop(train_set);
    let valid = TokenSet::open(&args.data, "valid")
        .ok()
        .map(|v| LatentSet::encode(&ae.encoder, &v, sp, "validation"))
        .filter(|v| !v.windows.is_empty());
    let sampler = WindowSampler::over(train.windows.len(), setup.state.seed)?;
    seed_init(setup.state.seed);
    let vs = nn::VarStore::new(args.device);
    let mut planner = Planner::new(&vs.root(), &model)?;
    if setup.resumed.is_none() {
        planner.normalizer.fit(&train.latents);
    }
    let tc = setup.state.train.clone();
    let mut runner = PlannerRunner {
        planner,
        train,
        valid,
        sampler,
        batch: tc.batch_size,
        eval_batches: tc.eval_batches,
        seed: setup.state.seed,
        device: args.device,
    };
    run_loop(&mut runner, setup, vs, &args)
}

/// Loads `BUNDLE/planner`, checking that it was trained on the bundle's autoencoder.
pub fn load_planner(bundle: &Bundle, device: Device) -> Result<(Planner, nn::VarStore, StageConfigFile<PlannerModel>)> {
    let cfg = bundle.read_config_as::<PlannerModel>(KIND)?;
    let ae_sha = file_sha256(&bundle.stage_dir("autoencoder").join("model.safetensors"))?;
    if cfg.model.autoencoder_sha256 != ae_sha {
        return Err(TrainError::Invalid(format!(
            "{}: the planner was trained on another autoencoder than the one in this bundle; retrain it with `plandiff train planner`",
            bundle.root().display()
        )));
    }
    let mut vs = nn::VarStore::new(device);
    let planner = Planner::new(&vs.root(), &cfg.model)?;
    load_weights(&mut vs, &bundle.stage_dir(KIND).join("model.safetensors"))?;
    Ok((planner, vs, cfg))
}

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
    pub steps: usize,
}

/// Denoising loss and sampled-plan quality of `BUNDLE/planner` on a prepared split.
pub fn evaluate_planner(
    bundle: &Path,
    data: &Path,
    split: &str,
    batch: usize,
    max_batches: Option<usize>,
    device: Device,
) -> Result<PlannerEval> {
    let b = Bundle::new(bundle);
    let (ae, _ae_vs, _, tokenizer) = crate::autoencoder::load_autoencoder(&b, device)?;
    let (planner, _vs, _) = load_planner(&b, device)?;
    let set = TokenSet::open(data, split)?;
    if set.stats.tokenizer_hash != tokenizer.hash() {
        return Err(TrainError::Invalid(format!(
            "--data {} was tokenized with another tokenizer than the model",
            data.display()
        )));
    }
    let lat = LatentSet::encode(&ae.encoder, &set, tokenizer.special(), split);
    let usable: Vec<(usize, usize)> =
        lat.docs.iter().enumerate().filter(|(_, &(_, n))| n >= 2).map(|(d, _)| (d, 0)).collect();
    if usable.is_empty() {
        return Err(TrainError::Invalid(format!(
            "--data {}: the {split} split holds no document of two or more sentences",
            data.display()
        )));
    }
    let batches = max_batches.unwrap_or(8).max(1);
    let loss = fixed_loss(&planner, &lat, batch, batches, device);
    // Sampling: documents' first windows, first half known.
    let slots = planner.max_slots();
    let docs: Vec<(usize, usize)> = usable.iter().copied().take(batch * batches).collect();
    let steps = planner.model.sampling.steps;
    let mut noise = plandiff_planner::HostNoise::new(0x5eed, device);
    let mut rng = ChaCha8Rng::seed_from_u64(0x5eed);
    let total_sent = lat.latents.size()[0];
    let (mut cs, mut cr, mut cp, mut count) = (0f64, 0f64, 0f64, 0usize);
    for chunk in docs.chunks(batch.max(1)) {
        // Rows are grouped by window length so each sample runs unpadded.
        for len in 2..=slots {
            let rows: Vec<(usize, usize)> =
                chunk.iter().copied().filter(|&(d, _)| lat.docs[d].1.min(slots) == len).collect();
            if rows.is_empty() {
                continue;
            }
            let (x0, _, _) = window_batch(&lat, &rows, len, device);
            let k = len / 2;
            let mask: Vec<bool> = (0..len).map(|i| i < k).collect();
            let mask = Tensor::from_slice(&mask)
                .view([1, len as i64])
                .expand([rows.len() as i64, len as i64], false)
                .to_device(device);
            let z = planner.sample(&x0, &mask, planner.model.sampling.to_sampling(), |s| noise.sample(s))?;
            let cos = |a: &Tensor, b: &Tensor| Tensor::cosine_similarity(a, b, -1, 1e-8); // (B, n)
            let truth = x0.narrow(1, k as i64, (len - k) as i64);
            let sampled = z.narrow(1, k as i64, (len - k) as i64);
            let prev = x0.narrow(1, k as i64 - 1, 1).expand_as(&truth);
            let rand_idx: Vec<i64> = (0..rows.len() * (len - k)).map(|_| rng.gen_range(0..total_sent)).collect();
            let random = lat
                .latents
                .index_select(0, &Tensor::from_slice(&rand_idx).to_device(lat.latents.device()))
                .view([rows.len() as i64, (len - k) as i64, -1])
                .to_device(device);
            let n = (rows.len() * (len - k)) as f64;
            cs += cos(&sampled, &truth).sum(Kind::Double).double_value(&[]);
            cr += cos(&random, &truth).sum(Kind::Double).double_value(&[]);
            cp += cos(&prev, &truth).sum(Kind::Double).double_value(&[]);
            count += n as usize;
        }
    }
    let c = count.max(1) as f64;
    Ok(PlannerEval {
        windows: docs.len(),
        denoising_loss: loss,
        cosine_sampled: cs / c,
        cosine_random: cr / c,
        cosine_previous: cp / c,
        steps,
    })
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
