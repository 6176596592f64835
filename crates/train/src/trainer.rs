//! The training loop every stage shares: AdamW, LR schedule, clipping, accumulation,
//! validation, metrics, atomic checkpoints, Ctrl-C, exact resume.
//!
//! Exact resume: initial weights come from `seed`; each stage's data order is a pure
//! function of `(seed, sample index)`; dropout and other noise are reseeded every step from
//! `(seed, step)`. So weights + AdamW moments + the step number are all a resumed run needs
//! to continue exactly as if it had never stopped.

use crate::adamw::{AdamW, AdamWConfig};
use crate::config::TrainConfig;
use crate::metrics::{progress_bar, MetricsLog};
pub use crate::run::{TrainArgs, TrainEnd, TrainReport};
use crate::runner::rank_seed;
pub(crate) use crate::runner::{batch_indices, global_seed, rank_rng, seed_init, step_rng, Feed, StageRunner};
use crate::schedule::LrSchedule;
pub(crate) use crate::setup::{fresh_lock, fresh_section, setup_run, RunSetup};
use crate::world::{autocast, World};
use crate::{Result, TrainError};
use indicatif::ProgressBar;
use plandiff_bundle::fsutil::write_json;
use plandiff_bundle::{load_weights, save_weights, Bundle, Provenance, TrainerState};
use plandiff_data::TextTokenizer;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Instant;
use tch::{nn, Tensor};

/// The optimizer over `vs`'s trainable variables (sorted by name) and their count.
/// Non-trainable variables (e.g. the planner's latent normalizer) are saved, not optimized.
fn optimizer(vs: &nn::VarStore, train: &TrainConfig) -> (AdamW, i64) {
    let mut named: Vec<(String, Tensor)> = vs.variables().into_iter().filter(|(_, t)| t.requires_grad()).collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    let parameters: i64 = named.iter().map(|(_, t)| t.numel() as i64).sum();
    let cfg = AdamWConfig { beta1: train.beta1, beta2: train.beta2, eps: train.eps, weight_decay: train.weight_decay };
    (AdamW::new(named, cfg), parameters)
}

/// Writes a stage's checkpoint: config.json (with provenance), weights, optimizer state and
/// trainer state, swapped in atomically.
struct Checkpointer {
    bundle: Bundle,
    kind: &'static str,
    tokenizer_hash: String,
    corpus: Option<Vec<String>>,
}

impl Checkpointer {
    fn save<R: StageRunner>(
        &self,
        runner: &R,
        state: &TrainerState,
        opt: &AdamW,
        vs: &nn::VarStore,
    ) -> Result<PathBuf> {
        let provenance = Provenance {
            plandiff_version: env!("CARGO_PKG_VERSION").into(),
            steps: state.step,
            tokens_seen: state.tokens_seen,
            data: state.data.clone(),
            seed: state.seed,
            train_loss: state.last_train_loss,
            val_loss: state.last_val_loss,
            wall_seconds: state.elapsed_seconds,
            train: Some(state.train.clone()),
            corpus: self.corpus.clone(),
            plan: state.plan.clone(),
            export: None,
        };
        let cfg = runner.config_file(&self.tokenizer_hash, provenance);
        self.bundle.save_stage(self.kind, |dir| -> Result<()> {
            write_json(&dir.join("config.json"), &cfg)?;
            save_weights(vs, &dir.join("model.safetensors"))?;
            opt.save(&dir.join("optimizer.safetensors"))?;
            Ok(write_json(&dir.join("trainer_state.json"), state)?)
        })
    }
}

/// Forward, backward (accumulated over micro-batches, no synchronisation between them),
/// gradient averaging over the ranks and optimizer update of one step; returns the loss
/// (mean over ranks) and the gradient norm before clipping.
fn train_step<R: StageRunner>(
    runner: &mut R,
    opt: &mut AdamW,
    state: &TrainerState,
    lr: f64,
    args: &TrainArgs,
) -> Result<(f64, Tensor)> {
    let (step, accum) = (state.step, state.train.grad_accum);
    tch::manual_seed(rank_seed(state.seed, step, args.world.rank()));
    opt.zero_grad();
    let mut loss_sum = 0f64;
    for micro in 0..accum {
        let _cast = autocast(args.precision, args.device)?;
        loss_sum += runner.micro_step(step, micro, accum)?;
    }
    args.world.average_gradients(&opt.params())?;
    let loss = args.world.sum(&[loss_sum / accum as f64])?[0] / args.world.size() as f64;
    if !loss.is_finite() {
        return Err(TrainError::NonFinite { step: step + 1, value: loss });
    }
    let grad_norm = opt.clip_grad_norm(state.train.grad_clip);
    opt.step(lr);
    Ok((loss, grad_norm))
}

