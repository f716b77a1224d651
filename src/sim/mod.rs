//! A Freshservice API v2 simulator: seeded data, the read endpoints ticketsync uses, the
//! per-minute credit limiter, and a fault script.
//!
//! `ticketsync sim` serves it, the demo job runs it in-process, and integration tests start one
//! per test on `127.0.0.1:0`, script it (mutations, faults, budget cuts) and read back what it
//! received ([`Simulator::stats`]) and what it contained ([`Simulator::ground_truth`]).
//!
//! Behaviour follows `freshservice-api.md` §16: HTTP Basic auth with the API key as username;
//! `/api/v2/{departments,agents,requesters,tickets}`, `/api/v2/tickets/filter` (the query
//! language, with `total`), `/api/v2/tickets/{id}` and its
//! `conversations` / `time_entries`; `page`/`per_page` (default 30, max 100, 400 beyond) with an
//! absolute `Link: <…>; rel="next"` only when another page exists; the 30-day default window,
//! `updated_since`, `filter=deleted|spam`, `order_by`/`order_type` and `include` (with credits)
//! on `/tickets`; fixed rate windows with the three `X-RateLimit-*` headers on every response
//! and `429` + `Retry-After` when over budget.
//!
//! Layout:
//! - `data`: the generator, the world state and its mutations; the public ground-truth types.
//! - `text`: subjects and messy HTML bodies with their plain-text renderings.
//! - `render`: API-shaped JSON for every object (the sim shares no types with the client).
//! - `server`: the request pipeline and endpoint handlers; `filter`: the `/tickets/filter`
//!   query language.
//! - `ratelimit`: fixed-window credit accounting (pure; driven by elapsed time).
//! - `faults`: the scriptable fault rules.
//! - `stats`: counters, per-window budget use and the request log.
//!
//! Invariants: the world lock is never held across an `.await`; generation depends only on
//! `(seed, tickets, now)`; mutations only ever move a ticket's `updated_at` forward.

mod data;
mod faults;
mod filter;
mod hostile;
mod quirks;
mod ratelimit;
mod render;
mod server;
mod stats;
mod text;

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::str::FromStr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use data::{
    Agent, Attachment, Conversation, Department, GroundTruth, Group, Requester, Ticket, TimeEntry,
    Workspace,
};
pub use faults::{FaultAction, FaultRule, Faults};
pub use hostile::{Hostile, HostileRule, Mutation, MutationArg};
pub use quirks::{PageQuirk, QuirkArg, Quirks};
pub use stats::{RequestLog, SimStats, WindowStat, ENDPOINTS, LOG_CAPACITY};

use server::Shared;

/// Locks a mutex, recovering from poisoning: a test that panics inside a scripted mutation must
/// not take the whole simulator (and every later assertion) down with it. The guarded data is
/// always left consistent because mutations check before they write.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A Freshservice plan, which sets the per-minute budgets (§3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// 100 credits/min, 40 list-tickets calls/min (formerly Blossom).
    Starter,
    /// 200 credits/min, 70 list-tickets calls/min (formerly Garden; MSP "Core").
    Growth,
    /// 400 credits/min, 120 list-tickets calls/min (formerly Estate).
    Pro,
    /// 500 credits/min, 140 list-tickets calls/min (formerly Forest).
    Enterprise,
}

impl Plan {
    /// Credits per minute for all calls together.
    pub fn credits_per_minute(self) -> u32 {
        match self {
            Plan::Starter => 100,
            Plan::Growth => 200,
            Plan::Pro => 400,
            Plan::Enterprise => 500,
        }
    }

    /// `GET /tickets` calls per minute (carved out of the total).
    pub fn list_tickets_per_minute(self) -> u32 {
        match self {
            Plan::Starter => 40,
            Plan::Growth => 70,
            Plan::Pro => 120,
            Plan::Enterprise => 140,
        }
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Plan::Starter => "starter",
            Plan::Growth => "growth",
            Plan::Pro => "pro",
            Plan::Enterprise => "enterprise",
        })
    }
}

/// A plan name that is none of `starter`, `growth`, `pro`, `enterprise`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown plan {0:?}: expected starter, growth, pro or enterprise")]
pub struct ParsePlanError(pub String);

