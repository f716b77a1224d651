//! API-shaped JSON for every object the simulator serves, field names exactly as in
//! `freshservice-api.md` (§5, §7–§13).
//!
//! Written with `serde_json::json!` from the simulator's own model on purpose: the ground-truth
//! structs are not the wire format, so a field the client misspells cannot agree with a matching
//! misspelling here. Constant fields real accounts also carry (`workspace_id: 2`,
//! `fwd_emails: []`, `to_emails: null`, `attachments: []`, …) are emitted so the client sees the
//! full, noisy shape. No IO, no HTTP.

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::data::{
    Agent, Conversation, Department, GroundTruth, Group, Requester, Ticket, TimeEntry, Workspace,
};

/// `2025-03-05T16:30:02Z`: UTC, whole seconds, `Z` (§14).
pub(crate) fn ts(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn opt_ts(at: Option<DateTime<Utc>>) -> Value {
    at.map_or(Value::Null, |t| Value::String(ts(t)))
}

/// Which embeds a ticket response carries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Embeds {
    pub(crate) stats: bool,
    pub(crate) requester: bool,
    pub(crate) requested_for: bool,
    pub(crate) tags: bool,
    pub(crate) department: bool,
    pub(crate) conversations: bool,
}

impl Embeds {
    /// Number of distinct embeds (each one costs credits).
    pub(crate) fn count(&self) -> u32 {
        [
            self.stats,
            self.requester,
            self.requested_for,
            self.tags,
            self.department,
            self.conversations,
        ]
        .into_iter()
        .map(u32::from)
        .sum()
    }
}

/// How many conversations `GET /tickets/{id}?include=conversations` embeds (oldest first).
pub(crate) const EMBEDDED_CONVERSATIONS: usize = 10;

pub(crate) fn department(d: &Department) -> Value {
    let mut custom = serde_json::Map::new();
    if let Some(account) = &d.account_number {
        custom.insert("account_number".to_owned(), account.clone());
    }
    custom.insert("plan_selected".to_owned(), json!(d.plan_selected));
    custom.insert("contract_term".to_owned(), json!("1 Year"));
    json!({
        "id": d.id,
        "name": d.name,
        "description": d.description,
        "head_user_id": null,
        "prime_user_id": d.prime_user_id,
        "domains": d.domains,
        "custom_fields": custom,
        "workspace_id": d.workspace_id,
        "created_at": ts(d.created_at),
        "updated_at": ts(d.updated_at),
    })
}

pub(crate) fn agent(a: &Agent) -> Value {
    json!({
        "id": a.id,
        "first_name": a.first_name,
        "last_name": a.last_name,
        "email": a.email,
        "active": true,
        "occasional": false,
        "job_title": a.job_title,
        "department_ids": [],
        "member_of": a.group_ids,
        "location_id": null,
        "time_zone": "Eastern Time (US & Canada)",
        "custom_fields": {},
        "created_at": ts(a.created_at),
        "updated_at": ts(a.updated_at),
    })
}

pub(crate) fn group(g: &Group) -> Value {
    json!({
        "id": g.id,
        "name": g.name,
        "description": g.description,
        "escalate_to": null,
        "unassigned_for": "30m",
        "business_hours_id": null,
        "agent_ids": [],
        "members": [],
        "observers": [],
        "restricted": false,
        "approval_required": false,
        "auto_ticket_assign": false,
        "workspace_id": 2,
        "created_at": "2020-06-01T12:00:00Z",
        "updated_at": "2025-02-20T09:30:00Z",
    })
}

pub(crate) fn requester(r: &Requester, truth: &GroundTruth) -> Value {
    let department_names: Vec<&str> = r
        .department_id
        .and_then(|id| truth.department(id))
        .map(|d| d.name.as_str())
        .into_iter()
        .collect();
    json!({
        "id": r.id,
        "first_name": r.first_name,
        "last_name": r.last_name,
        "job_title": r.job_title,
        "primary_email": r.primary_email,
        "secondary_emails": [],
        "work_phone_number": r.work_phone_number,
        "mobile_phone_number": r.mobile_phone_number,
        "department_ids": r.department_id.into_iter().collect::<Vec<_>>(),
        "department_names": department_names,
        "can_see_all_tickets_from_associated_departments": false,
        "reporting_manager_id": null,
        "address": null,
        "time_zone": "Eastern Time (US & Canada)",
        "time_format": "12h",
        "language": "en",
        "location_id": null,
        "background_information": null,
        "custom_fields": {},
        "active": true,
        "has_logged_in": true,
        "is_agent": false,
        "vip_user": r.vip_user,
        "created_at": ts(r.created_at),
        "updated_at": ts(r.updated_at),
    })
}

