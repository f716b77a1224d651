//! The HTTP side of the source: one reqwest client, Basic auth, the shared limiter, retries and
//! `Link` paging.
//!
//! Every request goes through [`Client::get`], which waits for the budget, sends, reads the body,
//! feeds the rate-limit headers back to the limiter and asks `retry::decide` what to do on
//! failure. The API key lives only in a sensitive header value: it is never formatted into a URL,
//! a log line or an error.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use base64::Engine;
use bytes::Bytes;
use rand::rngs::SmallRng;
use rand::SeedableRng;
use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION, LINK, RETRY_AFTER};
use url::Url;

use super::limiter::{Limiter, LimiterConfig, LimiterStats, RateHeaders};
use super::retry::{decide, Attempt, Decision, RetryPolicy};
use super::{Endpoint, Error};

/// Everything needed to talk to one Freshservice account.
#[derive(Clone)]
pub struct ClientConfig {
    /// `https://<domain>.freshservice.com` or a simulator's `http://127.0.0.1:PORT`;
    /// `/api/v2/...` is appended.
    pub base_url: Url,
    /// The agent API key (from `FRESHSERVICE_API_KEY`).
    pub api_key: String,
    /// The credit budget: the account's per-window allowance and how much of it this run may use.
    pub limiter: LimiterConfig,
    /// Backoff and attempt limits for 429, 5xx, transport errors and broken bodies.
    pub retry: RetryPolicy,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Largest response body read, in bytes (job key `max_response_mb`); a larger one is
    /// [`Error::TooLarge`]. See [`DEFAULT_MAX_RESPONSE_BYTES`].
    pub max_response_bytes: u64,
}

/// The default body cap: 64 MiB, far above any page of 100 tickets or conversations (a few
/// MiB at most), far below what would get the process killed.
pub const DEFAULT_MAX_RESPONSE_BYTES: u64 = 64 << 20;

impl std::fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConfig")
            .field("base_url", &self.base_url.as_str())
            .field("api_key", &"<redacted>")
            .field("limiter", &self.limiter)
            .field("max_response_bytes", &self.max_response_bytes)
            .finish()
    }
}

/// Request counters of a run (for the run report).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct CallStats {
    /// Successful calls by endpoint.
    pub calls: BTreeMap<&'static str, u64>,
    /// Credits the server reported (`X-RateLimit-Used-CurrentRequest`), summed.
    pub credits_used: u64,
    /// Attempts that were retried (any reason).
    pub retries: u64,
    /// 429 responses received.
    pub rate_limited: u64,
    /// Total time spent sleeping in retry backoff (not counting budget waits).
    pub backoff_ms: u64,
    /// Response bodies that were not valid UTF-8 and were read lossily (each invalid sequence
    /// became U+FFFD) instead of failing the call.
    pub lossy_utf8_bodies: u64,
    /// The API's clock minus ours, from the `Date` headers, in whole seconds: the smallest
    /// difference seen (`None` without a readable `Date`). The cursor is bounded by it.
    pub server_clock_offset_secs: Option<i64>,
}

/// A page: its body and the next page's URL, if any.
#[derive(Debug)]
pub struct Page {
    /// The response body as received (at most `max_response_bytes`); decoded by [`super::wire`].
    pub body: Bytes,
    /// The `Link: <…>; rel="next"` target, checked to be on the same host; `None` on the last page.
    pub next: Option<Url>,
    /// When the request that got this answer was sent (the last attempt, after any retries).
    pub sent: Instant,
}

/// The Freshservice HTTP client of one run.
pub struct Client {
    http: reqwest::Client,
    api_root: Url,
    auth: HeaderValue,
    limiter: Limiter,
    policy: RetryPolicy,
    /// Largest response body read, in bytes.
    max_body: u64,
    stats: Mutex<CallStats>,
    /// Moving average of successful request latencies, in seconds (sizes the concurrency).
    latency: Mutex<Option<f64>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("api_root", &self.api_root.as_str())
            .finish()
    }
}

