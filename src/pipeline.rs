//! One sync run: source → normalize → sinks → state, and the run report.
//!
//! 0. Take the dataset's run lock (`_state/lock.json`); a second run is refused with
//!    [`Error::Locked`]. It is released at the end, also when the run failed.
//! 1. Finish an interrupted commit, load the index and the cursor.
//! 2. Departments (account numbers) and agents, once; for a long window (a full sync) also the
//!    requester directory, which costs less than embedding the requester in every listed page.
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
use tracing_indicatif::span_ext::IndicatifSpanExt;

use crate::job::{Job, Window};
use crate::normalize::{self, AccountMap, Outcome, Person, RejectReason, Rejection, Settings};
use crate::report::{BudgetReport, RunReport, RunStatus, TicketCounts};
use crate::sink::{self, Changeset, CommitStats, Removal};
use crate::source::{self, wire, ListFilter, Requesters, Source};
use crate::state::lock::{self, Lock};
use crate::state::{self, Cursor};
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
    /// A task of the run panicked or was cancelled (a bug, not a configuration problem).
    #[error("{0}")]
    Task(String),
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
        removed: BTreeMap::new(),
        rescan_due: job.rescan_days > 0
            && matches!(job.window, Window::Incremental)
            && cursor.as_ref().is_some_and(|c| {
                c.rescanned_at.is_none_or(|t| {
                    started_at - t
                        >= chrono::Duration::from_std(job.rescan_every).unwrap_or_default()
                })
            }),
        output: CommitStats::default(),
        commits: 0,
        started,
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
                // A full window reads every recently closed ticket anyway: it counts as a re-scan.
                let rescanned_now = run.rescan_due
                    || !matches!(job.window, Window::Incremental)
                    || cursor.is_none();
                state::store_cursor(
                    storage,
                    &Cursor {
                        updated_since: next,
                        run_id: run_id.clone(),
                        rescanned_at: if rescanned_now {
                            Some(started_at)
                        } else {
                            cursor.as_ref().and_then(|c| c.rescanned_at)
                        },
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
        removed: run.removed.clone(),
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
    removed: BTreeMap<String, Vec<i64>>,
    /// Whether this run re-reads the time entries of recently closed tickets.
    rescan_due: bool,
    output: CommitStats,
    commits: u32,
    started: Instant,
}

/// A listing window at least this long reads the requester directory instead of embedding the
/// requester in every listing page.
const DIRECTORY_WINDOW_DAYS: i64 = 30;

/// What every ticket of a run is normalized against, read once at the start.
struct Reference {
    accounts: AccountMap,
    agents: HashMap<i64, Person>,
    /// The requester directory; empty when the listing embeds requesters.
    requesters: HashMap<i64, Person>,
    requester_source: Requesters,
    settings: Settings,
    /// Requesters the directory did not have, looked up one by one (`None`: no such requester).
    looked_up: std::sync::Mutex<HashMap<i64, Option<Person>>>,
}

impl Reference {
    fn context(&self) -> normalize::Context<'_> {
        normalize::Context {
            accounts: &self.accounts,
            agents: &self.agents,
            requesters: &self.requesters,
            settings: &self.settings,
        }
    }

    /// The requester embed for a ticket whose requester neither the listing, the directory nor
    /// the agents know (someone added after the directory was read): one `GET /requesters/{id}`
    /// per such person and run. `None` when nothing is missing or there is no such requester.
    async fn missing_requester(
        &self,
        source: &Source,
        ticket: &wire::Ticket,
    ) -> Result<Option<wire::EmbeddedRequester>, source::Error> {
        let Some(id) = ticket.requester_id else {
            return Ok(None);
        };
        if self.requester_source == Requesters::Embedded
            || ticket.requester.is_some()
            || self.requesters.contains_key(&id)
            || self.agents.contains_key(&id)
        {
            return Ok(None);
        }
        let cached = self
            .looked_up
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .cloned();
        let person = match cached {
            Some(person) => person,
            None => {
                let person = match source.requester(id).await {
                    Ok(found) => found.map(|r| Person::from_requester(&r)),
                    Err(source::Error::Decode { detail, .. }) => {
                        tracing::warn!(ticket_id = ticket.id, requester = id, %detail, "requester does not decode; the ticket has no requester name");
                        None
                    }
                    Err(e) => return Err(e),
                };
                self.looked_up
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(id, person.clone());
                person
            }
        };
        Ok(person.map(|p| p.as_embed(id)))
    }
}