/// An agent as `GET /requesters?include_agents=true` lists it.
pub(crate) fn agent_as_requester(a: &Agent) -> Value {
    json!({
        "id": a.id,
        "first_name": a.first_name,
        "last_name": a.last_name,
        "job_title": a.job_title,
        "primary_email": a.email,
        "secondary_emails": [],
        "work_phone_number": null,
        "mobile_phone_number": null,
        "department_ids": [],
        "department_names": [],
        "active": true,
        "has_logged_in": true,
        "is_agent": true,
        "vip_user": false,
        "custom_fields": {},
        "created_at": ts(a.created_at),
        "updated_at": ts(a.updated_at),
    })
}

/// The `{"id","name","email","mobile","phone"}` object of `include=requester` (§7); works for
/// agents too because agents raise tickets.
fn user_embed(id: i64, truth: &GroundTruth) -> Value {
    if let Some(r) = truth.requesters.iter().find(|r| r.id == id) {
        return json!({
            "id": r.id,
            "name": format!("{} {}", r.first_name, r.last_name),
            "email": r.primary_email,
            "mobile": r.mobile_phone_number,
            "phone": r.work_phone_number,
        });
    }
    match truth.agents.iter().find(|a| a.id == id) {
        Some(a) => json!({
            "id": a.id,
            "name": format!("{} {}", a.first_name, a.last_name),
            "email": a.email,
            "mobile": null,
            "phone": null,
        }),
        None => Value::Null,
    }
}

/// The stats object (§5 example fields). Response times come from the conversations.
pub(crate) fn stats(t: &Ticket) -> Value {
    let public_out = || t.conversations.iter().filter(|c| !c.incoming && !c.private);
    let incoming = || t.conversations.iter().filter(|c| c.incoming);
    let first_responded_at = public_out().next().map(|c| c.created_at);
    json!({
        "ticket_id": t.id,
        "created_at": ts(t.created_at),
        "updated_at": ts(t.updated_at),
        "opened_at": null,
        "pending_since": if t.status == 3 { Value::String(ts(t.status_updated_at)) } else { Value::Null },
        "resolved_at": opt_ts(t.resolved_at),
        "closed_at": opt_ts(t.closed_at),
        "first_assigned_at": opt_ts(t.first_assigned_at),
        "assigned_at": opt_ts(t.first_assigned_at),
        "first_responded_at": opt_ts(first_responded_at),
        "agent_responded_at": opt_ts(public_out().next_back().map(|c| c.created_at)),
        "requester_responded_at": opt_ts(incoming().next_back().map(|c| c.created_at)),
        "status_updated_at": ts(t.status_updated_at),
        "inbound_count": incoming().count(),
        "outbound_count": public_out().count(),
        "group_escalated": false,
        "first_resp_time_in_secs": first_responded_at.map(|f| (f - t.created_at).num_seconds()),
        "resolution_time_in_secs": t.resolved_at.map(|r| (r - t.created_at).num_seconds()),
    })
}

/// Whether the ticket is rendered as a list row or by the view endpoint (which adds fields).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    ListRow,
    View,
}

pub(crate) fn ticket(t: &Ticket, truth: &GroundTruth, embeds: Embeds, shape: Shape) -> Value {
    let mut v = json!({
        "id": t.id,
        "subject": t.subject,
        "description": t.description,
        "description_text": t.description_text,
        "status": t.status,
        "priority": t.priority,
        "source": t.source,
        "type": t.ticket_type,
        "requester_id": t.requester_id,
        "requested_for_id": t.requested_for_id,
        "responder_id": t.responder_id,
        "group_id": t.group_id,
        "department_id": t.department_id,
        "workspace_id": t.workspace_id,
        "category": t.category,
        "sub_category": t.sub_category,
        "item_category": null,
        "due_by": ts(t.due_by),
        "fr_due_by": ts(t.fr_due_by),
        "is_escalated": t.is_escalated,
        "fr_escalated": t.fr_escalated,
        "spam": t.spam,
        "deleted": t.deleted,
        "email_config_id": null,
        "cc_emails": t.cc_emails,
        "fwd_emails": [],
        "reply_cc_emails": t.cc_emails,
        "to_emails": null,
        "custom_fields": t.custom_fields,
        "created_at": ts(t.created_at),
        "updated_at": ts(t.updated_at),
    });
    // `json!` always yields an object here; the match only satisfies the type checker.
    let Value::Object(map) = &mut v else {
        return v;
    };
    if shape == Shape::View {
        map.insert("urgency".into(), json!(t.urgency));
        map.insert("impact".into(), json!(t.impact));
        map.insert("bcc_emails".into(), json!([]));
        map.insert("sla_policy_id".into(), json!(21_000_060_001_i64));
        map.insert("applied_business_hours".into(), json!(21_000_050_001_i64));
        map.insert("created_within_business_hours".into(), json!(true));
        map.insert("approval_status".into(), json!(4));
        map.insert("approval_status_name".into(), json!("Not Requested"));
        map.insert("attachments".into(), json!([]));
        map.insert("resolution_notes".into(), Value::Null);
        map.insert("resolution_notes_html".into(), Value::Null);
    }
    if embeds.stats {
        map.insert("stats".into(), stats(t));
    }
    if embeds.requester {
        map.insert("requester".into(), user_embed(t.requester_id, truth));
    }
    if embeds.requested_for {
        map.insert(
            "requested_for".into(),
            user_embed(t.requested_for_id, truth),
        );
    }
    if embeds.tags {
        map.insert("tags".into(), json!(t.tags));
    }
    if embeds.department {
        let dept = t
            .department_id
            .and_then(|id| truth.department(id))
            .map_or(Value::Null, |d| json!({"id": d.id, "name": d.name}));
        map.insert("department".into(), dept);
    }
    if embeds.conversations {
        let first: Vec<Value> = t
            .conversations
            .iter()
            .take(EMBEDDED_CONVERSATIONS)
            .map(conversation)
            .collect();
        map.insert("conversations".into(), Value::Array(first));
    }
    v
}

