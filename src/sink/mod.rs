//! Sinks: write a [`Changeset`] (placed tickets, rejects, removals) to the dataset as
//! Hive-partitioned Parquet and KnowledgeTree markdown, exactly once.
//!
//! # Commit protocol
//!
//! 1. For every partition a changeset touches (where its tickets go *and* where the index says
//!    they were), build the partition's new content: current rows minus the touched tickets,
//!    plus their new rows. The same for `rejects`.
//! 2. Stage every new file, every markdown document and the new index under
//!    `_staging/<tag>/…`. Nothing visible has changed yet; a kill here leaves only staging
//!    garbage, which the next run deletes.
//! 3. Write `_state/journal.json` listing the moves and deletes: the commit point.
//! 4. Apply the journal: move each staged object over its final path (one atomic rename or
//!    put per object), delete emptied partitions and stale documents, remove the journal.
//!    A kill here is finished by the next run's [`crate::state::recover`].
//!
//! A reader of the plain Hive layout sees every partition file whole (old or new). During step 4
//! (whose moves run concurrently, in no order) a ticket that moved between partitions can briefly
//! be visible in both or in neither; after the run (or after the recovery of a killed one) each
//! ticket is in exactly one place.

pub mod markdown;
pub mod parquet;
pub mod upgrade;

use std::collections::{BTreeMap, BTreeSet};

use arrow::array::RecordBatch;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;

use crate::normalize::{Placed, Rejection};
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
/// `tag` names the staging area and must be unique per commit.
pub async fn commit(
    storage: &Storage,
    index: &mut Index,
    changeset: Changeset,
    tag: &str,
) -> Result<CommitStats, Error> {
    let mut stats = CommitStats::default();
    let rejects_file = layout::table_file(Table::Rejects.name());
    if changeset.is_empty() {
        // Nothing to change, but a dataset always has its (possibly empty) rejects file.
        if !storage.exists(&rejects_file).await? {
            let bytes = parquet::encode(&parquet::empty(Table::Rejects), rejects_file.as_ref())?;
            stats.parquet_files_written += 1;
            stats.parquet_bytes += bytes.len() as u64;
            storage.put(&rejects_file, bytes).await?;
        }
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

    let mut jobs: Vec<(Table, Path, Option<RecordBatch>)> = Vec::new();
    for (account, year) in &affected {
        let rows = incoming
            .get(&(account.clone(), *year))
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        for table in Table::PARTITIONED {
            let new_rows = (!rows.is_empty()).then(|| tables::placed_batch(table, rows));
            jobs.push((
                table,
                layout::partition_file(table.name(), account, *year),
                new_rows,
            ));
        }
    }
    // The rejects file always exists once a run has committed, so readers can glob it.
    if rejects_affected || !storage.exists(&rejects_file).await? {
        let rows: Vec<&Rejection> = changeset.rejected.iter().collect();
        jobs.push((
            Table::Rejects,
            rejects_file.clone(),
            Some(tables::rejects_batch(&rows)),
        ));
    }

    let rebuilt: Vec<(Path, Rebuilt)> = futures::stream::iter(jobs)
        .map(|(table, path, new_rows)| {
            let touched = &touched;
            async move {
                let result = rebuild(storage, table, &path, new_rows, touched, tag).await?;
                Ok::<_, Error>((path, result))
            }
        })
        .buffer_unordered(PARALLEL_PARTITIONS)
        .try_collect()
        .await?;

    let mut journal = Journal::new(tag);
    for (path, result) in rebuilt {
        match result {
            Rebuilt::Staged { staged, bytes } => {
                stats.parquet_files_written += 1;
                stats.parquet_bytes += bytes;
                journal.moves.push((staged.to_string(), path.to_string()));
            }
            Rebuilt::Emptied => {
                stats.parquet_files_deleted += 1;
                journal.deletes.push(path.to_string());
            }
            Rebuilt::Untouched => {}
        }
    }

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
        journal.moves.push((staged.to_string(), target.to_string()));
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
        .moves
        .push((staged_index.to_string(), index_path.to_string()));

    state::write_journal(storage, &journal).await?;
    state::apply_journal(storage, &journal).await?;
    Ok(stats)
}

enum Rebuilt {
    Staged { staged: Path, bytes: u64 },
    Emptied,
    Untouched,
}

/// Builds one partition file's new content and stages it.
async fn rebuild(
    storage: &Storage,
    table: Table,
    path: &Path,
    new_rows: Option<RecordBatch>,
    touched: &BTreeSet<i64>,
    tag: &str,
) -> Result<Rebuilt, Error> {
    let current = storage.get(path).await?;
    let existed = current.is_some();
    let touched = touched.clone();
    let path_text = path.to_string();
    let encoded = tokio::task::spawn_blocking(move || -> Result<Option<Bytes>, Error> {
        let mut parts = Vec::new();
        if let Some(bytes) = current {
            for batch in parquet::decode(bytes, &table.schema(), &path_text)? {
                parts.push(parquet::without_tickets(&batch, &touched));
            }
        }
        parts.extend(new_rows);
        let merged = parquet::merge_sorted(table, &parts).map_err(|detail| Error::Merge {
            path: path_text.clone(),
            detail,
        })?;
        if merged.num_rows() == 0 && table != Table::Rejects {
            return Ok(None);
        }
        Ok(Some(parquet::encode(&merged, &path_text)?))
    })
    .await
    .map_err(Error::Task)??;
    match encoded {
        None if existed => Ok(Rebuilt::Emptied),
        None => Ok(Rebuilt::Untouched),
        Some(bytes) => {
            let staged = layout::staged(tag, path);
            let len = bytes.len() as u64;
            storage.put(&staged, bytes).await?;
            Ok(Rebuilt::Staged { staged, bytes: len })
        }
    }
}

#[cfg(test)]
mod tests;
