//! Fixed-window credit limiter emulating Freshservice's per-minute account budget (§3).
//!
//! Windows are `minute_secs` long and start at server start. A window admits calls while the
//! credits charged in it stay within the budget, and `GET /tickets` calls while their *count*
//! stays within the plan's "List All Tickets" sub-limit (carved out of the total, not added).
//! The budget can be changed at runtime.
//!
//! Pure bookkeeping: callers pass the time elapsed since server start, so the window math is
//! tested without sleeping. It does not sleep, build responses or know routes.

use std::time::Duration;

use super::stats::WindowStat;

/// The numbers behind the `X-RateLimit-*` headers of one response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Quota {
    /// `X-RateLimit-Total`: the budget per window.
    pub(crate) total: u32,
    /// `X-RateLimit-Remaining`: credits left in the window after this call.
    pub(crate) remaining: u32,
    /// `X-RateLimit-Used-CurrentRequest`: credits this call was charged.
    pub(crate) used: u32,
}

/// The limiter's answer for one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    Admit(Quota),
    /// Over budget: serve 429 and charge nothing; `retry_after` is the time to the window end.
    Reject {
        quota: Quota,
        retry_after: Duration,
    },
}

#[derive(Debug)]
pub(crate) struct RateLimiter {
    window: Duration,
    budget: u32,
    list_limit: u32,
    /// When false every call is admitted (budget use is still counted for the stats).
    enforce: bool,
    current: WindowStat,
    /// Whether `current` saw any request (only such windows are reported).
    touched: bool,
    finished: Vec<WindowStat>,
    /// A scripted cut: `(window_credits, budget)`.
    cut: Option<(u64, u32)>,
    /// Credits another integration spends every window, at an even pace.
    neighbour: u32,
    /// What it asked for so far in the current window (admitted or refused).
    neighbour_asked: u64,
}

impl RateLimiter {
    /// `window` must be non-zero.
    pub(crate) fn new(window: Duration, budget: u32, list_limit: u32, enforce: bool) -> Self {
        RateLimiter {
            window,
            budget,
            list_limit,
            enforce,
            current: fresh_window(0, budget, list_limit),
            touched: false,
            finished: Vec::new(),
            cut: None,
            neighbour: 0,
            neighbour_asked: 0,
        }
    }

    /// Another integration on the account from now on: it spends `credits` every window at an
    /// even pace, refused (and counted as such) what the window no longer has.
    pub(crate) fn set_neighbour(&mut self, elapsed: Duration, credits: u32) {
        self.roll(elapsed);
        self.neighbour = credits;
        self.neighbour_asked = self.neighbour_due(elapsed);
    }

    /// What the neighbour has asked for by `elapsed` in the window it falls in.
    fn neighbour_due(&self, elapsed: Duration) -> u64 {
        let w = self.window.as_nanos().max(1);
        let into = (elapsed.as_nanos() % w) as f64 / w as f64;
        (f64::from(self.neighbour) * into).floor() as u64
    }

    /// Lets the neighbour's calls up to `due` credits in (or refuses them).
    fn neighbour_until(&mut self, due: u64) {
        let asked = due.saturating_sub(self.neighbour_asked);
        if asked == 0 {
            return;
        }
        self.neighbour_asked = due;
        let used = self.current.credits_used + self.current.neighbour_credits;
        let room = u64::from(self.budget).saturating_sub(used);
        let admitted = if self.enforce { asked.min(room) } else { asked };
        self.current.neighbour_credits += admitted;
        self.current.neighbour_refused += asked - admitted;
        if self.neighbour > 0 {
            self.touched = true;
        }
    }

    /// Scripts a budget cut: the first call that finds its window has charged at least
    /// `window_credits` changes the budget to `budget` before it is decided. With a `budget`
    /// below `window_credits` that call and the rest of the window are refused: a 429 storm
    /// that does not depend on when the calls arrive.
    pub(crate) fn cut_when(&mut self, window_credits: u64, budget: u32) {
        self.cut = Some((window_credits, budget));
    }

    /// The window `elapsed` falls in.
    fn index_at(&self, elapsed: Duration) -> u64 {
        let idx = elapsed.as_nanos() / self.window.as_nanos().max(1);
        u64::try_from(idx).unwrap_or(u64::MAX)
    }

