//! State under `<data>/_state/`: the ticket index, the incremental cursor and the commit journal.
//!
//! - `index.json`: for every ticket in the dataset, its `updated_at` and where it lives (an
//!   account/year partition, or `rejects`). The sink uses it to replace a re-synced ticket's rows
//!   wherever they are; the pipeline uses it to skip tickets whose `updated_at` is unchanged.
//! - `cursor.json`: the `updated_since` of the next incremental run. Written last, only after
//!   every sink has committed.
//! - `journal.json`: the commit record of a changeset whose files are staged. Writing it is the
//!   commit point; replaying it is idempotent, so a run killed while applying it is finished by
//!   the next run before anything else happens.
//!
//! - `lock.json`: the run lock ([`lock`]): at most one run writes the dataset at a time.
//! - `erasures.json` and `erasure.key`: the people `forget` erased, as keyed hashes
//!   ([`erasures`]).
//! - `format.json`: the dataset format version, read and written by
//!   [`crate::sink::upgrade`] (which upgrades older datasets through the journal).
//!
//! Each object is replaced by one atomic put.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use serde::{Deserialize, Serialize};

use crate::storage::{self, Storage};

pub mod delta;
pub mod erasures;
pub mod lock;

/// State errors: the storage failed, or a state object does not decode.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or writing a state object failed.
    #[error(transparent)]
    Storage(#[from] storage::Error),
    /// A state object exists but is not what this release writes (hand-edited, truncated, or
    /// from a newer release): the run fails rather than guess.
    #[error("state object {path} is corrupt: {detail}")]
    Corrupt {
        /// The object's path (`_state/…`).
        path: String,
        /// The decode error.
        detail: String,
    },
    /// The erasure key is missing, malformed or not the one the erasures were made with (a
    /// configuration problem: the operator restores the key).
    #[error("erasure key: {0}")]
    ErasureKey(String),
    /// A table's Delta log could not be read or committed.
    #[error("delta log of table {table}: {detail}")]
    Delta {
        /// The table.
        table: &'static str,
        /// delta-rs' message.
        detail: String,
    },
}

impl crate::error::Classify for Error {
    /// Storage errors keep their class; a corrupt state object is [`Class::Failed`](crate::error::Class::Failed);
    /// a wrong erasure key is [`Class::Config`](crate::error::Class::Config).
    fn class(&self) -> crate::error::Class {
        use crate::error::Class;
        match self {
            Error::Storage(e) => e.class(),
            Error::Corrupt { .. } => Class::Failed,
            Error::ErasureKey(_) => Class::Config,
            // A log that does not load or commit: storage trouble or a writer we do not know;
            // retrying the run is the right first answer either way.
            Error::Delta { .. } => Class::Retryable,
        }
    }
}

/// The result of state operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Where a ticket's rows live.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Location {
    /// In the `tickets` table (and the others) under `account=<account>/year=<year>`.
    Placed {
        /// The account partition.
        account: String,
        /// The year partition (UTC year of `closed_at`).
        year: i32,
    },
    /// In the `rejects` table.
    Rejected,
}

/// One ticket of the index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexEntry {
    /// The `updated_at` (ms since the epoch) of the version in the dataset; `None` when unknown
    /// (a reject whose row did not decode), which never matches, so it is re-read.
    pub updated_at: Option<i64>,
    /// Where its rows live; a re-synced ticket's old rows are replaced there.
    pub location: Location,
    /// `closed_at` (ms) of a placed ticket: the re-scan window for late time entries uses it.
    pub closed_at: Option<i64>,
    /// Fingerprint of the ticket's time entries as last fetched (see
    /// `normalize::time_entries_fingerprint`): a re-scan compares it to spot late entries.
    pub time_entries: Option<u64>,
}

/// Every ticket in the dataset.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Index {
    entries: BTreeMap<i64, IndexEntry>,
}

/// One index row on disk:
/// `[ticket_id, updated_at_ms|null, account|null, year|null, closed_at_ms|null, time_entries_fingerprint|null]`.
type IndexRow = (
    i64,
    Option<i64>,
    Option<String>,
    Option<i32>,
    Option<i64>,
    Option<u64>,
);

/// On-disk form: compact rows.
#[derive(Serialize, Deserialize)]
struct IndexFile {
    version: u32,
    tickets: Vec<IndexRow>,
}

impl Index {
    /// The entry of a ticket, if the dataset holds it.
    pub fn get(&self, ticket_id: i64) -> Option<&IndexEntry> {
        self.entries.get(&ticket_id)
    }

