//! Jobs: what a TOML job file (in `jobs/`) or the command line says, resolved into one validated
//! [`Job`].
//!
//! Two stages: [`JobSpec`] holds only what the user wrote (every field optional; the job file
//! and the flags each give one), [`Job::resolve`] merges them (flags win), applies defaults,
//! validates everything and reads the account map. Secrets never come from here: the API key is
//! read from `FRESHSERVICE_API_KEY`, S3 credentials from the standard AWS environment.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use url::Url;

use crate::normalize::accounts::{parse_account_map, parse_workspace_map};
use crate::normalize::privacy::{RedactSpec, Redactor};
use crate::sim::SimConfig;
use crate::source::limiter::LimiterConfig;
use crate::storage::S3Options;

/// Why a job cannot be used; every variant is a configuration error ([`Error::class`]).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The job file could not be read.
    #[error("cannot read job file {path}: {source}")]
    Read {
        /// The job file's path.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The job file is not valid TOML or has an unknown key or a value of the wrong type.
    #[error("job file {path} is invalid: {detail}")]
    Parse {
        /// The job file's path.
        path: String,
        /// The TOML parser's message (line, column, key).
        detail: String,
    },
    /// A value is out of range or contradicts another; the message names the key and the value.
    #[error("{0}")]
    Invalid(String),
}

impl crate::error::Classify for Error {
    /// Every job error is the configuration's.
    fn class(&self) -> crate::error::Class {
        crate::error::Class::Config
    }
}

type Result<T, E = Error> = std::result::Result<T, E>;

/// A job as written in a TOML file (or assembled from flags). Every field is optional.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    /// Dataset location: a directory, `file:///…` or `s3://bucket/prefix`.
    pub data: Option<String>,
    /// Freshservice base URL (`https://acme.freshservice.com`, or a simulator's URL).
    pub base_url: Option<String>,
    /// Freshservice account subdomain: `acme` → `https://acme.freshservice.com`.
    pub domain: Option<String>,
    /// The environment variable that holds the API key (default `FRESHSERVICE_API_KEY`).
    pub api_key_env: Option<String>,
    /// Department (or, with `account_from = "workspace"`, workspace) custom field holding the
    /// account number (default `account_number`).
    pub account_field: Option<String>,
    /// CSV `department_id,account_number` that wins over the custom field.
    pub account_map: Option<PathBuf>,
    /// Where a ticket's account number comes from: its department (default) or its workspace
    /// (a client, in Freshservice for MSPs).
    pub account_from: Option<AccountFrom>,
    /// With `account_from = "workspace"`: CSV `workspace_id,account_number` that wins over the
    /// workspace field named by `account_field`.
    pub workspace_map: Option<PathBuf>,
    /// Sync every ticket updated in the past `full_sync_days`.
    pub full_sync: Option<bool>,
    /// Window of a full sync (and of the first incremental run), in days (default 365;
    /// 1 to 7300).
    pub full_sync_days: Option<u32>,
    /// Sync tickets updated since this instant instead of the stored cursor.
    pub since: Option<DateTime<Utc>>,
    /// The next cursor is run start minus this overlap, in minutes (default 10; 0 to 10080,
    /// a week).
    pub overlap_minutes: Option<u64>,
    /// Hours billed for a ticket without time entries (default 0.25; 0 to 24).
    pub default_hours: Option<f64>,
    /// Share of the account's API budget this job may use (default 0.9; 0.01 to 1).
    pub budget_share: Option<f64>,
    /// Length of the API's rate window in seconds (default 60; 0.001 to 3600).
    pub rate_window_secs: Option<f64>,
    /// Most tickets fetched at once (default 64; 1 to 256); the budget limits the rate below
    /// that.
    pub concurrency: Option<usize>,
    /// Checkpoint after this many fetched tickets (default 250; 1 to 100000).
    pub checkpoint_every: Option<usize>,
    /// Minutes between two commits of the tables during a run (default 30; 0 commits every
    /// checkpoint; at most 1440): the checkpoints in between are durable but not yet visible.
    pub commit_minutes: Option<f64>,
    /// Re-read the time entries of tickets closed in the last N days (default 7; 0 = off; at
    /// most 365): time logged after close does not always move a ticket's updated_at.
    pub rescan_days: Option<u32>,
    /// Days the data files a commit replaces are kept for Delta time travel (default 0: deleted
    /// when the commit is done; at most 3650).
    pub history_days: Option<u32>,
    /// Hours between two re-scans (default 24: once a day even when the job runs more often;
    /// 0 to 8760, a year).
    pub rescan_every_hours: Option<f64>,
    /// Remove tickets that were deleted or marked spam (`filter=deleted`/`spam`; default true).
    pub reconcile: Option<bool>,
    /// How long the run lock lives without a refresh, in seconds (default 600; 0.1 to 86400):
    /// a killed run blocks the dataset this long.
    pub lock_ttl_secs: Option<f64>,
    /// Exit code of a run that finished with rejects (default 1; 0 for schedulers that retry on
    /// any non-zero code and alert on the run report instead; never 2 or 3, which mean failed
    /// and misconfigured).
    pub rejects_exit_code: Option<u8>,
    /// Largest API response body read, in MiB (default 64; 1 to 4096). A larger one fails the
    /// call (not retried) instead of the process running out of memory.
    pub max_response_mb: Option<u64>,
    /// Most tickets one run may remove (reopened, deleted, spam) before it refuses to remove
    /// any (default: 100 or 5 % of the placed tickets, whichever is larger).
    pub max_removals: Option<u64>,
    /// A run still going after this many minutes stops fetching, commits what it has and fails
    /// with `timed_out` (default 360; 1 to 10080).
    pub max_run_minutes: Option<f64>,
    /// Most pages one listing may have (default 20,000; 1 to 10,000,000).
    pub max_pages: Option<u32>,
    /// Keep tickets closed in the past N days only (1 to 36500; unset keeps everything): older
    /// tickets leave every table and document at the end of each sync and are never written
    /// again; rejects seen more than N days ago go too.
    pub retention_days: Option<u32>,
    /// Secret redaction: `enabled`, built-in `rules` on/off by name, `extra` named regexes.
    pub redact: Option<RedactSpec>,
    /// S3 settings for `s3://` data locations.
    pub s3: Option<S3Options>,
    /// Write the run's metrics in the Prometheus text format to this file at the end of every
    /// run (atomically; for node_exporter's textfile collector, name it `*.prom`).
    pub metrics_file: Option<PathBuf>,
    /// Push the run's metrics to this Prometheus Pushgateway at the end of every run.
    pub pushgateway: Option<String>,
    /// Run against the built-in simulator, in-process, instead of Freshservice.
    pub simulator: Option<SimulatorSpec>,
    /// A fleet: several Freshservice accounts synced into this one dataset side by side, each
    /// under its own API budget (`[[accounts]]`). Everything else in the file applies to
    /// every account unless the account says otherwise.
    pub accounts: Option<Vec<AccountSpec>>,
    /// Set by [`JobSpec::fleet`]: the domain of the fleet's first account, which a new dataset
    /// is created for whichever account's run starts first (so one process per account gives
    /// the dataset one fleet run gives). Never read from a file.
    #[serde(skip)]
    pub fleet_home: Option<String>,
}

