//! `ticketsync query`: an account's tickets in the Codex JSON shape, or hour rollups.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use clap::{Args, ValueEnum};

use super::{Completion, Context as _, Error, Result};
use crate::job::JobSpec;
use crate::normalize::accounts::{canonical_account, is_valid_account};
use crate::query::output::{self, Format};
use crate::query::{Basis, Dataset, Period, RollupQuery, TicketQuery};

/// Query the dataset: an account's tickets, or hours per month or year for billing.
///
/// Without --rollup: the account's tickets as the Codex API served them
/// (GET /api/companies/{account}/tickets?year=Y), each with its conversations and notes, plus
/// billable_hours; sorted by closed_at, then ticket_id.
///
/// With --rollup: tickets and hours (total, billable, non-billable) per month or for the year,
/// per account; months without tickets show as zeros.
///
/// --basis says which date puts a ticket in a year and month:
///   updated (default)  last_updated_at: what Codex's ?year=Y selects and the month Ledger
///                      bills a ticket's total_hours_spent in. A time entry logged after
///                      close moves the ticket (and its hours) to the month it was logged in.
///   closed             closed_at (the year= partition): one partition per account and year.
///   worked             each time entry's minutes in the month of its executed_at (--rollup).
/// The rollup names its basis in every row (basis column / field).
///
/// Only the partitions a query needs are read: with --basis closed one account and year opens
/// its files of each table; with updated, the account's partitions of that year and before (a
/// ticket last updated in Y closed in Y or earlier). Every table is read at the versions of the
/// dataset's last commit (its Delta logs), or with --as-of as committed at an instant.
/// Each table's file list is kept in a snapshot cache on this machine (TICKETSYNC_CACHE_DIR,
/// else $XDG_CACHE_HOME/ticketsync or ~/.cache/ticketsync; TICKETSYNC_CACHE_DIR=off turns it
/// off), so a query replays only the log's commits since the last query, not since the last
/// checkpoint. The cache holds file names and sizes, never rows, one segment per partition (a
/// query parses its own partitions' only); a dataset's snapshots unused for 30 days are deleted.
/// S3 credentials come from the AWS environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
/// AWS_REGION, AWS_ENDPOINT_URL, ...); the job file's [s3] table can set endpoint and region.
///
/// Examples:
///   ticketsync query --data ./data --account 482913 --year 2025
///   ticketsync query --data ./data --account 482913 --year 2025 --rollup month
///   ticketsync query --data s3://bucket/fs --year 2025 --rollup year --format csv > hours.csv
///   ticketsync query --job jobs/nightly.toml --year 2025 --rollup month --basis worked
///   ticketsync query --data ./data --account 482913 --year 2025 --basis closed
///   ticketsync query --data ./data --account 482913 --year 2026 --rollup month --explain
///   ticketsync query --data ./data --account 482913 --year 2026 --as-of 2026-04-01T00:00:00Z
///   ticketsync query --data ./data --year 2026 --rollup month --changes-since 2026-04-01T00:00:00Z
///
/// Exit codes: 0 ok (also when nothing matches, or when the reader closes the pipe);
/// 2 failed (missing or empty dataset, unreadable files); 3 bad command line or job file,
/// S3 credentials refused, or a bucket that does not exist.
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct QueryArgs {
    /// Dataset location: a directory, file:///path or s3://bucket/prefix.
    #[arg(long, value_name = "DIR|URL")]
    pub data: Option<String>,

    /// TOML job file: its data location and [s3] settings are used; --data overrides.
    #[arg(long, value_name = "FILE")]
    pub job: Option<PathBuf>,

    /// Customer account number (required without --rollup).
    #[arg(long, value_name = "ACCT", value_parser = account, required_unless_present = "rollup")]
    pub account: Option<String>,

    /// UTC year of the --basis date: last_updated_at by default (required with --rollup).
    #[arg(long, value_name = "YYYY", value_parser = clap::value_parser!(i32).range(1970..=9999))]
    pub year: Option<i32>,

    /// Hours per month or per year instead of tickets.
    #[arg(long, value_enum, requires = "year")]
    pub rollup: Option<RollupArg>,

    /// With --rollup: the tickets and time entries behind each period (what Ledger will bill
    /// and why), nested in JSON, one line per time entry in CSV and table. Needs --basis
    /// updated or closed.
    #[arg(long, requires = "rollup")]
    pub explain: bool,

    /// Which date puts a ticket in a year and month [default: updated, as Codex and Ledger].
    #[arg(long, value_enum)]
    pub basis: Option<BasisArg>,

    /// Output format [default: table on a terminal, json otherwise].
    #[arg(long, value_enum)]
    pub format: Option<FormatArg>,

    /// Answer from every table as it was committed at this RFC 3339 instant (Delta time travel,
    /// e.g. the day an invoice was made). Needs the files of that time: a dataset synced with
    /// history_days covering it.
    #[arg(long, value_name = "RFC3339")]
    pub as_of: Option<chrono::DateTime<chrono::Utc>>,

    /// With --rollup month: one row per account and month whose hours changed since this
    /// RFC 3339 instant (hours_then, hours_now, and the tickets whose hours changed: time
    /// logged after an invoice). Needs history_days covering the instant.
    #[arg(long, value_name = "RFC3339", requires = "rollup", conflicts_with_all = ["explain", "as_of"])]
    pub changes_since: Option<chrono::DateTime<chrono::Utc>>,

    /// Only the tickets of this Freshservice account (its subdomain, the `domain` partition)
    /// [default: every account the dataset holds; each ticket says its `domain`].
    #[arg(long, value_name = "NAME")]
    pub domain: Option<String>,
}

