//! The planning denoiser: a bidirectional transformer over `S` sentence slots that predicts
//! (by default) the clean normalized latents x0 from noisy ones, given the diffusion timestep
//! and the known slots (the prompt's sentences) as an input channel.
//!
//! Input per slot: `[x_t, known * mask, mask, self_cond]` -> `d_model`, plus a learned slot
//! embedding and the timestep embedding (sinusoidal, then an MLP) on every slot.

use plandiff_layers::{sinusoidal_embedding, AttnMask, Block, InitStd, Norm, TransformerShape};
use serde::{Deserialize, Serialize};
use tch::{nn, nn::Module, Kind, Tensor};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DenoiserConfig {
    pub d_latent: i64,
    pub max_slots: i64,
    #[serde(flatten)]
    pub shape: TransformerShape,
    /// Feed the previous step's x0 estimate back as an input (Chen et al. 2022).
    pub self_condition: bool,
}

impl DenoiserConfig {
    /// Checks what would otherwise fail deep inside libtorch; the message names the field.
    pub fn validate(&self) -> Result<(), plandiff_layers::FieldError> {
        let sizes = [("d_latent", self.d_latent), ("max_slots", self.max_slots)];
        self.shape.validate("planner", &sizes)
    }
}

/// What the denoiser reads besides the timestep.
///
/// # Shapes
/// - `x_t`, `known`: `(B, S, d_latent)`; `mask`: `(B, S)` bool, `true` on known slots;
/// - `self_cond`: `(B, S, d_latent)` or `None` (zeros);
/// - `slots`: `(B, S)` bool, `true` on real slots (rows of a batch shorter than `S`), or `None`
///   when every slot is real.
#[derive(Clone, Copy)]
pub struct DenoiserInput<'a> {
    pub x_t: &'a Tensor,
    pub known: &'a Tensor,
    pub mask: &'a Tensor,
    pub self_cond: Option<&'a Tensor>,
    pub slots: Option<&'a Tensor>,
}

impl<'a> DenoiserInput<'a> {
    /// Noisy slots `x_t`, the `known` latents on the slots `mask` marks; no self-conditioning,
    /// every slot real.
    pub fn new(x_t: &'a Tensor, known: &'a Tensor, mask: &'a Tensor) -> Self {
        Self { x_t, known, mask, self_cond: None, slots: None }
    }
}

#[derive(Debug)]
pub struct Denoiser {
    cfg: DenoiserConfig,
    input: nn::Linear,
    slot_emb: nn::Embedding,
    time_mlp: (nn::Linear, nn::Linear),
    blocks: Vec<Block>,
    norm_f: Norm,
    output: nn::Linear,
}

impl Denoiser {
    pub fn new(p: nn::Path, cfg: &DenoiserConfig) -> Self {
        let d = cfg.shape.d_model;
        let width = cfg.d_latent * if cfg.self_condition { 3 } else { 2 } + 1;
        let lin = |name: &str, i: i64, o: i64| nn::linear(&p / name, i, o, InitStd::default().linear(0.02));
        let bc = cfg.shape.block(None);
        let emb = nn::EmbeddingConfig { ws_init: nn::Init::Randn { mean: 0.0, stdev: 0.02 }, ..Default::default() };
        Self {
            input: lin("input", width, d),
            slot_emb: nn::embedding(&p / "slot_emb", cfg.max_slots, d, emb),
            time_mlp: (lin("time_fc1", d, 4 * d), lin("time_fc2", 4 * d, d)),
            blocks: (0..cfg.shape.n_layers).map(|i| Block::new(&p / "blocks" / i, &bc)).collect(),
            norm_f: Norm::new(&p / "norm_f", cfg.shape.norm, d),
            output: lin("output", d, cfg.d_latent),
            cfg: cfg.clone(),
        }
    }

    pub fn config(&self) -> &DenoiserConfig {
        &self.cfg
    }

