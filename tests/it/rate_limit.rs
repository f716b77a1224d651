//! The budget: never more than the configured share of the plan's credits in any window, a 429
//! storm ridden out without errors or lost tickets, room made for another integration that
//! spends beyond its part, tickets changed mid-listing neither skipped nor duplicated.

use std::time::Duration;

use chrono::{DurationRound, Utc};
use ticketsync::job::JobSpec;
use ticketsync::sim::{Plan, SimConfig};

use crate::support::Harness;

fn growth(now: chrono::DateTime<Utc>, tickets: usize, seed: u64) -> SimConfig {
    SimConfig {
        tickets,
        seed,
        plan: Plan::Growth,
        minute_secs: 1.0,
        now,
        ..SimConfig::default()
    }
}

/// No window of `stats` spent more than `share` credits, the 5 % start burst and the calls of
/// `late` at the share's pace (`window` long): calls a loaded machine delivers late, past a
/// window's edge (the simulator charges a call in the window it arrives in).
fn assert_within_share(
    stats: &ticketsync::sim::SimStats,
    share: f64,
    window: Duration,
    late: Duration,
) {
    let slack = (share * late.as_secs_f64() / window.as_secs_f64()).ceil() as u64;
    let allowed = (share * 1.05).ceil() as u64 + slack.max(5);
    let busy: Vec<u64> = stats.windows.iter().map(|w| w.credits_used).collect();
    for w in &stats.windows {
        assert!(
            w.credits_used <= allowed,
            "window {} used {} > {allowed}: {busy:?}",
            w.index,
            w.credits_used
        );
    }
}

/// How late a call may reach the simulator on two cores shared with the other tests.
const LATE: Duration = Duration::from_millis(100);

