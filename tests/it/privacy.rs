//! Customer data under control (issue 12): secrets redacted before anything is written, a
//! person erased for good (`forget`, and every sync after it), subject-access export, retention.
//! The real binary against the simulator; the dataset is checked by scanning every Parquet
//! column (all of them, as text) and every markdown document.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use object_store::path::Path;
use serde_json::Value;
use ticketsync::job::JobSpec;
use ticketsync::storage::{S3Options, Storage};

use crate::support::{Cmd, Dump, Harness, Ran};

/// Runs the binary with `args` (nothing in its environment); returns exit code, stdout, stderr.
async fn run(args: &[&str]) -> (i32, String, String) {
    ran(Cmd::new(args).run().await)
}

fn ran(out: Ran) -> (i32, String, String) {
    (out.code.unwrap_or(-1), out.stdout, out.stderr)
}

/// Every place of the dataset that holds `needle` (case-insensitive): table rows and markdown.
fn occurrences(dump: &Dump, needle: &str) -> Vec<String> {
    let needle = needle.to_lowercase();
    let mut hits = Vec::new();
    for (table, rows) in &dump.rows {
        hits.extend(
            rows.iter()
                .filter(|r| r.to_lowercase().contains(&needle))
                .map(|r| format!("{table}: {}", r.chars().take(120).collect::<String>())),
        );
    }
    hits.extend(
        dump.markdown
            .iter()
            .filter(|(_, md)| md.to_lowercase().contains(&needle))
            .map(|(path, _)| path.clone()),
    );
    hits
}

/// `name=value` of a canonical row.
fn field<'a>(row: &'a str, name: &str) -> Option<&'a str> {
    let start = row.find(&format!(" {name}="))? + name.len() + 2;
    let rest = &row[start..];
    Some(rest.split(" ").next().unwrap_or(rest))
}

/// The requester with the most placed tickets: (email, name).
fn busiest_requester(dump: &Dump) -> (String, String) {
    let mut count: BTreeMap<String, u32> = BTreeMap::new();
    for row in dump.table("tickets") {
        if let Some(email) = field(row, "requester_email").filter(|e| e.contains('@')) {
            *count.entry(email.to_string()).or_default() += 1;
        }
    }
    let email = count
        .iter()
        .max_by_key(|(_, n)| **n)
        .map(|(e, _)| e.clone())
        .expect("tickets with requesters");
    let row = dump
        .table("tickets")
        .iter()
        .find(|r| field(r, "requester_email") == Some(email.as_str()))
        .unwrap();
    // The name is two words: read them from the row's text.
    let start = row.find(" requester_name=").unwrap() + " requester_name=".len();
    let name = row[start..]
        .split(" created_at=")
        .next()
        .unwrap()
        .to_string();
    (email, name)
}

/// Billing per account partition: (tickets, total minutes, billable minutes).
fn billing(dump: &Dump) -> BTreeMap<String, (u64, i64, i64)> {
    let mut out: BTreeMap<String, (u64, i64, i64)> = BTreeMap::new();
    for row in dump.table("tickets") {
        let partition = row.split(" | ").next().unwrap().to_string();
        let total: i64 = field(row, "total_minutes").unwrap().parse().unwrap();
        let billable: i64 = field(row, "billable_minutes").unwrap().parse().unwrap();
        let e = out.entry(partition).or_default();
        e.0 += 1;
        e.1 += total;
        e.2 += billable;
    }
    out
}

fn ids(dump: &Dump, table: &str, column: &str) -> Vec<String> {
    dump.table(table)
        .iter()
        .map(|r| field(r, column).unwrap().to_string())
        .collect()
}

async fn json_objects(storage: &Storage, prefix: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for path in storage.list(&Path::from(prefix)).await.unwrap() {
        let bytes = storage.get(&path).await.unwrap().unwrap();
        out.push((
            path.to_string(),
            String::from_utf8_lossy(&bytes).into_owned(),
        ));
    }
    out
}

