//! Shared pieces of the benchmark binaries.

#![allow(dead_code)]

use plandiff_decoder::DecoderConfig;
use plandiff_layers::{NormKind, TransformerShape};

/// The decoder of `configs/tiny.toml` with a 4096-token vocabulary.
pub fn tiny(plan: Option<plandiff_decoder::PlanConfig>) -> DecoderConfig {
    DecoderConfig {
        vocab_size: 4096,
        shape: TransformerShape {
            d_model: 256,
            n_layers: 4,
            n_heads: 4,
            d_ff: 1024,
            dropout: 0.0,
            norm: NormKind::Layer,
        },
        max_seq_len: 1024,
        plan,
        rotary: None,
        cross_blocks: None,
    }
}

pub fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(default)
}

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}
