//! The listing task: the live listing page by page (one listing per workspace, see
//! [`policy::listing_workspaces`]), then the deleted and spam views (per workspace too), then the
//! re-scan of recently closed tickets for time entries logged after close. It hands everything
//! to the dispatcher (`sync.rs`) through a bounded channel, so a dispatcher with enough work
//! queued slows the listing down instead of buffering it.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::policy::{self, Gone, Recheck, View};
use super::Error;
use crate::error::{Class, Classify};
use crate::normalize;
use crate::source::{self, wire, ListFilter, Requesters, Source};

/// What the listing task hands the dispatcher.
pub(crate) enum Listed {
    /// A page of the live listing (or the one ticket of a single-ticket run).
    Live(source::Items<wire::Ticket>),
    /// Tickets the API positively reported deleted or spam (see [`policy::removal_evidence`]).
    Gone(Vec<Gone>),
    /// Items of the deleted/spam views that were no evidence (no `deleted: true`/`spam: true`,
    /// or not decodable): ignored, counted.
    Ignored(u64),
    /// A ticket in the re-scan window whose time entries changed: fetch it again.
    Changed(Box<wire::Ticket>),
    /// A ticket the re-scan could not check: the run fails, the ticket stays as it is.
    Failed { ticket_id: i64, error: String },
    /// How many tickets the re-scan checked.
    Rescanned(u64),
    /// The live listing is read again: it changed while it was paged.
    Relisted,
}

/// What the listing task reads besides the live listing.
pub(crate) struct ListingPlan {
    pub(crate) since: DateTime<Utc>,
    /// One listing per entry, by `workspace_id` (`None`: without it).
    pub(crate) workspaces: Vec<Option<i64>>,
    /// Whether the live listing embeds the requester.
    pub(crate) requesters: Requesters,
    /// `updated_since` of the deleted/spam reconciliation (`None`: off).
    pub(crate) reconcile_since: Option<DateTime<Utc>>,
    /// Placed tickets closed recently, with their stored time-entry fingerprints.
    pub(crate) rescan: Vec<(i64, Option<u64>)>,
    /// Pages the listing started early asks for at once (see [`source::opening_pages`]).
    pub(crate) opening_pages: u32,
}

/// Passes of the live listing one run makes at most: the first, and re-reads while the
/// listing keeps changing under it (see [`list`]).
pub(crate) const MAX_LISTING_PASSES: u32 = 3;

/// How far before a pass's start (by the API's clock) the check for moved tickets lists: the
/// `Date` header has whole seconds and the offset is measured, not known.
const MOVED_MARGIN_SECS: i64 = 120;

/// How far before a pass's start (by the API's clock) a ticket updated counts as one that may
/// have entered the listing while it was read: the start is bounded by the measured offset
/// (whole seconds, the smallest seen), as the cursor is.
const ENTERED_MARGIN_SECS: i64 = 5;

/// What the reference data settles about the listing (see [`list_early`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Settled {
    /// The listings to make (see [`policy::listing_workspaces`]).
    pub(crate) workspaces: Vec<Option<i64>>,
    /// Whether the listing embeds the requester (a directory that cannot be read makes it).
    pub(crate) requesters: Requesters,
}

/// The first workspace's listing, started before the pass it belongs to was planned.
struct Started {
    /// When it started (the pass's start).
    at: DateTime<Utc>,
    live: JoinHandle<Result<u32, source::Error>>,
    pages: mpsc::Receiver<source::Items<wire::Ticket>>,
}

/// Runs the listing from the run's first instant: the first pages of the listing most
/// accounts need (without `workspace_id`, with `plan.requesters`; `plan.opening_pages` of
/// them, one for a nightly run) are asked for while the reference data is read, so they come
/// back with the workspaces, not a round trip after them. Nothing more is asked for, and
/// nothing goes to the dispatcher, before the reference data has `settled` the plan: the pages
/// are used when the plan is that listing, and dropped (their credits) when the account has
/// workspaces or the requester directory cannot be read (the listing must then embed the
/// requester); the listing then starts as planned. Ends (with `Ok`) without listing when
/// `settled` is dropped: the reference data failed, and so does the run.
pub(crate) async fn list_early(
    source: Arc<Source>,
    mut plan: ListingPlan,
    settled: oneshot::Receiver<Settled>,
    tx: mpsc::Sender<Listed>,
) -> Result<(), Error> {
    let guess = Settled {
        workspaces: vec![None],
        requesters: plan.requesters,
    };
    let at = Utc::now();
    let (pages_tx, pages) = mpsc::channel(2);
    let (go_tx, go_rx) = oneshot::channel::<bool>();
    let live = {
        let source = source.clone();
        let (since, requesters, opening) = (plan.since, plan.requesters, plan.opening_pages);
        tokio::spawn(async move {
            let go = async move { go_rx.await.unwrap_or(false) };
            source
                .stream_tickets_updated_since_once(since, requesters, opening, go, pages_tx)
                .await
        })
    };
    let Ok(settled) = settled.await else {
        live.abort();
        return Ok(());
    };
    let same = settled == guess;
    let _ = go_tx.send(same);
    let started = if same {
        Some(Started { at, live, pages })
    } else {
        // Its one page is read to the end by itself (the server charged it) and dropped.
        tracing::debug!(
            listings = settled.workspaces.len(),
            requesters = ?settled.requesters,
            "the listing started early is not the one planned; read as planned"
        );
        None
    };
    plan.workspaces = settled.workspaces;
    plan.requesters = settled.requesters;
    list(source, plan, started, tx).await
}

