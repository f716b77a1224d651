//! `query` over what a sync wrote: the Codex JSON shape, rollups that agree to the minute with
//! the time entries, partition pruning, and the binary's formats and exit codes.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::PathBuf;
use std::sync::OnceLock;

use chrono::{DateTime, Datelike, Utc};
use serde_json::Value;
use ticketsync::job::JobSpec;
use ticketsync::normalize::accounts::is_valid_account;
use ticketsync::normalize::{ConversationRow, NoteRow, Placed, TicketRow};
use ticketsync::query::output::{self, Format};
use ticketsync::query::{Basis, Dataset, Period, RollupQuery, RollupRow, TicketDoc, TicketQuery};
use ticketsync::sim::{GroundTruth, Plan, SimConfig};
use ticketsync::sink::{self, Changeset};
use ticketsync::state::Index;
use ticketsync::storage::{S3Options, Storage};

use crate::support::s3::{Logged, S3Server, SECRET_KEY};
use crate::support::{copy_dir, golden, minutes_of, Cmd, Harness};

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

/// The golden file `tests/it/golden/query/<name>`.
fn golden_path(name: &str) -> String {
    format!("tests/it/golden/query/{name}")
}

fn render(f: impl FnOnce(&mut Vec<u8>) -> std::io::Result<()>) -> String {
    let mut out = Vec::new();
    f(&mut out).unwrap();
    String::from_utf8(out).unwrap()
}

// ---------------------------------------------------------------------------------------------
// The seed's example: the Codex API's ticket, written by the sink, read back in its shape.

/// The Codex API's example from the seed document (its `[...]` filled with the seed's
/// conversation and note examples).
fn codex_example() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/it/fixtures/codex_tickets.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The same ticket as our rows: 90 minutes, 60 of them billable.
fn seed_ticket() -> Placed {
    let closed_at = at("2025-01-15T16:30:00Z");
    Placed {
        account: "482913".into(),
        year: 2025,
        ticket: TicketRow {
            ticket_id: 17531,
            company_account_number: "482913".into(),
            ticket_number: "17531".into(),
            subject: Some("Email not working".into()),
            description: Some("<div>Can't send emails...</div>".into()),
            description_text: Some("Can't send emails...".into()),
            status: "Closed".into(),
            priority: Some("High".into()),
            requester_email: Some("user@company.com".into()),
            requester_name: Some("John Doe".into()),
            created_at: Some(at("2025-01-10T09:00:00Z")),
            last_updated_at: closed_at,
            closed_at,
            total_hours_spent: 1.5,
            billable_hours: 1.0,
            total_minutes: 90,
            billable_minutes: 60,
            hours_defaulted: false,
            department_id: 9,
            requester_id: Some(789),
            responder_id: Some(456),
            group_id: None,
            ticket_type: Some("Incident".into()),
            source: Some(1),
            conversation_count: 1,
            note_count: 1,
            time_entry_count: 0,
            synced_at: at("2025-01-16T02:00:00Z"),
            details: Default::default(),
        },
        conversations: vec![ConversationRow {
            ticket_id: 17531,
            conversation_id: 12345,
            body: "Plain text message".into(),
            body_html: Some("<p>HTML formatted message</p>".into()),
            from_email: Some("customer@example.com".into()),
            to_emails: vec!["support@integotec.com".into()],
            created_at: Some(at("2025-01-15T10:30:00Z")),
            updated_at: Some(at("2025-01-15T10:30:00Z")),
            incoming: true,
            private: false,
            user_id: Some(789),
            support_email: Some("support@integotec.com".into()),
            attachments: None,
        }],
        notes: vec![NoteRow {
            ticket_id: 17531,
            note_id: 12346,
            body: "Internal note text".into(),
            body_html: Some("<p>Internal note text</p>".into()),
            from_email: Some("tech@integotec.com".into()),
            created_at: Some(at("2025-01-15T11:00:00Z")),
            user_id: Some(456),
        }],
        time_entries: Vec::new(),
        markdown: "# Ticket #17531: Email not working\n".into(),
        time_entries_fingerprint: 0,
        privacy: Default::default(),
    }
}

