//! The decoder network.
//!
//! Two position schemes. Learned (bundles from before issue 25): tokens get learned token,
//! position and (with a plan) sentence-slot embeddings; the plan is projected to `d_model`
//! and given the same slot embeddings, so a token can find the latent of its own sentence.
//! Rotary ([`RotaryConfig`]): nothing absolute. Queries and keys are rotated by their
//! positions; given sentence ids, self-attention sees the `window` sentences up to a token's
//! own, and cross-attention reads the slots within `[-(window - 1), lookahead]` of the token's
//! sentence, scored with a learned bias per head and offset. A sliding window then forgets its
//! oldest sentence's cache entries ([`DecoderCache::forget`]) instead of re-reading the text.
//! Each block's cross-attention keys/values are computed from the plan once. The output head
//! is tied to the token embedding.

pub use crate::cache::DecoderCache;
use crate::cache::SlotBiasTable;
use crate::config::{DecoderConfig, RotaryConfig};
use plandiff_layers::{
    AttnMask, Block, CrossContext, FoldedCross, InitStd, KvCache, KvPair, LearnedPositions, Norm, Rotary,
};
use tch::{nn, nn::Module, Device, Kind, Tensor};

/// What a full decoder pass reads.
///
/// # Shapes
/// - `tokens`: `(B, T)` int64; `slots`: `(B, T)` int64 sentence-slot ids (plan models) or `None`;
/// - `plan`: `(B, S, d_latent)`, or `None` for the null plan;
/// - `self_mask`: `(B, 1, T, T)` bool (`true` = may attend; it must include the causal
///   constraint), or `None` for plain causal attention.
#[derive(Clone, Copy)]
pub struct DecoderInput<'a> {
    pub tokens: &'a Tensor,
    pub slots: Option<&'a Tensor>,
    pub plan: Option<&'a Tensor>,
    pub self_mask: Option<&'a Tensor>,
}

impl<'a> DecoderInput<'a> {
    /// Plain causal language modelling of `tokens`: no slots, the null plan, no extra mask.
    pub fn tokens(tokens: &'a Tensor) -> Self {
        Self { tokens, slots: None, plan: None, self_mask: None }
    }
}

#[derive(Debug)]
pub struct Decoder {
    cfg: DecoderConfig,
    wte: nn::Embedding,
    /// Learned absolute positions (`None` with rotary positions).
    wpe: Option<LearnedPositions>,
    slot_emb: Option<nn::Embedding>,
    /// Rotary models with a plan: the cross-attention's bias `(H, window + lookahead)` by the
    /// slot's offset from the token's sentence.
    slot_bias: Option<Tensor>,
    plan_proj: Option<nn::Linear>,
    null_plan: Option<Tensor>,
    blocks: Vec<Block>,
    norm_f: Norm,
    device: Device,
}

impl DecoderCache {
    /// Reads another plan from now on, its slot 0 being sentence `origin` (rotary models: a
    /// sliding window's plan moves with the window; cached positions keep what they read).
    pub fn set_plan(&mut self, model: &Decoder, plan: Option<&Tensor>, batch: i64, origin: i64) {
        self.cross = model.fold_plan(plan, batch);
        self.bias = model.slot_bias_table(self.cross.as_ref());
        self.origin = origin;
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
        let blocks = (0..cfg.shape.n_layers)
            .map(|i| Block::new(&p / "blocks" / i, &cfg.shape.block(cfg.has_cross(i).then_some(d))))
            .collect();
        let (slot_emb, plan_proj, null_plan) = match cfg.plan {
            Some(pc) => (
                cfg.rotary.is_none().then(|| nn::embedding(&p / "slot_emb", pc.max_slots, d, emb)),
                Some(nn::linear(&p / "plan_proj", pc.d_latent, d, InitStd::default().linear(0.02))),
                Some(p.var("null_plan", &[pc.max_slots, pc.d_latent], nn::Init::Randn { mean: 0.0, stdev: 0.02 })),
            ),
            None => (None, None, None),
        };
        let slot_bias = match (cfg.plan, cfg.rotary) {
            (Some(_), Some(r)) => Some(Self::init_slot_bias(&p, r, cfg.shape.n_heads)),
            _ => None,
        };
        Self {
            cfg: cfg.clone(),
            wte: nn::embedding(&p / "wte", cfg.vocab_size, d, emb),
            wpe: cfg.rotary.is_none().then(|| LearnedPositions::new(&p / "wpe", cfg.max_seq_len, d)),
            slot_emb,
            slot_bias,
            plan_proj,
            null_plan,
            blocks,
            norm_f: Norm::new(&p / "norm_f", cfg.shape.norm, d),
            device: p.device(),
        }
    }