#[tokio::test]
async fn forget_erases_a_person_everywhere_and_every_later_sync_keeps_it_so() {
    let h = Harness::new(300, 12).await;
    h.full_sync().await;
    let before = h.dump().await;
    let (email, name) = busiest_requester(&before);
    assert!(!occurrences(&before, &email).is_empty());
    assert!(!occurrences(&before, &name).is_empty(), "{name}");
    let data = h.data();

    // The export finds them first.
    let (code, stdout, _) = run(&["export-person", "--data", &data, "--email", &email]).await;
    assert_eq!(code, 0);
    let export: Value = serde_json::from_str(&stdout).unwrap();
    let requested = export["counts"]["tickets_requested"].as_u64().unwrap();
    assert!(requested >= 2, "{}", export["counts"]);
    let first = &export["tickets"][0];
    assert!(first["codex"]["ticket_number"].is_string(), "{first}");
    assert!(
        first["rows"]["ticket"]["custom_fields"].is_string(),
        "{first}"
    );

    // A dry run changes nothing.
    let (code, stdout, _) = run(&[
        "forget",
        "--data",
        &data,
        "--email",
        &email.to_uppercase(),
        "--dry-run",
    ])
    .await;
    assert_eq!(code, 0, "{stdout}");
    assert!(
        stdout.contains(&format!("({requested} requested by them)")),
        "{stdout}"
    );
    assert_eq!(h.dump().await, before, "a dry run changed the dataset");
    assert!(!h
        .storage
        .exists(&Path::from("_state/erasures.json"))
        .await
        .unwrap());

    let (code, stdout, stderr) = run(&["forget", "--data", &data, "--email", &email]).await;
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.starts_with("erased erased-"), "{stdout}");
    let after = h.dump().await;
    assert_eq!(occurrences(&after, &email), Vec::<String>::new());
    assert_eq!(occurrences(&after, &name), Vec::<String>::new());
    // Billing records stay: the same tickets, rows and hours per account.
    assert_eq!(billing(&after), billing(&before));
    assert_eq!(
        ids(&after, "tickets", "ticket_id"),
        ids(&before, "tickets", "ticket_id")
    );
    assert_eq!(
        ids(&after, "time_entries", "time_entry_id"),
        ids(&before, "time_entries", "time_entry_id")
    );
    assert_eq!(
        after.markdown.keys().collect::<Vec<_>>(),
        before.markdown.keys().collect::<Vec<_>>()
    );
    // Their messages are gone, the pseudonym stands in for them.
    let pseudonym = stdout
        .split_whitespace()
        .nth(1)
        .unwrap()
        .trim_end_matches(':');
    assert!(after
        .table("conversations")
        .iter()
        .any(|r| r.contains("body=[erased]")));
    assert!(
        after
            .table("tickets")
            .iter()
            .filter(|r| r.contains(pseudonym))
            .count() as u64
            >= requested
    );
    // The record, the key and the audit record hold no clear text.
    for (path, text) in json_objects(&h.storage, "_state")
        .await
        .into_iter()
        .chain(json_objects(&h.storage, "_runs").await)
    {
        let lower = text.to_lowercase();
        assert!(!lower.contains(&email.to_lowercase()), "{path}");
        assert!(!lower.contains(&name.to_lowercase()), "{path}");
    }
    let audit = json_objects(&h.storage, "_runs").await;
    let audit = audit
        .iter()
        .find(|(p, _)| p.contains("-forget-"))
        .expect("an audit record");
    let audit: Value = serde_json::from_str(&audit.1).unwrap();
    assert_eq!(audit["pseudonym"], pseudonym);
    assert_eq!(audit["changed"]["tickets"].as_u64().unwrap(), requested);

    // After forget, the export finds nothing.
    let (_, stdout, _) = run(&["export-person", "--data", &data, "--email", &email]).await;
    let export: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(export["tickets"], serde_json::json!([]));

    // Freshservice still has them: every ticket of theirs changes and comes back, by an
    // incremental run, a full sync and a single-ticket run. None brings them back.
    let theirs: Vec<i64> = before
        .table("tickets")
        .iter()
        .filter(|r| field(r, "requester_email") == Some(email.as_str()))
        .map(|r| field(r, "ticket_id").unwrap().parse().unwrap())
        .collect();
    for id in &theirs {
        h.sim.touch_ticket(*id);
    }
    let outcome = h.incremental().await;
    assert!(outcome.report.privacy.tickets_erased >= theirs.len() as u64);
    let full = h.full_sync().await;
    assert!(full.error.is_none(), "{:?}", full.error);
    h.sim.touch_ticket(theirs[0]);
    let one = theirs[0].to_string();
    let (code, _, stderr) = ran(h
        .cmd("sync")
        .data(&data)
        .args(["--ticket", &one, "--rate-window-secs", "1"])
        .run()
        .await);
    assert!(code == 0 || code == 1, "{stderr}");
    let resynced = h.dump().await;
    assert_eq!(occurrences(&resynced, &email), Vec::<String>::new());
    assert_eq!(occurrences(&resynced, &name), Vec::<String>::new());
    assert_eq!(billing(&resynced), billing(&before));
}

#[tokio::test]
async fn an_interrupted_forget_is_finished_by_the_next_sync() {
    use ticketsync::state::erasures;
    let h = Harness::new(200, 5).await;
    h.full_sync().await;
    let (email, name) = busiest_requester(&h.dump().await);
    // What a forget killed right after recording the erasure leaves behind.
    let mut loaded = erasures::load_for_update(&h.storage).await.unwrap();
    let at: DateTime<Utc> = Utc::now();
    let person = loaded.erasures.person(&email, Some(&name), &[], at);
    assert!(person.pending);
    loaded.erasures.add(person);
    erasures::store(&h.storage, &loaded, at).await.unwrap();

    let outcome = h.incremental().await;
    let finished = outcome
        .report
        .privacy
        .pending_erasure
        .as_ref()
        .expect("the sync finished the erasure");
    assert!(finished.tickets >= 2, "{finished:?}");
    let dump = h.dump().await;
    assert_eq!(occurrences(&dump, &email), Vec::<String>::new());
    assert_eq!(occurrences(&dump, &name), Vec::<String>::new());
    let loaded = erasures::load(&h.storage).await.unwrap();
    assert!(loaded.erasures.people().iter().all(|p| !p.pending));
}

