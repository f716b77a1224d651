//! Erasure of a person (`ticketsync forget`): their tickets keep ids, timestamps and hours, but
//! the requester becomes a stable pseudonym (`erased-<8 hex>`), every message they wrote becomes
//! `[erased]`, and their address and name leave every other text.
//!
//! The record of who was erased holds no clear text: an address, a name or a requester id is
//! kept as HMAC-SHA256 under a key of the dataset (see `state::erasures`). A text is checked by
//! hashing what could be one of them (each email address in it, each run of as many words as an
//! erased name has) and looking the hash up, so the erased values never have to be known again.

use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap};
use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use hmac::{Hmac, KeyInit, Mac};
use regex::Regex;
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use super::super::{ConversationRow, NoteRow, TicketRow, TimeEntryRow};
use super::html;

/// What a message an erased person wrote becomes.
pub const ERASED: &str = "[erased]";

/// One erased person, as `_state/erasures.json` keeps them: keyed hashes only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErasedPerson {
    /// `erased-<8 hex>`: what the person's name and address become everywhere.
    pub pseudonym: String,
    /// HMAC of the address (trimmed, lowercase), hex.
    pub email: String,
    /// HMAC of the name (its words, lowercase, one space apart), hex; `None` when no name was
    /// known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// How many words the name has (0 without a name).
    #[serde(default)]
    pub name_words: usize,
    /// HMACs of the Freshservice user ids the person requested tickets as.
    #[serde(default)]
    pub requester_ids: Vec<String>,
    /// When `forget` recorded the person (the time of that run).
    pub erased_at: DateTime<Utc>,
    /// True until the dataset has been rewritten without the person (a `forget` that was
    /// interrupted is finished by the next run).
    #[serde(default)]
    pub pending: bool,
}

impl ErasedPerson {
    /// Whether every hash of the record is one (64 hex digits): a record that is not would
    /// match nothing, and the person would silently come back.
    pub fn is_well_formed(&self) -> bool {
        unhex(&self.email).is_some()
            && self.name.as_deref().is_none_or(|n| unhex(n).is_some())
            && self.requester_ids.iter().all(|h| unhex(h).is_some())
    }
}

type Digest = [u8; 32];

/// Words a name needs before it is erased from other people's tickets too.
const MIN_NAME_WORDS: usize = 2;

/// The erased people of a dataset, ready to check texts against.
#[derive(Clone)]
pub struct Erasures {
    mac: Hmac<Sha256>,
    people: Vec<ErasedPerson>,
    emails: HashMap<Digest, usize>,
    names: HashMap<Digest, usize>,
    ids: HashMap<Digest, usize>,
    /// The word counts of the names, each once.
    name_lengths: BTreeSet<usize>,
}

impl std::fmt::Debug for Erasures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Erasures")
            .field("people", &self.people.len())
            .finish()
    }
}

static EMAIL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"[A-Za-z0-9._%+'-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+").expect("email regex")
});

impl Erasures {
    /// No one erased (and no key needed).
    pub fn none() -> Erasures {
        Erasures::new(&[0; 32], Vec::new())
    }

    /// The erased `people`, hashed under `key`.
    pub fn new(key: &[u8], people: Vec<ErasedPerson>) -> Erasures {
        let mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes any key");
        let mut e = Erasures {
            mac,
            people: Vec::new(),
            emails: HashMap::new(),
            names: HashMap::new(),
            ids: HashMap::new(),
            name_lengths: BTreeSet::new(),
        };
        for p in people {
            e.add(p);
        }
        e
    }

