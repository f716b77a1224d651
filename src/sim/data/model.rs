//! The ground truth: what the simulated account contains, as the simulator's own types (never
//! the client's wire types).

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use super::{PRIMARY_WORKSPACE, STATUS_CLOSED};

/// Everything the simulator serves, as a snapshot. Compare ETL output against this.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GroundTruth {
    /// `GET /workspaces`, in id order (the first is the primary one); empty when the account
    /// has no workspaces feature (`GET /workspaces` answers 404).
    pub workspaces: Vec<Workspace>,
    /// `GET /departments`, in id order.
    pub departments: Vec<Department>,
    /// `GET /agents`, in id order.
    pub agents: Vec<Agent>,
    /// `GET /requesters` (agents are not in this list), in id order.
    pub requesters: Vec<Requester>,
    /// `GET /groups`, in id order (tickets' `group_id`, agents' `member_of`).
    pub groups: Vec<Group>,
    /// Every ticket of every status, including deleted and spam ones, in id order.
    pub tickets: Vec<Ticket>,
}

impl GroundTruth {
    /// The ticket with this id, if it exists (deleted and spam tickets included).
    pub fn ticket(&self, id: i64) -> Option<&Ticket> {
        self.tickets
            .binary_search_by_key(&id, |t| t.id)
            .ok()
            .map(|i| &self.tickets[i])
    }

    /// The name of the group with this id.
    pub fn group_name(&self, id: i64) -> Option<&str> {
        self.groups
            .iter()
            .find(|g| g.id == id)
            .map(|g| g.name.as_str())
    }

    /// The department with this id.
    pub fn department(&self, id: i64) -> Option<&Department> {
        self.departments.iter().find(|d| d.id == id)
    }

    /// Closed (status 5) tickets that are neither deleted nor spam: what a closed-ticket sync
    /// should end up with.
    pub fn closed_tickets(&self) -> impl Iterator<Item = &Ticket> {
        self.tickets
            .iter()
            .filter(|t| t.status == STATUS_CLOSED && !t.deleted && !t.spam)
    }

    /// The primary workspace's id (`PRIMARY_WORKSPACE`).
    pub fn primary_workspace(&self) -> i64 {
        PRIMARY_WORKSPACE
    }

    /// The workspace of a new ticket: its department's, else spread by ticket id.
    pub(super) fn workspace_for(&self, department_id: Option<i64>, ticket_id: i64) -> i64 {
        department_id.and_then(|d| self.department(d)).map_or_else(
            || workspace_of(ticket_id, self.workspaces.len()),
            |d| d.workspace_id,
        )
    }

    /// Display name and email of a user id, whether requester or agent.
    pub fn user(&self, id: i64) -> Option<(String, String)> {
        if let Some(r) = self.requesters.iter().find(|r| r.id == id) {
            return Some((
                format!("{} {}", r.first_name, r.last_name),
                r.primary_email.clone(),
            ));
        }
        self.agents
            .iter()
            .find(|a| a.id == id)
            .map(|a| (format!("{} {}", a.first_name, a.last_name), a.email.clone()))
    }
}

/// A workspace (a client in Freshservice for MSPs).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Workspace {
    /// Workspace id (`2` is the primary one, then `3`, `4`, …).
    pub id: i64,
    /// `name`.
    pub name: String,
    /// `primary`: listings without `workspace_id` return this workspace only.
    pub primary: bool,
    /// `custom_fields.account_number` (a 6-digit number), the client field an MSP may use.
    pub account_number: i64,
}

/// The workspace of the `n`-th item when there are `count` workspaces (0 or 1: the primary).
pub(super) fn workspace_of(n: i64, count: usize) -> i64 {
    PRIMARY_WORKSPACE + n.rem_euclid(count.max(1) as i64)
}

/// An agent group.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Group {
    /// `21000188000 + n` (n = 1..=3).
    pub id: i64,
    /// `name`: what `group_name` must say.
    pub name: String,
    /// `description`.
    pub description: String,
}

/// An attachment's metadata, as the conversation carries it (`attachment_url` is rendered from
/// the id; the content is never served).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Attachment {
    /// `id`.
    pub id: i64,
    /// `name`: the file name (spaces and non-ASCII included).
    pub name: String,
    /// `content_type`.
    pub content_type: String,
    /// `size` in bytes.
    pub size: i64,
}

