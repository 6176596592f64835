//! Stage `planner` (docs/design.md, section 3.4): a denoiser over windows of `max_slots` sentence
//! latents, trained on the frozen sentence encoder of the bundle's autoencoder.
//!
//! - Latents: every sentence of the training documents is encoded once, up front. The
//!   normalizer is fitted on them (fresh run) and saved with the weights; the diffusion runs
//!   on normalized latents.
//! - Known slots: per window, none (the classifier-free-guidance dropout), a prefix
//!   (continuing a text) or a random subset (editing in the middle). The loss covers the
//!   unknown real slots only; windows shorter than `max_slots` mask the missing slots out of
//!   attention.
//! - The planner records the SHA-256 of the autoencoder weights it was trained on, so a
//!   retrained autoencoder cannot silently be paired with a stale planner.

use crate::config::{RunConfig, TrainConfig};
use crate::objectives::{PlannerConfig, PlannerObjective};
use crate::stages::{EvalRequest, Section, Stage, StageEval};
use crate::trainer::{
    batch_indices, fresh_section, global_seed, run_loop, seed_init, setup_run, step_rng, Feed, StageRunner, TrainArgs,
    TrainReport,
};
use crate::world::Shard;
use crate::{Result, TrainError};
use latents::{denoise_loss, fixed_loss, LatentSet, Trainee};
use plandiff_bundle::{
    load_autoencoder, open_split, plan_space_sha256, stage, Bundle, ModelConfig, Objective, PlannerModel, Provenance,
    StageConfigFile,
};
use plandiff_data::WindowSampler;
use plandiff_diffusion::NoiseSchedule;
use plandiff_layers::TransformerShape;
use plandiff_planner::Planner;
use serde::{Deserialize, Serialize};
use tch::nn;

mod eval;
mod latents;

pub use eval::{evaluate_planner, PlannerEval};

const KIND: &str = stage::PLANNER;
const ABOUT: &str =
    "diffusion over sentence latents, on the bundle's frozen autoencoder (train it into the same --out first)";

/// Stage `planner` of [`crate::registry::STAGES`].
pub const STAGE: Stage =
    Stage::new::<PlannerSection, PlannerConfig>(KIND, ABOUT, train_planner, evaluate, DESCRIBE).with_export(on_export);

/// The planner records the fingerprint of the plan space it reads: the exported one's.
fn on_export(config: &mut serde_json::Value, dst: &Bundle) -> Result<()> {
    if !dst.has_stage(stage::AUTOENCODER) {
        return Err(TrainError::Invalid("the planner needs its autoencoder, which the bundle lacks".into()));
    }
    let sha = plan_space_sha256(dst)?;
    if let Some(m) = config["model"].as_object_mut() {
        m.remove("autoencoder_sha256");
    }
    config["model"]["plan_space_sha256"] = serde_json::Value::String(sha);
    Ok(())
}

/// `[planner]`: the denoiser over sentence slots, trained on the frozen encoder's latents
/// (docs/design.md, section 3.4). The latent width comes from the bundle's autoencoder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlannerSection {
    pub model: DenoiserSection,
    /// The noise schedule, with diffusers' field names and meanings.
    pub diffusion: plandiff_diffusion::ScheduleConfig,
    pub objective: PlannerObjective,
    /// Defaults for `generate --mode hybrid` and `edit`, stored with the model.
    pub sampling: plandiff_planner::PlanSampling,
    /// The hybrid mode's other defaults (the decoder's plan guidance and fluency prior, the
    /// planner's steering); optional, the levers off when absent.
    #[serde(default)]
    pub hybrid: plandiff_bundle::HybridDefaults,
    /// `batch_size` counts sentence windows; `seq_len` is unused (windows are `max_slots`).
    pub train: TrainConfig,
}

