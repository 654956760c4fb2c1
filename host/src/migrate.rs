//! Moving collections from one store to another: planned, checkpointed, verified, and rolled
//! back when anything goes wrong.
//!
//! A migration is a [`Run`] on disk. [`plan`] checks the stores, records the run and takes the
//! backups; [`execute`] streams each collection from the source plugin into the target plugin in
//! loads of `checkpoint_interval` records, rewriting the run's checkpoint after each load returns
//! (when the target has made it durable), then verifies every collection. A crash or Ctrl-C leaves
//! a run that `--resume` continues from its checkpoint; since target writes are keyed on ids, the
//! load that was in flight is simply replayed. A failure restores the target from its backup.
//!
//! Batches go from the source plugin's Arrow C stream to the target's without copies: the host
//! imports the stream, checks each batch's schema, counts it and re-exports the same buffers. The
//! source is read on a thread of its own, a few batches ahead, so extract and load overlap.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{Context as _, Result, bail};
use arrow_array::{RecordBatch, RecordBatchReader};
use arrow_schema::{ArrowError, SchemaRef};
use ragged_plugin_api::{Access, BatchStream, Capabilities, ErrorCode, ExtractRequest, LoadMode, LoadRequest};
use serde::Serialize;
use tracing::info;

use crate::backup;
use crate::context::Context;
use crate::runs::{CollectionProgress, Run, RunState};
use crate::store::{InStore, Store, StoreError, local_path};
use crate::tree;
use crate::verify::{self, CollectionVerification, Tolerance, VerifyOptions};

/// What to migrate and how.
#[derive(Debug, Clone)]
pub struct MigrateOptions {
    /// Collections to move; empty means all of the source's.
    pub collections: Vec<String>,
    /// Records per batch asked of the source.
    pub batch_size: u32,
    /// Records per load call, each followed by a durable checkpoint.
    pub checkpoint_interval: u64,
    /// Back up the source collections and the target before writing.
    pub backup: bool,
}

/// How a run ends.
#[derive(Debug, Clone)]
pub struct FinishOptions {
    /// Compare source and target record by record after loading, with these options.
    pub verify: Option<VerifyOptions>,
    /// Restore the target from its backup when verification fails or an error stops the run.
    pub auto_rollback: bool,
}

/// Called from whichever thread the target consumes batches on.
pub type ProgressFn = Arc<dyn Fn(MigrateEvent) + Send + Sync>;

/// Progress of a migration.
#[derive(Debug, Clone)]
pub enum MigrateEvent {
    /// A collection starts (or resumes after `done` records).
    CollectionStarted {
        /// The collection.
        name: String,
        /// Its record count.
        records: u64,
        /// Records already loaded by an earlier attempt.
        done: u64,
        /// Records per batch asked of the source.
        batch_size: u32,
    },
    /// A batch of `records` reached the target.
    Batch {
        /// Records in the batch.
        records: u64,
    },
    /// The collection is loaded.
    CollectionLoaded,
    /// Verification of a collection starts.
    Verifying {
        /// The collection.
        name: String,
    },
}

/// What a migration did, printed by `--json` and saved as the run's `report.json`.
#[derive(Debug, Clone, Serialize)]
pub struct MigrateReport {
    /// The run's id (`--resume --checkpoint` takes its `run.json`).
    pub run_id: String,
    /// The run's directory: checkpoint, backups, this report.
    pub run_dir: PathBuf,
    /// The source store.
    pub source: String,
    /// The target store.
    pub target: String,
    /// How the run ended.
    pub state: RunState,
    /// Why it failed, when it did.
    pub error: Option<String>,
    /// The backups taken before writing.
    pub backups: Vec<PathBuf>,
    /// One entry per collection.
    pub collections: Vec<CollectionReport>,
    /// Wall time of this attempt.
    pub seconds: f64,
}

