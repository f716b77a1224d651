//! The Freshservice v2 JSON shapes, as the API sends them (field names from the API reference).
//!
//! Parsing is permissive: unknown fields are ignored, optional scalars may be `null` or missing,
//! and the known variants of sloppy fields (`to_emails` as a string, ids as strings) are accepted.
//! A value of a type we cannot interpret fails the decode of that one object, and
//! [`decode_each`] reports which object and which field, so one bad ticket never fails a page.

use std::borrow::Cow;
use std::fmt::Write;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// A ticket as listed by `GET /tickets?include=stats[,requester]` or viewed by `GET /tickets/{id}`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Ticket {
    /// `id`: the ticket id; also its display number (`#17531`).
    #[serde(deserialize_with = "flex_id")]
    pub id: i64,
    /// `subject`: the ticket title.
    pub subject: Option<String>,
    /// HTML; may be empty or null (service requests).
    pub description: Option<String>,
    /// `description_text`: the API's plain-text rendering of `description`.
    pub description_text: Option<String>,
    /// `status`: 2 Open, 3 Pending, 4 Resolved, 5 Closed, or an account's custom status code.
    #[serde(default, deserialize_with = "flex_int")]
    pub status: Option<i64>,
    /// `priority`: 1 Low, 2 Medium, 3 High, 4 Urgent.
    #[serde(default, deserialize_with = "flex_int")]
    pub priority: Option<i64>,
    /// `source`: how the ticket came in (1 Email, 2 Portal, 3 Phone, …); unknown codes are kept.
    #[serde(default, deserialize_with = "flex_int")]
    pub source: Option<i64>,
    /// `type`: `Incident`, `Service Request` or `Alert`.
    #[serde(rename = "type")]
    pub ticket_type: Option<String>,
    /// `requester_id`: the user who raised the ticket (a requester, or an agent).
    #[serde(default, deserialize_with = "flex_int")]
    pub requester_id: Option<i64>,
    /// `responder_id`: the assigned agent.
    #[serde(default, deserialize_with = "flex_int")]
    pub responder_id: Option<i64>,
    /// `group_id`: the assigned agent group.
    #[serde(default, deserialize_with = "flex_int")]
    pub group_id: Option<i64>,
    /// The customer company in MSP mode; null tickets go to rejects.
    #[serde(default, deserialize_with = "flex_int")]
    pub department_id: Option<i64>,
    /// The workspace (the client, in Freshservice for MSPs) the ticket belongs to.
    #[serde(default, deserialize_with = "flex_int")]
    pub workspace_id: Option<i64>,
    /// `created_at`: when the ticket was created.
    pub created_at: Option<DateTime<Utc>>,
    /// `updated_at`: the last change; the incremental cursor, and required for a ticket to be placed.
    pub updated_at: Option<DateTime<Utc>>,
    /// `deleted`: soft-deleted (only listed with `filter=deleted`); evidence that the ticket is gone.
    pub deleted: Option<bool>,
    /// `spam`: marked as spam (only listed with `filter=spam`); evidence that the ticket is gone.
    pub spam: Option<bool>,
    /// Present with `include=stats`.
    pub stats: Option<Stats>,
    /// Present with `include=requester`.
    pub requester: Option<EmbeddedRequester>,
    // The fields below are carried into the dataset for analysts; a value of an unexpected type
    // becomes null instead of rejecting the ticket (see [`lenient`]).
    /// `category`, as the account configured it.
    #[serde(default, deserialize_with = "lenient_text")]
    pub category: Option<String>,
    /// `sub_category`.
    #[serde(default, deserialize_with = "lenient_text")]
    pub sub_category: Option<String>,
    /// `item_category`.
    #[serde(default, deserialize_with = "lenient_text")]
    pub item_category: Option<String>,
    /// 1 Low, 2 Medium, 3 High; list rows may omit it (§6).
    #[serde(default, deserialize_with = "lenient_int")]
    pub urgency: Option<i64>,
    /// 1 Low, 2 Medium, 3 High; list rows may omit it (§6).
    #[serde(default, deserialize_with = "lenient_int")]
    pub impact: Option<i64>,
    /// Present with `include=tags`.
    #[serde(default, deserialize_with = "optional_string_list")]
    pub tags: Option<Vec<String>>,
    /// The account's custom fields, as sent (key order kept: `preserve_order`).
    pub custom_fields: Option<Value>,
    /// `due_by`: the SLA resolution deadline.
    #[serde(default, deserialize_with = "lenient")]
    pub due_by: Option<DateTime<Utc>>,
    /// `fr_due_by`: the SLA first-response deadline.
    #[serde(default, deserialize_with = "lenient")]
    pub fr_due_by: Option<DateTime<Utc>>,
    /// `is_escalated`: the resolution SLA was escalated (breached).
    #[serde(default, deserialize_with = "lenient")]
    pub is_escalated: Option<bool>,
    /// `fr_escalated`: the first-response SLA was escalated (breached).
    #[serde(default, deserialize_with = "lenient")]
    pub fr_escalated: Option<bool>,
}

