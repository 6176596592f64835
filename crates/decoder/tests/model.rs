//! The decoder network: cached decoding equals full forwards, padding changes nothing, slot ids.

use plandiff_decoder::{slot_ids, Decoder, DecoderConfig, DecoderInput, PlanConfig};
use tch::{nn, Device, Kind, Tensor};

fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[])
}

fn check_cached_equals_full(plan_cfg: Option<PlanConfig>) {
    tch::manual_seed(1);
    let vs = nn::VarStore::new(Device::Cpu);
    let cfg = DecoderConfig::test(50, plan_cfg);
    let model = Decoder::new(vs.root(), &cfg);
    let (b, t) = (2i64, 12i64);
    let tokens = Tensor::randint(50, [b, t], (Kind::Int64, Device::Cpu));
    let slots_v: Vec<i64> = (0..b * t).map(|i| (i % t) / 4).collect();
    let slots = Tensor::from_slice(&slots_v).view([b, t]);
    let plan = plan_cfg.map(|p| Tensor::randn([b, p.max_slots, p.d_latent], (Kind::Float, Device::Cpu)));
    let full = tch::no_grad(|| model.forward(&tokens, Some(&slots), plan.as_ref(), false));
    // Prefill 5 tokens, then one at a time.
    let mut cache = model.new_cache(plan.as_ref(), b);
    let pos = Tensor::arange(t, (Kind::Int64, Device::Cpu)).unsqueeze(0).expand([b, t], false);
    let mut parts = vec![tch::no_grad(|| {
        model.forward_step(
            &tokens.narrow(1, 0, 5),
            &pos.narrow(1, 0, 5),
            Some(&slots.narrow(1, 0, 5)),
            None,
            &mut cache,
        )
    })];
    for i in 5..t {
        parts.push(tch::no_grad(|| {
            model.forward_step(
                &tokens.narrow(1, i, 1),
                &pos.narrow(1, i, 1),
                Some(&slots.narrow(1, i, 1)),
                None,
                &mut cache,
            )
        }));
    }
    let inc = Tensor::cat(&parts, 1);
    let d = max_diff(&full, &inc);
    assert!(d < 1e-5, "cached vs full max abs diff {d}");
    if let (Some(p), Some(pc)) = (plan.as_ref(), plan_cfg) {
        // The plan matters: the null plan gives other logits.
        let other = tch::no_grad(|| model.forward(&tokens, Some(&slots), None, false));
        assert!(max_diff(&full, &other) > 1e-4);
        assert_eq!(p.size()[1], pc.max_slots);
    }
}

#[test]
fn cached_equals_full_without_plan() {
    check_cached_equals_full(None);
}

#[test]
fn cached_equals_full_with_cross_attention() {
    check_cached_equals_full(Some(PlanConfig { d_latent: 8, max_slots: 4 }));
}

#[test]
fn left_padding_does_not_change_logits() {
    tch::manual_seed(2);
    let vs = nn::VarStore::new(Device::Cpu);
    let model = Decoder::new(vs.root(), &DecoderConfig::test(40, None));
    let row = [5i64, 9, 3, 17, 22];
    let alone = tch::no_grad(|| model.forward(&Tensor::from_slice(&row).unsqueeze(0), None, None, false));
    // The same row left-padded by 3 in a batch of one.
    let padded: Vec<i64> = [0, 0, 0].iter().chain(row.iter()).copied().collect();
    let mask = Tensor::from_slice(&[false, false, false, true, true, true, true, true]).unsqueeze(0);
    let pos = Tensor::from_slice(&[0i64, 0, 0, 0, 1, 2, 3, 4]).unsqueeze(0);
    let mut cache = model.new_cache(None, 1);
    let out = tch::no_grad(|| {
        model.forward_step(&Tensor::from_slice(&padded).unsqueeze(0), &pos, None, Some(&mask), &mut cache)
    });
    let d = max_diff(&alone, &out.narrow(1, 3, 5));
    assert!(d < 1e-5, "padded vs alone {d}");
    assert!(!bool::try_from(out.isnan().any()).unwrap());
}

#[test]
fn slot_ids_count_separators() {
    assert_eq!(slot_ids(&[0, 5, 6, 2, 7, 2, 8, 2, 9], 2, 3), vec![0, 0, 0, 0, 1, 1, 2, 2, 2]);
}

/// The fused head-and-loss used in training equals the logits' cross-entropy: the same loss
/// and the same gradient on every parameter (the tied embedding gets both its uses), with a
/// plan, a custom mask and ignored targets.
#[test]
fn fused_loss_equals_cross_entropy_of_the_logits() {
    tch::manual_seed(11);
    let vs = nn::VarStore::new(Device::Cpu);
    let model = Decoder::new(vs.root(), &DecoderConfig::test(40, Some(PlanConfig { d_latent: 8, max_slots: 4 })));
    let tokens = Tensor::randint(40, [3, 12], (Kind::Int64, Device::Cpu));
    let slots =
        Tensor::arange(12, (Kind::Int64, Device::Cpu)).divide_scalar_mode(4, "floor").unsqueeze(0).repeat([3, 1]);
    let plan = Tensor::randn([3, 3, 8], (Kind::Float, Device::Cpu));
    let targets = Tensor::randint(40, [3, 12], (Kind::Int64, Device::Cpu));
    let _ = targets.narrow(1, 0, 2).fill_(-100);
    let i = Tensor::arange(12, (Kind::Int64, Device::Cpu));
    let mask = i.unsqueeze(0).le_tensor(&i.unsqueeze(1)).view([1, 1, 12, 12]);
    let input = DecoderInput { tokens: &tokens, slots: Some(&slots), plan: Some(&plan), self_mask: Some(&mask) };
    let grads = |fused: bool| {
        let mut vs2 = vs.variables().into_iter().collect::<Vec<_>>();
        vs2.sort_by(|a, b| a.0.cmp(&b.0));
        vs2.iter().for_each(|(_, t)| t.shallow_clone().zero_grad());
        let loss = if fused {
            model.loss_masked(&input, &targets, -100, true)
        } else {
            model.forward_masked(&input, true).view([-1, 40]).cross_entropy_loss::<Tensor>(
                &targets.reshape(-1),
                None,
                tch::Reduction::Mean,
                -100,
                0.0,
            )
        };
        loss.backward();
        let g: Vec<(String, Tensor)> =
            vs2.iter().filter(|(_, t)| t.grad().defined()).map(|(n, t)| (n.clone(), t.grad().copy())).collect();
        (loss.double_value(&[]), g)
    };
    let (l1, g1) = grads(true);
    let (l0, g0) = grads(false);
    assert!((l1 - l0).abs() < 1e-5, "loss {l1} vs {l0}");
    assert_eq!(g1.len(), g0.len(), "the same parameters get gradients");
    for ((name, a), (_, b)) in g1.iter().zip(&g0) {
        assert!(max_diff(a, b) < 1e-5 * (1.0 + b.abs().max().double_value(&[])), "{name}: {}", max_diff(a, b));
    }
    assert!(g1.iter().any(|(n, g)| n.contains("wte") && g.abs().sum(Kind::Float).double_value(&[]) > 0.0));
}
