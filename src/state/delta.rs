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
use crate::storage::layout::{self, Scope};
use crate::storage::Storage;
use crate::tables::Table;

mod cache;
pub mod read;

/// The `appId` of ticketsync's `txn` actions for the dataset's home domain; another domain's
/// commits carry [`app_id`]`(domain)`, so each domain's commit numbers are its own.
pub const APP_ID: &str = "ticketsync";

/// How often a table commit that lost the race to another domain's commit is tried again on the
/// table as that commit left it (each try first checks that no partition it touches changed).
const COMMIT_TRIES: usize = 20;

/// The `appId` of the commits made for the domain of `scope`.
pub fn app_id(scope: &Scope) -> String {
    match scope {
        Scope::Home => APP_ID.to_string(),
        Scope::Domain(domain) => format!("{APP_ID}/{domain}"),
    }
}

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
    app_id: String,
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
    /// Reads every table's log at `at`, for the domain of the storage's scope: its partitions
    /// are the ones a commit of this lake writes, its `appId` the one its commits carry.
    ///
    /// [`At::Committed`] shows every domain as its own last finished dataset commit left it
    /// (each domain's [`SNAPSHOT`]): each table is read at its latest version, and a domain
    /// whose commit is under way there (the table holds a later commit of its `appId` than its
    /// record names) is shown from the version its record names instead. So a reader never
    /// sees half of a commit, of any domain, while other domains' processes commit.
    pub async fn open(storage: &Storage, at: At) -> Result<Lake> {
        let home = dataset_domain(storage).await?;
        let domain = match storage.scope() {
            Scope::Home => home.clone(),
            Scope::Domain(d) => d.clone(),
        };
        let own_app = app_id(storage.scope());
        let mut records: BTreeMap<String, Option<Versions>> = BTreeMap::new();
        if at == At::Committed {
            records.insert(domain.clone(), load_versions(storage).await?);
        }
        let mut logs = BTreeMap::new();
        for table in Table::ALL {
            let log_dir = Path::from(table.name()).join("_delta_log");
            if storage.list(&log_dir).await?.is_empty() {
                logs.insert(table.name(), Log::empty());
                continue;
            }
            let b = builder(storage, table)?;
            let b = match &at {
                At::Instant(t) => b.with_timestamp(*t),
                _ => b,
            };
            let mut log = match b.load().await {
                Ok(t) => Log::read(table, t, &own_app).await?,
                // Before the table's first commit, an instant has nothing to show.
                Err(_) if matches!(at, At::Instant(_)) => Log::empty(),
                Err(e) => return Err(delta_error(table, "load", e)),
            };
            if at == At::Committed {
                log.pin_committed(storage, table, &home, &mut records)
                    .await?;
                log.seq = match &log.table {
                    Some(delta) => txn_version(table, delta, &own_app).await?,
                    None => None,
                };
            }
            logs.insert(table.name(), log);
        }
        let seq = logs
            .values()
            .filter_map(|l| l.seq)
            .map(|s| s.max(0) as u64)
            .chain(records.get(&domain).cloned().flatten().map(|v| v.seq))
            .max()
            .unwrap_or(0);
        Ok(Lake {
            logs,
            domain,
            app_id: own_app,
            seq,
        })
    }

    /// The Freshservice domain this lake's commits write (the storage scope's).
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// Every domain with files in any table.
    pub fn domains(&self) -> BTreeSet<String> {
        self.logs
            .values()
            .flat_map(|log| log.files.keys().map(|p| p.domain.clone()))
            .collect()
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
        log.commit(storage, table, change, seq, &self.app_id)
            .await?;
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
        let app_id = self.app_id.as_str();
        let commits = self.logs.iter_mut().filter_map(|(name, log)| {
            let change = changes.get(*name)?;
            let table = *Table::ALL.iter().find(|t| t.name() == *name)?;
            Some(log.commit(storage, table, change, seq, app_id))
        });
        futures::future::try_join_all(commits).await?;
        self.seq = self.seq.max(seq);
        Ok(())
    }
}