/// A department (a client company in MSP mode).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Department {
    /// Department id (`21000350000 + n`).
    pub id: i64,
    /// Company name; some contain `&`, accents or CJK.
    pub name: String,
    /// `description`; `null` for some.
    pub description: Option<String>,
    /// `domains`: the company's mail domain (requester addresses use it).
    pub domains: Vec<String>,
    /// `prime_user_id` (always `null` here).
    pub prime_user_id: Option<i64>,
    /// `custom_fields.account_number` exactly as served: `None` = the key is absent, otherwise
    /// the JSON value (a 6-digit number, a padded string, `null`, or junk like `"../../x"`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account_number: Option<Value>,
    /// `custom_fields.plan_selected`.
    pub plan_selected: String,
    /// `workspace_id`.
    pub workspace_id: i64,
    /// `created_at`.
    pub created_at: DateTime<Utc>,
    /// `updated_at`.
    pub updated_at: DateTime<Utc>,
}

/// An agent (service desk technician). Agents may also be ticket requesters.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Agent {
    /// Agent id (`21000000000 + n`, n = 1..=6).
    pub id: i64,
    /// `first_name`.
    pub first_name: String,
    /// `last_name`.
    pub last_name: String,
    /// `email` (`…@msp.example`).
    pub email: String,
    /// `job_title`.
    pub job_title: String,
    /// Served as `member_of` (group ids).
    pub group_ids: Vec<i64>,
    /// `created_at`.
    pub created_at: DateTime<Utc>,
    /// `updated_at`.
    pub updated_at: DateTime<Utc>,
}

/// A requester (an end user at a client company).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Requester {
    /// Requester id (`21000400000 + n`).
    pub id: i64,
    /// `first_name` (may contain accents or CJK).
    pub first_name: String,
    /// `last_name` (may contain accents, apostrophes or CJK).
    pub last_name: String,
    /// `primary_email` at the department's domain (ASCII).
    pub primary_email: String,
    /// `job_title`.
    pub job_title: Option<String>,
    /// Served as `department_ids: [id]` plus `department_names`.
    pub department_id: Option<i64>,
    /// `work_phone_number` (a string).
    pub work_phone_number: Option<String>,
    /// `mobile_phone_number` (a string).
    pub mobile_phone_number: Option<String>,
    /// `vip_user`.
    pub vip_user: bool,
    /// `created_at`.
    pub created_at: DateTime<Utc>,
    /// `updated_at`.
    pub updated_at: DateTime<Utc>,
}

/// A ticket with every field the simulator serves (constant fields such as `workspace_id: 2`,
/// `fwd_emails: []` or `to_emails: null` are documented in `render.rs`). Stats fields not stored
/// here (`first_responded_at`, `inbound_count`, …) are derived from the conversations.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Ticket {
    /// Ticket id, sequential from 10001 in creation order.
    pub id: i64,
    /// `subject`; changes on every `touch_ticket`.
    pub subject: String,
    /// HTML; `""` for some service requests.
    pub description: String,
    /// Plain-text rendering of `description`.
    pub description_text: String,
    /// `Incident`, `Service Request` or `Alert` (served as `type`).
    #[serde(rename = "type")]
    pub ticket_type: String,
    /// 2 Open, 3 Pending, 4 Resolved, 5 Closed, plus custom codes 9 and 23.
    pub status: i64,
    /// 1–4, plus the occasional unknown 7.
    pub priority: i64,
    /// `source`: 1 email, 2 portal, 3 phone, 4 chat, 9 walk-up, and the newer 15.
    pub source: i64,
    /// `urgency` 1–3 (view only).
    pub urgency: i64,
    /// `impact` 1–3 (view only).
    pub impact: i64,
    /// A requester id or, for a few tickets, an agent id.
    pub requester_id: i64,
    /// Served as `requested_for_id`; the same user as the requester here.
    pub requested_for_id: i64,
    /// `responder_id`: the assigned agent, if any.
    pub responder_id: Option<i64>,
    /// `group_id`.
    pub group_id: Option<i64>,
    /// `department_id`; `null` for a few tickets.
    pub department_id: Option<i64>,
    /// `workspace_id`: its department's workspace (or spread by id when it has none).
    pub workspace_id: i64,
    /// `category`.
    pub category: Option<String>,
    /// `sub_category`.
    pub sub_category: Option<String>,
    /// `tags` (served only with `include=tags`).
    pub tags: Vec<String>,
    /// `cc_emails` (also served as `reply_cc_emails`).
    pub cc_emails: Vec<String>,
    /// The `custom_fields` object as served.
    pub custom_fields: Value,
    /// `is_escalated`: resolved after `due_by`.
    pub is_escalated: bool,
    /// `fr_escalated`: first public reply after `fr_due_by`.
    pub fr_escalated: bool,
    /// `due_by` (created + 3 days).
    pub due_by: DateTime<Utc>,
    /// `fr_due_by` (created + 1 day).
    pub fr_due_by: DateTime<Utc>,
    /// `created_at`.
    pub created_at: DateTime<Utc>,
    /// `updated_at`: the incremental cursor; only ever moves forward.
    pub updated_at: DateTime<Utc>,
    /// `stats.first_assigned_at` / `stats.assigned_at`.
    pub first_assigned_at: Option<DateTime<Utc>>,
    /// `stats.resolved_at` (status 4 and 5).
    pub resolved_at: Option<DateTime<Utc>>,
    /// `stats.closed_at`: when the ticket closed; `updated_at >= closed_at`.
    pub closed_at: Option<DateTime<Utc>>,
    /// `stats.status_updated_at`.
    pub status_updated_at: DateTime<Utc>,
    /// `deleted`: hidden from the default listing, 404 on the view and child endpoints.
    pub deleted: bool,
    /// `spam`: hidden from the default listing.
    pub spam: bool,
    /// Oldest first.
    pub conversations: Vec<Conversation>,
    /// Oldest first.
    pub time_entries: Vec<TimeEntry>,
}

