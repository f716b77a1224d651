//! `ticketsync sync`: resolve the job, open the dataset and the source, run the pipeline.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use clap::Args;

use super::Completion;
use crate::error::{Class, Classify};
use crate::job::{AccountFrom, Api, Job, JobSpec, MetricsOutputs};
use crate::metrics::{self, Facts};
use crate::pipeline;
use crate::report::{RunReport, RunStatus};
use crate::sim::Simulator;
use crate::source::retry::RetryPolicy;
use crate::source::{ClientConfig, Source};
use crate::storage::{layout, Storage};

pub use crate::job::API_KEY_ENV;

/// Sync closed tickets into the dataset.
///
/// Incremental by default (tickets updated since the stored cursor, minus an overlap); the first
/// run reads the full window. The API key is read from FRESHSERVICE_API_KEY.
///
/// Examples:
///   ticketsync sync --job jobs/demo.toml
///   FRESHSERVICE_API_KEY=... ticketsync sync --domain acme --data ./data
///   FRESHSERVICE_API_KEY=... ticketsync sync --domain acme --data s3://bucket/fs --full-sync
///   FRESHSERVICE_API_KEY=... ticketsync sync --job jobs/nightly.toml --ticket 17531
///
/// Exit codes: 0 ok; 1 ok but some tickets were rejected (see the rejects table);
/// 2 failed (cursor unchanged, rerun to retry); 3 configuration or credentials error.
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct SyncArgs {
    /// Dataset location: a directory, file:///path or s3://bucket/prefix.
    #[arg(long, value_name = "DIR|URL")]
    pub data: Option<String>,

    /// Freshservice base URL; /api/v2/... is appended (e.g. http://127.0.0.1:PORT for `ticketsync sim`).
    #[arg(long, value_name = "URL")]
    pub base_url: Option<String>,

    /// Freshservice account subdomain: acme → https://acme.freshservice.com/api/v2. Also the
    /// `domain` partition of every table; with --base-url it only names the account (the URL is
    /// what is called). Without it: the subdomain of a *.freshservice.com --base-url, else its
    /// host; `simulator` for the built-in simulator.
    #[arg(long, value_name = "NAME")]
    pub domain: Option<String>,

    /// Sync every ticket updated in the past full_sync_days (default 365).
    #[arg(long, conflicts_with_all = ["since", "ticket"])]
    pub full_sync: bool,

    /// Sync tickets updated since this RFC 3339 instant (e.g. 2025-01-01T00:00:00Z).
    #[arg(long, value_name = "RFC3339", conflicts_with = "ticket")]
    pub since: Option<DateTime<Utc>>,

    /// Sync this one ticket, whatever its updated_at (the cursor does not move).
    #[arg(long, value_name = "ID")]
    pub ticket: Option<i64>,

    /// Department (or, with --account-from workspace, workspace) custom field holding the
    /// account number [default: account_number].
    #[arg(long, value_name = "NAME")]
    pub account_field: Option<String>,

    /// CSV of department_id,account_number that wins over the custom field.
    #[arg(long, value_name = "FILE.csv")]
    pub account_map: Option<PathBuf>,

    /// Where account numbers come from: department (its custom field, the default) or
    /// workspace (the client, in Freshservice for MSPs: --workspace-map, else the workspace
    /// field named by --account-field).
    #[arg(long, value_enum, value_name = "FROM")]
    pub account_from: Option<AccountFromArg>,

    /// CSV of workspace_id,account_number (with --account-from workspace); wins over the
    /// workspace field.
    #[arg(long, value_name = "FILE.csv")]
    pub workspace_map: Option<PathBuf>,

    /// TOML job file (see jobs/); flags override its settings.
    #[arg(long, value_name = "FILE")]
    pub job: Option<PathBuf>,

    /// Share of the account's API budget to use, 0 < F <= 1 [default: 0.9].
    #[arg(long, value_name = "F")]
    pub budget_share: Option<f64>,

    /// Length of the API's rate window in seconds [default: 60].
    #[arg(long, value_name = "F")]
    pub rate_window_secs: Option<f64>,

    /// Most tickets fetched at once [default: 64]; the budget sets the actual rate.
    #[arg(long, value_name = "N")]
    pub concurrency: Option<usize>,

    /// Write a checkpoint after this many fetched tickets [default: 250]: durable, so a killed
    /// run resumes from it without fetching those tickets again.
    #[arg(long, value_name = "N")]
    pub checkpoint_every: Option<usize>,

    /// Commit the checkpoints to the tables (and documents) at most every MINUTES during a run
    /// [default: 30; 0: at every checkpoint]; the run's end always commits. Fewer commits write
    /// each partition fewer times.
    #[arg(long, value_name = "MINUTES")]
    pub commit_minutes: Option<f64>,

    /// Allow this run to remove up to N tickets (reopened, deleted, spam) [default: 100 or 5 %
    /// of the dataset, whichever is larger]. A run that would remove more removes none and fails
    /// (exit 2), so a server that wrongly reports tickets as deleted cannot empty the dataset.
    #[arg(long, value_name = "N")]
    pub max_removals: Option<u64>,

    /// Stop fetching after this many minutes, commit what was fetched and fail with
    /// status timed_out (exit 2; the cursor stays) [default: 360].
    #[arg(long, value_name = "MINUTES")]
    pub max_run_minutes: Option<f64>,

    /// Exit code of a run that finished with rejects [default: 1]. 0 suits schedulers that
    /// retry on any non-zero code (alert on the run report's rejects instead).
    #[arg(long, value_name = "N")]
    pub rejects_exit_code: Option<u8>,

    /// Keep tickets closed in the past N days only: older ones leave every table and document
    /// at the end of the run and are never written again [default: keep everything].
    #[arg(long, value_name = "N")]
    pub retention_days: Option<u32>,

    /// Keep the data files a commit replaces for N days, so Delta readers can read the tables
    /// as they were (time travel, `query --as-of`) [default: 0: every run ends with only the
    /// current files, which plain Parquet readers need]. With N > 0 a plain glob of the files
    /// also sees the replaced ones: read the Delta tables instead.
    #[arg(long, value_name = "N")]
    pub history_days: Option<u32>,
    /// Write the run's metrics (Prometheus text format) to this file at the end of every run,
    /// failed ones too, atomically: for node_exporter's textfile collector (name it *.prom).
    #[arg(long, value_name = "PATH")]
    pub metrics_file: Option<PathBuf>,

    /// Push the run's metrics to this Prometheus Pushgateway at the end of every run (group
    /// job="ticketsync", instance=<domain>). A failed push is a warning, not a failed run.
    #[arg(long, value_name = "URL")]
    pub pushgateway: Option<String>,
}

