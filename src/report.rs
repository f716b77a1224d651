//! The run report: what a run listed, wrote, rejected and spent. Written as JSON to
//! `<data>/_runs/<run_id>.json` and summarized in one line on stderr. It holds ids and counts
//! only: no ticket content, no emails, no credentials.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::sink::CommitStats;
use crate::source::limiter::LimiterStats;
use crate::source::CallStats;

/// How a run ended, in the terms a scheduler acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Everything listed was written.
    Ok,
    /// Finished, but some closed tickets went to `rejects`.
    OkWithRejects,
    /// Some tickets could not be fetched or written, or the removal guard refused the run's
    /// removals; the cursor was not moved.
    Failed,
    /// `max_run_minutes` passed: the run stopped fetching and committed what it had; the cursor
    /// was not moved.
    TimedOut,
}

/// Ticket counts of a run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TicketCounts {
    /// Rows the listing returned (after de-duplication by id).
    pub listed: u64,
    /// Of those, closed (status 5).
    pub closed: u64,
    /// Closed and already in the dataset with the same `updated_at`: not fetched again.
    pub unchanged: u64,
    /// Closed tickets whose conversations and time entries were fetched.
    pub fetched: u64,
    /// Written to `tickets`.
    pub written: u64,
    /// Written to `rejects`.
    pub rejected: u64,
    /// Removed from the dataset by the sync, whatever the reason: reopened (the status left
    /// Closed), deleted (listed by `filter=deleted`, or a 404 on the detail calls of a ticket in
    /// the dataset) or spam. [`RunReport::removed`] has their ids by reason. What retention
    /// removes is not counted here but in [`RunReport::retention`]; tickets too old to be kept
    /// are never written in the first place ([`Self::expired`]).
    pub removed: u64,
    /// Could not be fetched (after retries) and were not written; the next run retries them.
    pub failed: u64,
    /// Listing rows without a usable id (cannot be placed or rejected; logged).
    pub unidentifiable: u64,
    /// Recently closed tickets whose time entries were re-read (the re-scan window).
    pub rescanned: u64,
    /// Of those, tickets whose time entries had changed and that were written again.
    pub rescan_changed: u64,
    /// Items of the `filter=deleted` / `filter=spam` views that did not say `deleted: true` /
    /// `spam: true` (or did not decode): no evidence, so nothing was removed for them. Non-zero
    /// on a server or proxy that ignores the filter.
    pub reconcile_ignored: u64,
    /// Listed or fetched, but closed before the retention cutoff (`retention_days`): not
    /// written.
    pub expired: u64,
    /// Times the live listing was read again because it changed while it was paged (a ticket
    /// it had shown was deleted, marked spam or moved to another workspace meanwhile, which
    /// shifts the later pages by one: see `pipeline::listing`).
    #[serde(default)]
    pub relisted: u64,
}

/// What redaction and erasure did in a run. Counts only: never a matched value or a person.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PrivacyReport {
    /// Secrets replaced in the tickets written, by rule.
    pub redactions: BTreeMap<String, u64>,
    /// Tickets written with an erased person removed from them.
    pub tickets_erased: u64,
    /// Set when this run first finished the rewrite of an interrupted `forget`.
    pub pending_erasure: Option<crate::dataset::Rewritten>,
    /// Erased people whose name this run learned from a ticket they requested (their record
    /// had none); the dataset was then rewritten without the name (`names_rewrite`).
    pub names_learned: u64,
    /// What that rewrite changed.
    pub names_rewrite: Option<crate::dataset::Rewritten>,
}

/// Removals the removal guard refused (see `max_removals`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RemovalGuardReport {
    /// The limit in force.
    pub limit: u64,
    /// Tickets the run would have removed (or kept from the dataset).
    pub would_remove: u64,
    /// Their ids by reason (`reopened`, `deleted`, `spam`; `not_written`: fetched this run and
    /// then reported gone, now written after all).
    pub ids: BTreeMap<String, Vec<i64>>,
}

/// The rate budget as the run saw it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct BudgetReport {
    /// `X-RateLimit-Total` last reported (credits per window).
    pub account_total: u32,
    /// Credits per window this run aimed to use (`budget_share × total`).
    pub target_per_window: f64,
    /// Length of the rate window in seconds.
    pub window_secs: f64,
    /// Credits used per window on average over the run, divided by the target.
    pub utilization: f64,
    /// Requests that waited for the budget, and the summed wait.
    pub waits: u64,
    /// The summed wait of those requests, in milliseconds.
    pub waited_ms: u64,
}

