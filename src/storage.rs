//! Storage: the one place that turns a `--data` URL into an object store and builds object paths.
//!
//! Every read and write of the dataset, markdown, state and run reports goes through [`Storage`],
//! so local disk and S3 behave the same. Paths handed to and returned from `Storage` are relative
//! to the dataset root. This module does not know what a ticket is; it only knows the layout
//! (`_runs/`, `_state/` of the whole dataset, and per domain ([`layout::Scope`]) its `_state/`,
//! `_staging/`, `_pending/` and `markdown/<acct>/<year>/<id>.md`; the tables' own paths are
//! `state::delta`'s, and `<table>/account=<acct>/year=<year>/part-0.parquet` is the layout of
//! datasets before Delta tables, which the upgrade reads).

use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::buffered::BufWriter;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions};
use tokio::io::AsyncWriteExt;

/// The file name of the single data file of every partition. A partition is replaced by writing
/// this one object again, which is atomic on local disk (object_store renames a temp file) and on
/// S3 (a PUT or a completed multipart upload is all-or-nothing).
pub const PART_FILE: &str = "part-0.parquet";

/// Objects larger than this are written with a multipart upload.
pub const MULTIPART_THRESHOLD: usize = 16 * 1024 * 1024;

/// Part size of a multipart upload (S3 wants at least 5 MiB for every part but the last).
const MULTIPART_PART: usize = 8 * 1024 * 1024;

/// Storage errors, by what the caller can do about them.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The location is neither a directory, `file:///…` nor `s3://bucket/prefix`, or is one of
    /// those with something wrong in it.
    #[error("invalid data location {location:?}: {reason}")]
    InvalidLocation {
        /// The location as given.
        location: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The detail is object_store's error chain as one line, with whatever an S3 error body
    /// echoes of the signed request removed (see `redact`).
    #[error("cannot reach storage for {path}: {detail}")]
    Store {
        /// The object (or prefix) the call was for.
        path: String,
        /// object_store's message, on one line, with the signed request removed.
        detail: String,
    },
    /// A local dataset directory could not be created or resolved.
    #[error("cannot prepare local directory {path}: {source}")]
    LocalDir {
        /// The directory.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The store refused the credentials (401/403). The detail is the store's error text with
    /// the echoed request removed; it is text, not a `#[source]`, because the
    /// original error may carry the signed request, session token included.
    #[error("storage refused the credentials for {path}: {detail}")]
    Denied {
        /// The object the call was for.
        path: String,
        /// The store's message, with the echoed request removed.
        detail: String,
    },
    /// A write answered 404: the bucket does not exist (or these credentials cannot see it).
    /// The detail is one line of text: object_store nests the same message three levels deep,
    /// which a printed chain would repeat.
    #[error("the bucket of {location} does not exist or is not visible with these credentials: {detail}")]
    NoBucket {
        /// The dataset location.
        location: String,
        /// The store's message, on one line.
        detail: String,
    },
    /// A local dataset to be read (`query`, `export-person`) does not exist; nothing is created.
    #[error("no dataset at {path}: the directory does not exist")]
    Missing {
        /// The directory looked for.
        path: String,
    },
}

impl crate::error::Classify for Error {
    /// A wrong location, refused credentials or a missing bucket are [`Class::Config`](crate::error::Class::Config) (a
    /// rerun fails the same way until the operator fixes them); the rest is transient.
    fn class(&self) -> crate::error::Class {
        use crate::error::Class;
        match self {
            Error::InvalidLocation { .. } | Error::Denied { .. } | Error::NoBucket { .. } => {
                Class::Config
            }
            Error::Store { .. } | Error::LocalDir { .. } | Error::Missing { .. } => {
                Class::Retryable
            }
        }
    }
}

/// The result of storage operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// S3 options that a job file or flags may set on top of the standard `AWS_*` environment.
#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct S3Options {
    /// Endpoint of an S3-compatible store (MinIO, Ceph, R2, a loopback test server).
    pub endpoint: Option<String>,
    /// Region; falls back to `AWS_REGION` / `AWS_DEFAULT_REGION`.
    pub region: Option<String>,
    /// Use path-style addressing (`endpoint/bucket/key`), which most S3-compatible stores need.
    pub path_style: Option<bool>,
    /// Allow plain HTTP (loopback test servers).
    pub allow_http: Option<bool>,
    /// Server-side encryption: `AES256` or `aws:kms`.
    pub sse: Option<String>,
    /// KMS key id for `sse = "aws:kms"`.
    pub sse_kms_key_id: Option<String>,
}

/// Reads one Parquet object by byte ranges ([`Storage::parquet_reader`]).
pub struct ObjectReader {
    store: Arc<dyn ObjectStore>,
    path: Path,
    size: u64,
}

impl std::fmt::Debug for ObjectReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectReader")
            .field("path", &self.path)
            .field("size", &self.size)
            .finish()
    }
}

