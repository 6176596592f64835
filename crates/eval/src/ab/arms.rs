//! The arms of an A/B: a generation mode (from the modes' one list) or `oracle`, each
//! from the default bundle or its own (`ar=PATH`), and the samples an arm writes.

use super::AbConfig;
use super::{mean_of, record, PromptItem, SampleRecord, Speed};
use crate::{PipelineError, Result};
use plandiff_pipeline::{
    find_mode, mode_names, Detail, GenOptions, GenRequest, Generator, HybridSettings, ModeSettings,
};
use serde::Serialize;
use std::path::{Path, PathBuf};
use tch::Device;

/// The arm that decodes the plan of the prompt's reference continuation with the hybrid
/// mode's decoder: what a perfect planner would give.
pub const ORACLE: &str = "oracle";
/// The arm that writes to the prompt's outline with the hybrid mode (`generate --outline`).
pub const OUTLINE: &str = "outline";
/// Its baseline: ar given the outline's lines as text before the prompt.
pub const AR_OUTLINE: &str = "ar-outline";

#[derive(Debug, Clone, Serialize)]
pub struct ArmSpec {
    /// As written in `--arms` (`ar`, `ar=PATH`, ...).
    pub name: String,
    /// A mode's name, or `oracle`.
    pub kind: String,
    pub bundle: PathBuf,
    /// `KIND@STEPS`: the arm's own denoising steps (e.g. `masked@64`), over `--steps`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub steps: Option<usize>,
}

/// `hybrid,ar[,oracle][,ar=PATH][,masked@64]`.
pub fn parse_arms(spec: &str, default: &Path) -> Result<Vec<ArmSpec>> {
    let mut arms: Vec<ArmSpec> = Vec::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (kind, bundle) = match part.split_once('=') {
            Some((k, p)) => (k, PathBuf::from(p)),
            None => (part, default.to_path_buf()),
        };
        let (kind, steps) = match kind.split_once('@') {
            Some((k, n)) => {
                let n = n.parse::<usize>().ok().filter(|&n| n > 0).ok_or_else(|| {
                    PipelineError::Invalid(format!("arm `{part}`: write KIND@STEPS with STEPS >= 1, e.g. masked@64"))
                })?;
                (k, Some(n))
            }
            None => (kind, None),
        };
        if ![ORACLE, OUTLINE, AR_OUTLINE].contains(&kind) && find_mode(kind).is_none() {
            return Err(PipelineError::Invalid(format!(
                "unknown arm `{kind}`; use {}, {ORACLE}, {OUTLINE}, {AR_OUTLINE} (each may name its steps and a bundle: masked@64=PATH)",
                mode_names().join(", ")
            )));
        }
        if arms.iter().any(|a| a.name == part) {
            return Err(PipelineError::Invalid(format!("arm `{part}` is listed twice")));
        }
        arms.push(ArmSpec { name: part.to_string(), kind: kind.to_string(), bundle, steps });
    }
    if arms.len() < 2 {
        return Err(PipelineError::Invalid("an A/B needs at least two arms, e.g. hybrid,ar".into()));
    }
    Ok(arms)
}

impl ArmSpec {
    /// The generation mode the arm runs (`oracle` is the hybrid mode given the reference,
    /// `outline` given the outline; `ar-outline` is ar).
    pub fn mode(&self) -> &str {
        match self.kind.as_str() {
            ORACLE | OUTLINE => "hybrid",
            AR_OUTLINE => "ar",
            k => k,
        }
    }

    /// The arm's settings for one prompt: its mode's from the flags, with the arm's own steps
    /// (`masked@64`) and, for `oracle`, the prompt's reference continuation.
    fn settings(&self, cfg: &AbConfig, item: &PromptItem) -> Box<dyn ModeSettings> {
        let given = cfg.modes.iter().find(|(m, _)| m == self.mode()).map(|(_, s)| s.as_ref());
        let hybrid = || given.and_then(|g| g.as_any().downcast_ref::<HybridSettings>()).cloned().unwrap_or_default();
        let mut s: Box<dyn ModeSettings> = match (self.kind.as_str(), given) {
            (ORACLE, _) => Box::new(HybridSettings { reference: item.reference.clone(), ..hybrid() }),
            (OUTLINE, _) => Box::new(HybridSettings { outline_lines: item.outline.clone(), ..hybrid() }),
            (_, Some(g)) => g.boxed(),
            (_, None) => Box::new(plandiff_pipeline::mode::NoSettings),
        };
        if let Some(n) = self.steps {
            s.set_steps(n);
        }
        s
    }

    /// Loads the arm's models; the message names the arm.
    pub fn load(&self, device: Device) -> Result<Box<dyn Generator>> {
        let mode = find_mode(self.mode())
            .ok_or_else(|| PipelineError::Invalid(format!("arm {}: no mode `{}`", self.name, self.mode())))?;
        (mode.load)(&self.bundle, device).map_err(|e| PipelineError::Invalid(format!("arm {}: {e}", self.name)))
    }

    /// The arm's samples of one prompt, with their text metrics and speed.
    pub(super) fn samples(
        &self,
        g: &dyn Generator,
        item: &PromptItem,
        cfg: &AbConfig,
        gen: &GenOptions,
    ) -> Result<Vec<SampleRecord>> {
        let settings = self.settings(cfg, item);
        let prompt = match (self.kind.as_str(), &item.outline) {
            (AR_OUTLINE, Some(o)) => outline_prompt(o, &item.prompt),
            _ => item.prompt.clone(),
        };
        let req = GenRequest::new(&prompt, cfg.samples, gen.clone()).with(settings.as_ref());
        let gens = g.generate(&req, &mut |_| {})?;
        let mut recs = Vec::with_capacity(gens.len());
        for (k, s) in gens.into_iter().enumerate() {
            let planning = s.planning_seconds();
            let speed = Speed { tokens: s.new_tokens, seconds: s.seconds, planning };
            let adherence = match &s.detail {
                Some(Detail::Plan { plan, .. }) => Some(mean_of(plan.iter().filter_map(|p| p.adherence))),
                _ => None,
            };
            let mut r = record(k, gen.seed, s.text, s.continuation, speed);
            if let Some(a) = adherence {
                r.metrics.insert("planning_s".into(), planning);
                r.metrics.insert("plan_adherence".into(), a);
            }
            recs.push(r);
        }
        Ok(recs)
    }
}

/// `ar-outline`'s prompt: the outline's lines, in order, as text before the prompt.
fn outline_prompt(outline: &[Option<String>], prompt: &str) -> String {
    let mut lines: Vec<&str> = outline.iter().flatten().map(|l| l.trim()).collect();
    lines.push(prompt.trim());
    lines.join(" ")
}
