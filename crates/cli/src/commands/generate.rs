use crate::args::{GenerateArgs, Mode};
use crate::util::{parse_device, plan_sampling};
use anyhow::{Context, Result};
use plandiff_decoder::SamplingConfig;
use plandiff_pipeline::{ArGenerator, GenOptions, HybridGenerator, HybridOptions};
use serde_json::json;
use std::io::Write;
use std::process::ExitCode;
use std::time::Instant;

fn read_prompt(a: &GenerateArgs) -> Result<String> {
    match (&a.prompt, &a.prompt_file) {
        (Some(p), _) => Ok(p.clone()),
        (None, Some(f)) => {
            let bytes = std::fs::read(f).with_context(|| format!("--prompt-file {}", f.display()))?;
            String::from_utf8(bytes)
                .map_err(|_| anyhow::anyhow!("--prompt-file {}: not valid UTF-8; convert it to UTF-8", f.display()))
        }
        (None, None) => anyhow::bail!("give a prompt with --prompt TEXT or --prompt-file FILE"),
    }
}

pub fn run(a: GenerateArgs, started: Instant) -> Result<ExitCode> {
    if a.mode == Mode::Diffusion {
        return diffusion(&a);
    }
    if a.template.is_some() || a.show_steps.is_some() || a.no_clamp {
        anyhow::bail!("--template, --show-steps and --no-clamp need --mode diffusion");
    }
    let prompt = read_prompt(&a)?;
    if prompt.trim().is_empty() {
        anyhow::bail!("the prompt is empty; give some text with --prompt or --prompt-file");
    }
    let sampling = a.sampling.config()?;
    if a.num_samples == 0 {
        anyhow::bail!("--num-samples must be >= 1");
    }
    let device = parse_device(&a.device)?;
    if a.mode == Mode::Hybrid {
        return hybrid(&a, &prompt, sampling, device, started);
    }
    if a.show_plan {
        anyhow::bail!("--show-plan needs --mode hybrid (mode ar has no plan)");
    }
    let gen =
        ArGenerator::load(&a.checkpoint, device).with_context(|| format!("--checkpoint {}", a.checkpoint.display()))?;
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
    let mut printer = StreamPrinter::start(stream, &prompt)?;
    let gen_start_ms = started.elapsed().as_secs_f64() * 1e3;
    let gens = gen.generate(&prompt, a.num_samples, &opts, |_, text| printer.update(text))?;
    let mut stdout = printer.finish()?;
    // The first token's time from process start: the generator measures it from its own start.
    let first_token_ms = gens.first().map(|g| gen_start_ms + g.first_token_ms);
    if a.json {
        let out = json!({
            "mode": "ar",
            "checkpoint": a.checkpoint.display().to_string(),
            "prompt": prompt,
            "seed": a.seed,
            "sampling": sampling,
            "load_ms": load_ms,
            "first_token_ms_from_start": first_token_ms,
            "samples": gens,
        });
        writeln!(stdout, "{}", serde_json::to_string_pretty(&out)?)?;
    } else if !stream {
        print_samples(&mut stdout, gens.iter().map(|g| g.text.as_str()))?;
    }
    if let Some(g) = gens.first() {
        tracing::info!(
            "{} new tokens in {:.2} s ({:.1} tokens/s per sample), first token {:.0} ms after start, stop: {:?}",
            g.new_tokens,
            g.seconds,
            g.tokens_per_s,
            first_token_ms.unwrap_or(0.0),
            g.stop
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn hybrid(
    a: &GenerateArgs,
    prompt: &str,
    sampling: SamplingConfig,
    device: tch::Device,
    started: Instant,
) -> Result<ExitCode> {
    let gen = HybridGenerator::load(&a.checkpoint, device)
        .with_context(|| format!("--checkpoint {}", a.checkpoint.display()))?;
    let load_ms = started.elapsed().as_secs_f64() * 1e3;
    let plan = plan_sampling(&a.plan, gen.planner().model.sampling)?;
    let opts = HybridOptions {
        gen: GenOptions {
            max_tokens: a.max_tokens,
            sentences: a.sentences,
            sampling,
            seed: a.seed,
            no_eos: a.no_eos,
            stream: a.stream && !a.json && a.num_samples == 1,
        },
        plan,
        previews: a.show_plan,
        oracle: None,
    };
    let stream = a.stream && !a.json && a.num_samples == 1;
    let mut printer = StreamPrinter::start(stream, prompt)?;
    let gens = gen.generate(prompt, a.num_samples, &opts, |_, text| printer.update(text))?;
    let mut stdout = printer.finish()?;
    if a.json {
        let out = json!({
            "mode": "hybrid",
            "checkpoint": a.checkpoint.display().to_string(),
            "prompt": prompt,
            "seed": a.seed,
            "sampling": sampling,
            "plan_sampling": {"steps": plan.steps, "sampler": format!("{:?}", plan.sampler), "guidance": plan.guidance},
            "load_ms": load_ms,
            "samples": gens,
        });
        writeln!(stdout, "{}", serde_json::to_string_pretty(&out)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    for (i, g) in gens.iter().enumerate() {
        if !stream {
            if gens.len() > 1 {
                writeln!(stdout, "--- sample {} ---", i + 1)?;
            }
            writeln!(stdout, "{}", g.generation.text)?;
        }
        if a.show_plan {
            writeln!(stdout, "\nplan: each planned sentence as the decoder writes its latent alone, then [cosine to what was written]")?;
            for s in &g.plan {
                let cos = s.adherence.map_or("   -  ".to_string(), |c| format!("{c:+.3}"));
                writeln!(stdout, "  {:>3}. [{cos}] {}", s.sentence, s.preview.as_deref().unwrap_or(""))?;
            }
        }
    }
    if let Some(g) = gens.first() {
        tracing::info!(
            "{} new tokens in {:.2} s ({:.1} tokens/s per sample; planning {:.3} s in {} planner calls), stop: {:?}",
            g.generation.new_tokens,
            g.generation.seconds,
            g.generation.tokens_per_s,
            g.planning_seconds,
            g.planner_calls,
            g.generation.stop
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn diffusion(a: &GenerateArgs) -> Result<ExitCode> {
    if a.show_plan {
        anyhow::bail!("--show-plan needs --mode hybrid (mode diffusion has no plan; see --show-steps)");
    }
    if a.num_samples == 0 {
        anyhow::bail!("--num-samples must be >= 1");
    }
    if a.show_steps == Some(0) {
        anyhow::bail!("--show-steps must be >= 1");
    }
    let device = parse_device(&a.device)?;
    let gen = plandiff_pipeline::DiffusionGenerator::load(&a.checkpoint, device)
        .with_context(|| format!("--checkpoint {}", a.checkpoint.display()))?;
    let d = gen.defaults();
    let base = plandiff_planner::SamplingDefaults { steps: d.steps, sampler: d.sampler, eta: d.eta, guidance: 1.0 };
    if a.plan.guidance.is_some() {
        anyhow::bail!("--guidance applies to --mode hybrid only");
    }
    let plan = plan_sampling(&a.plan, base)?;
    let sampling = gen.text_sampling(plan, d.clamp && !a.no_clamp);
    let positions = match &a.template {
        Some(t) => gen.template_positions(t)?,
        None => {
            let prompt = read_prompt(a)?;
            gen.prompt_positions(&prompt, Some(a.max_tokens))?
        }
    };
    let opts = plandiff_pipeline::DiffusionOptions { sampling, seed: a.seed };
    let every = a.show_steps.unwrap_or(0);
    let mut stdout = std::io::stdout().lock();
    let mut step_lines = Vec::new();
    let samples = gen.generate(&positions, a.num_samples, &opts, every, |step, texts| {
        for (i, t) in texts.iter().enumerate() {
            let tag = if texts.len() > 1 { format!(" sample {}", i + 1) } else { String::new() };
            step_lines.push(json!({"step": step, "sample": i, "text": t}));
            if !a.json {
                let _ = writeln!(stdout, "[step {step:>4}{tag}] {t}");
            }
        }
    })?;
    if a.json {
        let out = json!({
            "mode": "diffusion",
            "checkpoint": a.checkpoint.display().to_string(),
            "template": a.template,
            "prompt": a.prompt,
            "seed": a.seed,
            "steps": plan.steps,
            "clamp": sampling.clamp,
            "show_steps": step_lines,
            "samples": samples,
        });
        writeln!(stdout, "{}", serde_json::to_string_pretty(&out)?)?;
    } else {
        print_samples(&mut stdout, samples.iter().map(|s| s.text.as_str()))?;
    }
    if let Some(s) = samples.first() {
        tracing::info!("{} new tokens in {:.2} s ({:.1} tokens/s per sample)", s.new_tokens, s.seconds, s.tokens_per_s);
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints a growing text as it streams: the prompt first, then each new part once it is
/// whole characters (a multi-byte character may span tokens).
struct StreamPrinter<'a> {
    out: std::io::StdoutLock<'a>,
    printed: usize,
    on: bool,
}

impl StreamPrinter<'_> {
    fn start(on: bool, prompt: &str) -> Result<Self> {
        let mut out = std::io::stdout().lock();
        let mut printed = 0;
        if on {
            let head = prompt.trim_end();
            write!(out, "{head}")?;
            out.flush()?;
            printed = head.len();
        }
        Ok(Self { out, printed, on })
    }

    fn update(&mut self, text: &str) {
        if self.on && text.len() > self.printed && !text.ends_with('\u{FFFD}') && text.is_char_boundary(self.printed) {
            let _ = write!(self.out, "{}", &text[self.printed..]);
            let _ = self.out.flush();
            self.printed = text.len();
        }
    }

    /// Ends the streamed line; returns stdout for what follows.
    fn finish(mut self) -> Result<std::io::StdoutLock<'static>> {
        if self.on {
            writeln!(self.out)?;
        }
        Ok(std::io::stdout().lock())
    }
}

/// One sample's text, or each under a `--- sample i ---` header.
fn print_samples<'a>(out: &mut impl Write, texts: impl ExactSizeIterator<Item = &'a str>) -> Result<()> {
    let n = texts.len();
    for (i, t) in texts.enumerate() {
        if n > 1 {
            writeln!(out, "--- sample {} ---", i + 1)?;
        }
        writeln!(out, "{t}")?;
    }
    Ok(())
}