impl parquet::arrow::async_reader::AsyncFileReader for ObjectReader {
    fn get_bytes(
        &mut self,
        range: std::ops::Range<u64>,
    ) -> futures::future::BoxFuture<'_, parquet::errors::Result<Bytes>> {
        Box::pin(async move {
            self.store
                .get_range(&self.path, range)
                .await
                .map_err(|e| parquet::errors::ParquetError::External(Box::new(e)))
        })
    }

    fn get_byte_ranges(
        &mut self,
        ranges: Vec<std::ops::Range<u64>>,
    ) -> futures::future::BoxFuture<'_, parquet::errors::Result<Vec<Bytes>>> {
        Box::pin(async move {
            self.store
                .get_ranges(&self.path, &ranges)
                .await
                .map_err(|e| parquet::errors::ParquetError::External(Box::new(e)))
        })
    }

    fn get_metadata<'a>(
        &'a mut self,
        _options: Option<&'a parquet::arrow::arrow_reader::ArrowReaderOptions>,
    ) -> futures::future::BoxFuture<
        'a,
        parquet::errors::Result<Arc<parquet::file::metadata::ParquetMetaData>>,
    > {
        Box::pin(async move {
            let size = self.size;
            // One request for the footer and, usually, the whole metadata.
            let metadata = parquet::file::metadata::ParquetMetaDataReader::new()
                .with_prefetch_hint(Some(64 * 1024))
                .load_and_finish(&mut *self, size)
                .await?;
            Ok(Arc::new(metadata))
        })
    }
}

/// An object store plus the dataset root inside it.
#[derive(Clone)]
pub struct Storage {
    store: Arc<dyn ObjectStore>,
    display: String,
    /// Whose state, staging areas, checkpoints and documents the scoped paths name.
    scope: layout::Scope,
    /// Where readers outside object_store (polars, DuckDB) find the root: an absolute local
    /// directory or `s3://bucket/prefix`. `None` for stores given to [`Storage::from_store`].
    root: Option<String>,
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Only the location: the store's own Debug may include credentials.
        f.debug_struct("Storage")
            .field("location", &self.display)
            .field("scope", &self.scope)
            .finish()
    }
}

impl Storage {
    /// Opens the dataset at `location`: a local directory, a `file://` URL or `s3://bucket/prefix`.
    /// A local directory is created when missing.
    pub fn open(location: &str, s3: &S3Options) -> Result<Self> {
        Self::open_impl(location, s3, true)
    }

    /// Opens an existing dataset for reading: like [`Storage::open`], but a missing local
    /// directory is [`Error::Missing`] instead of being created. (S3 has no directories; an
    /// empty prefix is for the reader to notice.)
    pub fn open_existing(location: &str, s3: &S3Options) -> Result<Self> {
        Self::open_impl(location, s3, false)
    }

    fn open_impl(location: &str, s3: &S3Options, create: bool) -> Result<Self> {
        let invalid = |reason: &str| Error::InvalidLocation {
            location: location.to_string(),
            reason: reason.to_string(),
        };
        if location.starts_with("s3://") {
            return Self::open_s3(location, s3, AmazonS3Builder::from_env());
        }
        let dir = if let Some(rest) = location.strip_prefix("file://") {
            url::Url::parse(location)
                .ok()
                .and_then(|u| u.to_file_path().ok())
                .ok_or_else(|| invalid(&format!("not an absolute file URL: {rest}")))?
        } else if location.contains("://") {
            return Err(invalid(
                "supported locations: a directory, file:///path, s3://bucket/prefix",
            ));
        } else {
            std::path::PathBuf::from(location)
        };
        if !create && !dir.is_dir() {
            return Err(Error::Missing {
                path: dir.display().to_string(),
            });
        }
        Self::local(&dir)
    }

