//! `ticketsync check`: a read-only preflight of a job. Is the API reachable and the key
//! accepted, what does the account allow per rate window, which departments (or workspaces)
//! have no account number, can the dataset's storage be listed, written, read back and deleted
//! (and does it honour conditional creates), who holds the run lock, and what will the next
//! run cost.
//!
//! It spends a few credits: the workspace and department lists, one page of requesters for a
//! long window, and `/tickets/filter` counts (two per listing, one per department without an
//! account number, at most [`MAX_DEPARTMENT_COUNTS`]). It writes one probe object under
//! `_state/` and deletes it; it never takes the run lock and never touches the dataset's data.
//!
//! [`estimate`] is the pure part: from the API's counts and the dataset's state to tickets,
//! credits and wall time, with the same cost model the run follows (see `source` and
//! `pipeline::policy`). Everything else here only gathers those facts.

use chrono::{DateTime, SecondsFormat, Utc};
use object_store::path::Path;
use serde::Serialize;

use crate::error::Classify;
use crate::job::{AccountFrom, Job, Window};
use crate::normalize::accounts::AccountMap;
use crate::normalize::STATUS_CLOSED;
use crate::pipeline::policy;
use crate::sink::upgrade::{self, Format};
use crate::source::limiter::list_tickets_sublimit;
use crate::source::{self, Requesters, Source};
use crate::state::{self, lock};
use crate::storage::{layout, Storage};

/// Most per-department counts one check asks for (one credit each).
pub const MAX_DEPARTMENT_COUNTS: usize = 20;

/// Tickets per listing page (the client asks for 100).
const PER_PAGE: u64 = 100;

/// What a check found. `problems` are what would make a sync fail for configuration or
/// credentials (exit 3); `warnings` are worth knowing and do not stop a sync.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CheckReport {
    /// No problems: a sync would run (unless `lock.state` is `held`).
    pub ok: bool,
    /// What would make a sync fail, one sentence each, naming the value (the key, a storage step).
    pub problems: Vec<String>,
    /// What a sync would survive but a person should know (unmapped departments, no conditional
    /// creates, an older dataset format).
    pub warnings: Vec<String>,
    /// What the API answered.
    pub api: ApiCheck,
    /// What the storage allowed.
    pub storage: StorageCheck,
    /// Who holds the run lock.
    pub lock: LockCheck,
    /// The next run's cost; `None` when there are problems or `/tickets/filter` did not answer.
    pub estimate: Option<Estimate>,
}

/// The API half of a check.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ApiCheck {
    /// The API's base URL (`simulator` for the built-in one).
    pub url: String,
    /// A response came back at all (`false` after retries outlasted on transport errors or 5xx).
    pub reachable: bool,
    /// The key was accepted (no 401 or 403).
    pub key_accepted: bool,
    /// `X-RateLimit-Total`: the account's credits per rate window.
    pub rate_limit_per_window: Option<u32>,
    /// The rate window in seconds (the job's `rate_window_secs`, 60 for Freshservice).
    pub window_secs: f64,
    /// The workspaces (`None`: the account has none, `GET /workspaces` answered 404; a key that
    /// may not read them is a problem).
    pub workspaces: Option<Vec<WorkspaceInfo>>,
    /// Where account numbers come from: `department` or `workspace`.
    pub account_from: &'static str,
    /// Departments (or workspaces) read, and how many of them have a usable account number.
    pub departments: u64,
    /// Of `departments`, how many have a valid account number.
    pub departments_with_account: u64,
    /// Departments (or workspaces) whose tickets will be rejected.
    pub unmapped: Vec<Unmapped>,
    /// Credits and calls this check spent.
    pub credits_used: u64,
    /// HTTP calls this check made (successful ones, every endpoint).
    pub calls: u64,
}

/// A workspace as `check` lists it (`GET /workspaces`).
#[derive(Debug, Clone, Serialize)]
pub struct WorkspaceInfo {
    /// The workspace id.
    pub id: i64,
    /// The workspace name, when the API gave one.
    pub name: Option<String>,
}

/// A department (or, with `account_from = workspace`, a workspace) without a usable account
/// number.
#[derive(Debug, Clone, Serialize)]
pub struct Unmapped {
    /// The department (or workspace) id.
    pub id: i64,
    /// Its name, when the API gave one.
    pub name: Option<String>,
    /// The workspace the department belongs to, on accounts with workspaces.
    pub workspace_id: Option<i64>,
    /// `no_account_number` or `invalid_account_number`.
    pub reason: &'static str,
    /// Closed tickets updated in the next run's window (or the last 30 days), by the API's
    /// count; `None` when not counted.
    pub closed_tickets: Option<u64>,
}

