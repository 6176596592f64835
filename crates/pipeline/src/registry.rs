//! The one list of generation modes, [`MODES`], and what `generate`, `edit` and `ab` ask of
//! it: a mode by name, every mode's flags on a command, which mode reads a flag, the modes
//! that edit, and the A/B arms (each mode's name and its [`ArmVariant`]s).

use crate::flags::{add_flags, unread_flag, AddFlags, FlagTable};
use crate::mode::{ArmVariant, EditOp, Mode, ModeSettings};
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

/// The modes that edit, with their edit operations.
pub fn edit_modes() -> impl Iterator<Item = (&'static str, &'static EditOp)> {
    MODES.iter().filter_map(|m| m.edit.as_ref().map(|e| (m.name, e)))
}

fn edit_table() -> Vec<(&'static str, AddFlags)> {
    edit_modes().map(|(name, e)| (name, e.flags)).collect()
}

/// `edit` with every editing mode's flags.
pub fn add_edit_flags(cmd: Command) -> Command {
    add_flags(cmd, &edit_table(), &[])
}

/// The edit operation of mode `name`, after a one-line error for the first flag given that
/// it does not read.
pub fn edit_op(name: &str, m: &ArgMatches) -> Result<&'static EditOp> {
    let (_, op) = edit_modes().find(|(n, _)| *n == name).ok_or_else(|| {
        let names: Vec<&str> = edit_modes().map(|(n, _)| n).collect();
        PipelineError::Invalid(format!("edit --mode {name}: this mode does not edit; use {}", names.join(" or ")))
    })?;
    let context = format!("this is edit --mode {name}");
    match unread_flag(m, &edit_table(), &[name], |r| format!("--mode {r}"), &context) {
        Some(e) => Err(PipelineError::Invalid(e)),
        None => Ok(op),
    }
}

/// An A/B arm by name: a mode (its own name) or one of its [`ArmVariant`]s.
pub fn find_arm(name: &str) -> Option<(&'static Mode, Option<&'static ArmVariant>)> {
    MODES.iter().find_map(|m| match m.arms.iter().find(|v| v.name == name) {
        Some(v) => Some((m, Some(v))),
        None => (m.name == name).then_some((m, None)),
    })
}

/// Every A/B arm's name: the modes', then their variants'.
pub fn arm_names() -> Vec<&'static str> {
    let variants = MODES.iter().flat_map(|m| m.arms.iter().map(|v| v.name));
    mode_names().into_iter().chain(variants).collect()
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
        // Every arm name is distinct and found again; a variant names its mode.
        let arms = arm_names();
        let mut sorted = arms.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), arms.len(), "{arms:?}");
        for a in &arms {
            let (mode, variant) = find_arm(a).unwrap_or_else(|| panic!("arm {a}"));
            assert_eq!(variant.map_or(mode.name, |v| v.name), *a);
        }
        assert_eq!(find_arm("oracle").map(|(m, _)| m.name), Some("hybrid"));
        assert!(find_arm("nonsense").is_none());
        let editing: Vec<&str> = edit_modes().map(|(n, _)| n).collect();
        assert_eq!(editing, vec!["hybrid", "masked"]);
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
