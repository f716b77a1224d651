//! Never trust the API (or the job file) blindly: the real binary against a simulator that
//! sends absurd rate-limit headers, absurd `Retry-After` values and huge bodies, and job values
//! that are out of range.

use std::time::{Duration, Instant};

use chrono::{DurationRound, Utc};
use ticketsync::sim::{FaultAction, FaultRule, Plan, SimConfig};
use ticketsync::storage::layout;

use crate::backends::assert_same_dataset;
use crate::support::{Cmd, Harness, Ran};

fn config(now: chrono::DateTime<Utc>) -> SimConfig {
    SimConfig {
        tickets: 80,
        seed: 31,
        plan: Plan::Enterprise,
        minute_secs: 1.0,
        now,
        ..SimConfig::default()
    }
}

/// `ticketsync sync` against the harness's simulator (full sync, its 1-second rate window),
/// killed after two minutes: a run that would sleep for decades fails the test instead of
/// hanging it.
async fn sync(h: &Harness, extra: &[&str]) -> Ran {
    h.sync_command(&h.data(), &[&["--full-sync"], extra].concat())
        .timeout(Duration::from_secs(120))
        .run()
        .await
}

fn absurd(total: &'static str, remaining: &'static str, used: &'static str) -> FaultAction {
    FaultAction::AbsurdHeaders {
        total,
        remaining,
        used,
    }
}

/// Rate-limit headers that are negative, non-numeric, 1e20, 2^32 − 1, a remainder above the
/// total, a total of 0, and 429s whose `Retry-After` is 2^32 − 1 seconds, 1e20, garbage or a
/// date in the year 9999: the run finishes in bounded time with the dataset of a clean run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absurd_rate_headers_and_retry_after_leave_the_clean_dataset() {
    let now = Utc::now()
        .duration_trunc(chrono::Duration::minutes(1))
        .unwrap();
    let clean = Harness::with_config(config(now)).await;
    let clean_out = sync(&clean, &[]).await;
    let clean_code = clean_out.code;
    assert!(matches!(clean_code, Some(0 | 1)), "{}", clean_out.stderr);

    let faulty = Harness::with_config(config(now)).await;
    let rules = [
        FaultRule::new(absurd("0", "-5", "abc"))
            .endpoint("tickets_list")
            .times(2),
        FaultRule::new(absurd("500", "99999", "-1"))
            .endpoint("departments")
            .times(1),
        FaultRule::new(absurd("-500", "0", "0"))
            .endpoint("agents")
            .times(1),
        FaultRule::new(absurd("4294967295", "4294967295", "4294967295"))
            .endpoint("conversations")
            .times(10),
        FaultRule::new(absurd("1e20", "1e20", "1e20"))
            .endpoint("time_entries")
            .times(10),
        FaultRule::new(FaultAction::RateLimited {
            retry_after_secs: 4_294_967_295,
        })
        .endpoint("time_entries")
        .skip(12)
        .times(1),
        FaultRule::new(FaultAction::RateLimitedRaw {
            retry_after: "1e20",
        })
        .endpoint("conversations")
        .skip(12)
        .times(1),
        FaultRule::new(FaultAction::RateLimitedRaw { retry_after: "abc" })
            .endpoint("conversations")
            .skip(20)
            .times(1),
        FaultRule::new(FaultAction::RateLimitedRaw {
            retry_after: "Fri, 31 Dec 9999 23:59:59 GMT",
        })
        .endpoint("time_entries")
        .skip(20)
        .times(1),
    ];
    for rule in rules {
        faulty.sim.faults().push(rule);
    }
    let started = Instant::now();
    let out = sync(&faulty, &[]).await;
    let stderr = &out.stderr;
    assert_eq!(out.code, clean_code, "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(faulty.sim.faults().pending(), 0, "every fault was hit");
    // Four 429s cost at most three 1-second windows each, not decades.
    assert!(
        started.elapsed() < Duration::from_secs(90),
        "{:?}",
        started.elapsed()
    );

    assert_same_dataset(&clean.dump().await, &faulty.dump().await, "absurd headers");
}

