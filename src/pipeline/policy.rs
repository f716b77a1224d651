//! The decisions that keep the dataset correct, as pure functions: no I/O, no tasks, no clock
//! of their own. The mechanism (`sync.rs`, `listing.rs`, `fetch.rs`) asks them and does what they
//! say, so each rule is stated, and tested, once:
//!
//! - [`listing_since`] / [`ListingWindow::new`]: which window a run lists (never before the retention
//!   cutoff);
//! - [`rescan_due`]: whether this run re-reads recently closed tickets' time entries;
//! - [`requester_source`]: embed requesters in the listing or read the directory;
//! - [`listing_workspaces`] / [`department_workspaces`]: which workspaces the run lists
//!   tickets and departments of; [`workspace_account_values`]: a workspace's account number;
//! - [`classify`]: what happens to one listed ticket (skip, fetch, reject, remove, fail);
//! - [`removal_evidence`] / [`recheck`]: when the API's answer is evidence that a ticket is gone;
//! - [`removal_limit`] / [`removals_allowed`]: the removal guard;
//! - [`backlog_limit`]: how many listed tickets may wait for a worker;
//! - [`Tail::commit_now`]: when what a run holds goes into the tables while its last tickets
//!   are fetched;
//! - [`next_cursor`]: when, and where to, the cursor moves.

use std::time::Duration;

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use crate::job::{AccountFrom, Window};
use crate::normalize::accounts::Check;
use crate::normalize::{RejectReason, Rejection, STATUS_CLOSED};
use crate::sink::Removal;
use crate::source::{wire, ListFilter, Requesters};
use crate::state::Cursor;

/// `updated_since` of the listing: the stored cursor (or the full window on a first run), the
/// full window, the given instant; `None` for a single-ticket run.
pub fn listing_since(
    window: Window,
    cursor: Option<&Cursor>,
    now: DateTime<Utc>,
    full_sync_days: u32,
) -> Option<DateTime<Utc>> {
    let full = now - chrono::Duration::days(full_sync_days.into());
    match window {
        Window::Ticket(_) => None,
        Window::Since(since) => Some(since),
        Window::Full => Some(full),
        Window::Incremental => Some(cursor.map_or(full, |c| c.updated_since)),
    }
}

/// The window a run listed: from `since` ([`listing_since`]), clipped to the retention cutoff.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListingWindow {
    /// `updated_since` of the listing; `None` for a single-ticket run.
    pub since: Option<DateTime<Utc>>,
    /// With `retention_days`: the oldest `closed_at` kept.
    pub retention_cutoff: Option<DateTime<Utc>>,
}

impl ListingWindow {
    /// The listing starts at `since`, but never before `retention_cutoff`: nothing updated
    /// before the cutoff can have closed after it, so nothing listed there could be kept.
    pub fn new(
        since: Option<DateTime<Utc>>,
        retention_cutoff: Option<DateTime<Utc>>,
    ) -> ListingWindow {
        ListingWindow {
            since: since.map(|s| retention_cutoff.map_or(s, |cut| s.max(cut))),
            retention_cutoff,
        }
    }

    /// Whether this listing leaves no gap after a cursor at `stored`: it starts at or before
    /// the cursor, or at or before the retention cutoff (what was updated between the cursor
    /// and the cutoff closed before the cutoff and is not kept anyway). Without the second
    /// half, a cursor older than the cutoff never moved again and every run listed the whole
    /// retention window.
    pub fn covers(&self, stored: DateTime<Utc>) -> bool {
        self.since.is_some_and(|since| {
            since <= stored || self.retention_cutoff.is_some_and(|cut| since <= cut)
        })
    }
}

/// Whether an incremental run re-reads the time entries of recently closed tickets: once per
/// `every` (time logged after close does not always move `updated_at`). A first run or a full
/// window reads those tickets anyway.
pub fn rescan_due(
    rescan_days: u32,
    every: Duration,
    window: Window,
    cursor: Option<&Cursor>,
    now: DateTime<Utc>,
) -> bool {
    let every = chrono::Duration::from_std(every).unwrap_or(chrono::Duration::MAX);
    rescan_days > 0
        && matches!(window, Window::Incremental)
        && cursor.is_some_and(|c| c.rescanned_at.is_none_or(|t| now - t >= every))
}

/// A listing window at least this long reads the requester directory instead of embedding the
/// requester in every listing page.
pub const DIRECTORY_WINDOW_DAYS: i64 = 30;

