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
    /// The planner's steering levers for `--stage planner`'s sampled plans (default: none).
    pub plan: PlanSteer,
}

/// The planner-side levers of `generate --mode hybrid` (`--plan-sphere`, `--plan-rescale`,
/// `--plan-noise-scale`, `--plan-epsilon-scaling`, `--plan-norm`, `--plan-snap` with `--plan-bank`), for the planner's evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanSteer {
    pub sphere: bool,
    pub rescale: f64,
    pub noise_scale: f64,
    pub epsilon_scaling: f64,
    /// Norm matching toward real sentences' norm (0: off).
    pub norm: f64,
    /// The pull toward the nearest sentence of `bank` (0: off).
    pub snap: f64,
    /// The bank's per-dimension quantile to clamp to (0: off).
    pub clip: f64,
    pub bank: Option<std::path::PathBuf>,
}

impl Default for PlanSteer {
    fn default() -> Self {
        Self {
            sphere: false,
            rescale: 0.0,
            noise_scale: 1.0,
            epsilon_scaling: 1.0,
            norm: 0.0,
            snap: 0.0,
            clip: 0.0,
            bank: None,
        }
    }
}

/// A stage's evaluation: the fields of its JSON report and its one-line summary.
#[derive(Debug, Clone)]
pub struct StageEval {
    pub fields: serde_json::Map<String, serde_json::Value>,
    pub summary: String,
}

impl StageEval {
    /// A report whose JSON nests the result under `"result"`; its summary is `template` filled
    /// from the result's fields and `{split}` (see [`render`]).
    pub fn nested(result: &impl serde::Serialize, split: &str, template: &str) -> Result<Self> {
        let mut v = serde_json::to_value(result).map_err(crate::TrainError::json)?;
        let summary = {
            let mut with_split = v.clone();
            with_split["split"] = serde_json::Value::String(split.to_string());
            render(template, &with_split)
        };
        let mut fields = serde_json::Map::new();
        fields.insert("result".into(), v.take());
        Ok(Self { fields, summary })
    }
}

/// Fills a one-line template from a JSON document: `{a.b}` is the value at that path (a string
/// as it is, null as `none`, a missing one as `?`), `{a.b:.3}` a number with three decimals,
/// `{a.b:loss}` a loss (four decimals; `-` before the first evaluation).
pub fn render(template: &str, doc: &serde_json::Value) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let Some(close) = rest[open..].find('}') else { break };
        let (key, spec) = rest[open + 1..open + close].split_once(':').unwrap_or((&rest[open + 1..open + close], ""));
        let v = key.split('.').try_fold(doc, |v, k| v.get(k));
        out.push_str(&match (v, spec) {
            (Some(v), "loss") => loss(v),
            (Some(v), s) if s.starts_with('.') => match (v.as_f64(), s[1..].parse::<usize>()) {
                (Some(x), Ok(p)) => format!("{x:.p$}"),
                _ => "?".to_string(),
            },
            (Some(serde_json::Value::String(s)), _) => s.clone(),
            (Some(serde_json::Value::Null), _) => "none".to_string(),
            (Some(v), _) => v.to_string(),
            (None, _) => "?".to_string(),
        });
        rest = &rest[open + close + 1..];
    }
    out.push_str(rest);
    out
}

/// A stage's section of the run config (`[ar]`, `[planner]`, ...), checked as a whole (its
/// `train` table is checked for every stage alike).
pub trait Section: DeserializeOwned {
    /// Checks every value a fresh run would build a model from (`config`: the other
    /// sections, for a stage that reads one, e.g. the planner its autoencoder's width).
    fn check(&self, config: &RunConfig, vocab_size: i64) -> Result<()>;
}

/// One stage. Its section type `S` and config.json model type `M` give the config checks and
/// the config reader ([`Stage::new`]); its training run, evaluation and `info` line are its own.
pub struct Stage {
    name: &'static str,
    about: &'static str,
    train: fn(TrainArgs) -> Result<TrainReport>,
    evaluate: fn(&EvalRequest) -> Result<StageEval>,
    /// `plandiff info`'s line: a [`render`] template over the config.json and `{parameters}`.
    describe: &'static str,
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
    /// Stage `name` (its folder in a bundle, its config section, its CLI word; `about`: one
    /// line for `--help`), whose run config section is `S` and whose config.json holds an `M`.
    pub const fn new<S: Section, M: ModelConfig>(
        name: &'static str,
        about: &'static str,
        train: fn(TrainArgs) -> Result<TrainReport>,
        evaluate: fn(&EvalRequest) -> Result<StageEval>,
        describe: &'static str,
    ) -> Self {
        Self {
            name,
            about,
            train,
            evaluate,
            describe,
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
        (self.train)(args)
    }

    pub fn evaluate(&self, req: &EvalRequest) -> Result<StageEval> {
        (self.evaluate)(req)
    }

    /// The stage's config.json, checked by its own model type, as JSON.
    pub fn read_config(&self, bundle: &Bundle) -> Result<serde_json::Value> {
        (self.read_config)(bundle, self.name)
    }

    pub fn describe(&self, config: &serde_json::Value, parameters: u64) -> String {
        let mut doc = config.clone();
        doc["parameters"] = parameters.into();
        render(self.describe, &doc)
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn render_fills_paths_decimals_losses_and_nulls() {
        let doc = json!({"m": {"d": 192, "s": "ddim", "b": null}, "p": {"loss": 2.44231, "none": null}, "x": 0.12345});
        let t = "{m.d} d, {m.s} {m.b}, loss {p.loss:loss} / {p.none:loss}, {x:.3}, {m.missing}";
        assert_eq!(render(t, &doc), "192 d, ddim none, loss 2.4423 / -, 0.123, ?");
        assert_eq!(render("no fields", &doc), "no fields");
    }
}