impl Client {
    /// Builds the HTTP client (Basic auth with the key, no redirects, the timeout) and the limiter;
    /// [`Error::Config`] when the base URL or the key cannot be used.
    pub fn new(config: ClientConfig) -> Result<Client, Error> {
        let mut api_root = config.base_url.clone();
        if !api_root.path().ends_with('/') {
            api_root.set_path(&format!("{}/", api_root.path()));
        }
        let api_root = api_root
            .join("api/v2/")
            .map_err(|e| Error::Config(e.to_string()))?;
        let token =
            base64::engine::general_purpose::STANDARD.encode(format!("{}:X", config.api_key));
        let mut auth = HeaderValue::from_str(&format!("Basic {token}")).map_err(|_| {
            Error::Config("the API key contains characters not allowed in a header".into())
        })?;
        auth.set_sensitive(true);
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .user_agent(concat!("ticketsync/", env!("CARGO_PKG_VERSION")))
            .timeout(config.timeout)
            .connect_timeout(Duration::from_secs(10))
            // Never follow redirects with our credentials.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| Error::Config(format!("cannot build the HTTP client: {e}")))?;
        let mut policy = config.retry.clone();
        policy.rate_window = config.limiter.window;
        Ok(Client {
            http,
            api_root,
            auth,
            limiter: Limiter::new(config.limiter),
            policy,
            max_body: config.max_response_bytes,
            stats: Mutex::new(CallStats::default()),
            latency: Mutex::new(None),
        })
    }

    /// `<base>/api/v2/<path>?<query>`.
    pub fn url(&self, path: &str, query: &[(&str, String)]) -> Url {
        let mut url = self
            .api_root
            .join(path.trim_start_matches('/'))
            .unwrap_or_else(|_| self.api_root.clone());
        if !query.is_empty() {
            url.query_pairs_mut()
                .extend_pairs(query.iter().map(|(k, v)| (*k, v.as_str())));
        }
        url
    }

    /// The API host (`<domain>.freshservice.com`), as errors and the report name it.
    pub fn host(&self) -> String {
        self.api_root.host_str().unwrap_or("").to_string()
    }

