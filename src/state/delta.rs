//! The Delta Lake logs of the tables: `<data>/<table>/_delta_log/`.
//!
//! ticketsync writes the Parquet files itself (its sort, its compression, the `schemas/`
//! contract) and records them here as `add` and `remove` actions, through delta-rs
//! (`deltalake-core`, without DataFusion). Each table is a Delta table of the minimal protocol
//! (reader 1, writer 2), partitioned by `domain`, `account`, `year` (`rejects` by `domain`).
//!
//! - A data file's path never changes and its content never changes: a partition that changes
//!   gets a new file (`part-<tag>.parquet`) and the old one is removed in the same commit.
//! - Every commit of ours carries a `txn` action (`appId` [`APP_ID`], `version` the dataset's
//!   commit sequence number), so replaying a journal commits each table at most once.
//! - Min/max statistics are written for ids and timestamps only
//!   (`delta.dataSkippingStatsColumns`): no subjects or addresses in `_delta_log/`.
//! - [`Lake`] holds every table's active files by partition, as of one version per table: the
//!   versions the dataset's last commit left ([`SNAPSHOT`]), the latest, or an instant.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Int64Type, TimeUnit, TimestampMillisecondType};
use chrono::{DateTime, Utc};
use deltalake_core::kernel::engine::arrow_conversion::TryFromArrow;
use deltalake_core::kernel::transaction::{CommitBuilder, CommitProperties};
use deltalake_core::kernel::{Action, Add, Remove, StructType, Transaction};
use deltalake_core::operations::create::CreateBuilder;
use deltalake_core::protocol::{DeltaOperation, SaveMode};
use deltalake_core::{DeltaTable, DeltaTableBuilder};
use object_store::path::{Path, PathPart};
use serde::{Deserialize, Serialize};

use super::{Error, Result};
use crate::storage::{layout, Storage};
use crate::tables::Table;

/// The `appId` of ticketsync's `txn` actions.
pub const APP_ID: &str = "ticketsync";

/// Under `_state/`: the version of every table as the dataset's last commit left them, so that
/// readers (`ticketsync query`) see all tables at one consistent point.
pub const SNAPSHOT: &str = "tables.json";

/// One partition of a table: `domain=…/account=…/year=…` (`rejects`: `domain=…`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Partition {
    /// The Freshservice account's subdomain.
    pub domain: String,
    /// The customer account number; `None` in `rejects`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// The partition year; `None` in `rejects`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub year: Option<i32>,
}

impl Partition {
    /// An account/year partition of a partitioned table.
    pub fn placed(domain: &str, account: &str, year: i32) -> Partition {
        Partition {
            domain: domain.to_string(),
            account: Some(account.to_string()),
            year: Some(year),
        }
    }

    /// The partition of `rejects`.
    pub fn rejects(domain: &str) -> Partition {
        Partition {
            domain: domain.to_string(),
            account: None,
            year: None,
        }
    }

    /// The Hive directory of the partition, relative to its table's root.
    pub fn dir(&self) -> String {
        let mut dir = format!("domain={}", self.domain);
        if let Some(account) = &self.account {
            dir.push_str(&format!("/account={account}"));
        }
        if let Some(year) = self.year {
            dir.push_str(&format!("/year={year}"));
        }
        dir
    }

    fn values(&self) -> HashMap<String, Option<String>> {
        let mut values = HashMap::from([("domain".to_string(), Some(self.domain.clone()))]);
        if let Some(account) = &self.account {
            values.insert("account".into(), Some(account.clone()));
        }
        if let Some(year) = self.year {
            values.insert("year".into(), Some(year.to_string()));
        }
        values
    }

    fn from_values(values: &HashMap<String, Option<String>>) -> Option<Partition> {
        let get = |k: &str| values.get(k).cloned().flatten();
        Some(Partition {
            domain: get("domain")?,
            account: get("account"),
            year: get("year").and_then(|y| y.parse().ok()),
        })
    }
}

/// One data file of a table, as its log records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataFile {
    /// Path relative to the table's root (`domain=…/account=…/year=…/part-….parquet`).
    pub path: String,
    /// Its partition.
    pub partition: Partition,
    /// Bytes.
    pub size: u64,
    /// Rows (`numRecords`), when the log says.
    pub rows: Option<u64>,
    /// The `stats` JSON of its `add` action.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stats: Option<String>,
}

impl DataFile {
    /// A new file in `partition`, named after the commit `tag`, holding `batch`
    /// (already encoded to `size` bytes).
    pub fn new(partition: &Partition, tag: &str, batch: &RecordBatch, size: u64) -> DataFile {
        DataFile {
            path: format!("{}/part-{tag}.parquet", partition.dir()),
            partition: partition.clone(),
            size,
            rows: Some(batch.num_rows() as u64),
            stats: Some(stats_of(batch)),
        }
    }

