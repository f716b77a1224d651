//! Normalize: API shapes in, our rows and markdown documents out. Pure functions: no I/O, no
//! async, no clock (the sync time is passed in).
//!
//! One closed ticket with its conversations and time entries becomes either a [`Placed`] ticket
//! (rows for every table, its partition, its markdown) or a [`Rejection`] with a reason code
//! and a detail that names the ticket and the field.

pub mod accounts;
pub mod hours;
pub mod markdown;
pub mod privacy;
pub mod text;

use std::collections::HashMap;

use chrono::{DateTime, Datelike, Utc};

use crate::source::wire::{self, ItemError};
pub use accounts::AccountMap;
pub use privacy::{Privacy, PrivacyStats};

/// Settings of the normalization.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Hours billed for a ticket without time entries (0.25 in the old system), in minutes.
    pub default_minutes: i64,
    /// When this run synced the tickets.
    pub synced_at: DateTime<Utc>,
    /// Secrets redacted and people erased in every ticket written.
    pub privacy: Privacy,
}

/// What normalize needs to know besides the ticket itself.
#[derive(Debug)]
pub struct Context<'a> {
    /// Department id → account number (the job's account map over the departments list).
    pub accounts: &'a AccountMap,
    /// The agents list by agent id: names and emails for responders, note authors and time entries.
    pub agents: &'a HashMap<i64, Person>,
    /// The requester directory (`GET /requesters`) when the listing did not embed requesters;
    /// empty otherwise.
    pub requesters: &'a HashMap<i64, Person>,
    /// Group names by id (`GET /groups`); empty when the groups could not be read.
    pub groups: &'a HashMap<i64, String>,
    /// The run's normalization settings.
    pub settings: &'a Settings,
}

/// An agent or a requester, as far as rows and markdown need one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    /// "First Last", trimmed; `None` when the API gave neither part.
    pub name: Option<String>,
    /// The email, trimmed; `None` when the API gave none or an empty one.
    pub email: Option<String>,
}

impl Person {
    /// "First Last" (either may be missing) and the email, trimmed; empty → `None`.
    fn new(first: Option<&str>, last: Option<&str>, email: Option<&str>) -> Person {
        let name = [first, last]
            .into_iter()
            .flatten()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        Person {
            name: (!name.is_empty()).then_some(name),
            email: email
                .map(str::trim)
                .filter(|e| !e.is_empty())
                .map(str::to_string),
        }
    }

    /// The person behind an entry of the agents list (`GET /agents`).
    pub fn from_agent(agent: &wire::Agent) -> Person {
        Person::new(
            agent.first_name.as_deref(),
            agent.last_name.as_deref(),
            agent.email.as_deref(),
        )
    }

    /// The person behind an entry of the requester directory (`GET /requesters`); the email is its
    /// `primary_email`.
    pub fn from_requester(requester: &wire::Requester) -> Person {
        Person::new(
            requester.first_name.as_deref(),
            requester.last_name.as_deref(),
            requester.primary_email.as_deref(),
        )
    }

    /// The `include=requester` embed that names this person.
    pub fn as_embed(&self, id: i64) -> wire::EmbeddedRequester {
        wire::EmbeddedRequester {
            id: Some(id),
            name: self.name.clone(),
            email: self.email.clone(),
        }
    }
}

/// Why a closed ticket is in `rejects` instead of `tickets`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectReason {
    /// `department_id` is null (with department accounts; workspace accounts need none).
    NoDepartment,
    /// The department is not in the departments list (nor the account map).
    UnknownDepartment,
    /// The department has no account number.
    NoAccountNumber,
    /// The account number is not a plain identifier (would make an odd path).
    InvalidAccountNumber,
    /// The ticket row itself could not be decoded or lacks a required field.
    MalformedTicket,
    /// A conversation could not be decoded.
    MalformedConversation,
    /// A time entry could not be decoded or its `time_spent` is not a duration.
    InvalidTimeEntry,
    /// The ticket's detail calls answered 404: it was deleted after it was listed.
    TicketDeleted,
}

impl RejectReason {
    /// Every reason, in declaration order (metrics write each, 0 when none).
    pub const ALL: [RejectReason; 8] = [
        RejectReason::NoDepartment,
        RejectReason::UnknownDepartment,
        RejectReason::NoAccountNumber,
        RejectReason::InvalidAccountNumber,
        RejectReason::MalformedTicket,
        RejectReason::MalformedConversation,
        RejectReason::InvalidTimeEntry,
        RejectReason::TicketDeleted,
    ];