    /// Opens `s3://bucket/prefix` with `base` as the starting configuration; `s3` wins over it.
    ///
    /// [`Storage::open`] passes `AmazonS3Builder::from_env()`, which reads the standard
    /// variables (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`,
    /// `AWS_REGION`, `AWS_DEFAULT_REGION`, `AWS_ENDPOINT_URL`, `AWS_ALLOW_HTTP`, web identity and
    /// container credentials); without keys object_store asks the instance metadata service.
    /// Tests pass a builder holding their keys instead of touching the process environment.
    pub fn open_s3(location: &str, s3: &S3Options, base: AmazonS3Builder) -> Result<Self> {
        let invalid = |reason: String| Error::InvalidLocation {
            location: location.to_string(),
            reason,
        };
        let rest = location
            .strip_prefix("s3://")
            .ok_or_else(|| invalid("not an s3:// URL".into()))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(invalid("no bucket name after s3://".into()));
        }
        let store = s3_builder(base.with_bucket_name(bucket), s3)
            .map_err(invalid)?
            .build()
            .map_err(|e| invalid(e.to_string()))?;
        let prefix = prefix.trim_matches('/');
        let (store, root): (Arc<dyn ObjectStore>, String) = if prefix.is_empty() {
            (Arc::new(store), format!("s3://{bucket}"))
        } else {
            let parsed = Path::parse(prefix).map_err(|e| invalid(e.to_string()))?;
            let root = format!("s3://{bucket}/{parsed}");
            (Arc::new(PrefixStore::new(store, parsed)), root)
        };
        Ok(Storage {
            store,
            display: location.to_string(),
            scope: layout::Scope::Home,
            root: Some(root),
        })
    }

    /// Opens (and creates) a local directory as the dataset root.
    pub fn local(dir: &std::path::Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|source| Error::LocalDir {
            path: dir.display().to_string(),
            source,
        })?;
        let store = LocalFileSystem::new_with_prefix(dir).map_err(|source| Error::Store {
            path: dir.display().to_string(),
            detail: error_chain(&source),
        })?;
        let root = std::fs::canonicalize(dir).map_err(|source| Error::LocalDir {
            path: dir.display().to_string(),
            source,
        })?;
        Ok(Storage {
            store: Arc::new(store.with_automatic_cleanup(true)),
            display: dir.display().to_string(),
            scope: layout::Scope::Home,
            root: Some(root.display().to_string()),
        })
    }

    /// A storage over any object store (tests use `InMemory`).
    pub fn from_store(store: Arc<dyn ObjectStore>, display: impl Into<String>) -> Self {
        Storage {
            store,
            display: display.into(),
            scope: layout::Scope::Home,
            root: None,
        }
    }

    /// Where a commit stages `final_path` ([`layout::Scope::staged`]); in a local directory
    /// one flat file of `_staging/<tag>/` ([`layout::flat`]), so that a commit creates no
    /// directories there. (On S3 there are none to create, and the path stays as it is.)
    pub fn staged(&self, tag: &str, final_path: &Path) -> Path {
        if self.local_dir() {
            layout::flat(self.scope.staging_root().join(tag), final_path)
        } else {
            self.scope.staged(tag, final_path)
        }
    }

    /// Where checkpoint `tag` keeps `rel` ([`layout::Scope::pending`]), flat in a local
    /// directory as in [`Self::staged`].
    pub fn pending(&self, tag: &str, rel: &Path) -> Path {
        if self.local_dir() {
            layout::flat(self.scope.pending_root().join(tag), rel)
        } else {
            self.scope.pending(tag, rel)
        }
    }

    fn local_dir(&self) -> bool {
        self.root
            .as_deref()
            .is_some_and(|r| !r.starts_with("s3://"))
    }

    /// The same dataset, with the per-account paths of `scope` (see [`layout::Scope`]).
    pub fn scoped(&self, scope: layout::Scope) -> Storage {
        Storage {
            scope,
            ..self.clone()
        }
    }

    /// Whose state, staging areas, checkpoints and documents this storage's scoped paths name.
    pub fn scope(&self) -> &layout::Scope {
        &self.scope
    }

    /// Where delta-rs finds the table under `dir`: a store and the table's URL in it. On S3 (and
    /// in memory) that is this store itself, rooted at the dataset, under `memory:///<dir>/`
    /// (same client, same credentials; the listing is ordered). A local dataset is given as
    /// `file:///<absolute dir>/<dir>/` over the file system, the form under which the Delta
    /// kernel knows that a directory listing comes unordered.
    pub fn delta_location(&self, dir: &str) -> (Arc<dyn ObjectStore>, url::Url) {
        if let Some(root) = self.root.as_deref().filter(|r| !r.starts_with("s3://")) {
            if let Ok(url) = url::Url::from_directory_path(std::path::Path::new(root).join(dir)) {
                return (Arc::new(LocalFileSystem::new()), url);
            }
        }
        let url = url::Url::parse(&format!("memory:///{dir}/")).expect("a valid table URL");
        (self.store.clone(), url)
    }

    /// The location as the user gave it (never contains credentials: those come from the environment).
    pub fn display(&self) -> &str {
        &self.display
    }

    /// Where a reader outside object_store (polars, DuckDB) finds `path`: an absolute local path or
    /// an `s3://` URL. `None` for a store without such an address (`InMemory`).
    pub fn external_location(&self, path: &Path) -> Option<String> {
        let root = self.root.as_deref()?;
        Some(format!("{}/{path}", root.trim_end_matches('/')))
    }

    /// Reads an object; `None` when it does not exist.
    pub async fn get(&self, path: &Path) -> Result<Option<Bytes>> {
        match self.store.get(path).await {
            Ok(result) => result
                .bytes()
                .await
                .map(Some)
                .map_err(|e| self.err(path, e)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.err(path, e)),
        }
    }

    /// Reads an object that must exist: one that does not is [`Error::Missing`], naming it.
    pub async fn get_existing(&self, path: &Path) -> Result<Bytes> {
        self.get(path).await?.ok_or_else(|| Error::Missing {
            path: path.to_string(),
        })
    }

    /// Whether an object exists.
    pub async fn exists(&self, path: &Path) -> Result<bool> {
        match self.store.head(path).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(self.err(path, e)),
        }
    }

    /// Writes an object atomically (readers see the old or the new object, never a part).
    /// Payloads above [`MULTIPART_THRESHOLD`] go up as a multipart upload, which S3 also
    /// publishes all at once, when the upload completes.
    pub async fn put(&self, path: &Path, bytes: Bytes) -> Result<()> {
        if bytes.len() <= MULTIPART_THRESHOLD {
            return self
                .store
                .put(path, bytes.into())
                .await
                .map(drop)
                .map_err(|e| self.write_err(path, e));
        }
        let mut writer = BufWriter::with_capacity(self.store.clone(), path.clone(), MULTIPART_PART);
        let result = async {
            writer.write_all(&bytes).await?;
            writer.shutdown().await
        }
        .await;
        if let Err(e) = result {
            let _ = writer.abort().await;
            // BufWriter reports through io::Error; the store's error is inside when there is one.
            let source = match e.downcast::<object_store::Error>() {
                Ok(store_error) => store_error,
                Err(e) => object_store::Error::Generic {
                    store: "multipart",
                    source: Box::new(e),
                },
            };
            return Err(self.write_err(path, source));
        }
        Ok(())
    }

    /// Creates an object only if it does not exist yet; `false` when it already exists.
    ///
    /// Uses a conditional put (`If-None-Match: *` on S3, a hard link on local disk), so of two
    /// concurrent creators exactly one wins. A store without conditional puts (object_store
    /// answers `NotImplemented`, e.g. S3 with `AWS_CONDITIONAL_PUT=disabled`) falls back to
    /// head-then-put, where two creators racing within one round trip can both "win"; callers
    /// that care read the object back.
    pub async fn create(&self, path: &Path, bytes: Bytes) -> Result<bool> {
        let opts = PutOptions::from(PutMode::Create);
        match self.store.put_opts(path, bytes.clone().into(), opts).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
            Err(object_store::Error::NotImplemented { .. }) => {
                if self.exists(path).await? {
                    return Ok(false);
                }
                self.put(path, bytes).await?;
                Ok(true)
            }
            Err(e) => Err(self.write_err(path, e)),
        }
    }

    /// Whether the store honours conditional creates (what [`Self::create`] and the run lock
    /// rely on), tried on `existing`, an object that exists: a second create must be refused.
    /// `false` when the store answers "not implemented" (the head-then-put fallback) or
    /// overwrote the object (it ignores the condition). Read-only for stores that refuse.
    pub async fn conditional_create_works(&self, existing: &Path, bytes: Bytes) -> Result<bool> {
        let opts = PutOptions::from(PutMode::Create);
        match self.store.put_opts(existing, bytes.into(), opts).await {
            Err(object_store::Error::AlreadyExists { .. }) => Ok(true),
            Ok(_) | Err(object_store::Error::NotImplemented { .. }) => Ok(false),
            Err(e) => Err(self.write_err(existing, e)),
        }
    }

    /// Removes the empty directories under `prefix` (and `prefix` itself when it ends up empty)
    /// on a local dataset: moving a staged file into place leaves its staging directories
    /// behind, one tree per commit. Object stores have no directories: nothing to do. Best
    /// effort: a directory that cannot be removed stays, and says so in the log.
    pub async fn remove_empty_dirs(&self, prefix: &Path) {
        let Some(root) = self.root.as_deref().filter(|_| self.local_dir()) else {
            return;
        };
        let dir = std::path::Path::new(root).join(prefix.as_ref());
        let _ = tokio::task::spawn_blocking(move || prune_empty(&dir)).await;
    }

    /// Deletes an object; a missing object is not an error (deletes are replayed after crashes).
    pub async fn delete(&self, path: &Path) -> Result<()> {
        match self.store.delete(path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.err(path, e)),
        }
    }

    /// Moves `from` to `to`, replacing `to`. Returns `false` when `from` does not exist, which a
    /// replayed journal treats as "already moved".
    pub async fn rename(&self, from: &Path, to: &Path) -> Result<bool> {
        match self.store.rename(from, to).await {
            Ok(()) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(self.err(from, e)),
        }
    }

    /// Lists the objects under `prefix` whose path sorts after `offset`, with their sizes and
    /// times, sorted by path (S3 starts the listing there: a Delta log is read from its last
    /// checkpoint on without listing the commits before it). A missing prefix lists as empty.
    pub async fn list_after(
        &self,
        prefix: &Path,
        offset: Option<&Path>,
    ) -> Result<Vec<object_store::ObjectMeta>> {
        let listing = match offset {
            Some(offset) => self.store.list_with_offset(Some(prefix), offset),
            None => self.store.list(Some(prefix)),
        };
        let mut metas: Vec<object_store::ObjectMeta> = match listing.try_collect().await {
            Ok(metas) => metas,
            Err(e) => {
                self.listing_failed(prefix, e)?;
                Vec::new()
            }
        };
        metas.sort_by(|a, b| a.location.cmp(&b.location));
        Ok(metas)
    }

    /// A Parquet reader of the object `path` of `size` bytes that fetches only the byte ranges
    /// it decodes (the footer, then the column chunks a projection selects).
    pub fn parquet_reader(&self, path: &Path, size: u64) -> ObjectReader {
        ObjectReader {
            store: self.store.clone(),
            path: path.clone(),
            size,
        }
    }

    /// Lists every object under `prefix` (recursively), sorted by path.
    pub async fn list(&self, prefix: &Path) -> Result<Vec<Path>> {
        let prefix_opt = if prefix.as_ref().is_empty() {
            None
        } else {
            Some(prefix)
        };
        let mut paths: Vec<Path> = self
            .store
            .list(prefix_opt)
            .map_ok(|meta| meta.location)
            .try_collect()
            .await
            .or_else(|e| self.listing_failed(prefix, e).map(|()| Vec::new()))?;
        paths.sort();
        Ok(paths)
    }

    /// What a failed listing means: `Ok` for a missing local directory (nothing there), the
    /// error otherwise. S3 lists a missing prefix as empty, so a 404 there means the bucket is
    /// missing (object_store reports it as a generic error).
    fn listing_failed(&self, prefix: &Path, e: object_store::Error) -> Result<()> {
        let s3 = self.display.starts_with("s3://");
        let not_found = matches!(e, object_store::Error::NotFound { .. });
        if s3 && (not_found || error_chain(&e).contains("404 Not Found")) {
            Err(self.no_bucket(&e))
        } else if not_found {
            Ok(())
        } else {
            Err(self.err(prefix, e))
        }
    }

    fn err(&self, path: &Path, source: object_store::Error) -> Error {
        let path = format!("{}/{}", self.display.trim_end_matches('/'), path);
        match source {
            object_store::Error::PermissionDenied { .. }
            | object_store::Error::Unauthenticated { .. } => Error::Denied {
                path,
                detail: redact(&error_chain(&source)),
            },
            source => {
                let detail = redact(&error_chain(&source));
                // object_store reports a refused list request as a generic error.
                if detail.contains("403 Forbidden") || detail.contains("401 Unauthorized") {
                    Error::Denied { path, detail }
                } else {
                    Error::Store { path, detail }
                }
            }
        }
    }

    /// Like [`Storage::err`], for writes: a write answers 404 only when the bucket is missing.
    fn write_err(&self, path: &Path, source: object_store::Error) -> Error {
        match source {
            object_store::Error::NotFound { .. } => self.no_bucket(&source),
            source => self.err(path, source),
        }
    }

    fn no_bucket(&self, source: &object_store::Error) -> Error {
        Error::NoBucket {
            location: self.display.clone(),
            detail: redact(&error_chain(source)),
        }
    }
}