impl Log {
    /// Commits `change` to this table's log as the dataset commit `seq` of the domain whose
    /// `appId` is `app_id` (see [`Lake::commit`]).
    ///
    /// Other domains' processes commit to the same tables. delta-rs retries a commit that lost
    /// the race, but without a read predicate its conflict check refuses ours whenever the
    /// winning commit removed any file (the whole table counts as read). What a commit of ours
    /// read is only its own domain's partitions, so the check here is by partition: the commit
    /// is tried again on the table as the winners left it when every partition it touches
    /// still holds exactly the files this log knows, and fails (retryable) when one changed.
    async fn commit(
        &mut self,
        storage: &Storage,
        table: Table,
        change: &TableCommit,
        seq: u64,
        app_id: &str,
    ) -> Result<()> {
        if self.seq.is_some_and(|done| done >= seq as i64) {
            return Ok(());
        }
        if self.table.is_none() {
            self.table = Some(match create(storage, table).await {
                Ok(created) => created,
                // Another domain's process created it first.
                Err(e) => builder(storage, table)?.load().await.map_err(|_| e)?,
            });
        }
        let actions = actions(change);
        let mut tries = 0;
        let done = loop {
            tries += 1;
            let delta = self.table.as_ref().expect("created above");
            let snapshot = delta
                .snapshot()
                .map_err(|e| delta_error(table, "snapshot", e))?;
            // The log is kept whole: time travel (`history_days`) needs every commit of the days
            // it keeps, and delta-rs' own cleanup knows nothing of them.
            let properties = CommitProperties::default()
                .with_cleanup_expired_logs(Some(false))
                .with_application_transaction(Transaction::new(app_id, seq as i64));
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
            let result = CommitBuilder::from(properties)
                .with_actions(actions.clone())
                .build(Some(snapshot), delta.log_store(), operation)
                .await;
            let error = match result {
                Ok(done) => break done,
                Err(e) => e,
            };
            // Lost to another writer? Read the table as it is now and compare our partitions.
            let read_version = delta.version();
            let latest = builder(storage, table)?
                .load()
                .await
                .map_err(|e| delta_error(table, "load", e))?;
            // The commit landed after all (an answer lost on the way back).
            if txn_version(table, &latest, app_id)
                .await?
                .is_some_and(|done| done >= seq as i64)
            {
                self.files = active_files(table, &latest)?;
                self.table = Some(latest);
                self.seq = Some(seq as i64);
                return Ok(());
            }
            if tries >= COMMIT_TRIES || latest.version() <= read_version {
                return Err(delta_error(table, "commit", error));
            }
            let now = active_files(table, &latest)?;
            let touched: BTreeSet<&Partition> = change
                .adds
                .iter()
                .chain(&change.removes)
                .map(|f| &f.partition)
                .collect();
            if let Some(changed) = touched.iter().find(|p| now.get(**p) != self.files.get(**p)) {
                return Err(delta_error(
                    table,
                    "commit",
                    format!(
                        "another writer changed partition {} meanwhile ({error})",
                        changed.dir()
                    ),
                ));
            }
            tracing::debug!(
                table = table.name(),
                version = ?latest.version(),
                "another domain committed first; committing again on its version"
            );
            self.files = now;
            self.table = Some(latest);
        };
        // The commit's own snapshot, and the file list changed in memory: no log replay.
        let delta = self.table.as_mut().expect("created above");
        delta.state = Some(done.snapshot());
        for file in &change.removes {
            if let Some(list) = self.files.get_mut(&file.partition) {
                list.retain(|f| f.path != file.path);
            }
        }
        for file in &change.adds {
            self.files
                .entry(file.partition.clone())
                .or_default()
                .push(file.clone());
        }
        self.files.retain(|_, list| !list.is_empty());
        for list in self.files.values_mut() {
            list.sort_by(|a, b| a.path.cmp(&b.path));
        }
        self.seq = Some(seq as i64);
        Ok(())
    }
}

/// The `remove` and `add` actions of one table's change.
fn actions(change: &TableCommit) -> Vec<Action> {
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
    actions
}

impl Log {
    fn empty() -> Log {
        Log {
            table: None,
            files: BTreeMap::new(),
            seq: None,
        }
    }

