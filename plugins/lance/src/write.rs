//! `load`: canonical batches into a LanceDB table; `delete`: records out of one.
//!
//! Every write is an atomic Lance commit keyed on `id`: the first batches of a new table create
//! it, and a batch with ids that may already be in the table is a `merge_insert` (update all
//! columns when matched, insert otherwise), so a batch replayed after a crash replaces instead of
//! duplicating. The shortcut: into a table this store's loads created, batches whose ids they have
//! not written yet are appended, all of a load's in one commit. Lance writes a commit while the
//! load still receives its batches ([`Commit`]), so encoding and writing overlap with the source.
//! Before the first write into an existing table its current version is tagged
//! `ragged-before-v<N>`, so the pre-migration state can be restored with `tbl.restore(tag)` and is
//! never pruned. Optionally a vector index with the collection's metric is built once the table
//! is large enough.
//!
//! `delete` is Lance's delete with an `id IN (...)` filter, also after a version tag.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Mutex;
use std::sync::mpsc::{SyncSender, sync_channel};

use arrow_array::cast::AsArray;
use arrow_array::{Array, ArrayRef, RecordBatch, RecordBatchIterator, RecordBatchReader, UInt32Array};
use arrow_schema::{ArrowError, SchemaRef};
use lancedb::database::CreateTableMode;
use lancedb::index::Index;
use lancedb::index::vector::IvfHnswSqIndexBuilder;
use lancedb::table::{AddDataMode, NaNVectorBehavior};
use lancedb::{Connection, Table};
use ragged_plugin_api::arrow::check_schema;
use ragged_plugin_api::{BatchStream, ErrorCode, LoadMode, LoadRequest, LoadSummary, MetadataScalars, PluginError};

use crate::metadata::{self, Promoted};
use crate::options::{StoreOptions, VectorIndex};
use crate::read::{Source, distance_type, id_filters};
use crate::runtime::{block_on, lance_error, spawn};
use crate::schema::{self, Layout, columns};
use crate::seen::SeenIds;

/// The prefix of the tags that mark a table's version before a load wrote into it.
pub(crate) const TAG_PREFIX: &str = "ragged-before-v";

/// Batches handed to a [`Commit`] that Lance has not taken yet.
const COMMIT_QUEUE: usize = 2;

/// The ids (as 64-bit hashes) a store's loads wrote into a table one of them created, and the
/// table's version after the last of them. The host loads a migration in several calls; the next
/// call into the same table continues with these when nobody wrote in between (the version is
/// unchanged), instead of merging every batch against the whole table.
pub(crate) struct Written {
    version: u64,
    ids: SeenIds,
}

