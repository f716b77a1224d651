//! The output tables: their Arrow schemas (the contract written down in `schemas/<table>.json`)
//! and the builders that turn normalized rows into `RecordBatch`es.
//!
//! Every table carries `ticket_id`, the key by which a re-synced ticket replaces its rows.
//! Timestamps are `timestamp(ms, UTC)`, ids `int64`, account numbers strings. The partition
//! columns (`account`, `year`) live in the Hive path, not in the files.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanArray, Float64Array, Int32Array, Int64Array, ListBuilder, RecordBatch,
    StringArray, StringBuilder, TimestampMillisecondArray,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use chrono::{DateTime, Utc};

use crate::normalize::{ConversationRow, NoteRow, Placed, Rejection, TicketRow, TimeEntryRow};

pub mod read;

/// The tables ticketsync writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    /// `tickets`: one row per closed ticket ([`TicketRow`]).
    Tickets,
    /// `conversations`: public replies and forwards ([`ConversationRow`]).
    Conversations,
    /// `notes`: private conversations ([`NoteRow`]).
    Notes,
    /// `time_entries`: logged time with exact minutes ([`TimeEntryRow`]).
    TimeEntries,
    /// `rejects`: closed tickets that could not be placed ([`Rejection`]); not partitioned.
    Rejects,
}

impl Table {
    /// Every table, in the order runs write them and reports list them.
    pub const ALL: [Table; 5] = [
        Table::Tickets,
        Table::Conversations,
        Table::Notes,
        Table::TimeEntries,
        Table::Rejects,
    ];
    /// The tables partitioned by account and year.
    pub const PARTITIONED: [Table; 4] = [
        Table::Tickets,
        Table::Conversations,
        Table::Notes,
        Table::TimeEntries,
    ];

    /// The table's name: its directory under the dataset root and its `schemas/<name>.json`.
    pub fn name(self) -> &'static str {
        match self {
            Table::Tickets => "tickets",
            Table::Conversations => "conversations",
            Table::Notes => "notes",
            Table::TimeEntries => "time_entries",
            Table::Rejects => "rejects",
        }
    }

    /// The second sort key after `ticket_id` (rows are written sorted, so files are reproducible).
    pub fn row_key(self) -> Option<&'static str> {
        match self {
            Table::Tickets | Table::Rejects => None,
            Table::Conversations => Some("conversation_id"),
            Table::Notes => Some("note_id"),
            Table::TimeEntries => Some("time_entry_id"),
        }
    }

    /// One line on what the table holds (goes into the schema file).
    pub fn description(self) -> &'static str {
        match self {
            Table::Tickets => "One row per closed ticket: the current version of the ticket, its requester and its hours.",
            Table::Conversations => "Public conversations (replies, forwards) of the closed tickets, oldest first.",
            Table::Notes => "Private notes of the closed tickets.",
            Table::TimeEntries => "Time entries of the closed tickets, with exact minutes.",
            Table::Rejects => "Closed tickets that could not be placed in an account, with the reason. A ticket is in tickets or in rejects, never both.",
        }
    }

    /// The columns in file order (the contract; `schemas/<table>.json` is generated from them).
    pub fn columns(self) -> &'static [Column] {
        match self {
            Table::Tickets => TICKETS,
            Table::Conversations => CONVERSATIONS,
            Table::Notes => NOTES,
            Table::TimeEntries => TIME_ENTRIES,
            Table::Rejects => REJECTS,
        }
    }

    /// The Delta partition columns, in order: the Freshservice domain, then (but in `rejects`)
    /// the account number and the year the ticket closed. Their values live in the log and the
    /// Hive path (`domain=…/account=…/year=…/`), not in the files.
    pub fn partition_columns(self) -> &'static [&'static str] {
        match self {
            Table::Rejects => &["domain"],
            _ => &["domain", "account", "year"],
        }
    }

    /// The Arrow schema of the files (without the partition columns, which live in the path).
    pub fn schema(self) -> SchemaRef {
        Arc::new(Schema::new(
            self.columns()
                .iter()
                .map(|c| Field::new(c.name, c.kind.data_type(), c.nullable))
                .collect::<Vec<_>>(),
        ))
    }

    /// The contract file's JSON (what `schemas/<table>.json` must contain).
    pub fn contract_json(self) -> serde_json::Value {
        serde_json::json!({
            "table": self.name(),
            "description": self.description(),
            "format": "delta",
            "partitioning": self.partition_columns(),
            "key": match self.row_key() { Some(k) => vec!["domain", "ticket_id", k], None => vec!["domain", "ticket_id"] },
            "columns": self.columns().iter().map(|c| serde_json::json!({
                "name": c.name,
                "type": c.kind.contract_name(),
                "nullable": c.nullable,
                "description": c.description,
            })).collect::<Vec<_>>(),
        })
    }
}