/// A full sync lists a year of tickets: reading the requester directory once is cheaper than
/// embedding the requester in every listing page (2 credits a page). A nightly run lists a page
/// or two: the embed is cheaper there.
pub fn requester_source(since: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Requesters {
    match since {
        Some(since) if now - since >= chrono::Duration::days(DIRECTORY_WINDOW_DAYS) => {
            Requesters::Directory
        }
        _ => Requesters::Embedded,
    }
}

/// Whether a listing window is long (a full sync, a first run: [`DIRECTORY_WINDOW_DAYS`] or
/// more): its listing has dozens of pages, and its opening may ask for several at once (see
/// [`crate::source::opening_pages`]). A nightly run lists a page or two.
pub fn long_window(since: DateTime<Utc>, now: DateTime<Utc>) -> bool {
    now - since >= chrono::Duration::days(DIRECTORY_WINDOW_DAYS)
}

/// The ticket listings of a run (and of its deleted/spam views), by `workspace_id`: `None` is
/// a listing without it. An account without workspaces (`GET /workspaces` answered 404:
/// `workspaces` is `None`; a 403 fails the run), or with a single one, is listed as before workspaces existed: one
/// listing without the parameter. With several, one listing per workspace id, each once, in id
/// order: the API returns only the primary workspace without the parameter, and the "all
/// workspaces" value is disputed (`0` in one client, `1` in a doc quote, and `1` can be a real
/// workspace id), while a listing per id is right whatever the sentinel means.
pub fn listing_workspaces(workspaces: Option<&[i64]>) -> Vec<Option<i64>> {
    match workspaces {
        Some(ids) if ids.len() > 1 => {
            let mut ids = ids.to_vec();
            ids.sort_unstable();
            ids.dedup();
            ids.into_iter().map(Some).collect()
        }
        _ => vec![None],
    }
}

/// The department listings a run reads: per workspace like the tickets (departments are
/// specific to each client), or none when account numbers come from workspaces (a ticket then
/// needs only its department's id, which it carries).
pub fn department_workspaces(from: AccountFrom, listings: &[Option<i64>]) -> Vec<Option<i64>> {
    match from {
        AccountFrom::Department => listings.to_vec(),
        AccountFrom::Workspace => Vec::new(),
    }
}

/// Each workspace's raw account number with `account_from = workspace`: the workspace map's
/// entry, else the workspace's custom field `field` (where the API returns one). Workspaces
/// with neither are left out (their tickets are rejected `no_account_number`); the map also
/// names workspaces `GET /workspaces` did not list (an account without the feature still tags
/// tickets with a `workspace_id`). Validation is the account map's.
pub fn workspace_account_values(
    workspaces: &[wire::Workspace],
    field: &str,
    map: &HashMap<i64, String>,
) -> HashMap<i64, serde_json::Value> {
    let mut values: HashMap<i64, serde_json::Value> = workspaces
        .iter()
        .filter_map(|w| {
            let raw = w.custom_fields.as_ref()?.get(field)?;
            (!raw.is_null()).then(|| (w.id, raw.clone()))
        })
        .collect();
    for (id, account) in map {
        values.insert(*id, serde_json::Value::String(account.clone()));
    }
    values
}

/// What the dataset knows of a listed ticket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Known {
    /// The ticket is in the dataset (placed or rejected).
    pub in_dataset: bool,
    /// The dataset holds exactly this `updated_at`, placed.
    pub current: bool,
}

/// What happens to one ticket of the listing.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Not closed and not in the dataset: nothing to do.
    Skip,
    /// Closed, placed, and the dataset already holds this version.
    Unchanged,
    /// Fetch its conversations and time entries (a department the list did not have is looked
    /// up first).
    Fetch,
    /// Closed but cannot be placed, for a lasting reason: a row in `rejects`, no further calls.
    Reject(Rejection),
    /// It left Closed while in the dataset: its rows go (until it closes again).
    Remove(Removal),
    /// Its account cannot be known this run (a transient reference problem): not written, not
    /// moved; the run fails and the next run retries it.
    Fail(String),
}

/// Sorts one listed ticket. `refetch`: fetch even an unchanged version (a single-ticket run, or
/// a ticket whose time entries changed after close).
pub fn classify(
    ticket: &wire::Ticket,
    known: Known,
    refetch: bool,
    department: Check<'_>,
    seen_at: DateTime<Utc>,
) -> Action {
    if ticket.status != Some(STATUS_CLOSED) {
        return if known.in_dataset {
            Action::Remove(Removal::Reopened)
        } else {
            Action::Skip
        };
    }
    let id = ticket.id;
    let reject =
        |reason, detail: String| Action::Reject(Rejection::of(ticket, reason, &detail, seen_at));
    if ticket.updated_at.is_none() {
        return reject(
            RejectReason::MalformedTicket,
            "updated_at is missing".into(),
        );
    }
    match department {
        Check::Unplaced(u) => reject(u.reason, u.detail),
        Check::Unreadable {
            department_id,
            detail,
        } => Action::Fail(format!(
            "ticket {id}: its department {department_id} does not decode ({detail}); its rows stay as they are"
        )),
        Check::NotListed(_) => Action::Fetch,
        Check::Account(_) if known.current && !refetch => Action::Unchanged,
        Check::Account(_) => Action::Fetch,
    }
}

/// A ticket the API positively says is gone. Only [`removal_evidence`] and [`recheck`] make
/// one, so nothing else can take a ticket out of the dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gone {
    /// The ticket.
    pub id: i64,
    /// What the API said: deleted, or spam (a 404 of the ticket itself counts as deleted).
    pub reason: Removal,
}