/// Writes `batches` into the table `request.collection.name`.
pub(crate) fn load(
    db: &Connection,
    options: &StoreOptions,
    request: &LoadRequest,
    batches: BatchStream,
    written_before: &Mutex<HashMap<String, Written>>,
) -> Result<LoadSummary, PluginError> {
    let name = request.collection.name.as_str();
    let context = format!("table '{name}'");
    let reader = batches
        .into_reader()
        .map_err(|e| PluginError::invalid_input(format!("{context}: cannot read the record stream: {e}")))?;
    let dimension = check_schema(&reader.schema())?;
    if dimension != request.collection.dimension {
        return Err(PluginError::invalid_input(format!(
            "{context}: the records have {dimension} dimensions, the collection is described with {}",
            request.collection.dimension
        )));
    }

    let (mut table, mut shape): (Option<Table>, Option<(SchemaRef, Promoted)>) =
        match block_on(db.open_table(name).execute())? {
            Ok(table) => {
                if request.mode == LoadMode::Create {
                    return Err(PluginError::new(
                        ErrorCode::AlreadyExists,
                        format!("{context} already exists (load mode create needs a new collection)"),
                    ));
                }
                let table_schema = block_on(table.schema())?.map_err(|e| lance_error(&context, e))?;
                let layout = Layout::resolve(name, &table_schema, &options.columns)?;
                refuse_foreign(&layout, &context)?;
                if layout.dimension != dimension {
                    return Err(PluginError::invalid_input(format!(
                        "{context} holds vectors of {} dimensions, the records have {dimension}",
                        layout.dimension
                    )));
                }
                tag_current_version(&table, &context)?;
                (Some(table), Some((table_schema, layout.promoted)))
            }
            Err(lancedb::Error::TableNotFound { .. }) => {
                if request.mode == LoadMode::Append {
                    return Err(PluginError::not_found(format!(
                        "{context} does not exist (load mode append needs an existing collection)"
                    )));
                }
                (None, None)
            }
            Err(error) => return Err(lance_error(&context, error)),
        };

    // Ids written into a table this store's loads created, as 64-bit hashes: a batch none of
    // whose ids were seen is appended instead of merged, which keeps loading a new table linear
    // instead of scanning every id already written for each batch. A hash collision only costs a
    // merge.
    let earlier = written_before.lock().ok().and_then(|mut tables| tables.remove(name));
    let mut seen: Option<SeenIds> = match &table {
        None => Some(SeenIds::default()),
        Some(table) => {
            let version = block_on(table.version())?.map_err(|e| lance_error(&context, e))?;
            earlier.filter(|w| w.version == version).map(|w| w.ids)
        }
    };
    // The create or append that fresh batches go to, open until a batch must be merged.
    let mut commit: Option<Commit> = None;
    let mut written = 0u64;
    for batch in reader {
        let batch = batch.map_err(|e| PluginError::invalid_input(format!("{context}: reading records: {e}")))?;
        if batch.num_rows() == 0 {
            continue;
        }
        // Counted as received: a record replaced within its own batch was still written.
        written += batch.num_rows() as u64;
        let batch = keep_last_per_id(&batch)?;
        let parsed = parse_metadata(&batch)?;
        let fresh = seen.as_mut().is_some_and(|seen| {
            let hashes = id_hashes(&batch);
            let fresh = !hashes.iter().any(|&h| seen.contains(h));
            seen.extend(hashes);
            fresh
        });
        let (table_schema, promoted) = match &shape {
            Some(shape) => shape,
            // A new table: the first batch decides which metadata keys get columns of their own.
            None => {
                let promoted = Promoted::infer(&parsed);
                shape.insert((schema::ragged_schema(&request.collection, &promoted)?, promoted))
            }
        };
        let rows = table_batch(table_schema, promoted, &batch, &parsed)?;
        if fresh {
            let open = match commit.take() {
                Some(open) => open,
                None => match &table {
                    Some(table) => Commit::append(table, table_schema.clone())?,
                    None => Commit::create(db, name, table_schema.clone())?,
                },
            };
            commit = Some(open.send(rows, &context)?);
            continue;
        }
        // The appends before it first: this batch may replace some of their records.
        if let Some(open) = commit.take() {
            table = Some(open.finish(&context)?);
        }
        let Some(table) = &table else {
            return Err(PluginError::new(
                ErrorCode::Internal,
                format!("{context}: a batch to merge into a table that was never created"),
            ));
        };
        let source: Box<dyn RecordBatchReader + Send> =
            Box::new(RecordBatchIterator::new([Ok(rows)], table_schema.clone()));
        let mut merge = table.merge_insert(&[columns::ID]);
        merge.when_matched_update_all(None).when_not_matched_insert_all();
        block_on(merge.execute(source))?.map_err(|e| lance_error(&context, e))?;
    }

    if let Some(open) = commit.take() {
        table = Some(open.finish(&context)?);
    }
    let table = match table {
        Some(table) => table,
        None => {
            let table_schema = schema::ragged_schema(&request.collection, &Promoted::default())?;
            block_on(db.create_empty_table(name, table_schema).execute())?.map_err(|e| lance_error(&context, e))?
        }
    };
    maybe_index(&table, options, request, &context)?;
    if let Some(ids) = seen {
        let version = block_on(table.version())?.map_err(|e| lance_error(&context, e))?;
        if let Ok(mut tables) = written_before.lock() {
            tables.insert(name.to_owned(), Written { version, ids });
        }
    }
    Ok(LoadSummary {
        records_written: written,
    })
}

