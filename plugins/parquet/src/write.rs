//! Writing records: `load` with its validation and id-keyed replacement rule, and `delete`; each
//! commits with a single manifest swap.
//!
//! Incoming batches stream into new part files ("segments"). Every id written is remembered with
//! the segment holding it; when an id comes back within the same load, the current segment is
//! closed first so the newer row lands in a later one. At the end, every part (committed or
//! new) holding a row whose id was written again later is rewritten without it, under a new
//! name, and one manifest swap makes it all visible. Until then the previous manifest stays in
//! force, and a failed load removes the files it created. `delete` is the same rewrite with the
//! ids asked for, and no new rows.
//!
//! The manifest lists parts by number, so records are read in the order their files were
//! created: untouched parts keep their place, new and copied parts come after them.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};

use arrow_array::cast::AsArray;
use arrow_array::types::Float32Type;
use arrow_array::{Array, BooleanArray, RecordBatch};
use arrow_select::filter::filter_record_batch;
use ragged_plugin_api::arrow::check_schema;
use ragged_plugin_api::{
    BatchStream, CollectionInfo, ErrorCode, LoadMode, LoadRequest, LoadSummary, PluginError, validate_metadata,
};

use crate::layout::{CollectionDir, Manifest, PartEntry, parse_part_number, remove_quietly, sync_dir};
use crate::part::{Columns, Compression, OpenPart, PartWriter, canonicalize};

/// Rows per batch when a part is copied without its replaced rows.
const REWRITE_BATCH_ROWS: usize = 8192;

/// Writes `batches` into the collection `request` names under `root`.
pub(crate) fn load(
    root: &Path,
    compression: Compression,
    request: &LoadRequest,
    batches: BatchStream,
) -> Result<LoadSummary, PluginError> {
    let wanted = &request.collection;
    let dir = CollectionDir::new(root, &wanted.name)?;
    if wanted.dimension == 0 {
        return Err(PluginError::invalid_input(format!(
            "collection '{}' must have a dimension of at least 1",
            wanted.name
        )));
    }
    if request.mode == LoadMode::Append && dir.read_manifest_if_exists()?.is_none() {
        // Checked before anything is created, and again below under the lock.
        return Err(missing_for_append(root, &dir));
    }
    fs::create_dir_all(&dir.path).map_err(|e| PluginError::io(&dir.path, &e))?;
    sync_dir(root)?;
    let _lock = dir.lock()?;
    let existing = dir.read_manifest_if_exists()?;
    match (request.mode, &existing) {
        (LoadMode::Create, Some(_)) => {
            return Err(PluginError::new(
                ErrorCode::AlreadyExists,
                format!("collection '{}' already exists in {}", dir.name, root.display()),
            )
            .with_help("load with mode append or upsert to add to it"));
        }
        (LoadMode::Append, None) => return Err(missing_for_append(root, &dir)),
        _ => {}
    }
    if let Some(existing) = &existing {
        let have = &existing.collection;
        if have.dimension != wanted.dimension || have.metric != wanted.metric {
            return Err(PluginError::invalid_input(format!(
                "collection '{}' has dimension {} and metric {}, the load has dimension {} and metric {}",
                dir.name, have.dimension, have.metric, wanted.dimension, wanted.metric
            )));
        }
    }
    dir.remove_orphans(existing.as_ref())?;

    let info = CollectionInfo {
        name: dir.name.clone(),
        count: 0,
        ..wanted.clone()
    };
    let mut session = LoadSession {
        staging: Staging::new(&dir, info, compression, existing.as_ref())?,
        seen: HashMap::new(),
        segments: Vec::new(),
        current: None,
        received: 0,
        batches: 0,
    };
    let reader = batches
        .into_reader()
        .map_err(|e| PluginError::invalid_input(format!("cannot read the incoming batch stream: {e}")))?;
    for batch in reader {
        let batch = batch.map_err(|e| PluginError::invalid_input(format!("the incoming batch stream failed: {e}")))?;
        session.push(&batch)?;
    }
    session.commit(existing)
}

fn missing_for_append(root: &Path, dir: &CollectionDir) -> PluginError {
    PluginError::not_found(format!(
        "no collection '{}' in {} to append to",
        dir.name,
        root.display()
    ))
}

