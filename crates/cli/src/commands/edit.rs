use crate::args::EditArgs;
use crate::util::parse_device;
use anyhow::{Context, Result};
use clap::{ArgMatches, Args, FromArgMatches};
use plandiff_pipeline::flags::{unread_flag, FlagTable, GaussianFlags, StepsFlag};
use plandiff_pipeline::masked::{parse_remasking, EditSettings, EditTarget, ReviseScore};
use plandiff_pipeline::{GenOptions, HybridGenerator, MaskedGenerator};
use std::process::ExitCode;

/// The edit modes and the flags each reads besides `edit`'s own; `main` adds them to `edit`.
pub const EDIT_MODES: &FlagTable = &[("hybrid", HybridEdit::augment_args), ("masked", MaskedEdit::augment_args)];

/// `edit --mode hybrid`: the planner's sampling of the re-planned sentences.
#[derive(Args, Debug, Clone, Default)]
pub struct HybridEdit {
    #[command(flatten)]
    pub sampling: GaussianFlags,
    /// Classifier-free guidance weight on the known sentences (1: none).
    #[arg(long)]
    pub guidance: Option<f64>,
    /// Hybrid: the sentence (1-based) that --to rewrites; every other sentence is kept byte
    /// for byte.
    #[arg(long)]
    pub at: Option<usize>,
    /// Hybrid, with --at: what sentence K should say, a sentence or a short phrase; it becomes
    /// the sentence's plan slot and the decoder writes it in the text's own words.
    #[arg(long)]
    pub to: Option<String>,
    /// Hybrid, with --at: drafts written for the sentence (1 to 16, default 4); the one closest
    /// to the phrase in the plan space is kept.
    #[arg(long)]
    pub candidates: Option<usize>,
}

/// `edit --mode masked`: what to remask and how to refill it.
#[derive(Args, Debug, Clone, Default)]
pub struct MaskedEdit {
    #[command(flatten)]
    pub steps: StepsFlag,
    /// Masked: characters to rewrite, 0-based, end exclusive: `I..J` (every token they touch).
    #[arg(long)]
    pub chars: Option<String>,
    /// Masked: remask every token whose log-probability under the model (with it masked) is
    /// below P (a negative number, e.g. -6), then denoise them.
    #[arg(long, allow_negative_numbers = true)]
    pub revise: Option<f64>,
    /// Masked: remask the lowest fraction F (0 < F <= 1) of the tokens by log-probability.
    #[arg(long)]
    pub revise_fraction: Option<f64>,
    /// Masked, with --revise or --revise-fraction: score and refill at most this many times
    /// (each round keeps at most one change, the one that raises the text's score most).
    #[arg(long, default_value_t = 1)]
    pub rounds: usize,
    /// Masked, with --revise or --revise-fraction: a change is kept only when it raises the
    /// text's score by at least G nats (0 or more): the sum over its words of how much better
    /// their context explains them than nothing does (log p(word | text) - log p(word | no
    /// words), the masked model's).
    #[arg(long, default_value_t = 8.0)]
    pub min_gain: f64,
    /// Masked, with --revise or --revise-fraction: the score a kept change must raise: `ar`
    /// (the log-likelihood of the text under the bundle's ar model), `pll` (the masked model's
    /// pseudo-log-likelihood, each word less its prior), `visible` (the masked model's
    /// log-likelihood of the text in view; a model trained with substitute_prob) or
    /// `ar+visible` (both must rise). Default: ar+visible, or ar when the masked model was not
    /// trained on substitutes; without an ar model, visible or pll.
    #[arg(long)]
    pub score: Option<String>,
    /// Masked, with --revise or --revise-fraction: after the substitutions, also try deleting
    /// each weak word and putting a word (the masked model's likeliest) before or after it,
    /// kept by the same rule (a missing or an extra word).
    #[arg(long)]
    pub insert_delete: bool,
    /// Masked: which positions a step commits (low_confidence, random, margin, entropy).
    #[arg(long)]
    pub remasking: Option<String>,
}

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