    /// The cross-attention's slot bias, ALiBi-like at first: head `h` scores a slot `o`
    /// sentences from the token's own `-|o| / 2^h`, so from step one some heads read the
    /// token's own slot and others a wider span.
    fn init_slot_bias(p: &nn::Path, r: RotaryConfig, heads: i64) -> Tensor {
        let width = r.window + r.lookahead;
        let init: Vec<f32> = (0..heads)
            .flat_map(|h| (0..width).map(move |i| -((i - (r.window - 1)).abs() as f32) * 2f32.powi(-(h as i32))))
            .collect();
        let mut bias = p.var("slot_bias", &[heads, width], nn::Init::Const(0.0));
        tch::no_grad(|| bias.copy_(&Tensor::from_slice(&init).view([heads, width]).to_device(p.device())));
        bias
    }

    pub fn config(&self) -> &DecoderConfig {
        &self.cfg
    }

    /// The token embedding table `(V, D)` (tied to the output layer).
    pub fn token_embeddings(&self) -> &Tensor {
        &self.wte.ws
    }

    /// Rotary positions of `positions` `(B|1, T)` (`None` for learned positions).
    fn rotary(&self, positions: &Tensor) -> Option<Rotary> {
        let r = self.cfg.rotary?;
        Some(Rotary::new(positions, self.cfg.shape.d_model / self.cfg.shape.n_heads, r.base))
    }

    /// Rotary models: which keys of sentences `key_sent` `(B, Tk)` each query of sentence
    /// `q_sent` `(B, Tq)` may see for the sentence window, `(B, 1, Tq, Tk)` bool (causality
    /// and padding are the caller's).
    fn window_mask(&self, q_sent: &Tensor, key_sent: &Tensor) -> Option<Tensor> {
        let r = self.cfg.rotary?;
        let lo = q_sent.unsqueeze(2) - (r.window - 1); // (B, Tq, 1)
        Some(key_sent.unsqueeze(1).ge_tensor(&lo).unsqueeze(1))
    }

    /// Rotary plan models: the cross-attention bias of tokens of sentences `slots` `(B, T)`
    /// over `s` plan slots, `(B, H, T, S)`: the learned bias of each slot's offset from the
    /// token's sentence, `-1e4` outside `[-(window - 1), lookahead]` (a weight of exactly 0
    /// in fp32 and fp16, where `-inf` would give a padding token with no slot in reach NaN).
    fn cross_bias(&self, slots: &Tensor, s: i64) -> Option<Tensor> {
        let (r, table) = (self.cfg.rotary?, self.slot_bias.as_ref()?);
        let (b, t) = slots.size2().expect("slots must be (B, T)");
        let h = table.size()[0];
        let offset = Tensor::arange(s, (Kind::Int64, self.device)).view([1, 1, s]) - slots.unsqueeze(2); // (B, T, S)
        let inside = offset.ge(-(r.window - 1)).logical_and(&offset.le(r.lookahead));
        let idx = (offset + (r.window - 1)).clamp(0, r.window + r.lookahead - 1);
        let bias = table.index_select(1, &idx.reshape([-1])).view([h, b, t, s]).permute([1, 0, 2, 3]); // (B, H, T, S)
        Some(bias.masked_fill(&inside.unsqueeze(1).logical_not(), -1e4))
    }

