//! The `plandiff` binary: arguments (`args`), one module per command (`commands`), and the
//! binary's own helpers (`util`: devices, logging, one-line errors that name flags). It sits
//! on top of every crate: `cli > eval > pipeline > bundle` and `cli > train > bundle`.
//! Libraries name files and fields; this crate adds the flag names.

mod args;
mod commands;
mod flags;
mod util;

use args::{Cli, Command};
use clap::{CommandFactory as _, FromArgMatches as _};
use std::process::ExitCode;

/// The command line: the derived commands, with each generation mode's own flags added to
/// `generate` and `ab` from the modes' list, and each edit mode's to `edit`.
fn command() -> clap::Command {
    Cli::command()
        .mut_subcommand("generate", |c| plandiff_pipeline::registry::add_mode_flags(c, false))
        .mut_subcommand("ab", |c| plandiff_pipeline::registry::add_mode_flags(c, true))
        .mut_subcommand("edit", plandiff_pipeline::registry::add_edit_flags)
}

/// The parsed flags of the subcommand (every mode's flags among them).
fn sub(m: &clap::ArgMatches) -> &clap::ArgMatches {
    m.subcommand().map_or(m, |(_, s)| s)
}

fn main() -> ExitCode {
    let started = std::time::Instant::now();
    // A panic is a bug, but the user still gets one line, not a backtrace.
    std::panic::set_hook(Box::new(|info| {
        if plandiff_data::expected_panic::is_quiet() {
            return; // a dependency's panic on bad input, caught and reported as an error
        }
        let msg = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("unknown");
        let msg = msg.lines().next().unwrap_or_default();
        let loc = info.location().map(|l| format!(" at {}:{}", l.file(), l.line())).unwrap_or_default();
        eprintln!("error: internal error: {msg}{loc}; please report it");
    }));
    let parsed = command().try_get_matches().and_then(|m| Ok((Cli::from_arg_matches(&m)?, m)));
    let (cli, matches) = match parsed {
        Ok(c) => c,
        Err(e) if !e.use_stderr() => {
            let _ = e.print(); // --help, --version
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            // clap's usage errors span several lines; keep the first and point at --help.
            let msg = e.render().to_string();
            let first = msg.lines().next().unwrap_or("error: bad arguments").trim_end();
            eprintln!("{first} (see --help)");
            return ExitCode::from(2);
        }
    };
    util::init_logging(&cli);
    if let Err(e) = util::set_threads(
        cli.threads,
        matches!(
            cli.command,
            Command::Train(_) | Command::Prepare(_) | Command::Ab(_) | Command::Eval(_) | Command::Embed(_)
        ),
    ) {
        eprintln!("error: {}", util::one_line(&e));
        return ExitCode::from(2);
    }
    let result = match cli.command {
        Command::Prepare(a) => commands::prepare::run(a),
        Command::Train(t) => commands::train::run(t),
        Command::Generate(a) => commands::generate::run(a, sub(&matches), started),
        Command::Edit(a) => commands::edit::run(a, sub(&matches)),
        Command::Ab(a) => commands::ab::run(a, sub(&matches)),
        Command::Eval(a) => commands::eval::run(*a),
        Command::Embed(a) => commands::embed::run(a),
        Command::Info(a) => commands::info::run(a),
        Command::Export(a) => commands::export::run(a),
        Command::Schedule(a) => commands::schedule::run(a),
    };
    // What is still buffered for stdout is written now, so a full disk is an error too.
    let result = result.and_then(|code| {
        use std::io::Write as _;
        std::io::stdout().flush().map_err(util::stdout_error).map(|()| code)
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", util::one_line(&e));
            ExitCode::FAILURE
        }
    }
}
