//! Topic and coherence scores of a sample from its sentences' judge embeddings (unit
//! vectors, so a cosine is a dot product), after SimCTG / Contrastive Decoding's
//! sentence-embedding coherence.
//!
//! | name | what |
//! |---|---|
//! | `relevance` | mean cosine of each written sentence to the prompt (embedded whole) |
//! | `coherence` | mean cosine of consecutive written sentences |
//! | `first_last` | cosine of the first written sentence to the last |
//! | `outline_adherence` | mean cosine of each outline line to the sentence written at its slot (0 where none was written) |
//! | `outline_order` | share of pairs of outline lines whose closest written sentences come in the outline's order |
//! | `restarts` | written sentences whose cosine to everything before them (the mean of the prompt's and earlier written sentences' embeddings) is below a threshold fitted on human text: the 5% quantile of human continuations' lowest such cosine, so 5% of human continuations restart |

use plandiff_layers::bounded;

/// Cosine of unit vectors, clamped to [-1, 1] (a sentence with itself can round to
/// 1.00000001 on some float kernels: see `plandiff_layers::bounded`).
pub fn dot(a: &[f32], b: &[f32]) -> f64 {
    bounded::unit_cosine(a, b)
}

fn mean(v: impl Iterator<Item = f64>) -> f64 {
    let (s, n) = v.fold((0.0, 0usize), |(s, n), x| (s + x, n + 1));
    if n == 0 {
        f64::NAN
    } else {
        s / n as f64
    }
}

/// Mean cosine of each written sentence to the prompt (NaN without sentences).
pub fn relevance(prompt: &[f32], written: &[Vec<f32>]) -> f64 {
    bounded::cosine(mean(written.iter().map(|s| dot(prompt, s))))
}

/// Mean cosine of consecutive written sentences (NaN with fewer than two).
pub fn coherence(written: &[Vec<f32>]) -> f64 {
    bounded::cosine(mean(written.windows(2).map(|w| dot(&w[0], &w[1]))))
}

/// Mean cosine of each written sentence to the reference's sentence at the same place (the
/// k-th new sentence against the reference continuation's k-th), over the places both have
/// (NaN with none): whether a sentence says what the plan slot of the true sentence says.
pub fn aligned(reference: &[Vec<f32>], written: &[Vec<f32>]) -> f64 {
    bounded::cosine(mean(reference.iter().zip(written).map(|(r, w)| dot(r, w))))
}

/// Cosine of the first written sentence to the last (NaN with fewer than two).
pub fn first_last(written: &[Vec<f32>]) -> f64 {
    match (written.first(), written.last()) {
        (Some(a), Some(b)) if written.len() >= 2 => dot(a, b),
        _ => f64::NAN,
    }
}

/// For each written sentence, its cosine to the normalised mean of the embeddings of every
/// sentence before it (the prompt's sentences, then the written ones).
pub fn prior_cosines(prompt_sentences: &[Vec<f32>], written: &[Vec<f32>]) -> Vec<f64> {
    let d = written.first().or(prompt_sentences.first()).map_or(0, Vec::len);
    let mut sum = vec![0f64; d];
    for s in prompt_sentences {
        sum.iter_mut().zip(s).for_each(|(a, x)| *a += f64::from(*x));
    }
    let mut out = Vec::with_capacity(written.len());
    for s in written {
        let norm = sum.iter().map(|x| x * x).sum::<f64>().sqrt();
        out.push(if norm > 0.0 {
            bounded::cosine(sum.iter().zip(s).map(|(a, x)| a * f64::from(*x)).sum::<f64>() / norm)
        } else {
            f64::NAN
        });
        sum.iter_mut().zip(s).for_each(|(a, x)| *a += f64::from(*x));
    }
    out
}

/// The share of human continuations taken as restarting.
pub const RESTART_QUANTILE: f64 = 0.05;