/// What the listing task hands the dispatcher.
enum Listed {
    /// A page of the live listing (or the one ticket of a single-ticket run).
    Live(source::Items<wire::Ticket>),
    /// Tickets the reconciliation found deleted or spam.
    Gone(Removal, Vec<i64>),
    /// A ticket in the re-scan window whose time entries changed: fetch it again.
    Changed(Box<wire::Ticket>),
    /// How many tickets the re-scan checked.
    Rescanned(u64),
}

/// What the listing task reads besides the live listing.
struct ListingPlan {
    since: DateTime<Utc>,
    /// Whether the live listing embeds the requester.
    requesters: Requesters,
    /// `updated_since` of the deleted/spam reconciliation (`None`: off).
    reconcile_since: Option<DateTime<Utc>>,
    /// Placed tickets closed recently, with their stored time-entry fingerprints.
    rescan: Vec<(i64, Option<u64>)>,
}

/// The listing task: the live listing page by page, then the deleted and spam views, then the
/// re-scan of recently closed tickets for time entries logged after close.
async fn list(
    source: Arc<Source>,
    plan: ListingPlan,
    tx: mpsc::Sender<Listed>,
) -> Result<(), Error> {
    let (pages_tx, mut pages_rx) = mpsc::channel(2);
    let live = {
        let source = source.clone();
        tokio::spawn(async move {
            source
                .stream_tickets_updated_since(
                    plan.since,
                    ListFilter::Live,
                    plan.requesters,
                    pages_tx,
                )
                .await
        })
    };
    let mut listed = std::collections::HashSet::new();
    while let Some(items) = pages_rx.recv().await {
        listed.extend(
            items
                .iter()
                .filter_map(|t: &Result<wire::Ticket, _>| t.as_ref().ok().map(|t| t.id)),
        );
        if tx.send(Listed::Live(items)).await.is_err() {
            return Ok(());
        }
    }
    live.await
        .map_err(|e| Error::Task(format!("the listing task failed: {e}")))??;

    if let Some(since) = plan.reconcile_since {
        for (filter, reason) in [
            (ListFilter::Deleted, Removal::Deleted),
            (ListFilter::Spam, Removal::Spam),
        ] {
            let ids: Vec<i64> = source
                .tickets_updated_since(since, filter, plan.requesters)
                .await?
                .iter()
                .filter_map(|t| match t {
                    Ok(t) => Some(t.id),
                    Err(e) => e.id,
                })
                .collect();
            if !ids.is_empty() && tx.send(Listed::Gone(reason, ids)).await.is_err() {
                return Ok(());
            }
        }
    }

    // Time entries can be added after close without the ticket's updated_at moving: re-read
    // them (one cheap call per ticket) for recently closed tickets the listing did not bring.
    let candidates: Vec<(i64, Option<u64>)> = plan
        .rescan
        .into_iter()
        .filter(|(id, _)| !listed.contains(id))
        .collect();
    let checked = candidates.len() as u64;
    let mut checks = futures::stream::iter(candidates)
        .map(|(id, stored)| {
            let source = source.clone();
            async move {
                match source.time_entries(id).await {
                    Ok(entries)
                        if Some(normalize::time_entries_fingerprint(&entries)) == stored =>
                    {
                        Ok(None)
                    }
                    Ok(_) => match source.ticket(id).await? {
                        Some(Ok(ticket)) => Ok(Some(Listed::Changed(Box::new(ticket)))),
                        Some(Err(_)) | None => Ok(Some(Listed::Gone(Removal::Deleted, vec![id]))),
                    },
                    Err(source::Error::NotFound { .. }) => {
                        Ok(Some(Listed::Gone(Removal::Deleted, vec![id])))
                    }
                    Err(e) => Err(e),
                }
            }
        })
        .buffer_unordered(16);
    while let Some(result) = checks.next().await {
        if let Some(listed) = result? {
            if tx.send(listed).await.is_err() {
                return Ok(());
            }
        }
    }
    let _ = tx.send(Listed::Rescanned(checked)).await;
    Ok(())
}

