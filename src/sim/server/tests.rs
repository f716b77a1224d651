//! Pipeline tests: most call the axum handler directly (no sockets, fast); a few go through a
//! real listener to check what only a TCP peer can see (absolute `Link`, dropped connections).

use std::net::{Ipv4Addr, SocketAddr};

use axum::body::to_bytes;
use chrono::TimeZone;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;
use crate::sim::{FaultRule, Plan, Simulator};

const KEY: &str = "test-key";

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 6, 1, 12, 0, 0).unwrap()
}

fn config() -> SimConfig {
    SimConfig {
        api_key: KEY.to_owned(),
        now: now(),
        minute_secs: 3600.0,
        ..SimConfig::default()
    }
}

fn basic(user: &str, password: &str) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {b64}")
}

struct Harness {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Resp {
    status: u16,
    headers: HeaderMap,
    body: Bytes,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    }

    fn used(&self) -> u32 {
        self.header("x-ratelimit-used-currentrequest")
            .unwrap()
            .parse()
            .unwrap()
    }

    fn ids(&self, envelope: &str) -> Vec<i64> {
        self.json()[envelope]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["id"].as_i64().unwrap())
            .collect()
    }
}

impl Harness {
    fn new(config: SimConfig) -> Harness {
        let window = Duration::from_secs_f64(config.minute_secs);
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, 9));
        Harness {
            shared: Arc::new(Shared::new(config, addr, window)),
        }
    }

    async fn get(&self, path: &str) -> Resp {
        self.send(Method::GET, path, Some(&basic(KEY, "X"))).await
    }

    async fn send(&self, method: Method, path: &str, auth: Option<&str>) -> Resp {
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, "sim.test:8080");
        if let Some(auth) = auth {
            req = req.header(header::AUTHORIZATION, auth);
        }
        let response = handle(
            State(Arc::clone(&self.shared)),
            req.body(Body::empty()).unwrap(),
        )
        .await;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = to_bytes(response.into_body(), usize::MAX).await.unwrap();
        Resp {
            status,
            headers,
            body,
        }
    }

    fn truth(&self) -> GroundTruth {
        self.shared.ground_truth()
    }
}

/// `updated_since` that covers every generated ticket.
const ALL: &str = "updated_since=2020-01-01T00:00:00Z";

#[tokio::test]
async fn auth_requires_the_key_as_username() {
    let h = Harness::new(config());
    let missing = h.send(Method::GET, "/api/v2/agents", None).await;
    assert_eq!(missing.status, 401);
    assert_eq!(missing.json()["code"], "invalid_credentials");
    assert_eq!(missing.used(), 1, "failed calls are charged");
    assert_eq!(missing.header("x-ratelimit-total").as_deref(), Some("200"));

    let wrong = h
        .send(Method::GET, "/api/v2/agents", Some(&basic("nope", "X")))
        .await;
    assert_eq!(wrong.status, 401);
    let garbage = h
        .send(Method::GET, "/api/v2/agents", Some("Basic !!!"))
        .await;
    assert_eq!(garbage.status, 401);
    let bearer = h
        .send(Method::GET, "/api/v2/agents", Some("Bearer test-key"))
        .await;
    assert_eq!(bearer.status, 401);

    let any_password = h
        .send(Method::GET, "/api/v2/agents", Some(&basic(KEY, "whatever")))
        .await;
    assert_eq!(any_password.status, 200);
    let lower = format!("basic {}", &basic(KEY, "X")[6..]);
    assert_eq!(
        h.send(Method::GET, "/api/v2/agents", Some(&lower))
            .await
            .status,
        200
    );

    let stats = h.shared.stats();
    assert_eq!(stats.status(401), 4);
    assert_eq!(stats.credits_used, 6);
}

#[tokio::test]
async fn envelopes_and_unknown_paths() {
    let h = Harness::new(config());
    let t = h.truth();
    assert_eq!(
        h.get("/api/v2/departments").await.ids("departments").len(),
        12
    );
    assert_eq!(h.get("/api/v2/agents").await.ids("agents").len(), 6);
    assert_eq!(
        h.get("/api/v2/requesters?per_page=100")
            .await
            .ids("requesters")
            .len(),
        30
    );
    assert_eq!(
        h.get("/api/v2/requesters?per_page=100&include_agents=true")
            .await
            .ids("requesters")
            .len(),
        36
    );
    let id = t.closed_tickets().next().unwrap().id;
    let view = h.get(&format!("/api/v2/tickets/{id}")).await;
    assert_eq!(view.json()["ticket"]["id"], json!(id));

    let unknown = h.get("/api/v2/problems").await;
    assert_eq!(unknown.status, 404);
    assert!(unknown.json()["code"].is_string());
    assert_eq!(h.get("/api/v2/tickets/abc").await.status, 404);
    assert_eq!(h.get("/nothing").await.status, 404);
    let post = h
        .send(Method::POST, "/api/v2/tickets", Some(&basic(KEY, "X")))
        .await;
    assert_eq!(post.status, 405);

    let stats = h.shared.stats();
    assert_eq!(stats.endpoint("other"), 3);
    assert_eq!(stats.endpoint("tickets_list"), 1);
    assert_eq!(stats.endpoint("ticket_view"), 1);
}