/// The `stats` embed; only the fields we use.
#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
pub struct Stats {
    /// `closed_at`: when the ticket was closed; normalize falls back to `updated_at` without it.
    pub closed_at: Option<DateTime<Utc>>,
    /// `resolved_at`: when the ticket was resolved.
    #[serde(default, deserialize_with = "lenient")]
    pub resolved_at: Option<DateTime<Utc>>,
    /// `first_responded_at`: the first agent response.
    #[serde(default, deserialize_with = "lenient")]
    pub first_responded_at: Option<DateTime<Utc>>,
    /// `agent_responded_at`: the latest agent response.
    #[serde(default, deserialize_with = "lenient")]
    pub agent_responded_at: Option<DateTime<Utc>>,
    /// `first_resp_time_in_secs`: seconds from creation to the first response.
    #[serde(default, deserialize_with = "lenient_int")]
    pub first_resp_time_in_secs: Option<i64>,
    /// `resolution_time_in_secs`: seconds from creation to resolution.
    #[serde(default, deserialize_with = "lenient_int")]
    pub resolution_time_in_secs: Option<i64>,
}

/// The `requester` embed: `{"id","name","email","mobile","phone"}`.
#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
pub struct EmbeddedRequester {
    /// `id`: the requester's user id (the ticket's `requester_id`).
    #[serde(default, deserialize_with = "flex_int")]
    pub id: Option<i64>,
    /// `name`: the full name, as one string.
    pub name: Option<String>,
    /// `email`: the primary email.
    pub email: Option<String>,
}

/// One item of `GET /tickets/{id}/conversations`: a reply, forward or note.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Conversation {
    /// `id`: the conversation id (`note_id` for a private one).
    #[serde(deserialize_with = "flex_id")]
    pub id: i64,
    /// `user_id`: the author (a requester or an agent).
    #[serde(default, deserialize_with = "flex_int")]
    pub user_id: Option<i64>,
    /// HTML.
    pub body: Option<String>,
    /// `body_text`: the API's plain-text rendering of `body`, used when `body` is empty.
    pub body_text: Option<String>,
    /// `incoming`: true when the message came from the requester side.
    pub incoming: Option<bool>,
    /// `true` = internal note.
    pub private: Option<bool>,
    /// `source`: 0 email, 1 form, 2 note, 3 status, 4 meta, 5 feedback, 6 forwarded email.
    #[serde(default, deserialize_with = "flex_int")]
    pub source: Option<i64>,
    /// `support_email`: the support mailbox involved; null for notes.
    pub support_email: Option<String>,
    /// `from_email`: the sender; often null for notes.
    pub from_email: Option<String>,
    /// `to_emails`: the recipients (empty when the API sent null or nothing).
    #[serde(default, deserialize_with = "string_list")]
    pub to_emails: Vec<String>,
    /// `created_at`: when the message was written.
    pub created_at: Option<DateTime<Utc>>,
    /// `updated_at`: when the message was last edited.
    pub updated_at: Option<DateTime<Utc>>,
    /// Attachment metadata (`{id, name, size, content_type, attachment_url, ...}`); only the
    /// name, size and content type are kept (see [`Attachment`]).
    #[serde(default, deserialize_with = "attachment_list")]
    pub attachments: Option<Vec<Attachment>>,
}

/// What the dataset keeps of an attachment: metadata only, never the (signed, expiring) URL
/// or the content.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Attachment {
    /// `name`: the file name.
    pub name: Option<String>,
    /// `size`: in bytes.
    pub size: Option<i64>,
    /// `content_type`: the MIME type, e.g. `image/png`.
    pub content_type: Option<String>,
}

