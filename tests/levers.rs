//! The hybrid levers of issue 13: `--window-stride` (the decoder window slides several
//! sentences at once), `--window-pin` (the prompt stays in the decoder's view) and
//! `--plan-guidance` (the decoder's classifier-free guidance on the plan). Each is checked
//! against the default it must equal where the arithmetic says so, and must change the text
//! where it does something. The window levers act on a decoder with absolute positions, which
//! re-reads its window (a bundle trained here from the test config without its rotary
//! sections); the shipped bundle's rotary decoder slides by itself and refuses them.

mod common;
use common::*;
use serde_json::Value;
use std::path::PathBuf;
use std::sync::OnceLock;

const PROMPT: &str = "once upon a time, there was a little fox named leo. leo liked to play in the woods.";

fn hybrid_with(bundle: &std::path::Path, sentences: &str, extra: &[&str]) -> Value {
    let mut args = vec!["generate", "--checkpoint", s(bundle), "--mode", "hybrid", "--prompt", PROMPT];
    args.extend_from_slice(&["--sentences", sentences, "--seed", "3", "--json", "--show-plan", "--device", "cpu"]);
    args.extend_from_slice(extra);
    serde_json::from_str(&run_ok(&args)).unwrap()
}

fn hybrid(extra: &[&str]) -> Value {
    hybrid_with(&root().join("checkpoints/tiny"), "10", extra)
}

/// A tiny bundle whose decoders have absolute positions (the test config less its rotary
/// sections), 4 decoder slots: made once per test binary.
fn absolute_bundle() -> &'static PathBuf {
    static B: OnceLock<PathBuf> = OnceLock::new();
    B.get_or_init(|| {
        let f = fixture();
        let cfg = std::fs::read_to_string(test_config()).unwrap();
        let mut kept = Vec::new();
        let mut skip = false;
        for line in cfg.lines() {
            if line.starts_with('[') {
                skip = line.ends_with(".rotary]");
            }
            if !skip {
                kept.push(line);
            }
        }
        let dir = f.dir.join("absolute");
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("config.toml");
        std::fs::write(&config, kept.join("\n")).unwrap();
        let bundle = dir.join("bundle");
        for stage in ["ar", "autoencoder", "planner"] {
            let args = ["train", stage, "--config", s(&config), "--data", s(&f.data), "--out", s(&bundle)];
            run_ok(&[&args[..], &["--device", "cpu"]].concat());
        }
        bundle
    })
}

/// What the planner drew: each slot's preview (the decoder's reading of the latent alone).
fn previews(v: &Value) -> Vec<Value> {
    v["samples"][0]["plan"].as_array().unwrap().iter().map(|p| p["preview"].clone()).collect()
}

fn sentences(v: &Value) -> Vec<String> {
    v["samples"][0]["sentences"].as_array().unwrap().iter().map(|x| x.as_str().unwrap().to_string()).collect()
}

/// A window lever that acts only once the decoder window slides: 2 prompt sentences + 8
/// with 4 decoder slots, the first window writes sentences 3 and 4 whatever the lever (one
/// planner call plans all 8); `flag value` must keep the plan and those 2 sentences, change
/// the later ones, and `flag neutral` must equal the default.
fn acts_once_the_window_slides(flag: &str, value: &str, neutral: &str) {
    let b = absolute_bundle();
    let (base, lever) = (hybrid_with(b, "8", &[]), hybrid_with(b, "8", &[flag, value]));
    let key = flag.trim_start_matches("--").replace('-', "_");
    assert_eq!(lever[key.as_str()].to_string(), value, "{lever}");
    assert_eq!(previews(&base), previews(&lever), "{flag} {value}: same plan");
    let (a, b2) = (sentences(&base), sentences(&lever));
    assert_eq!((a.len(), b2.len()), (8, 8));
    assert_eq!(a[..2], b2[..2], "{flag} {value}: the first window does not depend on it");
    assert_ne!(a[2..], b2[2..], "{flag} {value}: the later windows see the same text");
    assert_eq!(sentences(&hybrid_with(b, "8", &[flag, neutral])), a, "{flag} {neutral} is the default");
}

#[test]
fn a_window_stride_keeps_the_first_window_and_changes_the_slides() {
    // Stride 1 slides 6 times, stride 3 twice.
    acts_once_the_window_slides("--window-stride", "3", "1");
}

#[test]
fn a_window_pin_keeps_the_prompt_in_view_once_the_window_slides() {
    // Pinning the prompt's two sentences changes what the decoder reads from the 5th on.
    acts_once_the_window_slides("--window-pin", "2", "0");
}

