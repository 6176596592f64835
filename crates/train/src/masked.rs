//! Stage `masked`: absorbing-state discrete diffusion (MDLM / LLaDA) over token rows.
//!
//! Each row is `seq_len` tokens from a document's `<bos>` on, running into the documents
//! after it (packed, as LLaDA pretrains), so the model learns where a text ends (`<eos>`) and
//! what follows. Per row: `t` from an antithetic draw, each token after `<bos>` masked with
//! probability `p(t) = (1 - eps) t + eps`; with `prompt_prob` a random prefix stays unmasked
//! (continuation); with `random_length_prob` the batch is cut to a random length. The loss
//! is the cross-entropy on masked positions weighted by `1 / p(t)`, normalised by `B x L`: an
//! upper bound (NELBO) on the data's negative log-likelihood, which `eval` reports per token
//! as a perplexity bound.

use crate::config::{RunConfig, TrainConfig};
use crate::objectives::{MaskedConfig, MaskedObjective};
use crate::setup::{ar_to_start_from, copy_ar_weights};
use crate::stages::{EvalRequest, Section, Stage, StageEval};
use crate::trainer::{
    fresh_section, rank_rng, run_loop, seed_init, setup_run, Feed, StageRunner, TrainArgs, TrainReport,
};
use crate::{Result, TrainError};
use plandiff_bundle::{
    load_masked, open_split, stage, Bundle, MaskedModel, MaskedSamplingDefaults, ModelConfig, Provenance,
    StageConfigFile,
};
use plandiff_data::{index_documents, TextTokenizer, WindowSampler};
use plandiff_layers::TransformerShape;
use plandiff_masked::{antithetic_times, mask_prob, objective_weights, substitute, MaskedLm, MaskedLmConfig};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::path::Path;
use tch::{nn, Device, Kind, Tensor};

const KIND: &str = stage::MASKED;
const ABOUT: &str = "masked (absorbing-state) diffusion over tokens, MDLM / LLaDA (the masked mode)";

/// Stage `masked` of [`crate::registry::STAGES`].
pub const STAGE: Stage = Stage::new::<MaskedSection, MaskedConfig>(KIND, ABOUT, train_masked, evaluate, DESCRIBE);

/// `[masked]`: the masked diffusion model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaskedSection {
    /// Start from the bundle's `ar` model (same d_model, layers, heads, d_ff, norm; a context
    /// of at least seq_len): its embeddings, positions, blocks and final norm, attention made
    /// bidirectional (as Dream and DiffuLLaMA start from AR models). Train `ar` first.
    #[serde(default)]
    pub init_from_ar: bool,
    pub model: MaskedLmSection,
    pub objective: MaskedObjective,
    pub sampling: MaskedSamplingDefaults,
    /// `batch_size` counts rows; `seq_len` is unused (`model.seq_len` is the length).
    pub train: TrainConfig,
}

/// Architecture of the denoiser; the vocabulary comes from the data's tokenizer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaskedLmSection {
    pub seq_len: i64,
    #[serde(flatten)]
    pub shape: TransformerShape,
}

impl MaskedSection {
    /// The model a fresh run builds for a vocabulary of `vocab` tokens.
    pub fn model(&self, vocab: i64) -> Result<MaskedConfig> {
        let s = &self.model;
        let model = MaskedLmConfig { vocab_size: vocab, seq_len: s.seq_len, shape: s.shape };
        let m = MaskedModel { model, objective: self.objective, sampling: self.sampling };
        m.validate().map_err(|e| TrainError::Invalid(format!("config [masked]: {e}")))?;
        Ok(m)
    }
}

impl Section for MaskedSection {
    fn check(&self, _config: &RunConfig, vocab_size: i64) -> Result<()> {
        self.model(vocab_size).map(drop)
    }
}

