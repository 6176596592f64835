//! The planning sampler: DDIM or DDPM over sentence slots with classifier-free guidance and
//! inpainting of the known slots.
//!
//! Known slots are conditioning (an input channel of the denoiser) and are also held fixed:
//! after every step they are replaced by the known latents noised to the next timestep
//! (RePaint-style, Lugmayr et al. 2022), and by the known latents themselves at the end.
//! Guidance: `out = uncond + w (cond - uncond)`, where "uncond" sees no known slots
//! (Ho & Salimans 2022); `w = 1` is plain conditional sampling.

use plandiff_diffusion::{NoiseSchedule, SamplerKind, Stepping};
use plandiff_layers::FieldError;
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

/// The largest classifier-free guidance weight a plan may be sampled with.
pub const MAX_GUIDANCE: f64 = 100.0;

/// Settings of one planning run; a planner stores its defaults as one
/// (`BUNDLE/planner/config.json`), and the command line overrides each.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanSampling {
    pub steps: usize,
    pub sampler: SamplerKind,
    /// DDIM only: 0 is deterministic given the initial noise, 1 is DDPM-like.
    pub eta: f64,
    /// Classifier-free guidance weight on the known slots; 1 is plain conditional sampling.
    pub guidance: f64,
}

impl PlanSampling {
    /// How each reverse step is taken.
    pub fn stepping(&self) -> Stepping {
        Stepping { sampler: self.sampler, eta: self.eta, steps: self.steps }
    }

    /// The error names the field (`steps`, `eta`, `guidance`: also the flags' names).
    pub fn validate(&self) -> Result<(), FieldError> {
        if self.steps == 0 {
            return Err(FieldError::new("steps", 0, "must be >= 1 (denoising steps)"));
        }
        if !(0.0..=1.0).contains(&self.eta) {
            return Err(FieldError::new("eta", self.eta, "must be in [0, 1]"));
        }
        // Bounded: a weight near f32's largest passes "finite" and turns every latent into
        // inf (an empty text), so the check promises a plan.
        if !(0.0..=MAX_GUIDANCE).contains(&self.guidance) {
            return Err(FieldError::new(
                "guidance",
                self.guidance,
                format!("must be a number from 0 to {MAX_GUIDANCE} (1: none)"),
            ));
        }
        Ok(())
    }
}

/// Samples `(B, S, d)` latents (normalized space). `model(x_t, t, known, mask, x0_prev)`
/// returns the denoiser output for the schedule's prediction type; `x0_prev` is the previous
/// step's (guided) x0 estimate, for self-conditioning (`None` at the first step);
/// `noise(shape)` supplies every Gaussian draw (seed it for reproducible plans).
pub fn sample_plan(
    schedule: &NoiseSchedule,
    known: &Tensor,
    mask: &Tensor,
    opts: PlanSampling,
    model: impl FnMut(&Tensor, usize, &Tensor, &Tensor, Option<&Tensor>) -> Tensor,
    noise: impl FnMut(&[i64]) -> Tensor,
) -> plandiff_diffusion::Result<Tensor> {
    sample_plan_held(schedule, known, mask, Steering::none(), opts, model, noise)
}

/// Known slots held for part of the sampling: the slots of `soft` (a subset of `mask`'s) are
/// known for the first `hold` fraction of the steps and then denoised like free slots, so the
/// planner refines them in the context of the others (SDEdit-style, Meng et al. 2022).
#[derive(Debug, Clone, Copy)]
pub struct SoftHold<'a> {
    pub soft: &'a Tensor,
    pub hold: f64,
}

