//! `ticketsync forget`: erase a person from the dataset, for good.
//!
//! 1. Under the run lock (one writer at a time), after finishing an interrupted commit.
//! 2. Learn who the address is in the data: the requester name (unless `--name` gives it) and
//!    the requester ids of the tickets they requested.
//! 3. Add them to `_state/erasures.json` (keyed hashes, marked pending) — from here on every
//!    sync erases them from whatever it fetches.
//! 4. Rewrite every ticket that mentions them, one partition per commit, then the `rejects`
//!    rows whose detail does.
//! 5. Clear the pending mark and write an audit record under `_runs/` (without the address).
//!
//! A kill after step 3 leaves the erasure pending: the next sync (or `forget` again) finishes
//! the rewrite before it writes anything else, so a killed erasure never stays half done.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{partitions, read_tickets, rewrite, Error, Result, Rewritten, Session};
use crate::normalize::privacy::Erasures;
use crate::state::erasures::{self, Loaded};
use crate::state::lock::Lock;
use crate::state::Index;
use crate::storage::Storage;

/// What `forget` is asked to do.
#[derive(Debug, Clone)]
pub struct Request {
    /// The person's address; matched trimmed and without regard to case.
    pub email: String,
    /// The person's name when the data does not tell it (no ticket requested by them).
    pub name: Option<String>,
    /// Count what would change; write nothing.
    pub dry_run: bool,
    /// Lifetime of the run lock between refreshes (the job's `lock_ttl_secs`).
    pub lock_ttl: Duration,
}

/// The audit record of one erasure (`_runs/<run_id>.json`): what changed, never who.
#[derive(Debug, Clone, Serialize)]
pub struct ForgetReport {
    /// The run's id (names the audit record).
    pub run_id: String,
    /// Always `forget`.
    pub command: &'static str,
    /// The Freshservice account (domain) whose tickets this record covers: `forget` goes
    /// through every domain of the dataset, one record each.
    pub domain: String,
    /// What the person is called in the data from now on.
    pub pseudonym: String,
    /// Counted only; nothing was changed.
    pub dry_run: bool,
    /// When the command started.
    pub started_at: DateTime<Utc>,
    /// When it finished.
    pub finished_at: DateTime<Utc>,
    /// Tickets the person requested (found by address).
    pub tickets_requested: u64,
    /// Whether a full name (two words or more) was known, from `--name` or their tickets, and erased from other texts too.
    pub name_erased: bool,
    /// Whether the address was erased before (then only what a sync wrote since changes).
    pub already_erased: bool,
    /// What the rewrite changed (or, on a dry run, would change).
    pub changed: Rewritten,
    /// Replaced data files deleted from the tables' history (kept with `history_days` > 0),
    /// which may have held the person.
    pub history_deleted: u64,
    /// Erasures of earlier runs whose rewrite was interrupted and is finished now.
    pub pending_finished: u64,
}

impl ForgetReport {
    /// The lines `forget` prints.
    pub fn summary(&self) -> String {
        let rows = self
            .changed
            .rows
            .iter()
            .map(|(table, n)| format!("{table} {n}"))
            .collect::<Vec<_>>()
            .join(", ");
        format!(
            "{verb} {pseudonym}: {tickets} tickets changed ({requested} requested by them), rows changed: {rows}; {docs} markdown documents {docs_verb}{name}",
            verb = if self.dry_run { "would erase" } else { "erased" },
            pseudonym = self.pseudonym,
            tickets = self.changed.tickets,
            requested = self.tickets_requested,
            docs = self.changed.documents,
            docs_verb = if self.dry_run { "to rewrite" } else { "rewritten" },
            name = if self.name_erased {
                ""
            } else {
                "; no name known (pass --name \"First Last\" to erase the full name from other texts too)"
            },
        )
    }
}

fn valid_email(email: &str) -> Result<String> {
    let e = email.trim();
    let ok = e.len() <= 320
        && e.split('@').count() == 2
        && !e.starts_with('@')
        && !e.ends_with('@')
        && !e.chars().any(char::is_whitespace);
    if ok {
        Ok(e.to_string())
    } else {
        Err(Error::Invalid(
            "--email is not an email address (one @, no spaces)".into(),
        ))
    }
}

