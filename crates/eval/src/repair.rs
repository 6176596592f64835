//! The repair benchmark (`plandiff eval --repair`): sentences of held-out stories with words
//! corrupted in known ways, each given with the sentence before it to a reviser; measured by
//! the share of corrupted words restored exactly and the share of clean words changed.
//!
//! | kind | a corrupted word becomes |
//! |---|---|
//! | `random` | a word drawn from the whole corpus's vocabulary |
//! | `swap` | another word of the same story (a name or noun of the wrong character or thing) |
//! | `close` | its nearest word in a token-embedding space (`dog` -> `cat`, `happy` -> `sad`) |
//! | `insert` | it stays, and a word of the corpus's vocabulary is inserted before it (an extra word to delete) |
//! | `delete` | nothing: it is dropped (a missing word to put back) |
//! | `clean` | nothing: what revising fine text changes |
//!
//! Words are whitespace-separated; only words of three or more letters are corrupted (never a
//! word with punctuation attached), so a restored word is a word-for-word match. The revised
//! text is aligned to the corrupted one word by word (Levenshtein), so a reviser that joins,
//! splits, adds or drops words is scored too: a dropped or altered clean word, or an added
//! one, counts as a changed clean word.

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use std::collections::{BTreeSet, HashMap};

/// How a case's words were corrupted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Corruption {
    Clean,
    Random,
    Swap,
    Close,
    Insert,
    Delete,
}

impl Corruption {
    pub const ALL: [Corruption; 6] = [
        Corruption::Random,
        Corruption::Swap,
        Corruption::Close,
        Corruption::Insert,
        Corruption::Delete,
        Corruption::Clean,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Corruption::Clean => "clean",
            Corruption::Random => "random",
            Corruption::Swap => "swap",
            Corruption::Close => "close",
            Corruption::Insert => "insert",
            Corruption::Delete => "delete",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == s)
    }
}

/// One passage to revise: the sentence before (context, clean) and the corrupted sentence.
#[derive(Debug, Clone, Serialize)]
pub struct Case {
    pub kind: Corruption,
    /// The passage as the reviser gets it.
    pub text: String,
    /// The passage's words before corruption.
    pub clean: Vec<String>,
    /// Indices (into the passage's words as given) of the corrupted words: a substituted word,
    /// an inserted one (`insert`), or for `delete` the word the dropped one stood before
    /// (the dropped word is `clean[at[i] + i]`).
    pub at: Vec<usize>,
}

/// A word the benchmark may corrupt, or use in place of one: three or more letters.
pub fn replaceable(w: &str) -> bool {
    w.chars().count() >= 3 && w.chars().all(char::is_alphabetic)
}

/// `n` cases of `kind` from `stories`, `k` corrupted words each (none for `clean`), seeded.
/// `close(word)` gives a word's close substitute (`None`: the word has none, another is
/// picked). Fewer than `n` come back when the stories have too few sentences to corrupt.
pub fn make_cases(
    stories: &[String],
    kind: Corruption,
    n: usize,
    k: usize,
    seed: u64,
    close: &dyn Fn(&str) -> Option<String>,
) -> Vec<Case> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ (0x7265_7061_6972 + kind as u64));
    let vocab: Vec<&str> = stories
        .iter()
        .flat_map(|s| s.split_whitespace())
        .filter(|w| replaceable(w))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let split: Vec<Vec<&str>> = stories.iter().map(|s| plandiff_data::split_sentences(s)).collect();
    let usable: Vec<usize> = (0..stories.len()).filter(|&i| split[i].len() >= 2).collect();
    let mut out = Vec::with_capacity(n);
    let mut seen = BTreeSet::new();
    let mut tries = 0;
    while out.len() < n && tries < n.saturating_mul(50) && !usable.is_empty() {
        tries += 1;
        let si = usable[rng.gen_range(0..usable.len())];
        let sents = &split[si];
        let j = rng.gen_range(1..sents.len());
        if !seen.insert((si, j)) {
            continue;
        }
        let prev: Vec<&str> = sents[j - 1].split_whitespace().collect();
        let words: Vec<&str> = sents[j].split_whitespace().collect();
        let mut spots: Vec<usize> = (0..words.len()).filter(|&i| replaceable(words[i])).collect();
        if kind != Corruption::Clean && spots.len() < k.max(1) {
            continue;
        }
        spots.shuffle(&mut rng);
        let story_words: Vec<&str> = stories[si].split_whitespace().filter(|w| replaceable(w)).collect();
        let mut bad: Vec<String> = words.iter().map(|w| w.to_string()).collect();
        let mut at = Vec::new();
        if matches!(kind, Corruption::Insert | Corruption::Delete) {
            let Some((out_words, spots_at)) = insert_or_delete(kind, &words, &spots, k, &vocab, &mut rng) else {
                continue;
            };
            bad = out_words;
            at = spots_at.into_iter().map(|i| prev.len() + i).collect();
        } else if kind != Corruption::Clean {
            for &i in &spots {
                if at.len() == k {
                    break;
                }
                let w = words[i];
                let pick = match kind {
                    Corruption::Random => pick_other(&vocab, w, &mut rng),
                    Corruption::Swap => pick_other(&story_words, w, &mut rng),
                    Corruption::Close => close(w).filter(|c| c != w && replaceable(c)),
                    Corruption::Clean | Corruption::Insert | Corruption::Delete => None,
                };
                if let Some(p) = pick {
                    bad[i] = p;
                    at.push(prev.len() + i);
                }
            }
            if at.len() < k.max(1) {
                continue;
            }
        }
        at.sort_unstable();
        let clean: Vec<String> = prev.iter().chain(&words).map(|w| w.to_string()).collect();
        let text = format!("{} {}", prev.join(" "), bad.join(" "));
        out.push(Case { kind, text, clean, at });
    }
    out
}

