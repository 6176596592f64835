//! all-MiniLM-L6-v2 (Wang et al. 2020, tuned by sentence-transformers) on tch: a BERT
//! encoder (6 layers, width 384, 12 heads, post-LayerNorm, GELU), mean pooling over the
//! attention mask, L2 normalisation: the sentence embedding `SentenceTransformer(...)` gives.
//! Weights are read by their Hugging Face names (`encoder.layer.0.attention.self.query.weight`);
//! the pooler is not used.

use crate::bert::{padding_bias, pool, Layer, LayerNorm, Weights};
use tch::{Kind, Tensor};

/// Width, depth and heads of the checkpoint (checked against the weights' shapes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BertShape {
    pub hidden: i64,
    pub layers: usize,
    pub heads: i64,
}

const LN_EPS: f64 = 1e-12;
const NAMES: [&str; 8] = [
    "attention.self.query",
    "attention.self.key",
    "attention.self.value",
    "attention.output.dense",
    "attention.output.LayerNorm",
    "intermediate.dense",
    "output.dense",
    "output.LayerNorm",
];

pub struct MiniLm {
    word: Tensor,
    position: Tensor,
    token_type: Tensor,
    emb_norm: LayerNorm,
    layers: Vec<Layer>,
    shape: BertShape,
}

impl MiniLm {
    /// Builds the encoder from a checkpoint's tensors (`model.safetensors`).
    pub fn from_tensors(tensors: Vec<(String, Tensor)>, heads: i64) -> Result<Self, String> {
        let mut w = Weights(tensors.into_iter().collect());
        let layers = w.layers(&NAMES)?;
        let word = w.take("embeddings.word_embeddings.weight")?;
        let hidden = word.size()[1];
        if layers.is_empty() || heads <= 0 || hidden % heads != 0 {
            return Err(format!("not a BERT checkpoint of {heads} heads ({} layers, width {hidden})", layers.len()));
        }
        let shape = BertShape { hidden, layers: layers.len(), heads };
        Ok(Self {
            word,
            position: w.take("embeddings.position_embeddings.weight")?,
            token_type: w.take("embeddings.token_type_embeddings.weight")?,
            emb_norm: w.norm("embeddings.LayerNorm")?,
            layers,
            shape,
        })
    }

    /// The same model on `device`.
    pub fn to_device(self, device: tch::Device) -> Self {
        Self {
            word: self.word.to_device(device),
            position: self.position.to_device(device),
            token_type: self.token_type.to_device(device),
            emb_norm: self.emb_norm.moved_to(device),
            layers: self.layers.into_iter().map(|l| l.moved_to(device)).collect(),
            shape: self.shape,
        }
    }

    /// Width of its hidden states and embeddings.
    pub fn hidden(&self) -> i64 {
        self.shape.hidden
    }

    /// Rows of its word-embedding table: every token id must be below it.
    pub fn vocab_rows(&self) -> i64 {
        self.word.size()[0]
    }

    /// The longest input the position table covers.
    pub fn max_positions(&self) -> i64 {
        self.position.size()[0]
    }

    /// Hidden states `(B, T, H)` of token ids `(B, T)` with `mask` `(B, T)` (1 on real
    /// tokens): BERT with post-LayerNorm blocks, token type 0 everywhere.
    ///
    /// # Shapes
    /// `ids`, `mask`: `(B, T)`, `T <= max_positions()`.
    pub fn forward(&self, ids: &Tensor, mask: &Tensor) -> Tensor {
        let (b, t) = ids.size2().unwrap_or((1, 1));
        let pos = Tensor::arange(t, (Kind::Int64, ids.device()));
        let x = self.word.index_select(0, &ids.reshape(-1)).view([b, t, -1])
            + self.position.index_select(0, &pos).unsqueeze(0)
            + self.token_type.get(0).view([1, 1, -1]);
        let x = self.emb_norm.forward(&x, LN_EPS);
        let bias = padding_bias(mask);
        self.layers.iter().fold(x, |x, l| l.forward(&x, &bias, self.shape.heads, LN_EPS))
    }

    /// L2-normalised mean-pooled embeddings `(B, H)`.
    pub fn embed(&self, ids: &Tensor, mask: &Tensor) -> Tensor {
        pool(&self.forward(ids, mask), mask)
    }
}
