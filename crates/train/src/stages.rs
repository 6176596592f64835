//! What a stage is ([`Stage`]) and the queries over the one list of stages,
//! [`crate::STAGES`] (in `lib.rs`, beside the stage modules). `plandiff train`, `eval`,
//! `info` and `export`, and the run config's sections, all read that list, so a new stage is
//! one module that implements [`Stage`] plus one line there.

use crate::config::RunConfig;
use crate::trainer::{TrainArgs, TrainReport};
use crate::{Result, STAGES};
use plandiff_bundle::{Bundle, ModelConfig};
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

/// One stage: how it trains, evaluates, describes itself and reads its config section.
pub trait Stage: Sync {
    /// The stage's name: its folder in a bundle, its config section, its CLI word.
    fn name(&self) -> &'static str;
    /// One line for `--help`.
    fn about(&self) -> &'static str;
    /// Runs (or resumes) the stage into `args.out`.
    fn train(&self, args: TrainArgs) -> Result<TrainReport>;
    /// `plandiff eval --stage NAME`.
    fn evaluate(&self, req: &EvalRequest) -> Result<StageEval>;
    /// The stage's config.json, checked by its own model type, as JSON.
    fn read_config(&self, bundle: &Bundle) -> Result<serde_json::Value>;
    /// One line for `plandiff info` from the stage's config.json.
    fn describe(&self, config: &serde_json::Value, parameters: u64) -> String;
    /// Checks the stage's section of a run config (types and unknown fields).
    fn check_section(&self, section: &toml::Value) -> Result<()>;
    /// Checks the stage's section deeply: every value a fresh run would build a model from.
    fn check_config(&self, config: &RunConfig, vocab_size: i64) -> Result<()>;
    /// Adjusts the stage's config.json as `export` copies it into `dst` (e.g. a fingerprint
    /// of a stage exported before it).
    fn on_export(&self, _config: &mut serde_json::Value, _dst: &Bundle) -> Result<()> {
        Ok(())
    }
}

/// The stage of this name.
pub fn find(name: &str) -> Option<&'static dyn Stage> {
    STAGES.iter().copied().find(|s| s.name() == name)
}

/// Every stage's name, in training order.
pub fn names() -> Vec<&'static str> {
    STAGES.iter().map(|s| s.name()).collect()
}

/// The stages a bundle holds, in training order.
pub fn held_by(bundle: &Bundle) -> Vec<&'static dyn Stage> {
    STAGES.iter().copied().filter(|s| bundle.has_stage(s.name())).collect()
}

/// A stage's config.json, checked by its model type `M`, as JSON (for `info`).
pub fn config_json<M: ModelConfig>(bundle: &Bundle, kind: &str) -> Result<serde_json::Value> {
    serde_json::to_value(bundle.read_config_as::<M>(kind)?).map_err(crate::TrainError::json)
}

/// A loss from a config.json (null before the first evaluation), for summaries.
pub fn loss(v: &serde_json::Value) -> String {
    v.as_f64().map_or_else(|| "-".to_string(), |x| format!("{x:.4}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_list_of_distinct_stages_in_training_order() {
        let names = names();
        let mut sorted = names.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), names.len(), "stage names are distinct: {names:?}");
        let at = |n: &str| names.iter().position(|&x| x == n).unwrap();
        // The planner reads the autoencoder's latents (training) and fingerprint (export).
        assert!(at("autoencoder") < at("planner"));
        assert!(names.iter().all(|n| find(n).is_some_and(|s| s.name() == *n)));
        assert!(find("planer").is_none());
    }

    #[test]
    fn a_bundle_holds_the_stages_with_a_config() {
        let dir = tempfile::tempdir().unwrap();
        let b = Bundle::new(dir.path());
        assert!(held_by(&b).is_empty());
        for n in ["planner", "ar"] {
            std::fs::create_dir_all(dir.path().join(n)).unwrap();
            std::fs::write(dir.path().join(n).join("config.json"), "{}").unwrap();
        }
        let held: Vec<&str> = held_by(&b).iter().map(|s| s.name()).collect();
        assert_eq!(held, vec!["ar", "planner"], "in training order");
    }
}
