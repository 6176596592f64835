//! The hybrid loop at the model level: tiny random-weight models built in memory (no bundle,
//! no CLI), a decoder whose output head is pinned so that every sentence is one known word
//! (its text then says exactly which windows ran), for both ways of writing windows (re-read,
//! sliding), with an outline, and with token budgets that run out at and between windows.

use super::steps::Timing;
use super::{HybridGenerator, HybridSettings};
use crate::mode::{GenOptions, GenRequest, Generator, Given};
use plandiff_bundle::{Autoencoder, PlanEncoder};
use plandiff_data::TextTokenizer;
use plandiff_decoder::{DecoderConfig, PlanConfig, RotaryConfig, SamplingConfig, StopReason};
use plandiff_diffusion::{SamplerKind, ScheduleConfig};
use plandiff_layers::TransformerShape;
use plandiff_planner::{DenoiserConfig, HostNoise, PlanSampling, Planner};
use tch::{nn, Device, Kind};

const PROMPT: &str = "the dog ran. the cat sat.";

/// A generator of tiny random models whose decoder writes `<word> <sep>` for every sentence
/// whatever it reads: its final norm outputs a constant (`<sep>`'s scaled embedding), so the
/// logits favour `<sep>`, then `word` where `<sep>` may not stand (a sentence's start).
fn generator(rotary: bool) -> (HybridGenerator, String) {
    tch::manual_seed(5);
    let texts = ["the dog ran to the park.", "the cat sat on a mat.", "a bird sang in the tree."];
    let tokenizer = TextTokenizer::train(texts.iter().cycle().take(60), 300, true).unwrap();
    let v = tokenizer.vocab_size() as i64;
    let (sep, word) = (tokenizer.special().sep as i64, *tokenizer.encode(" dog").unwrap().last().unwrap() as i64);
    // Plans are the installed all-MiniLM-L6-v2's embeddings (384 wide) in a unit space.
    let encoder = plandiff_sentence::SentenceEncoder::load(
        &plandiff_sentence::find_encoder(None).expect("all-MiniLM-L6-v2 is installed (make venv)"),
        Device::Cpu,
    )
    .unwrap();
    let d = encoder.width();
    let space = plandiff_sentence::PlanSpace {
        encoder: encoder.id().unwrap(),
        mean: vec![0.0; d as usize],
        std: vec![1.0; d as usize],
    };
    let plan_enc = PlanEncoder::new(encoder, space).unwrap();
    let mut dec = DecoderConfig::test(v, Some(PlanConfig { d_latent: d, max_slots: 4 }));
    if rotary {
        dec.rotary = Some(RotaryConfig { base: 10000.0, window: 2, lookahead: 1 });
    }
    let vs_ae = nn::VarStore::new(Device::Cpu);
    let ae = Autoencoder::new(&vs_ae.root(), &dec).unwrap();
    tch::no_grad(|| {
        let vars = vs_ae.variables();
        let wte = &vars["decoder.wte.weight"];
        let pin = wte.get(sep) * 10.0;
        wte.get(sep).copy_(&pin);
        wte.get(word).copy_(&(&pin * 0.5));
        let _ = vars["decoder.norm_f.weight"].shallow_clone().zero_();
        vars["decoder.norm_f.bias"].shallow_clone().copy_(&pin);
    });
    let vs_pl = nn::VarStore::new(Device::Cpu);
    let den = DenoiserConfig { d_latent: d, max_slots: 6, shape: TransformerShape::test(), self_condition: false };
    let sampling = PlanSampling { steps: 4, sampler: SamplerKind::Ddim, eta: 0.0, guidance: 1.0 };
    let planner = Planner::new(&vs_pl.root(), &den, ScheduleConfig::default(), sampling).unwrap();
    let word = tokenizer.decode(&[word as u32]).unwrap().trim().to_string();
    let g = HybridGenerator {
        ae,
        planner,
        tokenizer,
        device: Device::Cpu,
        plan_enc,
        ar: None,
        defaults: plandiff_bundle::HybridDefaults::default(),
        lexicon: None,
        bank: std::sync::Mutex::new(None),
        _vs: (vs_ae, vs_pl),
    };
    (g, word)
}

