//! The arms of an A/B: a generation mode or one of its arm variants (`oracle`, `outline`,
//! `ar-outline`: a mode given a field of each prompt record), all from the modes' one list,
//! each from the default bundle or its own (`ar=PATH`), and the samples an arm writes.

use super::AbConfig;
use super::{mean_of, record, PromptItem, SampleRecord, Speed};
use crate::{PipelineError, Result};
use plandiff_pipeline::mode::{ArmInput, ArmVariant, Given, Mode};
use plandiff_pipeline::registry::{arm_names, find_arm};
use plandiff_pipeline::{Detail, GenOptions, GenRequest, Generator, ModeSettings};
use serde::Serialize;
use std::path::{Path, PathBuf};
use tch::Device;

#[derive(Debug, Clone, Serialize)]
pub struct ArmSpec {
    /// As written in `--arms` (`ar`, `ar=PATH`, ...).
    pub name: String,
    /// The arm: a mode's name, or one of its variants' (`oracle`).
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
        if find_arm(kind).is_none() {
            return Err(PipelineError::Invalid(format!(
                "unknown arm `{kind}`; use {} (each may name its steps and a bundle: masked@64=PATH)",
                arm_names().join(", ")
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
    /// The generation mode the arm runs, and the variant when it is one.
    fn resolved(&self) -> Result<(&'static Mode, Option<&'static ArmVariant>)> {
        find_arm(&self.kind).ok_or_else(|| PipelineError::Invalid(format!("arm {}: no such arm", self.name)))
    }

    /// The name of the generation mode the arm runs (`oracle`: hybrid).
    pub fn mode(&self) -> &'static str {
        self.resolved().map_or("", |(m, _)| m.name)
    }

    /// The arm's variant (`oracle`, `outline`, `ar-outline`), if it is one.
    pub fn variant(&self) -> Option<&'static ArmVariant> {
        self.resolved().ok().and_then(|(_, v)| v)
    }

    /// The arm's settings: its mode's from the flags, with the arm's own steps (`masked@64`).
    fn settings(&self, cfg: &AbConfig) -> Box<dyn ModeSettings> {
        let flags = cfg.modes.iter().find(|(m, _)| m == self.mode()).map(|(_, s)| s.as_ref());
        let mut s: Box<dyn ModeSettings> = match flags {
            Some(g) => g.boxed(),
            None => Box::new(plandiff_pipeline::mode::NoSettings),
        };
        if let Some(n) = self.steps {
            s.set_steps(n);
        }
        s
    }

    /// Loads the arm's models; the message names the arm.
    pub fn load(&self, device: Device) -> Result<Box<dyn Generator>> {
        let (mode, _) = self.resolved()?;
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
        let settings = self.settings(cfg);
        let input = self.variant().map(|v| v.input);
        let prompt = match (input, &item.outline) {
            (Some(ArmInput::OutlineBeforePrompt), Some(o)) => outline_prompt(o, &item.prompt),
            _ => item.prompt.clone(),
        };
        let mut req = GenRequest::new(&prompt, cfg.samples, gen.clone()).with(settings.as_ref());
        req.given = match (input, &item.reference, &item.outline) {
            (Some(ArmInput::ReferencePlan), Some(r), _) => Some(Given::Reference(r)),
            (Some(ArmInput::Outline), _, Some(o)) => Some(Given::Outline(o)),
            _ => None,
        };
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