/// Rows of `seq_len` tokens, one from every sentence of a document: `<bos>`, then the stream
/// from that sentence on (packed into the documents after it; `<pad>` only past the end of the
/// split), so every part of a story is learned, not only its first `seq_len` tokens. A row from
/// a document's first sentence is the document from its own `<bos>`.
struct PackedRows {
    tokens: Vec<u32>,
    /// First token of every row after its `<bos>`.
    starts: Vec<usize>,
    seq_len: usize,
    bos: i64,
    pad: i64,
}

impl PackedRows {
    fn open(dir: &Path, split: &str, tk: &TextTokenizer, seq_len: usize) -> Result<Self> {
        let set = open_split(dir, split, tk)?;
        let sp = tk.special();
        let starts =
            index_documents(&set.tokens, sp).iter().flat_map(|d| d.sentences.iter().map(|&(s, _)| s)).collect();
        Ok(Self { tokens: set.tokens, starts, seq_len, bos: sp.bos as i64, pad: sp.pad as i64 })
    }

    /// `(B, seq_len)` rows starting at sentences `idx`.
    fn batch(&self, idx: &[usize], device: Device) -> Tensor {
        let l = self.seq_len;
        let mut flat = Vec::with_capacity(idx.len() * l);
        for &i in idx {
            let s = self.starts[i];
            let end = (s + l - 1).min(self.tokens.len());
            flat.push(self.bos);
            flat.extend(self.tokens[s..end].iter().map(|&t| t as i64));
            flat.extend(std::iter::repeat_n(self.pad, l - 1 - (end - s)));
        }
        Tensor::from_slice(&flat).view([idx.len() as i64, l as i64]).to_device(device)
    }
}

/// The host draws of one batch: times, given prefix lengths, and the batch's length.
struct Draw {
    t: Vec<f64>,
    prompt: Vec<i64>,
    len: i64,
}

impl Draw {
    /// `train`: with the objective's prompts and random lengths; else none (evaluation).
    fn new(rng: &mut ChaCha8Rng, rows: usize, seq_len: i64, obj: &MaskedObjective, train: bool) -> Self {
        let t = antithetic_times(rows, rng.gen());
        let len = if train && seq_len > 2 && rng.gen::<f64>() < obj.random_length_prob {
            rng.gen_range(2..=seq_len)
        } else {
            seq_len
        };
        // Position 0 (`<bos>`) is always given, as it is when the model writes.
        let prompt = (0..rows)
            .map(|_| if train && len > 2 && rng.gen::<f64>() < obj.prompt_prob { rng.gen_range(1..len) } else { 1 })
            .collect();
        Self { t, prompt, len }
    }
}

/// What realistic corruption ([`MaskedObjective::substitute_prob`]) draws from.
struct Corruption {
    /// `(V, k)` nearest tokens in the bundle's ar embeddings (fixed while the stage trains, so
    /// a resumed run draws the same); `None` without an ar model: random tokens instead.
    neighbours: Option<Tensor>,
    special: Vec<i64>,
}

/// Rows of the neighbour table.
const NEIGHBOURS: i64 = 8;

impl Corruption {
    fn new(bundle: &Bundle, tk: &TextTokenizer, vocab: i64, device: Device) -> Result<Self> {
        let sp = tk.special();
        let special = [sp.bos, sp.eos, sp.sep, sp.pad].iter().map(|&t| t as i64).collect();
        let mut neighbours = None;
        if bundle.has_stage(stage::AR) {
            let wte = plandiff_bundle::read_weights(&bundle.weights_path(stage::AR))?
                .into_iter()
                .find(|(n, _)| n == "wte.weight")
                .map(|(_, t)| t)
                .filter(|t| t.size().first() == Some(&vocab));
            neighbours = wte.map(|w| plandiff_masked::neighbour_table(&w.to_device(device), NEIGHBOURS));
        }
        if neighbours.is_none() {
            tracing::warn!(
                "substitute_prob: no ar model of this vocabulary in the bundle; close substitutes are random tokens"
            );
        }
        Ok(Self { neighbours, special })
    }
}

