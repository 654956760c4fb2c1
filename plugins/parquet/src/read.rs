//! Reading records back: the extract, sample and fetch streams.
//!
//! Every stream reads parts in manifest order and opens a file only when the consumer reaches
//! it, so memory holds about one batch whatever the collection's size. Footers are all checked
//! before a stream is returned, so a damaged part fails the call with a `Corrupt` error instead
//! of surfacing half-way through as a stream error without its code.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::ops::Range;
use std::path::PathBuf;

use arrow_array::cast::AsArray;
use arrow_array::{RecordBatch, RecordBatchReader, UInt32Array};
use arrow_schema::{ArrowError, SchemaRef};
use arrow_select::concat::concat_batches;
use arrow_select::take::take_record_batch;
use ragged_plugin_api::arrow::canonical_schema;
use ragged_plugin_api::sampling::choose_positions;
use ragged_plugin_api::{BatchStream, ErrorCode, ExtractRequest, PluginError};

use crate::layout::{CollectionDir, Manifest};
use crate::part::{Columns, OpenPart, PartReader, rows_to_ranges};

/// Rows per batch of the sample and fetch streams, which have no batch size of their own.
pub(crate) const STREAM_BATCH_ROWS: usize = 1024;

/// A collection as one manifest describes it: readers work on this, so a writer committing in
/// the meantime never mixes two versions into one answer.
pub(crate) struct Snapshot {
    pub dir: CollectionDir,
    pub manifest: Manifest,
}

impl Snapshot {
    pub fn dimension(&self) -> u32 {
        self.manifest.collection.dimension
    }

    /// The listed parts: path and row count.
    pub fn parts(&self) -> Vec<(PathBuf, u64)> {
        self.manifest
            .parts
            .iter()
            .map(|p| (self.dir.part_path(&p.file), p.rows))
            .collect()
    }

    /// Opens part `index` and checks its footer against the manifest.
    pub fn open_part(&self, index: usize) -> Result<OpenPart, PluginError> {
        let part = &self.manifest.parts[index];
        OpenPart::open(&self.dir.part_path(&part.file), part.rows, self.dimension())
    }

    /// Reads every footer once, so damage is reported now.
    pub fn check_parts(&self) -> Result<(), PluginError> {
        (0..self.manifest.parts.len()).try_for_each(|i| self.open_part(i).map(drop))
    }
}

/// The records from `request.start` on, in manifest order then file order.
pub(crate) fn extract(snapshot: Snapshot, request: &ExtractRequest) -> Result<BatchStream, PluginError> {
    if request.batch_size == 0 {
        return Err(PluginError::invalid_input("batch_size must be at least 1"));
    }
    snapshot.check_parts()?;
    let mut skip = request.start;
    let mut plans = VecDeque::new();
    for (path, rows) in snapshot.parts() {
        // Whole parts are skipped by their row count without opening them.
        if skip >= rows {
            skip -= rows;
            continue;
        }
        let ranges = (skip > 0).then(|| vec![Range { start: skip, end: rows }]);
        plans.push_back(PartPlan { path, rows, ranges });
        skip = 0;
    }
    Ok(BatchStream::from_reader(SequentialReader::new(
        snapshot.dimension(),
        request.batch_size as usize,
        plans,
    )))
}

/// `n` records at distinct positions drawn with `seed`, in extract order; everything when `n`
/// reaches the count.
pub(crate) fn sample(snapshot: Snapshot, n: u64, seed: u64) -> Result<BatchStream, PluginError> {
    let count = snapshot.manifest.count();
    if n >= count {
        let request = ExtractRequest::records(STREAM_BATCH_ROWS as u32, 0);
        return extract(snapshot, &request);
    }
    snapshot.check_parts()?;
    let positions = choose_positions(count, n, seed);
    let mut plans = VecDeque::new();
    let mut next = 0;
    let mut part_start = 0u64;
    for (path, rows) in snapshot.parts() {
        let part_end = part_start + rows;
        let first = next;
        while next < positions.len() && positions[next] < part_end {
            next += 1;
        }
        if next > first {
            let local: Vec<u64> = positions[first..next].iter().map(|p| p - part_start).collect();
            plans.push_back(PartPlan {
                path,
                rows,
                ranges: Some(rows_to_ranges(&local)),
            });
        }
        part_start = part_end;
    }
    Ok(BatchStream::from_reader(SequentialReader::new(
        snapshot.dimension(),
        STREAM_BATCH_ROWS,
        plans,
    )))
}

