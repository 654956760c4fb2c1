//! Reading a collection exactly as chroma's `collection.get()` returns it.
//!
//! A collection's records live in three places: the metadata segment (sqlite tables, ids and
//! metadata already applied), the HNSW files (vectors persisted so far) and the write-ahead log
//! (`embeddings_queue`: operations not yet applied to one or both). Reading builds a *plan* first:
//! for every surviving record, in chroma's order, where its base metadata row is, which log rows
//! change its metadata, and where its vector is. The plan holds ids and row numbers only; batches
//! then fetch documents, metadata and vectors for a slice of the plan, so memory stays bounded by
//! the batch size plus a few words per record.

use std::collections::HashMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, sync_channel};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;

use ragged_plugin_api::arrow::arrow_array::builder::StringBuilder;
use ragged_plugin_api::arrow::arrow_array::{ArrayRef, FixedSizeListArray, Float32Array, RecordBatch, StringArray};
use ragged_plugin_api::arrow::arrow_schema::{ArrowError, DataType, SchemaRef};
use ragged_plugin_api::arrow::{canonical_schema, ids_schema};
use ragged_plugin_api::{DistanceMetric, ErrorCode, PluginError};
use rusqlite::{Connection, OptionalExtension};

use crate::hnsw::Level0;
use crate::ids::Ids;
use crate::layout::Collection;
use crate::rows::{BatchRows, RecordRows, RowValue};
use crate::sqlite::{classify, seq_id, table_exists, typed};
use crate::value::{DOCUMENT_KEY, MetaValue, metadata_to_json};
use crate::wal::{Operation, apply_update, cosine_round_trip, decode_vector, parse_metadata, topic};
use crate::{pickle, sqlite};

/// Where a record's vector comes from.
#[derive(Debug, Clone, Copy, PartialEq)]
enum VectorSource {
    /// An element of `data_level0.bin` (internal id).
    Hnsw(u32),
    /// The `vector` of a log row (seq id, 1 or more).
    Log(i64),
}

/// A packed [`VectorSource`] that is not there.
const NO_VECTOR: i64 = i64::MIN;

/// A row number that is not there: the id has no record.
const NO_RECORD: i64 = i64::MIN;

impl VectorSource {
    /// One word: an internal id as itself, a seq id negated.
    fn pack(self) -> i64 {
        match self {
            VectorSource::Hnsw(internal) => i64::from(internal),
            VectorSource::Log(seq) => -seq,
        }
    }

    fn unpack(word: i64) -> Option<VectorSource> {
        match word {
            NO_VECTOR => None,
            0.. => Some(VectorSource::Hnsw(word as u32)),
            _ => Some(VectorSource::Log(-word)),
        }
    }
}

/// The plan's records by position in about four bytes each (4 MB at a million records): chroma's
/// row numbers as runs of consecutive rows (a collection nobody deleted from is one run), and
/// the element of `data_level0.bin` that holds each vector, the vectors still only in the log
/// aside.
#[derive(Default)]
struct Records {
    /// (first position, its row number) of each run of consecutive row numbers. A row number is
    /// chroma's `embeddings.id`: the sort key, and for a record of the metadata segment the row of
    /// its id and base metadata.
    runs: Vec<(usize, i64)>,
    /// The element holding each record's vector, or [`IN_LOG`].
    elements: Vec<u32>,
    /// The log row (seq id) holding the vector of each record marked [`IN_LOG`], by position.
    log_vectors: FastMap<usize, i64>,
}

/// Not an element: the record's vector is in the log.
const IN_LOG: u32 = u32::MAX;

impl Records {
    /// Adds the next record; row numbers must ascend.
    fn push(&mut self, offset_id: i64, vector: VectorSource) {
        let position = self.elements.len();
        let continues = (self.runs.last()).is_some_and(|&(first, row)| row + (position - first) as i64 == offset_id);
        if !continues {
            self.runs.push((position, offset_id));
        }
        match vector {
            VectorSource::Hnsw(element) => self.elements.push(element),
            VectorSource::Log(seq) => {
                self.elements.push(IN_LOG);
                self.log_vectors.insert(position, seq);
            }
        }
    }

    fn len(&self) -> usize {
        self.elements.len()
    }

    /// The row number of the record at `position` (which must be below `len`).
    fn offset_id(&self, position: usize) -> i64 {
        let run = self.runs.partition_point(|&(first, _)| first <= position) - 1;
        let (first, row) = self.runs[run];
        row + (position - first) as i64
    }

    /// Where the vector of the record at `position` is.
    fn vector(&self, position: usize) -> Option<VectorSource> {
        match self.elements.get(position).copied()? {
            IN_LOG => self.log_vectors.get(&position).map(|&seq| VectorSource::Log(seq)),
            element => Some(VectorSource::Hnsw(element)),
        }
    }

    /// The position of the record with row number `offset_id`, if it is among the first `within`.
    fn position_of_row(&self, offset_id: i64, within: usize) -> Option<usize> {
        let run = self.runs.partition_point(|&(_, row)| row <= offset_id).checked_sub(1)?;
        let (first, row) = self.runs[run];
        let end = self.runs.get(run + 1).map_or(self.len(), |&(next, _)| next);
        let position = first + usize::try_from(offset_id - row).ok()?;
        (position < end.min(within)).then_some(position)
    }
}