/// The weighted loss of `tokens` `(B, L)` under `draw`; the mask draws come from libtorch's
/// generator (reseeded every step, so resume stays exact). With `corrupt`, a share of the
/// visible tokens is substituted and predicted too ([`MaskedObjective::substitute_prob`]).
fn batch_loss(
    model: &MaskedLm,
    obj: &MaskedObjective,
    tokens: &Tensor,
    draw: &Draw,
    train: bool,
    corrupt: Option<&Corruption>,
) -> Tensor {
    let tokens = tokens.narrow(1, 0, draw.len);
    let (b, l) = (tokens.size()[0], draw.len);
    let dev = tokens.device();
    let p: Vec<f64> = draw.t.iter().map(|&t| mask_prob(t, obj.eps)).collect();
    let p_t = Tensor::from_slice(&p).to_device(dev).view([b, 1]);
    let prompt = Tensor::from_slice(&draw.prompt).to_device(dev).view([b, 1]);
    let pos = Tensor::arange(l, (Kind::Int64, dev)).view([1, l]);
    let masked = Tensor::rand([b, l], (Kind::Double, dev)).lt_tensor(&p_t).logical_and(&pos.ge_tensor(&prompt));
    let input = tokens.masked_fill(&masked, model.config().mask_id());
    let Some(c) = corrupt.filter(|_| obj.substitute_prob > 0.0) else {
        return model.weighted_loss(&input, train, &tokens, &objective_weights(&masked, &p, None));
    };
    let mut eligible = masked.logical_not().logical_and(&pos.ge_tensor(&prompt));
    for &s in &c.special {
        eligible = eligible.logical_and(&tokens.ne(s));
    }
    // Substitutes are drawn from the clean row (never the mask), then the masks go back on.
    let (sub, picked) = substitute(&tokens, &eligible, obj.substitute_prob, c.neighbours.as_ref(), &c.special);
    let input = sub.masked_fill(&masked, model.config().mask_id());
    // The head and the loss fused: the masked positions' and the substituted ones' terms in one pass.
    model.weighted_loss(&input, train, &tokens, &objective_weights(&masked, &p, Some(&picked)))
}

struct MaskedRunner {
    feed: Feed,
    model: MaskedLm,
    config: MaskedConfig,
    train: PackedRows,
    valid: Option<PackedRows>,
    corrupt: Option<Corruption>,
}

/// NELBO over `batches` fixed batches of `set` (fixed draws): (mean loss, nats per token, rows).
fn nelbo(model: &MaskedLm, cfg: &MaskedConfig, set: &PackedRows, batch: usize, batches: usize) -> (f64, f64, usize) {
    let n = set.starts.len();
    let mut rng = <ChaCha8Rng as rand::SeedableRng>::seed_from_u64(0x6d61736b);
    tch::manual_seed(0x6d61736b);
    let (mut loss_sum, mut nats, mut tokens, mut rows) = (0f64, 0f64, 0f64, 0usize);
    tch::no_grad(|| {
        for b in 0..batches {
            let idx: Vec<usize> = (0..batch).map(|i| (b * batch + i) % n).collect();
            let x = set.batch(&idx, model.device());
            let draw = Draw::new(&mut rng, idx.len(), cfg.model.seq_len, &cfg.objective, false);
            let l = batch_loss(model, &cfg.objective, &x, &draw, false, None).double_value(&[]);
            loss_sum += l;
            nats += l * (idx.len() as f64) * draw.len as f64;
            // Tokens the bound covers: every position after `<bos>` that is not padding.
            tokens += x.narrow(1, 1, draw.len - 1).ne(set.pad).sum(Kind::Int64).double_value(&[]);
            rows += idx.len();
        }
    });
    (loss_sum / batches.max(1) as f64, nats / tokens.max(1.0), rows)
}

impl StageRunner for MaskedRunner {
    type Model = MaskedConfig;
    const KIND: &'static str = KIND;

