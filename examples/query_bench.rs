//! The `query` benchmark's Rust half (benches/query_bench.sh drives it and DuckDB).
//!
//! ```text
//! query_bench generate --data DIR [--tickets 1000000] [--accounts 500] [--years 3]
//! query_bench run --data DIR --query tickets|month|year --account ACCT --year YYYY [--reps 5] [--out FILE]
//! ```
//!
//! `generate` writes a dataset of synthetic closed tickets with realistic children (about four
//! public conversations, one or two notes and two time entries per ticket) through the project's
//! own writer: the `tables` builders, the sink's sort and encoding, `Storage::put` at the
//! partition paths — the same bytes a sync writes, without the simulator, HTTP, markdown or the
//! index. One changeset per account and year.
//!
//! `run` opens the dataset afresh for every repetition (no cache carried over), writes the
//! result as JSON to `--out`, and prints one JSON line: the times of every repetition and the
//! process's peak resident memory.

use std::io::Write;
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Duration, TimeZone, Utc};
use futures::StreamExt;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use ticketsync::normalize::{ConversationRow, NoteRow, Placed, TicketRow, TimeEntryRow};
use ticketsync::query::output::{self, Format};
use ticketsync::query::{Basis, Dataset, Period, RollupQuery, TicketQuery};
use ticketsync::sink::parquet::{encode, merge_sorted};
use ticketsync::storage::{layout, S3Options, Storage};
use ticketsync::tables::{placed_batch, Table};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |name: &str| -> Option<String> {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1).cloned())
    };
    let number = |name: &str, default: u64| -> anyhow::Result<u64> {
        Ok(match flag(name) {
            Some(v) => v.parse()?,
            None => default,
        })
    };
    let data = flag("--data").ok_or_else(|| anyhow::anyhow!("--data DIR is required"))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match args.first().map(String::as_str) {
        Some("generate") => runtime.block_on(generate(
            &data,
            number("--tickets", 1_000_000)?,
            number("--accounts", 500)?,
            number("--years", 3)? as i32,
        )),
        Some("run") => {
            let query = flag("--query").unwrap_or_else(|| "tickets".into());
            let account = flag("--account").ok_or_else(|| anyhow::anyhow!("--account"))?;
            let year = number("--year", 2025)? as i32;
            let reps = number("--reps", 5)?;
            let out = flag("--out").unwrap_or_else(|| "/dev/null".into());
            runtime.block_on(run(&data, &query, &account, year, reps, &out))
        }
        _ => anyhow::bail!("usage: query_bench generate|run --data DIR ..."),
    }
}

// ---------------------------------------------------------------------------------------------
// generate

/// The first year of the dataset; `--years 3` covers 2023–2025.
const FIRST_YEAR: i32 = 2023;

/// Six-digit account numbers, like the real ones.
fn account_of(index: u64) -> String {
    format!("{}", 100_000 + index * 1_777 % 900_000)
}

