//! `generate --mode hybrid --outline FILE` on the shipped bundle: the outline's lines are
//! fixed plan slots (the same latent whatever the seed, while the planner's free slots
//! change with it), the text has a sentence per slot with or without a prompt and goes on
//! past the outline with --sentences, `-` reads standard input, and bad outlines are
//! one-line errors.

mod common;
use common::*;
use serde_json::Value;
use std::io::Write;
use std::process::{Command, Stdio};

const PROMPT: &str = "once upon a time, there was a little fox named leo. he lived near a big forest.";
const OUTLINE: &str = "leo finds a red ball in the forest.\n_\n\nleo and his friend play with the ball all day.\n";

fn outline_file(dir: &std::path::Path, text: &[u8]) -> std::path::PathBuf {
    let p = dir.join("outline.txt");
    std::fs::write(&p, text).unwrap();
    p
}

fn generate(extra: &[&str]) -> std::process::Output {
    let dir = root().join("checkpoints/tiny");
    let mut args = vec!["generate", "--checkpoint", s(&dir), "--mode", "hybrid", "--json", "--show-plan"];
    args.extend_from_slice(extra);
    run(&args)
}

fn json(o: std::process::Output) -> Value {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

fn plan(v: &Value) -> Vec<Value> {
    v["samples"][0]["plan"].as_array().unwrap().clone()
}

#[test]
fn outline_lines_are_fixed_slots_and_the_planner_fills_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let f = outline_file(dir.path(), OUTLINE.as_bytes());
    let run_seed = |seed: &str| json(generate(&["--prompt", PROMPT, "--outline", s(&f), "--seed", seed]));
    let (a, b) = (run_seed("1"), run_seed("2"));
    let (pa, pb) = (plan(&a), plan(&b));
    assert_eq!((pa.len(), pb.len()), (4, 4), "one slot per outline line: {a}");
    assert_eq!(a["samples"][0]["sentences"].as_array().unwrap().len(), 4);
    // Slots 3 and 6 (after the prompt's two sentences) hold the outline's lines.
    let lines: Vec<Option<&str>> = pa.iter().map(|p| p["outline"].as_str()).collect();
    assert_eq!(
        lines,
        vec![
            Some("leo finds a red ball in the forest."),
            None,
            None,
            Some("leo and his friend play with the ball all day.")
        ]
    );
    assert_eq!(pa.iter().map(|p| p["sentence"].as_u64().unwrap()).collect::<Vec<_>>(), vec![3, 4, 5, 6]);
    // A fixed slot's latent does not depend on the seed (its greedy preview is the same);
    // the planner's free slots do.
    for k in [0, 3] {
        assert_eq!(pa[k]["preview"], pb[k]["preview"], "slot {k} is fixed");
    }
    assert!(pa[1]["preview"] != pb[1]["preview"] || pa[2]["preview"] != pb[2]["preview"], "free slots are sampled");
    // --sentences past the outline: the plan goes on; no prompt: the outline alone.
    let long = json(generate(&["--outline", s(&f), "--sentences", "6", "--seed", "1"]));
    assert_eq!(plan(&long).len(), 6);
    assert_eq!(plan(&long)[0]["sentence"], 1, "no prompt: the outline starts the text");
    let text = long["samples"][0]["text"].as_str().unwrap();
    assert!(!text.is_empty() && !text.starts_with(' '), "{text:?}");
    assert_eq!(plan(&long)[3]["outline"], "leo and his friend play with the ball all day.");
    // --outline-hold below 1: the planner refines the outline's slots after holding them, so
    // their latents (previews) depend on the seed too; the line is still named.
    let held =
        |seed: &str| json(generate(&["--prompt", PROMPT, "--outline", s(&f), "--outline-hold", "0.3", "--seed", seed]));
    let (ha, hb) = (plan(&held("1")), plan(&held("2")));
    assert_eq!(ha[0]["outline"], "leo finds a red ball in the forest.");
    assert!(ha[0]["preview"] != hb[0]["preview"] || ha[3]["preview"] != hb[3]["preview"], "refined slots: {ha:?}");
}

/// --outline-complete: a phrase is completed to a sentence that starts with it (logged), and
/// that sentence's latent is the slot's (its preview changes); a line that ends a sentence is
/// encoded as it is.
#[test]
fn outline_complete_encodes_a_phrase_as_its_completed_sentence() {
    let dir = tempfile::tempdir().unwrap();
    let f = outline_file(dir.path(), b"leo finds a\n_\nleo and his friend play with the ball all day.\n");
    let args = ["--prompt", PROMPT, "--outline", s(&f), "--seed", "1"];
    let plain = generate(&args);
    let done = generate(&[&args[..], &["--outline-complete"]].concat());
    let log = String::from_utf8_lossy(&done.stderr).to_string();
    let (plain, done) = (plan(&json(plain)), plan(&json(done)));
    let line =
        log.lines().find(|l| l.contains("completed as")).unwrap_or_else(|| panic!("no completion logged: {log}"));
    let completed = line.split("completed as \"").nth(1).unwrap().trim_end_matches('"');
    assert!(completed.starts_with("leo finds a ") && completed.len() > "leo finds a".len(), "{line}");
    assert_eq!(log.matches("completed as").count(), 1, "the sentence line is not completed: {log}");
    assert_eq!(done[0]["outline"], "leo finds a", "the line shown is the user's");
    assert_ne!(plain[0]["preview"], done[0]["preview"], "the phrase's slot reads the completed sentence");
    assert_eq!(plain[2]["preview"], done[2]["preview"], "the sentence's slot is unchanged");
}

