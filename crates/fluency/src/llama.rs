//! The Llama architecture (SmolLM2's) on tch, built from a GGUF file's metadata and weights:
//! RMSNorm, rotary positions with the file's theta, grouped-query attention, a SwiGLU MLP,
//! the output head tied to the token embeddings.
//!
//! | GGUF | here | transformers |
//! |---|---|---|
//! | `token_embd.weight` | `embed` `(V, D)` | `model.embed_tokens.weight` (and the tied `lm_head`) |
//! | `blk.N.attn_{q,k,v,output}.weight` | `Layer::{wq, wk, wv, wo}` | `self_attn.{q,k,v,o}_proj.weight` |
//! | `blk.N.ffn_{gate,up,down}.weight` | `Layer::{gate, up, down}` | `mlp.{gate,up,down}_proj.weight` |
//! | `blk.N.{attn,ffn}_norm.weight`, `output_norm.weight` | norms | `{input,post_attention}_layernorm`, `norm` |
//!
//! llama.cpp stores `wq` and `wk` with each head's rows interleaved (its converter's
//! `permute`: row `h * Dh/2 + j` moves to `2j + h`), for rotary positions that turn adjacent
//! pairs `(2j, 2j + 1)`. Turning those pairs on the stored weights is the same arithmetic as
//! transformers' `rotate_half` on the un-permuted ones, so the weights are used as stored.

use crate::gguf::{Gguf, GgufError};
use tch::{Kind, Tensor};

/// The model's sizes, from the file's `llama.*` metadata, bounded.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LlamaConfig {
    pub vocab: i64,
    pub d_model: i64,
    pub n_layers: i64,
    pub n_heads: i64,
    pub n_kv_heads: i64,
    pub d_ff: i64,
    pub rope_theta: f64,
    pub norm_eps: f64,
    pub context: i64,
}

impl LlamaConfig {
    pub fn from_gguf(g: &Gguf, vocab: i64) -> Result<Self, GgufError> {
        let arch = g.string("general.architecture")?;
        if arch != "llama" {
            return Err(g.error(format!("its architecture is `{arch}`; the judge runs `llama` models")));
        }
        let u = |k: &str, max: u64| g.uint(&format!("llama.{k}"), max).map(|v| v as i64);
        let c = Self {
            vocab,
            d_model: u("embedding_length", 1 << 16)?,
            n_layers: u("block_count", 512)?,
            n_heads: u("attention.head_count", 1024)?,
            n_kv_heads: u("attention.head_count_kv", 1024)?,
            d_ff: u("feed_forward_length", 1 << 18)?,
            rope_theta: g.float("llama.rope.freq_base")?,
            norm_eps: g.float("llama.attention.layer_norm_rms_epsilon")?,
            context: u("context_length", 1 << 20)?,
        };
        let ok = c.d_model > 0
            && c.n_layers > 0
            && c.n_heads > 0
            && c.n_kv_heads > 0
            && c.d_ff > 0
            && c.d_model % c.n_heads == 0
            && c.n_heads % c.n_kv_heads == 0
            && (c.d_model / c.n_heads) % 2 == 0
            && c.rope_theta > 1.0
            && c.norm_eps > 0.0
            && (1..=1 << 20).contains(&c.vocab);
        if !ok {
            return Err(g.error(format!("its llama.* sizes do not make a model: {c:?}")));
        }
        Ok(c)
    }

    pub fn head_dim(&self) -> i64 {
        self.d_model / self.n_heads
    }
}

struct Layer {
    attn_norm: Tensor,
    wq: Tensor,
    wk: Tensor,
    wv: Tensor,
    wo: Tensor,
    ffn_norm: Tensor,
    gate: Tensor,
    up: Tensor,
    down: Tensor,
}

pub struct Llama {
    pub config: LlamaConfig,
    embed: Tensor,
    layers: Vec<Layer>,
    out_norm: Tensor,
    /// `1 / theta^(2j / Dh)`, `(Dh/2,)` f32.
    inv_freq: Tensor,
}