    fn micro_step(&mut self, step: u64, micro: usize, accum: usize) -> Result<f64> {
        let idx = self.feed.indices(step, micro, accum);
        let mut rng = rank_rng(self.feed.seed, step, micro, self.feed.shard);
        let x = self.train.batch(&idx, self.feed.device);
        let draw = Draw::new(&mut rng, idx.len(), self.config.model.seq_len, &self.config.objective, true);
        let l = batch_loss(&self.model, &self.config.objective, &x, &draw, true, self.corrupt.as_ref());
        (&l / accum as f64).backward();
        Ok(l.double_value(&[]))
    }

    fn tokens_per_step(&self) -> u64 {
        (self.feed.batch * self.config.model.seq_len as usize) as u64
    }

    fn validate(&mut self) -> Option<(f64, serde_json::Map<String, serde_json::Value>)> {
        let set = self.valid.as_ref()?;
        let (loss, per_token, _) =
            nelbo(&self.model, &self.config, set, self.feed.batch * self.feed.shard.world_size, self.feed.eval_batches);
        let mut extra = serde_json::Map::new();
        extra.insert("val_nelbo_per_token".into(), json!(per_token));
        extra.insert("val_perplexity_bound".into(), json!(per_token.exp()));
        Some((loss, extra))
    }

    fn config_file(&self, tokenizer_hash: &str, provenance: Provenance) -> StageConfigFile<MaskedConfig> {
        StageConfigFile::new(KIND, self.config.clone(), tokenizer_hash, provenance)
    }
}

/// Runs (or resumes) stage `masked`.
pub fn train_masked(args: TrainArgs) -> Result<TrainReport> {
    let section = fresh_section::<MaskedSection>(&args, KIND)?;
    let setup = setup_run::<MaskedConfig>(&args, KIND, section.as_ref().map(|s| (s.train.clone(), None)))?;
    let init_from_ar = section.as_ref().is_some_and(|s| s.init_from_ar);
    let config = match (&setup.resumed, section) {
        (Some(c), _) => c.model.clone(),
        (None, Some(s)) => s.model(setup.tokenizer.vocab_size() as i64)?,
        (None, None) => return Err(TrainError::Invalid("--config is required for a new run".into())),
    };
    let seq_len = config.model.seq_len as usize;
    let train = PackedRows::open(&args.data, "train", &setup.tokenizer, seq_len)?;
    if train.starts.is_empty() {
        return Err(TrainError::Invalid(format!(
            "--data {}: no complete document in the train split",
            args.data.display()
        )));
    }
    let valid = PackedRows::open(&args.data, "valid", &setup.tokenizer, seq_len).ok().filter(|v| !v.starts.is_empty());
    let sampler = WindowSampler::over(train.starts.len(), setup.state.seed)?;
    seed_init(setup.state.seed);
    let vs = nn::VarStore::new(args.device);
    let model = MaskedLm::new(vs.root(), &config.model);
    if init_from_ar && setup.resumed.is_none() {
        let n = init_from_ar_model(&vs, &setup.bundle, &config.model)?;
        tracing::info!(tensors = n, "masked model initialized from {}", setup.bundle.stage_dir(stage::AR).display());
    }
    let corrupt = if config.objective.substitute_prob > 0.0 {
        Some(Corruption::new(&setup.bundle, &setup.tokenizer, config.model.vocab_size, args.device)?)
    } else {
        None
    };
    let feed = Feed::new(sampler, &args, &setup.state);
    let mut runner = MaskedRunner { model, config, train, valid, corrupt, feed };
    run_loop(&mut runner, setup, vs, &args)
}

