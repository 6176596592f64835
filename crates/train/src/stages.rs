//! What a stage is ([`Stage`]: its name, its training run, its evaluation, its run-config
//! section and its config.json), and what `plandiff eval` asks of one. The list of stages is
//! [`crate::registry::STAGES`]; a new stage is one module with a `STAGE` constant plus one
//! line there. The training loop every stage plugs into is [`crate::trainer`].

use crate::config::{parse_section, RunConfig, TrainConfig};
use crate::run::{TrainArgs, TrainReport};
use crate::Result;
use plandiff_bundle::{Bundle, ModelConfig};
use serde::de::DeserializeOwned;
use std::path::Path;
use tch::Device;

/// What `plandiff eval` asks of a stage.
#[derive(Debug, Clone)]
pub struct EvalRequest<'a> {
    pub bundle: &'a Path,
    /// A prepared data folder (`plandiff prepare`).
    pub data: &'a Path,
    pub split: &'a str,
    pub batch: usize,
    /// `None`: the whole split (or the stage's own default).
    pub max_batches: Option<usize>,
    /// Tokens per window, for stages that read windows (default: the training seq_len).
    pub seq_len: Option<usize>,
    pub device: Device,
}

/// A stage's evaluation: the fields of its JSON report and its one-line summary.
#[derive(Debug, Clone)]
pub struct StageEval {
    pub fields: serde_json::Map<String, serde_json::Value>,
    pub summary: String,
}

impl StageEval {
    /// A report whose JSON nests the result under `"result"`.
    pub fn nested(result: &impl serde::Serialize, summary: String) -> Result<Self> {
        let mut fields = serde_json::Map::new();
        fields.insert("result".into(), serde_json::to_value(result).map_err(crate::TrainError::json)?);
        Ok(Self { fields, summary })
    }
}

/// A stage's section of the run config (`[ar]`, `[planner]`, ...), checked as a whole (its
/// `train` table is checked for every stage alike).
pub trait Section: DeserializeOwned {
    /// Checks every value a fresh run would build a model from (`config`: the other
    /// sections, for a stage that reads one, e.g. the planner its autoencoder's width).
    fn check(&self, config: &RunConfig, vocab_size: i64) -> Result<()>;
}

/// A stage's training run, evaluation and summary line.
pub struct StageFns {
    /// Runs (or resumes) the stage into `args.out`.
    pub train: fn(TrainArgs) -> Result<TrainReport>,
    /// `plandiff eval --stage NAME`.
    pub evaluate: fn(&EvalRequest) -> Result<StageEval>,
    /// One line for `plandiff info` from the stage's config.json and parameter count.
    pub describe: fn(&serde_json::Value, u64) -> String,
}

/// One stage. Its section type `S` and config.json model type `M` give the config checks and
/// the config reader ([`Stage::new`]); the rest is the stage's own [`StageFns`].
pub struct Stage {
    name: &'static str,
    about: &'static str,
    fns: StageFns,
    read_config: fn(&Bundle, &str) -> Result<serde_json::Value>,
    check_section: fn(&toml::Value) -> Result<()>,
    check_config: fn(&RunConfig, &str, i64) -> Result<()>,
    on_export: fn(&mut serde_json::Value, &Bundle) -> Result<()>,
}

fn read_config<M: ModelConfig>(bundle: &Bundle, kind: &str) -> Result<serde_json::Value> {
    serde_json::to_value(bundle.read_config_as::<M>(kind)?).map_err(crate::TrainError::json)
}

fn check_section<S: Section>(v: &toml::Value) -> Result<()> {
    parse_section::<S>(v).map(drop)
}

fn check_config<S: Section>(config: &RunConfig, name: &str, vocab_size: i64) -> Result<()> {
    let s: S = config.section(name)?;
    config.section::<Trained>(name)?.train.validate()?;
    s.check(config, vocab_size)
}

/// The `train` table every stage section has.
#[derive(serde::Deserialize)]
struct Trained {
    train: TrainConfig,
}

fn no_export(_: &mut serde_json::Value, _: &Bundle) -> Result<()> {
    Ok(())
}

impl Stage {
    /// Stage `name` (its folder in a bundle, its config section, its CLI word), whose run
    /// config section is `S` and whose config.json holds an `M`.
    pub const fn new<S: Section, M: ModelConfig>(name: &'static str, about: &'static str, fns: StageFns) -> Self {
        Self {
            name,
            about,
            fns,
            read_config: read_config::<M>,
            check_section: check_section::<S>,
            check_config: check_config::<S>,
            on_export: no_export,
        }
    }

    /// The same stage, adjusting its config.json as `export` copies it into a bundle (e.g. a
    /// fingerprint of a stage exported before it).
    pub const fn with_export(self, on_export: fn(&mut serde_json::Value, &Bundle) -> Result<()>) -> Self {
        Self { on_export, ..self }
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    /// One line for `--help`.
    pub fn about(&self) -> &'static str {
        self.about
    }

    pub fn train(&self, args: TrainArgs) -> Result<TrainReport> {
        (self.fns.train)(args)
    }

    pub fn evaluate(&self, req: &EvalRequest) -> Result<StageEval> {
        (self.fns.evaluate)(req)
    }

    /// The stage's config.json, checked by its own model type, as JSON.
    pub fn read_config(&self, bundle: &Bundle) -> Result<serde_json::Value> {
        (self.read_config)(bundle, self.name)
    }

    pub fn describe(&self, config: &serde_json::Value, parameters: u64) -> String {
        (self.fns.describe)(config, parameters)
    }

    /// Checks the stage's section of a run config (types and unknown fields).
    pub fn check_section(&self, section: &toml::Value) -> Result<()> {
        (self.check_section)(section)
    }

    /// Checks the stage's section deeply: every value a fresh run would build a model from.
    pub fn check_config(&self, config: &RunConfig, vocab_size: i64) -> Result<()> {
        (self.check_config)(config, self.name, vocab_size)
    }

    pub fn on_export(&self, config: &mut serde_json::Value, dst: &Bundle) -> Result<()> {
        (self.on_export)(config, dst)
    }
}

/// A loss from a config.json (null before the first evaluation), for summaries.
pub fn loss(v: &serde_json::Value) -> String {
    v.as_f64().map_or_else(|| "-".to_string(), |x| format!("{x:.4}"))
}
