//! An account's tickets in the Codex API's JSON shape (`GET /api/companies/{account}/tickets`):
//! one document per ticket with its public conversations and private notes nested.

use std::collections::HashMap;

use chrono::{DateTime, SecondsFormat, Utc};
use polars::prelude::*;
use serde::{Serialize, Serializer};

use super::scan::{collect, column, contract, describe, in_year};
use super::{Dataset, Result};
use crate::tables::Table;

/// One account's tickets, of one year or of every year.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TicketQuery {
    /// A validated account number (the `account=` partition).
    pub account: String,
    /// The UTC year of the basis date (`None`: every year).
    pub year: Option<i32>,
    /// Which date's year `year` is: `last_updated_at` ([`Basis::Updated`], what Codex's
    /// `?year=` selects: the default) or `closed_at` ([`Basis::Closed`], the `year=`
    /// partition). [`Basis::Worked`] is for rollups only.
    pub basis: super::Basis,
}

/// A ticket as the Codex API served it, plus `billable_hours`. The field order is the output's
/// key order (and CSV's column order). Each field holds the `tickets` column of the same name
/// (`schemas/tickets.json`); times are written as ISO-8601 UTC text.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TicketDoc {
    /// Freshservice ticket id (primary key).
    pub ticket_id: i64,
    /// Display number (the id as text, as in #17531).
    pub ticket_number: String,
    /// Ticket title.
    pub subject: Option<String>,
    /// Original HTML description.
    pub description: Option<String>,
    /// Plain-text description (HTML rendered to text).
    pub description_text: Option<String>,
    /// Status name: Open, Pending, Resolved, Closed, or 'Status N' for custom codes.
    pub status: String,
    /// Priority name: Low, Medium, High, Urgent, or 'Priority N' for unknown codes.
    pub priority: Option<String>,
    /// Requester email (the requester may be an agent).
    pub requester_email: Option<String>,
    /// Requester name.
    pub requester_name: Option<String>,
    /// When the ticket was created.
    #[serde(serialize_with = "iso_opt")]
    pub created_at: Option<DateTime<Utc>>,
    /// The ticket's `updated_at` when it was synced.
    #[serde(serialize_with = "iso")]
    pub last_updated_at: DateTime<Utc>,
    /// `stats.closed_at`, or `updated_at` when the API gives none; its year is the year partition.
    #[serde(serialize_with = "iso")]
    pub closed_at: DateTime<Utc>,
    /// Hours of all time entries (`total_minutes` / 60); the default hours when there are none.
    pub total_hours_spent: f64,
    /// Not in the Codex shape: the billable share of `total_hours_spent` (Ledger bills
    /// `total_hours_spent`; this is for reports that separate what was billable).
    pub billable_hours: f64,
    /// Not in the Codex shape: the Freshservice account (domain) the ticket is from. One
    /// customer's tickets can come from several accounts, whose ticket ids collide: the ticket
    /// is `(domain, ticket_id)`.
    pub domain: String,
    /// Public conversations, oldest first (ids break ties), as in the markdown.
    pub conversations: Vec<ConversationDoc>,
    /// Private notes, oldest first (ids break ties).
    pub notes: Vec<NoteDoc>,
}

/// A public conversation in the Codex shape: the `conversations` columns
/// (`schemas/conversations.json`), `conversation_id` as `id`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConversationDoc {
    /// Freshservice conversation id.
    pub id: i64,
    /// Plain-text body (HTML rendered to text).
    pub body: String,
    /// Original HTML body.
    pub body_html: Option<String>,
    /// Sender.
    pub from_email: Option<String>,
    /// Recipients.
    pub to_emails: Vec<String>,
    /// When the message was created.
    #[serde(serialize_with = "iso_opt")]
    pub created_at: Option<DateTime<Utc>>,
    /// When the message was last updated.
    #[serde(serialize_with = "iso_opt")]
    pub updated_at: Option<DateTime<Utc>>,
    /// True when it came from the requester side.
    pub incoming: bool,
    /// Always false here: private conversations are in notes.
    pub private: bool,
    /// Author user id.
    pub user_id: Option<i64>,
    /// The support mailbox involved.
    pub support_email: Option<String>,
}