/// The records of one collection in chroma's order, ready to be read in slices.
///
/// The ids of the metadata segment's records stay in SQLite and are read with each batch;
/// only the ids of records the log adds are held here.
pub struct Plan {
    pub collection: Collection,
    records: Records,
    /// The ids of the records the log adds, which are the last records of the plan.
    log_ids: Vec<String>,
    /// Log rows whose metadata is merged into a record's, by plan position, in order.
    metadata_ops: FastMap<usize, Vec<i64>>,
    level0: Option<Level0>,
    db: PathBuf,
    has_array_table: bool,
    /// Log rows read while planning (for diagnostics and the storage report).
    pub log_rows: u64,
    /// Plan positions of the log's records sorted by id, built by the first fetch (a plan is
    /// shared by the calls of one store, so a verification's fetches share it).
    log_by_id: OnceLock<Vec<usize>>,
}

fn corrupt_at(db: &Path, what: impl std::fmt::Display) -> PluginError {
    PluginError::corrupt(format!("{}: {what}", db.display()))
}

/// A batch arrow refused to build: a bug here, not a problem of the store.
fn internal(what: String) -> PluginError {
    PluginError::new(ErrorCode::Internal, what)
}

/// One parsed log row.
struct LogRow {
    seq: i64,
    operation: Operation,
    id: String,
    has_vector: bool,
    has_metadata: bool,
}

/// What the build knows of every id it met, by id number: chroma's two views of a collection
/// (the metadata segment's records and the vector segment's vectors) while the log is applied
/// to both.
#[derive(Default)]
struct Views {
    ids: Ids,
    /// The record's row number, or [`NO_RECORD`].
    offsets: Vec<i64>,
    /// The packed vector source, or [`NO_VECTOR`].
    vectors: Vec<i64>,
    metadata_ops: FastMap<usize, Vec<i64>>,
}

impl Views {
    /// The number of `id`, which gets neither record nor vector if it is new.
    fn number(&mut self, id: &str) -> usize {
        let number = self.ids.insert(id) as usize;
        self.cover_new_ids();
        number
    }

    /// Gives ids inserted into `ids` directly (the pickle's) an empty slot.
    fn cover_new_ids(&mut self) {
        self.offsets.resize(self.ids.len(), NO_RECORD);
        self.vectors.resize(self.ids.len(), NO_VECTOR);
    }

    fn has_record(&self, id: &str) -> bool {
        self.ids.find(id).is_some_and(|n| self.offsets[n as usize] != NO_RECORD)
    }

    fn has_vector(&self, id: &str) -> bool {
        self.ids.find(id).is_some_and(|n| self.vectors[n as usize] != NO_VECTOR)
    }
}

