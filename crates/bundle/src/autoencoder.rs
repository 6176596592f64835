//! Stage `autoencoder`'s model (docs/design.md, section 3.3): the plan-conditioned decoder D,
//! which reads plans in a frozen sentence encoder's space ([`PlanEncoder`]). The training
//! objective lives in `plandiff-train`.

use crate::format::StageConfigFile;
use crate::store::Bundle;
use crate::weights::load_weights_except;
use crate::{stage, BundleError, ModelConfig, Result};
use plandiff_data::TextTokenizer;
use plandiff_decoder::{Decoder, DecoderConfig};
use plandiff_sentence::PlanSpace;
use std::path::Path;
use tch::{nn, Device, Tensor};

/// The plan-conditioned decoder of one autoencoder.
pub struct Autoencoder {
    pub decoder: Decoder,
    pub max_slots: i64,
    /// The decoder's learned null plan `(max_slots, d_latent)` (shares its storage).
    null: Tensor,
}

impl Autoencoder {
    /// Fails when `dec` has no plan section (an autoencoder's decoder reads plans).
    pub fn new(p: &nn::Path, dec: &DecoderConfig) -> Result<Self> {
        let damaged = |m: &str| BundleError::file("config.json", format!("{m}; the bundle is damaged"));
        let plan = dec.plan.ok_or_else(|| damaged("the autoencoder's decoder config has no plan section"))?;
        let decoder = Decoder::new(p / "decoder", dec);
        let null = decoder
            .null_plan()
            .map(Tensor::shallow_clone)
            .ok_or_else(|| damaged("the autoencoder's decoder has no null plan"))?;
        Ok(Self { decoder, max_slots: plan.max_slots, null })
    }

    /// The width of the plans the decoder reads.
    pub fn d_latent(&self) -> i64 {
        self.decoder.config().plan.map_or(0, |p| p.d_latent)
    }

    /// The learned null plan `(max_slots, d_latent)`: what the decoder reads without a plan
    /// and in empty slots.
    pub fn null_plan(&self) -> &Tensor {
        &self.null
    }
}

/// The decoder config and plan space of an autoencoder's config.json, checked against each
/// other: the decoder must read plans of the space's width. An autoencoder whose plans were a
/// jointly learned encoder's (no `plan_space`; removed in issue 39) is refused with its fix.
pub fn checked_config(cfg: &StageConfigFile, bundle: &Path) -> Result<(DecoderConfig, PlanSpace)> {
    let path = bundle.join(stage::AUTOENCODER).join("config.json");
    let bad = |m: String| BundleError::file(&path, format!("{m}; the bundle is damaged, retrain or restore it"));
    let Some(space) = cfg.plan_space.clone() else {
        return Err(BundleError::file(
            &path,
            "the autoencoder plans with a jointly learned sentence encoder, which plandiff no longer reads (issue 39: plans are a frozen encoder's embeddings); retrain it with `plandiff train autoencoder --config configs/shipped.toml`",
        ));
    };
    space.check_statistics(space.width()).map_err(|e| bad(e.to_string()))?;
    match cfg.model.plan {
        Some(p) if p.d_latent == space.width() => {}
        Some(p) => {
            return Err(bad(format!(
                "the decoder reads {}-wide plans but the plan space's encoder writes {}",
                p.d_latent,
                space.width()
            )))
        }
        None => return Err(bad("the decoder has no \"plan\" section".into())),
    }
    Ok((cfg.model.clone(), space))
}

/// Sentences to plan latents, as a bundle's plan space defines them: the frozen sentence
/// encoder's embeddings normalised by the space (`plan_space` in config.json). Loaded once
/// (the frozen encoder is a 90 MB model).
pub struct PlanEncoder {
    encoder: plandiff_sentence::SentenceEncoder,
    space: PlanSpace,
}

impl PlanEncoder {
    /// A plan space's frozen encoder, loaded from where `make venv` installs it (a missing or
    /// different one is a one-line error that names `make venv`).
    pub fn load(space: &PlanSpace, device: Device) -> Result<Self> {
        Ok(Self { encoder: space.encoder(device)?, space: space.clone() })
    }

    /// A plan encoder of `encoder` and a space made with it (checked: the same encoder).
    pub fn new(encoder: plandiff_sentence::SentenceEncoder, space: PlanSpace) -> Result<Self> {
        space.check(&encoder)?;
        Ok(Self { encoder, space })
    }

    /// The frozen encoder's plan space.
    pub fn space(&self) -> &PlanSpace {
        &self.space
    }

    /// Latents on the frozen encoder's unit sphere ([`PlanSpace::to_sphere`]).
    pub fn to_sphere(&self, z: &Tensor) -> Tensor {
        self.space.to_sphere(z)
    }

    /// Latents `(N, d_latent)` of text sentences, on `device`.
    pub fn encode_texts(&self, sentences: &[&str], device: Device) -> Result<Tensor> {
        let refs: Vec<&str> = sentences.iter().map(|s| s.trim()).collect();
        let e = self.encoder.embed_sorted(&refs, 64, &mut |_| {})?;
        Ok(self.space.normalise(&e).to_device(device))
    }
}

/// The tensors of the jointly trained sentence encoder that autoencoders from before issue 39
/// carry; skipped on load.
pub const LEGACY_ENCODER: &str = "encoder.";

/// A loaded `BUNDLE/autoencoder`.
pub struct LoadedAutoencoder {
    pub ae: Autoencoder,
    pub vs: nn::VarStore,
    pub config: StageConfigFile,
    /// The plan space of `config` (checked at load: every autoencoder has one).
    pub space: PlanSpace,
    pub tokenizer: TextTokenizer,
}

/// Loads `BUNDLE/autoencoder` (kind, version, tokenizer hash, shapes checked).
pub fn load_autoencoder(bundle: &Bundle, device: Device) -> Result<LoadedAutoencoder> {
    let config = bundle.read_config(stage::AUTOENCODER)?;
    let tokenizer = bundle.load_tokenizer()?;
    let (dec, space) = checked_config(&config, bundle.root())?;
    bundle.check_tokenizer(&tokenizer, stage::AUTOENCODER, &config.tokenizer_hash, Some(dec.vocab_size))?;
    crate::weights::check_fits(&bundle.weights_path(stage::AUTOENCODER), dec.min_parameters())?;
    let mut vs = nn::VarStore::new(device);
    let ae = Autoencoder::new(&vs.root(), &dec)?;
    // Bundles from before issue 39 also hold the jointly trained encoder's (unused) weights.
    load_weights_except(&mut vs, &bundle.weights_path(stage::AUTOENCODER), LEGACY_ENCODER)?;
    Ok(LoadedAutoencoder { ae, vs, config, space, tokenizer })
}
