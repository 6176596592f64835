//! Stage `ar`: a plain causal LM on packed windows of the token stream.
//!
//! Exact resume: initial weights come from `seed`; the data order is a pure function of
//! `(seed, sample index)` (see `plandiff_data::WindowSampler`); dropout noise is reseeded
//! every step from `(seed, step)`. So weights + AdamW moments + the step number are all a
//! resumed run needs to continue exactly as if it had never stopped.

use crate::adamw::{AdamW, AdamWConfig};
use crate::bundle::{save_weights, Bundle, Provenance, StageConfigFile, TrainerState, FORMAT_VERSION};
use crate::config::{RunConfig, TrainConfig};
use crate::eval::evaluate_loss;
use crate::metrics::MetricsLog;
use crate::schedule::LrSchedule;
use crate::{fsutil, Result, TrainError};
use indicatif::{ProgressBar, ProgressStyle};
use plandiff_data::{TextTokenizer, TokenSet, WindowSampler};
use plandiff_decoder::{Decoder, DecoderConfig};
use serde::Serialize;
use serde_json::json;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tch::{nn, Device, Tensor};

const KIND: &str = "ar";

pub struct TrainArgs {
    /// Required for a fresh run; on `--resume` the checkpoint's own config is used.
    pub config: Option<RunConfig>,
    pub data: PathBuf,
    pub out: PathBuf,
    pub resume: bool,
    /// Overrides `train.max_steps` (the schedule length).
    pub max_steps: Option<u64>,
    /// Stop after this step with a checkpoint, as if interrupted (for time-limited jobs).
    pub stop_at: Option<u64>,
    pub device: Device,
    pub seed: Option<u64>,
    pub interrupt: Arc<AtomicBool>,
    pub progress: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TrainEnd {
    Finished,
    Interrupted,
    Stopped,
}

#[derive(Debug, Clone, Serialize)]
pub struct TrainReport {
    pub end: TrainEnd,
    pub step: u64,
    pub max_steps: u64,
    pub train_loss: Option<f64>,
    pub val_loss: Option<f64>,
    pub tokens_per_s: f64,
    pub seconds: f64,
    pub parameters: i64,
    pub checkpoint: PathBuf,
}

struct Run {
    bundle: Bundle,
    model_cfg: DecoderConfig,
    train: TrainConfig,
    tokenizer: TextTokenizer,
    state: TrainerState,
}

fn setup(args: &TrainArgs) -> Result<Run> {
    let bundle = Bundle::new(&args.out);
    let tokenizer = TextTokenizer::from_file(&args.data.join("tokenizer.json")).map_err(|e| {
        TrainError::Invalid(format!("--data {}: {e} (make the folder with `plandiff prepare`)", args.data.display()))
    })?;
    let data_str = args.data.display().to_string();
    if args.resume {
        let cfg = bundle.read_config(KIND)?;
        let mut state = bundle.read_trainer_state(KIND)?;
        if cfg.tokenizer_hash != tokenizer.hash() {
            return Err(TrainError::Invalid(format!(
                "--data {} was tokenized with another tokenizer than the checkpoint in {}; resume with the data it was trained on",
                args.data.display(),
                args.out.display()
            )));
        }
        if args.config.is_some() {
            tracing::warn!(
                "--resume: using the architecture and training config stored in the checkpoint, not --config"
            );
        }
        if let Some(s) = args.seed {
            if s != state.seed {
                return Err(TrainError::Invalid(format!(
                    "--seed {s} differs from the checkpoint's seed {}; a resumed run keeps its seed (leave --seed out)",
                    state.seed
                )));
            }
        }
        let mut train = state.train.clone();
        if let Some(m) = args.max_steps {
            train.max_steps = m;
        }
        state.train = train.clone();
        return Ok(Run { bundle, model_cfg: cfg.model, train, tokenizer, state });
    }
    let run_cfg = args.config.as_ref().ok_or_else(|| {
        TrainError::Invalid("--config is required for a new run (e.g. --config configs/tiny.toml)".into())
    })?;
    let section = run_cfg.ar()?;
    let mut train = section.train.clone();
    if let Some(m) = args.max_steps {
        train.max_steps = m;
    }
    if let Some(s) = args.seed {
        train.seed = s;
    }
    train.validate()?;
    let model_cfg = section.model.decoder(tokenizer.vocab_size() as i64);
    model_cfg.validate().map_err(|e| TrainError::Invalid(format!("config [ar.model]: {e}")))?;
    if train.seq_len as i64 > model_cfg.max_seq_len {
        return Err(TrainError::Invalid(format!(
            "config: train.seq_len {} exceeds model.max_seq_len {}",
            train.seq_len, model_cfg.max_seq_len
        )));
    }
    if bundle.has_stage(KIND) {
        return Err(TrainError::Invalid(format!(
            "{} already holds an `{KIND}` model; pass --resume to continue it, or choose another --out",
            args.out.display()
        )));
    }
    if bundle.tokenizer_path().exists() {
        let existing = bundle.load_tokenizer()?;
        if existing.hash() != tokenizer.hash() {
            return Err(TrainError::Invalid(format!(
                "{} holds another tokenizer than --data {}; every model of a bundle shares one tokenizer, choose another --out",
                args.out.display(),
                args.data.display()
            )));
        }
    } else {
        bundle.write_tokenizer(&tokenizer)?;
    }
    let state = TrainerState {
        format_version: FORMAT_VERSION,
        step: 0,
        tokens_seen: 0,
        seed: train.seed,
        train: train.clone(),
        data: data_str,
        elapsed_seconds: 0.0,
        last_train_loss: None,
        last_val_loss: None,
    };
    Ok(Run { bundle, model_cfg, train, tokenizer, state })
}

fn step_seed(seed: u64, step: u64) -> i64 {
    (seed.wrapping_mul(1_000_003).wrapping_add(step) & (i64::MAX as u64)) as i64
}

/// Runs (or resumes) stage `ar` until `max_steps`, `stop_at` or an interrupt.
pub fn train_ar(args: TrainArgs) -> Result<TrainReport> {
    let Run { bundle, model_cfg, train, tokenizer, mut state } = setup(&args)?;
    let train_set = TokenSet::open(&args.data, "train")?;
    let valid_set = TokenSet::open(&args.data, "valid").ok();
    if valid_set.is_none() {
        tracing::warn!("--data {} has no validation split; validation loss is skipped", args.data.display());
    }
    let mut sampler = WindowSampler::new(train_set.tokens.len(), train.seq_len, state.seed)?;

    tch::manual_seed(step_seed(state.seed, u64::MAX));
    let mut vs = nn::VarStore::new(args.device);
    let model = Decoder::new(vs.root(), &model_cfg);
    let mut named: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    let parameters: i64 = named.iter().map(|(_, t)| t.numel() as i64).sum();
    let mut opt = AdamW::new(
        named,
        AdamWConfig { beta1: train.beta1, beta2: train.beta2, eps: train.eps, weight_decay: train.weight_decay },
    );
    if args.resume {
        let dir = bundle.stage_dir(KIND);
        crate::bundle::load_weights(&mut vs, &dir.join("model.safetensors"))?;
        opt.load(&dir.join("optimizer.safetensors"), state.step)?;
        tracing::info!(step = state.step, "resumed from {}", dir.display());
    }
    let metrics =
        MetricsLog::open(&bundle.root().join("logs").join("ar-metrics.jsonl"), args.resume.then_some(state.step))?;
    let sched = LrSchedule {
        lr: train.lr,
        min_lr: train.min_lr,
        warmup_steps: train.warmup_steps,
        total_steps: train.max_steps,
    };
    tracing::info!(
        parameters,
        vocab = model_cfg.vocab_size,
        train_tokens = train_set.tokens.len(),
        "training stage ar"
    );

    let pb = if args.progress {
        let pb = ProgressBar::new(train.max_steps);
        pb.set_style(
            ProgressStyle::with_template("{spinner} step {pos}/{len} [{bar:30}] {msg} eta {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        pb.set_position(state.step);
        pb
    } else {
        ProgressBar::hidden()
    };

    let save = |state: &TrainerState, opt: &AdamW, vs: &nn::VarStore| -> Result<PathBuf> {
        let cfg = StageConfigFile {
            format_version: FORMAT_VERSION,
            kind: KIND.into(),
            model: model_cfg.clone(),
            tokenizer_hash: tokenizer.hash().to_string(),
            provenance: Provenance {
                plandiff_version: env!("CARGO_PKG_VERSION").into(),
                steps: state.step,
                tokens_seen: state.tokens_seen,
                data: state.data.clone(),
                seed: state.seed,
                train_loss: state.last_train_loss,
                val_loss: state.last_val_loss,
                wall_seconds: state.elapsed_seconds,
                train: Some(state.train.clone()),
            },
        };
        bundle.save_stage(KIND, |dir| {
            let j = serde_json::to_string_pretty(&cfg).map_err(|e| TrainError::Invalid(e.to_string()))?;
            fsutil::write_atomic(&dir.join("config.json"), j.as_bytes())?;
            save_weights(vs, &dir.join("model.safetensors"))?;
            opt.save(&dir.join("optimizer.safetensors"))?;
            let j = serde_json::to_string_pretty(state).map_err(|e| TrainError::Invalid(e.to_string()))?;
            fsutil::write_atomic(&dir.join("trainer_state.json"), j.as_bytes())
        })
    };

    let (b, t, accum) = (train.batch_size, train.seq_len, train.grad_accum);
    let start_time = Instant::now();
    let base_elapsed = state.elapsed_seconds;
    let start_step = state.step;
    let mut train_time = 0f64;
    let mut timed_steps = 0u64;
    let mut last_saved = if args.resume { Some(state.step) } else { None };
    let mut end = TrainEnd::Finished;
    let mut checkpoint = bundle.stage_dir(KIND);
    while state.step < train.max_steps {
        if args.interrupt.load(Ordering::SeqCst) {
            end = TrainEnd::Interrupted;
            break;
        }
        if args.stop_at.is_some_and(|s| state.step >= s) {
            end = TrainEnd::Stopped;
            break;
        }
        let t0 = Instant::now();
        let step = state.step;
        tch::manual_seed(step_seed(state.seed, step));
        let lr = sched.at(step);
        opt.zero_grad();
        let mut loss_sum = 0f64;
        for micro in 0..accum {
            let mut data = Vec::with_capacity(b * (t + 1));
            for row in 0..b {
                let g = ((step * accum as u64 + micro as u64) * b as u64) + row as u64;
                data.extend(train_set.window(sampler.start(g), t + 1));
            }
            let batch = Tensor::from_slice(&data).view([b as i64, t as i64 + 1]).to_device(args.device);
            let x = batch.narrow(1, 0, t as i64);
            let y = batch.narrow(1, 1, t as i64);
            let logits = model.forward(&x, None, None, true); // (B, T, V)
            let loss = logits.view([-1, model_cfg.vocab_size]).cross_entropy_for_logits(&y.reshape(-1));
            (&loss / accum as f64).backward();
            loss_sum += loss.double_value(&[]);
        }
        let loss = loss_sum / accum as f64;
        if !loss.is_finite() {
            pb.abandon();
            return Err(TrainError::NonFinite { step: step + 1, value: loss });
        }
        let grad_norm = opt.clip_grad_norm(train.grad_clip);
        opt.step(lr);
        state.step += 1;
        state.tokens_seen += (b * t * accum) as u64;
        state.last_train_loss = Some(loss);
        // Throughput leaves out this session's first step, which pays one-time costs (allocator
        // warm-up, CUDA context and kernel selection), as benchmark harnesses do.
        if state.step > start_step + 1 {
            train_time += t0.elapsed().as_secs_f64();
            timed_steps += 1;
        }
        let tok_s = if timed_steps > 0 { timed_steps as f64 * (b * t * accum) as f64 / train_time } else { 0.0 };
        state.elapsed_seconds = base_elapsed + start_time.elapsed().as_secs_f64();
        pb.set_position(state.step);
        pb.set_message(format!("loss {loss:.3} lr {lr:.2e} {tok_s:.0} tok/s"));
        if state.step % train.log_interval == 0 || state.step == 1 {
            metrics.write(
                &json!({"step": state.step, "loss": loss, "lr": lr, "grad_norm": grad_norm, "tokens_per_s": tok_s,
                "tokens_seen": state.tokens_seen, "elapsed_s": state.elapsed_seconds}),
            )?;
            tracing::debug!(step = state.step, loss, lr, grad_norm, tok_s);
        }
        let last = state.step == train.max_steps;
        if let Some(vset) = &valid_set {
            if state.step % train.eval_interval == 0 || last {
                let r = evaluate_loss(&model, vset, t, b, Some(train.eval_batches));
                state.last_val_loss = Some(r.loss);
                metrics.write(&json!({"step": state.step, "val_loss": r.loss, "val_ppl": r.perplexity, "val_accuracy": r.token_accuracy}))?;
                pb.println(format!(
                    "step {:>6}  train loss {loss:.4}  val loss {:.4}  val ppl {:.2}",
                    state.step, r.loss, r.perplexity
                ));
            }
        }
        if state.step % train.checkpoint_interval == 0 || last {
            checkpoint = save(&state, &opt, &vs)?;
            last_saved = Some(state.step);
        }
    }
    if last_saved != Some(state.step) {
        checkpoint = save(&state, &opt, &vs)?;
    }
    pb.finish_and_clear();
    Ok(TrainReport {
        end,
        step: state.step,
        max_steps: train.max_steps,
        train_loss: state.last_train_loss,
        val_loss: state.last_val_loss,
        tokens_per_s: if timed_steps > 0 { timed_steps as f64 * (b * t * accum) as f64 / train_time } else { 0.0 },
        seconds: start_time.elapsed().as_secs_f64(),
        parameters,
        checkpoint,
    })
}