/// Applies the job's `[s3]` options on top of `builder` (which holds the environment's).
fn s3_builder(mut builder: AmazonS3Builder, s3: &S3Options) -> Result<AmazonS3Builder, String> {
    // With an endpoint and no path_style, object_store addresses `endpoint/bucket/key` (path
    // style), which MinIO, Ceph and loopback servers need; AWS accepts it too.
    if let Some(endpoint) = &s3.endpoint {
        builder = builder.with_endpoint(endpoint);
    }
    if let Some(region) = &s3.region {
        builder = builder.with_region(region);
    }
    if let Some(path_style) = s3.path_style {
        builder = builder.with_virtual_hosted_style_request(!path_style);
    }
    if let Some(allow_http) = s3.allow_http {
        builder = builder.with_allow_http(allow_http);
    }
    match s3.sse.as_deref() {
        None => {}
        Some("AES256") => {
            // The builder has no SSE-S3 setter and the key's enum is not exported: parse its name.
            let key: AmazonS3ConfigKey = "aws_server_side_encryption"
                .parse()
                .map_err(|e: object_store::Error| e.to_string())?;
            builder = builder.with_config(key, "AES256");
        }
        Some("aws:kms") => {
            let key = s3
                .sse_kms_key_id
                .as_deref()
                .ok_or("sse = \"aws:kms\" needs sse_kms_key_id")?;
            builder = builder.with_sse_kms_encryption(key);
        }
        Some(other) => {
            return Err(format!(
                "unknown sse {other:?} (use \"AES256\" or \"aws:kms\")"
            ))
        }
    }
    Ok(builder)
}

