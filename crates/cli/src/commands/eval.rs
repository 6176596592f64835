use crate::args::EvalArgs;
use crate::util::parse_device;
use anyhow::{bail, Context, Result};
use plandiff_bundle::Bundle;
use plandiff_eval::ab::SENTENCE_JUDGE_METRICS;
use plandiff_eval::judge::{load_judge, SentenceEncoder};
use plandiff_train::registry as stages;
use plandiff_train::{EvalRequest, Stage, StageEval};
use serde_json::json;
use std::process::ExitCode;

pub fn run(a: EvalArgs) -> Result<ExitCode> {
    if a.metrics.is_some() && a.repair.is_some() {
        bail!("--metrics and --repair are two different runs; give one of them");
    }
    if let Some(m) = &a.metrics {
        return text_metrics(&a, m);
    }
    if let Some(kinds) = &a.repair {
        return super::repair::run(&a, kinds);
    }
    if a.split != "valid" && a.split != "train" {
        bail!("--split {}: use valid or train", a.split);
    }
    if a.batch_size == 0 {
        bail!("--batch-size must be >= 1");
    }
    if a.seq_len == Some(0) {
        bail!("--seq-len must be >= 1");
    }
    if a.max_batches == Some(0) {
        bail!("--max-batches must be >= 1 (leave it out for the whole split)");
    }
    let stages: Vec<&Stage> =
        match &a.stage {
            Some(name) => vec![stages::find(name)
                .ok_or_else(|| anyhow::anyhow!("--stage {name}: use {}", stages::names().join(", ")))?],
            None => {
                let bundle =
                    Bundle::open(&a.checkpoint).with_context(|| format!("--checkpoint {}", a.checkpoint.display()))?;
                let held = stages::held_by(&bundle);
                if held.is_empty() {
                    bail!(
                        "--checkpoint {}: the bundle holds no model yet; train one with `plandiff train ar`",
                        a.checkpoint.display()
                    );
                }
                held
            }
        };
    let device = parse_device(&a.device)?;
    let names: Vec<&str> = stages.iter().map(|s| s.name()).collect();
    let plan = crate::flags::plan_steer(&a.steer, &names)?;
    let req = EvalRequest {
        bundle: &a.checkpoint,
        data: &a.data,
        split: &a.split,
        batch: a.batch_size,
        max_batches: a.max_batches,
        seq_len: a.seq_len,
        device,
        plan,
    };
    for stage in stages {
        let r = stage
            .evaluate(&req)
            .with_context(|| format!("stage {} of --checkpoint {}", stage.name(), a.checkpoint.display()))?;
        emit(&a, stage.name(), r)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints one stage's evaluation: JSON with `--json`, else its one-line summary (prefixed
/// by the stage when the bundle's every stage is evaluated).
fn emit(a: &EvalArgs, stage: &str, r: StageEval) -> Result<()> {
    if a.json {
        let mut out = json!({"checkpoint": a.checkpoint.display().to_string(), "data": a.data.display().to_string(),
            "split": a.split, "stage": stage});
        if let Some(o) = out.as_object_mut() {
            o.extend(r.fields);
        }
        crate::outln!("{}", serde_json::to_string_pretty(&out)?);
    } else if a.stage.is_none() {
        crate::outln!("{stage}: {}", r.summary);
    } else {
        crate::outln!("{}", r.summary);
    }
    Ok(())
}

/// `eval --metrics`: text metrics of any text set.
/// The sentence judge for `eval --metrics`: needed when one of its metrics is named; with
/// `all`, left out (with a warning) when it is not installed.
fn sentence_judge(
    a: &EvalArgs,
    wanted: &mut Vec<&str>,
    all: bool,
    device: tch::Device,
) -> Result<Option<SentenceEncoder>> {
    if !wanted.iter().any(|m| SENTENCE_JUDGE_METRICS.contains(m)) {
        return Ok(None);
    }
    match load_judge(a.judge_encoder.as_deref(), device) {
        Ok((e, note)) => {
            if let Some(n) = note {
                tracing::warn!("{n}");
            }
            Ok(Some(e))
        }
        Err(e) if all && a.judge_encoder.is_none() => {
            tracing::warn!("{e}; its metrics ({}) are left out", SENTENCE_JUDGE_METRICS.join(", "));
            wanted.retain(|m| !SENTENCE_JUDGE_METRICS.contains(m));
            Ok(None)
        }
        Err(e) => match &a.judge_encoder {
            Some(d) => Err(anyhow::anyhow!(e).context(format!("--judge-encoder {}", d.display()))),
            None => Err(e.into()),
        },
    }
}

fn text_metrics(a: &EvalArgs, spec: &str) -> Result<ExitCode> {
    if a.max_docs == 0 {
        bail!("--max-docs must be >= 1");
    }
    use plandiff_eval::ab::{text_set_metrics, BundleLm, TextJudges, TEXT_METRICS};
    let all = spec.trim() == "all";
    let mut wanted: Vec<&str> =
        if all { TEXT_METRICS.to_vec() } else { spec.split(',').map(str::trim).filter(|m| !m.is_empty()).collect() };
    if wanted.is_empty() {
        bail!("--metrics is empty; name metrics ({}) or all", TEXT_METRICS.join(", "));
    }
    if let Some(bad) = wanted.iter().find(|m| !TEXT_METRICS.contains(m)) {
        bail!("--metrics: unknown metric `{bad}`; use {} or all", TEXT_METRICS.join(", "));
    }
    let docs = super::documents::read_documents(a)?;
    let device = parse_device(&a.device)?;
    let fluency = if wanted.contains(&"fluency_ppl") {
        let path = plandiff_fluency::find_judge(a.fluency_judge.as_deref())?;
        Some(plandiff_fluency::FluencyJudge::load(&path, device)?)
    } else {
        None
    };
    let judge = if wanted.contains(&"self_ppl") {
        Some(
            BundleLm::load(&a.checkpoint, device)
                .with_context(|| format!("--checkpoint {}", a.checkpoint.display()))?,
        )
    } else {
        None
    };
    let enc = if wanted.contains(&"plan_space_coherence") {
        Some(plandiff_eval::ab::PlanSpaceOf::load(&a.checkpoint, device).with_context(|| {
            format!("--checkpoint {} (plan_space_coherence needs its autoencoder)", a.checkpoint.display())
        })?)
    } else {
        None
    };
    let sentence = sentence_judge(a, &mut wanted, all, device)?;
    let lexicon = if wanted.contains(&"invented_words") {
        let lex = plandiff_eval::lexicon::Lexicon::load(&a.checkpoint)?;
        if lex.is_none() && all {
            wanted.retain(|m| *m != "invented_words"); // `all`: what the bundle cannot give is left out
        }
        lex
    } else {
        None
    };
    let with = TextJudges {
        self_lm: judge.as_ref(),
        fluency: fluency.as_ref(),
        lexicon: lexicon.as_ref(),
        encoder: enc.as_ref(),
        sentence: sentence.as_ref(),
    };
    let r = text_set_metrics(&docs, &wanted, &with, 200)?;
    if a.json {
        crate::outln!(
            "{}",
            serde_json::to_string_pretty(
                &json!({"data": a.data.display().to_string(), "documents": docs.len(), "metrics": r})
            )?
        );
    } else {
        crate::outln!("{} documents of {}", docs.len(), a.data.display());
        for (k, v) in &r {
            crate::outln!("  {k:<20} {v:.4}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
