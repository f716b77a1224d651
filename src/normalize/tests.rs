use std::collections::HashMap;

use serde_json::json;

use super::*;

fn settings() -> Settings {
    Settings {
        default_minutes: 15,
        synced_at: "2025-02-01T00:00:00Z".parse().unwrap(),
        privacy: crate::normalize::Privacy::none(),
    }
}

fn accounts() -> AccountMap {
    let depts: Vec<wire::Department> = serde_json::from_value(json!([
        {"id": 21000351606_i64, "name": "Company", "custom_fields": {"account_number": 482913}},
        {"id": 2, "name": "Unmapped", "custom_fields": {}}
    ]))
    .unwrap();
    AccountMap::new(&depts, "account_number", &HashMap::new())
}

fn agents() -> HashMap<i64, Person> {
    HashMap::from([(
        456,
        Person {
            name: Some("Terry Tech".into()),
            email: Some("tech@integotec.com".into()),
        },
    )])
}

fn seed_ticket() -> wire::Ticket {
    serde_json::from_value(json!({
        "id": 17531, "subject": "Email not working",
        "description": "<div>Can't send emails from Outlook...</div>",
        "description_text": "Can't send emails from Outlook...",
        "status": 5, "priority": 3, "department_id": 21000351606_i64, "requester_id": 789,
        "created_at": "2025-01-10T09:00:00Z", "updated_at": "2025-01-15T16:30:00Z",
        "stats": {"closed_at": "2025-01-15T16:30:00Z"},
        "requester": {"id": 789, "name": "John Doe", "email": "user@company.com"}
    }))
    .unwrap()
}

fn seed_conversations() -> Vec<Result<wire::Conversation, ItemError>> {
    serde_json::from_value::<Vec<wire::Conversation>>(json!([
        {"id": 12347, "body": "<p>I've checked your email settings. Your outgoing server was configured incorrectly...</p>",
         "from_email": "tech@integotec.com", "to_emails": ["user@company.com"], "incoming": false, "private": false,
         "user_id": 456, "created_at": "2025-01-10T10:30:00Z", "updated_at": "2025-01-10T10:30:00Z",
         "support_email": "support@integotec.com"},
        {"id": 12345, "body": "<div>Can't send emails from Outlook. Getting error &quot;Cannot connect to server&quot;</div>",
         "from_email": "user@company.com", "to_emails": ["support@integotec.com"], "incoming": true, "private": false,
         "user_id": 789, "created_at": "2025-01-10T09:00:00Z", "updated_at": "2025-01-10T09:00:00Z",
         "support_email": "support@integotec.com"},
        {"id": 12346, "body": "<div>Customer was using wrong SMTP port. Changed from 25 to 587 with TLS.</div>",
         "from_email": null, "to_emails": [], "incoming": false, "private": true, "source": 2,
         "user_id": 456, "created_at": "2025-01-10T10:15:00Z", "updated_at": "2025-01-10T10:15:00Z",
         "support_email": null}
    ]))
    .unwrap()
    .into_iter()
    .map(Ok)
    .collect()
}

fn seed_entries() -> Vec<Result<wire::TimeEntry, ItemError>> {
    serde_json::from_value::<Vec<wire::TimeEntry>>(json!([
        {"id": 2, "time_spent": "01:00", "billable": true, "agent_id": 456, "executed_at": "2025-01-10T10:00:00Z"},
        {"id": 1, "time_spent": "0:30", "billable": false, "agent_id": 456, "executed_at": "2025-01-10T09:30:00Z"}
    ]))
    .unwrap()
    .into_iter()
    .map(Ok)
    .collect()
}

fn run(
    ticket: &wire::Ticket,
    convs: &[Result<wire::Conversation, ItemError>],
    entries: &[Result<wire::TimeEntry, ItemError>],
) -> Outcome {
    let accounts = accounts();
    let agents = agents();
    let settings = settings();
    let ctx = Context {
        accounts: &accounts,
        agents: &agents,
        requesters: &HashMap::new(),
        groups: &HashMap::new(),
        settings: &settings,
    };
    normalize_ticket(ticket, convs, entries, &ctx)
}

fn placed(outcome: Outcome) -> Placed {
    match outcome {
        Outcome::Placed(p) => *p,
        Outcome::Rejected(r) => panic!("rejected: {r:?}"),
    }
}