/// Removes the records with `ids` from the collection and returns how many there were. Parts
/// holding one are rewritten without it; nothing is written when none exists.
pub(crate) fn delete(
    root: &Path,
    compression: Compression,
    collection: &str,
    ids: &[String],
) -> Result<u64, PluginError> {
    let dir = CollectionDir::new(root, collection)?;
    // Checked before the lock, which needs the directory, and again under it.
    dir.read_manifest()?;
    let _lock = dir.lock()?;
    let existing = dir.read_manifest()?;
    let doomed: HashSet<&str> = ids.iter().map(String::as_str).collect();
    if doomed.is_empty() {
        return Ok(0);
    }
    dir.remove_orphans(Some(&existing))?;
    let mut staging = Staging::new(&dir, existing.collection.clone(), compression, Some(&existing))?;
    let mut parts = Vec::new();
    let mut retired = Vec::new();
    let mut removed = 0;
    for part in &existing.parts {
        let outcome = staging.without(part, |id| doomed.contains(id))?;
        removed += part.rows - outcome.as_ref().map_or(0, |kept| kept.rows);
        if outcome.as_ref() != Some(part) {
            retired.push(dir.part_path(&part.file));
        }
        parts.extend(outcome);
    }
    if removed > 0 {
        staging.commit(parts, &retired)?;
    }
    Ok(removed)
}

/// The new part files of one write, numbered on from the highest number in use. Dropping it
/// before [`Staging::commit`] removes every file it created.
struct Staging<'a> {
    dir: &'a CollectionDir,
    /// The description the new parts and the manifest carry.
    info: CollectionInfo,
    compression: Compression,
    next_number: u64,
    /// Files this write created, removed if it fails.
    created: Vec<PathBuf>,
}

impl<'a> Staging<'a> {
    fn new(
        dir: &'a CollectionDir,
        info: CollectionInfo,
        compression: Compression,
        existing: Option<&Manifest>,
    ) -> Result<Staging<'a>, PluginError> {
        Ok(Staging {
            next_number: dir.next_part_number(existing)?,
            dir,
            info,
            compression,
            created: Vec::new(),
        })
    }

    fn new_writer(&mut self) -> Result<PartWriter, PluginError> {
        let writer = PartWriter::create(self.dir, self.next_number, &self.info, self.compression)?;
        self.next_number += 1;
        self.created.extend(writer.paths());
        Ok(writer)
    }

    /// `part` without the rows whose id `dropped` accepts: the part itself when there is none, a
    /// new copy when some rows are dropped, `None` when all are.
    fn without(&mut self, part: &PartEntry, dropped: impl Fn(&str) -> bool) -> Result<Option<PartEntry>, PluginError> {
        let path = self.dir.part_path(&part.file);
        let dimension = self.info.dimension;
        let is_dropped = |id: Option<&str>| id.is_some_and(&dropped);
        // A cheap scan of the id column decides whether the part must be copied at all.
        let mut dropped_rows = 0u64;
        for batch in OpenPart::open(&path, part.rows, dimension)?.reader(Columns::Ids, None, REWRITE_BATCH_ROWS)? {
            let batch = batch?;
            let ids = batch.column(0).as_string::<i32>();
            dropped_rows += ids.iter().filter(|&id| is_dropped(id)).count() as u64;
        }
        if dropped_rows == 0 {
            return Ok(Some(part.clone()));
        }
        if dropped_rows == part.rows {
            return Ok(None);
        }
        let mut writer = self.new_writer()?;
        let reader = OpenPart::open(&path, part.rows, dimension)?.reader(Columns::All, None, REWRITE_BATCH_ROWS)?;
        for batch in reader {
            let batch = batch?;
            let ids = batch.column(0).as_string::<i32>();
            let keep: BooleanArray = ids.iter().map(|id| Some(!is_dropped(id))).collect();
            let kept = filter_record_batch(&batch, &keep)
                .map_err(|e| PluginError::new(ErrorCode::Internal, format!("{}: {e}", path.display())))?;
            writer.write(&kept)?;
        }
        let copy = writer.finish()?;
        if copy.rows != part.rows - dropped_rows {
            return Err(PluginError::corrupt(format!(
                "{}: copied {} rows, expected {}",
                path.display(),
                copy.rows,
                part.rows - dropped_rows
            )));
        }
        Ok(Some(copy))
    }

    /// Swaps in the manifest listing `parts`: the one step that makes the write visible. The
    /// `retired` files, no longer listed, are removed after it.
    fn commit(&mut self, mut parts: Vec<PartEntry>, retired: &[PathBuf]) -> Result<(), PluginError> {
        // Listing parts by number makes the read order the file-name order, which is the order
        // DuckDB and pyarrow read a directory in: untouched parts first, new ones and copies last.
        parts.sort_by_key(|p| parse_part_number(&p.file));
        sync_dir(&self.dir.path)?;
        let staged = self.dir.stage_manifest(&Manifest {
            collection: self.info.clone(),
            parts,
        })?;
        // From the rename on, the new parts may be listed: a failure must leave them in place
        // (at worst as orphans for the next writer), never remove them.
        self.created.clear();
        self.dir.commit_manifest(&staged)?;
        for path in retired {
            remove_quietly(path);
        }
        Ok(())
    }
}

