//! One sync run: source → normalize → sinks → state, and the run report.
//!
//! 0. Take the dataset's run lock (`_state/lock.json`); a second run is refused with
//!    [`Error::Locked`]. It is released at the end, also when the run failed.
//! 1. Finish an interrupted commit, load the index and the cursor.
//! 2. Departments (account numbers) and agents, once; for a long window (a full sync) also the
//!    requester directory, which costs less than embedding the requester in every listed page.
//! 3. The listing (or the one ticket), de-duplicated by id: closed tickets that cannot be
//!    placed go to rejects without further calls; unchanged ones (same `updated_at` as in the
//!    index) are skipped; tickets that left Closed, or that the deleted/spam views positively
//!    report, become pending removals.
//! 4. The rest: conversations and time entries fetched concurrently (the shared limiter sets the
//!    pace), normalized on the blocking pool, and committed every `checkpoint_every` tickets, so
//!    a killed run resumes without refetching what it already committed.
//! 5. Removals go ahead only when the listing read to the end and the removal guard allows them.
//! 6. The cursor moves only when everything listed has been committed.
//!
//! Layout: `policy` holds every decision as a pure function (window, classification, removal
//! evidence, the removal guard, the cursor); `sync` is the mechanism (dispatcher, checkpoints);
//! `listing` and `fetch` are its two tasks; `reference` the data read once per run.

mod fetch;
mod listing;
pub mod policy;
mod reference;
mod sync;

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, Utc};

use crate::dataset;
use crate::error::Class;
use crate::job::{Job, Window};
use crate::normalize::Privacy;
use crate::report::{BudgetReport, FormatUpgrade, PrivacyReport, RunReport, RunStatus};
use crate::sink;
use crate::source::{self, Source};
use crate::state::lock::{self, Lock};
use crate::state::{self, Cursor};
use crate::storage::layout::{self, Scope};
use crate::storage::Storage;

use self::policy::Ending;

