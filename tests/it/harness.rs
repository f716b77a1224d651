//! The hostile-API harness: seeded worlds, a mix of response mutations, mid-listing world
//! events and faults, the real pipeline, and **one oracle** that judges every run the same way.
//!
//! A case (see [`Case`]) is: a simulator world; optionally a clean full sync first (so the run
//! under test is incremental over stored rows); the mutations switched on; the run under test;
//! then, with every mutation off, a clean full sync of the server's final data into a fresh
//! dataset (the expected dataset) and a clean incremental run over the tested dataset.
//!
//! The oracle ([`judge`]):
//!
//! - exit 0 or 1: the dataset equals the expected one, except tickets a world event changed
//!   after the run may have read them (`touched`) and tickets a destructive mutation spoiled
//!   (`spoiled`, whose rejects the served data justifies); independently of ticketsync's code,
//!   every closed ticket of the world is placed or rejected exactly once, and each placed
//!   ticket holds exactly the world's time entries and minutes;
//! - exit 2 or 3: the cursor did not move, and every stored ticket the server still has
//!   unchanged kept its rows and document;
//! - either way, the next clean incremental run converges on the expected dataset.
//!
//! CI runs `HARNESS_CASES` cases (default 24) of the property test; `cargo test --test it
//! harness_soak -- --ignored` runs thousands. A failing case prints the smallest mutation set
//! proptest shrank it to; the named regression tests below are such cases, kept.

use std::collections::{BTreeMap, BTreeSet};
use ticketsync::error::Classify;

use proptest::prelude::*;
use ticketsync::job::JobSpec;
use ticketsync::pipeline::RunOutcome;
use ticketsync::report::RunStatus;
use ticketsync::sim::{FaultAction, FaultRule, HostileRule, Mutation, Plan, SimConfig};
use ticketsync::state;
use ticketsync::storage::{S3Options, Storage};

use crate::support::{minutes_of, Dump, Harness};

/// What the harness draws.
#[derive(Debug, Clone)]
pub struct Case {
    pub seed: u64,
    pub tickets: usize,
    /// A clean full sync first: the run under test is then incremental over stored rows.
    pub stored: bool,
    /// Children that run to several pages: (conversations, time entries) added to the first
    /// closed ticket of the world.
    pub big_children: Option<(usize, usize)>,
    /// Response mutations and world events.
    pub mutations: Vec<HostileRule>,
    /// Faults of the fault script (status codes, truncated bodies).
    pub faults: Vec<FaultRule>,
    /// Workspaces of the account (1: none; with more, one listing per workspace).
    pub workspaces: usize,
    /// The run under test re-scans recently closed tickets (see [`check_case`]).
    pub rescan: bool,
    /// A person is forgotten right before the run under test (see [`privacy`]).
    pub forgotten: bool,
}

impl Case {
    fn new(seed: u64, tickets: usize, stored: bool) -> Case {
        Case {
            seed,
            tickets,
            stored,
            big_children: None,
            mutations: Vec::new(),
            faults: Vec::new(),
            workspaces: 1,
            rescan: false,
            forgotten: false,
        }
    }

    fn forgotten(mut self) -> Case {
        self.forgotten = true;
        self
    }

    fn workspaces(mut self, workspaces: usize) -> Case {
        self.workspaces = workspaces;
        self
    }

    fn rescan(mut self) -> Case {
        self.rescan = true;
        self
    }

    fn mutate(mut self, rule: HostileRule) -> Case {
        self.mutations.push(rule);
        self
    }

    fn fault(mut self, rule: FaultRule) -> Case {
        self.faults.push(rule);
        self
    }

    fn big(mut self, conversations: usize, time_entries: usize) -> Case {
        self.big_children = Some((conversations, time_entries));
        self
    }
}

/// What a run under test came to, as a scheduler sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Ok,
    OkWithRejects,
    Failed,
    Config,
}

fn exit_of(outcome: &Result<RunOutcome, ticketsync::pipeline::Error>) -> Exit {
    use ticketsync::error::Class;
    let class = |c: Class| match c {
        Class::Config => Exit::Config,
        _ => Exit::Failed,
    };
    match outcome {
        Err(e) => class(e.class()),
        Ok(o) => match (&o.error, o.report.status) {
            (Some(e), _) => class(e.class()),
            (None, RunStatus::Ok) => Exit::Ok,
            (None, RunStatus::OkWithRejects) => Exit::OkWithRejects,
            (None, _) => Exit::Failed,
        },
    }
}

/// The ticket a dump line or document belongs to.
fn ticket_of_line(line: &str) -> Option<i64> {
    let at = line.find("ticket_id=")? + "ticket_id=".len();
    let digits: String = line[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

fn ticket_of_doc(path: &str) -> Option<i64> {
    path.rsplit_once('/')?.1.strip_suffix(".md")?.parse().ok()
}

/// A tickets row as the listing would give it: a ticket the re-scan (or `--ticket`) re-read
/// comes from its view, which carries `urgency` and `impact` where list rows omit them (see
/// `fields::a_single_ticket_run_reads_urgency_and_impact_from_the_view`).
fn as_listed(line: &str) -> String {
    static VIEW_ONLY: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(r"\b(urgency|impact)=(Urgency \d+|Impact \d+|[A-Za-z]+|∅)").unwrap()
    });
    VIEW_ONLY.replace_all(line, "$1=∅").into_owned()
}