impl Drop for Staging<'_> {
    fn drop(&mut self) {
        for path in &self.created {
            remove_quietly(path);
        }
    }
}

/// A load in progress. Dropping it without committing removes every file it created.
struct LoadSession<'a> {
    staging: Staging<'a>,
    /// Every id written in this load, with the index of the segment that holds its latest row.
    seen: HashMap<String, usize>,
    /// Closed segments, in order.
    segments: Vec<PartEntry>,
    /// The open segment, whose index is `segments.len()`.
    current: Option<PartWriter>,
    received: u64,
    batches: u64,
}

impl LoadSession<'_> {
    /// Validates one incoming batch and writes it, splitting segments where an id repeats.
    fn push(&mut self, batch: &RecordBatch) -> Result<(), PluginError> {
        self.batches += 1;
        let batch = self.validate(batch)?;
        let ids = batch.column(0).as_string::<i32>();
        let mut start = 0;
        for row in 0..batch.num_rows() {
            let id = ids.value(row);
            if self.seen.get(id) == Some(&self.segments.len()) {
                // The earlier row is in the open segment: close it, so this row replaces it.
                self.write(&batch.slice(start, row - start))?;
                self.close_segment()?;
                start = row;
            }
            self.seen.insert(id.to_owned(), self.segments.len());
        }
        self.write(&batch.slice(start, batch.num_rows() - start))?;
        self.received += batch.num_rows() as u64;
        Ok(())
    }

    /// Checks one batch against the collection and the metadata rules, naming the record at
    /// fault, and returns it in exactly the canonical schema.
    fn validate(&self, batch: &RecordBatch) -> Result<RecordBatch, PluginError> {
        let batch_number = self.batches;
        let dimension = check_schema(&batch.schema())
            .map_err(|e| PluginError::invalid_input(format!("batch {batch_number}: {}", e.message)))?;
        let ids = batch.column(0).as_string::<i32>();
        if let Some(row) = (0..batch.num_rows()).find(|&row| ids.is_null(row)) {
            return Err(PluginError::invalid_input(format!(
                "row {row} of batch {batch_number} has a null id"
            )));
        }
        let name = |row: usize| ids.value(row);
        if dimension != self.staging.info.dimension {
            let who = if batch.num_rows() > 0 {
                format!("record '{}'", name(0))
            } else {
                format!("batch {batch_number}")
            };
            return Err(PluginError::invalid_input(format!(
                "{who} has {dimension} dimensions, collection '{}' has {}",
                self.staging.dir.name, self.staging.info.dimension
            )));
        }
        let embeddings = batch.column(3).as_fixed_size_list();
        let values = embeddings.values().as_primitive::<Float32Type>();
        let metadata = batch.column(2).as_string::<i32>();
        let width = dimension as usize;
        for row in 0..batch.num_rows() {
            if embeddings.is_null(row) {
                return Err(PluginError::invalid_input(format!(
                    "record '{}' has a null embedding",
                    name(row)
                )));
            }
            if values.null_count() > 0 {
                let start = embeddings.value_offset(row) as usize;
                if (start..start + width).any(|i| values.is_null(i)) {
                    return Err(PluginError::invalid_input(format!(
                        "record '{}' has a null value in its embedding",
                        name(row)
                    )));
                }
            }
            if metadata.is_valid(row) {
                validate_metadata(metadata.value(row))
                    .map_err(|problem| PluginError::invalid_input(format!("record '{}': {problem}", name(row))))?;
            }
        }
        canonicalize(batch, dimension).map_err(|e| PluginError::invalid_input(format!("batch {batch_number}: {e}")))
    }

    /// Appends rows to the open segment, opening one if needed.
    fn write(&mut self, batch: &RecordBatch) -> Result<(), PluginError> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let writer = match &mut self.current {
            Some(writer) => writer,
            None => {
                let writer = self.staging.new_writer()?;
                self.current.insert(writer)
            }
        };
        writer.write(batch)
    }

    fn close_segment(&mut self) -> Result<(), PluginError> {
        if let Some(writer) = self.current.take() {
            self.segments.push(writer.finish()?);
        }
        Ok(())
    }

    /// Drops replaced rows, then swaps the manifest.
    fn commit(mut self, existing: Option<Manifest>) -> Result<LoadSummary, PluginError> {
        self.close_segment()?;
        let mut parts = Vec::new();
        // Files that stop being part of the collection once the new manifest is in place.
        let mut retired = Vec::new();
        let committed = existing.map(|m| m.parts).unwrap_or_default();
        let segments = std::mem::take(&mut self.segments).into_iter().enumerate();
        // A committed row is replaced by any row of this load with its id; a row of segment
        // `index`, when its id's latest row is in a later segment.
        let candidates = committed
            .into_iter()
            .map(|part| (part, None))
            .chain(segments.map(|(index, part)| (part, Some(index))));
        for (part, segment) in candidates {
            let seen = &self.seen;
            let outcome = if seen.is_empty() {
                Some(part.clone())
            } else {
                self.staging
                    .without(&part, |id| seen.get(id).is_some_and(|&latest| segment != Some(latest)))?
            };
            if outcome.as_ref() != Some(&part) {
                retired.push(self.staging.dir.part_path(&part.file));
            }
            parts.extend(outcome);
        }
        self.staging.commit(parts, &retired)?;
        Ok(LoadSummary {
            records_written: self.received,
        })
    }
}

