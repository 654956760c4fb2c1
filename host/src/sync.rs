//! Incremental sync: brings a target collection up to date with its source, copying only what
//! changed since the last sync and deleting what left the source.
//!
//! The sync state (`<home>/sync/<key>.json`, one per source, target and collection) keeps, per
//! record id, a digest of the record as it was last written to the target. A sync reads the source
//! once and compares digests; it deletes the ids that left the source, then loads the new and
//! changed records, fetched by id, in chunks. The state is saved after every chunk, so an
//! interrupted sync resumes where it stopped: loads are keyed on ids, a replayed chunk never
//! duplicates. Without a usable state (first sync, or the target changed behind ragged's back) the
//! state is rebuilt from the target's own records.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context as _, Result, bail};
use ragged_plugin_api::arrow::{batch_to_records, canonical_schema};
use ragged_plugin_api::{BatchStream, Capabilities, CollectionInfo, ErrorCode, LoadMode, LoadRequest, Record};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::context::Context;
use crate::records::{read_stream, record_digest};
use crate::runs::write_atomic;
use crate::store::{InStore, Store};
use crate::verify::{self, CollectionVerification, VerifyOptions, for_each_record};

/// How a sync runs.
#[derive(Debug, Clone)]
pub struct SyncOptions {
    /// Records per load (and per saved state).
    pub chunk_size: usize,
    /// Verify the collection afterwards with these options.
    pub verify: Option<VerifyOptions>,
}

/// Where the digests of the last sync came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Baseline {
    /// The state saved by the previous sync.
    State,
    /// The target's own records (first sync into an existing collection, or a stale state).
    Target,
    /// Nothing: the target has no such collection yet.
    Empty,
}

/// What one collection's sync did.
#[derive(Debug, Clone, Serialize)]
pub struct SyncReport {
    /// The collection.
    pub collection: String,
    /// What the changes were computed against.
    pub baseline: Baseline,
    /// Records new in the source, now in the target.
    pub added: u64,
    /// Records changed in the source, replaced in the target.
    pub updated: u64,
    /// Records gone from the source, removed from the target.
    pub deleted: u64,
    /// Records left alone.
    pub unchanged: u64,
    /// Stopped early on request; the next sync continues.
    pub interrupted: bool,
    /// The state file.
    pub state_file: PathBuf,
    /// The check after the sync, when asked.
    pub verification: Option<CollectionVerification>,
}

/// The digests of what the target holds, as of the last sync.
#[derive(Debug, Serialize, Deserialize)]
struct SyncState {
    source: String,
    target: String,
    collection: String,
    /// id → the first 16 bytes of the record's full digest, in hex.
    records: BTreeMap<String, String>,
}

/// The state file for this source, target and collection.
pub fn state_path(ctx: &Context, source: &Store, target: &Store, collection: &str) -> PathBuf {
    let key = Sha256::digest(format!("{}\n{}\n{collection}", source.spec, target.spec));
    ctx.home.join("sync").join(format!("{}.json", hex::encode(&key[..8])))
}

fn short_digest(record: &Record) -> String {
    hex::encode(&record_digest(record).full[..16])
}

