//! Customer data under control before anything is written: [`redact`] replaces secrets
//! (credentials, keys, tokens, card numbers) in the free texts, [`erase`] replaces the people
//! who asked to be forgotten. Both are pure and run on a ticket's rows before its markdown is
//! rendered, so every table and the document see the same text.

pub mod erase;
pub mod redact;

use std::borrow::Cow;
use std::sync::Arc;

pub use erase::{ErasedPerson, Erasures, LearnedName};
pub use redact::{Counts, RedactSpec, Redactor};

use super::{ConversationRow, NoteRow, TicketRow, TimeEntryRow};

/// What a run applies to every ticket it writes.
#[derive(Debug, Clone)]
pub struct Privacy {
    /// Replaces secrets in the free texts (the job's `[redact]` settings).
    pub redactor: Arc<Redactor>,
    /// The dataset's erased people (`_state/erasures.json`), replaced by their pseudonyms.
    pub erasures: Arc<Erasures>,
}

impl Privacy {
    /// Nothing redacted, no one erased (tests, and rewriting rows already written).
    pub fn none() -> Privacy {
        Privacy {
            redactor: Arc::new(Redactor::disabled()),
            erasures: Arc::new(Erasures::none()),
        }
    }
}

impl Privacy {
    /// A reject's detail (it can quote a value the API sent): erased people and secrets out,
    /// like every other text that is written.
    pub fn apply_to_detail(&self, detail: &mut String, counts: &mut Counts) {
        if let Cow::Owned(scrubbed) = self.erasures.scrub(detail, None) {
            *detail = scrubbed;
        }
        self.redactor.redact_in_place(detail, counts);
    }
}

/// What [`Privacy::apply`] did to one ticket.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PrivacyStats {
    /// Secrets replaced, by rule.
    pub redactions: Counts,
    /// An erased person was removed from the ticket.
    pub erased: bool,
    /// The ticket gave an erased person the name their record lacked.
    pub learned: Option<LearnedName>,
}

impl Privacy {
    /// Erases, then redacts, one ticket's rows in place.
    pub fn apply(
        &self,
        ticket: &mut TicketRow,
        conversations: &mut [ConversationRow],
        notes: &mut [NoteRow],
        entries: &mut [TimeEntryRow],
    ) -> PrivacyStats {
        let learned = self.erasures.learn(ticket);
        let erased = self.erasures.apply(ticket, conversations, notes, entries);
        let mut redactions = Counts::new();
        if !self.redactor.is_disabled() {
            let r = &self.redactor;
            let c = &mut redactions;
            // The HTML twin of a text holds the same secrets: they are counted once, in the text.
            let twin = &mut Counts::new();
            for text in [&mut ticket.subject, &mut ticket.description_text]
                .into_iter()
                .flatten()
            {
                r.redact_in_place(text, c);
            }
            if let Some(html) = &mut ticket.description {
                r.redact_in_place(html, twin);
            }
            for m in conversations.iter_mut() {
                r.redact_in_place(&mut m.body, c);
                if let Some(html) = &mut m.body_html {
                    r.redact_in_place(html, twin);
                }
            }
            for n in notes.iter_mut() {
                r.redact_in_place(&mut n.body, c);
                if let Some(html) = &mut n.body_html {
                    r.redact_in_place(html, twin);
                }
            }
            for e in entries.iter_mut() {
                if let Some(note) = &mut e.note {
                    r.redact_in_place(note, c);
                }
            }
        }
        PrivacyStats {
            redactions,
            erased,
            learned,
        }
    }
}
