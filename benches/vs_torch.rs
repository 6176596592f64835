//! The project's side of `make bench-torch` (benches/vs_torch.sh): decoding tokens/s at batch 1
//! and 8 (ar, and with a 16-slot plan: hybrid's decoder), and operators dispatched per decoded
//! token, counted through libtorch's RecordFunction hook in a separate run (counting costs time).
//! One JSON line per measurement; `python/plandiff_twin.py bench-generate` is the HF side.
//!
//!     cargo bench --bench vs_torch -- --threads 2 --new 256 --reps 3

mod common;
use plandiff_decoder::{generate, Decoder, GenerateOptions, LogitsProcessor, PlanConfig, SamplingConfig};
use plandiff_distributed::ops::OpCounter;
use std::time::Instant;
use tch::{nn, Device, Kind, Tensor};

/// New tokens (all rows) and seconds of one generation of `new` tokens per row.
fn decode(model: &Decoder, b: usize, new: usize, plan: Option<&Tensor>, seed: u64) -> (usize, f64) {
    let prompts = vec![vec![0i64, 10, 11, 12, 13, 14, 15, 16]; b];
    let opts =
        GenerateOptions { max_new_tokens: new, max_sentences: None, eos_id: -1, sep_id: -2, pad_id: 3, banned: vec![] };
    let mut lp = LogitsProcessor::new(SamplingConfig::default(), seed);
    let plan = plan.map(|p| p.expand([b as i64, -1, -1], false).contiguous());
    let t0 = Instant::now();
    let g = generate(model, &prompts, plan.as_ref(), &mut lp, &opts, |_, _| {});
    (g.tokens.iter().map(Vec::len).sum(), t0.elapsed().as_secs_f64())
}

/// Median microseconds of one cached decoding step at batch 1 (model only, no sampling) after an
/// 8-token prompt, over 7 runs of 256 steps.
fn step_us(model: &Decoder) -> f64 {
    let runs = (0..7).map(|_| {
        let mut cache = model.new_cache(None, 1);
        let tok = Tensor::arange(8, (Kind::Int64, Device::Cpu)).view([1, 8]);
        let _ = model.forward_step(&tok, &tok, None, None, &mut cache);
        let t0 = Instant::now();
        for i in 0..256i64 {
            let tok = Tensor::from_slice(&[5i64]).view([1, 1]);
            let pos = Tensor::from_slice(&[8 + i]).view([1, 1]);
            let l = model.forward_step(&tok, &pos, None, None, &mut cache);
            std::hint::black_box(Vec::<f32>::try_from(l.reshape(-1)).expect("float logits"));
        }
        t0.elapsed().as_secs_f64() / 256.0 * 1e6
    });
    common::median(runs.collect())
}

/// What bounds a batch-1 step from below: the same step's matmuls alone (distinct weight
/// buffers of the tiny shapes, as a step streams them), and the same step on a decoder of the
/// same depth with d_model 16 and 64 tokens (its arithmetic next to nothing: the operators'
/// fixed cost).
fn floors() -> (f64, f64, f64) {
    let cfg = common::tiny(None);
    let (d, ff, v) = (cfg.shape.d_model, cfg.shape.d_ff, cfg.vocab_size);
    let o = (Kind::Float, Device::Cpu);
    let layers: Vec<[Tensor; 4]> = (0..cfg.shape.n_layers)
        .map(|_| {
            [
                Tensor::randn([3 * d, d], o),
                Tensor::randn([d, d], o),
                Tensor::randn([ff, d], o),
                Tensor::randn([d, ff], o),
            ]
        })
        .collect();
    let head = Tensor::randn([v, d], o);
    let x = Tensor::randn([1, 1, d], o);
    let matmuls = || {
        let mut h = x.shallow_clone();
        for [qkv, out, fc1, fc2] in &layers {
            let _ = h.linear(qkv, None::<Tensor>);
            h = h.linear(out, None::<Tensor>);
            h = h.linear(fc1, None::<Tensor>).linear(fc2, None::<Tensor>) * 1e-3;
        }
        h.linear(&head, None::<Tensor>)
    };
    (0..50).for_each(|_| drop(matmuls()));
    let runs = (0..7).map(|_| {
        let t0 = Instant::now();
        (0..256).for_each(|_| drop(std::hint::black_box(matmuls())));
        t0.elapsed().as_secs_f64() / 256.0 * 1e6
    });
    let matmul_us = common::median(runs.collect());
    let mut small = cfg.clone();
    (small.shape.d_model, small.shape.d_ff, small.vocab_size) = (16, 64, 64);
    let vs = nn::VarStore::new(Device::Cpu);
    let tiny_vs = nn::VarStore::new(Device::Cpu);
    let (small, tiny) = (Decoder::new(vs.root(), &small), Decoder::new(tiny_vs.root(), &cfg));
    (matmul_us, step_us(&small), step_us(&tiny))
}

fn main() {
    let threads = common::arg("--threads", 2);
    let new = common::arg("--new", 256);
    let reps = common::arg("--reps", 3);
    tch::set_num_threads(threads as i32);
    tch::manual_seed(0);
    let vs = nn::VarStore::new(Device::Cpu);
    let ar = Decoder::new(vs.root(), &common::tiny(None));
    let vs2 = nn::VarStore::new(Device::Cpu);
    let planned = Decoder::new(vs2.root(), &common::tiny(Some(PlanConfig { d_latent: 64, max_slots: 16 })));
    let plan = Tensor::randn([1, 16, 64], (Kind::Float, Device::Cpu));
    let cases: [(&str, &Decoder, usize, Option<&Tensor>); 3] =
        [("ar", &ar, 1, None), ("ar", &ar, 8, None), ("hybrid", &planned, 1, Some(&plan))];
    for (mode, model, b, plan) in cases {
        let _ = decode(model, b, 16, plan, 0); // warm-up
        let rates: Vec<f64> = (0..reps)
            .map(|r| {
                let (n, s) = decode(model, b, new, plan, r as u64 + 1);
                n as f64 / s
            })
            .collect();
        let counter = OpCounter::start_with(std::env::args().any(|a| a == "--names"));
        let (n, _) = decode(model, b, new, plan, 99);
        let ops = counter.read();
        for (name, k) in counter.by_name().iter().take(40) {
            eprintln!("{mode} b{b}: {:.2} {name} per step", *k as f64 / (n / b) as f64);
        }
        drop(counter);
        // Per decoded position (a step writes one token in each of the b rows).
        let steps = (n / b) as f64;
        println!(
            "{{\"impl\": \"plandiff\", \"what\": \"decode\", \"mode\": \"{mode}\", \"batch\": {b}, \"new\": {new}, \"tokens_per_s\": {:.1}, \"ops_per_step\": {:.1}, \"top_ops_per_step\": {:.1}, \"threads\": {threads}}}",
            common::median(rates),
            ops.all as f64 / steps,
            ops.top as f64 / steps
        );
    }
    let (matmul_us, overhead_us, step) = tch::no_grad(floors);
    println!(
        "{{\"impl\": \"plandiff\", \"what\": \"floor\", \"matmul_us\": {matmul_us:.1}, \"d16_step_us\": {overhead_us:.1}, \"step_us\": {step:.1}, \"threads\": {threads}}}"
    );
}
