//! Text in, token shards out: tokenizer (byte-level BPE via HF `tokenizers`), sentence
//! segmentation, streaming corpus preparation, and the batch sampler used by training.
//!
//! Document layout in a shard: `<|bos|> s1 <|sep|> s2 <|sep|> ... sN <|sep|> <|eos|>`.
//! Every sentence is encoded with one leading space, so all sentences look alike to the
//! models and decoding is `concat(sentences).trim_start()`.
//!
//! This crate knows nothing about tensors or models, and depends on no other plandiff crate.

pub mod batch;
pub mod corpus;
pub mod documents;
pub mod expected_panic;
pub mod lock;
pub mod prepare;
pub mod sentences;
pub mod shards;
pub mod staged;
pub mod tokenizer;

pub use batch::{TokenSet, WindowSampler};
pub use corpus::{expand_inputs, DocumentReader};
pub use documents::{doc_batch, index_documents, DocBatch, Document};
pub use lock::FileLock;
pub use prepare::{prepare, PrepareOptions, PrepareStats};
pub use sentences::{ends_sentence, split_sentences};
pub use shards::{read_shard, ShardWriter};
pub use staged::{is_empty_dir, StagedDir};
pub use tokenizer::{SpecialIds, TextTokenizer, BOS, EOS, PAD, SEP};

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{path}:{line}: {msg}")]
    Parse { path: String, line: usize, msg: String },
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error("{0}")]
    Invalid(String),
}

/// Reads at most `cap` bytes of `path`; a larger file (or an endless stream such as
/// `/dev/zero`) is an error naming the limit, never an allocation of its size.
pub fn read_capped(path: &std::path::Path, cap: u64) -> Result<Vec<u8>> {
    use std::io::Read as _;
    let f = std::fs::File::open(path).map_err(|e| DataError::io(path, e))?;
    let mut buf = Vec::new();
    f.take(cap + 1).read_to_end(&mut buf).map_err(|e| DataError::io(path, e))?;
    if buf.len() as u64 > cap {
        return Err(DataError::Invalid(format!(
            "{}: larger than {} MB, the most plandiff reads of such a file",
            path.display(),
            cap >> 20
        )));
    }
    Ok(buf)
}

/// [`read_capped`] as UTF-8 text.
pub fn read_text_capped(path: &std::path::Path, cap: u64) -> Result<String> {
    String::from_utf8(read_capped(path, cap)?)
        .map_err(|_| DataError::Invalid(format!("{}: not valid UTF-8; convert it to UTF-8", path.display())))
}

/// The most bytes of a small file plandiff reads: configs, prompts, a text to edit.
pub const SMALL_FILE_CAP: u64 = 16 << 20;

impl DataError {
    pub fn io(path: impl AsRef<std::path::Path>, source: std::io::Error) -> Self {
        DataError::Io { path: path.as_ref().display().to_string(), source }
    }
}

pub type Result<T> = std::result::Result<T, DataError>;
