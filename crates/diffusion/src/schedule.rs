//! Beta schedules and the precomputed tables of a noise schedule.
//!
//! Sources: diffusers `schedulers/scheduling_ddim.py` (`betas_for_alpha_bar`,
//! `rescale_zero_terminal_snr`, `set_timesteps`); Nichol & Dhariwal 2021 eq. 17 for the
//! cosine schedule.

use crate::config::{BetaSchedule, ScheduleConfig, TimestepSpacing};
use crate::{DiffusionError, Result};

/// β_1..β_T of a schedule, in f64. Note the float division in the cosine schedule: `i / T`
/// with integers is 0 for every `i < T`, the bug of two popular Rust ports.
pub fn betas_for(schedule: BetaSchedule, t: usize, beta_start: f64, beta_end: f64) -> Vec<f64> {
    let lin = |a: f64, b: f64| -> Vec<f64> {
        if t == 1 {
            return vec![a];
        }
        (0..t).map(|i| a + (b - a) * i as f64 / (t - 1) as f64).collect()
    };
    match schedule {
        BetaSchedule::Linear => lin(beta_start, beta_end),
        BetaSchedule::ScaledLinear => lin(beta_start.sqrt(), beta_end.sqrt()).into_iter().map(|b| b * b).collect(),
        BetaSchedule::SquaredcosCapV2 => {
            betas_for_alpha_bar(t, |x| ((x + 0.008) / 1.008 * std::f64::consts::FRAC_PI_2).cos().powi(2))
        }
        BetaSchedule::Sqrt => betas_for_alpha_bar(t, |x| 1.0 - (x + 0.0001).sqrt()),
    }
}

/// β_i = min(1 − ᾱ((i+1)/T) / ᾱ(i/T), 0.999) (diffusers' `betas_for_alpha_bar`).
fn betas_for_alpha_bar(t: usize, alpha_bar: impl Fn(f64) -> f64) -> Vec<f64> {
    (0..t)
        .map(|i| {
            let t1 = i as f64 / t as f64;
            let t2 = (i + 1) as f64 / t as f64;
            (1.0 - alpha_bar(t2) / alpha_bar(t1)).min(0.999)
        })
        .collect()
}

/// Lin et al. 2023, algorithm 1: shift and scale √ᾱ so that √ᾱ_T = 0 and √ᾱ_0 is unchanged.
pub fn rescale_zero_terminal_snr(betas: &[f64]) -> Vec<f64> {
    let mut acp = 1.0;
    let mut sqrt_ab: Vec<f64> = betas
        .iter()
        .map(|b| {
            acp *= 1.0 - b;
            acp.sqrt()
        })
        .collect();
    let (a0, at) = (sqrt_ab[0], sqrt_ab[sqrt_ab.len() - 1]);
    for s in &mut sqrt_ab {
        *s = (*s - at) * a0 / (a0 - at);
    }
    let ab: Vec<f64> = sqrt_ab.iter().map(|s| s * s).collect();
    let mut out = Vec::with_capacity(ab.len());
    out.push(1.0 - ab[0]);
    for i in 1..ab.len() {
        out.push(1.0 - ab[i] / ab[i - 1]);
    }
    out
}

/// A schedule's tables, f64 on the host.
#[derive(Debug, Clone)]
pub struct NoiseSchedule {
    pub config: ScheduleConfig,
    pub betas: Vec<f64>,
    pub alphas_cumprod: Vec<f64>,
}

/// The most training timesteps a schedule may have (diffusers' models use 1,000).
pub const MAX_TRAIN_TIMESTEPS: usize = 100_000;

