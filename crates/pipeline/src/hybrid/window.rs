//! Window arithmetic of the hybrid loop, pure and tested on its own.
//!
//! The decoder was trained on windows of `S_d` sentences (its plan's slots) that start at any
//! sentence of a story, seeing that window's text; the planner sees `S_p` slots at once. A long
//! text is written through a sliding window: while the text is shorter than `S_d` sentences the
//! decoder writes up to the window's end in one pass (cut where the text ends and where the
//! planner's reach, S_p slots past what is written, ends); after that the window holds the
//! `S_d - 1` sentences before the next one, so the decoder always sees as much of the text as
//! its slots hold, and slides by one sentence (with a stride K > 1, `--window-stride`, it holds
//! `S_d - K` and writes K; see [`decoder_window`]). Before a window, the planner fills the latents
//! it lacks, conditioned on up to `S_p / 2` latents of what was written.

/// Sentences `[start, end)` of the text that the decoder sees as one window: it reads the
/// written ones in `[start, written)` and writes up to `end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecoderWindow {
    pub start: usize,
    pub end: usize,
}

/// What the decoder reads for a window: the text's first `pinned` sentences, then the
/// sentences `[start, written)`; its plan's slots follow the same sentences in that order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecoderView {
    pub pinned: usize,
    pub start: usize,
}

impl DecoderView {
    /// The contiguous view from `start` (nothing pinned).
    pub fn from(start: usize) -> Self {
        Self { pinned: 0, start }
    }

    /// The text's sentence in plan slot `k`.
    pub fn sentence(&self, k: usize) -> usize {
        if k < self.pinned {
            k
        } else {
            self.start + k - self.pinned
        }
    }
}

/// The view of window `w` (with `written` sentences written) that keeps the text's first
/// `pin` sentences (`--window-pin`; the prompt's, say) in view after the window slides past
/// them: each pinned sentence takes the slot of the window's oldest one, and the window's new
/// sentences keep their slots. Pin 0, or a window that has not slid yet, is the window as is.
pub fn pinned_view(w: DecoderWindow, written: usize, pin: usize, decoder_slots: usize) -> DecoderView {
    let pinned = pin.min(written).min(decoder_slots.saturating_sub(w.end - written));
    let start = w.start.max(pinned).max((w.end + pinned).saturating_sub(decoder_slots));
    if start == pinned {
        return DecoderView::from(0); // [0, pinned) ++ [pinned, ..) is the text from its start
    }
    DecoderView { pinned, start }
}

/// One planner call: latents of sentences `[from, from + new)` sampled, conditioned on the
/// `ctx` written sentences before `from`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlanCall {
    pub from: usize,
    pub ctx: usize,
    pub new: usize,
}

/// The first sentence of the sliding decoder window (of `decoder_slots` slots) that writes
/// `sentence`: the `decoder_slots - 1` sentences before it are in view.
pub fn window_start(sentence: usize, decoder_slots: usize) -> usize {
    sentence.saturating_sub(decoder_slots.max(1) - 1)
}

/// The decoder window when `written` of `total` sentences are written (`written < total`),
/// for a decoder of `decoder_slots` slots and a planner of `planner_slots` slots. Once the
/// text fills the slots the window slides by `stride` sentences (1 to `decoder_slots - 1`,
/// clamped): it holds the `decoder_slots - stride` sentences before the next one and writes
/// `stride`. Stride 1 keeps the most text in view; a larger stride re-reads the window (a
/// prefill of up to `decoder_slots - 1` sentences) and waits for the slowest sample's
/// sentence end `stride` times less often.
pub fn decoder_window(
    written: usize,
    total: usize,
    decoder_slots: usize,
    planner_slots: usize,
    stride: usize,
) -> DecoderWindow {
    if window_start(written, decoder_slots) == 0 {
        return DecoderWindow { start: 0, end: decoder_slots.min(total).min(written + planner_slots) };
    }
    let stride = stride.clamp(1, decoder_slots.max(2) - 1);
    let start = (written + stride).saturating_sub(decoder_slots);
    DecoderWindow { start, end: (written + stride).min(total).min(written + planner_slots) }
}

