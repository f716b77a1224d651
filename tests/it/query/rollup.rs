//! Rollups that agree to the minute with the time entries, and the goldens of the tables.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Datelike, Utc};
use ticketsync::query::output::{self, Format};
use ticketsync::query::{Basis, Period, RollupQuery, RollupRow, TicketQuery};
use ticketsync::sim::GroundTruth;

use super::{busiest_account, golden, placed, query_cmd, render, synced, ticket_minutes};
use crate::support::minutes_of;

/// The rollup computed here from the ground truth's time entries alone.
fn expected_rollup(truth: &GroundTruth, query: &RollupQuery) -> Vec<RollupRow> {
    type Cell = (BTreeSet<i64>, i64, i64);
    let mut cells: BTreeMap<(String, Option<u32>), Cell> = BTreeMap::new();
    let period = |t: DateTime<Utc>| match query.period {
        Period::Month => Some(t.month()),
        Period::Year => None,
    };
    let mut add = |account: &str, when: DateTime<Utc>, id: i64, minutes: i64, billable: i64| {
        if when.year() != query.year || query.account.as_deref().is_some_and(|a| a != account) {
            return;
        }
        let cell = cells
            .entry((account.to_string(), period(when)))
            .or_default();
        cell.0.insert(id);
        cell.1 += minutes;
        cell.2 += billable;
    };
    for (id, (account, closed_at)) in placed(truth) {
        let t = truth.ticket(id).unwrap();
        match query.basis {
            Basis::Closed => {
                let (total, billable) = ticket_minutes(t);
                add(&account, closed_at, id, total, billable);
            }
            Basis::Updated => {
                let (total, billable) = ticket_minutes(t);
                add(&account, t.updated_at, id, total, billable);
            }
            Basis::Worked if t.time_entries.is_empty() => add(&account, closed_at, id, 15, 15),
            Basis::Worked => {
                for e in &t.time_entries {
                    let minutes = minutes_of(&e.time_spent);
                    let billable = if e.billable { minutes } else { 0 };
                    add(&account, e.executed_at, id, minutes, billable);
                }
            }
        }
    }
    let accounts: BTreeSet<String> = cells.keys().map(|(a, _)| a.clone()).collect();
    let mut rows = Vec::new();
    for account in accounts {
        let months: Vec<Option<u32>> = match query.period {
            Period::Month => (1..=12).map(Some).collect(),
            Period::Year => vec![None],
        };
        for month in months {
            let (ids, minutes, billable) =
                cells.remove(&(account.clone(), month)).unwrap_or_default();
            rows.push(RollupRow {
                account: account.clone(),
                year: query.year,
                month,
                basis: query.basis,
                tickets: ids.len() as u64,
                minutes,
                billable_minutes: billable,
            });
        }
    }
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollups_agree_to_the_minute_with_the_time_entries() {
    let s = synced();
    let dataset = s.dataset();
    let some_account = placed(&s.truth).values().next().unwrap().0.clone();
    let mut crossing = 0;
    for year in [2024, 2025] {
        for basis in [Basis::Updated, Basis::Closed, Basis::Worked] {
            for period in [Period::Month, Period::Year] {
                for account in [None, Some(some_account.clone())] {
                    let query = RollupQuery {
                        account,
                        year,
                        period,
                        basis,
                    };
                    let want = expected_rollup(&s.truth, &query);
                    assert!(!want.is_empty(), "{query:?}");
                    let got = dataset.rollup(&query).await.unwrap();
                    assert_eq!(got, want, "{query:?}");
                }
            }
        }
        let by = |basis| RollupQuery {
            account: None,
            year,
            period: Period::Month,
            basis,
        };
        if dataset.rollup(&by(Basis::Closed)).await.unwrap()
            != dataset.rollup(&by(Basis::Worked)).await.unwrap()
        {
            crossing += 1;
        }
    }
    assert_eq!(
        crossing, 2,
        "the simulator has work done before the close month"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_rolls_up_to_the_minute_in_csv() {
    let s = synced();
    let out = query_cmd(&s.data())
        .args(["--year", "2025", "--rollup", "month", "--basis", "worked"])
        .args(["--format", "csv"])
        .run()
        .await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let csv = out.stdout;
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("account,period,basis,tickets,hours,billable_hours,non_billable_hours")
    );
    let want = expected_rollup(
        &s.truth,
        &RollupQuery {
            account: None,
            year: 2025,
            period: Period::Month,
            basis: Basis::Worked,
        },
    );
    let got: Vec<String> = lines
        .map(|line| {
            let f: Vec<&str> = line.split(',').collect();
            let minutes = |h: &str| (h.parse::<f64>().unwrap() * 60.0).round() as i64;
            assert_eq!(f[2], "worked", "{line}");
            assert_eq!(f[4].split('.').nth(1).map(str::len), Some(2), "{line}");
            format!(
                "{} {} {} {} {}",
                f[0],
                f[1],
                f[3],
                minutes(f[4]),
                minutes(f[5])
            )
        })
        .collect();
    let want: Vec<String> = want
        .iter()
        .map(|r| {
            format!(
                "{} {} {} {} {}",
                r.account,
                r.period(),
                r.tickets,
                r.minutes,
                r.billable_minutes
            )
        })
        .collect();
    assert_eq!(got, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollup_and_ticket_tables_match_their_goldens() {
    let s = synced();
    let dataset = s.dataset();
    let month = dataset
        .rollup(&RollupQuery {
            account: None,
            year: 2025,
            period: Period::Month,
            basis: Basis::Updated,
        })
        .await
        .unwrap();
    let table = render(|out| output::write_rollup(out, &month, Format::Table));
    golden("rollup_month_2025.txt", &table);
    let year = dataset
        .rollup(&RollupQuery {
            account: None,
            year: 2024,
            period: Period::Year,
            basis: Basis::Worked,
        })
        .await
        .unwrap();
    for (name, format) in [
        ("rollup_year_2024_worked.csv", Format::Csv),
        ("rollup_year_2024_worked.json", Format::Json),
    ] {
        golden(
            name,
            &render(|out| output::write_rollup(out, &year, format)),
        );
    }
    let account = busiest_account(s, 2025);
    let docs = dataset
        .tickets(&TicketQuery {
            account,
            year: Some(2025),
            basis: ticketsync::query::Basis::Updated,
        })
        .await
        .unwrap();
    let table = render(|out| output::write_tickets(out, &docs, Format::Table));
    golden("tickets_busiest_2025.txt", &table);
}