    /// A new variant breaks the build here until it is added to [`RejectReason::ALL`] too.
    const _EXHAUSTIVE: fn(RejectReason) = |r| match r {
        RejectReason::NoDepartment
        | RejectReason::UnknownDepartment
        | RejectReason::NoAccountNumber
        | RejectReason::InvalidAccountNumber
        | RejectReason::MalformedTicket
        | RejectReason::MalformedConversation
        | RejectReason::InvalidTimeEntry
        | RejectReason::TicketDeleted => (),
    };

    /// The reason code as written in the `reason` column of `rejects`.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::NoDepartment => "no_department",
            RejectReason::UnknownDepartment => "unknown_department",
            RejectReason::NoAccountNumber => "no_account_number",
            RejectReason::InvalidAccountNumber => "invalid_account_number",
            RejectReason::MalformedTicket => "malformed_ticket",
            RejectReason::MalformedConversation => "malformed_conversation",
            RejectReason::InvalidTimeEntry => "invalid_time_entry",
            RejectReason::TicketDeleted => "ticket_deleted",
        }
    }
}

/// A row of the `rejects` table; the columns are the contract in `schemas/rejects.json`.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    /// The closed ticket that could not be placed.
    pub ticket_id: i64,
    /// Reason code (written as [`RejectReason::as_str`]).
    pub reason: RejectReason,
    /// The ticket's department id, when it has one.
    pub department_id: Option<i64>,
    /// What exactly is wrong, naming the ticket and the field or value.
    pub detail: String,
    /// The ticket's `updated_at` when known (the index uses it).
    pub updated_at: Option<DateTime<Utc>>,
    /// When the run that rejected it started.
    pub seen_at: DateTime<Utc>,
}

impl Rejection {
    /// A rejection of a listed ticket, its detail prefixed with `ticket <id>: `.
    pub fn of(
        ticket: &wire::Ticket,
        reason: RejectReason,
        detail: &str,
        seen_at: DateTime<Utc>,
    ) -> Rejection {
        Rejection {
            ticket_id: ticket.id,
            reason,
            department_id: ticket.department_id,
            detail: format!("ticket {}: {detail}", ticket.id),
            updated_at: ticket.updated_at,
            seen_at,
        }
    }
}

/// A row of `tickets`; the columns are the contract in `schemas/tickets.json` (see [`crate::tables`]).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TicketRow {
    /// Freshservice ticket id (primary key).
    pub ticket_id: i64,
    /// Customer account number from the ticket's department (or workspace), in canonical form
    /// ([`accounts::canonical_account`]); the same value as the account partition.
    pub company_account_number: String,
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
    pub created_at: Option<DateTime<Utc>>,
    /// The ticket's `updated_at` when it was synced.
    pub last_updated_at: DateTime<Utc>,
    /// `stats.closed_at`, or `updated_at` when the API gives none; its year is the year partition.
    pub closed_at: DateTime<Utc>,
    /// Hours of all time entries (`total_minutes / 60`); the default hours when there are none.
    pub total_hours_spent: f64,
    /// Hours of billable time entries (`billable_minutes / 60`); the default hours when there are none.
    pub billable_hours: f64,
    /// Minutes behind `total_hours_spent`: the entries' `time_spent` summed in seconds, rounded
    /// to the nearest minute once.
    pub total_minutes: i64,
    /// Minutes behind `billable_hours`: the billable entries' seconds summed, rounded once.
    pub billable_minutes: i64,
    /// True when the ticket has no time entries and the hours are the configured default.
    pub hours_defaulted: bool,
    /// Freshservice department (customer company) id; `None` only with workspace accounts
    /// (`account_from = workspace`), for a ticket without a department.
    pub department_id: Option<i64>,
    /// Requester user id.
    pub requester_id: Option<i64>,
    /// Assigned agent id.
    pub responder_id: Option<i64>,
    /// Assigned group id.
    pub group_id: Option<i64>,
    /// Ticket type as the API gives it: Incident, Service Request, Alert.
    pub ticket_type: Option<String>,
    /// Source code as the API gives it (1 Email, 2 Portal, 3 Phone, ...).
    pub source: Option<i64>,
    /// Number of public conversations.
    pub conversation_count: i32,
    /// Number of private notes.
    pub note_count: i32,
    /// Number of time entries.
    pub time_entry_count: i32,
    /// When ticketsync wrote this version of the ticket.
    pub synced_at: DateTime<Utc>,
    /// The columns for Parquet readers only (SLA, categories, custom fields): neither the Codex
    /// JSON of `query` nor the markdown document shows them.
    #[serde(flatten)]
    pub details: TicketDetails,
}

