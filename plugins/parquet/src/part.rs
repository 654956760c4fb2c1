//! One part file: writing canonical batches to a new Parquet file, and opening an existing one
//! with the footer checks that turn a damaged file into a `Corrupt` error naming it.

use std::fs::{self, File};
use std::io::ErrorKind;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::{Array, ArrayRef, FixedSizeListArray, RecordBatch};
use arrow_schema::{ArrowError, DataType};
use parquet::arrow::ArrowWriter;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder, RowSelection,
    RowSelector,
};
use parquet::basic::{Compression as Codec, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;
use ragged_plugin_api::arrow::{canonical_schema, check_schema, columns};
use ragged_plugin_api::{CollectionInfo, ErrorCode, PluginError};

use crate::layout::{CollectionDir, PartEntry, info_to_json, part_file_name, remove_quietly};

/// The key-value metadata entry that makes a lone part file self-describing: the collection's
/// description as JSON (the same object as in `_collection.json`).
pub(crate) const COLLECTION_KEY: &str = "ragged.collection";

/// A row group is closed once its encoded size reaches this, so a writer holds about this much
/// however large the incoming batches are.
const ROW_GROUP_BYTES: usize = 32 * 1024 * 1024;

/// How part files are compressed (the `compression` store option).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Compression {
    Zstd,
    Snappy,
    None,
}

impl Compression {
    /// The option values, as the error for an unknown one lists them.
    pub const NAMES: &'static str = "zstd, snappy or none";

    pub fn parse(value: &str) -> Option<Compression> {
        match value {
            "zstd" => Some(Compression::Zstd),
            "snappy" => Some(Compression::Snappy),
            "none" => Some(Compression::None),
            _ => None,
        }
    }

    fn codec(self) -> Codec {
        match self {
            Compression::Zstd => Codec::ZSTD(ZstdLevel::default()),
            Compression::Snappy => Codec::SNAPPY,
            Compression::None => Codec::UNCOMPRESSED,
        }
    }
}

/// Which columns a read returns. Projections skip the bytes of the columns left out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Columns {
    /// The canonical schema.
    All,
    /// `id` only.
    Ids,
    /// `id` and `embedding`, in that order.
    IdsAndEmbeddings,
}

/// A part file being written. It lives under a hidden `.partial` name until [`PartWriter::finish`]
/// has synced it and renamed it to its part name.
pub(crate) struct PartWriter {
    file_name: String,
    partial_path: PathBuf,
    final_path: PathBuf,
    writer: ArrowWriter<File>,
    rows: u64,
    row_group_bytes: usize,
}

impl PartWriter {
    /// Creates part number `number` of the collection in `dir`, described by `info`.
    pub fn create(
        dir: &CollectionDir,
        number: u64,
        info: &CollectionInfo,
        compression: Compression,
    ) -> Result<PartWriter, PluginError> {
        let file_name = part_file_name(number);
        let partial_path = dir.partial_path(&file_name);
        let final_path = dir.part_path(&file_name);
        let description = info_to_json(info)?.to_string();
        let properties = WriterProperties::builder()
            .set_compression(compression.codec())
            // Ids, documents and vectors are nearly all distinct, so dictionaries only cost a
            // fallback; metadata objects often repeat.
            .set_dictionary_enabled(false)
            .set_column_dictionary_enabled(ColumnPath::from(columns::METADATA), true)
            .set_key_value_metadata(Some(vec![KeyValue::new(COLLECTION_KEY.to_owned(), description)]))
            .build();
        let file = File::create(&partial_path).map_err(|e| PluginError::io(&partial_path, &e))?;
        let writer = ArrowWriter::try_new(file, canonical_schema(info.dimension), Some(properties))
            .map_err(|e| write_error(&partial_path, e))?;
        Ok(PartWriter {
            file_name,
            partial_path,
            final_path,
            writer,
            rows: 0,
            row_group_bytes: ROW_GROUP_BYTES,
        })
    }

    /// Closes row groups at `bytes` instead of the default, so tests can make many small ones.
    #[cfg(test)]
    pub fn set_row_group_bytes(&mut self, bytes: usize) {
        self.row_group_bytes = bytes;
    }

    /// The paths this writer may leave behind if the load fails: the caller removes them.
    pub fn paths(&self) -> [PathBuf; 2] {
        [self.partial_path.clone(), self.final_path.clone()]
    }

