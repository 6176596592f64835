//! The bidirectional denoiser over token ids.

use plandiff_layers::{AttnMask, Block, KvCache, LearnedPositions, Norm, TransformerShape};
use serde::{Deserialize, Serialize};
use tch::{nn, nn::Module, Kind, Tensor};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaskedLmConfig {
    /// The tokenizer's vocabulary; the input has one more id, the mask (`vocab_size`).
    pub vocab_size: i64,
    /// Positions the model reads (the longest text it writes, `<bos>` included).
    pub seq_len: i64,
    #[serde(flatten)]
    pub shape: TransformerShape,
}

impl MaskedLmConfig {
    pub fn validate(&self) -> Result<(), plandiff_layers::FieldError> {
        let sizes = [("vocab_size", self.vocab_size), ("seq_len", self.seq_len)];
        self.shape.validate("masked", &sizes)
    }

    /// The mask token's id: one past the vocabulary.
    pub fn mask_id(&self) -> i64 {
        self.vocab_size
    }
}

#[derive(Debug)]
pub struct MaskedLm {
    cfg: MaskedLmConfig,
    /// `(vocab_size + 1, D)`: the tokens, then the mask; the output head is tied to the
    /// tokens' rows.
    wte: nn::Embedding,
    wpe: LearnedPositions,
    blocks: Vec<Block>,
    norm_f: Norm,
}

impl MaskedLm {
    /// The same tensor names and shapes as the decoder's plain AR model (`wte` with one more
    /// row, `wpe`, `blocks`, `norm_f`), so training can start from it (Dream, DiffuLLaMA).
    pub fn new(p: nn::Path, cfg: &MaskedLmConfig) -> Self {
        let d = cfg.shape.d_model;
        let bc = cfg.shape.block(None);
        let emb_cfg = nn::EmbeddingConfig { ws_init: nn::Init::Randn { mean: 0.0, stdev: 0.02 }, ..Default::default() };
        Self {
            wte: nn::embedding(&p / "wte", cfg.vocab_size + 1, d, emb_cfg),
            wpe: LearnedPositions::new(&p / "wpe", cfg.seq_len, d),
            blocks: (0..cfg.shape.n_layers).map(|i| Block::new(&p / "blocks" / i, &bc)).collect(),
            norm_f: Norm::new(&p / "norm_f", cfg.shape.norm, d),
            cfg: cfg.clone(),
        }
    }

    pub fn config(&self) -> &MaskedLmConfig {
        &self.cfg
    }

    pub fn device(&self) -> tch::Device {
        self.wte.ws.device()
    }

    /// # Shapes
    /// - `ids`: `(B, L)` int64 in `0..=vocab_size` (`vocab_size` is the mask), `L <= seq_len`.
    ///   Returns logits `(B, L, vocab_size)`: the mask is never predicted.
    ///
    /// Position `i`'s logits come from the hidden state at `i - 1` (Dream's shift, so an AR
    /// model's next-token head keeps its meaning when training starts from it); position 0
    /// (`<bos>`, always given) reads its own.
    pub fn forward(&self, ids: &Tensor, train: bool) -> Tensor {
        self.head(&self.shifted_hidden(ids, train))
    }

    /// `sum_{b, l} weights[b, l] CE(logits[b, l], targets[b, l])` of [`MaskedLm::forward`]'s
    /// logits, with the output head and the loss fused chunk by chunk
    /// ([`plandiff_layers::weighted_linear_cross_entropy`]): the same value and gradients
    /// without the `(B, L, V)` logits (training: [`crate::objective_weights`]).
    ///
    /// # Shapes
    /// - `ids`, `targets` (ids in `0..vocab_size`): `(B, L)`; `weights`: `(B, L)` fp32.
    pub fn weighted_loss(&self, ids: &Tensor, train: bool, targets: &Tensor, weights: &Tensor) -> Tensor {
        let h = self.shifted_hidden(ids, train);
        let d = h.size()[2];
        plandiff_layers::weighted_linear_cross_entropy(
            &h.reshape([-1, d]),
            &self.wte.ws.narrow(0, 0, self.cfg.vocab_size),
            &targets.reshape([-1]),
            &weights.reshape([-1]),
        )
    }

    /// The hidden states each position's logits read `(B, L, D)`: position `i`'s from `i - 1`.
    fn shifted_hidden(&self, ids: &Tensor, train: bool) -> Tensor {
        let l = ids.size().last().copied().unwrap_or(0);
        let h = self.hidden(ids, 0, None, train);
        Tensor::cat(&[h.narrow(1, 0, 1), h.narrow(1, 0, l - 1)], 1) // (B, L, D), shifted
    }

    /// [`MaskedLm::forward`]'s logits at positions `at` `(n,)` only, `(B, n, V)`: the output
    /// head (a `D x V` matmul per position, most of a step's arithmetic at this size) runs on
    /// those positions alone. With `caches`, each layer's keys and values are kept.
    pub fn logits_at(&self, ids: &Tensor, at: &Tensor, caches: Option<&mut [KvCache]>) -> Tensor {
        let h = self.hidden(ids, 0, caches, false);
        self.head(&h.index_select(1, &(at - 1).clamp_min(0))) // position i reads the state at i - 1
    }

