//! `plandiff eval --stage autoencoder`: oracle-plan against null-plan perplexity and token
//! accuracy (also the validation metrics logged in training).

use super::batch::{plan_of, to_device, BatchTensors, DocSet};
use super::frozen::{invalid, split_plans, FrozenPlans};
use crate::stages::EvalRequest;
use crate::{Result, TrainError};
use plandiff_bundle::{load_autoencoder, open_split, Autoencoder, Bundle, LatentNoise};
use serde::Serialize;
use tch::{Device, Kind, Tensor};

/// Summed cross-entropy, token count and correct argmax predictions of a batch with the
/// oracle plan (`oracle = true`) or the null plan.
fn score(ae: &Autoencoder, b: &BatchTensors, oracle: bool, z: &Tensor) -> (f64, i64, i64) {
    let batch = b.inputs.size()[0];
    let plan = oracle.then(|| plan_of(ae, b, z, batch, (0.0, LatentNoise::Additive)));
    let logits = ae.decoder.forward(&b.inputs, Some(&b.slots), plan.as_ref(), false);
    let v = logits.size()[2];
    let y = b.targets.reshape(-1);
    let loss = logits.view([-1, v]).cross_entropy_loss::<Tensor>(&y, None, tch::Reduction::Sum, -100, 0.0);
    let valid = y.ne(-100);
    let correct = logits.argmax(-1, false).reshape(-1).eq_tensor(&y).logical_and(&valid).sum(Kind::Int64);
    (loss.double_value(&[]), valid.sum(Kind::Int64).int64_value(&[]), correct.int64_value(&[]))
}

/// Oracle-plan against null-plan quality of an autoencoder on held-out documents.
#[derive(Debug, Clone, Serialize)]
pub struct PlanEval {
    pub documents: usize,
    pub tokens: i64,
    pub loss_oracle: f64,
    pub loss_null: f64,
    pub ppl_oracle: f64,
    pub ppl_null: f64,
    /// `ppl_oracle / ppl_null`: below 1 when the plan carries information the decoder uses.
    pub ppl_ratio: f64,
    pub accuracy_oracle: f64,
    pub accuracy_null: f64,
}

/// Batch geometry of an evaluation.
#[derive(Debug, Clone, Copy)]
pub(super) struct EvalShape {
    pub(super) batch: usize,
    pub(super) max_batches: Option<usize>,
    /// Tokens kept per sentence in a batch's sentence table.
    pub(super) max_len: usize,
    /// Decoder tokens per window.
    pub(super) max_tokens: usize,
}

/// Oracle- and null-plan scores of `set`'s windows; the oracle plan is `plans`' latents.
pub(super) fn plan_eval(
    ae: &Autoencoder,
    set: &DocSet,
    shape: EvalShape,
    device: Device,
    plans: &FrozenPlans,
) -> PlanEval {
    let EvalShape { batch, max_batches, max_len, max_tokens } = shape;
    let n = set.windows.len();
    let nb = n.div_ceil(batch.max(1));
    let nb = max_batches.map_or(nb, |m| m.min(nb));
    let mut acc = [(0f64, 0i64, 0i64); 2];
    tch::no_grad(|| {
        for bi in 0..nb {
            let idx: Vec<usize> = (bi * batch..((bi + 1) * batch).min(n)).collect();
            let db = set.batch(&idx, max_len);
            let b = to_device(&db, max_tokens, device);
            let z = plans.latents(set, &idx, &db);
            for (k, oracle) in [true, false].into_iter().enumerate() {
                let (l, c, r) = score(ae, &b, oracle, &z);
                acc[k].0 += l;
                acc[k].1 += c;
                acc[k].2 += r;
            }
        }
    });
    let tokens = acc[0].1.max(1);
    let (lo, ln) = (acc[0].0 / tokens as f64, acc[1].0 / tokens as f64);
    PlanEval {
        documents: (nb * batch).min(n),
        tokens: acc[0].1,
        loss_oracle: lo,
        loss_null: ln,
        ppl_oracle: lo.exp(),
        ppl_null: ln.exp(),
        ppl_ratio: (lo - ln).exp(),
        accuracy_oracle: acc[0].2 as f64 / tokens as f64,
        accuracy_null: acc[1].2 as f64 / tokens as f64,
    }
}

/// `plandiff eval --stage autoencoder`: oracle-plan and null-plan perplexity and token
/// accuracy on a prepared split.
pub fn evaluate_autoencoder(req: &EvalRequest) -> Result<PlanEval> {
    let l = load_autoencoder(&Bundle::open(req.bundle)?, req.device)?;
    let sp = l.tokenizer.special();
    let set = DocSet::from_set(open_split(req.data, req.split, &l.tokenizer)?, sp, l.ae.max_slots as usize);
    if set.windows.is_empty() {
        return Err(TrainError::Invalid(format!(
            "{}: the {} split holds no complete document",
            req.data.display(),
            req.split
        )));
    }
    let cfg = &l.config;
    let space = &l.space;
    let enc = space.encoder(Device::Cpu).map_err(invalid)?;
    let plans = split_plans(&enc, space, req.data, req.split, &set, req.device)?;
    let max_tokens = cfg.provenance.train.as_ref().map_or(cfg.model.max_seq_len as usize, |t| t.seq_len);
    let shape =
        EvalShape { batch: req.batch, max_batches: req.max_batches, max_len: super::SENTENCE_TOKENS, max_tokens };
    Ok(plan_eval(&l.ae, &set, shape, req.device, &plans))
}