    /// Time from `elapsed` to the end of its window (always > 0).
    pub(crate) fn until_window_end(&self, elapsed: Duration) -> Duration {
        let w = self.window.as_nanos().max(1);
        let into = elapsed.as_nanos() % w;
        let left = w - into;
        Duration::from_nanos(u64::try_from(left).unwrap_or(u64::MAX))
    }

    /// Moves to the window of `elapsed`, archiving the current one if it saw traffic.
    ///
    /// Requests compute `elapsed` before taking the limiter's lock, so a request can arrive
    /// "from the past" by a few microseconds; it is then counted in the current window rather
    /// than reopening an archived one.
    fn roll(&mut self, elapsed: Duration) {
        let idx = self.index_at(elapsed).max(self.current.index);
        if idx != self.current.index {
            // The neighbour spent the rest of its window.
            self.neighbour_until(u64::from(self.neighbour));
            self.neighbour_asked = 0;
            let next = fresh_window(idx, self.budget, self.list_limit);
            let done = std::mem::replace(&mut self.current, next);
            if self.touched {
                self.finished.push(done);
            }
            self.touched = false;
        }
        if idx == self.index_at(elapsed) {
            self.neighbour_until(self.neighbour_due(elapsed));
        }
    }

    fn quota(&self, used: u32) -> Quota {
        let remaining = if self.enforce {
            let used = self.current.credits_used + self.current.neighbour_credits;
            let left = u64::from(self.budget).saturating_sub(used);
            u32::try_from(left).unwrap_or(u32::MAX)
        } else {
            // Unenforced: report a full budget so clients that pace themselves from the
            // headers do not slow down a test that switched limits off.
            self.budget
        };
        Quota {
            total: self.budget,
            remaining,
            used,
        }
    }

    /// Charges `credits` if the window has room (and, for `GET /tickets`, if the list sub-limit
    /// has room); otherwise rejects without charging.
    pub(crate) fn try_acquire(
        &mut self,
        elapsed: Duration,
        credits: u32,
        list_call: bool,
    ) -> Decision {
        self.roll(elapsed);
        if let Some((at, budget)) = self.cut {
            if self.current.credits_used >= at {
                self.cut = None;
                self.set_budget(elapsed, budget);
            }
        }
        self.touched = true;
        let used = self.current.credits_used + self.current.neighbour_credits;
        let over_total = used + u64::from(credits) > u64::from(self.budget);
        let over_list = list_call && self.current.list_tickets_calls >= self.list_limit;
        if self.enforce && (over_total || over_list) {
            self.current.rejected_429 += 1;
            return Decision::Reject {
                quota: self.quota(0),
                retry_after: self.until_window_end(elapsed),
            };
        }
        self.current.credits_used += u64::from(credits);
        if list_call {
            self.current.list_tickets_calls += 1;
        }
        Decision::Admit(self.quota(credits))
    }

    /// Records a 429 decided elsewhere (a scripted fault); charges nothing.
    pub(crate) fn record_rejection(&mut self, elapsed: Duration) -> Quota {
        self.roll(elapsed);
        self.touched = true;
        self.current.rejected_429 += 1;
        self.quota(0)
    }

    /// Changes the budget from now on (the current window keeps what it already charged).
    pub(crate) fn set_budget(&mut self, elapsed: Duration, budget: u32) {
        self.roll(elapsed);
        self.budget = budget;
        self.current.limit = if self.touched {
            self.current.limit.max(budget)
        } else {
            // Nothing was admitted under the old budget in this window yet.
            budget
        };
    }

    /// Every window that saw traffic, oldest first, including the current one.
    pub(crate) fn windows(&self) -> Vec<WindowStat> {
        let mut all = self.finished.clone();
        if self.touched {
            all.push(self.current.clone());
        }
        all
    }
}

fn fresh_window(index: u64, budget: u32, list_limit: u32) -> WindowStat {
    WindowStat {
        index,
        credits_used: 0,
        limit: budget,
        rejected_429: 0,
        list_tickets_calls: 0,
        list_tickets_limit: list_limit,
        neighbour_credits: 0,
        neighbour_refused: 0,
    }
}