/// The window's first sentence once the text in view fits the decoder's context: from `start`,
/// the earliest sentences leave the view until `<bos>`, the sentences `[start, written)`, the
/// open sentence and `room` new tokens fit in `max_len` (never past `written`).
pub fn fit_start(start: usize, written: usize, lens: &[usize], open: usize, room: usize, max_len: usize) -> usize {
    let mut start = start;
    let mut used: usize = 1 + open + lens[start..written].iter().map(|l| l + 1).sum::<usize>();
    while start < written && used + room > max_len {
        used -= lens[start] + 1;
        start += 1;
    }
    start
}

/// The planner call that fills a window ending at `end`: as many new slots as the planner
/// holds after its context (through the end of the text), the context at most half the
/// planner and never crowding out the window's own sentences.
pub fn plan_call(written: usize, total: usize, end: usize, planner_slots: usize) -> PlanCall {
    let ctx = written.min(planner_slots - (end - written)).min(planner_slots / 2);
    PlanCall { from: written, ctx, new: (total - written).min(planner_slots - ctx) }
}

/// The planner window of an edit of `len` sentences from `first` (0-based) in a text of
/// `n`: `(start, width)`, up to `planner_slots` slots centred on the edited range.
pub fn edit_window(first: usize, len: usize, n: usize, planner_slots: usize) -> (usize, usize) {
    let w = planner_slots.min(n);
    (first.saturating_sub((w - len) / 2).min(n - w), w)
}