/// Whether an item of the `filter=deleted` / `filter=spam` view is evidence that the ticket is
/// deleted or spam: only when it says so itself (`deleted: true` / `spam: true`). A server or
/// proxy that ignores the filter answers with live tickets, which say `false` or nothing; an
/// item that does not decode is no evidence either. `None`: ignore it (and count it).
pub fn removal_evidence(
    item: &Result<wire::Ticket, wire::ItemError>,
    filter: ListFilter,
) -> Option<Gone> {
    let ticket = item.as_ref().ok()?;
    let (flag, reason) = match filter {
        ListFilter::Live => return None,
        ListFilter::Deleted => (ticket.deleted, Removal::Deleted),
        ListFilter::Spam => (ticket.spam, Removal::Spam),
    };
    (flag == Some(true)).then_some(Gone {
        id: ticket.id,
        reason,
    })
}

/// The first ticket of a page listed for `asked` that says it belongs to another workspace:
/// the server (or a proxy) ignored `workspace_id` and answered for a workspace not asked for, so
/// the run cannot show it listed every workspace. `None` for an unscoped listing, or when every
/// ticket is in the workspace asked for (or does not say).
pub fn foreign_workspace(
    items: &[Result<wire::Ticket, wire::ItemError>],
    asked: Option<i64>,
) -> Option<(i64, i64)> {
    let asked = asked?;
    items.iter().find_map(|item| {
        let t = item.as_ref().ok()?;
        t.workspace_id.filter(|&w| w != asked).map(|w| (t.id, w))
    })
}

/// The first ticket of `items` that may have entered the listing at or after `at` (by the API's
/// clock): updated then (a ticket created, or updated into the window), or one whose
/// `updated_at` cannot be read, which cannot show it did not (its id, when it has one, else
/// `0`). `None` when every item was last updated before `at`.
///
/// A listing whose pages were read concurrently can lose a row to such a ticket (see
/// [`crate::source::Source::stream_tickets_updated_since`]); one whose pages were read before
/// any ticket entered cannot.
pub fn entered_since(
    items: &[Result<wire::Ticket, wire::ItemError>],
    at: DateTime<Utc>,
) -> Option<i64> {
    items.iter().find_map(|item| match item {
        Ok(t) => t.updated_at.is_none_or(|u| u >= at).then_some(t.id),
        Err(e) => Some(e.id.unwrap_or(0)),
    })
}

/// What `GET /tickets/{id}` answered when a re-scan needed it.
#[derive(Debug)]
pub enum View {
    /// 404.
    NotFound,
    /// A ticket that decodes.
    Ticket(Box<wire::Ticket>),
    /// A body that does not decode.
    Undecodable(String),
    /// Any other failure (5xx after retries, timeouts, other 4xx).
    Error(String),
}

/// The re-scan's verdict on a recently closed ticket whose time entries changed (or answered
/// 404). Nothing it sees removes a ticket: only the deleted and spam views are removal evidence
/// (and the re-scan skips the tickets they report). A 404 of the ticket itself, a view that does
/// not decode or fails, is a failed ticket that keeps its rows.
#[derive(Debug)]
pub enum Recheck {
    /// Fetch it again and write the new version.
    Changed(Box<wire::Ticket>),
    /// The ticket fails this run (with the reason) and keeps what is stored.
    Failed(String),
}

/// The verdict on `GET /tickets/{id}` for ticket `id` (see [`Recheck`]). A 404 the deleted and
/// spam views do not confirm is a proxy, a key that lost sight of the ticket, or a ticket
/// deleted for good (it leaves the re-scan `rescan_days` after it closed): the run cannot show
/// the ticket's hours are complete, so it fails.
pub fn recheck(id: i64, view: View) -> Recheck {
    match view {
        View::NotFound => Recheck::Failed(format!(
            "ticket {id}: GET /tickets/{id} answers 404 but neither the deleted nor the spam view reports it; not taken as deleted (a proxy, a key that may no longer see it, or a ticket deleted for good: that one leaves the re-scan rescan_days after it closed)"
        )),
        View::Ticket(ticket) => Recheck::Changed(ticket),
        View::Undecodable(detail) => Recheck::Failed(format!(
            "ticket {id}: GET /tickets/{id} does not decode ({detail}); not taken as deleted"
        )),
        View::Error(error) => Recheck::Failed(format!(
            "ticket {id}: the re-scan could not read it ({error}); not taken as deleted"
        )),
    }
}

/// The removal guard's limit: the configured `max_removals`, or 100 or 5 % of the placed
/// tickets, whichever is larger (rsync's `--max-delete` is the model).
pub fn removal_limit(configured: Option<u64>, placed: usize) -> u64 {
    configured.unwrap_or_else(|| 100.max((placed as u64).div_ceil(20)))
}

/// Whether a run may remove `would_remove` tickets. Past the limit it removes none of them.
pub fn removals_allowed(would_remove: usize, limit: u64) -> bool {
    would_remove as u64 <= limit
}