/// One Lance commit in progress: a create or an append that Lance writes on the plugin runtime
/// while the load goes on receiving and shaping the next batches. Dropped before
/// [`Commit::finish`] (an error stopped the load), it fails the write, so nothing of it is
/// committed.
struct Commit {
    /// The write's input; `None` once it has ended.
    input: Option<SyncSender<Result<RecordBatch, ArrowError>>>,
    write: tokio::task::JoinHandle<lancedb::Result<Table>>,
    /// For a create: the database and the table's name, to clear what a failed create leaves.
    creating: Option<(Connection, String)>,
}

impl Commit {
    /// Creates the table `name` from the batches sent.
    fn create(db: &Connection, name: &str, table_schema: SchemaRef) -> Result<Self, PluginError> {
        let (input, batches) = Self::input(table_schema);
        let create = db.create_table(name, batches).mode(CreateTableMode::Create);
        let mut commit = Self::start(input, async move { create.execute().await })?;
        commit.creating = Some((db.clone(), name.to_owned()));
        Ok(commit)
    }

    /// Appends the batches sent to `table`.
    fn append(table: &Table, table_schema: SchemaRef) -> Result<Self, PluginError> {
        let (input, batches) = Self::input(table_schema);
        let table = table.clone();
        Self::start(input, async move {
            // lancedb refuses NaN in an append only (not in a create or a merge); kept, so that
            // every vector arrives bit-exact whichever write carries it.
            let add = table.add(batches).mode(AddDataMode::Append);
            add.on_nan_vectors(NaNVectorBehavior::Keep).execute().await?;
            Ok(table)
        })
    }

    /// A queue of batches and the reader Lance takes them from (on a thread of its runtime).
    fn input(
        table_schema: SchemaRef,
    ) -> (
        SyncSender<Result<RecordBatch, ArrowError>>,
        Box<dyn RecordBatchReader + Send>,
    ) {
        let (input, queue) = sync_channel(COMMIT_QUEUE);
        (input, Box::new(RecordBatchIterator::new(queue, table_schema)))
    }

    fn start(
        input: SyncSender<Result<RecordBatch, ArrowError>>,
        write: impl Future<Output = lancedb::Result<Table>> + Send + 'static,
    ) -> Result<Self, PluginError> {
        Ok(Commit {
            input: Some(input),
            write: spawn(write)?,
            creating: None,
        })
    }

    /// Hands `rows` (in the table's schema) to the write. A write that has stopped takes no
    /// more: its error is returned instead.
    fn send(self, rows: RecordBatch, context: &str) -> Result<Self, PluginError> {
        let taken = self.input.as_ref().is_some_and(|input| input.send(Ok(rows)).is_ok());
        match taken {
            true => Ok(self),
            false => Err(self.finish(context).err().unwrap_or_else(|| {
                PluginError::new(
                    ErrorCode::Internal,
                    format!("{context}: the write ended before its input"),
                )
            })),
        }
    }

    /// Ends the input and waits for Lance to commit what it received.
    fn finish(mut self, context: &str) -> Result<Table, PluginError> {
        self.input = None;
        let written = match block_on(&mut self.write)? {
            Ok(Ok(table)) => Ok(table),
            Ok(Err(error)) => Err(lance_error(context, error)),
            Err(stopped) => Err(PluginError::new(
                ErrorCode::Internal,
                format!("{context}: the write stopped: {stopped}"),
            )),
        };
        if written.is_err() {
            self.clear_failed_create();
        }
        written
    }

