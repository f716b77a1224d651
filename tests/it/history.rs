//! Issue 21, history: with `history_days` the files a commit replaces stay, so `query --as-of`
//! answers as the tables were committed at an instant; without it they go at once (plain
//! Parquet readers see only current files), and an instant they are needed for is a clear
//! error. `forget` removes the replaced files too: erasure wins over history.

use std::collections::BTreeMap;

use chrono::Utc;
use ticketsync::dataset::forget::{self, Request};
use ticketsync::job::JobSpec;
use ticketsync::query::{Basis, Dataset, TicketQuery};
use ticketsync::storage::S3Options;
use ticketsync::tables::Table;

use crate::support::{data_files, Harness};

/// Every stored data file of the partitioned tables (active or not), outside the logs.
async fn stored(h: &Harness) -> usize {
    let mut n = 0;
    for table in Table::ALL {
        n += h
            .storage
            .list(&object_store::path::Path::from(table.name()))
            .await
            .unwrap()
            .iter()
            .filter(|p| p.as_ref().ends_with(".parquet") && !p.as_ref().contains("/_delta_log/"))
            .count();
    }
    n
}

/// A placed ticket of the dataset, its account and year (from the index).
async fn placed_ticket(h: &Harness) -> (i64, String, i32) {
    let index = ticketsync::state::load_index(&h.storage).await.unwrap();
    let found = index
        .iter()
        .find_map(|(id, e)| match &e.location {
            ticketsync::state::Location::Placed { account, year } => {
                Some((*id, account.clone(), *year))
            }
            _ => None,
        })
        .expect("a placed ticket");
    found
}

async fn active(h: &Harness) -> usize {
    let mut n = 0;
    for table in Table::ALL {
        n += data_files(&h.storage, table).await.len();
    }
    n
}

