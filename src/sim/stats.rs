//! What the simulator observed: request counts per endpoint, credits, 429s, status codes, the
//! per-window budget use and a request log. Tests read a [`SimStats`] snapshot to assert that the
//! client stayed within budget and made the calls it should.
//!
//! Only bookkeeping: the rate limiter decides, the server records here afterwards.

use std::collections::{BTreeMap, VecDeque};

use serde::Serialize;

/// Endpoint keys used in [`SimStats::by_endpoint`], [`RequestLog::endpoint`] and
/// `FaultRule::endpoint`.
pub const ENDPOINTS: [&str; 13] = [
    "workspaces",
    "departments",
    "department_view",
    "agents",
    "groups",
    "requesters",
    "requester_view",
    "tickets_list",
    "tickets_filter",
    "ticket_view",
    "conversations",
    "time_entries",
    "other",
];

/// At most this many log entries are kept (the most recent ones), so a long-running
/// `ticketsync sim` cannot grow without bound.
pub const LOG_CAPACITY: usize = 100_000;

/// A snapshot of everything the simulator counted since it started.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SimStats {
    /// Every request received, including 401s, 404s and 429s.
    pub requests: u64,
    /// Requests per endpoint key (all keys of [`ENDPOINTS`] are present, possibly 0).
    pub by_endpoint: BTreeMap<String, u64>,
    /// Credits charged in total (429s charge nothing).
    pub credits_used: u64,
    /// 429 responses served (by the limiter or by a scripted fault).
    pub rate_limited: u64,
    /// Responses per HTTP status.
    pub status_counts: BTreeMap<u16, u64>,
    /// One entry per rate window that saw any request, oldest first.
    pub windows: Vec<WindowStat>,
    /// The most recent requests (at most [`LOG_CAPACITY`]), oldest first.
    pub log: Vec<RequestLog>,
    /// Log entries dropped because the log was full.
    pub log_dropped: u64,
}

impl SimStats {
    /// Requests served for one endpoint key (0 for unknown keys).
    pub fn endpoint(&self, key: &str) -> u64 {
        self.by_endpoint.get(key).copied().unwrap_or(0)
    }

    /// The most credits charged in any single window.
    pub fn max_window_credits(&self) -> u64 {
        self.windows
            .iter()
            .map(|w| w.credits_used)
            .max()
            .unwrap_or(0)
    }

    /// Responses served with this status.
    pub fn status(&self, status: u16) -> u64 {
        self.status_counts.get(&status).copied().unwrap_or(0)
    }
}

/// Budget use of one fixed rate window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WindowStat {
    /// Window number since server start (window `i` covers `[i, i+1) × minute_secs`).
    pub index: u64,
    /// Credits charged in the window.
    pub credits_used: u64,
    /// The budget of the window; after a mid-window change, the highest budget in force since
    /// its first request (a cut does not make earlier, admitted requests look like overspending).
    pub limit: u32,
    /// 429s served in the window.
    pub rejected_429: u64,
    /// Admitted `GET /tickets` calls (the "List All Tickets" sub-limit counts calls).
    pub list_tickets_calls: u32,
    /// The list-tickets sub-limit in force.
    pub list_tickets_limit: u32,
    /// Credits another integration on the account spent in the window (see
    /// [`Simulator::set_neighbour`](super::Simulator::set_neighbour)).
    pub neighbour_credits: u64,
    /// Credits that integration wanted and was refused, the window being spent.
    pub neighbour_refused: u64,
}

/// One request as the simulator saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RequestLog {
    /// HTTP method (`GET` for everything the client should send).
    pub method: String,
    /// Path and raw (still percent-encoded) query, as received.
    pub path_and_query: String,
    /// Endpoint key (see [`ENDPOINTS`]).
    pub endpoint: String,
    /// Status served (200 for faults that spoil a 200's body).
    pub status: u16,
    /// Credits charged (0 for 429s).
    pub credits: u32,
    /// Milliseconds since the simulator started, taken when the response was decided.
    pub at_ms: u64,
}

/// Accumulates everything but the windows (those live in the rate limiter).
#[derive(Debug)]
pub(crate) struct Recorder {
    requests: u64,
    by_endpoint: BTreeMap<String, u64>,
    credits_used: u64,
    rate_limited: u64,
    status_counts: BTreeMap<u16, u64>,
    log: VecDeque<RequestLog>,
    log_dropped: u64,
}

impl Recorder {
    pub(crate) fn new() -> Self {
        Recorder {
            requests: 0,
            by_endpoint: ENDPOINTS.iter().map(|k| ((*k).to_owned(), 0)).collect(),
            credits_used: 0,
            rate_limited: 0,
            status_counts: BTreeMap::new(),
            log: VecDeque::new(),
            log_dropped: 0,
        }
    }

    pub(crate) fn record(&mut self, entry: RequestLog) {
        self.requests += 1;
        *self.by_endpoint.entry(entry.endpoint.clone()).or_default() += 1;
        self.credits_used += u64::from(entry.credits);
        if entry.status == 429 {
            self.rate_limited += 1;
        }
        *self.status_counts.entry(entry.status).or_default() += 1;
        if self.log.len() == LOG_CAPACITY {
            self.log.pop_front();
            self.log_dropped += 1;
        }
        self.log.push_back(entry);
    }

    /// Requests received so far (cheap: no snapshot).
    pub(crate) fn requests(&self) -> u64 {
        self.requests
    }

    pub(crate) fn snapshot(&self, windows: Vec<WindowStat>) -> SimStats {
        SimStats {
            requests: self.requests,
            by_endpoint: self.by_endpoint.clone(),
            credits_used: self.credits_used,
            rate_limited: self.rate_limited,
            status_counts: self.status_counts.clone(),
            windows,
            log: self.log.iter().cloned().collect(),
            log_dropped: self.log_dropped,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(endpoint: &str, status: u16, credits: u32) -> RequestLog {
        RequestLog {
            method: "GET".into(),
            path_and_query: "/x".into(),
            endpoint: endpoint.into(),
            status,
            credits,
            at_ms: 0,
        }
    }

    #[test]
    fn recorder_counts() {
        let mut r = Recorder::new();
        r.record(entry("tickets_list", 200, 3));
        r.record(entry("tickets_list", 429, 0));
        r.record(entry("other", 404, 1));
        let s = r.snapshot(Vec::new());
        assert_eq!(s.requests, 3);
        assert_eq!(s.endpoint("tickets_list"), 2);
        assert_eq!(s.endpoint("agents"), 0);
        assert_eq!(s.by_endpoint.len(), ENDPOINTS.len());
        assert_eq!(s.credits_used, 4);
        assert_eq!(s.rate_limited, 1);
        assert_eq!(s.status(404), 1);
        assert_eq!(s.log.len(), 3);
    }
}
