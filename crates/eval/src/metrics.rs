//! Text metrics of the A/B harness, on whitespace words of the lowercased text (so bundles
//! with different tokenizers are compared on the same units).
//!
//! - `rep-n`: share of a sample's n-grams that repeat an earlier n-gram of the same sample,
//!   `1 - unique / total` (0 when the sample has no n-gram).
//! - `distinct-n`: unique n-grams over all n-grams of a set of samples (Li et al. 2016).
//! - self-BLEU: mean over samples of BLEU-4 of each sample against the others as references
//!   (Zhu et al. 2018), with NLTK's `sentence_bleu` definition: uniform weights, clipped
//!   counts against the maximum reference count, brevity penalty against the closest
//!   reference length (the shorter on ties), smoothing method 1 (epsilon 0.1 on zero
//!   counts), and 0 when no unigram matches.

use std::collections::HashMap;

/// Lowercased whitespace words.
pub fn words(text: &str) -> Vec<String> {
    text.split_whitespace().map(str::to_lowercase).collect()
}

fn ngrams<T: AsRef<str>>(w: &[T], n: usize) -> Vec<Vec<&str>> {
    if n == 0 || w.len() < n {
        return Vec::new();
    }
    w.windows(n).map(|g| g.iter().map(AsRef::as_ref).collect()).collect()
}

/// `1 - unique n-grams / n-grams` of one sample.
pub fn rep_n<T: AsRef<str>>(w: &[T], n: usize) -> f64 {
    let g = ngrams(w, n);
    if g.is_empty() {
        return 0.0;
    }
    let unique: std::collections::HashSet<&Vec<&str>> = g.iter().collect();
    1.0 - unique.len() as f64 / g.len() as f64
}

/// Unique n-grams over all n-grams of a set of samples (0 when there is none).
pub fn distinct_n<T: AsRef<str>>(samples: &[Vec<T>], n: usize) -> f64 {
    let mut total = 0usize;
    let mut unique = std::collections::HashSet::new();
    for s in samples {
        for g in ngrams(s, n) {
            total += 1;
            unique.insert(g);
        }
    }
    if total == 0 {
        0.0
    } else {
        unique.len() as f64 / total as f64
    }
}

fn counts(g: Vec<Vec<&str>>) -> HashMap<Vec<&str>, usize> {
    let mut m = HashMap::new();
    for x in g {
        *m.entry(x).or_insert(0) += 1;
    }
    m
}

/// NLTK `sentence_bleu(references, hypothesis, smoothing_function=method1)` with weights
/// `(0.25,) * 4`.
pub fn sentence_bleu<T: AsRef<str>>(references: &[&[T]], hypothesis: &[T]) -> f64 {
    let max_n = 4;
    let mut num = [0usize; 4];
    let mut den = [0usize; 4];
    for n in 1..=max_n {
        let hyp = counts(ngrams(hypothesis, n));
        let mut max_ref: HashMap<Vec<&str>, usize> = HashMap::new();
        for r in references {
            for (g, c) in counts(ngrams(r, n)) {
                let e = max_ref.entry(g).or_insert(0);
                *e = (*e).max(c);
            }
        }
        num[n - 1] = hyp.iter().map(|(g, &c)| c.min(max_ref.get(g).copied().unwrap_or(0))).sum();
        den[n - 1] = hyp.values().sum::<usize>().max(1);
    }
    if num[0] == 0 {
        return 0.0;
    }
    let c = hypothesis.len();
    // Closest reference length; ties go to the shorter.
    let r = references.iter().map(|r| r.len()).min_by_key(|&l| ((l as i64 - c as i64).abs(), l)).unwrap_or(0);
    let bp = if c > r {
        1.0
    } else if c == 0 {
        0.0
    } else {
        (1.0 - r as f64 / c as f64).exp()
    };
    let eps = 0.1;
    let log_sum: f64 = (0..max_n)
        .map(|i| {
            let p = if num[i] == 0 { eps / den[i] as f64 } else { num[i] as f64 / den[i] as f64 };
            0.25 * p.ln()
        })
        .sum();
    bp * log_sum.exp()
}

/// Mean BLEU-4 of each sample against all the others (0 for fewer than two samples).
pub fn self_bleu<T: AsRef<str>>(samples: &[Vec<T>]) -> f64 {
    if samples.len() < 2 {
        return 0.0;
    }
    let total: f64 = (0..samples.len())
        .map(|i| {
            let refs: Vec<&[T]> =
                samples.iter().enumerate().filter(|(j, _)| *j != i).map(|(_, s)| s.as_slice()).collect();
            sentence_bleu(&refs, &samples[i])
        })
        .sum();
    total / samples.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(s: &str) -> Vec<String> {
        words(s)
    }

    #[test]
    fn repetition_by_hand() {
        // "a b a b a": bigrams ab ba ab ba -> 2 unique of 4 -> 0.5; trigrams aba bab aba -> 2/3 unique.
        let x = w("a b a b a");
        assert!((rep_n(&x, 2) - 0.5).abs() < 1e-12);
        assert!((rep_n(&x, 3) - (1.0 - 2.0 / 3.0)).abs() < 1e-12);
        assert_eq!(rep_n(&w("one two three"), 2), 0.0);
        assert_eq!(rep_n(&w("one"), 2), 0.0, "no bigram, no repetition");
        assert_eq!(rep_n(&w("The the THE"), 1), 1.0 - 1.0 / 3.0, "lowercased");
    }

    #[test]
    fn distinct_by_hand() {
        let s = vec![w("the cat sat"), w("the cat ran")];
        // unigrams: the cat sat the cat ran -> 4 unique / 6; bigrams: the-cat cat-sat the-cat cat-ran -> 3/4
        assert!((distinct_n(&s, 1) - 4.0 / 6.0).abs() < 1e-12);
        assert!((distinct_n(&s, 2) - 0.75).abs() < 1e-12);
        assert!((distinct_n(&s, 3) - 1.0).abs() < 1e-12);
        assert_eq!(distinct_n(&[w("a")], 2), 0.0);
    }

    #[test]
    fn bleu_by_hand() {
        let a = w("the cat sat on the mat");
        assert!((sentence_bleu(&[a.as_slice()], &a) - 1.0).abs() < 1e-12, "identical text scores 1");
        assert_eq!(sentence_bleu(&[w("x y z").as_slice()], &w("a b c")), 0.0, "no unigram match scores 0");
        // Hypothesis "the cat" vs reference "the cat sat": p1 = 2/2, p2 = 1/1, p3 = p4 = 0 -> 0.1/1
        // (denominators floored at 1), BP = exp(1 - 3/2).
        let got = sentence_bleu(&[w("the cat sat").as_slice()], &w("the cat"));
        let want = (1.0f64 - 1.5).exp() * (0.25 * (1.0f64.ln() + 1.0f64.ln() + 0.1f64.ln() + 0.1f64.ln())).exp();
        assert!((got - want).abs() < 1e-12, "{got} vs {want}");
        assert_eq!(self_bleu(&[w("the same words here"), w("the same words here")]), 1.0);
        // Shorter than 4 words: no 4-gram, smoothed to 0.1 / 1 (as NLTK does).
        let short = self_bleu(&[w("same words here"), w("same words here")]);
        assert!((short - 0.1f64.powf(0.25)).abs() < 1e-12, "{short}");
        assert_eq!(self_bleu(&[w("alone")]), 0.0);
    }
}
