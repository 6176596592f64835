//! Token embeddings, rounding, and the denoiser over a sequence of token embeddings.

use plandiff_diffusion::NoiseSchedule;
use plandiff_layers::{sinusoidal_embedding, AttnMask, Block, InitStd, LearnedPositions, Norm, TransformerShape};
use serde::{Deserialize, Serialize};
use tch::{nn, nn::Module, Kind, Tensor};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rounding {
    /// argmax of the tied logits `x E^T` (trained by the rounding loss).
    Logits,
    /// The nearest embedding in L2.
    Nearest,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TextDiffusionConfig {
    pub vocab_size: i64,
    /// Width of the token embedding space the diffusion runs in.
    pub d_emb: i64,
    /// Positions the denoiser sees (the longest text it writes, `<bos>` included).
    pub seq_len: i64,
    #[serde(flatten)]
    pub shape: TransformerShape,
    /// Feed the previous step's x0 estimate back as an input (Chen et al. 2022).
    pub self_condition: bool,
    pub rounding: Rounding,
}

impl TextDiffusionConfig {
    pub fn validate(&self) -> Result<(), plandiff_layers::FieldError> {
        let sizes = [("vocab_size", self.vocab_size), ("d_emb", self.d_emb), ("seq_len", self.seq_len)];
        self.shape.validate("diffusion", &sizes)
    }
}

#[derive(Debug)]
pub struct TextDiffusion {
    cfg: TextDiffusionConfig,
    emb: nn::Embedding,
    input: nn::Linear,
    pos: LearnedPositions,
    time_mlp: (nn::Linear, nn::Linear),
    blocks: Vec<Block>,
    norm_f: Norm,
    output: nn::Linear,
}

impl TextDiffusion {
    pub fn new(p: nn::Path, cfg: &TextDiffusionConfig) -> Self {
        let d = cfg.shape.d_model;
        let lin = |name: &str, i: i64, o: i64| nn::linear(&p / name, i, o, InitStd::default().linear(0.02));
        let bc = cfg.shape.block(None);
        // Unit-variance embeddings, as Diffusion-LM: the signal has the noise's scale.
        let emb_cfg = nn::EmbeddingConfig { ws_init: nn::Init::Randn { mean: 0.0, stdev: 1.0 }, ..Default::default() };
        let width = cfg.d_emb * if cfg.self_condition { 2 } else { 1 };
        Self {
            emb: nn::embedding(&p / "emb", cfg.vocab_size, cfg.d_emb, emb_cfg),
            input: lin("input", width, d),
            pos: LearnedPositions::new(&p / "wpe", cfg.seq_len, d),
            time_mlp: (lin("time_fc1", d, 4 * d), lin("time_fc2", 4 * d, d)),
            blocks: (0..cfg.shape.n_layers).map(|i| Block::new(&p / "blocks" / i, &bc)).collect(),
            norm_f: Norm::new(&p / "norm_f", cfg.shape.norm, d),
            output: lin("output", d, cfg.d_emb),
            cfg: cfg.clone(),
        }
    }

    pub fn config(&self) -> &TextDiffusionConfig {
        &self.cfg
    }

    pub fn device(&self) -> tch::Device {
        self.emb.ws.device()
    }

    /// `(B, L)` token ids -> `(B, L, d_emb)`.
    pub fn embed(&self, tokens: &Tensor) -> Tensor {
        self.emb.forward(tokens)
    }

    /// The embedding table `(V, d_emb)`.
    pub fn table(&self) -> &Tensor {
        &self.emb.ws
    }

    /// Tied logits `x E^T`: `(..., d_emb) -> (..., V)`.
    pub fn logits(&self, x: &Tensor) -> Tensor {
        x.matmul(&self.emb.ws.tr())
    }

    /// Rounds vectors to tokens: `(..., d_emb) -> (...)` int64.
    pub fn round(&self, x: &Tensor, how: Rounding) -> Tensor {
        match how {
            Rounding::Logits => self.logits(x).argmax(-1, false),
            Rounding::Nearest => {
                // ||x - e||^2 = ||x||^2 - 2 x.e + ||e||^2; the first term is constant per row.
                let e2 = self.emb.ws.square().sum_dim_intlist(-1, false, Kind::Float); // (V,)
                (self.logits(x) * 2.0 - e2).argmax(-1, false)
            }
        }
    }

    /// # Shapes
    /// - `x_t`: `(B, L, d_emb)`, `t`: one timestep per row, `self_cond`: `(B, L, d_emb)` or
    ///   `None` (zeros). Returns the x0 estimate `(B, L, d_emb)`.
    pub fn forward(&self, x_t: &Tensor, t: &[f64], self_cond: Option<&Tensor>, train: bool) -> Tensor {
        let (b, l, _) = x_t.size3().expect("x_t must be (B, L, d_emb)");
        let input = if self.cfg.self_condition {
            let sc = self_cond.map_or_else(|| x_t.zeros_like(), Tensor::shallow_clone);
            Tensor::cat(&[x_t.shallow_clone(), sc], -1)
        } else {
            x_t.shallow_clone()
        };
        let pos = Tensor::arange(l, (Kind::Int64, x_t.device()));
        let temb = sinusoidal_embedding(t, self.cfg.shape.d_model as usize, x_t.device()).to_kind(x_t.kind()); // (B, D)
        let temb = self.time_mlp.1.forward(&self.time_mlp.0.forward(&temb).silu()).view([b, 1, -1]);
        let mut h = plandiff_layers::dropout(
            self.input.forward(&input) + self.pos.forward(&pos).unsqueeze(0) + temb,
            self.cfg.shape.dropout,
            train,
        );
        for block in &self.blocks {
            h = block.forward(&h, AttnMask::None, None, None, train, None);
        }
        self.output.forward(&self.norm_f.forward(&h))
    }
}

/// The Diffusion-LM loss of a batch, each part a 0-d tensor.
pub struct LossParts {
    pub total: Tensor,
    pub mse: Tensor,
    pub rounding: Tensor,
    /// Rounding of every vocabulary token's own clean embedding (tokens the batch lacks
    /// included), so rounding inverts the whole embedding table.
    pub vocab_rounding: Tensor,
    pub prior: Tensor,
}

/// Diffusion-LM's objective for token batch `tokens` `(B, L)`:
/// `x_0 = E(w) + sqrt(1 - alpha_bar_0) eps_0`, `x_t = q(x_t | x_0)`;
/// `mse = |f(x_t, t) - E(w)|^2` (mean), `rounding = CE(x_0 E^T, w)`,
/// `prior = |sqrt(alpha_bar_T) E(w)|^2` (mean), plus `vocab_rounding = CE(E E^T, id)` over
/// the whole vocabulary (plandiff's addition: every token, seen in the batch or not, rounds
/// back to itself). `t`: one timestep per row; `self_cond`: whether to first predict x0
/// without gradient and feed it back.
pub fn diffusion_lm_loss(
    model: &TextDiffusion,
    schedule: &NoiseSchedule,
    tokens: &Tensor,
    t: &[usize],
    self_cond: bool,
    train: bool,
) -> LossParts {
    let mean = model.embed(tokens); // (B, L, d)
    let a0 = schedule.alphas_cumprod[0];
    let x0 = &mean + mean.randn_like() * (1.0 - a0).sqrt();
    let eps = x0.randn_like();
    let x_t = schedule.q_sample(&x0, t, &eps);
    let tf: Vec<f64> = t.iter().map(|&t| t as f64).collect();
    let sc = self_cond.then(|| tch::no_grad(|| model.forward(&x_t, &tf, None, train)));
    let pred = model.forward(&x_t, &tf, sc.as_ref(), train);
    let mse = (&pred - &mean).square().mean(Kind::Float);
    let v = model.config().vocab_size;
    let rounding = model.logits(&x0).view([-1, v]).cross_entropy_for_logits(&tokens.reshape(-1));
    let at = *schedule.alphas_cumprod.last().unwrap_or(&0.0);
    let prior = (&mean * at.sqrt()).square().mean(Kind::Float);
    let ids = Tensor::arange(v, (Kind::Int64, tokens.device()));
    let vocab_rounding = model.logits(model.table()).cross_entropy_for_logits(&ids);
    let total = &mse + &rounding + &prior + &vocab_rounding;
    LossParts { total, mse, rounding, vocab_rounding, prior }
}

#[cfg(test)]
mod tests {
    use super::*;
    use plandiff_layers::TransformerShape;
    use tch::nn::OptimizerConfig;
    use tch::Device;

    pub(crate) fn tiny() -> TextDiffusionConfig {
        TextDiffusionConfig {
            vocab_size: 50,
            d_emb: 8,
            seq_len: 12,
            shape: TransformerShape::test(),
            self_condition: true,
            rounding: Rounding::Logits,
        }
    }

    #[test]
    fn rounding_inverts_the_embedding() {
        tch::manual_seed(0);
        let vs = nn::VarStore::new(Device::Cpu);
        let m = TextDiffusion::new(vs.root(), &tiny());
        let ids = Tensor::arange(50, (Kind::Int64, Device::Cpu));
        let e = m.embed(&ids);
        assert!(m.round(&e, Rounding::Nearest).equal(&ids), "nearest rounding of an embedding is its token");
        // A small perturbation keeps the nearest token.
        let near = m.round(&(&e + e.randn_like() * 0.01), Rounding::Nearest);
        assert!(near.equal(&ids));
        assert_eq!(m.logits(&e).size(), vec![50, 50]);
    }

    #[test]
    fn loss_parts_are_finite_and_training_lowers_them() {
        tch::manual_seed(1);
        let vs = nn::VarStore::new(Device::Cpu);
        let m = TextDiffusion::new(vs.root(), &tiny());
        let sched = NoiseSchedule::new(plandiff_diffusion::ScheduleConfig {
            num_train_timesteps: 100,
            beta_schedule: plandiff_diffusion::BetaSchedule::Sqrt,
            prediction_type: plandiff_diffusion::PredictionType::Sample,
            clip_sample: false,
            ..Default::default()
        })
        .unwrap();
        let tokens = Tensor::randint(50, [4, 12], (Kind::Int64, Device::Cpu));
        let t = [0usize, 10, 50, 99];
        let mut opt = nn::Adam::default().build(&vs, 3e-3).unwrap();
        let first = diffusion_lm_loss(&m, &sched, &tokens, &t, false, true);
        for p in [&first.total, &first.mse, &first.rounding, &first.vocab_rounding, &first.prior] {
            assert!(p.double_value(&[]).is_finite());
        }
        for _ in 0..60 {
            let l = diffusion_lm_loss(&m, &sched, &tokens, &t, true, true);
            opt.backward_step(&l.total);
        }
        let last = diffusion_lm_loss(&m, &sched, &tokens, &t, false, false);
        assert!(last.total.double_value(&[]) < first.total.double_value(&[]));
    }
}
