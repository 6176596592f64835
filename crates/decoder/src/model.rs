//! The decoder network.
//!
//! Tokens get learned token, position and (with a plan) sentence-slot embeddings. The plan
//! is projected to `d_model`, given the same slot embeddings (so a token can find the latent
//! of its own sentence), and each block's cross-attention keys/values are computed from it
//! once. The output head is tied to the token embedding.

use crate::config::DecoderConfig;
use plandiff_layers::{AttnMask, Block, CrossContext, FoldedCross, InitStd, KvCache, KvPair, LearnedPositions, Norm};
use tch::{nn, nn::Module, Device, Kind, Tensor};

#[derive(Debug)]
pub struct Decoder {
    cfg: DecoderConfig,
    wte: nn::Embedding,
    wpe: LearnedPositions,
    slot_emb: Option<nn::Embedding>,
    plan_proj: Option<nn::Linear>,
    null_plan: Option<Tensor>,
    blocks: Vec<Block>,
    norm_f: Norm,
    device: Device,
}

/// Per-sequence generation state: one self-attention cache per block and the plan's
/// cross-attention keys/values (computed once, reused at every step).
#[derive(Debug)]
pub struct DecoderCache {
    layers: Vec<KvCache>,
    /// Cross-attention to the plan, folded once per plan (see `FoldedCross`).
    cross: Option<Vec<FoldedCross>>,
}

