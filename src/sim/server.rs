//! The HTTP side of the simulator: one axum fallback handler that runs every request through the
//! same pipeline, plus the per-endpoint handlers.
//!
//! Pipeline, in order: latency → route → authentication → handler (a pure read of the world,
//! producing a [`Reply`] that knows its credit cost) → fault script + rate limiter (decided
//! together, see `Faults::decide`) → response with the `X-RateLimit-*` headers → stats → the
//! "mutate during listing" hook → scripted slowness.
//! A request is charged to (and logged in) the rate window of its arrival, as a gateway in front
//! of the API counts it, not of the moment a loaded machine wakes the handler from its latency.
//!
//! Routing is a small hand-written match ([`Route::parse`]) rather than one axum route per
//! endpoint because the limiter, the fault script and the stats all need the endpoint key, the
//! ticket id and the credit cost *before* a response exists; per-route handlers would each have
//! to repeat that plumbing. Handlers never hold a lock across an `.await`: everything between the
//! two sleeps is synchronous.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header::{self, HeaderName, HeaderValue};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::Response;
use axum::Router;
use base64::Engine as _;
use bytes::Bytes;
use chrono::{DateTime, SubsecRound, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use super::data::{Department, GroundTruth, Ticket, World};
use super::faults::{FaultAction, Faults};
use super::hostile::{self, Hostile, Mutation, Served, WireChanges};
use super::quirks::Quirks;
use super::ratelimit::{retry_after_secs, Decision, Quota, RateLimiter};
use super::render::{self, Embeds, Shape};
use super::stats::{Recorder, RequestLog, SimStats};
use super::{lock, SimConfig};

/// Default and maximum `per_page` (§2).
const DEFAULT_PER_PAGE: u32 = 30;
const MAX_PER_PAGE: u32 = 100;
/// Without `updated_since`, `/tickets` only lists tickets created this recently (§5).
const DEFAULT_WINDOW_DAYS: i64 = 30;
/// Embeds `GET /tickets` accepts (+2 credits each).
const LIST_EMBEDS: &[&str] = &["stats", "requester", "requested_for", "tags", "department"];
/// Embeds `GET /tickets/{id}` accepts here (+1 credit each).
const VIEW_EMBEDS: &[&str] = &[
    "conversations",
    "requester",
    "requested_for",
    "stats",
    "tags",
    "department",
];

const X_TOTAL: HeaderName = HeaderName::from_static("x-ratelimit-total");
const X_REMAINING: HeaderName = HeaderName::from_static("x-ratelimit-remaining");
const X_USED: HeaderName = HeaderName::from_static("x-ratelimit-used-currentrequest");
const JSON_TYPE: &str = "application/json; charset=utf-8";
const HTML_TYPE: &str = "text/html; charset=utf-8";

/// A `GET /tickets` page after which a ticket gets touched, once.
#[derive(Debug, Clone, Copy)]
struct ListingHook {
    after_page: u32,
    ticket_id: i64,
}

/// State shared by the server task and every [`Simulator`](super::Simulator) handle.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: SimConfig,
    /// Start of rate window 0 and of `RequestLog::at_ms`.
    pub(crate) started: Instant,
    pub(crate) local_addr: SocketAddr,
    pub(crate) world: Mutex<World>,
    pub(crate) limiter: Mutex<RateLimiter>,
    pub(crate) faults: Faults,
    pub(crate) quirks: Mutex<Quirks>,
    pub(crate) hostile: Hostile,
    recorder: Mutex<Recorder>,
    latency_rng: Mutex<StdRng>,
    listing_hooks: Mutex<Vec<ListingHook>>,
}

impl Shared {
    /// `window` is `config.minute_secs`, already validated as non-zero.
    pub(crate) fn new(config: SimConfig, local_addr: SocketAddr, window: Duration) -> Self {
        let now = config.now.trunc_subsecs(0);
        let world =
            World::generate_with_workspaces(config.seed, config.tickets, now, config.workspaces);
        let limiter = RateLimiter::new(
            window,
            config.plan.credits_per_minute(),
            config.plan.list_tickets_per_minute(),
            config.rate_limit,
        );
        // Latency jitter gets its own stream so it never perturbs the world's generator.
        let latency_rng = StdRng::seed_from_u64(config.seed ^ 0x5eed_1a7e_0c10_c4ed);
        Shared {
            config,
            started: Instant::now(),
            local_addr,
            world: Mutex::new(world),
            limiter: Mutex::new(limiter),
            faults: Faults::default(),
            quirks: Mutex::new(Quirks::default()),
            hostile: Hostile::default(),
            recorder: Mutex::new(Recorder::new()),
            latency_rng: Mutex::new(latency_rng),
            listing_hooks: Mutex::new(Vec::new()),
        }
    }

    /// The instant mutations stamp: real time or the configured `now`, whichever is later,
    /// in whole seconds (so a client's real-time cursor always sees scripted changes).
    pub(crate) fn bump_now(&self) -> DateTime<Utc> {
        self.server_now().max(self.config.now).trunc_subsecs(0)
    }

    /// Real time moved by the hostile layer's clock skew: what the server's `Date` says.
    fn server_now(&self) -> DateTime<Utc> {
        Utc::now() + chrono::Duration::seconds(self.hostile.clock_skew())
    }

    /// The data's "current time": the configured `now` advanced by the time served so far.
    fn sim_clock(&self) -> DateTime<Utc> {
        let elapsed = chrono::Duration::from_std(self.started.elapsed()).unwrap_or_default();
        self.config.now + elapsed
    }

    pub(crate) fn ground_truth(&self) -> GroundTruth {
        lock(&self.world).truth.clone()
    }

    pub(crate) fn requests(&self) -> u64 {
        lock(&self.recorder).requests()
    }

    pub(crate) fn stats(&self) -> SimStats {
        let windows = lock(&self.limiter).windows();
        lock(&self.recorder).snapshot(windows)
    }

