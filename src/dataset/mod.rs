//! Operations on a written dataset that need no API: erasure ([`forget`]), subject-access export
//! ([`export`]), retention ([`retention`]) and redaction of rows written before a rule existed
//! ([`redact`]).
//!
//! They read the partition files back into rows ([`crate::tables::read`]), change them with the
//! same pure functions a sync uses (`normalize::privacy`), render the markdown with the same
//! renderer, and write through the same commit ([`crate::sink::commit`]): the journal, the index
//! and the run lock work for them exactly as for a sync.

pub mod export;
pub mod forget;
pub mod redact;
pub mod retention;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::normalize::{markdown, Placed, TicketRow};
use crate::sink::{self, parquet, Changeset, CommitStats};
use crate::state::delta::{At, Lake};
use crate::state::lock::{self, Lock};
use crate::state::{self, Index, Location};
use crate::storage::{self, layout, Storage};
use crate::tables::{self, Table};

/// Errors of `forget`, `export-person` and `prune`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An object could not be read, written or listed.
    #[error(transparent)]
    Storage(#[from] storage::Error),
    /// The index, erasures or journal could not be read or written.
    #[error(transparent)]
    State(#[from] state::Error),
    /// A commit failed.
    #[error(transparent)]
    Sink(#[from] sink::Error),
    /// A partition file did not decode.
    #[error(transparent)]
    Parquet(#[from] parquet::Error),
    /// Another run holds the dataset (or its lock is unreadable): nothing was changed.
    #[error(transparent)]
    Locked(lock::Error),
    /// A partition's batches did not convert back to rows (a column missing, mistyped or null).
    #[error("{path}: {detail}")]
    Rows {
        /// The partition file.
        path: String,
        /// Which column, and in which row.
        detail: String,
    },
    /// The dataset needs a sync first (an older format) or is newer than this release.
    #[error("{0}")]
    Format(String),
    /// A bad argument (an address that is not one, an empty name).
    #[error("{0}")]
    Invalid(String),
}

impl From<lock::Error> for Error {
    fn from(e: lock::Error) -> Self {
        match e {
            lock::Error::Storage(e) => Error::Storage(e),
            e => Error::Locked(e),
        }
    }
}

impl crate::error::Classify for Error {
    /// Bad arguments and a dataset of the wrong format are [`Class::Config`](crate::error::Class::Config);
    /// rows that do not read back are [`Class::Failed`](crate::error::Class::Failed); the rest keep their
    /// source's class.
    fn class(&self) -> crate::error::Class {
        use crate::error::Class;
        match self {
            Error::Invalid(_) | Error::Format(_) => Class::Config,
            Error::Storage(e) => e.class(),
            Error::State(e) => e.class(),
            Error::Sink(e) => e.class(),
            Error::Parquet(e) => e.class(),
            Error::Locked(e) => e.class(),
            Error::Rows { .. } => Class::Failed,
        }
    }
}

/// The result of dataset operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The partitions the index places tickets in, sorted.
pub fn partitions(index: &Index) -> BTreeSet<(String, i32)> {
    index
        .iter()
        .filter_map(|(_, e)| match &e.location {
            Location::Placed { account, year } => Some((account.clone(), *year)),
            Location::Rejected => None,
        })
        .collect()
}

/// Refuses a dataset this release cannot rewrite: an older format needs a sync first (which
/// upgrades it), a newer one a newer release.
pub async fn check_format(storage: &Storage) -> Result<()> {
    use sink::upgrade::{format, Format, FORMAT};
    match format(storage).await? {
        Format::Current | Format::New => Ok(()),
        // Files but no index: a first sync that wrote (its rejects file, staged parts) and
        // never committed a ticket. That is no older release's dataset.
        Format::Older(1) if !storage.exists(&layout::state(state::INDEX)).await? => {
            Err(Error::Format(format!(
                "the dataset at {}: its first sync has not finished (no committed tables yet); run `ticketsync sync` to completion first, then retry",
                storage.display()
            )))
        }
        Format::Older(found) => Err(Error::Format(format!(
            "the dataset at {} has format {found}; run `ticketsync sync` once (it upgrades the dataset to format {FORMAT}), then retry",
            storage.display()
        ))),
        Format::Newer(found) => Err(Error::Format(format!(
            "the dataset at {} has format {found}, written by a newer ticketsync; use that release",
            storage.display()
        ))),
    }
}

/// One maintenance command's run, under the dataset's run lock.
#[derive(Debug)]
pub struct Session<'a> {
    /// `<start>-<command>-<4 hex>`: names the lock holder, the staging area and the audit record.
    pub run_id: String,
    /// When the command started (whole seconds).
    pub started_at: DateTime<Utc>,
    /// The run lock the command holds (checked before each commit).
    pub lock: &'a Lock,
    /// The dataset's index, after any interrupted commit was finished.
    pub index: Index,
}

/// The storage of every domain the dataset holds (the home domain first, then the others by
/// name): what `forget`, `export-person`, `prune` and `redact` go through one after the other.
pub async fn domains(storage: &Storage) -> Result<Vec<Storage>> {
    let home = crate::state::delta::dataset_domain(storage).await?;
    let lake = Lake::open(storage, At::Latest).await?;
    let mut out = vec![storage.scoped(layout::Scope::Home)];
    for domain in lake.domains() {
        if domain != home {
            out.push(storage.scoped(layout::Scope::Domain(domain)));
        }
    }
    Ok(out)
}

/// Runs `work` as the maintenance command `command` the way a sync runs: under the run lock,
/// after finishing an interrupted commit, on a dataset of this release's format; the lock is
/// released afterwards, also when `work` failed.
pub async fn under_lock<R>(
    storage: &Storage,
    command: &str,
    lock_ttl: Duration,
    work: impl AsyncFnOnce(Session<'_>) -> Result<R>,
) -> Result<R> {
    let started_at = crate::state::now();
    let run_id = format!(
        "{}-{command}-{:04x}",
        started_at.format("%Y%m%dT%H%M%SZ"),
        rand::random::<u16>()
    );
    let lock = lock::Lock::acquire(storage, &run_id, lock_ttl).await?;
    let result = async {
        // Maintenance commits delete what they replace; so does this one.
        sink::recover(storage, false).await?;
        check_format(storage).await?;
        let index = state::load_index(storage).await?;
        work(Session {
            run_id: run_id.clone(),
            started_at,
            lock: &lock,
            index,
        })
        .await
    }
    .await;
    if let Err(e) = lock.release().await {
        tracing::warn!(error = %e, "cannot release the run lock; it expires on its own");
    }
    result
}

/// Writes a command's audit record to `_runs/<run_id>.json`.
pub async fn audit(storage: &Storage, run_id: &str, record: &impl serde::Serialize) -> Result<()> {
    let body = serde_json::to_vec_pretty(record).expect("audit records serialize");
    storage
        .put(&layout::run_report(run_id), body.into())
        .await?;
    Ok(())
}

/// The `tickets` rows of one partition alone (for the passes that need no other table).
pub async fn read_tickets(
    storage: &Storage,
    lake: &Lake,
    account: &str,
    year: i32,
) -> Result<Vec<TicketRow>> {
    let mut rows = Vec::new();
    for (path, batches) in
        sink::read_rows(storage, lake, Table::Tickets, Some(account), Some(year)).await?
    {
        for batch in batches {
            rows.extend(tables::read::tickets(&batch).map_err(|detail| Error::Rows {
                path: path.clone(),
                detail,
            })?);
        }
    }
    Ok(rows)
}

/// Every ticket of one partition with its rows (markdown not rendered: empty).
pub async fn read_partition(
    storage: &Storage,
    lake: &Lake,
    index: &Index,
    account: &str,
    year: i32,
) -> Result<Vec<Placed>> {
    let mut batches = BTreeMap::new();
    for table in Table::PARTITIONED {
        let files = sink::read_rows(storage, lake, table, Some(account), Some(year)).await?;
        let path = files.first().map(|(p, _)| p.clone()).unwrap_or_default();
        let rows: Vec<_> = files.into_iter().flat_map(|(_, b)| b).collect();
        batches.insert(table, (path, rows));
    }
    let rows_err = |path: &str| {
        let path = path.to_string();
        move |detail: String| Error::Rows { path, detail }
    };
    let mut placed: BTreeMap<i64, Placed> = BTreeMap::new();
    let (path, tickets) = &batches[&Table::Tickets];
    for batch in tickets {
        for ticket in tables::read::tickets(batch).map_err(rows_err(path))? {
            let fingerprint = index
                .get(ticket.ticket_id)
                .and_then(|e| e.time_entries)
                .unwrap_or(0);
            placed.insert(
                ticket.ticket_id,
                Placed {
                    account: account.to_string(),
                    year,
                    ticket,
                    conversations: Vec::new(),
                    notes: Vec::new(),
                    time_entries: Vec::new(),
                    markdown: String::new(),
                    time_entries_fingerprint: fingerprint,
                    privacy: Default::default(),
                },
            );
        }
    }
    let (path, conversations) = &batches[&Table::Conversations];
    for batch in conversations {
        for row in tables::read::conversations(batch).map_err(rows_err(path))? {
            if let Some(p) = placed.get_mut(&row.ticket_id) {
                p.conversations.push(row);
            }
        }
    }
    let (path, notes) = &batches[&Table::Notes];
    for batch in notes {
        for row in tables::read::notes(batch).map_err(rows_err(path))? {
            if let Some(p) = placed.get_mut(&row.ticket_id) {
                p.notes.push(row);
            }
        }
    }
    let (path, entries) = &batches[&Table::TimeEntries];
    for batch in entries {
        for row in tables::read::time_entries(batch).map_err(rows_err(path))? {
            if let Some(p) = placed.get_mut(&row.ticket_id) {
                p.time_entries.push(row);
            }
        }
    }
    Ok(placed.into_values().collect())
}

/// What a rewrite changed.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Rewritten {
    /// Tickets with at least one changed row.
    pub tickets: u64,
    /// Changed rows per table.
    pub rows: BTreeMap<String, u64>,
    /// Markdown documents rendered again.
    pub documents: u64,
    /// What the commits wrote (all zero on a dry run).
    pub output: CommitStats,
}

/// Rewrites every placed ticket that `change` changes (it returns true then), one partition at
/// a time, each through one commit; with `dry_run`, only counts.
pub async fn rewrite(
    storage: &Storage,
    index: &mut Index,
    lock: &lock::Lock,
    tag: &str,
    dry_run: bool,
    mut change: impl FnMut(&mut Placed) -> bool,
) -> Result<Rewritten> {
    let mut done = Rewritten::default();
    // The tables' logs are read once; the commits below keep them current.
    let mut lake = Lake::open(storage, At::Latest).await?;
    for (n, (account, year)) in partitions(index).into_iter().enumerate() {
        let mut changed = Vec::new();
        for mut p in read_partition(storage, &lake, index, &account, year).await? {
            let before = p.clone();
            if !change(&mut p) {
                continue;
            }
            for (table, rows) in [
                (Table::Tickets, u64::from(before.ticket != p.ticket)),
                (
                    Table::Conversations,
                    diff_rows(&before.conversations, &p.conversations),
                ),
                (Table::Notes, diff_rows(&before.notes, &p.notes)),
                (
                    Table::TimeEntries,
                    diff_rows(&before.time_entries, &p.time_entries),
                ),
            ] {
                *done.rows.entry(table.name().to_string()).or_default() += rows;
            }
            p.markdown = markdown::render(&p.ticket, &p.conversations, &p.notes);
            done.tickets += 1;
            done.documents += 1;
            changed.push(p);
        }
        if dry_run || changed.is_empty() {
            continue;
        }
        lock.verify().await?;
        let changeset = Changeset {
            placed: changed,
            ..Changeset::default()
        };
        done.output +=
            sink::commit_with(storage, &mut lake, index, changeset, &format!("{tag}-{n}")).await?;
    }
    Ok(done)
}

/// Rewrites the `rejects` rows whose `detail` `change` changes (it returns true then), in one
/// commit; with `dry_run`, only counts. Returns how many rows changed (also counted in `done`).
pub async fn rewrite_rejects(
    storage: &Storage,
    index: &mut Index,
    lock: &lock::Lock,
    tag: &str,
    dry_run: bool,
    done: &mut Rewritten,
    mut change: impl FnMut(&mut String) -> bool,
) -> Result<u64> {
    let mut changed = Vec::new();
    let lake = Lake::open(storage, At::Latest).await?;
    for (path, batches) in sink::read_rows(storage, &lake, Table::Rejects, None, None).await? {
        for batch in batches {
            let rows = tables::read::rejects(&batch).map_err(|detail| Error::Rows {
                path: path.clone(),
                detail,
            })?;
            for mut r in rows {
                // A stale row of a ticket placed since would move it back: the commit of its
                // placement removes the row anyway.
                let placed = index
                    .get(r.ticket_id)
                    .is_some_and(|e| matches!(e.location, Location::Placed { .. }));
                if !placed && change(&mut r.detail) {
                    // The commit writes the index entry again: keep the `updated_at` it has.
                    r.updated_at = index
                        .get(r.ticket_id)
                        .and_then(|e| e.updated_at)
                        .and_then(DateTime::<Utc>::from_timestamp_millis);
                    changed.push(r);
                }
            }
        }
    }
    let n = changed.len() as u64;
    *done
        .rows
        .entry(Table::Rejects.name().to_string())
        .or_default() += n;
    if dry_run || changed.is_empty() {
        return Ok(n);
    }
    lock.check()?;
    let changeset = Changeset {
        rejected: changed,
        ..Changeset::default()
    };
    done.output += sink::commit(storage, index, changeset, &format!("{tag}-rejects")).await?;
    Ok(n)
}

fn diff_rows<T: PartialEq>(before: &[T], after: &[T]) -> u64 {
    before.iter().zip(after).filter(|(a, b)| a != b).count() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 19, also: a first sync that never committed is not "format 1".
    #[tokio::test]
    async fn privacy_commands_say_a_first_sync_has_not_finished() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::open(dir.path().to_str().unwrap(), &Default::default()).unwrap();
        assert!(
            check_format(&storage).await.is_ok(),
            "an empty dataset is new"
        );
        let rejects = layout::table_file(Table::Rejects.name());
        let bytes = parquet::encode(&parquet::empty(Table::Rejects), rejects.as_ref()).unwrap();
        storage.put(&rejects, bytes).await.unwrap();
        let e = check_format(&storage).await.unwrap_err().to_string();
        assert!(e.contains("first sync has not finished"), "{e}");
        assert!(!e.contains("format 1"), "{e}");
        // With an index it is an older release's dataset.
        storage
            .put(
                &layout::state(state::INDEX),
                bytes::Bytes::from(Index::default().to_json()),
            )
            .await
            .unwrap();
        let e = check_format(&storage).await.unwrap_err().to_string();
        assert!(e.contains("has format 1"), "{e}");
    }
}