/// One item of `GET /tickets/{id}/time_entries`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct TimeEntry {
    /// `id`: the time entry id.
    #[serde(deserialize_with = "flex_id")]
    pub id: i64,
    /// `agent_id`: the agent who logged the time.
    #[serde(default, deserialize_with = "flex_int")]
    pub agent_id: Option<i64>,
    /// `"hh:mm"` (also `h:mm`, `hhh:mm`, `hh:mm:ss`); parsed by normalize.
    #[serde(default, deserialize_with = "lenient_string")]
    pub time_spent: Option<String>,
    /// Defaults to billable, as the API does.
    pub billable: Option<bool>,
    /// `timer_running`: the timer is still running, so `time_spent` is provisional.
    pub timer_running: Option<bool>,
    /// `executed_at`: the date the work counts for (defaults to creation; agents may back-date it).
    pub executed_at: Option<DateTime<Utc>>,
    /// `start_time`: when the timer (re)started.
    pub start_time: Option<DateTime<Utc>>,
    /// `note`: the agent's note on the work.
    pub note: Option<String>,
    /// `created_at`: when the entry was created.
    pub created_at: Option<DateTime<Utc>>,
    /// `updated_at`: when the entry was last changed (the ticket's `updated_at` may not move with it).
    pub updated_at: Option<DateTime<Utc>>,
    /// `task_id`: the ticket task the time was logged on.
    #[serde(default, deserialize_with = "lenient_int")]
    pub task_id: Option<i64>,
    /// Per-account fields (e.g. a work type billing uses), as sent.
    pub custom_fields: Option<Value>,
    /// Only on accounts with workspaces.
    #[serde(default, deserialize_with = "lenient_int")]
    pub workspace_id: Option<i64>,
}

/// A department (= a customer company in MSP mode).
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Department {
    /// `id`: the department id (a ticket's `department_id`).
    #[serde(deserialize_with = "flex_id")]
    pub id: i64,
    /// `name`: the company name.
    pub name: Option<String>,
    /// Holds the account number under an MSP-chosen key (number or string).
    pub custom_fields: Option<serde_json::Map<String, Value>>,
    /// The workspace (client) the department belongs to, on accounts with workspaces.
    #[serde(default, deserialize_with = "flex_int")]
    pub workspace_id: Option<i64>,
}

/// A workspace (a client in Freshservice for MSPs), from `GET /workspaces`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Workspace {
    /// `id`: the workspace id (a ticket's `workspace_id`).
    #[serde(deserialize_with = "flex_id")]
    pub id: i64,
    /// `name`: the workspace (client) name.
    pub name: Option<String>,
    /// The workspace that listings without `workspace_id` return.
    pub primary: Option<bool>,
    /// `state`: e.g. `active`.
    pub state: Option<String>,
    /// Workspace (client) fields, where the API returns them.
    pub custom_fields: Option<serde_json::Map<String, Value>>,
}

/// An agent; notes and time entries name their author by agent id only.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Agent {
    /// `id`: the agent id (a ticket's `responder_id`, a note's `user_id`, an entry's `agent_id`).
    #[serde(deserialize_with = "flex_id")]
    pub id: i64,
    /// `first_name`.
    #[serde(default, deserialize_with = "lenient_text")]
    pub first_name: Option<String>,
    /// `last_name`.
    #[serde(default, deserialize_with = "lenient_text")]
    pub last_name: Option<String>,
    /// `email`.
    #[serde(default, deserialize_with = "lenient_text")]
    pub email: Option<String>,
}

/// An agent group, from `GET /groups` (to name a ticket's group).
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Group {
    /// `id`: the group id (a ticket's `group_id`).
    #[serde(deserialize_with = "flex_id")]
    pub id: i64,
    /// `name`: the group name (the `group_name` column).
    #[serde(default, deserialize_with = "lenient_text")]
    pub name: Option<String>,
}

/// A requester (a customer's user), from `GET /requesters` or `GET /requesters/{id}`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Requester {
    /// `id`: the requester's user id (a ticket's `requester_id`).
    #[serde(deserialize_with = "flex_id")]
    pub id: i64,
    /// `first_name`.
    pub first_name: Option<String>,
    /// `last_name`.
    pub last_name: Option<String>,
    /// `primary_email`: the requester's main address (the `requester_email` column).
    pub primary_email: Option<String>,
}