    /// A snapshot of the request counters so far.
    pub fn stats(&self) -> CallStats {
        self.stats.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// What a previous run saw of the API, as the assumption until this run's answers tell:
    /// the allowance (see [`crate::source::limiter::Budget::assume`]) and the round trip.
    pub fn remember(&self, rate_total: u32, round_trip: Duration) {
        self.limiter.assume(rate_total);
        if let Ok(mut l) = self.latency.lock() {
            l.get_or_insert(round_trip.as_secs_f64());
        }
    }

    /// Lets `credits` and `list_calls` go at once before the first answer (see
    /// [`crate::source::limiter::Budget::open`]).
    pub fn open_budget(&self, credits: f64, list_calls: f64) {
        self.limiter.open(credits, list_calls);
    }

    /// Credits of the calls waiting for the budget right now.
    pub fn waiting_credits(&self) -> u64 {
        self.limiter.waiting_credits()
    }

    /// A snapshot of the limiter's waits so far.
    pub fn limiter_stats(&self) -> LimiterStats {
        self.limiter.stats()
    }

    /// Credits per rate window this run aims to spend.
    pub fn target_per_window(&self) -> f64 {
        self.limiter.target_per_window()
    }

    /// Requests per second the budget allows this run (one credit per plain call).
    pub fn target_rate_per_sec(&self) -> f64 {
        self.limiter.target_per_window() / self.policy.rate_window.as_secs_f64()
    }

    /// The moving average latency of successful requests (`None` before the first).
    pub fn latency(&self) -> Option<Duration> {
        self.latency
            .lock()
            .ok()
            .and_then(|l| *l)
            .map(Duration::from_secs_f64)
    }

    fn record_latency(&self, sample: Duration) {
        if let Ok(mut l) = self.latency.lock() {
            let s = sample.as_secs_f64();
            *l = Some(l.map_or(s, |avg| avg * 0.8 + s * 0.2));
        }
    }

    /// GETs one page, with budget, retries and `Link` parsing. `validate` checks the body (e.g.
    /// that it decodes); a body it rejects is retried like a truncated one.
    pub async fn get(
        &self,
        endpoint: Endpoint,
        url: &Url,
        validate: impl Fn(&[u8]) -> Result<(), String>,
    ) -> Result<Page, Error> {
        let estimated = endpoint.estimated_credits(url);
        let mut rng = SmallRng::from_entropy();
        let mut attempt = 0u32;
        let mut transient = 0u32;
        let mut prev_delay = self.policy.base_delay;
        loop {
            attempt += 1;
            self.limiter
                .acquire(estimated, endpoint.is_ticket_list(), endpoint.class())
                .await;
            let sent = Instant::now();
            let result = self
                .http
                .get(url.clone())
                .header(AUTHORIZATION, self.auth.clone())
                .send()
                .await;
            let (failure, retry_after, status, last_error) = match result {
                Err(e) => {
                    // No response: the budget was probably not charged, but we cannot know.
                    (Attempt::Transport, None, None, describe_transport(&e))
                }
                Ok(mut response) => {
                    self.observe_date(response.headers());
                    let status = response.status();
                    let headers = rate_headers(response.headers());
                    self.limiter.observe(headers, estimated, sent.elapsed());
                    if let Some(used) = headers.used {
                        self.with_stats(|s| s.credits_used += used as u64);
                    }
                    let retry_after = response
                        .headers()
                        .get(RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .map(String::from);
                    let link = link_header(response.headers());
                    // A body above the cap fails the call at once: not retried (it would be as
                    // large again), and never held, so a runaway response cannot get the
                    // process killed. Checked against Content-Length first, then while
                    // reading (a chunked response announces no size).
                    let body = match response.content_length() {
                        Some(length) if length > self.max_body => None,
                        _ => read_capped(&mut response, self.max_body).await.transpose(),
                    };
                    let Some(body) = body else {
                        return Err(self.too_large(endpoint, url));
                    };
                    match body {
                        Err(e) => (
                            Attempt::BrokenBody,
                            None,
                            Some(status.as_u16()),
                            describe_transport(&e),
                        ),
                        Ok(body) if status.is_success() => {
                            let (body, lossy) = valid_utf8(body);
                            match validate(&body) {
                                Ok(()) => {
                                    if lossy {
                                        self.count_lossy(endpoint);
                                    }
                                    self.record_latency(sent.elapsed());
                                    let next = match link.as_deref().and_then(next_link) {
                                        None => None,
                                        Some(next) => Some(self.check_next(endpoint, url, &next)?),
                                    };
                                    self.with_stats(|s| {
                                        *s.calls.entry(endpoint.name()).or_default() += 1
                                    });
                                    return Ok(Page { body, next, sent });
                                }
                                Err(problem) => {
                                    (Attempt::BrokenBody, None, Some(status.as_u16()), problem)
                                }
                            }
                        }
                        Ok(body) => {
                            let status = status.as_u16();
                            let attempt_kind = Attempt::Status {
                                status,
                                retry_after: None,
                            };
                            (
                                attempt_kind,
                                retry_after,
                                Some(status),
                                error_message(&body),
                            )
                        }
                    }
                }
            };
            let outcome = match failure {
                Attempt::Status { status, .. } => Attempt::Status {
                    status,
                    retry_after: retry_after.as_deref(),
                },
                other => other,
            };
            if !matches!(outcome, Attempt::Status { status: 429, .. }) {
                transient += 1;
            }
            match decide(
                &self.policy,
                outcome,
                attempt,
                transient,
                prev_delay,
                SystemTime::now(),
                &mut rng,
            ) {
                Decision::Retry {
                    after,
                    rate_limited,
                } => {
                    self.with_stats(|s| s.retries += 1);
                    if rate_limited {
                        self.with_stats(|s| s.rate_limited += 1);
                        tracing::warn!(
                            endpoint = endpoint.name(),
                            wait_ms = after.as_millis() as u64,
                            "rate limited (429), all workers pause"
                        );
                        self.limiter.pause(after);
                    } else {
                        tracing::warn!(endpoint = endpoint.name(), attempt, status, wait_ms = after.as_millis() as u64, error = %last_error, "retrying");
                        prev_delay = after;
                        self.with_stats(|s| s.backoff_ms += after.as_millis() as u64);
                        let until = Instant::now() + after;
                        tokio::time::sleep_until(until.into()).await;
                    }
                }
                Decision::GiveUp => {
                    return Err(self.final_error(endpoint, url, status, last_error, attempt));
                }
            }
        }
    }

    /// `body` as valid UTF-8: a body with invalid bytes (one bad byte in a subject would fail
    /// the page every night, forever) is read lossily and counted, once per call that returns.
    /// Counts a lossily read body (see [`valid_utf8`]), once per call that returns.
    fn count_lossy(&self, endpoint: Endpoint) {
        tracing::warn!(
            endpoint = endpoint.name(),
            "a response body is not valid UTF-8; invalid bytes were read as U+FFFD"
        );
        self.with_stats(|s| s.lossy_utf8_bodies += 1);
    }

    /// Records the API's clock against ours from a `Date` header (the smallest offset wins: the
    /// cursor must not run ahead of the server's clock).
    fn observe_date(&self, headers: &HeaderMap) {
        let Some(date) = headers
            .get(reqwest::header::DATE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| httpdate::parse_http_date(v).ok())
        else {
            return;
        };
        let server = chrono::DateTime::<chrono::Utc>::from(date);
        // The header has whole seconds, truncated: compare with our clock truncated too.
        let ours = chrono::Utc::now().timestamp();
        let offset = server.timestamp() - ours;
        self.with_stats(|s| {
            s.server_clock_offset_secs =
                Some(s.server_clock_offset_secs.map_or(offset, |o| o.min(offset)));
        });
    }

    fn too_large(&self, endpoint: Endpoint, url: &Url) -> Error {
        Error::TooLarge {
            endpoint: endpoint.name(),
            // Host and path, never the query or credentials.
            path: format!("{}{}", url.host_str().unwrap_or(""), url.path()),
            limit_bytes: self.max_body,
        }
    }

    fn check_next(&self, endpoint: Endpoint, current: &Url, next: &str) -> Result<Url, Error> {
        let next = current.join(next).map_err(|_| Error::ForeignLink {
            endpoint: endpoint.name(),
            link: truncate(next, 200),
        })?;
        let same_origin = next.scheme() == self.api_root.scheme()
            && next.host_str() == self.api_root.host_str()
            && next.port_or_known_default() == self.api_root.port_or_known_default();
        if !same_origin {
            // Following it would send our credentials to another host.
            return Err(Error::ForeignLink {
                endpoint: endpoint.name(),
                link: truncate(next.as_str(), 200),
            });
        }
        Ok(next)
    }

    fn final_error(
        &self,
        endpoint: Endpoint,
        url: &Url,
        status: Option<u16>,
        message: String,
        attempts: u32,
    ) -> Error {
        let host = self.host();
        match status {
            Some(401) => Error::Unauthorized { host, message },
            Some(403) => Error::Forbidden {
                host,
                endpoint: endpoint.name(),
                message,
            },
            Some(404) => Error::NotFound {
                endpoint: endpoint.name(),
                path: url.path().to_string(),
            },
            Some(status) if !(200..300).contains(&status) && status != 429 && status < 500 => {
                Error::Status {
                    endpoint: endpoint.name(),
                    status,
                    message,
                }
            }
            _ => Error::Exhausted {
                endpoint: endpoint.name(),
                // Host and path, never the query or credentials: enough to see which account.
                path: format!("{}{}", url.host_str().unwrap_or(""), url.path()),
                attempts,
                last: message,
            },
        }
    }

    fn with_stats(&self, f: impl FnOnce(&mut CallStats)) {
        if let Ok(mut stats) = self.stats.lock() {
            f(&mut stats);
        }
    }
}

/// The `X-RateLimit-*` headers, [sanitised](RateHeaders::sane): a value that is not a
/// non-negative integer below 2^32 (`-5`, `abc`, `1e20`) counts as absent, and out-of-range
/// numbers are dropped or clamped before the limiter or the run report sees them.
fn rate_headers(headers: &HeaderMap) -> RateHeaders {
    let num = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u32>().ok())
    };
    RateHeaders {
        total: num("x-ratelimit-total"),
        remaining: num("x-ratelimit-remaining"),
        used: num("x-ratelimit-used-currentrequest"),
    }
    .sane()
}

