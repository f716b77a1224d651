//! Scriptable faults: tests queue [`FaultRule`]s that make matching requests fail in a chosen
//! way (5xx bursts, slow or truncated responses, dropped connections, non-JSON bodies, scripted
//! 429s, absurd rate-limit headers, huge bodies).
//!
//! Semantics, in push order: a rule *matches* a request when its endpoint key and ticket id (if
//! set) agree. Each matching rule first lets `skip` requests pass, then hits the next `times`
//! matching requests and expires. The first matching rule that is past its skip phase fires and
//! later rules do not see that request. Only requests that the rate limiter admits (and that
//! passed authentication) count, so a fault is never silently spent on a 401 or a real 429.
//!
//! This module only decides *which* fault applies; `server.rs` turns it into a response.

use std::sync::Mutex;
use std::time::Duration;

use super::lock;

/// What a fault does to a matching request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FaultAction {
    /// Respond with this status instead of serving the request: JSON `{"code","message"}` for
    /// most codes, an HTML gateway page for 502/503/504 (as an edge proxy would). Charged one
    /// credit like any failed call.
    Status(u16),
    /// Wait this long, then serve the request normally.
    Slow(Duration),
    /// 200 with the JSON body cut in half; `Content-Length` matches the cut body.
    TruncatedJson,
    /// Headers (with the full `Content-Length`) and half the body are sent, then the body stream
    /// errors and the server aborts the connection.
    DropConnection,
    /// 200 with an HTML body (`Content-Type: text/html`).
    NotJson,
    /// 200 with an empty body (`Content-Type: application/json`, `Content-Length: 0`).
    EmptyBody,
    /// 429 with this `Retry-After` (seconds, or an HTTP-date when the simulator is configured
    /// for it); charged nothing, counted as rate limited.
    RateLimited {
        /// The `Retry-After` to send (used as is, so 0 is possible).
        retry_after_secs: u64,
    },
    /// 429 with this raw `Retry-After` text (`1e20`, `-5`, `abc`, a date in the year 9999);
    /// charged nothing, counted as rate limited, like [`FaultAction::RateLimited`].
    RateLimitedRaw {
        /// The header value, sent as is.
        retry_after: &'static str,
    },
    /// Served normally, but the three `X-RateLimit-*` headers carry these raw values (`-5`,
    /// `abc`, `1e20`, `4294967295`, a remainder above the total, a total of 0): what a broken
    /// proxy or API might send. The call is charged as usual.
    AbsurdHeaders {
        /// `X-RateLimit-Total`.
        total: &'static str,
        /// `X-RateLimit-Remaining`.
        remaining: &'static str,
        /// `X-RateLimit-Used-CurrentRequest`.
        used: &'static str,
    },
    /// 200 with a valid JSON object of `bytes` bytes (at least 10) instead of the reply,
    /// streamed 64 KiB at a time (the simulator never holds it): with a `Content-Length` when
    /// `content_length`, chunked otherwise. Charged as the request it replaces.
    HugeBody {
        /// Size of the body.
        bytes: u64,
        /// Announce the size up front.
        content_length: bool,
    },
}

/// One scripted fault. Build with [`FaultRule::new`] and the chained setters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultRule {
    /// Endpoint key to match (`"tickets_list"`, `"conversations"`, …, see
    /// `stats::ENDPOINTS`); `None` matches every endpoint.
    pub endpoint: Option<String>,
    /// Ticket id to match (only `ticket_view`, `conversations` and `time_entries` requests carry
    /// one); `None` matches any request.
    pub ticket_id: Option<i64>,
    /// How many matching requests it hits before expiring (`u32::MAX` ≈ forever).
    pub times: u32,
    /// How many matching requests pass untouched before it starts hitting.
    pub skip: u32,
    /// What happens to the requests it hits.
    pub action: FaultAction,
}

impl FaultRule {
    /// A rule that hits the next matching request of any endpoint once.
    #[must_use]
    pub fn new(action: FaultAction) -> Self {
        FaultRule {
            endpoint: None,
            ticket_id: None,
            times: 1,
            skip: 0,
            action,
        }
    }

    /// Only requests to this endpoint key.
    #[must_use]
    pub fn endpoint(mut self, key: impl Into<String>) -> Self {
        self.endpoint = Some(key.into());
        self
    }

    /// Only requests about this ticket.
    #[must_use]
    pub fn ticket(mut self, id: i64) -> Self {
        self.ticket_id = Some(id);
        self
    }

