//! The forward process and the DDIM / DDPM reverse steps on tensors.
//!
//! Coefficients come from the f64 tables of [`NoiseSchedule`] and become tensors here, at
//! the point of use. Every stochastic step takes its noise as an argument
//! (`variance_noise`), so samplers are reproducible and testable; `None` draws from libtorch's
//! global generator.

use crate::config::PredictionType;
use crate::schedule::NoiseSchedule;
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

/// The reverse process a sampler runs, by diffusers' scheduler names (`ddim`, `ddpm` in
/// config files and flags). The one sampler choice of every plandiff sampler (sentence plans
/// and token embeddings); DDIM's η travels beside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SamplerKind {
    /// Song et al. 2021: deterministic for η = 0, DDPM-like for η = 1.
    Ddim,
    /// Ho et al. 2020: ancestral sampling with the posterior variance.
    Ddpm,
}

impl SamplerKind {
    pub fn name(self) -> &'static str {
        match self {
            Self::Ddim => "ddim",
            Self::Ddpm => "ddpm",
        }
    }

    /// Whether a step of this sampler adds noise (DDIM with η = 0 does not).
    pub fn is_stochastic(self, eta: f64) -> bool {
        !(self == Self::Ddim && eta == 0.0)
    }
}

/// How a reverse step is taken: the sampler, DDIM's η, and the number of inference steps
/// the schedule is spaced into.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stepping {
    pub sampler: SamplerKind,
    pub eta: f64,
    pub steps: usize,
}

impl std::str::FromStr for SamplerKind {
    type Err = crate::DiffusionError;
    fn from_str(s: &str) -> crate::Result<Self> {
        match s {
            "ddim" => Ok(Self::Ddim),
            "ddpm" => Ok(Self::Ddpm),
            _ => Err(crate::DiffusionError::UnknownName { what: "sampler", name: s.into(), expected: "ddim or ddpm" }),
        }
    }
}

/// One reverse step's result.
#[derive(Debug)]
pub struct StepOutput {
    /// x_{t-1}
    pub prev_sample: Tensor,
    /// The model's estimate of x₀ (after clipping, if configured).
    pub pred_original_sample: Tensor,
}

/// `(B,)` host values -> a `(B, 1, ..., 1)` tensor broadcasting against `like`.
fn per_row(values: &[f64], like: &Tensor) -> Tensor {
    let mut shape = vec![values.len() as i64];
    shape.extend(std::iter::repeat_n(1, like.dim().saturating_sub(1)));
    Tensor::from_slice(values).view(shape.as_slice()).to_kind(like.kind()).to_device(like.device())
}

impl NoiseSchedule {
    /// q(x_t | x₀) = N(√ᾱ_t x₀, (1 − ᾱ_t) I): `√ᾱ_t x₀ + √(1−ᾱ_t) ε`, one `t` per batch row.
    ///
    /// # Shapes
    /// - `x0`, `noise`: `(B, ...)`; `t`: `B` timesteps
    pub fn q_sample(&self, x0: &Tensor, t: &[usize], noise: &Tensor) -> Tensor {
        let a: Vec<f64> = t.iter().map(|&t| self.alphas_cumprod[t].sqrt()).collect();
        let s: Vec<f64> = t.iter().map(|&t| (1.0 - self.alphas_cumprod[t]).sqrt()).collect();
        per_row(&a, x0) * x0 + per_row(&s, x0) * noise
    }

    /// The training target for the configured prediction type.
    pub fn target(&self, x0: &Tensor, t: &[usize], noise: &Tensor) -> Tensor {
        match self.config.prediction_type {
            PredictionType::Epsilon => noise.shallow_clone(),
            PredictionType::Sample => x0.shallow_clone(),
            PredictionType::VPrediction => {
                let a: Vec<f64> = t.iter().map(|&t| self.alphas_cumprod[t].sqrt()).collect();
                let s: Vec<f64> = t.iter().map(|&t| (1.0 - self.alphas_cumprod[t]).sqrt()).collect();
                per_row(&a, x0) * noise - per_row(&s, x0) * x0
            }
        }
    }

