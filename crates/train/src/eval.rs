//! Validation loss over a token set: consecutive windows, teacher forcing.

use plandiff_data::TokenSet;
use plandiff_decoder::Decoder;
use serde::Serialize;
use tch::{Kind, Tensor};

#[derive(Debug, Clone, Copy, Serialize)]
pub struct EvalResult {
    pub loss: f64,
    pub perplexity: f64,
    pub tokens: u64,
    pub token_accuracy: f64,
}

/// Mean next-token cross-entropy over up to `max_batches` batches of `batch` consecutive
/// windows of `seq_len + 1` tokens (all windows when `max_batches` is `None`).
pub fn evaluate_loss(
    model: &Decoder,
    set: &TokenSet,
    seq_len: usize,
    batch: usize,
    max_batches: Option<usize>,
) -> EvalResult {
    let dev = model.device();
    let n_windows = (set.tokens.len().saturating_sub(1)) / seq_len;
    let total_batches = n_windows.div_ceil(batch.max(1));
    let nb = max_batches.map_or(total_batches, |m| m.min(total_batches));
    let (mut sum, mut count, mut correct) = (0f64, 0u64, 0u64);
    tch::no_grad(|| {
        for bi in 0..nb {
            let rows: Vec<usize> = (bi * batch..((bi + 1) * batch).min(n_windows)).collect();
            let mut data = Vec::with_capacity(rows.len() * (seq_len + 1));
            for &r in &rows {
                data.extend(set.window(r * seq_len, seq_len + 1));
            }
            let t = Tensor::from_slice(&data).view([rows.len() as i64, seq_len as i64 + 1]).to_device(dev);
            let x = t.narrow(1, 0, seq_len as i64);
            let y = t.narrow(1, 1, seq_len as i64);
            let logits = model.forward(&x, None, None, false); // (B, T, V)
            let v = logits.size()[2];
            let loss =
                logits.view([-1, v]).cross_entropy_loss::<Tensor>(&y.reshape(-1), None, tch::Reduction::Sum, -100, 0.0);
            sum += loss.double_value(&[]);
            correct += logits.argmax(-1, false).eq_tensor(&y).sum(Kind::Int64).int64_value(&[]) as u64;
            count += (rows.len() * seq_len) as u64;
        }
    });
    let loss = if count > 0 { sum / count as f64 } else { f64::NAN };
    EvalResult { loss, perplexity: loss.exp(), tokens: count, token_accuracy: correct as f64 / count.max(1) as f64 }
}