/// One Freshservice account of a fleet job (`[[accounts]]`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountSpec {
    /// The account's subdomain (required): its `domain` partition, and its URL unless
    /// `base_url` or `simulator` says otherwise.
    pub domain: Option<String>,
    /// The account's base URL, when it is not `https://<domain>.freshservice.com`.
    pub base_url: Option<String>,
    /// The environment variable holding this account's API key (default
    /// `FRESHSERVICE_API_KEY`); with `simulator`, a key to send instead of the simulator's own.
    pub api_key_env: Option<String>,
    /// As the job's `account_field`, for this account.
    pub account_field: Option<String>,
    /// As the job's `account_map`, for this account.
    pub account_map: Option<PathBuf>,
    /// As the job's `account_from`, for this account.
    pub account_from: Option<AccountFrom>,
    /// As the job's `workspace_map`, for this account.
    pub workspace_map: Option<PathBuf>,
    /// Share of this account's own API budget (default: the job's `budget_share`).
    pub budget_share: Option<f64>,
    /// Rate window of this account's API (default: the job's `rate_window_secs`).
    pub rate_window_secs: Option<f64>,
    /// Most tickets fetched at once from this account (default: the job's `concurrency`).
    pub concurrency: Option<usize>,
    /// Sync this account from an in-process simulator of its own (demo and tests).
    pub simulator: Option<SimulatorSpec>,
}

/// The in-process simulator of a job (the demo job uses it).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimulatorSpec {
    /// Tickets to generate (0 to 100000: they are held in memory).
    pub tickets: Option<usize>,
    /// Seed of the generated data (the same seed, ticket count and start time give the same
    /// account).
    pub seed: Option<u64>,
    /// starter, growth, pro or enterprise.
    pub plan: Option<String>,
    /// Length of the simulator's rate window in seconds (60 = real time; 0.001 to 3600).
    pub minute_secs: Option<f64>,
    /// Latency added to every response, in milliseconds (0 to 60000).
    pub latency_ms: Option<u64>,
    /// Workspaces of the simulated account (1 = none, the default; 1 to 1000).
    pub workspaces: Option<usize>,
}

