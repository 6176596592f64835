//! Token sets loaded from prepared shards, and the deterministic window sampler.
//!
//! The sampler is a pure function of `(seed, global sample index)`: the window for sample
//! `g` is `perm_{epoch}[g mod n]` with `epoch = g / n` and a per-epoch permutation drawn from
//! ChaCha seeded with `(seed, epoch)`. A resumed run needs only its step to continue with
//! exactly the data an uninterrupted run would have seen.

use crate::prepare::PrepareStats;
use crate::{read_shard, DataError, Result};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::path::Path;

/// All tokens of one split, concatenated.
pub struct TokenSet {
    pub tokens: Vec<u32>,
    pub stats: PrepareStats,
}

impl TokenSet {
    /// `split` is `"train"` or `"valid"`.
    pub fn open(dir: &Path, split: &str) -> Result<Self> {
        let stats = PrepareStats::load(dir)?;
        // The folder's tokenizer must be the one its shards were made with (stats.json's hash):
        // a tokenizer written over it later would silently pair ids with the wrong pieces.
        let tk_path = dir.join("tokenizer.json");
        if tk_path.exists() {
            let tk = crate::TextTokenizer::from_file(&tk_path)?;
            if tk.hash() != stats.tokenizer_hash {
                return Err(DataError::Invalid(format!(
                    "{}: not the tokenizer the shards of {} were made with (stats.json records another); run `plandiff prepare` again into a new folder",
                    tk_path.display(),
                    dir.display()
                )));
            }
        }
        let shards = if split == "train" { &stats.train.shards } else { &stats.valid.shards };
        let mut tokens = Vec::new();
        for s in shards {
            tokens.extend(read_shard(&dir.join(s))?);
        }
        if let Some(bad) = tokens.iter().find(|&&t| t as usize >= stats.vocab_size) {
            return Err(DataError::Invalid(format!(
                "{}: the {split} shards hold token id {bad} but the vocabulary has {} tokens; the data is corrupt, run `plandiff prepare` again",
                dir.display(),
                stats.vocab_size
            )));
        }
        if tokens.is_empty() {
            let fix = if split == "train" {
                "an evaluation-only folder (--valid-fraction 1) cannot train; prepare the training corpus with a smaller --valid-fraction"
            } else {
                "prepare more text or a larger --valid-fraction"
            };
            return Err(DataError::Invalid(format!("{}: the {split} split is empty; {fix}", dir.display())));
        }
        Ok(Self { tokens, stats })
    }

    /// Copies window `start..start+len` as i64 ids.
    pub fn window(&self, start: usize, len: usize) -> Vec<i64> {
        self.tokens[start..start + len].iter().map(|&t| t as i64).collect()
    }
}

pub struct WindowSampler {
    n_windows: u64,
    stride: usize,
    seed: u64,
    epoch: Option<(u64, Vec<u32>)>,
}

impl WindowSampler {
    /// Non-overlapping windows of `seq_len + 1` tokens (inputs and shifted targets).
    pub fn new(n_tokens: usize, seq_len: usize, seed: u64) -> Result<Self> {
        if n_tokens < seq_len + 1 {
            return Err(DataError::Invalid(format!(
                "the data holds {n_tokens} tokens, fewer than one window of seq_len + 1 = {}; use a smaller seq_len or more text",
                seq_len + 1
            )));
        }
        let n_windows = ((n_tokens - 1) / seq_len) as u64;
        Ok(Self { n_windows, stride: seq_len, seed, epoch: None })
    }

    /// A seeded, epoch-wise permutation of `n` items (`start(g)` returns the item index).
    pub fn over(n: usize, seed: u64) -> Result<Self> {
        if n == 0 {
            return Err(DataError::Invalid("nothing to sample from: the data holds no complete document".into()));
        }
        Ok(Self { n_windows: n as u64, stride: 1, seed, epoch: None })
    }

    pub fn n_windows(&self) -> u64 {
        self.n_windows
    }

    /// Start offset of global sample `g`.
    pub fn start(&mut self, g: u64) -> usize {
        let epoch = g / self.n_windows;
        if self.epoch.as_ref().map(|e| e.0) != Some(epoch) {
            let mut idx: Vec<u32> = (0..self.n_windows as u32).collect();
            let mut rng = ChaCha8Rng::seed_from_u64(self.seed ^ epoch.wrapping_mul(0x9e3779b97f4a7c15));
            idx.shuffle(&mut rng);
            self.epoch = Some((epoch, idx));
        }
        let perm = &self.epoch.as_ref().expect("set above").1;
        perm[(g % self.n_windows) as usize] as usize * self.stride
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampler_is_a_permutation_per_epoch_and_deterministic() {
        let mut s = WindowSampler::new(1001, 10, 7).unwrap();
        assert_eq!(s.n_windows(), 100);
        let mut e0: Vec<usize> = (0..100).map(|g| s.start(g)).collect();
        let e1: Vec<usize> = (100..200).map(|g| s.start(g)).collect();
        assert_ne!(e0, e1);
        let mut fresh = WindowSampler::new(1001, 10, 7).unwrap();
        assert_eq!(fresh.start(150), e1[50]);
        e0.sort();
        assert_eq!(e0, (0..100).map(|i| i * 10).collect::<Vec<_>>());
        assert!(WindowSampler::new(5, 10, 0).is_err());
    }
}
