//! Stage `autoencoder` (design section 3.3): the sentence encoder E and the plan-conditioned
//! decoder D, trained together to rewrite a document window from its own plan
//! `[E(s_1) .. E(s_S)]`.
//!
//! - Plan dropout: a share of documents is trained with the learned null plan, so D also
//!   runs as a plain LM (the `ar` arm of an A/B).
//! - Latent noise: latents get Gaussian noise, std ~ U(0, `latent_noise_max`) per document,
//!   so D tolerates the imperfect plans a planner samples.
//! - Context dropout: for a share of documents each token attends only within its own
//!   sentence; the rest of the document reaches it through the plan alone.
//! - Word dropout (optional): a share of the input tokens becomes `<pad>`, so the decoder
//!   reads the words of a sentence from its latent instead of copying its own prefix.
//!
//! Empty slots (windows with fewer than `max_slots` sentences) hold the null plan's entries.

use crate::bundle::{load_weights, Bundle, Provenance, StageConfigFile, FORMAT_VERSION};
use crate::config::PlanSection;
use crate::trainer::{batch_indices, run_loop, seed_init, setup_run, StageRunner, TrainArgs, TrainReport};
use crate::{Result, TrainError};
use plandiff_data::{
    doc_batch, index_documents, DocBatch, Document, SpecialIds, TextTokenizer, TokenSet, WindowSampler,
};
use plandiff_decoder::{Decoder, DecoderConfig, PlanConfig};
use plandiff_planner::{EncoderConfig, SentenceEncoder};
use serde::Serialize;
use serde_json::json;
use std::path::Path;
use tch::{nn, Device, Kind, Tensor};

const KIND: &str = "autoencoder";

/// A split's documents cut into windows of `max_slots` sentences.
struct DocSet {
    set: TokenSet,
    docs: Vec<Document>,
    /// (document, first sentence)
    windows: Vec<(usize, usize)>,
    sp: SpecialIds,
    max_slots: usize,
}

impl DocSet {
    fn open(dir: &Path, split: &str, sp: SpecialIds, max_slots: usize) -> Result<Self> {
        let set = TokenSet::open(dir, split)?;
        let docs = index_documents(&set.tokens, sp);
        let windows = docs
            .iter()
            .enumerate()
            .flat_map(|(d, doc)| (0..doc.sentences.len()).step_by(max_slots).map(move |f| (d, f)))
            .collect();
        Ok(Self { set, docs, windows, sp, max_slots })
    }

    /// Windows `idx`, sentences cut to `max_len` tokens for the encoder.
    fn batch(&self, idx: &[usize], max_len: usize) -> DocBatch {
        let w: Vec<(&Document, usize)> =
            idx.iter().map(|&i| (&self.docs[self.windows[i].0], self.windows[i].1)).collect();
        doc_batch(&self.set.tokens, &w, self.max_slots, max_len, self.sp)
    }
}

/// The encoder and decoder of one autoencoder.
pub struct Autoencoder {
    pub encoder: SentenceEncoder,
    pub decoder: Decoder,
    pub max_slots: i64,
    /// The decoder's learned null plan `(max_slots, d_latent)` (shares its storage).
    null: Tensor,
}

/// Tensors of a document batch on a device.
struct BatchTensors {
    inputs: Tensor,
    targets: Tensor,
    slots: Tensor,
    sentences: Tensor,
    sentence_mask: Tensor,
    sent_doc: Tensor,
    sent_slot: Tensor,
}

fn to_device(b: &DocBatch, max_tokens: usize, device: Device) -> BatchTensors {
    let (bs, t) = (b.batch as i64, b.len as i64);
    let keep = t.min(max_tokens as i64);
    let cut = |v: &[i64]| Tensor::from_slice(v).view([bs, t]).narrow(1, 0, keep).to_device(device);
    let n = b.sentence_pos.len() as i64;
    let l = b.sentence_len as i64;
    BatchTensors {
        inputs: cut(&b.inputs),
        targets: cut(&b.targets),
        slots: cut(&b.slots),
        sentences: Tensor::from_slice(&b.sentences).view([n, l]).to_device(device),
        sentence_mask: Tensor::from_slice(&b.sentence_mask).view([n, l]).to_device(device),
        sent_doc: Tensor::from_slice(&b.sentence_pos.iter().map(|p| p.0 as i64).collect::<Vec<_>>()).to_device(device),
        sent_slot: Tensor::from_slice(&b.sentence_pos.iter().map(|p| p.1 as i64).collect::<Vec<_>>()).to_device(device),
    }
}

