//! Stage `diffusion` (design section 3.5): Diffusion-LM over token embeddings of documents.
//!
//! Each training example is a document from its start (`<bos> s1 <sep> ... <eos>`), cut to
//! `seq_len` tokens and padded with `<pad>`, so the model learns where texts end and
//! chooses the length of what it writes by placing `<pad>`.

use crate::bundle::{load_weights, Bundle, ModelConfig, Provenance, StageConfigFile, FORMAT_VERSION};
use crate::trainer::{batch_indices, run_loop, seed_init, setup_run, step_rng, StageRunner, TrainArgs, TrainReport};
use crate::{Result, TrainError};
use plandiff_data::{index_documents, TextTokenizer, TokenSet, WindowSampler};
use plandiff_diffusion::{NoiseSchedule, PredictionType, ScheduleConfig};
use plandiff_embedding::{diffusion_lm_loss, TextDiffusion, TextDiffusionConfig};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::path::Path;
use tch::{nn, Device, Kind, Tensor};

pub const KIND: &str = "diffusion";

/// Sampling defaults stored with the model; each has a flag.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TextSamplingDefaults {
    pub steps: usize,
    pub sampler: plandiff_planner::SamplerName,
    pub eta: f64,
    /// The clamping trick.
    pub clamp: bool,
}

/// The `model` section of `BUNDLE/diffusion/config.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiffusionModel {
    pub model: TextDiffusionConfig,
    pub schedule: ScheduleConfig,
    /// Share of steps that first predict x0 without gradient and feed it back.
    pub self_condition_prob: f64,
    pub sampling: TextSamplingDefaults,
}

impl ModelConfig for DiffusionModel {
    fn validate(&self) -> std::result::Result<(), String> {
        self.model.validate()?;
        if self.schedule.prediction_type != PredictionType::Sample {
            return Err("diffusion: prediction_type must be \"sample\" (the model predicts x0)".into());
        }
        NoiseSchedule::new(self.schedule.clone()).map_err(|e| e.to_string())?;
        if self.sampling.steps == 0 || !(0.0..=1.0).contains(&self.sampling.eta) {
            return Err("diffusion sampling: steps must be >= 1 and eta in [0, 1]".into());
        }
        if !(0.0..=1.0).contains(&self.self_condition_prob) {
            return Err("diffusion: self_condition_prob must be in [0, 1]".into());
        }
        Ok(())
    }
}

/// Documents of a split as padded rows of `seq_len` tokens.
struct DocRows {
    rows: Vec<Vec<i64>>,
}

impl DocRows {
    fn open(dir: &Path, split: &str, tk: &TextTokenizer, seq_len: usize) -> Result<Self> {
        let set = TokenSet::open(dir, split)?;
        if set.stats.tokenizer_hash != tk.hash() {
            return Err(TrainError::Invalid(format!(
                "--data {}: the {split} split was tokenized with another tokenizer than the bundle",
                dir.display()
            )));
        }
        let sp = tk.special();
        let rows = index_documents(&set.tokens, sp)
            .iter()
            .map(|d| {
                let mut r: Vec<i64> =
                    set.tokens[d.start..d.end.min(d.start + seq_len)].iter().map(|&t| t as i64).collect();
                r.resize(seq_len, sp.pad as i64);
                r
            })
            .collect();
        Ok(Self { rows })
    }

    fn batch(&self, idx: &[usize], device: Device) -> Tensor {
        let l = self.rows[0].len() as i64;
        let flat: Vec<i64> = idx.iter().flat_map(|&i| self.rows[i].iter().copied()).collect();
        Tensor::from_slice(&flat).view([idx.len() as i64, l]).to_device(device)
    }
}

pub struct DiffusionBundle {
    pub model: TextDiffusion,
    pub schedule: NoiseSchedule,
    pub config: DiffusionModel,
}

struct DiffusionRunner {
    d: DiffusionBundle,
    train: DocRows,
    valid: Option<DocRows>,
    sampler: WindowSampler,
    batch: usize,
    eval_batches: usize,
    seed: u64,
    device: Device,
}

/// Mean validation loss parts.
struct ValLoss {
    total: f64,
    mse: f64,
    rounding_ce: f64,
}

