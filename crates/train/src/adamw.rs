//! AdamW (Loshchilov & Hutter 2019) on plain tensors, so the moments can be saved and a
//! resumed run continues bit for bit. Same arithmetic as `torch.optim.AdamW` (single-tensor
//! path):
//!
//! | here | paper | meaning |
//! |---|---|---|
//! | `m` | m_t | first moment, `b1 m + (1 - b1) g` |
//! | `v` | v_t | second moment, `b2 v + (1 - b2) g^2` |
//! | `bc1`, `bc2` | 1 - b^t | bias corrections |
//!
//! `p <- p (1 - lr wd)` (decay group only), then `p <- p - lr/bc1 * m / (sqrt(v)/sqrt(bc2) + eps)`.

use crate::{Result, TrainError};
use std::path::Path;
use tch::{Kind, Tensor};

#[derive(Debug, Clone, Copy)]
pub struct AdamWConfig {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

struct Slot {
    name: String,
    param: Tensor,
    m: Tensor,
    v: Tensor,
    decay: bool,
}

pub struct AdamW {
    cfg: AdamWConfig,
    slots: Vec<Slot>,
    step: u64,
}

impl AdamW {
    /// Parameters with two or more dimensions (matrices, embeddings) are decayed; biases,
    /// norm gains and other vectors are not (as in nanoGPT's `configure_optimizers`).
    pub fn new(named: Vec<(String, Tensor)>, cfg: AdamWConfig) -> Self {
        let mut named = named;
        named.sort_by(|a, b| a.0.cmp(&b.0));
        let slots = named
            .into_iter()
            .map(|(name, param)| Slot {
                decay: param.dim() >= 2,
                m: param.zeros_like().detach(),
                v: param.zeros_like().detach(),
                name,
                param,
            })
            .collect();
        Self { cfg, slots, step: 0 }
    }

    /// The optimized parameters, sorted by name (shallow clones).
    pub fn params(&self) -> Vec<Tensor> {
        self.slots.iter().map(|s| s.param.shallow_clone()).collect()
    }

    pub fn steps_taken(&self) -> u64 {
        self.step
    }

    pub fn zero_grad(&mut self) {
        for s in &mut self.slots {
            s.param.zero_grad();
        }
    }

    /// Global L2 norm of all gradients; scales them down to `max_norm` when above it (like
    /// `torch.nn.utils.clip_grad_norm_`). Returns the norm before clipping as a 0-d tensor:
    /// the coefficient `min(1, max_norm / (norm + 1e-6))` stays on the device, so clipping
    /// costs no host sync (read the norm only when logging).
    pub fn clip_grad_norm(&mut self, max_norm: f64) -> Tensor {
        tch::no_grad(|| {
            let grads: Vec<Tensor> = self.slots.iter().map(|s| s.param.grad()).filter(Tensor::defined).collect();
            if grads.is_empty() {
                return Tensor::zeros([], (Kind::Float, tch::Device::Cpu));
            }
            let norms: Vec<Tensor> = grads.iter().map(|g| g.norm().to_kind(Kind::Float)).collect();
            let total = Tensor::stack(&norms, 0).norm();
            if max_norm > 0.0 {
                let coef = ((&total + 1e-6).reciprocal() * max_norm).clamp_max(1.0);
                for mut g in grads {
                    let _ = g.g_mul_(&coef.to_kind(g.kind()));
                }
            }
            total
        })
    }

    pub fn step(&mut self, lr: f64) {
        self.step += 1;
        let t = self.step as i32;
        let c = self.cfg;
        let bc1 = 1.0 - c.beta1.powi(t);
        let bc2_sqrt = (1.0 - c.beta2.powi(t)).sqrt();
        tch::no_grad(|| {
            for s in &mut self.slots {
                let g = s.param.grad();
                if !g.defined() {
                    continue;
                }
                let _ = s.m.lerp_(&g, 1.0 - c.beta1);
                let _ = s.v.lerp_(&(&g * &g), 1.0 - c.beta2);
                if s.decay && c.weight_decay != 0.0 {
                    let _ = s.param.g_mul_scalar_(1.0 - lr * c.weight_decay);
                }
                // denom = sqrt(v)/sqrt(bc2) + eps, then p += m / (-denom bc1/lr): one temporary.
                let mut denom = s.v.sqrt();
                let _ = denom.g_div_scalar_(bc2_sqrt);
                let _ = denom.g_add_scalar_(c.eps);
                let _ = denom.g_mul_scalar_(-bc1 / lr);
                let _ = s.param.addcdiv_(&s.m, &denom);
            }
        });
    }

