use crate::args::GenerateArgs;
use crate::util::{parse_device, stdout_error};
use anyhow::{Context, Result};
use clap::ArgMatches;
use plandiff_pipeline::{find_mode, registry, Detail, Event, GenOptions, GenRequest, Generation, ModeSettings};
use serde_json::json;
use std::io::Write;
use std::process::ExitCode;
use std::time::Instant;

/// The most samples of one prompt (they are generated as one batch).
pub const MAX_SAMPLES: usize = 1024;

fn read_prompt(a: &GenerateArgs) -> Result<String> {
    match (&a.prompt, &a.prompt_file) {
        (Some(p), _) => Ok(p.clone()),
        (None, Some(f)) => {
            Ok(plandiff_data::read_text_capped(f, 1 << 20).with_context(|| format!("--prompt-file {}", f.display()))?)
        }
        (None, None) => anyhow::bail!("give a prompt with --prompt TEXT or --prompt-file FILE"),
    }
}

/// The flags every mode shares, checked; the mode's own are checked by its settings.
/// The most sentences one run writes (docs/reliability.md).
const MAX_SENTENCES: usize = 1024;

fn check_flags(a: &GenerateArgs) -> Result<()> {
    if a.num_samples == 0 || a.num_samples > MAX_SAMPLES {
        anyhow::bail!("--num-samples {} must be in 1..={MAX_SAMPLES} (the samples are one batch)", a.num_samples);
    }
    if let Some(n) = a.sentences.filter(|n| !(1..=MAX_SENTENCES).contains(n)) {
        anyhow::bail!("--sentences {n} must be in 1..={MAX_SENTENCES}");
    }
    Ok(())
}

/// The prompt, or none when the mode fills a template instead.
fn prompt_of(a: &GenerateArgs, settings: &dyn ModeSettings) -> Result<String> {
    if settings.template().is_some() {
        if a.prompt.is_some() || a.prompt_file.is_some() {
            anyhow::bail!("--template replaces the prompt; give --template or --prompt, not both");
        }
        return Ok(String::new());
    }
    if settings.prompt_optional() && a.prompt.is_none() && a.prompt_file.is_none() {
        return Ok(String::new()); // an outline alone
    }
    let prompt = read_prompt(a)?;
    if prompt.trim().is_empty() {
        anyhow::bail!("the prompt is empty; give some text with --prompt or --prompt-file");
    }
    Ok(prompt)
}

pub fn run(a: GenerateArgs, flags: &ArgMatches, started: Instant) -> Result<ExitCode> {
    registry::check_mode_flags(flags, &[&a.mode], &format!("this is --mode {}", a.mode))?;
    check_flags(&a)?;
    let settings = registry::mode_settings(&a.mode, flags)?;
    settings.check_without_outline()?;
    let prompt = prompt_of(&a, settings.as_ref())?;
    let sampling = a.sampling.config()?;
    let device = parse_device(&a.device)?;
    let mode = find_mode(&a.mode).ok_or_else(|| anyhow::anyhow!("--mode {}: no such mode", a.mode))?;
    let gen = (mode.load)(&a.checkpoint, device).with_context(|| format!("--checkpoint {}", a.checkpoint.display()))?;
    let load_ms = started.elapsed().as_secs_f64() * 1e3;
    let stream = a.stream && !a.json && a.num_samples == 1;
    let opts = GenOptions {
        max_tokens: a.max_tokens,
        sentences: a.sentences,
        sampling,
        seed: a.seed,
        no_eos: a.no_eos,
        stream,
    };
    let req = GenRequest::new(&prompt, a.num_samples, opts).with(settings.as_ref());
    let mode_json = gen.settings(&req)?;
    let mut printer = StreamPrinter::new(stream, &prompt);
    let mut step_lines = Vec::new();
    let gen_start_ms = started.elapsed().as_secs_f64() * 1e3;
    let gens = gen.generate(&req, &mut |e| match e {
        Event::Text { text, .. } => printer.update(text),
        Event::Step { step, texts } => {
            for (i, t) in texts.iter().enumerate() {
                step_lines.push(json!({"step": step, "sample": i, "text": t}));
                if !a.json {
                    let tag = if texts.len() > 1 { format!(" sample {}", i + 1) } else { String::new() };
                    printer.line(&format!("[step {step:>4}{tag}] {t}"));
                }
            }
        }
    })?;
    let streamed = printer.finish()?;
    let mut stdout = std::io::stdout().lock();
    // The first token's time from process start: the generator measures it from its own start.
    let first_token_ms = gens.first().and_then(|g| g.first_token_ms).map(|ms| gen_start_ms + ms);
    if a.json {
        let mut out = json!({
            "mode": mode.name,
            "checkpoint": a.checkpoint.display().to_string(),
            "prompt": settings.template().is_none().then_some(&prompt),
            "seed": a.seed,
            "sampling": sampling,
            "load_ms": load_ms,
            "first_token_ms_from_start": first_token_ms,
        });
        if let Some(o) = out.as_object_mut() {
            o.extend(mode_json);
            if !step_lines.is_empty() {
                o.insert("show_steps".into(), json!(step_lines));
            }
            o.insert("samples".into(), serde_json::to_value(&gens)?);
        }
        writeln!(stdout, "{}", serde_json::to_string_pretty(&out)?).map_err(stdout_error)?;
    } else {
        print_samples(&mut stdout, &gens, !streamed)?;
        stdout.flush().map_err(stdout_error)?;
    }
    if let Some(g) = gens.first() {
        tracing::info!("{}", log_line(g, first_token_ms));
    }
    Ok(ExitCode::SUCCESS)
}

