//! The hostile-API layer: per endpoint and per page, it changes what the simulator answers the
//! way proxies, API gateways and the live API can — headers dropped, split or altered, items
//! reordered, duplicated or dropped, JSON types drifting, invalid UTF-8 — and it changes the
//! world *between two pages of one listing* (a ticket deleted, spammed, reopened, touched or
//! created, a time entry logged). Status codes and truncated bodies come from the fault script
//! ([`super::FaultRule`]); the two are meant to be mixed.
//!
//! Every [`Mutation`] is one of two kinds, and the harness's oracle treats them differently:
//!
//! - **Lies about the wire** (everything but the world events): the data behind the answer is
//!   unchanged, so a run must either end with the dataset a clean run writes, or fail (exit 2).
//!   The destructive ones ([`Mutation::NullField`], [`Mutation::ObjectToArray`]) also record the
//!   ids of the items they spoiled ([`Hostile::spoiled`]): a reject of such a ticket is justified.
//! - **World events**: the server's data really changes mid-run; the oracle compares with a clean
//!   run over the final data.
//!
//! `server.rs` applies [`Hostile::on_reply`] to a reply after its handler (and the quirks) built
//! it, [`Hostile::on_response`] to the finished response, and runs the world events of
//! [`Hostile::events_after`] once a page was served intact.

use std::collections::BTreeSet;
use std::sync::Mutex;

use serde_json::Value;

use super::lock;

/// One misbehaviour. See the module docs for the two kinds.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Mutation {
    /// No `Link` header (a proxy that strips it).
    StripLink,
    /// The `Link` target carries its `include` list with raw commas (`include=stats,tags`),
    /// which RFC 8288 allows inside `<…>`.
    RawCommaLink,
    /// `rel="prev"` and `rel="next"` on two `Link` header lines.
    SplitLink,
    /// `rel="prev"` and `rel="next"` in one `Link` line, prev first, with extra parameters and
    /// upper-case names (`REL=next; title="page, two"`).
    ParamLink,
    /// No `X-RateLimit-*` headers.
    DropRateHeaders,
    /// The page's items in reverse order.
    Reverse,
    /// The page's first item repeated at its end.
    DuplicateFirst,
    /// The page's first item left out; only on a page that links onwards (on the last page a
    /// dropped item is indistinguishable from one that does not exist, for any client).
    DropFirstOfLinkedPage,
    /// Every item's `id` as a JSON string (`"17531"`).
    IdAsString,
    /// Every integer field of every item as a JSON string.
    NumbersAsStrings,
    /// Every integer field of every item as a float (`5.0`).
    IntegersAsFloats,
    /// This field of every item becomes `null` (destructive: the items are recorded spoiled).
    NullField(String),
    /// This object field of every item becomes an array (destructive, recorded).
    ObjectToArray(String),
    /// This field of every item becomes the word `"Email"` (an API change that sends a name
    /// where a code was: destructive, recorded).
    WordField(String),
    /// One byte of invalid UTF-8 inside the first string value of the body.
    InvalidUtf8,
    /// World event: the page's first item (a ticket) is deleted once the page was served.
    DeleteFirst,
    /// World event: the page's first ticket is marked spam.
    SpamFirst,
    /// World event: the page's first ticket is reopened.
    ReopenFirst,
    /// World event: the page's first ticket is touched (subject edited, `updated_at` bumped).
    TouchFirst,
    /// World event: a new closed ticket is created.
    CreateTicket,
    /// World event: the page's first ticket moves to the next workspace (`updated_at` bumped);
    /// in an account without workspaces it is only touched.
    MoveWorkspace,
    /// Child lists (`conversations`, `time_entries`) served newest first, every page (an
    /// ordering the API does not document either way; a new entry then shifts the pages).
    NewestFirst,
    /// World event: a time entry of 15 minutes is logged on the ticket whose child list this
    /// is (`conversations`/`time_entries` pages), or on the page's first ticket.
    LogTime,
    /// World event on a child list page that links onwards: its first child (conversation or
    /// time entry) is deleted once the page was served, so the next page shifts. The ticket is
    /// not recorded touched: the final data is exact and every run must end with it.
    DeleteChildFirst,
    /// The server serves page 1 whatever `page` asks for (a proxy or gateway that drops the
    /// parameter).
    IgnorePage,
}

