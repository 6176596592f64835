//! BundleLm: perplexity of a continuation under a plain LM (a bundle's `ar` model; `--judge`).
//! Not the independent sentence-encoder judge ([`crate::judge`]), which scores meaning.

use crate::{PipelineError, Result};
use plandiff_bundle::{stage, Bundle};
use plandiff_data::{split_sentences, TextTokenizer};
use plandiff_decoder::Decoder;
use std::collections::HashMap;
use std::path::Path;
use tch::{nn, Device, Kind, Tensor};

/// The bundle's own ar model scoring continuations by perplexity (`self_ppl` in reports: self
/// perplexity, which flatters that model's own samples; fluency is `fluency_ppl`, from
/// `plandiff_fluency`).
pub struct BundleLm {
    model: Decoder,
    pub(super) tokenizer: TextTokenizer,
    _vs: nn::VarStore,
}

impl BundleLm {
    pub fn load(bundle: &Path, device: Device) -> Result<Self> {
        let l = Bundle::new(bundle).load_decoder(stage::AR, device).map_err(|e| {
            PipelineError::Invalid(format!("judge {}: {e} (the judge is a bundle's `ar` model)", bundle.display()))
        })?;
        Ok(Self { model: l.model, tokenizer: l.tokenizer, _vs: l.vs })
    }

    /// Perplexity of `continuation` after `prompt` (NaN when the continuation is empty).
    pub fn perplexity(&self, prompt: &str, continuation: &str) -> Result<f64> {
        if continuation.trim().is_empty() {
            return Ok(f64::NAN);
        }
        let p_sent = split_sentences(prompt);
        let mut all: Vec<&str> = p_sent.clone();
        let c_sent = split_sentences(continuation);
        all.extend(c_sent.iter().copied());
        let sep = self.tokenizer.special().sep;
        let mut ids = self.tokenizer.encode_document(&all, false)?;
        ids.push(sep);
        // bos + prompt + sep (just bos without a prompt).
        let np = if p_sent.is_empty() { 1 } else { self.tokenizer.encode_document(&p_sent, false)?.len() + 1 };
        let max = self.model.config().max_seq_len as usize;
        ids.truncate(max);
        if ids.len() <= np {
            return Ok(f64::NAN);
        }
        let t: Vec<i64> = ids.iter().map(|&x| x as i64).collect();
        let dev = self.model.device();
        let x = Tensor::from_slice(&t[..t.len() - 1]).unsqueeze(0).to_device(dev);
        let y = Tensor::from_slice(&t[1..]).to_device(dev);
        let nll = tch::no_grad(|| {
            let logits = self.model.forward(&x, None, None, false).squeeze_dim(0).to_kind(Kind::Float);
            let lp = logits.log_softmax(-1, Kind::Float);
            let picked = lp.gather(1, &y.unsqueeze(1), false).squeeze_dim(1).neg();
            picked.narrow(0, (np - 1) as i64, (t.len() - np) as i64).mean(Kind::Double).double_value(&[])
        });
        Ok(nll.exp())
    }

    /// For every whole-word token of the model (a leading space, then three or more
    /// letters), the other such word nearest to it by cosine of the token embeddings: the
    /// repair benchmark's close substitutes (`dog` -> `cat`).
    pub fn nearest_words(&self) -> Result<HashMap<String, String>> {
        let mut ids = Vec::new();
        let mut words = Vec::new();
        for t in 0..self.tokenizer.vocab_size() {
            let piece = self.tokenizer.decode(&[t as u32])?;
            if let Some(w) = piece.strip_prefix(' ').filter(|w| crate::repair::replaceable(w)) {
                ids.push(t as i64);
                words.push(w.to_string());
            }
        }
        if ids.len() < 2 {
            return Ok(HashMap::new());
        }
        let best = tch::no_grad(|| {
            let e = self.model.token_embeddings().to_device(Device::Cpu).to_kind(Kind::Float);
            let e = e.index_select(0, &Tensor::from_slice(&ids));
            let e = &e / e.norm_scalaropt_dim(2, [1], true).clamp_min(1e-8);
            let mut sim = e.matmul(&e.tr());
            let _ = sim.fill_diagonal_(-2.0, false);
            sim.argmax(1, false)
        });
        let best = Vec::<i64>::try_from(best).map_err(|e| PipelineError::Invalid(format!("nearest words: {e}")))?;
        Ok(words.iter().zip(best).map(|(w, j)| (w.clone(), words[j as usize].clone())).collect())
    }
}