/// A body above `max_response_mb` fails the run (exit 2) naming the URL path, whether it is a
/// chunked listing page or a conversations page announced by `Content-Length`; the cursor does
/// not move; a clean rerun then goes through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_above_max_response_mb_fails_the_run_and_keeps_the_cursor() {
    let h = Harness::with_config(config(Utc::now())).await;
    let job = h.dir.path().join("capped.toml");
    std::fs::write(&job, "max_response_mb = 1\n").unwrap();
    let job = job.to_str().unwrap().to_string();
    let cursor = layout::state("cursor.json");
    let three_mib = 3 << 20;

    // A listing page of 3 MiB, chunked (no Content-Length): the run fails.
    h.sim.faults().push(
        FaultRule::new(FaultAction::HugeBody {
            bytes: three_mib,
            content_length: false,
        })
        .endpoint("tickets_list"),
    );
    let out = sync(&h, &["--job", &job]).await;
    let stderr = &out.stderr;
    assert_eq!(out.code, Some(2), "{stderr}");
    assert!(stderr.contains("/api/v2/tickets:"), "{stderr}");
    assert!(stderr.contains("max_response_mb"), "{stderr}");
    assert!(
        !stderr.contains("updated_since"),
        "no query string: {stderr}"
    );
    assert!(!h.storage.exists(&cursor).await.unwrap());
    // Asked for once: a body that large is not retried (it would be as large again).
    let log = h.sim.stats().log;
    let listing: Vec<_> = log
        .iter()
        .filter(|r| r.endpoint == "tickets_list")
        .collect();
    assert_eq!(listing.len(), 1, "{listing:?}");
    let seen = log.len();

    // A conversations page of 3 MiB with Content-Length: that ticket fails, so does the run.
    h.sim.faults().push(
        FaultRule::new(FaultAction::HugeBody {
            bytes: three_mib,
            content_length: true,
        })
        .endpoint("conversations"),
    );
    let out = sync(&h, &["--job", &job]).await;
    let stderr = &out.stderr;
    assert_eq!(out.code, Some(2), "{stderr}");
    assert!(stderr.contains("/conversations:"), "{stderr}");
    assert!(stderr.contains("max_response_mb"), "{stderr}");
    assert!(!h.storage.exists(&cursor).await.unwrap());
    assert_eq!(h.sim.faults().pending(), 0);
    let log = h.sim.stats().log;
    let first = log[seen..]
        .iter()
        .find(|r| r.endpoint == "conversations")
        .unwrap();
    let asked = log[seen..]
        .iter()
        .filter(|r| r.path_and_query == first.path_and_query)
        .count();
    assert_eq!(asked, 1, "not retried: {}", first.path_and_query);

    // Without the fault the same job goes through and moves the cursor.
    let out = sync(&h, &["--job", &job]).await;
    assert!(matches!(out.code, Some(0 | 1)), "{}", out.stderr);
    assert!(h.storage.exists(&cursor).await.unwrap());
}

/// Out-of-range numbers on the command line or in a job file are configuration errors (exit 3)
/// naming the key and the range, never a panic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn numbers_out_of_range_exit_3_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap().to_string();
    let configured = || {
        Cmd::new(["sync"])
            .api_key("k")
            .timeout(Duration::from_secs(60))
    };
    let out = configured()
        .args(["--domain", "acme"])
        .data(&data)
        .args(["--rate-window-secs", "1e20"])
        .run()
        .await;
    let stderr = &out.stderr;
    assert_eq!(out.code, Some(3), "{stderr}");
    assert!(
        stderr.contains("rate_window_secs = 100000000000000000000 is out of range: allowed 0.001 to 3600 seconds"),
        "{stderr}"
    );

    // In a job file: a number that would overflow a Duration, and a simulator setting.
    for (file, needle) in [
        (
            "domain = \"acme\"\nrescan_every_hours = 1e20\n",
            "allowed 0 to 8760 hours",
        ),
        (
            "[simulator]\nminute_secs = 1e20\n",
            "simulator.minute_secs = 100000000000000000000 is out of range",
        ),
    ] {
        let job = dir.path().join("job.toml");
        std::fs::write(&job, file).unwrap();
        let out = configured()
            .args(["--job", job.to_str().unwrap()])
            .data(&data)
            .run()
            .await;
        let stderr = &out.stderr;
        assert_eq!(out.code, Some(3), "{file}: {stderr}");
        assert!(stderr.contains(needle), "{file}: {stderr}");
    }
}
