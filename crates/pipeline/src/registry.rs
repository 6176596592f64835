//! The one list of generation modes, [`MODES`], and what `generate` and `ab` ask of it: a mode
//! by name, every mode's flags on a command, and which mode reads a flag.

use crate::flags::{add_flags, unread_flag, AddFlags, FlagTable};
use crate::mode::{Mode, ModeSettings};
use crate::{ar, diffusion, hybrid, masked, PipelineError, Result};
use clap::{ArgMatches, Command};

/// Every mode, in the order `--help` lists them. A new mode is a module with a [`Mode`]
/// constant (its settings struct declares its flags), and one line here.
pub static MODES: &[Mode] = &[ar::MODE, hybrid::MODE, diffusion::MODE, masked::MODE];

/// Flags of one `generate` run that an A/B (many prompts, a report) does not take.
pub const GENERATE_ONLY: &[&str] = &["template", "show_steps", "show_plan"];

/// The mode of this name.
pub fn find_mode(name: &str) -> Option<&'static Mode> {
    MODES.iter().find(|m| m.name == name)
}

pub fn mode_names() -> Vec<&'static str> {
    MODES.iter().map(|m| m.name).collect()
}

fn table() -> Vec<(&'static str, AddFlags)> {
    MODES.iter().map(|m| (m.name, m.flags)).collect()
}

/// `cmd` with every mode's flags (`ab`: the [`GENERATE_ONLY`] ones hidden).
pub fn add_mode_flags(cmd: Command, for_ab: bool) -> Command {
    add_flags(cmd, &table(), if for_ab { GENERATE_ONLY } else { &[] })
}

/// A one-line error for the first flag given that none of `modes` reads (`context`: what
/// was chosen, e.g. `this is --mode ar`).
pub fn check_mode_flags(m: &ArgMatches, modes: &[&str], context: &str) -> Result<()> {
    let table: &FlagTable = &table();
    match unread_flag(m, table, modes, |r| format!("--mode {r}"), context) {
        Some(e) => Err(PipelineError::Invalid(e)),
        None => Ok(()),
    }
}

/// Mode `name`'s settings from parsed flags, checked.
pub fn mode_settings(name: &str, m: &ArgMatches) -> Result<Box<dyn ModeSettings>> {
    let mode = find_mode(name).ok_or_else(|| PipelineError::Invalid(format!("no mode `{name}`")))?;
    (mode.settings)(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_list_of_distinct_modes() {
        let names = mode_names();
        let mut sorted = names.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), names.len(), "{names:?}");
        assert!(names.contains(&"ar") && names.contains(&"hybrid") && names.contains(&"diffusion"));
        assert!(names.iter().all(|n| find_mode(n).is_some_and(|m| m.name == *n)));
        assert!(find_mode("oracle").is_none(), "oracle is an A/B arm of the hybrid mode, not a mode");
    }

    #[test]
    fn every_mode_reads_its_settings_from_the_shared_command() {
        let cmd = add_mode_flags(Command::new("generate"), false);
        let m = cmd.clone().try_get_matches_from(["generate", "--steps", "7", "--block-length", "4"]).unwrap();
        for name in mode_names() {
            mode_settings(name, &m).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        let e = check_mode_flags(&m, &["hybrid"], "this is --mode hybrid").unwrap_err().to_string();
        assert_eq!(e, "--block-length is read by --mode masked only; this is --mode hybrid");
        assert!(check_mode_flags(&m, &["masked"], "").is_ok());
        let m = cmd.try_get_matches_from(["generate", "--eta", "2"]).unwrap();
        let e = mode_settings("hybrid", &m).unwrap_err().to_string();
        assert!(e.contains("eta"), "{e}");
    }
}