/// What a caller may steer in a planning run beyond [`PlanSampling`] (issue 39's planner-side
/// levers; the default steers nothing).
#[derive(Clone, Copy, Default)]
pub struct Steering<'a> {
    /// Known slots held for only part of the steps.
    pub soft: Option<SoftHold<'a>>,
    /// Maps every step's predicted x0 (the sampler's space) before the step is taken, e.g. onto
    /// the sentence encoder's unit sphere (LD4LG, STAR-LDM); the step's model output is
    /// recomputed from the mapped x0.
    pub x0: Option<&'a dyn Fn(&Tensor) -> Tensor>,
    /// Guidance rescale φ in [0, 1] (Lin et al. 2024; large_concept_model's default 0.7): the
    /// guided x0 is rescaled to the conditional x0's standard deviation per row, mixed
    /// φ : 1 - φ with the guided one. 0: off.
    pub rescale: f64,
    /// The initial noise's scale (large_concept_model's `initial_noise_scale`, about 0.6); 1:
    /// the schedule's own.
    pub noise_scale: f64,
    /// Epsilon scaling λ (Ning et al. 2024, "Elucidating the exposure bias in diffusion
    /// models"; large_concept_model's `epsilon_scaling`): every step's noise estimate is divided
    /// by λ, its x0 estimate kept. 1: off.
    pub epsilon_scaling: f64,
}

impl Steering<'_> {
    /// Nothing steered.
    pub fn none() -> Self {
        Self { soft: None, x0: None, rescale: 0.0, noise_scale: 1.0, epsilon_scaling: 1.0 }
    }
}

/// `guided` rescaled toward the standard deviation of `cond` per row (dims 1..), mixed `phi`.
fn rescale_guided(guided: &Tensor, cond: &Tensor, phi: f64) -> Tensor {
    let dims: Vec<i64> = (1..guided.dim() as i64).collect();
    let std = |x: &Tensor| x.std_dim(dims.as_slice(), true, true);
    let scaled = guided * (std(cond) / std(guided).clamp_min(1e-12));
    scaled * phi + guided * (1.0 - phi)
}

/// [`sample_plan`] with some known slots held only for part of the steps ([`SoftHold`]) and
/// the other levers of [`Steering`].
pub fn sample_plan_held(
    schedule: &NoiseSchedule,
    known: &Tensor,
    mask: &Tensor,
    steer: Steering,
    opts: PlanSampling,
    mut model: impl FnMut(&Tensor, usize, &Tensor, &Tensor, Option<&Tensor>) -> Tensor,
    mut noise: impl FnMut(&[i64]) -> Tensor,
) -> plandiff_diffusion::Result<Tensor> {
    let (shape, soft) = (known.size(), steer.soft);
    let ts = schedule.timesteps(opts.steps)?;
    // Steps that hold every known slot, then the hard mask alone.
    let held = soft.map_or(ts.len(), |s| (s.hold.clamp(0.0, 1.0) * ts.len() as f64).round() as usize);
    let hard = soft.map_or_else(|| mask.shallow_clone(), |s| mask.logical_and(&s.soft.logical_not()));
    // Each mask with its float form (B, S, 1) and whether it knows any slot (one host sync each).
    let forms = |m: &Tensor| (m.to_kind(known.kind()).unsqueeze(-1), m.any().int64_value(&[]) != 0);
    let (all_form, hard_form) = (forms(mask), forms(&hard));
    let mut x = noise(&shape).to_kind(known.kind());
    if steer.noise_scale != 1.0 {
        x *= steer.noise_scale;
    }
    let mut x0_prev: Option<Tensor> = None;
    for (i, &t) in ts.iter().enumerate() {
        let (mask, (m, any_known)) = if i < held { (mask, &all_form) } else { (&hard, &hard_form) };
        let any_known = *any_known;
        let out = if opts.guidance == 1.0 {
            model(&x, t, known, mask, x0_prev.as_ref())
        } else {
            let (guided, cond) = guided(&mut model, (&x, t), known, mask, x0_prev.as_ref(), opts.guidance);
            if steer.rescale > 0.0 {
                // On x0 whatever the prediction type: the rescale keeps the plan's spread.
                let (g0, _) = schedule.split_prediction(&guided, t, &x);
                let (c0, _) = schedule.split_prediction(&cond, t, &x);
                schedule.output_for(&rescale_guided(&g0, &c0, steer.rescale), t, &x)
            } else {
                guided
            }
        };
        let out = match steer.x0 {
            Some(f) => {
                let (x0, _) = schedule.split_prediction(&out, t, &x);
                schedule.output_for(&f(&x0), t, &x)
            }
            None => out,
        };
        // Epsilon scaling: the step is taken from the x_t that the kept x0 and the scaled noise
        // estimate make, `sqrt(a) x0 + sqrt(1 - a) eps / λ` (large_concept_model's DDIM step
        // keeps x0 and divides eps; this does the same for either sampler and prediction type).
        let (out, from) = if steer.epsilon_scaling != 1.0 {
            let (x0, eps) = schedule.split_prediction(&out, t, &x);
            let a = schedule.alphas_cumprod[t];
            let from = &x0 * a.sqrt() + eps * ((1.0 - a).sqrt() / steer.epsilon_scaling);
            (schedule.output_for(&x0, t, &from), from)
        } else {
            (out, x.shallow_clone())
        };
        // Step noise only where the step uses it (DDIM with eta 0 is deterministic).
        let step_noise = opts.sampler.is_stochastic(opts.eta).then(|| noise(&shape).to_kind(known.kind()));
        let step = schedule.step(opts.stepping(), &out, t, &from, step_noise.as_ref());
        x = step.prev_sample;
        x0_prev = Some(step.pred_original_sample);
        if !any_known {
            continue;
        }
        // Inpainting: known slots follow the forward process to the next timestep.
        let known_t = match ts.get(i + 1) {
            // At the soft slots' last held step this is where they go on from (SDEdit's start).
            Some(&next) => {
                let rows = vec![next; shape[0] as usize];
                schedule.q_sample(known, &rows, &noise(&shape).to_kind(known.kind()))
            }
            None => known.shallow_clone(),
        };
        x = &known_t * m + &x * (1.0 - m);
    }
    Ok(x.to_kind(Kind::Float))
}

