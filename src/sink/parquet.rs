//! Parquet encoding and decoding of partition files, and the row-level merge that replaces a
//! re-synced ticket's rows.
//!
//! A commit gives each partition it touches one new file (several, by `ticket_id` range, past
//! the size cap: [`encode_capped`]): read the rows of the files that hold the tickets being
//! replaced, drop those tickets' rows, add their new rows, sort by key, encode (zstd; Snappy when
//! small).
//! Encoding runs on the blocking pool, off the async reactor.

use std::collections::BTreeSet;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BooleanArray, Int64Array, RecordBatch};
use arrow::compute::{
    concat_batches, filter_record_batch, lexsort_to_indices, take_record_batch, SortColumn,
};
use arrow::datatypes::SchemaRef;
use bytes::Bytes;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use crate::tables::Table;

/// Decoding or encoding a partition file failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file (already in the dataset, or staged) did not decode as Parquet of the table.
    #[error("cannot read parquet file {path}: {detail}")]
    Read {
        /// The object path.
        path: String,
        /// The Parquet or Arrow message, or the column that cannot be conformed.
        detail: String,
    },
    /// Rows could not be encoded as Parquet.
    #[error("cannot write parquet for {path}: {detail}")]
    Write {
        /// The partition the file was for.
        path: String,
        /// The Parquet or Arrow message.
        detail: String,
    },
}

impl crate::error::Classify for Error {
    /// A file that does not decode or encode will not by itself on a rerun.
    fn class(&self) -> crate::error::Class {
        crate::error::Class::Failed
    }
}

/// Decodes a whole Parquet file and conforms it to `schema` (columns added since the file was
/// written become nulls; a column that cannot be conformed is an error naming the file).
pub fn decode(bytes: Bytes, schema: &SchemaRef, path: &str) -> Result<Vec<RecordBatch>, Error> {
    let read_err = |detail: String| Error::Read {
        path: path.to_string(),
        detail,
    };
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
        .map_err(|e| read_err(e.to_string()))?
        .with_batch_size(64 * 1024)
        .build()
        .map_err(|e| read_err(e.to_string()))?;
    let mut out = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| read_err(e.to_string()))?;
        out.push(conform(&batch, schema).map_err(read_err)?);
    }
    Ok(out)
}