impl DiffusionBundle {
    /// Diffusion-LM loss of rows `idx` of `set`; `rng` draws timesteps and self-conditioning.
    fn loss(
        &self,
        set: &DocRows,
        idx: &[usize],
        rng: &mut ChaCha8Rng,
        device: Device,
        train: bool,
    ) -> plandiff_embedding::LossParts {
        let tokens = set.batch(idx, device);
        let t_max = self.schedule.num_train_timesteps();
        let t: Vec<usize> = idx.iter().map(|_| rng.gen_range(0..t_max)).collect();
        let sc = self.model.config().self_condition && rng.gen::<f64>() < self.config.self_condition_prob;
        diffusion_lm_loss(&self.model, &self.schedule, &tokens, &t, sc, train)
    }

    /// Mean loss parts over `batches` fixed batches of `set` (fixed timesteps and noise).
    fn eval(&self, set: &DocRows, batch: usize, batches: usize, device: Device) -> ValLoss {
        let n = set.rows.len();
        let mut rng = ChaCha8Rng::seed_from_u64(0x5eed);
        tch::manual_seed(0x5eed);
        let (mut total, mut mse, mut rnd) = (0f64, 0f64, 0f64);
        tch::no_grad(|| {
            for b in 0..batches {
                let idx: Vec<usize> = (0..batch).map(|i| (b * batch + i) % n).collect();
                let l = self.loss(set, &idx, &mut rng, device, false);
                total += l.total.double_value(&[]);
                mse += l.mse.double_value(&[]);
                rnd += l.rounding.double_value(&[]);
            }
        });
        let k = batches.max(1) as f64;
        ValLoss { total: total / k, mse: mse / k, rounding_ce: rnd / k }
    }
}

/// Share of vocabulary tokens whose own (clean) embedding rounds back to them.
pub fn rounding_accuracy(net: &TextDiffusion) -> f64 {
    tch::no_grad(|| {
        let v = net.config().vocab_size;
        let ids = Tensor::arange(v, (Kind::Int64, net.device()));
        let back = net.round(&net.embed(&ids), net.config().rounding);
        back.eq_tensor(&ids).to_kind(Kind::Double).mean(Kind::Double).double_value(&[])
    })
}

impl StageRunner for DiffusionRunner {
    type Model = DiffusionModel;

    fn kind(&self) -> &'static str {
        KIND
    }

    fn micro_step(&mut self, step: u64, micro: usize, accum: usize) -> Result<f64> {
        let idx = batch_indices(&mut self.sampler, step, micro, accum, self.batch);
        let mut rng = step_rng(self.seed, step, micro);
        let l = self.d.loss(&self.train, &idx, &mut rng, self.device, true);
        (&l.total / accum as f64).backward();
        Ok(l.total.double_value(&[]))
    }

    fn tokens_per_step(&self) -> u64 {
        (self.batch * self.d.model.config().seq_len as usize) as u64
    }

    fn validate(&mut self) -> Option<(f64, serde_json::Map<String, serde_json::Value>)> {
        let set = self.valid.as_ref()?;
        let v = self.d.eval(set, self.batch, self.eval_batches, self.device);
        let mut extra = serde_json::Map::new();
        extra.insert("val_mse".into(), json!(v.mse));
        extra.insert("val_rounding_ce".into(), json!(v.rounding_ce));
        extra.insert("rounding_accuracy".into(), json!(rounding_accuracy(&self.d.model)));
        Some((v.total, extra))
    }

    fn config_file(&self, tokenizer_hash: &str, provenance: Provenance) -> StageConfigFile<DiffusionModel> {
        StageConfigFile {
            format_version: FORMAT_VERSION,
            kind: KIND.into(),
            model: self.d.config.clone(),
            encoder: None,
            tokenizer_hash: tokenizer_hash.into(),
            provenance,
        }
    }
}