/// The storage half of a check: each step of the probe object under `_state/`, in order.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StorageCheck {
    /// The dataset location, as the job names it (credentials never shown).
    pub location: String,
    /// `_state/` could be listed.
    pub list: bool,
    /// The probe object could be written.
    pub write: bool,
    /// The probe read back exactly as written.
    pub read_back: bool,
    /// The probe could be deleted.
    pub delete: bool,
    /// Whether a second create of the probe was refused (`None`: not tried).
    pub conditional_create: Option<bool>,
    /// `new`, `current`, `older N`, `newer N` (`_state/format.json`).
    pub format: Option<String>,
    /// The stored cursor (next incremental run's `updated_since`).
    pub cursor: Option<DateTime<Utc>>,
    /// Tickets in the dataset's index.
    pub tickets_in_dataset: u64,
    /// People `forget` erased (`_state/erasures.json`); their key was checked.
    pub erased_people: u64,
}

/// The run lock as a check found it (read only: a check never takes it).
#[derive(Debug, Clone, Default, Serialize)]
pub struct LockCheck {
    /// `free`, `held` (a run is writing; a sync now would be refused), `expired` (a run that
    /// did not finish; the next run takes it over) or `unknown`.
    pub state: &'static str,
    /// The lock's holder (run id, host, since, expiry) when a lock object exists.
    pub holder: Option<lock::LockInfo>,
}

/// What the next run will cost.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Estimate {
    /// `full sync`, `incremental`, `first run`, `since …` or `ticket N`.
    pub mode: String,
    /// The start of the listing window (`updated_since`); `None` for a single-ticket run.
    pub window_since: Option<DateTime<Utc>>,
    /// Tickets the listing will bring (every status).
    pub listed: u64,
    /// Of `listed`, the closed ones (status 5), as `/tickets/filter` counts them.
    pub closed: u64,
    /// Closed tickets of departments without an account number (rejected without calls).
    pub rejected: u64,
    /// Closed tickets the dataset already holds in this version (skipped), as the index says.
    pub unchanged: u64,
    /// Tickets whose conversations and time entries will be read.
    pub fetch: u64,
    /// Placed tickets whose time entries the re-scan re-reads.
    pub rescan: u64,
    /// Listing pages, including the page read ahead after the last (charged once there are two)
    /// and the check for tickets updated while the listing was read.
    pub listing_pages: u64,
    /// Credits of the whole run, low end (see `credits_low`).
    pub credits: u64,
    /// The range: `credits` assumes every indexed ticket is unchanged and at most 100
    /// conversations and time entries per ticket; the high end assumes none is unchanged and a
    /// few tickets with more.
    pub credits_low: u64,
    /// Credits if no ticket is unchanged and a few need a second page of children.
    pub credits_high: u64,
    /// Wall time at the budget, in minutes.
    pub minutes: f64,
    /// Share of the account's allowance the run may use (the job's `budget_share`, 0.01 to 1).
    pub budget_share: f64,
    /// The account's allowance per rate window (`X-RateLimit-Total`; 0 when unknown).
    pub rate_limit_per_window: u32,
    /// The rate window in seconds.
    pub window_secs: f64,
    /// One line: `full sync: ~3,020 closed tickets, ~6,200 credits, ~35 min at 90 % of 200/min`.
    pub summary: String,
}

/// The facts an estimate is made of.
#[derive(Debug, Clone, PartialEq)]
pub struct EstimateInput {
    /// How the window was chosen (see [`Estimate::mode`]).
    pub mode: String,
    /// The start of the listing window; `None` for a single-ticket run.
    pub window_since: Option<DateTime<Utc>>,
    /// Per listing (workspace): tickets updated since the window start (every status), and
    /// closed ones, as `/tickets/filter` counts them.
    pub listings: Vec<(u64, u64)>,
    /// A single-ticket run: no listing.
    pub single_ticket: bool,
    /// Closed tickets that will be rejected without calls (unmapped departments, none).
    pub rejected: u64,
    /// Indexed tickets updated at or after the window start (their version is in the dataset).
    pub unchanged: u64,
    /// Whether the listing embeds requesters or the directory is read (changes the page cost).
    pub requesters: Requesters,
    /// Pages of the requester directory (with [`Requesters::Directory`]).
    pub requester_pages: u64,
    /// Pages of the departments list (at least one per listing).
    pub department_pages: u64,
    /// The deleted and spam views are read too (the job's `reconcile`): a page each per listing.
    pub reconcile: bool,
    /// Placed tickets closed within `rescan_days` whose time entries the re-scan re-reads (0 when
    /// no re-scan is due).
    pub rescan: u64,
    /// The account's allowance per rate window (`X-RateLimit-Total`).
    pub rate_limit_per_window: u32,
    /// Share of the allowance the run may use (the job's `budget_share`).
    pub budget_share: f64,
    /// The rate window in seconds.
    pub window_secs: f64,
}

