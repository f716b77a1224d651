//! The readers' side of the logs: one table's active files as of a version or an instant, and
//! only those of the partitions the reader asks for.
//!
//! A query needs a few partitions of a table whose log a year of nightly commits made long:
//! delta-rs builds the whole snapshot (every file, every statistic) before it answers anything.
//! This reads what the Delta protocol says a snapshot is, and no more:
//!
//! - the log is listed from the last checkpoint on (`_last_checkpoint` names it; S3 lists from
//!   there), so the commits before it are never listed or read. Time travel lists the whole log:
//!   it needs every commit's time;
//! - of the checkpoint, only the columns a file list needs (`add.path`, `add.partitionValues`,
//!   `add.size`, `add.deletionVector`, `txn`, `protocol`) are fetched and decoded: no statistics,
//!   no tombstones' details;
//! - the commits after it are fetched together and replayed in order, and a file of a partition
//!   the reader did not ask for is dropped as soon as it is seen;
//! - with the snapshot cache (see [`super::cache`]), the whole file list of the newest version
//!   the cache holds and the log vouches for replaces the checkpoint and the commits up to it:
//!   a query replays only the commits since the last query, and keeps its partitions after. A
//!   snapshot of the very version read is parsed for the partitions asked for only (it is kept
//!   in one segment per partition).
//!
//! [`changed_since`] answers which partitions a commit after an instant changed (compactions
//! left out), so `--changes-since` reads only the accounts that can differ.
//!
//! What this reader does not know (a v2 or multi-file checkpoint layout it cannot assemble,
//! reader features such as column mapping, a gap in the log) is [`Error::Unsupported`]: the
//! caller then reads the table with delta-rs instead. A file with a deletion vector is an
//! error: neither this reader nor polars would apply it, and its deleted rows would come back.

use std::collections::{BTreeMap, HashMap};

use arrow::array::{Array, AsArray, RecordBatch, StructArray};
use arrow::datatypes::Int64Type;
use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::ObjectMeta;
use parquet::arrow::{ParquetRecordBatchStreamBuilder, ProjectionMask};
use serde::Deserialize;

use super::cache::{Cache, Snapshot};
use super::{At, DataFile, Partition};
use crate::storage::layout::Scope;
use crate::storage::Storage;
use crate::tables::Table;

/// Which version of a table to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The newest commit.
    Latest,
    /// This version.
    Version(u64),
    /// The newest commit made at or before the instant (by its file's time, as delta-rs and the
    /// Delta readers judge it without in-commit timestamps).
    Instant(DateTime<Utc>),
}

/// Why a log was not read here.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Something this reader does not implement: read the table with delta-rs.
    #[error("{0}")]
    Unsupported(String),
    /// The log says something no reader may ignore, or is unreadable.
    #[error("{0}")]
    Invalid(String),
    /// Listing or fetching failed.
    #[error(transparent)]
    Storage(#[from] crate::storage::Error),
}

/// One table as a reader sees it at one version.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableView {
    /// The version read.
    pub version: u64,
    /// The active files of the partitions asked for, each partition's in path order.
    pub files: BTreeMap<Partition, Vec<DataFile>>,
    /// The last `txn` version of every `appId`.
    pub txns: HashMap<String, i64>,
}

/// The files of a log directory, by what the protocol names them.
#[derive(Debug, Default)]
struct Listing {
    /// Version → its commit file.
    commits: BTreeMap<u64, ObjectMeta>,
    /// Version → the parts of its classic checkpoint (one, or `n` numbered parts).
    checkpoints: BTreeMap<u64, Vec<(u32, u32, ObjectMeta)>>,
    /// Versions with a checkpoint this reader cannot read (v2, with a UUID in its name).
    foreign_checkpoints: Vec<u64>,
}

impl Listing {
    fn of(metas: Vec<ObjectMeta>) -> Listing {
        let mut out = Listing::default();
        for meta in metas {
            let Some(name) = meta.location.filename().map(str::to_string) else {
                continue;
            };
            let Some((version, rest)) = name.split_once('.') else {
                continue;
            };
            let Ok(version) = version.parse::<u64>() else {
                continue;
            };
            if version.to_string().len() > 20 || name.len() < 21 {
                continue;
            }
            let parts: Vec<&str> = rest.split('.').collect();
            match parts.as_slice() {
                ["json"] => {
                    out.commits.insert(version, meta);
                }
                ["checkpoint", "parquet"] => {
                    out.checkpoints
                        .entry(version)
                        .or_default()
                        .push((1, 1, meta));
                }
                ["checkpoint", part, of, "parquet"] => match (part.parse(), of.parse()) {
                    (Ok(part), Ok(of)) => {
                        out.checkpoints
                            .entry(version)
                            .or_default()
                            .push((part, of, meta));
                    }
                    _ => out.foreign_checkpoints.push(version),
                },
                ["checkpoint", _, "json" | "parquet"] => out.foreign_checkpoints.push(version),
                _ => {}
            }
        }
        out
    }

