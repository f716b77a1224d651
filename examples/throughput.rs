//! Throughput benchmark: a full sync from the built-in simulator at a plan's real rate limit
//! (scaled in time by `--minute-secs`), measured against the budget and against the old system's
//! approach (one request at a time with a one-second gap, scaled the same way).
//!
//! ```text
//! cargo run --release --example throughput                       # Growth, 200 ms, ~3,000 tickets
//! cargo run --release --example throughput -- --matrix           # every plan × 200/600 ms
//! cargo run --release --example throughput -- --plan starter --latency-ms 600
//! ```
//!
//! Printed per run: utilization (credits per steady-state window ÷ the configured share of the
//! budget), 429s (total and in the worst window), credits per fetched ticket, wall time ÷ the
//! theoretical minimum (credits spent ÷ the budget's rate), and the baseline's wall time ÷ ours.
//! The baseline runs on a sample of tickets in the same process and is extrapolated linearly.
//!
//! The simulated account is an MSP's: every customer department maps to an account number (the
//! job's account map covers the simulator's departments without one), so the closed tickets of
//! the year are fetched, as in production; only tickets without a department are rejects.

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use ticketsync::job::{Job, JobSpec};
use ticketsync::pipeline::{self, RunOutcome};
use ticketsync::sim::{Plan, SimConfig, Simulator};
use ticketsync::source::retry::RetryPolicy;
use ticketsync::source::{ClientConfig, ListFilter, Requesters, Source};
use ticketsync::state::{self, ApiSeen, Cursor};
use ticketsync::storage::{S3Options, Storage};

#[derive(Debug, Parser)]
struct Args {
    /// starter, growth, pro or enterprise.
    #[arg(long, default_value = "growth")]
    plan: Plan,
    /// Simulated latency per request (plus up to a quarter of it as jitter).
    #[arg(long, default_value_t = 200)]
    latency_ms: u64,
    /// Tickets generated over 14 months (about 62 % end up closed in the last year, with a
    /// department, and fetched).
    #[arg(long, default_value_t = 4850)]
    tickets: usize,
    /// Length of the simulated rate window in seconds (60 = real time).
    #[arg(long, default_value_t = 3.0)]
    minute_secs: f64,
    /// Share of the budget the sync may use.
    #[arg(long, default_value_t = 0.9)]
    share: f64,
    /// Tickets the baseline fetches before extrapolating.
    #[arg(long, default_value_t = 30)]
    baseline_sample: usize,
    /// Keep the simulator's departments without an account number unmapped (their tickets
    /// become rejects without any per-ticket call).
    #[arg(long)]
    unmapped: bool,
    /// Workspaces of the simulated account (1 = none): with more, every listing is made once
    /// per workspace.
    #[arg(long, default_value_t = 1)]
    workspaces: usize,
    /// Credits another integration on the account spends every window, at an even pace (0 =
    /// none): the run should give way to what it spends beyond the share left to it, and
    /// neither should meet 429s after the first window.
    #[arg(long, default_value_t = 0)]
    neighbour: u32,
    /// Run every plan (Starter, Growth, Pro, Enterprise) at 200 ms and at 600 ms.
    #[arg(long)]
    matrix: bool,
    /// Sync as an account's first run: no state of a previous one. By default the dataset
    /// holds what a previous night's run remembers of the API (its allowance and round trip,
    /// `_state/cursor.json`), as a `--full-sync` of an account synced before has.
    #[arg(long)]
    first_run: bool,
}

