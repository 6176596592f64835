//! The decoder, AdamW and the loss fit a fixed tiny batch: the loss goes under 0.1.

use plandiff_decoder::{Decoder, DecoderConfig, PlanConfig};
use plandiff_train::{AdamW, AdamWConfig};
use tch::{nn, Device, Kind, Tensor};

fn overfit(cfg: DecoderConfig) -> f64 {
    tch::manual_seed(0);
    let vs = nn::VarStore::new(Device::Cpu);
    let model = Decoder::new(vs.root(), &cfg);
    let mut opt = AdamW::new(
        vs.variables().into_iter().collect(),
        AdamWConfig { beta1: 0.9, beta2: 0.95, eps: 1e-8, weight_decay: 0.0 },
    );
    let batch = Tensor::randint(cfg.vocab_size, [4, 17], (Kind::Int64, Device::Cpu));
    let (x, y) = (batch.narrow(1, 0, 16), batch.narrow(1, 1, 16));
    let plan = cfg.plan.map(|p| Tensor::randn([4, p.max_slots, p.d_latent], (Kind::Float, Device::Cpu)));
    let mut loss = f64::INFINITY;
    for _ in 0..300 {
        opt.zero_grad();
        let logits = model.forward(&x, None, plan.as_ref(), true);
        let l = logits.view([-1, cfg.vocab_size]).cross_entropy_for_logits(&y.reshape(-1));
        l.backward();
        let _ = opt.clip_grad_norm(1.0);
        opt.step(1e-2);
        loss = l.double_value(&[]);
        if loss < 0.05 {
            break;
        }
    }
    loss
}

#[test]
fn overfits_a_fixed_batch() {
    let loss = overfit(DecoderConfig::test(64, None));
    assert!(loss < 0.1, "final loss {loss}");
}

#[test]
fn overfits_a_fixed_batch_with_a_plan() {
    let loss = overfit(DecoderConfig::test(64, Some(PlanConfig { d_latent: 8, max_slots: 3 })));
    assert!(loss < 0.1, "final loss {loss}");
}