/// A private note in the Codex shape: the `notes` columns (`schemas/notes.json`), `note_id` as
/// `id`, with every key Codex emits for a note (the keys of a conversation: Codex builds both
/// from one conversation entry, hivematrix-codex `app/psa/freshservice.py`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NoteDoc {
    /// Freshservice conversation id of the note.
    pub id: i64,
    /// Plain-text body (HTML rendered to text).
    pub body: String,
    /// Original HTML body.
    pub body_html: Option<String>,
    /// Author: the API's `from_email`, else the author agent's email.
    pub from_email: Option<String>,
    /// Who the note notified (empty in rows written before dataset format 3).
    pub to_emails: Vec<String>,
    /// When the note was created.
    #[serde(serialize_with = "iso_opt")]
    pub created_at: Option<DateTime<Utc>>,
    /// When the note was last updated.
    #[serde(serialize_with = "iso_opt")]
    pub updated_at: Option<DateTime<Utc>>,
    /// The API's incoming flag (false in rows written before dataset format 3).
    pub incoming: bool,
    /// Always true: a note is a private conversation.
    pub private: bool,
    /// Author agent id.
    pub user_id: Option<i64>,
    /// The support mailbox involved.
    pub support_email: Option<String>,
}

impl TicketDoc {
    /// The document of a ticket's rows (as `export-person` builds it from rows read back).
    pub fn of_rows(
        domain: &str,
        t: &crate::normalize::TicketRow,
        conversations: &[&crate::normalize::ConversationRow],
        notes: &[&crate::normalize::NoteRow],
    ) -> TicketDoc {
        TicketDoc {
            ticket_id: t.ticket_id,
            ticket_number: t.ticket_number.clone(),
            subject: t.subject.clone(),
            description: t.description.clone(),
            description_text: t.description_text.clone(),
            status: t.status.clone(),
            priority: t.priority.clone(),
            requester_email: t.requester_email.clone(),
            requester_name: t.requester_name.clone(),
            created_at: t.created_at,
            last_updated_at: t.last_updated_at,
            closed_at: t.closed_at,
            total_hours_spent: t.total_hours_spent,
            billable_hours: t.billable_hours,
            domain: domain.to_string(),
            conversations: conversations
                .iter()
                .map(|c| ConversationDoc {
                    id: c.conversation_id,
                    body: c.body.clone(),
                    body_html: c.body_html.clone(),
                    from_email: c.from_email.clone(),
                    to_emails: c.to_emails.clone(),
                    created_at: c.created_at,
                    updated_at: c.updated_at,
                    incoming: c.incoming,
                    private: c.private,
                    user_id: c.user_id,
                    support_email: c.support_email.clone(),
                })
                .collect(),
            notes: notes
                .iter()
                .map(|n| NoteDoc {
                    id: n.note_id,
                    body: n.body.clone(),
                    body_html: n.body_html.clone(),
                    from_email: n.from_email.clone(),
                    to_emails: n.to_emails.clone(),
                    created_at: n.created_at,
                    updated_at: n.updated_at,
                    incoming: n.incoming,
                    private: true,
                    user_id: n.user_id,
                    support_email: n.support_email.clone(),
                })
                .collect(),
        }
    }
}

/// ISO-8601 in UTC with a `Z`, seconds unless the instant has milliseconds:
/// `2025-01-15T10:30:00Z`.
pub(crate) fn iso_text(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

pub(super) fn iso<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&iso_text(t))
}

pub(super) fn iso_opt<S: Serializer>(t: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => iso(t, s),
        None => s.serialize_none(),
    }
}

const TICKET_STRINGS: [&str; 8] = [
    "ticket_number",
    "subject",
    "description",
    "description_text",
    "status",
    "priority",
    "requester_email",
    "requester_name",
];

impl Dataset {
    /// The account's tickets, sorted by `closed_at`, then `ticket_id`, then `domain`. An account
    /// or year without tickets gives an empty list; a dataset without any tickets is
    /// [`super::Error::Empty`].
    pub async fn tickets(&self, query: &TicketQuery) -> Result<Vec<TicketDoc>> {
        let files = self.ticket_files(query).await?;
        let Some(tickets) = self.scan(&files[&Table::Tickets])? else {
            return Ok(Vec::new());
        };
        // The partitions are closed years; last updated in Y is a filter over those up to Y.
        let tickets = match (query.basis, query.year) {
            (super::Basis::Updated, Some(year)) => tickets.filter(in_year("last_updated_at", year)),
            _ => tickets,
        };
        let tickets = tickets
            .select(
                [col("domain"), col("ticket_id")]
                    .into_iter()
                    .chain(TICKET_STRINGS.iter().map(|c| col(*c)))
                    .chain(
                        ["created_at", "last_updated_at", "closed_at"]
                            .iter()
                            .map(|c| millis(c)),
                    )
                    .chain([col("total_hours_spent"), col("billable_hours")])
                    .collect::<Vec<_>>(),
            )
            .sort(
                ["closed_at", "ticket_id", "domain"],
                SortMultipleOptions::default(),
            );
        let conversations = self.scan(&files[&Table::Conversations])?.map(|lf| {
            lf.select([
                col("domain"),
                col("ticket_id"),
                col("conversation_id"),
                col("body"),
                col("body_html"),
                col("from_email"),
                col("to_emails"),
                millis("created_at"),
                millis("updated_at"),
                col("incoming"),
                col("private"),
                col("user_id"),
                col("support_email"),
            ])
            .sort(
                ["ticket_id", "created_at", "conversation_id"],
                SortMultipleOptions::default(),
            )
        });
        let notes = self.scan(&files[&Table::Notes])?.map(|lf| {
            lf.select([
                col("domain"),
                col("ticket_id"),
                col("note_id"),
                col("body"),
                col("body_html"),
                col("from_email"),
                col("to_emails"),
                millis("created_at"),
                millis("updated_at"),
                col("incoming"),
                col("user_id"),
                col("support_email"),
            ])
            .sort(
                ["ticket_id", "created_at", "note_id"],
                SortMultipleOptions::default(),
            )
        });

        // The three tables are independent reads: run them together.
        let what = |t: Table| describe(&files[&t]);
        let (tickets, conversations, notes) = tokio::try_join!(
            collect(tickets, what(Table::Tickets)),
            optional(conversations, what(Table::Conversations)),
            optional(notes, what(Table::Notes)),
        )?;

        let mut conversations = match conversations {
            Some(df) => conversation_docs(&df, &what(Table::Conversations))?,
            None => HashMap::new(),
        };
        let mut notes = match notes {
            Some(df) => note_docs(&df, &what(Table::Notes))?,
            None => HashMap::new(),
        };
        ticket_docs(&tickets, &what(Table::Tickets), |key| {
            (
                conversations.remove(key).unwrap_or_default(),
                notes.remove(key).unwrap_or_default(),
            )
        })
    }
}