/// `--account-from` (the job's [`AccountFrom`]; clap stays in `cli`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AccountFromArg {
    /// Accounts from the ticket's department.
    Department,
    /// Accounts from the ticket's workspace.
    Workspace,
}

impl SyncArgs {
    /// What the flags say, as a job spec (the job file's values are overlaid by these).
    pub(crate) fn spec(&self) -> JobSpec {
        JobSpec {
            data: self.data.clone(),
            base_url: self.base_url.clone(),
            domain: self.domain.clone(),
            account_field: self.account_field.clone(),
            account_map: self.account_map.clone(),
            account_from: self.account_from.map(|from| match from {
                AccountFromArg::Department => AccountFrom::Department,
                AccountFromArg::Workspace => AccountFrom::Workspace,
            }),
            workspace_map: self.workspace_map.clone(),
            full_sync: self.full_sync.then_some(true),
            since: self.since,
            budget_share: self.budget_share,
            rate_window_secs: self.rate_window_secs,
            concurrency: self.concurrency,
            checkpoint_every: self.checkpoint_every,
            commit_minutes: self.commit_minutes,
            max_removals: self.max_removals,
            max_run_minutes: self.max_run_minutes,
            rejects_exit_code: self.rejects_exit_code,
            retention_days: self.retention_days,
            history_days: self.history_days,
            metrics_file: self.metrics_file.clone(),
            pushgateway: self.pushgateway.clone(),
            ..JobSpec::default()
        }
    }
}

