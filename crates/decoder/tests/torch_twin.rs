//! The Rust decoder and its PyTorch twin (`python/plandiff_twin.py`) give the same logits on
//! the same safetensors weights, the same gradients of the training loss, and the same losses
//! over the first steps of training (llm.c's main test). Needs the project's `.venv` (made by `make`); set
//! `PLANDIFF_PYTHON` to use another interpreter with torch and safetensors.

use plandiff_decoder::{Decoder, DecoderConfig, PlanConfig, RotaryConfig};
use plandiff_layers::{NormKind, TransformerShape};
use std::process::Command;
use tch::{nn, Device, Kind, Tensor};

#[path = "../../../tests/common/venv.rs"]
mod venv;

use venv::{python, root};

/// A decoder of `cfg` with every parameter perturbed (biases, norm gains, null plan too, so
/// nothing is trivially 0 or 1), saved with its config and inputs (a `targets` row included)
/// into a temporary folder for the twin.
struct Case {
    vs: nn::VarStore,
    model: Decoder,
    dir: tempfile::TempDir,
    tokens: Tensor,
    slots: Option<Tensor>,
    plan: Option<Tensor>,
    targets: Tensor,
}

fn case(cfg: &DecoderConfig) -> Case {
    tch::manual_seed(42);
    let vs = nn::VarStore::new(Device::Cpu);
    let model = Decoder::new(vs.root(), cfg);
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
    let targets = Tensor::randint(cfg.vocab_size, [b, t], (Kind::Int64, Device::Cpu));
    inputs.push(("targets".into(), targets.shallow_clone()));
    Tensor::write_safetensors(&inputs, d.join("inputs.safetensors")).unwrap();
    Case { vs, model, dir, tokens, slots, plan, targets }
}

fn twin(args: &[&str], d: &std::path::Path) {
    let out = Command::new(python()).arg(root().join("python/plandiff_twin.py")).args(args).arg(d).output().unwrap();
    assert!(out.status.success(), "python twin failed: {}", String::from_utf8_lossy(&out.stderr));
}

fn check(cfg: DecoderConfig) {
    let Case { model, dir, tokens, slots, plan, .. } = case(&cfg);
    let d = dir.path();
    let rust = tch::no_grad(|| model.forward(&tokens, slots.as_ref(), plan.as_ref(), false));
    twin(&["logits"], d);
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
        cross_blocks: None,
    });
}

/// A decoder with cross-attention to a plan and RMSNorm.
fn cross_attention_config() -> DecoderConfig {
    DecoderConfig {
        vocab_size: 61,
        shape: TransformerShape { d_model: 32, n_layers: 3, n_heads: 2, d_ff: 64, dropout: 0.0, norm: NormKind::Rms },
        max_seq_len: 24,
        plan: Some(PlanConfig { d_latent: 12, max_slots: 5 }),
        rotary: None,
        cross_blocks: None,
    }
}

/// A rotary decoder with a sentence window of 3 and a plan.
fn rotary_config() -> DecoderConfig {
    DecoderConfig {
        vocab_size: 53,
        shape: TransformerShape { d_model: 32, n_layers: 2, n_heads: 2, d_ff: 64, dropout: 0.0, norm: NormKind::Layer },
        max_seq_len: 24,
        plan: Some(PlanConfig { d_latent: 12, max_slots: 9 }),
        rotary: Some(RotaryConfig { base: 10000.0, window: 3, lookahead: 1 }),
        cross_blocks: None,
    }
}

#[test]
fn rotary_decoder_with_cross_attention_in_some_blocks_matches_pytorch() {
    let cfg = DecoderConfig {
        shape: TransformerShape { n_layers: 3, ..rotary_config().shape },
        cross_blocks: Some(vec![1]),
        ..rotary_config()
    };
    let Case { vs, .. } = case(&cfg);
    let cross: Vec<String> = vs.variables().into_keys().filter(|k| k.contains("cross")).collect();
    assert!(!cross.is_empty() && cross.iter().all(|k| k.starts_with("blocks.1.")), "{cross:?}");
    check(cfg);
}

#[test]
fn cross_attention_decoder_with_rmsnorm_matches_pytorch() {
    check(cross_attention_config());
}

#[test]
fn rotary_decoder_with_sentence_window_matches_pytorch() {
    check(rotary_config());
}

/// The mean next-token cross-entropy of `c`'s decoder against its targets.
fn loss(c: &Case) -> Tensor {
    let logits = c.model.forward(&c.tokens, c.slots.as_ref(), c.plan.as_ref(), true);
    let v = logits.size()[2];
    logits.view([-1, v]).cross_entropy_loss::<Tensor>(&c.targets.view([-1]), None, tch::Reduction::Mean, -100, 0.0)
}

/// Gradients of every parameter and the losses of the first steps of plain SGD equal the
/// twin's: forward, backward and the update, step after step, on the cross-attention decoder
/// and the rotary one.
#[test]
fn gradients_and_first_training_losses_match_pytorch() {
    let (steps, lr) = (4, 0.5);
    for cfg in [cross_attention_config(), rotary_config()] {
        let c = case(&cfg);
        twin(&["train", "--steps", &steps.to_string(), "--lr", &lr.to_string()], c.dir.path());
        let torch: std::collections::HashMap<String, Tensor> =
            Tensor::read_safetensors(c.dir.path().join("torch_train.safetensors")).unwrap().into_iter().collect();
        let params: Vec<(String, Tensor)> = c.vs.variables().into_iter().collect();
        let mut losses = Vec::new();
        for step in 0..steps {
            params.iter().for_each(|(_, p)| p.shallow_clone().zero_grad());
            let l = loss(&c);
            l.backward();
            losses.push(l.double_value(&[]));
            if step == 0 {
                let mut compared = 0;
                for (name, p) in &params {
                    let g = p.grad();
                    let Some(t) = torch.get(&format!("grad.{name}")) else {
                        // A parameter the loss does not reach has no gradient on either side.
                        assert!(
                            !g.defined() || g.abs().max().double_value(&[]) == 0.0,
                            "{name}: only Rust has a gradient"
                        );
                        continue;
                    };
                    let scale = t.abs().max().double_value(&[]).max(1e-6);
                    let diff = (&g - t).abs().max().double_value(&[]);
                    // Float sums in another order: agree to 1e-4 of the gradient's size.
                    assert!(diff <= 1e-4 * scale + 1e-7, "{name}: gradient differs by {diff} (scale {scale})");
                    compared += 1;
                }
                assert!(compared + 1 >= params.len(), "gradients compared: {compared} of {}", params.len());
            }
            tch::no_grad(|| {
                for (_, p) in &params {
                    let g = p.grad();
                    if g.defined() {
                        let _ = p.shallow_clone().g_sub_(&(g * lr));
                    }
                }
            });
        }
        let want = Vec::<f64>::try_from(&torch["losses"]).unwrap();
        assert_eq!(want.len(), steps);
        for (k, (r, t)) in losses.iter().zip(&want).enumerate() {
            // Each step compounds the last's rounding: a relative 1e-5.
            assert!((r - t).abs() <= 1e-5 * t.abs(), "step {k}: loss {r} vs PyTorch {t}");
        }
        assert!(losses[steps - 1] < losses[0], "SGD at lr {lr} lowers the loss: {losses:?}");
    }
}
