//! The run config file (TOML): one section per stage (`[ar]`, `[autoencoder]`, ...), each
//! read by its stage's own section type (the stage list is [`crate::STAGES`]), so a
//! new stage brings its section with it. Unknown sections and fields are errors;
//! architecture fields have no defaults.

use crate::{Result, TrainError};
use plandiff_decoder::DecoderConfig;
use plandiff_layers::NormKind;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::path::Path;

pub use plandiff_bundle::{PlanSection, PlannerObjective, TrainConfig};

/// A parsed run config: its sections by stage, each checked against its stage's type.
#[derive(Debug, Clone, PartialEq)]
pub struct RunConfig {
    sections: toml::Table,
}

/// toml's messages span several lines (with a caret); keep them on one.
fn one_line(e: impl std::fmt::Display) -> String {
    e.to_string().split_whitespace().collect::<Vec<_>>().join(" ")
}

impl RunConfig {
    pub fn load(path: &Path) -> Result<Self> {
        let text = plandiff_data::read_text_capped(path, plandiff_data::SMALL_FILE_CAP)?;
        if text.contains('\0') {
            return Err(TrainError::Invalid(format!("{}: not a TOML file (it holds NUL bytes)", path.display())));
        }
        Self::parse(&text).map_err(|e| TrainError::Invalid(format!("{}: {e}", path.display())))
    }

    /// Parses and checks every section (an error in `[planner]` is found before `ar` trains).
    pub fn parse(text: &str) -> Result<Self> {
        let sections: toml::Table = toml::from_str(text).map_err(|e| TrainError::Invalid(one_line(e)))?;
        for (name, value) in &sections {
            let stage = crate::stages::find(name).ok_or_else(|| {
                TrainError::Invalid(format!(
                    "unknown section [{name}]; the sections are the stages: {}",
                    crate::stages::names().join(", ")
                ))
            })?;
            stage.check_section(value).map_err(|e| TrainError::Invalid(format!("[{name}]: {e}")))?;
        }
        Ok(Self { sections })
    }

    /// Section `[name]` as its stage's type.
    pub fn section<T: DeserializeOwned>(&self, name: &str) -> Result<T> {
        let v = self.sections.get(name).ok_or_else(|| {
            TrainError::Invalid(format!("the config has no [{name}] section (see configs/tiny.toml)"))
        })?;
        parse_section(v).map_err(|e| TrainError::Invalid(format!("[{name}]: {e}")))
    }
}

/// A section's TOML as its type; the message is one line.
pub fn parse_section<T: DeserializeOwned>(v: &toml::Value) -> Result<T> {
    T::deserialize(v.clone()).map_err(|e| TrainError::Invalid(one_line(e)))
}

/// `[<stage>]` of a stage that trains a decoder from scratch: `model` and `train`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageSection {
    pub model: ModelSection,
    pub train: TrainConfig,
}

/// Architecture of a decoder; the vocabulary size comes from the tokenizer of the data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSection {
    pub d_model: i64,
    pub n_layers: i64,
    pub n_heads: i64,
    pub d_ff: i64,
    pub max_seq_len: i64,
    pub dropout: f64,
    pub norm: NormKind,
}

impl ModelSection {
    pub fn decoder(&self, vocab_size: i64) -> DecoderConfig {
        DecoderConfig {
            vocab_size,
            d_model: self.d_model,
            n_layers: self.n_layers,
            n_heads: self.n_heads,
            d_ff: self.d_ff,
            max_seq_len: self.max_seq_len,
            dropout: self.dropout,
            norm: self.norm,
            plan: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_configs_parse_and_validate() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs");
        for name in ["tiny.toml", "base.toml", "demo.toml", "shipped.toml"] {
            let c = RunConfig::load(&root.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
            for stage in crate::STAGES {
                stage.check_config(&c, 4096).unwrap_or_else(|e| panic!("{name} [{}]: {e}", stage.name()));
            }
        }
    }

    #[test]
    fn unknown_field_and_section_are_named() {
        let text =
            std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/tiny.toml")).unwrap();
        let err = RunConfig::parse(&text.replace("n_layers", "n_layerz")).unwrap_err().to_string();
        assert!(err.contains("n_layerz"), "{err}");
        assert!(!err.contains('\n'));
        let err = RunConfig::parse(&format!("{text}\n[planer]\nx = 1\n")).unwrap_err().to_string();
        assert!(err.contains("unknown section [planer]") && err.contains("planner"), "{err}");
    }
}