pub(crate) fn conversation(c: &Conversation) -> Value {
    json!({
        "id": c.id,
        "ticket_id": c.ticket_id,
        "user_id": c.user_id,
        "body": c.body,
        "body_text": c.body_text,
        "incoming": c.incoming,
        "private": c.private,
        "source": c.source,
        "support_email": c.support_email,
        "from_email": c.from_email,
        "to_emails": c.to_emails,
        "cc_emails": if c.private { Value::Null } else { json!([]) },
        "bcc_emails": null,
        "attachments": c.attachments.iter().map(|a| json!({
            "id": a.id,
            "content_type": a.content_type,
            "size": a.size,
            "name": a.name,
            "attachment_url": format!("https://attachments.invalid/data/helpdesk/attachments/production/{}/original/{}?X-Amz-Signature=0f3a", a.id, a.name),
            "created_at": ts(c.created_at),
            "updated_at": ts(c.created_at),
        })).collect::<Vec<_>>(),
        "created_at": ts(c.created_at),
        "updated_at": ts(c.updated_at),
    })
}

/// A workspace as `GET /workspaces` lists it (§18).
pub(crate) fn workspace(w: &Workspace) -> Value {
    json!({
        "id": w.id,
        "name": w.name,
        "description": null,
        "primary": w.primary,
        "state": "active",
        "custom_fields": {"account_number": w.account_number},
        "created_at": "2020-01-01T00:00:00Z",
        "updated_at": "2020-01-01T00:00:00Z",
    })
}

/// A time entry of a ticket in workspace `workspace_id`.
pub(crate) fn time_entry(e: &TimeEntry, workspace_id: i64) -> Value {
    json!({
        "id": e.id,
        "start_time": ts(e.start_time),
        "timer_running": e.timer_running,
        "billable": e.billable,
        "time_spent": e.time_spent,
        "executed_at": ts(e.executed_at),
        "task_id": e.task_id,
        "note": e.note,
        "agent_id": e.agent_id,
        "custom_fields": e.custom_fields,
        "workspace_id": workspace_id,
        "created_at": ts(e.created_at),
        "updated_at": ts(e.updated_at),
    })
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::super::data::World;
    use super::*;

    #[test]
    fn timestamps_are_whole_second_z() {
        let at = Utc.with_ymd_and_hms(2025, 3, 5, 16, 30, 2).unwrap();
        assert_eq!(ts(at), "2025-03-05T16:30:02Z");
    }

    #[test]
    fn department_account_number_absent_vs_null() {
        let now = Utc.with_ymd_and_hms(2025, 6, 1, 0, 0, 0).unwrap();
        let w = World::generate(42, 0, now).truth;
        let rendered: Vec<Value> = w.departments.iter().map(department).collect();
        let absent = rendered
            .iter()
            .filter(|d| d["custom_fields"].get("account_number").is_none())
            .count();
        let null = rendered
            .iter()
            .filter(|d| d["custom_fields"].get("account_number") == Some(&Value::Null))
            .count();
        assert_eq!((absent, null), (1, 1));
    }

    #[test]
    fn view_embeds_at_most_ten_conversations_oldest_first() {
        let now = Utc.with_ymd_and_hms(2025, 6, 1, 0, 0, 0).unwrap();
        let w = World::generate(42, 60, now).truth;
        let big = w
            .tickets
            .iter()
            .find(|t| t.conversations.len() > 100)
            .unwrap();
        let embeds = Embeds {
            conversations: true,
            ..Embeds::default()
        };
        let v = ticket(big, &w, embeds, Shape::View);
        let convs = v["conversations"].as_array().unwrap();
        assert_eq!(convs.len(), EMBEDDED_CONVERSATIONS);
        assert_eq!(convs[0]["id"], json!(big.conversations[0].id));
        assert!(v.get("urgency").is_some());
        let row = ticket(big, &w, Embeds::default(), Shape::ListRow);
        assert!(row.get("urgency").is_none() && row.get("conversations").is_none());
        assert_eq!(row["to_emails"], Value::Null);
    }
}