impl Plan {
    /// Builds the plan: validates every log row chroma would read, so a row that would make
    /// chroma fail is refused here too.
    pub fn build(conn: &Connection, root: &Path, collection: &Collection) -> Result<Plan, PluginError> {
        let db = sqlite::db_path(root);
        let err = |e| classify(&db, e);
        let max_seq = |segment: &str| -> Result<i64, PluginError> {
            conn.query_row("SELECT seq_id FROM max_seq_id WHERE segment_id=?1", [segment], |r| {
                Ok(seq_id(r.get_ref(0)?))
            })
            .optional()
            .map_err(err)?
            .transpose()
            .map_err(|e| corrupt_at(&db, format!("max_seq_id of segment {segment}: {e}")))
            .map(|v| v.unwrap_or(0))
        };
        let metadata_max = max_seq(&collection.metadata_segment)?;
        let mut vector_max = max_seq(&collection.vector_segment)?;
        let has_array_table = table_exists(conn, &db, "embedding_metadata_array")?;
        // Records the log adds are numbered after every row of `embeddings`.
        let first_log_offset: i64 = conn
            .query_row("SELECT coalesce(max(id), 0) + 1 FROM embeddings", [], |r| r.get(0))
            .map_err(err)?;

        // Persisted vectors: the pickle maps ids to labels, data_level0 maps labels to elements.
        // Finding the labels reads all of data_level0.bin: a thread does that beside the sqlite
        // reads.
        let cosine = collection.space == DistanceMetric::Cosine;
        let segment_dir = collection.segment_dir(root);
        let pickle_path = segment_dir.join(pickle::FILE);
        let persisted = collection
            .dimension
            .filter(|_| collection.vector_persisted && pickle_path.is_file());
        let (level0, mut views) = std::thread::scope(|scope| {
            let dir = &segment_dir;
            let scan = persisted.map(|dimension| scope.spawn(move || scan_labels(dir, dimension as usize, cosine)));
            let mut views = Views::default();
            segment_rows(conn, &db, collection, &mut views)?;
            let id_to_label = match persisted {
                Some(_) => pickle::read_id_to_label(&pickle_path, &mut views.ids)?,
                None => Vec::new(),
            };
            views.cover_new_ids();
            let (Some(scan), false) = (scan, id_to_label.is_empty()) else {
                return Ok((None, views));
            };
            let (files, labels) = scan
                .join()
                .map_err(|_| internal(format!("{}: the label scan panicked", segment_dir.display())))??;
            for (number, label) in id_to_label {
                let Some(internal) = labels.internal(label) else {
                    return Err(corrupt_at(
                        &segment_dir.join("data_level0.bin"),
                        format!(
                            "label {label} of id '{}' (from {}) is not a live element",
                            views.ids.get(number),
                            pickle::FILE
                        ),
                    ));
                };
                views.vectors[number as usize] = VectorSource::Hnsw(internal).pack();
            }
            Ok((Some(files), views))
        })?;
        if level0.is_none() {
            // Chroma treats a segment without a persisted id map as uninitialised and replays the
            // whole log into it.
            vector_max = 0;
        }

        // The log tail; chroma replays nothing while the collection has no dimension.
        let mut log_rows = 0u64;
        if let Some(dimension) = collection.dimension {
            let mut next_offset = first_log_offset;
            let start = metadata_max.min(vector_max);
            let mut statement = conn
                .prepare(
                    "SELECT seq_id, operation, id, vector, encoding, metadata FROM embeddings_queue \
                     WHERE topic=?1 AND seq_id>?2 \
                     AND CAST(strftime('%s', created_at) AS INTEGER) <= 9223372036 ORDER BY seq_id",
                )
                .map_err(err)?;
            let mut rows = statement
                .query(rusqlite::params![topic(&collection.id), start])
                .map_err(err)?;
            while let Some(row) = rows.next().map_err(err)? {
                let parsed = check_log_row(row, dimension as usize).map_err(|problem| {
                    corrupt_at(
                        &db,
                        format!("embeddings_queue of collection '{}': {problem}", collection.name),
                    )
                })?;
                log_rows += 1;
                let LogRow {
                    seq,
                    operation,
                    id,
                    has_vector,
                    has_metadata,
                } = parsed;
                if seq > metadata_max {
                    match operation {
                        Operation::Add | Operation::Upsert if !views.has_record(&id) => {
                            let n = views.number(&id);
                            views.offsets[n] = next_offset;
                            next_offset += 1;
                            // A new record: what the log said of an earlier one by this id is gone.
                            if has_metadata {
                                views.metadata_ops.insert(n, vec![seq]);
                            } else {
                                views.metadata_ops.remove(&n);
                            }
                        }
                        Operation::Add | Operation::BackfillFn => {}
                        Operation::Update | Operation::Upsert => {
                            if has_metadata && views.has_record(&id) {
                                let n = views.number(&id);
                                views.metadata_ops.entry(n).or_default().push(seq);
                            }
                        }
                        Operation::Delete => {
                            if let Some(n) = views.ids.find(&id) {
                                views.offsets[n as usize] = NO_RECORD;
                                views.metadata_ops.remove(&(n as usize));
                            }
                        }
                    }
                }
                if seq > vector_max {
                    let missing = || {
                        corrupt_at(
                            &db,
                            format!(
                                "embeddings_queue seq {seq}: {operation:?} of '{id}' without a vector \
                                 (chroma cannot read this collection either)"
                            ),
                        )
                    };
                    let from_log = VectorSource::Log(seq).pack();
                    match operation {
                        Operation::Add if !views.has_vector(&id) => {
                            if !has_vector {
                                return Err(missing());
                            }
                            let n = views.number(&id);
                            views.vectors[n] = from_log;
                        }
                        Operation::Update if has_vector && views.has_vector(&id) => {
                            let n = views.number(&id);
                            views.vectors[n] = from_log;
                        }
                        Operation::Upsert => {
                            if !has_vector {
                                return Err(missing());
                            }
                            let n = views.number(&id);
                            views.vectors[n] = from_log;
                        }
                        Operation::Delete => {
                            if let Some(n) = views.ids.find(&id) {
                                views.vectors[n as usize] = NO_VECTOR;
                            }
                        }
                        _ => {}
                    }
                }
            }
        }

        // chroma's order: by row number.
        let mut order: Vec<(i64, u32)> = (views.offsets.iter().enumerate())
            .filter(|(_, offset)| **offset != NO_RECORD)
            .map(|(n, offset)| (*offset, n as u32))
            .collect();
        order.sort_unstable();
        if collection.dimension.is_none() && !order.is_empty() {
            return Err(corrupt_at(
                &db,
                format!("collection '{}' has records but no dimension", collection.name),
            ));
        }
        let mut records = Records::default();
        let mut log_ids = Vec::new();
        let mut metadata_ops = FastMap::default();
        for (offset_id, n) in order {
            let id = views.ids.get(n);
            let Some(vector) = VectorSource::unpack(views.vectors[n as usize]) else {
                return Err(corrupt_at(
                    &db,
                    format!(
                        "collection '{}': record '{id}' has no vector in {} or the log",
                        collection.name,
                        segment_dir.display()
                    ),
                ));
            };
            if let Some(ops) = views.metadata_ops.remove(&(n as usize)) {
                metadata_ops.insert(records.len(), ops);
            }
            if offset_id >= first_log_offset {
                log_ids.push(id.to_owned());
            }
            records.push(offset_id, vector);
        }
        Ok(Plan {
            collection: collection.clone(),
            records,
            log_ids,
            metadata_ops,
            level0,
            db,
            has_array_table,
            log_rows,
            log_by_id: OnceLock::new(),
        })
    }

    /// The number of records, as chroma's `count()` reports it.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether the collection has no records.
    pub fn is_empty(&self) -> bool {
        self.records.len() == 0
    }

    /// How many records come first from the metadata segment; the log's follow.
    fn segment_records(&self) -> usize {
        self.records.len() - self.log_ids.len()
    }