/// Runs the listing. Ends early (with `Ok`) when the dispatcher stops listening. `started` is
/// the first workspace's listing of the first pass, already under way.
///
/// Offset paging over a live result set skips a row whenever a row before it leaves the set
/// while later pages load (the default `created_at` order: a ticket deleted, spammed or moved
/// to another workspace on page 1 pulls the first row of page 2 onto page 1, already read).
/// Such a row is old, so the next incremental run would not list it either. After each pass
/// the deleted and spam views are read (the reconciliation does anyway; with it off, from the
/// listing's own window) and, with several workspaces, every workspace's tickets updated since
/// the pass began (a move bumps `updated_at`). A pass is **shifted** when one of the tickets it
/// listed is now reported deleted or spam, or is now in another workspace than the one it was
/// listed in (moved while the listings were read, whichever was read first).
///
/// The first pass reads each page ahead while the one before is in flight, so the server may
/// serve a page before the one it follows; a ticket that enters the listing in between
/// (created, or updated into the window) pushes a row of the earlier page onto the later one,
/// already read. After a first pass of several pages, the tickets updated since it began are
/// listed (one check for both, with several workspaces); one updated since then marks the pass
/// **shifted** too. A pass read again reads page after page, where a ticket that enters only
/// repeats a row. A shifted pass is read again, up to [`MAX_LISTING_PASSES`]; a listing still
/// shifting then fails the run. The rows of every pass go to the dispatcher, which keeps the
/// newest version of each.
async fn list(
    source: Arc<Source>,
    plan: ListingPlan,
    mut started: Option<Started>,
    tx: mpsc::Sender<Listed>,
) -> Result<(), Error> {
    let mut listed = HashSet::new();
    // Every ticket the views reported gone (reconciled or not): the re-scan leaves them alone.
    let mut reported_gone = HashSet::new();
    let mut gone_sent = HashSet::new();
    let mut pass = 1;
    loop {
        let first = started.take();
        let pass_started = first.as_ref().map_or_else(Utc::now, |f| f.at);
        let read_ahead = pass == 1;
        let Some(mut this_pass) = live_pass(&source, &plan, read_ahead, first, &tx).await? else {
            return Ok(());
        };
        let check_moves = plan.workspaces.len() > 1 && this_pass.moved.is_none();
        let check_entries = read_ahead && this_pass.most_pages > 1;
        if check_moves || check_entries {
            let offset = source.client().stats().server_clock_offset_secs;
            let started = policy::cursor_clock(pass_started, offset, None);
            let since = (started - chrono::Duration::seconds(MOVED_MARGIN_SECS)).max(plan.since);
            let entered =
                check_entries.then(|| started - chrono::Duration::seconds(ENTERED_MARGIN_SECS));
            if !changed_since(&source, &plan, since, entered, &mut this_pass, &tx).await? {
                return Ok(());
            }
        }
        listed.extend(this_pass.listed.iter().copied());
        let views_since = plan.reconcile_since.unwrap_or(plan.since);
        let Some(gone) = removal_views(&source, &plan, views_since, pass == 1, &tx).await? else {
            return Ok(());
        };
        reported_gone.extend(gone.iter().map(|g| g.id));
        // Only the reconciliation removes; with it off the views are read for the check alone.
        if plan.reconcile_since.is_some() {
            let new: Vec<Gone> = gone
                .iter()
                .filter(|g| gone_sent.insert(g.id))
                .copied()
                .collect();
            if !new.is_empty() && tx.send(Listed::Gone(new)).await.is_err() {
                return Ok(());
            }
        }
        let left = gone.iter().find(|g| this_pass.listed.contains(&g.id));
        let shifted = match (left, this_pass.moved, this_pass.entered) {
            (Some(g), _, _) => Some(format!(
                "ticket {} was listed, then reported {} while the listing was read",
                g.id,
                g.reason.as_str()
            )),
            (None, Some(id), _) => Some(format!(
                "ticket {id} showed in two workspaces (moved while their listings were read)"
            )),
            (None, None, Some(id)) => Some(format!(
                "ticket {id} was updated while pages read ahead of each other were served (it may have pushed a row past a page already read)"
            )),
            (None, None, None) => None,
        };
        let Some(why) = shifted else {
            break;
        };
        if pass >= MAX_LISTING_PASSES {
            return Err(Error::Source(source::Error::Paging {
                endpoint: source::Endpoint::TicketsList.name(),
                path: "tickets".into(),
                detail: format!(
                    "the listing changed under every one of {MAX_LISTING_PASSES} passes ({why}); rows after the change may have shifted past a page boundary"
                ),
            }));
        }
        tracing::warn!(pass, reason = %why, "the listing changed while it was paged; reading it again so no row shifted past a page boundary");
        if tx.send(Listed::Relisted).await.is_err() {
            return Ok(());
        }
        pass += 1;
    }
    listed.extend(reported_gone);
    rescan(&source, plan.rescan, &listed, &tx).await
}

