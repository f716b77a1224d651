//! Hostile and broken input from a server that is not the simulator: wrong types, nulls,
//! garbage durations, huge and deeply nested bodies, lone surrogates, control characters,
//! unknown codes, and a `Link` header pointing at another host. No panic, precise rejects,
//! the run goes on; credentials never leave for another host.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use serde_json::json;
use ticketsync::job::{Job, JobSpec};
use ticketsync::pipeline;
use ticketsync::source::retry::RetryPolicy;
use ticketsync::source::{ClientConfig, Source};
use ticketsync::storage::{S3Options, Storage};

use crate::support::Dump;

#[derive(Clone)]
struct Fake {
    /// Where `Link` headers of the ticket list point (another host for the hostile-link case).
    next_link: Option<String>,
}

async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    format!("http://{addr}")
}

fn json_response(body: String) -> impl IntoResponse {
    let mut headers = HeaderMap::new();
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    headers.insert("x-ratelimit-total", HeaderValue::from_static("500"));
    headers.insert("x-ratelimit-remaining", HeaderValue::from_static("499"));
    headers.insert(
        "x-ratelimit-used-currentrequest",
        HeaderValue::from_static("1"),
    );
    (StatusCode::OK, headers, body)
}

fn now() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn ticket(id: i64, overrides: serde_json::Value) -> serde_json::Value {
    let mut t = json!({
        "id": id, "subject": format!("Ticket {id}"), "description": "<p>hello</p>", "status": 5, "priority": 2,
        "department_id": 1, "requester_id": 7, "created_at": now(), "updated_at": now(),
        "stats": {"closed_at": now()}, "requester": {"id": 7, "name": "Req", "email": "req@example.test"}
    });
    for (k, v) in overrides.as_object().unwrap() {
        t[k] = v.clone();
    }
    t
}

async fn tickets(
    State(fake): State<Fake>,
    axum::extract::Query(query): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> axum::response::Response {
    if query.contains_key("filter") {
        return json_response(json!({"tickets": []}).to_string()).into_response();
    }
    let list = json!([
        ticket(1, json!({})),
        ticket(2, json!({"status": 9, "priority": 99})), // not closed: ignored
        ticket(3, json!({"priority": 77, "source": 42})), // unknown codes: kept visible
        ticket(
            4,
            json!({"subject": null, "description": null, "requester": null, "created_at": null})
        ),
        ticket(5, json!({"status": "closed"})), // wrong type: malformed_ticket
        ticket(6, json!({})),                   // garbage time entries
        ticket(7, json!({})),                   // hostile bodies
        ticket(8, json!({"department_id": null})),
        ticket(9, json!({"updated_at": "yesterday"})), // unparseable date
        json!({"subject": "no id at all"}),
        ticket(10, json!({"stats": "not an object"})),
    ]);
    let mut response = json_response(json!({"tickets": list}).to_string()).into_response();
    if let Some(link) = &fake.next_link {
        response.headers_mut().insert(
            "link",
            HeaderValue::from_str(&format!("<{link}>; rel=\"next\"")).unwrap(),
        );
    }
    response
}

async fn conversations(UrlPath(id): UrlPath<i64>) -> impl IntoResponse {
    let body = match id {
        7 => {
            let deep = format!("{}deep{}", "<div>".repeat(100_000), "</div>".repeat(100_000));
            let huge = format!("<p>{}</p>", "x".repeat(10 * 1024 * 1024));
            // Raw JSON so that the lone surrogate and control characters reach the client as sent.
            format!(
                r#"{{"conversations": [
                  {{"id": 70, "body": {deep}, "private": false, "incoming": true, "created_at": "{now}"}},
                  {{"id": 71, "body": {huge}, "private": true, "created_at": "{now}"}},
                  {{"id": 72, "body": "bell\u0007 nul\u0000 lone \ud800 end", "private": false, "to_emails": "a@x.test, b@x.test", "created_at": "{now}"}}
                ]}}"#,
                deep = serde_json::to_string(&deep).unwrap(),
                huge = serde_json::to_string(&huge).unwrap(),
                now = now()
            )
        }
        _ => json!({"conversations": [{"id": id * 10, "body": "<p>ok</p>", "private": false, "created_at": now()}]}).to_string(),
    };
    json_response(body)
}

async fn time_entries(UrlPath(id): UrlPath<i64>) -> impl IntoResponse {
    let entries = match id {
        6 => json!([{"id": 60, "time_spent": "abc"}, {"id": 61, "time_spent": "-1:00"}]),
        3 => json!([{"id": 30, "time_spent": "99999:99"}]),
        4 => json!([{"id": 40, "time_spent": null, "billable": null}]),
        _ => json!([{"id": id * 10, "time_spent": "01:15", "billable": true}]),
    };
    json_response(json!({"time_entries": entries}).to_string())
}

async fn departments() -> impl IntoResponse {
    json_response(json!({"departments": [{"id": 1, "custom_fields": {"account_number": 555}}, {"id": "two"}]}).to_string())
}