/// A ticket's child (a conversation, a time entry): an id, and a version to keep the newest of
/// two copies by.
pub trait Child {
    /// The child's id.
    fn id(&self) -> i64;
    /// When it was last changed.
    fn updated_at(&self) -> Option<DateTime<Utc>>;
}

impl Child for Conversation {
    fn id(&self) -> i64 {
        self.id
    }
    fn updated_at(&self) -> Option<DateTime<Utc>> {
        self.updated_at
    }
}

impl Child for TimeEntry {
    fn id(&self) -> i64 {
        self.id
    }
    fn updated_at(&self) -> Option<DateTime<Utc>> {
        self.updated_at
    }
}

fn item_id<T: Child>(item: &Result<T, ItemError>) -> Option<i64> {
    match item {
        Ok(c) => Some(c.id()),
        Err(e) => e.id,
    }
}

/// The ids of a list's items, sorted (with repeats): two reads of one list that give the same
/// ids saw the same rows. Items without an id are left out.
pub fn sorted_ids<T: Child>(items: &[Result<T, ItemError>]) -> Vec<i64> {
    let mut ids: Vec<i64> = items.iter().filter_map(item_id).collect();
    ids.sort_unstable();
    ids
}

/// The `id` values of a page's items (`{"<key>": [{"id": …}, …]}`) as JSON text, whatever
/// their type; empty when the page has no such array. For the paging guard's progress check.
pub fn raw_item_ids(body: &[u8], key: &str) -> Vec<String> {
    let Ok(mut envelope) = parse_envelope(body) else {
        return Vec::new();
    };
    match envelope.remove(key) {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|item| item.get("id"))
            .map(Value::to_string)
            .collect(),
        _ => Vec::new(),
    }
}

/// Whether two items of a list carry the same id.
pub fn has_duplicate_ids<T: Child>(items: &[Result<T, ItemError>]) -> bool {
    let mut seen = std::collections::HashSet::new();
    items.iter().filter_map(item_id).any(|id| !seen.insert(id))
}

/// One item per id, in first-seen order: a decoded copy wins over one that does not decode,
/// the newer `updated_at` over the older. Items without an id are kept as they are.
pub fn dedupe_by_id<T: Child>(items: Vec<Result<T, ItemError>>) -> Vec<Result<T, ItemError>> {
    let mut at: std::collections::HashMap<i64, usize> = std::collections::HashMap::new();
    let mut out: Vec<Result<T, ItemError>> = Vec::with_capacity(items.len());
    for item in items {
        let Some(id) = item_id(&item) else {
            out.push(item);
            continue;
        };
        match at.get(&id) {
            None => {
                at.insert(id, out.len());
                out.push(item);
            }
            Some(&i) => {
                let better = match (&out[i], &item) {
                    (Err(_), Ok(_)) => true,
                    (Ok(old), Ok(new)) => new.updated_at() > old.updated_at(),
                    _ => false,
                };
                if better {
                    out[i] = item;
                }
            }
        }
    }
    out
}

/// Why one object of a page could not be decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct ItemError {
    /// The object's `id` when it has a usable one.
    pub id: Option<i64>,
    /// `field: problem`, e.g. `status: invalid type: string "x", expected i64`.
    pub detail: String,
}

/// Decodes a page envelope `{"<key>": [ ... ]}` item by item.
///
/// Returns `Err` only when the page itself is unusable (not JSON, no such key, not an array);
/// an item that fails to decode becomes an [`ItemError`] and the others still decode.
pub fn decode_each<T: for<'de> Deserialize<'de>>(
    body: &[u8],
    key: &str,
) -> Result<Vec<Result<T, ItemError>>, String> {
    let mut envelope = parse_envelope(body)?;
    let items = match envelope.remove(key) {
        Some(Value::Array(items)) => items,
        Some(Value::Null) | None => return Err(format!("missing \"{key}\" array")),
        Some(other) => return Err(format!("\"{key}\" is {} not an array", kind(&other))),
    };
    Ok(items.into_iter().map(decode_item).collect())
}

