//! The one credit budget shared by every request of a run.
//!
//! Freshservice gives each account a per-window credit allowance (`X-RateLimit-Total`, 100–500 a
//! minute by plan) shared with every other integration, plus a sub-limit on `GET /tickets`.
//! [`Budget`] paces requests at `budget_share × total / window` credits per second with a small
//! burst allowance, keeps in step with the server through `X-RateLimit-Total`,
//! `X-RateLimit-Remaining` and `X-RateLimit-Used-CurrentRequest`, and stops everyone after a 429
//! until `Retry-After` has passed, resuming with an empty bucket (no second burst).
//! `X-RateLimit-Remaining` is read as the server's count of the window, ours and the other
//! integrations' together: a log of what the run spent tells the two apart. Our own pacing may
//! put a window up to a full bucket past the share, and that never trips the ceiling; what the
//! count shows beyond our spending is the others': within their part it costs the run nothing,
//! beyond it the run slows its pace to make room for them and, while the count says the window
//! is spent, holds (one probe call at a time) until it turns.
//! The calls that feed the workers (listing pages, reference lists) go first: while one waits,
//! per-ticket calls leave it the credits it needs, so a deep queue of workers never starves the
//! listing that fills it.
//! The headers are not trusted blindly ([`RateHeaders::sane`]): values outside what an account
//! can have (a total of 0 or above [`MAX_TOTAL`], a call costing more than
//! [`MAX_CREDITS_PER_CALL`], a remainder above the total) are ignored or clamped, and the debt a
//! response can put on the bucket is at most one window's worth, so a broken header never makes
//! the limiter divide by zero, overflow, or wait for decades.
//! [`Budget`] is pure (time is a parameter, so it is unit-tested without sleeping);
//! [`Limiter`] wraps it for async callers. Nothing else in the crate waits for the budget.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How much of the account's budget a run may use, and how long the API's rate window is.
#[derive(Debug, Clone)]
pub struct LimiterConfig {
    /// Share of `X-RateLimit-Total` this run may spend (0 < share ≤ 1); the rest is left for
    /// other integrations on the account.
    pub budget_share: f64,
    /// Length of the API's rate window (60 s on Freshservice; shorter on a scaled simulator).
    pub window: Duration,
    /// The allowance assumed until the first response tells the real one (the smallest plan).
    pub initial_total: u32,
}

impl Default for LimiterConfig {
    fn default() -> Self {
        LimiterConfig {
            budget_share: 0.9,
            window: Duration::from_secs(60),
            initial_total: 100,
        }
    }
}

/// The published `GET /tickets` sub-limit for an account allowance (API reference §3); unknown
/// allowances get the same proportion as the Growth plan.
pub fn list_tickets_sublimit(total: u32) -> u32 {
    match total {
        100 => 40,
        200 => 70,
        400 => 120,
        500 => 140,
        other => ((other as f64) * 0.35).floor().max(1.0) as u32,
    }
}

#[derive(Debug, Clone)]
struct Bucket {
    rate_per_sec: f64,
    capacity: f64,
    tokens: f64,
    last: Instant,
    /// Tokens lent beyond the capacity (the opening allowance): the refill pays them back
    /// before it fills the bucket, so no window gets more than a full bucket and its rate.
    lent: f64,
    /// When the bucket was made, and the tokens taken since (see [`Bucket::rebase`]).
    born: Instant,
    taken: f64,
}

impl Bucket {
    fn new(per_window: f64, window: Duration, burst: f64, now: Instant) -> Bucket {
        let rate_per_sec = per_window / window.as_secs_f64();
        Bucket {
            rate_per_sec,
            capacity: burst,
            tokens: burst,
            last: now,
            lent: 0.0,
            born: now,
            taken: 0.0,
        }
    }

    fn take(&mut self, tokens: f64) {
        self.tokens -= tokens;
        self.taken += tokens;
    }

    /// Reshapes the bucket as if the rate had been known from its start, when that is less
    /// than a window ago: a full bucket then, the refill at the rate since, less what was taken
    /// (debts included). The opening was lent against a smaller allowance assumed; against the
    /// real one its credits may be owed no more, and paying them back would leave the first
    /// round trip's budget unspent. No window gets more than it would have with the rate known.
    fn rebase(&mut self, per_window: f64, window: Duration, burst: f64, now: Instant) {
        let age = now.saturating_duration_since(self.born);
        self.reshape(per_window, window, burst);
        if age < window {
            let tokens = burst + age.as_secs_f64() * self.rate_per_sec - self.taken;
            self.tokens = tokens.min(burst);
            self.lent = 0.0;
            self.last = now;
        }
    }

    fn refill(&mut self, now: Instant) {
        if now > self.last {
            let gained = now.duration_since(self.last).as_secs_f64() * self.rate_per_sec;
            let repaid = gained.min(self.lent);
            self.lent -= repaid;
            // (Tokens above the capacity are lent: spent, never refilled.)
            if self.tokens < self.capacity {
                self.tokens = (self.tokens + gained - repaid).min(self.capacity);
            }
            self.last = now;
        }
    }

    /// Time until `cost` tokens are available with `reserved` tokens left over (zero if they
    /// are). A full bucket always lets a call go: the reservation is held by a call that may
    /// not be polled for a while (a page read ahead while the listing waits for the workers to
    /// take its last page), and work that waited for more than a bucket holds would wait for
    /// it forever.
    fn wait_for(&self, cost: f64, reserved: f64, now: Instant) -> Duration {
        // A cost above the burst size waits for a full bucket and then runs the bucket negative.
        let cost = cost.min(self.capacity);
        let missing = cost + reserved.min(self.capacity - cost) - self.tokens;
        let not_before = self.last.saturating_duration_since(now);
        if missing <= 0.0 {
            return not_before;
        }
        // The rate is positive and finite (the window is at least a millisecond, the share at
        // least 1 %) and the debt is bounded, so this is finite; fall back to no extra wait
        // rather than panic if that ever breaks.
        // The refill pays back what was lent before it adds a token.
        not_before
            + Duration::try_from_secs_f64((missing + self.lent) / self.rate_per_sec)
                .unwrap_or_default()
    }

    /// Lets `tokens` go at once (when more than the bucket holds), lent against the refill.
    fn lend(&mut self, tokens: f64) {
        if tokens > self.tokens {
            self.lent += tokens - self.tokens;
            self.tokens = tokens;
        }
    }

