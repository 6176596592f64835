//! Shared helpers of the binary: devices, logging, one-line errors.

use crate::args::Cli;
use anyhow::{bail, Result};
use std::io::IsTerminal;
use tch::Device;

/// `auto | cpu | cuda | cuda:N`.
pub fn parse_device(s: &str) -> Result<Device> {
    let cuda_n = tch::Cuda::device_count();
    let none = || {
        anyhow::anyhow!(
            "--device {s}: no CUDA device is available (this libtorch sees {cuda_n}); use --device cpu, or --device auto to pick what is there"
        )
    };
    match s {
        "auto" => Ok(if tch::Cuda::is_available() { Device::Cuda(0) } else { Device::Cpu }),
        "cpu" => Ok(Device::Cpu),
        "cuda" => {
            if !tch::Cuda::is_available() {
                return Err(none());
            }
            Ok(Device::Cuda(0))
        }
        _ => match s.strip_prefix("cuda:").map(str::parse::<usize>) {
            Some(Ok(n)) => {
                if !tch::Cuda::is_available() {
                    return Err(none());
                }
                if n as i64 >= cuda_n {
                    bail!("--device {s}: there are only {cuda_n} CUDA devices (cuda:0..cuda:{})", cuda_n - 1);
                }
                Ok(Device::Cuda(n))
            }
            _ => bail!("--device {s}: not a device; use auto, cpu, cuda or cuda:N"),
        },
    }
}

pub fn init_logging(cli: &Cli) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("{},tokenizers=warn", cli.log_level)));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .try_init();
}

/// The error chain on one line, each cause's first line only (libtorch appends C++
/// backtraces to its messages).
pub fn one_line(e: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in e.chain() {
        let s = cause.to_string();
        let first = s.lines().next().unwrap_or_default().trim().to_string();
        if !first.is_empty() && !parts.iter().any(|p| p.contains(&first)) {
            parts.push(first);
        }
    }
    parts.join(": ")
}

pub fn stderr_is_tty() -> bool {
    std::io::stderr().is_terminal()
}

/// Planner sampling settings: the planner's stored defaults, overridden by the flags.
pub fn plan_sampling(
    a: &crate::args::PlanArgs,
    defaults: plandiff_planner::SamplingDefaults,
) -> Result<plandiff_planner::PlanSampling> {
    let mut d = defaults;
    if let Some(s) = a.steps {
        d.steps = s;
    }
    if let Some(s) = &a.sampler {
        d.sampler = s.parse().map_err(|e: String| anyhow::anyhow!("--sampler: {e}"))?;
    }
    if let Some(e) = a.eta {
        d.eta = e;
    }
    if let Some(g) = a.guidance {
        d.guidance = g;
    }
    d.validate().map_err(|e| anyhow::anyhow!("planner sampling: {e} (flags --steps, --eta, --guidance)"))?;
    Ok(d.to_sampling())
}
