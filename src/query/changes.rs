//! `--changes-since`: the adjustment list after an invoice. For every account and month of a
//! rollup whose hours differ between the tables as committed at an instant and now, the hours
//! then and now and the tickets whose hours moved (time entries logged late, a ticket
//! re-synced, reopened or moved).

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};

use super::minutes::Periods;
use super::{Dataset, Result, RollupQuery};
use crate::state::delta::read::{self, View};
use crate::state::delta::At;
use crate::tables::Table;

/// One account and period whose hours changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The Freshservice domain.
    pub domain: String,
    /// The account.
    pub account: String,
    /// The period (`2025-03`, or `2025` for a yearly rollup).
    pub period: String,
    /// Exact minutes of the period as the tables were at the instant.
    pub minutes_then: i64,
    /// Exact minutes now.
    pub minutes_now: i64,
    /// The tickets whose minutes in the period differ, ascending.
    pub tickets: Vec<i64>,
}

/// The periods of two readings whose minutes differ, with the tickets behind the difference.
/// One row per domain: a customer's tickets of two Freshservice accounts are two adjustments.
pub(super) fn diff(then: &Periods, now: &Periods) -> Vec<Change> {
    let keys: BTreeSet<&(String, String, String)> = then.keys().chain(now.keys()).collect();
    let empty = BTreeMap::new();
    let mut out = Vec::new();
    for key in keys {
        let a = then.get(key).unwrap_or(&empty);
        let b = now.get(key).unwrap_or(&empty);
        let (minutes_then, minutes_now): (i64, i64) = (a.values().sum(), b.values().sum());
        if minutes_then == minutes_now {
            continue;
        }
        let ids: BTreeSet<i64> = a.keys().chain(b.keys()).copied().collect();
        let tickets = ids
            .into_iter()
            .filter(|id| a.get(id) != b.get(id))
            .collect();
        out.push(Change {
            domain: key.0.clone(),
            account: key.1.clone(),
            period: key.2.clone(),
            minutes_then,
            minutes_now,
            tickets,
        });
    }
    out
}

impl Dataset {
    /// The periods of `query` whose hours changed since `since` (ticket-level bases only, as
    /// [`Dataset::explain`]). Needs the files of that instant: a dataset with `history_days`.
    pub async fn changes_since(
        &self,
        query: &RollupQuery,
        since: DateTime<Utc>,
    ) -> Result<Vec<Change>> {
        // Minutes per ticket are all a difference needs (see [`super::minutes`]). Only the
        // accounts whose rows changed since can differ: the others are not read at all.
        let now = match self.changed_accounts(since).await {
            Some(accounts) => Dataset {
                accounts: Some(std::sync::Arc::new(accounts)),
                ..self.clone()
            },
            None => self.clone(),
        };
        let then = now.clone().as_of(since);
        let (now, then) =
            tokio::try_join!(now.minutes_by_period(query), then.minutes_by_period(query))?;
        Ok(diff(&then, &now))
    }

    /// The (domain, account) pairs with a partition of `tickets` whose rows a commit after
    /// `since` changed (see [`read::changed_since`]): the periods of any other account hold the
    /// same tickets at both instants, so their minutes cannot differ. An account's periods come
    /// from all its partitions (a ticket's period is its last update, its partition the year it
    /// closed), so an account is read whole or not at all. `None` (read every account) when the
    /// log cannot show which changed, or a dataset commit is under way (the committed view is
    /// then not the latest version the log's changes lead to).
    async fn changed_accounts(&self, since: DateTime<Utc>) -> Option<BTreeSet<(String, String)>> {
        if self.at != At::Committed || self.accounts.is_some() {
            return None;
        }
        let settled = match View::open(&self.storage, &self.at, &[Table::Tickets], &|_| true).await
        {
            Ok(view) => view.settled(),
            Err(e) => {
                tracing::debug!(error = %e, "reading every account: the committed view did not open");
                false
            }
        };
        if !settled {
            return None;
        }
        match read::changed_since(&self.storage, Table::Tickets, since).await {
            Ok(Some(partitions)) => Some(
                partitions
                    .into_iter()
                    .filter_map(|p| Some((p.domain, p.account?)))
                    .collect(),
            ),
            Ok(None) => None,
            Err(e) => {
                tracing::debug!(error = %e, "reading every account: the log after the instant did not read");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn periods(rows: &[(&str, &str, i64, i64)]) -> Periods {
        let mut out = Periods::new();
        for &(account, period, id, minutes) in rows {
            out.entry(("acme".into(), account.into(), period.into()))
                .or_default()
                .insert(id, minutes);
        }
        out
    }

    #[test]
    fn only_periods_whose_minutes_moved_with_the_tickets_that_moved_them() {
        let then = periods(&[
            ("A", "2026-03", 1, 60),
            ("A", "2026-03", 2, 30),
            ("B", "2026-03", 3, 15),
        ]);
        // Ticket 2 got a late entry and moved to April (last update); ticket 4 is new in March;
        // B is unchanged.
        let now = periods(&[
            ("A", "2026-03", 1, 60),
            ("A", "2026-03", 4, 10),
            ("A", "2026-04", 2, 45),
            ("B", "2026-03", 3, 15),
        ]);
        let changes = diff(&then, &now);
        assert_eq!(
            changes,
            vec![
                Change {
                    domain: "acme".into(),
                    account: "A".into(),
                    period: "2026-03".into(),
                    minutes_then: 90,
                    minutes_now: 70,
                    tickets: vec![2, 4],
                },
                Change {
                    domain: "acme".into(),
                    account: "A".into(),
                    period: "2026-04".into(),
                    minutes_then: 0,
                    minutes_now: 45,
                    tickets: vec![2],
                },
            ]
        );
    }
}
