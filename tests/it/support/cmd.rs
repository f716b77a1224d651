//! The one way the suite runs the real binary: [`Cmd`] builds the command line and the
//! environment, [`Cmd::run`] runs it to the end and returns what it left ([`Ran`]).
//!
//! The environment is always cleared: the binary sees only what the test passes (and
//! `RUST_LOG=info`, unless told otherwise), so no `AWS_*` or `FRESHSERVICE_API_KEY` of the machine
//! reaches it.

use std::io::Read;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use ticketsync::sim::Simulator;

use super::s3::S3Server;

/// A `ticketsync` command line and the environment it runs in.
#[derive(Debug, Clone)]
#[must_use = "a Cmd does nothing until it is run"]
pub struct Cmd {
    args: Vec<String>,
    env: Vec<(String, String)>,
    /// `RUST_LOG`; `None` leaves the binary's own default (e.g. with `--quiet`).
    log: Option<String>,
    /// The `--data` directory, where [`Ran::report`] looks for the run report.
    data: Option<String>,
    timeout: Option<Duration>,
}

/// What one run of the binary left behind.
#[derive(Debug)]
pub struct Ran {
    /// The exit code; `None` when a signal ended it.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    /// The run report this run wrote into the local `--data` directory given by [`Cmd::data`]
    /// (`Null` if none: no report, another kind of location, or no such option).
    pub report: Value,
}

impl Cmd {
    /// `ticketsync <args>`.
    pub fn new<S: AsRef<str>>(args: impl IntoIterator<Item = S>) -> Cmd {
        Cmd {
            args: Vec::new(),
            env: Vec::new(),
            log: Some("info".into()),
            data: None,
            timeout: None,
        }
        .args(args)
    }

    /// More arguments.
    pub fn args<S: AsRef<str>>(mut self, args: impl IntoIterator<Item = S>) -> Cmd {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_string()));
        self
    }

    /// One more argument.
    pub fn arg(self, arg: impl AsRef<str>) -> Cmd {
        self.args([arg])
    }

    /// Sets `key` in the binary's environment (replacing an earlier value).
    pub fn env(mut self, key: &str, value: impl Into<String>) -> Cmd {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.to_string(), value.into()));
        self
    }

    /// Several variables at once.
    pub fn envs<K: AsRef<str>>(self, vars: impl IntoIterator<Item = (K, String)>) -> Cmd {
        vars.into_iter()
            .fold(self, |cmd, (k, v)| cmd.env(k.as_ref(), v))
    }

    /// `FRESHSERVICE_API_KEY`.
    pub fn api_key(self, key: impl Into<String>) -> Cmd {
        self.env("FRESHSERVICE_API_KEY", key)
    }

    /// `--base-url` of `sim`, and its API key in the environment.
    pub fn sim(self, sim: &Simulator) -> Cmd {
        self.args(["--base-url".to_string(), sim.base_url()])
            .api_key(sim.api_key())
    }

    /// The standard AWS variables that reach the in-process S3 server with its credentials.
    pub fn s3(self, server: &S3Server) -> Cmd {
        self.envs(server.env())
    }

    /// `--data <location>`; a local directory is also where [`Ran::report`] comes from.
    pub fn data(mut self, location: impl AsRef<str>) -> Cmd {
        let location = location.as_ref().to_string();
        self.data = Some(location.clone());
        self.args(["--data".to_string(), location])
    }

    /// `RUST_LOG` (`info` unless set).
    pub fn log(mut self, filter: &str) -> Cmd {
        self.log = Some(filter.into());
        self
    }

    /// `--quiet`, without `RUST_LOG` (which would override it).
    pub fn quiet(mut self) -> Cmd {
        self.log = None;
        self.arg("--quiet")
    }

    /// Kills the binary after `limit` and fails the test: a run that would wait for decades
    /// fails instead of hanging the suite.
    pub fn timeout(mut self, limit: Duration) -> Cmd {
        self.timeout = Some(limit);
        self
    }

    /// The process (stdout and stderr piped), for tests that read it as it runs; everything
    /// else uses [`Cmd::run`] or [`Cmd::spawn`].
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ticketsync"));
        cmd.args(&self.args)
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(log) = &self.log {
            cmd.env("RUST_LOG", log);
        }
        cmd
    }

    /// Starts the binary with its output discarded, for tests that kill it.
    pub fn spawn(&self) -> Child {
        self.command()
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the binary runs")
    }

    /// Runs the binary to the end, off the async runtime (in-process servers keep answering).
    pub async fn run(self) -> Ran {
        tokio::task::spawn_blocking(move || self.run_blocking())
            .await
            .expect("the binary's runner")
    }

    /// [`Cmd::run`] for tests without a runtime.
    pub fn run_blocking(self) -> Ran {
        let reports = self.reports_dir();
        let before = report_names(reports.as_deref());
        let child = self.command().spawn().expect("the binary runs");
        let out = match self.timeout {
            None => child.wait_with_output().expect("wait for the binary"),
            Some(limit) => wait_bounded(child, limit),
        };
        let report = reports
            .as_deref()
            .and_then(|dir| {
                let new = report_names(Some(dir))
                    .into_iter()
                    .filter(|n| !before.contains(n));
                new.max().map(|name| read_json(&dir.join(name)))
            })
            .unwrap_or(Value::Null);
        Ran {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            report,
        }
    }

    /// `<data>/_runs` for a local `--data` directory.
    fn reports_dir(&self) -> Option<std::path::PathBuf> {
        let data = self.data.as_deref().filter(|d| !d.contains("://"))?;
        Some(std::path::Path::new(data).join("_runs"))
    }
}

impl Ran {
    /// Stdout as JSON; fails the test with both streams when it is not.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "no JSON on stdout ({e}):\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }

    /// A count of the run report's `tickets` section (0 when absent).
    pub fn tickets(&self, key: &str) -> u64 {
        self.report["tickets"][key].as_u64().unwrap_or(0)
    }
}

/// The run reports of a dataset directory, oldest first (run ids start with their UTC start).
pub fn reports(data: &std::path::Path) -> Vec<Value> {
    let dir = data.join("_runs");
    let mut names = report_names(Some(&dir));
    names.sort();
    names
        .iter()
        .map(|name| read_json(&dir.join(name)))
        .collect()
}

fn report_names(dir: Option<&std::path::Path>) -> Vec<std::ffi::OsString> {
    let Some(Ok(entries)) = dir.map(std::fs::read_dir) else {
        return Vec::new();
    };
    entries.map(|e| e.unwrap().file_name()).collect()
}

fn read_json(path: &std::path::Path) -> Value {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Waits for `child` at most `limit`, draining its pipes meanwhile (a chatty run never blocks
/// on a full pipe); past the limit it is killed and the test fails with its stderr.
fn wait_bounded(mut child: Child, limit: Duration) -> Output {
    fn drain(pipe: Option<impl Read + Send + 'static>) -> std::thread::JoinHandle<Vec<u8>> {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut bytes);
            }
            bytes
        })
    }
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the binary") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let stderr = stderr.join().unwrap();
            panic!(
                "the run did not finish within {limit:?}; stderr:\n{}",
                String::from_utf8_lossy(&stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Output {
        status,
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    }
}
