//! The generation flag groups that several commands share (`generate`, `edit`, `ab`): token
//! sampling, the planner and hybrid levers, masked diffusion.

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

/// Planner sampling flags (defaults: the planner's config.json).
#[derive(Args, Debug, Clone)]
pub struct PlanArgs {
    /// Denoising steps: the planner's (hybrid, edit), the text diffusion's (diffusion), or
    /// masked diffusion's (masked; default one per position with edit --mode masked).
    #[arg(long)]
    pub steps: Option<usize>,
    /// Planner sampler: ddim or ddpm.
    #[arg(long)]
    pub sampler: Option<String>,
    /// DDIM eta: 0 deterministic given the seed's noise, 1 DDPM-like.
    #[arg(long)]
    pub eta: Option<f64>,
    /// Classifier-free guidance weight on the known sentences (1: none).
    #[arg(long)]
    pub guidance: Option<f64>,
    /// Hybrid: sample this many plans for each window and keep, per sample, the one whose
    /// new latents are closest (mean cosine) to the latents of the text so far (1 to 16;
    /// default 1, a single plan).
    #[arg(long)]
    pub plan_candidates: Option<usize>,
    /// Hybrid: the decoder's classifier-free guidance on the plan, 0 to 10: tokens are drawn
    /// from null + W (plan - null) of its logits under the plan and under its null plan
    /// (default 1, the plan alone; above 1 the text follows the plan more closely, and each
    /// step decodes twice the rows).
    #[arg(long)]
    pub plan_guidance: Option<f64>,
    /// Hybrid: once the text fills the decoder's sentence slots, slide its window by this many
    /// sentences at a time (1 to slots - 1; default 1: every sentence is written with all the
    /// slots' text before it in view; larger: fewer re-reads of the window, faster).
    #[arg(long)]
    pub window_stride: Option<usize>,
    /// Hybrid: keep the text's first N sentences (2: a two-sentence prompt) in the decoder's
    /// view once its window slides past them, in the slots of the window's oldest sentences
    /// (0 to 64, at most the slots the window's new sentences leave; default 0).
    #[arg(long)]
    pub window_pin: Option<usize>,
}

/// Mode masked's sampling flags (defaults: the masked model's config.json).
#[derive(Args, Debug, Clone)]
pub struct MaskedArgs {
    /// Masked: positions per semi-autoregressive block (LLaDA); steps are divided equally
    /// among the blocks.
    #[arg(long)]
    pub block_length: Option<usize>,
    /// Masked: which positions a step commits: low_confidence (the most probable tokens),
    /// random, margin (largest gap between the two likeliest tokens) or entropy (lowest).
    #[arg(long)]
    pub remasking: Option<String>,
    /// Masked: start from all masks (`mask`) or from uniform random tokens (`random`), whose
    /// tokens less likely than the model's own are remasked and replaced.
    #[arg(long)]
    pub start: Option<String>,
}
