use crate::args::ScheduleArgs;
use anyhow::Result;
use plandiff_diffusion::{BetaSchedule, NoiseSchedule, ScheduleConfig};
use serde_json::json;
use std::process::ExitCode;

pub fn run(a: ScheduleArgs) -> Result<ExitCode> {
    let beta_schedule: BetaSchedule = a
        .beta_schedule
        .parse()
        .map_err(|e: plandiff_diffusion::DiffusionError| anyhow::anyhow!("--beta-schedule: {e}"))?;
    if !(2..=100_000).contains(&a.timesteps) {
        anyhow::bail!("--timesteps {} must be in 2..=100000", a.timesteps);
    }
    let cfg = ScheduleConfig {
        num_train_timesteps: a.timesteps,
        beta_start: a.beta_start,
        beta_end: a.beta_end,
        beta_schedule,
        rescale_zero_terminal_snr: a.rescale_zero_snr,
        ..ScheduleConfig::default()
    };
    let s = NoiseSchedule::new(cfg)?;
    let snr: Vec<f64> = (0..s.num_train_timesteps()).map(|t| s.snr(t)).collect();
    if a.json {
        crate::outln!("{}", json!({"betas": s.betas, "alphas_cumprod": s.alphas_cumprod, "snr": snr}));
        return Ok(ExitCode::SUCCESS);
    }
    crate::outln!("{:>6}  {:>12}  {:>14}  {:>12}  {:>8}", "t", "beta", "alphas_cumprod", "snr", "log10 snr");
    let n = s.num_train_timesteps();
    let stride = if a.all { 1 } else { (n / 50).max(1) };
    for t in (0..n).filter(|t| t % stride == 0 || *t == n - 1) {
        crate::outln!(
            "{t:>6}  {:>12.6e}  {:>14.8}  {:>12.4e}  {:>8.3}",
            s.betas[t],
            s.alphas_cumprod[t],
            snr[t],
            snr[t].log10()
        );
    }
    if !a.all && stride > 1 {
        eprintln!("(every {stride}th timestep; --all prints each one, --json gives the full arrays)");
    }
    Ok(ExitCode::SUCCESS)
}