    fn reshape(&mut self, per_window: f64, window: Duration, burst: f64) {
        self.rate_per_sec = per_window / window.as_secs_f64();
        self.capacity = burst;
        self.tokens = self.tokens.min(burst);
    }
}

/// Credits spent, by time, over the last window (acquisitions, and the corrections
/// `Used-CurrentRequest` makes, negative for a refund), with their sum kept.
#[derive(Debug, Clone, Default)]
struct SpendLog {
    entries: VecDeque<(Instant, f64)>,
    /// Sum of the entries.
    sum: f64,
}

impl SpendLog {
    fn record(&mut self, credits: f64, now: Instant) {
        if credits != 0.0 {
            self.entries.push_back((now, credits));
            self.sum += credits;
        }
    }

    /// Forgets what is a `window` or more before `now`.
    fn forget(&mut self, now: Instant, window: Duration) {
        while let Some(&(at, credits)) = self.entries.front() {
            if now.saturating_duration_since(at) < window {
                break;
            }
            self.sum -= credits;
            self.entries.pop_front();
        }
        if self.entries.is_empty() {
            // Drop the rounding the running sum gathered.
            self.sum = 0.0;
        }
    }
}

/// The largest value pushed within the last window (a monotonic queue).
#[derive(Debug, Clone, Default)]
struct SlidingMax {
    values: VecDeque<(Instant, f64)>,
}

impl SlidingMax {
    fn push(&mut self, value: f64, now: Instant, window: Duration) {
        while self.values.back().is_some_and(|&(_, v)| v <= value) {
            self.values.pop_back();
        }
        self.values.push_back((now, value));
        self.expire(now, window);
    }

    fn expire(&mut self, now: Instant, window: Duration) {
        while self
            .values
            .front()
            .is_some_and(|&(at, _)| now.saturating_duration_since(at) >= window)
        {
            self.values.pop_front();
        }
    }

    /// The largest value of the last window, or 0.
    fn max(&self, now: Instant, window: Duration) -> f64 {
        self.values
            .iter()
            .find(|&&(at, _)| now.saturating_duration_since(at) < window)
            .map_or(0.0, |&(_, v)| v.max(0.0))
    }
}

/// Who asks for credits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Calls that feed the workers (listing pages, departments, agents, requesters): served
    /// before any [`Class::Work`] call that is waiting.
    Feed,
    /// Per-ticket calls (conversations, time entries, views).
    Work,
}

/// The budget arithmetic, with time passed in.
#[derive(Debug, Clone)]
pub struct Budget {
    config: LimiterConfig,
    total: u32,
    credits: Bucket,
    list_calls: Bucket,
    paused_until: Option<Instant>,
    /// The server's count holds this run back (others spent beyond the tolerance): the bucket
    /// does not refill, and one call may go at this instant to see whether the window turned.
    held: Option<Instant>,
    /// The most the server's counts showed other integrations spending in a window, over the
    /// last window (a lower bound: the count less all we may have had counted in it).
    others: SlidingMax,
    /// Credits held back for waiting [`Class::Feed`] calls.
    reserved: f64,
    /// Whether a server's answer has told the allowance (`X-RateLimit-Total`) yet.
    learned: bool,
    /// What this run spent over the last window, by time: the part of the server's count that
    /// is ours.
    spent: SpendLog,
}

/// Why a call cannot go yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wait {
    /// How long to wait before asking again.
    pub wait: Duration,
    /// The credit budget (not the list sub-limit or a 429 pause) is what is missing.
    pub for_credits: bool,
}

/// The rate-limit headers of one response.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateHeaders {
    /// `X-RateLimit-Total`: the account's allowance per rate window.
    pub total: Option<u32>,
    /// `X-RateLimit-Remaining`: credits left in the current window.
    pub remaining: Option<u32>,
    /// `X-RateLimit-Used-CurrentRequest`: credits this call cost.
    pub used: Option<u32>,
}

/// The largest `X-RateLimit-Total` believed: 200 times the Enterprise allowance. A larger one is
/// a broken header, and believing it would switch pacing off.
pub const MAX_TOTAL: u32 = 100_000;

/// Credits a run may spend at once before the first answer: the five reference lists
/// (workspaces, departments, agents, groups, requesters: 1 each) and two listing pages (5 each
/// with `include=stats,tags`), asked for together so that the first tickets come back one round
/// trip after the start. Lent, not given: the refill pays them back before it fills the bucket
/// again, so the first window gets no more than any other. A long listing widens the opening
/// ([`Budget::open`]); when the first answer shows an allowance larger than assumed, the budget
/// is rebased on it from the start, and what it would not have owed is owed no more.
pub const OPENING_CREDITS: f64 = 16.0;

/// `GET /tickets` calls a run may make at once before the first answer: the listing's first
/// page and the one read ahead.
const OPENING_LIST_CALLS: f64 = 2.0;

/// The most credits one call is believed to cost (`X-RateLimit-Used-CurrentRequest`): the
/// dearest call we make costs 11 (a listing with five includes). Charging more would stall
/// every worker for the debt.
pub const MAX_CREDITS_PER_CALL: u32 = 100;

impl RateHeaders {
    /// The headers with nonsense removed: a total of 0 or above [`MAX_TOTAL`] and a used count
    /// above [`MAX_CREDITS_PER_CALL`] are dropped (as if absent: the estimate and the allowance
    /// believed so far stand), a remainder above the total is cut to the total (and dropped when
    /// above [`MAX_TOTAL`]). Non-numeric and negative values never get here (they do not parse
    /// as `u32`).
    pub fn sane(self) -> RateHeaders {
        let total = self.total.filter(|t| (1..=MAX_TOTAL).contains(t));
        let remaining = self
            .remaining
            .filter(|&r| r <= MAX_TOTAL)
            .map(|r| total.map_or(r, |t| r.min(t)));
        let used = self.used.filter(|&u| u <= MAX_CREDITS_PER_CALL);
        RateHeaders {
            total,
            remaining,
            used,
        }
    }
}

