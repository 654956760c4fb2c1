//! `ragged backend rollback` and `ragged backend backups list|clean`: the backups migrations take.

use std::path::PathBuf;

use anyhow::{Context as _, Result, bail};
use clap::{Args, Subcommand};
use serde::Serialize;

use super::{EXIT_FINDINGS, EXIT_OK};
use crate::backup;
use crate::context::Context;
use crate::migrate;
use crate::output::{print_json, print_text, status};
use crate::runs::{Run, RunState};

pub(crate) const ROLLBACK_EXAMPLES: &str = "Examples:
  ragged backend rollback --run 20261121T125500Z-4242 --confirm
  ragged backend rollback --backup ~/.ragged/runs/20261121T125500Z-4242/target.tar.zst --confirm

Restores the target of a migration to exactly its state before that migration, from the backup
the migration took. Without --confirm it only says what it would do.";

#[derive(Debug, Args)]
pub(crate) struct RollbackArgs {
    /// The migration run to undo (see `ragged backend backups list`); default: the newest run.
    #[arg(long, value_name = "ID", conflicts_with = "backup")]
    run: Option<String>,
    /// A target backup archive to restore.
    #[arg(long, value_name = "FILE")]
    backup: Option<PathBuf>,
    /// Really restore (the target's current content is replaced).
    #[arg(long)]
    confirm: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum BackupsCommand {
    /// List migration runs and their backups, newest first.
    #[command(after_help = "Examples:\n  ragged backend backups list\n  ragged backend backups list --json")]
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Delete the backups of older runs, keeping the newest N; unfinished runs are kept.
    #[command(after_help = "Examples:\n  ragged backend backups clean --keep-latest 3")]
    Clean {
        /// How many of the newest runs to keep.
        #[arg(long, value_name = "N")]
        keep_latest: usize,
    },
}

pub(crate) fn rollback(ctx: &Context, args: RollbackArgs) -> Result<u8> {
    let (archive, mut run) = match (&args.backup, &args.run) {
        (Some(archive), _) => (archive.clone(), None),
        (None, Some(id)) => {
            let run = Run::load(&Run::dir(ctx, id).join("run.json"))?;
            (
                run.backup
                    .clone()
                    .with_context(|| format!("run {id} took no backup (--no-backup)"))?,
                Some(run),
            )
        }
        (None, None) => {
            let run = Run::list(ctx)?
                .into_iter()
                .next()
                .context("no migration run to roll back")?;
            (
                run.backup
                    .clone()
                    .with_context(|| format!("run {} took no backup (--no-backup)", run.id))?,
                Some(run),
            )
        }
    };
    let manifest = backup::read_manifest(&archive)?;
    let roots: Vec<String> = manifest.roots.iter().map(|p| p.display().to_string()).collect();
    if !args.confirm {
        status(&format!(
            "would restore {} ({} files, {} bytes) to {}\n{}\nrun again with --confirm to do it",
            archive.display(),
            manifest.files.len(),
            manifest.bytes(),
            roots.join(", "),
            manifest.label
        ));
        return Ok(EXIT_FINDINGS);
    }
    match &mut run {
        Some(run) => {
            migrate::rollback(run)?;
            run.state = RunState::RolledBack;
            run.save(&Run::dir(ctx, &run.id))?;
        }
        None => {
            backup::restore(&archive)?;
        }
    }
    status(&format!(
        "restored {} to its state before the migration ({})",
        roots.join(", "),
        manifest.label
    ));
    Ok(EXIT_OK)
}

/// One run in `backups list`.
#[derive(Debug, Serialize)]
struct RunSummary {
    id: String,
    started: String,
    source: String,
    target: String,
    state: RunState,
    backup_files: Vec<PathBuf>,
    backup_bytes: u64,
}

pub(crate) fn exec(ctx: &Context, command: BackupsCommand) -> Result<u8> {
    match command {
        BackupsCommand::List { json } => {
            let summaries: Vec<RunSummary> = Run::list(ctx)?
                .into_iter()
                .map(|run| {
                    let dir = Run::dir(ctx, &run.id);
                    let backup_files: Vec<PathBuf> = ["source.tar.zst", "target.tar.zst"]
                        .iter()
                        .map(|name| dir.join(name))
                        .filter(|p| p.exists())
                        .collect();
                    let backup_bytes = backup_files
                        .iter()
                        .filter_map(|p| std::fs::metadata(p).ok())
                        .map(|m| m.len())
                        .sum();
                    RunSummary {
                        id: run.id,
                        started: run.started,
                        source: run.source,
                        target: run.target,
                        state: run.state,
                        backup_files,
                        backup_bytes,
                    }
                })
                .collect();
            if json {
                print_json(&summaries)?;
            } else if summaries.is_empty() {
                print_text("no migration runs\n")?;
            } else {
                let mut text = format!(
                    "{:<26} {:<12} {:>12}  {}\n",
                    "RUN", "STATE", "BACKUP", "SOURCE -> TARGET"
                );
                for s in &summaries {
                    let state = serde_json::to_value(s.state)?.as_str().unwrap_or_default().to_owned();
                    text.push_str(&format!(
                        "{:<26} {:<12} {:>12}  {} -> {}\n",
                        s.id, state, s.backup_bytes, s.source, s.target
                    ));
                }
                print_text(&text)?;
            }
            Ok(EXIT_OK)
        }
        BackupsCommand::Clean { keep_latest } => {
            let runs = Run::list(ctx)?;
            let mut removed = 0;
            for run in runs.iter().skip(keep_latest) {
                if matches!(run.state, RunState::Running | RunState::Interrupted | RunState::Failed) {
                    status(&format!("keeping run {}: it is unfinished and can be resumed", run.id));
                    continue;
                }
                let dir = Run::dir(ctx, &run.id);
                std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
                removed += 1;
            }
            if keep_latest == 0 && removed == 0 && runs.is_empty() {
                bail!("no migration runs to clean");
            }
            status(&format!("removed {removed} run(s) and their backups"));
            Ok(EXIT_OK)
        }
    }
}
