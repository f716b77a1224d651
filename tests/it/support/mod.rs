//! The integration-test harness: an in-process simulator, a dataset in a temp dir or on an
//! in-process S3 server, the pipeline run through the library, the real binary run through
//! [`Cmd`], golden files through [`golden::check`], and canonical dumps of what was written.

#![allow(dead_code)]

pub mod cmd;
pub mod golden;
pub mod planted;
pub mod s3;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::RecordBatch;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use object_store::path::Path;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use ticketsync::job::{Job, JobSpec};
use ticketsync::pipeline::{self, RunOutcome};
use ticketsync::sim::{Plan, SimConfig, Simulator};
use ticketsync::source::retry::RetryPolicy;
use ticketsync::source::{ClientConfig, Source};
use ticketsync::state::lock;
use ticketsync::storage::{layout, S3Options, Storage};
use ticketsync::tables::Table;

pub use self::cmd::{reports, Cmd, Ran};
use self::s3::S3Server;

/// The window every harness run covers (the simulator's data spans ~14 months).
pub const FULL_DAYS: i64 = 365;

/// Where a harness keeps its dataset. Suites that must hold on every backend run once per
/// variant (as object_store runs one suite against every store).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A temp dir.
    Local,
    /// `s3://<bucket>/datasets/tickets` on an in-process S3 server.
    S3,
}

pub struct Harness {
    pub sim: Simulator,
    /// The dataset directory (local backend; unused with S3).
    pub dir: tempfile::TempDir,
    /// The S3 server holding the dataset (S3 backend).
    pub s3: Option<S3Server>,
    pub storage: Storage,
    pub minute_secs: f64,
}

/// The dataset prefix inside the test bucket.
pub const S3_PREFIX: &str = "datasets/tickets";

impl Harness {
    /// A simulator with `tickets` tickets (Enterprise plan, 1-second rate windows) and an empty dataset.
    pub async fn new(tickets: usize, seed: u64) -> Harness {
        Self::with_config(SimConfig {
            tickets,
            seed,
            plan: Plan::Enterprise,
            minute_secs: 1.0,
            ..SimConfig::default()
        })
        .await
    }

    pub async fn with_config(config: SimConfig) -> Harness {
        Self::on(Backend::Local, config).await
    }

    /// A harness whose dataset lives on `backend`.
    pub async fn on(backend: Backend, config: SimConfig) -> Harness {
        let minute_secs = config.minute_secs;
        let sim = Simulator::start(config, 0).await.expect("simulator starts");
        let dir = tempfile::tempdir().expect("temp dir");
        let (s3, storage) = match backend {
            Backend::Local => {
                let storage =
                    Storage::open(dir.path().to_str().unwrap(), &S3Options::default()).unwrap();
                (None, storage)
            }
            Backend::S3 => {
                let server = S3Server::start().await;
                let storage = server.storage(S3_PREFIX);
                (Some(server), storage)
            }
        };
        Harness {
            sim,
            dir,
            s3,
            storage,
            minute_secs,
        }
    }

    /// The `--data` location of the dataset.
    pub fn data(&self) -> String {
        match &self.s3 {
            None => self.dir.path().to_str().unwrap().to_string(),
            Some(server) => server.url(S3_PREFIX),
        }
    }

    /// A job spec for this harness; tests tweak it.
    pub fn spec(&self) -> JobSpec {
        JobSpec {
            data: Some(self.data()),
            s3: self.s3.as_ref().map(S3Server::options),
            base_url: Some(self.sim.base_url()),
            // The simulator stands in for acme.freshservice.com: the dataset's domain.
            domain: Some("acme".into()),
            rate_window_secs: Some(self.minute_secs),
            checkpoint_every: Some(50),
            ..JobSpec::default()
        }
    }

    pub fn full_spec(&self) -> JobSpec {
        JobSpec {
            full_sync: Some(true),
            ..self.spec()
        }
    }

    pub fn source(&self, job: &Job) -> Arc<Source> {
        let retry = RetryPolicy {
            base_delay: Duration::from_millis(5),
            max_delay: Duration::from_millis(100),
            ..RetryPolicy::default()
        };
        Arc::new(
            Source::new(ClientConfig {
                base_url: url::Url::parse(&self.sim.base_url()).unwrap(),
                api_key: self.sim.api_key(),
                limiter: job.limiter.clone(),
                retry,
                timeout: Duration::from_secs(5),
                max_response_bytes: job.max_response_bytes,
            })
            .unwrap(),
        )
    }

    /// Runs one sync with `spec` (and `ticket` for a single-ticket run).
    pub async fn sync_with(&self, spec: JobSpec, ticket: Option<i64>) -> RunOutcome {
        self.try_sync_with(spec, ticket)
            .await
            .expect("run completes")
    }

