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
//! This module does not decide what a run does when it is refused; the pipeline does.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::storage::{self, layout, Storage};

/// The lock object's name under `_state/`.
pub const LOCK: &str = "lock.json";

/// How long a lock lives without a refresh, unless the job says otherwise. A killed run blocks
/// the dataset this long; a live run refreshes every third of it.
pub const DEFAULT_TTL: Duration = Duration::from_secs(600);

/// The content of the lock object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockInfo {
    pub run_id: String,
    pub host: String,
    pub pid: u32,
    /// The holder's boot id (`/proc/sys/kernel/random/boot_id`); absent in locks written by
    /// older versions or where `/proc` does not exist.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_id: Option<String>,
    /// The holder's pid namespace (`readlink /proc/self/ns/pid`, e.g. `pid:[4026531836]`): its
    /// pid means something only in that namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid_ns: Option<String>,
    pub started_at: DateTime<Utc>,
    pub refreshed_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// Who this process is, for the lock object and for deciding whether a holder is gone.
/// [`Identity::current`] reads the real one; tests build others (another container, another
/// boot) to exercise [`provably_gone`] without containers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub host: String,
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

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Another run holds an unexpired lock.
    #[error("another run is writing {data}: {holder}; retry after it finished, or delete {path} if that run is known to be dead")]
    Held {
        data: String,
        path: String,
        holder: Box<LockInfo>,
    },
    /// The lock changed hands repeatedly while this run tried to take it.
    #[error("cannot take the lock on {data}: other runs keep taking it")]
    Contended { data: String },
    /// This run no longer holds its lock; it must not write.
    #[error("run {run_id} lost its lock on {data}: {reason}")]
    Lost {
        run_id: String,
        data: String,
        reason: String,
    },
    #[error(
        "lock object {path} is corrupt ({detail}); delete it if no run is writing the dataset"
    )]
    Corrupt { path: String, detail: String },
    #[error(transparent)]
    Storage(#[from] storage::Error),
}

impl Error {
    /// Another run holding the dataset is transient; a corrupt lock object needs the operator
    /// (or its expiry), so it fails.
    pub fn class(&self) -> crate::error::Class {
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
        Self::acquire_as(storage, run_id, ttl, &Identity::current()).await
    }

