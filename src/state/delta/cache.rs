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
//! A snapshot file is a header line (version, commit, `txn`s, where each partition's segment
//! lies) and one JSON segment per partition: a query of the version the snapshot is of parses
//! its own partitions' segments only (one account of a year-old dataset: a few dozen files of
//! 14,000), so opening costs O(files the query needs). Only a replay reads every segment.
//!
//! A snapshot is trusted only as far as the log says it may be: it names its version and that
//! version's commit file (size, modification time, entity tag), and is used only when the log
//! lists that very file and every commit after it up to the version read. A table rewritten
//! from scratch, a snapshot cut short or of another format is read around and replaced. The
//! cache holds file lists only (paths, partitions, sizes, `txn` versions), never rows.
//!
//! Where: `$TICKETSYNC_CACHE_DIR`, else `$XDG_CACHE_HOME/ticketsync`, else
//! `~/.cache/ticketsync`; `TICKETSYNC_CACHE_DIR=off` turns it off. One directory per dataset
//! (named by a hash of its location), one per table, the newest [`KEEP`] versions each; a
//! dataset's directory that no save touched for [`STALE`] is deleted by the next save.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use object_store::ObjectMeta;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{DataFile, Partition};
use crate::storage::Storage;
use crate::tables::Table;

/// Snapshots kept per table.
const KEEP: usize = 4;

/// The format of a snapshot file; another is ignored.
const FORMAT: u32 = 2;

/// A snapshot file's name ends so (format 1 wrote `.json`: those are deleted at the next save).
const SUFFIX: &str = ".snap";

/// A dataset's snapshots no reader has saved into for this long are deleted (by the next save
/// into any dataset's cache): a cache of many short-lived datasets stays bounded.
const STALE: Duration = Duration::from_secs(30 * 24 * 3600);

/// A table's active files and `txn` versions as of one version.
#[derive(Debug, Default)]
pub(super) struct Snapshot {
    pub(super) version: u64,
    /// Raw path (as the log writes it) → file.
    pub(super) files: HashMap<String, DataFile>,
    pub(super) txns: HashMap<String, i64>,
    /// Whether `files` holds only the partitions the reader asked for (a snapshot of the very
    /// version read: nothing to replay, nothing to save).
    pub(super) pruned: bool,
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

/// A snapshot file's first line; the segments follow it, one JSON array of [`Entry`] per
/// partition, so a reader parses the partitions it needs and no others.
#[derive(Serialize, Deserialize)]
struct Header {
    format: u32,
    table: String,
    version: u64,
    commit: CommitId,
    txns: HashMap<String, i64>,
    /// Each partition's segment: where it starts after the header line, and its bytes.
    segments: Vec<Segment>,
}

#[derive(Serialize, Deserialize)]
struct Segment {
    partition: Partition,
    offset: usize,
    len: usize,
}

/// One file of a segment (its partition is the segment's).
#[derive(Serialize, Deserialize)]
struct Entry {
    raw: String,
    path: String,
    size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rows: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    stats: Option<String>,
}

/// The cache of one dataset.
#[derive(Debug, Clone)]
pub(super) struct Cache {
    dir: PathBuf,
    /// The directory holding every dataset's cache (`…/snapshots`), where stale ones are
    /// pruned; `None` for a cache placed by hand (tests).
    datasets: Option<PathBuf>,
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
        let datasets = base.join("snapshots");
        Some(Cache {
            dir: datasets.join(key),
            datasets: Some(datasets),
        })
    }

    /// A cache in `dir` (tests).
    #[cfg(test)]
    pub(super) fn at(dir: &Path) -> Cache {
        Cache {
            dir: dir.to_path_buf(),
            datasets: None,
        }
    }

    fn table_dir(&self, table: Table) -> PathBuf {
        self.dir.join(table.name())
    }

