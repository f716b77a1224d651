//! `ticketsync check`: the preflight against the simulator, its exit codes, and its estimate
//! held against a real run.

use serde_json::Value;
use ticketsync::state::lock::Lock;

use crate::support::{Cmd, Harness};

/// `ticketsync check --format json` against the harness's simulator with `key`, on `data`.
async fn run_check(h: &Harness, key: &str, data: &str, extra: &[&str]) -> (Option<i32>, Value) {
    let out = h
        .cmd("check")
        .args(["--format", "json"])
        .api_key(key)
        .data(data)
        .args(["--rate-window-secs", "1"])
        .args(extra)
        .run()
        .await;
    (out.code, out.json())
}

fn within(estimate: f64, actual: f64, share: f64) -> bool {
    (estimate - actual).abs() <= share * actual.max(1.0)
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a count: {v}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_simulator_checks_ok_and_the_estimate_holds_against_a_real_run() {
    let h = Harness::new(300, 31).await;
    let data = h.data();
    let (code, json) = run_check(&h, &h.sim.api_key(), &data, &["--full-sync"]).await;
    assert_eq!(code, Some(0), "{json:#}");
    assert_eq!(json["ok"], true);
    assert_eq!(json["problems"].as_array().unwrap().len(), 0);
    let api = &json["api"];
    assert_eq!(api["reachable"], true);
    assert_eq!(api["key_accepted"], true);
    assert_eq!(api["rate_limit_per_window"], 500, "the Enterprise plan");
    assert!(u(&api["departments"]) > 0);
    let storage = &json["storage"];
    for step in ["list", "write", "read_back", "delete", "conditional_create"] {
        assert_eq!(storage[step], true, "{step}: {storage:#}");
    }
    assert_eq!(storage["format"], "new");
    assert_eq!(json["lock"]["state"], "free");
    // The probe is gone, and nothing else was written.
    assert_eq!(walk(h.dir.path()), Vec::<std::path::PathBuf>::new());
    let estimate = &json["estimate"];
    assert_eq!(estimate["mode"], "full sync");
    assert!(u(&api["credits_used"]) <= 20, "a check is cheap: {api:#}");

    // Departments without an account number, with their closed tickets counted.
    let unmapped = api["unmapped"].as_array().unwrap();
    assert!(!unmapped.is_empty(), "the simulator has some: {api:#}");
    let counted: u64 = unmapped.iter().map(|d| u(&d["closed_tickets"])).sum();

    // The real run.
    let out = h
        .sync_command(&data, &["--full-sync", "--rejects-exit-code", "0"])
        .run()
        .await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let report = &out.report;
    let tickets = &report["tickets"];
    let pairs = [
        ("listed", u(&estimate["listed"]), u(&tickets["listed"])),
        ("closed", u(&estimate["closed"]), u(&tickets["closed"])),
        ("fetched", u(&estimate["fetch"]), u(&tickets["fetched"])),
        (
            "rejected",
            u(&estimate["rejected"]),
            u(&tickets["rejected"]),
        ),
        (
            "credits",
            u(&estimate["credits"]),
            u(&report["api"]["credits_used"]),
        ),
    ];
    for (what, estimated, actual) in pairs {
        eprintln!("{what}: estimated {estimated}, actual {actual}");
        assert!(
            within(estimated as f64, actual as f64, 0.15),
            "{what}: estimated {estimated}, actual {actual} (more than 15 % apart)"
        );
    }
    let by_reason = &report["rejects_by_reason"];
    let unmapped_rejects = by_reason["no_account_number"].as_u64().unwrap_or(0)
        + by_reason["invalid_account_number"].as_u64().unwrap_or(0);
    assert_eq!(counted, unmapped_rejects, "{by_reason:#}");

    // After the run: an incremental check from the stored cursor, with little to do.
    let (code, json) = run_check(&h, &h.sim.api_key(), &data, &[]).await;
    assert_eq!(code, Some(0), "{json:#}");
    assert_eq!(json["estimate"]["mode"], "incremental");
    assert!(json["storage"]["cursor"].is_string());
    assert_eq!(json["storage"]["format"], "current");
    assert!(u(&json["estimate"]["fetch"]) < 10, "{json:#}");
}

/// Every file under `dir` (the dataset a check must leave empty).
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_key_and_unusable_storage_are_both_listed_with_exit_3() {
    let h = Harness::new(20, 32).await;
    // A path under a regular file: no user, root included, can create it.
    let file = h.dir.path().join("a-file");
    std::fs::write(&file, "not a directory").unwrap();
    let data = file.join("data");
    let (code, json) = run_check(&h, "wrong-key", data.to_str().unwrap(), &[]).await;
    assert_eq!(code, Some(3), "{json:#}");
    assert_eq!(json["ok"], false);
    let problems: Vec<&str> = json["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert!(
        problems.iter().any(|p| p.contains("refused the API key")),
        "{problems:?}"
    );
    assert!(
        problems.iter().any(|p| p.starts_with("storage:")),
        "{problems:?}"
    );
    assert_eq!(json["api"]["key_accepted"], false);
    assert_eq!(json["api"]["reachable"], true);
    assert_eq!(json["storage"]["write"], false);
    assert!(json["estimate"].is_null());
    assert!(!json.to_string().contains("wrong-key"));

    // The good key on the same storage: only the storage problem remains.
    let (code, json) = run_check(&h, &h.sim.api_key(), data.to_str().unwrap(), &[]).await;
    assert_eq!(code, Some(3));
    assert_eq!(json["problems"].as_array().unwrap().len(), 1, "{json:#}");

    // Without a key at all (and the human output).
    let out = Cmd::new(["check", "--base-url", &h.sim.base_url()])
        .data(h.dir.path().to_str().unwrap())
        .run()
        .await;
    assert_eq!(out.code, Some(3));
    let text = &out.stdout;
    assert!(text.contains("FRESHSERVICE_API_KEY is not set"), "{text}");
    assert!(text.contains("problem:"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_api_and_an_invalid_job_are_problems() {
    let h = Harness::new(10, 33).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = Cmd::new(["check", "--format", "json"])
        .args(["--base-url", &format!("http://127.0.0.1:{port}")])
        .data(h.dir.path().to_str().unwrap())
        .api_key("k")
        .run()
        .await;
    assert_eq!(out.code, Some(3));
    let json = out.json();
    assert_eq!(json["api"]["reachable"], false, "{json:#}");
    // The storage was still checked.
    assert_eq!(json["storage"]["write"], true, "{json:#}");

    let out = Cmd::new(["check", "--format", "json", "--domain", "acme"])
        .run()
        .await;
    assert_eq!(out.code, Some(3));
    let json = out.json();
    assert!(
        json["problems"][0]
            .as_str()
            .unwrap()
            .contains("no data location"),
        "{json:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_lock_is_reported_with_its_holder_and_never_taken() {
    let h = Harness::new(20, 34).await;
    let lock = Lock::acquire(
        &h.storage,
        "20250101T000000Z-beef",
        std::time::Duration::from_secs(60),
    )
    .await
    .unwrap();
    let (code, json) = run_check(&h, &h.sim.api_key(), &h.data(), &[]).await;
    assert_eq!(code, Some(2), "{json:#}");
    assert_eq!(
        json["ok"], true,
        "a held lock is not a configuration problem"
    );
    assert_eq!(json["lock"]["state"], "held");
    assert_eq!(json["lock"]["holder"]["run_id"], "20250101T000000Z-beef");
    assert!(json["lock"]["holder"]["expires_at"].is_string());
    // The check did not touch the lock.
    lock.check().unwrap();
    lock.release().await.unwrap();
    let (code, json) = run_check(&h, &h.sim.api_key(), &h.data(), &[]).await;
    assert_eq!(code, Some(0));
    assert_eq!(json["lock"]["state"], "free");
}

/// A key that may not read `GET /workspaces` (403) is a problem, not "an account without
/// workspaces": the run would fail on it (before, check passed and the run listed the primary
/// workspace only).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_that_may_not_read_workspaces_is_a_problem() {
    let h = Harness::with_config(ticketsync::sim::SimConfig {
        tickets: 40,
        seed: 7,
        workspaces: 3,
        plan: ticketsync::sim::Plan::Enterprise,
        minute_secs: 1.0,
        ..ticketsync::sim::SimConfig::default()
    })
    .await;
    h.sim.faults().push(
        ticketsync::sim::FaultRule::new(ticketsync::sim::FaultAction::Status(403))
            .endpoint("workspaces"),
    );
    let data = h.dir.path().to_str().unwrap().to_string();
    let (code, json) = run_check(&h, &h.sim.api_key(), &data, &[]).await;
    assert_eq!(code, Some(3), "{json:#}");
    let problems = json["problems"].to_string();
    assert!(problems.contains("GET /workspaces"), "{json:#}");
}