    /// Appends a canonical batch.
    pub fn write(&mut self, batch: &RecordBatch) -> Result<(), PluginError> {
        self.writer
            .write(batch)
            .map_err(|e| write_error(&self.partial_path, e))?;
        self.rows += batch.num_rows() as u64;
        if self.writer.in_progress_size() >= self.row_group_bytes {
            self.writer.flush().map_err(|e| write_error(&self.partial_path, e))?;
        }
        Ok(())
    }

    /// Writes the footer, syncs the file and gives it its part name. The directory entry still
    /// needs a [`crate::layout::sync_dir`] before the manifest may list it.
    pub fn finish(self) -> Result<PartEntry, PluginError> {
        let file = self
            .writer
            .into_inner()
            .map_err(|e| write_error(&self.partial_path, e))?;
        file.sync_all().map_err(|e| PluginError::io(&self.partial_path, &e))?;
        drop(file);
        fs::rename(&self.partial_path, &self.final_path).map_err(|e| PluginError::io(&self.final_path, &e))?;
        Ok(PartEntry {
            file: self.file_name,
            rows: self.rows,
        })
    }

    /// Gives up on the file.
    pub fn abandon(self) {
        drop(self.writer);
        remove_quietly(&self.partial_path);
    }
}

fn write_error(path: &Path, error: parquet::errors::ParquetError) -> PluginError {
    PluginError::new(
        ErrorCode::Io,
        format!("{}: cannot write parquet: {error}", path.display()),
    )
}

/// A part file whose footer has been read and checked against the manifest.
pub(crate) struct OpenPart {
    path: PathBuf,
    file: File,
    metadata: ArrowReaderMetadata,
    dimension: u32,
}

impl OpenPart {
    /// Opens the part at `path`, checking that it is Parquet in the canonical schema with
    /// `dimension`-long embeddings and `expected_rows` rows, as the manifest says.
    pub fn open(path: &Path, expected_rows: u64, dimension: u32) -> Result<OpenPart, PluginError> {
        let bad = |problem: String| PluginError::corrupt(format!("{}: {problem}", path.display()));
        let file = match File::open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Err(bad(
                    "the part is listed in _collection.json but the file is missing".to_owned()
                ));
            }
            Err(e) => return Err(PluginError::io(path, &e)),
        };
        let metadata = ArrowReaderMetadata::load(&file, ArrowReaderOptions::new())
            .map_err(|e| bad(format!("not a readable parquet file: {e}")))?;
        let found = check_schema(metadata.schema()).map_err(|e| bad(e.message))?;
        if found != dimension {
            return Err(bad(format!(
                "embeddings have {found} dimensions, _collection.json says {dimension}"
            )));
        }
        let rows = metadata.metadata().file_metadata().num_rows();
        if u64::try_from(rows).ok() != Some(expected_rows) {
            return Err(bad(format!(
                "the file has {rows} rows, _collection.json says {expected_rows}"
            )));
        }
        Ok(OpenPart {
            path: path.to_owned(),
            file,
            metadata,
            dimension,
        })
    }

    /// The compressed bytes of the embedding column chunks and of the other column chunks.
    pub fn column_bytes(&self) -> (u64, u64) {
        let (mut vectors, mut documents) = (0u64, 0u64);
        for row_group in self.metadata.metadata().row_groups() {
            for column in row_group.columns() {
                let bytes = u64::try_from(column.compressed_size()).unwrap_or(0);
                if column.column_path().parts().first().map(String::as_str) == Some(columns::EMBEDDING) {
                    vectors += bytes;
                } else {
                    documents += bytes;
                }
            }
        }
        (vectors, documents)
    }

    /// A reader of `columns` over the rows in `ranges` (sorted, disjoint, file-relative), or over
    /// every row when `ranges` is `None`. Whole row groups outside the ranges are not read.
    pub fn reader(
        self,
        columns: Columns,
        ranges: Option<&[Range<u64>]>,
        batch_size: usize,
    ) -> Result<PartReader, PluginError> {
        let parquet_schema = self.metadata.parquet_schema();
        let mask = match columns {
            Columns::All => ProjectionMask::all(),
            Columns::Ids => ProjectionMask::roots(parquet_schema, [0]),
            Columns::IdsAndEmbeddings => ProjectionMask::roots(parquet_schema, [0, 3]),
        };
        let row_group_rows: Vec<u64> = self
            .metadata
            .metadata()
            .row_groups()
            .iter()
            .map(|g| u64::try_from(g.num_rows()).unwrap_or(0))
            .collect();
        let mut builder = ParquetRecordBatchReaderBuilder::new_with_metadata(self.file, self.metadata)
            .with_projection(mask)
            .with_batch_size(batch_size.max(1));
        if let Some(ranges) = ranges {
            let (groups, selection) = plan_rows(&row_group_rows, ranges);
            builder = builder.with_row_groups(groups).with_row_selection(selection);
        }
        let inner = builder
            .build()
            .map_err(|e| PluginError::corrupt(format!("{}: not a readable parquet file: {e}", self.path.display())))?;
        Ok(PartReader {
            path: self.path,
            inner,
            columns,
            dimension: self.dimension,
        })
    }
}