impl PlannerSection {
    /// The model a fresh run builds, for latents of width `d_latent` from the autoencoder
    /// whose plan space has the fingerprint `plan_space_sha256`.
    fn model(&self, d_latent: i64, plan_space_sha256: String) -> Result<PlannerConfig> {
        self.objective.validate().map_err(|e| TrainError::Invalid(format!("config [planner.objective]: {e}")))?;
        let m = PlannerModel {
            denoiser: self.model.denoiser(d_latent),
            schedule: self.diffusion.clone(),
            objective: self.objective,
            sampling: self.sampling,
            plan_space_sha256,
            hybrid: self.hybrid,
        };
        m.validate().map_err(|e| TrainError::Invalid(format!("config [planner]: {e}")))?;
        Ok(m)
    }
}

impl Section for PlannerSection {
    fn check(&self, _config: &RunConfig, _vocab_size: i64) -> Result<()> {
        self.objective.validate().map_err(|e| TrainError::Invalid(format!("config [planner.objective]: {e}")))?;
        self.sampling.validate().map_err(|e| TrainError::Invalid(format!("config [planner.sampling]: {e}")))?;
        self.hybrid.validate().map_err(|e| TrainError::Invalid(format!("config [planner.hybrid]: {e}")))?;
        self.model
            .denoiser(crate::autoencoder::PLAN_WIDTH)
            .validate()
            .map_err(|e| TrainError::Invalid(format!("config [planner.model]: {e}")))?;
        NoiseSchedule::new(self.diffusion.clone())
            .map_err(|e| TrainError::Invalid(format!("config [planner.diffusion]: {e}")))?;
        Ok(())
    }
}

/// Denoiser architecture.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DenoiserSection {
    /// Sentence slots the planner sees at once (its window).
    pub max_slots: i64,
    #[serde(flatten)]
    pub shape: TransformerShape,
    pub self_condition: bool,
}

impl DenoiserSection {
    pub fn denoiser(&self, d_latent: i64) -> plandiff_planner::DenoiserConfig {
        plandiff_planner::DenoiserConfig {
            d_latent,
            max_slots: self.max_slots,
            shape: self.shape,
            self_condition: self.self_condition,
        }
    }
}

struct PlannerRunner {
    feed: Feed,
    planner: Planner,
    /// The config the planner was built from (its objective, and what the bundle records).
    model: PlannerConfig,
    train: LatentSet,
    valid: Option<LatentSet>,
}

impl StageRunner for PlannerRunner {
    type Model = PlannerConfig;
    const KIND: &'static str = KIND;

    fn micro_step(&mut self, step: u64, micro: usize, accum: usize) -> Result<f64> {
        // The whole global micro-batch's windows and draws (the same on every rank); this
        // rank computes its rows, so the run equals one process with the global batch.
        let global = self.feed.batch * self.feed.shard.world_size;
        tch::manual_seed(global_seed(self.feed.seed, step, micro));
        let windows: Vec<(usize, usize)> =
            batch_indices(&mut self.feed.sampler, Shard::SINGLE, step, micro, accum, global)
                .into_iter()
                .map(|i| self.train.windows[i])
                .collect();
        let mut rng = step_rng(self.feed.seed, step, micro);
        let part = self.feed.shard.local(self.feed.batch);
        let trainee = Trainee { planner: &self.planner, objective: &self.model.objective };
        let loss = denoise_loss(trainee, &self.train, &windows, part, &mut rng, self.feed.device, true);
        (&loss / accum as f64).backward();
        Ok(loss.double_value(&[]))
    }

    fn tokens_per_step(&self) -> u64 {
        // Sentence slots per step (the planner's "tokens").
        (self.feed.batch * self.planner.max_slots()) as u64
    }

    fn validate(&mut self) -> Option<(f64, serde_json::Map<String, serde_json::Value>)> {
        let set = self.valid.as_ref()?;
        Some((
            fixed_loss(
                Trainee { planner: &self.planner, objective: &self.model.objective },
                set,
                self.feed.batch * self.feed.shard.world_size,
                self.feed.eval_batches,
                self.feed.device,
            ),
            serde_json::Map::new(),
        ))
    }

    fn config_file(&self, tokenizer_hash: &str, provenance: Provenance) -> StageConfigFile<PlannerConfig> {
        StageConfigFile::new(KIND, self.model.clone(), tokenizer_hash, provenance)
    }
}