/// The words of a sentence with `k` of its `spots` (apart from each other, never its last
/// word) dropped (`delete`) or given a vocabulary word before them (`insert`), and where: the
/// index in the new words of the inserted word, or of the word a dropped one stood before.
fn insert_or_delete(
    kind: Corruption,
    words: &[&str],
    spots: &[usize],
    k: usize,
    vocab: &[&str],
    rng: &mut ChaCha8Rng,
) -> Option<(Vec<String>, Vec<usize>)> {
    let mut chosen: Vec<usize> = Vec::new();
    for &i in spots.iter().filter(|&&i| i + 1 < words.len()) {
        if chosen.len() < k.max(1) && chosen.iter().all(|&c| c.abs_diff(i) > 1) {
            chosen.push(i);
        }
    }
    if chosen.len() < k.max(1) {
        return None;
    }
    let (mut out, mut at) = (Vec::with_capacity(words.len() + chosen.len()), Vec::new());
    for (i, w) in words.iter().enumerate() {
        if chosen.contains(&i) {
            at.push(out.len());
            if kind == Corruption::Delete {
                continue;
            }
            out.push(pick_other(vocab, w, rng)?);
        }
        out.push(w.to_string());
    }
    Some((out, at))
}

fn pick_other(pool: &[&str], w: &str, rng: &mut ChaCha8Rng) -> Option<String> {
    let others: Vec<&&str> = pool.iter().filter(|&&x| x != w).collect();
    others.choose(rng).map(|x| x.to_string())
}

/// What a revision of a case did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Outcome {
    pub corrupted: usize,
    pub restored: usize,
    pub clean: usize,
    /// Clean words dropped or altered, and words added.
    pub changed: usize,
    /// The revision returned the text byte for byte.
    pub untouched: bool,
}

/// Scores `revised` against `case`.
pub fn score(case: &Case, revised: &str) -> Outcome {
    let c: Vec<&str> = case.text.split_whitespace().collect();
    let r: Vec<&str> = revised.split_whitespace().collect();
    let (mapped, inserted) = align(&c, &r);
    let mut o = Outcome { untouched: revised == case.text, changed: inserted, ..Outcome::default() };
    if matches!(case.kind, Corruption::Insert | Corruption::Delete) {
        return score_length(case, &c, &r, &mapped, o);
    }
    for (i, m) in mapped.iter().enumerate() {
        let now = m.map(|j| r[j]);
        if case.at.binary_search(&i).is_ok() {
            o.corrupted += 1;
            o.restored += usize::from(now == case.clean.get(i).map(String::as_str));
        } else {
            o.clean += 1;
            o.changed += usize::from(now != Some(c[i]));
        }
    }
    o
}

/// [`score`] of an `insert` or `delete` case: an inserted word is restored when the
/// revision dropped it; a dropped word when exactly it was put back in its gap (the words of
/// `r` between the ones its neighbours map to). Every other word is clean.
fn score_length(case: &Case, c: &[&str], r: &[&str], mapped: &[Option<usize>], mut o: Outcome) -> Outcome {
    for (i, m) in mapped.iter().enumerate() {
        let now = m.map(|j| r[j]);
        if case.kind == Corruption::Insert && case.at.binary_search(&i).is_ok() {
            o.corrupted += 1;
            o.restored += usize::from(now.is_none());
        } else {
            o.clean += 1;
            o.changed += usize::from(now != Some(c[i]));
        }
    }
    if case.kind == Corruption::Delete {
        for (n, &g) in case.at.iter().enumerate() {
            o.corrupted += 1;
            let lo = mapped[..g].iter().rev().find_map(|m| *m).map_or(0, |j| j + 1);
            let hi = mapped[g..].iter().find_map(|m| *m).unwrap_or(r.len());
            let want = case.clean.get(g + n).map(String::as_str);
            if hi == lo + 1 && Some(r[lo]) == want {
                o.restored += 1;
                o.changed -= 1; // the word put back is not an added one
            }
        }
    }
    o
}