fn rejected(outcome: Outcome) -> Rejection {
    match outcome {
        Outcome::Rejected(r) => r,
        Outcome::Placed(p) => panic!("placed: {p:?}"),
    }
}

#[test]
fn seed_example_matches_the_golden_markdown() {
    let p = placed(run(&seed_ticket(), &seed_conversations(), &seed_entries()));
    crate::golden::check("tests/it/golden/markdown/seed_example.md", &p.markdown);
}

#[test]
fn seed_example_rows() {
    let p = placed(run(&seed_ticket(), &seed_conversations(), &seed_entries()));
    assert_eq!((p.account.as_str(), p.year), ("482913", 2025));
    let t = &p.ticket;
    assert_eq!(t.status, "Closed");
    assert_eq!(t.priority.as_deref(), Some("High"));
    assert_eq!((t.total_minutes, t.billable_minutes), (90, 60));
    assert_eq!((t.total_hours_spent, t.billable_hours), (1.5, 1.0));
    assert!(!t.hours_defaulted);
    assert_eq!(
        (t.conversation_count, t.note_count, t.time_entry_count),
        (2, 1, 2)
    );
    assert_eq!(t.requester_name.as_deref(), Some("John Doe"));
    // Oldest first, whatever the API order.
    assert_eq!(p.conversations[0].conversation_id, 12345);
    assert!(p.conversations[0].incoming);
    assert_eq!(p.notes[0].from_email.as_deref(), Some("tech@integotec.com"));
    assert_eq!(p.time_entries[0].time_entry_id, 1);
    assert_eq!(
        p.time_entries[0].agent_email.as_deref(),
        Some("tech@integotec.com")
    );
}

#[test]
fn no_time_entries_bills_the_default() {
    let p = placed(run(&seed_ticket(), &[], &[]));
    assert!(p.ticket.hours_defaulted);
    assert_eq!(p.ticket.total_hours_spent, 0.25);
    assert_eq!(p.ticket.total_minutes, 15);
    assert!(!p.markdown.contains("## Conversation History"));
    assert!(p.markdown.contains("- **Hours Spent:** 0.25 hours"));
}

#[test]
fn closed_at_falls_back_to_updated_at() {
    let mut t = seed_ticket();
    t.stats = None;
    t.updated_at = Some("2024-12-31T23:59:59Z".parse().unwrap());
    let p = placed(run(&t, &[], &[]));
    assert_eq!(p.year, 2024);
    assert_eq!(p.ticket.closed_at, t.updated_at.unwrap());
}

#[test]
fn unknown_codes_stay_visible() {
    let mut t = seed_ticket();
    t.priority = Some(7);
    let p = placed(run(&t, &[], &[]));
    assert_eq!(p.ticket.priority.as_deref(), Some("Priority 7"));
    assert_eq!(status_name(9), "Status 9");
}

#[test]
fn requester_that_is_an_agent() {
    let mut t = seed_ticket();
    t.requester = None;
    t.requester_id = Some(456);
    let p = placed(run(&t, &[], &[]));
    assert_eq!(p.ticket.requester_name.as_deref(), Some("Terry Tech"));
    assert_eq!(
        p.ticket.requester_email.as_deref(),
        Some("tech@integotec.com")
    );
}

#[test]
fn rejects_name_the_ticket_and_the_problem() {
    let mut t = seed_ticket();
    t.department_id = Some(2);
    let r = rejected(run(&t, &[], &[]));
    assert_eq!(r.reason, RejectReason::NoAccountNumber);
    assert!(
        r.detail.starts_with("ticket 17531: department 2"),
        "{}",
        r.detail
    );

    t.department_id = None;
    assert_eq!(
        rejected(run(&t, &[], &[])).reason,
        RejectReason::NoDepartment
    );

    let bad: Vec<Result<wire::TimeEntry, ItemError>> = vec![Ok(serde_json::from_value(
        json!({"id": 9, "time_spent": "abc"}),
    )
    .unwrap())];
    let r = rejected(run(&seed_ticket(), &[], &bad));
    assert_eq!(r.reason, RejectReason::InvalidTimeEntry);
    assert!(
        r.detail.contains("time entry 9") && r.detail.contains("\"abc\""),
        "{}",
        r.detail
    );

    let broken = vec![Err(ItemError {
        id: Some(5),
        detail: "created_at: bad".into(),
    })];
    let r = rejected(run(&seed_ticket(), &broken, &[]));
    assert_eq!(r.reason, RejectReason::MalformedConversation);
    assert!(r.detail.contains("conversation 5"), "{}", r.detail);
}

