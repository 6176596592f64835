//! Relative positions in the decoder (issue 25): a sliding window that forgets its oldest
//! sentence's cache entries equals a full recomputation, and the config's checks.

use plandiff_decoder::{Decoder, DecoderConfig, PlanConfig, RotaryConfig};
use tch::{nn, Device, Kind, Tensor};

fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[])
}

/// A sliding window that forgets its oldest sentence's cache entries gives the logits of
/// a full forward over the whole text (rotary positions, sentence window): the positions
/// the incremental path uses even start elsewhere (37), since only distances count.
#[test]
fn rotary_slide_equals_full_recomputation() {
    slide_equals_full(None);
}

/// The same with cross-attention in the second block only (`cross_blocks`): the cached
/// path must hand each block its own folded plan, not the first block's.
#[test]
fn rotary_slide_equals_full_recomputation_with_cross_attention_in_one_block() {
    slide_equals_full(Some(vec![1]));
}

fn slide_equals_full(cross_blocks: Option<Vec<i64>>) {
    tch::manual_seed(4);
    let vs = nn::VarStore::new(Device::Cpu);
    let mut cfg = DecoderConfig::test(50, Some(PlanConfig { d_latent: 8, max_slots: 6 }));
    cfg.rotary = Some(RotaryConfig { base: 10000.0, window: 2, lookahead: 1 });
    cfg.cross_blocks = cross_blocks;
    cfg.validate().unwrap();
    let model = Decoder::new(vs.root(), &cfg);
    let (per, n) = (3i64, 6i64); // 8 sentences of 3 tokens, a plan of 6 slots
    let t = per * (n + 2);
    let tokens = Tensor::randint(50, [1, t], (Kind::Int64, Device::Cpu));
    let slots = Tensor::from_slice(&(0..t).map(|i| i / per).collect::<Vec<i64>>()).unsqueeze(0);
    let plan = Tensor::randn([1, n, 8], (Kind::Float, Device::Cpu));
    let full = tch::no_grad(|| model.forward(&tokens, Some(&slots), Some(&plan), false));
    let mut cache = model.new_cache(Some(&plan), 1);
    let mut worst = 0f64;
    for i in 0..t {
        let s = i / per;
        if i % per == 0 && s >= 2 {
            cache.forget(0, per); // sentence s - 2 leaves the window
        }
        let step = tch::no_grad(|| {
            model.forward_step(
                &tokens.narrow(1, i, 1),
                &Tensor::from_slice(&[37 + i]).view([1, 1]),
                Some(&slots.narrow(1, i, 1)),
                None,
                &mut cache,
            )
        });
        worst = worst.max(max_diff(&step.select(1, 0), &full.select(1, i)));
    }
    assert!(worst < 1e-5, "slid vs full max abs diff {worst}");
    assert_eq!(cache.len(), 2 * per, "the cache holds the window's two sentences only");
    // The last two sentences read no slot of the plan (its learned bias table ends with it).
    // A missing window would fail above: the full forward would read the forgotten sentences.
}

#[test]
fn rotary_config_checks() {
    let mut cfg = DecoderConfig::test(50, None);
    cfg.rotary = Some(RotaryConfig { base: 10000.0, window: 0, lookahead: 1 });
    assert!(cfg.validate().unwrap_err().to_string().contains("rotary.window"));
    cfg.rotary = Some(RotaryConfig { base: f64::NAN, window: 2, lookahead: 1 });
    assert!(cfg.validate().unwrap_err().to_string().contains("rotary.base"));
    cfg.rotary = Some(RotaryConfig { base: 10000.0, window: 2, lookahead: 1 });
    cfg.max_seq_len = 1_000_000_000_000;
    assert!(cfg.validate().unwrap_err().to_string().contains("max_seq_len"));
    // Bundles from before relative positions have no `rotary` and load as learned.
    let old = serde_json::to_value(DecoderConfig::test(50, None)).unwrap();
    assert!(old.get("rotary").is_none());
    assert_eq!(serde_json::from_value::<DecoderConfig>(old).unwrap().rotary, None);
}

#[test]
fn cross_blocks_checks() {
    let plan = Some(PlanConfig { d_latent: 8, max_slots: 6 });
    let refused = |blocks: Vec<i64>, plan| {
        let cfg = DecoderConfig { cross_blocks: Some(blocks), ..DecoderConfig::test(50, plan) };
        cfg.validate().map_err(|e| e.to_string())
    };
    // The test shape has 2 blocks.
    for bad in [vec![], vec![2], vec![-1], vec![1, 0], vec![0, 0]] {
        let e = refused(bad.clone(), plan).unwrap_err();
        assert!(e.contains("cross_blocks") && e.contains("ascending"), "{bad:?}: {e}");
    }
    assert!(refused(vec![0], None).unwrap_err().contains("with a plan"));
    assert!(refused(vec![0, 1], plan).is_ok() && refused(vec![1], plan).is_ok());
    // Absent: every block (bundles from before), and it is not written.
    let cfg = DecoderConfig::test(50, plan);
    assert!((0..2).all(|i| cfg.has_cross(i)));
    assert!(serde_json::to_value(&cfg).unwrap().get("cross_blocks").is_none());
    let some = DecoderConfig { cross_blocks: Some(vec![1]), ..cfg };
    assert!(!some.has_cross(0) && some.has_cross(1));
}
