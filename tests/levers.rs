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

#[test]
fn a_window_stride_keeps_the_first_window_and_changes_the_slides() {
    // 2 prompt sentences + 10 with 8 decoder slots: the first window writes sentences 3..8
    // whatever the stride (one planner call plans all 10), then stride 1 slides 4 times and
    // stride 4 once.
    let (one, four) = (hybrid(&[]), hybrid(&["--window-stride", "4"]));
    assert_eq!(four["window_stride"], 4, "{four}");
    assert_eq!(previews(&one), previews(&four), "same plan");
    let (a, b) = (sentences(&one), sentences(&four));
    assert_eq!((a.len(), b.len()), (10, 10));
    assert_eq!(a[..6], b[..6], "the first window does not depend on the stride");
    assert_ne!(a[6..], b[6..], "the stride changes what the later windows see");
    assert_eq!(sentences(&hybrid(&["--window-stride", "1"])), a, "stride 1 is the default");
}

#[test]
fn a_window_pin_keeps_the_prompt_in_view_once_the_window_slides() {
    // The first window (sentences 3..8) is written before anything slides: the same with or
    // without pins; then pinning the prompt's two sentences changes what the decoder reads.
    let (base, pinned) = (hybrid(&[]), hybrid(&["--window-pin", "2"]));
    assert_eq!(pinned["window_pin"], 2, "{pinned}");
    assert_eq!(previews(&base), previews(&pinned), "same plan");
    let (a, b) = (sentences(&base), sentences(&pinned));
    assert_eq!((a.len(), b.len()), (10, 10));
    assert_eq!(a[..6], b[..6], "the first window does not depend on the pins");
    assert_ne!(a[6..], b[6..], "the pinned prompt changes what the later windows see");
    assert_eq!(sentences(&hybrid(&["--window-pin", "0"])), a, "pin 0 is the default");
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