#[tokio::test]
async fn paging_and_absolute_link() {
    let h = Harness::new(config());
    let p1 = h.get(&format!("/api/v2/tickets?{ALL}&per_page=100")).await;
    assert_eq!(p1.status, 200);
    assert_eq!(p1.ids("tickets").len(), 100);
    let link = p1.header("link").expect("more pages");
    assert_eq!(
        link,
        "<http://sim.test:8080/api/v2/tickets?updated_since=2020-01-01T00%3A00%3A00Z&per_page=100&page=2>; rel=\"next\""
    );

    // Following the link verbatim (minus origin) gives page 2, whose page param is replaced.
    let p2 = h
        .get("/api/v2/tickets?updated_since=2020-01-01T00%3A00%3A00Z&per_page=100&page=2")
        .await;
    assert!(
        p2.header("link").is_none(),
        "200 visible tickets fit on two pages"
    );
    let visible = h
        .truth()
        .tickets
        .iter()
        .filter(|t| !t.deleted && !t.spam)
        .count();
    assert_eq!(100 + p2.ids("tickets").len(), visible);

    let mut all: Vec<i64> = p1.ids("tickets");
    all.extend(p2.ids("tickets"));
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), visible);

    // Default per_page is 30.
    let d = h.get(&format!("/api/v2/tickets?{ALL}")).await;
    assert_eq!(d.ids("tickets").len(), 30);
    assert!(d.header("link").unwrap().contains("page=2"));
    // Past the end: empty, no link.
    let past = h.get(&format!("/api/v2/tickets?{ALL}&page=99")).await;
    assert!(past.ids("tickets").is_empty());
    assert!(past.header("link").is_none());

    // Conversations page too.
    let big = h
        .truth()
        .tickets
        .iter()
        .find(|t| t.conversations.len() > 100)
        .unwrap()
        .clone();
    let c1 = h
        .get(&format!(
            "/api/v2/tickets/{}/conversations?per_page=100",
            big.id
        ))
        .await;
    assert_eq!(
        c1.ids("conversations"),
        big.conversations[..100]
            .iter()
            .map(|c| c.id)
            .collect::<Vec<_>>()
    );
    let next = c1.header("link").unwrap();
    assert!(next.contains(&format!(
        "/api/v2/tickets/{}/conversations?per_page=100&page=2",
        big.id
    )));
}

#[tokio::test]
async fn per_page_validation() {
    let h = Harness::new(config());
    for bad in ["101", "0", "abc", "", "-1"] {
        for path in ["/api/v2/tickets", "/api/v2/agents", "/api/v2/departments"] {
            let r = h.get(&format!("{path}?per_page={bad}")).await;
            assert_eq!(r.status, 400, "{path} per_page={bad}");
            let body = r.json();
            assert_eq!(body["description"], "Validation failed");
            assert_eq!(body["errors"][0]["field"], "per_page");
            assert_eq!(body["errors"][0]["code"], "invalid_value");
            assert_eq!(r.used(), 1);
        }
    }
    assert_eq!(h.get("/api/v2/agents?per_page=100").await.status, 200);
    assert_eq!(h.get("/api/v2/agents?page=0").await.status, 400);
}

#[tokio::test]
async fn updated_since_and_default_window() {
    let h = Harness::new(config());
    let truth = h.truth();
    let since = now() - chrono::Duration::days(60);
    let expected = truth
        .tickets
        .iter()
        .filter(|t| !t.deleted && !t.spam && t.updated_at >= since)
        .count();
    let r = h
        .get("/api/v2/tickets?updated_since=2025-04-02T12:00:00Z&per_page=100")
        .await;
    assert_eq!(r.ids("tickets").len(), expected.min(100));

    // An offset is accepted and means the same instant.
    let r2 = h
        .get("/api/v2/tickets?updated_since=2025-04-02T14:00:00%2B02:00&per_page=100")
        .await;
    assert_eq!(r.ids("tickets"), r2.ids("tickets"));

    // Inclusive: a ticket updated exactly at `since` is listed.
    let t = truth
        .tickets
        .iter()
        .find(|t| !t.deleted && !t.spam)
        .unwrap();
    let at = render::ts(t.updated_at);
    let r3 = h
        .get(&format!(
            "/api/v2/tickets?updated_since={at}&order_by=updated_at&order_type=asc"
        ))
        .await;
    assert!(r3.ids("tickets").contains(&t.id));

    for bad in ["yesterday", "2025-04-02", "2025-04-02T14:00:00"] {
        let r = h.get(&format!("/api/v2/tickets?updated_since={bad}")).await;
        assert_eq!(r.status, 400, "{bad}");
        assert_eq!(r.json()["errors"][0]["field"], "updated_since");
    }

    // Without updated_since: only tickets created in the last 30 days.
    let recent: Vec<i64> = {
        let cutoff = now() - chrono::Duration::days(30);
        let mut v: Vec<_> = truth
            .tickets
            .iter()
            .filter(|t| !t.deleted && !t.spam && t.created_at >= cutoff)
            .map(|t| t.id)
            .collect();
        v.reverse();
        v
    };
    assert!(!recent.is_empty());
    let d = h.get("/api/v2/tickets?per_page=100").await;
    assert_eq!(d.ids("tickets"), recent, "created_at desc by default");
}

