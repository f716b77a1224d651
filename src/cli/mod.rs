//! The command line: clap definitions and one `run` per subcommand. Only this module knows clap.

pub mod check;
pub mod docs;
pub mod privacy;
pub mod query;
pub mod sim;
pub mod sync;

use clap::{Parser, Subcommand, ValueEnum};

/// ticketsync: the nightly Freshservice export for managed-service providers.
///
/// Pulls closed tickets with their conversations, private notes and time entries, maps each
/// ticket's department to the customer's account number, and writes Hive-partitioned Parquet
/// (tickets, conversations, notes, time_entries, rejects) plus one KnowledgeTree markdown file
/// per ticket, to a local directory or S3.
///
/// Try it without an account:  ticketsync sync --job jobs/demo.toml
#[derive(Debug, Parser)]
#[command(name = "ticketsync", version = VERSION, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,

    /// No progress output; only warnings and errors are logged.
    #[arg(long, short, global = true)]
    pub quiet: bool,

    /// More log detail (-v debug, -vv trace). RUST_LOG overrides.
    #[arg(long, short, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Log format: human on a terminal, JSON lines otherwise (for cron, systemd, Kubernetes).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Auto)]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human when stderr is a terminal, JSON otherwise.
    Auto,
    Human,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    // The help texts are the doc comments of the argument structs.
    Sync(Box<sync::SyncArgs>),
    Check(Box<check::CheckArgs>),
    Query(query::QueryArgs),
    Sim(sim::SimArgs),
    Forget(privacy::ForgetArgs),
    ExportPerson(privacy::ExportPersonArgs),
    Prune(privacy::PruneArgs),
    Completions(docs::CompletionsArgs),
    Man(docs::ManArgs),
}

/// `--version`: the release and the dataset format it writes (`_state/format.json`; a test
/// holds the number to `sink::upgrade::FORMAT`).
pub const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (dataset format 2)");

/// How a command ended, for `main` to turn into an exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Completion {
    /// Done, nothing to report.
    Ok,
    /// Done, but some records were rejected.
    OkWithRejects {
        /// The exit code the job asked for (`rejects_exit_code`, default 1).
        code: u8,
    },
    /// Finished what it could; something was not written and will be retried.
    Failed,
    /// A command that chose its exit code itself (`check`: 2 lock held, 3 problems found; it
    /// has printed why).
    Exit(u8),
}

/// Runs the parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<Completion> {
    match cli.command {
        Command::Sync(args) => sync::run(*args).await,
        Command::Check(args) => check::run(*args).await,
        Command::Query(args) => query::run(args).await,
        Command::Sim(args) => sim::run(args).await,
        Command::Forget(args) => privacy::forget(args).await,
        Command::ExportPerson(args) => privacy::export_person(args).await,
        Command::Prune(args) => privacy::prune(args).await,
        Command::Completions(args) => docs::completions(args),
        Command::Man(args) => docs::man(args),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_version_names_the_dataset_format_this_release_writes() {
        assert!(
            super::VERSION.ends_with(&format!(
                "(dataset format {})",
                crate::sink::upgrade::FORMAT
            )),
            "{}",
            super::VERSION
        );
    }
}
