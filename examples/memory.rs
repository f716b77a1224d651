//! Peak memory of a full sync, by the number of tickets listed: memory must follow
//! `concurrency` and `checkpoint_every`, not the size of the account. Also the write
//! amplification: bytes the sync wrote through its system calls (`wchar` of `/proc/self/io`,
//! which also counts its few HTTP requests) ÷ the bytes the dataset keeps at the end. Then,
//! on the dataset the full sync left, an incremental run after `--changes` tickets spread over
//! the account got a late time entry: what it wrote, and how many partition files.
//!
//! ```text
//! cargo run --release --example memory                      # 2,000 and 20,000 tickets
//! cargo run --release --example memory -- --tickets 6000 --tickets 60000 --changes 100
//! ```
//!
//! The simulator runs in this process with its limits off and no latency (so the listing runs
//! as far ahead of the workers as it can); each sync runs in a child process of its own (this
//! program again, with `--child`), whose peak resident set (`VmHWM`) is what is printed, so the
//! simulator's own data is not in the figure.

use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, UploadPart,
};
use ticketsync::job::{Job, JobSpec};
use ticketsync::pipeline;
use ticketsync::sim::{Plan, SimConfig, Simulator};
use ticketsync::source::retry::RetryPolicy;
use ticketsync::source::{ClientConfig, Source};
use ticketsync::storage::Storage;

#[derive(Debug, Parser)]
struct Args {
    /// Tickets generated (about 60 % are closed in the last year and fetched); repeatable.
    #[arg(long)]
    tickets: Vec<usize>,
    /// Tickets changed (a late time entry each) before the incremental run; 0 skips it.
    #[arg(long, default_value_t = 100)]
    changes: usize,
    /// Child mode: sync from this simulator URL and print the peak RSS.
    #[arg(long, hide = true)]
    child: Option<String>,
    #[arg(long, hide = true)]
    key: Option<String>,
    /// Child mode: the data directory.
    #[arg(long, hide = true)]
    data: Option<String>,
    /// Child mode: an incremental run instead of a full sync.
    #[arg(long, hide = true)]
    incremental: bool,
}

/// What a child run printed.
struct Child(String);

impl Child {
    fn field(&self, name: &str) -> f64 {
        self.0
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("child printed no {name}: {}", self.0))
    }

    /// Bytes put through the store ÷ bytes kept at the end: Parquet (checkpoints and tables ÷
    /// the tables' files), markdown, the Delta logs, state, and all of it.
    fn by_kind(&self) -> String {
        let put = |k: &str| self.field(&format!("put_{k}"));
        let kept = |k: &str| self.field(&format!("kept_{k}"));
        let parquet = put("checkpoint_parquet") + put("table_parquet");
        let all_put: f64 = KINDS.iter().map(|k| put(k)).sum();
        let all_kept: f64 = KINDS.iter().map(|k| kept(k)).sum();
        format!(
            "put/kept: Parquet {:.1}/{:.1} MB = {:.2} (checkpoints {:.1}, tables {:.1}); \
             markdown {:.1}/{:.1} MB = {:.2}; Delta logs {:.2}/{:.2} MB; state {:.2}/{:.2} MB; \
             all {:.1}/{:.1} MB = {:.2}",
            parquet / 1e6,
            kept("table_parquet") / 1e6,
            parquet / kept("table_parquet"),
            put("checkpoint_parquet") / 1e6,
            put("table_parquet") / 1e6,
            put("markdown") / 1e6,
            kept("markdown") / 1e6,
            put("markdown") / kept("markdown"),
            put("delta_log") / 1e6,
            kept("delta_log") / 1e6,
            put("state") / 1e6,
            kept("state") / 1e6,
            all_put / 1e6,
            all_kept / 1e6,
            all_put / all_kept,
        )
    }
}

