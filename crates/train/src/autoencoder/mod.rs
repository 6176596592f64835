//! Stage `autoencoder` (docs/design.md, section 3.3): the plan-conditioned decoder D, trained
//! to rewrite a document window from its own plan `[E(s_1) .. E(s_S)]`, where E is the frozen
//! sentence encoder (all-MiniLM-L6-v2, its embeddings cached once per corpus and normalised
//! per dimension: [`frozen`]). The jointly learned encoder of earlier versions is gone (issue
//! 39): one plan space.
//!
//! - Plan dropout: a share of documents is trained with the learned null plan, so D also
//!   runs as a plain LM (the `ar` arm of an A/B).
//! - Latent noise: latents get Gaussian noise, std ~ U(0, `latent_noise_max`) per document,
//!   so D tolerates the imperfect plans a planner samples; added, or variance-preserving (a
//!   diffusion forward step: the plan keeps a real sentence's norm).
//! - Fine-tuning: `init_from` starts from another bundle's autoencoder (weights and plan space).
//! - Context dropout: for a share of documents each token attends only within its own
//!   sentence; the rest of the document reaches it through the plan alone.
//! - Word dropout (optional): a share of the input tokens becomes `<pad>`, so the decoder
//!   reads the words of a sentence from its latent instead of copying its own prefix.
//! - Bag-of-words loss (optional, `bow_weight`): the decoder's plan projection must also
//!   predict each sentence's tokens as a bag from its latent. The logged training loss then
//!   includes this term; validation perplexity and accuracy are the decoder's alone.
//!
//! Empty slots (windows with fewer than `max_slots` sentences) hold the null plan's entries.

mod batch;
mod distill;
mod eval;
mod frozen;

/// The width of every plan: the frozen sentence encoder's.
pub use frozen::WIDTH as PLAN_WIDTH;

pub use eval::{evaluate_autoencoder, PlanEval};

use crate::config::{ModelSection, PlanSection, RunConfig, TrainConfig};
use crate::setup::{ar_to_start_from, copy_ar_weights};
use crate::stages::{EvalRequest, Section, Stage, StageEval};
use crate::trainer::{fresh_section, run_loop, seed_init, setup_run, Feed, StageRunner, TrainArgs, TrainReport};
use crate::{Result, TrainError};
use batch::{bow_loss, plan_of, to_device, DocSet};
use eval::{plan_eval, EvalShape};
use frozen::FrozenPlans;
use plandiff_bundle::autoencoder::checked_config;
use plandiff_bundle::{stage, Autoencoder, Bundle, Provenance, StageConfigFile};
use plandiff_data::WindowSampler;
use plandiff_decoder::{DecoderConfig, DecoderInput, PlanConfig};
use plandiff_layers::TransformerShape;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tch::{nn, Kind, Tensor};

const KIND: &str = stage::AUTOENCODER;
const ABOUT: &str = "plan-conditioned decoder over a frozen sentence encoder's plans";

/// Tokens kept of each sentence in a batch's sentence table (the bag-of-words targets).
pub(crate) const SENTENCE_TOKENS: usize = 64;

/// Stage `autoencoder` of [`crate::registry::STAGES`].
pub const STAGE: Stage = Stage::new::<AutoencoderSection, DecoderConfig>(
    KIND,
    ABOUT,
    train_autoencoder,
    evaluate,
    crate::ar::DESCRIBE_DECODER,
);

impl AutoencoderSection {
    /// The decoder of `[autoencoder.decoder]` reading frozen plans of `[autoencoder.plan]`'s
    /// slots, validated.
    fn decoder_config(&self, vocab_size: i64) -> Result<DecoderConfig> {
        let mut dec = self.decoder.decoder(vocab_size);
        dec.plan = Some(PlanConfig { d_latent: frozen::WIDTH, max_slots: self.plan.max_slots });
        dec.validate().map_err(|e| TrainError::Invalid(format!("config [autoencoder.decoder]: {e}")))?;
        Ok(dec)
    }
}

impl Section for AutoencoderSection {
    fn check(&self, _config: &RunConfig, vocab_size: i64) -> Result<()> {
        self.plan.validate()?;
        self.decoder_config(vocab_size)?;
        if self.train.seq_len as i64 > self.decoder.max_seq_len {
            return Err(TrainError::Invalid("config [autoencoder]: train.seq_len exceeds decoder.max_seq_len".into()));
        }
        Ok(())
    }
}

