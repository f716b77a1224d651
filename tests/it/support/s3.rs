//! A real S3 protocol server for the tests: s3s over s3s-fs (plain files in a temp dir), served
//! in-process on `127.0.0.1:0` with signature checking. Nothing to install.
//!
//! It logs every request (method, path, query) and can stop answering from the n-th request
//! on, which is how tests cut a run at a chosen point of its S3 traffic.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use object_store::aws::AmazonS3Builder;
use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;
use ticketsync::storage::{S3Options, Storage};
use tokio::net::TcpListener;
use tokio::sync::Notify;

/// The bucket every test server has. Short on purpose: s3s-fs keeps each object's checksums in
/// a file named after the base64 of bucket and key, which a key of about 150 bytes already
/// takes past the file system's 255-byte name limit (a 500 for that PUT). Real S3 takes keys
/// of 1,024 bytes; a fleet's staged files (`_domains/<domain>/_staging/<tag>/<table>/domain=…/
/// account=…/year=…/part-<tag>.parquet`) come near that length here.
pub const BUCKET: &str = "tst";
/// The credentials the server accepts.
pub const ACCESS_KEY: &str = "AKIATICKETSYNCTEST";
pub const SECRET_KEY: &str = "test-secret-7f3a9c0e5b1d-never-printed";
pub const REGION: &str = "us-east-1";

/// One request as the server saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Logged {
    pub method: String,
    pub path: String,
    pub query: String,
}

pub struct S3Server {
    /// `http://127.0.0.1:PORT`
    pub endpoint: String,
    /// The server's files: `<root>/<bucket>/<key>`.
    pub root: tempfile::TempDir,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

struct State {
    root: std::path::PathBuf,
    log: Mutex<Vec<Logged>>,
    served: AtomicUsize,
    /// Requests with a sequence number at or above this get no answer.
    hang_from: AtomicUsize,
    hung: Notify,
    /// S3 makes a conditional PUT (`If-None-Match`, `If-Match`) atomic; s3s-fs checks, then
    /// writes. Conditional PUTs are served one at a time here, so two creators cannot both win.
    conditional: tokio::sync::Mutex<()>,
}

impl S3Server {
    pub async fn start() -> S3Server {
        let root = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir(root.path().join(BUCKET)).expect("bucket dir");
        let fs = s3s_fs::FileSystem::new(root.path()).expect("s3s-fs root");
        let service = {
            let mut builder = S3ServiceBuilder::new(fs);
            builder.set_auth(SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
            builder.build()
        };
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(State {
            root: root.path().to_path_buf(),
            log: Mutex::new(Vec::new()),
            served: AtomicUsize::new(0),
            hang_from: AtomicUsize::new(usize::MAX),
            hung: Notify::new(),
            conditional: tokio::sync::Mutex::new(()),
        });
        let task = tokio::spawn({
            let state = state.clone();
            async move {
                loop {
                    let Ok((socket, _)) = listener.accept().await else {
                        continue;
                    };
                    // Headers and a streamed body go out as separate writes; without this, Nagle
                    // holds the body until the client's delayed ACK.
                    let _ = socket.set_nodelay(true);
                    let service = service.clone();
                    let state = state.clone();
                    let handler = service_fn(move |req: hyper::Request<Incoming>| {
                        let service = service.clone();
                        let state = state.clone();
                        async move {
                            let n = state.served.fetch_add(1, Ordering::SeqCst);
                            state.log.lock().unwrap().push(Logged {
                                method: req.method().to_string(),
                                path: req.uri().path().to_string(),
                                query: req.uri().query().unwrap_or("").to_string(),
                            });
                            if n >= state.hang_from.load(Ordering::SeqCst) {
                                state.hung.notify_one();
                                std::future::pending::<()>().await;
                            }
                            // s3s-fs creates a missing bucket's directory on PUT; S3 answers
                            // 404 NoSuchBucket, and so does this server.
                            let bucket = req.uri().path().trim_start_matches('/');
                            let bucket = bucket.split('/').next().unwrap_or("");
                            if !bucket.is_empty() && !state.root.join(bucket).is_dir() {
                                return Ok(no_such_bucket(bucket));
                            }
                            let conditional = req.method() == hyper::Method::PUT
                                && (req.headers().contains_key("if-none-match")
                                    || req.headers().contains_key("if-match"));
                            let _one_at_a_time = match conditional {
                                true => Some(state.conditional.lock().await),
                                false => None,
                            };
                            hyper::service::Service::call(&service, req).await
                        }
                    });
                    tokio::spawn(async move {
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(socket), handler)
                            .await;
                    });
                }
            }
        });
        S3Server {
            endpoint,
            root,
            state,
            task,
        }
    }

    /// `s3://<bucket>/<prefix>`
    pub fn url(&self, prefix: &str) -> String {
        format!("s3://{BUCKET}/{prefix}")
    }

    /// The job-file `[s3]` options that reach this server.
    pub fn options(&self) -> S3Options {
        S3Options {
            endpoint: Some(self.endpoint.clone()),
            region: Some(REGION.into()),
            path_style: Some(true),
            allow_http: Some(true),
            ..S3Options::default()
        }
    }

    /// The credentials, as the environment would give them to `AmazonS3Builder::from_env`.
    pub fn credentials() -> AmazonS3Builder {
        AmazonS3Builder::new()
            .with_access_key_id(ACCESS_KEY)
            .with_secret_access_key(SECRET_KEY)
    }

    /// A dataset at `s3://<bucket>/<prefix>` on this server.
    pub fn storage(&self, prefix: &str) -> Storage {
        Storage::open_s3(&self.url(prefix), &self.options(), Self::credentials())
            .expect("s3 storage")
    }

    /// The standard AWS variables that alone reach this server (for the real binary).
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY.into()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.into()),
            ("AWS_REGION", REGION.into()),
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_ALLOW_HTTP", "true".into()),
        ]
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Logged> {
        self.state.log.lock().unwrap().clone()
    }

    /// How many requests arrived so far.
    pub fn served(&self) -> usize {
        self.state.served.load(Ordering::SeqCst)
    }

    /// From the `n`-th request on (counting from now, 0-based), the server stops answering.
    /// Resolves once the first unanswered request arrived.
    pub fn hang_after(&self, n: usize) -> impl std::future::Future<Output = ()> + '_ {
        let hung = self.state.hung.notified();
        self.state
            .hang_from
            .store(self.served() + n, Ordering::SeqCst);
        hung
    }

    /// Answers every request again.
    pub fn resume(&self) {
        self.state.hang_from.store(usize::MAX, Ordering::SeqCst);
    }
}

fn no_such_bucket(bucket: &str) -> hyper::Response<s3s::Body> {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>NoSuchBucket</Code>\
         <Message>The specified bucket does not exist</Message><BucketName>{bucket}</BucketName></Error>"
    );
    hyper::Response::builder()
        .status(404)
        .header("content-type", "application/xml")
        .body(s3s::Body::from(body))
        .expect("a static response builds")
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}