    /// (x̂₀, ε̂) from a model output at timestep `t` (DDIM paper eq. 12 and its inverses).
    pub fn split_prediction(&self, model_output: &Tensor, t: usize, sample: &Tensor) -> (Tensor, Tensor) {
        let a = self.alphas_cumprod[t];
        let (sa, sb) = (a.sqrt(), (1.0 - a).sqrt());
        match self.config.prediction_type {
            PredictionType::Epsilon => ((sample - model_output * sb) / sa, model_output.shallow_clone()),
            PredictionType::Sample => (model_output.shallow_clone(), (sample - model_output * sa) / sb),
            PredictionType::VPrediction => (sample * sa - model_output * sb, model_output * sa + sample * sb),
        }
    }

    /// The model output of this schedule's prediction type that predicts `x0` from `sample`
    /// at timestep `t` (the inverse of [`Self::split_prediction`]'s x̂₀).
    pub fn output_for(&self, x0: &Tensor, t: usize, sample: &Tensor) -> Tensor {
        let a = self.alphas_cumprod[t];
        let (sa, sb) = (a.sqrt(), (1.0 - a).sqrt());
        match self.config.prediction_type {
            PredictionType::Sample => x0.shallow_clone(),
            PredictionType::Epsilon => (sample - x0 * sa) / sb.max(1e-12),
            PredictionType::VPrediction => {
                let eps = (sample - x0 * sa) / sb.max(1e-12);
                eps * sa - x0 * sb
            }
        }
    }

    fn clip(&self, x0: Tensor) -> Tensor {
        if self.config.clip_sample {
            let r = self.config.clip_sample_range;
            x0.clamp(-r, r)
        } else {
            x0
        }
    }

    fn ddim_alpha_prev(&self, prev: Option<usize>) -> f64 {
        match prev {
            Some(p) => self.alphas_cumprod[p],
            None if self.config.set_alpha_to_one => 1.0,
            None => self.alphas_cumprod[0],
        }
    }

    /// One reverse step from `t`, taken as `how` says (η applies to DDIM only).
    pub fn step(
        &self,
        how: Stepping,
        model_output: &Tensor,
        t: usize,
        sample: &Tensor,
        variance_noise: Option<&Tensor>,
    ) -> StepOutput {
        let Stepping { sampler, eta, steps: num_inference_steps } = how;
        match sampler {
            SamplerKind::Ddim => self.ddim_step(model_output, t, num_inference_steps, sample, eta, variance_noise),
            SamplerKind::Ddpm => self.ddpm_step(model_output, t, num_inference_steps, sample, variance_noise),
        }
    }

    /// DDIM's σ_t² / η² (Song et al. 2021, eq. 16): `(1−ᾱ_prev)/(1−ᾱ_t) · (1 − ᾱ_t/ᾱ_prev)`.
    pub fn ddim_variance(&self, t: usize, prev: Option<usize>) -> f64 {
        let a = self.alphas_cumprod[t];
        let ap = self.ddim_alpha_prev(prev);
        (1.0 - ap) / (1.0 - a) * (1.0 - a / ap)
    }

    /// One DDIM step from `t` in a run of `num_inference_steps` (diffusers `DDIMScheduler.step`
    /// with `use_clipped_model_output = false`, no thresholding).
    pub fn ddim_step(
        &self,
        model_output: &Tensor,
        t: usize,
        num_inference_steps: usize,
        sample: &Tensor,
        eta: f64,
        variance_noise: Option<&Tensor>,
    ) -> StepOutput {
        let prev = self.prev_timestep(t, num_inference_steps);
        let ap = self.ddim_alpha_prev(prev);
        let (x0, eps) = self.split_prediction(model_output, t, sample);
        let x0 = self.clip(x0);
        let std = eta * self.ddim_variance(t, prev).sqrt();
        // "direction pointing to x_t" (eq. 12)
        let dir = &eps * (1.0 - ap - std * std).max(0.0).sqrt();
        let mut prev_sample = &x0 * ap.sqrt() + dir;
        if eta > 0.0 {
            let noise = variance_noise.map_or_else(|| sample.randn_like(), Tensor::shallow_clone);
            prev_sample = prev_sample + noise * std;
        }
        StepOutput { prev_sample, pred_original_sample: x0 }
    }

