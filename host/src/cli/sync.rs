//! Switching stores without downtime: `backend sync`, `backend cutover`, `ingest` and `delete`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use clap::Args;
use ragged_plugin_api::{Access, CollectionInfo, DistanceMetric};

use super::backend::{OutputArgs, StoreOptionArgs, VerifyArgs, open_store, verification_summary};
use super::migrate::interrupt_flag;
use super::{EXIT_FINDINGS, EXIT_INTERRUPTED, EXIT_OK};
use crate::context::Context;
use crate::dual_write::{self, DualWriteReport, DualWriter, StoreReport};
use crate::ingest::RecordFile;
use crate::output::{Progress, print_json, print_text, status};
use crate::store::{InStore, Store};
use crate::sync::{SyncOptions, SyncReport, sync_collection};

pub(crate) const SYNC_EXAMPLES: &str = "Examples:
  ragged backend sync chroma:./chroma_db lance:./lancedb
  ragged backend sync chroma:./chroma_db lance:./lancedb --collection notes --watch 60
  ragged backend sync chroma:./chroma_db lance:./lancedb --no-verify --json

Only records added, changed or deleted in the source since the last sync are written (digests
of what the target holds are kept in ~/.ragged/sync/). The first sync into an existing
collection, for example right after `backend migrate`, reads the target once to learn what it
holds. Deletions need a target plugin that can delete. An interrupted sync (Ctrl-C, crash)
continues where it stopped the next time. After syncing, each collection is verified as after a
migration (see `ragged backend verify --help`).

With --watch, syncs again every SECONDS until Ctrl-C; with --json, one JSON report per round.

Exit codes: 0 in sync and verified, 1 verification found differences, 2 error, 130 interrupted.";

pub(crate) const CUTOVER_EXAMPLES: &str = "Examples:
  ragged backend cutover chroma:./chroma_db lance:./lancedb
  ragged backend cutover chroma lance --persona researcher --full