/// Credits of one listing page: 1, plus 2 per embed (`stats,tags`, and `requester` unless the
/// directory is read); see `Source::tickets_updated_since`.
fn page_credits(requesters: Requesters) -> u64 {
    match requesters {
        Requesters::Embedded => 7,
        Requesters::Directory => 5,
    }
}

/// The next run's cost, from the API's counts and the dataset's state.
pub fn estimate(input: &EstimateInput) -> Estimate {
    // Reference data: workspaces, departments, agents and groups (a page each), the directory.
    let mut credits = 1 + input.department_pages.max(1) + 2;
    if input.requesters == Requesters::Directory {
        credits += input.requester_pages.max(1);
    }
    let mut listing_pages = 0;
    for &(updated, _) in &input.listings {
        let pages = updated.div_ceil(PER_PAGE).max(1);
        // The page after the last is asked for ahead of time (and charged) once there are two.
        let read_ahead = u64::from(pages >= 2);
        listing_pages += pages + read_ahead;
        if input.reconcile {
            // The deleted and spam views: a page each.
            credits += 2;
        }
    }
    // After a listing read ahead (two pages or more), or one of several workspaces, the
    // tickets updated since it began are listed, a page per workspace (see `pipeline::listing`).
    let checked = input.listings.len() > 1
        || input
            .listings
            .iter()
            .any(|&(updated, _)| updated.div_ceil(PER_PAGE) >= 2);
    if checked && !input.single_ticket {
        listing_pages += input.listings.len() as u64;
    }
    // The listing's first page is asked for before the workspaces are known, without
    // `workspace_id`: with several workspaces it is not the listing planned, and read for
    // nothing (see `pipeline::listing::list_early`); so is the department list beside it.
    if input.listings.len() > 1 && !input.single_ticket {
        listing_pages += 1;
        credits += 1;
    }
    credits += listing_pages * page_credits(input.requesters);
    let (listed, closed) = if input.single_ticket {
        // The ticket view with three embeds.
        credits += 4;
        (1, 1)
    } else {
        input
            .listings
            .iter()
            .fold((0, 0), |(l, c), &(u, cl)| (l + u, c + cl))
    };
    let placeable = closed.saturating_sub(input.rejected);
    let unchanged = input.unchanged.min(placeable);
    let fetch = placeable - unchanged;
    // Conversations and time entries: a call each.
    credits += 2 * fetch + input.rescan;
    let credits_low = credits;
    // None unchanged after all, and ~3 % of tickets with a second page of either.
    let credits_high = credits + 2 * unchanged + (2 * placeable).div_ceil(33);
    let target = input.budget_share * f64::from(input.rate_limit_per_window.max(1));
    let windows = credits as f64 / target;
    // Listing pages also count against the "List All Tickets" sub-limit.
    let list_target =
        input.budget_share * f64::from(list_tickets_sublimit(input.rate_limit_per_window).max(1));
    let windows = windows.max(listing_pages as f64 / list_target);
    let minutes = windows * input.window_secs / 60.0;
    let summary = format!(
        "{mode}: ~{closed} closed tickets, ~{credits} credits, ~{time} at {share} % of {limit}{per}",
        mode = input.mode,
        closed = thousands(closed),
        credits = thousands(round_credits(credits)),
        time = duration(minutes),
        share = (input.budget_share * 100.0).round(),
        limit = input.rate_limit_per_window,
        per = per_window(input.window_secs),
    );
    Estimate {
        mode: input.mode.clone(),
        window_since: input.window_since,
        listed,
        closed,
        rejected: input.rejected.min(closed),
        unchanged,
        fetch,
        rescan: input.rescan,
        listing_pages,
        credits,
        credits_low,
        credits_high,
        minutes,
        budget_share: input.budget_share,
        rate_limit_per_window: input.rate_limit_per_window,
        window_secs: input.window_secs,
        summary,
    }
}

/// Credits as a person would say them: exact below 1,000, else to the nearest ten.
fn round_credits(n: u64) -> u64 {
    if n < 1000 {
        n
    } else {
        (n + 5) / 10 * 10
    }
}

/// `1234567` → `1,234,567`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn duration(minutes: f64) -> String {
    if minutes < 1.0 {
        format!("{} s", (minutes * 60.0).ceil().max(1.0))
    } else if minutes < 120.0 {
        format!("{} min", minutes.round())
    } else {
        format!("{:.1} h", minutes / 60.0)
    }
}

