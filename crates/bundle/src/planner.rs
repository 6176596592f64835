//! Stage `planner`'s model (design section 3.4): a denoiser over windows of `max_slots`
//! sentence latents, its latent normalizer and noise schedule. It records the SHA-256 of the
//! autoencoder weights it was trained on, so a retrained autoencoder cannot silently be
//! paired with a stale planner. The training objective lives in `plandiff-train`.

use crate::format::{ModelConfig, StageConfigFile};
use crate::store::Bundle;
use crate::weights::{file_sha256, load_weights};
use crate::{stage, BundleError, ModelConfigError, Result};
use plandiff_diffusion::{NoiseSchedule, ScheduleConfig};
use plandiff_planner::{
    sample_plan_held, Denoiser, DenoiserConfig, LatentNormalizer, PlanSampling, SamplingDefaults, SoftHold,
};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use tch::{nn, Device, Tensor};

/// Which slots are known while training, and the guidance / self-conditioning dropout.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlannerObjective {
    /// Share of windows trained with no known slot (classifier-free guidance's
    /// unconditional model).
    pub cfg_dropout: f64,
    /// Of the other windows, the share whose known slots are a prefix (continuing a text);
    /// the rest get a random subset (editing a sentence in the middle).
    pub prefix_prob: f64,
    /// Share of steps that first predict x0 without gradient and feed it back
    /// (self-conditioning; needs `model.self_condition`).
    pub self_condition_prob: f64,
}

impl PlannerObjective {
    pub fn validate(&self) -> Result<()> {
        let p = |x: f64| (0.0..=1.0).contains(&x);
        if !p(self.cfg_dropout) || !p(self.prefix_prob) || !p(self.self_condition_prob) {
            return Err(BundleError::Setting {
                section: "planner.objective",
                problem: "probabilities must be in [0, 1]".into(),
            });
        }
        Ok(())
    }
}

/// The `model` section of `BUNDLE/planner/config.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlannerModel {
    pub denoiser: DenoiserConfig,
    pub schedule: ScheduleConfig,
    pub objective: PlannerObjective,
    pub sampling: SamplingDefaults,
    /// The plan space the planner learned ([`plan_space_sha256`]); bundles from before
    /// frozen plan spaces call it `autoencoder_sha256`.
    #[serde(alias = "autoencoder_sha256")]
    pub plan_space_sha256: String,
}

impl ModelConfig for PlannerModel {
    fn validate(&self) -> std::result::Result<(), ModelConfigError> {
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

/// A loaded (or training) planner: denoiser, normalizer and schedule.
pub struct Planner {
    pub denoiser: Denoiser,
    pub normalizer: LatentNormalizer,
    pub schedule: NoiseSchedule,
    pub model: PlannerModel,
}

impl Planner {
    pub fn new(p: &nn::Path, model: &PlannerModel) -> std::result::Result<Self, ModelConfigError> {
        model.validate()?;
        Ok(Self {
            denoiser: Denoiser::new(p / "denoiser", &model.denoiser),
            normalizer: LatentNormalizer::new(p / "normalizer", model.denoiser.d_latent),
            schedule: NoiseSchedule::new(model.schedule.clone())?,
            model: model.clone(),
        })
    }

    pub fn max_slots(&self) -> usize {
        self.model.denoiser.max_slots as usize
    }

    /// Samples latents for the unknown slots of `known` `(B, S, d)` (encoder space; `mask`
    /// `(B, S)` is `true` on known slots), with `noise` supplying every Gaussian draw.
    /// Returns encoder-space latents `(B, S, d)` whose known slots equal `known`.
    pub fn sample(
        &self,
        known: &Tensor,
        mask: &Tensor,
        opts: PlanSampling,
        noise: impl FnMut(&[i64]) -> Tensor,
    ) -> std::result::Result<Tensor, ModelConfigError> {
        self.sample_held(known, mask, None, opts, noise)
    }

    /// [`Planner::sample`] with the known slots of `soft` held for only part of the steps
    /// ([`SoftHold`]): they come back refined, not as given.
    pub fn sample_held(
        &self,
        known: &Tensor,
        mask: &Tensor,
        soft: Option<SoftHold>,
        opts: PlanSampling,
        noise: impl FnMut(&[i64]) -> Tensor,
    ) -> std::result::Result<Tensor, ModelConfigError> {
        let s = known.size()[1];
        if s > self.model.denoiser.max_slots {
            return Err(ModelConfigError::Rule(format!(
                "{s} slots exceed the planner's window of {}",
                self.model.denoiser.max_slots
            )));
        }
        let rows = known.size()[0] as usize;
        let known_n = self.normalizer.normalize(known);
        // Timestep and slot embeddings once per timestep (the guided pass reuses them).
        let mut step_emb: HashMap<usize, Tensor> = HashMap::new();
        let x = tch::no_grad(|| {
            sample_plan_held(
                &self.schedule,
                &known_n,
                mask,
                soft,
                opts,
                |x, t, k, m, prev| {
                    let emb = step_emb.entry(t).or_insert_with(|| {
                        self.denoiser.step_embedding(&vec![t as f64; rows], s, x.kind(), x.device())
                    });
                    self.denoiser.forward_embedded(x, emb, k, m, prev, None, false)
                },
                noise,
            )
        })?;
        let z = self.normalizer.denormalize(&x);
        // Exactly the given latents on the slots held to the end (denormalize(normalize(z)) rounds).
        let m = match soft {
            Some(s) => mask.logical_and(&s.soft.logical_not()).unsqueeze(-1),
            None => mask.unsqueeze(-1),
        };
        Ok(known.where_self(&m, &z))
    }
}

/// A loaded `BUNDLE/planner`.
pub struct LoadedPlanner {
    pub planner: Planner,
    pub vs: nn::VarStore,
    pub config: StageConfigFile<PlannerModel>,
}

/// The fingerprint of the plan space of `bundle`'s autoencoder, which a planner records: a
/// frozen encoder's space (its sentence embeddings normalised per dimension) by the SHA-256 of
/// its record (encoder name, weights and tokenizer hashes, mean and std), so a decoder
/// retrained in the same space keeps its planner; a jointly learned autoencoder's by the
/// SHA-256 of its weights, whose encoder makes the latents.
pub fn plan_space_sha256(bundle: &Bundle) -> Result<String> {
    let cfg = bundle.read_config(stage::AUTOENCODER)?;
    match &cfg.plan_space {
        Some(space) => {
            use sha2::{Digest, Sha256};
            let bytes = serde_json::to_vec(space).map_err(|e| BundleError::file(bundle.root(), e.to_string()))?;
            let digest = Sha256::digest(&bytes);
            Ok(format!("space:{}", digest.iter().map(|b| format!("{b:02x}")).collect::<String>()))
        }
        None => file_sha256(&bundle.weights_path(stage::AUTOENCODER)),
    }
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
    let planner = Planner::new(&vs.root(), &config.model).map_err(|source| BundleError::Model { path, source })?;
    load_weights(&mut vs, &bundle.weights_path(stage::PLANNER))?;
    Ok(LoadedPlanner { planner, vs, config })
}
