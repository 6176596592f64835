//! Mode `hybrid`'s settings: the planner's sampling and the decoder's levers, each a flag
//! (`None` keeps the stored default), checked where they are read.

use crate::flags::GaussianFlags;
use crate::mode::{Checked, ModeSettings};
use crate::{PipelineError, Result};
use plandiff_planner::PlanSampling;

/// The planner's sampling flags: read by `generate --mode hybrid` and `ab` (in
/// [`HybridSettings`]) and by `edit --mode hybrid`.
#[derive(clap::Args, Debug, Clone, Default, PartialEq)]
pub struct PlanFlags {
    #[command(flatten)]
    pub sampling: GaussianFlags,
    /// Classifier-free guidance weight on the known sentences (1: none).
    #[arg(long)]
    pub guidance: Option<f64>,
}

impl PlanFlags {
    /// The planner's stored sampling defaults with these overrides, checked.
    pub fn apply(&self, defaults: PlanSampling) -> Result<PlanSampling> {
        self.sampling.apply(defaults, self.guidance)
    }

    /// The flags given, by name (for the paths that sample no plan).
    pub fn given(&self) -> Option<&'static str> {
        [
            ("--steps", self.sampling.steps.steps.is_some()),
            ("--sampler", self.sampling.sampler.is_some()),
            ("--eta", self.sampling.eta.is_some()),
            ("--guidance", self.guidance.is_some()),
        ]
        .into_iter()
        .find_map(|(flag, given)| given.then_some(flag))
    }
}

/// The planner's steering (issue 39's planner-side levers): read by `generate --mode hybrid`
/// and `ab` (in [`HybridSettings`]) and by `eval --stage planner`, which samples plans with them.
#[derive(clap::Args, Debug, Clone, Default, PartialEq)]
pub struct PlanSteering {
    /// Keep the planner's predicted latents on the plan-space encoder's unit sphere
    /// (the encoder's sentences have norm 1): at every denoising step the predicted x0 is
    /// denormalised, L2-normalised and normalised again, as LD4LG and STAR-LDM do, and the
    /// sampled latents once more at the end (a lever of issue 39: sampled plans fall short of
    /// real sentences' norm).
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub plan_sphere: Option<bool>,
    /// The planner's guidance rescale, 0 to 1 (Lin et al. 2024; large_concept_model
    /// uses 0.7): the guided x0 is rescaled toward the conditional one's spread (default 0: off).
    #[arg(long)]
    pub plan_rescale: Option<f64>,
    /// The scale of the planner's initial noise, 0.1 to 1 (large_concept_model's
    /// initial_noise_scale, about 0.6; default 1).
    #[arg(long)]
    pub plan_noise_scale: Option<f64>,
    /// Epsilon scaling of the planner's steps, 0.5 to 2 (Ning et al. 2024;
    /// large_concept_model's epsilon_scaling): each step's noise estimate is divided by this,
    /// its x0 estimate kept, against the exposure bias of sampling (default 1: off).
    #[arg(long, value_name = "LAMBDA")]
    pub plan_epsilon_scaling: Option<f64>,
    /// Norm matching, 0 to 1: at every denoising step the planner's predicted x0 (and the
    /// sampled latents at the end) is moved this far, in log norm, to the norm of real
    /// sentences in the plan space, its direction kept (1: onto it; default 0: off). An
    /// x0-predicting denoiser regresses toward the mean sentence; its plans fall short of that norm.
    #[arg(long, value_name = "W")]
    pub plan_norm: Option<f64>,
    /// Pull the planner's predicted x0 at every denoising step, and the sampled latents
    /// at the end, this fraction (0 to 1) of the way to the nearest real sentence's latent in
    /// the sentence bank `--plan-bank` (Diffusion-LM's rounding, lifted to sentences; default 0:
    /// off).
    #[arg(long)]
    pub plan_snap: Option<f64>,
    /// Clamp the planner's predicted x0 at every denoising step, and the sampled latents at
    /// the end, per dimension to the `--plan-bank` sentences' Q and 1 - Q quantiles, Q from 0
    /// to 0.5 (large_concept_model's normaliser clip_proba; default 0: off).
    #[arg(long, value_name = "Q")]
    pub plan_clip: Option<f64>,
    /// With --plan-snap or --plan-clip: the sentence bank, a safetensors file of raw sentence
    /// embeddings of the plan space's encoder (`embeddings`, N x D), such as the embedding
    /// cache `plandiff embed` writes (DATA/embeddings/train-*.safetensors).
    #[arg(long, value_name = "FILE")]
    pub plan_bank: Option<std::path::PathBuf>,
}

