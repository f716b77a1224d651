//! The KnowledgeTree markdown document of one ticket, in the format of the old system (the seed's
//! "Usage in KnowledgeTree"): title, `## Ticket Information` bullets, `## Description`,
//! `## Conversation History` with `### Message N - → Incoming` / `← Outgoing` blocks and
//! `## Internal Notes` with `### Note N` blocks, each block closed by `---`.
//!
//! Sections without content are left out (a ticket without notes has no `## Internal Notes`).
//! User text never breaks the structure: titles and labels are single-line, bodies have their
//! heading and rule lines escaped (see [`super::text::block`]).

use std::fmt::Write;

use chrono::{DateTime, SecondsFormat, Utc};

use super::hours::format_hours;
use super::text::{block, inline};
use super::{ConversationRow, NoteRow, TicketRow};

fn ts(t: Option<DateTime<Utc>>) -> String {
    t.map_or_else(
        || "unknown".to_string(),
        |t| t.to_rfc3339_opts(SecondsFormat::Secs, true),
    )
}

fn body_or(text: &str, empty: &str) -> String {
    if text.trim().is_empty() {
        empty.to_string()
    } else {
        block(text)
    }
}

/// Renders the document. Messages are the public conversations oldest first; notes the private
/// ones; `from_email` of a note is its author agent's email.
pub fn render(ticket: &TicketRow, conversations: &[ConversationRow], notes: &[NoteRow]) -> String {
    let mut md = String::with_capacity(1024);
    // `write!` into a String cannot fail.
    let subject = inline(ticket.subject.as_deref().unwrap_or(""));
    let subject = if subject.is_empty() {
        "(no subject)".to_string()
    } else {
        subject
    };
    let _ = writeln!(md, "# Ticket #{}: {}", ticket.ticket_number, subject);
    md.push('\n');
    md.push_str("## Ticket Information\n");
    let requester = match (&ticket.requester_name, &ticket.requester_email) {
        (Some(name), Some(email)) => format!("{} ({})", inline(name), inline(email)),
        (Some(name), None) => inline(name),
        (None, Some(email)) => inline(email),
        (None, None) => "Unknown".to_string(),
    };
    let _ = writeln!(md, "- **Requester:** {requester}");
    let _ = writeln!(md, "- **Status:** {}", ticket.status);
    let _ = writeln!(
        md,
        "- **Priority:** {}",
        ticket.priority.as_deref().unwrap_or("Unknown")
    );
    let _ = writeln!(md, "- **Created:** {}", ts(ticket.created_at));
    let _ = writeln!(
        md,
        "- **Hours Spent:** {} hours",
        format_hours(ticket.total_minutes)
    );
    md.push('\n');
    md.push_str("## Description\n");
    let _ = writeln!(
        md,
        "{}",
        body_or(
            ticket.description_text.as_deref().unwrap_or(""),
            "(no description)"
        )
    );

    if !conversations.is_empty() {
        md.push_str("\n## Conversation History\n");
        for (i, c) in conversations.iter().enumerate() {
            let direction = if c.incoming {
                "→ Incoming"
            } else {
                "← Outgoing"
            };
            let _ = writeln!(md, "\n### Message {} - {direction}", i + 1);
            let _ = writeln!(
                md,
                "**From:** {}",
                inline(c.from_email.as_deref().unwrap_or("unknown"))
            );
            let _ = writeln!(md, "**Date:** {}", ts(c.created_at));
            let _ = writeln!(md, "\n{}\n\n---", body_or(&c.body, "(empty message)"));
        }
    }

    if !notes.is_empty() {
        md.push_str("\n## Internal Notes\n");
        for (i, n) in notes.iter().enumerate() {
            let _ = writeln!(md, "\n### Note {}", i + 1);
            let _ = writeln!(
                md,
                "**From:** {}",
                inline(n.from_email.as_deref().unwrap_or("unknown"))
            );
            let _ = writeln!(md, "**Date:** {}", ts(n.created_at));
            let _ = writeln!(md, "\n{}\n\n---", body_or(&n.body, "(empty note)"));
        }
    }
    md
}