/// `body` as valid UTF-8, checked once: a body with invalid bytes (one bad byte in a subject
/// would fail the page every night, forever) is read lossily, and `true` says so.
fn valid_utf8(body: Bytes) -> (Bytes, bool) {
    match String::from_utf8_lossy(&body) {
        std::borrow::Cow::Borrowed(_) => (body, false),
        std::borrow::Cow::Owned(text) => (Bytes::from(text), true),
    }
}

/// Reads a body chunk by chunk; `Ok(None)` as soon as it passes `limit` bytes (what was read
/// is dropped, the rest is never read).
async fn read_capped(
    response: &mut reqwest::Response,
    limit: u64,
) -> Result<Option<Bytes>, reqwest::Error> {
    // Content-Length (checked against the limit by the caller) sizes the buffer once.
    let hint = response.content_length().unwrap_or(0).min(limit);
    let mut body = bytes::BytesMut::with_capacity(usize::try_from(hint).unwrap_or(0));
    while let Some(chunk) = response.chunk().await? {
        if (body.len() as u64).saturating_add(chunk.len() as u64) > limit {
            return Ok(None);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Some(body.freeze()))
}

/// Every `Link` header line of a response as one field value (RFC 9110 §5.3: several lines
/// are one comma-separated list). Bytes that are not ASCII are read as UTF-8, lossily, instead
/// of losing the whole header.
fn link_header(headers: &HeaderMap) -> Option<String> {
    let lines: Vec<String> = headers
        .get_all(LINK)
        .iter()
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .collect();
    (!lines.is_empty()).then(|| lines.join(", "))
}

/// The `rel="next"` target of a `Link` field value, parsed per RFC 8288 §3: link-values
/// separated by commas outside `<…>` and quoted strings (a target may hold raw commas and
/// semicolons), parameters in any order and case, `rel` a space-separated list of relation
/// types (`rel="next last"`), quoted or not. A link-value that does not parse is skipped, not
/// taken as the end of the header.
pub fn next_link(header: &str) -> Option<String> {
    let mut rest = header;
    loop {
        rest = rest.trim_start_matches(|c: char| c == ',' || c.is_whitespace());
        if rest.is_empty() {
            return None;
        }
        let Some(after) = rest.strip_prefix('<') else {
            // Not a link-value: skip to the next comma outside quotes.
            rest = skip_value(rest);
            continue;
        };
        let end = after.find('>')?;
        let target = &after[..end];
        rest = &after[end + 1..];
        let mut is_next = false;
        loop {
            rest = rest.trim_start();
            let Some(param) = rest.strip_prefix(';') else {
                break;
            };
            let param = param.trim_start();
            let name_end = param
                .find(|c: char| c == '=' || c == ';' || c == ',' || c.is_whitespace())
                .unwrap_or(param.len());
            let name = &param[..name_end];
            rest = param[name_end..].trim_start();
            let mut value = String::new();
            if let Some(v) = rest.strip_prefix('=') {
                let (parsed, after) = param_value(v.trim_start());
                value = parsed;
                rest = after;
            }
            if name.eq_ignore_ascii_case("rel")
                && value
                    .split_ascii_whitespace()
                    .any(|r| r.eq_ignore_ascii_case("next"))
            {
                is_next = true;
            }
        }
        if is_next {
            return Some(target.trim().to_string());
        }
        rest = skip_value(rest);
    }
}

/// A parameter value, quoted (with `\` escapes) or a token; and what follows it.
fn param_value(s: &str) -> (String, &str) {
    if let Some(quoted) = s.strip_prefix('"') {
        let mut value = String::new();
        let mut chars = quoted.char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, escaped)) = chars.next() {
                        value.push(escaped);
                    }
                }
                '"' => return (value, &quoted[i + 1..]),
                c => value.push(c),
            }
        }
        (value, "")
    } else {
        let end = s.find([';', ',']).unwrap_or(s.len());
        (s[..end].trim().to_string(), &s[end..])
    }
}

