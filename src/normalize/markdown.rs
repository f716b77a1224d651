//! The KnowledgeTree markdown document of one ticket, in the format of the old system (the seed's
//! "Usage in KnowledgeTree"): title, `## Ticket Information` bullets, `## Description`,
//! `## Conversation History` with `### Message N - → Incoming` / `← Outgoing` blocks and
//! `## Internal Notes` with `### Note N` blocks, each block closed by `---`.
//!
//! Sections without content are left out (a ticket without notes has no `## Internal Notes`).
//! User text never breaks the structure: titles and labels are single-line (see
//! [`super::text::inline`]); the title's subject is otherwise written as it is, as
//! KnowledgeTree's own sync writes it (`# Ticket #{id}: {subject}`: its `*`, `_`, `[` stay, a
//! reader renders them as inline markup within the one heading). Bodies have their heading,
//! rule, code fence and HTML block lines escaped (see [`super::text::block`]): a CommonMark
//! reader finds exactly the headings written here.

use std::fmt::Write;

use chrono::{DateTime, SecondsFormat, Utc};

use super::text::{block, inline};
use super::{ConversationRow, NoteRow, TicketRow};

fn ts(t: Option<DateTime<Utc>>) -> String {
    t.map_or_else(
        || "unknown".to_string(),
        |t| t.to_rfc3339_opts(SecondsFormat::Secs, true),
    )
}

