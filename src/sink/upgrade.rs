//! The dataset format version (`_state/format.json`) and the one-time upgrade of datasets
//! written by an older release.
//!
//! Format 1 is the layout before `_state/format.json` existed; format 2 appended the analyst,
//! SLA and billing columns (issue 11) to `tickets`, `time_entries` and `conversations`; format
//! 3 appended the keys Codex emits for a note (`to_emails`, `updated_at`, `incoming`,
//! `support_email`, issue 20) to `notes`.
//!
//! Upgrading rewrites every partition file whose schema is not today's contract: the file is
//! decoded against today's schema ([`super::parquet::decode`]: columns added since are null) and
//! encoded again. The rewritten files go through the commit protocol in chunks: staged, then
//! moved by a journal, so a kill leaves every file whole (old or new) and the next run
//! finishes the journal ([`crate::state::recover`]) and goes on with the files that still have
//! the old schema. `format.json` is written last, by the journal of the last chunk: a dataset
//! says today's format only when every file conforms. Markdown and the state files do not change.
//!
//! A column that only became nullable (`tickets.department_id`, issue 18) is no new format:
//! the files written before hold values the contract still allows, every reader takes them as
//! the same column, and a partition rewrite writes today's schema.

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde::{Deserialize, Serialize};

use super::{parquet as pq, Error};
use crate::state::{self, Journal};
use crate::storage::{layout, Storage};
use crate::tables::Table;

/// The format this release writes.
pub const FORMAT: u32 = 3;

/// `_state/format.json`.
pub const FORMAT_FILE: &str = "format.json";

/// How many partition files one upgrade journal moves (a kill loses at most this much work).
pub const CHUNK_FILES: usize = 64;

/// How many files are decoded and encoded at once (each is held whole in memory).
const PARALLEL_FILES: usize = 2;

#[derive(Debug, Serialize, Deserialize)]
struct FormatFile {
    format: u32,
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

/// The dataset's format: `_state/format.json`, or format 1 when a dataset without it has data.
pub async fn format(storage: &Storage) -> Result<Format, Error> {
    let path = layout::state(FORMAT_FILE);
    if let Some(bytes) = storage.get(&path).await? {
        let file: FormatFile = serde_json::from_slice(&bytes).map_err(|e| {
            Error::State(state::Error::Corrupt {
                path: path.to_string(),
                detail: e.to_string(),
            })
        })?;
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

/// Every Parquet file of every table, in a stable order.
pub async fn parquet_files(storage: &Storage) -> Result<Vec<(Table, Path)>, Error> {
    let mut files = Vec::new();
    for table in Table::ALL {
        let mut paths: Vec<Path> = storage
            .list(&Path::from(table.name()))
            .await?
            .into_iter()
            .filter(|p| p.as_ref().ends_with(".parquet"))
            .collect();
        paths.sort();
        files.extend(paths.into_iter().map(|p| (table, p)));
    }
    Ok(files)
}

/// Marks the dataset as written in today's format (one atomic put).
pub async fn mark_current(storage: &Storage) -> Result<(), Error> {
    storage
        .put(&layout::state(FORMAT_FILE), format_bytes())
        .await?;
    Ok(())
}

fn format_bytes() -> Bytes {
    Bytes::from(
        serde_json::to_vec_pretty(&FormatFile { format: FORMAT }).expect("format serializes"),
    )
}

/// What one upgrade step did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Step {
    /// Partition files read in this chunk.
    pub files_checked: u64,
    /// Of those, the files rewritten (the others already conformed).
    pub files_rewritten: u64,
}

/// Upgrades one chunk of `files` through a journal staged under `tag`; with `last`, the same
/// journal also writes `format.json`. Files that already conform are left alone, so a rerun
/// after a kill redoes only what was not committed.
pub async fn upgrade_chunk(
    storage: &Storage,
    files: &[(Table, Path)],
    tag: &str,
    last: bool,
) -> Result<Step, Error> {
    let staged: Vec<Option<(Path, Path)>> = futures::stream::iter(files)
        .map(|(table, path)| async move {
            let Some(bytes) = storage.get(path).await? else {
                return Ok::<_, Error>(None);
            };
            let table = *table;
            let path_text = path.to_string();
            let rewritten =
                tokio::task::spawn_blocking(move || conform_file(table, bytes, &path_text))
                    .await
                    .map_err(Error::Task)??;
            let Some(bytes) = rewritten else {
                return Ok(None);
            };
            let staged = layout::staged(tag, path);
            storage.put(&staged, bytes).await?;
            Ok(Some((staged, path.clone())))
        })
        .buffered(PARALLEL_FILES)
        .try_collect()
        .await?;
    let mut journal = Journal::new(tag);
    for (from, to) in staged.into_iter().flatten() {
        journal.moves.push((from.to_string(), to.to_string()));
    }
    let step = Step {
        files_checked: files.len() as u64,
        files_rewritten: journal.moves.len() as u64,
    };
    if last {
        let target = layout::state(FORMAT_FILE);
        let staged = layout::staged(tag, &target);
        storage.put(&staged, format_bytes()).await?;
        journal.moves.push((staged.to_string(), target.to_string()));
    }
    if !journal.moves.is_empty() {
        state::write_journal(storage, &journal).await?;
        state::apply_journal(storage, &journal).await?;
    }
    Ok(step)
}

/// A partition file in today's schema, or `None` when it already has it.
fn conform_file(table: Table, bytes: Bytes, path: &str) -> Result<Option<Bytes>, Error> {
    let schema = table.schema();
    let current = ParquetRecordBatchReaderBuilder::try_new(bytes.clone())
        .map_err(|e| pq::Error::Read {
            path: path.to_string(),
            detail: e.to_string(),
        })?
        .schema()
        .clone();
    if current == schema {
        return Ok(None);
    }
    let batches = pq::decode(bytes, &schema, path)?;
    let merged = arrow::compute::concat_batches(&schema, &batches).map_err(|e| Error::Merge {
        path: path.to_string(),
        detail: e.to_string(),
    })?;
    Ok(Some(pq::encode(&merged, path)?))
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
            if conform_file(table, bytes, path.as_ref()).unwrap().is_some() {
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
        mark_current(&storage).await.unwrap();
        assert_eq!(format(&storage).await.unwrap(), Format::Current);
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
    async fn chunks_upgrade_what_is_left_and_the_last_one_writes_the_format() {
        let (_dir, storage) = fixture();
        let files = parquet_files(&storage).await.unwrap();
        let old = nonconforming(&storage).await;
        // tickets, conversations and time_entries changed; notes and rejects did not.
        assert!(old >= 3 && old < files.len(), "{old} of {}", files.len());

        // The first chunk alone (as when a run is killed after its commit).
        let first = upgrade_chunk(&storage, &files[..4], "t-upgrade-0", false)
            .await
            .unwrap();
        assert_eq!(first.files_checked, 4);
        assert_eq!(format(&storage).await.unwrap(), Format::Older(1));
        let left = nonconforming(&storage).await;
        assert_eq!(left, old - first.files_rewritten as usize);

        // Everything again: the upgraded files are skipped, the rest rewritten, format written.
        let all = upgrade_chunk(&storage, &files, "t-upgrade-1", true)
            .await
            .unwrap();
        assert_eq!(all.files_rewritten as usize, left);
        assert_eq!(nonconforming(&storage).await, 0);
        assert_eq!(format(&storage).await.unwrap(), Format::Current);
        assert!(storage
            .list(&layout::staging_root())
            .await
            .unwrap()
            .is_empty());
    }
}
