//! Flag groups that several modes read (`--steps`; `--sampler` and `--eta`; `--template` and
//! `--show-steps`), each declared once and flattened into the settings of the modes that read
//! it, and the one check of flags against the modes that read them ([`unread_flag`]).

use crate::{PipelineError, Result};
use clap::{ArgMatches, Args, Command};
use plandiff_diffusion::SamplerKind;
use plandiff_layers::FieldError;
use plandiff_planner::PlanSampling;

/// `--steps`: the planner's (hybrid), the text diffusion's (diffusion), masked diffusion's (masked).
#[derive(Args, Debug, Clone, Copy, Default, PartialEq)]
pub struct StepsFlag {
    /// Denoising steps: the planner's (hybrid, edit), the text diffusion's (diffusion), or
    /// masked diffusion's (masked; default one per position with edit --mode masked).
    #[arg(long)]
    pub steps: Option<usize>,
}

/// The Gaussian diffusion sampler's flags (hybrid's planner, diffusion's text denoiser).
#[derive(Args, Debug, Clone, Default, PartialEq)]
pub struct GaussianFlags {
    #[command(flatten)]
    pub steps: StepsFlag,
    /// Sampler: ddim or ddpm.
    #[arg(long)]
    pub sampler: Option<String>,
    /// DDIM eta: 0 deterministic given the seed's noise, 1 DDPM-like.
    #[arg(long)]
    pub eta: Option<f64>,
}

impl GaussianFlags {
    pub fn sampler(&self) -> Result<Option<SamplerKind>> {
        self.sampler
            .as_deref()
            .map(str::parse::<SamplerKind>)
            .transpose()
            .map_err(|e| PipelineError::Invalid(format!("--sampler: {e}")))
    }

    /// A model's stored defaults with these flags (and a guidance weight) over them, checked.
    pub fn apply(&self, defaults: PlanSampling, guidance: Option<f64>) -> Result<PlanSampling> {
        let d = PlanSampling {
            steps: self.steps.steps.unwrap_or(defaults.steps),
            sampler: self.sampler()?.unwrap_or(defaults.sampler),
            eta: self.eta.unwrap_or(defaults.eta),
            guidance: guidance.unwrap_or(defaults.guidance),
        };
        d.validate().map_err(|e: FieldError| PipelineError::Field(e))?;
        Ok(d)
    }

    /// Checks the values against neutral defaults, so a bad one fails before a model loads.
    pub fn check(&self, guidance: Option<f64>) -> Result<()> {
        let neutral = PlanSampling { steps: 50, sampler: SamplerKind::Ddim, eta: 0.0, guidance: 1.0 };
        self.apply(neutral, guidance).map(drop)
    }
}

/// Infilling: a template to fill instead of a prompt, and the text every K steps.
#[derive(Args, Debug, Clone, Default, PartialEq)]
pub struct TemplateFlags {
    /// Diffusion, masked: text with spans to fill, `[MASK]` for one token, `[MASK:n]` for n,
    /// e.g. "once upon a time [MASK:6] the end." Known tokens never change; a filled position
    /// may become <pad>, which shortens the text. Replaces --prompt.
    #[arg(long)]
    pub template: Option<String>,
    /// Diffusion, masked: print the text every K denoising steps (masked: `_` is a mask).
    #[arg(long)]
    pub show_steps: Option<usize>,
}

impl TemplateFlags {
    pub fn check(&self) -> Result<()> {
        if self.show_steps == Some(0) {
            return Err(PipelineError::Invalid("--show-steps must be >= 1".into()));
        }
        if let Some(t) = &self.template {
            plandiff_embedding::parse_template(t).map_err(|e| PipelineError::Invalid(format!("--template: {e}")))?;
        }
        Ok(())
    }
}

/// What adds a reader's flags to a command (a clap `Args::augment_args`).
pub type AddFlags = fn(Command) -> Command;

/// Who reads which flags: `(reader, the reader's flags)`, e.g. each mode and its settings.
pub type FlagTable<'a> = [(&'a str, AddFlags)];

/// The ids and `--long` names of the flags `add` puts on a command.
pub fn flags_of(add: AddFlags) -> Vec<(String, String)> {
    add(Command::new("flags"))
        .get_arguments()
        .map(|a| (a.get_id().to_string(), format!("--{}", a.get_long().unwrap_or(a.get_id().as_str()))))
        .collect()
}

