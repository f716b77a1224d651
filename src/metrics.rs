//! Run metrics for Prometheus: the run report mapped to gauges, encoded in the text exposition
//! format (by `prometheus-client`), written atomically for node_exporter's textfile collector
//! (`metrics_file`) and pushed to a Pushgateway (`pushgateway`).
//!
//! Every value is a gauge: each describes one run (the newest), and a run's counts start from
//! zero, so counters (which Prometheus expects never to go down) would be wrong. Labels carry
//! only fixed words (outcomes, reasons, endpoints, statuses): no ids, no names, no URLs, no
//! credentials. Every label value a family can have is always written (0 when nothing
//! happened), so a Pushgateway `POST`, which replaces whole families by name, never leaves a
//! previous run's series standing next to this run's.
//!
//! The last-success timestamp is written only by a run that succeeded (status `ok` or
//! `ok_with_rejects`). A failed run keeps the previous one: the textfile carries over the value
//! of the file it replaces; the Pushgateway keeps it because every push is a `POST` (which
//! replaces only the families it contains) and a failed run's push does not contain it.
//!
//! Publishing is best effort: a metrics file that cannot be written or a push that fails is a
//! warning (log and run report), never a failed run. The run's data is what matters; the
//! missing or stale metrics are what the monitoring alerts on.
//!
//! This module does not decide a run's status or count anything itself: the numbers come from
//! [`RunReport`].

use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use chrono::{DateTime, Utc};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use url::Url;

use crate::normalize::RejectReason;
use crate::report::{RunReport, RunStatus};
use crate::source::Endpoint;

/// The Pushgateway `job` label of every push.
pub const JOB: &str = "ticketsync";

/// The metric a failed run never writes (see the module docs).
pub const LAST_SUCCESS: &str = "ticketsync_last_success_timestamp_seconds";

/// Why the metrics could not be published; never fails a run (it becomes a warning).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The metrics file (or its temporary sibling) could not be written or renamed.
    #[error("cannot write the metrics file {path}: {source}")]
    File {
        /// The metrics file.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The Pushgateway could not be reached or refused the push. `url` has no credentials.
    #[error("cannot push the metrics to {url}: {detail}")]
    Push {
        /// The Pushgateway URL, without credentials.
        url: String,
        /// The HTTP status and body, or the transport error.
        detail: String,
    },
}

impl crate::error::Classify for Error {
    /// Publishing metrics never fails a run (it is a warning); as an error, it is transient.
    fn class(&self) -> crate::error::Class {
        crate::error::Class::Retryable
    }
}

/// How a run ended, as the metrics say it: the report's status, or `error` for a run that
/// stopped before it had a report (configuration, credentials, a held lock, unreadable state).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// [`RunStatus::Ok`].
    Ok,
    /// [`RunStatus::OkWithRejects`].
    OkWithRejects,
    /// [`RunStatus::Failed`].
    Failed,
    /// [`RunStatus::TimedOut`].
    TimedOut,
    /// The run stopped before it had a report.
    Error,
}

impl Status {
    const ALL: [Status; 5] = [
        Status::Ok,
        Status::OkWithRejects,
        Status::Failed,
        Status::TimedOut,
        Status::Error,
    ];

    fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::OkWithRejects => "ok_with_rejects",
            Status::Failed => "failed",
            Status::TimedOut => "timed_out",
            Status::Error => "error",
        }
    }

    /// Whether the run counts as a success (it moved the dataset forward completely).
    pub fn is_success(self) -> bool {
        matches!(self, Status::Ok | Status::OkWithRejects)
    }
}

impl From<RunStatus> for Status {
    fn from(status: RunStatus) -> Status {
        match status {
            RunStatus::Ok => Status::Ok,
            RunStatus::OkWithRejects => Status::OkWithRejects,
            RunStatus::Failed => Status::Failed,
            RunStatus::TimedOut => Status::TimedOut,
        }
    }
}

