//! `ragged backend migrate`: plan or resume a run, execute it with a progress bar, report.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::{Context as _, Result, bail};
use clap::Args;
use ragged_plugin_api::{Access, ErrorCode};

use super::backend::{OutputArgs, StoreOptionArgs, VerifyArgs, verification_summary};
use super::{EXIT_ERROR, EXIT_FINDINGS, EXIT_INTERRUPTED, EXIT_OK};
use crate::context::Context;
use crate::migrate::{self, FinishOptions, MigrateEvent, MigrateOptions, MigrateReport};
use crate::output::{Progress, confirm, human_bytes, interactive, print_json, print_text, status};
use crate::runs::{Run, RunState};
use crate::store::{InStore, Store, StoreError, StoreSpec, parse_options};

pub(crate) const EXAMPLES: &str = "Examples:
  ragged backend migrate chroma:./chroma_db parquet:./export
  ragged backend migrate parquet:./export chroma:./chroma_db --collection notes --batch-size 2000
  ragged backend migrate chroma:./chroma_db parquet:./export --dry-run
  ragged backend migrate chroma:./chroma_db parquet:./export --resume
  ragged backend migrate chroma:./chroma_db parquet:./export --resume --checkpoint ~/.ragged/runs/ID/run.json

Before writing, ragged backs up the source collections and everything the target holds (under
~/.ragged/runs/ID/). Each load of --checkpoint-interval records is followed by a durable
checkpoint: after Ctrl-C, a crash or kill -9, --resume continues where it stopped. After loading,
the target is verified (counts and ids always; every record below migration.full_verify_threshold,
a sample above it; see `ragged backend verify --help`). When verification fails or an error stops
the run, the target is restored from its backup.

Exit codes: 0 migrated and verified, 1 verification failed (target rolled back), 2 error,
130 interrupted (resume with --resume).";

#[derive(Debug, Args)]
pub(crate) struct MigrateArgs {
    /// Where the records are (opened read-only): BACKEND:LOCATION or a configured store name.
    source: String,
    /// Where they go: BACKEND:LOCATION or a configured store name.
    target: String,
    /// Migrate only this collection (repeatable; default: all).
    #[arg(long = "collection", value_name = "NAME", conflicts_with = "persona")]
    collections: Vec<String>,
    /// Migrate this persona's collections (configured, or the collection named like it).
    #[arg(long)]
    persona: Option<String>,
    /// Records per batch (default: migration.batch_size, 1000).
    #[arg(long)]
    batch_size: Option<u32>,
    /// Records per load, each followed by a durable checkpoint (default: migration.checkpoint_interval, 10000).
    #[arg(long)]
    checkpoint_interval: Option<u64>,
    /// After a verified migration, make the target the default store (for --persona, or global).
    #[arg(long)]
    set_default: bool,
    /// Write nothing: measure a probe of each collection through a scratch store of the target's
    /// kind, and report counts, estimated time and size, free disk and every lossy mapping.
    #[arg(long, conflicts_with = "resume")]
    dry_run: bool,
    /// Continue the newest unfinished run between these two stores.
    #[arg(long)]
    resume: bool,
    /// With --resume: the run to continue (its run.json).
    #[arg(long, value_name = "FILE", requires = "resume")]
    checkpoint: Option<PathBuf>,
    /// Back up before writing even when migration.auto_backup is off.
    #[arg(long, conflicts_with = "no_backup")]
    backup: bool,
    /// Do not back up the source collections and the target before writing (no rollback then).
    #[arg(long)]
    no_backup: bool,
    /// Leave the target as it is when verification fails or an error stops the run.
    #[arg(long)]
    no_rollback: bool,
    /// Verify even when migration.auto_verify is off.
    #[arg(long, conflicts_with = "no_verify")]
    verify: bool,
    /// Skip verification after loading.
    #[arg(long)]
    no_verify: bool,
    /// Do not ask for confirmation (migration.require_confirmation asks on a terminal).
    #[arg(long, short)]
    yes: bool,
    #[command(flatten)]
    checks: VerifyArgs,
    #[command(flatten)]
    options: StoreOptionArgs,
    #[command(flatten)]
    output: OutputArgs,
}

