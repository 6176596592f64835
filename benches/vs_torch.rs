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
}
