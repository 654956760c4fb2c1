//! Entry points for the fuzz targets in `tests/fuzz` (not API): each reads one kind of LEANN file
//! the way the store does, and touches everything it returns. Models are never run, so a fuzzed
//! meta file cannot reach an embedding server.

use std::path::Path;
use std::sync::Arc;

use ragged_plugin_api::{ExtractRequest, PluginError};

use crate::hnsw::Adjacency;
use crate::index_file;
use crate::layout::IndexPaths;
use crate::meta::Meta;
use crate::passages::{LineReader, read_ids, read_offsets, scan_offsets};
use crate::read::{self, Loaded, OpenIndex};

/// Rows read from the stored vectors at a time.
const ROWS_PER_READ: u64 = 64;
/// Indexes of more dimensions are opened and read, but not queried.
const MAX_QUERY_DIMENSION: u32 = 4096;

/// `NAME.index`: parsed with and without the graph, every neighbour list and stored row read.
pub fn index_file(path: &Path) -> Result<(), PluginError> {
    index_file::read(path, false)?;
    let parsed = index_file::read(path, true)?;
    if let Some(graph) = &parsed.graph {
        for node in 0..graph.len() {
            for level in 0..graph.levels[node] as usize {
                graph.neighbors(node as u32, level);
            }
        }
    }
    if let Some(vectors) = &parsed.vectors {
        let mut rows = Vec::new();
        for first in (0..vectors.rows).step_by(ROWS_PER_READ as usize) {
            rows.clear();
            index_file::read_rows(path, vectors, first, ROWS_PER_READ.min(vectors.rows - first), &mut rows)?;
        }
    }
    Ok(())
}

/// `NAME.leann.meta.json`, resolved and described.
pub fn meta(path: &Path, base: &str) -> Result<(), PluginError> {
    let meta = Meta::read(path, base)?;
    meta.describe(base, 0);
    Ok(())
}

/// `NAME.leann.passages.jsonl`: scanned for offsets, then every passage read at its offset.
pub fn passages(path: &Path) -> Result<(), PluginError> {
    let mut offsets: Vec<u64> = scan_offsets(path)?.into_values().collect();
    offsets.sort_unstable();
    let mut reader = LineReader::open(path)?;
    for offset in offsets {
        reader.passage_at(offset)?;
    }
    Ok(())
}

/// `NAME.passages.idx`, the offset pickle.
pub fn offsets(path: &Path) -> Result<(), PluginError> {
    read_offsets(path).map(drop)
}

/// `NAME.ids.txt`.
pub fn ids(path: &Path) -> Result<(), PluginError> {
    read_ids(path).map(drop)
}

/// The index `name` of the store at `root`, opened as the store opens it: every record read, and
/// for an index that keeps its vectors, a query through its graph.
pub fn index(root: &Path, name: &str) -> Result<(), PluginError> {
    let Some(paths) = IndexPaths::find(root, name)? else {
        return Ok(());
    };
    let index = OpenIndex::open(paths, Arc::default())?;
    index.describe();
    index.files()?;
    index.storage()?;
    if !index.stores_vectors() {
        let mut readers = index.passage_readers()?;
        for node in 0..index.count() {
            index.passage(node, &mut readers)?;
        }
        return Ok(());
    }
    let index = Arc::new(index);
    let stream = read::extract(index.clone(), &ExtractRequest::records(4, 0))?;
    for batch in stream.into_reader().map_err(|e| PluginError::corrupt(e.to_string()))? {
        batch.map_err(|e| PluginError::corrupt(e.to_string()))?;
    }
    let Ok(index) = Arc::try_unwrap(index) else {
        return Ok(());
    };
    let dimension = index.index.dimension;
    let loaded = Loaded::load(index)?;
    if dimension <= MAX_QUERY_DIMENSION {
        let query: Vec<f32> = (0..dimension).map(|i| (i as f32).sin()).collect();
        loaded.query(&query, 3, 16)?;
    }
    Ok(())
}
