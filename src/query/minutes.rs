//! Minutes per ticket and period, all an adjustment list (`--changes-since`) compares: three
//! columns of every selected `tickets` file, at two versions of the table.
//!
//! Read with the parquet crate rather than polars: the earlier instant's snapshot is typically
//! thousands of small files not yet compacted (14,139 of them on the benchmark's year-old
//! dataset), and polars' cost per file (its schema, its pipeline) was most of the query. Here a
//! file costs its footer and three column chunks: the Delta log's statistics skip files of no
//! row of the year, the footer's skip row groups, and the Hive keys (domain, account) come from
//! the file list, not the rows. Files are read concurrently, each decoded on a worker thread.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Int64Type, TimeUnit, TimestampMillisecondType};
use chrono::{DateTime, Datelike, TimeZone, Utc};
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use parquet::arrow::arrow_reader::{
    ArrowReaderBuilder, ArrowReaderOptions, ParquetRecordBatchReaderBuilder,
};
use parquet::arrow::async_reader::ParquetRecordBatchStreamBuilder;
use parquet::arrow::ProjectionMask;
use parquet::file::statistics::Statistics;

use super::rollup::{Basis, Period, RollupQuery};
use super::{Dataset, Error, Result, Selection, Years};
use crate::state::delta::DataFile;
use crate::storage::Storage;
use crate::tables::Table;

/// (domain, account, period) → ticket → minutes.
pub(super) type Periods = BTreeMap<(String, String, String), BTreeMap<i64, i64>>;

/// Files read at once: enough to keep both cores decoding and an object store's round trips
/// overlapped.
const PARALLEL_FILES: usize = 16;

/// What one file contributes: its partition's domain and account, and (period, ticket,
/// minutes) for each of its rows in the year.
type FileRows = (String, String, Vec<(String, i64, i64)>);

impl Dataset {
    /// The exact minutes (`total_minutes`, what `hours` sums) of every ticket in `query`'s
    /// periods, by domain, account and period: the tickets [`Dataset::explain`] lists, without
    /// reading anything else. Ticket-level bases only (`updated`, `closed`).
    pub(super) async fn minutes_by_period(&self, query: &RollupQuery) -> Result<Periods> {
        let selection = Selection {
            account: query.account.as_deref(),
            years: Years::of(query.basis, Some(query.year)),
        };
        let view = self.view(&[Table::Tickets], selection).await?;
        let date = match query.basis {
            Basis::Closed => "closed_at",
            _ => "last_updated_at",
        };
        let (from, until) = year_millis(query.year);
        let mut files = Vec::new();
        let mut listed = 0usize;
        for partition in view.partitions(Table::Tickets) {
            let Some(account) = partition.account.clone() else {
                continue;
            };
            for file in view.files(Table::Tickets, partition) {
                listed += 1;
                if log_says_outside(file, date, from, until) {
                    continue;
                }
                files.push((partition.domain.clone(), account.clone(), file.clone()));
            }
        }
        if listed == 0 {
            self.nothing_selected(selection).await?;
            return Ok(Periods::new());
        }
        let period = query.period;
        let year = query.year;
        let read = futures::stream::iter(files.iter().cloned())
            .map(|(domain, account, file)| {
                let storage = self.storage.clone();
                async move {
                    let path = file.object(Table::Tickets);
                    let task = tokio::spawn(async move {
                        let bounds = (from, until);
                        let rows =
                            read_file(&storage, &path, file.size, date, bounds, WHOLE_FILE_BYTES)
                                .await?
                                .into_iter()
                                .map(|(at, ticket, minutes)| {
                                    (period_of(period, year, at), ticket, minutes)
                                })
                                .collect();
                        Ok::<FileRows, Error>((domain, account, rows))
                    });
                    task.await.map_err(Error::Task)?
                }
            })
            .buffer_unordered(PARALLEL_FILES)
            .try_fold(
                Periods::new(),
                |mut out, (domain, account, rows)| async move {
                    for (period, ticket, minutes) in rows {
                        out.entry((domain.clone(), account.clone(), period))
                            .or_default()
                            .insert(ticket, minutes);
                    }
                    Ok(out)
                },
            )
            .await;
        match read {
            Ok(periods) => Ok(periods),
            Err(e) => {
                // A version of an instant names files later commits replaced: say so when
                // that is why a file did not read.
                let paths: Vec<Path> = files
                    .iter()
                    .map(|(_, _, f)| f.object(Table::Tickets))
                    .collect();
                self.history_kept(paths.iter()).await?;
                Err(e)
            }
        }
    }
}