/// The upgrade of a dataset written by an older release (see `sink::upgrade`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct FormatUpgrade {
    /// The dataset format version found (`_state/format.json`).
    pub from: u32,
    /// The format version written now.
    pub to: u32,
    /// Partition files checked and rewritten by this run (a resumed upgrade skips the files an
    /// interrupted one already rewrote).
    pub files_checked: u64,
    /// Of `files_checked`, the files that needed a rewrite.
    pub files_rewritten: u64,
}

/// The JSON report of one run.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    /// The run's id: its start time and a random suffix; names `_runs/<run_id>.json`.
    pub run_id: String,
    /// `incremental`, `full`, `since` or `ticket <id>`.
    pub mode: String,
    /// The dataset location, as displayed (credentials never shown).
    pub data: String,
    /// The Freshservice account (domain) the run synced.
    pub domain: String,
    /// When the run started (UTC, whole seconds).
    pub started_at: DateTime<Utc>,
    /// When the report was made (UTC, whole seconds).
    pub finished_at: DateTime<Utc>,
    /// Wall time of the run, in seconds.
    pub elapsed_secs: f64,
    /// `updated_since` of the listing (absent for a single-ticket run).
    pub window_since: Option<DateTime<Utc>>,
    /// How the run ended (and so the exit code).
    pub status: RunStatus,
    /// What happened to the tickets listed.
    pub tickets: TicketCounts,
    /// Tickets rejected this run, by reason code (see [`RejectReason`](crate::normalize::RejectReason)).
    pub rejects_by_reason: BTreeMap<String, u64>,
    /// Tickets removed from the dataset by the sync, by reason (`reopened`, `deleted`, `spam`),
    /// with their ids; retention's removals are in [`Self::retention`].
    pub removed: BTreeMap<String, Vec<i64>>,
    /// Set when the removal guard refused this run's removals: none was made.
    pub removal_guard: Option<RemovalGuardReport>,
    /// API calls, credits, retries and 429s.
    pub api: CallStats,
    /// How much of the rate budget the run used.
    pub budget: BudgetReport,
    /// Files written and deleted by this run's commits.
    pub output: CommitStats,
    /// Whether this run first finished the commit of an interrupted run.
    pub recovered_interrupted_commit: bool,
    /// Set when this run upgraded the dataset's format before syncing.
    pub format_upgrade: Option<FormatUpgrade>,
    /// Redactions and erasures applied.
    pub privacy: PrivacyReport,
    /// Set when `retention_days` is: what retention removed at the end of the run.
    pub retention: Option<crate::dataset::retention::Pruned>,
    /// The cursor stored for the next incremental run, if this run moved it.
    pub next_cursor: Option<DateTime<Utc>>,
    /// Why the run failed, when it did.
    pub error: Option<String>,
    /// The newest `closed_at` of a placed ticket after this run: how fresh the dataset is.
    pub newest_closed_at: Option<DateTime<Utc>>,
    /// What went wrong besides the sync itself (a metrics file or push that failed); the run's
    /// status does not change for them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// The summary of a fleet run (`[[accounts]]`): one line per account and the totals, written
/// to `_runs/<fleet_id>.fleet.json` next to each account's own run report.
#[derive(Debug, Clone, Serialize)]
pub struct FleetReport {
    /// The fleet run's id (its start and a random suffix).
    pub fleet_id: String,
    /// The dataset location, as displayed.
    pub data: String,
    /// When the fleet run started and ended (UTC, whole seconds).
    pub started_at: DateTime<Utc>,
    /// When the last account finished.
    pub finished_at: DateTime<Utc>,
    /// Wall time of the fleet run, in seconds.
    pub elapsed_secs: f64,
    /// The worst status of the accounts: `ok`, `ok_with_rejects`, `failed`.
    pub status: String,
    /// Every account, in the job's order.
    pub accounts: Vec<FleetAccount>,
    /// Tickets fetched by all accounts together.
    pub tickets_fetched: u64,
    /// Tickets written by all accounts together.
    pub tickets_written: u64,
    /// Tickets fetched per second over the fleet run's wall time.
    pub tickets_per_sec: f64,
    /// Credits the accounts used per second, together.
    pub credits_per_sec: f64,
    /// The sum of the accounts' budgets this run aimed at, in credits per second
    /// (`budget_share × X-RateLimit-Total / window` of each account that reached its API).
    pub budget_per_sec: f64,
}