/// Runs (or resumes) stage `planner` into `--out`, which must hold a trained autoencoder.
pub fn train_planner(args: TrainArgs) -> Result<TrainReport> {
    let bundle = Bundle::new(&args.out);
    if !bundle.has_stage(stage::AUTOENCODER) {
        return Err(TrainError::Invalid(format!(
            "{} has no autoencoder; the planner learns the autoencoder's latents, so train it first: `plandiff train autoencoder --out {}`",
            args.out.display(),
            args.out.display()
        )));
    }
    let section = fresh_section::<PlannerSection>(&args, KIND)?;
    let setup = setup_run::<PlannerConfig>(&args, KIND, section.as_ref().map(|s| (s.train.clone(), None)))?;
    let ae = load_autoencoder(&bundle, args.device)?;
    let ae_sha = plan_space_sha256(&bundle)?;
    let model = match (&setup.resumed, section) {
        (Some(c), _) if c.model.plan_space_sha256 != ae_sha => {
            return Err(TrainError::Invalid(format!(
                "{}: the autoencoder's plan space changed since this planner run started; start a new planner run (remove {}/planner) instead of --resume",
                args.out.display(),
                args.out.display()
            )))
        }
        (Some(c), _) => c.model.clone(),
        (None, Some(s)) => s.model(ae.ae.d_latent(), ae_sha)?,
        (None, None) => return Err(TrainError::Invalid("--config is required for a new run".into())),
    };
    open_split(&args.data, "train", &ae.tokenizer)?;
    let train = LatentSet::frozen(&ae.space, &args.data, "train")?;
    let valid = match open_split(&args.data, "valid", &ae.tokenizer) {
        Ok(_) => Some(LatentSet::frozen(&ae.space, &args.data, "valid")?).filter(|v| !v.windows.is_empty()),
        Err(plandiff_bundle::BundleError::Data(_)) => None,
        Err(e) => return Err(e.into()),
    };
    let sampler = WindowSampler::over(train.windows.len(), setup.state.seed)?;
    seed_init(setup.state.seed);
    let vs = nn::VarStore::new(args.device);
    let mut planner = model.build(&vs.root()).map_err(|e| TrainError::Invalid(format!("planner config: {e}")))?;
    if setup.resumed.is_none() {
        planner.normalizer.fit(&train.latents);
    }
    let mut runner = PlannerRunner { planner, model, train, valid, feed: Feed::new(sampler, &args, &setup.state) };
    run_loop(&mut runner, setup, vs, &args)
}

/// `plandiff info`'s line for the stage's config.json (a [`crate::stages::render`] template).
const DESCRIBE: &str = "{parameters} parameters (d_model {model.denoiser.d_model}, {model.denoiser.n_layers} layers, {model.denoiser.max_slots} slots of d_latent {model.denoiser.d_latent}; {model.schedule.beta_schedule} schedule, predicts {model.schedule.prediction_type}, {model.sampling.sampler} {model.sampling.steps} steps by default), {provenance.steps} steps, val loss {provenance.val_loss:loss}";

/// `plandiff eval --stage planner`'s line (a [`crate::stages::render`] template over its result).
const SUMMARY: &str = "{split} split, {windows} windows: denoising loss {denoising_loss:.4}; second half of each window sampled from the first ({steps} steps): cosine to the true latents {cosine_sampled:.3} (random sentence {cosine_random:.3}, previous sentence {cosine_previous:.3}); contrastive accuracy {contrastive_accuracy:.3} (chance 0.5); norm ratio sampled / true {norm_ratio:.3}; sampled to previous sentence {cosine_sampled_previous:.3}; Fréchet distance {frechet:.2}, k-NN precision {knn_precision:.3} recall {knn_recall:.3}; round trip (decode, re-encode) sampled {round_trip_sampled:.3}, true {round_trip_true:.3}";

fn evaluate(req: &EvalRequest) -> Result<StageEval> {
    StageEval::nested(&evaluate_planner(req)?, req.split, SUMMARY)
}