/// The column types we use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `int64`: ids and minutes.
    Int64,
    /// `int32`: per-ticket counts.
    Int32,
    /// `float64`: hours.
    Float64,
    /// `bool`.
    Bool,
    /// `utf8`: text, names, and JSON kept as text (custom fields, attachments).
    Utf8,
    /// `timestamp[ms, UTC]`.
    Timestamp,
    /// `list<utf8>`: e-mail recipients, tags.
    Utf8List,
}

impl Kind {
    /// The Arrow type of the column.
    pub fn data_type(self) -> DataType {
        match self {
            Kind::Int64 => DataType::Int64,
            Kind::Int32 => DataType::Int32,
            Kind::Float64 => DataType::Float64,
            Kind::Bool => DataType::Boolean,
            Kind::Utf8 => DataType::Utf8,
            Kind::Timestamp => DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            Kind::Utf8List => DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
        }
    }

    /// The type as written in the contract files.
    pub fn contract_name(self) -> &'static str {
        match self {
            Kind::Int64 => "int64",
            Kind::Int32 => "int32",
            Kind::Float64 => "float64",
            Kind::Bool => "bool",
            Kind::Utf8 => "utf8",
            Kind::Timestamp => "timestamp[ms, UTC]",
            Kind::Utf8List => "list<utf8>",
        }
    }
}

/// One column of the contract.
#[derive(Debug, Clone, Copy)]
pub struct Column {
    /// The column name, as in Parquet and `schemas/`.
    pub name: &'static str,
    /// Its type.
    pub kind: Kind,
    /// Whether it may hold nulls (an `Option` in the row struct).
    pub nullable: bool,
    /// One line on what it holds, copied into `schemas/<table>.json`.
    pub description: &'static str,
}

const fn col(name: &'static str, kind: Kind, nullable: bool, description: &'static str) -> Column {
    Column {
        name,
        kind,
        nullable,
        description,
    }
}

use Kind::*;

