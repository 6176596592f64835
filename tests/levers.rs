//! The hybrid levers of issue 13 on the shipped bundle: `--window-stride` (the decoder window
//! slides several sentences at once), `--window-pin` (the prompt stays in the decoder's view)
//! and `--plan-guidance` (the decoder's classifier-free guidance on the plan). Each is checked against the default it must equal where the
//! arithmetic says so, and must change the text where it does something.

mod common;
use common::*;
use serde_json::Value;

const PROMPT: &str = "once upon a time, there was a little fox named leo. leo liked to play in the woods.";

fn hybrid(extra: &[&str]) -> Value {
    let dir = root().join("checkpoints/tiny");
    let mut args = vec!["generate", "--checkpoint", s(&dir), "--mode", "hybrid", "--prompt", PROMPT];
    args.extend_from_slice(&["--sentences", "10", "--seed", "3", "--json", "--show-plan", "--device", "cpu"]);
    args.extend_from_slice(extra);
    serde_json::from_str(&run_ok(&args)).unwrap()
}

/// What the planner drew: each slot's preview (the decoder's reading of the latent alone).
fn previews(v: &Value) -> Vec<Value> {
    v["samples"][0]["plan"].as_array().unwrap().iter().map(|p| p["preview"].clone()).collect()
}

fn sentences(v: &Value) -> Vec<String> {
    v["samples"][0]["sentences"].as_array().unwrap().iter().map(|x| x.as_str().unwrap().to_string()).collect()
}

/// A window lever that acts only once the decoder window slides: 2 prompt sentences + 10
/// with 8 decoder slots, the first window writes sentences 3..8 whatever the lever (one planner
/// call plans all 10); `flag value` must keep the plan and those 6 sentences, change the later
/// ones, and `flag neutral` must equal the default.
fn acts_once_the_window_slides(flag: &str, value: &str, neutral: &str) {
    let (base, lever) = (hybrid(&[]), hybrid(&[flag, value]));
    let key = flag.trim_start_matches("--").replace('-', "_");
    assert_eq!(lever[key.as_str()].to_string(), value, "{lever}");
    assert_eq!(previews(&base), previews(&lever), "{flag} {value}: same plan");
    let (a, b) = (sentences(&base), sentences(&lever));
    assert_eq!((a.len(), b.len()), (10, 10));
    assert_eq!(a[..6], b[..6], "{flag} {value}: the first window does not depend on it");
    assert_ne!(a[6..], b[6..], "{flag} {value}: the later windows see the same text");
    assert_eq!(sentences(&hybrid(&[flag, neutral])), a, "{flag} {neutral} is the default");
}

#[test]
fn a_window_stride_keeps_the_first_window_and_changes_the_slides() {
    // Stride 1 slides 4 times, stride 4 once.
    acts_once_the_window_slides("--window-stride", "4", "1");
}

#[test]
fn a_window_pin_keeps_the_prompt_in_view_once_the_window_slides() {
    // Pinning the prompt's two sentences changes what the decoder reads from the 7th on.
    acts_once_the_window_slides("--window-pin", "2", "0");
}

#[test]
fn plan_guidance_one_is_the_plan_alone_and_more_changes_the_text() {
    let base = hybrid(&[]);
    assert_eq!(hybrid(&["--plan-guidance", "1"])["samples"][0]["text"], base["samples"][0]["text"]);
    let guided = hybrid(&["--plan-guidance", "3"]);
    assert_eq!(guided["plan_guidance"], 3.0, "{guided}");
    assert_eq!(previews(&guided), previews(&base), "the plan is the same");
    assert_ne!(guided["samples"][0]["text"], base["samples"][0]["text"]);
    assert_eq!(sentences(&guided).len(), 10);
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
