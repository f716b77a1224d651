//! The simulated account: a seeded generator, the world state the server reads, and the
//! mutations tests script against it.
//!
//! The public types here ([`GroundTruth`] and its parts) are the simulator's own model of what it
//! serves, so tests can compare the ETL's output with what the "API" really contained. They are
//! deliberately *not* the client's wire types: the JSON shapes live in `render.rs`, written from
//! the API document, and a field misnamed in the client must not be hidden by sharing a struct.
//!
//! Generation is a pure function of `(seed, ticket count, now)`: same inputs, same world, on any
//! machine (rand's `StdRng` is a fixed, portable algorithm for a given rand release). This module
//! does no IO and knows nothing about HTTP.

use std::collections::HashSet;

use chrono::{DateTime, Duration, Utc};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use serde_json::{json, Value};

use super::text;

/// First ticket id; ids are sequential from here in creation order.
const FIRST_TICKET_ID: i64 = 10_001;
/// Agents are `AGENT_BASE + n` (n = 1..=6).
const AGENT_BASE: i64 = 21_000_000_000;
const REQUESTER_BASE: i64 = 21_000_400_000;
const DEPARTMENT_BASE: i64 = 21_000_350_000;
/// The primary workspace's id (as in the API document's example); the others follow it. An
/// account without the workspaces feature still serves `workspace_id: 2` everywhere.
pub(crate) const PRIMARY_WORKSPACE: i64 = 2;
const GROUP_BASE: i64 = 21_000_188_000;
const CONVERSATION_BASE: i64 = 21_001_000_000;
const TIME_ENTRY_BASE: i64 = 21_002_000_000;
/// The mailbox the service desk sends from and receives on.
pub(crate) const SUPPORT_EMAIL: &str = "support@msp.example";
/// How far back generated tickets reach (~14 months).
const HISTORY_DAYS: i64 = 425;

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
            .filter(|t| t.status == 5 && !t.deleted && !t.spam)
    }

    /// The primary workspace's id ([`PRIMARY_WORKSPACE`]).
    pub fn primary_workspace(&self) -> i64 {
        PRIMARY_WORKSPACE
    }

    /// The workspace of a new ticket: its department's, else spread by ticket id.
    fn workspace_for(&self, department_id: Option<i64>, ticket_id: i64) -> i64 {
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
fn workspace_of(n: i64, count: usize) -> i64 {
    PRIMARY_WORKSPACE + n.rem_euclid(count.max(1) as i64)
}

/// Spreads departments (round robin) and tickets (their department's workspace, or by id) over
/// `count` workspaces. Draws nothing from the generator: the data of every other field stays
/// what `(seed, tickets, now)` makes it.
fn assign_workspaces(truth: &mut GroundTruth, count: usize) {
    truth.workspaces = if count > 1 {
        (0..count as i64)
            .map(|i| Workspace {
                id: PRIMARY_WORKSPACE + i,
                name: if i == 0 {
                    "IT".to_owned()
                } else {
                    format!("Client {i}")
                },
                primary: i == 0,
                account_number: 700_100 + i,
            })
            .collect()
    } else {
        Vec::new()
    };
    for (i, d) in truth.departments.iter_mut().enumerate() {
        d.workspace_id = workspace_of(i as i64, count);
    }
    let departments: Vec<(i64, i64)> = truth
        .departments
        .iter()
        .map(|d| (d.id, d.workspace_id))
        .collect();
    for t in &mut truth.tickets {
        t.workspace_id = t
            .department_id
            .and_then(|id| departments.iter().find(|(d, _)| *d == id))
            .map_or_else(|| workspace_of(t.id, count), |(_, w)| *w);
    }
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

/// The mutable world behind the server: the ground truth plus what mutations need to continue
/// deterministically (the generator's rng and the next child ids).
#[derive(Debug)]
pub(crate) struct World {
    pub(crate) truth: GroundTruth,
    rng: StdRng,
    ids: IdCounters,
}

#[derive(Debug)]
struct IdCounters {
    conversation: i64,
    time_entry: i64,
}

impl IdCounters {
    fn next_conversation(&mut self) -> i64 {
        self.conversation += 1;
        self.conversation
    }

    fn next_time_entry(&mut self) -> i64 {
        self.time_entry += 1;
        self.time_entry
    }
}

/// Who a generated ticket can involve, borrowed from the world while tickets are built.
struct Directory<'a> {
    departments: &'a [Department],
    agents: &'a [Agent],
    requesters: &'a [Requester],
}

/// Attributes forced onto specific tickets so every edge case exists in every world of
/// reasonable size (>= 50 tickets), whatever the seed.
#[derive(Debug, Default, Clone, Copy)]
struct Forced {
    status: Option<i64>,
    priority: Option<i64>,
    agent_requester: bool,
    null_department: bool,
    conversations: Option<usize>,
    time_entries: Option<usize>,
    long_time_entry: bool,
    deleted: bool,
    spam: bool,
}

fn forced_for(index: usize, count: usize) -> Forced {
    let mut f = Forced::default();
    if count < 50 {
        return f;
    }
    // Distinct indices for every count >= 50 (the ratios are far enough apart).
    let closed = Some(5);
    if index == count / 3 {
        f.status = closed;
        f.conversations = Some(101 + index % 20);
    } else if index == count / 2 {
        f.status = closed;
        f.time_entries = Some(101 + index % 10);
    } else if index == count / 4 {
        f.status = closed;
        f.long_time_entry = true;
    } else if index == count / 5 || index == count / 5 + 1 {
        f.status = closed;
        f.agent_requester = true;
    } else if index == count / 6 {
        f.status = closed;
        f.null_department = true;
    } else if index == count / 7 {
        f.status = closed;
        f.priority = Some(7);
    } else if index == count / 8 {
        f.status = closed;
        f.deleted = true;
    } else if index == count / 9 {
        f.status = Some(2);
        f.spam = true;
    } else if index == count - 3 {
        f.status = Some(9);
    } else if index == count - 5 {
        f.status = Some(23);
    }
    f
}

/// Draws from `(value, weight)` pairs.
fn weighted<T: Copy>(rng: &mut StdRng, table: &[(T, u32)]) -> T {
    let total: u32 = table.iter().map(|(_, w)| w).sum();
    let mut roll = rng.gen_range(0..total);
    for &(value, weight) in table {
        if roll < weight {
            return value;
        }
        roll -= weight;
    }
    table[table.len() - 1].0
}

/// A uniformly random whole second in `[from, to]` (or `from` when the range is empty).
fn between(rng: &mut StdRng, from: DateTime<Utc>, to: DateTime<Utc>) -> DateTime<Utc> {
    let span = (to - from).num_seconds();
    if span <= 0 {
        return from;
    }
    from + Duration::seconds(rng.gen_range(0..=span))
}

/// `n` sorted whole-second instants in `[from, to]`.
fn sorted_between(
    rng: &mut StdRng,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    n: usize,
) -> Vec<DateTime<Utc>> {
    let mut v: Vec<_> = (0..n).map(|_| between(rng, from, to)).collect();
    v.sort();
    v
}

/// The bump rule for mutations: `now`, but strictly after the previous value so a touched ticket
/// always moves forward even when several mutations land in the same second.
pub(crate) fn later(now: DateTime<Utc>, previous: DateTime<Utc>) -> DateTime<Utc> {
    now.max(previous + Duration::seconds(1))
}

/// Formats minutes the way Freshservice does (`"hh:mm"`), or one of the variants it is known to
/// emit; the variant is chosen by the caller.
fn format_time_spent(minutes: u32, style: TimeStyle) -> String {
    let (h, m) = (minutes / 60, minutes % 60);
    match style {
        TimeStyle::Padded => format!("{h:02}:{m:02}"),
        TimeStyle::Short => format!("{h}:{m:02}"),
        TimeStyle::Seconds => format!("{h:02}:{m:02}:00"),
    }
}

#[derive(Debug, Clone, Copy)]
enum TimeStyle {
    Padded,
    Short,
    Seconds,
}

const DEPARTMENTS: &[(&str, &str)] = &[
    ("Acme Dental", "acmedental.example"),
    ("Brightwater Logistics", "brightwater.example"),
    ("Cedar & Pine Law LLP", "cedarpine.example"),
    ("Délices de Montréal Bakery", "delices.example"),
    ("Northwind Traders", "northwind.example"),
    ("Østfold Marine AS", "ostfold.example"),
    ("東京 Trading KK", "tokyo-trading.example"),
    ("Greenleaf Veterinary", "greenleaf.example"),
    ("Harbor View Dental Group", "harborview.example"),
    ("Summit Outdoor Co.", "summit.example"),
    ("Kestrel Engineering", "kestrel.example"),
    ("Lakeside Montessori", "lakeside.example"),
];

const AGENTS: &[(&str, &str, &str, &str)] = &[
    ("Sam", "Ortiz", "sam", "Service Desk Technician"),
    ("Priya", "Natarajan", "priya.n", "Service Desk Lead"),
    ("Jonas", "Weiß", "jonas", "Field Technician"),
    ("Mei", "Lin", "mei", "Network Engineer"),
    ("Tomás", "Ribeiro", "tomas", "Service Desk Technician"),
    ("Aisha", "Okafor", "aisha", "Account Manager"),
];

/// (display, ascii for the email address)
const FIRST_NAMES: &[(&str, &str)] = &[
    ("Dana", "dana"),
    ("Zoë", "zoe"),
    ("Søren", "soren"),
    ("José", "jose"),
    ("Priya", "priya"),
    ("Liam", "liam"),
    ("Chloé", "chloe"),
    ("Wei", "wei"),
    ("Fatima", "fatima"),
    ("Noah", "noah"),
    ("Olivia", "olivia"),
    ("Mateo", "mateo"),
    ("Hana", "hana"),
    ("Kwame", "kwame"),
    ("Ingrid", "ingrid"),
    ("Ravi", "ravi"),
    ("Emma", "emma"),
    ("Lucas", "lucas"),
    ("Yuki", "yuki"),
    ("Aoife", "aoife"),
];

const LAST_NAMES: &[(&str, &str)] = &[
    ("Reyes", "reyes"),
    ("Müller", "mueller"),
    ("Nørgaard", "noergaard"),
    ("Núñez", "nunez"),
    ("O'Brien", "obrien"),
    ("Smith", "smith"),
    ("Dubois", "dubois"),
    ("李", "li"),
    ("佐藤", "sato"),
    ("Kowalski", "kowalski"),
    ("Mensah", "mensah"),
    ("García", "garcia"),
    ("Johansson", "johansson"),
    ("Patel", "patel"),
    ("Nguyen", "nguyen"),
];

const JOB_TITLES: &[&str] = &[
    "Office Manager",
    "Receptionist",
    "Accountant",
    "Partner",
    "Dental Hygienist",
    "Warehouse Lead",
];

const CATEGORIES: &[(&str, &str)] = &[
    ("Software", "Email"),
    ("Hardware", "Printer"),
    ("Network", "VPN"),
    ("Access", "Password reset"),
    ("Hardware", "Laptop"),
    ("Software", "Accounting"),
];

const TAGS: &[&str] = &[
    "vip",
    "onsite",
    "recurring",
    "hardware",
    "m365",
    "after-hours",
];

const NUM_GROUPS: i64 = 3;

const GROUP_NAMES: [(&str, &str); NUM_GROUPS as usize] = [
    ("Service Desk", "First-line support"),
    ("Network & Infrastructure", "Firewalls, VPN, servers"),
    ("Field Services", "Onsite visits and hardware"),
];

const TASK_BASE: i64 = 21_003_000_000;

fn gen_groups() -> Vec<Group> {
    GROUP_NAMES
        .iter()
        .enumerate()
        .map(|(i, &(name, description))| Group {
            id: GROUP_BASE + 1 + i as i64,
            name: name.to_owned(),
            description: description.to_owned(),
        })
        .collect()
}

/// A stable pseudo-random number from an id (splitmix64). The fields added for issue 11
/// (attachments, time-entry task and custom fields) derive from their object's id instead of
/// drawing from the world's RNG, so every earlier field of a seeded world stays as it was.
fn id_hash(id: i64) -> u64 {
    let mut z = (id as u64).wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// About one message in six carries attachments (one, sometimes two); notes carry logs.
fn attachments_for(conversation_id: i64, private: bool) -> Vec<Attachment> {
    let h = id_hash(conversation_id);
    if h % 6 != 0 {
        return Vec::new();
    }
    const FILES: &[(&str, &str)] = &[
        ("screenshot.png", "image/png"),
        ("error log.txt", "text/plain"),
        ("Rechnung März.pdf", "application/pdf"),
        ("photo.jpg", "image/jpeg"),
        ("export.csv", "text/csv"),
    ];
    let count = 1 + usize::from((h >> 8) % 4 == 0);
    (0..count)
        .map(|i| {
            let pick = if private {
                1
            } else {
                ((h >> (16 + 4 * i)) % FILES.len() as u64) as usize
            };
            let (name, content_type) = FILES[pick];
            Attachment {
                id: 21_000_884_000 + (conversation_id % 100_000) * 10 + i as i64,
                name: name.to_owned(),
                content_type: content_type.to_owned(),
                size: 512 + ((h >> (24 + 8 * i)) % 2_000_000) as i64,
            }
        })
        .collect()
}

/// `task_id` (one entry in ten) and `custom_fields` of a time entry, from its id.
fn time_entry_extras(entry_id: i64) -> (Option<i64>, Value) {
    let h = id_hash(entry_id);
    let task_id = (h % 10 == 0).then(|| TASK_BASE + (entry_id % 10_000));
    let custom_fields = match (h >> 8) % 5 {
        0 => json!({}),
        1 | 2 => json!({"work_type": "Remote", "rate_code": 1}),
        3 => json!({"work_type": "Onsite", "rate_code": 2}),
        _ => json!({"work_type": "Travel", "rate_code": null}),
    };
    (task_id, custom_fields)
}

fn gen_departments(rng: &mut StdRng, now: DateTime<Utc>) -> Vec<Department> {
    let mut used = HashSet::new();
    // 482913 is spelled as a padded string below; keep the numeric ones distinct from it.
    used.insert(482_913);
    DEPARTMENTS
        .iter()
        .enumerate()
        .map(|(i, &(name, domain))| {
            let account_number = match i {
                3 => Some(json!("  482913 ")),
                5 => Some(Value::Null),
                7 => None,
                9 => Some(json!("../../x")),
                _ => loop {
                    let n: i64 = rng.gen_range(100_000..=999_999);
                    if used.insert(n) {
                        break Some(json!(n));
                    }
                },
            };
            let created_at = now - Duration::days(rng.gen_range(500..1500));
            Department {
                id: DEPARTMENT_BASE + 1 + i as i64,
                name: name.to_owned(),
                description: (i % 3 != 2).then(|| format!("Managed since {}", 2018 + i % 6)),
                domains: vec![domain.to_owned()],
                prime_user_id: None,
                account_number,
                plan_selected: ["Gold", "Silver", "Bronze"][i % 3].to_owned(),
                workspace_id: PRIMARY_WORKSPACE,
                created_at,
                updated_at: between(rng, created_at, now - Duration::days(1)),
            }
        })
        .collect()
}

fn gen_agents(now: DateTime<Utc>) -> Vec<Agent> {
    AGENTS
        .iter()
        .enumerate()
        .map(|(i, &(first, last, mailbox, title))| {
            let created_at = now - Duration::days(1200 - 60 * i as i64);
            Agent {
                id: AGENT_BASE + 1 + i as i64,
                first_name: first.to_owned(),
                last_name: last.to_owned(),
                email: format!("{mailbox}@msp.example"),
                job_title: title.to_owned(),
                group_ids: vec![GROUP_BASE + 1 + (i as i64 % NUM_GROUPS)],
                created_at,
                updated_at: now - Duration::days(3 + i as i64),
            }
        })
        .collect()
}

fn gen_requesters(
    rng: &mut StdRng,
    departments: &[Department],
    now: DateTime<Utc>,
) -> Vec<Requester> {
    let mut emails = HashSet::new();
    (0..30)
        .map(|i| {
            // The first 24 cover every department twice; the rest land anywhere.
            let dept = if i < 2 * departments.len() {
                &departments[i % departments.len()]
            } else {
                &departments[rng.gen_range(0..departments.len())]
            };
            let (first, first_ascii) = *FIRST_NAMES.choose(rng).unwrap_or(&FIRST_NAMES[0]);
            let (last, last_ascii) = *LAST_NAMES.choose(rng).unwrap_or(&LAST_NAMES[0]);
            let domain = &dept.domains[0];
            let mut email = format!("{first_ascii}.{last_ascii}@{domain}");
            if !emails.insert(email.clone()) {
                email = format!("{first_ascii}.{last_ascii}{i}@{domain}");
                emails.insert(email.clone());
            }
            let created_at = now - Duration::days(rng.gen_range(430..1400));
            Requester {
                id: REQUESTER_BASE + 1 + i as i64,
                first_name: first.to_owned(),
                last_name: last.to_owned(),
                primary_email: email,
                job_title: rng.gen_bool(0.7).then(|| {
                    JOB_TITLES
                        .choose(rng)
                        .copied()
                        .unwrap_or("Staff")
                        .to_owned()
                }),
                department_id: Some(dept.id),
                work_phone_number: rng
                    .gen_bool(0.6)
                    .then(|| format!("+1-555-{:04}", rng.gen_range(100..9999))),
                mobile_phone_number: rng.gen_bool(0.3).then(|| {
                    format!(
                        "+1 (555) {:03}-{:04}",
                        rng.gen_range(200..999),
                        rng.gen_range(0..9999)
                    )
                }),
                vip_user: rng.gen_bool(0.1),
                created_at,
                updated_at: between(rng, created_at, now - Duration::days(1)),
            }
        })
        .collect()
}

/// The people a ticket involves, resolved once.
struct Parties {
    requester_id: i64,
    requester_name: String,
    requester_first: String,
    requester_email: String,
    company: String,
    department_id: Option<i64>,
    responder: Option<(i64, String)>,
}

fn choose_parties(rng: &mut StdRng, dir: &Directory<'_>, forced: Forced) -> Parties {
    let agent_requester = forced.agent_requester || rng.gen_bool(0.03);
    let (requester_id, first, last, email, mut department_id) = if agent_requester {
        let a = &dir.agents[rng.gen_range(0..dir.agents.len())];
        let dept = rng
            .gen_bool(0.7)
            .then(|| dir.departments[rng.gen_range(0..dir.departments.len())].id);
        (a.id, &a.first_name, &a.last_name, a.email.clone(), dept)
    } else {
        let r = &dir.requesters[rng.gen_range(0..dir.requesters.len())];
        (
            r.id,
            &r.first_name,
            &r.last_name,
            r.primary_email.clone(),
            r.department_id,
        )
    };
    if forced.null_department || rng.gen_bool(0.04) {
        department_id = None;
    }
    let company = department_id
        .and_then(|id| dir.departments.iter().find(|d| d.id == id))
        .map_or_else(|| "MSP".to_owned(), |d| d.name.clone());
    let responder = rng.gen_bool(0.93).then(|| {
        let a = &dir.agents[rng.gen_range(0..dir.agents.len())];
        (a.id, format!("{} {}", a.first_name, a.last_name))
    });
    Parties {
        requester_id,
        requester_name: format!("{first} {last}"),
        requester_first: first.clone(),
        requester_email: email,
        company,
        department_id,
        responder,
    }
}

/// When things happened to a ticket.
struct Timeline {
    created_at: DateTime<Utc>,
    first_assigned_at: Option<DateTime<Utc>>,
    resolved_at: Option<DateTime<Utc>>,
    closed_at: Option<DateTime<Utc>>,
    status_updated_at: DateTime<Utc>,
    /// End of the ticket's working life: conversations happen before this.
    activity_end: DateTime<Utc>,
}

fn timeline(
    rng: &mut StdRng,
    status: i64,
    created_at: DateTime<Utc>,
    assigned: bool,
    now: DateTime<Utc>,
) -> Timeline {
    let age = (now - created_at).num_seconds().max(60);
    // Skewed work duration: most tickets close within a day or two, a few take weeks.
    let u: f64 = rng.gen();
    let work = ((u * u * 14.0 * 86_400.0) as i64).max(20 * 60);
    let (resolved_at, closed_at, activity_end) = match status {
        5 => {
            let resolved = created_at + Duration::seconds(work.min(age * 6 / 10));
            let room = (now - resolved).num_seconds() / 2;
            let gap = rng.gen_range(0..=72 * 3600).min(room);
            let closed = resolved + Duration::seconds(gap);
            (Some(resolved), Some(closed), closed)
        }
        4 => {
            let resolved = created_at + Duration::seconds(work.min(age * 8 / 10));
            (Some(resolved), None, resolved)
        }
        _ => {
            let end = created_at + Duration::seconds(age * rng.gen_range(10..90) / 100);
            (None, None, end)
        }
    };
    let first_assigned_at = assigned.then(|| {
        let delay = rng
            .gen_range(120..=3 * 3600)
            .min((activity_end - created_at).num_seconds() / 2);
        created_at + Duration::seconds(delay)
    });
    let status_updated_at = match (closed_at, resolved_at) {
        (Some(c), _) => c,
        (None, Some(r)) => r,
        (None, None) => between(rng, created_at, activity_end),
    };
    Timeline {
        created_at,
        first_assigned_at,
        resolved_at,
        closed_at,
        status_updated_at,
        activity_end,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ConversationKind {
    Incoming,
    Outgoing,
    Note,
}

fn make_conversation(
    rng: &mut StdRng,
    ids: &mut IdCounters,
    ticket_id: i64,
    kind: ConversationKind,
    parties: &Parties,
    agent: (i64, String),
    at: DateTime<Utc>,
) -> Conversation {
    let (user_id, rich, incoming, private, source, support, from, to) = match kind {
        ConversationKind::Incoming => (
            parties.requester_id,
            text::incoming_body(rng, &parties.requester_name),
            true,
            false,
            0,
            Some(SUPPORT_EMAIL.to_owned()),
            Some(parties.requester_email.clone()),
            vec![SUPPORT_EMAIL.to_owned()],
        ),
        ConversationKind::Outgoing => (
            agent.0,
            text::reply_body(rng, &parties.requester_first, &agent.1),
            false,
            false,
            0,
            Some(SUPPORT_EMAIL.to_owned()),
            Some(SUPPORT_EMAIL.to_owned()),
            vec![parties.requester_email.clone()],
        ),
        ConversationKind::Note => (
            agent.0,
            text::note_body(rng),
            false,
            true,
            2,
            None,
            None,
            Vec::new(),
        ),
    };
    let id = ids.next_conversation();
    Conversation {
        id,
        attachments: attachments_for(id, private),
        ticket_id,
        user_id,
        body: rich.html,
        body_text: rich.text,
        incoming,
        private,
        source,
        support_email: support,
        from_email: from,
        to_emails: to,
        created_at: at,
        // A few get edited a little later (agents fix typos in notes).
        updated_at: if rng.gen_bool(0.05) {
            at + Duration::seconds(rng.gen_range(30..600))
        } else {
            at
        },
    }
}

fn make_time_entry(
    rng: &mut StdRng,
    ids: &mut IdCounters,
    agent_id: i64,
    time_spent: String,
    minutes: u32,
    created_at: DateTime<Utc>,
    timer_running: bool,
) -> TimeEntry {
    let start_time = created_at - Duration::minutes(i64::from(minutes));
    let id = ids.next_time_entry();
    let (task_id, custom_fields) = time_entry_extras(id);
    TimeEntry {
        id,
        task_id,
        custom_fields,
        agent_id,
        time_spent,
        billable: rng.gen_bool(0.8),
        timer_running,
        executed_at: start_time,
        start_time,
        note: text::time_note(rng),
        created_at,
        updated_at: created_at,
    }
}

fn generate_ticket(
    rng: &mut StdRng,
    ids: &mut IdCounters,
    dir: &Directory<'_>,
    id: i64,
    created_at: DateTime<Utc>,
    now: DateTime<Utc>,
    forced: Forced,
) -> Ticket {
    let ticket_type = weighted(
        rng,
        &[("Incident", 70), ("Service Request", 25), ("Alert", 5)],
    );
    let parties = choose_parties(rng, dir, forced);
    let status = forced
        .status
        .unwrap_or_else(|| weighted(rng, &[(5, 75), (2, 8), (3, 5), (4, 6), (9, 3), (23, 3)]));
    let priority = forced
        .priority
        .unwrap_or_else(|| weighted(rng, &[(1, 30), (2, 40), (3, 20), (4, 9), (7, 1)]));
    let source = weighted(rng, &[(1, 50), (2, 25), (3, 15), (4, 5), (9, 3), (15, 2)]);
    let tl = timeline(rng, status, created_at, parties.responder.is_some(), now);
    let subject = text::subject(rng);
    let desc = text::description(rng, &parties.requester_name, &parties.company);
    let any_agent = |rng: &mut StdRng| -> (i64, String) {
        parties.responder.clone().unwrap_or_else(|| {
            let a = &dir.agents[rng.gen_range(0..dir.agents.len())];
            (a.id, format!("{} {}", a.first_name, a.last_name))
        })
    };

    let n_conv = forced.conversations.unwrap_or_else(|| {
        weighted(
            rng,
            &[
                (0, 12),
                (1, 14),
                (2, 16),
                (3, 14),
                (4, 12),
                (5, 10),
                (6, 8),
                (7, 7),
                (8, 7),
            ],
        )
    });
    let conv_times = sorted_between(
        rng,
        tl.created_at + Duration::seconds(60),
        tl.activity_end,
        n_conv,
    );
    let mut conversations = Vec::with_capacity(n_conv);
    for (i, at) in conv_times.into_iter().enumerate() {
        let kind = if i == 0 && rng.gen_bool(0.6) {
            ConversationKind::Outgoing
        } else {
            weighted(
                rng,
                &[
                    (ConversationKind::Incoming, 35),
                    (ConversationKind::Outgoing, 40),
                    (ConversationKind::Note, 25),
                ],
            )
        };
        let agent = any_agent(rng);
        conversations.push(make_conversation(rng, ids, id, kind, &parties, agent, at));
    }

    let n_te = forced
        .time_entries
        .unwrap_or_else(|| weighted(rng, &[(0, 25), (1, 30), (2, 22), (3, 13), (4, 10)]))
        .max(usize::from(forced.long_time_entry));
    let mut te_times = sorted_between(
        rng,
        tl.created_at + Duration::seconds(120),
        tl.activity_end,
        n_te,
    );
    // Some entries are logged after the ticket closed (agents catching up on timesheets).
    if let (Some(closed), Some(last)) = (tl.closed_at, te_times.last_mut()) {
        if rng.gen_bool(0.1) {
            *last = between(rng, closed, now);
        }
    }
    let mut time_entries = Vec::with_capacity(n_te);
    for (i, at) in te_times.into_iter().enumerate() {
        let (minutes, spent) = if forced.long_time_entry && i == 0 {
            // The one "hhh:mm" entry: a project billed as one block of >= 100 hours.
            let m = 100 * 60 + rng.gen_range(0..40) * 15;
            (m, format_time_spent(m, TimeStyle::Padded))
        } else {
            let m = *[
                5u32, 10, 15, 20, 30, 45, 60, 75, 90, 120, 150, 180, 240, 300, 480,
            ]
            .choose(rng)
            .unwrap_or(&15);
            let style = weighted(
                rng,
                &[
                    (TimeStyle::Padded, 72),
                    (TimeStyle::Short, 20),
                    (TimeStyle::Seconds, 8),
                ],
            );
            (m, format_time_spent(m, style))
        };
        let running = rng.gen_bool(0.02);
        let agent = any_agent(rng).0;
        time_entries.push(make_time_entry(
            rng, ids, agent, spent, minutes, at, running,
        ));
    }

    let last_activity = conversations
        .iter()
        .map(|c| c.updated_at)
        .chain(time_entries.iter().map(|t| t.updated_at))
        .chain(tl.first_assigned_at)
        .chain([tl.status_updated_at, tl.created_at])
        .max()
        .unwrap_or(tl.created_at);
    let (category, sub_category) = match CATEGORIES.choose(rng) {
        Some(&(c, s)) if rng.gen_bool(0.85) => {
            (Some(c.to_owned()), rng.gen_bool(0.8).then(|| s.to_owned()))
        }
        _ => (None, None),
    };
    let n_tags = weighted(rng, &[(0usize, 60), (1, 30), (2, 10)]);
    let tags = TAGS
        .choose_multiple(rng, n_tags)
        .map(|t| (*t).to_owned())
        .collect();
    let cc_emails = if rng.gen_bool(0.1) {
        let domain = parties
            .requester_email
            .split('@')
            .nth(1)
            .unwrap_or("example.com");
        vec![format!("frontdesk@{domain}")]
    } else {
        Vec::new()
    };
    let custom_fields = json!({
        "billing_code": weighted(rng, &[(Some("MSP-STD"), 60), (Some("MSP-PREM"), 25), (None, 15)]),
        "onsite_visit": rng.gen_bool(0.2),
        "quoted_hours": if rng.gen_bool(0.2) { json!(rng.gen_range(1..=40)) } else { Value::Null },
    });
    let due_by = tl.created_at + Duration::days(3);
    let fr_due_by = tl.created_at + Duration::days(1);
    let first_response = conversations
        .iter()
        .find(|c| !c.incoming && !c.private)
        .map(|c| c.created_at);

    Ticket {
        id,
        subject,
        description: desc.html,
        description_text: desc.text,
        ticket_type: ticket_type.to_owned(),
        status,
        priority,
        source,
        urgency: rng.gen_range(1..=3),
        impact: rng.gen_range(1..=3),
        requester_id: parties.requester_id,
        requested_for_id: parties.requester_id,
        responder_id: parties.responder.as_ref().map(|r| r.0),
        group_id: rng
            .gen_bool(0.85)
            .then(|| GROUP_BASE + rng.gen_range(1..=NUM_GROUPS)),
        department_id: parties.department_id,
        workspace_id: PRIMARY_WORKSPACE,
        category,
        sub_category,
        tags,
        cc_emails,
        custom_fields,
        is_escalated: tl.resolved_at.is_some_and(|r| r > due_by),
        fr_escalated: first_response.is_some_and(|f| f > fr_due_by),
        due_by,
        fr_due_by,
        created_at: tl.created_at,
        updated_at: last_activity,
        first_assigned_at: tl.first_assigned_at,
        resolved_at: tl.resolved_at,
        closed_at: tl.closed_at,
        status_updated_at: tl.status_updated_at,
        deleted: forced.deleted,
        spam: forced.spam,
        conversations,
        time_entries,
    }
}

impl World {
    /// Generates the account. `now` should be whole seconds; generated timestamps never exceed it.
    #[cfg(test)]
    pub(crate) fn generate(seed: u64, tickets: usize, now: DateTime<Utc>) -> World {
        World::generate_with_workspaces(seed, tickets, now, 1)
    }

    /// Generates the account with `workspaces` workspaces (1: no workspaces feature).
    pub(crate) fn generate_with_workspaces(
        seed: u64,
        tickets: usize,
        now: DateTime<Utc>,
        workspaces: usize,
    ) -> World {
        let mut rng = StdRng::seed_from_u64(seed);
        let departments = gen_departments(&mut rng, now);
        let agents = gen_agents(now);
        let requesters = gen_requesters(&mut rng, &departments, now);
        let mut ids = IdCounters {
            conversation: CONVERSATION_BASE,
            time_entry: TIME_ENTRY_BASE,
        };

        // Creation times first, sorted, so ids grow with created_at as in a real account.
        let oldest = now - Duration::days(HISTORY_DAYS);
        let newest = now - Duration::hours(1);
        let created = sorted_between(&mut rng, oldest, newest, tickets);
        let dir = Directory {
            departments: &departments,
            agents: &agents,
            requesters: &requesters,
        };
        let tickets: Vec<Ticket> = created
            .into_iter()
            .enumerate()
            .map(|(i, at)| {
                let forced = forced_for(i, tickets);
                generate_ticket(
                    &mut rng,
                    &mut ids,
                    &dir,
                    FIRST_TICKET_ID + i as i64,
                    at,
                    now,
                    forced,
                )
            })
            .collect();

        let mut truth = GroundTruth {
            workspaces: Vec::new(),
            departments,
            agents,
            requesters,
            groups: gen_groups(),
            tickets,
        };
        assign_workspaces(&mut truth, workspaces);
        World { truth, rng, ids }
    }

    fn ticket_mut(&mut self, id: i64, op: &str) -> &mut Ticket {
        match self.truth.tickets.binary_search_by_key(&id, |t| t.id) {
            Ok(i) => &mut self.truth.tickets[i],
            // Mutations are test scripting; an unknown id is a bug in the test, so say so loudly.
            Err(_) => panic!("sim {op}: no ticket {id}"),
        }
    }

    /// Changes the subject and bumps `updated_at`.
    pub(crate) fn touch(&mut self, id: i64, now: DateTime<Utc>) {
        let t = self.ticket_mut(id, "touch_ticket");
        t.subject = next_edit_subject(&t.subject);
        t.updated_at = later(now, t.updated_at);
    }

    pub(crate) fn delete(&mut self, id: i64) {
        self.ticket_mut(id, "delete_ticket").deleted = true;
    }

    pub(crate) fn spam(&mut self, id: i64) {
        self.ticket_mut(id, "spam_ticket").spam = true;
    }

    /// Status back to Open. The stats' `resolved_at`/`closed_at` are cleared because an open
    /// ticket has neither; `status_updated_at` and `updated_at` move to the bump time.
    pub(crate) fn reopen(&mut self, id: i64, now: DateTime<Utc>) {
        let t = self.ticket_mut(id, "reopen_ticket");
        let at = later(now, t.updated_at);
        t.status = 2;
        t.resolved_at = None;
        t.closed_at = None;
        t.status_updated_at = at;
        t.updated_at = at;
    }

    /// Logs `minutes` (as `"hh:mm"`) created at `now`; bumps the ticket only when asked.
    pub(crate) fn add_time_entry(
        &mut self,
        id: i64,
        minutes: u32,
        billable: bool,
        bump_updated_at: bool,
        now: DateTime<Utc>,
    ) -> i64 {
        let fallback_agent = self.truth.agents[0].id;
        let entry_id = self.ids.next_time_entry();
        let t = self.ticket_mut(id, "add_time_entry");
        let start = now - Duration::minutes(i64::from(minutes));
        let (task_id, custom_fields) = time_entry_extras(entry_id);
        t.time_entries.push(TimeEntry {
            id: entry_id,
            task_id,
            custom_fields,
            agent_id: t.responder_id.unwrap_or(fallback_agent),
            time_spent: format_time_spent(minutes, TimeStyle::Padded),
            billable,
            timer_running: false,
            executed_at: start,
            start_time: start,
            note: "Follow-up work logged after close".to_owned(),
            created_at: now,
            updated_at: now,
        });
        if bump_updated_at {
            t.updated_at = later(now, t.updated_at);
        }
        entry_id
    }

    /// A new closed ticket for a requester whose department has a numeric account number:
    /// one public agent reply, one private note and one time entry; `updated_at = now`.
    pub(crate) fn add_closed_ticket(&mut self, now: DateTime<Utc>) -> i64 {
        let id = self
            .truth
            .tickets
            .last()
            .map_or(FIRST_TICKET_ID, |t| t.id + 1);
        let dir = Directory {
            departments: &self.truth.departments,
            agents: &self.truth.agents,
            requesters: &self.truth.requesters,
        };
        let mapped: Vec<&Requester> = dir
            .requesters
            .iter()
            .filter(|r| {
                r.department_id
                    .and_then(|d| dir.departments.iter().find(|x| x.id == d))
                    .is_some_and(|d| d.account_number.as_ref().is_some_and(Value::is_i64))
            })
            .collect();
        let rng = &mut self.rng;
        // Every generated world maps each department to two requesters, so `mapped` is non-empty.
        let r = mapped[rng.gen_range(0..mapped.len())];
        let company = r
            .department_id
            .and_then(|d| dir.departments.iter().find(|x| x.id == d))
            .map_or_else(String::new, |d| d.name.clone());
        let agent = &dir.agents[rng.gen_range(0..dir.agents.len())];
        let agent_name = format!("{} {}", agent.first_name, agent.last_name);
        let parties = Parties {
            requester_id: r.id,
            requester_name: format!("{} {}", r.first_name, r.last_name),
            requester_first: r.first_name.clone(),
            requester_email: r.primary_email.clone(),
            company,
            department_id: r.department_id,
            responder: Some((agent.id, agent_name.clone())),
        };

        let created_at = now - Duration::hours(rng.gen_range(2..48));
        let assigned = created_at + Duration::minutes(5);
        let resolved = now - Duration::minutes(30);
        let closed = now - Duration::minutes(10);
        let desc = text::description(rng, &parties.requester_name, &parties.company);
        let reply_at = created_at + Duration::minutes(20);
        let note_at = resolved - Duration::minutes(5);
        let ids = &mut self.ids;
        let conversations = vec![
            make_conversation(
                rng,
                ids,
                id,
                ConversationKind::Outgoing,
                &parties,
                (agent.id, agent_name.clone()),
                reply_at,
            ),
            make_conversation(
                rng,
                ids,
                id,
                ConversationKind::Note,
                &parties,
                (agent.id, agent_name),
                note_at,
            ),
        ];
        let mut entry = make_time_entry(rng, ids, agent.id, "00:45".to_owned(), 45, note_at, false);
        let workspace_id = self.truth.workspace_for(r.department_id, id);
        entry.billable = true;
        let ticket = Ticket {
            id,
            subject: text::subject(rng),
            description: desc.html,
            description_text: desc.text,
            ticket_type: "Incident".to_owned(),
            status: 5,
            priority: 2,
            source: 1,
            urgency: 2,
            impact: 2,
            requester_id: r.id,
            requested_for_id: r.id,
            responder_id: Some(agent.id),
            group_id: Some(GROUP_BASE + 1),
            department_id: r.department_id,
            workspace_id,
            category: Some("Software".to_owned()),
            sub_category: Some("Email".to_owned()),
            tags: Vec::new(),
            cc_emails: Vec::new(),
            custom_fields: json!({"billing_code": "MSP-STD", "onsite_visit": false, "quoted_hours": null}),
            is_escalated: false,
            fr_escalated: false,
            due_by: created_at + Duration::days(3),
            fr_due_by: created_at + Duration::days(1),
            created_at,
            updated_at: now,
            first_assigned_at: Some(assigned),
            resolved_at: Some(resolved),
            closed_at: Some(closed),
            status_updated_at: closed,
            deleted: false,
            spam: false,
            conversations,
            time_entries: vec![entry],
        };
        self.truth.tickets.push(ticket);
        id
    }
}

/// `"Subject"` → `"Subject (edit 1)"` → `"Subject (edit 2)"`: every touch changes the subject.
fn next_edit_subject(subject: &str) -> String {
    if let Some(start) = subject.rfind(" (edit ") {
        let n = subject[start + 7..]
            .strip_suffix(')')
            .and_then(|n| n.parse::<u32>().ok());
        if let Some(n) = n {
            return format!("{} (edit {})", &subject[..start], n + 1);
        }
    }
    format!("{subject} (edit 1)")
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 6, 1, 12, 0, 0).unwrap()
    }

    #[test]
    fn same_seed_same_world() {
        let a = World::generate(42, 200, now()).truth;
        let b = World::generate(42, 200, now()).truth;
        assert_eq!(a, b);
        assert_eq!(
            serde_json::to_string(&a).unwrap(),
            serde_json::to_string(&b).unwrap()
        );
    }

    #[test]
    fn different_seed_different_world() {
        let a = World::generate(1, 100, now()).truth;
        let b = World::generate(2, 100, now()).truth;
        assert_ne!(a, b);
    }

    #[test]
    fn departments_cover_every_account_number_shape() {
        let w = World::generate(42, 10, now()).truth;
        assert_eq!(w.departments.len(), 12);
        let shapes: Vec<_> = w
            .departments
            .iter()
            .map(|d| d.account_number.clone())
            .collect();
        assert!(shapes.contains(&Some(json!("  482913 "))));
        assert!(shapes.contains(&Some(Value::Null)));
        assert!(shapes.contains(&None));
        assert!(shapes.contains(&Some(json!("../../x"))));
        let numeric = shapes.iter().flatten().filter(|v| v.is_i64()).count();
        assert_eq!(numeric, 8);
        for v in shapes.iter().flatten().filter(|v| v.is_i64()) {
            assert!((100_000..=999_999).contains(&v.as_i64().unwrap()));
        }
    }

    #[test]
    fn tickets_have_the_promised_shape() {
        let n = 200;
        let w = World::generate(42, n, now()).truth;
        assert_eq!(w.tickets.len(), n);
        assert_eq!(w.agents.len(), 6);
        assert_eq!(w.requesters.len(), 30);
        for (i, t) in w.tickets.iter().enumerate() {
            assert_eq!(t.id, FIRST_TICKET_ID + i as i64);
            assert!(t.created_at <= t.updated_at, "ticket {}", t.id);
            assert!(t.updated_at <= now(), "ticket {}", t.id);
            assert!(t.created_at >= now() - Duration::days(HISTORY_DAYS));
            if t.status == 5 {
                let closed = t.closed_at.expect("closed ticket has closed_at");
                assert!(closed <= t.updated_at && closed >= t.created_at);
                assert!(t.resolved_at.unwrap() <= closed);
            } else {
                assert!(t.closed_at.is_none());
            }
            assert!(t
                .conversations
                .windows(2)
                .all(|w| w[0].created_at <= w[1].created_at));
            assert!(t.conversations.windows(2).all(|w| w[0].id < w[1].id));
            assert!(t.time_entries.windows(2).all(|w| w[0].id < w[1].id));
            for c in &t.conversations {
                assert!(c.id > 21_000_000_000);
                if c.private {
                    assert_eq!(c.source, 2);
                    assert!(c.from_email.is_none() && c.support_email.is_none());
                } else {
                    assert!(c.support_email.is_some());
                }
                if c.incoming {
                    assert_eq!(c.user_id, t.requester_id);
                }
            }
        }
        let closed = w.tickets.iter().filter(|t| t.status == 5).count();
        assert!((120..=175).contains(&closed), "closed = {closed}");
        let statuses: HashSet<i64> = w.tickets.iter().map(|t| t.status).collect();
        for s in [2, 5, 9, 23] {
            assert!(statuses.contains(&s), "status {s}");
        }
        assert!(w.tickets.iter().any(|t| t.priority == 7));
        assert!(w.tickets.iter().any(|t| t.department_id.is_none()));
        assert!(w
            .tickets
            .iter()
            .any(|t| w.agents.iter().any(|a| a.id == t.requester_id)));
        let closed_with =
            |f: &dyn Fn(&Ticket) -> bool| w.tickets.iter().any(|t| t.status == 5 && f(t));
        assert!(closed_with(&|t| t.conversations.len() > 100));
        assert!(closed_with(&|t| t.time_entries.len() > 100));
        assert!(closed_with(&|t| t.time_entries.is_empty()));
        assert!(closed_with(&|t| t.deleted));
        assert!(w.tickets.iter().any(|t| t.spam));
        let recent = w
            .tickets
            .iter()
            .filter(|t| t.created_at >= now() - Duration::days(30))
            .count();
        assert!(recent > 0);
    }

    #[test]
    fn time_spent_formats() {
        let w = World::generate(42, 200, now()).truth;
        let all: Vec<&TimeEntry> = w.tickets.iter().flat_map(|t| &t.time_entries).collect();
        let hhh = all
            .iter()
            .filter(|e| e.time_spent.split(':').next().unwrap().len() == 3)
            .count();
        assert_eq!(hhh, 1, "exactly one hhh:mm entry");
        assert!(all.iter().any(|e| e.time_spent.len() == 5));
        assert!(all.iter().any(|e| e.time_spent.len() == 4), "h:mm");
        assert!(all.iter().any(|e| e.time_spent.len() == 8), "hh:mm:ss");
        assert!(all.iter().any(|e| !e.billable));
        assert!(all.iter().any(|e| e.timer_running));
        let e = TimeEntry {
            time_spent: "01:30:00".into(),
            ..all[0].clone()
        };
        assert_eq!(e.minutes(), 90);
    }

    #[test]
    fn bumps_are_strictly_increasing() {
        let mut w = World::generate(42, 60, now());
        let id = w.truth.tickets[3].id;
        let before = w.truth.ticket(id).unwrap().updated_at;
        let old_subject = w.truth.ticket(id).unwrap().subject.clone();
        // "now" earlier than the ticket's updated_at must still move it forward.
        w.touch(id, before - Duration::days(1));
        let t = w.truth.ticket(id).unwrap();
        assert_eq!(t.updated_at, before + Duration::seconds(1));
        assert_ne!(t.subject, old_subject);
        w.touch(id, before);
        assert_eq!(
            w.truth.ticket(id).unwrap().updated_at,
            before + Duration::seconds(2)
        );
        assert!(w.truth.ticket(id).unwrap().subject.ends_with("(edit 2)"));
    }

    #[test]
    fn add_closed_ticket_is_mapped_and_complete() {
        let mut w = World::generate(42, 60, now());
        let at = now() + Duration::hours(1);
        let id = w.add_closed_ticket(at);
        assert_eq!(id, FIRST_TICKET_ID + 60);
        let t = w.truth.ticket(id).unwrap();
        assert_eq!(t.status, 5);
        assert_eq!(t.updated_at, at);
        assert!(t.closed_at.unwrap() <= at);
        assert_eq!(t.conversations.len(), 2);
        assert_eq!(t.conversations.iter().filter(|c| c.private).count(), 1);
        assert_eq!(t.time_entries.len(), 1);
        let d = w.truth.department(t.department_id.unwrap()).unwrap();
        assert!(d.account_number.as_ref().unwrap().is_i64());
    }

    #[test]
    fn time_entry_bump_is_optional() {
        let mut w = World::generate(42, 60, now());
        let id = w.truth.tickets[10].id;
        let before = w.truth.ticket(id).unwrap().updated_at;
        let at = now() + Duration::hours(2);
        let e1 = w.add_time_entry(id, 125, false, false, at);
        assert_eq!(w.truth.ticket(id).unwrap().updated_at, before);
        let e2 = w.add_time_entry(id, 30, true, true, at);
        assert!(e2 > e1);
        let t = w.truth.ticket(id).unwrap();
        assert_eq!(t.updated_at, at);
        let e = t.time_entries.iter().find(|e| e.id == e1).unwrap();
        assert_eq!(e.time_spent, "02:05");
        assert!(!e.billable);
    }

    #[test]
    fn reopen_clears_closed_at() {
        let mut w = World::generate(42, 60, now());
        let id = w.truth.closed_tickets().next().unwrap().id;
        w.reopen(id, now() + Duration::hours(1));
        let t = w.truth.ticket(id).unwrap();
        assert_eq!(t.status, 2);
        assert!(t.closed_at.is_none());
        assert_eq!(t.updated_at, now() + Duration::hours(1));
    }

    #[test]
    fn edit_subjects_count_up() {
        assert_eq!(next_edit_subject("VPN"), "VPN (edit 1)");
        assert_eq!(next_edit_subject("VPN (edit 1)"), "VPN (edit 2)");
        assert_eq!(next_edit_subject("x (edit y)"), "x (edit y) (edit 1)");
    }
}