impl Mutation {
    /// Whether the mutation changes the server's data (rather than lying about it).
    pub fn is_world_event(&self) -> bool {
        matches!(
            self,
            Mutation::DeleteFirst
                | Mutation::SpamFirst
                | Mutation::ReopenFirst
                | Mutation::TouchFirst
                | Mutation::CreateTicket
                | Mutation::MoveWorkspace
                | Mutation::LogTime
                | Mutation::DeleteChildFirst
        )
    }

    /// Whether it spoils the items it touches (see [`Hostile::spoiled`]).
    pub fn is_destructive(&self) -> bool {
        matches!(
            self,
            Mutation::NullField(_) | Mutation::ObjectToArray(_) | Mutation::WordField(_)
        )
    }
}

/// Where a mutation applies and how often.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HostileRule {
    /// Endpoint key (`tickets_list`, `conversations`, `time_entries`, `ticket_view`,
    /// `departments`, `workspaces`, …); `None`: every endpoint.
    pub endpoint: Option<String>,
    /// The page (from 1); `None`: every page.
    pub page: Option<u32>,
    /// Requests it still hits (`u32::MAX` ≈ always).
    pub times: u32,
    /// Requests it would hit that it lets pass first.
    pub skip: u32,
    /// What it does.
    pub mutation: Mutation,
}

impl HostileRule {
    /// `mutation` on every page of `endpoint`, for ever.
    pub fn always(endpoint: &str, mutation: Mutation) -> HostileRule {
        HostileRule {
            endpoint: Some(endpoint.to_string()),
            page: None,
            times: u32::MAX,
            skip: 0,
            mutation,
        }
    }

    /// `mutation` once, on page `page` of `endpoint`.
    pub fn once(endpoint: &str, page: u32, mutation: Mutation) -> HostileRule {
        HostileRule {
            endpoint: Some(endpoint.to_string()),
            page: Some(page),
            times: 1,
            skip: 0,
            mutation,
        }
    }

    /// The same rule, letting `n` requests it would hit pass first.
    pub fn after(mut self, n: u32) -> HostileRule {
        self.skip = n;
        self
    }

    fn hits(&self, endpoint: &str, page: u32) -> bool {
        self.times > 0
            && self.endpoint.as_deref().is_none_or(|e| e == endpoint)
            && self.page.is_none_or(|p| p == page)
    }
}

/// The rules of a running simulator, what they spoiled, and the server's clock skew.
#[derive(Debug, Default)]
pub struct Hostile {
    rules: Mutex<Vec<HostileRule>>,
    spoiled: Mutex<BTreeSet<i64>>,
    touched: Mutex<BTreeSet<i64>>,
    skew_secs: Mutex<i64>,
}

/// What one reply's wire mutations decided beyond its body (applied to the response).
#[derive(Debug, Default)]
pub(crate) struct WireChanges {
    pub(crate) extra_links: Vec<String>,
    pub(crate) drop_rate_headers: bool,
    pub(crate) invalid_utf8: bool,
}

/// What the hostile layer did to one reply: its wire changes and the world events to run once
/// it was served intact (see `server.rs`).
#[derive(Debug, Default)]
pub(crate) struct Served {
    pub(crate) wire: WireChanges,
    pub(crate) events: Vec<Mutation>,
}

impl Served {
    pub(crate) fn invalid_utf8(&self) -> bool {
        self.wire.invalid_utf8
    }
}

impl Hostile {
    /// Replaces the rules (an empty list restores the documented behaviour); what was recorded
    /// as spoiled is kept until [`Hostile::clear`].
    pub fn set(&self, rules: Vec<HostileRule>) {
        *lock(&self.rules) = rules;
    }

    /// Adds a rule.
    pub fn push(&self, rule: HostileRule) {
        lock(&self.rules).push(rule);
    }

