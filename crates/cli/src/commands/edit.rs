use crate::args::EditArgs;
use crate::util::{parse_device, plan_overrides};
use anyhow::{Context, Result};
use plandiff_pipeline::{GenOptions, HybridGenerator};
use std::process::ExitCode;

/// `A..B`, `A..=B` or `A` (1-based, inclusive).
pub fn parse_range(s: &str) -> Result<(usize, usize)> {
    let bad = || anyhow::anyhow!("--rewrite {s}: not a sentence range; write A..B (1-based, inclusive), e.g. 2..3");
    let (a, b) = match s.split_once("..") {
        Some((a, b)) => (a, b.strip_prefix('=').unwrap_or(b)),
        None => (s, s),
    };
    let a: usize = a.trim().parse().map_err(|_| bad())?;
    let b: usize = b.trim().parse().map_err(|_| bad())?;
    Ok((a, b))
}

pub fn run(a: EditArgs) -> Result<ExitCode> {
    let (from, to) = parse_range(&a.rewrite)?;
    let text =
        plandiff_data::read_text_capped(&a.input, 1 << 20).with_context(|| format!("--input {}", a.input.display()))?;
    if text.trim().is_empty() {
        anyhow::bail!("--input {} is empty; give a text to edit", a.input.display());
    }
    let sampling = a.sampling.config()?;
    let device = parse_device(&a.device)?;
    let gen = HybridGenerator::load(&a.checkpoint, device)
        .with_context(|| format!("--checkpoint {}", a.checkpoint.display()))?;
    let plan =
        plan_overrides(&a.plan)?.apply(gen.planner().model.sampling).map_err(|e| anyhow::anyhow!(e.as_flag()))?;
    let opts =
        GenOptions { max_tokens: a.max_tokens, sentences: None, sampling, seed: a.seed, no_eos: false, stream: false };
    let edit = gen.edit(&text, from, to, &opts, plan).with_context(|| format!("--rewrite {}", a.rewrite))?;
    if a.json {
        crate::outln!("{}", serde_json::to_string_pretty(&edit)?);
    } else {
        crate::out!("{}", edit.text);
        if !edit.text.ends_with('\n') {
            crate::outln!();
        }
        for r in &edit.rewritten {
            tracing::info!("sentence {}: {:?} -> {:?}", r.sentence, r.before, r.after);
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::parse_range;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("2..3").unwrap(), (2, 3));
        assert_eq!(parse_range("2..=3").unwrap(), (2, 3));
        assert_eq!(parse_range("4").unwrap(), (4, 4));
        assert!(parse_range("a..b").is_err());
        assert!(parse_range("-1..2").is_err());
    }
}