    /// DDPM posterior variance β̃_t with `fixed_small` (Ho et al. 2020 eq. 7), clamped at 1e-20.
    pub fn ddpm_variance(&self, t: usize, num_inference_steps: usize) -> f64 {
        let prev = self.prev_in_run(t, num_inference_steps);
        let a = self.alphas_cumprod[t];
        let ap = prev.map_or(1.0, |p| self.alphas_cumprod[p]);
        ((1.0 - ap) / (1.0 - a) * (1.0 - a / ap)).max(1e-20)
    }

    /// One ancestral DDPM step (diffusers `DDPMScheduler.step`, `variance_type = fixed_small`):
    /// the posterior mean μ̃(x_t, x̂₀) (eq. 7) plus √β̃_t noise for `t > 0`.
    pub fn ddpm_step(
        &self,
        model_output: &Tensor,
        t: usize,
        num_inference_steps: usize,
        sample: &Tensor,
        variance_noise: Option<&Tensor>,
    ) -> StepOutput {
        let prev = self.prev_in_run(t, num_inference_steps);
        let a = self.alphas_cumprod[t];
        let ap = prev.map_or(1.0, |p| self.alphas_cumprod[p]);
        let (beta_t, beta_prev) = (1.0 - a, 1.0 - ap);
        let cur_alpha = a / ap;
        let cur_beta = 1.0 - cur_alpha;
        let (x0, _) = self.split_prediction(model_output, t, sample);
        let x0 = self.clip(x0);
        let c0 = ap.sqrt() * cur_beta / beta_t;
        let ct = cur_alpha.sqrt() * beta_prev / beta_t;
        let mut prev_sample = &x0 * c0 + sample * ct;
        if t > 0 {
            let noise = variance_noise.map_or_else(|| sample.randn_like(), Tensor::shallow_clone);
            prev_sample = prev_sample + noise * self.ddpm_variance(t, num_inference_steps).sqrt();
        }
        StepOutput { prev_sample, pred_original_sample: x0 }
    }
}