impl Llama {
    /// Reads every weight of `g` (dequantised to f32) onto `device`, each checked for its shape.
    pub fn from_gguf(g: &mut Gguf, config: LlamaConfig, device: tch::Device) -> Result<Self, GgufError> {
        let (d, ff, hd) = (config.d_model, config.d_ff, config.head_dim());
        let kv = config.n_kv_heads * hd;
        let mut t = |name: String, shape: &[i64]| g.tensor(&name, shape).map(|x| x.to_device(device));
        let embed = t("token_embd.weight".into(), &[config.vocab, d])?;
        let mut layers = Vec::with_capacity(config.n_layers as usize);
        for i in 0..config.n_layers {
            let p = |n: &str| format!("blk.{i}.{n}.weight");
            layers.push(Layer {
                attn_norm: t(p("attn_norm"), &[d])?,
                wq: t(p("attn_q"), &[d, d])?,
                wk: t(p("attn_k"), &[kv, d])?,
                wv: t(p("attn_v"), &[kv, d])?,
                wo: t(p("attn_output"), &[d, d])?,
                ffn_norm: t(p("ffn_norm"), &[d])?,
                gate: t(p("ffn_gate"), &[ff, d])?,
                up: t(p("ffn_up"), &[ff, d])?,
                down: t(p("ffn_down"), &[d, ff])?,
            });
        }
        let out_norm = t("output_norm.weight".into(), &[d])?;
        let exps = Tensor::arange_start_step(0, hd, 2, (Kind::Int64, device)).to_kind(Kind::Float) / hd as f64;
        let inv_freq = Tensor::from(config.rope_theta as f32).to_device(device).pow(&exps).reciprocal();
        Ok(Self { config, embed, layers, out_norm, inv_freq })
    }

    fn rms(&self, x: &Tensor, w: &Tensor) -> Tensor {
        let var = x.square().mean_dim([-1i64].as_slice(), true, Kind::Float);
        x * (var + self.config.norm_eps).rsqrt() * w
    }

    /// Rotary positions on adjacent pairs: `x` `(B, H, T, Dh)`, `cos`/`sin` `(T, Dh/2)`.
    fn rotate(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Tensor {
        let s = x.size();
        let pairs = x.view([s[0], s[1], s[2], s[3] / 2, 2]); // (B, H, T, Dh/2, 2)
        let (a, b) = (pairs.select(-1, 0), pairs.select(-1, 1));
        let out = Tensor::stack(&[&a * cos - &b * sin, &a * sin + &b * cos], -1);
        out.view([s[0], s[1], s[2], s[3]])
    }

    /// Hidden states `(B, T, D)` after the final norm, of right-padded `ids` `(B, T)` (causal
    /// attention: padding after a row's tokens changes none of them).
    pub fn hidden(&self, ids: &Tensor) -> Tensor {
        let c = &self.config;
        let (b, t) = (ids.size()[0], ids.size()[1]);
        let (h, hkv, hd) = (c.n_heads, c.n_kv_heads, c.head_dim());
        let pos = Tensor::arange(t, (Kind::Float, ids.device()));
        let angles = pos.unsqueeze(1) * self.inv_freq.unsqueeze(0); // (T, Dh/2)
        let (cos, sin) = (angles.cos(), angles.sin());
        let mut x = Tensor::embedding(&self.embed, ids, -1, false, false); // (B, T, D)
        for l in &self.layers {
            let a = self.rms(&x, &l.attn_norm);
            let q = a.matmul(&l.wq.tr()).view([b, t, h, hd]).transpose(1, 2); // (B, H, T, Dh)
            let k = a.matmul(&l.wk.tr()).view([b, t, hkv, hd]).transpose(1, 2); // (B, Hkv, T, Dh)
            let v = a.matmul(&l.wv.tr()).view([b, t, hkv, hd]).transpose(1, 2);
            let (q, k) = (Self::rotate(&q, &cos, &sin), Self::rotate(&k, &cos, &sin));
            let rep = h / hkv;
            let (k, v) = (k.repeat_interleave_self_int(rep, 1, None), v.repeat_interleave_self_int(rep, 1, None));
            let y = Tensor::scaled_dot_product_attention(&q, &k, &v, None::<Tensor>, 0.0, true, None, false);
            let y = y.transpose(1, 2).contiguous().view([b, t, c.d_model]); // (B, T, D)
            x = x + y.matmul(&l.wo.tr());
            let m = self.rms(&x, &l.ffn_norm);
            let gated = m.matmul(&l.gate.tr()).silu() * m.matmul(&l.up.tr());
            x = x + gated.matmul(&l.down.tr());
        }
        self.rms(&x, &self.out_norm)
    }

    pub fn device(&self) -> tch::Device {
        self.embed.device()
    }

    /// Next-token logits `(..., V)` of hidden states `(..., D)` (the tied head).
    pub fn head(&self, hidden: &Tensor) -> Tensor {
        hidden.matmul(&self.embed.tr())
    }
}
