//! The seeded generators. Every world is a pure function of `(seed, tickets, now)`, and the
//! order of the RNG draws is part of that function: moving, adding or removing a draw changes
//! every field generated after it (and the tests' goldens). Fields added later derive from
//! their object's id ([`id_hash`]) instead of drawing.

use std::collections::HashSet;

use chrono::{DateTime, Duration, Utc};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use super::model::{
    workspace_of, Agent, Attachment, Conversation, Department, GroundTruth, Group, Requester,
    Ticket, TimeEntry, Workspace,
};
use super::names::{
    AGENTS, CATEGORIES, DEPARTMENTS, FIRST_NAMES, GROUP_NAMES, JOB_TITLES, LAST_NAMES, NUM_GROUPS,
    TAGS,
};
use super::{
    AGENT_BASE, CONVERSATION_BASE, DEPARTMENT_BASE, FIRST_TICKET_ID, GROUP_BASE, HISTORY_DAYS,
    PRIMARY_WORKSPACE, REQUESTER_BASE, STATUS_CLOSED, SUPPORT_EMAIL, TIME_ENTRY_BASE,
};
use crate::sim::text;

/// Generates the account: the ground truth, plus the generator and the id counters that
/// mutations continue from. `now` should be whole seconds; generated timestamps never exceed it.
pub(super) fn account(
    seed: u64,
    tickets: usize,
    now: DateTime<Utc>,
    workspaces: usize,
) -> (GroundTruth, StdRng, IdCounters) {
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
    (truth, rng, ids)
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

#[derive(Debug)]
pub(super) struct IdCounters {
    conversation: i64,
    time_entry: i64,
}

impl IdCounters {
    pub(super) fn next_conversation(&mut self) -> i64 {
        self.conversation += 1;
        self.conversation
    }

    pub(super) fn next_time_entry(&mut self) -> i64 {
        self.time_entry += 1;
        self.time_entry
    }
}

/// Who a generated ticket can involve, borrowed from the world while tickets are built.
pub(super) struct Directory<'a> {
    pub(super) departments: &'a [Department],
    pub(super) agents: &'a [Agent],
    pub(super) requesters: &'a [Requester],
}

/// Attributes forced onto specific tickets so every edge case exists in every world of
/// reasonable size (>= 50 tickets), whatever the seed, and onto the tickets mutations add. A
/// forced attribute skips the draw it replaces; the default forces nothing.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Forced {
    pub(super) status: Option<i64>,
    pub(super) priority: Option<i64>,
    pub(super) agent_requester: bool,
    pub(super) null_department: bool,
    /// This requester (an index into [`Directory::requesters`]) with their own department: no
    /// agent requester, no `null` department.
    pub(super) requester: Option<usize>,
    pub(super) conversations: Option<usize>,
    /// Exactly these conversations, oldest first (overrides `conversations`).
    pub(super) conversation_kinds: Option<&'static [ConversationKind]>,
    pub(super) time_entries: Option<usize>,
    pub(super) long_time_entry: bool,
    pub(super) deleted: bool,
    pub(super) spam: bool,
}

fn forced_for(index: usize, count: usize) -> Forced {
    let mut f = Forced::default();
    if count < 50 {
        return f;
    }
    // Distinct indices for every count >= 50 (the ratios are far enough apart).
    let closed = Some(STATUS_CLOSED);
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

/// Formats minutes the way Freshservice does (`"hh:mm"`), or one of the variants it is known to
/// emit; the variant is chosen by the caller.
pub(super) fn format_time_spent(minutes: u32, style: TimeStyle) -> String {
    let (h, m) = (minutes / 60, minutes % 60);
    match style {
        TimeStyle::Padded => format!("{h:02}:{m:02}"),
        TimeStyle::Short => format!("{h}:{m:02}"),
        TimeStyle::Seconds => format!("{h:02}:{m:02}:00"),
    }
}

#[derive(Debug, Clone, Copy)]
pub(super) enum TimeStyle {
    Padded,
    Short,
    Seconds,
}

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
    if !h.is_multiple_of(6) {
        return Vec::new();
    }
    const FILES: &[(&str, &str)] = &[
        ("screenshot.png", "image/png"),
        ("error log.txt", "text/plain"),
        ("Rechnung März.pdf", "application/pdf"),
        ("photo.jpg", "image/jpeg"),
        ("export.csv", "text/csv"),
    ];
    let count = 1 + usize::from((h >> 8).is_multiple_of(4));
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
pub(super) fn time_entry_extras(entry_id: i64) -> (Option<i64>, Value) {
    let h = id_hash(entry_id);
    let task_id = h
        .is_multiple_of(10)
        .then(|| TASK_BASE + (entry_id % 10_000));
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
    let agent_requester =
        forced.requester.is_none() && (forced.agent_requester || rng.gen_bool(0.03));
    let (requester_id, first, last, email, mut department_id) = if agent_requester {
        let a = &dir.agents[rng.gen_range(0..dir.agents.len())];
        let dept = rng
            .gen_bool(0.7)
            .then(|| dir.departments[rng.gen_range(0..dir.departments.len())].id);
        (a.id, &a.first_name, &a.last_name, a.email.clone(), dept)
    } else {
        let r = match forced.requester {
            Some(i) => &dir.requesters[i],
            None => &dir.requesters[rng.gen_range(0..dir.requesters.len())],
        };
        (
            r.id,
            &r.first_name,
            &r.last_name,
            r.primary_email.clone(),
            r.department_id,
        )
    };
    if forced.requester.is_none() && (forced.null_department || rng.gen_bool(0.04)) {
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
        STATUS_CLOSED => {
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
pub(super) enum ConversationKind {
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

pub(super) fn generate_ticket(
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

    let n_conv = match (forced.conversation_kinds, forced.conversations) {
        (Some(kinds), _) => kinds.len(),
        (None, Some(n)) => n,
        (None, None) => weighted(
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
        ),
    };
    let conv_times = sorted_between(
        rng,
        tl.created_at + Duration::seconds(60),
        tl.activity_end,
        n_conv,
    );
    let mut conversations = Vec::with_capacity(n_conv);
    for (i, at) in conv_times.into_iter().enumerate() {
        let kind = match forced.conversation_kinds {
            Some(kinds) => kinds[i],
            None if i == 0 && rng.gen_bool(0.6) => ConversationKind::Outgoing,
            None => weighted(
                rng,
                &[
                    (ConversationKind::Incoming, 35),
                    (ConversationKind::Outgoing, 40),
                    (ConversationKind::Note, 25),
                ],
            ),
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
