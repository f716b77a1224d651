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
    let year = account.clone().args(["--year", "2025"]);
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