/// A dump per ticket: its rows of every table and its document.
fn by_ticket(dump: &Dump) -> BTreeMap<i64, Vec<String>> {
    let mut out: BTreeMap<i64, Vec<String>> = BTreeMap::new();
    for (table, rows) in &dump.rows {
        for line in rows {
            if let Some(id) = ticket_of_line(line) {
                let line = if *table == "tickets" {
                    as_listed(line)
                } else {
                    line.clone()
                };
                out.entry(id).or_default().push(format!("{table}: {line}"));
            }
        }
    }
    for (path, text) in &dump.markdown {
        if let Some(id) = ticket_of_doc(path) {
            out.entry(id)
                .or_default()
                .push(format!("markdown {path}: {text}"));
        }
    }
    out
}

/// The ids a table holds.
fn ids(dump: &Dump, table: &str) -> BTreeSet<i64> {
    dump.table(table)
        .iter()
        .filter_map(|l| ticket_of_line(l))
        .collect()
}

/// Differences between two dumps outside `except`, as readable lines (empty: equal).
fn differences(got: &Dump, want: &Dump, except: &BTreeSet<i64>) -> Vec<String> {
    let got = by_ticket(got);
    let want = by_ticket(want);
    let mut out = Vec::new();
    for id in got.keys().chain(want.keys()).collect::<BTreeSet<_>>() {
        if except.contains(id) {
            continue;
        }
        let (g, w) = (got.get(id), want.get(id));
        if g != w {
            let first = |v: Option<&Vec<String>>| {
                v.map_or_else(|| "nothing".to_string(), |v| v.join("\n      "))
            };
            out.push(format!(
                "ticket {id}:\n    got  {}\n    want {}",
                first(g),
                first(w)
            ));
        }
    }
    out
}

/// A dump with every U+FFFD taken out (what a lossily read invalid byte leaves).
fn without_replacements(dump: &Dump) -> Dump {
    let strip = |s: &String| s.replace('\u{fffd}', "");
    Dump {
        rows: dump
            .rows
            .iter()
            .map(|(t, rows)| (*t, rows.iter().map(strip).collect()))
            .collect(),
        markdown: dump
            .markdown
            .iter()
            .map(|(p, text)| (p.clone(), strip(text)))
            .collect(),
        files: dump.files.clone(),
    }
}

/// The independent check: every closed ticket of the world (live, in the window) is placed
/// or rejected exactly once, and each placed ticket holds the world's time entries and minutes.
fn world_check(h: &Harness, dump: &Dump, except: &BTreeSet<i64>) -> Vec<String> {
    let truth = h.sim.ground_truth();
    let cutoff = chrono::Utc::now() - chrono::Duration::days(crate::support::FULL_DAYS);
    let placed = ids(dump, "tickets");
    let rejected = ids(dump, "rejects");
    let mut entries: BTreeMap<i64, BTreeSet<String>> = BTreeMap::new();
    let mut minutes: BTreeMap<i64, i64> = BTreeMap::new();
    for line in dump.table("time_entries") {
        let Some(id) = ticket_of_line(line) else {
            continue;
        };
        let field = |name: &str| {
            line.split(' ')
                .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
                .unwrap_or("")
                .to_string()
        };
        entries
            .entry(id)
            .or_default()
            .insert(field("time_entry_id"));
        *minutes.entry(id).or_default() += field("minutes").parse::<i64>().unwrap_or(0);
    }
    let mut out = Vec::new();
    let mut seen_entries = BTreeSet::new();
    for line in dump.table("time_entries") {
        let entry = line
            .split(' ')
            .find_map(|kv| kv.strip_prefix("time_entry_id="))
            .unwrap_or("")
            .to_string();
        if !seen_entries.insert(entry.clone()) {
            out.push(format!("time entry {entry} is stored twice"));
        }
    }
    for t in truth.tickets.iter() {
        if except.contains(&t.id) || t.deleted || t.spam || t.status != 5 || t.updated_at < cutoff {
            continue;
        }
        match (placed.contains(&t.id), rejected.contains(&t.id)) {
            (true, true) => out.push(format!("ticket {}: placed and rejected", t.id)),
            (false, false) => out.push(format!(
                "ticket {}: closed, neither placed nor rejected",
                t.id
            )),
            (false, true) => {}
            (true, false) => {
                let want: BTreeSet<String> =
                    t.time_entries.iter().map(|e| e.id.to_string()).collect();
                let got = entries.get(&t.id).cloned().unwrap_or_default();
                if got != want {
                    out.push(format!(
                        "ticket {}: time entries {:?}, the world has {:?}",
                        t.id, got, want
                    ));
                }
                let want_minutes: i64 = t
                    .time_entries
                    .iter()
                    .map(|e| minutes_of(&e.time_spent))
                    .sum();
                let got_minutes = minutes.get(&t.id).copied().unwrap_or(0);
                if got_minutes != want_minutes {
                    out.push(format!(
                        "ticket {}: {got_minutes} minutes stored, the world has {want_minutes}",
                        t.id
                    ));
                }
            }
        }
    }
    out
}

