//! Sinks: write [`Changeset`]s (placed tickets, rejects, removals) to the dataset's Delta tables
//! and KnowledgeTree markdown, exactly once.
//!
//! # Checkpoints and table commits
//!
//! A run writes what it fetched as checkpoints ([`checkpoint`], [`pending`]): durable, not yet
//! visible. A table commit ([`commit_pending`]; [`commit`] for one changeset) folds any number of
//! checkpoints, and a last changeset in memory, into the tables at once: each ticket's last
//! version wins, and each partition gets one new file per table (several, each its own
//! `ticket_id` range, when one would pass [`FILE_BYTES`]).
//!
//! # Commit protocol
//!
//! 1. For every partition the commit touches (where its tickets go *and* where they were), read
//!    the files that may hold the touched tickets (their `ticket_id` range in the log says
//!    which), and rewrite those that do without them; the partition's new file holds those kept
//!    rows and the new rows (split by `ticket_id` into files of at most [`FILE_BYTES`], so a
//!    change rewrites a bounded part of a large partition). Files holding none of the touched
//!    tickets stay as they are, so new tickets are appended as a new file. The same for
//!    `rejects`.
//! 2. Stage every new file, every document of a changeset in memory and the new index under
//!    `_staging/<tag>/…`. Nothing visible has changed yet; a kill here leaves only staging
//!    garbage, which the next run deletes.
//! 3. Write `_state/journal.json`: the moves of the new data files, each table's `add`/`remove`
//!    actions, the documents (staged, or kept by a checkpoint) and index to publish and the
//!    objects to delete (replaced files, stale documents, the committed checkpoints). This is
//!    the commit point.
//! 4. Apply the journal ([`crate::state::apply_journal`]): move the new files into place, commit
//!    each table's log (a Delta commit with the dataset commit's `txn`, skipped when the log
//!    already holds it), record the tables' versions, publish the documents and the index,
//!    delete what it lists, remove the journal. A kill here is finished by the next run's
//!    [`recover`].
//! 5. Compact ([`compact`]): where [`FAN_IN`] files of a size tier (below [`COMPACT_BELOW`])
//!    have gathered in a partition, merge them, as a commit of its own with `dataChange: false`.
//!
//! A Delta reader sees each table move from one version to the next whole. A reader of the
//! plain files sees every file whole; during step 4 it can see a replaced file next to its
//! replacement, until the replaced one is deleted.

pub mod markdown;
pub mod parquet;
pub mod pending;
pub mod upgrade;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use arrow::array::RecordBatch;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;

use crate::normalize::{Placed, Rejection};
use crate::state::delta::{At, DataFile, Lake, Partition};
use crate::state::{self, Index, Journal, Location};
use crate::storage::{self, Storage};
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

impl crate::error::Classify for Error {
    /// Storage and state errors keep their class; a file that does not merge is
    /// [`Class::Failed`](crate::error::Class::Failed); a failed task is a [`Class::Bug`](crate::error::Class::Bug).
    fn class(&self) -> crate::error::Class {
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
    /// Documents of `placed` written ahead, by ticket: where and what. A sync writes each
    /// ticket's document as soon as its answer is in, while it waits on the network, under the
    /// checkpoint directory of the commit that will hold it (`_pending/<tag>/`, the same name
    /// [`Storage::pending`] gives it). A commit uses an entry only when it is at that path
    /// under its own tag and holds the document as it is now, and writes the others itself; what
    /// it does not use is deleted with the checkpoint's other leftovers.
    pub written: HashMap<i64, (Path, Bytes)>,
}

impl Changeset {
    /// True when the commit would change nothing (no staging, no journal).
    pub fn is_empty(&self) -> bool {
        self.placed.is_empty() && self.rejected.is_empty() && self.removed.is_empty()
    }