    /// No rules, nothing spoiled, no skew.
    pub fn clear(&self) {
        lock(&self.rules).clear();
        lock(&self.spoiled).clear();
        lock(&self.touched).clear();
        *lock(&self.skew_secs) = 0;
    }

    /// Ids of items a destructive mutation served spoiled.
    pub fn spoiled(&self) -> BTreeSet<i64> {
        lock(&self.spoiled).clone()
    }

    /// Ids of tickets a world event changed (deleted, spammed, reopened, touched, created, time
    /// logged).
    pub fn touched(&self) -> BTreeSet<i64> {
        lock(&self.touched).clone()
    }

    pub(crate) fn record_touched(&self, id: i64) {
        lock(&self.touched).insert(id);
    }

    /// Whether `endpoint`'s page `page` is served as page 1 (see [`Mutation::IgnorePage`]).
    pub(crate) fn ignores_page(&self, endpoint: &str, page: u32) -> bool {
        lock(&self.rules)
            .iter()
            .any(|r| r.mutation == Mutation::IgnorePage && r.hits(endpoint, page))
    }

    /// Whether `endpoint`'s child lists are served newest first.
    pub(crate) fn newest_first(&self, endpoint: &str) -> bool {
        lock(&self.rules)
            .iter()
            .any(|r| r.mutation == Mutation::NewestFirst && r.hits(endpoint, 1))
    }

    /// The server's clock runs this many seconds from real time (negative: behind): the
    /// `Date` header and every mutation's timestamps follow it.
    pub fn set_clock_skew(&self, secs: i64) {
        *lock(&self.skew_secs) = secs;
    }

    /// See [`Hostile::set_clock_skew`].
    pub fn clock_skew(&self) -> i64 {
        *lock(&self.skew_secs)
    }

    /// Applies the wire mutations of `endpoint`'s page `page` to a successful reply's body and
    /// `Link`; returns what the response builder must do besides, and the world events to run
    /// once the page was served. `owner`: the ticket whose child list or view this is (what a
    /// destructive mutation records as spoiled; otherwise each item's own id).
    pub(crate) fn on_reply(
        &self,
        endpoint: &str,
        page: u32,
        owner: Option<i64>,
        body: &mut Value,
        next_link: &mut Option<String>,
    ) -> (WireChanges, Vec<Mutation>) {
        let fired: Vec<Mutation> = {
            let mut rules = lock(&self.rules);
            let mut fired = Vec::new();
            for rule in rules.iter_mut().filter(|r| r.hits(endpoint, page)) {
                let idle = match rule.mutation {
                    Mutation::DropFirstOfLinkedPage | Mutation::DeleteChildFirst => {
                        next_link.is_none()
                    }
                    Mutation::NewestFirst | Mutation::IgnorePage => true,
                    _ => false,
                };
                if idle {
                    continue;
                }
                if rule.skip > 0 {
                    rule.skip -= 1;
                    continue;
                }
                rule.times -= 1;
                fired.push(rule.mutation.clone());
            }
            rules.retain(|r| r.times > 0);
            fired
        };
        let mut changes = WireChanges::default();
        let mut events = Vec::new();
        for mutation in fired {
            match &mutation {
                Mutation::StripLink => *next_link = None,
                Mutation::RawCommaLink => {
                    if let Some(link) = next_link.as_mut() {
                        *link = link.replace("%2C", ",");
                    }
                }
                Mutation::SplitLink => {
                    if let Some(link) = next_link.as_ref() {
                        changes.extra_links.push(prev_of(link, page));
                    }
                }
                Mutation::ParamLink => {
                    if let Some(link) = next_link.as_mut() {
                        let target = link.split("; rel=").next().unwrap_or_default().to_string();
                        *link = format!(
                            "{}, {target}; title=\"page, next\"; REL=\"next\"",
                            prev_of(link, page)
                        );
                    }
                }
                Mutation::DropRateHeaders => changes.drop_rate_headers = true,
                Mutation::InvalidUtf8 => changes.invalid_utf8 = true,
                Mutation::Reverse => with_items(body, |items| items.reverse()),
                Mutation::DuplicateFirst => with_items(body, |items| {
                    if let Some(first) = items.first().cloned() {
                        items.push(first);
                    }
                }),
                Mutation::DropFirstOfLinkedPage => with_items(body, |items| {
                    if !items.is_empty() {
                        items.remove(0);
                    }
                }),
                Mutation::IdAsString => each_item(body, |item| {
                    if let Some(id) = item.get("id").and_then(Value::as_i64) {
                        item["id"] = Value::String(id.to_string());
                    }
                }),
                Mutation::NumbersAsStrings => each_item(body, |item| {
                    retype_integers(item, |n| Value::String(n.to_string()))
                }),
                Mutation::IntegersAsFloats => each_item(body, |item| {
                    retype_integers(item, |n| {
                        serde_json::Number::from_f64(n as f64).map_or(Value::Null, Value::Number)
                    })
                }),
                Mutation::NullField(field)
                | Mutation::ObjectToArray(field)
                | Mutation::WordField(field) => {
                    let mut spoiled = Vec::new();
                    each_item(body, |item| {
                        let Some(object) = item.as_object_mut() else {
                            return;
                        };
                        let changed = match (&mutation, object.get_mut(field.as_str())) {
                            (Mutation::NullField(_), Some(v)) if !v.is_null() => {
                                *v = Value::Null;
                                true
                            }
                            (Mutation::WordField(_), Some(v)) if !v.is_null() => {
                                *v = Value::String("Email".into());
                                true
                            }
                            (Mutation::ObjectToArray(_), Some(v)) if v.is_object() => {
                                let values: Vec<Value> = v
                                    .as_object()
                                    .into_iter()
                                    .flatten()
                                    .map(|(_, v)| v.clone())
                                    .collect();
                                *v = Value::Array(values);
                                true
                            }
                            _ => false,
                        };
                        if changed {
                            if let Some(id) = owner.or_else(|| object.get("id").and_then(id_of)) {
                                spoiled.push(id);
                            }
                        }
                    });
                    lock(&self.spoiled).extend(spoiled);
                }
                _ => events.push(mutation),
            }
        }
        (changes, events)
    }
}

