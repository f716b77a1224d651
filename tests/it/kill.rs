//! Crash safety: the real binary is killed with SIGKILL at seeded random moments (while
//! listing, fetching, writing Parquet and markdown, committing), then rerun to completion; the
//! dataset must equal a clean run's, table for table and document for document. CI runs 20
//! kill points; [`soak`] runs as many as asked for.

use std::time::{Duration, Instant};

use chrono::{DurationRound, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use ticketsync::sim::{Plan, SimConfig, Simulator};
use ticketsync::storage::{S3Options, Storage};

use crate::support::planted::{self, Planted};
use crate::support::{reports, Cmd, Dump};

/// A quiet full sync of `sim` into `data`.
fn command(sim: &Simulator, data: &str) -> Cmd {
    Cmd::new(["sync"])
        .sim(sim)
        .data(data)
        .args(["--full-sync", "--rate-window-secs", "1"])
        .args(["--checkpoint-every", "15"])
        .env("TICKETSYNC_ERASURE_KEY", ERASURE_KEY)
        .quiet()
}

/// One erasure key for every dataset of a test, so pseudonyms compare equal.
const ERASURE_KEY: &str = "6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b";

async fn dump(dir: &std::path::Path) -> Dump {
    let storage = Storage::open(dir.to_str().unwrap(), &S3Options::default()).unwrap();
    Dump::of(&storage).await
}

/// CI's share of the crash-safety check: 20 kill points on 100 tickets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_at_any_moment_then_rerun_equals_a_clean_run() {
    kill_and_rerun(Soak {
        points: 20,
        tickets: 100,
        seed: 20_251_126,
        forgotten: false,
    })
    .await;
}

/// The privacy oracle under kills (issue 19): a person forgotten before the first sync, with
/// no name known, whose name and address other tickets mention in every encoding a mail client
/// writes, and secrets planted in texts and custom fields. Killed at any moment — between
/// learning the name and committing it too — and rerun: the dataset equals a clean run's, and
/// no table, document, `_runs/` report, `_state/` file, log line or metric holds the person or
/// a secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_at_any_moment_a_forgotten_person_and_secrets_never_come_back() {
    kill_and_rerun(Soak {
        points: 8,
        tickets: 100,
        seed: 20_261_202,
        forgotten: true,
    })
    .await;
}

/// Plants the privacy oracle's person and secrets (see [`crate::support::planted`]): the
/// person with the most tickets a probe run places.
async fn plant(sim: &Simulator) -> Planted {
    let probe = tempfile::tempdir().unwrap();
    let ran = command(sim, probe.path().to_str().unwrap()).run().await;
    assert!(matches!(ran.code, Some(0 | 1)), "probe run: {ran:?}");
    let person = planted::busiest_placed(sim, &dump(probe.path()).await);
    planted::plant(sim, &person)
}

/// Forgets the planted person in `data` before any sync (no name known).
async fn forget_first(data: &str, planted: &Planted) {
    std::fs::create_dir_all(data).unwrap();
    let ran = Cmd::new(["forget", "--data", data, "--email", planted.email.as_str()])
        .env("TICKETSYNC_ERASURE_KEY", ERASURE_KEY)
        .quiet()
        .run()
        .await;
    assert_eq!(ran.code, Some(0), "forget: {}", ran.stderr);
}

/// Where the planted person or a secret shows: tables and documents (decoded), every other
/// file of the dataset (`_runs/`, `_state/`) as text, and `outputs` (log lines, metrics).
fn leaks(dir: &std::path::Path, dump: &Dump, outputs: &[String], planted: &Planted) -> Vec<String> {
    let mut texts: Vec<(String, String)> = walk(dir)
        .into_iter()
        .filter(|f| f.extension().is_none_or(|e| e != "parquet"))
        .map(|f| {
            let bytes = std::fs::read(&f).unwrap_or_default();
            (
                f.display().to_string(),
                String::from_utf8_lossy(&bytes).into_owned(),
            )
        })
        .collect();
    texts.extend(
        outputs
            .iter()
            .enumerate()
            .map(|(i, out)| (format!("output {i}"), out.clone())),
    );
    planted.leaks(dump, &texts)
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out
}

