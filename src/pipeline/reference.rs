//! What every ticket of a run is normalized against: the workspaces (which listings the run
//! makes; account numbers with `account_from = workspace`), departments (account numbers, per
//! workspace), agents and, for long windows, the requester directory, read once at the start;
//! plus the one-by-one
//! lookups for what those lists did not have (a requester added meanwhile, a department a short
//! list left out).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use super::listing::Settled;
use super::policy;
use crate::job::{AccountFrom, Job};
use crate::normalize::{self, AccountMap, Person, Settings};
use crate::source::{self, wire, Endpoint, Requesters, Source};

/// The reference data of a run.
pub(crate) struct Reference {
    pub(crate) accounts: AccountMap,
    pub(crate) agents: HashMap<i64, Person>,
    /// Group names by id (`GET /groups`, read once per run).
    pub(crate) groups: HashMap<i64, String>,
    /// The requester directory; empty when the listing embeds requesters.
    pub(crate) requesters: HashMap<i64, Person>,
    pub(crate) requester_source: Requesters,
    pub(crate) settings: Settings,
    /// The department custom field and the account map, for departments looked up later.
    pub(crate) account_field: String,
    pub(crate) account_overrides: HashMap<i64, String>,
    /// Requesters the directory did not have, looked up one by one (`None`: no such requester).
    pub(crate) looked_up: Mutex<HashMap<i64, Option<Person>>>,
    /// Departments the list did not have, looked up one by one (one lookup per department,
    /// however many of its tickets are in flight at once).
    pub(crate) departments: Mutex<HashMap<i64, Arc<tokio::sync::OnceCell<Department>>>>,
}

/// A department looked up with `GET /departments/{id}`.
#[derive(Debug, Clone)]
pub(crate) enum Department {
    Found(wire::Department),
    /// 404: it really does not exist.
    Missing,
    /// The record does not decode.
    Unreadable(String),
}

