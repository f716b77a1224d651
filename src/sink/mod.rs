//! Sinks: write a [`Changeset`] (placed tickets, rejects, removals) to the dataset's Delta tables
//! and KnowledgeTree markdown, exactly once.
//!
//! # Commit protocol
//!
//! 1. For every partition a changeset touches (where its tickets go *and* where the index says
//!    they were), build the partition's new content: the rows of its current files (the
//!    tables' logs name them) minus the touched tickets, plus their new rows, as one new file
//!    `part-<tag>.parquet`. The same for `rejects`.
//! 2. Stage every new file, every markdown document and the new index under
//!    `_staging/<tag>/…`. Nothing visible has changed yet; a kill here leaves only staging
//!    garbage, which the next run deletes.
//! 3. Write `_state/journal.json`: the moves of the new data files, each table's `add`/`remove`
//!    actions, the documents and index to publish and the objects to delete. This is the commit
//!    point.
//! 4. Apply the journal ([`crate::state::apply_journal`]): move the new files into place, commit
//!    each table's log (a Delta commit with the dataset commit's `txn`, skipped when the log
//!    already holds it), record the tables' versions, publish the documents and the index,
//!    delete the replaced files and stale documents, remove the journal. A kill here is
//!    finished by the next run's [`crate::state::recover`].
//!
//! A Delta reader sees each table move from one version to the next whole. A reader of the
//! plain files sees every file whole; during step 4 it can see a replaced file next to its
//! replacement, until the replaced one is deleted.

pub mod markdown;
pub mod parquet;
pub mod upgrade;

use std::collections::{BTreeMap, BTreeSet};

use arrow::array::RecordBatch;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;

use crate::normalize::{Placed, Rejection};
use crate::state::delta::{At, DataFile, Lake, Partition};
use crate::state::{self, Index, IndexEntry, Journal, Location};
use crate::storage::{self, layout, Storage};
use crate::tables::{self, Table};

/// Sink errors: where a commit failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An object could not be read, written, moved or deleted.
    #[error(transparent)]
    Storage(#[from] storage::Error),
    /// The index or the journal could not be read or written.
    #[error(transparent)]
    State(#[from] state::Error),
    /// A partition file did not decode, or the new one did not encode.
    #[error(transparent)]
    Parquet(#[from] parquet::Error),
    /// The rows already in a partition and the new ones could not be put together (their
    /// schemas disagree).
    #[error("cannot merge rows of {path}: {detail}")]
    Merge {
        /// The partition file.
        path: String,
        /// Arrow's message.
        detail: String,
    },
    /// The blocking task encoding a partition panicked or was cancelled.
    #[error("a parquet encoding task failed")]
    Task(#[source] tokio::task::JoinError),
}

impl Error {
    /// Storage and state errors keep their class; a file that does not merge is
    /// [`Class::Failed`](crate::error::Class::Failed); a failed task is a [`Class::Bug`](crate::error::Class::Bug).
    pub fn class(&self) -> crate::error::Class {
        use crate::error::Class;
        match self {
            Error::Storage(e) => e.class(),
            Error::State(e) => e.class(),
            Error::Parquet(e) => e.class(),
            Error::Merge { .. } => Class::Failed,
            Error::Task(_) => Class::Bug,
        }
    }
}

/// Why a ticket leaves the dataset entirely.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Removal {
    /// Its status left Closed.
    Reopened,
    /// Listed by `filter=deleted`, or its detail calls answered 404 while it was in the dataset.
    Deleted,
    /// Listed by `filter=spam`.
    Spam,
    /// Closed (or, in `rejects`, seen) before the retention cutoff.
    Expired,
}

impl Removal {
    /// The reason as written in the run report (`removed_by_reason`) and the logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Removal::Reopened => "reopened",
            Removal::Deleted => "deleted",
            Removal::Spam => "spam",
            Removal::Expired => "expired",
        }
    }
}

