use super::*;
use crate::model::{tests::tiny, MaskedLm};
use tch::nn;

/// Deterministic pseudo-uniform draws in (0, 1) (private to the test: libtorch's global
/// generator is shared by parallel test threads).
fn draws(seed: i64) -> impl FnMut(&[i64]) -> Tensor {
    let mut g = seed;
    move |shape: &[i64]| {
        g += 1;
        let v: Vec<f64> = (0..shape.iter().product::<i64>())
            .map(|i| ((((i + g * 7919) as f64 * 12.9898).sin() * 43758.547).fract().abs()).clamp(1e-9, 1.0 - 1e-9))
            .collect();
        Tensor::from_slice(&v).view(shape)
    }
}

const V: i64 = 30;
const STRATEGIES: [Remasking; 4] = [Remasking::LowConfidence, Remasking::Random, Remasking::Margin, Remasking::Entropy];

fn problem(known: &[Option<i64>], rows: usize) -> Problem<'_> {
    Problem { known, rows, mask_id: V, banned: &[], device: Device::Cpu }
}

#[test]
fn an_oracle_denoiser_gives_the_target_for_every_strategy_block_and_start() {
    let target: Vec<i64> = vec![0, 5, 9, 13, 17, 21, 25, 29, 3, 7, 11];
    let t = Tensor::from_slice(&target).view([1, 11]);
    let oracle = |x: &Tensor| t.one_hot(V).to_kind(Kind::Float).repeat([x.size()[0], 1, 1]) * 40.0;
    let known: Vec<Option<i64>> = target.iter().enumerate().map(|(i, &x)| (i < 2).then_some(x)).collect();
    for remasking in STRATEGIES {
        for block_length in [None, Some(1), Some(3), Some(4), Some(9), Some(50)] {
            for start in [Start::Mask, Start::Random] {
                for temperature in [0.0, 1.0] {
                    let blocks = 9usize.div_ceil(block_length.unwrap_or(9).min(9));
                    let opts = MaskedSampling {
                        steps: blocks * 3,
                        block_length,
                        remasking,
                        temperature,
                        start,
                        repetition_penalty: 1.0,
                        threshold: None,
                        block_cache: None,
                    };
                    let out = sample_masked(&problem(&known, 2), &opts, oracle, draws(1), |_, _| {}).unwrap();
                    assert!(out.get(0).equal(&t.get(0)) && out.get(1).equal(&t.get(0)), "{opts:?}: {out:?}");
                }
            }
        }
    }
}

#[test]
fn committed_tokens_never_change_and_later_blocks_wait_their_turn() {
    tch::manual_seed(4);
    let vs = nn::VarStore::new(Device::Cpu);
    let m = MaskedLm::new(vs.root(), &tiny());
    let known: Vec<Option<i64>> = (0..14).map(|i| (i < 2).then_some(i as i64 + 1)).collect();
    for remasking in STRATEGIES {
        let opts = MaskedSampling {
            steps: 12,
            block_length: Some(4),
            remasking,
            temperature: 1.0,
            start: Start::Mask,
            repetition_penalty: 1.0,
            threshold: None,
            block_cache: None,
        };
        let mut seen: Vec<Vec<i64>> = Vec::new();
        let out = sample_masked(
            &problem(&known, 3),
            &opts,
            |x: &Tensor| m.forward(x, false),
            draws(2),
            |_, x| seen.push(Vec::try_from(x.reshape(-1)).unwrap()),
        )
        .unwrap();
        assert_eq!(seen.len(), 12, "on_step sees every step");
        let last: Vec<i64> = Vec::try_from(out.reshape(-1)).unwrap();
        assert!(last.iter().all(|&t| t != V), "everything is filled");
        // 12 positions to fill in blocks of 4 with 4 steps each (12 steps / 3 blocks).
        for (s, x) in seen.iter().enumerate() {
            let block = s / 4;
            for (i, &tok) in x.iter().enumerate() {
                let pos = i % 14;
                if tok != V {
                    assert_eq!(tok, last[i], "{remasking:?}: a committed token changed at step {s}");
                }
                if pos >= 2 && (pos - 2) / 4 > block {
                    assert_eq!(tok, V, "{remasking:?}: position {pos} of a later block was committed at step {s}");
                }
            }
            // By the end of its block every position of the block is committed.
            if s % 4 == 3 {
                for (i, &tok) in x.iter().enumerate() {
                    let pos = i % 14;
                    if pos >= 2 && (pos - 2) / 4 <= block {
                        assert_ne!(tok, V, "position {pos} still masked after its block");
                    }
                }
            }
        }
    }
}

