//! Ledger bills from ticketsync what it billed from Codex (issue 20). Ledger's arithmetic is
//! transcribed here from `app/billing_engine.py` of skelhammer/hivematrix-ledger at commit
//! 3350a5b (`get_billing_data_for_client`): it asks Codex for the account's tickets of the
//! year (`GET /api/companies/{account}/tickets?year=Y`, which keeps tickets whose
//! `last_updated_at` starts with Y: hivematrix-codex `app/routes.py` at 4e0f2fe), bills the
//! `total_hours_spent` of the tickets last updated in the billing month, less the prepaid
//! monthly hours and what is left of the prepaid yearly hours after the tickets last updated
//! earlier in the year.

use chrono::{DateTime, Datelike, Duration, TimeZone, Utc};
use serde_json::Value;

use super::query_cmd;
use crate::support::{minutes_of, Harness};

/// A prepaid profile: (monthly hours, yearly hours).
const PROFILES: [(f64, f64); 5] = [
    (0.0, 0.0),
    (10.0, 0.0),
    (0.0, 40.0),
    (5.0, 20.0),
    (1e6, 0.0),
];

/// What Ledger bills for `month` of `year` given Codex's `?year=` tickets (`last_updated_at`,
/// `total_hours_spent`), as `billing_engine.py` computes it.
fn ledger_bill(
    tickets: &[(DateTime<Utc>, f64)],
    year: i32,
    month: u32,
    profile: (f64, f64),
) -> f64 {
    let (prepaid_monthly, prepaid_yearly) = profile;
    let start = Utc.with_ymd_and_hms(year, month, 1, 0, 0, 0).unwrap();
    let next = if month == 12 {
        Utc.with_ymd_and_hms(year + 1, 1, 1, 0, 0, 0).unwrap()
    } else {
        Utc.with_ymd_and_hms(year, month + 1, 1, 0, 0, 0).unwrap()
    };
    // `end_of_billing_month` is the last day at 23:59:59.
    let end = next - Duration::seconds(1);
    let hours_for_period: f64 = tickets
        .iter()
        .filter(|(at, _)| start <= *at && *at <= end)
        .map(|(_, h)| h)
        .sum();
    let hours_used_prior: f64 = tickets
        .iter()
        .filter(|(at, _)| *at < start)
        .map(|(_, h)| h)
        .sum();
    let remaining_yearly = (prepaid_yearly - hours_used_prior).max(0.0);
    ((hours_for_period - prepaid_monthly).max(0.0) - remaining_yearly).max(0.0)
}

/// Codex's tickets of `account` and `year`, as the simulator's final data gives them: what the
/// old sync wrote to Codex (`last_updated_at` = `updated_at`, hours of the time entries, the
/// default quarter hour without any).
fn codex_tickets(
    h: &Harness,
    account: &str,
    year: i32,
    placed: &[(i64, String)],
) -> Vec<(DateTime<Utc>, f64)> {
    let truth = h.sim.ground_truth();
    placed
        .iter()
        .filter(|(_, a)| a == account)
        .filter_map(|(id, _)| truth.ticket(*id))
        .filter(|t| t.updated_at.year() == year)
        .map(|t| {
            let minutes: i64 = t
                .time_entries
                .iter()
                .map(|e| minutes_of(&e.time_spent))
                .sum();
            let minutes = if t.time_entries.is_empty() {
                15
            } else {
                minutes
            };
            (t.updated_at, minutes as f64 / 60.0)
        })
        .collect()
}

/// `query --account A --year Y` (the Codex shape, default basis) as Ledger reads it.
async fn query_tickets(data: &str, account: &str, year: i32) -> Vec<(DateTime<Utc>, f64)> {
    let out = query_cmd(data)
        .args([
            "--account",
            account,
            "--year",
            &year.to_string(),
            "--format",
            "json",
        ])
        .run()
        .await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    out.json()
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let at: DateTime<Utc> = t["last_updated_at"].as_str().unwrap().parse().unwrap();
            (at, t["total_hours_spent"].as_f64().unwrap())
        })
        .collect()
}