impl JobSpec {
    /// The job of each account of a fleet job (`[[accounts]]`), in the file's order: this job
    /// with the account's settings over it (its API entirely its own); `only` keeps the account
    /// of that domain (`sync --job fleet.toml --domain acme`, one CronJob per account). `None`
    /// for a job of one account.
    pub fn fleet(&self, only: Option<&str>) -> Result<Option<Vec<JobSpec>>> {
        let Some(accounts) = &self.accounts else {
            return Ok(None);
        };
        if self.domain.is_some() || self.base_url.is_some() || self.simulator.is_some() {
            return Err(Error::Invalid(
                "a job with [[accounts]] names each account's API there: move domain, base_url and [simulator] into the accounts".into(),
            ));
        }
        if accounts.is_empty() {
            return Err(Error::Invalid("[[accounts]] is empty".into()));
        }
        let mut seen = std::collections::HashSet::new();
        let mut specs = Vec::new();
        for (i, account) in accounts.iter().enumerate() {
            let domain = account.domain.clone().ok_or_else(|| {
                Error::Invalid(format!("[[accounts]] number {} has no domain", i + 1))
            })?;
            if !seen.insert(domain.clone()) {
                return Err(Error::Invalid(format!(
                    "[[accounts]]: domain {domain:?} is listed twice"
                )));
            }
            if only.is_some_and(|d| d != domain) {
                continue;
            }
            let base = JobSpec {
                accounts: None,
                fleet_home: accounts[0].domain.clone(),
                ..self.clone()
            };
            specs.push(JobSpec {
                domain: Some(domain),
                base_url: account.base_url.clone(),
                simulator: account.simulator.clone(),
                api_key_env: account.api_key_env.clone(),
                account_field: account.account_field.clone().or(base.account_field.clone()),
                account_map: account.account_map.clone().or(base.account_map.clone()),
                account_from: account.account_from.or(base.account_from),
                workspace_map: account.workspace_map.clone().or(base.workspace_map.clone()),
                budget_share: account.budget_share.or(base.budget_share),
                rate_window_secs: account.rate_window_secs.or(base.rate_window_secs),
                concurrency: account.concurrency.or(base.concurrency),
                ..base
            });
        }
        if let (Some(d), true) = (only, specs.is_empty()) {
            return Err(Error::Invalid(format!(
                "--domain {d:?} is not one of the job's [[accounts]] ({})",
                accounts
                    .iter()
                    .filter_map(|a| a.domain.as_deref())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        Ok(Some(specs))
    }

    /// The run lock's lifetime (`lock_ttl_secs`, default 600 s), range-checked: also for the
    /// commands that take the lock without a full job (`forget`, `prune`, `redact`).
    pub fn lock_ttl(&self) -> Result<Duration> {
        let secs = self
            .lock_ttl_secs
            .unwrap_or(crate::state::lock::DEFAULT_TTL.as_secs_f64());
        Ok(Duration::from_secs_f64(in_range(
            "lock_ttl_secs",
            secs,
            0.1..=86_400.0,
            " seconds",
        )?))
    }

    /// Reads a job file.
    pub fn from_file(path: &Path) -> Result<JobSpec> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: path.display().to_string(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| Error::Parse {
            path: path.display().to_string(),
            detail: e.to_string(),
        })
    }

    /// `self` with every field that `over` sets replaced by `over`'s value.
    pub fn overlay(self, over: JobSpec) -> JobSpec {
        // A window flag replaces the file's window entirely.
        let window_given = over.full_sync.is_some() || over.since.is_some();
        // An API flag replaces the file's API (URL, domain or simulator) entirely.
        let api_given = over.base_url.is_some() || over.domain.is_some();
        JobSpec {
            data: over.data.or(self.data),
            base_url: if api_given {
                over.base_url
            } else {
                self.base_url
            },
            domain: if api_given { over.domain } else { self.domain },
            api_key_env: over.api_key_env.or(self.api_key_env),
            account_field: over.account_field.or(self.account_field),
            account_map: over.account_map.or(self.account_map),
            account_from: over.account_from.or(self.account_from),
            workspace_map: over.workspace_map.or(self.workspace_map),
            full_sync: if window_given {
                over.full_sync
            } else {
                self.full_sync
            },
            full_sync_days: over.full_sync_days.or(self.full_sync_days),
            since: if window_given { over.since } else { self.since },
            overlap_minutes: over.overlap_minutes.or(self.overlap_minutes),
            default_hours: over.default_hours.or(self.default_hours),
            budget_share: over.budget_share.or(self.budget_share),
            rate_window_secs: over.rate_window_secs.or(self.rate_window_secs),
            concurrency: over.concurrency.or(self.concurrency),
            checkpoint_every: over.checkpoint_every.or(self.checkpoint_every),
            commit_minutes: over.commit_minutes.or(self.commit_minutes),
            rescan_days: over.rescan_days.or(self.rescan_days),
            history_days: over.history_days.or(self.history_days),
            rescan_every_hours: over.rescan_every_hours.or(self.rescan_every_hours),
            reconcile: over.reconcile.or(self.reconcile),
            lock_ttl_secs: over.lock_ttl_secs.or(self.lock_ttl_secs),
            rejects_exit_code: over.rejects_exit_code.or(self.rejects_exit_code),
            max_response_mb: over.max_response_mb.or(self.max_response_mb),
            max_removals: over.max_removals.or(self.max_removals),
            max_run_minutes: over.max_run_minutes.or(self.max_run_minutes),
            max_pages: over.max_pages.or(self.max_pages),
            retention_days: over.retention_days.or(self.retention_days),
            redact: over.redact.or(self.redact),
            s3: over.s3.or(self.s3),
            metrics_file: over.metrics_file.or(self.metrics_file),
            pushgateway: over.pushgateway.or(self.pushgateway),
            simulator: if api_given {
                None
            } else {
                over.simulator.or(self.simulator)
            },
            accounts: over.accounts.or(self.accounts),
            fleet_home: over.fleet_home.or(self.fleet_home),
        }
    }
}

/// Where a ticket's account number comes from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccountFrom {
    /// The department's custom field (`account_field`), or the account map.
    #[default]
    Department,
    /// The ticket's workspace: the workspace map, or the workspace field `account_field`.
    Workspace,
}

/// Which tickets a run reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    /// From the stored cursor (or the full window on the first run).
    Incremental,
    /// Every ticket updated in the full window.
    Full,
    /// Every ticket updated since this instant.
    Since(DateTime<Utc>),
    /// One ticket, whatever its `updated_at`.
    Ticket(i64),
}

/// Where the tickets come from.
#[derive(Debug, Clone, PartialEq)]
pub enum Api {
    /// A Freshservice account (or anything speaking its API) at this base URL.
    Remote(Url),
    /// The built-in simulator, started in-process for the run, with this configuration.
    Simulator(Box<SimConfig>),
}

/// A validated job.
#[derive(Debug, Clone)]
pub struct Job {
    /// Dataset location: a directory, `file:///…` or `s3://bucket/prefix`.
    pub data: String,
    /// S3 settings for `s3://` locations (the environment fills what the job leaves out).
    pub s3: S3Options,
    /// Freshservice or the built-in simulator.
    pub api: Api,
    /// The Freshservice account's subdomain: the `domain` partition of every table
    /// ([`default_domain`] when the job names none).
    pub domain: String,
    /// The environment variable holding the API key.
    pub api_key_env: String,
    /// The domain a new dataset is created for (`format.json`): this job's, or in a fleet the
    /// first account's.
    pub home_domain: String,
    /// The custom field holding the account number (default `account_number`).
    pub account_field: String,
    /// `department_id` → account number from the `account_map` CSV; wins over the custom field.
    pub account_map: HashMap<i64, String>,
    /// Whether accounts come from departments or workspaces.
    pub account_from: AccountFrom,
    /// `workspace_id` → account number (`workspace_map`); empty unless accounts come from
    /// workspaces.
    pub workspace_map: HashMap<i64, String>,
    /// Which tickets the run reads.
    pub window: Window,
    /// Days of a full sync's window (and of the first incremental run's).
    pub full_sync_days: u32,
    /// Subtracted from the run's start to make the next cursor, so a ticket updated while a
    /// run lists is read again next time.
    pub overlap: Duration,
    /// Minutes billed for a ticket without time entries (`default_hours` × 60, rounded).
    pub default_minutes: i64,
    /// The credit budget: allowance, `budget_share`, rate window.
    pub limiter: LimiterConfig,
    /// Most tickets fetched at once (1 to 256).
    pub concurrency: usize,
    /// Checkpoint after this many fetched tickets (1 to 100000).
    pub checkpoint_every: usize,
    /// Least time between two table commits of a run (the last one comes at its end).
    pub commit_every: Duration,
    /// Re-read the time entries of tickets closed in the last N days; 0 turns the re-scan off.
    pub rescan_days: u32,
    /// Days replaced data files are kept (Delta time travel); 0 deletes them at each commit.
    pub history_days: u32,
    /// Least time between two re-scans.
    pub rescan_every: Duration,
    /// Remove tickets the API lists as deleted or spam.
    pub reconcile: bool,
    /// Lifetime of the run lock between refreshes.
    pub lock_ttl: Duration,
    /// Exit code of a run that finished with rejects.
    pub rejects_exit_code: u8,
    /// Largest API response body read, in bytes (`max_response_mb`).
    pub max_response_bytes: u64,
    /// The removal guard's limit; `None`: the default, from the dataset's size.
    pub max_removals: Option<u64>,
    /// How long a run may go on before it stops fetching and fails with `timed_out`.
    pub max_run: Duration,
    /// Most pages one listing may have.
    pub max_pages: u32,
    /// Keep tickets closed in the past N days only; `None` keeps everything.
    pub retention_days: Option<u32>,
    /// The secret redaction rules.
    pub redactor: std::sync::Arc<Redactor>,
    /// Where the run's metrics go (`metrics_file`, `pushgateway`).
    pub metrics: MetricsOutputs,
}

/// Where a run publishes its metrics (see [`crate::metrics`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetricsOutputs {
    /// The textfile, written atomically at the end of every run.
    pub file: Option<PathBuf>,
    /// The Pushgateway's base URL (`http(s)://host:port[/prefix]`).
    pub pushgateway: Option<Url>,
    /// The `instance` label of the push: the Freshservice subdomain, else the API's host.
    pub instance: String,
}