/// The `tickets` columns analysts, SLA reports and billing read (appended after the original
/// columns of the contract). `None` where the API sent null or nothing.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize)]
pub struct TicketDetails {
    /// Freshservice workspace id (accounts with workspaces; in Freshservice for MSPs the client).
    pub workspace_id: Option<i64>,
    /// Category as the API gives it.
    pub category: Option<String>,
    /// Sub-category.
    pub sub_category: Option<String>,
    /// Item category.
    pub item_category: Option<String>,
    /// `Low`/`Medium`/`High`, `Urgency N` for unknown codes.
    pub urgency: Option<String>,
    /// `Low`/`Medium`/`High`, `Impact N` for unknown codes.
    pub impact: Option<String>,
    /// `None` when the API sent no `tags` (not embedded), `Some(empty)` for no tags.
    pub tags: Option<Vec<String>>,
    /// The custom fields as the API sent them (JSON text); `{}` when it sent none.
    pub custom_fields: Option<String>,
    /// SLA resolution deadline.
    pub due_by: Option<DateTime<Utc>>,
    /// SLA first-response deadline.
    pub fr_due_by: Option<DateTime<Utc>>,
    /// The resolution SLA was escalated (breached).
    pub is_escalated: Option<bool>,
    /// The first-response SLA was escalated (breached).
    pub fr_escalated: Option<bool>,
    /// `stats.resolved_at`: when the ticket was resolved.
    pub resolved_at: Option<DateTime<Utc>>,
    /// `stats.first_responded_at`: the first agent response.
    pub first_responded_at: Option<DateTime<Utc>>,
    /// `stats.agent_responded_at`: the latest agent response.
    pub agent_responded_at: Option<DateTime<Utc>>,
    /// `stats.first_resp_time_in_secs`: seconds to the first response.
    pub first_resp_time_secs: Option<i64>,
    /// `stats.resolution_time_in_secs`: seconds to resolution.
    pub resolution_time_secs: Option<i64>,
    /// The assigned agent (`responder_id`) from the agents list.
    pub responder_email: Option<String>,
    /// The assigned agent's name (agents list, by `responder_id`).
    pub responder_name: Option<String>,
    /// The assigned group's name (`group_id`) from `GET /groups`.
    pub group_name: Option<String>,
}

/// A row of `conversations` (public replies and forwards); contract: `schemas/conversations.json`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ConversationRow {
    /// The ticket.
    pub ticket_id: i64,
    /// Freshservice conversation id.
    pub conversation_id: i64,
    /// Plain-text body (HTML rendered to text).
    pub body: String,
    /// Original HTML body.
    pub body_html: Option<String>,
    /// Sender.
    pub from_email: Option<String>,
    /// Recipients.
    pub to_emails: Vec<String>,
    /// When the message was created.
    pub created_at: Option<DateTime<Utc>>,
    /// When the message was last updated.
    pub updated_at: Option<DateTime<Utc>>,
    /// True when it came from the requester side.
    pub incoming: bool,
    /// Always false here: private conversations are in notes.
    pub private: bool,
    /// Author user id.
    pub user_id: Option<i64>,
    /// The support mailbox involved.
    pub support_email: Option<String>,
    /// JSON array of `{name, size, content_type}` (metadata only); `None` when the API sent no
    /// `attachments`.
    pub attachments: Option<String>,
}

/// A row of `notes` (private conversations); contract: `schemas/notes.json`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct NoteRow {
    /// The ticket.
    pub ticket_id: i64,
    /// Freshservice conversation id of the note.
    pub note_id: i64,
    /// Plain-text body (HTML rendered to text).
    pub body: String,
    /// Original HTML body.
    pub body_html: Option<String>,
    /// Author: the API's `from_email`, else the author agent's email.
    pub from_email: Option<String>,
    /// When the note was created.
    pub created_at: Option<DateTime<Utc>>,
    /// Author agent id.
    pub user_id: Option<i64>,
    /// Who the note notified (the API's `to_emails`).
    pub to_emails: Vec<String>,
    /// When the note was last updated.
    pub updated_at: Option<DateTime<Utc>>,
    /// The API's `incoming` flag.
    pub incoming: bool,
    /// The support mailbox involved.
    pub support_email: Option<String>,
}