impl DecoderCache {
    /// Number of positions already in the cache.
    pub fn len(&self) -> i64 {
        self.layers.first().map_or(0, KvCache::len)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Sentence-slot index of every token: the number of `<sep>` tokens before it, clamped to
/// `max_slots - 1`. The `<sep>` closing a sentence belongs to that sentence.
pub fn slot_ids(tokens: &[i64], sep: i64, max_slots: i64) -> Vec<i64> {
    let mut slot = 0i64;
    tokens
        .iter()
        .map(|&t| {
            let s = slot.min(max_slots - 1);
            if t == sep {
                slot += 1;
            }
            s
        })
        .collect()
}

impl Decoder {
    /// Builds the network under `p` with GPT-2 style initial weights (N(0, 0.02), residual
    /// projections scaled by `1/sqrt(2 n_layers)`); creation order is fixed, so a seed fixes
    /// the weights.
    pub fn new(p: nn::Path, cfg: &DecoderConfig) -> Self {
        let d = cfg.shape.d_model;
        let emb = nn::EmbeddingConfig { ws_init: nn::Init::Randn { mean: 0.0, stdev: 0.02 }, ..Default::default() };
        let bc = cfg.shape.block(cfg.plan.map(|_| d));
        let blocks = (0..cfg.shape.n_layers).map(|i| Block::new(&p / "blocks" / i, &bc)).collect();
        let (slot_emb, plan_proj, null_plan) = match cfg.plan {
            Some(pc) => (
                Some(nn::embedding(&p / "slot_emb", pc.max_slots, d, emb)),
                Some(nn::linear(&p / "plan_proj", pc.d_latent, d, InitStd::default().linear(0.02))),
                Some(p.var("null_plan", &[pc.max_slots, pc.d_latent], nn::Init::Randn { mean: 0.0, stdev: 0.02 })),
            ),
            None => (None, None, None),
        };
        Self {
            cfg: cfg.clone(),
            wte: nn::embedding(&p / "wte", cfg.vocab_size, d, emb),
            wpe: LearnedPositions::new(&p / "wpe", cfg.max_seq_len, d),
            slot_emb,
            plan_proj,
            null_plan,
            blocks,
            norm_f: Norm::new(&p / "norm_f", cfg.shape.norm, d),
            device: p.device(),
        }
    }

    pub fn config(&self) -> &DecoderConfig {
        &self.cfg
    }

    pub fn device(&self) -> Device {
        self.device
    }

    /// Cross-attention memory for a plan (`None`: the learned null plan), per block.
    ///
    /// # Shapes
    /// - `plan`: `(B, S, d_latent)` with `S <= max_slots`
    fn plan_context(&self, plan: Option<&Tensor>, batch: i64) -> Option<Tensor> {
        let (proj, slot_emb, null) = match (&self.plan_proj, &self.slot_emb, &self.null_plan) {
            (Some(a), Some(b), Some(c)) => (a, b, c),
            _ => return None,
        };
        let plan = match plan {
            Some(p) => p.shallow_clone(),
            None => null.unsqueeze(0).expand([batch, -1, -1], false), // (B, S, d_latent)
        };
        let s = plan.size()[1];
        let slots = Tensor::arange(s, (Kind::Int64, self.device));
        let mem = proj.forward(&plan) + slot_emb.forward(&slots).unsqueeze(0); // (B, S, D)
        Some(mem)
    }

    /// Cross-attention keys/values of a plan, per block.
    fn plan_memory(&self, plan: Option<&Tensor>, batch: i64) -> Option<Vec<KvPair>> {
        let mem = self.plan_context(plan, batch)?;
        Some(self.blocks.iter().filter_map(|b| b.project_context(&mem)).collect())
    }

    fn embed(&self, tokens: &Tensor, positions: &Tensor, slots: Option<&Tensor>) -> Tensor {
        let mut x = self.wte.forward(tokens) + self.wpe.forward(positions); // (B, T, D)
        if let Some(se) = &self.slot_emb {
            let zeros;
            let slots = match slots {
                Some(s) => s,
                None => {
                    zeros = tokens.zeros_like();
                    &zeros
                }
            };
            x = x + se.forward(slots);
        }
        x
    }

    /// Bag-of-words logits of plan latents: each latent's projection (its cross-attention
    /// memory before the slot embedding) scored against the token embeddings, which get no
    /// gradient from it, times `sqrt(d_model)` (trained embeddings have norms near 1, so a
    /// projection of norm 1 reaches logits of about 10). The autoencoder's optional
    /// bag-of-words loss trains latents to name their sentence's words through it. `None`
    /// for a decoder without a plan.
    ///
    /// # Shapes
    /// - `z`: `(N, d_latent)`; returns `(N, V)`
    pub fn plan_word_logits(&self, z: &Tensor) -> Option<Tensor> {
        let proj = self.plan_proj.as_ref()?;
        Some(proj.forward(z).matmul(&self.wte.ws.detach().tr()) * (self.cfg.shape.d_model as f64).sqrt())
    }

    fn head(&self, x: &Tensor) -> Tensor {
        self.norm_f.forward(x).matmul(&self.wte.ws.tr()) // (B, T, V)
    }

    /// Full causal forward pass (training and evaluation).
    ///
    /// # Shapes
    /// - `tokens`: `(B, T)` int64; `slots`: `(B, T)` int64 sentence-slot ids (plan models);
    ///   `plan`: `(B, S, d_latent)` or `None` for the null plan. Returns logits `(B, T, V)`.
    pub fn forward(&self, tokens: &Tensor, slots: Option<&Tensor>, plan: Option<&Tensor>, train: bool) -> Tensor {
        self.forward_masked(tokens, slots, plan, None, train)
    }

    /// [`Decoder::forward`] with an explicit self-attention mask `(B, 1, T, T)` (bool, `true`
    /// = may attend; it must include the causal constraint); `None` is plain causal.
    pub fn forward_masked(
        &self,
        tokens: &Tensor,
        slots: Option<&Tensor>,
        plan: Option<&Tensor>,
        self_mask: Option<&Tensor>,
        train: bool,
    ) -> Tensor {
        let (b, t) = tokens.size2().expect("tokens must be (B, T)");
        let positions = Tensor::arange(t, (Kind::Int64, self.device)).unsqueeze(0); // (1, T)
        let cross = self.plan_memory(plan, b);
        let mask = self_mask.map_or(AttnMask::Causal, AttnMask::Custom);
        let mut x = plandiff_layers::dropout(self.embed(tokens, &positions, slots), self.cfg.shape.dropout, train);
        for (i, block) in self.blocks.iter().enumerate() {
            x = block.forward(&x, mask, None, cross.as_ref().map(|c| CrossContext::Kv(&c[i])), train);
        }
        self.head(&x)
    }

    /// The learned null plan `(max_slots, d_latent)` (plan models only): what the decoder
    /// reads when there is no plan, and in empty slots.
    pub fn null_plan(&self) -> Option<&Tensor> {
        self.null_plan.as_ref()
    }

    /// A fresh cache; the plan's cross-attention keys/values are computed here, once, and
    /// folded with the cross-attention projections.
    pub fn new_cache(&self, plan: Option<&Tensor>, batch: i64) -> DecoderCache {
        let cross = tch::no_grad(|| {
            self.plan_context(plan, batch).map(|mem| self.blocks.iter().filter_map(|b| b.fold_context(&mem)).collect())
        });
        DecoderCache { layers: (0..self.blocks.len()).map(|_| KvCache::new()).collect(), cross }
    }

    /// Incremental forward over `t` new tokens given everything in `cache`.
    ///
    /// # Shapes
    /// - `tokens`, `positions`, `slots`: `(B, t)`; `key_mask`: `(B, past + t)` bool, `true`
    ///   for real tokens (left padding is `false`); returns logits `(B, t, V)`.
    pub fn forward_step(
        &self,
        tokens: &Tensor,
        positions: &Tensor,
        slots: Option<&Tensor>,
        key_mask: Option<&Tensor>,
        cache: &mut DecoderCache,
    ) -> Tensor {
        let (_, t) = tokens.size2().expect("tokens must be (B, T)");
        let past = cache.len();
        let custom;
        let mask = match key_mask {
            None if t == 1 => AttnMask::None,
            None if past == 0 => AttnMask::Causal,
            _ => {
                custom = self.step_mask(t, past, key_mask);
                AttnMask::Custom(&custom)
            }
        };
        let mut x = self.embed(tokens, positions, slots);
        for (i, block) in self.blocks.iter().enumerate() {
            let cross = cache.cross.as_ref().map(|c| CrossContext::Folded(&c[i]));
            x = block.forward(&x, mask, Some(&mut cache.layers[i]), cross, false);
        }
        self.head(&x)
    }

    /// `(B|1, 1, t, past + t)` bool: query `i` sees key `j <= past + i` that is not padding,
    /// and always itself (a padding query with no visible key would give NaN).
    fn step_mask(&self, t: i64, past: i64, key_mask: Option<&Tensor>) -> Tensor {
        let opts = (Kind::Int64, self.device);
        let q = Tensor::arange(t, opts).unsqueeze(1) + past; // (t, 1)
        let k = Tensor::arange(past + t, opts).unsqueeze(0); // (1, past + t)
        let causal = k.le_tensor(&q); // (t, past + t)
        let diag = k.eq_tensor(&q);
        let m = match key_mask {
            Some(km) => causal.unsqueeze(0).logical_and(&km.unsqueeze(1)), // (B, t, past + t)
            None => causal.unsqueeze(0),
        };
        m.logical_or(&diag.unsqueeze(0)).unsqueeze(1) // (B, 1, t, past + t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::PlanConfig;

    fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
        (a - b).abs().max().double_value(&[])
    }

    fn check_cached_equals_full(plan_cfg: Option<PlanConfig>) {
        tch::manual_seed(1);
        let vs = nn::VarStore::new(Device::Cpu);
        let cfg = DecoderConfig::test(50, plan_cfg);
        let model = Decoder::new(vs.root(), &cfg);
        let (b, t) = (2i64, 12i64);
        let tokens = Tensor::randint(50, [b, t], (Kind::Int64, Device::Cpu));
        let slots_v: Vec<i64> = (0..b * t).map(|i| (i % t) / 4).collect();
        let slots = Tensor::from_slice(&slots_v).view([b, t]);
        let plan = plan_cfg.map(|p| Tensor::randn([b, p.max_slots, p.d_latent], (Kind::Float, Device::Cpu)));
        let full = tch::no_grad(|| model.forward(&tokens, Some(&slots), plan.as_ref(), false));
        // Prefill 5 tokens, then one at a time.
        let mut cache = model.new_cache(plan.as_ref(), b);
        let pos = Tensor::arange(t, (Kind::Int64, Device::Cpu)).unsqueeze(0).expand([b, t], false);
        let mut parts = vec![tch::no_grad(|| {
            model.forward_step(
                &tokens.narrow(1, 0, 5),
                &pos.narrow(1, 0, 5),
                Some(&slots.narrow(1, 0, 5)),
                None,
                &mut cache,
            )
        })];
        for i in 5..t {
            parts.push(tch::no_grad(|| {
                model.forward_step(
                    &tokens.narrow(1, i, 1),
                    &pos.narrow(1, i, 1),
                    Some(&slots.narrow(1, i, 1)),
                    None,
                    &mut cache,
                )
            }));
        }
        let inc = Tensor::cat(&parts, 1);
        let d = max_diff(&full, &inc);
        assert!(d < 1e-5, "cached vs full max abs diff {d}");
        if let (Some(p), Some(pc)) = (plan.as_ref(), plan_cfg) {
            // The plan matters: the null plan gives other logits.
            let other = tch::no_grad(|| model.forward(&tokens, Some(&slots), None, false));
            assert!(max_diff(&full, &other) > 1e-4);
            assert_eq!(p.size()[1], pc.max_slots);
        }
    }

    #[test]
    fn cached_equals_full_without_plan() {
        check_cached_equals_full(None);
    }

    #[test]
    fn cached_equals_full_with_cross_attention() {
        check_cached_equals_full(Some(PlanConfig { d_latent: 8, max_slots: 4 }));
    }

    #[test]
    fn left_padding_does_not_change_logits() {
        tch::manual_seed(2);
        let vs = nn::VarStore::new(Device::Cpu);
        let model = Decoder::new(vs.root(), &DecoderConfig::test(40, None));
        let row = [5i64, 9, 3, 17, 22];
        let alone = tch::no_grad(|| model.forward(&Tensor::from_slice(&row).unsqueeze(0), None, None, false));
        // The same row left-padded by 3 in a batch of one.
        let padded: Vec<i64> = [0, 0, 0].iter().chain(row.iter()).copied().collect();
        let mask = Tensor::from_slice(&[false, false, false, true, true, true, true, true]).unsqueeze(0);
        let pos = Tensor::from_slice(&[0i64, 0, 0, 0, 1, 2, 3, 4]).unsqueeze(0);
        let mut cache = model.new_cache(None, 1);
        let out = tch::no_grad(|| {
            model.forward_step(&Tensor::from_slice(&padded).unsqueeze(0), &pos, None, Some(&mask), &mut cache)
        });
        let d = max_diff(&alone, &out.narrow(1, 3, 5));
        assert!(d < 1e-5, "padded vs alone {d}");
        assert!(!bool::try_from(out.isnan().any()).unwrap());
    }

    #[test]
    fn slot_ids_count_separators() {
        assert_eq!(slot_ids(&[0, 5, 6, 2, 7, 2, 8, 2, 9], 2, 3), vec![0, 0, 0, 0, 1, 1, 2, 2, 2]);
    }
}
