use crate::args::EditArgs;
use crate::util::{parse_device, parse_remasking, plan_overrides};
use anyhow::{Context, Result};
use plandiff_pipeline::masked::{EditSettings, EditTarget};
use plandiff_pipeline::{GenOptions, HybridGenerator, MaskedGenerator};
use std::process::ExitCode;

/// `A..B`, `A..=B` or `A` (1-based, inclusive) for `flag`.
pub fn parse_range(flag: &str, s: &str) -> Result<(usize, usize)> {
    let bad = || anyhow::anyhow!("{flag} {s}: not a sentence range; write A..B (1-based, inclusive), e.g. 2..3");
    let (a, b) = match s.split_once("..") {
        Some((a, b)) => (a, b.strip_prefix('=').unwrap_or(b)),
        None => (s, s),
    };
    let a: usize = a.trim().parse().map_err(|_| bad())?;
    let b: usize = b.trim().parse().map_err(|_| bad())?;
    Ok((a, b))
}

pub fn run(a: EditArgs) -> Result<ExitCode> {
    if a.plan.plan_guidance.is_some() || a.plan.window_stride.is_some() || a.plan.window_pin.is_some() {
        anyhow::bail!("--plan-guidance, --window-stride and --window-pin are generate's and ab's (mode hybrid); edit rewrites sentences in place");
    }
    let target = target(&a)?;
    let text =
        plandiff_data::read_text_capped(&a.input, 1 << 20).with_context(|| format!("--input {}", a.input.display()))?;
    if text.trim().is_empty() {
        anyhow::bail!("--input {} is empty; give a text to edit", a.input.display());
    }
    let sampling = a.sampling.config()?;
    let device = parse_device(&a.device)?;
    if a.mode == "masked" {
        return run_masked(&a, &text, target, sampling.temperature, device);
    }
    let rewrite = a.rewrite.as_deref().unwrap_or_default();
    let EditTarget::Sentences(from, to) = target else {
        anyhow::bail!("--chars, --revise and --revise-fraction need --mode masked");
    };
    let gen = HybridGenerator::load(&a.checkpoint, device)
        .with_context(|| format!("--checkpoint {}", a.checkpoint.display()))?;
    let plan =
        plan_overrides(&a.plan)?.apply(gen.planner().model.sampling).map_err(|e| anyhow::anyhow!(e.as_flag()))?;
    let opts =
        GenOptions { max_tokens: a.max_tokens, sentences: None, sampling, seed: a.seed, no_eos: false, stream: false };
    let edit = gen.edit(&text, from, to, &opts, plan).with_context(|| format!("--rewrite {rewrite}"))?;
    if a.json {
        crate::outln!("{}", serde_json::to_string_pretty(&edit)?);
    } else {
        print_text(&edit.text)?;
        for r in &edit.rewritten {
            tracing::info!("sentence {}: {:?} -> {:?}", r.sentence, r.before, r.after);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The one edit the flags ask for.
fn target(a: &EditArgs) -> Result<EditTarget> {
    let given = [a.rewrite.is_some(), a.chars.is_some(), a.revise.is_some(), a.revise_fraction.is_some()];
    if given.iter().filter(|&&g| g).count() != 1 {
        anyhow::bail!("give exactly one of --rewrite A..B, --chars I..J (masked), --revise P (masked) or --revise-fraction F (masked)");
    }
    if !(1..=100).contains(&a.rounds) {
        anyhow::bail!("--rounds {} must be in 1..=100", a.rounds);
    }
    if a.rounds > 1 && a.revise.is_none() && a.revise_fraction.is_none() {
        anyhow::bail!("--rounds needs --revise or --revise-fraction");
    }
    if let Some(r) = &a.rewrite {
        let (from, to) = parse_range("--rewrite", r)?;
        return Ok(EditTarget::Sentences(from, to));
    }
    if let Some(c) = &a.chars {
        let bad = || anyhow::anyhow!("--chars {c}: write I..J, 0-based with J exclusive, e.g. 10..25");
        let (i, j) = c.split_once("..").ok_or_else(bad)?;
        return Ok(EditTarget::Chars(i.trim().parse().map_err(|_| bad())?, j.trim().parse().map_err(|_| bad())?));
    }
    if let Some(p) = a.revise {
        if !p.is_finite() || p > 0.0 {
            anyhow::bail!("--revise {p} must be a log-probability (a number <= 0, e.g. -6)");
        }
    }
    if let Some(f) = a.revise_fraction {
        if !(f > 0.0 && f <= 1.0) {
            anyhow::bail!("--revise-fraction {f} must be in (0, 1]");
        }
    }
    Ok(EditTarget::Revise { below: a.revise, fraction: a.revise_fraction, rounds: a.rounds })
}

fn run_masked(a: &EditArgs, text: &str, target: EditTarget, temperature: f64, device: tch::Device) -> Result<ExitCode> {
    let plan = &a.plan;
    if plan.sampler.is_some() || plan.eta.is_some() || plan.guidance.is_some() || plan.plan_candidates.is_some() {
        anyhow::bail!("--sampler, --eta, --guidance and --plan-candidates are the planner's; edit --mode masked reads --steps, --remasking and --temperature");
    }
    let remasking = a.remasking.as_deref().map(parse_remasking).transpose()?;
    let gen = MaskedGenerator::load(&a.checkpoint, device)
        .with_context(|| format!("--checkpoint {}", a.checkpoint.display()))?;
    let settings = EditSettings {
        steps: plan.steps,
        remasking: remasking.unwrap_or(gen.config().sampling.remasking),
        temperature,
        seed: a.seed,
    };
    let edit = gen.edit(text, target, &settings)?;
    if a.json {
        crate::outln!("{}", serde_json::to_string_pretty(&edit)?);
    } else {
        print_text(&edit.text)?;
        for c in &edit.changed {
            tracing::info!("bytes {}..{}: {:?} -> {:?}", c.start, c.end, c.before, c.after);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_text(text: &str) -> Result<()> {
    crate::out!("{}", text);
    if !text.ends_with('\n') {
        crate::outln!();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse_range;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("--rewrite", "2..3").unwrap(), (2, 3));
        assert_eq!(parse_range("--rewrite", "2..=3").unwrap(), (2, 3));
        assert_eq!(parse_range("--rewrite", "4").unwrap(), (4, 4));
        assert!(parse_range("--rewrite", "a..b").unwrap_err().to_string().starts_with("--rewrite a..b"));
        assert!(parse_range("--rewrite", "-1..2").is_err());
    }
}
