//! Injected faults (5xx, truncated and non-JSON bodies, dropped connections, slow responses,
//! 429s) are retried and leave the same dataset as a clean run.

use std::time::Duration;

use chrono::{DurationRound, Utc};
use ticketsync::sim::{FaultAction, FaultRule, Plan, SimConfig};

use crate::support::Harness;

fn config(now: chrono::DateTime<Utc>) -> SimConfig {
    SimConfig {
        tickets: 150,
        seed: 21,
        plan: Plan::Enterprise,
        minute_secs: 1.0,
        now,
        ..SimConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_do_not_change_the_dataset() {
    let now = Utc::now()
        .duration_trunc(chrono::Duration::minutes(1))
        .unwrap();
    let clean = Harness::with_config(config(now)).await;
    let clean_run = clean.full_sync().await;
    assert!(clean_run.error.is_none());

    let faulty = Harness::with_config(config(now)).await;
    let rules = [
        FaultRule::new(FaultAction::Status(500))
            .endpoint("tickets_list")
            .times(2),
        FaultRule::new(FaultAction::Status(503))
            .endpoint("conversations")
            .times(4),
        FaultRule::new(FaultAction::Status(502))
            .endpoint("departments")
            .times(1),
        FaultRule::new(FaultAction::TruncatedJson)
            .endpoint("time_entries")
            .times(3),
        FaultRule::new(FaultAction::TruncatedJson)
            .endpoint("tickets_list")
            .skip(1)
            .times(1),
        FaultRule::new(FaultAction::DropConnection)
            .endpoint("conversations")
            .skip(5)
            .times(2),
        FaultRule::new(FaultAction::NotJson)
            .endpoint("agents")
            .times(1),
        FaultRule::new(FaultAction::EmptyBody)
            .endpoint("time_entries")
            .skip(10)
            .times(1),
        FaultRule::new(FaultAction::Slow(Duration::from_millis(300)))
            .endpoint("conversations")
            .skip(20)
            .times(2),
        FaultRule::new(FaultAction::RateLimited {
            retry_after_secs: 1,
        })
        .endpoint("time_entries")
        .skip(30)
        .times(1),
    ];
    for rule in rules {
        faulty.sim.faults().push(rule);
    }
    let faulty_run = faulty.full_sync().await;
    assert!(faulty_run.error.is_none(), "{:?}", faulty_run.error);
    assert!(
        faulty_run.report.api.retries >= 15,
        "{:?}",
        faulty_run.report.api
    );
    assert_eq!(faulty_run.report.api.rate_limited, 1);
    assert_eq!(
        faulty.sim.faults().pending(),
        0,
        "every scripted fault was hit"
    );

    let (a, b) = (clean.dump().await, faulty.dump().await);
    assert_eq!(a.files, b.files);
    assert_eq!(a.markdown, b.markdown);
    for (table, rows) in &a.rows {
        assert_eq!(rows, &b.rows[table], "table {table}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listing_that_never_recovers_fails_the_run_and_keeps_the_cursor() {
    let h = Harness::new(80, 22).await;
    h.sim.faults().push(
        FaultRule::new(FaultAction::Status(503))
            .endpoint("tickets_list")
            .times(1000),
    );
    let run = h.full_sync().await;
    assert_eq!(run.report.status, ticketsync::report::RunStatus::Failed);
    assert!(run.error.unwrap().to_string().contains("503"));
    assert!(run.report.next_cursor.is_none());
    assert!(!h
        .storage
        .exists(&ticketsync::storage::layout::state("cursor.json"))
        .await
        .unwrap());
}