/// Decodes a single-object envelope `{"<key>": { ... }}`.
pub fn decode_one<T: for<'de> Deserialize<'de>>(
    body: &[u8],
    key: &str,
) -> Result<Result<T, ItemError>, String> {
    let mut envelope = parse_envelope(body)?;
    match envelope.remove(key) {
        Some(item @ Value::Object(_)) => Ok(decode_item(item)),
        _ => Err(format!("missing \"{key}\" object")),
    }
}

/// Parses a response body as a JSON object. Lone UTF-16 surrogate escapes (`"\ud800"`), which
/// serde_json refuses but which user-typed text in the API does contain, are replaced by U+FFFD
/// instead of failing the whole page.
fn parse_envelope(body: &[u8]) -> Result<serde_json::Map<String, Value>, String> {
    match serde_json::from_slice(body) {
        Ok(map) => Ok(map),
        Err(e) => serde_json::from_slice(&repair_lone_surrogates(body))
            .map_err(|_| format!("not a JSON object: {}", escape_controls(&e.to_string()))),
    }
}

/// Rewrites `\uXXXX` escapes of unpaired surrogates as `\ufffd`; everything else is kept.
pub fn repair_lone_surrogates(body: &[u8]) -> Vec<u8> {
    fn escape_at(b: &[u8], i: usize) -> Option<u16> {
        if b.len() >= i + 6 && b[i] == b'\\' && b[i + 1] == b'u' {
            std::str::from_utf8(&b[i + 2..i + 6])
                .ok()
                .and_then(|h| u16::from_str_radix(h, 16).ok())
        } else {
            None
        }
    }
    let mut out = Vec::with_capacity(body.len());
    let mut i = 0;
    while i < body.len() {
        if body[i] == b'\\' && i + 1 < body.len() && body[i + 1] != b'u' {
            // Any other escape (including an escaped backslash) is copied whole.
            out.extend_from_slice(&body[i..i + 2]);
            i += 2;
            continue;
        }
        match escape_at(body, i) {
            Some(high @ 0xD800..=0xDBFF) => match escape_at(body, i + 6) {
                Some(0xDC00..=0xDFFF) => {
                    out.extend_from_slice(&body[i..i + 12]);
                    i += 12;
                }
                _ => {
                    let _ = high;
                    out.extend_from_slice(b"\\ufffd");
                    i += 6;
                }
            },
            Some(0xDC00..=0xDFFF) => {
                out.extend_from_slice(b"\\ufffd");
                i += 6;
            }
            _ => {
                out.push(body[i]);
                i += 1;
            }
        }
    }
    out
}

fn decode_item<T: for<'de> Deserialize<'de>>(item: Value) -> Result<T, ItemError> {
    let id = item.get("id").and_then(integer);
    serde_path_to_error::deserialize(&item).map_err(|e| {
        let path = e.path().to_string();
        let detail = if path == "." {
            e.inner().to_string()
        } else {
            format!("{path}: {}", e.inner())
        };
        // serde quotes the offending value with `{:?}` today; this holds whatever it quotes.
        let detail = escape_controls(&detail).into_owned();
        ItemError { id, detail }
    })
}

/// Server text made safe to print: C0 and C1 control characters (ESC, BEL, CSI U+009B, … and
/// also newlines and tabs: an error is one line) and the bidirectional formatting characters
/// (embeddings, overrides, isolates, marks) become `\u{1b}`-style escapes. An error message that
/// quotes the server can then neither drive the terminal (ANSI colours, OSC 8 hyperlinks, title
/// changes) nor reorder the text the reader sees.
pub fn escape_controls(text: &str) -> Cow<'_, str> {
    fn unsafe_char(c: char) -> bool {
        c.is_control()
            || matches!(c, '\u{61c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    }
    if !text.chars().any(unsafe_char) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if unsafe_char(c) {
            // Writing into a String cannot fail.
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// `to_emails` arrives as an array, `null`, or (seen in the wild) one comma-separated string.
fn string_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::Null => Vec::new(),
        Value::String(s) => s
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect(),
        Value::Array(items) => items
            .into_iter()
            .filter_map(|v| match v {
                Value::String(s) => Some(s),
                Value::Null => None,
                other => Some(other.to_string()),
            })
            .collect(),
        other => {
            return Err(serde::de::Error::custom(format!(
                "expected a list of emails, found {}",
                kind(&other)
            )))
        }
    })
}