    /// The parts of the newest complete classic checkpoint at or below `version`.
    fn checkpoint_at_or_before(&self, version: u64) -> Option<(u64, Vec<ObjectMeta>)> {
        self.checkpoints
            .range(..=version)
            .rev()
            .find_map(|(&v, parts)| {
                let of = parts.first()?.1;
                let mut numbered: Vec<&(u32, u32, ObjectMeta)> =
                    parts.iter().filter(|p| p.1 == of).collect();
                numbered.sort_by_key(|p| p.0);
                numbered.dedup_by_key(|p| p.0);
                let complete = numbered.len() as u32 == of
                    && numbered
                        .iter()
                        .enumerate()
                        .all(|(i, p)| p.0 == i as u32 + 1);
                complete.then(|| (v, numbered.into_iter().map(|p| p.2.clone()).collect()))
            })
    }
}

#[derive(Deserialize)]
struct LastCheckpoint {
    version: u64,
}

/// One line of a commit file: the actions a file list needs; the rest is skipped unparsed.
#[derive(Deserialize)]
struct Line {
    add: Option<AddLine>,
    remove: Option<RemoveLine>,
    txn: Option<TxnLine>,
    protocol: Option<ProtocolLine>,
}

#[derive(Deserialize)]
struct AddLine {
    path: String,
    #[serde(rename = "partitionValues", default)]
    partition_values: HashMap<String, Option<String>>,
    size: i64,
    #[serde(rename = "deletionVector", default)]
    deletion_vector: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
struct RemoveLine {
    path: String,
}

#[derive(Deserialize)]
struct TxnLine {
    #[serde(rename = "appId")]
    app_id: String,
    version: i64,
}

#[derive(Deserialize)]
struct ProtocolLine {
    #[serde(rename = "minReaderVersion")]
    min_reader_version: i32,
    #[serde(rename = "readerFeatures", default)]
    reader_features: Option<Vec<String>>,
}

/// Reader features a reader of file lists and plain Parquet can honour.
const READABLE_READER_FEATURES: [&str; 4] = [
    "timestampNtz",
    "vacuumProtocolCheck",
    "v2Checkpoint",
    // Checked file by file: a file with a deletion vector is refused.
    "deletionVectors",
];

fn check_protocol(table: Table, reader: i32, features: &[String]) -> Result<(), Error> {
    match reader {
        1 => Ok(()),
        3 => match features
            .iter()
            .find(|f| !READABLE_READER_FEATURES.contains(&f.as_str()))
        {
            None => Ok(()),
            Some(f) => Err(Error::Unsupported(format!(
                "table {} needs the reader feature {f}",
                table.name()
            ))),
        },
        other => Err(Error::Unsupported(format!(
            "table {} needs reader version {other}",
            table.name()
        ))),
    }
}

/// Reads `table` at `target`, keeping the files of the partitions `keep` accepts. `None` when
/// the table has no log, or no commit at or before the instant. The file list comes from the
/// snapshot cache when it holds one the log vouches for (see [`super::cache`]).
pub async fn read_table(
    storage: &Storage,
    table: Table,
    target: Target,
    keep: &(dyn Fn(&Partition) -> bool + Send + Sync),
) -> Result<Option<TableView>, Error> {
    read_with(storage, table, target, keep, Cache::of(storage)).await
}

/// The commit files `commits`, fetched 32 at a time, in order (commits are small and many).
fn commit_bodies<'a>(
    storage: &'a Storage,
    commits: &'a [&'a ObjectMeta],
) -> impl futures::Stream<Item = Result<(Path, bytes::Bytes), crate::storage::Error>> + 'a {
    futures::stream::iter(commits.iter().map(move |meta| async move {
        storage
            .get_existing(&meta.location)
            .await
            .map(|b| (meta.location.clone(), b))
    }))
    .buffered(32)
}

