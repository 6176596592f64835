//! What revision asks of a change before it keeps it: that it raises a score of the whole
//! text. Two scores: the bundle's AR model's log-likelihood of the text (`ar`: another model
//! than the one that proposed the change, one forward pass per candidate) or the masked
//! model's own pseudo-log-likelihood less each word's prior (`pll`: one forward pass per
//! token, and biased towards the model's own proposals).

use super::MaskedGenerator;
use crate::{PipelineError, Result};
use plandiff_bundle::{stage, Bundle};
use plandiff_decoder::Decoder;
use serde::Serialize;
use std::path::Path;
use tch::{nn, Kind, Tensor};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ReviseScore {
    Ar,
    Pll,
}

impl ReviseScore {
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "ar" => Ok(Self::Ar),
            "pll" => Ok(Self::Pll),
            _ => Err(PipelineError::Invalid(format!(
                "--score {s}: use ar (the bundle's ar model's log-likelihood of the text) or pll (the masked model's pseudo-log-likelihood)"
            ))),
        }
    }
}

/// The bundle's AR model, scoring whole texts.
pub(crate) struct ArScorer {
    model: Decoder,
    _vs: nn::VarStore,
}

impl MaskedGenerator {
    /// Loads the bundle's `ar` model for [`ReviseScore::Ar`] (the same tokenizer: a bundle
    /// holds one).
    pub fn with_ar_scorer(mut self, bundle: &Path) -> Result<Self> {
        let l = Bundle::new(bundle).load_decoder(stage::AR, self.device).map_err(|e| {
            PipelineError::Invalid(format!(
                "revise --score ar reads the bundle's ar model: {e} (train it, or use --score pll)"
            ))
        })?;
        self.ar = Some(ArScorer { model: l.model, _vs: l.vs });
        Ok(self)
    }

    /// Log-likelihood of `ids` (`<bos> ...`) under the AR model, every token after `<bos>`.
    pub(super) fn ar_logprob(&self, ids: &[i64]) -> Result<f64> {
        let ar = self
            .ar
            .as_ref()
            .ok_or_else(|| PipelineError::Invalid("internal: revise --score ar without the ar model loaded".into()))?;
        let max = ar.model.config().max_seq_len as usize;
        if ids.len() < 2 || ids.len() > max {
            return Err(PipelineError::Invalid(format!(
                "the text is {} tokens and the ar model scores at most {max}; use --score pll",
                ids.len()
            )));
        }
        let x = Tensor::from_slice(&ids[..ids.len() - 1]).unsqueeze(0).to_device(self.device);
        let y = Tensor::from_slice(&ids[1..]).to_device(self.device);
        Ok(tch::no_grad(|| {
            let lp = ar.model.forward(&x, None, None, false).squeeze_dim(0).log_softmax(-1, Kind::Double);
            lp.gather(1, &y.unsqueeze(1), false).sum(Kind::Double).double_value(&[])
        }))
    }
}

/// The scored tokens to remask: below `below`, or the lowest `fraction` (at least one).
pub(super) fn pick_weakest(scored: &[(usize, f64)], below: Option<f64>, fraction: Option<f64>) -> Vec<usize> {
    let mut pick: Vec<usize> = match (below, fraction) {
        (Some(p), _) => scored.iter().filter(|(_, lp)| *lp < p).map(|(i, _)| *i).collect(),
        (None, Some(f)) => {
            let mut by: Vec<(usize, f64)> = scored.to_vec();
            by.sort_by(|a, b| a.1.total_cmp(&b.1));
            let n = ((f * scored.len() as f64).ceil() as usize).clamp(1, scored.len());
            by.into_iter().take(n).map(|(i, _)| i).collect()
        }
        (None, None) => Vec::new(),
    };
    pick.sort_unstable();
    pick
}
