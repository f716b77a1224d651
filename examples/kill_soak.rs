//! Crash-safety soak: SIGKILL the real `ticketsync` binary at seeded random moments of a full
//! sync against the simulator, rerun it to completion, and compare the dataset with a clean
//! run's (every table row, every markdown document, every object path). Prints how many kill
//! points it survived. The CI suite runs 20 points (`tests/it/kill.rs`); this runs as many as
//! you ask for.
//!
//! ```text
//! cargo build --release --bins --examples
//! ./target/release/examples/kill_soak --points 200 --tickets 300 --seed 7
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Instant;

use chrono::{DurationRound, Utc};
use clap::Parser;
use futures::TryStreamExt;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use ticketsync::sim::{Plan, SimConfig, Simulator};

#[derive(Debug, Parser)]
struct Args {
    /// Kill points to try.
    #[arg(long, default_value_t = 100)]
    points: usize,
    /// Tickets in the simulator.
    #[arg(long, default_value_t = 200)]
    tickets: usize,
    /// Seed of the kill moments.
    #[arg(long, default_value_t = 7)]
    seed: u64,
}

/// The binary next to this example (`target/<profile>/ticketsync`).
fn binary() -> PathBuf {
    let exe = std::env::current_exe().expect("own path");
    let dir = exe
        .parent()
        .and_then(|p| p.parent())
        .expect("target/<profile>");
    let bin = dir.join("ticketsync");
    assert!(
        bin.exists(),
        "build the binary first: cargo build --release --bins --examples"
    );
    bin
}

fn command(sim: &Simulator, data: &str) -> Command {
    let mut cmd = Command::new(binary());
    cmd.args([
        "sync",
        "--base-url",
        &sim.base_url(),
        "--data",
        data,
        "--full-sync",
    ])
    .args([
        "--rate-window-secs",
        "1",
        "--checkpoint-every",
        "20",
        "--quiet",
    ])
    .env("FRESHSERVICE_API_KEY", sim.api_key())
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    cmd
}

/// Every object's bytes, except run reports and state (which name the run); Parquet is compared
/// by its decoded rows without the per-run `synced_at`/`seen_at` columns.
async fn snapshot(dir: &std::path::Path) -> BTreeMap<String, String> {
    let store = LocalFileSystem::new_with_prefix(dir).unwrap();
    let paths: Vec<Path> = store
        .list(None)
        .map_ok(|m| m.location)
        .try_collect()
        .await
        .unwrap();
    let mut out = BTreeMap::new();
    for path in paths {
        let name = path.to_string();
        if name.starts_with("_runs/") || name.starts_with("_state/") {
            continue;
        }
        let bytes = store.get(&path).await.unwrap().bytes().await.unwrap();
        let content = if name.ends_with(".parquet") {
            let reader =
                parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes)
                    .unwrap()
                    .build()
                    .unwrap();
            let mut rows = Vec::new();
            for batch in reader {
                let batch = batch.unwrap();
                let keep: Vec<usize> = batch
                    .schema()
                    .fields()
                    .iter()
                    .enumerate()
                    .filter(|(_, f)| !matches!(f.name().as_str(), "synced_at" | "seen_at"))
                    .map(|(i, _)| i)
                    .collect();
                let projected = batch.project(&keep).unwrap();
                for i in 0..projected.num_rows() {
                    let row: Vec<String> = projected
                        .columns()
                        .iter()
                        .map(|c| arrow::util::display::array_value_to_string(c, i).unwrap())
                        .collect();
                    rows.push(row.join("|"));
                }
            }
            rows.join("\n")
        } else {
            String::from_utf8_lossy(&bytes).into_owned()
        };
        out.insert(name, content);
    }
    out
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let config = SimConfig {
        tickets: args.tickets,
        seed: 5,
        plan: Plan::Enterprise,
        minute_secs: 1.0,
        latency_ms: 3,
        now: Utc::now()
            .duration_trunc(chrono::Duration::minutes(1))
            .unwrap(),
        ..SimConfig::default()
    };
    let sim = Simulator::start(config, 0).await.unwrap();
    let clean_dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    command(&sim, clean_dir.path().to_str().unwrap())
        .status()
        .unwrap();
    let clean_time = started.elapsed();
    let clean = snapshot(clean_dir.path()).await;
    println!(
        "clean run: {:.2}s, {} objects",
        clean_time.as_secs_f64(),
        clean.len()
    );

    let mut rng = StdRng::seed_from_u64(args.seed);
    let (mut survived, mut hit_running) = (0, 0);
    for point in 0..args.points {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().to_str().unwrap().to_string();
        let at = clean_time.mul_f64(rng.gen_range(0.0..1.0));
        let mut child = command(&sim, &data).spawn().unwrap();
        std::thread::sleep(at);
        if child.try_wait().unwrap().is_none() {
            hit_running += 1;
        }
        let _ = child.kill();
        let _ = child.wait();
        command(&sim, &data).status().unwrap();
        if snapshot(dir.path()).await == clean {
            survived += 1;
        } else {
            println!(
                "kill point {point} at {:.3}s: dataset differs from the clean run",
                at.as_secs_f64()
            );
        }
    }
    println!(
        "survived {survived}/{} kill points ({hit_running} killed a running sync)",
        args.points
    );
    if survived != args.points {
        std::process::exit(1);
    }
}