/// `<bos> s_1 <sep> ... s_k <sep>` and the open sentence: what the decoder reads before it
/// writes.
pub fn decoder_prompt<S: AsRef<[i64]>>(
    bos: i64,
    sep: i64,
    sentences: impl IntoIterator<Item = S>,
    open: &[i64],
) -> Vec<i64> {
    let mut ids = vec![bos];
    for s in sentences {
        ids.extend_from_slice(s.as_ref());
        ids.push(sep);
    }
    ids.extend_from_slice(open);
    ids
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The prompt's decoder window text is what the loop's prompt step reads: every written
    /// sentence of the window, then the open one.
    #[test]
    fn decoder_prompt_reads_the_window_only() {
        let sentences: Vec<Vec<i64>> = (10..20).map(|i| vec![i]).collect();
        let w = decoder_window(10, 14, 4, 16, 1);
        assert_eq!(w.start, 7);
        let ids = decoder_prompt(1, 2, &sentences[w.start..10], &[99]);
        assert_eq!(ids, vec![1, 17, 2, 18, 2, 19, 2, 99]);
    }

    #[test]
    fn a_pinned_view_keeps_the_first_sentences_and_the_new_slots() {
        // 2 + 10 sentences, 8 decoder slots, stride 1, 10 written: the window [3, 11).
        let w = decoder_window(10, 12, 8, 16, 1);
        assert_eq!(w, DecoderWindow { start: 3, end: 11 });
        assert_eq!(pinned_view(w, 10, 0, 8), DecoderView::from(3));
        let v = pinned_view(w, 10, 2, 8);
        assert_eq!(v, DecoderView { pinned: 2, start: 5 });
        let slots: Vec<usize> = (0..8).map(|k| v.sentence(k)).collect();
        assert_eq!(slots, vec![0, 1, 5, 6, 7, 8, 9, 10], "pinned, the latest written, the new one");
        // Before the window slides, pinning changes nothing.
        let first = decoder_window(2, 12, 8, 16, 1);
        assert_eq!(pinned_view(first, 2, 2, 8), DecoderView::from(0));
        // Just after it slides: the window [1, 9) holds sentence 2's slot for the pins.
        let v = pinned_view(decoder_window(8, 12, 8, 16, 1), 8, 2, 8);
        assert_eq!((0..8).map(|k| v.sentence(k)).collect::<Vec<_>>(), vec![0, 1, 3, 4, 5, 6, 7, 8]);
        // A pin never takes the new sentences' slots (stride 4: 4 new, so at most 4 pinned),
        // nor more sentences than are written.
        let w4 = decoder_window(8, 20, 8, 16, 4);
        let v = pinned_view(w4, 8, 100, 8);
        assert_eq!(v.pinned, 4);
        assert_eq!((v.pinned..8).map(|k| v.sentence(k)).collect::<Vec<_>>(), vec![8, 9, 10, 11]);
        assert_eq!(pinned_view(decoder_window(1, 12, 8, 16, 1), 1, 5, 8), DecoderView::from(0));
        // Every view covers each sentence at most once, in order, within the slots.
        for written in 2..30 {
            for (pin, stride) in [(1, 1), (2, 1), (3, 2), (6, 3)] {
                let w = decoder_window(written, 30, 8, 16, stride);
                let v = pinned_view(w, written, pin, 8);
                let n = v.pinned + (w.end - v.start);
                let s: Vec<usize> = (0..n).map(|k| v.sentence(k)).collect();
                assert!(n <= 8 && s.windows(2).all(|p| p[0] < p[1]), "{w:?} {v:?} {s:?}");
                assert_eq!(*s.last().unwrap(), w.end - 1);
                assert!(v.start <= written, "{w:?} {v:?}");
            }
        }
    }

    /// Every window and planner call of a whole text, as the loop takes them when each
    /// window is written in full.
    fn schedule(prompt: usize, want: usize, sd: usize, sp: usize) -> Vec<(DecoderWindow, Option<PlanCall>)> {
        schedule_stride(prompt, want, sd, sp, 1)
    }

    fn schedule_stride(
        prompt: usize,
        want: usize,
        sd: usize,
        sp: usize,
        stride: usize,
    ) -> Vec<(DecoderWindow, Option<PlanCall>)> {
        let total = prompt + want;
        let (mut written, mut planned) = (prompt, prompt);
        let mut out = Vec::new();
        while written < total {
            let w = decoder_window(written, total, sd, sp, stride);
            let call = (planned < w.end).then(|| plan_call(written, total, w.end, sp));
            if let Some(c) = call {
                assert!(c.from + c.new <= total && c.ctx <= c.from && c.ctx + c.new <= sp, "{c:?}");
                planned = c.from + c.new;
            }
            assert!(w.start <= written && written < w.end && w.end - w.start <= sd, "{w:?}");
            out.push((w, call));
            written = w.end;
        }
        out
    }

    #[test]
    fn windows_cover_the_text_once_in_order() {
        let cases = [(2, 10, 8, 8, 1), (0, 5, 4, 16, 1), (11, 6, 4, 8, 1), (3, 13, 8, 16, 1), (1, 1, 1, 2, 1)];
        let strided = [(2, 10, 8, 16, 4), (2, 30, 8, 16, 3), (11, 6, 4, 8, 9), (1, 5, 1, 2, 4)];
        for (prompt, want, sd, sp, stride) in cases.into_iter().chain(strided) {
            let s = schedule_stride(prompt, want, sd, sp, stride);
            let mut next = prompt;
            for (w, _) in &s {
                assert!(w.end > next, "every window writes something");
                next = w.end;
            }
            assert_eq!(next, prompt + want);
        }
    }

    #[test]
    fn the_window_slides_one_sentence_at_a_time_once_full() {
        // 11 prompt sentences, decoder windows of 4: each new sentence sees the 3 before it.
        let s = schedule(11, 6, 4, 8);
        let w: Vec<(usize, usize)> = s.iter().map(|x| (x.0.start, x.0.end)).collect();
        assert_eq!(w, vec![(8, 12), (9, 13), (10, 14), (11, 15), (12, 16), (13, 17)]);
        // Context: at most half the planner (4), and the window's one new sentence fits.
        assert_eq!(s[0].1, Some(PlanCall { from: 11, ctx: 4, new: 4 }));
        // The planner is called again when the plan runs out: at 15, for the last 2 slots.
        let calls: Vec<PlanCall> = s.iter().filter_map(|x| x.1).collect();
        assert_eq!(calls, vec![PlanCall { from: 11, ctx: 4, new: 4 }, PlanCall { from: 15, ctx: 4, new: 2 }]);
    }

    #[test]
    fn a_stride_slides_several_sentences_at_once() {
        // 2 prompt sentences + 10, decoder of 8 slots, stride 4: after the first window, one
        // window holds sentences 4..8 and writes 8..12 (4 in view instead of 7, 2 windows
        // instead of 5).
        let s = schedule_stride(2, 10, 8, 16, 4);
        let w: Vec<(usize, usize)> = s.iter().map(|x| (x.0.start, x.0.end)).collect();
        assert_eq!(w, vec![(0, 8), (4, 12)]);
        // A stride past the slots is clamped: one sentence always stays in view.
        assert_eq!(decoder_window(8, 20, 8, 16, 99), DecoderWindow { start: 7, end: 15 });
        assert_eq!(decoder_window(8, 20, 8, 16, 0), decoder_window(8, 20, 8, 16, 1));
        // The last window stops at the text's end and at the planner's reach.
        assert_eq!(decoder_window(10, 12, 8, 16, 4), DecoderWindow { start: 6, end: 12 });
        assert_eq!(decoder_window(10, 30, 8, 2, 4), DecoderWindow { start: 6, end: 12 });
    }

    #[test]
    fn a_short_text_is_written_in_one_window() {
        let s = schedule(2, 10, 8, 8);
        let windows: Vec<DecoderWindow> = s.iter().map(|x| x.0).collect();
        assert_eq!(windows[0], DecoderWindow { start: 0, end: 8 });
        assert_eq!(windows[1], DecoderWindow { start: 1, end: 9 }, "then it slides: 7 sentences in view");
        assert_eq!(windows.last(), Some(&DecoderWindow { start: 4, end: 12 }));
        assert_eq!(s[0].1, Some(PlanCall { from: 2, ctx: 2, new: 6 }));
        // Never a restart: every window after the first sees sd - 1 = 7 written sentences.
        assert!(windows[1..].iter().all(|w| w.end - w.start == 8));
    }

    #[test]
    fn long_sentences_leave_the_view_to_fit_the_context() {
        // Sentences of 10 tokens, a window from 0 to 5 written, 20 tokens of room, context 48:
        // <bos> + 5 x 11 = 56 > 48 - 20: the first three leave the view.
        let lens = [10usize; 6];
        assert_eq!(fit_start(0, 5, &lens, 0, 20, 48), 3);
        assert_eq!(fit_start(0, 5, &lens, 0, 0, 100), 0, "it fits: nothing leaves");
        assert_eq!(fit_start(2, 5, &lens, 40, 20, 48), 5, "never past what is written");
    }

    #[test]
    fn one_sentence_windows() {
        let s = schedule(1, 3, 1, 2);
        let w: Vec<(usize, usize)> = s.iter().map(|x| (x.0.start, x.0.end)).collect();
        assert_eq!(w, vec![(1, 2), (2, 3), (3, 4)]);
        // Planner of 2: one context slot, one new slot per call.
        assert!(s.iter().all(|x| x.1.map(|c| (c.ctx, c.new)) == Some((1, 1))));
    }

    #[test]
    fn decoder_window_smaller_than_the_planner() {
        // sd 4, sp 16: one planner call plans every window ahead.
        let s = schedule(2, 10, 4, 16);
        assert_eq!(s[0].1, Some(PlanCall { from: 2, ctx: 2, new: 10 }));
        assert!(s[1..].iter().all(|x| x.1.is_none()), "later windows read the plan already made");
        assert_eq!(s.last().map(|x| x.0), Some(DecoderWindow { start: 8, end: 12 }));
    }

    #[test]
    fn planner_reach_cuts_a_long_decoder_window() {
        // sd 8 but the planner reaches only 4 slots past what is written.
        assert_eq!(decoder_window(2, 20, 8, 4, 1), DecoderWindow { start: 0, end: 6 });
        assert_eq!(plan_call(2, 20, 6, 4), PlanCall { from: 2, ctx: 0, new: 4 });
    }

    #[test]
    fn edit_windows_centre_and_clip() {
        assert_eq!(edit_window(5, 1, 20, 8), (2, 8));
        assert_eq!(edit_window(0, 2, 20, 8), (0, 8));
        assert_eq!(edit_window(18, 2, 20, 8), (12, 8));
        assert_eq!(edit_window(1, 1, 3, 8), (0, 3), "a text shorter than the planner is one window");
    }

    #[test]
    fn prompts_end_with_sep_and_the_open_sentence() {
        assert_eq!(decoder_prompt(1, 2, &[vec![7, 8], vec![9]], &[]), vec![1, 7, 8, 2, 9, 2]);
        assert_eq!(decoder_prompt(1, 2, &[] as &[Vec<i64>], &[5]), vec![1, 5]);
    }
}
