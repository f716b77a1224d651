//! Retention: tickets whose `closed_at` is older than `retention_days` leave every table, their
//! markdown and the index; `rejects` rows seen before the cutoff go too. A sync applies it at
//! its end (and never writes such a ticket again); `ticketsync prune` applies it alone.
//!
//! The decision comes from the index (`closed_at` of every placed ticket) and the `rejects`
//! table's `seen_at`; the removal is one commit, like a sync's.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{Error, Result};
use crate::sink::{self, Changeset, CommitStats, Removal};
use crate::state::lock::Lock;
use crate::state::{Index, Location};
use crate::storage::Storage;
use crate::tables::{self, Table};

/// The oldest `closed_at` kept: `now` minus `days`.
pub fn cutoff(now: DateTime<Utc>, days: u32) -> DateTime<Utc> {
    now - chrono::Duration::days(i64::from(days))
}

/// What retention removed (or, on a dry run, would remove).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Pruned {
    /// The retention period in force, in days.
    pub retention_days: u32,
    /// Tickets closed before this instant were removed.
    pub cutoff: DateTime<Utc>,
    /// Placed tickets removed (their rows in every table and their markdown).
    pub tickets: u64,
    /// `rejects` rows removed.
    pub rejects: u64,
    /// Placed tickets the index knows no `closed_at` of (written by a release before 0.1):
    /// kept; a `--full-sync` records it.
    pub undated: u64,
    /// What the commit wrote (all zero on a dry run).
    pub output: CommitStats,
}

/// Removes what is older than `days` (see the module docs), under a lock the caller holds.
pub async fn apply(
    storage: &Storage,
    index: &mut Index,
    lock: &Lock,
    tag: &str,
    days: u32,
    now: DateTime<Utc>,
    dry_run: bool,
) -> Result<Pruned> {
    let cutoff = cutoff(now, days);
    let cutoff_ms = cutoff.timestamp_millis();
    let mut pruned = Pruned {
        retention_days: days,
        cutoff,
        ..Pruned::default()
    };
    let mut removed = Vec::new();
    for (id, entry) in index.iter() {
        if let Location::Placed { .. } = entry.location {
            match entry.closed_at {
                Some(closed) if closed < cutoff_ms => {
                    removed.push((*id, Removal::Expired));
                    pruned.tickets += 1;
                }
                Some(_) => {}
                None => pruned.undated += 1,
            }
        }
    }
    let lake = crate::state::delta::Lake::open(storage, crate::state::delta::At::Latest).await?;
    for (rejects_file, batches) in
        sink::read_rows(storage, &lake, Table::Rejects, None, None).await?
    {
        for batch in batches {
            let rows = tables::read::rejects_seen(&batch).map_err(|detail| Error::Rows {
                path: rejects_file.clone(),
                detail,
            })?;
            for (id, seen_at) in rows {
                let rejected_here = index
                    .get(id)
                    .is_some_and(|e| e.location == Location::Rejected);
                if seen_at < cutoff && rejected_here {
                    removed.push((id, Removal::Expired));
                    pruned.rejects += 1;
                }
            }
        }
    }
    if dry_run || removed.is_empty() {
        return Ok(pruned);
    }
    lock.verify().await?;
    tracing::info!(
        tickets = pruned.tickets,
        rejects = pruned.rejects,
        cutoff = %cutoff,
        "retention: removing what closed before the cutoff"
    );
    let changeset = Changeset {
        removed,
        ..Changeset::default()
    };
    pruned.output = sink::commit(storage, index, changeset, tag).await?;
    Ok(pruned)
}

/// The audit record of a `prune` (`_runs/<run_id>.json`).
#[derive(Debug, Clone, Serialize)]
pub struct PruneReport {
    /// The run's id (names the audit record).
    pub run_id: String,
    /// Always `prune`.
    pub command: &'static str,
    /// Counted only; nothing was removed.
    pub dry_run: bool,
    /// When the command started.
    pub started_at: DateTime<Utc>,
    /// When it finished.
    pub finished_at: DateTime<Utc>,
    /// What was (or would be) removed.
    #[serde(flatten)]
    pub pruned: Pruned,
}

