//! `ticketsync check`: resolve the job as `sync` would, run the read-only checks of
//! [`crate::check`], print them for a person or as JSON, and exit 0 (a sync would run),
//! 2 (the run lock is held: a sync now would be refused) or 3 (configuration or credentials).

use std::time::Duration;

use clap::{Args, ValueEnum};

use super::sync::{connect, SyncArgs};
use super::Completion;
use crate::check::{self, CheckReport};
use crate::error::Class;
use crate::job::{Api, Job, JobSpec};
use crate::source::retry::RetryPolicy;
use crate::source::{ClientConfig, Source};
use crate::storage::Storage;

/// Check a job before running it: API, storage, run lock, and what the next run will cost.
///
/// Read-only and cheap: a few API credits (workspaces, departments, /tickets/filter counts) and
/// one probe object written to and deleted from <data>/_state/. It never takes the run lock.
/// Takes the same job file and flags as `sync` (the window flags pick the estimate: the
/// incremental run from the stored cursor by default, or --full-sync).
///
/// Examples:
///   ticketsync check --job jobs/demo.toml
///   FRESHSERVICE_API_KEY=... ticketsync check --job jobs/nightly.toml --full-sync
///   FRESHSERVICE_API_KEY=... ticketsync check --domain acme --data s3://bucket/fs --format json
///
/// Exit codes: 0 a sync would run; 2 another run holds the lock (a sync now would be refused);
/// 3 configuration or credentials problems (all of them are listed).
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct CheckArgs {
    /// Output: human (default) or json (for automation).
    #[arg(long, value_enum, default_value_t = OutputFormat::Human)]
    pub format: OutputFormat,

    /// The job to check, given as for `sync`.
    #[command(flatten)]
    pub job: SyncArgs,
}

/// `--format` of the check's report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Sentences for a person, one section per part (default).
    Human,
    /// The whole report as one JSON object, for automation.
    Json,
}

/// Runs `ticketsync check`: resolves the job, runs the checks and prints the report.
pub async fn run(args: CheckArgs) -> super::Result<Completion> {
    let spec = match &args.job.job {
        // A fleet job: `--domain` picks one of its accounts, as for `sync`.
        Some(path) => match JobSpec::from_file(path) {
            Ok(file) if file.accounts.is_some() => file.overlay(JobSpec {
                domain: None,
                ..args.job.spec()
            }),
            Ok(file) => file.overlay(args.job.spec()),
            Err(e) => return finish(&args, problem_only(format!("{e}"))),
        },
        None => JobSpec::default().overlay(args.job.spec()),
    };
    let specs = match spec.fleet(args.job.domain.as_deref()) {
        Ok(Some(specs)) => specs,
        Ok(None) => vec![spec],
        Err(e) => return finish(&args, problem_only(format!("{e}"))),
    };
    if specs.len() == 1 && specs[0].fleet_home.is_none() {
        let report = match Job::resolve(specs.into_iter().next().expect("one"), args.job.ticket) {
            Ok(job) => check_one(&job).await,
            Err(e) => problem_only(format!("{e}")),
        };
        return finish(&args, report);
    }
    // Every account of the fleet, each against its own API and budget.
    let mut reports = Vec::new();
    for spec in specs {
        let domain = spec.domain.clone().unwrap_or_default();
        let report = match Job::resolve(spec, args.job.ticket) {
            Ok(job) => check_one(&job).await,
            Err(e) => problem_only(format!("{e}")),
        };
        reports.push((domain, report));
    }
    finish_fleet(&args, reports)
}

