//! `ticketsync forget`, `ticketsync export-person` and `ticketsync prune`: the dataset's privacy
//! operations (see [`crate::dataset`]).

use std::io::Write;
use std::path::PathBuf;

use clap::Args;

use super::{Completion, Context as _, Error, Result};
use crate::dataset::{export, forget, redact, retention};
use crate::job::JobSpec;
use crate::storage::Storage;

/// Where the dataset is: `--data`, else the job file's `data` (and its `[s3]` settings).
#[derive(Debug, Args)]
pub struct DatasetArgs {
    /// Dataset location: a directory, file:///path or s3://bucket/prefix.
    #[arg(long, value_name = "DIR|URL")]
    pub data: Option<String>,

    /// TOML job file: its data location and [s3] settings are used; --data overrides.
    #[arg(long, value_name = "FILE")]
    pub job: Option<PathBuf>,
}

impl DatasetArgs {
    /// The dataset's storage (it must exist) and the job file, if any.
    fn open(&self) -> Result<(Storage, JobSpec)> {
        let file = match &self.job {
            Some(path) => JobSpec::from_file(path)?,
            None => JobSpec::default(),
        };
        let location = self.data.clone().or(file.data.clone()).ok_or_else(|| {
            Error::config("no dataset: give --data DIR|URL or a --job file with data")
        })?;
        let storage = Storage::open_existing(&location, &file.s3.clone().unwrap_or_default())?;
        Ok((storage, file))
    }
}