    /// The `ticket_id` range the file holds, as its statistics say (`None` without them).
    pub fn id_range(&self) -> Option<(i64, i64)> {
        let stats: serde_json::Value = serde_json::from_str(self.stats.as_deref()?).ok()?;
        let min = stats.get("minValues")?.get("ticket_id")?.as_i64()?;
        let max = stats.get("maxValues")?.get("ticket_id")?.as_i64()?;
        Some((min, max))
    }

    /// Whether the file can hold rows of any of `ids` (by its `ticket_id` range; a file without
    /// statistics can hold anything).
    pub fn may_hold(&self, ids: &BTreeSet<i64>) -> bool {
        if ids.is_empty() {
            return false;
        }
        match self.id_range() {
            Some((min, max)) => ids.range(min..=max).next().is_some(),
            None => true,
        }
    }

    /// The object path of the file, relative to the dataset root.
    pub fn object(&self, table: Table) -> Path {
        let mut path = Path::from(table.name());
        for part in self.path.split('/') {
            path = path.join(PathPart::from(part));
        }
        path
    }
}

/// What one dataset commit does to one table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableCommit {
    /// Files the commit adds.
    pub adds: Vec<DataFile>,
    /// Files the commit removes (replaced or emptied).
    pub removes: Vec<DataFile>,
    /// False for a rewrite that changes no rows (compaction, an upgrade's move).
    #[serde(default = "yes")]
    pub data_change: bool,
}

fn yes() -> bool {
    true
}

impl Default for TableCommit {
    fn default() -> Self {
        TableCommit {
            adds: Vec::new(),
            removes: Vec::new(),
            data_change: true,
        }
    }
}

impl TableCommit {
    /// True when the commit changes no file.
    pub fn is_empty(&self) -> bool {
        self.adds.is_empty() && self.removes.is_empty()
    }
}

/// Which version of each table a [`Lake`] shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum At {
    /// The versions of the dataset's last commit ([`SNAPSHOT`]); the latest without one.
    Committed,
    /// Each table's latest version.
    Latest,
    /// Each table as it was committed at that instant.
    Instant(DateTime<Utc>),
}

/// The versions of [`SNAPSHOT`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Versions {
    /// The dataset commit sequence number that left them.
    pub seq: u64,
    /// Table name → version.
    pub tables: BTreeMap<String, i64>,
}

struct Log {
    table: Option<DeltaTable>,
    files: BTreeMap<Partition, Vec<DataFile>>,
    seq: Option<i64>,
}

/// Every table's active files, by partition.
pub struct Lake {
    logs: BTreeMap<&'static str, Log>,
    domain: String,
    seq: u64,
}

impl std::fmt::Debug for Lake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(
                self.logs
                    .iter()
                    .map(|(name, log)| (name, log.table.as_ref().and_then(DeltaTable::version))),
            )
            .finish()
    }
}

fn delta_error(table: Table, what: &str, e: impl std::fmt::Display) -> Error {
    Error::Delta {
        table: table.name(),
        detail: format!("{what}: {e}"),
    }
}

fn builder(storage: &Storage, table: Table) -> Result<DeltaTableBuilder> {
    let (store, url) = storage.delta_location(table.name());
    Ok(DeltaTableBuilder::from_url(url.clone())
        .map_err(|e| delta_error(table, "open", e))?
        .with_storage_backend(store, url))
}

impl Lake {
    /// Reads every table's log at `at`.
    pub async fn open(storage: &Storage, at: At) -> Result<Lake> {
        let pinned = match &at {
            At::Committed => load_versions(storage).await?,
            _ => None,
        };
        let mut logs = BTreeMap::new();
        for table in Table::ALL {
            let log_dir = Path::from(table.name()).join("_delta_log");
            let exists = !storage.list(&log_dir).await?.is_empty();
            let log = if !exists {
                Log {
                    table: None,
                    files: BTreeMap::new(),
                    seq: None,
                }
            } else {
                let b = builder(storage, table)?;
                let b = match (
                    &at,
                    pinned.as_ref().and_then(|v| v.tables.get(table.name())),
                ) {
                    (At::Instant(t), _) => b.with_timestamp(*t),
                    (At::Committed, Some(v)) => b.with_version(*v as u64),
                    _ => b,
                };
                match b.load().await {
                    Ok(t) => Log::read(table, t).await?,
                    // Before the table's first commit, an instant has nothing to show.
                    Err(_) if matches!(at, At::Instant(_)) => Log {
                        table: None,
                        files: BTreeMap::new(),
                        seq: None,
                    },
                    Err(e) => return Err(delta_error(table, "load", e)),
                }
            };
            logs.insert(table.name(), log);
        }
        let seq = logs
            .values()
            .filter_map(|l| l.seq)
            .map(|s| s.max(0) as u64)
            .chain(pinned.map(|v| v.seq))
            .max()
            .unwrap_or(0);
        Ok(Lake {
            logs,
            domain: dataset_domain(storage).await?,
            seq,
        })
    }