impl NoiseSchedule {
    pub fn new(config: ScheduleConfig) -> Result<Self> {
        let bad = |m: String| Err(DiffusionError::Invalid(m));
        // Bounded before the tables (five f64 vectors of this length) are allocated.
        if !(2..=MAX_TRAIN_TIMESTEPS).contains(&config.num_train_timesteps) {
            return bad(format!(
                "num_train_timesteps = {} must be in 2..={MAX_TRAIN_TIMESTEPS}",
                config.num_train_timesteps
            ));
        }
        let uses_range = !matches!(config.beta_schedule, BetaSchedule::SquaredcosCapV2 | BetaSchedule::Sqrt);
        let range_ok = config.beta_start > 0.0 && config.beta_start <= config.beta_end && config.beta_end < 1.0;
        if uses_range && !range_ok {
            return bad(format!("need 0 < beta_start ({}) <= beta_end ({}) < 1", config.beta_start, config.beta_end));
        }
        let mut betas = betas_for(config.beta_schedule, config.num_train_timesteps, config.beta_start, config.beta_end);
        if config.rescale_zero_terminal_snr {
            betas = rescale_zero_terminal_snr(&betas);
        }
        let mut acp = 1.0;
        let alphas_cumprod = betas
            .iter()
            .map(|b| {
                acp *= 1.0 - b;
                acp
            })
            .collect();
        Ok(Self { config, betas, alphas_cumprod })
    }

    pub fn num_train_timesteps(&self) -> usize {
        self.config.num_train_timesteps
    }

    /// Signal-to-noise ratio ᾱ_t / (1 - ᾱ_t).
    pub fn snr(&self, t: usize) -> f64 {
        let a = self.alphas_cumprod[t];
        a / (1.0 - a)
    }

    /// Inference timesteps, descending (diffusers `set_timesteps`; numpy rounds half to even).
    pub fn timesteps(&self, num_inference_steps: usize) -> Result<Vec<usize>> {
        let tt = self.config.num_train_timesteps;
        let n = num_inference_steps;
        if n == 0 || n > tt {
            return Err(DiffusionError::Invalid(format!(
                "{n} sampling steps are not in 1..={tt} (the training timesteps); give fewer steps"
            )));
        }
        let ts: Vec<i64> = match self.config.timestep_spacing {
            TimestepSpacing::Linspace => (0..n)
                .rev()
                .map(|i| {
                    let x = if n == 1 { 0.0 } else { (tt - 1) as f64 * i as f64 / (n - 1) as f64 };
                    x.round_ties_even() as i64
                })
                .collect(),
            TimestepSpacing::Leading => {
                let ratio = (tt / n) as i64;
                (0..n as i64).rev().map(|i| i * ratio + self.config.steps_offset as i64).collect()
            }
            TimestepSpacing::Trailing => {
                let ratio = tt as f64 / n as f64;
                let mut v = Vec::new();
                let mut x = tt as f64;
                while x > 0.0 {
                    v.push(x.round_ties_even() as i64 - 1);
                    x -= ratio;
                }
                v
            }
        };
        Ok(ts.into_iter().map(|t| t.clamp(0, tt as i64 - 1) as usize).collect())
    }

    /// DDIM's previous timestep: `t - T / n` (diffusers keeps this rule for every spacing).
    /// `None`: before the start.
    pub(crate) fn prev_timestep(&self, t: usize, n: usize) -> Option<usize> {
        let p = t as i64 - (self.config.num_train_timesteps / n) as i64;
        (p >= 0).then_some(p as usize)
    }

