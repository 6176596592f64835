//! [`Bundle`]: a bundle folder's paths, its tokenizer, its stages' configs, and the atomic
//! stage save.
//!
//! A stage folder is written whole into `BUNDLE/.ar.staging`, every file fsynced, then
//! swapped in by two renames (`ar -> .ar.old`, `.ar.staging -> ar`), so a crash or a full
//! disk never leaves a half-written checkpoint: readers find either the old or the new one
//! (and fall back to `.ar.old` if the crash fell between the renames).

use crate::format::{ModelConfig, StageConfigFile, TrainerState, FORMAT_VERSION};
use crate::{fsutil, BundleError, Result};
use plandiff_data::TextTokenizer;
use std::path::{Path, PathBuf};

pub struct Bundle {
    root: PathBuf,
}

impl Bundle {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// A bundle to read from: the folder must exist.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self> {
        let b = Self::new(root);
        if !b.root.is_dir() {
            return Err(BundleError::file(&b.root, "no such folder; give a bundle made by `plandiff train`"));
        }
        Ok(b)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn tokenizer_path(&self) -> PathBuf {
        self.root.join("tokenizer.json")
    }

    /// The live folder of a stage (or the pre-swap one if a crash fell between renames).
    pub fn stage_dir(&self, kind: &str) -> PathBuf {
        let live = self.root.join(kind);
        let old = self.root.join(format!(".{kind}.old"));
        if !live.exists() && old.exists() {
            return old;
        }
        live
    }

    pub fn has_stage(&self, kind: &str) -> bool {
        self.stage_dir(kind).join("config.json").exists()
    }

    /// `BUNDLE/<stage>/model.safetensors`.
    pub fn weights_path(&self, kind: &str) -> PathBuf {
        self.stage_dir(kind).join("model.safetensors")
    }

    pub fn load_tokenizer(&self) -> Result<TextTokenizer> {
        let p = self.tokenizer_path();
        if !p.exists() {
            return Err(BundleError::file(
                &p,
                format!("not found; is {} a plandiff bundle (made by `plandiff train`)?", self.root.display()),
            ));
        }
        Ok(TextTokenizer::from_file(&p)?)
    }

    pub fn write_tokenizer(&self, tk: &TextTokenizer) -> Result<()> {
        std::fs::create_dir_all(&self.root).map_err(|e| {
            BundleError::file(&self.root, format!("cannot create the bundle folder ({e}); choose a writable path"))
        })?;
        fsutil::write_atomic(&self.tokenizer_path(), tk.to_json()?.as_bytes())
    }

    /// The one tokenizer check: `tokenizer` is the one the `kind` model was trained with (its
    /// config's `hash`), and has the model's vocabulary (`vocab`, for models with one).
    pub fn check_tokenizer(&self, tokenizer: &TextTokenizer, kind: &str, hash: &str, vocab: Option<i64>) -> Result<()> {
        if tokenizer.hash() != hash {
            return Err(BundleError::file(
                self.tokenizer_path(),
                format!(
                    "this tokenizer (hash {}) is not the one the `{kind}` model was trained with (hash {}); put the model's own tokenizer.json back in the bundle",
                    &tokenizer.hash()[..12.min(tokenizer.hash().len())],
                    &hash[..hash.len().min(12)]
                ),
            ));
        }
        if let Some(vocab) = vocab.filter(|&v| v != tokenizer.vocab_size() as i64) {
            return Err(BundleError::file(
                self.tokenizer_path(),
                format!("has {} tokens but the `{kind}` model's vocab_size is {vocab}", tokenizer.vocab_size()),
            ));
        }
        Ok(())
    }

    pub fn read_config(&self, kind: &str) -> Result<StageConfigFile> {
        self.read_config_as(kind)
    }