/// A row of `time_entries`; contract: `schemas/time_entries.json`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TimeEntryRow {
    /// The ticket.
    pub ticket_id: i64,
    /// Freshservice time entry id.
    pub time_entry_id: i64,
    /// Agent who logged the time.
    pub agent_id: Option<i64>,
    /// That agent's email.
    pub agent_email: Option<String>,
    /// Minutes of this entry's `time_spent` (hh:mm; hh:mm:ss rounded to the nearest minute, half
    /// up). The ticket's totals round the sum of the seconds instead, so they can differ from the
    /// sum of these.
    pub minutes: i64,
    /// `minutes / 60`.
    pub hours: f64,
    /// Billable flag (the API's default is true).
    pub billable: bool,
    /// True when the timer was still running: the minutes are provisional.
    pub timer_running: bool,
    /// The date the work counts for.
    pub executed_at: Option<DateTime<Utc>>,
    /// The entry's note.
    pub note: Option<String>,
    /// Freshservice workspace id (accounts with workspaces).
    pub workspace_id: Option<i64>,
    /// The ticket task the time was logged on.
    pub task_id: Option<i64>,
    /// The entry's custom fields as the API sent them (JSON text); `{}` when it sent none.
    pub custom_fields: Option<String>,
    /// The agent's name from the agents list.
    pub agent_name: Option<String>,
    /// When the work (or its timer) started.
    pub start_time: Option<DateTime<Utc>>,
}

/// A closed ticket ready for the sinks.
#[derive(Debug, Clone, PartialEq)]
pub struct Placed {
    /// Partition value: a validated account number.
    pub account: String,
    /// Partition value: the UTC year of `closed_at`.
    pub year: i32,
    /// The row of `tickets`.
    pub ticket: TicketRow,
    /// Its rows of `conversations` (public messages only), oldest first.
    pub conversations: Vec<ConversationRow>,
    /// Its rows of `notes` (private conversations), oldest first.
    pub notes: Vec<NoteRow>,
    /// Its rows of `time_entries`, by `time_entry_id`.
    pub time_entries: Vec<TimeEntryRow>,
    /// The KnowledgeTree markdown document.
    pub markdown: String,
    /// [`time_entries_fingerprint`] of the entries this version was built from.
    pub time_entries_fingerprint: u64,
    /// What redaction and erasure changed (counted in the run report).
    pub privacy: PrivacyStats,
}

/// Normalize's verdict on one closed ticket.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The ticket goes to its account/year partition.
    Placed(Box<Placed>),
    /// The ticket goes to the `rejects` table.
    Rejected(Rejection),
}

/// Freshservice's status code of a closed ticket: the only tickets the dataset holds.
pub const STATUS_CLOSED: i64 = 5;

/// The status name of a status code; custom codes stay visible as `Status N`.
pub fn status_name(code: i64) -> String {
    match code {
        2 => "Open".into(),
        3 => "Pending".into(),
        4 => "Resolved".into(),
        STATUS_CLOSED => "Closed".into(),
        other => format!("Status {other}"),
    }
}

/// The priority name of a priority code; unknown codes stay visible as `Priority N`.
pub fn priority_name(code: i64) -> String {
    match code {
        1 => "Low".into(),
        2 => "Medium".into(),
        3 => "High".into(),
        4 => "Urgent".into(),
        other => format!("Priority {other}"),
    }
}

/// The name of an urgency or impact code (1 Low, 2 Medium, 3 High); unknown codes stay
/// visible as `<label> N` (`Urgency 7`).
pub fn level_name(label: &str, code: i64) -> String {
    match code {
        1 => "Low".into(),
        2 => "Medium".into(),
        3 => "High".into(),
        other => format!("{label} {other}"),
    }
}

/// Custom fields as JSON text, exactly as sent (key order and value types kept); `{}` when the
/// API sent none.
fn custom_fields_json(value: Option<&serde_json::Value>) -> String {
    match value {
        None | Some(serde_json::Value::Null) => "{}".to_string(),
        Some(v) => v.to_string(),
    }
}

