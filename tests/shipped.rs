//! The bundle that ships in `checkpoints/tiny` and the demo that uses it: complete, under
//! 25 MB, with its provenance, loading (fp16 storage, f32 compute) and writing a seeded
//! 12-sentence story in hybrid mode; `scripts/demo.sh` (what `make demo` runs) end to end.

mod common;
use common::*;
use serde_json::Value;
use std::path::PathBuf;

fn shipped() -> PathBuf {
    root().join("checkpoints/tiny")
}

#[test]
fn the_shipped_bundle_is_complete_small_and_documented() {
    let dir = shipped();
    let total: u64 = walk(&dir).iter().map(|p| std::fs::metadata(p).unwrap().len()).sum();
    assert!(
        total < 25_000_000,
        "checkpoints/tiny is {total} bytes; the limit is 25 MB (20 MB before the masked model)"
    );
    let info: Value = serde_json::from_str(&run_ok(&["info", "--checkpoint", s(&dir), "--json"])).unwrap();
    for stage in ["ar", "autoencoder", "planner", "diffusion", "masked"] {
        let st = &info["stages"][stage];
        assert_eq!(st["tokenizer_matches"], true, "{stage}");
        assert_eq!(st["resumable"], false, "{stage}: no optimizer state is shipped");
        let p = &st["config"]["provenance"];
        // The decoder is a 1,200-step distillation (issue 39) of a 600-step fine-tune of a
        // 2,500-step one.
        let least = if stage == "autoencoder" { 500 } else { 1000 };
        assert!(p["steps"].as_u64().unwrap() >= least, "{stage}: {p}");
        assert!(p["train"]["seed"].is_u64() && p["wall_seconds"].as_f64().unwrap() > 0.0, "{stage}: {p}");
        // Stories (issue 13): stories_lowercase.jsonl less its last 300 stories, the A/B's prompts.
        assert!(p["corpus"][0].as_str().unwrap().ends_with("train-stories.jsonl"), "{stage}: {p}");
        assert_eq!(p["export"]["dtype"], "f16", "{stage}: {p}");
    }
    let plan = &info["stages"]["autoencoder"]["config"]["provenance"]["plan"];
    assert_eq!(plan["latent_noise"], "variance_preserving", "the re-noised decoder ships (issue 39): {plan}");
    assert!(plan["init_from"].is_string(), "it is a fine-tune of the bundle before it: {plan}");
    // Issue 39: the decoder learned the shipped levers (plan guidance 0.75, the ar prior at
    // 0.5) from the bundle before it, so the bundle writes with none.
    assert_eq!(
        (plan["distill"]["plan_guidance"].as_f64(), plan["distill"]["ar_prior"].as_f64()),
        (Some(0.75), Some(0.5))
    );
    let hybrid = &info["stages"]["planner"]["config"]["model"]["hybrid"];
    assert_eq!((hybrid["plan_guidance"].as_f64(), hybrid["ar_prior"].as_f64()), (Some(1.0), Some(0.0)), "{hybrid}");
    // Issue 39, round 5: the planner's plans moved toward real sentences' norm, and spread.
    assert_eq!(
        (hybrid["plan_norm"].as_f64(), hybrid["plan_epsilon_scaling"].as_f64()),
        (Some(0.3), Some(0.95)),
        "{hybrid}"
    );
    // Issue 39, round 7: hybrid's n-gram penalty on, one free repeat of a bigram.
    assert_eq!(hybrid["ngram"], serde_json::json!({"size": 2, "penalty": 1.5, "allow": 1}), "{hybrid}");
    assert!(info["stages"]["autoencoder"]["config"]["plan_space"]["encoder"]["name"].is_string());
}

#[test]
fn the_shipped_bundle_writes_a_seeded_twelve_sentence_story() {
    let dir = shipped();
    let gen = |seed: &str| -> Value {
        serde_json::from_str(&run_ok(&[
            "generate",
            "--checkpoint",
            s(&dir),
            "--mode",
            "hybrid",
            "--prompt",
            "once upon a time, there was a little fox named leo.",
            "--sentences",
            "12",
            "--seed",
            seed,
            "--json",
            "--device",
            "cpu",
        ]))
        .unwrap()
    };
    let (a, b) = (gen("1"), gen("1"));
    let sa = &a["samples"][0];
    assert_eq!(sa["text"], b["samples"][0]["text"], "one seed, one story");
    assert_eq!(sa["sentences"].as_array().unwrap().len(), 12, "{sa}");
    assert_eq!(sa["plan"].as_array().unwrap().len(), 12, "{sa}");
    // Trained weights write words, not noise: most of them are common TinyStories words.
    let text = sa["continuation"].as_str().unwrap();
    let common_words = ["the", "a", "and", "was", "to", "she", "he", "they", "her", "his", "said"];
    let words: Vec<&str> = text.split_whitespace().collect();
    let hits = words.iter().filter(|w| common_words.contains(&w.trim_matches(|c: char| !c.is_alphabetic()))).count();
    assert!(words.len() > 60 && hits * 5 > words.len(), "{hits} common words of {}: {text}", words.len());
}