/// Word alignment of `a` to `b` by edit distance: for each word of `a`, the word of `b` it
/// matches or became (`None`: deleted), and how many words of `b` were inserted.
pub fn align(a: &[&str], b: &[&str]) -> (Vec<Option<usize>>, usize) {
    let (n, m) = (a.len(), b.len());
    let mut d = vec![vec![0usize; m + 1]; n + 1];
    (0..=n).for_each(|i| d[i][0] = i);
    (0..=m).for_each(|j| d[0][j] = j);
    for i in 1..=n {
        for j in 1..=m {
            let sub = d[i - 1][j - 1] + usize::from(a[i - 1] != b[j - 1]);
            d[i][j] = sub.min(d[i - 1][j] + 1).min(d[i][j - 1] + 1);
        }
    }
    let (mut i, mut j) = (n, m);
    let mut mapped = vec![None; n];
    let mut inserted = 0;
    while i > 0 || j > 0 {
        if i > 0 && j > 0 && d[i][j] == d[i - 1][j - 1] + usize::from(a[i - 1] != b[j - 1]) {
            mapped[i - 1] = Some(j - 1);
            i -= 1;
            j -= 1;
        } else if i > 0 && d[i][j] == d[i - 1][j] + 1 {
            i -= 1;
        } else {
            inserted += 1;
            j -= 1;
        }
    }
    (mapped, inserted)
}

/// The figures of one corruption kind.
#[derive(Debug, Clone, Serialize)]
pub struct KindReport {
    pub kind: Corruption,
    pub cases: usize,
    pub corrupted_words: usize,
    pub restored_words: usize,
    /// Share of corrupted words restored exactly (NaN for `clean`).
    pub restored: f64,
    pub clean_words: usize,
    pub changed_words: usize,
    /// Share of clean words changed (and words added, per clean word).
    pub clean_changed: f64,
    /// Share of cases returned byte for byte.
    pub untouched: f64,
}