/// An item's id, as a number or (after [`Mutation::IdAsString`]) a string.
fn id_of(v: &Value) -> Option<i64> {
    v.as_i64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
}

/// The `rel="prev"` line of a `Link` whose next target is `link` (page `page` − 1, or 1).
fn prev_of(link: &str, page: u32) -> String {
    let target = link.split("; rel=").next().unwrap_or_default();
    let prev = page.saturating_sub(1).max(1);
    let target = target.replace(&format!("page={}", page + 1), &format!("page={prev}"));
    format!("{target}; rel=\"prev\"")
}

/// The array of a list envelope (`{"tickets": [...]}`), if the body is one.
fn with_items(body: &mut Value, f: impl FnOnce(&mut Vec<Value>)) {
    if let Some(Value::Array(items)) = body.as_object_mut().and_then(|o| o.values_mut().next()) {
        f(items);
    }
}

/// Every item of a list envelope, or the object of a single-object envelope.
fn each_item(body: &mut Value, mut f: impl FnMut(&mut Value)) {
    match body.as_object_mut().and_then(|o| o.values_mut().next()) {
        Some(Value::Array(items)) => items.iter_mut().for_each(f),
        Some(item @ Value::Object(_)) => f(item),
        _ => {}
    }
}

/// Replaces every integer of `item`'s top level and of its `stats` object.
fn retype_integers(item: &mut Value, f: impl Fn(i64) -> Value + Copy) {
    let Some(object) = item.as_object_mut() else {
        return;
    };
    for (key, value) in object.iter_mut() {
        match value {
            Value::Number(n) => {
                if let Some(n) = n.as_i64() {
                    *value = f(n);
                }
            }
            Value::Object(_) if key == "stats" => retype_integers(value, f),
            _ => {}
        }
    }
}