    /// Every id, in order.
    pub fn ids(&self, conn: &Connection) -> Result<Vec<String>, PluginError> {
        let mut ids = Vec::with_capacity(self.len());
        for start in (0..self.len()).step_by(ID_CHUNK) {
            let positions: Vec<usize> = (start..(start + ID_CHUNK).min(self.len())).collect();
            let column = self.id_column(conn, &positions)?;
            ids.extend(column.iter().flatten().map(str::to_owned));
        }
        Ok(ids)
    }

    /// The ids at these plan positions, in the order given.
    fn id_column(&self, conn: &Connection, positions: &[usize]) -> Result<StringArray, PluginError> {
        let rows = self.segment_rows_of(conn, positions, false)?;
        let mut ids = StringBuilder::with_capacity(positions.len(), positions.len() * 16);
        for &position in positions {
            ids.append_value(self.id(&rows, position)?);
        }
        Ok(ids.finish())
    }

    /// The id of the record at `position`, from the batch's rows or the log's ids.
    fn id<'a>(&'a self, rows: &'a BatchRows, position: usize) -> Result<&'a str, PluginError> {
        match position.checked_sub(self.segment_records()) {
            Some(tail) => Ok(&self.log_ids[tail]),
            None => {
                let offset = self.records.offset_id(position);
                rows.id(offset).ok_or_else(|| {
                    corrupt_at(
                        &self.db,
                        format!("row {offset} of embeddings is gone: the store changed while it was read"),
                    )
                })
            }
        }
    }

    /// Positions of these ids in the plan, in the order given (ids not found are left out).
    pub fn positions(&self, conn: &Connection, ids: &[String]) -> Result<Vec<usize>, PluginError> {
        let err = |e| classify(&self.db, e);
        let list = serde_json::to_string(ids).map_err(|e| internal(format!("an id list: {e}")))?;
        let mut statement = conn
            .prepare_cached(
                "SELECT embedding_id, id FROM embeddings WHERE segment_id=?1 \
                 AND embedding_id IN (SELECT value FROM json_each(?2))",
            )
            .map_err(err)?;
        let mut rows = statement
            .query(rusqlite::params![self.collection.metadata_segment, list])
            .map_err(err)?;
        let mut found: FastMap<String, usize> = FastMap::default();
        while let Some(row) = rows.next().map_err(err)? {
            let offset: i64 = row.get(1).map_err(err)?;
            // A row the log deleted is in the table but not in the plan.
            if let Some(position) = self.records.position_of_row(offset, self.segment_records()) {
                found.insert(row.get(0).map_err(err)?, position);
            }
        }
        let log_by_id = self.log_by_id.get_or_init(|| {
            let mut order: Vec<usize> = (0..self.log_ids.len()).collect();
            order.sort_unstable_by(|&a, &b| self.log_ids[a].cmp(&self.log_ids[b]));
            order
        });
        let in_log = |id: &str| {
            let at = log_by_id.binary_search_by(|&tail| self.log_ids[tail].as_str().cmp(id));
            at.ok().map(|at| self.segment_records() + log_by_id[at])
        };
        Ok(ids
            .iter()
            .filter_map(|id| found.get(id.as_str()).copied().or_else(|| in_log(id)))
            .collect())
    }

    /// The dimension of the batches (0 for a collection that never received a record).
    pub fn dimension(&self) -> u32 {
        self.collection.dimension.unwrap_or(0)
    }