/// What the metrics of one run are made of.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    /// How the run ended.
    pub status: Status,
    /// When the run started.
    pub started_at: DateTime<Utc>,
    /// When it ended.
    pub finished_at: DateTime<Utc>,
    /// Wall time, in seconds.
    pub elapsed_secs: f64,
    /// The run report; `None` when the run stopped before it had one (every count is then 0).
    pub report: Option<&'a RunReport>,
    /// A `domain` label on every series: set for the accounts of a fleet, whose metrics files
    /// sit side by side in one textfile directory.
    pub domain: Option<&'a str>,
}

impl<'a> Facts<'a> {
    /// The facts of a run that wrote its report.
    pub fn from_report(report: &'a RunReport) -> Facts<'a> {
        Facts {
            status: report.status.into(),
            started_at: report.started_at,
            finished_at: report.finished_at,
            elapsed_secs: report.elapsed_secs,
            report: Some(report),
            domain: None,
        }
    }

    /// The facts of a run that stopped before it had a report.
    pub fn without_report(
        started_at: DateTime<Utc>,
        finished_at: DateTime<Utc>,
        elapsed_secs: f64,
    ) -> Facts<'static> {
        Facts {
            status: Status::Error,
            started_at,
            finished_at,
            elapsed_secs,
            report: None,
            domain: None,
        }
    }
}