/// `ticketsync sync` into `data`, with `erasure_key` in the environment when given.
async fn sync(h: &Harness, data: &str, erasure_key: Option<String>) -> (i32, String, String) {
    let cmd = h.sync_command(data, &[]);
    let cmd = match erasure_key {
        Some(key) => cmd.env("TICKETSYNC_ERASURE_KEY", key),
        None => cmd,
    };
    ran(cmd.run().await)
}

#[tokio::test]
async fn an_erasure_key_from_the_environment_must_stay_the_same() {
    let h = Harness::new(120, 8).await;
    h.full_sync().await;
    let (email, _) = busiest_requester(&h.dump().await);
    let data = h.data();
    let key = "ab".repeat(32);
    let (code, stdout, stderr) = ran(Cmd::new(["forget", "--data", &data, "--email", &email])
        .env("TICKETSYNC_ERASURE_KEY", key.clone())
        .run()
        .await);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(!h
        .storage
        .exists(&Path::from("_state/erasure.key"))
        .await
        .unwrap());

    // Without the key (or with another one) a sync refuses to run: it would bring them back.
    let (code, _, stderr) = sync(&h, &data, None).await;
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.contains("TICKETSYNC_ERASURE_KEY"), "{stderr}");
    let (code, _, stderr) = sync(&h, &data, Some("cd".repeat(32))).await;
    assert_eq!(code, 3, "{stderr}");
    assert!(
        !stderr.contains(&"cd".repeat(32)),
        "the key leaked: {stderr}"
    );
    let (code, _, stderr) = sync(&h, &data, Some("short".into())).await;
    assert_eq!(code, 3, "{stderr}");
    let (code, _, stderr) = sync(&h, &data, Some(key)).await;
    assert!(code == 0 || code == 1, "{stderr}");
}

#[tokio::test]
async fn secrets_in_notes_are_redacted_before_anything_is_written() {
    let h = Harness::new(300, 21).await;
    let outcome = h.full_sync().await;
    let dump = h.dump().await;
    for secret in ["Relay!2025", "Fuser#48213"] {
        assert_eq!(occurrences(&dump, secret), Vec::<String>::new(), "{secret}");
    }
    let redactions = &outcome.report.privacy.redactions;
    assert!(
        redactions.get("credential").copied().unwrap_or(0) > 0,
        "{redactions:?}"
    );
    assert!(!occurrences(&dump, "[redacted:credential]").is_empty());
    // What only looks like one stays ("Admin password rotated", "Password reset + MFA").
    assert!(!occurrences(&dump, "Admin password rotated").is_empty());
    // The report counts, it never shows a value.
    let report = serde_json::to_string(&outcome.report).unwrap();
    assert!(!report.contains("Relay!2025") && !report.contains("Fuser#48213"));

    // Switched off, the notes are written as they are.
    let off = Harness::new(300, 21).await;
    let spec = JobSpec {
        redact: Some(ticketsync::normalize::privacy::RedactSpec {
            enabled: Some(false),
            ..Default::default()
        }),
        ..off.full_spec()
    };
    let outcome = off.sync_with(spec, None).await;
    assert!(outcome.report.privacy.redactions.is_empty());
    assert!(!occurrences(&off.dump().await, "Relay!2025").is_empty());
}

