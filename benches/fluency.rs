//! The fluency judge's speed (issue 38's target: 400 samples of about 150 tokens judged within
//! 2 minutes on 2 cores): SmolLM2-135M from its GGUF, perplexities of continuations given
//! their prompts, batched by length, one forward per sample, no generation. Prints a table.
//!
//!     cargo bench --bench fluency -- --threads 2 --samples 400 --tokens 150

mod common;
use plandiff_fluency::{find_judge, FluencyJudge};
use std::time::Instant;

fn main() {
    let threads = common::arg("--threads", 2);
    let samples = common::arg("--samples", 400);
    let tokens = common::arg("--tokens", 150);
    tch::set_num_threads(threads as i32);
    let path = find_judge(None).expect("the fluency judge (make judge-smollm)");
    let t0 = Instant::now();
    let judge = FluencyJudge::load(&path, tch::Device::Cpu).expect("load");
    let load = t0.elapsed().as_secs_f64();
    let words = [
        "the", "little", "fox", "ran", "to", "the", "river", "and", "saw", "a", "big", "fish.", "she", "was", "happy",
        "and", "played", "all", "day.", "then", "her", "mom", "called", "her", "home.",
    ];
    let prompt = "once upon a time, there was a little fox named leo. he lived near a big forest.";
    // Continuations of about `tokens` tokens (one word is about one token here), of
    // slightly different lengths, as an A/B's samples are.
    let conts: Vec<String> = (0..samples)
        .map(|i| (0..tokens + i % 17).map(|k| words[(k * 7 + i) % words.len()]).collect::<Vec<_>>().join(" "))
        .collect();
    let pairs: Vec<(&str, &str)> = conts.iter().map(|c| (prompt, c.as_str())).collect();
    let scored: usize = conts.iter().map(|c| judge.tokenize(&format!(" {c}")).map(|v| v.len()).unwrap_or(0)).sum();
    let t1 = Instant::now();
    let ppl = judge.perplexities(&pairs).expect("judge");
    let secs = t1.elapsed().as_secs_f64();
    assert!(ppl.iter().all(|p| p.is_finite()));
    println!("| samples | scored tokens (mean) | threads | load s | judge s | samples/s | target |");
    println!("|---:|---:|---:|---:|---:|---:|---|");
    println!(
        "| {samples} | {:.0} | {threads} | {load:.1} | {secs:.1} | {:.2} | {} |",
        scored as f64 / samples as f64,
        samples as f64 / secs,
        if samples == 400 && secs <= 120.0 { "met (<= 120 s)" } else { "-" }
    );
}
