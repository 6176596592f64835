//! Training throughput of the tiny decoder: forward, backward, clip, AdamW, on random
//! tokens with the same shapes as `python/plandiff_twin.py bench-train`.
//!
//!     cargo bench --bench train_throughput -- --threads 2 --steps 20

mod common;
use plandiff_decoder::{Decoder, DecoderInput};
use plandiff_train::{AdamW, AdamWConfig};
use std::time::Instant;
use tch::{nn, Device, Kind, Tensor};

fn main() {
    let threads = common::arg("--threads", 2);
    let steps = common::arg("--steps", 20);
    let warmup = common::arg("--warmup", 3);
    let (b, t) = (common::arg("--batch", 16) as i64, common::arg("--seq-len", 256) as i64);
    // `--unfused`: the logits whole and `cross_entropy` over them (the path before the fused head).
    let unfused = std::env::args().any(|a| a == "--unfused");
    // `--bf16`: bf16 autocast around the forward and backward passes (`--precision bf16`).
    let bf16 = std::env::args().any(|a| a == "--bf16");
    tch::set_num_threads(threads as i32);
    tch::manual_seed(0);
    let cfg = common::tiny(None);
    let vs = nn::VarStore::new(Device::Cpu);
    let model = Decoder::new(vs.root(), &cfg);
    let params: i64 = vs.variables().values().map(|t| t.numel() as i64).sum();
    let mut opt = AdamW::new(
        vs.variables().into_iter().collect(),
        AdamWConfig { beta1: 0.9, beta2: 0.95, eps: 1e-8, weight_decay: 0.1 },
    );
    let data = Tensor::randint(cfg.vocab_size, [(steps + warmup) as i64, b, t + 1], (Kind::Int64, Device::Cpu));
    let mut times = Vec::new();
    for i in 0..steps + warmup {
        let t0 = Instant::now();
        let batch = data.get(i as i64);
        let (x, y) = (batch.narrow(1, 0, t), batch.narrow(1, 1, t));
        let cast = bf16.then(|| plandiff_distributed::Bf16Autocast::enter(Device::Cpu).expect("bf16 autocast"));
        let loss = if unfused {
            model.forward(&x, None, None, true).view([-1, cfg.vocab_size]).cross_entropy_for_logits(&y.reshape(-1))
        } else {
            model.loss_masked(&DecoderInput::tokens(&x), &y, -100, true)
        };
        opt.zero_grad();
        loss.backward();
        drop(cast);
        let _ = opt.clip_grad_norm(1.0);
        opt.step(1e-3);
        if i >= warmup {
            times.push(t0.elapsed().as_secs_f64());
        }
    }
    let total: f64 = times.iter().sum();
    println!(
        "{{\"impl\": \"{}\", \"tokens_per_s\": {:.1}, \"step_ms\": {:.1}, \"params\": {params}, \"threads\": {threads}}}",
        match (unfused, bf16) {
            (true, false) => "plandiff-unfused",
            (true, true) => "plandiff-unfused-bf16",
            (false, false) => "plandiff",
            (false, true) => "plandiff-bf16",
        },
        (b * t) as f64 * times.len() as f64 / total,
        1e3 * total / times.len() as f64
    );
}