fn per_window(secs: f64) -> String {
    if (secs - 60.0).abs() < 1e-9 {
        "/min".into()
    } else {
        format!(" per {secs} s")
    }
}

/// The `/tickets/filter` time bound for `since` (`:>` is "at or after").
fn after(since: DateTime<Utc>) -> String {
    format!(
        "updated_at:>'{}'",
        since.to_rfc3339_opts(SecondsFormat::Secs, true)
    )
}

/// Runs the checks. `source`: `None` when there is no key to try (a problem already says
/// so). `storage`: the opened dataset, or why it could not be opened.
pub async fn run(
    job: &Job,
    source: Option<&Source>,
    api_url: String,
    storage: Result<Storage, crate::storage::Error>,
    mut problems: Vec<String>,
) -> CheckReport {
    let now = Utc::now();
    let mut report = CheckReport {
        api: ApiCheck {
            url: api_url,
            window_secs: job.limiter.window.as_secs_f64(),
            account_from: match job.account_from {
                AccountFrom::Department => "department",
                AccountFrom::Workspace => "workspace",
            },
            ..ApiCheck::default()
        },
        lock: LockCheck {
            state: "unknown",
            holder: None,
        },
        ..CheckReport::default()
    };
    let mut warnings = Vec::new();

    // Storage first: the cursor and the index decide the window the API counts cover.
    let (cursor, index) = match storage {
        Ok(storage) => {
            check_storage(&storage, &mut report, &mut problems, &mut warnings).await;
            match crate::sink::upgrade::domain(&storage).await {
                Ok(Some(found)) if found != job.domain => problems.push(format!(
                    "the dataset holds the Freshservice domain {found:?} and this job's is {:?}: a sync would refuse to run (name the domain with --domain)",
                    job.domain
                )),
                _ => {}
            }
            check_lock(&storage, &mut report, &mut problems, &mut warnings).await;
            let cursor = state::load_cursor(&storage).await;
            let index = state::load_index(&storage).await;
            match (cursor, index) {
                (Ok(cursor), Ok(index)) => {
                    report.storage.cursor = cursor.as_ref().map(|c| c.updated_since);
                    report.storage.tickets_in_dataset = index.len() as u64;
                    (cursor, Some(index))
                }
                (Err(e), _) | (_, Err(e)) => {
                    problems.push(format!("the dataset's state cannot be read: {e}"));
                    (None, None)
                }
            }
        }
        Err(e) => {
            problems.push(format!("storage: {e}"));
            (None, None)
        }
    };

    let window_since = policy::listing_since(job.window, cursor.as_ref(), now, job.full_sync_days);
    if let Some(source) = source {
        check_api(
            job,
            source,
            window_since.unwrap_or(now - chrono::Duration::days(30)),
            &mut report,
            &mut problems,
            &mut warnings,
        )
        .await;
        if report.api.key_accepted && problems.is_empty() {
            match estimate_next_run(job, source, &report, cursor.as_ref(), index.as_ref(), now)
                .await
            {
                Ok(estimate) => report.estimate = Some(estimate),
                Err(e) => warnings.push(format!(
                    "no estimate: the API's /tickets/filter did not answer ({e}); the run itself does not need it"
                )),
            }
        }
        let stats = source.client().stats();
        report.api.credits_used = stats.credits_used;
        report.api.calls = stats.calls.values().sum();
    }
    report.ok = problems.is_empty();
    report.problems = problems;
    report.warnings = warnings;
    report
}