/// One migrated collection.
#[derive(Debug, Clone, Serialize)]
pub struct CollectionReport {
    /// Its name.
    pub name: String,
    /// Records in the source.
    pub records: u64,
    /// Records loaded in this attempt (less than `records` after a resume).
    pub loaded_now: u64,
    /// Wall time of extract and load in this attempt.
    pub seconds: f64,
    /// Records per second in this attempt.
    pub records_per_second: f64,
    /// Verification, when it ran.
    pub verification: Option<CollectionVerification>,
}

/// Checks the stores, records a new run and takes the backups. Nothing is written to the target.
pub fn plan(ctx: &Context, source: &Store, target: &Store, options: &MigrateOptions) -> Result<Run> {
    if source.access != Access::ReadOnly {
        bail!("internal: the source of a migration must be opened read-only");
    }
    source.require(Capabilities::READ, "be read")?;
    target.require(Capabilities::WRITE, "be written")?;
    if options.batch_size == 0 || options.checkpoint_interval == 0 {
        bail!("--batch-size and the checkpoint interval must be at least 1");
    }
    let names = if options.collections.is_empty() {
        source.backend.list_collections().in_store(source, "list collections")?
    } else {
        options.collections.clone()
    };
    let existing = target.backend.list_collections().in_store(target, "list collections")?;
    let clashes: Vec<&String> = names.iter().filter(|n| existing.contains(n)).collect();
    if !clashes.is_empty() {
        bail!(
            "{} already has {}: migrate into a store without them, or drop them first",
            target.spec,
            clashes.iter().map(|n| format!("'{n}'")).collect::<Vec<_>>().join(", ")
        );
    }
    let mut collections = Vec::new();
    for name in &names {
        let info = source
            .backend
            .describe(name)
            .in_store(source, &format!("describe '{name}'"))?;
        let progress = CollectionProgress {
            count: info.count,
            records_done: 0,
            created_by_run: false,
            loaded: false,
        };
        collections.push((name.clone(), progress));
    }
    let id = Run::new_id();
    let dir = Run::dir(ctx, &id);
    let mut run = Run {
        id,
        started: jiff::Timestamp::now().to_string(),
        source: source.spec.to_string(),
        target: target.spec.to_string(),
        source_options: source.options.clone(),
        target_options: target.options.clone(),
        batch_size: options.batch_size,
        checkpoint_interval: options.checkpoint_interval,
        collections,
        target_location_existed: target.existed_before_open,
        backup: None,
        source_fingerprint: source_files(source, &names)?
            .map(|files| tree::metadata_fingerprint(&files))
            .transpose()?,
        state: if options.backup {
            RunState::BackingUp
        } else {
            RunState::Running
        },
        error: None,
    };
    run.save(&dir)?;
    if options.backup {
        take_backups(&mut run, &dir, source, target)?;
    }
    Ok(run)
}

/// Saves the source collections' files and everything the target holds into the run's
/// directory, then marks the run `Running`. Repeating it after a crash is safe: nothing was
/// written to the target before the run left `BackingUp`.
fn take_backups(run: &mut Run, dir: &Path, source: &Store, target: &Store) -> Result<()> {
    let names: Vec<String> = run.collections.iter().map(|(name, _)| name.clone()).collect();
    info!(run = %run.id, "backing up the source collections");
    let Some(files) = source_files(source, &names)? else {
        bail!(
            "{}: the plugin cannot list a collection's files, so the source cannot be backed up: \
             pass --no-backup to migrate without backups",
            run.source
        );
    };
    let label = format!("source {} before run {}", run.source, run.id);
    backup::create(&dir.join("source.tar.zst"), &label, &files, &[])?;
    info!(run = %run.id, "backing up the target");
    // Everything the target holds: restoring this tree is the rollback. A location the plugin
    // only created when it opened the store is saved as absent, so a rollback removes it.
    let (present, absent): (Vec<PathBuf>, Vec<PathBuf>) =
        match (local_path(&target.spec.location), run.target_location_existed) {
            (Some(location), Some(false)) => (Vec::new(), vec![location]),
            (Some(location), _) => (vec![location], Vec::new()),
            (None, _) => (Vec::new(), Vec::new()),
        };
    let label = format!("target {} before run {}", run.target, run.id);
    backup::create(&dir.join("target.tar.zst"), &label, &present, &absent)?;
    run.backup = Some(dir.join("target.tar.zst"));
    run.state = RunState::Running;
    run.save(dir)
}