    /// The newest snapshot of `table` at or before `version` that the log vouches for: its
    /// commit file is `commits[its version]`, and every commit after it up to `version` is
    /// listed. A snapshot of `version` itself holds only the partitions `keep` accepts
    /// ([`Snapshot::pruned`]); an older one holds every partition, for the replay and the save
    /// after it. `None` when there is none.
    pub(super) fn best(
        &self,
        table: Table,
        version: u64,
        commits: &BTreeMap<u64, ObjectMeta>,
        keep: &(dyn Fn(&Partition) -> bool + Send + Sync),
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
            let pruned = v == version;
            let all = |_: &Partition| true;
            let keep: &(dyn Fn(&Partition) -> bool + Send + Sync) =
                if pruned { keep } else { &all };
            let snapshot = parse(&bytes, table, v, &CommitId::of(meta), keep);
            if snapshot.is_none() {
                tracing::debug!(
                    table = table.name(),
                    version = v,
                    "a cached snapshot the log does not vouch for; read around"
                );
            }
            snapshot.map(|s| Snapshot { pruned, ..s })
        })
    }

    /// The versions of `table` the cache holds snapshots of (`<version>.snap`).
    fn versions(&self, table: Table) -> std::io::Result<Vec<u64>> {
        Ok(std::fs::read_dir(self.table_dir(table))?
            .filter_map(|e| {
                e.ok()?
                    .file_name()
                    .to_str()?
                    .strip_suffix(SUFFIX)?
                    .parse()
                    .ok()
            })
            .collect())
    }

    fn file(&self, table: Table, version: u64) -> PathBuf {
        self.table_dir(table).join(format!("{version:020}{SUFFIX}"))
    }

    /// Saves `snapshot` (every partition), taken at the commit file `meta`, and drops all but
    /// the newest [`KEEP`] snapshots of the table and the snapshots of datasets no reader saved
    /// into for [`STALE`]. Best effort: a cache that cannot be written only costs the next
    /// reader the replay.
    pub(super) fn save(&self, table: Table, snapshot: &Snapshot, meta: &ObjectMeta) {
        debug_assert!(!snapshot.pruned, "a pruned snapshot is never saved");
        if let Err(e) = self.try_save(table, snapshot, meta) {
            tracing::debug!(table = table.name(), error = %e, "the snapshot cache was not written");
        }
        if let Some(datasets) = &self.datasets {
            prune_stale(datasets, &self.dir, SystemTime::now());
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
        let bytes = encode(table, snapshot, meta).map_err(std::io::Error::other)?;
        // Written aside and renamed: a reader sees a whole snapshot or none.
        let nanos = SystemTime::now()
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
        // Snapshots of an earlier format.
        for e in std::fs::read_dir(&dir)?.flatten() {
            if e.file_name().to_str().is_some_and(|n| n.ends_with(".json")) {
                let _ = std::fs::remove_file(e.path());
            }
        }
        Ok(())
    }
}

/// The header line, then one segment per partition (in partition order).
fn encode(table: Table, snapshot: &Snapshot, meta: &ObjectMeta) -> serde_json::Result<Vec<u8>> {
    let mut by_partition: BTreeMap<&Partition, Vec<Entry>> = BTreeMap::new();
    for (raw, f) in &snapshot.files {
        by_partition.entry(&f.partition).or_default().push(Entry {
            raw: raw.clone(),
            path: f.path.clone(),
            size: f.size,
            rows: f.rows,
            stats: f.stats.clone(),
        });
    }
    let mut body = Vec::new();
    let mut segments = Vec::with_capacity(by_partition.len());
    for (partition, mut entries) in by_partition {
        entries.sort_by(|a, b| a.raw.cmp(&b.raw));
        let offset = body.len();
        serde_json::to_writer(&mut body, &entries)?;
        segments.push(Segment {
            partition: partition.clone(),
            offset,
            len: body.len() - offset,
        });
    }
    let header = Header {
        format: FORMAT,
        table: table.name().to_string(),
        version: snapshot.version,
        commit: CommitId::of(meta),
        txns: snapshot.txns.clone(),
        segments,
    };
    let mut out = serde_json::to_vec(&header)?;
    out.push(b'\n');
    out.extend_from_slice(&body);
    Ok(out)
}

/// The snapshot in `bytes`, with the segments of the partitions `keep` accepts, if it is one of
/// `table` at `version` taken at the commit file `commit`, whole; `None` otherwise.
fn parse(
    bytes: &[u8],
    table: Table,
    version: u64,
    commit: &CommitId,
    keep: &(dyn Fn(&Partition) -> bool + Send + Sync),
) -> Option<Snapshot> {
    let line = bytes.iter().position(|&b| b == b'\n')?;
    let header: Header = serde_json::from_slice(&bytes[..line]).ok()?;
    let body = &bytes[line + 1..];
    let usable = header.format == FORMAT
        && header.table == table.name()
        && header.version == version
        && header.commit == *commit
        && header
            .segments
            .last()
            .is_none_or(|s| s.offset + s.len == body.len());
    if !usable {
        return None;
    }
    let mut files = HashMap::new();
    for segment in header.segments {
        if !keep(&segment.partition) {
            continue;
        }
        let entries: Vec<Entry> =
            serde_json::from_slice(body.get(segment.offset..segment.offset + segment.len)?).ok()?;
        for e in entries {
            let file = DataFile {
                path: e.path,
                partition: segment.partition.clone(),
                size: e.size,
                rows: e.rows,
                stats: e.stats,
            };
            files.insert(e.raw, file);
        }
    }
    Some(Snapshot {
        version,
        files,
        txns: header.txns,
        pruned: false,
    })
}