/// What one commit changes.
#[derive(Debug, Default)]
pub struct Changeset {
    /// Tickets to write (or rewrite) into their partitions, with their markdown.
    pub placed: Vec<Placed>,
    /// Tickets to write to `rejects` (their rows elsewhere leave).
    pub rejected: Vec<Rejection>,
    /// Tickets whose rows and documents leave the dataset, and why.
    pub removed: Vec<(i64, Removal)>,
    /// Keep the data files this commit replaces (`history_days` > 0: Delta readers can read
    /// the tables as they were; [`state::delta::vacuum`] deletes them later). By default they
    /// are deleted when the commit is done.
    pub keep_replaced: bool,
}

impl Changeset {
    /// True when the commit would change nothing (no staging, no journal).
    pub fn is_empty(&self) -> bool {
        self.placed.is_empty() && self.rejected.is_empty() && self.removed.is_empty()
    }
}

/// What a commit wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct CommitStats {
    /// Partition files written (new or replaced).
    pub parquet_files_written: u64,
    /// Partition files deleted (the partition became empty).
    pub parquet_files_deleted: u64,
    /// Bytes of the Parquet files written.
    pub parquet_bytes: u64,
    /// Markdown documents written.
    pub markdown_written: u64,
    /// Markdown documents deleted (tickets moved, rejected or removed).
    pub markdown_deleted: u64,
}

impl std::ops::AddAssign for CommitStats {
    fn add_assign(&mut self, o: Self) {
        self.parquet_files_written += o.parquet_files_written;
        self.parquet_files_deleted += o.parquet_files_deleted;
        self.parquet_bytes += o.parquet_bytes;
        self.markdown_written += o.markdown_written;
        self.markdown_deleted += o.markdown_deleted;
    }
}

/// How many partition files are rebuilt at once. Each holds a whole partition in memory, so this
/// sets how much of the dataset a commit holds at once (4 gave 2.26x the peak memory for 10x the
/// tickets, 2 gives 1.74x; commits are far from the bottleneck either way).
const PARALLEL_PARTITIONS: usize = 2;

/// Writes `changeset` and updates `index` to match, atomically per the module's protocol.
/// `tag` names the staging area and the new data files, and must be unique per commit.
pub async fn commit(
    storage: &Storage,
    index: &mut Index,
    changeset: Changeset,
    tag: &str,
) -> Result<CommitStats, Error> {
    let mut lake = Lake::open(storage, At::Latest).await?;
    commit_with(storage, &mut lake, index, changeset, tag).await
}

