//! Stage `diffusion` (docs/design.md, section 3.5): Diffusion-LM over token embeddings of documents.
//!
//! Each training example is a document from its start (`<bos> s1 <sep> ... <eos>`), cut to
//! `seq_len` tokens and padded with `<pad>`, so the model learns where texts end and
//! chooses the length of what it writes by placing `<pad>`.

use crate::config::{RunConfig, TrainConfig};
use crate::stages::{EvalRequest, Section, Stage, StageEval};
use crate::trainer::{
    fresh_section, rank_rng, run_loop, seed_init, setup_run, Feed, StageRunner, TrainArgs, TrainReport,
};
use crate::{Result, TrainError};
use plandiff_bundle::{
    load_diffusion, open_split, stage, Bundle, DiffusionBundle, DiffusionModel, ModelConfig, Provenance,
    StageConfigFile, TextSamplingDefaults,
};
use plandiff_data::{index_documents, TextTokenizer, WindowSampler};
use plandiff_embedding::{diffusion_lm_loss, TextDiffusion};
use plandiff_layers::TransformerShape;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::path::Path;
use tch::{nn, Device, Kind, Tensor};

const KIND: &str = stage::DIFFUSION;
const ABOUT: &str = "Diffusion-LM over token embeddings (the pure-diffusion mode)";

/// Stage `diffusion` of [`crate::registry::STAGES`].
pub const STAGE: Stage =
    Stage::new::<DiffusionSection, DiffusionModel>(KIND, ABOUT, train_diffusion, evaluate, DESCRIBE);

/// `[diffusion]`: the pure-diffusion model over token embeddings (Diffusion-LM).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiffusionSection {
    pub model: TextDiffusionSection,
    /// The noise schedule (diffusers' names; Diffusion-LM uses `sqrt`); the model predicts
    /// x0, so `prediction_type = "sample"`.
    pub diffusion: plandiff_diffusion::ScheduleConfig,
    pub self_condition_prob: f64,
    pub sampling: TextSamplingDefaults,
    /// `batch_size` counts documents; `seq_len` is unused (`model.seq_len` is the length).
    pub train: TrainConfig,
}

impl DiffusionSection {
    /// The model a fresh run builds for a vocabulary of `vocab` tokens.
    pub fn model(&self, vocab: i64) -> Result<DiffusionModel> {
        let m = DiffusionModel {
            model: self.model.config(vocab),
            schedule: self.diffusion.clone(),
            self_condition_prob: self.self_condition_prob,
            sampling: self.sampling,
        };
        m.validate().map_err(|e| TrainError::Invalid(format!("config [diffusion]: {e}")))?;
        Ok(m)
    }
}

impl Section for DiffusionSection {
    fn check(&self, _config: &RunConfig, vocab_size: i64) -> Result<()> {
        self.model(vocab_size).map(drop)
    }
}

/// Architecture of the text denoiser; the vocabulary comes from the data's tokenizer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TextDiffusionSection {
    pub d_emb: i64,
    pub seq_len: i64,
    #[serde(flatten)]
    pub shape: TransformerShape,
    pub self_condition: bool,
    pub rounding: plandiff_embedding::Rounding,
}

impl TextDiffusionSection {
    pub fn config(&self, vocab_size: i64) -> plandiff_embedding::TextDiffusionConfig {
        plandiff_embedding::TextDiffusionConfig {
            vocab_size,
            d_emb: self.d_emb,
            seq_len: self.seq_len,
            shape: self.shape,
            self_condition: self.self_condition,
            rounding: self.rounding,
        }
    }
}

/// A split's documents as padded rows of `seq_len` tokens, one from every sentence of a
/// document: `<bos>`, then the document from that sentence on (to its `<eos>`), so the model
/// learns every part of a story, not only its first `seq_len` tokens.
struct DocRows {
    tokens: Vec<u32>,
    /// (first token, document end) of every row, the row's `<bos>` not counted.
    windows: Vec<(usize, usize)>,
    seq_len: usize,
    bos: i64,
    pad: i64,
}