#[test]
fn markdown_in_user_text_cannot_break_the_structure() {
    let mut t = seed_ticket();
    t.subject = Some("# Urgent\n## injected".into());
    t.description = Some("<p>## Conversation History</p><p>---</p><h1>Title</h1>".into());
    let convs: Vec<Result<wire::Conversation, ItemError>> = vec![Ok(serde_json::from_value(json!({
        "id": 1, "body": "<p>### Message 99 - → Incoming</p><p>---</p>", "incoming": true, "private": false,
        "created_at": "2025-01-10T09:00:00Z"
    }))
    .unwrap())];
    let p = placed(run(&t, &convs, &[]));
    let headings: Vec<&str> = p.markdown.lines().filter(|l| l.starts_with('#')).collect();
    assert_eq!(
        headings,
        vec![
            "# Ticket #17531: # Urgent ## injected",
            "## Ticket Information",
            "## Description",
            "## Conversation History",
            "### Message 1 - → Incoming"
        ],
        "{}",
        p.markdown
    );
    assert_eq!(
        p.markdown.lines().filter(|l| *l == "---").count(),
        1,
        "{}",
        p.markdown
    );
}

mod properties {
    //! Property tests (the fuzz targets of normalize): arbitrary input never panics and keeps
    //! the documented guarantees.

    use proptest::prelude::*;

    use super::*;
    use crate::normalize::hours::parse_time_spent;
    use crate::normalize::text::{block, html_to_text};

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        #[test]
        fn time_spent_never_panics_and_valid_forms_round_trip(raw in ".{0,12}", h in 0i64..100_000, m in 0i64..60) {
            let _ = parse_time_spent(&raw);
            prop_assert_eq!(parse_time_spent(&format!("{h}:{m:02}")), Ok(h * 60 + m));
            prop_assert_eq!(parse_time_spent(&format!("{h:02}:{m:02}:00")), Ok(h * 60 + m));
        }

        #[test]
        fn html_to_text_never_panics_or_leaks_tags(
            parts in proptest::collection::vec(
                prop_oneof![
                    Just("<div>".to_string()), Just("</div>".to_string()), Just("<p>".to_string()),
                    Just("<script>x()</script>".to_string()), Just("<style>p{}</style>".to_string()),
                    Just("&amp;".to_string()), Just("&#x1F600;".to_string()), Just("<br>".to_string()),
                    Just("<img src=\"data:image/png;base64,AAAA\">".to_string()), Just("<table><tr><td>".to_string()),
                    "[a-zA-Z0-9 #*_\\-=\n]{0,20}",
                    "[^<]{0,8}",
                ],
                0..40,
            )
        ) {
            let html = parts.concat();
            let text = html_to_text(&html);
            prop_assert!(!text.contains("<script"), "{}", text);
            prop_assert!(!text.contains("base64"), "{}", text);
            prop_assert!(!text.contains("x()"), "{}", text);
        }

        #[test]
        fn markdown_blocks_never_open_sections(text in "(#{0,3}[ a-z\\-=*]{0,6}\n){0,12}") {
            for line in block(&text).lines() {
                let t = line.trim_start();
                prop_assert!(!t.starts_with('#'), "{:?}", line);
                prop_assert!(t != "---", "{:?}", line);
            }
        }

        #[test]
        fn arbitrary_json_items_never_panic(value in arbitrary_json()) {
            let body = serde_json::json!({"tickets": [value.clone()], "conversations": [value.clone()], "time_entries": [value]});
            let bytes = serde_json::to_vec(&body).unwrap();
            let tickets = wire::decode_each::<wire::Ticket>(&bytes, "tickets").unwrap();
            let convs = wire::decode_each::<wire::Conversation>(&bytes, "conversations").unwrap();
            let entries = wire::decode_each::<wire::TimeEntry>(&bytes, "time_entries").unwrap();
            if let Ok(t) = &tickets[0] {
                // Whatever decodes normalizes to a row or a precise rejection, never a panic.
                match run(t, &convs, &entries) {
                    Outcome::Placed(p) => prop_assert_eq!(p.ticket.ticket_id, t.id),
                    Outcome::Rejected(r) => {
                        let needle = format!("ticket {}", t.id);
                        prop_assert!(r.detail.contains(&needle), "{}", r.detail);
                    }
                }
            }
        }
    }

    fn arbitrary_json() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            "[ -~]{0,10}".prop_map(serde_json::Value::from),
            Just(serde_json::json!("2025-01-01T00:00:00Z")),
            Just(serde_json::json!("01:30")),
            Just(serde_json::json!(21000351606_i64)),
        ];
        let fields = [
            "id",
            "status",
            "priority",
            "department_id",
            "updated_at",
            "created_at",
            "subject",
            "description",
            "stats",
            "requester",
            "body",
            "private",
            "incoming",
            "to_emails",
            "time_spent",
            "billable",
            "agent_id",
        ];
        proptest::collection::btree_map(proptest::sample::select(fields.to_vec()), leaf, 0..12)
            .prop_map(|m| {
                serde_json::Value::Object(m.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
            })
    }
}