#[test]
fn the_demo_runs_on_the_shipped_bundle_without_training() {
    let out = std::process::Command::new("bash")
        .arg(root().join("scripts/demo.sh"))
        .env("PLANDIFF_BIN", bin())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("--mode hybrid --sentences 12 --show-plan") && stdout.contains("--mode ar"), "{stdout}");
    // The plan: one numbered line per planned sentence (the prompt holds sentences 1 and 2).
    let plan_lines = stdout
        .lines()
        .filter(|l| l.trim_start().split('.').next().is_some_and(|n| n.parse::<u32>().is_ok()) && l.contains("] "))
        .count();
    assert_eq!(plan_lines, 12, "{stdout}");
    assert!(stdout.contains("wall time, model load included: hybrid"), "{stdout}");
    assert!(stderr.contains("planning") && stderr.contains("tokens/s"), "timings are logged: {stderr}");
    assert!(!stderr.contains("training stage"), "the demo trains nothing: {stderr}");
    // A story to a 4-line outline: each line beside the sentence written at its slot.
    let outline: Vec<&str> =
        stdout.lines().filter_map(|l| l.trim_start().split_once("outline: ")).map(|(_, o)| o).collect();
    assert_eq!(outline.len(), 4, "{stdout}");
    assert_eq!(outline[0], "leo finds a shiny red ball near the river.");
    assert!(outline[1].starts_with("_ "), "the planner's slot: {stdout}");
    let wrote = stdout.lines().filter(|l| l.trim_start().starts_with("wrote:") && l.trim().len() > 8).count();
    assert_eq!(wrote, 4, "{stdout}");
    // Masked diffusion writes with its steps shown (masks as `_` early on), then revises.
    assert!(stdout.contains("--mode masked") && stdout.contains("[step    8] "), "{stdout}");
    let first_step = stdout.lines().find(|l| l.starts_with("[step    8] ")).unwrap_or_default();
    assert!(first_step.contains(" _"), "{first_step}");
    assert!(stdout.contains("edit --mode masked --revise-fraction"), "{stdout}");
    // The revise step fixes a deliberate error ("played with the fish all sky") and changes
    // nothing else, byte for byte.
    let line = |p: &str| stdout.lines().find_map(|l| l.strip_prefix(p)).unwrap_or_default().to_string();
    let (input, revised) = (line("input:   "), line("revised: "));
    assert!(input.ends_with("all sky."), "{stdout}");
    assert_eq!(revised, input.replace("all sky.", "all day."), "{stdout}");
    assert!(stderr.contains("\" sky\" -> \" day\""), "the revision logs what it changed: {stderr}");
}

#[test]
fn the_shipped_masked_model_writes_and_keeps_its_prompt() {
    let v: Value = serde_json::from_str(&run_ok(&[
        "generate",
        "--checkpoint",
        s(&shipped()),
        "--mode",
        "masked",
        "--prompt",
        "once upon a time, there was a little girl named lily.",
        "--max-tokens",
        "40",
        "--no-eos",
        "--seed",
        "2",
        "--json",
    ]))
    .unwrap();
    let text = v["samples"][0]["text"].as_str().unwrap();
    assert!(text.starts_with("once upon a time, there was a little girl named lily."), "{text}");
    let cont = v["samples"][0]["continuation"].as_str().unwrap();
    let common_words = ["the", "a", "and", "was", "to", "she", "he", "they", "her", "his", "said", "lily"];
    let words: Vec<&str> = cont.split_whitespace().collect();
    let hits = words.iter().filter(|w| common_words.contains(&w.trim_matches(|c: char| !c.is_alphabetic()))).count();
    assert!(words.len() > 15 && hits * 5 > words.len(), "{hits} common words of {}: {cont}", words.len());
}