async fn read_with(
    storage: &Storage,
    table: Table,
    target: Target,
    keep: &(dyn Fn(&Partition) -> bool + Send + Sync),
    cache: Option<Cache>,
) -> Result<Option<TableView>, Error> {
    let dir = Path::from(table.name()).join("_delta_log");
    // From the last checkpoint on when the newest version is wanted; the whole log otherwise.
    let hint = match target {
        Target::Latest => match storage.get(&dir.clone().join("_last_checkpoint")).await? {
            Some(bytes) => serde_json::from_slice::<LastCheckpoint>(&bytes)
                .ok()
                .map(|c| c.version),
            None => None,
        },
        _ => None,
    };
    let offset = hint.map(|v| dir.clone().join(format!("{v:020}")));
    let listing = Listing::of(storage.list_after(&dir, offset.as_ref()).await?);
    let newest = listing
        .commits
        .keys()
        .chain(listing.checkpoints.keys())
        .max()
        .copied();
    let version = match target {
        Target::Latest => newest,
        Target::Version(v) => Some(v),
        Target::Instant(t) => listing
            .commits
            .iter()
            .filter(|(_, meta)| meta.last_modified <= t)
            .map(|(v, _)| *v)
            .max(),
    };
    let Some(version) = version else {
        return Ok(None);
    };
    if newest.is_none_or(|n| n < version) {
        return Err(Error::Invalid(format!(
            "table {} has no version {version}",
            table.name()
        )));
    }
    if let Some(v) = listing.foreign_checkpoints.iter().find(|&&v| v <= version) {
        if listing
            .checkpoint_at_or_before(version)
            .is_none_or(|(c, _)| c < *v)
        {
            return Err(Error::Unsupported(format!(
                "table {} has a checkpoint layout this reader does not read (version {v})",
                table.name()
            )));
        }
    }
    // With a cache, the whole file list is built (and saved), then the partitions asked for
    // are kept; without one, files of other partitions are dropped as they are read.
    let keep_all = |_: &Partition| true;
    let read_keep: &(dyn Fn(&Partition) -> bool + Send + Sync) =
        if cache.is_some() { &keep_all } else { keep };
    let cached = cache
        .as_ref()
        .and_then(|c| c.best(table, version, &listing.commits, keep));
    let checkpoint = match cached {
        Some(_) => None,
        None => listing.checkpoint_at_or_before(version),
    };
    let first_commit = match (&cached, &checkpoint) {
        (Some(snapshot), _) => snapshot.version + 1,
        (None, Some((v, _))) => v + 1,
        (None, None) => 0,
    };
    let commits: Vec<&ObjectMeta> = (first_commit..=version)
        .map(|v| {
            listing.commits.get(&v).ok_or_else(|| {
                Error::Unsupported(format!(
                    "table {}: commit {v} is not in the log (cleaned up before a checkpoint this reader can use)",
                    table.name()
                ))
            })
        })
        .collect::<Result<_, _>>()?;

    let from_cache = cached.as_ref().map(|s| s.version);
    let Snapshot {
        mut files,
        mut txns,
        ..
    } = cached.unwrap_or_default();
    if let Some((_, parts)) = &checkpoint {
        let reads = parts
            .iter()
            .map(|meta| read_checkpoint_part(storage, table, meta, read_keep));
        for part in futures::future::try_join_all(reads).await? {
            files.extend(part.files.into_iter().map(|f| (f.0, f.1)));
            txns.extend(part.txns);
        }
    }
    // Commits are small and many: fetched together, replayed in order.
    let mut bodies = commit_bodies(storage, &commits);
    while let Some((path, body)) = bodies.try_next().await? {
        replay(table, &path, &body, read_keep, &mut files, &mut txns)?;
    }
    if let Some(cache) = &cache {
        tracing::debug!(
            table = table.name(),
            version,
            cached = ?from_cache,
            replayed = commits.len(),
            "file list read"
        );
        if from_cache != Some(version) {
            if let Some(meta) = listing.commits.get(&version) {
                let snapshot = Snapshot {
                    version,
                    files,
                    txns,
                    pruned: false,
                };
                cache.save(table, &snapshot, meta);
                (files, txns) = (snapshot.files, snapshot.txns);
            }
        }
        files.retain(|_, f| keep(&f.partition));
    }

    let mut by_partition: BTreeMap<Partition, Vec<DataFile>> = BTreeMap::new();
    for (_, file) in files {
        by_partition
            .entry(file.partition.clone())
            .or_default()
            .push(file);
    }
    for list in by_partition.values_mut() {
        list.sort_by(|a, b| a.path.cmp(&b.path));
    }
    Ok(Some(TableView {
        version,
        files: by_partition,
        txns,
    }))
}

/// The partitions of `table` whose rows a commit made after `instant` changed: those an `add` or
/// a `remove` with `dataChange` true (or not said) names, in every commit after the newest one
/// made at or before the instant (by its file's time, as [`Target::Instant`] judges it). A
/// compaction (`dataChange: false`) only rearranges rows and changes nothing here. `None` when
/// the log cannot show it: a commit after the instant not listed, a `remove` without its
/// partition values, no commit at or before the instant (every partition is new).
pub async fn changed_since(
    storage: &Storage,
    table: Table,
    instant: DateTime<Utc>,
) -> Result<Option<std::collections::BTreeSet<Partition>>, Error> {
    let dir = Path::from(table.name()).join("_delta_log");
    let listing = Listing::of(storage.list_after(&dir, None).await?);
    let Some(then) = listing
        .commits
        .iter()
        .filter(|(_, meta)| meta.last_modified <= instant)
        .map(|(v, _)| *v)
        .max()
    else {
        return Ok(None);
    };
    let newest = listing.commits.keys().max().copied().unwrap_or(then);
    let Some(commits) = (then + 1..=newest)
        .map(|v| listing.commits.get(&v))
        .collect::<Option<Vec<&ObjectMeta>>>()
    else {
        return Ok(None);
    };
    let mut bodies = commit_bodies(storage, &commits);
    let mut out = std::collections::BTreeSet::new();
    while let Some((path, body)) = bodies.try_next().await? {
        let text = std::str::from_utf8(&body)
            .map_err(|e| Error::Invalid(format!("{path}: not UTF-8: {e}")))?;
        for (number, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let line: ChangeLine = serde_json::from_str(line)
                .map_err(|e| Error::Invalid(format!("{path} line {}: {e}", number + 1)))?;
            for action in [line.add, line.remove].into_iter().flatten() {
                if action.data_change == Some(false) {
                    continue;
                }
                let Some(partition) = action
                    .partition_values
                    .as_ref()
                    .and_then(Partition::from_values)
                else {
                    return Ok(None);
                };
                out.insert(partition);
            }
        }
    }
    Ok(Some(out))
}