/// `[autoencoder]`: the plan-conditioned decoder and how it learns to read plans.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AutoencoderSection {
    /// The removed learned sentence encoder's section: read only to refuse it by name.
    #[serde(default, skip_serializing, deserialize_with = "refuse_encoder_section")]
    pub encoder: Option<serde::de::IgnoredAny>,
    pub decoder: ModelSection,
    pub plan: PlanSection,
    /// `batch_size` counts documents; `seq_len` caps a document window's tokens.
    pub train: TrainConfig,
}

/// `[autoencoder.encoder]` (the jointly learned sentence encoder's section): refused by name.
fn refuse_encoder_section<'de, D: serde::Deserializer<'de>>(
    _: D,
) -> std::result::Result<Option<serde::de::IgnoredAny>, D::Error> {
    Err(serde::de::Error::custom(
        "[autoencoder.encoder]: the jointly learned sentence encoder was removed in issue 39 (plans are the frozen all-MiniLM-L6-v2's embeddings); delete the section",
    ))
}

struct AeRunner {
    feed: Feed,
    ae: Autoencoder,
    dec_cfg: DecoderConfig,
    plan: PlanSection,
    train: DocSet,
    valid: Option<DocSet>,
    max_tokens: usize,
    tokens_per_step: u64,
    /// The training and validation splits' latents, and their space.
    frozen: (FrozenPlans, Option<FrozenPlans>),
    space: plandiff_sentence::PlanSpace,
    /// `[autoencoder.plan.distill]`'s teacher: the loss is the KL from its sampler.
    teacher: Option<distill::Teacher>,
}

impl StageRunner for AeRunner {
    type Model = DecoderConfig;
    const KIND: &'static str = KIND;

    fn micro_step(&mut self, step: u64, micro: usize, accum: usize) -> Result<f64> {
        let idx = self.feed.indices(step, micro, accum);
        let db = self.train.batch(&idx, SENTENCE_TOKENS);
        let b = to_device(&db, self.max_tokens, self.feed.device);
        let (bs, t) = b.inputs.size2().expect("(B, T)");
        let opts = (Kind::Float, self.feed.device);
        let z = self.frozen.0.latents(&self.train, &idx, &db); // (N, d_latent)
        let mut plan = plan_of(&self.ae, &b, &z, bs, (self.plan.latent_noise_max, self.plan.latent_noise));
        let mut dropped = None;
        if self.plan.null_plan_prob > 0.0 {
            let drop = Tensor::rand([bs, 1, 1], opts).lt(self.plan.null_plan_prob);
            let null = self.ae.null_plan().unsqueeze(0);
            plan = plan.where_self(&drop.logical_not(), &null.expand_as(&plan));
            dropped = Some(drop);
        }
        if let Some(teacher) = &self.teacher {
            // Which slots hold a sentence's latent: the teacher puts its own null plan in the rest.
            let dev = self.feed.device;
            let real = Tensor::zeros([bs, plan.size()[1]], (Kind::Bool, dev)).index_put(
                &[Some(b.sent_doc.shallow_clone()), Some(b.sent_slot.shallow_clone())],
                &Tensor::ones([b.sent_doc.size()[0]], (Kind::Bool, dev)),
                false,
            );
            let real = match &dropped {
                Some(drop) => real.logical_and(&drop.squeeze_dim(2).logical_not()),
                None => real,
            };
            let target = teacher.log_probs(&b.inputs, &b.slots, &plan.detach(), &real);
            let input = DecoderInput { tokens: &b.inputs, slots: Some(&b.slots), plan: Some(&plan), self_mask: None };
            let loss = distill::kl_loss(&target, &self.ae.decoder.forward_masked(&input, true), &b.targets, -100);
            (&loss / accum as f64).backward();
            return Ok(loss.double_value(&[]));
        }
        let mask = (self.plan.context_dropout > 0.0).then(|| {
            // Causal everywhere; within-sentence only for the dropped documents.
            let i = Tensor::arange(t, (Kind::Int64, self.feed.device));
            let causal = i.unsqueeze(0).le_tensor(&i.unsqueeze(1)); // (T, T): key <= query
            let same = b.slots.unsqueeze(2).eq_tensor(&b.slots.unsqueeze(1)); // (B, T, T)
            let dropped = Tensor::rand([bs, 1, 1], opts).lt(self.plan.context_dropout);
            same.logical_or(&dropped.logical_not()).logical_and(&causal.unsqueeze(0)).unsqueeze(1)
            // (B, 1, T, T)
        });
        let inputs = if self.plan.word_dropout > 0.0 {
            let sp = self.train.sp;
            let special = b.inputs.eq(sp.bos as i64).logical_or(&b.inputs.eq(sp.sep as i64));
            let keep = Tensor::rand([bs, t], opts).ge(self.plan.word_dropout).logical_or(&special);
            b.inputs.where_self(&keep, &b.inputs.full_like(sp.pad as i64))
        } else {
            b.inputs.shallow_clone()
        };
        let loss = self.ae.decoder.loss_masked(
            &DecoderInput { tokens: &inputs, slots: Some(&b.slots), plan: Some(&plan), self_mask: mask.as_ref() },
            &b.targets,
            -100,
            true,
        );
        // The bag-of-words head runs only when its term counts (off by default).
        let words = (self.plan.bow_weight > 0.0).then(|| self.ae.decoder.plan_word_logits(&z)).flatten();
        let loss = match words {
            Some(words) => loss + bow_loss(&words, &b.sentences, &b.sentence_mask) * self.plan.bow_weight,
            None => loss,
        };
        (&loss / accum as f64).backward();
        Ok(loss.double_value(&[]))
    }