/// `time_spent` is a string; tolerate a bare number (taken as given, normalize validates it).
fn lenient_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::Null => None,
        Value::String(s) => Some(s),
        Value::Number(n) => Some(n.to_string()),
        other => {
            return Err(serde::de::Error::custom(format!(
                "expected a string, found {}",
                kind(&other)
            )))
        }
    })
}

/// An integer as the API's numbers drift: a JSON integer, a float with an integral value
/// (`5.0`), or a string holding either (`"17531"`, `" 5 "`). Anything else is `None`.
pub fn integer(v: &Value) -> Option<i64> {
    fn of_f64(f: f64) -> Option<i64> {
        (f.is_finite() && f.fract() == 0.0 && f.abs() < 9.0e15).then_some(f as i64)
    }
    match v {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().and_then(of_f64)),
        Value::String(s) => {
            let s = s.trim();
            s.parse::<i64>()
                .ok()
                .or_else(|| s.parse::<f64>().ok().and_then(of_f64))
        }
        _ => None,
    }
}

/// A required id (see [`integer`]).
fn flex_id<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    let value = Value::deserialize(d)?;
    integer(&value).ok_or_else(|| {
        serde::de::Error::custom(format!("expected an integer id, found {}", kind(&value)))
    })
}

/// An optional integer (see [`integer`]): null or absent is `None`; another value fails the
/// object's decode, naming the field.
fn flex_int<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    let value = Value::deserialize(d)?;
    if value.is_null() {
        return Ok(None);
    }
    integer(&value).map(Some).ok_or_else(|| {
        serde::de::Error::custom(format!("expected an integer, found {}", describe(&value)))
    })
}

/// A pass-through integer (see [`integer`]); any other value is absent.
fn lenient_int<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    Ok(integer(&Value::deserialize(d)?))
}

/// A value for an error message: its kind, and short strings quoted.
fn describe(v: &Value) -> String {
    match v {
        Value::String(s) if s.len() <= 40 => format!("string {s:?}"),
        other => kind(other).to_string(),
    }
}

/// An optional field of an expected type; any other value (a string where a number belongs,
/// a malformed date) is taken as absent, so a field ticketsync only passes through never
/// rejects the ticket that carries it.
fn lenient<'de, D: Deserializer<'de>, T: for<'a> Deserialize<'a>>(
    d: D,
) -> Result<Option<T>, D::Error> {
    let value = Value::deserialize(d)?;
    Ok(Option::<T>::deserialize(value).ok().flatten())
}

/// A text field that some accounts send as a number (categories were typed int once): numbers
/// as their text, other non-strings as absent.
fn lenient_text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::String(s) => Some(s),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    })
}

/// `tags`: absent or null → `None`; an array of strings (non-strings as their JSON text).
fn optional_string_list<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::Array(items) => Some(
            items
                .into_iter()
                .filter_map(|v| match v {
                    Value::String(s) => Some(s),
                    Value::Null => None,
                    other => Some(other.to_string()),
                })
                .collect(),
        ),
        Value::String(s) => Some(vec![s]),
        _ => None,
    })
}

