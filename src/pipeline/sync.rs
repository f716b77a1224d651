//! The mechanism of one run under the lock: the listing task, the fetch workers and the
//! dispatcher between them, checkpoints and the final commit. Every decision it makes is a
//! function of `policy`; this file only moves tickets between tasks and counts them.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, oneshot};
use tracing_indicatif::span_ext::IndicatifSpanExt;

use super::fetch::{fetch_all, Fetched};
use super::listing::{list_early, Listed, ListingPlan};
use super::policy::{self, Action, Gone, Known, Tail};
use super::reference::Reference;
use super::{Error, Start};
use crate::job::{Job, Window};
use crate::normalize::{Outcome, RejectReason, Rejection, Settings};
use crate::report::{RemovalGuardReport, TicketCounts};
use crate::sink::{self, Changeset, CommitStats, Removal};
use crate::source::{self, wire, Endpoint, Source};
use crate::state;
use crate::state::delta::{At, Lake};
use crate::state::lock::Lock;
use crate::storage::Storage;
use crate::tables::Table;

/// The state of one run while it syncs.
pub(crate) struct Run<'a> {
    pub(crate) job: &'a Job,
    pub(crate) source: Arc<Source>,
    pub(crate) storage: &'a Storage,
    /// Checked before every commit: a run that lost its lock must stop writing.
    pub(crate) lock: &'a Lock,
    pub(crate) run_id: String,
    pub(crate) settings: Settings,
    pub(crate) counts: TicketCounts,
    pub(crate) rejects_by_reason: BTreeMap<String, u64>,
    /// Removals committed, by reason.
    pub(crate) removed: BTreeMap<String, Vec<i64>>,
    /// Removals this run would make, decided at the end (the removal guard sees them all).
    pending_removals: BTreeMap<i64, Removal>,
    /// What was fetched of tickets later reported gone: dropped if the removals go ahead,
    /// written if the guard refuses them.
    held: HashMap<i64, Outcome>,
    /// Placed tickets that would become rejects: they leave the tables like a removal, so
    /// they wait for the removal guard too (written if it allows, dropped if it refuses).
    demoted: BTreeMap<i64, Rejection>,
    /// Set when the removal guard refused this run's removals.
    pub(crate) guard: Option<RemovalGuardReport>,
    /// Whether this run re-reads the time entries of recently closed tickets.
    pub(crate) rescan_due: bool,
    pub(crate) output: CommitStats,
    /// The tables' logs as this run's commits left them (read at the first commit).
    lake: Option<Lake>,
    /// Checkpoints written since the last table commit (durable, not yet in the tables).
    pending: Vec<sink::pending::Segment>,
    /// When the tables were last committed (the run's start before the first commit).
    committed_at: Instant,
    /// What writing the pending checkpoints took, together.
    checkpoints_took: Duration,
    /// Where the last table commit that wrote a file spent its time: what a commit of the tail
    /// is foreseen from ([`sink::CommitCost::foresee`]; nothing before the first).
    last_cost: sink::CommitCost,
    /// Secrets redacted in the tickets committed, by rule.
    pub(crate) redactions: BTreeMap<String, u64>,
    /// Tickets committed with an erased person removed from them.
    pub(crate) tickets_erased: u64,
    /// Names of erased people learned from the tickets committed (keyed hashes), by address hash.
    pub(crate) learned_names: BTreeMap<String, crate::normalize::privacy::LearnedName>,
    /// Tickets closed before this are not written (`retention_days`).
    retention_cutoff: Option<DateTime<Utc>>,
    commits: u32,
    started: Instant,
    /// Documents being written ahead for the next commit (see [`Changeset::written`]).
    ahead: Ahead,
}

/// The documents a run writes while it waits on the network, each as soon as its ticket's
/// answer is in, under the checkpoint directory of the next commit; the commit takes what was
/// written ([`Ahead::finish`]) and writes only what changed since.
#[derive(Default)]
struct Ahead {
    writes: tokio::task::JoinSet<Option<(i64, object_store::path::Path, bytes::Bytes)>>,
    /// The tickets written (or being written) for the next commit: each once; a newer version
    /// that comes later is written by the commit.
    tickets: HashSet<i64>,
}

