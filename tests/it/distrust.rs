//! The simulator is not the API: the real binary against a simulator that answers the way a
//! caching proxy, an API gateway or a future API change might (see `ticketsync::sim::Quirks`).
//! Every answer that would remove data, end a listing or move the cursor is a claim the run
//! verifies; when it cannot show it saw everything, it fails (exit 2) and leaves the cursor.

use std::time::Duration;

use object_store::path::Path;
use ticketsync::sim::{PageQuirk, Quirks, SimConfig};
use ticketsync::storage::{S3Options, Storage};

use crate::support::{Cmd, Dump, Harness, Ran};

/// Runs `ticketsync sync` against the harness's simulator into `data` (at most 120 s: a run
/// that does not end is a failure of its own).
async fn sync_into(h: &Harness, data: &str, args: &[&str]) -> Ran {
    h.sync_command(data, args)
        .timeout(Duration::from_secs(120))
        .run()
        .await
}

async fn sync(h: &Harness, args: &[&str]) -> Ran {
    sync_into(h, &h.data(), args).await
}

async fn cursor(storage: &Storage) -> Option<Vec<u8>> {
    storage
        .get(&Path::from("_state/cursor.json"))
        .await
        .unwrap()
        .map(|b| b.to_vec())
}

/// The same simulator synced, without quirks, into a fresh directory.
async fn clean_dump(h: &Harness, quirks: Quirks) -> Dump {
    h.sim.set_quirks(Quirks::default());
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let ran = sync_into(h, data, &["--full-sync"]).await;
    assert!(matches!(ran.code, Some(0 | 1)), "{}", ran.stderr);
    h.sim.set_quirks(quirks);
    Dump::of(&Storage::open(data, &S3Options::default()).unwrap()).await
}