async fn check_storage(
    storage: &Storage,
    report: &mut CheckReport,
    problems: &mut Vec<String>,
    warnings: &mut Vec<String>,
) {
    let s = &mut report.storage;
    s.location = storage.display().to_string();
    match storage.list(&Path::from("_state")).await {
        Ok(_) => s.list = true,
        Err(e) => problems.push(format!("storage: cannot list {}: {e}", s.location)),
    }
    let probe = layout::state(&format!(
        "check-{}-{:04x}.probe",
        std::process::id(),
        rand::random::<u16>()
    ));
    let body = bytes::Bytes::from(format!("ticketsync check {}\n", Utc::now().to_rfc3339()));
    match storage.put(&probe, body.clone()).await {
        Ok(()) => s.write = true,
        Err(e) => {
            problems.push(format!("storage: cannot write {probe}: {e}"));
            return;
        }
    }
    match storage.get(&probe).await {
        Ok(Some(read)) if read == body => s.read_back = true,
        Ok(_) => problems.push(format!(
            "storage: {probe} did not read back as written (an eventually consistent or caching store?)"
        )),
        Err(e) => problems.push(format!("storage: cannot read back {probe}: {e}")),
    }
    match storage.conditional_create_works(&probe, body).await {
        Ok(works) => {
            s.conditional_create = Some(works);
            if !works {
                warnings.push("storage: conditional creates are not honoured (S3 with AWS_CONDITIONAL_PUT=disabled, or a store without If-None-Match): two runs started at the same moment could both take the run lock".into());
            }
        }
        Err(e) => warnings.push(format!("storage: conditional create not tried: {e}")),
    }
    match storage.delete(&probe).await {
        Ok(()) => s.delete = true,
        Err(e) => problems.push(format!("storage: cannot delete {probe}: {e}")),
    }
    storage.remove_empty_dirs(&Path::from("_state")).await;
    s.format = match upgrade::format(storage).await {
        Ok(Format::New) => Some("new".into()),
        Ok(Format::Current) => Some("current".into()),
        Ok(Format::Older(n)) => {
            warnings.push(format!(
                "the dataset has format {n}: the next run upgrades it first"
            ));
            Some(format!("older {n}"))
        }
        Ok(Format::Newer(n)) => {
            problems.push(format!(
                "the dataset has format {n}, written by a newer ticketsync: this release will not write it"
            ));
            Some(format!("newer {n}"))
        }
        Err(e) => {
            problems.push(format!("the dataset's format cannot be read: {e}"));
            None
        }
    };
    // A sync refuses to run when the erasure key does not match the record (it would bring
    // erased people back): the same check, without the sync.
    match crate::state::erasures::load(storage).await {
        Ok(loaded) => s.erased_people = loaded.erasures.people().len() as u64,
        Err(e) => problems.push(format!("erasures: {e}")),
    }
}

async fn check_lock(
    storage: &Storage,
    report: &mut CheckReport,
    problems: &mut Vec<String>,
    warnings: &mut Vec<String>,
) {
    match lock::peek(storage).await {
        Ok(None) => report.lock.state = "free",
        Ok(Some(holder)) if holder.expires_at > Utc::now() => {
            warnings.push(format!(
                "the run lock is held by {holder}: a sync now would be refused"
            ));
            report.lock = LockCheck {
                state: "held",
                holder: Some(holder),
            };
        }
        Ok(Some(holder)) => {
            warnings.push(format!(
                "the run lock of a run that did not finish is left ({holder}); the next run takes it over"
            ));
            report.lock = LockCheck {
                state: "expired",
                holder: Some(holder),
            };
        }
        Err(e) => problems.push(format!("the run lock cannot be read: {e}")),
    }
}

