//! The Freshservice v2 source: departments, agents, the closed-ticket listing and each ticket's
//! conversations and time entries.
//!
//! It returns API shapes ([`wire`]) and knows nothing about Arrow, Parquet, markdown or storage.
//! Items that do not decode are returned as [`wire::ItemError`]s next to the good ones, so the
//! pipeline can reject one ticket and go on.

pub mod client;
pub mod limiter;
pub mod retry;
pub mod wire;

use chrono::{DateTime, SecondsFormat, Utc};
use url::Url;

use crate::error::Class;
pub use client::{CallStats, Client, ClientConfig};
use wire::ItemError;

/// Source errors, by the decision the caller makes.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The key was refused: abort the run, exit with the configuration/auth code.
    #[error("freshservice at {host} refused the API key (401: {message}); check FRESHSERVICE_API_KEY and the domain")]
    Unauthorized {
        /// The API host (`<domain>.freshservice.com`, or the simulator's address).
        host: String,
        /// The API's error message, if its body had one.
        message: String,
    },
    /// The key's agent may not read this: abort (a partial export would look complete).
    #[error("freshservice at {host} denied access to {endpoint} (403: {message}); the API key's agent needs permission to read tickets, conversations and time entries")]
    Forbidden {
        /// The API host.
        host: String,
        /// The [`Endpoint::name`] of the refused call.
        endpoint: &'static str,
        /// The API's error message, if its body had one.
        message: String,
    },
    /// The object is gone (a ticket deleted meanwhile).
    #[error("{endpoint} {path} not found (404)")]
    NotFound {
        /// The [`Endpoint::name`] of the call.
        endpoint: &'static str,
        /// The URL path of the missing object (e.g. `/api/v2/tickets/17531/conversations`).
        path: String,
    },
    /// A request the API refused; retrying would not help.
    #[error("{endpoint} answered {status}: {message}")]
    Status {
        /// The [`Endpoint::name`] of the call.
        endpoint: &'static str,
        /// The HTTP status (a 4xx other than 401, 403, 404 and 429).
        status: u16,
        /// The API's error message, if its body had one.
        message: String,
    },
    /// Transient failures (5xx, timeouts, broken bodies, 429s) outlasted the retry policy.
    #[error("{endpoint} {path} failed after {attempts} attempts: {last}")]
    Exhausted {
        /// The [`Endpoint::name`] of the call.
        endpoint: &'static str,
        /// Host and path of the last request, never the query or credentials.
        path: String,
        /// How many requests were sent, the first included.
        attempts: u32,
        /// The last failure: a status and message, or the transport error.
        last: String,
    },
    /// A `Link` header pointed somewhere we will not send credentials.
    #[error(
        "{endpoint} returned a next-page link to another host ({link}); refusing to follow it"
    )]
    ForeignLink {
        /// The [`Endpoint::name`] of the listing.
        endpoint: &'static str,
        /// The `Link` target as the server sent it.
        link: String,
    },
    /// A page decoded as JSON but not as the expected envelope.
    #[error("{endpoint} {path}: {detail}")]
    Decode {
        /// The [`Endpoint::name`] of the call.
        endpoint: &'static str,
        /// The URL path of the page.
        path: String,
        /// What did not decode, with the JSON path of the problem.
        detail: String,
    },
    /// A listing that cannot show it read every page: a `Link` back to a page already read, an
    /// empty page that links onwards, or more pages than `max_pages`. Taking what was read as
    /// complete could lose tickets (or, for the deleted/spam views, remove them).
    #[error("{endpoint} listing {path}: {detail}; the run cannot show it read every page")]
    Paging {
        /// The [`Endpoint::name`] of the listing.
        endpoint: &'static str,
        /// The URL path of the listing.
        path: String,
        /// What showed the listing incomplete (the looping link, the empty page, the page count).
        detail: String,
    },
    /// The client could not be built from its configuration (base URL, API key characters, TLS):
    /// a configuration error, before any request.
    #[error("invalid source configuration: {0}")]
    Config(String),
    /// A response body above the cap (`max_response_mb`): failed, not retried (it would be as
    /// large again), instead of the process running out of memory. `path` is host and path.
    #[error("{endpoint} {path}: the response body is larger than the cap of {limit_bytes} bytes (max_response_mb); not read")]
    TooLarge {
        /// The [`Endpoint::name`] of the call.
        endpoint: &'static str,
        /// Host and path, never the query or credentials.
        path: String,
        /// The cap, in bytes.
        limit_bytes: u64,
    },
}

impl crate::error::Classify for Error {
    /// Credentials, permissions and configuration are [`Class::Config`]; what retries outlasted
    /// is [`Class::Retryable`]; answers that cannot be right (a listing that cannot show it
    /// ended, a body that does not decode or is too large) are [`Class::Failed`].
    fn class(&self) -> Class {
        match self {
            Error::Unauthorized { .. } | Error::Forbidden { .. } | Error::Config(_) => {
                Class::Config
            }
            Error::Exhausted { .. } | Error::NotFound { .. } => Class::Retryable,
            Error::Status { .. }
            | Error::ForeignLink { .. }
            | Error::Decode { .. }
            | Error::Paging { .. }
            | Error::TooLarge { .. } => Class::Failed,
        }
    }
}

/// The API endpoints we call, for budgeting and statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Endpoint {
    /// `GET /workspaces`.
    Workspaces,
    /// `GET /departments` and `GET /departments/{id}`.
    Departments,
    /// `GET /agents`.
    Agents,
    /// `GET /groups`.
    Groups,
    /// `GET /requesters` and `GET /requesters/{id}`.
    Requesters,
    /// `GET /tickets` (the closed-ticket listing and the deleted/spam views).
    TicketsList,
    /// `GET /tickets/filter`: only `ticketsync check` counts with it.
    TicketsFilter,
    /// `GET /tickets/{id}`.
    TicketView,
    /// `GET /tickets/{id}/conversations`.
    Conversations,
    /// `GET /tickets/{id}/time_entries`.
    TimeEntries,
}

