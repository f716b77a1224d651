//! The integration suite: one binary, a module per feature, all against the built-in simulator.

mod support;

mod cli;
mod faults;
mod incremental;
mod rate_limit;
mod run_basic;