impl PlanSteering {
    /// The flags given, by name.
    pub fn given(&self) -> Option<&'static str> {
        [
            ("--plan-sphere", self.plan_sphere.is_some()),
            ("--plan-rescale", self.plan_rescale.is_some()),
            ("--plan-noise-scale", self.plan_noise_scale.is_some()),
            ("--plan-epsilon-scaling", self.plan_epsilon_scaling.is_some()),
            ("--plan-norm", self.plan_norm.is_some()),
            ("--plan-snap", self.plan_snap.is_some()),
            ("--plan-clip", self.plan_clip.is_some()),
        ]
        .into_iter()
        .find_map(|(flag, given)| given.then_some(flag))
    }

    /// Whether a lever that reads the sentence bank is on (`--plan-snap`, `--plan-clip`).
    pub fn bank_levers(&self) -> bool {
        self.plan_snap.is_some_and(|w| w > 0.0) || self.plan_clip.is_some_and(|q| q > 0.0)
    }

    /// Their ranges, and `--plan-bank` exactly with `--plan-snap` or `--plan-clip`.
    pub fn check(&self) -> Result<()> {
        let bad = |s: &str| Err(PipelineError::Invalid(s.to_string()));
        if self.plan_rescale.is_some_and(|w| !(0.0..=1.0).contains(&w)) {
            return bad("--plan-rescale must be a fraction from 0 to 1 (0: off)");
        }
        if self.plan_noise_scale.is_some_and(|w| !(0.1..=1.0).contains(&w)) {
            return bad("--plan-noise-scale must be from 0.1 to 1 (1: the schedule's own noise)");
        }
        if self.plan_epsilon_scaling.is_some_and(|w| !(0.5..=2.0).contains(&w)) {
            return bad("--plan-epsilon-scaling must be from 0.5 to 2 (1: off)");
        }
        if self.plan_norm.is_some_and(|w| !(0.0..=1.0).contains(&w)) {
            return bad("--plan-norm must be a fraction from 0 to 1 (0: off, 1: onto real sentences' norm)");
        }
        if self.plan_snap.is_some_and(|w| !(0.0..=1.0).contains(&w)) {
            return bad("--plan-snap must be a fraction from 0 to 1 (0: off, 1: onto the nearest bank sentence)");
        }
        if self.plan_clip.is_some_and(|q| !(0.0..0.5).contains(&q)) {
            return bad(
                "--plan-clip must be a quantile from 0 to below 0.5 (0: off; large_concept_model's clip_proba)",
            );
        }
        if self.plan_bank.is_some() && self.plan_snap.is_none() && self.plan_clip.is_none() {
            return bad("--plan-bank is read with --plan-snap or --plan-clip only; give one, or leave --plan-bank out");
        }
        if self.bank_levers() && self.plan_bank.is_none() {
            let flag = if self.plan_snap.is_some_and(|w| w > 0.0) { "--plan-snap" } else { "--plan-clip" };
            return bad(&format!("{flag} needs a sentence bank: give --plan-bank DATA/embeddings/train-*.safetensors (`plandiff embed` writes it)"));
        }
        Ok(())
    }
}

#[derive(clap::Args, Debug, Clone, Default, PartialEq)]
pub struct HybridSettings {
    #[command(flatten)]
    pub plan: PlanFlags,
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
    /// Hybrid: a fluency prior, 0 to 1: tokens are drawn from the product of the plan
    /// decoder's distribution and the bundle's plain `ar` model's, weighted (1 - W) and W in
    /// log space (default 0: the decoder alone; each token then runs both models). The `ar`
    /// model reads the same text and sentence window as the decoder.
    #[arg(long)]
    pub ar_prior: Option<f64>,
    /// Hybrid: verified drafts, 1 to 8: each sentence is written this many times in one batch,
    /// re-encoded, and the draft whose latent is closest (cosine) to its plan slot, less two
    /// per invented word (a word of no training story, from the bundle's words.txt), is kept;
    /// the next sentence continues from it (default 1: one draft).
    #[arg(long)]
    pub drafts: Option<usize>,
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
    #[command(flatten)]
    pub steer: PlanSteering,
    /// Hybrid: after the text, show each planned sentence slot as what the decoder writes
    /// from that latent alone, with its cosine to the sentence actually written.
    #[arg(long)]
    pub show_plan: bool,
    /// Hybrid: write to an outline, a file (`-`: standard input) of one line per planned
    /// sentence after the prompt, in order: a line of text (a sentence or a short phrase) is
    /// encoded into the plan space and held fixed as that sentence's plan slot; an empty line
    /// or `_` leaves the slot to the planner, which fills the free slots around the fixed
    /// ones. The text has as many new sentences as the outline has lines, or --sentences if
    /// that is more (the plan goes on past the outline); --prompt may be left out.
    #[arg(long)]
    pub outline: Option<std::path::PathBuf>,
    /// Hybrid, with --outline: hold the outline's slots fixed for this fraction of the
    /// planner's denoising steps (0 to 1), after which the planner refines them in the context
    /// of the text and the other slots (SDEdit-style); 1 keeps each line's own latent.
    #[arg(long)]
    pub outline_hold: Option<f64>,
    /// Hybrid, with --outline: a line that does not end a sentence (no `.`, `!` or `?` at its
    /// end: a phrase) is first completed to one sentence by the decoder with no plan (greedy),
    /// and the completed sentence is encoded as the slot's plan (a phrase's embedding is a
    /// fragment's, and the decoder writes fragments from it).
    #[arg(long)]
    pub outline_complete: bool,
}