impl Autoencoder {
    /// Fails when `dec` has no plan section (an autoencoder's decoder reads plans).
    pub fn new(p: &nn::Path, enc: &EncoderConfig, dec: &DecoderConfig) -> Result<Self> {
        let plan = dec.plan.ok_or_else(|| {
            TrainError::Invalid("the autoencoder's decoder config has no plan section; the bundle is damaged".into())
        })?;
        let decoder = Decoder::new(p / "decoder", dec);
        let null = decoder
            .null_plan()
            .map(Tensor::shallow_clone)
            .ok_or_else(|| TrainError::Invalid("the autoencoder's decoder has no null plan".into()))?;
        Ok(Self { encoder: SentenceEncoder::new(p / "encoder", enc), decoder, max_slots: plan.max_slots, null })
    }

    /// The learned null plan `(max_slots, d_latent)`: what the decoder reads without a plan
    /// and in empty slots.
    pub fn null_plan(&self) -> &Tensor {
        &self.null
    }

    /// The oracle plan `(B, S, d_latent)` of a batch: each sentence's latent in its slot,
    /// the null plan's entries in empty slots, plus optional per-document noise.
    fn plan(&self, b: &BatchTensors, batch: i64, noise_max: f64, train: bool) -> Tensor {
        let z = self.encoder.forward(&b.sentences, &b.sentence_mask, train); // (N, d_latent)
        let z = if noise_max > 0.0 {
            let std = Tensor::rand([batch], (z.kind(), z.device())) * noise_max; // per document
            &z + z.randn_like() * std.index_select(0, &b.sent_doc).unsqueeze(1)
        } else {
            z
        };
        let null = &self.null;
        let base = null.unsqueeze(0).expand([batch, -1, -1], false).contiguous(); // (B, S, d_latent)
        base.index_put(&[Some(b.sent_doc.shallow_clone()), Some(b.sent_slot.shallow_clone())], &z, false)
    }

