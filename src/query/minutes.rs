//! Minutes per ticket and period, all an adjustment list (`--changes-since`) compares: three
//! columns of every selected `tickets` file, at two versions of the table. The rollups of the
//! ticket-level bases (`updated`, `closed`) are the same reading with one column more
//! (billable minutes), summed per account and period.
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

/// A row of a tickets file, the columns a rollup sums.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Row {
    /// The basis' date (`last_updated_at` or `closed_at`), ms since the epoch.
    pub at: Option<i64>,
    pub ticket_id: Option<i64>,
    /// `total_minutes`.
    pub minutes: Option<i64>,
    /// `billable_minutes` (`None` too when not asked for).
    pub billable: Option<i64>,
}

/// What a reading of the tickets files asks for.
#[derive(Debug, Clone, Copy)]
struct Reading {
    /// The basis' date column.
    date: &'static str,
    /// Only rows whose date lies in `[from, until)` (ms), files and row groups outside skipped;
    /// `None`: every row of the selected partitions.
    within: Option<(i64, i64)>,
    /// Read `billable_minutes` too.
    billable: bool,
}

impl Dataset {
    /// The exact minutes (`total_minutes`, what `hours` sums) of every ticket in `query`'s
    /// periods, by domain, account and period: the tickets [`Dataset::explain`] lists, without
    /// reading anything else. Ticket-level bases only (`updated`, `closed`).
    pub(super) async fn minutes_by_period(&self, query: &RollupQuery) -> Result<Periods> {
        let reading = Reading {
            date: date_of(query.basis),
            within: Some(year_millis(query.year)),
            billable: false,
        };
        let (period, year) = (query.period, query.year);
        self.each_file(
            query,
            reading,
            Periods::new(),
            |out, domain, account, rows, what| {
                for row in rows {
                    let (Some(at), Some(ticket)) = (row.at, row.ticket_id) else {
                        return Err(contract(what, "a row of the year has no ticket_id"));
                    };
                    let Some(minutes) = row.minutes else {
                        return Err(contract(
                            what,
                            &format!("total_minutes is null for ticket {ticket}"),
                        ));
                    };
                    out.entry((
                        domain.to_string(),
                        account.to_string(),
                        period_of(period, year, at),
                    ))
                    .or_default()
                    .insert(ticket, minutes);
                }
                Ok(())
            },
        )
        .await
    }

    /// A rollup of a ticket-level basis (`updated`, `closed`): per account and period, the
    /// tickets, their minutes and billable minutes (a null counts as none). Four columns of each
    /// file; the tests hold the sums to the simulator's time entries and DuckDB's (the benchmark).
    pub(super) async fn ticket_rollup(
        &self,
        query: &RollupQuery,
    ) -> Result<BTreeMap<(String, Option<u32>), (u64, i64, i64)>> {
        let reading = Reading {
            date: date_of(query.basis),
            // Closed: the partitions are the year's (`year=` is when a ticket closed).
            within: (query.basis != Basis::Closed).then(|| year_millis(query.year)),
            billable: true,
        };
        let by_month = query.period == Period::Month;
        self.each_file(
            query,
            reading,
            BTreeMap::new(),
            |out, _, account, rows, what| {
                for row in rows {
                    let month = match (by_month, row.at) {
                        (false, _) => None,
                        (true, Some(at)) => Some(
                            DateTime::from_timestamp_millis(at)
                                .ok_or_else(|| contract(what, "a date out of range"))?
                                .month(),
                        ),
                        (true, None) => {
                            return Err(contract(what, "a row has no valid month (None)"));
                        }
                    };
                    let sums: &mut (u64, i64, i64) =
                        out.entry((account.to_string(), month)).or_default();
                    sums.0 += 1;
                    sums.1 += row.minutes.unwrap_or(0);
                    sums.2 += row.billable.unwrap_or(0);
                }
                Ok(())
            },
        )
        .await
    }