/// Runs the stage's validation, logs it and prints a line above the progress bar.
fn validate<R: StageRunner>(
    runner: &mut R,
    state: &mut TrainerState,
    metrics: &MetricsLog,
    pb: &ProgressBar,
    loss: f64,
) -> Result<()> {
    let Some((val, mut extra)) = runner.validate() else {
        return Ok(());
    };
    state.last_val_loss = Some(val);
    extra.insert("step".into(), json!(state.step));
    extra.insert("val_loss".into(), json!(val));
    extra.insert("elapsed_s".into(), json!(state.elapsed_seconds));
    let summary: Vec<String> = extra
        .iter()
        .filter(|(k, _)| k.as_str() != "step" && k.as_str() != "elapsed_s")
        .filter_map(|(k, v)| v.as_f64().map(|x| format!("{k} {x:.4}")))
        .collect();
    metrics.write(&serde_json::Value::Object(extra))?;
    pb.println(format!("step {:>6}  train loss {loss:.4}  {}", state.step, summary.join("  ")));
    Ok(())
}

/// Steps timed for throughput: this session's first step pays one-time costs (allocator
/// warm-up, CUDA context and kernel selection) and is left out, as benchmark harnesses do.
#[derive(Default)]
struct Throughput {
    seconds: f64,
    steps: u64,
}

impl Throughput {
    fn tokens_per_s(&self, tokens_per_step: u64) -> f64 {
        if self.steps > 0 {
            self.steps as f64 * tokens_per_step as f64 / self.seconds
        } else {
            0.0
        }
    }
}

/// Loads a checkpoint's weights and optimizer state (after `step` steps) from `dir`.
fn resume_from(dir: &Path, vs: &mut nn::VarStore, opt: &mut AdamW, step: u64) -> Result<()> {
    load_weights(vs, &dir.join("model.safetensors"))?;
    opt.load(&dir.join("optimizer.safetensors"), step)?;
    tracing::info!(step, "resumed from {}", dir.display());
    Ok(())
}

/// A run's optimizer (loaded on resume), parameter count and metrics log; a fresh bundle
/// gets the data's tokenizer. Only rank 0 writes; every rank then holds rank 0's weights.
fn open_run(
    bundle: &Bundle,
    kind: &str,
    tokenizer: &TextTokenizer,
    resumed: bool,
    state: &TrainerState,
    vs: &mut nn::VarStore,
    world: &World,
) -> Result<(AdamW, i64, MetricsLog)> {
    if world.is_main() && !resumed && !bundle.tokenizer_path().exists() {
        bundle.write_tokenizer(tokenizer)?;
    }
    let (mut opt, parameters) = optimizer(vs, &state.train);
    if resumed {
        resume_from(&bundle.stage_dir(kind), vs, &mut opt, state.step)?;
    }
    let mut all: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    all.sort_by(|a, b| a.0.cmp(&b.0));
    world.broadcast(&all.into_iter().map(|(_, t)| t).collect::<Vec<_>>())?;
    let metrics = match world.is_main() {
        true => {
            let log = bundle.root().join("logs").join(format!("{kind}-metrics.jsonl"));
            MetricsLog::open(&log, resumed.then_some(state.step))?
        }
        false => MetricsLog::disabled(),
    };
    Ok((opt, parameters, metrics))
}

/// Why the loop stops before `max_steps`, if it does now; every rank stops at the same step
/// (an interrupt seen by any rank stops them all).
fn early_end(args: &TrainArgs, step: u64) -> Result<Option<TrainEnd>> {
    let local = args.interrupt.load(Ordering::SeqCst);
    let interrupted = match args.world.size() {
        1 => local,
        _ => args.world.sum(&[f64::from(u8::from(local))])?[0] > 0.0,
    };
    Ok(if interrupted {
        Some(TrainEnd::Interrupted)
    } else if args.stop_at.is_some_and(|s| step >= s) {
        Some(TrainEnd::Stopped)
    } else {
        None
    })
}

/// Rank 0 writes the checkpoint; every rank waits for it, so none moves on (or exits) before
/// it is on disk.
fn save_all<R: StageRunner>(
    saver: &Checkpointer,
    runner: &R,
    state: &TrainerState,
    opt: &AdamW,
    vs: &nn::VarStore,
    world: &World,
) -> Result<PathBuf> {
    let path = match world.is_main() {
        true => saver.save(runner, state, opt, vs)?,
        false => saver.bundle.stage_dir(saver.kind),
    };
    world.barrier()?;
    Ok(path)
}

