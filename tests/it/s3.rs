//! S3 against a real S3 protocol server (in-process, see `support/s3.rs`): runs cut at chosen
//! points of their S3 traffic, a killed binary, multipart uploads, wrong credentials, a missing
//! bucket, a locked dataset. Every-backend suites are in `backends.rs`.

use std::time::{Duration, Instant};

use bytes::Bytes;
use object_store::path::Path;
use rand::{Rng, SeedableRng};
use ticketsync::job::JobSpec;
use ticketsync::state::lock::Lock;
use ticketsync::storage::{layout, MULTIPART_THRESHOLD};

use crate::backends::{assert_same_dataset, assert_settled, config, fixed_now};
use crate::support::s3::{S3Server, BUCKET, SECRET_KEY};
use crate::support::{expire_lock, Backend, Cmd, Dump, Harness, S3_PREFIX};

/// The simulated account of these tests: smaller than the every-backend suite's, since every
/// test here runs several syncs.
fn small(now: chrono::DateTime<chrono::Utc>) -> ticketsync::sim::SimConfig {
    ticketsync::sim::SimConfig {
        tickets: 70,
        ..config(now)
    }
}

/// The dataset a clean, uninterrupted full sync of `small(now)` writes.
async fn clean_dump(now: chrono::DateTime<chrono::Utc>) -> Dump {
    let clean = Harness::on(Backend::Local, small(now)).await;
    let run = clean.full_sync().await;
    assert!(run.error.is_none(), "{:?}", run.error);
    clean.dump().await
}

/// Runs cut after a seeded number of S3 requests (the server stops answering, the run is
/// dropped like a killed process), then rerun: every rerun ends with the clean dataset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_cut_anywhere_in_their_s3_traffic_converge_on_the_clean_result() {
    let now = fixed_now();
    // A clean run: its dataset, and how much S3 traffic a whole run makes.
    let probe = Harness::on(Backend::S3, small(now)).await;
    let spec = JobSpec {
        checkpoint_every: Some(15),
        ..probe.full_spec()
    };
    let run = probe.sync_with(spec, None).await;
    assert!(run.error.is_none(), "{:?}", run.error);
    let total = probe.s3.as_ref().unwrap().served();
    let clean = probe.dump().await;

    let mut rng = rand::rngs::SmallRng::seed_from_u64(4);
    // Not too close to the end: lock refreshes make the count vary a little between runs.
    let mut cuts: Vec<usize> = (0..3).map(|_| rng.gen_range(1..total * 3 / 4)).collect();
    cuts.sort();
    for cut in cuts {
        let h = Harness::on(Backend::S3, small(now)).await;
        let server = h.s3.as_ref().unwrap();
        let spec = JobSpec {
            checkpoint_every: Some(15),
            ..h.full_spec()
        };
        let hung = server.hang_after(cut);
        // Whichever comes first: the run finishing, or the server going silent at the cut.
        tokio::select! {
            _ = h.sync_with(spec.clone(), None) => panic!("cut {cut} of {total}: the run finished"),
            () = hung => {}
        }
        server.resume();
        // The killed run's lock expires; the next (incremental) run takes it over.
        expire_lock(&h.storage).await;
        let rerun = h
            .sync_with(
                JobSpec {
                    full_sync: None,
                    ..spec
                },
                None,
            )
            .await;
        assert!(rerun.error.is_none(), "cut {cut}: {:?}", rerun.error);
        assert_settled(&h).await;
        assert_same_dataset(&clean, &h.dump().await, &format!("cut {cut} of {total}"));
    }
}

