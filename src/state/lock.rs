//! The run lock `_state/lock.json`: at most one run writes a dataset at a time.
//!
//! A run creates the lock object before it touches anything (conditional create: `If-None-Match:
//! *` on S3, a hard link on local disk), refreshes it while it runs and deletes it at the end,
//! also when the run failed. The object says who holds it (run id, host, pid, start) and until
//! when. A second run that finds a lock that has not expired is refused with [`Error::Held`]; a
//! lock past its expiry belongs to a run that was killed, and is taken over with a warning.
//!
//! A run that can no longer show it holds the lock (someone deleted or took it over, or the
//! refresh failed until expiry) is told by [`Lock::check`], which the pipeline calls before
//! every commit, so it stops before its next write.
//!
//! Residual races, all needing two runs to act within one round trip of each other:
//! - two runs that find the same *expired* lock both delete it and create their own; the first
//!   creator's lock is deleted by the second, and the first notices at its next refresh (within
//!   a third of the TTL) or the read-back below, and stops before its next commit;
//! - on a store without conditional puts the create is head-then-put; the read-back after the
//!   create catches the common case, not a writer that lands after it.
//!
//! Expiry compares the holder's clock with ours: hosts that share a dataset need synchronized
//! clocks (NTP), well within the TTL.
//!
//! Time comes from a [`Clock`]: the system clock in production, a [`ManualClock`] in tests, so
//! expiry and refresh are reached by advancing it instead of sleeping.
//!
//! This module does not decide what a run does when it is refused; the pipeline does.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use crate::storage::{self, Storage};

/// The lock object's name under `_state/`.
pub const LOCK: &str = "lock.json";

/// How long a lock lives without a refresh, unless the job says otherwise. A killed run blocks
/// the dataset this long; a live run refreshes every third of it.
pub const DEFAULT_TTL: Duration = Duration::from_secs(600);

/// Where the lock reads the time and how its refresh waits.
#[derive(Debug, Clone, Default)]
pub enum Clock {
    /// `Utc::now()` and the runtime's timers: what every real run uses.
    #[default]
    System,
    /// Time that moves only when a test says so ([`ManualClock::advance`]).
    Manual(ManualClock),
}

impl Clock {
    /// The time now, by this clock.
    pub fn now(&self) -> DateTime<Utc> {
        match self {
            Clock::System => Utc::now(),
            Clock::Manual(manual) => manual.now(),
        }
    }

    /// A timer that fires every `period`, the first time `period` from now. A tick that fires
    /// late delays the next one (tokio's `MissedTickBehavior::Delay`).
    fn ticker(&self, period: Duration) -> Ticker {
        match self {
            Clock::System => {
                let start = tokio::time::Instant::now() + period;
                let mut interval = tokio::time::interval_at(start, period);
                interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                Ticker::System(interval)
            }
            Clock::Manual(manual) => Ticker::Manual {
                clock: manual.clone(),
                next: manual.now() + period,
                period,
            },
        }
    }
}

/// A clock for tests: it stands still until [`ManualClock::advance`] moves it, which also wakes
/// the lock refreshes whose time has come. Clones share the time.
#[derive(Debug, Clone)]
pub struct ManualClock {
    now: Arc<watch::Sender<DateTime<Utc>>>,
}

impl ManualClock {
    /// A clock standing at `now`.
    pub fn new(now: DateTime<Utc>) -> ManualClock {
        ManualClock {
            now: Arc::new(watch::Sender::new(now)),
        }
    }

    /// The [`Clock`] that reads this one.
    pub fn clock(&self) -> Clock {
        Clock::Manual(self.clone())
    }

    /// The time it stands at.
    pub fn now(&self) -> DateTime<Utc> {
        *self.now.borrow()
    }

    /// Moves the time forward by `by`.
    pub fn advance(&self, by: Duration) {
        let by = chrono::Duration::from_std(by).expect("a test advances by a sane duration");
        self.now.send_modify(|now| *now += by);
    }

    async fn sleep_until(&self, deadline: DateTime<Utc>) {
        let mut now = self.now.subscribe();
        // The sender lives as long as `self`: this returns only once the time has come.
        let _ = now.wait_for(|now| *now >= deadline).await;
    }
}

/// The refresh timer of a [`Clock`].
enum Ticker {
    System(tokio::time::Interval),
    Manual {
        clock: ManualClock,
        next: DateTime<Utc>,
        period: Duration,
    },
}

impl Ticker {
    async fn tick(&mut self) {
        match self {
            Ticker::System(interval) => {
                interval.tick().await;
            }
            Ticker::Manual {
                clock,
                next,
                period,
            } => {
                clock.sleep_until(*next).await;
                // On time: the next tick a period later; late: a period from now.
                *next = (*next).max(clock.now()) + *period;
            }
        }
    }
}