/// Brings `collection` in `target` up to date with `source`. `cancel` stops between chunks;
/// `on_progress` hears the number of records each finished chunk applied.
pub fn sync_collection(
    ctx: &Context,
    source: &Store,
    target: &Store,
    collection: &str,
    options: &SyncOptions,
    cancel: &AtomicBool,
    on_progress: &mut dyn FnMut(u64, u64),
) -> Result<SyncReport> {
    let info = source
        .backend
        .describe(collection)
        .in_store(source, &format!("describe '{collection}'"))?;
    let existing = match target.backend.describe(collection) {
        Ok(existing) => Some(existing),
        Err(error) if error.code == ErrorCode::NotFound => None,
        Err(error) => return Err(error).in_store(target, &format!("describe '{collection}'")),
    };
    if let Some(existing) = &existing
        && (existing.dimension != info.dimension || existing.metric != info.metric)
    {
        bail!(
            "'{collection}' has dimension {} and metric {} in {}, but {} and {} in {}: these are not copies of one collection",
            info.dimension,
            info.metric,
            source.spec,
            existing.dimension,
            existing.metric,
            target.spec
        );
    }
    let state_file = state_path(ctx, source, target, collection);
    let (mut state, baseline) = baseline(source, target, collection, existing.as_ref(), &state_file)?;
    if baseline == Baseline::Target {
        // Read at some cost, and true before anything is written: keep it even if nothing changes.
        save(&state_file, &state)?;
    }

    // One pass over the source: what is new, changed, gone.
    let (mut added, mut updated, mut unchanged) = (0u64, 0u64, 0u64);
    let mut changed: Vec<String> = Vec::new();
    let mut seen: HashSet<String> = HashSet::new();
    for_each_record(source, collection, info.dimension, |record| {
        match state.records.get(&record.id) {
            Some(digest) if *digest == short_digest(&record) => unchanged += 1,
            Some(_) => {
                updated += 1;
                changed.push(record.id.clone());
            }
            None => {
                added += 1;
                changed.push(record.id.clone());
            }
        }
        seen.insert(record.id);
    })?;
    let gone: Vec<String> = state.records.keys().filter(|id| !seen.contains(*id)).cloned().collect();
    drop(seen);
    if !gone.is_empty() {
        target.require(
            Capabilities::DELETE,
            &format!("delete records ({} left '{collection}' in {})", gone.len(), source.spec),
        )?;
    }

    let chunk_size = options.chunk_size.max(1);
    let total = (gone.len() + changed.len()) as u64;
    let mut done = 0u64;
    let mut interrupted = false;
    for chunk in gone.chunks(chunk_size) {
        if cancel.load(Ordering::SeqCst) {
            interrupted = true;
            break;
        }
        target
            .backend
            .delete(collection, chunk)
            .in_store(target, &format!("delete from '{collection}'"))?;
        for id in chunk {
            state.records.remove(id);
        }
        save(&state_file, &state)?;
        done += chunk.len() as u64;
        on_progress(done, total);
    }
    // An empty source still creates the collection, so the target lists what the source lists.
    let create_empty = existing.is_none() && changed.is_empty();
    let chunks: Vec<&[String]> = if create_empty {
        vec![&[]]
    } else {
        changed.chunks(chunk_size).collect()
    };
    for chunk in chunks {
        if interrupted || cancel.load(Ordering::SeqCst) {
            interrupted = true;
            break;
        }
        let written = copy_chunk(source, target, &info, chunk)?;
        state.records.extend(written);
        save(&state_file, &state)?;
        done += chunk.len() as u64;
        on_progress(done, total);
    }

    let verification = match (&options.verify, interrupted) {
        (Some(verify_options), false) => Some(verify::compare_collection(source, target, collection, verify_options)?),
        _ => None,
    };
    Ok(SyncReport {
        collection: collection.to_owned(),
        baseline,
        added,
        updated,
        deleted: gone.len() as u64,
        unchanged,
        interrupted,
        state_file,
        verification,
    })
}

/// The digests to compare the source against, and where they came from.
fn baseline(
    source: &Store,
    target: &Store,
    collection: &str,
    existing: Option<&CollectionInfo>,
    state_file: &std::path::Path,
) -> Result<(SyncState, Baseline)> {
    let mut state = SyncState {
        source: source.spec.to_string(),
        target: target.spec.to_string(),
        collection: collection.to_owned(),
        records: BTreeMap::new(),
    };
    let Some(existing) = existing else {
        return Ok((state, Baseline::Empty));
    };
    if let Ok(text) = std::fs::read_to_string(state_file) {
        let saved: SyncState = serde_json::from_str(&text)
            .with_context(|| format!("{}: not a ragged sync state", state_file.display()))?;
        // A count that disagrees means someone else wrote to the target: trust the target instead.
        if saved.records.len() as u64 == existing.count {
            return Ok((saved, Baseline::State));
        }
    }
    for_each_record(target, collection, existing.dimension, |record| {
        state.records.insert(record.id.clone(), short_digest(&record));
    })?;
    Ok((state, Baseline::Target))
}

/// Copies the records with these ids from source to target; returns the digests written.
fn copy_chunk(source: &Store, target: &Store, info: &CollectionInfo, ids: &[String]) -> Result<Vec<(String, String)>> {
    let name = &info.name;
    let stream = source
        .backend
        .fetch(name, ids)
        .in_store(source, &format!("fetch from '{name}'"))?;
    let mut batches = Vec::new();
    let mut written = Vec::with_capacity(ids.len());
    let read =
        read_stream(stream, Some(info.dimension)).with_context(|| format!("{}: fetch from '{name}'", source.spec))?;
    for batch in read {
        let batch = batch?;
        // Digest what is sent, not what was listed: the source may have changed in between.
        written.extend(
            batch_to_records(&batch)?
                .iter()
                .map(|r| (r.id.clone(), short_digest(r))),
        );
        batches.push(batch);
    }
    let request = LoadRequest {
        collection: info.clone(),
        mode: LoadMode::Upsert,
    };
    target
        .backend
        .load(
            &request,
            BatchStream::from_batches(canonical_schema(info.dimension), batches),
        )
        .in_store(target, &format!("load '{name}'"))?;
    Ok(written)
}

fn save(path: &std::path::Path, state: &SyncState) -> Result<()> {
    write_atomic(path, &serde_json::to_vec(state)?)
}