    async fn read(table: Table, delta: DeltaTable, app_id: &str) -> Result<Log> {
        let files = active_files(table, &delta)?;
        let seq = txn_version(table, &delta, app_id).await?;
        Ok(Log {
            table: Some(delta),
            files,
            seq,
        })
    }
}

impl Log {
    /// Turns a log read at the latest version into the [`At::Committed`] view: of each domain
    /// with a commit under way in this table (a later `txn` of its `appId` than its record
    /// names), the partitions show the files of the version its record names; a domain other
    /// than the home one without a record (its first commit under way) shows none. The home
    /// domain of a dataset written before records existed shows the latest.
    async fn pin_committed(
        &mut self,
        storage: &Storage,
        table: Table,
        home: &str,
        records: &mut BTreeMap<String, Option<Versions>>,
    ) -> Result<()> {
        let Some(delta) = self.table.as_ref() else {
            return Ok(());
        };
        let domains: BTreeSet<String> = self.files.keys().map(|p| p.domain.clone()).collect();
        let mut pinned: Vec<(String, Option<i64>)> = Vec::new();
        for domain in domains {
            let (scope, record) = domain_record(storage, home, &domain, records).await?;
            let txn = txn_version(table, delta, &app_id(&scope)).await?;
            match shown(record.as_ref(), txn, scope == Scope::Home, table) {
                Shown::Latest => {}
                Shown::Version(v) => pinned.push((domain, Some(v as i64))),
                Shown::Nothing => pinned.push((domain, None)),
            }
        }
        for (domain, version) in pinned {
            self.files.retain(|p, _| p.domain != domain);
            let Some(version) = version else { continue };
            let old = builder(storage, table)?
                .with_version(version as u64)
                .load()
                .await
                .map_err(|e| delta_error(table, "load", e))?;
            for (partition, list) in active_files(table, &old)? {
                if partition.domain == domain {
                    self.files.insert(partition, list);
                }
            }
        }
        Ok(())
    }
}

/// The scope of `domain` in a dataset whose home domain is `home`, and its [`SNAPSHOT`] record,
/// read once per domain into `records`.
pub(crate) async fn domain_record(
    storage: &Storage,
    home: &str,
    domain: &str,
    records: &mut BTreeMap<String, Option<Versions>>,
) -> Result<(Scope, Option<Versions>)> {
    let scope = if domain == home {
        Scope::Home
    } else {
        Scope::Domain(domain.to_string())
    };
    if !records.contains_key(domain) {
        let record = load_versions(&storage.scoped(scope.clone())).await?;
        records.insert(domain.to_string(), record);
    }
    Ok((scope, records[domain].clone()))
}

/// What the committed view shows of one domain in one table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shown {
    /// The table's latest files: the domain has no commit under way there.
    Latest,
    /// The files of this version: the one the domain's record names, its commit under way.
    Version(u64),
    /// None: the domain's first commit is under way.
    Nothing,
}

/// Of a domain with `record` (its [`SNAPSHOT`]) whose last `txn` in `table` is `txn`: which
/// files a reader of [`At::Committed`] sees. A domain whose table holds a later commit of its
/// `appId` than its record names is shown as its record left it; a domain other than the home
/// one without a record (its first commit under way) shows nothing; the home domain of a
/// dataset written before records existed shows the latest.
pub(crate) fn shown(
    record: Option<&Versions>,
    txn: Option<i64>,
    home: bool,
    table: Table,
) -> Shown {
    match record {
        Some(record) if txn.is_none_or(|t| t <= record.seq as i64) => Shown::Latest,
        Some(record) => match record.tables.get(table.name()) {
            Some(&v) => Shown::Version(v.max(0) as u64),
            None => Shown::Nothing,
        },
        None if home => Shown::Latest,
        None => Shown::Nothing,
    }
}

/// The last dataset commit of the domain whose `appId` is `app_id` that the table holds.
async fn txn_version(table: Table, delta: &DeltaTable, app_id: &str) -> Result<Option<i64>> {
    let snapshot = delta
        .snapshot()
        .map_err(|e| delta_error(table, "snapshot", e))?;
    snapshot
        .transaction_version(delta.log_store().as_ref(), app_id)
        .await
        .map_err(|e| delta_error(table, "txn", e))
}

