//! Stage `planner`, `generate --mode hybrid` and `edit` end to end on a tiny bundle.

mod common;
use common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

fn train(stage: &str, data: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    let cfg = test_config();
    let mut args = vec!["train", stage, "--config", s(&cfg), "--data", s(data), "--out", s(out), "--device", "cpu"];
    args.extend_from_slice(extra);
    run(&args)
}

fn ok(o: std::process::Output) -> std::process::Output {
    assert!(o.status.success(), "{}\n{}", String::from_utf8_lossy(&o.stderr), String::from_utf8_lossy(&o.stdout));
    o
}

/// A bundle with an autoencoder only, and one with autoencoder + planner.
fn bundles() -> &'static (PathBuf, PathBuf) {
    static B: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    B.get_or_init(|| {
        let f = fixture();
        let ae = f.dir.join("ae-only");
        ok(train("autoencoder", &f.data, &ae, &["--max-steps", "80"]));
        let full = f.dir.join("hybrid");
        copy_dir(&ae, &full);
        ok(train("planner", &f.data, &full, &[]));
        (ae, full)
    })
}

fn hybrid_json(bundle: &Path, seed: &str, sentences: &str) -> Value {
    let out = run_ok(&[
        "generate",
        "--checkpoint",
        s(bundle),
        "--mode",
        "hybrid",
        "--prompt",
        "Once upon a time, Tom had a ball. Tom went to the park with Lily.",
        "--sentences",
        sentences,
        "--seed",
        seed,
        "--show-plan",
        "--json",
        "--device",
        "cpu",
    ]);
    serde_json::from_str(&out).unwrap()
}

#[test]
fn planner_stage_records_schedule_normalizer_and_autoencoder() {
    let (_, full) = bundles();
    let cfg: Value = serde_json::from_str(&std::fs::read_to_string(full.join("planner/config.json")).unwrap()).unwrap();
    assert_eq!(cfg["kind"], "planner");
    let m = &cfg["model"];
    assert_eq!(m["schedule"]["beta_schedule"], "squaredcos_cap_v2");
    assert_eq!(m["schedule"]["prediction_type"], "sample");
    assert_eq!(m["sampling"]["sampler"], "ddim");
    assert_eq!(m["denoiser"]["d_latent"], 384, "latent width comes from the plan space");
    let sha = m["plan_space_sha256"].as_str().unwrap();
    assert!(sha.starts_with("space:") && sha.len() == 70, "the frozen space's fingerprint: {sha}");
    // The normalizer was fitted: stored with the weights, not the identity.
    let w = tch::Tensor::read_safetensors(full.join("planner/model.safetensors")).unwrap();
    let std = &w.iter().find(|(n, _)| n == "normalizer.std").expect("normalizer.std saved").1;
    let mean = &w.iter().find(|(n, _)| n == "normalizer.mean").expect("normalizer.mean saved").1;
    assert!((std - 1.0).abs().max().double_value(&[]) > 1e-3, "std is fitted");
    // The plan space is normalised on the same split, so the planner's own normaliser is near
    // the identity (its mean near 0) but fitted, not the defaults.
    assert!(mean.abs().max().double_value(&[]) < 0.5 && mean.abs().max().double_value(&[]) > 0.0, "mean is fitted");
    // Validation loss falls during training.
    let log = std::fs::read_to_string(full.join("logs/planner-metrics.jsonl")).unwrap();
    let vals: Vec<f64> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| v["val_loss"].as_f64())
        .collect();
    assert!(vals.len() >= 2, "{log}");
    assert!(vals.last().unwrap() < vals.first().unwrap(), "val loss {vals:?}");
    // info describes the planner next to the autoencoder.
    let info: Value = serde_json::from_str(&run_ok(&["info", "--checkpoint", s(full), "--json"])).unwrap();
    assert_eq!(info["stages"]["planner"]["config"]["model"]["denoiser"]["max_slots"], 6);
    assert!(info["stages"]["autoencoder"]["parameters"].as_u64().unwrap() > 0);
    assert!(run_ok(&["info", "--checkpoint", s(full)]).contains("planner: "));
    // eval --stage planner reports the loss and the cosine baselines.
    let f = fixture();
    let v: Value = serde_json::from_str(&run_ok(&[
        "eval",
        "--stage",
        "planner",
        "--checkpoint",
        s(full),
        "--data",
        s(&f.data),
        "--batch-size",
        "8",
        "--max-batches",
        "2",
        "--json",
        "--device",
        "cpu",
    ]))
    .unwrap();
    let r = &v["result"];
    for k in [
        "denoising_loss",
        "cosine_sampled",
        "cosine_random",
        "cosine_previous",
        "norm_ratio",
        "cosine_sampled_previous",
    ] {
        assert!(r[k].as_f64().unwrap().is_finite(), "{k}: {r}");
    }
    // Plan-space fidelity: a share (chance 0.5), a positive ratio of norms, a clamped cosine.
    let acc = r["contrastive_accuracy"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&acc) && r["norm_ratio"].as_f64().unwrap() > 0.0, "{r}");
    assert!(r["cosine_sampled_previous"].as_f64().unwrap().abs() <= 1.0, "{r}");
}

