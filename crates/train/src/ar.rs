//! Stage `ar`: a plain causal LM on packed windows of the token stream.

use crate::bundle::{Provenance, StageConfigFile, FORMAT_VERSION};
use crate::eval::evaluate_loss;
use crate::trainer::{run_loop, seed_init, setup_run, StageRunner, TrainArgs, TrainReport};
use crate::{Result, TrainError};
use plandiff_data::{TokenSet, WindowSampler};
use plandiff_decoder::{Decoder, DecoderConfig};
use serde_json::json;
use tch::{nn, Device, Tensor};

const KIND: &str = "ar";

struct ArRunner {
    model: Decoder,
    cfg: DecoderConfig,
    train_set: TokenSet,
    valid_set: Option<TokenSet>,
    sampler: WindowSampler,
    batch: usize,
    seq_len: usize,
    eval_batches: usize,
    grad_accum: usize,
    device: Device,
}

impl StageRunner for ArRunner {
    type Model = DecoderConfig;
    fn kind(&self) -> &'static str {
        KIND
    }

    fn micro_step(&mut self, step: u64, micro: usize, accum: usize) -> Result<f64> {
        let (b, t) = (self.batch, self.seq_len);
        let mut data = Vec::with_capacity(b * (t + 1));
        for row in 0..b {
            let g = ((step * accum as u64 + micro as u64) * b as u64) + row as u64;
            data.extend(self.train_set.window(self.sampler.start(g), t + 1));
        }
        let batch = Tensor::from_slice(&data).view([b as i64, t as i64 + 1]).to_device(self.device);
        let x = batch.narrow(1, 0, t as i64);
        let y = batch.narrow(1, 1, t as i64);
        let logits = self.model.forward(&x, None, None, true); // (B, T, V)
        let loss = logits.view([-1, self.cfg.vocab_size]).cross_entropy_for_logits(&y.reshape(-1));
        (&loss / accum as f64).backward();
        Ok(loss.double_value(&[]))
    }

    fn tokens_per_step(&self) -> u64 {
        (self.batch * self.seq_len * self.grad_accum) as u64
    }

    fn validate(&mut self) -> Option<(f64, serde_json::Map<String, serde_json::Value>)> {
        let vset = self.valid_set.as_ref()?;
        let r = evaluate_loss(&self.model, vset, self.seq_len, self.batch, Some(self.eval_batches));
        let mut m = serde_json::Map::new();
        m.insert("val_ppl".into(), json!(r.perplexity));
        m.insert("val_accuracy".into(), json!(r.token_accuracy));
        Some((r.loss, m))
    }

    fn config_file(&self, tokenizer_hash: &str, provenance: Provenance) -> StageConfigFile {
        StageConfigFile {
            format_version: FORMAT_VERSION,
            kind: KIND.into(),
            model: self.cfg.clone(),
            encoder: None,
            tokenizer_hash: tokenizer_hash.into(),
            provenance,
        }
    }
}

/// Runs (or resumes) stage `ar`.
pub fn train_ar(args: TrainArgs) -> Result<TrainReport> {
    let fresh = match &args.config {
        Some(c) if !args.resume => Some((c.ar()?.train.clone(), None)),
        _ => None,
    };
    let setup = setup_run::<DecoderConfig>(&args, KIND, fresh)?;
    let cfg = match (&setup.resumed, &args.config) {
        (Some(c), _) => c.model.clone(),
        (None, Some(rc)) => {
            let cfg = rc.ar()?.model.decoder(setup.tokenizer.vocab_size() as i64);
            cfg.validate().map_err(|e| TrainError::Invalid(format!("config [ar.model]: {e}")))?;
            cfg
        }
        (None, None) => return Err(TrainError::Invalid("--config is required for a new run".into())),
    };
    let train = setup.state.train.clone();
    if train.seq_len as i64 > cfg.max_seq_len {
        return Err(TrainError::Invalid(format!(
            "config: train.seq_len {} exceeds model.max_seq_len {}",
            train.seq_len, cfg.max_seq_len
        )));
    }
    let train_set = TokenSet::open(&args.data, "train")?;
    let valid_set = TokenSet::open(&args.data, "valid").ok();
    if valid_set.is_none() {
        tracing::warn!("--data {} has no validation split; validation loss is skipped", args.data.display());
    }
    let sampler = WindowSampler::new(train_set.tokens.len(), train.seq_len, setup.state.seed)?;
    seed_init(setup.state.seed);
    let vs = nn::VarStore::new(args.device);
    let model = Decoder::new(vs.root(), &cfg);
    let runner = ArRunner {
        model,
        cfg,
        train_set,
        valid_set,
        sampler,
        batch: train.batch_size,
        seq_len: train.seq_len,
        eval_batches: train.eval_batches,
        grad_accum: train.grad_accum,
        device: args.device,
    };
    run_loop(&mut { runner }, setup, vs, &args)
}
