//! The interface every generation mode implements ([`Generator`]), what it is asked
//! ([`GenRequest`]) and what it returns ([`Generation`]), and the queries over the one list
//! of modes, [`crate::MODES`] (in `lib.rs`, beside the mode modules).

use crate::{Result, MODES};
use plandiff_decoder::{SamplingConfig, StopReason};
use plandiff_diffusion::SamplerKind;
use plandiff_layers::FieldError;
use plandiff_planner::{PlanSampling, SamplingDefaults};
use serde::Serialize;
use std::path::Path;
use tch::Device;

/// A generation mode: its name (`--mode`, `--arms`), what it is, and how it loads.
pub struct Mode {
    pub name: &'static str,
    pub about: &'static str,
    /// Loads the mode's models from a bundle folder.
    pub load: fn(&Path, Device) -> Result<Box<dyn Generator>>,
}

/// The mode of this name.
pub fn find_mode(name: &str) -> Option<&'static Mode> {
    MODES.iter().find(|m| m.name == name)
}

pub fn mode_names() -> Vec<&'static str> {
    MODES.iter().map(|m| m.name).collect()
}

/// Decoding settings shared by the modes that write token by token.
#[derive(Debug, Clone)]
pub struct GenOptions {
    pub max_tokens: usize,
    pub sentences: Option<usize>,
    pub sampling: SamplingConfig,
    pub seed: u64,
    /// Never end the document early: with `sentences`, write exactly that many (the A/B
    /// harness gives every arm the same length; hybrid mode always does this).
    pub no_eos: bool,
    /// Send [`Event::Text`] as the text grows (decodes the partial text at every token;
    /// leave it off when nothing streams).
    pub stream: bool,
}

/// Diffusion sampling settings asked for (flags); `None` keeps the model's stored default.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PlanOverrides {
    pub steps: Option<usize>,
    pub sampler: Option<SamplerKind>,
    pub eta: Option<f64>,
    pub guidance: Option<f64>,
    /// Mode `hybrid`: plans sampled per window, the one closest to the text so far kept
    /// (`None`: 1).
    pub candidates: Option<usize>,
    /// Mode `hybrid`: the decoder's classifier-free guidance on the plan (`None`: 1, the plan
    /// alone; see [`plandiff_decoder::generate_guided`]).
    pub plan_guidance: Option<f64>,
    /// Mode `hybrid`: sentences the decoder window slides by once full (`None`: 1; see
    /// [`crate::hybrid::window::decoder_window`]).
    pub stride: Option<usize>,
    /// Mode `hybrid`: the text's first sentences kept in the decoder's view once its window
    /// slides (`None`: 0; see [`crate::hybrid::window::pinned_view`]).
    pub pin: Option<usize>,
}

impl PlanOverrides {
    /// The stored defaults with these overrides, checked.
    pub fn apply(&self, defaults: SamplingDefaults) -> std::result::Result<PlanSampling, FieldError> {
        let d = SamplingDefaults {
            steps: self.steps.unwrap_or(defaults.steps),
            sampler: self.sampler.unwrap_or(defaults.sampler),
            eta: self.eta.unwrap_or(defaults.eta),
            guidance: self.guidance.unwrap_or(defaults.guidance),
        };
        d.validate()?;
        Ok(d.to_sampling())
    }
}

/// What a mode is asked to write.
#[derive(Debug, Clone)]
pub struct GenRequest<'a> {
    /// The text to continue (modes `ar`, `hybrid`; `diffusion` without a template).
    pub prompt: &'a str,
    /// Mode `diffusion`: text with `[MASK:n]` spans to fill instead of a prompt.
    pub template: Option<&'a str>,
    /// Samples of the prompt, written as one batch.
    pub samples: usize,
    pub gen: GenOptions,
    pub plan: PlanOverrides,
    /// Mode `diffusion`: turn off the clamping trick.
    pub no_clamp: bool,
    /// Mode `hybrid`: decode each planned latent alone (`--show-plan`).
    pub previews: bool,
    /// Mode `hybrid`: plan from this reference continuation instead of sampling a plan (the
    /// A/B harness's `oracle` arm).
    pub reference: Option<&'a str>,
    /// Modes `diffusion`, `masked`: send [`Event::Step`] every this many denoising steps (0: never).
    pub show_steps: usize,
    /// Mode `masked`: its sampling flags.
    pub masked: MaskedOverrides,
}