    /// A failed create leaves a table directory with data files and no version, which lancedb
    /// still lists as a table: it is removed, unless a table opens there after all.
    fn clear_failed_create(&self) {
        if let Some((db, name)) = &self.creating {
            let _ = block_on(async {
                if let Err(lancedb::Error::TableNotFound { .. }) = db.open_table(name).execute().await {
                    let _ = db.drop_table(name, &[]).await;
                }
            });
        }
    }
}

impl Drop for Commit {
    fn drop(&mut self) {
        if let Some(input) = self.input.take() {
            // An error as the last batch makes Lance fail the write instead of committing it.
            let _ = input.send(Err(ArrowError::ExternalError("the load stopped before its end".into())));
            drop(input);
            let _ = block_on(&mut self.write);
            self.clear_failed_create();
        }
    }
}

/// Removes the rows with `ids` from a table ragged wrote and returns how many there were. Each
/// filter of ids is one Lance delete commit; the version before the first is tagged, as before a
/// load.
pub(crate) fn delete(source: &Source, ids: &[String]) -> Result<u64, PluginError> {
    let context = source.context();
    refuse_foreign(&source.layout, &context)?;
    let mut deleted = 0;
    let mut tagged = false;
    for filter in id_filters(ids, &source.layout) {
        // Counted first, so that ids already gone commit nothing (not even an empty version).
        let matching =
            block_on(source.table.count_rows(Some(filter.clone())))?.map_err(|e| lance_error(&context, e))?;
        if matching == 0 {
            continue;
        }
        if !tagged {
            tag_current_version(&source.table, &context)?;
            tagged = true;
        }
        let result = block_on(source.table.delete(&filter))?.map_err(|e| lance_error(&context, e))?;
        deleted += result.num_deleted_rows;
    }
    Ok(deleted)
}

/// Refuses to write into a table ragged did not create: its schema is not one ragged writes.
fn refuse_foreign(layout: &Layout, context: &str) -> Result<(), PluginError> {
    if layout.ragged {
        return Ok(());
    }
    Err(PluginError::new(
        ErrorCode::Unsupported,
        format!(
            "{context} was not written by ragged; ragged only writes into tables it created \
             (migrate into a new table instead)"
        ),
    ))
}

/// Tags the table's current version so a rollback can return to it.
fn tag_current_version(table: &Table, context: &str) -> Result<(), PluginError> {
    block_on(async {
        let version = table.version().await?;
        let mut tags = table.tags().await?;
        let tag = format!("{TAG_PREFIX}{version}");
        if !tags.list().await?.contains_key(&tag) {
            tags.create(&tag, version).await?;
        }
        Ok::<(), lancedb::Error>(())
    })?
    .map_err(|e| lance_error(context, e))
}

/// Builds a vector index with the collection's metric when `vector_index=auto` and the table has
/// reached `index_min_rows`, unless one exists already. Smaller tables are searched exactly.
fn maybe_index(table: &Table, options: &StoreOptions, request: &LoadRequest, context: &str) -> Result<(), PluginError> {
    if options.vector_index == VectorIndex::Never {
        return Ok(());
    }
    block_on(async {
        let rows = table.count_rows(None).await? as u64;
        if rows < options.index_min_rows {
            return Ok(());
        }
        let indexed = table
            .list_indices()
            .await?
            .iter()
            .any(|index| index.columns.iter().any(|c| c == columns::VECTOR));
        if indexed {
            return Ok(());
        }
        let builder = IvfHnswSqIndexBuilder::default().distance_type(distance_type(request.collection.metric));
        table
            .create_index(&[columns::VECTOR], Index::IvfHnswSq(builder))
            .execute()
            .await
    })?
    .map_err(|e| lance_error(context, e))
}