#[test]
fn planner_resume_is_exact() {
    let f = fixture();
    let (ae, _) = bundles();
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    copy_dir(ae, &a);
    copy_dir(ae, &b);
    ok(train("planner", &f.data, &a, &["--max-steps", "12"]));
    ok(train("planner", &f.data, &b, &["--max-steps", "12", "--stop-at", "5"]));
    let resumed = run(&[
        "train",
        "planner",
        "--data",
        s(&f.data),
        "--out",
        s(&b),
        "--resume",
        "--max-steps",
        "12",
        "--device",
        "cpu",
    ]);
    ok(resumed);
    for name in ["planner/model.safetensors", "planner/optimizer.safetensors"] {
        assert!(std::fs::read(a.join(name)).unwrap() == std::fs::read(b.join(name)).unwrap(), "{name} differs");
    }
}

#[test]
fn hybrid_is_seeded_and_plans_window_by_window() {
    let (_, full) = bundles();
    // 9 sentences after a 2-sentence prompt: more than the planner's 6-slot window and
    // the decoder's 4-slot window, so planning goes window by window.
    let a = hybrid_json(full, "5", "9");
    let b = hybrid_json(full, "5", "9");
    let c = hybrid_json(full, "6", "9");
    let (sa, sb, sc) = (&a["samples"][0], &b["samples"][0], &c["samples"][0]);
    assert_eq!(sa["text"], sb["text"], "same seed, same text");
    assert_eq!(sa["plan"], sb["plan"], "same seed, same plan");
    assert!(sa["text"] != sc["text"] || sa["plan"] != sc["plan"], "another seed changes the sample");
    assert!(sa["text"]
        .as_str()
        .unwrap()
        .starts_with("Once upon a time, Tom had a ball. Tom went to the park with Lily."));
    let calls = sa["planner_calls"].as_u64().unwrap();
    let plan = sa["plan"].as_array().unwrap();
    let n_sent = sa["sentences"].as_array().unwrap().len();
    // Hybrid writes every planned sentence (no early end of document, no empty sentence).
    assert_eq!(sa["stop"], "sentences", "{sa}");
    assert_eq!(n_sent, 9, "{sa}");
    assert_eq!(plan.len(), 9);
    assert!(calls >= 2, "9 sentences need more than one planner window: {calls}");
    // Slots are numbered after the prompt's 2 sentences; every preview is the decoder's text.
    assert_eq!(plan[0]["sentence"], 3);
    assert!(plan.iter().all(|p| p["preview"].is_string()), "--show-plan gives previews");
    for p in plan.iter().filter(|p| !p["written"].is_null()) {
        let cos = p["adherence"].as_f64().unwrap();
        // Exact range: plan adherence is clamped where it is computed (plandiff_layers::bounded),
        // so no float kernel can round it past 1.
        assert!((-1.0..=1.0).contains(&cos), "{p}");
    }
    // Plain text output shows the plan section.
    let text = run_ok(&[
        "generate",
        "--checkpoint",
        s(full),
        "--mode",
        "hybrid",
        "--prompt",
        "Tom had a ball.",
        "--sentences",
        "3",
        "--show-plan",
        "--steps",
        "5",
        "--sampler",
        "ddpm",
        "--guidance",
        "2",
        "--device",
        "cpu",
    ]);
    assert!(text.contains("plan:") && text.contains("  2. ["), "{text}");
    // --plan-candidates: 1 is the default plan exactly; 3 samples three plans a window and
    // writes every sentence; 0 is refused in one line.
    let with = |k: &str| -> Value {
        let out = run_ok(&[
            "generate",
            "--checkpoint",
            s(full),
            "--mode",
            "hybrid",
            "--prompt",
            "Once upon a time, Tom had a ball. Tom went to the park with Lily.",
            "--sentences",
            "9",
            "--seed",
            "5",
            "--show-plan",
            "--json",
            "--device",
            "cpu",
            "--plan-candidates",
            k,
        ]);
        serde_json::from_str(&out).unwrap()
    };
    assert_eq!(with("1")["samples"][0]["text"], sa["text"], "one candidate is the default plan");
    let three = with("3");
    assert_eq!(three["samples"][0]["sentences"].as_array().unwrap().len(), 9, "{three}");
    let o =
        run(&["generate", "--checkpoint", s(full), "--mode", "hybrid", "--prompt", "Hi.", "--plan-candidates", "0"]);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("--plan-candidates"));
}

