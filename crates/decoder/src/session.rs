//! Generation through a sliding window of sentences, for rotary decoders (issue 25).
//!
//! A [`SlidingSession`] keeps one cache for a whole text. Each [`SlidingSession::write`]
//! writes the next sentences under a new plan (its slot 0 is sentence `origin` of the text),
//! first forgetting the cache entries that no row's window reaches any more: with rotary
//! positions and the sentence window, what the remaining entries hold does not depend on
//! where the window starts, so nothing is read twice. The learned-position decoder instead
//! re-reads each window (`generate_guided` on the window's text).
//!
//! With a [`Prior`] the session keeps a second cache, of another model fed the same tokens,
//! positions and sentence ids (its window forgets with the decoder's), and draws from the
//! product of the two models' next-token distributions.
//!
//! Rows are sentence-aligned: each call writes the same number of sentences in every row, and
//! a row that ends its sentences early feeds padding (a sentence id no window reaches) until
//! the others end theirs.

use crate::generate::Guide;
use crate::model::{slot_ids, Decoder, DecoderCache};
use crate::prior::{Models, Prior, PriorStep};
use crate::sampling::LogitsProcessor;
use crate::token_loop::{token_loop, Feeder, History};
use crate::token_loop::{GenerateOptions, Generated, StopReason};
use tch::Tensor;

/// The sentence id of padding: below every window.
const PAD_SENTENCE: i64 = -(1 << 40);

/// Tokens the repetition penalty looks back on: about what a re-read window of the shipped
/// decoder holds, so a long text's names are not penalised for being used all along.
const HISTORY: usize = 192;

pub struct SlidingSession {
    cache: DecoderCache,
    /// The prior's cache (same rows as the sample rows, no guidance copies).
    prior: Option<DecoderCache>,
    guide: Guide,
    window: i64,
    /// Per sample row: the next position, the sentence of the next token, the tokens drawn and
    /// not yet fed (the prompt at first, then the `<sep>` that ended the last call), every
    /// token so far (for the repetition penalty), and whether the row has ended for good.
    pos: Vec<i64>,
    sent: Vec<i64>,
    pending: Vec<Vec<i64>>,
    history: Vec<Vec<i64>>,
    ended: Vec<bool>,
    /// Positions fed to the cache so far, padding included.
    fed: i64,
}

impl SlidingSession {
    /// A session that continues `prompts` (one per row, each `<bos> ... `), whose first
    /// sentence is sentence `first` of the text; `weight` is the plan guidance (1: none).
    /// `None` for a decoder without rotary positions.
    pub fn new(model: &Decoder, prompts: &[Vec<i64>], first: i64, weight: f64) -> Option<Self> {
        let r = model.config().rotary?;
        Some(Self::start(model, prompts, first, weight, r.window, None))
    }

    /// [`SlidingSession::new`] for a rotary decoder whose sentence window is `window`, with a
    /// cache for `prior` when there is one (its calls must then pass the same prior).
    pub(crate) fn start(
        model: &Decoder,
        prompts: &[Vec<i64>],
        first: i64,
        weight: f64,
        window: i64,
        prior: Option<Prior>,
    ) -> Self {
        let b = prompts.len();
        let weight = (weight != 1.0 && model.null_plan().is_some()).then_some(weight);
        let rows = if weight.is_some() { 2 * b } else { b } as i64;
        Self {
            cache: model.new_cache(None, rows),
            prior: prior.map(|p| p.model.new_cache(None, b as i64)),
            guide: Guide { b, weight },
            window,
            pos: vec![0; b],
            sent: vec![first; b],
            pending: prompts.to_vec(),
            history: prompts.iter().map(|p| p[p.len().saturating_sub(HISTORY)..].to_vec()).collect(),
            ended: vec![false; b],
            fed: 0,
        }
    }