type Value = Gauge<f64, AtomicU64>;
type Labelled = Family<Vec<(&'static str, String)>, Value>;

/// Builds the registry step by step: one gauge or one labelled family per metric.
struct Builder {
    registry: Registry,
}

impl Builder {
    fn gauge(&mut self, name: &str, help: &str, value: f64) {
        let gauge = Value::default();
        gauge.set(value);
        self.registry.register(name, help, gauge);
    }

    fn family<'v>(
        &mut self,
        name: &str,
        help: &str,
        label: &'static str,
        values: impl IntoIterator<Item = (&'v str, f64)>,
    ) {
        let family = Labelled::default();
        for (key, value) in values {
            family
                .get_or_create(&vec![(label, key.to_string())])
                .set(value);
        }
        self.registry.register(name, help, family);
    }
}

fn seconds(t: DateTime<Utc>) -> f64 {
    t.timestamp_millis() as f64 / 1000.0
}

/// The metrics of one run in the text exposition format (OpenMetrics text, which the
/// Prometheus text parsers of node_exporter and the Pushgateway read: its `# EOF` and `# UNIT`
/// lines are comments there). `last_success`: the value of
/// [`LAST_SUCCESS`], when there is one to write (this run's end when it succeeded; for the
/// textfile of a failed run, the previous file's value).
pub fn encode_text(facts: &Facts<'_>, last_success: Option<f64>) -> String {
    let mut b = Builder {
        registry: match facts.domain {
            Some(domain) => Registry::with_labels(std::iter::once((
                std::borrow::Cow::Borrowed("domain"),
                std::borrow::Cow::Owned(domain.to_string()),
            ))),
            None => Registry::default(),
        },
    };
    let report = facts.report;
    b.gauge(
        "ticketsync_run_start_timestamp_seconds",
        "When the last run started (Unix time)",
        seconds(facts.started_at),
    );
    b.gauge(
        "ticketsync_run_end_timestamp_seconds",
        "When the last run ended (Unix time)",
        seconds(facts.finished_at),
    );
    b.gauge(
        "ticketsync_run_duration_seconds",
        "How long the last run took",
        facts.elapsed_secs,
    );
    if let Some(at) = last_success {
        b.gauge(
            LAST_SUCCESS,
            "When the last successful run (ok or ok_with_rejects) ended (Unix time)",
            at,
        );
    }
    b.gauge(
        "ticketsync_run_success",
        "1 when the last run succeeded (ok or ok_with_rejects), else 0",
        if facts.status.is_success() { 1.0 } else { 0.0 },
    );
    b.family(
        "ticketsync_run_status",
        "How the last run ended: 1 for its status, 0 for the others (error: stopped before syncing, e.g. configuration, credentials or a held lock)",
        "status",
        Status::ALL
            .iter()
            .map(|s| (s.as_str(), if *s == facts.status { 1.0 } else { 0.0 })),
    );
    let t = report.map(|r| r.tickets.clone()).unwrap_or_default();
    b.family(
        "ticketsync_run_tickets",
        "Tickets of the last run by outcome (listed and closed: what the listing brought; fetched: read in detail)",
        "outcome",
        [
            ("listed", t.listed),
            ("closed", t.closed),
            ("fetched", t.fetched),
            ("written", t.written),
            ("rejected", t.rejected),
            ("removed", t.removed),
            ("failed", t.failed),
            ("unchanged", t.unchanged),
            ("expired", t.expired),
        ]
        .map(|(k, v)| (k, v as f64)),
    );
    let privacy = report.map(|r| r.privacy.clone()).unwrap_or_default();
    let builtin = crate::normalize::privacy::redact::rule_names();
    b.family(
        "ticketsync_run_redactions",
        "Secrets the last run redacted in the tickets it wrote, by rule",
        "rule",
        builtin
            .iter()
            .copied()
            .map(|rule| {
                let n = privacy.redactions.get(rule).copied().unwrap_or(0);
                (rule, n as f64)
            })
            // The job's extra rules, by their names.
            .chain(
                privacy
                    .redactions
                    .iter()
                    .filter(|(rule, _)| !builtin.contains(&rule.as_str()))
                    .map(|(rule, n)| (rule.as_str(), *n as f64)),
            )
            .collect::<Vec<_>>(),
    );
    b.gauge(
        "ticketsync_run_erased_tickets",
        "Tickets the last run wrote with an erased (forgotten) person removed from them",
        privacy.tickets_erased as f64,
    );
    let retention = report.and_then(|r| r.retention.clone()).unwrap_or_default();
    b.family(
        "ticketsync_run_retention_removed",
        "What retention removed at the end of the last run, by table (tickets: with all their rows and markdown)",
        "table",
        [
            ("tickets", retention.tickets as f64),
            ("rejects", retention.rejects as f64),
        ],
    );
    let rejects = report.map(|r| &r.rejects_by_reason);
    let mut reasons: Vec<(&str, f64)> = RejectReason::ALL
        .into_iter()
        .map(RejectReason::as_str)
        .map(|reason| {
            let n = rejects.and_then(|m| m.get(reason)).copied().unwrap_or(0);
            (reason, n as f64)
        })
        .collect();
    // A reason this module does not know yet still shows.
    if let Some(m) = rejects {
        for (reason, n) in m {
            if !reasons.iter().any(|(r, _)| r == reason) {
                reasons.push((reason.as_str(), *n as f64));
            }
        }
    }
    b.family(
        "ticketsync_run_rejects",
        "Tickets the last run wrote to the rejects table, by reason",
        "reason",
        reasons,
    );
    let api = report.map(|r| r.api.clone()).unwrap_or_default();
    b.family(
        "ticketsync_run_api_calls",
        "Successful API calls of the last run, by endpoint",
        "endpoint",
        Endpoint::ALL
            .into_iter()
            .map(Endpoint::name)
            .map(|e| (e, api.calls.get(e).copied().unwrap_or(0) as f64)),
    );
    b.gauge(
        "ticketsync_run_api_credits",
        "API credits the last run spent (as the server reported them)",
        api.credits_used as f64,
    );
    b.gauge(
        "ticketsync_run_api_rate_limited_responses",
        "429 responses the last run received",
        api.rate_limited as f64,
    );
    b.gauge(
        "ticketsync_run_api_retries",
        "API attempts the last run retried (any reason)",
        api.retries as f64,
    );
    let budget = report.map(|r| r.budget.clone()).unwrap_or_default();
    b.gauge(
        "ticketsync_api_rate_limit_credits",
        "The account's credits per rate window (X-RateLimit-Total) as last reported",
        f64::from(budget.account_total),
    );
    b.gauge(
        "ticketsync_run_budget_utilization_ratio",
        "Credits the last run spent per window, divided by its target (budget_share of the limit)",
        budget.utilization,
    );
    let output = report.map(|r| r.output).unwrap_or_default();
    b.gauge(
        "ticketsync_run_written_bytes",
        "Bytes of Parquet the last run wrote",
        output.parquet_bytes as f64,
    );
    b.family(
        "ticketsync_run_written_files",
        "Files the last run wrote, by kind",
        "kind",
        [
            ("parquet", output.parquet_files_written as f64),
            ("markdown", output.markdown_written as f64),
        ],
    );
    if let Some(newest) = report.and_then(|r| r.newest_closed_at) {
        b.gauge(
            "ticketsync_dataset_newest_closed_timestamp_seconds",
            "The newest closed_at in the dataset after the last run (Unix time): its freshness",
            seconds(newest),
        );
    }
    let mut text = String::new();
    // Writing into a String cannot fail.
    encode(&mut text, &b.registry).expect("encoding into a String");
    text
}

/// The [`LAST_SUCCESS`] value of a metrics file this module wrote, if it has one.
pub fn last_success_in(text: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(LAST_SUCCESS)?;
        // With a `domain` label: `…_seconds{domain="acme"} 1.7e9`.
        let rest = match rest.strip_prefix('{') {
            Some(labels) => labels.split_once('}')?.1,
            None => rest,
        };
        let value = rest.strip_prefix(' ')?;
        value
            .split_whitespace()
            .next()?
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite())
    })
}