    /// The records at these plan positions as one canonical batch, in the order given. Columns
    /// are built directly (no `Record` in between): vectors are read into the embedding
    /// column's buffer.
    pub fn batch(&self, conn: &Connection, positions: &[usize]) -> Result<RecordBatch, PluginError> {
        let err = |e| classify(&self.db, e);
        let dimension = self.dimension() as usize;
        let cosine = self.collection.space == DistanceMetric::Cosine;
        let positions: Vec<usize> = positions.iter().copied().filter(|&p| p < self.len()).collect();
        let rows = self.segment_rows_of(conn, &positions, true)?;
        let mut json = Vec::new();
        let mut ids = StringBuilder::with_capacity(positions.len(), positions.len() * 16);
        let mut documents = StringBuilder::new();
        let mut metadata_json = StringBuilder::new();
        let mut vectors: Vec<f32> = Vec::with_capacity(positions.len() * dimension);
        for &position in &positions {
            let id = self.id(&rows, position)?;
            let base = match position < self.segment_records() {
                true => rows.record(self.records.offset_id(position)),
                false => RecordRows::empty(),
            };
            let record_error = |e: String| corrupt_at(&self.db, format!("record '{id}': {e}"));
            match self.metadata_ops.get(&position) {
                None => {
                    documents.append_option(base.document());
                    json.clear();
                    match base.write_json(&mut json).map_err(record_error)? {
                        true => metadata_json.append_value(String::from_utf8_lossy(&json)),
                        false => metadata_json.append_null(),
                    }
                }
                Some(ops) => {
                    // The log still changes this record's metadata: merge on the owned map.
                    let mut metadata = base.to_metadata();
                    for seq in ops {
                        let text: Option<String> = conn
                            .prepare_cached("SELECT metadata FROM embeddings_queue WHERE seq_id=?1")
                            .and_then(|mut s| s.query_row([seq], |r| r.get(0)))
                            .map_err(err)?;
                        if let Some(text) = text {
                            let update = parse_metadata(&text).map_err(|e| {
                                corrupt_at(&self.db, format!("embeddings_queue seq {seq}: metadata: {e}"))
                            })?;
                            apply_update(&mut metadata, &update);
                        }
                    }
                    match metadata.remove(DOCUMENT_KEY) {
                        Some(MetaValue::Str(document)) => documents.append_value(document),
                        _ => documents.append_null(),
                    }
                    metadata_json.append_option(metadata_to_json(&metadata).map_err(record_error)?);
                }
            }
            ids.append_value(id);
        }
        // Vectors: runs of persisted ones are read together, log ones one by one.
        let mut persisted: Vec<usize> = Vec::new();
        for &position in &positions {
            match self.records.vector(position) {
                Some(VectorSource::Hnsw(internal)) => persisted.push(internal as usize),
                Some(VectorSource::Log(seq)) => {
                    self.append_persisted(&mut persisted, &mut vectors)?;
                    let blob: Vec<u8> = conn
                        .prepare_cached("SELECT vector FROM embeddings_queue WHERE seq_id=?1")
                        .and_then(|mut s| s.query_row([seq], |r| r.get(0)))
                        .map_err(err)?;
                    let mut vector = decode_vector(&blob, dimension)
                        .map_err(|e| corrupt_at(&self.db, format!("embeddings_queue seq {seq}: {e}")))?;
                    if cosine {
                        cosine_round_trip(&mut vector);
                    }
                    vectors.extend_from_slice(&vector);
                }
                // The plan refuses records without a vector.
                None => return Err(internal(format!("{}: a record without a vector", self.db.display()))),
            }
        }
        self.append_persisted(&mut persisted, &mut vectors)?;
        let schema = canonical_schema(self.dimension());
        let item = match schema.field(3).data_type() {
            DataType::FixedSizeList(item, _) => item.clone(),
            other => unreachable!("the canonical embedding column is a fixed-size list, not {other}"),
        };
        let embeddings = FixedSizeListArray::try_new(
            item,
            self.dimension() as i32,
            Arc::new(Float32Array::from(vectors)),
            None,
        );
        let columns: Vec<ArrayRef> = vec![
            Arc::new(ids.finish()),
            Arc::new(documents.finish()),
            Arc::new(metadata_json.finish()),
            Arc::new(embeddings.map_err(|e| internal(format!("an embedding column: {e}")))?),
        ];
        RecordBatch::try_new(schema, columns).map_err(|e| internal(format!("a batch: {e}")))
    }

    /// Appends the vectors of the persisted elements in `internals` and empties it.
    fn append_persisted(&self, internals: &mut Vec<usize>, out: &mut Vec<f32>) -> Result<(), PluginError> {
        if internals.is_empty() {
            return Ok(());
        }
        let level0 = self
            .level0
            .as_ref()
            .ok_or_else(|| corrupt_at(&self.db, "hnsw element without hnsw files"))?;
        level0.append_vectors(internals, out)?;
        internals.clear();
        Ok(())
    }

    /// The rows of the metadata segment behind these plan positions: their ids, and with
    /// `metadata` their metadata (documents included). One statement per table whatever the
    /// number of rows.
    fn segment_rows_of(
        &self,
        conn: &Connection,
        positions: &[usize],
        metadata: bool,
    ) -> Result<BatchRows, PluginError> {
        let mut out = BatchRows::default();
        let rows: Vec<i64> = (positions.iter())
            .filter(|&&p| p < self.segment_records())
            .map(|&p| self.records.offset_id(p))
            .collect();
        let (Some(&first), Some(&last)) = (rows.first(), rows.last()) else {
            return Ok(out);
        };
        let ascending = rows.windows(2).all(|w| w[0] < w[1]);
        let wanted = if ascending && last - first < 2 * rows.len() as i64 {
            // An extract's batch is a run of neighbouring rows: one range scan.
            Wanted::Range(first, last)
        } else {
            // A sample's or a fetch's rows are scattered: one index lookup each.
            Wanted::Listed(serde_json::to_string(&rows).map_err(|e| internal(format!("a row list: {e}")))?)
        };
        let ids = format!(
            "SELECT id, embedding_id FROM embeddings WHERE {} ORDER BY id",
            wanted.condition()
        );
        self.read_ids(conn, &ids, &wanted, &mut out)?;
        if !metadata {
            return Ok(out);
        }
        let columns = "SELECT id, key, string_value, int_value, float_value, bool_value";
        match self.stored_span(conn, &wanted)? {
            Some(span) => {
                let scalars = format!("{columns} FROM embedding_metadata WHERE {}", span.condition());
                self.read_rows(conn, &scalars, &span, &mut out, BatchRows::push_scalar)?;
                out.sort_scalars();
            }
            None => {
                let scalars = format!(
                    "{columns} FROM embedding_metadata WHERE {} ORDER BY id, key",
                    wanted.condition()
                );
                self.read_rows(conn, &scalars, &wanted, &mut out, BatchRows::push_scalar)?;
            }
        }
        if self.has_array_table {
            // Elements in the order they were written: that is the order of the array.
            let arrays = format!(
                "{columns} FROM embedding_metadata_array WHERE {} ORDER BY id, key, rowid",
                wanted.condition()
            );
            self.read_rows(conn, &arrays, &wanted, &mut out, BatchRows::push_element)?;
        }
        Ok(out)
    }

