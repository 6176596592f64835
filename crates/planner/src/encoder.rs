//! Sentence encoder E: a bidirectional transformer over one sentence's tokens, mean-pooled
//! over the real tokens, projected to `d_latent` and bounded (docs/design.md, section 3.3).

use plandiff_layers::{AttnMask, Block, InitStd, LearnedPositions, Norm, TransformerShape};
use serde::{Deserialize, Serialize};
use tch::{nn, nn::Module, Kind, Tensor};

/// How latents are kept in a bounded region, so the planner's diffusion has a fixed scale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LatentBound {
    /// Each coordinate in (-1, 1).
    Tanh,
    /// Unit L2 norm, scaled by `sqrt(d_latent)` so coordinates are O(1).
    Sphere,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncoderConfig {
    pub vocab_size: i64,
    #[serde(flatten)]
    pub shape: TransformerShape,
    /// Longest sentence in tokens (longer ones are cut).
    pub max_len: i64,
    pub d_latent: i64,
    pub bound: LatentBound,
}

impl EncoderConfig {
    /// Checks what would otherwise fail deep inside libtorch; the message names the field.
    pub fn validate(&self) -> Result<(), plandiff_layers::FieldError> {
        let sizes = [("vocab_size", self.vocab_size), ("max_len", self.max_len), ("d_latent", self.d_latent)];
        self.shape.validate("encoder", &sizes)
    }
}

#[derive(Debug)]
pub struct SentenceEncoder {
    cfg: EncoderConfig,
    wte: nn::Embedding,
    wpe: LearnedPositions,
    blocks: Vec<Block>,
    norm_f: Norm,
    proj: nn::Linear,
}

impl SentenceEncoder {
    pub fn new(p: nn::Path, cfg: &EncoderConfig) -> Self {
        let emb = nn::EmbeddingConfig { ws_init: nn::Init::Randn { mean: 0.0, stdev: 0.02 }, ..Default::default() };
        let bc = cfg.shape.block(None);
        Self {
            cfg: cfg.clone(),
            wte: nn::embedding(&p / "wte", cfg.vocab_size, cfg.shape.d_model, emb),
            wpe: LearnedPositions::new(&p / "wpe", cfg.max_len, cfg.shape.d_model),
            blocks: (0..cfg.shape.n_layers).map(|i| Block::new(&p / "blocks" / i, &bc)).collect(),
            norm_f: Norm::new(&p / "norm_f", cfg.shape.norm, cfg.shape.d_model),
            proj: nn::linear(&p / "proj", cfg.shape.d_model, cfg.d_latent, InitStd::default().linear(0.02)),
        }
    }

    pub fn config(&self) -> &EncoderConfig {
        &self.cfg
    }

    /// Latents `(N, d_latent)` of sentences given as token ids (without `<sep>`), in
    /// inference mode, `batch` sentences at a time (sorted by length to limit padding).
    /// Sentences are cut to `max_len`; an empty one is encoded as the single `pad` token.
    pub fn encode(&self, sentences: &[&[i64]], pad: i64, batch: usize) -> Tensor {
        let dev = self.wte.ws.device();
        let n = sentences.len();
        if n == 0 {
            return Tensor::zeros([0, self.cfg.d_latent], (Kind::Float, dev));
        }
        let max_len = self.cfg.max_len as usize;
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by_key(|&i| sentences[i].len());
        let mut parts = Vec::new();
        tch::no_grad(|| {
            for chunk in order.chunks(batch.max(1)) {
                let len = chunk.iter().map(|&i| sentences[i].len().clamp(1, max_len)).max().unwrap_or(1);
                let mut toks = Vec::with_capacity(chunk.len() * len);
                let mut mask = Vec::with_capacity(chunk.len() * len);
                for &i in chunk {
                    let s = &sentences[i][..sentences[i].len().min(max_len)];
                    for j in 0..len {
                        toks.push(s.get(j).copied().unwrap_or(pad));
                        mask.push(j < s.len().max(1));
                    }
                }
                let shape = [chunk.len() as i64, len as i64];
                let t = Tensor::from_slice(&toks).view(shape).to_device(dev);
                let m = Tensor::from_slice(&mask).view(shape).to_device(dev);
                parts.push(self.forward(&t, &m, false));
            }
        });
        let sorted = Tensor::cat(&parts, 0);
        // Undo the length sort.
        let mut inverse = vec![0i64; n];
        for (k, &i) in order.iter().enumerate() {
            inverse[i] = k as i64;
        }
        sorted.index_select(0, &Tensor::from_slice(&inverse).to_device(dev))
    }