#[tokio::test]
async fn ordering() {
    let h = Harness::new(config());
    let asc = h
        .get(&format!(
            "/api/v2/tickets?{ALL}&order_by=updated_at&order_type=asc&per_page=100"
        ))
        .await;
    let rows = asc.json()["tickets"].as_array().unwrap().clone();
    let stamps: Vec<&str> = rows
        .iter()
        .map(|t| t["updated_at"].as_str().unwrap())
        .collect();
    assert!(stamps.windows(2).all(|w| w[0] <= w[1]));
    let desc = h.get(&format!("/api/v2/tickets?{ALL}&per_page=100")).await;
    let ids = desc.ids("tickets");
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "ids follow created_at");
    assert_eq!(h.get("/api/v2/tickets?order_by=priority").await.status, 400);
    assert_eq!(h.get("/api/v2/tickets?order_type=up").await.status, 400);
}

#[tokio::test]
async fn deleted_and_spam_filters() {
    let h = Harness::new(config());
    let truth = h.truth();
    let deleted: Vec<i64> = truth
        .tickets
        .iter()
        .filter(|t| t.deleted)
        .map(|t| t.id)
        .collect();
    let spam: Vec<i64> = truth
        .tickets
        .iter()
        .filter(|t| t.spam)
        .map(|t| t.id)
        .collect();
    assert!(!deleted.is_empty() && !spam.is_empty());
    let d = h
        .get(&format!("/api/v2/tickets?{ALL}&filter=deleted"))
        .await;
    assert_eq!(d.ids("tickets"), deleted);
    let s = h.get(&format!("/api/v2/tickets?{ALL}&filter=spam")).await;
    assert_eq!(s.ids("tickets"), spam);
    let normal = h
        .get(&format!("/api/v2/tickets?{ALL}&per_page=100&page=1"))
        .await;
    assert!(!normal
        .ids("tickets")
        .iter()
        .any(|id| deleted.contains(id) || spam.contains(id)));
    assert_eq!(h.get("/api/v2/tickets?filter=watching").await.status, 400);

    // Deleted tickets 404 on view and child endpoints; spam ones are still viewable.
    let id = deleted[0];
    for path in ["", "/conversations", "/time_entries"] {
        assert_eq!(
            h.get(&format!("/api/v2/tickets/{id}{path}")).await.status,
            404,
            "{path}"
        );
    }
    assert_eq!(
        h.get(&format!("/api/v2/tickets/{}", spam[0])).await.status,
        200
    );
    assert_eq!(
        h.get("/api/v2/tickets/999999/conversations").await.status,
        404
    );
}

#[tokio::test]
async fn include_credits_and_validation() {
    let h = Harness::new(config());
    let plain = h.get(&format!("/api/v2/tickets?{ALL}")).await;
    assert_eq!(plain.used(), 1);
    assert!(plain.json()["tickets"][0].get("stats").is_none());
    assert!(plain.json()["tickets"][0]["description_text"].is_string());

    let stats = h.get(&format!("/api/v2/tickets?{ALL}&include=stats")).await;
    assert_eq!(stats.used(), 3);
    let row = &stats.json()["tickets"][0];
    assert!(row["stats"].get("closed_at").is_some());

    let two = h
        .get(&format!("/api/v2/tickets?{ALL}&include=stats,requester"))
        .await;
    assert_eq!(two.used(), 5);
    let body = two.json();
    let requester = &body["tickets"][0]["requester"];
    for key in ["id", "name", "email", "mobile", "phone"] {
        assert!(requester.get(key).is_some(), "{key}");
    }

    let bad = h.get("/api/v2/tickets?include=conversations").await;
    assert_eq!(bad.status, 400);
    assert_eq!(bad.json()["errors"][0]["field"], "include");
    assert_eq!(bad.used(), 1);
    assert_eq!(
        h.get("/api/v2/tickets?include=stats,bogus").await.status,
        400
    );

    let truth = h.truth();
    let closed = truth.closed_tickets().next().unwrap();
    let view = h
        .get(&format!(
            "/api/v2/tickets/{}?include=stats,conversations",
            closed.id
        ))
        .await;
    assert_eq!(view.used(), 3);
    let v = view.json();
    assert_eq!(
        v["ticket"]["stats"]["closed_at"],
        json!(render::ts(closed.closed_at.unwrap()))
    );
    assert!(v["ticket"]["conversations"].as_array().unwrap().len() <= 10);
    assert_eq!(
        h.get(&format!("/api/v2/tickets/{}?include=assets", closed.id))
            .await
            .status,
        400
    );
}