/// Classifier-free guidance in one denoiser call of twice the rows, the conditional then the
/// unconditional (no known slot): `(uncond + w (cond - uncond), cond)`.
fn guided(
    model: &mut impl FnMut(&Tensor, usize, &Tensor, &Tensor, Option<&Tensor>) -> Tensor,
    (x, t): (&Tensor, usize),
    known: &Tensor,
    mask: &Tensor,
    x0_prev: Option<&Tensor>,
    w: f64,
) -> (Tensor, Tensor) {
    let two = |a: &Tensor, b: &Tensor| Tensor::cat(&[a, b], 0);
    let prev = x0_prev.map(|p| two(p, p));
    let both = model(&two(x, x), t, &two(known, known), &two(mask, &mask.zeros_like()), prev.as_ref());
    let b = x.size()[0];
    let (cond, uncond) = (both.narrow(0, 0, b), both.narrow(0, b, b));
    (&uncond + (&cond - &uncond) * w, cond)
}

#[cfg(test)]
mod tests {
    use super::*;
    use plandiff_diffusion::{BetaSchedule, PredictionType, ScheduleConfig};
    use tch::Device;

    fn schedule(pred: PredictionType) -> NoiseSchedule {
        NoiseSchedule::new(ScheduleConfig {
            beta_schedule: BetaSchedule::SquaredcosCapV2,
            prediction_type: pred,
            clip_sample: false,
            ..Default::default()
        })
        .unwrap()
    }

    /// Gaussian noise from a private splitmix64 stream (Box-Muller): tests run in parallel
    /// threads, so libtorch's global generator would not be reproducible here.
    fn seeded(seed: u64) -> impl FnMut(&[i64]) -> Tensor {
        let mut state = seed;
        move |shape: &[i64]| {
            let mut next = || {
                state = state.wrapping_add(0x9e3779b97f4a7c15);
                let mut z = state;
                z = (z ^ (z >> 30)).wrapping_mul(0xbf58476d1ce4e5b9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94d049bb133111eb);
                ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
            };
            let n: i64 = shape.iter().product();
            let v: Vec<f64> = (0..n)
                .map(|_| {
                    let (u1, u2) = (next().max(1e-300), next());
                    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
                })
                .collect();
            Tensor::from_slice(&v).view(shape)
        }
    }