/// The bundle's writer lock, held by rank 0 only (taken on resume, else now).
fn run_lock(
    lock: Option<plandiff_bundle::BundleLock>,
    bundle: &Bundle,
    kind: &str,
    world: &World,
) -> Result<Option<plandiff_bundle::BundleLock>> {
    Ok(match (lock, world.is_main()) {
        (Some(l), _) => Some(l),
        (None, true) => Some(fresh_lock(bundle, kind)?),
        (None, false) => None,
    })
}

/// One line of the metrics log: `[loss, lr, tokens/s, collective seconds per step]`.
fn log_step(metrics: &MetricsLog, state: &TrainerState, v: [f64; 4], grad_norm: &Tensor) -> Result<()> {
    let [loss, lr, tok_s, comm] = v;
    metrics.write(&json!({"step": state.step, "loss": loss, "lr": lr, "grad_norm": grad_norm.double_value(&[]),
        "tokens_per_s": tok_s, "tokens_seen": state.tokens_seen, "elapsed_s": state.elapsed_seconds,
        "comm_s_per_step": comm}))
}

/// Runs (or resumes) a stage until `max_steps`, `stop_at` or an interrupt.
pub(crate) fn run_loop<R: StageRunner>(
    runner: &mut R,
    setup: RunSetup<R::Model>,
    mut vs: nn::VarStore,
    args: &TrainArgs,
) -> Result<TrainReport> {
    let RunSetup { bundle, lock, tokenizer, resumed, mut state } = setup;
    let (kind, world) = (R::KIND, &args.world);
    let _lock = run_lock(lock, &bundle, kind, world)?;
    let train = state.train.clone();
    let (mut opt, parameters, metrics) =
        open_run(&bundle, kind, &tokenizer, resumed.is_some(), &state, &mut vs, world)?;
    let sched = LrSchedule::of(&train);
    tracing::info!(parameters, world_size = world.size(), "training stage {kind}");
    let pb = progress_bar(args.progress && world.is_main(), train.max_steps, state.step);
    let corpus = plandiff_data::PrepareStats::load(Path::new(&state.data)).ok().map(|s| s.inputs);
    let mut checkpoint = bundle.stage_dir(kind);
    let saver = Checkpointer { bundle, kind, tokenizer_hash: tokenizer.hash().to_string(), corpus };
    let tokens_per_step = runner.tokens_per_step() * world.size() as u64;
    let (start_time, base_elapsed, start_step) = (Instant::now(), state.elapsed_seconds, state.step);
    let mut timing = Throughput::default();
    let mut last_saved = resumed.is_some().then_some(state.step);
    let mut end = TrainEnd::Finished;
    while state.step < train.max_steps {
        if let Some(e) = early_end(args, state.step)? {
            end = e;
            break;
        }
        let t0 = Instant::now();
        let lr = sched.at(state.step);
        let (loss, grad_norm) = train_step(runner, &mut opt, &state, lr, args).inspect_err(|_| pb.abandon())?;
        if world.check_sync {
            world.check_identical(&opt.params(), state.step + 1)?;
        }
        state.step += 1;
        state.tokens_seen += tokens_per_step;
        state.last_train_loss = Some(loss);
        if state.step > start_step + 1 {
            timing.seconds += t0.elapsed().as_secs_f64();
            timing.steps += 1;
        }
        let tok_s = timing.tokens_per_s(tokens_per_step);
        state.elapsed_seconds = base_elapsed + start_time.elapsed().as_secs_f64();
        pb.set_position(state.step);
        pb.set_message(format!("loss {loss:.3} lr {lr:.2e} {tok_s:.0} tok/s"));
        if state.step % train.log_interval == 0 || state.step == 1 {
            let comm = world.comm_seconds() / (state.step - start_step) as f64;
            log_step(&metrics, &state, [loss, lr, tok_s, comm], &grad_norm)?;
        }
        let last = state.step == train.max_steps;
        if world.is_main() && (state.step % train.eval_interval == 0 || last) {
            validate(runner, &mut state, &metrics, &pb, loss)?;
        }
        if state.step % train.checkpoint_interval == 0 || last {
            checkpoint = save_all(&saver, runner, &state, &opt, &vs, world)?;
            last_saved = Some(state.step);
        }
    }
    if last_saved != Some(state.step) {
        checkpoint = save_all(&saver, runner, &state, &opt, &vs, world)?;
    }
    pb.finish_and_clear();
    let steps_run = (state.step - start_step).max(1) as f64;
    Ok(TrainReport {
        kind: kind.to_string(),
        end,
        step: state.step,
        max_steps: train.max_steps,
        train_loss: state.last_train_loss,
        val_loss: state.last_val_loss,
        tokens_per_s: timing.tokens_per_s(tokens_per_step),
        seconds: start_time.elapsed().as_secs_f64(),
        parameters,
        checkpoint,
        world_size: world.size(),
        precision: args.precision,
        comm_seconds_per_step: world.comm_seconds() / steps_run,
    })
}
