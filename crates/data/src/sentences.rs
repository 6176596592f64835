//! Rule-based sentence segmentation for English prose and dialogue.
//!
//! A boundary is a run of terminators (`.`, `!`, `?`, `…`) optionally followed by closing
//! quotes or brackets, then whitespace. It is *not* a boundary when:
//! - the word before a `.` is a title or common abbreviation (`Mr.`, `Dr.`, `e.g.`, `etc.`
//!   when the next word is lowercase), a single-letter initial, or has inner dots (`U.S.`);
//! - the text is cased and the next word starts lowercase (`"Stop!" she cried.`);
//! - the text is lowercased and a quote closes before a dialogue tag (`"stop!" she cried.`);
//! - it is an ellipsis and the next word does not start a new sentence.
//!
//! Returns slices of the input, trimmed, so callers can keep the original bytes.

const TITLES: &[&str] = &[
    "mr", "mrs", "ms", "dr", "prof", "st", "jr", "sr", "rev", "gen", "capt", "col", "lt", "sgt", "mt", "fr", "hon",
    "messrs", "mme", "mlle", "no", "vol", "fig", "vs", "ft", "approx", "dept", "est", "inc", "ltd", "co",
];
/// Abbreviations that often end a sentence too: a boundary only before an uppercase word.
const SOFT_ABBREVS: &[&str] = &["etc", "e.g", "i.e", "a.m", "p.m", "cf", "al"];
const DIALOGUE_TAGS: &[&str] = &[
    "said",
    "says",
    "asked",
    "asks",
    "cried",
    "replied",
    "shouted",
    "whispered",
    "yelled",
    "exclaimed",
    "answered",
    "called",
    "added",
    "thought",
    "screamed",
    "laughed",
    "continued",
    "muttered",
    "sighed",
    "he",
    "she",
    "they",
    "i",
    "we",
    "you",
    "it",
    "his",
    "her",
    "their",
    "my",
];

fn is_terminator(c: char) -> bool {
    matches!(c, '.' | '!' | '?' | '…')
}

fn is_closer(c: char) -> bool {
    matches!(c, '"' | '\'' | '”' | '’' | ')' | ']' | '»')
}

/// Whether `text` ends a sentence: its last visible character, after any closing quotes and
/// brackets (`"`, `'`, `”`, `’`, `)`, `]`, `»`), is a terminator (`.`, `!`, `?`, `…`). The one
/// rule for prepare's segmentation, a prompt's open sentence and an outline's phrases.
pub fn ends_sentence(text: &str) -> bool {
    text.trim_end().trim_end_matches(is_closer).ends_with(is_terminator)
}

/// Splits `text` into sentences (trimmed slices of `text`).
pub fn split_sentences(text: &str) -> Vec<&str> {
    let cased = text.chars().any(char::is_uppercase);
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let mut out = Vec::new();
    let mut start = 0usize; // byte offset of the current sentence
    let mut i = 0usize;
    while i < chars.len() {
        if !is_terminator(chars[i].1) {
            i += 1;
            continue;
        }
        let term_start = i;
        while i < chars.len() && is_terminator(chars[i].1) {
            i += 1;
        }
        let term_end = i; // exclusive, index into chars
        while i < chars.len() && is_closer(chars[i].1) {
            i += 1;
        }
        let closed_quote = i > term_end;
        let end_byte = if i < chars.len() { chars[i].0 } else { text.len() };
        if i < chars.len() && !chars[i].1.is_whitespace() {
            continue; // "3.14", "e.g", "?!x": not followed by a space
        }
        let terms: String = chars[term_start..term_end].iter().map(|c| c.1).collect();
        let prev_word = previous_word(text, chars[term_start].0);
        let next_word = next_word(text, end_byte);
        if is_boundary(&terms, prev_word, next_word, closed_quote, cased) {
            let s = text[start..end_byte].trim();
            if !s.is_empty() {
                out.push(s);
            }
            start = end_byte;
        }
    }
    let rest = text[start..].trim();
    if !rest.is_empty() {
        out.push(rest);
    }
    out
}

fn previous_word(text: &str, end: usize) -> &str {
    let before = &text[..end];
    let is_break = |c: char| c.is_whitespace() || matches!(c, '"' | '(' | '“' | '‘' | '[');
    // The word starts after the last break character (which may be several bytes long).
    let from = before.char_indices().rev().find(|&(_, c)| is_break(c)).map_or(0, |(i, c)| i + c.len_utf8());
    &before[from..]
}

fn next_word(text: &str, from: usize) -> Option<&str> {
    let after = text[from..].trim_start();
    let after = after.trim_start_matches(['"', '\'', '“', '‘', '(', '[']);
    let end = after.find(|c: char| c.is_whitespace() || matches!(c, ',' | '.' | '!' | '?')).unwrap_or(after.len());
    (end > 0).then(|| &after[..end])
}

fn starts_upper(w: &str) -> bool {
    w.chars().next().is_some_and(|c| c.is_uppercase() || c.is_ascii_digit())
}

