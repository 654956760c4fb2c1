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
use std::sync::Arc;

use ragged_plugin_api::arrow::arrow_array::RecordBatchReader;
use ragged_plugin_api::arrow::{batch_to_records, check_schema};
use ragged_plugin_api::sampling::choose_positions;
use ragged_plugin_api::{
    BatchStream, CollectionInfo, DistanceMetric, ErrorCode, LoadMode, LoadRequest, LoadSummary, PluginError, Record,
    validate_metadata,
};

use crate::hnsw::{self, BuildParams, Space};
use crate::index_file::{self, Body, FaissMetric, Graph, WriteParams};
use crate::layout::{self, Commit, IndexPaths};
use crate::meta::{self, ModelSpec, WriteMeta};
use crate::passages::{self, LineReader};
use crate::read::{OpenIndex, normalize_rows};
use crate::recompute::Embedders;
use crate::staging::{BatchReader, Staging, StagingInfo};
use crate::{Settings, Shape};

/// Records sampled to check that the vectors written to a compact index are its model's.
const COMPACT_CHECK_SAMPLE: u64 = 64;
/// Below this cosine similarity with the model's vector, a record's vector is not the model's.
const COMPACT_MIN_COSINE: f64 = 0.99;

/// What a rebuild writes: the shape, the model the meta names, the graph parameters.
struct Target {
    shape: Shape,
    model: ModelSpec,
    /// The model the vectors came from, as far as anyone says: the model itself when the shape
    /// keeps no vectors (they are its output), else the store's `model` option, else what the
    /// collection records. `describe` reports it, and `ragged query TEXT` embeds with it.
    vectors_model: Option<String>,
    m: usize,
    ef_construction: usize,
    seed: u64,
}

impl Target {
    /// What a load writes: the store's options, else what the existing index has, else a full
    /// index naming the collection's model, else LEANN's default model.
    fn for_load(settings: &Settings, wanted: &CollectionInfo, existing: Option<&OpenIndex>) -> Target {
        let shape = settings
            .shape
            .or(existing.map(|index| index.meta.shape()))
            .unwrap_or(Shape::Full);
        let model = settings
            .model
            .clone()
            .or_else(|| existing.map(|index| index.meta.embedding_model.clone()))
            .or_else(|| wanted.embedding_model.clone())
            .unwrap_or_else(|| meta::DEFAULT_MODEL.to_owned());
        // The existing index's mode and provider options go with its model.
        let model = match existing {
            Some(index) if index.meta.embedding_model == model => index.meta.model_spec(),
            _ => ModelSpec::sentence_transformers(&model),
        };
        let vectors_model = match shape {
            Shape::Full => settings.model.clone().or_else(|| wanted.embedding_model.clone()),
            Shape::Compact | Shape::Pruned => Some(model.model.clone()),
        };
        Target {
            shape,
            model,
            vectors_model,
            m: settings.m,
            ef_construction: settings.ef_construction,
            seed: settings.seed,
        }
    }

    /// What a delete writes: the index as it is, with its own shape, model and graph parameters
    /// (when within the options' ranges); store options shape what loads write only.
    fn for_delete(settings: &Settings, index: &OpenIndex) -> Target {
        Target {
            shape: index.meta.shape(),
            model: index.meta.model_spec(),
            vectors_model: index.describe().embedding_model,
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
            seed: settings.seed,
        }
    }
}

