//! Flag groups that several commands share: token sampling (`generate`, `edit`, `ab`),
//! distributed training (`train`), and the planner's steering as `eval --stage planner` reads it. A mode's own flags are declared by its settings in
//! `plandiff_pipeline` (see `registry`), not here.

use clap::Args;

/// Token sampling flags of the decoder.
#[derive(Args, Debug, Clone)]
pub struct SamplingArgs {
    /// Sampling temperature; 0 is greedy.
    #[arg(long, default_value_t = 0.8)]
    pub temperature: f64,
    #[arg(long, default_value_t = 50)]
    pub top_k: usize,
    #[arg(long, default_value_t = 0.95)]
    pub top_p: f64,
    /// CTRL repetition penalty; 1 disables it.
    #[arg(long, default_value_t = 1.1)]
    pub repetition_penalty: f64,
}

impl SamplingArgs {
    /// The checked sampling config (one-line error naming the bad flag).
    pub fn config(&self) -> anyhow::Result<plandiff_decoder::SamplingConfig> {
        let c = plandiff_decoder::SamplingConfig {
            temperature: self.temperature,
            top_k: Some(self.top_k),
            top_p: Some(self.top_p),
            repetition_penalty: self.repetition_penalty,
        };
        c.validate().map_err(|e| anyhow::anyhow!(e.as_flag()))?;
        Ok(c)
    }
}

/// Distributed training and precision flags of `plandiff train`.
#[derive(clap::Args, Debug)]
pub struct DistArgs {
    /// Under torchrun (WORLD_SIZE set): c10d backend, auto (NCCL on CUDA, Gloo on CPU), gloo
    /// or nccl; off trains one process and ignores torchrun's environment.
    #[arg(long, default_value = "auto", value_parser = ["auto", "gloo", "nccl", "off"])]
    pub dist: String,
    /// Seconds joining the group or a collective may wait for the other ranks before the run
    /// stops with an error (a rank that died or hangs).
    #[arg(long, default_value_t = 600.0)]
    pub dist_timeout: f64,
    /// fp32, or bf16 autocast (fp32 weights, gradients and optimizer state).
    #[arg(long, default_value = "fp32", value_parser = ["fp32", "bf16"])]
    pub precision: String,
    /// Check after every step that every rank holds identical parameters (slow; for tests).
    #[arg(long)]
    pub check_sync: bool,
}

/// The planner-side levers of `generate --mode hybrid`, for `eval --stage planner`'s sampled
/// plans.
#[derive(Args, Debug, Clone, Default)]
pub struct PlanSteerArgs {
    /// With --stage planner: sample the plans with the predicted x0 kept on the encoder's unit
    /// sphere at every step (as `generate --mode hybrid --plan-sphere`).
    #[arg(long)]
    pub plan_sphere: bool,
    /// With --stage planner: the guidance rescale (as `generate --plan-rescale`).
    #[arg(long)]
    pub plan_rescale: Option<f64>,
    /// With --stage planner: the initial noise's scale (as `generate --plan-noise-scale`).
    #[arg(long)]
    pub plan_noise_scale: Option<f64>,
    /// With --stage planner: pull the predicted x0 toward the nearest sentence of --plan-bank
    /// (as `generate --plan-snap`).
    #[arg(long)]
    pub plan_snap: Option<f64>,
    /// With --plan-snap: the sentence bank (as `generate --plan-bank`).
    #[arg(long, value_name = "FILE")]
    pub plan_bank: Option<std::path::PathBuf>,
}

impl PlanSteerArgs {
    /// The levers given, checked: only `--stage planner` reads them (`stages` are the stages
    /// evaluated), each within its range.
    pub fn steer(&self, stages: &[&str]) -> anyhow::Result<plandiff_train::PlanSteer> {
        use anyhow::bail;
        let given = [
            ("--plan-sphere", self.plan_sphere),
            ("--plan-rescale", self.plan_rescale.is_some()),
            ("--plan-noise-scale", self.plan_noise_scale.is_some()),
            ("--plan-snap", self.plan_snap.is_some()),
        ];
        if let Some((flag, _)) = given.iter().find(|(_, given)| *given) {
            if stages.iter().any(|s| *s != "planner") {
                bail!("{flag} steers the planner's sampled plans; give --stage planner, or leave it out");
            }
        }
        if self.plan_rescale.is_some_and(|r| !(0.0..=1.0).contains(&r)) {
            bail!("--plan-rescale must be a fraction from 0 to 1 (0: off)");
        }
        if self.plan_noise_scale.is_some_and(|r| !(0.1..=1.0).contains(&r)) {
            bail!("--plan-noise-scale must be from 0.1 to 1 (1: the schedule's own noise)");
        }
        if self.plan_snap.is_some_and(|r| !(0.0..=1.0).contains(&r)) {
            bail!("--plan-snap must be a fraction from 0 to 1 (0: off, 1: onto the nearest bank sentence)");
        }
        if self.plan_snap.is_some_and(|r| r > 0.0) && self.plan_bank.is_none() {
            bail!("--plan-snap needs a sentence bank: give --plan-bank DATA/embeddings/train-*.safetensors (`plandiff embed` writes it)");
        }
        Ok(plandiff_train::PlanSteer {
            sphere: self.plan_sphere,
            rescale: self.plan_rescale.unwrap_or(0.0),
            noise_scale: self.plan_noise_scale.unwrap_or(1.0),
            snap: self.plan_snap.unwrap_or(0.0),
            bank: self.plan_bank.clone(),
        })
    }
}