    #[test]
    fn oracle_model_gives_the_target_and_known_slots_stay_fixed() {
        tch::manual_seed(0);
        let target = Tensor::randn([2, 6, 4], (Kind::Double, Device::Cpu));
        let known = Tensor::randn([2, 6, 4], (Kind::Double, Device::Cpu));
        let mask = Tensor::from_slice(&[true, true, false, false, false, false]).view([1, 6]).expand([2, 6], false);
        let sched = schedule(PredictionType::Sample);
        for (sampler, eta) in [(SamplerKind::Ddim, 0.0), (SamplerKind::Ddim, 1.0), (SamplerKind::Ddpm, 0.0)] {
            let opts = PlanSampling { steps: 50, sampler, eta, guidance: 1.0 };
            let out =
                sample_plan(&sched, &known, &mask, opts, |_, _, _, _, _| target.shallow_clone(), seeded(1)).unwrap();
            let out = out.to_kind(Kind::Double);
            let free = out.narrow(1, 2, 4) - target.narrow(1, 2, 4);
            assert!(free.abs().max().double_value(&[]) < 1e-5, "{sampler:?}: unknown slots miss the target");
            let fixed = out.narrow(1, 0, 2) - known.narrow(1, 0, 2);
            assert!(fixed.abs().max().double_value(&[]) < 1e-6, "{sampler:?}: known slots moved");
        }
    }

    #[test]
    fn seeded_sampling_repeats_and_guidance_one_skips_the_unconditional_pass() {
        let known = Tensor::zeros([1, 3, 2], (Kind::Double, Device::Cpu));
        let mask = Tensor::zeros([1, 3], (Kind::Bool, Device::Cpu));
        let sched = schedule(PredictionType::Epsilon);
        let run = |guidance: f64, seed: u64| {
            let mut rows = Vec::new();
            let opts = PlanSampling { steps: 10, sampler: SamplerKind::Ddim, eta: 0.5, guidance };
            let out = sample_plan(
                &sched,
                &known,
                &mask,
                opts,
                |x, _, _, _, _| {
                    rows.push(x.size()[0]);
                    x * 0.1
                },
                seeded(seed),
            )
            .unwrap();
            (out, rows)
        };
        let (a, rows_a) = run(1.0, 3);
        let (b, _) = run(1.0, 3);
        let (c, _) = run(1.0, 4);
        let (_, rows_g) = run(2.0, 3);
        assert_eq!(rows_a, vec![1; 10], "one call of the batch a step");
        assert_eq!(rows_g, vec![2; 10], "guided: one call of the conditional and unconditional rows");
        // Exact: the same seeded computation twice in one process, on the same kernels.
        assert!((&a - &b).abs().max().double_value(&[]) == 0.0);
        assert!((&a - &c).abs().max().double_value(&[]) > 1e-3);
    }

    /// A soft slot is known to the model for the held steps and free after: held for every
    /// step it stays the given latent (as plain `sample_plan`), released it ends where the
    /// model takes it, and the hard known slots stay fixed either way.
    #[test]
    fn soft_slots_are_held_for_part_of_the_steps_then_denoised() {
        tch::manual_seed(1);
        let target = Tensor::randn([1, 4, 3], (Kind::Double, Device::Cpu));
        let known = Tensor::randn([1, 4, 3], (Kind::Double, Device::Cpu));
        let mask = Tensor::from_slice(&[true, false, true, false]).view([1, 4]);
        let soft = Tensor::from_slice(&[false, false, true, false]).view([1, 4]);
        let sched = schedule(PredictionType::Sample);
        let opts = PlanSampling { steps: 10, sampler: SamplerKind::Ddim, eta: 0.0, guidance: 1.0 };
        let run = |hold: f64, seen: &mut Vec<bool>| {
            let s = SoftHold { soft: &soft, hold };
            let model = |_: &Tensor, _: usize, _: &Tensor, m: &Tensor, _: Option<&Tensor>| {
                seen.push(m.int64_value(&[0, 2]) != 0);
                target.shallow_clone()
            };
            sample_plan_held(
                &sched,
                &known,
                &mask,
                Steering { soft: Some(s), ..Steering::none() },
                opts,
                model,
                seeded(2),
            )
            .unwrap()
            .to_kind(Kind::Double)
        };
        let plain =
            sample_plan(&sched, &known, &mask, opts, |_, _, _, _, _| target.shallow_clone(), seeded(2)).unwrap();
        let mut seen = Vec::new();
        let held = run(1.0, &mut seen);
        assert!(seen.iter().all(|&k| k), "held for every step");
        // Exact: both paths run the same ops on the same seeded noise (held for every step).
        assert_eq!((&held - plain.to_kind(Kind::Double)).abs().max().double_value(&[]), 0.0);
        let mut seen = Vec::new();
        let half = run(0.5, &mut seen);
        assert_eq!(seen, [true, true, true, true, true, false, false, false, false, false]);
        let gap = |z: &Tensor, t: &Tensor, k: i64| (z.get(0).get(k) - t.get(0).get(k)).abs().max().double_value(&[]);
        assert!(gap(&half, &target, 2) < 1e-5, "released, the soft slot ends at the model's x0");
        assert!(gap(&half, &known, 2) > 1e-2);
        assert!(gap(&half, &known, 0) < 1e-6, "the hard slot stays known");
    }

