//! `[autoencoder.plan.distill]` (issue 39): the decoder learns a teacher bundle's whole hybrid
//! sampler, so that one pass a token writes what the teacher's levers needed three passes for.
//!
//! The teacher's next-token logits are those `generate --mode hybrid` samples from
//! (`plandiff_decoder::Prior` and `generate_guided`):
//! `(1 - p) (null + w (plan - null)) + p ar`, with `w` its plan guidance and `p` its `ar`
//! prior; the student's loss is `KL(teacher || student)` per target token, averaged. Teacher and
//! student read the same text and the same (noised) plan; empty slots hold each model's own
//! null plan, as they do when it writes.

use crate::{Result, TrainError};
use plandiff_bundle::{load_autoencoder, stage, Autoencoder, Bundle, Distill};
use plandiff_decoder::{Decoder, DecoderInput};
use plandiff_sentence::PlanSpace;
use tch::{nn, Device, Kind, Tensor};

/// The teacher's models, loaded once.
pub(super) struct Teacher {
    ae: Autoencoder,
    ar: Option<Decoder>,
    settings: Distill,
    _vs: Vec<nn::VarStore>,
}

impl Teacher {
    const WHAT: &'static str = "[autoencoder.plan.distill] teacher";

    /// Loads `settings.teacher`'s autoencoder (which must share `space` and `vocab_size`) and,
    /// with a prior, its `ar` model (the same vocabulary).
    pub(super) fn load(settings: &Distill, space: &PlanSpace, vocab_size: i64, device: Device) -> Result<Self> {
        let dir = &settings.teacher;
        let bundle = Bundle::open(dir)
            .map_err(|e| TrainError::Invalid(format!("{}: {e}; give a trained bundle", Self::WHAT)))?;
        let loaded = load_autoencoder(&bundle, device)?;
        if &loaded.space != space {
            return Err(TrainError::Invalid(format!(
                "{}: {}'s plan space is not this run's (another encoder or corpus statistics); distil from a bundle of the same space",
                Self::WHAT,
                dir.display()
            )));
        }
        if loaded.ae.decoder.config().vocab_size != vocab_size {
            return Err(TrainError::Invalid(format!(
                "{}: {}'s vocabulary ({}) is not this run's ({vocab_size}); use the teacher's tokenizer",
                Self::WHAT,
                dir.display(),
                loaded.ae.decoder.config().vocab_size
            )));
        }
        let mut vs = vec![loaded.vs];
        let ar = if settings.ar_prior > 0.0 {
            if !bundle.has_stage(stage::AR) {
                return Err(TrainError::Invalid(format!(
                    "{}: {} has no `ar` model for ar_prior {}; set ar_prior = 0 or give a bundle with one",
                    Self::WHAT,
                    dir.display(),
                    settings.ar_prior
                )));
            }
            let d = bundle.load_decoder(stage::AR, device)?;
            if d.config.model.vocab_size != vocab_size {
                return Err(TrainError::Invalid(format!(
                    "{}: {}'s `ar` vocabulary differs from the autoencoder's; retrain it",
                    Self::WHAT,
                    dir.display()
                )));
            }
            vs.push(d.vs);
            Some(d.model)
        } else {
            None
        };
        Ok(Self { ae: loaded.ae, ar, settings: settings.clone(), _vs: vs })
    }

    /// The teacher's next-token log-probabilities `(B, T, V)` (float) of `tokens` `(B, T)` under
    /// `plan` `(B, S, d)`, whose entries where `real` `(B, S)` is false are its null plan's.
    pub(super) fn log_probs(&self, tokens: &Tensor, slots: &Tensor, plan: &Tensor, real: &Tensor) -> Tensor {
        tch::no_grad(|| {
            let (b, _, _) = plan.size3().expect("plan (B, S, d)");
            let null = self.ae.null_plan().unsqueeze(0).expand([b, -1, -1], false).to_kind(plan.kind());
            let plan = plan.where_self(&real.unsqueeze(2), &null);
            let run = |plan: Option<&Tensor>, model: &Decoder| {
                model
                    .forward_masked(&DecoderInput { tokens, slots: Some(slots), plan, self_mask: None }, false)
                    .to_kind(Kind::Float)
            };
            let cond = run(Some(&plan), &self.ae.decoder);
            let (w, p) = (self.settings.plan_guidance, self.settings.ar_prior);
            let guided = if w == 1.0 {
                cond
            } else {
                let uncond = run(Some(&null.contiguous()), &self.ae.decoder);
                &uncond + (cond - &uncond) * w
            };
            let mixed = match &self.ar {
                Some(ar) => guided * (1.0 - p) + run(None, ar) * p,
                None => guided,
            };
            mixed.log_softmax(-1, Kind::Float)
        })
    }
}

/// Mean `KL(teacher || student)` over the tokens whose `targets` are not `ignore`: `teacher`
/// are log-probabilities `(B, T, V)`, `student` logits of the same shape.
pub(super) fn kl_loss(teacher: &Tensor, student: &Tensor, targets: &Tensor, ignore: i64) -> Tensor {
    let student = student.to_kind(Kind::Float).log_softmax(-1, Kind::Float);
    let kl = (teacher.exp() * (teacher - student)).sum_dim_intlist(-1, false, Kind::Float); // (B, T)
    let keep = targets.ne(ignore).to_kind(Kind::Float);
    (kl * &keep).sum(Kind::Float) / keep.sum(Kind::Float).clamp_min(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The KL is zero for the same distribution, positive otherwise, and ignores masked tokens.
    #[test]
    fn kl_is_zero_only_for_the_teachers_distribution() {
        tch::manual_seed(0);
        let logits = Tensor::randn([2, 3, 5], (Kind::Float, Device::Cpu));
        let teacher = logits.log_softmax(-1, Kind::Float);
        let targets = Tensor::from_slice(&[1i64, 2, -100, 0, -100, 4]).view([2, 3]);
        let same = kl_loss(&teacher, &(&logits + 3.0), &targets, -100).double_value(&[]);
        assert!(same.abs() < 1e-5, "KL of a distribution with itself: {same}");
        let other = Tensor::randn([2, 3, 5], (Kind::Float, Device::Cpu));
        let kl = kl_loss(&teacher, &other, &targets, -100).double_value(&[]);
        assert!(kl > 1e-3, "KL of two distributions: {kl}");
        // Only the unmasked tokens count: changing a masked position's logits changes nothing.
        let masked = other.copy();
        let _ = masked.get(0).get(2).fill_(9.0);
        let kl2 = kl_loss(&teacher, &masked, &targets, -100).double_value(&[]);
        assert!((kl - kl2).abs() < 1e-6, "{kl} vs {kl2}");
    }
}
