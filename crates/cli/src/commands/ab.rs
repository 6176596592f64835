use crate::args::AbArgs;
use crate::util::{parse_device, stderr_is_tty};
use anyhow::{Context, Result};
use clap::ArgMatches;
use indicatif::{ProgressBar, ProgressStyle};
use plandiff_eval::ab::{parse_arms, read_prompts, run_ab, AbConfig, ArmSpec};
use plandiff_eval::report;
use plandiff_pipeline::mode::ArmInput;
use plandiff_pipeline::registry::{self, GENERATE_ONLY};
use plandiff_pipeline::ModeSettings;
use std::process::ExitCode;

/// The settings of every mode the arms run, from the flags (checked before any model loads);
/// a flag no arm's mode reads, or one of `generate`'s alone, is a one-line error.
fn arm_settings(a: &AbArgs, arms: &[ArmSpec], flags: &ArgMatches) -> Result<Vec<(String, Box<dyn ModeSettings>)>> {
    for id in GENERATE_ONLY {
        if flags.value_source(id) == Some(clap::parser::ValueSource::CommandLine) {
            anyhow::bail!(
                "--{} is generate's; an A/B writes every prompt of --prompts the same way",
                id.replace('_', "-")
            );
        }
    }
    let modes: Vec<&str> = arms.iter().map(ArmSpec::mode).collect();
    registry::check_mode_flags(flags, &modes, &format!("no arm of --arms {} runs it", a.arms))?;
    let mut out: Vec<(String, Box<dyn ModeSettings>)> = Vec::new();
    for m in modes {
        if out.iter().all(|(n, _)| n != m) {
            out.push((m.to_string(), registry::mode_settings(m, flags)?));
        }
    }
    let outline_arms = arms.iter().any(|a| a.variant().is_some_and(|v| v.input == ArmInput::Outline));
    if !outline_arms {
        out.iter().try_for_each(|(_, s)| s.check_without_outline())?;
    }
    Ok(out)
}

/// The file that marks a folder as `ab`'s own output (it may then be written again).
const MARK: &str = ".plandiff-ab";

/// What `ab` writes into `--out`.
const WRITES: [&str; 3] = [MARK, "results.json", "report.html"];

/// `--out` must be new, empty, or a folder `ab` wrote before (its mark and outputs alone);
/// anything else (a bundle, prepared data, anyone's own files) is refused unless `--force`,
/// as `prepare` and `export` refuse, and that before anything is generated.
fn check_out(out: &std::path::Path, force: bool) -> Result<()> {
    if !out.exists() {
        return Ok(());
    }
    if !out.is_dir() {
        anyhow::bail!("--out {} is a file; give a folder for results.json and report.html", out.display());
    }
    let entries: Vec<String> = std::fs::read_dir(out)
        .with_context(|| format!("--out {}: cannot read the folder", out.display()))?
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect();
    let ours = entries.iter().any(|e| e == MARK) && entries.iter().all(|e| WRITES.contains(&e.as_str()));
    if entries.is_empty() || ours || force {
        return Ok(());
    }
    let mut foreign: Vec<&str> = entries.iter().map(String::as_str).filter(|e| !WRITES.contains(e) || !ours).collect();
    foreign.sort_unstable();
    foreign.truncate(3);
    anyhow::bail!(
        "--out {} holds files plandiff ab did not write ({}); give a new or empty folder, or --force to write results.json and report.html there",
        out.display(),
        foreign.join(", ")
    )
}

pub fn run(a: AbArgs, flags: &ArgMatches) -> Result<ExitCode> {
    let prompts = read_prompts(&a.prompts).with_context(|| format!("--prompts {}", a.prompts.display()))?;
    let arms = parse_arms(&a.arms, &a.checkpoint).with_context(|| format!("--arms {}", a.arms))?;
    let sampling = a.sampling.config()?;
    let modes = arm_settings(&a, &arms, flags)?;
    if prompts.iter().any(|p| p.outline.is_some()) && modes.iter().any(|(_, s)| s.prompt_optional()) {
        anyhow::bail!(
            "--outline FILE and the prompts' own outlines (their \"outline\" fields) both give outlines; keep one"
        );
    }
    if a.samples == 0 || a.sentences == 0 {
        anyhow::bail!("--samples and --sentences must be >= 1");
    }
    if a.samples > 1024 || a.sentences > 1024 {
        anyhow::bail!("--samples and --sentences must be at most 1024");
    }
    check_out(&a.out, a.force)?;
    let device = parse_device(&a.device)?;
    let cfg = AbConfig {
        bundle: a.checkpoint.clone(),
        arms,
        samples: a.samples,
        sentences: a.sentences,
        max_tokens: a.max_tokens,
        seed: a.seed,
        sampling,
        modes,
        judge: a.judge.clone(),
        fluency_judge: a.fluency_judge.clone(),
        judge_encoder: a.judge_encoder.clone(),
        device,
        resamples: a.resamples,
    };
    plandiff_eval::ab::check(&cfg, &prompts)?;
    std::fs::create_dir_all(&a.out)
        .with_context(|| format!("--out {}: cannot create the folder; choose a writable path", a.out.display()))?;
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
    plandiff_bundle::fsutil::write_atomic(&a.out.join(MARK), b"written by plandiff ab\n")?;
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