impl Budget {
    /// A full budget at `now`, sized from `config.initial_total` until the server reports its own.
    pub fn new(mut config: LimiterConfig, now: Instant) -> Budget {
        // A zero window would make every rate infinite (and 0 × ∞ a NaN); the job refuses
        // one, this is the last line.
        config.window = config.window.max(Duration::from_millis(1));
        let total = config.initial_total.clamp(1, MAX_TOTAL);
        let (mut credits, mut list_calls) = Self::buckets(&config, total, now);
        // The run's opening calls go at once, before any answer tells the allowance: the
        // reference lists and the listing's first page and the one read ahead (see
        // [`OPENING_CREDITS`]), never more than the window's share of the allowance assumed.
        let per_window = Self::shape(&config, total).0;
        credits.lend(OPENING_CREDITS.min(per_window));
        list_calls.lend(OPENING_LIST_CALLS);
        Budget {
            config,
            total,
            credits,
            list_calls,
            paused_until: None,
            held: None,
            others: SlidingMax::default(),
            reserved: 0.0,
            learned: false,
            spent: SpendLog::default(),
        }
    }

    fn shape(config: &LimiterConfig, total: u32) -> (f64, f64, f64, f64) {
        let share = config.budget_share.clamp(0.01, 1.0);
        let per_window = share * total as f64;
        // A burst of 5 % of the window's share lets a run start at once without ever pushing a
        // window past the allowance (pacing gives at most share + 5 % of it per window).
        let burst = (per_window * 0.05).max(5.0).min(per_window);
        let list_per_window = (share * list_tickets_sublimit(total) as f64).max(1.0);
        let list_burst = (list_per_window * 0.05).max(1.0);
        (per_window, burst, list_per_window, list_burst)
    }

    fn buckets(config: &LimiterConfig, total: u32, now: Instant) -> (Bucket, Bucket) {
        let (per_window, burst, list_per_window, list_burst) = Self::shape(config, total);
        (
            Bucket::new(per_window, config.window, burst, now),
            Bucket::new(list_per_window, config.window, list_burst, now),
        )
    }

    /// Assumes `total` as the allowance until an answer tells it (what the previous run saw):
    /// the budget starts again as [`Self::new`] would with it. Once an answer has told the
    /// allowance this does nothing.
    pub fn assume(&mut self, total: u32, now: Instant) {
        if !self.learned {
            let config = LimiterConfig {
                initial_total: total,
                ..self.config
            };
            *self = Budget::new(config, now);
        }
    }

    /// Widens the opening (before the first answer): `credits` and `list_calls` may go at once,
    /// lent like [`OPENING_CREDITS`] against the refill, never more than the window's share of
    /// the allowance assumed (nor less than the opening [`Self::new`] lent). A long listing asks
    /// for its first pages together with the reference data (see
    /// `pipeline::policy::opening_pages`).
    pub fn open(&mut self, credits: f64, list_calls: f64) {
        let (per_window, _, list_per_window, _) = Self::shape(&self.config, self.total);
        self.credits
            .lend(credits.max(OPENING_CREDITS).min(per_window));
        self.list_calls
            .lend(list_calls.max(OPENING_LIST_CALLS).min(list_per_window));
    }

    /// The account allowance currently believed (credits per window).
    pub fn total(&self) -> u32 {
        self.total
    }

    /// Credits per window this run aims to spend.
    pub fn target_per_window(&self) -> f64 {
        self.config.budget_share.clamp(0.01, 1.0) * self.total as f64
    }

    /// Takes `cost` credits for a [`Class::Work`] call (and one list call when
    /// `list_tickets`), or says how long to wait.
    pub fn try_acquire(
        &mut self,
        cost: u32,
        list_tickets: bool,
        now: Instant,
    ) -> Result<(), Duration> {
        self.try_acquire_as(Class::Work, cost, list_tickets, now)
            .map_err(|w| w.wait)
    }

    /// Takes `cost` credits (and one list call when `list_tickets`), or says how long to wait
    /// and whether the credits (not the list sub-limit or a 429 pause) are what is missing.
    /// A [`Class::Work`] call leaves the [reserved](Self::reserve) credits alone.
    pub fn try_acquire_as(
        &mut self,
        class: Class,
        cost: u32,
        list_tickets: bool,
        now: Instant,
    ) -> Result<(), Wait> {
        if let Some(until) = self.paused_until {
            if now < until {
                return Err(Wait {
                    wait: until - now,
                    for_credits: false,
                });
            }
            self.paused_until = None;
        }
        if self.held.is_some() {
            // Held: what the refill would give is the others' already.
            self.credits.last = self.credits.last.max(now);
        }
        self.credits.refill(now);
        self.list_calls.refill(now);
        let cost = cost as f64;
        if list_tickets {
            let wait = self.list_calls.wait_for(1.0, 0.0, now);
            if !wait.is_zero() {
                return Err(Wait {
                    wait,
                    for_credits: false,
                });
            }
        }
        let reserved = match class {
            Class::Feed => 0.0,
            Class::Work => self.reserved,
        };
        let mut wait = self.credits.wait_for(cost, reserved, now);
        if let Some(probe_at) = self.held {
            if !wait.is_zero() {
                wait = probe_at.saturating_duration_since(now);
                if wait.is_zero() {
                    self.held = Some(now + self.probe_interval());
                }
            }
        }
        self.spent.forget(now, self.config.window);
        if !wait.is_zero() {
            return Err(Wait {
                wait,
                for_credits: true,
            });
        }
        self.credits.take(cost);
        if list_tickets {
            self.list_calls.take(1.0);
        }
        self.spent.record(cost, now);
        Ok(())
    }

    /// Holds `cost` credits back for a waiting [`Class::Feed`] call.
    pub fn reserve(&mut self, cost: u32) {
        self.reserved += cost as f64;
    }

    /// Undoes [`Self::reserve`].
    pub fn unreserve(&mut self, cost: u32) {
        self.reserved = (self.reserved - cost as f64).max(0.0);
    }