/// Erase a person from the dataset, for good (GDPR art. 17).
///
/// Every ticket the person requested keeps its ids, timestamps and hours (billing records are
/// kept), but its requester name and email become a stable pseudonym (erased-<8 hex>); every
/// message the person wrote becomes "[erased]"; their address and name leave every other text
/// (subjects, descriptions, other messages, notes, to/from addresses) in every table and every
/// markdown document.
///
/// The erasure is recorded in _state/erasures.json as keyed hashes (HMAC-SHA256; the key is
/// TICKETSYNC_ERASURE_KEY when set, else _state/erasure.key), so every later sync erases the
/// person again from whatever it fetches. It runs under the dataset's run lock and writes an
/// audit record to _runs/ that names the pseudonym, never the address.
///
/// Examples:
///   ticketsync forget --data ./data --email jane.doe@example.com --dry-run
///   ticketsync forget --job jobs/nightly.toml --email jane.doe@example.com
///   ticketsync forget --data s3://bucket/fs --email j.doe@example.com --name "Jane Doe"
///
/// Exit codes: 0 done; 2 failed (rerun it; an interrupted erasure is also finished by the
/// next sync); 3 bad arguments, credentials or erasure key.
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct ForgetArgs {
    /// Where the dataset is (`--data`, `--job`, S3 settings).
    #[command(flatten)]
    pub dataset: DatasetArgs,

    /// The person's email address (matched without regard to case).
    #[arg(long, value_name = "ADDRESS")]
    pub email: String,

    /// The person's full name, when no ticket they requested tells it (a name found in their
    /// tickets is used otherwise).
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,

    /// Count what would change; change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// Runs `ticketsync forget`: takes the run lock, records the person and rewrites every ticket
/// that names them.
pub async fn forget(args: ForgetArgs) -> Result<Completion> {
    let (storage, file) = args.dataset.open()?;
    let lock_ttl = file.lock_ttl()?;
    let reports = forget::forget(
        &storage,
        &forget::Request {
            email: args.email,
            name: args.name,
            dry_run: args.dry_run,
            lock_ttl,
        },
    )
    .await
    .context("forget")?;
    let several = reports.len() > 1;
    for report in &reports {
        if several {
            println!("domain {}:", report.domain);
        }
        println!("{}", report.summary());
        if !report.dry_run {
            println!(
                "audit record: {}/_runs/{}.json",
                storage.display().trim_end_matches('/'),
                report.run_id
            );
        }
    }
    Ok(Completion::Ok)
}

/// Print everything the dataset holds about a person, as one JSON document (GDPR art. 15).
///
/// Every ticket the person requested (the Codex ticket shape, as `query` serves it, plus the
/// raw rows of every table and its time entries), and of other tickets the conversations they
/// wrote or received and the notes that mention them. Read-only. After `forget` it finds
/// nothing.
///
/// Examples:
///   ticketsync export-person --data ./data --email jane.doe@example.com
///   ticketsync export-person --job jobs/nightly.toml --email jane.doe@example.com --out jane.json
///
/// Exit codes: 0 done (also when nothing was found); 2 failed; 3 bad arguments or credentials.
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct ExportPersonArgs {
    /// Where the dataset is (`--data`, `--job`, S3 settings).
    #[command(flatten)]
    pub dataset: DatasetArgs,

    /// The person's email address (matched without regard to case).
    #[arg(long, value_name = "ADDRESS")]
    pub email: String,

    /// Write the document to this file instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

/// Runs `ticketsync export-person`: reads the dataset (no lock) and writes the person's document.
pub async fn export_person(args: ExportPersonArgs) -> Result<Completion> {
    let (storage, _) = args.dataset.open()?;
    // Every domain's tickets, one document.
    let mut export: Option<export::Export> = None;
    for storage in crate::dataset::domains(&storage)
        .await
        .context("export-person")?
    {
        let found = export::export_person(&storage, &args.email)
            .await
            .context("export-person")?;
        export = Some(match export {
            None => found,
            Some(all) => all.merged(found),
        });
    }
    let export = export.expect("a dataset has its home domain");
    let mut json = serde_json::to_vec_pretty(&export).expect("export serializes");
    json.push(b'\n');
    match &args.out {
        Some(path) => std::fs::write(path, &json)
            .map_err(|e| Error::failed(e).context(format!("writing {}", path.display())))?,
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(&json)
                .and_then(|()| out.flush())
                .map_err(|e| Error::failed(e).context("writing to stdout"))?;
        }
    }
    eprintln!(
        "ticketsync: {} tickets requested, {} other tickets, {} conversations, {} notes, {} time entries",
        export.counts.tickets_requested,
        export.counts.tickets_other,
        export.counts.conversations,
        export.counts.notes,
        export.counts.time_entries
    );
    Ok(Completion::Ok)
}

/// Remove what is older than the retention period (GDPR storage limitation).
///
/// Tickets whose closed_at is more than N days ago leave every table, their markdown and the
/// index; rejects seen more than N days ago go too. A sync with retention_days (or
/// --retention-days) does the same at its end and never writes such tickets again; prune does
/// it without a sync. Under the run lock, through the same commit as a sync; an audit record
/// goes to _runs/.
///
/// Examples:
///   ticketsync prune --data ./data --retention-days 2555 --dry-run
///   ticketsync prune --job jobs/nightly.toml
///
/// Exit codes: 0 done; 2 failed (rerun it); 3 bad arguments or credentials.
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct PruneArgs {
    /// Where the dataset is (`--data`, `--job`, S3 settings).
    #[command(flatten)]
    pub dataset: DatasetArgs,

    /// Keep tickets closed in the past N days [default: the job file's retention_days].
    #[arg(long, value_name = "N")]
    pub retention_days: Option<u32>,

    /// Count what would be removed; remove nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// Runs `ticketsync prune`: takes the run lock and removes tickets closed before the cutoff.
pub async fn prune(args: PruneArgs) -> Result<Completion> {
    let (storage, file) = args.dataset.open()?;
    let days = args.retention_days.or(file.retention_days).ok_or_else(|| {
        Error::config(
            "no retention period: give --retention-days N or a --job file with retention_days",
        )
    })?;
    if !(1..=36_500).contains(&days) {
        return Err(Error::config(format!(
            "retention_days = {days} is out of range: allowed 1 to 36500 days"
        )));
    }
    let domains = crate::dataset::domains(&storage).await.context("prune")?;
    let several = domains.len() > 1;
    for storage in &domains {
        let report = retention::prune(storage, days, args.dry_run, file.lock_ttl()?)
            .await
            .context("prune")?;
        if several {
            print!("{}: ", domain_of(storage));
        }
        println!("{}", report.summary());
    }
    Ok(Completion::Ok)
}

/// Apply the redaction rules to what the dataset already holds.
///
/// A sync redacts every ticket it writes (see [redact] in the job file). Rows written before
/// redaction existed, or before a rule was added, are redacted by this command: every ticket
/// whose texts hold a secret is rewritten (all tables and its markdown), one partition per
/// commit, under the run lock. An audit record with the counts by rule goes to _runs/.
///
/// Examples:
///   ticketsync redact --job jobs/nightly.toml --dry-run
///   ticketsync redact --data ./data
///
/// Exit codes: 0 done; 2 failed (rerun it); 3 bad arguments, job file or credentials.
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct RedactArgs {
    /// Where the dataset is (`--data`, `--job`, S3 settings).
    #[command(flatten)]
    pub dataset: DatasetArgs,

    /// Count what would be redacted; change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// `ticketsync redact`.
pub async fn redact(args: RedactArgs) -> Result<Completion> {
    let (storage, file) = args.dataset.open()?;
    let redactor =
        crate::normalize::privacy::Redactor::new(&file.redact.clone().unwrap_or_default())
            .map_err(Error::config)?;
    let redactor = std::sync::Arc::new(redactor);
    let domains = crate::dataset::domains(&storage).await.context("redact")?;
    let several = domains.len() > 1;
    for storage in &domains {
        let report = redact::redact(storage, redactor.clone(), args.dry_run, file.lock_ttl()?)
            .await
            .context("redact")?;
        if several {
            print!("{}: ", domain_of(storage));
        }
        println!("{}", report.summary());
    }
    Ok(Completion::Ok)
}

/// How a domain's storage is named in the output of a command over several domains.
fn domain_of(storage: &Storage) -> String {
    match storage.scope() {
        crate::storage::layout::Scope::Home => "home domain".into(),
        crate::storage::layout::Scope::Domain(d) => d.clone(),
    }
}
