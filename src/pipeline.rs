//! One sync run: source → normalize → sinks → state, and the run report.
//!
//! 0. Take the dataset's run lock (`_state/lock.json`); a second run is refused with
//!    [`Error::Locked`]. It is released at the end, also when the run failed.
//! 1. Finish an interrupted commit, load the index and the cursor.
//! 2. Departments (account numbers) and agents, once.
//! 3. The listing (or the one ticket), de-duplicated by id: closed tickets that cannot be
//!    placed go to rejects without further calls; unchanged ones (same `updated_at` as in the
//!    index) are skipped; tickets that left Closed are removed.
//! 4. The rest: conversations and time entries fetched concurrently (the shared limiter sets the
//!    pace), normalized on the blocking pool, and committed every `checkpoint_every` tickets, so
//!    a killed run resumes without refetching what it already committed.
//! 5. The cursor moves only when everything listed has been committed.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, SecondsFormat, Utc};
use futures::StreamExt;
use tokio::sync::mpsc;

use crate::job::{Job, Window};
use crate::normalize::{self, AccountMap, AgentInfo, Outcome, RejectReason, Rejection, Settings};
use crate::report::{BudgetReport, RunReport, RunStatus, TicketCounts};
use crate::sink::{self, Changeset, CommitStats, Removal};
use crate::source::{self, wire, ListFilter, Source};
use crate::state::lock::{self, Lock};
use crate::state::{self, Cursor, Location};
use crate::storage::{layout, Storage};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Source(#[from] source::Error),
    #[error(transparent)]
    Sink(#[from] sink::Error),
    #[error(transparent)]
    State(#[from] state::Error),
    #[error(transparent)]
    Storage(#[from] crate::storage::Error),
    #[error("ticket {0} does not exist (404)")]
    TicketNotFound(i64),
    /// The run did not start: another run holds the dataset's lock (or the lock object is
    /// unreadable). Nothing was read or written; retry later.
    #[error(transparent)]
    Locked(lock::Error),
    /// The run stopped because it no longer holds the lock; what it committed before stays.
    #[error(transparent)]
    LockLost(lock::Error),
}

impl From<lock::Error> for Error {
    fn from(e: lock::Error) -> Self {
        match e {
            lock::Error::Storage(e) => Error::Storage(e),
            e @ lock::Error::Lost { .. } => Error::LockLost(e),
            e => Error::Locked(e),
        }
    }
}

impl Error {
    /// Configuration or credential problems (the operator must fix something before a rerun):
    /// the API refused the key, the store refused its credentials or has no such bucket.
    pub fn is_auth(&self) -> bool {
        match self {
            Error::Source(e) => e.is_auth(),
            Error::Storage(e)
            | Error::State(state::Error::Storage(e))
            | Error::Sink(sink::Error::Storage(e))
            | Error::Sink(sink::Error::State(state::Error::Storage(e))) => e.is_config(),
            _ => false,
        }
    }
}

/// The result of a run that got far enough to write a report.
#[derive(Debug)]
pub struct RunOutcome {
    pub report: RunReport,
    /// The failure that made the run stop early, if any (the report says `failed`).
    pub error: Option<Error>,
}

/// Runs one sync. Returns `Err` only when nothing could be written (another run holds the
/// lock, storage or state unreadable); other failures are in the outcome, with a report written.
pub async fn run(job: &Job, source: Arc<Source>, storage: &Storage) -> Result<RunOutcome, Error> {
    let started = Instant::now();
    let started_at = truncate_secs(Utc::now());
    let run_id = format!(
        "{}-{:04x}",
        started_at.format("%Y%m%dT%H%M%SZ"),
        rand::random::<u16>()
    );
    // Nothing is read or written before the lock is ours.
    let lock = Lock::acquire(storage, &run_id, job.lock_ttl).await?;
    let result = run_locked(job, source, storage, &lock, started, started_at, &run_id).await;
    if let Err(e) = lock.release().await {
        tracing::warn!(run_id = %run_id, error = %e, "cannot release the run lock; it expires on its own");
    }
    result
}

/// The run itself, under the lock.
async fn run_locked(
    job: &Job,
    source: Arc<Source>,
    storage: &Storage,
    lock: &Lock,
    started: Instant,
    started_at: DateTime<Utc>,
    run_id: &str,
) -> Result<RunOutcome, Error> {
    let run_id = run_id.to_string();
    let recovered = state::recover(storage).await?;
    let mut index = state::load_index(storage).await?;
    let cursor = state::load_cursor(storage).await?;

    let mut run = Run {
        job,
        source: source.clone(),
        storage,
        lock,
        run_id: run_id.clone(),
        settings: Settings {
            default_minutes: job.default_minutes,
            synced_at: started_at,
        },
        counts: TicketCounts::default(),
        rejects_by_reason: BTreeMap::new(),
        output: CommitStats::default(),
        commits: 0,
    };
    let window_since = match job.window {
        Window::Ticket(_) => None,
        Window::Since(since) => Some(since),
        Window::Full => Some(started_at - chrono::Duration::days(job.full_sync_days.into())),
        Window::Incremental => Some(
            cursor
                .as_ref()
                .map(|c| c.updated_since)
                .unwrap_or(started_at - chrono::Duration::days(job.full_sync_days.into())),
        ),
    };
    let since_text = window_since.map_or_else(
        || "-".to_string(),
        |t| t.to_rfc3339_opts(SecondsFormat::Secs, true),
    );
    tracing::info!(run_id = %run_id, data = storage.display(), window_since = %since_text, "sync started");

    // A run that lost its lock by the end fails like one that lost it before a commit.
    let result = match run.sync(&mut index, window_since).await {
        Ok(()) => lock.check().map_err(Error::from),
        Err(e) => Err(e),
    };

    // The cursor moves only if every listed ticket is committed and the window reaches back to
    // (or before) the stored cursor.
    let mut next_cursor = None;
    let status = match (&result, run.counts.failed) {
        (Ok(()), 0) => {
            let covers = match (window_since, &cursor) {
                (None, _) => false,
                (Some(_), None) => true,
                (Some(since), Some(c)) => since <= c.updated_since,
            };
            if covers {
                let next = started_at - chrono::Duration::from_std(job.overlap).unwrap_or_default();
                state::store_cursor(
                    storage,
                    &Cursor {
                        updated_since: next,
                        run_id: run_id.clone(),
                    },
                )
                .await?;
                next_cursor = Some(next);
            }
            if run.counts.rejected > 0 {
                RunStatus::OkWithRejects
            } else {
                RunStatus::Ok
            }
        }
        _ => RunStatus::Failed,
    };
    let error = match (&result, run.counts.failed) {
        (Err(e), _) => Some(e.to_string()),
        (Ok(()), 0) => None,
        (Ok(()), n) => Some(format!(
            "{n} tickets could not be fetched; they will be retried by the next run"
        )),
    };

    let api = source.client().stats();
    let limiter = source.client().limiter_stats();
    let elapsed = started.elapsed().as_secs_f64();
    let target = source.client().target_per_window();
    let window_secs = job.limiter.window.as_secs_f64();
    let report = RunReport {
        run_id: run_id.clone(),
        mode: match job.window {
            Window::Incremental => "incremental".into(),
            Window::Full => "full".into(),
            Window::Since(_) => "since".into(),
            Window::Ticket(id) => format!("ticket {id}"),
        },
        data: storage.display().to_string(),
        started_at,
        finished_at: truncate_secs(Utc::now()),
        elapsed_secs: elapsed,
        window_since,
        status,
        tickets: run.counts.clone(),
        rejects_by_reason: run.rejects_by_reason.clone(),
        budget: BudgetReport {
            account_total: limiter.total,
            target_per_window: target,
            window_secs,
            utilization: if elapsed > 0.0 && target > 0.0 {
                (api.credits_used as f64 / (elapsed / window_secs)) / target
            } else {
                0.0
            },
            waits: limiter.waits,
            waited_ms: limiter.waited.as_millis() as u64,
        },
        api,
        output: run.output,
        recovered_interrupted_commit: recovered,
        next_cursor,
        error,
    };
    let body = serde_json::to_vec_pretty(&report).expect("report serializes");
    storage
        .put(&layout::run_report(&run_id), body.into())
        .await?;
    Ok(RunOutcome {
        report,
        error: result.err(),
    })
}

fn truncate_secs(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp(t.timestamp(), 0).unwrap_or(t)
}

struct Run<'a> {
    job: &'a Job,
    source: Arc<Source>,
    storage: &'a Storage,
    /// Checked before every commit: a run that lost its lock must stop writing.
    lock: &'a Lock,
    run_id: String,
    settings: Settings,
    counts: TicketCounts,
    rejects_by_reason: BTreeMap<String, u64>,
    output: CommitStats,
    commits: u32,
}

/// What a fetch worker hands back for one ticket.
enum Fetched {
    Done(Outcome),
    /// This ticket could not be fetched; the run goes on and fails at the end.
    Failed {
        ticket_id: i64,
        error: String,
    },
    /// The credentials stopped working: the run stops.
    Fatal(source::Error),
}

impl Run<'_> {
    async fn sync(
        &mut self,
        index: &mut state::Index,
        since: Option<DateTime<Utc>>,
    ) -> Result<(), Error> {
        let source = self.source.clone();
        let departments = source.departments().await?;
        let mut good_departments = Vec::with_capacity(departments.len());
        for d in departments {
            match d {
                Ok(d) => good_departments.push(d),
                Err(e) => {
                    tracing::warn!(department = ?e.id, detail = %e.detail, "department does not decode; its tickets will be rejected")
                }
            }
        }
        let accounts = AccountMap::new(
            &good_departments,
            &self.job.account_field,
            &self.job.account_map,
        );
        let agents: HashMap<i64, AgentInfo> = source
            .agents()
            .await?
            .into_iter()
            .filter_map(|a| a.ok())
            .map(|a| (a.id, AgentInfo::from_wire(&a)))
            .collect();
        tracing::info!(
            departments = accounts.len(),
            agents = agents.len(),
            "reference data loaded"
        );

        // The listing, de-duplicated by id (the latest updated_at wins).
        let listed = match (self.job.window, since) {
            (Window::Ticket(id), _) => match source.ticket(id).await? {
                Some(t) => vec![t],
                None => {
                    if index.get(id).is_some() {
                        let rejection = Rejection {
                            ticket_id: id,
                            reason: RejectReason::TicketDeleted,
                            department_id: None,
                            detail: format!(
                                "ticket {id}: GET /tickets/{id} answered 404 (deleted)"
                            ),
                            updated_at: None,
                            seen_at: self.settings.synced_at,
                        };
                        let changeset = Changeset {
                            rejected: vec![rejection],
                            ..Default::default()
                        };
                        self.commit(index, changeset).await?;
                        return Ok(());
                    }
                    return Err(Error::TicketNotFound(id));
                }
            },
            (_, Some(since)) => {
                source
                    .tickets_updated_since(since, ListFilter::Live)
                    .await?
            }
            (_, None) => Vec::new(),
        };
        let mut latest: BTreeMap<i64, wire::Ticket> = BTreeMap::new();
        let mut first = Changeset::default();
        for item in listed {
            match item {
                Ok(t) => match latest.get(&t.id) {
                    Some(prev) if prev.updated_at >= t.updated_at => {}
                    _ => {
                        latest.insert(t.id, t);
                    }
                },
                Err(e) => match normalize::malformed(&e, self.settings.synced_at) {
                    Some(r) => first.rejected.push(r),
                    None => {
                        self.counts.unidentifiable += 1;
                        tracing::error!(detail = %e.detail, "a listed ticket has no usable id and cannot be placed or rejected");
                    }
                },
            }
        }
        // A malformed row and a good row for the same id: the good one wins.
        first
            .rejected
            .retain(|r| !latest.contains_key(&r.ticket_id));
        self.counts.listed = (latest.len() + first.rejected.len()) as u64;

        let ctx = normalize::Context {
            accounts: &accounts,
            agents: &agents,
            settings: &self.settings,
        };
        let single = matches!(self.job.window, Window::Ticket(_));
        let mut to_fetch = Vec::new();
        for (id, ticket) in latest {
            if ticket.status != Some(5) {
                if index.get(id).is_some() {
                    first.removed.push((id, Removal::Reopened));
                }
                continue;
            }
            self.counts.closed += 1;
            if let Err(rejection) = normalize::placement(&ticket, &ctx) {
                first.rejected.push(rejection);
                continue;
            }
            match ticket.updated_at {
                Some(u) if !single && index.is_current(id, u) => self.counts.unchanged += 1,
                _ => to_fetch.push(ticket),
            }
        }
        self.counts.closed += first
            .rejected
            .iter()
            .filter(|r| r.reason == RejectReason::MalformedTicket)
            .count() as u64;
        tracing::info!(
            listed = self.counts.listed,
            closed = self.counts.closed,
            unchanged = self.counts.unchanged,
            to_fetch = to_fetch.len(),
            rejected = first.rejected.len(),
            removed = first.removed.len(),
            "listing done"
        );
        if !first.is_empty() {
            self.commit(index, first).await?;
        }

        // Fetch workers → bounded channel → this task normalizes' results are committed in
        // checkpoints while the workers keep the budget busy.
        let total = to_fetch.len();
        let (tx, mut rx) = mpsc::channel::<Fetched>(self.job.concurrency * 2);
        let ctx_owned = Arc::new((accounts.clone(), agents.clone(), self.settings.clone()));
        let concurrency = self.job.concurrency;
        let fetcher = tokio::spawn({
            let source = source.clone();
            async move {
                let mut stream = futures::stream::iter(to_fetch)
                    .map(|ticket| {
                        let source = source.clone();
                        let ctx = ctx_owned.clone();
                        async move { fetch_one(source, ticket, ctx).await }
                    })
                    .buffer_unordered(concurrency);
                while let Some(item) = stream.next().await {
                    if tx.send(item).await.is_err() {
                        break; // the committer stopped (an error); stop fetching
                    }
                }
            }
        });

        let mut changeset = Changeset::default();
        let mut done = 0usize;
        let mut fatal: Option<Error> = None;
        while let Some(item) = rx.recv().await {
            done += 1;
            match item {
                Fetched::Done(Outcome::Placed(p)) => {
                    self.counts.fetched += 1;
                    changeset.placed.push(*p);
                }
                Fetched::Done(Outcome::Rejected(r)) => {
                    self.counts.fetched += 1;
                    changeset.rejected.push(r);
                }
                Fetched::Fatal(error) => {
                    fatal = Some(Error::Source(error));
                    break;
                }
                Fetched::Failed { ticket_id, error } => {
                    self.counts.failed += 1;
                    tracing::error!(ticket_id, error = %error, "ticket not written; the next run retries it");
                }
            }
            let size = changeset.placed.len() + changeset.rejected.len();
            if size >= self.job.checkpoint_every {
                let batch = std::mem::take(&mut changeset);
                self.commit(index, batch).await?;
                tracing::info!(done, total, "checkpoint committed");
            }
        }
        drop(rx);
        let _ = fetcher.await;
        if let Some(e) = fatal {
            // Commit what was fetched before the credentials failed: it is valid data.
            self.commit(index, changeset).await?;
            return Err(e);
        }
        self.commit(index, changeset).await?;
        Ok(())
    }

    async fn commit(
        &mut self,
        index: &mut state::Index,
        changeset: Changeset,
    ) -> Result<(), Error> {
        if changeset.is_empty() && self.commits > 0 {
            return Ok(());
        }
        self.counts.written += changeset.placed.len() as u64;
        self.counts.rejected += changeset.rejected.len() as u64;
        self.counts.removed += changeset.removed.len() as u64;
        for r in &changeset.rejected {
            *self
                .rejects_by_reason
                .entry(r.reason.as_str().to_string())
                .or_default() += 1;
        }
        for (id, _) in &changeset.removed {
            if let Some(Location::Placed { .. }) = index.get(*id).map(|e| &e.location) {
                tracing::info!(
                    ticket_id = id,
                    "ticket reopened: removed from the closed dataset"
                );
            }
        }
        self.lock.check()?;
        let tag = format!("{}-{}", self.run_id, self.commits);
        self.commits += 1;
        let stats = sink::commit(self.storage, index, changeset, &tag).await?;
        self.output += stats;
        Ok(())
    }
}

/// Fetches one ticket's conversations and time entries and normalizes it (on the blocking pool:
/// HTML rendering of large bodies is CPU work).
async fn fetch_one(
    source: Arc<Source>,
    ticket: wire::Ticket,
    ctx: Arc<(AccountMap, HashMap<i64, AgentInfo>, Settings)>,
) -> Fetched {
    let id = ticket.id;
    let (conversations, time_entries) =
        tokio::join!(source.conversations(id), source.time_entries(id));
    let (conversations, time_entries) = match (conversations, time_entries) {
        (Ok(c), Ok(t)) => (c, t),
        (Err(source::Error::NotFound { .. }), _) | (_, Err(source::Error::NotFound { .. })) => {
            let (_, _, settings) = &*ctx;
            return Fetched::Done(Outcome::Rejected(Rejection {
                ticket_id: id,
                reason: RejectReason::TicketDeleted,
                department_id: ticket.department_id,
                detail: format!("ticket {id}: its conversations or time entries answered 404 (deleted after it was listed)"),
                updated_at: ticket.updated_at,
                seen_at: settings.synced_at,
            }));
        }
        (Err(e), _) | (_, Err(e)) if e.is_auth() => return Fetched::Fatal(e),
        (Err(e), _) | (_, Err(e)) => {
            return Fetched::Failed {
                ticket_id: id,
                error: e.to_string(),
            }
        }
    };
    let outcome = tokio::task::spawn_blocking(move || {
        let (accounts, agents, settings) = &*ctx;
        let ctx = normalize::Context {
            accounts,
            agents,
            settings,
        };
        normalize::normalize_ticket(&ticket, &conversations, &time_entries, &ctx)
    })
    .await;
    match outcome {
        Ok(outcome) => Fetched::Done(outcome),
        Err(panic) => Fetched::Failed {
            ticket_id: id,
            error: format!("normalizing ticket {id} panicked: {panic}"),
        },
    }
}