impl HybridSettings {
    /// These settings with every lever left unset taken from the bundle's `defaults`; with an
    /// outline (`given`: the request writes to one), the plan guidance, the fluency prior and
    /// the drafts from the bundle's outline defaults when it has them.
    pub fn or_defaults(&self, d: &plandiff_bundle::HybridDefaults, given: bool) -> Self {
        let (guidance, prior, drafts) = match d.outline.filter(|_| given) {
            Some(o) => (o.plan_guidance, o.ar_prior, o.drafts.unwrap_or(d.drafts)),
            None => (d.plan_guidance, d.ar_prior, d.drafts),
        };
        Self {
            plan_guidance: self.plan_guidance.or(Some(guidance)),
            ar_prior: self.ar_prior.or(Some(prior)),
            drafts: self.drafts.or(Some(drafts)),
            steer: PlanSteering {
                plan_sphere: self.steer.plan_sphere.or(Some(d.plan_sphere)),
                plan_rescale: self.steer.plan_rescale.or(Some(d.plan_rescale)),
                plan_noise_scale: self.steer.plan_noise_scale.or(Some(d.plan_noise_scale)),
                plan_epsilon_scaling: self.steer.plan_epsilon_scaling.or(Some(d.plan_epsilon_scaling)),
                plan_norm: self.steer.plan_norm.or(Some(d.plan_norm)),
                ..self.steer.clone()
            },
            ..self.clone()
        }
    }

    pub fn plan_sphere(&self) -> bool {
        self.steer.plan_sphere.unwrap_or(false)
    }

    /// The planner's stored sampling defaults with these overrides, checked.
    pub fn plan_sampling(&self, defaults: PlanSampling) -> Result<PlanSampling> {
        self.plan.apply(defaults)
    }

    pub fn candidates(&self) -> usize {
        self.plan_candidates.unwrap_or(1)
    }

    pub fn plan_guidance(&self) -> f64 {
        self.plan_guidance.unwrap_or(1.0)
    }

    pub fn plan_rescale(&self) -> f64 {
        self.steer.plan_rescale.unwrap_or(0.0)
    }

    pub fn plan_snap(&self) -> f64 {
        self.steer.plan_snap.unwrap_or(0.0)
    }

    pub fn plan_clip(&self) -> f64 {
        self.steer.plan_clip.unwrap_or(0.0)
    }

    pub fn plan_noise_scale(&self) -> f64 {
        self.steer.plan_noise_scale.unwrap_or(1.0)
    }

    pub fn plan_epsilon_scaling(&self) -> f64 {
        self.steer.plan_epsilon_scaling.unwrap_or(1.0)
    }

    pub fn plan_norm(&self) -> f64 {
        self.steer.plan_norm.unwrap_or(0.0)
    }

    pub fn drafts(&self) -> usize {
        self.drafts.unwrap_or(1)
    }

    pub fn ar_prior(&self) -> f64 {
        self.ar_prior.unwrap_or(0.0)
    }

    pub fn stride(&self) -> usize {
        self.window_stride.unwrap_or(1)
    }

    pub fn pin(&self) -> usize {
        self.window_pin.unwrap_or(0)
    }

    /// `--outline-hold`, 1 when unset.
    pub fn hold(&self) -> f64 {
        self.outline_hold.unwrap_or(1.0)
    }
}