#[tokio::test]
async fn requester_embed_works_for_agent_requesters() {
    let h = Harness::new(config());
    let truth = h.truth();
    let t = truth
        .tickets
        .iter()
        .find(|t| !t.deleted && truth.agents.iter().any(|a| a.id == t.requester_id))
        .unwrap();
    let r = h
        .get(&format!("/api/v2/tickets/{}?include=requester", t.id))
        .await;
    let agent = truth
        .agents
        .iter()
        .find(|a| a.id == t.requester_id)
        .unwrap();
    assert_eq!(r.json()["ticket"]["requester"]["email"], json!(agent.email));
}

#[tokio::test]
async fn rate_limit_rejects_with_headers_and_retry_after() {
    let h = Harness::new(config());
    h.shared
        .limiter
        .lock()
        .unwrap()
        .set_budget(Duration::ZERO, 5);
    let a = h.get(&format!("/api/v2/tickets?{ALL}&include=stats")).await; // 3
    assert_eq!(a.header("x-ratelimit-remaining").as_deref(), Some("2"));
    let b = h.get(&format!("/api/v2/tickets?{ALL}&include=stats")).await; // would be 6
    assert_eq!(b.status, 429);
    assert_eq!(b.json()["code"], "rate_limit_exceeded");
    assert_eq!(b.used(), 0);
    assert_eq!(b.header("x-ratelimit-total").as_deref(), Some("5"));
    assert_eq!(b.header("x-ratelimit-remaining").as_deref(), Some("2"));
    let secs: u64 = b.header("retry-after").unwrap().parse().unwrap();
    assert!((3590..=3600).contains(&secs), "{secs}");
    assert_eq!(h.get("/api/v2/agents").await.status, 200);
    assert_eq!(h.get("/api/v2/agents").await.status, 200);
    assert_eq!(h.get("/api/v2/agents").await.status, 429);

    let stats = h.shared.stats();
    assert_eq!(stats.rate_limited, 2);
    assert_eq!(stats.credits_used, 5);
    assert_eq!(stats.windows.len(), 1);
    assert_eq!(stats.windows[0].rejected_429, 2);
    assert_eq!(stats.windows[0].limit, 5);
    assert!(stats.max_window_credits() <= u64::from(stats.windows[0].limit));
}

#[tokio::test]
async fn retry_after_as_http_date() {
    let h = Harness::new(SimConfig {
        retry_after_http_date: true,
        ..config()
    });
    h.shared
        .limiter
        .lock()
        .unwrap()
        .set_budget(Duration::ZERO, 0);
    let r = h.get("/api/v2/agents").await;
    assert_eq!(r.status, 429);
    let date = httpdate::parse_http_date(&r.header("retry-after").unwrap()).unwrap();
    let wait = date.duration_since(SystemTime::now()).unwrap();
    assert!(
        wait > Duration::from_secs(3500) && wait <= Duration::from_secs(3601),
        "{wait:?}"
    );
}

#[tokio::test]
async fn list_tickets_sub_limit_counts_calls() {
    let h = Harness::new(SimConfig {
        plan: Plan::Starter,
        ..config()
    });
    for _ in 0..40 {
        assert_eq!(h.get("/api/v2/tickets").await.status, 200);
    }
    let r = h.get("/api/v2/tickets").await;
    assert_eq!(r.status, 429);
    assert_eq!(r.header("x-ratelimit-remaining").as_deref(), Some("60"));
    assert_eq!(h.get("/api/v2/agents").await.status, 200);
}

#[tokio::test]
async fn windows_reset_in_real_time() {
    let h = Harness::new(SimConfig {
        minute_secs: 0.3,
        ..config()
    });
    h.shared
        .limiter
        .lock()
        .unwrap()
        .set_budget(Duration::ZERO, 1);
    let first = h.get("/api/v2/agents").await;
    let second = h.get("/api/v2/agents").await;
    // Both may straddle a window boundary; at least the pair cannot both be rejected.
    assert!(first.status == 200 || second.status == 200);
    tokio::time::sleep(Duration::from_millis(650)).await;
    assert_eq!(h.get("/api/v2/agents").await.status, 200);
    let stats = h.shared.stats();
    assert!(stats.windows.len() >= 2);
    assert!(stats
        .windows
        .iter()
        .all(|w| w.credits_used <= u64::from(w.limit)));
}

#[tokio::test]
async fn unenforced_limits_never_reject() {
    let h = Harness::new(SimConfig {
        rate_limit: false,
        ..config()
    });
    h.shared
        .limiter
        .lock()
        .unwrap()
        .set_budget(Duration::ZERO, 1);
    for _ in 0..5 {
        let r = h.get("/api/v2/agents").await;
        assert_eq!(r.status, 200);
        assert_eq!(r.header("x-ratelimit-remaining").as_deref(), Some("1"));
    }
}

