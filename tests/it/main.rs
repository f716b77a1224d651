//! The integration suite: one binary, a module per feature, all against the built-in simulator.

mod support;

mod cli;
mod faults;
mod incremental;
mod query;
mod run_basic;
