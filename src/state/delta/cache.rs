//! The readers' snapshot cache: a table's whole file list as of one version, kept on the
//! reader's machine, so that the next reader replays only the commits made since instead of
//! the last checkpoint and every commit after it.
//!
//! delta-rs checkpoints every 100 commits. Between two checkpoints a reader replays every
//! commit since the last one, and a nightly commit of a year-old dataset adds hundreds of
//! files with their statistics (a 100-commit tail of the tickets log is ~70 MB of JSON):
//! without a cache, opening one account's partitions costs what the whole log costs. With
//! it, a query reads its snapshot (the file list, a few hundred bytes per file), replays the
//! commits since the snapshot's version (none, or last night's), and keeps the partitions it
//! needs; the first query after a new version saves the new snapshot.
//!
//! A snapshot is trusted only as far as the log says it may be: it names its version and that
//! version's commit file (size, modification time, entity tag), and is used only when the log
//! lists that very file and every commit after it up to the version read. A table rewritten
//! from scratch, a snapshot cut short or of another format is read around and replaced. The
//! cache holds file lists only (paths, partitions, sizes, `txn` versions), never rows.
//!
//! Where: `$TICKETSYNC_CACHE_DIR`, else `$XDG_CACHE_HOME/ticketsync`, else
//! `~/.cache/ticketsync`; `TICKETSYNC_CACHE_DIR=off` turns it off. One directory per dataset
//! (named by a hash of its location), one per table, the newest [`KEEP`] versions each.

use std::collections::HashMap;
use std::path::PathBuf;

use object_store::ObjectMeta;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::DataFile;
use crate::storage::Storage;
use crate::tables::Table;

/// Snapshots kept per table.
const KEEP: usize = 4;

/// The format of a snapshot file; another is ignored.
const FORMAT: u32 = 1;

/// A table's active files and `txn` versions as of one version.
#[derive(Debug, Default)]
pub(super) struct Snapshot {
    pub(super) version: u64,
    /// Raw path (as the log writes it) → file.
    pub(super) files: HashMap<String, DataFile>,
    pub(super) txns: HashMap<String, i64>,
}

/// Which commit file a snapshot was taken at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct CommitId {
    size: u64,
    last_modified_ms: i64,
    e_tag: Option<String>,
}

impl CommitId {
    fn of(meta: &ObjectMeta) -> CommitId {
        CommitId {
            size: meta.size,
            last_modified_ms: meta.last_modified.timestamp_millis(),
            e_tag: meta.e_tag.clone(),
        }
    }
}

#[derive(Serialize, Deserialize)]
struct Stored {
    format: u32,
    table: String,
    version: u64,
    commit: CommitId,
    files: Vec<(String, DataFile)>,
    txns: HashMap<String, i64>,
}

/// The cache of one dataset.
#[derive(Debug, Clone)]
pub(super) struct Cache {
    dir: PathBuf,
}

