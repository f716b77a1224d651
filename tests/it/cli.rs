//! The real binary: help that teaches, exit codes a scheduler can act on, secrets that stay
//! secret.

use ticketsync::sim::{Plan, SimConfig, Simulator};

use crate::support::{Cmd, Ran};

/// The binary with `args`, nothing from this process's environment.
fn ticketsync(args: &[&str]) -> Ran {
    Cmd::new(args).run_blocking()
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
    let out = ticketsync(&["--version"]);
    assert_eq!(out.code, Some(0));
    let version = out.stdout;
    assert!(
        version.starts_with("ticketsync ") && version.contains("(dataset format "),
        "{version}"
    );
    for command in ["sync", "check", "query", "sim", "completions", "man"] {
        let help = ticketsync(&[command, "--help"]).stdout;
        assert!(
            help.contains("Examples:"),
            "{command} --help has no examples:\n{help}"
        );
    }
}

#[test]
fn completions_and_man_pages_come_from_the_binary() {
    let bash = ticketsync(&["completions", "bash"]);
    assert_eq!(bash.code, Some(0));
    assert!(bash.stdout.contains("--max-removals"));
    let page = ticketsync(&["man", "sync"]);
    assert_eq!(page.code, Some(0));
    let page = page.stdout;
    assert!(page.contains(".TH ticketsync-sync 1"), "{page}");
    assert!(page.contains("rejects\\-exit\\-code"), "{page}");
    let unknown = ticketsync(&["man", "nope"]);
    assert_eq!(unknown.code, Some(3));
}

#[test]
fn help_teaches() {
    let out = ticketsync(&["--help"]);
    assert_eq!(out.code, Some(0));
    let help = out.stdout;
    assert!(help.contains("sync") && help.contains("sim"), "{help}");
    let help = ticketsync(&["sync", "--help"]).stdout;
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
    let out = Cmd::new(["sync", "--domain", "acme"])
        .data(dir.path().to_str().unwrap())
        .run_blocking();
    assert_eq!(out.code, Some(3), "{}", out.stderr);
    assert!(out.stderr.contains("FRESHSERVICE_API_KEY is not set"));
}

#[test]
fn conflicting_flags_are_refused() {
    let out = Cmd::new(["sync", "--data", "x", "--domain", "a"])
        .args(["--full-sync", "--ticket", "5"])
        .api_key("k")
        .run_blocking();
    assert_eq!(
        out.code,
        Some(3),
        "a bad command line is a configuration error"
    );
    assert!(out.stderr.contains("cannot be used with"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_key_exits_3_names_the_host_and_never_the_key() {
    let sim = sim().await;
    let dir = tempfile::tempdir().unwrap();
    let secret = "wrong-secret-key-123";
    let out = Cmd::new(["sync"])
        .sim(&sim)
        .api_key(secret)
        .data(dir.path().to_str().unwrap())
        .args(["--log-format", "json"])
        .run()
        .await;
    let stderr = &out.stderr;
    assert_eq!(out.code, Some(3), "{stderr}");
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
    let out = Cmd::new(["sync"])
        .sim(&sim)
        .data(dir.path().to_str().unwrap())
        .args(["--full-sync", "--rate-window-secs", "1"])
        .run()
        .await;
    let stderr = &out.stderr;
    assert_eq!(out.code, Some(1), "{stderr}");
    assert!(stderr.contains("ticketsync ok with rejects:"), "{stderr}");
    assert!(!stderr.contains(&sim.api_key()), "{stderr}");
    assert!(dir.path().join("_state/cursor.json").exists());
    assert!(dir.path().join("rejects/_delta_log").is_dir());
    assert_eq!(crate::support::reports(dir.path()).len(), 1);
    let report = &out.report;
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
    let demo = || Cmd::new(["sync", "--job", job]).data(data);
    let out = demo().run_blocking();
    let stderr = &out.stderr;
    assert_eq!(out.code, Some(0), "{stderr}");
    assert!(stderr.contains("ticketsync ok with rejects:"), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "are in the rejects table ({data}/rejects/, a Delta table"
        )),
        "{stderr}"
    );
    // The same run with the default code exits 1; 2 and 3 are refused (they mean failed and
    // misconfigured).
    let again = demo().args(["--rejects-exit-code", "1"]).run_blocking();
    assert_eq!(again.code, Some(1), "{}", again.stderr);
    let refused = demo().args(["--rejects-exit-code", "2"]).run_blocking();
    assert_eq!(refused.code, Some(3), "{}", refused.stderr);
    assert!(refused.stderr.contains("rejects_exit_code = 2 is taken"));
}

#[test]
fn demo_job_file_points_at_the_simulator() {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/jobs/demo.toml")).unwrap();
    let spec: ticketsync::job::JobSpec = toml::from_str(&text).unwrap();
    assert!(spec.simulator.is_some());
    assert_eq!(spec.data.as_deref(), Some("./data"));
}