    /// Runs one sync; `Err` when the run could not start (e.g. the dataset is locked).
    pub async fn try_sync_with(
        &self,
        spec: JobSpec,
        ticket: Option<i64>,
    ) -> Result<RunOutcome, pipeline::Error> {
        let job = Job::resolve(spec, ticket).expect("valid job");
        let source = self.source(&job);
        pipeline::run(&job, source, &self.storage).await
    }

    pub async fn full_sync(&self) -> RunOutcome {
        self.sync_with(self.full_spec(), None).await
    }

    pub async fn incremental(&self) -> RunOutcome {
        self.sync_with(self.spec(), None).await
    }

    /// `ticketsync <command>` (the real binary) against this harness's simulator (`--base-url`,
    /// the API key), with the S3 server's credentials when the dataset is there.
    pub fn cmd(&self, command: &str) -> Cmd {
        let cmd = Cmd::new([command]).sim(&self.sim);
        // The dataset's domain, as in `spec`.
        let cmd = match command {
            "sync" | "check" => cmd.args(["--domain", "acme"]),
            _ => cmd,
        };
        match &self.s3 {
            Some(server) => cmd.s3(server),
            None => cmd,
        }
    }

    /// `ticketsync sync` into `data`, on the simulator's 1-second rate window; `extra` follows.
    pub fn sync_command(&self, data: &str, extra: &[&str]) -> Cmd {
        self.cmd("sync")
            .data(data)
            .args(["--rate-window-secs", "1"])
            .args(extra)
    }

    pub async fn dump(&self) -> Dump {
        Dump::of(&self.storage).await
    }
}

/// What the passing of its TTL does to the lock of a run that was killed (it refreshes no
/// more), without waiting for it: the lock's expiry moves into the past. No lock: nothing to do.
pub async fn expire_lock(storage: &Storage) {
    let Some(mut info) = lock::peek(storage).await.expect("the lock reads") else {
        return;
    };
    info.expires_at = chrono::Utc::now() - chrono::Duration::seconds(1);
    let json = serde_json::to_vec_pretty(&info).unwrap();
    storage
        .put(&layout::state(lock::LOCK), json.into())
        .await
        .expect("the lock writes");
}

/// Everything a dataset holds, in canonical text: per table the rows (sorted, without the
/// per-run `synced_at`/`seen_at`), the markdown documents, and the list of data objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dump {
    pub rows: BTreeMap<&'static str, Vec<String>>,
    pub markdown: BTreeMap<String, String>,
    pub files: Vec<String>,
}

impl Dump {
    /// Reads the tables as their logs say (the versions of the last commit). A data file that is
    /// no active file of its table (left behind by a commit) fails the test; data file names,
    /// which carry the commit that wrote them, are shown as `part-*.parquet`, once per
    /// partition. Nothing may be left under `_pending/` or `_staging/`.
    pub async fn of(storage: &Storage) -> Dump {
        let all = storage.list(&Path::from("")).await.unwrap();
        let lake =
            ticketsync::state::delta::Lake::open(storage, ticketsync::state::delta::At::Committed)
                .await
                .unwrap();
        let mut rows = BTreeMap::new();
        let mut data_files = Vec::new();
        for table in Table::ALL {
            let mut lines = Vec::new();
            let on_disk: Vec<&Path> = all
                .iter()
                .filter(|p| {
                    p.as_ref().starts_with(&format!("{}/", table.name()))
                        && !p.as_ref().contains("/_delta_log/")
                })
                .collect();
            // A table without a log is one of an older release's dataset: its files are its rows.
            let active: Vec<Path> = if lake.version(table).is_none() {
                on_disk.iter().map(|p| (*p).clone()).collect()
            } else {
                lake.all_files(table).map(|f| f.object(table)).collect()
            };
            for path in &active {
                let partition = path.as_ref().rsplit_once('/').unwrap().0.to_string();
                data_files.push(format!("{partition}/part-*.parquet"));
                for batch in read_parquet(storage, path).await {
                    for line in canonical_rows(&batch) {
                        lines.push(format!("{partition} | {line}"));
                    }
                }
            }
            for path in &on_disk {
                assert!(
                    active.contains(path),
                    "{path} is in no commit of {}",
                    table.name()
                );
            }
            lines.sort();
            rows.insert(table.name(), lines);
        }
        let mut files: Vec<String> = all
            .iter()
            .map(|p| p.to_string())
            .filter(|p| {
                !p.starts_with("_runs/")
                    && !p.starts_with("_state/")
                    && !Table::ALL
                        .iter()
                        .any(|t| p.starts_with(&format!("{}/", t.name())))
            })
            .chain(data_files)
            .collect();
        // A partition's files as one entry: how many files hold its rows depends on how the
        // runs that wrote it were cut (appends, compaction), not on the data.
        files.sort();
        files.dedup();
        let mut markdown = BTreeMap::new();
        for path in all.iter().filter(|p| p.as_ref().starts_with("markdown/")) {
            let bytes = storage.get(path).await.unwrap().unwrap();
            markdown.insert(path.to_string(), String::from_utf8(bytes.to_vec()).unwrap());
        }
        Dump {
            rows,
            markdown,
            files,
        }
    }