    /// The span of `embedding_metadata` that holds a range's rows, when reading them in storage
    /// order pays: chroma inserts a record's keys one after another, so a batch's rows usually sit
    /// together, and a scan of the table reads them without looking each one up from the
    /// `(id, key)` index (the metadata read about a third faster at 100k records). Rows an update
    /// moved to the table's end make the span mostly other records' rows: then `None`, and the
    /// index is used. Records without metadata rows get an empty span.
    fn stored_span(&self, conn: &Connection, wanted: &Wanted) -> Result<Option<Wanted>, PluginError> {
        let Wanted::Range(first, last) = *wanted else {
            return Ok(None);
        };
        let (low, high, rows): (Option<i64>, Option<i64>, i64) = conn
            .prepare_cached(
                "SELECT min(rowid), max(rowid), count(*) FROM embedding_metadata WHERE id BETWEEN ?1 AND ?2",
            )
            .and_then(|mut s| s.query_row([first, last], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))))
            .map_err(|e| classify(&self.db, e))?;
        let (low, high) = (low.unwrap_or(1), high.unwrap_or(0));
        Ok((high.saturating_sub(low) < 2 * rows.max(1)).then_some(Wanted::Span { first, last, low, high }))
    }

    /// Runs a query over the `wanted` rows and hands each result row to `each`.
    fn each_row(
        &self,
        conn: &Connection,
        sql: &str,
        wanted: &Wanted,
        mut each: impl FnMut(&rusqlite::Row<'_>) -> Result<(), PluginError>,
    ) -> Result<(), PluginError> {
        let err = |e| classify(&self.db, e);
        let mut statement = conn.prepare_cached(sql).map_err(err)?;
        let mut rows = wanted.query(&mut statement).map_err(err)?;
        while let Some(row) = rows.next().map_err(err)? {
            each(row)?;
        }
        Ok(())
    }

    /// Runs an id query over the `wanted` rows of `embeddings` and adds each id to `out`.
    fn read_ids(&self, conn: &Connection, sql: &str, wanted: &Wanted, out: &mut BatchRows) -> Result<(), PluginError> {
        let err = |e| classify(&self.db, e);
        self.each_row(conn, sql, wanted, |row| {
            let row_number: i64 = row.get(0).map_err(err)?;
            let id: &str = row.get_ref(1).and_then(|v| Ok(v.as_str()?)).map_err(err)?;
            out.push_id(row_number, id);
            Ok(())
        })
    }

    /// Runs a metadata query over the `wanted` rows and adds each typed value to `out`.
    fn read_rows(
        &self,
        conn: &Connection,
        sql: &str,
        wanted: &Wanted,
        out: &mut BatchRows,
        add: fn(&mut BatchRows, i64, Range<usize>, RowValue),
    ) -> Result<(), PluginError> {
        let err = |e| classify(&self.db, e);
        self.each_row(conn, sql, wanted, |row| {
            let id: i64 = row.get(0).map_err(err)?;
            let key: &str = row.get_ref(1).and_then(|v| Ok(v.as_str()?)).map_err(err)?;
            let key = out.push_text(key);
            let value = typed(
                row.get_ref(2).map_err(err)?,
                row.get_ref(3).map_err(err)?,
                row.get_ref(4).map_err(err)?,
                row.get_ref(5).map_err(err)?,
            )
            .map_err(|e| corrupt_at(&self.db, format!("metadata of row {id}, key '{}': {e}", out.text(&key))))?;
            if let Some(value) = value {
                let value = out.value(value);
                add(out, id, key, value);
            }
            Ok(())
        })
    }
}

/// How many ids [`Plan::ids`] reads per statement.
const ID_CHUNK: usize = 10_000;

/// The metadata rows a batch reads.
enum Wanted {
    /// The rows `first..=last`.
    Range(i64, i64),
    /// The rows of a JSON array of row numbers.
    Listed(String),
    /// The rows `first..=last` among the table rows with rowids `low..=high`.
    Span { first: i64, last: i64, low: i64, high: i64 },
}

impl Wanted {
    fn query<'s>(&self, statement: &'s mut rusqlite::CachedStatement<'_>) -> rusqlite::Result<rusqlite::Rows<'s>> {
        match self {
            Wanted::Range(first, last) => statement.query([first, last]),
            Wanted::Listed(json) => statement.query([json]),
            Wanted::Span { first, last, low, high } => statement.query([low, high, first, last]),
        }
    }

    fn condition(&self) -> &'static str {
        match self {
            Wanted::Range(..) => "id BETWEEN ?1 AND ?2",
            Wanted::Listed(_) => "id IN (SELECT value FROM json_each(?1))",
            Wanted::Span { .. } => "rowid BETWEEN ?1 AND ?2 AND id BETWEEN ?3 AND ?4",
        }
    }
}

/// A hash map for record ids: foldhash is several times faster than the default SipHash and
/// still seeded per process.
type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// Opens a segment's HNSW files and maps each live element's label to its internal id.
fn scan_labels(dir: &Path, dimension: usize, cosine: bool) -> Result<(Level0, Labels), PluginError> {
    let files = Level0::open(dir, dimension, cosine)?;
    let mut pairs = Vec::with_capacity(files.len());
    files.for_each_live(|internal, label| pairs.push((label, internal as u32)))?;
    Ok((files, Labels::new(pairs)))
}

