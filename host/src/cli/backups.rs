//! `ragged backend rollback` and `ragged backend backups list|clean`: the backups migrations and
//! cleanups take.

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
    /// List migration runs and their backups, and cleanup backups, newest first.
    #[command(after_help = "Examples:\n  ragged backend backups list\n  ragged backend backups list --json")]
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Delete older runs and cleanup backups, keeping the newest N of each; unfinished runs are kept.
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

/// A backup `cleanup` took before removing collections.
#[derive(Debug, Serialize)]
struct CleanupBackup {
    file: PathBuf,
    label: String,
    created: String,
    bytes: u64,
}

/// Cleanup backups, newest first.
fn cleanup_backups(ctx: &Context) -> Vec<CleanupBackup> {
    let mut found: Vec<CleanupBackup> = std::fs::read_dir(ctx.home.join("backups"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.to_string_lossy().ends_with(".tar.zst"))
        .filter_map(|file| {
            let manifest = backup::read_manifest(&file).ok()?;
            let bytes = std::fs::metadata(&file).ok()?.len();
            Some(CleanupBackup {
                file,
                label: manifest.label,
                created: manifest.created,
                bytes,
            })
        })
        .collect();
    found.sort_by(|a, b| b.created.cmp(&a.created));
    found
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
            let cleanups = cleanup_backups(ctx);
            if json {
                print_json(&serde_json::json!({ "runs": summaries, "cleanups": cleanups }))?;
                return Ok(EXIT_OK);
            }
            let mut text = String::new();
            if summaries.is_empty() {
                text.push_str("no migration runs\n");
            } else {
                text.push_str(&format!(
                    "{:<26} {:<12} {:>12}  {}\n",
                    "RUN", "STATE", "BACKUP", "SOURCE -> TARGET"
                ));
                for s in &summaries {
                    let state = serde_json::to_value(s.state)?.as_str().unwrap_or_default().to_owned();
                    text.push_str(&format!(
                        "{:<26} {:<12} {:>12}  {} -> {}\n",
                        s.id, state, s.backup_bytes, s.source, s.target
                    ));
                }
            }
            if !cleanups.is_empty() {
                text.push_str("\ncleanup backups (restore with `ragged backend rollback --backup FILE --confirm`):\n");
                for c in &cleanups {
                    text.push_str(&format!("{}  {} bytes  {}\n", c.file.display(), c.bytes, c.label));
                }
            }
            print_text(&text)?;
            Ok(EXIT_OK)
        }
        BackupsCommand::Clean { keep_latest } => {
            let runs = Run::list(ctx)?;
            let mut removed = 0;
            for run in runs.iter().skip(keep_latest) {
                if run.state.is_unfinished() {
                    status(&format!("keeping run {}: it is unfinished and can be resumed", run.id));
                    continue;
                }
                let dir = Run::dir(ctx, &run.id);
                std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
                removed += 1;
            }
            let cleanups = cleanup_backups(ctx);
            for old in cleanups.iter().skip(keep_latest) {
                std::fs::remove_file(&old.file).with_context(|| format!("removing {}", old.file.display()))?;
                let _ = std::fs::remove_file(backup::manifest_path(&old.file));
            }
            if keep_latest == 0 && removed == 0 && runs.is_empty() && cleanups.is_empty() {
                bail!("no migration runs or cleanup backups to clean");
            }
            status(&format!(
                "removed {removed} run(s) and their backups, {} cleanup backup(s)",
                cleanups.len().saturating_sub(keep_latest)
            ));
            Ok(EXIT_OK)
        }
    }
}