/// The content of the lock object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockInfo {
    /// The run holding the lock (its report is `_runs/<run_id>.json`).
    pub run_id: String,
    /// The holder's host name.
    pub host: String,
    /// The holder's process id (meaningful only in `pid_ns` on `host`).
    pub pid: u32,
    /// The holder's boot id (`/proc/sys/kernel/random/boot_id`); absent in locks written by
    /// older versions or where `/proc` does not exist.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_id: Option<String>,
    /// The holder's pid namespace (`readlink /proc/self/ns/pid`, e.g. `pid:[4026531836]`): its
    /// pid means something only in that namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid_ns: Option<String>,
    /// When the holder took the lock.
    pub started_at: DateTime<Utc>,
    /// When the holder last refreshed it.
    pub refreshed_at: DateTime<Utc>,
    /// When it expires unless refreshed (`refreshed_at` + the lock's TTL); after that the next run takes it over.
    pub expires_at: DateTime<Utc>,
}

/// Who this process is, for the lock object and for deciding whether a holder is gone.
/// [`Identity::current`] reads the real one; tests build others (another container, another
/// boot) to exercise [`provably_gone`] without containers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The host name.
    pub host: String,
    /// The process id.
    pub pid: u32,
    /// `None` where the kernel does not tell (no `/proc`): then no holder is provably gone.
    pub boot_id: Option<String>,
    /// `None` where the kernel does not tell: then no holder is provably gone.
    pub pid_ns: Option<String>,
}

impl Identity {
    /// This process, as the kernel reports it.
    pub fn current() -> Identity {
        let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty());
        let pid_ns = std::fs::read_link("/proc/self/ns/pid")
            .ok()
            .map(|p| p.to_string_lossy().into_owned())
            .filter(|s| !s.is_empty());
        Identity {
            host: host_name(),
            pid: std::process::id(),
            boot_id,
            pid_ns,
        }
    }
}

/// Whether the holder of a live lock is provably gone, so waiting for its expiry would only
/// delay the rerun: it ran under the same kernel boot (`boot_id`) in the same pid namespace
/// (`pid_ns`), is not this process, and `running(pid)` says no such process exists. Every
/// missing piece of evidence (an old lock without the fields, a system without `/proc`) means
/// "not provably gone". The host name is not evidence: containers sharing the host's network
/// share its name but not its pids.
pub fn provably_gone(holder: &LockInfo, me: &Identity, running: impl Fn(u32) -> bool) -> bool {
    let same = |theirs: &Option<String>, ours: &Option<String>| matches!((theirs, ours), (Some(a), Some(b)) if a == b);
    same(&holder.boot_id, &me.boot_id)
        && same(&holder.pid_ns, &me.pid_ns)
        && holder.pid != me.pid
        && !running(holder.pid)
}

/// Whether a process with this pid exists in our pid namespace (as `/proc` shows it). A zombie
/// counts as running; that only delays a takeover.
fn pid_running(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

impl std::fmt::Display for LockInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "run {} on {} (pid {}), started {}, lock expires {}",
            self.run_id,
            self.host,
            self.pid,
            self.started_at.to_rfc3339_opts(SecondsFormat::Secs, true),
            self.expires_at.to_rfc3339_opts(SecondsFormat::Secs, true),
        )
    }
}

/// Run-lock errors: someone else holds or took the lock, or the lock object is unusable.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Another run holds an unexpired lock.
    #[error("another run is writing {data}: {holder}; retry after it finished, or delete {path} if that run is known to be dead")]
    Held {
        /// The dataset location.
        data: String,
        /// The lock object's path (`_state/lock.json`).
        path: String,
        /// What the lock object says about its holder.
        holder: Box<LockInfo>,
    },
    /// The lock changed hands repeatedly while this run tried to take it.
    #[error("cannot take the lock on {data}: other runs keep taking it")]
    Contended {
        /// The dataset location.
        data: String,
    },
    /// This run no longer holds its lock; it must not write.
    #[error("run {run_id} lost its lock on {data}: {reason}")]
    Lost {
        /// This run's id.
        run_id: String,
        /// The dataset location.
        data: String,
        /// What showed the lock lost (another holder, an expired or missing lock object).
        reason: String,
    },
    #[error(
        "lock object {path} is corrupt ({detail}); delete it if no run is writing the dataset"
    )]
    /// A lock object exists but does not decode: runs refuse to start until someone deletes it.
    Corrupt {
        /// The lock object's path.
        path: String,
        /// The decode error.
        detail: String,
    },
    /// Reading or writing the lock object failed.
    #[error(transparent)]
    Storage(#[from] storage::Error),
}