/// `last_updated_at` of every ticket of one account and year, as the dataset answers.
async fn updated(dataset: &Dataset, account: &str, year: i32) -> BTreeMap<i64, String> {
    let query = TicketQuery {
        account: account.to_string(),
        year: Some(year),
        basis: Basis::Closed,
    };
    dataset
        .tickets(&query)
        .await
        .unwrap()
        .into_iter()
        .map(|d| (d.ticket_id, d.last_updated_at.to_rfc3339()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_history_an_instant_reads_the_tables_as_they_were_and_forget_clears_it() {
    let h = Harness::new(60, 21).await;
    let history = |spec: JobSpec| JobSpec {
        history_days: Some(30),
        ..spec
    };
    assert!(h
        .sync_with(history(h.full_spec()), None)
        .await
        .error
        .is_none());
    let (ticket, account, year) = placed_ticket(&h).await;
    let data = h.data();
    let now_dataset = || Dataset::open(&data, &S3Options::default()).unwrap();
    let before = updated(&now_dataset(), &account, year).await;
    assert!(before.contains_key(&ticket));
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let instant = Utc::now();
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;

    h.sim.touch_ticket(ticket);
    let outcome = h.sync_with(history(h.spec()), None).await;
    assert!(outcome.error.is_none(), "{:?}", outcome.error);
    assert_eq!(outcome.report.tickets.written, 1);
    let after = updated(&now_dataset(), &account, year).await;
    assert_ne!(after[&ticket], before[&ticket], "the ticket changed");
    // The replaced files are still stored, next to the current ones.
    assert!(stored(&h).await > active(&h).await);
    // As of the instant between the runs: the tables as the first run left them.
    let then = updated(&now_dataset().as_of(instant), &account, year).await;
    assert_eq!(then, before);

    // Erasure wins over history: the replaced files (which may hold the person) go.
    let report = forget::forget(
        &h.storage,
        &Request {
            email: "nobody-known@example.com".into(),
            name: None,
            dry_run: false,
            lock_ttl: std::time::Duration::from_secs(60),
        },
    )
    .await
    .unwrap()
    .remove(0);
    assert!(report.history_deleted > 0, "{report:?}");
    assert_eq!(stored(&h).await, active(&h).await);
    let err = updated_err(&now_dataset().as_of(instant), &account, year).await;
    assert!(err.contains("no longer stored"), "{err}");
    h.sim.shutdown().await;
}

async fn updated_err(dataset: &Dataset, account: &str, year: i32) -> String {
    let query = TicketQuery {
        account: account.to_string(),
        year: Some(year),
        basis: Basis::Closed,
    };
    dataset.tickets(&query).await.unwrap_err().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_history_replaced_files_go_at_once_and_an_old_instant_says_why_it_cannot_answer() {
    let h = Harness::new(40, 22).await;
    assert!(h.full_sync().await.error.is_none());
    let (ticket, account, year) = placed_ticket(&h).await;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let instant = Utc::now();
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    h.sim.touch_ticket(ticket);
    assert!(h.incremental().await.error.is_none());
    // Only current files are stored: a plain glob sees exactly the Delta tables.
    assert_eq!(stored(&h).await, active(&h).await);
    let dataset = Dataset::open(&h.data(), &S3Options::default()).unwrap();
    let err = updated_err(&dataset.clone().as_of(instant), &account, year).await;
    assert!(err.contains("history_days"), "{err}");
    // The adjustment list reads the files of the instant its own way, and says the same.
    let query = ticketsync::query::RollupQuery {
        account: None,
        year,
        period: ticketsync::query::Period::Month,
        basis: Basis::Closed,
    };
    let err = dataset
        .changes_since(&query, instant)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("history_days"), "{err}");
    h.sim.shutdown().await;
}

/// `--changes-since`: a ticket updated after an invoice moves its hours out of the month it was
/// billed in (Ledger bills by last update); the adjustment list names that month, the hours
/// then and now, and the ticket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_since_an_instant_lists_the_months_whose_hours_moved_and_why() {
    use ticketsync::query::{Period, RollupQuery};
    let h = Harness::new(80, 23).await;
    let spec = |spec: JobSpec| JobSpec {
        history_days: Some(30),
        ..spec
    };
    assert!(h.sync_with(spec(h.full_spec()), None).await.error.is_none());
    let dataset = Dataset::open(&h.data(), &S3Options::default()).unwrap();
    let this_month = Utc::now().format("%Y-%m").to_string();
    let mut picked = None;
    for year in [2026, 2025] {
        let query = RollupQuery {
            account: None,
            year,
            period: Period::Month,
            basis: Basis::Updated,
        };
        let tickets = dataset.explain(&query).await.unwrap();
        if let Some(t) = tickets
            .iter()
            .find(|t| t.minutes > 0 && t.period != this_month)
        {
            picked = Some((query, t.clone()));
            break;
        }
    }
    let (query, ticket) = picked.expect("a billed ticket of an earlier month");
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let invoiced = Utc::now();
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    h.sim.touch_ticket(ticket.ticket_id);
    assert!(h.sync_with(spec(h.spec()), None).await.error.is_none());

    let changes = dataset.changes_since(&query, invoiced).await.unwrap();
    let month = changes
        .iter()
        .find(|c| c.account == ticket.account && c.period == ticket.period)
        .unwrap_or_else(|| panic!("{changes:?}"));
    assert_eq!(month.tickets, vec![ticket.ticket_id]);
    assert_eq!(month.minutes_then - month.minutes_now, ticket.minutes);
    assert_eq!(month.domain, "acme");
    // Only the accounts whose rows changed were read: reading every account at both instants
    // gives the same list.
    let sums = |tickets: &[ticketsync::query::ExplainedTicket]| {
        let mut out: BTreeMap<(String, String), i64> = BTreeMap::new();
        for t in tickets {
            *out.entry((t.account.clone(), t.period.clone()))
                .or_default() += t.minutes;
        }
        out
    };
    let then = sums(
        &dataset
            .clone()
            .as_of(invoiced)
            .explain(&query)
            .await
            .unwrap(),
    );
    let now = sums(&dataset.explain(&query).await.unwrap());
    let keys: std::collections::BTreeSet<_> = then.keys().chain(now.keys()).cloned().collect();
    let every_account: Vec<(String, String, i64, i64)> = keys
        .into_iter()
        .map(|k| {
            let (a, b) = (then.get(&k).copied(), now.get(&k).copied());
            (k.0, k.1, a.unwrap_or(0), b.unwrap_or(0))
        })
        .filter(|(_, _, a, b)| a != b)
        .collect();
    let listed: Vec<(String, String, i64, i64)> = changes
        .iter()
        .map(|c| {
            (
                c.account.clone(),
                c.period.clone(),
                c.minutes_then,
                c.minutes_now,
            )
        })
        .collect();
    assert_eq!(listed, every_account);

    // The same through the binary, as JSON.
    let out = crate::support::Cmd::new(["query"])
        .data(h.data())
        .args([
            "--year",
            &query.year.to_string(),
            "--rollup",
            "month",
            "--changes-since",
            &invoiced.to_rfc3339(),
            "--format",
            "json",
        ])
        .run()
        .await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let rows = out.json();
    let row = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["account"] == ticket.account.as_str() && r["month"] == ticket.period.as_str())
        .unwrap_or_else(|| panic!("{rows}"));
    assert_eq!(row["tickets"], serde_json::json!([ticket.ticket_id]));
    assert_eq!(row["domain"], "acme");
    assert!(row["hours_then"].as_f64().unwrap() > row["hours_now"].as_f64().unwrap());
    h.sim.shutdown().await;
}
