//! The real binary: help that teaches, exit codes a scheduler can act on, secrets that stay
//! secret.

use std::process::{Command, Output};

use ticketsync::sim::{Plan, SimConfig, Simulator};

fn ticketsync(args: &[&str], key: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ticketsync"));
    cmd.args(args)
        .env_remove("FRESHSERVICE_API_KEY")
        .env("RUST_LOG", "info");
    if let Some(key) = key {
        cmd.env("FRESHSERVICE_API_KEY", key);
    }
    cmd.output().expect("the binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

async fn sim() -> Simulator {
    let config = SimConfig {
        tickets: 80,
        seed: 5,
        plan: Plan::Enterprise,
        minute_secs: 1.0,
        ..SimConfig::default()
    };
    Simulator::start(config, 0).await.unwrap()
}

#[test]
fn version_names_the_dataset_format_and_every_command_shows_examples() {
    let out = ticketsync(&["--version"], None);
    assert!(out.status.success());
    let version = text(&out.stdout);
    assert!(
        version.starts_with("ticketsync ") && version.contains("(dataset format "),
        "{version}"
    );
    for command in ["sync", "check", "query", "sim", "completions", "man"] {
        let help = text(&ticketsync(&[command, "--help"], None).stdout);
        assert!(
            help.contains("Examples:"),
            "{command} --help has no examples:\n{help}"
        );
    }
}

#[test]
fn completions_and_man_pages_come_from_the_binary() {
    let bash = ticketsync(&["completions", "bash"], None);
    assert!(bash.status.success());
    assert!(text(&bash.stdout).contains("--max-removals"));
    let page = ticketsync(&["man", "sync"], None);
    assert!(page.status.success());
    let page = text(&page.stdout);
    assert!(page.contains(".TH ticketsync-sync 1"), "{page}");
    assert!(page.contains("rejects\\-exit\\-code"), "{page}");
    let unknown = ticketsync(&["man", "nope"], None);
    assert_eq!(unknown.status.code(), Some(3));
}

#[test]
fn help_teaches() {
    let out = ticketsync(&["--help"], None);
    assert!(out.status.success());
    let help = text(&out.stdout);
    assert!(help.contains("sync") && help.contains("sim"), "{help}");
    let out = ticketsync(&["sync", "--help"], None);
    let help = text(&out.stdout);
    for needle in [
        "FRESHSERVICE_API_KEY",
        "--full-sync",
        "--ticket",
        "--account-map",
        "--budget-share",
        "Exit codes",
    ] {
        assert!(help.contains(needle), "sync --help lacks {needle}:\n{help}");
    }
}

#[test]
fn missing_api_key_is_a_configuration_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = ticketsync(
        &[
            "sync",
            "--domain",
            "acme",
            "--data",
            dir.path().to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("FRESHSERVICE_API_KEY is not set"));
}

#[test]
fn conflicting_flags_are_refused() {
    let out = ticketsync(
        &[
            "sync",
            "--data",
            "x",
            "--domain",
            "a",
            "--full-sync",
            "--ticket",
            "5",
        ],
        Some("k"),
    );
    assert_eq!(
        out.status.code(),
        Some(3),
        "a bad command line is a configuration error"
    );
    assert!(text(&out.stderr).contains("cannot be used with"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_key_exits_3_names_the_host_and_never_the_key() {
    let sim = sim().await;
    let dir = tempfile::tempdir().unwrap();
    let secret = "wrong-secret-key-123";
    let url = sim.base_url();
    let data = dir.path().to_str().unwrap().to_string();
    let out = tokio::task::spawn_blocking(move || {
        ticketsync(
            &[
                "sync",
                "--base-url",
                &url,
                "--data",
                &data,
                "--log-format",
                "json",
            ],
            Some(secret),
        )
    })
    .await
    .unwrap();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("refused the API key (401"), "{stderr}");
    assert!(stderr.contains("127.0.0.1"), "{stderr}");
    assert!(!stderr.contains(secret), "the key leaked: {stderr}");
    assert!(!dir.path().join("_state/cursor.json").exists());
    for report in std::fs::read_dir(dir.path().join("_runs")).unwrap() {
        let body = std::fs::read_to_string(report.unwrap().path()).unwrap();
        assert!(!body.contains(secret));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_through_the_binary_reports_and_exits_1_with_rejects() {
    let sim = sim().await;
    let dir = tempfile::tempdir().unwrap();
    let (url, key) = (sim.base_url(), sim.api_key());
    let data = dir.path().to_str().unwrap().to_string();
    let out = tokio::task::spawn_blocking(move || {
        ticketsync(
            &[
                "sync",
                "--base-url",
                &url,
                "--data",
                &data,
                "--full-sync",
                "--rate-window-secs",
                "1",
            ],
            Some(&key),
        )
    })
    .await
    .unwrap();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("ticketsync ok with rejects:"), "{stderr}");
    assert!(!stderr.contains(&sim.api_key()), "{stderr}");
    assert!(dir.path().join("_state/cursor.json").exists());
    assert!(dir.path().join("rejects/part-0.parquet").exists());
    let reports: Vec<_> = std::fs::read_dir(dir.path().join("_runs"))
        .unwrap()
        .collect();
    assert_eq!(reports.len(), 1);
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(reports[0].as_ref().unwrap().path()).unwrap())
            .unwrap();
    assert_eq!(report["status"], "ok_with_rejects");
    assert!(report["tickets"]["written"].as_u64().unwrap() > 0);
    assert!(report["api"]["calls"]["conversations"].as_u64().unwrap() > 0);
}

/// The README's first command: the demo job ends cleanly (exit 0) and says where its rejects are.
#[test]
fn the_demo_job_exits_0_and_says_where_the_rejects_are() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let job = concat!(env!("CARGO_MANIFEST_DIR"), "/jobs/demo.toml");
    let out = ticketsync(&["sync", "--job", job, "--data", data], None);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("ticketsync ok with rejects:"), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "are in the rejects table ({data}/rejects/part-0.parquet)"
        )),
        "{stderr}"
    );
    // The same run with the default code exits 1; 2 and 3 are refused (they mean failed and
    // misconfigured).
    let again = ticketsync(
        &[
            "sync",
            "--job",
            job,
            "--data",
            data,
            "--rejects-exit-code",
            "1",
        ],
        None,
    );
    assert_eq!(again.status.code(), Some(1), "{}", text(&again.stderr));
    let refused = ticketsync(
        &[
            "sync",
            "--job",
            job,
            "--data",
            data,
            "--rejects-exit-code",
            "2",
        ],
        None,
    );
    assert_eq!(refused.status.code(), Some(3), "{}", text(&refused.stderr));
    assert!(text(&refused.stderr).contains("rejects_exit_code = 2 is taken"));
}

#[test]
fn demo_job_file_points_at_the_simulator() {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/jobs/demo.toml")).unwrap();
    let spec: ticketsync::job::JobSpec = toml::from_str(&text).unwrap();
    assert!(spec.simulator.is_some());
    assert_eq!(spec.data.as_deref(), Some("./data"));
}
