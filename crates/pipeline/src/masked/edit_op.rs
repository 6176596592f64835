//! `plandiff edit --mode masked`: its flags, the one edit they ask for ([`EditTarget`]), and
//! the models a revision reads (the masked model, and the bundle's ar model for `--score ar`).

use super::revision::{EditSettings, EditTarget, ReviseScore};
use super::{parse_remasking, MaskedGenerator};
use crate::flags::{parse_range, StepsFlag};
use crate::mode::{EditOp, EditOutput, EditRequest};
use crate::{PipelineError, Result};
use clap::FromArgMatches;
use std::path::Path;
use tch::Device;

/// `edit --mode masked`: remask a span, or the tokens the model finds weakest, and refill them.
pub const EDIT: EditOp = EditOp { flags: <MaskedEditFlags as clap::Args>::augment_args, run: run_edit };

/// The flags `edit --mode masked` reads besides `edit`'s own.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct MaskedEditFlags {
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

impl MaskedEditFlags {
    /// The one edit the flags ask for, with `--rewrite` (`rewrite`) among the choices;
    /// `min_gain_given`: `--min-gain` was on the command line (it has a default).
    pub fn target(&self, rewrite: Option<&str>, bundle: &Path, min_gain_given: bool) -> Result<EditTarget> {
        let bad = |m: String| Err(PipelineError::Invalid(m));
        let given = [rewrite.is_some(), self.chars.is_some(), self.revise.is_some(), self.revise_fraction.is_some()];
        if given.iter().filter(|&&g| g).count() != 1 {
            return bad("give exactly one of --rewrite A..B, --chars I..J, --revise P or --revise-fraction F".into());
        }
        if !(1..=100).contains(&self.rounds) {
            return bad(format!("--rounds {} must be in 1..=100", self.rounds));
        }
        let revising = self.revise.is_some() || self.revise_fraction.is_some();
        if self.rounds > 1 && !revising {
            return bad("--rounds needs --revise or --revise-fraction".into());
        }
        let idle = [
            ("--min-gain", min_gain_given),
            ("--insert-delete", self.insert_delete),
            ("--score", self.score.is_some()),
        ];
        if let (false, Some((flag, _))) = (revising, idle.iter().find(|(_, given)| *given)) {
            return bad(format!("{flag} is read with --revise or --revise-fraction only; leave it out"));
        }
        if let Some(r) = rewrite {
            let (from, to) = parse_range("--rewrite", r)?;
            return Ok(EditTarget::Sentences(from, to));
        }
        if let Some(c) = &self.chars {
            let wrong =
                || PipelineError::Invalid(format!("--chars {c}: write I..J, 0-based with J exclusive, e.g. 10..25"));
            let (i, j) = c.split_once("..").ok_or_else(wrong)?;
            return Ok(EditTarget::Chars(
                i.trim().parse().map_err(|_| wrong())?,
                j.trim().parse().map_err(|_| wrong())?,
            ));
        }
        if let Some(p) = self.revise.filter(|p| !p.is_finite() || *p > 0.0) {
            return bad(format!("--revise {p} must be a log-probability (a number <= 0, e.g. -6)"));
        }
        if let Some(f) = self.revise_fraction.filter(|f| !(*f > 0.0 && *f <= 1.0)) {
            return bad(format!("--revise-fraction {f} must be in (0, 1]"));
        }
        if !(self.min_gain.is_finite() && self.min_gain >= 0.0) {
            return bad(format!("--min-gain {} must be a number of nats, 0 or more (e.g. 2)", self.min_gain));
        }
        Ok(EditTarget::Revise {
            below: self.revise,
            fraction: self.revise_fraction,
            rounds: self.rounds,
            min_gain: self.min_gain,
            score: revise_score(self.score.as_deref(), bundle)?,
            insert_delete: self.insert_delete,
        })
    }
}

/// `--score`, or by default: with an ar model in the bundle, `ar+visible` when the masked
/// model reads errors in view (trained with `substitute_prob`) and `ar` when it does not;
/// without one, `visible` or `pll`.
pub fn revise_score(flag: Option<&str>, bundle: &Path) -> Result<ReviseScore> {
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
fn reads_visible(bundle: &Path) -> bool {
    let path = bundle.join(plandiff_bundle::stage::MASKED).join("config.json");
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok())
        .and_then(|v| v["model"]["objective"]["substitute_prob"].as_f64())
        .is_some_and(|q| q > 0.0)
}

/// The masked model, with the ar model loaded when the revision's score needs it.
pub fn masked_reviser(bundle: &Path, target: EditTarget, device: Device) -> Result<MaskedGenerator> {
    let at = |e: PipelineError| PipelineError::Invalid(format!("--checkpoint {}: {e}", bundle.display()));
    let gen = MaskedGenerator::load(bundle, device).map_err(at)?;
    match target {
        EditTarget::Revise { score, .. } if score.needs_ar() => gen.with_ar_scorer(bundle).map_err(at),
        _ => Ok(gen),
    }
}

/// `edit --mode masked`.
fn run_edit(req: &EditRequest, flags: &clap::ArgMatches) -> Result<EditOutput> {
    let m = MaskedEditFlags::from_arg_matches(flags).map_err(|e| PipelineError::Invalid(e.to_string()))?;
    let min_gain_given = flags.value_source("min_gain") == Some(clap::parser::ValueSource::CommandLine);
    let target = m.target(req.rewrite, req.bundle, min_gain_given)?;
    let remasking = m.remasking.as_deref().map(parse_remasking).transpose()?;
    let gen = masked_reviser(req.bundle, target, req.device)?;
    let settings = EditSettings {
        steps: m.steps.steps,
        remasking: remasking.unwrap_or(gen.config().sampling.remasking),
        temperature: req.gen.sampling.temperature,
        seed: req.gen.seed,
    };
    let edit = gen.edit(req.text, target, &settings)?;
    let changes =
        edit.changed.iter().map(|c| format!("bytes {}..{}: {:?} -> {:?}", c.start, c.end, c.before, c.after)).collect();
    let report = serde_json::to_value(&edit).map_err(|e| PipelineError::Invalid(e.to_string()))?;
    Ok(EditOutput { text: edit.text, changes, report })
}