/// A ticket date in the format of the Codex JSON of `ticketsync query` (`iso_text` there:
/// seconds, fractions only when there are some, `Z`).
fn iso(t: Option<DateTime<Utc>>) -> String {
    t.map_or_else(
        || "unknown".to_string(),
        |t| t.to_rfc3339_opts(SecondsFormat::AutoSi, true),
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
    // The dates as `ticketsync query` prints these keys in the Codex JSON (KnowledgeTree's sync
    // writes that JSON's strings verbatim); hours with exactly two decimals (`{:.2f}` there).
    let _ = writeln!(md, "- **Created:** {}", iso(ticket.created_at));
    let _ = writeln!(
        md,
        "- **Last Updated:** {}",
        iso(Some(ticket.last_updated_at))
    );
    let _ = writeln!(md, "- **Closed:** {}", iso(Some(ticket.closed_at)));
    let _ = writeln!(
        md,
        "- **Hours Spent:** {:.2} hours",
        ticket.total_hours_spent
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

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use proptest::collection::vec;
    use proptest::prelude::*;
    use pulldown_cmark::{Event, Parser, Tag, TagEnd};

    use super::*;

    fn ticket(subject: &str, description: &str) -> TicketRow {
        let at = Utc.with_ymd_and_hms(2025, 1, 10, 9, 0, 0).unwrap();
        TicketRow {
            ticket_id: 7,
            company_account_number: "482913".into(),
            ticket_number: "7".into(),
            subject: Some(subject.into()),
            description: None,
            description_text: Some(description.into()),
            status: "Closed".into(),
            priority: Some("High".into()),
            requester_email: Some("user@example.test".into()),
            requester_name: Some("User".into()),
            created_at: Some(at),
            last_updated_at: at,
            closed_at: at,
            total_hours_spent: 0.25,
            billable_hours: 0.25,
            total_minutes: 15,
            billable_minutes: 15,
            hours_defaulted: true,
            department_id: Some(1),
            requester_id: None,
            responder_id: None,
            group_id: None,
            ticket_type: None,
            source: None,
            conversation_count: 0,
            note_count: 0,
            time_entry_count: 0,
            synced_at: at,
            details: Default::default(),
        }
    }

    fn message(body: &str, incoming: bool) -> ConversationRow {
        ConversationRow {
            ticket_id: 7,
            conversation_id: 1,
            body: body.into(),
            body_html: None,
            from_email: Some("a@example.test".into()),
            to_emails: vec![],
            created_at: None,
            updated_at: None,
            incoming,
            private: false,
            user_id: None,
            support_email: None,
            attachments: None,
        }
    }

    fn note(body: &str) -> NoteRow {
        NoteRow {
            ticket_id: 7,
            note_id: 2,
            body: body.into(),
            body_html: None,
            from_email: None,
            created_at: None,
            user_id: None,
            to_emails: Vec::new(),
            updated_at: None,
            incoming: false,
            support_email: None,
        }
    }

    /// The headings a CommonMark reader finds: level and text, the title's text as the line
    /// holds it (the subject's inline markup renders as markup, by design).
    fn headings(md: &str) -> Vec<(usize, String)> {
        let mut found = parsed_headings(md);
        if let Some(first) = found.first_mut() {
            if first.0 == 1 {
                first.1 = md
                    .lines()
                    .next()
                    .unwrap_or("")
                    .trim_start_matches("# ")
                    .to_string();
            }
        }
        found
    }

    fn parsed_headings(md: &str) -> Vec<(usize, String)> {
        let mut found = Vec::new();
        let mut current: Option<(usize, String)> = None;
        for event in Parser::new(md) {
            match event {
                Event::Start(Tag::Heading { level, .. }) => {
                    current = Some((level as usize, String::new()));
                }
                Event::End(TagEnd::Heading(_)) => found.extend(current.take()),
                Event::Text(t) | Event::Code(t) | Event::InlineHtml(t) | Event::Html(t) => {
                    if let Some((_, text)) = current.as_mut() {
                        text.push_str(&t);
                    }
                }
                Event::SoftBreak | Event::HardBreak => {
                    if let Some((_, text)) = current.as_mut() {
                        text.push('\n');
                    }
                }
                _ => {}
            }
        }
        found
    }

    /// The headings `render` writes for these inputs.
    fn expected(
        subject: &str,
        messages: &[ConversationRow],
        notes: &[NoteRow],
    ) -> Vec<(usize, String)> {
        let subject = inline(subject);
        let subject = if subject.is_empty() {
            "(no subject)".to_string()
        } else {
            subject
        };
        let mut h = vec![
            (1, format!("Ticket #7: {subject}")),
            (2, "Ticket Information".to_string()),
            (2, "Description".to_string()),
        ];
        if !messages.is_empty() {
            h.push((2, "Conversation History".to_string()));
            for (i, m) in messages.iter().enumerate() {
                let direction = if m.incoming {
                    "→ Incoming"
                } else {
                    "← Outgoing"
                };
                h.push((3, format!("Message {} - {direction}", i + 1)));
            }
        }
        if !notes.is_empty() {
            h.push((2, "Internal Notes".to_string()));
            for i in 0..notes.len() {
                h.push((3, format!("Note {}", i + 1)));
            }
        }
        h
    }

    /// KnowledgeTree's `sync_tickets.py` (skelhammer/hivematrix-knowledgetree at f82fcde) writes
    /// `# Ticket #{ticket_id}: {subject}` with the subject as it is; before, `*`, `_`, `[`, `]`
    /// and `<` were backslash-escaped, and 8 of 96 documents differed from KnowledgeTree's.
    #[test]
    fn the_title_is_the_subject_as_knowledgetree_writes_it() {
        for subject in [
            "*URGENT* [VIP] printer_2 down",
            "Re: [EXT] <no reply> ~ 50% & more #",
            "`code` and \\backslash",
        ] {
            let md = render(&ticket(subject, "x"), &[], &[]);
            assert_eq!(
                md.lines().next(),
                Some(format!("# Ticket #7: {subject}").as_str())
            );
        }
        // Only what would break the document's structure changes: a line break.
        let md = render(&ticket("two\nlines\r\n# not a heading", "x"), &[], &[]);
        assert_eq!(
            md.lines().next(),
            Some("# Ticket #7: two lines # not a heading")
        );
        assert_eq!(headings(&md).iter().filter(|h| h.0 == 1).count(), 1);
    }

    /// The "Ticket Information" block exactly as KnowledgeTree's `sync_tickets.py` builds it from
    /// the Codex JSON of `ticketsync query` (its f-string, with that JSON's strings and
    /// `{total_hours_spent:.2f}`): same lines, same order, two decimals.
    #[test]
    fn ticket_information_matches_knowledgetree_sync() {
        let mut t = ticket("Printer down", "It jams.");
        t.created_at = Some(Utc.with_ymd_and_hms(2025, 1, 10, 9, 0, 0).unwrap());
        t.last_updated_at = Utc.with_ymd_and_hms(2025, 1, 15, 16, 30, 5).unwrap();
        t.closed_at = Utc.with_ymd_and_hms(2025, 1, 15, 16, 30, 0).unwrap();
        for (hours, printed) in [
            (3.0, "3.00"),
            (1.5, "1.50"),
            (0.25, "0.25"),
            (80.0 / 60.0, "1.33"),
        ] {
            t.total_hours_spent = hours;
            // sync_tickets.py's f-string with the Codex JSON's values.
            let knowledgetree = format!(
                "# Ticket #7: Printer down

## Ticket Information
- **Requester:** User (user@example.test)
- **Status:** Closed
- **Priority:** High
- **Created:** 2025-01-10T09:00:00Z
- **Last Updated:** 2025-01-15T16:30:05Z
- **Closed:** 2025-01-15T16:30:00Z
- **Hours Spent:** {printed} hours

## Description
It jams.

"
            );
            let md = render(&t, &[], &[]);
            let head = &md[..md.find("## Description\n").unwrap()];
            assert!(knowledgetree.starts_with(head), "{md}");
            assert!(head.contains("## Ticket Information\n"), "{md}");
            assert_eq!(md, format!("{head}## Description\nIt jams.\n"));
        }
    }

    #[test]
    fn fences_and_comments_in_bodies_do_not_swallow_headings() {
        let t = ticket(
            "Fence *and* `code` [x](y) <b> &amp; #",
            "Log:\n```\nerror\n   ~~~ \n<!-- start",
        );
        let messages = [
            message("<script>\nalert(1)", true),
            message("> <!--\n> - ```\n<?php\n<!DOCTYPE\n<![CDATA[\n<pre>", false),
        ];
        let notes = [note("text\n===\n  ## h\n> # quoted\n- # listed\n1) ---")];
        let md = render(&t, &messages, &notes);
        assert_eq!(
            headings(&md),
            expected("Fence *and* `code` [x](y) <b> &amp; #", &messages, &notes),
            "{md}"
        );
    }

    fn body_line() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            "[a-zA-Z0-9 äöü日本🎉.,:;!?'\"()/|]{1,8}",
            Just("```".to_string()),
            Just("~~~".to_string()),
            Just("````rust".to_string()),
            Just("<!--".to_string()),
            Just("-->".to_string()),
            Just("<?".to_string()),
            Just("?>".to_string()),
            Just("<!DOCTYPE".to_string()),
            Just("<![CDATA[".to_string()),
            Just("]]>".to_string()),
            Just("<div>".to_string()),
            Just("</div>".to_string()),
            Just("<pre>".to_string()),
            Just("</pre>".to_string()),
            Just("<script>".to_string()),
            Just("<STYLE".to_string()),
            Just("<textarea>".to_string()),
            Just("<table>".to_string()),
            Just("<b>".to_string()),
            "#{1,7}".prop_map(String::from),
            Just(" ".to_string()),
            Just("   ".to_string()),
            Just("    ".to_string()),
            Just("\t".to_string()),
            "[=\\-*_]{1,4}".prop_map(String::from),
            Just("> ".to_string()),
            Just(">".to_string()),
            Just("- ".to_string()),
            Just("+ ".to_string()),
            Just("* ".to_string()),
            Just("1. ".to_string()),
            Just("2) ".to_string()),
            Just("`".to_string()),
            Just("\\".to_string()),
            Just("[a]: /url".to_string()),
            Just("&amp;".to_string()),
            Just("<".to_string()),
            Just("\r".to_string()),
        ];
        vec(piece, 0..5).prop_map(|p| p.concat())
    }

    fn body() -> impl Strategy<Value = String> {
        vec(body_line(), 0..8).prop_map(|lines| lines.join("\n"))
    }

    fn subject() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            "[a-zA-Z0-9 äöü日本🎉.,:;!?'\"()/|]{1,6}",
            "[#*_`\\[\\]<>&\\\\~!]{1,3}",
            Just("&amp;".to_string()),
            Just("&#35;".to_string()),
            Just("<b>".to_string()),
            Just("<http://x.example>".to_string()),
            Just("[a](b)".to_string()),
            Just("\n".to_string()),
            Just("\u{0}".to_string()),
            Just("\u{1b}".to_string()),
        ];
        vec(piece, 0..6).prop_map(|p| p.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 600, ..ProptestConfig::default() })]

        #[test]
        fn a_reader_finds_exactly_the_template_headings(
            subject in subject(),
            description in body(),
            messages in vec((body(), any::<bool>()), 0..3),
            notes in vec(body(), 0..3),
        ) {
            let t = ticket(&subject, &description);
            let messages: Vec<ConversationRow> =
                messages.iter().map(|(b, incoming)| message(b, *incoming)).collect();
            let notes: Vec<NoteRow> = notes.iter().map(|b| note(b)).collect();
            let md = render(&t, &messages, &notes);
            prop_assert_eq!(headings(&md), expected(&subject, &messages, &notes), "{}", md);
        }
    }
}