pub(crate) fn exec(ctx: &Context, args: MigrateArgs) -> Result<u8> {
    if args.dry_run {
        return dry_run(ctx, &args);
    }
    let (source_spec, source_configured) = ctx.config.resolve_store(&args.source)?;
    let (target_spec, target_configured) = ctx.config.resolve_store(&args.target)?;
    let resumed = if args.resume {
        Some(find_run(ctx, &source_spec, &target_spec, args.checkpoint.as_deref())?)
    } else {
        None
    };
    let (source_options, target_options) = match &resumed {
        // A resumed run keeps the options it started with.
        Some(run) => (run.source_options.clone(), run.target_options.clone()),
        None => (
            merged(source_configured, &args.options.source_options)?,
            merged(target_configured, &args.options.target_options)?,
        ),
    };
    let source = Store::open(ctx, &source_spec, &source_options, Access::ReadOnly)?;
    let target = Store::open(ctx, &target_spec, &target_options, Access::ReadWrite)?;
    let mut run = match resumed {
        Some(run) => {
            if !args.quiet_or_json() {
                let done: u64 = run.collections.iter().map(|(_, p)| p.records_done).sum();
                status(&match run.state {
                    RunState::RollingBack => {
                        format!("run {} stopped while rolling back; finishing the rollback", run.id)
                    }
                    RunState::BackingUp => format!("run {} stopped while backing up; backing up again", run.id),
                    _ => format!("resuming run {} ({done} records already loaded)", run.id),
                });
            }
            run
        }
        None => {
            let options = options(ctx, &args);
            if !confirmed(ctx, &args, &source, &target, &options)? {
                status("nothing was done");
                return Ok(EXIT_FINDINGS);
            }
            migrate::plan(ctx, &source, &target, &options)?
        }
    };
    let cancel = interrupt_flag();
    let finish = FinishOptions {
        verify: (args.verify || (ctx.config.migration.auto_verify && !args.no_verify))
            .then(|| args.checks.options(&ctx.config.migration)),
        auto_rollback: ctx.config.migration.auto_rollback && !args.no_rollback,
    };
    let report = migrate::execute(
        ctx,
        &mut run,
        source,
        target,
        &finish,
        progress_printer(args.quiet_or_json()),
        cancel,
    )?;
    if report.state == RunState::Completed {
        after_success(ctx, &args, &report)?;
    }
    if args.output.json {
        print_json(&report)?;
    } else {
        print_text(&describe(&report, &args))?;
    }
    Ok(match report.state {
        RunState::Completed => EXIT_OK,
        RunState::Interrupted | RunState::Running => EXIT_INTERRUPTED,
        RunState::RolledBack | RunState::Failed | RunState::BackingUp | RunState::RollingBack
            if report
                .error
                .as_deref()
                .is_some_and(|e| e.starts_with("verification failed")) =>
        {
            EXIT_FINDINGS
        }
        RunState::RolledBack | RunState::Failed | RunState::BackingUp | RunState::RollingBack => EXIT_ERROR,
    })
}

impl MigrateArgs {
    fn quiet_or_json(&self) -> bool {
        self.output.quiet || self.output.json
    }

    fn resume_command(&self, run: &MigrateReport) -> String {
        format!(
            "ragged backend migrate {} {} --resume --checkpoint {}",
            self.source,
            self.target,
            run.run_dir.join("run.json").display()
        )
    }
}

/// Asks before a new migration when the configuration wants confirmation and a person is there
/// to give it; scripts (no terminal), `--yes` and `--json` are not asked.
fn confirmed(
    ctx: &Context,
    args: &MigrateArgs,
    source: &Store,
    target: &Store,
    options: &MigrateOptions,
) -> Result<bool> {
    if args.yes || args.output.json || !ctx.config.migration.require_confirmation || !interactive() {
        return Ok(true);
    }
    let names = if options.collections.is_empty() {
        source.backend.list_collections().in_store(source, "list collections")?
    } else {
        options.collections.clone()
    };
    let backup = if options.backup {
        "backed up first"
    } else {
        "NOT backed up (--no-backup)"
    };
    confirm(&format!(
        "migrate {} from {} to {} (the target is {backup})?",
        names.join(", "),
        source.spec,
        target.spec
    ))
}

