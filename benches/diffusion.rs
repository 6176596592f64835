//! Pure-diffusion and masked-diffusion generation speed against AR generation of the same
//! length with a same-size model (the architectures of `configs/tiny.toml`, random weights:
//! speed does not depend on what the weights learned).
//!
//! Diffusion writes all L positions at once, each step one forward pass over L positions;
//! AR writes L tokens one by one with the KV cache.
//!
//!     cargo bench --bench diffusion -- --threads 2

mod common;
use plandiff_decoder::{generate, Decoder, GenerateOptions, LogitsProcessor, SamplingConfig};
use plandiff_diffusion::SamplerKind;
use plandiff_embedding::{sample_tokens, Infill, Rounding, TextDiffusion, TextSampling};
use plandiff_masked::{sample_masked, BlockCache, MaskedLm, MaskedSampling, Problem, Remasking, Start};
use plandiff_train::diffusion::DiffusionSection;
use plandiff_train::masked::MaskedSection;
use plandiff_train::RunConfig;
use std::time::Instant;
use tch::{nn, Device};

fn main() {
    let threads = common::arg("--threads", 2);
    let reps = common::arg("--reps", 3);
    tch::set_num_threads(threads as i32);
    tch::manual_seed(0);
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/tiny.toml");
    let rc = plandiff_train::load_config(&root).expect("configs/tiny.toml");
    let d: DiffusionSection = rc.section("diffusion").expect("[diffusion]");
    let schedule = plandiff_diffusion::NoiseSchedule::new(d.diffusion.clone()).expect("schedule");
    let ar_vs = nn::VarStore::new(Device::Cpu);
    let ar = Decoder::new(ar_vs.root(), &common::tiny(None));
    println!(
        "diffusion: d_emb {}, d_model {}, {} layers (configs/tiny.toml); AR: the tiny decoder (d 256, 4 layers); batch 1, {threads} threads, median of {reps}",
        d.model.d_emb, d.model.shape.d_model, d.model.shape.n_layers
    );
    println!("| L | steps | diffusion (s) | diffusion tokens/s | AR (s) | AR tokens/s | AR / diffusion speed |");
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    let mut ar_times = Vec::new();
    for l in [64i64, 128] {
        let mut cfg = d.model.config(4096);
        cfg.seq_len = l;
        let vs = nn::VarStore::new(Device::Cpu);
        let m = TextDiffusion::new(vs.root(), &cfg);
        let ar_s = common::median(
            (0..reps)
                .map(|_| {
                    let opts = GenerateOptions {
                        max_new_tokens: l as usize - 1,
                        max_sentences: None,
                        eos_id: -1,
                        sep_id: -2,
                        pad_id: 3,
                        banned: vec![],
                    };
                    let mut lp = LogitsProcessor::new(SamplingConfig::default(), 0);
                    let t0 = Instant::now();
                    let _ = generate(&ar, &[vec![0i64]], None, &mut lp, &opts, |_, _| {});
                    t0.elapsed().as_secs_f64()
                })
                .collect(),
        );
        for steps in [50usize, 200] {
            let opts =
                TextSampling { steps, sampler: SamplerKind::Ddpm, eta: 0.0, clamp: true, rounding: Rounding::Logits };
            let mut known = vec![None; l as usize];
            known[0] = Some(0);
            let s = common::median(
                (0..reps)
                    .map(|_| {
                        let mut noise = plandiff_planner::HostNoise::new(1, Device::Cpu);
                        let t0 = Instant::now();
                        let _ = sample_tokens(
                            &m,
                            &schedule,
                            Infill { known: &known, rows: 1 },
                            opts,
                            |x, t, p| m.forward(x, &[t as f64], p, false),
                            |s| noise.sample(s),
                            |_, _| {},
                        )
                        .expect("sample");
                        t0.elapsed().as_secs_f64()
                    })
                    .collect(),
            );
            let n = (l - 1) as f64;
            println!("| {l} | {steps} | {s:.3} | {:.0} | {ar_s:.3} | {:.0} | {:.1}x |", n / s, n / ar_s, s / ar_s);
        }
        ar_times.push((l, ar_s));
    }
    masked(&rc, &ar_times, reps);
}

/// Masked diffusion (LLaDA's sampler, blocks of 32, low-confidence remasking) at 32, 64 and
/// 128 steps against the same AR times.
fn masked(rc: &RunConfig, ar_times: &[(i64, f64)], reps: usize) {
    let s: MaskedSection = rc.section("masked").expect("[masked]");
    let mut cfg = s.model(4096).expect("masked model").model;
    println!(
        "\nmasked: d_model {}, {} layers, {} positions (configs/tiny.toml); blocks of 32, low_confidence, temperature 1",
        cfg.shape.d_model, cfg.shape.n_layers, cfg.seq_len
    );
    println!("| L | steps | block cache | masked (s) | masked tokens/s | AR tokens/s | AR / masked speed |");
    println!("|---:|---:|---|---:|---:|---:|---:|");
    for &(l, ar_s) in ar_times {
        cfg.seq_len = l;
        let vs = nn::VarStore::new(Device::Cpu);
        let m = MaskedLm::new(vs.root(), &cfg);
        let mut known = vec![None; l as usize];
        known[0] = Some(0);
        for (steps, cache) in [32usize, 64, 128].into_iter().flat_map(|s| [(s, None), (s, Some(1))]) {
            let opts = MaskedSampling {
                steps,
                block_length: Some(32),
                remasking: Remasking::LowConfidence,
                temperature: 1.0,
                start: Start::Mask,
                repetition_penalty: 1.0,
                threshold: None,
                block_cache: cache,
            };
            let run = |p: &Problem| match cache {
                Some(n) => sample_masked(p, &opts, BlockCache::every(&m, n), uniform, |_, _| {}),
                None => sample_masked(p, &opts, &m, uniform, |_, _| {}),
            };
            if run(&problem(&known, cfg.mask_id())).is_err() {
                continue; // steps not a multiple of the blocks at this length
            }
            let t = common::median(
                (0..reps)
                    .map(|_| {
                        let t0 = Instant::now();
                        let _ = run(&problem(&known, cfg.mask_id()));
                        t0.elapsed().as_secs_f64()
                    })
                    .collect(),
            );
            let n = (l - 1) as f64;
            let c = if cache.is_some() { "every block" } else { "-" };
            println!("| {l} | {steps} | {c} | {t:.3} | {:.0} | {:.0} | {:.1}x |", n / t, n / ar_s, t / ar_s);
        }
    }
}

fn problem(known: &[Option<i64>], mask_id: i64) -> Problem<'_> {
    Problem { known, rows: 1, mask_id, banned: &[], device: Device::Cpu }
}

fn uniform(shape: &[i64]) -> tch::Tensor {
    tch::Tensor::rand(shape, (tch::Kind::Double, Device::Cpu)).clamp(1e-12, 1.0 - 1e-12)
}
