//! Checkpoints: what a run fetched and has not yet committed to the tables, durable under
//! `_pending/<tag>/`.
//!
//! A checkpoint ([`write`]) writes, for each table, one Parquet file of its new rows grouped by
//! partition (`_pending/<tag>/<table>.parquet`), the tickets' documents
//! (`_pending/<tag>/markdown/…`), then its manifest (`_pending/<tag>/segment.json`): the
//! checkpoint's commit point. The manifest lists every ticket the checkpoint touched, where it
//! was before and its index entry after, so that a table commit (or, after a kill, the next
//! run's [`super::recover`]) can fold any number of checkpoints into the tables at once, each
//! partition written once. A checkpoint directory without a manifest is a checkpoint killed
//! half-way: nothing refers to it, and recovery deletes it.

use std::collections::{BTreeMap, BTreeSet};

use arrow::array::RecordBatch;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use serde::{Deserialize, Serialize};

use super::{markdown, parquet, Changeset, Error};
use crate::state::delta::Partition;
use crate::state::{Index, IndexEntry, Location};
use crate::storage::layout::Scope;
use crate::storage::Storage;
use crate::tables::{self, Table};

/// The manifest of a checkpoint, in its directory.
pub const MANIFEST: &str = "segment.json";

/// One ticket a checkpoint (or a commit) touches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Touched {
    /// The ticket.
    pub id: i64,
    /// Where its rows were before (the index as the checkpoint found it); `None`: nowhere.
    pub was: Option<Location>,
    /// Its index entry after; `None`: it left the dataset.
    pub entry: Option<IndexEntry>,
}

/// The rows of one partition inside a checkpoint's file of a table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Slice {
    /// The partition the rows go to.
    pub partition: Partition,
    /// First row in the file.
    pub offset: usize,
    /// Number of rows.
    pub rows: usize,
}

/// A checkpoint's file of one table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowsFile {
    /// Object path, relative to the dataset root.
    pub path: String,
    /// Its rows in memory, decoded (bytes): what reading it costs.
    pub memory: u64,
    /// Its rows by partition, in file order.
    pub slices: Vec<Slice>,
}

/// A ticket's document as a checkpoint keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Doc {
    /// The ticket.
    pub ticket_id: i64,
    /// Where the checkpoint keeps it.
    pub staged: String,
    /// Where it is published.
    pub target: String,
}

/// The manifest of one checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Segment {
    /// Format of the manifest.
    pub version: u32,
    /// The checkpoint's tag (its directory under `_pending/`); checkpoints apply in tag order.
    pub tag: String,
    /// Every ticket it touched, by id.
    pub tickets: Vec<Touched>,
    /// Its row files, by table name.
    pub files: BTreeMap<String, RowsFile>,
    /// Its documents.
    pub docs: Vec<Doc>,
}

impl Segment {
    /// The manifest's object path.
    pub fn manifest(&self, scope: &Scope) -> Path {
        scope.pending(&self.tag, &Path::from(MANIFEST))
    }
}

/// What `changeset` does to `index`, ticket by ticket, without changing it: removals first,
/// then rejects, then placed tickets (a later one wins).
pub fn plan(index: &Index, changeset: &Changeset) -> Vec<Touched> {
    let mut after: BTreeMap<i64, Option<IndexEntry>> = BTreeMap::new();
    for (id, _) in &changeset.removed {
        after.insert(*id, None);
    }
    for r in &changeset.rejected {
        after.insert(
            r.ticket_id,
            Some(IndexEntry {
                updated_at: r.updated_at.map(|t| t.timestamp_millis()),
                location: Location::Rejected,
                closed_at: None,
                time_entries: None,
            }),
        );
    }
    for p in &changeset.placed {
        after.insert(
            p.ticket.ticket_id,
            Some(IndexEntry {
                updated_at: Some(p.ticket.last_updated_at.timestamp_millis()),
                location: Location::Placed {
                    account: p.account.clone(),
                    year: p.year,
                },
                closed_at: Some(p.ticket.closed_at.timestamp_millis()),
                time_entries: Some(p.time_entries_fingerprint),
            }),
        );
    }
    after
        .into_iter()
        .map(|(id, entry)| Touched {
            id,
            was: index.get(id).map(|e| e.location.clone()),
            entry,
        })
        .collect()
}