    /// Hit `n` matching requests.
    #[must_use]
    pub fn times(mut self, n: u32) -> Self {
        self.times = n;
        self
    }

    /// Let `n` matching requests pass first.
    #[must_use]
    pub fn skip(mut self, n: u32) -> Self {
        self.skip = n;
        self
    }

    fn matches(&self, endpoint: &str, ticket_id: Option<i64>) -> bool {
        self.times > 0
            && self.endpoint.as_deref().is_none_or(|e| e == endpoint)
            && self.ticket_id.is_none_or(|id| Some(id) == ticket_id)
    }
}

/// The fault script of a running simulator. Rules can be pushed and cleared at any time.
#[derive(Debug, Default)]
pub struct Faults {
    rules: Mutex<Vec<FaultRule>>,
}

impl Faults {
    /// Appends a rule to the script.
    pub fn push(&self, rule: FaultRule) {
        lock(&self.rules).push(rule);
    }

    /// Removes every rule.
    pub fn clear(&self) {
        lock(&self.rules).clear();
    }

    /// Rules that have not expired yet.
    pub fn pending(&self) -> usize {
        lock(&self.rules).len()
    }

    /// Finds the fault for a request and lets `admit` decide (under the script's lock, so two
    /// concurrent requests cannot both take a rule's last hit) whether the request goes
    /// through; only then are the rules' counters advanced.
    ///
    /// `admit` receives the firing action (if any) and returns `(admitted, result)`.
    pub(crate) fn decide<R>(
        &self,
        endpoint: &str,
        ticket_id: Option<i64>,
        admit: impl FnOnce(Option<&FaultAction>) -> (bool, R),
    ) -> R {
        let mut rules = lock(&self.rules);
        let firing = rules
            .iter()
            .position(|r| r.matches(endpoint, ticket_id) && r.skip == 0);
        let (admitted, result) = admit(firing.map(|i| &rules[i].action));
        if admitted {
            let seen = firing.unwrap_or(rules.len());
            for rule in rules[..seen].iter_mut() {
                if rule.matches(endpoint, ticket_id) {
                    rule.skip -= 1;
                }
            }
            if let Some(i) = firing {
                rules[i].times -= 1;
            }
            rules.retain(|r| r.times > 0);
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Which action fires for a request, committing as an admitted request.
    fn fire(f: &Faults, endpoint: &str, ticket: Option<i64>) -> Option<FaultAction> {
        f.decide(endpoint, ticket, |a| (true, a.cloned()))
    }

    #[test]
    fn times_and_skip() {
        let f = Faults::default();
        f.push(
            FaultRule::new(FaultAction::Status(503))
                .endpoint("conversations")
                .skip(1)
                .times(2),
        );
        assert_eq!(fire(&f, "time_entries", Some(1)), None);
        assert_eq!(fire(&f, "conversations", Some(1)), None, "skipped");
        assert_eq!(
            fire(&f, "conversations", Some(2)),
            Some(FaultAction::Status(503))
        );
        assert_eq!(
            fire(&f, "conversations", Some(3)),
            Some(FaultAction::Status(503))
        );
        assert_eq!(fire(&f, "conversations", Some(4)), None, "expired");
        assert_eq!(f.pending(), 0);
    }

    #[test]
    fn ticket_filter_and_order() {
        let f = Faults::default();
        f.push(FaultRule::new(FaultAction::Status(404)).ticket(7));
        f.push(FaultRule::new(FaultAction::TruncatedJson));
        assert_eq!(
            fire(&f, "tickets_list", None),
            Some(FaultAction::TruncatedJson)
        );
        assert_eq!(
            fire(&f, "time_entries", Some(7)),
            Some(FaultAction::Status(404))
        );
        assert_eq!(fire(&f, "time_entries", Some(7)), None);
    }

    #[test]
    fn rejected_requests_do_not_consume_rules() {
        let f = Faults::default();
        f.push(FaultRule::new(FaultAction::EmptyBody).skip(1));
        let seen = f.decide("agents", None, |a| (false, a.cloned()));
        assert_eq!(seen, None);
        assert_eq!(fire(&f, "agents", None), None, "the skip is still pending");
        assert_eq!(fire(&f, "agents", None), Some(FaultAction::EmptyBody));
    }

    #[test]
    fn clear_removes_everything() {
        let f = Faults::default();
        f.push(FaultRule::new(FaultAction::NotJson).times(u32::MAX));
        f.clear();
        assert_eq!(fire(&f, "agents", None), None);
    }
}