/// Runs `ticketsync sync`: resolves the job, runs the pipeline and writes the run report.
pub async fn run(args: SyncArgs) -> super::Result<Completion> {
    let started_at = Utc::now();
    let started = std::time::Instant::now();
    // The job file may be unreadable: the flags alone still say where metrics go.
    let (spec, file_error) = match &args.job {
        // A fleet job: `--domain` picks one of its accounts instead of replacing its API.
        Some(path) => match JobSpec::from_file(path) {
            Ok(file) if file.accounts.is_some() => {
                let flags = JobSpec {
                    domain: None,
                    ..args.spec()
                };
                (file.overlay(flags), None)
            }
            Ok(file) => (file.overlay(args.spec()), None),
            Err(e) => (args.spec(), Some(e)),
        },
        None => (JobSpec::default().overlay(args.spec()), None),
    };
    if spec.accounts.is_some() && file_error.is_none() {
        return fleet(spec, args.domain.as_deref(), args.ticket).await;
    }
    let outputs = MetricsOutputs::from_spec(&spec).unwrap_or_default();
    let result = match file_error {
        Some(e) => Err(e.into()),
        None => sync(spec, args.ticket).await,
    };
    match result {
        Ok(mut finished) => {
            let warnings = publish_metrics(&outputs, &Facts::from_report(&finished.report)).await;
            if !warnings.is_empty() {
                // The report says so too; rewriting it is best effort like the metrics.
                finished.report.warnings.extend(warnings);
                let path = layout::run_report(&finished.report.run_id);
                if let Ok(body) = serde_json::to_vec_pretty(&finished.report) {
                    if let Err(e) = finished.storage.put(&path, body.into()).await {
                        tracing::warn!(error = %e, "cannot add the metrics warning to the run report");
                    }
                }
            }
            Ok(finished.completion)
        }
        Err(e) => {
            let facts =
                Facts::without_report(started_at, Utc::now(), started.elapsed().as_secs_f64());
            publish_metrics(&outputs, &facts).await;
            Err(e)
        }
    }
}

/// Writes the metrics file and pushes to the Pushgateway, as the job says; returns the
/// warnings (each also logged). Never fails the run (see [`crate::metrics`]).
async fn publish_metrics(outputs: &MetricsOutputs, facts: &Facts<'_>) -> Vec<String> {
    let mut warnings = Vec::new();
    if let Some(path) = &outputs.file {
        // Small synchronous file I/O; the runtime is idle at the end of a run.
        match metrics::write_file(path, facts) {
            Ok(()) => tracing::debug!(path = %path.display(), "metrics file written"),
            Err(e) => {
                tracing::warn!(error = %e, "metrics file not written; the run's result stands");
                warnings.push(e.to_string());
            }
        }
    }
    if let Some(url) = &outputs.pushgateway {
        match metrics::push(url, &outputs.instance, facts).await {
            Ok(()) => tracing::info!(
                pushgateway = %metrics::display_url(url),
                instance = %outputs.instance,
                "metrics pushed"
            ),
            Err(e) => {
                tracing::warn!(error = %e, "metrics not pushed; the run's result stands");
                warnings.push(e.to_string());
            }
        }
    }
    warnings
}

/// What a sync that got as far as a run report leaves.
struct Finished {
    completion: Completion,
    report: RunReport,
    storage: Storage,
}

async fn sync(spec: JobSpec, ticket: Option<i64>) -> super::Result<Finished> {
    let job = Job::resolve(spec, ticket)?;
    let storage = Storage::open(&job.data, &job.s3)?;

    // The in-process simulator lives as long as this function.
    let (base_url, api_key, simulator) = connect(&job).await?;
    let source = Source::new(ClientConfig {
        base_url,
        api_key,
        limiter: job.limiter.clone(),
        retry: RetryPolicy::default(),
        timeout: Duration::from_secs(60),
        max_response_bytes: job.max_response_bytes,
    })?
    .with_max_pages(job.max_pages);
    let outcome = pipeline::run(&job, Arc::new(source), &storage).await?;
    if let Some(sim) = simulator {
        sim.shutdown().await;
    }
    eprintln!("ticketsync {}", outcome.report.summary());
    if let Some(error) = outcome.error {
        if error.class() == Class::Config {
            return Err(error.into());
        }
        tracing::error!(error = %error, "sync failed; the cursor was not moved");
    }
    let completion = match outcome.report.status {
        RunStatus::Ok => Completion::Ok,
        RunStatus::OkWithRejects => {
            eprintln!(
                "ticketsync: {} tickets are in the rejects table ({}/rejects/, a Delta table: `ticketsync query` does not show them, DuckDB's delta_scan does), each with its reason; fix the department or workspace and the next run places them",
                outcome.report.tickets.rejected,
                storage.display().trim_end_matches('/')
            );
            Completion::OkWithRejects {
                code: job.rejects_exit_code,
            }
        }
        RunStatus::Failed | RunStatus::TimedOut => Completion::Failed,
    };
    Ok(Finished {
        completion,
        report: outcome.report,
        storage,
    })
}