/// Batches of one part, in file order; damage met on the way becomes a `Corrupt` error naming
/// the file.
pub(crate) struct PartReader {
    path: PathBuf,
    inner: ParquetRecordBatchReader,
    columns: Columns,
    dimension: u32,
}

impl Iterator for PartReader {
    type Item = Result<RecordBatch, PluginError>;

    fn next(&mut self) -> Option<Self::Item> {
        let batch = self.inner.next()?;
        let bad =
            |e: ArrowError| PluginError::corrupt(format!("{}: unreadable parquet data: {e}", self.path.display()));
        Some(batch.map_err(bad).and_then(|batch| match self.columns {
            Columns::All => canonicalize(&batch, self.dimension).map_err(bad),
            Columns::Ids | Columns::IdsAndEmbeddings => Ok(batch),
        }))
    }
}

/// Rebuilds a batch whose columns already have the canonical types with exactly the canonical
/// schema (field names, nullability, the embedding item field), so every batch this plugin writes
/// or streams is the same whoever produced it.
pub(crate) fn canonicalize(batch: &RecordBatch, dimension: u32) -> Result<RecordBatch, ArrowError> {
    let schema = canonical_schema(dimension);
    let DataType::FixedSizeList(item, _) = schema.field(3).data_type() else {
        return Err(ArrowError::SchemaError(
            "the canonical embedding column is not a fixed-size list".to_owned(),
        ));
    };
    let Some(embeddings) = batch.column(3).as_fixed_size_list_opt() else {
        return Err(ArrowError::SchemaError(
            "column 'embedding' is not a fixed-size list".to_owned(),
        ));
    };
    let embeddings = FixedSizeListArray::try_new(
        item.clone(),
        dimension as i32,
        embeddings.values().clone(),
        embeddings.nulls().cloned(),
    )?;
    let columns: Vec<ArrayRef> = vec![
        batch.column(0).clone(),
        batch.column(1).clone(),
        batch.column(2).clone(),
        Arc::new(embeddings),
    ];
    RecordBatch::try_new(schema, columns)
}

/// The row groups that hold any row of `ranges`, and the selection of those rows within the
/// chosen groups laid end to end (which is how the Parquet reader counts them).
fn plan_rows(row_group_rows: &[u64], ranges: &[Range<u64>]) -> (Vec<usize>, RowSelection) {
    let mut groups = Vec::new();
    let mut selectors = Vec::new();
    let mut first_range = 0;
    let mut group_start = 0u64;
    for (group, &rows) in row_group_rows.iter().enumerate() {
        let group_end = group_start + rows;
        while first_range < ranges.len() && ranges[first_range].end <= group_start {
            first_range += 1;
        }
        let mut position = group_start;
        let mut in_group = Vec::new();
        for range in ranges[first_range..].iter().take_while(|r| r.start < group_end) {
            let start = range.start.max(group_start);
            let end = range.end.min(group_end);
            if start >= end {
                continue;
            }
            if start > position {
                in_group.push(RowSelector::skip((start - position) as usize));
            }
            in_group.push(RowSelector::select((end - start) as usize));
            position = end;
        }
        if !in_group.is_empty() {
            if position < group_end {
                in_group.push(RowSelector::skip((group_end - position) as usize));
            }
            groups.push(group);
            selectors.extend(in_group);
        }
        group_start = group_end;
    }
    (groups, RowSelection::from(selectors))
}

/// Collapses sorted, distinct row numbers into ranges of consecutive rows.
pub(crate) fn rows_to_ranges(rows: &[u64]) -> Vec<Range<u64>> {
    let mut ranges: Vec<Range<u64>> = Vec::new();
    for &row in rows {
        match ranges.last_mut() {
            Some(last) if last.end == row => last.end += 1,
            _ => ranges.push(row..row + 1),
        }
    }
    ranges
}

