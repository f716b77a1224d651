//! The command line: clap definitions and one `run` per subcommand. Only this module knows clap.

pub mod check;
pub mod docs;
pub mod privacy;
pub mod query;
pub mod sim;
pub mod sync;

use clap::{Parser, Subcommand, ValueEnum};

use crate::error::{Class, Classify};

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
    /// The subcommand to run.
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

/// `--log-format`: how `main` formats log lines on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human when stderr is a terminal, JSON otherwise.
    Auto,
    /// Plain text lines, for a person at a terminal.
    Human,
    /// One JSON object per line, for log collectors.
    Json,
}

/// The subcommands; each variant's arguments struct carries its help text and has one `run`.
#[derive(Debug, Subcommand)]
pub enum Command {
    // The help texts are the doc comments of the argument structs. clap would let a variant's
    // own `///` comment replace them, so the variants' rustdoc is written as
    // `#[doc = concat!(…)]`, which clap leaves to rustc.
    #[doc = concat!("`ticketsync sync`: one run of a job.")]
    Sync(Box<sync::SyncArgs>),
    #[doc = concat!("`ticketsync check`: the read-only preflight of a job.")]
    Check(Box<check::CheckArgs>),
    #[doc = concat!("`ticketsync query`: reads the written Parquet back.")]
    Query(query::QueryArgs),
    #[doc = concat!("`ticketsync sim`: serves the built-in Freshservice simulator.")]
    Sim(sim::SimArgs),
    #[doc = concat!("`ticketsync forget`: erases a person from the dataset.")]
    Forget(privacy::ForgetArgs),
    #[doc = concat!("`ticketsync export-person`: everything the dataset holds about a person.")]
    ExportPerson(privacy::ExportPersonArgs),
    #[doc = concat!("`ticketsync prune`: removes tickets closed before the retention window.")]
    Prune(privacy::PruneArgs),
    #[doc = concat!("`ticketsync redact`: the redaction rules applied to rows already written.")]
    Redact(privacy::RedactArgs),
    #[doc = concat!("`ticketsync completions`: a shell completion script.")]
    Completions(docs::CompletionsArgs),
    #[doc = concat!("`ticketsync man`: a man page.")]
    Man(docs::ManArgs),
}

/// `--version`: the release and the dataset format it writes (`_state/format.json`; a test
/// holds the number to `sink::upgrade::FORMAT`).
pub const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (dataset format 4)");

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
    /// The command found problems of this class and has printed them (`check`: configuration
    /// problems, or the run lock held).
    Found(Class),
}

/// A command's failure: the message (with the context the command added) and its [`Class`],
/// taken from the error where it happened. `main` maps the class to an exit code.
#[derive(Debug)]
pub struct Error {
    class: Class,
    error: anyhow::Error,
}

impl Error {
    /// What the failure means, for `main`'s exit code.
    pub fn class(&self) -> Class {
        self.class
    }

    /// A configuration problem the command line itself found (a missing flag, a bad value).
    pub fn config(message: impl std::fmt::Display) -> Error {
        Error {
            class: Class::Config,
            error: anyhow::anyhow!("{message}"),
        }
    }

    /// A failure outside the crate's error types (writing to stdout, binding a port).
    pub fn failed(error: impl Into<anyhow::Error>) -> Error {
        Error {
            class: Class::Failed,
            error: error.into(),
        }
    }

    /// The same error, with what the command was doing in front of its message.
    pub fn context(self, what: impl std::fmt::Display + Send + Sync + 'static) -> Error {
        Error {
            class: self.class,
            error: self.error.context(what),
        }
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:#}", self.error)
    }
}

impl<E: Classify + std::error::Error + Send + Sync + 'static> From<E> for Error {
    fn from(e: E) -> Error {
        Error {
            class: e.class(),
            error: anyhow::Error::new(e),
        }
    }
}

/// `.context(…)` for results of the crate's errors: the class stays the error's own.
pub trait Context<T> {
    /// Adds `what` in front of the error's message, keeping its [`Class`].
    fn context(self, what: impl std::fmt::Display + Send + Sync + 'static) -> Result<T>;
}

impl<T, E: Into<Error>> Context<T> for std::result::Result<T, E> {
    fn context(self, what: impl std::fmt::Display + Send + Sync + 'static) -> Result<T> {
        self.map_err(|e| e.into().context(what))
    }
}

/// The result of a command.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Runs the parsed command line.
pub async fn run(cli: Cli) -> Result<Completion> {
    match cli.command {
        Command::Sync(args) => sync::run(*args).await,
        Command::Check(args) => check::run(*args).await,
        Command::Query(args) => query::run(args).await,
        Command::Sim(args) => sim::run(args).await,
        Command::Forget(args) => privacy::forget(args).await,
        Command::ExportPerson(args) => privacy::export_person(args).await,
        Command::Prune(args) => privacy::prune(args).await,
        Command::Redact(args) => privacy::redact(args).await,
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