    /// DDPM's previous timestep: the next entry of the run's timesteps (diffusers
    /// `DDPMScheduler.previous_timestep`); `t - T / n` for a `t` outside the run.
    pub(crate) fn prev_in_run(&self, t: usize, n: usize) -> Option<usize> {
        match self.timesteps(n) {
            Ok(ts) => match ts.iter().position(|&x| x == t) {
                Some(i) => ts.get(i + 1).copied(),
                None => self.prev_timestep(t, n),
            },
            Err(_) => self.prev_timestep(t, n),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(s: BetaSchedule) -> ScheduleConfig {
        ScheduleConfig { beta_schedule: s, ..Default::default() }
    }

    #[test]
    fn cosine_betas_match_reference_values() {
        let s = NoiseSchedule::new(cfg(BetaSchedule::SquaredcosCapV2)).unwrap();
        let b = &s.betas;
        for (i, want) in
            [(0, 4.128422e-5), (1, 4.614175e-5), (500, 3.155691e-3), (990, 0.1899875), (998, 0.7499994), (999, 0.999)]
        {
            assert!((b[i] - want).abs() <= 1e-6 * want.max(1e-3), "beta[{i}] = {} != {want}", b[i]);
        }
        assert!((s.alphas_cumprod[499] - 0.4938436).abs() < 1e-6);
    }

    #[test]
    fn sqrt_betas_match_diffusion_lm() {
        // Diffusion-LM's `get_named_beta_schedule("sqrt", 2000)`, computed in float64.
        let s = NoiseSchedule::new(ScheduleConfig { num_train_timesteps: 2000, ..cfg(BetaSchedule::Sqrt) }).unwrap();
        for (i, want) in [
            (0, 0.01464131053316331),
            (1, 0.008889087768847226),
            (1000, 0.0012069759283432901),
            (1998, 0.5556111347344621),
            (1999, 0.999),
        ] {
            assert!((s.betas[i] - want).abs() < 1e-12, "beta[{i}] = {} != {want}", s.betas[i]);
        }
        assert!((s.alphas_cumprod[999] - 0.2957803148187003).abs() < 1e-12);
        assert!(s.betas.iter().all(|&b| b > 0.0 && b <= 0.999));
        assert!(s.alphas_cumprod.windows(2).all(|w| w[1] < w[0]));
        assert_eq!("sqrt".parse::<BetaSchedule>().unwrap(), BetaSchedule::Sqrt);
    }

    #[test]
    fn schedule_properties() {
        for sched in [BetaSchedule::Linear, BetaSchedule::ScaledLinear, BetaSchedule::SquaredcosCapV2] {
            for rescale in [false, true] {
                let s =
                    NoiseSchedule::new(ScheduleConfig { rescale_zero_terminal_snr: rescale, ..cfg(sched) }).unwrap();
                let max_beta = if rescale { 1.0 } else { 0.999 };
                assert!(s.betas.iter().all(|&b| b > 0.0 && b <= max_beta + 1e-12), "{sched:?} {rescale}");
                assert!(s.betas.windows(2).all(|w| w[1] >= w[0] - 1e-12), "{sched:?} {rescale}: betas decrease");
                assert!(s.alphas_cumprod.windows(2).all(|w| w[1] < w[0]), "{sched:?}: alphas_cumprod not decreasing");
                if rescale {
                    assert!(s.alphas_cumprod[999].abs() < 1e-12, "zero terminal SNR");
                    assert!(
                        (s.alphas_cumprod[0] - NoiseSchedule::new(cfg(sched)).unwrap().alphas_cumprod[0]).abs() < 1e-12
                    );
                }
            }
        }
    }

    #[test]
    fn timesteps_by_spacing() {
        let mut c = ScheduleConfig { steps_offset: 1, ..Default::default() };
        let s = NoiseSchedule::new(c.clone()).unwrap();
        assert_eq!(s.timesteps(5).unwrap(), vec![801, 601, 401, 201, 1]);
        c.steps_offset = 0;
        c.timestep_spacing = TimestepSpacing::Trailing;
        assert_eq!(NoiseSchedule::new(c.clone()).unwrap().timesteps(5).unwrap(), vec![999, 799, 599, 399, 199]);
        c.timestep_spacing = TimestepSpacing::Linspace;
        assert_eq!(NoiseSchedule::new(c.clone()).unwrap().timesteps(4).unwrap(), vec![999, 666, 333, 0]);
        assert!(s.timesteps(0).is_err() && s.timesteps(1001).is_err());
    }
}