#[tokio::test]
async fn retention_removes_what_closed_before_the_cutoff_and_keeps_the_rest_as_it_was() {
    let h = Harness::new(300, 33).await;
    h.full_sync().await;
    let before = h.dump().await;
    let data = h.data();
    let days = 150;
    let cutoff = Utc::now() - chrono::Duration::days(days);
    let closed = |row: &str| -> DateTime<Utc> {
        let text = field(row, "closed_at").unwrap();
        text.parse::<DateTime<Utc>>()
            .or_else(|_| format!("{text}Z").parse())
            .unwrap_or_else(|e| panic!("{text}: {e}"))
    };
    let kept = |dump: &Dump| -> Vec<String> {
        dump.table("tickets")
            .iter()
            .filter(|r| closed(r) >= cutoff + chrono::Duration::minutes(5))
            .map(|r| field(r, "ticket_id").unwrap().to_string())
            .collect()
    };
    let old = before
        .table("tickets")
        .iter()
        .filter(|r| closed(r) < cutoff)
        .count();
    assert!(old > 10, "the simulator's year has old tickets");

    let (code, stdout, _) = run(&[
        "prune",
        "--data",
        &data,
        "--retention-days",
        &days.to_string(),
        "--dry-run",
    ])
    .await;
    assert_eq!(code, 0);
    assert!(
        stdout.starts_with(&format!("would remove {old} tickets")),
        "{stdout}"
    );
    assert_eq!(h.dump().await, before);

    let (code, stdout, stderr) = run(&[
        "prune",
        "--data",
        &data,
        "--retention-days",
        &days.to_string(),
    ])
    .await;
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.starts_with(&format!("removed {old} tickets")),
        "{stdout}"
    );
    let after = h.dump().await;
    assert!(after.table("tickets").iter().all(|r| closed(r) >= cutoff));
    assert_eq!(
        after.table("tickets").len(),
        before.table("tickets").len() - old
    );
    assert_eq!(after.markdown.len(), after.table("tickets").len());
    let kept_ids: std::collections::BTreeSet<String> = after
        .table("tickets")
        .iter()
        .map(|r| field(r, "ticket_id").unwrap().to_string())
        .collect();
    for table in ["conversations", "notes", "time_entries"] {
        assert!(after
            .table(table)
            .iter()
            .all(|r| kept_ids.contains(field(r, "ticket_id").unwrap())));
    }
    // The kept period is as it was, row for row (its rollups with it).
    let rows_of = |dump: &Dump| -> Vec<String> {
        dump.table("tickets")
            .iter()
            .filter(|r| closed(r) >= cutoff)
            .cloned()
            .collect()
    };
    assert_eq!(rows_of(&after), rows_of(&before));
    assert_eq!(kept(&after), kept(&before));

    // A full sync with the same retention writes none of them again.
    let spec = JobSpec {
        retention_days: Some(days as u32),
        ..h.full_spec()
    };
    let outcome = h.sync_with(spec, None).await;
    assert!(outcome.error.is_none(), "{:?}", outcome.error);
    assert_eq!(outcome.report.retention.as_ref().unwrap().tickets, 0);
    assert!(h
        .dump()
        .await
        .table("tickets")
        .iter()
        .all(|r| closed(r) >= cutoff));
    // And a sync without retention brings them back: retention is the job's choice.
    let outcome = h.full_sync().await;
    assert!(outcome.report.tickets.written as usize >= old);
    let storage = Storage::open(&data, &S3Options::default()).unwrap();
    assert!(storage
        .exists(&Path::from("_state/index.json"))
        .await
        .unwrap());
}

#[tokio::test]
async fn forget_export_and_prune_work_on_s3_as_on_local_disk() {
    use ticketsync::dataset::{export, forget, retention};
    use ticketsync::sim::{Plan, SimConfig};
    let h = Harness::on(
        crate::support::Backend::S3,
        SimConfig {
            tickets: 150,
            seed: 3,
            plan: Plan::Enterprise,
            minute_secs: 1.0,
            ..SimConfig::default()
        },
    )
    .await;
    h.full_sync().await;
    let before = h.dump().await;
    let (email, name) = busiest_requester(&before);
    let found = export::export_person(&h.storage, &email).await.unwrap();
    assert!(found.counts.tickets_requested >= 1);

    let report = forget::forget(
        &h.storage,
        &forget::Request {
            email: email.clone(),
            name: None,
            dry_run: false,
            lock_ttl: std::time::Duration::from_secs(60),
        },
    )
    .await
    .unwrap()
    .remove(0);
    assert_eq!(report.tickets_requested, found.counts.tickets_requested);
    let after = h.dump().await;
    assert_eq!(occurrences(&after, &email), Vec::<String>::new());
    assert_eq!(occurrences(&after, &name), Vec::<String>::new());
    assert_eq!(billing(&after), billing(&before));
    let found = export::export_person(&h.storage, &email).await.unwrap();
    assert!(found.tickets.is_empty());

    let pruned = retention::prune(&h.storage, 120, false, std::time::Duration::from_secs(60))
        .await
        .unwrap();
    assert!(pruned.pruned.tickets > 0);
    assert_eq!(
        h.dump().await.table("tickets").len() as u64,
        before.table("tickets").len() as u64 - pruned.pruned.tickets
    );
}

#[tokio::test]
async fn check_lists_an_erasure_key_that_does_not_match() {
    let h = Harness::new(80, 9).await;
    h.full_sync().await;
    let (email, _) = busiest_requester(&h.dump().await);
    let data = h.data();
    let (code, _, _) = ran(Cmd::new(["forget", "--data", &data, "--email", &email])
        .env("TICKETSYNC_ERASURE_KEY", "ab".repeat(32))
        .run()
        .await);
    assert_eq!(code, 0);
    let check = |key: Option<String>| {
        let cmd = h
            .cmd("check")
            .data(&data)
            .args(["--rate-window-secs", "1", "--format", "json"]);
        let cmd = match key {
            Some(key) => cmd.env("TICKETSYNC_ERASURE_KEY", key),
            None => cmd,
        };
        async move { ran(cmd.run().await) }
    };
    let (code, stdout, _) = check(Some("ab".repeat(32))).await;
    assert_eq!(code, 0, "{stdout}");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["storage"]["erased_people"], 1);
    let (code, stdout, _) = check(None).await;
    assert_eq!(code, 3, "{stdout}");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    let problems = report["problems"].to_string();
    assert!(problems.contains("TICKETSYNC_ERASURE_KEY"), "{problems}");
}

