//! Every metric of the A/B harness, in report order, with which way is better, whether it is
//! per sample (else per prompt) and what it means: the one list the aggregates, the paired
//! comparisons and the reports read.

use serde::Serialize;

/// Which way is better for a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Better {
    Lower,
    Higher,
    Neither,
}

/// Every metric, in report order: (name, better, per-sample (else per-prompt), meaning).
pub const METRICS: &[(&str, Better, bool, &str)] = &[
    ("tokens", Better::Neither, true, "new tokens"),
    ("sentences", Better::Neither, true, "new sentences"),
    ("rep_2", Better::Lower, true, "repeated bigrams within a sample"),
    ("rep_3", Better::Lower, true, "repeated trigrams within a sample"),
    ("rep_4", Better::Lower, true, "repeated 4-grams within a sample"),
    ("distinct_1", Better::Higher, false, "unique unigrams across a prompt's samples"),
    ("distinct_2", Better::Higher, false, "unique bigrams across a prompt's samples"),
    ("distinct_3", Better::Higher, false, "unique trigrams across a prompt's samples"),
    ("self_bleu", Better::Lower, false, "BLEU-4 of each sample against the prompt's other samples"),
    (
        "fluency_ppl",
        Better::Lower,
        true,
        "perplexity of the continuation given its prompt under SmolLM2-135M, a general LM neither arm trained (the fluency judge)",
    ),
    ("fluency_ppl_median", Better::Lower, true, "the median of fluency_ppl over the samples (robust to a few garbled ones)"),
    (
        "invented_words",
        Better::Lower,
        true,
        "share of the continuation's words found in no training story (the bundle's words.txt)",
    ),
    (
        "self_ppl",
        Better::Lower,
        true,
        "perplexity of the continuation under the bundle's own ar model (self perplexity: it flatters ar's own samples; not fluency)",
    ),
    ("relevance", Better::Higher, true, "mean cosine of each written sentence to the prompt (the judge encoder)"),
    ("coherence", Better::Higher, true, "mean cosine of consecutive written sentences (the judge encoder)"),
    ("first_last", Better::Higher, true, "cosine of the first written sentence to the last (the judge encoder)"),
    ("relevance_minilm", Better::Higher, true, "relevance by all-MiniLM-L6-v2 (the plan space's encoder)"),
    ("coherence_minilm", Better::Higher, true, "coherence by all-MiniLM-L6-v2 (the plan space's encoder)"),
    ("first_last_minilm", Better::Higher, true, "first-last by all-MiniLM-L6-v2 (the plan space's encoder)"),
    (
        "restarts",
        Better::Lower,
        true,
        "written sentences whose cosine to all text before them is below the threshold (5% of references restart)",
    ),
    ("restarted", Better::Lower, true, "share of samples with at least one restart"),
    (
        "mauve",
        Better::Higher,
        false,
        "MAUVE of the arm's continuations against the references (per arm: no paired test)",
    ),
    (
        "plan_space_coherence",
        Better::Higher,
        true,
        "cosine of consecutive sentence latents of the bundle's own encoder",
    ),
    ("plan_adherence", Better::Higher, true, "cosine of each planned latent to the written sentence's"),
    (
        "aligned_cosine",
        Better::Higher,
        true,
        "cosine of each new sentence to the reference continuation's sentence at the same place (the judge encoder)",
    ),
    (
        "outline_adherence",
        Better::Higher,
        true,
        "cosine of each outline line to the sentence written at its slot (the judge encoder; 0 where none was written)",
    ),
    (
        "outline_order",
        Better::Higher,
        true,
        "share of pairs of outline lines whose closest written sentences come in the outline's order",
    ),
    ("latency_s", Better::Lower, true, "seconds to write the prompt's samples"),
    ("planning_s", Better::Lower, true, "seconds of latency spent sampling plans (hybrid)"),
    ("tokens_per_s", Better::Higher, true, "new tokens per second"),
    ("decode_tokens_per_s", Better::Higher, true, "new tokens per second of decoding (planning left out)"),
];