#[tokio::test]
async fn faults_shape_responses() {
    let h = Harness::new(config());
    let faults = &h.shared.faults;
    let id = h.truth().closed_tickets().next().unwrap().id;
    let conv = format!("/api/v2/tickets/{id}/conversations");

    faults.push(
        FaultRule::new(FaultAction::Status(503))
            .endpoint("conversations")
            .times(2),
    );
    for _ in 0..2 {
        let r = h.get(&conv).await;
        assert_eq!(r.status, 503);
        assert!(r.header("content-type").unwrap().starts_with("text/html"));
        assert_eq!(r.used(), 1);
    }
    assert_eq!(h.get(&conv).await.status, 200);

    faults.push(FaultRule::new(FaultAction::Status(500)));
    let r = h.get("/api/v2/agents").await;
    assert_eq!(
        (r.status, r.json()["code"].as_str()),
        (500, Some("internal_error"))
    );

    faults.push(FaultRule::new(FaultAction::TruncatedJson).endpoint("agents"));
    let r = h.get("/api/v2/agents").await;
    assert_eq!(r.status, 200);
    assert!(serde_json::from_slice::<Value>(&r.body).is_err());
    let full = h.get("/api/v2/agents").await;
    assert_eq!(r.body.len(), full.body.len() / 2);

    faults.push(FaultRule::new(FaultAction::NotJson));
    let r = h.get("/api/v2/agents").await;
    assert_eq!(r.status, 200);
    assert!(r.body.starts_with(b"<!DOCTYPE html>"));

    faults.push(FaultRule::new(FaultAction::EmptyBody));
    let r = h.get("/api/v2/agents").await;
    assert_eq!((r.status, r.body.len()), (200, 0));

    faults.push(
        FaultRule::new(FaultAction::RateLimited {
            retry_after_secs: 7,
        })
        .ticket(id),
    );
    let r = h.get(&format!("/api/v2/tickets/{id}/time_entries")).await;
    assert_eq!(r.status, 429);
    assert_eq!(r.header("retry-after").as_deref(), Some("7"));
    assert_eq!(r.used(), 0);

    faults.push(FaultRule::new(FaultAction::Slow(Duration::from_millis(
        150,
    ))));
    let started = Instant::now();
    assert_eq!(h.get("/api/v2/agents").await.status, 200);
    assert!(started.elapsed() >= Duration::from_millis(150));

    faults.push(
        FaultRule::new(FaultAction::Status(404))
            .endpoint("ticket_view")
            .ticket(id),
    );
    assert_eq!(h.get(&format!("/api/v2/tickets/{id}")).await.status, 404);
    assert_eq!(h.get(&format!("/api/v2/tickets/{id}")).await.status, 200);

    assert_eq!(faults.pending(), 0);
    assert_eq!(h.shared.stats().rate_limited, 1);
}

#[tokio::test]
async fn absurd_headers_and_huge_bodies_are_scripted() {
    let h = Harness::new(config());
    let faults = &h.shared.faults;
    faults.push(FaultRule::new(FaultAction::AbsurdHeaders {
        total: "0",
        remaining: "-5",
        used: "1e20",
    }));
    let r = h.get("/api/v2/agents").await;
    assert_eq!(r.status, 200);
    assert!(r.json()["agents"].is_array(), "the body is the normal one");
    assert_eq!(r.header("x-ratelimit-total").as_deref(), Some("0"));
    assert_eq!(r.header("x-ratelimit-remaining").as_deref(), Some("-5"));
    assert_eq!(
        r.header("x-ratelimit-used-currentrequest").as_deref(),
        Some("1e20")
    );

    faults.push(FaultRule::new(FaultAction::RateLimitedRaw {
        retry_after: "4294967295",
    }));
    let r = h.get("/api/v2/agents").await;
    assert_eq!(r.status, 429);
    assert_eq!(r.header("retry-after").as_deref(), Some("4294967295"));
    assert_eq!(r.used(), 0);

    for content_length in [true, false] {
        faults.push(FaultRule::new(FaultAction::HugeBody {
            bytes: 200_000,
            content_length,
        }));
        let r = h.get("/api/v2/agents").await;
        assert_eq!(r.status, 200);
        assert_eq!(r.body.len(), 200_000);
        assert!(r.json()["pad"].is_string());
        assert_eq!(
            r.header("content-length").is_some(),
            content_length,
            "{content_length}"
        );
    }
    assert_eq!(faults.pending(), 0);
}

#[tokio::test]
async fn faults_do_not_fire_on_unauthenticated_requests() {
    let h = Harness::new(config());
    h.shared
        .faults
        .push(FaultRule::new(FaultAction::Status(500)));
    assert_eq!(
        h.send(Method::GET, "/api/v2/agents", None).await.status,
        401
    );
    assert_eq!(h.get("/api/v2/agents").await.status, 500);
}