/// Which version of each listed ticket is the latest (the listing can show a ticket twice when
/// it changes while we page).
struct Dispatch {
    latest: HashMap<i64, Option<DateTime<Utc>>>,
    /// Tickets the reconciliation found deleted or spam: nothing of them is written.
    gone: std::collections::HashSet<i64>,
    /// A single-ticket run fetches even an unchanged ticket.
    single: bool,
    /// The fetch workers' queue; `None` once the listing is over.
    queue: Option<mpsc::UnboundedSender<wire::Ticket>>,
}

impl Dispatch {
    /// Records `updated_at` for `id`; `false` when an equal or newer version was seen before.
    fn newer(&mut self, id: i64, updated_at: Option<DateTime<Utc>>) -> bool {
        if self.gone.contains(&id) {
            return false;
        }
        match self.latest.get(&id) {
            Some(seen) if *seen >= updated_at => false,
            _ => {
                self.latest.insert(id, updated_at);
                true
            }
        }
    }

    /// Whether a fetched version is still the latest one listed.
    fn is_latest(&self, id: i64, updated_at: Option<DateTime<Utc>>) -> bool {
        !self.gone.contains(&id) && self.latest.get(&id).is_none_or(|seen| *seen <= updated_at)
    }

    fn gone(&mut self, id: i64) {
        self.gone.insert(id);
    }
}

fn outcome_id(outcome: &Outcome) -> i64 {
    match outcome {
        Outcome::Placed(p) => p.ticket.ticket_id,
        Outcome::Rejected(r) => r.ticket_id,
    }
}

