//! Sampling text: DDPM or DDIM over token embeddings with the clamping trick (Li et al.
//! 2022, section 4.2: each step's x0 estimate is snapped to the nearest token embedding) and
//! infilling (known positions are held at their tokens' embeddings: the x0 estimate there
//! is replaced by the known embedding, and the model input there is the known embedding
//! noised to the current timestep).

use crate::model::{Rounding, TextDiffusion};
use plandiff_diffusion::{NoiseSchedule, PredictionType, SamplerKind, Stepping};
use tch::{Kind, Tensor};

/// Settings of one text sampling run.
#[derive(Debug, Clone, Copy)]
pub struct TextSampling {
    pub steps: usize,
    pub sampler: SamplerKind,
    /// DDIM only: 0 is deterministic given the noise, 1 is DDPM-like.
    pub eta: f64,
    /// The clamping trick (on by default).
    pub clamp: bool,
    pub rounding: Rounding,
}

/// What to write: `rows` sequences of `known.len()` tokens, `known[i]` fixing position `i`.
#[derive(Debug, Clone, Copy)]
pub struct Infill<'a> {
    pub known: &'a [Option<i64>],
    pub rows: usize,
}

/// Samples the sequences `infill` asks for.
/// `x0_fn(x_t, t, x0_prev)` is the model's x0 estimate (the denoiser, or an oracle in
/// tests); `noise(shape)` supplies every Gaussian draw; `on_step(i, tokens)` sees the rounded
/// x0 estimate `(rows, L)` after step `i` (for `--show-steps`). Returns tokens `(rows, L)`.
pub fn sample_tokens(
    model: &TextDiffusion,
    schedule: &NoiseSchedule,
    infill: Infill,
    opts: TextSampling,
    mut x0_fn: impl FnMut(&Tensor, usize, Option<&Tensor>) -> Tensor,
    mut noise: impl FnMut(&[i64]) -> Tensor,
    mut on_step: impl FnMut(usize, &Tensor),
) -> plandiff_diffusion::Result<Tensor> {
    if schedule.config.prediction_type != PredictionType::Sample {
        return Err(plandiff_diffusion::DiffusionError::Invalid(
            "the text diffusion model predicts x0; its schedule needs prediction_type = \"sample\"".into(),
        ));
    }
    let Infill { known, rows } = infill;
    let dev = model.device();
    let l = known.len() as i64;
    let d = model.config().d_emb;
    let b = rows as i64;
    let ts = schedule.timesteps(opts.steps)?;
    tch::no_grad(|| {
        let ids: Vec<i64> = known.iter().map(|k| k.unwrap_or(0)).collect();
        let ids = Tensor::from_slice(&ids).view([1, l]).expand([b, l], false).to_device(dev);
        let mask: Vec<bool> = known.iter().map(Option::is_some).collect();
        let mask_t = Tensor::from_slice(&mask).view([1, l]).to_device(dev);
        let m = mask_t.to_kind(Kind::Float).unsqueeze(-1); // (1, L, 1)
        let known_emb = model.embed(&ids); // (B, L, d)
        let shape = [b, l, d];
        let mut x = noise(&shape).to_device(dev);
        let mut x0_prev: Option<Tensor> = None;
        let mut tokens = ids.shallow_clone();
        for (i, &t) in ts.iter().enumerate() {
            let rows_t = vec![t; rows];
            let known_t = schedule.q_sample(&known_emb, &rows_t, &noise(&shape).to_device(dev));
            let x_in = &known_t * &m + &x * (1.0 - &m);
            let mut x0 = x0_fn(&x_in, t, x0_prev.as_ref());
            tokens = model.round(&x0, opts.rounding).where_self(&mask_t.logical_not(), &ids);
            if opts.clamp {
                x0 = model.embed(&tokens);
            }
            x0 = &known_emb * &m + x0 * (1.0 - &m);
            on_step(i, &tokens);
            let step_noise = noise(&shape).to_device(dev);
            x = schedule
                .step(
                    Stepping { sampler: opts.sampler, eta: opts.eta, steps: opts.steps },
                    &x0,
                    t,
                    &x_in,
                    Some(&step_noise),
                )
                .prev_sample;
            x0_prev = Some(x0);
        }
        Ok(tokens)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::TextDiffusionConfig;
    use plandiff_diffusion::{BetaSchedule, ScheduleConfig};
    use plandiff_layers::{NormKind, TransformerShape};
    use tch::{nn, Device};

    fn setup() -> (nn::VarStore, TextDiffusion, NoiseSchedule) {
        tch::manual_seed(3);
        let vs = nn::VarStore::new(Device::Cpu);
        let cfg = TextDiffusionConfig {
            vocab_size: 40,
            d_emb: 8,
            seq_len: 10,
            shape: TransformerShape {
                d_model: 16,
                n_layers: 1,
                n_heads: 2,
                d_ff: 32,
                dropout: 0.0,
                norm: NormKind::Layer,
            },
            self_condition: true,
            rounding: Rounding::Logits,
        };
        let m = TextDiffusion::new(vs.root(), &cfg);
        let s = NoiseSchedule::new(ScheduleConfig {
            num_train_timesteps: 200,
            beta_schedule: BetaSchedule::Sqrt,
            prediction_type: PredictionType::Sample,
            clip_sample: false,
            ..Default::default()
        })
        .unwrap();
        (vs, m, s)
    }

    /// Deterministic pseudo-noise in [-1, 1] (private to the test: libtorch's global
    /// generator is shared by parallel test threads).
    fn seeded_noise(seed: i64) -> impl FnMut(&[i64]) -> Tensor {
        let mut g = seed;
        move |shape: &[i64]| {
            g += 1;
            let v: Vec<f32> = (0..shape.iter().product::<i64>())
                .map(|i| (((i + g * 7919) as f32 * 12.9898).sin() * 43758.547).fract() * 2.0 - 1.0)
                .collect();
            Tensor::from_slice(&v).view(shape)
        }
    }

    #[test]
    fn oracle_x0_gives_the_target_exactly() {
        let (_vs, m, s) = setup();
        let target = Tensor::from_slice(&[1i64, 5, 9, 13, 17, 21, 25, 29, 33, 37]).view([1, 10]);
        let oracle = m.embed(&target).detach();
        for sampler in [SamplerKind::Ddpm, SamplerKind::Ddim] {
            for clamp in [true, false] {
                let opts = TextSampling { steps: 20, sampler, eta: 0.0, clamp, rounding: Rounding::Nearest };
                let known = vec![None; 10];
                let out = sample_tokens(
                    &m,
                    &s,
                    Infill { known: &known, rows: 2 },
                    opts,
                    |_, _, _| oracle.expand([2, 10, 8], false),
                    seeded_noise(1),
                    |_, _| {},
                )
                .unwrap();
                assert!(out.get(0).equal(&target.get(0)) && out.get(1).equal(&target.get(0)), "{sampler:?} {clamp}");
            }
        }
    }

    #[test]
    fn infilling_keeps_known_tokens_and_is_seeded() {
        let (_vs, m, s) = setup();
        let known = vec![Some(0), Some(7), None, None, Some(11), None, Some(3)];
        let opts =
            TextSampling { steps: 10, sampler: SamplerKind::Ddpm, eta: 0.0, clamp: true, rounding: Rounding::Logits };
        let mut steps = 0;
        let run = |seed: i64, steps: &mut usize| {
            sample_tokens(
                &m,
                &s,
                Infill { known: &known, rows: 3 },
                opts,
                |x, t, prev| m.forward(x, &vec![t as f64; x.size()[0] as usize], prev, false),
                seeded_noise(seed),
                |_, tok| {
                    *steps += 1;
                    assert_eq!(tok.size(), vec![3, 7]);
                },
            )
            .unwrap()
        };
        let a = run(5, &mut steps);
        assert_eq!(steps, 10, "on_step sees every step");
        for (i, k) in known.iter().enumerate() {
            if let Some(k) = k {
                let col: Vec<i64> = Vec::try_from(a.select(1, i as i64)).unwrap();
                assert!(col.iter().all(|c| c == k), "position {i} changed: {col:?}");
            }
        }
        assert!(a.equal(&run(5, &mut steps)), "same noise, same text");
    }
}
