//! Scheduler configuration, serialized with a model (e.g. `BUNDLE/planner/config.json`).

use serde::{Deserialize, Serialize};

/// How β_t grows with t.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BetaSchedule {
    /// `linspace(beta_start, beta_end, T)`.
    Linear,
    /// `linspace(sqrt(beta_start), sqrt(beta_end), T)^2` (Stable Diffusion).
    ScaledLinear,
    /// Nichol & Dhariwal 2021 cosine ᾱ, β capped at 0.999.
    #[serde(rename = "squaredcos_cap_v2")]
    SquaredcosCapV2,
    /// Diffusion-LM (Li et al. 2022): ᾱ(t) = 1 − √(t/T + 0.0001), β capped at 0.999. Noise
    /// rises fast at small t, which suits embeddings of discrete tokens.
    Sqrt,
}

impl std::str::FromStr for BetaSchedule {
    type Err = crate::DiffusionError;
    fn from_str(s: &str) -> crate::Result<Self> {
        match s {
            "linear" => Ok(Self::Linear),
            "scaled_linear" => Ok(Self::ScaledLinear),
            "squaredcos_cap_v2" | "cosine" => Ok(Self::SquaredcosCapV2),
            "sqrt" => Ok(Self::Sqrt),
            _ => Err(crate::DiffusionError::UnknownName {
                what: "beta schedule",
                name: s.into(),
                expected: "linear, scaled_linear, squaredcos_cap_v2 (cosine) or sqrt",
            }),
        }
    }
}

/// What the denoiser predicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PredictionType {
    /// The noise ε.
    Epsilon,
    /// The clean sample x₀.
    Sample,
    /// v = √ᾱ ε − √(1−ᾱ) x₀ (Salimans & Ho 2022).
    VPrediction,
}

/// How inference timesteps are picked from the training ones (Lin et al. 2023, table 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimestepSpacing {
    Leading,
    Trailing,
    Linspace,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleConfig {
    pub num_train_timesteps: usize,
    pub beta_start: f64,
    pub beta_end: f64,
    pub beta_schedule: BetaSchedule,
    /// Lin et al. 2023: rescale so that ᾱ_T = 0 (zero terminal SNR).
    pub rescale_zero_terminal_snr: bool,
    pub prediction_type: PredictionType,
    pub clip_sample: bool,
    pub clip_sample_range: f64,
    /// DDIM: use ᾱ_{-1} = 1 for the last step (else ᾱ_0).
    pub set_alpha_to_one: bool,
    pub steps_offset: usize,
    pub timestep_spacing: TimestepSpacing,
}

impl Default for ScheduleConfig {
    /// diffusers' `DDIMScheduler()` defaults.
    fn default() -> Self {
        Self {
            num_train_timesteps: 1000,
            beta_start: 1e-4,
            beta_end: 0.02,
            beta_schedule: BetaSchedule::Linear,
            rescale_zero_terminal_snr: false,
            prediction_type: PredictionType::Epsilon,
            clip_sample: true,
            clip_sample_range: 1.0,
            set_alpha_to_one: true,
            steps_offset: 0,
            timestep_spacing: TimestepSpacing::Leading,
        }
    }
}
