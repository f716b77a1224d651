//! The integration suite: one binary, a module per feature, all against the built-in simulator.

mod support;

mod backends;
mod check;
mod cli;
mod distrust;
mod faults;
mod fields;
mod fleet;
mod guards;
mod harness;
mod history;
mod hostile;
mod incremental;
mod kill;
mod metrics;
mod paging;
mod privacy;
mod query;
mod rate_limit;
mod run_basic;
mod s3;
mod upgrade;
mod workspaces;
