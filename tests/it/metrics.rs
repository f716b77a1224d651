//! Run metrics: the textfile for node_exporter after good and failed runs, and a real
//! Pushgateway (Debian's `prometheus-pushgateway`, started by `.ci/run`) that keeps the last
//! success across a failed run.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use ticketsync::metrics::LAST_SUCCESS;

use crate::support::{Cmd, Harness};

/// The env var `.ci/run` sets to the URL of the Pushgateway it started.
const PUSHGATEWAY_ENV: &str = "TICKETSYNC_TEST_PUSHGATEWAY";

fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// A sync against the harness's simulator with `key` as the API key and `extra` flags.
fn sync(h: &Harness, key: &str, extra: &[&str]) -> Cmd {
    h.sync_command(&h.data(), &["--rejects-exit-code", "0"])
        .api_key(key)
        .args(extra)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_textfile_is_written_after_every_run_and_keeps_the_last_success() {
    let h = Harness::new(60, 21).await;
    let textfiles = tempfile::tempdir().unwrap();
    let prom = textfiles.path().join("ticketsync.prom");
    let prom_arg = prom.to_str().unwrap();

    let out = sync(&h, &h.sim.api_key(), &["--metrics-file", prom_arg])
        .run()
        .await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let good = read(&prom);
    assert_eq!(sample(&good, "ticketsync_run_success"), Some(1.0), "{good}");
    let success = sample(&good, LAST_SUCCESS).expect("a success writes its timestamp");
    let written = sample(&good, "ticketsync_run_tickets{outcome=\"written\"}").unwrap();
    assert!(written > 0.0, "{good}");
    assert!(sample(&good, "ticketsync_dataset_newest_closed_timestamp_seconds").is_some());

    // A wrong key: exit 3, and the metrics say so, with the last success kept.
    let out = sync(&h, "wrong-key", &["--metrics-file", prom_arg])
        .run()
        .await;
    assert_eq!(out.code, Some(3));
    let failed = read(&prom);
    assert_eq!(
        sample(&failed, "ticketsync_run_success"),
        Some(0.0),
        "{failed}"
    );
    assert_eq!(
        sample(&failed, "ticketsync_run_status{status=\"error\"}"),
        Some(1.0)
    );
    assert_eq!(sample(&failed, LAST_SUCCESS), Some(success), "{failed}");
    assert!(!failed.contains("wrong-key"));
    // Only the file itself is in the directory (the temporary file was renamed).
    let names: Vec<_> = std::fs::read_dir(textfiles.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, ["ticketsync.prom"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_push_is_a_warning_not_a_failed_run() {
    let h = Harness::new(30, 22).await;
    // A port nothing listens on (bound, then released).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://user:hunter2@127.0.0.1:{port}");
    let out = sync(&h, &h.sim.api_key(), &["--pushgateway", &url])
        .run()
        .await;
    let stderr = &out.stderr;
    assert_eq!(out.code, Some(0), "{stderr}");
    assert!(stderr.contains("metrics not pushed"), "{stderr}");
    assert!(!stderr.contains("hunter2"), "{stderr}");
    let report = &out.report;
    let warnings = report["warnings"]
        .as_array()
        .expect("warnings in the report");
    assert!(
        warnings[0]
            .as_str()
            .unwrap()
            .contains("cannot push the metrics"),
        "{warnings:?}"
    );
    assert!(!report.to_string().contains("hunter2"));
}

/// The group `job="ticketsync", instance=<instance>` as the Pushgateway's API shows it.
async fn group(base: &str, instance: &str) -> Option<Value> {
    let body: Value = reqwest::get(format!("{base}/api/v1/metrics"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["labels"]["job"] == "ticketsync" && g["labels"]["instance"] == instance)
        .cloned()
}

/// A metric's value in a group (the first series with `labels`, all of which must match).
fn value(group: &Value, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    group[name]["metrics"]
        .as_array()?
        .iter()
        .find(|m| labels.iter().all(|(k, v)| m["labels"][*k] == *v))?["value"]
        .as_str()?
        .parse()
        .ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_pushgateway_keeps_the_last_success_across_a_failed_run() {
    let Ok(base) = std::env::var(PUSHGATEWAY_ENV) else {
        // Straight to the process's stderr: libtest would swallow an `eprintln!` of a test
        // that passes, and this skip must be seen.
        use std::io::Write as _;
        let _ = writeln!(
            std::io::stderr(),
            "\n*** SKIPPED: {PUSHGATEWAY_ENV} is not set, so the Pushgateway test did not run. \
             .ci/run starts Debian's prometheus-pushgateway and sets it; to run it here: \
             apt-get install prometheus-pushgateway, start it on 127.0.0.1:PORT and export \
             {PUSHGATEWAY_ENV}=http://127.0.0.1:PORT ***\n"
        );
        return;
    };
    let base = base.trim_end_matches('/').to_string();
    let h = Harness::new(40, 23).await;
    // The harness names the dataset's domain (`--domain acme`): the instance label.
    let instance = ticketsync::metrics::instance(Some("acme"), Some(&h.sim.base_url()));

    let out = sync(&h, &h.sim.api_key(), &["--pushgateway", &base])
        .run()
        .await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let first = group(&base, &instance).await.expect("the push arrived");
    assert_eq!(value(&first, "ticketsync_run_success", &[]), Some(1.0));
    let success = value(&first, LAST_SUCCESS, &[]).expect("a success pushes its timestamp");
    let written = value(&first, "ticketsync_run_tickets", &[("outcome", "written")]).unwrap();
    assert!(written > 0.0);
    assert!(value(&first, "ticketsync_run_api_credits", &[]).unwrap() > 0.0);

    // Make sure the failed run's timestamps differ from the first (whole seconds).
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let out = sync(&h, "wrong-key", &["--pushgateway", &base]).run().await;
    assert_eq!(out.code, Some(3));
    let second = group(&base, &instance).await.unwrap();
    assert_eq!(value(&second, "ticketsync_run_success", &[]), Some(0.0));
    assert_eq!(
        value(&second, "ticketsync_run_status", &[("status", "error")]),
        Some(1.0)
    );
    // The failed run replaced the run's families (its counts are 0) ...
    assert_eq!(
        value(&second, "ticketsync_run_tickets", &[("outcome", "written")]),
        Some(0.0)
    );
    // ... and left the last success alone.
    assert_eq!(
        value(&second, LAST_SUCCESS, &[]),
        Some(success),
        "{second:#}"
    );
    assert!(!second.to_string().contains("wrong-key"));

    // Clean up the group (a shared Pushgateway would otherwise keep it).
    let gone = reqwest::Client::new()
        .delete(format!("{base}/metrics/job/ticketsync/instance/{instance}"))
        .send()
        .await
        .unwrap();
    assert!(gone.status().is_success());
}
