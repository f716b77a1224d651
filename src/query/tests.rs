//! Queries over small datasets written by the real sink.

use chrono::{DateTime, Utc};

use super::*;
use crate::normalize::{ConversationRow, NoteRow, Placed, TicketRow, TimeEntryRow};
use crate::sink::{self, Changeset};
use crate::state::Index;

fn at(text: &str) -> DateTime<Utc> {
    text.parse().unwrap()
}

/// A placed ticket; `entries` are (minutes, billable, executed_at), none = the 15-minute default.
fn ticket(account: &str, id: i64, closed: &str, entries: &[(i64, bool, Option<&str>)]) -> Placed {
    let closed_at = at(closed);
    let (total, billable) = if entries.is_empty() {
        (15, 15)
    } else {
        (
            entries.iter().map(|e| e.0).sum(),
            entries.iter().filter(|e| e.1).map(|e| e.0).sum(),
        )
    };
    Placed {
        account: account.to_string(),
        year: chrono::Datelike::year(&closed_at),
        ticket: TicketRow {
            ticket_id: id,
            company_account_number: account.to_string(),
            ticket_number: id.to_string(),
            subject: Some(format!("subject {id}")),
            description: Some(format!("<p>description {id}</p>")),
            description_text: Some(format!("description {id}")),
            status: "Closed".into(),
            priority: Some("Low".into()),
            requester_email: Some("r@example.com".into()),
            requester_name: None,
            created_at: Some(closed_at - chrono::Duration::days(2)),
            last_updated_at: closed_at,
            closed_at,
            total_hours_spent: total as f64 / 60.0,
            billable_hours: billable as f64 / 60.0,
            total_minutes: total,
            billable_minutes: billable,
            hours_defaulted: entries.is_empty(),
            department_id: Some(1),
            requester_id: Some(7),
            responder_id: None,
            group_id: None,
            ticket_type: None,
            source: None,
            conversation_count: 2,
            note_count: 1,
            time_entry_count: entries.len() as i32,
            synced_at: at("2026-01-01T00:00:00Z"),
            details: Default::default(),
        },
        conversations: (0..2)
            .map(|i| ConversationRow {
                ticket_id: id,
                conversation_id: id * 10 + i,
                body: format!("reply {i}"),
                body_html: Some(format!("<p>reply {i}</p>")),
                from_email: Some("a@example.com".into()),
                to_emails: vec!["b@example.com".into(), "c@example.com".into()],
                // The second reply is older: output is oldest first, not by id.
                created_at: Some(closed_at - chrono::Duration::hours(10 - 5 * (1 - i))),
                updated_at: None,
                incoming: i == 0,
                private: false,
                user_id: Some(3),
                support_email: None,
                attachments: None,
            })
            .collect(),
        notes: vec![NoteRow {
            ticket_id: id,
            note_id: id * 10 + 9,
            body: "note".into(),
            body_html: Some("<p>note</p>".into()),
            from_email: None,
            created_at: Some(closed_at),
            user_id: Some(4),
            to_emails: Vec::new(),
            updated_at: None,
            incoming: false,
            support_email: None,
        }],
        time_entries: entries
            .iter()
            .enumerate()
            .map(|(i, (minutes, billable, executed))| TimeEntryRow {
                ticket_id: id,
                time_entry_id: id * 100 + i as i64,
                agent_id: Some(4),
                agent_email: None,
                minutes: *minutes,
                hours: *minutes as f64 / 60.0,
                billable: *billable,
                timer_running: false,
                executed_at: executed.map(at),
                note: None,
                workspace_id: None,
                task_id: None,
                custom_fields: None,
                agent_name: None,
                start_time: None,
            })
            .collect(),
        markdown: String::new(),
        time_entries_fingerprint: 0,
        privacy: Default::default(),
    }
}

