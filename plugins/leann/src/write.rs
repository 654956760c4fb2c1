//! Loading records: staging each batch durably, then building the whole index (graph, passages,
//! offsets, ids, meta) once the stream ends, and committing it (see `layout`). Deleting records
//! rebuilds the index the same way, from the records that remain.
//!
//! Writes are keyed on the id: the final index holds, in order of first appearance, the latest
//! version of every id among the records already in the index, the batches an interrupted load
//! left staged, and this load's batches. Memory holds the vectors, the ids and where each latest
//! version is; documents and metadata are copied from the files when the passages are written.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use ragged_plugin_api::arrow::arrow_array::RecordBatchReader;
use ragged_plugin_api::arrow::{batch_to_records, check_schema};
use ragged_plugin_api::{
    BatchStream, CollectionInfo, DistanceMetric, ErrorCode, LoadMode, LoadRequest, LoadSummary, PluginError, Record,
    validate_metadata,
};

use crate::hnsw::{self, BuildParams, Space};
use crate::index_file::{self, FaissMetric, Graph, WriteParams};
use crate::layout::{self, Commit, IndexPaths};
use crate::meta::{self, WriteMeta};
use crate::passages::{self, LineReader};
use crate::read::{OpenIndex, normalize_rows};
use crate::staging::{BatchReader, Staging, StagingInfo};
use crate::{Settings, Shape};

/// Writes `batches` into the collection `request` names under `root`.
pub(crate) fn load(
    root: &Path,
    settings: &Settings,
    request: &LoadRequest,
    batches: BatchStream,
) -> Result<LoadSummary, PluginError> {
    let wanted = &request.collection;
    let paths = IndexPaths::cli(root, &wanted.name)?;
    if settings.shape == Shape::Compact {
        return Err(PluginError::new(
            ErrorCode::Unsupported,
            format!(
                "shape 'compact' for collection '{}' needs the embedding model to check and recompute the vectors, which this version of the leann plugin cannot run",
                wanted.name
            ),
        )
        .with_help("write the default shape, full (option shape=full)"));
    }
    if wanted.dimension == 0 {
        return Err(PluginError::invalid_input(format!(
            "collection '{}' must have a dimension of at least 1",
            wanted.name
        )));
    }
    // Checked before anything is created, and again under the lock.
    check_mode(root, request, IndexPaths::find(root, &wanted.name)?.as_ref())?;
    layout::create_dir_synced(&paths.dir)?;
    let _lock = layout::lock(&paths.dir)?;
    layout::recover(&paths)?;
    let found = IndexPaths::find(root, &wanted.name)?;
    check_mode(root, request, found.as_ref())?;
    let existing = match found {
        Some(found) => {
            let index = OpenIndex::open(found)?;
            let have = index.describe();
            if have.dimension != wanted.dimension || have.metric != wanted.metric {
                return Err(PluginError::invalid_input(format!(
                    "collection '{}' has dimension {} and metric {}, the load has dimension {} and metric {}",
                    wanted.name, have.dimension, have.metric, wanted.dimension, wanted.metric
                )));
            }
            if index.check_vectors().is_err() {
                return Err(PluginError::new(
                    ErrorCode::Unsupported,
                    format!(
                        "collection '{}' is a {} LEANN index without vectors; adding to it means recomputing them with its embedding model, which this version of the leann plugin cannot run",
                        wanted.name,
                        index.meta.shape()
                    ),
                ));
            }
            Some(index)
        }
        None => None,
    };
    let staging = Staging::open(
        paths.staging_dir(),
        StagingInfo {
            dimension: wanted.dimension,
            metric: wanted.metric,
        },
    )?;
    let mut session = Session {
        name: &wanted.name,
        dimension: wanted.dimension,
        staging: &staging,
        created: Vec::new(),
        received: 0,
        batches: 0,
    };
    let result = session
        .receive(batches)
        .and_then(|()| staging.batches())
        .and_then(|batch_files| {
            build(
                &paths,
                settings,
                wanted,
                existing.as_ref(),
                &HashSet::new(),
                &batch_files,
            )
        });
    let (received, created) = (session.received, session.created);
    match result {
        Ok(()) => {
            staging.remove()?;
            Ok(LoadSummary {
                records_written: received,
            })
        }
        Err(error) => {
            // A failed load leaves no trace of its own; batches of an interrupted load stay.
            for path in &created {
                let _ = fs::remove_file(path);
            }
            let _ = layout::recover(&paths);
            if staging.batches().is_ok_and(|b| b.is_empty()) {
                let _ = staging.remove();
            }
            if existing.is_none() && !paths.staging_dir().exists() {
                // Nothing else lives in a collection directory that never held an index.
                let _ = fs::remove_file(paths.dir.join(layout::LOCK_FILE));
                let _ = fs::remove_dir(&paths.dir);
            }
            Err(error)
        }
    }
}