/// The restart threshold: the `RESTART_QUANTILE` quantile (linear interpolation, numpy's
/// default) of `human`, each human continuation's lowest prior cosine. `None` without any.
pub fn restart_threshold(human: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = human.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let pos = RESTART_QUANTILE * (v.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    Some(v[lo] + (v[hi] - v[lo]) * (pos - lo as f64))
}

/// Written sentences whose prior cosine is below `threshold`.
pub fn restarts(prior: &[f64], threshold: f64) -> usize {
    prior.iter().filter(|&&c| c < threshold).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(v: &[f32]) -> Vec<f32> {
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.iter().map(|x| x / n).collect()
    }

    #[test]
    fn aligned_pairs_the_kth_sentences_by_hand() {
        let (a, b) = (unit(&[1.0, 0.0]), unit(&[0.0, 1.0]));
        let both = unit(&[1.0, 1.0]);
        // Pairs (a, a) and (b, both); the third written sentence has no reference.
        let got = aligned(&[a.clone(), b.clone()], &[a.clone(), both.clone(), b.clone()]);
        assert!((got - (1.0 + 0.5f64.sqrt()) / 2.0).abs() < 1e-6, "{got}");
        assert!(aligned(&[], &[a]).is_nan());
    }

    #[test]
    fn scores_by_hand() {
        // Prompt along x; sentences at 0, 60 and 90 degrees from it.
        let p = vec![1.0, 0.0];
        let s = vec![vec![1.0, 0.0], unit(&[0.5, 0.75f32.sqrt()]), vec![0.0, 1.0]];
        assert!((relevance(&p, &s) - (1.0 + 0.5 + 0.0) / 3.0).abs() < 1e-6);
        // Consecutive: 0 -> 60 (0.5), 60 -> 90 (cos 30 = 0.866).
        assert!((coherence(&s) - (0.5 + 0.75f64.sqrt()) / 2.0).abs() < 1e-6);
        assert!((first_last(&s) - 0.0).abs() < 1e-6);
        assert!(coherence(&s[..1]).is_nan() && first_last(&s[..1]).is_nan() && relevance(&p, &[]).is_nan());
    }

    #[test]
    fn prior_cosines_and_restarts_by_hand() {
        let prompt = vec![vec![1.0, 0.0]];
        let s = vec![vec![1.0, 0.0], vec![0.0, 1.0], vec![-1.0, 0.0]];
        let c = prior_cosines(&prompt, &s);
        // 1st: to (1,0) -> 1. 2nd: to mean of (1,0),(1,0) -> 0. 3rd: to (2,1)/sqrt5 -> -2/sqrt5.
        assert!((c[0] - 1.0).abs() < 1e-9 && c[1].abs() < 1e-9, "{c:?}");
        assert!((c[2] + 2.0 / 5f64.sqrt()).abs() < 1e-9, "{c:?}");
        assert_eq!(restarts(&c, 0.1), 2);
        assert_eq!(restarts(&c, -0.95), 0);
    }

    #[test]
    fn threshold_is_numpy_quantile() {
        // numpy.quantile(range(21), 0.05) = 1.0; of [0, 10] = 0.5.
        let v: Vec<f64> = (0..21).map(f64::from).collect();
        assert!((restart_threshold(&v).unwrap() - 1.0).abs() < 1e-12);
        assert!((restart_threshold(&[10.0, 0.0]).unwrap() - 0.5).abs() < 1e-12);
        assert!(restart_threshold(&[f64::NAN]).is_none());
    }
}

/// Mean cosine of each outline line to the sentence written at its slot: `lines` are
/// `(slot, embedding)`, 0-based among the written sentences; a slot past the text scores 0.
pub fn outline_adherence(lines: &[(usize, Vec<f32>)], written: &[Vec<f32>]) -> f64 {
    bounded::cosine(mean(lines.iter().map(|(k, e)| written.get(*k).map_or(0.0, |w| dot(e, w)))))
}

/// Share of the pairs of outline lines (in outline order) whose closest written sentences
/// come strictly in that order (NaN with fewer than two lines or no sentence written).
pub fn outline_order(lines: &[(usize, Vec<f32>)], written: &[Vec<f32>]) -> f64 {
    if written.is_empty() {
        return f64::NAN;
    }
    let at: Vec<usize> = lines
        .iter()
        .map(|(_, e)| {
            let cos: Vec<f64> = written.iter().map(|w| dot(e, w)).collect();
            (0..cos.len()).fold(0, |b, j| if cos[j] > cos[b] { j } else { b })
        })
        .collect();
    let pairs = (0..at.len()).flat_map(|i| (i + 1..at.len()).map(move |j| (i, j)));
    bounded::share(mean(pairs.map(|(i, j)| f64::from(u8::from(at[i] < at[j])))))
}

#[cfg(test)]
mod outline_tests {
    use super::*;

    /// f32 unit vectors whose f64 self-dot rounds past 1 (as all-mpnet-base-v2's do for a
    /// sentence judged against itself on some machines: issue 36's 1.0000000141796126).
    fn over_unit(d: usize, n: usize) -> Vec<Vec<f32>> {
        let mut s: u64 = 7;
        let mut out = Vec::new();
        while out.len() < n {
            let v: Vec<f32> = (0..d)
                .map(|_| {
                    s = s.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
                    ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
                })
                .collect();
            let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            let u: Vec<f32> = v.iter().map(|x| x / norm).collect();
            if u.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>() > 1.0 {
                out.push(u);
            }
        }
        out
    }

    #[test]
    fn every_cosine_score_of_a_sentence_with_itself_stays_at_most_one() {
        let u = over_unit(768, 1).remove(0);
        let raw: f64 = u.iter().map(|x| f64::from(*x).powi(2)).sum();
        assert!(raw > 1.0, "the case rounds past the bound: {raw}");
        let same = vec![u.clone(), u.clone(), u.clone()];
        // The reference arm of the outline A/B: its own sentences are its outline.
        let lines: Vec<(usize, Vec<f32>)> = (0..3).map(|k| (k, u.clone())).collect();
        for (name, v) in [
            ("relevance", relevance(&u, &same)),
            ("coherence", coherence(&same)),
            ("first_last", first_last(&same)),
            ("outline_adherence", outline_adherence(&lines, &same)),
        ] {
            assert!((-1.0..=1.0).contains(&v), "{name} {v} left [-1, 1]");
            assert!((v - 1.0).abs() < 1e-6, "{name} of a sentence with itself is 1: {v}");
        }
        let prior = prior_cosines(std::slice::from_ref(&u), &same);
        assert!(prior.iter().all(|c| (-1.0..=1.0).contains(c) && (c - 1.0).abs() < 1e-6), "{prior:?}");
        let order = outline_order(&lines, &same);
        assert!((0.0..=1.0).contains(&order), "{order}");
    }

    #[test]
    fn adherence_reads_the_slot_and_order_the_closest_sentences() {
        let (x, y, z) = (vec![1.0f32, 0.0, 0.0], vec![0.0f32, 1.0, 0.0], vec![0.0f32, 0.0, 1.0]);
        let lines = vec![(0, x.clone()), (2, z.clone())];
        // Written x, y, z: both lines at their slots, in order.
        let w = vec![x.clone(), y.clone(), z.clone()];
        assert_eq!(outline_adherence(&lines, &w), 1.0);
        assert_eq!(outline_order(&lines, &w), 1.0);
        // Written z, y, x: both lines written, at each other's slots, out of order.
        let w = vec![z.clone(), y.clone(), x.clone()];
        assert_eq!(outline_adherence(&lines, &w), 0.0);
        assert_eq!(outline_order(&lines, &w), 0.0);
        // One sentence: the second line's slot is past the text.
        assert_eq!(outline_adherence(&lines, std::slice::from_ref(&x)), 0.5);
        assert!(outline_order(&lines, &[]).is_nan());
    }
}