    /// Whether `p`'s document, as it is now, was written ahead at `path` (see [`Self::written`]).
    pub fn written_at(&self, p: &Placed, path: &Path) -> bool {
        self.written
            .get(&p.ticket.ticket_id)
            .is_some_and(|(at, bytes)| at == path && bytes.as_ref() == p.markdown.as_bytes())
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

/// Where a table commit's time went, by the work that grows with it: what a later commit of
/// the same run is foreseen from ([`CommitCost::foresee`]).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CommitCost {
    /// Partition files written.
    pub files: u32,
    /// Reading the checkpoints' rows back and writing the partition files (staged).
    pub writing: std::time::Duration,
    /// Objects the journal moved into place or deleted: partition files, documents, the index,
    /// the checkpoints' leftovers.
    pub objects: u32,
    /// Staging the documents and the index, and writing and applying the journal (the tables'
    /// log entries included).
    pub publishing: std::time::Duration,
}

impl CommitCost {
    /// How long a commit that writes `files` partition files and publishes `documents`
    /// documents would take at this commit's pace: per partition file written, and per object
    /// published (each file, each document and the index). A commit's cost is mostly its
    /// documents when it holds checkpoints (their documents are published from the
    /// checkpoints' directories) and mostly its files otherwise: one figure per file over both
    /// foresaw a commit of the tail three times too long after a commit of two checkpoints
    /// (6 ms a file where the next took 2.6). `None` before a commit that wrote a file.
    pub fn foresee(&self, files: u32, documents: u32) -> Option<std::time::Duration> {
        if self.files == 0 || self.objects == 0 {
            return None;
        }
        let per_file = self.writing / self.files;
        let per_object = self.publishing / self.objects;
        Some(per_file * files + per_object * files.saturating_add(documents).saturating_add(1))
    }
}

/// How many partition files are rebuilt at once. Each holds a partition's rebuilt files in
/// memory, so this sets how much of the dataset a commit holds at once (4 gave 2.26x the peak
/// memory for 10x the tickets, 2 gives 1.74x; commits are far from the bottleneck either way).
const PARALLEL_PARTITIONS: usize = 2;

/// How many partition files that only gain rows (at most [`LIGHT_BYTES`] of them, no file to
/// rewrite) are written at once: a run's last commit of 40 tickets writes about 80 such files,
/// each mostly a round trip on S3. (On a local disk this changes little: creating files is
/// what costs there, about 1.3 ms per file on this project's ext4 VMs, and the file system
/// takes those one at a time.)
const PARALLEL_LIGHT: usize = 16;

/// The most decoded bytes of new rows a partition's rebuild holds to count as light.
const LIGHT_BYTES: usize = 1024 * 1024;

/// A partition file to rebuild: its table and partition, its current files, the tickets that
/// leave it, its new rows, and whether it must keep a file.
type RebuildJob = (
    Table,
    Partition,
    Vec<DataFile>,
    BTreeSet<i64>,
    Vec<RecordBatch>,
    bool,
);

/// How many decoded bytes of checkpoint rows a table commit holds at once: the partitions it
/// writes are taken in waves of about this much, each wave reading the checkpoints' files once.
const WAVE_BYTES: u64 = 48 * 1024 * 1024;

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
    let keep_replaced = changeset.keep_replaced;
    commit_pending(
        storage,
        lake,
        index,
        Vec::new(),
        changeset,
        keep_replaced,
        tag,
    )
    .await
    .map(|(stats, _)| stats)
}

/// Writes `changeset` as a checkpoint ([`pending::write`]): durable, not yet in the tables.
/// `index` then holds its tickets; [`commit_pending`] commits it with the checkpoints before it.
pub async fn checkpoint(
    storage: &Storage,
    lake: &Lake,
    index: &mut Index,
    changeset: &Changeset,
    tag: &str,
) -> Result<pending::Segment, Error> {
    let segment = pending::write(storage, lake.domain(), index, changeset, tag).await?;
    pending::apply(index, &segment.tickets);
    Ok(segment)
}

/// One table commit of the checkpoints `segments` (in order; their tickets are in `index`
/// already) and then `last` (in memory; applied to `index` here): each partition the commit
/// touches gets one new file per table (several only past [`FILE_BYTES`]), whatever the number
/// of checkpoints. Returns what it wrote, and where its time went.
pub async fn commit_pending(
    storage: &Storage,
    lake: &mut Lake,
    index: &mut Index,
    segments: Vec<pending::Segment>,
    last: Changeset,
    keep_replaced: bool,
    tag: &str,
) -> Result<(CommitStats, CommitCost), Error> {
    let last_touched = pending::plan(index, &last);
    pending::apply(index, &last_touched);
    let mut parts: Vec<Part> = segments
        .into_iter()
        .map(|s| Part {
            touched: s.tickets.clone(),
            rows: Rows::Stored(s),
        })
        .collect();
    parts.push(Part {
        touched: last_touched,
        rows: Rows::Memory(last),
    });
    commit_parts(storage, lake, index, &parts, keep_replaced, tag).await
}

/// Finishes what a killed run left: the journal of a commit past its commit point
/// ([`state::recover`]), then the checkpoints it had not committed to the tables (one table
/// commit), and deletes checkpoints killed before their manifest. `keep_replaced` as in
/// [`Changeset::keep_replaced`] (the job's `history_days` > 0). Returns whether there was
/// anything to finish.
pub async fn recover(storage: &Storage, keep_replaced: bool) -> Result<bool, Error> {
    let replayed = state::recover(storage).await?;
    let (segments, orphans) = pending::load(storage).await?;
    for path in &orphans {
        storage.delete(path).await?;
    }
    let Some(first) = segments.first() else {
        storage
            .remove_empty_dirs(&storage.scope().pending_root())
            .await;
        return Ok(replayed);
    };
    tracing::warn!(
        checkpoints = segments.len(),
        first = %first.tag,
        "committing the checkpoints of an interrupted run"
    );
    let tag = format!("{}-recovered", segments[segments.len() - 1].tag);
    let mut index = state::load_index(storage).await?;
    for s in &segments {
        pending::apply(&mut index, &s.tickets);
    }
    let mut lake = Lake::open(storage, At::Latest).await?;
    commit_pending(
        storage,
        &mut lake,
        &mut index,
        segments,
        Changeset::default(),
        keep_replaced,
        &tag,
    )
    .await?;
    storage
        .remove_empty_dirs(&storage.scope().pending_root())
        .await;
    Ok(true)
}

/// Where a table commit takes the new rows of one part from.
enum Rows {
    /// A checkpoint's files.
    Stored(pending::Segment),
    /// A changeset in memory.
    Memory(Changeset),
}

/// One part of a table commit: its tickets and their rows.
struct Part {
    touched: Vec<pending::Touched>,
    rows: Rows,
}

/// The table commit of `parts` (see the module docs); `index` holds every part's tickets.
async fn commit_parts(
    storage: &Storage,
    lake: &mut Lake,
    index: &Index,
    parts: &[Part],
    keep_replaced: bool,
    tag: &str,
) -> Result<(CommitStats, CommitCost), Error> {
    let domain = lake.domain().to_string();
    let mut stats = CommitStats::default();
    let rejects = Partition::rejects(&domain);
    let rejects_missing = lake.files(Table::Rejects, &rejects).is_empty();
    if parts.iter().all(|p| p.touched.is_empty()) && !rejects_missing {
        return Ok((stats, CommitCost::default()));
    }
    // Each ticket: where it was before the first part, and which part has its last word.
    let mut origin: BTreeMap<i64, Option<Location>> = BTreeMap::new();
    let mut last: HashMap<i64, usize> = HashMap::new();
    for (i, part) in parts.iter().enumerate() {
        for t in &part.touched {
            origin.entry(t.id).or_insert_with(|| t.was.clone());
            last.insert(t.id, i);
        }
    }
    let partition_of = |location: &Location| match location {
        Location::Placed { account, year } => Partition::placed(&domain, account, *year),
        Location::Rejected => rejects.clone(),
    };
    // Partitions to write: where the touched tickets were (their rows leave the files that
    // hold them) and where they go.
    let mut drops: BTreeMap<Partition, BTreeSet<i64>> = BTreeMap::new();
    for (id, was) in &origin {
        if let Some(was) = was {
            drops.entry(partition_of(was)).or_default().insert(*id);
        }
    }
    let mut affected: BTreeSet<Partition> = drops.keys().cloned().collect();
    for id in last.keys() {
        if let Some(entry) = index.get(*id) {
            affected.insert(partition_of(&entry.location));
        }
    }
    if rejects_missing {
        affected.insert(rejects.clone());
    }

    let mut journal = Journal::new(tag, lake.seq() + 1);
    let file_tag = file_tag(tag);
    let mut phases = Phases::default();
    for wave in waves(parts, &affected) {
        let started = std::time::Instant::now();
        let mut incoming = pending_rows(storage, &domain, parts, &last, &wave).await?;
        phases.read += started.elapsed();
        let started = std::time::Instant::now();
        let mut jobs = Vec::new();
        for partition in &wave {
            let tables: &[Table] = if partition.account.is_some() {
                &Table::PARTITIONED
            } else {
                &[Table::Rejects]
            };
            for table in tables {
                let new_rows = incoming
                    .remove(&(*table, partition.clone()))
                    .unwrap_or_default();
                let drop = drops.get(partition).cloned().unwrap_or_default();
                let current = lake.files(*table, partition).to_vec();
                let keep_one = *table == Table::Rejects;
                jobs.push((*table, partition.clone(), current, drop, new_rows, keep_one));
            }
        }
        // A partition that only gains a few rows (no file of it to rewrite) is mostly waiting
        // on the store: those go many at a time, the rewrites a few at a time.
        let (light, heavy): (Vec<_>, Vec<_>) = jobs.into_iter().partition(|job| {
            let (_, _, current, drop, new_rows, _) = job;
            !current.iter().any(|f| f.may_hold(drop))
                && new_rows
                    .iter()
                    .map(RecordBatch::get_array_memory_size)
                    .sum::<usize>()
                    <= LIGHT_BYTES
        });
        let run = |jobs: Vec<RebuildJob>, parallel: usize| {
            let file_tag = &file_tag;
            futures::stream::iter(jobs)
                .map(
                    move |(table, partition, current, drop, new_rows, keep_one)| async move {
                        let plan = Rewrite::Holding { drop, keep_one };
                        let result = rebuild(
                            storage, table, &partition, current, plan, new_rows, tag, file_tag,
                        )
                        .await?;
                        Ok::<_, Error>((table, result))
                    },
                )
                .buffer_unordered(parallel)
                .try_collect::<Vec<(Table, Rebuilt)>>()
        };
        let (mut rebuilt, more) =
            futures::future::try_join(run(heavy, PARALLEL_PARTITIONS), run(light, PARALLEL_LIGHT))
                .await?;
        rebuilt.extend(more);
        phases.rebuild += started.elapsed();
        record(&mut journal, &mut stats, rebuilt, keep_replaced);
    }
    journal.tables.retain(|_, change| !change.is_empty());
    let started = std::time::Instant::now();

    // Documents: each ticket's from the part with its last word, if it is placed there.
    let target_of: HashMap<i64, Path> = last
        .keys()
        .filter_map(|id| match &index.get(*id)?.location {
            Location::Placed { account, year } => {
                Some((*id, storage.scope().markdown_file(account, *year, *id)))
            }
            Location::Rejected => None,
        })
        .collect();
    for (i, part) in parts.iter().enumerate() {
        let is_last = |id: i64| last.get(&id) == Some(&i);
        match &part.rows {
            Rows::Stored(segment) => {
                for doc in &segment.docs {
                    let current = target_of
                        .get(&doc.ticket_id)
                        .is_some_and(|t| t.as_ref() == doc.target);
                    if is_last(doc.ticket_id) && current {
                        stats.markdown_written += 1;
                        journal
                            .publish
                            .push((doc.staged.clone(), doc.target.clone()));
                    }
                }
            }
            Rows::Memory(changeset) => {
                let staged_docs: Vec<(Path, Path)> = futures::stream::iter(
                    changeset
                        .placed
                        .iter()
                        .filter(|p| is_last(p.ticket.ticket_id)),
                )
                .map(|p| async move {
                    let target = markdown::path_of(storage.scope(), p);
                    let ahead = storage.pending(tag, &target);
                    if changeset.written_at(p, &ahead) {
                        return Ok((ahead, target));
                    }
                    let staged = storage.staged(tag, &target);
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
            }
        }
    }
    for (id, was) in &origin {
        let now = match index.get(*id).map(|e| &e.location) {
            Some(Location::Placed { account, year }) => Some((account.as_str(), *year)),
            _ => None,
        };
        if let Some(stale) = markdown::stale_path(storage.scope(), *id, was.as_ref(), now) {
            stats.markdown_deleted += 1;
            journal.deletes.push(stale.to_string());
        }
    }
    // The checkpoints leave once the tables hold them (their documents that are published
    // leave by moving).
    let moved: HashSet<&str> = journal
        .publish
        .iter()
        .map(|(from, _)| from.as_str())
        .collect();
    // Documents written ahead for the changeset in memory are under this commit's tag: what
    // of them it did not publish leaves too.
    let ahead = parts
        .iter()
        .any(|p| matches!(&p.rows, Rows::Memory(c) if !c.written.is_empty()));
    let mut leftovers = Vec::new();
    for part in parts {
        let tag = match &part.rows {
            Rows::Stored(segment) => segment.tag.as_str(),
            Rows::Memory(_) if ahead => tag,
            Rows::Memory(_) => continue,
        };
        for path in pending::objects(storage, tag).await? {
            if !moved.contains(path.as_ref()) {
                leftovers.push(path.to_string());
            }
        }
    }
    journal.deletes.extend(leftovers);

    // The index after this commit, staged like everything else.
    let index_path = storage.scope().state(state::INDEX);
    let staged_index = storage.staged(tag, &index_path);
    storage
        .put(&staged_index, Bytes::from(index.to_json()))
        .await?;
    journal
        .publish
        .push((staged_index.to_string(), index_path.to_string()));

    phases.stage = started.elapsed();
    let started = std::time::Instant::now();
    state::write_journal(storage, &journal).await?;
    state::apply_journal(storage, lake, &journal).await?;
    if ahead {
        // Publishing moved the documents out of the directory; nothing else was in it.
        storage
            .remove_empty_dirs(&storage.scope().pending_root())
            .await;
    }
    phases.apply = started.elapsed();
    let objects = journal.moves.len() + journal.publish.len() + journal.deletes.len();
    let cost = CommitCost {
        files: u32::try_from(stats.parquet_files_written).unwrap_or(u32::MAX),
        writing: phases.read + phases.rebuild,
        objects: u32::try_from(objects).unwrap_or(u32::MAX),
        publishing: phases.stage + phases.apply,
    };
    let started = std::time::Instant::now();
    stats += compact(storage, lake, &affected, keep_replaced, tag).await?;
    tracing::debug!(
        partitions = affected.len(),
        read_ms = phases.read.as_millis() as u64,
        rebuild_ms = phases.rebuild.as_millis() as u64,
        stage_ms = phases.stage.as_millis() as u64,
        apply_ms = phases.apply.as_millis() as u64,
        compact_ms = started.elapsed().as_millis() as u64,
        "commit phases"
    );
    Ok((stats, cost))
}

/// Where a commit's time went (the `commit phases` debug event).
#[derive(Debug, Default)]
struct Phases {
    /// Reading the checkpoints' rows back.
    read: std::time::Duration,
    /// Merging and encoding the partitions' new files, and staging them.
    rebuild: std::time::Duration,
    /// Staging the documents and the index, listing the checkpoints' objects.
    stage: std::time::Duration,
    /// Writing and applying the journal.
    apply: std::time::Duration,
}

/// Adds what partition rebuilds wrote and replaced to `journal` and `stats`.
fn record(
    journal: &mut Journal,
    stats: &mut CommitStats,
    rebuilt: Vec<(Table, Rebuilt)>,
    keep_replaced: bool,
) {
    for (table, result) in rebuilt {
        let change = journal.tables.entry(table.name().to_string()).or_default();
        change.removes.extend(result.removed.iter().cloned());
        if !keep_replaced {
            for old in &result.removed {
                journal.deletes.push(old.object(table).to_string());
            }
        }
        if result.written.is_empty() && !result.removed.is_empty() {
            stats.parquet_files_deleted += 1;
        }
        for (staged, file) in result.written {
            stats.parquet_files_written += 1;
            stats.parquet_bytes += file.size;
            journal
                .moves
                .push((staged.to_string(), file.object(table).to_string()));
            change.adds.push(file);
        }
    }
}

/// `affected` in waves whose checkpoint rows are about [`WAVE_BYTES`] each (a partition's rows
/// are never split).
fn waves(parts: &[Part], affected: &BTreeSet<Partition>) -> Vec<BTreeSet<Partition>> {
    let mut cost: BTreeMap<&Partition, u64> = affected.iter().map(|p| (p, 0)).collect();
    for part in parts {
        if let Rows::Stored(segment) = &part.rows {
            for file in segment.files.values() {
                let total: usize = file.slices.iter().map(|s| s.rows).sum::<usize>().max(1);
                for s in &file.slices {
                    if let Some(c) = cost.get_mut(&s.partition) {
                        *c += file.memory * s.rows as u64 / total as u64;
                    }
                }
            }
        }
    }
    let mut out: Vec<BTreeSet<Partition>> = Vec::new();
    let mut size = 0;
    for (partition, c) in cost {
        if out.is_empty() || (size > 0 && size + c > WAVE_BYTES) {
            out.push(BTreeSet::new());
            size = 0;
        }
        size += c;
        out.last_mut()
            .expect("pushed above")
            .insert(partition.clone());
    }
    out
}

/// The new rows of `wave`'s partitions, by table and partition: from every part, the rows of
/// the tickets whose last word is that part's.
async fn pending_rows(
    storage: &Storage,
    domain: &str,
    parts: &[Part],
    last: &HashMap<i64, usize>,
    wave: &BTreeSet<Partition>,
) -> Result<HashMap<(Table, Partition), Vec<RecordBatch>>, Error> {
    let superseded_in = |i: usize| -> BTreeSet<i64> {
        parts[i]
            .touched
            .iter()
            .filter(|t| last.get(&t.id) != Some(&i))
            .map(|t| t.id)
            .collect()
    };
    // The checkpoints' files are read (and decoded, off the runtime) a few at a time, their
    // rows kept in the parts' order.
    let stored = parts
        .iter()
        .enumerate()
        .flat_map(|(i, part)| match &part.rows {
            Rows::Stored(segment) => Table::ALL
                .into_iter()
                .filter_map(|table| Some((i, table, segment.files.get(table.name())?)))
                .collect(),
            Rows::Memory(_) => Vec::new(),
        });
    type Read = (usize, Table, Vec<(Partition, RecordBatch)>);
    let read: Vec<Read> = futures::stream::iter(stored)
        .map(|(i, table, file)| async move {
            Ok::<_, Error>((i, table, pending::read(storage, table, file, wave).await?))
        })
        .buffered(PARALLEL_PARTITIONS)
        .try_collect()
        .await?;
    let mut out: HashMap<(Table, Partition), Vec<RecordBatch>> = HashMap::new();
    let mut superseded = BTreeSet::new();
    let mut superseded_of = None;
    for (i, table, batches) in read {
        if superseded_of != Some(i) {
            superseded = superseded_in(i);
            superseded_of = Some(i);
        }
        for (partition, batch) in batches {
            let batch = parquet::without_tickets(&batch, &superseded);
            if batch.num_rows() > 0 {
                out.entry((table, partition)).or_default().push(batch);
            }
        }
    }
    for (i, part) in parts.iter().enumerate() {
        let superseded = superseded_in(i);
        match &part.rows {
            Rows::Stored(_) => {}
            Rows::Memory(changeset) => {
                let mut placed: BTreeMap<Partition, Vec<&Placed>> = BTreeMap::new();
                for p in &changeset.placed {
                    let partition = Partition::placed(domain, &p.account, p.year);
                    if wave.contains(&partition) && !superseded.contains(&p.ticket.ticket_id) {
                        placed.entry(partition).or_default().push(p);
                    }
                }
                for (partition, rows) in placed {
                    for table in Table::PARTITIONED {
                        let batch = tables::placed_batch(table, &rows);
                        if batch.num_rows() > 0 {
                            out.entry((table, partition.clone()))
                                .or_default()
                                .push(batch);
                        }
                    }
                }
                let rejects = wave.iter().find(|p| p.account.is_none());
                if let Some(partition) = rejects {
                    let rows: Vec<&Rejection> = changeset
                        .rejected
                        .iter()
                        .filter(|r| !superseded.contains(&r.ticket_id))
                        .collect();
                    if !rows.is_empty() {
                        out.entry((Table::Rejects, partition.clone()))
                            .or_default()
                            .push(tables::rejects_batch(&rows));
                    }
                }
            }
        }
    }
    Ok(out)
}

/// The largest partition file a commit writes: a partition whose rows would encode to more is
/// written as several files, each its own `ticket_id` range, so a change to one ticket rewrites
/// at most this much of each table. (Smaller in unit tests, so they can reach it.)
const FILE_BYTES: usize = if cfg!(test) {
    256 * 1024
} else {
    32 * 1024 * 1024
};
/// Files of one partition below this size are compacted together, by tier: [`FAN_IN`] of them
/// stay within [`FILE_BYTES`], so what compaction writes is never split again.
const COMPACT_BELOW: u64 = (FILE_BYTES / FAN_IN) as u64;
/// The smallest tier's upper bound: files under it are all of tier 0.
const TIER_BASE: u64 = 64 * 1024;
/// Files of one tier that are merged into one (a tier spans this factor of sizes).
const FAN_IN: usize = 8;

/// The size tier of a file: 0 below [`TIER_BASE`], then one per factor [`FAN_IN`].
fn tier(size: u64) -> u32 {
    let mut tier = 0;
    let mut bound = TIER_BASE;
    while size >= bound {
        tier += 1;
        bound = bound.saturating_mul(FAN_IN as u64);
    }
    tier
}

/// The files of a partition to merge: the [`FAN_IN`] or more of its lowest full tier.
fn compaction_pick(files: &[DataFile]) -> Option<Vec<DataFile>> {
    let mut tiers: BTreeMap<u32, Vec<DataFile>> = BTreeMap::new();
    for file in files.iter().filter(|f| f.size < COMPACT_BELOW) {
        tiers.entry(tier(file.size)).or_default().push(file.clone());
    }
    tiers.into_values().find(|files| files.len() >= FAN_IN)
}

/// Size-tiered compaction of `partitions` (a commit of its own, `dataChange: false`): wherever
/// [`FAN_IN`] files of a tier have gathered (nightly runs append a small file to each partition
/// they touch), they become one. Each row is rewritten about once per tier, so a partition's
/// write cost grows with the logarithm of its size, and its file count stays small.
pub async fn compact(
    storage: &Storage,
    lake: &mut Lake,
    partitions: &BTreeSet<Partition>,
    keep_replaced: bool,
    tag: &str,
) -> Result<CommitStats, Error> {
    let tag = format!("{tag}-compact");
    let file_tag = file_tag(&tag);
    let mut jobs = Vec::new();
    for partition in partitions {
        for table in Table::ALL {
            if let Some(files) = compaction_pick(lake.files(table, partition)) {
                jobs.push((table, partition.clone(), files));
            }
        }
    }
    let mut stats = CommitStats::default();
    if jobs.is_empty() {
        return Ok(stats);
    }
    let rebuilt: Vec<(Table, Rebuilt)> = futures::stream::iter(jobs)
        .map(|(table, partition, files)| {
            let (tag, file_tag) = (&tag, &file_tag);
            async move {
                let result = rebuild(
                    storage,
                    table,
                    &partition,
                    files,
                    Rewrite::All,
                    Vec::new(),
                    tag,
                    file_tag,
                )
                .await?;
                Ok::<_, Error>((table, result))
            }
        })
        .buffer_unordered(PARALLEL_PARTITIONS)
        .try_collect()
        .await?;
    let mut journal = Journal::new(&tag, lake.seq() + 1);
    record(&mut journal, &mut stats, rebuilt, keep_replaced);
    for change in journal.tables.values_mut() {
        change.data_change = false;
    }
    tracing::debug!(
        files = stats.parquet_files_written,
        "partition files compacted"
    );
    state::write_journal(storage, &journal).await?;
    state::apply_journal(storage, lake, &journal).await?;
    Ok(stats)
}

/// A partition's new files (staged, and as the log will record them: one, or several of
/// [`FILE_BYTES`] at most) and the files they replace.
struct Rebuilt {
    written: Vec<(Path, DataFile)>,
    removed: Vec<DataFile>,
}

/// Which of a partition's files a rebuild rewrites.
enum Rewrite {
    /// Those holding rows of `drop` (found by their `ticket_id` range, then by reading them),
    /// without those rows. With `keep_one`, the table keeps a file even when empty.
    Holding { drop: BTreeSet<i64>, keep_one: bool },
    /// All of them, unchanged (compaction).
    All,
}

/// Builds one partition's new file from the rows of the files `plan` rewrites and `new_rows`,
/// and stages it. Files that hold none of the rows being replaced are left as they are.
#[allow(clippy::too_many_arguments)]
async fn rebuild(
    storage: &Storage,
    table: Table,
    partition: &Partition,
    current: Vec<DataFile>,
    plan: Rewrite,
    new_rows: Vec<RecordBatch>,
    tag: &str,
    file_tag: &str,
) -> Result<Rebuilt, Error> {
    let (drop, keep_one) = match &plan {
        Rewrite::Holding { drop, keep_one } => (drop.clone(), *keep_one),
        Rewrite::All => (BTreeSet::new(), false),
    };
    let candidates: Vec<&DataFile> = match &plan {
        Rewrite::All => current.iter().collect(),
        Rewrite::Holding { drop, .. } => current.iter().filter(|f| f.may_hold(drop)).collect(),
    };
    let mut contents = Vec::with_capacity(candidates.len());
    for file in &candidates {
        let path = file.object(table);
        let bytes = storage.get_existing(&path).await?;
        contents.push(((*file).clone(), path.to_string(), bytes));
    }
    let rewrite_all = matches!(plan, Rewrite::All);
    let files_before = current.len();
    let target = partition.clone();
    type Encoded = (Vec<DataFile>, Vec<(RecordBatch, Bytes)>);
    let (removed, encoded) = tokio::task::spawn_blocking(move || -> Result<Encoded, Error> {
        let mut parts = Vec::new();
        let mut removed = Vec::new();
        for (file, path, bytes) in contents {
            let batches = parquet::decode(bytes, &table.schema(), &path)?;
            let holds = rewrite_all
                || batches.iter().any(|b| {
                    parquet::ticket_ids(b)
                        .iter()
                        .flatten()
                        .any(|id| drop.contains(&id))
                });
            if holds {
                parts.extend(batches.iter().map(|b| parquet::without_tickets(b, &drop)));
                removed.push(file);
            }
        }
        parts.extend(new_rows);
        let rows: usize = parts.iter().map(RecordBatch::num_rows).sum();
        // Nothing to write, unless the table must keep a file and would have none.
        if rows == 0 && !(keep_one && files_before == removed.len()) {
            return Ok((removed, Vec::new()));
        }
        let label = target.dir();
        let merged = parquet::merge_sorted(table, &parts).map_err(|detail| Error::Merge {
            path: format!("{}/{label}", table.name()),
            detail,
        })?;
        let files = parquet::encode_capped(&merged, &label, FILE_BYTES)?;
        Ok((removed, files))
    })
    .await
    .map_err(Error::Task)??;
    let several = encoded.len() > 1;
    let mut written = Vec::with_capacity(encoded.len());
    for (k, (batch, bytes)) in encoded.into_iter().enumerate() {
        let name = if several {
            format!("{file_tag}-f{k}")
        } else {
            file_tag.to_string()
        };
        let file = DataFile::new(partition, &name, &batch, bytes.len() as u64);
        let staged = storage.staged(tag, &file.object(table));
        storage.put(&staged, bytes).await?;
        written.push((staged, file));
    }
    Ok(Rebuilt { written, removed })
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
        let bytes = storage.get_existing(&path).await?;
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