    pub fn table(&self, name: &str) -> &[String] {
        &self.rows[name]
    }
}

/// The active data files of `table`, as its log's last commit says.
pub async fn data_files(storage: &Storage, table: Table) -> Vec<Path> {
    let lake =
        ticketsync::state::delta::Lake::open(storage, ticketsync::state::delta::At::Committed)
            .await
            .unwrap();
    lake.all_files(table).map(|f| f.object(table)).collect()
}

pub async fn read_parquet(storage: &Storage, path: &Path) -> Vec<RecordBatch> {
    let bytes = storage.get(path).await.unwrap().unwrap();
    ParquetRecordBatchReaderBuilder::try_new(bytes)
        .unwrap()
        .build()
        .unwrap()
        .map(|b| b.unwrap())
        .collect()
}

/// Rows as `col=value` lines, without the per-run timestamps.
pub fn canonical_rows(batch: &RecordBatch) -> Vec<String> {
    let options = FormatOptions::default().with_null("∅");
    let schema = batch.schema();
    let columns: Vec<(String, ArrayFormatter<'_>)> = schema
        .fields()
        .iter()
        .zip(batch.columns())
        .filter(|(f, _)| !matches!(f.name().as_str(), "synced_at" | "seen_at"))
        .map(|(f, c)| {
            (
                f.name().clone(),
                ArrayFormatter::try_new(c.as_ref(), &options).unwrap(),
            )
        })
        .collect();
    (0..batch.num_rows())
        .map(|i| {
            columns
                .iter()
                .map(|(name, fmt)| format!("{name}={}", fmt.value(i)))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

/// Our own reading of `time_spent` (independent of the code under test): `h:mm[:ss]`, one
/// entry's minutes (seconds rounded half up).
pub fn minutes_of(time_spent: &str) -> i64 {
    (seconds_of(time_spent) + 30) / 60
}

/// `time_spent` (`h:mm[:ss]`) in seconds.
pub fn seconds_of(time_spent: &str) -> i64 {
    let parts: Vec<i64> = time_spent.split(':').map(|p| p.parse().unwrap()).collect();
    (parts[0] * 60 + parts[1]) * 60 + parts.get(2).copied().unwrap_or(0)
}

/// A ticket's minutes from its entries' `time_spent`: the seconds summed, rounded once.
pub fn total_minutes_of<'a>(time_spent: impl IntoIterator<Item = &'a str>) -> i64 {
    (time_spent.into_iter().map(seconds_of).sum::<i64>() + 30) / 60
}

/// A column of a batch as strings (for assertions).
pub fn column_strings(batch: &RecordBatch, name: &str) -> Vec<String> {
    let options = FormatOptions::default().with_null("∅");
    let col = batch
        .column_by_name(name)
        .unwrap_or_else(|| panic!("no column {name}"));
    let fmt = ArrayFormatter::try_new(col.as_ref(), &options).unwrap();
    (0..batch.num_rows())
        .map(|i| fmt.value(i).to_string())
        .collect()
}

/// Copies a directory tree (a dataset, a fixture); a fixture's `README.md` stays behind.
pub fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else if entry.file_name() != "README.md" {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// The columns datasets appended to a table since format 1 (format 2: issue 11; format 3: the
/// notes' Codex keys, issue 20), in contract order.
pub fn added_columns(table: Table) -> &'static [&'static str] {
    match table {
        Table::Tickets => &[
            "workspace_id",
            "category",
            "sub_category",
            "item_category",
            "urgency",
            "impact",
            "tags",
            "custom_fields",
            "due_by",
            "fr_due_by",
            "is_escalated",
            "fr_escalated",
            "resolved_at",
            "first_responded_at",
            "agent_responded_at",
            "first_resp_time_secs",
            "resolution_time_secs",
            "responder_email",
            "responder_name",
            "group_name",
        ],
        Table::Conversations => &["attachments"],
        Table::TimeEntries => &[
            "workspace_id",
            "task_id",
            "custom_fields",
            "agent_name",
            "start_time",
        ],
        Table::Notes => &["to_emails", "updated_at", "incoming", "support_email"],
        Table::Rejects => &[],
    }
}