impl MetricsOutputs {
    /// The outputs a spec names; an invalid Pushgateway URL is an error naming it.
    pub fn from_spec(spec: &JobSpec) -> Result<MetricsOutputs> {
        let pushgateway = match &spec.pushgateway {
            None => None,
            Some(raw) => {
                let url = Url::parse(raw)
                    .ok()
                    .filter(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some());
                Some(url.ok_or_else(|| {
                    // The URL may hold credentials: name it without them.
                    let shown = Url::parse(raw)
                        .map(|u| crate::metrics::display_url(&u))
                        .unwrap_or_else(|_| "the value given".into());
                    Error::Invalid(format!(
                        "pushgateway {shown} is not an http(s) URL with a host"
                    ))
                })?)
            }
        };
        if spec
            .metrics_file
            .as_ref()
            .is_some_and(|p| p.file_name().is_none())
        {
            return Err(Error::Invalid(
                "metrics_file must name a file, e.g. /var/lib/node_exporter/ticketsync.prom".into(),
            ));
        }
        Ok(MetricsOutputs {
            file: spec.metrics_file.clone(),
            pushgateway,
            instance: crate::metrics::instance(spec.domain.as_deref(), spec.base_url.as_deref()),
        })
    }
}

/// The domain of a job that names none: for `--base-url`, the subdomain of a
/// `*.freshservice.com` host, else the host itself (`127.0.0.1`, `fs.internal`); for the
/// built-in simulator, `simulator`.
pub fn default_domain(api: &Api) -> String {
    match api {
        Api::Simulator(_) => "simulator".to_string(),
        Api::Remote(url) => {
            let host = url.host_str().unwrap_or("remote").to_ascii_lowercase();
            let name = host
                .strip_suffix(".freshservice.com")
                .filter(|sub| !sub.contains('.'))
                .unwrap_or(&host);
            name.chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                        c
                    } else {
                        '-'
                    }
                })
                .collect()
        }
    }
}