/// The hashes of a batch's ids (fixed SipHash keys: the same on every run).
fn id_hashes(batch: &RecordBatch) -> Vec<u64> {
    let ids = batch.column(0).as_string::<i32>();
    ids.iter()
        .map(|id| {
            let mut hasher = std::hash::DefaultHasher::new();
            id.hash(&mut hasher);
            hasher.finish()
        })
        .collect()
}

/// The batch with only the last occurrence of each id, so one commit never holds an id twice.
fn keep_last_per_id(batch: &RecordBatch) -> Result<RecordBatch, PluginError> {
    let ids = batch.column(0).as_string::<i32>();
    if ids.null_count() > 0 {
        return Err(PluginError::invalid_input("a record has a null id"));
    }
    let mut last: HashMap<&str, u32> = HashMap::with_capacity(ids.len());
    for row in 0..ids.len() {
        last.insert(ids.value(row), row as u32);
    }
    if last.len() == ids.len() {
        return Ok(batch.clone());
    }
    let mut rows: Vec<u32> = last.into_values().collect();
    rows.sort_unstable();
    arrow_select::take::take_record_batch(batch, &UInt32Array::from(rows))
        .map_err(|e| PluginError::new(ErrorCode::Internal, e.to_string()))
}

/// The metadata of every record, validated before anything is written.
fn parse_metadata(batch: &RecordBatch) -> Result<Vec<Option<MetadataScalars<'_>>>, PluginError> {
    let ids = batch.column(0).as_string::<i32>();
    let texts = batch.column(2).as_string::<i32>();
    let embeddings = batch.column(3).as_fixed_size_list();
    let mut out = Vec::with_capacity(batch.num_rows());
    for row in 0..batch.num_rows() {
        if embeddings.is_null(row) {
            return Err(PluginError::invalid_input(format!(
                "record '{}' has a null embedding",
                ids.value(row)
            )));
        }
        let text = texts.is_valid(row).then(|| texts.value(row));
        out.push(metadata::parse(text, ids.value(row))?);
    }
    Ok(out)
}

/// A canonical batch in the table's schema: id, vector, text, metadata_json, promoted columns.
fn table_batch(
    table_schema: &SchemaRef,
    promoted: &Promoted,
    batch: &RecordBatch,
    parsed: &[Option<MetadataScalars<'_>>],
) -> Result<RecordBatch, PluginError> {
    let mut columns: Vec<ArrayRef> = vec![
        batch.column(0).clone(),
        batch.column(3).clone(),
        batch.column(1).clone(),
        batch.column(2).clone(),
    ];
    columns.extend(promoted.columns(parsed));
    RecordBatch::try_new(table_schema.clone(), columns)
        .map_err(|e| PluginError::new(ErrorCode::Internal, format!("cannot shape records for the table: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ragged_plugin_api::Record;
    use ragged_plugin_api::arrow::records_to_batch;

    fn record(id: &str, doc: &str) -> Record {
        Record {
            id: id.into(),
            document: Some(doc.into()),
            metadata: None,
            embedding: vec![1.0, 2.0],
        }
    }

    #[test]
    fn a_batch_keeps_the_last_record_of_each_id() {
        let batch = records_to_batch(&[record("a", "1"), record("b", "2"), record("a", "3")], 2).expect("batch");
        let kept = keep_last_per_id(&batch).expect("dedupes");
        let ids: Vec<&str> = kept.column(0).as_string::<i32>().iter().flatten().collect();
        let docs: Vec<&str> = kept.column(1).as_string::<i32>().iter().flatten().collect();
        assert_eq!(ids, ["b", "a"]);
        assert_eq!(docs, ["2", "3"]);
    }

    #[test]
    fn bad_metadata_is_refused_naming_the_record() {
        let mut bad = record("x", "d");
        bad.metadata = Some(r#"{"a": null}"#.into());
        let batch = records_to_batch(&[bad], 2).expect("batch");
        let error = parse_metadata(&batch).expect_err("null value");
        assert!(error.message.starts_with("record 'x':"), "{error}");
    }
}