/// Writes `batches` into the collection `request` names under `root`.
pub(crate) fn load(
    root: &Path,
    settings: &Settings,
    embedders: &Arc<Embedders>,
    request: &LoadRequest,
    batches: BatchStream,
) -> Result<LoadSummary, PluginError> {
    let wanted = &request.collection;
    let paths = IndexPaths::cli(root, &wanted.name)?;
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
            let index = OpenIndex::open(found, embedders.clone())?;
            let have = index.describe();
            if have.dimension != wanted.dimension || have.metric != wanted.metric {
                return Err(PluginError::invalid_input(format!(
                    "collection '{}' has dimension {} and metric {}, the load has dimension {} and metric {}",
                    wanted.name, have.dimension, have.metric, wanted.dimension, wanted.metric
                )));
            }
            Some(index)
        }
        None => None,
    };
    let target = Target::for_load(settings, wanted, existing.as_ref());
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
        compact: target.shape == Shape::Compact,
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
                &target,
                wanted,
                existing.as_ref(),
                &HashSet::new(),
                &batch_files,
                embedders,
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
/// there were. The remaining records are rebuilt into a new index of the same shape (graph
/// included; vectors an index keeps none of are recomputed) and committed like a load's, so a
/// failed delete leaves the previous index as it was.
pub(crate) fn delete(
    root: &Path,
    settings: &Settings,
    embedders: &Arc<Embedders>,
    name: &str,
    ids: &[String],
) -> Result<u64, PluginError> {
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
    let index = OpenIndex::open(IndexPaths::find(root, name)?.ok_or_else(not_found)?, embedders.clone())?;
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
    let target = Target::for_delete(settings, &index);
    let result = build(
        &index.paths,
        &target,
        &index.describe(),
        Some(&index),
        &removed,
        &[],
        embedders,
    );
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
    /// Whether the load writes a compact index, which needs every record's document.
    compact: bool,
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
                if self.compact {
                    check_document_for_compact(self.name, &record.id, record.document.as_deref())?;
                }
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

/// Refuses a record without text for a compact index: LEANN recomputes its vector from the text.
fn check_document_for_compact(collection: &str, id: &str, document: Option<&str>) -> Result<(), PluginError> {
    if document.is_some_and(|text| !text.is_empty()) {
        return Ok(());
    }
    Err(PluginError::invalid_input(format!(
        "record '{id}' has no document (or an empty one), so it cannot go to the compact LEANN index '{collection}': a compact index keeps no vectors, and LEANN recomputes them from the documents"
    ))
    .with_help("load with shape=full to keep the vectors, or give every record a document"))
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
    target: &Target,
    wanted: &CollectionInfo,
    existing: Option<&OpenIndex>,
    removed: &HashSet<u64>,
    batch_files: &[PathBuf],
    embedders: &Embedders,
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
        // Existing records in chunks, so the file is read once, in order (an index without
        // vectors has them recomputed from its passages, a chunk at a time).
        let mut readers = index.passage_readers()?;
        let count = index.count();
        let chunk = 4096u64;
        let mut first = 0;
        while first < count {
            let amount = chunk.min(count - first);
            let rows = index.vectors_for_rebuild(first, amount, &mut readers)?;
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
    let compact = target.shape == Shape::Compact;
    // A compact index keeps no vectors, so those written must be what its model computes for
    // the documents: a sample of them is embedded and compared. Vectors that model recomputed
    // from an existing index need no check.
    let recomputed_here =
        existing.is_some_and(|index| !index.stores_vectors() && index.meta.model_spec() == target.model);
    let checked: Vec<usize> = if compact {
        let unchecked: Vec<usize> = (0..n)
            .filter(|slot| !(recomputed_here && matches!(sources[*slot], Source::Existing(_))))
            .collect();
        choose_positions(unchecked.len() as u64, COMPACT_CHECK_SAMPLE, target.seed)
            .into_iter()
            .map(|position| unchecked[position as usize])
            .collect()
    } else {
        Vec::new()
    };
    let mut checked_texts: Vec<String> = Vec::with_capacity(checked.len());

    let build_dir = paths.build_dir();
    layout::create_dir_synced(&build_dir)?;
    let mut install = Vec::new();

    // Passages and offsets, in node order; a compact index's documents are checked on the way
    // and the sampled ones kept.
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
        let mut next_checked = checked.iter().peekable();
        for (slot, source) in sources.iter().enumerate() {
            let (line, document) = match *source {
                Source::Existing(node) => {
                    let index = existing.ok_or_else(|| PluginError::new(ErrorCode::Internal, "no existing index"))?;
                    let (reader, offset) = index.passage_location(node);
                    let raw = line_readers[reader].raw_at(offset)?;
                    let document = if compact {
                        passages::decode_line(raw, index.passage_file(reader))?.document
                    } else {
                        None
                    };
                    let mut line = raw.as_bytes().to_vec();
                    line.push(b'\n');
                    (line, document)
                }
                Source::Staged(file_index, offset) => {
                    let reader = match &mut batch_readers[file_index] {
                        Some(reader) => reader,
                        slot @ None => slot.insert(BatchReader::open(&batch_files[file_index], wanted.dimension)?),
                    };
                    let record = reader.record_at(offset)?;
                    let line =
                        passages::encode_line(&record.id, record.document.as_deref(), record.metadata.as_deref())?;
                    (line, record.document)
                }
            };
            if compact {
                check_document_for_compact(&wanted.name, &ids[slot], document.as_deref())?;
                if next_checked.next_if(|checked| **checked == slot).is_some() {
                    checked_texts.push(document.unwrap_or_default());
                }
            }
            offsets.push((ids[slot].clone(), position));
            out.write_all(&line).map_err(io)?;
            position += line.len() as u64;
        }
        let file = out
            .into_inner()
            .map_err(|e| PluginError::io(&passages_path, e.error()))?;
        file.sync_all().map_err(io)?;
    }
    if compact {
        check_vectors_for_compact(
            wanted,
            &target.model,
            embedders,
            &checked,
            &checked_texts,
            &ids,
            &vectors,
        )?;
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

    // Cosine: LEANN searches normalised vectors by inner product. The exact originals of a full
    // index go beside it when normalising changed any of them.
    let mut originals = None;
    if wanted.metric == DistanceMetric::Cosine {
        let before = vectors.clone();
        normalize_rows(&mut vectors, dimension);
        if target.shape == Shape::Full && before.iter().zip(&vectors).any(|(a, b)| a.to_bits() != b.to_bits()) {
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
        m: target.m,
        ef_construction: target.ef_construction,
        seed: target.seed,
    };
    // An append whose existing nodes keep their vectors grows the existing graph (built with the
    // same M) instead of rebuilding it: a migration loads in many checkpointed chunks. Removed
    // nodes would leave holes in it, so a delete rebuilds.
    let reusable =
        existing.filter(|index| !moved && removed.is_empty() && index.meta.m.unwrap_or(32) == target.m as u64);
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
    index_file::write(
        &build_dir.join(&index_name),
        &graph,
        &WriteParams {
            dimension: wanted.dimension,
            metric: faiss_metric,
            m: target.m,
            ef_construction: target.ef_construction as i32,
            ef_search: 16,
            body: match target.shape {
                Shape::Full => Body::Full(&vectors),
                Shape::Compact => Body::Compact,
                Shape::Pruned => Body::Pruned,
            },
        },
    )?;
    install.push(index_name);

    let meta_name = paths.meta_name();
    let described = CollectionInfo {
        embedding_model: target.vectors_model.clone(),
        ..wanted.clone()
    };
    let meta_bytes = meta::index_meta(&WriteMeta {
        base: &paths.base,
        collection: &described,
        shape: target.shape,
        model: &target.model,
        m: target.m,
        ef_construction: target.ef_construction,
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

/// Refuses to write a compact index whose vectors are not what its model computes for the
/// documents: the sampled records `checked` (slots, with their documents `texts`) are embedded
/// and compared with the vectors given.
fn check_vectors_for_compact(
    wanted: &CollectionInfo,
    model: &ModelSpec,
    embedders: &Embedders,
    checked: &[usize],
    texts: &[String],
    ids: &[String],
    vectors: &[f32],
) -> Result<(), PluginError> {
    let dimension = wanted.dimension as usize;
    let purpose = format!(
        "writing collection '{}' as a compact LEANN index (checking that its vectors are the model's)",
        wanted.name
    );
    let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
    let computed = embedders.passage_vectors(model, &purpose, &texts, wanted.dimension, wanted.metric)?;
    let worst = checked
        .iter()
        .zip(computed.chunks_exact(dimension))
        .map(|(slot, row)| {
            (
                *slot,
                ragged_embed::cosine_similarity(&vectors[slot * dimension..(slot + 1) * dimension], row),
            )
        })
        .min_by(|a, b| a.1.total_cmp(&b.1));
    match worst {
        Some((slot, similarity)) if similarity < COMPACT_MIN_COSINE => Err(PluginError::invalid_input(format!(
            "collection '{}' cannot be written compact: its vectors are not what the embedding model '{}' computes for the documents (record '{}': cosine similarity {similarity:.4} with the model's vector, below {COMPACT_MIN_COSINE}; {} records checked). A compact index keeps no vectors: LEANN recomputes them from the documents with that model",
            wanted.name,
            model.model,
            ids[slot],
            checked.len()
        ))
        .with_help("load with shape=full to keep the vectors as they are, or name the model the vectors came from with the store option model")),
        _ => Ok(()),
    }
}