/// Writes the textfile for a run: [`encode_text`], with this run's end as the last success when
/// it succeeded, else the previous file's value. Atomic: a temporary file in the same
/// directory, then a rename, so the collector never reads half a file.
pub fn write_file(path: &Path, facts: &Facts<'_>) -> Result<(), Error> {
    let err = |source| Error::File {
        path: path.display().to_string(),
        source,
    };
    let last_success = if facts.status.is_success() {
        Some(seconds(facts.finished_at))
    } else {
        std::fs::read_to_string(path)
            .ok()
            .and_then(|old| last_success_in(&old))
    };
    let text = encode_text(facts, last_success);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "metrics".into());
    // A dot file: node_exporter reads only `*.prom`, so it never sees the temporary one.
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    std::fs::write(&tmp, text.as_bytes()).map_err(err)?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        err(e)
    })
}

/// The Pushgateway URL of this job's group: `<base>/metrics/job/ticketsync/instance/<instance>`.
pub fn push_url(base: &Url, instance: &str) -> Url {
    let mut url = base.clone();
    url.set_query(None);
    url.set_fragment(None);
    if let Ok(mut segments) = url.path_segments_mut() {
        segments.pop_if_empty();
        if instance.is_empty() || instance.contains('/') {
            // The Pushgateway's form for values a path segment cannot hold.
            use base64::Engine as _;
            let encoded = base64::engine::general_purpose::URL_SAFE.encode(instance);
            segments.extend(["metrics", "job", JOB, "instance@base64", &encoded]);
        } else {
            segments.extend(["metrics", "job", JOB, "instance", instance]);
        }
    }
    url
}

/// `url` without user name and password, for messages.
pub fn display_url(url: &Url) -> String {
    let mut shown = url.clone();
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.to_string()
}

/// [`display_url`] for a text that may not even parse as a URL: whatever stands between
/// `://` and the last `@` of the authority is left out.
pub fn display_url_text(text: &str) -> String {
    if let Ok(url) = Url::parse(text) {
        return display_url(&url);
    }
    let Some(scheme_end) = text.find("://").map(|i| i + 3) else {
        return text.to_string();
    };
    let authority_end = text[scheme_end..]
        .find(['/', '?', '#'])
        .map_or(text.len(), |i| scheme_end + i);
    match text[scheme_end..authority_end].rfind('@') {
        Some(at) => format!("{}{}", &text[..scheme_end], &text[scheme_end + at + 1..]),
        None => text.to_string(),
    }
}