#[tokio::test]
async fn redact_applies_the_rules_to_rows_written_before_them() {
    let h = Harness::new(200, 21).await;
    let spec = JobSpec {
        redact: Some(ticketsync::normalize::privacy::RedactSpec {
            enabled: Some(false),
            ..Default::default()
        }),
        ..h.full_spec()
    };
    h.sync_with(spec, None).await;
    let before = h.dump().await;
    assert!(!occurrences(&before, "Relay!2025").is_empty());
    let data = h.data();

    let (code, stdout, stderr) = run(&["redact", "--data", &data, "--dry-run"]).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.starts_with("would redact "), "{stdout}");
    assert_eq!(h.dump().await, before);

    let (code, stdout, stderr) = run(&["redact", "--data", &data]).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("credential"), "{stdout}");
    let after = h.dump().await;
    for secret in ["Relay!2025", "Fuser#48213"] {
        assert_eq!(
            occurrences(&after, secret),
            Vec::<String>::new(),
            "{secret}"
        );
    }
    assert_eq!(billing(&after), billing(&before));
    assert_eq!(after.markdown.len(), before.markdown.len());
    // Idempotent: a second run finds nothing.
    let (_, stdout, _) = run(&["redact", "--data", &data]).await;
    assert!(
        stdout.starts_with("redacted 0 secrets in 0 tickets"),
        "{stdout}"
    );
}

/// `forget` killed with SIGKILL at seeded moments, then run again: the dataset equals a clean
/// erasure's, table for table and document for document (the record is written first, the
/// rewrite goes through the commit journal, and a rerun finishes what was pending).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forget_killed_at_any_moment_then_rerun_equals_a_clean_erasure() {
    use rand::{Rng, SeedableRng};
    let h = Harness::new(250, 17).await;
    h.full_sync().await;
    let (email, name) = busiest_requester(&h.dump().await);
    let base = h.dir.path().to_path_buf();
    let key = "5a".repeat(32);
    let forget = |data: &str| {
        Cmd::new(["forget", "--data", data, "--email", email.as_str()])
            .env("TICKETSYNC_ERASURE_KEY", key.clone())
            .quiet()
    };

    let clean_dir = tempfile::tempdir().unwrap();
    crate::support::copy_dir(&base, clean_dir.path());
    let clean_data = clean_dir.path().to_str().unwrap().to_string();
    let started = std::time::Instant::now();
    let ran = forget(&clean_data).run().await;
    let clean_time = started.elapsed();
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    let clean = Dump::of(&Storage::open(&clean_data, &S3Options::default()).unwrap()).await;
    assert!(occurrences(&clean, &email).is_empty() && occurrences(&clean, &name).is_empty());

    let mut rng = rand::rngs::StdRng::seed_from_u64(12);
    let mut killed_mid_run = 0;
    for point in 0..6 {
        let dir = tempfile::tempdir().unwrap();
        crate::support::copy_dir(&base, dir.path());
        let data = dir.path().to_str().unwrap().to_string();
        let wait = clean_time.mul_f64(rng.gen_range(0.05..1.0));
        let mut child = forget(&data).spawn();
        tokio::time::sleep(wait).await;
        if child.try_wait().unwrap().is_none() {
            killed_mid_run += 1;
        }
        let _ = child.kill();
        let _ = child.wait();
        let ran = forget(&data).run().await;
        assert_eq!(ran.code, Some(0), "kill point {point}: {}", ran.stderr);
        let after = Dump::of(&Storage::open(&data, &S3Options::default()).unwrap()).await;
        crate::backends::assert_same_dataset(&clean, &after, &format!("kill point {point}"));
    }
    println!("{killed_mid_run} of 6 kills hit a running forget ({clean_time:?} clean)");
}