/// Applies planned changes to `index`.
pub fn apply(index: &mut Index, touched: &[Touched]) {
    for t in touched {
        match &t.entry {
            Some(entry) => index.insert(t.id, entry.clone()),
            None => {
                index.remove(t.id);
            }
        }
    }
}

/// Writes `changeset` as the checkpoint `tag` of a dataset of `domain` (see the module docs) and
/// returns its manifest; `index` is not changed (apply the manifest's tickets once it is
/// written).
pub async fn write(
    storage: &Storage,
    domain: &str,
    index: &Index,
    changeset: &Changeset,
    tag: &str,
) -> Result<Segment, Error> {
    let tickets = plan(index, changeset);
    let mut by_partition: BTreeMap<Partition, Vec<&crate::normalize::Placed>> = BTreeMap::new();
    for p in &changeset.placed {
        by_partition
            .entry(Partition::placed(domain, &p.account, p.year))
            .or_default()
            .push(p);
    }
    let mut batches: Vec<(Table, Vec<(Partition, RecordBatch)>)> = Table::PARTITIONED
        .iter()
        .map(|table| {
            let parts = by_partition
                .iter()
                .map(|(partition, rows)| (partition.clone(), tables::placed_batch(*table, rows)))
                .filter(|(_, b)| b.num_rows() > 0)
                .collect();
            (*table, parts)
        })
        .collect();
    if !changeset.rejected.is_empty() {
        let rows: Vec<_> = changeset.rejected.iter().collect();
        batches.push((
            Table::Rejects,
            vec![(Partition::rejects(domain), tables::rejects_batch(&rows))],
        ));
    }
    let mut files = BTreeMap::new();
    for (table, parts) in batches {
        if parts.is_empty() {
            continue;
        }
        let path = storage
            .scope()
            .pending(tag, &Path::from(format!("{}.parquet", table.name())));
        let mut slices = Vec::with_capacity(parts.len());
        let mut offset = 0;
        for (partition, batch) in &parts {
            slices.push(Slice {
                partition: partition.clone(),
                offset,
                rows: batch.num_rows(),
            });
            offset += batch.num_rows();
        }
        let label = path.to_string();
        let (bytes, memory) = tokio::task::spawn_blocking(move || -> Result<_, Error> {
            let only: Vec<RecordBatch> = parts.into_iter().map(|(_, b)| b).collect();
            let joined = arrow::compute::concat_batches(&table.schema(), &only).map_err(|e| {
                Error::Merge {
                    path: label.clone(),
                    detail: e.to_string(),
                }
            })?;
            let memory = joined.get_array_memory_size() as u64;
            Ok((parquet::encode(&joined, &label)?, memory))
        })
        .await
        .map_err(Error::Task)??;
        storage.put(&path, bytes).await?;
        files.insert(
            table.name().to_string(),
            RowsFile {
                path: path.to_string(),
                memory,
                slices,
            },
        );
    }
    let docs: Vec<Doc> = futures::stream::iter(changeset.placed.iter())
        .map(|p| async move {
            let target = markdown::path_of(storage.scope(), p);
            let staged = storage.pending(tag, &target);
            if !changeset.written_at(p, &staged) {
                storage
                    .put(&staged, Bytes::from(p.markdown.clone()))
                    .await?;
            }
            Ok::<_, Error>(Doc {
                ticket_id: p.ticket.ticket_id,
                staged: staged.to_string(),
                target: target.to_string(),
            })
        })
        .buffer_unordered(16)
        .try_collect()
        .await?;
    let segment = Segment {
        version: 1,
        tag: tag.to_string(),
        tickets,
        files,
        docs,
    };
    let body = serde_json::to_vec(&segment).expect("a manifest serializes");
    storage
        .put(&segment.manifest(storage.scope()), body.into())
        .await?;
    Ok(segment)
}

