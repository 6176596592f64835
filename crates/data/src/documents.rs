//! Documents and their sentences inside a token stream, and padded document batches for the
//! stages that work per document (autoencoder, planner): the decoder reads the document's
//! tokens, the sentence encoder reads each sentence alone.

use crate::SpecialIds;

/// One document: `tokens[start..end]` is `<bos> s1 <sep> ... sN <sep> <eos>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    pub start: usize,
    pub end: usize,
    /// Token ranges of the sentences, without their `<sep>`.
    pub sentences: Vec<(usize, usize)>,
}

/// Finds every complete document of a stream (a trailing unfinished one is skipped).
pub fn index_documents(tokens: &[u32], sp: SpecialIds) -> Vec<Document> {
    let mut docs = Vec::new();
    let mut cur: Option<Document> = None;
    let mut sent_start = 0;
    for (i, &t) in tokens.iter().enumerate() {
        if t == sp.bos {
            cur = Some(Document { start: i, end: i, sentences: Vec::new() });
            sent_start = i + 1;
        } else if let Some(d) = cur.as_mut() {
            if t == sp.sep {
                if i > sent_start {
                    d.sentences.push((sent_start, i));
                }
                sent_start = i + 1;
            } else if t == sp.eos {
                d.end = i + 1;
                if let Some(d) = cur.take() {
                    if !d.sentences.is_empty() {
                        docs.push(d);
                    }
                }
            }
        }
    }
    docs
}

/// A padded batch of `B` document windows of at most `S` sentences.
#[derive(Debug, Clone)]
pub struct DocBatch {
    pub batch: usize,
    /// Decoder length `T` (longest window + 1 for the shifted targets).
    pub len: usize,
    /// `(B, T)` inputs `<bos> s1 <sep> ...`, padded with `<pad>`.
    pub inputs: Vec<i64>,
    /// `(B, T)` next-token targets, `-100` where there is nothing to predict.
    pub targets: Vec<i64>,
    /// `(B, T)` sentence slot of every input token.
    pub slots: Vec<i64>,
    /// Sentences of all documents, `(N, L)` padded with `<pad>`, row-major.
    pub sentences: Vec<i64>,
    pub sentence_len: usize,
    /// `(N, L)` true on real tokens.
    pub sentence_mask: Vec<bool>,
    /// For each sentence row: (document row, slot).
    pub sentence_pos: Vec<(usize, usize)>,
}

/// Builds a batch from `(document, first sentence)` windows of `max_sentences` sentences;
/// sentences are cut to `max_sentence_len` tokens for the encoder (the decoder sees them whole).
pub fn doc_batch(
    tokens: &[u32],
    windows: &[(&Document, usize)],
    max_sentences: usize,
    max_sentence_len: usize,
    sp: SpecialIds,
) -> DocBatch {
    let pad = sp.pad as i64;
    let mut rows: Vec<Vec<i64>> = Vec::new();
    let mut slot_rows: Vec<Vec<i64>> = Vec::new();
    let mut sents: Vec<Vec<i64>> = Vec::new();
    let mut sentence_pos = Vec::new();
    for (b, (doc, first)) in windows.iter().enumerate() {
        let chosen = &doc.sentences[*first..(*first + max_sentences).min(doc.sentences.len())];
        let mut row = vec![sp.bos as i64];
        let mut slots = vec![0i64];
        for (k, &(s, e)) in chosen.iter().enumerate() {
            row.extend(tokens[s..e].iter().map(|&t| t as i64));
            row.push(sp.sep as i64);
            slots.extend(std::iter::repeat_n(k as i64, e - s + 1));
            let cut = e.min(s + max_sentence_len);
            sents.push(tokens[s..cut].iter().map(|&t| t as i64).collect());
            sentence_pos.push((b, k));
        }
        // A window that reaches the end of its document also learns to stop.
        if *first + chosen.len() == doc.sentences.len() {
            row.push(sp.eos as i64);
            slots.push((chosen.len() as i64 - 1).max(0));
        }
        rows.push(row);
        slot_rows.push(slots);
    }
    let len = rows.iter().map(Vec::len).max().unwrap_or(1).max(2) - 1;
    let mut inputs = Vec::with_capacity(rows.len() * len);
    let mut targets = Vec::with_capacity(rows.len() * len);
    let mut slots = Vec::with_capacity(rows.len() * len);
    for (row, srow) in rows.iter().zip(&slot_rows) {
        for i in 0..len {
            inputs.push(row.get(i).copied().unwrap_or(pad));
            targets.push(row.get(i + 1).copied().unwrap_or(-100));
            slots.push(srow.get(i).copied().unwrap_or(0));
        }
    }
    let sentence_len = sents.iter().map(Vec::len).max().unwrap_or(1).max(1);
    let mut sentences = Vec::with_capacity(sents.len() * sentence_len);
    let mut sentence_mask = Vec::with_capacity(sents.len() * sentence_len);
    for s in &sents {
        for i in 0..sentence_len {
            sentences.push(s.get(i).copied().unwrap_or(pad));
            sentence_mask.push(i < s.len());
        }
    }
    DocBatch { batch: rows.len(), len, inputs, targets, slots, sentences, sentence_len, sentence_mask, sentence_pos }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SP: SpecialIds = SpecialIds { bos: 0, eos: 1, sep: 2, pad: 3 };

    #[test]
    fn index_and_batch() {
        // doc A: [5 6] [7]; doc B: [8 9 10]; then an unfinished doc.
        let toks = [0, 5, 6, 2, 7, 2, 1, 0, 8, 9, 10, 2, 1, 0, 11];
        let docs = index_documents(&toks, SP);
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[0].sentences, vec![(1, 3), (4, 5)]);
        assert_eq!((docs[1].start, docs[1].end), (7, 13));
        let b = doc_batch(&toks, &[(&docs[0], 0), (&docs[1], 0)], 8, 2, SP);
        assert_eq!(b.len, 6);
        assert_eq!(&b.inputs[..6], &[0, 5, 6, 2, 7, 2]);
        assert_eq!(&b.targets[..6], &[5, 6, 2, 7, 2, 1]);
        assert_eq!(&b.slots[..6], &[0, 0, 0, 0, 1, 1]);
        assert_eq!(&b.inputs[6..], &[0, 8, 9, 10, 2, 1]);
        assert_eq!(&b.targets[6..], &[8, 9, 10, 2, 1, -100]);
        // Sentences cut to 2 tokens for the encoder.
        assert_eq!(b.sentence_len, 2);
        assert_eq!(b.sentences, vec![5, 6, 7, 3, 8, 9]);
        assert_eq!(b.sentence_mask, vec![true, true, true, false, true, true]);
        assert_eq!(b.sentence_pos, vec![(0, 0), (0, 1), (1, 0)]);
        // A window that stops before the end has no <eos> target.
        let w = doc_batch(&toks, &[(&docs[0], 0)], 1, 8, SP);
        assert_eq!(w.inputs, vec![0, 5, 6]);
        assert_eq!(w.targets, vec![5, 6, 2]);
    }
}