/// Where a run's tail stands when the dispatcher asks whether to commit to the tables while the
/// last tickets are fetched (the listing is over and the workers hold every ticket left).
#[derive(Debug, Clone, Copy)]
pub struct Tail {
    /// Table commits made so far while the last tickets were fetched.
    pub commits: u32,
    /// Whether there are checkpoints to commit (written, or one due now from memory).
    pub checkpoints: bool,
    /// Tickets settled since the last commit.
    pub arrived: u64,
    /// Tickets still being fetched.
    pub outstanding: u64,
    /// Whether every answer in has been settled (none waits in the results channel).
    pub settled: bool,
    /// How long until the last answer is in (`sync::tail_eta`).
    pub eta: Duration,
    /// How long a table commit of the checkpoints takes (`sync::Run::commit_estimate`).
    pub estimate: Duration,
    /// How long a table commit of what has arrived takes, at the last one's pace per partition
    /// file and per object published (`sink::CommitCost::foresee`; none before the first).
    pub arrived_takes: Option<Duration>,
}

impl Tail {
    /// The first commit takes the checkpoints once the answers still to come take about two
    /// of its estimates (a run too small for a checkpoint keeps its one commit at the end).
    /// Each later one takes what has arrived once that is at least as much as is still out, so
    /// each holds about half of what was left and the run's end commits only the last few
    /// answers (a few new files) instead of everything that came during one long commit. Those
    /// wait until the answers in are settled (after a commit, the ones that came meanwhile),
    /// and go only when they should end before the last answer: one that would end after it
    /// only adds its own cost to the last commit's (on a slow disk a commit of 18 partitions
    /// took 314 ms, started 30 ms before the last answer, and the run ended 100 ms later than
    /// with one last commit).
    pub fn commit_now(&self) -> bool {
        if self.commits == 0 {
            self.checkpoints && self.eta <= self.estimate * 2
        } else {
            self.commits < MAX_TAIL_COMMITS
                && self.settled
                && self.arrived > 0
                && self.arrived >= self.outstanding
                && self.arrived_takes.is_some_and(|takes| takes <= self.eta)
        }
    }
}

/// At most this many table commits while a run's last tickets are fetched (the first, of the
/// checkpoints, and those of what arrived since, each about half of what was left): each writes
/// the index and a log entry per table, so a tail that keeps trickling does not commit per ticket.
pub const MAX_TAIL_COMMITS: u32 = 5;

/// Listed tickets that may wait for a fetch worker before the dispatcher stops reading the
/// listing: memory follows `concurrency`, not the number of tickets listed (a page is 100).
pub fn backlog_limit(concurrency: usize) -> usize {
    concurrency.saturating_mul(2).max(200)
}

/// The instant a run's cursor is measured from: its start by our clock, moved back by how far
/// the API's clock is behind ours (its `Date` headers, `server_offset_secs` = server − ours;
/// a server ahead of us changes nothing). The API stamps `updated_at` with its clock, so a
/// cursor from a clock that runs ahead would skip the tickets updated in the gap. Never
/// before `since` (the window this run listed): an absurd `Date` cannot move the cursor back.
pub fn cursor_clock(
    started_at: DateTime<Utc>,
    server_offset_secs: Option<i64>,
    since: Option<DateTime<Utc>>,
) -> DateTime<Utc> {
    let behind = server_offset_secs.unwrap_or(0).min(0);
    let at = started_at + chrono::Duration::seconds(behind);
    match since {
        Some(since) if at < since => since,
        _ => at,
    }
}

/// How a run ended, as far as the cursor cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// Every listed ticket was committed (placed, rejected or removed as decided).
    Complete,
    /// Something was not: failed tickets, an error, a timeout, a refused removal.
    Incomplete,
}