    /// Adds a person (a second record of the same address merges into the first). A record
    /// whose hashes are not hashes ([`ErasedPerson::is_well_formed`]) is not added: loading
    /// refuses such a file before it gets here.
    pub fn add(&mut self, person: ErasedPerson) {
        let Some(email) = unhex(&person.email) else {
            return;
        };
        let i = match self.emails.get(&email) {
            Some(&i) => {
                let known = &mut self.people[i];
                if known.name.is_none() && person.name.is_some() {
                    known.name = person.name.clone();
                    known.name_words = person.name_words;
                }
                for id in &person.requester_ids {
                    if !known.requester_ids.contains(id) {
                        known.requester_ids.push(id.clone());
                    }
                }
                known.pending |= person.pending;
                i
            }
            None => {
                self.people.push(person);
                self.people.len() - 1
            }
        };
        self.emails.insert(email, i);
        let p = self.people[i].clone();
        if let Some(name) = p.name.as_deref().and_then(unhex) {
            self.names.insert(name, i);
            self.name_lengths.insert(p.name_words);
        }
        for id in p.requester_ids.iter().filter_map(|h| unhex(h)) {
            self.ids.insert(id, i);
        }
    }

    /// True when no one has been erased (the texts pass unchanged).
    pub fn is_empty(&self) -> bool {
        self.people.is_empty()
    }

    /// The erased people, in the order they were recorded (as stored).
    pub fn people(&self) -> &[ErasedPerson] {
        &self.people
    }

    /// The erased people, for `forget` to clear their `pending` marks once the rewrite is done.
    pub fn people_mut(&mut self) -> &mut [ErasedPerson] {
        &mut self.people
    }

    fn hash(&self, kind: &str, value: &str) -> Digest {
        let mut mac = self.mac.clone();
        mac.update(kind.as_bytes());
        mac.update(&[0]);
        mac.update(value.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// A hex hash of `value` of `kind` ("email", "name", "requester", "key-check").
    pub fn hash_hex(&self, kind: &str, value: &str) -> String {
        hex::encode(self.hash(kind, value))
    }

    /// The record of a person erased now: address, name (when known) and requester ids, hashed.
    pub fn person(
        &self,
        email: &str,
        name: Option<&str>,
        requester_ids: &[i64],
        at: DateTime<Utc>,
    ) -> ErasedPerson {
        let email_hash = self.hash("email", &normal_email(email));
        // A one-word name ("Reception", "IT") would replace that word in every text of the
        // dataset: only a full name is kept for the other tickets (its single words go on the
        // person's own tickets anyway).
        let name = name
            .map(normal_name)
            .filter(|(_, words)| *words >= MIN_NAME_WORDS);
        ErasedPerson {
            pseudonym: format!("erased-{}", &hex::encode(email_hash)[..8]),
            email: hex::encode(email_hash),
            name_words: name.as_ref().map_or(0, |(_, words)| *words),
            name: name.map(|(n, _)| self.hash_hex("name", &n)),
            requester_ids: requester_ids
                .iter()
                .map(|id| self.hash_hex("requester", &id.to_string()))
                .collect(),
            erased_at: at,
            pending: true,
        }
    }

    /// The erased person with this address.
    pub fn by_email(&self, email: &str) -> Option<&ErasedPerson> {
        self.emails
            .get(&self.hash("email", &normal_email(email)))
            .map(|&i| &self.people[i])
    }

    fn email_index(&self, email: &str) -> Option<usize> {
        if self.is_empty() || !email.contains('@') {
            return None;
        }
        self.emails
            .get(&self.hash("email", &normal_email(email)))
            .copied()
    }

    fn id_index(&self, id: i64) -> Option<usize> {
        if self.ids.is_empty() {
            return None;
        }
        self.ids
            .get(&self.hash("requester", &id.to_string()))
            .copied()
    }

    /// `text` with every erased address and name replaced by the person's pseudonym; with
    /// `own`, also the single words of that person's name (on their own tickets, "Hi Jane").
    pub fn scrub<'a>(&self, text: &'a str, own: Option<&Own>) -> Cow<'a, str> {
        if self.is_empty() || text.is_empty() {
            return Cow::Borrowed(text);
        }
        let spans = self.spans(text, own);
        if spans.is_empty() {
            return Cow::Borrowed(text);
        }
        let mut out = String::with_capacity(text.len());
        let mut last = 0;
        for (s, e, i) in spans {
            out.push_str(&text[last..s]);
            out.push_str(&self.people[i].pseudonym);
            last = e;
        }
        out.push_str(&text[last..]);
        Cow::Owned(out)
    }