    /// The timestep and slot embeddings added to every slot's input: `(B, S, D)` for `B`
    /// timesteps and `S` slots. Depends on `t` and `S` only, so a sampler can compute it once
    /// per timestep.
    pub fn step_embedding(&self, t: &[f64], s: i64, kind: Kind, device: tch::Device) -> Tensor {
        let b = t.len() as i64;
        let slot_ids = Tensor::arange(s, (Kind::Int64, device));
        let temb = sinusoidal_embedding(t, self.cfg.shape.d_model as usize, device).to_kind(kind); // (B, D)
        let temb = self.time_mlp.1.forward(&self.time_mlp.0.forward(&temb).silu()).view([b, 1, -1]);
        self.slot_emb.forward(&slot_ids).unsqueeze(0) + temb
    }

    /// The denoiser's prediction for `input` at timesteps `t` (one per row).
    ///
    /// # Shapes
    /// See [`DenoiserInput`]; `t`: `B` timesteps. Returns `(B, S, d_latent)`.
    pub fn forward(&self, input: &DenoiserInput, t: &[f64], train: bool) -> Tensor {
        let x_t = input.x_t;
        let emb = self.step_embedding(t, x_t.size()[1], x_t.kind(), x_t.device());
        self.forward_embedded(input, &emb, train)
    }

    /// [`Denoiser::forward`] with the step embedding from [`Denoiser::step_embedding`].
    pub fn forward_embedded(&self, input: &DenoiserInput, step_emb: &Tensor, train: bool) -> Tensor {
        let DenoiserInput { x_t, known, mask, self_cond, slots } = *input;
        let m = mask.to_kind(x_t.kind()).unsqueeze(-1); // (B, S, 1)
        let mut parts = vec![x_t.shallow_clone(), known * &m, m.shallow_clone()];
        if self.cfg.self_condition {
            parts.push(self_cond.map_or_else(|| x_t.zeros_like(), Tensor::shallow_clone));
        }
        let mut x = self.input.forward(&Tensor::cat(&parts, -1)) + step_emb; // (B, S, D)
        let key_mask = slots.map(|m| m.unsqueeze(1).unsqueeze(1)); // (B, 1, 1, S)
        for block in &self.blocks {
            let mask = key_mask.as_ref().map_or(AttnMask::None, AttnMask::Custom);
            x = block.forward(&x, mask, None, None, train, None);
        }
        self.output.forward(&self.norm_f.forward(&x))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use tch::Device;

    #[test]
    fn slots_are_permutation_aware_and_conditioning_matters() {
        tch::manual_seed(0);
        let vs = nn::VarStore::new(Device::Cpu);
        let cfg = DenoiserConfig { d_latent: 6, max_slots: 5, shape: TransformerShape::test(), self_condition: true };
        let den = Denoiser::new(vs.root(), &cfg);
        let x = Tensor::randn([2, 5, 6], (Kind::Float, Device::Cpu));
        let known = Tensor::randn([2, 5, 6], (Kind::Float, Device::Cpu));
        let none = Tensor::zeros([2, 5], (Kind::Bool, Device::Cpu));
        let some = Tensor::from_slice(&[true, true, false, false, false]).view([1, 5]).expand([2, 5], false);
        let a = den.forward(&DenoiserInput::new(&x, &known, &none), &[10.0, 500.0], false);
        assert_eq!(a.size(), vec![2, 5, 6]);
        let b = den.forward(&DenoiserInput::new(&x, &known, &some), &[10.0, 500.0], false);
        let c = den.forward(&DenoiserInput::new(&x, &known, &none), &[900.0, 500.0], false);
        assert!((&a - &b).abs().max().double_value(&[]) > 1e-5, "known slots must change the output");
        assert!((&a - &c).get(0).abs().max().double_value(&[]) > 1e-5, "the timestep must change the output");
        assert!((&a - &c).get(1).abs().max().double_value(&[]) < 1e-6, "rows are independent");
    }
}