impl Endpoint {
    /// Every endpoint, in declaration order (metrics write each, 0 when not called).
    pub const ALL: [Endpoint; 10] = [
        Endpoint::Workspaces,
        Endpoint::Departments,
        Endpoint::Agents,
        Endpoint::Groups,
        Endpoint::Requesters,
        Endpoint::TicketsList,
        Endpoint::TicketsFilter,
        Endpoint::TicketView,
        Endpoint::Conversations,
        Endpoint::TimeEntries,
    ];

    /// A new variant breaks the build here until it is added to [`Endpoint::ALL`] too.
    const _EXHAUSTIVE: fn(Endpoint) = |e| match e {
        Endpoint::Workspaces
        | Endpoint::Departments
        | Endpoint::Agents
        | Endpoint::Groups
        | Endpoint::Requesters
        | Endpoint::TicketsList
        | Endpoint::TicketsFilter
        | Endpoint::TicketView
        | Endpoint::Conversations
        | Endpoint::TimeEntries => (),
    };

    /// The snake_case name used in errors, logs and the report's per-endpoint call counts.
    pub fn name(self) -> &'static str {
        match self {
            Endpoint::Workspaces => "workspaces",
            Endpoint::Departments => "departments",
            Endpoint::Agents => "agents",
            Endpoint::Groups => "groups",
            Endpoint::Requesters => "requesters",
            Endpoint::TicketsList => "tickets_list",
            Endpoint::TicketsFilter => "tickets_filter",
            Endpoint::TicketView => "ticket_view",
            Endpoint::Conversations => "conversations",
            Endpoint::TimeEntries => "time_entries",
        }
    }

    /// Listing pages and reference lists feed the workers: they go before per-ticket calls.
    pub fn class(self) -> limiter::Class {
        match self {
            Endpoint::Workspaces
            | Endpoint::Departments
            | Endpoint::Agents
            | Endpoint::Groups
            | Endpoint::Requesters
            | Endpoint::TicketsList
            | Endpoint::TicketsFilter => limiter::Class::Feed,
            Endpoint::TicketView | Endpoint::Conversations | Endpoint::TimeEntries => {
                limiter::Class::Work
            }
        }
    }

    /// Whether the call counts against the "List All Tickets" sub-limit.
    pub fn is_ticket_list(self) -> bool {
        self == Endpoint::TicketsList
    }

    /// Credits a call is expected to cost (API reference §3): 1, plus 2 per `include` on the
    /// ticket list and 1 per `include` on a ticket view.
    pub fn estimated_credits(self, url: &Url) -> u32 {
        let includes = url
            .query_pairs()
            .find(|(k, _)| k == "include")
            .map(|(_, v)| v.split(',').filter(|s| !s.trim().is_empty()).count() as u32)
            .unwrap_or(0);
        match self {
            Endpoint::TicketsList => 1 + 2 * includes,
            Endpoint::TicketView => 1 + includes,
            _ => 1,
        }
    }
}

/// Which slice of the ticket list to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListFilter {
    /// The normal view (deleted and spam excluded).
    Live,
    /// `filter=deleted`.
    Deleted,
    /// `filter=spam`.
    Spam,
}

/// Where requester names and emails come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requesters {
    /// `include=requester` on every listing page: 2 credits per 100 listed tickets, the cheaper
    /// way for a short window (a nightly run lists a page or two).
    Embedded,
    /// No embed; the caller reads `GET /requesters` once (1 credit per 100 people), the cheaper
    /// way when the listing is long (a full sync lists a year of tickets).
    Directory,
}

/// The items of a listing or a page, each decoded or the [`ItemError`] saying why not.
pub type Items<T> = Vec<Result<T, ItemError>>;

/// The Freshservice source of one run.
#[derive(Debug)]
pub struct Source {
    client: Client,
    /// Most pages one listing may have before the run gives up on it (a server that links on
    /// forever must not keep the run, and its lock, alive).
    max_pages: u32,
}

const PER_PAGE: &str = "100";

/// The reference lists a run reads at its start, one credit each: workspaces, departments,
/// agents, groups, requesters.
const OPENING_REFERENCE_CALLS: f64 = 5.0;

/// The most listing pages a run asks for at once before its first answer.
pub const MAX_OPENING_PAGES: u32 = 16;

/// Listing pages a long listing (a full sync: a year of tickets, dozens of pages) asks for at
/// once, beside the reference data: as many as the budget buys in one `round_trip` at
/// `credits_per_sec` (the allowance assumed: what the previous run saw), `page_credits` each,
/// from 1 to [`MAX_OPENING_PAGES`]. Those pages would be read later at the budget's pace
/// anyway, so the first round trip, with nothing to fetch yet, spends its budget on them.
/// Without a round trip known (a first run) one page: past the listing's end each costs its
/// credits, and on a real minute window one round trip buys a page or less.
pub fn opening_pages(
    credits_per_sec: f64,
    round_trip: Option<std::time::Duration>,
    page_credits: f64,
) -> u32 {
    let Some(round_trip) = round_trip else {
        return 1;
    };
    let pages = (credits_per_sec * round_trip.as_secs_f64() / page_credits.max(1.0)).floor();
    if pages.is_finite() {
        (pages as u32).clamp(1, MAX_OPENING_PAGES)
    } else {
        1
    }
}

/// Reads of one child list before a list that keeps changing fails its ticket.
const MAX_CHILD_READS: u32 = 3;