    pub(crate) fn touch_ticket(&self, id: i64) {
        let now = self.bump_now();
        lock(&self.world).touch(id, now);
    }

    pub(crate) fn mutate_during_listing(&self, after_page: u32, ticket_id: i64) {
        lock(&self.listing_hooks).push(ListingHook {
            after_page,
            ticket_id,
        });
    }

    fn latency(&self) -> Duration {
        let base = self.config.latency_ms;
        let jitter = match self.config.latency_jitter_ms {
            0 => 0,
            j => lock(&self.latency_rng).gen_range(0..=j),
        };
        Duration::from_millis(base.saturating_add(jitter))
    }

    /// Runs the synchronous part of the pipeline for one request that arrived `arrived` after
    /// the simulator started.
    fn process(&self, req: &Request, arrived: Duration) -> Outcome {
        let uri = req.uri();
        let path_and_query = uri
            .path_and_query()
            .map_or_else(|| uri.path().to_owned(), |pq| pq.as_str().to_owned());
        let route = Route::parse(uri.path());
        let endpoint = route.endpoint();
        let authed = authorized(req.headers(), &self.config.api_key);
        let list_call = route == Route::TicketList;

        let reply = if !authed {
            Reply::error(
                StatusCode::UNAUTHORIZED,
                "invalid_credentials",
                "You have to be logged in to perform this action.",
            )
        } else if req.method() != Method::GET {
            Reply::error(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                &format!("{} is not allowed on {}", req.method(), uri.path()),
            )
        } else {
            let quirks = lock(&self.quirks).clone();
            let mut query = Query::parse(uri.query());
            if quirks.ignore_filter && route == Route::TicketList {
                query.pairs.retain(|(k, _)| k != "filter");
            }
            if quirks.ignore_workspace && route == Route::TicketList {
                query.pairs.retain(|(k, _)| k != "workspace_id");
            }
            let asked_page = query
                .get("page")
                .and_then(|p| p.parse::<u32>().ok())
                .unwrap_or(1);
            if self.hostile.ignores_page(endpoint, asked_page) {
                query.pairs.retain(|(k, _)| k != "page");
            }
            let request = RequestCtx {
                query,
                origin: origin(req.headers(), self.local_addr),
                path: uri.path().to_owned(),
                clock: self.sim_clock(),
                newest_first: self.hostile.newest_first(endpoint),
            };
            let world = lock(&self.world);
            let mut reply = serve(&world.truth, route, &request);
            drop(world);
            misbehave(&quirks, route, &request, &mut reply);
            if reply.status == StatusCode::OK {
                let page = request
                    .query
                    .get("page")
                    .and_then(|p| p.parse::<u32>().ok())
                    .unwrap_or(1);
                let (wire, events) = self.hostile.on_reply(
                    endpoint,
                    page,
                    route.ticket_id(),
                    &mut reply.body,
                    &mut reply.next_link,
                );
                reply.hostile = Box::new(Served { wire, events });
            }
            reply
        };

        let elapsed = arrived;
        let verdict = if authed {
            self.faults.decide(endpoint, route.ticket_id(), |fault| {
                let verdict = self.charge(elapsed, &reply, list_call, fault);
                (!matches!(verdict, Verdict::Limited { .. }), verdict)
            })
        } else {
            // Unauthenticated calls never see faults, but they still spend budget.
            self.charge(elapsed, &reply, list_call, None)
        };

        let mut slow = None;
        let mut intact = false;
        let (response, status, credits) = match verdict {
            Verdict::Limited { quota, retry_after } => {
                let secs = retry_after_secs(retry_after);
                (self.too_many(quota, secs, retry_after), 429, 0)
            }
            Verdict::Scripted429 { quota, secs, raw } => {
                let mut response = self.too_many(quota, secs, Duration::from_secs(secs));
                if let Some(raw) = raw {
                    set_header(&mut response, header::RETRY_AFTER, raw.to_owned());
                }
                (response, 429, 0)
            }
            Verdict::Serve { quota, fault } => {
                if let Some(FaultAction::Slow(d)) = fault {
                    slow = Some(d);
                }
                intact = matches!(
                    fault,
                    None | Some(FaultAction::Slow(_) | FaultAction::AbsurdHeaders { .. })
                ) && reply.status == StatusCode::OK;
                let (response, status) = build(&reply, fault.as_ref(), quota);
                (response, status, quota.used)
            }
        };

        lock(&self.recorder).record(RequestLog {
            method: req.method().to_string(),
            path_and_query,
            endpoint: endpoint.to_owned(),
            status,
            credits,
            at_ms: u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
        });

        if intact && list_call {
            if let Some(page) = reply.listing_page {
                self.run_listing_hook(page);
            }
        }
        if intact && !reply.hostile.events.is_empty() {
            self.run_events(route, &reply);
        }
        let mut response = response;
        let skew = self.hostile.clock_skew();
        if skew != 0 {
            let (now, by) = (SystemTime::now(), Duration::from_secs(skew.unsigned_abs()));
            let at = if skew > 0 {
                now.checked_add(by)
            } else {
                now.checked_sub(by)
            };
            let at = at.unwrap_or(now);
            set_header(&mut response, header::DATE, httpdate::fmt_http_date(at));
        }
        Outcome { response, slow }
    }

    /// Consults the limiter for a request whose fault (if any) is already known.
    fn charge(
        &self,
        elapsed: Duration,
        reply: &Reply,
        list_call: bool,
        fault: Option<&FaultAction>,
    ) -> Verdict {
        let mut limiter = lock(&self.limiter);
        match fault {
            Some(&FaultAction::RateLimited { retry_after_secs }) => {
                return Verdict::Scripted429 {
                    quota: limiter.record_rejection(elapsed),
                    secs: retry_after_secs,
                    raw: None,
                }
            }
            Some(&FaultAction::RateLimitedRaw { retry_after }) => {
                return Verdict::Scripted429 {
                    quota: limiter.record_rejection(elapsed),
                    secs: 0,
                    raw: Some(retry_after),
                }
            }
            _ => {}
        }
        // A scripted error status replaces the work, so it costs what any failed call costs.
        let credits = match fault {
            Some(FaultAction::Status(_)) => 1,
            _ => reply.credits,
        };
        match limiter.try_acquire(elapsed, credits, list_call) {
            Decision::Admit(quota) => Verdict::Serve {
                quota,
                fault: fault.cloned(),
            },
            Decision::Reject { quota, retry_after } => Verdict::Limited { quota, retry_after },
        }
    }

