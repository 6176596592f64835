//! Stage `diffusion` and `generate --mode diffusion` end to end on a tiny model: rounding
//! inverts the trained embedding, infilling keeps known tokens, outputs have the template's
//! length, sampling is seeded, training loss falls and resumes exactly.

mod common;
use common::*;
use plandiff_data::TextTokenizer;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

fn train(out: &Path, extra: &[&str]) -> std::process::Output {
    let f = fixture();
    let cfg = test_config();
    let mut a =
        vec!["train", "diffusion", "--config", s(&cfg), "--data", s(&f.data), "--out", s(out), "--device", "cpu"];
    a.extend_from_slice(extra);
    run(&a)
}

fn bundle() -> &'static PathBuf {
    static B: OnceLock<PathBuf> = OnceLock::new();
    B.get_or_init(|| {
        let out = fixture().dir.join("diffusion-bundle");
        let o = train(&out, &[]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        out
    })
}

fn gen_json(args: &[&str]) -> Value {
    let b = bundle();
    let mut a = vec!["generate", "--checkpoint", s(b), "--mode", "diffusion", "--json", "--device", "cpu"];
    a.extend_from_slice(args);
    serde_json::from_str(&run_ok(&a)).unwrap()
}

#[test]
fn trained_rounding_is_exact_and_loss_falls() {
    let b = bundle();
    let f = fixture();
    let v: Value = serde_json::from_str(&run_ok(&[
        "eval",
        "--stage",
        "diffusion",
        "--checkpoint",
        s(b),
        "--data",
        s(&f.data),
        "--json",
        "--device",
        "cpu",
    ]))
    .unwrap();
    assert_eq!(v["result"]["rounding_accuracy"], 1.0, "{v}");
    assert!(v["result"]["loss"].as_f64().unwrap().is_finite());
    let log = std::fs::read_to_string(b.join("logs/diffusion-metrics.jsonl")).unwrap();
    let losses: Vec<f64> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v.get("grad_norm").is_some())
        .filter_map(|v| v["loss"].as_f64())
        .collect();
    let k = losses.len() / 4;
    let head: f64 = losses[..k].iter().sum::<f64>() / k as f64;
    let tail: f64 = losses[losses.len() - k..].iter().sum::<f64>() / k as f64;
    assert!(tail < 0.8 * head, "training loss did not fall: {head} -> {tail}");
    let info: Value = serde_json::from_str(&run_ok(&["info", "--checkpoint", s(b), "--json"])).unwrap();
    assert_eq!(info["stages"]["diffusion"]["config"]["model"]["schedule"]["beta_schedule"], "sqrt");
}

#[test]
fn infilling_keeps_known_tokens_and_the_template_length() {
    let b = bundle();
    let tk = TextTokenizer::from_file(&b.join("tokenizer.json")).unwrap();
    let template = "Once upon a time, Tom had a [MASK:3] and [MASK:6]";
    let a = gen_json(&["--template", template, "--seed", "1", "--num-samples", "2", "--show-steps", "5"]);
    let head: Vec<i64> = tk.encode(" Once upon a time, Tom had a").unwrap().into_iter().map(i64::from).collect();
    let and: Vec<i64> = tk.encode(" and").unwrap().into_iter().map(i64::from).collect();
    let len = 1 + head.len() + 3 + and.len() + 6;
    for smp in a["samples"].as_array().unwrap() {
        let toks: Vec<i64> = smp["tokens"].as_array().unwrap().iter().map(|t| t.as_i64().unwrap()).collect();
        let known: Vec<bool> = smp["known"].as_array().unwrap().iter().map(|k| k.as_bool().unwrap()).collect();
        assert_eq!(toks.len(), len, "the output has the template's length");
        assert_eq!(toks[0], tk.special().bos as i64);
        assert_eq!(&toks[1..1 + head.len()], head.as_slice(), "known prefix changed");
        let mid = 1 + head.len() + 3;
        assert_eq!(&toks[mid..mid + and.len()], and.as_slice(), "known middle changed");
        assert_eq!(known.iter().filter(|k| !**k).count(), 9);
        assert!(smp["text"].as_str().unwrap().starts_with("once upon a time, tom had a"), "{smp}");
    }
    // --show-steps 5 of the fixture's 20 steps: 4 snapshots per sample.
    assert_eq!(a["show_steps"].as_array().unwrap().len(), 8);
    // Seeded.
    let b2 = gen_json(&["--template", template, "--seed", "1", "--num-samples", "2", "--show-steps", "5"]);
    let toks =
        |v: &Value| -> Vec<Value> { v["samples"].as_array().unwrap().iter().map(|s| s["tokens"].clone()).collect() };
    assert_eq!(toks(&a), toks(&b2), "same seed, same tokens");
    assert_eq!(a["show_steps"], b2["show_steps"]);
    let c = gen_json(&["--template", template, "--seed", "2", "--num-samples", "2"]);
    assert_ne!(toks(&a), toks(&c), "another seed, another sample");
    // A plain prompt is a known prefix; the model fills up to its length.
    let p = gen_json(&["--prompt", "Tom had a ball.", "--seed", "3", "--steps", "8", "--sampler", "ddim"]);
    let smp = &p["samples"][0];
    assert!(smp["text"].as_str().unwrap().starts_with("tom had a ball."), "{smp}");
    assert_eq!(smp["tokens"].as_array().unwrap().len(), 48, "fills the model's 48 positions");
    // Without clamping it still runs and keeps the prefix.
    let n = gen_json(&["--prompt", "Tom had a ball.", "--no-clamp", "--steps", "5"]);
    assert!(n["samples"][0]["text"].as_str().unwrap().starts_with("tom had a ball."));
    assert_eq!(n["clamp"], false);
}