/// A timestamp column as epoch milliseconds, whatever unit the file stored.
pub(super) fn millis(name: &str) -> Expr {
    col(name).dt().timestamp(TimeUnit::Milliseconds).alias(name)
}

pub(super) async fn optional(lf: Option<LazyFrame>, what: String) -> Result<Option<DataFrame>> {
    match lf {
        Some(lf) => collect(lf, what).await.map(Some),
        None => Ok(None),
    }
}

/// Typed access to the columns of one collected frame, with errors naming the data.
pub(super) struct Columns<'a> {
    pub(super) df: &'a DataFrame,
    pub(super) what: &'a str,
}

impl Columns<'_> {
    pub(super) fn i64s(&self, name: &str) -> Result<Vec<Option<i64>>> {
        let s = contract(
            column(self.df, name, self.what)?.cast(&DataType::Int64),
            self.what,
        )?;
        Ok(contract(s.i64(), self.what)?.iter().collect())
    }

    pub(super) fn times(&self, name: &str) -> Result<Vec<Option<DateTime<Utc>>>> {
        Ok(self
            .i64s(name)?
            .iter()
            .map(|ms| ms.and_then(DateTime::from_timestamp_millis))
            .collect())
    }

    pub(super) fn strings(&self, name: &str) -> Result<Vec<Option<String>>> {
        let s = column(self.df, name, self.what)?;
        Ok(contract(s.str(), self.what)?
            .iter()
            .map(|v| v.map(str::to_string))
            .collect())
    }

    pub(super) fn bools(&self, name: &str) -> Result<Vec<Option<bool>>> {
        let s = column(self.df, name, self.what)?;
        Ok(contract(s.bool(), self.what)?.iter().collect())
    }

    fn f64s(&self, name: &str) -> Result<Vec<Option<f64>>> {
        let s = column(self.df, name, self.what)?;
        Ok(contract(s.f64(), self.what)?.iter().collect())
    }

    fn string_lists(&self, name: &str) -> Result<Vec<Vec<String>>> {
        let s = column(self.df, name, self.what)?;
        let mut out = Vec::with_capacity(s.len());
        for item in contract(s.list(), self.what)?.series_iter() {
            let mut values = Vec::new();
            if let Some(inner) = item {
                for v in contract(inner.str(), self.what)?.iter().flatten() {
                    values.push(v.to_string());
                }
            }
            out.push(values);
        }
        Ok(out)
    }

    /// A value the contract says is never null.
    pub(super) fn required<T>(&self, name: &str, row: usize, value: Option<T>) -> Result<T> {
        value.ok_or_else(|| super::Error::Contract {
            what: self.what.to_string(),
            detail: format!("{name} is null in row {row}, but the column is not nullable"),
        })
    }
}

/// A ticket of the dataset: its domain and id (ids of two Freshservice accounts collide).
type Key = (String, i64);