/// The files of the source collections `names`, sorted; None when the plugin cannot list them.
fn source_files(source: &Store, names: &[String]) -> Result<Option<Vec<PathBuf>>> {
    let mut files = Vec::new();
    for name in names {
        match source.backend.files(name) {
            Ok(listed) => files.extend(listed.into_iter().map(PathBuf::from)),
            Err(error) if error.code == ErrorCode::Unsupported => return Ok(None),
            Err(error) => {
                return Err(StoreError::new(&source.spec, &format!("list the files of '{name}'"), error).into());
            }
        }
    }
    files.sort();
    files.dedup();
    Ok(Some(files))
}

/// The source collections' files are no longer those the run started from.
#[derive(Debug, thiserror::Error)]
#[error(
    "the source {store} changed during the migration: the files of {collections} were written to after \
     run {run} started, so the target could hold a mix of old and new records; stop the writes to the \
     source and run the migration again"
)]
struct SourceChanged {
    store: String,
    collections: String,
    run: String,
}

/// Fails with [`SourceChanged`] when the source was written to since the run started: a
/// migration copies one state of the source or none.
fn check_source_unchanged(run: &Run, source: &Store) -> Result<()> {
    let Some(started) = &run.source_fingerprint else {
        return Ok(());
    };
    let names: Vec<String> = run.collections.iter().map(|(name, _)| name.clone()).collect();
    let now = source_files(source, &names)?
        .map(|files| tree::metadata_fingerprint(&files))
        .transpose()?;
    if now.as_ref() != Some(started) {
        return Err(SourceChanged {
            store: run.source.clone(),
            collections: names.join(", "),
            run: run.id.clone(),
        }
        .into());
    }
    Ok(())
}

/// Loads every collection of `run` that is not loaded yet, then verifies; on failure rolls the
/// target back (when asked). Returns the report of this attempt; `cancel` stops at the next batch
/// boundary with the run left resumable.
pub fn execute(
    ctx: &Context,
    run: &mut Run,
    source: Store,
    target: Store,
    finish: &FinishOptions,
    progress: ProgressFn,
    cancel: Arc<AtomicBool>,
) -> Result<MigrateReport> {
    let started = Instant::now();
    let dir = Run::dir(ctx, &run.id);
    let mut reports = Vec::new();
    // A run stopped while rolling back only finishes its rollback: its target is half restored.
    if run.state != RunState::RollingBack {
        if run.state == RunState::BackingUp {
            take_backups(run, &dir, &source, &target)?;
        }
        run.state = RunState::Running;
        run.error = None;
        run.save(&dir)?;
        let outcome = check_source_unchanged(run, &source)
            .and_then(|()| load_all(run, &dir, &source, &target, &progress, &cancel, &mut reports))
            .and_then(|()| {
                if cancel.load(Ordering::SeqCst) {
                    return Ok(());
                }
                // Before verifying (a changed source would be reported as differences) and after
                // (a write during verification), so no mix of two states can pass.
                check_source_unchanged(run, &source)?;
                verify_all(run, &source, &target, finish, &progress, &mut reports)?;
                check_source_unchanged(run, &source)
            });
        let interrupted =
            cancel.load(Ordering::SeqCst) && outcome.is_ok() && run.collections.iter().any(|(_, p)| !p.loaded);
        match outcome {
            Ok(()) if interrupted => run.state = RunState::Interrupted,
            Ok(()) if reports.iter().all(|r| r.verification.as_ref().is_none_or(|v| v.ok)) => {
                run.state = RunState::Completed
            }
            Ok(()) => {
                let failed: Vec<&str> = reports
                    .iter()
                    .filter(|r| r.verification.as_ref().is_some_and(|v| !v.ok))
                    .map(|r| r.name.as_str())
                    .collect();
                run.error = Some(format!("verification failed for {}", failed.join(", ")));
            }
            // A write to the source explains a failure to read it, so it is named first.
            Err(error) => match check_source_unchanged(run, &source) {
                Err(changed) if !error.is::<SourceChanged>() => {
                    run.error = Some(format!("{changed:#} (it stopped on: {error:#})"))
                }
                _ => run.error = Some(format!("{error:#}")),
            },
        }
    }
    if run.error.is_some() {
        // The stores are closed first: a plugin may hold files of the target open.
        drop(source);
        drop(target);
        if finish.auto_rollback && run.backup.is_some() {
            // Durable before the first file is restored, so a crash mid-restore is finished by a
            // resume instead of resuming the load into a half-restored target.
            run.state = RunState::RollingBack;
            run.save(&dir)?;
            rollback(run)?;
            run.state = RunState::RolledBack;
        } else {
            run.state = RunState::Failed;
        }
    }
    run.save(&dir)?;
    let report = MigrateReport {
        run_id: run.id.clone(),
        run_dir: dir.clone(),
        source: run.source.clone(),
        target: run.target.clone(),
        state: run.state,
        error: run.error.clone(),
        backups: [dir.join("source.tar.zst"), dir.join("target.tar.zst")]
            .into_iter()
            .filter(|p| p.exists())
            .collect(),
        collections: reports,
        seconds: started.elapsed().as_secs_f64(),
    };
    std::fs::write(dir.join("report.json"), serde_json::to_vec_pretty(&report)?)
        .with_context(|| format!("writing the report in {}", dir.display()))?;
    Ok(report)
}