const TICKETS: &[Column] = &[
    col("ticket_id", Int64, false, "Freshservice ticket id (primary key)."),
    col("company_account_number", Utf8, false, "Customer account number from the ticket's department (or its workspace, with account_from = workspace), in canonical form: trimmed, an integral decimal without its zero fraction (482913.0 is 482913), letters upper-case; the same value as the account partition."),
    col("ticket_number", Utf8, false, "Display number (the id as text, as in #17531)."),
    col("subject", Utf8, true, "Ticket title."),
    col("description", Utf8, true, "Original HTML description."),
    col("description_text", Utf8, true, "Plain-text description (HTML rendered to text)."),
    col("status", Utf8, false, "Status name: Open, Pending, Resolved, Closed, or 'Status N' for custom codes."),
    col("priority", Utf8, true, "Priority name: Low, Medium, High, Urgent, or 'Priority N' for unknown codes."),
    col("requester_email", Utf8, true, "Requester email (the requester may be an agent)."),
    col("requester_name", Utf8, true, "Requester name."),
    col("created_at", Timestamp, true, "When the ticket was created."),
    col("last_updated_at", Timestamp, false, "The ticket's updated_at when it was synced."),
    col("closed_at", Timestamp, false, "stats.closed_at, or updated_at when the API gives none; its year is the year partition."),
    col("total_hours_spent", Float64, false, "Hours of all time entries (total_minutes / 60); the default hours when there are none."),
    col("billable_hours", Float64, false, "Hours of billable time entries (billable_minutes / 60); the default hours when there are none."),
    col("total_minutes", Int64, false, "Minutes behind total_hours_spent: the time entries' time_spent summed in seconds, then rounded to the nearest minute once (half up); hh:mm entries sum exactly."),
    col("billable_minutes", Int64, false, "Minutes behind billable_hours: the billable entries' seconds summed, then rounded to the nearest minute once (half up)."),
    col("hours_defaulted", Bool, false, "True when the ticket has no time entries and the hours are the configured default."),
    // Nullable since issue 18 (a workspace account needs no department). Files written before
    // hold it non-null: the same values, so no format change and no rewrite.
    col("department_id", Int64, true, "Freshservice department (customer company) id; null only with account_from = workspace, for a ticket filed under no department."),
    col("requester_id", Int64, true, "Requester user id."),
    col("responder_id", Int64, true, "Assigned agent id."),
    col("group_id", Int64, true, "Assigned group id."),
    col("ticket_type", Utf8, true, "Incident, Service Request, Alert."),
    col("source", Int64, true, "Source code as the API gives it (1 Email, 2 Portal, 3 Phone, ...)."),
    col("conversation_count", Int32, false, "Number of public conversations."),
    col("note_count", Int32, false, "Number of private notes."),
    col("time_entry_count", Int32, false, "Number of time entries."),
    col("synced_at", Timestamp, false, "When ticketsync wrote this version of the ticket."),
    // Added in dataset format 2 (issue 11): nullable, so rows written before are null here.
    col("workspace_id", Int64, true, "Freshservice workspace id (accounts with workspaces; in Freshservice for MSPs the client)."),
    col("category", Utf8, true, "Category as the API gives it."),
    col("sub_category", Utf8, true, "Sub-category."),
    col("item_category", Utf8, true, "Item category."),
    col("urgency", Utf8, true, "Urgency name: Low, Medium, High, or 'Urgency N' for unknown codes; null when the API sent none (list rows may omit it)."),
    col("impact", Utf8, true, "Impact name: Low, Medium, High, or 'Impact N' for unknown codes; null when the API sent none (list rows may omit it)."),
    col("tags", Utf8List, true, "Tags (the listing's include=tags); empty list for none, null when the API sent no tags."),
    col("custom_fields", Utf8, true, "The ticket's custom fields: the JSON object exactly as the API sent it (keys, order and value types kept); '{}' when none."),
    col("due_by", Timestamp, true, "SLA resolution deadline."),
    col("fr_due_by", Timestamp, true, "SLA first-response deadline."),
    col("is_escalated", Bool, true, "The resolution SLA was escalated (breached)."),
    col("fr_escalated", Bool, true, "The first-response SLA was escalated (breached)."),
    col("resolved_at", Timestamp, true, "stats.resolved_at: when the ticket was resolved."),
    col("first_responded_at", Timestamp, true, "stats.first_responded_at: the first agent response."),
    col("agent_responded_at", Timestamp, true, "stats.agent_responded_at: the latest agent response."),
    col("first_resp_time_secs", Int64, true, "stats.first_resp_time_in_secs: seconds to the first response."),
    col("resolution_time_secs", Int64, true, "stats.resolution_time_in_secs: seconds to resolution."),
    col("responder_email", Utf8, true, "The assigned agent's email (agents list, by responder_id)."),
    col("responder_name", Utf8, true, "The assigned agent's name (agents list, by responder_id)."),
    col("group_name", Utf8, true, "The assigned group's name (GET /groups, by group_id)."),
];