    /// [`Erasures::scrub`] for HTML: names and addresses are found in the text a reader sees
    /// (entities decoded: `Dana&nbsp;Whitfield`, `dana&#64;example.com`; tags between words:
    /// `<b>Dana</b> <b>Whitfield</b>`), in attribute values (`mailto:`, `title`) and comments,
    /// and replaced in the markup, tags inside the match included; the tags of elements that
    /// reach outside the match stay, so the HTML stays well-formed.
    pub fn scrub_html<'a>(&self, html: &'a str, own: Option<&Own>) -> Cow<'a, str> {
        if self.is_empty() || html.is_empty() {
            return Cow::Borrowed(html);
        }
        if !html.contains(['<', '&']) {
            return self.scrub(html, own);
        }
        // Attribute values and comments first: a tag kept by the text pass must be clean.
        let (_, tags) = html::parse(html);
        let mut attributes = String::with_capacity(html.len());
        let mut last = 0;
        for tag in &tags {
            let inner = &html[tag.start..tag.end];
            let view = html::decode(inner);
            let spans = self.spans(&view.text, own);
            if spans.is_empty() {
                continue;
            }
            attributes.push_str(&html[last..tag.start]);
            let mut at = 0;
            for (s, e, i) in spans {
                let (s, e) = view.source(s, e);
                attributes.push_str(&inner[at..s]);
                attributes.push_str(&self.people[i].pseudonym);
                at = e;
            }
            attributes.push_str(&inner[at..]);
            last = tag.end;
        }
        let html: Cow<'a, str> = if last == 0 {
            Cow::Borrowed(html)
        } else {
            attributes.push_str(&html[last..]);
            Cow::Owned(attributes)
        };

        let (view, tags) = html::parse(&html);
        let spans = self.spans(&view.text, own);
        if spans.is_empty() {
            return html;
        }
        let mut out = String::with_capacity(html.len());
        let mut last = 0;
        for (s, e, i) in spans {
            let (s, e) = view.source(s, e);
            out.push_str(&html[last..s]);
            out.push_str(&html::replacement(
                &html,
                &tags,
                s,
                e,
                &self.people[i].pseudonym,
            ));
            last = e;
        }
        out.push_str(&html[last..]);
        Cow::Owned(out)
    }

    /// Where `text` holds an erased address or name (or, with `own`, a word of it): byte
    /// ranges and whose, in order and without overlaps (the longest wins at each start).
    fn spans(&self, text: &str, own: Option<&Own>) -> Vec<(usize, usize, usize)> {
        let mut spans: Vec<(usize, usize, usize)> = Vec::new();
        for m in EMAIL.find_iter(text) {
            if let Some(i) = self.email_index(m.as_str()) {
                spans.push((m.start(), m.end(), i));
            }
        }
        let words = words(text);
        for &k in &self.name_lengths {
            if k == 0 || k > words.len() {
                continue;
            }
            for w in words.windows(k) {
                // Words of one name are apart by whitespace only.
                if !w[1..].iter().all(|word| word.2) {
                    continue;
                }
                let name = w
                    .iter()
                    .map(|(s, e, _)| text[*s..*e].to_lowercase())
                    .collect::<Vec<_>>()
                    .join(" ");
                if let Some(&i) = self.names.get(&self.hash("name", &name)) {
                    spans.push((w[0].0, w[k - 1].1, i));
                }
            }
        }
        if let Some(own) = own {
            for (s, e, _) in &words {
                if own.parts.contains(&text[*s..*e].to_lowercase()) {
                    spans.push((*s, *e, own.person));
                }
            }
        }
        // Longest first at each start, then drop what overlaps an earlier span.
        spans.sort_by_key(|&(s, e, _)| (s, std::cmp::Reverse(e)));
        let mut last = 0;
        spans.retain(|&(s, e, _)| {
            let keep = s >= last;
            if keep {
                last = e;
            }
            keep
        });
        // Spans of one person apart by whitespace only become one: "Jane Doe" is one
        // pseudonym whether the full name was known (one span) or only its words on the
        // person's own ticket (two), so a text does not depend on when the name was learned.
        let mut merged: Vec<(usize, usize, usize)> = Vec::with_capacity(spans.len());
        for span in spans {
            match merged.last_mut() {
                Some(prev)
                    if prev.2 == span.2
                        && text[prev.1..span.0].chars().all(char::is_whitespace) =>
                {
                    prev.1 = span.1;
                }
                _ => merged.push(span),
            }
        }
        merged
    }

    fn scrub_in_place(&self, text: &mut String, own: Option<&Own>) -> bool {
        match self.scrub(text, own) {
            Cow::Owned(new) => {
                *text = new;
                true
            }
            Cow::Borrowed(_) => false,
        }
    }

    fn scrub_opt(&self, text: &mut Option<String>, own: Option<&Own>) -> bool {
        text.as_mut().is_some_and(|t| self.scrub_in_place(t, own))
    }

    fn scrub_html_opt(&self, html: &mut Option<String>, own: Option<&Own>) -> bool {
        let Some(h) = html.as_mut() else {
            return false;
        };
        match self.scrub_html(h, own) {
            Cow::Owned(new) => {
                *h = new;
                true
            }
            Cow::Borrowed(_) => false,
        }
    }

    /// The erased person who requested `ticket`, if any.
    fn owner(&self, ticket: &TicketRow) -> Option<usize> {
        ticket
            .requester_email
            .as_deref()
            .and_then(|e| self.email_index(e))
            .or_else(|| ticket.requester_id.and_then(|id| self.id_index(id)))
    }

    /// When `ticket` was requested by an erased person whose record has no name (they had no
    /// ticket in the dataset when they were forgotten), the name it gives them, hashed. Call
    /// before [`Erasures::apply`], which replaces the name.
    pub fn learn(&self, ticket: &TicketRow) -> Option<LearnedName> {
        if self.is_empty() {
            return None;
        }
        let person = &self.people[self.owner(ticket)?];
        if person.name.is_some() {
            return None;
        }
        let (name, words) = normal_name(ticket.requester_name.as_deref()?);
        if words < MIN_NAME_WORDS || name.starts_with("erased-") {
            return None;
        }
        Some(LearnedName {
            email: person.email.clone(),
            name: self.hash_hex("name", &name),
            words,
        })
    }

    /// Completes a record with a learned name and marks it pending (the dataset still holds the
    /// name in other tickets' texts until it is rewritten). False when nothing changed.
    pub fn complete(&mut self, learned: &LearnedName) -> bool {
        let Some(i) = unhex(&learned.email).and_then(|e| self.emails.get(&e).copied()) else {
            return false;
        };
        if self.people[i].name.is_some() {
            return false;
        }
        let mut person = self.people[i].clone();
        person.name = Some(learned.name.clone());
        person.name_words = learned.words;
        person.pending = true;
        self.add(person);
        true
    }

    /// Applies the erasures to one ticket's rows; true when anything changed.
    pub fn apply(
        &self,
        ticket: &mut TicketRow,
        conversations: &mut [ConversationRow],
        notes: &mut [NoteRow],
        entries: &mut [TimeEntryRow],
    ) -> bool {
        if self.is_empty() {
            return false;
        }
        let own = self.owner(ticket).map(|person| Own {
            person,
            parts: ticket
                .requester_name
                .as_deref()
                .map(|n| {
                    words(n)
                        .iter()
                        .map(|(s, e, _)| n[*s..*e].to_lowercase())
                        .filter(|w| w.chars().count() >= 2)
                        .collect()
                })
                .unwrap_or_default(),
        });
        let own = own.as_ref();
        let mut changed = false;
        if let Some(own) = own {
            let pseudonym = Some(self.people[own.person].pseudonym.clone());
            for field in [&mut ticket.requester_name, &mut ticket.requester_email] {
                if field.is_some() && *field != pseudonym {
                    *field = pseudonym.clone();
                    changed = true;
                }
            }
        }
        // Who wrote a message: its sender address, or its author's user id — one the person
        // requested tickets as (on anyone's ticket), or on their own tickets the requester's.
        let author = |from: Option<&str>, user: Option<i64>| {
            from.and_then(|f| self.email_index(f))
                .or_else(|| user.and_then(|u| self.id_index(u)))
                .or_else(|| {
                    own.filter(|_| user.is_some() && user == ticket.requester_id)
                        .map(|o| o.person)
                })
        };
        for c in conversations.iter_mut() {
            if let Some(i) = author(c.from_email.as_deref(), c.user_id) {
                changed |= erase_message(&mut c.body, &mut c.body_html);
                changed |= self.set_pseudonym(&mut c.from_email, i);
            }
            changed |= self.scrub_in_place(&mut c.body, own);
            changed |= self.scrub_html_opt(&mut c.body_html, own);
            changed |= self.scrub_opt(&mut c.from_email, own);
            changed |= self.scrub_opt(&mut c.support_email, own);
            changed |= self.scrub_opt(&mut c.attachments, own);
            for to in &mut c.to_emails {
                changed |= self.scrub_in_place(to, own);
            }
        }
        for n in notes.iter_mut() {
            if let Some(i) = author(n.from_email.as_deref(), n.user_id) {
                changed |= erase_message(&mut n.body, &mut n.body_html);
                changed |= self.set_pseudonym(&mut n.from_email, i);
            }
            changed |= self.scrub_in_place(&mut n.body, own);
            changed |= self.scrub_html_opt(&mut n.body_html, own);
            changed |= self.scrub_opt(&mut n.from_email, own);
        }
        for e in entries.iter_mut() {
            changed |= self.scrub_opt(&mut e.note, own);
            changed |= self.scrub_opt(&mut e.agent_email, own);
            changed |= self.scrub_opt(&mut e.agent_name, own);
            changed |= self.scrub_opt(&mut e.custom_fields, own);
        }
        changed |= self.scrub_html_opt(&mut ticket.description, own);
        let d = &mut ticket.details;
        for text in [
            &mut ticket.subject,
            &mut ticket.description_text,
            &mut ticket.requester_name,
            &mut ticket.requester_email,
            &mut d.custom_fields,
            &mut d.responder_email,
            &mut d.responder_name,
            &mut d.category,
            &mut d.sub_category,
            &mut d.item_category,
        ] {
            changed |= self.scrub_opt(text, own);
        }
        if let Some(tags) = &mut d.tags {
            for tag in tags {
                changed |= self.scrub_in_place(tag, own);
            }
        }
        changed
    }

    fn set_pseudonym(&self, field: &mut Option<String>, person: usize) -> bool {
        let pseudonym = &self.people[person].pseudonym;
        if field.as_deref() == Some(pseudonym.as_str()) {
            return false;
        }
        *field = Some(pseudonym.clone());
        true
    }
}