pub fn run(a: EditArgs, flags: &ArgMatches) -> Result<ExitCode> {
    let why = format!("this is edit --mode {}", a.mode);
    if let Some(e) = unread_flag(flags, EDIT_MODES, &[&a.mode], |r| format!("--mode {r}"), &why) {
        anyhow::bail!(e);
    }
    let masked = MaskedEdit::from_arg_matches(flags)?;
    let h = HybridEdit::from_arg_matches(flags)?;
    let target = target(&a, &masked, &h)?;
    let text =
        plandiff_data::read_text_capped(&a.input, 1 << 20).with_context(|| format!("--input {}", a.input.display()))?;
    if text.trim().is_empty() {
        anyhow::bail!("--input {} is empty; give a text to edit", a.input.display());
    }
    let sampling = a.sampling.config()?;
    let device = parse_device(&a.device)?;
    if a.mode == "masked" {
        return run_masked(&a, &masked, &text, target, sampling.temperature, device);
    }
    let rewrite = a.rewrite.as_deref().unwrap_or_default();
    let EditTarget::Sentences(from, to) = target else {
        anyhow::bail!("--chars, --revise and --revise-fraction need --mode masked");
    };
    let gen = HybridGenerator::load(&a.checkpoint, device)
        .with_context(|| format!("--checkpoint {}", a.checkpoint.display()))?;
    let plan = h.sampling.apply(gen.planner().model.sampling, h.guidance)?;
    let opts =
        GenOptions { max_tokens: a.max_tokens, sentences: None, sampling, seed: a.seed, no_eos: false, stream: false };
    let edit = match (&h.at, &h.to) {
        (Some(k), Some(phrase)) => gen.edit_to(&text, *k, phrase, &opts, h.candidates.unwrap_or(4))?,
        _ => gen.edit(&text, from, to, &opts, plan).with_context(|| format!("--rewrite {rewrite}"))?,
    };
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

/// The one edit the flags ask for (`--at K --to PHRASE` is sentence K, `Sentences(K, K)`).
fn target(e: &EditArgs, a: &MaskedEdit, h: &HybridEdit) -> Result<EditTarget> {
    if h.at.is_some() != h.to.is_some() {
        anyhow::bail!("--at K and --to PHRASE go together: --at names the sentence, --to what it should say");
    }
    if h.candidates.is_some() && h.at.is_none() {
        anyhow::bail!("--candidates is read by --at K --to PHRASE only; leave it out");
    }
    // --at samples no plan: the phrase is the slot and every other slot its sentence's own.
    let planner_flags = [
        ("--steps", h.sampling.steps.steps.is_some()),
        ("--sampler", h.sampling.sampler.is_some()),
        ("--eta", h.sampling.eta.is_some()),
        ("--guidance", h.guidance.is_some()),
    ];
    if let (Some(_), Some((flag, _))) = (h.at, planner_flags.iter().find(|(_, given)| *given)) {
        anyhow::bail!(
            "{flag} is the planner's, and --at samples no plan (the phrase is the sentence's slot); leave it out"
        );
    }
    let given =
        [e.rewrite.is_some(), h.at.is_some(), a.chars.is_some(), a.revise.is_some(), a.revise_fraction.is_some()];
    if given.iter().filter(|&&g| g).count() != 1 {
        anyhow::bail!("give exactly one of --rewrite A..B, --at K --to PHRASE, --chars I..J (masked), --revise P (masked) or --revise-fraction F (masked)");
    }
    if let Some(k) = h.at {
        return Ok(EditTarget::Sentences(k, k));
    }
    if !(1..=100).contains(&a.rounds) {
        anyhow::bail!("--rounds {} must be in 1..=100", a.rounds);
    }
    if a.rounds > 1 && a.revise.is_none() && a.revise_fraction.is_none() {
        anyhow::bail!("--rounds needs --revise or --revise-fraction");
    }
    if let Some(r) = &e.rewrite {
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
    if !(a.min_gain.is_finite() && a.min_gain >= 0.0) {
        anyhow::bail!("--min-gain {} must be a number of nats, 0 or more (e.g. 2)", a.min_gain);
    }
    let score = revise_score(a.score.as_deref(), &e.checkpoint)?;
    Ok(EditTarget::Revise {
        below: a.revise,
        fraction: a.revise_fraction,
        rounds: a.rounds,
        min_gain: a.min_gain,
        score,
        insert_delete: a.insert_delete,
    })
}

/// `--score`, or by default: with an ar model in the bundle, `ar+visible` when the masked
/// model reads errors in view (trained with `substitute_prob`) and `ar` when it does not;
/// without one, `visible` or `pll`.
pub fn revise_score(flag: Option<&str>, bundle: &std::path::Path) -> Result<ReviseScore> {
    let has_ar = bundle.join(plandiff_bundle::stage::AR).join("config.json").is_file();
    Ok(match (flag, has_ar, reads_visible(bundle)) {
        (Some(s), _, _) => ReviseScore::parse(s)?,
        (None, true, true) => ReviseScore::ArVisible,
        (None, true, false) => ReviseScore::Ar,
        (None, false, true) => ReviseScore::Visible,
        (None, false, false) => ReviseScore::Pll,
    })
}

/// Whether the bundle's masked model was trained with `substitute_prob > 0` (false when its
/// config cannot be read: loading the model reports that).
fn reads_visible(bundle: &std::path::Path) -> bool {
    let path = bundle.join(plandiff_bundle::stage::MASKED).join("config.json");
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok())
        .and_then(|v| v["model"]["objective"]["substitute_prob"].as_f64())
        .is_some_and(|q| q > 0.0)
}

/// The masked model, with the ar model loaded when the revision's score needs it.
pub fn masked_reviser(bundle: &std::path::Path, target: EditTarget, device: tch::Device) -> Result<MaskedGenerator> {
    let gen = MaskedGenerator::load(bundle, device).with_context(|| format!("--checkpoint {}", bundle.display()))?;
    Ok(match target {
        EditTarget::Revise { score, .. } if score.needs_ar() => {
            gen.with_ar_scorer(bundle).with_context(|| format!("--checkpoint {}", bundle.display()))?
        }
        _ => gen,
    })
}

fn run_masked(
    a: &EditArgs,
    m: &MaskedEdit,
    text: &str,
    target: EditTarget,
    temperature: f64,
    device: tch::Device,
) -> Result<ExitCode> {
    let remasking = m.remasking.as_deref().map(parse_remasking).transpose()?;
    let gen = masked_reviser(&a.checkpoint, target, device)?;
    let settings = EditSettings {
        steps: m.steps.steps,
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
