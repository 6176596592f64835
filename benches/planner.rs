//! Planning latency against decoding time, with the architectures of `configs/tiny.toml`
//! (random weights: latency does not depend on what the weights learned).
//!
//! - Planning: 16 sentence slots, 50 DDIM steps, batch 1 (guidance 1, and guidance 2,
//!   which runs the denoiser twice per step).
//! - Decoding: the plan-conditioned decoder writing 16 sentences of `--sentence-tokens`
//!   tokens (default 14: TinyStories' mean sentence of 13 tokens plus `<sep>`), window by
//!   window (8 slots), cross-attention keys and values computed once per window.
//!
//!     cargo bench --bench planner -- --threads 2

mod common;
use plandiff_bundle::PlannerModel;
use plandiff_decoder::{generate, Decoder, GenerateOptions, LogitsProcessor, PlanConfig, SamplingConfig};
use plandiff_diffusion::SamplerKind;
use plandiff_planner::{HostNoise, PlanSampling};
use plandiff_train::planner::PlannerSection;
use std::time::Instant;
use tch::{nn, Device, Kind, Tensor};

fn main() {
    let threads = common::arg("--threads", 2);
    let reps = common::arg("--reps", 9);
    let sent_tokens = common::arg("--sentence-tokens", 14);
    tch::set_num_threads(threads as i32);
    tch::manual_seed(0);
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/tiny.toml");
    let rc = plandiff_train::load_config(&root).expect("configs/tiny.toml");
    let ae: plandiff_train::autoencoder::AutoencoderSection = rc.section("autoencoder").expect("[autoencoder]");
    let pl: PlannerSection = rc.section("planner").expect("[planner]");
    let d_latent = plandiff_train::autoencoder::PLAN_WIDTH;
    let model = PlannerModel {
        denoiser: pl.model.denoiser(d_latent),
        schedule: pl.diffusion.clone(),
        objective: pl.objective,
        sampling: pl.sampling,
        plan_space_sha256: String::new(),
        hybrid: pl.hybrid,
    };
    let vs = nn::VarStore::new(Device::Cpu);
    let planner = model.build(&vs.root()).expect("planner");
    let slots = 16i64;
    let known = Tensor::randn([1, slots, d_latent], (Kind::Float, Device::Cpu)).tanh();
    // Two known sentences (a prompt), fourteen planned.
    let mask = Tensor::from_slice(&(0..slots).map(|i| i < 2).collect::<Vec<_>>()).view([1, slots]);
    let plan_ms = |guidance: f64| {
        let opts = PlanSampling { steps: 50, sampler: SamplerKind::Ddim, eta: 0.0, guidance };
        let mut noise = HostNoise::new(1, Device::Cpu);
        let _ = planner.sample(&known, &mask, opts, |s| noise.sample(s)).unwrap(); // warm-up
        let v: Vec<f64> = (0..reps)
            .map(|_| {
                let t0 = Instant::now();
                let _ = planner.sample(&known, &mask, opts, |s| noise.sample(s)).unwrap();
                t0.elapsed().as_secs_f64() * 1e3
            })
            .collect();
        common::median(v)
    };
    let p1 = plan_ms(1.0);
    let p2 = plan_ms(2.0);

    let max_slots = ae.plan.max_slots;
    let dvs = nn::VarStore::new(Device::Cpu);
    let mut dcfg = common::tiny(Some(PlanConfig { d_latent, max_slots }));
    dcfg.max_seq_len = ae.decoder.max_seq_len;
    let dec = Decoder::new(dvs.root(), &dcfg);
    let decode_ms = || {
        let mut lp = LogitsProcessor::new(SamplingConfig::default(), 0);
        let windows = (16 / max_slots) as usize;
        let t0 = Instant::now();
        for _ in 0..windows {
            let plan = Tensor::randn([1, max_slots, d_latent], (Kind::Float, Device::Cpu)).tanh();
            let opts = GenerateOptions {
                max_new_tokens: sent_tokens * max_slots as usize,
                max_sentences: None,
                eos_id: -1,
                sep_id: -2,
                pad_id: 3,
                banned: vec![],
            };
            let _ = generate(&dec, &[vec![0i64]], Some(&plan), &mut lp, &opts, |_, _| {});
        }
        t0.elapsed().as_secs_f64() * 1e3
    };
    let _ = decode_ms();
    let d = common::median((0..reps.min(5)).map(|_| decode_ms()).collect());
    println!(
        "planner: configs/tiny.toml ({} layers, d {}), decoder: tiny + cross-attention to {max_slots} slots; {threads} threads, median of {reps}",
        model.denoiser.shape.n_layers, model.denoiser.shape.d_model
    );
    println!("| work | ms | share of decoding |");
    println!("|---|---:|---:|");
    println!("| plan 16 slots, 50 DDIM steps, batch 1, guidance 1 | {p1:.1} | {:.1}% |", 100.0 * p1 / d);
    println!("| plan 16 slots, 50 DDIM steps, batch 1, guidance 2 (two passes) | {p2:.1} | {:.1}% |", 100.0 * p2 / d);
    println!("| decode 16 sentences x {sent_tokens} tokens, batch 1 | {d:.1} | 100% |");
    println!("per denoiser step: {:.2} ms; per decoded token: {:.2} ms", p1 / 50.0, d / (16.0 * sent_tokens as f64));
}