fn minute() -> chrono::DateTime<Utc> {
    Utc::now()
        .duration_trunc(chrono::Duration::minutes(1))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_limiter_never_exceeds_the_budget_share() {
    let h = Harness::with_config(growth(minute(), 200, 31)).await;
    let share = 0.5;
    let spec = JobSpec {
        budget_share: Some(share),
        ..h.full_spec()
    };
    let run = h.sync_with(spec, None).await;
    assert!(run.error.is_none(), "{:?}", run.error);
    let stats = h.sim.stats();
    assert_eq!(stats.rate_limited, 0, "no 429 at all");
    let busy: Vec<u64> = stats.windows.iter().map(|w| w.credits_used).collect();
    assert!(busy.len() >= 3, "the run spans several windows: {busy:?}");
    assert_within_share(&stats, share * 200.0, Duration::from_secs(1), LATE);
    // Simulator and client agree on the credits spent, except for requests whose answer the
    // client never read (a timeout on a starved machine, then a retry): the server charged those.
    let api = &run.report.api;
    if api.retries == 0 {
        assert_eq!(api.credits_used, stats.credits_used);
    } else {
        assert!(api.credits_used <= stats.credits_used, "{api:?}");
        assert!(
            stats.credits_used - api.credits_used <= 5 * api.retries,
            "{api:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_storm_is_ridden_out_without_losing_a_ticket() {
    let now = minute();
    // About 300 credits in all: most of the run comes after the cut below.
    let clean = Harness::with_config(growth(now, 320, 32)).await;
    assert!(clean.full_sync().await.error.is_none());

    let stormy = Harness::with_config(growth(now, 320, 32)).await;
    let spec = stormy.full_spec();
    // The cut is placed by the simulator's own counts, not by a timer, so a slow and a fast
    // machine see the same storm: the request that finds its window has charged 60 credits
    // (more than the new budget; a starved machine may not reach much more in a window) cuts
    // the budget to 50, and is refused with the rest of the window's requests.
    stormy.sim.cut_credits_when(60, 50);
    let run = stormy.sync_with(spec, None).await;
    assert!(run.error.is_none(), "{:?}", run.error);
    assert_eq!(run.report.tickets.failed, 0);
    let stats = stormy.sim.stats();
    // Requests in flight when the budget drops are refused, in the window of the cut and, on a
    // busy machine, in the next one (up to `concurrency` calls were already on their way).
    // After that the client follows the new X-RateLimit-Total: at most one 429 in any window.
    let after_cut = stats
        .windows
        .iter()
        .position(|w| w.limit == 50)
        .unwrap_or_else(|| panic!("the run went on after the cut: {:?}", stats.windows));
    let cut_window = after_cut - 1;
    assert!(
        stats.windows[cut_window].rejected_429 > 0,
        "the cut was felt: {:?}",
        stats.windows
    );
    for w in stats.windows.iter().skip(cut_window + 2) {
        assert!(
            w.rejected_429 <= 1,
            "window {}: {:?}",
            w.index,
            stats.windows
        );
    }
    let (a, b) = (clean.dump().await, stormy.dump().await);
    assert_eq!(a.rows, b.rows);
    assert_eq!(a.markdown, b.markdown);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_neighbour_spending_beyond_its_part_gets_room_without_a_429_storm() {
    let now = minute();
    let clean = Harness::with_config(growth(now, 320, 34)).await;
    assert!(clean.full_sync().await.error.is_none());

    // Another integration spends 60 of the 200 credits of every window at an even pace: three
    // times the 20 the run's share (0.9) leaves it.
    let shared = Harness::with_config(growth(now, 320, 34)).await;
    shared.sim.set_neighbour(60);
    let run = shared.full_sync().await;
    assert!(run.error.is_none(), "{:?}", run.error);
    assert_eq!(run.report.tickets.failed, 0);
    let stats = shared.sim.stats();
    let windows: Vec<(u64, u64, u64, u64)> = stats
        .windows
        .iter()
        .map(|w| {
            (
                w.credits_used,
                w.rejected_429,
                w.neighbour_credits,
                w.neighbour_refused,
            )
        })
        .collect();
    // The run learns of the neighbour from the counts of the first window it shares with it;
    // after that it leaves room: neither it nor the neighbour is refused a window's worth.
    // (Calls a loaded machine delivers late land in the next window, where the neighbour has
    // spent its part: those may be refused too, never more than the calls of `LATE` at the
    // share's pace; a storm is a refusal for most calls of a window.)
    let late = (0.9 * 200.0 * LATE.as_secs_f64()).ceil() as u64;
    assert!(windows.len() >= 3, "{windows:?}");
    assert!(stats.rate_limited <= 2 + late, "{windows:?}");
    let refused: u64 = windows.iter().map(|w| w.3).sum();
    assert!(refused <= 60, "the neighbour was starved: {windows:?}");
    let (a, b) = (clean.dump().await, shared.dump().await);
    assert_eq!(a.rows, b.rows);
    assert_eq!(a.markdown, b.markdown);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tickets_updated_between_pages_are_neither_skipped_nor_duplicated() {
    let now = minute();
    let h = Harness::with_config(growth(now, 320, 33)).await;
    let gt = h.sim.ground_truth();
    // Tickets that will be on later pages get touched while page 1 and 2 are served.
    let closed: Vec<i64> = gt.closed_tickets().map(|t| t.id).collect();
    h.sim.mutate_during_listing(1, closed[0]);
    h.sim.mutate_during_listing(2, closed[closed.len() / 2]);
    let run = h.full_sync().await;
    assert!(run.error.is_none());
    let dump = h.dump().await;
    let mut ids: Vec<&str> = dump
        .table("tickets")
        .iter()
        .map(|l| l.split(' ').nth(2).unwrap())
        .collect();
    let mut rejects: Vec<&str> = dump
        .table("rejects")
        .iter()
        .map(|l| l.split(' ').nth(2).unwrap())
        .collect();
    let total = ids.len() + rejects.len();
    ids.append(&mut rejects);
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), total, "a ticket appears twice");
    let since = run.report.window_since.unwrap();
    let expected = h
        .sim
        .ground_truth()
        .closed_tickets()
        .filter(|t| t.updated_at >= since)
        .count();
    assert_eq!(
        total, expected,
        "every closed ticket is in tickets or rejects"
    );
}

/// Pages of the live listing (no `filter`) `log` shows decided before its first per-ticket
/// request: those asked for before any listing page was answered (the per-ticket calls wait
/// for page 1's answer), and the two asked for with the first of them.
fn opening_listing_pages(log: &[ticketsync::sim::RequestLog]) -> usize {
    let first_ticket = log
        .iter()
        .filter(|r| r.endpoint == "time_entries" || r.endpoint == "conversations")
        .map(|r| r.at_ms)
        .min()
        .unwrap_or(u64::MAX);
    log.iter()
        .filter(|r| r.endpoint == "tickets_list" && !r.path_and_query.contains("filter="))
        .filter(|r| r.at_ms < first_ticket)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_sync_spends_its_first_round_trip_on_the_pages_the_last_run_says_it_buys() {
    // Enterprise in 2-second windows, 250 ms a request: one round trip buys 450 / 2 × 0.25 ≈
    // 56 credits, eleven listing pages of 5.
    let h = Harness::with_config(SimConfig {
        tickets: 1500,
        seed: 37,
        plan: Plan::Enterprise,
        minute_secs: 2.0,
        latency_ms: 250,
        latency_jitter_ms: 0,
        now: minute(),
        ..SimConfig::default()
    })
    .await;
    let spec = JobSpec {
        rate_window_secs: Some(2.0),
        ..h.full_spec()
    };
    // A first run knows nothing of the API: one page, then the listing page by page.
    let first = h.sync_with(spec.clone(), None).await;
    assert!(first.error.is_none(), "{:?}", first.error);
    let log = h.sim.stats().log;
    // (Page 1, then with the first per-ticket calls page 2 and the one read ahead.)
    assert!(
        opening_listing_pages(&log) <= 3,
        "{}",
        opening_listing_pages(&log)
    );
    let cursor = ticketsync::state::load_cursor(&h.storage)
        .await
        .unwrap()
        .expect("a cursor");
    let seen = cursor
        .api
        .expect("the run remembers what it saw of the API");
    assert_eq!(seen.rate_total, 500);
    assert!(
        (250..1000).contains(&seen.round_trip_ms),
        "{seen:?}: the round trip the requests took"
    );

    // The next full sync asks for the pages its first round trip buys, all at once.
    let second = h.sync_with(spec, None).await;
    assert!(second.error.is_none(), "{:?}", second.error);
    let stats = h.sim.stats();
    let opening = opening_listing_pages(&stats.log[log.len()..]);
    assert!(
        (8..=18).contains(&opening),
        "{opening} pages at once, {seen:?}"
    );
    // The same tickets (unchanged since the first run), no 429, and no window past the share
    // and the 5 % burst (the opening is lent against the first window like any call).
    assert_eq!(second.report.tickets.listed, first.report.tickets.listed);
    assert_eq!(second.report.tickets.closed, first.report.tickets.closed);
    assert_eq!(
        second.report.tickets.unchanged,
        first.report.tickets.fetched
    );
    assert_eq!(stats.rate_limited, 0);
    // (Enterprise at 225 calls a second on two cores shared with the other tests.)
    assert_within_share(&stats, 0.9 * 500.0, Duration::from_secs(2), LATE);
}
