//! The run config file (TOML): one section per stage (`[ar]`, `[autoencoder]`, ...), each
//! read by its stage's own section type, so a new stage brings its section with it
//! ([`crate::registry::load_config`] checks every section against its stage). Unknown
//! sections and fields are errors; architecture fields have no defaults.

use crate::{Result, TrainError};
use plandiff_decoder::DecoderConfig;
use plandiff_layers::TransformerShape;
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
    /// Reads a config file's TOML (its sections are checked by
    /// [`crate::registry::load_config`], which callers use).
    pub(crate) fn read(path: &Path) -> Result<Self> {
        let text = plandiff_data::read_text_capped(path, plandiff_data::SMALL_FILE_CAP)?;
        if text.contains('\0') {
            return Err(TrainError::Invalid(format!("{}: not a TOML file (it holds NUL bytes)", path.display())));
        }
        Self::parse_text(&text).map_err(|e| TrainError::Invalid(format!("{}: {e}", path.display())))
    }

    pub(crate) fn parse_text(text: &str) -> Result<Self> {
        let sections: toml::Table = toml::from_str(text).map_err(|e| TrainError::Invalid(one_line(e)))?;
        Ok(Self { sections })
    }

    /// The sections by name.
    pub fn sections(&self) -> impl Iterator<Item = (&String, &toml::Value)> {
        self.sections.iter()
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
    #[serde(flatten)]
    pub shape: TransformerShape,
    pub max_seq_len: i64,
}

impl ModelSection {
    pub fn decoder(&self, vocab_size: i64) -> DecoderConfig {
        DecoderConfig { vocab_size, shape: self.shape, max_seq_len: self.max_seq_len, plan: None }
    }
}