/// Sum and mean of |x| (as the diffusers tests report them).
pub fn abs_sum_mean(x: &Tensor) -> (f64, f64) {
    let a = x.abs().to_kind(Kind::Double);
    (a.sum(Kind::Double).double_value(&[]), a.mean(Kind::Double).double_value(&[]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{BetaSchedule, ScheduleConfig};
    use tch::Device;

    /// diffusers' `dummy_sample_deter` (elementwise tests do not care about its permutation).
    fn sample() -> Tensor {
        Tensor::arange(768, (Kind::Double, Device::Cpu)) / 768.0
    }

    /// diffusers' `dummy_model`: `sample * t / (t + 1)`.
    fn model(x: &Tensor, t: usize) -> Tensor {
        x * (t as f64 / (t as f64 + 1.0))
    }

    fn full_loop(cfg: ScheduleConfig) -> (f64, f64) {
        let s = NoiseSchedule::new(cfg).unwrap();
        let mut x = sample();
        for t in s.timesteps(10).unwrap() {
            x = s.ddim_step(&model(&x, t), t, 10, &x, 0.0, None).prev_sample;
        }
        abs_sum_mean(&x)
    }

    fn close(got: (f64, f64), want: (f64, f64), tol: (f64, f64)) {
        assert!((got.0 - want.0).abs() < tol.0 && (got.1 - want.1).abs() < tol.1, "got {got:?}, want {want:?}");
    }

    /// `output_for` inverts `split_prediction`'s x0 for every prediction type: the output it
    /// gives for a predicted x0 splits back into that x0 (and the model output it came from).
    #[test]
    fn output_for_inverts_split_prediction() {
        for pred in [PredictionType::Epsilon, PredictionType::Sample, PredictionType::VPrediction] {
            let s = NoiseSchedule::new(ScheduleConfig { prediction_type: pred, ..Default::default() }).unwrap();
            let (x, out) = (sample(), sample().flip([0]) - 0.3);
            for t in [0, 10, 500, 999] {
                let (x0, _) = s.split_prediction(&out, t, &x);
                let back = s.output_for(&x0, t, &x);
                let err = (&back - &out).abs().max().double_value(&[]);
                assert!(
                    err < 1e-9 * (1.0 + out.abs().max().double_value(&[])) / s.alphas_cumprod[t].sqrt().max(1e-3),
                    "{pred:?} t {t}: {err}"
                );
            }
        }
    }

    #[test]
    fn ddim_full_loop_reference_numbers() {
        let base = ScheduleConfig::default();
        close(full_loop(base.clone()), (172.0067, 0.223967), (1e-2, 1e-3));
        close(
            full_loop(ScheduleConfig { prediction_type: PredictionType::VPrediction, ..base.clone() }),
            (52.5302, 0.0684),
            (1e-2, 1e-3),
        );
        close(full_loop(ScheduleConfig { beta_start: 0.01, ..base.clone() }), (149.8295, 0.1951), (1e-2, 1e-3));
        close(
            full_loop(ScheduleConfig { beta_start: 0.01, set_alpha_to_one: false, ..base }),
            (149.0784, 0.1941),
            (1e-2, 1e-3),
        );
    }

    #[test]
    fn ddim_variance_reference_numbers() {
        let s = NoiseSchedule::new(ScheduleConfig::default()).unwrap();
        for (t, p, want) in
            [(0, 0, 0.0), (420, 400, 0.14771), (980, 960, 0.32460), (487, 486, 0.00979), (999, 998, 0.02)]
        {
            let v = s.ddim_variance(t, Some(p));
            assert!((v - want).abs() < 1e-5, "variance({t}, {p}) = {v}, want {want}");
        }
    }

    #[test]
    fn ddim_with_an_oracle_recovers_x0_from_noise() {
        tch::manual_seed(0);
        let x0 = Tensor::rand([4, 16], (Kind::Double, Device::Cpu)) * 2.0 - 1.0;
        for pred in [PredictionType::Epsilon, PredictionType::Sample, PredictionType::VPrediction] {
            for sched in [BetaSchedule::Linear, BetaSchedule::SquaredcosCapV2] {
                let cfg = ScheduleConfig {
                    prediction_type: pred,
                    beta_schedule: sched,
                    clip_sample: false,
                    ..Default::default()
                };
                let s = NoiseSchedule::new(cfg).unwrap();
                let mut x = x0.randn_like();
                for t in s.timesteps(50).unwrap() {
                    // The oracle knows x0, so its ε and v are exact for the current x_t.
                    let a = s.alphas_cumprod[t];
                    let eps = (&x - &x0 * a.sqrt()) / (1.0 - a).sqrt();
                    let out = match pred {
                        PredictionType::Epsilon => eps,
                        PredictionType::Sample => x0.shallow_clone(),
                        PredictionType::VPrediction => &eps * a.sqrt() - &x0 * (1.0 - a).sqrt(),
                    };
                    x = s.ddim_step(&out, t, 50, &x, 0.0, None).prev_sample;
                }
                let err = (&x - &x0).abs().max().double_value(&[]);
                assert!(err < 1e-5, "{pred:?} {sched:?}: max error {err}");
            }
        }
    }

    #[test]
    fn q_sample_and_target_are_consistent() {
        let s =
            NoiseSchedule::new(ScheduleConfig { prediction_type: PredictionType::VPrediction, ..Default::default() })
                .unwrap();
        let x0 = Tensor::randn([3, 5], (Kind::Double, Device::Cpu));
        let noise = Tensor::randn([3, 5], (Kind::Double, Device::Cpu));
        let t = [0usize, 500, 999];
        let xt = s.q_sample(&x0, &t, &noise);
        let v = s.target(&x0, &t, &noise);
        for (row, &ti) in t.iter().enumerate() {
            let (x0_hat, eps_hat) = s.split_prediction(&v.get(row as i64), ti, &xt.get(row as i64));
            assert!((x0_hat - x0.get(row as i64)).abs().max().double_value(&[]) < 1e-9);
            assert!((eps_hat - noise.get(row as i64)).abs().max().double_value(&[]) < 1e-9);
        }
    }
}
