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
pub mod prepare;
pub mod sentences;
pub mod shards;
pub mod staged;
pub mod tokenizer;

pub use batch::{TokenSet, WindowSampler};
pub use corpus::{expand_inputs, DocumentReader};
pub use documents::{doc_batch, index_documents, DocBatch, Document};
pub use prepare::{prepare, PrepareOptions, PrepareStats};
pub use sentences::split_sentences;
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

impl DataError {
    pub fn io(path: impl AsRef<std::path::Path>, source: std::io::Error) -> Self {
        DataError::Io { path: path.as_ref().display().to_string(), source }
    }
}

pub type Result<T> = std::result::Result<T, DataError>;
