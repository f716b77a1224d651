//! What an error means to its caller. Every public error type answers one question —
//! [`Class`] — through one method, `class()`; `main` turns a class into an exit code in one
//! `match`, and nothing else inspects error types to decide what they mean.

/// The kinds of failure a caller (and a scheduler) acts on differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// The configuration or the credentials are wrong (a flag, a job file, a key the API or the
    /// store refuses, a bucket that does not exist, a missing erasure key): a rerun fails the
    /// same way until the operator fixes it.
    Config,
    /// Transient: the network, the API, the store, or another run holding the dataset. A rerun
    /// later is expected to work.
    Retryable,
    /// Failed for a reason that is not transient and not configuration: data that does not
    /// decode, a listing that cannot show it ended, the removal guard, corrupt state.
    Failed,
    /// A bug: a task panicked or was cancelled.
    Bug,
}

/// An error that knows its [`Class`]. Every public error type of the crate implements it where
/// the type is defined, so this module depends on nothing else in the crate.
pub trait Classify {
    /// What the error means for the process (and so its exit code).
    fn class(&self) -> Class;
}
