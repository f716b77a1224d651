//! What must hold on every storage backend, run once on a local directory and once on the
//! in-process S3 server: the same runs write the same dataset, and a second concurrent run is
//! refused.

use std::time::Duration;

use chrono::{DateTime, DurationRound, Utc};
use object_store::path::Path;
use ticketsync::pipeline;
use ticketsync::sim::{Plan, SimConfig};
use ticketsync::storage::layout;

use crate::support::{Backend, Dump, Harness};

/// A fixed "now" a little ahead of the clock: the simulator stamps scripted changes with it, so
/// harnesses on different backends see byte-identical tickets.
pub fn fixed_now() -> DateTime<Utc> {
    (Utc::now() + chrono::Duration::hours(1))
        .duration_trunc(chrono::Duration::minutes(1))
        .unwrap()
}

pub fn config(now: DateTime<Utc>) -> SimConfig {
    SimConfig {
        tickets: 150,
        seed: 31,
        plan: Plan::Enterprise,
        minute_secs: 1.0,
        now,
        ..SimConfig::default()
    }
}

/// `Dump`s must be equal; on failure says which part differs.
pub fn assert_same_dataset(a: &Dump, b: &Dump, what: &str) {
    assert_eq!(a.files, b.files, "{what}: object lists differ");
    assert_eq!(a.markdown, b.markdown, "{what}: markdown differs");
    for (table, rows) in &a.rows {
        assert_eq!(rows, &b.rows[table], "{what}: table {table} differs");
    }
}

/// After a finished run: no journal, no lock, no staging leftovers.
pub async fn assert_settled(h: &Harness) {
    let all = h.storage.list(&Path::from("")).await.unwrap();
    for p in &all {
        assert!(!p.as_ref().starts_with("_staging/"), "staging leftover {p}");
    }
    for name in ["journal.json", "lock.json"] {
        assert!(
            !h.storage.exists(&layout::state(name)).await.unwrap(),
            "{name} left behind"
        );
    }
}

/// A full sync, then an incremental one after one ticket changed and one was added.
async fn full_then_incremental(backend: Backend, now: DateTime<Utc>) -> (Dump, Dump) {
    let h = Harness::on(backend, config(now)).await;
    let full = h.full_sync().await;
    assert!(full.error.is_none(), "{backend:?}: {:?}", full.error);
    assert!(full.report.next_cursor.is_some(), "{backend:?}");
    assert_settled(&h).await;
    let first = h.dump().await;
    assert!(first.files.len() > 10, "{backend:?}: {:?}", first.files);

    let changed: i64 = first
        .markdown
        .keys()
        .next()
        .and_then(|k| k.rsplit_once('/'))
        .and_then(|(_, file)| file.trim_end_matches(".md").parse().ok())
        .expect("a placed ticket");
    h.sim.touch_ticket(changed);
    h.sim.add_closed_ticket();
    let incremental = h.incremental().await;
    assert!(incremental.error.is_none(), "{backend:?}");
    assert_eq!(incremental.report.tickets.fetched, 2, "{backend:?}");
    assert_eq!(incremental.report.window_since, full.report.next_cursor);
    assert_settled(&h).await;
    (first, h.dump().await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_and_s3_write_the_same_dataset() {
    let now = fixed_now();
    let (local, s3) = tokio::join!(
        full_then_incremental(Backend::Local, now),
        full_then_incremental(Backend::S3, now)
    );
    assert_same_dataset(&local.0, &s3.0, "after the full sync");
    assert_same_dataset(&local.1, &s3.1, "after the incremental sync");
    assert_ne!(local.0, local.1, "the incremental run changed something");
}

/// While a (slow) run holds the lock, a second run is refused without writing anything; after
/// the first finished, the next run goes through.
async fn a_second_run_is_refused_while_one_runs(backend: Backend) {
    let h = Harness::on(
        backend,
        SimConfig {
            tickets: 60,
            latency_ms: 40,
            ..config(fixed_now())
        },
    )
    .await;
    let lock = layout::state("lock.json");
    let second = async {
        // Start the second run once the first one holds the lock.
        tokio::time::timeout(Duration::from_secs(30), async {
            while !h.storage.exists(&lock).await.unwrap() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("the first run takes the lock");
        h.try_sync_with(h.full_spec(), None).await
    };
    let (first, second) = tokio::join!(h.full_sync(), second);
    assert!(first.error.is_none(), "{:?}", first.error);
    let err = second.expect_err("the second run is refused");
    assert!(matches!(err, pipeline::Error::Locked(_)), "{err:?}");
    let text = err.to_string();
    assert!(text.contains(&first.report.run_id), "{text}");
    assert!(text.contains("started "), "{text}");
    assert!(text.contains("another run is writing"), "{text}");

    // The refused run wrote nothing: one report, the lock released.
    let reports = h.storage.list(&Path::from("_runs")).await.unwrap();
    assert_eq!(reports.len(), 1, "{reports:?}");
    assert_settled(&h).await;
    let third = h.incremental().await;
    assert!(third.error.is_none());
}

/// A run whose lock was taken over stops before its next commit and keeps the cursor.
async fn a_run_that_lost_its_lock_stops_writing(backend: Backend) {
    let h = Harness::on(
        backend,
        SimConfig {
            tickets: 60,
            latency_ms: 100,
            ..config(fixed_now())
        },
    )
    .await;
    let lock = layout::state("lock.json");
    let intruder = async {
        // Once the run has its lock and talks to the API.
        tokio::time::timeout(Duration::from_secs(30), async {
            while h.sim.stats().requests == 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("the run starts");
        // An operator deletes the lock of a run they think is dead; another run takes it.
        h.storage.delete(&lock).await.unwrap();
        ticketsync::state::lock::Lock::acquire(&h.storage, "someone-else", Duration::from_secs(60))
            .await
            .unwrap()
    };
    let spec = ticketsync::job::JobSpec {
        lock_ttl_secs: Some(1.0),
        checkpoint_every: Some(5),
        concurrency: Some(4),
        ..h.full_spec()
    };
    let (run, other) = tokio::join!(h.sync_with(spec, None), intruder);
    let err = run.error.expect("the run stops");
    assert!(matches!(err, pipeline::Error::LockLost(_)), "{err:?}");
    assert!(err.to_string().contains("lost its lock"), "{err}");
    assert!(run.report.next_cursor.is_none());
    assert!(!h
        .storage
        .exists(&layout::state("cursor.json"))
        .await
        .unwrap());
    // The other run's lock is left alone.
    assert!(h.storage.exists(&lock).await.unwrap());
    other.release().await.unwrap();
}

macro_rules! on_every_backend {
    ($($case:ident),* $(,)?) => {
        mod local {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case(crate::support::Backend::Local).await;
                }
            )*
        }
        mod s3 {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case(crate::support::Backend::S3).await;
                }
            )*
        }
    };
}

on_every_backend!(
    a_second_run_is_refused_while_one_runs,
    a_run_that_lost_its_lock_stops_writing,
);