    /// The 429 response: `Retry-After` as whole seconds, or as an HTTP-date rounded up to the
    /// next whole second (HTTP-dates have no fractions; rounding down would invite a retry
    /// while the window is still closed).
    fn too_many(&self, quota: Quota, secs: u64, wait: Duration) -> Response {
        let retry_after = if self.config.retry_after_http_date {
            // A scripted absurd wait must not panic the simulator.
            let at = SystemTime::now()
                .checked_add(wait)
                .unwrap_or_else(SystemTime::now);
            let since_epoch = at.duration_since(UNIX_EPOCH).unwrap_or_default();
            let whole = since_epoch.as_secs() + u64::from(since_epoch.subsec_nanos() > 0);
            httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(whole))
        } else {
            secs.to_string()
        };
        let body = json!({
            "code": "rate_limit_exceeded",
            "message": format!("You have exceeded the limit of requests per minute. Retry after {retry_after}."),
        });
        let mut response = respond(
            StatusCode::TOO_MANY_REQUESTS,
            JSON_TYPE,
            Body::from(body.to_string()),
            quota,
        );
        set_header(&mut response, header::RETRY_AFTER, retry_after);
        response
    }

    /// The hostile layer's world events of a page served intact: ticket events hit the ticket
    /// whose child list this is, or the page's first ticket; each is recorded as touched.
    fn run_events(&self, route: Route, reply: &Reply) {
        let first = reply
            .body
            .as_object()
            .and_then(|o| o.values().next())
            .and_then(|v| match v {
                Value::Array(items) => items.first(),
                item @ Value::Object(_) => Some(item),
                _ => None,
            })
            .and_then(|item| item.get("id"))
            .and_then(|id| {
                id.as_i64()
                    .or_else(|| id.as_str().and_then(|s| s.parse().ok()))
            });
        let target = match route {
            Route::Conversations(id) | Route::TimeEntries(id) | Route::TicketView(id) => Some(id),
            Route::TicketList => first,
            _ => None,
        };
        let now = self.bump_now();
        let mut world = lock(&self.world);
        for event in &reply.hostile.events {
            let touched = match (event, target) {
                (Mutation::CreateTicket, _) => Some(world.add_closed_ticket(now)),
                (_, None) => None,
                (_, Some(id)) if world.truth.ticket(id).is_none() => None,
                (Mutation::DeleteFirst, Some(id)) => {
                    world.delete(id);
                    Some(id)
                }
                (Mutation::SpamFirst, Some(id)) => {
                    world.spam(id);
                    Some(id)
                }
                (Mutation::ReopenFirst, Some(id)) => {
                    world.reopen(id, now);
                    Some(id)
                }
                (Mutation::TouchFirst, Some(id)) => {
                    world.touch(id, now);
                    Some(id)
                }
                (Mutation::MoveWorkspace, Some(id)) => {
                    world.move_workspace(id, now);
                    Some(id)
                }
                (Mutation::LogTime, Some(id)) => {
                    world.add_time_entry(id, 15, true, true, now);
                    Some(id)
                }
                (Mutation::DeleteChildFirst, Some(ticket)) => {
                    match (first, route) {
                        (Some(child), Route::Conversations(_)) => {
                            world.delete_child(ticket, child, true);
                        }
                        (Some(child), Route::TimeEntries(_)) => {
                            world.delete_child(ticket, child, false);
                        }
                        _ => {}
                    }
                    None
                }
                _ => None,
            };
            if let Some(id) = touched {
                self.hostile.record_touched(id);
            }
        }
    }

    fn run_listing_hook(&self, page: u32) {
        let hook = {
            let mut hooks = lock(&self.listing_hooks);
            hooks
                .iter()
                .position(|h| h.after_page == page)
                .map(|i| hooks.remove(i))
        };
        if let Some(hook) = hook {
            self.touch_ticket(hook.ticket_id);
        }
    }
}

/// What the synchronous pipeline hands back to the async handler.
struct Outcome {
    response: Response,
    /// A scripted delay to sleep before responding.
    slow: Option<Duration>,
}

/// The combined decision of the fault script and the limiter.
enum Verdict {
    Serve {
        quota: Quota,
        fault: Option<FaultAction>,
    },
    /// Rejected by the limiter.
    Limited { quota: Quota, retry_after: Duration },
    /// A scripted 429; `raw` replaces the `Retry-After` value.
    Scripted429 {
        quota: Quota,
        secs: u64,
        raw: Option<&'static str>,
    },
}

/// The router: every path goes through [`handle`].
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new().fallback(handle).with_state(shared)
}

async fn handle(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let arrived = shared.started.elapsed();
    let delay = shared.latency();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let Outcome { response, slow } = shared.process(&req, arrived);
    if let Some(d) = slow {
        tokio::time::sleep(d).await;
    }
    response
}

/// HTTP Basic with the API key as username and any password (§1).
fn authorized(headers: &HeaderMap, api_key: &str) -> bool {
    let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let Some((scheme, credentials)) = value.trim().split_once(' ') else {
        return false;
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return false;
    }
    let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(credentials.trim()) else {
        return false;
    };
    let Ok(text) = String::from_utf8(decoded) else {
        return false;
    };
    let user = text.split_once(':').map_or(text.as_str(), |(user, _)| user);
    user == api_key
}

/// `http://<Host header>`, falling back to the bound address.
fn origin(headers: &HeaderMap, local: SocketAddr) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| !h.is_empty())
        .map_or_else(|| local.to_string(), str::to_owned);
    format!("http://{host}")
}

