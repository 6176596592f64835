//! Stage `planner`'s config file and loader (docs/design.md, section 3.4): a denoiser over
//! windows of `max_slots` sentence latents, its latent normalizer and noise schedule; the
//! model and its sampling are `plandiff_planner::Planner`. It records the fingerprint of the
//! plan space it was trained in, so an autoencoder of another space cannot silently be paired
//! with it. The training objective's settings are `plandiff-train`'s.

use crate::format::{ModelConfig, Objective, StageConfigFile};
use crate::store::Bundle;
use crate::weights::load_weights;
use crate::{stage, BundleError, ModelConfigError, Result};
use plandiff_diffusion::{NoiseSchedule, ScheduleConfig};
use plandiff_planner::{DenoiserConfig, PlanSampling, Planner};
use serde::{Deserialize, Serialize};
use tch::{nn, Device};

/// The `model` section of `BUNDLE/planner/config.json`; `O` the objective's settings
/// (`plandiff_train::objectives::PlannerObjective` when training, JSON when loading to sample).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, bound(deserialize = "O: serde::de::DeserializeOwned"))]
pub struct PlannerModel<O = serde_json::Value> {
    pub denoiser: DenoiserConfig,
    pub schedule: ScheduleConfig,
    pub objective: O,
    pub sampling: PlanSampling,
    /// The plan space the planner learned ([`plan_space_sha256`]); bundles from before
    /// frozen plan spaces call it `autoencoder_sha256`.
    #[serde(alias = "autoencoder_sha256")]
    pub plan_space_sha256: String,
    /// The hybrid mode's other defaults (issue 39's levers); absent: none of them.
    #[serde(default, skip_serializing_if = "HybridDefaults::is_neutral")]
    pub hybrid: HybridDefaults,
}

/// The defaults of `generate --mode hybrid` (and `ab`'s hybrid arms) beyond the planner's
/// sampling, each a flag of the same name: the decoder's plan guidance and fluency prior, and
/// the planner's steering. Stored with the planner (`[planner.hybrid]` of a training config);
/// the neutral values are the levers off.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HybridDefaults {
    /// `--plan-guidance`: 1, the plan alone.
    pub plan_guidance: f64,
    /// `--ar-prior`: 0, the plan decoder alone.
    pub ar_prior: f64,
    /// `--drafts`: 1.
    pub drafts: usize,
    /// `--plan-sphere`.
    pub plan_sphere: bool,
    /// `--plan-rescale`: 0, off.
    pub plan_rescale: f64,
    /// `--plan-noise-scale`: 1.
    pub plan_noise_scale: f64,
    /// `--plan-epsilon-scaling`: 1, off.
    pub plan_epsilon_scaling: f64,
    /// `--plan-norm`: 0, off.
    pub plan_norm: f64,
    /// `--ngram-penalty`, `--ngram-size`, `--ngram-allow` and `--ngram-grow` of hybrid's token
    /// sampling: none, off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ngram: Option<plandiff_decoder::NgramPenalty>,
    /// With an outline (`--outline`, `ab`'s outline arm): `--plan-guidance`, `--ar-prior` and
    /// optionally `--drafts` defaults of their own, as writing to an outline asks the decoder
    /// to say what each line says, which the fluency levers trade for fluency. Absent: the
    /// ones above.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outline: Option<OutlineDefaults>,
}

/// [`HybridDefaults::outline`]: the decoder's levers when it writes to an outline.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutlineDefaults {
    pub plan_guidance: f64,
    pub ar_prior: f64,
    /// `--drafts` with an outline; absent, [`HybridDefaults::drafts`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drafts: Option<usize>,
}

impl Default for HybridDefaults {
    fn default() -> Self {
        Self {
            plan_guidance: 1.0,
            ar_prior: 0.0,
            drafts: 1,
            plan_sphere: false,
            plan_rescale: 0.0,
            plan_noise_scale: 1.0,
            plan_epsilon_scaling: 1.0,
            plan_norm: 0.0,
            ngram: None,
            outline: None,
        }
    }
}

impl HybridDefaults {
    pub fn is_neutral(&self) -> bool {
        *self == Self::default()
    }

