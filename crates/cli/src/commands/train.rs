use crate::args::TrainArgs;
use crate::util::{parse_device, stderr_is_tty};
use anyhow::{Context, Result};
use plandiff_train::{RunConfig, TrainEnd};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

pub fn run(a: TrainArgs) -> Result<ExitCode> {
    let stage = plandiff_train::stages::find(&a.stage).ok_or_else(|| {
        anyhow::anyhow!("unknown stage `{}`; use {}", a.stage, plandiff_train::stages::names().join(", "))
    })?;
    let device = parse_device(&a.device)?;
    let config = a.config.as_ref().map(|p| RunConfig::load(p)).transpose()?;
    // First Ctrl-C: finish the step, save a checkpoint, exit. Second: exit at once (the
    // previous checkpoint stays intact: checkpoints are swapped in atomically).
    let interrupt = Arc::new(AtomicBool::new(false));
    let flag = interrupt.clone();
    ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::SeqCst) {
            eprintln!("error: interrupted twice; exiting without saving (the last checkpoint is intact)");
            std::process::exit(130);
        }
        eprintln!("interrupt: saving a checkpoint after this step (Ctrl-C again to quit at once)");
    })
    .context("installing the Ctrl-C handler")?;
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
    })?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
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
        eprintln!("interrupted: checkpoint saved at step {}; continue with the same command and --resume", report.step);
        return Ok(ExitCode::from(130));
    }
    Ok(ExitCode::SUCCESS)
}