/// Restores the target of `run` from its backup.
pub fn rollback(run: &Run) -> Result<()> {
    let Some(archive) = &run.backup else {
        bail!(
            "run {} took no backup (--no-backup), so it cannot be rolled back",
            run.id
        )
    };
    info!(run = %run.id, "rolling back");
    backup::restore(archive).with_context(|| format!("rolling back run {} from {}", run.id, archive.display()))?;
    Ok(())
}

fn load_all(
    run: &mut Run,
    dir: &Path,
    source: &Store,
    target: &Store,
    progress: &ProgressFn,
    cancel: &Arc<AtomicBool>,
    reports: &mut Vec<CollectionReport>,
) -> Result<()> {
    let names: Vec<String> = run.collections.iter().map(|(n, _)| n.clone()).collect();
    for name in names {
        let state = run.progress_mut(&name)?.clone();
        if state.loaded {
            continue;
        }
        if cancel.load(Ordering::SeqCst) {
            return Ok(());
        }
        let started = Instant::now();
        let info = source
            .backend
            .describe(&name)
            .in_store(source, &format!("describe '{name}'"))?;
        if info.count != state.count {
            bail!(
                "collection '{name}' of {} changed since the migration started ({} records then, {} now); \
                 start a new migration",
                source.spec,
                state.count,
                info.count
            );
        }
        info!(collection = %name, records = info.count, done = state.records_done, "migrating");
        progress(MigrateEvent::CollectionStarted {
            name: name.clone(),
            records: info.count,
            done: state.records_done,
            batch_size: run.batch_size,
        });
        let _streaming = crate::allocator::streaming();
        let request = ExtractRequest::records(run.batch_size, state.records_done);
        let stream = source
            .backend
            .extract(&name, &request)
            .in_store(source, &format!("extract '{name}'"))?;
        let reader = crate::records::import_stream(stream, Some(info.dimension))
            .with_context(|| format!("{}: extract '{name}'", source.spec))?;
        let schema = ragged_plugin_api::arrow::canonical_schema(info.dimension);
        // Batches go to the target as they are, so the schema must be the canonical one exactly.
        if reader.schema().fields() != schema.fields() {
            bail!(
                "{}: extract '{name}' returned the schema {:?}, not the canonical {:?}",
                source.spec,
                reader.schema().fields(),
                schema.fields()
            );
        }
        let reader = prefetch(reader).context("starting the thread that reads the source")?;
        let shared: SharedReader = Arc::new(Mutex::new(Box::new(reader)));
        let mut loaded_now = 0;
        loop {
            let mode = if run.progress_mut(&name)?.created_by_run {
                LoadMode::Upsert
            } else {
                // Recorded before the first write, so a rollback knows the collection is ours.
                run.progress_mut(&name)?.created_by_run = true;
                run.save(dir)?;
                LoadMode::Create
            };
            let chunk = ChunkReader::new(
                shared.clone(),
                schema.clone(),
                run.checkpoint_interval,
                progress.clone(),
                cancel.clone(),
            );
            let (taken, exhausted, failure) = (chunk.taken.clone(), chunk.exhausted.clone(), chunk.failure.clone());
            let load = LoadRequest {
                collection: info.clone(),
                mode,
            };
            let loaded = target.backend.load(&load, BatchStream::from_reader(chunk));
            // A source that failed mid-stream is the cause, whatever the target made of it.
            if let Some(failure) = failure.lock().ok().and_then(|mut f| f.take()) {
                bail!("{failure}");
            }
            loaded.in_store(target, &format!("load '{name}'"))?;
            let taken = taken.load(Ordering::SeqCst);
            loaded_now += taken;
            let collection = run.progress_mut(&name)?;
            collection.records_done += taken;
            let finished = exhausted.load(Ordering::SeqCst);
            collection.loaded = finished;
            run.save(dir)?;
            if finished || cancel.load(Ordering::SeqCst) {
                break;
            }
        }
        progress(MigrateEvent::CollectionLoaded);
        let seconds = started.elapsed().as_secs_f64();
        reports.push(CollectionReport {
            name: name.clone(),
            records: info.count,
            loaded_now,
            seconds,
            records_per_second: loaded_now as f64 / seconds.max(1e-9),
            verification: None,
        });
        if !run.progress_mut(&name)?.loaded {
            return Ok(());
        }
        let target_count = target
            .backend
            .count(&name)
            .in_store(target, &format!("count '{name}'"))?;
        if target_count != info.count {
            bail!(
                "collection '{name}': the source has {} records, the target now has {target_count}",
                info.count
            );
        }
    }
    Ok(())
}