/// Adds every reader's flags to `cmd`, each once (a flag several readers share is declared by
/// one group); `hidden` flags are added hidden (refused later by the command).
pub fn add_flags(mut cmd: Command, table: &FlagTable, hidden: &[&str]) -> Command {
    for (_, add) in table {
        for arg in add(Command::new("flags")).get_arguments() {
            if cmd.get_arguments().all(|a| a.get_id() != arg.get_id()) {
                let hide = hidden.contains(&arg.get_id().as_str());
                cmd = cmd.arg(arg.clone().hide(hide || arg.is_hide_set()));
            }
        }
    }
    cmd
}

/// The first flag given on the command line that none of `chosen` reads: one line naming the
/// readers that do (`--block-length is read by --mode masked; ...`), `how` naming them
/// (`|r| format!("--mode {r}")`) and `why` saying what was chosen.
pub fn unread_flag(
    m: &ArgMatches,
    table: &FlagTable,
    chosen: &[&str],
    how: impl Fn(&str) -> String,
    why: &str,
) -> Option<String> {
    let flags: Vec<(&str, Vec<(String, String)>)> = table.iter().map(|(r, add)| (*r, flags_of(*add))).collect();
    let given = flags.iter().flat_map(|(_, f)| f).find(|(id, _)| {
        let read = flags.iter().filter(|(_, f)| f.iter().any(|(i, _)| i == id)).any(|(r, _)| chosen.contains(r));
        !read && m.value_source(id) == Some(clap::parser::ValueSource::CommandLine)
    })?;
    let readers: Vec<String> =
        flags.iter().filter(|(_, f)| f.iter().any(|(i, _)| *i == given.0)).map(|(r, _)| how(r)).collect();
    Some(format!("{} is read by {} only; {why}", given.1, readers.join(" and ")))
}

/// `A..B`, `A..=B` or `A` (1-based, inclusive) for `flag`.
pub fn parse_range(flag: &str, s: &str) -> Result<(usize, usize)> {
    let bad = || {
        PipelineError::Invalid(format!("{flag} {s}: not a sentence range; write A..B (1-based, inclusive), e.g. 2..3"))
    };
    let (a, b) = match s.split_once("..") {
        Some((a, b)) => (a, b.strip_prefix('=').unwrap_or(b)),
        None => (s, s),
    };
    let a: usize = a.trim().parse().map_err(|_| bad())?;
    let b: usize = b.trim().parse().map_err(|_| bad())?;
    Ok((a, b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("--rewrite", "2..3").unwrap(), (2, 3));
        assert_eq!(parse_range("--rewrite", "2..=3").unwrap(), (2, 3));
        assert_eq!(parse_range("--rewrite", "4").unwrap(), (4, 4));
        assert!(parse_range("--rewrite", "a..b").unwrap_err().to_string().starts_with("--rewrite a..b"));
        assert!(parse_range("--rewrite", "-1..2").is_err());
    }

    #[derive(Args, Debug, Clone, Default)]
    struct A {
        #[command(flatten)]
        steps: StepsFlag,
        #[arg(long)]
        only_a: bool,
    }

    #[derive(Args, Debug, Clone, Default)]
    struct B {
        #[command(flatten)]
        steps: StepsFlag,
    }

    #[test]
    fn a_shared_flag_is_added_once_and_an_unread_one_names_its_readers() {
        let table: &FlagTable = &[("a", A::augment_args), ("b", B::augment_args)];
        let cmd = add_flags(Command::new("t"), table, &[]);
        assert_eq!(cmd.get_arguments().filter(|a| a.get_id() == "steps").count(), 1);
        let m = cmd.clone().try_get_matches_from(["t", "--steps", "3", "--only-a"]).unwrap();
        assert_eq!(unread_flag(&m, table, &["a"], |r| format!("--mode {r}"), "x"), None);
        let e = unread_flag(&m, table, &["b"], |r| format!("--mode {r}"), "this is --mode b").unwrap();
        assert_eq!(e, "--only-a is read by --mode a only; this is --mode b");
        let m = cmd.try_get_matches_from(["t", "--steps", "3"]).unwrap();
        assert_eq!(unread_flag(&m, table, &["b"], |r| r.to_string(), "x"), None);
    }

    #[test]
    fn gaussian_flags_name_a_bad_value() {
        let f = GaussianFlags { eta: Some(3.0), ..Default::default() };
        assert!(f.check(None).unwrap_err().to_string().contains("eta"));
        let f = GaussianFlags { sampler: Some("euler".into()), ..Default::default() };
        assert!(f.check(None).unwrap_err().to_string().starts_with("--sampler"));
        assert!(GaussianFlags::default().check(Some(2.0)).is_ok());
    }
}