    /// # Shapes
    /// - `tokens`: `(N, L)` int64, `mask`: `(N, L)` bool (`true` on real tokens; every row
    ///   needs at least one). Returns latents `(N, d_latent)`.
    pub fn forward(&self, tokens: &Tensor, mask: &Tensor, train: bool) -> Tensor {
        let (_, l) = tokens.size2().expect("tokens must be (N, L)");
        let l = l.min(self.cfg.max_len);
        let tokens = tokens.narrow(1, 0, l);
        let mask = mask.narrow(1, 0, l);
        let pos = Tensor::arange(l, (Kind::Int64, tokens.device())).unsqueeze(0); // (1, L)
        let mut x =
            plandiff_layers::dropout(self.wte.forward(&tokens) + self.wpe.forward(&pos), self.cfg.shape.dropout, train);
        let attn_mask = mask.unsqueeze(1).unsqueeze(1); // (N, 1, 1, L): keys that are real
        for b in &self.blocks {
            x = b.forward(&x, AttnMask::Custom(&attn_mask), None, None, train, None);
        }
        let x = self.norm_f.forward(&x);
        let m = mask.to_kind(x.kind()).unsqueeze(-1); // (N, L, 1)
        let kind = x.kind();
        let pooled = (x * &m).sum_dim_intlist(1, false, kind) / m.sum_dim_intlist(1, false, kind).clamp_min(1.0);
        let z = self.proj.forward(&pooled); // (N, d_latent)
        match self.cfg.bound {
            LatentBound::Tanh => z.tanh(),
            LatentBound::Sphere => {
                let norm = z.norm_scalaropt_dim(2, [-1], true).clamp_min(1e-6);
                z / norm * (self.cfg.d_latent as f64).sqrt()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use tch::Device;

    fn cfg(bound: LatentBound) -> EncoderConfig {
        EncoderConfig { vocab_size: 50, shape: TransformerShape::test(), max_len: 16, d_latent: 8, bound }
    }

    #[test]
    fn padding_does_not_change_a_latent() {
        tch::manual_seed(0);
        let vs = nn::VarStore::new(Device::Cpu);
        let enc = SentenceEncoder::new(vs.root(), &cfg(LatentBound::Tanh));
        let alone = Tensor::from_slice(&[5i64, 6, 7]).unsqueeze(0);
        let z1 = enc.forward(&alone, &alone.ones_like().to_kind(Kind::Bool), false);
        let padded = Tensor::from_slice(&[5i64, 6, 7, 3, 3, 3]).unsqueeze(0);
        let mask = Tensor::from_slice(&[true, true, true, false, false, false]).unsqueeze(0);
        let z2 = enc.forward(&padded, &mask, false);
        assert!((&z1 - &z2).abs().max().double_value(&[]) < 1e-6);
        assert!(z1.abs().max().double_value(&[]) < 1.0);
        // Another sentence gives another latent.
        let other = Tensor::from_slice(&[9i64, 6, 7]).unsqueeze(0);
        let z3 = enc.forward(&other, &other.ones_like().to_kind(Kind::Bool), false);
        assert!((&z1 - &z3).abs().max().double_value(&[]) > 1e-4);
    }

    #[test]
    fn sphere_latents_have_fixed_norm() {
        let vs = nn::VarStore::new(Device::Cpu);
        let enc = SentenceEncoder::new(vs.root(), &cfg(LatentBound::Sphere));
        let t = Tensor::randint(50, [4, 10], (Kind::Int64, Device::Cpu));
        let z = enc.forward(&t, &t.ones_like().to_kind(Kind::Bool), false);
        let n: Vec<f32> = Vec::try_from(z.norm_scalaropt_dim(2, [-1], false)).unwrap();
        assert!(n.iter().all(|v| (v - 8f32.sqrt()).abs() < 1e-4), "{n:?}");
    }
}
