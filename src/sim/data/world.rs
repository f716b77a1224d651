//! [`World`]: the state behind the server, and the mutations tests script against it.

use chrono::{DateTime, Duration, Utc};
use rand::rngs::StdRng;
use rand::Rng;
use serde_json::Value;

use super::generate::{
    self, format_time_spent, generate_ticket, time_entry_extras, ConversationKind, Directory,
    Forced, IdCounters, TimeStyle,
};
use super::model::{GroundTruth, Ticket, TimeEntry};
use super::{FIRST_TICKET_ID, STATUS_CLOSED};

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

    /// Moves the ticket to the next workspace (by id, wrapping) and bumps `updated_at`; with
    /// one workspace or none it stays where it is and is only bumped.
    pub(crate) fn move_workspace(&mut self, id: i64, now: DateTime<Utc>) {
        let ids: Vec<i64> = self.truth.workspaces.iter().map(|w| w.id).collect();
        let t = self.ticket_mut(id, "move_workspace");
        if let Some(at) = ids.iter().position(|w| *w == t.workspace_id) {
            t.workspace_id = ids[(at + 1) % ids.len()];
        }
        t.updated_at = later(now, t.updated_at);
    }

    /// Deletes one conversation (or, with `conversation` false, time entry) of a ticket;
    /// `updated_at` is not bumped.
    pub(crate) fn delete_child(&mut self, id: i64, child: i64, conversation: bool) {
        let t = self.ticket_mut(id, "delete_child");
        if conversation {
            t.conversations.retain(|c| c.id != child);
        } else {
            t.time_entries.retain(|e| e.id != child);
        }
    }

    /// Applies a test's edit to a ticket (its fields, conversations, time entries) and bumps
    /// `updated_at`.
    pub(crate) fn edit(&mut self, id: i64, now: DateTime<Utc>, edit: impl FnOnce(&mut Ticket)) {
        let t = self.ticket_mut(id, "edit_ticket");
        edit(t);
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

    /// Gives a ticket `conversations` more private notes and `time_entries` more entries of
    /// `minutes` each (created in the hour before `now`, oldest first), without bumping it:
    /// children that run to several pages, as long-running tickets have.
    pub(crate) fn grow_children(
        &mut self,
        id: i64,
        conversations: usize,
        time_entries: usize,
        minutes: u32,
        now: DateTime<Utc>,
    ) {
        let fallback_agent = self.truth.agents[0].id;
        let note_ids: Vec<i64> = (0..conversations)
            .map(|_| self.ids.next_conversation())
            .collect();
        let entry_ids: Vec<i64> = (0..time_entries)
            .map(|_| self.ids.next_time_entry())
            .collect();
        let t = self.ticket_mut(id, "grow_children");
        let agent = t.responder_id.unwrap_or(fallback_agent);
        let at =
            |i: usize, n: usize| now - Duration::seconds(3600 * (n - i) as i64 / n.max(1) as i64);
        for (i, note_id) in note_ids.into_iter().enumerate() {
            let created_at = at(i, conversations);
            t.conversations.push(super::model::Conversation {
                id: note_id,
                ticket_id: id,
                user_id: agent,
                body: format!("<p>Progress note {}</p>", i + 1),
                body_text: format!("Progress note {}", i + 1),
                incoming: false,
                private: true,
                source: 2,
                support_email: None,
                from_email: None,
                to_emails: Vec::new(),
                created_at,
                updated_at: created_at,
                attachments: Vec::new(),
            });
        }
        for (i, entry_id) in entry_ids.into_iter().enumerate() {
            let created_at = at(i, time_entries);
            let (task_id, custom_fields) = time_entry_extras(entry_id);
            t.time_entries.push(TimeEntry {
                id: entry_id,
                task_id,
                custom_fields,
                agent_id: agent,
                time_spent: format_time_spent(minutes, TimeStyle::Padded),
                billable: true,
                timer_running: false,
                executed_at: created_at,
                start_time: created_at,
                note: format!("Work block {}", i + 1),
                created_at,
                updated_at: created_at,
            });
        }
    }

    /// A new closed ticket, generated like the others, for a requester whose department has a
    /// numeric account number (so a sync places it), created 2 to 48 hours before `now`: one
    /// public agent reply, then one private note, and one time entry; `updated_at = now`.
    pub(crate) fn add_closed_ticket(&mut self, now: DateTime<Utc>) -> i64 {
        const KINDS: &[ConversationKind] = &[ConversationKind::Outgoing, ConversationKind::Note];
        let id = self
            .truth
            .tickets
            .last()
            .map_or(FIRST_TICKET_ID, |t| t.id + 1);
        let truth = &self.truth;
        let mapped: Vec<usize> = (0..truth.requesters.len())
            .filter(|&i| {
                truth.requesters[i]
                    .department_id
                    .and_then(|d| truth.department(d))
                    .is_some_and(|d| d.account_number.as_ref().is_some_and(Value::is_i64))
            })
            .collect();
        // Every generated world maps each department to two requesters, so `mapped` is non-empty.
        let requester = mapped[self.rng.gen_range(0..mapped.len())];
        let created_at = now - Duration::hours(self.rng.gen_range(2..48));
        let forced = Forced {
            status: Some(STATUS_CLOSED),
            requester: Some(requester),
            conversation_kinds: Some(KINDS),
            time_entries: Some(1),
            ..Forced::default()
        };
        let dir = Directory {
            departments: &truth.departments,
            agents: &truth.agents,
            requesters: &truth.requesters,
        };
        let mut ticket = generate_ticket(
            &mut self.rng,
            &mut self.ids,
            &dir,
            id,
            created_at,
            now,
            forced,
        );
        ticket.workspace_id = truth.workspace_for(ticket.department_id, id);
        ticket.updated_at = now;
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