fn conversation_docs(df: &DataFrame, what: &str) -> Result<HashMap<Key, Vec<ConversationDoc>>> {
    let c = Columns { df, what };
    let mut domains = c.strings("domain")?;
    let ticket_ids = c.i64s("ticket_id")?;
    let ids = c.i64s("conversation_id")?;
    let mut bodies = c.strings("body")?;
    let mut htmls = c.strings("body_html")?;
    let mut froms = c.strings("from_email")?;
    let mut tos = c.string_lists("to_emails")?;
    let created = c.times("created_at")?;
    let updated = c.times("updated_at")?;
    let incoming = c.bools("incoming")?;
    let private = c.bools("private")?;
    let users = c.i64s("user_id")?;
    let mut support = c.strings("support_email")?;
    let mut out: HashMap<Key, Vec<ConversationDoc>> = HashMap::new();
    for row in 0..df.height() {
        let key = (
            c.required("domain", row, domains[row].take())?,
            c.required("ticket_id", row, ticket_ids[row])?,
        );
        out.entry(key).or_default().push(ConversationDoc {
            id: c.required("conversation_id", row, ids[row])?,
            body: c.required("body", row, bodies[row].take())?,
            body_html: htmls[row].take(),
            from_email: froms[row].take(),
            to_emails: std::mem::take(&mut tos[row]),
            created_at: created[row],
            updated_at: updated[row],
            incoming: c.required("incoming", row, incoming[row])?,
            private: c.required("private", row, private[row])?,
            user_id: users[row],
            support_email: support[row].take(),
        });
    }
    Ok(out)
}

fn note_docs(df: &DataFrame, what: &str) -> Result<HashMap<Key, Vec<NoteDoc>>> {
    let c = Columns { df, what };
    let mut domains = c.strings("domain")?;
    let ticket_ids = c.i64s("ticket_id")?;
    let ids = c.i64s("note_id")?;
    let mut bodies = c.strings("body")?;
    let mut htmls = c.strings("body_html")?;
    let mut froms = c.strings("from_email")?;
    // Null in rows written before dataset format 3: Codex's defaults ([] and false).
    let mut tos = c.string_lists("to_emails")?;
    let created = c.times("created_at")?;
    let updated = c.times("updated_at")?;
    let incoming = c.bools("incoming")?;
    let users = c.i64s("user_id")?;
    let mut support = c.strings("support_email")?;
    let mut out: HashMap<Key, Vec<NoteDoc>> = HashMap::new();
    for row in 0..df.height() {
        let key = (
            c.required("domain", row, domains[row].take())?,
            c.required("ticket_id", row, ticket_ids[row])?,
        );
        out.entry(key).or_default().push(NoteDoc {
            id: c.required("note_id", row, ids[row])?,
            body: c.required("body", row, bodies[row].take())?,
            body_html: htmls[row].take(),
            from_email: froms[row].take(),
            to_emails: std::mem::take(&mut tos[row]),
            created_at: created[row],
            updated_at: updated[row],
            incoming: incoming[row].unwrap_or(false),
            // Notes are the private conversations by definition.
            private: true,
            user_id: users[row],
            support_email: support[row].take(),
        });
    }
    Ok(out)
}

fn ticket_docs(
    df: &DataFrame,
    what: &str,
    mut children: impl FnMut(&Key) -> (Vec<ConversationDoc>, Vec<NoteDoc>),
) -> Result<Vec<TicketDoc>> {
    let c = Columns { df, what };
    let mut domains = c.strings("domain")?;
    let ids = c.i64s("ticket_id")?;
    let mut numbers = c.strings("ticket_number")?;
    let mut subjects = c.strings("subject")?;
    let mut descriptions = c.strings("description")?;
    let mut texts = c.strings("description_text")?;
    let mut statuses = c.strings("status")?;
    let mut priorities = c.strings("priority")?;
    let mut emails = c.strings("requester_email")?;
    let mut names = c.strings("requester_name")?;
    let created = c.times("created_at")?;
    let updated = c.times("last_updated_at")?;
    let closed = c.times("closed_at")?;
    let hours = c.f64s("total_hours_spent")?;
    let billable = c.f64s("billable_hours")?;
    let mut out = Vec::with_capacity(df.height());
    for row in 0..df.height() {
        let key = (
            c.required("domain", row, domains[row].take())?,
            c.required("ticket_id", row, ids[row])?,
        );
        let (conversations, notes) = children(&key);
        let (domain, ticket_id) = key;
        out.push(TicketDoc {
            ticket_id,
            ticket_number: c.required("ticket_number", row, numbers[row].take())?,
            subject: subjects[row].take(),
            description: descriptions[row].take(),
            description_text: texts[row].take(),
            status: c.required("status", row, statuses[row].take())?,
            priority: priorities[row].take(),
            requester_email: emails[row].take(),
            requester_name: names[row].take(),
            created_at: created[row],
            last_updated_at: c.required("last_updated_at", row, updated[row])?,
            closed_at: c.required("closed_at", row, closed[row])?,
            total_hours_spent: c.required("total_hours_spent", row, hours[row])?,
            billable_hours: c.required("billable_hours", row, billable[row])?,
            domain,
            conversations,
            notes,
        });
    }
    Ok(out)
}
