//! The interface every generation mode implements ([`Generator`]), what it is asked
//! ([`GenRequest`]: what every mode shares, plus the chosen mode's own [`ModeSettings`]) and
//! what it returns ([`Generation`]). The list of modes is [`crate::registry::MODES`].

use crate::Result;
use plandiff_decoder::{SamplingConfig, StopReason};
use serde::Serialize;
use std::any::Any;
use std::borrow::Cow;
use std::path::Path;
use tch::Device;

/// A generation mode: its name (`--mode`, `--arms`), what it is, its flags, how it loads,
/// what `plandiff edit` does with it and the A/B arms it runs besides its own.
pub struct Mode {
    pub name: &'static str,
    pub about: &'static str,
    /// Adds the flags the mode reads to a command: its settings struct's clap `Args`.
    pub flags: fn(clap::Command) -> clap::Command,
    /// Reads and checks the mode's settings from parsed flags (one-line errors naming the flag).
    pub settings: fn(&clap::ArgMatches) -> Result<Box<dyn ModeSettings>>,
    /// Loads the mode's models from a bundle folder.
    pub load: fn(&Path, Device) -> Result<Box<dyn Generator>>,
    /// `plandiff edit --mode NAME` (`None`: the mode does not edit text in place).
    pub edit: Option<EditOp>,
    /// The arms of `plandiff ab --arms` that run this mode with a prompt record's extra field
    /// (hybrid's `oracle` and `outline`, ar's `ar-outline`); the mode's own name is an arm too.
    pub arms: &'static [ArmVariant],
}

/// A mode's edit operation: the flags it reads besides `edit`'s own, and the edit.
pub struct EditOp {
    pub flags: fn(clap::Command) -> clap::Command,
    /// Edits `req.text` as the parsed flags say (one-line errors naming the flag).
    pub run: fn(&EditRequest, &clap::ArgMatches) -> Result<EditOutput>,
}

/// What `plandiff edit` asks of a mode.
pub struct EditRequest<'a> {
    pub bundle: &'a Path,
    pub text: &'a str,
    /// `--rewrite A..B`: the sentences to rewrite, as written.
    pub rewrite: Option<&'a str>,
    /// Most tokens per rewritten sentence, the sampling and the seed.
    pub gen: GenOptions,
    pub device: Device,
}

/// What an edit did: the edited text, a line for each change (the log), and its report.
pub struct EditOutput {
    pub text: String,
    pub changes: Vec<String>,
    pub report: serde_json::Value,
}

/// An A/B arm that runs a mode with a field of each prompt record.
#[derive(Debug, Clone, Copy)]
pub struct ArmVariant {
    pub name: &'static str,
    pub about: &'static str,
    pub input: ArmInput,
}

/// What an [`ArmVariant`] reads of a prompt record, and how it reaches the mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArmInput {
    /// The record's reference continuation, as the plan ([`Given::Reference`]).
    ReferencePlan,
    /// The record's outline, as the plan's fixed slots ([`Given::Outline`]).
    Outline,
    /// The record's outline, its lines as text before the prompt.
    OutlineBeforePrompt,
}

impl ArmInput {
    /// Whether the arm needs the record's reference (else its outline).
    pub fn needs_reference(self) -> bool {
        self == Self::ReferencePlan
    }
}

