//! Partition pruning: the other partitions are never opened.

use ticketsync::query::output::{self, Format};
use ticketsync::query::{Dataset, TicketQuery};
use ticketsync::storage::S3Options;

use super::{busiest_account, query_cmd, render, synced};
use crate::support::copy_dir;
use ticketsync::tables::Table;

const TABLES: [Table; 4] = [
    Table::Tickets,
    Table::Conversations,
    Table::Notes,
    Table::TimeEntries,
];

/// Overwrites with garbage every active data file of `tables` in the dataset at `dir` whose
/// object path `hit` selects: a query that opens one of them fails. Returns how many.
async fn poison(dir: &std::path::Path, tables: &[Table], hit: impl Fn(&str) -> bool) -> usize {
    let storage = ticketsync::storage::Storage::local(dir).unwrap();
    let mut poisoned = 0;
    for table in tables {
        for path in crate::support::data_files(&storage, *table).await {
            if hit(path.as_ref()) {
                std::fs::write(dir.join(path.as_ref()), b"not parquet").unwrap();
                poisoned += 1;
            }
        }
    }
    poisoned
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_account_and_year_opens_only_its_partition() {
    let s = synced();
    let account = busiest_account(s, 2025);
    let query = TicketQuery {
        account: account.clone(),
        year: Some(2025),
        basis: ticketsync::query::Basis::Closed,
    };
    let docs = s.dataset().tickets(&query).await.unwrap();
    let before = render(|out| output::write_tickets(out, &docs, Format::Ndjson));

    // A copy of the dataset where every other partition file is garbage: opening any of them
    // fails the query, so an unchanged answer proves they were not opened.
    let copy = tempfile::tempdir().unwrap();
    copy_dir(&s.dir, copy.path());
    let mine = format!("account={account}/year=2025/");
    let poisoned = poison(copy.path(), &TABLES, |path| !path.contains(&mine)).await;
    assert!(poisoned > 10, "{poisoned}");
    let dataset = Dataset::open(copy.path().to_str().unwrap(), &S3Options::default()).unwrap();
    let files = dataset.files_read(&query).await.unwrap();
    // Every file of the partition in the three tables the answer reads (tickets, conversations,
    // notes), and nothing else.
    let storage = ticketsync::storage::Storage::local(copy.path()).unwrap();
    let mut of_partition = 0;
    for table in &TABLES[..3] {
        for path in crate::support::data_files(&storage, *table).await {
            if path.as_ref().contains(&mine) {
                of_partition += 1;
            }
        }
    }
    assert!(of_partition >= 3, "{of_partition}");
    assert_eq!(files.len(), of_partition, "{files:?}");
    assert!(files.iter().all(|f| f.contains(&mine)), "{files:?}");
    let docs = dataset.tickets(&query).await.unwrap();
    let after = render(|out| output::write_tickets(out, &docs, Format::Ndjson));
    assert_eq!(after, before);

    // The same through the binary, and the month rollup of that account (a different year's
    // partition of it is poisoned too).
    let account = query_cmd(copy.path().to_str().unwrap()).args(["--account", &account]);
    let year = account
        .clone()
        .args(["--year", "2025", "--basis", "closed"]);
    let tickets = year.clone().args(["--format", "ndjson"]).run().await;
    let rollup = year.args(["--rollup", "month"]).run().await;
    // Control: a query that has to read a poisoned file fails, exit code 2.
    let poisoned_read = account.run().await;
    assert_eq!(tickets.code, Some(0), "{}", tickets.stderr);
    assert_eq!(tickets.stdout, before);
    assert_eq!(rollup.code, Some(0), "{}", rollup.stderr);
    let rows = rollup.json();
    assert_eq!(rows.as_array().unwrap().len(), 12);
    assert_eq!(poisoned_read.code, Some(2));
    assert!(
        poisoned_read
            .stderr
            .contains("error: querying tickets of account"),
        "{}",
        poisoned_read.stderr
    );
}

/// With the default basis (`last_updated_at`, as Codex and Ledger) a year reads the account's
/// partitions of that year and before, never a later one: a ticket last updated in Y closed
/// in Y or earlier. A later year's files, poisoned, are never opened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_year_by_last_update_never_opens_a_later_year() {
    let s = synced();
    let account = busiest_account(s, 2024);
    let copy = tempfile::tempdir().unwrap();
    copy_dir(&s.dir, copy.path());
    let theirs = format!("account={account}/");
    let year_of = |path: &str| -> i32 {
        let rest = path.split("/year=").nth(1).unwrap();
        rest[..4].parse().unwrap()
    };
    let poisoned = poison(copy.path(), &TABLES[..3], |path| {
        path.contains(&theirs) && year_of(path) > 2024
    })
    .await;
    assert!(poisoned > 0);
    let dataset = Dataset::open(copy.path().to_str().unwrap(), &S3Options::default()).unwrap();
    let query = TicketQuery {
        account: account.clone(),
        year: Some(2024),
        basis: ticketsync::query::Basis::Updated,
    };
    let files = dataset.files_read(&query).await.unwrap();
    assert!(
        files
            .iter()
            .all(|f| !f.contains("year=2025") && !f.contains("year=2026")),
        "{files:?}"
    );
    let docs = dataset.tickets(&query).await.unwrap();
    assert!(docs
        .iter()
        .all(|d| d.last_updated_at.format("%Y").to_string() == "2024"));
    assert_eq!(docs, s.dataset().tickets(&query).await.unwrap());
}