    /// Brings the budget in step with a response. `estimated` is what [`Self::try_acquire`] took,
    /// `rtt` how long the call took from the budget's yes to the answer. The headers are
    /// [sanitised](RateHeaders::sane) first.
    ///
    /// `X-RateLimit-Remaining` is a ceiling: the budget does not plan to spend what the server
    /// says is left for the other integrations on the account (the total less this run's
    /// share). Alone on the account the run never meets it: the tolerance covers what our own
    /// pacing can put in a server window beyond the share, however the window falls (see
    /// [`Self::tolerance`]). The others are the count less what we spent in the last window:
    /// within their part they cost us nothing; beyond it they take the tolerance away, we leave
    /// them room on top of what they spent, and [`Self::pace`] slows us down for the windows to
    /// come.
    pub fn observe(&mut self, headers: RateHeaders, estimated: u32, rtt: Duration, now: Instant) {
        let headers = headers.sane();
        if let Some(total) = headers.total.filter(|&t| t > 0) {
            if total != self.total {
                // The first allowance the server reports, when more than assumed: the budget
                // is what it would have been with it known from the start.
                let rebase = !self.learned && total > self.total;
                self.total = total;
                let (per_window, burst, list_per_window, list_burst) =
                    Self::shape(&self.config, total);
                let window = self.config.window;
                self.credits.refill(now);
                self.list_calls.refill(now);
                if rebase {
                    self.credits.rebase(per_window, window, burst, now);
                    self.list_calls
                        .rebase(list_per_window, window, list_burst, now);
                } else {
                    self.credits.reshape(per_window, window, burst);
                    self.list_calls.reshape(list_per_window, window, list_burst);
                }
            }
            self.learned = true;
        }
        if let Some(used) = headers.used {
            // Refund or charge the difference between the estimate and the real cost; the
            // bucket never holds more than it can, nor a debt beyond one window (the server
            // forgets older spending when its window turns).
            let tokens = self.credits.tokens + estimated as f64 - used as f64;
            self.credits.taken += used as f64 - estimated as f64;
            self.credits.tokens = tokens
                .min(self.credits.capacity.max(self.credits.tokens))
                .max(-self.target_per_window());
            self.spent.record(used as f64 - estimated as f64, now);
        }
        if let Some(remaining) = headers.remaining {
            // (A round trip longer than a window says nothing more: cap it there.)
            let rtt = rtt.min(self.config.window);
            let reserve = self.total as f64 - self.target_per_window();
            self.spent.forget(now, self.config.window);
            let counted = self.total as f64 - remaining as f64;
            // Mid-window the last window's spending holds some of the server's previous one:
            // this undercounts the others, and never overcounts them by much more than the
            // tolerance.
            let others = counted - self.spent.sum;
            self.others.push(others, now, self.config.window);
            // Left unspent for the others: while they are within their part, what remains of
            // it less our tolerance (our overshoot may use what they leave, no more); beyond
            // it, as much again as they overspent (up to their whole part) for what they go on
            // spending.
            let headroom = if others <= reserve {
                (reserve - others - self.tolerance(rtt)).max(0.0)
            } else {
                (others - reserve).min(reserve)
            };
            let allowed = remaining as f64 - headroom;
            if allowed < self.credits.tokens {
                self.credits.tokens = allowed.max(-self.target_per_window());
                if self.held.is_none() {
                    self.credits.refill(now);
                    self.held = Some(now + self.probe_interval());
                }
            } else if self.held.is_some() && allowed >= self.credits.capacity {
                // The server's window turned: the run is back on its own pace.
                self.credits.tokens = self.credits.tokens.max(allowed.min(self.credits.capacity));
                self.credits.last = now;
                self.held = None;
            }
        }
        self.repace(now);
    }

    /// Sets the credits' refill rate to [`Self::pace`], after the refill at the old rate. The
    /// pace moves only with what the answers show, so every [`Self::observe`] calls this.
    fn repace(&mut self, now: Instant) {
        if self.held.is_some() {
            // Held: what the refill would give is the others' already.
            self.credits.last = self.credits.last.max(now);
        }
        self.credits.refill(now);
        self.credits.rate_per_sec = self.pace(now) / self.config.window.as_secs_f64();
    }

    /// How far the server's count of our calls can be ahead of the last window's spending: a
    /// full bucket, what the opening lent, and the refill of one round trip (the count is late
    /// by it, and a stretch of it can fall in the server's window but not in ours).
    fn tolerance(&self, rtt: Duration) -> f64 {
        self.credits.capacity + self.credits.lent + self.credits.rate_per_sec * rtt.as_secs_f64()
    }

    /// The credits per window this run paces itself at: its share, less what other
    /// integrations were seen spending beyond their part of the allowance in the last window
    /// (so that a neighbour that keeps spending more than its part gets it, and neither meets
    /// 429s).
    fn pace(&self, now: Instant) -> f64 {
        let target = self.target_per_window();
        let others = self.others.max(now, self.config.window);
        let reserve = self.total as f64 - target;
        // Beyond their part, a quarter more is given way for what their spending may grow by.
        (target - (others - reserve).max(0.0) * 1.25).max(target * 0.1)
    }

    /// How often a held run sends one call to see whether the server's window turned.
    fn probe_interval(&self) -> Duration {
        self.config.window / 20
    }

    /// A 429: nobody sends before `until`, and the rate then restarts from an empty bucket.
    pub fn pause(&mut self, until: Instant) {
        let until = self.paused_until.map_or(until, |u| u.max(until));
        self.paused_until = Some(until);
        for bucket in [&mut self.credits, &mut self.list_calls] {
            bucket.tokens = bucket.tokens.min(0.0);
            // The window has turned by then: what the opening borrowed is owed no more.
            bucket.lent = 0.0;
            bucket.last = bucket.last.max(until);
        }
    }
}

/// Counters of what the limiter did during a run.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LimiterStats {
    /// Sum of the time requests spent waiting for the budget (across workers).
    pub waited: Duration,
    /// Number of acquisitions that had to wait.
    pub waits: u64,
    /// The allowance last reported by the server.
    pub total: u32,
}

/// The async face of [`Budget`], shared by every request of a run.
#[derive(Debug)]
pub struct Limiter {
    budget: Mutex<Budget>,
    stats: Mutex<LimiterStats>,
    /// Credits of the calls waiting in [`Limiter::acquire`] right now.
    waiting: AtomicU64,
}

/// Takes a waiting call's credits off [`Limiter::waiting`] when it goes (or is cancelled).
struct Waiting<'a> {
    waiting: &'a AtomicU64,
    cost: u64,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.waiting.fetch_sub(self.cost, Ordering::Relaxed);
    }
}

impl Limiter {
    /// A limiter with a full budget, starting now.
    pub fn new(config: LimiterConfig) -> Limiter {
        Limiter {
            budget: Mutex::new(Budget::new(config, Instant::now())),
            stats: Mutex::new(LimiterStats::default()),
            waiting: AtomicU64::new(0),
        }
    }