/// The local ceiling: the same sync with the simulator's limits off and no latency, so the
/// wall time is ticketsync's own work (JSON decoding, HTML → text, markdown, Arrow, Parquet,
/// commits) plus loopback HTTP. Compared with what the API budget lets through.
async fn local_ceiling(args: &Args) {
    let config = SimConfig {
        tickets: args.tickets,
        seed: 1,
        workspaces: args.workspaces,
        plan: Plan::Enterprise,
        rate_limit: false,
        ..SimConfig::default()
    };
    let sim = Simulator::start(config, 0).await.expect("simulator");
    let tuning = JobSpec {
        budget_share: Some(1.0),
        rate_window_secs: Some(0.01),
        concurrency: Some(64),
        ..JobSpec::default()
    };
    let (outcome, wall) = full_sync(&sim, tuning).await;
    let fetched = outcome.report.tickets.fetched as f64;
    let per_sec = fetched / wall;
    println!(
        "local ceiling: {fetched:.0} tickets in {wall:.1}s = {per_sec:.0} tickets/s; the API budget allows {:.1} (Growth) to {:.1} (Enterprise) tickets/s: {:.0}x to {:.0}x headroom",
        200.0 * 0.9 / 60.0 / 2.0,
        500.0 * 0.9 / 60.0 / 2.0,
        per_sec / (200.0 * 0.9 / 60.0 / 2.0),
        per_sec / (500.0 * 0.9 / 60.0 / 2.0),
    );
    sim.shutdown().await;
}

#[derive(Debug)]
struct Figures {
    plan: Plan,
    latency_ms: u64,
    fetched: u64,
    wall: f64,
    utilization: f64,
    r429: u64,
    worst_window_429: u64,
    credits_per_ticket: f64,
    wall_vs_min: f64,
    baseline_wall: f64,
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    if std::env::var_os("THROUGHPUT_TIMELINE").is_some() {
        // The run's own log (RUST_LOG, info by default) with times, beside the timeline.
        tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| "ticketsync=info".into()),
            )
            .with_writer(std::io::stderr)
            .with_timer(tracing_subscriber::fmt::time::uptime())
            .init();
    }
    let runs: Vec<(Plan, u64)> = if args.matrix {
        [200, 600]
            .into_iter()
            .flat_map(|latency| {
                [Plan::Starter, Plan::Growth, Plan::Pro, Plan::Enterprise]
                    .map(|plan| (plan, latency))
            })
            .collect()
    } else {
        vec![(args.plan, args.latency_ms)]
    };
    println!(
        "{:<11} {:>7} {:>8} {:>8} {:>11} {:>6} {:>9} {:>11} {:>12} {:>10} {:>10}",
        "plan",
        "latency",
        "tickets",
        "wall_s",
        "utilization",
        "429s",
        "worst_win",
        "credits/tkt",
        "wall/minimum",
        "baseline_s",
        "speedup"
    );
    for (plan, latency_ms) in runs {
        let f = run(&args, plan, latency_ms).await;
        println!(
            "{:<11} {:>5}ms {:>8} {:>8.1} {:>11.3} {:>6} {:>9} {:>11.3} {:>12.3} {:>10.0} {:>9.1}x",
            f.plan.to_string(),
            f.latency_ms,
            f.fetched,
            f.wall,
            f.utilization,
            f.r429,
            f.worst_window_429,
            f.credits_per_ticket,
            f.wall_vs_min,
            f.baseline_wall,
            f.baseline_wall / f.wall
        );
    }
    local_ceiling(&args).await;
}