    /// Reads the selected tickets files of `query` (see [`Reading`]) concurrently, folding
    /// each file's rows into `init` with its domain, account and path.
    async fn each_file<A>(
        &self,
        query: &RollupQuery,
        reading: Reading,
        init: A,
        mut add: impl FnMut(&mut A, &str, &str, Vec<Row>, &str) -> Result<()>,
    ) -> Result<A> {
        let selection = Selection {
            account: query.account.as_deref(),
            years: Years::of(query.basis, Some(query.year)),
        };
        let view = self.view(&[Table::Tickets], selection).await?;
        let mut files = Vec::new();
        let mut listed = 0usize;
        for partition in view.partitions(Table::Tickets) {
            let Some(account) = partition.account.clone() else {
                continue;
            };
            for file in view.files(Table::Tickets, partition) {
                listed += 1;
                let outside = reading
                    .within
                    .is_some_and(|(from, until)| log_says_outside(file, reading.date, from, until));
                if !outside {
                    files.push((partition.domain.clone(), account.clone(), file.clone()));
                }
            }
        }
        if listed == 0 {
            self.nothing_selected(selection).await?;
            return Ok(init);
        }
        let mut read = futures::stream::iter(files.iter().cloned())
            .map(|(domain, account, file)| {
                let storage = self.storage.clone();
                async move {
                    let path = file.object(Table::Tickets);
                    let task = tokio::spawn(async move {
                        let rows = read_file(&storage, &path, file.size, reading, WHOLE_FILE_BYTES)
                            .await?;
                        Ok::<_, Error>((domain, account, path, rows))
                    });
                    task.await.map_err(Error::Task)?
                }
            })
            .buffer_unordered(PARALLEL_FILES);
        let mut out = init;
        let failed = loop {
            match read.next().await {
                None => break None,
                Some(Ok((domain, account, path, rows))) => {
                    if let Err(e) = add(&mut out, &domain, &account, rows, path.as_ref()) {
                        break Some(e);
                    }
                }
                Some(Err(e)) => break Some(e),
            }
        };
        drop(read);
        match failed {
            None => Ok(out),
            Some(e) => {
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

/// The date column of a ticket-level basis.
fn date_of(basis: Basis) -> &'static str {
    match basis {
        Basis::Closed => "closed_at",
        _ => "last_updated_at",
    }
}

fn contract(what: &str, detail: &str) -> Error {
    Error::Contract {
        what: what.to_string(),
        detail: detail.to_string(),
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

/// The rows of the tickets file `path` that `reading` asks for; fetched whole when it is at
/// most `whole` bytes.
async fn read_file(
    storage: &Storage,
    path: &Path,
    size: u64,
    reading: Reading,
    whole: u64,
) -> Result<Vec<Row>> {
    let what = path.to_string();
    let failed = |e: parquet::errors::ParquetError| Error::Contract {
        what: what.clone(),
        detail: format!("unreadable Parquet: {e}"),
    };
    // The rows' types are the Parquet schema's: the Arrow schema embedded beside it says
    // nothing these columns need.
    let options = ArrowReaderOptions::new().with_skip_arrow_metadata(true);
    let mut out = Vec::new();
    if size <= whole {
        let bytes = storage.get_existing(path).await?;
        let builder = ParquetRecordBatchReaderBuilder::try_new_with_options(bytes, options)
            .map_err(failed)?;
        let Some((mask, row_groups)) = plan(&builder, reading, &what)? else {
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
            rows_of(&batch, reading, &what, &mut out)?;
        }
    } else {
        let reader = storage.parquet_reader(path, size);
        let builder = ParquetRecordBatchStreamBuilder::new_with_options(reader, options)
            .await
            .map_err(failed)?;
        let Some((mask, row_groups)) = plan(&builder, reading, &what)? else {
            return Ok(out);
        };
        let mut stream = builder
            .with_projection(mask)
            .with_row_groups(row_groups)
            .with_batch_size(64 * 1024)
            .build()
            .map_err(failed)?;
        while let Some(batch) = stream.try_next().await.map_err(failed)? {
            rows_of(&batch, reading, &what, &mut out)?;
        }
    }
    Ok(out)
}

/// The columns to read and the row groups whose statistics do not lie outside the year, or
/// `None` when every row group does.
fn plan<T>(
    builder: &ArrowReaderBuilder<T>,
    reading: Reading,
    what: &str,
) -> Result<Option<(ProjectionMask, Vec<usize>)>> {
    let date = reading.date;
    let unit = match builder
        .schema()
        .field_with_name(date)
        .map(|f| f.data_type())
    {
        Ok(DataType::Timestamp(unit, _)) => *unit,
        Ok(other) => {
            return Err(contract(
                what,
                &format!("{date} is {other}, not a timestamp"),
            ))
        }
        Err(_) => return Err(contract(what, &format!("no column {date}"))),
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
            let (Some((from, until)), Some(leaf), Some(per_ms)) = (reading.within, leaf, per_ms)
            else {
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
    let mut columns = vec!["ticket_id", date, "total_minutes"];
    if reading.billable {
        columns.push("billable_minutes");
    }
    let mask = ProjectionMask::columns(schema, columns);
    Ok(Some((mask, row_groups)))
}

/// Adds the rows of `batch` that `reading` asks for to `out`.
fn rows_of(batch: &RecordBatch, reading: Reading, what: &str, out: &mut Vec<Row>) -> Result<()> {
    let column = |name: &str, to: &DataType| -> Result<Option<arrow::array::ArrayRef>> {
        match batch.column_by_name(name) {
            // (A column a file lacks reads as nulls, as polars reads it.)
            None => Ok(None),
            Some(c) => arrow::compute::cast(c, to)
                .map(Some)
                .map_err(|e| contract(what, &format!("{name}: {e}"))),
        }
    };
    let millis = DataType::Timestamp(TimeUnit::Millisecond, Some(Arc::from("UTC")));
    let int =
        |name: &str| -> Result<Option<arrow::array::ArrayRef>> { column(name, &DataType::Int64) };
    let ids = int("ticket_id")?;
    let minutes = int("total_minutes")?;
    let billable = if reading.billable {
        int("billable_minutes")?
    } else {
        None
    };
    let at = column(reading.date, &millis)?;
    let value = |array: &Option<arrow::array::ArrayRef>, row: usize| {
        array.as_ref().and_then(|a| {
            let a = a.as_primitive::<Int64Type>();
            (!a.is_null(row)).then(|| a.value(row))
        })
    };
    let at = at
        .as_ref()
        .map(|a| a.as_primitive::<TimestampMillisecondType>());
    for row in 0..batch.num_rows() {
        let when = at.and_then(|a| (!a.is_null(row)).then(|| a.value(row)));
        if let Some((from, until)) = reading.within {
            // (A row without the date is in no year, as polars' filter has it.)
            if !when.is_some_and(|t| t >= from && t < until) {
                continue;
            }
        }
        out.push(Row {
            at: when,
            ticket_id: value(&ids, row),
            minutes: value(&minutes, row),
            billable: value(&billable, row),
        });
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
    /// the same rows of 2026, the row group of 2025 skipped.
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
        let reading = |within| Reading {
            date: "last_updated_at",
            within,
            billable: false,
        };
        let row = |at, id, minutes| Row {
            at: Some(at),
            ticket_id: id,
            minutes: Some(minutes),
            billable: None,
        };
        let expected = vec![
            row(ms(2026, 1, 1), Some(4), 8),
            row(ms(2026, 6, 1), Some(5), 9),
            row(ms(2026, 12, 31), Some(6), 10),
        ];
        for whole in [u64::MAX, 0] {
            let within = Some(year_millis(2026));
            let rows = read_file(&storage, &path, size, reading(within), whole)
                .await
                .unwrap();
            assert_eq!(rows, expected, "whole below {whole}");
        }
        // 2025: the first two row groups; every row without a year.
        let rows = read_file(&storage, &path, size, reading(Some(year_millis(2025))), 0)
            .await
            .unwrap();
        let ids: Vec<Option<i64>> = rows.iter().map(|r| r.ticket_id).collect();
        assert_eq!(ids, [None, Some(2), Some(3)]);
        let rows = read_file(&storage, &path, size, reading(None), u64::MAX)
            .await
            .unwrap();
        assert_eq!(rows.len(), 6);
    }
}