/// One line of a commit file, as [`changed_since`] reads it.
#[derive(Deserialize)]
struct ChangeLine {
    add: Option<ChangeAction>,
    remove: Option<ChangeAction>,
}

#[derive(Deserialize)]
struct ChangeAction {
    #[serde(rename = "partitionValues", default)]
    partition_values: Option<HashMap<String, Option<String>>>,
    #[serde(rename = "dataChange", default)]
    data_change: Option<bool>,
}

/// One commit's actions applied to the files and `txn`s read so far.
fn replay(
    table: Table,
    path: &Path,
    body: &[u8],
    keep: &(dyn Fn(&Partition) -> bool + Send + Sync),
    files: &mut HashMap<String, DataFile>,
    txns: &mut HashMap<String, i64>,
) -> Result<(), Error> {
    let text =
        std::str::from_utf8(body).map_err(|e| Error::Invalid(format!("{path}: not UTF-8: {e}")))?;
    for (number, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let line: Line = serde_json::from_str(line)
            .map_err(|e| Error::Invalid(format!("{path} line {}: {e}", number + 1)))?;
        if let Some(p) = line.protocol {
            check_protocol(
                table,
                p.min_reader_version,
                p.reader_features.as_deref().unwrap_or_default(),
            )?;
        }
        if let Some(t) = line.txn {
            txns.insert(t.app_id, t.version);
        }
        if let Some(r) = line.remove {
            files.remove(&r.path);
        }
        if let Some(add) = line.add {
            let Some(file) = data_file(table, &add.path, &add.partition_values, add.size)? else {
                continue;
            };
            if !keep(&file.partition) {
                files.remove(&add.path);
                continue;
            }
            if add.deletion_vector.is_some() {
                return Err(deletion_vector(table, &file.path));
            }
            files.insert(add.path, file);
        }
    }
    Ok(())
}

fn deletion_vector(table: Table, path: &str) -> Error {
    Error::Invalid(format!(
        "table {}: file {path} has a deletion vector (written by another engine); ticketsync reads whole files and would bring its deleted rows back",
        table.name()
    ))
}

/// The file an `add` names, or `None` for one without the partition values of this layout.
fn data_file(
    table: Table,
    raw_path: &str,
    values: &HashMap<String, Option<String>>,
    size: i64,
) -> Result<Option<DataFile>, Error> {
    if raw_path.contains("://") || raw_path.starts_with('/') {
        return Err(Error::Unsupported(format!(
            "table {}: file {raw_path} is outside the table",
            table.name()
        )));
    }
    let Some(partition) = Partition::from_values(values) else {
        return Err(Error::Invalid(format!(
            "table {}: file {raw_path} has no domain partition value",
            table.name()
        )));
    };
    // Paths in the log are URIs: `%20` is a space in the object's name.
    let path = percent_encoding::percent_decode_str(raw_path)
        .decode_utf8()
        .map_err(|e| Error::Invalid(format!("table {}: {raw_path}: {e}", table.name())))?
        .into_owned();
    Ok(Some(DataFile {
        path,
        partition,
        size: size.max(0) as u64,
        rows: None,
        stats: None,
    }))
}

struct CheckpointPart {
    /// Raw path → file.
    files: Vec<(String, DataFile)>,
    txns: HashMap<String, i64>,
}

/// The columns of a checkpoint a file list needs.
const CHECKPOINT_COLUMNS: [&str; 6] = [
    "add.path",
    "add.partitionValues",
    "add.size",
    "add.deletionVector.storageType",
    "txn",
    "protocol",
];

async fn read_checkpoint_part(
    storage: &Storage,
    table: Table,
    meta: &ObjectMeta,
    keep: &(dyn Fn(&Partition) -> bool + Send + Sync),
) -> Result<CheckpointPart, Error> {
    let invalid = |e: parquet::errors::ParquetError| {
        Error::Invalid(format!("checkpoint {}: {e}", meta.location))
    };
    let reader = storage.parquet_reader(&meta.location, meta.size);
    let builder = ParquetRecordBatchStreamBuilder::new(reader)
        .await
        .map_err(invalid)?;
    let mask = ProjectionMask::columns(builder.parquet_schema(), CHECKPOINT_COLUMNS);
    let mut stream = builder
        .with_projection(mask)
        .with_batch_size(64 * 1024)
        .build()
        .map_err(invalid)?;
    let mut out = CheckpointPart {
        files: Vec::new(),
        txns: HashMap::new(),
    };
    while let Some(batch) = stream.try_next().await.map_err(invalid)? {
        checkpoint_batch(table, &batch, keep, &mut out)?;
    }
    Ok(out)
}

