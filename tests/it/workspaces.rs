//! Accounts with workspaces (every Freshservice-for-MSPs account: each client is a workspace):
//! every closed ticket of every workspace is exported exactly once, in both account modes; an
//! account without the feature makes exactly the calls it made before, plus one `GET /workspaces`.

use std::collections::{BTreeMap, BTreeSet};

use arrow::array::{Array, Int64Array, RecordBatch};
use chrono::Datelike;
use serde_json::Value;
use ticketsync::job::{AccountFrom, JobSpec};
use ticketsync::pipeline::RunOutcome;
use ticketsync::report::RunStatus;
use ticketsync::sim::{GroundTruth, Plan, SimConfig};

use crate::support::{column_strings, read_parquet, Harness};

async fn harness(workspaces: usize) -> Harness {
    Harness::with_config(SimConfig {
        tickets: 240,
        seed: 7,
        workspaces,
        plan: Plan::Enterprise,
        minute_secs: 1.0,
        ..SimConfig::default()
    })
    .await
}

fn ids(batch: &RecordBatch, name: &str) -> Vec<i64> {
    let col = batch.column_by_name(name).unwrap();
    let col = col.as_any().downcast_ref::<Int64Array>().unwrap();
    (0..col.len()).map(|i| col.value(i)).collect()
}

/// ticket id → partition directory, each ticket at most once.
async fn placed(h: &Harness) -> BTreeMap<i64, String> {
    let mut out = BTreeMap::new();
    for path in crate::support::data_files(&h.storage, ticketsync::tables::Table::Tickets).await {
        let dir = path.as_ref().rsplit_once('/').unwrap().0.to_string();
        for batch in read_parquet(&h.storage, &path).await {
            for id in ids(&batch, "ticket_id") {
                assert!(out.insert(id, dir.clone()).is_none(), "ticket {id} twice");
            }
        }
    }
    out
}

/// ticket id → reject reason, each ticket at most once.
async fn rejected(h: &Harness) -> BTreeMap<i64, String> {
    let mut out = BTreeMap::new();
    for path in crate::support::data_files(&h.storage, ticketsync::tables::Table::Rejects).await {
        for batch in read_parquet(&h.storage, &path).await {
            for (id, reason) in ids(&batch, "ticket_id")
                .into_iter()
                .zip(column_strings(&batch, "reason"))
            {
                assert!(out.insert(id, reason).is_none(), "reject {id} twice");
            }
        }
    }
    out
}

/// The department custom field's account, validated as the account map does.
fn department_account(raw: Option<&Value>) -> Result<String, &'static str> {
    let text = match raw {
        None | Some(Value::Null) => return Err("no_account_number"),
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::String(s)) => s.trim().to_string(),
        Some(_) => return Err("invalid_account_number"),
    };
    let ok = !text.is_empty()
        && text.chars().next().unwrap().is_ascii_alphanumeric()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    match (text.is_empty(), ok) {
        (true, _) => Err("no_account_number"),
        (false, true) => Ok(text),
        (false, false) => Err("invalid_account_number"),
    }
}