    /// Row `r` becomes a copy of row `from[r]` (cache, prior cache, positions, pending tokens,
    /// history): a batch of drafts goes on from the drafts it keeps.
    pub fn keep_rows(&mut self, model: &Decoder, from: &[usize]) {
        assert_eq!(from.len(), self.guide.b, "one source row per row");
        let dev = model.device();
        let idx: Vec<i64> = from.iter().map(|&r| r as i64).collect();
        let both: Vec<i64> =
            self.guide.rows(&idx).iter().enumerate().map(|(k, &r)| r + (k / from.len() * from.len()) as i64).collect();
        self.cache.select_rows(&Tensor::from_slice(&both).to_device(dev));
        if let Some(c) = &mut self.prior {
            c.select_rows(&Tensor::from_slice(&idx).to_device(dev));
        }
        let pick = |v: &Vec<i64>| from.iter().map(|&r| v[r]).collect::<Vec<_>>();
        self.pos = pick(&self.pos);
        self.sent = pick(&self.sent);
        self.pending = from.iter().map(|&r| self.pending[r].clone()).collect();
        self.history = from.iter().map(|&r| self.history[r].clone()).collect();
        self.ended = from.iter().map(|&r| self.ended[r]).collect();
    }

    /// Number of cached positions (the longest row's window, padding included).
    pub fn cached(&self) -> i64 {
        self.cache.len()
    }

    /// Forgets the cache prefix that no row's window reaches: in each row, the entries before
    /// the first one of sentence `next - (window - 1)` (`next`: the sentence of the next token
    /// it feeds, a pending `<sep>` included), the shortest such prefix of all rows. An ended
    /// row reaches nothing.
    fn forget_behind(&mut self) {
        let n = self
            .cache
            .sentence_ids()
            .iter()
            .enumerate()
            .map(|(r, row)| {
                let r = r % self.guide.b; // the guided copy of row r has its sentence ids
                let need = if self.ended[r] { i64::MAX } else { self.sent[r] - (self.window - 1) };
                row.iter().take_while(|&&s| s < need).count() as i64
            })
            .min()
            .unwrap_or(0);
        self.cache.forget(0, n);
        if let Some(c) = &mut self.prior {
            c.forget(0, n); // fed the same positions
        }
    }

    /// Feeds `rows` (per sample row: tokens, their positions and sentence ids), left-padded to
    /// one length with padding no window reaches; returns the last position's logits `(B, V)`.
    fn feed(
        &mut self,
        model: &Decoder,
        prior: Option<Prior>,
        rows: &[(Vec<i64>, Vec<i64>, Vec<i64>)],
        pad_id: i64,
    ) -> Tensor {
        let (dev, b) = (model.device(), self.guide.b);
        let bm = if self.guide.weight.is_some() { 2 * b } else { b } as i64;
        let len = rows.iter().map(|r| r.0.len()).max().unwrap_or(0).max(1);
        let (mut tok, mut pos, mut sent) = (Vec::new(), Vec::new(), Vec::new());
        for (t, p, s) in rows {
            let pad = len - t.len();
            tok.extend(std::iter::repeat_n(pad_id, pad).chain(t.iter().copied()));
            pos.extend(std::iter::repeat_n(0, pad).chain(p.iter().copied()));
            sent.extend(std::iter::repeat_n(PAD_SENTENCE, pad).chain(s.iter().copied()));
        }
        let shape = [bm, len as i64];
        let t = |v: &[i64]| Tensor::from_slice(&self.guide.rows(v)).view(shape).to_device(dev);
        let (tokens, positions, sentences) = (t(&tok), t(&pos), t(&sent));
        self.fed += len as i64;
        let guide = &self.guide;
        let decode = |cache: &mut DecoderCache| {
            let logits = model.forward_step(&tokens, &positions, Some(&sentences), None, cache);
            guide.logits(logits.select(1, -1))
        };
        let (Some(p), Some(prior_cache)) = (prior, &mut self.prior) else { return decode(&mut self.cache) };
        let pt = |v: &[i64]| Tensor::from_slice(v).view([b as i64, len as i64]).to_device(dev);
        let step = PriorStep::new(p.model, [pt(&tok), pt(&pos), pt(&sent)], prior_cache);
        p.step_beside(step, || decode(&mut self.cache))
    }