/// `s` after the current link-value: past the next comma that is outside `<…>` and quotes.
fn skip_value(s: &str) -> &str {
    let (mut quoted, mut angle, mut escaped) = (false, false, false);
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' if !angle => quoted = !quoted,
            '<' if !quoted => angle = true,
            '>' if !quoted => angle = false,
            ',' if !quoted && !angle => return &s[i + 1..],
            _ => {}
        }
    }
    ""
}

/// A short, safe description of an error body: the API's `message`/`description`/`errors`, or the
/// start of the text. Bodies never contain our credentials (they are only in request headers).
/// The server's words reach the terminal with control characters and bidi overrides escaped
/// (by [`truncate`]): an error body cannot colour, retitle or hyperlink the operator's terminal.
fn error_message(body: &[u8]) -> String {
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) {
        let mut parts = Vec::new();
        for key in ["code", "message", "description"] {
            if let Some(s) = value.get(key).and_then(|v| v.as_str()) {
                parts.push(s.to_string());
            }
        }
        if let Some(errors) = value.get("errors").and_then(|v| v.as_array()) {
            for e in errors.iter().take(5) {
                let field = e.get("field").and_then(|v| v.as_str()).unwrap_or("?");
                let message = e.get("message").and_then(|v| v.as_str()).unwrap_or("");
                parts.push(format!("{field}: {message}"));
            }
        }
        if !parts.is_empty() {
            return truncate(&parts.join("; "), 300);
        }
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        "empty body".to_string()
    } else {
        truncate(text, 200)
    }
}