/// What one pass of the live listing saw.
struct Pass {
    /// Every ticket id it listed.
    listed: HashSet<i64>,
    /// The workspace listing each ticket was first seen in.
    workspace_of: HashMap<i64, Option<i64>>,
    /// A ticket that showed in two workspaces.
    moved: Option<i64>,
    /// A ticket updated since the pass began (see [`policy::entered_since`]), when the pass read
    /// pages ahead.
    entered: Option<i64>,
    /// The most pages one workspace's listing took.
    most_pages: u32,
}

impl Pass {
    /// Records that `id` showed in `workspace`'s listing.
    fn saw(&mut self, id: i64, workspace: Option<i64>) {
        self.listed.insert(id);
        if let Some(other) = self.workspace_of.insert(id, workspace) {
            if other != workspace {
                self.moved.get_or_insert(id);
            }
        }
    }
}

/// Every workspace's tickets updated since `since` (before the pass's start): a ticket the
/// pass listed in one workspace that is now in another moved while the listings were read, and
/// marks the pass moved; with `entered`, a ticket updated at or after it (the pass's start by
/// the API's clock) marks the pass entered. The rows go to the dispatcher like the listing's
/// (they are newer). `false` when the dispatcher stopped listening.
async fn changed_since(
    source: &Arc<Source>,
    plan: &ListingPlan,
    since: DateTime<Utc>,
    entered: Option<DateTime<Utc>>,
    pass: &mut Pass,
    tx: &mpsc::Sender<Listed>,
) -> Result<bool, Error> {
    for &workspace in &plan.workspaces {
        let items = source
            .tickets_updated_since(since, ListFilter::Live, plan.requesters, workspace)
            .await?;
        if let Some((ticket, other)) = policy::foreign_workspace(&items, workspace) {
            return Err(workspace_ignored(workspace, ticket, other));
        }
        if let Some(at) = entered {
            if pass.entered.is_none() {
                pass.entered = policy::entered_since(&items, at);
            }
        }
        for id in items.iter().filter_map(|t| t.as_ref().ok().map(|t| t.id)) {
            pass.saw(id, workspace);
        }
        if !items.is_empty() && tx.send(Listed::Live(items)).await.is_err() {
            return Ok(false);
        }
    }
    Ok(true)
}

/// One pass of the live listing, every workspace in turn, streamed into the dispatcher (pages
/// read ahead with `read_ahead`; the first workspace's listing is `first` when it is under
/// way); `None` when the dispatcher stopped listening.
async fn live_pass(
    source: &Arc<Source>,
    plan: &ListingPlan,
    read_ahead: bool,
    mut first: Option<Started>,
    tx: &mpsc::Sender<Listed>,
) -> Result<Option<Pass>, Error> {
    let mut pass = Pass {
        listed: HashSet::new(),
        workspace_of: HashMap::new(),
        moved: None,
        entered: None,
        most_pages: 0,
    };
    // Each workspace's listing is streamed into the dispatcher in turn; each has its own paging
    // guards (a loop or an early end in one fails the run).
    for &workspace in &plan.workspaces {
        let (live, mut pages_rx) = match first.take() {
            Some(Started { live, pages, .. }) => (live, pages),
            None => {
                let (pages_tx, pages_rx) = mpsc::channel(2);
                let source = source.clone();
                let (since, requesters) = (plan.since, plan.requesters);
                let live = tokio::spawn(async move {
                    source
                        .stream_tickets_updated_since(
                            since,
                            ListFilter::Live,
                            requesters,
                            workspace,
                            read_ahead,
                            pages_tx,
                        )
                        .await
                });
                (live, pages_rx)
            }
        };
        while let Some(items) = pages_rx.recv().await {
            if let Some((ticket, other)) = policy::foreign_workspace(&items, workspace) {
                live.abort();
                return Err(workspace_ignored(workspace, ticket, other));
            }
            for id in items.iter().filter_map(|t| t.as_ref().ok().map(|t| t.id)) {
                pass.saw(id, workspace);
            }
            if tx.send(Listed::Live(items)).await.is_err() {
                live.abort();
                return Ok(None);
            }
        }
        let pages = live.await.map_err(Error::task("the listing"))??;
        pass.most_pages = pass.most_pages.max(pages);
    }
    Ok(Some(pass))
}