/// The run's job: the harness's, with the rate limiter's window and small checkpoints.
fn spec(h: &Harness, full: bool) -> JobSpec {
    JobSpec {
        full_sync: Some(full),
        ..h.spec()
    }
}

async fn cursor(storage: &Storage) -> Option<state::Cursor> {
    state::load_cursor(storage).await.expect("the cursor reads")
}

/// A simulator of `tickets` tickets that never answers 429 (1-second windows, Enterprise).
async fn unlimited(tickets: usize, seed: u64) -> Harness {
    unlimited_in(tickets, seed, 1).await
}

/// [`unlimited`], in an account with `workspaces` workspaces.
async fn unlimited_in(tickets: usize, seed: u64, workspaces: usize) -> Harness {
    Harness::with_config(SimConfig {
        tickets,
        seed,
        plan: Plan::Enterprise,
        minute_secs: 1.0,
        rate_limit: false,
        workspaces,
        ..SimConfig::default()
    })
    .await
}

/// Tickets closed in the last `days` days.
fn closed_within(h: &Harness, days: i64) -> Vec<i64> {
    let since = chrono::Utc::now() - chrono::Duration::days(days);
    h.sim
        .ground_truth()
        .closed_tickets()
        .filter(|t| t.closed_at.is_some_and(|c| c >= since))
        .map(|t| t.id)
        .collect()
}