fn describe_transport(e: &reqwest::Error) -> String {
    // Walk the source chain for the root cause, but print no URL (the caller names the endpoint).
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else if e.is_body() || e.is_decode() {
        "response body broke off"
    } else {
        "request failed"
    };
    let mut root: &dyn std::error::Error = e;
    while let Some(next) = root.source() {
        root = next;
    }
    format!("{kind}: {root}")
}

/// Server text for an error message: at most `max` bytes of it (an ellipsis marks the cut), with
/// control characters and bidi overrides escaped ([`super::wire::escape_controls`]).
fn truncate(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    let shown = super::wire::escape_controls(&s[..end]);
    if end < s.len() {
        format!("{shown}…")
    } else {
        shown.into_owned()
    }
}

/// Shared so the pipeline can hold the client in tasks.
pub type SharedClient = Arc<Client>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Classify;

    #[test]
    fn link_header_forms() {
        let h = r#"<https://acme.freshservice.com/api/v2/tickets?page=3&per_page=100>; rel="next""#;
        assert_eq!(
            next_link(h).unwrap(),
            "https://acme.freshservice.com/api/v2/tickets?page=3&per_page=100"
        );
        let h = r#"<https://x/a?page=1>; rel="prev", <https://x/a?page=3>; rel="next""#;
        assert_eq!(next_link(h).unwrap(), "https://x/a?page=3");
        assert_eq!(next_link(r#"<https://x/a?page=1>; rel="prev""#), None);
        assert_eq!(next_link("garbage"), None);
    }

    #[test]
    fn link_headers_parse_per_rfc_8288() {
        // A raw comma and semicolon inside the target.
        let h = r#"<https://x/api/v2/tickets?include=stats,tags;v=1&page=2>; rel="next""#;
        assert_eq!(
            next_link(h).unwrap(),
            "https://x/api/v2/tickets?include=stats,tags;v=1&page=2"
        );
        // prev first, other parameters (with commas in quotes), upper case, unquoted, lists.
        let h = r#"<https://x/a?page=1>; rel="prev", <https://x/a?page=3>; title="page, three"; REL=next"#;
        assert_eq!(next_link(h).unwrap(), "https://x/a?page=3");
        let h = r#"<https://x/a?page=1,2>; rel=prev, <https://x/a?page=9>; rel="last next""#;
        assert_eq!(next_link(h).unwrap(), "https://x/a?page=9");
        // Garbage before a good value does not hide it.
        let h = r#"junk; rel="next", <https://x/a?page=4>; rel="next""#;
        assert_eq!(next_link(h).unwrap(), "https://x/a?page=4");
        // Non-ASCII in the target survives.
        let h = "<https://x/a?q=Grüße&page=2>; rel=\"next\"";
        assert_eq!(next_link(h).unwrap(), "https://x/a?q=Grüße&page=2");
        assert_eq!(next_link(r#"<https://x/a?page=2>; rel="nextish""#), None);
        assert_eq!(next_link("<unterminated; rel=next"), None);
    }

    #[test]
    fn link_lines_are_one_list() {
        let mut h = HeaderMap::new();
        h.append(
            LINK,
            HeaderValue::from_static(r#"<https://x/a?page=1>; rel="prev""#),
        );
        h.append(
            LINK,
            HeaderValue::from_static(r#"<https://x/a?page=3>; rel="next""#),
        );
        assert_eq!(
            next_link(&link_header(&h).unwrap()).unwrap(),
            "https://x/a?page=3"
        );
        let mut h = HeaderMap::new();
        h.append(
            LINK,
            HeaderValue::from_bytes("<https://x/ä?page=2>; rel=next".as_bytes()).unwrap(),
        );
        assert_eq!(
            next_link(&link_header(&h).unwrap()).unwrap(),
            "https://x/ä?page=2"
        );
    }

    #[test]
    fn rate_headers_ignore_what_is_not_a_sane_number() {
        let parse = |total: &str, remaining: &str, used: &str| {
            let mut h = HeaderMap::new();
            h.insert("x-ratelimit-total", HeaderValue::from_str(total).unwrap());
            h.insert(
                "x-ratelimit-remaining",
                HeaderValue::from_str(remaining).unwrap(),
            );
            h.insert(
                "x-ratelimit-used-currentrequest",
                HeaderValue::from_str(used).unwrap(),
            );
            rate_headers(&h)
        };
        let none = RateHeaders::default();
        assert_eq!(parse("-5", "abc", "1e20"), none);
        assert_eq!(parse("4294967295", "4294967295", "4294967295"), none);
        assert_eq!(parse("99999999999", "-0", "NaN"), none);
        assert_eq!(parse("0", "", " "), none);
        assert_eq!(
            parse(" 500 ", "900", "3"),
            RateHeaders {
                total: Some(500),
                remaining: Some(500),
                used: Some(3)
            }
        );
    }

    #[test]
    fn error_bodies_are_summarised() {
        let body = br#"{"description":"Validation failed","errors":[{"field":"per_page","message":"Must be less than or equal to 100","code":"invalid_value"}]}"#;
        assert_eq!(
            error_message(body),
            "Validation failed; per_page: Must be less than or equal to 100"
        );
        assert_eq!(error_message(b""), "empty body");
        assert_eq!(error_message(b"<html>oops</html>"), "<html>oops</html>");
    }

    /// A body above the cap, announced by Content-Length or not, fails the call at once (no
    /// retry), naming host and path but not the query; one at the cap is read whole.
    #[tokio::test]
    async fn a_body_above_the_cap_fails_at_once_naming_the_path() {
        use crate::sim::{FaultAction, FaultRule, SimConfig, Simulator};
        let sim = Simulator::start(
            SimConfig {
                tickets: 5,
                ..SimConfig::default()
            },
            0,
        )
        .await
        .unwrap();
        let client = Client::new(ClientConfig {
            base_url: Url::parse(&sim.base_url()).unwrap(),
            api_key: sim.api_key(),
            limiter: LimiterConfig::default(),
            retry: RetryPolicy::default(),
            timeout: Duration::from_secs(30),
            max_response_bytes: 1 << 20,
        })
        .unwrap();
        let url = client.url("agents", &[("per_page", "100".into())]);
        for content_length in [true, false] {
            sim.faults().push(
                FaultRule::new(FaultAction::HugeBody {
                    bytes: 3 << 20,
                    content_length,
                })
                .endpoint("agents"),
            );
            let before = sim.requests();
            let err = client
                .get(Endpoint::Agents, &url, |_| Ok(()))
                .await
                .unwrap_err();
            assert!(
                matches!(
                    err,
                    Error::TooLarge {
                        limit_bytes: 1_048_576,
                        ..
                    }
                ),
                "{err}"
            );
            let text = err.to_string();
            assert!(text.contains("127.0.0.1"), "{text}");
            assert!(text.contains("/api/v2/agents"), "{text}");
            assert!(!text.contains("per_page"), "{text}");
            assert_ne!(err.class(), crate::error::Class::Config);
            assert_eq!(sim.requests() - before, 1, "not retried ({content_length})");
        }
        sim.faults().push(
            FaultRule::new(FaultAction::HugeBody {
                bytes: 1 << 20,
                content_length: false,
            })
            .endpoint("agents"),
        );
        let page = client
            .get(Endpoint::Agents, &url, |_| Ok(()))
            .await
            .unwrap();
        assert_eq!(page.body.len(), 1 << 20);
        assert_eq!(sim.faults().pending(), 0);
        sim.shutdown().await;
    }

    #[test]
    fn error_bodies_reach_the_terminal_without_escape_sequences() {
        let hostile =
            "\x1b]8;;http://evil\x07click here\x1b]8;;\x07 \x1b[31mred\u{9b}0m \u{202e}gpj.exe";
        let json = serde_json::json!({"message": hostile, "errors": [{"field": "\x1b[2J", "message": "\x07"}]});
        for body in [
            hostile.as_bytes().to_vec(),
            serde_json::to_vec(&json).unwrap(),
        ] {
            let message = error_message(&body);
            assert!(
                !message.contains(['\x1b', '\x07', '\u{9b}', '\u{202e}']),
                "{message:?}"
            );
            assert!(
                message.contains("\\u{1b}]8;;http://evil\\u{7}click here"),
                "{message}"
            );
            assert!(
                message.contains("\\u{1b}[31mred\\u{9b}0m \\u{202e}gpj.exe"),
                "{message}"
            );
        }
        // A cut never splits a character, and the cut text is escaped too.
        assert_eq!(truncate("\x1bé\x1b", 3), "\\u{1b}é…");
        assert_eq!(truncate("ok\n", 10), "ok\\u{a}");
    }

    #[test]
    fn api_key_stays_out_of_debug_output() {
        let config = ClientConfig {
            base_url: Url::parse("https://acme.freshservice.com").unwrap(),
            api_key: "sekrit-key".into(),
            limiter: LimiterConfig::default(),
            retry: RetryPolicy::default(),
            timeout: Duration::from_secs(5),
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
        };
        assert!(!format!("{config:?}").contains("sekrit"));
        let client = Client::new(config).unwrap();
        assert!(!format!("{client:?}").contains("sekrit"));
        assert_eq!(
            client.url("tickets", &[]).as_str(),
            "https://acme.freshservice.com/api/v2/tickets"
        );
    }

    #[test]
    fn base_urls_with_a_path_keep_it() {
        let config = ClientConfig {
            base_url: Url::parse("http://127.0.0.1:9000/proxy").unwrap(),
            api_key: "k".into(),
            limiter: LimiterConfig::default(),
            retry: RetryPolicy::default(),
            timeout: Duration::from_secs(5),
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
        };
        let client = Client::new(config).unwrap();
        let url = client.url("tickets/5/conversations", &[("per_page", "100".into())]);
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:9000/proxy/api/v2/tickets/5/conversations?per_page=100"
        );
    }
}