/// `attachments`: absent or null → `None`; each object's name, size and content type (other
/// keys, such as the signed `attachment_url`, are dropped here).
fn attachment_list<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<Attachment>>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::Array(items) => Some(
            items
                .iter()
                .filter(|v| v.is_object())
                .map(|v| Attachment {
                    name: v.get("name").and_then(Value::as_str).map(str::to_string),
                    size: v.get("size").and_then(integer),
                    content_type: v
                        .get("content_type")
                        .and_then(Value::as_str)
                        .map(str::to_string),
                })
                .collect(),
        ),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// The list example of the API reference (§5), verbatim in its essentials.
    const LIST_EXAMPLE: &str = r#"{"tickets": [{
      "id": 17531, "subject": "Outlook will not send mail",
      "description": "<div>Since 8am every send fails with 0x800CCC0E.</div>",
      "description_text": "Since 8am every send fails with 0x800CCC0E.",
      "status": 5, "priority": 3, "source": 1, "type": "Incident",
      "requester_id": 21000418006, "requested_for_id": 21000418006, "responder_id": 21001931878,
      "group_id": 21000188390, "department_id": 21000351606, "workspace_id": 2,
      "category": "Software", "sub_category": "Email", "item_category": null,
      "due_by": "2025-03-04T17:00:00Z", "fr_due_by": "2025-03-03T13:00:00Z",
      "is_escalated": false, "fr_escalated": false, "spam": false, "deleted": false,
      "email_config_id": null, "cc_emails": [], "fwd_emails": [], "reply_cc_emails": [], "to_emails": null,
      "custom_fields": {"billing_code": "MSP-STD", "onsite_visit": false, "quoted_hours": null},
      "created_at": "2025-03-03T08:12:40Z", "updated_at": "2025-03-05T16:30:02Z",
      "stats": {"ticket_id": 17531, "created_at": "2025-03-03T08:12:40Z", "updated_at": "2025-03-05T16:30:02Z",
        "opened_at": null, "pending_since": null, "resolved_at": "2025-03-05T15:58:11Z",
        "closed_at": "2025-03-05T16:30:02Z", "first_assigned_at": "2025-03-03T08:20:05Z",
        "inbound_count": 3, "outbound_count": 4, "group_escalated": false}
    }]}"#;

    #[test]
    fn decodes_the_reference_list_row() {
        let items = decode_each::<Ticket>(LIST_EXAMPLE.as_bytes(), "tickets").unwrap();
        let t = items[0].as_ref().unwrap();
        assert_eq!(t.id, 17531);
        assert_eq!(t.status, Some(5));
        assert_eq!(t.department_id, Some(21000351606));
        assert_eq!(
            t.stats.as_ref().unwrap().closed_at.unwrap().to_rfc3339(),
            "2025-03-05T16:30:02+00:00"
        );
    }

    #[test]
    fn a_bad_item_names_its_field_and_spares_the_rest() {
        let body = r#"{"tickets": [{"id": 1, "status": "closed"}, {"id": 2, "status": 5}, {"subject": 3}]}"#;
        let items = decode_each::<Ticket>(body.as_bytes(), "tickets").unwrap();
        let err = items[0].as_ref().unwrap_err();
        assert_eq!(err.id, Some(1));
        assert!(err.detail.starts_with("status:"), "{}", err.detail);
        assert!(items[1].is_ok());
        assert_eq!(items[2].as_ref().unwrap_err().id, None);
    }

    #[test]
    fn numbers_that_drift_keep_their_value() {
        for v in [
            json!(17531),
            json!(17531.0),
            json!("17531"),
            json!(" 17531 "),
            json!("17531.0"),
        ] {
            assert_eq!(integer(&v), Some(17531), "{v}");
        }
        for v in [
            json!(1.5),
            json!("Email"),
            json!(null),
            json!([]),
            json!(1e300),
            json!(""),
        ] {
            assert_eq!(integer(&v), None, "{v}");
        }
        let body = r#"{"tickets": [{"id": "7", "status": 5.0, "department_id": "12", "stats": {"resolution_time_in_secs": "60"}}]}"#;
        let items = decode_each::<Ticket>(body.as_bytes(), "tickets").unwrap();
        let t = items[0].as_ref().unwrap();
        assert_eq!((t.id, t.status, t.department_id), (7, Some(5), Some(12)));
        assert_eq!(t.stats.as_ref().unwrap().resolution_time_in_secs, Some(60));
        let body = r#"{"tickets": [{"id": "x"}, {"id": 8, "source": "Email"}]}"#;
        let items = decode_each::<Ticket>(body.as_bytes(), "tickets").unwrap();
        assert_eq!(items[0].as_ref().unwrap_err().id, None);
        let e = items[1].as_ref().unwrap_err();
        assert_eq!(e.id, Some(8));
        assert!(
            e.detail.starts_with("source: expected an integer"),
            "{}",
            e.detail
        );
    }

    #[test]
    fn children_are_deduplicated_by_id_newest_first() {
        let body = r#"{"time_entries": [
          {"id": 1, "time_spent": "00:10", "updated_at": "2025-01-01T00:00:00Z"},
          {"id": 2, "time_spent": "00:20"},
          {"id": 1, "time_spent": "00:15", "updated_at": "2025-01-02T00:00:00Z"},
          {"id": 1, "time_spent": "00:05", "updated_at": "2024-12-31T00:00:00Z"}
        ]}"#;
        let items = decode_each::<TimeEntry>(body.as_bytes(), "time_entries").unwrap();
        assert!(has_duplicate_ids(&items));
        let items = dedupe_by_id(items);
        assert!(!has_duplicate_ids(&items));
        let spent: Vec<_> = items
            .iter()
            .map(|e| e.as_ref().unwrap().time_spent.clone().unwrap())
            .collect();
        assert_eq!(spent, ["00:15", "00:20"]);
    }

    #[test]
    fn page_level_errors() {
        assert!(decode_each::<Ticket>(b"<html>", "tickets")
            .unwrap_err()
            .contains("not a JSON"));
        assert!(decode_each::<Ticket>(b"", "tickets").is_err());
        assert!(decode_each::<Ticket>(b"{\"tickets\": 3}", "tickets")
            .unwrap_err()
            .contains("not an array"));
        assert!(decode_each::<Ticket>(b"{\"x\": []}", "tickets")
            .unwrap_err()
            .contains("missing"));
    }

    #[test]
    fn controls_and_bidi_overrides_are_escaped() {
        let hostile = "\u{1b}]8;;http://evil\u{7}click\u{1b}]8;;\u{7} \u{1b}[31mred\u{9b}0m \u{202e}txt.exe\n";
        assert_eq!(
            escape_controls(hostile),
            "\\u{1b}]8;;http://evil\\u{7}click\\u{1b}]8;;\\u{7} \\u{1b}[31mred\\u{9b}0m \\u{202e}txt.exe\\u{a}"
        );
        assert!(matches!(
            escape_controls("plain ünïcødé 日本"),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn item_errors_quote_server_text_escaped() {
        let body = "{\"tickets\": [{\"id\": 1, \"status\": \"\\u001b]8;;http://evil\\u0007\\u001b[31m\\u009b\\u202e\"}]}";
        let items = decode_each::<Ticket>(body.as_bytes(), "tickets").unwrap();
        let detail = &items[0].as_ref().unwrap_err().detail;
        assert!(
            !detail.contains(['\u{1b}', '\u{7}', '\u{9b}', '\u{202e}']),
            "{detail:?}"
        );
        assert!(detail.contains("\\u{1b}]8;;http://evil\\u{7}"), "{detail}");
    }

    #[test]
    fn lone_surrogates_do_not_fail_the_page() {
        let body =
            br#"{"conversations": [{"id": 1, "body": "a\ud800b \udc00 ok \ud83d\ude00 \\ud800"}]}"#;
        let items = decode_each::<Conversation>(body, "conversations").unwrap();
        let c = items[0].as_ref().unwrap();
        assert_eq!(c.body.as_deref(), Some("a\u{fffd}b \u{fffd} ok 😀 \\ud800"));
    }

    #[test]
    fn sloppy_conversation_fields() {
        let body = r#"{"conversations": [
          {"id": 1, "to_emails": "a@x.example, b@x.example", "created_at": "2025-01-01T10:00:00+02:00"},
          {"id": 2, "to_emails": null, "private": null}
        ]}"#;
        let items = decode_each::<Conversation>(body.as_bytes(), "conversations").unwrap();
        let c = items[0].as_ref().unwrap();
        assert_eq!(c.to_emails, vec!["a@x.example", "b@x.example"]);
        assert_eq!(
            c.created_at.unwrap().to_rfc3339(),
            "2025-01-01T08:00:00+00:00"
        );
        assert!(items[1].as_ref().unwrap().to_emails.is_empty());
    }

    #[test]
    fn time_entry_example_from_the_reference() {
        let body = r#"{"time_entries": [
          {"id": 21000167654, "start_time": "2025-03-05T15:00:00Z", "timer_running": false, "billable": true,
           "time_spent": "01:30", "executed_at": "2025-03-05T15:00:00Z", "task_id": null,
           "note": "Reconfigured Outlook profile, verified send/receive", "agent_id": 21001931878,
           "custom_fields": {"work_type": "Remote"}, "created_at": "2025-03-05T16:31:12Z", "updated_at": "2025-03-05T16:31:12Z"}]}"#;
        let items = decode_each::<TimeEntry>(body.as_bytes(), "time_entries").unwrap();
        let e = items[0].as_ref().unwrap();
        assert_eq!(e.time_spent.as_deref(), Some("01:30"));
        assert_eq!(e.billable, Some(true));
    }
}
