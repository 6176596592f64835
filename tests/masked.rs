//! Mode `masked` end to end: stage `masked` trains (loss falls, exact resume), `eval`
//! reports its NELBO bound, `generate --mode masked` is seeded and fills templates, `edit
//! --mode masked` changes only what it remasks, `ab` runs a `masked@STEPS` arm, and bad
//! flags are one-line errors.

mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

fn train(data: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    let cfg = test_config();
    let mut args = vec!["train", "masked", "--config", s(&cfg), "--data", s(data), "--out", s(out), "--device", "cpu"];
    args.extend_from_slice(extra);
    run(&args)
}

/// The fixture's data with a masked model trained on it (the test config's 200 steps).
fn bundle() -> &'static PathBuf {
    static B: OnceLock<PathBuf> = OnceLock::new();
    B.get_or_init(|| {
        let f = fixture();
        let out = f.dir.join("masked_bundle");
        let o = train(&f.data, &out, &[]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        out
    })
}

fn metrics(bundle: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(bundle.join("logs/masked-metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn training_lowers_the_loss_and_eval_reports_a_perplexity_bound() {
    let b = bundle();
    let m = metrics(b);
    let val: Vec<f64> = m.iter().filter_map(|v| v["val_loss"].as_f64()).collect();
    assert!(val.len() >= 3, "{val:?}");
    assert!(val[val.len() - 1] < 0.8 * val[0], "validation loss must fall: {val:?}");
    let train: Vec<f64> = m.iter().filter_map(|v| v["loss"].as_f64()).collect();
    let head: f64 = train[..5].iter().sum::<f64>() / 5.0;
    let tail: f64 = train[train.len() - 5..].iter().sum::<f64>() / 5.0;
    assert!(tail < 0.7 * head, "training loss must fall: {head} -> {tail}");
    let f = fixture();
    let out = run_ok(&["eval", "--stage", "masked", "--checkpoint", s(b), "--data", s(&f.data), "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let r = &v["result"];
    let bound = r["perplexity_bound"].as_f64().unwrap();
    assert!(bound.is_finite() && bound > 1.0 && bound < 400.0, "{r}");
    assert!((r["nelbo_per_token"].as_f64().unwrap().exp() - bound).abs() < 1e-6 * bound);
    let info = run_ok(&["info", "--checkpoint", s(b)]);
    assert!(info.contains("masked"), "{info}");
}

#[test]
fn stop_and_resume_equals_uninterrupted() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let (full, parts) = (dir.path().join("full"), dir.path().join("parts"));
    assert!(train(&f.data, &full, &["--max-steps", "12"]).status.success());
    assert!(train(&f.data, &parts, &["--max-steps", "12", "--stop-at", "5"]).status.success());
    let o = train(&f.data, &parts, &["--resume"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for name in ["masked/model.safetensors", "masked/optimizer.safetensors"] {
        assert!(std::fs::read(full.join(name)).unwrap() == std::fs::read(parts.join(name)).unwrap(), "{name} differs");
    }
}

fn generate(extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["generate", "--checkpoint", s(bundle()), "--mode", "masked", "--json"];
    args.extend_from_slice(extra);
    serde_json::from_str(&run_ok(&args)).unwrap()
}

#[test]
fn seeded_generation_is_reproducible_and_templates_keep_their_text() {
    let p = ["--prompt", "tom went to the park.", "--max-tokens", "16", "--num-samples", "2"];
    let a = generate(&[&p[..], &["--seed", "3"]].concat());
    let b = generate(&[&p[..], &["--seed", "3"]].concat());
    let c = generate(&[&p[..], &["--seed", "4"]].concat());
    let texts = |v: &serde_json::Value| {
        v["samples"].as_array().unwrap().iter().map(|s| (s["text"].clone(), s["tokens"].clone())).collect::<Vec<_>>()
    };
    assert_eq!(texts(&a), texts(&b), "same seed, same text");
    assert_ne!(texts(&a), texts(&c), "another seed, another text");
    assert_eq!(a["masked_sampling"]["steps"], 16, "the stored default steps");
    // Every remasking strategy, blocks, a random start: all positions filled, prompt kept.
    for extra in [
        &["--remasking", "random", "--block-length", "4"][..],
        &["--remasking", "margin", "--start", "random"],
        &["--remasking", "entropy", "--steps", "8", "--block-length", "8"],
        &["--block-length", "4", "--block-cache"],
        &["--block-length", "2", "--block-cache", "3", "--threshold", "0.5"],
    ] {
        let v = generate(&[&p[..], extra].concat());
        for smp in v["samples"].as_array().unwrap() {
            assert!(smp["text"].as_str().unwrap().starts_with("tom went to the park."), "{smp}");
            let toks = smp["tokens"].as_array().unwrap();
            let vocab = 400;
            assert!(toks.iter().all(|t| t.as_i64().unwrap() < vocab), "a mask left in {extra:?}: {toks:?}");
        }
    }
    let v = generate(&[&p[..], &["--block-length", "2", "--block-cache", "3", "--threshold", "0.5"]].concat());
    assert_eq!(v["masked_sampling"]["block_cache"], 3, "{}", v["masked_sampling"]);
    assert_eq!(v["masked_sampling"]["threshold"], 0.5);
    let v = generate(&["--template", "tom went to the [MASK:3] and [MASK:2] played.", "--show-steps", "4"]);
    let text = v["samples"][0]["text"].as_str().unwrap();
    assert!(text.starts_with("tom went to the") && text.contains(" and") && text.ends_with(" played."), "{text}");
    let steps = v["show_steps"].as_array().unwrap();
    assert_eq!(steps.len(), 4, "16 steps shown every 4");
    assert!(steps[0]["text"].as_str().unwrap().contains('_'), "masks show as _ early on: {}", steps[0]);
}

#[test]
fn edits_change_only_what_they_remask() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("t.txt");
    let text = "Tom went to the park. Mia saw a big dog there!\nThey played all day.\n";
    std::fs::write(&input, text).unwrap();
    let edit = |extra: &[&str]| -> serde_json::Value {
        let mut a = vec!["edit", "--mode", "masked", "--checkpoint", s(bundle()), "--input", s(&input), "--json"];
        a.extend_from_slice(extra);
        serde_json::from_str(&run_ok(&a)).unwrap()
    };
    // Bytes outside the changed spans are the input's, in order.
    let outside_same = |v: &serde_json::Value| {
        let out = v["text"].as_str().unwrap();
        let mut at = 0;
        let mut rebuilt = String::new();
        for c in v["changed"].as_array().unwrap() {
            let (a, b) = (c["start"].as_u64().unwrap() as usize, c["end"].as_u64().unwrap() as usize);
            rebuilt.push_str(&text[at..a]);
            rebuilt.push_str(c["after"].as_str().unwrap());
            at = b;
        }
        rebuilt.push_str(&text[at..]);
        assert_eq!(rebuilt, out);
        v["changed"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| (c["start"].as_u64().unwrap(), c["end"].as_u64().unwrap()))
            .collect::<Vec<_>>()
    };
    let v = edit(&["--rewrite", "2", "--seed", "1"]);
    let spans = outside_same(&v);
    let (s2, e2) = (22u64, 46u64); // "Mia saw a big dog there!"
    assert_eq!(&text[s2 as usize..e2 as usize], "Mia saw a big dog there!");
    assert!(spans.iter().all(|&(a, b)| a >= s2 && b <= e2), "only sentence 2 changes: {spans:?}");
    assert!(v["text"].as_str().unwrap().starts_with("Tom went to the park. "));
    assert!(v["text"].as_str().unwrap().ends_with("\nThey played all day.\n"));
    let v = edit(&["--chars", "32..39", "--seed", "2"]); // "big dog", tokens " big" " dog" (31..39)
    assert!(v["remasked"].as_u64().unwrap() >= 2);
    let spans = outside_same(&v);
    assert!(spans.iter().all(|&(a, b)| a >= 31 && b <= 39), "only the tokens of chars 32..39: {spans:?}");
    // --revise: every remasked token scored below the threshold, every other token kept.
    let v = edit(&["--revise", "-3", "--rounds", "2", "--seed", "5"]);
    outside_same(&v);
    let rounds = v["rounds"].as_array().unwrap();
    assert!(!rounds.is_empty());
    for r in rounds {
        for t in r["tokens"].as_array().unwrap() {
            let lp = t["logprob"].as_f64().unwrap();
            // Exact: the same f64 the revision compared (serde_json round-trips it bit for bit).
            assert_eq!(t["remasked"].as_bool().unwrap(), lp < -3.0, "{t}");
        }
    }
    let v = edit(&["--revise-fraction", "0.2", "--min-gain", "0"]);
    let r = &v["rounds"][0];
    let n = r["tokens"].as_array().unwrap().len();
    assert_eq!(r["remasked"].as_u64().unwrap() as usize, (0.2 * n as f64).ceil() as usize);
    // A change is kept only when it raises the text's score by --min-gain: with a bar no
    // change reaches, the text comes back byte for byte, and the revision stops at round 1.
    let v = edit(&["--revise-fraction", "0.3", "--rounds", "5", "--min-gain", "1e9"]);
    assert_eq!(v["text"].as_str().unwrap(), text);
    assert!(v["changed"].as_array().unwrap().is_empty(), "{v}");
    assert_eq!(v["rounds"].as_array().unwrap().len(), 1);
    assert_eq!(v["rounds"][0]["gain"].as_f64().unwrap(), 0.0);
    // With no bar, every kept change raised the score, one change a round.
    let v = edit(&["--revise-fraction", "0.3", "--rounds", "4", "--min-gain", "0", "--seed", "3"]);
    outside_same(&v);
    let rounds = v["rounds"].as_array().unwrap();
    assert!(rounds.len() <= 4);
    for r in rounds {
        assert!(r["gain"].as_f64().unwrap() >= 0.0, "{r}");
    }
}

/// A text longer than the masked model's context is revised window by window (whole
/// sentences), every byte outside the changed spans kept.
#[test]
fn revise_takes_a_text_longer_than_the_model() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("long.txt");
    let text: String = (0..40).map(|i| format!("Tom saw {} big dogs in the park. ", i % 7)).collect::<String>() + "\n";
    std::fs::write(&input, &text).unwrap();
    let a = ["edit", "--mode", "masked", "--checkpoint", s(bundle()), "--input", s(&input), "--json"];
    let run_with =
        |extra: &[&str]| -> serde_json::Value { serde_json::from_str(&run_ok(&[&a[..], extra].concat())).unwrap() };
    // The chars edit still refuses it (one window only), naming the limit.
    let o = run(&[&a[..], &["--chars", "0..3"]].concat());
    assert!(String::from_utf8_lossy(&o.stderr).contains("reads at most"));
    let v = run_with(&["--revise-fraction", "0.1", "--min-gain", "0", "--rounds", "2"]);
    assert!(v["rounds"].as_array().unwrap().len() >= 2, "one revision per window: {v}");
    let out = v["text"].as_str().unwrap();
    let mut rebuilt = String::new();
    let mut at = 0;
    for c in v["changed"].as_array().unwrap() {
        let (x, y) = (c["start"].as_u64().unwrap() as usize, c["end"].as_u64().unwrap() as usize);
        assert_eq!(&text[x..y], c["before"].as_str().unwrap());
        rebuilt.push_str(&text[at..x]);
        rebuilt.push_str(c["after"].as_str().unwrap());
        at = y;
    }
    rebuilt.push_str(&text[at..]);
    assert_eq!(rebuilt, out);
    let v = run_with(&["--revise-fraction", "0.1", "--min-gain", "1e9"]);
    assert_eq!(v["text"].as_str().unwrap(), text);
}

#[test]
fn bad_flags_are_one_line_errors() {
    let b = s(bundle()).to_string();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("t.txt");
    std::fs::write(&input, "Tom went to the park. Mia saw a dog.\n").unwrap();
    let i = s(&input).to_string();
    let (b, i) = (b.as_str(), i.as_str());
    let g = |x: &[&'static str]| -> Vec<&str> {
        [&["generate", "--checkpoint", b, "--prompt", "tom went.", "--mode", "masked"][..], x].concat()
    };
    let e = |x: &[&'static str]| -> Vec<&str> {
        [&["edit", "--checkpoint", b, "--input", i, "--mode", "masked"][..], x].concat()
    };
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (g(&["--block-length", "0"]), "--block-length"),
        (g(&["--block-cache", "0"]), "--block-cache 0"),
        (g(&["--threshold", "0"]), "--threshold 0"),
        (g(&["--remasking", "best"]), "--remasking best"),
        (g(&["--start", "noise"]), "--start noise"),
        (g(&["--steps", "5", "--block-length", "4"]), "--steps 5 must be at least the 7 blocks"),
        (g(&["--steps", "99999999"]), "--steps 99999999"),
        (g(&["--temperature=-1"]), "--temperature"),
        (g(&["--sampler", "ddim"]), "--sampler"),
        (vec!["generate", "--checkpoint", b, "--prompt", "tom.", "--block-length", "4"], "--mode masked"),
        (e(&["--chars", "9..2"]), "--chars 9..2"),
        (e(&["--chars", "x"]), "--chars x"),
        (e(&["--rewrite", "3..4"]), "--rewrite 3..4"),
        (e(&["--revise", "2"]), "--revise 2"),
        (e(&["--revise-fraction", "1.5"]), "--revise-fraction"),
        (e(&["--revise", "-2", "--rounds", "0"]), "--rounds 0"),
        (e(&["--revise", "-2", "--min-gain=-1"]), "--min-gain -1"),
        (e(&["--rewrite", "1", "--revise", "-2"]), "exactly one"),
        (e(&[]), "exactly one"),
        (vec!["edit", "--checkpoint", b, "--input", i, "--chars", "1..3"], "--mode masked"),
        (vec!["ab", "--checkpoint", b, "--prompts", i, "--arms", "masked@0,ar"], "KIND@STEPS"),
        (
            vec!["ab", "--checkpoint", b, "--prompts", i, "--arms", "masked,ar", "--remasking", "best"],
            "--remasking best",
        ),
        (vec!["ab", "--checkpoint", b, "--prompts", i, "--arms", "masked,ar", "--block-length", "0"], "--block-length"),
    ];
    let mut failures = Vec::new();
    for (args, expect) in &cases {
        let out = run(args);
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        let last = err.lines().rfind(|l| !l.trim().is_empty()).unwrap_or_default().to_string();
        let ok = !out.status.success()
            && !matches!(out.status.code(), Some(101 | 134))
            && !err.contains("panicked")
            && last.starts_with("error: ")
            && last.contains(expect);
        if !ok {
            failures.push(format!("{args:?}: exit {:?}, stderr {err:?}", out.status.code()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn init_from_ar_copies_the_ar_model_and_refuses_a_mismatch() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(test_config()).unwrap();
    let at = text.find("[masked.model]").unwrap();
    let head = format!("{}[masked]\ninit_from_ar = true\n\n", &text[..at]);
    let same = format!("{head}{}", text[at..].replacen("n_heads = 4", "n_heads = 2", 1));
    let (cfg_same, cfg_bad) = (dir.path().join("same.toml"), dir.path().join("bad.toml"));
    std::fs::write(&cfg_same, same).unwrap();
    std::fs::write(&cfg_bad, format!("{head}{}", &text[at..])).unwrap();
    let out = dir.path().join("b");
    copy_dir(&f.bundle.join("ar"), &out.join("ar"));
    std::fs::copy(f.bundle.join("tokenizer.json"), out.join("tokenizer.json")).unwrap();
    let args = |cfg: &Path| -> Vec<String> {
        [
            "train",
            "masked",
            "--config",
            s(cfg),
            "--data",
            s(&f.data),
            "--out",
            s(&out),
            "--device",
            "cpu",
            "--max-steps",
            "1",
        ]
        .map(String::from)
        .to_vec()
    };
    let bad = run(&args(&cfg_bad).iter().map(String::as_str).collect::<Vec<_>>());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success() && err.contains("init_from_ar") && err.contains("2 heads"), "{err}");
    assert!(!out.join("masked").exists(), "a refused run writes nothing");
    let ok = run(&args(&cfg_same).iter().map(String::as_str).collect::<Vec<_>>());
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    let read = |p: PathBuf| -> std::collections::HashMap<String, tch::Tensor> {
        tch::Tensor::read_safetensors(p).unwrap().into_iter().collect()
    };
    let (ar, m) = (read(out.join("ar/model.safetensors")), read(out.join("masked/model.safetensors")));
    // One AdamW step (lr 5e-3 at most) from the ar weights: every copied tensor stays within 0.01.
    let v = ar["wte.weight"].size()[0];
    let close = |a: &tch::Tensor, b: &tch::Tensor| (a - b).abs().max().double_value(&[]) < 0.01;
    assert!(close(&ar["wte.weight"], &m["wte.weight"].narrow(0, 0, v)));
    assert_eq!(m["wte.weight"].size()[0], v + 1, "one more row: the mask");
    match ar.get("wpe.weight") {
        Some(wpe) => assert!(close(&wpe.narrow(0, 0, 32), &m["wpe.weight"])),
        // A rotary ar model has no position table: the masked model keeps its own.
        None => assert_eq!(m["wpe.weight"].size(), vec![32, m["wte.weight"].size()[1]]),
    }
    assert!(close(&ar["blocks.1.mlp.fc2.weight"], &m["blocks.1.mlp.fc2.weight"]));
}

#[test]
fn ab_runs_masked_arms_with_their_steps_and_remasking() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let prompts = dir.path().join("p.jsonl");
    std::fs::write(&prompts, "{\"prompt\": \"tom went to the park.\"}\n{\"prompt\": \"mia had a red ball.\"}\n")
        .unwrap();
    let ar = format!("ar={}", s(&f.bundle));
    let arms = format!("masked@4,masked@8,{ar}");
    let ab = |remasking: &str, out: &str| -> serde_json::Value {
        let out = dir.path().join(out);
        let args = [
            "ab",
            "--checkpoint",
            s(bundle()),
            "--prompts",
            s(&prompts),
            "--arms",
            &arms,
            "--judge",
            s(&f.bundle),
            "--samples",
            "1",
            "--sentences",
            "1",
            "--max-tokens",
            "8",
            "--resamples",
            "10",
            "--remasking",
            remasking,
            "--out",
            s(&out),
            "--json",
        ];
        serde_json::from_str(&run_ok(&args)).unwrap()
    };
    let (lc, rnd) = (ab("low_confidence", "a"), ab("random", "b"));
    let texts = |v: &serde_json::Value, arm: &str| -> Vec<String> {
        v["prompts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["samples"][arm][0]["text"].as_str().unwrap().to_string())
            .collect()
    };
    for arm in ["masked@4", "masked@8"] {
        assert_eq!(texts(&lc, arm).len(), 2);
        assert!(lc["aggregates"][arm]["tokens"].as_f64().unwrap() > 0.0, "{arm}: {}", lc["aggregates"][arm]);
    }
    assert_eq!(lc["arms"][0]["steps"], 4);
    assert_ne!(texts(&lc, "masked@8"), texts(&rnd, "masked@8"), "--remasking reaches the masked arms");
    assert_eq!(texts(&lc, &ar), texts(&rnd, &ar), "and only them");
}

/// `eval --repair`: each kind's cases are made and revised; a revision that may keep nothing
/// (`--min-gain 1e9`) restores nothing and changes nothing, every case back byte for byte;
/// a revision that keeps every improving change changes something. `--score ar` and the
/// `close` kind need the bundle's ar model: a one-line error says so.
#[test]
fn repair_benchmark_scores_what_revise_does() {
    let f = fixture();
    let stories = f.dir.join("corpus.txt");
    let base = ["eval", "--checkpoint", s(bundle()), "--data", s(&stories), "--json"];
    let bench = |extra: &[&str]| -> serde_json::Value {
        let v: serde_json::Value = serde_json::from_str(&run_ok(&[&base[..], extra].concat())).unwrap();
        v["kinds"].as_array().unwrap().iter().map(|k| (k["kind"].as_str().unwrap().to_string(), k.clone())).collect()
    };
    let still = bench(&["--repair", "random,swap,clean", "--per-kind", "4", "--score", "pll", "--min-gain", "1e9"]);
    for kind in ["random", "swap", "clean"] {
        let k = &still[kind];
        assert_eq!(k["cases"], 4, "{kind}: {k}");
        let corrupted = if kind == "clean" { 0 } else { 4 };
        assert_eq!(k["corrupted_words"], corrupted, "{kind}: one word a case");
        assert_eq!((k["restored_words"].as_u64(), k["changed_words"].as_u64()), (Some(0), Some(0)), "{kind}: {k}");
        assert_eq!(k["untouched"], 1.0);
        assert!(k["clean_words"].as_u64().unwrap() > 8);
    }
    let moved = bench(&[
        "--repair",
        "random",
        "--per-kind",
        "4",
        "--score",
        "pll",
        "--min-gain",
        "0",
        "--revise-fraction",
        "0.5",
    ]);
    let k = &moved["random"];
    assert!(k["untouched"].as_f64().unwrap() < 1.0, "a revision that keeps any gain changes something: {k}");
    // With an ar model beside the masked one: --score ar is the default, and close
    // substitutes come from the ar model's token embeddings.
    let both = tempfile::tempdir().unwrap();
    copy_dir(&bundle().join("masked"), &both.path().join("masked"));
    copy_dir(&f.bundle.join("ar"), &both.path().join("ar"));
    std::fs::copy(bundle().join("tokenizer.json"), both.path().join("tokenizer.json")).unwrap();
    let args = ["eval", "--checkpoint", s(both.path()), "--data", s(&stories), "--json", "--repair", "close,clean"];
    let v: serde_json::Value =
        serde_json::from_str(&run_ok(&[&args[..], &["--per-kind", "3", "--min-gain", "1e9"]].concat())).unwrap();
    assert_eq!(v["score"], "ar");
    let close = &v["kinds"][0];
    assert_eq!((close["kind"].as_str(), close["cases"].as_u64()), (Some("close"), Some(3)), "{v}");
    assert_eq!((close["untouched"].as_f64(), close["changed_words"].as_u64()), (Some(1.0), Some(0)));
    for (flags, want) in [
        (vec!["--repair", "close"], "ar model"),
        (vec!["--repair", "random", "--score", "ar"], "--score pll"),
        (vec!["--repair", "typo"], "unknown kind `typo`"),
        (vec!["--repair", "random", "--per-kind", "0"], "--per-kind 0"),
    ] {
        let o = run(&[&base[..], &flags].concat());
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{flags:?}: {err}");
        assert!(err.contains(want) && err.trim().lines().count() == 1, "{flags:?}: {err}");
    }
}
