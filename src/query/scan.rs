//! polars scans over explicit partition files, and polars' S3 settings.

use std::sync::Arc;

use object_store::aws::AmazonS3ConfigKey;
use object_store::ClientConfigKey;
use polars::prelude::cloud::CloudOptions;
use polars::prelude::*;

use super::{Dataset, Error, PartitionFile, Result};
use crate::storage::S3Options;

/// The Hive keys of every partitioned table, typed as the contract says: an all-digit account
/// number stays a string (`007` is not `7`).
fn hive_schema() -> SchemaRef {
    Arc::new(Schema::from_iter([
        Field::new("domain".into(), DataType::String),
        Field::new("account".into(), DataType::String),
        Field::new("year".into(), DataType::Int32),
    ]))
}

/// polars' AWS settings for a dataset on S3: the same [`S3Options`] the object store is built
/// from. Credentials are not here: polars, like object_store, reads the `AWS_*` environment
/// (and `~/.aws/credentials`) itself.
pub(crate) fn s3_config(s3: &S3Options) -> Vec<(AmazonS3ConfigKey, String)> {
    let mut config = Vec::new();
    if let Some(endpoint) = &s3.endpoint {
        config.push((AmazonS3ConfigKey::Endpoint, endpoint.clone()));
    }
    if let Some(region) = &s3.region {
        config.push((AmazonS3ConfigKey::Region, region.clone()));
    }
    if let Some(path_style) = s3.path_style {
        config.push((
            AmazonS3ConfigKey::VirtualHostedStyleRequest,
            (!path_style).to_string(),
        ));
    }
    if let Some(allow_http) = s3.allow_http {
        config.push((
            AmazonS3ConfigKey::Client(ClientConfigKey::AllowHttp),
            allow_http.to_string(),
        ));
    }
    // Server-side encryption is transparent to reads: nothing to pass on.
    config
}

pub(crate) fn cloud_options(s3: &S3Options) -> CloudOptions {
    CloudOptions::default().with_aws(s3_config(s3))
}

impl Dataset {
    /// A lazy scan of exactly `files` (all of one table), with the Hive keys as columns.
    /// `None` when there is no file: the table has no rows in the selection.
    pub(crate) fn scan(&self, files: &[PartitionFile]) -> Result<Option<LazyFrame>> {
        if files.is_empty() {
            return Ok(None);
        }
        let paths: Vec<PlRefPath> = files
            .iter()
            .map(|f| PlRefPath::new(self.location(&f.path)))
            .collect();
        let args = ScanArgsParquet {
            hive_options: HiveOptions {
                enabled: Some(true),
                hive_start_idx: 0,
                schema: Some(hive_schema()),
                try_parse_dates: false,
            },
            cloud_options: self.cloud.clone(),
            // The paths are files we listed, never patterns.
            glob: false,
            // Files written before a nullable column was added read as nulls.
            allow_missing_columns: true,
            ..ScanArgsParquet::default()
        };
        LazyFrame::scan_parquet_files(paths.into_iter().collect(), args)
            .map(Some)
            .map_err(|source| Error::Read {
                what: describe(files),
                source,
            })
    }
}

/// `name` (an instant column, `timestamp[ms, UTC]` in the contract) falls in the UTC year
/// `year`. Said as a range of instants rather than `dt().year() == year`, so that the Parquet
/// reader skips the row groups whose statistics lie outside it: most of a closed year's files
/// when the question is about a later year.
pub(crate) fn in_year(name: &str, year: i32) -> Expr {
    let instant = |y: i32| {
        let ms = chrono::NaiveDate::from_ymd_opt(y, 1, 1)
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map_or(if y < 0 { i64::MIN } else { i64::MAX }, |t| {
                t.and_utc().timestamp_millis()
            });
        lit(ms).cast(DataType::Datetime(
            TimeUnit::Milliseconds,
            Some(TimeZone::UTC),
        ))
    };
    col(name)
        .gt_eq(instant(year))
        .and(col(name).lt(instant(year.saturating_add(1))))
}

