//! The run config file (TOML): one section per stage (`[ar]`, `[autoencoder]`, ...), each
//! read by its stage's own section type, so a new stage brings its section with it
//! ([`crate::registry::load_config`] checks every section against its stage). Unknown
//! sections and fields are errors; architecture fields have no defaults.

use crate::{Result, TrainError};
use plandiff_decoder::{DecoderConfig, RotaryConfig};
use plandiff_layers::TransformerShape;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::path::Path;

pub use crate::objectives::PlannerObjective;
pub use plandiff_bundle::{PlanSection, TrainConfig};

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
    T::deserialize(v.clone()).map_err(|e| {
        let msg = one_line(e);
        match misspelt(&msg, v) {
            Some((typo, field)) => {
                TrainError::Invalid(format!("unknown field `{typo}`: did you mean `{field}`? ({msg})"))
            }
            None => TrainError::Invalid(msg),
        }
    })
}

/// For a "missing field `x`" error (a flattened table, such as a model's shape, reports a
/// misspelt field as missing): the value key of the section, at any depth, closest to `x`
/// (one or two edits).
fn misspelt(msg: &str, v: &toml::Value) -> Option<(String, String)> {
    let missing = msg.split("missing field `").nth(1)?.split('`').next()?;
    let mut keys = Vec::new();
    let mut todo = vec![v];
    while let Some(t) = todo.pop() {
        for (k, v) in t.as_table().into_iter().flatten() {
            match v.is_table() {
                true => todo.push(v),
                false => keys.push(k.clone()),
            }
        }
    }
    let best = keys.into_iter().filter(|k| k != missing).min_by_key(|k| edits(k, missing))?;
    (edits(&best, missing) <= 2).then(|| (best, missing.to_string()))
}

/// Levenshtein distance between two short names.
fn edits(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
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
    /// `[<stage>.model.rotary]`: relative positions (rotary tokens, sentence-relative plan
    /// slots); absent: learned absolute positions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotary: Option<RotaryConfig>,
    /// `[autoencoder.decoder]` only: the blocks with cross-attention to the plan (absent:
    /// every block); see [`DecoderConfig::cross_blocks`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cross_blocks: Option<Vec<i64>>,
}

impl ModelSection {
    pub fn decoder(&self, vocab_size: i64) -> DecoderConfig {
        DecoderConfig {
            vocab_size,
            shape: self.shape,
            max_seq_len: self.max_seq_len,
            plan: None,
            rotary: self.rotary,
            cross_blocks: self.cross_blocks.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_misspelt_field_is_named_beside_the_missing_one() {
        assert_eq!((edits("n_layerz", "n_layers"), edits("", "ab"), edits("d_ff", "dropout")), (1, 2, 6));
        let v: toml::Value = toml::from_str("[model]\nd_modle = 3\n").unwrap();
        assert_eq!(misspelt("missing field `d_model`", &v), Some(("d_modle".into(), "d_model".into())));
        assert_eq!(misspelt("missing field `norm`", &v), None);
        assert_eq!(misspelt("invalid type", &v), None);
    }
}
