//! `query` over what a sync wrote: the Codex JSON shape, rollups that agree to the minute with
//! the time entries, partition pruning, and the binary's formats and exit codes. This module
//! holds what the concerns share: the seed's Codex example, one dataset synced from the
//! simulator with its ground truth, and the binary's `query` command line.

mod codex;
mod exit_codes;
mod ledger;
mod pruning;
mod rollup;
mod s3;
mod tickets;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::OnceLock;

use chrono::{DateTime, Datelike, Utc};
use serde_json::Value;
use ticketsync::job::JobSpec;
use ticketsync::normalize::accounts::is_valid_account;
use ticketsync::query::Dataset;
use ticketsync::sim::{GroundTruth, Plan, SimConfig};
use ticketsync::storage::S3Options;

use crate::support::{copy_dir, total_minutes_of, Cmd, Harness};

fn at(text: &str) -> DateTime<Utc> {
    text.parse().unwrap()
}

/// The binary with `args`, logging warnings only.
fn ticketsync<S: AsRef<str>>(args: impl IntoIterator<Item = S>) -> Cmd {
    Cmd::new(args).log("warn")
}

/// `query --data <data>` (more arguments follow), logging warnings only.
fn query_cmd(data: &str) -> Cmd {
    ticketsync(["query"]).data(data)
}

/// Checks `actual` against the golden file `tests/it/golden/query/<name>`.
fn golden(name: &str, actual: &str) {
    crate::support::golden::check(format!("tests/it/golden/query/{name}"), actual);
}

fn render(f: impl FnOnce(&mut Vec<u8>) -> std::io::Result<()>) -> String {
    let mut out = Vec::new();
    f(&mut out).unwrap();
    String::from_utf8(out).unwrap()
}

/// The Codex API's example from the seed document (its `[...]` filled with the seed's
/// conversation and note examples).
fn codex_example() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/it/fixtures/codex_tickets.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object().unwrap().keys().cloned().collect()
}

// ---------------------------------------------------------------------------------------------
// A dataset synced from the simulator, and the simulator's ground truth.

/// One synced dataset shared by the tests of these modules (a sync takes a few seconds).
struct Synced {
    /// Under the target directory's tmp: a static is never dropped, so a temp dir would leak.
    dir: PathBuf,
    truth: GroundTruth,
}

impl Synced {
    fn data(&self) -> String {
        self.dir.to_str().unwrap().to_string()
    }

    fn dataset(&self) -> Dataset {
        Dataset::open(&self.data(), &S3Options::default()).unwrap()
    }
}

/// The simulator's data ends on this day, so the dataset (and the goldens) never change.
const SIM_NOW: &str = "2025-06-01T12:00:00Z";

fn synced() -> &'static Synced {
    static SYNCED: OnceLock<Synced> = OnceLock::new();
    // A thread and runtime of its own: the callers run inside their tests' runtimes.
    SYNCED.get_or_init(|| {
        std::thread::spawn(sync_shared_dataset)
            .join()
            .expect("the shared dataset syncs")
    })
}

fn sync_shared_dataset() -> Synced {
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    // Datasets of earlier runs (one per test process) that are more than an hour old.
    for entry in std::fs::read_dir(&tmp).into_iter().flatten().flatten() {
        let stale = entry
            .file_name()
            .to_string_lossy()
            .starts_with("query-dataset-")
            && entry
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t.elapsed().unwrap_or_default().as_secs() > 3600);
        if stale {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
    let dir = tmp.join(format!("query-dataset-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let h = Harness::with_config(SimConfig {
            seed: 7,
            tickets: 240,
            plan: Plan::Enterprise,
            minute_secs: 1.0,
            now: at(SIM_NOW),
            ..SimConfig::default()
        })
        .await;
        let spec = JobSpec {
            since: Some(at("2024-01-01T00:00:00Z")),
            ..h.spec()
        };
        let outcome = h.sync_with(spec, None).await;
        assert!(outcome.error.is_none(), "{:?}", outcome.error);
        let truth = h.sim.ground_truth();
        copy_dir(h.dir.path(), &dir);
        h.sim.shutdown().await;
        Synced { dir, truth }
    })
}

/// Where each closed ticket should be, from the ground truth alone: id → (account, closed_at).
fn placed(truth: &GroundTruth) -> BTreeMap<i64, (String, DateTime<Utc>)> {
    let mut out = BTreeMap::new();
    for t in truth
        .tickets
        .iter()
        .filter(|t| t.status == 5 && !t.deleted && !t.spam)
    {
        let Some(dept) = t
            .department_id
            .and_then(|d| truth.departments.iter().find(|x| x.id == d))
        else {
            continue;
        };
        let account = match &dept.account_number {
            Some(Value::Number(n)) => n.to_string(),
            Some(Value::String(s)) => s.trim().to_string(),
            _ => continue,
        };
        if is_valid_account(&account) {
            out.insert(t.id, (account, t.closed_at.unwrap_or(t.updated_at)));
        }
    }
    out
}

/// Minutes (total, billable) of a ticket from its time entries; 15 each without any.
fn ticket_minutes(t: &ticketsync::sim::Ticket) -> (i64, i64) {
    if t.time_entries.is_empty() {
        return (15, 15);
    }
    let total = total_minutes_of(t.time_entries.iter().map(|e| e.time_spent.as_str()));
    let billable = total_minutes_of(
        t.time_entries
            .iter()
            .filter(|e| e.billable)
            .map(|e| e.time_spent.as_str()),
    );
    (total, billable)
}

/// The account with the most tickets closed in `year` (the smallest such account number).
fn busiest_account(s: &Synced, year: i32) -> String {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for (account, closed_at) in placed(&s.truth).values() {
        if closed_at.year() == year {
            *counts.entry(account.clone()).or_default() += 1;
        }
    }
    let max = counts.values().copied().max().unwrap();
    counts.into_iter().find(|(_, n)| *n == max).unwrap().0
}