/// Mode `masked`'s sampling flags; `None` keeps the model's stored default (the start: masks).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct MaskedOverrides {
    pub block_length: Option<usize>,
    pub remasking: Option<plandiff_masked::Remasking>,
    pub start: Option<plandiff_masked::Start>,
}

impl<'a> GenRequest<'a> {
    /// A request for `samples` continuations of `prompt`, everything else off.
    pub fn new(prompt: &'a str, samples: usize, gen: GenOptions) -> Self {
        Self {
            prompt,
            template: None,
            samples,
            gen,
            plan: PlanOverrides::default(),
            no_clamp: false,
            previews: false,
            reference: None,
            show_steps: 0,
            masked: MaskedOverrides::default(),
        }
    }
}

/// What grows while a mode writes.
#[derive(Debug, Clone, Copy)]
pub enum Event<'a> {
    /// A sample's whole text so far (prompt and continuation), as it grows.
    Text { sample: usize, text: &'a str },
    /// Every sample's rounded text after a denoising step.
    Step { step: usize, texts: &'a [String] },
}

/// One generated sample.
#[derive(Debug, Clone, Serialize)]
pub struct Generation {
    /// Prompt and continuation, as a reader would see them.
    pub text: String,
    pub continuation: String,
    /// The generated sentences (a last unfinished one included).
    pub sentences: Vec<String>,
    pub new_tokens: usize,
    /// Why decoding stopped (modes that write token by token).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop: Option<StopReason>,
    pub seconds: f64,
    /// Milliseconds from the mode's start to the first new token (token-by-token modes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_token_ms: Option<f64>,
    pub tokens_per_s: f64,
    /// What only some modes have: the plan, or the token positions.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub detail: Option<Detail>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Detail {
    /// Mode `hybrid`: the planned slots, and the time spent planning (part of `seconds`).
    Plan { plan: Vec<crate::hybrid::PlanSlot>, planning_seconds: f64, planner_calls: usize },
    /// Modes `diffusion`, `masked`: every position's token (`<pad>` included) and which were given.
    Positions { tokens: Vec<i64>, known: Vec<bool> },
}

impl Generation {
    /// Seconds spent planning (0 for modes without a plan).
    pub fn planning_seconds(&self) -> f64 {
        match &self.detail {
            Some(Detail::Plan { planning_seconds, .. }) => *planning_seconds,
            _ => 0.0,
        }
    }
}

/// A loaded mode.
pub trait Generator {
    /// Writes `req.samples` samples; `on` sees what grows on the way.
    fn generate(&self, req: &GenRequest, on: &mut dyn FnMut(Event)) -> Result<Vec<Generation>>;
    /// The mode's own settings for `--json` output (e.g. the plan sampling it used).
    fn settings(&self, req: &GenRequest) -> Result<serde_json::Map<String, serde_json::Value>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_list_of_distinct_modes() {
        let names = mode_names();
        let mut sorted = names.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), names.len(), "{names:?}");
        assert!(names.contains(&"ar") && names.contains(&"hybrid") && names.contains(&"diffusion"));
        assert!(names.iter().all(|n| find_mode(n).is_some_and(|m| m.name == *n)));
        assert!(find_mode("oracle").is_none(), "oracle is an A/B arm of the hybrid mode, not a mode");
    }

    #[test]
    fn overrides_keep_unset_defaults_and_name_bad_fields() {
        let d = SamplingDefaults { steps: 50, sampler: SamplerKind::Ddpm, eta: 0.3, guidance: 2.0 };
        let p = PlanOverrides { steps: Some(10), ..Default::default() }.apply(d).unwrap();
        assert_eq!(PlanOverrides::default().candidates, None);
        assert_eq!((p.steps, p.sampler, p.eta, p.guidance), (10, SamplerKind::Ddpm, 0.3, 2.0));
        let e = PlanOverrides { eta: Some(3.0), ..Default::default() }.apply(d).unwrap_err();
        assert_eq!(e.field, "eta");
        assert_eq!(e.as_flag(), "--eta 3 must be in [0, 1]");
    }
}