/// The reference list row of the API document (§5) with the issue-11 fields.
fn reference_ticket(extra: serde_json::Value) -> wire::Ticket {
    let mut v = json!({
        "id": 17531, "status": 5, "priority": 3, "department_id": 21000351606_i64,
        "requester_id": 789, "responder_id": 456, "group_id": 21000188390_i64, "workspace_id": 2,
        "category": "Software", "sub_category": "Email", "item_category": null,
        "due_by": "2025-03-04T17:00:00Z", "fr_due_by": "2025-03-03T13:00:00Z",
        "is_escalated": true, "fr_escalated": false,
        "custom_fields": {"billing_code": "MSP-STD", "onsite_visit": false, "quoted_hours": null, "rate": 1.5},
        "tags": ["vip", "onsite"],
        "created_at": "2025-03-03T08:12:40Z", "updated_at": "2025-03-05T16:30:02Z",
        "stats": {"resolved_at": "2025-03-05T15:58:11Z", "closed_at": "2025-03-05T16:30:02Z",
          "first_responded_at": "2025-03-03T08:41:17Z", "agent_responded_at": "2025-03-05T15:57:40Z",
          "first_resp_time_in_secs": 1717, "resolution_time_in_secs": 200731}
    });
    for (k, x) in extra.as_object().unwrap() {
        v[k] = x.clone();
    }
    serde_json::from_value(v).unwrap()
}

fn run_with_groups(
    ticket: &wire::Ticket,
    entries: &[Result<wire::TimeEntry, ItemError>],
) -> Placed {
    let accounts = accounts();
    let agents = agents();
    let settings = settings();
    let groups = HashMap::from([(21000188390_i64, "Service Desk".to_string())]);
    let ctx = Context {
        accounts: &accounts,
        agents: &agents,
        requesters: &HashMap::new(),
        groups: &groups,
        settings: &settings,
    };
    placed(normalize_ticket(ticket, &[], entries, &ctx))
}

