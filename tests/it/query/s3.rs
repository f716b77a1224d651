//! S3: the same files on a real S3 protocol server give the same answers, byte for byte, and a
//! one-account-year query reads only that partition's objects.

use std::collections::BTreeSet;

use ticketsync::storage::Storage;

use super::{busiest_account, golden, synced, Synced};
use crate::support::s3::{Logged, S3Server, SECRET_KEY};
use crate::support::Cmd;

/// Puts every file under `dir` into `storage` at the same relative key.
async fn upload(dir: &std::path::Path, storage: &Storage) -> usize {
    let mut pending = vec![dir.to_path_buf()];
    let mut files = 0;
    while let Some(at) = pending.pop() {
        for entry in std::fs::read_dir(&at).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
                continue;
            }
            let key = path
                .strip_prefix(dir)
                .unwrap()
                .to_str()
                .unwrap()
                .to_string();
            let bytes = std::fs::read(&path).unwrap();
            storage
                .put(&object_store::path::Path::from(key), bytes.into())
                .await
                .unwrap();
            files += 1;
        }
    }
    files
}

/// The shared synced dataset, uploaded under `prefix` to a new S3 server.
async fn on_s3(prefix: &str) -> (&'static Synced, S3Server) {
    let s = synced();
    let server = S3Server::start().await;
    let uploaded = upload(&s.dir, &server.storage(prefix)).await;
    assert!(uploaded > 10, "{uploaded} files");
    (s, server)
}

/// The paths (percent-decoded) of object reads (not listings) under `prefix`.
fn object_reads(requests: &[Logged], prefix: &str) -> Vec<String> {
    requests
        .iter()
        .filter(|r| r.method == "GET" || r.method == "HEAD")
        .filter(|r| !r.query.contains("list-type"))
        .map(|r| r.path.replace("%3D", "=").replace("%3d", "="))
        .filter(|path| path.contains(prefix))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_data_gives_the_local_answers_and_the_goldens() {
    let prefix = "exports/query";
    let (s, server) = on_s3(prefix).await;
    let s3_data = server.url(prefix);
    let local_data = s.data();
    let account = busiest_account(s, 2025);

    let cases: Vec<(Vec<&str>, Option<&str>)> = vec![
        (
            vec!["--account", &account, "--year", "2025", "--format", "table"],
            Some("tickets_busiest_2025.txt"),
        ),
        (
            vec!["--year", "2025", "--rollup", "month", "--format", "table"],
            Some("rollup_month_2025.txt"),
        ),
        (
            vec![
                "--year", "2024", "--rollup", "year", "--basis", "worked", "--format", "csv",
            ],
            Some("rollup_year_2024_worked.csv"),
        ),
        (
            vec![
                "--year", "2024", "--rollup", "year", "--basis", "worked", "--format", "json",
            ],
            Some("rollup_year_2024_worked.json"),
        ),
        (vec!["--account", &account, "--format", "json"], None),
        (
            vec![
                "--account",
                &account,
                "--rollup",
                "month",
                "--year",
                "2025",
                "--basis",
                "worked",
                "--format",
                "ndjson",
            ],
            None,
        ),
        (
            vec!["--account", "no-such-account", "--format", "json"],
            None,
        ),
    ];
    for (args, golden_file) in cases {
        let on = |data: &str| Cmd::new(["query"]).data(data).args(&args);
        let from_s3 = on(&s3_data).s3(&server).run().await;
        let from_disk = on(&local_data).run().await;
        assert_eq!(from_s3.code, Some(0), "{args:?} on S3: {}", from_s3.stderr);
        assert_eq!(from_disk.code, Some(0), "{args:?} on disk");
        assert!(!from_s3.stdout.is_empty(), "{args:?} printed nothing");
        assert_eq!(
            from_s3.stdout, from_disk.stdout,
            "{args:?}: S3 and local answers differ"
        );
        if let Some(name) = golden_file {
            golden(name, &from_s3.stdout);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_one_account_and_year_reads_only_its_partition() {
    let prefix = "exports/pruned";
    let (s, server) = on_s3(prefix).await;
    let account = busiest_account(s, 2025);
    let before = server.requests().len();
    let out = Cmd::new(["query"])
        .data(server.url(prefix))
        .args([
            "--account",
            &account,
            "--year",
            "2025",
            "--basis",
            "closed",
            "--format",
            "ndjson",
        ])
        .s3(&server)
        .run()
        .await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let tickets = out.stdout.lines().count();
    assert!(tickets > 0);

    let requests = server.requests()[before..].to_vec();
    let reads = object_reads(&requests, prefix);
    assert!(!reads.is_empty(), "no object was read: {requests:?}");
    let mine = format!("account={account}/year=2025/");
    // Data files: the tables' logs and `_state/` are read to find them.
    let foreign: Vec<&String> = reads
        .iter()
        .filter(|p| !p.contains("/_delta_log/") && !p.contains("/_state/"))
        .filter(|p| !p.contains(&mine))
        .collect();
    assert!(
        foreign.is_empty(),
        "objects outside {mine} were read: {foreign:?}"
    );
    // Only the tables a ticket query needs: tickets, conversations, notes.
    let tables: BTreeSet<&str> = reads
        .iter()
        .filter(|p| p.ends_with(".parquet") && !p.contains("/_delta_log/"))
        .filter_map(|p| p.split(&format!("{prefix}/")).nth(1))
        .filter_map(|rest| rest.split('/').next())
        .collect();
    assert!(tables.contains("tickets"), "{tables:?}");
    assert!(!tables.contains("time_entries"), "{tables:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_credential_errors_exit_3_without_printing_the_secret() {
    let prefix = "exports/denied";
    let (_, server) = on_s3(prefix).await;
    let wrong = "wrong-query-secret-1b7e44-must-not-leak";
    let data = server.url(prefix);
    let query = |data: &str| Cmd::new(["query"]).data(data).s3(&server);
    for extra in [
        vec!["--account", "100000", "--year", "2025"],
        vec!["--year", "2025", "--rollup", "year"],
    ] {
        let out = query(&data)
            .args(&extra)
            .env("AWS_SECRET_ACCESS_KEY", wrong)
            .run()
            .await;
        let stderr = &out.stderr;
        assert_eq!(out.code, Some(3), "{extra:?}: {stderr}");
        assert!(stderr.contains(&data), "names the location: {stderr}");
        assert!(!stderr.contains(wrong), "the secret leaked: {stderr}");
        assert!(!stderr.contains(SECRET_KEY), "{stderr}");
        assert!(out.stdout.is_empty(), "{}", out.stdout);
    }

    // A bucket that does not exist is the same kind of error: the location is wrong.
    let out = query("s3://no-such-bucket/x")
        .args(["--account", "1"])
        .run()
        .await;
    let stderr = &out.stderr;
    assert_eq!(out.code, Some(3), "{stderr}");
    assert!(stderr.contains("does not exist"), "{stderr}");
    // And an empty prefix in a real bucket is an empty dataset: exit 2, as on disk.
    let out = query(&server.url("nothing/here"))
        .args(["--account", "1"])
        .run()
        .await;
    assert_eq!(out.code, Some(2), "{}", out.stderr);
}