fn verify_all(
    run: &Run,
    source: &Store,
    target: &Store,
    finish: &FinishOptions,
    progress: &ProgressFn,
    reports: &mut Vec<CollectionReport>,
) -> Result<()> {
    let Some(options) = &finish.verify else { return Ok(()) };
    for (name, state) in &run.collections {
        progress(MigrateEvent::Verifying { name: name.clone() });
        let verification = verify::compare_collection(source, target, name, options)?;
        match reports.iter_mut().find(|r| &r.name == name) {
            Some(report) => report.verification = Some(verification),
            None => reports.push(CollectionReport {
                name: name.clone(),
                records: state.count,
                loaded_now: 0,
                seconds: 0.0,
                records_per_second: 0.0,
                verification: Some(verification),
            }),
        }
    }
    Ok(())
}

type SharedReader = Arc<Mutex<Box<dyn Iterator<Item = Result<RecordBatch, ArrowError>> + Send>>>;

/// How many batches the source may run ahead of the target.
const PREFETCH_BATCHES: usize = 4;

/// Reads `source` on its own thread, up to [`PREFETCH_BATCHES`] batches ahead, so the source
/// plugin extracts while the target plugin loads (on two cores, both at once). The thread ends
/// after the source's end or first error, or when the consumer is dropped.
fn prefetch(
    source: impl Iterator<Item = Result<RecordBatch, ArrowError>> + Send + 'static,
) -> std::io::Result<impl Iterator<Item = Result<RecordBatch, ArrowError>> + Send> {
    let (sender, receiver) = std::sync::mpsc::sync_channel(PREFETCH_BATCHES);
    std::thread::Builder::new()
        .name("ragged extract".to_owned())
        .spawn(move || {
            for item in source {
                let failed = item.is_err();
                if sender.send(item).is_err() || failed {
                    break;
                }
            }
        })?;
    Ok(receiver.into_iter())
}