#[test]
fn diffusion_resume_is_exact() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    assert!(train(&a, &["--max-steps", "30"]).status.success());
    assert!(train(&b, &["--max-steps", "30", "--stop-at", "12"]).status.success());
    let f = fixture();
    let o = run(&[
        "train",
        "diffusion",
        "--data",
        s(&f.data),
        "--out",
        s(&b),
        "--resume",
        "--max-steps",
        "30",
        "--device",
        "cpu",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for name in ["diffusion/model.safetensors", "diffusion/optimizer.safetensors"] {
        assert!(std::fs::read(a.join(name)).unwrap() == std::fs::read(b.join(name)).unwrap(), "{name} differs");
    }
}

#[test]
fn diffusion_errors_are_one_line() {
    let b = bundle();
    let f = fixture();
    let long = format!("{} [MASK:4]", "word ".repeat(80));
    for (args, want) in [
        (vec!["--template", "no masks here"], "no mask"),
        (vec!["--template", "a [MASK:0] b"], "positive"),
        (vec!["--template", long.as_str()], "positions"),
        (vec!["--template", "a [MASK] b", "--show-steps", "0"], "--show-steps"),
        (vec!["--template", "a [MASK] b", "--guidance", "2"], "--guidance"),
        (vec!["--prompt", "   "], "empty"),
    ] {
        let mut a = vec!["generate", "--checkpoint", s(b), "--mode", "diffusion", "--device", "cpu"];
        a.extend(args.iter().copied());
        let o = run(&a);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{a:?}");
        assert!(err.contains(want), "{a:?}: {err}");
        assert!(!err.contains("panicked"));
        assert_eq!(err.lines().filter(|l| l.starts_with("error")).count(), 1, "{err}");
    }
    // A bundle without the stage, and --template without --mode diffusion.
    let o = run(&["generate", "--checkpoint", s(&f.bundle), "--mode", "diffusion", "--template", "a [MASK]"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("plandiff train diffusion"));
    let o = run(&["generate", "--checkpoint", s(&f.bundle), "--template", "a [MASK]"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("--mode diffusion"));
}

/// `eval` without `--stage` evaluates every stage the bundle holds: a diffusion-only bundle
/// gets its diffusion report (the same as `--stage diffusion`), not a request for `ar`.
#[test]
fn eval_without_stage_evaluates_what_the_bundle_holds() {
    let b = bundle();
    let f = fixture();
    let base = ["eval", "--checkpoint", s(b), "--data", s(&f.data), "--device", "cpu", "--max-batches", "2"];
    let text = run_ok(&base);
    assert!(text.starts_with("diffusion: ") && text.contains("rounding accuracy"), "{text}");
    assert_eq!(text.lines().count(), 1, "one line per stage held: {text}");
    let mut a = base.to_vec();
    a.push("--json");
    let docs: Vec<Value> =
        serde_json::Deserializer::from_str(&run_ok(&a)).into_iter::<Value>().collect::<Result<_, _>>().unwrap();
    assert_eq!(docs.len(), 1);
    assert_eq!(docs[0]["stage"], "diffusion");
    a.extend(["--stage", "diffusion"]);
    let one: Value = serde_json::from_str(&run_ok(&a)).unwrap();
    assert_eq!(one["result"], docs[0]["result"], "the same report as --stage diffusion");
}
