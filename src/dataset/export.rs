//! `ticketsync export-person`: everything the dataset holds about one person, as one JSON
//! document (a subject-access request).
//!
//! - every ticket they requested, whole: the Codex ticket shape (as `query` serves it), the raw
//!   rows of every table, and its time entries;
//! - of other tickets, the conversations they wrote or received and the notes that mention
//!   their address or name (with the ticket's own row for context).
//!
//! Read-only: no lock is taken. After `forget`, the address is nowhere in the data, so the
//! export finds nothing.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{partitions, read_partition, read_tickets, Error, Result};
use crate::normalize::{ConversationRow, NoteRow, TicketRow, TimeEntryRow};
use crate::query::TicketDoc;
use crate::state;
use crate::state::delta::{At, Lake};
use crate::storage::Storage;

/// The export document.
#[derive(Debug, Serialize)]
pub struct Export {
    /// The address asked for.
    pub email: String,
    /// When the export was made.
    pub generated_at: DateTime<Utc>,
    /// The dataset location, as displayed.
    pub data: String,
    /// How many tickets, messages and notes were found.
    pub counts: Counts,
    /// The tickets that concern the person, by `closed_at`, then ticket id.
    pub tickets: Vec<TicketExport>,
}

impl Export {
    /// One document of two domains' exports: `other`'s tickets after these, counts added.
    pub fn merged(mut self, other: Export) -> Export {
        self.counts.tickets_requested += other.counts.tickets_requested;
        self.counts.tickets_other += other.counts.tickets_other;
        self.counts.conversations += other.counts.conversations;
        self.counts.notes += other.counts.notes;
        self.counts.time_entries += other.counts.time_entries;
        self.tickets.extend(other.tickets);
        self
    }
}

/// What an export found.
#[derive(Debug, Default, Serialize)]
pub struct Counts {
    /// Tickets the person requested (exported whole).
    pub tickets_requested: u64,
    /// Other tickets that concern them (a message they wrote or received, a note naming them).
    pub tickets_other: u64,
    /// Conversations exported.
    pub conversations: u64,
    /// Notes exported.
    pub notes: u64,
    /// Time entries exported (of requested tickets only).
    pub time_entries: u64,
}

/// One ticket of the export.
#[derive(Debug, Serialize)]
pub struct TicketExport {
    /// The ticket's account partition.
    pub account: String,
    /// The ticket's year partition.
    pub year: i32,
    /// Why it is here: `requester`, `wrote`, `received`, `mentioned`.
    pub relation: Vec<&'static str>,
    /// The Codex shape, with the conversations and notes that concern the person.
    pub codex: TicketDoc,
    /// The rows behind `codex`, plus the time entries of a ticket the person requested.
    pub rows: Rows,
}

/// The raw rows (every column of the tables).
#[derive(Debug, Serialize)]
pub struct Rows {
    /// The ticket's row, for context even when only a message concerns the person.
    pub ticket: TicketRow,
    /// Every conversation of a requested ticket; otherwise the ones they wrote or received.
    pub conversations: Vec<ConversationRow>,
    /// Every note of a requested ticket; otherwise the ones they wrote or that mention them.
    pub notes: Vec<NoteRow>,
    /// The time entries of a requested ticket; empty otherwise.
    pub time_entries: Vec<TimeEntryRow>,
}

/// Builds the export of `email`.
pub async fn export_person(storage: &Storage, email: &str) -> Result<Export> {
    let target = email.trim().to_lowercase();
    if !target.contains('@') || target.chars().any(char::is_whitespace) {
        return Err(Error::Invalid(
            "--email is not an email address (one @, no spaces)".into(),
        ));
    }
    let index = state::load_index(storage).await?;
    let is_them = |e: Option<&str>| e.is_some_and(|e| e.trim().to_lowercase() == target);

    // Pass 1: the names their own tickets give them (to find notes that mention them). One
    // partition in memory at a time, in both passes.
    let mut names: Vec<String> = Vec::new();
    let lake = Lake::open(storage, At::Committed).await?;
    for (account, year) in partitions(&index) {
        for t in read_tickets(storage, &lake, &account, year).await? {
            let name = t.requester_name.as_deref().map(|n| n.trim().to_lowercase());
            if let Some(name) = name.filter(|n| n.len() >= 3) {
                if is_them(t.requester_email.as_deref()) && !names.contains(&name) {
                    names.push(name);
                }
            }
        }
    }
    let mentions = |text: &str| {
        let lower = text.to_lowercase();
        lower.contains(&target) || names.iter().any(|n| lower.contains(n.as_str()))
    };

    let mut counts = Counts::default();
    let mut out = Vec::new();
    let mut tickets = Vec::new();
    for (account, year) in partitions(&index) {
        tickets.extend(
            read_partition(storage, &lake, &index, &account, year)
                .await?
                .into_iter()
                .filter(|p| {
                    is_them(p.ticket.requester_email.as_deref())
                        || p.conversations.iter().any(|c| {
                            is_them(c.from_email.as_deref())
                                || c.to_emails.iter().any(|e| is_them(Some(e)))
                        })
                        || p.notes
                            .iter()
                            .any(|n| mentions(&n.body) || is_them(n.from_email.as_deref()))
                }),
        );
    }
    for p in tickets {
        let requester = is_them(p.ticket.requester_email.as_deref());
        let mut relation = Vec::new();
        if requester {
            relation.push("requester");
        }
        let conversations: Vec<ConversationRow> = p
            .conversations
            .into_iter()
            .filter(|c| {
                let wrote = is_them(c.from_email.as_deref());
                let received = c.to_emails.iter().any(|e| is_them(Some(e)));
                if wrote && !relation.contains(&"wrote") {
                    relation.push("wrote");
                }
                if received && !relation.contains(&"received") {
                    relation.push("received");
                }
                requester || wrote || received
            })
            .collect();
        let notes: Vec<NoteRow> = p
            .notes
            .into_iter()
            .filter(|n| {
                let mentioned = mentions(&n.body) || is_them(n.from_email.as_deref());
                if mentioned && !relation.contains(&"mentioned") {
                    relation.push("mentioned");
                }
                requester || mentioned
            })
            .collect();
        if relation.is_empty() {
            continue;
        }
        let time_entries = if requester {
            p.time_entries
        } else {
            Vec::new()
        };
        if requester {
            counts.tickets_requested += 1;
        } else {
            counts.tickets_other += 1;
        }
        counts.conversations += conversations.len() as u64;
        counts.notes += notes.len() as u64;
        counts.time_entries += time_entries.len() as u64;
        let codex = TicketDoc::of_rows(
            lake.domain(),
            &p.ticket,
            &conversations.iter().collect::<Vec<_>>(),
            &notes.iter().collect::<Vec<_>>(),
        );
        out.push(TicketExport {
            account: p.account,
            year: p.year,
            relation,
            codex,
            rows: Rows {
                ticket: p.ticket,
                conversations,
                notes,
                time_entries,
            },
        });
    }
    out.sort_by_key(|t| (t.rows.ticket.closed_at, t.rows.ticket.ticket_id));
    Ok(Export {
        email: email.trim().to_string(),
        generated_at: Utc::now(),
        data: storage.display().to_string(),
        counts,
        tickets: out,
    })
}