/// Runs one case and returns what the oracle found wrong (empty: the case holds).
///
/// In a stored case every ticket changes after the first run, so the run under test lists the
/// whole world over stored rows; with `rescan`, only every other one does, three recently
/// closed ones the listing does not bring get time logged without their `updated_at` moving,
/// and the run under test re-scans the last 30 days (the re-scan must find those hours).
pub async fn check_case(case: &Case) -> Vec<String> {
    let h = unlimited_in(case.tickets, case.seed, case.workspaces).await;
    if let Some((conversations, time_entries)) = case.big_children {
        let id = h
            .sim
            .ground_truth()
            .closed_tickets()
            .next()
            .map(|t| t.id)
            .expect("a closed ticket");
        h.sim.grow_children(id, conversations, time_entries, 7);
    }
    // Invalid UTF-8 is read lossily: a spoiled text is U+FFFD and the original text, so every
    // dump of such a case is compared without U+FFFD.
    let lossy = case
        .mutations
        .iter()
        .any(|m| m.mutation == Mutation::InvalidUtf8);
    let dump = |d: Dump| if lossy { without_replacements(&d) } else { d };
    let mut problems = Vec::new();
    if case.stored {
        let base = h.sync_with(spec(&h, true), None).await;
        assert!(
            base.error.is_none(),
            "the clean first run failed: {:?}",
            base.error
        );
    }
    if case.stored {
        // Every ticket (every other one, with a re-scan) changes after the first run, so the
        // run under test lists and fetches the world again over stored rows.
        let step = if case.rescan { 2 } else { 1 };
        let changed: BTreeSet<i64> = h
            .sim
            .ground_truth()
            .tickets
            .iter()
            .map(|t| t.id)
            .step_by(step)
            .collect();
        for id in &changed {
            h.sim.touch_ticket(*id);
        }
        if case.rescan {
            let quiet = closed_within(&h, 30)
                .into_iter()
                .filter(|id| !changed.contains(id));
            for id in quiet.take(3) {
                h.sim.add_time_entry(id, 40, true, false);
            }
        }
    }
    let planted = if case.forgotten {
        Some(privacy::plant_and_forget(&h).await)
    } else {
        None
    };
    let before = dump(h.dump().await);
    let cursor_before = cursor(&h.storage).await;

    h.sim.hostile().set(case.mutations.clone());
    for fault in &case.faults {
        h.sim.faults().push(fault.clone());
    }
    // With `rescan`, the run under test and the next clean one re-scan the last 30 days.
    let job_of = |full: bool| {
        if case.rescan {
            JobSpec {
                rescan_days: Some(30),
                rescan_every_hours: Some(0.0),
                ..spec(&h, full)
            }
        } else {
            spec(&h, full)
        }
    };
    let under_test = job_of(!case.stored);
    let outcome = h.try_sync_with(under_test, None).await;
    let exit = exit_of(&outcome);
    let after = dump(h.dump().await);
    let cursor_after = cursor(&h.storage).await;
    let spoiled = h.sim.hostile().spoiled();
    let touched = h.sim.hostile().touched();
    h.sim.hostile().clear();
    h.sim.faults().clear();

    // The expected dataset: a clean full sync of the server's final data.
    let clean_dir = tempfile::tempdir().unwrap();
    let clean_storage =
        Storage::open(clean_dir.path().to_str().unwrap(), &S3Options::default()).unwrap();
    let clean_spec = JobSpec {
        data: Some(clean_dir.path().to_str().unwrap().into()),
        ..spec(&h, true)
    };
    // The same people are forgotten in it, under the same key (same pseudonyms).
    privacy::copy_erasures(&h.storage, &clean_storage).await;
    let job = ticketsync::job::Job::resolve(clean_spec, None).unwrap();
    let clean = ticketsync::pipeline::run(&job, h.source(&job), &clean_storage)
        .await
        .expect("the clean run starts");
    assert!(
        clean.error.is_none(),
        "the clean run failed: {:?}",
        clean.error
    );
    let want = dump(Dump::of(&clean_storage).await);

    let except: BTreeSet<i64> = touched.union(&spoiled).copied().collect();

    let report = outcome.as_ref().ok().map(|o| &o.report);
    if let Some(p) = &planted {
        for leak in privacy::leaks(&h.storage, &after, report, p).await {
            problems.push(format!("after the run under test: {leak}"));
        }
    }
    if matches!(exit, Exit::Ok | Exit::OkWithRejects)
        && report.is_some_and(|r| r.tickets.listed == 0)
    {
        problems.push("the run under test listed nothing: the case checks nothing".into());
    }
    match exit {
        Exit::Ok | Exit::OkWithRejects => {
            for d in differences(&after, &want, &except) {
                problems.push(format!(
                    "exit {exit:?} but the dataset differs from a clean run's: {d}"
                ));
            }
            for d in world_check(&h, &after, &except) {
                problems.push(format!("exit {exit:?}: {d}"));
            }
            for id in &spoiled {
                let places = u8::from(ids(&after, "tickets").contains(id))
                    + u8::from(ids(&after, "rejects").contains(id));
                if places > 1 {
                    problems.push(format!("spoiled ticket {id} is placed and rejected"));
                }
            }
        }
        Exit::Failed | Exit::Config => {
            if cursor_after.as_ref().map(|c| c.updated_since)
                != cursor_before.as_ref().map(|c| c.updated_since)
            {
                problems.push(format!(
                    "exit {exit:?} but the cursor moved from {:?} to {:?}",
                    cursor_before.map(|c| c.updated_since),
                    cursor_after.map(|c| c.updated_since)
                ));
            }
            // Every stored ticket the server still has unchanged kept its rows and document.
            let was = by_ticket(&before);
            let now = by_ticket(&after);
            let expected = by_ticket(&want);
            for (id, rows) in &was {
                if except.contains(id) || expected.get(id) != Some(rows) {
                    continue;
                }
                if now.get(id) != Some(rows) {
                    problems.push(format!(
                        "exit {exit:?} and stored ticket {id} lost rows or its document"
                    ));
                }
            }
        }
    }

    // Whatever happened, the next clean run converges on the expected dataset.
    let next = h.sync_with(job_of(false), None).await;
    if let Some(e) = &next.error {
        problems.push(format!("the clean run after it failed: {e}"));
    }
    let converged = dump(h.dump().await);
    if let Some(p) = &planted {
        for leak in privacy::leaks(&h.storage, &converged, Some(&next.report), p).await {
            problems.push(format!("after the next clean run: {leak}"));
        }
        // The privacy commands rewrite what is stored: nothing may come back through them.
        let ttl = std::time::Duration::from_secs(60);
        let redactor = std::sync::Arc::new(ticketsync::normalize::privacy::Redactor::defaults());
        ticketsync::dataset::redact::redact(&h.storage, redactor, false, ttl)
            .await
            .expect("redact");
        ticketsync::dataset::retention::prune(&h.storage, 300, false, ttl)
            .await
            .expect("prune");
        let pruned = dump(h.dump().await);
        for leak in privacy::leaks(&h.storage, &pruned, None, p).await {
            problems.push(format!("after redact and prune: {leak}"));
        }
    }
    for d in differences(&converged, &want, &spoiled) {
        problems.push(format!("the next clean run did not converge: {d}"));
    }
    for d in world_check(&h, &converged, &spoiled) {
        problems.push(format!("after the next clean run: {d}"));
    }
    if !problems.is_empty() {
        problems.insert(
            0,
            format!(
                "exit {exit:?}; report: status {:?}, tickets {:?}, removal guard {:?}, error {:?}; touched {touched:?}, spoiled {spoiled:?}",
                report.map(|r| r.status),
                report.map(|r| &r.tickets),
                report.map(|r| &r.removal_guard),
                report.and_then(|r| r.error.as_ref()),
            ),
        );
    }
    problems
}