impl crate::error::Classify for Error {
    /// Another run holding the dataset is transient; a corrupt lock object needs the operator
    /// (or its expiry), so it fails.
    fn class(&self) -> crate::error::Class {
        use crate::error::Class;
        match self {
            Error::Held { .. } | Error::Contended { .. } | Error::Lost { .. } => Class::Retryable,
            Error::Corrupt { .. } => Class::Failed,
            Error::Storage(e) => e.class(),
        }
    }
}

type Result<T, E = Error> = std::result::Result<T, E>;

/// A held lock. [`Lock::release`] deletes it; dropping it only stops the refresh (the lock then
/// expires), which is what happens when a run is aborted.
#[derive(Debug)]
pub struct Lock {
    storage: Storage,
    run_id: String,
    clock: Clock,
    shared: Arc<Mutex<Shared>>,
    stop: Option<oneshot::Sender<()>>,
    refresher: Option<JoinHandle<()>>,
}

/// What the refresher and the run share.
#[derive(Debug)]
struct Shared {
    expires_at: DateTime<Utc>,
    /// Why the lock is no longer ours, once it is not.
    lost: Option<String>,
}

impl Lock {
    /// Takes the lock for `run_id`, or fails with [`Error::Held`] naming the run that has it.
    pub async fn acquire(storage: &Storage, run_id: &str, ttl: Duration) -> Result<Lock> {
        Self::acquire_with(storage, run_id, ttl, &Identity::current(), Clock::System).await
    }

    /// [`Lock::acquire`] as the process `me`, on `clock` (tests pretend to be another container
    /// or boot, and move time by hand).
    pub async fn acquire_with(
        storage: &Storage,
        run_id: &str,
        ttl: Duration,
        me: &Identity,
        clock: Clock,
    ) -> Result<Lock> {
        let path = storage.scope().state(LOCK);
        let ttl = ttl.max(Duration::from_millis(100));
        let mut held_by = None;
        // A few rounds: a lock can be released or taken over between our create and our read.
        for _ in 0..3 {
            let mine = LockInfo::new(run_id, ttl, me, clock.now());
            if storage.create(&path, to_json(&mine)).await? {
                // Read back: a store that ignores the condition lets the last writer win.
                match read(storage).await? {
                    Some(info) if info.run_id == run_id => {
                        tracing::debug!(run_id, expires_at = %info.expires_at, "run lock taken");
                        return Ok(Lock::start(storage, info, ttl, clock));
                    }
                    Some(other) => return Err(held(storage, other)),
                    None => continue,
                }
            }
            match read(storage).await? {
                // Released between our create and our read: try again.
                None => continue,
                Some(holder)
                    if holder.expires_at > clock.now()
                        && !provably_gone(&holder, me, pid_running) =>
                {
                    return Err(held(storage, holder))
                }
                Some(stale) => {
                    // Of several runs taking over at once exactly one wins: each first creates
                    // a claim named after this very lock version (a conditional create), and
                    // only the one whose create succeeded deletes the stale lock.
                    let claim = claim_path(storage, &stale);
                    if !storage.create(&claim, to_json(&mine)).await? {
                        return Err(Error::Contended {
                            data: storage.display().to_string(),
                        });
                    }
                    // Still the version we claimed? (A slow contender may claim a version long
                    // replaced: it must not delete the lock that replaced it.)
                    match read(storage).await? {
                        Some(now) if now == stale => {}
                        _ => continue,
                    }
                    tracing::warn!(
                        stale_run_id = %stale.run_id,
                        stale_host = %stale.host,
                        expired_at = %stale.expires_at.to_rfc3339_opts(SecondsFormat::Secs, true),
                        "taking over the lock of a run that did not finish (expired, or its process is provably gone: same boot and pid namespace, no such pid)"
                    );
                    storage.delete(&path).await?;
                    held_by = Some(stale);
                }
            }
        }
        Err(match held_by {
            Some(holder) if holder.expires_at > clock.now() => held(storage, holder),
            _ => Error::Contended {
                data: storage.display().to_string(),
            },
        })
    }

    /// `Ok` while the lock object in storage is still this run's, checked there (one read), and
    /// [`Lock::check`] holds: what every commit point calls. A lock deleted by hand, or taken
    /// over, stops the run before its next commit, not at the next refresh.
    pub async fn verify(&self) -> Result<()> {
        self.check()?;
        let lost = match read(&self.storage).await? {
            Some(info) if info.run_id == self.run_id => return Ok(()),
            Some(other) => format!("taken over by {other}"),
            None => "the lock object was deleted".to_string(),
        };
        tracing::error!(run_id = %self.run_id, reason = %lost, "lost the run lock; stopping before this commit");
        if let Ok(mut shared) = self.shared.lock() {
            shared.lost.get_or_insert(lost);
        }
        self.check()
    }