impl Ahead {
    /// Starts writing `p`'s document to `path`.
    fn write(
        &mut self,
        storage: &Storage,
        p: &crate::normalize::Placed,
        path: object_store::path::Path,
    ) {
        let id = p.ticket.ticket_id;
        if !self.tickets.insert(id) {
            return;
        }
        let storage = storage.clone();
        let bytes = bytes::Bytes::from(p.markdown.clone());
        self.writes.spawn(async move {
            match storage.put(&path, bytes.clone()).await {
                Ok(()) => Some((id, path, bytes)),
                Err(e) => {
                    // The commit writes it.
                    tracing::debug!(ticket_id = id, error = %e, "a document written ahead failed");
                    None
                }
            }
        });
    }

    /// Waits for the writes started and returns what they wrote, for the next commit.
    async fn finish(&mut self) -> HashMap<i64, (object_store::path::Path, bytes::Bytes)> {
        let mut written = HashMap::new();
        while let Some(done) = self.writes.join_next().await {
            if let Ok(Some((id, path, bytes))) = done {
                written.insert(id, (path, bytes));
            }
        }
        self.tickets.clear();
        written
    }
}

/// Which version of each listed ticket is the latest (the listing can show a ticket twice when
/// it changes while we page), and which tickets the API reported gone.
#[derive(Default)]
struct Dispatch {
    latest: HashMap<i64, Option<DateTime<Utc>>>,
    gone: HashSet<i64>,
}

impl Dispatch {
    /// Records `updated_at` for `id`; `false` when an equal or newer version was seen before.
    fn newer(&mut self, id: i64, updated_at: Option<DateTime<Utc>>) -> bool {
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
        self.latest.get(&id).is_none_or(|seen| *seen <= updated_at)
    }
}

fn outcome_id(outcome: &Outcome) -> i64 {
    match outcome {
        Outcome::Placed(p) => p.ticket.ticket_id,
        Outcome::Rejected(r) => r.ticket_id,
    }
}

/// Removes whatever is pending for `id` from a changeset; returns it (a newer version, or a
/// removal, supersedes it).
fn take_pending(changeset: &mut Changeset, id: i64) -> Option<Outcome> {
    let mut taken = None;
    if let Some(i) = changeset
        .placed
        .iter()
        .position(|p| p.ticket.ticket_id == id)
    {
        taken = Some(Outcome::Placed(Box::new(changeset.placed.swap_remove(i))));
    }
    if let Some(i) = changeset.rejected.iter().position(|r| r.ticket_id == id) {
        taken = Some(Outcome::Rejected(changeset.rejected.swap_remove(i)));
    }
    taken
}

/// Whether the tables hold this ticket (placed, not rejected).
fn placed(index: &state::Index, id: i64) -> bool {
    index
        .get(id)
        .is_some_and(|e| matches!(e.location, state::Location::Placed { .. }))
}

fn push(changeset: &mut Changeset, outcome: Outcome) {
    match outcome {
        Outcome::Placed(p) => changeset.placed.push(*p),
        Outcome::Rejected(r) => changeset.rejected.push(r),
    }
}

/// Where a ticket to classify comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum From {
    /// The live listing.
    Listing,
    /// A single-ticket run: fetched even when unchanged.
    Single,
    /// The re-scan found its time entries changed: fetched again whatever the listing said.
    Rescan,
}

/// How the dispatcher loop ended.
enum Stop {
    /// Listing and fetching are done.
    Done,
    /// The credentials stopped working.
    Fatal(source::Error),
    /// `max_run_minutes` passed.
    TimedOut,
}