    /// Waits until `cost` credits may be spent. A [`Class::Feed`] call that waits for credits
    /// reserves them, so that [`Class::Work`] calls stop taking them until it has gone.
    pub async fn acquire(&self, cost: u32, list_tickets: bool, class: Class) {
        let started = Instant::now();
        let mut waited = false;
        self.waiting.fetch_add(u64::from(cost), Ordering::Relaxed);
        let _waiting = Waiting {
            waiting: &self.waiting,
            cost: u64::from(cost),
        };
        // Releases the reservation also when the caller is cancelled mid-wait.
        let mut reservation = Reservation {
            budget: &self.budget,
            cost,
            held: false,
        };
        loop {
            // The lock is never held across the sleep.
            let wait = {
                let mut budget = lock(&self.budget);
                let result = budget.try_acquire_as(class, cost, list_tickets, Instant::now());
                match result {
                    Ok(()) => {
                        if reservation.held {
                            budget.unreserve(cost);
                            reservation.held = false;
                        }
                        None
                    }
                    Err(w) => {
                        if class == Class::Feed && w.for_credits && !reservation.held {
                            budget.reserve(cost);
                            reservation.held = true;
                        }
                        Some(w.wait)
                    }
                }
            };
            match wait {
                None => break,
                Some(wait) => {
                    waited = true;
                    tokio::time::sleep(wait.max(Duration::from_millis(1))).await;
                }
            }
        }
        if waited {
            let mut stats = lock(&self.stats);
            stats.waits += 1;
            stats.waited += started.elapsed();
        }
    }

    /// Credits of the calls waiting for the budget right now.
    pub fn waiting_credits(&self) -> u64 {
        self.waiting.load(Ordering::Relaxed)
    }

    /// See [`Budget::assume`].
    pub fn assume(&self, total: u32) {
        lock(&self.budget).assume(total, Instant::now());
    }

    /// See [`Budget::open`].
    pub fn open(&self, credits: f64, list_calls: f64) {
        lock(&self.budget).open(credits, list_calls);
    }

    /// Feeds a response's rate-limit headers back.
    pub fn observe(&self, headers: RateHeaders, estimated: u32, rtt: Duration) {
        let mut budget = lock(&self.budget);
        budget.observe(headers, estimated, rtt, Instant::now());
        lock(&self.stats).total = budget.total();
    }

    /// Stops every worker for `after` (a 429's `Retry-After`, already capped by `retry`).
    pub fn pause(&self, after: Duration) {
        let now = Instant::now();
        // An `after` beyond what an `Instant` can hold would panic; pause a day instead.
        let until = now
            .checked_add(after)
            .unwrap_or(now + Duration::from_secs(86_400));
        lock(&self.budget).pause(until);
    }

    /// A snapshot of the waits so far and the allowance last reported.
    pub fn stats(&self) -> LimiterStats {
        *lock(&self.stats)
    }

    /// Credits per window this run aims to spend, given what the server reported.
    pub fn target_per_window(&self) -> f64 {
        lock(&self.budget).target_per_window()
    }
}