    /// A stage's `config.json`: version, kind and model section checked.
    pub fn read_config_as<M: ModelConfig>(&self, kind: &str) -> Result<StageConfigFile<M>> {
        let p = self.stage_dir(kind).join("config.json");
        if !p.is_file() {
            return Err(BundleError::file(
                &p,
                format!("not found; the bundle has no `{kind}` model (train it with `plandiff train {kind}`)"),
            ));
        }
        let text = plandiff_data::read_text_capped(&p, plandiff_data::SMALL_FILE_CAP).map_err(|e| match e {
            plandiff_data::DataError::Io { source, .. } => {
                BundleError::file(&p, format!("{source}; check the bundle's permissions"))
            }
            other => BundleError::Data(other),
        })?;
        let c: StageConfigFile<M> = serde_json::from_str(&text).map_err(|e| {
            BundleError::file(
                &p,
                format!("not a valid model config ({e}); the bundle is damaged, retrain or restore it"),
            )
        })?;
        if c.format_version != FORMAT_VERSION {
            return Err(BundleError::file(
                &p,
                format!(
                    "format_version {} but this plandiff reads {FORMAT_VERSION}; use a matching plandiff or retrain",
                    c.format_version
                ),
            ));
        }
        if c.kind != kind {
            return Err(BundleError::file(&p, format!("kind is `{}`, expected `{kind}`", c.kind)));
        }
        c.model.validate().map_err(|source| BundleError::Model { path: p.clone(), source })?;
        Ok(c)
    }

    pub fn read_trainer_state(&self, kind: &str) -> Result<TrainerState> {
        let p = self.stage_dir(kind).join("trainer_state.json");
        if !p.is_file() {
            return Err(BundleError::file(&p, "not found; nothing to resume (train without --resume to start a run)"));
        }
        let text = plandiff_data::read_text_capped(&p, plandiff_data::SMALL_FILE_CAP)?;
        let st: TrainerState =
            serde_json::from_str(&text).map_err(|e| BundleError::file(&p, format!("damaged trainer state ({e})")))?;
        // As strict as a config: a 0 interval divides by zero, a huge batch aborts.
        let damaged = |e: BundleError| BundleError::file(&p, format!("{e}; the trainer state is damaged, restore it"));
        st.train.validate().map_err(damaged)?;
        if let Some(plan) = &st.plan {
            plan.validate().map_err(damaged)?;
        }
        Ok(st)
    }

    /// Writes a stage atomically: `fill` writes the files into a staging folder.
    pub fn save_stage<E: From<BundleError>>(
        &self,
        kind: &str,
        fill: impl FnOnce(&Path) -> std::result::Result<(), E>,
    ) -> std::result::Result<PathBuf, E> {
        std::fs::create_dir_all(&self.root).map_err(|e| BundleError::io(&self.root, e))?;
        let staging = self.root.join(format!(".{kind}.staging"));
        let old = self.root.join(format!(".{kind}.old"));
        let live = self.root.join(kind);
        let _ = std::fs::remove_dir_all(&staging);
        std::fs::create_dir_all(&staging).map_err(|e| BundleError::io(&staging, e))?;
        let res = fill(&staging).and_then(|()| Ok(sync_all(&staging)?));
        if let Err(e) = res {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(e);
        }
        if live.exists() {
            let _ = std::fs::remove_dir_all(&old);
            std::fs::rename(&live, &old).map_err(|e| BundleError::io(&live, e))?;
        }
        std::fs::rename(&staging, &live).map_err(|e| BundleError::io(&live, e))?;
        fsutil::fsync_dir(&self.root)?;
        let _ = std::fs::remove_dir_all(&old);
        Ok(live)
    }
}

/// Fsyncs every file of a folder, then the folder.
fn sync_all(dir: &Path) -> Result<()> {
    for entry in std::fs::read_dir(dir).map_err(|e| BundleError::io(dir, e))? {
        let entry = entry.map_err(|e| BundleError::io(dir, e))?;
        fsutil::fsync_file(&entry.path())?;
    }
    fsutil::fsync_dir(dir)
}

/// A prepared split of `data`, checked to be tokenized with `tokenizer` (the data-side half
/// of the one tokenizer check).
pub fn open_split(data: &Path, split: &str, tokenizer: &TextTokenizer) -> Result<plandiff_data::TokenSet> {
    let set = plandiff_data::TokenSet::open(data, split)?;
    if set.stats.tokenizer_hash != tokenizer.hash() {
        return Err(BundleError::file(
            data,
            format!(
                "the {split} split was tokenized with another tokenizer than the model; prepare the data with the model's own: `plandiff prepare --tokenizer BUNDLE/tokenizer.json`"
            ),
        ));
    }
    Ok(set)
}