    /// The [`SlotBiasTable`] of a folded plan (rotary plan models; `None` otherwise).
    pub(crate) fn slot_bias_table(&self, cross: Option<&Vec<FoldedCross>>) -> Option<SlotBiasTable> {
        let (r, s) = (self.cfg.rotary?, cross?.first()?.slots());
        let first = -r.lookahead - 1;
        let sentences = Tensor::arange_start(first, s + r.window, (Kind::Int64, self.device)).unsqueeze(0);
        let bias = tch::no_grad(|| self.cross_bias(&sentences, s))?; // (1, H, Q, S)
        let (h, q) = (bias.size()[1], bias.size()[2]);
        Some(SlotBiasTable { first, rows: bias.permute([0, 2, 1, 3]).reshape([q, h * s]) })
    }

    pub fn device(&self) -> Device {
        self.device
    }

    /// Cross-attention memory for a plan (`None`: the learned null plan), per block.
    ///
    /// # Shapes
    /// - `plan`: `(B, S, d_latent)` with `S <= max_slots`
    fn plan_context(&self, plan: Option<&Tensor>, batch: i64) -> Option<Tensor> {
        let (proj, slot_emb, null) = match (&self.plan_proj, &self.null_plan) {
            (Some(a), Some(c)) => (a, self.slot_emb.as_ref(), c),
            _ => return None,
        };
        let plan = match plan {
            Some(p) => p.shallow_clone(),
            None => null.unsqueeze(0).expand([batch, -1, -1], false), // (B, S, d_latent)
        };
        let mem = proj.forward(&plan); // (B, S, D)
        match slot_emb {
            Some(se) => {
                let slots = Tensor::arange(plan.size()[1], (Kind::Int64, self.device));
                Some(mem + se.forward(&slots).unsqueeze(0))
            }
            None => Some(mem), // rotary: slots are told apart by the cross-attention's bias
        }
    }

    /// Cross-attention keys/values of a plan, one per block with cross-attention.
    fn plan_memory(&self, plan: Option<&Tensor>, batch: i64) -> Option<Vec<KvPair>> {
        let mem = self.plan_context(plan, batch)?;
        Some(self.blocks.iter().filter_map(|b| b.project_context(&mem)).collect())
    }

    fn embed(&self, tokens: &Tensor, positions: &Tensor, slots: Option<&Tensor>) -> Tensor {
        let mut x = self.wte.forward(tokens); // (B, T, D)
        if let Some(wpe) = &self.wpe {
            x = x + wpe.forward(positions);
        }
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
        self.forward_masked(&DecoderInput { tokens, slots, plan, self_mask: None }, train)
    }

    /// [`Decoder::forward`] of a [`DecoderInput`], whose self-attention mask may be explicit.
    pub fn forward_masked(&self, input: &DecoderInput, train: bool) -> Tensor {
        self.head(&self.hidden(input, train))
    }

    /// Mean next-token cross-entropy of [`Decoder::forward_masked`]'s logits against `targets`
    /// `(B, T)` (`ignore_index` positions do not count), with the output head and the loss
    /// fused chunk by chunk ([`plandiff_layers::linear_cross_entropy`]): the same loss and
    /// gradients as `cross_entropy_loss` over the logits, without the `(B, T, V)` logits.
    pub fn loss_masked(&self, input: &DecoderInput, targets: &Tensor, ignore_index: i64, train: bool) -> Tensor {
        let x = self.norm_f.forward(&self.hidden(input, train));
        let d = x.size()[2];
        plandiff_layers::linear_cross_entropy(&x.reshape([-1, d]), &self.wte.ws, &targets.reshape([-1]), ignore_index)
    }

