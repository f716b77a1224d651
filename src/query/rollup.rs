//! Hour rollups for billing: tickets and hours per account and month (or year).
//!
//! Hours are summed as exact minutes (`total_minutes`, `billable_minutes`, time entries'
//! `minutes`); they become hours only when printed.

use std::collections::BTreeMap;

use polars::prelude::*;

use super::scan::{collect, column, contract, describe, in_year};
use super::{Dataset, Result};
use crate::tables::Table;

/// The length of a rollup period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    /// One row per month of the year (`2025-03`), months without tickets as zeros.
    Month,
    /// One row for the year (`2025`).
    Year,
}

/// Which date decides the year (and month) a ticket's hours count in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Basis {
    /// All of a ticket's hours in the month of its `last_updated_at`: what Ledger bills (it
    /// bills `total_hours_spent` in the month of `last_updated_at`), and what Codex's `?year=`
    /// selects. A time entry logged after close moves the ticket's hours to the month it was
    /// logged in, as it did with Codex. The default.
    #[default]
    Updated,
    /// All of a ticket's hours in the month it closed (`closed_at`, the `year=` partition).
    Closed,
    /// Each time entry's minutes in the month of its `executed_at` (the ticket's `closed_at`
    /// when the entry has none). A ticket without time entries has no date for its default
    /// hours other than its close, so those count in the month it closed.
    Worked,
}

impl Basis {
    /// How the output names it: `updated`, `closed`, `worked`.
    pub fn as_str(self) -> &'static str {
        match self {
            Basis::Updated => "updated",
            Basis::Closed => "closed",
            Basis::Worked => "worked",
        }
    }
}

/// A rollup of one year, for one account or for every account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RollupQuery {
    /// A validated account number; `None` for one set of rows per account.
    pub account: Option<String>,
    /// The year (UTC) the hours count in.
    pub year: i32,
    /// Months or the whole year.
    pub period: Period,
    /// Which date decides the period a ticket's (or time entry's) hours count in.
    pub basis: Basis,
}

/// One period of one account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RollupRow {
    /// The account number.
    pub account: String,
    /// The year.
    pub year: i32,
    /// 1–12 in a monthly rollup, `None` in a yearly one.
    pub month: Option<u32>,
    /// Which date put the hours in the period.
    pub basis: Basis,
    /// Tickets whose hours count in the period (last updated in it, closed in it, or with
    /// work in it, by the basis).
    pub tickets: u64,
    /// Exact minutes behind `hours`.
    pub minutes: i64,
    /// Exact minutes behind `billable_hours`.
    pub billable_minutes: i64,
}

impl RollupRow {
    /// `2025-03` or `2025`.
    pub fn period(&self) -> String {
        match self.month {
            Some(month) => format!("{}-{month:02}", self.year),
            None => self.year.to_string(),
        }
    }

    /// Minutes not billable: `minutes - billable_minutes`.
    pub fn non_billable_minutes(&self) -> i64 {
        self.minutes - self.billable_minutes
    }

    fn zero(account: &str, year: i32, month: Option<u32>, basis: Basis) -> RollupRow {
        RollupRow {
            account: account.to_string(),
            year,
            month,
            basis,
            tickets: 0,
            minutes: 0,
            billable_minutes: 0,
        }
    }
}

impl Dataset {
    /// The rollup, sorted by account, then period. Every account with hours in the year gets
    /// all twelve months in a monthly rollup; an account without any gets no rows.
    pub async fn rollup(&self, query: &RollupQuery) -> Result<Vec<RollupRow>> {
        if query.basis != Basis::Worked {
            // One row per ticket: four columns of the tickets files (see [`super::minutes`]).
            let sums = self.ticket_rollup(query).await?;
            let found = sums
                .into_iter()
                .map(
                    |((account, month), (tickets, minutes, billable))| RollupRow {
                        account,
                        year: query.year,
                        month,
                        basis: query.basis,
                        tickets,
                        minutes,
                        billable_minutes: billable,
                    },
                )
                .collect();
            return Ok(fill(found, query));
        }
        let files = self.rollup_files(query).await?;
        let tickets_files = &files[&Table::Tickets];
        let Some(tickets) = self.scan(tickets_files)? else {
            return Ok(Vec::new());
        };
        let month = |name: &str| col(name).dt().month().cast(DataType::Int32).alias("month");
        // Worked: each time entry in the month it was done, for tickets closed in any year.
        let year_is = |name: &str| in_year(name, query.year);
        let defaulted = tickets
            .clone()
            .filter(col("hours_defaulted").and(year_is("closed_at")))
            .select([
                col("account"),
                col("domain"),
                col("ticket_id"),
                month("closed_at"),
                col("total_minutes").alias("minutes"),
                col("billable_minutes"),
            ]);
        let rows = match self.scan(&files[&Table::TimeEntries])? {
            None => defaulted,
            Some(entries) => {
                // A ticket is its domain and id: two accounts' ids collide.
                let closed = tickets.select([col("domain"), col("ticket_id"), col("closed_at")]);
                let worked = entries
                    .select([
                        col("account"),
                        col("domain"),
                        col("ticket_id"),
                        col("executed_at"),
                        col("minutes"),
                        col("billable"),
                    ])
                    .join(
                        closed,
                        [col("domain"), col("ticket_id")],
                        [col("domain"), col("ticket_id")],
                        JoinArgs::new(JoinType::Left),
                    )
                    .with_column(col("executed_at").fill_null(col("closed_at")))
                    .filter(year_is("executed_at"))
                    .select([
                        col("account"),
                        col("domain"),
                        col("ticket_id"),
                        month("executed_at"),
                        col("minutes"),
                        when(col("billable"))
                            .then(col("minutes"))
                            .otherwise(lit(0i64))
                            .alias("billable_minutes"),
                    ]);
                concat([worked, defaulted], UnionArgs::default()).map_err(|source| {
                    super::Error::Read {
                        what: describe(&files[&Table::TimeEntries]),
                        source,
                    }
                })?
            }
        };
        // One row per ticket and period first: the count is of (domain, ticket_id).
        let mut per_ticket = vec![col("account"), col("domain"), col("ticket_id")];
        if query.period == Period::Month {
            per_ticket.push(col("month"));
        }
        let rows = rows.group_by(per_ticket).agg([
            col("minutes").sum().cast(DataType::Int64),
            col("billable_minutes").sum().cast(DataType::Int64),
        ]);
        let count = len();
        let keys = match query.period {
            Period::Month => vec![col("account"), col("month")],
            Period::Year => vec![col("account")],
        };
        let grouped = rows.group_by(keys).agg([
            count.cast(DataType::Int64).alias("tickets"),
            col("minutes").sum().cast(DataType::Int64),
            col("billable_minutes").sum().cast(DataType::Int64),
        ]);
        let what = describe(tickets_files);
        let df = collect(grouped, what.clone()).await?;
        let found = rows_of(&df, &what, query)?;
        Ok(fill(found, query))
    }
}

