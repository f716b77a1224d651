//! [`World`]: the state behind the server, and the mutations tests script against it.

use chrono::{DateTime, Duration, Utc};
use rand::rngs::StdRng;
use rand::Rng;
use serde_json::{json, Value};

use super::generate::{
    self, format_time_spent, make_conversation, make_time_entry, time_entry_extras,
    ConversationKind, Directory, IdCounters, Parties, TimeStyle,
};
use super::model::{GroundTruth, Requester, Ticket, TimeEntry};
use super::{FIRST_TICKET_ID, GROUP_BASE};
use crate::sim::text;

/// The mutable world behind the server: the ground truth plus what mutations need to continue
/// deterministically (the generator's rng and the next child ids).
#[derive(Debug)]
pub(crate) struct World {
    pub(crate) truth: GroundTruth,
    rng: StdRng,
    ids: IdCounters,
}

/// The bump rule for mutations: `now`, but strictly after the previous value so a touched ticket
/// always moves forward even when several mutations land in the same second.
pub(crate) fn later(now: DateTime<Utc>, previous: DateTime<Utc>) -> DateTime<Utc> {
    now.max(previous + Duration::seconds(1))
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
        let (truth, rng, ids) = generate::account(seed, tickets, now, workspaces);
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
pub(super) fn next_edit_subject(subject: &str) -> String {
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