/// Deletes the dataset directories under `base` (but `current`) whose newest table directory
/// was last written before `now - STALE`.
fn prune_stale(base: &Path, current: &Path, now: SystemTime) {
    let Ok(datasets) = std::fs::read_dir(base) else {
        return;
    };
    for dataset in datasets.flatten() {
        let path = dataset.path();
        if path == current || !dataset.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let newest = std::fs::read_dir(&path)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|t| t.metadata().ok()?.modified().ok())
            .chain(dataset.metadata().ok().and_then(|m| m.modified().ok()))
            .max();
        if newest.is_some_and(|t| now.duration_since(t).is_ok_and(|age| age > STALE)) {
            tracing::debug!(dir = %path.display(), "a stale dataset's snapshots deleted");
            let _ = std::fs::remove_dir_all(&path);
        }
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
                // `a…` in account 100, the rest in account 200.
                let account = if p.starts_with('a') { "100" } else { "200" };
                let file = DataFile {
                    path: format!("account={account}/{p}.parquet"),
                    partition: Partition::placed("acme", account, 2026),
                    size: 10,
                    rows: Some(3),
                    stats: Some(format!("{{\"numRecords\":3,\"p\":\"{p}\"}}")),
                };
                (p.to_string(), file)
            })
            .collect();
        Snapshot {
            version,
            files,
            txns: HashMap::from([("ticketsync-acme".to_string(), version as i64)]),
            pruned: false,
        }
    }

    fn all(_: &Partition) -> bool {
        true
    }

    fn account_100(p: &Partition) -> bool {
        p.account.as_deref() == Some("100")
    }

    #[test]
    fn a_snapshot_is_used_only_where_the_log_vouches_for_it() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::at(dir.path());
        let t = Table::Tickets;
        let log: BTreeMap<u64, ObjectMeta> = (3..=7).map(|v| (v, meta(v, 100 + v))).collect();
        assert!(cache.best(t, 7, &log, &all).is_none(), "nothing cached yet");
        cache.save(t, &snapshot(5, &["a", "b"]), &log[&5]);
        let hit = cache.best(t, 7, &log, &all).unwrap();
        assert_eq!((hit.version, hit.files.len(), hit.pruned), (5, 2, false));
        assert_eq!(hit.txns["ticketsync-acme"], 5);
        assert!(
            cache.best(t, 4, &log, &all).is_none(),
            "newer than the version read"
        );
        assert!(
            cache.best(Table::Conversations, 7, &log, &all).is_none(),
            "another table"
        );
        // The table was written again from scratch: commit 5 is another file.
        let rewritten: BTreeMap<u64, ObjectMeta> = (3..=7).map(|v| (v, meta(v, 200 + v))).collect();
        assert!(cache.best(t, 7, &rewritten, &all).is_none());
        // A commit between the snapshot and the version read is not listed.
        let mut gap = log.clone();
        gap.remove(&6);
        assert!(cache.best(t, 7, &gap, &all).is_none());
        // A snapshot cut short, in its header or in its segments, is read around.
        let whole = std::fs::read(cache.file(t, 5)).unwrap();
        std::fs::write(cache.file(t, 5), &whole[..whole.len() - 3]).unwrap();
        assert!(cache.best(t, 7, &log, &all).is_none());
        std::fs::write(cache.file(t, 5), b"{\"format\":2,").unwrap();
        assert!(cache.best(t, 7, &log, &all).is_none());
        // Only the newest are kept, and a format-1 snapshot leaves at the next save.
        std::fs::write(cache.table_dir(t).join(format!("{:020}.json", 2)), b"{}").unwrap();
        for v in 3..=7 {
            cache.save(t, &snapshot(v, &["a"]), &log[&v]);
        }
        let kept = std::fs::read_dir(cache.table_dir(t)).unwrap().count();
        assert_eq!(kept, KEEP);
        assert_eq!(cache.best(t, 7, &log, &all).unwrap().version, 7);
    }

    #[test]
    fn a_snapshot_of_the_version_read_gives_the_partitions_asked_for_only() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::at(dir.path());
        let t = Table::Tickets;
        let log: BTreeMap<u64, ObjectMeta> = (3..=7).map(|v| (v, meta(v, 100 + v))).collect();
        let saved = snapshot(5, &["a1", "a2", "b1", "b2", "b3"]);
        cache.save(t, &saved, &log[&5]);
        // The version itself: account 100's files, every field as saved.
        let hit = cache.best(t, 5, &log, &account_100).unwrap();
        assert!(hit.pruned);
        let mut got: Vec<_> = hit.files.iter().collect();
        got.sort_by(|a, b| a.0.cmp(b.0));
        let mut want: Vec<_> = saved
            .files
            .iter()
            .filter(|f| f.0.starts_with('a'))
            .collect();
        want.sort_by(|a, b| a.0.cmp(b.0));
        assert_eq!(got, want);
        assert_eq!(hit.txns["ticketsync-acme"], 5);
        // An older snapshot is the base of a replay and a save: every partition.
        let older = cache.best(t, 7, &log, &account_100).unwrap();
        assert!(!older.pruned);
        assert_eq!(older.files.len(), 5);
    }

    #[test]
    fn the_snapshots_of_a_dataset_no_reader_saved_into_for_long_are_deleted() {
        let base = tempfile::tempdir().unwrap();
        let current = base.path().join("current");
        let other = base.path().join("other");
        for d in [&current, &other] {
            std::fs::create_dir_all(d.join("tickets")).unwrap();
        }
        let now = SystemTime::now();
        prune_stale(base.path(), &current, now);
        assert!(other.exists(), "saved into a moment ago");
        prune_stale(base.path(), &current, now + STALE + Duration::from_secs(60));
        assert!(!other.exists());
        assert!(current.exists(), "the dataset being saved into stays");
    }
}
