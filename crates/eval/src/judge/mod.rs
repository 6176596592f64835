//! The independent judge of the A/B harness and of `eval --metrics`: an off-the-shelf
//! sentence encoder (all-MiniLM-L6-v2, [`encoder`] on [`minilm`]) that belongs to neither arm,
//! the topic and coherence scores it gives ([`scores`]), and MAUVE against human text
//! ([`mauve`]).

pub mod encoder;
pub mod mauve;
pub mod minilm;
pub mod scores;

pub use encoder::{find_encoder, EncoderError, SentenceEncoder};
pub use mauve::{mauve, Mauve, MauveOptions};