    /// [`Lock::acquire`] as the process `me` (tests pretend to be another container or boot).
    pub async fn acquire_as(
        storage: &Storage,
        run_id: &str,
        ttl: Duration,
        me: &Identity,
    ) -> Result<Lock> {
        let path = layout::state(LOCK);
        let ttl = ttl.max(Duration::from_millis(100));
        let mut held_by = None;
        // A few rounds: a lock can be released or taken over between our create and our read.
        for _ in 0..3 {
            let mine = LockInfo::new(run_id, ttl, me);
            if storage.create(&path, to_json(&mine)).await? {
                // Read back: a store that ignores the condition lets the last writer win.
                match read(storage).await? {
                    Some(info) if info.run_id == run_id => {
                        tracing::debug!(run_id, expires_at = %info.expires_at, "run lock taken");
                        return Ok(Lock::start(storage, info, ttl));
                    }
                    Some(other) => return Err(held(storage, other)),
                    None => continue,
                }
            }
            match read(storage).await? {
                // Released between our create and our read: try again.
                None => continue,
                Some(holder)
                    if holder.expires_at > Utc::now()
                        && !provably_gone(&holder, me, pid_running) =>
                {
                    return Err(held(storage, holder))
                }
                Some(stale) => {
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
            Some(holder) if holder.expires_at > Utc::now() => held(storage, holder),
            _ => Error::Contended {
                data: storage.display().to_string(),
            },
        })
    }

    /// `Ok` while this run holds the lock. Call before every write that publishes data.
    pub fn check(&self) -> Result<()> {
        // A poisoned mutex means the refresher panicked: the lock is not being kept.
        let reason = match self.shared.lock() {
            Ok(shared) if shared.lost.is_some() => shared.lost.clone(),
            Ok(shared) if shared.expires_at <= Utc::now() => Some(format!(
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
                self.storage.delete(&layout::state(LOCK)).await?;
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
    fn start(storage: &Storage, info: LockInfo, ttl: Duration) -> Lock {
        let shared = Arc::new(Mutex::new(Shared {
            expires_at: info.expires_at,
            lost: None,
        }));
        let (stop, stopped) = oneshot::channel();
        let refresher = tokio::spawn(refresh_loop(
            storage.clone(),
            info.clone(),
            ttl,
            shared.clone(),
            stopped,
        ));
        Lock {
            storage: storage.clone(),
            run_id: info.run_id,
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
    fn new(run_id: &str, ttl: Duration, me: &Identity) -> LockInfo {
        let now = Utc::now();
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

/// Pushes the expiry forward every third of the TTL until told to stop or the lock is lost.
/// (This timer is the lock's own clock; API pacing and retries stay in `source::retry`.)
async fn refresh_loop(
    storage: Storage,
    mut info: LockInfo,
    ttl: Duration,
    shared: Arc<Mutex<Shared>>,
    mut stopped: oneshot::Receiver<()>,
) {
    let mut tick = tokio::time::interval(ttl / 3);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await; // the first tick is immediate; the lock was just written
    loop {
        // Races the next refresh against `release` asking the task to stop.
        tokio::select! {
            _ = tick.tick() => {}
            _ = &mut stopped => return,
        }
        let lost = match refresh(&storage, &mut info, ttl).await {
            Ok(None) => {
                if let Ok(mut shared) = shared.lock() {
                    shared.expires_at = info.expires_at;
                }
                continue;
            }
            Ok(Some(reason)) => reason,
            Err(e) if Utc::now() < info.expires_at => {
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
async fn refresh(storage: &Storage, info: &mut LockInfo, ttl: Duration) -> Result<Option<String>> {
    match read(storage).await? {
        None => return Ok(Some("the lock object was deleted".into())),
        Some(other) if other.run_id != info.run_id => {
            return Ok(Some(format!("taken over by {other}")))
        }
        Some(_) => {}
    }
    let now = Utc::now();
    if now >= info.expires_at {
        // Someone may take it over as we write; do not overwrite what might be theirs.
        return Ok(Some("it expired before it could be refreshed".into()));
    }
    info.refreshed_at = now;
    info.expires_at = now + ttl;
    storage.put(&layout::state(LOCK), to_json(info)).await?;
    Ok(None)
}

/// The lock object as it is now (`None`: no run holds it), read without taking it: what
/// `ticketsync check` reports. A lock past its `expires_at` belongs to a run that did not
/// finish; the next run takes it over.
pub async fn peek(storage: &Storage) -> Result<Option<LockInfo>> {
    read(storage).await
}

async fn read(storage: &Storage) -> Result<Option<LockInfo>> {
    let path = layout::state(LOCK);
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
            layout::state(LOCK)
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

    /// Long enough that a busy machine (CI runs the tests in parallel on two cores) does not
    /// delay a refresh past the expiry; the expiry test uses its own short TTL.
    const TTL: Duration = Duration::from_secs(3);

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

    #[tokio::test]
    async fn a_live_lock_is_refreshed_past_its_ttl() {
        let (_dir, storage) = local();
        let lock = Lock::acquire(&storage, "run-a", TTL).await.unwrap();
        tokio::time::sleep(TTL * 2).await;
        lock.check().unwrap();
        assert!(matches!(
            Lock::acquire(&storage, "run-b", TTL).await,
            Err(Error::Held { .. })
        ));
        lock.release().await.unwrap();
    }

    #[tokio::test]
    async fn the_expired_lock_of_a_killed_run_is_taken_over() {
        let (_dir, storage) = local();
        let ttl = Duration::from_secs(1);
        // A run that was killed: its lock is not refreshed any more.
        let killed = Lock::acquire(&storage, "run-a", ttl).await.unwrap();
        drop(killed);
        assert!(matches!(
            Lock::acquire(&storage, "run-b", ttl).await,
            Err(Error::Held { .. })
        ));
        tokio::time::sleep(ttl + Duration::from_millis(200)).await;
        let next = Lock::acquire(&storage, "run-b", ttl).await.unwrap();
        assert_eq!(read(&storage).await.unwrap().unwrap().run_id, "run-b");
        next.release().await.unwrap();
    }

    #[tokio::test]
    async fn a_run_whose_lock_was_taken_over_notices() {
        let (_dir, storage) = local();
        let lock = Lock::acquire(&storage, "run-a", TTL).await.unwrap();
        let mut other = LockInfo::new("run-b", TTL * 10, &Identity::current());
        other.host = "elsewhere".into();
        storage
            .put(&layout::state(LOCK), to_json(&other))
            .await
            .unwrap();
        // The next refresh (a third of the TTL from the start) notices.
        let err = tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                match lock.check() {
                    Err(err) => break err,
                    Ok(()) => tokio::time::sleep(TTL / 10).await,
                }
            }
        })
        .await
        .expect("the takeover is noticed");
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
        let mut dead = LockInfo::new("killed-run", Duration::from_secs(600), &Identity::current());
        // A pid above the kernel's maximum never exists.
        dead.pid = 4_194_304 + 1;
        storage
            .put(&layout::state(LOCK), to_json(&dead))
            .await
            .unwrap();
        let lock = Lock::acquire(&storage, "next-run", Duration::from_secs(600))
            .await
            .unwrap();
        lock.release().await.unwrap();
        // Another machine's live lock is respected (another boot: its pids are not ours).
        let mut remote =
            LockInfo::new("remote-run", Duration::from_secs(600), &Identity::current());
        remote.host = "elsewhere".into();
        remote.boot_id = Some("another-machine".into());
        remote.pid = 4_194_304 + 1;
        storage
            .put(&layout::state(LOCK), to_json(&remote))
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
            ..LockInfo::new("other", TTL, &identity(host, pid, "x", "x"))
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
        let ttl = Duration::from_secs(600);
        let me = identity("shared-host", 100, "boot-1", "pid:[4026531836]");
        // A run in another container on the same host (same name, same boot): its pid does
        // not exist in our namespace, yet it runs.
        let neighbour = identity("shared-host", DEAD_PID, "boot-1", "pid:[4026532999]");
        let live = LockInfo::new("neighbour-run", ttl, &neighbour);
        storage
            .put(&layout::state(LOCK), to_json(&live))
            .await
            .unwrap();
        let err = Lock::acquire_as(&storage, "next-run", ttl, &me)
            .await
            .unwrap_err();
        let Error::Held { holder, .. } = &err else {
            panic!("{err}")
        };
        assert_eq!(holder.run_id, "neighbour-run");

        // Same boot and namespace, and the pid is gone: the holder was killed; take over.
        let killed = identity("shared-host", DEAD_PID, "boot-1", "pid:[4026531836]");
        storage
            .put(
                &layout::state(LOCK),
                to_json(&LockInfo::new("killed-run", ttl, &killed)),
            )
            .await
            .unwrap();
        let lock = Lock::acquire_as(&storage, "next-run", ttl, &me)
            .await
            .unwrap();
        let taken = read(&storage).await.unwrap().unwrap();
        assert_eq!(taken.run_id, "next-run");
        assert_eq!(taken.boot_id.as_deref(), Some("boot-1"));
        assert_eq!(taken.pid_ns.as_deref(), Some("pid:[4026531836]"));
        lock.release().await.unwrap();

        // Another boot id (a rebooted host, another machine): refused until it expires.
        let before_reboot = identity("shared-host", DEAD_PID, "boot-0", "pid:[4026531836]");
        let mut old = LockInfo::new("before-reboot", ttl, &before_reboot);
        storage
            .put(&layout::state(LOCK), to_json(&old))
            .await
            .unwrap();
        assert!(matches!(
            Lock::acquire_as(&storage, "next-run", ttl, &me).await,
            Err(Error::Held { .. })
        ));
        old.expires_at = Utc::now() - chrono::Duration::seconds(1);
        storage
            .put(&layout::state(LOCK), to_json(&old))
            .await
            .unwrap();
        let lock = Lock::acquire_as(&storage, "next-run", ttl, &me)
            .await
            .unwrap();
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
                &layout::state(LOCK),
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
            .put(&layout::state(LOCK), bytes::Bytes::from_static(b"{"))
            .await
            .unwrap();
        let err = Lock::acquire(&storage, "run-a", TTL).await.unwrap_err();
        assert!(matches!(err, Error::Corrupt { .. }), "{err}");
        assert!(err.to_string().contains("lock.json is corrupt"), "{err}");
    }
}
