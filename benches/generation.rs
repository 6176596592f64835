//! KV-cached generation of the tiny decoder: per-token latency by position, against
//! recomputing the whole prefix without a cache, and tokens/s at batch 1 and 8.
//!
//!     cargo bench --bench generation -- --threads 2

mod common;
use plandiff_decoder::{generate, Decoder, GenerateOptions, LogitsProcessor, PlanConfig, SamplingConfig};
use std::time::Instant;
use tch::{nn, Device, Kind, Tensor};

/// Median latency (ms) of cached decoding steps around position `pos`, batch `b`: prefill
/// `pos - 8` tokens, then time 16 single-token steps (what generation does at that depth).
fn cached_step_ms(model: &Decoder, pos: i64, b: i64, reps: usize) -> f64 {
    let start = (pos - 8).max(1);
    let prefix = Tensor::randint(4000, [b, start], (Kind::Int64, Device::Cpu));
    let positions = Tensor::arange(start, (Kind::Int64, Device::Cpu)).unsqueeze(0).expand([b, start], false);
    let mut out = Vec::new();
    for _ in 0..reps.div_ceil(4) {
        let mut cache = model.new_cache(None, b);
        let _ = tch::no_grad(|| model.forward_step(&prefix, &positions, None, None, &mut cache));
        for i in 0..16 {
            let tok = Tensor::randint(4000, [b, 1], (Kind::Int64, Device::Cpu));
            let p = Tensor::full([b, 1], start + i, (Kind::Int64, Device::Cpu));
            let t0 = Instant::now();
            let _ = tch::no_grad(|| model.forward_step(&tok, &p, None, None, &mut cache));
            out.push(t0.elapsed().as_secs_f64() * 1e3);
        }
    }
    common::median(out)
}

/// Median latency (ms) of producing the next token at position `pos` by a full forward pass.
fn uncached_ms(model: &Decoder, pos: i64, reps: usize) -> f64 {
    let seq = Tensor::randint(4000, [1, pos + 1], (Kind::Int64, Device::Cpu));
    let mut out = Vec::new();
    for _ in 0..reps {
        let t0 = Instant::now();
        let _ = tch::no_grad(|| model.forward(&seq, None, None, false).select(1, -1));
        out.push(t0.elapsed().as_secs_f64() * 1e3);
    }
    common::median(out)
}

fn tokens_per_s(model: &Decoder, b: usize, new: usize, plan: Option<&Tensor>) -> f64 {
    let prompts = vec![vec![0i64, 10, 11, 12, 13, 14, 15, 16]; b];
    let opts =
        GenerateOptions { max_new_tokens: new, max_sentences: None, eos_id: -1, sep_id: -2, pad_id: 3, banned: vec![] };
    let mut lp = LogitsProcessor::new(SamplingConfig::default(), 0);
    let t0 = Instant::now();
    let g = generate(model, &prompts, plan, &mut lp, &opts, |_, _| {});
    let n: usize = g.tokens.iter().map(Vec::len).sum();
    n as f64 / t0.elapsed().as_secs_f64()
}

fn main() {
    let threads = common::arg("--threads", 2);
    tch::set_num_threads(threads as i32);
    tch::manual_seed(0);
    let vs = nn::VarStore::new(Device::Cpu);
    let model = Decoder::new(vs.root(), &common::tiny(None));
    let reps = common::arg("--reps", 15);
    println!("tiny decoder (d 256, 4 layers, vocab 4096), {threads} threads, median of {reps}");
    println!("| position | cached step (ms) | full recompute (ms) | speed-up |");
    println!("|---:|---:|---:|---:|");
    let mut at16 = 0.0;
    let mut at512 = 0.0;
    for pos in [16i64, 128, 512, 1000] {
        let c = cached_step_ms(&model, pos, 1, reps);
        let u = uncached_ms(&model, pos, reps.min(7));
        if pos == 16 {
            at16 = c;
        }
        if pos == 512 {
            at512 = c;
        }
        println!("| {pos} | {c:.2} | {u:.2} | {:.1}x |", u / c);
    }
    println!("cached latency at 512 / at 16: {:.2}", at512 / at16);
    println!();
    println!("| batch | mode | new tokens | tokens/s (all rows) |");
    println!("|---:|---|---:|---:|");
    for b in [1usize, 8] {
        println!("| {b} | ar | 256 | {:.0} |", tokens_per_s(&model, b, 256, None));
    }
    let vs2 = nn::VarStore::new(Device::Cpu);
    let planned = Decoder::new(vs2.root(), &common::tiny(Some(PlanConfig { d_latent: 64, max_slots: 16 })));
    let plan = Tensor::randn([1, 16, 64], (Kind::Float, Device::Cpu));
    println!("| 1 | plan cross-attention (16 slots) | 256 | {:.0} |", tokens_per_s(&planned, 1, 256, Some(&plan)));
}