#[test]
fn ticket_details_carry_the_api_fields() {
    let p = run_with_groups(&reference_ticket(json!({"urgency": 2, "impact": 7})), &[]);
    let d = &p.ticket.details;
    let at = |s: &str| Some(s.parse::<DateTime<Utc>>().unwrap());
    assert_eq!(d.workspace_id, Some(2));
    assert_eq!(d.category.as_deref(), Some("Software"));
    assert_eq!(d.sub_category.as_deref(), Some("Email"));
    assert_eq!(d.item_category, None);
    assert_eq!(d.urgency.as_deref(), Some("Medium"));
    assert_eq!(
        d.impact.as_deref(),
        Some("Impact 7"),
        "unknown codes stay visible"
    );
    assert_eq!(d.tags, Some(vec!["vip".to_string(), "onsite".to_string()]));
    // Keys in the order sent, value types kept (1.5 stays a number, null stays null).
    assert_eq!(
        d.custom_fields.as_deref(),
        Some(r#"{"billing_code":"MSP-STD","onsite_visit":false,"quoted_hours":null,"rate":1.5}"#)
    );
    assert_eq!(d.due_by, at("2025-03-04T17:00:00Z"));
    assert_eq!(d.fr_due_by, at("2025-03-03T13:00:00Z"));
    assert_eq!((d.is_escalated, d.fr_escalated), (Some(true), Some(false)));
    assert_eq!(d.resolved_at, at("2025-03-05T15:58:11Z"));
    assert_eq!(d.first_responded_at, at("2025-03-03T08:41:17Z"));
    assert_eq!(d.agent_responded_at, at("2025-03-05T15:57:40Z"));
    assert_eq!(d.first_resp_time_secs, Some(1717));
    assert_eq!(d.resolution_time_secs, Some(200731));
    assert_eq!(d.responder_name.as_deref(), Some("Terry Tech"));
    assert_eq!(d.responder_email.as_deref(), Some("tech@integotec.com"));
    assert_eq!(d.group_name.as_deref(), Some("Service Desk"));
}

#[test]
fn absent_details_are_null_and_custom_fields_default_to_an_empty_object() {
    let t: wire::Ticket = serde_json::from_value(json!({
        "id": 1, "status": 5, "department_id": 21000351606_i64,
        "updated_at": "2025-03-05T16:30:02Z", "custom_fields": null
    }))
    .unwrap();
    let p = run_with_groups(&t, &[]);
    let d = &p.ticket.details;
    assert_eq!(d.custom_fields.as_deref(), Some("{}"));
    assert_eq!(
        TicketDetails {
            custom_fields: None,
            ..d.clone()
        },
        TicketDetails::default()
    );
}

#[test]
fn a_pass_through_field_of_the_wrong_type_is_null_not_a_reject() {
    let t = reference_ticket(json!({
        "is_escalated": "yes", "due_by": "next tuesday", "urgency": "high",
        "category": 12, "sub_category": {"x": 1}, "tags": null,
        "stats": {"closed_at": "2025-03-05T16:30:02Z", "first_resp_time_in_secs": "soon"}
    }));
    let p = run_with_groups(&t, &[]);
    let d = &p.ticket.details;
    assert_eq!(d.is_escalated, None);
    assert_eq!(d.due_by, None);
    assert_eq!(d.urgency, None);
    assert_eq!(
        d.category.as_deref(),
        Some("12"),
        "categories were typed int once"
    );
    assert_eq!(d.sub_category, None);
    assert_eq!(d.tags, None, "no tags sent: null, not an empty list");
    assert_eq!(d.first_resp_time_secs, None);
}

#[test]
fn attachments_keep_metadata_only() {
    let convs: Vec<Result<wire::Conversation, ItemError>> = serde_json::from_value::<
        Vec<wire::Conversation>,
    >(json!([
        {"id": 1, "body": "<p>see attached</p>", "incoming": true, "private": false,
         "created_at": "2025-03-05T15:40:10Z",
         "attachments": [{"id": 21000884384_i64, "name": "error.png", "content_type": "image/png", "size": 48213,
           "attachment_url": "https://files.invalid/error.png?X-Amz-Signature=abc",
           "created_at": "2025-03-05T15:40:10Z", "updated_at": "2025-03-05T15:40:10Z"}]},
        {"id": 2, "body": "<p>no files</p>", "private": false, "attachments": []},
        {"id": 3, "body": "<p>older API</p>", "private": false}
    ]))
    .unwrap()
    .into_iter()
    .map(Ok)
    .collect();
    let p = placed(run(&reference_ticket(json!({})), &convs, &[]));
    let by_id: HashMap<i64, Option<String>> = p
        .conversations
        .iter()
        .map(|c| (c.conversation_id, c.attachments.clone()))
        .collect();
    assert_eq!(
        by_id[&1].as_deref(),
        Some(r#"[{"name":"error.png","size":48213,"content_type":"image/png"}]"#)
    );
    assert_eq!(by_id[&2].as_deref(), Some("[]"));
    assert_eq!(by_id[&3], None);
}

#[test]
fn time_entry_details() {
    let entries: Vec<Result<wire::TimeEntry, ItemError>> =
        serde_json::from_value::<Vec<wire::TimeEntry>>(json!([
            {"id": 1, "time_spent": "01:30", "agent_id": 456, "task_id": 77, "workspace_id": 2,
             "start_time": "2025-03-05T15:00:00Z", "custom_fields": {"work_type": "Remote", "rate_code": 1}},
            {"id": 2, "time_spent": "00:15", "agent_id": 999}
        ]))
        .unwrap()
        .into_iter()
        .map(Ok)
        .collect();
    let p = run_with_groups(&reference_ticket(json!({})), &entries);
    let (a, b) = (&p.time_entries[0], &p.time_entries[1]);
    assert_eq!((a.task_id, a.workspace_id), (Some(77), Some(2)));
    assert_eq!(
        a.custom_fields.as_deref(),
        Some(r#"{"work_type":"Remote","rate_code":1}"#)
    );
    assert_eq!(a.agent_name.as_deref(), Some("Terry Tech"));
    assert_eq!(a.start_time, Some("2025-03-05T15:00:00Z".parse().unwrap()));
    assert_eq!(
        (b.task_id, b.workspace_id, b.agent_name.as_deref()),
        (None, None, None)
    );
    assert_eq!(b.custom_fields.as_deref(), Some("{}"));
    assert_eq!(b.start_time, None);
}

#[test]
fn every_reject_reason_is_in_all_and_in_the_rejects_contract() {
    let contract = crate::tables::Table::Rejects.contract_json().to_string();
    let codes: Vec<&str> = RejectReason::ALL.iter().map(|r| r.as_str()).collect();
    for code in &codes {
        assert!(
            contract.contains(code),
            "{code} is not in schemas/rejects.json"
        );
    }
    let mut unique = codes.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), codes.len());
}

/// A billing edit of a time entry's work type (custom field), note or task is a change the
/// daily re-scan must see (before, the fingerprint left all three out and the edit was never
/// re-fetched); the custom fields' key order is not.
#[test]
fn the_time_entries_fingerprint_sees_custom_fields_note_and_task() {
    let fingerprint = |entry: serde_json::Value| {
        let entry: wire::TimeEntry = serde_json::from_value(entry).unwrap();
        time_entries_fingerprint(&[Ok(entry)])
    };
    let base = json!({"id": 1, "time_spent": "01:00", "agent_id": 456, "task_id": 7,
                      "note": "on site", "custom_fields": {"work_type": "Remote", "rate_code": 1}});
    let with = |key: &str, value: serde_json::Value| {
        let mut e = base.clone();
        e[key] = value;
        e
    };
    let original = fingerprint(base.clone());
    assert_eq!(original, fingerprint(base.clone()));
    for changed in [
        with(
            "custom_fields",
            json!({"work_type": "Travel", "rate_code": 1}),
        ),
        with(
            "custom_fields",
            json!({"work_type": "Remote", "rate_code": 2}),
        ),
        with("custom_fields", json!({"work_type": "Remote"})),
        with("custom_fields", json!(null)),
        with("note", json!("remote")),
        with("note", json!(null)),
        with("task_id", json!(8)),
        with("task_id", json!(null)),
    ] {
        assert_ne!(fingerprint(changed.clone()), original, "{changed}");
    }
    // The same custom fields in another key order (at every level) are the same entry.
    let a = with(
        "custom_fields",
        json!({"b": {"y": 1, "x": [{"q": 1, "p": 2}]}, "a": 1}),
    );
    let b = with(
        "custom_fields",
        serde_json::from_str(r#"{"a": 1, "b": {"x": [{"p": 2, "q": 1}], "y": 1}}"#).unwrap(),
    );
    assert_eq!(fingerprint(a), fingerprint(b));
}

/// `hh:mm:ss` entries are summed in seconds and rounded once: ten 30-second entries bill 5
/// minutes (before: each rounded up to a minute, 10). Each entry's own `minutes` stays its own
/// rounding.
#[test]
fn ten_thirty_second_entries_bill_five_minutes() {
    let mut entries: Vec<serde_json::Value> = (1..=10)
        .map(|id| json!({"id": id, "time_spent": "00:00:30", "billable": true}))
        .collect();
    // Plus a non-billable 00:00:45 + 00:00:20 (65 s: 1 minute; rounded one by one, 1 + 0).
    entries.push(json!({"id": 11, "time_spent": "00:00:45", "billable": false}));
    entries.push(json!({"id": 12, "time_spent": "00:00:20", "billable": false}));
    let entries: Vec<Result<wire::TimeEntry, ItemError>> =
        serde_json::from_value::<Vec<wire::TimeEntry>>(serde_json::Value::Array(entries))
            .unwrap()
            .into_iter()
            .map(Ok)
            .collect();
    let p = placed(run(&seed_ticket(), &[], &entries));
    assert_eq!(p.ticket.billable_minutes, 5);
    assert_eq!(p.ticket.total_minutes, 6, "365 seconds");
    assert_eq!(p.ticket.billable_hours, 5.0 / 60.0);
    assert!(p.time_entries[..10].iter().all(|e| e.minutes == 1));
    assert_eq!(
        (p.time_entries[10].minutes, p.time_entries[11].minutes),
        (1, 0)
    );
}