impl<'a> Run<'a> {
    pub(crate) fn new(
        job: &'a Job,
        source: Arc<Source>,
        storage: &'a Storage,
        lock: &'a Lock,
        start: &Start,
        rescan_due: bool,
        privacy: crate::normalize::Privacy,
    ) -> Run<'a> {
        Run {
            job,
            source,
            storage,
            lock,
            run_id: start.run_id.clone(),
            settings: Settings {
                default_minutes: job.default_minutes,
                synced_at: start.at,
                privacy,
            },
            counts: TicketCounts::default(),
            rejects_by_reason: BTreeMap::new(),
            removed: BTreeMap::new(),
            pending_removals: BTreeMap::new(),
            held: HashMap::new(),
            demoted: BTreeMap::new(),
            guard: None,
            rescan_due,
            output: CommitStats::default(),
            lake: None,
            pending: Vec::new(),
            committed_at: start.instant,
            checkpoints_took: Duration::ZERO,
            last_cost: sink::CommitCost::default(),
            redactions: BTreeMap::new(),
            tickets_erased: 0,
            learned_names: BTreeMap::new(),
            retention_cutoff: job
                .retention_days
                .map(|days| crate::dataset::retention::cutoff(start.at, days)),
            commits: 0,
            started: start.instant,
            ahead: Ahead::default(),
        }
    }

    pub(crate) async fn sync(
        &mut self,
        index: &mut state::Index,
        since: Option<DateTime<Utc>>,
    ) -> Result<(), Error> {
        let source = self.source.clone();
        let requester_source = policy::requester_source(since, self.settings.synced_at);
        // The listing streams pages into the dispatcher below; a single-ticket run feeds one
        // "page" of one ticket. The listing starts with the run, beside the reference data (see
        // `listing::list_early`); the dispatcher takes its pages once that is read.
        let (page_tx, mut page_rx) = mpsc::channel::<Listed>(4);
        let (settled_tx, settled_rx) = oneshot::channel();
        let (lister, single_tx) = match (self.job.window, since) {
            (Window::Ticket(_), _) => (None, Some(page_tx)),
            (_, Some(since)) => {
                let synced_at = self.settings.synced_at;
                let plan = ListingPlan {
                    since,
                    workspaces: vec![None],
                    requesters: requester_source,
                    reconcile_since: self.job.reconcile.then(|| {
                        synced_at - chrono::Duration::days(self.job.full_sync_days.into())
                    }),
                    rescan: if self.rescan_due {
                        index.closed_since(
                            synced_at - chrono::Duration::days(self.job.rescan_days.into()),
                        )
                    } else {
                        Vec::new()
                    },
                    opening_pages: source.open_listing(
                        since,
                        requester_source,
                        policy::long_window(since, synced_at),
                    ),
                };
                let lister = tokio::spawn(list_early(source.clone(), plan, settled_rx, page_tx));
                (Some(lister), None)
            }
            (_, None) => (None, None),
        };
        let reference = match Reference::load(
            &source,
            requester_source,
            self.job,
            self.settings.clone(),
            Some(settled_tx),
        )
        .await
        {
            Ok(reference) => Arc::new(reference),
            Err(e) => {
                if let Some(lister) = &lister {
                    lister.abort();
                }
                return Err(e.into());
            }
        };
        if let (Window::Ticket(id), Some(page_tx)) = (self.job.window, single_tx) {
            match source.ticket(id).await? {
                Some(t) => {
                    let _ = page_tx.send(Listed::Live(vec![t])).await;
                }
                None => {
                    return Err(Error::TicketNotFound {
                        id,
                        stored: index.get(id).is_some(),
                    })
                }
            }
        }

        // Bounded all the way: the listing waits when the backlog is full, the workers when
        // the dispatcher has not taken their results. Memory follows `concurrency` and
        // `checkpoint_every`, not the number of tickets listed.
        let (queue_tx, queue_rx) = mpsc::channel::<wire::Ticket>(self.job.concurrency);
        let (result_tx, mut result_rx) =
            mpsc::channel::<Fetched>(self.job.checkpoint_every.clamp(64, 1024));
        let started = Arc::new(AtomicU64::new(0));
        let fetcher = tokio::spawn(fetch_all(
            source.clone(),
            queue_rx,
            reference.clone(),
            self.job.concurrency,
            result_tx,
            started.clone(),
        ));
        let mut queue = Some(queue_tx);
        let mut backlog: VecDeque<wire::Ticket> = VecDeque::new();
        let backlog_limit = policy::backlog_limit(self.job.concurrency);

        // One bar per account of a fleet, each named by its domain.
        let progress = tracing::info_span!(
            "fetching",
            domain = %self.job.domain,
            indicatif.pb_show = true
        );
        progress.pb_set_style(&progress_style());
        progress.pb_set_length(0);
        progress.pb_start();

        let single = matches!(self.job.window, Window::Ticket(_));
        let deadline = tokio::time::Instant::from_std(self.started + self.job.max_run);
        let mut dispatch = Dispatch::default();
        let mut changeset = Changeset::default();
        let (mut listing_open, mut results_open) = (true, true);
        let (mut handed, mut done) = (0u64, 0u64);
        // Table commits made while the last tickets were still being fetched.
        let mut tail_commits = 0u32;
        let stop = loop {
            // What races: the next listing message (only while the backlog has room), handing a
            // ticket to the workers, the next fetched ticket, and the run's deadline.
            tokio::select! {
                message = page_rx.recv(), if listing_open && backlog.len() < backlog_limit => match message {
                    Some(Listed::Live(items)) => {
                        let from = if single { From::Single } else { From::Listing };
                        let queued = self.classify(items, from, index, &reference, &mut dispatch, &mut changeset, &mut backlog);
                        progress.pb_inc_length(queued);
                    }
                    Some(Listed::Changed(ticket)) => {
                        self.counts.rescan_changed += 1;
                        let queued = self.classify(vec![Ok(*ticket)], From::Rescan, index, &reference, &mut dispatch, &mut changeset, &mut backlog);
                        progress.pb_inc_length(queued);
                    }
                    Some(Listed::Rescanned(n)) => self.counts.rescanned += n,
                    Some(Listed::Relisted) => self.counts.relisted += 1,
                    Some(Listed::Ignored(n)) => self.counts.reconcile_ignored += n,
                    Some(Listed::Failed { ticket_id, error }) => self.fail(ticket_id, &error),
                    Some(Listed::Gone(gone)) => {
                        for g in gone {
                            self.gone(g, index, &mut dispatch, &mut changeset);
                        }
                    }
                    None => listing_open = false,
                },
                permit = reserve(&queue), if !backlog.is_empty() => match permit {
                    Some(permit) => {
                        if let Some(ticket) = backlog.pop_front() {
                            permit.send(ticket);
                            handed += 1;
                        }
                    }
                    None => {
                        // The workers are gone (a bug): what waits for them fails, loudly.
                        for ticket in std::mem::take(&mut backlog) {
                            self.fail(ticket.id, "the fetch workers stopped before this ticket");
                        }
                    }
                },
                item = result_rx.recv(), if results_open => match item {
                    None => results_open = false,
                    Some(Fetched::Fatal(error)) => break Stop::Fatal(error),
                    Some(Fetched::Failed { ticket_id, error }) => {
                        let error = format!("ticket {ticket_id}: {error}");
                        done += 1;
                        progress.pb_inc(1);
                        self.fail(ticket_id, &error);
                    }
                    Some(Fetched::Done { updated_at, outcome }) => {
                        done += 1;
                        progress.pb_inc(1);
                        self.counts.fetched += 1;
                        let id = outcome_id(&outcome);
                        if dispatch.gone.contains(&id) {
                            self.held.insert(id, outcome);
                        } else if dispatch.is_latest(id, updated_at) {
                            // (A newer version listed meanwhile makes this one stale.)
                            self.settle(outcome, index, &mut changeset);
                        }
                        if done.is_multiple_of(25) {
                            progress.pb_set_message(&budget_message(&source, self.started));
                        }
                    }
                },
                () = tokio::time::sleep_until(deadline), if listing_open || results_open => break Stop::TimedOut,
                else => break Stop::Done,
            }
            // The listing is over and everything listed was handed over: the workers finish
            // their queue and stop, which closes the results.
            if !listing_open && backlog.is_empty() {
                queue = None;
            }
            let due =
                changeset.placed.len() + changeset.rejected.len() >= self.job.checkpoint_every;
            // The listing is over and the workers hold the last tickets: the checkpoints so far
            // (and a checkpoint due now, straight from memory), then what arrives, go into the
            // tables while the last round trips are in flight (see `Tail::commit_now`).
            if queue.is_none() && done < handed && handed - done <= self.job.concurrency as u64 {
                let unstarted = handed.saturating_sub(started.load(Ordering::Relaxed));
                let tail = Tail {
                    commits: tail_commits,
                    checkpoints: due || !self.pending.is_empty(),
                    arrived: (changeset.placed.len() + changeset.rejected.len()) as u64,
                    settled: result_rx.is_empty(),
                    outstanding: handed - done,
                    eta: tail_eta(&source, unstarted),
                    estimate: self.commit_estimate(due),
                    arrived_takes: self.last_cost.foresee(
                        partition_files(&changeset),
                        u32::try_from(changeset.placed.len()).unwrap_or(u32::MAX),
                    ),
                };
                if tail.commit_now() {
                    tracing::debug!(
                        commits = tail.commits,
                        arrived = tail.arrived,
                        outstanding = tail.outstanding,
                        unstarted,
                        eta_ms = tail.eta.as_millis() as u64,
                        estimate_ms = tail.estimate.as_millis() as u64,
                        arrived_takes_ms = tail.arrived_takes.map(|d| d.as_millis() as u64),
                        "what has arrived goes into the tables while the last tickets are fetched"
                    );
                    tail_commits += 1;
                    let batch = std::mem::take(&mut changeset);
                    self.commit(index, batch, Commit::Tables).await?;
                    continue;
                }
            }
            if due {
                let batch = std::mem::take(&mut changeset);
                self.commit(index, batch, Commit::Checkpoint).await?;
            }
        };
        drop(queue);
        drop(page_rx);
        drop(result_rx);
        let workers = fetcher.await.map_err(Error::task("the fetch workers"));
        self.counts.listed = dispatch.latest.len() as u64;

        let listing = match lister {
            Some(lister) if matches!(stop, Stop::Done) => match lister.await {
                Ok(result) => result,
                Err(e) => Err(Error::task("the listing")(e)),
            },
            Some(lister) => {
                lister.abort();
                Ok(())
            }
            None => Ok(()),
        };
        // Removals only when the listing (and the deleted/spam views) read to the end, and
        // only as many as the guard allows.
        if matches!(stop, Stop::Done) && listing.is_ok() {
            self.decide_removals(index, &mut changeset);
        }
        // Whatever was fetched is valid data: commit it even when the run stops early.
        self.commit(index, changeset, Commit::Tables).await?;
        match stop {
            Stop::Fatal(e) => return Err(Error::Source(e)),
            Stop::TimedOut => {
                return Err(Error::TimedOut {
                    minutes: self.job.max_run.as_secs_f64() / 60.0,
                })
            }
            Stop::Done => {}
        }
        listing?;
        workers?;
        if let Some(guard) = &self.guard {
            return Err(Error::RemovalGuard {
                would_remove: guard.would_remove,
                limit: guard.limit,
            });
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

    /// Where a ticket's outcome goes: a reject of a ticket the tables hold takes it out of
    /// them, so it waits for the removal guard ([`Self::decide_removals`]); a decode problem
    /// never does (the ticket fails and keeps its rows). Everything else goes into the changeset.
    fn settle(&mut self, outcome: Outcome, index: &state::Index, changeset: &mut Changeset) {
        match outcome {
            Outcome::Rejected(r) if placed(index, r.ticket_id) => {
                if matches!(
                    r.reason,
                    RejectReason::MalformedTicket
                        | RejectReason::MalformedConversation
                        | RejectReason::InvalidTimeEntry
                ) {
                    let error = format!(
                        "ticket {}: {}; it is in the dataset, so its rows stay as they are",
                        r.ticket_id, r.detail
                    );
                    self.fail(r.ticket_id, &error);
                } else {
                    self.demoted.insert(r.ticket_id, r);
                }
            }
            outcome => {
                if let Outcome::Placed(p) = &outcome {
                    let target = crate::sink::markdown::path_of(self.storage.scope(), p);
                    let path = self.storage.pending(&self.next_tag(), &target);
                    self.ahead.write(self.storage, p, path);
                }
                push(changeset, outcome)
            }
        }
    }

    /// The tag of the next commit: its staging area, checkpoint directory and data files.
    fn next_tag(&self) -> String {
        format!("{}-{:05}", self.run_id, self.commits)
    }

    fn fail(&mut self, ticket_id: i64, error: &str) {
        self.counts.failed += 1;
        tracing::error!(ticket_id, error = %error, "ticket not written; the next run retries it");
    }

    /// The API reported `gone.id` deleted or spam: whatever is pending for it waits for the
    /// removal guard's decision instead of being written.
    fn gone(
        &mut self,
        gone: Gone,
        index: &state::Index,
        dispatch: &mut Dispatch,
        changeset: &mut Changeset,
    ) {
        dispatch.gone.insert(gone.id);
        self.demoted.remove(&gone.id);
        if let Some(outcome) = take_pending(changeset, gone.id) {
            self.held.insert(gone.id, outcome);
        }
        if index.get(gone.id).is_some() {
            self.pending_removals.insert(gone.id, gone.reason);
        } else {
            self.pending_removals.remove(&gone.id);
        }
    }

    /// The removal guard: every pending removal goes ahead, or (past `max_removals`) none
    /// does and what was held back is written as fetched.
    fn decide_removals(&mut self, index: &state::Index, changeset: &mut Changeset) {
        // Only tickets the dataset holds count: a gone ticket never written removes nothing.
        let affected: std::collections::BTreeSet<i64> = self
            .pending_removals
            .keys()
            .chain(self.held.keys().filter(|id| index.get(**id).is_some()))
            .chain(self.demoted.keys())
            .copied()
            .collect();
        let limit = policy::removal_limit(self.job.max_removals, index.placed());
        let held = std::mem::take(&mut self.held);
        let pending = std::mem::take(&mut self.pending_removals);
        let demoted = std::mem::take(&mut self.demoted);
        if policy::removals_allowed(affected.len(), limit) {
            changeset.removed.extend(pending);
            changeset.rejected.extend(demoted.into_values());
            return;
        }
        let mut ids: BTreeMap<String, Vec<i64>> = BTreeMap::new();
        for (id, reason) in &pending {
            ids.entry(reason.as_str().into()).or_default().push(*id);
        }
        let reported: HashSet<i64> = pending.keys().copied().collect();
        for id in held.keys().filter(|id| !reported.contains(id)) {
            ids.entry("not_written".into()).or_default().push(*id);
        }
        // Kept placed as they are: the rejects are not written.
        for (id, r) in &demoted {
            ids.entry(format!("rejected_{}", r.reason.as_str()))
                .or_default()
                .push(*id);
        }
        for list in ids.values_mut() {
            list.sort_unstable();
        }
        tracing::error!(
            would_remove = affected.len(),
            limit,
            "the run would remove more tickets than max_removals allows; it removes none"
        );
        for (id, outcome) in held {
            match outcome {
                // A reject of a placed ticket would take it out of the tables: kept as it is.
                Outcome::Rejected(r) if placed(index, id) => {
                    if !reported.contains(&id) {
                        let key = format!("rejected_{}", r.reason.as_str());
                        let list = ids.entry(key).or_default();
                        list.push(id);
                        list.sort_unstable();
                    }
                }
                outcome => push(changeset, outcome),
            }
        }
        self.guard = Some(RemovalGuardReport {
            limit,
            would_remove: affected.len() as u64,
            ids,
        });
    }

    /// Sorts one page of the listing (see [`policy::classify`]): closed tickets that cannot be
    /// placed → rejects (no further calls), unchanged → skipped, tickets that left Closed →
    /// pending removal, the rest → the backlog of the fetch workers. Returns how many were
    /// queued.
    #[allow(clippy::too_many_arguments)]
    fn classify(
        &mut self,
        items: source::Items<wire::Ticket>,
        from: From,
        index: &state::Index,
        reference: &Reference,
        dispatch: &mut Dispatch,
        changeset: &mut Changeset,
        backlog: &mut VecDeque<wire::Ticket>,
    ) -> u64 {
        let mut queued = 0;
        for item in items {
            let ticket = match item {
                Ok(t) => t,
                Err(e) => {
                    match crate::normalize::malformed(&e, self.settings.synced_at) {
                        // Only if no decodable version of it was seen.
                        Some(r) if !dispatch.latest.contains_key(&r.ticket_id) => {
                            dispatch.latest.insert(r.ticket_id, None);
                            self.counts.closed += 1;
                            take_pending(changeset, r.ticket_id);
                            self.settle(Outcome::Rejected(r), index, changeset);
                        }
                        Some(_) => {}
                        None => {
                            // Neither placed nor rejected: the run cannot show it saw it.
                            self.counts.unidentifiable += 1;
                            self.counts.failed += 1;
                            tracing::error!(detail = %e.detail, "a listed ticket has no usable id and cannot be placed or rejected; the run fails");
                        }
                    }
                    continue;
                }
            };
            let id = ticket.id;
            if dispatch.gone.contains(&id) {
                continue; // reported deleted or spam: the removal guard decides
            }
            if from != From::Rescan && !dispatch.newer(id, ticket.updated_at) {
                continue; // a duplicate (page shift) or an older version
            }
            // A newer version supersedes whatever is pending for this ticket.
            take_pending(changeset, id);
            self.pending_removals.remove(&id);
            self.demoted.remove(&id);
            backlog.retain(|t| t.id != id);
            if self
                .retention_cutoff
                .is_some_and(|cutoff| ticket.updated_at.is_some_and(|u| u < cutoff))
            {
                // Closed before it was last updated, so before the retention cutoff too.
                if ticket.status == Some(crate::normalize::STATUS_CLOSED) {
                    self.counts.closed += 1;
                    self.counts.expired += 1;
                }
                continue;
            }
            let known = Known {
                in_dataset: index.get(id).is_some(),
                current: ticket.updated_at.is_some_and(|u| index.is_current(id, u)),
            };
            let action = policy::classify(
                &ticket,
                known,
                from != From::Listing,
                reference.accounts.check_ticket(&ticket),
                self.settings.synced_at,
            );
            if !matches!(action, Action::Skip | Action::Remove(_)) {
                self.counts.closed += 1;
            }
            match action {
                Action::Skip => {}
                Action::Unchanged => self.counts.unchanged += 1,
                Action::Remove(reason) => {
                    self.pending_removals.insert(id, reason);
                }
                Action::Reject(rejection) => {
                    self.settle(Outcome::Rejected(rejection), index, changeset)
                }
                Action::Fail(error) => self.fail(id, &error),
                Action::Fetch => {
                    backlog.push_back(ticket);
                    queued += 1;
                }
            }
        }
        queued
    }

    /// About how long a table commit of the pending checkpoints takes (with one more, as long
    /// as the average so far, when `with_due` a checkpoint is due), erring a little long: 1.25
    /// times what writing them took, and at least two round trips (on local disk the commit
    /// took 1.0–1.3 times the writing: 0.52 s for two checkpoints written in 0.51 s; with the
    /// documents written ahead, writing a checkpoint costs far less than committing it, so
    /// the floor decides). The first commit of the tail starts once the last answer is about
    /// two of these away, so that it ends before that answer and the commits after it can take
    /// what arrives meanwhile ([`Tail::commit_now`]).
    fn commit_estimate(&self, with_due: bool) -> Duration {
        let round_trip = self.source.client().latency().unwrap_or_default();
        let mut took = self.checkpoints_took;
        if with_due && !self.pending.is_empty() {
            took += took / self.pending.len() as u32;
        }
        (took * 5 / 4)
            .max(round_trip * 2)
            .max(Duration::from_millis(100))
    }

    /// Whether checkpoints of this run are not in the tables yet (its last commit failed): the
    /// next run's recovery commits them, and nothing else may commit before that.
    pub(crate) fn unflushed(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Commits `changeset`: as a checkpoint (durable, not yet in the tables) or, at the end of
    /// the run, while its last tickets are fetched and once `commit_minutes` have passed since
    /// the last one, with every checkpoint before it as one table commit.
    pub(crate) async fn commit(
        &mut self,
        index: &mut state::Index,
        mut changeset: Changeset,
        kind: Commit,
    ) -> Result<(), Error> {
        if let Some(cutoff) = self.retention_cutoff {
            // Closed before the retention cutoff: never written again (retention at the end of
            // the run removes what the dataset still holds of them).
            let before = changeset.placed.len() + changeset.rejected.len();
            changeset.placed.retain(|p| p.ticket.closed_at >= cutoff);
            changeset
                .rejected
                .retain(|r| r.updated_at.is_none_or(|u| u >= cutoff));
            self.counts.expired +=
                (before - changeset.placed.len() - changeset.rejected.len()) as u64;
        }
        if changeset.is_empty() && self.commits > 0 && self.pending.is_empty() {
            return Ok(());
        }
        for r in &mut changeset.rejected {
            self.settings
                .privacy
                .apply_to_detail(&mut r.detail, &mut self.redactions);
        }
        let mut new_names = Vec::new();
        for p in &changeset.placed {
            for (rule, n) in &p.privacy.redactions {
                *self.redactions.entry(rule.clone()).or_default() += n;
            }
            self.tickets_erased += u64::from(p.privacy.erased);
            if let Some(learned) = &p.privacy.learned {
                if !self.learned_names.contains_key(&learned.email) {
                    self.learned_names
                        .insert(learned.email.clone(), learned.clone());
                    new_names.push(learned.clone());
                }
            }
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
        self.lock.verify().await?;
        // A learned name is durable before the tickets it came from are.
        if !new_names.is_empty() {
            crate::dataset::forget::record_names(self.storage, &new_names).await?;
        }
        changeset.written = self.ahead.finish().await;
        let tag = self.next_tag();
        self.commits += 1;
        // The tables' logs are read once per run, at its first commit, then kept current by
        // the commits themselves; after a failed commit they are read again.
        let mut lake = match self.lake.take() {
            Some(lake) => lake,
            None => Lake::open(self.storage, At::Latest)
                .await
                .map_err(sink::Error::from)?,
        };
        let due = self.committed_at.elapsed() >= self.job.commit_every;
        let started = Instant::now();
        if kind == Commit::Checkpoint && !due {
            let segment = sink::checkpoint(self.storage, &lake, index, &changeset, &tag).await?;
            self.lake = Some(lake);
            self.pending.push(segment);
            let took = started.elapsed();
            self.checkpoints_took += took;
            tracing::info!(
                checkpoints = self.pending.len(),
                ms = took.as_millis() as u64,
                "checkpoint written"
            );
            return Ok(());
        }
        let segments = std::mem::take(&mut self.pending);
        let checkpoints = segments.len();
        let (stats, cost) = match sink::commit_pending(
            self.storage,
            &mut lake,
            index,
            segments.clone(),
            changeset,
            self.job.history_days > 0,
            &tag,
        )
        .await
        {
            Ok(committed) => committed,
            Err(e) => {
                // Durable still: the next run's recovery commits them.
                self.pending = segments;
                return Err(e.into());
            }
        };
        self.lake = Some(lake);
        self.committed_at = Instant::now();
        self.checkpoints_took = Duration::ZERO;
        self.output += stats;
        if cost.files > 0 {
            self.last_cost = cost;
        }
        tracing::info!(
            checkpoints,
            ms = started.elapsed().as_millis() as u64,
            files = stats.parquet_files_written,
            writing_ms = cost.writing.as_millis() as u64,
            objects = cost.objects,
            publishing_ms = cost.publishing.as_millis() as u64,
            "tables committed"
        );
        Ok(())
    }
}

/// The partition files a table commit of `changeset` writes: one per table and partition its
/// rows fall in (new tickets' rows are appended as a new file of each).
fn partition_files(changeset: &Changeset) -> u32 {
    let mut files = HashSet::new();
    for p in &changeset.placed {
        let part = (p.account.as_str(), p.year);
        files.insert((Table::Tickets, part));
        if !p.conversations.is_empty() {
            files.insert((Table::Conversations, part));
        }
        if !p.notes.is_empty() {
            files.insert((Table::Notes, part));
        }
        if !p.time_entries.is_empty() {
            files.insert((Table::TimeEntries, part));
        }
    }
    u32::try_from(files.len())
        .unwrap_or(u32::MAX)
        .saturating_add(u32::from(!changeset.rejected.is_empty()))
}

/// How long until the last answer is in, once the workers hold every ticket left: every call
/// still to be sent at the budget's pace, then one round trip. Those calls are the ones waiting
/// for the budget (the tickets a worker has taken) and the calls of the `unstarted` tickets,
/// still queued for a worker, at what a ticket has cost so far. A call already on the wire is
/// not counted again: with as many tickets in flight as a round trip's budget, counting every
/// unfinished ticket whole made the tail look up to a round trip's calls longer than it was
/// (0.84 s foreseen for an answer 0.55 s away), so the early commit started too soon.
fn tail_eta(source: &Source, unstarted: u64) -> Duration {
    let client = source.client();
    let rate = client.target_rate_per_sec().max(1e-9);
    let stats = client.stats();
    let tickets: u64 = [Endpoint::Conversations, Endpoint::TimeEntries]
        .iter()
        .map(|e| stats.calls.get(e.name()).copied().unwrap_or(0))
        .max()
        .unwrap_or(0);
    // Before any ticket was answered, two credits: its two calls.
    let per_ticket = if tickets == 0 {
        2.0
    } else {
        (stats.credits_used as f64 / tickets as f64).clamp(1.0, 100.0)
    };
    let credits = client.waiting_credits() as f64 + unstarted as f64 * per_ticket;
    Duration::from_secs_f64((credits / rate).clamp(0.0, 86_400.0))
        + client.latency().unwrap_or_default()
}

/// What [`Run::commit`] is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Commit {
    /// A checkpoint: a table commit only when `commit_minutes` have passed.
    Checkpoint,
    /// A table commit (the run's end, or while its last tickets are fetched).
    Tables,
}

/// A slot in the workers' queue; `None` when the queue is closed or the workers are gone.
async fn reserve<T>(queue: &Option<mpsc::Sender<T>>) -> Option<mpsc::Permit<'_, T>> {
    match queue {
        Some(queue) => queue.reserve().await.ok(),
        None => std::future::pending().await,
    }
}

fn progress_style() -> indicatif::ProgressStyle {
    indicatif::ProgressStyle::with_template(
        "{span_child_prefix}{spinner} {span_fields} tickets {pos}/{len} [{wide_bar}] eta {eta} {msg}",
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