impl Reference {
    /// Reads the workspaces, then the departments of each (see
    /// [`policy::department_workspaces`]), agents and (with [`Requesters::Directory`]) the
    /// requester directory. A department whose record does not decode is kept as unreadable (its
    /// tickets fail this run, see `policy::classify`); a department listing that fails fails the
    /// run, and so does a workspace record that does not decode (its tickets would be missed).
    ///
    /// Everything goes at once: the departments without `workspace_id` (what an account without
    /// workspaces needs) are read beside the workspaces and used when the workspaces say so
    /// (an account with workspaces reads them again per workspace). `settled` learns the
    /// listings to make and whether they embed the requester as soon as both are known, so the
    /// listing ([`super::listing::list_early`]) need not wait for the rest.
    pub(crate) async fn load(
        source: &Source,
        requester_source: Requesters,
        job: &Job,
        settings: Settings,
        settled: Option<oneshot::Sender<Settled>>,
    ) -> Result<Reference, source::Error> {
        let account_field = job.account_field.as_str();
        let overrides = &job.account_map;
        let (listings_tx, listings_rx) = oneshot::channel::<Vec<Option<i64>>>();
        let (mode_tx, mode_rx) = oneshot::channel::<Requesters>();
        let scoped = async {
            let unscoped = matches!(job.account_from, AccountFrom::Department);
            let (workspaces, early_departments) = tokio::join!(source.workspaces(), async {
                match unscoped {
                    true => Some(source.departments(None).await),
                    false => None,
                }
            });
            let workspaces = match workspaces? {
                None => None,
                Some(items) => Some(
                    items
                        .into_iter()
                        .map(|w| {
                            w.map_err(|e| source::Error::Decode {
                                endpoint: Endpoint::Workspaces.name(),
                                path: "workspaces".into(),
                                detail: format!("a workspace does not decode, so its tickets cannot be listed: {}", e.detail),
                            })
                        })
                        .collect::<Result<Vec<_>, _>>()?,
                ),
            };
            let ids: Option<Vec<i64>> = workspaces
                .as_ref()
                .map(|ws| ws.iter().map(|w| w.id).collect());
            let listings = policy::listing_workspaces(ids.as_deref());
            let _ = listings_tx.send(listings.clone());
            let wanted = policy::department_workspaces(job.account_from, &listings);
            let mut departments = Vec::new();
            match early_departments {
                // (Its error matters only when it is the list the run needs.)
                Some(early) if wanted == [None] => departments.extend(early?),
                _ => {
                    for workspace in wanted {
                        departments.extend(source.departments(workspace).await?);
                    }
                }
            }
            Ok::<_, source::Error>((workspaces.unwrap_or_default(), listings, departments))
        };
        let directory = async {
            let requesters = match requester_source {
                Requesters::Directory => source.requesters().await,
                Requesters::Embedded => Ok(Vec::new()),
            };
            // An API key whose role may not read requesters (403), or an API without the list,
            // still syncs: the listing embeds the requester instead.
            let mode = match (requester_source, &requesters) {
                (Requesters::Directory, Err(e))
                    if !matches!(e, source::Error::Unauthorized { .. }) =>
                {
                    tracing::warn!(error = %e, "the requester directory cannot be read; the listing embeds requesters instead");
                    Requesters::Embedded
                }
                (mode, _) => mode,
            };
            let _ = mode_tx.send(mode);
            (mode, requesters)
        };
        let settle = async {
            if let (Some(settled), Ok(workspaces), Ok(requesters)) =
                (settled, listings_rx.await, mode_rx.await)
            {
                let _ = settled.send(Settled {
                    workspaces,
                    requesters,
                });
            }
        };
        let (scoped, agents, groups, (requester_source, requesters), ()) =
            tokio::join!(scoped, source.agents(), source.groups(), directory, settle);
        let (workspaces, listings, departments) = scoped?;
        let mut good = Vec::new();
        let mut unreadable = Vec::new();
        for d in departments {
            match d {
                Ok(d) => good.push(d),
                Err(e) => {
                    tracing::warn!(department = ?e.id, detail = %e.detail, "department does not decode; its tickets fail this run and keep their rows");
                    if let Some(id) = e.id {
                        unreadable.push((id, e.detail));
                    }
                }
            }
        }
        let accounts = match job.account_from {
            AccountFrom::Department => AccountMap::new(&good, account_field, overrides)
                .with_unreadable(unreadable, overrides),
            AccountFrom::Workspace => AccountMap::default().with_workspace_accounts(
                &policy::workspace_account_values(&workspaces, account_field, &job.workspace_map),
            ),
        };
        let agents: HashMap<i64, Person> = every_item(agents?, Endpoint::Agents, "agents")?
            .into_iter()
            .map(|a| (a.id, Person::from_agent(&a)))
            .collect();
        let groups = group_names(groups)?;
        let requesters = match requester_source {
            Requesters::Embedded => Vec::new(),
            Requesters::Directory => requesters?,
        };
        let requesters: HashMap<i64, Person> = requesters
            .into_iter()
            .filter_map(|r| match r {
                Ok(r) => Some((r.id, Person::from_requester(&r))),
                Err(e) => {
                    tracing::warn!(requester = ?e.id, detail = %e.detail, "requester does not decode; its tickets look it up one by one");
                    None
                }
            })
            .collect();
        tracing::info!(
            workspaces = workspaces.len(),
            listings = listings.len(),
            departments = accounts.len(),
            agents = agents.len(),
            requesters = requesters.len(),
            "reference data loaded"
        );
        Ok(Reference {
            accounts,
            agents,
            groups,
            requesters,
            requester_source,
            settings,
            account_field: account_field.to_string(),
            account_overrides: overrides.clone(),
            looked_up: Default::default(),
            departments: Default::default(),
        })
    }