/// The UTC year as `[from, until)` milliseconds since the epoch.
fn year_millis(year: i32) -> (i64, i64) {
    let start = |y: i32| {
        Utc.with_ymd_and_hms(y, 1, 1, 0, 0, 0)
            .single()
            .map_or(if y < 0 { i64::MIN } else { i64::MAX }, |t| {
                t.timestamp_millis()
            })
    };
    (start(year), start(year.saturating_add(1)))
}

/// The period `at` (ms) counts in.
fn period_of(period: Period, year: i32, at: i64) -> String {
    match period {
        Period::Month => {
            let month = DateTime::from_timestamp_millis(at).map_or(1, |t| t.month());
            format!("{year}-{month:02}")
        }
        Period::Year => year.to_string(),
    }
}

/// Whether the `add` action's statistics show that no row of `file` has `date` in
/// `[from, until)`. Without (readable) statistics the file is read.
fn log_says_outside(file: &DataFile, date: &str, from: i64, until: i64) -> bool {
    let Some(stats) = file.stats.as_deref() else {
        return false;
    };
    let Ok(stats) = serde_json::from_str::<serde_json::Value>(stats) else {
        return false;
    };
    let bound = |side: &str| {
        stats[side][date]
            .as_str()
            .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
            .map(|t| t.timestamp_millis())
    };
    // (Delta writes bounds truncated to milliseconds; a row is never outside them.)
    match (bound("minValues"), bound("maxValues")) {
        (Some(min), Some(max)) => max < from || min >= until,
        _ => false,
    }
}

/// Files up to this size are fetched whole, in one request (most files of a year not yet
/// compacted are a few tens of kilobytes); larger ones are read by ranges, the footer and then
/// the three column chunks.
const WHOLE_FILE_BYTES: u64 = 1024 * 1024;

/// (`date` in ms, ticket, minutes) of each row of the tickets file `path` whose `date` lies in
/// `[from, until)`; fetched whole when it is at most `whole` bytes.
async fn read_file(
    storage: &Storage,
    path: &Path,
    size: u64,
    date: &'static str,
    year: (i64, i64),
    whole: u64,
) -> Result<Vec<(i64, i64, i64)>> {
    let what = path.to_string();
    let failed = |e: parquet::errors::ParquetError| Error::Contract {
        what: what.clone(),
        detail: format!("unreadable Parquet: {e}"),
    };
    // The rows' types are the Parquet schema's: the Arrow schema embedded beside it says
    // nothing these three columns need.
    let options = ArrowReaderOptions::new().with_skip_arrow_metadata(true);
    let mut out = Vec::new();
    if size <= whole {
        let bytes = storage.get_existing(path).await?;
        let builder = ParquetRecordBatchReaderBuilder::try_new_with_options(bytes, options)
            .map_err(failed)?;
        let Some((mask, row_groups)) = plan(&builder, date, year, &what)? else {
            return Ok(out);
        };
        let reader = builder
            .with_projection(mask)
            .with_row_groups(row_groups)
            .with_batch_size(64 * 1024)
            .build()
            .map_err(failed)?;
        for batch in reader {
            let batch = batch.map_err(|e| failed(e.into()))?;
            rows_of(&batch, date, year, &what, &mut out)?;
        }
    } else {
        let reader = storage.parquet_reader(path, size);
        let builder = ParquetRecordBatchStreamBuilder::new_with_options(reader, options)
            .await
            .map_err(failed)?;
        let Some((mask, row_groups)) = plan(&builder, date, year, &what)? else {
            return Ok(out);
        };
        let mut stream = builder
            .with_projection(mask)
            .with_row_groups(row_groups)
            .with_batch_size(64 * 1024)
            .build()
            .map_err(failed)?;
        while let Some(batch) = stream.try_next().await.map_err(failed)? {
            rows_of(&batch, date, year, &what, &mut out)?;
        }
    }
    Ok(out)
}

