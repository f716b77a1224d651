//! The ticket listing asks for the next page while the current one is in flight, and falls back
//! to following `Link` one page at a time when the links are not page numbers. A fake server
//! (not the simulator) controls the link shapes and counts the requests.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use serde_json::json;
use ticketsync::source::limiter::LimiterConfig;
use ticketsync::source::retry::RetryPolicy;
use ticketsync::source::{ClientConfig, ListFilter, Requesters, Source};

/// How the fake server's `Link` headers name the next page.
#[derive(Clone, Copy, Debug)]
enum Links {
    /// `page=k+1`, as Freshservice does.
    PageNumbers,
    /// `cursor=…`: nothing to guess.
    Cursor,
    /// Page numbers that jump by two (1, 3, 5): a guess of `k+1` is wrong.
    Jumping,
}

#[derive(Clone)]
struct Fake {
    links: Links,
    /// Pages with tickets (the ones after them are empty, as the API serves them).
    pages: u64,
    /// Every listing request's page (or cursor) parameter, in arrival order.
    seen: Arc<Mutex<Vec<String>>>,
    in_flight: Arc<AtomicU64>,
    max_in_flight: Arc<AtomicU64>,
}

const PER_PAGE: u64 = 3;

async fn tickets(
    State(fake): State<Fake>,
    Query(query): Query<HashMap<String, String>>,
) -> impl IntoResponse {
    let now = fake.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    fake.max_in_flight.fetch_max(now, Ordering::SeqCst);
    let page: u64 = query
        .get("page")
        .or(query.get("cursor"))
        .map_or(1, |p| p.parse().unwrap());
    fake.seen.lock().unwrap().push(page.to_string());
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (has_rows, next) = match fake.links {
        Links::PageNumbers | Links::Cursor => (page <= fake.pages, page + 1),
        Links::Jumping => (page % 2 == 1 && page <= fake.pages, page + 2),
    };
    let rows: Vec<_> = if has_rows {
        (0..PER_PAGE)
            .map(|i| json!({"id": page * 100 + i, "status": 5, "updated_at": "2025-01-01T00:00:00Z"}))
            .collect()
    } else {
        Vec::new()
    };
    let mut headers = HeaderMap::new();
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    if has_rows && next <= fake.pages {
        let param = match fake.links {
            Links::Cursor => "cursor",
            _ => "page",
        };
        let link = format!(
            "</api/v2/tickets?per_page={PER_PAGE}&updated_since=2024-01-01T00:00:00Z&{param}={next}>; rel=\"next\""
        );
        headers.insert("link", HeaderValue::from_str(&link).unwrap());
    }
    fake.in_flight.fetch_sub(1, Ordering::SeqCst);
    (
        StatusCode::OK,
        headers,
        json!({ "tickets": rows }).to_string(),
    )
}

async fn list(links: Links, pages: u64) -> (Vec<i64>, Vec<String>, u64) {
    let fake = Fake {
        links,
        pages,
        seen: Default::default(),
        in_flight: Default::default(),
        max_in_flight: Default::default(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let router = Router::new()
        .route("/api/v2/tickets", get(tickets))
        .with_state(fake.clone());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    let source = Source::new(ClientConfig {
        base_url: url::Url::parse(&base).unwrap(),
        api_key: "key".into(),
        limiter: LimiterConfig {
            budget_share: 1.0,
            window: Duration::from_secs(1),
            initial_total: 10_000,
        },
        retry: RetryPolicy::default(),
        timeout: Duration::from_secs(5),
        max_response_bytes: ticketsync::source::client::DEFAULT_MAX_RESPONSE_BYTES,
    })
    .unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::channel(1);
    let since = "2024-01-01T00:00:00Z".parse().unwrap();
    let listing = tokio::spawn(async move {
        source
            .stream_tickets_updated_since(
                since,
                ListFilter::Live,
                Requesters::Embedded,
                None,
                true,
                tx,
            )
            .await
    });
    let mut ids = Vec::new();
    while let Some(page) = rx.recv().await {
        ids.extend(page.into_iter().map(|t| t.unwrap().id));
    }
    listing.await.unwrap().unwrap();
    let seen = fake.seen.lock().unwrap().clone();
    (ids, seen, fake.max_in_flight.load(Ordering::SeqCst))
}

fn expected(pages: impl Iterator<Item = u64>) -> Vec<i64> {
    pages
        .flat_map(|p| (0..PER_PAGE).map(move |i| (p * 100 + i) as i64))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_numbered_links_are_fetched_one_page_ahead() {
    let (ids, seen, max_in_flight) = list(Links::PageNumbers, 6).await;
    assert_eq!(ids, expected(1..=6), "every row once, in page order");
    // Page 1 alone (a one-page listing costs one call), then two at a time; one page past the
    // end is asked for and dropped.
    assert_eq!(seen.first().map(String::as_str), Some("1"));
    assert_eq!(seen.len(), 7, "{seen:?}");
    assert_eq!(max_in_flight, 2, "{seen:?}");

    let (ids, seen, max_in_flight) = list(Links::PageNumbers, 1).await;
    assert_eq!(ids, expected(1..=1));
    assert_eq!(seen, ["1"]);
    assert_eq!(max_in_flight, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_that_are_not_page_numbers_are_followed_one_by_one() {
    let (ids, seen, max_in_flight) = list(Links::Cursor, 4).await;
    assert_eq!(ids, expected(1..=4));
    assert_eq!(seen, ["1", "2", "3", "4"]);
    assert_eq!(max_in_flight, 1);

    // A wrong guess is dropped unread; the link is followed from then on.
    let (ids, seen, _) = list(Links::Jumping, 7).await;
    assert_eq!(ids, expected([1, 3, 5, 7].into_iter()));
    assert!(seen.contains(&"4".to_string()), "{seen:?}");
    assert!(!seen.contains(&"6".to_string()), "{seen:?}");
}