    /// Adds a ticket or replaces its entry.
    pub fn insert(&mut self, ticket_id: i64, entry: IndexEntry) {
        self.entries.insert(ticket_id, entry);
    }

    /// Drops a ticket, returning its entry.
    pub fn remove(&mut self, ticket_id: i64) -> Option<IndexEntry> {
        self.entries.remove(&ticket_id)
    }

    /// Tickets in the dataset, placed and rejected.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Tickets placed in the tables (rejects not counted).
    pub fn placed(&self) -> usize {
        self.entries
            .values()
            .filter(|e| matches!(e.location, Location::Placed { .. }))
            .count()
    }

    /// True on the first run (no ticket yet).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Every entry, by ticket id ascending.
    pub fn iter(&self) -> impl Iterator<Item = (&i64, &IndexEntry)> {
        self.entries.iter()
    }

    /// The newest `closed_at` of a placed ticket (the dataset's freshness).
    pub fn newest_closed_at(&self) -> Option<DateTime<Utc>> {
        let ms = self.entries.values().filter_map(|e| e.closed_at).max()?;
        DateTime::from_timestamp_millis(ms)
    }

    /// Placed tickets closed at or after `since` (ms): the re-scan window.
    pub fn closed_since(&self, since: DateTime<Utc>) -> Vec<(i64, Option<u64>)> {
        let since = since.timestamp_millis();
        self.entries
            .iter()
            .filter(|(_, e)| {
                matches!(e.location, Location::Placed { .. })
                    && e.closed_at.is_some_and(|c| c >= since)
            })
            .map(|(id, e)| (*id, e.time_entries))
            .collect()
    }

    /// Whether the dataset already holds this version of the ticket, placed.
    pub fn is_current(&self, ticket_id: i64, updated_at: DateTime<Utc>) -> bool {
        matches!(
            self.entries.get(&ticket_id),
            Some(IndexEntry { updated_at: Some(ms), location: Location::Placed { .. }, .. })
                if *ms == updated_at.timestamp_millis()
        )
    }

    /// The `index.json` bytes: version 1, one compact array row per ticket.
    pub fn to_json(&self) -> Vec<u8> {
        let file = IndexFile {
            version: 1,
            tickets: self
                .entries
                .iter()
                .map(|(id, e)| match &e.location {
                    Location::Placed { account, year } => (
                        *id,
                        e.updated_at,
                        Some(account.clone()),
                        Some(*year),
                        e.closed_at,
                        e.time_entries,
                    ),
                    Location::Rejected => (*id, e.updated_at, None, None, None, None),
                })
                .collect(),
        };
        // Serializing plain numbers and strings cannot fail.
        serde_json::to_vec(&file).expect("index serializes")
    }

    /// Parses `index.json` read from `path`; [`Error::Corrupt`] names the path when it does not decode.
    pub fn from_json(bytes: &[u8], path: &str) -> Result<Index> {
        let file: IndexFile = serde_json::from_slice(bytes).map_err(|e| Error::Corrupt {
            path: path.to_string(),
            detail: e.to_string(),
        })?;
        let entries = file
            .tickets
            .into_iter()
            .map(|(id, updated_at, account, year, closed_at, time_entries)| {
                let location = match (account, year) {
                    (Some(account), Some(year)) => Location::Placed { account, year },
                    _ => Location::Rejected,
                };
                (
                    id,
                    IndexEntry {
                        updated_at,
                        location,
                        closed_at,
                        time_entries,
                    },
                )
            })
            .collect();
        Ok(Index { entries })
    }
}

/// The incremental cursor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    /// `updated_since` for the next incremental run (run start − overlap).
    pub updated_since: DateTime<Utc>,
    /// The run that wrote it.
    pub run_id: String,
    /// When recently closed tickets last had their time entries re-read.
    #[serde(default)]
    pub rescanned_at: Option<DateTime<Utc>>,
    /// What the API said about itself in that run, for the next one's first round trip: the
    /// account's allowance (`X-RateLimit-Total`) and the requests' mean round trip.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api: Option<ApiSeen>,
}

/// The API's allowance and round trip as a run saw them (see [`Cursor::api`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiSeen {
    /// `X-RateLimit-Total`, credits per rate window.
    pub rate_total: u32,
    /// The requests' mean round trip, in milliseconds.
    pub round_trip_ms: u64,
}