/// Removes `dir`'s empty subdirectories, then `dir` if it is empty; returns whether it is gone.
fn prune_empty(dir: &std::path::Path) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return !dir.exists();
    };
    let mut empty = true;
    for entry in entries.flatten() {
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        if !(is_dir && prune_empty(&entry.path())) {
            empty = false;
        }
    }
    if !empty {
        return false;
    }
    match std::fs::remove_dir(dir) {
        Ok(()) => true,
        Err(e) => {
            tracing::debug!(dir = %dir.display(), error = %e, "an empty directory stays");
            false
        }
    }
}

/// An error and its sources as one line, `a: b: c`.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        // object_store often repeats its source's text in its own message.
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// Removes what an S3 error body may echo of the signed request (AWS answers a bad signature
/// with the string to sign and the canonical request, whose headers include the session
/// token), so a credentials error can be printed and logged.
pub(crate) fn redact(text: &str) -> String {
    const ECHOES: [&str; 5] = [
        "StringToSign",
        "StringToSignBytes",
        "CanonicalRequest",
        "CanonicalRequestBytes",
        "SignatureProvided",
    ];
    let mut out = text.to_string();
    for tag in ECHOES {
        let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
        while let Some(start) = out.find(&open) {
            let end = out[start..]
                .find(&close)
                .map_or(out.len(), |i| start + i + close.len());
            out.replace_range(start..end, "");
        }
    }
    out
}

/// The object-path layout of a dataset.
pub mod layout {
    use object_store::path::{Path, PathPart};