/// hnswlib labels to internal ids.
enum Labels {
    /// Indexed by label, `u32::MAX` where no element has it: chroma numbers labels from 1 as
    /// it adds records, so they are dense unless many were deleted.
    Dense(Vec<u32>),
    /// (label, internal id) sorted by label.
    Sparse(Vec<(u64, u32)>),
}

impl Labels {
    fn new(mut pairs: Vec<(u64, u32)>) -> Labels {
        let top = pairs.iter().map(|&(label, _)| label).max().unwrap_or(0);
        match usize::try_from(top) {
            Ok(top) if top < 2 * pairs.len() + 1024 => {
                let mut dense = vec![u32::MAX; top + 1];
                for (label, internal) in pairs {
                    dense[label as usize] = internal;
                }
                Labels::Dense(dense)
            }
            _ => {
                pairs.sort_unstable();
                Labels::Sparse(pairs)
            }
        }
    }

    fn internal(&self, label: u64) -> Option<u32> {
        match self {
            Labels::Dense(dense) => usize::try_from(label)
                .ok()
                .and_then(|label| dense.get(label))
                .copied()
                .filter(|&internal| internal != u32::MAX),
            Labels::Sparse(pairs) => (pairs.binary_search_by_key(&label, |&(l, _)| l).ok()).map(|at| pairs[at].1),
        }
    }
}

/// Adds the metadata segment's records to `views`, in the order of the (segment, id) index: the
/// plan sorts by row number itself, and an `ORDER BY id` here made SQLite sort every row again in
/// a temporary B-tree (38 MB of temp file at 1M records).
fn segment_rows(conn: &Connection, db: &Path, collection: &Collection, views: &mut Views) -> Result<(), PluginError> {
    let err = |e| classify(db, e);
    let mut statement = conn
        .prepare("SELECT id, embedding_id FROM embeddings WHERE segment_id=?1")
        .map_err(err)?;
    let mut rows = statement.query([&collection.metadata_segment]).map_err(err)?;
    while let Some(row) = rows.next().map_err(err)? {
        let offset_id: i64 = row.get(0).map_err(err)?;
        let id: &str = row.get_ref(1).and_then(|v| Ok(v.as_str()?)).map_err(err)?;
        let n = views.number(id);
        views.offsets[n] = offset_id;
    }
    Ok(())
}

/// Checks one log row the way chroma would decode it, returning what the plan needs.
fn check_log_row(row: &rusqlite::Row<'_>, dimension: usize) -> Result<LogRow, String> {
    let seq: i64 = row.get(0).map_err(|e| format!("seq_id: {e}"))?;
    let at = |problem: String| format!("seq {seq}: {problem}");
    let code: i64 = row.get(1).map_err(|e| at(format!("operation: {e}")))?;
    let operation = Operation::from_code(code).ok_or_else(|| at(format!("unknown operation code {code}")))?;
    let id: String = row.get(2).map_err(|e| at(format!("id: {e}")))?;
    let vector: Option<Vec<u8>> = row.get(3).map_err(|e| at(format!("vector: {e}")))?;
    let encoding: Option<String> = row.get(4).map_err(|e| at(format!("encoding: {e}")))?;
    let has_vector = match (&vector, encoding.as_deref()) {
        (Some(blob), Some("FLOAT32")) => {
            decode_vector(blob, dimension).map_err(at)?;
            true
        }
        (Some(_), Some(other)) => return Err(at(format!("unknown vector encoding '{other}'"))),
        _ => false,
    };
    let metadata: Option<String> = row.get(5).map_err(|e| at(format!("metadata: {e}")))?;
    let has_metadata = match &metadata {
        None => false,
        Some(text) => {
            let update = parse_metadata(text).map_err(|e| at(format!("metadata: {e}")))?;
            if let Some((_, Some(value))) = update.iter().find(|(k, _)| k == DOCUMENT_KEY)
                && !matches!(value, MetaValue::Str(_))
            {
                return Err(at(format!("{DOCUMENT_KEY} is not a string")));
            }
            true
        }
    };
    Ok(LogRow {
        seq,
        operation,
        id,
        has_vector,
        has_metadata,
    })
}

/// Which plan positions each batch of a stream holds.
struct Cuts {
    start: usize,
    batch_size: usize,
    /// Plan positions to emit instead of the whole plan (fetch and sample).
    selection: Option<Vec<usize>>,
    total: usize,
}

impl Cuts {
    fn count(&self) -> usize {
        self.total.saturating_sub(self.start).div_ceil(self.batch_size)
    }

    fn positions(&self, batch: usize) -> Vec<usize> {
        let from = self.start + batch * self.batch_size;
        let to = (from + self.batch_size).min(self.total);
        match &self.selection {
            Some(selection) => selection[from..to].to_vec(),
            None => (from..to).collect(),
        }
    }
}

/// The thread that builds a stream's record batches one ahead of its consumer, on a connection
/// of its own (one thread: two taking turns were no faster for chroma -> lance on two cores and
/// passed 4.5 times the bytes through read calls, each connection's page cache re-reading SQLite
/// pages; docs/benchmarks.md, finding 11).
struct Reader {
    batches: Receiver<Result<RecordBatch, PluginError>>,
    /// Joined when the batches stop early, to tell a panic from an ending.
    thread: Option<JoinHandle<()>>,
}