/// One load's worth of the source stream: batches until `limit` records have passed (ending at
/// a batch boundary), the source ends, or a stop was requested. Checks each batch against the
/// canonical schema and reports progress; keeps the source's error, which the target only sees
/// as the end of its input.
struct ChunkReader {
    source: SharedReader,
    schema: SchemaRef,
    limit: u64,
    progress: ProgressFn,
    cancel: Arc<AtomicBool>,
    taken: Arc<AtomicU64>,
    exhausted: Arc<AtomicBool>,
    failure: Arc<Mutex<Option<String>>>,
}

impl ChunkReader {
    fn new(source: SharedReader, schema: SchemaRef, limit: u64, progress: ProgressFn, cancel: Arc<AtomicBool>) -> Self {
        let (taken, exhausted) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicBool::new(false)));
        ChunkReader {
            source,
            schema,
            limit,
            progress,
            cancel,
            taken,
            exhausted,
            failure: Arc::default(),
        }
    }

    fn fail(&self, error: ArrowError) -> Option<Result<RecordBatch, ArrowError>> {
        if let Ok(mut failure) = self.failure.lock() {
            failure.get_or_insert_with(|| crate::records::arrow_message(&error));
        }
        Some(Err(error))
    }
}

impl Iterator for ChunkReader {
    type Item = Result<RecordBatch, ArrowError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.taken.load(Ordering::SeqCst) >= self.limit || self.cancel.load(Ordering::SeqCst) {
            return None;
        }
        let next = match self.source.lock() {
            Ok(mut source) => source.next(),
            Err(_) => return Some(Err(ArrowError::ExternalError("the source stream was poisoned".into()))),
        };
        let batch = match next {
            None => {
                self.exhausted.store(true, Ordering::SeqCst);
                return None;
            }
            Some(Err(error)) => return self.fail(error),
            Some(Ok(batch)) => batch,
        };
        if batch.schema().fields() != self.schema.fields() {
            return self.fail(ArrowError::SchemaError(
                "the source produced a batch outside the canonical schema".into(),
            ));
        }
        let rows = batch.num_rows() as u64;
        self.taken.fetch_add(rows, Ordering::SeqCst);
        (self.progress)(MigrateEvent::Batch { records: rows });
        Some(Ok(batch))
    }
}

impl RecordBatchReader for ChunkReader {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }
}

/// Records copied into a scratch store of the target's kind by a dry run, per collection.
const PROBE_RECORDS: u64 = 2000;

/// What a dry run measured and predicts. Nothing was written to either store.
#[derive(Debug, Clone, Serialize)]
pub struct DryRunReport {
    /// The source store.
    pub source: String,
    /// The target store.
    pub target: String,
    /// One entry per collection.
    pub collections: Vec<DryRunCollection>,
    /// Predicted wall time of extract and load, in seconds.
    pub estimated_seconds: f64,
    /// Predicted size of the migrated collections in the target, when the plugin reports storage.
    pub estimated_target_bytes: Option<u64>,
    /// Bytes the backups would take before compression (source collections plus current target).
    pub backup_bytes: u64,
    /// Free bytes where the target lives, when it is a local path.
    pub free_bytes: Option<u64>,
    /// Whether the target and the backups fit, when both sizes are known.
    pub enough_space: Option<bool>,
    /// Everything that would be lost, changed or risky.
    pub warnings: Vec<String>,
    /// No warning that would make the migration fail or lose data.
    pub ok: bool,
}

/// The dry run of one collection.
#[derive(Debug, Clone, Serialize)]
pub struct DryRunCollection {
    /// The collection.
    pub name: String,
    /// Its records.
    pub records: u64,
    /// Its dimension.
    pub dimension: u32,
    /// Its metric in the source.
    pub metric: ragged_plugin_api::DistanceMetric,
    /// Its metric as the target records it.
    pub target_metric: ragged_plugin_api::DistanceMetric,
    /// Records copied through a scratch target store.
    pub probe_records: u64,
    /// How the probe records came back from the scratch target.
    pub probe: verify::Tally,
    /// Predicted wall time of extract and load.
    pub estimated_seconds: f64,
    /// Predicted size in the target.
    pub estimated_target_bytes: Option<u64>,
}

