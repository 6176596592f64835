//! Stage `autoencoder`'s model (docs/design.md, section 3.3): the sentence encoder E and the
//! plan-conditioned decoder D. The training objective lives in `plandiff-train`.

use crate::format::StageConfigFile;
use crate::store::Bundle;
use crate::weights::load_weights;
use crate::{stage, BundleError, ModelConfig, Result};
use plandiff_data::TextTokenizer;
use plandiff_decoder::{Decoder, DecoderConfig};
use plandiff_planner::{EncoderConfig, SentenceEncoder};
use std::path::Path;
use tch::{nn, Device, Tensor};

/// The encoder and decoder of one autoencoder.
pub struct Autoencoder {
    pub encoder: SentenceEncoder,
    pub decoder: Decoder,
    pub max_slots: i64,
    /// The decoder's learned null plan `(max_slots, d_latent)` (shares its storage).
    null: Tensor,
}

impl Autoencoder {
    /// Fails when `dec` has no plan section (an autoencoder's decoder reads plans).
    pub fn new(p: &nn::Path, enc: &EncoderConfig, dec: &DecoderConfig) -> Result<Self> {
        let damaged = |m: &str| BundleError::file("config.json", format!("{m}; the bundle is damaged"));
        let plan = dec.plan.ok_or_else(|| damaged("the autoencoder's decoder config has no plan section"))?;
        let decoder = Decoder::new(p / "decoder", dec);
        let null = decoder
            .null_plan()
            .map(Tensor::shallow_clone)
            .ok_or_else(|| damaged("the autoencoder's decoder has no null plan"))?;
        Ok(Self { encoder: SentenceEncoder::new(p / "encoder", enc), decoder, max_slots: plan.max_slots, null })
    }

    /// The learned null plan `(max_slots, d_latent)`: what the decoder reads without a plan
    /// and in empty slots.
    pub fn null_plan(&self) -> &Tensor {
        &self.null
    }
}

/// The encoder and decoder configs of an autoencoder's config.json, checked against each
/// other: the decoder must read plans of the encoder's width.
pub fn checked_pair(cfg: &StageConfigFile, bundle: &Path) -> Result<(EncoderConfig, DecoderConfig)> {
    let path = bundle.join(stage::AUTOENCODER).join("config.json");
    let bad = |m: String| BundleError::file(&path, format!("{m}; the bundle is damaged, retrain or restore it"));
    let enc = cfg.encoder.clone().ok_or_else(|| bad("no \"encoder\" section".into()))?;
    enc.validate().map_err(|e| bad(e.to_string()))?;
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

/// Sentences to plan latents, as a bundle's plan space defines them: the frozen sentence
/// encoder's embeddings normalised by the space (`plan_space` in config.json), or the trained
/// encoder's latents. Loaded once (the frozen encoder is a 90 MB model).
pub struct PlanEncoder {
    frozen: Option<(plandiff_sentence::SentenceEncoder, plandiff_sentence::PlanSpace)>,
}

impl PlanEncoder {
    /// The plan space of an autoencoder's `config.json`; its frozen encoder, if it has one, is
    /// loaded from where `make venv` installs it (a missing or different one is a one-line
    /// error that names `make venv`).
    pub fn load(config: &StageConfigFile, device: Device) -> Result<Self> {
        let frozen = match &config.plan_space {
            Some(space) => Some((space.encoder(device)?, space.clone())),
            None => None,
        };
        Ok(Self { frozen })
    }

    /// The plan space of an autoencoder without a frozen encoder: its trained encoder's
    /// latents.
    pub fn learned() -> Self {
        Self { frozen: None }
    }

    /// Latents on the frozen encoder's unit sphere ([`plandiff_sentence::PlanSpace::to_sphere`]);
    /// a learned encoder's are returned as they are.
    pub fn to_sphere(&self, z: &Tensor) -> Tensor {
        match &self.frozen {
            Some((_, space)) => space.to_sphere(z),
            None => z.shallow_clone(),
        }
    }

    /// Whether plans are a frozen encoder's normalised embeddings (unbounded, no tanh).
    pub fn is_frozen(&self) -> bool {
        self.frozen.is_some()
    }

    /// Latents `(N, d_latent)` of text sentences, on `ae`'s device.
    pub fn encode_texts(&self, ae: &Autoencoder, tk: &TextTokenizer, sentences: &[&str]) -> Result<Tensor> {
        match &self.frozen {
            Some((enc, space)) => {
                let refs: Vec<&str> = sentences.iter().map(|s| s.trim()).collect();
                let e = enc.embed_sorted(&refs, 64, &mut |_| {})?;
                Ok(space.normalise(&e).to_device(ae.decoder.device()))
            }
            None => {
                // As the models saw sentences in training: one leading space.
                let texts: Vec<String> = sentences.iter().map(|s| format!(" {s}")).collect();
                let toks: Vec<Vec<i64>> =
                    tk.encode_batch(texts)?.into_iter().map(|v| v.into_iter().map(i64::from).collect()).collect();
                let refs: Vec<&[i64]> = toks.iter().map(Vec::as_slice).collect();
                Ok(ae.encoder.encode(&refs, tk.special().pad as i64, 64))
            }
        }
    }
}

/// A loaded `BUNDLE/autoencoder`.
pub struct LoadedAutoencoder {
    pub ae: Autoencoder,
    pub vs: nn::VarStore,
    pub config: StageConfigFile,
    pub tokenizer: TextTokenizer,
}

/// Loads `BUNDLE/autoencoder` (kind, version, tokenizer hash, shapes checked).
pub fn load_autoencoder(bundle: &Bundle, device: Device) -> Result<LoadedAutoencoder> {
    let config = bundle.read_config(stage::AUTOENCODER)?;
    let tokenizer = bundle.load_tokenizer()?;
    let (enc, dec) = checked_pair(&config, bundle.root())?;
    bundle.check_tokenizer(&tokenizer, stage::AUTOENCODER, &config.tokenizer_hash, Some(dec.vocab_size))?;
    let encoder = crate::format::table(enc.vocab_size, enc.shape.d_model)
        .saturating_add(crate::format::table(enc.max_len, enc.shape.d_model))
        .saturating_add(crate::format::blocks_min_parameters(enc.shape.n_layers, enc.shape.d_model, enc.shape.d_ff));
    let need = dec.min_parameters().saturating_add(encoder);
    crate::weights::check_fits(&bundle.weights_path(stage::AUTOENCODER), need)?;
    let mut vs = nn::VarStore::new(device);
    let ae = Autoencoder::new(&vs.root(), &enc, &dec)?;
    load_weights(&mut vs, &bundle.weights_path(stage::AUTOENCODER))?;
    Ok(LoadedAutoencoder { ae, vs, config, tokenizer })
}