/// The three columns and the row groups whose statistics do not lie outside the year, or
/// `None` when every row group does.
fn plan<T>(
    builder: &ArrowReaderBuilder<T>,
    date: &str,
    (from, until): (i64, i64),
    what: &str,
) -> Result<Option<(ProjectionMask, Vec<usize>)>> {
    let contract = |detail: String| Error::Contract {
        what: what.to_string(),
        detail,
    };
    let unit = match builder
        .schema()
        .field_with_name(date)
        .map(|f| f.data_type())
    {
        Ok(DataType::Timestamp(unit, _)) => *unit,
        Ok(other) => return Err(contract(format!("{date} is {other}, not a timestamp"))),
        Err(_) => return Err(contract(format!("no column {date}"))),
    };
    // Statistics in the file's unit, as milliseconds.
    let per_ms = match unit {
        TimeUnit::Second => None,
        TimeUnit::Millisecond => Some(1),
        TimeUnit::Microsecond => Some(1_000),
        TimeUnit::Nanosecond => Some(1_000_000),
    };
    let schema = builder.parquet_schema();
    let leaf = (0..schema.num_columns()).find(|&i| schema.column(i).path().parts() == [date]);
    let metadata = builder.metadata();
    let row_groups: Vec<usize> = (0..metadata.num_row_groups())
        .filter(|&i| {
            let (Some(leaf), Some(per_ms)) = (leaf, per_ms) else {
                return true;
            };
            match metadata.row_group(i).column(leaf).statistics() {
                Some(Statistics::Int64(s)) => match (s.min_opt(), s.max_opt()) {
                    (Some(&min), Some(&max)) => max / per_ms >= from && min / per_ms < until,
                    _ => true,
                },
                _ => true,
            }
        })
        .collect();
    if row_groups.is_empty() {
        return Ok(None);
    }
    let mask = ProjectionMask::columns(schema, ["ticket_id", date, "total_minutes"]);
    Ok(Some((mask, row_groups)))
}