fn options(sentences: usize, max_tokens: usize) -> GenOptions {
    let greedy = SamplingConfig::greedy();
    GenOptions { max_tokens, sentences: Some(sentences), sampling: greedy, seed: 3, no_eos: true, stream: false }
}

fn planner_calls(g: &crate::mode::Generation) -> usize {
    match &g.detail {
        Some(crate::mode::Detail::Plan { planner_calls, .. }) => *planner_calls,
        _ => panic!("a hybrid generation reports its plan"),
    }
}

/// Every window writes its sentences: 2 prompt sentences + 7, a decoder of 4 slots and a
/// planner of 6 take windows ending at 4, 5, .., 9 and two planner calls (2..6, then 6..9);
/// re-reading and sliding write the same text (the pinned head reads nothing), every sample.
#[test]
fn windows_and_slides_write_every_planned_sentence() {
    let mut texts = Vec::new();
    for rotary in [false, true] {
        let (g, word) = generator(rotary);
        let req = GenRequest::new(PROMPT, 2, options(7, 500));
        let out = g.generate(&req, &mut |_| {}).unwrap();
        assert_eq!(out.len(), 2);
        for s in &out {
            assert_eq!(s.stop, Some(StopReason::Sentences), "rotary {rotary}");
            assert!(s.sentences.len() == 7 && s.sentences.iter().all(|x| *x == word), "rotary {rotary}: {s:?}");
            assert_eq!(planner_calls(s), 2, "rotary {rotary}");
            assert_eq!(s.new_tokens, 14, "a word and a <sep> per sentence");
        }
        texts.push(out[0].text.clone());
    }
    assert_eq!(texts[0], texts[1]);
}

/// An outline's lines are the plan's slots at their sentences (held for every step, so the
/// very latent of the line), its free slots are planned, and the text has one sentence a line.
#[test]
fn an_outline_fixes_its_slots_and_the_planner_fills_the_rest() {
    let (g, _) = generator(false);
    let lines = vec![Some("the bird sang.".to_string()), None, Some("the dog sat.".to_string())];
    let levers = HybridSettings::default();
    let req = GenRequest::new(PROMPT, 2, options(3, 500)).with(&levers).given(Given::Outline(&lines));
    let job = g.check(&req).unwrap();
    assert_eq!(job.want, 3);
    let mut text = g.start_text(PROMPT, 2, &job).unwrap();
    let win = g.window(2, text.total, &job);
    let mut noise = HostNoise::new(1, Device::Cpu);
    g.plan_missing(&mut text, win, &job, &mut noise, &mut Timing::default()).unwrap();
    let fixed = g.encode_text(&["the bird sang.", "the dog sat."]).unwrap();
    for r in &text.rows {
        let at = |i: usize| r.planned[i].as_ref().expect("planned").to_kind(Kind::Float);
        assert!(at(2).equal(&fixed.get(0)) && at(4).equal(&fixed.get(1)), "the lines are the slots");
        assert!(!at(3).equal(&fixed.get(0)) && at(3).size() == vec![384], "the free slot is planned");
    }
    let out = g.generate(&req, &mut |_| {}).unwrap();
    assert!(out.iter().all(|s| s.sentences.len() == 3 && s.stop == Some(StopReason::Sentences)));
}

/// A budget that ends inside a window stops the rows there; one that ends exactly at a
/// window's end stops them before the next window (no empty window is decoded), for both
/// ways of writing windows.
#[test]
fn token_budgets_stop_the_loop_inside_and_between_windows() {
    for rotary in [false, true] {
        let (g, _) = generator(rotary);
        // 3 tokens: the first window (2 sentences, 4 tokens) stops inside its second sentence.
        let out = g.generate(&GenRequest::new(PROMPT, 2, options(7, 3)), &mut |_| {}).unwrap();
        assert!(out.iter().all(|s| s.stop == Some(StopReason::MaxTokens) && s.new_tokens == 3), "{out:?}");
        // 4 tokens: the first window ends its sentences on its last token; the next has none.
        let out = g.generate(&GenRequest::new(PROMPT, 2, options(7, 4)), &mut |_| {}).unwrap();
        for s in &out {
            assert_eq!((s.stop, s.new_tokens, s.sentences.len()), (Some(StopReason::MaxTokens), 4, 2), "{rotary}");
        }
    }
    // A request for another mode's settings is refused, not silently defaulted.
    let (g, _) = generator(false);
    let other = crate::masked::MaskedSettings::default();
    let e = g.generate(&GenRequest::new(PROMPT, 1, options(2, 50)).with(&other), &mut |_| {}).unwrap_err();
    assert!(e.to_string().contains("another mode's settings"), "{e}");
}

