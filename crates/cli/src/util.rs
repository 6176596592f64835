//! Shared helpers of the binary: devices, logging, one-line errors.

use crate::args::Cli;
use anyhow::{bail, Result};
use std::io::IsTerminal;
use tch::Device;

/// Intra-op threads: `--threads` (1 to 4x the cores), else all cores for the batch jobs
/// (`heavy`), 1 for the rest (see the flag's help).
pub fn set_threads(threads: Option<usize>, heavy: bool) -> Result<()> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let n = match threads {
        Some(0) => bail!("--threads 0: give at least 1"),
        Some(n) if n > 4 * cores => bail!("--threads {n}: this machine has {cores} cores; give at most {}", 4 * cores),
        Some(n) => n,
        None if heavy => return Ok(()),
        None => 1,
    };
    tch::set_num_threads(n as i32);
    Ok(())
}

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

/// Logs to stderr at `--log-level` (RUST_LOG overrides it); a torchrun rank other than 0 logs
/// warnings and errors only, so a job's log reads as one process's.
pub fn init_logging(cli: &Cli) {
    let other_rank =
        std::env::var("RANK").ok().is_some_and(|r| r.trim() != "0") && std::env::var_os("WORLD_SIZE").is_some();
    let level = if other_rank { "warn".to_string() } else { cli.log_level.clone() };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("{level},tokenizers=warn")));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .try_init();
}

/// The error chain on one line, each cause's first line only (libtorch appends C++
/// backtraces to its messages). A cause that starts with the path its context ends with
/// (`--checkpoint b` then `b: no such folder`) is joined without repeating it.
pub fn one_line(e: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in e.chain() {
        // A setting that an earlier part already quotes (a field of a bundle's file, shown
        // with its file) is not shown again as a flag.
        let plain = cause.to_string();
        let plain = plain.lines().next().unwrap_or_default().trim();
        if !plain.is_empty() && parts.iter().any(|p| p.contains(plain)) {
            continue;
        }
        let s = flag_message(cause).unwrap_or_else(|| cause.to_string());
        // No control characters from a file (a TOML with NUL bytes) reach the terminal.
        let s: String = s.chars().map(|c| if c.is_control() && c != '\n' { '\u{FFFD}' } else { c }).collect();
        let mut first = s.lines().next().unwrap_or_default().trim().to_string();
        if first.is_empty() || parts.iter().any(|p| p.contains(&first)) {
            continue;
        }
        if let Some(last) = parts.last().and_then(|p| p.rsplit(' ').next()) {
            if let Some(rest) = first.strip_prefix(&format!("{last}: ")) {
                first = rest.to_string();
            }
        }
        parts.push(first);
    }
    parts.join(": ")
}

/// A setting out of range, from a library, named by its flag (`--top-p 1.5 must be ...`).
fn flag_message(cause: &(dyn std::error::Error + 'static)) -> Option<String> {
    use plandiff_pipeline::PipelineError;
    match cause.downcast_ref::<PipelineError>() {
        Some(PipelineError::Field(f)) => Some(f.as_flag()),
        _ => cause.downcast_ref::<plandiff_layers::FieldError>().map(|f| f.as_flag()),
    }
}

pub fn stderr_is_tty() -> bool {
    std::io::stderr().is_terminal()
}

/// A failed write to stdout as one line (a closed pipe, `> /dev/full`).
pub fn stdout_error(e: std::io::Error) -> anyhow::Error {
    anyhow::anyhow!("writing to stdout: {e} (the reader closed it, or its disk is full)")
}

/// `println!` that returns the write error from the calling command instead of panicking.
#[macro_export]
macro_rules! outln {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout(), $($t)*).map_err($crate::util::stdout_error)?
    }};
}

/// `print!` that returns the write error from the calling command instead of panicking.
#[macro_export]
macro_rules! out {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        write!(std::io::stdout(), $($t)*).map_err($crate::util::stdout_error)?
    }};
}
