use crate::args::EvalArgs;
use crate::util::parse_device;
use anyhow::{bail, Context, Result};
use plandiff_data::TokenSet;
use plandiff_train::{evaluate_loss, Bundle};
use serde_json::json;
use std::process::ExitCode;

pub fn run(a: EvalArgs) -> Result<ExitCode> {
    if let Some(m) = &a.metrics {
        return text_metrics(&a, m);
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
    let device = parse_device(&a.device)?;
    match a.stage.as_str() {
        "ar" => {}
        "autoencoder" => {
            let r = plandiff_train::evaluate_autoencoder(
                &a.checkpoint,
                &a.data,
                &a.split,
                a.batch_size,
                a.max_batches,
                device,
            )
            .with_context(|| format!("--checkpoint {}", a.checkpoint.display()))?;
            let line = format!(
                "{} split, {} documents, {} tokens: perplexity oracle plan {:.2} vs null plan {:.2} (ratio {:.3}); token accuracy {:.3} vs {:.3}",
                a.split, r.documents, r.tokens, r.ppl_oracle, r.ppl_null, r.ppl_ratio, r.accuracy_oracle, r.accuracy_null
            );
            return emit(&a, "autoencoder", &r, line);
        }
        "planner" => {
            let r =
                plandiff_train::evaluate_planner(&a.checkpoint, &a.data, &a.split, a.batch_size, a.max_batches, device)
                    .with_context(|| format!("--checkpoint {}", a.checkpoint.display()))?;
            let line = format!(
                "{} split, {} windows: denoising loss {:.4}; second half of each window sampled from the first ({} steps): cosine to the true latents {:.3} (random sentence {:.3}, previous sentence {:.3})",
                a.split, r.windows, r.denoising_loss, r.steps, r.cosine_sampled, r.cosine_random, r.cosine_previous
            );
            return emit(&a, "planner", &r, line);
        }
        "diffusion" => {
            let r = plandiff_train::evaluate_diffusion(
                &a.checkpoint,
                &a.data,
                &a.split,
                a.batch_size,
                a.max_batches,
                device,
            )
            .with_context(|| format!("--checkpoint {}", a.checkpoint.display()))?;
            let line = format!(
                "{} split, {} documents: rounding accuracy on clean embeddings {:.4}; loss {:.4} (x0 MSE {:.4}, rounding CE {:.4})",
                a.split, r.documents, r.rounding_accuracy, r.loss, r.mse, r.rounding_ce
            );
            return emit(&a, "diffusion", &r, line);
        }
        other => bail!("--stage {other}: use ar, autoencoder, planner or diffusion"),
    }
    let loaded = Bundle::new(&a.checkpoint)
        .load_decoder("ar", device)
        .with_context(|| format!("--checkpoint {}", a.checkpoint.display()))?;
    let set = TokenSet::open(&a.data, &a.split).with_context(|| format!("--data {}", a.data.display()))?;
    if set.stats.tokenizer_hash != loaded.tokenizer.hash() {
        bail!(
            "--data {} was tokenized with another tokenizer than the model in {}; prepare it with `plandiff prepare --tokenizer {}/tokenizer.json`",
            a.data.display(),
            a.checkpoint.display(),
            a.checkpoint.display()
        );
    }
    let seq_len = a
        .seq_len
        .or_else(|| loaded.config.provenance.train.as_ref().map(|t| t.seq_len))
        .unwrap_or(256)
        .min(loaded.config.model.max_seq_len as usize);
    let r = evaluate_loss(&loaded.model, &set, seq_len, a.batch_size, a.max_batches);
    if r.tokens == 0 {
        bail!(
            "--data {}: the {} split is shorter than one window of {} tokens; use a smaller --seq-len",
            a.data.display(),
            a.split,
            seq_len + 1
        );
    }
    if a.json {
        let out = json!({"checkpoint": a.checkpoint.display().to_string(), "data": a.data.display().to_string(),
            "split": a.split, "seq_len": seq_len, "loss": r.loss, "perplexity": r.perplexity,
            "token_accuracy": r.token_accuracy, "tokens": r.tokens});
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!(
            "{} split: loss {:.4}, perplexity {:.2}, token accuracy {:.3} over {} tokens (seq_len {seq_len})",
            a.split, r.loss, r.perplexity, r.token_accuracy, r.tokens
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints an evaluation: JSON with `--json`, else the one-line summary.
fn emit<T: serde::Serialize>(a: &EvalArgs, stage: &str, r: &T, line: String) -> Result<ExitCode> {
    if a.json {
        let out = json!({"checkpoint": a.checkpoint.display().to_string(), "data": a.data.display().to_string(),
            "split": a.split, "stage": stage, "result": r});
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!("{line}");
    }
    Ok(ExitCode::SUCCESS)
}

/// `eval --metrics`: text metrics of any text set.
fn text_metrics(a: &EvalArgs, spec: &str) -> Result<ExitCode> {
    use plandiff_eval::ab::{text_set_metrics, Judge, TEXT_METRICS};
    let wanted: Vec<&str> = if spec.trim() == "all" {
        TEXT_METRICS.to_vec()
    } else {
        spec.split(',').map(str::trim).filter(|m| !m.is_empty()).collect()
    };
    if wanted.is_empty() {
        bail!("--metrics is empty; name metrics ({}) or all", TEXT_METRICS.join(", "));
    }
    if let Some(bad) = wanted.iter().find(|m| !TEXT_METRICS.contains(m)) {
        bail!("--metrics: unknown metric `{bad}`; use {} or all", TEXT_METRICS.join(", "));
    }
    let files = plandiff_data::expand_inputs(std::slice::from_ref(&a.data))
        .with_context(|| format!("--data {}", a.data.display()))?;
    let mut docs = Vec::new();
    'files: for f in &files {
        for d in plandiff_data::DocumentReader::open(f)? {
            let d = d?;
            if !d.trim().is_empty() {
                docs.push(d);
            }
            if docs.len() >= a.max_docs {
                break 'files;
            }
        }
    }
    if docs.is_empty() {
        bail!("--data {}: no document found (documents are blank-line separated paragraphs)", a.data.display());
    }
    let device = parse_device(&a.device)?;
    let judge = if wanted.contains(&"judge_ppl") {
        Some(Judge::load(&a.checkpoint, device).with_context(|| format!("--checkpoint {}", a.checkpoint.display()))?)
    } else {
        None
    };
    let enc =
        if wanted.contains(&"coherence") {
            Some(plandiff_train::load_autoencoder(&Bundle::new(&a.checkpoint), device).with_context(|| {
                format!("--checkpoint {} (coherence needs its autoencoder)", a.checkpoint.display())
            })?)
        } else {
            None
        };
    let r = text_set_metrics(&docs, &wanted, judge.as_ref(), enc.as_ref().map(|e| (&e.0, &e.3)), 200)?;
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(
                &json!({"data": a.data.display().to_string(), "documents": docs.len(), "metrics": r})
            )?
        );
    } else {
        println!("{} documents of {}", docs.len(), a.data.display());
        for (k, v) in &r {
            println!("  {k:<12} {v:.4}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
