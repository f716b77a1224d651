//! A full sync agrees exactly with the simulator's ground truth.

use std::collections::{BTreeMap, BTreeSet};

use arrow::array::{Array, Int64Array, RecordBatch};
use chrono::Datelike;
use object_store::path::Path;
use serde_json::Value;
use ticketsync::report::RunStatus;
use ticketsync::tables::Table;

use crate::support::{column_strings, read_parquet, total_minutes_of, Harness};

/// Every batch of a table with the partition path it came from.
async fn table(h: &Harness, table: Table) -> Vec<(String, RecordBatch)> {
    let mut out = Vec::new();
    for path in crate::support::data_files(&h.storage, table).await {
        let dir = path.as_ref().rsplit_once('/').unwrap().0.to_string();
        for batch in read_parquet(&h.storage, &path).await {
            assert_eq!(
                batch.schema(),
                table.schema(),
                "{path} does not match schemas/{}.json",
                table.name()
            );
            out.push((dir.clone(), batch));
        }
    }
    out
}

fn ids(batch: &RecordBatch, name: &str) -> Vec<i64> {
    let col = batch.column_by_name(name).unwrap();
    let col = col.as_any().downcast_ref::<Int64Array>().unwrap();
    (0..col.len()).map(|i| col.value(i)).collect()
}