    /// Saves the moments (`m.<name>`, `v.<name>`) as safetensors; the step count lives in
    /// the trainer state.
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut named: Vec<(String, Tensor)> = Vec::with_capacity(2 * self.slots.len());
        for s in &self.slots {
            named.push((format!("m.{}", s.name), s.m.to_device(tch::Device::Cpu)));
            named.push((format!("v.{}", s.name), s.v.to_device(tch::Device::Cpu)));
        }
        Tensor::write_safetensors(&named, path)?;
        Ok(())
    }

    pub fn load(&mut self, path: &Path, steps_taken: u64) -> Result<()> {
        let bad = |m: String| {
            TrainError::Invalid(format!(
                "{}: {m}; the checkpoint is damaged, resume from an intact one",
                path.display()
            ))
        };
        let tensors = Tensor::read_safetensors(path)
            .map_err(|e| bad(format!("cannot read optimizer state ({})", first_line(&e.to_string()))))?;
        let map: std::collections::HashMap<String, Tensor> = tensors.into_iter().collect();
        tch::no_grad(|| -> Result<()> {
            for s in &mut self.slots {
                for (prefix, dst) in [("m", &mut s.m), ("v", &mut s.v)] {
                    let key = format!("{prefix}.{}", s.name);
                    let src = map.get(&key).ok_or_else(|| bad(format!("no tensor {key}")))?;
                    if src.size() != dst.size() {
                        return Err(bad(format!("{key} has shape {:?}, the model needs {:?}", src.size(), dst.size())));
                    }
                    dst.copy_(src);
                }
            }
            Ok(())
        })?;
        self.step = steps_taken;
        Ok(())
    }
}

pub(crate) fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or_default().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    #[test]
    fn matches_hand_computed_first_steps() {
        // One scalar parameter, grad = 2 * p (loss p^2), p0 = 1, lr 0.1, wd 0.5.
        let p = Tensor::from_slice(&[1.0f64]).set_requires_grad(true);
        let cfg = AdamWConfig { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.5 };
        let mut opt = AdamW::new(vec![("w".into(), p.shallow_clone())], cfg);
        let mut expect = 1.0f64;
        let (mut m, mut v) = (0.0f64, 0.0f64);
        for t in 1..=3 {
            opt.zero_grad();
            (&p * &p).sum(Kind::Double).backward();
            let g = 2.0 * expect;
            opt.step(0.1);
            m = 0.9 * m + 0.1 * g;
            v = 0.999 * v + 0.001 * g * g;
            // 1-d parameters are not decayed.
            let bc1 = 1.0 - 0.9f64.powi(t);
            let bc2 = 1.0 - 0.999f64.powi(t);
            expect -= 0.1 / bc1 * m / (v.sqrt() / bc2.sqrt() + 1e-8);
            assert!((p.double_value(&[0]) - expect).abs() < 1e-12, "step {t}");
        }
        assert_eq!(opt.steps_taken(), 3);
    }

    #[test]
    fn clip_scales_to_max_norm() {
        let p = Tensor::zeros([2], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let mut opt = AdamW::new(
            vec![("w".into(), p.shallow_clone())],
            AdamWConfig { beta1: 0.9, beta2: 0.99, eps: 1e-8, weight_decay: 0.0 },
        );
        (&p * Tensor::from_slice(&[3.0f32, 4.0])).sum(Kind::Float).backward();
        let n = opt.clip_grad_norm(1.0).double_value(&[]);
        assert!((n - 5.0).abs() < 1e-5);
        let g: Vec<f32> = Vec::try_from(p.grad()).unwrap();
        assert!((g[0] - 0.6).abs() < 1e-5 && (g[1] - 0.8).abs() < 1e-5);
    }
}
