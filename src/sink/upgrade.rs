//! The dataset format version (`_state/format.json`) and the one-time upgrade of datasets
//! written by an older release.
//!
//! Format 1 is the layout before `_state/format.json` existed; format 2 appended the analyst,
//! SLA and billing columns (issue 11) to `tickets`, `time_entries` and `conversations`; format
//! 3 appended the keys Codex emits for a note (`to_emails`, `updated_at`, `incoming`,
//! `support_email`, issue 20) to `notes`.
//!
//! Format 4 made every table a Delta table (`<table>/_delta_log/`) partitioned by `domain`,
//! `account` and `year`, and records the dataset's domain in `format.json`.
//!
//! Upgrading moves every partition file of the old Hive layout into its Delta table: the file is
//! decoded against today's schema ([`super::parquet::decode`]: columns added since are null),
//! encoded again under `domain=<the job's domain>/…`, added to the table's log and deleted from
//! the old place. The files go through the commit protocol in chunks: staged, then moved and
//! committed by a journal, so a kill leaves every file whole and in exactly one layout, and the
//! next run finishes the journal ([`crate::state::recover`]) and goes on with the files still in
//! the old layout. `format.json` is written last, by the journal of the last chunk: a dataset
//! says today's format only when every file is in its table. Markdown and the index do not
//! change.
//!
//! A column that only became nullable (`tickets.department_id`, issue 18) is no new format:
//! the files written before hold values the contract still allows, every reader takes them as
//! the same column, and a partition rewrite writes today's schema.

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde::{Deserialize, Serialize};

use arrow::array::RecordBatch;

use super::{parquet as pq, Error};
use crate::state::delta::{At, DataFile, Lake, Partition};
use crate::state::{self, Journal};
use crate::storage::{layout, Storage};
use crate::tables::Table;

/// The format this release writes.
pub const FORMAT: u32 = 4;

/// `_state/format.json`.
pub const FORMAT_FILE: &str = "format.json";

/// How many partition files one upgrade journal moves (a kill loses at most this much work).
pub const CHUNK_FILES: usize = 64;

/// How many files are decoded and encoded at once (each is held whole in memory).
const PARALLEL_FILES: usize = 2;

#[derive(Debug, Serialize, Deserialize)]
struct FormatFile {
    format: u32,
    /// The Freshservice domain the dataset holds (format 4 on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    domain: Option<String>,
}

/// What a dataset's format is, as far as this release is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// No data and no format file yet: the first run writes today's format.
    New,
    /// Today's format.
    Current,
    /// An older format: upgrade before writing.
    Older(u32),
    /// Written by a newer release: refuse to touch it.
    Newer(u32),
}

async fn format_file(storage: &Storage) -> Result<Option<FormatFile>, Error> {
    let path = layout::state(FORMAT_FILE);
    let Some(bytes) = storage.get(&path).await? else {
        return Ok(None);
    };
    serde_json::from_slice(&bytes).map(Some).map_err(|e| {
        Error::State(state::Error::Corrupt {
            path: path.to_string(),
            detail: e.to_string(),
        })
    })
}

/// The dataset's format: `_state/format.json`, or format 1 when a dataset without it has data.
pub async fn format(storage: &Storage) -> Result<Format, Error> {
    if let Some(file) = format_file(storage).await? {
        return Ok(match file.format {
            FORMAT => Format::Current,
            n if n > FORMAT => Format::Newer(n),
            n => Format::Older(n),
        });
    }
    let has_data = storage.exists(&layout::state(state::INDEX)).await?
        || !parquet_files(storage).await?.is_empty();
    Ok(if has_data {
        Format::Older(1)
    } else {
        Format::New
    })
}

/// The domain `format.json` records; `None` before format 4.
pub async fn domain(storage: &Storage) -> Result<Option<String>, Error> {
    Ok(format_file(storage).await?.and_then(|f| f.domain))
}

/// Every Parquet data file of every table, in a stable order (the Delta layout's and any
/// left in the Hive layout of format 3 and before; never the log's checkpoints).
pub async fn parquet_files(storage: &Storage) -> Result<Vec<(Table, Path)>, Error> {
    let mut files = Vec::new();
    for table in Table::ALL {
        let mut paths: Vec<Path> = storage
            .list(&Path::from(table.name()))
            .await?
            .into_iter()
            .filter(|p| {
                p.as_ref().ends_with(".parquet")
                    && p.parts().nth(1).is_some_and(|d| d.as_ref() != "_delta_log")
            })
            .collect();
        paths.sort();
        files.extend(paths.into_iter().map(|p| (table, p)));
    }
    Ok(files)
}