fn is_boundary(terms: &str, prev: &str, next: Option<&str>, closed_quote: bool, cased: bool) -> bool {
    let Some(next) = next else {
        return true; // end of text
    };
    let next_upper = starts_upper(next);
    if terms == "." && !closed_quote {
        let w = prev.to_lowercase();
        if TITLES.contains(&w.as_str()) {
            return false;
        }
        if SOFT_ABBREVS.contains(&w.as_str()) || w.contains('.') {
            return next_upper;
        }
        if w.chars().count() == 1 && w.chars().all(char::is_alphabetic) && prev.chars().all(char::is_uppercase) {
            return false; // an initial: "J. K. Rowling"
        }
    }
    let ellipsis = terms.starts_with("..") || terms.contains('…');
    if cased {
        // In cased text a new sentence starts with an uppercase letter, a digit or a quote.
        return next_upper || (!ellipsis && !next.chars().next().is_some_and(char::is_lowercase));
    }
    if ellipsis {
        return false;
    }
    if closed_quote && DIALOGUE_TAGS.contains(&next.to_lowercase().as_str()) {
        return false;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::{ends_sentence, split_sentences};

    #[test]
    fn never_panics_on_multibyte_text() {
        // Every prefix of text dense with multi-byte punctuation and letters.
        let text = "“Ah!” ‘Oh?’ “Mr. É.” Ça… “Dr.” 日本。 “x.” (Ü.) — ‘e.g.’ «Non.» Fin.";
        for (i, _) in text.char_indices() {
            let _ = split_sentences(&text[..i]);
            let _ = split_sentences(&text[i..]);
        }
    }

    #[test]
    fn one_sentence_end_rule_reads_quotes_ellipses_and_brackets() {
        for yes in [
            "they go home.",
            "he said \"stop.\"",
            "he said “stop.”",
            "she asked ‘why?’ ",
            "i waited...",
            "wait…",
            "(it was late.)",
            "[it was late.]",
            "«fin.»",
            "what?!",
        ] {
            assert!(ends_sentence(yes), "{yes:?} ends a sentence");
        }
        for no in ["the dog finds the ball", "mr. smith went", "\"stop\"", "", "   ", "a (b.) c", "it is 3.14 or"] {
            assert!(!ends_sentence(no), "{no:?} does not end a sentence");
        }
        // The splitter agrees: a text that ends a sentence splits into whole sentences.
        for t in ["he said \"stop.\" then left.", "[it was late.]"] {
            assert!(split_sentences(t).iter().all(|s| ends_sentence(s)), "{t:?}");
        }
    }

    #[test]
    fn table() {
        let cases: &[(&str, &[&str])] = &[
            ("", &[]),
            ("   ", &[]),
            ("One. Two.", &["One.", "Two."]),
            ("No terminator at the end", &["No terminator at the end"]),
            ("Mr. Smith met Dr. Jones. They talked.", &["Mr. Smith met Dr. Jones.", "They talked."]),
            ("Bring fruit, e.g. apples and pears. Then go.", &["Bring fruit, e.g. apples and pears.", "Then go."]),
            ("We met at 5 p.m. It rained.", &["We met at 5 p.m.", "It rained."]),
            ("He lives in the U.S. and works.", &["He lives in the U.S. and works."]),
            ("J. K. Rowling wrote it. Fine.", &["J. K. Rowling wrote it.", "Fine."]),
            ("Pi is 3.14 or so. Yes.", &["Pi is 3.14 or so.", "Yes."]),
            ("What?! No way! Really?", &["What?!", "No way!", "Really?"]),
            ("\"Stop!\" she cried. \"Why?\" He ran.", &["\"Stop!\" she cried.", "\"Why?\"", "He ran."]),
            ("\"Hello,\" said Tom. \"Hi.\" Sam waved.", &["\"Hello,\" said Tom.", "\"Hi.\"", "Sam waved."]),
            ("I waited... Then he came.", &["I waited...", "Then he came."]),
            ("I waited... and waited.", &["I waited... and waited."]),
            ("Wait… What happened?", &["Wait…", "What happened?"]),
            ("one day, tom went out. he saw a dog!", &["one day, tom went out.", "he saw a dog!"]),
            ("\"stop!\" she cried. the dog sat.", &["\"stop!\" she cried.", "the dog sat."]),
            ("\"i am hungry.\" the cat ate.", &["\"i am hungry.\"", "the cat ate."]),
            ("she waited... and then she left.", &["she waited... and then she left."]),
            ("Line one.\nLine two.", &["Line one.", "Line two."]),
            ("(It was late.) We left.", &["(It was late.)", "We left."]),
            ("“Well, Mr. Darcy.” She smiled. “Yes.”", &["“Well, Mr. Darcy.”", "She smiled.", "“Yes.”"]),
            ("He said “no… ”— then ‘Dr. Who?’ left.", &["He said “no… ”— then ‘Dr. Who?’ left."]),
            ("“U.S.” and “e.g.” are fine. “Mrs.” too.", &["“U.S.” and “e.g.” are fine.", "“Mrs.” too."]),
            ("Café is nice. Ünïcode works. 日本語です。", &["Café is nice.", "Ünïcode works.", "日本語です。"]),
        ];
        for (input, want) in cases {
            let got = split_sentences(input);
            assert_eq!(&got, want, "input: {input:?}");
        }
    }
}