/// What a fetch worker hands back for one ticket.
enum Fetched {
    Done {
        updated_at: Option<DateTime<Utc>>,
        outcome: Outcome,
    },
    /// This ticket could not be fetched; the run goes on and fails at the end.
    Failed { ticket_id: i64, error: String },
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
        // A full sync lists a year of tickets: reading the requester directory once is cheaper
        // than embedding the requester in every listing page (2 credits a page). A nightly run
        // lists a page or two: the embed is cheaper there.
        let requester_source = match since {
            Some(since)
                if self.settings.synced_at - since
                    >= chrono::Duration::days(DIRECTORY_WINDOW_DAYS) =>
            {
                Requesters::Directory
            }
            _ => Requesters::Embedded,
        };
        let (departments, agents, requesters) =
            tokio::join!(source.departments(), source.agents(), async {
                match requester_source {
                    Requesters::Directory => source.requesters().await,
                    Requesters::Embedded => Ok(Vec::new()),
                }
            });
        let mut good_departments = Vec::new();
        for d in departments? {
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
        let agents: HashMap<i64, Person> = agents?
            .into_iter()
            .filter_map(|a| a.ok())
            .map(|a| (a.id, Person::from_agent(&a)))
            .collect();
        // An API key whose role may not read requesters (403), or an API without the list, still
        // syncs: the listing embeds the requester instead.
        let (requester_source, requesters) = match (requester_source, requesters) {
            (Requesters::Directory, Err(e)) if !matches!(e, source::Error::Unauthorized { .. }) => {
                tracing::warn!(error = %e, "the requester directory cannot be read; the listing embeds requesters instead");
                (Requesters::Embedded, Vec::new())
            }
            (mode, requesters) => (mode, requesters?),
        };
        let requesters: HashMap<i64, Person> = requesters
            .into_iter()
            .filter_map(|r| match r {
                Ok(r) => Some((r.id, Person::from_requester(&r))),
                Err(e) => {
                    tracing::warn!(requester = ?e.id, detail = %e.detail, "requester does not decode; its tickets look it up one by one");
                    None
                }
            })
            .collect();
        tracing::info!(
            departments = accounts.len(),
            agents = agents.len(),
            requesters = requesters.len(),
            "reference data loaded"
        );
        let ctx = Arc::new(Reference {
            accounts,
            agents,
            requesters,
            requester_source,
            settings: self.settings.clone(),
            looked_up: Default::default(),
        });

        // The listing streams pages into the dispatcher below; a single-ticket run feeds one
        // "page" of one ticket.
        let (page_tx, mut page_rx) = mpsc::channel::<Listed>(4);
        let lister = match (self.job.window, since) {
            (Window::Ticket(id), _) => {
                match source.ticket(id).await? {
                    Some(t) => {
                        let _ = page_tx.send(Listed::Live(vec![t])).await;
                    }
                    None if index.get(id).is_some() => {
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
                        return self.commit(index, changeset).await;
                    }
                    None => return Err(Error::TicketNotFound(id)),
                }
                drop(page_tx);
                None
            }
            (_, Some(since)) => {
                let plan = ListingPlan {
                    since,
                    requesters: requester_source,
                    reconcile_since: self.job.reconcile.then(|| {
                        self.settings.synced_at
                            - chrono::Duration::days(self.job.full_sync_days.into())
                    }),
                    rescan: if self.rescan_due {
                        index.closed_since(
                            self.settings.synced_at
                                - chrono::Duration::days(self.job.rescan_days.into()),
                        )
                    } else {
                        Vec::new()
                    },
                };
                Some(tokio::spawn(list(source.clone(), plan, page_tx)))
            }
            (_, None) => None,
        };

        let (ticket_tx, ticket_rx) = mpsc::unbounded_channel::<wire::Ticket>();
        let (result_tx, mut result_rx) =
            mpsc::channel::<Fetched>(self.job.checkpoint_every.max(64) * 2);
        let fetcher = tokio::spawn(fetch_all(
            source.clone(),
            ticket_rx,
            ctx.clone(),
            self.job.concurrency,
            result_tx,
        ));

        let progress = tracing::info_span!("fetching", indicatif.pb_show = true);
        progress.pb_set_style(&progress_style());
        progress.pb_set_length(0);
        progress.pb_start();

        let mut dispatch = Dispatch {
            latest: HashMap::new(),
            gone: Default::default(),
            queue: Some(ticket_tx),
            single: matches!(self.job.window, Window::Ticket(_)),
        };
        let mut changeset = Changeset::default();
        let (mut listing_open, mut results_open) = (true, true);
        let mut done = 0u64;
        let mut fatal: Option<Error> = None;
        loop {
            // What races: the next listing page and the next fetched ticket. Both are handled as
            // they come, so fetching starts with the first page and commits do not wait for the
            // listing to end.
            tokio::select! {
                page = page_rx.recv(), if listing_open => match page {
                    Some(Listed::Live(items)) => {
                        let queued = self.classify(items, index, &ctx, &mut dispatch, &mut changeset, false);
                        progress.pb_inc_length(queued);
                    }
                    Some(Listed::Changed(ticket)) => {
                        self.counts.rescan_changed += 1;
                        let queued = self.classify(vec![Ok(*ticket)], index, &ctx, &mut dispatch, &mut changeset, true);
                        progress.pb_inc_length(queued);
                    }
                    Some(Listed::Rescanned(n)) => self.counts.rescanned += n,
                    Some(Listed::Gone(reason, ids)) => {
                        for id in ids {
                            dispatch.gone(id);
                            changeset.placed.retain(|p| p.ticket.ticket_id != id);
                            changeset.rejected.retain(|r| r.ticket_id != id);
                            changeset.removed.retain(|(r, _)| *r != id);
                            if index.get(id).is_some() {
                                changeset.removed.push((id, reason));
                            }
                        }
                    }
                    None => {
                        // The listing is over: the workers finish their queue and stop.
                        listing_open = false;
                        dispatch.queue = None;
                    }
                },
                item = result_rx.recv(), if results_open => match item {
                    None => results_open = false,
                    Some(Fetched::Fatal(error)) => {
                        fatal = Some(Error::Source(error));
                        break;
                    }
                    Some(Fetched::Failed { ticket_id, error }) => {
                        done += 1;
                        progress.pb_inc(1);
                        self.counts.failed += 1;
                        tracing::error!(ticket_id, error = %error, "ticket not written; the next run retries it");
                    }
                    Some(Fetched::Done { updated_at, outcome }) => {
                        done += 1;
                        progress.pb_inc(1);
                        self.counts.fetched += 1;
                        // A newer version listed meanwhile makes this one stale.
                        if dispatch.is_latest(outcome_id(&outcome), updated_at) {
                            match outcome {
                                Outcome::Placed(p) => changeset.placed.push(*p),
                                Outcome::Rejected(r) => changeset.rejected.push(r),
                            }
                        }
                        if done % 25 == 0 {
                            progress.pb_set_message(&budget_message(&source, self.started));
                        }
                    }
                },
                else => break,
            }
            if changeset.placed.len() + changeset.rejected.len() >= self.job.checkpoint_every {
                let batch = std::mem::take(&mut changeset);
                self.commit(index, batch).await?;
                tracing::info!(done, "checkpoint committed");
            }
        }
        dispatch.queue = None;
        drop(result_rx);
        let _ = fetcher.await;
        self.counts.listed = dispatch.latest.len() as u64;
        // Whatever was fetched is valid data: commit it even when the run stops early.
        self.commit(index, changeset).await?;
        if let Some(e) = fatal {
            return Err(e);
        }
        if let Some(lister) = lister {
            match lister.await {
                Ok(result) => result?,
                Err(e) => return Err(Error::Task(format!("the listing task failed: {e}"))),
            }
        }
        tracing::info!(
            listed = self.counts.listed,
            closed = self.counts.closed,
            unchanged = self.counts.unchanged,
            fetched = self.counts.fetched,
            "listing and fetching done"
        );
        Ok(())
    }