/// The rows `file` holds for each of `partitions`, each partition's rows as one batch of its
/// own (not a view of the whole file, which is dropped).
pub async fn read(
    storage: &Storage,
    table: Table,
    file: &RowsFile,
    partitions: &BTreeSet<Partition>,
) -> Result<Vec<(Partition, RecordBatch)>, Error> {
    let wanted: Vec<Slice> = file
        .slices
        .iter()
        .filter(|s| partitions.contains(&s.partition))
        .cloned()
        .collect();
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    let path = Path::from(file.path.as_str());
    let bytes = storage.get_existing(&path).await?;
    let label = file.path.clone();
    tokio::task::spawn_blocking(move || {
        let merge = |e: arrow::error::ArrowError| Error::Merge {
            path: label.clone(),
            detail: e.to_string(),
        };
        let schema = table.schema();
        let batches = parquet::decode(bytes, &schema, &label)?;
        let whole = arrow::compute::concat_batches(&schema, &batches).map_err(merge)?;
        drop(batches);
        let mut out = Vec::with_capacity(wanted.len());
        for s in wanted {
            if s.offset + s.rows > whole.num_rows() {
                return Err(Error::Merge {
                    path: label.clone(),
                    detail: format!(
                        "the manifest's rows {}..{} are past the file's {} rows",
                        s.offset,
                        s.offset + s.rows,
                        whole.num_rows()
                    ),
                });
            }
            // A copy (`take` builds new buffers; a slice, or a concat of one slice, would keep
            // the whole file's buffers alive for as long as the partition's rows live).
            let rows = arrow::array::UInt32Array::from_iter_values(
                (s.offset..s.offset + s.rows).map(|r| r as u32),
            );
            let own = arrow::compute::take_record_batch(&whole, &rows).map_err(merge)?;
            out.push((s.partition, own));
        }
        Ok(out)
    })
    .await
    .map_err(Error::Task)?
}

/// Every checkpoint under `_pending/` with a manifest, in tag order, and the objects of
/// checkpoints without one (killed before their commit point).
pub async fn load(storage: &Storage) -> Result<(Vec<Segment>, Vec<Path>), Error> {
    let root = storage.scope().pending_root();
    let all = storage.list(&root).await?;
    // Paths relative to the root, which is deeper than `_pending/` outside the home domain.
    let rel = |p: &Path| -> Vec<String> {
        p.prefix_match(&root)
            .map(|parts| parts.map(|part| part.as_ref().to_string()).collect())
            .unwrap_or_default()
    };
    let tag_of = |p: &Path| rel(p).into_iter().next();
    let mut tags: BTreeSet<String> = BTreeSet::new();
    for p in &all {
        if let [tag, name] = rel(p).as_slice() {
            if name == MANIFEST {
                tags.insert(tag.clone());
            }
        }
    }
    let mut segments = Vec::with_capacity(tags.len());
    for tag in &tags {
        let path = storage.scope().pending(tag, &Path::from(MANIFEST));
        let bytes = storage.get_existing(&path).await?;
        let segment: Segment =
            serde_json::from_slice(&bytes).map_err(|e| crate::state::Error::Corrupt {
                path: path.to_string(),
                detail: e.to_string(),
            })?;
        segments.push(segment);
    }
    let orphans = all
        .into_iter()
        .filter(|p| tag_of(p).is_none_or(|t| !tags.contains(&t)))
        .collect();
    Ok((segments, orphans))
}

/// Every object of a checkpoint (its manifest among them).
pub async fn objects(storage: &Storage, tag: &str) -> Result<Vec<Path>, Error> {
    Ok(storage
        .list(&storage.scope().pending_root().join(tag))
        .await?)
}