/// Compares the dataset with the ground truth: `account` says where a closed ticket belongs.
async fn assert_exported_once(
    h: &Harness,
    outcome: &RunOutcome,
    account: impl Fn(&GroundTruth, &ticketsync::sim::Ticket) -> Result<String, &'static str>,
) {
    assert!(outcome.error.is_none(), "{:?}", outcome.error);
    let since = outcome.report.window_since.unwrap();
    let gt = h.sim.ground_truth();
    let mut want_placed = BTreeMap::new();
    let mut want_rejected = BTreeMap::new();
    let mut workspaces_placed = BTreeSet::new();
    for t in gt.closed_tickets().filter(|t| t.updated_at >= since) {
        let year = t.closed_at.unwrap_or(t.updated_at).year();
        match account(&gt, t) {
            Ok(account) => {
                workspaces_placed.insert(t.workspace_id);
                want_placed.insert(
                    t.id,
                    format!("tickets/domain=acme/account={account}/year={year}"),
                );
            }
            Err(reason) => {
                want_rejected.insert(t.id, reason.to_string());
            }
        }
    }
    let all: BTreeSet<i64> = gt.workspaces.iter().map(|w| w.id).collect();
    assert_eq!(all.len(), 3);
    assert_eq!(workspaces_placed, all, "every workspace has placed tickets");
    assert_eq!(placed(h).await, want_placed);
    assert_eq!(rejected(h).await, want_rejected);
    // Every row carries its ticket's workspace.
    let dump = h.dump().await;
    for line in dump.table("tickets") {
        let field = |name: &str| {
            line.split(' ')
                .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
                .unwrap_or_else(|| panic!("no {name} in {line}"))
                .parse::<i64>()
                .unwrap()
        };
        let id = field("ticket_id");
        assert_eq!(
            field("workspace_id"),
            gt.ticket(id).unwrap().workspace_id,
            "ticket {id}"
        );
    }
    let status = if want_rejected.is_empty() {
        RunStatus::Ok
    } else {
        RunStatus::OkWithRejects
    };
    assert_eq!(outcome.report.status, status);
    assert_eq!(
        outcome.report.tickets.written as usize,
        want_placed.len(),
        "written"
    );

    // One listing per workspace id (never a sentinel), the live view and both reconciliation
    // views alike; departments per workspace when they give the accounts. The one request
    // without `workspace_id` is the listing's first page, asked for before the workspaces were
    // known and dropped once they were.
    let stats = h.sim.stats();
    assert_eq!(stats.by_endpoint["workspaces"], 1);
    let (early, scoped): (Vec<_>, Vec<_>) = stats
        .log
        .iter()
        .filter(|e| e.endpoint == "tickets_list")
        .partition(|e| !e.path_and_query.contains("workspace_id="));
    assert_eq!(early.len(), 1, "{early:?}");
    assert!(
        !early[0].path_and_query.contains("filter=") && !early[0].path_and_query.contains("&page="),
        "{}",
        early[0].path_and_query
    );
    for entry in scoped {
        let ws: Vec<&str> = entry
            .path_and_query
            .split(['?', '&'])
            .filter_map(|kv| kv.strip_prefix("workspace_id="))
            .collect();
        assert!(
            ws.len() == 1 && all.contains(&ws[0].parse::<i64>().unwrap()),
            "{}",
            entry.path_and_query
        );
    }
    for filter in ["filter=deleted", "filter=spam"] {
        let scoped: BTreeSet<&str> = stats
            .log
            .iter()
            .filter(|e| e.endpoint == "tickets_list" && e.path_and_query.contains(filter))
            .filter_map(|e| e.path_and_query.split("workspace_id=").nth(1))
            .collect();
        assert_eq!(scoped.len(), 3, "{filter} in every workspace");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workspaces_with_department_accounts_export_every_ticket_once() {
    let h = harness(3).await;
    let gt = h.sim.ground_truth();
    // The account really is split: the primary workspace alone would miss tickets.
    let primary = gt.primary_workspace();
    assert!(gt.closed_tickets().any(|t| t.workspace_id != primary));
    assert!(gt.departments.iter().any(|d| d.workspace_id != primary));

    let outcome = h.full_sync().await;
    assert_exported_once(&h, &outcome, |gt, t| match t.department_id {
        None => Err("no_department"),
        Some(d) => match gt.department(d) {
            None => Err("unknown_department"),
            Some(dept) => department_account(dept.account_number.as_ref()),
        },
    })
    .await;
    let stats = h.sim.stats();
    assert_eq!(
        stats.by_endpoint["departments"],
        3 + 1,
        "one list per workspace, and the one without workspace_id read beside the workspaces"
    );
    assert_eq!(
        stats.by_endpoint["department_view"], 0,
        "every department was in its workspace's list"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workspaces_with_workspace_accounts_export_every_ticket_once() {
    // From the workspace (client) field named by account_field.
    let h = harness(3).await;
    let outcome = h
        .sync_with(
            JobSpec {
                account_from: Some(AccountFrom::Workspace),
                ..h.full_spec()
            },
            None,
        )
        .await;
    // A ticket without a department is placed by its workspace like any other (before: a
    // `no_department` reject, although its account comes from the workspace).
    let expected = |gt: &GroundTruth, t: &ticketsync::sim::Ticket| match gt
        .workspaces
        .iter()
        .find(|w| w.id == t.workspace_id)
    {
        Some(ws) => Ok(ws.account_number.to_string()),
        None => Err("no_account_number"),
    };
    assert_exported_once(&h, &outcome, expected).await;
    let gt = h.sim.ground_truth();
    let since = outcome.report.window_since.unwrap();
    let without_department: BTreeSet<i64> = gt
        .closed_tickets()
        .filter(|t| t.updated_at >= since && t.department_id.is_none())
        .map(|t| t.id)
        .collect();
    assert!(
        !without_department.is_empty(),
        "the account has such tickets"
    );
    let placed_ids = placed(&h).await;
    assert!(without_department
        .iter()
        .all(|id| placed_ids.contains_key(id)));
    assert_eq!(outcome.report.rejects_by_reason.get("no_department"), None);
    for line in h.dump().await.table("tickets") {
        let id: i64 = line
            .split(' ')
            .find_map(|kv| kv.strip_prefix("ticket_id="))
            .unwrap()
            .parse()
            .unwrap();
        if without_department.contains(&id) {
            assert!(line.contains(" department_id=∅ "), "{line}");
        }
    }
    assert_eq!(
        h.sim.stats().by_endpoint["departments"],
        0,
        "workspace accounts need no department list"
    );

    // From a workspace map that leaves one workspace out: its tickets are rejects.
    let h = harness(3).await;
    let gt = h.sim.ground_truth();
    let unmapped = gt.workspaces[2].id;
    let map = h.dir.path().join("workspaces.csv");
    let mut csv = String::from("workspace_id,account_number\n");
    for w in gt.workspaces.iter().filter(|w| w.id != unmapped) {
        csv.push_str(&format!("{},C-{}\n", w.id, w.id));
    }
    std::fs::write(&map, csv).unwrap();
    let outcome = h
        .sync_with(
            JobSpec {
                account_from: Some(AccountFrom::Workspace),
                workspace_map: Some(map),
                // No such workspace field: the map is the only source.
                account_field: Some("client_code".into()),
                ..h.full_spec()
            },
            None,
        )
        .await;
    assert!(outcome.error.is_none(), "{:?}", outcome.error);
    let since = outcome.report.window_since.unwrap();
    let mut want_placed = BTreeMap::new();
    let mut want_rejected = BTreeMap::new();
    for t in gt.closed_tickets().filter(|t| t.updated_at >= since) {
        let year = t.closed_at.unwrap_or(t.updated_at).year();
        match t.workspace_id == unmapped {
            true => want_rejected.insert(t.id, "no_account_number".to_string()),
            false => want_placed.insert(
                t.id,
                format!(
                    "tickets/domain=acme/account=C-{}/year={year}",
                    t.workspace_id
                ),
            ),
        };
    }
    assert!(want_rejected.values().any(|r| r == "no_account_number"));
    assert_eq!(placed(&h).await, want_placed);
    assert_eq!(rejected(&h).await, want_rejected);
    assert_eq!(
        outcome.report.rejects_by_reason.get("no_account_number"),
        Some(
            &(want_rejected
                .values()
                .filter(|r| *r == "no_account_number")
                .count() as u64)
        )
    );
}

/// A full sync of the default simulated account (no workspaces feature), per endpoint, as
/// measured before workspaces existed (the same seed and size).
/// Measured with the release before workspaces (the same simulator, job and dataset): 231 calls,
/// plus the one `GET /groups` every run makes since `group_name` is in the tickets table, plus
/// a second read of the one conversation list and the one time-entry list that run to a second
/// page (a list of several pages is read until two reads agree: a child removed while it was
/// paged loses a row and nothing repeats to show it), plus one listing page after the listing:
/// the tickets updated since it began (a ticket that entered while pages read ahead of each
/// other were served may have pushed a row past a page already read).
const CALLS_WITHOUT_WORKSPACES: [(&str, u64); 7] = [
    ("agents", 1),
    ("conversations", 113),
    ("departments", 1),
    ("groups", 1),
    ("requesters", 1),
    ("tickets_list", 7),
    ("time_entries", 113),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_without_workspaces_makes_todays_calls_plus_one() {
    let h = harness(1).await;
    let gt = h.sim.ground_truth();
    assert!(gt.workspaces.is_empty());
    let outcome = h.full_sync().await;
    assert!(outcome.error.is_none(), "{:?}", outcome.error);
    let stats = h.sim.stats();
    let workspaces: Vec<_> = stats
        .log
        .iter()
        .filter(|e| e.endpoint == "workspaces")
        .collect();
    assert_eq!(workspaces.len(), 1);
    assert_eq!(workspaces[0].status, 404);
    assert!(
        stats
            .log
            .iter()
            .all(|e| !e.path_and_query.contains("workspace_id")),
        "no listing is scoped"
    );
    let calls = calls_made(&stats);
    eprintln!("calls: {calls:?}, credits: {}", stats.credits_used);
    let mut expected: BTreeMap<&str, u64> = CALLS_WITHOUT_WORKSPACES.into_iter().collect();
    expected.insert("workspaces", 1);
    assert_eq!(calls, expected);
}

/// The endpoints a run called, with their counts.
fn calls_made(stats: &ticketsync::sim::SimStats) -> BTreeMap<&str, u64> {
    stats
        .by_endpoint
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(k, n)| (k.as_str(), *n))
        .collect()
}

/// A key that may not read workspaces (403) on an account with three of them: without the
/// list only the primary workspace could be listed, so the run fails as a configuration
/// problem (exit 3) naming `/workspaces`, writes nothing and leaves the cursor. Before, it
/// warned, listed the primary workspace alone and reported success.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_that_may_not_read_workspaces_fails_the_run() {
    let h = harness(3).await;
    h.sim.faults().push(
        ticketsync::sim::FaultRule::new(ticketsync::sim::FaultAction::Status(403))
            .endpoint("workspaces"),
    );
    let ran = h
        .sync_command(&h.data(), &["--full-sync"])
        .timeout(std::time::Duration::from_secs(120))
        .run()
        .await;
    assert_eq!(ran.code, Some(3), "{}", ran.stderr);
    assert!(ran.stderr.contains("GET /workspaces"), "{}", ran.stderr);
    assert!(ran.stderr.contains("403"), "{}", ran.stderr);
    let stats = h.sim.stats();
    assert_eq!(stats.status_counts.get(&403), Some(&1));
    // No listing of the primary workspace alone: at most the first page asked for before the
    // workspaces answered, never used.
    assert!(
        stats.by_endpoint.get("tickets_list").copied().unwrap_or(0) <= 1,
        "{:?}",
        stats.by_endpoint
    );
    assert!(placed(&h).await.is_empty());
    assert!(
        !h.dir.path().join("_state/cursor.json").exists(),
        "the cursor does not move"
    );
}

/// A nightly run after the full sync lists every workspace again and fetches only what changed,
/// wherever it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incremental_run_reads_every_workspace() {
    let h = harness(3).await;
    let first = h.full_sync().await;
    assert!(first.error.is_none(), "{:?}", first.error);
    let gt = h.sim.ground_truth();
    let elsewhere = gt
        .closed_tickets()
        .filter(|t| t.workspace_id != gt.primary_workspace())
        .find(|t| {
            t.department_id
                .and_then(|d| gt.department(d))
                .is_some_and(|d| d.account_number.as_ref().is_some_and(Value::is_i64))
        })
        .unwrap()
        .id;
    h.sim.touch_ticket(elsewhere);
    let before = h.sim.stats();
    let second = h.incremental().await;
    assert!(second.error.is_none(), "{:?}", second.error);
    let after = h.sim.stats();
    let delta = |k: &str| after.by_endpoint[k] - before.by_endpoint[k];
    assert_eq!(
        second.report.tickets.written, 1,
        "{:?}",
        second.report.tickets
    );
    assert_eq!((delta("conversations"), delta("time_entries")), (1, 1));
    assert!(
        delta("tickets_list") >= 9,
        "3 workspaces × live, deleted, spam"
    );
}

/// A server (or proxy) that ignores `workspace_id` answers every workspace's listing with the
/// primary workspace: the run cannot show it listed the others, so it fails and keeps the cursor
/// instead of exporting one workspace and reporting success.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_ignores_workspace_id_fails_the_run() {
    let h = harness(3).await;
    h.sim.set_quirks(ticketsync::sim::Quirks {
        ignore_workspace: true,
        ..ticketsync::sim::Quirks::default()
    });
    let outcome = h.full_sync().await;
    let error = outcome.error.expect("the run fails").to_string();
    assert!(error.contains("workspace_id ignored"), "{error}");
    assert_eq!(outcome.report.status, RunStatus::Failed);
    assert!(outcome.report.next_cursor.is_none());
}