/// Decides whether a listed ticket can be placed at all (before its children are fetched).
pub fn placement(ticket: &wire::Ticket, ctx: &Context<'_>) -> Result<(), Rejection> {
    let reject = |reason, detail| Rejection {
        ticket_id: ticket.id,
        reason,
        department_id: ticket.department_id,
        detail,
        updated_at: ticket.updated_at,
        seen_at: ctx.settings.synced_at,
    };
    if ticket.updated_at.is_none() {
        return Err(reject(
            RejectReason::MalformedTicket,
            format!("ticket {}: updated_at is missing", ticket.id),
        ));
    }
    ctx.accounts
        .resolve_ticket(ticket)
        .map(|_| ())
        .map_err(|u| reject(u.reason, format!("ticket {}: {}", ticket.id, u.detail)))
}

/// A ticket row that did not decode, as a rejection.
pub fn malformed(error: &ItemError, seen_at: DateTime<Utc>) -> Option<Rejection> {
    error.id.map(|id| Rejection {
        ticket_id: id,
        reason: RejectReason::MalformedTicket,
        department_id: None,
        detail: format!("ticket {id}: {}", error.detail),
        updated_at: None,
        seen_at,
    })
}

/// Normalizes one closed ticket with all its conversations and time entries.
pub fn normalize_ticket(
    ticket: &wire::Ticket,
    conversations: &[Result<wire::Conversation, ItemError>],
    time_entries: &[Result<wire::TimeEntry, ItemError>],
    ctx: &Context<'_>,
) -> Outcome {
    let id = ticket.id;
    let reject = |reason, detail: String| {
        Outcome::Rejected(Rejection::of(
            ticket,
            reason,
            &detail,
            ctx.settings.synced_at,
        ))
    };
    if let Err(r) = placement(ticket, ctx) {
        return Outcome::Rejected(r);
    }
    // `placement` checked both.
    let (Some(updated_at), Ok(account)) = (ticket.updated_at, ctx.accounts.resolve_ticket(ticket))
    else {
        return reject(
            RejectReason::MalformedTicket,
            "missing updated_at or account".into(),
        );
    };
    let department_id = ticket.department_id;
    let closed_at = ticket
        .stats
        .as_ref()
        .and_then(|s| s.closed_at)
        .unwrap_or(updated_at);

    let mut public = Vec::new();
    let mut notes = Vec::new();
    let mut convs: Vec<&wire::Conversation> = Vec::with_capacity(conversations.len());
    for c in conversations {
        match c {
            Ok(c) => convs.push(c),
            Err(e) => {
                let which = e.id.map_or("a conversation".to_string(), |i| {
                    format!("conversation {i}")
                });
                return reject(
                    RejectReason::MalformedConversation,
                    format!("{which}: {}", e.detail),
                );
            }
        }
    }
    // Oldest first, whatever order the pages came in; ids break ties.
    convs.sort_by_key(|c| (c.created_at, c.id));
    for c in convs {
        let body = match c.body.as_deref() {
            Some(html) if !html.trim().is_empty() => text::html_to_text(html),
            _ => c.body_text.clone().unwrap_or_default().trim().to_string(),
        };
        if c.private.unwrap_or(false) {
            let from_email = c
                .from_email
                .clone()
                .filter(|e| !e.trim().is_empty())
                .or_else(|| {
                    c.user_id
                        .and_then(|u| ctx.agents.get(&u))
                        .and_then(|a| a.email.clone())
                });
            notes.push(NoteRow {
                ticket_id: id,
                note_id: c.id,
                body,
                body_html: c.body.clone(),
                from_email,
                created_at: c.created_at,
                user_id: c.user_id,
                to_emails: c.to_emails.clone(),
                updated_at: c.updated_at,
                incoming: c.incoming.unwrap_or(false),
                support_email: c.support_email.clone(),
            });
        } else {
            public.push(ConversationRow {
                ticket_id: id,
                conversation_id: c.id,
                body,
                body_html: c.body.clone(),
                from_email: c.from_email.clone(),
                to_emails: c.to_emails.clone(),
                created_at: c.created_at,
                updated_at: c.updated_at,
                incoming: c.incoming.unwrap_or(false),
                private: false,
                user_id: c.user_id,
                support_email: c.support_email.clone(),
                attachments: c
                    .attachments
                    .as_ref()
                    .map(|a| serde_json::to_string(a).expect("attachment metadata serializes")),
            });
        }
    }

    let mut entries = Vec::with_capacity(time_entries.len());
    // The ticket's totals are the entries' seconds summed, rounded once: ten 30-second entries
    // are 5 minutes (each entry's own `minutes` is rounded on its own).
    let (mut logged_seconds, mut logged_billable_seconds) = (0i64, 0i64);
    for e in time_entries {
        let e = match e {
            Ok(e) => e,
            Err(err) => {
                let which = err
                    .id
                    .map_or("a time entry".to_string(), |i| format!("time entry {i}"));
                return reject(
                    RejectReason::InvalidTimeEntry,
                    format!("{which}: {}", err.detail),
                );
            }
        };
        let seconds = match e.time_spent.as_deref().map(hours::parse_time_spent_seconds) {
            Some(Ok(s)) => s,
            Some(Err(why)) => {
                return reject(
                    RejectReason::InvalidTimeEntry,
                    format!("time entry {}: {why}", e.id),
                )
            }
            None => {
                return reject(
                    RejectReason::InvalidTimeEntry,
                    format!("time entry {}: time_spent is missing", e.id),
                )
            }
        };
        let agent = e.agent_id.and_then(|a| ctx.agents.get(&a));
        let minutes = hours::minutes_of_seconds(seconds);
        logged_seconds += seconds;
        if e.billable.unwrap_or(true) {
            logged_billable_seconds += seconds;
        }
        entries.push(TimeEntryRow {
            ticket_id: id,
            time_entry_id: e.id,
            agent_id: e.agent_id,
            agent_email: agent.and_then(|a| a.email.clone()),
            minutes,
            hours: hours::hours(minutes),
            billable: e.billable.unwrap_or(true),
            timer_running: e.timer_running.unwrap_or(false),
            executed_at: e.executed_at,
            note: e.note.clone(),
            workspace_id: e.workspace_id,
            task_id: e.task_id,
            custom_fields: Some(custom_fields_json(e.custom_fields.as_ref())),
            agent_name: agent.and_then(|a| a.name.clone()),
            start_time: e.start_time,
        });
    }
    entries.sort_by_key(|e| e.time_entry_id);

    let logged = hours::minutes_of_seconds(logged_seconds);
    let logged_billable = hours::minutes_of_seconds(logged_billable_seconds);
    let hours_defaulted = entries.is_empty();
    let (total_minutes, billable_minutes) = if hours_defaulted {
        (ctx.settings.default_minutes, ctx.settings.default_minutes)
    } else {
        (logged, logged_billable)
    };

    let (requester_name, requester_email) = requester(ticket, ctx);
    let description_html = ticket.description.clone();
    let description_text = match description_html.as_deref() {
        Some(html) if !html.trim().is_empty() => Some(text::html_to_text(html)),
        _ => ticket
            .description_text
            .clone()
            .map(|t| t.trim().to_string()),
    };
    let mut row = TicketRow {
        ticket_id: id,
        company_account_number: account.to_string(),
        ticket_number: id.to_string(),
        subject: ticket.subject.clone(),
        description: description_html,
        description_text,
        status: status_name(ticket.status.unwrap_or(STATUS_CLOSED)),
        priority: ticket.priority.map(priority_name),
        requester_email,
        requester_name,
        created_at: ticket.created_at,
        last_updated_at: updated_at,
        closed_at,
        total_hours_spent: hours::hours(total_minutes),
        billable_hours: hours::hours(billable_minutes),
        total_minutes,
        billable_minutes,
        hours_defaulted,
        department_id,
        requester_id: ticket.requester_id,
        responder_id: ticket.responder_id,
        group_id: ticket.group_id,
        ticket_type: ticket.ticket_type.clone(),
        source: ticket.source,
        conversation_count: public.len() as i32,
        note_count: notes.len() as i32,
        time_entry_count: entries.len() as i32,
        synced_at: ctx.settings.synced_at,
        details: details(ticket, ctx),
    };
    let privacy = ctx
        .settings
        .privacy
        .apply(&mut row, &mut public, &mut notes, &mut entries);
    let markdown = markdown::render(&row, &public, &notes);
    let time_entries_fingerprint = time_entries_fingerprint(time_entries);
    Outcome::Placed(Box::new(Placed {
        account: account.to_string(),
        year: closed_at.year(),
        ticket: row,
        conversations: public,
        notes,
        time_entries: entries,
        markdown,
        time_entries_fingerprint,
        privacy,
    }))
}