    /// The Freshservice domain the dataset holds (`_state/format.json`).
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The sequence number of the dataset's last commit (0 before the first).
    pub fn seq(&self) -> u64 {
        self.seq
    }

    fn log(&self, table: Table) -> &Log {
        &self.logs[table.name()]
    }

    /// The active files of one partition.
    pub fn files(&self, table: Table, partition: &Partition) -> &[DataFile] {
        self.log(table)
            .files
            .get(partition)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// Every partition of `table` that has files, in order.
    pub fn partitions(&self, table: Table) -> impl Iterator<Item = &Partition> {
        self.log(table).files.keys()
    }

    /// Every active file of `table`.
    pub fn all_files(&self, table: Table) -> impl Iterator<Item = &DataFile> {
        self.log(table).files.values().flatten()
    }

    /// The table's version, `None` before its first commit.
    pub fn version(&self, table: Table) -> Option<i64> {
        self.log(table)
            .table
            .as_ref()
            .and_then(DeltaTable::version)
            .map(|v| v as i64)
    }

    /// The versions of every table.
    pub fn versions(&self, seq: u64) -> Versions {
        Versions {
            seq,
            tables: Table::ALL
                .iter()
                .filter_map(|t| Some((t.name().to_string(), self.version(*t)?)))
                .collect(),
        }
    }

    /// Commits `change` to `table` as the dataset commit `seq`, unless the table already holds
    /// that commit (a journal replayed after a kill). Creates the table on its first commit.
    pub async fn commit(
        &mut self,
        storage: &Storage,
        table: Table,
        change: &TableCommit,
        seq: u64,
    ) -> Result<()> {
        let log = self
            .logs
            .get_mut(table.name())
            .expect("every table has a log");
        log.commit(storage, table, change, seq).await?;
        self.seq = self.seq.max(seq);
        Ok(())
    }

    /// [`Lake::commit`] of every table `changes` names (by table name), the tables at once:
    /// each has a log of its own.
    pub async fn commit_all(
        &mut self,
        storage: &Storage,
        changes: &BTreeMap<String, TableCommit>,
        seq: u64,
    ) -> Result<()> {
        let commits = self.logs.iter_mut().filter_map(|(name, log)| {
            let change = changes.get(*name)?;
            let table = *Table::ALL.iter().find(|t| t.name() == *name)?;
            Some(log.commit(storage, table, change, seq))
        });
        futures::future::try_join_all(commits).await?;
        self.seq = self.seq.max(seq);
        Ok(())
    }
}

impl Log {
    /// Commits `change` to this table's log as the dataset commit `seq` (see [`Lake::commit`]).
    async fn commit(
        &mut self,
        storage: &Storage,
        table: Table,
        change: &TableCommit,
        seq: u64,
    ) -> Result<()> {
        let log = self;
        if log.seq.is_some_and(|done| done >= seq as i64) {
            return Ok(());
        }
        if log.table.is_none() {
            log.table = Some(create(storage, table).await?);
        }
        let delta = log.table.as_ref().expect("created above");
        let snapshot = delta
            .snapshot()
            .map_err(|e| delta_error(table, "snapshot", e))?;
        let now = Utc::now().timestamp_millis();
        let mut actions: Vec<Action> = Vec::new();
        for file in &change.removes {
            actions.push(Action::Remove(Remove {
                path: file.path.clone(),
                data_change: change.data_change,
                deletion_timestamp: Some(now),
                extended_file_metadata: Some(true),
                partition_values: Some(file.partition.values()),
                size: Some(file.size as i64),
                tags: None,
                deletion_vector: None,
                base_row_id: None,
                default_row_commit_version: None,
            }));
        }
        for file in &change.adds {
            actions.push(Action::Add(Add {
                path: file.path.clone(),
                partition_values: file.partition.values(),
                size: file.size as i64,
                modification_time: now,
                data_change: change.data_change,
                stats: file.stats.clone(),
                tags: None,
                deletion_vector: None,
                base_row_id: None,
                default_row_commit_version: None,
                clustering_provider: None,
            }));
        }
        // The log is kept whole: time travel (`history_days`) needs every commit of the days it
        // keeps, and delta-rs' own cleanup knows nothing of them.
        let properties = CommitProperties::default()
            .with_cleanup_expired_logs(Some(false))
            .with_application_transaction(Transaction::new(APP_ID, seq as i64));
        let operation = DeltaOperation::Write {
            mode: SaveMode::Append,
            partition_by: Some(
                table
                    .partition_columns()
                    .iter()
                    .map(|c| c.to_string())
                    .collect(),
            ),
            predicate: None,
        };
        let done = CommitBuilder::from(properties)
            .with_actions(actions)
            .build(Some(snapshot), delta.log_store(), operation)
            .await
            .map_err(|e| delta_error(table, "commit", e))?;
        // The commit's own snapshot, and the file list changed in memory: no log replay.
        let delta = log.table.as_mut().expect("created above");
        delta.state = Some(done.snapshot());
        for file in &change.removes {
            if let Some(list) = log.files.get_mut(&file.partition) {
                list.retain(|f| f.path != file.path);
            }
        }
        for file in &change.adds {
            log.files
                .entry(file.partition.clone())
                .or_default()
                .push(file.clone());
        }
        log.files.retain(|_, list| !list.is_empty());
        for list in log.files.values_mut() {
            list.sort_by(|a, b| a.path.cmp(&b.path));
        }
        log.seq = Some(seq as i64);
        Ok(())
    }
}

impl Log {
    async fn read(table: Table, delta: DeltaTable) -> Result<Log> {
        let snapshot = delta
            .snapshot()
            .map_err(|e| delta_error(table, "snapshot", e))?;
        let mut files: BTreeMap<Partition, Vec<DataFile>> = BTreeMap::new();
        for view in snapshot.log_data().iter() {
            let values = view.partition_values_map();
            let partition = Partition::from_values(&values).ok_or_else(|| {
                delta_error(
                    table,
                    "log",
                    format!("file {} has no domain partition value", view.path()),
                )
            })?;
            let stats = view.stats();
            let rows = stats
                .as_deref()
                .and_then(|s| serde_json::from_str::<serde_json::Value>(s).ok())
                .and_then(|v| v.get("numRecords")?.as_u64());
            files.entry(partition.clone()).or_default().push(DataFile {
                path: view.path().to_string(),
                partition,
                size: view.size() as u64,
                rows,
                stats,
            });
        }
        for list in files.values_mut() {
            list.sort_by(|a, b| a.path.cmp(&b.path));
        }
        let seq = snapshot
            .transaction_version(delta.log_store().as_ref(), APP_ID)
            .await
            .map_err(|e| delta_error(table, "txn", e))?;
        Ok(Log {
            table: Some(delta),
            files,
            seq,
        })
    }
}

/// Creates `table`'s log (version 0: delta-rs' default protocol, reader 1 / writer 2; the schema, partition columns, properties).
async fn create(storage: &Storage, table: Table) -> Result<DeltaTable> {
    let log_store = builder(storage, table)?
        .build_storage()
        .map_err(|e| delta_error(table, "open", e))?;
    let mut fields = StructType::try_from_arrow(table.schema().as_ref())
        .map_err(|e| delta_error(table, "schema", e))?
        .fields()
        .cloned()
        .collect::<Vec<_>>();
    for column in table.partition_columns() {
        let kind = if *column == "year" {
            deltalake_core::kernel::DataType::INTEGER
        } else {
            deltalake_core::kernel::DataType::STRING
        };
        fields.push(deltalake_core::kernel::StructField::new(
            *column, kind, false,
        ));
    }
    let stats_columns = stats_columns(&table.schema()).join(",");
    CreateBuilder::new()
        .with_log_store(log_store)
        .with_table_name(table.name())
        .with_columns(fields)
        .with_partition_columns(table.partition_columns().iter().copied())
        .with_configuration_property(
            deltalake_core::TableProperty::DataSkippingStatsColumns,
            Some(stats_columns),
        )
        .await
        .map_err(|e| delta_error(table, "create", e))
}

/// The columns whose min/max the log keeps: ids and timestamps, nothing a person wrote.
fn stats_columns(schema: &arrow::datatypes::Schema) -> Vec<String> {
    schema
        .fields()
        .iter()
        .filter(|f| {
            matches!(f.data_type(), DataType::Timestamp(TimeUnit::Millisecond, _))
                || (f.data_type() == &DataType::Int64 && f.name().ends_with("_id"))
        })
        .map(|f| f.name().to_string())
        .collect()
}

/// The `stats` JSON of a file holding `batch`: row count, and min, max and null count of the
/// [`stats_columns`].
fn stats_of(batch: &RecordBatch) -> String {
    let mut min = serde_json::Map::new();
    let mut max = serde_json::Map::new();
    let mut nulls = serde_json::Map::new();
    let schema = batch.schema();
    for name in stats_columns(&schema) {
        let column = batch.column_by_name(&name).expect("a column of the schema");
        nulls.insert(name.clone(), column.null_count().into());
        match column.data_type() {
            DataType::Int64 => {
                let a = column.as_primitive::<Int64Type>();
                if let Some(v) = arrow::compute::min(a) {
                    min.insert(name.clone(), v.into());
                }
                if let Some(v) = arrow::compute::max(a) {
                    max.insert(name.clone(), v.into());
                }
            }
            _ => {
                let a = column.as_primitive::<TimestampMillisecondType>();
                let text = |ms: i64| {
                    DateTime::from_timestamp_millis(ms)
                        .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
                };
                if let Some(v) = arrow::compute::min(a).and_then(text) {
                    min.insert(name.clone(), v.into());
                }
                if let Some(v) = arrow::compute::max(a).and_then(text) {
                    max.insert(name.clone(), v.into());
                }
            }
        }
    }
    serde_json::json!({
        "numRecords": batch.num_rows(),
        "minValues": min,
        "maxValues": max,
        "nullCount": nulls,
    })
    .to_string()
}

/// Deletes the data files no table's latest version holds: those a commit replaced before
/// `before` (by the time of its `remove` action), and any with no `remove` at all (left by an
/// older release). With `before = None`, every replaced file, however recent: `forget` erases
/// a person from history too. Returns how many files were deleted.
pub async fn vacuum(storage: &Storage, before: Option<DateTime<Utc>>) -> Result<u64> {
    use futures::TryStreamExt;
    let lake = Lake::open(storage, At::Latest).await?;
    let mut deleted = 0;
    for table in Table::ALL {
        let Some(delta) = lake.log(table).table.as_ref() else {
            continue;
        };
        let active: std::collections::HashSet<Path> =
            lake.all_files(table).map(|f| f.object(table)).collect();
        let snapshot = delta
            .snapshot()
            .map_err(|e| delta_error(table, "snapshot", e))?;
        let removed_at: HashMap<String, Option<i64>> = snapshot
            .all_tombstones(delta.log_store().as_ref())
            .map_ok(|t| (t.path().to_string(), t.deletion_timestamp()))
            .try_collect()
            .await
            .map_err(|e| delta_error(table, "tombstones", e))?;
        let cutoff = before.map(|t| t.timestamp_millis());
        let root = Path::from(table.name());
        for path in storage.list(&root).await? {
            let text = path.as_ref();
            if !text.ends_with(".parquet")
                || text.contains("/_delta_log/")
                || active.contains(&path)
            {
                continue;
            }
            let relative = text
                .strip_prefix(&format!("{}/", table.name()))
                .unwrap_or(text);
            let expired = match (cutoff, removed_at.get(relative)) {
                (None, _) | (_, None) | (_, Some(None)) => true,
                (Some(cutoff), Some(Some(at))) => *at < cutoff,
            };
            if expired {
                storage.delete(&path).await?;
                deleted += 1;
            }
        }
    }
    Ok(deleted)
}

/// The domain of a dataset whose `_state/format.json` names none (written before domains, or by
/// a test that commits without a run).
pub const DEFAULT_DOMAIN: &str = "default";

/// The Freshservice domain recorded in `_state/format.json`, [`DEFAULT_DOMAIN`] without one.
pub async fn dataset_domain(storage: &Storage) -> Result<String> {
    let path = layout::state("format.json");
    let Some(bytes) = storage.get(&path).await? else {
        return Ok(DEFAULT_DOMAIN.to_string());
    };
    let value: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| Error::Corrupt {
        path: path.to_string(),
        detail: e.to_string(),
    })?;
    Ok(value
        .get("domain")
        .and_then(|d| d.as_str())
        .unwrap_or(DEFAULT_DOMAIN)
        .to_string())
}

/// Reads [`SNAPSHOT`]; `None` before the first commit of this format.
pub async fn load_versions(storage: &Storage) -> Result<Option<Versions>> {
    super::load_json(storage, SNAPSHOT).await
}

/// Writes [`SNAPSHOT`].
pub async fn store_versions(storage: &Storage, versions: &Versions) -> Result<()> {
    super::store_json(storage, SNAPSHOT, versions).await
}