/// Issue 19: a name learned by a sync was recorded only at the end of the run. A run that
/// stopped after committing the tickets it came from (killed, or its lock lost) lost it for good:
/// the rerun finds those tickets unchanged, learns nothing, and the name stays in other tickets'
/// texts. Now the name is recorded (pending) before that commit, and the rerun finishes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_learned_before_a_run_stops_is_not_lost() {
    let h = Harness::with_config(ticketsync::sim::SimConfig {
        tickets: 250,
        seed: 27,
        minute_secs: 1.0,
        rate_limit: false,
        latency_ms: 20,
        ..ticketsync::sim::SimConfig::default()
    })
    .await;
    let truth = h.sim.ground_truth();
    let mut closed: Vec<_> = truth.closed_tickets().collect();
    closed.sort_by_key(|t| (t.created_at, t.id));
    // The requester whose closed tickets all come early in the listing; the last tickets of
    // the listing (other people's) mention their full name.
    let (person, theirs) = truth
        .requesters
        .iter()
        .filter_map(|r| {
            let last = closed.iter().rposition(|t| t.requester_id == r.id)?;
            let mine: Vec<i64> = closed
                .iter()
                .filter(|t| t.requester_id == r.id)
                .map(|t| t.id)
                .collect();
            Some((last, r, mine))
        })
        .min_by_key(|(last, _, _)| *last)
        .map(|(_, r, mine)| (r.clone(), mine))
        .expect("a requester with closed tickets");
    let mention = format!("{} {}", person.first_name, person.last_name);
    for t in closed
        .iter()
        .rev()
        .filter(|t| t.requester_id != person.id)
        .take(5)
    {
        let line = format!("Spoke with {mention} about it.");
        h.sim.edit_ticket(t.id, |t| {
            t.description.push_str(&format!("<p>{line}</p>"));
            t.description_text.push_str(&format!("\n{line}"));
        });
    }
    let email = person.primary_email.clone();
    let name = format!("{} {}", person.first_name, person.last_name);
    let data = h.data();
    std::fs::create_dir_all(&data).unwrap();
    let (code, stdout, stderr) = run(&["forget", "--data", &data, "--email", &email]).await;
    assert_eq!(code, 0, "{stdout}{stderr}");

    // The run stops once every ticket of theirs is committed: its lock is deleted then.
    let stop = async {
        loop {
            let written: Vec<String> = h
                .storage
                .list(&Path::from("markdown"))
                .await
                .unwrap()
                .iter()
                .map(|p| p.to_string())
                .collect();
            if theirs
                .iter()
                .all(|id| written.iter().any(|p| p.ends_with(&format!("/{id}.md"))))
            {
                h.storage
                    .delete(&Path::from("_state/lock.json"))
                    .await
                    .unwrap();
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    };
    // Every checkpoint of 10 tickets is a table commit (`commit_minutes = 0`), so their
    // tickets are in the tables while the run still has many others to fetch and commit: the
    // lock is lost mid-run, not in a race with the run's end (the early table commit publishes
    // the documents only a few round trips before it).
    let spec = JobSpec {
        commit_minutes: Some(0.0),
        checkpoint_every: Some(10),
        ..h.full_spec()
    };
    let (stopped, ()) = tokio::join!(h.try_sync_with(spec, None), stop);
    let error = match stopped {
        Ok(o) => o.error.map(|e| e.to_string()).unwrap_or_default(),
        Err(e) => e.to_string(),
    };
    assert!(
        error.contains("lock"),
        "the run was to stop on its lost lock: {error:?}"
    );

    let rerun = h.full_sync().await;
    assert!(rerun.error.is_none(), "{:?}", rerun.error);
    let dump = h.dump().await;
    assert_eq!(occurrences(&dump, &email), Vec::<String>::new());
    assert_eq!(occurrences(&dump, &name), Vec::<String>::new());
}

/// Forgotten before any ticket of theirs was synced: the record has the address only. The sync
/// that brings their tickets learns their name from them, completes the record (hashed) and
/// rewrites the dataset without it.
#[tokio::test]
async fn a_name_learned_by_a_later_sync_is_erased_everywhere() {
    let h = Harness::new(250, 27).await;
    let truth = h.sim.ground_truth();
    let mut count: BTreeMap<i64, usize> = BTreeMap::new();
    for t in truth.closed_tickets() {
        *count.entry(t.requester_id).or_default() += 1;
    }
    let person = truth
        .requesters
        .iter()
        .max_by_key(|r| count.get(&r.id).copied().unwrap_or(0))
        .unwrap();
    let email = person.primary_email.clone();
    let name = format!("{} {}", person.first_name, person.last_name);
    let data = h.data();
    std::fs::create_dir_all(&data).unwrap();
    let (code, stdout, stderr) = run(&["forget", "--data", &data, "--email", &email]).await;
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("no name known"), "{stdout}");

    let outcome = h.full_sync().await;
    assert!(outcome.error.is_none(), "{:?}", outcome.error);
    assert_eq!(outcome.report.privacy.names_learned, 1);
    let dump = h.dump().await;
    assert!(!dump.table("tickets").is_empty());
    assert_eq!(occurrences(&dump, &email), Vec::<String>::new());
    assert_eq!(occurrences(&dump, &name), Vec::<String>::new());
    let record = serde_json::to_string(
        &ticketsync::state::erasures::load(&h.storage)
            .await
            .unwrap()
            .erasures
            .people()[0],
    )
    .unwrap();
    assert!(record.contains("\"name_words\":2"), "{record}");
    assert!(!record
        .to_lowercase()
        .contains(&person.last_name.to_lowercase()));
    // Learned once: the next run has nothing to learn.
    assert_eq!(h.incremental().await.report.privacy.names_learned, 0);
}

/// The first placed ticket that `email` did not request.
fn someone_elses_ticket(dump: &Dump, email: &str) -> i64 {
    dump.table("tickets")
        .iter()
        .find(|r| field(r, "requester_email").is_some_and(|e| e != email && e.contains('@')))
        .and_then(|r| field(r, "ticket_id")?.parse().ok())
        .expect("a ticket of someone else")
}

