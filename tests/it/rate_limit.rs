//! The budget: never more than the configured share of the plan's credits in any window, a 429
//! storm ridden out without errors or lost tickets, tickets changed mid-listing neither skipped
//! nor duplicated.

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
    let allowed = (share * 200.0 * 1.05).ceil() as u64 + 5; // share plus the 5 % start burst
    let busy: Vec<u64> = stats.windows.iter().map(|w| w.credits_used).collect();
    assert!(busy.len() >= 3, "the run spans several windows: {busy:?}");
    for w in &stats.windows {
        assert!(
            w.credits_used <= allowed,
            "window {} used {} > {allowed}: {busy:?}",
            w.index,
            w.credits_used
        );
    }
    // Simulator and client agree on the credits spent.
    assert_eq!(run.report.api.credits_used, stats.credits_used);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_storm_is_ridden_out_without_losing_a_ticket() {
    let now = minute();
    let clean = Harness::with_config(growth(now, 160, 32)).await;
    assert!(clean.full_sync().await.error.is_none());

    let stormy = Harness::with_config(growth(now, 160, 32)).await;
    // The client believes it may use the whole budget, then the budget drops to a quarter.
    let spec = JobSpec {
        budget_share: Some(1.0),
        ..stormy.full_spec()
    };
    let sim = stormy.sim.clone();
    let cut = tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(700)).await;
        sim.set_credits_per_minute(50);
    });
    let run = stormy.sync_with(spec, None).await;
    cut.await.unwrap();
    assert!(run.error.is_none(), "{:?}", run.error);
    assert_eq!(run.report.tickets.failed, 0);
    let stats = stormy.sim.stats();
    // Requests in flight when the budget drops are refused; after that the client follows the
    // new X-RateLimit-Total: at most one 429 in any later window.
    let cut_window = stats
        .windows
        .iter()
        .position(|w| w.rejected_429 > 0)
        .expect("the cut was felt");
    for w in &stats.windows[cut_window + 1..] {
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
