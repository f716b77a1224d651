//! Peak memory of a full sync, by the number of tickets listed: memory must follow
//! `concurrency` and `checkpoint_every`, not the size of the account. Also the write
//! amplification: bytes the sync wrote through its system calls (`wchar` of `/proc/self/io`,
//! which also counts its few HTTP requests) ÷ the bytes the dataset keeps at the end.
//!
//! ```text
//! cargo run --release --example memory                      # 2,000 and 20,000 tickets
//! cargo run --release --example memory -- --tickets 2000 --tickets 50000
//! ```
//!
//! The simulator runs in this process with its limits off and no latency (so the listing runs
//! as far ahead of the workers as it can); each sync runs in a child process of its own (this
//! program again, with `--child`), whose peak resident set (`VmHWM`) is what is printed, so the
//! simulator's own data is not in the figure.

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use ticketsync::job::{Job, JobSpec};
use ticketsync::pipeline;
use ticketsync::sim::{Plan, SimConfig, Simulator};
use ticketsync::source::retry::RetryPolicy;
use ticketsync::source::{ClientConfig, Source};
use ticketsync::storage::{S3Options, Storage};

#[derive(Debug, Parser)]
struct Args {
    /// Tickets generated (about 60 % are closed in the last year and fetched); repeatable.
    #[arg(long)]
    tickets: Vec<usize>,
    /// Child mode: sync from this simulator URL and print the peak RSS.
    #[arg(long, hide = true)]
    child: Option<String>,
    #[arg(long, hide = true)]
    key: Option<String>,
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    if let (Some(url), Some(key)) = (&args.child, &args.key) {
        child(url, key).await;
        return;
    }
    let sizes = if args.tickets.is_empty() {
        vec![2_000, 20_000]
    } else {
        args.tickets.clone()
    };
    println!(
        "{:>8} {:>8} {:>8} {:>12} {:>10} {:>11} {:>9} {:>9}",
        "tickets",
        "listed",
        "fetched",
        "peak_rss_mb",
        "wall_s",
        "written_mb",
        "kept_mb",
        "written/kept"
    );
    let mut first = None;
    for n in sizes {
        let sim = Simulator::start(
            SimConfig {
                tickets: n,
                seed: 1,
                plan: Plan::Enterprise,
                rate_limit: false,
                ..SimConfig::default()
            },
            0,
        )
        .await
        .expect("simulator");
        let exe = std::env::current_exe().expect("own path");
        let (url, key) = (sim.base_url(), sim.api_key());
        let out = tokio::task::spawn_blocking(move || {
            Command::new(exe)
                .args(["--child", &url, "--key", &key])
                .output()
                .expect("child runs")
        })
        .await
        .unwrap();
        sim.shutdown().await;
        let text = String::from_utf8_lossy(&out.stdout);
        let field = |name: &str| -> f64 {
            text.split_whitespace()
                .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("child printed no {name}: {text}"))
        };
        let rss_mb = field("peak_rss_kb") / 1024.0;
        let (written, kept) = (field("written_bytes"), field("kept_bytes"));
        println!(
            "{n:>8} {:>8} {:>8} {rss_mb:>12.1} {:>10.1} {:>11.1} {:>9.1} {:>12.2}",
            field("listed"),
            field("fetched"),
            field("wall_s"),
            written / 1e6,
            kept / 1e6,
            written / kept
        );
        match first {
            None => first = Some((n, rss_mb)),
            Some((n0, rss0)) => {
                println!("  {n} tickets use {:.2}x the memory of {n0}", rss_mb / rss0)
            }
        }
    }
}

/// One full sync against `url`, limits off; prints what it listed and fetched and its peak RSS.
async fn child(url: &str, key: &str) {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().to_str().unwrap().to_string();
    let job = Job::resolve(
        JobSpec {
            data: Some(data.clone()),
            base_url: Some(url.into()),
            full_sync: Some(true),
            budget_share: Some(1.0),
            rate_window_secs: Some(0.01),
            ..JobSpec::default()
        },
        None,
    )
    .expect("job");
    let source = Source::new(ClientConfig {
        base_url: url::Url::parse(url).unwrap(),
        api_key: key.into(),
        limiter: job.limiter.clone(),
        retry: RetryPolicy::default(),
        timeout: Duration::from_secs(60),
        max_response_bytes: job.max_response_bytes,
    })
    .unwrap();
    let storage = Storage::open(&data, &S3Options::default()).unwrap();
    let started = Instant::now();
    let outcome = pipeline::run(&job, Arc::new(source), &storage)
        .await
        .expect("run");
    let wall = started.elapsed().as_secs_f64();
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let peak_kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    let io = std::fs::read_to_string("/proc/self/io").unwrap_or_default();
    let written: u64 = io
        .lines()
        .find_map(|l| l.strip_prefix("wchar:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    println!(
        "listed={} fetched={} peak_rss_kb={peak_kb} wall_s={wall:.1} written_bytes={written} kept_bytes={}",
        outcome.report.tickets.listed,
        outcome.report.tickets.fetched,
        dir_bytes(dir.path())
    );
}

/// Bytes of every file under `dir`.
fn dir_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_bytes(&e.path()),
            _ => e.metadata().map(|m| m.len()).unwrap_or(0),
        })
        .sum()
}