const CONVERSATIONS: &[Column] = &[
    col("ticket_id", Int64, false, "The ticket."),
    col(
        "conversation_id",
        Int64,
        false,
        "Freshservice conversation id.",
    ),
    col(
        "body",
        Utf8,
        false,
        "Plain-text body (HTML rendered to text).",
    ),
    col("body_html", Utf8, true, "Original HTML body."),
    col("from_email", Utf8, true, "Sender."),
    col("to_emails", Utf8List, false, "Recipients."),
    col(
        "created_at",
        Timestamp,
        true,
        "When the message was created.",
    ),
    col(
        "updated_at",
        Timestamp,
        true,
        "When the message was last updated.",
    ),
    col(
        "incoming",
        Bool,
        false,
        "True when it came from the requester side.",
    ),
    col(
        "private",
        Bool,
        false,
        "Always false here: private conversations are in notes.",
    ),
    col("user_id", Int64, true, "Author user id."),
    col("support_email", Utf8, true, "The support mailbox involved."),
    // Added in dataset format 2 (issue 11).
    col(
        "attachments",
        Utf8,
        true,
        "JSON array of the message's attachments as {name, size, content_type} (metadata only, never content or URLs); null when the API sent none.",
    ),
];

const NOTES: &[Column] = &[
    col("ticket_id", Int64, false, "The ticket."),
    col(
        "note_id",
        Int64,
        false,
        "Freshservice conversation id of the note.",
    ),
    col(
        "body",
        Utf8,
        false,
        "Plain-text body (HTML rendered to text).",
    ),
    col("body_html", Utf8, true, "Original HTML body."),
    col(
        "from_email",
        Utf8,
        true,
        "Author: the API's from_email, else the author agent's email.",
    ),
    col("created_at", Timestamp, true, "When the note was created."),
    col("user_id", Int64, true, "Author agent id."),
    // Added in dataset format 3 (issue 20): the keys Codex emits for a note; null in rows
    // written before.
    col(
        "to_emails",
        Utf8List,
        true,
        "Who the note notified (the API's to_emails); null in rows written before format 3.",
    ),
    col(
        "updated_at",
        Timestamp,
        true,
        "When the note was last updated.",
    ),
    col(
        "incoming",
        Bool,
        true,
        "The API's incoming flag of the note; null in rows written before format 3.",
    ),
    col("support_email", Utf8, true, "The support mailbox involved."),
];

const TIME_ENTRIES: &[Column] = &[
    col("ticket_id", Int64, false, "The ticket."),
    col("time_entry_id", Int64, false, "Freshservice time entry id."),
    col("agent_id", Int64, true, "Agent who logged the time."),
    col("agent_email", Utf8, true, "That agent's email."),
    col(
        "minutes",
        Int64,
        false,
        "Minutes of this entry's time_spent (hh:mm exactly; hh:mm:ss rounded to the nearest minute, half up). The ticket's total_minutes rounds the sum of the seconds instead, so a ticket's entries can add up to more or less than it.",
    ),
    col("hours", Float64, false, "minutes / 60."),
    col(
        "billable",
        Bool,
        false,
        "Billable flag (the API's default is true).",
    ),
    col(
        "timer_running",
        Bool,
        false,
        "True when the timer was still running: the minutes are provisional.",
    ),
    col(
        "executed_at",
        Timestamp,
        true,
        "The date the work counts for.",
    ),
    col("note", Utf8, true, "The entry's note."),
    // Added in dataset format 2 (issue 11).
    col(
        "workspace_id",
        Int64,
        true,
        "Freshservice workspace id (accounts with workspaces).",
    ),
    col("task_id", Int64, true, "The ticket task the time was logged on."),
    col(
        "custom_fields",
        Utf8,
        true,
        "The entry's custom fields (e.g. a work type): the JSON object exactly as the API sent it; '{}' when none.",
    ),
    col("agent_name", Utf8, true, "That agent's name."),
    col("start_time", Timestamp, true, "When the work (or its timer) started."),
];