/// A reply, forward or note on a ticket.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Conversation {
    /// Conversation id (large, `21001000000 + n`), increasing in creation order.
    pub id: i64,
    /// `ticket_id`.
    pub ticket_id: i64,
    /// Author: the requester for incoming replies, an agent otherwise.
    pub user_id: i64,
    /// HTML.
    pub body: String,
    /// `body_text`: plain-text rendering of `body`.
    pub body_text: String,
    /// `incoming`: true when it came from the requester side.
    pub incoming: bool,
    /// `private`: true for internal notes.
    pub private: bool,
    /// 0 email reply, 2 note.
    pub source: i64,
    /// `null` for notes.
    pub support_email: Option<String>,
    /// `null` for notes.
    pub from_email: Option<String>,
    /// `to_emails` (`[]` for notes).
    pub to_emails: Vec<String>,
    /// `created_at`.
    pub created_at: DateTime<Utc>,
    /// `updated_at` (a few notes were edited later).
    pub updated_at: DateTime<Utc>,
    /// `attachments` (screenshots, logs, PDFs on some messages; `[]` on most).
    pub attachments: Vec<Attachment>,
}

/// Time logged against a ticket.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TimeEntry {
    /// Time entry id (large, `21002000000 + n`), increasing in creation order.
    pub id: i64,
    /// `agent_id`: who logged it.
    pub agent_id: i64,
    /// Exactly as served: `"hh:mm"` mostly, also `"h:mm"`, `"hh:mm:ss"` and `"hhh:mm"`.
    pub time_spent: String,
    /// `billable`.
    pub billable: bool,
    /// `timer_running` (rarely true: `time_spent` is then provisional).
    pub timer_running: bool,
    /// `executed_at`: when the work counts for.
    pub executed_at: DateTime<Utc>,
    /// `start_time`.
    pub start_time: DateTime<Utc>,
    /// `note` (may be empty).
    pub note: String,
    /// `created_at` (sometimes after the ticket closed).
    pub created_at: DateTime<Utc>,
    /// `updated_at`.
    pub updated_at: DateTime<Utc>,
    /// `task_id`: the ticket task the time was logged on (rare).
    pub task_id: Option<i64>,
    /// `custom_fields`: the work type billing uses (`{}` on some entries).
    pub custom_fields: Value,
}

impl TimeEntry {
    /// `time_spent` in whole minutes (seconds are dropped), parsed from the sim's own formats.
    pub fn minutes(&self) -> u32 {
        let mut parts = self
            .time_spent
            .split(':')
            .map(|p| p.parse::<u32>().unwrap_or(0));
        let hours = parts.next().unwrap_or(0);
        let minutes = parts.next().unwrap_or(0);
        hours * 60 + minutes
    }
}
