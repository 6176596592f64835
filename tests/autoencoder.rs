//! Stage `autoencoder` end to end: train, evaluate with the oracle and the null plan,
//! resume exactly, describe.

mod common;
use common::*;
use serde_json::Value;
use std::path::Path;

fn train_ae(data: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    let cfg = test_config();
    let mut args =
        vec!["train", "autoencoder", "--config", s(&cfg), "--data", s(data), "--out", s(out), "--device", "cpu"];
    args.extend_from_slice(extra);
    run(&args)
}

#[test]
fn trains_evaluates_and_resumes_exactly() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let full = dir.path().join("full");
    let parts = dir.path().join("parts");
    let o = train_ae(&f.data, &full, &["--max-steps", "16"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let listing = files(&full);
    for want in [
        "autoencoder/config.json",
        "autoencoder/model.safetensors",
        "autoencoder/optimizer.safetensors",
        "logs/autoencoder-metrics.jsonl",
    ] {
        assert!(listing.iter().any(|p| p == want), "missing {want} in {listing:?}");
    }
    let cfg: Value =
        serde_json::from_str(&std::fs::read_to_string(full.join("autoencoder/config.json")).unwrap()).unwrap();
    assert_eq!(cfg["kind"], "autoencoder");
    assert!(cfg.get("encoder").is_none(), "no learned sentence encoder: {cfg}");
    assert_eq!(cfg["model"]["plan"]["d_latent"], 384, "plans are the frozen encoder's width");
    assert_eq!(cfg["model"]["plan"]["max_slots"], 4);

    // Validation during training logs both arms.
    let m = std::fs::read_to_string(full.join("logs/autoencoder-metrics.jsonl")).unwrap();
    let last_val: Value =
        m.lines().rfind(|l| l.contains("val_ppl_oracle")).map(|l| serde_json::from_str(l).unwrap()).unwrap();
    assert!(last_val["val_ppl_null"].as_f64().unwrap().is_finite());

    let v: Value = serde_json::from_str(&run_ok(&[
        "eval",
        "--stage",
        "autoencoder",
        "--checkpoint",
        s(&full),
        "--data",
        s(&f.data),
        "--json",
    ]))
    .unwrap();
    let r = &v["result"];
    let (po, pn) = (r["ppl_oracle"].as_f64().unwrap(), r["ppl_null"].as_f64().unwrap());
    assert!(po.is_finite() && pn.is_finite() && po > 1.0 && pn > 1.0, "{r}");
    assert!((r["ppl_ratio"].as_f64().unwrap() - po / pn).abs() < 1e-9);
    assert!(r["tokens"].as_i64().unwrap() > 100);
    let acc = r["accuracy_oracle"].as_f64().unwrap();
    // Exact range: a count over a count, which IEEE division cannot round past 1.
    assert!((0.0..=1.0).contains(&acc));

    // Stop at 7, resume to 16: same weights and optimizer state, bit for bit.
    assert!(train_ae(&f.data, &parts, &["--max-steps", "16", "--stop-at", "7"]).status.success());
    let o = train_ae(&f.data, &parts, &["--resume"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for name in ["autoencoder/model.safetensors", "autoencoder/optimizer.safetensors"] {
        assert!(
            std::fs::read(full.join(name)).unwrap() == std::fs::read(parts.join(name)).unwrap(),
            "{name} differs after resume"
        );
    }

    let info: Value = serde_json::from_str(&run_ok(&["info", "--checkpoint", s(&full), "--json"])).unwrap();
    assert!(info["stages"]["autoencoder"]["parameters"].as_u64().unwrap() > 1000);
}

#[test]
fn autoencoder_and_ar_share_one_bundle() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let b = dir.path().join("bundle");
    copy_dir(&f.bundle, &b);
    let o = train_ae(&f.data, &b, &["--max-steps", "3"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let info: Value = serde_json::from_str(&run_ok(&["info", "--checkpoint", s(&b), "--json"])).unwrap();
    assert!(info["stages"]["ar"].is_object() && info["stages"]["autoencoder"].is_object());
    // A bad stage name is one clean error.
    let o = run(&["eval", "--stage", "planer", "--checkpoint", s(&b), "--data", s(&f.data)]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("--stage planer"));
}

#[test]
fn word_dropout_changes_what_the_decoder_sees() {
    // Same seed, data and initial weights; only [autoencoder.plan] word_dropout differs
    // (its draw comes after every other draw of the step), so the first step's loss differs
    // exactly when the dropout is applied.
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let cfg = std::fs::read_to_string(test_config()).unwrap();
    assert!(cfg.contains("word_dropout = 0.2"));
    let loss = |run_name: &str, word_dropout: &str| -> f64 {
        let c = dir.path().join(format!("{run_name}.toml"));
        std::fs::write(&c, cfg.replace("word_dropout = 0.2", &format!("word_dropout = {word_dropout}"))).unwrap();
        first_step(&c, &f.data, &dir.path().join(run_name))["last_train_loss"].as_f64().unwrap()
    };
    let (off, again, on) = (loss("off", "0.0"), loss("again", "0.0"), loss("on", "0.5"));
    assert_eq!(off, again, "the first step is deterministic");
    assert_ne!(off, on, "word dropout 0.5 left the inputs unchanged");
    // A rate of 1 would leave no input at all: a one-line config error.
    let c = dir.path().join("wd1.toml");
    std::fs::write(&c, cfg.replace("word_dropout = 0.2", "word_dropout = 1.0")).unwrap();
    let o = run(&["train", "autoencoder", "--config", s(&c), "--data", s(&f.data), "--out", s(&dir.path().join("x"))]);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("word_dropout"));
}

#[test]
fn bow_weight_adds_the_bag_of_words_loss() {
    // Same seed, data and draws (the bag-of-words term draws nothing); the first step's loss
    // grows by bow_weight times the bag-of-words loss (about ln V at the start).
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let cfg = std::fs::read_to_string(test_config()).unwrap();
    let with = |w: &str| cfg.replace("word_dropout = 0.2", &format!("word_dropout = 0.2\nbow_weight = {w}"));
    let loss = |run_name: &str, w: &str| -> f64 {
        let c = dir.path().join(format!("{run_name}.toml"));
        std::fs::write(&c, with(w)).unwrap();
        let st = first_step(&c, &f.data, &dir.path().join(run_name));
        assert_eq!(st["plan"]["bow_weight"].as_f64(), w.parse::<f64>().ok(), "{st}");
        st["last_train_loss"].as_f64().unwrap()
    };
    let (off, on) = (loss("off", "0.0"), loss("on", "1.0"));
    assert!(on > off + 1.0, "bow_weight 1 changed the first loss from {off} to {on} only");
    let bad_noise = |v: &str| cfg.replace("latent_noise_max = 0.1", &format!("latent_noise_max = {v}"));
    assert!(cfg.contains("latent_noise_max = 0.1"));
    let cases = [("bow_weight", with("-1.0")), ("bow_weight", with("1000.0")), ("bow_weight", with("nan"))];
    let noise = [("latent_noise_max", bad_noise("nan")), ("latent_noise_max", bad_noise("inf"))];
    for (field, text) in cases.into_iter().chain(noise) {
        let bad = format!("{field}: {}", text.lines().find(|l| l.starts_with(field)).unwrap());
        let c = dir.path().join("bad.toml");
        std::fs::write(&c, &text).unwrap();
        let o =
            run(&["train", "autoencoder", "--config", s(&c), "--data", s(&f.data), "--out", s(&dir.path().join("x"))]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{bad}: {err}");
        assert!(err.contains(field) && err.trim().lines().count() == 1, "{bad}: {err}");
    }
}

#[test]
fn init_from_ar_starts_the_decoder_from_the_ar_model() {
    // The fixture's ar model has the autoencoder decoder's architecture; starting from it,
    // the first step's loss is far below a fresh decoder's (same seed, data and draws).
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let cfg = std::fs::read_to_string(test_config()).unwrap();
    let warm = dir.path().join("warm.toml");
    std::fs::write(&warm, cfg.replace("word_dropout = 0.2", "word_dropout = 0.2\ninit_from_ar = true")).unwrap();
    let first_loss = |config: &Path, name: &str| -> f64 {
        let b = dir.path().join(name);
        copy_dir(&f.bundle, &b);
        let st = first_step(config, &f.data, &b);
        assert_eq!(st["plan"]["init_from_ar"], name == "warm", "{st}");
        st["last_train_loss"].as_f64().unwrap()
    };
    let (cold, warm_loss) = (first_loss(&test_config(), "cold"), first_loss(&warm, "warm"));
    assert!(warm_loss < cold - 0.5, "first-step loss from the ar model {warm_loss} vs fresh {cold}");
    // Without an ar model in the bundle: one line naming the setting and the fix.
    let o = run(&[
        "train",
        "autoencoder",
        "--config",
        s(&warm),
        "--data",
        s(&f.data),
        "--out",
        s(&dir.path().join("empty")),
    ]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("init_from_ar") && err.contains("train `ar`") && err.trim().lines().count() == 1, "{err}");
}

/// Trains one autoencoder step into `out`; its trainer_state.json.
fn first_step(config: &Path, data: &Path, out: &Path) -> Value {
    let o = run(&[
        "train",
        "autoencoder",
        "--config",
        s(config),
        "--data",
        s(data),
        "--out",
        s(out),
        "--max-steps",
        "1",
        "--device",
        "cpu",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_str(&std::fs::read_to_string(out.join("autoencoder/trainer_state.json")).unwrap()).unwrap()
}

/// The one plan space: the decoder trains on the frozen sentence encoder's cached embeddings
/// (built by the run itself, then reused by `plandiff embed`), the bundle records the plan space
/// and `eval` reads plans through it (another encoder's is refused in one line), the planner
/// trains on the same latents, and a config asking for the removed learned encoder is refused
/// before training.
#[test]
fn plans_train_from_the_corpus_cache() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    copy_dir(&f.data, &data);
    let frozen = std::fs::read_to_string(test_config()).unwrap();
    let cfg = dir.path().join("frozen.toml");
    std::fs::write(&cfg, &frozen).unwrap();
    let out = dir.path().join("b");
    let o =
        run(&["train", "autoencoder", "--config", s(&cfg), "--data", s(&data), "--out", s(&out), "--max-steps", "4"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let m = std::fs::read_to_string(out.join("logs/autoencoder-metrics.jsonl")).unwrap();
    assert!(m.lines().any(|l| l.contains("val_acc_oracle")), "{m}");
    let cached: Vec<String> = files(&data.join("embeddings"));
    assert!(cached.iter().any(|f| f.starts_with("train-") && f.ends_with(".safetensors")), "{cached:?}");
    let again: Value =
        serde_json::from_str(&run_ok(&["embed", "--data", s(&data), "--split", "train", "--json"])).unwrap();
    assert!(again["sentences"].as_u64().unwrap() > 10, "{again}");
    // The bundle records its plan space (the encoder's name and hashes, the normaliser) and
    // `eval` reads its plans through it.
    let cfg_path = out.join("autoencoder/config.json");
    let c: Value = serde_json::from_str(&std::fs::read_to_string(&cfg_path).unwrap()).unwrap();
    assert_eq!(c["plan_space"]["encoder"]["name"], "sentence-transformers/all-MiniLM-L6-v2");
    assert_eq!(c["plan_space"]["mean"].as_array().unwrap().len(), 384);
    let eval = |stage: &str| -> Value {
        let args =
            ["eval", "--stage", stage, "--checkpoint", s(&out), "--data", s(&data), "--split", "train", "--json"];
        serde_json::from_str(&run_ok(&args)).unwrap()
    };
    let v = eval("autoencoder");
    assert!(v["result"]["ppl_oracle"].as_f64().unwrap().is_finite(), "{v}");
    // The planner trains on the same frozen latents (d_latent 384) and is evaluated on them.
    let o = run(&["train", "planner", "--config", s(&cfg), "--data", s(&data), "--out", s(&out), "--max-steps", "3"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let p: Value = serde_json::from_str(&std::fs::read_to_string(out.join("planner/config.json")).unwrap()).unwrap();
    assert_eq!(p["model"]["denoiser"]["d_latent"], 384, "{}", p["model"]);
    let v = eval("planner");
    assert!(v["result"]["cosine_sampled"].as_f64().unwrap().is_finite(), "{v}");
    // Hybrid mode writes in the frozen space: the prompt and every written sentence are
    // encoded by the frozen encoder, the planner fills the rest.
    let hybrid = |out: &Path| {
        run(&[
            "generate",
            "--checkpoint",
            s(out),
            "--mode",
            "hybrid",
            "--prompt",
            "tom had a ball.",
            "--sentences",
            "3",
        ])
    };
    let g = hybrid(&out);
    assert!(g.status.success(), "{}", String::from_utf8_lossy(&g.stderr));
    assert!(String::from_utf8_lossy(&g.stdout).starts_with("tom had a ball."));
    // A decoder retrained in the same plan space keeps its planner: the planner records the
    // space (encoder and normaliser), not the decoder's weights.
    let re = dir.path().join("re");
    copy_dir(&out, &re);
    let o = run(&[
        "train",
        "autoencoder",
        "--config",
        s(&cfg),
        "--data",
        s(&data),
        "--out",
        s(&re.join("x")),
        "--max-steps",
        "2",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    std::fs::remove_dir_all(re.join("autoencoder")).unwrap();
    std::fs::rename(re.join("x/autoencoder"), re.join("autoencoder")).unwrap();
    assert_ne!(
        std::fs::read(re.join("autoencoder/model.safetensors")).unwrap(),
        std::fs::read(out.join("autoencoder/model.safetensors")).unwrap()
    );
    let g = hybrid(&re);
    assert!(g.status.success(), "{}", String::from_utf8_lossy(&g.stderr));
    // A bundle whose plan space another encoder made: one line naming the fix.
    let sha = c["plan_space"]["encoder"]["weights_sha256"].as_str().unwrap().to_string();
    std::fs::write(&cfg_path, std::fs::read_to_string(&cfg_path).unwrap().replace(&sha, &"0".repeat(64))).unwrap();
    let e = run(&["eval", "--stage", "autoencoder", "--checkpoint", s(&out), "--data", s(&data), "--split", "train"]);
    let err = String::from_utf8_lossy(&e.stderr);
    assert!(!e.status.success() && err.contains("make venv") && err.trim().lines().count() == 1, "{err}");
    let g = hybrid(&out);
    let err = String::from_utf8_lossy(&g.stderr);
    assert!(!g.status.success() && err.contains("make venv") && err.trim().lines().count() == 1, "{err}");
    // Configs of the removed learned encoder: one line each, naming the fix.
    let bad = dir.path().join("bad.toml");
    for (old, why) in [
        ("[autoencoder.plan]", "frozen_encoder = false"),
        ("[autoencoder.decoder]", "[autoencoder.encoder]\nd_model = 32\n\n[autoencoder.decoder]"),
    ] {
        let text = if why.starts_with("frozen") {
            frozen.replace(old, &format!("{old}\n{why}"))
        } else {
            frozen.replacen(old, why, 1)
        };
        std::fs::write(&bad, text).unwrap();
        let o =
            run(&["train", "autoencoder", "--config", s(&bad), "--data", s(&data), "--out", s(&dir.path().join("c"))]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && err.trim().lines().count() == 1, "{why}: {err}");
        assert!(err.contains("removed in issue 39"), "{why}: {err}");
        assert!(!dir.path().join("c/autoencoder").exists(), "{why}: nothing trained");
    }
}

/// `[autoencoder.plan.distill]`: a student started from its teacher, distilling the teacher's
/// plain sampler (plan guidance 1, no prior), has a first KL of zero (the teacher reads the
/// same text and plan, its own null plan in the empty slots); distilling the levers (guidance
/// 0.5 toward the null plan, the `ar` prior at 0.5) starts above zero and falls as it trains.
#[test]
fn distill_learns_the_teachers_sampler() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let teacher = dir.path().join("teacher");
    copy_dir(&f.bundle, &teacher);
    let o = train_ae(&f.data, &teacher, &["--max-steps", "10"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // A teacher from before issue 39 also holds the removed sentence encoder's tensors: loading
    // it, and starting from it, skip them (the zero first KL below shows nothing else changed).
    let weights = teacher.join("autoencoder/model.safetensors");
    let mut w = tch::Tensor::read_safetensors(&weights).unwrap();
    w.push(("encoder.norm_f.bias".into(), tch::Tensor::zeros([64], (tch::Kind::Float, tch::Device::Cpu))));
    tch::Tensor::write_safetensors(&w, &weights).unwrap();
    let cfg = std::fs::read_to_string(test_config()).unwrap();
    assert!(cfg.contains("context_dropout = 0.3\nword_dropout = 0.2"));
    let distill = |guidance: f64, prior: f64| {
        let t = teacher.display().to_string().replace('\\', "/");
        cfg.replace(
            "context_dropout = 0.3\nword_dropout = 0.2",
            &format!(
                "context_dropout = 0.0\ninit_from = \"{t}\"\n\n[autoencoder.plan.distill]\nteacher = \"{t}\"\nplan_guidance = {guidance}\nar_prior = {prior}"
            ),
        )
    };
    let losses = |name: &str, text: String, steps: &str| -> Vec<f64> {
        let c = dir.path().join(format!("{name}.toml"));
        std::fs::write(&c, text).unwrap();
        let out = dir.path().join(name);
        let o = run(&[
            "train",
            "autoencoder",
            "--config",
            s(&c),
            "--data",
            s(&f.data),
            "--out",
            s(&out),
            "--max-steps",
            steps,
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let m = std::fs::read_to_string(out.join("logs/autoencoder-metrics.jsonl")).unwrap();
        m.lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter_map(|v| v.get("loss").and_then(Value::as_f64))
            .collect()
    };
    let same = losses("same", distill(1.0, 0.0), "1");
    assert!(same[0].abs() < 1e-4, "KL of the teacher's own sampler at the start: {same:?}");
    let levers = losses("levers", distill(0.5, 0.5), "20");
    let (first, last) = (levers[0], *levers.last().unwrap());
    assert!(first > 1e-2, "the levers change the teacher's distribution: first KL {first}");
    assert!(last < first * 0.8, "the KL falls as the student learns: {levers:?}");
    // A student with cross-attention in the last block only (`cross_blocks`, issue 39's
    // speed): it starts from the teacher's weights less the dropped block's cross-attention.
    // Its first KL is above 0 (that block no longer reads the plan) and far below a fresh
    // decoder's (every other weight was copied).
    let one = distill(1.0, 0.0).replace(
        "norm = \"layer\"\n\n[autoencoder.decoder.rotary]",
        "norm = \"layer\"\ncross_blocks = [1]\n\n[autoencoder.decoder.rotary]",
    );
    assert!(one.contains("cross_blocks = [1]"), "the test config's decoder section moved");
    let kl = losses("one-block", one.clone(), "5");
    assert!(kl[0] > 1e-6 && kl[0] < 1e-2, "first KL of the student without block 0's cross-attention: {kl:?}");
    let st: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("one-block/autoencoder/config.json")).unwrap())
            .unwrap();
    assert_eq!(st["model"]["cross_blocks"], serde_json::json!([1]), "{st}");
    // Cross-attention the start does not have cannot be copied from it: refused in one line.
    let start = dir.path().join("one-block").display().to_string().replace('\\', "/");
    let t = teacher.display().to_string().replace('\\', "/");
    let wider = dir.path().join("wider.toml");
    std::fs::write(
        &wider,
        one.replace("cross_blocks = [1]", "cross_blocks = [0, 1]").replacen(
            &format!("init_from = \"{t}\""),
            &format!("init_from = \"{start}\""),
            1,
        ),
    )
    .unwrap();
    let o =
        run(&["train", "autoencoder", "--config", s(&wider), "--data", s(&f.data), "--out", s(&dir.path().join("w"))]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("init_from") && err.contains("cross-attention in blocks [1]") && err.trim().lines().count() == 1,
        "{err}"
    );
    // The student must read what the decoder reads when it writes: dropout is refused.
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, distill(1.0, 0.0).replace("context_dropout = 0.0", "context_dropout = 0.3")).unwrap();
    let o =
        run(&["train", "autoencoder", "--config", s(&bad), "--data", s(&f.data), "--out", s(&dir.path().join("x"))]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("distill") && err.contains("context_dropout") && err.trim().lines().count() == 1, "{err}");
}