#[test]
fn an_outline_reads_from_standard_input() {
    let dir = root().join("checkpoints/tiny");
    let mut child = Command::new(bin())
        .args(["--threads", "1", "generate", "--checkpoint", s(&dir), "--mode", "hybrid", "--outline", "-"])
        .args(["--prompt", PROMPT, "--seed", "1", "--json"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(OUTLINE.as_bytes()).unwrap();
    let v = json(child.wait_with_output().unwrap());
    assert_eq!(v["samples"][0]["sentences"].as_array().unwrap().len(), 4, "{v}");
}

#[test]
fn bad_outlines_are_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    let cases: Vec<(Vec<u8>, Vec<&str>, &str)> = vec![
        (b"\n_\n  \n".to_vec(), vec![], "no line of text"),
        (format!("{}\n", "word ".repeat(100)).into_bytes(), vec![], "line 1 is 499 characters"),
        (b"a fox.\n\xff\xfe\n".to_vec(), vec![], "not valid UTF-8"),
        (OUTLINE.as_bytes().to_vec(), vec!["--sentences", "2"], "--sentences 2 is fewer than the outline's 4 lines"),
        (OUTLINE.as_bytes().to_vec(), vec!["--outline-hold", "1.5"], "--outline-hold must be a fraction"),
    ];
    for (text, extra, want) in cases {
        let f = outline_file(dir.path(), &text);
        let mut args = vec!["--prompt", PROMPT, "--outline", s(&f)];
        args.extend(extra);
        let o = generate(&args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{want}: {err}");
        assert!(err.contains(want) && err.trim().lines().count() == 1, "{want}: {err}");
    }
    let o = generate(&["--prompt", PROMPT, "--outline", "/nonexistent/outline.txt"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.code() == Some(1) && err.contains("/nonexistent/outline.txt"), "{err}");
}

fn edit_to(input: &std::path::Path, extra: &[&str]) -> std::process::Output {
    let dir = root().join("checkpoints/tiny");
    let mut args = vec!["edit", "--checkpoint", s(&dir), "--input", s(input), "--json"];
    args.extend_from_slice(extra);
    run(&args)
}

/// `edit --at K --to PHRASE`: sentence K is rewritten, every other byte is the input's (odd
/// spacing and line breaks included), the kept draft is the one closest to the phrase (best of
/// --candidates; the first draft is the same for a seed whatever their number), and bad
/// requests are one-line errors.
#[test]
fn edit_at_rewrites_one_sentence_towards_the_phrase_and_keeps_every_other_byte() {
    let dir = tempfile::tempdir().unwrap();
    let text = "once upon a time, there was a fox named leo.  he lived near a big forest.\nhe liked to run.\tone day it rained.\n";
    let input = dir.path().join("story.txt");
    std::fs::write(&input, text).unwrap();
    let (k, old) = (3, "he liked to run.");
    let one =
        json(edit_to(&input, &["--at", "3", "--to", "leo found a red ball.", "--candidates", "1", "--seed", "5"]));
    let four =
        json(edit_to(&input, &["--at", "3", "--to", "leo found a red ball.", "--candidates", "4", "--seed", "5"]));
    for v in [&one, &four] {
        let r = &v["rewritten"][0];
        assert_eq!(r["sentence"], k);
        assert_eq!(r["before"], old);
        let after = r["after"].as_str().unwrap();
        assert!(!after.is_empty());
        let (head, tail) = text.split_once(old).unwrap();
        assert_eq!(v["text"].as_str().unwrap(), format!("{head}{after}{tail}"), "only sentence {k} changes");
        let to = &r["to"];
        let drafts: Vec<f64> = to["drafts"].as_array().unwrap().iter().map(|d| d.as_f64().unwrap()).collect();
        let best = drafts.iter().cloned().fold(f64::MIN, f64::max);
        // Exact: `cosine_after` is one of the `drafts` values, copied, not recomputed.
        assert_eq!(to["cosine_after"].as_f64().unwrap(), best, "the closest draft is kept");
        // Exact range: clamped where computed (plandiff_layers::bounded).
        assert!(to["cosine_before"].as_f64().unwrap().abs() <= 1.0);
    }
    let d1 = one["rewritten"][0]["to"]["drafts"].as_array().unwrap().clone();
    let d4 = four["rewritten"][0]["to"]["drafts"].as_array().unwrap().clone();
    assert_eq!((d1.len(), d4.len()), (1, 4));
    // (Cosines to 1e-5: the encoder batches 1 or 4 drafts, and padding moves the last bits.)
    let (c1, c4) = (d1[0].as_f64().unwrap(), d4[0].as_f64().unwrap());
    assert!((c1 - c4).abs() < 1e-5, "a seed's first draft does not depend on --candidates: {c1} {c4}");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--at", "9", "--to", "a fox."], "--at 9 is outside the text's sentences 1..4"),
        (vec!["--at", "2", "--to", "  "], "--to is empty"),
        (vec!["--at", "2"], "--at K and --to PHRASE go together"),
        (vec!["--at", "2", "--to", "a fox.", "--rewrite", "1"], "give exactly one of"),
        (vec!["--at", "2", "--to", "a fox.", "--candidates", "0"], "--candidates 0 must be in 1..=16"),
        (vec!["--rewrite", "2", "--candidates", "2"], "--candidates is read by --at K --to PHRASE only"),
        (
            vec!["--at", "2", "--to", "a fox.", "--guidance", "2"],
            "--guidance is the planner's, and --at samples no plan",
        ),
        (vec!["--at", "2", "--to", "a fox.", "--steps", "5"], "--steps is the planner's, and --at samples no plan"),
    ];
    for (extra, want) in cases {
        let o = edit_to(&input, &extra);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{want}: {err}");
        assert!(err.contains(want) && err.trim().lines().count() == 1, "{want}: {err}");
    }
}