/// Adds (`date` in ms, ticket, minutes) of the rows of `batch` in the year to `out`.
fn rows_of(
    batch: &RecordBatch,
    date: &str,
    (from, until): (i64, i64),
    what: &str,
    out: &mut Vec<(i64, i64, i64)>,
) -> Result<()> {
    let contract = |detail: String| Error::Contract {
        what: what.to_string(),
        detail,
    };
    let column = |name: &str, to: &DataType| {
        let c = batch
            .column_by_name(name)
            .ok_or_else(|| contract(format!("no column {name}")))?;
        arrow::compute::cast(c, to).map_err(|e| contract(format!("{name}: {e}")))
    };
    let millis = DataType::Timestamp(TimeUnit::Millisecond, Some(Arc::from("UTC")));
    let ids = column("ticket_id", &DataType::Int64)?;
    let ids = ids.as_primitive::<Int64Type>();
    let minutes = column("total_minutes", &DataType::Int64)?;
    let minutes = minutes.as_primitive::<Int64Type>();
    let at = column(date, &millis)?;
    let at = at.as_primitive::<TimestampMillisecondType>();
    for row in 0..batch.num_rows() {
        if at.is_null(row) {
            return Err(contract(format!("{date} is null in row {row}")));
        }
        let when = at.value(row);
        if when < from || when >= until {
            continue;
        }
        if ids.is_null(row) {
            return Err(contract(format!("ticket_id is null in row {row}")));
        }
        if minutes.is_null(row) {
            return Err(contract(format!(
                "total_minutes is null for ticket {}",
                ids.value(row)
            )));
        }
        out.push((when, ids.value(row), minutes.value(row)));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_and_years_of_an_instant() {
        let at = Utc
            .with_ymd_and_hms(2026, 3, 31, 23, 59, 59)
            .unwrap()
            .timestamp_millis();
        assert_eq!(period_of(Period::Month, 2026, at), "2026-03");
        assert_eq!(period_of(Period::Year, 2026, at), "2026");
        let (from, until) = year_millis(2026);
        assert_eq!(
            DateTime::from_timestamp_millis(from).unwrap().to_rfc3339(),
            "2026-01-01T00:00:00+00:00"
        );
        assert_eq!(until - from, 365 * 86_400_000);
    }

    #[test]
    fn the_logs_statistics_skip_a_file_only_when_they_say_so() {
        let file = |stats: Option<&str>| DataFile {
            path: "p.parquet".into(),
            partition: crate::state::delta::Partition::placed("acme", "100", 2025),
            size: 1,
            rows: None,
            stats: stats.map(String::from),
        };
        let (from, until) = year_millis(2026);
        let bounds = |min: &str, max: &str| {
            format!(
                r#"{{"numRecords":3,"minValues":{{"last_updated_at":"{min}"}},"maxValues":{{"last_updated_at":"{max}"}}}}"#
            )
        };
        let skip =
            |stats: Option<&str>| log_says_outside(&file(stats), "last_updated_at", from, until);
        assert!(skip(Some(&bounds(
            "2025-01-02T00:00:00.000Z",
            "2025-12-31T23:59:59.999Z"
        ))));
        assert!(!skip(Some(&bounds(
            "2025-01-02T00:00:00.000Z",
            "2026-01-01T00:00:00.000Z"
        ))));
        assert!(skip(Some(&bounds(
            "2027-01-01T00:00:00Z",
            "2027-02-01T00:00:00Z"
        ))));
        assert!(!skip(Some(&bounds(
            "2026-12-31T23:59:59.999Z",
            "2027-02-01T00:00:00Z"
        ))));
        // No statistics, other columns' only, or unreadable ones: read the file.
        assert!(!skip(None));
        assert!(!skip(Some(r#"{"numRecords":3}"#)));
        assert!(!skip(Some("not json")));
    }

    /// A file of three row groups (2025, the turn of the year, 2026) read whole and by ranges:
    /// the same rows of 2026, the row group of 2025 not even decoded (a null there would fail).
    #[tokio::test]
    async fn a_file_read_whole_or_by_ranges_gives_the_rows_of_the_year() {
        use arrow::array::{Int32Array, Int64Array, TimestampMillisecondArray};
        use arrow::datatypes::{Field, Schema};
        use parquet::arrow::ArrowWriter;
        use parquet::file::properties::WriterProperties;

        let ms = |y, m, d| {
            Utc.with_ymd_and_hms(y, m, d, 12, 0, 0)
                .unwrap()
                .timestamp_millis()
        };
        let schema = Arc::new(Schema::new(vec![
            Field::new("ticket_id", DataType::Int64, true),
            Field::new("subject", DataType::Utf8, true),
            Field::new(
                "last_updated_at",
                DataType::Timestamp(TimeUnit::Millisecond, Some(Arc::from("UTC"))),
                false,
            ),
            Field::new("total_minutes", DataType::Int32, true),
        ]));
        let groups = [
            // 2025 only, with a null id that must never be read.
            (
                vec![None, Some(2)],
                vec![ms(2025, 3, 1), ms(2025, 12, 31)],
                vec![5, 6],
            ),
            (
                vec![Some(3), Some(4)],
                vec![ms(2025, 12, 31), ms(2026, 1, 1)],
                vec![7, 8],
            ),
            (
                vec![Some(5), Some(6)],
                vec![ms(2026, 6, 1), ms(2026, 12, 31)],
                vec![9, 10],
            ),
        ];
        let props = WriterProperties::builder()
            .set_max_row_group_row_count(Some(2))
            .build();
        let mut buffer = Vec::new();
        let mut writer = ArrowWriter::try_new(&mut buffer, schema.clone(), Some(props)).unwrap();
        for (ids, at, minutes) in groups {
            let batch = RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(Int64Array::from(ids)),
                    Arc::new(arrow::array::StringArray::from(vec!["s"; 2])),
                    Arc::new(TimestampMillisecondArray::from(at).with_timezone("UTC")),
                    Arc::new(Int32Array::from(minutes)),
                ],
            )
            .unwrap();
            writer.write(&batch).unwrap();
            writer.flush().unwrap();
        }
        writer.close().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::local(dir.path()).unwrap();
        let path = Path::from("tickets/part.parquet");
        let size = buffer.len() as u64;
        storage.put(&path, buffer.into()).await.unwrap();
        let year = year_millis(2026);
        let expected = vec![
            (ms(2026, 1, 1), 4, 8),
            (ms(2026, 6, 1), 5, 9),
            (ms(2026, 12, 31), 6, 10),
        ];
        for whole in [u64::MAX, 0] {
            let rows = read_file(&storage, &path, size, "last_updated_at", year, whole)
                .await
                .unwrap();
            assert_eq!(rows, expected, "whole below {whole}");
        }
        // Every row group is read for 2025: the null id is a contract error naming the file.
        let err = read_file(
            &storage,
            &path,
            size,
            "last_updated_at",
            year_millis(2025),
            0,
        )
        .await
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("tickets/part.parquet") && err.contains("ticket_id"),
            "{err}"
        );
    }
}