    use super::PART_FILE;

    /// `<table>/account=<acct>/year=<year>/` — `account` must already be validated by normalize.
    pub fn partition_dir(table: &str, account: &str, year: i32) -> Path {
        Path::from_iter([
            PathPart::from(table),
            PathPart::from(format!("account={account}")),
            PathPart::from(format!("year={year}")),
        ])
    }

    /// The one data file of a partition.
    pub fn partition_file(table: &str, account: &str, year: i32) -> Path {
        partition_dir(table, account, year).join(PART_FILE)
    }

    /// `<table>/account=<acct>/`: every year of one account.
    pub fn account_dir(table: &str, account: &str) -> Path {
        Path::from_iter([
            PathPart::from(table),
            PathPart::from(format!("account={account}")),
        ])
    }

    /// The partition of a listed path when it is a partition's data file
    /// (`<table>/account=<acct>/year=<year>/part-0.parquet`); `None` for anything else.
    pub fn parse_partition_file(table: &str, path: &Path) -> Option<(String, i32)> {
        let parts: Vec<_> = path.parts().collect();
        let [t, account, year, file] = parts.as_slice() else {
            return None;
        };
        if t.as_ref() != table || file.as_ref() != PART_FILE {
            return None;
        }
        let account = account.as_ref().strip_prefix("account=")?;
        let year = year.as_ref().strip_prefix("year=")?.parse().ok()?;
        (!account.is_empty()).then(|| (account.to_string(), year))
    }

    /// The data file of an unpartitioned table (`rejects`).
    pub fn table_file(table: &str) -> Path {
        Path::from(table).join(PART_FILE)
    }

    /// An object under `_state/` that belongs to the whole dataset, whatever its domains
    /// (`format.json`, the erasure record and key).
    pub fn state(name: &str) -> Path {
        Path::from("_state").join(name)
    }

    /// Longest file name [`flat`] gives (file systems allow 255 bytes; the local store adds a
    /// short suffix while it writes).
    const FLAT_NAME_MAX: usize = 200;

    /// `rel` as one file directly under `base`, its parts joined by `!s` (a `!` of a part
    /// doubled), so that different paths never share a name; a name longer than
    /// [`FLAT_NAME_MAX`] keeps `rel`'s directories instead. Staging areas and checkpoints in a
    /// local directory are flat because a file system pays for every directory a commit
    /// creates: on this project's ext4 VMs a `mkdir` costs about 1.3 ms, like creating a file
    /// (a rename costs 17 µs), and staging 88 small files under their tables' partition directories took
    /// 150-310 ms, flat 50-130 ms. The files are moved out one by one (the journal and the
    /// manifests name them), so nothing reads this layout.
    pub fn flat(base: Path, rel: &Path) -> Path {
        let mut name = String::new();
        for (i, part) in rel.parts().enumerate() {
            if i > 0 {
                name.push_str("!s");
            }
            name.push_str(&part.as_ref().replace('!', "!!"));
        }
        if name.is_empty() || name.len() > FLAT_NAME_MAX {
            return Path::from_iter(base.parts().chain(rel.parts()));
        }
        base.join(name)
    }

    /// The JSON report of one run.
    pub fn run_report(run_id: &str) -> Path {
        Path::from("_runs").join(format!("{run_id}.json"))
    }

    /// Where the objects of one Freshservice account (domain) of a dataset live: its index,
    /// cursor, run lock, journal and table versions, its staging areas and checkpoints, and its
    /// markdown documents. A dataset holds the tables of every domain it was given (the
    /// `domain` partition), and each domain has its own copy of these, so that runs of two
    /// domains never read or write each other's.
    ///
    /// The dataset's first domain (the one `_state/format.json` names, [`Scope::Home`]) keeps
    /// the paths a dataset of one domain has always had; any other lives under
    /// `_domains/<domain>/` and its documents under `markdown/domain=<domain>/` (an `=` is
    /// never in an account number, so they cannot meet an account's directory).
    #[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
    pub enum Scope {
        /// The domain the dataset was created with.
        #[default]
        Home,
        /// Another domain (already validated: a subdomain or a host name).
        Domain(String),
    }

    impl Scope {
        /// The prefix of this scope's own objects: empty for [`Scope::Home`].
        fn root(&self) -> Path {
            match self {
                Scope::Home => Path::default(),
                Scope::Domain(domain) => {
                    Path::from_iter([PathPart::from("_domains"), PathPart::from(domain.as_str())])
                }
            }
        }

        fn under(&self, parts: &[&str]) -> Path {
            let mut path = self.root();
            for part in parts {
                path = path.join(PathPart::from(*part));
            }
            path
        }

        /// One of this domain's state objects (`_state/<name>`).
        pub fn state(&self, name: &str) -> Path {
            self.under(&["_state", name])
        }

        /// Root of this domain's staging areas (`_staging/`).
        pub fn staging_root(&self) -> Path {
            self.under(&["_staging"])
        }

        /// Where a commit stages `final_path` before the journal moves it into place (on
        /// local disk [`crate::storage::Storage::staged`] makes it one flat file instead).
        pub fn staged(&self, tag: &str, final_path: &Path) -> Path {
            let mut path = self.staging_root().join(tag);
            for part in final_path.parts() {
                path = path.join(part);
            }
            path
        }