/// Copies the bundle's `ar` weights into the masked model: `wte` into its first
/// `vocab_size` rows (the mask's row keeps its fresh value), the first `seq_len` rows of
/// `wpe`, and every block and the final norm. Returns the number of tensors copied.
fn init_from_ar_model(vs: &nn::VarStore, bundle: &Bundle, m: &MaskedLmConfig) -> Result<usize> {
    let (what, fix) = (
        "[masked] init_from_ar",
        "train `ar` into the same --out first with the masked model's d_model, n_layers, n_heads, d_ff and norm, or set init_from_ar = false",
    );
    let ar = ar_to_start_from(bundle, what, fix)?;
    let (a, s) = (ar.shape, m.shape);
    let same = (ar.vocab_size, a.d_model, a.n_layers, a.n_heads, a.d_ff, a.norm)
        == (m.vocab_size, s.d_model, s.n_layers, s.n_heads, s.d_ff, s.norm);
    if !same || ar.plan.is_some() || ar.max_seq_len < m.seq_len {
        return Err(TrainError::Invalid(format!(
            "{what}: the ar model (d_model {}, {} layers, {} heads, d_ff {}, context {}) does not fit [masked.model] (d_model {}, {} layers, {} heads, d_ff {}, seq_len {}); {fix}",
            a.d_model, a.n_layers, a.n_heads, a.d_ff, ar.max_seq_len, s.d_model, s.n_layers, s.n_heads, s.d_ff, m.seq_len
        )));
    }
    copy_ar_weights(vs, bundle, what, fix, |vars, name, src| {
        let dst = vars.get(name)?;
        let dst = if name == "wte.weight" { dst.narrow(0, 0, m.vocab_size) } else { dst.shallow_clone() };
        let src = if name == "wpe.weight" { src.narrow(0, 0, m.seq_len) } else { src };
        Some((dst, src))
    })
}

/// `plandiff info`'s line for the stage's config.json (a [`crate::stages::render`] template).
const DESCRIBE: &str = "{parameters} parameters ({model.model.seq_len} positions, d_model {model.model.d_model}, {model.model.n_layers} layers; {model.sampling.steps} steps, block {model.sampling.block_length}, {model.sampling.remasking} remasking by default), {provenance.steps} steps, val loss {provenance.val_loss:loss}";

/// `plandiff eval --stage masked`.
#[derive(Debug, Clone, Serialize)]
pub struct MaskedEval {
    /// The training objective (weighted cross-entropy per position), fixed draws.
    pub loss: f64,
    /// The NELBO per token (positions after `<bos>` that are not padding).
    pub nelbo_per_token: f64,
    /// `exp(nelbo_per_token)`: an upper bound on the perplexity.
    pub perplexity_bound: f64,
    pub rows: usize,
    pub seq_len: i64,
}

pub fn evaluate_masked(req: &EvalRequest) -> Result<MaskedEval> {
    let l = load_masked(&Bundle::open(req.bundle)?, req.device)?;
    let seq_len = l.config.model.seq_len;
    let set = PackedRows::open(req.data, req.split, &l.tokenizer, seq_len as usize)?;
    if set.starts.is_empty() {
        return Err(TrainError::Invalid(format!(
            "{}: no complete document in the {} split",
            req.data.display(),
            req.split
        )));
    }
    let batch = req.batch.max(1);
    let batches = req.max_batches.unwrap_or_else(|| set.starts.len().div_ceil(batch)).max(1);
    let cfg = MaskedModel {
        model: l.config.model.clone(),
        objective: crate::objectives::typed::<MaskedObjective>(&l.config.objective, "masked")?,
        sampling: l.config.sampling,
    };
    let (loss, per_token, rows) = nelbo(&l.model, &cfg, &set, batch, batches);
    Ok(MaskedEval { loss, nelbo_per_token: per_token, perplexity_bound: per_token.exp(), rows, seq_len })
}

/// `plandiff eval --stage masked`'s line (a [`crate::stages::render`] template over its result).
const SUMMARY: &str = "{split} split, {rows} rows of {seq_len} tokens: NELBO {nelbo_per_token:.4} nats/token, perplexity bound {perplexity_bound:.2}; loss {loss:.4}";

fn evaluate(req: &EvalRequest) -> Result<StageEval> {
    StageEval::nested(&evaluate_masked(req)?, req.split, SUMMARY)
}