/// What a request gives the mode besides its prompt: a plan to follow, from a reference
/// continuation or an outline (the A/B harness's variant arms).
#[derive(Debug, Clone, Copy)]
pub enum Given<'a> {
    /// Plan from this reference continuation instead of sampling a plan.
    Reference(&'a str),
    /// Write to this outline: a line per new sentence, `None` for a slot the planner fills.
    Outline(&'a [Option<String>]),
}

/// Type erasure of a mode's settings, for every [`ModeSettings`] type that is `Clone`.
pub trait AnySettings {
    fn as_any(&self) -> &dyn Any;
    /// A copy, for requests that change a field (an A/B arm's own steps, the oracle's reference).
    fn boxed(&self) -> Box<dyn ModeSettings>;
}

impl<T: ModeSettings + Clone> AnySettings for T {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn boxed(&self) -> Box<dyn ModeSettings> {
        Box::new(self.clone())
    }
}

/// A mode's own settings: a typed struct (clap `Args`) that the mode's module declares, with
/// its defaults and its checks; a [`GenRequest`] carries one, type-erased.
pub trait ModeSettings: AnySettings + Any + std::fmt::Debug + Send + Sync {
    /// Denoising steps asked for by a `KIND@STEPS` arm (modes without steps ignore it).
    fn set_steps(&mut self, _steps: usize) {}
    /// A template whose `[MASK:n]` spans the mode fills instead of continuing a prompt.
    fn template(&self) -> Option<&str> {
        None
    }
    /// Whether the mode can write without a prompt (hybrid with an outline).
    fn prompt_optional(&self) -> bool {
        false
    }
    /// A one-line error for a flag that only acts on a given outline, when no outline will
    /// come (`generate` without `--outline`; an A/B without outline arms).
    fn check_without_outline(&self) -> Result<()> {
        Ok(())
    }
}

/// Reads a mode's settings struct from parsed flags and checks it: the [`Mode::settings`] of
/// a mode whose settings are `T`.
pub fn settings_from<T>(m: &clap::ArgMatches) -> Result<Box<dyn ModeSettings>>
where
    T: clap::FromArgMatches + Checked + ModeSettings,
{
    let s = T::from_arg_matches(m).map_err(|e| crate::PipelineError::Invalid(first_line(&e.to_string())))?;
    s.check()?;
    Ok(Box::new(s))
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or_default().trim_start_matches("error: ").to_string()
}

/// A settings struct's own checks, run when it is read from flags.
pub trait Checked {
    fn check(&self) -> Result<()>;
}

/// The settings of a request that names none: every mode then uses its defaults.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoSettings;

impl ModeSettings for NoSettings {}

static NO_SETTINGS: NoSettings = NoSettings;

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

/// What a mode is asked to write.
#[derive(Debug, Clone)]
pub struct GenRequest<'a> {
    /// The text to continue (a mode whose settings hold a template reads that instead).
    pub prompt: &'a str,
    /// Samples of the prompt, written as one batch.
    pub samples: usize,
    pub gen: GenOptions,
    /// The chosen mode's own settings (its flags).
    pub settings: &'a dyn ModeSettings,
    /// A plan to follow, for the modes that read one (see [`Given`]).
    pub given: Option<Given<'a>>,
}

impl<'a> GenRequest<'a> {
    /// A request for `samples` continuations of `prompt`, every mode setting at its default.
    pub fn new(prompt: &'a str, samples: usize, gen: GenOptions) -> Self {
        Self { prompt, samples, gen, settings: &NO_SETTINGS, given: None }
    }

    /// The same request with these mode settings.
    pub fn with(self, settings: &'a dyn ModeSettings) -> Self {
        Self { settings, ..self }
    }

    /// An error when the request gives a plan to follow: for the modes that read none.
    pub fn refuse_given(&self, mode: &str) -> Result<()> {
        match self.given {
            Some(_) => Err(crate::PipelineError::Invalid(format!(
                "mode {mode} follows no given plan (a reference or an outline); use mode hybrid"
            ))),
            None => Ok(()),
        }
    }

    /// The same request following `given`.
    pub fn given(self, given: Given<'a>) -> Self {
        Self { given: Some(given), ..self }
    }

    /// The request's settings as mode type `T`: `T`'s defaults when it names none, an error
    /// when it holds another mode's (a caller's mistake, never silently ignored).
    pub fn settings_as<T: ModeSettings + Default + Clone>(&self) -> Result<Cow<'_, T>> {
        if let Some(t) = self.settings.as_any().downcast_ref::<T>() {
            return Ok(Cow::Borrowed(t));
        }
        if self.settings.as_any().is::<NoSettings>() {
            return Ok(Cow::Owned(T::default()));
        }
        Err(crate::PipelineError::Invalid(format!(
            "internal: a request for {} holds another mode's settings ({:?})",
            std::any::type_name::<T>().rsplit("::").next().unwrap_or_default(),
            self.settings
        )))
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
    /// Mode `hybrid`: the planned slots, the time spent planning and re-encoding written
    /// sentences into the plan space for the decoder's next windows (both part of `seconds`).
    Plan { plan: Vec<PlanSlot>, planning_seconds: f64, planner_calls: usize, encoding_seconds: f64 },
    /// Modes `diffusion`, `masked`: every position's token (`<pad>` included) and which were given.
    Positions { tokens: Vec<i64>, known: Vec<bool> },
}

/// One planned slot, for `--show-plan` and plan adherence.
#[derive(Debug, Clone, Serialize)]
pub struct PlanSlot {
    /// 1-based sentence number in the whole text (prompt sentences included).
    pub sentence: usize,
    /// What the decoder writes from this latent alone (greedy, no text before it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preview: Option<String>,
    /// The sentence actually written in this slot.
    pub written: Option<String>,
    /// Cosine between the planned latent and the latent of the written sentence.
    pub adherence: Option<f64>,
    /// The outline's line that fixed this slot (`--outline`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outline: Option<String>,
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