impl Job {
    /// Validates a merged spec. `ticket` is the single-ticket flag (command line only).
    pub fn resolve(spec: JobSpec, ticket: Option<i64>) -> Result<Job> {
        let invalid = |s: String| Error::Invalid(s);
        if spec.accounts.is_some() {
            return Err(invalid(
                "this is a fleet job ([[accounts]]); only `sync` runs fleets so far: `sync --job FILE` runs every account, `sync --job FILE --domain NAME` one".into(),
            ));
        }
        let metrics = MetricsOutputs::from_spec(&spec)?;
        let lock_ttl = spec.lock_ttl()?;
        let data = spec.data.ok_or_else(|| {
            invalid(
                "no data location: pass --data DIR|s3://bucket/prefix or set data in the job file"
                    .into(),
            )
        })?;
        let domain_ok = |domain: &str| {
            !domain.is_empty()
                && domain.len() <= 63
                && domain
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-')
        };
        if let Some(domain) = spec.domain.as_deref().filter(|d| !domain_ok(d)) {
            return Err(invalid(format!(
                "--domain {domain:?} is not a Freshservice subdomain (letters, digits, '-')"
            )));
        }
        let domain = spec.domain.clone();
        let api = match (spec.base_url, spec.domain, spec.simulator) {
            // With --base-url, --domain only names the account (the URL is what is called).
            (Some(url), _, _) => Api::Remote(Url::parse(&url).map_err(|e| {
                invalid(format!(
                    "--base-url {:?} is not a URL: {e}",
                    crate::metrics::display_url_text(&url)
                ))
            })?),
            // A fleet's simulated account has a domain and a simulator of its own.
            (None, _, Some(sim)) => Api::Simulator(Box::new(simulator_config(&sim)?)),
            (None, Some(domain), _) => Api::Remote(
                Url::parse(&format!("https://{domain}.freshservice.com"))
                    .map_err(|e| invalid(format!("--domain {domain:?}: {e}")))?,
            ),
            (None, None, None) => {
                return Err(invalid(
                    "no Freshservice account: pass --domain NAME or --base-url URL (or use a job with [simulator])".into(),
                ))
            }
        };
        if let Api::Remote(url) = &api {
            if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
                return Err(invalid(format!(
                    "--base-url {} must be an http(s) URL with a host",
                    crate::metrics::display_url(url)
                )));
            }
        }
        let domain = domain.unwrap_or_else(|| default_domain(&api));
        let account_map = match &spec.account_map {
            None => HashMap::new(),
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
                    path: path.display().to_string(),
                    source,
                })?;
                parse_account_map(&text)
                    .map_err(|e| invalid(format!("account map {}: {e}", path.display())))?
            }
        };
        let account_from = spec.account_from.unwrap_or_default();
        let workspace_map =
            match (&spec.workspace_map, account_from) {
                (None, _) => HashMap::new(),
                (Some(path), AccountFrom::Workspace) => {
                    let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
                        path: path.display().to_string(),
                        source,
                    })?;
                    parse_workspace_map(&text)
                        .map_err(|e| invalid(format!("workspace map {}: {e}", path.display())))?
                }
                (Some(_), AccountFrom::Department) => return Err(invalid(
                    "--workspace-map needs --account-from workspace (account_from = \"workspace\")"
                        .into(),
                )),
            };
        if account_from == AccountFrom::Workspace && spec.account_map.is_some() {
            return Err(invalid(
                "--account-map maps departments; with --account-from workspace use --workspace-map"
                    .into(),
            ));
        }
        let window = match (ticket, spec.full_sync.unwrap_or(false), spec.since) {
            (Some(id), false, None) => Window::Ticket(id),
            (None, true, None) => Window::Full,
            (None, false, Some(since)) => Window::Since(since),
            (None, false, None) => Window::Incremental,
            _ => {
                return Err(invalid(
                    "--full-sync, --since and --ticket exclude each other".into(),
                ))
            }
        };
        // Every number is range-checked here, so nothing downstream can panic on it (a
        // `Duration` from 1e20 seconds, a date 2^32 days back) or wait for decades.
        let budget_share = in_range(
            "budget_share",
            spec.budget_share.unwrap_or(0.9),
            0.01..=1.0,
            "",
        )?;
        let rate_window_secs = in_range(
            "rate_window_secs",
            spec.rate_window_secs.unwrap_or(60.0),
            0.001..=3600.0,
            " seconds",
        )?;
        let default_hours = in_range(
            "default_hours",
            spec.default_hours.unwrap_or(0.25),
            0.0..=24.0,
            " hours",
        )?;
        let concurrency = in_range("concurrency", spec.concurrency.unwrap_or(64), 1..=256, "")?;
        let checkpoint_every = in_range(
            "checkpoint_every",
            spec.checkpoint_every.unwrap_or(250),
            1..=100_000,
            " tickets",
        )?;
        let commit_minutes = in_range(
            "commit_minutes",
            spec.commit_minutes.unwrap_or(30.0),
            0.0..=1440.0,
            " minutes",
        )?;
        let rescan_every_hours = in_range(
            "rescan_every_hours",
            spec.rescan_every_hours.unwrap_or(24.0),
            0.0..=8760.0,
            " hours",
        )?;
        let full_sync_days = in_range(
            "full_sync_days",
            spec.full_sync_days.unwrap_or(365),
            1..=7300,
            " days",
        )?;
        let overlap_minutes = in_range(
            "overlap_minutes",
            spec.overlap_minutes.unwrap_or(10),
            0..=10_080,
            " minutes",
        )?;
        let rescan_days = in_range(
            "rescan_days",
            spec.rescan_days.unwrap_or(7),
            0..=365,
            " days",
        )?;
        let history_days = in_range(
            "history_days",
            spec.history_days.unwrap_or(0),
            0..=3650,
            " days",
        )?;
        let max_response_mb = in_range(
            "max_response_mb",
            spec.max_response_mb.unwrap_or(DEFAULT_MAX_RESPONSE_MB),
            1..=4096,
            " MiB",
        )?;
        let max_run_minutes = in_range(
            "max_run_minutes",
            spec.max_run_minutes.unwrap_or(360.0),
            0.01..=10_080.0,
            " minutes",
        )?;
        let max_pages = in_range(
            "max_pages",
            spec.max_pages.unwrap_or(crate::source::DEFAULT_MAX_PAGES),
            1..=10_000_000,
            " pages",
        )?;
        let account_field = spec
            .account_field
            .unwrap_or_else(|| "account_number".into());
        if account_field.trim().is_empty() {
            return Err(invalid("account_field must not be empty".into()));
        }
        let retention_days = spec
            .retention_days
            .map(|d| in_range("retention_days", d, 1..=36_500, " days"))
            .transpose()?;
        let redactor = Redactor::new(&spec.redact.unwrap_or_default()).map_err(invalid)?;
        let rejects_exit_code = spec.rejects_exit_code.unwrap_or(1);
        if matches!(rejects_exit_code, 2 | 3) {
            return Err(invalid(format!(
                "rejects_exit_code = {rejects_exit_code} is taken: 2 means failed and 3 misconfigured (use 0, 1 or 4 to 255)"
            )));
        }
        let api_key_env = spec.api_key_env.unwrap_or_else(|| API_KEY_ENV.to_string());
        if api_key_env.is_empty()
            || !api_key_env
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return Err(invalid(format!(
                "api_key_env {api_key_env:?} is not an environment variable name (letters, digits, '_')"
            )));
        }
        Ok(Job {
            data,
            s3: spec.s3.unwrap_or_default(),
            api,
            home_domain: spec.fleet_home.unwrap_or_else(|| domain.clone()),
            domain,
            api_key_env,
            account_field,
            account_map,
            account_from,
            workspace_map,
            window,
            full_sync_days,
            overlap: Duration::from_secs(overlap_minutes * 60),
            default_minutes: (default_hours * 60.0).round() as i64,
            limiter: LimiterConfig {
                budget_share,
                window: Duration::from_secs_f64(rate_window_secs),
                ..LimiterConfig::default()
            },
            concurrency,
            checkpoint_every,
            commit_every: Duration::from_secs_f64(commit_minutes * 60.0),
            rescan_days,
            history_days,
            rescan_every: Duration::from_secs_f64(rescan_every_hours * 3600.0),
            reconcile: spec.reconcile.unwrap_or(true),
            lock_ttl,
            rejects_exit_code,
            max_response_bytes: max_response_mb * 1024 * 1024,
            max_removals: spec.max_removals,
            max_run: Duration::from_secs_f64(max_run_minutes * 60.0),
            max_pages,
            retention_days,
            redactor: std::sync::Arc::new(redactor),
            metrics,
        })
    }
}

impl Job {
    /// The Freshservice API key, from `FRESHSERVICE_API_KEY` or the variable `api_key_env`
    /// names (never a flag or a job key: flags end up in shell history and process lists);
    /// `None` for the simulator, which makes its own, unless `api_key_env` names a variable
    /// that is set.
    pub fn api_key(&self) -> Result<Option<String>> {
        let from_env = std::env::var(&self.api_key_env)
            .ok()
            .filter(|k| !k.trim().is_empty());
        match &self.api {
            // The simulator makes its own key; a variable that is set is sent instead (a fleet
            // test's refused key).
            Api::Simulator(_) if self.api_key_env == API_KEY_ENV => Ok(None),
            Api::Simulator(_) => Ok(from_env),
            Api::Remote(_) => from_env.map(Some).ok_or_else(|| {
                Error::Invalid(format!(
                    "{} is not set: export the Freshservice API key of the agent that runs the sync of {}",
                    self.api_key_env, self.domain
                ))
            }),
        }
    }
}

/// The environment variable holding the Freshservice API key.
pub const API_KEY_ENV: &str = "FRESHSERVICE_API_KEY";