async fn holds(case: Case) {
    let problems = check_case(&case).await;
    assert!(
        problems.is_empty(),
        "{case:#?}\n{}",
        problems
            .iter()
            .take(12)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// The privacy oracle (issue 19): a person forgotten before the run under test, mentioned in
/// other tickets in every encoding a mail client writes, and secrets planted in texts and
/// custom fields; after every run no table, document, `_runs/` or `_state/` object, run
/// report or metric may hold them.
mod privacy {
    use super::*;
    pub use crate::support::planted::Planted;

    /// Plants the person and secrets (see [`crate::support::planted`]) and forgets the person:
    /// the requester with the most tickets a clean probe run places.
    pub async fn plant_and_forget(h: &Harness) -> Planted {
        let probe = tempfile::tempdir().unwrap();
        let storage = Storage::open(probe.path().to_str().unwrap(), &S3Options::default()).unwrap();
        let job = ticketsync::job::Job::resolve(
            JobSpec {
                data: Some(probe.path().to_str().unwrap().into()),
                ..spec(h, true)
            },
            None,
        )
        .unwrap();
        ticketsync::pipeline::run(&job, h.source(&job), &storage)
            .await
            .expect("the probe run starts");
        let person = crate::support::planted::busiest_placed(&h.sim, &Dump::of(&storage).await);
        let planted = crate::support::planted::plant(&h.sim, &person);
        ticketsync::dataset::forget::forget(
            &h.storage,
            &ticketsync::dataset::forget::Request {
                email: planted.email.clone(),
                name: None,
                dry_run: false,
                lock_ttl: std::time::Duration::from_secs(60),
            },
        )
        .await
        .expect("forget");
        planted
    }

    /// Copies the erasure record and its key.
    pub async fn copy_erasures(from: &Storage, to: &Storage) {
        for name in [state::erasures::ERASURES, state::erasures::KEY] {
            let path = ticketsync::storage::layout::state(name);
            if let Some(bytes) = from.get(&path).await.unwrap() {
                to.put(&path, bytes).await.unwrap();
            }
        }
    }

    /// Where a planted value shows.
    pub async fn leaks(
        storage: &Storage,
        dump: &Dump,
        report: Option<&ticketsync::report::RunReport>,
        planted: &Planted,
    ) -> Vec<String> {
        let mut texts: Vec<(String, String)> = Vec::new();
        for path in storage
            .list(&object_store::path::Path::from(""))
            .await
            .unwrap()
        {
            let name = path.to_string();
            if (name.starts_with("_runs/") || name.starts_with("_state/"))
                && !name.ends_with(".parquet")
            {
                let bytes = storage.get(&path).await.unwrap().unwrap_or_default();
                texts.push((name, String::from_utf8_lossy(&bytes).into_owned()));
            }
        }
        if let Some(report) = report {
            texts.push((
                "the run report".into(),
                serde_json::to_string(report).unwrap(),
            ));
            let facts = ticketsync::metrics::Facts::from_report(report);
            texts.push((
                "the metrics".into(),
                ticketsync::metrics::encode_text(&facts, None),
            ));
        }
        planted.leaks(dump, &texts)
    }
}

// ---- The generator ----------------------------------------------------------------------

const ENDPOINTS: &[&str] = &[
    "tickets_list",
    "conversations",
    "time_entries",
    "ticket_view",
    "departments",
    "agents",
    "groups",
];

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        Just(Mutation::StripLink),
        Just(Mutation::RawCommaLink),
        Just(Mutation::SplitLink),
        Just(Mutation::ParamLink),
        Just(Mutation::DropRateHeaders),
        Just(Mutation::Reverse),
        Just(Mutation::DuplicateFirst),
        Just(Mutation::DropFirstOfLinkedPage),
        Just(Mutation::IdAsString),
        Just(Mutation::NumbersAsStrings),
        Just(Mutation::IntegersAsFloats),
        Just(Mutation::NullField("department_id".into())),
        Just(Mutation::NullField("id".into())),
        Just(Mutation::ObjectToArray("custom_fields".into())),
        Just(Mutation::WordField("source".into())),
        Just(Mutation::InvalidUtf8),
        Just(Mutation::NewestFirst),
        Just(Mutation::DeleteFirst),
        Just(Mutation::SpamFirst),
        Just(Mutation::ReopenFirst),
        Just(Mutation::TouchFirst),
        Just(Mutation::CreateTicket),
        Just(Mutation::LogTime),
        Just(Mutation::MoveWorkspace),
        Just(Mutation::DeleteChildFirst),
        Just(Mutation::IgnorePage),
    ]
}

fn hostile_rule() -> impl Strategy<Value = HostileRule> {
    (
        prop::sample::select(ENDPOINTS),
        prop_oneof![Just(None), (1u32..=3).prop_map(Some)],
        mutation(),
    )
        .prop_map(|(endpoint, page, mutation)| HostileRule {
            endpoint: Some(endpoint.to_string()),
            page,
            times: if page.is_some() { 1 } else { u32::MAX },
            skip: 0,
            mutation,
        })
}

fn fault_rule() -> impl Strategy<Value = FaultRule> {
    (
        prop::sample::select(ENDPOINTS),
        prop_oneof![
            Just(FaultAction::Status(403)),
            Just(FaultAction::Status(404)),
            Just(FaultAction::Status(500)),
            Just(FaultAction::Status(503)),
            Just(FaultAction::TruncatedJson),
            // Answers out of order: a page read ahead is served before the one it follows.
            Just(FaultAction::Slow(std::time::Duration::from_millis(300))),
        ],
        0u32..20,
        prop_oneof![1u32..=3, Just(u32::MAX)],
    )
        .prop_map(|(endpoint, action, skip, times)| {
            FaultRule::new(action)
                .endpoint(endpoint)
                .skip(skip)
                .times(times)
        })
}