/// The commit record of one changeset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Journal {
    /// Format of the journal (2: Delta tables; 1, the Hive layout's, had no `tables`).
    pub version: u32,
    /// The staging tag (`_staging/<tag>/…`).
    pub tag: String,
    /// The dataset commit sequence number: the `txn` version of every table commit it makes.
    #[serde(default)]
    pub seq: u64,
    /// Staged object → final object, moved before the tables commit (new data files).
    pub moves: Vec<(String, String)>,
    /// What the commit does to each table's log, by table name.
    #[serde(default)]
    pub tables: BTreeMap<String, delta::TableCommit>,
    /// Staged object → final object, moved once the tables have committed (documents, the
    /// index): nothing outside the tables describes rows they do not hold.
    #[serde(default)]
    pub publish: Vec<(String, String)>,
    /// Objects to delete (replaced data files, markdown of moved or removed tickets).
    pub deletes: Vec<String>,
}

impl Journal {
    /// An empty journal for the commit staged under `tag`.
    pub fn new(tag: &str, seq: u64) -> Journal {
        Journal {
            version: 2,
            tag: tag.to_string(),
            seq,
            moves: Vec::new(),
            tables: BTreeMap::new(),
            publish: Vec::new(),
            deletes: Vec::new(),
        }
    }
}

/// The ticket index, under `_state/`.
pub const INDEX: &str = "index.json";
/// The incremental cursor, under `_state/`.
pub const CURSOR: &str = "cursor.json";
/// The commit journal, under `_state/`; present only while a commit is being applied.
pub const JOURNAL: &str = "journal.json";

/// The current instant in whole seconds: run ids, reports, cursors and audit records carry no
/// fractions.
pub fn now() -> DateTime<Utc> {
    DateTime::from_timestamp(Utc::now().timestamp(), 0).unwrap_or_else(Utc::now)
}

/// Loads the index; empty on the first run.
pub async fn load_index(storage: &Storage) -> Result<Index> {
    let path = storage.scope().state(INDEX);
    match storage.get(&path).await? {
        None => Ok(Index::default()),
        Some(bytes) => Index::from_json(&bytes, path.as_ref()),
    }
}

/// Loads the cursor; `None` before the first successful incremental run.
pub async fn load_cursor(storage: &Storage) -> Result<Option<Cursor>> {
    load_json(storage, CURSOR).await
}

/// Stores the cursor (one atomic put). Call only after every sink has committed.
pub async fn store_cursor(storage: &Storage, cursor: &Cursor) -> Result<()> {
    store_json(storage, CURSOR, cursor).await
}

/// Reads the JSON object `_state/<name>` of the storage's domain; `None` when it does not exist.
pub(crate) async fn load_json<T: serde::de::DeserializeOwned>(
    storage: &Storage,
    name: &str,
) -> Result<Option<T>> {
    let path = storage.scope().state(name);
    match storage.get(&path).await? {
        None => Ok(None),
        Some(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| Error::Corrupt {
                path: path.to_string(),
                detail: e.to_string(),
            }),
    }
}

/// Writes `value` as the JSON object `_state/<name>` of the storage's domain (one atomic put).
pub(crate) async fn store_json(
    storage: &Storage,
    name: &str,
    value: &impl Serialize,
) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(value).expect("state objects serialize");
    storage
        .put(&storage.scope().state(name), bytes.into())
        .await?;
    Ok(())
}

/// Writes the journal: the commit point of a changeset.
pub async fn write_journal(storage: &Storage, journal: &Journal) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(journal).expect("journal serializes");
    storage
        .put(&storage.scope().state(JOURNAL), bytes.into())
        .await?;
    Ok(())
}

/// How many objects a journal moves or deletes at once. On S3 a move is a copy and a delete,
/// tens of milliseconds each; one at a time, a checkpoint of a few hundred tickets would spend
/// most of its time waiting on round trips.
const PARALLEL_OBJECTS: usize = 16;

/// Applies a journal: moves the staged data files into place, commits each table's log, writes
/// the tables' versions ([`delta::SNAPSHOT`]), moves the staged documents and index into place,
/// then deletes what it lists, then removes itself and its staging area. Idempotent: a move whose
/// source is gone was done before, a table that holds the commit's `txn` is not committed again.
/// The objects of one step are handled concurrently, in no particular order; the steps are in
/// order.
pub async fn apply_journal(
    storage: &Storage,
    lake: &mut delta::Lake,
    journal: &Journal,
) -> Result<()> {
    move_all(storage, &journal.moves).await?;
    if !journal.tables.is_empty() {
        lake.commit_all(storage, &journal.tables, journal.seq)
            .await?;
        delta::store_versions(storage, &lake.versions(journal.seq)).await?;
    }
    move_all(storage, &journal.publish).await?;
    delete_all(
        storage,
        journal.deletes.iter().map(|p| Path::from(p.as_str())),
    )
    .await?;
    let scope = storage.scope();
    storage.delete(&scope.state(JOURNAL)).await?;
    let staging = scope.staging_root().join(journal.tag.as_str());
    delete_all(storage, storage.list(&staging).await?).await?;
    storage.remove_empty_dirs(&scope.staging_root()).await;
    Ok(())
}