/// A name the erasure record lacks, learned from a ticket the person requested: keyed hashes
/// only (the record is completed with it, then the dataset is rewritten without the name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LearnedName {
    /// The person's address hash (which record to complete).
    pub email: String,
    /// HMAC of the name (as [`ErasedPerson::name`]).
    pub name: String,
    /// Its word count.
    pub words: usize,
}

/// The ticket's requester is an erased person: their name's single words go too.
#[derive(Debug)]
pub struct Own {
    person: usize,
    /// The name's words, lowercase, two characters or more.
    parts: BTreeSet<String>,
}

fn erase_message(body: &mut String, html: &mut Option<String>) -> bool {
    let mut changed = false;
    if body != ERASED {
        *body = ERASED.to_string();
        changed = true;
    }
    if html.as_deref().is_some_and(|h| h != ERASED) {
        *html = Some(ERASED.to_string());
        changed = true;
    }
    changed
}

/// An address as it is hashed: trimmed, lowercase.
fn normal_email(email: &str) -> String {
    email.trim().to_lowercase()
}

/// A name as it is hashed: its words, lowercase, one space apart; and how many words.
fn normal_name(name: &str) -> (String, usize) {
    let w = words(name);
    let joined = w
        .iter()
        .map(|(s, e, _)| name[*s..*e].to_lowercase())
        .collect::<Vec<_>>()
        .join(" ");
    (joined, w.len())
}