/// The simulator a job's `[simulator]` table describes, every value range-checked and the plan
/// parsed (a typo in `plan` is a job error, not a failure at run time).
fn simulator_config(spec: &SimulatorSpec) -> Result<SimConfig> {
    let mut config = SimConfig::default();
    if let Some(n) = spec.tickets {
        config.tickets = in_range("simulator.tickets", n, 0..=100_000, "")?;
    }
    if let Some(seed) = spec.seed {
        config.seed = seed;
    }
    if let Some(plan) = &spec.plan {
        config.plan = plan.parse().map_err(|_| {
            Error::Invalid(format!(
                "simulator.plan = {plan:?} is not a plan: starter, growth, pro or enterprise"
            ))
        })?;
    }
    if let Some(secs) = spec.minute_secs {
        config.minute_secs = in_range("simulator.minute_secs", secs, 0.001..=3600.0, " seconds")?;
    }
    if let Some(ms) = spec.latency_ms {
        config.latency_ms = in_range("simulator.latency_ms", ms, 0..=60_000, " ms")?;
    }
    if let Some(n) = spec.workspaces {
        config.workspaces = in_range("simulator.workspaces", n, 1..=1000, "")?;
    }
    Ok(config)
}

/// Default of `max_response_mb` (64).
pub const DEFAULT_MAX_RESPONSE_MB: u64 = crate::source::client::DEFAULT_MAX_RESPONSE_BYTES >> 20;