    /// Sorts one page of the listing: closed tickets that cannot be placed → rejects (no
    /// further calls), unchanged → skipped, tickets that left Closed → removed, the rest → the
    /// fetch queue. Returns how many were queued.
    fn classify(
        &mut self,
        items: source::Items<wire::Ticket>,
        index: &state::Index,
        reference: &Reference,
        dispatch: &mut Dispatch,
        changeset: &mut Changeset,
        force: bool,
    ) -> u64 {
        let ctx = reference.context();
        let mut queued = 0;
        for item in items {
            let ticket = match item {
                Ok(t) => t,
                Err(e) => {
                    match normalize::malformed(&e, self.settings.synced_at) {
                        // Only if no decodable version of it was seen.
                        Some(r) if !dispatch.latest.contains_key(&r.ticket_id) => {
                            dispatch.latest.insert(r.ticket_id, None);
                            self.counts.closed += 1;
                            changeset.rejected.push(r);
                        }
                        Some(_) => {}
                        None => {
                            self.counts.unidentifiable += 1;
                            tracing::error!(detail = %e.detail, "a listed ticket has no usable id and cannot be placed or rejected");
                        }
                    }
                    continue;
                }
            };
            let id = ticket.id;
            if !force && !dispatch.newer(id, ticket.updated_at) {
                continue; // a duplicate (page shift), an older version, or a ticket gone meanwhile
            }
            // A newer version supersedes whatever is pending for this ticket.
            changeset.placed.retain(|p| p.ticket.ticket_id != id);
            changeset.rejected.retain(|r| r.ticket_id != id);
            changeset.removed.retain(|(r, _)| *r != id);
            if ticket.status != Some(5) {
                if index.get(id).is_some() {
                    changeset.removed.push((id, Removal::Reopened));
                }
                continue;
            }
            self.counts.closed += 1;
            if let Err(rejection) = normalize::placement(&ticket, &ctx) {
                changeset.rejected.push(rejection);
                continue;
            }
            match ticket.updated_at {
                Some(u) if !force && !dispatch.single && index.is_current(id, u) => {
                    self.counts.unchanged += 1
                }
                _ => {
                    if let Some(queue) = &dispatch.queue {
                        if queue.send(ticket).is_ok() {
                            queued += 1;
                        }
                    }
                }
            }
        }
        queued
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
        for (id, reason) in &changeset.removed {
            tracing::info!(
                ticket_id = id,
                reason = reason.as_str(),
                "ticket removed from the closed dataset"
            );
            self.removed
                .entry(reason.as_str().to_string())
                .or_default()
                .push(*id);
        }
        self.lock.check()?;
        let tag = format!("{}-{}", self.run_id, self.commits);
        self.commits += 1;
        let stats = sink::commit(self.storage, index, changeset, &tag).await?;
        self.output += stats;
        Ok(())
    }
}