const REJECTS: &[Column] = &[
    col("ticket_id", Int64, false, "The closed ticket that could not be placed."),
    col("reason", Utf8, false, "Reason code: no_department, unknown_department, no_account_number, invalid_account_number, malformed_ticket, malformed_conversation, invalid_time_entry, ticket_deleted."),
    col("department_id", Int64, true, "The ticket's department id, when it has one."),
    col("detail", Utf8, false, "What exactly is wrong, naming the ticket and the field or value."),
    col("seen_at", Timestamp, false, "When the run that rejected it started."),
];

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn timestamps(values: impl Iterator<Item = Option<DateTime<Utc>>>) -> ArrayRef {
    Arc::new(
        TimestampMillisecondArray::from(values.map(|v| v.map(ms)).collect::<Vec<_>>())
            .with_timezone("UTC"),
    )
}

fn strings<'a>(values: impl Iterator<Item = Option<&'a str>>) -> ArrayRef {
    Arc::new(values.collect::<StringArray>())
}

fn ints(values: impl Iterator<Item = Option<i64>>) -> ArrayRef {
    Arc::new(values.collect::<Int64Array>())
}

fn bools(values: impl Iterator<Item = bool>) -> ArrayRef {
    Arc::new(values.map(Some).collect::<BooleanArray>())
}

fn opt_bools(values: impl Iterator<Item = Option<bool>>) -> ArrayRef {
    Arc::new(values.collect::<BooleanArray>())
}

/// A `list<utf8>` column; `None` is a null list.
fn string_lists<'a>(values: impl Iterator<Item = Option<&'a [String]>>) -> ArrayRef {
    let mut list = ListBuilder::new(StringBuilder::new());
    for value in values {
        match value {
            Some(items) => {
                for item in items {
                    list.values().append_value(item);
                }
                list.append(true);
            }
            None => list.append(false),
        }
    }
    Arc::new(list.finish())
}

fn batch(table: Table, columns: Vec<ArrayRef>) -> RecordBatch {
    // The column lists above and the builders below are kept in step by the unit tests; a
    // mismatch is a programming error caught there.
    RecordBatch::try_new(table.schema(), columns).expect("builders match the table schema")
}

