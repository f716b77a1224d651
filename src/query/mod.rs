//! Query: read the dataset the sinks wrote and answer the two questions its consumers ask —
//! an account's tickets in the Codex API's JSON shape (KnowledgeTree, dispute resolution) and
//! hour rollups per month or year (Ledger's billing).
//!
//! The Parquet files are the only interface: nothing here receives rows from the pipeline, and
//! the engine is polars, a separate Arrow implementation from the arrow-rs the sinks write with.
//! Two exceptions, read with the parquet crate ([`minutes`]): the adjustment list's minutes per
//! ticket (three columns of thousands of small files, where polars' cost per file was most of
//! the query; the tests hold it to `explain`'s polars reading at both instants) and the rollups
//! of the ticket-level bases (`updated`, `closed`: four columns; `worked` stays with polars).
//!
//! Partition pruning is ours, not the engine's: [`Dataset`] lists the Hive layout through
//! [`Storage`] and hands polars exactly the partition files a query needs (one file per table
//! for one account and year). polars can therefore not open any other file, whatever its own
//! predicate pushdown would do; [`Dataset::files_read`] shows the list and the tests hold it to
//! the partitions. polars still reads the Hive keys (`account`, `year`) from the paths.
//!
//! This module does not know clap or exit codes; [`output`] renders results for the CLI.

mod changes;
mod explain;
mod minutes;
pub mod output;
mod rollup;
mod scan;
mod tickets;

use std::collections::{BTreeMap, BTreeSet};

use object_store::path::Path;
use polars::prelude::cloud::CloudOptions;
use polars::prelude::PolarsError;

use futures::{StreamExt, TryStreamExt};

use crate::state::delta::read::View;
use crate::state::delta::{At, Partition};
use crate::storage::{self, S3Options, Storage};
use crate::tables::Table;
pub use changes::Change;
pub use explain::{ExplainedEntry, ExplainedTicket};
pub use rollup::{Basis, Period, RollupQuery, RollupRow};
pub use tickets::{ConversationDoc, NoteDoc, TicketDoc, TicketQuery};

/// Query errors, by what the caller can do about them.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The location holds no ticket partitions at all: wrong `--data`, or nothing synced yet.
    #[error("no tickets in the dataset at {location}: expected {expected} (wrong --data, or no sync has written tickets yet)")]
    Empty {
        /// The dataset location.
        location: String,
        /// Where ticket partitions were looked for (`tickets/account=…/year=…`).
        expected: String,
    },
    /// Listing or opening the dataset failed (includes a missing local directory).
    #[error(transparent)]
    Storage(#[from] storage::Error),
    /// A table's log (or the dataset's state) could not be read.
    #[error(transparent)]
    State(#[from] crate::state::Error),
    /// The location cannot be handed to polars.
    #[error("cannot query {location}: {reason}")]
    Unsupported {
        /// The dataset location.
        location: String,
        /// Why polars cannot read it.
        reason: String,
    },
    /// polars failed to plan or read the files (unreadable or foreign Parquet, S3 access).
    #[error("reading {what} failed")]
    Read {
        /// What was being read (a table and its partitions).
        what: String,
        /// polars' error.
        #[source]
        source: PolarsError,
    },
    /// A file's columns are not what `schemas/` promises.
    #[error("unexpected data in {what}: {detail}")]
    Contract {
        /// The file or table.
        what: String,
        /// Which column, and what was found instead.
        detail: String,
    },
    /// `--as-of` names an instant whose files are gone: the dataset keeps replaced files only
    /// for `history_days`.
    #[error("the tables as of {instant} name {missing} data files that are no longer stored (first: {first}); a dataset keeps the files its commits replace for history_days days (sync --history-days N), 0 by default")]
    History {
        /// The instant asked for.
        instant: String,
        /// How many of the files it needs are gone.
        missing: usize,
        /// One of them.
        first: String,
    },
    /// The blocking task running polars panicked or was cancelled.
    #[error("a query task failed")]
    Task(#[source] tokio::task::JoinError),
}

impl crate::error::Classify for Error {
    /// A location polars cannot be handed, refused credentials and a bucket that does not exist
    /// are [`Class::Config`](crate::error::Class::Config) (like `sync`); a missing or empty
    /// dataset, unreadable or foreign files are [`Class::Failed`](crate::error::Class::Failed).
    fn class(&self) -> crate::error::Class {
        use crate::error::Class;
        match self {
            Error::Unsupported { .. } => Class::Config,
            Error::Storage(e) => match e.class() {
                Class::Config => Class::Config,
                _ => Class::Failed,
            },
            Error::State(e) => match e.class() {
                Class::Config => Class::Config,
                _ => Class::Failed,
            },
            Error::Task(_) => Class::Bug,
            Error::Empty { .. }
            | Error::Read { .. }
            | Error::Contract { .. }
            | Error::History { .. } => Class::Failed,
        }
    }
}

/// The result of a query.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An opened dataset: the storage to list partitions, and how polars reaches the same files.
#[derive(Debug, Clone)]
pub struct Dataset {
    storage: Storage,
    /// polars' S3 settings, built from the same [`S3Options`] as the store (credentials come
    /// from the AWS environment in both). `None` for local datasets.
    cloud: Option<CloudOptions>,
    /// Which versions of the tables are read: the last commit's, or those of an instant.
    at: At,
    /// Only this Freshservice account's partitions (`query --domain`); `None`: every domain.
    domain: Option<String>,
    /// Only these (domain, account) pairs' partitions (the accounts an adjustment list needs to
    /// read); `None`: every account.
    accounts: Option<std::sync::Arc<BTreeSet<(String, String)>>>,
}

/// The partition files one query reads, per table.
pub type FileSet = BTreeMap<Table, Vec<PartitionFile>>;

/// One partition's data file.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct PartitionFile {
    /// The domain partition.
    pub domain: String,
    /// The account partition.
    pub account: String,
    /// The year partition.
    pub year: i32,
    /// Relative to the dataset root, as [`Storage`] names it.
    pub path: Path,
}

/// Which partitions of a table a query needs (the domain is the [`Dataset`]'s).
#[derive(Debug, Clone, Copy)]
struct Selection<'a> {
    account: Option<&'a str>,
    years: Years,
}