#[test]
fn seeded_and_banned_tokens_respected() {
    tch::manual_seed(5);
    let vs = nn::VarStore::new(Device::Cpu);
    let m = MaskedLm::new(vs.root(), &tiny());
    let known: Vec<Option<i64>> = (0..10).map(|i| (i == 0).then_some(1)).collect();
    let banned: Vec<i64> = (0..20).collect();
    let p = Problem { banned: &banned, ..problem(&known, 2) };
    for start in [Start::Mask, Start::Random] {
        let opts = MaskedSampling {
            steps: 9,
            block_length: None,
            remasking: Remasking::LowConfidence,
            temperature: 1.0,
            start,
            repetition_penalty: 1.0,
            threshold: None,
            block_cache: None,
        };
        let run = |seed| sample_masked(&p, &opts, |x: &Tensor| m.forward(x, false), draws(seed), |_, _| {}).unwrap();
        let a = run(7);
        assert!(a.equal(&run(7)), "same draws, same text");
        let toks: Vec<i64> = Vec::try_from(a.narrow(1, 1, 9).reshape(-1)).unwrap();
        assert!(toks.iter().all(|&t| (20..V).contains(&t)), "{start:?}: banned token placed: {toks:?}");
    }
}

#[test]
fn bad_settings_are_errors_that_name_the_flag() {
    let known = vec![Some(1), None, None, None, None, None];
    let f = |x: &Tensor| Tensor::zeros([x.size()[0], x.size()[1], V], (Kind::Float, Device::Cpu));
    let opts = MaskedSampling {
        steps: 2,
        block_length: Some(2),
        remasking: Remasking::Random,
        temperature: 0.0,
        start: Start::Mask,
        repetition_penalty: 1.0,
        threshold: None,
        block_cache: None,
    };
    let e = sample_masked(&problem(&known, 1), &opts, f, draws(0), |_, _| {}).unwrap_err();
    assert!(e.to_string().contains("--steps 2") && e.to_string().contains("the 3 blocks"), "{e}");
    // Steps the blocks do not divide: the first blocks take one more (5 = 2 + 2 + 1).
    let mut seen = 0;
    let ok = sample_masked(&problem(&known, 1), &MaskedSampling { steps: 5, ..opts }, f, draws(0), |_, _| seen += 1);
    assert!(ok.is_ok() && seen == 5);
    let e =
        sample_masked(&problem(&known, 1), &MaskedSampling { block_length: Some(0), ..opts }, f, draws(0), |_, _| {})
            .unwrap_err();
    assert_eq!(e, SampleError::BlockLength);
    let bad = MaskedSampling { repetition_penalty: 0.5, ..opts };
    let e = sample_masked(&problem(&known, 1), &bad, f, draws(0), |_, _| {}).unwrap_err();
    assert!(e.to_string().contains("--repetition-penalty 0.5"), "{e}");
    let e = sample_masked(&problem(&known, 1), &MaskedSampling { temperature: -1.0, ..opts }, f, draws(0), |_, _| {})
        .unwrap_err();
    assert!(e.to_string().contains("--temperature"));
}

/// With a repetition penalty, a token the row already holds loses to an unseen one its logit
/// beat: an oracle that always prefers token 5 (logit 2) over 6 (logit 1.5) writes 5 three
/// times without it; at a penalty of 2, 5 first, then 6 (2 / 2 = 1 < 1.5), then 5 again (both
/// held: 1 > 0.75).
#[test]
fn repetition_penalty_demotes_tokens_the_row_holds() {
    let known = vec![Some(1), None, None, None];
    let f = |x: &Tensor| {
        let (b, l) = (x.size()[0], x.size()[1]);
        let mut row = vec![0f32; V as usize];
        row[5] = 2.0;
        row[6] = 1.5;
        Tensor::from_slice(&row).view([1, 1, V]).repeat([b, l, 1])
    };
    let opts = MaskedSampling {
        steps: 3,
        block_length: None,
        remasking: Remasking::LowConfidence,
        temperature: 0.0,
        start: Start::Mask,
        repetition_penalty: 1.0,
        threshold: None,
        block_cache: None,
    };
    let toks = |o: &MaskedSampling| -> Vec<i64> {
        let x = sample_masked(&problem(&known, 1), o, f, draws(0), |_, _| {}).unwrap();
        Vec::try_from(x.view([-1])).unwrap()
    };
    assert_eq!(toks(&opts), vec![1, 5, 5, 5]);
    let pen = toks(&MaskedSampling { repetition_penalty: 2.0, ..opts });
    let count = |t: i64| pen.iter().filter(|&&x| x == t).count();
    assert_eq!((pen[0], count(5), count(6)), (1, 2, 1), "{pen:?}");
}