/// Runs the fetch workers: as many tickets in flight as the budget can use given the observed
/// latency (Little's law: in-flight requests = rate × latency), at most `max_concurrency`.
/// Results go to `tx` in completion order; the commit sorts rows, so the dataset does not depend
/// on that order.
async fn fetch_all(
    source: Arc<Source>,
    mut queue: mpsc::UnboundedReceiver<wire::Ticket>,
    ctx: Arc<Reference>,
    max_concurrency: usize,
    tx: mpsc::Sender<Fetched>,
) {
    let mut running = tokio::task::JoinSet::new();
    let mut queue_open = true;
    loop {
        let cap = concurrency_for(&source, max_concurrency);
        while queue_open && running.len() < cap {
            match queue.try_recv() {
                Ok(ticket) => {
                    running.spawn(fetch_one(source.clone(), ticket, ctx.clone()));
                }
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => queue_open = false,
            }
        }
        let fetched = if running.is_empty() {
            if !queue_open {
                break;
            }
            // Idle: wait for the listing to queue more.
            match queue.recv().await {
                Some(ticket) => {
                    running.spawn(fetch_one(source.clone(), ticket, ctx.clone()));
                    continue;
                }
                None => break,
            }
        } else {
            // What races: a worker finishing and (while under the cap) new work arriving.
            tokio::select! {
                done = running.join_next() => match done {
                    Some(Ok(fetched)) => fetched,
                    Some(Err(e)) => Fetched::Failed { ticket_id: 0, error: format!("a fetch task failed: {e}") },
                    None => continue,
                },
                ticket = queue.recv(), if queue_open && running.len() < cap => {
                    match ticket {
                        Some(ticket) => {
                            running.spawn(fetch_one(source.clone(), ticket, ctx.clone()));
                        }
                        None => queue_open = false,
                    }
                    continue;
                }
            }
        };
        if tx.send(fetched).await.is_err() {
            running.abort_all();
            break; // the dispatcher stopped (an error); stop fetching
        }
    }
}

/// Tickets to keep in flight: each ticket makes two requests at once, so tickets =
/// rate × latency / 2, times 4 for headroom (normalization time, multi-page tickets, latency
/// jitter), plus 4. Over-provisioning costs nothing: the limiter, not the workers, sets the pace.
fn concurrency_for(source: &Source, max: usize) -> usize {
    let client = source.client();
    let latency = client.latency().map_or(0.5, |l| l.as_secs_f64());
    let wanted = (client.target_rate_per_sec() * latency * 4.0 / 2.0).ceil() as usize + 4;
    wanted.clamp(2, max.max(2))
}

fn progress_style() -> indicatif::ProgressStyle {
    indicatif::ProgressStyle::with_template(
        "{span_child_prefix}{spinner} tickets {pos}/{len} [{wide_bar}] eta {eta} {msg}",
    )
    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
}

/// "budget 171/180 per window" for the progress bar.
fn budget_message(source: &Source, started: Instant) -> String {
    let client = source.client();
    let stats = client.stats();
    let windows = started.elapsed().as_secs_f64()
        / (client.target_per_window() / client.target_rate_per_sec()).max(1e-9);
    let per_window = if windows > 0.0 {
        stats.credits_used as f64 / windows
    } else {
        0.0
    };
    format!(
        "credits {per_window:.0}/{:.0} per window, {} 429s",
        client.target_per_window(),
        stats.rate_limited
    )
}