/// [`commit`] with the tables' logs as `lake` holds them (the latest versions, kept up to date
/// by the commits made through it): a run that commits many times reads the logs once. Only
/// for the writer that holds the run lock (nobody else commits meanwhile); after an error,
/// open the lake again.
pub async fn commit_with(
    storage: &Storage,
    lake: &mut Lake,
    index: &mut Index,
    changeset: Changeset,
    tag: &str,
) -> Result<CommitStats, Error> {
    let domain = lake.domain().to_string();
    let mut stats = CommitStats::default();
    let rejects = Partition::rejects(&domain);
    let rejects_missing = lake.files(Table::Rejects, &rejects).is_empty();
    if changeset.is_empty() && !rejects_missing {
        return Ok(stats);
    }
    let touched: BTreeSet<i64> = changeset
        .placed
        .iter()
        .map(|p| p.ticket.ticket_id)
        .chain(changeset.rejected.iter().map(|r| r.ticket_id))
        .chain(changeset.removed.iter().map(|(id, _)| *id))
        .collect();

    // Partitions to rebuild: where the touched tickets go and where they were.
    let mut incoming: BTreeMap<(String, i32), Vec<&Placed>> = BTreeMap::new();
    for p in &changeset.placed {
        incoming
            .entry((p.account.clone(), p.year))
            .or_default()
            .push(p);
    }
    let mut affected: BTreeSet<(String, i32)> = incoming.keys().cloned().collect();
    let mut rejects_affected = !changeset.rejected.is_empty();
    for id in &touched {
        match index.get(*id).map(|e| &e.location) {
            Some(Location::Placed { account, year }) => {
                affected.insert((account.clone(), *year));
            }
            Some(Location::Rejected) => rejects_affected = true,
            None => {}
        }
    }

    let mut jobs: Vec<(Table, Partition, Option<RecordBatch>)> = Vec::new();
    for (account, year) in &affected {
        let rows = incoming
            .get(&(account.clone(), *year))
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        for table in Table::PARTITIONED {
            let new_rows = (!rows.is_empty()).then(|| tables::placed_batch(table, rows));
            jobs.push((table, Partition::placed(&domain, account, *year), new_rows));
        }
    }
    // The rejects table always has a file once a run has committed, so plain readers can
    // glob it.
    if rejects_affected || rejects_missing {
        let rows: Vec<&Rejection> = changeset.rejected.iter().collect();
        jobs.push((
            Table::Rejects,
            rejects.clone(),
            Some(tables::rejects_batch(&rows)),
        ));
    }

    let rebuilt: Vec<(Table, Rebuilt)> = futures::stream::iter(jobs)
        .map(|(table, partition, new_rows)| {
            let (touched, lake) = (&touched, &*lake);
            async move {
                let current = lake.files(table, &partition).to_vec();
                let result =
                    rebuild(storage, table, &partition, current, new_rows, touched, tag).await?;
                Ok::<_, Error>((table, result))
            }
        })
        .buffer_unordered(PARALLEL_PARTITIONS)
        .try_collect()
        .await?;

    let mut journal = Journal::new(tag, lake.seq() + 1);
    for (table, result) in rebuilt {
        let change = journal.tables.entry(table.name().to_string()).or_default();
        change.removes.extend(result.removed.iter().cloned());
        if !changeset.keep_replaced {
            for old in &result.removed {
                journal.deletes.push(old.object(table).to_string());
            }
        }
        match result.written {
            Some((staged, file)) => {
                stats.parquet_files_written += 1;
                stats.parquet_bytes += file.size;
                journal
                    .moves
                    .push((staged.to_string(), file.object(table).to_string()));
                change.adds.push(file);
            }
            None if !result.removed.is_empty() => stats.parquet_files_deleted += 1,
            None => {}
        }
    }
    journal.tables.retain(|_, change| !change.is_empty());

    // Markdown: stage every placed ticket's document, delete documents left behind.
    let staged_docs: Vec<(Path, Path)> = futures::stream::iter(changeset.placed.iter())
        .map(|p| async move {
            let target = markdown::path_of(p);
            let staged = layout::staged(tag, &target);
            storage
                .put(&staged, Bytes::from(p.markdown.clone()))
                .await?;
            Ok::<_, Error>((staged, target))
        })
        .buffer_unordered(16)
        .try_collect()
        .await?;
    for (staged, target) in staged_docs {
        stats.markdown_written += 1;
        journal
            .publish
            .push((staged.to_string(), target.to_string()));
    }
    let new_location: BTreeMap<i64, (&str, i32)> = changeset
        .placed
        .iter()
        .map(|p| (p.ticket.ticket_id, (p.account.as_str(), p.year)))
        .collect();
    for id in &touched {
        let old = index.get(*id).map(|e| &e.location);
        if let Some(stale) = markdown::stale_path(*id, old, new_location.get(id).copied()) {
            stats.markdown_deleted += 1;
            journal.deletes.push(stale.to_string());
        }
    }

    // The index after this commit, staged like everything else.
    for (id, _) in &changeset.removed {
        index.remove(*id);
    }
    for r in &changeset.rejected {
        index.insert(
            r.ticket_id,
            IndexEntry {
                updated_at: r.updated_at.map(|t| t.timestamp_millis()),
                location: Location::Rejected,
                closed_at: None,
                time_entries: None,
            },
        );
    }
    for p in &changeset.placed {
        index.insert(
            p.ticket.ticket_id,
            IndexEntry {
                updated_at: Some(p.ticket.last_updated_at.timestamp_millis()),
                location: Location::Placed {
                    account: p.account.clone(),
                    year: p.year,
                },
                closed_at: Some(p.ticket.closed_at.timestamp_millis()),
                time_entries: Some(p.time_entries_fingerprint),
            },
        );
    }
    let index_path = layout::state(state::INDEX);
    let staged_index = layout::staged(tag, &index_path);
    storage
        .put(&staged_index, Bytes::from(index.to_json()))
        .await?;
    journal
        .publish
        .push((staged_index.to_string(), index_path.to_string()));

    state::write_journal(storage, &journal).await?;
    state::apply_journal(storage, lake, &journal).await?;
    Ok(stats)
}