/// A public message on ticket `t`, created at its last update.
fn message(
    t: &ticketsync::sim::Ticket,
    id: i64,
    user_id: i64,
    from_email: Option<String>,
    html: &str,
    text: &str,
) -> ticketsync::sim::Conversation {
    ticketsync::sim::Conversation {
        id,
        ticket_id: t.id,
        user_id,
        body: html.to_string(),
        body_text: text.to_string(),
        incoming: from_email.is_none(),
        private: false,
        source: 0,
        support_email: None,
        from_email,
        to_emails: Vec::new(),
        created_at: t.updated_at,
        updated_at: t.updated_at,
        attachments: Vec::new(),
    }
}

/// Rewrites the `rejects` file in place (as an older release's rows), `edit` applied to each
/// row's detail.
async fn edit_reject_details(storage: &Storage, edit: impl Fn(&str) -> String) {
    use ticketsync::tables::{self, Table};
    let files = crate::support::data_files(storage, Table::Rejects).await;
    let [path] = files.as_slice() else {
        panic!("one rejects file: {files:?}")
    };
    let bytes = storage.get(path).await.unwrap().expect("a rejects file");
    let mut rows = Vec::new();
    for batch in
        ticketsync::sink::parquet::decode(bytes, &Table::Rejects.schema(), path.as_ref()).unwrap()
    {
        rows.extend(tables::read::rejects(&batch).unwrap());
    }
    assert!(!rows.is_empty(), "the simulator's data has rejects");
    for r in &mut rows {
        r.detail = edit(&r.detail);
    }
    let batch = tables::rejects_batch(&rows.iter().collect::<Vec<_>>());
    let bytes = ticketsync::sink::parquet::encode(&batch, path.as_ref()).unwrap();
    storage.put(path, bytes).await.unwrap();
}

/// Issue 19, erasure 2 and 3: the HTML twin of a message loses the name and address its text
/// loses, in every encoding a mail client writes; a message they wrote on someone else's ticket
/// is erased by its author's user id when it has no sender address; and `forget` scrubs the
/// rejects' details written before it. The next sync of that ticket keeps it so.
#[tokio::test]
async fn forget_erases_html_twins_messages_by_user_id_and_reject_details() {
    let h = Harness::new(200, 12).await;
    h.full_sync().await;
    let dump = h.dump().await;
    let (email, name) = busiest_requester(&dump);
    let truth = h.sim.ground_truth();
    let person = truth
        .requesters
        .iter()
        .find(|r| r.primary_email == email)
        .expect("the requester is a requester");
    let agent = &truth.agents[0];
    let (first, last) = (person.first_name.clone(), person.last_name.clone());
    let (local, domain) = email.split_once('@').unwrap();
    let other = someone_elses_ticket(&dump, &email);
    let twins = [
        format!("{first}&nbsp;{last}"),
        format!("<b>{first}</b> <b>{last}</b>"),
        format!("{local}&#64;{domain}"),
        format!("{}&#x40;{domain}", local.to_uppercase()),
    ];
    let html = format!(
        "<div><p>Spoke with {}&nbsp;{} today.</p><p>{}<br>{} | {}</p></div>",
        first, last, twins[1], twins[2], twins[3]
    );
    let text = format!(
        "Spoke with {first} {last} today.\n{first} {last}\n{email} | {}",
        email.to_uppercase()
    );
    let words = "Zebra quartz seventy-one, sent from my phone";
    let (person_id, agent_id, agent_email) = (person.id, agent.id, agent.email.clone());
    h.sim.edit_ticket(other, |t| {
        let twin = message(t, 21_009_000_001, agent_id, Some(agent_email), &html, &text);
        let theirs = message(
            t,
            21_009_000_002,
            person_id,
            None,
            &format!("<p>{words}</p>"),
            words,
        );
        t.conversations.extend([twin, theirs]);
    });
    h.incremental().await;
    let synced = h.dump().await;
    for needle in twins.iter().map(String::as_str).chain([words]) {
        assert!(!occurrences(&synced, needle).is_empty(), "{needle}");
    }
    // A reject's detail that quoted the address before the erasure existed.
    edit_reject_details(&h.storage, |d| format!("{d} (requester {email})")).await;
    assert!(!occurrences(&h.dump().await, &email).is_empty());

    let (code, stdout, stderr) = run(&["forget", "--data", &h.data(), "--email", &email]).await;
    assert_eq!(code, 0, "{stdout}{stderr}");
    let pseudonym = stdout
        .split_whitespace()
        .nth(1)
        .unwrap()
        .trim_end_matches(':');
    let check = |dump: &Dump, when: &str| {
        for needle in twins
            .iter()
            .map(String::as_str)
            .chain([words, email.as_str(), name.as_str()])
        {
            assert_eq!(
                occurrences(dump, needle),
                Vec::<String>::new(),
                "{when}: {needle}"
            );
        }
        assert!(
            dump.table("rejects").iter().all(|r| r.contains(pseudonym)),
            "{when}"
        );
        assert!(
            dump.table("conversations")
                .iter()
                .any(|r| r.contains("conversation_id=21009000002") && r.contains("body=[erased]")),
            "{when}"
        );
    };
    check(&h.dump().await, "after forget");

    h.sim.touch_ticket(other);
    let outcome = h.incremental().await;
    assert!(outcome.error.is_none(), "{:?}", outcome.error);
    check(&h.dump().await, "after the next sync");
}

