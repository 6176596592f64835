//! The planner as one model: its denoiser over sentence slots, the latent normalizer, the
//! noise schedule and its sampling defaults, built from a bundle's `planner/config.json`
//! parts (candle's shape: the model crate builds itself from its config and weights; the
//! `bundle` crate reads and checks the files).

use crate::denoiser::{Denoiser, DenoiserConfig, DenoiserInput};
use crate::normalizer::LatentNormalizer;
use crate::sampler::{sample_plan_held, PlanSampling, Steering};
use plandiff_diffusion::{NoiseSchedule, ScheduleConfig};
use std::collections::HashMap;
use tch::{nn, Tensor};

/// Why a planner cannot be built or cannot sample.
#[derive(Debug, thiserror::Error)]
pub enum PlannerError {
    #[error(transparent)]
    Field(#[from] plandiff_layers::FieldError),
    #[error(transparent)]
    Schedule(#[from] plandiff_diffusion::DiffusionError),
    /// A request the model cannot serve, in words (more slots than its window).
    #[error("{0}")]
    Rule(String),
}

/// A loaded (or training) planner: denoiser, normalizer, schedule and sampling defaults.
pub struct Planner {
    pub denoiser: Denoiser,
    pub normalizer: LatentNormalizer,
    pub schedule: NoiseSchedule,
    /// The sampling a request uses unless it says otherwise.
    pub sampling: PlanSampling,
}

impl Planner {
    /// The planner of `denoiser`, `schedule` and `sampling` under `p` (`p / "denoiser"`,
    /// `p / "normalizer"`: the checkpoint's keys), each config checked.
    pub fn new(
        p: &nn::Path,
        denoiser: &DenoiserConfig,
        schedule: ScheduleConfig,
        sampling: PlanSampling,
    ) -> Result<Self, PlannerError> {
        denoiser.validate()?;
        sampling.validate()?;
        Ok(Self {
            denoiser: Denoiser::new(p / "denoiser", denoiser),
            normalizer: LatentNormalizer::new(p / "normalizer", denoiser.d_latent),
            schedule: NoiseSchedule::new(schedule)?,
            sampling,
        })
    }

    /// Sentence slots the planner sees at once (its window).
    pub fn max_slots(&self) -> usize {
        self.denoiser.config().max_slots as usize
    }

    /// The width of a sentence latent.
    pub fn d_latent(&self) -> i64 {
        self.denoiser.config().d_latent
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
    ) -> Result<Tensor, PlannerError> {
        self.sample_held(known, mask, Steering::none(), opts, noise)
    }

    /// [`Planner::sample`] steered ([`Steering`]): the known slots of `steer.soft` held for only
    /// part of the steps (they come back refined, not as given); `steer.x0` maps encoder-space
    /// x0 predictions (the planner's normalizer is undone around it).
    pub fn sample_held(
        &self,
        known: &Tensor,
        mask: &Tensor,
        steer: Steering,
        opts: PlanSampling,
        noise: impl FnMut(&[i64]) -> Tensor,
    ) -> Result<Tensor, PlannerError> {
        let s = known.size()[1];
        if s > self.denoiser.config().max_slots {
            return Err(PlannerError::Rule(format!(
                "{s} slots exceed the planner's window of {}",
                self.denoiser.config().max_slots
            )));
        }
        let known_n = self.normalizer.normalize(known);
        // Timestep and slot embeddings once per timestep and batch size (the guided pass, of
        // twice the rows, takes its own).
        let mut step_emb: HashMap<(usize, i64), Tensor> = HashMap::new();
        let in_space = |x0: &Tensor| match steer.x0 {
            Some(f) => self.normalizer.normalize(&f(&self.normalizer.denormalize(x0))),
            None => x0.shallow_clone(),
        };
        let inner = Steering { x0: steer.x0.map(|_| &in_space as &dyn Fn(&Tensor) -> Tensor), ..steer };
        let soft = steer.soft;
        let x = tch::no_grad(|| {
            sample_plan_held(
                &self.schedule,
                &known_n,
                mask,
                inner,
                opts,
                |x, t, k, m, prev| {
                    let rows = x.size()[0];
                    let emb = step_emb.entry((t, rows)).or_insert_with(|| {
                        self.denoiser.step_embedding(&vec![t as f64; rows as usize], s, x.kind(), x.device())
                    });
                    let input = DenoiserInput { self_cond: prev, ..DenoiserInput::new(x, k, m) };
                    self.denoiser.forward_embedded(&input, emb, false)
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