async fn groups() -> impl IntoResponse {
    json_response(json!({"groups": [{"id": 3, "name": 42}]}).to_string())
}

async fn agents() -> impl IntoResponse {
    json_response(json!({"agents": [{"id": 9, "email": null, "first_name": 3}]}).to_string())
}

async fn run_against(base: &str) -> (pipeline::RunOutcome, Dump) {
    let dir = tempfile::tempdir().unwrap();
    let spec = JobSpec {
        data: Some(dir.path().to_str().unwrap().into()),
        base_url: Some(base.into()),
        full_sync: Some(true),
        ..JobSpec::default()
    };
    let job = Job::resolve(spec, None).unwrap();
    let source = Arc::new(
        Source::new(ClientConfig {
            base_url: url::Url::parse(base).unwrap(),
            api_key: "hostile-test-key".into(),
            limiter: job.limiter.clone(),
            retry: RetryPolicy {
                base_delay: std::time::Duration::from_millis(5),
                max_delay: std::time::Duration::from_millis(50),
                ..RetryPolicy::default()
            },
            timeout: std::time::Duration::from_secs(30),
            max_response_bytes: job.max_response_bytes,
        })
        .unwrap(),
    );
    let storage = Storage::open(dir.path().to_str().unwrap(), &S3Options::default()).unwrap();
    let outcome = pipeline::run(&job, source, &storage).await.unwrap();
    let dump = Dump::of(&storage).await;
    (outcome, dump)
}

fn router(fake: Fake) -> Router {
    Router::new()
        .route("/api/v2/tickets", get(tickets))
        .route("/api/v2/tickets/{id}/conversations", get(conversations))
        .route("/api/v2/tickets/{id}/time_entries", get(time_entries))
        .route("/api/v2/departments", get(departments))
        .route("/api/v2/agents", get(agents))
        .route("/api/v2/groups", get(groups))
        .with_state(fake)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_input_is_rejected_precisely_and_the_run_goes_on() {
    let fake = Fake { next_link: None };
    let base = serve(router(fake)).await;
    let (outcome, dump) = run_against(&base).await;
    assert!(outcome.error.is_none(), "{:?}", outcome.error);
    let report = &outcome.report;
    let has = |table: &str, id: i64, needle: &str| {
        dump.table(table)
            .iter()
            .any(|l| l.contains(&format!("ticket_id={id} ")) && l.contains(needle))
    };
    // Placed, with unknown codes kept visible and nulls as nulls.
    assert!(has("tickets", 1, "total_minutes=75"));
    assert!(has("tickets", 7, "conversation_count=2"));
    assert!(has("notes", 7, "note_id=71"));
    assert!(has("conversations", 7, "body=deep"));
    assert!(has("conversations", 7, "to_emails=[a@x.test, b@x.test]"));
    // Rejected, each with the reason and the offending value.
    assert!(has("rejects", 5, "reason=malformed_ticket"));
    assert!(has(
        "rejects",
        5,
        "status: expected an integer, found string"
    ));
    assert!(has("rejects", 6, "reason=invalid_time_entry"));
    assert!(has("rejects", 6, "\"abc\""));
    assert!(has("rejects", 3, "\"99999:99\""));
    assert!(has("rejects", 4, "time_spent is missing"));
    assert!(has("rejects", 8, "reason=no_department"));
    assert!(has("rejects", 9, "updated_at"));
    assert!(has("rejects", 10, "stats"));
    assert!(
        !dump
            .table("tickets")
            .iter()
            .any(|l| l.contains("ticket_id=2 ")),
        "status 9 is not closed"
    );
    assert_eq!(
        report.tickets.unidentifiable, 1,
        "the row without an id is counted"
    );
    // The control characters did not survive into text; the lone surrogate became U+FFFD.
    let body72 = dump
        .table("conversations")
        .iter()
        .find(|l| l.contains("conversation_id=72 "))
        .unwrap();
    assert!(body72.contains("bell nul lone \u{fffd} end"), "{body72}");
    // The huge note is stored whole.
    let note = dump
        .table("notes")
        .iter()
        .find(|l| l.contains("note_id=71 "))
        .unwrap();
    assert!(note.len() > 10 * 1024 * 1024);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_to_another_host_is_never_followed() {
    let hits = Arc::new(AtomicU64::new(0));
    let counter = hits.clone();
    let other = serve(Router::new().fallback(move || {
        let counter = counter.clone();
        async move {
            counter.fetch_add(1, Ordering::SeqCst);
            "{}"
        }
    }))
    .await;
    let fake = Fake {
        next_link: Some(format!("{other}/api/v2/tickets?page=2")),
    };
    let base = serve(router(fake)).await;
    let (outcome, _) = run_against(&base).await;
    let error = outcome.error.expect("the run fails").to_string();
    assert!(error.contains("another host"), "{error}");
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "credentials were sent to another host"
    );
    assert!(outcome.report.next_cursor.is_none());
}