/// Issue 19, redaction 4 to 6: quoted values, custom fields (by key, and their other values by
/// the rules), tags, categories and an AWS secret after its key id are redacted by a sync.
#[tokio::test]
async fn a_sync_redacts_custom_fields_tags_categories_quoted_values_and_aws_secrets() {
    let h = Harness::new(120, 5).await;
    h.full_sync().await;
    let dump = h.dump().await;
    let id: i64 = field(&dump.table("tickets")[0], "ticket_id")
        .unwrap()
        .parse()
        .unwrap();
    let secrets = [
        "Sommer2024!Rx",
        "MotDePasse#42",
        "Onboard#2025x",
        "Hunter-7731",
        "TagPw-5521",
        "Cat#Secret88",
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "Entry#Token99",
    ];
    let agent = h.sim.ground_truth().agents[0].clone();
    h.sim.edit_ticket(id, |t| {
        t.custom_fields = serde_json::json!({
            "new_hire": "Anna Berg",
            "temp_password": secrets[2],
            "remarks": format!("VPN pw={}", secrets[3]),
        });
        t.tags.push(format!("pw={}", secrets[4]));
        t.category = Some(format!("Access password: {}", secrets[5]));
        let body = format!(
            "Password: \"{}\"\nLogin pw = '{}'\nAWS key AKIAIOSFODNN7EXAMPLE secret {} for the backup bucket",
            secrets[0], secrets[1], secrets[6]
        );
        let reply = message(
            t,
            21_009_000_011,
            agent.id,
            Some(agent.email.clone()),
            &format!("<p>{}</p>", body.replace('\n', "<br>")),
            &body,
        );
        t.conversations.push(reply);
        if let Some(entry) = t.time_entries.first_mut() {
            entry.custom_fields = serde_json::json!({"api_token": secrets[7], "work_type": "Onboarding"});
        }
    });
    let has_entry = !h
        .sim
        .ground_truth()
        .ticket(id)
        .unwrap()
        .time_entries
        .is_empty();
    let outcome = h.incremental().await;
    assert!(outcome.error.is_none(), "{:?}", outcome.error);
    let dump = h.dump().await;
    for secret in secrets {
        assert_eq!(occurrences(&dump, secret), Vec::<String>::new(), "{secret}");
    }
    let counts = &outcome.report.privacy.redactions;
    let secret_fields = counts.get("secret_field").copied().unwrap_or(0);
    assert_eq!(secret_fields, 1 + u64::from(has_entry), "{counts:?}");
    assert!(
        counts.get("aws_secret_access_key").copied().unwrap_or(0) >= 1,
        "{counts:?}"
    );
    assert!(
        counts.get("credential").copied().unwrap_or(0) >= 5,
        "{counts:?}"
    );
    assert!(
        !occurrences(&dump, "Anna Berg").is_empty(),
        "other values stay"
    );
}

/// Issue 19, redaction 7: `check` shows the base URL without its user name and password, in
/// text and JSON, as `sync` does.
#[tokio::test]
async fn check_never_shows_the_password_of_a_base_url() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    for format in ["human", "json"] {
        let (code, stdout, stderr) = run(&[
            "check",
            "--base-url",
            "http://operator:Pa55-in-URL@127.0.0.1:9/",
            "--data",
            data,
            "--format",
            format,
        ])
        .await;
        assert_ne!(code, 0, "nothing answers on port 9");
        assert!(stdout.contains("127.0.0.1:9"), "{format}: {stdout}");
        let all = format!("{stdout}{stderr}");
        assert!(!all.contains("Pa55-in-URL"), "{format}: {all}");
        assert!(!all.contains("operator"), "{format}: {all}");
    }
}

/// Issue 19, also: `forget` on a dataset whose first sync never committed says so, instead of
/// calling it an older format.
#[tokio::test]
async fn forget_says_a_first_sync_has_not_finished() {
    use ticketsync::tables::Table;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let storage = Storage::open(data, &S3Options::default()).unwrap();
    // What a first sync killed before its first ticket commit leaves: the rejects file only.
    let path = ticketsync::storage::layout::table_file(Table::Rejects.name());
    let empty = arrow::array::RecordBatch::new_empty(Table::Rejects.schema());
    let bytes = ticketsync::sink::parquet::encode(&empty, path.as_ref()).unwrap();
    storage.put(&path, bytes).await.unwrap();
    let (code, _, stderr) = run(&["forget", "--data", data, "--email", "a@b.example"]).await;
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.contains("first sync has not finished"), "{stderr}");
    assert!(!stderr.contains("format 1"), "{stderr}");
}
