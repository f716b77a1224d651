//! Partition pruning: the other partitions are never opened.

use ticketsync::query::output::{self, Format};
use ticketsync::query::{Dataset, TicketQuery};
use ticketsync::storage::S3Options;

use super::{busiest_account, query_cmd, render, synced};
use crate::support::copy_dir;

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
    let mut poisoned = 0;
    for table in ["tickets", "conversations", "notes", "time_entries"] {
        let root = copy.path().join(table);
        for acct in std::fs::read_dir(&root).unwrap() {
            for year in std::fs::read_dir(acct.unwrap().path()).unwrap() {
                let file = year.unwrap().path().join("part-0.parquet");
                let relative = file
                    .strip_prefix(&root)
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .to_string();
                if !relative.starts_with(&mine) && file.exists() {
                    std::fs::write(&file, b"not parquet").unwrap();
                    poisoned += 1;
                }
            }
        }
    }
    assert!(poisoned > 10, "{poisoned}");
    let dataset = Dataset::open(copy.path().to_str().unwrap(), &S3Options::default()).unwrap();
    let files = dataset.files_read(&query).await.unwrap();
    assert_eq!(files.len(), 3, "{files:?}");
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
    let mut poisoned = 0;
    for table in ["tickets", "conversations", "notes"] {
        let dir = copy.path().join(table).join(format!("account={account}"));
        for year in std::fs::read_dir(&dir).unwrap() {
            let year = year.unwrap().path();
            let name = year.file_name().unwrap().to_str().unwrap().to_string();
            let y: i32 = name.trim_start_matches("year=").parse().unwrap();
            if y > 2024 {
                std::fs::write(year.join("part-0.parquet"), b"not parquet").unwrap();
                poisoned += 1;
            }
        }
    }
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