/// A stable fingerprint of a ticket's time entries (ids, durations, billable flags, timers,
/// dates, update times, agents, and what billing reads besides the hours: the custom fields
/// (the work type), the note and the task), independent of their order: when a re-scan finds a
/// different one, time was logged, edited or removed after the ticket closed. FNV-1a over the
/// custom fields in canonical form (keys sorted at every level), so it is the same on every
/// build and platform and whatever order the API sends the keys in.
pub fn time_entries_fingerprint(entries: &[Result<wire::TimeEntry, ItemError>]) -> u64 {
    let mut parts: Vec<String> = entries
        .iter()
        .map(|e| match e {
            Ok(e) => format!(
                "{}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{}",
                e.id,
                e.time_spent,
                e.billable,
                e.timer_running,
                e.executed_at,
                e.updated_at,
                e.agent_id,
                e.task_id,
                e.note,
                e.custom_fields
                    .as_ref()
                    .map_or_else(|| "-".to_string(), canonical_json)
            ),
            Err(err) => format!("!{:?}|{}", err.id, err.detail),
        })
        .collect();
    parts.sort();
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for byte in part.bytes().chain(std::iter::once(b'\n')) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    hash
}

/// `value` as JSON text with the keys of every object sorted (serde_json keeps the API's key
/// order here, which is not part of the value).
fn canonical_json(value: &serde_json::Value) -> String {
    fn sorted(value: &serde_json::Value) -> serde_json::Value {
        match value {
            serde_json::Value::Object(map) => {
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort();
                serde_json::Value::Object(
                    keys.into_iter()
                        .map(|k| (k.clone(), sorted(&map[k])))
                        .collect(),
                )
            }
            serde_json::Value::Array(items) => {
                serde_json::Value::Array(items.iter().map(sorted).collect())
            }
            other => other.clone(),
        }
    }
    sorted(value).to_string()
}