fn struct_column<'a>(batch: &'a RecordBatch, name: &str) -> Option<&'a StructArray> {
    batch.column_by_name(name).and_then(|c| c.as_struct_opt())
}

fn checkpoint_batch(
    table: Table,
    batch: &RecordBatch,
    keep: &(dyn Fn(&Partition) -> bool + Send + Sync),
    out: &mut CheckpointPart,
) -> Result<(), Error> {
    let invalid = |what: &str| Error::Invalid(format!("table {}: checkpoint {what}", table.name()));
    if let Some(protocol) = struct_column(batch, "protocol") {
        let readers = protocol
            .column_by_name("minReaderVersion")
            .and_then(|c| c.as_primitive_opt::<arrow::datatypes::Int32Type>())
            .ok_or_else(|| invalid("protocol has no minReaderVersion"))?;
        let features = protocol
            .column_by_name("readerFeatures")
            .and_then(|c| c.as_list_opt::<i32>());
        for row in 0..batch.num_rows() {
            if !protocol.is_valid(row) {
                continue;
            }
            let names: Vec<String> = match features {
                Some(list) if list.is_valid(row) => list
                    .value(row)
                    .as_string_opt::<i32>()
                    .map(|s| s.iter().flatten().map(str::to_string).collect())
                    .unwrap_or_default(),
                _ => Vec::new(),
            };
            check_protocol(table, readers.value(row), &names)?;
        }
    }
    if let Some(txn) = struct_column(batch, "txn") {
        let apps = txn
            .column_by_name("appId")
            .and_then(|c| c.as_string_opt::<i32>())
            .ok_or_else(|| invalid("txn has no appId"))?;
        let versions = txn
            .column_by_name("version")
            .and_then(|c| c.as_primitive_opt::<Int64Type>())
            .ok_or_else(|| invalid("txn has no version"))?;
        for row in 0..batch.num_rows() {
            if txn.is_valid(row) && apps.is_valid(row) {
                out.txns
                    .insert(apps.value(row).to_string(), versions.value(row));
            }
        }
    }
    let Some(add) = struct_column(batch, "add") else {
        return Ok(());
    };
    let paths = add
        .column_by_name("path")
        .and_then(|c| c.as_string_opt::<i32>())
        .ok_or_else(|| invalid("add has no path"))?;
    let sizes = add
        .column_by_name("size")
        .and_then(|c| c.as_primitive_opt::<Int64Type>())
        .ok_or_else(|| invalid("add has no size"))?;
    let values = add
        .column_by_name("partitionValues")
        .and_then(|c| c.as_map_opt())
        .ok_or_else(|| invalid("add has no partitionValues"))?;
    let keys = values
        .keys()
        .as_string_opt::<i32>()
        .ok_or_else(|| invalid("partitionValues keys are not strings"))?;
    let vals = values
        .values()
        .as_string_opt::<i32>()
        .ok_or_else(|| invalid("partitionValues values are not strings"))?;
    let vectors = add
        .column_by_name("deletionVector")
        .and_then(|c| c.as_struct_opt());
    let offsets = values.value_offsets();
    let mut map = HashMap::new();
    for row in 0..batch.num_rows() {
        if !add.is_valid(row) || !paths.is_valid(row) {
            continue;
        }
        map.clear();
        for entry in offsets[row] as usize..offsets[row + 1] as usize {
            let value = vals.is_valid(entry).then(|| vals.value(entry).to_string());
            map.insert(keys.value(entry).to_string(), value);
        }
        let raw = paths.value(row);
        let Some(file) = data_file(table, raw, &map, sizes.value(row))? else {
            continue;
        };
        if !keep(&file.partition) {
            continue;
        }
        if vectors.is_some_and(|v| v.is_valid(row)) {
            return Err(deletion_vector(table, &file.path));
        }
        out.files.push((raw.to_string(), file));
    }
    Ok(())
}

/// Which partitions a reader wants.
pub type Keep<'a> = dyn Fn(&Partition) -> bool + Send + Sync + 'a;

/// The tables a reader asked for, each at the version [`At`] names, holding only the files of
/// the partitions it wants.
#[derive(Debug, Default)]
pub struct View {
    tables: BTreeMap<&'static str, BTreeMap<Partition, Vec<DataFile>>>,
    /// Whether every domain of every table read showed its latest files (no dataset commit
    /// under way); `false` when delta-rs read the tables.
    settled: bool,
}

