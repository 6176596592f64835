use crate::args::AbArgs;
use crate::util::{masked_overrides, parse_device, plan_overrides, stderr_is_tty};
use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use plandiff_eval::ab::{parse_arms, read_prompts, run_ab, AbConfig};
use plandiff_eval::report;
use std::process::ExitCode;

pub fn run(a: AbArgs) -> Result<ExitCode> {
    let prompts = read_prompts(&a.prompts).with_context(|| format!("--prompts {}", a.prompts.display()))?;
    let arms = parse_arms(&a.arms, &a.checkpoint).with_context(|| format!("--arms {}", a.arms))?;
    let sampling = a.sampling.config()?;
    // Flags override each model's stored defaults; checked here against a neutral base so a
    // bad value fails before any model loads.
    let plan = plan_overrides(&a.plan)?;
    let neutral = plandiff_planner::SamplingDefaults {
        steps: 50,
        sampler: plandiff_diffusion::SamplerKind::Ddim,
        eta: 0.0,
        guidance: 1.0,
    };
    plan.apply(neutral).map_err(|e| anyhow::anyhow!(e.as_flag()))?;
    let masked = masked_overrides(&a.masked)?;
    if a.samples == 0 || a.sentences == 0 {
        anyhow::bail!("--samples and --sentences must be >= 1");
    }
    if a.samples > 1024 || a.sentences > 1024 {
        anyhow::bail!("--samples and --sentences must be at most 1024");
    }
    std::fs::create_dir_all(&a.out)
        .with_context(|| format!("--out {}: cannot create the folder; choose a writable path", a.out.display()))?;
    let device = parse_device(&a.device)?;
    let cfg = AbConfig {
        bundle: a.checkpoint.clone(),
        arms,
        samples: a.samples,
        sentences: a.sentences,
        max_tokens: a.max_tokens,
        seed: a.seed,
        sampling,
        plan,
        masked,
        judge: a.judge.clone(),
        judge_encoder: a.judge_encoder.clone(),
        device,
        resamples: a.resamples,
    };
    let total = (prompts.len() * cfg.arms.len()) as u64;
    let pb = if stderr_is_tty() { ProgressBar::new(total) } else { ProgressBar::hidden() };
    pb.set_style(
        ProgressStyle::with_template("{spinner} ab [{bar:30}] {pos}/{len} prompt x arm, eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let results = run_ab(&cfg, &prompts, |done, _| pb.set_position(done as u64))?;
    pb.finish_and_clear();
    let json = serde_json::to_string_pretty(&results)?;
    plandiff_bundle::fsutil::write_atomic(&a.out.join("results.json"), json.as_bytes())?;
    plandiff_bundle::fsutil::write_atomic(&a.out.join("report.html"), report::html(&results).as_bytes())?;
    if a.json {
        crate::outln!("{json}");
    } else {
        crate::out!("{}", report::markdown(&results));
        crate::outln!("\nwrote {} and {}", a.out.join("results.json").display(), a.out.join("report.html").display());
    }
    Ok(ExitCode::SUCCESS)
}