    /// Guidance batches the conditional and unconditional rows into one call: the same plan
    /// as two calls a step, `uncond + w (cond - uncond)`, done by hand.
    #[test]
    fn batched_guidance_samples_what_two_passes_sample() {
        let sched = schedule(PredictionType::Sample);
        let known = Tensor::randn([3, 4, 2], (Kind::Float, Device::Cpu));
        let mask = Tensor::from_slice(&[true, true, false, false]).view([1, 4]).expand([3, 4], false);
        let model = |x: &Tensor, _t: usize, k: &Tensor, m: &Tensor, _p: Option<&Tensor>| {
            // Every slot reads the known ones: guidance moves the free slots too.
            let known = (k * m.to_kind(Kind::Float).unsqueeze(-1)).sum_dim_intlist(1, true, Kind::Float);
            x * 0.5 + known * 0.3 - 0.1
        };
        let opts = |guidance| PlanSampling { steps: 6, sampler: SamplerKind::Ddim, eta: 0.3, guidance };
        let batched = sample_plan(&sched, &known, &mask, opts(2.5), model, seeded(9)).unwrap();
        let two_pass = |x: &Tensor, t: usize, k: &Tensor, m: &Tensor, p: Option<&Tensor>| {
            let (c, u) = (model(x, t, k, m, p), model(x, t, k, &m.zeros_like(), p));
            &u + (c - &u) * 2.5
        };
        let by_hand = sample_plan(&sched, &known, &mask, opts(1.0), two_pass, seeded(9)).unwrap();
        assert!(batched.allclose(&by_hand, 1e-5, 1e-6, false));
        let plain = sample_plan(&sched, &known, &mask, opts(1.0), model, seeded(9)).unwrap();
        assert!(!batched.allclose(&plain, 1e-3, 1e-3, false), "guidance changes the plan");
    }

