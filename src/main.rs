//! The `ticketsync` binary: parse arguments, install logging, run, map the result to an exit code.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use ticketsync::cli::{self, Cli, Completion, LogFormat};
use tracing_subscriber::EnvFilter;

/// Exit codes a scheduler can act on. A run that finished with rejects exits with the job's
/// `rejects_exit_code` (default 1).
mod code {
    use ticketsync::error::Class;

    /// Everything was written.
    pub const OK: u8 = 0;
    /// Failed: something was not written; the cursor did not move; a rerun retries.
    pub const FAILED: u8 = 2;
    /// Configuration or credentials are wrong; a rerun will fail the same way.
    pub const CONFIG: u8 = 3;

    /// The exit code of an error's class: the one place that decides it.
    pub fn of(class: Class) -> u8 {
        match class {
            Class::Config => CONFIG,
            Class::Retryable | Class::Failed | Class::Bug => FAILED,
        }
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // --help and --version are not errors; a bad command line is a configuration error.
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() {
                code::CONFIG
            } else {
                code::OK
            });
        }
    };
    install_tracing(&cli);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(code::FAILED);
        }
    };
    match runtime.block_on(cli::run(cli)) {
        Ok(Completion::Ok) => ExitCode::from(code::OK),
        Ok(Completion::OkWithRejects { code }) => ExitCode::from(code),
        Ok(Completion::Failed) => ExitCode::from(code::FAILED),
        Ok(Completion::Found(class)) => ExitCode::from(code::of(class)),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(code::of(e.class()))
        }
    }
}

/// Logs go to stderr: human lines on a terminal (with a progress bar the log lines don't break),
/// JSON lines for batch runs. Progress only on a terminal and never with `--quiet`.
fn install_tracing(cli: &Cli) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;

    let default = match (cli.quiet, cli.verbose) {
        (true, _) => "warn",
        (false, 0) => "info",
        (false, 1) => "ticketsync=debug,info",
        (false, _) => "ticketsync=trace,debug",
    };
    // The Delta kernel logs every snapshot it builds at info, with the whole table schema in
    // it: its warnings only, unless RUST_LOG asks for more.
    let default = format!("{default},buoyant_kernel=warn,delta_kernel=warn,deltalake_core=warn");
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let tty = std::io::stderr().is_terminal();
    let json = match cli.log_format {
        LogFormat::Json => true,
        LogFormat::Human => false,
        LogFormat::Auto => !tty,
    };
    if json {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .init();
    } else if tty && !cli.quiet {
        let progress = tracing_indicatif::IndicatifLayer::new();
        let fmt = tracing_subscriber::fmt::layer()
            .with_target(false)
            .with_writer(progress.get_stderr_writer())
            .with_filter(filter);
        tracing_subscriber::registry()
            .with(fmt)
            .with(progress.with_filter(tracing_indicatif::filter::IndicatifFilter::new(false)))
            .init();
    } else {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .with_target(false)
            .init();
    }
}