/// The `tickets` batch of these rows, in the order given.
pub fn tickets_batch(rows: &[&TicketRow]) -> RecordBatch {
    let r = rows;
    batch(
        Table::Tickets,
        vec![
            ints(r.iter().map(|t| Some(t.ticket_id))),
            strings(r.iter().map(|t| Some(t.company_account_number.as_str()))),
            strings(r.iter().map(|t| Some(t.ticket_number.as_str()))),
            strings(r.iter().map(|t| t.subject.as_deref())),
            strings(r.iter().map(|t| t.description.as_deref())),
            strings(r.iter().map(|t| t.description_text.as_deref())),
            strings(r.iter().map(|t| Some(t.status.as_str()))),
            strings(r.iter().map(|t| t.priority.as_deref())),
            strings(r.iter().map(|t| t.requester_email.as_deref())),
            strings(r.iter().map(|t| t.requester_name.as_deref())),
            timestamps(r.iter().map(|t| t.created_at)),
            timestamps(r.iter().map(|t| Some(t.last_updated_at))),
            timestamps(r.iter().map(|t| Some(t.closed_at))),
            Arc::new(
                r.iter()
                    .map(|t| Some(t.total_hours_spent))
                    .collect::<Float64Array>(),
            ),
            Arc::new(
                r.iter()
                    .map(|t| Some(t.billable_hours))
                    .collect::<Float64Array>(),
            ),
            ints(r.iter().map(|t| Some(t.total_minutes))),
            ints(r.iter().map(|t| Some(t.billable_minutes))),
            bools(r.iter().map(|t| t.hours_defaulted)),
            ints(r.iter().map(|t| t.department_id)),
            ints(r.iter().map(|t| t.requester_id)),
            ints(r.iter().map(|t| t.responder_id)),
            ints(r.iter().map(|t| t.group_id)),
            strings(r.iter().map(|t| t.ticket_type.as_deref())),
            ints(r.iter().map(|t| t.source)),
            Arc::new(
                r.iter()
                    .map(|t| Some(t.conversation_count))
                    .collect::<Int32Array>(),
            ),
            Arc::new(r.iter().map(|t| Some(t.note_count)).collect::<Int32Array>()),
            Arc::new(
                r.iter()
                    .map(|t| Some(t.time_entry_count))
                    .collect::<Int32Array>(),
            ),
            timestamps(r.iter().map(|t| Some(t.synced_at))),
            ints(r.iter().map(|t| t.details.workspace_id)),
            strings(r.iter().map(|t| t.details.category.as_deref())),
            strings(r.iter().map(|t| t.details.sub_category.as_deref())),
            strings(r.iter().map(|t| t.details.item_category.as_deref())),
            strings(r.iter().map(|t| t.details.urgency.as_deref())),
            strings(r.iter().map(|t| t.details.impact.as_deref())),
            string_lists(r.iter().map(|t| t.details.tags.as_deref())),
            strings(r.iter().map(|t| t.details.custom_fields.as_deref())),
            timestamps(r.iter().map(|t| t.details.due_by)),
            timestamps(r.iter().map(|t| t.details.fr_due_by)),
            opt_bools(r.iter().map(|t| t.details.is_escalated)),
            opt_bools(r.iter().map(|t| t.details.fr_escalated)),
            timestamps(r.iter().map(|t| t.details.resolved_at)),
            timestamps(r.iter().map(|t| t.details.first_responded_at)),
            timestamps(r.iter().map(|t| t.details.agent_responded_at)),
            ints(r.iter().map(|t| t.details.first_resp_time_secs)),
            ints(r.iter().map(|t| t.details.resolution_time_secs)),
            strings(r.iter().map(|t| t.details.responder_email.as_deref())),
            strings(r.iter().map(|t| t.details.responder_name.as_deref())),
            strings(r.iter().map(|t| t.details.group_name.as_deref())),
        ],
    )
}

/// The `conversations` batch of these rows, in the order given.
pub fn conversations_batch(rows: &[&ConversationRow]) -> RecordBatch {
    let r = rows;
    let mut to = ListBuilder::new(StringBuilder::new());
    for c in r {
        for e in &c.to_emails {
            to.values().append_value(e);
        }
        to.append(true);
    }
    batch(
        Table::Conversations,
        vec![
            ints(r.iter().map(|c| Some(c.ticket_id))),
            ints(r.iter().map(|c| Some(c.conversation_id))),
            strings(r.iter().map(|c| Some(c.body.as_str()))),
            strings(r.iter().map(|c| c.body_html.as_deref())),
            strings(r.iter().map(|c| c.from_email.as_deref())),
            Arc::new(to.finish()),
            timestamps(r.iter().map(|c| c.created_at)),
            timestamps(r.iter().map(|c| c.updated_at)),
            bools(r.iter().map(|c| c.incoming)),
            bools(r.iter().map(|c| c.private)),
            ints(r.iter().map(|c| c.user_id)),
            strings(r.iter().map(|c| c.support_email.as_deref())),
            strings(r.iter().map(|c| c.attachments.as_deref())),
        ],
    )
}

/// The `notes` batch of these rows, in the order given.
pub fn notes_batch(rows: &[&NoteRow]) -> RecordBatch {
    let r = rows;
    let mut to = ListBuilder::new(StringBuilder::new());
    for n in r {
        for e in &n.to_emails {
            to.values().append_value(e);
        }
        to.append(true);
    }
    batch(
        Table::Notes,
        vec![
            ints(r.iter().map(|n| Some(n.ticket_id))),
            ints(r.iter().map(|n| Some(n.note_id))),
            strings(r.iter().map(|n| Some(n.body.as_str()))),
            strings(r.iter().map(|n| n.body_html.as_deref())),
            strings(r.iter().map(|n| n.from_email.as_deref())),
            timestamps(r.iter().map(|n| n.created_at)),
            ints(r.iter().map(|n| n.user_id)),
            Arc::new(to.finish()),
            timestamps(r.iter().map(|n| n.updated_at)),
            bools(r.iter().map(|n| n.incoming)),
            strings(r.iter().map(|n| n.support_email.as_deref())),
        ],
    )
}