async fn run(args: &Args, plan: Plan, latency_ms: u64) -> Figures {
    let config = SimConfig {
        tickets: args.tickets,
        seed: 1,
        workspaces: args.workspaces,
        plan,
        minute_secs: args.minute_secs,
        latency_ms,
        latency_jitter_ms: latency_ms / 4,
        ..SimConfig::default()
    };
    let sim_started = Instant::now();
    let sim = Simulator::start(config.clone(), 0)
        .await
        .expect("simulator");
    sim.set_neighbour(args.neighbour);
    let account_map = every_department_mapped(&sim);
    let tuning = JobSpec {
        budget_share: Some(args.share),
        rate_window_secs: Some(args.minute_secs),
        concurrency: Some(256),
        account_map: (!args.unmapped).then(|| account_map.path().to_path_buf()),
        ..JobSpec::default()
    };
    let sync_started = sim_started.elapsed().as_secs_f64() * 1000.0;
    let seen = (!args.first_run).then(|| ApiSeen {
        rate_total: plan.credits_per_minute(),
        round_trip_ms: latency_ms + latency_ms / 8,
    });
    let (outcome, wall) = full_sync_after(&sim, tuning, seen).await;
    assert!(outcome.error.is_none(), "{:?}", outcome.error);
    let stats = sim.stats();
    if std::env::var_os("THROUGHPUT_TIMELINE").is_some() {
        timeline(&stats.log, sync_started, wall);
    }
    let budget = plan.credits_per_minute() as f64 * args.share;
    // Steady state: every window but the first (start-up) and the last (partial).
    let windows: Vec<_> = stats.windows.iter().collect();
    let steady = if windows.len() > 2 {
        &windows[1..windows.len() - 1]
    } else {
        &windows[..]
    };
    let utilization = steady.iter().map(|w| w.credits_used as f64).sum::<f64>()
        / steady.len().max(1) as f64
        / budget;
    let fetched = outcome.report.tickets.fetched;
    if args.unmapped {
        println!(
            "closed {}, rejected {}, fetched {fetched}: {:.3} credits per closed ticket",
            outcome.report.tickets.closed,
            outcome.report.tickets.rejected,
            sim.stats().credits_used as f64 / outcome.report.tickets.closed.max(1) as f64
        );
    }
    if std::env::var_os("THROUGHPUT_WINDOWS").is_some() {
        let per_window: Vec<(u64, u64)> = stats
            .windows
            .iter()
            .map(|w| (w.credits_used, w.rejected_429))
            .collect();
        eprintln!("credits and 429s per window: {per_window:?}");
    }
    if args.neighbour > 0 {
        let per_window: Vec<(u64, u64, u64)> = stats
            .windows
            .iter()
            .map(|w| (w.credits_used, w.neighbour_credits, w.neighbour_refused))
            .collect();
        println!("ours, the neighbour's and its refused credits per window: {per_window:?}");
    }
    let minimum = stats.credits_used as f64 / (budget / args.minute_secs);
    sim.shutdown().await;

    let baseline_wall = baseline(args, config, fetched).await;
    Figures {
        plan,
        latency_ms,
        fetched,
        wall,
        utilization,
        r429: stats.rate_limited,
        worst_window_429: stats
            .windows
            .iter()
            .map(|w| w.rejected_429)
            .max()
            .unwrap_or(0),
        credits_per_ticket: stats.credits_used as f64 / fetched.max(1) as f64,
        wall_vs_min: wall / minimum,
        baseline_wall,
    }
}

/// Where the run's time went, in ms from the sync's start: each endpoint's first and last
/// request (as the simulator logged them), and the end of the run.
fn timeline(log: &[ticketsync::sim::RequestLog], sync_started_ms: f64, wall: f64) {
    let mut spans: std::collections::BTreeMap<&str, (f64, f64, u64)> = Default::default();
    for r in log {
        let at = r.at_ms as f64 - sync_started_ms;
        let span = spans.entry(r.endpoint.as_str()).or_insert((at, at, 0));
        span.0 = span.0.min(at);
        span.1 = span.1.max(at);
        span.2 += 1;
    }
    let mut rows: Vec<_> = spans.into_iter().collect();
    rows.sort_by(|a, b| a.1 .0.total_cmp(&b.1 .0));
    for (endpoint, (first, last, n)) in rows {
        eprintln!("  {endpoint:<22} {n:>6} requests, first {first:>8.0} ms, last {last:>8.0} ms");
    }
    // The run's last second and a half, in 100 ms steps: how many calls the server decided in
    // each (a pace that holds to the end shows the same count in every step).
    let end = wall * 1000.0;
    let mut steps = [0u32; 15];
    for r in log {
        let before_end = end - (r.at_ms as f64 - sync_started_ms);
        if (0.0..1500.0).contains(&before_end) {
            steps[14 - (before_end / 100.0) as usize] += 1;
        }
    }
    eprintln!("  calls per 100 ms over the last 1.5 s: {steps:?}");
    eprintln!("  run ended at {end:.0} ms");
}