/// Verified drafts write the same sentences as one draft when every draft is the same (the
/// pinned head), through the sliding session's kept rows, with the budget still counted per
/// sample; a decoder that re-reads its windows refuses them.
#[test]
fn drafts_keep_one_draft_per_sample_and_go_on_from_it() {
    let (g, word) = generator(true);
    let one = g.generate(&GenRequest::new(PROMPT, 2, options(7, 500)), &mut |_| {}).unwrap();
    let levers = HybridSettings { drafts: Some(3), ..HybridSettings::default() };
    let req = GenRequest::new(PROMPT, 2, options(7, 500)).with(&levers);
    let three = g.generate(&req, &mut |_| {}).unwrap();
    assert_eq!(three.len(), 2);
    for (a, b) in one.iter().zip(&three) {
        assert_eq!(a.text, b.text);
        assert!(b.sentences.len() == 7 && b.sentences.iter().all(|x| *x == word), "{b:?}");
        assert_eq!(b.stop, Some(StopReason::Sentences));
    }
    let capped = g.generate(&GenRequest::new(PROMPT, 2, options(7, 5)).with(&levers), &mut |_| {}).unwrap();
    assert!(capped.iter().all(|s| s.new_tokens <= 5 && s.stop == Some(StopReason::MaxTokens)), "{capped:?}");
    let (g, _) = generator(false);
    let e = g.generate(&req, &mut |_| {}).unwrap_err();
    assert!(e.to_string().contains("--drafts needs a plan decoder with relative"), "{e}");
}

/// `--plan-snap 1` puts every planned slot onto a sentence of the bank (the plan space here is
/// the unit one, so a bank row's latent is its embedding); without a bank it is refused.
#[test]
fn a_full_snap_plans_bank_sentences_only() {
    let (g, _) = generator(true);
    let dir = tempfile::tempdir().unwrap();
    let bank_path = dir.path().join("bank.safetensors");
    let bank = g.plan_enc.encode_texts(&["the cat ran home.", "a bird sat on the tree.", "it rained."], Device::Cpu);
    let bank = bank.unwrap();
    tch::Tensor::write_safetensors(&[("embeddings", &bank)], &bank_path).unwrap();
    let steer = super::PlanSteering { plan_snap: Some(1.0), plan_bank: Some(bank_path), ..Default::default() };
    let levers = HybridSettings { steer, ..HybridSettings::default() };
    let req = GenRequest::new(PROMPT, 2, options(3, 500)).with(&levers);
    let job = g.check(&req).unwrap();
    let mut text = g.start_text(PROMPT, 2, &job).unwrap();
    let win = g.window(2, text.total, &job);
    let mut noise = HostNoise::new(1, Device::Cpu);
    g.plan_missing(&mut text, win, &job, &mut noise, &mut Timing::default()).unwrap();
    for r in &text.rows {
        for z in r.planned[2..].iter().flatten() {
            let d =
                (bank.to_kind(Kind::Float) - z.to_kind(Kind::Float).unsqueeze(0)).abs().amax([1i64].as_slice(), false);
            assert!(d.min().double_value(&[]) < 1e-4, "a planned slot is a bank sentence");
        }
    }
    let steer = super::PlanSteering { plan_snap: Some(1.0), ..Default::default() };
    let no_bank = HybridSettings { steer, ..HybridSettings::default() };
    let err = g.check(&GenRequest::new(PROMPT, 2, options(3, 500)).with(&no_bank)).err().expect("no bank");
    assert!(err.to_string().contains("--plan-bank"), "{err}");
}