/// The real binary, configured by the standard AWS variables alone, SIGKILLed mid-run; the next
/// run takes over its expired lock and finishes with the clean dataset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_binary_is_finished_by_the_next_run() {
    let now = fixed_now();
    let h = Harness::on(Backend::S3, small(now)).await;
    let server = h.s3.as_ref().unwrap();
    let sync = h
        .sync_command(&server.url(S3_PREFIX), &["--checkpoint-every", "15"])
        .args(["--log-format", "json"]);

    let mut child = sync.spawn();
    // Kill it once it is well into its commits.
    let deadline = Instant::now() + Duration::from_secs(60);
    while server.served() < 200 && Instant::now() < deadline {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    child.kill().unwrap();
    let killed = child.wait().unwrap();
    assert_eq!(killed.code(), None, "killed by a signal");
    assert!(
        h.storage.exists(&layout::state("lock.json")).await.unwrap(),
        "the killed run left its lock"
    );

    // Its lock expires (it refreshes no more); the next run takes it over.
    expire_lock(&h.storage).await;
    let out = sync.run().await;
    let stderr = &out.stderr;
    assert_eq!(out.code, Some(1), "{stderr}");
    assert!(stderr.contains("taking over the lock"), "{stderr}");
    assert!(!stderr.contains(SECRET_KEY), "{stderr}");
    assert_settled(&h).await;
    assert_same_dataset(&clean_dump(now).await, &h.dump().await, "after the kill");
    for report in h.storage.list(&Path::from("_runs")).await.unwrap() {
        let body = h.storage.get(&report).await.unwrap().unwrap();
        assert!(!String::from_utf8_lossy(&body).contains(SECRET_KEY));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_fail_clearly_leave_the_cursor_and_never_print_the_secret() {
    let h = Harness::on(Backend::S3, small(fixed_now())).await;
    let server = h.s3.as_ref().unwrap();
    let first = h.full_sync().await;
    assert!(first.error.is_none());
    let cursor = layout::state("cursor.json");
    let cursor_before = h.storage.get(&cursor).await.unwrap().expect("a cursor");

    let wrong = "wrong-secret-5d1c8e-must-not-leak";
    let data = server.url(S3_PREFIX);
    let out = h
        .cmd("sync")
        .data(&data)
        .env("AWS_SECRET_ACCESS_KEY", wrong)
        .env("AWS_SESSION_TOKEN", "session-token-also-secret")
        .run()
        .await;
    let stderr = &out.stderr;
    assert_eq!(out.code, Some(3), "{stderr}");
    assert!(stderr.contains("refused the credentials"), "{stderr}");
    assert!(stderr.contains(&data), "names the location: {stderr}");
    assert!(!stderr.contains(wrong), "the secret leaked: {stderr}");
    assert!(!stderr.contains("session-token-also-secret"), "{stderr}");
    assert_eq!(
        h.storage.get(&cursor).await.unwrap().unwrap(),
        cursor_before
    );
    assert_eq!(h.storage.list(&Path::from("_runs")).await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bucket_that_does_not_exist_is_a_clear_error() {
    let server = S3Server::start().await;
    let out = Cmd::new(["sync", "--base-url", "http://127.0.0.1:9"])
        .data("s3://no-such-bucket/exports")
        .s3(&server)
        .api_key("unused")
        .run()
        .await;
    let stderr = &out.stderr;
    assert_eq!(out.code, Some(3), "{stderr}");
    assert!(
        stderr.contains("the bucket of s3://no-such-bucket/exports does not exist"),
        "{stderr}"
    );
    assert!(!stderr.contains(SECRET_KEY), "{stderr}");
    assert!(!server.root.path().join("no-such-bucket").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_dataset_exits_2_naming_the_other_run() {
    let h = Harness::on(Backend::S3, small(fixed_now())).await;
    let server = h.s3.as_ref().unwrap();
    let other = Lock::acquire(&h.storage, "20990101T000000Z-beef", Duration::from_secs(60))
        .await
        .unwrap();
    let out = h.cmd("sync").data(server.url(S3_PREFIX)).run().await;
    let stderr = &out.stderr;
    assert_eq!(out.code, Some(2), "{stderr}");
    for needle in [
        "another run is writing",
        "run 20990101T000000Z-beef on ",
        "started ",
        "_state/lock.json",
    ] {
        assert!(stderr.contains(needle), "{needle}: {stderr}");
    }
    // Nothing was written.
    let all = h.storage.list(&Path::from("")).await.unwrap();
    assert_eq!(all, vec![layout::state("lock.json")]);
    other.release().await.unwrap();
}

/// Objects above the multipart threshold go up in parts and come back whole; the staged rename
/// (copy + delete on S3) moves them intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_objects_go_up_as_multipart_and_rename_intact() {
    let server = S3Server::start().await;
    let storage = server.storage(S3_PREFIX);
    let size = MULTIPART_THRESHOLD + 4 * 1024 * 1024 + 123;
    let mut body = vec![0u8; size];
    rand::rngs::SmallRng::seed_from_u64(9).fill(&mut body[..]);
    let body = Bytes::from(body);
    let staged = layout::Scope::Home.staged("t1", &Path::from("tickets/big.parquet"));
    let final_path = Path::from("tickets/big.parquet");

    let before = server.served();
    storage.put(&staged, body.clone()).await.unwrap();
    let requests = &server.requests()[before..];
    let parts = requests
        .iter()
        .filter(|r| r.method == "PUT" && r.query.contains("partNumber="))
        .count();
    assert!(
        requests
            .iter()
            .any(|r| r.method == "POST" && r.query.contains("uploads")),
        "{requests:?}"
    );
    assert_eq!(parts, 3, "{requests:?}");

    assert!(storage.rename(&staged, &final_path).await.unwrap());
    assert_eq!(storage.get(&staged).await.unwrap(), None);
    assert_eq!(storage.get(&final_path).await.unwrap().unwrap(), body);
    let on_disk = server
        .root
        .path()
        .join(BUCKET)
        .join(S3_PREFIX)
        .join("tickets/big.parquet");
    assert_eq!(std::fs::metadata(on_disk).unwrap().len(), size as u64);

    // A small object is one plain PUT.
    let before = server.served();
    storage
        .put(&Path::from("_probe/small"), Bytes::from_static(b"x"))
        .await
        .unwrap();
    let requests = &server.requests()[before..];
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert_eq!(requests[0].method, "PUT");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditional_create_is_honoured_by_the_server() {
    let server = S3Server::start().await;
    let storage = server.storage(S3_PREFIX);
    let path = Path::from("_state/lock.json");
    assert!(storage
        .create(&path, Bytes::from_static(b"a"))
        .await
        .unwrap());
    assert!(!storage
        .create(&path, Bytes::from_static(b"b"))
        .await
        .unwrap());
    assert_eq!(
        storage.get(&path).await.unwrap().unwrap(),
        Bytes::from_static(b"a")
    );
    // Two conditional PUTs; no head-then-put fallback.
    let methods: Vec<String> = server
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/_state/lock.json"))
        .map(|r| r.method.clone())
        .collect();
    assert_eq!(methods, ["PUT", "PUT", "GET"]);
}

/// Issue 19: of several runs taking over an expired lock at once on S3, exactly one wins (the
/// takeover is a conditional create of a claim on that lock version, not a delete).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_runs_taking_over_an_expired_lock_on_s3_exactly_one_wins() {
    let h = Harness::on(Backend::S3, small(fixed_now())).await;
    for round in 0..10 {
        let long_ago = chrono::Utc::now() - chrono::Duration::hours(2);
        let stale = ticketsync::state::lock::LockInfo {
            run_id: format!("killed-{round}"),
            host: "a-node-that-is-gone".into(),
            pid: 4242,
            boot_id: None,
            pid_ns: None,
            started_at: long_ago,
            refreshed_at: long_ago,
            expires_at: long_ago + chrono::Duration::minutes(10),
        };
        h.storage
            .put(
                &layout::state("lock.json"),
                serde_json::to_vec(&stale).unwrap().into(),
            )
            .await
            .unwrap();
        let runs = (0..4).map(|n| {
            let storage = h.storage.clone();
            tokio::spawn(async move {
                Lock::acquire(
                    &storage,
                    &format!("run-{round}-{n}"),
                    Duration::from_secs(60),
                )
                .await
            })
        });
        let won: Vec<Lock> = futures::future::join_all(runs)
            .await
            .into_iter()
            .filter_map(|r| r.unwrap().ok())
            .collect();
        assert_eq!(
            won.len(),
            1,
            "round {round}: {} runs took the lock",
            won.len()
        );
        for lock in won {
            lock.verify().await.unwrap();
            lock.release().await.unwrap();
        }
        let left: Vec<_> = h.storage.list(&Path::from("_state")).await.unwrap();
        assert!(left.is_empty(), "round {round}: {left:?}");
    }
}