impl Cache {
    /// The cache of the dataset `storage` opens; `None` when it is off, when no cache directory
    /// is known, or for a store without an address (in memory).
    pub(super) fn of(storage: &Storage) -> Option<Cache> {
        let location = storage.external_location(&object_store::path::Path::from(""))?;
        let base = match std::env::var_os("TICKETSYNC_CACHE_DIR") {
            Some(dir) if dir == "off" || dir.is_empty() => return None,
            Some(dir) => PathBuf::from(dir),
            None => match std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
                Some(dir) => PathBuf::from(dir).join("ticketsync"),
                None => PathBuf::from(std::env::var_os("HOME")?).join(".cache/ticketsync"),
            },
        };
        // The location may name a bucket and a prefix: a hash of it, never the text, names the
        // directory.
        let key = hex::encode(&Sha256::digest(location.as_bytes())[..12]);
        Some(Cache {
            dir: base.join("snapshots").join(key),
        })
    }

    /// A cache in `dir` (tests).
    #[cfg(test)]
    pub(super) fn at(dir: &std::path::Path) -> Cache {
        Cache {
            dir: dir.to_path_buf(),
        }
    }

    fn table_dir(&self, table: Table) -> PathBuf {
        self.dir.join(table.name())
    }

    /// The newest snapshot of `table` at or before `version` that the log vouches for: its
    /// commit file is `commits[its version]`, and every commit after it up to `version` is
    /// listed. `None` when there is none.
    pub(super) fn best(
        &self,
        table: Table,
        version: u64,
        commits: &std::collections::BTreeMap<u64, ObjectMeta>,
    ) -> Option<Snapshot> {
        let mut versions: Vec<u64> = self
            .versions(table)
            .ok()?
            .into_iter()
            .filter(|&v| v <= version)
            .collect();
        versions.sort_unstable_by(|a, b| b.cmp(a));
        versions.into_iter().find_map(|v| {
            let meta = commits.get(&v)?;
            if !(v + 1..=version).all(|c| commits.contains_key(&c)) {
                return None;
            }
            let bytes = std::fs::read(self.file(table, v)).ok()?;
            let stored: Stored = serde_json::from_slice(&bytes).ok()?;
            let usable = stored.format == FORMAT
                && stored.table == table.name()
                && stored.version == v
                && stored.commit == CommitId::of(meta);
            if !usable {
                tracing::debug!(
                    table = table.name(),
                    version = v,
                    "a cached snapshot the log does not vouch for; read around"
                );
                return None;
            }
            Some(Snapshot {
                version: v,
                files: stored.files.into_iter().collect(),
                txns: stored.txns,
            })
        })
    }

    /// The versions of `table` the cache holds snapshots of (`<version>.json`).
    fn versions(&self, table: Table) -> std::io::Result<Vec<u64>> {
        Ok(std::fs::read_dir(self.table_dir(table))?
            .filter_map(|e| {
                e.ok()?
                    .file_name()
                    .to_str()?
                    .strip_suffix(".json")?
                    .parse()
                    .ok()
            })
            .collect())
    }

    fn file(&self, table: Table, version: u64) -> PathBuf {
        self.table_dir(table).join(format!("{version:020}.json"))
    }

    /// Saves `snapshot`, taken at the commit file `meta`, and drops all but the newest [`KEEP`]
    /// snapshots of the table. Best effort: a cache that cannot be written only costs the next
    /// reader the replay.
    pub(super) fn save(&self, table: Table, snapshot: &Snapshot, meta: &ObjectMeta) {
        if let Err(e) = self.try_save(table, snapshot, meta) {
            tracing::debug!(table = table.name(), error = %e, "the snapshot cache was not written");
        }
    }

    fn try_save(
        &self,
        table: Table,
        snapshot: &Snapshot,
        meta: &ObjectMeta,
    ) -> std::io::Result<()> {
        let dir = self.table_dir(table);
        std::fs::create_dir_all(&dir)?;
        let mut files: Vec<(String, DataFile)> = snapshot
            .files
            .iter()
            .map(|(raw, f)| (raw.clone(), f.clone()))
            .collect();
        files.sort_by(|a, b| (&a.1.partition, &a.0).cmp(&(&b.1.partition, &b.0)));
        let stored = Stored {
            format: FORMAT,
            table: table.name().to_string(),
            version: snapshot.version,
            commit: CommitId::of(meta),
            files,
            txns: snapshot.txns.clone(),
        };
        let bytes = serde_json::to_vec(&stored).map_err(std::io::Error::other)?;
        // Written aside and renamed: a reader sees a whole snapshot or none.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let tmp = dir.join(format!(
            ".{:020}-{}-{nanos}.tmp",
            snapshot.version,
            std::process::id()
        ));
        std::fs::write(&tmp, bytes)?;
        if let Err(e) = std::fs::rename(&tmp, self.file(table, snapshot.version)) {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        let mut versions = self.versions(table)?;
        versions.sort_unstable_by(|a, b| b.cmp(a));
        for old in versions.into_iter().skip(KEEP) {
            let _ = std::fs::remove_file(self.file(table, old));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::state::delta::Partition;

    fn meta(version: u64, size: u64) -> ObjectMeta {
        ObjectMeta {
            location: object_store::path::Path::from(format!(
                "tickets/_delta_log/{version:020}.json"
            )),
            last_modified: chrono::DateTime::from_timestamp(1_700_000_000 + version as i64, 0)
                .unwrap(),
            size,
            e_tag: None,
            version: None,
        }
    }

    fn snapshot(version: u64, paths: &[&str]) -> Snapshot {
        let files = paths
            .iter()
            .map(|p| {
                let file = DataFile {
                    path: p.to_string(),
                    partition: Partition {
                        domain: "acme".into(),
                        account: Some("100".into()),
                        year: Some(2026),
                    },
                    size: 10,
                    rows: None,
                    stats: None,
                };
                (p.to_string(), file)
            })
            .collect();
        Snapshot {
            version,
            files,
            txns: HashMap::from([("ticketsync-acme".to_string(), version as i64)]),
        }
    }

    #[test]
    fn a_snapshot_is_used_only_where_the_log_vouches_for_it() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache {
            dir: dir.path().to_path_buf(),
        };
        let t = Table::Tickets;
        let log: BTreeMap<u64, ObjectMeta> = (3..=7).map(|v| (v, meta(v, 100 + v))).collect();
        assert!(cache.best(t, 7, &log).is_none(), "nothing cached yet");
        cache.save(t, &snapshot(5, &["a", "b"]), &log[&5]);
        let hit = cache.best(t, 7, &log).unwrap();
        assert_eq!((hit.version, hit.files.len()), (5, 2));
        assert_eq!(hit.txns["ticketsync-acme"], 5);
        assert!(
            cache.best(t, 4, &log).is_none(),
            "newer than the version read"
        );
        assert!(
            cache.best(Table::Conversations, 7, &log).is_none(),
            "another table"
        );
        // The table was written again from scratch: commit 5 is another file.
        let rewritten: BTreeMap<u64, ObjectMeta> = (3..=7).map(|v| (v, meta(v, 200 + v))).collect();
        assert!(cache.best(t, 7, &rewritten).is_none());
        // A commit between the snapshot and the version read is not listed.
        let mut gap = log.clone();
        gap.remove(&6);
        assert!(cache.best(t, 7, &gap).is_none());
        // A snapshot cut short is read around.
        std::fs::write(cache.file(t, 5), b"{\"format\":1,").unwrap();
        assert!(cache.best(t, 7, &log).is_none());
        // Only the newest are kept.
        for v in 3..=7 {
            cache.save(t, &snapshot(v, &["a"]), &log[&v]);
        }
        let kept = std::fs::read_dir(cache.table_dir(t)).unwrap().count();
        assert_eq!(kept, KEEP);
        assert_eq!(cache.best(t, 7, &log).unwrap().version, 7);
    }
}