#[test]
fn a_sliding_rotary_decoder_refuses_the_window_levers() {
    let dir = root().join("checkpoints/tiny");
    for (flag, value) in [("--window-stride", "4"), ("--window-pin", "2")] {
        let o = run(&["generate", "--checkpoint", s(&dir), "--mode", "hybrid", "--prompt", PROMPT, flag, value]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{flag}: {err}");
        assert!(err.contains(flag) && err.contains("would change nothing") && err.trim().lines().count() == 1, "{err}");
    }
    // The neutral values are the default, and accepted.
    let base = hybrid(&[]);
    assert_eq!(sentences(&hybrid(&["--window-stride", "1", "--window-pin", "0"])), sentences(&base));
}

#[test]
fn plan_guidance_unset_is_the_bundles_default_and_more_changes_the_text() {
    let base = hybrid(&[]);
    let stored = base["plan_guidance"].as_f64().expect("the settings report the plan guidance");
    // Issue 39: the shipped decoder is distilled from the levers, so it writes with none.
    assert_eq!(stored, 1.0, "the shipped bundle stores plan guidance 1 (its decoder learned the levers)");
    assert_eq!(base["ar_prior"].as_f64(), Some(0.0), "{base}");
    assert_eq!(hybrid(&["--plan-guidance", "1"])["samples"][0]["text"], base["samples"][0]["text"]);
    assert_ne!(hybrid(&["--plan-guidance", "0.75"])["samples"][0]["text"], base["samples"][0]["text"]);
    let guided = hybrid(&["--plan-guidance", "3"]);
    assert_eq!(guided["plan_guidance"], 3.0, "{guided}");
    assert_eq!(previews(&guided), previews(&base), "the plan is the same");
    assert_ne!(guided["samples"][0]["text"], base["samples"][0]["text"]);
    assert_eq!(sentences(&guided).len(), 10);
}

/// With an outline the shipped bundle writes with its outline defaults (plan guidance 2.5: the
/// distilled decoder pulled back toward what each line says, no prior), the same text as
/// those flags given; a flag still wins.
#[test]
fn an_outline_takes_the_bundles_outline_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let outline = dir.path().join("outline.txt");
    std::fs::write(&outline, "leo found a red ball.\n_\nleo went home.\n").unwrap();
    let o = ["--outline", s(&outline)];
    let with = hybrid_with(&root().join("checkpoints/tiny"), "4", &o);
    assert_eq!((with["plan_guidance"].as_f64(), with["ar_prior"].as_f64()), (Some(2.5), Some(0.0)), "{with}");
    let flags = hybrid_with(
        &root().join("checkpoints/tiny"),
        "4",
        &[&o[..], &["--plan-guidance", "2.5", "--ar-prior", "0"]].concat(),
    );
    assert_eq!(with["samples"][0]["text"], flags["samples"][0]["text"]);
    let given = hybrid_with(&root().join("checkpoints/tiny"), "4", &[&o[..], &["--ar-prior", "0.5"]].concat());
    assert_eq!((given["plan_guidance"].as_f64(), given["ar_prior"].as_f64()), (Some(2.5), Some(0.5)));
    let plain = hybrid_with(&root().join("checkpoints/tiny"), "4", &[]);
    assert_eq!((plain["plan_guidance"].as_f64(), plain["ar_prior"].as_f64()), (Some(1.0), Some(0.0)));
}

#[test]
fn bad_lever_values_are_refused_in_one_line() {
    let dir = root().join("checkpoints/tiny");
    let input = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(input.path(), "tom had a ball. he liked it.").unwrap();
    let gen = |flag: &str, v: &str| {
        run(&["generate", "--checkpoint", s(&dir), "--mode", "hybrid", "--prompt", "hi.", flag, v, "--device", "cpu"])
    };
    let edit = ["edit", "--checkpoint", s(&dir), "--input", s(input.path()), "--rewrite", "2", "--device", "cpu"];
    let cases = [
        gen("--plan-guidance", "11"),
        gen("--plan-guidance", "nan"),
        gen("--plan-guidance=-1", "--seed=1"),
        gen("--window-stride", "0"),
        gen("--window-stride", "100000"),
        run(&[&edit[..], &["--window-stride", "2"]].concat()),
        run(&[&edit[..], &["--plan-guidance", "2"]].concat()),
        gen("--window-pin", "65"),
        gen("--window-pin=-1", "--seed=1"),
        run(&[&edit[..], &["--window-pin", "2"]].concat()),
    ];
    for (i, o) in cases.iter().enumerate() {
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.code() == Some(1) || o.status.code() == Some(2), "case {i}: {:?} {err}", o.status);
        assert_eq!(err.trim().lines().count(), 1, "case {i}: {err}");
        assert!(
            ["--plan-guidance", "--window-stride", "--window-pin"].iter().any(|f| err.contains(f)),
            "case {i}: {err}"
        );
    }
}