/// The [`TicketDetails`] of a ticket.
fn details(ticket: &wire::Ticket, ctx: &Context<'_>) -> TicketDetails {
    let stats = ticket.stats.clone().unwrap_or_default();
    let responder = ticket.responder_id.and_then(|id| ctx.agents.get(&id));
    TicketDetails {
        workspace_id: ticket.workspace_id,
        category: ticket.category.clone(),
        sub_category: ticket.sub_category.clone(),
        item_category: ticket.item_category.clone(),
        urgency: ticket.urgency.map(|c| level_name("Urgency", c)),
        impact: ticket.impact.map(|c| level_name("Impact", c)),
        tags: ticket.tags.clone(),
        custom_fields: Some(custom_fields_json(ticket.custom_fields.as_ref())),
        due_by: ticket.due_by,
        fr_due_by: ticket.fr_due_by,
        is_escalated: ticket.is_escalated,
        fr_escalated: ticket.fr_escalated,
        resolved_at: stats.resolved_at,
        first_responded_at: stats.first_responded_at,
        agent_responded_at: stats.agent_responded_at,
        first_resp_time_secs: stats.first_resp_time_in_secs,
        resolution_time_secs: stats.resolution_time_in_secs,
        responder_email: responder.and_then(|a| a.email.clone()),
        responder_name: responder.and_then(|a| a.name.clone()),
        group_name: ticket.group_id.and_then(|g| ctx.groups.get(&g).cloned()),
    }
}

/// Requester name and email: the `include=requester` embed, else the requester directory, else
/// the agent with that id (agents raise tickets too).
fn requester(ticket: &wire::Ticket, ctx: &Context<'_>) -> (Option<String>, Option<String>) {
    let clean = |s: &Option<String>| {
        s.as_ref()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    };
    let embedded = ticket.requester.as_ref();
    let known = ticket
        .requester_id
        .and_then(|id| ctx.requesters.get(&id).or_else(|| ctx.agents.get(&id)));
    let name = embedded
        .and_then(|r| clean(&r.name))
        .or_else(|| known.and_then(|p| p.name.clone()));
    let email = embedded
        .and_then(|r| clean(&r.email))
        .or_else(|| known.and_then(|p| p.email.clone()));
    (name, email)
}

#[cfg(test)]
mod tests;