fn case() -> impl Strategy<Value = Case> {
    (
        0u64..10_000,
        120usize..320,
        any::<bool>(),
        prop_oneof![3 => Just(None), 1 => Just(Some((150usize, 120usize)))],
        prop::collection::vec(hostile_rule(), 0..4),
        prop::collection::vec(fault_rule(), 0..2),
        prop_oneof![2 => Just(1usize), 1 => Just(3usize)],
        any::<bool>(),
        prop::bool::weighted(0.25),
    )
        .prop_map(
            |(
                seed,
                tickets,
                stored,
                big_children,
                mutations,
                faults,
                workspaces,
                rescan,
                forgotten,
            )| Case {
                seed,
                tickets,
                stored,
                big_children,
                mutations,
                faults,
                workspaces,
                // A re-scan needs stored rows to re-scan.
                rescan: rescan && stored,
                forgotten,
            },
        )
}

/// Runs `cases` drawn cases from `seed` (the same seed draws the same cases: CI is
/// reproducible, and a failure names the seed that replays it with `HARNESS_SEED`).
fn run_cases(cases: u32, seed: u64) {
    use proptest::test_runner::{RngAlgorithm, TestRng, TestRunner};
    let config = ProptestConfig {
        cases,
        max_shrink_iters: 64,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let mut runner =
        TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &bytes));
    let result = runner.run(&case(), |case| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let problems = runtime.block_on(check_case(&case));
        prop_assert!(
            problems.is_empty(),
            "{}",
            problems
                .iter()
                .take(12)
                .cloned()
                .collect::<Vec<_>>()
                .join("\n")
        );
        Ok(())
    });
    if let Err(e) = result {
        panic!("HARNESS_SEED={seed}: {e}");
    }
}

fn env_number(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|n| n.parse().ok())
}

/// CI: `HARNESS_CASES` cases (default 24) from `HARNESS_SEED` (default 18, fixed).
#[test]
fn the_oracle_holds_under_drawn_mutations() {
    let cases = env_number("HARNESS_CASES").unwrap_or(24);
    run_cases(
        u32::try_from(cases).unwrap_or(u32::MAX),
        env_number("HARNESS_SEED").unwrap_or(18),
    );
}

/// The soak: 3,000 cases from a new seed each time (printed on failure).
#[test]
#[ignore = "soak: thousands of cases (cargo test --test it harness_soak -- --ignored)"]
fn harness_soak() {
    let cases = env_number("HARNESS_CASES").unwrap_or(3000);
    let seed = env_number("HARNESS_SEED").unwrap_or_else(rand::random);
    run_cases(u32::try_from(cases).unwrap_or(u32::MAX), seed);
}

// ---- Regression tests: the review's findings (issue 18 §2), each a case of the harness ----