/// The checks of one account's job.
async fn check_one(job: &Job) -> CheckReport {
    let mut problems = Vec::new();
    // The account's own state (its index, cursor, lock), found without writing anything.
    let storage = match Storage::open(&job.data, &job.s3) {
        Ok(storage) => {
            match crate::pipeline::scope_of(&storage, &job.domain, &job.home_domain).await {
                Ok(scope) => Ok(storage.scoped(scope)),
                Err(_) => Ok(storage),
            }
        }
        Err(e) => Err(e),
    };
    let api_url = match &job.api {
        // As sync shows it: never the user name and password a URL may carry.
        Api::Remote(url) => crate::metrics::display_url(url),
        Api::Simulator(_) => "the built-in simulator".to_string(),
    };
    let (source, simulator) = match connect(job).await {
        Ok((base_url, api_key, simulator)) => {
            let source = Source::new(ClientConfig {
                base_url,
                api_key,
                limiter: job.limiter.clone(),
                // A check should answer quickly: an unreachable API is a finding, not a wait.
                retry: RetryPolicy {
                    max_attempts: 2,
                    max_rate_limited_attempts: 3,
                    ..RetryPolicy::default()
                },
                timeout: Duration::from_secs(30),
                max_response_bytes: job.max_response_bytes,
            });
            match source {
                Ok(source) => (Some(source), simulator),
                Err(e) => {
                    problems.push(format!("API: {e}"));
                    (None, simulator)
                }
            }
        }
        Err(e) => {
            problems.push(format!("{e:#}"));
            (None, None)
        }
    };
    let report = check::run(job, source.as_ref(), api_url, storage, problems).await;
    if let Some(sim) = simulator {
        sim.shutdown().await;
    }
    report
}

/// Prints a fleet's reports (one per account, then the totals) and picks the exit code: the
/// worst account's.
fn finish_fleet(
    args: &CheckArgs,
    reports: Vec<(String, CheckReport)>,
) -> super::Result<Completion> {
    let estimates: Vec<&check::Estimate> = reports
        .iter()
        .filter_map(|(_, r)| r.estimate.as_ref())
        .collect();
    let credits: u64 = estimates.iter().map(|e| e.credits).sum();
    let closed: u64 = estimates.iter().map(|e| e.closed).sum();
    let fetch: u64 = estimates.iter().map(|e| e.fetch).sum();
    // The accounts run side by side, each under its own budget: the slowest one sets the time.
    let minutes = estimates.iter().map(|e| e.minutes).fold(0.0, f64::max);
    let ok = reports.iter().all(|(_, r)| r.ok);
    let held = reports.iter().any(|(_, r)| r.lock.state == "held");
    match args.format {
        OutputFormat::Json => {
            let accounts: Vec<serde_json::Value> = reports
                .iter()
                .map(|(domain, r)| {
                    let mut v = serde_json::to_value(r).expect("the report serializes");
                    v["domain"] = domain.clone().into();
                    v
                })
                .collect();
            let all = serde_json::json!({
                "ok": ok,
                "accounts": accounts,
                "total": {
                    "estimated_accounts": estimates.len(),
                    "closed": closed,
                    "fetch": fetch,
                    "credits": credits,
                    "minutes": minutes,
                },
            });
            println!(
                "{}",
                serde_json::to_string_pretty(&all).expect("serializes")
            );
        }
        OutputFormat::Human => {
            for (domain, r) in &reports {
                println!("== {domain} ==");
                print!("{}", check::render(r));
                println!();
            }
            println!(
                "fleet: {} accounts ({} estimated): ~{} closed tickets, ~{} to fetch, ~{} credits in total, ~{minutes:.0} min (the slowest account; each has its own budget){}",
                reports.len(),
                estimates.len(),
                check::thousands(closed),
                check::thousands(fetch),
                check::thousands(credits),
                if ok { "" } else { "; some accounts have problems, see above" },
            );
        }
    }
    Ok(if !ok {
        Completion::Found(Class::Config)
    } else if held {
        Completion::Found(Class::Retryable)
    } else {
        Completion::Ok
    })
}

fn problem_only(problem: String) -> CheckReport {
    CheckReport {
        ok: false,
        problems: vec![problem],
        ..CheckReport::default()
    }
}

/// Prints the report on stdout and picks the exit code.
fn finish(args: &CheckArgs, report: CheckReport) -> super::Result<Completion> {
    match args.format {
        OutputFormat::Json => println!(
            "{}",
            serde_json::to_string_pretty(&report).expect("the report serializes")
        ),
        OutputFormat::Human => print!("{}", check::render(&report)),
    }
    Ok(if !report.ok {
        // Configuration or credential problems: exit 3, as `sync` would.
        Completion::Found(Class::Config)
    } else if report.lock.state == "held" {
        // Another run holds the dataset: exit 2, as `sync` refused by the lock.
        Completion::Found(Class::Retryable)
    } else {
        Completion::Ok
    })
}