        /// Root of this domain's checkpoints not yet committed to the tables (`_pending/<tag>/…`).
        pub fn pending_root(&self) -> Path {
            self.under(&["_pending"])
        }

        /// Where checkpoint `tag` keeps `rel` (its rows, its documents, its manifest; on local
        /// disk [`crate::storage::Storage::pending`] makes it one flat file instead).
        pub fn pending(&self, tag: &str, rel: &Path) -> Path {
            let mut path = self.pending_root().join(tag);
            for part in rel.parts() {
                path = path.join(part);
            }
            path
        }

        /// The markdown document of a ticket: `markdown/<acct>/<year>/<ticket_id>.md`, under
        /// `markdown/domain=<domain>/` outside the home domain.
        pub fn markdown_file(&self, account: &str, year: i32, ticket_id: i64) -> Path {
            let mut path = Path::from("markdown");
            if let Scope::Domain(domain) = self {
                path = path.join(PathPart::from(format!("domain={domain}")));
            }
            Path::from_iter(path.parts().chain([
                PathPart::from(account),
                PathPart::from(year.to_string()),
                PathPart::from(format!("{ticket_id}.md")),
            ]))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::layout::*;
    use super::*;

    #[test]
    fn flat_names_keep_paths_apart_and_long_ones_keep_their_directories() {
        let base = Path::from("_staging/t");
        let name = |rel: &str| flat(base.clone(), &Path::from(rel)).to_string();
        assert_eq!(name("a/b.md"), "_staging/t/a!sb.md");
        // A `!` in a part cannot pass for the separator.
        assert_ne!(name("a!s/b"), name("a/s!b"));
        assert_ne!(name("a!/sb"), name("a/!sb"));
        assert_eq!(name("a!s/b"), "_staging/t/a!!s!sb");
        let deep = format!(
            "tickets/account={}/year=2026/part-0.parquet",
            "9".repeat(200)
        );
        assert_eq!(name(&deep), format!("_staging/t/{deep}"));
        assert_eq!(flat(base.clone(), &Path::from("")), base);
    }

    #[test]
    fn hive_paths() {
        assert_eq!(
            partition_file("tickets", "482913", 2025).as_ref(),
            "tickets/account=482913/year=2025/part-0.parquet"
        );
        let home = Scope::Home;
        assert_eq!(
            home.markdown_file("482913", 2025, 17531).as_ref(),
            "markdown/482913/2025/17531.md"
        );
        assert_eq!(
            home.staged("r1-0", &partition_file("notes", "1", 2024))
                .as_ref(),
            "_staging/r1-0/notes/account=1/year=2024/part-0.parquet"
        );
        assert_eq!(home.state("index.json").as_ref(), "_state/index.json");
        assert_eq!(
            home.pending("t", &Path::from("a.md")).as_ref(),
            "_pending/t/a.md"
        );
        // Another domain's objects are its own, and its documents cannot meet an account's.
        let other = Scope::Domain("globex".into());
        assert_eq!(
            other.markdown_file("482913", 2025, 17531).as_ref(),
            "markdown/domain=globex/482913/2025/17531.md"
        );
        assert_eq!(
            other.state("index.json").as_ref(),
            "_domains/globex/_state/index.json"
        );
        assert_eq!(other.staging_root().as_ref(), "_domains/globex/_staging");
        assert_eq!(
            other.pending("t", &Path::from("a.md")).as_ref(),
            "_domains/globex/_pending/t/a.md"
        );
    }

    #[test]
    fn partition_files_parse_back() {
        let path = partition_file("notes", "A-1.b", 2024);
        assert_eq!(
            parse_partition_file("notes", &path),
            Some(("A-1.b".to_string(), 2024))
        );
        assert_eq!(parse_partition_file("tickets", &path), None);
        for other in [
            "notes/account=1/year=2024/part-1.parquet",
            "notes/account=1/year=x/part-0.parquet",
            "notes/account=/year=2024/part-0.parquet",
            "notes/acct=1/year=2024/part-0.parquet",
            "notes/part-0.parquet",
        ] {
            assert_eq!(
                parse_partition_file("notes", &Path::from(other)),
                None,
                "{other}"
            );
        }
        assert_eq!(account_dir("tickets", "7").as_ref(), "tickets/account=7");
    }

    #[test]
    fn hostile_segments_cannot_escape_the_root() {
        // normalize rejects such accounts; the layout still never produces a traversal.
        let p = Scope::Home.markdown_file("..", 2025, 1);
        assert!(!p.as_ref().split('/').any(|s| s == ".."), "{p}");
        let p = partition_file("tickets", "../../x", 2025);
        assert_eq!(p.parts().count(), 4, "{p}");
    }

    #[tokio::test]
    async fn local_put_get_rename_list_delete() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::open(dir.path().to_str().unwrap(), &S3Options::default()).unwrap();
        let a = Path::from("x/a.txt");
        let b = Path::from("y/b.txt");
        assert_eq!(storage.get(&a).await.unwrap(), None);
        storage.put(&a, Bytes::from_static(b"hi")).await.unwrap();
        assert!(storage.rename(&a, &b).await.unwrap());
        assert!(!storage.rename(&a, &b).await.unwrap());
        assert_eq!(
            storage.list(&Path::from("")).await.unwrap(),
            vec![b.clone()]
        );
        assert_eq!(
            storage.get(&b).await.unwrap().unwrap(),
            Bytes::from_static(b"hi")
        );
        storage.delete(&b).await.unwrap();
        storage.delete(&b).await.unwrap();
        assert!(storage.list(&Path::from("y")).await.unwrap().is_empty());
    }