/// Parallel decoding (Fast-dLLM): an oracle sure of every position fills each block in one
/// step (the block's remaining scheduled steps are not run), and gives the same text as one
/// token per step; an oracle unsure of all but one commits only the schedule's `k`.
#[test]
fn threshold_commits_every_confident_position_and_ends_the_block() {
    let target: Vec<i64> = vec![0, 5, 9, 13, 17, 21, 25, 29, 3];
    let t = Tensor::from_slice(&target).view([1, 9]);
    let sure = |x: &Tensor| t.one_hot(V).to_kind(Kind::Float).repeat([x.size()[0], 1, 1]) * 40.0;
    let known: Vec<Option<i64>> = target.iter().enumerate().map(|(i, &x)| (i < 1).then_some(x)).collect();
    let opts = MaskedSampling {
        steps: 8,
        block_length: Some(4),
        remasking: Remasking::LowConfidence,
        temperature: 0.0,
        start: Start::Mask,
        repetition_penalty: 1.0,
        threshold: Some(0.9),
        block_cache: None,
    };
    let (mut calls, mut steps) = (0, 0);
    let counted = |x: &Tensor| {
        calls += 1;
        sure(x)
    };
    let out = sample_masked(&problem(&known, 2), &opts, counted, draws(0), |_, _| steps += 1).unwrap();
    assert_eq!((calls, steps), (2, 8), "two blocks of 4, one model call each; every step reported");
    assert!(out.equal(&t.repeat([2, 1])));
    let (mut slow, mut calls) = (0, 0);
    let plain = MaskedSampling { threshold: None, ..opts };
    let counted = |x: &Tensor| {
        calls += 1;
        sure(x)
    };
    let out2 = sample_masked(&problem(&known, 2), &plain, counted, draws(0), |_, _| slow += 1).unwrap();
    assert!(out2.equal(&out) && slow == 8 && calls == 8);
    // Uniform logits (probability 1/30 everywhere): the threshold never fires.
    let flat = |x: &Tensor| Tensor::zeros([x.size()[0], x.size()[1], V], (Kind::Float, Device::Cpu));
    let mut n = 0;
    let out = sample_masked(&problem(&known, 1), &opts, flat, draws(0), |_, _| n += 1).unwrap();
    assert_eq!(n, 8);
    assert_eq!(out.lt(V).all().int64_value(&[]), 1);
    for bad in [0.0, 1.5, f64::NAN] {
        let e = sample_masked(
            &problem(&known, 1),
            &MaskedSampling { threshold: Some(bad), ..opts },
            flat,
            draws(0),
            |_, _| {},
        )
        .unwrap_err();
        assert!(e.to_string().contains("--threshold"), "{e}");
    }
}

/// With blocks of one position every step is a block's first, so the block cache reads the
/// whole text each time: the same text as the uncached sampler. With longer blocks its later
/// steps are approximate, and still fill every position.
#[test]
fn block_cache_sampling_equals_uncached_when_every_step_is_fresh() {
    tch::manual_seed(3);
    let vs = nn::VarStore::new(Device::Cpu);
    let m = MaskedLm::new(vs.root(), &tiny());
    let known: Vec<Option<i64>> = (0..12).map(|i| (i < 3).then_some(i as i64 + 1)).collect();
    let opts = MaskedSampling {
        steps: 9,
        block_length: Some(1),
        remasking: Remasking::LowConfidence,
        temperature: 1.0,
        start: Start::Mask,
        repetition_penalty: 1.0,
        threshold: None,
        block_cache: Some(1),
    };
    let full =
        sample_masked(&problem(&known, 2), &opts, |x: &Tensor| m.forward(x, false), draws(4), |_, _| {}).unwrap();
    let cached = sample_masked(&problem(&known, 2), &opts, crate::BlockCache::new(&m), draws(4), |_, _| {}).unwrap();
    assert!(full.equal(&cached), "every step fresh: exact");
    let long = MaskedSampling { block_length: Some(3), ..opts };
    let cached = sample_masked(&problem(&known, 2), &long, crate::BlockCache::new(&m), draws(4), |_, _| {}).unwrap();
    assert_eq!(cached.lt(V).all().int64_value(&[]), 1, "every position filled");
    let kept: Vec<i64> = Vec::try_from(cached.get(1).narrow(0, 0, 3)).unwrap();
    assert_eq!(kept, vec![1, 2, 3]);
}