/// The cursor a run stores, if it may move one: only a complete run whose window covers the
/// stored cursor ([`ListingWindow::covers`]: reaches back to it, or to the retention cutoff) moves
/// it, to run start − overlap. `rescanned_at` moves
/// with a re-scan, a first run or a full window (those read every recently closed ticket).
pub fn next_cursor(
    ending: Ending,
    window: Window,
    listed: ListingWindow,
    stored: Option<&Cursor>,
    started_at: DateTime<Utc>,
    overlap: Duration,
    rescanned: bool,
) -> Option<(DateTime<Utc>, Option<DateTime<Utc>>)> {
    if ending != Ending::Complete {
        return None;
    }
    let covers = match (listed.since, stored) {
        (None, _) => false,
        (Some(_), None) => true,
        (Some(_), Some(c)) => listed.covers(c.updated_since),
    };
    if !covers {
        return None;
    }
    let next = started_at - chrono::Duration::from_std(overlap).unwrap_or_default();
    let rescanned_now = rescanned || !matches!(window, Window::Incremental) || stored.is_none();
    let rescanned_at = if rescanned_now {
        Some(started_at)
    } else {
        stored.and_then(|c| c.rescanned_at)
    };
    Some((next, rescanned_at))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::normalize::accounts::Unplaced;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn cursor(updated_since: &str, rescanned_at: Option<&str>) -> Cursor {
        Cursor {
            updated_since: at(updated_since),
            run_id: "r".into(),
            rescanned_at: rescanned_at.map(at),
            api: None,
        }
    }

    fn ticket(value: serde_json::Value) -> wire::Ticket {
        serde_json::from_value(value).unwrap()
    }

    fn closed(id: i64) -> wire::Ticket {
        ticket(
            json!({"id": id, "status": 5, "department_id": 1, "updated_at": "2025-06-01T00:00:00Z"}),
        )
    }

    #[test]
    fn a_ticket_updated_at_or_after_the_instant_may_have_entered_the_listing() {
        let at_noon = at("2025-06-01T12:00:00Z");
        let updated = |id: i64, when: &str| Ok(ticket(json!({"id": id, "updated_at": when})));
        let before = [
            updated(1, "2025-06-01T11:59:59Z"),
            updated(2, "2025-05-01T00:00:00Z"),
        ];
        assert_eq!(entered_since(&before, at_noon), None);
        assert_eq!(entered_since(&[], at_noon), None);
        let mut items = before.to_vec();
        items.push(updated(3, "2025-06-01T12:00:00Z"));
        items.push(updated(4, "2025-06-01T13:00:00Z"));
        assert_eq!(entered_since(&items, at_noon), Some(3));
        // Without a readable `updated_at` nothing shows the ticket was there before.
        let unknown = [
            updated(1, "2025-05-01T00:00:00Z"),
            Ok(ticket(json!({"id": 7}))),
        ];
        assert_eq!(entered_since(&unknown, at_noon), Some(7));
        let undecodable = [Err(wire::ItemError {
            id: Some(9),
            detail: "status: invalid type".into(),
        })];
        assert_eq!(entered_since(&undecodable, at_noon), Some(9));
    }

    const NEW: Known = Known {
        in_dataset: false,
        current: false,
    };
    const HELD: Known = Known {
        in_dataset: true,
        current: false,
    };
    const CURRENT: Known = Known {
        in_dataset: true,
        current: true,
    };

    #[test]
    fn the_cursor_follows_an_api_clock_that_is_behind_ours() {
        let start = at("2025-06-01T12:00:00Z");
        let listed = at("2025-06-01T00:00:00Z");
        let since = Some(listed);
        assert_eq!(cursor_clock(start, None, since), start);
        assert_eq!(cursor_clock(start, Some(0), since), start);
        // Ahead of us: our own clock is the earlier one.
        assert_eq!(cursor_clock(start, Some(3600), since), start);
        assert_eq!(
            cursor_clock(start, Some(-3600), since),
            at("2025-06-01T11:00:00Z")
        );
        // An absurd Date never moves the cursor before the window this run listed.
        assert_eq!(cursor_clock(start, Some(-86_400 * 365), since), listed);
    }

    #[test]
    fn windows() {
        let now = at("2025-06-01T00:00:00Z");
        let c = cursor("2025-05-31T00:00:00Z", None);
        assert_eq!(listing_since(Window::Ticket(1), Some(&c), now, 365), None);
        assert_eq!(
            listing_since(Window::Incremental, Some(&c), now, 365),
            Some(c.updated_since)
        );
        assert_eq!(
            listing_since(Window::Incremental, None, now, 10),
            Some(at("2025-05-22T00:00:00Z"))
        );
        assert_eq!(
            listing_since(Window::Full, Some(&c), now, 10),
            Some(at("2025-05-22T00:00:00Z"))
        );
        assert_eq!(
            requester_source(Some(c.updated_since), now),
            Requesters::Embedded
        );
        assert_eq!(
            requester_source(Some(at("2025-01-01T00:00:00Z")), now),
            Requesters::Directory
        );
        assert_eq!(requester_source(None, now), Requesters::Embedded);
    }

    #[test]
    fn the_rescan_runs_once_per_period_on_incremental_runs() {
        let now = at("2025-06-02T00:00:00Z");
        let day = Duration::from_secs(86_400);
        let fresh = cursor("2025-06-01T00:00:00Z", Some("2025-06-01T12:00:00Z"));
        let stale = cursor("2025-06-01T00:00:00Z", Some("2025-06-01T00:00:00Z"));
        let never = cursor("2025-06-01T00:00:00Z", None);
        assert!(!rescan_due(7, day, Window::Incremental, Some(&fresh), now));
        assert!(rescan_due(7, day, Window::Incremental, Some(&stale), now));
        assert!(rescan_due(7, day, Window::Incremental, Some(&never), now));
        assert!(!rescan_due(0, day, Window::Incremental, Some(&never), now));
        assert!(!rescan_due(7, day, Window::Full, Some(&never), now));
        assert!(!rescan_due(7, day, Window::Incremental, None, now));
        // An absurd period never overflows: it just never comes.
        assert!(!rescan_due(
            7,
            Duration::MAX,
            Window::Incremental,
            Some(&stale),
            now
        ));
    }

    #[test]
    fn a_listed_ticket_is_skipped_fetched_rejected_removed_or_failed() {
        let now = at("2025-06-02T00:00:00Z");
        let t = closed(1);
        assert_eq!(
            classify(&t, NEW, false, Check::Account("42"), now),
            Action::Fetch
        );
        assert_eq!(
            classify(&t, CURRENT, false, Check::Account("42"), now),
            Action::Unchanged
        );
        assert_eq!(
            classify(&t, CURRENT, true, Check::Account("42"), now),
            Action::Fetch
        );
        // A department the list did not have is looked up, never rejected on the spot.
        assert_eq!(
            classify(&t, HELD, false, Check::NotListed(1), now),
            Action::Fetch
        );
        // A department that does not decode fails the ticket; its rows stay.
        let unreadable = Check::Unreadable {
            department_id: 1,
            detail: "name: expected a string".into(),
        };
        assert!(matches!(
            classify(&t, HELD, false, unreadable, now),
            Action::Fail(detail) if detail.contains("department 1 does not decode")
        ));
        // A lasting reason is a reject, in the dataset or not.
        let unplaced = Check::Unplaced(Unplaced {
            reason: RejectReason::NoAccountNumber,
            detail: "department 1 has no account number".into(),
        });
        assert!(matches!(
            classify(&t, HELD, false, unplaced, now),
            Action::Reject(r) if r.reason == RejectReason::NoAccountNumber
        ));
        let open = ticket(json!({"id": 2, "status": 2, "updated_at": "2025-06-01T00:00:00Z"}));
        assert_eq!(
            classify(&open, HELD, false, Check::Account("42"), now),
            Action::Remove(Removal::Reopened)
        );
        assert_eq!(
            classify(&open, NEW, false, Check::Account("42"), now),
            Action::Skip
        );
        let undated = ticket(json!({"id": 3, "status": 5, "department_id": 1}));
        assert!(matches!(
            classify(&undated, NEW, false, Check::Account("42"), now),
            Action::Reject(r) if r.reason == RejectReason::MalformedTicket
        ));
    }

    #[test]
    fn only_an_item_that_says_so_is_evidence_of_removal() {
        let deleted = Ok(ticket(json!({"id": 1, "deleted": true})));
        let spam = Ok(ticket(json!({"id": 2, "spam": true})));
        let live = Ok(ticket(json!({"id": 3, "deleted": false, "spam": false})));
        let silent = Ok(ticket(json!({"id": 4})));
        let broken: Result<wire::Ticket, _> = Err(wire::ItemError {
            id: Some(5),
            detail: "status: invalid type".into(),
        });
        assert_eq!(
            removal_evidence(&deleted, ListFilter::Deleted),
            Some(Gone {
                id: 1,
                reason: Removal::Deleted
            })
        );
        assert_eq!(removal_evidence(&deleted, ListFilter::Spam), None);
        assert_eq!(
            removal_evidence(&spam, ListFilter::Spam),
            Some(Gone {
                id: 2,
                reason: Removal::Spam
            })
        );
        for item in [&live, &silent, &broken] {
            assert_eq!(removal_evidence(item, ListFilter::Deleted), None);
            assert_eq!(removal_evidence(item, ListFilter::Spam), None);
        }
        assert_eq!(removal_evidence(&deleted, ListFilter::Live), None);
    }

    #[test]
    fn a_ticket_of_a_workspace_not_asked_for_is_caught() {
        let page = vec![
            Ok(ticket(json!({"id": 1, "workspace_id": 3}))),
            Ok(ticket(json!({"id": 2}))),
            Ok(ticket(json!({"id": 4, "workspace_id": 2}))),
        ];
        assert_eq!(foreign_workspace(&page, Some(3)), Some((4, 2)));
        assert_eq!(foreign_workspace(&page[..2], Some(3)), None);
        assert_eq!(foreign_workspace(&page, None), None);
    }

    #[test]
    fn nothing_the_rescan_sees_is_deletion_evidence() {
        assert!(matches!(
            recheck(7, View::NotFound),
            Recheck::Failed(d) if d.contains("not taken as deleted") && d.contains("404")
        ));
        assert!(matches!(
            recheck(7, View::Ticket(Box::new(closed(7)))),
            Recheck::Changed(_)
        ));
        assert!(matches!(
            recheck(7, View::Undecodable("x".into())),
            Recheck::Failed(d) if d.contains("not taken as deleted")
        ));
        assert!(matches!(
            recheck(7, View::Error("503".into())),
            Recheck::Failed(_)
        ));
    }

    #[test]
    fn the_removal_guard() {
        assert_eq!(removal_limit(None, 0), 100);
        assert_eq!(removal_limit(None, 2_000), 100);
        assert_eq!(removal_limit(None, 10_000), 500);
        assert_eq!(removal_limit(None, 10_001), 501);
        assert_eq!(removal_limit(Some(3), 10_000), 3);
        assert_eq!(removal_limit(Some(0), 10_000), 0);
        assert!(removals_allowed(100, 100));
        assert!(!removals_allowed(101, 100));
        assert!(removals_allowed(0, 0));
        assert!(!removals_allowed(1, 0));
    }

    #[test]
    fn the_backlog_follows_concurrency() {
        assert_eq!(backlog_limit(1), 200);
        assert_eq!(backlog_limit(64), 200);
        assert_eq!(backlog_limit(256), 512);
    }

    #[test]
    fn the_cursor_moves_only_after_a_complete_run_that_covers_it() {
        let start = at("2025-06-02T00:00:00Z");
        let overlap = Duration::from_secs(600);
        let stored = cursor("2025-06-01T00:00:00Z", Some("2025-06-01T00:00:00Z"));
        let next = at("2025-06-01T23:50:00Z");
        let inc = |ending, since: &str, rescanned| {
            next_cursor(
                ending,
                Window::Incremental,
                ListingWindow::new(Some(at(since)), None),
                Some(&stored),
                start,
                overlap,
                rescanned,
            )
        };
        assert_eq!(
            inc(Ending::Complete, "2025-06-01T00:00:00Z", false),
            Some((next, stored.rescanned_at))
        );
        assert_eq!(
            inc(Ending::Complete, "2025-06-01T00:00:00Z", true),
            Some((next, Some(start)))
        );
        assert_eq!(inc(Ending::Incomplete, "2025-06-01T00:00:00Z", false), None);
        // A window that starts after the stored cursor leaves a gap: no move.
        assert_eq!(inc(Ending::Complete, "2025-06-01T06:00:00Z", false), None);
        // A single ticket never moves it; a first run does, and counts as a re-scan.
        assert_eq!(
            next_cursor(
                Ending::Complete,
                Window::Ticket(1),
                ListingWindow::new(None, None),
                Some(&stored),
                start,
                overlap,
                false
            ),
            None
        );
        assert_eq!(
            next_cursor(
                Ending::Complete,
                Window::Incremental,
                ListingWindow::new(Some(at("2024-06-01T00:00:00Z")), None),
                None,
                start,
                overlap,
                false
            ),
            Some((next, Some(start)))
        );
    }

    #[test]
    fn a_cursor_older_than_the_retention_cutoff_moves() {
        let start = at("2025-06-02T00:00:00Z");
        let overlap = Duration::from_secs(600);
        let next = at("2025-06-01T23:50:00Z");
        let cutoff = at("2025-03-04T00:00:00Z");
        // The last complete run was before the cutoff (a job that failed for months, or
        // retention_days lowered): the window is clipped to the cutoff...
        let stored = cursor("2025-01-01T00:00:00Z", Some("2025-01-01T00:00:00Z"));
        let listed = ListingWindow::new(Some(stored.updated_since), Some(cutoff));
        assert_eq!(listed.since, Some(cutoff));
        // ...and still covers the cursor: before, the cursor stayed and every later run listed
        // the whole retention window again.
        assert!(listed.covers(stored.updated_since));
        assert_eq!(
            next_cursor(
                Ending::Complete,
                Window::Incremental,
                listed,
                Some(&stored),
                start,
                overlap,
                false
            ),
            Some((next, stored.rescanned_at))
        );
        // A cursor after the cutoff is the window, as without retention.
        let recent = cursor("2025-06-01T00:00:00Z", None);
        let listed = ListingWindow::new(Some(recent.updated_since), Some(cutoff));
        assert_eq!(listed.since, Some(recent.updated_since));
        assert!(listed.covers(recent.updated_since));
        // A window that starts after both the cursor and the cutoff still leaves a gap.
        let late = ListingWindow::new(Some(at("2025-05-01T00:00:00Z")), Some(cutoff));
        assert!(!late.covers(stored.updated_since));
        assert_eq!(
            next_cursor(
                Ending::Complete,
                Window::Incremental,
                late,
                Some(&stored),
                start,
                overlap,
                false
            ),
            None
        );
        // Nor does retention move the cursor of an incomplete run or a single-ticket run.
        assert_eq!(
            next_cursor(
                Ending::Incomplete,
                Window::Incremental,
                listed,
                Some(&stored),
                start,
                overlap,
                false
            ),
            None
        );
        assert!(!ListingWindow::new(None, Some(cutoff)).covers(stored.updated_since));
    }

    #[test]
    fn one_listing_without_workspaces_one_per_workspace_with_them() {
        // No feature (404), an empty list or a single workspace: exactly as before.
        assert_eq!(listing_workspaces(None), vec![None]);
        assert_eq!(listing_workspaces(Some(&[])), vec![None]);
        assert_eq!(listing_workspaces(Some(&[2])), vec![None]);
        // Several: each id once, in order; never a sentinel (0 or 1) for "all".
        assert_eq!(
            listing_workspaces(Some(&[4, 2, 3, 2])),
            vec![Some(2), Some(3), Some(4)]
        );
        assert_eq!(listing_workspaces(Some(&[1, 2])), vec![Some(1), Some(2)]);
    }

    #[test]
    fn departments_are_read_per_workspace_only_for_department_accounts() {
        let listings = [Some(2), Some(3)];
        assert_eq!(
            department_workspaces(AccountFrom::Department, &listings),
            listings.to_vec()
        );
        assert_eq!(
            department_workspaces(AccountFrom::Department, &[None]),
            vec![None]
        );
        assert!(department_workspaces(AccountFrom::Workspace, &listings).is_empty());
    }

    #[test]
    fn workspace_accounts_come_from_the_map_then_the_field() {
        let workspace =
            |v: serde_json::Value| -> wire::Workspace { serde_json::from_value(v).unwrap() };
        let workspaces = [
            workspace(
                json!({"id": 2, "primary": true, "custom_fields": {"account_number": 700100}}),
            ),
            workspace(json!({"id": 3, "custom_fields": {"account_number": "  700101 "}})),
            workspace(json!({"id": 4, "custom_fields": {"account_number": null}})),
            workspace(json!({"id": 5})),
        ];
        let map = HashMap::from([(3, "555001".to_string()), (9, "555009".to_string())]);
        let values = workspace_account_values(&workspaces, "account_number", &map);
        assert_eq!(values.len(), 3);
        assert_eq!(values[&2], json!(700100));
        assert_eq!(values[&3], json!("555001"), "the map wins");
        assert_eq!(
            values[&9],
            json!("555009"),
            "the map names unlisted workspaces too"
        );
        assert!(!values.contains_key(&4) && !values.contains_key(&5));

        // Resolved and validated like departments; no department needed.
        let accounts = crate::normalize::AccountMap::new(&[], "account_number", &HashMap::new())
            .with_workspace_accounts(&values);
        let in_workspace = |ws: serde_json::Value, dept: serde_json::Value| {
            ticket(json!({"id": 1, "status": 5, "workspace_id": ws, "department_id": dept}))
        };
        assert_eq!(
            accounts.resolve_ticket(&in_workspace(json!(2), json!(7))),
            Ok("700100")
        );
        assert_eq!(
            accounts.check_ticket(&in_workspace(json!(3), json!(7))),
            Check::Account("555001")
        );
        assert_eq!(
            accounts.check_ticket(&in_workspace(json!(2), json!(null))),
            Check::Account("700100")
        );
        for (ws, dept, reason) in [
            (json!(4), json!(7), RejectReason::NoAccountNumber),
            (json!(5), json!(7), RejectReason::NoAccountNumber),
            (json!(null), json!(7), RejectReason::NoAccountNumber),
            (json!(null), json!(null), RejectReason::NoAccountNumber),
        ] {
            assert!(
                matches!(
                    accounts.check_ticket(&in_workspace(ws.clone(), dept.clone())),
                    Check::Unplaced(Unplaced { reason: r, .. }) if r == reason
                ),
                "{ws} {dept}"
            );
        }
        let bad = HashMap::from([(2, json!("../x"))]);
        let accounts = crate::normalize::AccountMap::new(&[], "account_number", &HashMap::new())
            .with_workspace_accounts(&bad);
        assert!(matches!(
            accounts.resolve_ticket(&in_workspace(json!(2), json!(7))),
            Err(Unplaced {
                reason: RejectReason::InvalidAccountNumber,
                ..
            })
        ));
    }

    fn tail(commits: u32, arrived: u64, outstanding: u64, eta_ms: u64) -> Tail {
        Tail {
            commits,
            checkpoints: true,
            arrived,
            outstanding,
            settled: true,
            eta: Duration::from_millis(eta_ms),
            estimate: Duration::from_millis(300),
            arrived_takes: Some(Duration::from_millis(5)),
        }
    }

    #[test]
    fn the_first_tail_commit_waits_until_the_last_answer_is_two_estimates_away() {
        assert!(!tail(0, 10, 40, 601).commit_now());
        assert!(tail(0, 10, 40, 600).commit_now());
        assert!(tail(0, 0, 40, 100).commit_now(), "the checkpoints alone go");
        let small = Tail {
            checkpoints: false,
            ..tail(0, 10, 40, 100)
        };
        assert!(
            !small.commit_now(),
            "a run without a checkpoint commits once, at its end"
        );
    }

    #[test]
    fn later_tail_commits_take_what_arrived_once_it_is_half_of_what_was_left() {
        assert!(!tail(1, 0, 20, 500).commit_now(), "nothing arrived");
        assert!(!tail(1, 9, 10, 500).commit_now(), "less than is still out");
        assert!(tail(1, 10, 10, 500).commit_now());
        let unsettled = Tail {
            settled: false,
            ..tail(1, 10, 10, 500)
        };
        assert!(!unsettled.commit_now(), "answers wait in the channel");
        let late = Tail {
            arrived_takes: Some(Duration::from_millis(501)),
            ..tail(1, 10, 10, 500)
        };
        assert!(!late.commit_now(), "it would end after the last answer");
        let unmeasured = Tail {
            arrived_takes: None,
            ..tail(1, 10, 10, 500)
        };
        assert!(!unmeasured.commit_now());
        assert!(tail(1, 1, 1, 5).commit_now());
        // However long the answers take: the halving bounds them, and so does the cap.
        assert!(tail(MAX_TAIL_COMMITS - 1, 30, 2, 10_000).commit_now());
        assert!(!tail(MAX_TAIL_COMMITS, 30, 2, 10_000).commit_now());
    }
}
