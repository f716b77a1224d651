//! Every partition holds the ground truth's tickets, in order and in the Codex shape.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, Utc};
use serde_json::Value;
use ticketsync::query::{TicketDoc, TicketQuery};
use ticketsync::sim::GroundTruth;

use super::{codex_example, keys, placed, synced, ticket_minutes};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_partition_holds_the_ground_truth_tickets_in_order() {
    let s = synced();
    let dataset = s.dataset();
    let placed = placed(&s.truth);
    // (account, year) → [(closed_at, ticket_id)]
    type Partitions = BTreeMap<(String, i32), Vec<(DateTime<Utc>, i64)>>;
    let mut partitions = Partitions::new();
    for (id, (account, closed_at)) in &placed {
        partitions
            .entry((account.clone(), closed_at.year()))
            .or_default()
            .push((*closed_at, *id));
    }
    assert!(partitions.len() >= 4, "{:?}", partitions.keys());
    assert!(
        partitions.keys().any(|(_, y)| *y == 2024) && partitions.keys().any(|(_, y)| *y == 2025)
    );
    let example = codex_example();
    for ((account, year), mut want) in partitions {
        want.sort();
        let docs = dataset
            .tickets(&TicketQuery {
                account: account.clone(),
                year: Some(year),
                basis: ticketsync::query::Basis::Closed,
            })
            .await
            .unwrap();
        let ids: Vec<i64> = docs.iter().map(|d| d.ticket_id).collect();
        let want_ids: Vec<i64> = want.iter().map(|(_, id)| *id).collect();
        assert_eq!(ids, want_ids, "account {account} year {year}");
        for doc in &docs {
            check_ticket(doc, &s.truth, &example);
        }
    }
}

fn check_ticket(doc: &TicketDoc, truth: &GroundTruth, example: &Value) {
    let t = truth.ticket(doc.ticket_id).unwrap();
    let id = t.id;
    assert_eq!(
        doc.subject.as_deref(),
        Some(t.subject.as_str()),
        "ticket {id}"
    );
    assert_eq!(
        doc.closed_at,
        t.closed_at.unwrap_or(t.updated_at),
        "ticket {id}"
    );
    let mut public: Vec<_> = t.conversations.iter().filter(|c| !c.private).collect();
    let mut private: Vec<_> = t.conversations.iter().filter(|c| c.private).collect();
    public.sort_by_key(|c| (c.created_at, c.id));
    private.sort_by_key(|c| (c.created_at, c.id));
    let ids = |v: &[&ticketsync::sim::Conversation]| v.iter().map(|c| c.id).collect::<Vec<_>>();
    assert_eq!(
        doc.conversations.iter().map(|c| c.id).collect::<Vec<_>>(),
        ids(&public),
        "ticket {id}"
    );
    assert_eq!(
        doc.notes.iter().map(|n| n.id).collect::<Vec<_>>(),
        ids(&private),
        "ticket {id}"
    );
    for (c, want) in doc.conversations.iter().zip(&public) {
        assert_eq!(c.to_emails, want.to_emails, "ticket {id}");
        assert_eq!(c.incoming, want.incoming, "ticket {id}");
        assert_eq!(c.created_at, Some(want.created_at), "ticket {id}");
        assert!(!c.private);
    }
    assert!(doc.notes.iter().all(|n| n.private));
    let (total, billable) = ticket_minutes(t);
    assert_eq!(
        (doc.total_hours_spent * 60.0).round() as i64,
        total,
        "ticket {id}"
    );
    assert_eq!(
        (doc.billable_hours * 60.0).round() as i64,
        billable,
        "ticket {id}"
    );

    // The Codex keys at every level.
    let json = serde_json::to_value(doc).unwrap();
    let mut want_keys = keys(&example[0]);
    want_keys.insert("billable_hours".into());
    want_keys.insert("domain".into());
    assert_eq!(keys(&json), want_keys);
    for c in json["conversations"].as_array().unwrap() {
        assert_eq!(keys(c), keys(&example[0]["conversations"][0]));
    }
    // Notes carry a conversation's keys, as Codex emits them.
    for n in json["notes"].as_array().unwrap() {
        assert_eq!(keys(n), keys(&example[0]["conversations"][0]));
    }
    for (n, want) in doc.notes.iter().zip(&private) {
        assert_eq!(n.to_emails, want.to_emails, "ticket {id}");
        assert_eq!(n.incoming, want.incoming, "ticket {id}");
        assert_eq!(n.updated_at, Some(want.updated_at), "ticket {id}");
    }
}