fn rows_of(df: &DataFrame, what: &str, query: &RollupQuery) -> Result<Vec<RollupRow>> {
    let i64s = |name: &str| -> Result<Vec<Option<i64>>> {
        let s = column(df, name, what)?;
        Ok(contract(s.i64(), what)?.iter().collect())
    };
    let accounts: Vec<Option<String>> = contract(column(df, "account", what)?.str(), what)?
        .iter()
        .map(|a| a.map(str::to_string))
        .collect();
    let months: Vec<Option<i32>> = match query.period {
        Period::Month => contract(column(df, "month", what)?.i32(), what)?
            .iter()
            .collect(),
        Period::Year => vec![None; df.height()],
    };
    let tickets = i64s("tickets")?;
    let minutes = i64s("minutes")?;
    let billable = i64s("billable_minutes")?;
    let mut out = Vec::with_capacity(df.height());
    for row in 0..df.height() {
        let month = match (query.period, months[row]) {
            (Period::Year, _) => None,
            (Period::Month, Some(m @ 1..=12)) => Some(m as u32),
            (Period::Month, other) => {
                return Err(super::Error::Contract {
                    what: what.to_string(),
                    detail: format!("a row has no valid month ({other:?})"),
                })
            }
        };
        out.push(RollupRow {
            account: accounts[row].clone().unwrap_or_default(),
            year: query.year,
            month,
            basis: query.basis,
            tickets: tickets[row].unwrap_or(0).max(0) as u64,
            minutes: minutes[row].unwrap_or(0),
            billable_minutes: billable[row].unwrap_or(0),
        });
    }
    Ok(out)
}

/// Sorts the rows and adds the empty months of every account that has a row.
fn fill(found: Vec<RollupRow>, query: &RollupQuery) -> Vec<RollupRow> {
    let mut by_account: BTreeMap<String, BTreeMap<Option<u32>, RollupRow>> = BTreeMap::new();
    for row in found {
        by_account
            .entry(row.account.clone())
            .or_default()
            .insert(row.month, row);
    }
    let mut out = Vec::new();
    for (account, mut rows) in by_account {
        match query.period {
            Period::Year => out.extend(rows.into_values()),
            Period::Month => {
                for month in 1..=12 {
                    out.push(rows.remove(&Some(month)).unwrap_or_else(|| {
                        RollupRow::zero(&account, query.year, Some(month), query.basis)
                    }));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(account: &str, month: Option<u32>, minutes: i64) -> RollupRow {
        RollupRow {
            account: account.into(),
            year: 2025,
            month,
            basis: Basis::Closed,
            tickets: 1,
            minutes,
            billable_minutes: minutes / 2,
        }
    }

    #[test]
    fn months_are_filled_per_account_and_sorted() {
        let query = RollupQuery {
            account: None,
            year: 2025,
            period: Period::Month,
            basis: Basis::Closed,
        };
        let rows = fill(
            vec![
                row("b", Some(3), 30),
                row("a", Some(12), 90),
                row("a", Some(1), 15),
            ],
            &query,
        );
        assert_eq!(rows.len(), 24);
        let periods: Vec<String> = rows
            .iter()
            .map(|r| format!("{} {}", r.account, r.period()))
            .collect();
        assert_eq!(periods[0], "a 2025-01");
        assert_eq!(periods[11], "a 2025-12");
        assert_eq!(periods[12], "b 2025-01");
        assert_eq!(rows[1], RollupRow::zero("a", 2025, Some(2), Basis::Closed));
        assert_eq!(rows[14].minutes, 30);
        assert_eq!(rows[11].non_billable_minutes(), 45);
    }

    #[test]
    fn yearly_rows_are_not_filled() {
        let query = RollupQuery {
            account: None,
            year: 2025,
            period: Period::Year,
            basis: Basis::Worked,
        };
        let rows = fill(vec![row("b", None, 30), row("a", None, 90)], &query);
        assert_eq!(
            rows.iter().map(|r| r.period()).collect::<Vec<_>>(),
            ["2025", "2025"]
        );
        assert_eq!(rows[0].account, "a");
        assert!(fill(Vec::new(), &query).is_empty());
    }
}