impl FromStr for Plan {
    type Err = ParsePlanError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "starter" => Ok(Plan::Starter),
            "growth" => Ok(Plan::Growth),
            "pro" => Ok(Plan::Pro),
            "enterprise" => Ok(Plan::Enterprise),
            _ => Err(ParsePlanError(s.to_owned())),
        }
    }
}

/// How a simulator is set up. Everything has a default; tests override a few fields.
#[derive(Debug, Clone, PartialEq)]
pub struct SimConfig {
    /// Seed of the data generator (and of latency jitter).
    pub seed: u64,
    /// Number of generated tickets of all statuses.
    pub tickets: usize,
    /// Workspaces of the account (clients, in Freshservice for MSPs); 1 = no workspaces
    /// feature (`GET /workspaces` answers 404, everything is in workspace 2). With more, one is
    /// primary and ticket listings without `workspace_id` return only that one.
    pub workspaces: usize,
    /// The plan whose budgets the limiter enforces.
    pub plan: Plan,
    /// Length of a rate window in real seconds (tests shrink it, e.g. to 1.0).
    pub minute_secs: f64,
    /// Latency added before every response.
    pub latency_ms: u64,
    /// Extra uniform latency `0..=latency_jitter_ms`.
    pub latency_jitter_ms: u64,
    /// The HTTP Basic username that authenticates.
    pub api_key: String,
    /// "Current time" of the generated data; truncated to whole seconds.
    pub now: DateTime<Utc>,
    /// Send `Retry-After` as an HTTP-date instead of integer seconds.
    pub retry_after_http_date: bool,
    /// Enforce the plan's limits (when false, calls are counted but never rejected and
    /// `X-RateLimit-Remaining` always reports the full budget).
    pub rate_limit: bool,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            seed: 42,
            tickets: 200,
            workspaces: 1,
            plan: Plan::Growth,
            minute_secs: 60.0,
            latency_ms: 0,
            latency_jitter_ms: 0,
            api_key: "sim-api-key".to_owned(),
            now: Utc::now().trunc_subsecs(0),
            retry_after_http_date: false,
            rate_limit: true,
        }
    }
}

/// A running simulator. Clones are cheap handles to the same server.
///
/// The server stops on [`Simulator::shutdown`], or when the last handle is dropped (the
/// shutdown signal is sent from `Drop`; in-flight requests still finish).
#[derive(Clone)]
pub struct Simulator {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Nobody can reach the server any more; let it drain and exit.
        let _ = self.stop.send(true);
    }
}

impl fmt::Debug for Simulator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Simulator")
            .field("addr", &self.inner.addr)
            .field("plan", &self.inner.shared.config.plan)
            .field("seed", &self.inner.shared.config.seed)
            .finish_non_exhaustive()
    }
}