/// Default for [`Source::with_max_pages`]: 20,000 pages of 100 tickets is two million tickets in
/// one window, far past any real account.
pub const DEFAULT_MAX_PAGES: u32 = 20_000;

impl Source {
    /// A source over a new [`Client`], with listings capped at [`DEFAULT_MAX_PAGES`].
    pub fn new(config: ClientConfig) -> Result<Source, Error> {
        Ok(Source {
            client: Client::new(config)?,
            max_pages: DEFAULT_MAX_PAGES,
        })
    }

    /// Caps every listing at `max_pages` pages (at least 1).
    #[must_use]
    pub fn with_max_pages(mut self, max_pages: u32) -> Source {
        self.max_pages = max_pages.max(1);
        self
    }

    /// The HTTP client, for its statistics and the credit limiter it shares.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Every workspace (client, in Freshservice for MSPs), all pages; `None` only when the
    /// account has no workspaces feature (`GET /workspaces` answers 404): then every listing
    /// without `workspace_id` is the whole account, as before workspaces existed.
    ///
    /// Any other failure is an error, a 403 included: on an account with workspaces a listing
    /// without `workspace_id` is the primary workspace only, so a key that may not read the
    /// workspaces would export part of the account and report success.
    pub async fn workspaces(&self) -> Result<Option<Items<wire::Workspace>>, Error> {
        let url = self
            .client
            .url("workspaces", &[("per_page", PER_PAGE.into())]);
        match self
            .all_pages(Endpoint::Workspaces, url, "workspaces", false)
            .await
        {
            Ok(items) => Ok(Some(items)),
            Err(Error::NotFound { .. }) => Ok(None),
            Err(Error::Forbidden {
                host,
                endpoint,
                message,
            }) => {
                let why = "the API key may not read GET /workspaces, and without the workspaces only the primary workspace could be listed";
                Err(Error::Forbidden {
                    host,
                    endpoint,
                    message: if message.is_empty() {
                        why.to_string()
                    } else {
                        format!("{message}; {why}")
                    },
                })
            }
            Err(e) => Err(e),
        }
    }

    /// Every department (customer company), all pages; with `workspace`, those of that
    /// workspace (departments are specific to each client in Freshservice for MSPs).
    pub async fn departments(
        &self,
        workspace: Option<i64>,
    ) -> Result<Items<wire::Department>, Error> {
        let mut query = vec![("per_page", PER_PAGE.to_string())];
        if let Some(id) = workspace {
            query.push(("workspace_id", id.to_string()));
        }
        let url = self.client.url("departments", &query);
        self.all_pages(Endpoint::Departments, url, "departments", true)
            .await
    }

    /// Every agent, all pages (to name note and time-entry authors).
    pub async fn agents(&self) -> Result<Items<wire::Agent>, Error> {
        let url = self.client.url("agents", &[("per_page", PER_PAGE.into())]);
        self.all_pages(Endpoint::Agents, url, "agents", true).await
    }

    /// Every agent group, all pages (to name a ticket's group).
    pub async fn groups(&self) -> Result<Items<wire::Group>, Error> {
        let url = self.client.url("groups", &[("per_page", PER_PAGE.into())]);
        self.all_pages(Endpoint::Groups, url, "groups", true).await
    }

    /// One department, for a ticket whose department the list did not have; `None` when there
    /// is no such department (404: the only evidence that it was really removed).
    pub async fn department(
        &self,
        id: i64,
    ) -> Result<Option<Result<wire::Department, ItemError>>, Error> {
        let url = self.client.url(&format!("departments/{id}"), &[]);
        self.view(Endpoint::Departments, &url, "department").await
    }

    /// Every requester, all pages (agents are not in this list; they come from [`Self::agents`]).
    pub async fn requesters(&self) -> Result<Items<wire::Requester>, Error> {
        let url = self
            .client
            .url("requesters", &[("per_page", PER_PAGE.into())]);
        self.all_pages(Endpoint::Requesters, url, "requesters", true)
            .await
    }

    /// One requester; `None` when there is no such requester (404).
    pub async fn requester(&self, id: i64) -> Result<Option<wire::Requester>, Error> {
        let url = self.client.url(&format!("requesters/{id}"), &[]);
        let Some(body) = self.one(Endpoint::Requesters, &url, "requester").await? else {
            return Ok(None);
        };
        match wire::decode_one::<wire::Requester>(&body, "requester") {
            Ok(Ok(r)) => Ok(Some(r)),
            Ok(Err(item)) => Err(Error::Decode {
                endpoint: Endpoint::Requesters.name(),
                path: url.path().to_string(),
                detail: item.detail,
            }),
            Err(detail) => Err(Error::Decode {
                endpoint: Endpoint::Requesters.name(),
                path: url.path().to_string(),
                detail,
            }),
        }
    }

    /// Every ticket updated at or after `since` (all statuses; the caller keeps the closed ones).
    /// The live view embeds `stats` (for `closed_at` and the SLA times), `tags` and, with
    /// [`Requesters::Embedded`], the requester's name and email; the deleted and spam views are
    /// read for their ids only and embed nothing (1 credit a page instead of 5 or 7).
    /// Default `created_at` order: a ticket that enters the listing while it is paged (created,
    /// or updated into the window) only pushes rows down, so paged one page after the other,
    /// none is skipped; the caller dedupes by id.
    /// `workspace`: list that workspace (`workspace_id=`); `None`: no `workspace_id` (the whole
    /// account without workspaces, the primary workspace with them).
    pub async fn tickets_updated_since(
        &self,
        since: DateTime<Utc>,
        filter: ListFilter,
        requesters: Requesters,
        workspace: Option<i64>,
    ) -> Result<Items<wire::Ticket>, Error> {
        let url = self.tickets_url(since, filter, requesters, workspace);
        self.all_pages(Endpoint::TicketsList, url, "tickets", false)
            .await
    }