/// A full sync from `sim` into a fresh temporary directory, with `tuning` (budget, window,
/// concurrency, account map); returns the outcome and the wall time in seconds.
async fn full_sync(sim: &Simulator, tuning: JobSpec) -> (RunOutcome, f64) {
    full_sync_after(sim, tuning, None).await
}

/// [`full_sync`] of a dataset whose previous run saw `seen` of the API (none: a first run).
async fn full_sync_after(
    sim: &Simulator,
    tuning: JobSpec,
    seen: Option<ApiSeen>,
) -> (RunOutcome, f64) {
    let dir = tempfile::tempdir().expect("temp dir");
    let storage = Storage::open(dir.path().to_str().unwrap(), &S3Options::default()).unwrap();
    if let Some(seen) = seen {
        let previous = Cursor {
            updated_since: chrono::Utc::now() - chrono::Duration::days(1),
            run_id: "the-night-before".into(),
            rescanned_at: None,
            api: Some(seen),
        };
        state::store_cursor(&storage, &previous)
            .await
            .expect("cursor");
    }
    let spec = JobSpec {
        data: Some(dir.path().to_str().unwrap().into()),
        base_url: Some(sim.base_url()),
        full_sync: Some(true),
        ..tuning
    };
    let job = Job::resolve(spec, None).expect("job");
    let source = Arc::new(source_for(sim, &job));
    let started = Instant::now();
    let outcome = pipeline::run(&job, source, &storage).await.expect("run");
    (outcome, started.elapsed().as_secs_f64())
}

/// An account map (CSV) that gives every department of the simulated account a number.
fn every_department_mapped(sim: &Simulator) -> tempfile::NamedTempFile {
    let csv: String = sim
        .ground_truth()
        .departments
        .iter()
        .map(|d| format!("{},BENCH-{}\n", d.id, d.id))
        .collect();
    let file = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(file.path(), csv).expect("account map");
    file
}

fn source_for(sim: &Simulator, job: &Job) -> Source {
    Source::new(ClientConfig {
        base_url: url::Url::parse(&sim.base_url()).unwrap(),
        api_key: sim.api_key(),
        limiter: job.limiter.clone(),
        retry: RetryPolicy::default(),
        timeout: Duration::from_secs(60),
        max_response_bytes: job.max_response_bytes,
    })
    .unwrap()
}

/// The old system: list, then per ticket time entries and conversations, one request at a time
/// with a one-second (scaled) pause between requests. Timed on a sample, extrapolated to
/// `fetched` tickets.
async fn baseline(args: &Args, config: SimConfig, fetched: u64) -> f64 {
    let sim = Simulator::start(config, 0).await.expect("simulator");
    let gap = Duration::from_secs_f64(args.minute_secs / 60.0);
    let spec = JobSpec {
        data: Some("unused".into()),
        base_url: Some(sim.base_url()),
        rate_window_secs: Some(args.minute_secs),
        budget_share: Some(1.0),
        ..JobSpec::default()
    };
    let job = Job::resolve(spec, None).unwrap();
    let source = source_for(&sim, &job);
    let started = Instant::now();
    let since = chrono::Utc::now() - chrono::Duration::days(365);
    let listed = source
        .tickets_updated_since(since, ListFilter::Live, Requesters::Embedded, None)
        .await
        .expect("list");
    let list_time = started.elapsed().as_secs_f64();
    let sample: Vec<i64> = listed
        .iter()
        .filter_map(|t| t.as_ref().ok())
        .filter(|t| t.status == Some(5))
        .take(args.baseline_sample)
        .map(|t| t.id)
        .collect();
    let started = Instant::now();
    for id in &sample {
        tokio::time::sleep(gap).await;
        let _ = source.time_entries(*id).await;
        tokio::time::sleep(gap).await;
        let _ = source.conversations(*id).await;
    }
    let per_ticket = started.elapsed().as_secs_f64() / sample.len().max(1) as f64;
    sim.shutdown().await;
    list_time + per_ticket * fetched as f64
}