#[test]
fn edit_keeps_every_other_sentence_byte_identical() {
    let (_, full) = bundles();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("story.txt");
    // Odd spacing and a paragraph break: bytes outside the rewritten range must survive.
    let sents = [
        "Once upon a time, Tom had a kite.",
        "Tom went to the beach with Mia.",
        "\"Can I play with your kite?\" asked Mia.",
        "They played at the beach all day.",
        "Tom and Mia were happy friends.",
    ];
    let text = format!("{}  {}\n{}\n\n{} {}\n", sents[0], sents[1], sents[2], sents[3], sents[4]);
    std::fs::write(&input, &text).unwrap();
    let edit = |range: &str, seed: &str| -> Value {
        serde_json::from_str(&run_ok(&[
            "edit",
            "--checkpoint",
            s(full),
            "--input",
            s(&input),
            "--rewrite",
            range,
            "--seed",
            seed,
            "--json",
            "--device",
            "cpu",
        ]))
        .unwrap()
    };
    let e = edit("2..3", "1");
    let out = e["text"].as_str().unwrap();
    let start = text.find(sents[1]).unwrap();
    let end = text.find(sents[2]).unwrap() + sents[2].len();
    assert!(out.starts_with(&text[..start]), "bytes before sentence 2 changed:\n{out}");
    assert!(out.ends_with(&text[end..]), "bytes after sentence 3 changed:\n{out}");
    let rw = e["rewritten"].as_array().unwrap();
    assert_eq!(rw.len(), 2);
    assert_eq!(rw[0]["sentence"], 2);
    assert_eq!(rw[0]["before"], sents[1]);
    assert!(rw.iter().all(|r| !r["after"].as_str().unwrap().trim().is_empty()));
    let middle = &out[start..out.len() - (text.len() - end)];
    assert_eq!(middle, format!("{} {}", rw[0]["after"].as_str().unwrap(), rw[1]["after"].as_str().unwrap()));
    // Seeded.
    assert_eq!(edit("2..3", "1")["text"], e["text"]);
    // The first and the last sentence can be rewritten too.
    for (range, idx) in [("1", 0usize), ("5..5", 4)] {
        let e = edit(range, "2");
        let out = e["text"].as_str().unwrap();
        let s0 = text.find(sents[idx]).unwrap();
        let s1 = s0 + sents[idx].len();
        assert!(out.starts_with(&text[..s0]) && out.ends_with(&text[s1..]), "{range}: {out}");
    }
}