/// Pushes a run's metrics to the Pushgateway at `base`, grouped by `job="ticketsync"` and
/// `instance`. Always a `POST`: it replaces only the families the push contains, so the
/// last-success timestamp, which only a successful run pushes, survives failed runs.
/// Credentials in the URL (`https://user:pass@host`) are sent as Basic auth and never shown.
pub async fn push(base: &Url, instance: &str, facts: &Facts<'_>) -> Result<(), Error> {
    let last_success = facts
        .status
        .is_success()
        .then(|| seconds(facts.finished_at));
    let body = encode_text(facts, last_success);
    let url = push_url(base, instance);
    let shown = display_url(&url);
    let fail = |detail: String| Error::Push {
        url: shown.clone(),
        detail,
    };
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| fail(e.without_url().to_string()))?;
    let mut request = client
        .post(url.clone())
        .header(
            reqwest::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )
        .body(body);
    if !url.username().is_empty() {
        let user = percent_encoding::percent_decode_str(url.username()).decode_utf8_lossy();
        let password = url.password().map(|p| {
            percent_encoding::percent_decode_str(p)
                .decode_utf8_lossy()
                .into_owned()
        });
        request = request.basic_auth(user, password);
    }
    let response = request
        .send()
        .await
        .map_err(|e| fail(e.without_url().to_string()))?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let text = response.text().await.unwrap_or_default();
    let text: String = text.trim().chars().take(300).collect();
    Err(fail(format!("{status}: {text}")))
}