impl View {
    /// Reads `tables` at `at`, keeping the partitions `keep` accepts. [`At::Committed`] shows
    /// each domain as its own last finished dataset commit left it, as [`super::Lake::open`]
    /// does. A table this reader cannot read is read by delta-rs instead.
    pub async fn open(
        storage: &Storage,
        at: &At,
        tables: &[Table],
        keep: &Keep<'_>,
    ) -> super::Result<View> {
        match View::read(storage, at, tables, keep).await {
            Err(Failure::Unsupported(reason)) => {
                tracing::debug!(%reason, "reading the tables with delta-rs");
                let lake = super::Lake::open(storage, at.clone()).await?;
                let mut view = View::default();
                for &table in tables {
                    let files = lake
                        .partitions(table)
                        .filter(|p| keep(p))
                        .map(|p| (p.clone(), lake.files(table, p).to_vec()))
                        .collect();
                    view.tables.insert(table.name(), files);
                }
                Ok(view)
            }
            Err(Failure::State(e)) => Err(e),
            Ok(view) => Ok(view),
        }
    }

    async fn read(
        storage: &Storage,
        at: &At,
        tables: &[Table],
        keep: &Keep<'_>,
    ) -> Result<View, Failure> {
        let target = match at {
            At::Instant(t) => Target::Instant(*t),
            At::Committed | At::Latest => Target::Latest,
        };
        let reads = tables.iter().map(|&table| async move {
            read_table(storage, table, target, keep)
                .await
                .map_err(|e| Failure::of(table, e))
        });
        let views = futures::future::try_join_all(reads).await?;
        let home = super::dataset_domain(storage).await?;
        let mut records: BTreeMap<String, Option<super::Versions>> = BTreeMap::new();
        let mut out = View {
            settled: true,
            ..View::default()
        };
        for (&table, view) in tables.iter().zip(views) {
            let Some(mut view) = view else {
                out.tables.insert(table.name(), BTreeMap::new());
                continue;
            };
            if *at == At::Committed {
                let domains: std::collections::BTreeSet<String> =
                    view.files.keys().map(|p| p.domain.clone()).collect();
                for domain in domains {
                    let (scope, record) =
                        super::domain_record(storage, &home, &domain, &mut records).await?;
                    let txn = view.txns.get(&super::app_id(&scope)).copied();
                    let shown = super::shown(record.as_ref(), txn, scope == Scope::Home, table);
                    if shown == super::Shown::Latest {
                        continue;
                    }
                    out.settled = false;
                    view.files.retain(|p, _| p.domain != domain);
                    if let super::Shown::Version(version) = shown {
                        let of_domain = |p: &Partition| p.domain == domain && keep(p);
                        let old = read_table(storage, table, Target::Version(version), &of_domain)
                            .await
                            .map_err(|e| Failure::of(table, e))?;
                        view.files.extend(old.unwrap_or_default().files);
                    }
                }
            }
            out.tables.insert(table.name(), view.files);
        }
        Ok(out)
    }

    /// Whether every domain showed the latest version of every table read: no dataset commit
    /// was under way, so the view is the tables' latest versions.
    pub fn settled(&self) -> bool {
        self.settled
    }

    /// Every partition of `table` the view holds files of, in order.
    pub fn partitions(&self, table: Table) -> impl Iterator<Item = &Partition> {
        self.tables
            .get(table.name())
            .into_iter()
            .flat_map(|t| t.keys())
    }

    /// The active files of one partition.
    pub fn files(&self, table: Table, partition: &Partition) -> &[DataFile] {
        self.tables
            .get(table.name())
            .and_then(|t| t.get(partition))
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }
}

/// Why [`View::read`] stopped.
enum Failure {
    Unsupported(String),
    State(super::Error),
}

impl Failure {
    fn of(table: Table, e: Error) -> Failure {
        match e {
            Error::Unsupported(reason) => Failure::Unsupported(reason),
            Error::Invalid(detail) => Failure::State(super::Error::Delta {
                table: table.name(),
                detail,
            }),
            Error::Storage(e) => Failure::State(super::Error::Storage(e)),
        }
    }
}