    fn tokens_per_step(&self) -> u64 {
        self.tokens_per_step
    }

    fn validate(&mut self) -> Option<(f64, serde_json::Map<String, serde_json::Value>)> {
        let set = self.valid.as_ref()?;
        let shape = EvalShape {
            batch: self.feed.batch * self.feed.shard.world_size,
            max_batches: Some(self.feed.eval_batches),
            max_len: SENTENCE_TOKENS,
            max_tokens: self.max_tokens,
        };
        let r = plan_eval(&self.ae, set, shape, self.feed.device, self.frozen.1.as_ref()?);
        let mut m = serde_json::Map::new();
        for (k, v) in [
            ("val_ppl_oracle", r.ppl_oracle),
            ("val_ppl_null", r.ppl_null),
            ("val_ppl_ratio", r.ppl_ratio),
            ("val_acc_oracle", r.accuracy_oracle),
            ("val_acc_null", r.accuracy_null),
        ] {
            m.insert(k.into(), json!(v));
        }
        Some((r.loss_oracle, m))
    }

    fn config_file(&self, tokenizer_hash: &str, provenance: Provenance) -> StageConfigFile {
        let mut c = StageConfigFile::new(KIND, self.dec_cfg.clone(), tokenizer_hash, provenance);
        c.plan_space = Some(self.space.clone());
        c
    }
}