impl Drop for LoadSession<'_> {
    fn drop(&mut self) {
        // Closes the open file; the staging, dropped after this, removes it and the others.
        if let Some(writer) = self.current.take() {
            writer.abandon();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::builder::{FixedSizeListBuilder, Float32Builder, StringBuilder};
    use arrow_array::{ArrayRef, StringArray};
    use ragged_plugin_api::arrow::{canonical_schema, records_to_batch};
    use ragged_plugin_api::{Backend, DistanceMetric, Record};

    use super::*;
    use crate::test_support::{batch, contents, info, load, load_batches, record, schema_with_nullable_columns, store};

    fn pairs(expected: &[(&str, u32)]) -> Vec<(String, u32)> {
        expected.iter().map(|(id, v)| ((*id).to_owned(), *v)).collect()
    }

    /// The names of the files in the collection directory other than the manifest and lock.
    fn part_files(store: &crate::ParquetStore) -> Vec<String> {
        let dir = CollectionDir::new(&store.root, "docs").expect("valid name");
        dir.file_names()
            .expect("lists")
            .into_iter()
            .filter(|n| n != "_collection.json" && n != ".lock")
            .collect()
    }

    fn check_refused(batches: Vec<RecordBatch>, schema: Arc<arrow_schema::Schema>, code: ErrorCode, message: &str) {
        let (_root, store) = store();
        load(&store, LoadMode::Create, &[&[("a", 1), ("b", 1)]]).expect("first load");
        let before = part_files(&store);
        let error = load_batches(&store, LoadMode::Upsert, schema, batches).expect_err("must be refused");
        assert_eq!(error.code, code, "{error}");
        assert_eq!(error.message, message);
        assert_eq!(
            contents(&store),
            pairs(&[("a", 1), ("b", 1)]),
            "nothing may be committed"
        );
        assert_eq!(part_files(&store), before, "no file may be left behind");
    }

    #[test]
    fn replaying_a_batch_replaces_instead_of_duplicating() {
        let (_root, store) = store();
        assert_eq!(
            load(&store, LoadMode::Create, &[&[("a", 1), ("b", 1), ("c", 1)]]),
            Ok(3)
        );
        assert_eq!(load(&store, LoadMode::Upsert, &[&[("b", 2), ("d", 2)]]), Ok(2));
        assert_eq!(load(&store, LoadMode::Append, &[&[("b", 3), ("d", 3)]]), Ok(2));
        // Parts are read by number: the copy of part 1 without b (part 3), then the last load's.
        assert_eq!(contents(&store), pairs(&[("a", 1), ("c", 1), ("b", 3), ("d", 3)]));
        assert_eq!(store.count("docs"), Ok(4));
        // The first part was copied without b; the second part held only replaced rows.
        assert_eq!(part_files(&store), vec!["part-000003.parquet", "part-000004.parquet"]);
    }

    #[test]
    fn an_id_repeated_within_one_load_keeps_its_last_row() {
        let (_root, store) = store();
        let written = load(
            &store,
            LoadMode::Create,
            &[&[("a", 1), ("b", 1), ("a", 2)], &[("c", 1), ("b", 2)], &[("a", 3)]],
        );
        assert_eq!(written, Ok(6));
        // Segments [a1 b1] [a2 c1 b2] [a3]: the first is dropped, the second copied without a2
        // (as part 4, so it is read last).
        assert_eq!(contents(&store), pairs(&[("a", 3), ("c", 1), ("b", 2)]));
        assert_eq!(part_files(&store), vec!["part-000003.parquet", "part-000004.parquet"]);
        assert_eq!(store.count("docs"), Ok(3));
    }

    #[test]
    fn modes_check_whether_the_collection_exists() {
        let (root, store) = store();
        let error = load(&store, LoadMode::Append, &[&[("a", 1)]]).expect_err("missing");
        assert_eq!(error.code, ErrorCode::NotFound);
        assert_eq!(
            error.message,
            format!("no collection 'docs' in {} to append to", root.path().display())
        );
        assert!(!root.path().join("docs").exists(), "a refused append creates nothing");
        load(&store, LoadMode::Create, &[&[("a", 1)]]).expect("creates");
        let error = load(&store, LoadMode::Create, &[&[("a", 2)]]).expect_err("exists");
        assert_eq!(error.code, ErrorCode::AlreadyExists);
        assert_eq!(
            error.message,
            format!("collection 'docs' already exists in {}", root.path().display())
        );
        assert_eq!(contents(&store), pairs(&[("a", 1)]));
    }

    #[test]
    fn an_empty_create_makes_an_empty_collection() {
        let (_root, store) = store();
        assert_eq!(load(&store, LoadMode::Create, &[]), Ok(0));
        assert_eq!(store.list_collections(), Ok(vec!["docs".to_owned()]));
        assert_eq!(store.count("docs"), Ok(0));
        assert!(part_files(&store).is_empty());
    }

    #[test]
    fn a_different_dimension_or_metric_is_refused_naming_both() {
        let (_root, store) = store();
        load(&store, LoadMode::Create, &[&[("a", 1)]]).expect("creates");
        let request = LoadRequest {
            collection: info("docs", 2, DistanceMetric::Cosine),
            mode: LoadMode::Upsert,
        };
        let stream = BatchStream::from_batches(canonical_schema(2), vec![batch(&[record("a", 2)])]);
        let error = store.load(&request, stream).expect_err("metric differs");
        assert_eq!(error.code, ErrorCode::InvalidInput);
        assert_eq!(
            error.message,
            "collection 'docs' has dimension 2 and metric l2, the load has dimension 2 and metric cosine"
        );
    }

    #[test]
    fn a_wrong_dimension_is_refused_naming_the_record() {
        let records = vec![Record {
            id: "x".to_owned(),
            document: None,
            metadata: None,
            embedding: vec![1.0, 2.0, 3.0],
        }];
        let batch = records_to_batch(&records, 3).expect("valid records");
        check_refused(
            vec![batch],
            canonical_schema(3),
            ErrorCode::InvalidInput,
            "record 'x' has 3 dimensions, collection 'docs' has 2",
        );
    }

    #[test]
    fn invalid_metadata_is_refused_naming_the_record() {
        let mut bad = record("y", 2);
        bad.metadata = Some(r#"{"k": {"nested": 1}}"#.to_owned());
        check_refused(
            vec![batch(&[record("x", 2)]), batch(&[bad])],
            canonical_schema(2),
            ErrorCode::InvalidInput,
            "record 'y': metadata key 'k' holds an object; only scalars and arrays are allowed",
        );
    }

    fn raw_batch(ids: &[Option<&str>], embeddings: &[Option<[Option<f32>; 2]>]) -> RecordBatch {
        let mut values = FixedSizeListBuilder::new(Float32Builder::new(), 2).with_field(Arc::new(
            arrow_schema::Field::new("item", arrow_schema::DataType::Float32, true),
        ));
        for embedding in embeddings {
            match embedding {
                Some(pair) => {
                    for value in pair {
                        values.values().append_option(*value);
                    }
                    values.append(true);
                }
                None => {
                    values.values().append_slice(&[0.0, 0.0]);
                    values.append(false);
                }
            }
        }
        let mut nothing = StringBuilder::new();
        for _ in ids {
            nothing.append_null();
        }
        let nothing: ArrayRef = Arc::new(nothing.finish());
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(ids.to_vec())),
            nothing.clone(),
            nothing,
            Arc::new(values.finish()),
        ];
        RecordBatch::try_new(schema_with_nullable_columns(2), columns).expect("a batch")
    }

    #[test]
    fn null_ids_and_null_embeddings_are_refused() {
        let one = Some([Some(1.0), Some(2.0)]);
        check_refused(
            vec![
                raw_batch(&[Some("p")], &[one]),
                raw_batch(&[Some("q"), None], &[one, one]),
            ],
            schema_with_nullable_columns(2),
            ErrorCode::InvalidInput,
            "row 1 of batch 2 has a null id",
        );
        check_refused(
            vec![raw_batch(&[Some("p"), Some("q")], &[one, None])],
            schema_with_nullable_columns(2),
            ErrorCode::InvalidInput,
            "record 'q' has a null embedding",
        );
        check_refused(
            vec![raw_batch(&[Some("p")], &[Some([Some(1.0), None])])],
            schema_with_nullable_columns(2),
            ErrorCode::InvalidInput,
            "record 'p' has a null value in its embedding",
        );
    }

    #[test]
    fn a_failed_load_after_replacements_keeps_the_previous_version() {
        let (_root, store) = store();
        load(&store, LoadMode::Create, &[&[("a", 1), ("b", 1)]]).expect("creates");
        let mut bad = record("z", 9);
        bad.metadata = Some("[]".to_owned());
        // The first batch replaces a and would rewrite part 1; the second batch fails.
        let batches = vec![batch(&[record("a", 2), record("a", 3)]), batch(&[bad])];
        let error = load_batches(&store, LoadMode::Upsert, canonical_schema(2), batches).expect_err("refused");
        assert_eq!(error.message, "record 'z': metadata must be a JSON object");
        assert_eq!(contents(&store), pairs(&[("a", 1), ("b", 1)]));
        assert_eq!(part_files(&store), vec!["part-000001.parquet"]);
    }

    fn ids(ids: &[&str]) -> Vec<String> {
        ids.iter().map(|id| (*id).to_owned()).collect()
    }

    #[test]
    fn delete_rewrites_only_the_parts_holding_a_deleted_id() {
        let (_root, store) = store();
        load(&store, LoadMode::Create, &[&[("a", 1), ("b", 1)]]).expect("creates");
        load(&store, LoadMode::Append, &[&[("c", 1)]]).expect("appends");
        load(&store, LoadMode::Append, &[&[("d", 1), ("e", 1)]]).expect("appends");
        assert_eq!(store.delete("docs", &ids(&["b", "c", "zz", "b"])), Ok(2));
        // Part 3 is untouched and keeps its place, part 1 was copied without b (as part 4, so
        // it is read last), part 2 held only c.
        assert_eq!(contents(&store), pairs(&[("d", 1), ("e", 1), ("a", 1)]));
        assert_eq!(part_files(&store), vec!["part-000003.parquet", "part-000004.parquet"]);
        assert_eq!(store.count("docs"), Ok(3));

        let manifest = CollectionDir::new(&store.root, "docs")
            .expect("valid name")
            .manifest_path();
        let committed = fs::read(&manifest).expect("reads");
        assert_eq!(store.delete("docs", &ids(&["b", "c"])), Ok(0));
        assert_eq!(store.delete("docs", &[]), Ok(0));
        assert_eq!(
            fs::read(&manifest).expect("reads"),
            committed,
            "nothing to delete, nothing written"
        );
        assert_eq!(part_files(&store), vec!["part-000003.parquet", "part-000004.parquet"]);

        assert_eq!(load(&store, LoadMode::Upsert, &[&[("b", 2)]]), Ok(1));
        assert_eq!(contents(&store), pairs(&[("d", 1), ("e", 1), ("a", 1), ("b", 2)]));
    }

    #[test]
    fn deleting_every_record_leaves_an_empty_collection() {
        let (_root, store) = store();
        load(&store, LoadMode::Create, &[&[("a", 1), ("b", 1)]]).expect("creates");
        load(&store, LoadMode::Append, &[&[("c", 1)]]).expect("appends");
        assert_eq!(store.delete("docs", &ids(&["c", "a", "b"])), Ok(3));
        assert_eq!(store.list_collections(), Ok(vec!["docs".to_owned()]));
        assert_eq!(store.describe("docs").map(|info| info.count), Ok(0));
        assert!(contents(&store).is_empty());
        assert!(part_files(&store).is_empty());
        assert_eq!(load(&store, LoadMode::Append, &[&[("a", 2)]]), Ok(1));
        assert_eq!(contents(&store), pairs(&[("a", 2)]));
    }

    #[test]
    fn deleting_from_a_missing_collection_is_not_found_and_creates_nothing() {
        let (root, store) = store();
        let error = store.delete("docs", &ids(&["a"])).expect_err("missing");
        assert_eq!(error.code, ErrorCode::NotFound);
        assert_eq!(
            error.message,
            format!("no collection 'docs' in {}", root.path().display())
        );
        assert!(!root.path().join("docs").exists());
    }

    #[test]
    fn a_failed_delete_keeps_the_previous_version() {
        let (_root, store) = store();
        load(&store, LoadMode::Create, &[&[("a", 1), ("b", 1)]]).expect("creates");
        load(&store, LoadMode::Append, &[&[("c", 1), ("d", 1)]]).expect("appends");
        let manifest = CollectionDir::new(&store.root, "docs")
            .expect("valid name")
            .manifest_path();
        let committed = fs::read(&manifest).expect("reads");
        // Part 1 is copied without a before part 2, truncated, fails to open.
        let second = store.root.join("docs").join("part-000002.parquet");
        let intact = fs::read(&second).expect("reads");
        fs::write(&second, &intact[..intact.len() - 10]).expect("truncates");
        let error = store.delete("docs", &ids(&["a", "c"])).expect_err("a damaged part");
        assert_eq!(error.code, ErrorCode::Corrupt, "{error}");
        assert_eq!(fs::read(&manifest).expect("reads"), committed);
        assert_eq!(part_files(&store), vec!["part-000001.parquet", "part-000002.parquet"]);
        fs::write(&second, &intact).expect("restores");
        assert_eq!(contents(&store), pairs(&[("a", 1), ("b", 1), ("c", 1), ("d", 1)]));
        assert_eq!(store.delete("docs", &ids(&["a", "c"])), Ok(2));
        assert_eq!(contents(&store), pairs(&[("b", 1), ("d", 1)]));
    }

    #[test]
    fn the_next_writer_removes_what_a_crashed_one_left() {
        let (_root, store) = store();
        load(&store, LoadMode::Create, &[&[("a", 1)]]).expect("creates");
        let dir = CollectionDir::new(&store.root, "docs").expect("valid name");
        for orphan in [
            "part-000009.parquet",
            ".part-000010.parquet.partial",
            "._collection.json.tmp",
        ] {
            fs::write(dir.path.join(orphan), b"half written").expect("write");
        }
        assert_eq!(contents(&store), pairs(&[("a", 1)]), "readers ignore orphans");
        load(&store, LoadMode::Append, &[&[("b", 1)]]).expect("appends");
        assert_eq!(part_files(&store), vec!["part-000001.parquet", "part-000002.parquet"]);
        assert_eq!(contents(&store), pairs(&[("a", 1), ("b", 1)]));
    }

    #[test]
    fn the_description_is_the_last_load_s() {
        let (_root, store) = store();
        load(&store, LoadMode::Create, &[&[("a", 1)]]).expect("creates");
        let mut described = info("docs", 2, DistanceMetric::L2);
        described.embedding_model = Some("model-x".to_owned());
        described.metadata.insert("owner".to_owned(), serde_json::json!(2.0));
        let request = LoadRequest {
            collection: described.clone(),
            mode: LoadMode::Upsert,
        };
        let stream = BatchStream::from_batches(canonical_schema(2), vec![]);
        store.load(&request, stream).expect("loads nothing");
        let got = store.describe("docs").expect("describes");
        assert_eq!(got, CollectionInfo { count: 1, ..described });
        assert_eq!(serde_json::to_string(&got.metadata).expect("json"), r#"{"owner":2.0}"#);
    }
}