/// The data files still in the Hive layout of format 3 and before
/// (`<table>/account=…/year=…/part-0.parquet`, `rejects/part-0.parquet`), with the partition each
/// moves to.
pub async fn legacy_files(storage: &Storage) -> Result<Vec<(Table, Path)>, Error> {
    Ok(parquet_files(storage)
        .await?
        .into_iter()
        .filter(|(table, path)| legacy_partition(*table, path, "").is_some())
        .collect())
}

/// The partition of `domain` a legacy file moves to; `None` for a file of the Delta layout.
fn legacy_partition(table: Table, path: &Path, domain: &str) -> Option<Partition> {
    if table == Table::Rejects {
        let parts: Vec<_> = path.parts().collect();
        return (parts.len() == 2 && parts[1].as_ref() == crate::storage::PART_FILE)
            .then(|| Partition::rejects(domain));
    }
    let (account, year) = layout::parse_partition_file(table.name(), path)?;
    Some(Partition::placed(domain, &account, year))
}

/// Marks the dataset as written in today's format, holding `domain` (one atomic put).
pub async fn mark_current(storage: &Storage, domain: &str) -> Result<(), Error> {
    storage
        .put(&layout::state(FORMAT_FILE), format_bytes(domain))
        .await?;
    Ok(())
}

/// Creates `format.json` for a new dataset holding `domain`, unless it exists by now (another
/// domain's first run created it first): `false` then.
pub async fn create_current(storage: &Storage, domain: &str) -> Result<bool, Error> {
    Ok(storage
        .create(&layout::state(FORMAT_FILE), format_bytes(domain))
        .await?)
}

fn format_bytes(domain: &str) -> Bytes {
    Bytes::from(
        serde_json::to_vec_pretty(&FormatFile {
            format: FORMAT,
            domain: Some(domain.to_string()),
        })
        .expect("format serializes"),
    )
}

/// What one upgrade step did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Step {
    /// Partition files read in this chunk.
    pub files_checked: u64,
    /// Of those, the files rewritten into the Delta tables.
    pub files_rewritten: u64,
}

/// Upgrades one chunk of legacy `files` (see [`legacy_files`]) through a journal staged under
/// `tag`: each is read in today's schema, written as a data file of its Delta table under
/// `domain`, committed, and deleted from the old layout. With `last`, the same journal also
/// writes `format.json`. A rerun after a kill finds only the files not yet committed.
pub async fn upgrade_chunk(
    storage: &Storage,
    files: &[(Table, Path)],
    tag: &str,
    last: bool,
    domain: &str,
) -> Result<Step, Error> {
    let file_tag = super::file_tag(tag);
    let staged: Vec<Option<(Table, Path, Path, DataFile)>> = futures::stream::iter(files)
        .map(|(table, path)| {
            let file_tag = &file_tag;
            async move {
                let Some(partition) = legacy_partition(*table, path, domain) else {
                    return Ok::<_, Error>(None);
                };
                let Some(bytes) = storage.get(path).await? else {
                    return Ok(None);
                };
                let table = *table;
                let path_text = path.to_string();
                let (batch, encoded) = tokio::task::spawn_blocking(move || {
                    let batch = read_conformed(table, bytes, &path_text)?;
                    let encoded = pq::encode(&batch, &path_text)?;
                    Ok::<_, Error>((batch, encoded))
                })
                .await
                .map_err(Error::Task)??;
                let file = DataFile::new(&partition, file_tag, &batch, encoded.len() as u64);
                let staged = storage.scope().staged(tag, &file.object(table));
                storage.put(&staged, encoded).await?;
                Ok(Some((table, path.clone(), staged, file)))
            }
        })
        .buffered(PARALLEL_FILES)
        .try_collect()
        .await?;
    let mut lake = Lake::open(storage, At::Latest).await?;
    let mut journal = Journal::new(tag, lake.seq() + 1);
    for (table, old, staged, file) in staged.into_iter().flatten() {
        journal
            .moves
            .push((staged.to_string(), file.object(table).to_string()));
        journal.deletes.push(old.to_string());
        let change = journal.tables.entry(table.name().to_string()).or_default();
        change.adds.push(file);
    }
    let step = Step {
        files_checked: files.len() as u64,
        files_rewritten: journal.moves.len() as u64,
    };
    if last {
        let target = layout::state(FORMAT_FILE);
        let staged = storage.scope().staged(tag, &target);
        storage.put(&staged, format_bytes(domain)).await?;
        journal
            .publish
            .push((staged.to_string(), target.to_string()));
    }
    if !journal.moves.is_empty() || !journal.publish.is_empty() {
        state::write_journal(storage, &journal).await?;
        state::apply_journal(storage, &mut lake, &journal).await?;
    }
    Ok(step)
}

