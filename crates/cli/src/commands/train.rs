use crate::args::TrainArgs;
use crate::util::{parse_device, stderr_is_tty};
use anyhow::{Context, Result};
use plandiff_distributed::{Backend, Launch};
use plandiff_train::{Precision, TrainEnd, World};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

fn signal_name(sig: i32) -> &'static str {
    match sig {
        SIGINT => "SIGINT (Ctrl-C)",
        SIGTERM => "SIGTERM",
        SIGHUP => "SIGHUP",
        _ => "a signal",
    }
}

/// SIGINT (Ctrl-C), SIGTERM (what Slurm, Kubernetes and `timeout` send) and SIGHUP: the first
/// finishes the step, saves a checkpoint and exits with 128 + the signal's number; a second
/// exits at once (the previous checkpoint stays intact: checkpoints are swapped in atomically).
fn stop_on_signals() -> Result<(Arc<AtomicBool>, Arc<AtomicUsize>)> {
    let interrupt = Arc::new(AtomicBool::new(false));
    let which = Arc::new(AtomicUsize::new(0));
    let mut signals =
        signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP]).context("installing the signal handlers")?;
    let (flag, w) = (interrupt.clone(), which.clone());
    std::thread::spawn(move || {
        for sig in signals.forever() {
            if flag.swap(true, Ordering::SeqCst) {
                eprintln!("error: {} again; exiting without saving (the last checkpoint is intact)", signal_name(sig));
                std::process::exit(128 + sig);
            }
            w.store(sig as usize, Ordering::SeqCst);
            eprintln!("{}: saving a checkpoint after this step (send it again to quit at once)", signal_name(sig));
        }
    });
    Ok((interrupt, which))
}

/// One process, or this rank of the torchrun job in the environment (and its device:
/// `cuda:LOCAL_RANK` on CUDA).
fn join_world(a: &TrainArgs, device: tch::Device) -> Result<(World, tch::Device)> {
    if !(a.dist.dist_timeout.is_finite() && a.dist.dist_timeout > 0.0 && a.dist.dist_timeout <= 7.0 * 86400.0) {
        anyhow::bail!("--dist-timeout {}: give seconds between 0 and 604800 (default 600)", a.dist.dist_timeout);
    }
    let launch = match a.dist.dist.as_str() {
        "off" => None,
        _ => Launch::from_env()?,
    };
    let backend = match a.dist.dist.as_str() {
        "gloo" => Some(Backend::Gloo),
        "nccl" => Some(Backend::Nccl),
        _ => None,
    };
    let Some(launch) = launch else {
        if backend.is_some() {
            anyhow::bail!(
                "--dist {}: WORLD_SIZE is not set; launch with `torchrun --no-python --nproc-per-node N plandiff train ...`",
                a.dist.dist
            );
        }
        return Ok((World::single(), device));
    };
    let timeout = std::time::Duration::from_secs_f64(a.dist.dist_timeout);
    Ok(World::join(&launch, backend, timeout, device)?)
}

pub fn run(a: TrainArgs) -> Result<ExitCode> {
    let stage = plandiff_train::registry::find(&a.stage).ok_or_else(|| {
        anyhow::anyhow!("unknown stage `{}`; use {}", a.stage, plandiff_train::registry::names().join(", "))
    })?;
    let device = parse_device(&a.device)?;
    let config = a.config.as_ref().map(|p| plandiff_train::load_config(p)).transpose()?;
    let (mut world, device) = join_world(&a, device)?;
    world.check_sync = a.dist.check_sync;
    let main = world.is_main();
    let precision = match a.dist.precision.as_str() {
        "bf16" => Precision::Bf16,
        _ => Precision::Fp32,
    };
    let (interrupt, signal) = stop_on_signals()?;
    let report = stage.train(plandiff_train::TrainArgs {
        config,
        data: a.data,
        out: a.out,
        resume: a.resume,
        max_steps: a.max_steps,
        stop_at: a.stop_at,
        device,
        seed: a.seed,
        interrupt,
        progress: stderr_is_tty(),
        world,
        precision,
    })?;
    if !main {
        // Rank 0 reports for the job.
    } else if a.json {
        crate::outln!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        crate::outln!(
            "{}: {} at step {}/{}: train loss {}, val loss {}, {:.0} tokens/s, {} parameters; checkpoint {}",
            report.kind,
            match report.end {
                TrainEnd::Finished => "finished",
                TrainEnd::Interrupted => "interrupted",
                TrainEnd::Stopped => "stopped",
            },
            report.step,
            report.max_steps,
            report.train_loss.map_or("-".into(), |l| format!("{l:.4}")),
            report.val_loss.map_or("-".into(), |l| format!("{l:.4}")),
            report.tokens_per_s,
            report.parameters,
            report.checkpoint.display()
        );
    }
    if report.end == TrainEnd::Interrupted {
        let sig = signal.load(Ordering::SeqCst) as i32;
        eprintln!(
            "interrupted by {}: checkpoint saved at step {}; continue with the same command and --resume",
            signal_name(sig),
            report.step
        );
        return Ok(ExitCode::from((128 + sig) as u8));
    }
    Ok(ExitCode::SUCCESS)
}