    /// `Ok` while this run holds the lock as far as the refresher knows (no storage call);
    /// [`Lock::verify`] asks storage too.
    pub fn check(&self) -> Result<()> {
        // A poisoned mutex means the refresher panicked: the lock is not being kept.
        let reason = match self.shared.lock() {
            Ok(shared) if shared.lost.is_some() => shared.lost.clone(),
            Ok(shared) if shared.expires_at <= self.clock.now() => Some(format!(
                "it expired at {} and could not be refreshed",
                shared.expires_at.to_rfc3339_opts(SecondsFormat::Secs, true)
            )),
            Ok(_) => None,
            Err(_) => Some("the lock refresh task panicked".to_string()),
        };
        match reason {
            None => Ok(()),
            Some(reason) => Err(Error::Lost {
                run_id: self.run_id.clone(),
                data: self.storage.display().to_string(),
                reason,
            }),
        }
    }

    /// Stops the refresh and deletes the lock, unless another run has taken it over.
    pub async fn release(mut self) -> Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(refresher) = self.refresher.take() {
            // Let an in-flight refresh finish, so it cannot land after the delete.
            let _ = refresher.await;
        }
        match read(&self.storage).await? {
            Some(info) if info.run_id == self.run_id => {
                remove_claims(&self.storage).await;
                self.storage
                    .delete(&self.storage.scope().state(LOCK))
                    .await?;
                tracing::debug!(run_id = %self.run_id, "run lock released");
            }
            Some(other) => {
                tracing::warn!(run_id = %self.run_id, holder = %other, "the run lock was taken over by another run; leaving it")
            }
            None => {
                tracing::warn!(run_id = %self.run_id, "the run lock was already gone")
            }
        }
        Ok(())
    }

    /// Starts the refresh task of a lock just taken.
    fn start(storage: &Storage, info: LockInfo, ttl: Duration, clock: Clock) -> Lock {
        let shared = Arc::new(Mutex::new(Shared {
            expires_at: info.expires_at,
            lost: None,
        }));
        let (stop, stopped) = oneshot::channel();
        let refresher = tokio::spawn(refresh_loop(
            storage.clone(),
            info.clone(),
            ttl,
            // From now, not from when the task first runs.
            clock.ticker(ttl / 3),
            clock.clone(),
            shared.clone(),
            stopped,
        ));
        Lock {
            storage: storage.clone(),
            run_id: info.run_id,
            clock,
            shared,
            stop: Some(stop),
            refresher: Some(refresher),
        }
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        // Not released (the run was aborted or panicked): stop refreshing so the lock expires.
        if let Some(refresher) = self.refresher.take() {
            refresher.abort();
        }
    }
}

impl LockInfo {
    fn new(run_id: &str, ttl: Duration, me: &Identity, now: DateTime<Utc>) -> LockInfo {
        LockInfo {
            run_id: run_id.to_string(),
            host: me.host.clone(),
            pid: me.pid,
            boot_id: me.boot_id.clone(),
            pid_ns: me.pid_ns.clone(),
            started_at: now,
            refreshed_at: now,
            expires_at: now + ttl,
        }
    }
}

/// Pushes the expiry forward every `tick` (a third of the TTL, the first one a third after the
/// lock was written) until told to stop or the lock is lost.
/// (This timer is the lock's own clock; API pacing and retries stay in `source::retry`.)
async fn refresh_loop(
    storage: Storage,
    mut info: LockInfo,
    ttl: Duration,
    mut tick: Ticker,
    clock: Clock,
    shared: Arc<Mutex<Shared>>,
    mut stopped: oneshot::Receiver<()>,
) {
    loop {
        // Races the next refresh against `release` asking the task to stop.
        tokio::select! {
            _ = tick.tick() => {}
            _ = &mut stopped => return,
        }
        let lost = match refresh(&storage, &mut info, ttl, &clock).await {
            Ok(None) => {
                if let Ok(mut shared) = shared.lock() {
                    shared.expires_at = info.expires_at;
                }
                continue;
            }
            Ok(Some(reason)) => reason,
            Err(e) if clock.now() < info.expires_at => {
                tracing::warn!(run_id = %info.run_id, error = %e, "cannot refresh the run lock; trying again");
                continue;
            }
            Err(e) => format!("it expired while refreshing failed: {e}"),
        };
        tracing::error!(run_id = %info.run_id, reason = %lost, "lost the run lock; stopping before the next commit");
        if let Ok(mut shared) = shared.lock() {
            shared.lost = Some(lost);
        }
        return;
    }
}