impl DocRows {
    fn open(dir: &Path, split: &str, tk: &TextTokenizer, seq_len: usize) -> Result<Self> {
        let set = open_split(dir, split, tk)?;
        let sp = tk.special();
        let windows = index_documents(&set.tokens, sp)
            .iter()
            .flat_map(|d| d.sentences.iter().map(move |&(s, _)| (s, d.end)))
            .collect();
        Ok(Self { tokens: set.tokens, windows, seq_len, bos: sp.bos as i64, pad: sp.pad as i64 })
    }

    fn len(&self) -> usize {
        self.windows.len()
    }

    fn is_empty(&self) -> bool {
        self.windows.is_empty()
    }

    fn batch(&self, idx: &[usize], device: Device) -> Tensor {
        let l = self.seq_len;
        let mut flat = Vec::with_capacity(idx.len() * l);
        for &i in idx {
            let (s, end) = self.windows[i];
            let e = end.min(s + l - 1);
            flat.push(self.bos);
            flat.extend(self.tokens[s..e].iter().map(|&t| t as i64));
            flat.extend(std::iter::repeat_n(self.pad, l - 1 - (e - s)));
        }
        Tensor::from_slice(&flat).view([idx.len() as i64, l as i64]).to_device(device)
    }
}

struct DiffusionRunner {
    feed: Feed,
    d: DiffusionBundle,
    train: DocRows,
    valid: Option<DocRows>,
}

/// Mean validation loss parts.
struct ValLoss {
    total: f64,
    mse: f64,
    rounding_ce: f64,
}

/// Diffusion-LM loss of rows `idx` of `set`; `rng` draws timesteps and self-conditioning.
fn batch_loss(
    d: &DiffusionBundle,
    set: &DocRows,
    idx: &[usize],
    rng: &mut ChaCha8Rng,
    device: Device,
    train: bool,
) -> plandiff_embedding::LossParts {
    let tokens = set.batch(idx, device);
    let t_max = d.schedule.num_train_timesteps();
    let t: Vec<usize> = idx.iter().map(|_| rng.gen_range(0..t_max)).collect();
    let sc = d.model.config().self_condition && rng.gen::<f64>() < d.config.self_condition_prob;
    diffusion_lm_loss(&d.model, &d.schedule, &tokens, &t, sc, train)
}

/// Mean loss parts over `batches` fixed batches of `set` (fixed timesteps and noise).
fn fixed_loss(d: &DiffusionBundle, set: &DocRows, batch: usize, batches: usize, device: Device) -> ValLoss {
    let n = set.len();
    let mut rng = ChaCha8Rng::seed_from_u64(0x5eed);
    tch::manual_seed(0x5eed);
    let (mut total, mut mse, mut rnd) = (0f64, 0f64, 0f64);
    tch::no_grad(|| {
        for b in 0..batches {
            let idx: Vec<usize> = (0..batch).map(|i| (b * batch + i) % n).collect();
            let l = batch_loss(d, set, &idx, &mut rng, device, false);
            total += l.total.double_value(&[]);
            mse += l.mse.double_value(&[]);
            rnd += l.rounding.double_value(&[]);
        }
    });
    let k = batches.max(1) as f64;
    ValLoss { total: total / k, mse: mse / k, rounding_ce: rnd / k }
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
    const KIND: &'static str = KIND;

    fn micro_step(&mut self, step: u64, micro: usize, accum: usize) -> Result<f64> {
        let idx = self.feed.indices(step, micro, accum);
        let mut rng = rank_rng(self.feed.seed, step, micro, self.feed.shard);
        let l = batch_loss(&self.d, &self.train, &idx, &mut rng, self.feed.device, true);
        (&l.total / accum as f64).backward();
        Ok(l.total.double_value(&[]))
    }

    fn tokens_per_step(&self) -> u64 {
        (self.feed.batch * self.d.model.config().seq_len as usize) as u64
    }

    fn validate(&mut self) -> Option<(f64, serde_json::Map<String, serde_json::Value>)> {
        let set = self.valid.as_ref()?;
        let v = fixed_loss(
            &self.d,
            set,
            self.feed.batch * self.feed.shard.world_size,
            self.feed.eval_batches,
            self.feed.device,
        );
        let mut extra = serde_json::Map::new();
        extra.insert("val_mse".into(), json!(v.mse));
        extra.insert("val_rounding_ce".into(), json!(v.rounding_ce));
        extra.insert("rounding_accuracy".into(), json!(rounding_accuracy(&self.d.model)));
        Some((v.total, extra))
    }

    fn config_file(&self, tokenizer_hash: &str, provenance: Provenance) -> StageConfigFile<DiffusionModel> {
        StageConfigFile::new(KIND, self.d.config.clone(), tokenizer_hash, provenance)
    }
}