/// `--rollup`: the period hours are summed over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RollupArg {
    /// One row per account and month.
    Month,
    /// One row per account and year.
    Year,
}

/// `--basis`: which date puts a ticket (and its hours) in a year and month.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BasisArg {
    /// last_updated_at: Codex's ?year= and Ledger's billing month.
    Updated,
    /// A ticket's hours in the month it closed.
    Closed,
    /// Each time entry's minutes in the month of its executed_at.
    Worked,
}

/// `--format`: how the results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FormatArg {
    /// A JSON array.
    Json,
    /// One JSON object per line.
    Ndjson,
    /// CSV with a header row.
    Csv,
    /// Aligned columns, hours with two decimals.
    Table,
}

/// An account number as the dataset spells it (`acme` finds `account=ACME`).
fn account(text: &str) -> Result<String, String> {
    let text = canonical_account(text);
    if is_valid_account(&text) {
        Ok(text)
    } else {
        Err("an account number has letters, digits, '.', '_' or '-' (at most 64)".into())
    }
}

/// Runs `ticketsync query`: opens the dataset and prints the tickets or the hour rollup.
pub async fn run(args: QueryArgs) -> Result<Completion> {
    let file = match &args.job {
        Some(path) => JobSpec::from_file(path)?,
        None => JobSpec::default(),
    };
    let location = args.data.clone().or(file.data).ok_or_else(|| {
        Error::config("no dataset: give --data DIR|URL or a --job file with data")
    })?;
    if args.rollup.is_none() && args.basis == Some(BasisArg::Worked) {
        return Err(Error::config(
            "--basis worked applies to --rollup only (a ticket has many work dates); use updated or closed",
        ));
    }
    let s3 = file.s3.unwrap_or_default();
    let dataset = Dataset::open(&location, &s3)?.in_domain(args.domain.clone());
    let dataset = match args.as_of {
        Some(instant) => dataset.as_of(instant),
        None => dataset,
    };
    let format = match args.format {
        Some(FormatArg::Json) => Format::Json,
        Some(FormatArg::Ndjson) => Format::Ndjson,
        Some(FormatArg::Csv) => Format::Csv,
        Some(FormatArg::Table) => Format::Table,
        None if std::io::stdout().is_terminal() => Format::Table,
        None => Format::Json,
    };

    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let written = match args.rollup {
        None => {
            let query = TicketQuery {
                // clap requires --account without --rollup.
                account: args
                    .account
                    .ok_or_else(|| Error::config("--account is required"))?,
                year: args.year,
                basis: match args.basis {
                    None | Some(BasisArg::Updated) => Basis::Updated,
                    Some(BasisArg::Closed) => Basis::Closed,
                    // Refused above.
                    Some(BasisArg::Worked) => Basis::Closed,
                },
            };
            let tickets = dataset
                .tickets(&query)
                .await
                .context(format!("querying tickets of account {}", query.account))?;
            tracing::debug!(tickets = tickets.len(), "query done");
            output::write_tickets(&mut out, &tickets, format)
        }
        Some(rollup) => {
            let query = RollupQuery {
                account: args.account,
                // clap requires --year with --rollup.
                year: args
                    .year
                    .ok_or_else(|| Error::config("--year is required with --rollup"))?,
                period: match rollup {
                    RollupArg::Month => Period::Month,
                    RollupArg::Year => Period::Year,
                },
                basis: match args.basis {
                    None | Some(BasisArg::Updated) => Basis::Updated,
                    Some(BasisArg::Closed) => Basis::Closed,
                    Some(BasisArg::Worked) => Basis::Worked,
                },
            };
            if let Some(since) = args.changes_since {
                if query.basis == Basis::Worked || query.period != Period::Month {
                    return Err(Error::config(
                        "--changes-since needs --rollup month and --basis updated or closed",
                    ));
                }
                let changes = dataset
                    .changes_since(&query, since)
                    .await
                    .context(format!("comparing {} with {since}", query.year))?;
                output::write_changes(&mut out, &changes, format)
            } else {
                write_rollup(&dataset, &query, args.explain, &mut out, format).await?
            }
        }
    };
    match written.and_then(|()| out.flush()) {
        Ok(()) => Ok(Completion::Ok),
        // The reader went away (`| head`): what it wanted was written.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(Completion::Ok),
        Err(e) => Err(Error::failed(e).context("writing the query result")),
    }
}

/// A rollup (with `--explain`, the tickets behind it) into `out`; the outer error is the
/// query's, the inner one writing's.
async fn write_rollup(
    dataset: &Dataset,
    query: &RollupQuery,
    explain: bool,
    out: &mut impl std::io::Write,
    format: Format,
) -> super::Result<std::io::Result<()>> {
    if explain && query.basis == Basis::Worked {
        return Err(Error::config(
            "--explain needs --basis updated or closed (with worked, a ticket's time entries fall in several periods)",
        ));
    }
    let rows = dataset
        .rollup(query)
        .await
        .context(format!("rolling up {}", query.year))?;
    tracing::debug!(rows = rows.len(), "query done");
    if explain {
        let tickets = dataset
            .explain(query)
            .await
            .context(format!("explaining {}", query.year))?;
        Ok(output::write_explained(out, &rows, &tickets, format))
    } else {
        Ok(output::write_rollup(out, &rows, format))
    }
}