fn walk(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// The demo story (`make demo`'s seeded 12-sentence hybrid story, as the shipped bundle writes
/// it now and as README quotes it) keeps the prompt's fox named leo in it and has no invented
/// word: every word of it is a word of the training stories (the bundle's `words.txt`, the list
/// the `invented_words` metric reads). Issue 39's target: met since the bundle's planner moves
/// its plans toward real sentences' norm (`plan_norm` 0.3, `plan_epsilon_scaling` 0.95); with
/// the planner's levers off the seed-1 story never names leo.
#[test]
fn the_readme_demo_story_keeps_leo_and_invents_no_word() {
    let prompt = "once upon a time, there was a little fox named leo. he lived near a big forest.";
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let quoted = readme
        .lines()
        .skip_while(|l| !l.contains("--mode hybrid --sentences 12"))
        .find(|l| l.starts_with(prompt))
        .expect("README quotes the demo's hybrid story after its command");
    // The demo's own command (scripts/demo.sh), on the shipped bundle.
    let out: Value = serde_json::from_str(&run_ok(&[
        "generate",
        "--checkpoint",
        s(&shipped()),
        "--mode",
        "hybrid",
        "--prompt",
        prompt,
        "--sentences",
        "12",
        "--seed",
        "1",
        "--json",
    ]))
    .unwrap();
    let written = out["samples"][0]["text"].as_str().unwrap().to_string();
    let words: std::collections::HashSet<String> =
        std::fs::read_to_string(shipped().join("words.txt")).unwrap().lines().map(|l| l.trim().to_string()).collect();
    let lexicon = plandiff_pipeline::lexicon::Lexicon::from_words(words);
    for (which, story) in [("README's", quoted), ("the shipped bundle's", written.as_str())] {
        let new = story.strip_prefix(prompt).unwrap_or(story);
        let invented = lexicon.invented(new);
        assert!(invented.is_empty(), "invented words {invented:?} in {which} demo story: {new}");
        let leo = plandiff_pipeline::lexicon::words_of(new)
            .iter()
            .filter(|w| w.as_str() == "leo" || w.as_str() == "leo's")
            .count();
        assert!(leo >= 3, "leo named {leo} times in {which} demo story: {new}");
    }
}

/// Issue 39, round 6: `--ngram-penalty` cuts the repeats of hybrid's text; stored as the
/// bundle's hybrid default (`scripts/set_hybrid_defaults.py B ngram.size=2 ngram.penalty=...`)
/// it writes what the flag writes, and the ar mode does not take hybrid's default.
#[test]
fn the_ngram_penalty_cuts_repeats_as_a_flag_and_as_a_bundle_default() {
    let prompt = "once upon a time, there was a little girl named lily. she loved her garden.";
    let gen = |ck: &std::path::Path, mode: &str, extra: &[&str]| -> Vec<String> {
        let mut args = vec!["generate", "--checkpoint", s(ck), "--mode", mode, "--prompt", prompt];
        args.extend(["--sentences", "10", "--num-samples", "4", "--seed", "0", "--json"]);
        args.extend(extra);
        let v: Value = serde_json::from_str(&run_ok(&args)).unwrap();
        v["samples"].as_array().unwrap().iter().map(|x| x["continuation"].as_str().unwrap().to_string()).collect()
    };
    // Share of a text's word bigrams that repeat an earlier one (the A/B's rep-2), over the samples.
    let rep2 = |texts: &[String]| {
        let (mut repeats, mut total) = (0usize, 0usize);
        for t in texts {
            let w: Vec<&str> = t.split_whitespace().collect();
            let mut seen = std::collections::HashSet::new();
            for g in w.windows(2) {
                total += 1;
                repeats += usize::from(!seen.insert(g));
            }
        }
        repeats as f64 / total.max(1) as f64
    };
    let plain = gen(&shipped(), "hybrid", &[]);
    let penalized = gen(&shipped(), "hybrid", &["--ngram-penalty", "inf"]);
    assert!(
        rep2(&penalized) < 0.6 * rep2(&plain),
        "rep-2 {} with the penalty, {} without",
        rep2(&penalized),
        rep2(&plain)
    );
    let dir = tempfile::tempdir().unwrap();
    let b = dir.path().join("bundle");
    copy_dir(&shipped(), &b);
    let cfg = b.join("planner/config.json");
    let mut v: Value = serde_json::from_str(&std::fs::read_to_string(&cfg).unwrap()).unwrap();
    v["model"]["hybrid"]["ngram"] = serde_json::json!({"size": 2, "penalty": f64::MAX});
    std::fs::write(&cfg, v.to_string()).unwrap();
    let max = f64::MAX.to_string();
    assert_eq!(
        gen(&b, "hybrid", &[]),
        gen(&shipped(), "hybrid", &["--ngram-penalty", &max]),
        "the default is the flag"
    );
    assert_eq!(gen(&b, "ar", &[]), gen(&shipped(), "ar", &[]), "ar samples as before");
}