/// A partition's new file (staged, and as the log will record it) and the files it replaces.
struct Rebuilt {
    written: Option<(Path, DataFile)>,
    removed: Vec<DataFile>,
}

/// Builds one partition's new content from its `current` files and stages it.
async fn rebuild(
    storage: &Storage,
    table: Table,
    partition: &Partition,
    current: Vec<DataFile>,
    new_rows: Option<RecordBatch>,
    touched: &BTreeSet<i64>,
    tag: &str,
) -> Result<Rebuilt, Error> {
    let mut contents = Vec::with_capacity(current.len());
    for file in &current {
        let path = file.object(table);
        let bytes = storage.get(&path).await?.ok_or_else(|| {
            Error::Storage(storage::Error::Missing {
                path: path.to_string(),
            })
        })?;
        contents.push((path.to_string(), bytes));
    }
    let touched = touched.clone();
    let file_tag = file_tag(tag);
    let target = partition.clone();
    let encoded =
        tokio::task::spawn_blocking(move || -> Result<Option<(RecordBatch, Bytes)>, Error> {
            let mut parts = Vec::new();
            for (path, bytes) in contents {
                for batch in parquet::decode(bytes, &table.schema(), &path)? {
                    parts.push(parquet::without_tickets(&batch, &touched));
                }
            }
            parts.extend(new_rows);
            let label = target.dir();
            let merged = parquet::merge_sorted(table, &parts).map_err(|detail| Error::Merge {
                path: format!("{}/{label}", table.name()),
                detail,
            })?;
            if merged.num_rows() == 0 && table != Table::Rejects {
                return Ok(None);
            }
            let bytes = parquet::encode(&merged, &label)?;
            Ok(Some((merged, bytes)))
        })
        .await
        .map_err(Error::Task)??;
    let written = match encoded {
        None => None,
        Some((batch, bytes)) => {
            let file = DataFile::new(partition, &file_tag, &batch, bytes.len() as u64);
            let staged = layout::staged(tag, &file.object(table));
            storage.put(&staged, bytes).await?;
            Some((staged, file))
        }
    };
    Ok(Rebuilt {
        written,
        removed: current,
    })
}

/// The rows of one partition of `table` as `lake` holds it, file by file
/// (object path, batches). `account` and `year` are `None` for `rejects`.
pub async fn read_rows(
    storage: &Storage,
    lake: &Lake,
    table: Table,
    account: Option<&str>,
    year: Option<i32>,
) -> Result<Vec<(String, Vec<RecordBatch>)>, Error> {
    let partition = match (account, year) {
        (Some(account), Some(year)) => Partition::placed(lake.domain(), account, year),
        _ => Partition::rejects(lake.domain()),
    };
    let mut out = Vec::new();
    for file in lake.files(table, &partition) {
        let path = file.object(table);
        let bytes = storage.get(&path).await?.ok_or_else(|| {
            Error::Storage(storage::Error::Missing {
                path: path.to_string(),
            })
        })?;
        let batches = parquet::decode(bytes, &table.schema(), path.as_ref())?;
        out.push((path.to_string(), batches));
    }
    Ok(out)
}

/// A commit tag as it appears in data file names (`part-<tag>.parquet`).
pub(crate) fn file_tag(tag: &str) -> String {
    tag.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests;
