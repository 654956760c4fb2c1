//! The command line: clap definitions and dispatch. The only module that knows the terminal.

mod backend;
mod backups;
mod choose;
mod migrate;
mod plugin;
#[cfg(test)]
mod reference;
mod stores;
mod sync;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::LazyLock;

use anyhow::Result;
use clap::{Parser, Subcommand};

use crate::context::Context;

/// Everything went as asked.
pub const EXIT_OK: u8 = 0;
/// The command ran but found differences or failures (verify, plugin test), or refused.
pub const EXIT_FINDINGS: u8 = 1;
/// An error stopped the command.
pub const EXIT_ERROR: u8 = 2;
/// The command was interrupted (Ctrl-C) and can be resumed.
pub const EXIT_INTERRUPTED: u8 = 130;

static VERSION: LazyLock<String> = LazyLock::new(|| {
    format!(
        "{} (plugin interface {})",
        env!("CARGO_PKG_VERSION"),
        ragged_plugin_api::INTERFACE_VERSION
    )
});

/// Move vector collections between vector stores, safely.
#[derive(Debug, Parser)]
#[command(name = "ragged", version = VERSION.as_str(), propagate_version = true, after_help = EXAMPLES)]
pub struct Cli {
    /// Use this directory as the user plugin directory (default: ~/.ragged/plugins).
    #[arg(long, global = true, value_name = "DIR")]
    pub plugin_dir: Option<PathBuf>,

    /// More log output (-v info, -vv debug); RAGGED_LOG takes a full filter.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    #[command(subcommand)]
    command: Command,
}

const EXAMPLES: &str = "\
Examples:
  ragged plugin list
  ragged backend generate parquet:./demo --collection notes --records 1000 --dim 384
  ragged backend migrate parquet:./demo chroma:./chroma_db
  ragged backend verify parquet:./demo chroma:./chroma_db

Exit codes: 0 success, 1 differences or failed checks, 2 error, 130 interrupted (resumable).";

#[derive(Debug, Subcommand)]
enum Command {
    /// Move, check and inspect stores.
    #[command(subcommand)]
    Backend(backend::BackendCommand),
    /// List, install, create and test store plugins.
    #[command(subcommand)]
    Plugin(plugin::PluginCommand),
    /// Query a collection: the nearest records to a stored record's vector.
    #[command(after_help = choose::QUERY_EXAMPLES)]
    Query(choose::QueryArgs),
    /// Write records from a JSON-lines or Parquet file to one or several stores (dual-write).
    #[command(after_help = sync::INGEST_EXAMPLES)]
    Ingest(sync::IngestArgs),
    /// Delete records by id from one or several stores.
    #[command(after_help = sync::DELETE_EXAMPLES)]
    Delete(sync::DeleteArgs),
    /// Print a shell completion script.
    #[command(after_help = COMPLETION_EXAMPLES)]
    Completions {
        /// The shell: bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
}

const COMPLETION_EXAMPLES: &str = "Examples:
  ragged completions bash > ~/.local/share/bash-completion/completions/ragged
  ragged completions zsh > \"${fpath[1]}/_ragged\"
  ragged completions fish > ~/.config/fish/completions/ragged.fish";

/// Runs a parsed command line.
pub fn run(cli: Cli) -> Result<ExitCode> {
    let ctx = Context::from_env(cli.plugin_dir.as_deref())?;
    let code = match cli.command {
        Command::Backend(command) => backend::exec(&ctx, command)?,
        Command::Plugin(command) => plugin::exec(&ctx, command)?,
        Command::Query(args) => choose::query(&ctx, args)?,
        Command::Ingest(args) => sync::ingest(&ctx, args)?,
        Command::Delete(args) => sync::delete(&ctx, args)?,
        Command::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(
                shell,
                &mut <Cli as clap::CommandFactory>::command(),
                "ragged",
                &mut script,
            );
            crate::output::print_text(&String::from_utf8_lossy(&script))?;
            EXIT_OK
        }
    };
    // Whatever the command made of it (a queued write, a failed check), a hung plugin call leaves
    // a thread that cannot be stopped: the only way out is to exit, with an error.
    if let Some(hung) = crate::guard::hung_call() {
        anyhow::bail!("{hung}");
    }
    Ok(ExitCode::from(code))
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    /// Every subcommand explains itself and shows examples.
    #[test]
    fn every_subcommand_has_an_about_and_examples() {
        fn check(command: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for sub in command.get_subcommands() {
                let name = format!("{path} {}", sub.get_name()).trim().to_owned();
                if sub.get_about().is_none() {
                    missing.push(format!("{name}: no about"));
                }
                let has_examples = sub.get_after_help().is_some_and(|h| h.to_string().contains("Example"));
                // A group of commands (plugin, backend) is described by its members' examples.
                if !has_examples && !path.is_empty() {
                    missing.push(format!("{name}: no examples"));
                }
                check(sub, &name, missing);
            }
        }
        let cli = Cli::command();
        let mut missing = Vec::new();
        check(&cli, "", &mut missing);
        assert!(missing.is_empty(), "{missing:#?}");
        cli.debug_assert();
    }
}