/// The words of a text as byte spans: runs of letters and digits, with `'`, `’` and `-` inside
/// (O'Brien, Jean-Luc). The flag tells whether only whitespace separates the word from the one
/// before it.
fn words(text: &str) -> Vec<(usize, usize, bool)> {
    let mut out = Vec::new();
    let mut start: Option<usize> = None;
    let mut gap_is_space = false;
    let mut end = 0;
    let inner = |c: char| c == '\'' || c == '’' || c == '-';
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let next_is_word = chars.peek().is_some_and(|&(_, n)| n.is_alphanumeric());
        if c.is_alphanumeric() || (start.is_some() && inner(c) && next_is_word) {
            if start.is_none() {
                start = Some(i);
            }
            end = i + c.len_utf8();
        } else {
            if let Some(s) = start.take() {
                out.push((s, end, gap_is_space));
                gap_is_space = true;
            }
            if !c.is_whitespace() {
                gap_is_space = false;
            }
        }
    }
    if let Some(s) = start {
        out.push((s, end, gap_is_space));
    }
    // The first word has no word before it.
    if let Some(first) = out.first_mut() {
        first.2 = false;
    }
    out
}

fn unhex(text: &str) -> Option<Digest> {
    let bytes = hex::decode(text).ok()?;
    bytes.try_into().ok()
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use proptest::prelude::*;

    fn erasures() -> Erasures {
        let mut e = Erasures::new(b"0123456789abcdef0123456789abcdef", Vec::new());
        let at = "2026-11-30T00:00:00Z".parse().unwrap();
        let p = e.person("Jane.Doe@Example.com ", Some("Jane  Doe"), &[42], at);
        e.add(p);
        e
    }

    /// Found by the privacy oracle under kills: on the person's own ticket, before their name
    /// was learned, its words were replaced one by one ("erased-x erased-x"); after, the name
    /// as a whole ("erased-x"), so the dataset depended on when the name was learned.
    #[test]
    fn a_name_is_one_pseudonym_whether_known_whole_or_by_its_words() {
        let mut address_only = Erasures::new(b"0123456789abcdef0123456789abcdef", Vec::new());
        let at = "2026-11-30T00:00:00Z".parse().unwrap();
        let p = address_only.person("jane.doe@example.com", None, &[42], at);
        address_only.add(p);
        let whole = erasures();
        let pseudonym = whole.people()[0].pseudonym.clone();
        let own = Own {
            person: 0,
            parts: ["jane".to_string(), "doe".to_string()].into(),
        };
        let text = "Thanks,\nJane Doe jane.doe@example.com";
        let by_words = address_only.scrub(text, Some(&own)).into_owned();
        assert_eq!(by_words, whole.scrub(text, Some(&own)));
        assert_eq!(by_words, format!("Thanks,\n{pseudonym}"));
    }

    #[test]
    fn addresses_and_names_become_the_pseudonym() {
        let e = erasures();
        let p = e.people()[0].pseudonym.clone();
        assert!(p.starts_with("erased-") && p.len() == 15, "{p}");
        assert_eq!(
            e.scrub("Forwarded from jane.doe@example.com by Jane Doe.", None),
            format!("Forwarded from {p} by {p}.")
        );
        assert_eq!(
            e.scrub("-- \nJANE DOE\nAccounting", None),
            format!("-- \n{p}\nAccounting")
        );
        // A name across a line break is still the name; across punctuation it is not.
        assert_eq!(e.scrub("Jane\nDoe", None), p.to_string());
        assert_eq!(e.scrub("Jane, Doe", None), "Jane, Doe");
        // Other people and parts of the name stay (on tickets that are not the person's own).
        assert_eq!(
            e.scrub("Hi Jane, John Doe and jane.doe@example.org", None),
            "Hi Jane, John Doe and jane.doe@example.org"
        );
        assert!(matches!(e.scrub("nothing here", None), Cow::Borrowed(_)));
    }

    #[test]
    fn the_record_holds_no_clear_text() {
        let e = erasures();
        let json = serde_json::to_string(&e.people()[0])
            .unwrap()
            .to_lowercase();
        for clear in ["jane", "doe", "example"] {
            assert!(!json.contains(clear), "{json}");
        }
        // Another key gives other hashes: the record is useless without the key.
        let other = Erasures::new(b"another key", Vec::new());
        let at = "2026-11-30T00:00:00Z".parse().unwrap();
        assert_ne!(
            other.person("jane.doe@example.com", None, &[], at).email,
            e.people()[0].email
        );
    }

    #[test]
    fn a_record_whose_hashes_are_not_hashes_is_not_well_formed() {
        let e = erasures();
        let good = e.people()[0].clone();
        assert!(good.is_well_formed());
        for bad in [
            ErasedPerson {
                email: "jane.doe@example.com".into(),
                ..good.clone()
            },
            ErasedPerson {
                name: Some("abc".into()),
                ..good.clone()
            },
            ErasedPerson {
                requester_ids: vec!["42".into()],
                ..good
            },
        ] {
            assert!(!bad.is_well_formed(), "{bad:?}");
        }
    }

    /// Issue 19, erasure 2: the HTML twin of a text loses what the text loses, in every
    /// encoding a mail client writes, and stays well-formed.
    #[test]
    fn html_twins_lose_names_and_addresses_in_any_encoding() {
        let e = erasures();
        let p = e.people()[0].pseudonym.clone();
        let cases = [
            ("<p>Jane&nbsp;Doe</p>", format!("<p>{p}</p>")),
            ("<p>JANE&NBSP;doe<br></p>", format!("<p>{p}<br></p>")),
            ("<b>Jane</b> <b>Doe</b>", format!("<b>{p}</b>")),
            (
                "<span style='x'>Jane</span>&nbsp;<span style='x'>Doe</span>, CFO",
                format!("<span style='x'>{p}</span>, CFO"),
            ),
            (
                "Jane <span class=n>Doe, Accounting</span>",
                format!("{p}<span class=n>, Accounting</span>"),
            ),
            ("<p>Jane</p>\n<p>Doe</p>", format!("<p>{p}</p>")),
            ("<p>jane.doe&#64;example.com</p>", format!("<p>{p}</p>")),
            ("Mail: JANE.DOE&#x40;Example.COM.", format!("Mail: {p}.")),
            ("jane.doe&#X40;example&period;com", p.clone()),
            ("jane.doe&commat;example.com;", format!("{p};")),
            (
                "<a href=\"mailto:jane.doe&#64;example.com\" title='Jane Doe'>jane.doe@example.com</a>",
                format!("<a href=\"mailto:{p}\" title='{p}'>{p}</a>"),
            ),
            ("<!-- Jane Doe --><p>x</p>", format!("<!-- {p} --><p>x</p>")),
        ];
        for (html, expected) in cases {
            let once = e.scrub_html(html, None).into_owned();
            assert_eq!(once, expected, "{html}");
            assert!(super::html::is_balanced(&once), "{once}");
            assert_eq!(e.scrub_html(&once, None), once, "idempotent: {html}");
        }
        // Other people, and what is no name, stay as they were (borrowed: not rewritten).
        for html in [
            "<p>Hi Jane,</p><p>John&nbsp;Doe</p>",
            "<p>Jane, Doe</p>",
            "a &lt; b &amp;&amp; c",
            "<td>jane.doe@example.org</td>",
        ] {
            assert!(
                matches!(e.scrub_html(html, None), Cow::Borrowed(_)),
                "{html}"
            );
        }
    }

    /// A closed ticket with nothing but its requester (for `super::tests` too).
    pub(in crate::normalize::privacy) fn ticket(
        requester_id: i64,
        requester_email: &str,
    ) -> TicketRow {
        let at: DateTime<Utc> = "2026-11-30T00:00:00Z".parse().unwrap();
        TicketRow {
            ticket_id: 7,
            company_account_number: "482913".into(),
            ticket_number: "7".into(),
            subject: Some("Printer".into()),
            description: None,
            description_text: None,
            status: "Closed".into(),
            priority: None,
            requester_email: Some(requester_email.into()),
            requester_name: Some("Someone Else".into()),
            created_at: None,
            last_updated_at: at,
            closed_at: at,
            total_hours_spent: 0.0,
            billable_hours: 0.0,
            total_minutes: 0,
            billable_minutes: 0,
            hours_defaulted: true,
            department_id: None,
            requester_id: Some(requester_id),
            responder_id: None,
            group_id: None,
            ticket_type: None,
            source: None,
            conversation_count: 1,
            note_count: 0,
            time_entry_count: 0,
            synced_at: at,
            details: Default::default(),
        }
    }

    fn message(user_id: Option<i64>, from_email: Option<&str>, body: &str) -> ConversationRow {
        ConversationRow {
            ticket_id: 7,
            conversation_id: 70,
            body: body.into(),
            body_html: Some(format!("<p>{body}</p>")),
            from_email: from_email.map(Into::into),
            to_emails: Vec::new(),
            created_at: None,
            updated_at: None,
            incoming: true,
            private: false,
            user_id,
            support_email: None,
            attachments: None,
        }
    }

    /// Issue 19, erasure 3: a message the erased person wrote on someone else's ticket, without
    /// a sender address, is known by its author's user id (one they requested tickets as).
    #[test]
    fn a_message_they_wrote_on_another_ticket_is_erased_by_its_user_id() {
        let e = erasures();
        let p = e.people()[0].pseudonym.clone();
        let mut t = ticket(99, "someone.else@example.com");
        let mut messages = vec![
            message(Some(42), None, "my spare key is under the mat"),
            message(Some(99), None, "thanks, all good"),
        ];
        let mut notes = vec![NoteRow {
            ticket_id: 7,
            note_id: 71,
            body: "cc'd from my phone".into(),
            body_html: None,
            from_email: None,
            created_at: None,
            user_id: Some(42),
            to_emails: Vec::new(),
            updated_at: None,
            incoming: false,
            support_email: None,
        }];
        assert!(e.apply(&mut t, &mut messages, &mut notes, &mut []));
        assert_eq!(messages[0].body, ERASED);
        assert_eq!(messages[0].body_html.as_deref(), Some(ERASED));
        assert_eq!(messages[0].from_email.as_deref(), Some(p.as_str()));
        assert_eq!(
            messages[1].body, "thanks, all good",
            "another author's words stay"
        );
        assert_eq!(notes[0].body, ERASED);
        assert_eq!(
            t.requester_email.as_deref(),
            Some("someone.else@example.com")
        );
    }

    #[test]
    fn words_keep_inner_apostrophes_and_dashes() {
        let text = "Dear Seán O'Brien-Smith, re: 'quoted'";
        let w: Vec<&str> = words(text).iter().map(|(s, e, _)| &text[*s..*e]).collect();
        assert_eq!(w, ["Dear", "Seán", "O'Brien-Smith", "re", "quoted"]);
    }

    proptest! {
        #[test]
        fn scrub_never_panics_and_is_idempotent(text in "\\PC{0,120}", name_at in 0usize..120) {
            let e = erasures();
            let mut t = text.clone();
            let at = name_at.min(t.len());
            if t.is_char_boundary(at) {
                t.insert_str(at, " Jane Doe jane.doe@example.com ");
            }
            let once = e.scrub(&t, None).into_owned();
            let twice = e.scrub(&once, None).into_owned();
            prop_assert_eq!(&twice, &once);
            prop_assert!(!once.to_lowercase().contains("jane.doe@example.com"));
        }
    }
}