    #[test]
    fn the_standard_aws_variables_are_understood() {
        // `AmazonS3Builder::from_env` keeps an `AWS_*` variable only if its lowercased name
        // parses as a config key; these are the ones the README promises.
        for var in [
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_SESSION_TOKEN",
            "AWS_REGION",
            "AWS_DEFAULT_REGION",
            "AWS_ENDPOINT_URL",
            "AWS_ALLOW_HTTP",
            "AWS_WEB_IDENTITY_TOKEN_FILE",
            "AWS_ROLE_ARN",
            "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        ] {
            let key = var.to_ascii_lowercase().parse::<AmazonS3ConfigKey>();
            assert!(key.is_ok(), "{var} is not read by object_store");
        }
    }

    #[test]
    fn job_options_win_and_an_endpoint_means_path_style() {
        let env = AmazonS3Builder::new()
            .with_region("eu-west-1")
            .with_endpoint("http://env:9000");
        let options = S3Options {
            endpoint: Some("http://127.0.0.1:9000".into()),
            allow_http: Some(true),
            sse: Some("AES256".into()),
            ..S3Options::default()
        };
        let b = s3_builder(env, &options).unwrap();
        let get = |key: &str| b.get_config_value(&key.parse().unwrap());
        assert_eq!(
            get("aws_endpoint").as_deref(),
            Some("http://127.0.0.1:9000")
        );
        assert_eq!(get("aws_region").as_deref(), Some("eu-west-1"));
        assert_eq!(
            get("aws_virtual_hosted_style_request").as_deref(),
            Some("false")
        );
        assert_eq!(get("aws_server_side_encryption").as_deref(), Some("AES256"));
        let kms = S3Options {
            sse: Some("aws:kms".into()),
            ..S3Options::default()
        };
        let err = s3_builder(AmazonS3Builder::new(), &kms).unwrap_err();
        assert!(err.contains("sse_kms_key_id"), "{err}");
    }

    #[test]
    fn redact_drops_the_echoed_request() {
        let body = "403 Forbidden: <Error><Code>SignatureDoesNotMatch</Code>\
            <AWSAccessKeyId>AKIAEXAMPLE</AWSAccessKeyId>\
            <StringToSign>AWS4-HMAC-SHA256\n20250101T000000Z</StringToSign>\
            <CanonicalRequest>PUT\nx-amz-security-token:SECRET-TOKEN\n</CanonicalRequest>\
            <CanonicalRequestBytes>50 55 54</CanonicalRequestBytes></Error>";
        let clean = redact(body);
        assert!(!clean.contains("SECRET-TOKEN"), "{clean}");
        assert!(!clean.contains("StringToSign"), "{clean}");
        assert!(clean.contains("SignatureDoesNotMatch"), "{clean}");
        assert!(clean.contains("AKIAEXAMPLE"), "{clean}");
        // An unterminated echo is cut to the end.
        assert_eq!(redact("a <CanonicalRequest>x-amz-security-token:T"), "a ");
    }

    #[test]
    fn readers_open_only_existing_local_datasets() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        let err =
            Storage::open_existing(missing.to_str().unwrap(), &S3Options::default()).unwrap_err();
        assert!(matches!(err, Error::Missing { .. }), "{err}");
        assert!(!missing.exists(), "a reader must not create the directory");
        let storage =
            Storage::open_existing(dir.path().to_str().unwrap(), &S3Options::default()).unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        assert_eq!(
            storage.external_location(&Path::from("a/b.parquet")),
            Some(format!("{}/a/b.parquet", root.display()))
        );
    }

    #[test]
    fn s3_locations_for_external_readers() {
        let s3 = S3Options {
            endpoint: Some("http://127.0.0.1:9".into()),
            region: Some("us-east-1".into()),
            allow_http: Some(true),
            ..S3Options::default()
        };
        let storage = Storage::open_existing("s3://bucket/some/prefix/", &s3).unwrap();
        assert_eq!(
            storage
                .external_location(&Path::from("tickets/x.parquet"))
                .unwrap(),
            "s3://bucket/some/prefix/tickets/x.parquet"
        );
        let storage = Storage::open("s3://bucket", &s3).unwrap();
        assert_eq!(
            storage.external_location(&Path::from("t")).unwrap(),
            "s3://bucket/t"
        );
    }

    #[test]
    fn rejects_unknown_schemes() {
        let err = Storage::open("gs://bucket/x", &S3Options::default()).unwrap_err();
        assert!(err.to_string().contains("supported locations"), "{err}");
    }
}