    /// Like [`Self::tickets_updated_since`], but hands each page to `pages` as soon as it
    /// arrives, so per-ticket work can start while the listing goes on. Stops early (without an
    /// error) when the receiver is gone. Returns how many pages it read.
    ///
    /// With `read_ahead` the next page is asked for while the current one is in flight (see
    /// [`Self::each_page`]), so the server may serve a page before the one it follows: a ticket
    /// that enters the listing in between (created, or updated into the window) pushes a row
    /// of the earlier page onto the later one, already read. The caller must show that no
    /// ticket entered while the pages were read, or read the listing again without it. Without
    /// `read_ahead` each page is asked for after the one before it was answered: a ticket that
    /// enters only repeats a row.
    pub async fn stream_tickets_updated_since(
        &self,
        since: DateTime<Utc>,
        filter: ListFilter,
        requesters: Requesters,
        workspace: Option<i64>,
        read_ahead: bool,
        pages: tokio::sync::mpsc::Sender<Items<wire::Ticket>>,
    ) -> Result<u32, Error> {
        let url = self.tickets_url(since, filter, requesters, workspace);
        self.each_page(
            Endpoint::TicketsList,
            url,
            "tickets",
            read_ahead,
            1,
            |items| {
                let pages = pages.clone();
                async move { pages.send(items).await.is_ok() }
            },
        )
        .await
    }

    /// [`Self::stream_tickets_updated_since`] (read ahead) that asks for nothing after its
    /// `opening` pages (page 1 and the ones after it, at once) until `go` says whether to go
    /// on: `false` ends the listing there, its first page unsent. A listing started before the
    /// run knows it is the one to make costs its opening pages when it is not.
    pub async fn stream_tickets_updated_since_once<G>(
        &self,
        since: DateTime<Utc>,
        requesters: Requesters,
        opening: u32,
        go: G,
        pages: tokio::sync::mpsc::Sender<Items<wire::Ticket>>,
    ) -> Result<u32, Error>
    where
        G: std::future::Future<Output = bool>,
    {
        let url = self.tickets_url(since, ListFilter::Live, requesters, None);
        let mut go = Some(go);
        self.each_page(
            Endpoint::TicketsList,
            url,
            "tickets",
            true,
            opening,
            |items| {
                let pages = pages.clone();
                let gate = go.take();
                async move {
                    if let Some(gate) = gate {
                        if !gate.await {
                            return false;
                        }
                    }
                    pages.send(items).await.is_ok()
                }
            },
        )
        .await
    }

    /// Readies the budget for a run's opening and says how many pages of the live listing
    /// [`Self::stream_tickets_updated_since_once`] is to ask for at once: a `long` listing's
    /// first round trip buys what the budget gives in it (see [`opening_pages`]), a short
    /// one's a page. The reference lists and those
    /// pages may go at once, before the first answer tells the allowance.
    pub fn open_listing(&self, since: DateTime<Utc>, requesters: Requesters, long: bool) -> u32 {
        let url = self.tickets_url(since, ListFilter::Live, requesters, None);
        let page = Endpoint::TicketsList.estimated_credits(&url) as f64;
        let pages = if long {
            opening_pages(
                self.client.target_rate_per_sec(),
                self.client.latency(),
                page,
            )
        } else {
            1
        };
        self.client
            .open_budget(OPENING_REFERENCE_CALLS + page * pages as f64, pages as f64);
        pages
    }

    fn tickets_url(
        &self,
        since: DateTime<Utc>,
        filter: ListFilter,
        requesters: Requesters,
        workspace: Option<i64>,
    ) -> Url {
        let mut query = vec![(
            "updated_since",
            since.to_rfc3339_opts(SecondsFormat::Secs, true),
        )];
        match (filter, requesters) {
            (ListFilter::Live, Requesters::Embedded) => {
                query.push(("include", "stats,requester,tags".into()))
            }
            (ListFilter::Live, Requesters::Directory) => {
                query.push(("include", "stats,tags".into()))
            }
            (ListFilter::Deleted, _) => query.push(("filter", "deleted".into())),
            (ListFilter::Spam, _) => query.push(("filter", "spam".into())),
        }
        query.push(("per_page", PER_PAGE.into()));
        if let Some(id) = workspace {
            query.push(("workspace_id", id.to_string()));
        }
        self.client.url("tickets", &query)
    }

    /// How many tickets match a `/tickets/filter` query (§6; `query` without its double
    /// quotes, e.g. `status:5 AND updated_at:>'2025-01-01T00:00:00Z'`): the `total` of the
    /// first page, one call. `workspace`: as for the listing. The count comes from the API's
    /// search index, which can lag recent changes by minutes: an estimate, not a change feed.
    pub async fn count_tickets(&self, query: &str, workspace: Option<i64>) -> Result<u64, Error> {
        let mut params = vec![("query", format!("\"{query}\""))];
        if let Some(id) = workspace {
            params.push(("workspace_id", id.to_string()));
        }
        let url = self.client.url("tickets/filter", &params);
        let total = |body: &[u8]| -> Result<u64, String> {
            let value: serde_json::Value =
                serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
            value
                .get("total")
                .and_then(serde_json::Value::as_u64)
                .ok_or_else(|| "the answer has no numeric total".to_string())
        };
        let page = self
            .client
            .get(Endpoint::TicketsFilter, &url, |b| total(b).map(|_| ()))
            .await?;
        total(&page.body).map_err(|detail| Error::Decode {
            endpoint: Endpoint::TicketsFilter.name(),
            path: url.path().to_string(),
            detail,
        })
    }