impl Checked for HybridSettings {
    fn check(&self) -> Result<()> {
        let bad = |s: &str| Err(PipelineError::Invalid(s.to_string()));
        if self.plan_candidates.is_some_and(|k| !(1..=16).contains(&k)) {
            return bad("--plan-candidates must be in 1..=16");
        }
        if self.plan_guidance.is_some_and(|w| !(0.0..=10.0).contains(&w)) {
            return bad("--plan-guidance must be a number from 0 to 10 (1: the plan alone)");
        }
        self.steer.check()?;
        if self.drafts.is_some_and(|n| !(1..=8).contains(&n)) {
            return bad("--drafts must be in 1..=8 (1: one draft of each sentence)");
        }
        if self.ar_prior.is_some_and(|w| !(0.0..=1.0).contains(&w)) {
            return bad("--ar-prior must be a weight from 0 to 1 (0: the plan decoder alone, 1: the ar model alone)");
        }
        if self.window_stride.is_some_and(|k| !(1..=64).contains(&k)) {
            return bad("--window-stride must be in 1..=64 (sentences; clamped to the decoder's slots - 1)");
        }
        if self.outline_hold.is_some_and(|h| !(0.0..=1.0).contains(&h)) {
            return bad(
                "--outline-hold must be a fraction of the planner's steps from 0 to 1 (1: the outline's own latents)",
            );
        }
        if self.window_pin.is_some_and(|k| k > 64) {
            return bad("--window-pin must be in 0..=64 (sentences kept in view; clamped to the decoder's free slots)");
        }
        self.plan.sampling.check(self.plan.guidance)
    }
}

impl ModeSettings for HybridSettings {
    fn set_steps(&mut self, steps: usize) {
        self.plan.sampling.steps.steps = Some(steps);
    }
    fn prompt_optional(&self) -> bool {
        self.outline.is_some()
    }
    fn check_without_outline(&self) -> Result<()> {
        let idle = [("--outline-hold", self.outline_hold.is_some()), ("--outline-complete", self.outline_complete)];
        match idle.iter().find(|(_, given)| *given).filter(|_| self.outline.is_none()) {
            Some((flag, _)) => Err(PipelineError::Invalid(format!(
                "{flag} acts on an outline's lines; give --outline FILE (or outline arms in an A/B), or leave it out"
            ))),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::HybridSettings;
    use plandiff_bundle::HybridDefaults;

    /// A bundle's defaults fill the levers a request leaves unset, and only those; with an
    /// outline, its own plan guidance and prior.
    #[test]
    fn bundle_defaults_fill_only_unset_levers() {
        let d = HybridDefaults {
            plan_guidance: 0.5,
            ar_prior: 0.4,
            drafts: 2,
            plan_sphere: true,
            plan_rescale: 0.7,
            plan_noise_scale: 0.6,
            plan_epsilon_scaling: 1.05,
            plan_norm: 0.5,
            ngram: None,
            outline: Some(plandiff_bundle::OutlineDefaults { plan_guidance: 1.0, ar_prior: 0.0, drafts: None }),
        };
        let given = HybridSettings {
            ar_prior: Some(0.0),
            steer: super::PlanSteering { plan_sphere: Some(false), ..Default::default() },
            ..HybridSettings::default()
        };
        let r = given.or_defaults(&d, false);
        assert_eq!((r.ar_prior(), r.plan_sphere()), (0.0, false), "given flags win");
        assert_eq!((r.plan_guidance(), r.plan_rescale(), r.plan_noise_scale(), r.drafts()), (0.5, 0.7, 0.6, 2));
        assert_eq!((r.plan_epsilon_scaling(), r.plan_norm()), (1.05, 0.5));
        let o = HybridSettings::default().or_defaults(&d, true);
        assert_eq!((o.plan_guidance(), o.ar_prior(), o.drafts()), (1.0, 0.0, 2), "the outline's own, its drafts unset");
        let four = HybridDefaults {
            outline: Some(plandiff_bundle::OutlineDefaults { plan_guidance: 2.5, ar_prior: 0.0, drafts: Some(4) }),
            ..d
        };
        assert_eq!(HybridSettings::default().or_defaults(&four, true).drafts(), 4, "a given plan's drafts");
        assert_eq!(HybridSettings::default().or_defaults(&four, false).drafts(), 2, "a sampled plan's drafts");
        let o = HybridSettings { plan_guidance: Some(0.3), ..HybridSettings::default() }.or_defaults(&d, true);
        assert_eq!((o.plan_guidance(), o.ar_prior()), (0.3, 0.0), "a flag still wins");
        let plain = HybridDefaults { outline: None, ..d };
        assert_eq!(HybridSettings::default().or_defaults(&plain, true).ar_prior(), 0.4);
        let none = HybridSettings::default().or_defaults(&HybridDefaults::default(), false);
        assert_eq!((none.plan_guidance(), none.ar_prior(), none.plan_sphere()), (1.0, 0.0, false));
    }
}