    /// Steering that changes nothing (an identity x0 map, rescale 0, noise scale 1) samples
    /// what plain sampling samples; a constant x0 map puts every free slot on that constant at
    /// the end; guidance rescale 1 gives the guided x0 the conditional x0's spread.
    #[test]
    fn steering_levers_do_what_they_say() {
        let sched = schedule(PredictionType::Sample);
        let known = Tensor::randn([2, 4, 3], (Kind::Float, Device::Cpu));
        let mask = Tensor::from_slice(&[true, false, false, true]).view([1, 4]).expand([2, 4], false);
        let model = |x: &Tensor, _t: usize, k: &Tensor, m: &Tensor, _p: Option<&Tensor>| {
            x * 0.5 + k * m.to_kind(Kind::Float).unsqueeze(-1) * 0.2 + 0.1
        };
        let opts = PlanSampling { steps: 6, sampler: SamplerKind::Ddim, eta: 0.0, guidance: 2.0 };
        let plain = sample_plan(&sched, &known, &mask, opts, model, seeded(3)).unwrap();
        let id = |x: &Tensor| x.shallow_clone();
        let same = Steering { x0: Some(&id), ..Steering::none() };
        let steered = sample_plan_held(&sched, &known, &mask, same, opts, model, seeded(3)).unwrap();
        assert!(steered.allclose(&plain, 1e-6, 1e-6, false));
        let to_one = |x: &Tensor| x.ones_like();
        let one = Steering { x0: Some(&to_one), ..Steering::none() };
        let z = sample_plan_held(&sched, &known, &mask, one, opts, model, seeded(3)).unwrap();
        let free = z.narrow(1, 1, 2);
        assert!(free.allclose(&free.ones_like(), 1e-5, 1e-5, false), "{free}");
        assert!(z.narrow(1, 0, 1).allclose(&known.narrow(1, 0, 1), 1e-6, 1e-6, false), "known slots stay");
        let g = Tensor::randn([2, 4, 3], (Kind::Double, Device::Cpu)) * 3.0;
        let c = Tensor::randn([2, 4, 3], (Kind::Double, Device::Cpu));
        let r = rescale_guided(&g, &c, 1.0);
        let std = |x: &Tensor| x.std_dim([1i64, 2].as_slice(), true, false);
        assert!(std(&r).allclose(&std(&c), 1e-9, 1e-9, false));
        assert!(rescale_guided(&g, &c, 0.0).allclose(&g, 1e-12, 1e-12, false));
        let scaled = Steering { noise_scale: 0.5, ..Steering::none() };
        let z = sample_plan_held(&sched, &known, &mask, scaled, opts, model, seeded(3)).unwrap();
        assert!(!z.allclose(&plain, 1e-4, 1e-4, false), "the initial noise's scale must reach the plan");
    }

    /// Epsilon scaling as large_concept_model's DDIM step takes it: x0 kept, the noise
    /// estimate divided by λ. Two DDIM steps worked by hand against the sampler.
    #[test]
    fn epsilon_scaling_divides_the_noise_estimate_and_keeps_x0() {
        let sched = schedule(PredictionType::Sample);
        let known = Tensor::zeros([2, 4, 3], (Kind::Double, Device::Cpu));
        let mask = Tensor::zeros([2, 4], (Kind::Bool, Device::Cpu));
        let model = |x: &Tensor, _t: usize, _k: &Tensor, _m: &Tensor, _p: Option<&Tensor>| x * 0.5 + 0.1;
        let opts = PlanSampling { steps: 2, sampler: SamplerKind::Ddim, eta: 0.0, guidance: 1.0 };
        let lambda = 1.25;
        let steer = Steering { epsilon_scaling: lambda, ..Steering::none() };
        let z = sample_plan_held(&sched, &known, &mask, steer, opts, model, seeded(5)).unwrap();
        let ts = sched.timesteps(2).unwrap();
        let (a1, a0) = (sched.alphas_cumprod[ts[0]], sched.alphas_cumprod[ts[1]]);
        let x_t = seeded(5)(&[2, 4, 3]).to_kind(Kind::Double);
        let x0 = &x_t * 0.5 + 0.1;
        let eps = (&x_t - &x0 * a1.sqrt()) / (1.0 - a1).sqrt();
        let x_prev = &x0 * a0.sqrt() + eps * ((1.0 - a0).sqrt() / lambda);
        let want = x_prev * 0.5 + 0.1; // the last step lands on its x0 (alpha_prev = 1)
        assert!(z.allclose(&want.to_kind(Kind::Float), 1e-5, 1e-5, false), "{z} {want}");
        let plain = sample_plan(&sched, &known, &mask, opts, model, seeded(5)).unwrap();
        assert!(!z.allclose(&plain, 1e-4, 1e-4, false), "λ != 1 must change the plan");
        let off = Steering { epsilon_scaling: 1.0, ..Steering::none() };
        let same = sample_plan_held(&sched, &known, &mask, off, opts, model, seeded(5)).unwrap();
        assert!(same.equal(&plain), "λ = 1 is the plain sampler");
    }
}