/// The timing line of a sample: tokens, seconds, throughput, planning, first token, stop.
fn log_line(g: &Generation, first_token_ms: Option<f64>) -> String {
    let mut s = format!("{} new tokens in {:.2} s ({:.1} tokens/s per sample", g.new_tokens, g.seconds, g.tokens_per_s);
    if let Some(Detail::Plan { planning_seconds, planner_calls, encoding_seconds, .. }) = &g.detail {
        s.push_str(&format!(
            "; planning {planning_seconds:.3} s in {planner_calls} planner calls, re-encoding {encoding_seconds:.3} s"
        ));
    }
    s.push(')');
    if let Some(ms) = first_token_ms {
        s.push_str(&format!(", first token {ms:.0} ms after start"));
    }
    if let Some(stop) = g.stop {
        s.push_str(&format!(", stop: {stop:?}"));
    }
    s
}

/// Each sample's text (under a `--- sample i ---` header when there are several) unless it
/// was streamed, and its plan when it has previews (`--show-plan`).
fn print_samples(out: &mut impl Write, gens: &[Generation], texts: bool) -> Result<()> {
    for (i, g) in gens.iter().enumerate() {
        if texts {
            if gens.len() > 1 {
                writeln!(out, "--- sample {} ---", i + 1).map_err(stdout_error)?;
            }
            writeln!(out, "{}", g.text).map_err(stdout_error)?;
        }
        if let Some(Detail::Plan { plan, .. }) = g.detail.as_ref().filter(|_| has_previews(g)) {
            writeln!(out, "\nplan: each planned sentence as the decoder writes its latent alone, then [cosine to what was written]").map_err(stdout_error)?;
            for s in plan {
                let cos = s.adherence.map_or("   -  ".to_string(), |c| format!("{c:+.3}"));
                writeln!(out, "  {:>3}. [{cos}] {}", s.sentence, s.preview.as_deref().unwrap_or(""))
                    .map_err(stdout_error)?;
                if let Some(line) = &s.outline {
                    writeln!(out, "       outline: {line}").map_err(stdout_error)?;
                }
            }
        }
    }
    Ok(())
}

fn has_previews(g: &Generation) -> bool {
    matches!(&g.detail, Some(Detail::Plan { plan, .. }) if plan.iter().any(|s| s.preview.is_some()))
}

/// Prints a growing text as it streams: the prompt at the first streamed token, then each
/// new part once it is whole characters (a multi-byte character may span tokens).
struct StreamPrinter<'a> {
    out: std::io::StdoutLock<'static>,
    prompt: &'a str,
    printed: usize,
    started: bool,
    on: bool,
}

impl<'a> StreamPrinter<'a> {
    fn new(on: bool, prompt: &'a str) -> Self {
        Self { out: std::io::stdout().lock(), prompt, printed: 0, started: false, on }
    }

    fn update(&mut self, text: &str) {
        if !self.on {
            return;
        }
        if !self.started {
            let head = self.prompt.trim_end();
            Self::or_exit(write!(self.out, "{head}"));
            self.printed = head.len();
            self.started = true;
        }
        if text.len() > self.printed && !text.ends_with('\u{FFFD}') && text.is_char_boundary(self.printed) {
            let r = write!(self.out, "{}", &text[self.printed..]).and_then(|()| self.out.flush());
            self.printed = text.len();
            Self::or_exit(r);
        }
    }

    /// A whole line (e.g. a denoising step's text).
    fn line(&mut self, s: &str) {
        Self::or_exit(writeln!(self.out, "{s}"));
    }

    /// Generation stops when no one reads it any more: one line and a failure exit.
    fn or_exit(r: std::io::Result<()>) {
        if let Err(e) = r {
            eprintln!("error: {}", crate::util::stdout_error(e));
            std::process::exit(1);
        }
    }

    /// Ends the streamed line; whether anything was streamed.
    fn finish(mut self) -> Result<bool> {
        if self.started {
            writeln!(self.out)?;
        }
        Ok(self.started)
    }
}