/// `sync --job fleet.toml`: every account of the job (or the one `--domain` names) synced into
/// one dataset at the same time, each with its own source (budget, limiter, retries) and its
/// own run report, then the fleet summary. One account failing stops none of the others; the
/// exit code is the worst of them (a refused key or another account's configuration problem is
/// a failed fleet run, exit 2; exit 3 only when every account failed on its configuration).
async fn fleet(
    spec: JobSpec,
    only: Option<&str>,
    ticket: Option<i64>,
) -> super::Result<Completion> {
    let started_at = crate::state::now();
    let started = std::time::Instant::now();
    let specs = spec.fleet(only)?.unwrap_or_default();
    if ticket.is_some() && specs.len() > 1 {
        return Err(crate::job::Error::Invalid(
            "--ticket names a ticket of one account: add --domain to say which".into(),
        )
        .into());
    }
    let mut jobs = specs
        .into_iter()
        .map(|spec| Job::resolve(spec, ticket))
        .collect::<Result<Vec<_>, _>>()?;
    // One metrics file per account (`ticketsync.prom` → `ticketsync.acme.prom`), its series
    // labelled with the domain: side by side in node_exporter's textfile directory.
    for job in &mut jobs {
        if let Some(path) = &job.metrics.file {
            let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned());
            let ext = path.extension().map(|e| e.to_string_lossy().into_owned());
            let name = match (stem, ext) {
                (Some(stem), Some(ext)) => format!("{stem}.{}.{ext}", job.domain),
                (Some(stem), None) => format!("{stem}.{}", job.domain),
                _ => format!("ticketsync.{}.prom", job.domain),
            };
            job.metrics.file = Some(path.with_file_name(name));
        }
    }
    let storage = Storage::open(&jobs[0].data, &jobs[0].s3)?;
    let outcomes = futures::future::join_all(jobs.iter().map(|job| async {
        let result = sync_account(job, &storage).await;
        let facts = match &result {
            Ok(finished) => Facts::from_report(&finished.report),
            Err(_) => Facts::without_report(
                started_at,
                chrono::Utc::now(),
                started.elapsed().as_secs_f64(),
            ),
        };
        let facts = Facts {
            domain: Some(&job.domain),
            ..facts
        };
        publish_metrics(&job.metrics, &facts).await;
        result
    }))
    .await;
    let elapsed_secs = started.elapsed().as_secs_f64();
    let mut accounts = Vec::new();
    let mut worst = Completion::Ok;
    let mut config_errors = Vec::new();
    for (job, outcome) in jobs.iter().zip(outcomes) {
        let account = match outcome {
            Ok(finished) => {
                let r = &finished.report;
                worst = worse(worst, finished.completion);
                crate::report::FleetAccount {
                    domain: job.domain.clone(),
                    run_id: Some(r.run_id.clone()),
                    status: serde_json::to_value(r.status)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default(),
                    error: r.error.clone(),
                    tickets_fetched: r.tickets.fetched,
                    tickets_written: r.tickets.written,
                    credits_used: r.api.credits_used,
                    budget_per_sec: r.budget.target_per_window / r.budget.window_secs.max(1e-9),
                    utilization: r.budget.utilization,
                    elapsed_secs: r.elapsed_secs,
                }
            }
            Err(e) => {
                eprintln!("ticketsync {}: error: {e}", job.domain);
                worst = worse(worst, Completion::Failed);
                let text = e.to_string();
                if e.class() == Class::Config {
                    config_errors.push(e);
                }
                crate::report::FleetAccount {
                    domain: job.domain.clone(),
                    run_id: None,
                    status: "error".into(),
                    error: Some(text),
                    tickets_fetched: 0,
                    tickets_written: 0,
                    credits_used: 0,
                    budget_per_sec: 0.0,
                    utilization: 0.0,
                    elapsed_secs,
                }
            }
        };
        accounts.push(account);
    }
    let sum = |f: fn(&crate::report::FleetAccount) -> f64| accounts.iter().map(f).sum::<f64>();
    let report = crate::report::FleetReport {
        fleet_id: format!(
            "{}-{:04x}",
            started_at.format("%Y%m%dT%H%M%SZ"),
            rand::random::<u16>()
        ),
        data: storage.display().to_string(),
        started_at,
        finished_at: crate::state::now(),
        elapsed_secs,
        status: match worst {
            Completion::Ok => "ok",
            Completion::OkWithRejects { .. } => "ok_with_rejects",
            _ => "failed",
        }
        .into(),
        tickets_fetched: sum(|a| a.tickets_fetched as f64) as u64,
        tickets_written: sum(|a| a.tickets_written as f64) as u64,
        tickets_per_sec: sum(|a| a.tickets_fetched as f64) / elapsed_secs.max(1e-9),
        credits_per_sec: sum(|a| a.credits_used as f64) / elapsed_secs.max(1e-9),
        budget_per_sec: sum(|a| a.budget_per_sec),
        accounts,
    };
    eprintln!("ticketsync {}", report.summary());
    let body = serde_json::to_vec_pretty(&report).expect("the fleet report serializes");
    let path = layout::run_report(&format!("{}.fleet", report.fleet_id));
    if let Err(e) = storage.put(&path, body.into()).await {
        tracing::warn!(error = %e, "cannot write the fleet summary; each account's run report stands");
    }
    if config_errors.len() == jobs.len() {
        return Err(config_errors.remove(0));
    }
    Ok(worst)
}