    /// A row's tokens to feed with their positions and sentence ids, which advance past them.
    fn advance(&mut self, r: usize, tokens: Vec<i64>, sep: i64) -> (Vec<i64>, Vec<i64>, Vec<i64>) {
        let pos = (0..tokens.len() as i64).map(|i| self.pos[r] + i).collect();
        let sent = slot_ids(&tokens, sep, i64::MAX).iter().map(|s| self.sent[r] + s).collect();
        self.pos[r] += tokens.len() as i64;
        self.sent[r] += tokens.iter().filter(|&&t| t == sep).count() as i64;
        (tokens, pos, sent)
    }

    /// Writes up to `opts.max_sentences` more sentences in every row that has not ended, under
    /// `plan` `(B, S, d_latent)` whose slot 0 is sentence `origin`. Rows that ended earlier get
    /// no tokens and keep their stop reason. `prior`: the session's prior, if it started with one.
    pub fn write(
        &mut self,
        models: Models,
        plan: &Tensor,
        origin: i64,
        sampler: &mut LogitsProcessor,
        opts: &GenerateOptions,
        on_token: impl FnMut(usize, i64),
    ) -> Generated {
        let (model, prior) = (models.decoder, models.prior);
        tch::no_grad(|| {
            let b = self.guide.b;
            let bm = if self.guide.weight.is_some() { 2 * b } else { b } as i64;
            self.cache.set_plan(model, self.guide.plan(model, Some(plan)).as_ref(), bm, origin);
            self.forget_behind();
            let pending: Vec<Vec<i64>> =
                (0..b).map(|r| if self.ended[r] { Vec::new() } else { std::mem::take(&mut self.pending[r]) }).collect();
            let rows: Vec<_> = pending.into_iter().enumerate().map(|(r, p)| self.advance(r, p, opts.sep_id)).collect();
            let first = self.feed(model, prior, &rows, opts.pad_id); // (B, V)
            let stop = self.ended.iter().map(|&e| e.then_some(StopReason::EndOfDocument)).collect();
            let mut history = History { rows: std::mem::take(&mut self.history), cap: Some(HISTORY) };
            let mut step = SessionStep { session: self, model, prior, sep_id: opts.sep_id, pad_id: opts.pad_id };
            let out = token_loop(first, &mut step, &mut history, stop, (sampler, opts), on_token);
            self.history = history.rows;
            out
        })
    }
}

/// One [`SlidingSession::write`] as the token loop's [`Feeder`]: a row that ends its
/// sentences keeps its `<sep>` for the next call; a row that ends otherwise has ended for good.
struct SessionStep<'s, 'm> {
    session: &'s mut SlidingSession,
    model: &'m Decoder,
    prior: Option<Prior<'m>>,
    sep_id: i64,
    pad_id: i64,
}

impl Feeder for SessionStep<'_, '_> {
    fn context_full(&self, _r: usize) -> bool {
        false // rotary positions and the sentence window: the text may grow without end
    }

    fn drawn(&mut self, r: usize, id: i64, stop: Option<StopReason>) {
        match stop {
            Some(StopReason::Sentences) => self.session.pending[r].push(id), // fed by the next call
            Some(_) => self.session.ended[r] = true,
            None => {}
        }
    }

