//! Seeded Gaussian noise drawn on the host (ChaCha8, Box-Muller), so a plan sampled with one
//! seed is the same on CPU and CUDA and does not depend on libtorch's global generator,
//! which other threads may share.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tch::{Device, Tensor};

pub struct HostNoise {
    rng: ChaCha8Rng,
    device: Device,
}

impl HostNoise {
    pub fn new(seed: u64, device: Device) -> Self {
        Self { rng: ChaCha8Rng::seed_from_u64(seed), device }
    }

    /// Standard normal `f32` values of `shape`, on the device.
    pub fn sample(&mut self, shape: &[i64]) -> Tensor {
        let n: i64 = shape.iter().product();
        let mut v = Vec::with_capacity(n as usize);
        while (v.len() as i64) < n {
            let u1: f64 = self.rng.gen::<f64>().max(1e-300);
            let u2: f64 = self.rng.gen();
            let r = (-2.0 * u1.ln()).sqrt();
            let a = 2.0 * std::f64::consts::PI * u2;
            v.push((r * a.cos()) as f32);
            v.push((r * a.sin()) as f32);
        }
        v.truncate(n as usize);
        Tensor::from_slice(&v).view(shape).to_device(self.device)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_standard_normal() {
        let a = HostNoise::new(7, Device::Cpu).sample(&[20000]);
        let b = HostNoise::new(7, Device::Cpu).sample(&[20000]);
        let c = HostNoise::new(8, Device::Cpu).sample(&[20000]);
        assert!(a.equal(&b));
        assert!(!a.equal(&c));
        let mean = a.mean(tch::Kind::Float).double_value(&[]);
        let std = a.std(true).double_value(&[]);
        assert!(mean.abs() < 0.03 && (std - 1.0).abs() < 0.03, "mean {mean} std {std}");
        assert_eq!(HostNoise::new(1, Device::Cpu).sample(&[2, 3, 5]).size(), vec![2, 3, 5]);
    }
}
