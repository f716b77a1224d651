//! ticketsync: the nightly Freshservice → Parquet + markdown ETL.
//!
//! # Codemap
//!
//! The data flows one way:
//!
//! ```text
//! source ──► normalize ──► tables ──► sink (parquet, markdown) ──► state
//!  (HTTP)     (pure)       (Arrow)     (staged, then committed)     (journal → Delta logs, index, cursor)
//! ```
//!
//! - [`source`]: the Freshservice v2 client. `wire` holds the API's JSON shapes, `client` the
//!   HTTP calls and paging, `retry` the retry decisions and backoff, `limiter` the one credit budget
//!   shared by every request of a run (listing pages go before per-ticket calls).
//! - [`normalize`]: pure functions from wire types to our rows (status/priority names, HTML → text,
//!   hours in exact minutes, account mapping) and to the KnowledgeTree markdown document;
//!   [`normalize::privacy`] redacts secrets and erases forgotten people from a ticket's rows
//!   before its document is rendered.
//! - [`tables`]: the Arrow schemas of the output tables (the contract in `schemas/*.json`) and the
//!   builders that turn rows into `RecordBatch`es ([`tables::read`] the way back).
//! - [`sink`]: writes changesets (placed tickets, rejects, removals) as checkpoints
//!   ([`sink::pending`], `_pending/<tag>/`: durable, not yet visible), then commits them to the
//!   tables at once: per partition (`domain=…/account=…/year=…`) one new file appended (split by
//!   `ticket_id` range past 32 MiB), only the files holding touched tickets rewritten, small
//!   files compacted; markdown published with
//!   them (each document written ahead, as soon as its ticket's answer is in, under the
//!   directory of the commit that will hold it: [`sink::Changeset::written`]), everything
//!   staged first and committed through a journal; [`sink::upgrade`] the dataset format version
//!   (`_state/format.json`, which also names the dataset's domain) and the one-time move of
//!   datasets written by an older release into Delta tables, through the same journal.
//! - [`state`]: the ticket index (where each ticket lives and which `updated_at` it has), the
//!   incremental cursor and the commit journal, all under `<data>/_state/`; [`state::delta`]
//!   the tables' Delta logs (`<table>/_delta_log/`, through delta-rs): which files each table
//!   holds at a version or an instant, and the `add`/`remove` commits the journal makes;
//!   [`state::delta::read`] the readers' side: only the partitions a query needs, read from the
//!   last checkpoint on, or from the newest snapshot of the file list the reader's cache holds
//!   that the log vouches for (`state::delta::cache`; delta-rs for what it does not know); [`state::lock`] the run lock that keeps a second run from writing the same dataset.
//! - [`storage`]: the only code that builds object paths and talks to `object_store`;
//!   [`storage::layout::Scope`] says which domain's state, staging, checkpoints and documents
//!   a [`storage::Storage`] addresses (the dataset's first domain keeps the one-domain paths).
//! - [`pipeline`]: one run. [`pipeline::policy`] holds every decision as a pure function (the
//!   window, which workspaces are listed, how a listed ticket is classified, what counts as evidence that a ticket is gone,
//!   the removal guard, when the cursor moves); the rest is mechanism: the listing task (its
//!   first page asked for beside the reference data, used once that says it is the listing
//!   planned), the fetch workers, the dispatcher between them, checkpoints and commits (while
//!   the last tickets are fetched, the checkpoints and then what arrives go into the tables in
//!   halves, [`pipeline::policy::Tail`], each foreseen at the last commit's pace per file and
//!   per object published, [`sink::CommitCost`], so the run's end commits only its last few
//!   answers).
//! - [`dataset`]: operations on a written dataset that need no API — `forget` (erasure),
//!   `export` (subject access), `retention` (prune), `redact` — through the same rows, renderer and commit.
//! - [`report`]: the run report (`_runs/<run_id>.json`) and its one-line summary;
//!   [`metrics`] the same facts as Prometheus gauges, for node_exporter's textfile collector
//!   and the Pushgateway.
//! - [`check`]: `ticketsync check`, the read-only preflight of a job (API, storage, run lock)
//!   and the pure estimate of the next run's tickets, credits and wall time.
//! - [`query`]: reads the written Parquet back with polars — an account's tickets in the Codex
//!   JSON shape, hour rollups per month or year (by `last_updated_at`, as Ledger bills, unless
//!   another basis is asked for) and the tickets and time entries behind them (`--explain`) —
//!   opening only the partitions a query needs; the adjustment list (`--changes-since`) reads
//!   its minutes per ticket with the parquet crate (`query::minutes`).
//! - [`job`]: job files (TOML) and flags resolved into one validated [`job::Job`]; a fleet job
//!   (`[[accounts]]`) into one job per account, which `cli::sync` runs side by side.
//! - [`sim`]: the built-in Freshservice simulator (demo job, tests, benchmarks), with its
//!   misbehaviours: quirks, the fault script and the hostile-API layer ([`sim::Hostile`]) the
//!   harness in `tests/it/harness.rs` draws from.
//! - [`cli`]: clap definitions and one `run` per subcommand.
//! - [`error`]: what an error means ([`error::Class`]: configuration, retryable, failed, bug);
//!   every public error type has one `class()` method, and `main` maps classes to exit codes.
//!
//! # Invariants
//!
//! - `source` knows nothing about Arrow, Parquet, markdown or storage.
//! - `normalize` does no I/O and is not async.
//! - Sinks and `state` reach storage only through [`storage::Storage`]; no `std::fs` for outputs.
//!   The one `std::fs` user is the readers' snapshot cache, on the reader's machine, outside
//!   the dataset: file lists the log vouches for before each use, never rows.
//! - A closed ticket ends up in exactly one place: one partition of `tickets` (with its children
//!   in the same account/year partition of the other tables) or the `rejects` table.
//! - A data file never changes once a table's log names it: a change writes new files and removes
//!   the old ones, in one Delta commit per table carrying the dataset commit's `txn`. The commit
//!   journal makes a multi-table change roll forward after a crash (each table committed at most
//!   once), so a rerun converges on the clean result; documents and the index are published
//!   only after the tables committed.
//! - The cursor moves only after every sink has committed; a failed run leaves it unchanged.
//! - Data leaves the dataset only on positive evidence (the API says the ticket is deleted,
//!   spam or no longer closed, or the ticket itself answers 404), never more than
//!   `max_removals` tickets in one run, and only after a listing that read to its end.
//! - A listing ends only where it can show it read everything: a looping `Link`, an empty page
//!   that links on, a short page that links on, or more than `max_pages` pages fail the run; a
//!   full page without `Link` is followed by a request for the next page; a listing that changed
//!   under it (a listed ticket deleted, spammed or moved meanwhile) is read again.
//! - A placed ticket leaves the tables (removed, or moved into `rejects`) only under the
//!   removal guard; a ticket that does not decode keeps the rows it has.
//! - At most one run writes a domain of a dataset: [`pipeline::run`] takes that domain's run
//!   lock before its first read and releases it after the run report, and checks it before
//!   every commit. Runs of different domains share nothing but the tables' logs: each has its
//!   own index, cursor, lock, journal, checkpoints and documents ([`storage::layout::Scope`]),
//!   its own `txn` id, and its table commits are retried on another domain's only when no
//!   partition they touch changed.
//! - Nothing is written before redaction and erasure; the erasure record holds keyed hashes only,
//!   and a sync whose key does not match it refuses to run.
//! - `check` never takes the run lock and writes nothing but one probe object under `_state/`.
//! - `sim` shares no types with `source`.
//! - `query` gets nothing from the pipeline in memory: the Delta tables are the interface, read
//!   with polars (an Arrow implementation separate from the writer's arrow-rs; the adjustment
//!   list's three columns with arrow-rs, held to polars' answer by the tests). It reads the
//!   logs of the tables it needs at the versions of the dataset's last commit, keeps only the
//!   files of the partitions it needs while it reads them (opening costs the last checkpoint's
//!   few columns and the commits after it, not the table's whole history) and hands polars
//!   only those files.
//! - Only `cli` knows clap; only `main.rs` knows exit codes (one `match` on [`error::Class`])
//!   and the tracing subscriber. No code inspects an error's type to decide what it means.

#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

pub mod check;
pub mod cli;
pub mod dataset;
pub mod error;
pub mod job;
pub mod metrics;
pub mod normalize;
pub mod pipeline;
pub mod query;
pub mod report;
pub mod sim;
pub mod sink;
pub mod source;
pub mod state;
pub mod storage;
pub mod tables;

/// The golden-file helper (`UPDATE_GOLDEN=1` rewrites): the integration suite's own, shared.
#[cfg(test)]
#[path = "../tests/it/support/golden.rs"]
#[allow(unreachable_pub)]
mod golden;