/// The records with `ids`, in the order asked; absent ids are left out and an id asked twice is
/// returned once. The id columns are scanned first, then only the matching rows are read.
pub(crate) fn fetch(snapshot: Snapshot, ids: &[String]) -> Result<BatchStream, PluginError> {
    let mut wanted: HashMap<&str, usize> = HashMap::with_capacity(ids.len());
    for id in ids {
        let next = wanted.len();
        wanted.entry(id.as_str()).or_insert(next);
    }
    let mut locations: Vec<Option<(usize, u64)>> = vec![None; wanted.len()];
    if !wanted.is_empty() {
        for index in 0..snapshot.manifest.parts.len() {
            let mut row = 0u64;
            for batch in snapshot.open_part(index)?.reader(Columns::Ids, None, 8192)? {
                let batch = batch?;
                for id in batch.column(0).as_string::<i32>().iter() {
                    if let Some(&asked) = id.and_then(|id| wanted.get(id)) {
                        locations[asked] = Some((index, row));
                    }
                    row += 1;
                }
            }
        }
    }
    let parts = snapshot.parts().into_iter().map(|(path, _)| path).collect();
    let rows = snapshot.manifest.parts.iter().map(|p| p.rows).collect();
    Ok(BatchStream::from_reader(FetchReader {
        schema: canonical_schema(snapshot.dimension()),
        dimension: snapshot.dimension(),
        parts,
        rows,
        found: locations.into_iter().flatten().collect(),
        next: 0,
    }))
}

/// What to read from one part.
struct PartPlan {
    path: PathBuf,
    rows: u64,
    /// Sorted, disjoint file-relative row ranges; `None` for every row.
    ranges: Option<Vec<Range<u64>>>,
}

/// Reads planned parts one after the other, opening each when the previous one is exhausted.
struct SequentialReader {
    schema: SchemaRef,
    dimension: u32,
    batch_size: usize,
    plans: VecDeque<PartPlan>,
    current: Option<PartReader>,
}

impl SequentialReader {
    fn new(dimension: u32, batch_size: usize, plans: VecDeque<PartPlan>) -> SequentialReader {
        SequentialReader {
            schema: canonical_schema(dimension),
            dimension,
            batch_size,
            plans,
            current: None,
        }
    }

    fn open_next(&mut self) -> Result<bool, PluginError> {
        let Some(plan) = self.plans.pop_front() else {
            return Ok(false);
        };
        let part = OpenPart::open(&plan.path, plan.rows, self.dimension)?;
        self.current = Some(part.reader(Columns::All, plan.ranges.as_deref(), self.batch_size)?);
        Ok(true)
    }
}

impl Iterator for SequentialReader {
    type Item = Result<RecordBatch, ArrowError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(reader) = &mut self.current {
                match reader.next() {
                    Some(Ok(batch)) => return Some(Ok(batch)),
                    Some(Err(error)) => return Some(Err(self.fail(error))),
                    None => self.current = None,
                }
            }
            match self.open_next() {
                Ok(true) => {}
                Ok(false) => return None,
                Err(error) => return Some(Err(self.fail(error))),
            }
        }
    }
}

impl SequentialReader {
    /// Ends the stream after an error: later parts would only hide it.
    fn fail(&mut self, error: PluginError) -> ArrowError {
        self.current = None;
        self.plans.clear();
        ArrowError::ExternalError(Box::new(error))
    }
}

impl RecordBatchReader for SequentialReader {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }
}

/// Reads located rows in the asked order, a chunk of [`STREAM_BATCH_ROWS`] at a time: each chunk
/// reads its rows part by part in file order, then reorders them.
struct FetchReader {
    schema: SchemaRef,
    dimension: u32,
    parts: Vec<PathBuf>,
    rows: Vec<u64>,
    /// (part index, row in part) of each id found, in the asked order.
    found: Vec<(usize, u64)>,
    next: usize,
}