/// Text fields whose value [`corrupt_utf8`] spoils, first found first: plain free text a
/// client passes through (a subject, a note, a name, a message's text rendering), never a date,
/// a code or HTML (where U+FFFD before a tag would also move line breaks).
const TEXT_KEYS: &[&[u8]] = &[
    b"\"subject\":\"",
    b"\"body_text\":\"",
    b"\"note\":\"",
    b"\"name\":\"",
    b"\"first_name\":\"",
];

/// The body with one byte of invalid UTF-8 (0xFF) at the start of its first free-text value
/// (see [`TEXT_KEYS`]), or unchanged when it has none. Read lossily, the value becomes
/// U+FFFD followed by the original text.
pub(crate) fn corrupt_utf8(body: &[u8]) -> Vec<u8> {
    let at = TEXT_KEYS
        .iter()
        .filter_map(|key| {
            body.windows(key.len())
                .position(|w| w == *key)
                .map(|i| i + key.len())
        })
        .min();
    let mut out = body.to_vec();
    if let Some(at) = at {
        out.insert(at, 0xFF);
    }
    out
}

/// One mutation rule as written on the command line (`ticketsync sim --mutate …`):
/// `NAME[=FIELD]@ENDPOINT[:PAGE]`, e.g. `strip-link@tickets_list`, `delete-first@tickets_list:1`,
/// `null-field=department_id@tickets_list:2`. Without `:PAGE` it hits every page, for ever;
/// with a page, once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MutationArg(pub HostileRule);

impl std::str::FromStr for MutationArg {
    type Err = String;

