//! What redaction and erasure cost per ticket, against rendering the ticket's markdown (local
//! work every written ticket already does), measured in the same run on the same rows.
//!
//! ```text
//! cargo run --release --example privacy_bench                 # 2,000 tickets of the simulator
//! cargo run --release --example privacy_bench -- 5000
//! ```
//!
//! The rows are real simulator tickets (HTML bodies, signatures, notes with credentials), synced
//! with redaction off and read back from the Parquet files. Each variant runs on fresh copies of
//! the rows, best of five rounds.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use ticketsync::dataset::{partitions, read_partition};
use ticketsync::job::{Job, JobSpec};
use ticketsync::normalize::markdown;
use ticketsync::normalize::privacy::{Erasures, Privacy, RedactSpec, Redactor};
use ticketsync::normalize::Placed;
use ticketsync::pipeline;
use ticketsync::sim::{Plan, SimConfig, Simulator};
use ticketsync::source::retry::RetryPolicy;
use ticketsync::source::{ClientConfig, Source};
use ticketsync::state;
use ticketsync::storage::Storage;

#[tokio::main]
async fn main() {
    let tickets: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(2000);
    let rows = sample(tickets).await;
    println!("{} placed tickets of {tickets} generated", rows.len());

    let baseline = best(&rows, |p| {
        std::hint::black_box(markdown::render(&p.ticket, &p.conversations, &p.notes));
    });
    let redact = Privacy {
        redactor: Arc::new(Redactor::defaults()),
        erasures: Arc::new(Erasures::none()),
    };
    let people = |n: usize| {
        let mut e = Erasures::new(&[7; 32], Vec::new());
        for i in 0..n {
            let person = e.person(
                &format!("person{i}@example.org"),
                Some(&format!("First{i} Last{i}")),
                &[i as i64],
                Utc::now(),
            );
            e.add(person);
        }
        Arc::new(e)
    };
    let erase_1 = Privacy {
        redactor: Arc::new(Redactor::disabled()),
        erasures: people(1),
    };
    let erase_100 = Privacy {
        redactor: Arc::new(Redactor::disabled()),
        erasures: people(100),
    };
    let both = Privacy {
        redactor: Arc::new(Redactor::defaults()),
        erasures: people(100),
    };
    let off = Privacy {
        redactor: Arc::new(
            Redactor::new(&RedactSpec {
                enabled: Some(false),
                ..Default::default()
            })
            .unwrap(),
        ),
        erasures: Arc::new(Erasures::none()),
    };
    let per = |d: Duration| d.as_secs_f64() * 1e6 / rows.len() as f64;
    println!("{:<34} {:>10} {:>12}", "variant", "µs/ticket", "÷ markdown");
    println!(
        "{:<34} {:>10.1} {:>12}",
        "markdown render (baseline)",
        per(baseline),
        "1.00"
    );
    for (name, privacy) in [
        ("privacy off", &off),
        ("redaction (all rules)", &redact),
        ("erasure, 1 person", &erase_1),
        ("erasure, 100 people", &erase_100),
        ("redaction + erasure of 100", &both),
    ] {
        let t = best(&rows, |p| {
            std::hint::black_box(privacy.apply(
                &mut p.ticket,
                &mut p.conversations,
                &mut p.notes,
                &mut p.time_entries,
            ));
        });
        println!(
            "{name:<34} {:>10.1} {:>12.2}",
            per(t),
            t.as_secs_f64() / baseline.as_secs_f64()
        );
    }
}

/// Best of five rounds of `f` over fresh copies of `rows`.
fn best(rows: &[Placed], mut f: impl FnMut(&mut Placed)) -> Duration {
    (0..5)
        .map(|_| {
            let mut copy = rows.to_vec();
            let start = Instant::now();
            for p in &mut copy {
                f(p);
            }
            start.elapsed()
        })
        .min()
        .unwrap()
}

/// The simulator's tickets, synced without redaction and read back as rows.
async fn sample(tickets: usize) -> Vec<Placed> {
    let sim = Simulator::start(
        SimConfig {
            tickets,
            seed: 7,
            plan: Plan::Enterprise,
            minute_secs: 0.05,
            ..SimConfig::default()
        },
        0,
    )
    .await
    .unwrap();
    let dir = tempfile_dir();
    let storage = Storage::local(&dir).unwrap();
    let spec = JobSpec {
        data: Some(dir.display().to_string()),
        base_url: Some(sim.base_url()),
        full_sync: Some(true),
        rate_window_secs: Some(0.05),
        redact: Some(RedactSpec {
            enabled: Some(false),
            ..Default::default()
        }),
        ..JobSpec::default()
    };
    let job = Job::resolve(spec, None).unwrap();
    let source = Source::new(ClientConfig {
        base_url: url::Url::parse(&sim.base_url()).unwrap(),
        api_key: sim.api_key(),
        limiter: job.limiter.clone(),
        retry: RetryPolicy::default(),
        timeout: Duration::from_secs(60),
        max_response_bytes: job.max_response_bytes,
    })
    .unwrap();
    pipeline::run(&job, Arc::new(source), &storage)
        .await
        .unwrap();
    let index = state::load_index(&storage).await.unwrap();
    let mut rows = Vec::new();
    let lake =
        ticketsync::state::delta::Lake::open(&storage, ticketsync::state::delta::At::Committed)
            .await
            .unwrap();
    for (account, year) in partitions(&index) {
        rows.extend(
            read_partition(&storage, &lake, &index, &account, year)
                .await
                .unwrap(),
        );
    }
    sim.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
    rows
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("ticketsync-privacy-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