impl FetchReader {
    fn read_chunk(&self, chunk: &[(usize, u64)]) -> Result<RecordBatch, PluginError> {
        let mut by_part: BTreeMap<usize, Vec<u64>> = BTreeMap::new();
        for &(part, row) in chunk {
            by_part.entry(part).or_default().push(row);
        }
        let mut batches = Vec::new();
        // Where each part's rows start in the concatenation of what was read.
        let mut offsets: HashMap<usize, usize> = HashMap::new();
        let mut read = 0usize;
        for (part, rows) in &mut by_part {
            rows.sort_unstable();
            rows.dedup();
            offsets.insert(*part, read);
            let opened = OpenPart::open(&self.parts[*part], self.rows[*part], self.dimension)?;
            let ranges = rows_to_ranges(rows);
            for batch in opened.reader(Columns::All, Some(&ranges), rows.len())? {
                let batch = batch?;
                read += batch.num_rows();
                batches.push(batch);
            }
        }
        let wanted: usize = by_part.values().map(Vec::len).sum();
        if read != wanted {
            return Err(internal(format!("read {read} rows for {wanted} fetched ids")));
        }
        let all = concat_batches(&self.schema, &batches).map_err(|e| internal(e.to_string()))?;
        let mut indices = Vec::with_capacity(chunk.len());
        for (part, row) in chunk {
            let (Some(rows), Some(offset)) = (by_part.get(part), offsets.get(part)) else {
                return Err(internal(format!("part {part} was not read")));
            };
            let position = rows
                .binary_search(row)
                .map_err(|_| internal(format!("row {row} of part {part} was not read")))?;
            indices.push((offset + position) as u32);
        }
        take_record_batch(&all, &UInt32Array::from(indices)).map_err(|e| internal(e.to_string()))
    }
}

fn internal(problem: String) -> PluginError {
    PluginError::new(ErrorCode::Internal, format!("fetch: {problem}"))
}

impl Iterator for FetchReader {
    type Item = Result<RecordBatch, ArrowError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.next >= self.found.len() {
            return None;
        }
        let end = (self.next + STREAM_BATCH_ROWS).min(self.found.len());
        let chunk = &self.found[self.next..end];
        let result = self.read_chunk(chunk);
        self.next = if result.is_ok() { end } else { self.found.len() };
        Some(result.map_err(|e| ArrowError::ExternalError(Box::new(e))))
    }
}

impl RecordBatchReader for FetchReader {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use ragged_plugin_api::{Backend, LoadMode};

    use super::*;
    use crate::test_support::{contents, drain, load, store};

    /// A store whose `docs` has three parts: a0..a4, b0..b2, c0..c5.
    fn three_parts() -> (tempfile::TempDir, crate::ParquetStore) {
        let (root, store) = store();
        let named =
            |prefix: &str, n: u32| -> Vec<(String, u32)> { (0..n).map(|i| (format!("{prefix}{i}"), i)).collect() };
        for (mode, prefix, n) in [
            (LoadMode::Create, "a", 5),
            (LoadMode::Append, "b", 3),
            (LoadMode::Append, "c", 6),
        ] {
            let owned = named(prefix, n);
            let borrowed: Vec<(&str, u32)> = owned.iter().map(|(id, v)| (id.as_str(), *v)).collect();
            load(&store, mode, &[&borrowed]).expect("loads");
        }
        (root, store)
    }

    fn extract_ids(store: &crate::ParquetStore, start: u64, batch_size: u32) -> (Vec<String>, Vec<usize>) {
        let stream = store
            .extract("docs", &ExtractRequest::records(batch_size, start))
            .expect("extracts");
        let mut ids = Vec::new();
        let mut sizes = Vec::new();
        for batch in stream.into_reader().expect("a stream") {
            let batch = batch.expect("a batch");
            sizes.push(batch.num_rows());
            ids.extend(batch.column(0).as_string::<i32>().iter().flatten().map(str::to_owned));
        }
        (ids, sizes)
    }

