//! `plandiff edit`: the chosen mode's edit operation, found in the modes' list
//! (`plandiff_pipeline::registry::edit_op`); this command reads the text and prints the result.

use crate::args::EditArgs;
use crate::util::parse_device;
use anyhow::{Context, Result};
use clap::ArgMatches;
use plandiff_pipeline::mode::EditRequest;
use plandiff_pipeline::{registry, GenOptions};
use std::process::ExitCode;

pub fn run(a: EditArgs, flags: &ArgMatches) -> Result<ExitCode> {
    let op = registry::edit_op(&a.mode, flags)?;
    let text =
        plandiff_data::read_text_capped(&a.input, 1 << 20).with_context(|| format!("--input {}", a.input.display()))?;
    if text.trim().is_empty() {
        anyhow::bail!("--input {} is empty; give a text to edit", a.input.display());
    }
    let sampling = a.sampling.config()?;
    let gen =
        GenOptions { max_tokens: a.max_tokens, sentences: None, sampling, seed: a.seed, no_eos: false, stream: false };
    let req = EditRequest {
        bundle: &a.checkpoint,
        text: &text,
        rewrite: a.rewrite.as_deref(),
        gen,
        device: parse_device(&a.device)?,
    };
    let edit = (op.run)(&req, flags)?;
    if a.json {
        crate::outln!("{}", serde_json::to_string_pretty(&edit.report)?);
    } else {
        crate::out!("{}", edit.text);
        if !edit.text.ends_with('\n') {
            crate::outln!();
        }
        for c in &edit.changes {
            tracing::info!("{c}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