/// One account of a [`FleetReport`].
#[derive(Debug, Clone, Serialize)]
pub struct FleetAccount {
    /// The account's domain.
    pub domain: String,
    /// Its run's id (`_runs/<run_id>.json`); absent when the run stopped before a report.
    pub run_id: Option<String>,
    /// `ok`, `ok_with_rejects`, `failed`, `timed_out`, or `error` (stopped before a report:
    /// a refused key, a held lock, storage).
    pub status: String,
    /// Why it failed, when it did.
    pub error: Option<String>,
    /// Tickets fetched and written.
    pub tickets_fetched: u64,
    /// Tickets written.
    pub tickets_written: u64,
    /// Credits used.
    pub credits_used: u64,
    /// Its own budget this run aimed at, credits per second.
    pub budget_per_sec: f64,
    /// Its credits per window over its run, divided by that target.
    pub utilization: f64,
    /// Its run's wall time.
    pub elapsed_secs: f64,
}

impl FleetReport {
    /// The one-line fleet summary for stderr.
    pub fn summary(&self) -> String {
        let failed: Vec<&str> = self
            .accounts
            .iter()
            .filter(|a| !matches!(a.status.as_str(), "ok" | "ok_with_rejects"))
            .map(|a| a.domain.as_str())
            .collect();
        format!(
            "fleet {status}: {n} accounts{failed}; {fetched} fetched, {written} written; {tps:.1} tickets/s, {cps:.1} of {bps:.1} credits/s budgeted ({util:.0} %); {secs:.1}s",
            status = self.status,
            n = self.accounts.len(),
            failed = if failed.is_empty() {
                String::new()
            } else {
                format!(" ({} failed: {})", failed.len(), failed.join(", "))
            },
            fetched = self.tickets_fetched,
            written = self.tickets_written,
            tps = self.tickets_per_sec,
            cps = self.credits_per_sec,
            bps = self.budget_per_sec,
            util = if self.budget_per_sec > 0.0 {
                100.0 * self.credits_per_sec / self.budget_per_sec
            } else {
                0.0
            },
            secs = self.elapsed_secs,
        )
    }
}

impl BudgetReport {
    /// The budget as a run of `elapsed_secs` used it: credits per window on average over the
    /// run, divided by the target (0 when nothing can be said).
    pub fn measure(
        api: &CallStats,
        limiter: &LimiterStats,
        target_per_window: f64,
        window_secs: f64,
        elapsed_secs: f64,
    ) -> BudgetReport {
        let utilization = if elapsed_secs > 0.0 && target_per_window > 0.0 && window_secs > 0.0 {
            (api.credits_used as f64 / (elapsed_secs / window_secs)) / target_per_window
        } else {
            0.0
        };
        BudgetReport {
            account_total: limiter.total,
            target_per_window,
            window_secs,
            utilization,
            waits: limiter.waits,
            waited_ms: limiter.waited.as_millis() as u64,
        }
    }
}

impl RunReport {
    /// `, 3 secrets redacted, 1 erased, 40 expired` (only what happened).
    fn privacy_summary(&self) -> String {
        let mut parts = String::new();
        let redacted: u64 = self.privacy.redactions.values().sum();
        if redacted > 0 {
            parts += &format!(", {redacted} secrets redacted");
        }
        if self.privacy.tickets_erased > 0 {
            parts += &format!(", {} erased", self.privacy.tickets_erased);
        }
        let expired = self.tickets.expired + self.retention.as_ref().map_or(0, |r| r.tickets);
        if expired > 0 {
            parts += &format!(", {expired} expired");
        }
        parts
    }

    /// The one-line summary for stderr.
    pub fn summary(&self) -> String {
        let calls: u64 = self.api.calls.values().sum();
        format!(
            "{status}: {listed} listed, {closed} closed, {unchanged} unchanged, {written} written, {rejected} rejected, {removed} removed, {failed} failed{privacy}; {calls} calls, {credits} credits, {retries} retries, {r429} 429s; {files} files ({mb:.1} MB), {md} markdown; {secs:.1}s",
            status = match self.status {
                RunStatus::Ok => "ok",
                RunStatus::OkWithRejects => "ok with rejects",
                RunStatus::Failed => "FAILED",
                RunStatus::TimedOut => "TIMED OUT",
            },
            listed = self.tickets.listed,
            closed = self.tickets.closed,
            unchanged = self.tickets.unchanged,
            written = self.tickets.written,
            rejected = self.tickets.rejected,
            removed = self.tickets.removed,
            failed = self.tickets.failed,
            privacy = self.privacy_summary(),
            credits = self.api.credits_used,
            retries = self.api.retries,
            r429 = self.api.rate_limited,
            files = self.output.parquet_files_written,
            mb = self.output.parquet_bytes as f64 / 1e6,
            md = self.output.markdown_written,
            secs = self.elapsed_secs,
        )
    }
}