/// Runs this program as a child sync of `url` into `data`.
async fn run_child(url: &str, key: &str, data: &std::path::Path, incremental: bool) -> Child {
    let exe = std::env::current_exe().expect("own path");
    let mut args = vec![
        "--child".to_string(),
        url.to_string(),
        "--key".into(),
        key.to_string(),
        "--data".into(),
        data.to_str().expect("utf-8 path").to_string(),
    ];
    if incremental {
        args.push("--incremental".into());
    }
    let out = tokio::task::spawn_blocking(move || {
        Command::new(exe).args(&args).output().expect("child runs")
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "child failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Child(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    if let (Some(url), Some(key), Some(data)) = (&args.child, &args.key, &args.data) {
        child(url, key, data, args.incremental).await;
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
        let (url, key) = (sim.base_url(), sim.api_key());
        let dir = tempfile::tempdir().expect("temp dir");
        let full = run_child(&url, &key, dir.path(), false).await;
        let rss_mb = full.field("peak_rss_kb") / 1024.0;
        let (written, kept) = (full.field("written_bytes"), full.field("kept_bytes"));
        println!(
            "{n:>8} {:>8} {:>8} {rss_mb:>12.1} {:>10.1} {:>11.1} {:>9.1} {:>12.2}",
            full.field("listed"),
            full.field("fetched"),
            full.field("wall_s"),
            written / 1e6,
            kept / 1e6,
            written / kept
        );
        println!("  {}", full.by_kind());
        if args.changes > 0 {
            let changed = change(&sim, args.changes);
            let inc = run_child(&url, &key, dir.path(), true).await;
            println!(
                "  incremental after {changed} changed tickets: listed {} (fetched {}, written {}, \
                 rejected {}); wrote {:.2} MB \
                 ({:.2} % of the {:.1} MB kept); partition files written {} (of {} in the \
                 dataset), deleted {}; Parquet {:.2} MB; {:.1} s",
                inc.field("listed"),
                inc.field("fetched"),
                inc.field("written"),
                inc.field("rejected"),
                inc.field("written_bytes") / 1e6,
                100.0 * inc.field("written_bytes") / inc.field("kept_bytes"),
                inc.field("kept_bytes") / 1e6,
                inc.field("files_written"),
                inc.field("parquet_files"),
                inc.field("files_deleted"),
                inc.field("parquet_bytes") / 1e6,
                inc.field("wall_s"),
            );
            println!("  {}", inc.by_kind());
        }
        sim.shutdown().await;
        match first {
            None => first = Some((n, rss_mb)),
            Some((n0, rss0)) => {
                println!("  {n} tickets use {:.2}x the memory of {n0}", rss_mb / rss0)
            }
        }
    }
}

/// Gives `count` closed tickets, spread evenly over the account, a late time entry that bumps
/// their `updated_at`; returns how many it changed.
fn change(sim: &Simulator, count: usize) -> usize {
    let closed: Vec<i64> = sim
        .ground_truth()
        .tickets
        .iter()
        .filter(|t| t.status == 5 && !t.deleted && !t.spam)
        .map(|t| t.id)
        .collect();
    let step = (closed.len() / count.max(1)).max(1);
    let picked: Vec<i64> = closed.iter().step_by(step).take(count).copied().collect();
    for &id in &picked {
        sim.add_time_entry(id, 15, true, true);
    }
    picked.len()
}

/// One sync against `url` into `data` (full, or incremental on what is there), limits off;
/// prints what it listed, fetched and wrote, and its peak RSS.
async fn child(url: &str, key: &str, data: &str, incremental: bool) {
    let path = std::path::Path::new(data);
    let job = Job::resolve(
        JobSpec {
            data: Some(data.to_string()),
            base_url: Some(url.into()),
            full_sync: Some(!incremental),
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
    let bytes: Arc<[AtomicU64; 5]> = Arc::new(Default::default());
    let local = LocalFileSystem::new_with_prefix(path)
        .expect("data dir")
        .with_automatic_cleanup(true);
    let counting = Counting {
        inner: Arc::new(local),
        bytes: bytes.clone(),
    };
    let storage = Storage::from_store(Arc::new(counting), data);
    let started = Instant::now();
    let outcome = pipeline::run(&job, Arc::new(source), &storage)
        .await
        .expect("run");
    let wall = started.elapsed().as_secs_f64();
    if let Some(error) = &outcome.error {
        panic!("the sync failed: {error}");
    }
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
    let output = &outcome.report.output;
    let files = files(path);
    let kept = kept_by_kind(&files);
    for (i, name) in KINDS.iter().enumerate() {
        print!(
            "put_{name}={} kept_{name}={} ",
            bytes[i].load(Ordering::Relaxed),
            kept[i]
        );
    }
    println!(
        "listed={} unchanged={} fetched={} written={} rejected={} peak_rss_kb={peak_kb} wall_s={wall:.1} written_bytes={written} \
         kept_bytes={} files_written={} files_deleted={} parquet_bytes={} parquet_files={}",
        outcome.report.tickets.listed,
        outcome.report.tickets.unchanged,
        outcome.report.tickets.fetched,
        outcome.report.tickets.written,
        outcome.report.tickets.rejected,
        files.iter().map(|(_, len)| len).sum::<u64>(),
        output.parquet_files_written,
        output.parquet_files_deleted,
        output.parquet_bytes,
        files.iter().filter(|(rel, _)| rel.ends_with(".parquet")).count(),
    );
}

/// Every file under `dir`: its path relative to `dir` and its size.
fn files(dir: &std::path::Path) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(e.path()),
                _ => {
                    let rel = e
                        .path()
                        .strip_prefix(dir)
                        .unwrap()
                        .to_string_lossy()
                        .into_owned();
                    out.push((rel, e.metadata().map(|m| m.len()).unwrap_or(0)));
                }
            }
        }
    }
    out
}