    /// Summed cross-entropy, token count and correct argmax predictions of a batch with the
    /// oracle plan (`oracle = true`) or the null plan.
    fn score(&self, b: &BatchTensors, oracle: bool) -> (f64, i64, i64) {
        let batch = b.inputs.size()[0];
        let plan = oracle.then(|| self.plan(b, batch, 0.0, false));
        let logits = self.decoder.forward(&b.inputs, Some(&b.slots), plan.as_ref(), false);
        let v = logits.size()[2];
        let y = b.targets.reshape(-1);
        let loss = logits.view([-1, v]).cross_entropy_loss::<Tensor>(&y, None, tch::Reduction::Sum, -100, 0.0);
        let valid = y.ne(-100);
        let correct = logits.argmax(-1, false).reshape(-1).eq_tensor(&y).logical_and(&valid).sum(Kind::Int64);
        (loss.double_value(&[]), valid.sum(Kind::Int64).int64_value(&[]), correct.int64_value(&[]))
    }
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
struct EvalShape {
    batch: usize,
    max_batches: Option<usize>,
    /// Encoder tokens per sentence.
    max_len: usize,
    /// Decoder tokens per window.
    max_tokens: usize,
}

fn plan_eval(ae: &Autoencoder, set: &DocSet, shape: EvalShape, device: Device) -> PlanEval {
    let EvalShape { batch, max_batches, max_len, max_tokens } = shape;
    let n = set.windows.len();
    let nb = n.div_ceil(batch.max(1));
    let nb = max_batches.map_or(nb, |m| m.min(nb));
    let mut acc = [(0f64, 0i64, 0i64); 2];
    tch::no_grad(|| {
        for bi in 0..nb {
            let idx: Vec<usize> = (bi * batch..((bi + 1) * batch).min(n)).collect();
            let b = to_device(&set.batch(&idx, max_len), max_tokens, device);
            for (k, oracle) in [true, false].into_iter().enumerate() {
                let (l, c, r) = ae.score(&b, oracle);
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

struct AeRunner {
    ae: Autoencoder,
    enc_cfg: EncoderConfig,
    dec_cfg: DecoderConfig,
    plan: PlanSection,
    train: DocSet,
    valid: Option<DocSet>,
    sampler: WindowSampler,
    batch: usize,
    max_tokens: usize,
    eval_batches: usize,
    tokens_per_step: u64,
    device: Device,
}

impl StageRunner for AeRunner {
    type Model = DecoderConfig;
    fn kind(&self) -> &'static str {
        KIND
    }

    fn micro_step(&mut self, step: u64, micro: usize, accum: usize) -> Result<f64> {
        let idx = batch_indices(&mut self.sampler, step, micro, accum, self.batch);
        let max_len = self.enc_cfg.max_len as usize;
        let b = to_device(&self.train.batch(&idx, max_len), self.max_tokens, self.device);
        let (bs, t) = b.inputs.size2().expect("(B, T)");
        let opts = (Kind::Float, self.device);
        let mut plan = self.ae.plan(&b, bs, self.plan.latent_noise_max, true);
        if self.plan.null_plan_prob > 0.0 {
            let drop = Tensor::rand([bs, 1, 1], opts).lt(self.plan.null_plan_prob);
            let null = self.ae.null_plan().unsqueeze(0);
            plan = plan.where_self(&drop.logical_not(), &null.expand_as(&plan));
        }
        let mask = (self.plan.context_dropout > 0.0).then(|| {
            // Causal everywhere; within-sentence only for the dropped documents.
            let i = Tensor::arange(t, (Kind::Int64, self.device));
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
        let logits = self.ae.decoder.forward_masked(&inputs, Some(&b.slots), Some(&plan), mask.as_ref(), true);
        let v = logits.size()[2];
        let loss = logits.view([-1, v]).cross_entropy_loss::<Tensor>(
            &b.targets.reshape(-1),
            None,
            tch::Reduction::Mean,
            -100,
            0.0,
        );
        (&loss / accum as f64).backward();
        Ok(loss.double_value(&[]))
    }

    fn tokens_per_step(&self) -> u64 {
        self.tokens_per_step
    }

    fn validate(&mut self) -> Option<(f64, serde_json::Map<String, serde_json::Value>)> {
        let set = self.valid.as_ref()?;
        let shape = EvalShape {
            batch: self.batch,
            max_batches: Some(self.eval_batches),
            max_len: self.enc_cfg.max_len as usize,
            max_tokens: self.max_tokens,
        };
        let r = plan_eval(&self.ae, set, shape, self.device);
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
        StageConfigFile {
            format_version: FORMAT_VERSION,
            kind: KIND.into(),
            model: self.dec_cfg.clone(),
            encoder: Some(self.enc_cfg.clone()),
            tokenizer_hash: tokenizer_hash.into(),
            provenance,
        }
    }
}

/// Runs (or resumes) stage `autoencoder`.
pub fn train_autoencoder(args: TrainArgs) -> Result<TrainReport> {
    let fresh = match &args.config {
        Some(c) if !args.resume => {
            let s = c.autoencoder()?;
            Some((s.train.clone(), Some(s.plan.clone())))
        }
        _ => None,
    };
    let setup = setup_run::<DecoderConfig>(&args, KIND, fresh)?;
    let vocab = setup.tokenizer.vocab_size() as i64;
    let plan = setup
        .state
        .plan
        .clone()
        .ok_or_else(|| TrainError::Invalid("trainer_state.json lacks the plan settings".into()))?;
    plan.validate()?;
    let (enc_cfg, dec_cfg) = match (&setup.resumed, &args.config) {
        (Some(c), _) => {
            let (enc, dec) = checked_pair(c, &args.out)?;
            if dec.plan.map(|p| p.max_slots) != Some(plan.max_slots) {
                return Err(TrainError::Invalid(format!(
                    "{}: config.json and trainer_state.json disagree on max_slots; the checkpoint is damaged, restore it",
                    args.out.display()
                )));
            }
            (enc, dec)
        }
        (None, Some(rc)) => {
            let s = rc.autoencoder()?;
            let enc = s.encoder.encoder(vocab);
            enc.validate().map_err(|e| TrainError::Invalid(format!("config [autoencoder.encoder]: {e}")))?;
            let mut dec = s.decoder.decoder(vocab);
            dec.plan = Some(PlanConfig { d_latent: enc.d_latent, max_slots: plan.max_slots });
            dec.validate().map_err(|e| TrainError::Invalid(format!("config [autoencoder.decoder]: {e}")))?;
            (enc, dec)
        }
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
    let mean_window = train.set.tokens.len() as f64 / train.windows.len() as f64;
    seed_init(setup.state.seed);
    let vs = nn::VarStore::new(args.device);
    let ae = Autoencoder::new(&vs.root(), &enc_cfg, &dec_cfg)?;
    if plan.init_from_ar && setup.resumed.is_none() {
        let n = init_decoder_from_ar(&vs, &setup.bundle, &dec_cfg)?;
        tracing::info!(tensors = n, "decoder initialized from {}", setup.bundle.stage_dir("ar").display());
    }
    let mut runner = AeRunner {
        ae,
        enc_cfg,
        dec_cfg,
        plan,
        train,
        valid,
        sampler,
        batch: train_cfg.batch_size,
        max_tokens: train_cfg.seq_len,
        eval_batches: train_cfg.eval_batches,
        tokens_per_step: (mean_window.min(train_cfg.seq_len as f64)
            * (train_cfg.batch_size * train_cfg.grad_accum) as f64) as u64,
        device: args.device,
    };
    run_loop(&mut runner, setup, vs, &args)
}

/// Copies the bundle's `ar` weights into the autoencoder's decoder (`decoder.<name>`); the
/// decoder's own extra tensors (cross-attention, plan embeddings) keep their fresh values.
/// Returns the number of tensors copied.
fn init_decoder_from_ar(vs: &nn::VarStore, bundle: &Bundle, dec: &DecoderConfig) -> Result<usize> {
    let fix = "train `ar` into the same --out first with the decoder's architecture, or set init_from_ar = false";
    if !bundle.has_stage("ar") {
        return Err(TrainError::Invalid(format!(
            "[autoencoder.plan] init_from_ar: {} has no ar model; {fix}",
            bundle.root().display()
        )));
    }
    let ar = bundle.read_config("ar")?;
    let plain = DecoderConfig { plan: None, dropout: ar.model.dropout, ..dec.clone() };
    if ar.model != plain {
        return Err(TrainError::Invalid(format!(
            "[autoencoder.plan] init_from_ar: the ar model (d_model {}, {} layers, d_ff {}, context {}) differs from [autoencoder.decoder] (d_model {}, {} layers, d_ff {}, context {}); {fix}",
            ar.model.d_model, ar.model.n_layers, ar.model.d_ff, ar.model.max_seq_len,
            dec.d_model, dec.n_layers, dec.d_ff, dec.max_seq_len
        )));
    }
    let tensors = crate::bundle::read_weights(&bundle.stage_dir("ar").join("model.safetensors"))?;
    let vars = vs.variables();
    let mut copied = 0;
    tch::no_grad(|| -> Result<()> {
        for (name, src) in &tensors {
            let dst = vars.get(&format!("decoder.{name}")).filter(|d| d.size() == src.size()).ok_or_else(|| {
                TrainError::Invalid(format!(
                    "[autoencoder.plan] init_from_ar: the decoder has no tensor `decoder.{name}` of shape {:?}; {fix}",
                    src.size()
                ))
            })?;
            dst.shallow_clone().copy_(src);
            copied += 1;
        }
        Ok(())
    })?;
    Ok(copied)
}

/// Loads `BUNDLE/autoencoder` (kind, version, tokenizer hash, shapes checked).
/// The encoder and decoder configs of an autoencoder's config.json, checked against each
/// other: the decoder must read plans of the encoder's width.
fn checked_pair(cfg: &StageConfigFile, bundle: &Path) -> Result<(EncoderConfig, DecoderConfig)> {
    let bad = |m: String| {
        TrainError::Invalid(format!(
            "{}/{KIND}/config.json: {m}; the bundle is damaged, retrain or restore it",
            bundle.display()
        ))
    };
    let enc = cfg.encoder.clone().ok_or_else(|| bad("no \"encoder\" section".into()))?;
    enc.validate().map_err(bad)?;
    match cfg.model.plan {
        Some(p) if p.d_latent == enc.d_latent => {}
        Some(p) => {
            return Err(bad(format!(
                "the decoder reads {}-wide plans but the encoder writes {}",
                p.d_latent, enc.d_latent
            )))
        }
        None => return Err(bad("the decoder has no \"plan\" section".into())),
    }
    if enc.vocab_size != cfg.model.vocab_size {
        return Err(bad("encoder and decoder vocabularies differ".into()));
    }
    Ok((enc, cfg.model.clone()))
}

pub fn load_autoencoder(
    bundle: &Bundle,
    device: Device,
) -> Result<(Autoencoder, nn::VarStore, StageConfigFile, TextTokenizer)> {
    let cfg = bundle.read_config(KIND)?;
    let tokenizer = bundle.load_tokenizer()?;
    if tokenizer.hash() != cfg.tokenizer_hash {
        return Err(TrainError::Invalid(format!(
            "{}: this tokenizer is not the one the autoencoder was trained with; put the model's own tokenizer.json back",
            bundle.tokenizer_path().display()
        )));
    }
    let (enc, dec) = checked_pair(&cfg, bundle.root())?;
    if tokenizer.vocab_size() as i64 != dec.vocab_size {
        return Err(TrainError::Invalid(format!(
            "tokenizer has {} tokens but the autoencoder's vocab_size is {}",
            tokenizer.vocab_size(),
            dec.vocab_size
        )));
    }
    let mut vs = nn::VarStore::new(device);
    let ae = Autoencoder::new(&vs.root(), &enc, &dec)?;
    load_weights(&mut vs, &bundle.stage_dir(KIND).join("model.safetensors"))?;
    Ok((ae, vs, cfg, tokenizer))
}

/// `plandiff eval --stage autoencoder`: oracle-plan and null-plan perplexity and token
/// accuracy on a prepared split.
pub fn evaluate_autoencoder(
    bundle: &Path,
    data: &Path,
    split: &str,
    batch: usize,
    max_batches: Option<usize>,
    device: Device,
) -> Result<PlanEval> {
    let b = Bundle::new(bundle);
    let (ae, _vs, cfg, tokenizer) = load_autoencoder(&b, device)?;
    let sp = tokenizer.special();
    let set = DocSet::open(data, split, sp, ae.max_slots as usize)?;
    if set.set.stats.tokenizer_hash != tokenizer.hash() {
        return Err(TrainError::Invalid(format!(
            "--data {} was tokenized with another tokenizer than the model",
            data.display()
        )));
    }
    if set.windows.is_empty() {
        return Err(TrainError::Invalid(format!(
            "--data {}: the {split} split holds no complete document",
            data.display()
        )));
    }
    let max_tokens = cfg.provenance.train.as_ref().map_or(cfg.model.max_seq_len as usize, |t| t.seq_len);
    let max_len = cfg.encoder.as_ref().map_or(64, |e| e.max_len as usize);
    Ok(plan_eval(&ae, &set, EvalShape { batch, max_batches, max_len, max_tokens }, device))
}