    pub(crate) fn context(&self) -> normalize::Context<'_> {
        self.context_with(&self.accounts)
    }

    /// The normalization context with another account map (one that knows a looked-up
    /// department).
    pub(crate) fn context_with<'a>(&'a self, accounts: &'a AccountMap) -> normalize::Context<'a> {
        normalize::Context {
            accounts,
            agents: &self.agents,
            requesters: &self.requesters,
            groups: &self.groups,
            settings: &self.settings,
        }
    }

    /// A department the list did not have: one `GET /departments/{id}` per department and run.
    /// Errors (other than a 404 or a record that does not decode) are not remembered, so the
    /// next ticket of that department tries again.
    pub(crate) async fn department(
        &self,
        source: &Source,
        id: i64,
    ) -> Result<Department, source::Error> {
        let cell = self
            .departments
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(id)
            .or_default()
            .clone();
        cell.get_or_try_init(|| async {
            Ok(match source.department(id).await? {
                None => Department::Missing,
                Some(Ok(d)) => Department::Found(d),
                Some(Err(e)) => Department::Unreadable(e.detail),
            })
        })
        .await
        .cloned()
    }

    /// The account map with a looked-up department added.
    pub(crate) fn accounts_with(&self, department: &wire::Department) -> AccountMap {
        let mut accounts = self.accounts.clone();
        accounts.add(department, &self.account_field, &self.account_overrides);
        accounts
    }

    /// The requester embed for a ticket whose requester neither the listing, the directory nor
    /// the agents know (someone added after the directory was read): one `GET /requesters/{id}`
    /// per such person and run. `None` when nothing is missing or there is no such requester.
    pub(crate) async fn missing_requester(
        &self,
        source: &Source,
        ticket: &wire::Ticket,
    ) -> Result<Option<wire::EmbeddedRequester>, source::Error> {
        let Some(id) = ticket.requester_id else {
            return Ok(None);
        };
        if self.requester_source == Requesters::Embedded
            || ticket.requester.is_some()
            || self.requesters.contains_key(&id)
            || self.agents.contains_key(&id)
        {
            return Ok(None);
        }
        let cached = self
            .looked_up
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .cloned();
        let person = match cached {
            Some(person) => person,
            None => {
                let person = match source.requester(id).await {
                    Ok(found) => found.map(|r| Person::from_requester(&r)),
                    Err(source::Error::Decode { detail, .. }) => {
                        tracing::warn!(ticket_id = ticket.id, requester = id, %detail, "requester does not decode; the ticket has no requester name");
                        None
                    }
                    Err(e) => return Err(e),
                };
                self.looked_up
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(id, person.clone());
                person
            }
        };
        Ok(person.map(|p| p.as_embed(id)))
    }
}

/// Group names by id. Every account has groups: a list that cannot be read (403, 404) or an
/// item that does not decode fails the run like the other reference lists, rather than writing
/// every ticket with its `group_name` null and reporting success.
fn group_names(
    groups: Result<source::Items<wire::Group>, source::Error>,
) -> Result<HashMap<i64, String>, source::Error> {
    Ok(every_item(groups?, Endpoint::Groups, "groups")?
        .into_iter()
        .filter_map(|g| Some((g.id, g.name?)))
        .collect())
}