impl Simulator {
    /// Generates the data and serves it on `127.0.0.1:port` (0 = an ephemeral port) from a
    /// spawned tokio task.
    ///
    /// # Errors
    /// `InvalidInput` if `minute_secs` is not a positive number of seconds; the bind error if
    /// the port cannot be bound.
    pub async fn start(config: SimConfig, port: u16) -> std::io::Result<Simulator> {
        let window = Duration::try_from_secs_f64(config.minute_secs)
            .ok()
            .filter(|w| !w.is_zero())
            .ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!(
                        "minute_secs must be a positive number of seconds, got {}",
                        config.minute_secs
                    ),
                )
            })?;
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, port)).await?;
        let addr = listener.local_addr()?;
        // Generating thousands of tickets takes a noticeable fraction of a second; keep it off
        // the reactor so other tasks (the caller's own servers, timers) keep running.
        let shared = tokio::task::spawn_blocking(move || Shared::new(config, addr, window))
            .await
            .map_err(std::io::Error::other)?;
        let shared = Arc::new(shared);
        let (stop, mut stopped) = watch::channel(false);
        let app = server::router(Arc::clone(&shared));
        let task = tokio::spawn(async move {
            // Resolves on an explicit shutdown or when every handle is gone (sender dropped).
            let signal = async move {
                let _ = stopped.wait_for(|stop| *stop).await;
            };
            if let Err(err) = axum::serve(listener, app)
                .with_graceful_shutdown(signal)
                .await
            {
                tracing::error!(%addr, error = %err, "simulator server failed");
            }
        });
        tracing::info!(%addr, "freshservice simulator listening");
        Ok(Simulator {
            inner: Arc::new(Inner {
                shared,
                addr,
                stop,
                task: Mutex::new(Some(task)),
            }),
        })
    }

    /// `http://127.0.0.1:PORT`; the client appends `/api/v2/...`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.inner.addr)
    }

    /// The API key that authenticates (as the Basic username).
    pub fn api_key(&self) -> String {
        self.inner.shared.config.api_key.clone()
    }

    /// A snapshot of everything currently served.
    pub fn ground_truth(&self) -> GroundTruth {
        self.inner.shared.ground_truth()
    }

    /// A snapshot of the request counters, window budget use and request log.
    pub fn stats(&self) -> SimStats {
        self.inner.shared.stats()
    }

    /// Requests received so far, as [`SimStats::requests`], without copying the request log:
    /// cheap enough to poll.
    pub fn requests(&self) -> u64 {
        self.inner.shared.requests()
    }

    /// The fault script.
    pub fn faults(&self) -> &Faults {
        &self.inner.shared.faults
    }

    /// Changes the subject and bumps `updated_at`.
    ///
    /// Bumps in all mutations use `max(real now, config.now)` in whole seconds, and always
    /// land strictly after the ticket's previous `updated_at`.
    ///
    /// # Panics
    /// If the ticket does not exist (a bug in the test script).
    pub fn touch_ticket(&self, id: i64) {
        self.inner.shared.touch_ticket(id);
    }

    /// Edits a ticket as a test scripts it (a field, a conversation added, a time entry's custom
    /// fields) and bumps its `updated_at`, so the next incremental run fetches it. The edit must
    /// keep the world consistent: ids unique, a conversation's `ticket_id` the ticket's.
    ///
    /// # Panics
    /// If the ticket does not exist.
    pub fn edit_ticket(&self, id: i64, edit: impl FnOnce(&mut Ticket)) {
        let now = self.inner.shared.bump_now();
        lock(&self.inner.shared.world).edit(id, now, edit);
    }

    /// Adds a closed ticket (department with a numeric account number, one public reply, one
    /// private note, one time entry) with `updated_at` = now; returns its id.
    pub fn add_closed_ticket(&self) -> i64 {
        let now = self.inner.shared.bump_now();
        lock(&self.inner.shared.world).add_closed_ticket(now)
    }

    /// Soft-deletes a ticket: it leaves the default listing, appears with `filter=deleted`,
    /// and its view, conversations and time entries answer 404. `updated_at` is not bumped.
    ///
    /// # Panics
    /// If the ticket does not exist.
    pub fn delete_ticket(&self, id: i64) {
        lock(&self.inner.shared.world).delete(id);
    }

    /// Marks a ticket as spam: it leaves the default listing and appears with `filter=spam`.
    /// `updated_at` is not bumped.
    ///
    /// # Panics
    /// If the ticket does not exist.
    pub fn spam_ticket(&self, id: i64) {
        lock(&self.inner.shared.world).spam(id);
    }

    /// Reopens a ticket: status 2, `updated_at` bumped, stats `resolved_at`/`closed_at`
    /// cleared and `status_updated_at` set to the bump time.
    ///
    /// # Panics
    /// If the ticket does not exist.
    pub fn reopen_ticket(&self, id: i64) {
        let now = self.inner.shared.bump_now();
        lock(&self.inner.shared.world).reopen(id, now);
    }

    /// Logs a time entry (`time_spent` as `"hh:mm"`) created now; bumps the ticket's
    /// `updated_at` only if `bump_updated_at` (the API leaves this open, §10). Returns its id.
    ///
    /// # Panics
    /// If the ticket does not exist.
    pub fn add_time_entry(
        &self,
        id: i64,
        minutes: u32,
        billable: bool,
        bump_updated_at: bool,
    ) -> i64 {
        let now = self.inner.shared.bump_now();
        lock(&self.inner.shared.world).add_time_entry(id, minutes, billable, bump_updated_at, now)
    }

    /// Changes the per-window credit budget from now on (the list sub-limit stays the plan's).
    pub fn set_credits_per_minute(&self, credits: u32) {
        let shared = &self.inner.shared;
        lock(&shared.limiter).set_budget(shared.started.elapsed(), credits);
    }

    /// Another integration on the account from now on: it spends `credits` of every window's
    /// budget at an even pace (what the window no longer has is refused it, and counted in
    /// [`WindowStat::neighbour_refused`]); 0 removes it.
    pub fn set_neighbour(&self, credits: u32) {
        let shared = &self.inner.shared;
        lock(&shared.limiter).set_neighbour(shared.started.elapsed(), credits);
    }

    /// Scripts a budget cut that lands mid-burst whatever the timing: the first request that
    /// finds its window has charged at least `window_credits` changes the budget to `credits` per
    /// window before it is decided (so, with `credits < window_credits`, it is refused with 429).
    pub fn cut_credits_when(&self, window_credits: u64, credits: u32) {
        lock(&self.inner.shared.limiter).cut_when(window_credits, credits);
    }

    /// Switches the server's misbehaviours (see [`Quirks`]); `Quirks::default()` restores the
    /// documented behaviour.
    pub fn set_quirks(&self, quirks: Quirks) {
        *lock(&self.inner.shared.quirks) = quirks;
    }

    /// The hostile-API layer (see [`Hostile`]): response mutations per endpoint and page, world
    /// events between pages, the server's clock skew.
    pub fn hostile(&self) -> &Hostile {
        &self.inner.shared.hostile
    }

    /// Gives ticket `id` `conversations` more private notes and `time_entries` more time
    /// entries of `minutes` each, without bumping its `updated_at` (set-up for tests whose
    /// tickets need child lists of several pages).
    ///
    /// # Panics
    /// If the ticket does not exist.
    pub fn grow_children(&self, id: i64, conversations: usize, time_entries: usize, minutes: u32) {
        let now = self.inner.shared.bump_now();
        lock(&self.inner.shared.world).grow_children(id, conversations, time_entries, minutes, now);
    }

    /// Once, right after page `after_page` of any `GET /tickets` listing is served intact
    /// (a 200 not spoiled by a fault), touches `ticket_id` as [`Simulator::touch_ticket`] does.
    /// Several can be queued; each fires once.
    pub fn mutate_during_listing(&self, after_page: u32, ticket_id: i64) {
        self.inner
            .shared
            .mutate_during_listing(after_page, ticket_id);
    }

    /// Stops the server and waits for it: in-flight requests get up to 5 s to finish, then the
    /// task is aborted. Other clones of this handle see a dead server afterwards.
    pub async fn shutdown(self) {
        let _ = self.inner.stop.send(true);
        let task = lock(&self.inner.task).take();
        if let Some(mut task) = task {
            // select!: a graceful drain races a 5 s deadline; a request stuck in a long scripted
            // `Slow` fault must not hang the caller.
            tokio::select! {
                _ = &mut task => {}
                _ = tokio::time::sleep(Duration::from_secs(5)) => task.abort(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_parse_and_print() {
        for plan in [Plan::Starter, Plan::Growth, Plan::Pro, Plan::Enterprise] {
            assert_eq!(plan.to_string().parse::<Plan>(), Ok(plan));
        }
        assert_eq!("GROWTH".parse::<Plan>(), Ok(Plan::Growth));
        assert_eq!(" Pro ".parse::<Plan>(), Ok(Plan::Pro));
        assert!("gold".parse::<Plan>().is_err());
        assert_eq!(Plan::Starter.credits_per_minute(), 100);
        assert_eq!(Plan::Enterprise.list_tickets_per_minute(), 140);
    }

    #[test]
    fn default_now_is_whole_seconds() {
        let c = SimConfig::default();
        assert_eq!(c.now.timestamp_subsec_nanos(), 0);
        assert_eq!((c.seed, c.tickets, c.plan), (42, 200, Plan::Growth));
    }

    #[test]
    fn handles_are_send_and_sync() {
        fn assert_send_sync<T: Send + Sync + 'static>() {}
        assert_send_sync::<Simulator>();
        assert_send_sync::<Faults>();
        assert_send_sync::<GroundTruth>();
    }

    #[tokio::test]
    async fn rejects_nonsense_window() {
        let config = SimConfig {
            minute_secs: 0.0,
            ..SimConfig::default()
        };
        let err = Simulator::start(config, 0).await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    }
}