impl From<super::Error> for Failure {
    fn from(e: super::Error) -> Failure {
        Failure::State(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(name: &str) -> ObjectMeta {
        ObjectMeta {
            location: Path::from(format!("tickets/_delta_log/{name}")),
            last_modified: DateTime::UNIX_EPOCH,
            size: 1,
            e_tag: None,
            version: None,
        }
    }

    #[test]
    fn the_listing_knows_commits_and_checkpoints_by_their_names() {
        let listing = Listing::of(
            [
                "00000000000000000000.json",
                "00000000000000000001.json",
                "00000000000000000001.crc",
                "00000000000000000002.checkpoint.parquet",
                "00000000000000000002.json",
                "00000000000000000004.checkpoint.0000000001.0000000002.parquet",
                "00000000000000000004.json",
                "00000000000000000006.checkpoint.0000000001.0000000002.parquet",
                "00000000000000000006.checkpoint.0000000002.0000000002.parquet",
                "00000000000000000008.checkpoint.80a083e8-8a5a-4b66-a8b1-a8fb9d6e4c35.json",
                "_last_checkpoint",
                ".00000000000000000009.json.tmp",
            ]
            .map(meta)
            .to_vec(),
        );
        assert_eq!(
            listing.commits.keys().copied().collect::<Vec<_>>(),
            [0, 1, 2, 4]
        );
        assert_eq!(listing.foreign_checkpoints, [8]);
        // Version 4's checkpoint lacks a part: version 2's is the newest usable one below 6.
        assert_eq!(listing.checkpoint_at_or_before(5).map(|c| c.0), Some(2));
        assert_eq!(
            listing.checkpoint_at_or_before(7).map(|c| (c.0, c.1.len())),
            Some((6, 2))
        );
        assert_eq!(listing.checkpoint_at_or_before(1).map(|c| c.0), None);
    }

    #[test]
    fn reader_features_that_change_what_a_file_holds_are_not_read_here() {
        assert!(check_protocol(Table::Tickets, 1, &[]).is_ok());
        assert!(check_protocol(Table::Tickets, 3, &["timestampNtz".into()]).is_ok());
        for (reader, features) in [(2, vec![]), (3, vec!["columnMapping".to_string()])] {
            assert!(matches!(
                check_protocol(Table::Tickets, reader, &features),
                Err(Error::Unsupported(_))
            ));
        }
    }

    fn keep_all(_: &Partition) -> bool {
        true
    }

    fn files_of(view: &BTreeMap<Partition, Vec<DataFile>>) -> Vec<(String, Partition, u64)> {
        view.values()
            .flatten()
            .map(|f| (f.path.clone(), f.partition.clone(), f.size))
            .collect()
    }

    /// The oracle: delta-rs' snapshot of the same log.
    async fn delta_rs(
        storage: &Storage,
        version: u64,
    ) -> (BTreeMap<Partition, Vec<DataFile>>, Vec<Option<i64>>) {
        let table = super::super::builder(storage, Table::Tickets)
            .unwrap()
            .with_version(version)
            .load()
            .await
            .unwrap();
        let files = super::super::active_files(Table::Tickets, &table).unwrap();
        let mut txns = Vec::new();
        for app in ["ticketsync", "ticketsync/globex"] {
            txns.push(
                super::super::txn_version(Table::Tickets, &table, app)
                    .await
                    .unwrap(),
            );
        }
        (files, txns)
    }

    #[tokio::test]
    async fn the_partitions_changed_since_an_instant_leave_compactions_out() {
        let dir = tempfile::tempdir().unwrap();
        let home = Storage::local(dir.path()).unwrap();
        let file = |account: &str, name: &str| {
            let partition = Partition::placed(super::super::DEFAULT_DOMAIN, account, 2025);
            DataFile {
                path: format!("{}/part-{name}.parquet", partition.dir()),
                partition,
                size: 10,
                rows: Some(1),
                stats: None,
            }
        };
        let mut seq = 0;
        let mut commit = |adds: Vec<DataFile>, removes: Vec<DataFile>, data_change: bool| {
            seq += 1;
            let home = home.clone();
            async move {
                let mut lake = super::super::Lake::open(&home, At::Latest).await.unwrap();
                let change = BTreeMap::from([(
                    Table::Tickets.name().to_string(),
                    super::super::TableCommit {
                        adds,
                        removes,
                        data_change,
                    },
                )]);
                lake.commit_all(&home, &change, seq).await.unwrap();
                // Commit times are the files' times: the next one is later.
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        };
        let before = Utc::now();
        commit(vec![file("A", "a1"), file("B", "b1")], vec![], true).await;
        let instant = Utc::now();
        // A compaction of A, then a new file of C and B's file replaced.
        commit(vec![file("A", "a2")], vec![file("A", "a1")], false).await;
        commit(
            vec![file("C", "c1"), file("B", "b2")],
            vec![file("B", "b1")],
            true,
        )
        .await;
        let changed = changed_since(&home, Table::Tickets, instant)
            .await
            .unwrap()
            .unwrap();
        let accounts: Vec<&str> = changed
            .iter()
            .filter_map(|p| p.account.as_deref())
            .collect();
        assert_eq!(accounts, ["B", "C"]);
        let now = changed_since(&home, Table::Tickets, Utc::now())
            .await
            .unwrap()
            .unwrap();
        assert!(now.is_empty(), "nothing changed after the last commit");
        // Before the table existed every partition is new: the log cannot narrow it.
        let earlier = before - chrono::Duration::days(1);
        assert!(changed_since(&home, Table::Tickets, earlier)
            .await
            .unwrap()
            .is_none());
    }

    #[tokio::test]
    async fn the_reader_sees_what_delta_rs_sees_at_every_version() {
        use rand::{Rng, SeedableRng};
        let accounts = ["A", "B 2", "C"];
        for seed in 0..3u64 {
            let dir = tempfile::tempdir().unwrap();
            let home = Storage::local(dir.path()).unwrap();
            let globex = home.scoped(Scope::Domain("globex".into()));
            let mut rng = rand::rngs::SmallRng::seed_from_u64(seed);
            let mut live: Vec<DataFile> = Vec::new();
            let mut seqs = [0u64; 2];
            let mut checkpoints = 0;
            for step in 0..36 {
                let which = rng.gen_range(0..2);
                let (storage, domain) = if which == 0 {
                    (&home, super::super::DEFAULT_DOMAIN)
                } else {
                    (&globex, "globex")
                };
                let mut lake = super::super::Lake::open(storage, At::Latest).await.unwrap();
                let adds: Vec<DataFile> = (0..rng.gen_range(1..4))
                    .map(|i| {
                        let partition = Partition::placed(
                            domain,
                            accounts[rng.gen_range(0..accounts.len())],
                            2024 + rng.gen_range(0..2),
                        );
                        DataFile {
                            path: format!("{}/part-{seed}-{step}-{i}.parquet", partition.dir()),
                            partition,
                            size: rng.gen_range(1..1000),
                            rows: Some(1),
                            stats: None,
                        }
                    })
                    .collect();
                let (removes, kept): (Vec<DataFile>, Vec<DataFile>) = live
                    .drain(..)
                    .partition(|f| f.partition.domain == domain && rng.gen_bool(0.3));
                live = kept;
                live.extend(adds.iter().cloned());
                seqs[which] += 1;
                let change = BTreeMap::from([(
                    Table::Tickets.name().to_string(),
                    super::super::TableCommit {
                        adds,
                        removes,
                        data_change: true,
                    },
                )]);
                lake.commit_all(storage, &change, seqs[which])
                    .await
                    .unwrap();
                // Some commits are left "under way": their domain's record is not written.
                if rng.gen_bool(0.7) {
                    let lake = super::super::Lake::open(storage, At::Latest).await.unwrap();
                    super::super::store_versions(storage, &lake.versions(seqs[which]))
                        .await
                        .unwrap();
                }
                if rng.gen_bool(0.15) {
                    let table = super::super::builder(&home, Table::Tickets)
                        .unwrap()
                        .load()
                        .await
                        .unwrap();
                    deltalake_core::checkpoints::create_checkpoint(&table, None)
                        .await
                        .unwrap();
                    checkpoints += 1;
                }
            }
            assert!(checkpoints > 0, "seed {seed} made no checkpoint");
            let account_a = |p: &Partition| p.account.as_deref() == Some("A");
            let of_globex = |p: &Partition| p.domain == "globex" && p.year == Some(2025);
            let keeps: [&Keep<'_>; 3] = [&keep_all, &account_a, &of_globex];
            let latest = read_table(&home, Table::Tickets, Target::Latest, &keep_all)
                .await
                .unwrap()
                .unwrap();
            // Version 0 creates the table; each step is one commit.
            assert_eq!(latest.version, 36);
            // Without a cache, and with one filled as the versions are read (each read replays
            // the commits since the newest snapshot before it).
            let cached = tempfile::tempdir().unwrap();
            let caches = [None, Some(Cache::at(cached.path()))];
            for (version, cache) in
                (0..=latest.version).flat_map(|v| caches.iter().map(move |c| (v, c)))
            {
                let (all, txns) = delta_rs(&home, version).await;
                for keep in keeps {
                    let mut files = all.clone();
                    files.retain(|p, _| keep(p));
                    let files = files_of(&files);
                    let target = Target::Version(version);
                    let view = read_with(&home, Table::Tickets, target, keep, cache.clone())
                        .await
                        .unwrap()
                        .unwrap();
                    assert_eq!(
                        files_of(&view.files),
                        files,
                        "seed {seed} version {version}"
                    );
                    let ours: Vec<Option<i64>> = ["ticketsync", "ticketsync/globex"]
                        .iter()
                        .map(|app| view.txns.get(*app).copied())
                        .collect();
                    assert_eq!(ours, txns, "seed {seed} version {version}");
                }
            }
            // The committed view, each domain at its own last finished commit, as Lake shows it.
            let lake = super::super::Lake::open(&home, At::Committed)
                .await
                .unwrap();
            for keep in keeps {
                let view = View::open(&home, &At::Committed, &[Table::Tickets], keep)
                    .await
                    .unwrap();
                let expected: Vec<(String, Partition, u64)> = lake
                    .partitions(Table::Tickets)
                    .filter(|p| keep(p))
                    .flat_map(|p| lake.files(Table::Tickets, p))
                    .map(|f| (f.path.clone(), f.partition.clone(), f.size))
                    .collect();
                let got: Vec<(String, Partition, u64)> = view
                    .partitions(Table::Tickets)
                    .flat_map(|p| view.files(Table::Tickets, p))
                    .map(|f| (f.path.clone(), f.partition.clone(), f.size))
                    .collect();
                assert_eq!(got, expected, "seed {seed}");
            }
        }
    }
}
