//! The integration suite: one binary, a module per feature, all against the built-in simulator.

mod support;

mod backends;
mod cli;
mod faults;
mod incremental;
mod run_basic;
mod s3;