/// The `instance` label of a job: its Freshservice subdomain (`acme` for
/// `acme.freshservice.com`), else the API's host and port, else `simulator`.
pub fn instance(domain: Option<&str>, base_url: Option<&str>) -> String {
    if let Some(domain) = domain.filter(|d| !d.is_empty()) {
        return domain.to_string();
    }
    let Some(url) = base_url.and_then(|u| Url::parse(u).ok()) else {
        return "simulator".to_string();
    };
    let host = url.host_str().unwrap_or("").to_string();
    if let Some(sub) = host.strip_suffix(".freshservice.com") {
        return sub.to_string();
    }
    match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::report::{BudgetReport, TicketCounts};
    use crate::sink::CommitStats;
    use crate::source::CallStats;

    fn report(status: RunStatus) -> RunReport {
        RunReport {
            run_id: "20250301T020000Z-0001".into(),
            mode: "incremental".into(),
            data: "/data".into(),
            domain: "acme".into(),
            started_at: "2025-03-01T02:00:00Z".parse().unwrap(),
            finished_at: "2025-03-01T02:03:20Z".parse().unwrap(),
            elapsed_secs: 200.5,
            window_since: None,
            status,
            tickets: TicketCounts {
                listed: 120,
                closed: 100,
                unchanged: 10,
                fetched: 85,
                written: 80,
                rejected: 5,
                removed: 2,
                failed: 0,
                ..TicketCounts::default()
            },
            rejects_by_reason: BTreeMap::from([
                ("no_account_number".to_string(), 4),
                ("some_new_reason".to_string(), 1),
            ]),
            removed: BTreeMap::new(),
            removal_guard: None,
            api: CallStats {
                calls: BTreeMap::from([("conversations", 85), ("tickets_list", 2)]),
                credits_used: 190,
                retries: 3,
                rate_limited: 1,
                backoff_ms: 0,
                ..CallStats::default()
            },
            budget: BudgetReport {
                account_total: 200,
                target_per_window: 180.0,
                window_secs: 60.0,
                utilization: 0.75,
                waits: 0,
                waited_ms: 0,
            },
            output: CommitStats {
                parquet_files_written: 7,
                parquet_bytes: 123_456,
                markdown_written: 80,
                ..CommitStats::default()
            },
            recovered_interrupted_commit: false,
            format_upgrade: None,
            privacy: crate::report::PrivacyReport {
                redactions: BTreeMap::from([("credential".to_string(), 3)]),
                tickets_erased: 1,
                pending_erasure: None,
                names_learned: 0,
                names_rewrite: None,
            },
            retention: None,
            next_cursor: None,
            error: None,
            newest_closed_at: Some("2025-03-01T01:50:00Z".parse().unwrap()),
            warnings: Vec::new(),
        }
    }

    fn sample(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    #[test]
    fn privacy_urls_are_shown_without_credentials() {
        let url = Url::parse("https://user:S3cretPw@gw.example:9091/x?y=1").unwrap();
        assert_eq!(display_url(&url), "https://gw.example:9091/x?y=1");
        for (text, shown) in [
            ("https://user:S3cretPw@gw.example/x", "https://gw.example/x"),
            ("http://user:S3cretPw@[::1/x@y", "http://[::1/x@y"),
            ("http://a@b:S3cretPw@host", "http://host/"),
            ("no url at all", "no url at all"),
        ] {
            assert_eq!(display_url_text(text), shown, "{text}");
        }
    }

    #[test]
    fn a_fleet_account_labels_every_series_with_its_domain() {
        let r = report(RunStatus::Ok);
        let facts = Facts {
            domain: Some("globex"),
            ..Facts::from_report(&r)
        };
        let text = encode_text(&facts, Some(1740794600.0));
        let series: Vec<&str> = text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .collect();
        assert!(series.len() > 20, "{text}");
        for line in series {
            assert!(line.contains("domain=\"globex\""), "{line}");
        }
        assert_eq!(
            sample(&text, "ticketsync_run_success{domain=\"globex\"}"),
            Some(1.0)
        );
        assert_eq!(
            sample(
                &text,
                "ticketsync_run_tickets{domain=\"globex\",outcome=\"written\"}"
            )
            .or_else(|| sample(
                &text,
                "ticketsync_run_tickets{outcome=\"written\",domain=\"globex\"}"
            )),
            Some(80.0),
            "{text}"
        );
        // A failed run of the account carries the last success over from its own file.
        assert_eq!(last_success_in(&text), Some(1740794600.0));
    }

    #[test]
    fn a_successful_run_maps_its_report() {
        let r = report(RunStatus::OkWithRejects);
        let text = encode_text(&Facts::from_report(&r), Some(1740794600.0));
        let at = |s: &str| sample(&text, s).unwrap_or_else(|| panic!("{s} missing:\n{text}"));
        assert_eq!(at("ticketsync_run_start_timestamp_seconds"), 1740794400.0);
        assert_eq!(at("ticketsync_run_duration_seconds"), 200.5);
        assert_eq!(at(LAST_SUCCESS), 1740794600.0);
        assert_eq!(at("ticketsync_run_success"), 1.0);
        assert_eq!(at("ticketsync_run_status{status=\"ok_with_rejects\"}"), 1.0);
        assert_eq!(at("ticketsync_run_status{status=\"failed\"}"), 0.0);
        assert_eq!(at("ticketsync_run_tickets{outcome=\"written\"}"), 80.0);
        assert_eq!(at("ticketsync_run_tickets{outcome=\"unchanged\"}"), 10.0);
        assert_eq!(at("ticketsync_run_redactions{rule=\"credential\"}"), 3.0);
        assert_eq!(at("ticketsync_run_redactions{rule=\"card_number\"}"), 0.0);
        assert_eq!(at("ticketsync_run_erased_tickets"), 1.0);
        assert_eq!(
            at("ticketsync_run_retention_removed{table=\"tickets\"}"),
            0.0
        );
        assert_eq!(
            at("ticketsync_run_rejects{reason=\"no_account_number\"}"),
            4.0
        );
        assert_eq!(at("ticketsync_run_rejects{reason=\"no_department\"}"), 0.0);
        assert_eq!(
            at("ticketsync_run_rejects{reason=\"some_new_reason\"}"),
            1.0
        );
        assert_eq!(
            at("ticketsync_run_api_calls{endpoint=\"conversations\"}"),
            85.0
        );
        assert_eq!(
            at("ticketsync_run_api_calls{endpoint=\"time_entries\"}"),
            0.0
        );
        assert_eq!(at("ticketsync_run_api_credits"), 190.0);
        assert_eq!(at("ticketsync_run_api_rate_limited_responses"), 1.0);
        assert_eq!(at("ticketsync_run_api_retries"), 3.0);
        assert_eq!(at("ticketsync_run_budget_utilization_ratio"), 0.75);
        assert_eq!(at("ticketsync_run_written_bytes"), 123456.0);
        assert_eq!(at("ticketsync_run_written_files{kind=\"markdown\"}"), 80.0);
        assert_eq!(
            at("ticketsync_dataset_newest_closed_timestamp_seconds"),
            1740793800.0
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn a_run_without_report_writes_every_family_with_zeros_and_no_success() {
        let start: DateTime<Utc> = "2025-03-01T02:00:00Z".parse().unwrap();
        let text = encode_text(&Facts::without_report(start, start, 0.2), None);
        assert_eq!(
            sample(&text, "ticketsync_run_status{status=\"error\"}"),
            Some(1.0)
        );
        assert_eq!(sample(&text, "ticketsync_run_success"), Some(0.0));
        assert_eq!(
            sample(&text, "ticketsync_run_tickets{outcome=\"written\"}"),
            Some(0.0)
        );
        assert_eq!(
            sample(&text, "ticketsync_run_rejects{reason=\"ticket_deleted\"}"),
            Some(0.0)
        );
        assert!(!text.contains(LAST_SUCCESS), "{text}");
        assert!(!text.contains("newest_closed"), "{text}");
    }

    #[test]
    fn the_textfile_of_a_failed_run_keeps_the_previous_success() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ticketsync.prom");
        let ok = report(RunStatus::Ok);
        write_file(&path, &Facts::from_report(&ok)).unwrap();
        let first = std::fs::read_to_string(&path).unwrap();
        assert_eq!(last_success_in(&first), Some(1740794600.0));

        let mut failed = report(RunStatus::Failed);
        failed.finished_at = "2025-03-02T02:00:00Z".parse().unwrap();
        write_file(&path, &Facts::from_report(&failed)).unwrap();
        let second = std::fs::read_to_string(&path).unwrap();
        assert_eq!(last_success_in(&second), Some(1740794600.0));
        assert_eq!(sample(&second, "ticketsync_run_success"), Some(0.0));
        // No temporary file is left behind.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("ticketsync.prom")]);
        // A directory that does not exist is an error, not a panic.
        let err = write_file(
            &dir.path().join("no/such/dir.prom"),
            &Facts::from_report(&ok),
        );
        assert!(matches!(err, Err(Error::File { .. })));
    }

    #[test]
    fn the_last_success_is_read_only_from_its_own_line() {
        assert_eq!(
            last_success_in("x 1\nticketsync_last_success_timestamp_seconds 12.5\n"),
            Some(12.5)
        );
        assert_eq!(
            last_success_in("ticketsync_last_success_timestamp_seconds_x 1\n"),
            None
        );
        assert_eq!(
            last_success_in("ticketsync_last_success_timestamp_seconds NaN\n"),
            None
        );
        assert_eq!(last_success_in(""), None);
    }

    #[test]
    fn the_push_url_groups_by_job_and_instance_and_hides_credentials() {
        let base = Url::parse("http://u:secret@127.0.0.1:9091/").unwrap();
        let url = push_url(&base, "acme");
        assert_eq!(
            url.as_str(),
            "http://u:secret@127.0.0.1:9091/metrics/job/ticketsync/instance/acme"
        );
        assert_eq!(
            display_url(&url),
            "http://127.0.0.1:9091/metrics/job/ticketsync/instance/acme"
        );
        let prefixed = Url::parse("https://pg.example/gw").unwrap();
        assert_eq!(
            push_url(&prefixed, "a/b").as_str(),
            "https://pg.example/gw/metrics/job/ticketsync/instance@base64/YS9i"
        );
    }

    #[test]
    fn the_instance_is_the_domain() {
        assert_eq!(instance(Some("acme"), None), "acme");
        assert_eq!(
            instance(None, Some("https://acme.freshservice.com")),
            "acme"
        );
        assert_eq!(
            instance(None, Some("http://127.0.0.1:8080")),
            "127.0.0.1:8080"
        );
        assert_eq!(instance(None, None), "simulator");
    }
}