/// A reference list whose every item decoded. An agent or group record that does not (its
/// `id` unusable: the text fields are lenient) would leave notes, time entries and tickets
/// without the names it gives, silently: the run fails instead, naming the item.
fn every_item<T>(
    items: source::Items<T>,
    endpoint: Endpoint,
    path: &str,
) -> Result<Vec<T>, source::Error> {
    items
        .into_iter()
        .map(|item| {
            item.map_err(|e| source::Error::Decode {
                endpoint: endpoint.name(),
                path: format!("/api/v2/{path}"),
                detail: format!(
                    "a record does not decode ({}); the names it gives would be missing",
                    e.detail
                ),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;
    use crate::sim::{SimConfig, Simulator};
    use crate::source::limiter::LimiterConfig;
    use crate::source::retry::RetryPolicy;
    use crate::source::ClientConfig;

    fn reference(requesters: HashMap<i64, Person>, source: Requesters) -> Reference {
        Reference {
            accounts: AccountMap::new(&[], "account_number", &HashMap::new()),
            agents: HashMap::new(),
            groups: HashMap::new(),
            requesters,
            requester_source: source,
            settings: Settings {
                default_minutes: 15,
                synced_at: Utc::now(),
                privacy: crate::normalize::Privacy::none(),
            },
            account_field: "account_number".into(),
            account_overrides: HashMap::new(),
            looked_up: Default::default(),
            departments: Default::default(),
        }
    }

    fn ticket(id: i64, requester_id: i64) -> wire::Ticket {
        serde_json::from_value(serde_json::json!({"id": id, "requester_id": requester_id})).unwrap()
    }

    async fn simulator() -> (Simulator, Source) {
        let sim = Simulator::start(
            SimConfig {
                tickets: 20,
                rate_limit: false,
                ..SimConfig::default()
            },
            0,
        )
        .await
        .unwrap();
        let source = Source::new(ClientConfig {
            base_url: url::Url::parse(&sim.base_url()).unwrap(),
            api_key: sim.api_key(),
            limiter: LimiterConfig::default(),
            retry: RetryPolicy::default(),
            timeout: std::time::Duration::from_secs(5),
            max_response_bytes: crate::source::client::DEFAULT_MAX_RESPONSE_BYTES,
        })
        .unwrap();
        (sim, source)
    }

    #[tokio::test]
    async fn a_requester_missing_from_the_directory_is_looked_up_once() {
        let (sim, source) = simulator().await;
        let truth = sim.ground_truth();
        let known = &truth.requesters[0];
        let (name, email) = truth.user(known.id).unwrap();

        // The directory was read without this requester (added after it was read).
        let directory = reference(HashMap::new(), Requesters::Directory);
        for ticket_id in [1, 2, 3] {
            let embed = directory
                .missing_requester(&source, &ticket(ticket_id, known.id))
                .await
                .unwrap()
                .expect("looked up");
            assert_eq!(embed.name.as_deref(), Some(name.as_str()));
            assert_eq!(embed.email.as_deref(), Some(email.as_str()));
        }
        // No such requester: nothing to embed, and that is remembered too.
        for _ in 0..2 {
            let none = directory
                .missing_requester(&source, &ticket(4, 999))
                .await
                .unwrap();
            assert_eq!(none, None);
        }
        assert_eq!(sim.stats().by_endpoint["requester_view"], 2);

        // Known to the directory, or embedded by the listing: no call.
        let person = Person {
            name: Some(name.clone()),
            email: Some(email.clone()),
        };
        let full = reference(HashMap::from([(known.id, person)]), Requesters::Directory);
        assert_eq!(
            full.missing_requester(&source, &ticket(5, known.id))
                .await
                .unwrap(),
            None
        );
        let embedded = reference(HashMap::new(), Requesters::Embedded);
        assert_eq!(
            embedded
                .missing_requester(&source, &ticket(6, known.id))
                .await
                .unwrap(),
            None
        );
        assert_eq!(sim.stats().by_endpoint["requester_view"], 2);
        sim.shutdown().await;
    }

    #[tokio::test]
    async fn a_department_the_list_left_out_is_looked_up_once() {
        let (sim, source) = simulator().await;
        let truth = sim.ground_truth();
        let known = truth.departments[0].id;
        let refs = reference(HashMap::new(), Requesters::Embedded);
        for _ in 0..2 {
            assert!(matches!(
                refs.department(&source, known).await.unwrap(),
                Department::Found(d) if d.id == known
            ));
            assert!(matches!(
                refs.department(&source, 999_999).await.unwrap(),
                Department::Missing
            ));
        }
        assert_eq!(sim.stats().by_endpoint["department_view"], 2);
        sim.shutdown().await;
    }
}