/// Configured options overridden by the command line's.
fn merged(mut configured: BTreeMap<String, String>, cli: &[String]) -> Result<BTreeMap<String, String>> {
    configured.extend(parse_options(cli)?);
    Ok(configured)
}

fn options(ctx: &Context, args: &MigrateArgs) -> MigrateOptions {
    let settings = &ctx.config.migration;
    MigrateOptions {
        collections: match &args.persona {
            Some(persona) => ctx.config.persona_collections(persona),
            None => args.collections.clone(),
        },
        batch_size: args.batch_size.unwrap_or(settings.batch_size),
        checkpoint_interval: args.checkpoint_interval.unwrap_or(settings.checkpoint_interval),
        backup: args.backup || (settings.auto_backup && !args.no_backup),
    }
}

/// After a verified migration: the default store when asked, and the backup retention.
fn after_success(ctx: &Context, args: &MigrateArgs, report: &MigrateReport) -> Result<()> {
    if args.set_default {
        let mut config = ctx.config.clone();
        config.set_default_store(&args.target, args.persona.as_deref());
        config.save(&ctx.config_path())?;
        if !args.quiet_or_json() {
            let scope = args
                .persona
                .as_ref()
                .map(|p| format!("persona {p}"))
                .unwrap_or_else(|| "global".to_owned());
            status(&format!("{} is now the default store ({scope})", args.target));
        }
    }
    let finished = Run::list(ctx)?
        .into_iter()
        .filter(|r| matches!(r.state, RunState::Completed | RunState::RolledBack));
    for old in finished.skip(ctx.config.migration.backup_retention.max(1)) {
        if old.id != report.run_id {
            let dir = Run::dir(ctx, &old.id);
            std::fs::remove_dir_all(&dir).with_context(|| format!("removing the old run {}", dir.display()))?;
        }
    }
    Ok(())
}

fn dry_run(ctx: &Context, args: &MigrateArgs) -> Result<u8> {
    let (source_spec, source_configured) = ctx.config.resolve_store(&args.source)?;
    let (target_spec, target_configured) = ctx.config.resolve_store(&args.target)?;
    let source_options = merged(source_configured, &args.options.source_options)?;
    let source = Store::open(ctx, &source_spec, &source_options, Access::ReadOnly)?;
    let target_options = merged(target_configured, &args.options.target_options)?;
    // Read-only, so a dry run cannot create the target; a target that does not exist yet is empty.
    let target = match Store::open(ctx, &target_spec, &target_options, Access::ReadOnly) {
        Ok(store) => Some(store),
        Err(error)
            if error
                .downcast_ref::<StoreError>()
                .is_some_and(|e| e.error.code == ErrorCode::NotFound) =>
        {
            None
        }
        Err(error) => return Err(error),
    };
    let options = options(ctx, args);
    let tolerance = args.checks.options(&ctx.config.migration).tolerance;
    let report = migrate::dry_run(
        ctx,
        &source,
        target.as_ref(),
        &target_spec,
        &target_options,
        &options,
        &tolerance,
    )?;
    if args.output.json {
        print_json(&report)?;
    } else {
        let mut text = format!("dry run: nothing was written\n{} -> {}\n", report.source, report.target);
        for c in &report.collections {
            text.push_str(&format!(
                "  {}: {} records, dim {}, {}; about {:.1}s and {} in the target (probe of {}: {} exact, {} approximate, {} different)\n",
                c.name,
                c.records,
                c.dimension,
                c.metric,
                c.estimated_seconds,
                c.estimated_target_bytes.map(human_bytes).unwrap_or_else(|| "unknown size".into()),
                c.probe_records,
                c.probe.exact,
                c.probe.approximate,
                c.probe.different
            ));
        }
        text.push_str(&format!(
            "total: about {:.1}s; target about {}; backups about {}; free at the target: {}\n",
            report.estimated_seconds,
            report
                .estimated_target_bytes
                .map(human_bytes)
                .unwrap_or_else(|| "unknown".into()),
            human_bytes(report.backup_bytes),
            report.free_bytes.map(human_bytes).unwrap_or_else(|| "unknown".into())
        ));
        for warning in &report.warnings {
            text.push_str(&format!("warning: {warning}\n"));
        }
        text.push_str(if report.ok {
            "the migration can proceed\n"
        } else {
            "the migration would fail or lose data\n"
        });
        print_text(&text)?;
    }
    Ok(if report.ok { EXIT_OK } else { EXIT_FINDINGS })
}