/// `Retry-After` in whole seconds: rounded up, at least 1 (a client told "0" would spin).
pub(crate) fn retry_after_secs(wait: Duration) -> u64 {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    secs.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn admitted(d: Decision) -> Quota {
        match d {
            Decision::Admit(q) => q,
            Decision::Reject { .. } => panic!("expected admission, got {d:?}"),
        }
    }

    #[test]
    fn budget_is_enforced_per_window_and_resets() {
        let mut rl = RateLimiter::new(ms(1000), 10, 100, true);
        let q = admitted(rl.try_acquire(ms(0), 3, false));
        assert_eq!(
            q,
            Quota {
                total: 10,
                remaining: 7,
                used: 3
            }
        );
        admitted(rl.try_acquire(ms(100), 7, false));
        match rl.try_acquire(ms(250), 1, false) {
            Decision::Reject { quota, retry_after } => {
                assert_eq!(
                    quota,
                    Quota {
                        total: 10,
                        remaining: 0,
                        used: 0
                    }
                );
                assert_eq!(retry_after, ms(750));
            }
            d => panic!("expected rejection, got {d:?}"),
        }
        // Next window: fresh budget.
        let q = admitted(rl.try_acquire(ms(1000), 1, false));
        assert_eq!(q.remaining, 9);
        let w = rl.windows();
        assert_eq!(w.len(), 2);
        assert_eq!(
            (w[0].index, w[0].credits_used, w[0].rejected_429),
            (0, 10, 1)
        );
        assert_eq!((w[1].index, w[1].credits_used), (1, 1));
    }

    #[test]
    fn a_call_that_would_overshoot_is_rejected_even_with_credits_left() {
        let mut rl = RateLimiter::new(ms(1000), 10, 100, true);
        admitted(rl.try_acquire(ms(0), 8, false));
        assert!(matches!(
            rl.try_acquire(ms(1), 3, false),
            Decision::Reject { .. }
        ));
        admitted(rl.try_acquire(ms(2), 2, false));
    }

    #[test]
    fn list_sub_limit_counts_calls_not_credits() {
        let mut rl = RateLimiter::new(ms(1000), 100, 2, true);
        admitted(rl.try_acquire(ms(0), 3, true));
        admitted(rl.try_acquire(ms(1), 3, true));
        assert!(matches!(
            rl.try_acquire(ms(2), 1, true),
            Decision::Reject { .. }
        ));
        // Other endpoints still have budget.
        let q = admitted(rl.try_acquire(ms(3), 1, false));
        assert_eq!(q.remaining, 93);
        assert_eq!(rl.windows()[0].list_tickets_calls, 2);
    }

    #[test]
    fn idle_windows_are_not_reported() {
        let mut rl = RateLimiter::new(ms(500), 10, 10, true);
        admitted(rl.try_acquire(ms(10), 1, false));
        admitted(rl.try_acquire(ms(2600), 1, false));
        let idx: Vec<u64> = rl.windows().iter().map(|w| w.index).collect();
        assert_eq!(idx, vec![0, 5]);
    }

    #[test]
    fn late_arrivals_stay_in_the_current_window() {
        let mut rl = RateLimiter::new(ms(1000), 10, 10, true);
        admitted(rl.try_acquire(ms(1001), 1, false));
        admitted(rl.try_acquire(ms(999), 1, false));
        let w = rl.windows();
        assert_eq!(w.len(), 1);
        assert_eq!((w[0].index, w[0].credits_used), (1, 2));
    }

    #[test]
    fn budget_changes_apply_immediately_and_keep_the_window_limit_honest() {
        let mut rl = RateLimiter::new(ms(1000), 10, 10, true);
        admitted(rl.try_acquire(ms(0), 6, false));
        rl.set_budget(ms(10), 4);
        match rl.try_acquire(ms(20), 1, false) {
            Decision::Reject { quota, .. } => assert_eq!((quota.total, quota.remaining), (4, 0)),
            d => panic!("expected rejection, got {d:?}"),
        }
        assert_eq!(rl.windows()[0].limit, 10);
        let q = admitted(rl.try_acquire(ms(1000), 4, false));
        assert_eq!((q.total, q.remaining), (4, 0));
        assert_eq!(rl.windows()[1].limit, 4);
        // A change before any traffic simply becomes the window's limit.
        rl.set_budget(ms(2500), 7);
        admitted(rl.try_acquire(ms(2600), 1, false));
        assert_eq!(rl.windows()[2].limit, 7);
    }

    #[test]
    fn a_scripted_cut_refuses_the_call_that_triggers_it() {
        let mut rl = RateLimiter::new(ms(1000), 10, 10, true);
        rl.cut_when(6, 4);
        admitted(rl.try_acquire(ms(0), 5, false));
        // Below the trigger: the old budget still holds.
        let q = admitted(rl.try_acquire(ms(1), 1, false));
        assert_eq!((q.total, q.remaining), (10, 4));
        // The window has charged 6: this call cuts the budget to 4 and is refused.
        match rl.try_acquire(ms(2), 1, false) {
            Decision::Reject { quota, .. } => assert_eq!((quota.total, quota.remaining), (4, 0)),
            d => panic!("expected rejection, got {d:?}"),
        }
        // The cut fires once and stays: the next window has the new budget.
        let q = admitted(rl.try_acquire(ms(1000), 4, false));
        assert_eq!((q.total, q.remaining), (4, 0));
        assert!(matches!(
            rl.try_acquire(ms(1001), 1, false),
            Decision::Reject { .. }
        ));
    }

    #[test]
    fn unenforced_limiter_admits_everything_but_still_counts() {
        let mut rl = RateLimiter::new(ms(1000), 2, 1, false);
        for i in 0..5 {
            let q = admitted(rl.try_acquire(ms(i), 1, true));
            assert_eq!(q.remaining, 2);
        }
        assert_eq!(rl.windows()[0].credits_used, 5);
    }

    #[test]
    fn scripted_rejections_are_recorded_without_charge() {
        let mut rl = RateLimiter::new(ms(1000), 10, 10, true);
        let q = rl.record_rejection(ms(5));
        assert_eq!(
            q,
            Quota {
                total: 10,
                remaining: 10,
                used: 0
            }
        );
        assert_eq!(rl.windows()[0].rejected_429, 1);
        assert_eq!(rl.windows()[0].credits_used, 0);
    }

    #[test]
    fn retry_after_rounds_up_and_is_never_zero() {
        assert_eq!(retry_after_secs(ms(1)), 1);
        assert_eq!(retry_after_secs(ms(1000)), 1);
        assert_eq!(retry_after_secs(ms(1001)), 2);
        assert_eq!(retry_after_secs(Duration::from_secs(59)), 59);
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
    }

    #[test]
    fn window_end_math() {
        let rl = RateLimiter::new(Duration::from_secs(60), 10, 10, true);
        assert_eq!(
            rl.until_window_end(Duration::from_secs(0)),
            Duration::from_secs(60)
        );
        assert_eq!(rl.until_window_end(Duration::from_millis(59_500)), ms(500));
        assert_eq!(
            rl.until_window_end(Duration::from_secs(60)),
            Duration::from_secs(60)
        );
        assert_eq!(rl.index_at(Duration::from_secs(125)), 2);
    }

    #[test]
    fn a_neighbour_spends_its_credits_evenly_and_is_refused_what_is_gone() {
        let mut rl = RateLimiter::new(Duration::from_secs(10), 100, 40, true);
        rl.set_neighbour(Duration::ZERO, 40);
        // A quarter into the window the neighbour has spent 10 of its 40.
        match rl.try_acquire(Duration::from_millis(2_500), 1, false) {
            Decision::Admit(q) => assert_eq!(q.remaining, 89),
            other => panic!("{other:?}"),
        }
        // Our 80 credits more: the window is then at 91 and the neighbour's next ones fail.
        match rl.try_acquire(Duration::from_millis(2_600), 80, false) {
            Decision::Admit(q) => assert_eq!(q.remaining, 9),
            other => panic!("{other:?}"),
        }
        match rl.try_acquire(Duration::from_millis(7_500), 1, false) {
            Decision::Reject { quota, .. } => assert_eq!(quota.remaining, 0),
            other => panic!("{other:?}"),
        }
        // The next window: the neighbour had asked for 40 in all and got 19.
        assert!(matches!(
            rl.try_acquire(Duration::from_millis(10_000), 1, false),
            Decision::Admit(_)
        ));
        let w = &rl.windows()[0];
        assert_eq!(
            (w.credits_used, w.neighbour_credits, w.neighbour_refused),
            (81, 19, 21)
        );
    }
}