#[cfg(test)]
// One range in a slice is what these tests mean, not a typo for a slice of its elements.
#[allow(clippy::single_range_in_vec_init)]
mod tests {
    use arrow_array::StringArray;
    use ragged_plugin_api::arrow::{batch_to_records, records_to_batch};
    use ragged_plugin_api::{DistanceMetric, Record};

    use super::*;

    fn info(dimension: u32) -> CollectionInfo {
        CollectionInfo {
            name: "docs".to_owned(),
            dimension,
            metric: DistanceMetric::L2,
            count: 0,
            embedding_model: None,
            index_params: None,
            metadata: serde_json::Map::new(),
            extras: serde_json::Map::new(),
        }
    }

    fn records(range: Range<u32>) -> Vec<Record> {
        range
            .map(|i| Record {
                id: format!("r{i:03}"),
                document: Some(format!("doc {i}")),
                metadata: Some(format!("{{\"i\":{i}}}")),
                embedding: vec![i as f32, -(i as f32)],
            })
            .collect()
    }

    /// Writes `batches` (record ranges) as part 1 of a collection in a temp dir, one row group
    /// per batch.
    fn write_part(batches: &[Range<u32>], compression: Compression) -> (tempfile::TempDir, CollectionDir, PartEntry) {
        let root = tempfile::tempdir().expect("temp dir");
        let dir = CollectionDir::new(root.path(), "docs").expect("valid name");
        fs::create_dir(&dir.path).expect("mkdir");
        let mut writer = PartWriter::create(&dir, 1, &info(2), compression).expect("creates");
        writer.set_row_group_bytes(0);
        for range in batches {
            let batch = records_to_batch(&records(range.clone()), 2).expect("valid records");
            writer.write(&batch).expect("writes");
        }
        let entry = writer.finish().expect("finishes");
        (root, dir, entry)
    }

    fn read_ids(dir: &CollectionDir, entry: &PartEntry, ranges: Option<&[Range<u64>]>) -> Vec<String> {
        let part = OpenPart::open(&dir.part_path(&entry.file), entry.rows, 2).expect("opens");
        let mut ids = Vec::new();
        for batch in part.reader(Columns::All, ranges, 3).expect("reader") {
            ids.extend(
                batch_to_records(&batch.expect("batch"))
                    .expect("canonical")
                    .into_iter()
                    .map(|r| r.id),
            );
        }
        ids
    }

    #[test]
    fn a_finished_part_has_its_name_its_rows_and_a_self_description() {
        for compression in [Compression::Zstd, Compression::Snappy, Compression::None] {
            let (_root, dir, entry) = write_part(&[0..4, 4..6], compression);
            assert_eq!(
                entry,
                PartEntry {
                    file: "part-000001.parquet".to_owned(),
                    rows: 6
                }
            );
            assert_eq!(dir.file_names().expect("lists"), vec!["part-000001.parquet"]);
            let file = File::open(dir.part_path(&entry.file)).expect("opens");
            let metadata = ArrowReaderMetadata::load(&file, ArrowReaderOptions::new()).expect("footer");
            let kv = metadata
                .metadata()
                .file_metadata()
                .key_value_metadata()
                .expect("kv metadata");
            let description = kv
                .iter()
                .find(|kv| kv.key == COLLECTION_KEY)
                .and_then(|kv| kv.value.clone())
                .expect("ragged.collection entry");
            let described: CollectionInfo = serde_json::from_str(&description).expect("a collection description");
            assert_eq!(described.dimension, 2);
            assert!(!description.contains("count"), "{description}");
            assert_eq!(read_ids(&dir, &entry, None).len(), 6);
        }
    }

    #[test]
    fn ranges_select_exactly_their_rows_across_row_groups() {
        let (_root, dir, entry) = write_part(&[0..4, 4..6, 6..10], Compression::Zstd);
        let part = OpenPart::open(&dir.part_path(&entry.file), 10, 2).expect("opens");
        let groups: Vec<i64> = part
            .metadata
            .metadata()
            .row_groups()
            .iter()
            .map(|g| g.num_rows())
            .collect();
        assert_eq!(
            groups,
            vec![4, 2, 4],
            "one row group per batch, so ranges straddle groups"
        );

        let ids = |ranges: &[Range<u64>]| read_ids(&dir, &entry, Some(ranges));
        assert_eq!(ids(&[3..5, 8..10]), vec!["r003", "r004", "r008", "r009"]);
        assert_eq!(ids(&[]), Vec::<String>::new());
        assert_eq!(ids(&[0..10]).len(), 10);
    }