#[test]
fn planner_and_edit_errors_are_one_line() {
    let f = fixture();
    let (ae, full) = bundles();
    let one_line = |o: &std::process::Output, want: &str| {
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "expected failure for {want}");
        assert!(err.contains(want), "stderr lacks {want:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
        assert_eq!(err.lines().filter(|l| l.starts_with("error")).count(), 1, "{err}");
    };
    // Planner without an autoencoder.
    let dir = tempfile::tempdir().unwrap();
    one_line(&train("planner", &f.data, &dir.path().join("empty"), &[]), "train autoencoder");
    // Hybrid on a bundle without a planner.
    let o = run(&["generate", "--checkpoint", s(ae), "--mode", "hybrid", "--prompt", "Tom ran.", "--device", "cpu"]);
    one_line(&o, "plandiff train planner");
    // A planner paired with an autoencoder of another plan space (its normaliser fitted on
    // another corpus: here one statistic moved).
    let other = dir.path().join("other");
    copy_dir(full, &other);
    let cfg_path = other.join("autoencoder/config.json");
    let mut c: Value = serde_json::from_str(&std::fs::read_to_string(&cfg_path).unwrap()).unwrap();
    c["plan_space"]["mean"][0] = serde_json::json!(c["plan_space"]["mean"][0].as_f64().unwrap() + 0.01);
    std::fs::write(&cfg_path, c.to_string()).unwrap();
    let o =
        run(&["generate", "--checkpoint", s(&other), "--mode", "hybrid", "--prompt", "Tom ran.", "--device", "cpu"]);
    one_line(&o, "another plan space");
    // Edit ranges.
    let input = dir.path().join("t.txt");
    std::fs::write(&input, "Tom had a ball. Mia ran. They smiled.").unwrap();
    for (range, want) in
        [("0..2", "outside"), ("2..9", "outside"), ("3..2", "outside"), ("a..b", "not a sentence range")]
    {
        let o = run(&["edit", "--checkpoint", s(full), "--input", s(&input), "--rewrite", range, "--device", "cpu"]);
        one_line(&o, want);
    }
    let empty = dir.path().join("empty.txt");
    std::fs::write(&empty, "  \n").unwrap();
    let o = run(&["edit", "--checkpoint", s(full), "--input", s(&empty), "--rewrite", "1", "--device", "cpu"]);
    one_line(&o, "empty");
    let o = run(&[
        "generate",
        "--checkpoint",
        s(full),
        "--mode",
        "hybrid",
        "--prompt",
        "Tom ran.",
        "--eta",
        "3",
        "--device",
        "cpu",
    ]);
    one_line(&o, "eta");
    let o = run(&["generate", "--checkpoint", s(full), "--prompt", "Tom ran.", "--show-plan", "--device", "cpu"]);
    one_line(&o, "--mode hybrid");
    // Sentences longer than the decoder's context leave its sliding window's view (as the
    // oldest tokens leave plain AR's): hybrid writes on, and an edit after them works.
    let long = format!("Tom had a ball. {}far away.", "and the dog ran ".repeat(60));
    let o = run(&[
        "generate",
        "--checkpoint",
        s(full),
        "--mode",
        "hybrid",
        "--prompt",
        &long,
        "--sentences",
        "2",
        "--device",
        "cpu",
        "--json",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(v["samples"][0]["text"].as_str().unwrap().starts_with(&long));
    let long_file = dir.path().join("long.txt");
    std::fs::write(&long_file, format!("{long} Mia smiled. The end.")).unwrap();
    let o = run(&["edit", "--checkpoint", s(full), "--input", s(&long_file), "--rewrite", "3", "--device", "cpu"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).starts_with(&long));
}

#[test]
fn export_to_f16_keeps_the_bundle_usable() {
    let (_, full) = bundles();
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("shipped");
    let r: Value =
        serde_json::from_str(&run_ok(&["export", "--checkpoint", s(full), "--out", s(&out), "--json"])).unwrap();
    for st in r["stages"].as_array().unwrap() {
        let (before, after) = (st["bytes_before"].as_f64().unwrap(), st["bytes_after"].as_f64().unwrap());
        assert!(after < 0.6 * before, "{st}: fp16 storage roughly halves the weights");
    }
    assert!(!out.join("autoencoder/optimizer.safetensors").exists(), "no optimizer state is shipped");
    // The training corpus's word list (the invented-word check) travels with the models.
    let with_words = dir.path().join("with-words");
    copy_dir(full, &with_words);
    std::fs::write(with_words.join("words.txt"), "leo\nfox\n").unwrap();
    let words_out = dir.path().join("exported-words");
    run_ok(&["export", "--checkpoint", s(&with_words), "--out", s(&words_out)]);
    assert_eq!(std::fs::read_to_string(words_out.join("words.txt")).unwrap(), "leo\nfox\n");
    // Each exported config.json keeps its provenance, names the corpus and records the export.
    for stage in ["autoencoder", "planner"] {
        let cfg: Value =
            serde_json::from_str(&std::fs::read_to_string(out.join(stage).join("config.json")).unwrap()).unwrap();
        let p = &cfg["provenance"];
        assert!(p["steps"].as_u64().unwrap() > 0 && p["train"]["seed"].is_u64(), "{stage}: {p}");
        let corpus = p["corpus"].as_array().unwrap_or_else(|| panic!("{stage}: no corpus in {p}"));
        assert!(corpus[0].as_str().unwrap().ends_with(".txt"), "{stage}: {p}");
        assert_eq!(p["export"]["dtype"], "f16", "{stage}: {p}");
        assert_eq!(p["export"]["from"], s(full), "{stage}: {p}");
    }
    let ae: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("autoencoder/config.json")).unwrap()).unwrap();
    assert!(ae["provenance"]["plan"]["context_dropout"].is_f64(), "the plan settings are part of the provenance: {ae}");
    // Loading restores f32: the exported bundle evaluates like the original (fp16 rounding only).
    let ev = |b: &Path| -> f64 {
        let v: Value = serde_json::from_str(&run_ok(&[
            "eval",
            "--stage",
            "autoencoder",
            "--checkpoint",
            s(b),
            "--data",
            s(&f.data),
            "--json",
            "--device",
            "cpu",
        ]))
        .unwrap();
        v["result"]["ppl_oracle"].as_f64().unwrap()
    };
    let (a, b) = (ev(full), ev(&out));
    assert!((a - b).abs() < 0.01 * a, "oracle perplexity {a} vs exported {b}");
    // The planner still pairs with its (exported) autoencoder.
    let g: Value = serde_json::from_str(&run_ok(&[
        "generate",
        "--checkpoint",
        s(&out),
        "--mode",
        "hybrid",
        "--prompt",
        "Tom had a ball.",
        "--sentences",
        "2",
        "--json",
        "--device",
        "cpu",
    ]))
    .unwrap();
    assert_eq!(g["samples"][0]["sentences"].as_array().unwrap().len(), 2);
    // An exported bundle is not resumable, and export refuses to overwrite its source.
    let o = run(&["train", "autoencoder", "--data", s(&f.data), "--out", s(&out), "--resume", "--device", "cpu"]);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("nothing to resume"));
    let o = run(&["export", "--checkpoint", s(full), "--out", s(full)]);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("another folder"));
    let o = run(&["export", "--checkpoint", s(full), "--out", s(&out), "--dtype", "int8"]);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("--dtype"));
    // A second export into the same folder replaces the first whole: exporting the ar-only
    // fixture leaves no planner of the earlier export behind, and no staging folder.
    run_ok(&["export", "--checkpoint", s(&f.bundle), "--out", s(&out), "--dtype", "bf16"]);
    assert!(out.join("ar/config.json").exists() && !out.join("planner").exists() && !out.join("autoencoder").exists());
    assert!(!out.with_file_name(format!(".{}.staging", out.file_name().unwrap().to_string_lossy())).exists());
    let info: serde_json::Value = serde_json::from_str(&run_ok(&["info", "--checkpoint", s(&out), "--json"])).unwrap();
    assert_eq!(info["stages"]["ar"]["config"]["provenance"]["export"]["dtype"], "bf16");
}