/// Which `year=` partitions (the year a ticket closed) a query reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Years {
    All,
    /// Tickets closed in this year.
    Exactly(i32),
    /// Tickets closed in this year or before: every ticket last updated in it (a ticket is
    /// updated when it closes, and never before).
    UpTo(i32),
}

impl Years {
    fn holds(self, year: i32) -> bool {
        match self {
            Years::All => true,
            Years::Exactly(y) => year == y,
            Years::UpTo(y) => year <= y,
        }
    }

    /// The partitions of `basis` for a query of `year`.
    fn of(basis: Basis, year: Option<i32>) -> Years {
        match (basis, year) {
            (_, None) | (Basis::Worked, _) => Years::All,
            (Basis::Closed, Some(y)) => Years::Exactly(y),
            (Basis::Updated, Some(y)) => Years::UpTo(y),
        }
    }
}

impl Dataset {
    /// Opens an existing dataset (`DIR`, `file:///…`, `s3://bucket/prefix`). A missing local
    /// directory is an error; nothing is created.
    pub fn open(location: &str, s3: &S3Options) -> Result<Dataset> {
        let storage = Storage::open_existing(location, s3)?;
        let cloud = location
            .starts_with("s3://")
            .then(|| scan::cloud_options(s3));
        Dataset::new(storage, cloud)
    }

    fn new(storage: Storage, cloud: Option<CloudOptions>) -> Result<Dataset> {
        let unsupported = |reason: &str| Error::Unsupported {
            location: storage.display().to_string(),
            reason: reason.to_string(),
        };
        let root = storage
            .external_location(&Path::from(""))
            .ok_or_else(|| unsupported("the store has no address polars can read"))?;
        // polars reads every `key=value` directory of a path as a Hive key, the root included.
        if root.split('/').any(|segment| segment.contains('=')) {
            return Err(unsupported(
                "a directory of the location itself contains '=', which readers take for a partition key; move the dataset",
            ));
        }
        Ok(Dataset {
            storage,
            cloud,
            at: At::Committed,
            domain: None,
            accounts: None,
        })
    }

    /// The same dataset, only the partitions of one Freshservice account (its domain).
    pub fn in_domain(self, domain: Option<String>) -> Dataset {
        Dataset { domain, ..self }
    }

    /// The same dataset read as every table was committed at `instant` (Delta time travel).
    pub fn as_of(self, instant: chrono::DateTime<chrono::Utc>) -> Dataset {
        Dataset {
            at: At::Instant(instant),
            ..self
        }
    }

    /// The storage behind the dataset.
    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    /// The files a tickets query reads (`tickets`, `conversations`, `notes`), as polars gets them.
    pub async fn files_read(&self, query: &TicketQuery) -> Result<Vec<String>> {
        let files = self.ticket_files(query).await?;
        Ok(self.locations(&files))
    }

    /// The files a rollup reads, as polars gets them.
    pub async fn rollup_files_read(&self, query: &RollupQuery) -> Result<Vec<String>> {
        let files = self.rollup_files(query).await?;
        Ok(self.locations(&files))
    }

    fn locations(&self, files: &FileSet) -> Vec<String> {
        files
            .values()
            .flatten()
            .map(|f| self.location(&f.path))
            .collect()
    }

    fn location(&self, path: &Path) -> String {
        // `new` checked that the storage has an external address.
        self.storage
            .external_location(path)
            .expect("checked when the dataset was opened")
    }

    async fn ticket_files(&self, query: &TicketQuery) -> Result<FileSet> {
        let selection = Selection {
            account: Some(&query.account),
            years: Years::of(query.basis, query.year),
        };
        self.files(
            &[Table::Tickets, Table::Conversations, Table::Notes],
            selection,
        )
        .await
    }