/// Projects/casts `batch` onto `schema` by column name.
fn conform(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch, String> {
    if batch.schema() == *schema {
        return Ok(batch.clone());
    }
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
    for field in schema.fields() {
        match batch.column_by_name(field.name()) {
            Some(col) if col.data_type() == field.data_type() => columns.push(col.clone()),
            Some(col) => columns.push(
                arrow::compute::cast(col, field.data_type())
                    .map_err(|e| format!("column {}: {e}", field.name()))?,
            ),
            None if field.is_nullable() => columns.push(arrow::array::new_null_array(
                field.data_type(),
                batch.num_rows(),
            )),
            None => return Err(format!("required column {} is missing", field.name())),
        }
    }
    RecordBatch::try_new(schema.clone(), columns).map_err(|e| e.to_string())
}

/// Rows of `batch` whose `ticket_id` is not in `drop`.
pub fn without_tickets(batch: &RecordBatch, drop: &BTreeSet<i64>) -> RecordBatch {
    if drop.is_empty() || batch.num_rows() == 0 {
        return batch.clone();
    }
    let ids = ticket_ids(batch);
    let keep: BooleanArray = (0..ids.len())
        .map(|i| Some(ids.is_null(i) || !drop.contains(&ids.value(i))))
        .collect();
    // The mask has the batch's length by construction.
    filter_record_batch(batch, &keep).expect("mask matches the batch")
}

/// The `ticket_id` column (every table has it as its first column).
pub fn ticket_ids(batch: &RecordBatch) -> &Int64Array {
    batch
        .column_by_name("ticket_id")
        .and_then(|c| c.as_any().downcast_ref::<Int64Array>())
        .expect("every table has an int64 ticket_id column")
}

/// Concatenates and sorts by the table's key, so the same rows always encode to the same file.
pub fn merge_sorted(table: Table, batches: &[RecordBatch]) -> Result<RecordBatch, String> {
    let schema = table.schema();
    let merged = concat_batches(&schema, batches).map_err(|e| e.to_string())?;
    if merged.num_rows() <= 1 {
        return Ok(merged);
    }
    let mut keys = vec![SortColumn {
        values: merged.column(0).clone(),
        options: None,
    }];
    if let Some(key) = table.row_key() {
        let column = merged
            .column_by_name(key)
            .ok_or_else(|| format!("missing key column {key}"))?;
        keys.push(SortColumn {
            values: column.clone(),
            options: None,
        });
    }
    let indices = lexsort_to_indices(&keys, None).map_err(|e| e.to_string())?;
    take_record_batch(&merged, &indices).map_err(|e| e.to_string())
}

/// Files of at most this many rows are compressed with Snappy rather than zstd: zstd sets up a
/// compressor per column chunk, which for a small file costs more than it saves (a run's last
/// commit, mostly small appends, spent 215–275 ms encoding about 80 files with zstd, 87 ms
/// with Snappy; a checkpoint of 250 tickets 150–330 ms, 34–110 ms).
const SMALL_FILE_ROWS: usize = 2048;

/// Encodes one batch as a Parquet file, zstd-compressed (Snappy when small).
pub fn encode(batch: &RecordBatch, path: &str) -> Result<Bytes, Error> {
    let write_err = |e: parquet::errors::ParquetError| Error::Write {
        path: path.to_string(),
        detail: e.to_string(),
    };
    let compression = if batch.num_rows() <= SMALL_FILE_ROWS {
        Compression::SNAPPY
    } else {
        Compression::ZSTD(ZstdLevel::try_new(3).map_err(write_err)?)
    };
    let props = WriterProperties::builder()
        .set_compression(compression)
        .set_max_row_group_row_count(Some(128 * 1024))
        .build();
    let mut buf = Vec::with_capacity(64 * 1024);
    let mut writer =
        ArrowWriter::try_new(&mut buf, batch.schema(), Some(props)).map_err(write_err)?;
    writer.write(batch).map_err(write_err)?;
    writer.close().map_err(write_err)?;
    Ok(Bytes::from(buf))
}

/// Encodes `batch` (sorted by `ticket_id`) as one file, or, when that file would be larger
/// than `cap` bytes, as the fewest files of about equal rows that each stay near the cap. A
/// ticket's rows are never split between files, so each file covers its own `ticket_id` range
/// and a later change to a ticket rewrites only the file that holds it.
pub fn encode_capped(
    batch: &RecordBatch,
    path: &str,
    cap: usize,
) -> Result<Vec<(RecordBatch, Bytes)>, Error> {
    let whole = encode(batch, path)?;
    if whole.len() <= cap || batch.num_rows() < 2 {
        return Ok(vec![(batch.clone(), whole)]);
    }
    let chunks = whole.len().div_ceil(cap);
    let ids = ticket_ids(batch);
    let rows = batch.num_rows();
    let mut out = Vec::with_capacity(chunks);
    let mut start = 0;
    for k in 1..=chunks {
        let mut end = if k == chunks { rows } else { rows * k / chunks };
        // Move the cut forward to the next ticket boundary.
        while end > start && end < rows && ids.value(end) == ids.value(end - 1) {
            end += 1;
        }
        if end <= start {
            continue;
        }
        let part = batch.slice(start, end - start);
        let bytes = encode(&part, path)?;
        out.push((part, bytes));
        start = end;
    }
    Ok(out)
}

/// A shared empty batch of a table (for tables without rows).
pub fn empty(table: Table) -> RecordBatch {
    RecordBatch::new_empty(Arc::clone(&table.schema()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::normalize::{RejectReason, Rejection};
    use crate::tables::rejects_batch;

    fn reject(id: i64) -> Rejection {
        Rejection {
            ticket_id: id,
            reason: RejectReason::NoDepartment,
            department_id: None,
            detail: format!("ticket {id}: no department"),
            updated_at: None,
            seen_at: "2025-01-01T00:00:00Z".parse().unwrap(),
        }
    }

    #[test]
    fn encode_decode_filter_merge() {
        let rows: Vec<Rejection> = [3, 1, 2].into_iter().map(reject).collect();
        let batch = rejects_batch(&rows.iter().collect::<Vec<_>>());
        let bytes = encode(&batch, "x").unwrap();
        let back = decode(bytes, &Table::Rejects.schema(), "x").unwrap();
        assert_eq!(back.iter().map(|b| b.num_rows()).sum::<usize>(), 3);
        let kept = without_tickets(&back[0], &BTreeSet::from([2]));
        let merged = merge_sorted(Table::Rejects, &[kept]).unwrap();
        assert_eq!(ticket_ids(&merged).values().to_vec(), vec![1, 3]);
    }

    #[test]
    fn a_file_past_the_cap_is_split_between_tickets_into_files_near_the_cap() {
        // 300 tickets of 3 rows each, with details that do not compress away.
        let mut seed = 7u64;
        let rows: Vec<Rejection> = (1..=300)
            .flat_map(|id| (0..3).map(move |_| id))
            .map(|id| Rejection {
                detail: crate::sink::tests::noise(&mut seed, 40, ""),
                ..reject(id)
            })
            .collect();
        let batch = rejects_batch(&rows.iter().collect::<Vec<_>>());
        let whole = encode(&batch, "x").unwrap().len();

        let one = encode_capped(&batch, "x", whole).unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].0.num_rows(), 900);

        let cap = whole / 5;
        let files = encode_capped(&batch, "x", cap).unwrap();
        assert!(files.len() >= 5, "{} files", files.len());
        let mut last_max = 0;
        let mut total = 0;
        for (part, bytes) in &files {
            assert!(
                bytes.len() <= cap + cap / 4,
                "{} bytes for a cap of {cap}",
                bytes.len()
            );
            let back = decode(bytes.clone(), &Table::Rejects.schema(), "x").unwrap();
            assert_eq!(&back[0], part);
            let ids = ticket_ids(part);
            // Each file its own range: no ticket in two files.
            assert!(ids.value(0) > last_max, "{} after {last_max}", ids.value(0));
            assert_eq!(ids.len() % 3, 0);
            last_max = ids.value(ids.len() - 1);
            total += part.num_rows();
        }
        assert_eq!((total, last_max), (900, 300));
    }

    /// A partition file written by the release before the issue-11 columns (the committed
    /// fixture) decodes against today's schema: old columns as written, added columns null.
    #[test]
    fn an_old_partition_file_decodes_with_the_added_columns_null() {
        for (table, file, added) in [
            (
                Table::Tickets,
                "tickets/account=125161/year=2026/part-0.parquet",
                20,
            ),
            (
                Table::Conversations,
                "conversations/account=125161/year=2026/part-0.parquet",
                1,
            ),
            (
                Table::TimeEntries,
                "time_entries/account=125161/year=2026/part-0.parquet",
                5,
            ),
        ] {
            let path = format!(
                "{}/tests/fixtures/dataset-v1/{file}",
                env!("CARGO_MANIFEST_DIR")
            );
            let bytes = Bytes::from(std::fs::read(&path).unwrap());
            let raw: Vec<RecordBatch> = ParquetRecordBatchReaderBuilder::try_new(bytes.clone())
                .unwrap()
                .build()
                .unwrap()
                .map(|b| b.unwrap())
                .collect();
            let schema = table.schema();
            let old_width = raw[0].num_columns();
            assert_eq!(old_width + added, schema.fields().len(), "{file}");
            let decoded = decode(bytes, &schema, &path).unwrap();
            assert_eq!(decoded.len(), raw.len());
            for (old, new) in raw.iter().zip(&decoded) {
                assert_eq!(new.schema(), schema);
                assert!(new.num_rows() > 0);
                for i in 0..old_width {
                    assert_eq!(old.column(i).as_ref(), new.column(i).as_ref(), "{file} {i}");
                }
                for i in old_width..schema.fields().len() {
                    assert_eq!(new.column(i).null_count(), new.num_rows(), "{file} {i}");
                }
            }
            // And it merges with rows of today's layout.
            let merged = merge_sorted(table, &[decoded[0].clone(), empty(table)]).unwrap();
            assert_eq!(merged.num_rows(), decoded[0].num_rows());
        }
    }

    #[test]
    fn garbage_is_a_read_error_naming_the_file() {
        let err = decode(
            Bytes::from_static(b"not parquet"),
            &Table::Rejects.schema(),
            "rejects/part-0.parquet",
        )
        .unwrap_err();
        assert!(err.to_string().contains("rejects/part-0.parquet"), "{err}");
    }
}
