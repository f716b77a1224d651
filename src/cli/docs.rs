//! `ticketsync completions SHELL` and `ticketsync man [COMMAND]`: shell completions and man
//! pages generated from the same clap definitions as `--help` (clap_complete, clap_mangen), so
//! they never drift from the flags.

use std::io::Write;

use clap::{Args, CommandFactory};

use super::{Cli, Completion};

/// Print a shell completion script.
///
/// Examples:
///   ticketsync completions bash > /etc/bash_completion.d/ticketsync
///   ticketsync completions zsh > "${fpath[1]}/_ticketsync"
///   ticketsync completions fish > ~/.config/fish/completions/ticketsync.fish
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct CompletionsArgs {
    /// The shell: bash, zsh, fish, elvish or powershell.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// Print a man page (roff) for ticketsync or one of its commands.
///
/// Examples:
///   ticketsync man > /usr/local/share/man/man1/ticketsync.1
///   ticketsync man sync > /usr/local/share/man/man1/ticketsync-sync.1
///   ticketsync man query | man -l -
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct ManArgs {
    /// A command (sync, check, query, sim, completions); the overview page when absent.
    pub command: Option<String>,
}

/// Prints the completion script for the shell to stdout.
pub fn completions(args: CompletionsArgs) -> super::Result<Completion> {
    let mut cmd = Cli::command();
    let mut out = Vec::new();
    clap_complete::generate(args.shell, &mut cmd, "ticketsync", &mut out);
    write_stdout(&out)
}

/// Prints the man page (roff) of the whole program or one command to stdout.
pub fn man(args: ManArgs) -> super::Result<Completion> {
    let root = Cli::command();
    let page = match &args.command {
        None => root,
        Some(name) => {
            let sub = root.find_subcommand(name).cloned().ok_or_else(|| {
                super::Error::config(format!(
                    "no command {name:?} (sync, check, query, forget, export-person, prune, redact, sim, completions, man)"
                ))
            })?;
            // `ticketsync-sync(1)`, as git and cargo name their pages. clap takes a static name;
            // this process prints one page and exits, so the leak is one short string.
            let name: &'static str =
                Box::leak(format!("ticketsync-{}", sub.get_name()).into_boxed_str());
            sub.name(name)
        }
    };
    let mut out = Vec::new();
    clap_mangen::Man::new(page)
        .render(&mut out)
        .map_err(|e| super::Error::failed(e).context("rendering the man page"))?;
    write_stdout(&out)
}

fn write_stdout(bytes: &[u8]) -> super::Result<Completion> {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        // A reader that closed the pipe (`| head`) is not an error.
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(super::Error::failed(e).context("writing to stdout"))
        }
        _ => Ok(Completion::Ok),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completions_and_man_pages_cover_every_command() {
        let mut cmd = Cli::command();
        let mut bash = Vec::new();
        clap_complete::generate(
            clap_complete::Shell::Bash,
            &mut cmd,
            "ticketsync",
            &mut bash,
        );
        let bash = String::from_utf8(bash).unwrap();
        for flag in ["--full-sync", "--max-removals", "--rollup", "--quirk"] {
            assert!(bash.contains(flag), "bash completion lacks {flag}");
        }
        let mut page = Vec::new();
        clap_mangen::Man::new(Cli::command())
            .render(&mut page)
            .unwrap();
        let page = String::from_utf8(page).unwrap();
        assert!(page.contains(".TH ticketsync"), "{page}");
        for sub in [
            "sync",
            "check",
            "query",
            "forget",
            "export-person",
            "prune",
            "redact",
            "sim",
            "completions",
            "man",
        ] {
            // roff writes a hyphen as `\-`.
            let roff = sub.replace('-', "\\-");
            assert!(
                page.contains(sub) || page.contains(&roff),
                "the overview lacks {sub}"
            );
        }
    }
}