/// A data file's rows in today's schema (columns added since it was written are null).
fn read_conformed(table: Table, bytes: Bytes, path: &str) -> Result<RecordBatch, Error> {
    let schema = table.schema();
    let batches = pq::decode(bytes, &schema, path)?;
    arrow::compute::concat_batches(&schema, &batches).map_err(|e| Error::Merge {
        path: path.to_string(),
        detail: e.to_string(),
    })
}

/// Whether a data file has today's schema exactly.
pub fn conforms(bytes: Bytes, table: Table, path: &str) -> Result<bool, Error> {
    let current = ParquetRecordBatchReaderBuilder::try_new(bytes)
        .map_err(|e| pq::Error::Read {
            path: path.to_string(),
            detail: e.to_string(),
        })?
        .schema()
        .clone();
    Ok(current == table.schema())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture() -> (tempfile::TempDir, Storage) {
        let dir = tempfile::tempdir().unwrap();
        let src =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/dataset-v1");
        copy_dir(&src, dir.path());
        let storage = Storage::local(dir.path()).unwrap();
        (dir, storage)
    }

    fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            let target = to.join(entry.file_name());
            if entry.file_type().unwrap().is_dir() {
                copy_dir(&entry.path(), &target);
            } else {
                std::fs::copy(entry.path(), target).unwrap();
            }
        }
    }

    async fn nonconforming(storage: &Storage) -> usize {
        let mut n = 0;
        for (table, path) in parquet_files(storage).await.unwrap() {
            let bytes = storage.get(&path).await.unwrap().unwrap();
            if !conforms(bytes, table, path.as_ref()).unwrap() {
                n += 1;
            }
        }
        n
    }

    #[tokio::test]
    async fn formats_are_told_apart() {
        let empty = tempfile::tempdir().unwrap();
        let storage = Storage::local(empty.path()).unwrap();
        assert_eq!(format(&storage).await.unwrap(), Format::New);
        mark_current(&storage, "acme").await.unwrap();
        assert_eq!(format(&storage).await.unwrap(), Format::Current);
        assert_eq!(domain(&storage).await.unwrap().as_deref(), Some("acme"));
        storage
            .put(
                &layout::state(FORMAT_FILE),
                Bytes::from_static(b"{\"format\": 9}"),
            )
            .await
            .unwrap();
        assert_eq!(format(&storage).await.unwrap(), Format::Newer(9));
        storage
            .put(&layout::state(FORMAT_FILE), Bytes::from_static(b"{"))
            .await
            .unwrap();
        let err = format(&storage).await.unwrap_err().to_string();
        assert!(err.contains("_state/format.json is corrupt"), "{err}");

        let (_dir, old) = fixture();
        assert_eq!(format(&old).await.unwrap(), Format::Older(1));
    }

    #[tokio::test]
    async fn chunks_move_what_is_left_into_the_tables_and_the_last_one_writes_the_format() {
        let (_dir, storage) = fixture();
        let files = legacy_files(&storage).await.unwrap();
        assert_eq!(files, parquet_files(&storage).await.unwrap());
        // tickets, conversations and time_entries changed; notes and rejects did not.
        let old = nonconforming(&storage).await;
        assert!(old >= 3 && old < files.len(), "{old} of {}", files.len());

        // The first chunk alone (as when a run is killed after its commit).
        let first = upgrade_chunk(&storage, &files[..4], "t-upgrade-0", false, "acme")
            .await
            .unwrap();
        assert_eq!((first.files_checked, first.files_rewritten), (4, 4));
        assert_eq!(format(&storage).await.unwrap(), Format::Older(1));
        let left = legacy_files(&storage).await.unwrap();
        assert_eq!(left.len(), files.len() - 4);
        let lake = Lake::open(&storage, At::Latest).await.unwrap();
        let in_tables: usize = Table::ALL.iter().map(|t| lake.all_files(*t).count()).sum();
        assert_eq!(in_tables, 4);

        // Everything again: the moved files are gone from the old layout, the rest move.
        let all = upgrade_chunk(&storage, &files, "t-upgrade-1", true, "acme")
            .await
            .unwrap();
        assert_eq!(all.files_rewritten as usize, left.len());
        assert!(legacy_files(&storage).await.unwrap().is_empty());
        assert_eq!(nonconforming(&storage).await, 0);
        assert_eq!(format(&storage).await.unwrap(), Format::Current);
        let lake = Lake::open(&storage, At::Latest).await.unwrap();
        let in_tables: usize = Table::ALL.iter().map(|t| lake.all_files(*t).count()).sum();
        assert_eq!(in_tables, files.len());
        assert!(lake
            .all_files(Table::Tickets)
            .all(|f| f.path.starts_with("domain=acme/account=")));
        assert!(storage
            .list(&storage.scope().staging_root())
            .await
            .unwrap()
            .is_empty());
    }
}