/// `--plan-norm 1` plans every slot at the space's sentence norm sqrt(D); without it the same
/// seed plans other norms (the lever reaches the plan).
#[test]
fn a_full_norm_match_plans_slots_at_the_sentences_norm() {
    let (g, _) = generator(true);
    let plan = |norm: Option<f64>| {
        let steer = super::PlanSteering { plan_norm: norm, ..Default::default() };
        let levers = HybridSettings { steer, ..HybridSettings::default() };
        let job = g.check(&GenRequest::new(PROMPT, 2, options(3, 500)).with(&levers)).unwrap();
        let mut text = g.start_text(PROMPT, 2, &job).unwrap();
        let win = g.window(2, text.total, &job);
        let mut noise = HostNoise::new(1, Device::Cpu);
        g.plan_missing(&mut text, win, &job, &mut noise, &mut Timing::default()).unwrap();
        let norms: Vec<f64> = text
            .rows
            .iter()
            .flat_map(|r| r.planned[2..].iter().flatten().map(|z| z.to_kind(Kind::Float).norm().double_value(&[])))
            .collect();
        assert!(!norms.is_empty());
        norms
    };
    let target = (g.planner.d_latent() as f64).sqrt();
    assert!(plan(Some(1.0)).iter().all(|n| (n - target).abs() < 1e-3 * target), "{:?}", plan(Some(1.0)));
    assert!(plan(None).iter().any(|n| (n - target).abs() > 1e-2 * target), "the plain planner's norms differ");
}

/// The n-gram penalty leaves an outline's lines' n-grams alone, as it does the prompt's: with
/// every repeat of a word banned (unigrams, an infinite penalty), the pinned decoder's word
/// comes once and then never again, unless a line of the outline says it.
#[test]
fn the_ngram_penalty_exempts_the_outline_lines() {
    let (g, word) = generator(false);
    let mut opts = options(3, 30);
    opts.sampling.ngram =
        Some(plandiff_decoder::NgramPenalty { size: 1, penalty: f64::INFINITY, allow: 0, grow: false });
    let prompt = "the cat sat. a bird sang.";
    let free = g.generate(&GenRequest::new(prompt, 1, opts.clone()), &mut |_| {}).unwrap();
    let lines = vec![None, None, Some(format!("the {word} sat."))];
    let levers = HybridSettings::default();
    let req = GenRequest::new(prompt, 1, opts).with(&levers).given(Given::Outline(&lines));
    let outlined = g.generate(&req, &mut |_| {}).unwrap();
    assert_eq!(free[0].sentences.iter().filter(|s| **s == word).count(), 1, "{:?}", free[0].sentences);
    assert!(outlined[0].sentences.iter().all(|s| *s == word), "{:?}", outlined[0].sentences);
}

/// An outline takes the bundle's outline defaults (plan guidance, drafts); a sampled plan, and
/// the oracle arm's reference plan, take the others; a flag wins.
#[test]
fn an_outline_takes_the_outline_defaults() {
    let (mut g, _) = generator(true);
    let given = plandiff_bundle::OutlineDefaults { plan_guidance: 2.5, ar_prior: 0.0, drafts: Some(3) };
    g.defaults = plandiff_bundle::HybridDefaults { outline: Some(given), ..Default::default() };
    let lines = vec![Some("the bird sang.".to_string())];
    let (none, flag) = (HybridSettings::default(), HybridSettings { drafts: Some(2), ..HybridSettings::default() });
    let levers = |req: GenRequest| {
        let l = g.check(&req).unwrap().levers;
        (l.plan_guidance(), l.drafts())
    };
    let req = || GenRequest::new(PROMPT, 1, options(2, 500));
    assert_eq!(levers(req().with(&none)), (1.0, 1), "a sampled plan");
    assert_eq!(levers(req().with(&none).given(Given::Outline(&lines))), (2.5, 3), "an outline");
    assert_eq!(levers(req().with(&none).given(Given::Reference("the bird sang."))), (1.0, 1), "a reference");
    assert_eq!(levers(req().with(&flag).given(Given::Outline(&lines))), (2.5, 2), "a flag wins");
}