/// The `time_entries` batch of these rows, in the order given.
pub fn time_entries_batch(rows: &[&TimeEntryRow]) -> RecordBatch {
    let r = rows;
    batch(
        Table::TimeEntries,
        vec![
            ints(r.iter().map(|e| Some(e.ticket_id))),
            ints(r.iter().map(|e| Some(e.time_entry_id))),
            ints(r.iter().map(|e| e.agent_id)),
            strings(r.iter().map(|e| e.agent_email.as_deref())),
            ints(r.iter().map(|e| Some(e.minutes))),
            Arc::new(r.iter().map(|e| Some(e.hours)).collect::<Float64Array>()),
            bools(r.iter().map(|e| e.billable)),
            bools(r.iter().map(|e| e.timer_running)),
            timestamps(r.iter().map(|e| e.executed_at)),
            strings(r.iter().map(|e| e.note.as_deref())),
            ints(r.iter().map(|e| e.workspace_id)),
            ints(r.iter().map(|e| e.task_id)),
            strings(r.iter().map(|e| e.custom_fields.as_deref())),
            strings(r.iter().map(|e| e.agent_name.as_deref())),
            timestamps(r.iter().map(|e| e.start_time)),
        ],
    )
}

/// The `rejects` batch of these rows, in the order given.
pub fn rejects_batch(rows: &[&Rejection]) -> RecordBatch {
    let r = rows;
    batch(
        Table::Rejects,
        vec![
            ints(r.iter().map(|x| Some(x.ticket_id))),
            strings(r.iter().map(|x| Some(x.reason.as_str()))),
            ints(r.iter().map(|x| x.department_id)),
            strings(r.iter().map(|x| Some(x.detail.as_str()))),
            timestamps(r.iter().map(|x| Some(x.seen_at))),
        ],
    )
}

/// The rows of `table` for a set of placed tickets.
pub fn placed_batch(table: Table, tickets: &[&Placed]) -> RecordBatch {
    match table {
        Table::Tickets => tickets_batch(&tickets.iter().map(|p| &p.ticket).collect::<Vec<_>>()),
        Table::Conversations => conversations_batch(
            &tickets
                .iter()
                .flat_map(|p| p.conversations.iter())
                .collect::<Vec<_>>(),
        ),
        Table::Notes => notes_batch(
            &tickets
                .iter()
                .flat_map(|p| p.notes.iter())
                .collect::<Vec<_>>(),
        ),
        Table::TimeEntries => time_entries_batch(
            &tickets
                .iter()
                .flat_map(|p| p.time_entries.iter())
                .collect::<Vec<_>>(),
        ),
        Table::Rejects => RecordBatch::new_empty(Table::Rejects.schema()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_files_are_the_contract() {
        for table in Table::ALL {
            let contract = serde_json::to_string_pretty(&table.contract_json()).unwrap() + "\n";
            crate::golden::check(format!("schemas/{}.json", table.name()), &contract);
        }
    }

    #[test]
    fn empty_batches_build_for_every_table() {
        assert_eq!(tickets_batch(&[]).num_columns(), TICKETS.len());
        assert_eq!(conversations_batch(&[]).num_columns(), CONVERSATIONS.len());
        assert_eq!(notes_batch(&[]).num_columns(), NOTES.len());
        assert_eq!(time_entries_batch(&[]).num_columns(), TIME_ENTRIES.len());
        assert_eq!(rejects_batch(&[]).num_columns(), REJECTS.len());
    }
}
