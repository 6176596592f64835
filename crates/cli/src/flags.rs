//! Flag groups that several commands share: token sampling (`generate`, `edit`, `ab`) and
//! distributed training (`train`); and the planner's steering as `eval --stage planner` reads
//! it (its flags are `plandiff_pipeline`'s, as `generate` declares them). A mode's own flags are declared by its settings in
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
    /// Soft no-repeat n-grams: a token that would repeat an n-gram of --ngram-size tokens
    /// already in the text loses this from its logit (0: off; inf: never repeat one). Default:
    /// off, except hybrid, which takes its bundle's (`ngram` of the planner's hybrid defaults)
    #[arg(long, allow_negative_numbers = true)]
    pub ngram_penalty: Option<f64>,
    /// With --ngram-penalty: the n-gram's length in tokens, 1 to 16 (default 2)
    #[arg(long, requires = "ngram_penalty")]
    pub ngram_size: Option<usize>,
    /// With --ngram-penalty: how many times an n-gram may occur before repeating it costs the
    /// penalty, 0 to 64 (default 0: the first repeat pays)
    #[arg(long, requires = "ngram_penalty")]
    pub ngram_allow: Option<usize>,
    /// With --ngram-penalty: the penalty grows with the n-gram's occurrences (B for each one
    /// past --ngram-allow), so a phrase template pays more each time it comes back
    #[arg(long, requires = "ngram_penalty")]
    pub ngram_grow: bool,
}

impl SamplingArgs {
    /// The checked sampling config (one-line error naming the bad flag).
    pub fn config(&self) -> anyhow::Result<plandiff_decoder::SamplingConfig> {
        let c = plandiff_decoder::SamplingConfig {
            temperature: self.temperature,
            top_k: Some(self.top_k),
            top_p: Some(self.top_p),
            repetition_penalty: self.repetition_penalty,
            ngram: self.ngram_penalty.map(|penalty| plandiff_decoder::NgramPenalty {
                size: self.ngram_size.unwrap_or(2),
                penalty,
                allow: self.ngram_allow.unwrap_or(0),
                grow: self.ngram_grow,
            }),
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

/// `eval --stage planner`'s plans sampled with the planner's steering (as `generate --mode
/// hybrid` reads it): only that stage takes them.
pub fn plan_steer(
    steer: &plandiff_pipeline::hybrid::PlanSteering,
    stages: &[&str],
) -> anyhow::Result<plandiff_train::PlanSteer> {
    if let Some(flag) = steer.given() {
        if stages.iter().any(|s| *s != "planner") {
            anyhow::bail!("{flag} steers the planner's sampled plans; give --stage planner, or leave it out");
        }
    }
    steer.check()?;
    Ok(plandiff_train::PlanSteer {
        sphere: steer.plan_sphere.unwrap_or(false),
        rescale: steer.plan_rescale.unwrap_or(0.0),
        noise_scale: steer.plan_noise_scale.unwrap_or(1.0),
        epsilon_scaling: steer.plan_epsilon_scaling.unwrap_or(1.0),
        norm: steer.plan_norm.unwrap_or(0.0),
        snap: steer.plan_snap.unwrap_or(0.0),
        clip: steer.plan_clip.unwrap_or(0.0),
        bank: steer.plan_bank.clone(),
    })
}