/// The expected account of a department, computed here from the raw custom field.
fn expected_account(raw: Option<&Value>) -> Result<String, &'static str> {
    let text = match raw {
        None | Some(Value::Null) => return Err("no_account_number"),
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::String(s)) => s.trim().to_string(),
        Some(_) => return Err("invalid_account_number"),
    };
    if text.is_empty() {
        return Err("no_account_number");
    }
    let ok = text.chars().next().unwrap().is_ascii_alphanumeric()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    if ok {
        Ok(text)
    } else {
        Err("invalid_account_number")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_sync_matches_the_ground_truth() {
    let h = Harness::new(240, 7).await;
    let outcome = h.full_sync().await;
    assert!(outcome.error.is_none(), "{:?}", outcome.error);
    let report = &outcome.report;
    let since = report.window_since.unwrap();
    let gt = h.sim.ground_truth();

    // What should be where, computed from the ground truth alone.
    let mut expect_placed: BTreeMap<i64, (String, i32)> = BTreeMap::new();
    let mut expect_rejected: BTreeMap<i64, &'static str> = BTreeMap::new();
    for t in gt
        .tickets
        .iter()
        .filter(|t| t.status == 5 && !t.deleted && !t.spam && t.updated_at >= since)
    {
        let closed_at = t.closed_at.unwrap_or(t.updated_at);
        let verdict = match t.department_id {
            None => Err("no_department"),
            Some(d) => match gt.departments.iter().find(|x| x.id == d) {
                None => Err("unknown_department"),
                Some(dept) => expected_account(dept.account_number.as_ref()),
            },
        };
        match verdict {
            Ok(account) => {
                expect_placed.insert(t.id, (account, closed_at.year()));
            }
            Err(reason) => {
                expect_rejected.insert(t.id, reason);
            }
        }
    }
    assert!(
        expect_placed.len() > 100,
        "the simulator should give a realistic mix"
    );
    assert!(!expect_rejected.is_empty());
    assert_eq!(report.status, RunStatus::OkWithRejects);
    assert_eq!(report.tickets.written as usize, expect_placed.len());
    assert_eq!(report.tickets.rejected as usize, expect_rejected.len());

    // tickets: each placed ticket exactly once, in its partition, with exact hours.
    let mut seen = BTreeSet::new();
    for (dir, batch) in table(&h, Table::Tickets).await {
        let tids = ids(&batch, "ticket_id");
        let total = ids(&batch, "total_minutes");
        let billable = ids(&batch, "billable_minutes");
        let defaulted = column_strings(&batch, "hours_defaulted");
        for (i, id) in tids.iter().enumerate() {
            assert!(seen.insert(*id), "ticket {id} twice");
            let (account, year) = &expect_placed[id];
            assert_eq!(
                dir,
                format!("tickets/domain=acme/account={account}/year={year}"),
                "ticket {id}"
            );
            let t = gt.ticket(*id).unwrap();
            let all = total_minutes_of(t.time_entries.iter().map(|e| e.time_spent.as_str()));
            let bill = total_minutes_of(
                t.time_entries
                    .iter()
                    .filter(|e| e.billable)
                    .map(|e| e.time_spent.as_str()),
            );
            if t.time_entries.is_empty() {
                assert_eq!(
                    (total[i], billable[i], defaulted[i].as_str()),
                    (15, 15, "true"),
                    "ticket {id}"
                );
            } else {
                assert_eq!(
                    (total[i], billable[i], defaulted[i].as_str()),
                    (all, bill, "false"),
                    "ticket {id}"
                );
            }
        }
    }
    assert_eq!(seen, expect_placed.keys().copied().collect());

    // rejects: each rejected ticket once, with the reason, and none of them in tickets.
    let rejects = table(&h, Table::Rejects).await;
    let mut got_rejects = BTreeMap::new();
    for (_, batch) in &rejects {
        for (id, reason) in ids(batch, "ticket_id")
            .into_iter()
            .zip(column_strings(batch, "reason"))
        {
            assert!(
                got_rejects.insert(id, reason).is_none(),
                "reject {id} twice"
            );
        }
    }
    let expected: BTreeMap<i64, String> = expect_rejected
        .iter()
        .map(|(k, v)| (*k, v.to_string()))
        .collect();
    assert_eq!(got_rejects, expected);

    // conversations and notes: every public one and every private one, nothing else.
    let mut conv = BTreeSet::new();
    for (_, b) in table(&h, Table::Conversations).await {
        conv.extend(
            ids(&b, "ticket_id")
                .into_iter()
                .zip(ids(&b, "conversation_id")),
        );
    }
    let mut notes = BTreeSet::new();
    for (_, b) in table(&h, Table::Notes).await {
        notes.extend(ids(&b, "ticket_id").into_iter().zip(ids(&b, "note_id")));
    }
    let mut entries = BTreeSet::new();
    for (_, b) in table(&h, Table::TimeEntries).await {
        entries.extend(
            ids(&b, "ticket_id")
                .into_iter()
                .zip(ids(&b, "time_entry_id")),
        );
    }
    let (mut want_conv, mut want_notes, mut want_entries) =
        (BTreeSet::new(), BTreeSet::new(), BTreeSet::new());
    for id in expect_placed.keys() {
        let t = gt.ticket(*id).unwrap();
        for c in &t.conversations {
            if c.private {
                want_notes.insert((*id, c.id));
            } else {
                want_conv.insert((*id, c.id));
            }
        }
        want_entries.extend(t.time_entries.iter().map(|e| (*id, e.id)));
    }
    assert_eq!(conv, want_conv);
    assert_eq!(notes, want_notes);
    assert_eq!(entries, want_entries);
    // The generator includes tickets beyond one page of children: all of them arrived.
    assert!(
        expect_placed
            .keys()
            .any(|id| gt.ticket(*id).unwrap().conversations.len() > 100)
            || expect_rejected
                .keys()
                .any(|id| gt.ticket(*id).unwrap().conversations.len() > 100)
    );

    // markdown: one document per placed ticket, at its place.
    let docs: BTreeSet<String> = h
        .storage
        .list(&Path::from("markdown"))
        .await
        .unwrap()
        .iter()
        .map(|p| p.to_string())
        .collect();
    let want_docs: BTreeSet<String> = expect_placed
        .iter()
        .map(|(id, (account, year))| format!("markdown/{account}/{year}/{id}.md"))
        .collect();
    assert_eq!(docs, want_docs);

    // Nothing outside the layout, nothing that looks like a traversal.
    for path in h.storage.list(&Path::from("")).await.unwrap() {
        let p = path.as_ref();
        assert!(!p.split('/').any(|s| s == ".." || s.is_empty()), "{p}");
        let top = p.split('/').next().unwrap();
        assert!(
            [
                "tickets",
                "conversations",
                "notes",
                "time_entries",
                "rejects",
                "markdown",
                "_state",
                "_runs"
            ]
            .contains(&top),
            "{p}"
        );
    }
    assert!(!h.dir.path().parent().unwrap().join("x").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conversations_keep_every_page_and_the_order() {
    let h = Harness::new(120, 11).await;
    h.full_sync().await;
    let gt = h.sim.ground_truth();
    let big = gt
        .tickets
        .iter()
        .filter(|t| t.conversations.len() > 100 || t.time_entries.len() > 100)
        .count();
    assert!(
        big >= 1,
        "the simulator serves tickets with more than 100 children"
    );
    let md_paths = h.storage.list(&Path::from("markdown")).await.unwrap();
    for path in md_paths {
        let id: i64 = path
            .filename()
            .unwrap()
            .trim_end_matches(".md")
            .parse()
            .unwrap();
        let t = gt.ticket(id).unwrap();
        let md = String::from_utf8(h.storage.get(&path).await.unwrap().unwrap().to_vec()).unwrap();
        let public = t.conversations.iter().filter(|c| !c.private).count();
        let private = t.conversations.len() - public;
        assert_eq!(md.matches("\n### Message ").count(), public, "ticket {id}");
        assert_eq!(md.matches("\n### Note ").count(), private, "ticket {id}");
        assert!(md.starts_with(&format!("# Ticket #{id}: ")), "ticket {id}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_on_local_disk_leave_no_staging_directories_behind() {
    let h = Harness::new(120, 31).await;
    let spec = ticketsync::job::JobSpec {
        checkpoint_every: Some(10),
        ..h.full_spec()
    };
    let outcome = h.sync_with(spec, None).await;
    assert!(outcome.error.is_none(), "{:?}", outcome.error);
    assert!(outcome.report.output.parquet_files_written > 0);
    // Before: one `_staging/<run>-<n>/…` tree of empty directories per commit stayed.
    let staging = h.dir.path().join("_staging");
    let left: Vec<_> = std::fs::read_dir(&staging)
        .map(|entries| entries.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "left behind: {left:?}");
}

/// A run whose last tickets trickle in (16 tickets in flight, round trips of 1.5 s, a checkpoint
/// every 20 tickets) commits its tail piece by piece while the rest are fetched: the checkpoints
/// first, then what has arrived, about half of what is left each time (in a debug build a
/// commit takes far longer than in a release one: the long round trips leave it time). Its
/// tables and documents are those of a run that commits once, at its end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tail_committed_piece_by_piece_holds_what_one_commit_holds() {
    use ticketsync::sim::{Plan, SimConfig};
    use ticketsync::state::delta::{At, Lake};
    let h = Harness::with_config(SimConfig {
        tickets: 200,
        seed: 43,
        plan: Plan::Starter,
        minute_secs: 1.0,
        latency_ms: 1500,
        ..SimConfig::default()
    })
    .await;
    let outcome = h
        .sync_with(
            ticketsync::job::JobSpec {
                checkpoint_every: Some(20),
                concurrency: Some(16),
                ..h.full_spec()
            },
            None,
        )
        .await;
    assert!(outcome.error.is_none(), "{:?}", outcome.error);
    assert!(
        outcome.report.tickets.fetched > 50,
        "{:?}",
        outcome.report.tickets
    );
    let lake = Lake::open(&h.storage, At::Latest).await.unwrap();
    // Versions from 0 (the table's creation): the early commit, those of the tail, and the
    // run's end (compaction commits of their own are possible on top).
    let commits = lake.version(Table::Tickets).unwrap() + 1;
    assert!(commits >= 2, "{commits} commits of tickets");

    let once_dir = tempfile::tempdir().unwrap();
    let once = ticketsync::storage::Storage::open(
        once_dir.path().to_str().unwrap(),
        &ticketsync::storage::S3Options::default(),
    )
    .unwrap();
    let spec = ticketsync::job::JobSpec {
        data: Some(once_dir.path().to_str().unwrap().to_string()),
        checkpoint_every: Some(100_000),
        ..h.full_spec()
    };
    let job = ticketsync::job::Job::resolve(spec, None).unwrap();
    let single = ticketsync::pipeline::run(&job, h.source(&job), &once)
        .await
        .unwrap();
    assert!(single.error.is_none(), "{:?}", single.error);
    let single_lake = Lake::open(&once, At::Latest).await.unwrap();
    let single_commits = single_lake.version(Table::Tickets).unwrap() + 1;
    assert!(
        commits > single_commits,
        "{commits} versions, {single_commits} with one commit"
    );
    assert_eq!(
        h.dump().await,
        crate::support::Dump::of(&once).await,
        "the tail was committed {commits} times"
    );
}

/// One customer is one partition whatever the spelling of its account number: `acme` and
/// `ACME` (two directories that collide on a case-insensitive disk) are `ACME`, `700100.0` (a
/// numeric field written as a float) and `700100` are `700100`; `query --account acme` finds
/// them. Before, each spelling was its own partition.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_spelling_of_an_account_number_is_one_partition() {
    let h = crate::support::Harness::new(120, 9).await;
    let gt = h.sim.ground_truth();
    let since = chrono::Utc::now() - chrono::Duration::days(crate::support::FULL_DAYS);
    let mut by_department: BTreeMap<i64, BTreeSet<i64>> = BTreeMap::new();
    for t in gt.closed_tickets().filter(|t| t.updated_at >= since) {
        if let Some(d) = t.department_id {
            by_department.entry(d).or_default().insert(t.id);
        }
    }
    let depts: Vec<i64> = by_department.keys().copied().take(4).collect();
    assert_eq!(depts.len(), 4, "four departments with closed tickets");
    let mut csv = tempfile::NamedTempFile::new().unwrap();
    use std::io::Write;
    writeln!(
        csv,
        "department_id,account_number\n{},acme\n{},ACME\n{},700100.0\n{}, 700100 ",
        depts[0], depts[1], depts[2], depts[3]
    )
    .unwrap();
    let outcome = h
        .sync_with(
            ticketsync::job::JobSpec {
                account_map: Some(csv.path().to_path_buf()),
                ..h.full_spec()
            },
            None,
        )
        .await;
    assert!(outcome.error.is_none(), "{:?}", outcome.error);

    let mut placed: BTreeMap<String, BTreeSet<i64>> = BTreeMap::new();
    for (dir, batch) in table(&h, Table::Tickets).await {
        let account = dir
            .split('/')
            .find_map(|s| s.strip_prefix("account="))
            .unwrap()
            .to_string();
        let col = batch.column_by_name("ticket_id").unwrap();
        let col = col.as_any().downcast_ref::<Int64Array>().unwrap();
        let accounts = column_strings(&batch, "company_account_number");
        for (i, account_column) in accounts.iter().enumerate() {
            assert_eq!(
                account_column, &account,
                "the column is the partition value"
            );
            placed
                .entry(account.clone())
                .or_default()
                .insert(col.value(i));
        }
    }
    let accounts: BTreeSet<&str> = placed.keys().map(String::as_str).collect();
    for spelling in ["acme", "700100.0"] {
        assert!(!accounts.contains(spelling), "{accounts:?}");
    }
    let union = |a: usize, b: usize| -> BTreeSet<i64> {
        by_department[&depts[a]]
            .union(&by_department[&depts[b]])
            .copied()
            .collect()
    };
    assert_eq!(placed["ACME"], union(0, 1));
    assert_eq!(placed["700100"], union(2, 3));

    let out = crate::support::Cmd::new(["query"])
        .data(h.data())
        .args(["--account", "acme", "--format", "json"])
        .run()
        .await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert_eq!(
        out.json().as_array().map(Vec::len),
        Some(placed["ACME"].len()),
        "{}",
        out.stdout
    );
}