    #[test]
    fn extract_from_any_start_is_the_tail_of_the_full_extract() {
        let (_root, store) = three_parts();
        let (all, sizes) = extract_ids(&store, 0, 4);
        assert_eq!(all.len(), 14);
        assert_eq!(&all[..6], &["a0", "a1", "a2", "a3", "a4", "b0"]);
        // Batches do not span parts: 5 = 4 + 1, 3, 6 = 4 + 2.
        assert_eq!(sizes, vec![4, 1, 3, 4, 2]);
        for start in 0..=16 {
            let (tail, _) = extract_ids(&store, start, 3);
            assert_eq!(tail, all[(start as usize).min(14)..].to_vec(), "start {start}");
        }
    }

    #[test]
    fn a_zero_batch_size_is_refused() {
        let (_root, store) = three_parts();
        let error = store
            .extract("docs", &ExtractRequest::records(0, 0))
            .err()
            .expect("refused");
        assert_eq!(error.code, ErrorCode::InvalidInput);
        assert_eq!(error.message, "batch_size must be at least 1");
    }

    #[test]
    fn fetch_returns_the_asked_order_once_each_and_skips_the_absent() {
        let (_root, store) = three_parts();
        let ids: Vec<String> = ["c5", "nope", "a0", "b1", "c5", "a4"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        let got: Vec<String> = drain(store.fetch("docs", &ids).expect("fetches"))
            .into_iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(got, vec!["c5", "a0", "b1", "a4"]);
        assert!(drain(store.fetch("docs", &[]).expect("fetches")).is_empty());
    }

    #[test]
    fn fetch_of_more_ids_than_a_batch_keeps_the_order_across_chunks() {
        let (_root, store) = store();
        let owned: Vec<(String, u32)> = (0..2500).map(|i| (format!("r{i:04}"), i)).collect();
        let borrowed: Vec<(&str, u32)> = owned.iter().map(|(id, v)| (id.as_str(), *v)).collect();
        load(&store, LoadMode::Create, &[&borrowed[..1200], &borrowed[1200..]]).expect("loads");
        let asked: Vec<String> = owned.iter().rev().map(|(id, _)| id.clone()).collect();
        let got = drain(store.fetch("docs", &asked).expect("fetches"));
        assert_eq!(got.len(), 2500);
        assert!(got.iter().zip(&asked).all(|(r, id)| &r.id == id));
        assert!(
            got.iter()
                .all(|r| r.document.as_deref() == Some(&format!("{} v{}", r.id, r.embedding[0] as u32)[..]))
        );
    }

    #[test]
    fn sample_reads_the_chosen_positions_in_extract_order() {
        let (_root, store) = three_parts();
        let all: Vec<String> = contents(&store).into_iter().map(|(id, _)| id).collect();
        let expected: Vec<String> = choose_positions(14, 5, 99)
            .iter()
            .map(|&p| all[p as usize].clone())
            .collect();
        let got: Vec<String> = drain(store.sample("docs", 5, 99).expect("samples"))
            .into_iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(got, expected);
        let everything: Vec<String> = drain(store.sample("docs", 14, 1).expect("samples"))
            .into_iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(everything, all);
        assert!(drain(store.sample("docs", 0, 1).expect("samples")).is_empty());
    }

    #[test]
    fn damage_inside_the_data_ends_the_stream_with_an_error_naming_the_part() {
        let (_root, store) = three_parts();
        let path = store.root.join("docs").join("part-000002.parquet");
        let mut bytes = fs::read(&path).expect("reads");
        // The first column chunk starts right after the 4-byte magic: wreck its page header.
        for byte in &mut bytes[4..40] {
            *byte = 0xff;
        }
        fs::write(&path, &bytes).expect("writes");
        let stream = store
            .extract("docs", &ExtractRequest::records(100, 0))
            .expect("the footer is intact");
        let mut reader = stream.into_reader().expect("a stream");
        assert_eq!(reader.next().expect("part 1").expect("readable").num_rows(), 5);
        let error = reader.next().expect("part 2").expect_err("damaged");
        assert!(error.to_string().contains(&path.display().to_string()), "{error}");
        assert!(reader.next().is_none(), "the stream ends at the error");
    }
}