A final sync, a verification of every collection synced, then the target becomes the default
store (global, or the persona's). When the stores differ after the sync, nothing is switched.

Exit codes: 0 switched, 1 the stores differ (not switched), 2 error, 130 interrupted.";

pub(crate) const INGEST_EXAMPLES: &str = "Examples:
  ragged ingest notes.jsonl --to chroma:./chroma_db,lance:./lancedb
  ragged ingest export.parquet --to lance:./lancedb --collection notes --metric l2
  ragged ingest --retry notes.retry.jsonl

Writes every record to every store (upserting by id), several stores in parallel. A store that
fails does not stop the others: what it could not take, and everything after it for that store,
goes to the retry file (default: FILE.retry.jsonl beside the input), and `ragged ingest --retry
FILE` replays it in order. No record is lost.

JSON lines: {\"id\": \"a\", \"document\": \"text\", \"metadata\": {\"page\": 3}, \"embedding\": [0.1, ...]}
per line (document and metadata optional). Parquet: columns id, document, metadata (JSON text)
and embedding (a list of floats).

Exit codes: 0 every store took every record, 1 some writes are queued in the retry file, 2 error.";

pub(crate) const DELETE_EXAMPLES: &str = "Examples:
  ragged delete --from chroma:./chroma_db --collection notes doc-1 doc-2
  ragged delete --from chroma:./chroma_db,lance:./lancedb --collection notes doc-7

Deletes from every store named, like ingest: what a store cannot delete goes to the retry file.

Exit codes: 0 deleted everywhere, 1 some deletions are queued in the retry file, 2 error.";

/// The two stores of a sync and the collections synced.
#[derive(Debug, Args)]
struct SyncPair {
    /// The store changes come from, opened read-only: BACKEND:LOCATION or a configured name.
    source: String,
    /// The store brought up to date.
    target: String,
    /// Only this collection (repeatable; default: all of the source's).
    #[arg(long = "collection", value_name = "NAME")]
    collections: Vec<String>,
    #[command(flatten)]
    options: StoreOptionArgs,
}

impl SyncPair {
    fn open(&self, ctx: &Context) -> Result<(Store, Store)> {
        Ok((
            open_store(ctx, &self.source, &self.options.source_options, Access::ReadOnly)?,
            open_store(ctx, &self.target, &self.options.target_options, Access::ReadWrite)?,
        ))
    }
}

#[derive(Debug, Args)]
pub(crate) struct SyncArgs {
    #[command(flatten)]
    stores: SyncPair,
    /// Keep syncing every SECONDS until Ctrl-C.
    #[arg(long, value_name = "SECONDS")]
    watch: Option<u64>,
    /// Records per load, each followed by a saved state (default: migration.checkpoint_interval).
    #[arg(long, value_name = "N")]
    chunk_size: Option<usize>,
    /// Skip the verification after syncing.
    #[arg(long)]
    no_verify: bool,
    #[command(flatten)]
    checks: VerifyArgs,
    #[command(flatten)]
    output: OutputArgs,
}

#[derive(Debug, Args)]
pub(crate) struct CutoverArgs {
    #[command(flatten)]
    stores: SyncPair,
    /// Switch this persona's default store instead of the global one.
    #[arg(long)]
    persona: Option<String>,
    #[command(flatten)]
    checks: VerifyArgs,
    #[command(flatten)]
    output: OutputArgs,
}

#[derive(Debug, Args)]
pub(crate) struct IngestArgs {
    /// The records: a .jsonl (JSON lines) or .parquet file.
    #[arg(required_unless_present = "retry", conflicts_with = "retry")]
    file: Option<PathBuf>,
    /// The stores to write, comma-separated or repeated (BACKEND:LOCATION or configured names).
    #[arg(long, value_delimiter = ',', value_name = "STORE", required_unless_present = "retry")]
    to: Vec<String>,
    /// The collection (default: the file name without its extension).
    #[arg(long)]
    collection: Option<String>,
    /// The metric of a collection that does not exist yet (default: the existing collection's, or cosine).
    #[arg(long)]
    metric: Option<DistanceMetric>,
    /// Records per write (default: migration.checkpoint_interval).
    #[arg(long, value_name = "N")]
    chunk_size: Option<usize>,
    /// Where failed writes are queued (default: FILE.retry.jsonl beside the input).
    #[arg(long, value_name = "FILE")]
    retry_file: Option<PathBuf>,
    /// Replay the writes queued in this retry file instead of reading records.
    #[arg(long, value_name = "FILE")]
    retry: Option<PathBuf>,
    #[command(flatten)]
    output: OutputArgs,
}

#[derive(Debug, Args)]
pub(crate) struct DeleteArgs {
    /// The ids to delete.
    #[arg(required = true)]
    ids: Vec<String>,
    /// The stores to delete from, comma-separated or repeated.
    #[arg(long, value_delimiter = ',', value_name = "STORE", required = true)]
    from: Vec<String>,
    /// The collection.
    #[arg(long)]
    collection: String,
    /// Where failed deletions are queued.
    #[arg(long, value_name = "FILE", default_value = "ragged-delete.retry.jsonl")]
    retry_file: PathBuf,
    #[command(flatten)]
    output: OutputArgs,
}

pub(crate) fn sync(ctx: &Context, args: SyncArgs) -> Result<u8> {
    let (source, target) = args.stores.open(ctx)?;
    let options = SyncOptions {
        chunk_size: chunk_size(ctx, args.chunk_size),
        verify: (!args.no_verify).then(|| args.checks.options(&ctx.config.migration)),
    };
    let cancel = interrupt_flag();
    loop {
        let started = Instant::now();
        let reports = sync_all(
            ctx,
            &source,
            &target,
            &args.stores.collections,
            &options,
            &cancel,
            &args.output,
        )?;
        let verified = reports.iter().all(in_sync);
        if cancel.load(Ordering::SeqCst) {
            return Ok(EXIT_INTERRUPTED);
        }
        let Some(seconds) = args.watch else {
            return Ok(if verified { EXIT_OK } else { EXIT_FINDINGS });
        };
        let next = started + Duration::from_secs(seconds);
        while Instant::now() < next {
            if cancel.load(Ordering::SeqCst) {
                return Ok(EXIT_INTERRUPTED);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

pub(crate) fn cutover(ctx: &Context, args: CutoverArgs) -> Result<u8> {
    let (source, target) = args.stores.open(ctx)?;
    let options = SyncOptions {
        chunk_size: chunk_size(ctx, None),
        verify: Some(args.checks.options(&ctx.config.migration)),
    };
    let cancel = interrupt_flag();
    let reports = sync_all(
        ctx,
        &source,
        &target,
        &args.stores.collections,
        &options,
        &cancel,
        &args.output,
    )?;
    if cancel.load(Ordering::SeqCst) {
        return Ok(EXIT_INTERRUPTED);
    }
    if !reports.iter().all(in_sync) {
        if !args.output.json {
            status(&format!(
                "not switched: {} and {} differ after the final sync (see above)",
                source.spec, target.spec
            ));
        }
        return Ok(EXIT_FINDINGS);
    }
    let mut config = ctx.config.clone();
    config.set_default_store(&args.stores.target, args.persona.as_deref());
    config.save(&ctx.config_path())?;
    if !args.output.json && !args.output.quiet {
        let scope = args
            .persona
            .map(|p| format!("for persona {p}"))
            .unwrap_or_else(|| "globally".to_owned());
        status(&format!(
            "switched: {} is now the default store {scope} (in {}); {} was left as it is",
            args.stores.target,
            ctx.config_path().display(),
            source.spec
        ));
    }
    Ok(EXIT_OK)
}

fn in_sync(report: &SyncReport) -> bool {
    !report.interrupted && report.verification.as_ref().is_none_or(|v| v.ok)
}

fn chunk_size(ctx: &Context, asked: Option<usize>) -> usize {
    asked
        .unwrap_or(ctx.config.migration.checkpoint_interval as usize)
        .max(1)
}

/// One round: every collection synced and reported (JSON: one document for the round).
fn sync_all(
    ctx: &Context,
    source: &Store,
    target: &Store,
    collections: &[String],
    options: &SyncOptions,
    cancel: &AtomicBool,
    output: &OutputArgs,
) -> Result<Vec<SyncReport>> {
    let names = if collections.is_empty() {
        source.backend.list_collections().in_store(source, "list collections")?
    } else {
        collections.to_vec()
    };
    let quiet = output.quiet || output.json;
    let mut reports = Vec::new();
    for name in &names {
        let mut progress: Option<Progress> = None;
        let mut seen = 0;
        let report = sync_collection(ctx, source, target, name, options, cancel, &mut |done, total| {
            let progress = progress.get_or_insert_with(|| {
                Progress::new(&format!("{name}: syncing"), total, 0, options.chunk_size as u32, quiet)
            });
            progress.batch(done - seen);
            seen = done;
        })?;
        if let Some(progress) = progress {
            progress.finish();
        }
        if !output.json {
            print_text(&format!("{}\n", sync_line(&report)))?;
        }
        reports.push(report);
    }
    if output.json {
        let ok = reports.iter().all(in_sync);
        print_json(&serde_json::json!({ "ok": ok, "collections": reports }))?;
    }
    Ok(reports)
}

fn sync_line(report: &SyncReport) -> String {
    let mut line = format!(
        "{}: {} added, {} updated, {} deleted, {} unchanged",
        report.collection, report.added, report.updated, report.deleted, report.unchanged
    );
    if report.interrupted {
        line.push_str("; interrupted (the next sync continues)");
    }
    if let Some(verification) = &report.verification {
        line.push_str(&format!("; {}", verification_summary(verification)));
    }
    line
}

pub(crate) fn ingest(ctx: &Context, args: IngestArgs) -> Result<u8> {
    if let Some(retry) = &args.retry {
        let report = dual_write::replay(ctx, retry)?;
        if args.output.json {
            print_json(&report)?;
        } else {
            print_text(&store_lines(&report.stores))?;
            if report.remaining > 0 {
                status(&format!(
                    "{} writes are still queued in {}",
                    report.remaining,
                    report.retry_file.display()
                ));
            } else if !args.output.quiet {
                status(&format!("every queued write applied; {} removed", retry.display()));
            }
        }
        return Ok(if report.remaining > 0 { EXIT_FINDINGS } else { EXIT_OK });
    }
    let file = args.file.as_deref().context("no input file")?;
    let mut records = RecordFile::open(file)?;
    let chunk = chunk_size(ctx, args.chunk_size);
    let first = records.next_chunk(chunk)?;
    let Some(dimension) = first.first().map(|r| r.embedding.len() as u32) else {
        bail!("{}: no records", file.display());
    };
    let name = match &args.collection {
        Some(name) => name.clone(),
        None => file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .context("the input file has no name to take the collection name from; pass --collection")?,
    };
    let stores = open_all(ctx, &args.to)?;
    let collection = collection_for(&stores, &name, dimension, args.metric);
    let retry_file = match &args.retry_file {
        Some(path) => path.clone(),
        None => beside(&std::path::absolute(file)?, "retry.jsonl"),
    };
    let mut writer = DualWriter::new(stores, collection, &retry_file)?;
    let mut chunk_records = first;
    let mut total = 0u64;
    while !chunk_records.is_empty() {
        writer.write(&chunk_records)?;
        total += chunk_records.len() as u64;
        if !args.output.quiet && !args.output.json {
            status(&format!("{name}: {total} records read and written"));
        }
        chunk_records = records.next_chunk(chunk)?;
    }
    report_writes(&writer.finish(), &args.output)
}

pub(crate) fn delete(ctx: &Context, args: DeleteArgs) -> Result<u8> {
    let stores = open_all(ctx, &args.from)?;
    let Some(info) = stores.iter().find_map(|s| s.backend.describe(&args.collection).ok()) else {
        bail!(
            "no store of {} holds a collection '{}'",
            args.from.join(", "),
            args.collection
        );
    };
    let mut writer = DualWriter::new(stores, info, &args.retry_file)?;
    writer.delete(&args.ids)?;
    report_writes(&writer.finish(), &args.output)
}

fn open_all(ctx: &Context, names: &[String]) -> Result<Vec<Store>> {
    names
        .iter()
        .map(|name| open_store(ctx, name, &[], Access::ReadWrite))
        .collect()
}

/// The collection as a store that has it describes it, or a new one.
fn collection_for(stores: &[Store], name: &str, dimension: u32, metric: Option<DistanceMetric>) -> CollectionInfo {
    let existing = stores.iter().find_map(|s| s.backend.describe(name).ok());
    match existing {
        Some(info) if metric.is_none_or(|m| m == info.metric) => info,
        _ => CollectionInfo {
            name: name.to_owned(),
            dimension,
            metric: metric.unwrap_or(DistanceMetric::Cosine),
            count: 0,
            embedding_model: None,
            index_params: None,
            metadata: serde_json::Map::new(),
            extras: serde_json::Map::new(),
        },
    }
}

fn beside(file: &Path, suffix: &str) -> PathBuf {
    let mut name = file.file_name().unwrap_or_default().to_owned();
    name.push(format!(".{suffix}"));
    file.with_file_name(name)
}

fn report_writes(report: &DualWriteReport, output: &OutputArgs) -> Result<u8> {
    if output.json {
        print_json(report)?;
    } else {
        print_text(&store_lines(&report.stores))?;
        if let Some(retry) = &report.retry_file {
            status(&format!(
                "some writes failed and are queued in {}; replay them with:\n  ragged ingest --retry {}",
                retry.display(),
                retry.display()
            ));
        }
    }
    Ok(if report.complete() { EXIT_OK } else { EXIT_FINDINGS })
}

fn store_lines(stores: &[StoreReport]) -> String {
    let mut text = String::new();
    for store in stores {
        text.push_str(&format!(
            "{}: {} written, {} deleted, {} queued for retry",
            store.store, store.written, store.deleted, store.queued
        ));
        if let Some(error) = &store.error {
            text.push_str(&format!(" ({error})"));
        }
        text.push('\n');
    }
    text
}