/// The `filter=deleted` and `filter=spam` views since `since`, every workspace: the tickets
/// they positively report gone (see [`policy::removal_evidence`]); `None` when the dispatcher
/// stopped listening. Items that are no evidence are counted once (`count_ignored`).
async fn removal_views(
    source: &Arc<Source>,
    plan: &ListingPlan,
    since: DateTime<Utc>,
    count_ignored: bool,
    tx: &mpsc::Sender<Listed>,
) -> Result<Option<Vec<Gone>>, Error> {
    let mut all = Vec::new();
    for (&workspace, filter) in plan
        .workspaces
        .iter()
        .flat_map(|w| [(w, ListFilter::Deleted), (w, ListFilter::Spam)])
    {
        let items = source
            .tickets_updated_since(since, filter, plan.requesters, workspace)
            .await?;
        if let Some((ticket, other)) = policy::foreign_workspace(&items, workspace) {
            return Err(workspace_ignored(workspace, ticket, other));
        }
        let gone: Vec<Gone> = items
            .iter()
            .filter_map(|item| policy::removal_evidence(item, filter))
            .collect();
        let ignored = (items.len() - gone.len()) as u64;
        if ignored > 0 && count_ignored {
            tracing::warn!(
                view = ?filter,
                ignored,
                "items of the deleted/spam view do not say they are deleted/spam; ignored (a server or proxy that ignores the filter?)"
            );
            if tx.send(Listed::Ignored(ignored)).await.is_err() {
                return Ok(None);
            }
        }
        all.extend(gone);
    }
    Ok(Some(all))
}

/// Time entries can be added after close without the ticket's updated_at moving: re-read them
/// (one cheap call per ticket) for recently closed tickets the listing did not bring and the
/// deleted and spam views did not report.
async fn rescan(
    source: &Arc<Source>,
    rescan: Vec<(i64, Option<u64>)>,
    listed: &HashSet<i64>,
    tx: &mpsc::Sender<Listed>,
) -> Result<(), Error> {
    let candidates: Vec<(i64, Option<u64>)> = rescan
        .into_iter()
        .filter(|(id, _)| !listed.contains(id))
        .collect();
    let checked = candidates.len() as u64;
    let mut checks = futures::stream::iter(candidates)
        .map(|(id, stored)| {
            let source = source.clone();
            async move { rescan_one(&source, id, stored).await }
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

/// The listing of `asked` brought `ticket` of workspace `other`.
fn workspace_ignored(asked: Option<i64>, ticket: i64, other: i64) -> Error {
    let asked = asked.map_or_else(|| "-".to_string(), |w| w.to_string());
    Error::Source(source::Error::Paging {
        endpoint: source::Endpoint::TicketsList.name(),
        path: format!("tickets?workspace_id={asked}"),
        detail: format!(
            "the listing of workspace {asked} brought ticket {ticket} of workspace {other} (workspace_id ignored by the server or a proxy?)"
        ),
    })
}

/// Re-reads one ticket's time entries; when they changed (or answer 404), asks the ticket view
/// what happened (see [`policy::recheck`]): nothing here removes a ticket. Only credential
/// errors end the run.
async fn rescan_one(
    source: &Source,
    id: i64,
    stored: Option<u64>,
) -> Result<Option<Listed>, source::Error> {
    match source.time_entries(id).await {
        Ok(entries) if Some(normalize::time_entries_fingerprint(&entries)) == stored => {
            return Ok(None)
        }
        Ok(_) | Err(source::Error::NotFound { .. }) => {}
        Err(e) if e.class() == Class::Config => return Err(e),
        Err(e) => {
            return Ok(Some(Listed::Failed {
                ticket_id: id,
                error: format!("ticket {id}: the re-scan could not read its time entries: {e}"),
            }))
        }
    }
    let view = match source.ticket(id).await {
        Ok(None) => View::NotFound,
        Ok(Some(Ok(ticket))) => View::Ticket(Box::new(ticket)),
        Ok(Some(Err(item))) => View::Undecodable(item.detail),
        Err(source::Error::Decode { detail, .. }) => View::Undecodable(detail),
        Err(e) if e.class() == Class::Config => return Err(e),
        Err(e) => View::Error(e.to_string()),
    };
    Ok(Some(match policy::recheck(id, view) {
        Recheck::Changed(ticket) => Listed::Changed(ticket),
        Recheck::Failed(error) => Listed::Failed {
            ticket_id: id,
            error,
        },
    }))
}