    async fn rollup_files(&self, query: &RollupQuery) -> Result<FileSet> {
        let selection = Selection {
            account: query.account.as_deref(),
            years: Years::of(query.basis, Some(query.year)),
        };
        match query.basis {
            Basis::Closed | Basis::Updated => self.files(&[Table::Tickets], selection).await,
            // Work done in a year belongs to tickets closed in any year: every year is read.
            Basis::Worked => {
                self.files(&[Table::Tickets, Table::TimeEntries], selection)
                    .await
            }
        }
    }

    /// Lists the selected partitions of `tables`, all from one snapshot of the dataset (the
    /// table versions its last commit left). The first table must be `tickets`: when it has no
    /// partition at all the dataset is empty (an error), otherwise an empty selection is simply
    /// no match.
    async fn files(&self, tables: &[Table], selection: Selection<'_>) -> Result<FileSet> {
        debug_assert_eq!(tables.first(), Some(&Table::Tickets));
        let view = self.view(tables, selection).await?;
        let mut out = FileSet::new();
        for &table in tables {
            out.insert(table, list(&view, table));
        }
        if matches!(self.at, At::Instant(_)) {
            // An old version names files that later commits replaced: they are there only
            // within the dataset's history.
            self.history_kept(out.values().flatten().map(|f| &f.path))
                .await?;
        }
        if out[&Table::Tickets].is_empty() {
            self.nothing_selected(selection).await?;
        }
        Ok(out)
    }

    /// The snapshot of `tables` (see [`Dataset::files`]), only the selected partitions.
    async fn view(&self, tables: &[Table], selection: Selection<'_>) -> Result<View> {
        let domain = self.domain.as_deref();
        let accounts = self.accounts.as_deref();
        let keep = |p: &Partition| {
            domain.is_none_or(|d| d == p.domain)
                && selection.holds(p)
                && accounts.is_none_or(|set| {
                    p.account
                        .as_ref()
                        .is_some_and(|a| set.contains(&(p.domain.clone(), a.clone())))
                })
        };
        Ok(View::open(&self.storage, &self.at, tables, &keep).await?)
    }

    /// [`Error::History`] when some of `paths` (of the version of an instant) are gone.
    async fn history_kept(&self, paths: impl Iterator<Item = &Path>) -> Result<()> {
        let At::Instant(instant) = &self.at else {
            return Ok(());
        };
        let checks = paths.map(|path| async move {
            let there = self.storage.exists(path).await?;
            Ok::<_, Error>((!there).then(|| path.to_string()))
        });
        let missing: Vec<String> = futures::stream::iter(checks)
            .buffered(32)
            .try_filter_map(|m| async move { Ok(m) })
            .try_collect()
            .await?;
        match missing.first() {
            Some(first) => Err(Error::History {
                instant: instant.to_rfc3339(),
                missing: missing.len(),
                first: first.clone(),
            }),
            None => Ok(()),
        }
    }

    /// A selection without any ticket file: no match, unless the dataset holds no ticket at
    /// all ([`Error::Empty`]: the wrong location, or nothing synced yet).
    async fn nothing_selected(&self, selection: Selection<'_>) -> Result<()> {
        let narrowed = selection.account.is_some() || selection.years != Years::All;
        let narrowed = narrowed || self.domain.is_some() || self.accounts.is_some();
        // Only when nothing matched: is there any ticket at all?
        let empty = !narrowed || {
            let all = View::open(&self.storage, &self.at, &[Table::Tickets], &|_| true).await?;
            let none = all.partitions(Table::Tickets).next().is_none();
            none
        };
        if !empty {
            return Ok(());
        }
        Err(Error::Empty {
            location: self.storage.display().to_string(),
            expected: format!(
                "{}/_delta_log/ with files under {}/domain=<domain>/account=<account>/year=<year>/",
                Table::Tickets.name(),
                Table::Tickets.name(),
            ),
        })
    }
}

impl Selection<'_> {
    /// Whether the query reads `partition` (of a placed table: rejects have no account).
    fn holds(&self, partition: &Partition) -> bool {
        let (Some(account), Some(year)) = (partition.account.as_deref(), partition.year) else {
            return false;
        };
        self.account.is_none_or(|a| a == account) && self.years.holds(year)
    }
}

/// The active files of `table` in the view, in partition order.
fn list(view: &View, table: Table) -> Vec<PartitionFile> {
    let mut files: Vec<PartitionFile> = view
        .partitions(table)
        .flat_map(|p| {
            view.files(table, p).iter().map(|f| PartitionFile {
                domain: p.domain.clone(),
                account: p.account.clone().unwrap_or_default(),
                year: p.year.unwrap_or_default(),
                path: f.object(table),
            })
        })
        .collect();
    files.sort();
    files
}

#[cfg(test)]
mod tests;