    #[test]
    fn plan_rows_skips_untouched_groups_and_rebases_the_selection() {
        let (groups, selection) = plan_rows(&[4, 2, 4], &[3..5, 8..10]);
        assert_eq!(groups, vec![0, 1, 2]);
        let selectors: Vec<RowSelector> = selection.into();
        assert_eq!(
            selectors,
            vec![
                RowSelector::skip(3),
                RowSelector::select(2),
                RowSelector::skip(3),
                RowSelector::select(2),
            ]
        );
        let (groups, selection) = plan_rows(&[4, 2, 4], &[6..7]);
        assert_eq!(groups, vec![2]);
        assert_eq!(
            Vec::<RowSelector>::from(selection),
            vec![RowSelector::select(1), RowSelector::skip(3)]
        );
        let (groups, _) = plan_rows(&[4, 2, 4], &[]);
        assert!(groups.is_empty());
    }

    #[test]
    fn rows_collapse_into_ranges() {
        assert_eq!(rows_to_ranges(&[1, 2, 3, 7, 9, 10]), vec![1..4, 7..8, 9..11]);
        assert_eq!(rows_to_ranges(&[]), Vec::<Range<u64>>::new());
    }

    fn check_open(bytes: Option<&[u8]>, rows: u64, dimension: u32, fragment: &str) {
        let (_root, dir, entry) = write_part(&[0..6], Compression::Zstd);
        let path = dir.part_path(&entry.file);
        match bytes {
            Some(bytes) => fs::write(&path, bytes).expect("overwrite"),
            None => fs::remove_file(&path).expect("remove"),
        }
        let error = OpenPart::open(&path, rows, dimension)
            .err()
            .expect("a damaged part must not open");
        assert_eq!(error.code, ErrorCode::Corrupt, "{error}");
        assert!(
            error.message.starts_with(&format!("{}: ", path.display())),
            "{}",
            error.message
        );
        assert!(error.message.contains(fragment), "{}", error.message);
    }

    #[test]
    fn damaged_or_mismatched_parts_are_corrupt_and_name_the_file() {
        check_open(Some(b""), 6, 2, "not a readable parquet file");
        check_open(Some(b"PAR1 this is not parquet"), 6, 2, "not a readable parquet file");
        check_open(None, 6, 2, "listed in _collection.json but the file is missing");
        let (_root, dir, entry) = write_part(&[0..6], Compression::Zstd);
        let path = dir.part_path(&entry.file);
        let full = fs::read(&path).expect("reads");
        check_open(Some(&full[..full.len() / 2]), 6, 2, "not a readable parquet file");
        check_open(Some(&full), 7, 2, "the file has 6 rows, _collection.json says 7");
        check_open(
            Some(&full),
            6,
            3,
            "embeddings have 2 dimensions, _collection.json says 3",
        );
    }

    #[test]
    fn column_bytes_split_vectors_from_the_rest() {
        let (_root, dir, entry) = write_part(&[0..6], Compression::None);
        let part = OpenPart::open(&dir.part_path(&entry.file), 6, 2).expect("opens");
        let (vectors, documents) = part.column_bytes();
        // Six uncompressed 2-float vectors are 48 bytes of values plus levels and page headers.
        assert!(vectors >= 48, "{vectors}");
        assert!(documents >= 6 * ("r000".len() + "doc 0".len()) as u64, "{documents}");
        let file_size = fs::metadata(dir.part_path(&entry.file)).expect("stat").len();
        assert!(vectors + documents < file_size);
    }

    #[test]
    fn projections_return_only_their_columns() {
        let (_root, dir, entry) = write_part(&[0..3], Compression::Zstd);
        let open = || OpenPart::open(&dir.part_path(&entry.file), 3, 2).expect("opens");
        let mut ids = open().reader(Columns::Ids, None, 10).expect("reader");
        let batch = ids.next().expect("a batch").expect("readable");
        assert_eq!(batch.num_columns(), 1);
        let expected = StringArray::from(vec!["r000", "r001", "r002"]);
        assert_eq!(batch.column(0).as_string::<i32>(), &expected);
        let mut both = open().reader(Columns::IdsAndEmbeddings, None, 10).expect("reader");
        let batch = both.next().expect("a batch").expect("readable");
        let names: Vec<&str> = batch.schema_ref().fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(names, vec!["id", "embedding"]);
    }
}