    /// The first page of the requester directory (one call): how many requesters it holds and
    /// whether more pages follow.
    pub async fn requesters_first_page(&self) -> Result<(u64, bool), Error> {
        let url = self
            .client
            .url("requesters", &[("per_page", PER_PAGE.into())]);
        let page = self
            .client
            .get(Endpoint::Requesters, &url, |b| {
                wire::decode_each::<serde_json::Value>(b, "requesters").map(|_| ())
            })
            .await?;
        let items =
            wire::decode_each::<serde_json::Value>(&page.body, "requesters").map_err(|detail| {
                Error::Decode {
                    endpoint: Endpoint::Requesters.name(),
                    path: url.path().to_string(),
                    detail,
                }
            })?;
        Ok((items.len() as u64, page.next.is_some()))
    }

    /// One ticket with stats and requester; `None` when it does not exist (404).
    pub async fn ticket(&self, id: i64) -> Result<Option<Result<wire::Ticket, ItemError>>, Error> {
        let url = self.client.url(
            &format!("tickets/{id}"),
            &[("include", "stats,requester,tags".into())],
        );
        self.view(Endpoint::TicketView, &url, "ticket").await
    }

    /// Every conversation of a ticket (replies, forwards, public and private notes), all pages.
    pub async fn conversations(&self, ticket_id: i64) -> Result<Items<wire::Conversation>, Error> {
        let url = self.client.url(
            &format!("tickets/{ticket_id}/conversations"),
            &[("per_page", PER_PAGE.into())],
        );
        self.child_list(Endpoint::Conversations, url, "conversations")
            .await
    }

    /// Every time entry of a ticket, all pages.
    pub async fn time_entries(&self, ticket_id: i64) -> Result<Items<wire::TimeEntry>, Error> {
        let url = self.client.url(
            &format!("tickets/{ticket_id}/time_entries"),
            &[("per_page", PER_PAGE.into())],
        );
        self.child_list(Endpoint::TimeEntries, url, "time_entries")
            .await
    }

    /// A ticket's child list, deduplicated by id. Offset paging over a list that changes while
    /// it is read shifts rows across page boundaries: a child removed from page 1 while page 2
    /// loads pulls page 2's first row onto page 1, already read (lost, and nothing shows it); a
    /// child added repeats a row. So a list of more than one page, or with an id on two pages, is
    /// read again until two reads in a row hold the same ids ([`MAX_CHILD_READS`] reads at most,
    /// then the ticket fails: its hours cannot be shown complete). What is still repeated keeps
    /// its newest version (latest `updated_at`). Items that lost their ids cannot be compared
    /// or deduplicated and are kept as read.
    async fn child_list<T>(
        &self,
        endpoint: Endpoint,
        url: Url,
        key: &'static str,
    ) -> Result<Items<T>, Error>
    where
        T: for<'de> serde::Deserialize<'de> + wire::Child,
    {
        let (mut items, pages) = self
            .counted_pages(endpoint, url.clone(), key, false)
            .await?;
        if pages > 1 || wire::has_duplicate_ids(&items) {
            let mut reads = 1;
            loop {
                if reads >= MAX_CHILD_READS {
                    return Err(Error::Paging {
                        endpoint: endpoint.name(),
                        path: url.path().to_string(),
                        detail: format!(
                            "the list changed under each of {MAX_CHILD_READS} reads; rows may have shifted past a page boundary"
                        ),
                    });
                }
                let (again, _) = self
                    .counted_pages(endpoint, url.clone(), key, false)
                    .await?;
                reads += 1;
                let stable = wire::sorted_ids(&again) == wire::sorted_ids(&items)
                    && !wire::has_duplicate_ids(&again);
                items = again;
                if stable {
                    break;
                }
                tracing::warn!(
                    endpoint = endpoint.name(),
                    path = url.path(),
                    "a child list changed while it was read; reading it again"
                );
            }
        }
        Ok(wire::dedupe_by_id(items))
    }

    /// A single object, decoded: `None` when it does not exist (404), `Some(Err)` when the
    /// envelope is fine but the object does not decode.
    async fn view<T: for<'de> serde::Deserialize<'de>>(
        &self,
        endpoint: Endpoint,
        url: &Url,
        key: &'static str,
    ) -> Result<Option<Result<T, ItemError>>, Error> {
        let Some(body) = self.one(endpoint, url, key).await? else {
            return Ok(None);
        };
        wire::decode_one(&body, key)
            .map(Some)
            .map_err(|detail| Error::Decode {
                endpoint: endpoint.name(),
                path: url.path().to_string(),
                detail,
            })
    }