/// `value` when it lies in `allowed`; otherwise an [`Error::Invalid`] naming the key and the
/// range. NaN lies in no range.
fn in_range<T: PartialOrd + std::fmt::Display + Copy>(
    key: &str,
    value: T,
    allowed: std::ops::RangeInclusive<T>,
    unit: &str,
) -> Result<T> {
    if allowed.contains(&value) {
        Ok(value)
    } else {
        Err(Error::Invalid(format!(
            "{key} = {value} is out of range: allowed {} to {}{unit}",
            allowed.start(),
            allowed.end()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(toml_text: &str) -> JobSpec {
        toml::from_str(toml_text).unwrap()
    }

    #[test]
    fn redaction_and_retention_settings_are_checked() {
        let base = "data = \"d\"\ndomain = \"acme\"\n";
        let job = Job::resolve(spec(base), None).unwrap();
        assert!(!job.redactor.is_disabled(), "redaction is on by default");
        assert_eq!(
            job.retention_days, None,
            "retention keeps everything by default"
        );
        let job = Job::resolve(
            spec(&format!(
                "{base}retention_days = 2555\n[redact]\nrules = {{ card_number = false }}\nextra = {{ pin = 'PIN-(?P<value>\\d+)' }}\n"
            )),
            None,
        )
        .unwrap();
        assert_eq!(job.retention_days, Some(2555));
        let mut counts = Default::default();
        assert_eq!(
            job.redactor
                .redact("PIN-1234 4111 1111 1111 1111", &mut counts),
            "PIN-[redacted:pin] 4111 1111 1111 1111"
        );
        for (bad, names) in [
            ("retention_days = 0\n", "retention_days"),
            ("[redact]\nrules = { passwords = false }\n", "passwords"),
            ("[redact]\nextra = { x = '(' }\n", "redact.extra.x"),
        ] {
            let err = Job::resolve(spec(&format!("{base}{bad}")), None).unwrap_err();
            assert!(matches!(err, Error::Invalid(_)), "{bad}: {err}");
            assert!(err.to_string().contains(names), "{bad}: {err}");
        }
        // A misspelled key in [redact] is refused by the file parser.
        assert!(toml::from_str::<JobSpec>(&format!("{base}[redact]\nenable = false\n")).is_err());
    }

    #[test]
    fn every_job_file_in_jobs_is_valid() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/jobs");
        let mut seen = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().and_then(|e| e.to_str()) != Some("toml") {
                continue;
            }
            let spec = JobSpec::from_file(&path).unwrap();
            // A fleet job is valid when each of its accounts' jobs is.
            let specs = spec.fleet(None).unwrap().unwrap_or_else(|| vec![spec]);
            for spec in specs {
                Job::resolve(spec, None).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            }
            seen += 1;
        }
        assert!(seen >= 2, "jobs/demo.toml and jobs/nightly.toml at least");
    }

    #[test]
    fn a_fleet_job_is_one_job_per_account_with_its_own_settings_over_the_shared_ones() {
        let text = "data = \"d\"\nbudget_share = 0.8\nconcurrency = 16\naccount_field = \"acct\"\n\
            [[accounts]]\ndomain = \"acme\"\n\
            [[accounts]]\ndomain = \"globex\"\napi_key_env = \"KEY_GLOBEX\"\nbudget_share = 0.5\naccount_from = \"workspace\"\n";
        let file: JobSpec = toml::from_str(text).unwrap();
        let specs = file.fleet(None).unwrap().unwrap();
        let jobs: Vec<Job> = specs
            .into_iter()
            .map(|s| Job::resolve(s, None).unwrap())
            .collect();
        assert_eq!(jobs.len(), 2);
        let (acme, globex) = (&jobs[0], &jobs[1]);
        assert_eq!(acme.domain, "acme");
        assert_eq!(acme.api_key_env, API_KEY_ENV);
        assert_eq!(acme.limiter.budget_share, 0.8);
        assert_eq!(globex.api_key_env, "KEY_GLOBEX");
        assert_eq!(globex.limiter.budget_share, 0.5);
        assert_eq!(globex.account_from, AccountFrom::Workspace);
        assert_eq!((acme.concurrency, globex.concurrency), (16, 16));
        assert_eq!(globex.account_field, "acct");
        // A new dataset is created for the first account, whichever account's run comes first.
        assert_eq!(
            (acme.home_domain.as_str(), globex.home_domain.as_str()),
            ("acme", "acme")
        );
        assert_eq!(
            acme.api,
            Api::Remote(Url::parse("https://acme.freshservice.com").unwrap())
        );

        // `--domain` picks one; one that is not there is an error naming those that are.
        let one = file.fleet(Some("globex")).unwrap().unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].domain.as_deref(), Some("globex"));
        let err = file.fleet(Some("initech")).unwrap_err().to_string();
        assert!(err.contains("acme, globex"), "{err}");

        for (text, needle) in [
            (
                "data = \"d\"\ndomain = \"x\"\n[[accounts]]\ndomain = \"a\"\n",
                "move domain",
            ),
            (
                "data = \"d\"\n[[accounts]]\ndomain = \"a\"\n[[accounts]]\ndomain = \"a\"\n",
                "listed twice",
            ),
            (
                "data = \"d\"\n[[accounts]]\nbase_url = \"http://x\"\n",
                "has no domain",
            ),
        ] {
            let spec: JobSpec = toml::from_str(text).unwrap();
            let err = spec.fleet(None).unwrap_err().to_string();
            assert!(err.contains(needle), "{text}: {err}");
        }
        // Any other command refuses a fleet job instead of guessing an account.
        assert!(Job::resolve(file, None)
            .unwrap_err()
            .to_string()
            .contains("fleet job"));
        // A variable name that is no variable name.
        let bad: JobSpec =
            toml::from_str("data = \"d\"\ndomain = \"a\"\napi_key_env = \"A-B\"\n").unwrap();
        assert!(Job::resolve(bad, None)
            .unwrap_err()
            .to_string()
            .contains("api_key_env"));
    }

    #[test]
    fn flags_override_the_file() {
        let file =
            spec("data = \"./data\"\ndomain = \"acme\"\nfull_sync = true\nbudget_share = 0.5\n");
        let flags = JobSpec {
            since: Some("2025-01-01T00:00:00Z".parse().unwrap()),
            base_url: Some("http://127.0.0.1:9".into()),
            ..Default::default()
        };
        let job = Job::resolve(file.overlay(flags), None).unwrap();
        assert_eq!(
            job.window,
            Window::Since("2025-01-01T00:00:00Z".parse().unwrap())
        );
        assert_eq!(
            job.api,
            Api::Remote(Url::parse("http://127.0.0.1:9").unwrap())
        );
        assert_eq!(job.limiter.budget_share, 0.5);
    }

    #[test]
    fn domain_becomes_the_freshservice_url() {
        let job = Job::resolve(spec("data = \"d\"\ndomain = \"acme\""), None).unwrap();
        assert_eq!(
            job.api,
            Api::Remote(Url::parse("https://acme.freshservice.com").unwrap())
        );
        let err =
            Job::resolve(spec("data = \"d\"\ndomain = \"evil.example/x\""), None).unwrap_err();
        assert!(
            err.to_string().contains("not a Freshservice subdomain"),
            "{err}"
        );
    }

    /// Issue 19, redaction 7: a base URL's password is in no message.
    #[test]
    fn privacy_a_bad_base_url_is_named_without_its_password() {
        for url in ["ftp://user:S3cretPw@host/", "http://user:S3cretPw@[::1/"] {
            let text = format!("data = \"d\"\nbase_url = \"{url}\"");
            let err = Job::resolve(spec(&text), None).unwrap_err().to_string();
            assert!(err.contains("--base-url"), "{err}");
            assert!(!err.contains("S3cretPw"), "{err}");
        }
    }

    #[test]
    fn invalid_settings_are_named() {
        let cases = [
            ("domain = \"a\"", "no data location"),
            ("data = \"d\"", "no Freshservice account"),
            (
                "data = \"d\"\ndomain = \"a\"\nbudget_share = 1.5",
                "budget_share = 1.5",
            ),
            (
                "data = \"d\"\ndomain = \"a\"\nrate_window_secs = 0.0",
                "rate_window_secs",
            ),
            (
                "data = \"d\"\ndomain = \"a\"\nconcurrency = 0",
                "concurrency = 0",
            ),
        ];
        for (text, needle) in cases {
            let err = Job::resolve(spec(text), None).unwrap_err().to_string();
            assert!(err.contains(needle), "{text}: {err}");
        }
        let err = Job::resolve(
            spec("data = \"d\"\ndomain = \"a\"\nfull_sync = true"),
            Some(5),
        )
        .unwrap_err();
        assert!(err.to_string().contains("exclude each other"));
        assert!(
            toml::from_str::<JobSpec>("dta = 1").is_err(),
            "typos are errors"
        );
    }

    /// Every numeric key, with values that are NaN, infinite, negative, huge or 2^32 − 1: each is
    /// refused with the key and its range named, and none panics.
    #[test]
    fn every_number_is_range_checked() {
        // (key and value as written in the job file, the range the error must name)
        let cases = [
            ("budget_share = nan", "budget_share = NaN is out of range: allowed 0.01 to 1"),
            ("budget_share = 0.0", "allowed 0.01 to 1"),
            ("budget_share = -0.5", "allowed 0.01 to 1"),
            ("budget_share = inf", "budget_share = inf"),
            ("rate_window_secs = 1e20", "rate_window_secs = 100000000000000000000 is out of range: allowed 0.001 to 3600 seconds"),
            ("rate_window_secs = nan", "rate_window_secs = NaN"),
            ("rate_window_secs = -inf", "rate_window_secs = -inf"),
            ("rate_window_secs = 4294967295.0", "allowed 0.001 to 3600 seconds"),
            ("lock_ttl_secs = 1e20", "lock_ttl_secs = 100000000000000000000 is out of range: allowed 0.1 to 86400 seconds"),
            ("lock_ttl_secs = nan", "lock_ttl_secs = NaN"),
            ("lock_ttl_secs = -1.0", "lock_ttl_secs = -1"),
            ("rescan_every_hours = 1e20", "rescan_every_hours = 100000000000000000000 is out of range: allowed 0 to 8760 hours"),
            ("rescan_every_hours = inf", "rescan_every_hours = inf"),
            ("rescan_every_hours = -1.0", "rescan_every_hours = -1"),
            ("default_hours = nan", "default_hours = NaN is out of range: allowed 0 to 24 hours"),
            ("default_hours = 1e20", "allowed 0 to 24 hours"),
            ("default_hours = -0.25", "default_hours = -0.25"),
            ("overlap_minutes = 4294967295", "overlap_minutes = 4294967295 is out of range: allowed 0 to 10080 minutes"),
            ("overlap_minutes = 9223372036854775807", "overlap_minutes = 9223372036854775807"),
            ("full_sync_days = 4294967295", "full_sync_days = 4294967295 is out of range: allowed 1 to 7300 days"),
            ("full_sync_days = 0", "full_sync_days = 0"),
            ("concurrency = 4294967295", "concurrency = 4294967295 is out of range: allowed 1 to 256"),
            ("concurrency = 0", "concurrency = 0"),
            ("checkpoint_every = 4294967295", "checkpoint_every = 4294967295 is out of range: allowed 1 to 100000 tickets"),
            ("checkpoint_every = 0", "checkpoint_every = 0"),
            ("rescan_days = 4294967295", "rescan_days = 4294967295 is out of range: allowed 0 to 365 days"),
            ("max_response_mb = 0", "max_response_mb = 0 is out of range: allowed 1 to 4096 MiB"),
            ("max_response_mb = 4294967295", "max_response_mb = 4294967295"),
        ];
        for (line, needle) in cases {
            let text = format!("data = \"d\"\ndomain = \"a\"\n{line}");
            let err = Job::resolve(spec(&text), None).unwrap_err();
            assert!(matches!(err, Error::Invalid(_)), "{line}: {err}");
            assert!(err.to_string().contains(needle), "{line}: {err}");
        }
        let simulator = [
            ("tickets = 4294967295", "simulator.tickets = 4294967295 is out of range: allowed 0 to 100000"),
            ("minute_secs = 1e20", "simulator.minute_secs = 100000000000000000000 is out of range: allowed 0.001 to 3600 seconds"),
            ("minute_secs = nan", "simulator.minute_secs = NaN"),
            ("minute_secs = -1.0", "simulator.minute_secs = -1"),
            ("latency_ms = 4294967295", "simulator.latency_ms = 4294967295 is out of range: allowed 0 to 60000 ms"),
        ];
        for (line, needle) in simulator {
            let text = format!("data = \"d\"\n[simulator]\n{line}");
            let err = Job::resolve(spec(&text), None).unwrap_err();
            assert!(err.to_string().contains(needle), "{line}: {err}");
        }
        // Values a TOML integer field cannot hold are parse errors (also exit 3), not panics.
        for line in [
            "full_sync_days = -1",
            "concurrency = 1e20",
            "overlap_minutes = nan",
        ] {
            assert!(toml::from_str::<JobSpec>(line).is_err(), "{line}");
        }
        // The edges are allowed.
        let edges =
            "data = \"d\"\ndomain = \"a\"\nbudget_share = 0.01\nrate_window_secs = 3600.0\n\
                     lock_ttl_secs = 86400.0\nrescan_every_hours = 0.0\ndefault_hours = 24.0\n\
                     overlap_minutes = 10080\nfull_sync_days = 7300\nconcurrency = 256\n\
                     checkpoint_every = 1\nrescan_days = 365\nmax_response_mb = 4096";
        let job = Job::resolve(spec(edges), None).unwrap();
        assert_eq!(job.max_response_bytes, 4096 << 20);
        assert_eq!(job.overlap, Duration::from_secs(10_080 * 60));
    }

    #[test]
    fn metrics_outputs_come_from_the_file_or_the_flags() {
        let file = spec(
            "data = \"d\"\ndomain = \"acme\"\nmetrics_file = \"/var/lib/ne/ts.prom\"\npushgateway = \"http://pg:9091\"",
        );
        let job = Job::resolve(file.clone(), None).unwrap();
        assert_eq!(job.metrics.file, Some(PathBuf::from("/var/lib/ne/ts.prom")));
        assert_eq!(
            job.metrics.pushgateway,
            Some(Url::parse("http://pg:9091").unwrap())
        );
        assert_eq!(job.metrics.instance, "acme");
        let flags = JobSpec {
            pushgateway: Some("ftp://u:secret@pg".into()),
            ..Default::default()
        };
        let err = Job::resolve(file.overlay(flags), None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("not an http(s) URL") && !err.contains("secret"),
            "{err}"
        );
        let job = Job::resolve(spec("data = \"d\"\ndomain = \"acme\""), None).unwrap();
        assert_eq!(job.metrics.file, None);
        assert_eq!(job.metrics.pushgateway, None);
    }

    #[test]
    fn defaults() {
        let job = Job::resolve(spec("data = \"d\"\ndomain = \"a\""), None).unwrap();
        assert_eq!(job.window, Window::Incremental);
        assert_eq!(job.default_minutes, 15);
        assert_eq!(job.full_sync_days, 365);
        assert_eq!(job.account_field, "account_number");
        assert_eq!(job.limiter.window, Duration::from_secs(60));
        assert_eq!(job.max_response_bytes, 64 << 20);
    }

    #[test]
    fn accounts_from_workspaces_take_a_validated_workspace_map() {
        let dir = tempfile::tempdir().unwrap();
        let map = dir.path().join("ws.csv");
        std::fs::write(&map, "workspace_id,account_number\n3,700101\n4, C-4 \n").unwrap();
        let base = "data = \"./d\"\ndomain = \"acme\"\n";

        let job = Job::resolve(spec(base), None).unwrap();
        assert_eq!(job.account_from, AccountFrom::Department);
        assert!(job.workspace_map.is_empty());

        let file = spec(&format!(
            "{base}account_from = \"workspace\"\nworkspace_map = {:?}\n",
            map.display().to_string()
        ));
        let job = Job::resolve(file.clone(), None).unwrap();
        assert_eq!(job.account_from, AccountFrom::Workspace);
        assert_eq!(
            job.workspace_map,
            HashMap::from([(3, "700101".to_string()), (4, "C-4".to_string())])
        );
        // The flag wins over the file.
        let flags = JobSpec {
            account_from: Some(AccountFrom::Department),
            ..Default::default()
        };
        let err = Job::resolve(file.overlay(flags), None).unwrap_err();
        assert!(err.to_string().contains("--workspace-map needs"), "{err}");

        // Department maps do not apply to workspace accounts; bad lines are refused.
        let both = JobSpec {
            account_from: Some(AccountFrom::Workspace),
            account_map: Some(map.clone()),
            ..spec(base)
        };
        assert!(Job::resolve(both, None).is_err());
        std::fs::write(&map, "3,../x\n").unwrap();
        let bad = JobSpec {
            account_from: Some(AccountFrom::Workspace),
            workspace_map: Some(map.clone()),
            ..spec(base)
        };
        let err = Job::resolve(bad, None).unwrap_err().to_string();
        assert!(
            err.contains("workspace map") && err.contains("not a plain identifier"),
            "{err}"
        );
        assert!(toml::from_str::<JobSpec>("account_from = \"client\"").is_err());
    }
}