/// Erases `request.email` from the dataset (see the module docs), domain by domain (each under
/// its own run lock), one report each. The erasure stays pending until the last domain is
/// rewritten: a `forget` killed between two domains leaves it pending, and the next sync of
/// each domain finishes it.
pub async fn forget(storage: &Storage, request: &Request) -> Result<Vec<ForgetReport>> {
    let email = valid_email(&request.email)?;
    if request.name.as_deref().is_some_and(|n| n.trim().is_empty()) {
        return Err(Error::Invalid("--name must not be empty".into()));
    }
    let domains = super::domains(storage).await?;
    let last = domains.len() - 1;
    let mut reports = Vec::with_capacity(domains.len());
    for (i, storage) in domains.iter().enumerate() {
        let report = super::under_lock(storage, "forget", request.lock_ttl, async |s| {
            forget_locked(storage, request, &email, s, i == last).await
        })
        .await?;
        reports.push(report);
    }
    Ok(reports)
}

async fn forget_locked(
    storage: &Storage,
    request: &Request,
    email: &str,
    session: Session<'_>,
    last: bool,
) -> Result<ForgetReport> {
    let Session {
        run_id,
        started_at,
        lock,
        mut index,
    } = session;
    let run_id = run_id.as_str();
    let (mut loaded, provisional) = if request.dry_run {
        erasures::load_for_dry_run(storage).await?
    } else {
        (erasures::load_for_update(storage).await?, false)
    };
    let pending_before = loaded
        .erasures
        .people()
        .iter()
        .filter(|p| p.pending)
        .count() as u64;
    let already_erased = loaded.erasures.by_email(email).is_some();

    let found = requested_by(storage, &index, email).await?;
    let name = request.name.clone().or_else(|| found.name());
    let ids: Vec<i64> = found.requester_ids.iter().copied().collect();
    let person = loaded
        .erasures
        .person(email, name.as_deref(), &ids, started_at);
    let name_erased = person.name.is_some();
    let pseudonym = if provisional {
        // The key is made by the first real erasure: its pseudonym is not known yet.
        "erased-????????".to_string()
    } else {
        person.pseudonym.clone()
    };
    loaded.erasures.add(person);
    if !request.dry_run {
        // From here on every sync erases them, even if this run is killed.
        erasures::store(storage, &loaded, started_at).await?;
    }
    let changed = rewrite_all(storage, &mut index, lock, run_id, request.dry_run, &loaded).await?;
    // Erasure wins over history: the files earlier commits replaced (kept for time travel with
    // `history_days`) may hold the person, so every replaced file goes now.
    let history_deleted = if request.dry_run {
        0
    } else {
        lock.verify().await?;
        crate::state::delta::vacuum(storage, None).await?
    };
    let report = ForgetReport {
        run_id: run_id.to_string(),
        command: "forget",
        domain: crate::state::delta::Lake::open(storage, crate::state::delta::At::Latest)
            .await?
            .domain()
            .to_string(),
        pseudonym,
        dry_run: request.dry_run,
        started_at,
        finished_at: crate::state::now(),
        tickets_requested: found.tickets,
        name_erased,
        already_erased,
        changed,
        history_deleted,
        pending_finished: pending_before,
    };
    if !request.dry_run {
        if last {
            finish(storage, &mut loaded, started_at).await?;
        }
        super::audit(storage, run_id, &report).await?;
    }
    Ok(report)
}

async fn rewrite_all(
    storage: &Storage,
    index: &mut Index,
    lock: &Lock,
    tag: &str,
    dry_run: bool,
    loaded: &Loaded,
) -> Result<Rewritten> {
    let erasures: &Erasures = &loaded.erasures;
    let mut done = rewrite(storage, index, lock, tag, dry_run, |p| {
        erasures.apply(
            &mut p.ticket,
            &mut p.conversations,
            &mut p.notes,
            &mut p.time_entries,
        )
    })
    .await?;
    // A reject's detail can quote a value the API sent (an address among them); a sync scrubs
    // the ones it writes, this the ones written before the erasure.
    super::rewrite_rejects(
        storage,
        index,
        lock,
        tag,
        dry_run,
        &mut done,
        |detail| match erasures.scrub(detail, None) {
            std::borrow::Cow::Owned(scrubbed) => {
                *detail = scrubbed;
                true
            }
            std::borrow::Cow::Borrowed(_) => false,
        },
    )
    .await?;
    Ok(done)
}