/// Credits a waiting [`Class::Feed`] call holds back; released on drop.
struct Reservation<'a> {
    budget: &'a Mutex<Budget>,
    cost: u32,
    held: bool,
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        if self.held {
            lock(self.budget).unreserve(self.cost);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding these locks leaves plain numbers behind; keep going with them.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A budget whose opening allowance is paid back: a full bucket, pacing from `start`.
    fn paced(config: LimiterConfig, start: Instant) -> Budget {
        let mut budget = Budget::new(config, start);
        for bucket in [&mut budget.credits, &mut budget.list_calls] {
            bucket.tokens = bucket.capacity;
            bucket.lent = 0.0;
        }
        budget
    }

    fn config(share: f64, window_secs: u64) -> LimiterConfig {
        LimiterConfig {
            budget_share: share,
            window: Duration::from_secs(window_secs),
            initial_total: 200,
        }
    }

    /// Drives the budget greedily at 1-credit calls for `secs` and returns the credits spent in
    /// every aligned window.
    fn spend_greedily(budget: &mut Budget, start: Instant, secs: u64, window: u64) -> Vec<u32> {
        let mut per_window = vec![0u32; (secs / window) as usize];
        let mut now = start;
        let end = start + Duration::from_secs(secs);
        while now < end {
            match budget.try_acquire(1, false, now) {
                Ok(()) => {
                    let w = (now - start).as_secs() / window;
                    per_window[w as usize] += 1;
                }
                Err(wait) => now += wait.max(Duration::from_micros(100)),
            }
        }
        per_window
    }

    #[test]
    fn never_exceeds_the_share_in_any_window() {
        let start = Instant::now();
        let mut budget = Budget::new(config(0.9, 60), start);
        let spent = spend_greedily(&mut budget, start, 600, 60);
        for (i, &credits) in spent.iter().enumerate() {
            // Share 180 plus the 5 % burst in the first window, at most.
            assert!(credits <= 189, "window {i}: {credits}");
            assert!(credits >= 178, "window {i} under-used: {credits}");
        }
    }

    #[test]
    fn the_opening_calls_go_at_once_and_are_paid_back() {
        let start = Instant::now();
        // The smallest plan: a bucket of 5 credits, 1.5 a second.
        let mut budget = Budget::new(
            LimiterConfig {
                initial_total: 100,
                ..config(0.9, 60)
            },
            start,
        );
        // Five reference lists and two listing pages at the same instant.
        for _ in 0..5 {
            budget.try_acquire_as(Class::Feed, 1, false, start).unwrap();
        }
        for _ in 0..2 {
            budget.try_acquire_as(Class::Feed, 5, true, start).unwrap();
        }
        budget.try_acquire(1, false, start).unwrap();
        let wait = budget.try_acquire(1, false, start).unwrap_err();
        // The 11 credits lent beyond the bucket are paid back first: (11 + 1) / 1.5 s.
        let secs = wait.as_secs_f64();
        assert!((secs - 12.0 / 1.5).abs() < 0.01, "{secs}");
        // Over the first window, no more than any window gets: the share and one bucket.
        let spent = 16 + spend_greedily(&mut budget, start, 60, 60)[0];
        assert!(spent <= 90 + 5, "{spent}");
    }

    #[test]
    fn a_wide_opening_is_rebased_on_the_allowance_the_first_answer_tells() {
        let start = Instant::now();
        // A long listing's opening (five reference lists, sixteen pages) against the smallest
        // plan assumed, and against Enterprise's allowance known from the start.
        let mut assumed = Budget::new(
            LimiterConfig {
                initial_total: 100,
                ..config(0.9, 3)
            },
            start,
        );
        let mut known = Budget::new(
            LimiterConfig {
                initial_total: 500,
                ..config(0.9, 3)
            },
            start,
        );
        let answer = start + Duration::from_millis(600);
        let mut first_window = Vec::new();
        for budget in [&mut assumed, &mut known] {
            budget.open(85.0, 16.0);
            for _ in 0..5 {
                budget.try_acquire_as(Class::Feed, 1, false, start).unwrap();
            }
            for _ in 0..16 {
                budget.try_acquire_as(Class::Feed, 5, true, start).unwrap();
            }
            // The first answer, a round trip on, tells Enterprise's allowance.
            let headers = RateHeaders {
                total: Some(500),
                remaining: Some(494),
                used: Some(1),
            };
            budget.observe(headers, 1, Duration::from_millis(600), answer);
            // Greedy work until the window's end.
            let (mut now, mut spent) = (answer, 0u32);
            while now < start + Duration::from_secs(3) {
                match budget.try_acquire(1, false, now) {
                    Ok(()) => spent += 1,
                    Err(wait) => now += wait.max(Duration::from_micros(100)),
                }
            }
            first_window.push(spent);
        }
        // The same budget as with the allowance known: the opening is owed no more than that
        // (paying back all the smallest plan lent would leave 0.6 s of Enterprise's budget
        // unspent), and the window gets its share and one bucket, no more.
        let (rebased, truth) = (first_window[0], first_window[1]);
        assert!(rebased.abs_diff(truth) <= 1, "{first_window:?}");
        assert!(85 + rebased <= 450 + 23, "{first_window:?}");
        assert!(85 + rebased >= 450, "{first_window:?}");
    }

    #[test]
    fn learns_the_allowance_from_headers() {
        let start = Instant::now();
        let mut budget = Budget::new(config(0.9, 60), start);
        budget.observe(
            RateHeaders {
                total: Some(500),
                remaining: Some(499),
                used: Some(1),
            },
            1,
            Duration::ZERO,
            start,
        );
        assert_eq!(budget.total(), 500);
        let spent = spend_greedily(&mut budget, start, 120, 60);
        assert!(spent[1] >= 445 && spent[1] <= 451, "{spent:?}");
    }

    /// A fixed-window server shared with another integration: its windows start `phase` after
    /// the budget's start; it charges a call when the call arrives (`delay` after the budget
    /// let it go) and answers `delay` later with the three headers; the other integration
    /// spends `others` credits a window at an even pace. The budget is driven greedily with
    /// 1-credit calls for `windows` windows (a refused call pauses it until the window turns,
    /// as a 429's `Retry-After` does). Returns our credits in each whole server window and the
    /// calls the server refused in each window (the one the budget started in first).
    fn against_a_server(
        mut budget: Budget,
        start: Instant,
        windows: u32,
        phase: Duration,
        delay: Duration,
        others: u32,
    ) -> (Vec<u32>, Vec<u32>) {
        let window = budget.config.window;
        let total = budget.total();
        let end = start + phase + window * windows;
        let index = |at: Instant| -> (i64, f64) {
            let into = at.duration_since(start).as_secs_f64() - phase.as_secs_f64();
            let idx = (into / window.as_secs_f64()).floor();
            (idx as i64, into / window.as_secs_f64() - idx)
        };
        let mut ours = std::collections::BTreeMap::<i64, u32>::new();
        let mut arrivals = VecDeque::<Instant>::new();
        let mut answers = VecDeque::<(Instant, Option<u32>, Instant)>::new();
        let mut refused = std::collections::BTreeMap::<i64, u32>::new();
        let mut next_try = start;
        loop {
            let now = [
                Some(next_try),
                arrivals.front().copied(),
                answers.front().map(|a| a.0),
            ]
            .into_iter()
            .flatten()
            .min()
            .expect("a next event");
            if now >= end {
                break;
            }
            while arrivals.front().is_some_and(|&at| at <= now) {
                let at = arrivals.pop_front().expect("an arrival");
                let (idx, fraction) = index(at);
                let theirs = (others as f64 * fraction).floor() as u32;
                let mine = ours.entry(idx).or_default();
                let remaining = if *mine + theirs < total {
                    *mine += 1;
                    Some(total - *mine - theirs)
                } else {
                    *refused.entry(idx).or_default() += 1;
                    None
                };
                let window_end = start + phase + window * (idx + 1) as u32;
                answers.push_back((at + delay, remaining, window_end));
            }
            while answers.front().is_some_and(|a| a.0 <= now) {
                let (_, remaining, window_end) = answers.pop_front().expect("an answer");
                let headers = RateHeaders {
                    total: Some(total),
                    remaining: Some(remaining.unwrap_or(0)),
                    used: Some(remaining.map_or(0, |_| 1)),
                };
                budget.observe(headers, 1, delay * 2, now);
                if remaining.is_none() {
                    // A 429 with Retry-After until the window turns, as the client does.
                    budget.pause(window_end);
                }
            }
            if next_try <= now {
                match budget.try_acquire(1, false, now) {
                    Ok(()) => arrivals.push_back(now + delay),
                    Err(wait) => next_try = now + wait.max(Duration::from_micros(100)),
                }
            }
        }
        let whole = (0..windows as i64)
            .map(|i| ours.get(&i).copied().unwrap_or(0))
            .collect();
        let refused = (-1..windows as i64)
            .map(|i| refused.get(&i).copied().unwrap_or(0))
            .collect();
        (whole, refused)
    }

    fn starter(share: f64) -> LimiterConfig {
        LimiterConfig {
            budget_share: share,
            window: Duration::from_secs(60),
            initial_total: 100,
        }
    }

    /// Ten Starter windows (100 credits a minute, a 0.9 share) against [`against_a_server`].
    fn starter_against(others: u32, phase_ms: u64, delay_ms: u64) -> (Vec<u32>, Vec<u32>) {
        let start = Instant::now();
        let budget = paced(starter(0.9), start);
        let (phase, delay) = (
            Duration::from_millis(phase_ms),
            Duration::from_millis(delay_ms),
        );
        against_a_server(budget, start, 10, phase, delay, others)
    }

    #[test]
    fn our_own_overshoot_does_not_trip_the_ceiling() {
        // Alone on the account, the run spends its whole share in every server window, however
        // the windows fall against its pacing and however late the remainder comes.
        for (phase_ms, delay_ms) in [(17_000, 300), (59_500, 300), (30_000, 1_500), (100, 50)] {
            let (spent, refused) = starter_against(0, phase_ms, delay_ms);
            assert!(
                refused.iter().all(|&r| r == 0),
                "phase {phase_ms} ms, delay {delay_ms} ms: {refused:?}"
            );
            for (i, &credits) in spent.iter().enumerate() {
                assert!(
                    (89..=95).contains(&credits),
                    "phase {phase_ms} ms, delay {delay_ms} ms, window {i}: {credits} of 90"
                );
            }
        }
    }

    #[test]
    fn other_integrations_spending_slows_us_without_a_429() {
        // Another integration spends half its part, all of it (10 of 100), then two, three and
        // five times it, at an even pace. Within its part the run keeps its share; beyond
        // it the run gives way, and after the first window (the one that shows the neighbour)
        // the server refuses nobody: our calls and theirs fit in the allowance.
        for others in [5, 10, 20, 30, 50] {
            for phase_ms in [17_000, 59_500] {
                let (spent, refused) = starter_against(others, phase_ms, 300);
                let case = format!("others {others}, phase {phase_ms} ms: {spent:?}, {refused:?}");
                if others <= 10 {
                    // (A neighbour spending all its part meets our opening bucket in the first
                    // window, once at most; the first whole window is the one in which the
                    // counts show where the windows fall.)
                    assert!(refused[0] <= u32::from(others == 10), "{case}");
                    assert!(refused[1..].iter().all(|&r| r == 0), "{case}");
                    assert!(spent[0] >= 80, "{case}");
                    assert!(spent[1..].iter().all(|&c| c >= 89), "{case}");
                } else {
                    assert!(refused[0] + refused[1] <= 1, "{case}");
                    assert!(refused[2..].iter().all(|&r| r == 0), "{case}");
                    assert!(spent[1..].iter().all(|&c| c + others <= 100), "{case}");
                    // Giving way, not giving up: at least what the neighbour leaves, less a
                    // quarter of its excess and the tolerance.
                    let floor = 100 - others - (others - 10) / 4 - 8;
                    assert!(spent.iter().all(|&c| c >= floor), "{case}");
                }
            }
        }
    }

    #[test]
    fn remaining_reserved_for_others_is_respected() {
        let start = Instant::now();
        let mut budget = Budget::new(config(0.9, 60), start);
        // Another integration has used almost everything: 25 left, 20 of them reserved.
        budget.observe(
            RateHeaders {
                total: Some(200),
                remaining: Some(25),
                used: Some(1),
            },
            1,
            Duration::ZERO,
            start,
        );
        let mut taken = 0;
        while budget.try_acquire(1, false, start).is_ok() {
            taken += 1;
        }
        assert_eq!(taken, 5);
    }

    #[test]
    fn used_credits_correct_the_estimate() {
        let start = Instant::now();
        let mut budget = Budget::new(config(1.0, 60), start);
        let before = budget.credits.tokens;
        budget.try_acquire(1, false, start).unwrap();
        // The call cost 5 (a list with two includes), not 1.
        budget.observe(
            RateHeaders {
                used: Some(5),
                ..Default::default()
            },
            1,
            Duration::ZERO,
            start,
        );
        assert!((budget.credits.tokens - (before - 5.0)).abs() < 1e-9);
    }

    #[test]
    fn absurd_headers_are_ignored_or_clamped() {
        let h = |total, remaining, used| RateHeaders {
            total,
            remaining,
            used,
        };
        // (what the server sent, what is believed)
        let cases = [
            (
                h(Some(500), Some(499), Some(1)),
                h(Some(500), Some(499), Some(1)),
            ),
            // Total 0 would divide by zero; u32::MAX would switch pacing off.
            (h(Some(0), Some(0), Some(1)), h(None, Some(0), Some(1))),
            (h(Some(u32::MAX), None, None), h(None, None, None)),
            // A call cannot cost four billion credits.
            (h(None, None, Some(u32::MAX)), h(None, None, None)),
            (h(None, None, Some(101)), h(None, None, None)),
            // Remaining above total.
            (h(Some(200), Some(900), None), h(Some(200), Some(200), None)),
            (h(None, Some(u32::MAX), None), h(None, None, None)),
        ];
        for (sent, believed) in cases {
            assert_eq!(sent.sane(), believed, "{sent:?}");
        }
    }

    #[test]
    fn absurd_headers_never_stall_or_break_the_budget() {
        let start = Instant::now();
        let absurd = [
            RateHeaders {
                total: Some(u32::MAX),
                remaining: Some(u32::MAX),
                used: Some(u32::MAX),
            },
            RateHeaders {
                total: Some(0),
                remaining: Some(0),
                used: Some(0),
            },
            RateHeaders {
                total: Some(200),
                remaining: Some(u32::MAX),
                used: Some(100),
            },
        ];
        for headers in absurd {
            let mut budget = Budget::new(config(0.9, 60), start);
            // Many responses in a row, as a burst of workers would see them.
            for _ in 0..64 {
                budget.observe(headers, 1, Duration::ZERO, start);
            }
            assert!(
                budget.total() >= 1 && budget.total() <= MAX_TOTAL,
                "{headers:?}"
            );
            assert!(budget.credits.tokens.is_finite(), "{headers:?}");
            // The next call waits at most about two windows (one window of debt, then the
            // call itself), never decades.
            let wait = budget
                .try_acquire(1, false, start)
                .err()
                .unwrap_or_default();
            assert!(wait <= Duration::from_secs(121), "{headers:?}: {wait:?}");
        }
        // A zero window and a zero allowance do not divide by zero.
        let mut budget = Budget::new(
            LimiterConfig {
                budget_share: 0.9,
                window: Duration::ZERO,
                initial_total: 0,
            },
            start,
        );
        let wait = budget
            .try_acquire(1000, true, start)
            .err()
            .unwrap_or_default();
        assert!(wait < Duration::from_secs(1), "{wait:?}");
    }

    #[tokio::test]
    async fn an_endless_pause_does_not_panic() {
        let limiter = Limiter::new(LimiterConfig::default());
        limiter.pause(Duration::MAX);
    }

    #[test]
    fn a_429_stops_everyone_and_resumes_without_a_burst() {
        let start = Instant::now();
        let mut budget = Budget::new(config(0.9, 60), start);
        budget.pause(start + Duration::from_secs(10));
        assert_eq!(
            budget.try_acquire(1, false, start + Duration::from_secs(5)),
            Err(Duration::from_secs(5))
        );
        // Right after the pause the bucket is empty: the first call waits for one token's worth.
        let at = start + Duration::from_secs(10);
        let wait = budget.try_acquire(1, false, at).unwrap_err();
        assert!(
            wait > Duration::ZERO && wait < Duration::from_secs(1),
            "{wait:?}"
        );
        // And over the next window the spend stays within the share.
        let spent = spend_greedily(&mut budget, at, 60, 60);
        assert!(spent[0] <= 181, "{spent:?}");
    }

    #[test]
    fn a_waiting_feed_call_goes_before_work() {
        let start = Instant::now();
        let mut budget = paced(config(0.9, 60), start);
        // Drain the bucket with work.
        while budget.try_acquire(1, false, start).is_ok() {}
        // A listing page (5 credits) has to wait for credits, and reserves them.
        let wait = budget
            .try_acquire_as(Class::Feed, 5, true, start)
            .unwrap_err();
        assert!(wait.for_credits, "{wait:?}");
        budget.reserve(5);
        // From now on, work waits until the reserved credits are there and one more.
        let at = start + wait.wait;
        assert!(budget.try_acquire(1, false, at).is_err());
        assert_eq!(budget.try_acquire_as(Class::Feed, 5, true, at), Ok(()));
        budget.unreserve(5);
        // Then work goes on at the normal pace.
        let next = budget.try_acquire(1, false, at).unwrap_err();
        assert!(next <= Duration::from_millis(400), "{next:?}");
    }

    /// A sync with 2,000 tickets at half of a Growth plan (a 5-credit burst) stopped for good:
    /// a page read ahead reserved its credits, and went unpolled while the listing waited for
    /// the dispatcher, which waited for workers that waited for the reserved credits.
    #[test]
    fn work_goes_on_at_the_pace_while_a_reservation_outgrows_the_bucket() {
        let start = Instant::now();
        let mut budget = paced(config(0.5, 60), start);
        assert_eq!(budget.credits.capacity, 5.0);
        while budget.try_acquire(1, false, start).is_ok() {}
        // Two pages wait: more reserved than the bucket ever holds.
        budget.reserve(3);
        budget.reserve(3);
        let mut now = start;
        let mut calls = 0;
        while now < start + Duration::from_secs(60) {
            match budget.try_acquire(1, false, now) {
                Ok(()) => calls += 1,
                Err(wait) => {
                    assert!(wait <= Duration::from_secs(4), "{wait:?}");
                    now += wait.max(Duration::from_micros(100));
                }
            }
        }
        // The share's pace: 100 credits a minute.
        assert!((95..=101).contains(&calls), "{calls}");
        // And a feed call still goes first: it needs 3, work needs the bucket full.
        let mut budget = paced(config(0.5, 60), start);
        while budget.try_acquire(1, false, start).is_ok() {}
        budget.reserve(3);
        let work = budget.try_acquire(1, false, start).unwrap_err();
        let feed = budget
            .try_acquire_as(Class::Feed, 3, true, start)
            .unwrap_err()
            .wait;
        assert!(feed < work, "{feed:?} {work:?}");
    }

    #[test]
    fn a_feed_call_waiting_for_the_list_sublimit_reserves_nothing() {
        let start = Instant::now();
        let mut budget = Budget::new(config(1.0, 60), start);
        while budget.try_acquire_as(Class::Feed, 1, true, start).is_ok() {}
        let wait = budget
            .try_acquire_as(Class::Feed, 1, true, start)
            .unwrap_err();
        assert!(!wait.for_credits, "{wait:?}");
        assert_eq!(budget.try_acquire(1, false, start), Ok(()));
    }

    #[tokio::test]
    async fn a_cancelled_feed_call_releases_its_reservation() {
        let limiter = Limiter::new(LimiterConfig {
            budget_share: 1.0,
            window: Duration::from_secs(60),
            initial_total: 100,
        });
        // Empty the bucket; the feed call then waits for its credits and is cancelled.
        while lock(&limiter.budget)
            .try_acquire(1, false, Instant::now())
            .is_ok()
        {}
        let waiting = limiter.acquire(5, true, Class::Feed);
        assert!(tokio::time::timeout(Duration::from_millis(20), waiting)
            .await
            .is_err());
        assert_eq!(lock(&limiter.budget).reserved, 0.0);
    }

    #[tokio::test]
    async fn the_waiting_credits_count_the_calls_waiting_until_they_go_or_are_cancelled() {
        let limiter = Limiter::new(LimiterConfig {
            budget_share: 1.0,
            window: Duration::from_secs(60),
            initial_total: 100,
        });
        limiter.acquire(1, false, Class::Work).await;
        assert_eq!(
            limiter.waiting_credits(),
            0,
            "a call that went waits no more"
        );
        while lock(&limiter.budget)
            .try_acquire(1, false, Instant::now())
            .is_ok()
        {}
        let (a, b) = (
            limiter.acquire(2, false, Class::Work),
            limiter.acquire(3, false, Class::Work),
        );
        let both = async { futures::join!(a, b) };
        let watch = async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            limiter.waiting_credits()
        };
        tokio::select! {
            _ = both => panic!("an empty bucket lets nothing go"),
            seen = watch => assert_eq!(seen, 5),
        }
        assert_eq!(
            limiter.waiting_credits(),
            0,
            "cancelled calls leave the count"
        );
    }

    #[test]
    fn list_calls_have_their_own_sublimit() {
        let start = Instant::now();
        let mut budget = Budget::new(config(1.0, 60), start);
        let mut calls = 0;
        let mut now = start;
        let end = start + Duration::from_secs(60);
        while now < end {
            match budget.try_acquire(1, true, now) {
                Ok(()) => calls += 1,
                Err(wait) => now += wait,
            }
        }
        assert!((69..=75).contains(&calls), "{calls}");
        assert_eq!(list_tickets_sublimit(100), 40);
        assert_eq!(list_tickets_sublimit(1000), 350);
    }
}
