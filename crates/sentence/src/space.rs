//! A plan space made of a frozen encoder's sentence embeddings: which encoder, and the
//! per-dimension mean and standard deviation (fitted on a training split) that normalise its
//! embeddings into latents (LCM's normaliser). Stored in the config.json of the stage that
//! reads such latents, so the space travels with the bundle and the encoder's weights do not.

use crate::encoder::{find_encoder, EncoderError, EncoderId, SentenceEncoder};
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanSpace {
    pub encoder: EncoderId,
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

impl PlanSpace {
    /// Fits the normaliser on embeddings `(N, D)` of `encoder`.
    pub fn fit(encoder: EncoderId, e: &Tensor) -> Self {
        let e = e.to_kind(Kind::Double);
        let mean = e.mean_dim(0, false, Kind::Double).to_kind(Kind::Float);
        let std = e.std_dim(0, true, false).clamp_min(1e-6).to_kind(Kind::Float);
        let v = |t: Tensor| Vec::<f32>::try_from(t.to_device(Device::Cpu)).unwrap_or_default();
        Self { encoder, mean: v(mean), std: v(std) }
    }

    pub fn width(&self) -> i64 {
        self.mean.len() as i64
    }

    /// Latents `(N, D)` of embeddings `(N, D)`: `(e - mean) / std`, on `e`'s device.
    pub fn normalise(&self, e: &Tensor) -> Tensor {
        let dev = e.device();
        (e - Tensor::from_slice(&self.mean).to_device(dev)) / Tensor::from_slice(&self.std).to_device(dev)
    }

    /// Latents `(..., D)` moved onto the encoder's unit sphere: denormalised, L2-normalised
    /// (the encoder's sentence embeddings have norm 1), normalised again.
    pub fn to_sphere(&self, z: &Tensor) -> Tensor {
        let dev = z.device();
        let (mean, std) = (Tensor::from_slice(&self.mean).to_device(dev), Tensor::from_slice(&self.std).to_device(dev));
        let e = z.to_kind(tch::Kind::Float) * &std + &mean;
        let e = &e / e.norm_scalaropt_dim(2, [-1i64].as_slice(), true).clamp_min(1e-12);
        ((e - mean) / std).to_kind(z.kind())
    }

    /// Latents `(..., D)` moved `weight` (0 to 1) of the way, in log norm, to the norm of the
    /// space's sentences, `sqrt(D)` (the normaliser gives every dimension unit variance on the
    /// training sentences): `z (sqrt(D) / |z|)^weight`, the direction kept. A denoiser that
    /// predicts x0 regresses toward the mean sentence and its samples fall short of that norm.
    pub fn to_norm(&self, z: &Tensor, weight: f64) -> Tensor {
        if weight <= 0.0 {
            return z.shallow_clone();
        }
        let zf = z.to_kind(Kind::Float);
        let norm = zf.norm_scalaropt_dim(2, [-1i64].as_slice(), true).clamp_min(1e-6);
        let target = (self.width() as f64).sqrt();
        (&zf * (norm.reciprocal() * target).pow_tensor_scalar(weight)).to_kind(z.kind())
    }

    /// Checks that `enc` is the encoder this space was made with (name and weights).
    pub fn check(&self, enc: &SentenceEncoder) -> Result<(), EncoderError> {
        let id = enc.id()?;
        if id.weights_sha256 != self.encoder.weights_sha256 || id.tokenizer_sha256 != self.encoder.tokenizer_sha256 {
            // The expected hash comes from a bundle's config.json: cut by characters, not bytes.
            let short = |h: &str| h.chars().take(12).collect::<String>();
            return Err(EncoderError::Run(format!(
                "{} is not the {} this plan space was made with (its weights or tokenizer differ: sha256 {}..., expected {}...); reinstall it with `make venv`",
                enc.dir().display(),
                self.encoder.name,
                short(&id.weights_sha256),
                short(&self.encoder.weights_sha256)
            )));
        }
        Ok(())
    }

    /// The encoder this space was made with, from where `make` installs it, checked: a missing
    /// or different one is a one-line error that names the fix.
    pub fn encoder(&self, device: tch::Device) -> Result<SentenceEncoder, EncoderError> {
        let enc = SentenceEncoder::load(&find_encoder(None)?, device)?;
        self.check(&enc)?;
        self.check_statistics(enc.width())?;
        Ok(enc)
    }

    /// The normaliser's statistics: one mean and one positive std per dimension of the
    /// encoder's `width`, all finite; else the space (an autoencoder's config.json) is damaged.
    pub fn check_statistics(&self, width: i64) -> Result<(), EncoderError> {
        let whole = self.mean.len() as i64 == width && self.std.len() as i64 == width;
        let finite = self.mean.iter().all(|m| m.is_finite()) && self.std.iter().all(|s| s.is_finite() && *s > 0.0);
        if whole && finite {
            return Ok(());
        }
        Err(EncoderError::Run(format!(
            "the autoencoder's plan space (\"plan_space\" in its config.json) is damaged: its mean and std must be {width} finite values (std above 0), it has {} and {}; restore the bundle or retrain the autoencoder",
            self.mean.len(),
            self.std.len()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Seeded embeddings `(n, d)` and the space fitted on them.
    fn fitted(seed: i64, n: i64, d: i64, spread: f64, centre: f64) -> (Tensor, PlanSpace) {
        tch::manual_seed(seed);
        let e = Tensor::randn([n, d], (Kind::Float, Device::Cpu)) * spread + centre;
        let id = EncoderId { name: "x".into(), weights_sha256: "a".into(), tokenizer_sha256: "b".into() };
        let s = PlanSpace::fit(id, &e);
        (e, s)
    }

    #[test]
    fn the_normaliser_gives_zero_mean_unit_variance_per_dimension() {
        let (e, s) = fitted(0, 500, 8, 0.05, 0.3);
        let z = s.normalise(&e);
        let mean = z.mean_dim(0, false, Kind::Float).abs().max().double_value(&[]);
        let std = (z.std_dim(0, true, false) - 1.0).abs().max().double_value(&[]);
        assert!(mean < 1e-4 && std < 1e-4, "{mean} {std}");
        let back: PlanSpace = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
        assert_eq!(back, s);
    }

    /// Norm matching: weight 1 puts every row at the sentences' norm sqrt(D), 0.5 halfway in
    /// log norm, 0 changes nothing; the direction never changes. The space's real sentences
    /// have mean squared norm D, which is what makes sqrt(D) their norm.
    #[test]
    fn to_norm_moves_rows_to_the_sentences_norm() {
        let (e, s) = fitted(1, 2000, 16, 0.1, 0.2);
        let real = s.normalise(&e).pow_tensor_scalar(2).sum_dim_intlist(-1, false, Kind::Float).mean(Kind::Float);
        assert!((real.double_value(&[]) / 16.0 - 1.0).abs() < 0.01);
        let z = Tensor::from_slice(&[1f32; 16]).view([1, 16]) * 0.5; // norm 2, sqrt(D) = 4
        let n = |t: &Tensor| t.norm().double_value(&[]);
        assert!((n(&s.to_norm(&z, 1.0)) - 4.0).abs() < 1e-5);
        assert!((n(&s.to_norm(&z, 0.5)) - 8f64.sqrt()).abs() < 1e-5);
        assert!(s.to_norm(&z, 0.0).equal(&z));
        let cos = (s.to_norm(&z, 1.0) * &z).sum(Kind::Float).double_value(&[]) / (4.0 * 2.0);
        assert!((cos - 1.0).abs() < 1e-6, "the direction is kept");
    }

    /// A bundle's recorded hash is user input: a multi-byte one is reported, not sliced.
    #[test]
    fn a_foreign_hash_is_named_without_panicking() {
        let Ok(dir) = find_encoder(None) else { return };
        let enc = SentenceEncoder::load(&dir, Device::Cpu).unwrap();
        let mut id = enc.id().unwrap();
        id.weights_sha256 = "ééééééééééééé".into();
        let s = PlanSpace { encoder: id, mean: vec![0.0; 384], std: vec![1.0; 384] };
        let e = s.check(&enc).unwrap_err().to_string();
        assert!(e.contains("expected éééééééééééé...") && e.contains("make venv"), "{e}");
    }
}