/// The endpoints the simulator knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route {
    Workspaces,
    Departments,
    DepartmentView(i64),
    Agents,
    Groups,
    Requesters,
    RequesterView(i64),
    TicketList,
    /// `GET /tickets/filter?query="…"` (§6).
    TicketFilter,
    TicketView(i64),
    Conversations(i64),
    TimeEntries(i64),
    Unknown,
}

impl Route {
    pub(crate) fn parse(path: &str) -> Route {
        let Some(rest) = path.strip_prefix("/api/v2/") else {
            return Route::Unknown;
        };
        let segments: Vec<&str> = rest.trim_end_matches('/').split('/').collect();
        let id = |s: &str| s.parse::<i64>().ok();
        match segments.as_slice() {
            ["workspaces"] => Route::Workspaces,
            ["departments"] => Route::Departments,
            ["departments", d] => id(d).map_or(Route::Unknown, Route::DepartmentView),
            ["agents"] => Route::Agents,
            ["groups"] => Route::Groups,
            ["requesters"] => Route::Requesters,
            ["requesters", r] => id(r).map_or(Route::Unknown, Route::RequesterView),
            ["tickets"] => Route::TicketList,
            ["tickets", "filter"] => Route::TicketFilter,
            ["tickets", t] => id(t).map_or(Route::Unknown, Route::TicketView),
            ["tickets", t, "conversations"] => id(t).map_or(Route::Unknown, Route::Conversations),
            ["tickets", t, "time_entries"] => id(t).map_or(Route::Unknown, Route::TimeEntries),
            _ => Route::Unknown,
        }
    }

    /// The endpoint key used by stats and fault rules.
    pub(crate) fn endpoint(self) -> &'static str {
        match self {
            Route::Workspaces => "workspaces",
            Route::Departments => "departments",
            Route::DepartmentView(_) => "department_view",
            Route::Agents => "agents",
            Route::Groups => "groups",
            Route::Requesters => "requesters",
            Route::RequesterView(_) => "requester_view",
            Route::TicketList => "tickets_list",
            Route::TicketFilter => "tickets_filter",
            Route::TicketView(_) => "ticket_view",
            Route::Conversations(_) => "conversations",
            Route::TimeEntries(_) => "time_entries",
            Route::Unknown => "other",
        }
    }

    pub(crate) fn ticket_id(self) -> Option<i64> {
        match self {
            Route::TicketView(id) | Route::Conversations(id) | Route::TimeEntries(id) => Some(id),
            _ => None,
        }
    }
}

/// Decoded query parameters in request order (kept whole so `Link` can repeat them).
#[derive(Debug, Default)]
struct Query {
    pairs: Vec<(String, String)>,
}