/// `query --year Y --rollup month` (default basis): hours per account and month.
async fn rollup_hours(data: &str, year: i32) -> Vec<(String, u32, f64, String)> {
    let out = query_cmd(data)
        .args([
            "--year",
            &year.to_string(),
            "--rollup",
            "month",
            "--format",
            "json",
        ])
        .run()
        .await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    out.json()
        .as_array()
        .unwrap()
        .iter()
        .map(|r: &Value| {
            let period = r["period"].as_str().unwrap();
            let month = period[5..].parse().unwrap();
            (
                r["account"].as_str().unwrap().to_string(),
                month,
                r["hours"].as_f64().unwrap(),
                r["basis"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// The prepaid formula on the rollup's monthly hours (the same arithmetic, months summed).
fn bill_from_rollup(months: &[(u32, f64)], month: u32, profile: (f64, f64)) -> f64 {
    let (prepaid_monthly, prepaid_yearly) = profile;
    let this: f64 = months
        .iter()
        .filter(|(m, _)| *m == month)
        .map(|(_, h)| h)
        .sum();
    let prior: f64 = months
        .iter()
        .filter(|(m, _)| *m < month)
        .map(|(_, h)| h)
        .sum();
    let remaining_yearly = (prepaid_yearly - prior).max(0.0);
    ((this - prepaid_monthly).max(0.0) - remaining_yearly).max(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ledger_bills_from_query_what_it_billed_from_codex_with_and_without_late_updates() {
    let h = Harness::new(260, 31).await;
    let first = h.full_sync().await;
    assert!(first.error.is_none(), "{:?}", first.error);
    let year = Utc::now().year();
    let data = h.data();
    let placed = |dump: &crate::support::Dump| -> Vec<(i64, String)> {
        dump.table("tickets")
            .iter()
            .filter_map(|row| {
                let id = row
                    .split(' ')
                    .find_map(|kv| kv.strip_prefix("ticket_id="))?;
                let acct = row
                    .split(' ')
                    .find_map(|kv| kv.strip_prefix("company_account_number="))?;
                Some((id.parse().ok()?, acct.to_string()))
            })
            .collect()
    };

    let check = |label: &'static str| {
        let h = &h;
        let data = data.clone();
        async move {
            let placed = placed(&h.dump().await);
            let accounts: std::collections::BTreeSet<String> =
                placed.iter().map(|(_, a)| a.clone()).collect();
            let rollup = rollup_hours(&data, year).await;
            assert!(
                rollup.iter().all(|r| r.3 == "updated"),
                "{label}: the basis is named"
            );
            let mut billed = 0.0;
            for account in &accounts {
                let codex = codex_tickets(h, account, year, &placed);
                let ours = query_tickets(&data, account, year).await;
                let mut a = codex.clone();
                let mut b = ours.clone();
                a.sort_by(|x, y| x.partial_cmp(y).unwrap());
                b.sort_by(|x, y| x.partial_cmp(y).unwrap());
                assert_eq!(a.len(), b.len(), "{label} {account}: tickets of {year}");
                let months: Vec<(u32, f64)> = rollup
                    .iter()
                    .filter(|r| &r.0 == account)
                    .map(|r| (r.1, r.2))
                    .collect();
                for month in 1..=12 {
                    for profile in PROFILES {
                        let from_codex = ledger_bill(&codex, year, month, profile);
                        let from_query = ledger_bill(&ours, year, month, profile);
                        let from_rollup = bill_from_rollup(&months, month, profile);
                        assert!(
                            (from_codex - from_query).abs() < 1e-9,
                            "{label} {account} {year}-{month:02} {profile:?}: Codex {from_codex}, query {from_query}"
                        );
                        // The rollup's hours are rounded to 2 decimals per month.
                        assert!(
                            (from_codex - from_rollup).abs() < 0.01 * 13.0,
                            "{label} {account} {year}-{month:02} {profile:?}: Codex {from_codex}, rollup {from_rollup}"
                        );
                    }
                    billed += ledger_bill(&codex, year, month, (0.0, 0.0));
                }
            }
            billed
        }
    };
    let before = check("before").await;

    // Late updates: two hours logged this month on tickets that closed last year.
    let truth = h.sim.ground_truth();
    let late: Vec<i64> = truth
        .closed_tickets()
        .filter(|t| t.closed_at.is_some_and(|c| c.year() == year - 1))
        .map(|t| t.id)
        .take(8)
        .collect();
    assert!(late.len() >= 4, "{late:?}");
    for id in &late {
        h.sim.add_time_entry(*id, 120, true, true);
    }
    let next = h.incremental().await;
    assert!(next.error.is_none(), "{:?}", next.error);
    let after = check("after late updates").await;
    // At least one placed ticket of last year gets its two hours billed this year, and the
    // hours it had move with it.
    assert!(
        after >= before + 2.0,
        "the late hours are billed this year: {before} → {after}"
    );
}

/// `--explain`: the tickets and time entries behind every period, exactly what the period's
/// hours sum; a late entry shows under the month Ledger bills it in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_traces_every_billed_hour_to_tickets_and_time_entries() {
    let h = Harness::new(200, 37).await;
    assert!(h.full_sync().await.error.is_none());
    let year = Utc::now().year();
    let truth = h.sim.ground_truth();
    let late = truth
        .closed_tickets()
        .filter(|t| t.closed_at.is_some_and(|c| c.year() == year - 1))
        .map(|t| t.id)
        .next()
        .expect("a ticket closed last year");
    let entry = h.sim.add_time_entry(late, 120, true, true);
    assert!(h.incremental().await.error.is_none());
    let data = h.data();
    let base = |format: &str| {
        query_cmd(&data).args([
            "--year",
            &year.to_string(),
            "--rollup",
            "month",
            "--explain",
            "--format",
            format,
        ])
    };
    let out = base("json").run().await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let rows = out.json();
    let mut lines_expected = 0;
    let mut found_late = false;
    for row in rows.as_array().unwrap() {
        let detail = row["detail"].as_array().unwrap();
        assert_eq!(
            detail.len() as u64,
            row["tickets"].as_u64().unwrap(),
            "{row}"
        );
        let minutes: i64 = detail.iter().map(|t| t["minutes"].as_i64().unwrap()).sum();
        let hours = row["hours"].as_f64().unwrap();
        assert!((minutes as f64 / 60.0 - hours).abs() < 0.006, "{row}");
        for t in detail {
            let entries = t["time_entries"].as_array().unwrap();
            lines_expected += entries.len().max(1);
            if !t["hours_defaulted"].as_bool().unwrap() {
                let sum: i64 = entries.iter().map(|e| e["minutes"].as_i64().unwrap()).sum();
                // Each entry's minutes are rounded on their own (hh:mm:ss entries).
                assert!(
                    (sum - t["minutes"].as_i64().unwrap()).abs() <= entries.len() as i64,
                    "{t}"
                );
            }
            if t["ticket_id"] == late {
                found_late = true;
                let month = Utc::now().month();
                assert_eq!(row["period"], format!("{year}-{month:02}"), "{row}");
                assert!(entries.iter().any(|e| e["time_entry_id"] == entry), "{t}");
            }
        }
    }
    assert!(found_late, "the late ticket is explained under this month");
    let csv = base("csv").run().await;
    assert_eq!(csv.code, Some(0), "{}", csv.stderr);
    let mut lines = csv.stdout.lines();
    assert!(lines
        .next()
        .unwrap()
        .starts_with("account,period,basis,ticket_id,"));
    assert_eq!(lines.count(), lines_expected);
    let worked = base("json").args(["--basis", "worked"]).run().await;
    assert_eq!(worked.code, Some(3), "{}", worked.stderr);
}