/// The active files of a loaded table, by partition, each partition's in path order.
fn active_files(table: Table, delta: &DeltaTable) -> Result<BTreeMap<Partition, Vec<DataFile>>> {
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
    Ok(files)
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

/// Deletes the data files of the storage scope's domain that no table's latest version holds: those a commit replaced before
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
        // Only the lake's own domain: another domain's process may have moved a file into
        // place that its table commit does not name yet.
        let root = Path::from(table.name()).join(format!("domain={}", lake.domain()));
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

#[cfg(test)]
mod tests {
    use super::*;

    fn file(domain: &str, name: &str) -> DataFile {
        DataFile {
            path: format!("domain={domain}/account=A/year=2025/{name}.parquet"),
            partition: Partition::placed(domain, "A", 2025),
            size: 10,
            rows: Some(1),
            stats: None,
        }
    }

    fn change(adds: Vec<DataFile>, removes: Vec<DataFile>) -> BTreeMap<String, TableCommit> {
        BTreeMap::from([(
            Table::Tickets.name().to_string(),
            TableCommit {
                adds,
                removes,
                data_change: true,
            },
        )])
    }

    fn names(lake: &Lake) -> Vec<String> {
        lake.all_files(Table::Tickets)
            .map(|f| f.path.rsplit('/').next().unwrap().to_string())
            .collect()
    }

    #[tokio::test]
    async fn commits_of_two_domains_at_once_both_land_and_a_changed_partition_refuses() {
        let dir = tempfile::tempdir().unwrap();
        let home = Storage::local(dir.path()).unwrap();
        let globex = home.scoped(Scope::Domain("globex".into()));
        let (a1, a2) = (file(DEFAULT_DOMAIN, "a1"), file(DEFAULT_DOMAIN, "a2"));
        let (b1, b2) = (file("globex", "b1"), file("globex", "b2"));

        let mut lake = Lake::open(&home, At::Latest).await.unwrap();
        lake.commit_all(&home, &change(vec![a1.clone()], vec![]), 1)
            .await
            .unwrap();
        let mut g = Lake::open(&globex, At::Latest).await.unwrap();
        assert_eq!(g.domain(), "globex");
        assert_eq!(g.seq(), 0, "each domain counts its own commits");
        g.commit_all(&globex, &change(vec![b1.clone()], vec![]), 1)
            .await
            .unwrap();
        store_versions(&globex, &g.versions(1)).await.unwrap();

        // Both read the table now; globex commits first, removing a file of its own.
        let mut stale_home = Lake::open(&home, At::Latest).await.unwrap();
        let mut stale_globex = Lake::open(&globex, At::Latest).await.unwrap();
        g.commit_all(&globex, &change(vec![b2.clone()], vec![b1.clone()]), 2)
            .await
            .unwrap();
        // delta-rs alone refuses this one (the winner removed a file it read); no partition it
        // touches changed, so it goes in on the winner's version.
        stale_home
            .commit_all(&home, &change(vec![a2.clone()], vec![a1.clone()]), 2)
            .await
            .unwrap();
        let latest = Lake::open(&home, At::Latest).await.unwrap();
        assert_eq!(names(&latest), ["a2.parquet", "b2.parquet"]);
        assert_eq!(latest.seq(), 2);

        // A commit whose partition another writer changed meanwhile fails, and changes nothing.
        let err = stale_globex
            .commit_all(
                &globex,
                &change(vec![file("globex", "b3")], vec![b1.clone()]),
                3,
            )
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("changed partition domain=globex"),
            "{err}"
        );
        let latest = Lake::open(&home, At::Latest).await.unwrap();
        assert_eq!(names(&latest), ["a2.parquet", "b2.parquet"]);

        // A reader sees each domain at its own last finished commit: globex's record still
        // names its first commit (its second is "under way"), the home domain has no record.
        let committed = Lake::open(&home, At::Committed).await.unwrap();
        assert_eq!(names(&committed), ["a2.parquet", "b1.parquet"]);
        store_versions(&globex, &g.versions(2)).await.unwrap();
        let committed = Lake::open(&home, At::Committed).await.unwrap();
        assert_eq!(names(&committed), ["a2.parquet", "b2.parquet"]);
    }
}
