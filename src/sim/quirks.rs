//! Server misbehaviours: a Freshservice-compatible server, caching proxy or API gateway that
//! answers differently from the API's documentation. Unlike the fault script (one request fails
//! once), a quirk changes what *every* matching request is told, and the answers still look
//! valid: a filter that is ignored, a `Link` that loops, an empty page that links onwards, a
//! department record that no longer decodes, a department list that ends early.
//!
//! Tests switch them on with [`crate::sim::Simulator::set_quirks`]; `server.rs` applies them to
//! a reply after the endpoint handler built it (and strips an ignored filter before).

use serde_json::Value;

/// A page of one endpoint's listing (`endpoint` as in `stats::ENDPOINTS`, pages from 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageQuirk {
    /// Endpoint key: `"tickets_list"`, `"departments"`, `"conversations"`, …
    pub endpoint: String,
    /// The page it hits.
    pub page: u32,
}

impl PageQuirk {
    /// Page `page` of `endpoint`.
    pub fn new(endpoint: &str, page: u32) -> PageQuirk {
        PageQuirk {
            endpoint: endpoint.to_string(),
            page,
        }
    }

    pub(crate) fn hits(&self, endpoint: &str, page: u32) -> bool {
        self.endpoint == endpoint && self.page == page
    }
}

/// The switches. `Default` is the documented behaviour.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Quirks {
    /// `GET /tickets?filter=deleted|spam` is answered as if there were no filter: the live
    /// listing, whose tickets say `deleted: false, spam: false`.
    pub ignore_filter: bool,
    /// `GET /tickets?workspace_id=…` is answered as if there were no `workspace_id`: the
    /// primary workspace's tickets, whichever workspace was asked for.
    pub ignore_workspace: bool,
    /// This page's `Link` points at the page itself.
    pub link_loop: Option<PageQuirk>,
    /// This page comes back with no rows but a `Link` to the next page.
    pub empty_page_with_next: Option<PageQuirk>,
    /// These departments' records do not decode (`custom_fields` is a string), in the list and
    /// in `GET /departments/{id}`.
    pub malformed_departments: Vec<i64>,
    /// These departments are left out of `GET /departments` (a list that ended early); `GET
    /// /departments/{id}` still serves them.
    pub unlisted_departments: Vec<i64>,
    /// `GET /tickets/{id}` of these tickets answers a record that does not decode (`status` is
    /// a string); the listing still shows them as they are.
    pub malformed_ticket_views: Vec<i64>,
}

impl Quirks {
    /// Rewrites the rows of a departments reply (`envelope` is `departments` or `department`).
    pub(crate) fn departments(&self, body: &mut Value) {
        if let Some(Value::Array(rows)) = body.get_mut("departments") {
            rows.retain(|d| !self.unlisted_departments.contains(&id_of(d)));
            for d in rows.iter_mut() {
                self.spoil(d);
            }
        }
        if let Some(d) = body.get_mut("department") {
            self.spoil(d);
        }
    }

    /// Rewrites a ticket view.
    pub(crate) fn ticket_view(&self, id: i64, body: &mut Value) {
        if self.malformed_ticket_views.contains(&id) {
            if let Some(ticket) = body.get_mut("ticket") {
                ticket["status"] = Value::String("closed".into());
            }
        }
    }

    fn spoil(&self, department: &mut Value) {
        if self.malformed_departments.contains(&id_of(department)) {
            department["custom_fields"] = Value::String("{not an object".into());
        }
    }
}

/// One quirk as written on the command line (`ticketsync sim --quirk …`): `ignore-filter`,
/// `ignore-workspace`,
/// `loop-link=ENDPOINT:PAGE`, `empty-page=ENDPOINT:PAGE`, `malformed-department=ID`,
/// `unlisted-department=ID`, `malformed-ticket-view=ID`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuirkArg(String);

impl std::str::FromStr for QuirkArg {
    type Err = String;

    fn from_str(s: &str) -> Result<QuirkArg, String> {
        let mut q = Quirks::default();
        q.add(s)?;
        Ok(QuirkArg(s.to_string()))
    }
}

impl Quirks {
    /// Quirks from command-line arguments (each already checked by [`QuirkArg`]'s parser).
    pub fn from_args(args: &[QuirkArg]) -> Result<Quirks, String> {
        let mut quirks = Quirks::default();
        for arg in args {
            quirks.add(&arg.0)?;
        }
        Ok(quirks)
    }

    fn add(&mut self, arg: &str) -> Result<(), String> {
        let (name, value) = arg.split_once('=').unwrap_or((arg, ""));
        let page = |v: &str| -> Result<PageQuirk, String> {
            let (endpoint, page) = v
                .split_once(':')
                .ok_or_else(|| format!("{name} wants ENDPOINT:PAGE, e.g. tickets_list:2"))?;
            let page = page
                .parse()
                .map_err(|_| format!("{name}: {page:?} is not a page number"))?;
            Ok(PageQuirk::new(endpoint, page))
        };
        let id = |v: &str| -> Result<i64, String> {
            v.parse().map_err(|_| format!("{name}: {v:?} is not an id"))
        };
        match name {
            "ignore-filter" => self.ignore_filter = true,
            "ignore-workspace" => self.ignore_workspace = true,
            "loop-link" => self.link_loop = Some(page(value)?),
            "empty-page" => self.empty_page_with_next = Some(page(value)?),
            "malformed-department" => self.malformed_departments.push(id(value)?),
            "unlisted-department" => self.unlisted_departments.push(id(value)?),
            "malformed-ticket-view" => self.malformed_ticket_views.push(id(value)?),
            _ => {
                return Err(format!(
                    "unknown quirk {name:?} (ignore-filter, ignore-workspace, loop-link=E:P, empty-page=E:P, malformed-department=ID, unlisted-department=ID, malformed-ticket-view=ID)"
                ))
            }
        }
        Ok(())
    }
}

fn id_of(v: &Value) -> i64 {
    v.get("id").and_then(Value::as_i64).unwrap_or(i64::MIN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quirks_from_the_command_line() {
        let args: Vec<QuirkArg> = [
            "ignore-filter",
            "loop-link=tickets_list:2",
            "empty-page=conversations:1",
            "malformed-department=7",
            "unlisted-department=8",
        ]
        .iter()
        .map(|a| a.parse().unwrap())
        .collect();
        let q = Quirks::from_args(&args).unwrap();
        assert!(q.ignore_filter);
        assert_eq!(q.link_loop, Some(PageQuirk::new("tickets_list", 2)));
        assert_eq!(
            q.empty_page_with_next,
            Some(PageQuirk::new("conversations", 1))
        );
        assert_eq!(q.malformed_departments, vec![7]);
        assert_eq!(q.unlisted_departments, vec![8]);
        assert!("loop-link=tickets_list".parse::<QuirkArg>().is_err());
        assert!("nonsense".parse::<QuirkArg>().is_err());
    }
}