/// The same check at any size, for a soak outside CI:
///
/// ```text
/// KILL_POINTS=200 KILL_TICKETS=300 KILL_SEED=7 \
///     cargo test --release --test it kill::soak -- --ignored --nocapture
/// ```
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a long soak; run it by name"]
async fn soak() {
    let var = |name: &str, default: u64| {
        std::env::var(name).map_or(default, |v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name}={v} is not a number"))
        })
    };
    kill_and_rerun(Soak {
        points: var("KILL_POINTS", 100) as usize,
        tickets: var("KILL_TICKETS", 200) as usize,
        seed: var("KILL_SEED", 7),
        forgotten: std::env::var("KILL_FORGOTTEN").is_ok(),
    })
    .await;
}

struct Soak {
    points: usize,
    tickets: usize,
    /// Seed of the kill moments.
    seed: u64,
    /// A person forgotten first and secrets planted: the privacy oracle checks every rerun.
    forgotten: bool,
}

/// Kills a full sync at `points` seeded moments (every second point twice in a row), reruns it
/// to completion each time and compares the dataset with a clean run's.
async fn kill_and_rerun(soak: Soak) {
    let config = SimConfig {
        tickets: soak.tickets,
        seed: 41,
        plan: Plan::Enterprise,
        minute_secs: 1.0,
        latency_ms: 3,
        now: Utc::now()
            .duration_trunc(chrono::Duration::minutes(1))
            .unwrap(),
        ..SimConfig::default()
    };
    let sim = Simulator::start(config, 0).await.unwrap();
    let planted = match soak.forgotten {
        true => Some(plant(&sim).await),
        false => None,
    };
    let metrics_dir = tempfile::tempdir().unwrap();
    let metrics = metrics_dir.path().join("ticketsync.prom");
    // Log lines at `info` and the metrics file: the privacy oracle reads them too.
    let checked = |data: &str| {
        let cmd = command(&sim, data);
        if planted.is_some() {
            cmd.log("info")
                .args(["--metrics-file", metrics.to_str().unwrap()])
        } else {
            cmd
        }
    };

    let clean_dir = tempfile::tempdir().unwrap();
    let clean_data = clean_dir.path().to_str().unwrap().to_string();
    if let Some(p) = &planted {
        forget_first(&clean_data, p).await;
    }
    let started = Instant::now();
    let ran = checked(&clean_data).run().await;
    let clean_time = started.elapsed();
    let clean_requests = sim.requests();
    assert!(matches!(ran.code, Some(0 | 1)), "clean run: {ran:?}");
    let clean = dump(clean_dir.path()).await;
    assert!(!clean.table("tickets").is_empty());
    if let Some(p) = &planted {
        let outputs = [
            ran.stdout.clone(),
            ran.stderr.clone(),
            std::fs::read_to_string(&metrics).unwrap(),
        ];
        let found = leaks(clean_dir.path(), &clean, &outputs, p);
        assert!(found.is_empty(), "clean run: {found:#?}");
    }

    let mut rng = StdRng::seed_from_u64(soak.seed);
    let mut killed_mid_run = 0;
    for point in 0..soak.points {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().to_str().unwrap().to_string();
        if let Some(p) = &planted {
            forget_first(&data, p).await;
        }
        // Up to two kills in a row before the run is allowed to finish. A kill moment is a
        // share of the clean run's requests, then a few milliseconds more (so kills also land
        // between requests: in a Parquet write, a commit): a clock would hit different moments
        // on a busy and an idle machine.
        for _ in 0..(1 + point % 2) {
            let target = (clean_requests as f64 * rng.gen_range(0.02..1.0)) as u64;
            let extra = Duration::from_micros(rng.gen_range(0..20_000));
            let before = sim.requests();
            let mut child = command(&sim, &data).spawn();
            while sim.requests() - before < target && child.try_wait().unwrap().is_none() {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            tokio::time::sleep(extra).await;
            if child.try_wait().unwrap().is_none() {
                killed_mid_run += 1;
            }
            let _ = child.kill(); // SIGKILL
            let _ = child.wait();
        }
        let ran = checked(&data).run().await;
        assert!(
            matches!(ran.code, Some(0 | 1)),
            "kill point {point}: rerun {ran:?}"
        );
        let after = dump(dir.path()).await;
        crate::backends::assert_same_dataset(&clean, &after, &format!("kill point {point}"));
        if let Some(p) = &planted {
            let outputs = [
                ran.stdout.clone(),
                ran.stderr.clone(),
                std::fs::read_to_string(&metrics).unwrap(),
            ];
            let found = leaks(dir.path(), &after, &outputs, p);
            assert!(found.is_empty(), "kill point {point}: {found:#?}");
        }
    }
    println!(
        "survived {} kill points, {killed_mid_run} kills hit a running sync (clean run {:.2} s, {clean_requests} requests)",
        soak.points,
        clean_time.as_secs_f64()
    );
    assert!(
        killed_mid_run >= soak.points / 2,
        "most kills must hit a running sync ({killed_mid_run})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_killed_late_resumes_without_refetching_finished_tickets() {
    let config = SimConfig {
        tickets: 200,
        seed: 42,
        plan: Plan::Enterprise,
        minute_secs: 1.0,
        latency_ms: 5,
        ..SimConfig::default()
    };
    let sim = Simulator::start(config, 0).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap().to_string();
    let since = Utc::now() - chrono::Duration::days(365);
    let closed = sim
        .ground_truth()
        .closed_tickets()
        .filter(|t| t.updated_at >= since)
        .count();
    let mut child = command(&sim, &data).spawn();
    // Kill at about 80 %: once the index and the checkpoints hold that share of the closed
    // tickets.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let committed = durable_tickets(dir.path());
        if committed * 5 >= closed * 4
            || child.try_wait().unwrap().is_some()
            || Instant::now() > deadline
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    let before = sim.stats().endpoint("conversations");
    let ran = command(&sim, &data).run().await;
    assert!(matches!(ran.code, Some(0 | 1)));
    let refetched = sim.stats().endpoint("conversations") - before;
    let resumed = reports(dir.path())
        .into_iter()
        .find(|r| r["status"] != "failed")
        .expect("the rerun's report");
    let reused = resumed["tickets"]["unchanged"].as_u64().unwrap();
    let fetched = resumed["tickets"]["fetched"].as_u64().unwrap();
    assert!(reused > 0, "the rerun reused committed tickets: {resumed}");
    assert!(
        (fetched as f64) < 0.3 * (reused + fetched) as f64,
        "refetched {fetched} of {} ({refetched} conversation calls)",
        reused + fetched
    );
}

/// Tickets a killed run would not fetch again: those in the index and in the checkpoints
/// not yet committed to the tables (`_pending/*/segment.json`).
fn durable_tickets(dir: &std::path::Path) -> usize {
    let read = |path: std::path::PathBuf| {
        std::fs::read(path)
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
    };
    let mut ids = std::collections::BTreeSet::new();
    if let Some(index) = read(dir.join("_state/index.json")) {
        for row in index["tickets"].as_array().into_iter().flatten() {
            ids.extend(row[0].as_i64());
        }
    }
    for entry in std::fs::read_dir(dir.join("_pending"))
        .into_iter()
        .flatten()
        .flatten()
    {
        if let Some(segment) = read(entry.path().join("segment.json")) {
            for t in segment["tickets"].as_array().into_iter().flatten() {
                ids.extend(t["id"].as_i64());
            }
        }
    }
    ids.len()
}