/// Measures a migration without performing it: copies up to [`PROBE_RECORDS`] of each collection
/// through a scratch store of the target's plugin (in a temporary directory, removed afterwards),
/// times it, measures the storage, reads the records back and classifies each one, and checks the
/// free disk space. `target` is `None` when the target does not exist yet.
pub fn dry_run(
    ctx: &Context,
    source: &Store,
    target: Option<&Store>,
    target_spec: &crate::store::StoreSpec,
    target_options: &std::collections::BTreeMap<String, String>,
    options: &MigrateOptions,
    tolerance: &Tolerance,
) -> Result<DryRunReport> {
    let names = if options.collections.is_empty() {
        source.backend.list_collections().in_store(source, "list collections")?
    } else {
        options.collections.clone()
    };
    let mut warnings = Vec::new();
    if let Some(target) = target {
        let existing = target.backend.list_collections().in_store(target, "list collections")?;
        for name in names.iter().filter(|n| existing.contains(n)) {
            warnings.push(format!(
                "{} already has '{name}': the migration would be refused",
                target.spec
            ));
        }
    }
    let scratch = tempfile::Builder::new().prefix("ragged-dry-run-").tempdir()?;
    let probe_spec = crate::store::StoreSpec {
        backend: target_spec.backend.clone(),
        location: scratch.path().join("probe").display().to_string(),
    };
    let probe_store = Store::open(ctx, &probe_spec, target_options, Access::ReadWrite)?;
    probe_store.require(Capabilities::WRITE, "be written")?;
    let mut collections = Vec::new();
    let mut backup_bytes = 0u64;
    for name in &names {
        let info = source
            .backend
            .describe(name)
            .in_store(source, &format!("describe '{name}'"))?;
        for file in source
            .backend
            .files(name)
            .in_store(source, &format!("list the files of '{name}'"))?
        {
            backup_bytes += tree_bytes(Path::new(&file));
        }
        let started = Instant::now();
        let request = ExtractRequest::records(options.batch_size, 0);
        let stream = source
            .backend
            .extract(name, &request)
            .in_store(source, &format!("extract '{name}'"))?;
        let mut batches = Vec::new();
        let mut taken = 0u64;
        let read = crate::records::read_stream(stream, Some(info.dimension))
            .with_context(|| format!("{}: extract '{name}'", source.spec))?;
        for batch in read {
            let batch = batch?;
            let wanted = (PROBE_RECORDS - taken).min(batch.num_rows() as u64) as usize;
            taken += wanted as u64;
            batches.push(batch.slice(0, wanted));
            if taken >= PROBE_RECORDS {
                break;
            }
        }
        let extract_seconds = started.elapsed().as_secs_f64();
        let records: Vec<ragged_plugin_api::Record> = batches
            .iter()
            .map(ragged_plugin_api::arrow::batch_to_records)
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .flatten()
            .collect();
        let started = Instant::now();
        let stream = BatchStream::from_batches(ragged_plugin_api::arrow::canonical_schema(info.dimension), batches);
        let load = LoadRequest {
            collection: info.clone(),
            mode: LoadMode::Create,
        };
        probe_store
            .backend
            .load(&load, stream)
            .in_store(&probe_store, &format!("load a probe of '{name}'"))?;
        let load_seconds = started.elapsed().as_secs_f64();
        let stored = probe_store
            .backend
            .describe(name)
            .in_store(&probe_store, &format!("describe '{name}'"))?;
        let back = crate::records::collect_records(
            probe_store
                .backend
                .extract(name, &ExtractRequest::records(options.batch_size, 0))
                .in_store(&probe_store, &format!("extract '{name}'"))?,
        )?;
        let back: std::collections::HashMap<&str, &ragged_plugin_api::Record> =
            back.iter().map(|r| (r.id.as_str(), r)).collect();
        let mut probe = verify::Tally::default();
        let mut similarities = verify::Similarities::default();
        let mut first_different = Vec::new();
        for record in &records {
            match back.get(record.id.as_str()) {
                Some(got) => {
                    let (outcome, similarity) = verify::compare_records(record, got, tolerance);
                    if matches!(outcome, verify::RecordMatch::Different { .. }) && first_different.len() < 5 {
                        first_different.push(record.id.clone());
                    }
                    probe.add(outcome);
                    similarities.add(similarity);
                }
                None => {
                    probe.different += 1;
                    first_different.push(record.id.clone());
                }
            }
        }
        let scale = if taken == 0 {
            0.0
        } else {
            info.count as f64 / taken as f64
        };
        let estimated_target_bytes = probe_store
            .backend
            .storage(name)
            .ok()
            .map(|report| (report.total_bytes as f64 * scale.max(1.0)).round() as u64);
        if stored.metric != info.metric {
            warnings.push(format!(
                "'{name}': the target would record metric {} instead of {}",
                stored.metric, info.metric
            ));
        }
        if stored.dimension != info.dimension {
            warnings.push(format!(
                "'{name}': the target would record dimension {} instead of {}",
                stored.dimension, info.dimension
            ));
        }
        if probe.different > 0 {
            warnings.push(format!(
                "'{name}': {} of {taken} probe records came back different from the target (e.g. {}): verification would fail",
                probe.different,
                first_different.join(", ")
            ));
        }
        if probe.inexact_vectors > 0 {
            warnings.push(format!(
                "'{name}': {} of {taken} probe vectors came back not bit-exact (largest cosine distance {:.1e}); accepted unless --exact",
                probe.inexact_vectors,
                1.0 - similarities.stats().map_or(1.0, |s| s.min)
            ));
        }
        if probe.rounded_floats > 0 {
            warnings.push(format!(
                "'{name}': {} of {taken} probe records had a metadata float rounded by 1 ulp; accepted unless --exact",
                probe.rounded_floats
            ));
        }
        collections.push(DryRunCollection {
            name: name.clone(),
            records: info.count,
            dimension: info.dimension,
            metric: info.metric,
            target_metric: stored.metric,
            probe_records: taken,
            probe,
            estimated_seconds: (extract_seconds + load_seconds) * scale,
            estimated_target_bytes,
        });
    }
    drop(probe_store);
    let target_location = local_path(&target_spec.location);
    if let Some(location) = &target_location {
        backup_bytes += tree_bytes(location);
    }
    let free_bytes = target_location
        .as_deref()
        .and_then(existing_ancestor)
        .and_then(|dir| fs4::available_space(dir).ok());
    let estimated_target_bytes = collections
        .iter()
        .map(|c| c.estimated_target_bytes)
        .sum::<Option<u64>>();
    let needed = estimated_target_bytes.map(|bytes| bytes + if options.backup { backup_bytes } else { 0 });
    let enough_space = free_bytes.zip(needed).map(|(free, needed)| free >= needed);
    if enough_space == Some(false) {
        warnings.push(format!(
            "not enough free disk at {}: {} bytes free, about {} needed for the target and the backups",
            target_spec.location,
            free_bytes.unwrap_or(0),
            needed.unwrap_or(0)
        ));
    }
    let ok = enough_space != Some(false)
        && collections
            .iter()
            .all(|c| c.probe.different == 0 && c.target_metric == c.metric)
        && !warnings.iter().any(|w| w.contains("would be refused"));
    Ok(DryRunReport {
        source: source.spec.to_string(),
        target: target_spec.to_string(),
        estimated_seconds: collections.iter().map(|c| c.estimated_seconds).sum(),
        collections,
        estimated_target_bytes,
        backup_bytes,
        free_bytes,
        enough_space,
        warnings,
        ok,
    })
}

/// Bytes of the regular files under `path` (0 when missing).
fn tree_bytes(path: &Path) -> u64 {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_file() => m.len(),
        Ok(m) if m.is_dir() => std::fs::read_dir(path)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| tree_bytes(&e.path()))
            .sum(),
        _ => 0,
    }
}

/// The nearest existing directory at or above `path`.
fn existing_ancestor(path: &Path) -> Option<&Path> {
    path.ancestors().find(|p| p.is_dir())
}