    /// The last block's output `(B, T, D)` (before the final norm) of a full forward pass.
    fn hidden(&self, input: &DecoderInput, train: bool) -> Tensor {
        let DecoderInput { tokens, slots, plan, self_mask } = *input;
        let (b, t) = tokens.size2().expect("tokens must be (B, T)");
        let positions = Tensor::arange(t, (Kind::Int64, self.device)).unsqueeze(0); // (1, T)
        let cross = self.plan_memory(plan, b);
        let rope = self.rotary(&positions);
        // Rotary models with sentence ids: the sentence window on top of the given mask.
        let windowed = slots.and_then(|s| self.window_mask(s, s)).map(|w| {
            let base = match self_mask {
                Some(m) => m.shallow_clone(),
                None => {
                    let i = Tensor::arange(t, (Kind::Int64, self.device));
                    i.unsqueeze(0).le_tensor(&i.unsqueeze(1)).view([1, 1, t, t])
                    // key <= query
                }
            };
            base.logical_and(&w)
        });
        let mask = match (&windowed, self_mask) {
            (Some(w), _) => AttnMask::Custom(w),
            (None, Some(m)) => AttnMask::Custom(m),
            (None, None) => AttnMask::Causal,
        };
        let bias = match (slots, &cross) {
            (Some(s), Some(c)) if !c.is_empty() => self.cross_bias(s, c[0].k.size()[2]),
            _ => None,
        };
        let mut x = plandiff_layers::dropout(self.embed(tokens, &positions, slots), self.cfg.shape.dropout, train);
        // The plan's keys/values, one per block with cross-attention, in block order.
        let mut kv = cross.iter().flatten();
        for block in &self.blocks {
            let ctx = block.has_cross().then(|| kv.next()).flatten().map(|c| CrossContext::Kv(c, bias.as_ref()));
            x = block.forward(&x, mask, None, ctx, train, rope.as_ref());
        }
        x
    }

    /// The learned null plan `(max_slots, d_latent)` (plan models only): what the decoder
    /// reads when there is no plan, and in empty slots.
    pub fn null_plan(&self) -> Option<&Tensor> {
        self.null_plan.as_ref()
    }

    /// A fresh cache; the plan's cross-attention keys/values are computed here, once, and
    /// folded with the cross-attention projections.
    pub fn new_cache(&self, plan: Option<&Tensor>, batch: i64) -> DecoderCache {
        let cross = self.fold_plan(plan, batch);
        DecoderCache {
            layers: (0..self.blocks.len()).map(|_| KvCache::new()).collect(),
            bias: self.slot_bias_table(cross.as_ref()),
            cross,
            sentences: None,
            origin: 0,
        }
    }

    pub(crate) fn fold_plan(&self, plan: Option<&Tensor>, batch: i64) -> Option<Vec<FoldedCross>> {
        tch::no_grad(|| {
            self.plan_context(plan, batch).map(|mem| self.blocks.iter().filter_map(|b| b.fold_context(&mem)).collect())
        })
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
        // Rotary models with sentence ids: every key's sentence, for the window.
        let window = match (self.cfg.rotary, slots) {
            (Some(_), Some(s)) => {
                let all = match &cache.sentences {
                    Some(old) => Tensor::cat(&[old, s], 1),
                    None => s.shallow_clone(),
                };
                let w = self.window_mask(s, &all);
                cache.sentences = Some(all);
                w
            }
            _ => None,
        };
        let custom;
        let mask = match (key_mask, &window) {
            (None, None) if t == 1 => AttnMask::None,
            (None, None) if past == 0 => AttnMask::Causal,
            _ => {
                let m = self.step_mask(t, past, key_mask);
                custom = match &window {
                    Some(w) => m.logical_and(w),
                    None => m,
                };
                AttnMask::Custom(&custom)
            }
        };
        let rope = self.rotary(positions);
        let bias = match (slots, &cache.bias) {
            (Some(s), Some(table)) => Some(table.gather(&(s - cache.origin))), // (B, T, H*S), the folded layout
            _ => None,
        };
        let mut x = self.embed(tokens, positions, slots);
        let mut folded = cache.cross.iter().flatten();
        for (i, block) in self.blocks.iter().enumerate() {
            let cross =
                block.has_cross().then(|| folded.next()).flatten().map(|c| CrossContext::Folded(c, bias.as_ref()));
            x = block.forward(&x, mask, Some(&mut cache.layers[i]), cross, false, rope.as_ref());
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