/// Streams a plan as canonical batches, in order.
pub struct Batches {
    /// The connection the reader thread takes when it starts.
    conn: Option<Connection>,
    plan: Arc<Plan>,
    cuts: Arc<Cuts>,
    schema: SchemaRef,
    /// Emit the `id` column alone (`ExtractRequest::ids_only`): only `embeddings` is read, on
    /// this thread.
    ids_only: bool,
    /// Started by the first batch.
    reader: Option<Reader>,
    next: usize,
    failed: bool,
}

impl Batches {
    pub fn new(
        conn: Connection,
        plan: Arc<Plan>,
        start: u64,
        batch_size: u32,
        selection: Option<Vec<usize>>,
    ) -> Batches {
        let schema = canonical_schema(plan.dimension());
        let total = selection.as_ref().map_or(plan.len(), Vec::len);
        Batches {
            conn: Some(conn),
            cuts: Arc::new(Cuts {
                start: usize::try_from(start).unwrap_or(usize::MAX).min(total),
                batch_size: batch_size.max(1) as usize,
                selection,
                total,
            }),
            plan,
            schema,
            ids_only: false,
            reader: None,
            next: 0,
            failed: false,
        }
    }

    /// Makes the batches carry ids only.
    pub fn ids_only(self) -> Batches {
        Batches {
            schema: ids_schema(),
            ids_only: true,
            ..self
        }
    }

    fn start_reader(&mut self) -> Result<Reader, PluginError> {
        let (sender, batches) = sync_channel(1);
        let plan = self.plan.clone();
        let cuts = self.cuts.clone();
        let conn = self
            .conn
            .take()
            .ok_or_else(|| internal("the stream's connection was given to an earlier reader".to_owned()))?;
        let thread = std::thread::spawn(move || {
            for batch in 0..cuts.count() {
                let built = plan.batch(&conn, &cuts.positions(batch));
                let failed = built.is_err();
                // A closed channel means the stream was dropped: nobody wants the rest.
                if sender.send(built).is_err() || failed {
                    return;
                }
            }
        });
        Ok(Reader {
            batches,
            thread: Some(thread),
        })
    }

    fn next_batch(&mut self) -> Result<Option<RecordBatch>, PluginError> {
        if self.failed || self.next >= self.cuts.count() {
            return Ok(None);
        }
        let batch = self.next;
        self.next += 1;
        if self.ids_only {
            let conn = (self.conn.as_ref())
                .ok_or_else(|| internal("an id stream without its connection".to_owned()))
                .inspect_err(|_| self.failed = true)?;
            let ids = (self.plan.id_column(conn, &self.cuts.positions(batch))).inspect_err(|_| self.failed = true)?;
            return RecordBatch::try_new(self.schema.clone(), vec![Arc::new(ids)])
                .map(Some)
                .map_err(|e| internal(format!("an id batch: {e}")));
        }
        let reader = match self.reader.take() {
            Some(reader) => reader,
            None => self.start_reader().inspect_err(|_| self.failed = true)?,
        };
        let reader = self.reader.insert(reader);
        let received = reader.batches.recv();
        if !matches!(received, Ok(Ok(_))) {
            self.failed = true;
        }
        match received {
            Ok(built) => built.map(Some),
            // The thread ended before its batch: only a panic does that.
            Err(_) => {
                let why = match reader.thread.take().map(JoinHandle::join) {
                    Some(Err(panic)) => panic
                        .downcast_ref::<&str>()
                        .map(|s| (*s).to_owned())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "a panic".to_owned()),
                    _ => "no reason given".to_owned(),
                };
                Err(internal(format!(
                    "{}: a reader thread stopped before batch {batch}: {why}",
                    self.plan.db.display()
                )))
            }
        }
    }
}

impl Iterator for Batches {
    type Item = Result<RecordBatch, ArrowError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_batch()
            .map_err(|e| ArrowError::ExternalError(Box::new(e)))
            .transpose()
    }
}

impl ragged_plugin_api::arrow::arrow_array::RecordBatchReader for Batches {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// The runs answer what a list of (row number, vector) per record would.
        #[test]
        fn records_in_runs_answer_like_a_list(
            steps in prop::collection::vec((1i64..4, any::<bool>(), 0u32..1000), 0..300),
            within in 0usize..320,
        ) {
            let mut list = Vec::new();
            let mut row = 5;
            for (step, from_log, element) in steps {
                row += step;
                let vector = match from_log {
                    true => VectorSource::Log(row * 7),
                    false => VectorSource::Hnsw(element),
                };
                list.push((row, vector));
            }
            let mut records = Records::default();
            for &(row, vector) in &list {
                records.push(row, vector);
            }
            prop_assert_eq!(records.len(), list.len());
            for (position, &(row, vector)) in list.iter().enumerate() {
                prop_assert_eq!(records.offset_id(position), row);
                prop_assert_eq!(records.vector(position), Some(vector));
            }
            prop_assert_eq!(records.vector(list.len()), None);
            for wanted in 0..row + 3 {
                let expected = list.iter().position(|&(row, _)| row == wanted).filter(|&p| p < within);
                prop_assert_eq!(records.position_of_row(wanted, within), expected, "row {}", wanted);
            }
        }
    }
}