async fn dataset(tickets: Vec<Placed>) -> (tempfile::TempDir, Dataset) {
    let dir = tempfile::tempdir().unwrap();
    let storage = Storage::local(dir.path()).unwrap();
    let mut index = Index::default();
    let changeset = Changeset {
        placed: tickets,
        ..Changeset::default()
    };
    sink::commit(&storage, &mut index, changeset, "t1")
        .await
        .unwrap();
    let dataset = Dataset::open(dir.path().to_str().unwrap(), &S3Options::default()).unwrap();
    (dir, dataset)
}

fn sample() -> Vec<Placed> {
    vec![
        ticket(
            "A1",
            3,
            "2025-03-10T12:00:00Z",
            &[(30, true, Some("2025-03-01T09:00:00Z"))],
        ),
        ticket("A1", 1, "2025-03-10T12:00:00Z", &[(45, false, None)]),
        ticket(
            "A1",
            2,
            "2025-01-05T08:00:00Z",
            &[
                (20, true, Some("2024-12-30T10:00:00Z")),
                (25, true, Some("2025-01-02T10:00:00Z")),
            ],
        ),
        ticket("A1", 4, "2025-07-01T00:00:00Z", &[]),
        ticket(
            "A1",
            5,
            "2024-06-01T00:00:00Z",
            &[(60, true, Some("2024-06-01T00:00:00Z"))],
        ),
        ticket(
            "007",
            6,
            "2025-03-31T23:59:59Z",
            &[(10, true, Some("2025-04-01T00:00:00Z"))],
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tickets_nest_children_and_sort_by_closed_at() {
    let (_dir, dataset) = dataset(sample()).await;
    let query = TicketQuery {
        account: "A1".into(),
        year: Some(2025),
        basis: crate::query::Basis::Closed,
    };
    let docs = dataset.tickets(&query).await.unwrap();
    let ids: Vec<i64> = docs.iter().map(|d| d.ticket_id).collect();
    assert_eq!(ids, [2, 1, 3, 4], "closed_at, then ticket_id");
    let t = &docs[1];
    assert_eq!(
        t.conversations.iter().map(|c| c.id).collect::<Vec<_>>(),
        [11, 10]
    );
    assert_eq!(
        t.conversations[0].to_emails,
        ["b@example.com", "c@example.com"]
    );
    assert!(t.conversations[1].incoming && !t.conversations[0].incoming);
    assert_eq!(t.notes.len(), 1);
    assert!(t.notes[0].private);
    assert_eq!(t.total_hours_spent, 0.75);
    assert_eq!(t.billable_hours, 0.0);
    assert_eq!(t.closed_at, at("2025-03-10T12:00:00Z"));

    let all_years = TicketQuery {
        account: "A1".into(),
        year: None,
        basis: crate::query::Basis::Closed,
    };
    let docs = dataset.tickets(&all_years).await.unwrap();
    assert_eq!(
        docs.iter().map(|d| d.ticket_id).collect::<Vec<_>>(),
        [5, 2, 1, 3, 4]
    );

    // An all-digit account is a string, not the number 7.
    let docs = dataset
        .tickets(&TicketQuery {
            account: "007".into(),
            year: Some(2025),
            basis: crate::query::Basis::Closed,
        })
        .await
        .unwrap();
    assert_eq!(docs.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_account_and_year_reads_only_its_partition() {
    let (_dir, dataset) = dataset(sample()).await;
    let query = TicketQuery {
        account: "A1".into(),
        year: Some(2025),
        basis: crate::query::Basis::Closed,
    };
    let files = dataset.files_read(&query).await.unwrap();
    assert_eq!(files.len(), 3, "{files:?}");
    for (file, table) in files.iter().zip(["tickets", "conversations", "notes"]) {
        assert!(
            file.contains(&format!(
                "/{table}/domain=default/account=A1/year=2025/part-"
            )),
            "{file}"
        );
    }
    let rollup = RollupQuery {
        account: Some("007".into()),
        year: 2025,
        period: Period::Month,
        basis: Basis::Closed,
    };
    let files = dataset.rollup_files_read(&rollup).await.unwrap();
    assert_eq!(files.len(), 1);
    assert!(files[0].contains("/tickets/domain=default/account=007/year=2025/part-"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_match_is_empty_and_an_empty_dataset_is_an_error() {
    let (dir, dataset) = dataset(sample()).await;
    for (account, year) in [("A1", Some(2019)), ("nobody", None)] {
        let docs = dataset
            .tickets(&TicketQuery {
                account: account.into(),
                year,
                basis: crate::query::Basis::Closed,
            })
            .await
            .unwrap();
        assert!(docs.is_empty());
    }
    let rollup = RollupQuery {
        account: None,
        year: 2019,
        period: Period::Month,
        basis: Basis::Closed,
    };
    assert!(dataset.rollup(&rollup).await.unwrap().is_empty());

    // A directory without tickets: a clear error, not an empty answer.
    std::fs::remove_dir_all(dir.path().join("tickets")).unwrap();
    let err = dataset.rollup(&rollup).await.unwrap_err();
    assert!(matches!(err, Error::Empty { .. }), "{err}");
    assert!(
        err.to_string().contains("no tickets in the dataset"),
        "{err}"
    );

    let missing = dir.path().join("missing");
    let err = Dataset::open(missing.to_str().unwrap(), &S3Options::default()).unwrap_err();
    assert!(
        matches!(err, Error::Storage(storage::Error::Missing { .. })),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollups_by_closed_month_and_by_worked_month() {
    let (_dir, dataset) = dataset(sample()).await;
    let mut query = RollupQuery {
        account: None,
        year: 2025,
        period: Period::Month,
        basis: Basis::Closed,
    };
    let rows = dataset.rollup(&query).await.unwrap();
    assert_eq!(rows.len(), 24, "12 months for each of 007 and A1");
    let brief = |rows: &[RollupRow]| -> Vec<String> {
        rows.iter()
            .filter(|r| r.tickets > 0)
            .map(|r| {
                format!(
                    "{} {} {} {}/{}",
                    r.account,
                    r.period(),
                    r.tickets,
                    r.minutes,
                    r.billable_minutes
                )
            })
            .collect()
    };
    assert_eq!(
        brief(&rows),
        [
            "007 2025-03 1 10/10",
            "A1 2025-01 1 45/45",
            "A1 2025-03 2 75/30",
            "A1 2025-07 1 15/15",
        ]
    );

    query.basis = Basis::Worked;
    let rows = dataset.rollup(&query).await.unwrap();
    assert_eq!(
        brief(&rows),
        [
            // Executed on April 1st although the ticket closed in March.
            "007 2025-04 1 10/10",
            // The December 2024 entry belongs to 2024.
            "A1 2025-01 1 25/25",
            // No executed_at: the close month.
            "A1 2025-03 2 75/30",
            // No entries: the default hours in the close month.
            "A1 2025-07 1 15/15",
        ]
    );

    query.year = 2024;
    let rows = dataset.rollup(&query).await.unwrap();
    assert_eq!(
        brief(&rows),
        ["A1 2024-06 1 60/60", "A1 2024-12 1 20/20"],
        "work in 2024 on a ticket closed in 2025 counts in 2024"
    );

    let yearly = RollupQuery {
        account: Some("A1".into()),
        year: 2025,
        period: Period::Year,
        basis: Basis::Closed,
    };
    let rows = dataset.rollup(&yearly).await.unwrap();
    assert_eq!(brief(&rows), ["A1 2025 4 135/90"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_location_polars_would_misread_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let odd = dir.path().join("x=1");
    std::fs::create_dir(&odd).unwrap();
    let err = Dataset::open(odd.to_str().unwrap(), &S3Options::default()).unwrap_err();
    assert!(matches!(err, Error::Unsupported { .. }), "{err}");
}