    /// The final hidden states `(B, T, D)` of `ids` `(B, T)` read at positions `from..from + T`.
    /// With `caches` (one per layer), the keys and values are appended to them, or overwrite
    /// theirs from `from` on when set to (see [`crate::BlockCache`]); queries see every
    /// cached position.
    pub(crate) fn hidden(&self, ids: &Tensor, from: i64, caches: Option<&mut [KvCache]>, train: bool) -> Tensor {
        let l = ids.size().last().copied().unwrap_or(0);
        let pos = Tensor::arange_start(from, from + l, (Kind::Int64, ids.device()));
        let mut h = plandiff_layers::dropout(
            self.wte.forward(ids) + self.wpe.forward(&pos).unsqueeze(0),
            self.cfg.shape.dropout,
            train,
        ); // (B, T, D)
        match caches {
            None => {
                for block in &self.blocks {
                    h = block.forward(&h, AttnMask::None, None, None, train, None);
                }
            }
            Some(caches) => {
                for (block, cache) in self.blocks.iter().zip(caches.iter_mut()) {
                    h = block.forward(&h, AttnMask::None, Some(cache), None, train, None);
                }
            }
        }
        self.norm_f.forward(&h)
    }

    /// Logits `(.., V)` of final hidden states (the head tied to the tokens' embeddings).
    pub(crate) fn head(&self, h: &Tensor) -> Tensor {
        h.matmul(&self.wte.ws.narrow(0, 0, self.cfg.vocab_size).tr())
    }

    pub(crate) fn n_layers(&self) -> usize {
        self.blocks.len()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use tch::Device;

    pub(crate) fn tiny() -> MaskedLmConfig {
        MaskedLmConfig { vocab_size: 30, seq_len: 16, shape: TransformerShape::test() }
    }

    #[test]
    fn shapes_and_bidirectionality() {
        tch::manual_seed(0);
        let vs = nn::VarStore::new(Device::Cpu);
        let m = MaskedLm::new(vs.root(), &tiny());
        let ids = Tensor::from_slice(&[1i64, 2, 30, 4, 5, 30]).view([1, 6]);
        let out = m.forward(&ids, false);
        assert_eq!(out.size(), vec![1, 6, 30], "the mask (id 30) is read, never predicted");
        // Changing the last token changes the first position's logits: attention sees both ways.
        let ids2 = Tensor::from_slice(&[1i64, 2, 30, 4, 5, 7]).view([1, 6]);
        let d = (m.forward(&ids2, false).get(0).get(0) - out.get(0).get(0)).abs().max().double_value(&[]);
        assert!(d > 1e-6, "position 0 must see position 5: {d}");
        assert!(tiny().validate().is_ok());
        let bad = MaskedLmConfig { shape: TransformerShape { n_heads: 5, ..tiny().shape }, ..tiny() };
        assert_eq!(bad.validate().unwrap_err().field, "masked d_model");
    }

    /// The fused head and loss of training equals the objective over the logits: the masked
    /// positions' weighted loss plus the substituted positions' loss, value and every gradient.
    #[test]
    fn fused_weighted_loss_equals_the_objective_over_the_logits() {
        tch::manual_seed(5);
        let vs = nn::VarStore::new(Device::Cpu);
        let m = MaskedLm::new(vs.root(), &tiny());
        let tokens = Tensor::randint(30, [3, 12], (Kind::Int64, Device::Cpu));
        let masked = Tensor::rand([3, 12], (Kind::Float, Device::Cpu)).lt(0.5);
        let picked = Tensor::rand([3, 12], (Kind::Float, Device::Cpu)).lt(0.2).logical_and(&masked.logical_not());
        let input = tokens.masked_fill(&masked, 30);
        let p = [0.3, 0.6, 0.9];
        let grads = |fused: bool| {
            let mut vars: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
            vars.sort_by(|a, b| a.0.cmp(&b.0));
            vars.iter().for_each(|(_, t)| t.shallow_clone().zero_grad());
            let loss = if fused {
                m.weighted_loss(&input, true, &tokens, &crate::objective_weights(&masked, &p, Some(&picked)))
            } else {
                let logits = m.forward(&input, true);
                crate::weighted_masked_loss(&logits, &tokens, &masked, &p)
                    + crate::substitution_loss(&logits, &tokens, &picked)
            };
            loss.backward();
            let g: Vec<Tensor> = vars.iter().map(|(_, t)| t.grad()).filter(Tensor::defined).map(|t| t.copy()).collect();
            (loss.double_value(&[]), g)
        };
        let (l1, g1) = grads(true);
        let (l0, g0) = grads(false);
        assert_eq!(g1.len(), g0.len(), "the same parameters get gradients");
        assert!(l0 > 0.1 && (l1 - l0).abs() < 1e-5 * l0, "loss {l1} vs {l0}");
        for (a, b) in g1.iter().zip(&g0) {
            let d = (a - b).abs().max().double_value(&[]);
            assert!(d < 1e-5 * (1.0 + b.abs().max().double_value(&[])), "gradient off by {d}");
        }
    }
}