    /// The flags' ranges.
    pub fn validate(&self) -> std::result::Result<(), String> {
        let within = |x: f64, lo: f64, hi: f64| (lo..=hi).contains(&x);
        if !within(self.plan_guidance, 0.0, 10.0)
            || !within(self.ar_prior, 0.0, 1.0)
            || !within(self.plan_rescale, 0.0, 1.0)
            || !within(self.plan_noise_scale, 0.1, 1.0)
            || !within(self.plan_epsilon_scaling, 0.5, 2.0)
            || !within(self.plan_norm, 0.0, 1.0)
            || !(1..=8).contains(&self.drafts)
            || self.outline.is_some_and(|o| {
                !within(o.plan_guidance, 0.0, 10.0)
                    || !within(o.ar_prior, 0.0, 1.0)
                    || o.drafts.is_some_and(|n| !(1..=8).contains(&n))
            })
        {
            return Err("hybrid defaults need plan_guidance in [0, 10], ar_prior, plan_rescale and plan_norm in [0, 1], plan_noise_scale in [0.1, 1], plan_epsilon_scaling in [0.5, 2], drafts in 1..=8 (and the outline's plan_guidance, ar_prior and drafts in the same ranges)".into());
        }
        if let Some(n) = &self.ngram {
            n.validate().map_err(|e| format!("hybrid defaults' ngram: {e}"))?;
        }
        Ok(())
    }
}

impl<O: Objective> PlannerModel<O> {
    /// The [`Planner`] this config describes, under `p` (weights not loaded).
    pub fn build(&self, p: &nn::Path) -> std::result::Result<Planner, ModelConfigError> {
        self.validate()?;
        Ok(Planner::new(p, &self.denoiser, self.schedule.clone(), self.sampling)?)
    }
}

impl<O: Objective> ModelConfig for PlannerModel<O> {
    fn validate(&self) -> std::result::Result<(), ModelConfigError> {
        self.objective.validate().map_err(|e| ModelConfigError::Rule(format!("planner objective: {e}")))?;
        self.hybrid.validate().map_err(ModelConfigError::Rule)?;
        self.denoiser.validate()?;
        self.sampling.validate()?;
        NoiseSchedule::new(self.schedule.clone())?;
        Ok(())
    }

    fn min_parameters(&self) -> u128 {
        let d = &self.denoiser;
        crate::format::table(d.max_slots, d.shape.d_model).saturating_add(crate::format::blocks_min_parameters(
            d.shape.n_layers,
            d.shape.d_model,
            d.shape.d_ff,
        ))
    }
}

/// A loaded `BUNDLE/planner`.
pub struct LoadedPlanner {
    pub planner: Planner,
    pub vs: nn::VarStore,
    pub config: StageConfigFile<PlannerModel>,
}

/// The fingerprint of the plan space of `bundle`'s autoencoder, which a planner records: the
/// frozen encoder's space (its sentence embeddings normalised per dimension) by the SHA-256 of
/// its record (encoder name, weights and tokenizer hashes, mean and std), so a decoder
/// retrained in the same space keeps its planner.
pub fn plan_space_sha256(bundle: &Bundle) -> Result<String> {
    let cfg = bundle.read_config(stage::AUTOENCODER)?;
    let (_, space) = crate::autoencoder::checked_config(&cfg, bundle.root())?;
    use sha2::{Digest, Sha256};
    let bytes = serde_json::to_vec(&space).map_err(|e| BundleError::file(bundle.root(), e.to_string()))?;
    let digest = Sha256::digest(&bytes);
    Ok(format!("space:{}", digest.iter().map(|b| format!("{b:02x}")).collect::<String>()))
}

/// Loads `BUNDLE/planner`, checking that it was trained in the plan space of the bundle's
/// autoencoder.
pub fn load_planner(bundle: &Bundle, device: Device) -> Result<LoadedPlanner> {
    let config = bundle.read_config_as::<PlannerModel>(stage::PLANNER)?;
    bundle.check_tokenizer(&bundle.load_tokenizer()?, stage::PLANNER, &config.tokenizer_hash, None)?;
    if config.model.plan_space_sha256 != plan_space_sha256(bundle)? {
        return Err(BundleError::file(
            bundle.root(),
            "the planner was trained in another plan space than this bundle's autoencoder; retrain it with `plandiff train planner`",
        ));
    }
    let path = bundle.stage_dir(stage::PLANNER).join("config.json");
    crate::weights::check_fits(&bundle.weights_path(stage::PLANNER), config.model.min_parameters())?;
    let mut vs = nn::VarStore::new(device);
    let planner = config.model.build(&vs.root()).map_err(|source| BundleError::Model { path, source })?;
    load_weights(&mut vs, &bundle.weights_path(stage::PLANNER))?;
    Ok(LoadedPlanner { planner, vs, config })
}
