//! Frozen pretrained sentence encoders, run by plandiff itself on tch: all-MiniLM-L6-v2
//! ([`minilm`]) and all-mpnet-base-v2 ([`mpnet`]) behind one [`encoder`], parity with
//! `transformers` tested, batched embeddings, and
//! an embedding cache of a prepared corpus ([`cache`]) so every training sentence is
//! encoded once. Used by the independent judge (`eval`) and, as a plan space, by training
//! and generation.
//!
//! Depends on `data` (a prepared corpus's sentences) and no other plandiff crate.

pub mod bank;
mod bert;
pub mod cache;
pub mod encoder;
pub mod minilm;
pub mod mpnet;
pub mod space;

pub use bank::SentenceBank;
pub use cache::{
    cache_paths, corpus_sentences, embed_corpus, CacheError, CacheInfo, CacheOptions, CachePaths, CorpusEmbeddings,
};
pub use encoder::{
    find_encoder, find_mpnet, sha256_file, EncoderError, EncoderId, SentenceEncoder, MAX_TOKENS, MPNET_MAX_TOKENS,
    MPNET_NAME, NAME,
};
pub use space::PlanSpace;