/// One refresh: `Ok(Some(reason))` when the lock is no longer ours.
async fn refresh(
    storage: &Storage,
    info: &mut LockInfo,
    ttl: Duration,
    clock: &Clock,
) -> Result<Option<String>> {
    match read(storage).await? {
        None => return Ok(Some("the lock object was deleted".into())),
        Some(other) if other.run_id != info.run_id => {
            return Ok(Some(format!("taken over by {other}")))
        }
        Some(_) => {}
    }
    let now = clock.now();
    if now >= info.expires_at {
        // Someone may take it over as we write; do not overwrite what might be theirs.
        return Ok(Some("it expired before it could be refreshed".into()));
    }
    info.refreshed_at = now;
    info.expires_at = now + ttl;
    storage
        .put(&storage.scope().state(LOCK), to_json(info))
        .await?;
    Ok(None)
}

/// The takeover claim of one version of the lock (its run and last refresh): created with a
/// conditional create by the one run that may replace that version.
fn claim_path(storage: &Storage, stale: &LockInfo) -> object_store::path::Path {
    let version = stale.refreshed_at.timestamp_micros();
    let run: String = stale
        .run_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    storage
        .scope()
        .state(CLAIMS)
        .join(format!("{run}-{version}.json"))
}

/// Where takeover claims are kept, under the domain's `_state/`.
const CLAIMS: &str = "lock-takeover";

/// Claims left by takeovers: a release removes them (the versions they name are gone).
async fn remove_claims(storage: &Storage) {
    if let Ok(claims) = storage.list(&storage.scope().state(CLAIMS)).await {
        for claim in claims {
            let _ = storage.delete(&claim).await;
        }
    }
}

/// The lock object as it is now (`None`: no run holds it), read without taking it: what
/// `ticketsync check` reports. A lock past its `expires_at` belongs to a run that did not
/// finish; the next run takes it over.
pub async fn peek(storage: &Storage) -> Result<Option<LockInfo>> {
    read(storage).await
}

async fn read(storage: &Storage) -> Result<Option<LockInfo>> {
    let path = storage.scope().state(LOCK);
    match storage.get(&path).await? {
        None => Ok(None),
        Some(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| Error::Corrupt {
                path: format!("{}/{path}", storage.display().trim_end_matches('/')),
                detail: e.to_string(),
            }),
    }
}

fn held(storage: &Storage, holder: LockInfo) -> Error {
    Error::Held {
        data: storage.display().to_string(),
        path: format!(
            "{}/{}",
            storage.display().trim_end_matches('/'),
            storage.scope().state(LOCK)
        ),
        holder: Box::new(holder),
    }
}

fn to_json(info: &LockInfo) -> bytes::Bytes {
    // Strings and timestamps always serialize.
    serde_json::to_vec_pretty(info)
        .expect("lock serializes")
        .into()
}