    fn feed(&mut self, step: &[Option<i64>], live: &[bool]) -> Tensor {
        let rows: Vec<_> = (0..step.len())
            .map(|r| {
                let t: Vec<i64> = step[r].filter(|_| live[r]).into_iter().collect();
                self.session.advance(r, t, self.sep_id)
            })
            .collect();
        self.session.feed(self.model, self.prior, &rows, self.pad_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token_loop::draw;
    use crate::{DecoderConfig, PlanConfig, RotaryConfig, SamplingConfig};
    use tch::{nn, Device, Kind};

    /// A rotary test decoder (sentence window 2, lookahead 1; with a plan of 8 slots of 8 when
    /// `plan`), its weights scaled up so that the plan and the window change greedy choices.
    fn rotary_model(seed: i64, plan: bool) -> (Decoder, nn::VarStore) {
        tch::manual_seed(seed);
        let vs = nn::VarStore::new(Device::Cpu);
        let mut cfg = DecoderConfig::test(30, plan.then_some(PlanConfig { d_latent: 8, max_slots: 8 }));
        cfg.rotary = Some(RotaryConfig { base: 10000.0, window: 2, lookahead: 1 });
        let model = Decoder::new(vs.root(), &cfg);
        tch::no_grad(|| vs.variables().values().for_each(|v| drop(v.shallow_clone().g_mul_scalar_(6.0))));
        (model, vs)
    }

    /// One sentence a call, at most 12 tokens, drawn from `allowed` (and `<sep>` = 2).
    fn one_sentence(allowed: &[i64]) -> GenerateOptions {
        GenerateOptions {
            max_new_tokens: 12,
            max_sentences: Some(1),
            eos_id: -1,
            sep_id: 2,
            pad_id: 3,
            banned: (0..30).filter(|t| *t != 2 && !allowed.contains(t)).collect(),
        }
    }

    /// Greedy writing through a sliding session, one sentence a call, gives the tokens of greedy
    /// decoding with full, uncached forwards over the whole text (sentence window and plan
    /// included), while the session's cache holds only the window.
    #[test]
    fn sliding_session_equals_full_forward_greedy() {
        let (model, _vs) = rotary_model(7, true);
        // Greedy over four tokens with a strong repetition penalty: sentences end often.
        let greedy = SamplingConfig { repetition_penalty: 4.0, ..SamplingConfig::greedy() };
        let opts = one_sentence(&[4, 5, 6]);
        let prompts = vec![vec![0i64, 7, 2, 8], vec![0i64, 9]];
        let plan = Tensor::randn([2, 8, 8], (Kind::Float, Device::Cpu)) * 3.0;
        let mut lp = LogitsProcessor::new(greedy, 0);
        let mut s = SlidingSession::new(&model, &prompts, 0, 1.0).unwrap();
        let mut written: Vec<Vec<i64>> = vec![Vec::new(); 2];
        for _ in 0..4 {
            let g = s.write((&model).into(), &plan, 0, &mut lp, &opts, |_, _| {});
            for (w, t) in written.iter_mut().zip(&g.tokens) {
                w.extend_from_slice(t);
            }
        }
        for (r, p) in prompts.iter().enumerate() {
            let mut seq = p.clone();
            while seq.len() < p.len() + written[r].len() {
                let x = Tensor::from_slice(&seq).unsqueeze(0);
                let slots = Tensor::from_slice(&slot_ids(&seq, 2, i64::MAX)).unsqueeze(0);
                let l = tch::no_grad(|| model.forward(&x, Some(&slots), Some(&plan.get(r as i64).unsqueeze(0)), false));
                let mut last: Vec<f32> = Vec::try_from(l.select(1, -1).view(-1)).unwrap();
                seq.push(draw(&mut lp, &mut last, &seq, &[], &seq, &opts));
            }
            assert_eq!(seq[p.len()..].to_vec(), written[r], "row {r}");
        }
        // Row 0 wrote 5 sentences, row 1 4; a window of 2 leaves at most the last two of each.
        assert!(
            s.cached() + 10 <= s.fed,
            "the session forgot too little: {} of {} positions cached",
            s.cached(),
            s.fed
        );
        assert!(written.iter().all(|w| w.iter().filter(|&&t| t == 2).count() >= 2), "{written:?}");
    }

    /// Greedy tokens of a session over `prompts`, one sentence a call, four calls.
    fn session_tokens(models: Models, prompts: &[Vec<i64>], plan: &Tensor, opts: &GenerateOptions) -> Vec<Vec<i64>> {
        let greedy = SamplingConfig::greedy();
        let mut lp = LogitsProcessor::new(greedy, 0);
        let mut s = SlidingSession::start(models.decoder, prompts, 0, 1.0, 2, models.prior);
        let mut written: Vec<Vec<i64>> = vec![Vec::new(); prompts.len()];
        for _ in 0..4 {
            let g = s.write(models, plan, 0, &mut lp, opts, |_, _| {});
            for (w, t) in written.iter_mut().zip(&g.tokens) {
                w.extend_from_slice(t);
            }
        }
        written
    }

    /// The fluency prior's product of experts at its ends: weight 0 writes what the decoder
    /// writes alone, weight 1 what the prior model writes alone (its own session: the same
    /// window and forgetting), and between them the rows write allowed tokens.
    #[test]
    fn a_prior_at_weight_0_and_1_gives_the_decoder_and_the_prior_alone() {
        let (dec, _v1) = rotary_model(7, true);
        let (ar, _v2) = rotary_model(11, false);
        let opts = one_sentence(&[4, 5, 6, 7, 8]);
        let prompts = vec![vec![0i64, 7, 2, 8], vec![0i64, 9]];
        let plan = Tensor::randn([2, 8, 8], (Kind::Float, Device::Cpu)) * 3.0;
        let alone = session_tokens((&dec).into(), &prompts, &plan, &opts);
        let with = |model: &Decoder, weight: f64| {
            session_tokens(Models { decoder: &dec, prior: Some(Prior { model, weight }) }, &prompts, &plan, &opts)
        };
        assert_eq!(with(&ar, 0.0), alone);
        let ar_alone = session_tokens((&ar).into(), &prompts, &plan, &opts);
        assert_ne!(ar_alone, alone, "the two models must write differently for the test to mean anything");
        assert_eq!(with(&ar, 1.0), ar_alone);
        let mixed = with(&ar, 0.5);
        assert!(mixed.iter().all(|r| !r.is_empty() && r.iter().all(|t| [2, 4, 5, 6, 7, 8].contains(t))), "{mixed:?}");
    }

    /// Rows that keep another row's drafts go on exactly as that row would: after
    /// `keep_rows([1, 1])` both rows write, greedily and under one plan, the sentence row 1
    /// writes in a session that kept nothing.
    #[test]
    fn kept_rows_continue_as_their_source() {
        let (model, _vs) = rotary_model(5, true);
        let greedy = SamplingConfig::greedy();
        let opts = one_sentence(&[4, 5, 6, 7, 8]);
        let prompts = vec![vec![0i64, 7, 2, 8], vec![0i64, 9]];
        let plan = (Tensor::randn([1, 8, 8], (Kind::Float, Device::Cpu)) * 3.0).expand([2, 8, 8], true);
        let run = |keep: bool| {
            let mut lp = LogitsProcessor::new(greedy, 0);
            let mut s = SlidingSession::new(&model, &prompts, 0, 1.0).unwrap();
            let first = s.write((&model).into(), &plan, 0, &mut lp, &opts, |_, _| {});
            if keep {
                s.keep_rows(&model, &[1, 1]);
            }
            (first, s.write((&model).into(), &plan, 0, &mut lp, &opts, |_, _| {}))
        };
        let (first, plain) = run(false);
        let (_, kept) = run(true);
        assert_ne!(first.tokens[0], first.tokens[1], "the rows must differ for the test to mean anything");
        assert_eq!(kept.tokens[0], plain.tokens[1]);
        assert_eq!(kept.tokens[1], plain.tokens[1]);
    }
}