    /// The body of a single-object response (`{"<key>": {…}}`), whose envelope is checked (a
    /// body without the `key` object is retried like a truncated one); `None` when the object
    /// does not exist (404). [`Self::view`] decodes it.
    async fn one(
        &self,
        endpoint: Endpoint,
        url: &Url,
        key: &'static str,
    ) -> Result<Option<bytes::Bytes>, Error> {
        let validate = |b: &[u8]| wire::decode_one::<serde_json::Value>(b, key).map(|_| ());
        match self.client.get(endpoint, url, validate).await {
            Ok(page) => Ok(Some(page.body)),
            Err(Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Every page of a listing, collected into one list; pages are followed and checked as in
    /// [`Self::each_page`]. Pass `read_ahead` for the run's long reference lists (a requester
    /// directory can run to hundreds of pages), not for a ticket's conversations or time
    /// entries, where a second page is rare and a guessed third would cost a call per such
    /// ticket.
    async fn all_pages<T: for<'de> serde::Deserialize<'de>>(
        &self,
        endpoint: Endpoint,
        first: Url,
        key: &'static str,
        read_ahead: bool,
    ) -> Result<Items<T>, Error> {
        Ok(self
            .counted_pages(endpoint, first, key, read_ahead)
            .await?
            .0)
    }

    /// [`Self::all_pages`], and how many pages it read.
    async fn counted_pages<T: for<'de> serde::Deserialize<'de>>(
        &self,
        endpoint: Endpoint,
        first: Url,
        key: &'static str,
        read_ahead: bool,
    ) -> Result<(Items<T>, u32), Error> {
        let mut out = Vec::new();
        let out_ref = &mut out;
        let pages = self
            .each_page(endpoint, first, key, read_ahead, 1, |items| {
                out_ref.extend(items);
                std::future::ready(true)
            })
            .await?;
        Ok((out, pages))
    }

    /// Follows `Link: <…>; rel="next"` until it is absent, handing each page's items to
    /// `on_page` (which returns `false` to stop). A page that is not the expected envelope is
    /// retried (it is usually a truncated body) and then fails the listing: silently skipping a
    /// page would lose tickets.
    ///
    /// The end of a listing is a claim to verify, never assumed: a `Link` back to a page already
    /// read (a loop), an empty page that still links onwards, or more than `max_pages` pages fail
    /// the listing with [`Error::Paging`] (see [`paging_problem`]).
    ///
    /// With `read_ahead`, the next page is requested while the current one is in flight: a
    /// listing whose pages take longer than the work they bring would otherwise leave the budget
    /// unspent. The page asked for ahead is the current one's URL with `page` + 1 (how the API
    /// numbers pages); it is used only when the current page's `Link` names that very page, so a
    /// server whose links are not page numbers is followed link by link. Past the last page this
    /// costs one page's credits. A page asked for ahead and not used is still read to the end
    /// (and its answer discarded), so every credit the server charged is counted.
    ///
    /// `opening` pages (with `read_ahead`, at least 1) are asked for at once before the first
    /// answer, page 1 and the ones after it by number, so that a long listing fills the first
    /// round trip; past the last page each costs its credits.
    async fn each_page<T, F, Fut>(
        &self,
        endpoint: Endpoint,
        first: Url,
        key: &'static str,
        read_ahead: bool,
        opening: u32,
        mut on_page: F,
    ) -> Result<u32, Error>
    where
        T: for<'de> serde::Deserialize<'de>,
        F: FnMut(Items<T>) -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let first_owned = first.clone();
        let first_url = &first_owned;
        let fetch = |url: Url| async move {
            let asked = url.clone();
            let page = self
                .client
                .get(endpoint, &url, |body| {
                    wire::decode_each::<serde_json::Value>(body, key).map(|_| ())
                })
                .await?;
            let items =
                wire::decode_each::<T>(&page.body, key).map_err(|detail| Error::Decode {
                    endpoint: endpoint.name(),
                    path: url.path().to_string(),
                    detail,
                })?;
            // A full page without a `Link` is no proof of the end (a proxy may have stripped
            // it): ask for the page after it. An empty page without a `Link` ends the listing.
            // Pages before the last are full: the page size is what we asked for, or what the
            // server's own link says it uses when that is smaller (a server that caps it).
            let short = match (&page.next, per_page(&url)) {
                (Some(next), Some(asked)) => {
                    let size = per_page(next).map_or(asked, |said| said.min(asked));
                    (!items.is_empty() && items.len() < size).then_some(size)
                }
                _ => None,
            };
            // A full page without a `Link` is no proof of the end (a proxy may have stripped
            // it): ask for the page after it. An empty page without a `Link` ends the listing.
            let (next, guessed) = match page.next {
                Some(next) => (Some(next), false),
                None if per_page(&url).is_some_and(|n| items.len() >= n) => {
                    (page_after(&url, first_url), true)
                }
                None => (None, false),
            };
            // The ids of a page that makes (or may be) a guess, for the progress check below.
            let ids = guessed.then(|| wire::raw_item_ids(&page.body, key));
            let timing = (page.sent, std::time::Instant::now());
            Ok::<_, Error>((items, next, short, guessed, ids, timing, asked))
        };
        // In order: the page being read, then (when guessed) the one after it.
        let mut queue = futures::stream::FuturesOrdered::new();
        // Every page asked for by a link (or the first URL), as a canonical request.
        let mut read = std::collections::HashSet::from([canonical(&first)]);
        let path = first.path().to_string();
        // The pages asked for ahead by number, in the queue's order behind the page being read.
        let mut ahead = std::collections::VecDeque::new();
        let mut guess = read_ahead.then(|| page_after(&first, &first)).flatten();
        queue.push_back(fetch(first));
        for _ in 1..opening {
            let Some(page) = guess.take() else { break };
            guess = following_page(&page);
            queue.push_back(fetch(page.clone()));
            ahead.push_back(page);
        }
        let mut link_by_link = !read_ahead;
        // Answers to wrong guesses still to come out of `queue`, to be read and discarded.
        let mut wrong = 0usize;
        let mut pages = 0u32;
        // The ids of the previous page when it had no `Link` and was full (this page is a guess).
        let mut guessed_after: Option<Vec<String>> = None;
        // When the previous page's (last) request was sent.
        let mut previous_sent: Option<std::time::Instant> = None;
        while let Some(result) = futures::StreamExt::next(&mut queue).await {
            if wrong > 0 {
                wrong -= 1;
                continue;
            }
            let (items, next, short, guessed, ids, (sent, done), asked) = result?;
            // A page asked for ahead that was answered before the page it follows was even
            // asked for (that one was retried) was served before it: a ticket created in
            // between shifts a row from the earlier page onto this one, where it is not. Such
            // a page is read again, after; the listing goes on link by link.
            if previous_sent.is_some_and(|before| done < before) {
                while futures::StreamExt::next(&mut queue).await.is_some() {}
                tracing::debug!(
                    endpoint = endpoint.name(),
                    page = pages + 1,
                    "a page asked for ahead was answered before the page it follows; reading it again"
                );
                ahead.clear();
                wrong = 0;
                link_by_link = true;
                queue.push_back(fetch(asked));
                continue;
            }
            previous_sent = Some(sent);
            pages += 1;
            // A page asked for without a `Link` must bring rows the page before did not: a
            // server (or proxy) that ignores `page` serves page 1 again, full, forever.
            if let (Some(before), Some(now)) = (guessed_after.take(), &ids) {
                if !now.is_empty() && now.iter().all(|id| before.contains(id)) {
                    while futures::StreamExt::next(&mut queue).await.is_some() {}
                    return Err(Error::Paging {
                        endpoint: endpoint.name(),
                        path,
                        detail: format!(
                            "page {pages}, asked for because page {} was full without a Link, repeats its rows (the server or a proxy ignores `page`?)",
                            pages - 1
                        ),
                    });
                }
            }
            guessed_after = ids;
            let empty = items.is_empty();
            if let Some(next) = &next {
                let problem = paging_problem(&read, &canonical(next), empty, pages, self.max_pages)
                    .or_else(|| {
                        short.map(|size| {
                            format!(
                                "page {pages} holds {} rows of {size} and links to another page: rows were left out",
                                items.len()
                            )
                        })
                    });
                if let Some(detail) = problem {
                    // A page asked for ahead is read to the end: the server charged it.
                    while futures::StreamExt::next(&mut queue).await.is_some() {}
                    return Err(Error::Paging {
                        endpoint: endpoint.name(),
                        path,
                        detail,
                    });
                }
                read.insert(canonical(next));
            }
            if !on_page(items).await {
                return Ok(pages);
            }
            let Some(next) = next else {
                // The last page. A page asked for ahead is read to the end all the same: the
                // server charged it, and the run's credit count must match the server's.
                while futures::StreamExt::next(&mut queue).await.is_some() {}
                return Ok(pages);
            };
            match ahead.pop_front() {
                Some(guess) if same_request(&guess, &next) => {}
                Some(_) => {
                    // The links are not page numbers: discard the guesses, follow the link.
                    wrong += 1 + ahead.len();
                    ahead.clear();
                    queue.push_back(fetch(next.clone()));
                    link_by_link = true;
                }
                None => queue.push_back(fetch(next.clone())),
            }
            // One page is asked for ahead of the next (when the opening's are all used). Past a
            // page that had no `Link`, nothing more is.
            if !link_by_link && !guessed && ahead.is_empty() {
                if let Some(guess) = following_page(&next) {
                    queue.push_back(fetch(guess.clone()));
                    ahead.push_back(guess);
                }
            }
        }
        Ok(pages)
    }
}

/// Why a listing cannot go on to `next` after its `pages`-th page, if it cannot: `next` was
/// read before (the server links in a loop), the page was empty yet links onwards (a broken
/// server or proxy; the real API ends a listing with a page without `Link`), or the listing
/// passed `max_pages`. `read` holds the canonical requests read so far (see `canonical`).
pub fn paging_problem(
    read: &std::collections::HashSet<String>,
    next: &str,
    empty: bool,
    pages: u32,
    max_pages: u32,
) -> Option<String> {
    if read.contains(next) {
        Some(format!(
            "page {pages} links back to a page already read ({})",
            truncate_url(next)
        ))
    } else if empty {
        Some(format!(
            "page {pages} is empty but links to another page ({})",
            truncate_url(next)
        ))
    } else if pages >= max_pages {
        Some(format!(
            "more than max_pages = {max_pages} pages (raise max_pages if the account really is this large)"
        ))
    } else {
        None
    }
}

/// A URL's path and query parameters in a canonical order and encoding, so that the same
/// request written two ways compares equal.
fn canonical(url: &Url) -> String {
    let mut params: Vec<(String, String)> = url.query_pairs().into_owned().collect();
    // Without `page`, a listing URL is its page 1 (a link back to `page=1` is a loop).
    if !params.iter().any(|(k, _)| k == "page") {
        params.push(("page".into(), "1".into()));
    }
    params.sort();
    let query: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("{}?{}", url.path(), query.join("&"))
}

fn truncate_url(s: &str) -> String {
    let mut end = s.len().min(160);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    if end < s.len() {
        format!("{}…", &s[..end])
    } else {
        s.to_string()
    }
}

/// The page after `url`: `page` + 1, or page 2 of a listing's first URL, which has no `page`
/// (page 1). `None` for a URL that pages by something else (a cursor).
fn page_after(url: &Url, first: &Url) -> Option<Url> {
    if url.query_pairs().any(|(k, _)| k == "page") {
        return following_page(url);
    }
    (url == first).then(|| {
        let mut next = url.clone();
        next.query_pairs_mut().append_pair("page", "2");
        next
    })
}

/// The `per_page` a listing URL asks for.
fn per_page(url: &Url) -> Option<usize> {
    url.query_pairs()
        .find(|(k, _)| k == "per_page")
        .and_then(|(_, v)| v.parse().ok())
}

/// `url` with its `page` parameter incremented; `None` without a numeric `page`.
fn following_page(url: &Url) -> Option<Url> {
    let page: u64 = url
        .query_pairs()
        .find(|(k, _)| k == "page")
        .and_then(|(_, v)| v.parse().ok())?;
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| {
            let v = if k == "page" {
                (page + 1).to_string()
            } else {
                v.into_owned()
            };
            (k.into_owned(), v)
        })
        .collect();
    let mut next = url.clone();
    next.query_pairs_mut().clear().extend_pairs(pairs);
    Some(next)
}

/// The same resource and parameters, whatever the parameters' order and encoding.
fn same_request(a: &Url, b: &Url) -> bool {
    let params = |u: &Url| {
        let mut p: Vec<(String, String)> = u.query_pairs().into_owned().collect();
        p.sort();
        p
    };
    a.origin() == b.origin() && a.path() == b.path() && params(a) == params(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_opening_asks_for_the_pages_one_round_trip_buys() {
        let ms = std::time::Duration::from_millis;
        // A first run: no round trip known.
        assert_eq!(opening_pages(7.5, None, 5.0), 1);
        // Enterprise on a real minute (7.5 credits a second), 675 ms: 5 credits, one page.
        assert_eq!(opening_pages(7.5, Some(ms(675)), 5.0), 1);
        // The same in 3-second windows (150 a second): 20 pages, capped.
        assert_eq!(opening_pages(150.0, Some(ms(675)), 5.0), MAX_OPENING_PAGES);
        // Growth in 3-second windows (60 a second): 8.
        assert_eq!(opening_pages(60.0, Some(ms(675)), 5.0), 8);
        // Nonsense never asks for nothing or for everything.
        assert_eq!(opening_pages(f64::NAN, Some(ms(675)), 5.0), 1);
        assert_eq!(opening_pages(f64::INFINITY, Some(ms(675)), 5.0), 1);
        assert_eq!(opening_pages(60.0, Some(ms(675)), 0.0), MAX_OPENING_PAGES);
    }

    #[test]
    fn the_page_after_is_the_same_query_with_page_plus_one() {
        let url = Url::parse(
            "https://x.example/api/v2/tickets?updated_since=2025-03-01T00%3A00%3A00Z&include=stats&per_page=100&page=2",
        )
        .unwrap();
        let next = following_page(&url).unwrap();
        let link = Url::parse(
            "https://x.example/api/v2/tickets?page=3&per_page=100&include=stats&updated_since=2025-03-01T00:00:00Z",
        )
        .unwrap();
        assert!(same_request(&next, &link), "{next}");
        assert!(!same_request(&url, &link));
        let other_host = Url::parse(
            "https://y.example/api/v2/tickets?page=3&per_page=100&include=stats&updated_since=2025-03-01T00:00:00Z",
        )
        .unwrap();
        assert!(!same_request(&next, &other_host));
        assert_eq!(
            following_page(&Url::parse("https://x.example/a?per_page=100").unwrap()),
            None
        );
        let first = Url::parse("https://x.example/a?per_page=100").unwrap();
        assert_eq!(
            page_after(&first, &first).map(String::from),
            Some("https://x.example/a?per_page=100&page=2".to_string()),
            "a listing's first URL is page 1"
        );
        let cursor = Url::parse("https://x.example/a?per_page=100&cursor=abc").unwrap();
        assert_eq!(page_after(&cursor, &first), None);
        assert_eq!(
            following_page(&Url::parse("https://x.example/a?page=next").unwrap()),
            None
        );
    }

    #[test]
    fn a_listing_ends_only_where_it_can_show_it_read_everything() {
        let u = |q: &str| Url::parse(&format!("https://x.example/api/v2/tickets?{q}")).unwrap();
        let mut read = std::collections::HashSet::new();
        read.insert(canonical(&u("per_page=100&page=1")));
        read.insert(canonical(&u("per_page=100&page=2")));
        // The same request in another order or encoding is a loop.
        let back = canonical(&u("page=2&per_page=100"));
        assert!(paging_problem(&read, &back, false, 2, 100)
            .unwrap()
            .contains("links back"));
        let onwards = canonical(&u("page=3&per_page=100"));
        assert_eq!(paging_problem(&read, &onwards, false, 2, 100), None);
        // A listing's first URL has no `page`: a link back to page 1 is a loop too.
        assert_eq!(
            canonical(&u("per_page=100")),
            canonical(&u("page=1&per_page=100"))
        );
        assert!(paging_problem(&read, &onwards, true, 2, 100)
            .unwrap()
            .contains("is empty but links"));
        assert!(paging_problem(&read, &onwards, false, 100, 100)
            .unwrap()
            .contains("max_pages = 100"));
    }

    #[test]
    fn credit_estimates_follow_the_reference() {
        let u =
            Url::parse("https://x/api/v2/tickets?include=stats,requester&per_page=100").unwrap();
        assert_eq!(Endpoint::TicketsList.estimated_credits(&u), 5);
        let u = Url::parse("https://x/api/v2/tickets?include=stats&per_page=100").unwrap();
        assert_eq!(Endpoint::TicketsList.estimated_credits(&u), 3);
        // What the live listing asks for: stats and tags (+ requester for a short window).
        let u = Url::parse("https://x/api/v2/tickets?include=stats,tags&per_page=100").unwrap();
        assert_eq!(Endpoint::TicketsList.estimated_credits(&u), 5);
        let u = Url::parse("https://x/api/v2/tickets?include=stats,requester,tags").unwrap();
        assert_eq!(Endpoint::TicketsList.estimated_credits(&u), 7);
        let u = Url::parse("https://x/api/v2/tickets?filter=deleted&per_page=100").unwrap();
        assert_eq!(Endpoint::TicketsList.estimated_credits(&u), 1);
        let u = Url::parse("https://x/api/v2/tickets/1?include=stats").unwrap();
        assert_eq!(Endpoint::TicketView.estimated_credits(&u), 2);
        let u = Url::parse("https://x/api/v2/tickets/1/conversations?per_page=100").unwrap();
        assert_eq!(Endpoint::Conversations.estimated_credits(&u), 1);
    }
}