/// Why a run failed; each variant answers [`Error::class`] for the exit code.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A call to the API failed for good (see [`source::Error`]).
    #[error(transparent)]
    Source(#[from] source::Error),
    /// A commit failed.
    #[error(transparent)]
    Sink(#[from] sink::Error),
    /// The index, cursor or journal could not be read or written.
    #[error(transparent)]
    State(#[from] state::Error),
    /// Storage failed outside a commit (opening, recovery, the run report).
    #[error(transparent)]
    Storage(#[from] crate::storage::Error),
    /// Finishing an interrupted erasure, or retention, failed.
    #[error(transparent)]
    Dataset(#[from] crate::dataset::Error),
    /// A single-ticket run (`--ticket N`): the API answered 404 for that ticket. A ticket the
    /// dataset holds keeps its rows: a 404 is no proof of deletion (a proxy, a key that may not
    /// see it); the deleted and spam views of the next sync decide.
    #[error("ticket {id} answers 404 (GET /tickets/{id}){}", if *.stored { "; it is in the dataset and keeps its rows: a 404 is no proof of deletion, the deleted and spam views of the next sync decide" } else { "" })]
    TicketNotFound {
        /// The ticket asked for.
        id: i64,
        /// Whether the dataset holds it.
        stored: bool,
    },
    /// A task of the run panicked or was cancelled (a bug, not a configuration problem).
    #[error("{what} failed: {source}")]
    Task {
        /// Which task (the listing, a fetch worker, an encoder).
        what: &'static str,
        /// The panic or cancellation.
        #[source]
        source: tokio::task::JoinError,
    },
    /// The run did not start: another run holds the dataset's lock (or the lock object is
    /// unreadable). Nothing was read or written; retry later.
    #[error(transparent)]
    Locked(lock::Error),
    /// The run stopped because it no longer holds the lock; what it committed before stays.
    #[error(transparent)]
    LockLost(lock::Error),
    /// The run would have removed more tickets than `max_removals`: it removed none.
    #[error("this run would remove {would_remove} tickets (reopened, deleted, spam, or placed tickets that would become rejects), more than max_removals = {limit}; it removed none and kept everything it fetched (the ids are in the run report). If these removals are real, rerun once with --max-removals {would_remove}")]
    RemovalGuard {
        /// Tickets the run would have removed.
        would_remove: u64,
        /// The `max_removals` in force.
        limit: u64,
    },
    /// The dataset was written by a newer release (its `_state/format.json` says so): this
    /// release would drop columns it does not know. Nothing was written.
    #[error("the dataset at {data} has format {found} (_state/format.json), written by a newer ticketsync; this release knows format {known} at most and does not write it, so nothing newer is lost. Run the newer release")]
    NewerFormat {
        /// The dataset location.
        data: String,
        /// The format the dataset has.
        found: u32,
        /// The newest format this release knows.
        known: u32,
    },
    /// `max_run_minutes` passed: the run stopped fetching and committed what it had.
    #[error("the run was still going after max_run_minutes = {minutes}; it stopped fetching and committed what it had; the next run goes on from there")]
    TimedOut {
        /// The `max_run_minutes` in force.
        minutes: f64,
    },
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

impl crate::error::Classify for Error {
    /// What the failure means (see [`Class`]): each wrapped error answers for itself.
    fn class(&self) -> Class {
        match self {
            Error::Source(e) => e.class(),
            Error::Sink(e) => e.class(),
            Error::State(e) => e.class(),
            Error::Storage(e) => e.class(),
            Error::Dataset(e) => e.class(),
            Error::Locked(e) | Error::LockLost(e) => e.class(),
            Error::NewerFormat { .. } => Class::Config,
            Error::TicketNotFound { .. } | Error::RemovalGuard { .. } => Class::Failed,
            Error::TimedOut { .. } => Class::Retryable,
            Error::Task { .. } => Class::Bug,
        }
    }
}

impl Error {
    /// Maps a failed task's `JoinError` (a panic or a cancellation) to [`Error::Task`].
    fn task(what: &'static str) -> impl FnOnce(tokio::task::JoinError) -> Error {
        move |source| Error::Task { what, source }
    }
}

/// The result of a run that got far enough to write a report.
#[derive(Debug)]
pub struct RunOutcome {
    /// The run report, as written to `_runs/<run_id>.json`.
    pub report: RunReport,
    /// The failure that made the run stop early, if any (the report says `failed`).
    pub error: Option<Error>,
}

/// Runs one sync. Returns `Err` only when nothing could be written (another run holds the
/// lock, storage or state unreadable); other failures are in the outcome, with a report written.
///
/// The run reads and writes the dataset as the job's domain: its partitions, and its own
/// index, cursor, lock, journal, checkpoints and documents ([`layout::Scope`], decided by
/// [`scope_of`]), so runs of other domains can write the same dataset at the same time.
pub async fn run(job: &Job, source: Arc<Source>, storage: &Storage) -> Result<RunOutcome, Error> {
    let started = Instant::now();
    let started_at = state::now();
    let run_id = format!(
        "{}-{:04x}",
        started_at.format("%Y%m%dT%H%M%SZ"),
        rand::random::<u16>()
    );
    // Nothing is written before the lock of the run's domain is ours. Which domain's lock that
    // is depends on `format.json`, which another domain's first run may create meanwhile: read
    // again under the lock, and start over once under the right one if it changed.
    let mut tries = 0;
    let (storage, lock) = loop {
        tries += 1;
        let scope = scope_of(storage, &job.domain, &job.home_domain).await?;
        let scoped = storage.scoped(scope.clone());
        let lock = Lock::acquire(&scoped, &run_id, job.lock_ttl).await?;
        if tries > 1 || scope_of(storage, &job.domain, &job.home_domain).await? == scope {
            break (scoped, lock);
        }
        lock.release().await?;
    };
    let storage = &storage;
    let result = run_locked(
        job,
        source,
        storage,
        &lock,
        Start {
            instant: started,
            at: started_at,
            run_id: run_id.clone(),
        },
    )
    .await;
    if let Err(e) = lock.release().await {
        tracing::warn!(run_id = %run_id, error = %e, "cannot release the run lock; it expires on its own");
    }
    result
}

/// When and as what a run started.
pub(crate) struct Start {
    instant: Instant,
    at: DateTime<Utc>,
    run_id: String,
}

/// The run itself, under the lock.
async fn run_locked(
    job: &Job,
    source: Arc<Source>,
    storage: &Storage,
    lock: &Lock,
    start: Start,
) -> Result<RunOutcome, Error> {
    let recovered = sink::recover(storage, job.history_days > 0).await?;
    let (new_dataset, format_upgrade) =
        upgrade(storage, lock, &start.run_id, &job.domain, &job.home_domain).await?;
    let mut index = state::load_index(storage).await?;
    let cursor = state::load_cursor(storage).await?;
    if let Some(seen) = cursor.as_ref().and_then(|c| c.api) {
        source
            .client()
            .remember(seen.rate_total, Duration::from_millis(seen.round_trip_ms));
    }
    // Erased people stay erased: a `forget` that was killed is finished first, and every
    // ticket written below is erased (and redacted) before it is written.
    let (erasures, pending_erasure) =
        dataset::forget::prepare_for_sync(storage, &mut index, lock, &start.run_id).await?;
    let privacy = Privacy {
        redactor: job.redactor.clone(),
        erasures: Arc::new(erasures),
    };

    let rescan_due = policy::rescan_due(
        job.rescan_days,
        job.rescan_every,
        job.window,
        cursor.as_ref(),
        start.at,
    );
    let mut run = sync::Run::new(
        job,
        source.clone(),
        storage,
        lock,
        &start,
        rescan_due,
        privacy,
    );
    // Nothing updated before the retention cutoff can have closed after it: not listed at all.
    let listed = policy::ListingWindow::new(
        policy::listing_since(job.window, cursor.as_ref(), start.at, job.full_sync_days),
        job.retention_days
            .map(|days| dataset::retention::cutoff(start.at, days)),
    );
    let window_since = listed.since;
    let since_text = window_since.map_or_else(
        || "-".to_string(),
        |t| t.to_rfc3339_opts(SecondsFormat::Secs, true),
    );
    tracing::info!(run_id = %start.run_id, data = storage.display(), window_since = %since_text, "sync started");

    // A run that lost its lock by the end fails like one that lost it before a commit.
    let result = match run.sync(&mut index, window_since).await {
        Ok(()) => lock.verify().await.map_err(Error::from),
        Err(e) => Err(e),
    };
    // Retention at the end of every sync that got through its listing.
    let mut retention = None;
    let result = match (result, job.retention_days) {
        (Ok(()), Some(days)) => {
            let tag = format!("{}-retention", start.run_id);
            match dataset::retention::apply(storage, &mut index, lock, &tag, days, start.at, false)
                .await
            {
                Ok(pruned) => {
                    run.output += pruned.output;
                    retention = Some(pruned);
                    Ok(())
                }
                Err(e) => Err(Error::from(e)),
            }
        }
        (result, _) => result,
    };
    // Names learned for erased people: complete their records and rewrite the dataset without
    // the names (other tickets of this run may hold them in their texts).
    let learned: Vec<_> = run.learned_names.values().cloned().collect();
    let mut names_rewrite = None;
    // Also after a failed run: what it committed holds the person's tickets, which later runs
    // skip as unchanged. Never without the lock.
    let result = if learned.is_empty() || run.unflushed() || lock.verify().await.is_err() {
        result
    } else {
        match dataset::forget::complete_names(storage, &mut index, lock, &start.run_id, &learned)
            .await
        {
            Ok(changed) => {
                run.output += changed.output;
                names_rewrite = Some(changed);
                result
            }
            Err(e) => result.and(Err(Error::from(e))),
        }
    };

    // History: the data files commits replaced more than `history_days` ago leave (with 0 the
    // commits deleted them already).
    let result = if job.history_days == 0 || lock.verify().await.is_err() {
        result
    } else {
        let before = start.at - chrono::Duration::days(i64::from(job.history_days));
        match state::delta::vacuum(storage, Some(before)).await {
            Ok(deleted) => {
                if deleted > 0 {
                    tracing::info!(
                        deleted,
                        history_days = job.history_days,
                        "replaced data files past the history deleted"
                    );
                }
                result
            }
            Err(e) => result.and(Err(Error::from(e))),
        }
    };
    let ending = match (&result, run.counts.failed) {
        (Ok(()), 0) => Ending::Complete,
        _ => Ending::Incomplete,
    };
    let offset = source.client().stats().server_clock_offset_secs;
    if let Some(behind) = offset.filter(|o| *o < -60) {
        tracing::warn!(
            seconds_behind = -behind,
            "the API's clock (its Date headers) is behind ours; the cursor is measured by the API's clock"
        );
    }
    let next = policy::next_cursor(
        ending,
        job.window,
        listed,
        cursor.as_ref(),
        policy::cursor_clock(start.at, offset, window_since),
        job.overlap,
        rescan_due,
    );
    if let Some((updated_since, rescanned_at)) = next {
        state::store_cursor(
            storage,
            &Cursor {
                updated_since,
                run_id: start.run_id.clone(),
                rescanned_at,
                api: api_seen(source.client()),
            },
        )
        .await?;
    }
    let status = match (&result, ending) {
        (Err(Error::TimedOut { .. }), _) => RunStatus::TimedOut,
        (_, Ending::Incomplete) => RunStatus::Failed,
        (_, Ending::Complete) if run.counts.rejected > 0 => RunStatus::OkWithRejects,
        (_, Ending::Complete) => RunStatus::Ok,
    };
    let error = match (&result, run.counts.failed) {
        (Err(e), _) => Some(e.to_string()),
        (Ok(()), 0) => None,
        (Ok(()), n) => Some(format!(
            "{n} tickets could not be fetched; they will be retried by the next run"
        )),
    };
    let elapsed_secs = start.instant.elapsed().as_secs_f64();
    let api = source.client().stats();
    let report = RunReport {
        run_id: start.run_id.clone(),
        mode: match job.window {
            Window::Incremental => "incremental".into(),
            Window::Full => "full".into(),
            Window::Since(_) => "since".into(),
            Window::Ticket(id) => format!("ticket {id}"),
        },
        data: storage.display().to_string(),
        domain: job.domain.clone(),
        started_at: start.at,
        finished_at: state::now(),
        elapsed_secs,
        window_since,
        status,
        tickets: run.counts.clone(),
        rejects_by_reason: run.rejects_by_reason.clone(),
        removed: run.removed.clone(),
        removal_guard: run.guard.clone(),
        budget: BudgetReport::measure(
            &api,
            &source.client().limiter_stats(),
            source.client().target_per_window(),
            job.limiter.window.as_secs_f64(),
            elapsed_secs,
        ),
        api,
        output: run.output,
        recovered_interrupted_commit: recovered,
        format_upgrade,
        privacy: PrivacyReport {
            redactions: run.redactions.clone(),
            tickets_erased: run.tickets_erased,
            pending_erasure,
            names_learned: learned.len() as u64,
            names_rewrite,
        },
        retention,
        next_cursor: next.map(|(at, _)| at),
        error,
        newest_closed_at: index.newest_closed_at(),
        warnings: Vec::new(),
    };
    let _ = new_dataset;
    let body = serde_json::to_vec_pretty(&report).expect("report serializes");
    storage
        .put(&layout::run_report(&start.run_id), body.into())
        .await?;
    Ok(RunOutcome {
        report,
        error: result.err(),
    })
}

/// Which part of the dataset a run of `domain` owns, read without writing anything:
/// [`Scope::Home`] when `_state/format.json` names this domain, or the dataset is written by an
/// older release (the run upgrades it under the home lock, as its domain); else the domain's own
/// scope. A new dataset will be created for `home` (this domain, or a fleet's first account,
/// whichever account's run comes first), so it is already answered as if it were.
pub async fn scope_of(storage: &Storage, domain: &str, home: &str) -> Result<Scope, Error> {
    use sink::upgrade::{self, Format};
    let named = match upgrade::format(storage).await? {
        Format::New => Some(home.to_string()),
        Format::Older(_) | Format::Newer(_) => return Ok(Scope::Home),
        Format::Current => upgrade::domain(storage).await?,
    };
    let named = named.unwrap_or_else(|| state::delta::DEFAULT_DOMAIN.to_string());
    Ok(if named == domain {
        Scope::Home
    } else {
        Scope::Domain(domain.to_string())
    })
}

/// What this run saw of the API, for the next run's opening (see [`state::Cursor::api`]):
/// nothing before an answer told the allowance.
fn api_seen(client: &source::client::Client) -> Option<state::ApiSeen> {
    let total = client.limiter_stats().total;
    let round_trip = client.latency()?;
    (total > 0).then(|| state::ApiSeen {
        rate_total: total,
        round_trip_ms: round_trip.as_millis().min(u64::MAX as u128) as u64,
    })
}

/// Brings a dataset written by an older release to today's format (see [`sink::upgrade`]),
/// refuses one written by a newer release, and tells whether the dataset is new (no format yet)
/// and what the upgrade did.
async fn upgrade(
    storage: &Storage,
    lock: &Lock,
    run_id: &str,
    domain: &str,
    home: &str,
) -> Result<(bool, Option<FormatUpgrade>), Error> {
    use sink::upgrade::{self, Format, CHUNK_FILES, FORMAT};
    let from = match upgrade::format(storage).await? {
        Format::Current => return Ok((false, None)),
        // A new dataset says which format and home domain it has before its first commit: the
        // tables' partitions and the commits of `forget` and `prune` depend on it. Another
        // domain's first run may write it at the same time: the same content, and a
        // conditional create lets one of them do it.
        Format::New => {
            upgrade::create_current(storage, home).await?;
            return Ok((true, None));
        }
        Format::Newer(found) => {
            return Err(Error::NewerFormat {
                data: storage.display().to_string(),
                found,
                known: FORMAT,
            })
        }
        Format::Older(from) => from,
    };
    let files = upgrade::legacy_files(storage).await?;
    tracing::info!(
        from,
        to = FORMAT,
        files = files.len(),
        "upgrading the dataset's partition files to the current format"
    );
    let chunks: Vec<_> = files.chunks(CHUNK_FILES).collect();
    let mut done = FormatUpgrade {
        from,
        to: FORMAT,
        files_checked: 0,
        files_rewritten: 0,
    };
    for (i, chunk) in chunks.iter().enumerate() {
        lock.verify().await?;
        let last = i + 1 == chunks.len();
        let step = upgrade::upgrade_chunk(
            storage,
            chunk,
            &format!("{run_id}-upgrade-{i}"),
            last,
            domain,
        )
        .await?;
        done.files_checked += step.files_checked;
        done.files_rewritten += step.files_rewritten;
    }
    if chunks.is_empty() {
        lock.verify().await?;
        upgrade::mark_current(storage, domain).await?;
    }
    tracing::info!(
        from,
        to = FORMAT,
        rewritten = done.files_rewritten,
        "dataset upgraded"
    );
    Ok((false, Some(done)))
}