/// This machine's name, for the operator reading a refusal.
fn host_name() -> String {
    // std has no hostname call; Linux exposes it here, other systems usually in the environment.
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .or_else(|| std::env::var("COMPUTERNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown-host".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local() -> (tempfile::TempDir, Storage) {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::local(dir.path()).unwrap();
        (dir, storage)
    }

    const TTL: Duration = Duration::from_secs(3);

    /// A manual clock at the real time now, and the [`Clock`] that reads it.
    fn manual() -> (ManualClock, Clock) {
        let manual = ManualClock::new(Utc::now());
        let clock = manual.clock();
        (manual, clock)
    }

    fn me() -> Identity {
        Identity::current()
    }

    /// Takes the lock for `run_id` as this process, on `clock`.
    async fn take(storage: &Storage, run_id: &str, ttl: Duration, clock: &Clock) -> Result<Lock> {
        Lock::acquire_with(storage, run_id, ttl, &me(), clock.clone()).await
    }

    /// Waits (at most 30 s of real time) until `done` holds: for the refresh task's I/O, which
    /// runs after the manual clock was advanced; time itself is never waited for.
    async fn eventually<F, Fut>(what: &str, mut done: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !done().await {
            assert!(
                std::time::Instant::now() < deadline,
                "never happened: {what}"
            );
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    #[tokio::test]
    async fn a_second_run_is_refused_until_the_first_releases() {
        let (_dir, storage) = local();
        let first = Lock::acquire(&storage, "run-a", TTL).await.unwrap();
        let err = Lock::acquire(&storage, "run-b", TTL).await.unwrap_err();
        let Error::Held { holder, .. } = &err else {
            panic!("{err}")
        };
        assert_eq!(holder.run_id, "run-a");
        assert_eq!(holder.pid, std::process::id());
        let text = err.to_string();
        for needle in ["run run-a on ", "started ", "_state/lock.json"] {
            assert!(text.contains(needle), "{text}");
        }
        first.check().unwrap();
        first.release().await.unwrap();
        assert_eq!(read(&storage).await.unwrap(), None);
        let second = Lock::acquire(&storage, "run-b", TTL).await.unwrap();
        second.release().await.unwrap();
    }

    /// Issue 19: an operator deleted `lock.json` of a live run (the lock message says to when
    /// the holder is dead); the run went on committing until its next refresh. Every commit
    /// point now asks storage first.
    #[tokio::test]
    async fn a_deleted_or_replaced_lock_fails_the_next_verify_not_the_next_refresh() {
        let (_dir, storage) = local();
        let (_manual, clock) = manual();
        let lock = take(&storage, "run-a", TTL, &clock).await.unwrap();
        lock.verify().await.unwrap();
        storage.delete(&storage.scope().state(LOCK)).await.unwrap();
        // No time has passed: the refresher has not looked, check() alone still says yes.
        lock.check().unwrap();
        let err = lock.verify().await.unwrap_err();
        assert!(err.to_string().contains("deleted"), "{err}");
        lock.check().unwrap_err();
        // Deleted, then taken by another run (what `forget` did).
        let (_dir, storage) = local();
        let lock = take(&storage, "run-a", TTL, &clock).await.unwrap();
        storage.delete(&storage.scope().state(LOCK)).await.unwrap();
        let other = take(&storage, "run-b", TTL, &clock).await.unwrap();
        let err = lock.verify().await.unwrap_err();
        assert!(err.to_string().contains("run-b"), "{err}");
        other.release().await.unwrap();
    }

    /// Issue 19: taking over an expired lock deleted it unconditionally, so of two runs taking
    /// over at once both could go on. Exactly one wins, however their steps interleave.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn of_runs_taking_over_an_expired_lock_at_once_exactly_one_wins() {
        for round in 0..40 {
            let (_dir, storage) = local();
            let (manual, clock) = manual();
            let ttl = Duration::from_secs(1);
            drop(take(&storage, "killed", ttl, &clock).await.unwrap());
            manual.advance(ttl + Duration::from_millis(10));
            let runs = (0..4).map(|n| {
                let (storage, clock) = (storage.clone(), clock.clone());
                tokio::spawn(async move { take(&storage, &format!("run-{n}"), ttl, &clock).await })
            });
            let results = futures::future::join_all(runs).await;
            let won: Vec<Lock> = results
                .into_iter()
                .filter_map(|r| r.unwrap().ok())
                .collect();
            assert_eq!(
                won.len(),
                1,
                "round {round}: {} runs took the lock",
                won.len()
            );
            won[0].verify().await.unwrap();
            for lock in won {
                lock.release().await.unwrap();
            }
            // The release leaves no claim behind, and the next run takes the lock.
            assert!(storage
                .list(&storage.scope().state(CLAIMS))
                .await
                .unwrap()
                .is_empty());
            take(&storage, "after", ttl, &clock)
                .await
                .unwrap()
                .release()
                .await
                .unwrap();
        }
    }

    #[tokio::test]
    async fn a_live_lock_is_refreshed_past_its_ttl() {
        let (_dir, storage) = local();
        let (manual, clock) = manual();
        let lock = take(&storage, "run-a", TTL, &clock).await.unwrap();
        // Two TTLs in six steps of a third: each one is a refresh, which moves the expiry.
        for _ in 0..6 {
            manual.advance(TTL / 3);
            let now = manual.now();
            eventually("the lock is refreshed", || async {
                read(&storage).await.unwrap().unwrap().refreshed_at == now
            })
            .await;
        }
        lock.check().unwrap();
        assert!(matches!(
            take(&storage, "run-b", TTL, &clock).await,
            Err(Error::Held { .. })
        ));
        lock.release().await.unwrap();
    }

    #[tokio::test]
    async fn a_lock_that_cannot_be_refreshed_is_lost_at_its_expiry() {
        let (_dir, storage) = local();
        let (manual, clock) = manual();
        let lock = take(&storage, "run-a", TTL, &clock).await.unwrap();
        // What a refresher that cannot reach the store amounts to: it never refreshes.
        lock.refresher.as_ref().unwrap().abort();
        manual.advance(TTL - Duration::from_millis(1));
        lock.check().unwrap();
        manual.advance(Duration::from_millis(1));
        let err = lock.check().unwrap_err();
        assert!(err.to_string().contains("could not be refreshed"), "{err}");
    }

    #[tokio::test]
    async fn the_expired_lock_of_a_killed_run_is_taken_over() {
        let (_dir, storage) = local();
        let (manual, clock) = manual();
        let ttl = Duration::from_secs(1);
        // A run that was killed: its lock is not refreshed any more.
        let killed = take(&storage, "run-a", ttl, &clock).await.unwrap();
        drop(killed);
        assert!(matches!(
            take(&storage, "run-b", ttl, &clock).await,
            Err(Error::Held { .. })
        ));
        manual.advance(ttl - Duration::from_millis(1));
        assert!(
            matches!(
                take(&storage, "run-b", ttl, &clock).await,
                Err(Error::Held { .. })
            ),
            "not expired before its expiry"
        );
        manual.advance(Duration::from_millis(200));
        let next = take(&storage, "run-b", ttl, &clock).await.unwrap();
        assert_eq!(read(&storage).await.unwrap().unwrap().run_id, "run-b");
        next.release().await.unwrap();
    }

    #[tokio::test]
    async fn a_run_whose_lock_was_taken_over_notices() {
        let (_dir, storage) = local();
        let (manual, clock) = manual();
        let lock = take(&storage, "run-a", TTL, &clock).await.unwrap();
        let mut other = LockInfo::new("run-b", TTL * 10, &me(), manual.now());
        other.host = "elsewhere".into();
        storage
            .put(&storage.scope().state(LOCK), to_json(&other))
            .await
            .unwrap();
        lock.check().unwrap();
        // The next refresh (a third of the TTL from the start) notices.
        manual.advance(TTL / 3);
        eventually("the takeover is noticed", || async {
            lock.check().is_err()
        })
        .await;
        let err = lock.check().unwrap_err();
        assert!(
            err.to_string()
                .contains("taken over by run run-b on elsewhere"),
            "{err}"
        );
        // Releasing leaves the other run's lock alone.
        lock.release().await.unwrap();
        assert_eq!(read(&storage).await.unwrap().unwrap().run_id, "run-b");
    }

    #[tokio::test]
    async fn the_live_lock_of_a_dead_process_on_this_host_is_taken_over() {
        let (_dir, storage) = local();
        let mut dead = LockInfo::new("killed-run", Duration::from_secs(600), &me(), Utc::now());
        // A pid above the kernel's maximum never exists.
        dead.pid = 4_194_304 + 1;
        storage
            .put(&storage.scope().state(LOCK), to_json(&dead))
            .await
            .unwrap();
        let lock = Lock::acquire(&storage, "next-run", Duration::from_secs(600))
            .await
            .unwrap();
        lock.release().await.unwrap();
        // Another machine's live lock is respected (another boot: its pids are not ours).
        let mut remote = LockInfo::new("remote-run", Duration::from_secs(600), &me(), Utc::now());
        remote.host = "elsewhere".into();
        remote.boot_id = Some("another-machine".into());
        remote.pid = 4_194_304 + 1;
        storage
            .put(&storage.scope().state(LOCK), to_json(&remote))
            .await
            .unwrap();
        assert!(
            Lock::acquire(&storage, "next-run", Duration::from_secs(600))
                .await
                .is_err()
        );
    }

    /// A pid above the kernel's maximum (2^22) never exists.
    const DEAD_PID: u32 = 4_194_304 + 1;

    fn identity(host: &str, pid: u32, boot: &str, ns: &str) -> Identity {
        Identity {
            host: host.into(),
            pid,
            boot_id: Some(boot.into()),
            pid_ns: Some(ns.into()),
        }
    }

    #[test]
    fn only_the_same_boot_and_pid_namespace_prove_a_holder_gone() {
        let me = identity("shared", 100, "boot-1", "pid:[1]");
        let holder = |host: &str, pid: u32, boot: Option<&str>, ns: Option<&str>| LockInfo {
            boot_id: boot.map(String::from),
            pid_ns: ns.map(String::from),
            ..LockInfo::new("other", TTL, &identity(host, pid, "x", "x"), Utc::now())
        };
        let nothing_runs = |_: u32| false;
        // (holder, gone?)
        let cases = [
            // Same boot, namespace, no such pid: gone, whatever the host name says.
            (holder("shared", 7, Some("boot-1"), Some("pid:[1]")), true),
            (holder("renamed", 7, Some("boot-1"), Some("pid:[1]")), true),
            // Another container with --network host: same name, its own pids.
            (holder("shared", 7, Some("boot-1"), Some("pid:[2]")), false),
            // Another boot (or machine): its pids say nothing about ours.
            (holder("shared", 7, Some("boot-0"), Some("pid:[1]")), false),
            // An older lock without the evidence.
            (holder("shared", 7, None, None), false),
            (holder("shared", 7, Some("boot-1"), None), false),
            // This very process.
            (
                holder("shared", 100, Some("boot-1"), Some("pid:[1]")),
                false,
            ),
        ];
        for (i, (holder, gone)) in cases.iter().enumerate() {
            assert_eq!(provably_gone(holder, &me, nothing_runs), *gone, "case {i}");
        }
        // A process with that pid exists: not gone.
        assert!(!provably_gone(&cases[0].0, &me, |_| true));
        // We cannot tell who we are: nobody is provably gone.
        let blind = Identity {
            boot_id: None,
            pid_ns: None,
            ..me.clone()
        };
        assert!(!provably_gone(&cases[0].0, &blind, nothing_runs));
    }

    #[tokio::test]
    async fn a_live_lock_from_another_container_is_not_stolen() {
        let (_dir, storage) = local();
        let (manual, clock) = manual();
        let ttl = Duration::from_secs(600);
        let me = identity("shared-host", 100, "boot-1", "pid:[4026531836]");
        let acquire = || Lock::acquire_with(&storage, "next-run", ttl, &me, clock.clone());
        // A run in another container on the same host (same name, same boot): its pid does
        // not exist in our namespace, yet it runs.
        let neighbour = identity("shared-host", DEAD_PID, "boot-1", "pid:[4026532999]");
        let live = LockInfo::new("neighbour-run", ttl, &neighbour, manual.now());
        storage
            .put(&storage.scope().state(LOCK), to_json(&live))
            .await
            .unwrap();
        let err = acquire().await.unwrap_err();
        let Error::Held { holder, .. } = &err else {
            panic!("{err}")
        };
        assert_eq!(holder.run_id, "neighbour-run");

        // Same boot and namespace, and the pid is gone: the holder was killed; take over.
        let killed = identity("shared-host", DEAD_PID, "boot-1", "pid:[4026531836]");
        storage
            .put(
                &storage.scope().state(LOCK),
                to_json(&LockInfo::new("killed-run", ttl, &killed, manual.now())),
            )
            .await
            .unwrap();
        let lock = acquire().await.unwrap();
        let taken = read(&storage).await.unwrap().unwrap();
        assert_eq!(taken.run_id, "next-run");
        assert_eq!(taken.boot_id.as_deref(), Some("boot-1"));
        assert_eq!(taken.pid_ns.as_deref(), Some("pid:[4026531836]"));
        lock.release().await.unwrap();

        // Another boot id (a rebooted host, another machine): refused until it expires.
        let before_reboot = identity("shared-host", DEAD_PID, "boot-0", "pid:[4026531836]");
        let old = LockInfo::new("before-reboot", ttl, &before_reboot, manual.now());
        storage
            .put(&storage.scope().state(LOCK), to_json(&old))
            .await
            .unwrap();
        assert!(matches!(acquire().await, Err(Error::Held { .. })));
        manual.advance(ttl + Duration::from_secs(1));
        let lock = acquire().await.unwrap();
        lock.release().await.unwrap();
    }

    #[tokio::test]
    async fn a_lock_written_without_boot_id_waits_for_its_expiry() {
        let (_dir, storage) = local();
        // The format of older versions: this host, a pid that does not exist, no boot id or
        // namespace. Nothing proves its holder gone (it may run in another container).
        let now = Utc::now();
        let old = serde_json::json!({
            "run_id": "old-run",
            "host": host_name(),
            "pid": DEAD_PID,
            "started_at": now,
            "refreshed_at": now,
            "expires_at": now + chrono::Duration::seconds(600),
        });
        storage
            .put(
                &storage.scope().state(LOCK),
                serde_json::to_vec(&old).unwrap().into(),
            )
            .await
            .unwrap();
        let err = Lock::acquire(&storage, "next-run", TTL).await.unwrap_err();
        let Error::Held { holder, .. } = &err else {
            panic!("{err}")
        };
        assert_eq!(
            (holder.boot_id.as_ref(), holder.pid_ns.as_ref()),
            (None, None)
        );
    }

    #[tokio::test]
    async fn a_corrupt_lock_is_a_clear_error() {
        let (_dir, storage) = local();
        storage
            .put(
                &storage.scope().state(LOCK),
                bytes::Bytes::from_static(b"{"),
            )
            .await
            .unwrap();
        let err = Lock::acquire(&storage, "run-a", TTL).await.unwrap_err();
        assert!(matches!(err, Error::Corrupt { .. }), "{err}");
        assert!(err.to_string().contains("lock.json is corrupt"), "{err}");
    }
}
