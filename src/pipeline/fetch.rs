//! The fetch workers: each queued ticket's conversations and time entries (and, when the
//! department list did not have its department, that department), normalized on the blocking
//! pool. As many tickets in flight as the budget can use; the limiter, not the workers, sets the
//! pace.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures::FutureExt;
use tokio::sync::mpsc;

use super::reference::{Department, Reference};
use crate::error::{Class, Classify};
use crate::normalize::accounts::Check;
use crate::normalize::{self, AccountMap, Outcome, RejectReason, Rejection};
use crate::source::{self, wire, Source};

/// What a fetch worker hands back for one ticket.
pub(crate) enum Fetched {
    Done {
        updated_at: Option<DateTime<Utc>>,
        outcome: Outcome,
    },
    /// This ticket could not be fetched; the run goes on and fails at the end.
    Failed { ticket_id: i64, error: Failure },
    /// The credentials stopped working: the run stops.
    Fatal(source::Error),
}

/// Why one ticket could not be fetched (the run goes on without it and fails at the end).
#[derive(Debug, thiserror::Error)]
pub(crate) enum Failure {
    #[error(transparent)]
    Source(#[from] source::Error),
    /// Its department's record does not decode: its rows stay as they are.
    #[error("its department {department} does not decode ({detail}); its rows stay as they are")]
    Department { department: i64, detail: String },
    /// A child list answered 404 while the ticket itself exists: a proxy that lost a path, not a
    /// deletion.
    #[error("its conversations or time entries answered 404 but the ticket exists; not taken as deleted")]
    ChildNotFound,
    /// The listing showed it, then the ticket and its child lists answered 404.
    #[error("the listing showed it, then GET /tickets/{{id}} and its conversations or time entries answered 404; not taken as deleted (the deleted view decides)")]
    Vanished,
    /// A bug: fetching or normalizing it panicked.
    #[error("{what} it panicked (a bug; please report it)")]
    Panicked { what: &'static str },
}

/// Runs the fetch workers until `queue` closes: as many tickets in flight as the budget can use
/// given the observed latency, at most `max_concurrency`. Results go to `tx` in completion
/// order; the commit sorts rows, so the dataset does not depend on that order. `started`
/// counts the tickets a worker has taken (their calls are at the limiter or on the wire; the
/// others still wait in `queue`).
pub(crate) async fn fetch_all(
    source: Arc<Source>,
    mut queue: mpsc::Receiver<wire::Ticket>,
    reference: Arc<Reference>,
    max_concurrency: usize,
    tx: mpsc::Sender<Fetched>,
    started: Arc<AtomicU64>,
) {
    let mut running = tokio::task::JoinSet::new();
    let spawn = |running: &mut tokio::task::JoinSet<Fetched>, ticket: wire::Ticket| {
        started.fetch_add(1, Ordering::Relaxed);
        running.spawn(guarded(source.clone(), ticket, reference.clone()));
    };
    let mut queue_open = true;
    loop {
        let cap = concurrency_for(&source, max_concurrency);
        while queue_open && running.len() < cap {
            match queue.try_recv() {
                Ok(ticket) => spawn(&mut running, ticket),
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => queue_open = false,
            }
        }
        let fetched = if running.is_empty() {
            if !queue_open {
                break;
            }
            // Idle: wait for the dispatcher to queue more.
            match queue.recv().await {
                Some(ticket) => {
                    spawn(&mut running, ticket);
                    continue;
                }
                None => break,
            }
        } else {
            // What races: a worker finishing and (while under the cap) new work arriving.
            tokio::select! {
                done = running.join_next() => match done {
                    Some(Ok(fetched)) => fetched,
                    // Only an abort gets here (panics are caught per ticket, with its id).
                    Some(Err(_)) | None => continue,
                },
                ticket = queue.recv(), if queue_open && running.len() < cap => {
                    match ticket {
                        Some(ticket) => spawn(&mut running, ticket),
                        None => queue_open = false,
                    }
                    continue;
                }
            }
        };
        if tx.send(fetched).await.is_err() {
            running.abort_all();
            break; // the dispatcher stopped (an error, a timeout); stop fetching
        }
    }
}

/// Tickets to keep in flight: each ticket makes two requests at once, so tickets =
/// rate × latency / 2, times 4 for headroom (normalization time, multi-page tickets, latency
/// jitter), plus 4. Over-provisioning costs nothing: the limiter, not the workers, sets the pace.
/// Never more than `max` (the job's `concurrency`).
fn concurrency_for(source: &Source, max: usize) -> usize {
    let client = source.client();
    let latency = client.latency().map_or(0.5, |l| l.as_secs_f64());
    let wanted = (client.target_rate_per_sec() * latency * 4.0 / 2.0).ceil() as usize + 4;
    wanted.clamp(1, max.max(1))
}

/// [`fetch_one`], with a panic turned into a failed ticket that names the ticket.
async fn guarded(source: Arc<Source>, ticket: wire::Ticket, reference: Arc<Reference>) -> Fetched {
    let id = ticket.id;
    match std::panic::AssertUnwindSafe(fetch_one(source, ticket, reference))
        .catch_unwind()
        .await
    {
        Ok(fetched) => fetched,
        Err(_) => Fetched::Failed {
            ticket_id: id,
            error: Failure::Panicked { what: "fetching" },
        },
    }
}

/// Fetches one ticket's conversations and time entries and normalizes it (on the blocking pool:
/// HTML rendering of large bodies is CPU work).
async fn fetch_one(
    source: Arc<Source>,
    mut ticket: wire::Ticket,
    reference: Arc<Reference>,
) -> Fetched {
    let id = ticket.id;
    let failed = |e: source::Error| {
        if e.class() == Class::Config {
            Fetched::Fatal(e)
        } else {
            Fetched::Failed {
                ticket_id: id,
                error: Failure::Source(e),
            }
        }
    };
    let seen_at = reference.settings.synced_at;
    let reject = |ticket: &wire::Ticket, reason, detail: String| Fetched::Done {
        updated_at: ticket.updated_at,
        outcome: Outcome::Rejected(Rejection::of(ticket, reason, &detail, seen_at)),
    };
    // A department the list did not have: look it up before deciding anything. Only a 404 is
    // evidence that it is gone.
    let mut accounts: Option<AccountMap> = None;
    if let Check::NotListed(department) = reference.accounts.check_ticket(&ticket) {
        match reference.department(&source, department).await {
            Ok(Department::Found(d)) => {
                let map = reference.accounts_with(&d);
                if let Check::Unplaced(u) = map.check_ticket(&ticket) {
                    return reject(&ticket, u.reason, u.detail);
                }
                accounts = Some(map);
            }
            Ok(Department::Missing) => {
                return reject(
                    &ticket,
                    RejectReason::UnknownDepartment,
                    format!("department {department} does not exist (GET /departments/{department} answered 404)"),
                )
            }
            Ok(Department::Unreadable(detail)) => {
                return Fetched::Failed {
                    ticket_id: id,
                    error: Failure::Department { department, detail },
                }
            }
            Err(e) => return failed(e),
        }
    }
    let (conversations, time_entries, requester) = tokio::join!(
        source.conversations(id),
        source.time_entries(id),
        reference.missing_requester(&source, &ticket)
    );
    let requester = match requester {
        Ok(embed) => embed,
        Err(e) => return failed(e),
    };
    if requester.is_some() {
        ticket.requester = requester;
    }
    let (conversations, time_entries) = match (conversations, time_entries) {
        (Ok(c), Ok(t)) => (c, t),
        (Err(source::Error::NotFound { .. }), _) | (_, Err(source::Error::NotFound { .. })) => {
            // A 404 of a child list is evidence only when the ticket itself answers 404 too (a
            // proxy that does not know a path answers 404 as well).
            // Both 404 still contradicts the listing that just showed the ticket (a proxy that
            // lost `/tickets/{id}…` answers exactly so): the ticket fails and keeps its rows; a
            // real deletion shows in the deleted view, which removes it.
            return match source.ticket(id).await {
                Ok(None) => Fetched::Failed {
                    ticket_id: id,
                    error: Failure::Vanished,
                },
                Ok(Some(_)) => Fetched::Failed {
                    ticket_id: id,
                    error: Failure::ChildNotFound,
                },
                Err(e) => failed(e),
            };
        }
        (Err(e), _) | (_, Err(e)) => return failed(e),
    };
    let updated_at = ticket.updated_at;
    let outcome = tokio::task::spawn_blocking(move || {
        let ctx = match &accounts {
            Some(map) => reference.context_with(map),
            None => reference.context(),
        };
        normalize::normalize_ticket(&ticket, &conversations, &time_entries, &ctx)
    })
    .await;
    match outcome {
        Ok(outcome) => Fetched::Done {
            updated_at,
            outcome,
        },
        Err(_) => Fetched::Failed {
            ticket_id: id,
            error: Failure::Panicked {
                what: "normalizing",
            },
        },
    }
}