/// Fetches one ticket's conversations and time entries and normalizes it (on the blocking pool:
/// HTML rendering of large bodies is CPU work).
async fn fetch_one(
    source: Arc<Source>,
    mut ticket: wire::Ticket,
    reference: Arc<Reference>,
) -> Fetched {
    let id = ticket.id;
    let (conversations, time_entries, requester) = tokio::join!(
        source.conversations(id),
        source.time_entries(id),
        reference.missing_requester(&source, &ticket)
    );
    let requester = match requester {
        Ok(embed) => embed,
        Err(e) if e.is_auth() => return Fetched::Fatal(e),
        Err(e) => {
            return Fetched::Failed {
                ticket_id: id,
                error: e.to_string(),
            }
        }
    };
    if requester.is_some() {
        ticket.requester = requester;
    }
    let (conversations, time_entries) = match (conversations, time_entries) {
        (Ok(c), Ok(t)) => (c, t),
        (Err(source::Error::NotFound { .. }), _) | (_, Err(source::Error::NotFound { .. })) => {
            let settings = &reference.settings;
            return Fetched::Done {
                updated_at: ticket.updated_at,
                outcome: Outcome::Rejected(Rejection {
                ticket_id: id,
                reason: RejectReason::TicketDeleted,
                department_id: ticket.department_id,
                detail: format!("ticket {id}: its conversations or time entries answered 404 (deleted after it was listed)"),
                    updated_at: ticket.updated_at,
                    seen_at: settings.synced_at,
                }),
            };
        }
        (Err(e), _) | (_, Err(e)) if e.is_auth() => return Fetched::Fatal(e),
        (Err(e), _) | (_, Err(e)) => {
            return Fetched::Failed {
                ticket_id: id,
                error: e.to_string(),
            }
        }
    };
    let updated_at = ticket.updated_at;
    let outcome = tokio::task::spawn_blocking(move || {
        normalize::normalize_ticket(&ticket, &conversations, &time_entries, &reference.context())
    })
    .await;
    match outcome {
        Ok(outcome) => Fetched::Done {
            updated_at,
            outcome,
        },
        Err(panic) => Fetched::Failed {
            ticket_id: id,
            error: format!("normalizing ticket {id} panicked: {panic}"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::{SimConfig, Simulator};
    use crate::source::limiter::LimiterConfig;
    use crate::source::retry::RetryPolicy;
    use crate::source::ClientConfig;

    fn reference(requesters: HashMap<i64, Person>, source: Requesters) -> Reference {
        Reference {
            accounts: AccountMap::new(&[], "account_number", &HashMap::new()),
            agents: HashMap::new(),
            requesters,
            requester_source: source,
            settings: Settings {
                default_minutes: 15,
                synced_at: Utc::now(),
            },
            looked_up: Default::default(),
        }
    }

    fn ticket(id: i64, requester_id: i64) -> wire::Ticket {
        serde_json::from_value(serde_json::json!({"id": id, "requester_id": requester_id})).unwrap()
    }

    #[tokio::test]
    async fn a_requester_missing_from_the_directory_is_looked_up_once() {
        let sim = Simulator::start(
            SimConfig {
                tickets: 20,
                rate_limit: false,
                ..SimConfig::default()
            },
            0,
        )
        .await
        .unwrap();
        let source = Source::new(ClientConfig {
            base_url: url::Url::parse(&sim.base_url()).unwrap(),
            api_key: sim.api_key(),
            limiter: LimiterConfig::default(),
            retry: RetryPolicy::default(),
            timeout: std::time::Duration::from_secs(5),
            max_response_bytes: crate::source::client::DEFAULT_MAX_RESPONSE_BYTES,
        })
        .unwrap();
        let truth = sim.ground_truth();
        let known = &truth.requesters[0];
        let (name, email) = truth.user(known.id).unwrap();

        // The directory was read without this requester (added after it was read).
        let directory = reference(HashMap::new(), Requesters::Directory);
        for ticket_id in [1, 2, 3] {
            let embed = directory
                .missing_requester(&source, &ticket(ticket_id, known.id))
                .await
                .unwrap()
                .expect("looked up");
            assert_eq!(embed.name.as_deref(), Some(name.as_str()));
            assert_eq!(embed.email.as_deref(), Some(email.as_str()));
        }
        // No such requester: nothing to embed, and that is remembered too.
        for _ in 0..2 {
            let none = directory
                .missing_requester(&source, &ticket(4, 999))
                .await
                .unwrap();
            assert_eq!(none, None);
        }
        assert_eq!(sim.stats().by_endpoint["requester_view"], 2);

        // Known to the directory, or embedded by the listing: no call.
        let person = Person {
            name: Some(name.clone()),
            email: Some(email.clone()),
        };
        let full = reference(HashMap::from([(known.id, person)]), Requesters::Directory);
        assert_eq!(
            full.missing_requester(&source, &ticket(5, known.id))
                .await
                .unwrap(),
            None
        );
        let embedded = reference(HashMap::new(), Requesters::Embedded);
        assert_eq!(
            embedded
                .missing_requester(&source, &ticket(6, known.id))
                .await
                .unwrap(),
            None
        );
        assert_eq!(sim.stats().by_endpoint["requester_view"], 2);
        sim.shutdown().await;
    }
}