impl PruneReport {
    /// The line `prune` prints.
    pub fn summary(&self) -> String {
        format!(
            "{} {} tickets and {} rejects closed or seen before {} (retention {} days){}",
            if self.dry_run {
                "would remove"
            } else {
                "removed"
            },
            self.pruned.tickets,
            self.pruned.rejects,
            self.pruned.cutoff.format("%Y-%m-%d %H:%M:%S UTC"),
            self.pruned.retention_days,
            if self.pruned.undated > 0 {
                format!(
                    "; {} tickets have no recorded closed_at and were kept",
                    self.pruned.undated
                )
            } else {
                String::new()
            },
        )
    }
}

/// `ticketsync prune`: retention without a sync, under the run lock.
pub async fn prune(
    storage: &Storage,
    days: u32,
    dry_run: bool,
    lock_ttl: Duration,
) -> Result<PruneReport> {
    super::under_lock(storage, "prune", lock_ttl, async |mut s| {
        let tag = s.run_id.clone();
        let pruned = apply(
            storage,
            &mut s.index,
            s.lock,
            &tag,
            days,
            s.started_at,
            dry_run,
        )
        .await?;
        let report = PruneReport {
            run_id: s.run_id.clone(),
            command: "prune",
            dry_run,
            started_at: s.started_at,
            finished_at: Utc::now(),
            pruned,
        };
        if !dry_run {
            super::audit(storage, &s.run_id, &report).await?;
        }
        Ok(report)
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::normalize::{RejectReason, Rejection};

    fn rejection(id: i64, seen_at: &str) -> Rejection {
        Rejection {
            ticket_id: id,
            reason: RejectReason::NoAccountNumber,
            department_id: Some(3),
            detail: format!("ticket {id}: department 3 has no account number"),
            updated_at: Some(seen_at.parse().unwrap()),
            seen_at: seen_at.parse().unwrap(),
        }
    }

    #[tokio::test]
    async fn rejects_seen_before_the_cutoff_go_and_newer_ones_stay() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::local(dir.path()).unwrap();
        let mut index = Index::default();
        let changeset = Changeset {
            rejected: vec![
                rejection(1, "2024-01-10T00:00:00Z"),
                rejection(2, "2026-11-01T00:00:00Z"),
            ],
            ..Changeset::default()
        };
        sink::commit(&storage, &mut index, changeset, "t0")
            .await
            .unwrap();
        let lock = Lock::acquire(&storage, "t1", Duration::from_secs(60))
            .await
            .unwrap();
        let now = "2026-11-30T00:00:00Z".parse().unwrap();

        let dry = apply(&storage, &mut index, &lock, "t1", 365, now, true)
            .await
            .unwrap();
        assert_eq!((dry.tickets, dry.rejects), (0, 1));
        assert!(index.get(1).is_some(), "a dry run removes nothing");

        let pruned = apply(&storage, &mut index, &lock, "t2", 365, now, false)
            .await
            .unwrap();
        assert_eq!((pruned.tickets, pruned.rejects), (0, 1));
        assert!(index.get(1).is_none());
        assert!(index.get(2).is_some());
        let lake = crate::state::delta::Lake::open(&storage, crate::state::delta::At::Latest)
            .await
            .unwrap();
        let files = sink::read_rows(&storage, &lake, Table::Rejects, None, None)
            .await
            .unwrap();
        let left: Vec<i64> = files
            .iter()
            .flat_map(|(_, batches)| batches)
            .flat_map(|b| tables::read::rejects_seen(b).unwrap())
            .map(|(id, _)| id)
            .collect();
        assert_eq!(left, vec![2]);
        lock.release().await.unwrap();
    }
}