/// Runs (or resumes) stage `diffusion`.
pub fn train_diffusion(args: TrainArgs) -> Result<TrainReport> {
    let fresh = match &args.config {
        Some(c) if !args.resume => Some((c.diffusion()?.train.clone(), None)),
        _ => None,
    };
    let setup = setup_run::<DiffusionModel>(&args, KIND, fresh)?;
    let vocab = setup.tokenizer.vocab_size() as i64;
    let model = match (&setup.resumed, &args.config) {
        (Some(c), _) => c.model.clone(),
        (None, Some(rc)) => {
            let s = rc.diffusion()?;
            let m = DiffusionModel {
                model: s.model.config(vocab),
                schedule: s.diffusion.clone(),
                self_condition_prob: s.self_condition_prob,
                sampling: s.sampling,
            };
            m.validate().map_err(|e| TrainError::Invalid(format!("config [diffusion]: {e}")))?;
            m
        }
        (None, None) => return Err(TrainError::Invalid("--config is required for a new run".into())),
    };
    let seq_len = model.model.seq_len as usize;
    let train = DocRows::open(&args.data, "train", &setup.tokenizer, seq_len)?;
    if train.rows.is_empty() {
        return Err(TrainError::Invalid(format!(
            "--data {}: no complete document in the train split",
            args.data.display()
        )));
    }
    let valid = DocRows::open(&args.data, "valid", &setup.tokenizer, seq_len).ok().filter(|v| !v.rows.is_empty());
    let sampler = WindowSampler::over(train.rows.len(), setup.state.seed)?;
    seed_init(setup.state.seed);
    let vs = nn::VarStore::new(args.device);
    let net = TextDiffusion::new(vs.root(), &model.model);
    let schedule = NoiseSchedule::new(model.schedule.clone()).map_err(|e| TrainError::Invalid(e.to_string()))?;
    let tc = setup.state.train.clone();
    let mut runner = DiffusionRunner {
        d: DiffusionBundle { model: net, schedule, config: model },
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

/// Loads `BUNDLE/diffusion` with its tokenizer (hash and vocabulary checked).
pub fn load_diffusion(bundle: &Bundle, device: Device) -> Result<(DiffusionBundle, nn::VarStore, TextTokenizer)> {
    if !bundle.root().is_dir() {
        return Err(TrainError::Invalid(format!(
            "{}: no such folder; point --checkpoint at a bundle made by `plandiff train`",
            bundle.root().display()
        )));
    }
    let cfg = bundle.read_config_as::<DiffusionModel>(KIND)?;
    let tokenizer = bundle.load_tokenizer()?;
    if tokenizer.hash() != cfg.tokenizer_hash || tokenizer.vocab_size() as i64 != cfg.model.model.vocab_size {
        return Err(TrainError::Invalid(format!(
            "{}: this tokenizer is not the one the diffusion model was trained with; put the model's own tokenizer.json back",
            bundle.tokenizer_path().display()
        )));
    }
    let mut vs = nn::VarStore::new(device);
    let model = TextDiffusion::new(vs.root(), &cfg.model.model);
    load_weights(&mut vs, &bundle.stage_dir(KIND).join("model.safetensors"))?;
    let schedule = NoiseSchedule::new(cfg.model.schedule.clone()).map_err(|e| TrainError::Invalid(e.to_string()))?;
    Ok((DiffusionBundle { model, schedule, config: cfg.model }, vs, tokenizer))
}

/// `plandiff eval --stage diffusion`.
#[derive(Debug, Clone, Serialize)]
pub struct DiffusionEval {
    /// Share of vocabulary tokens whose clean embedding rounds back to them.
    pub rounding_accuracy: f64,
    pub loss: f64,
    pub mse: f64,
    pub rounding_ce: f64,
    pub documents: usize,
}

pub fn evaluate_diffusion(
    bundle: &Path,
    data: &Path,
    split: &str,
    batch: usize,
    max_batches: Option<usize>,
    device: Device,
) -> Result<DiffusionEval> {
    let b = Bundle::new(bundle);
    let (d, _vs, tk) = load_diffusion(&b, device)?;
    let set = DocRows::open(data, split, &tk, d.config.model.seq_len as usize)?;
    if set.rows.is_empty() {
        return Err(TrainError::Invalid(format!(
            "--data {}: no complete document in the {split} split",
            data.display()
        )));
    }
    let n = set.rows.len();
    let batch = batch.max(1);
    let batches = max_batches.unwrap_or_else(|| n.div_ceil(batch)).max(1);
    let v = d.eval(&set, batch, batches, device);
    Ok(DiffusionEval {
        rounding_accuracy: rounding_accuracy(&d.model),
        loss: v.total,
        mse: v.mse,
        rounding_ce: v.rounding_ce,
        documents: n.min(batches * batch),
    })
}