/// Removes the records with `ids` from the collection `name` under `root` and returns how many
/// there were. The remaining records are rebuilt into a new index (graph included) and committed
/// like a load's, so a failed delete leaves the previous index as it was.
pub(crate) fn delete(root: &Path, settings: &Settings, name: &str, ids: &[String]) -> Result<u64, PluginError> {
    let not_found = || {
        PluginError::not_found(format!(
            "no collection '{name}' in the leann store at {}",
            root.display()
        ))
    };
    let found = IndexPaths::find(root, name)?.ok_or_else(not_found)?;
    check_layout(name, &found)?;
    let _lock = layout::lock(&found.dir)?;
    layout::recover(&found)?;
    // Found again under the lock: another writer may have dropped it meanwhile.
    let index = OpenIndex::open(IndexPaths::find(root, name)?.ok_or_else(not_found)?)?;
    if index.check_vectors().is_err() {
        return Err(PluginError::new(
            ErrorCode::Unsupported,
            format!(
                "collection '{name}' is a {} LEANN index without vectors; deleting from it means rebuilding its graph from vectors recomputed with its embedding model, which this version of the leann plugin cannot run",
                index.meta.shape()
            ),
        ));
    }
    // The next load would replay staged batches, bringing deleted records back.
    let staging = index.paths.staging_dir();
    if layout::exists(&staging)? && !Staging::batches_in(&staging)?.is_empty() {
        return Err(PluginError::invalid_input(format!(
            "collection '{name}' has batches of an interrupted load staged in {}, which the next load would add back",
            staging.display()
        ))
        .with_help("finish the interrupted load first (or remove that directory), then delete"));
    }
    let wanted: HashSet<&str> = ids.iter().map(String::as_str).collect();
    let removed: HashSet<u64> = (0..index.count())
        .filter(|node| wanted.contains(index.ids[*node as usize].as_str()))
        .collect();
    if removed.is_empty() {
        return Ok(0);
    }
    // A delete keeps the collection's own graph parameters (when within the options' ranges) and
    // model; store options shape new indexes only.
    let settings = Settings {
        model: Some(index.meta.embedding_model.clone()),
        m: index
            .meta
            .m
            .filter(|m| (2..=512).contains(m))
            .map_or(settings.m, |m| m as usize),
        ef_construction: index
            .meta
            .ef_construction
            .filter(|ef| (1..=100_000).contains(ef))
            .map_or(settings.ef_construction, |ef| ef as usize),
        ..settings.clone()
    };
    let result = build(&index.paths, &settings, &index.describe(), Some(&index), &removed, &[]);
    if result.is_err() {
        let _ = layout::recover(&index.paths);
    }
    result.map(|()| removed.len() as u64)
}

