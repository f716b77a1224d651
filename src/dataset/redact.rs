//! `ticketsync redact`: the job's redaction rules applied to what the dataset already holds
//! (rows written before redaction existed, or before a rule was added), one partition per
//! commit under the run lock, with an audit record under `_runs/`.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{rewrite, Error, Result, Rewritten};
use crate::normalize::privacy::{Counts, Erasures, Privacy, Redactor};
use crate::storage::Storage;

/// The audit record of a `redact` run (`_runs/<run_id>.json`): counts only, never a value.
#[derive(Debug, Clone, Serialize)]
pub struct RedactReport {
    /// `<start>-redact-<4 hex>`.
    pub run_id: String,
    /// Always `redact`.
    pub command: &'static str,
    /// Counted only; nothing was written.
    pub dry_run: bool,
    /// When it started (whole seconds).
    pub started_at: DateTime<Utc>,
    /// When it finished.
    pub finished_at: DateTime<Utc>,
    /// Secrets replaced, by rule.
    pub redactions: Counts,
    /// Tickets, rows and documents rewritten.
    pub changed: Rewritten,
}

impl RedactReport {
    /// The line `redact` prints.
    pub fn summary(&self) -> String {
        let total: u64 = self.redactions.values().sum();
        let rules = self
            .redactions
            .iter()
            .map(|(rule, n)| format!("{rule} {n}"))
            .collect::<Vec<_>>()
            .join(", ");
        format!(
            "{} {total} secrets in {} tickets{}{}",
            if self.dry_run {
                "would redact"
            } else {
                "redacted"
            },
            self.changed.tickets,
            if rules.is_empty() {
                String::new()
            } else {
                format!(" ({rules})")
            },
            if self.dry_run {
                String::new()
            } else {
                format!("; {} markdown documents rewritten", self.changed.documents)
            },
        )
    }
}

/// Applies `redactor` to every ticket already written.
pub async fn redact(
    storage: &Storage,
    redactor: Arc<Redactor>,
    dry_run: bool,
    lock_ttl: Duration,
) -> Result<RedactReport> {
    if redactor.is_disabled() {
        return Err(Error::Invalid(
            "redaction is disabled ([redact] enabled = false): nothing to apply".into(),
        ));
    }
    super::under_lock(storage, "redact", lock_ttl, async |mut s| {
        let privacy = Privacy {
            redactor,
            erasures: Arc::new(Erasures::none()),
        };
        let mut redactions = Counts::new();
        let tag = s.run_id.clone();
        let changed = rewrite(storage, &mut s.index, s.lock, &tag, dry_run, |p| {
            let before = p.clone();
            let stats = privacy.apply(
                &mut p.ticket,
                &mut p.conversations,
                &mut p.notes,
                &mut p.time_entries,
            );
            for (rule, n) in stats.redactions {
                *redactions.entry(rule).or_default() += n;
            }
            *p != before
        })
        .await?;
        let report = RedactReport {
            run_id: s.run_id.clone(),
            command: "redact",
            dry_run,
            started_at: s.started_at,
            finished_at: Utc::now(),
            redactions,
            changed,
        };
        if !dry_run {
            super::audit(storage, &s.run_id, &report).await?;
        }
        Ok(report)
    })
    .await
}