/// The kinds of object a sync writes, as [`Counting`] tells them apart by path.
const KINDS: [&str; 5] = [
    "checkpoint_parquet",
    "table_parquet",
    "delta_log",
    "markdown",
    "state",
];

fn kind(path: &Path) -> usize {
    let text = path.as_ref();
    if text.contains("_delta_log/") {
        2
    } else if text.ends_with(".md") {
        3
    } else if text.ends_with(".parquet") && text.starts_with("_pending/") {
        0
    } else if text.ends_with(".parquet") {
        1
    } else {
        4
    }
}

/// A local store that counts the bytes put through it (single and multipart uploads) by
/// [`KINDS`]; renames and copies move bytes already counted. Handed to the sync with
/// [`Storage::from_store`], it sees every write, the Delta logs' included.
#[derive(Debug)]
struct Counting {
    inner: Arc<dyn ObjectStore>,
    bytes: Arc<[AtomicU64; 5]>,
}

impl std::fmt::Display for Counting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Counting({})", self.inner)
    }
}

#[derive(Debug)]
struct CountingUpload {
    inner: Box<dyn MultipartUpload>,
    counter: Arc<[AtomicU64; 5]>,
    kind: usize,
}

#[async_trait::async_trait]
impl MultipartUpload for CountingUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        self.counter[self.kind].fetch_add(data.content_length() as u64, Ordering::Relaxed);
        self.inner.put_part(data)
    }
    async fn complete(&mut self) -> object_store::Result<PutResult> {
        self.inner.complete().await
    }
    async fn abort(&mut self) -> object_store::Result<()> {
        self.inner.abort().await
    }
}

#[async_trait::async_trait]
impl ObjectStore for Counting {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.bytes[kind(location)].fetch_add(payload.content_length() as u64, Ordering::Relaxed);
        self.inner.put_opts(location, payload, opts).await
    }
    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        let inner = self.inner.put_multipart_opts(location, opts).await?;
        Ok(Box::new(CountingUpload {
            inner,
            counter: self.bytes.clone(),
            kind: kind(location),
        }))
    }
    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.inner.get_opts(location, options).await
    }
    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.inner.delete_stream(locations)
    }
    /// Sorted, as S3 lists (the Delta kernel relies on it under a `memory:` URL; a local
    /// directory lists in no order).
    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        let listing = self.inner.list(prefix);
        futures::stream::once(async move {
            let mut all: Vec<ObjectMeta> = listing.try_collect().await?;
            all.sort_by(|a, b| a.location.cmp(&b.location));
            Ok::<_, object_store::Error>(futures::stream::iter(all.into_iter().map(Ok)))
        })
        .try_flatten()
        .boxed()
    }
    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }
    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
    async fn rename_opts(
        &self,
        from: &Path,
        to: &Path,
        options: RenameOptions,
    ) -> object_store::Result<()> {
        self.inner.rename_opts(from, to, options).await
    }
}

/// Bytes of `files` by [`KINDS`].
fn kept_by_kind(files: &[(String, u64)]) -> [u64; 5] {
    let mut out = [0; 5];
    for (rel, len) in files {
        out[kind(&Path::from(rel.as_str()))] += len;
    }
    out
}
