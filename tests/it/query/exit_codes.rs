//! The binary's exit codes: an empty result, a missing dataset, a bad command line, a closed
//! pipe.

use std::collections::BTreeSet;
use std::io::Read;

use ticketsync::query::output::{self, Format};
use ticketsync::query::TicketQuery;

use super::{placed, query_cmd, render, synced, ticketsync};

#[test]
fn a_missing_or_empty_dataset_fails_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope");
    let out = query_cmd(missing.to_str().unwrap())
        .args(["--account", "1"])
        .run_blocking();
    assert_eq!(out.code, Some(2));
    assert!(out.stderr.contains("no dataset at"), "{}", out.stderr);
    assert!(!missing.exists(), "query must not create the directory");

    let out = query_cmd(dir.path().to_str().unwrap())
        .args(["--year", "2025", "--rollup", "year"])
        .run_blocking();
    assert_eq!(out.code, Some(2));
    assert!(
        out.stderr.contains("no tickets in the dataset"),
        "{}",
        out.stderr
    );
}

#[test]
fn no_match_is_an_empty_result_and_exit_0() {
    let s = synced();
    let data = s.data();
    for (args, expected) in [
        (vec!["--account", "no-such-account"], "[]\n"),
        (
            vec!["--account", "no-such-account", "--format", "ndjson"],
            "",
        ),
        (
            vec!["--year", "1999", "--rollup", "month", "--format", "csv"],
            "account,period,basis,tickets,hours,billable_hours,non_billable_hours\n",
        ),
    ] {
        let out = query_cmd(&data).args(&args).run_blocking();
        assert_eq!(out.code, Some(0), "{args:?}: {}", out.stderr);
        assert_eq!(out.stdout, expected, "{args:?}");
    }
}

#[test]
fn a_bad_command_line_is_exit_3() {
    for args in [
        vec!["query", "--data", "x", "--year", "2025"],
        vec!["query", "--data", "x", "--rollup", "month"],
        vec![
            "query",
            "--data",
            "x",
            "--account",
            "../etc",
            "--year",
            "2025",
        ],
        vec![
            "query",
            "--data",
            "x",
            "--account",
            "1",
            "--basis",
            "worked",
        ],
        vec!["query", "--account", "1"],
        vec!["query", "--data", "gs://bucket/x", "--account", "1"],
    ] {
        let out = ticketsync(&args).run_blocking();
        assert_eq!(out.code, Some(3), "{args:?}: {}", out.stderr);
    }
    let help = ticketsync(["query", "--help"]).run_blocking().stdout;
    for needle in ["--rollup", "--basis", "--format", "Codex", "Exit codes"] {
        assert!(
            help.contains(needle),
            "query --help lacks {needle}:\n{help}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_pipe_is_exit_0() {
    let s = synced();
    let dataset = s.dataset();
    // The account with the most output, which must be well over a pipe's 64 KiB buffer.
    let mut largest = (0, String::new());
    for account in placed(&s.truth)
        .values()
        .map(|(a, _)| a.clone())
        .collect::<BTreeSet<_>>()
    {
        let query = TicketQuery {
            account: account.clone(),
            year: None,
            basis: ticketsync::query::Basis::Closed,
        };
        let docs = dataset.tickets(&query).await.unwrap();
        let size = render(|out| output::write_tickets(out, &docs, Format::Json)).len();
        largest = largest.max((size, account));
    }
    let (size, account) = largest;
    assert!(size > 96 * 1024, "{size} bytes");
    let cmd = query_cmd(&s.data()).args(["--account", &account, "--format", "json"]);
    let out = tokio::task::spawn_blocking(move || {
        let mut child = cmd.command().spawn().unwrap();
        let mut stdout = child.stdout.take().unwrap();
        let mut first = [0u8; 20];
        stdout.read_exact(&mut first).unwrap();
        assert_eq!(&first, b"[\n  {\n    \"ticket_id");
        // Like `| head -c 20`: the reader goes away long before the output ends.
        drop(stdout);
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("error"), "{stderr}");
}