/// `tickets/account=1/year=2025/part-0.parquet` or `notes (12 files)`, for error messages.
pub(crate) fn describe(files: &[PartitionFile]) -> String {
    match files {
        [one] => one.path.to_string(),
        _ => {
            let table = files
                .first()
                .and_then(|f| f.path.parts().next())
                .map(|p| p.as_ref().to_string())
                .unwrap_or_default();
            format!("{table} ({} files)", files.len())
        }
    }
}

/// Runs `lf` on the blocking pool: polars has its own threads (and its own runtime for S3).
pub(crate) async fn collect(lf: LazyFrame, what: String) -> Result<DataFrame> {
    tokio::task::spawn_blocking(move || lf.collect().map_err(|source| Error::Read { what, source }))
        .await
        .map_err(Error::Task)?
}

/// A column as a series, or a contract error naming it.
pub(crate) fn column<'a>(df: &'a DataFrame, name: &str, what: &str) -> Result<&'a Series> {
    df.column(name)
        .map(|c| c.as_materialized_series())
        .map_err(|e| Error::Contract {
            what: what.to_string(),
            detail: e.to_string(),
        })
}

/// Converts a polars typing error into a contract error naming the data.
pub(crate) fn contract<T>(result: PolarsResult<T>, what: &str) -> Result<T> {
    result.map_err(|e| Error::Contract {
        what: what.to_string(),
        detail: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_year_is_its_utc_instants_from_new_year_to_new_year() {
        let ms = |s: &str| {
            chrono::DateTime::parse_from_rfc3339(s)
                .unwrap()
                .timestamp_millis()
        };
        let at = [
            ms("2025-12-31T23:59:59.999Z"),
            ms("2026-01-01T00:00:00Z"),
            ms("2026-12-31T23:59:59.999Z"),
            ms("2027-01-01T00:00:00Z"),
        ];
        let instants = Series::new("at".into(), at.to_vec())
            .cast(&DataType::Datetime(
                TimeUnit::Milliseconds,
                Some(TimeZone::UTC),
            ))
            .unwrap();
        let df = DataFrame::new(4, vec![instants.into()]).unwrap();
        let kept = df.lazy().filter(in_year("at", 2026)).collect().unwrap();
        let kept: Vec<i64> = kept
            .column("at")
            .unwrap()
            .cast(&DataType::Int64)
            .unwrap()
            .i64()
            .unwrap()
            .into_no_null_iter()
            .collect();
        assert_eq!(kept, &at[1..3]);
    }

    #[test]
    fn s3_options_become_polars_settings() {
        let s3 = S3Options {
            endpoint: Some("http://127.0.0.1:9000".into()),
            region: Some("eu-central-1".into()),
            path_style: Some(true),
            allow_http: Some(true),
            sse: Some("aws:kms".into()),
            sse_kms_key_id: Some("key".into()),
        };
        let config = s3_config(&s3);
        assert_eq!(
            config,
            vec![
                (AmazonS3ConfigKey::Endpoint, "http://127.0.0.1:9000".into()),
                (AmazonS3ConfigKey::Region, "eu-central-1".into()),
                (AmazonS3ConfigKey::VirtualHostedStyleRequest, "false".into()),
                (
                    AmazonS3ConfigKey::Client(ClientConfigKey::AllowHttp),
                    "true".into()
                ),
            ]
        );
        assert!(s3_config(&S3Options::default()).is_empty());
        // Every key is one polars and object_store both understand.
        for (key, value) in &config {
            let builder =
                object_store::aws::AmazonS3Builder::new().with_config(*key, value.as_str());
            assert_eq!(
                builder.get_config_value(key).as_deref(),
                Some(value.as_str())
            );
        }
        let virtual_hosted = s3_config(&S3Options {
            path_style: Some(false),
            ..S3Options::default()
        });
        assert_eq!(
            virtual_hosted,
            vec![(AmazonS3ConfigKey::VirtualHostedStyleRequest, "true".into())]
        );
    }
}