    fn from_str(s: &str) -> Result<MutationArg, String> {
        let (what, place) = s.split_once('@').ok_or_else(|| {
            format!("{s:?}: wants NAME@ENDPOINT[:PAGE], e.g. strip-link@tickets_list")
        })?;
        let (name, field) = what.split_once('=').unwrap_or((what, ""));
        let needs_field = |m: fn(String) -> Mutation| -> Result<Mutation, String> {
            if field.is_empty() {
                Err(format!("{name} wants a field: {name}=FIELD@ENDPOINT"))
            } else {
                Ok(m(field.to_string()))
            }
        };
        let mutation = match name {
            "strip-link" => Mutation::StripLink,
            "raw-comma-link" => Mutation::RawCommaLink,
            "split-link" => Mutation::SplitLink,
            "param-link" => Mutation::ParamLink,
            "drop-rate-headers" => Mutation::DropRateHeaders,
            "reverse" => Mutation::Reverse,
            "duplicate-first" => Mutation::DuplicateFirst,
            "drop-first" => Mutation::DropFirstOfLinkedPage,
            "id-as-string" => Mutation::IdAsString,
            "numbers-as-strings" => Mutation::NumbersAsStrings,
            "integers-as-floats" => Mutation::IntegersAsFloats,
            "null-field" => needs_field(Mutation::NullField)?,
            "object-to-array" => needs_field(Mutation::ObjectToArray)?,
            "word-field" => needs_field(Mutation::WordField)?,
            "invalid-utf8" => Mutation::InvalidUtf8,
            "delete-first" => Mutation::DeleteFirst,
            "spam-first" => Mutation::SpamFirst,
            "reopen-first" => Mutation::ReopenFirst,
            "touch-first" => Mutation::TouchFirst,
            "create-ticket" => Mutation::CreateTicket,
            "move-workspace" => Mutation::MoveWorkspace,
            "log-time" => Mutation::LogTime,
            "delete-child-first" => Mutation::DeleteChildFirst,
            "ignore-page" => Mutation::IgnorePage,
            "newest-first" => Mutation::NewestFirst,
            _ => return Err(format!(
                "unknown mutation {name:?} (strip-link, raw-comma-link, split-link, param-link, drop-rate-headers, reverse, duplicate-first, drop-first, id-as-string, numbers-as-strings, integers-as-floats, null-field=F, object-to-array=F, word-field=F, invalid-utf8, delete-first, spam-first, reopen-first, touch-first, create-ticket, move-workspace, log-time, delete-child-first, newest-first, ignore-page)"
            )),
        };
        let (endpoint, page) = match place.split_once(':') {
            Some((e, p)) => (
                e,
                Some(
                    p.parse::<u32>()
                        .ok()
                        .filter(|p| *p >= 1)
                        .ok_or_else(|| format!("{s:?}: {p:?} is not a page number"))?,
                ),
            ),
            None => (place, None),
        };
        if endpoint.is_empty() {
            return Err(format!("{s:?}: no endpoint after @"));
        }
        Ok(MutationArg(HostileRule {
            endpoint: Some(endpoint.to_string()),
            page,
            times: if page.is_some() { 1 } else { u32::MAX },
            skip: 0,
            mutation,
        }))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn wire_mutations_change_body_and_link() {
        let h = Hostile::default();
        h.set(vec![
            HostileRule::always("tickets_list", Mutation::IdAsString),
            HostileRule::once("tickets_list", 1, Mutation::RawCommaLink),
            HostileRule::once(
                "tickets_list",
                1,
                Mutation::NullField("department_id".into()),
            ),
        ]);
        let mut body =
            json!({"tickets": [{"id": 7, "department_id": 3}, {"id": 8, "department_id": null}]});
        let mut link =
            Some("<http://h/api/v2/tickets?include=stats%2Ctags&page=2>; rel=\"next\"".to_string());
        let (_, events) = h.on_reply("tickets_list", 1, None, &mut body, &mut link);
        assert!(events.is_empty());
        assert_eq!(body["tickets"][0]["id"], json!("7"));
        assert_eq!(body["tickets"][0]["department_id"], Value::Null);
        assert!(link.unwrap().contains("include=stats,tags"));
        // Recorded whatever type the id was given before.
        assert_eq!(h.spoiled(), BTreeSet::from([7]));
        // The page-1 rules are spent; the id rule stays.
        let mut body = json!({"tickets": [{"id": 9}]});
        let mut link = None;
        h.on_reply("tickets_list", 2, None, &mut body, &mut link);
        assert_eq!(body["tickets"][0]["id"], json!("9"));
    }

    #[test]
    fn a_dropped_item_only_on_a_linked_page_and_events_come_back() {
        let h = Hostile::default();
        h.push(HostileRule::always(
            "tickets_list",
            Mutation::DropFirstOfLinkedPage,
        ));
        h.push(HostileRule::once("tickets_list", 1, Mutation::DeleteFirst));
        let mut body = json!({"tickets": [{"id": 1}, {"id": 2}]});
        let (_, events) = h.on_reply("tickets_list", 1, None, &mut body, &mut None);
        assert_eq!(
            body["tickets"].as_array().unwrap().len(),
            2,
            "last page: kept"
        );
        assert_eq!(events, vec![Mutation::DeleteFirst]);
        let mut link = Some("<x>; rel=\"next\"".to_string());
        h.on_reply("tickets_list", 1, None, &mut body, &mut link);
        assert_eq!(body["tickets"], json!([{"id": 2}]));
    }

    #[test]
    fn invalid_utf8_lands_inside_a_string() {
        let out = corrupt_utf8(br#"{"tickets":[{"id":1,"subject":"Printer"}]}"#);
        assert!(std::str::from_utf8(&out).is_err());
        assert_eq!(
            String::from_utf8_lossy(&out),
            "{\"tickets\":[{\"id\":1,\"subject\":\"\u{fffd}Printer\"}]}"
        );
    }

    #[test]
    fn mutations_from_the_command_line() {
        let m: MutationArg = "null-field=department_id@tickets_list:2".parse().unwrap();
        assert_eq!(m.0.mutation, Mutation::NullField("department_id".into()));
        assert_eq!((m.0.page, m.0.times), (Some(2), 1));
        let m: MutationArg = "strip-link@conversations".parse().unwrap();
        assert_eq!((m.0.page, m.0.times), (None, u32::MAX));
        assert!("strip-link".parse::<MutationArg>().is_err());
        assert!("null-field@tickets_list".parse::<MutationArg>().is_err());
        assert!("bogus@tickets_list".parse::<MutationArg>().is_err());
        assert!("strip-link@tickets_list:0".parse::<MutationArg>().is_err());
    }
}
