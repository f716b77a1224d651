//! Customer data under control before anything is written: [`redact`] replaces secrets
//! (credentials, keys, tokens, card numbers) in the free texts, [`erase`] replaces the people
//! who asked to be forgotten. Both are pure and run on a ticket's rows before its markdown is
//! rendered, so every table and the document see the same text.

pub mod erase;
mod html;
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
        let erased = match &learned {
            // The name this ticket teaches is erased from it already, whole, as by a run that
            // knew it: erased word by word (the owner's words only), a name of a one-letter
            // word ("Wei Li 李") would keep that word, and the dataset would depend on when the
            // name was learned.
            Some(name) => {
                let mut knowing = Erasures::clone(&self.erasures);
                knowing.complete(name);
                knowing.apply(ticket, conversations, notes, entries)
            }
            None => self.erasures.apply(ticket, conversations, notes, entries),
        };
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
            // Onboarding forms carry `temp_password` in custom fields; tags and categories are
            // typed by hand too.
            let d = &mut ticket.details;
            if let Some(fields) = &mut d.custom_fields {
                r.redact_fields(fields, c);
            }
            for text in [&mut d.category, &mut d.sub_category, &mut d.item_category]
                .into_iter()
                .flatten()
            {
                r.redact_in_place(text, c);
            }
            for tag in d.tags.iter_mut().flatten() {
                r.redact_in_place(tag, c);
            }
            for e in entries.iter_mut() {
                if let Some(note) = &mut e.note {
                    r.redact_in_place(note, c);
                }
                if let Some(fields) = &mut e.custom_fields {
                    r.redact_fields(fields, c);
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 19, redaction 5: custom fields (of tickets and time entries), tags and categories
    /// go through the rules, and a custom field whose key names a secret loses its value.
    #[test]
    fn privacy_redacts_custom_fields_tags_and_categories() {
        let privacy = Privacy {
            redactor: Arc::new(Redactor::defaults()),
            erasures: Arc::new(Erasures::none()),
        };
        let mut ticket = erase::tests::ticket(1, "new.hire@example.com");
        ticket.details.custom_fields = Some(
            r#"{"new_hire":"Anna Berg","temp_password":"Welcome2025!","VPN PWD":4711,"notes":"pw: hunter22","laptop":"T14"}"#
                .into(),
        );
        ticket.details.tags = Some(vec!["onboarding".into(), "pw=Sommer99".into()]);
        ticket.details.category = Some("Access password: Winter#7".into());
        ticket.details.sub_category = Some("VPN".into());
        let mut entries = vec![TimeEntryRow {
            ticket_id: 7,
            time_entry_id: 72,
            agent_id: None,
            agent_email: None,
            minutes: 30,
            hours: 0.5,
            billable: true,
            timer_running: false,
            executed_at: None,
            note: None,
            workspace_id: None,
            task_id: None,
            custom_fields: Some(
                r#"{"work_type":"Onboarding","api_token":["tok-1","tok-2"]}"#.into(),
            ),
            agent_name: None,
            start_time: None,
        }];
        let stats = privacy.apply(&mut ticket, &mut [], &mut [], &mut entries);
        let d = &ticket.details;
        assert_eq!(
            d.custom_fields.as_deref(),
            Some(
                r#"{"new_hire":"Anna Berg","temp_password":"[redacted:secret_field]","VPN PWD":"[redacted:secret_field]","notes":"pw: [redacted:credential]","laptop":"T14"}"#
            )
        );
        assert_eq!(
            d.tags.as_deref(),
            Some(
                &[
                    "onboarding".to_string(),
                    "pw=[redacted:credential]".to_string()
                ][..]
            )
        );
        assert_eq!(
            d.category.as_deref(),
            Some("Access password: [redacted:credential]")
        );
        assert_eq!(d.sub_category.as_deref(), Some("VPN"));
        assert_eq!(
            entries[0].custom_fields.as_deref(),
            Some(
                r#"{"work_type":"Onboarding","api_token":["[redacted:secret_field]","[redacted:secret_field]"]}"#
            )
        );
        assert_eq!(stats.redactions.get("secret_field"), Some(&4));
        assert_eq!(stats.redactions.get("credential"), Some(&3));

        // Again: nothing left to redact.
        let before = (ticket.clone(), entries.clone());
        let again = privacy.apply(&mut ticket, &mut [], &mut [], &mut entries);
        assert!(again.redactions.is_empty(), "{:?}", again.redactions);
        assert_eq!((ticket, entries), before);
    }
}