async fn check_api(
    job: &Job,
    source: &Source,
    since: DateTime<Utc>,
    report: &mut CheckReport,
    problems: &mut Vec<String>,
    warnings: &mut Vec<String>,
) {
    let api = &mut report.api;
    let fail = |e: source::Error, api: &mut ApiCheck, problems: &mut Vec<String>| {
        api.reachable = !matches!(e, source::Error::Exhausted { .. });
        problems.push(format!("API: {e}"));
    };
    let workspaces = match source.workspaces().await {
        Ok(ws) => ws,
        Err(e) => return fail(e, api, problems),
    };
    api.reachable = true;
    api.key_accepted = true;
    let total = source.client().limiter_stats().total;
    api.rate_limit_per_window = (total > 0).then_some(total);
    let workspaces: Option<Vec<source::wire::Workspace>> =
        workspaces.map(|items| items.into_iter().filter_map(Result::ok).collect());
    api.workspaces = workspaces.as_ref().map(|ws| {
        ws.iter()
            .map(|w| WorkspaceInfo {
                id: w.id,
                name: w.name.clone(),
            })
            .collect()
    });
    let ids: Option<Vec<i64>> = workspaces
        .as_ref()
        .map(|ws| ws.iter().map(|w| w.id).collect());
    let listings = policy::listing_workspaces(ids.as_deref());
    match job.account_from {
        AccountFrom::Department => {
            let mut departments = Vec::new();
            for &workspace in &listings {
                match source.departments(workspace).await {
                    Ok(items) => departments.extend(items.into_iter().filter_map(Result::ok)),
                    Err(e) => return fail(e, api, problems),
                }
            }
            let map = AccountMap::new(&departments, &job.account_field, &job.account_map);
            api.departments = departments.len() as u64;
            for d in &departments {
                match map.resolve(Some(d.id)) {
                    Ok(_) => api.departments_with_account += 1,
                    Err(unplaced) => api.unmapped.push(Unmapped {
                        id: d.id,
                        name: d.name.clone(),
                        workspace_id: d.workspace_id,
                        reason: unplaced.reason.as_str(),
                        closed_tickets: None,
                    }),
                }
            }
            // How many recent closed tickets each one has (their tickets go to rejects).
            let scoped = listings.iter().any(Option::is_some);
            for u in api.unmapped.iter_mut().take(MAX_DEPARTMENT_COUNTS) {
                let query = format!(
                    "department_id:{} AND status:{STATUS_CLOSED} AND {}",
                    u.id,
                    after(since)
                );
                let workspace = if scoped { u.workspace_id } else { None };
                match source.count_tickets(&query, workspace).await {
                    Ok(n) => u.closed_tickets = Some(n),
                    Err(e) if e.class() == crate::error::Class::Config => {
                        return fail(e, api, problems)
                    }
                    Err(e) => {
                        warnings.push(format!(
                            "the closed tickets of departments without an account number were not counted: {e}"
                        ));
                        break;
                    }
                }
            }
        }
        AccountFrom::Workspace => {
            let values = policy::workspace_account_values(
                workspaces.as_deref().unwrap_or_default(),
                &job.account_field,
                &job.workspace_map,
            );
            let map = AccountMap::default().with_workspace_accounts(&values);
            for w in workspaces.iter().flatten() {
                api.departments += 1;
                let probe: Result<source::wire::Ticket, _> = serde_json::from_value(
                    serde_json::json!({"id": 0, "department_id": 0, "workspace_id": w.id}),
                );
                match probe.map(|t| map.resolve_ticket(&t).map(|_| ()).map_err(|u| u.reason)) {
                    Ok(Ok(())) => api.departments_with_account += 1,
                    Ok(Err(reason)) => api.unmapped.push(Unmapped {
                        id: w.id,
                        name: w.name.clone(),
                        workspace_id: Some(w.id),
                        reason: reason.as_str(),
                        closed_tickets: None,
                    }),
                    Err(_) => {}
                }
            }
        }
    }
    if !api.unmapped.is_empty() {
        let counted: u64 = api.unmapped.iter().filter_map(|u| u.closed_tickets).sum();
        warnings.push(format!(
            "{} {}s have no usable account number; their tickets go to the rejects table ({} closed in the window counted)",
            api.unmapped.len(),
            api.account_from,
            counted
        ));
    }
}

/// Counts what the next run lists and estimates its cost.
async fn estimate_next_run(
    job: &Job,
    source: &Source,
    report: &CheckReport,
    cursor: Option<&state::Cursor>,
    index: Option<&state::Index>,
    now: DateTime<Utc>,
) -> Result<Estimate, source::Error> {
    let window_since = policy::listing_since(job.window, cursor, now, job.full_sync_days);
    let requesters = policy::requester_source(window_since, now);
    let listings = policy::listing_workspaces(
        report
            .api
            .workspaces
            .as_ref()
            .map(|ws| ws.iter().map(|w| w.id).collect::<Vec<_>>())
            .as_deref(),
    );
    let mode = match job.window {
        Window::Full => "full sync".to_string(),
        Window::Incremental if cursor.is_some() => "incremental".to_string(),
        Window::Incremental => "first run (full window)".to_string(),
        Window::Since(at) => format!("since {}", at.to_rfc3339_opts(SecondsFormat::Secs, true)),
        Window::Ticket(id) => format!("ticket {id}"),
    };
    let mut counts = Vec::new();
    let mut rejected = 0;
    if let Some(since) = window_since {
        for &workspace in &listings {
            let updated = source.count_tickets(&after(since), workspace).await?;
            let closed = source
                .count_tickets(
                    &format!("status:{STATUS_CLOSED} AND {}", after(since)),
                    workspace,
                )
                .await?;
            // Closed tickets without a department are rejected without calls too.
            if job.account_from == AccountFrom::Department {
                rejected += source
                    .count_tickets(
                        &format!(
                            "department_id:null AND status:{STATUS_CLOSED} AND {}",
                            after(since)
                        ),
                        workspace,
                    )
                    .await?;
            }
            counts.push((updated, closed));
        }
        rejected += report
            .api
            .unmapped
            .iter()
            .filter_map(|u| u.closed_tickets)
            .sum::<u64>();
    }
    let requester_pages = match requesters {
        Requesters::Directory => match source.requesters_first_page().await? {
            // The first page tells the count when there is only one; otherwise 2 is a floor.
            (_, false) => 1,
            (_, true) => 2,
        },
        Requesters::Embedded => 0,
    };
    let unchanged = match (index, window_since) {
        (Some(index), Some(since)) => {
            let since = since.timestamp_millis();
            index
                .iter()
                .filter(|(_, e)| {
                    matches!(e.location, state::Location::Placed { .. })
                        && e.updated_at.is_some_and(|u| u >= since)
                })
                .count() as u64
        }
        _ => 0,
    };
    let rescan_due = policy::rescan_due(job.rescan_days, job.rescan_every, job.window, cursor, now);
    let rescan = match (index, rescan_due) {
        (Some(index), true) => index
            .closed_since(now - chrono::Duration::days(job.rescan_days.into()))
            .len() as u64,
        _ => 0,
    };
    let departments = report.api.departments;
    Ok(estimate(&EstimateInput {
        mode,
        window_since,
        listings: counts,
        single_ticket: matches!(job.window, Window::Ticket(_)),
        rejected,
        unchanged,
        requesters,
        requester_pages,
        department_pages: departments.div_ceil(PER_PAGE).max(listings.len() as u64),
        reconcile: job.reconcile,
        rescan,
        rate_limit_per_window: report.api.rate_limit_per_window.unwrap_or(0),
        budget_share: job.limiter.budget_share,
        window_secs: job.limiter.window.as_secs_f64(),
    }))
}