/// Runs (or resumes) stage `diffusion`.
pub fn train_diffusion(args: TrainArgs) -> Result<TrainReport> {
    let section = fresh_section::<DiffusionSection>(&args, KIND)?;
    let setup = setup_run::<DiffusionModel>(&args, KIND, section.as_ref().map(|s| (s.train.clone(), None)))?;
    let model = match (&setup.resumed, section) {
        (Some(c), _) => c.model.clone(),
        (None, Some(s)) => s.model(setup.tokenizer.vocab_size() as i64)?,
        (None, None) => return Err(TrainError::Invalid("--config is required for a new run".into())),
    };
    let seq_len = model.model.seq_len as usize;
    let train = DocRows::open(&args.data, "train", &setup.tokenizer, seq_len)?;
    if train.is_empty() {
        return Err(TrainError::Invalid(format!(
            "--data {}: no complete document in the train split",
            args.data.display()
        )));
    }
    let valid = DocRows::open(&args.data, "valid", &setup.tokenizer, seq_len).ok().filter(|v| !v.is_empty());
    let sampler = WindowSampler::over(train.len(), setup.state.seed)?;
    seed_init(setup.state.seed);
    let vs = nn::VarStore::new(args.device);
    let d =
        DiffusionBundle::new(vs.root(), model).map_err(|e| TrainError::Invalid(format!("config [diffusion]: {e}")))?;
    let mut runner = DiffusionRunner { d, train, valid, feed: Feed::new(sampler, &args, &setup.state) };
    run_loop(&mut runner, setup, vs, &args)
}

/// `plandiff info`'s line for the stage's config.json (a [`crate::stages::render`] template).
const DESCRIBE: &str = "{parameters} parameters (d_emb {model.model.d_emb}, {model.model.seq_len} positions, d_model {model.model.d_model}, {model.model.n_layers} layers; {model.schedule.beta_schedule} schedule, {model.sampling.sampler} {model.sampling.steps} steps by default), {provenance.steps} steps, val loss {provenance.val_loss:loss}";

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

pub fn evaluate_diffusion(req: &EvalRequest) -> Result<DiffusionEval> {
    let l = load_diffusion(&Bundle::open(req.bundle)?, req.device)?;
    let d = &l.diffusion;
    let set = DocRows::open(req.data, req.split, &l.tokenizer, d.config.model.seq_len as usize)?;
    if set.is_empty() {
        return Err(TrainError::Invalid(format!(
            "{}: no complete document in the {} split",
            req.data.display(),
            req.split
        )));
    }
    let n = set.len();
    let batch = req.batch.max(1);
    let batches = req.max_batches.unwrap_or_else(|| n.div_ceil(batch)).max(1);
    let v = fixed_loss(d, &set, batch, batches, req.device);
    Ok(DiffusionEval {
        rounding_accuracy: rounding_accuracy(&d.model),
        loss: v.total,
        mse: v.mse,
        rounding_ce: v.rounding_ce,
        documents: n.min(batches * batch),
    })
}

/// `plandiff eval --stage diffusion`'s line (a [`crate::stages::render`] template over its result).
const SUMMARY: &str = "{split} split, {documents} documents: rounding accuracy on clean embeddings {rounding_accuracy:.4}; loss {loss:.4} (x0 MSE {mse:.4}, rounding CE {rounding_ce:.4})";

fn evaluate(req: &EvalRequest) -> Result<StageEval> {
    StageEval::nested(&evaluate_diffusion(req)?, req.split, SUMMARY)
}
