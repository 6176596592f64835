//! Stage `ar`: a plain causal LM on packed windows of the token stream.

use crate::config::{RunConfig, StageSection};
use crate::eval::evaluate_loss;
use crate::stages::{EvalRequest, Section, Stage, StageEval};
use crate::trainer::{fresh_section, run_loop, seed_init, setup_run, Feed, StageRunner, TrainArgs, TrainReport};
use crate::{Result, TrainError};
use plandiff_bundle::{open_split, stage::AR as KIND, Bundle, Provenance, StageConfigFile};
use plandiff_data::{TokenSet, WindowSampler};
use plandiff_decoder::{Decoder, DecoderConfig, DecoderInput};
use serde_json::json;
use tch::{nn, Tensor};

const ABOUT: &str = "a plain causal language model (the A/B baseline and the reference LM)";

/// Stage `ar` of [`crate::registry::STAGES`].
pub const STAGE: Stage =
    Stage::new::<StageSection, DecoderConfig>(KIND, ABOUT, train_ar, evaluate_ar, DESCRIBE_DECODER);

/// `plandiff info`'s line for a decoder's config.json (stages `ar` and `autoencoder`).
pub const DESCRIBE_DECODER: &str = "{parameters} parameters (d_model {model.d_model}, {model.n_layers} layers, {model.n_heads} heads, context {model.max_seq_len}), {provenance.steps} steps, {provenance.tokens_seen} tokens seen, train loss {provenance.train_loss:loss}, val loss {provenance.val_loss:loss}";

impl Section for StageSection {
    fn check(&self, _config: &RunConfig, vocab_size: i64) -> Result<()> {
        let cfg = self.model.decoder(vocab_size);
        cfg.validate().map_err(|e| TrainError::Invalid(format!("config [ar.model]: {e}")))
    }
}

struct ArRunner {
    feed: Feed,
    model: Decoder,
    cfg: DecoderConfig,
    train_set: TokenSet,
    valid_set: Option<TokenSet>,
    seq_len: usize,
    grad_accum: usize,
}

impl StageRunner for ArRunner {
    type Model = DecoderConfig;
    const KIND: &'static str = KIND;

    fn micro_step(&mut self, step: u64, micro: usize, accum: usize) -> Result<f64> {
        let (b, t) = (self.feed.batch, self.seq_len);
        let mut data = Vec::with_capacity(b * (t + 1));
        for start in self.feed.indices(step, micro, accum) {
            data.extend(self.train_set.window(start, t + 1));
        }
        let batch = Tensor::from_slice(&data).view([b as i64, t as i64 + 1]).to_device(self.feed.device);
        let x = batch.narrow(1, 0, t as i64);
        let y = batch.narrow(1, 1, t as i64);
        let loss = self.model.loss_masked(&DecoderInput::tokens(&x), &y, -100, true); // the head and the loss fused
        (&loss / accum as f64).backward();
        Ok(loss.double_value(&[]))
    }

    fn tokens_per_step(&self) -> u64 {
        (self.feed.batch * self.seq_len * self.grad_accum) as u64
    }

    fn validate(&mut self) -> Option<(f64, serde_json::Map<String, serde_json::Value>)> {
        let vset = self.valid_set.as_ref()?;
        let r = evaluate_loss(
            &self.model,
            vset,
            self.seq_len,
            self.feed.batch * self.feed.shard.world_size,
            Some(self.feed.eval_batches),
        );
        let mut m = serde_json::Map::new();
        m.insert("val_ppl".into(), json!(r.perplexity));
        m.insert("val_accuracy".into(), json!(r.token_accuracy));
        Some((r.loss, m))
    }

    fn config_file(&self, tokenizer_hash: &str, provenance: Provenance) -> StageConfigFile {
        StageConfigFile::new(KIND, self.cfg.clone(), tokenizer_hash, provenance)
    }
}

/// Runs (or resumes) stage `ar`.
pub fn train_ar(args: TrainArgs) -> Result<TrainReport> {
    let section = fresh_section::<StageSection>(&args, KIND)?;
    let setup = setup_run::<DecoderConfig>(&args, KIND, section.as_ref().map(|s| (s.train.clone(), None)))?;
    let cfg = match (&setup.resumed, section) {
        (Some(c), _) => c.model.clone(),
        (None, Some(s)) => {
            let cfg = s.model.decoder(setup.tokenizer.vocab_size() as i64);
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
        feed: Feed::new(sampler, &args, &setup.state),
        seq_len: train.seq_len,
        grad_accum: train.grad_accum,
    };
    run_loop(&mut { runner }, setup, vs, &args)
}

/// `plandiff eval --stage ar`: loss, perplexity and token accuracy on consecutive windows.
pub fn evaluate_ar(req: &EvalRequest) -> Result<StageEval> {
    let loaded = Bundle::new(req.bundle).load_decoder(KIND, req.device)?;
    let set = open_split(req.data, req.split, &loaded.tokenizer)?;
    let seq_len = req
        .seq_len
        .or_else(|| loaded.config.provenance.train.as_ref().map(|t| t.seq_len))
        .unwrap_or(256)
        .min(loaded.config.model.max_seq_len as usize);
    let r = evaluate_loss(&loaded.model, &set, seq_len, req.batch, req.max_batches);
    if r.tokens == 0 {
        return Err(TrainError::Invalid(format!(
            "{}: the {} split is shorter than one window of {} tokens; use a smaller --seq-len",
            req.data.display(),
            req.split,
            seq_len + 1
        )));
    }
    let summary = format!(
        "{} split: loss {:.4}, perplexity {:.2}, token accuracy {:.3} over {} tokens (seq_len {seq_len})",
        req.split, r.loss, r.perplexity, r.token_accuracy, r.tokens
    );
    let fields = json!({"seq_len": seq_len, "loss": r.loss, "perplexity": r.perplexity,
        "token_accuracy": r.token_accuracy, "tokens": r.tokens});
    Ok(StageEval { fields: fields.as_object().cloned().unwrap_or_default(), summary })
}