/// The worse of two completions: failed over rejects over ok (the larger rejects code).
fn worse(a: Completion, b: Completion) -> Completion {
    let rank = |c: &Completion| match c {
        Completion::Ok => 0,
        Completion::OkWithRejects { .. } => 1,
        _ => 2,
    };
    match (a, b) {
        (Completion::OkWithRejects { code: x }, Completion::OkWithRejects { code: y }) => {
            Completion::OkWithRejects { code: x.max(y) }
        }
        (a, b) if rank(&b) > rank(&a) => b,
        (a, _) => a,
    }
}

/// One account of a fleet: like [`sync`] on a dataset opened once for all of them; a run that
/// ends on a configuration error (a refused key) is an error of this account only.
async fn sync_account(job: &Job, storage: &Storage) -> super::Result<Finished> {
    let (base_url, api_key, simulator) = connect(job).await?;
    let source = Source::new(ClientConfig {
        base_url,
        api_key,
        limiter: job.limiter.clone(),
        retry: RetryPolicy::default(),
        timeout: Duration::from_secs(60),
        max_response_bytes: job.max_response_bytes,
    })?
    .with_max_pages(job.max_pages);
    let outcome = pipeline::run(job, Arc::new(source), storage).await;
    if let Some(sim) = simulator {
        sim.shutdown().await;
    }
    let outcome = outcome?;
    eprintln!("ticketsync {}: {}", job.domain, outcome.report.summary());
    if let Some(error) = outcome.error {
        tracing::error!(domain = %job.domain, error = %error, "sync of this account failed; its cursor was not moved");
    }
    let completion = match outcome.report.status {
        RunStatus::Ok => Completion::Ok,
        RunStatus::OkWithRejects => Completion::OkWithRejects {
            code: job.rejects_exit_code,
        },
        RunStatus::Failed | RunStatus::TimedOut => Completion::Failed,
    };
    Ok(Finished {
        completion,
        report: outcome.report,
        storage: storage.clone(),
    })
}

/// The API a job talks to: its base URL and key, or the built-in simulator, started here (the
/// caller keeps it alive and shuts it down).
pub(crate) async fn connect(job: &Job) -> super::Result<(url::Url, String, Option<Simulator>)> {
    match &job.api {
        Api::Remote(url) => {
            let key = job.api_key()?.unwrap_or_default();
            Ok((url.clone(), key, None))
        }
        Api::Simulator(config) => {
            let sim = Simulator::start((**config).clone(), 0)
                .await
                .map_err(|e| super::Error::failed(e).context("starting the built-in simulator"))?;
            tracing::info!(url = %sim.base_url(), "built-in simulator started");
            let url = url::Url::parse(&sim.base_url())
                .map_err(|e| super::Error::failed(e).context("simulator URL"))?;
            let key = job.api_key()?.unwrap_or_else(|| sim.api_key());
            Ok((url, key, Some(sim)))
        }
    }
}