fn tickets_list(mutation: Mutation) -> HostileRule {
    HostileRule::always("tickets_list", mutation)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_that_strips_link_loses_no_ticket() {
    holds(Case::new(1, 383, false).mutate(tickets_list(Mutation::StripLink))).await;
    holds(Case::new(2, 383, true).mutate(tickets_list(Mutation::StripLink))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_with_raw_commas_prev_first_or_on_two_lines_are_followed() {
    for mutation in [
        Mutation::RawCommaLink,
        Mutation::SplitLink,
        Mutation::ParamLink,
    ] {
        holds(Case::new(3, 383, false).mutate(tickets_list(mutation))).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_lists_keep_every_row_when_their_link_is_stripped() {
    holds(
        Case::new(4, 150, false)
            .big(150, 120)
            .mutate(HostileRule::always("conversations", Mutation::StripLink))
            .mutate(HostileRule::always("time_entries", Mutation::StripLink)),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deletion_during_paging_loses_no_other_ticket() {
    for event in [Mutation::DeleteFirst, Mutation::SpamFirst] {
        holds(Case::new(5, 383, true).mutate(HostileRule::once("tickets_list", 1, event.clone())))
            .await;
        holds(Case::new(6, 383, false).mutate(HostileRule::once("tickets_list", 2, event))).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn placed_tickets_leave_through_rejects_only_under_the_removal_guard() {
    // A proxy that answers 404 for everything under /tickets/{id}.
    let case = Case::new(7, 300, true)
        .fault(
            FaultRule::new(FaultAction::Status(404))
                .endpoint("conversations")
                .times(u32::MAX),
        )
        .fault(
            FaultRule::new(FaultAction::Status(404))
                .endpoint("ticket_view")
                .times(u32::MAX),
        )
        .mutate(tickets_list(Mutation::TouchFirst));
    holds(case).await;
    // An API change: `source` sent as a name. A placed ticket fails and keeps its rows.
    holds(Case::new(8, 300, true).mutate(HostileRule::once(
        "tickets_list",
        1,
        Mutation::WordField("source".into()),
    )))
    .await;
    // A department id gone from every listed ticket: at most max_removals move to rejects.
    holds(
        Case::new(9, 300, true).mutate(tickets_list(Mutation::NullField("department_id".into()))),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_and_numbers_as_strings_or_floats_are_placed() {
    for mutation in [
        Mutation::IdAsString,
        Mutation::NumbersAsStrings,
        Mutation::IntegersAsFloats,
    ] {
        holds(
            Case::new(10, 250, false)
                .mutate(tickets_list(mutation.clone()))
                .mutate(HostileRule::always("time_entries", mutation.clone()))
                .mutate(HostileRule::always("conversations", mutation)),
        )
        .await;
    }
    // An item without a usable id fails the run.
    holds(Case::new(11, 250, true).mutate(HostileRule::once(
        "tickets_list",
        1,
        Mutation::NullField("id".into()),
    )))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_time_entry_logged_while_its_list_is_paged_is_stored_once() {
    holds(
        Case::new(12, 150, false)
            .big(0, 150)
            .mutate(HostileRule::always("time_entries", Mutation::NewestFirst))
            .mutate(HostileRule::once("time_entries", 1, Mutation::LogTime)),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_invalid_utf8_byte_does_not_fail_every_run() {
    let h = unlimited(200, 13).await;
    h.sim
        .hostile()
        .set(vec![tickets_list(Mutation::InvalidUtf8)]);
    let run = h.full_sync().await;
    assert!(run.error.is_none(), "{:?}", run.error);
    assert!(run.report.api.lossy_utf8_bodies > 0, "{:?}", run.report.api);
    holds(Case::new(13, 200, true).mutate(tickets_list(Mutation::InvalidUtf8))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_clock_ahead_of_the_api_loses_no_ticket() {
    let h = unlimited(200, 14).await;
    // The API's clock is an hour behind ours: it stamps changes an hour "early".
    h.sim.hostile().set_clock_skew(-3600);
    let first = h.full_sync().await;
    assert!(first.error.is_none(), "{:?}", first.error);
    let offset = first
        .report
        .api
        .server_clock_offset_secs
        .expect("a Date was read");
    assert!((-3601..=-3599).contains(&offset), "{offset}");
    let id = h.sim.add_closed_ticket();
    let next = h.incremental().await;
    assert!(next.error.is_none(), "{:?}", next.error);
    let dump = h.dump().await;
    assert!(
        ids(&dump, "tickets").contains(&id) || ids(&dump, "rejects").contains(&id),
        "ticket {id}, changed after the first run by the API's clock, was not listed"
    );
}

// ---- Found by the harness (not on the review's list) --------------------------------------

/// Soak, `HARNESS_SEED=20261201`: an agent record whose `id` is null was dropped from the
/// reference data, so notes and time entries lost their author's name and the run succeeded.
/// The same held for a `GET /groups` that answered 403 or 404 (`group_name` null everywhere).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reference_list_that_cannot_be_read_whole_fails_the_run() {
    holds(Case::new(0, 120, false).mutate(HostileRule::always(
        "agents",
        Mutation::NullField("id".into()),
    )))
    .await;
    holds(Case::new(15, 150, true).mutate(HostileRule::always(
        "groups",
        Mutation::NullField("id".into()),
    )))
    .await;
    for status in [403, 404] {
        holds(
            Case::new(16, 150, true).fault(
                FaultRule::new(FaultAction::Status(status))
                    .endpoint("groups")
                    .times(u32::MAX),
            ),
        )
        .await;
    }
}

// ---- Found by a hostile review of the harness ---------------------------------------------

/// A ticket moved to another workspace while the listings are read leaves its listing like a
/// deleted one and shifts the pages behind it, whichever workspace is read first: moves into a
/// workspace read later, and one into the workspace read first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ticket_moved_between_workspaces_mid_listing_loses_no_other_ticket() {
    // Page 1 of the second workspace's listing (3 → 4, a workspace read later), and of the
    // third (4 → 2, the workspace read first: no listing of this pass shows it twice).
    // Three pages a workspace: with the page after the current one read ahead, the shift
    // shows on the third.
    for skip in [1, 2] {
        let moves = HostileRule::once("tickets_list", 1, Mutation::MoveWorkspace).after(skip);
        holds(
            Case::new(17, 900, false)
                .workspaces(3)
                .mutate(moves.clone()),
        )
        .await;
        holds(Case::new(18, 900, true).workspaces(3).mutate(moves)).await;
    }
}

/// The re-scan took a 404 of `GET /tickets/{id}` as deletion and removed the ticket; only the
/// deleted and spam views are removal evidence.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rescan_that_meets_404s_removes_nothing() {
    let not_found = |endpoint: &str| {
        FaultRule::new(FaultAction::Status(404))
            .endpoint(endpoint)
            .times(u32::MAX)
    };
    holds(
        Case::new(19, 200, true)
            .rescan()
            .fault(not_found("ticket_view"))
            .fault(not_found("time_entries")),
    )
    .await;
    // Without faults the re-scan finds the hours logged without `updated_at` moving.
    holds(Case::new(19, 200, true).rescan()).await;
}

/// A conversation or time entry deleted while its ticket's list of several pages is read pulls
/// the next page's first row onto a page already read: the list is read until it holds still.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_deleted_while_its_list_is_paged_loses_no_other_child() {
    holds(
        Case::new(20, 150, false)
            .big(150, 120)
            .mutate(HostileRule::once(
                "conversations",
                1,
                Mutation::DeleteChildFirst,
            ))
            .mutate(HostileRule::once(
                "time_entries",
                1,
                Mutation::DeleteChildFirst,
            )),
    )
    .await;
}

/// A proxy that drops `page` (and `Link`): each page asked for without a `Link` brings page 1
/// again. Before, the listing went on to `max_pages` storing repeats; now the first repeat
/// fails it, for the ticket listing and for child lists alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_ignores_page_fails_the_listing_at_once() {
    for endpoint in ["tickets_list", "time_entries"] {
        let h = unlimited(250, 21).await;
        if endpoint == "time_entries" {
            let id = h.sim.ground_truth().closed_tickets().next().unwrap().id;
            h.sim.grow_children(id, 0, 120, 5);
        }
        h.sim.hostile().set(vec![
            HostileRule::always(endpoint, Mutation::IgnorePage),
            HostileRule::always(endpoint, Mutation::StripLink),
        ]);
        let run = h.try_sync_with(spec(&h, true), None).await;
        assert_eq!(exit_of(&run), Exit::Failed, "{endpoint}");
        let shown = match &run {
            Ok(o) => format!("{:?} {:?}", o.error, o.report.tickets),
            Err(e) => e.to_string(),
        };
        if endpoint == "tickets_list" {
            assert!(shown.contains("ignores `page`"), "{shown}");
        } else {
            assert!(run.as_ref().unwrap().report.tickets.failed >= 1, "{shown}");
        }
        // One call per page read: the first repeat ends it (not max_pages of repeats).
        let calls = h.sim.stats().by_endpoint[endpoint];
        let tickets = run.as_ref().map_or(0, |o| o.report.tickets.closed);
        let most = if endpoint == "tickets_list" {
            8
        } else {
            tickets + 4
        };
        assert!(calls <= most, "{endpoint}: {calls} calls");
    }
    holds(
        Case::new(21, 383, true)
            .mutate(tickets_list(Mutation::IgnorePage))
            .mutate(tickets_list(Mutation::StripLink)),
    )
    .await;
}

/// The privacy oracle in the harness: a person forgotten with no name known (a fresh dataset)
/// or known from stored rows, under mutations that refetch and relist.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forgotten_person_and_planted_secrets_never_reach_the_dataset() {
    holds(Case::new(22, 200, false).forgotten()).await;
    holds(
        Case::new(23, 200, true)
            .forgotten()
            .mutate(tickets_list(Mutation::StripLink))
            .mutate(HostileRule::once("tickets_list", 1, Mutation::DeleteFirst)),
    )
    .await;
}

/// Found by the harness in CI (`HARNESS_SEED=18`, shrunk), about one run in four: page 2 of
/// the listing answered 500 and was retried after page 3, read ahead, had been served; a
/// ticket created in between (newest first, at the top) shifted page 2's last row onto page 3,
/// already read. An old ticket touched after the stored run was never listed, exit 1. A page
/// answered before the page it follows is now read again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_read_ahead_and_served_before_a_retried_page_is_read_again() {
    holds(
        Case::new(2959, 220, true)
            .mutate(HostileRule::once(
                "conversations",
                1,
                Mutation::CreateTicket,
            ))
            .mutate(HostileRule::always(
                "ticket_view",
                Mutation::NumbersAsStrings,
            ))
            .mutate(HostileRule::always("time_entries", Mutation::InvalidUtf8))
            .fault(
                FaultRule::new(FaultAction::Status(500))
                    .endpoint("tickets_list")
                    .skip(1)
                    .times(1),
            ),
    )
    .await;
}

/// The class of the case above, made certain: page 2 of the listing answers 500 and is
/// retried; page 3 (read ahead) is served first, a ticket is created (newest first, at the
/// top), and page 3's answer is slow, so it arrives after the retry of page 2 was sent. Page
/// 2's last row moves onto page 3, already read, and no timing shows it. Only a listing that
/// shows no ticket entered while its pages were read ahead may end there; this one is read
/// again page by page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ticket_created_while_pages_are_served_out_of_order_loses_no_row() {
    for stored in [false, true] {
        holds(
            Case::new(2960, 320, stored)
                .mutate(HostileRule::once("tickets_list", 3, Mutation::CreateTicket))
                // Listed first: a rule's skips count the requests before the rule that fires.
                .fault(
                    FaultRule::new(FaultAction::Slow(std::time::Duration::from_millis(1500)))
                        .endpoint("tickets_list")
                        .skip(2)
                        .times(1),
                )
                .fault(
                    FaultRule::new(FaultAction::Status(500))
                        .endpoint("tickets_list")
                        .skip(1)
                        .times(1),
                ),
        )
        .await;
    }
}

/// Soak `HARNESS_SEED=31337` (shrunk): a person forgotten with no name known whose name ends in
/// a one-character word ("… 李"). Before their name was learned, their own tickets lost its
/// words one by one, all but that one (too short to erase alone); a run that knew the name
/// erased it whole, so the dataset depended on when the name was learned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_learned_mid_run_is_erased_as_by_a_run_that_knew_it() {
    holds(Case::new(4957, 145, false).forgotten()).await;
}