/// Refuses to write an index in the flat layout, which ragged does not write.
fn check_layout(name: &str, found: &IndexPaths) -> Result<(), PluginError> {
    if found.cli {
        return Ok(());
    }
    Err(PluginError::new(
        ErrorCode::Unsupported,
        format!(
            "collection '{name}' is a LEANN index at {}, outside .leann/indexes; the leann plugin writes only LEANN's CLI layout",
            found.meta().display()
        ),
    ))
}

/// Refuses the load when the collection's existence does not suit the mode, or when it is in the
/// flat layout.
fn check_mode(root: &Path, request: &LoadRequest, found: Option<&IndexPaths>) -> Result<(), PluginError> {
    let name = &request.collection.name;
    if let Some(found) = found {
        check_layout(name, found)?;
    }
    match (request.mode, found.is_some()) {
        (LoadMode::Create, true) => Err(PluginError::new(
            ErrorCode::AlreadyExists,
            format!("collection '{name}' already exists in {}", root.display()),
        )
        .with_help("load with mode append or upsert to add to it")),
        (LoadMode::Append, false) => Err(PluginError::not_found(format!(
            "no collection '{name}' in {} to append to",
            root.display()
        ))),
        _ => Ok(()),
    }
}

struct Session<'a> {
    name: &'a str,
    dimension: u32,
    staging: &'a Staging,
    created: Vec<PathBuf>,
    received: u64,
    batches: u64,
}

impl Session<'_> {
    fn receive(&mut self, batches: BatchStream) -> Result<(), PluginError> {
        let reader = batches
            .into_reader()
            .map_err(|e| PluginError::invalid_input(format!("cannot read the incoming batch stream: {e}")))?;
        let dimension = check_schema(&reader.schema())?;
        if dimension != self.dimension {
            return Err(PluginError::invalid_input(format!(
                "the incoming records have {dimension} dimensions, collection '{}' has {}",
                self.name, self.dimension
            )));
        }
        for batch in reader {
            let batch =
                batch.map_err(|e| PluginError::invalid_input(format!("the incoming batch stream failed: {e}")))?;
            self.batches += 1;
            let records = batch_to_records(&batch)
                .map_err(|e| PluginError::invalid_input(format!("batch {}: {}", self.batches, e.message)))?;
            for record in &records {
                check_record(record)?;
            }
            if !records.is_empty() {
                let path = self.staging.append(&records, self.dimension)?;
                self.created.push(path);
            }
            self.received += records.len() as u64;
        }
        Ok(())
    }
}

/// Refuses what a LEANN index cannot hold.
fn check_record(record: &Record) -> Result<(), PluginError> {
    if let Some(problem) = passages::id_problem(&record.id) {
        return Err(PluginError::invalid_input(format!(
            "record id {:?} {problem}",
            record.id
        )));
    }
    if let Some(metadata) = &record.metadata {
        validate_metadata(metadata)
            .map_err(|problem| PluginError::invalid_input(format!("record '{}': {problem}", record.id)))?;
    }
    if record.embedding.iter().any(|x| !x.is_finite()) {
        return Err(PluginError::invalid_input(format!(
            "record '{}' has a NaN or infinite value in its embedding",
            record.id
        )));
    }
    Ok(())
}

/// Where the latest version of a record is.
#[derive(Debug, Clone, Copy)]
enum Source {
    /// Node of the existing index.
    Existing(u64),
    /// Staged batch file and byte offset.
    Staged(usize, u64),
}