/// Runs (or resumes) stage `autoencoder`.
pub fn train_autoencoder(args: TrainArgs) -> Result<TrainReport> {
    let section = fresh_section::<AutoencoderSection>(&args, KIND)?;
    let fresh = section.as_ref().map(|s| (s.train.clone(), Some(s.plan.clone())));
    let setup = setup_run::<DecoderConfig>(&args, KIND, fresh)?;
    let vocab = setup.tokenizer.vocab_size() as i64;
    let plan = setup
        .state
        .plan
        .clone()
        .ok_or_else(|| TrainError::Invalid("trainer_state.json lacks the plan settings".into()))?;
    plan.validate()?;
    let dec_cfg = match (&setup.resumed, section) {
        (Some(c), _) => {
            let (dec, _) = checked_config(c, &args.out)?;
            if dec.plan.map(|p| p.max_slots) != Some(plan.max_slots) {
                return Err(TrainError::Invalid(format!(
                    "{}: config.json and trainer_state.json disagree on max_slots; the checkpoint is damaged, restore it",
                    args.out.display()
                )));
            }
            dec
        }
        (None, Some(s)) => s.decoder_config(vocab)?,
        (None, None) => return Err(TrainError::Invalid("--config is required for a new run".into())),
    };
    let train_cfg = setup.state.train.clone();
    if train_cfg.seq_len as i64 > dec_cfg.max_seq_len {
        return Err(TrainError::Invalid(format!(
            "config: [autoencoder.train] seq_len {} exceeds decoder max_seq_len {}",
            train_cfg.seq_len, dec_cfg.max_seq_len
        )));
    }
    let sp = setup.tokenizer.special();
    let slots = plan.max_slots as usize;
    let train = DocSet::open(&args.data, "train", sp, slots)?;
    let valid = DocSet::open(&args.data, "valid", sp, slots).ok().filter(|v| !v.windows.is_empty());
    let sampler = WindowSampler::over(train.windows.len(), setup.state.seed)?;
    let mean_window = train.mean_window_tokens();
    let start = match (&plan.init_from, &setup.resumed) {
        (Some(dir), None) => Some(AeStart::read(dir, &dec_cfg)?),
        _ => None,
    };
    let resumed_space = match &start {
        Some(s) => s.space.clone(),
        None => setup.resumed.as_ref().and_then(|c| c.plan_space.clone()),
    };
    let (train_plans, valid_plans, space) =
        frozen::frozen_plans(&args.data, &train, valid.as_ref(), args.device, resumed_space)?;
    seed_init(setup.state.seed);
    let vs = nn::VarStore::new(args.device);
    let ae = Autoencoder::new(&vs.root(), &dec_cfg)?;
    let teacher = match &plan.distill {
        Some(d) => Some(distill::Teacher::load(d, &space, dec_cfg.vocab_size, args.device)?),
        None => None,
    };
    initialise(&vs, start.as_ref(), (plan.init_from_ar && setup.resumed.is_none()).then_some(&setup.bundle), &dec_cfg)?;
    let mut runner = AeRunner {
        ae,
        dec_cfg,
        plan,
        train,
        valid,
        feed: Feed::new(sampler, &args, &setup.state),
        max_tokens: train_cfg.seq_len,
        tokens_per_step: (mean_window.min(train_cfg.seq_len as f64)
            * (train_cfg.batch_size * train_cfg.grad_accum) as f64) as u64,
        frozen: (train_plans, valid_plans),
        space,
        teacher,
    };
    run_loop(&mut runner, setup, vs, &args)
}

/// A fresh run's starting weights: another bundle's autoencoder (`init_from`), or the `ar`
/// model of `ar_bundle` for the decoder (`init_from_ar`), or the fresh initialisation.
fn initialise(
    vs: &nn::VarStore,
    start: Option<&AeStart>,
    ar_bundle: Option<&Bundle>,
    dec: &DecoderConfig,
) -> Result<()> {
    if let Some(s) = start {
        let n = s.copy_into(vs)?;
        tracing::info!(tensors = n, "autoencoder initialized from {}", s.weights.display());
    } else if let Some(b) = ar_bundle {
        let n = init_decoder_from_ar(vs, b, dec)?;
        tracing::info!(tensors = n, "decoder initialized from {}", b.stage_dir(stage::AR).display());
    }
    Ok(())
}

/// `[autoencoder.plan] init_from`: another bundle's autoencoder to fine-tune (its weights file
/// and its plan space), checked against this run's architecture.
struct AeStart {
    weights: std::path::PathBuf,
    space: Option<plandiff_sentence::PlanSpace>,
    /// Blocks whose cross-attention the start has and this decoder drops (their weights are
    /// not copied).
    dropped: Vec<i64>,
}

/// The blocks of `d` with cross-attention.
fn cross_list(d: &DecoderConfig) -> Vec<i64> {
    (0..d.shape.n_layers).filter(|&i| d.has_cross(i)).collect()
}

impl AeStart {
    const WHAT: &'static str = "[autoencoder.plan] init_from";

    fn read(dir: &std::path::Path, dec: &DecoderConfig) -> Result<Self> {
        let fix = "give a bundle whose autoencoder has this config's [autoencoder.decoder], or leave init_from out";
        let bundle = Bundle::open(dir)?;
        if !bundle.has_stage(KIND) {
            return Err(TrainError::Invalid(format!("{}: {} has no autoencoder; {fix}", Self::WHAT, dir.display())));
        }
        let c = bundle.read_config(KIND)?;
        let (d, space) = checked_config(&c, dir)?;
        let same = |d: &DecoderConfig| DecoderConfig {
            shape: TransformerShape { dropout: 0.0, ..d.shape },
            cross_blocks: None,
            ..d.clone()
        };
        // A student may keep a subset of the blocks with cross-attention (`cross_blocks`).
        let n = dec.shape.n_layers;
        let subset = (0..n).all(|i| !dec.has_cross(i) || d.has_cross(i));
        if same(&d) != same(dec) || !subset {
            return Err(TrainError::Invalid(format!(
                "{}: {}'s autoencoder (d_model {}, {} layers, {} slots, cross-attention in blocks {:?}) is not this config's (d_model {}, {} layers, {} slots, cross-attention in blocks {:?}); {fix}",
                Self::WHAT,
                dir.display(),
                d.shape.d_model,
                d.shape.n_layers,
                d.plan.map_or(0, |p| p.max_slots),
                cross_list(&d),
                dec.shape.d_model,
                dec.shape.n_layers,
                dec.plan.map_or(0, |p| p.max_slots),
                cross_list(dec),
            )));
        }
        let dropped = (0..n).filter(|&i| d.has_cross(i) && !dec.has_cross(i)).collect();
        Ok(Self { weights: bundle.weights_path(KIND), space: Some(space), dropped })
    }