async fn generate(data: &str, tickets: u64, accounts: u64, years: i32) -> anyhow::Result<()> {
    let storage = Storage::open(data, &S3Options::default())?;
    let partitions: Vec<(u64, i32)> = (0..accounts)
        .flat_map(|a| (0..years).map(move |y| (a, FIRST_YEAR + y)))
        .collect();
    let count = partitions.len() as u64;
    let started = Instant::now();
    let written = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let results: Vec<anyhow::Result<()>> =
        futures::stream::iter(partitions.into_iter().enumerate())
            .map(|(i, (account, year))| {
                // Spread the tickets evenly: the first `tickets % count` partitions get one more.
                let n = tickets / count + u64::from((i as u64) < tickets % count);
                let storage = storage.clone();
                let written = written.clone();
                async move {
                    let files = tokio::task::spawn_blocking(move || {
                        partition_files(i as u64, &account_of(account), year, n)
                    })
                    .await??;
                    for (path, bytes) in files {
                        written.fetch_add(bytes.len() as u64, std::sync::atomic::Ordering::Relaxed);
                        storage.put(&path, bytes).await?;
                    }
                    if i % 100 == 99 {
                        eprintln!(
                            "{} of {count} partitions, {:.0} s",
                            i + 1,
                            started.elapsed().as_secs_f64()
                        );
                    }
                    Ok(())
                }
            })
            .buffer_unordered(threads)
            .collect()
            .await;
    for r in results {
        r?;
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{{\"generated_tickets\":{tickets},\"partitions\":{count},\"parquet_bytes\":{},\"seconds\":{secs:.1}}}",
        written.load(std::sync::atomic::Ordering::Relaxed)
    );
    Ok(())
}

/// One account-year's tickets with their children, as the four encoded partition files.
fn partition_files(
    index: u64,
    account: &str,
    year: i32,
    tickets: u64,
) -> anyhow::Result<Vec<(object_store::path::Path, bytes::Bytes)>> {
    let mut rng = SmallRng::seed_from_u64(index);
    let placed: Vec<Placed> = (0..tickets)
        .map(|k| ticket(&mut rng, account, year, ((index + 1) * 10_000 + k) as i64))
        .collect();
    let refs: Vec<&Placed> = placed.iter().collect();
    let mut files = Vec::new();
    for table in Table::PARTITIONED {
        let batch = merge_sorted(table, &[placed_batch(table, &refs)])
            .map_err(|e| anyhow::anyhow!("sorting {}: {e}", table.name()))?;
        if batch.num_rows() == 0 {
            continue;
        }
        let path = layout::partition_file(table.name(), account, year);
        files.push((path.clone(), encode(&batch, path.as_ref())?));
    }
    Ok(files)
}

const WORDS: &[&str] = &[
    "outlook",
    "cannot",
    "send",
    "email",
    "printer",
    "offline",
    "vpn",
    "password",
    "reset",
    "locked",
    "account",
    "server",
    "backup",
    "failed",
    "teams",
    "meeting",
    "audio",
    "laptop",
    "slow",
    "update",
    "windows",
    "restart",
    "license",
    "expired",
    "sharepoint",
    "access",
    "denied",
    "folder",
    "permissions",
    "network",
    "drive",
    "mapped",
    "firewall",
    "rule",
    "please",
    "check",
    "thanks",
    "we",
    "have",
    "the",
    "a",
    "to",
    "on",
    "after",
    "again",
    "user",
    "screen",
    "monitor",
    "docking",
    "station",
    "certificate",
    "mfa",
    "phone",
    "app",
    "sync",
    "calendar",
    "shared",
    "mailbox",
    "quota",
    "full",
    "archive",
    "ticket",
    "resolved",
    "closing",
    "remote",
    "session",
    "installed",
    "driver",
    "patched",
    "rebooted",
    "verified",
    "working",
];

fn sentence(rng: &mut SmallRng, words: std::ops::Range<usize>) -> String {
    let words = rng.gen_range(words);
    let mut s = String::with_capacity(words * 8);
    for i in 0..words {
        if i > 0 {
            s.push(' ');
        }
        s.push_str(WORDS[rng.gen_range(0..WORDS.len())]);
    }
    s.push('.');
    s
}

fn between(rng: &mut SmallRng, from: DateTime<Utc>, to: DateTime<Utc>) -> DateTime<Utc> {
    let span = (to - from).num_seconds().max(1);
    from + Duration::seconds(rng.gen_range(0..span))
}

fn ticket(rng: &mut SmallRng, account: &str, year: i32, id: i64) -> Placed {
    let start = Utc.with_ymd_and_hms(year, 1, 1, 0, 0, 0).unwrap();
    let end = Utc.with_ymd_and_hms(year + 1, 1, 1, 0, 0, 0).unwrap() - Duration::seconds(1);
    let closed_at = between(rng, start, end);
    let created_at = closed_at - Duration::minutes(rng.gen_range(30..60 * 24 * 20));
    let subject = sentence(rng, 3..8);
    let text = sentence(rng, 15..60);
    let conversations: Vec<ConversationRow> = (0..rng.gen_range(0..9))
        .map(|k| {
            let body = sentence(rng, 10..80);
            let incoming = k % 2 == 0;
            ConversationRow {
                ticket_id: id,
                conversation_id: id * 100 + k,
                body_html: Some(format!("<div><p>{body}</p><p>--<br>Support</p></div>")),
                body,
                from_email: Some(
                    if incoming {
                        "user@customer.example"
                    } else {
                        "tech@msp.example"
                    }
                    .into(),
                ),
                to_emails: vec!["support@msp.example".into()],
                created_at: Some(between(rng, created_at, closed_at)),
                updated_at: None,
                incoming,
                private: false,
                user_id: Some(rng.gen_range(1..500)),
                support_email: Some("support@msp.example".into()),
                attachments: Some("[]".into()),
            }
        })
        .collect();
    let notes: Vec<NoteRow> = (0..rng.gen_range(0..4))
        .map(|k| {
            let body = sentence(rng, 5..40);
            NoteRow {
                ticket_id: id,
                note_id: id * 100 + 50 + k,
                body_html: Some(format!("<p>{body}</p>")),
                body,
                from_email: Some("tech@msp.example".into()),
                created_at: Some(between(rng, created_at, closed_at)),
                user_id: Some(rng.gen_range(1..50)),
                to_emails: Vec::new(),
                updated_at: None,
                incoming: false,
                support_email: None,
            }
        })
        .collect();
    // One ticket in seven has no time entries (and gets the 15-minute default).
    let entries = if rng.gen_range(0..7) == 0 {
        0
    } else {
        rng.gen_range(1..5)
    };
    let time_entries: Vec<TimeEntryRow> = (0..entries)
        .map(|k| {
            let minutes = 5 * rng.gen_range(1..36);
            TimeEntryRow {
                ticket_id: id,
                time_entry_id: id * 100 + 80 + k,
                agent_id: Some(rng.gen_range(1..50)),
                agent_email: Some("tech@msp.example".into()),
                minutes,
                hours: minutes as f64 / 60.0,
                billable: rng.gen_range(0..5) != 0,
                timer_running: false,
                executed_at: Some(between(rng, created_at, closed_at)),
                note: None,
                workspace_id: Some(2),
                task_id: None,
                custom_fields: Some(r#"{"work_type":"Remote"}"#.into()),
                agent_name: Some("Tech Person".into()),
                start_time: None,
            }
        })
        .collect();
    let (total, billable) = if time_entries.is_empty() {
        (15, 15)
    } else {
        (
            time_entries.iter().map(|e| e.minutes).sum(),
            time_entries
                .iter()
                .filter(|e| e.billable)
                .map(|e| e.minutes)
                .sum(),
        )
    };
    Placed {
        account: account.to_string(),
        year,
        ticket: TicketRow {
            ticket_id: id,
            company_account_number: account.to_string(),
            ticket_number: id.to_string(),
            subject: Some(subject),
            description: Some(format!("<div>{text}</div>")),
            description_text: Some(text),
            status: "Closed".into(),
            priority: Some(["Low", "Medium", "High", "Urgent"][rng.gen_range(0..4)].into()),
            requester_email: Some("user@customer.example".into()),
            requester_name: Some("Jane Customer".into()),
            created_at: Some(created_at),
            last_updated_at: closed_at,
            closed_at,
            total_hours_spent: total as f64 / 60.0,
            billable_hours: billable as f64 / 60.0,
            total_minutes: total,
            billable_minutes: billable,
            hours_defaulted: time_entries.is_empty(),
            department_id: Some(1),
            requester_id: Some(rng.gen_range(1..10_000)),
            responder_id: Some(rng.gen_range(1..50)),
            group_id: None,
            ticket_type: Some("Incident".into()),
            source: Some(1),
            conversation_count: conversations.len() as i32,
            note_count: notes.len() as i32,
            time_entry_count: time_entries.len() as i32,
            synced_at: closed_at + Duration::hours(3),
            // The issue-11 columns, filled as a real account fills them (no RNG draws, so the
            // generated rows above stay the same).
            details: ticketsync::normalize::TicketDetails {
                workspace_id: Some(2),
                category: Some("Software".into()),
                sub_category: Some("Email".into()),
                tags: Some(vec![]),
                custom_fields: Some(r#"{"billing_code":"MSP-STD","onsite_visit":false}"#.into()),
                due_by: Some(created_at + Duration::days(3)),
                fr_due_by: Some(created_at + Duration::days(1)),
                is_escalated: Some(false),
                fr_escalated: Some(false),
                resolved_at: Some(closed_at),
                responder_email: Some("tech@msp.example".into()),
                responder_name: Some("Tech Person".into()),
                group_name: Some("Service Desk".into()),
                ..Default::default()
            },
        },
        conversations,
        notes,
        time_entries,
        markdown: String::new(),
        time_entries_fingerprint: 0,
        privacy: Default::default(),
    }
}

// ---------------------------------------------------------------------------------------------
// run

async fn run(
    data: &str,
    query: &str,
    account: &str,
    year: i32,
    reps: u64,
    out: &str,
) -> anyhow::Result<()> {
    let mut seconds = Vec::new();
    let mut rows = 0;
    for _ in 0..reps {
        let started = Instant::now();
        let dataset = Dataset::open(data, &S3Options::default())?;
        let mut file = std::io::BufWriter::new(std::fs::File::create(out)?);
        rows = match query {
            "tickets" => {
                let query = TicketQuery {
                    account: account.into(),
                    year: Some(year),
                    basis: ticketsync::query::Basis::Closed,
                };
                let docs = dataset.tickets(&query).await?;
                output::write_tickets(&mut file, &docs, Format::Json)?;
                docs.len()
            }
            "month" | "year" => {
                let query = RollupQuery {
                    account: (query == "month").then(|| account.to_string()),
                    year,
                    period: if query == "month" {
                        Period::Month
                    } else {
                        Period::Year
                    },
                    basis: Basis::Closed,
                };
                let rollup = dataset.rollup(&query).await?;
                output::write_rollup(&mut file, &rollup, Format::Json)?;
                rollup.len()
            }
            other => anyhow::bail!("unknown query {other:?} (tickets, month, year)"),
        };
        file.flush()?;
        seconds.push(started.elapsed().as_secs_f64());
    }
    println!(
        "{{\"engine\":\"ticketsync\",\"query\":\"{query}\",\"rows\":{rows},\"seconds\":{seconds:?},\"peak_rss_kb\":{}}}",
        peak_rss_kb()
    );
    Ok(())
}

/// The process's peak resident set (`VmHWM`), in KiB; 0 where /proc is missing.
fn peak_rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}
