//! `query --rollup … --explain`: the tickets and time entries behind each period of a rollup,
//! so a disputed invoice line can be traced to the work it bills.

use std::collections::HashMap;

use chrono::{DateTime, Datelike, Utc};
use polars::prelude::*;
use serde::Serialize;

use super::rollup::{Basis, Period, RollupQuery};
use super::scan::{collect, describe, in_year};
use super::tickets::{iso, iso_opt, millis, optional, Columns};
use super::{Dataset, Result, Selection, Years};
use crate::tables::Table;

/// A ticket behind a rollup period, with its time entries.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExplainedTicket {
    /// The account.
    pub account: String,
    /// The Freshservice account (domain) the ticket is from.
    pub domain: String,
    /// The period it counts in (`2025-03` or `2025`).
    pub period: String,
    /// The ticket.
    pub ticket_id: i64,
    /// Its subject.
    pub subject: Option<String>,
    /// Its last update: Ledger's billing month with `--basis updated`.
    #[serde(serialize_with = "iso")]
    pub last_updated_at: DateTime<Utc>,
    /// When it closed.
    #[serde(serialize_with = "iso")]
    pub closed_at: DateTime<Utc>,
    /// Exact minutes of the ticket (`total_minutes`: what `hours` sums).
    pub minutes: i64,
    /// Exact billable minutes.
    pub billable_minutes: i64,
    /// Whether the ticket had no time entries and was given the default hours.
    pub hours_defaulted: bool,
    /// Its time entries, oldest first.
    pub time_entries: Vec<ExplainedEntry>,
}

/// A time entry behind a ticket of a rollup period.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExplainedEntry {
    /// Freshservice time entry id.
    pub time_entry_id: i64,
    /// When the work was done.
    #[serde(serialize_with = "iso_opt")]
    pub executed_at: Option<DateTime<Utc>>,
    /// Who logged it.
    pub agent_email: Option<String>,
    /// Its minutes.
    pub minutes: i64,
    /// Whether it is billable.
    pub billable: bool,
    /// Its note.
    pub note: Option<String>,
}

impl Dataset {
    /// The tickets behind each period of `query` (by account, period, then ticket), with their
    /// time entries. The tickets and minutes are exactly those [`Dataset::rollup`] sums.
    /// Ticket-level bases only (`updated`, `closed`): with `worked` a ticket's entries fall in
    /// several periods, and [`super::Error::Unsupported`]-like refusal is the caller's.
    pub async fn explain(&self, query: &RollupQuery) -> Result<Vec<ExplainedTicket>> {
        let selection = Selection {
            account: query.account.as_deref(),
            years: Years::of(query.basis, Some(query.year)),
        };
        let files = self
            .files(&[Table::Tickets, Table::TimeEntries], selection)
            .await?;
        let Some(tickets) = self.scan(&files[&Table::Tickets])? else {
            return Ok(Vec::new());
        };
        let date = match query.basis {
            Basis::Closed => "closed_at",
            _ => "last_updated_at",
        };
        let tickets = tickets
            .filter(in_year(date, query.year))
            .select([
                col("account"),
                col("domain"),
                col("ticket_id"),
                col("subject"),
                millis("last_updated_at"),
                millis("closed_at"),
                col("total_minutes"),
                col("billable_minutes"),
                col("hours_defaulted"),
            ])
            .sort(
                ["account", date, "ticket_id"],
                SortMultipleOptions::default(),
            );
        let entries = self.scan(&files[&Table::TimeEntries])?.map(|lf| {
            lf.select([
                col("domain"),
                col("ticket_id"),
                col("time_entry_id"),
                millis("executed_at"),
                col("agent_email"),
                col("minutes"),
                col("billable"),
                col("note"),
            ])
            .sort(
                ["ticket_id", "executed_at", "time_entry_id"],
                SortMultipleOptions::default(),
            )
        });
        let what = |t: Table| describe(&files[&t]);
        let (tickets, entries) = tokio::try_join!(
            collect(tickets, what(Table::Tickets)),
            optional(entries, what(Table::TimeEntries)),
        )?;
        // A ticket is its domain and id: two accounts' ids collide.
        let mut by_ticket: HashMap<(String, i64), Vec<ExplainedEntry>> = HashMap::new();
        if let Some(df) = &entries {
            let what = what(Table::TimeEntries);
            let c = Columns { df, what: &what };
            let mut domains = c.strings("domain")?;
            let tickets = c.i64s("ticket_id")?;
            let ids = c.i64s("time_entry_id")?;
            let executed = c.times("executed_at")?;
            let mut agents = c.strings("agent_email")?;
            let minutes = c.i64s("minutes")?;
            let billable = c.bools("billable")?;
            let mut notes = c.strings("note")?;
            for row in 0..df.height() {
                let key = (
                    c.required("domain", row, domains[row].take())?,
                    c.required("ticket_id", row, tickets[row])?,
                );
                by_ticket.entry(key).or_default().push(ExplainedEntry {
                    time_entry_id: c.required("time_entry_id", row, ids[row])?,
                    executed_at: executed[row],
                    agent_email: agents[row].take(),
                    minutes: c.required("minutes", row, minutes[row])?,
                    billable: c.required("billable", row, billable[row])?,
                    note: notes[row].take(),
                });
            }
        }
        let what = what(Table::Tickets);
        let c = Columns {
            df: &tickets,
            what: &what,
        };
        let mut accounts = c.strings("account")?;
        let mut domains = c.strings("domain")?;
        let ids = c.i64s("ticket_id")?;
        let mut subjects = c.strings("subject")?;
        let updated = c.times("last_updated_at")?;
        let closed = c.times("closed_at")?;
        let minutes = c.i64s("total_minutes")?;
        let billable = c.i64s("billable_minutes")?;
        let defaulted = c.bools("hours_defaulted")?;
        let mut out = Vec::with_capacity(tickets.height());
        for row in 0..tickets.height() {
            let ticket_id = c.required("ticket_id", row, ids[row])?;
            let domain = c.required("domain", row, domains[row].take())?;
            let time_entries = by_ticket
                .remove(&(domain.clone(), ticket_id))
                .unwrap_or_default();
            let last_updated_at = c.required("last_updated_at", row, updated[row])?;
            let closed_at = c.required("closed_at", row, closed[row])?;
            let at = match query.basis {
                Basis::Closed => closed_at,
                _ => last_updated_at,
            };
            out.push(ExplainedTicket {
                account: accounts[row].take().unwrap_or_default(),
                domain,
                period: match query.period {
                    Period::Month => format!("{}-{:02}", query.year, at.month()),
                    Period::Year => query.year.to_string(),
                },
                ticket_id,
                subject: subjects[row].take(),
                last_updated_at,
                closed_at,
                minutes: c.required("total_minutes", row, minutes[row])?,
                billable_minutes: c.required("billable_minutes", row, billable[row])?,
                hours_defaulted: defaulted[row].unwrap_or(false),
                time_entries,
            });
        }
        out.sort_by(|a, b| {
            (&a.account, &a.period, a.ticket_id, &a.domain).cmp(&(
                &b.account,
                &b.period,
                b.ticket_id,
                &b.domain,
            ))
        });
        Ok(out)
    }
}