impl Query {
    fn parse(raw: Option<&str>) -> Query {
        Query {
            pairs: raw
                .map(|q| {
                    url::form_urlencoded::parse(q.as_bytes())
                        .into_owned()
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    /// The first value of a parameter.
    fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// What a handler needs to know about the request besides the route.
struct RequestCtx {
    query: Query,
    /// `http://host:port`, for absolute `Link` URLs.
    origin: String,
    path: String,
    /// The data's current time (for the default 30-day window).
    clock: DateTime<Utc>,
    /// Child lists (conversations, time entries) newest first ([`Mutation::NewestFirst`]).
    newest_first: bool,
}

impl RequestCtx {
    /// `<origin/path?…&page=N…>; rel="next"`, with every other parameter repeated as sent.
    fn next_link(&self, next_page: u32) -> String {
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        let mut saw_page = false;
        for (k, v) in &self.query.pairs {
            if k == "page" {
                if !saw_page {
                    query.append_pair("page", &next_page.to_string());
                    saw_page = true;
                }
            } else {
                query.append_pair(k, v);
            }
        }
        if !saw_page {
            query.append_pair("page", &next_page.to_string());
        }
        format!(
            "<{}{}?{}>; rel=\"next\"",
            self.origin,
            self.path,
            query.finish()
        )
    }
}

/// A handler's result, before faults and rate limiting.
#[derive(Debug)]
struct Reply {
    status: StatusCode,
    body: Value,
    /// What the call costs if served as is (failed calls cost 1).
    credits: u32,
    /// The `Link` header value, when another page exists.
    next_link: Option<String>,
    /// For `GET /tickets`: the page number served.
    listing_page: Option<u32>,
    /// What the hostile layer changes in the response besides body and `Link`.
    hostile: Box<Served>,
}

impl Reply {
    fn ok(body: Value, credits: u32) -> Reply {
        Reply {
            status: StatusCode::OK,
            body,
            credits,
            next_link: None,
            listing_page: None,
            hostile: Box::default(),
        }
    }

    /// `{"code","message"}` errors (§4), charged one credit.
    fn error(status: StatusCode, code: &str, message: &str) -> Reply {
        Reply {
            status,
            body: json!({"code": code, "message": message}),
            credits: 1,
            next_link: None,
            listing_page: None,
            hostile: Box::default(),
        }
    }

    fn not_found(what: &str) -> Reply {
        Reply::error(
            StatusCode::NOT_FOUND,
            "not_found",
            &format!("{what} does not exist"),
        )
    }

    /// The 400 validation shape (§4), charged one credit.
    fn invalid(errors: Vec<FieldError>) -> Reply {
        let errors: Vec<Value> = errors
            .into_iter()
            .map(|e| json!({"field": e.field, "message": e.message, "code": "invalid_value"}))
            .collect();
        Reply {
            status: StatusCode::BAD_REQUEST,
            body: json!({"description": "Validation failed", "errors": errors}),
            credits: 1,
            next_link: None,
            listing_page: None,
            hostile: Box::default(),
        }
    }
}

#[derive(Debug)]
struct FieldError {
    field: &'static str,
    message: String,
}

fn invalid(field: &'static str, message: impl Into<String>) -> FieldError {
    FieldError {
        field,
        message: message.into(),
    }
}

#[derive(Debug, Clone, Copy)]
struct Paging {
    page: u32,
    per_page: u32,
}

fn parse_paging(q: &Query, errors: &mut Vec<FieldError>) -> Paging {
    let mut paging = Paging {
        page: 1,
        per_page: DEFAULT_PER_PAGE,
    };
    if let Some(raw) = q.get("per_page") {
        match raw.parse::<u32>() {
            Ok(n) if (1..=MAX_PER_PAGE).contains(&n) => paging.per_page = n,
            Ok(0) => errors.push(invalid("per_page", "Must be greater than or equal to 1")),
            Ok(_) => errors.push(invalid(
                "per_page",
                format!("Must be less than or equal to {MAX_PER_PAGE}"),
            )),
            Err(_) => errors.push(invalid("per_page", "It should be a/an Positive Integer")),
        }
    }
    if let Some(raw) = q.get("page") {
        match raw.parse::<u32>() {
            Ok(n) if n >= 1 => paging.page = n,
            _ => errors.push(invalid("page", "It should be a/an Positive Integer")),
        }
    }
    paging
}

/// One page of `items` and whether another page follows.
fn paginate<T>(items: &[T], paging: Paging) -> (&[T], bool) {
    let per_page = paging.per_page as usize;
    let start = (paging.page as usize - 1).saturating_mul(per_page);
    if start >= items.len() {
        return (&[], false);
    }
    let end = start.saturating_add(per_page).min(items.len());
    (&items[start..end], end < items.len())
}

/// A paged list response `{"<envelope>": [...]}` with its `Link`.
fn list_reply<T>(
    envelope: &str,
    items: &[T],
    paging: Paging,
    ctx: &RequestCtx,
    credits: u32,
    render: impl Fn(&T) -> Value,
) -> Reply {
    let (page, more) = paginate(items, paging);
    let rows: Vec<Value> = page.iter().map(render).collect();
    let mut reply = Reply::ok(json!({ envelope: rows }), credits);
    if more {
        reply.next_link = Some(ctx.next_link(paging.page + 1));
    }
    reply
}

fn parse_embeds(raw: Option<&str>, allowed: &[&str], errors: &mut Vec<FieldError>) -> Embeds {
    let mut embeds = Embeds::default();
    let Some(raw) = raw else {
        return embeds;
    };
    for name in raw.split(',').map(str::trim) {
        let slot = match name {
            _ if !allowed.contains(&name) => None,
            "stats" => Some(&mut embeds.stats),
            "requester" => Some(&mut embeds.requester),
            "requested_for" => Some(&mut embeds.requested_for),
            "tags" => Some(&mut embeds.tags),
            "department" => Some(&mut embeds.department),
            "conversations" => Some(&mut embeds.conversations),
            _ => None,
        };
        match slot {
            Some(flag) => *flag = true,
            None => {
                errors.push(invalid(
                    "include",
                    format!("It should be one of these values: '{}'", allowed.join(",")),
                ));
                break;
            }
        }
    }
    embeds
}

/// Dispatches an authenticated GET.
fn serve(truth: &GroundTruth, route: Route, ctx: &RequestCtx) -> Reply {
    match route {
        // An account without the feature does not know the path (§18: 404).
        Route::Workspaces if truth.workspaces.is_empty() => {
            Reply::not_found(&format!("the resource {}", ctx.path))
        }
        Route::Workspaces => simple_list(ctx, "workspaces", &truth.workspaces, render::workspace),
        // Departments are specific to each workspace (client), scoped like the ticket list.
        Route::Departments => match workspace_scope(truth, ctx.query.get("workspace_id")) {
            Ok(scope) => {
                let rows: Vec<&Department> = truth
                    .departments
                    .iter()
                    .filter(|d| scope.as_ref().is_none_or(|s| s.contains(&d.workspace_id)))
                    .collect();
                simple_list(ctx, "departments", &rows, |d| render::department(d))
            }
            Err(e) => Reply::invalid(vec![e]),
        },
        Route::DepartmentView(id) => match truth.department(id) {
            Some(d) => Reply::ok(json!({"department": render::department(d)}), 1),
            None => Reply::not_found(&format!("department {id}")),
        },
        Route::Agents => simple_list(ctx, "agents", &truth.agents, render::agent),
        Route::Groups => simple_list(ctx, "groups", &truth.groups, render::group),
        Route::Requesters => requesters(truth, ctx),
        // Agents are not requesters here, as in the list without `include_agents`.
        Route::RequesterView(id) => match truth.requesters.iter().find(|r| r.id == id) {
            Some(r) => Reply::ok(json!({"requester": render::requester(r, truth)}), 1),
            None => Reply::not_found(&format!("requester {id}")),
        },
        Route::TicketList => list_tickets(truth, ctx),
        Route::TicketFilter => filter_tickets(truth, ctx),
        Route::TicketView(id) => view_ticket(truth, id, ctx),
        Route::Conversations(id) => match live_ticket(truth, id) {
            Ok(t) => simple_list(
                ctx,
                "conversations",
                &ordered(&t.conversations, ctx.newest_first),
                |c| render::conversation(c),
            ),
            Err(reply) => reply,
        },
        Route::TimeEntries(id) => match live_ticket(truth, id) {
            Ok(t) => simple_list(
                ctx,
                "time_entries",
                &ordered(&t.time_entries, ctx.newest_first),
                |e| render::time_entry(e, t.workspace_id),
            ),
            Err(reply) => reply,
        },
        Route::Unknown => Reply::not_found(&format!("the resource {}", ctx.path)),
    }
}

/// A child list as served: oldest first (as created), or newest first.
fn ordered<T>(items: &[T], newest_first: bool) -> Vec<&T> {
    let mut rows: Vec<&T> = items.iter().collect();
    if newest_first {
        rows.reverse();
    }
    rows
}

/// Applies the server's misbehaviours (see [`Quirks`]) to a reply its handler built.
fn misbehave(quirks: &Quirks, route: Route, ctx: &RequestCtx, reply: &mut Reply) {
    match route {
        Route::Departments | Route::DepartmentView(_) => quirks.departments(&mut reply.body),
        Route::TicketView(id) => quirks.ticket_view(id, &mut reply.body),
        _ => {}
    }
    if reply.status != StatusCode::OK {
        return;
    }
    let page = ctx
        .query
        .get("page")
        .and_then(|p| p.parse::<u32>().ok())
        .unwrap_or(1);
    let endpoint = route.endpoint();
    if quirks
        .link_loop
        .as_ref()
        .is_some_and(|q| q.hits(endpoint, page))
    {
        reply.next_link = Some(ctx.next_link(page));
    }
    if quirks
        .empty_page_with_next
        .as_ref()
        .is_some_and(|q| q.hits(endpoint, page))
    {
        if let Some(Value::Array(rows)) = reply
            .body
            .as_object_mut()
            .and_then(|o| o.values_mut().next())
        {
            rows.clear();
        }
        reply.next_link = Some(ctx.next_link(page + 1));
    }
}

/// A paged list with no parameters beyond `page`/`per_page`.
fn simple_list<T>(
    ctx: &RequestCtx,
    envelope: &str,
    items: &[T],
    render: impl Fn(&T) -> Value,
) -> Reply {
    let mut errors = Vec::new();
    let paging = parse_paging(&ctx.query, &mut errors);
    if !errors.is_empty() {
        return Reply::invalid(errors);
    }
    list_reply(envelope, items, paging, ctx, 1, render)
}

/// `GET /requesters`; agents are listed only with `include_agents=true` (§12).
fn requesters(truth: &GroundTruth, ctx: &RequestCtx) -> Reply {
    let mut errors = Vec::new();
    let paging = parse_paging(&ctx.query, &mut errors);
    if !errors.is_empty() {
        return Reply::invalid(errors);
    }
    let mut rows: Vec<Value> = truth
        .requesters
        .iter()
        .map(|r| render::requester(r, truth))
        .collect();
    if ctx.query.get("include_agents") == Some("true") {
        rows.extend(truth.agents.iter().map(render::agent_as_requester));
    }
    list_reply("requesters", &rows, paging, ctx, 1, Value::clone)
}

/// The workspaces a listing with `workspace_id` covers (§2, §18); `None`: every workspace.
/// Without the parameter, the primary workspace only (an account without the feature has just
/// that one). `0` is every workspace (FreshservicePS's "all"; the filter doc's `1` is disputed
/// and is no workspace here, whose ids start at 2); otherwise comma-separated ids, each of which
/// must exist (400 otherwise).
fn workspace_scope(truth: &GroundTruth, raw: Option<&str>) -> Result<Option<Vec<i64>>, FieldError> {
    let primary = truth.primary_workspace();
    let Some(raw) = raw else {
        return Ok(Some(vec![primary]));
    };
    let known = |id: i64| id == primary || truth.workspaces.iter().any(|w| w.id == id);
    let mut ids = Vec::new();
    for part in raw.split(',').map(str::trim) {
        match part.parse::<i64>() {
            Ok(0) => return Ok(None),
            Ok(id) if known(id) => ids.push(id),
            _ => {
                return Err(invalid(
                    "workspace_id",
                    format!("There is no workspace with id {part}"),
                ))
            }
        }
    }
    Ok(Some(ids))
}

/// A ticket that child endpoints may serve: exists and is not deleted.
fn live_ticket(truth: &GroundTruth, id: i64) -> Result<&Ticket, Reply> {
    match truth.ticket(id) {
        Some(t) if !t.deleted => Ok(t),
        _ => Err(Reply::not_found(&format!("ticket {id}"))),
    }
}

fn view_ticket(truth: &GroundTruth, id: i64, ctx: &RequestCtx) -> Reply {
    let mut errors = Vec::new();
    let embeds = parse_embeds(ctx.query.get("include"), VIEW_EMBEDS, &mut errors);
    if !errors.is_empty() {
        return Reply::invalid(errors);
    }
    match live_ticket(truth, id) {
        Ok(t) => Reply::ok(
            json!({"ticket": render::ticket(t, truth, embeds, Shape::View)}),
            1 + embeds.count(),
        ),
        Err(reply) => reply,
    }
}

/// Which tickets a listing shows besides the other filters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Visibility {
    /// Neither deleted nor spam.
    Normal,
    Deleted,
    Spam,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OrderBy {
    CreatedAt,
    UpdatedAt,
}

/// `GET /tickets` (§5).
fn list_tickets(truth: &GroundTruth, ctx: &RequestCtx) -> Reply {
    let q = &ctx.query;
    let mut errors = Vec::new();
    let paging = parse_paging(q, &mut errors);
    let embeds = parse_embeds(q.get("include"), LIST_EMBEDS, &mut errors);
    let visibility = match q.get("filter") {
        None => Visibility::Normal,
        Some("deleted") => Visibility::Deleted,
        Some("spam") => Visibility::Spam,
        Some(_) => {
            errors.push(invalid(
                "filter",
                "It should be one of these values: 'deleted,spam'",
            ));
            Visibility::Normal
        }
    };
    let since = match q.get("updated_since").map(DateTime::parse_from_rfc3339) {
        None => None,
        Some(Ok(at)) => Some(at.with_timezone(&Utc)),
        Some(Err(_)) => {
            errors.push(invalid(
                "updated_since",
                "It should be in the 'YYYY-MM-DDTHH:MM:SSZ' format",
            ));
            None
        }
    };
    let order_by = match q.get("order_by") {
        None | Some("created_at") => OrderBy::CreatedAt,
        Some("updated_at") => OrderBy::UpdatedAt,
        Some(_) => {
            errors.push(invalid(
                "order_by",
                "It should be one of these values: 'created_at,updated_at'",
            ));
            OrderBy::CreatedAt
        }
    };
    let descending = match q.get("order_type") {
        None | Some("desc") => true,
        Some("asc") => false,
        Some(_) => {
            errors.push(invalid(
                "order_type",
                "It should be one of these values: 'asc,desc'",
            ));
            true
        }
    };
    let scope = match workspace_scope(truth, q.get("workspace_id")) {
        Ok(scope) => scope,
        Err(e) => {
            errors.push(e);
            None
        }
    };
    let requester_id = match q.get("requester_id").map(str::parse::<i64>) {
        None => None,
        Some(Ok(id)) => Some(id),
        Some(Err(_)) => {
            errors.push(invalid(
                "requester_id",
                "It should be a/an Positive Integer",
            ));
            None
        }
    };
    if !errors.is_empty() {
        return Reply::invalid(errors);
    }
    // `email` filters by the requester's address (requester or agent); unknown → no rows.
    let email_user = q.get("email").map(|email| {
        let email = email.to_lowercase();
        truth
            .requesters
            .iter()
            .find(|r| r.primary_email.to_lowercase() == email)
            .map(|r| r.id)
            .or_else(|| {
                truth
                    .agents
                    .iter()
                    .find(|a| a.email.to_lowercase() == email)
                    .map(|a| a.id)
            })
    });
    let ticket_type = q.get("type");
    let created_cutoff = ctx.clock - chrono::Duration::days(DEFAULT_WINDOW_DAYS);

    let mut rows: Vec<&Ticket> = truth
        .tickets
        .iter()
        .filter(|t| match visibility {
            Visibility::Normal => !t.deleted && !t.spam,
            Visibility::Deleted => t.deleted,
            Visibility::Spam => t.spam,
        })
        .filter(|t| match since {
            Some(since) => t.updated_at >= since,
            None => t.created_at >= created_cutoff,
        })
        .filter(|t| scope.as_ref().is_none_or(|s| s.contains(&t.workspace_id)))
        .filter(|t| requester_id.is_none_or(|id| t.requester_id == id))
        .filter(|t| email_user.is_none_or(|user| Some(t.requester_id) == user))
        .filter(|t| ticket_type.is_none_or(|ty| t.ticket_type == ty))
        .collect();
    let key = |t: &Ticket| match order_by {
        OrderBy::CreatedAt => (t.created_at, t.id),
        OrderBy::UpdatedAt => (t.updated_at, t.id),
    };
    rows.sort_by_key(|t| key(t));
    if descending {
        rows.reverse();
    }

    let credits = 1 + 2 * embeds.count();
    let mut reply = list_reply("tickets", &rows, paging, ctx, credits, |t| {
        render::ticket(t, truth, embeds, Shape::ListRow)
    });
    reply.listing_page = Some(paging.page);
    reply
}

/// `GET /tickets/filter` (§6): tickets matching `query` (deleted and spam excluded), scoped by
/// `workspace_id` like the listing, newest first, `{"tickets": [...], "total": N}` where `total`
/// counts every match. Pages of 30 (`per_page` up to 100 is honoured here, as production
/// clients assume; whether the real API does is open); no `Link` header: clients page until an
/// empty page or `total`. Rows are list rows without embeds. One credit.
fn filter_tickets(truth: &GroundTruth, ctx: &RequestCtx) -> Reply {
    let q = &ctx.query;
    let mut errors = Vec::new();
    let paging = parse_paging(q, &mut errors);
    let expr = match q.get("query").map(super::filter::parse) {
        None => {
            errors.push(invalid(
                "query",
                "It should be a filter query in double quotes",
            ));
            None
        }
        Some(Ok(expr)) => Some(expr),
        Some(Err(message)) => {
            errors.push(invalid("query", message));
            None
        }
    };
    let scope = match workspace_scope(truth, q.get("workspace_id")) {
        Ok(scope) => scope,
        Err(e) => {
            errors.push(e);
            None
        }
    };
    let Some(expr) = expr.filter(|_| errors.is_empty()) else {
        return Reply::invalid(errors);
    };
    let mut rows: Vec<&Ticket> = truth
        .tickets
        .iter()
        .filter(|t| !t.deleted && !t.spam)
        .filter(|t| scope.as_ref().is_none_or(|s| s.contains(&t.workspace_id)))
        .filter(|t| expr.matches(t))
        .collect();
    rows.sort_by_key(|t| std::cmp::Reverse((t.created_at, t.id)));
    let (page, _) = paginate(&rows, paging);
    let tickets: Vec<Value> = page
        .iter()
        .map(|t| render::ticket(t, truth, Embeds::default(), Shape::ListRow))
        .collect();
    Reply::ok(json!({"tickets": tickets, "total": rows.len()}), 1)
}

/// Turns an admitted reply (and its fault, if any) into the HTTP response; returns the status
/// for the stats.
fn build(reply: &Reply, fault: Option<&FaultAction>, quota: Quota) -> (Response, u16) {
    let (response, status) = build_plain(reply, fault, quota);
    (rewire(response, &reply.hostile.wire), status)
}

/// The hostile layer's header changes (extra `Link` lines, rate-limit headers dropped).
fn rewire(mut response: Response, wire: &WireChanges) -> Response {
    let headers = response.headers_mut();
    for link in &wire.extra_links {
        if let Ok(value) = HeaderValue::try_from(link.as_str()) {
            headers.append(header::LINK, value);
        }
    }
    if wire.drop_rate_headers {
        headers.remove(X_TOTAL);
        headers.remove(X_REMAINING);
        headers.remove(X_USED);
    }
    response
}

fn build_plain(reply: &Reply, fault: Option<&FaultAction>, quota: Quota) -> (Response, u16) {
    let json_bytes = || {
        let body = reply.body.to_string();
        if reply.hostile.invalid_utf8() {
            Bytes::from(hostile::corrupt_utf8(body.as_bytes()))
        } else {
            Bytes::from(body)
        }
    };
    let with_link = |mut response: Response| {
        if let Some(link) = &reply.next_link {
            set_header(&mut response, header::LINK, link.clone());
        }
        response
    };
    match fault {
        None | Some(FaultAction::Slow(_)) => {
            let response = respond(reply.status, JSON_TYPE, Body::from(json_bytes()), quota);
            (with_link(response), reply.status.as_u16())
        }
        Some(&FaultAction::Status(code)) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let (content_type, body) = fault_body(status);
            (
                respond(status, content_type, Body::from(body), quota),
                status.as_u16(),
            )
        }
        Some(FaultAction::TruncatedJson) => {
            let full = json_bytes();
            let cut = full.slice(..full.len() / 2);
            let response = respond(reply.status, JSON_TYPE, Body::from(cut), quota);
            (with_link(response), reply.status.as_u16())
        }
        Some(FaultAction::DropConnection) => {
            let full = json_bytes();
            let total = full.len();
            let half = full.slice(..total / 2);
            // Send the first half, give hyper a moment to flush headers and that half, then fail
            // the body: hyper aborts the connection short of the promised Content-Length.
            let first = futures::stream::once(async move { Ok::<Bytes, std::io::Error>(half) });
            let failure = futures::stream::once(async {
                tokio::time::sleep(Duration::from_millis(20)).await;
                Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionAborted,
                    "simulated dropped connection",
                ))
            });
            let body = Body::from_stream(futures::StreamExt::chain(first, failure));
            let mut response = respond(reply.status, JSON_TYPE, body, quota);
            set_header(&mut response, header::CONTENT_LENGTH, total.to_string());
            (with_link(response), reply.status.as_u16())
        }
        Some(FaultAction::NotJson) => {
            let html = "<!DOCTYPE html><html><head><title>Service Desk</title></head>\
                        <body><h1>We'll be right back</h1><p>Scheduled maintenance.</p></body></html>";
            (
                respond(StatusCode::OK, HTML_TYPE, Body::from(html), quota),
                200,
            )
        }
        Some(FaultAction::EmptyBody) => (
            respond(StatusCode::OK, JSON_TYPE, Body::empty(), quota),
            200,
        ),
        Some(&FaultAction::AbsurdHeaders {
            total,
            remaining,
            used,
        }) => {
            let mut response = respond(reply.status, JSON_TYPE, Body::from(json_bytes()), quota);
            set_header(&mut response, X_TOTAL, total.to_owned());
            set_header(&mut response, X_REMAINING, remaining.to_owned());
            set_header(&mut response, X_USED, used.to_owned());
            (with_link(response), reply.status.as_u16())
        }
        Some(&FaultAction::HugeBody {
            bytes,
            content_length,
        }) => {
            let (length, stream) = huge_json(bytes);
            let mut response = respond(StatusCode::OK, JSON_TYPE, Body::from_stream(stream), quota);
            if content_length {
                set_header(&mut response, header::CONTENT_LENGTH, length.to_string());
            }
            (response, 200)
        }
        // Decided in `Shared::charge`; never reach the builder.
        Some(FaultAction::RateLimited { .. } | FaultAction::RateLimitedRaw { .. }) => {
            let response = respond(reply.status, JSON_TYPE, Body::from(json_bytes()), quota);
            (response, reply.status.as_u16())
        }
    }
}

/// A valid JSON object (`{"pad":"   …"}`) of `bytes` bytes (at least 10), as a stream of
/// chunks of at most 64 KiB taken from one static buffer: a body of gigabytes costs no memory.
/// Returns the exact length with the stream.
fn huge_json(
    bytes: u64,
) -> (
    u64,
    impl futures::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static,
) {
    const HEAD: &[u8] = b"{\"pad\":\"";
    const TAIL: &[u8] = b"\"}";
    static PAD: [u8; 64 * 1024] = [b' '; 64 * 1024];
    let frame = (HEAD.len() + TAIL.len()) as u64;
    let fill = bytes.saturating_sub(frame);
    let middle = futures::stream::unfold(fill, |left| async move {
        let n = left.min(PAD.len() as u64);
        (n > 0).then(|| (Ok(Bytes::from_static(&PAD[..n as usize])), left - n))
    });
    let stream = futures::StreamExt::chain(
        futures::StreamExt::chain(
            futures::stream::once(async { Ok(Bytes::from_static(HEAD)) }),
            middle,
        ),
        futures::stream::once(async { Ok(Bytes::from_static(TAIL)) }),
    );
    (frame + fill, stream)
}

/// The body of a scripted error status: an edge proxy's HTML page for gateway errors, the API's
/// JSON error shape otherwise.
fn fault_body(status: StatusCode) -> (&'static str, String) {
    let reason = status.canonical_reason().unwrap_or("Error");
    match status.as_u16() {
        502..=504 => (
            HTML_TYPE,
            format!(
                "<html><head><title>{code} {reason}</title></head><body><center><h1>{code} {reason}</h1></center></body></html>",
                code = status.as_u16()
            ),
        ),
        code => {
            let kind = match code {
                401 => "invalid_credentials",
                403 => "access_denied",
                404 => "not_found",
                429 => "rate_limit_exceeded",
                400..=499 => "invalid_value",
                _ => "internal_error",
            };
            let body = json!({"code": kind, "message": format!("simulated {code} {reason}")});
            (JSON_TYPE, body.to_string())
        }
    }
}

/// A response with status, content type, body and the three rate-limit headers.
fn respond(status: StatusCode, content_type: &'static str, body: Body, quota: Quota) -> Response {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(X_TOTAL, HeaderValue::from(quota.total));
    headers.insert(X_REMAINING, HeaderValue::from(quota.remaining));
    headers.insert(X_USED, HeaderValue::from(quota.used));
    response
}

/// Sets a header built from our own ASCII (numbers, dates, percent-encoded URLs). A value
/// that is not a valid header (only possible with a garbage `Host`) is left out rather than
/// failing the whole response.
fn set_header(response: &mut Response, name: HeaderName, value: String) {
    if let Ok(value) = HeaderValue::try_from(value) {
        response.headers_mut().insert(name, value);
    }
}

#[cfg(test)]
mod tests;
