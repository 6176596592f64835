//! `eval --repair`: the masked model's repair benchmark (`plandiff_eval::repair`).

use crate::args::EvalArgs;
use crate::util::{parse_device, stderr_is_tty};
use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use plandiff_eval::ab::BundleLm;
use plandiff_eval::repair::{make_cases, score, summarise, Corruption};
use plandiff_pipeline::masked::{EditSettings, EditTarget};
use serde_json::json;
use std::collections::HashMap;
use std::process::ExitCode;

/// The most cases per kind (the benchmark reads each case's sentence once).
const MAX_PER_KIND: usize = 100_000;

pub fn run(a: &EvalArgs, spec: &str) -> Result<ExitCode> {
    let kinds = parse_kinds(spec)?;
    check(a)?;
    let stories = read_stories(a)?;
    let device = parse_device(&a.device)?;
    let judge = plandiff_pipeline::masked::revise_score(a.score.as_deref(), &a.checkpoint)?;
    let target = EditTarget::Revise {
        below: a.revise_below,
        fraction: Some(a.revise_fraction),
        rounds: a.rounds,
        min_gain: a.min_gain,
        score: judge,
        insert_delete: a.insert_delete,
    };
    let gen = plandiff_pipeline::masked::masked_reviser(&a.checkpoint, target, device)
        .context("the repair benchmark revises with the bundle's masked model")?;
    let close: HashMap<String, String> = if kinds.contains(&Corruption::Close) {
        BundleLm::load(&a.checkpoint, device)
            .with_context(|| {
                format!("--checkpoint {} (close substitutes come from its ar model)", a.checkpoint.display())
            })?
            .nearest_words()?
    } else {
        HashMap::new()
    };
    let cases = cases(a, &kinds, &stories, &close)?;
    let settings = EditSettings {
        steps: None,
        remasking: gen.config().sampling.remasking,
        temperature: a.temperature,
        seed: a.seed,
    };
    let pb = if stderr_is_tty() { ProgressBar::new(cases.len() as u64) } else { ProgressBar::hidden() };
    pb.set_style(
        ProgressStyle::with_template("{spinner} repair [{bar:30}] {pos}/{len} cases, eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let start = std::time::Instant::now();
    let mut outcomes = Vec::with_capacity(cases.len());
    let mut examples = Vec::new();
    for c in &cases {
        let e = gen.edit(&c.text, target, &settings).with_context(|| format!("revising {:?}", c.text))?;
        let o = score(c, &e.text);
        if examples.len() < 12 && !o.untouched {
            examples.push(json!({"kind": c.kind, "clean": c.clean.join(" "), "corrupted": c.text, "revised": e.text}));
        }
        outcomes.push((c.kind, o));
        pb.inc(1);
    }
    pb.finish_and_clear();
    let report = summarise(&outcomes);
    let secs = start.elapsed().as_secs_f64();
    if a.json {
        let out = json!({"checkpoint": a.checkpoint.display().to_string(), "data": a.data.display().to_string(),
            "corrupt_words": a.corrupt_words, "revise_fraction": a.revise_fraction, "revise_below": a.revise_below, "rounds": a.rounds,
            "min_gain": a.min_gain, "insert_delete": a.insert_delete, "score": judge, "temperature": a.temperature, "seed": a.seed, "seconds": secs,
            "kinds": report, "examples": examples});
        crate::outln!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        print_table(&report)?;
        crate::outln!("{} cases in {secs:.0} s", cases.len());
    }
    Ok(ExitCode::SUCCESS)
}

/// Every kind's cases (a warning where the stories give fewer than asked).
fn cases(
    a: &EvalArgs,
    kinds: &[Corruption],
    stories: &[String],
    close: &HashMap<String, String>,
) -> Result<Vec<plandiff_eval::repair::Case>> {
    let lookup = |w: &str| close.get(w).cloned();
    let mut cases = Vec::new();
    for &k in kinds {
        let made = make_cases(stories, k, a.per_kind, a.corrupt_words, a.seed, &lookup);
        if made.len() < a.per_kind {
            tracing::warn!(
                "{}: {} cases of the {} asked (the stories have too few sentences to corrupt)",
                k.name(),
                made.len(),
                a.per_kind
            );
        }
        cases.extend(made);
    }
    if cases.is_empty() {
        bail!(
            "--data {}: no sentence to corrupt (the benchmark needs stories of two or more sentences)",
            a.data.display()
        );
    }
    Ok(cases)
}

/// The repair flags' ranges.
fn check(a: &EvalArgs) -> Result<()> {
    if !(1..=MAX_PER_KIND).contains(&a.per_kind) {
        bail!("--per-kind {} must be in 1..={MAX_PER_KIND}", a.per_kind);
    }
    if !(1..=8).contains(&a.corrupt_words) {
        bail!("--corrupt-words {} must be in 1..=8", a.corrupt_words);
    }
    if !(a.revise_fraction > 0.0 && a.revise_fraction <= 1.0) {
        bail!("--revise-fraction {} must be in (0, 1]", a.revise_fraction);
    }
    if a.revise_below.is_some_and(|p| !p.is_finite() || p > 0.0) {
        bail!("--revise-below must be a log-probability (a number <= 0, e.g. -6)");
    }
    if !(1..=100).contains(&a.rounds) {
        bail!("--rounds {} must be in 1..=100", a.rounds);
    }
    if !(a.min_gain.is_finite() && a.min_gain >= 0.0) {
        bail!("--min-gain {} must be a number of nats, 0 or more (e.g. 4)", a.min_gain);
    }
    if !(a.temperature.is_finite() && a.temperature >= 0.0) {
        bail!("--temperature {} must be 0 or more (0: the likeliest tokens)", a.temperature);
    }
    Ok(())
}

/// The report as a Markdown table.
fn print_table(report: &[plandiff_eval::repair::KindReport]) -> Result<()> {
    crate::outln!("| kind | cases | corrupted words restored | clean words changed | cases untouched |");
    crate::outln!("|---|---:|---:|---:|---:|");
    for r in report {
        crate::outln!(
            "| {} | {} | {} | {:.2}% ({}/{}) | {:.1}% |",
            r.kind.name(),
            r.cases,
            if r.corrupted_words == 0 {
                "-".to_string()
            } else {
                format!("{:.1}% ({}/{})", 100.0 * r.restored, r.restored_words, r.corrupted_words)
            },
            100.0 * r.clean_changed,
            r.changed_words,
            r.clean_words,
            100.0 * r.untouched
        );
    }
    Ok(())
}

fn parse_kinds(spec: &str) -> Result<Vec<Corruption>> {
    let names: Vec<&str> = Corruption::ALL.iter().map(|k| k.name()).collect();
    if spec.trim() == "all" {
        return Ok(Corruption::ALL.to_vec());
    }
    let mut kinds = Vec::new();
    for s in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let k = Corruption::parse(s)
            .ok_or_else(|| anyhow::anyhow!("--repair: unknown kind `{s}`; use {} or all", names.join(", ")))?;
        if !kinds.contains(&k) {
            kinds.push(k);
        }
    }
    if kinds.is_empty() {
        bail!("--repair is empty; name kinds ({}) or all", names.join(", "));
    }
    Ok(kinds)
}

/// The stories of --data (at most --max-docs), each one document.
fn read_stories(a: &EvalArgs) -> Result<Vec<String>> {
    if a.max_docs == 0 {
        bail!("--max-docs must be >= 1");
    }
    super::documents::read_documents(a)
}
