//! Parity with the `diffusers` Python package (installed in the project's `.venv` by
//! `make`): each beta schedule x spacing x prediction type (and zero-SNR rescaling with both
//! `set_alpha_to_one` values) gives the same alphas_cumprod, inference timesteps and DDIM /
//! DDPM step outputs with injected noise, to 1e-5.

use plandiff_diffusion::{NoiseSchedule, ScheduleConfig};
use serde_json::Value;
use std::process::Command;
use tch::{Kind, Tensor};

#[path = "../../../tests/common/venv.rs"]
mod venv;

use venv::{python, root};

fn floats(v: &Value) -> Vec<f64> {
    v.as_array().expect("array").iter().map(|x| x.as_f64().expect("number")).collect()
}

fn tensor(v: &Value) -> Tensor {
    Tensor::from_slice(&floats(v)).to_kind(Kind::Double)
}

fn max_diff(a: &Tensor, b: &[f64]) -> f64 {
    (a - Tensor::from_slice(b)).abs().max().double_value(&[])
}

#[test]
fn matches_diffusers() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("parity.json");
    let o = Command::new(python()).arg(root().join("python/diffusers_parity.py")).arg(&out).output().unwrap();
    assert!(o.status.success(), "diffusers_parity.py failed: {}", String::from_utf8_lossy(&o.stderr));
    let data: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    let n = data["n_steps"].as_u64().unwrap() as usize;
    let cases = data["cases"].as_array().unwrap();
    assert!(cases.len() >= 29);
    let mut worst = 0f64;
    for case in cases {
        let cfg: ScheduleConfig = serde_json::from_value(case["config"].clone()).unwrap();
        let name = format!(
            "{:?}/{:?}/{:?}/rescale={}",
            cfg.beta_schedule, cfg.timestep_spacing, cfg.prediction_type, cfg.rescale_zero_terminal_snr
        );
        let s = NoiseSchedule::new(cfg).unwrap();
        let acp = floats(&case["alphas_cumprod"]);
        let d = s.alphas_cumprod.iter().zip(&acp).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
        assert!(d < 1e-5, "{name}: alphas_cumprod differ from diffusers' float32 table by {d}");
        let acp = floats(&case["alphas_cumprod_f64"]);
        let d = s.alphas_cumprod.iter().zip(&acp).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
        assert!(d < 1e-12, "{name}: alphas_cumprod differ from diffusers' tables built in float64 by {d}");
        let ts: Vec<usize> = s.timesteps(n).unwrap();
        let want: Vec<usize> =
            case["ddim_timesteps"].as_array().unwrap().iter().map(|t| t.as_u64().unwrap() as usize).collect();
        assert_eq!(ts, want, "{name}: DDIM timesteps");
        let want: Vec<usize> =
            case["ddpm_timesteps"].as_array().unwrap().iter().map(|t| t.as_u64().unwrap() as usize).collect();
        assert_eq!(ts, want, "{name}: DDPM timesteps");
        for st in case["steps"].as_array().unwrap() {
            let t = st["t"].as_u64().unwrap() as usize;
            let (x, m, noise) = (tensor(&st["sample"]), tensor(&st["model_output"]), tensor(&st["noise"]));
            for eta in [0.0, 0.7] {
                let o = s.ddim_step(&m, t, n, &x, eta, Some(&noise));
                let d1 = max_diff(&o.prev_sample, &floats(&st[format!("ddim_eta{eta:?}")]));
                let d2 = max_diff(&o.pred_original_sample, &floats(&st[format!("ddim_x0_eta{eta:?}")]));
                assert!(d1 < 1e-5 && d2 < 1e-5, "{name}: DDIM step t={t} eta={eta}: {d1} {d2}");
                worst = worst.max(d1).max(d2);
            }
            let o = s.ddpm_step(&m, t, n, &x, Some(&noise));
            let d = max_diff(&o.prev_sample, &floats(&st["ddpm"]));
            assert!(d < 1e-5, "{name}: DDPM step t={t}: {d}");
            worst = worst.max(d);
        }
    }
    println!("{} configurations match diffusers {}; worst step difference {worst:.2e}", cases.len(), data["diffusers"]);
}