/// Builds the new index from the existing one without its `removed` nodes and the staged
/// `batch_files`, and commits it.
fn build(
    paths: &IndexPaths,
    settings: &Settings,
    wanted: &CollectionInfo,
    existing: Option<&OpenIndex>,
    removed: &HashSet<u64>,
    batch_files: &[PathBuf],
) -> Result<(), PluginError> {
    let dimension = wanted.dimension as usize;
    let mut slots: HashMap<String, usize> = HashMap::new();
    let mut ids: Vec<String> = Vec::new();
    let mut sources: Vec<Source> = Vec::new();
    let mut vectors: Vec<f32> = Vec::new();
    let existing_count = existing.map_or(0, |index| index.count() as usize - removed.len());
    // Whether an existing node got another vector: its place in the graph would be wrong.
    let mut moved = false;
    let mut upsert = |id: &str, source: Source, embedding: &[f32]| match slots.get(id) {
        Some(&slot) => {
            sources[slot] = source;
            let row = &mut vectors[slot * dimension..(slot + 1) * dimension];
            if slot < existing_count && row.iter().zip(embedding).any(|(a, b)| a.to_bits() != b.to_bits()) {
                moved = true;
            }
            row.copy_from_slice(embedding);
        }
        None => {
            slots.insert(id.to_owned(), ids.len());
            ids.push(id.to_owned());
            sources.push(source);
            vectors.extend_from_slice(embedding);
        }
    };
    if let Some(index) = existing {
        // Existing records in chunks, so the file is read once, in order.
        let count = index.count();
        let chunk = 4096u64;
        let mut first = 0;
        while first < count {
            let amount = chunk.min(count - first);
            let rows = index.vectors_for_rebuild(first, amount)?;
            for (row, node) in (first..first + amount).enumerate() {
                if removed.contains(&node) {
                    continue;
                }
                upsert(
                    &index.ids[node as usize],
                    Source::Existing(node),
                    &rows[row * dimension..(row + 1) * dimension],
                );
            }
            first += amount;
        }
    }
    for (file_index, path) in batch_files.iter().enumerate() {
        let mut reader = BatchReader::open(path, wanted.dimension)?;
        while let Some(staged) = reader.next_record()? {
            upsert(
                &staged.record.id,
                Source::Staged(file_index, staged.offset),
                &staged.record.embedding,
            );
        }
    }
    let n = ids.len();

    let build_dir = paths.build_dir();
    layout::create_dir_synced(&build_dir)?;
    let mut install = Vec::new();

    // Passages and offsets, in node order.
    let passages_name = paths.passages_name();
    let passages_path = build_dir.join(&passages_name);
    let mut offsets: Vec<(String, u64)> = Vec::with_capacity(n);
    {
        let file = fs::File::create(&passages_path).map_err(|e| PluginError::io(&passages_path, &e))?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        let io = |e: std::io::Error| PluginError::io(&passages_path, &e);
        let mut position = 0u64;
        let mut line_readers: Vec<LineReader> = match existing {
            Some(index) => index.passage_readers()?,
            None => Vec::new(),
        };
        let mut batch_readers: Vec<Option<BatchReader>> = batch_files.iter().map(|_| None).collect();
        for (slot, source) in sources.iter().enumerate() {
            let line = match *source {
                Source::Existing(node) => {
                    let index = existing.ok_or_else(|| PluginError::new(ErrorCode::Internal, "no existing index"))?;
                    let (reader, offset) = index.passage_location(node);
                    let mut raw = line_readers[reader].raw_at(offset)?.as_bytes().to_vec();
                    raw.push(b'\n');
                    raw
                }
                Source::Staged(file_index, offset) => {
                    let reader = match &mut batch_readers[file_index] {
                        Some(reader) => reader,
                        slot @ None => slot.insert(BatchReader::open(&batch_files[file_index], wanted.dimension)?),
                    };
                    let record = reader.record_at(offset)?;
                    passages::encode_line(&record.id, record.document.as_deref(), record.metadata.as_deref())?
                }
            };
            offsets.push((ids[slot].clone(), position));
            out.write_all(&line).map_err(io)?;
            position += line.len() as u64;
        }
        let file = out
            .into_inner()
            .map_err(|e| PluginError::io(&passages_path, e.error()))?;
        file.sync_all().map_err(io)?;
    }
    install.push(passages_name);
    let offsets_name = paths.offsets_name();
    layout::write_synced(&build_dir.join(&offsets_name), &passages::encode_offsets(&offsets))?;
    install.push(offsets_name);
    let ids_name = paths.ids_name();
    let mut ids_text = String::with_capacity(ids.iter().map(|id| id.len() + 1).sum());
    for id in &ids {
        ids_text.push_str(id);
        ids_text.push('\n');
    }
    layout::write_synced(&build_dir.join(&ids_name), ids_text.as_bytes())?;
    install.push(ids_name);

    // Cosine: LEANN searches normalised vectors by inner product. The exact originals go beside
    // the index when normalising changed any of them.
    let mut originals = None;
    if wanted.metric == DistanceMetric::Cosine {
        let before = vectors.clone();
        normalize_rows(&mut vectors, dimension);
        if before.iter().zip(&vectors).any(|(a, b)| a.to_bits() != b.to_bits()) {
            let name = paths.originals_name();
            let mut bytes = Vec::with_capacity(before.len() * 4);
            for value in &before {
                bytes.extend_from_slice(&value.to_le_bytes());
            }
            layout::write_synced(&build_dir.join(&name), &bytes)?;
            install.push(name.clone());
            originals = Some(name);
        }
    }

    let (space, faiss_metric) = match wanted.metric {
        DistanceMetric::L2 => (Space::L2, FaissMetric::L2),
        DistanceMetric::Ip | DistanceMetric::Cosine => (Space::InnerProduct, FaissMetric::InnerProduct),
    };
    let params = BuildParams {
        m: settings.m,
        ef_construction: settings.ef_construction,
        seed: settings.seed,
    };
    // An append whose existing nodes keep their vectors grows the existing graph (built with the
    // same M) instead of rebuilding it: a migration loads in many checkpointed chunks. Removed
    // nodes would leave holes in it, so a delete rebuilds.
    let reusable =
        existing.filter(|index| !moved && removed.is_empty() && index.meta.m.unwrap_or(32) == settings.m as u64);
    let built = match reusable {
        Some(index) => {
            let parsed = index_file::read(&index.index_path, true)?;
            let graph = parsed
                .graph
                .ok_or_else(|| PluginError::new(ErrorCode::Internal, "the graph was asked for but not read"))?;
            let start = hnsw::Built {
                links: graph.to_links(),
                entry_point: graph.entry_point,
                max_level: graph.max_level,
            };
            hnsw::extend(&vectors, dimension, space, params, start)
        }
        None => hnsw::build(&vectors, dimension, space, params),
    };
    let graph = Graph::from_links(&built.links, built.entry_point, built.max_level);
    let index_name = paths.index_name();
    index_file::write_non_compact(
        &build_dir.join(&index_name),
        &graph,
        &WriteParams {
            dimension: wanted.dimension,
            metric: faiss_metric,
            m: settings.m,
            ef_construction: settings.ef_construction as i32,
            ef_search: 16,
            vectors: Some(&vectors),
        },
    )?;
    install.push(index_name);

    let model = settings
        .model
        .clone()
        .or_else(|| wanted.embedding_model.clone())
        .unwrap_or_else(|| meta::DEFAULT_MODEL.to_owned());
    let meta_name = paths.meta_name();
    let meta_bytes = meta::full_meta(&WriteMeta {
        base: &paths.base,
        collection: wanted,
        model: &model,
        m: settings.m,
        ef_construction: settings.ef_construction,
        count: n as u64,
        originals: originals.as_deref(),
    });
    layout::write_synced(&build_dir.join(&meta_name), &meta_bytes)?;
    install.push(meta_name);

    // A BM25 database built from the old passages would answer keyword searches wrongly; LEANN
    // rebuilds it on demand when it is missing.
    let mut remove = vec![paths.bm25_name()];
    if originals.is_none() {
        remove.push(paths.originals_name());
    }
    layout::commit(paths, &Commit { install, remove })
}