/// Clears every pending mark: the dataset holds none of the erased people any more.
async fn finish(storage: &Storage, loaded: &mut Loaded, at: DateTime<Utc>) -> Result<()> {
    for p in loaded.erasures.people_mut() {
        p.pending = false;
    }
    erasures::store(storage, loaded, at).await?;
    Ok(())
}

/// Loads the dataset's erasures for a sync, first finishing the rewrite of any erasure a killed
/// `forget` left pending. Returns them and what the rewrite changed.
pub async fn prepare_for_sync(
    storage: &Storage,
    index: &mut Index,
    lock: &Lock,
    run_id: &str,
) -> Result<(Erasures, Option<Rewritten>)> {
    let mut loaded = erasures::load(storage).await?;
    if !loaded.erasures.people().iter().any(|p| p.pending) {
        return Ok((loaded.erasures, None));
    }
    tracing::warn!(
        "an interrupted erasure is pending: rewriting the dataset without the erased people first"
    );
    let tag = format!("{run_id}-erasure");
    let changed = rewrite_all(storage, index, lock, &tag, false, &loaded).await?;
    finish(storage, &mut loaded, crate::state::now()).await?;
    Ok((loaded.erasures, Some(changed)))
}

/// Makes names a sync learned durable before the commit that writes the tickets they came
/// from: the erasure records are completed and stored pending, so a run killed after that
/// commit leaves the rewrite to the next run (which finishes pending erasures first) instead of
/// losing the name (the tickets it came from are unchanged then, and teach it no more).
/// Returns whether a record changed.
pub async fn record_names(
    storage: &Storage,
    learned: &[crate::normalize::privacy::LearnedName],
) -> Result<bool> {
    let mut loaded = erasures::load_for_update(storage).await?;
    let mut completed = false;
    for name in learned {
        completed |= loaded.erasures.complete(name);
    }
    if completed {
        erasures::store(storage, &loaded, crate::state::now()).await?;
    }
    Ok(completed)
}

/// Completes erasure records with names a sync learned (people forgotten before any ticket of
/// theirs was in the dataset) and rewrites the dataset without those names, under the run's
/// lock. Returns what the rewrite changed.
pub async fn complete_names(
    storage: &Storage,
    index: &mut Index,
    lock: &Lock,
    run_id: &str,
    learned: &[crate::normalize::privacy::LearnedName],
) -> Result<Rewritten> {
    let mut loaded = erasures::load_for_update(storage).await?;
    let mut completed = false;
    for name in learned {
        completed |= loaded.erasures.complete(name);
    }
    // The names were recorded (pending) when the tickets they came from were committed; a
    // record still pending is what is left to rewrite.
    if !completed && !loaded.erasures.people().iter().any(|p| p.pending) {
        return Ok(Rewritten::default());
    }
    let at = crate::state::now();
    // Pending first: a run killed during the rewrite leaves it to the next one.
    if completed {
        erasures::store(storage, &loaded, at).await?;
    }
    let tag = format!("{run_id}-names");
    let changed = rewrite_all(storage, index, lock, &tag, false, &loaded).await?;
    finish(storage, &mut loaded, at).await?;
    Ok(changed)
}

/// Who an address is in the data.
#[derive(Debug, Default)]
struct Found {
    tickets: u64,
    names: BTreeMap<String, u64>,
    requester_ids: BTreeSet<i64>,
}

impl Found {
    /// The name the person's tickets give most often.
    fn name(&self) -> Option<String> {
        self.names
            .iter()
            .max_by_key(|(name, n)| (**n, std::cmp::Reverse((*name).clone())))
            .map(|(name, _)| name.clone())
    }
}

async fn requested_by(storage: &Storage, index: &Index, email: &str) -> Result<Found> {
    let target = email.to_lowercase();
    let mut found = Found::default();
    let lake = crate::state::delta::Lake::open(storage, crate::state::delta::At::Committed).await?;
    for (account, year) in partitions(index) {
        for t in read_tickets(storage, &lake, &account, year).await? {
            if t.requester_email
                .as_deref()
                .map(|e| e.trim().to_lowercase())
                != Some(target.clone())
            {
                continue;
            }
            found.tickets += 1;
            if let Some(name) = t.requester_name.as_deref().filter(|n| !n.trim().is_empty()) {
                *found.names.entry(name.trim().to_string()).or_default() += 1;
            }
            found.requester_ids.extend(t.requester_id);
        }
    }
    Ok(found)
}
