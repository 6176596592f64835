//! Linear warmup then cosine decay to `min_lr` (Loshchilov & Hutter 2017, SGDR without
//! restarts), as in nanoGPT's `get_lr`.

#[derive(Debug, Clone, Copy)]
pub struct LrSchedule {
    pub lr: f64,
    pub min_lr: f64,
    pub warmup_steps: u64,
    pub total_steps: u64,
}

impl LrSchedule {
    /// The schedule of a training config.
    pub fn of(train: &plandiff_bundle::TrainConfig) -> Self {
        Self { lr: train.lr, min_lr: train.min_lr, warmup_steps: train.warmup_steps, total_steps: train.max_steps }
    }

    /// LR for optimizer step `step` (0-based).
    pub fn at(&self, step: u64) -> f64 {
        if step < self.warmup_steps {
            return self.lr * (step + 1) as f64 / self.warmup_steps as f64;
        }
        if step >= self.total_steps {
            return self.min_lr;
        }
        let span = (self.total_steps - self.warmup_steps).max(1) as f64;
        let ratio = (step - self.warmup_steps) as f64 / span;
        let coeff = 0.5 * (1.0 + (std::f64::consts::PI * ratio).cos());
        self.min_lr + coeff * (self.lr - self.min_lr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_peak_and_floor() {
        let s = LrSchedule { lr: 1e-3, min_lr: 1e-4, warmup_steps: 10, total_steps: 110 };
        assert!((s.at(0) - 1e-4).abs() < 1e-12);
        assert!((s.at(9) - 1e-3).abs() < 1e-12);
        assert!((s.at(10) - 1e-3).abs() < 1e-12);
        assert!((s.at(60) - 5.5e-4).abs() < 1e-12);
        assert!((s.at(110) - 1e-4).abs() < 1e-12);
        let v: Vec<f64> = (10..110).map(|i| s.at(i)).collect();
        assert!(v.windows(2).all(|w| w[1] <= w[0]));
    }
}
