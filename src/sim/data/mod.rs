//! The simulated account: a seeded generator, the world state the server reads, and the
//! mutations tests script against it.
//!
//! The public types ([`GroundTruth`] and its parts, in `model`) are the simulator's own model of
//! what it serves, so tests can compare the ETL's output with what the "API" really contained.
//! They are deliberately *not* the client's wire types: the JSON shapes live in `render.rs`,
//! written from the API document, and a field misnamed in the client must not be hidden by
//! sharing a struct.
//!
//! Generation is a pure function of `(seed, ticket count, now)`: same inputs, same world, on any
//! machine (rand's `StdRng` is a fixed, portable algorithm for a given rand release). This module
//! does no IO and knows nothing about HTTP.
//!
//! Layout:
//! - `model`: the ground-truth types.
//! - `generate`: the seeded generators (the order of the RNG draws *is* the data: reordering
//!   them changes every world, and the tests' goldens with it).
//! - `world`: [`World`], the state behind the server, and its mutations.
//! - `names`: the name, company and category tables the generators draw from.

mod generate;
mod model;
mod names;
mod world;

pub use model::{
    Agent, Attachment, Conversation, Department, GroundTruth, Group, Requester, Ticket, TimeEntry,
    Workspace,
};
pub(crate) use world::World;

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
/// Freshservice's status code of a closed ticket. The simulator's own constant: it shares no
/// types or constants with the client.
const STATUS_CLOSED: i64 = 5;

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use chrono::{DateTime, Duration, TimeZone, Utc};
    use serde_json::{json, Value};

    use super::world::next_edit_subject;
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
            if t.status == STATUS_CLOSED {
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
        let closed = w
            .tickets
            .iter()
            .filter(|t| t.status == STATUS_CLOSED)
            .count();
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
        let closed_with = |f: &dyn Fn(&Ticket) -> bool| {
            w.tickets.iter().any(|t| t.status == STATUS_CLOSED && f(t))
        };
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
        for n in 0..20 {
            let at = now() + Duration::hours(1 + n);
            let id = w.add_closed_ticket(at);
            assert_eq!(id, FIRST_TICKET_ID + 60 + n);
            let t = w.truth.ticket(id).unwrap();
            assert_eq!(t.status, STATUS_CLOSED);
            assert!(!t.deleted && !t.spam);
            assert_eq!(t.updated_at, at);
            assert!(t.created_at >= at - Duration::hours(48));
            let closed = t.closed_at.unwrap();
            assert!(t.created_at <= t.resolved_at.unwrap() && t.resolved_at.unwrap() <= closed);
            assert!(closed <= at);
            let kinds: Vec<_> = t
                .conversations
                .iter()
                .map(|c| (c.incoming, c.private))
                .collect();
            assert_eq!(kinds, [(false, false), (false, true)], "reply, then note");
            assert_eq!(t.time_entries.len(), 1);
            assert!(w.truth.requesters.iter().any(|r| r.id == t.requester_id));
            let d = w.truth.department(t.department_id.unwrap()).unwrap();
            assert!(d.account_number.as_ref().unwrap().is_i64());
        }
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