/// The report for a person: one section per subject, problems first.
pub fn render(report: &CheckReport) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let verdict = match (report.ok, report.lock.state) {
        (false, _) => format!(
            "{} problem{}: a sync would fail",
            report.problems.len(),
            if report.problems.len() == 1 { "" } else { "s" }
        ),
        (true, "held") => "ok, but the run lock is held: a sync now would be refused".into(),
        (true, _) => "ok: a sync would run".into(),
    };
    let _ = writeln!(out, "ticketsync check: {verdict}");
    for p in &report.problems {
        let _ = writeln!(out, "  problem: {p}");
    }
    for w in &report.warnings {
        let _ = writeln!(out, "  warning: {w}");
    }
    let api = &report.api;
    let _ = writeln!(out, "\nAPI       {}", api.url);
    if api.key_accepted {
        let limit = api.rate_limit_per_window.map_or_else(
            || "not reported".to_string(),
            |n| format!("{n} credits{}", per_window(api.window_secs)),
        );
        let _ = writeln!(out, "          reachable, key accepted, rate limit {limit}");
        let ws = match &api.workspaces {
            None => "none (an account without workspaces)".into(),
            Some(ws) => format!(
                "{}: {}",
                ws.len(),
                ws.iter()
                    .map(|w| format!("{} {}", w.id, w.name.as_deref().unwrap_or("-")))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        let _ = writeln!(out, "          workspaces: {ws}");
        let _ = writeln!(
            out,
            "          {}s: {}, {} with an account number, {} without",
            api.account_from,
            api.departments,
            api.departments_with_account,
            api.unmapped.len()
        );
        for u in &api.unmapped {
            let closed = u.closed_tickets.map_or_else(
                || "not counted".to_string(),
                |n| format!("{n} closed tickets in the window"),
            );
            let _ = writeln!(
                out,
                "            {} {:?}: {} ({closed})",
                u.id,
                u.name.as_deref().unwrap_or("-"),
                u.reason
            );
        }
    } else {
        let _ = writeln!(
            out,
            "          {}",
            if api.reachable {
                "not checked further"
            } else {
                "not reachable"
            }
        );
    }
    let s = &report.storage;
    let step = |ok: bool| if ok { "ok" } else { "FAILED" };
    let _ = writeln!(out, "\nStorage   {}", s.location);
    let _ = writeln!(
        out,
        "          list {}, write {}, read back {}, delete {}, conditional create {}",
        step(s.list),
        step(s.write),
        step(s.read_back),
        step(s.delete),
        match s.conditional_create {
            Some(true) => "ok",
            Some(false) => "NOT HONOURED",
            None => "not tried",
        }
    );
    let cursor = s.cursor.map_or_else(
        || "none (the next incremental run reads the full window)".to_string(),
        |c| c.to_rfc3339_opts(SecondsFormat::Secs, true),
    );
    let _ = writeln!(
        out,
        "          format {}, {} tickets, cursor {cursor}",
        s.format.as_deref().unwrap_or("unknown"),
        thousands(s.tickets_in_dataset)
    );
    if s.erased_people > 0 {
        let _ = writeln!(
            out,
            "          {} erased people, their erasure key matches",
            s.erased_people
        );
    }
    let lock = match &report.lock.holder {
        Some(holder) => format!("{}: {holder}", report.lock.state),
        None => report.lock.state.to_string(),
    };
    let _ = writeln!(out, "\nLock      {lock}");
    if let Some(e) = &report.estimate {
        let _ = writeln!(out, "\nEstimate  {}", e.summary);
        let _ = writeln!(
            out,
            "          lists {} tickets in {} pages; of {} closed: {} rejected (no department or account number), {} unchanged, {} fetched (2 calls each){}",
            thousands(e.listed),
            e.listing_pages,
            thousands(e.closed),
            thousands(e.rejected),
            thousands(e.unchanged),
            thousands(e.fetch),
            if e.rescan > 0 {
                format!("; {} re-scanned", thousands(e.rescan))
            } else {
                String::new()
            }
        );
        let _ = writeln!(
            out,
            "          credits {} to {}: the counts come from the API's search index (it can lag by minutes), tickets change while the run goes, and a ticket with over 100 conversations or time entries costs another call",
            thousands(e.credits_low),
            thousands(e.credits_high)
        );
    }
    let _ = writeln!(
        out,
        "\nThis check used {} API credits in {} calls.",
        api.credits_used, api.calls
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input() -> EstimateInput {
        EstimateInput {
            mode: "full sync".into(),
            window_since: None,
            listings: vec![(3400, 3020)],
            single_ticket: false,
            rejected: 20,
            unchanged: 0,
            requesters: Requesters::Directory,
            requester_pages: 2,
            department_pages: 1,
            reconcile: true,
            rescan: 0,
            rate_limit_per_window: 200,
            budget_share: 0.9,
            window_secs: 60.0,
        }
    }

    #[test]
    fn a_full_sync_costs_two_calls_per_closed_ticket_plus_the_listing() {
        let e = estimate(&input());
        assert_eq!(
            e.listing_pages, 36,
            "34 pages, the one read ahead and the check for tickets updated meanwhile"
        );
        assert_eq!(e.fetch, 3000);
        // reference 1 + 1 + 2 + 2, views 2, listing 36 × 5, fetch 2 × 3000
        assert_eq!(e.credits, 6 + 2 + 180 + 6000);
        assert!(e.credits_high > e.credits && e.credits_low == e.credits);
        assert!((e.minutes - 6188.0 / 180.0).abs() < 1e-9, "{}", e.minutes);
        assert_eq!(
            e.summary,
            "full sync: ~3,020 closed tickets, ~6,190 credits, ~34 min at 90 % of 200/min"
        );
    }

    #[test]
    fn unchanged_and_rejected_tickets_cost_no_calls() {
        let e = estimate(&EstimateInput {
            unchanged: 2900,
            ..input()
        });
        assert_eq!(e.fetch, 100);
        assert_eq!(e.credits_high - e.credits, 2 * 2900 + 182);
        let all_rejected = estimate(&EstimateInput {
            rejected: 5000,
            unchanged: 10,
            ..input()
        });
        assert_eq!((all_rejected.fetch, all_rejected.unchanged), (0, 0));
    }

    #[test]
    fn a_nightly_run_embeds_requesters_and_is_quick() {
        let e = estimate(&EstimateInput {
            mode: "incremental".into(),
            listings: vec![(40, 25)],
            rejected: 0,
            requesters: Requesters::Embedded,
            requester_pages: 0,
            rescan: 30,
            ..input()
        });
        assert_eq!(e.listing_pages, 1);
        assert_eq!(e.credits, 4 + 2 + 7 + 50 + 30);
        assert!(
            e.summary.ends_with("~32 s at 90 % of 200/min"),
            "{}",
            e.summary
        );
    }

    #[test]
    fn an_account_with_workspaces_pays_for_the_listing_started_before_they_were_known() {
        let e = estimate(&EstimateInput {
            mode: "incremental".into(),
            listings: vec![(40, 25), (150, 100)],
            rejected: 0,
            requesters: Requesters::Embedded,
            requester_pages: 0,
            department_pages: 2,
            reconcile: false,
            ..input()
        });
        // 1 + 2 pages, the one read ahead after the second listing's last, the check for
        // tickets updated meanwhile (one page per listing), and the page asked for without
        // `workspace_id` before the workspaces were known.
        assert_eq!(e.listing_pages, 1 + 2 + 1 + 2 + 1);
        // workspaces 1, departments 2, agents and groups 2, the early department list 1,
        // listing 7 × 7, fetch 2 × 125.
        assert_eq!(e.credits, 1 + 2 + 2 + 1 + 7 * 7 + 250);
    }

    #[test]
    fn numbers_read_like_numbers() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1234567), "1,234,567");
        assert_eq!(round_credits(6183), 6180);
        assert_eq!(duration(0.2), "12 s");
        assert_eq!(duration(150.0), "2.5 h");
        assert_eq!(per_window(2.0), " per 2 s");
    }
}