/// Sums outcomes per kind, in the order the kinds first appear.
pub fn summarise(outcomes: &[(Corruption, Outcome)]) -> Vec<KindReport> {
    let mut order: Vec<Corruption> = Vec::new();
    let mut sums: HashMap<Corruption, (usize, Outcome, usize)> = HashMap::new();
    for &(k, o) in outcomes {
        if !order.contains(&k) {
            order.push(k);
        }
        let e = sums.entry(k).or_default();
        e.0 += 1;
        e.1.corrupted += o.corrupted;
        e.1.restored += o.restored;
        e.1.clean += o.clean;
        e.1.changed += o.changed;
        e.2 += usize::from(o.untouched);
    }
    let share = |a: usize, b: usize| if b == 0 { f64::NAN } else { a as f64 / b as f64 };
    order
        .into_iter()
        .map(|k| {
            let (n, o, u) = sums[&k];
            KindReport {
                kind: k,
                cases: n,
                corrupted_words: o.corrupted,
                restored_words: o.restored,
                restored: share(o.restored, o.corrupted),
                clean_words: o.clean,
                changed_words: o.changed,
                clean_changed: share(o.changed, o.clean),
                untouched: share(u, n),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stories() -> Vec<String> {
        vec![
            "tom had a red ball. he threw the ball to his dog. the dog ran fast and caught it.".into(),
            "lily saw a big tree. she climbed the tree with her friend sam. they could see the whole park.".into(),
        ]
    }

    #[test]
    fn cases_corrupt_exactly_k_replaceable_words_and_keep_the_rest() {
        let close = |w: &str| Some(format!("{w}x"));
        for kind in Corruption::ALL {
            let cases = make_cases(&stories(), kind, 3, 2, 7, &close);
            assert!(!cases.is_empty(), "{kind:?}");
            for c in cases.iter().filter(|_| !matches!(kind, Corruption::Insert | Corruption::Delete)) {
                let words: Vec<&str> = c.text.split_whitespace().collect();
                assert_eq!(words.len(), c.clean.len());
                let diff: Vec<usize> = (0..words.len()).filter(|&i| words[i] != c.clean[i]).collect();
                assert_eq!(diff, c.at, "{c:?}");
                assert_eq!(c.at.len(), if kind == Corruption::Clean { 0 } else { 2 });
                assert!(c.at.iter().all(|&i| replaceable(&c.clean[i])));
            }
            // Seeded: the same cases again.
            let again = make_cases(&stories(), kind, 3, 2, 7, &close);
            assert_eq!(
                cases.iter().map(|c| &c.text).collect::<Vec<_>>(),
                again.iter().map(|c| &c.text).collect::<Vec<_>>()
            );
        }
        // A swap uses the story's own words.
        for c in make_cases(&stories(), Corruption::Swap, 3, 1, 1, &close) {
            let w = c.text.split_whitespace().nth(c.at[0]).unwrap().to_string();
            assert!(stories().iter().any(|s| s.contains(&c.clean[0]) && s.split_whitespace().any(|x| x == w)));
        }
        // No substitute, no case.
        assert!(make_cases(&stories(), Corruption::Close, 3, 1, 1, &|_| None).is_empty());
    }

    #[test]
    fn scoring_counts_restorations_and_collateral_changes() {
        let case = Case {
            kind: Corruption::Swap,
            text: "the cat ran home".into(),
            clean: ["the", "dog", "ran", "home"].map(String::from).to_vec(),
            at: vec![1],
        };
        let o = score(&case, "the dog ran home");
        assert_eq!((o.corrupted, o.restored, o.clean, o.changed, o.untouched), (1, 1, 3, 0, false));
        let o = score(&case, "the cat ran home");
        assert_eq!((o.restored, o.changed, o.untouched), (0, 0, true));
        let o = score(&case, "a dog ran home");
        assert_eq!((o.restored, o.changed), (1, 1));
        // An added word and a dropped one are changes; the alignment still finds "dog".
        let o = score(&case, "the dog ran off home");
        assert_eq!((o.restored, o.changed), (1, 1));
        let o = score(&case, "the dog ran");
        assert_eq!((o.restored, o.changed), (1, 1));
        let r = summarise(&[(Corruption::Swap, score(&case, "the dog ran home")), (Corruption::Swap, o)]);
        assert_eq!((r[0].cases, r[0].restored, r[0].changed_words, r[0].clean_words), (2, 1.0, 1, 6));
        assert!((r[0].untouched - 0.0).abs() < 1e-12);
    }

    #[test]
    fn insert_and_delete_cases_and_their_scores() {
        let close = |w: &str| Some(format!("{w}x"));
        for c in make_cases(&stories(), Corruption::Delete, 3, 1, 3, &close) {
            let words: Vec<&str> = c.text.split_whitespace().collect();
            assert_eq!(words.len() + 1, c.clean.len(), "{c:?}");
            let g = c.at[0];
            assert!(replaceable(&c.clean[g]) && words[g] == c.clean[g + 1], "{c:?}");
            // Putting the word back restores it and changes nothing else.
            let mut fixed = words.clone();
            fixed.insert(g, &c.clean[g]);
            let o = score(&c, &fixed.join(" "));
            assert_eq!((o.corrupted, o.restored, o.changed), (1, 1, 0), "{c:?}");
            let o = score(&c, &c.text);
            assert_eq!((o.restored, o.changed, o.untouched), (0, 0, true));
            // Another word in the gap is not a restoration and counts as a change.
            fixed[g] = "zzz";
            assert_eq!((score(&c, &fixed.join(" ")).restored, score(&c, &fixed.join(" ")).changed), (0, 1));
        }
        for c in make_cases(&stories(), Corruption::Insert, 3, 1, 3, &close) {
            let mut words: Vec<&str> = c.text.split_whitespace().collect();
            assert_eq!(words.len(), c.clean.len() + 1, "{c:?}");
            words.remove(c.at[0]);
            assert_eq!(words, c.clean, "{c:?}");
            let o = score(&c, &words.join(" "));
            assert_eq!((o.corrupted, o.restored, o.changed), (1, 1, 0), "{c:?}");
            let o = score(&c, &c.text);
            assert_eq!((o.restored, o.changed), (0, 0));
        }
    }

    #[test]
    fn alignment_maps_kept_substituted_and_deleted_words() {
        let (m, ins) = align(&["a", "b", "c"], &["a", "x", "c", "d"]);
        assert_eq!((m, ins), (vec![Some(0), Some(1), Some(2)], 1));
        let (m, ins) = align(&["a", "b", "c"], &["a", "c"]);
        assert_eq!((m, ins), (vec![Some(0), None, Some(1)], 0));
    }
}
