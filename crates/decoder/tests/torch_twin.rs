//! The Rust decoder and its PyTorch twin (`python/plandiff_twin.py`) give the same logits on
//! the same safetensors weights. Needs the project's `.venv` (made by `make`); set
//! `PLANDIFF_PYTHON` to use another interpreter with torch and safetensors.

use plandiff_decoder::{Decoder, DecoderConfig, PlanConfig, RotaryConfig};
use plandiff_layers::{NormKind, TransformerShape};
use std::path::PathBuf;
use std::process::Command;
use tch::{nn, Device, Kind, Tensor};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn python() -> PathBuf {
    if let Ok(p) = std::env::var("PLANDIFF_PYTHON") {
        return p.into();
    }
    let p = root().join(".venv/bin/python");
    assert!(p.exists(), "{} is missing: run `make test` (it creates the venv) or set PLANDIFF_PYTHON", p.display());
    p
}

fn check(cfg: DecoderConfig) {
    tch::manual_seed(42);
    let vs = nn::VarStore::new(Device::Cpu);
    let model = Decoder::new(vs.root(), &cfg);
    // Perturb every parameter (biases, norm gains, null plan too) so nothing is trivially 0/1.
    tch::no_grad(|| {
        for (_, mut t) in vs.variables() {
            let noise = t.randn_like() * 0.05;
            let _ = t.g_add_(&noise);
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut named: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    Tensor::write_safetensors(&named, d.join("weights.safetensors")).unwrap();
    std::fs::write(d.join("config.json"), serde_json::to_string(&cfg).unwrap()).unwrap();
    let (b, t) = (3i64, 17i64);
    let tokens = Tensor::randint(cfg.vocab_size, [b, t], (Kind::Int64, Device::Cpu));
    let mut inputs = vec![("tokens".to_string(), tokens.shallow_clone())];
    let (slots, plan) = match cfg.plan {
        Some(p) => {
            // Sentence ids in order (a `<sep>` now and then), as the decoder reads them.
            let s = Tensor::randint(2, [b, t], (Kind::Int64, Device::Cpu))
                .cumsum(1, Kind::Int64)
                .clamp_max(p.max_slots - 1);
            let pl = Tensor::randn([b, p.max_slots, p.d_latent], (Kind::Float, Device::Cpu));
            inputs.push(("slots".into(), s.shallow_clone()));
            inputs.push(("plan".into(), pl.shallow_clone()));
            (Some(s), Some(pl))
        }
        None => (None, None),
    };
    Tensor::write_safetensors(&inputs, d.join("inputs.safetensors")).unwrap();
    let rust = tch::no_grad(|| model.forward(&tokens, slots.as_ref(), plan.as_ref(), false));
    let out = Command::new(python()).arg(root().join("python/plandiff_twin.py")).arg("logits").arg(d).output().unwrap();
    assert!(out.status.success(), "python twin failed: {}", String::from_utf8_lossy(&out.stderr));
    let torch = Tensor::read_safetensors(d.join("torch_logits.safetensors")).unwrap().remove(0).1;
    assert_eq!(torch.size(), rust.size());
    let diff = (&rust - &torch).abs().max().double_value(&[]);
    let scale = rust.abs().max().double_value(&[]);
    assert!(scale > 0.1, "logits are suspiciously small: {scale}");
    assert!(diff < 1e-5, "max abs difference Rust vs PyTorch: {diff}");
}

#[test]
fn plain_decoder_matches_pytorch() {
    check(DecoderConfig {
        vocab_size: 97,
        shape: TransformerShape { d_model: 48, n_layers: 2, n_heads: 4, d_ff: 96, dropout: 0.0, norm: NormKind::Layer },
        max_seq_len: 32,
        plan: None,
        rotary: None,
    });
}

#[test]
fn cross_attention_decoder_with_rmsnorm_matches_pytorch() {
    check(DecoderConfig {
        vocab_size: 61,
        shape: TransformerShape { d_model: 32, n_layers: 3, n_heads: 2, d_ff: 64, dropout: 0.0, norm: NormKind::Rms },
        max_seq_len: 24,
        plan: Some(PlanConfig { d_latent: 12, max_slots: 5 }),
        rotary: None,
    });
}

#[test]
fn rotary_decoder_with_sentence_window_matches_pytorch() {
    check(DecoderConfig {
        vocab_size: 53,
        shape: TransformerShape { d_model: 32, n_layers: 2, n_heads: 2, d_ff: 64, dropout: 0.0, norm: NormKind::Layer },
        max_seq_len: 24,
        plan: Some(PlanConfig { d_latent: 12, max_slots: 9 }),
        rotary: Some(RotaryConfig { base: 10000.0, window: 3, lookahead: 1 }),
    });
}