#[tokio::test]
async fn mutate_during_listing_fires_once_after_the_page() {
    let h = Harness::new(config());
    let truth = h.truth();
    let target = truth
        .tickets
        .iter()
        .find(|t| !t.deleted && !t.spam)
        .unwrap();
    h.shared.mutate_during_listing(1, target.id);
    let query = format!("/api/v2/tickets?{ALL}&order_by=updated_at&order_type=asc&per_page=100");
    let p1 = h.get(&query).await;
    let after = h.truth();
    let moved = after.ticket(target.id).unwrap();
    assert!(moved.updated_at > target.updated_at);
    assert_ne!(moved.subject, target.subject);
    // The page already served showed the old state.
    let served = p1.json()["tickets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == json!(target.id))
        .cloned();
    if let Some(served) = served {
        assert_eq!(served["subject"], json!(target.subject));
    }
    // The hook is spent.
    let again = h.get(&query).await;
    assert_eq!(again.status, 200);
    assert_eq!(
        h.truth().ticket(target.id).unwrap().updated_at,
        moved.updated_at
    );
}

#[tokio::test]
async fn stats_log_every_request() {
    let h = Harness::new(config());
    h.get("/api/v2/agents?per_page=5").await;
    h.get("/api/v2/tickets?include=stats").await;
    let stats = h.shared.stats();
    assert_eq!(stats.requests, 2);
    assert_eq!(stats.log[0].path_and_query, "/api/v2/agents?per_page=5");
    assert_eq!(stats.log[0].endpoint, "agents");
    assert_eq!(stats.log[1].credits, 3);
    assert_eq!(stats.log[1].method, "GET");
}

#[test]
fn route_parsing() {
    assert_eq!(Route::parse("/api/v2/tickets"), Route::TicketList);
    assert_eq!(Route::parse("/api/v2/tickets/"), Route::TicketList);
    assert_eq!(Route::parse("/api/v2/tickets/17"), Route::TicketView(17));
    assert_eq!(
        Route::parse("/api/v2/tickets/17/conversations"),
        Route::Conversations(17)
    );
    assert_eq!(
        Route::parse("/api/v2/tickets/17/time_entries"),
        Route::TimeEntries(17)
    );
    assert_eq!(Route::parse("/api/v2/tickets/filter"), Route::TicketFilter);
    assert_eq!(Route::parse("/api/v2/tickets/filtr"), Route::Unknown);
    assert_eq!(Route::parse("/api/v1/tickets"), Route::Unknown);
    assert_eq!(Route::TicketView(1).endpoint(), "ticket_view");
}

#[test]
fn link_keeps_params_and_replaces_page() {
    let ctx = RequestCtx {
        query: Query::parse(Some(
            "page=2&updated_since=2025-01-01T00%3A00%3A00Z&include=stats",
        )),
        origin: "http://h:1".into(),
        path: "/api/v2/tickets".into(),
        clock: now(),
        newest_first: false,
    };
    assert_eq!(
        ctx.next_link(3),
        "<http://h:1/api/v2/tickets?page=3&updated_since=2025-01-01T00%3A00%3A00Z&include=stats>; rel=\"next\""
    );
}

#[test]
fn pagination_math() {
    let items: Vec<u32> = (0..250).collect();
    let p = |page, per_page| paginate(&items, Paging { page, per_page });
    assert_eq!(p(1, 100).0.len(), 100);
    assert!(p(1, 100).1);
    assert_eq!(p(3, 100), (&items[200..], false));
    assert_eq!(p(4, 100).0.len(), 0);
    assert!(!p(1, 250).1);
    assert_eq!(p(u32::MAX, 100).0.len(), 0);
}

// ---- over a real socket ----

/// Sends a raw HTTP/1.1 request and returns everything the server wrote before closing.
async fn raw_get(base_url: &str, path: &str) -> (String, Vec<u8>) {
    let addr = base_url.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: {}\r\nConnection: close\r\n\r\n",
        basic(KEY, "X")
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    // A reset connection is an acceptable way for the server to end the stream.
    let _ = stream.read_to_end(&mut out).await;
    let split = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("headers");
    let head = String::from_utf8_lossy(&out[..split]).into_owned();
    (head, out[split + 4..].to_vec())
}

#[tokio::test]
async fn served_over_tcp_with_absolute_link_and_shutdown() {
    let sim = Simulator::start(config(), 0).await.unwrap();
    assert!(sim.base_url().starts_with("http://127.0.0.1:"));
    assert_eq!(sim.api_key(), KEY);
    let (head, body) = raw_get(
        &sim.base_url(),
        &format!("/api/v2/tickets?{ALL}&per_page=10"),
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let link = format!("link: <{}/api/v2/tickets?", sim.base_url());
    assert!(head.to_lowercase().contains(&link), "{head}");
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["tickets"].as_array().unwrap().len(), 10);
    assert_eq!(sim.stats().requests, 1);

    let clone = sim.clone();
    let base = sim.base_url();
    sim.shutdown().await;
    assert!(
        tokio::net::TcpStream::connect(base.trim_start_matches("http://"))
            .await
            .is_err()
    );
    drop(clone);
}

#[tokio::test]
async fn dropped_connection_sends_headers_then_cuts_the_body() {
    let sim = Simulator::start(config(), 0).await.unwrap();
    sim.faults()
        .push(FaultRule::new(FaultAction::DropConnection).endpoint("agents"));
    let (head, body) = raw_get(&sim.base_url(), "/api/v2/agents").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let promised: usize = head
        .lines()
        .find_map(|l| {
            l.to_lowercase()
                .strip_prefix("content-length: ")
                .map(str::to_owned)
        })
        .expect("content-length")
        .parse()
        .unwrap();
    assert!(body.len() < promised, "{} of {promised}", body.len());
    // The next request is served normally.
    let (head, _) = raw_get(&sim.base_url(), "/api/v2/agents").await;
    assert!(head.starts_with("HTTP/1.1 200"));
    sim.shutdown().await;
}

#[tokio::test]
async fn simulator_mutations() {
    let sim = Simulator::start(config(), 0).await.unwrap();
    let truth = sim.ground_truth();
    let closed = truth.closed_tickets().next().unwrap().id;
    sim.reopen_ticket(closed);
    assert_eq!(sim.ground_truth().ticket(closed).unwrap().status, 2);
    let new_id = sim.add_closed_ticket();
    let t = sim.ground_truth().ticket(new_id).unwrap().clone();
    assert!(t.updated_at >= Utc::now().trunc_subsecs(0) - chrono::Duration::seconds(5));
    // A new closed ticket appears in the default listing (created in the last 30 days).
    let (_, body) = raw_get(&sim.base_url(), "/api/v2/tickets?per_page=100").await;
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert!(v["tickets"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["id"] == json!(new_id)));
    sim.spam_ticket(new_id);
    let (_, body) = raw_get(&sim.base_url(), "/api/v2/tickets?per_page=100&filter=spam").await;
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert!(v["tickets"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["id"] == json!(new_id)));
    sim.delete_ticket(closed);
    let (head, _) = raw_get(
        &sim.base_url(),
        &format!("/api/v2/tickets/{closed}/time_entries"),
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 404"));
    let entry = sim.add_time_entry(new_id, 90, true, true);
    let t2 = sim.ground_truth().ticket(new_id).unwrap().clone();
    assert!(t2.updated_at > t.updated_at);
    assert_eq!(t2.time_entries.last().unwrap().id, entry);
    sim.set_credits_per_minute(1);
    let (head, _) = raw_get(&sim.base_url(), "/api/v2/agents").await;
    let (head2, _) = raw_get(&sim.base_url(), "/api/v2/agents").await;
    assert!(head.starts_with("HTTP/1.1 429") || head2.starts_with("HTTP/1.1 429"));
    sim.shutdown().await;
}

/// Every id of a ticket listing, all pages.
async fn all_ticket_ids(h: &Harness, query: &str) -> Vec<i64> {
    let mut ids = Vec::new();
    for page in 1.. {
        let r = h
            .get(&format!(
                "/api/v2/tickets?{ALL}&per_page=100&page={page}{query}"
            ))
            .await;
        assert_eq!(
            r.status,
            200,
            "{query}: {}",
            String::from_utf8_lossy(&r.body)
        );
        ids.extend(r.ids("tickets"));
        if r.header("link").is_none() {
            return ids;
        }
    }
    unreachable!()
}

#[tokio::test]
async fn an_account_without_workspaces_answers_404_and_lists_everything() {
    let h = Harness::new(config());
    assert_eq!(h.get("/api/v2/workspaces").await.status, 404);
    let truth = h.truth();
    assert!(truth.workspaces.is_empty());
    assert!(truth.tickets.iter().all(|t| t.workspace_id == 2));
    let live = truth
        .tickets
        .iter()
        .filter(|t| !t.deleted && !t.spam)
        .count();
    assert_eq!(all_ticket_ids(&h, "").await.len(), live);
}

/// The "all workspaces" sentinel is disputed (`0` or `1`); a listing per workspace id covers
/// every ticket exactly once whatever the sentinel means, while a listing without
/// `workspace_id` returns the primary workspace only.
#[tokio::test]
async fn listings_are_scoped_to_the_primary_workspace_unless_told() {
    let h = Harness::new(SimConfig {
        workspaces: 3,
        ..config()
    });
    let listed = h.get("/api/v2/workspaces?per_page=100").await;
    assert_eq!(listed.status, 200);
    let body = listed.json();
    let workspaces = body["workspaces"].as_array().unwrap();
    assert_eq!(listed.ids("workspaces"), vec![2, 3, 4]);
    let primaries: Vec<i64> = workspaces
        .iter()
        .filter(|w| w["primary"] == true)
        .map(|w| w["id"].as_i64().unwrap())
        .collect();
    assert_eq!(primaries, vec![2]);
    assert_eq!(workspaces[1]["custom_fields"]["account_number"], 700_101);

    let truth = h.truth();
    let live: Vec<&Ticket> = truth
        .tickets
        .iter()
        .filter(|t| !t.deleted && !t.spam)
        .collect();
    let mut every: Vec<i64> = live.iter().map(|t| t.id).collect();
    every.sort_unstable();

    let primary = all_ticket_ids(&h, "").await;
    assert!(primary.len() < every.len());
    assert!(primary
        .iter()
        .all(|id| truth.ticket(*id).unwrap().workspace_id == 2));

    let mut per_workspace = Vec::new();
    for ws in [2, 3, 4] {
        let ids = all_ticket_ids(&h, &format!("&workspace_id={ws}")).await;
        assert!(!ids.is_empty());
        assert!(ids
            .iter()
            .all(|id| truth.ticket(*id).unwrap().workspace_id == ws));
        per_workspace.extend(ids);
    }
    per_workspace.sort_unstable();
    assert_eq!(
        per_workspace, every,
        "each ticket once across the workspaces"
    );

    // FreshservicePS's `0` is "all" here; the doc quote's `1` is no workspace of this account.
    let mut all = all_ticket_ids(&h, "&workspace_id=0").await;
    all.sort_unstable();
    assert_eq!(all, every);
    let one = h
        .get(&format!("/api/v2/tickets?{ALL}&workspace_id=1"))
        .await;
    assert_eq!(one.status, 400);

    // The deleted view is scoped the same way; departments too.
    let deleted: usize = truth.tickets.iter().filter(|t| t.deleted).count();
    let mut scoped_deleted = 0;
    for ws in [2, 3, 4] {
        let r = h
            .get(&format!(
                "/api/v2/tickets?{ALL}&filter=deleted&per_page=100&workspace_id={ws}"
            ))
            .await;
        scoped_deleted += r.ids("tickets").len();
    }
    assert_eq!(scoped_deleted, deleted);
    let departments = h.get("/api/v2/departments?per_page=100").await;
    let primary_departments = departments.ids("departments");
    assert!(primary_departments.len() < truth.departments.len());
    let mut per_workspace = Vec::new();
    for ws in [2, 3, 4] {
        let r = h
            .get(&format!(
                "/api/v2/departments?per_page=100&workspace_id={ws}"
            ))
            .await;
        for d in r.json()["departments"].as_array().unwrap() {
            assert_eq!(d["workspace_id"], ws);
        }
        per_workspace.extend(r.ids("departments"));
    }
    assert_eq!(per_workspace.len(), truth.departments.len());
}

/// Workspaces change nothing else of the generated account.
#[test]
fn workspaces_leave_the_rest_of_the_data_as_it_was() {
    let one = World::generate_with_workspaces(42, 120, now(), 1).truth;
    let mut three = World::generate_with_workspaces(42, 120, now(), 3).truth;
    assert_eq!(three.workspaces.len(), 3);
    assert!(three.tickets.iter().any(|t| t.workspace_id == 4));
    three.workspaces.clear();
    for d in &mut three.departments {
        d.workspace_id = 2;
    }
    for t in &mut three.tickets {
        t.workspace_id = 2;
    }
    assert_eq!(one, three);
}

/// `query` URL-encoded as a client sends it.
fn filter_path(query: &str, extra: &str) -> String {
    let encoded: String = url::form_urlencoded::byte_serialize(query.as_bytes()).collect();
    format!("/api/v2/tickets/filter?query={encoded}{extra}")
}

#[tokio::test]
async fn filter_counts_matches_in_total_and_pages_by_30() {
    let h = Harness::new(config());
    let truth = h.truth();
    let since = "2025-03-01T00:00:00Z";
    let at: DateTime<Utc> = since.parse().unwrap();
    let expected: Vec<&Ticket> = truth
        .tickets
        .iter()
        .filter(|t| !t.deleted && !t.spam && t.status == 5 && t.updated_at >= at)
        .collect();
    assert!(expected.len() > 30, "the test needs more than one page");
    let r = h
        .get(&filter_path(
            &format!("\"status:5 AND updated_at:>'{since}'\""),
            "",
        ))
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["total"], expected.len());
    assert_eq!(r.ids("tickets").len(), 30);
    assert_eq!(r.header("link"), None);
    assert_eq!(r.used(), 1);
    let rows = r.json()["tickets"].as_array().unwrap().clone();
    assert!(rows
        .iter()
        .all(|t| t["status"] == 5 && t.get("stats").is_none()));

    // Departments, null, OR and parentheses.
    let department = expected
        .iter()
        .find_map(|t| t.department_id)
        .expect("a ticket with a department");
    let by_department = expected
        .iter()
        .filter(|t| t.department_id == Some(department))
        .count();
    let r = h
        .get(&filter_path(
            &format!("\"department_id:{department} AND status:5 AND updated_at:>'{since}'\""),
            "&per_page=100",
        ))
        .await;
    assert_eq!(r.json()["total"], by_department);
    let no_department = expected
        .iter()
        .filter(|t| t.department_id.is_none())
        .count();
    let r = h
        .get(&filter_path(
            &format!("\"department_id:null AND (status:5 OR status:5) AND updated_at:>'{since}'\""),
            "",
        ))
        .await;
    assert_eq!(r.json()["total"], no_department);

    // The grammar's errors are 400s in the validation shape, charged.
    let bad = h.get(&filter_path("status:5", "")).await;
    assert_eq!(bad.status, 400);
    assert_eq!(bad.json()["errors"][0]["field"], "query");
    assert_eq!(bad.used(), 1);
    let missing = h.get("/api/v2/tickets/filter").await;
    assert_eq!(missing.status, 400);
}