async fn seed_dataset() -> (tempfile::TempDir, Dataset) {
    let dir = tempfile::tempdir().unwrap();
    let storage = Storage::local(dir.path()).unwrap();
    let changeset = Changeset {
        placed: vec![seed_ticket()],
        ..Changeset::default()
    };
    sink::commit(&storage, &mut Index::default(), changeset, "seed")
        .await
        .unwrap();
    let dataset = Dataset::open(dir.path().to_str().unwrap(), &S3Options::default()).unwrap();
    (dir, dataset)
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object().unwrap().keys().cloned().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_ticket_comes_back_in_the_codex_shape() {
    let (_dir, dataset) = seed_dataset().await;
    let docs = dataset
        .tickets(&TicketQuery {
            account: "482913".into(),
            year: Some(2025),
        })
        .await
        .unwrap();
    let json = render(|out| output::write_tickets(out, &docs, Format::Json));
    let mut got: Value = serde_json::from_str(&json).unwrap();
    let example = codex_example();

    // Exactly the example's keys, at every level, plus billable_hours on the ticket.
    let (ticket, want) = (&got[0], &example[0]);
    let mut want_keys = keys(want);
    want_keys.insert("billable_hours".into());
    assert_eq!(keys(ticket), want_keys);
    assert_eq!(
        keys(&ticket["conversations"][0]),
        keys(&want["conversations"][0])
    );
    assert_eq!(keys(&ticket["notes"][0]), keys(&want["notes"][0]));
    assert_eq!(ticket["billable_hours"], 1.0);

    // And the example's values.
    got[0].as_object_mut().unwrap().remove("billable_hours");
    assert_eq!(got, example);

    golden::check(golden_path("seed_ticket.json"), &json);
    golden::check(
        golden_path("seed_ticket.ndjson"),
        &render(|out| output::write_tickets(out, &docs, Format::Ndjson)),
    );
    golden::check(
        golden_path("seed_ticket.csv"),
        &render(|out| output::write_tickets(out, &docs, Format::Csv)),
    );
    golden::check(
        golden_path("seed_ticket.txt"),
        &render(|out| output::write_tickets(out, &docs, Format::Table)),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_prints_the_codex_shape_and_csv_with_a_header() {
    let (dir, _dataset) = seed_dataset().await;
    let data = dir.path().to_str().unwrap();
    let account = query_cmd(data).args(["--account", "482913"]);
    let json = account.clone().args(["--year", "2025"]).run().await;
    let csv = account.args(["--format", "csv"]).run().await;
    assert_eq!(json.code, Some(0), "{}", json.stderr);
    // Not a terminal: JSON by default.
    golden::check(golden_path("seed_ticket.json"), &json.stdout);
    assert_eq!(csv.code, Some(0), "{}", csv.stderr);
    let csv = csv.stdout;
    assert!(csv.starts_with("ticket_id,ticket_number,subject,"), "{csv}");
    assert_eq!(csv.lines().count(), 2, "{csv}");
}

// ---------------------------------------------------------------------------------------------
// A dataset synced from the simulator, and the simulator's ground truth.

/// One synced dataset shared by the tests below (a sync takes a few seconds).
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
    let total = t
        .time_entries
        .iter()
        .map(|e| minutes_of(&e.time_spent))
        .sum();
    let billable = t
        .time_entries
        .iter()
        .filter(|e| e.billable)
        .map(|e| minutes_of(&e.time_spent))
        .sum();
    (total, billable)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_partition_holds_the_ground_truth_tickets_in_order() {
    let s = synced();
    let dataset = s.dataset();
    let placed = placed(&s.truth);
    // (account, year) → [(closed_at, ticket_id)]
    type Partitions = BTreeMap<(String, i32), Vec<(DateTime<Utc>, i64)>>;
    let mut partitions = Partitions::new();
    for (id, (account, closed_at)) in &placed {
        partitions
            .entry((account.clone(), closed_at.year()))
            .or_default()
            .push((*closed_at, *id));
    }
    assert!(partitions.len() >= 4, "{:?}", partitions.keys());
    assert!(
        partitions.keys().any(|(_, y)| *y == 2024) && partitions.keys().any(|(_, y)| *y == 2025)
    );
    let example = codex_example();
    for ((account, year), mut want) in partitions {
        want.sort();
        let docs = dataset
            .tickets(&TicketQuery {
                account: account.clone(),
                year: Some(year),
            })
            .await
            .unwrap();
        let ids: Vec<i64> = docs.iter().map(|d| d.ticket_id).collect();
        let want_ids: Vec<i64> = want.iter().map(|(_, id)| *id).collect();
        assert_eq!(ids, want_ids, "account {account} year {year}");
        for doc in &docs {
            check_ticket(doc, &s.truth, &example);
        }
    }
}

fn check_ticket(doc: &TicketDoc, truth: &GroundTruth, example: &Value) {
    let t = truth.ticket(doc.ticket_id).unwrap();
    let id = t.id;
    assert_eq!(
        doc.subject.as_deref(),
        Some(t.subject.as_str()),
        "ticket {id}"
    );
    assert_eq!(
        doc.closed_at,
        t.closed_at.unwrap_or(t.updated_at),
        "ticket {id}"
    );
    let mut public: Vec<_> = t.conversations.iter().filter(|c| !c.private).collect();
    let mut private: Vec<_> = t.conversations.iter().filter(|c| c.private).collect();
    public.sort_by_key(|c| (c.created_at, c.id));
    private.sort_by_key(|c| (c.created_at, c.id));
    let ids = |v: &[&ticketsync::sim::Conversation]| v.iter().map(|c| c.id).collect::<Vec<_>>();
    assert_eq!(
        doc.conversations.iter().map(|c| c.id).collect::<Vec<_>>(),
        ids(&public),
        "ticket {id}"
    );
    assert_eq!(
        doc.notes.iter().map(|n| n.id).collect::<Vec<_>>(),
        ids(&private),
        "ticket {id}"
    );
    for (c, want) in doc.conversations.iter().zip(&public) {
        assert_eq!(c.to_emails, want.to_emails, "ticket {id}");
        assert_eq!(c.incoming, want.incoming, "ticket {id}");
        assert_eq!(c.created_at, Some(want.created_at), "ticket {id}");
        assert!(!c.private);
    }
    assert!(doc.notes.iter().all(|n| n.private));
    let (total, billable) = ticket_minutes(t);
    assert_eq!(
        (doc.total_hours_spent * 60.0).round() as i64,
        total,
        "ticket {id}"
    );
    assert_eq!(
        (doc.billable_hours * 60.0).round() as i64,
        billable,
        "ticket {id}"
    );

    // The Codex keys at every level.
    let json = serde_json::to_value(doc).unwrap();
    let mut want_keys = keys(&example[0]);
    want_keys.insert("billable_hours".into());
    assert_eq!(keys(&json), want_keys);
    for c in json["conversations"].as_array().unwrap() {
        assert_eq!(keys(c), keys(&example[0]["conversations"][0]));
    }
    for n in json["notes"].as_array().unwrap() {
        assert_eq!(keys(n), keys(&example[0]["notes"][0]));
    }
}

/// The rollup computed here from the ground truth's time entries alone.
fn expected_rollup(truth: &GroundTruth, query: &RollupQuery) -> Vec<RollupRow> {
    type Cell = (BTreeSet<i64>, i64, i64);
    let mut cells: BTreeMap<(String, Option<u32>), Cell> = BTreeMap::new();
    let period = |t: DateTime<Utc>| match query.period {
        Period::Month => Some(t.month()),
        Period::Year => None,
    };
    let mut add = |account: &str, when: DateTime<Utc>, id: i64, minutes: i64, billable: i64| {
        if when.year() != query.year || query.account.as_deref().is_some_and(|a| a != account) {
            return;
        }
        let cell = cells
            .entry((account.to_string(), period(when)))
            .or_default();
        cell.0.insert(id);
        cell.1 += minutes;
        cell.2 += billable;
    };
    for (id, (account, closed_at)) in placed(truth) {
        let t = truth.ticket(id).unwrap();
        match query.basis {
            Basis::Closed => {
                let (total, billable) = ticket_minutes(t);
                add(&account, closed_at, id, total, billable);
            }
            Basis::Worked if t.time_entries.is_empty() => add(&account, closed_at, id, 15, 15),
            Basis::Worked => {
                for e in &t.time_entries {
                    let minutes = minutes_of(&e.time_spent);
                    let billable = if e.billable { minutes } else { 0 };
                    add(&account, e.executed_at, id, minutes, billable);
                }
            }
        }
    }
    let accounts: BTreeSet<String> = cells.keys().map(|(a, _)| a.clone()).collect();
    let mut rows = Vec::new();
    for account in accounts {
        let months: Vec<Option<u32>> = match query.period {
            Period::Month => (1..=12).map(Some).collect(),
            Period::Year => vec![None],
        };
        for month in months {
            let (ids, minutes, billable) =
                cells.remove(&(account.clone(), month)).unwrap_or_default();
            rows.push(RollupRow {
                account: account.clone(),
                year: query.year,
                month,
                tickets: ids.len() as u64,
                minutes,
                billable_minutes: billable,
            });
        }
    }
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollups_agree_to_the_minute_with_the_time_entries() {
    let s = synced();
    let dataset = s.dataset();
    let some_account = placed(&s.truth).values().next().unwrap().0.clone();
    let mut crossing = 0;
    for year in [2024, 2025] {
        for basis in [Basis::Closed, Basis::Worked] {
            for period in [Period::Month, Period::Year] {
                for account in [None, Some(some_account.clone())] {
                    let query = RollupQuery {
                        account,
                        year,
                        period,
                        basis,
                    };
                    let want = expected_rollup(&s.truth, &query);
                    assert!(!want.is_empty(), "{query:?}");
                    let got = dataset.rollup(&query).await.unwrap();
                    assert_eq!(got, want, "{query:?}");
                }
            }
        }
        let by = |basis| RollupQuery {
            account: None,
            year,
            period: Period::Month,
            basis,
        };
        if dataset.rollup(&by(Basis::Closed)).await.unwrap()
            != dataset.rollup(&by(Basis::Worked)).await.unwrap()
        {
            crossing += 1;
        }
    }
    assert_eq!(
        crossing, 2,
        "the simulator has work done before the close month"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_rolls_up_to_the_minute_in_csv() {
    let s = synced();
    let out = query_cmd(&s.data())
        .args(["--year", "2025", "--rollup", "month", "--basis", "worked"])
        .args(["--format", "csv"])
        .run()
        .await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let csv = out.stdout;
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("account,period,tickets,hours,billable_hours,non_billable_hours")
    );
    let want = expected_rollup(
        &s.truth,
        &RollupQuery {
            account: None,
            year: 2025,
            period: Period::Month,
            basis: Basis::Worked,
        },
    );
    let got: Vec<String> = lines
        .map(|line| {
            let f: Vec<&str> = line.split(',').collect();
            let minutes = |h: &str| (h.parse::<f64>().unwrap() * 60.0).round() as i64;
            assert_eq!(f[3].split('.').nth(1).map(str::len), Some(2), "{line}");
            format!(
                "{} {} {} {} {}",
                f[0],
                f[1],
                f[2],
                minutes(f[3]),
                minutes(f[4])
            )
        })
        .collect();
    let want: Vec<String> = want
        .iter()
        .map(|r| {
            format!(
                "{} {} {} {} {}",
                r.account,
                r.period(),
                r.tickets,
                r.minutes,
                r.billable_minutes
            )
        })
        .collect();
    assert_eq!(got, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollup_and_ticket_tables_match_their_goldens() {
    let s = synced();
    let dataset = s.dataset();
    let month = dataset
        .rollup(&RollupQuery {
            account: None,
            year: 2025,
            period: Period::Month,
            basis: Basis::Closed,
        })
        .await
        .unwrap();
    golden::check(
        golden_path("rollup_month_2025.txt"),
        &render(|out| output::write_rollup(out, &month, Format::Table)),
    );
    let year = dataset
        .rollup(&RollupQuery {
            account: None,
            year: 2024,
            period: Period::Year,
            basis: Basis::Worked,
        })
        .await
        .unwrap();
    golden::check(
        golden_path("rollup_year_2024_worked.csv"),
        &render(|out| output::write_rollup(out, &year, Format::Csv)),
    );
    golden::check(
        golden_path("rollup_year_2024_worked.json"),
        &render(|out| output::write_rollup(out, &year, Format::Json)),
    );
    let account = busiest_account(s, 2025);
    let docs = dataset
        .tickets(&TicketQuery {
            account,
            year: Some(2025),
        })
        .await
        .unwrap();
    golden::check(
        golden_path("tickets_busiest_2025.txt"),
        &render(|out| output::write_tickets(out, &docs, Format::Table)),
    );
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

// ---------------------------------------------------------------------------------------------
// Partition pruning: the other partitions are never opened.

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

// ---------------------------------------------------------------------------------------------
// Exit codes.

#[test]
fn a_missing_or_empty_dataset_fails_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope");
    let out = query_cmd(missing.to_str().unwrap())
        .args(["--account", "1"])
        .run_blocking();
    assert_eq!(out.code, Some(2));
    assert!(out.stderr.contains("no dataset at"), "{}", out.stderr);
    assert!(!missing.exists(), "query must not create the directory");

    let out = query_cmd(dir.path().to_str().unwrap())
        .args(["--year", "2025", "--rollup", "year"])
        .run_blocking();
    assert_eq!(out.code, Some(2));
    assert!(
        out.stderr.contains("no tickets in the dataset"),
        "{}",
        out.stderr
    );
}

#[test]
fn no_match_is_an_empty_result_and_exit_0() {
    let s = synced();
    let data = s.data();
    for (args, expected) in [
        (vec!["--account", "no-such-account"], "[]\n"),
        (
            vec!["--account", "no-such-account", "--format", "ndjson"],
            "",
        ),
        (
            vec!["--year", "1999", "--rollup", "month", "--format", "csv"],
            "account,period,tickets,hours,billable_hours,non_billable_hours\n",
        ),
    ] {
        let out = query_cmd(&data).args(&args).run_blocking();
        assert_eq!(out.code, Some(0), "{args:?}: {}", out.stderr);
        assert_eq!(out.stdout, expected, "{args:?}");
    }
}

#[test]
fn a_bad_command_line_is_exit_3() {
    for args in [
        vec!["query", "--data", "x", "--year", "2025"],
        vec!["query", "--data", "x", "--rollup", "month"],
        vec![
            "query",
            "--data",
            "x",
            "--account",
            "../etc",
            "--year",
            "2025",
        ],
        vec![
            "query",
            "--data",
            "x",
            "--account",
            "1",
            "--basis",
            "worked",
        ],
        vec!["query", "--account", "1"],
        vec!["query", "--data", "gs://bucket/x", "--account", "1"],
    ] {
        let out = ticketsync(&args).run_blocking();
        assert_eq!(out.code, Some(3), "{args:?}: {}", out.stderr);
    }
    let help = ticketsync(["query", "--help"]).run_blocking().stdout;
    for needle in ["--rollup", "--basis", "--format", "Codex", "Exit codes"] {
        assert!(
            help.contains(needle),
            "query --help lacks {needle}:\n{help}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_pipe_is_exit_0() {
    let s = synced();
    let dataset = s.dataset();
    // The account with the most output, which must be well over a pipe's 64 KiB buffer.
    let mut largest = (0, String::new());
    for account in placed(&s.truth)
        .values()
        .map(|(a, _)| a.clone())
        .collect::<BTreeSet<_>>()
    {
        let query = TicketQuery {
            account: account.clone(),
            year: None,
        };
        let docs = dataset.tickets(&query).await.unwrap();
        let size = render(|out| output::write_tickets(out, &docs, Format::Json)).len();
        largest = largest.max((size, account));
    }
    let (size, account) = largest;
    assert!(size > 96 * 1024, "{size} bytes");
    let cmd = query_cmd(&s.data()).args(["--account", &account, "--format", "json"]);
    let out = tokio::task::spawn_blocking(move || {
        let mut child = cmd.command().spawn().unwrap();
        let mut stdout = child.stdout.take().unwrap();
        let mut first = [0u8; 20];
        stdout.read_exact(&mut first).unwrap();
        assert_eq!(&first, b"[\n  {\n    \"ticket_id");
        // Like `| head -c 20`: the reader goes away long before the output ends.
        drop(stdout);
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("error"), "{stderr}");
}

// ---------------------------------------------------------------------------------------------
// S3: the same files on a real S3 protocol server give the same answers, byte for byte, and a
// one-account-year query reads only that partition's objects.

/// Puts every file under `dir` into `storage` at the same relative key.
async fn upload(dir: &std::path::Path, storage: &Storage) -> usize {
    let mut pending = vec![dir.to_path_buf()];
    let mut files = 0;
    while let Some(at) = pending.pop() {
        for entry in std::fs::read_dir(&at).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
                continue;
            }
            let key = path
                .strip_prefix(dir)
                .unwrap()
                .to_str()
                .unwrap()
                .to_string();
            let bytes = std::fs::read(&path).unwrap();
            storage
                .put(&object_store::path::Path::from(key), bytes.into())
                .await
                .unwrap();
            files += 1;
        }
    }
    files
}

/// The paths (percent-decoded) of object reads (not listings) under `prefix`.
fn object_reads(requests: &[Logged], prefix: &str) -> Vec<String> {
    requests
        .iter()
        .filter(|r| r.method == "GET" || r.method == "HEAD")
        .filter(|r| !r.query.contains("list-type"))
        .map(|r| r.path.replace("%3D", "=").replace("%3d", "="))
        .filter(|path| path.contains(prefix))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_data_gives_the_local_answers_and_the_goldens() {
    let s = synced();
    let server = S3Server::start().await;
    let prefix = "exports/query";
    let uploaded = upload(&s.dir, &server.storage(prefix)).await;
    assert!(uploaded > 10, "{uploaded} files");
    let s3_data = server.url(prefix);
    let local_data = s.data();
    let account = busiest_account(s, 2025);

    let cases: Vec<(Vec<&str>, Option<&str>)> = vec![
        (
            vec!["--account", &account, "--year", "2025", "--format", "table"],
            Some("tickets_busiest_2025.txt"),
        ),
        (
            vec!["--year", "2025", "--rollup", "month", "--format", "table"],
            Some("rollup_month_2025.txt"),
        ),
        (
            vec![
                "--year", "2024", "--rollup", "year", "--basis", "worked", "--format", "csv",
            ],
            Some("rollup_year_2024_worked.csv"),
        ),
        (
            vec![
                "--year", "2024", "--rollup", "year", "--basis", "worked", "--format", "json",
            ],
            Some("rollup_year_2024_worked.json"),
        ),
        (vec!["--account", &account, "--format", "json"], None),
        (
            vec![
                "--account",
                &account,
                "--rollup",
                "month",
                "--year",
                "2025",
                "--basis",
                "worked",
                "--format",
                "ndjson",
            ],
            None,
        ),
        (
            vec!["--account", "no-such-account", "--format", "json"],
            None,
        ),
    ];
    for (args, golden_file) in cases {
        let on = |data: &str| Cmd::new(["query"]).data(data).args(&args);
        let from_s3 = on(&s3_data).s3(&server).run().await;
        let from_disk = on(&local_data).run().await;
        assert_eq!(from_s3.code, Some(0), "{args:?} on S3: {}", from_s3.stderr);
        assert_eq!(from_disk.code, Some(0), "{args:?} on disk");
        assert!(!from_s3.stdout.is_empty(), "{args:?} printed nothing");
        assert_eq!(
            from_s3.stdout, from_disk.stdout,
            "{args:?}: S3 and local answers differ"
        );
        if let Some(name) = golden_file {
            golden::check(golden_path(name), &from_s3.stdout);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_one_account_and_year_reads_only_its_partition() {
    let s = synced();
    let server = S3Server::start().await;
    let prefix = "exports/pruned";
    upload(&s.dir, &server.storage(prefix)).await;
    let account = busiest_account(s, 2025);
    let before = server.requests().len();
    let out = Cmd::new(["query"])
        .data(server.url(prefix))
        .args([
            "--account",
            &account,
            "--year",
            "2025",
            "--format",
            "ndjson",
        ])
        .s3(&server)
        .run()
        .await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let tickets = out.stdout.lines().count();
    assert!(tickets > 0);

    let requests = server.requests()[before..].to_vec();
    let reads = object_reads(&requests, prefix);
    assert!(!reads.is_empty(), "no object was read: {requests:?}");
    let mine = format!("account={account}/year=2025/");
    let foreign: Vec<&String> = reads.iter().filter(|p| !p.contains(&mine)).collect();
    assert!(
        foreign.is_empty(),
        "objects outside {mine} were read: {foreign:?}"
    );
    // Only the tables a ticket query needs: tickets, conversations, notes.
    let tables: BTreeSet<&str> = reads
        .iter()
        .filter_map(|p| p.split(&format!("{prefix}/")).nth(1))
        .filter_map(|rest| rest.split('/').next())
        .collect();
    assert!(tables.contains("tickets"), "{tables:?}");
    assert!(!tables.contains("time_entries"), "{tables:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_credential_errors_exit_3_without_printing_the_secret() {
    let s = synced();
    let server = S3Server::start().await;
    let prefix = "exports/denied";
    upload(&s.dir, &server.storage(prefix)).await;
    let wrong = "wrong-query-secret-1b7e44-must-not-leak";
    let data = server.url(prefix);
    let on_s3 = |data: &str| Cmd::new(["query"]).data(data).s3(&server);
    for extra in [
        vec!["--account", "100000", "--year", "2025"],
        vec!["--year", "2025", "--rollup", "year"],
    ] {
        let out = on_s3(&data)
            .args(&extra)
            .env("AWS_SECRET_ACCESS_KEY", wrong)
            .run()
            .await;
        let stderr = &out.stderr;
        assert_eq!(out.code, Some(3), "{extra:?}: {stderr}");
        assert!(stderr.contains(&data), "names the location: {stderr}");
        assert!(!stderr.contains(wrong), "the secret leaked: {stderr}");
        assert!(!stderr.contains(SECRET_KEY), "{stderr}");
        assert!(out.stdout.is_empty(), "{}", out.stdout);
    }

    // A bucket that does not exist is the same kind of error: the location is wrong.
    let out = on_s3("s3://no-such-bucket/x")
        .args(["--account", "1"])
        .run()
        .await;
    let stderr = &out.stderr;
    assert_eq!(out.code, Some(3), "{stderr}");
    assert!(stderr.contains("does not exist"), "{stderr}");
    // And an empty prefix in a real bucket is an empty dataset: exit 2, as on disk.
    let out = on_s3(&server.url("nothing/here"))
        .args(["--account", "1"])
        .run()
        .await;
    assert_eq!(out.code, Some(2), "{}", out.stderr);
}