/// The run `--resume` continues: the one `checkpoint` names, or the newest unfinished run
/// between the same stores.
fn find_run(ctx: &Context, source: &StoreSpec, target: &StoreSpec, checkpoint: Option<&Path>) -> Result<Run> {
    let resumable = |run: &Run| run.state.is_unfinished();
    let (source, target) = (source.to_string(), target.to_string());
    let run = match checkpoint {
        Some(path) => Run::load(path)?,
        None => match Run::list(ctx)?
            .into_iter()
            .find(|r| resumable(r) && r.source == source && r.target == target)
        {
            Some(run) => run,
            None => bail!("no unfinished migration from {source} to {target} to resume"),
        },
    };
    if run.source != source || run.target != target {
        bail!(
            "run {} migrates {} to {}, not {source} to {target}",
            run.id,
            run.source,
            run.target
        );
    }
    if !resumable(&run) {
        bail!("run {} is {:?} and cannot be resumed", run.id, run.state);
    }
    Ok(run)
}

fn describe(report: &MigrateReport, args: &MigrateArgs) -> String {
    let mut text = String::new();
    for c in &report.collections {
        text.push_str(&format!("{}: {} records", c.name, c.records));
        if c.loaded_now > 0 || c.seconds > 0.0 {
            text.push_str(&format!(
                " ({} loaded in {:.2}s, {:.0} records/s)",
                c.loaded_now, c.seconds, c.records_per_second
            ));
        }
        match &c.verification {
            Some(v) => text.push_str(&format!(", {}\n", verification_summary(v))),
            None => text.push('\n'),
        }
    }
    match report.state {
        RunState::Completed => {}
        RunState::Interrupted | RunState::Running => {
            text.push_str(&format!(
                "interrupted; resume with:\n  {}\n",
                args.resume_command(report)
            ));
        }
        RunState::RolledBack => text.push_str(&format!(
            "migration failed: {}\nthe target was restored to its state before the migration; run {} in {}\n",
            report.error.as_deref().unwrap_or("unknown error"),
            report.run_id,
            report.run_dir.display()
        )),
        // Neither stays after execute returns; a crash leaves them, and a resume finishes them.
        RunState::BackingUp | RunState::RollingBack | RunState::Failed => text.push_str(&format!(
            "migration failed: {}\nthe target was left as it is (no backup or --no-rollback); resume with:\n  {}\n",
            report.error.as_deref().unwrap_or("unknown error"),
            args.resume_command(report)
        )),
    }
    text
}

/// A flag the first Ctrl-C sets, so work stops at the next batch boundary; a second one exits at
/// once (the work stays resumable either way: every checkpoint is durable).
pub(super) fn interrupt_flag() -> Arc<AtomicBool> {
    let cancel = Arc::new(AtomicBool::new(false));
    let flag = cancel.clone();
    let _ = ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::SeqCst) {
            std::process::exit(i32::from(EXIT_INTERRUPTED));
        }
        status("stopping after the current batch (Ctrl-C again to stop at once)...");
    });
    cancel
}

/// Shows migration progress on stderr: a bar on a terminal, periodic lines otherwise.
fn progress_printer(quiet: bool) -> migrate::ProgressFn {
    let current: Arc<Mutex<Option<Progress>>> = Arc::new(Mutex::new(None));
    Arc::new(move |event| {
        let Ok(mut slot) = current.lock() else { return };
        match event {
            MigrateEvent::CollectionStarted {
                name,
                records,
                done,
                batch_size,
            } => {
                *slot = Some(Progress::new(&name, records, done, batch_size, quiet));
            }
            MigrateEvent::Batch { records } => {
                if let Some(progress) = slot.as_mut() {
                    progress.batch(records);
                }
            }
            MigrateEvent::CollectionLoaded => {
                if let Some(progress) = slot.take() {
                    progress.finish();
                }
            }
            MigrateEvent::Verifying { name } => {
                if !quiet {
                    status(&format!("{name}: verifying"));
                }
            }
        }
    })
}