async fn move_all(storage: &Storage, moves: &[(String, String)]) -> Result<()> {
    futures::stream::iter(moves)
        .map(|(from, to)| async move {
            storage
                .rename(&Path::from(from.as_str()), &Path::from(to.as_str()))
                .await
        })
        .buffer_unordered(PARALLEL_OBJECTS)
        .try_collect::<Vec<bool>>()
        .await?;
    Ok(())
}

/// Deletes objects concurrently.
async fn delete_all(storage: &Storage, paths: impl IntoIterator<Item = Path>) -> Result<()> {
    futures::stream::iter(paths)
        .map(|path| async move { storage.delete(&path).await })
        .buffer_unordered(PARALLEL_OBJECTS)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(())
}

/// Finishes the commit of a run that was killed after its commit point, and clears staging
/// areas of runs killed before it. Returns whether a journal was replayed.
pub async fn recover(storage: &Storage) -> Result<bool> {
    let scope = storage.scope();
    let path = scope.state(JOURNAL);
    let replayed = match storage.get(&path).await? {
        None => false,
        Some(bytes) => {
            let journal: Journal = serde_json::from_slice(&bytes).map_err(|e| Error::Corrupt {
                path: path.to_string(),
                detail: e.to_string(),
            })?;
            tracing::warn!(tag = %journal.tag, moves = journal.moves.len(), "finishing the commit of an interrupted run");
            let mut lake = delta::Lake::open(storage, delta::At::Latest).await?;
            apply_journal(storage, &mut lake, &journal).await?;
            true
        }
    };
    delete_all(storage, storage.list(&scope.staging_root()).await?).await?;
    storage.remove_empty_dirs(&scope.staging_root()).await;
    Ok(replayed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_round_trips() {
        let mut index = Index::default();
        index.insert(
            1,
            IndexEntry {
                updated_at: Some(1_700_000_000_000),
                location: Location::Placed {
                    account: "482913".into(),
                    year: 2025,
                },
                closed_at: Some(1_700_000_000_000),
                time_entries: Some(42),
            },
        );
        index.insert(
            2,
            IndexEntry {
                updated_at: None,
                location: Location::Rejected,
                closed_at: None,
                time_entries: None,
            },
        );
        let back = Index::from_json(&index.to_json(), "x").unwrap();
        assert_eq!(back, index);
        let recent = back.closed_since(DateTime::from_timestamp_millis(1_600_000_000_000).unwrap());
        assert_eq!(recent, vec![(1, Some(42))]);
        assert!(back.is_current(
            1,
            DateTime::from_timestamp_millis(1_700_000_000_000).unwrap()
        ));
        assert!(!back.is_current(
            1,
            DateTime::from_timestamp_millis(1_700_000_000_001).unwrap()
        ));
        assert!(!back.is_current(2, DateTime::from_timestamp_millis(0).unwrap()));
        let recent = back.closed_since(DateTime::from_timestamp_millis(1_600_000_000_000).unwrap());
        assert_eq!(recent, vec![(1, Some(42))]);
    }

    #[test]
    fn corrupt_index_is_a_clear_error() {
        let err = Index::from_json(b"{", "_state/index.json").unwrap_err();
        assert!(
            err.to_string().contains("_state/index.json is corrupt"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn journal_replay_is_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::local(dir.path()).unwrap();
        let staged = storage
            .scope()
            .staged("t1", &Path::from("tickets/a.parquet"));
        storage
            .put(&staged, bytes::Bytes::from_static(b"new"))
            .await
            .unwrap();
        storage
            .put(&Path::from("old/x.md"), bytes::Bytes::from_static(b"old"))
            .await
            .unwrap();
        let mut journal = Journal::new("t1", 1);
        journal.moves = vec![(staged.to_string(), "tickets/a.parquet".into())];
        journal.deletes = vec!["old/x.md".into()];
        write_journal(&storage, &journal).await.unwrap();
        assert!(recover(&storage).await.unwrap());
        // A second replay (as after a kill during the first) changes nothing.
        let mut lake = delta::Lake::open(&storage, delta::At::Latest)
            .await
            .unwrap();
        apply_journal(&storage, &mut lake, &journal).await.unwrap();
        assert!(!recover(&storage).await.unwrap());
        let all = storage.list(&Path::from("")).await.unwrap();
        assert_eq!(all, vec![Path::from("tickets/a.parquet")]);
    }
}