    /// Copies every tensor of the file into `vs` (names and shapes must match). Returns the
    /// number copied.
    fn copy_into(&self, vs: &nn::VarStore) -> Result<usize> {
        let vars = vs.variables();
        let mut copied = 0;
        tch::no_grad(|| -> Result<()> {
            for (name, src) in plandiff_bundle::read_weights(&self.weights)? {
                // A bundle from before issue 39 also holds the removed encoder's weights.
                if name.starts_with(plandiff_bundle::autoencoder::LEGACY_ENCODER) {
                    continue;
                }
                let cross_of = |i: &i64| {
                    let block = format!("decoder.blocks.{i}.");
                    name.strip_prefix(&block)
                        .is_some_and(|r| r.starts_with("cross_attn.") || r.starts_with("norm_cross."))
                };
                if self.dropped.iter().any(cross_of) {
                    continue;
                }
                let dst = vars.get(&name).filter(|d| d.size() == src.size()).ok_or_else(|| {
                    TrainError::Invalid(format!(
                        "{}: `{name}` {:?} of {} has no counterpart here; the bundles differ",
                        Self::WHAT,
                        src.size(),
                        self.weights.display()
                    ))
                })?;
                dst.shallow_clone().copy_(&src.to_kind(dst.kind()));
                copied += 1;
            }
            Ok(())
        })?;
        if copied != vars.len() {
            return Err(TrainError::Invalid(format!(
                "{}: {} holds {copied} of this model's {} tensors; the bundles differ",
                Self::WHAT,
                self.weights.display(),
                vars.len()
            )));
        }
        Ok(copied)
    }
}

/// Copies the bundle's `ar` weights into the autoencoder's decoder (`decoder.<name>`); the
/// decoder's own extra tensors (cross-attention, plan embeddings) keep their fresh values.
/// Returns the number of tensors copied.
fn init_decoder_from_ar(vs: &nn::VarStore, bundle: &Bundle, dec: &DecoderConfig) -> Result<usize> {
    let (what, fix) = (
        "[autoencoder.plan] init_from_ar",
        "train `ar` into the same --out first with the decoder's architecture, or set init_from_ar = false",
    );
    let ar = ar_to_start_from(bundle, what, fix)?;
    let shape = TransformerShape { dropout: ar.shape.dropout, ..dec.shape };
    if ar != (DecoderConfig { plan: None, shape, ..dec.clone() }) {
        return Err(TrainError::Invalid(format!(
            "{what}: the ar model (d_model {}, {} layers, d_ff {}, context {}, rotary {:?}) differs from [autoencoder.decoder] (d_model {}, {} layers, d_ff {}, context {}, rotary {:?}); {fix}",
            ar.shape.d_model, ar.shape.n_layers, ar.shape.d_ff, ar.max_seq_len, ar.rotary,
            dec.shape.d_model, dec.shape.n_layers, dec.shape.d_ff, dec.max_seq_len, dec.rotary
        )));
    }
    copy_ar_weights(vs, bundle, what, fix, |vars, name, src| {
        vars.get(&format!("decoder.{name}")).map(|d| (d.shallow_clone(), src))
    })
}

/// `plandiff eval --stage autoencoder`'s line (a [`crate::stages::render`] template over its result).
const SUMMARY: &str = "{split} split, {documents} documents, {tokens} tokens: perplexity oracle plan {ppl_oracle:.2} vs null plan {ppl_null:.2} (ratio {ppl_ratio:.3}); token accuracy {accuracy_oracle:.3} vs {accuracy_null:.3}";

fn evaluate(req: &EvalRequest) -> Result<StageEval> {
    StageEval::nested(&evaluate_autoencoder(req)?, req.split, SUMMARY)
}