fn ids_in(dump: &Dump, table: &str) -> Vec<i64> {
    let mut ids: Vec<i64> = dump
        .table(table)
        .iter()
        .filter_map(|l| {
            l.split(' ')
                .find_map(|kv| kv.strip_prefix("ticket_id="))
                .and_then(|v| v.parse().ok())
        })
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_ignores_the_deleted_filter_removes_nothing() {
    let h = Harness::new(150, 21).await;
    let quirks = Quirks {
        ignore_filter: true,
        ..Quirks::default()
    };
    h.sim.set_quirks(quirks.clone());
    // The deleted and spam "views" answer with every live ticket. Before: the first full sync
    // wrote nothing, said ok and moved the cursor.
    let first = sync(&h, &["--full-sync"]).await;
    assert!(matches!(first.code, Some(0 | 1)), "{}", first.stderr);
    assert!(first.tickets("written") > 0, "{}", first.report);
    assert!(first.tickets("reconcile_ignored") > 0, "{}", first.report);
    assert_eq!(first.tickets("removed"), 0);
    // The next run (before: removed every ticket it had) removes nothing.
    let second = sync(&h, &[]).await;
    assert!(matches!(second.code, Some(0 | 1)), "{}", second.stderr);
    assert_eq!(second.tickets("removed"), 0, "{}", second.report);
    assert!(second.tickets("reconcile_ignored") > 0);
    // And the dataset is the one a server that honours the filter gives.
    assert_eq!(h.dump().await, clean_dump(&h, quirks).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_removal_guard_refuses_a_mass_removal_until_it_is_allowed() {
    let h = Harness::new(150, 22).await;
    let first = sync(&h, &["--full-sync"]).await;
    assert!(matches!(first.code, Some(0 | 1)), "{}", first.stderr);
    let before = h.dump().await;
    let placed = ids_in(&before, "tickets");
    let doomed: Vec<i64> = placed.iter().copied().take(6).collect();
    for id in &doomed {
        h.sim.delete_ticket(*id);
    }
    let added = h.sim.add_closed_ticket();
    let stored_cursor = cursor(&h.storage).await;

    let refused = sync(&h, &["--max-removals", "5"]).await;
    assert_eq!(refused.code, Some(2), "{}", refused.stderr);
    assert!(
        refused.stderr.contains("--max-removals 6"),
        "{}",
        refused.stderr
    );
    assert_eq!(refused.report["status"], "failed");
    let listed: Vec<i64> = refused.report["removal_guard"]["ids"]["deleted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect();
    assert_eq!(listed, doomed);
    assert_eq!(refused.tickets("removed"), 0);
    assert_eq!(cursor(&h.storage).await, stored_cursor, "the cursor stays");
    let kept = h.dump().await;
    let now_placed = ids_in(&kept, "tickets");
    for id in &doomed {
        assert!(now_placed.contains(id), "ticket {id} was removed");
    }
    // Everything else it fetched is written.
    assert!(
        now_placed.contains(&added),
        "the new ticket was not written"
    );

    let allowed = sync(&h, &["--max-removals", "6"]).await;
    assert!(matches!(allowed.code, Some(0 | 1)), "{}", allowed.stderr);
    assert_eq!(allowed.tickets("removed"), 6, "{}", allowed.report);
    let after = ids_in(&h.dump().await, "tickets");
    for id in &doomed {
        assert!(!after.contains(id), "ticket {id} is still there");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listing_that_cannot_show_it_ended_fails_the_run() {
    let h = Harness::new(250, 23).await;
    let cases = [
        (
            "a link back to itself",
            Quirks {
                link_loop: Some(PageQuirk::new("tickets_list", 2)),
                ..Quirks::default()
            },
            "links back to a page already read",
            "tickets",
        ),
        (
            "an empty page with a next link",
            Quirks {
                empty_page_with_next: Some(PageQuirk::new("tickets_list", 1)),
                ..Quirks::default()
            },
            "is empty but links to another page",
            "tickets",
        ),
        (
            "a department list that loops",
            Quirks {
                link_loop: Some(PageQuirk::new("departments", 1)),
                ..Quirks::default()
            },
            "links back to a page already read",
            "departments",
        ),
        (
            "an agent list that loops",
            Quirks {
                link_loop: Some(PageQuirk::new("agents", 1)),
                ..Quirks::default()
            },
            "links back to a page already read",
            "agents",
        ),
        (
            "conversations that loop",
            Quirks {
                link_loop: Some(PageQuirk::new("conversations", 1)),
                ..Quirks::default()
            },
            "links back to a page already read",
            "conversations",
        ),
        (
            "time entries with an empty page that links on",
            Quirks {
                empty_page_with_next: Some(PageQuirk::new("time_entries", 1)),
                ..Quirks::default()
            },
            "is empty but links",
            "time_entries",
        ),
    ];
    for (what, quirks, needle, endpoint) in cases {
        h.sim.set_quirks(quirks);
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().to_str().unwrap();
        let ran = sync_into(&h, data, &["--full-sync"]).await;
        assert_eq!(ran.code, Some(2), "{what}: {}", ran.stderr);
        assert!(ran.stderr.contains(needle), "{what}: {}", ran.stderr);
        assert!(ran.stderr.contains(endpoint), "{what}: {}", ran.stderr);
        let storage = Storage::open(data, &S3Options::default()).unwrap();
        assert_eq!(cursor(&storage).await, None, "{what}: the cursor moved");
        assert!(
            storage
                .get(&Path::from("_state/lock.json"))
                .await
                .unwrap()
                .is_none(),
            "{what}: the lock was not released"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_pages_caps_every_listing() {
    let h = Harness::new(250, 23).await;
    let dir = tempfile::tempdir().unwrap();
    let job = dir.path().join("job.toml");
    let data = dir.path().join("data");
    std::fs::write(
        &job,
        format!(
            "data = {:?}\nbase_url = {:?}\nrate_window_secs = 1.0\nfull_sync = true\nmax_pages = 1\n",
            data.to_str().unwrap(),
            h.sim.base_url()
        ),
    )
    .unwrap();
    let out = Cmd::new(["sync", "--job", job.to_str().unwrap()])
        .api_key(h.sim.api_key())
        .run()
        .await;
    let stderr = &out.stderr;
    assert_eq!(out.code, Some(2), "{stderr}");
    assert!(stderr.contains("max_pages = 1"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_department_that_stops_decoding_fails_its_tickets_and_keeps_their_rows() {
    let h = Harness::new(150, 24).await;
    let first = sync(&h, &["--full-sync"]).await;
    assert!(matches!(first.code, Some(0 | 1)), "{}", first.stderr);
    let before = h.dump().await;
    let stored_cursor = cursor(&h.storage).await;
    let truth = h.sim.ground_truth();
    let placed = ids_in(&before, "tickets");
    let department = truth
        .ticket(placed[0])
        .and_then(|t| t.department_id)
        .unwrap();
    let of_department = placed
        .iter()
        .filter(|id| truth.ticket(**id).unwrap().department_id == Some(department))
        .count() as u64;
    h.sim.set_quirks(Quirks {
        malformed_departments: vec![department],
        ..Quirks::default()
    });
    // Before: those tickets moved to rejects (rows deleted) and the run exited 1.
    let ran = sync(&h, &["--full-sync"]).await;
    assert_eq!(ran.code, Some(2), "{}", ran.stderr);
    assert_eq!(ran.tickets("failed"), of_department, "{}", ran.report);
    assert_eq!(ran.tickets("removed"), 0);
    assert_eq!(h.dump().await, before, "rows moved");
    assert_eq!(cursor(&h.storage).await, stored_cursor, "the cursor moved");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_department_the_list_left_out_is_looked_up_not_rejected() {
    let h = Harness::new(150, 25).await;
    let truth = h.sim.ground_truth();
    let department = truth
        .closed_tickets()
        .find_map(|t| t.department_id)
        .unwrap();
    let quirks = Quirks {
        unlisted_departments: vec![department],
        ..Quirks::default()
    };
    h.sim.set_quirks(quirks.clone());
    let views = h.sim.stats().by_endpoint["department_view"];
    let ran = sync(&h, &["--full-sync"]).await;
    assert!(matches!(ran.code, Some(0 | 1)), "{}", ran.stderr);
    assert_eq!(
        h.sim.stats().by_endpoint["department_view"] - views,
        1,
        "one lookup per department and run"
    );
    assert_eq!(h.dump().await, clean_dump(&h, quirks).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rescan_that_cannot_read_a_ticket_never_deletes_it() {
    let h = Harness::new(200, 13).await;
    h.full_sync().await;
    let since = chrono::Utc::now() - chrono::Duration::days(30);
    let placed = ids_in(&h.dump().await, "tickets");
    let id = h
        .sim
        .ground_truth()
        .closed_tickets()
        .filter(|t| t.closed_at.is_some_and(|c| c >= since))
        .map(|t| t.id)
        .find(|id| placed.contains(id))
        .expect("a recently closed, placed ticket");
    h.sim.add_time_entry(id, 45, true, false);
    h.sim.set_quirks(Quirks {
        malformed_ticket_views: vec![id],
        ..Quirks::default()
    });
    let spec = ticketsync::job::JobSpec {
        rescan_days: Some(30),
        rescan_every_hours: Some(0.0),
        ..h.spec()
    };
    // Before: a view that did not decode counted as deleted, and the ticket was removed.
    let run = h.sync_with(spec, None).await;
    assert_eq!(run.report.tickets.failed, 1, "{:?}", run.report.tickets);
    assert!(run.report.removed.is_empty(), "{:?}", run.report.removed);
    assert!(run.report.next_cursor.is_none());
    assert!(ids_in(&h.dump().await, "tickets").contains(&id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_past_max_run_minutes_stops_commits_and_fails() {
    let h = Harness::with_config(SimConfig {
        tickets: 300,
        seed: 26,
        latency_ms: 300,
        minute_secs: 1.0,
        ..SimConfig::default()
    })
    .await;
    // 0.01 minutes = 0.6 s. At 300 ms a call the run needs at least four calls one after the
    // other (reference data, the first listing page, a ticket's conversations, the deleted
    // view), 1.2 s, however fast the machine.
    let ran = sync(&h, &["--full-sync", "--max-run-minutes", "0.01"]).await;
    assert_eq!(ran.code, Some(2), "{}", ran.stderr);
    assert_eq!(ran.report["status"], "timed_out", "{}", ran.report);
    assert!(ran.stderr.contains("max_run_minutes"), "{}", ran.stderr);
    assert_eq!(cursor(&h.storage).await, None);
    assert!(h
        .storage
        .get(&Path::from("_state/lock.json"))
        .await
        .unwrap()
        .is_none());
    // The next run goes on from there and ends with the dataset a clean run writes.
    let rest = sync(&h, &["--full-sync"]).await;
    assert!(matches!(rest.code, Some(0 | 1)), "{}", rest.stderr);
    assert_eq!(h.dump().await, clean_dump(&h, Quirks::default()).await);
}
