//! Reading an index: records in node order (extract, sample, fetch), nearest neighbours by a
//! graph search in Rust (query), and the storage report.
//!
//! Node `i` is line `i` of `ids.txt` (or `str(i)` without it), its passage is found through the
//! offset pickle, and its vector is row `i` of the flat storage in `.index`, or of the exact
//! originals file that ragged writes beside a cosine index. An index without stored vectors (compact
//! or pruned) gets them recomputed from the passages with its embedding model (`recompute`): for
//! records, the vectors of each batch at once; for queries, those of the nodes a search visits, a
//! neighbour list at a time, kept for later queries, as LEANN's embedding server computes only what
//! its search visits.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use ragged_plugin_api::arrow::arrow_array::{RecordBatch, RecordBatchReader};
use ragged_plugin_api::arrow::arrow_schema::{ArrowError, SchemaRef};
use ragged_plugin_api::arrow::{canonical_schema, records_to_batch};
use ragged_plugin_api::sampling::choose_positions;
use ragged_plugin_api::{
    BatchStream, CollectionInfo, DistanceMetric, ErrorCode, ExtractRequest, Hit, PluginError, Record, StorageReport,
};

use crate::hnsw::{Distances, Points, Searchable, Space};
use crate::index_file::{self, FaissMetric, Graph, GraphLayout, IndexFile};
use crate::layout::IndexPaths;
use crate::meta::Meta;
use crate::passages::{LineReader, Passage, read_ids, read_offsets, scan_offsets};
use crate::recompute::Embedders;

/// An index opened for reading: meta, node ids, where each passage is, where the vectors are.
pub(crate) struct OpenIndex {
    pub paths: IndexPaths,
    pub meta: Meta,
    pub index_path: PathBuf,
    pub index: IndexFile,
    /// Passage id of each node.
    pub ids: Vec<String>,
    /// Passage file and byte offset of each node's line.
    locations: Vec<(usize, u64)>,
    passage_files: Vec<PathBuf>,
    /// The exact originals (cosine collections written by ragged), when present.
    originals: Option<PathBuf>,
    /// The store's embedders, for an index that keeps no vectors.
    embedders: Arc<Embedders>,
}

impl OpenIndex {
    pub fn open(paths: IndexPaths, embedders: Arc<Embedders>) -> Result<OpenIndex, PluginError> {
        let meta_path = paths.meta();
        let meta = Meta::read(&meta_path, &paths.base)?;
        let index_path = paths.index();
        let index = index_file::read(&index_path, false)?;
        if index.dimension != meta.dimension {
            return Err(PluginError::corrupt(format!(
                "{} has dimension {}, {} says {}",
                index_path.display(),
                index.dimension,
                meta_path.display(),
                meta.dimension
            )));
        }
        let expected_metric = match meta.metric {
            DistanceMetric::L2 => FaissMetric::L2,
            DistanceMetric::Ip | DistanceMetric::Cosine => FaissMetric::InnerProduct,
        };
        let compact = index.layout == GraphLayout::Compact;
        if index.metric != expected_metric || compact != meta.is_compact {
            return Err(PluginError::corrupt(format!(
                "{} is a {} graph with metric {:?}, {} says is_compact={} and distance_metric={}",
                index_path.display(),
                if compact { "compact" } else { "non-compact" },
                index.metric,
                meta_path.display(),
                meta.is_compact,
                meta.distance_metric
            )));
        }
        let ids_path = paths.ids();
        let ids = if ids_path.exists() {
            read_ids(&ids_path)?
        } else {
            (0..index.ntotal).map(|i| i.to_string()).collect()
        };
        if ids.len() as u64 != index.ntotal {
            return Err(PluginError::corrupt(format!(
                "{} names {} nodes, {} has {}",
                ids_path.display(),
                ids.len(),
                index_path.display(),
                index.ntotal
            )));
        }
        let mut maps = Vec::new();
        let mut passage_files = Vec::new();
        for source in &meta.sources {
            // The pickle is what LEANN follows; without one, scanning the lines gives the same map.
            let map = if source.offsets.exists() {
                read_offsets(&source.offsets)?
            } else {
                scan_offsets(&source.passages)?
            };
            maps.push(map);
            passage_files.push(source.passages.clone());
        }
        let mut locations = Vec::with_capacity(ids.len());
        for id in &ids {
            let location = maps
                .iter()
                .enumerate()
                .find_map(|(source, map)| map.get(id).map(|offset| (source, *offset)))
                .ok_or_else(|| {
                    PluginError::corrupt(format!(
                        "node '{id}' of {} has no passage in {}",
                        ids_path.display(),
                        passage_files
                            .iter()
                            .map(|p| p.display().to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                })?;
            locations.push(location);
        }
        let originals = meta.originals_file().map(|name| paths.resolve(name));
        Ok(OpenIndex {
            paths,
            meta,
            index_path,
            index,
            ids,
            locations,
            passage_files,
            originals,
            embedders,
        })
    }

    pub fn count(&self) -> u64 {
        self.index.ntotal
    }

    pub fn describe(&self) -> CollectionInfo {
        self.meta.describe(&self.paths.name, self.count())
    }

    /// Whether the index keeps its vectors (full), rather than having them recomputed from the
    /// passages (compact, pruned).
    pub fn stores_vectors(&self) -> bool {
        self.index.vectors.is_some() || self.originals.is_some()
    }

    /// The stored vectors of nodes `first .. first + count`, row after row.
    fn stored_rows(&self, first: u64, count: u64) -> Result<Vec<f32>, PluginError> {
        let mut out = Vec::with_capacity((count * u64::from(self.index.dimension)) as usize);
        if let Some(path) = &self.originals {
            let stored = index_file::StoredVectors {
                offset: 0,
                rows: self.count(),
                dimension: self.index.dimension,
            };
            let expected = self.count() * u64::from(self.index.dimension) * 4;
            let len = fs::metadata(path).map_err(|e| PluginError::io(path, &e))?.len();
            if len != expected {
                return Err(PluginError::corrupt(format!(
                    "{} has {len} bytes, expected {expected}",
                    path.display()
                )));
            }
            index_file::read_rows(path, &stored, first, count, &mut out)?;
        } else if let Some(stored) = &self.index.vectors {
            index_file::read_rows(&self.index_path, stored, first, count, &mut out)?;
        } else {
            return Err(PluginError::new(
                ErrorCode::Internal,
                format!("{} keeps no vectors to read", self.index_path.display()),
            ));
        }
        Ok(out)
    }

    /// The vectors of `passages` recomputed with the index's model, row after row.
    fn recomputed_rows(&self, passages: &[Passage]) -> Result<Vec<f32>, PluginError> {
        // LEANN's embedding server embeds the "text" field, "" when there is none.
        let texts: Vec<&str> = passages.iter().map(|p| p.document.as_deref().unwrap_or("")).collect();
        self.embedders.passage_vectors(
            &self.meta.model_spec(),
            &self.purpose(),
            &texts,
            self.index.dimension,
            self.meta.metric,
        )
    }

    /// What recomputing the vectors is for, in errors.
    fn purpose(&self) -> String {
        format!(
            "reading collection '{}' (a {} LEANN index, {}, which keeps no vectors)",
            self.paths.name,
            self.meta.shape().name(),
            self.index_path.display()
        )
    }

    /// Loads the embedding model now when the vectors are recomputed, so that a missing model
    /// fails the call rather than a stream half-way.
    fn require_model(&self) -> Result<(), PluginError> {
        if !self.stores_vectors() {
            self.embedders.get(&self.meta.model_spec(), &self.purpose())?;
        }
        Ok(())
    }

    /// The vectors of nodes `first .. first + count`, for a rebuild: exactly as stored, or
    /// recomputed.
    pub fn vectors_for_rebuild(
        &self,
        first: u64,
        count: u64,
        readers: &mut [LineReader],
    ) -> Result<Vec<f32>, PluginError> {
        if self.stores_vectors() {
            return self.stored_rows(first, count);
        }
        let passages = (first..first + count)
            .map(|node| self.passage(node, readers))
            .collect::<Result<Vec<_>, _>>()?;
        self.recomputed_rows(&passages)
    }

    /// One line reader per passage file, indexed like [`OpenIndex::passage_location`]'s first value.
    pub fn passage_readers(&self) -> Result<Vec<LineReader>, PluginError> {
        self.passage_files.iter().map(|p| LineReader::open(p)).collect()
    }

    /// The passage file `source` (as [`OpenIndex::passage_location`] numbers them).
    pub fn passage_file(&self, source: usize) -> &Path {
        &self.passage_files[source]
    }

    /// Which passage file holds node `node`'s line, and at which byte.
    pub fn passage_location(&self, node: u64) -> (usize, u64) {
        self.locations[node as usize]
    }

    /// The passage of node `node`, checked to be the one `ids.txt` names.
    pub fn passage(&self, node: u64, readers: &mut [LineReader]) -> Result<Passage, PluginError> {
        let (source, offset) = self.locations[node as usize];
        let passage = readers[source].passage_at(offset)?;
        let id = &self.ids[node as usize];
        if passage.id != *id {
            return Err(PluginError::corrupt(format!(
                "{}: the line at byte {offset} is passage '{}', expected '{id}'",
                self.passage_files[source].display(),
                passage.id
            )));
        }
        Ok(passage)
    }

    /// The records of the given nodes, in that order.
    fn records(&self, nodes: &[u64], readers: &mut [LineReader]) -> Result<Vec<Record>, PluginError> {
        let dimension = self.index.dimension as usize;
        let passages = nodes
            .iter()
            .map(|node| self.passage(*node, readers))
            .collect::<Result<Vec<_>, _>>()?;
        let vectors = if self.stores_vectors() {
            // Contiguous runs of nodes read their vectors in one go.
            let mut vectors = Vec::with_capacity(nodes.len() * dimension);
            let mut start = 0;
            while start < nodes.len() {
                let mut end = start + 1;
                while end < nodes.len() && nodes[end] == nodes[end - 1] + 1 {
                    end += 1;
                }
                vectors.extend(self.stored_rows(nodes[start], (end - start) as u64)?);
                start = end;
            }
            vectors
        } else {
            self.recomputed_rows(&passages)?
        };
        Ok(passages
            .into_iter()
            .zip(vectors.chunks_exact(dimension.max(1)))
            .map(|(passage, vector)| Record {
                id: passage.id,
                document: passage.document,
                metadata: passage.metadata,
                embedding: vector.to_vec(),
            })
            .collect())
    }

    fn batch(&self, nodes: &[u64], readers: &mut [LineReader]) -> Result<RecordBatch, PluginError> {
        records_to_batch(&self.records(nodes, readers)?, self.index.dimension)
    }

    /// The storage report, measured from the index's files.
    pub fn storage(&self) -> Result<StorageReport, PluginError> {
        let size = |path: &Path| -> Result<u64, PluginError> {
            match fs::metadata(path) {
                Ok(m) => Ok(m.len()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
                Err(e) => Err(PluginError::io(path, &e)),
            }
        };
        let files = self.files()?;
        let mut total_bytes = 0;
        for file in &files {
            total_bytes += size(file)?;
        }
        let stored = if self.index.vectors.is_some() {
            self.index.storage_bytes
        } else {
            0
        };
        let originals = match &self.originals {
            Some(path) => size(path)?,
            None => 0,
        };
        let mut documents_bytes = size(&self.paths.ids())?;
        for source in &self.meta.sources {
            documents_bytes += size(&source.passages)? + size(&source.offsets)?;
        }
        Ok(StorageReport {
            vectors_bytes: stored + originals,
            documents_bytes,
            index_bytes: self.index.file_bytes - stored,
            total_bytes,
            records: self.count(),
        })
    }

    pub fn files(&self) -> Result<Vec<PathBuf>, PluginError> {
        let mut sources = Vec::new();
        for source in &self.meta.sources {
            sources.push(source.passages.clone());
            sources.push(source.offsets.clone());
        }
        self.paths.existing_files(&sources)
    }
}

/// Every record from `request.start` on, in node order.
pub(crate) fn extract(index: Arc<OpenIndex>, request: &ExtractRequest) -> Result<BatchStream, PluginError> {
    index.require_model()?;
    let readers = index.passage_readers()?;
    let end = index.count();
    Ok(BatchStream::from_reader(NodeReader {
        schema: canonical_schema(index.index.dimension),
        next: request.start.min(end),
        end,
        batch_size: u64::from(request.batch_size.max(1)),
        index,
        readers,
    }))
}

/// `n` records chosen at random with `seed`, in node order.
pub(crate) fn sample(index: &OpenIndex, n: u64, seed: u64) -> Result<BatchStream, PluginError> {
    nodes_stream(index, &choose_positions(index.count(), n, seed))
}

/// The records with these ids, in the order asked, leaving out unknown ids.
pub(crate) fn fetch(index: &OpenIndex, ids: &[String]) -> Result<BatchStream, PluginError> {
    let by_id: HashMap<&str, u64> = index
        .ids
        .iter()
        .enumerate()
        .map(|(node, id)| (id.as_str(), node as u64))
        .collect();
    let nodes: Vec<u64> = ids.iter().filter_map(|id| by_id.get(id.as_str()).copied()).collect();
    nodes_stream(index, &nodes)
}

fn nodes_stream(index: &OpenIndex, nodes: &[u64]) -> Result<BatchStream, PluginError> {
    let mut readers = index.passage_readers()?;
    let mut batches = Vec::new();
    for chunk in nodes.chunks(1024) {
        batches.push(index.batch(chunk, &mut readers)?);
    }
    Ok(BatchStream::from_batches(
        canonical_schema(index.index.dimension),
        batches,
    ))
}

struct NodeReader {
    schema: SchemaRef,
    index: Arc<OpenIndex>,
    readers: Vec<LineReader>,
    next: u64,
    end: u64,
    batch_size: u64,
}

impl Iterator for NodeReader {
    type Item = Result<RecordBatch, ArrowError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.next >= self.end {
            return None;
        }
        let stop = (self.next + self.batch_size).min(self.end);
        let nodes: Vec<u64> = (self.next..stop).collect();
        self.next = stop;
        Some(
            self.index
                .batch(&nodes, &mut self.readers)
                .map_err(|e| ArrowError::ExternalError(Box::new(e))),
        )
    }
}

impl RecordBatchReader for NodeReader {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }
}

/// The graph of an index and the vectors its searches compare, loaded once per version of the
/// index file.
pub(crate) struct Loaded {
    graph: Graph,
    vectors: Vectors,
    ids: Vec<String>,
    dimension: usize,
    metric: DistanceMetric,
}

/// Where a search gets the vectors it compares.
enum Vectors {
    /// Every node's vector, as LEANN searches them (normalised for cosine).
    Stored(Vec<f32>),
    /// Vectors recomputed from the passages when a search first visits their node, then kept:
    /// a query embeds only what it visits (a few hundred passages), as LEANN's embedding server
    /// does, rather than the whole index before the first answer.
    Recomputed(Box<OpenIndex>, Mutex<Recomputed>),
}

/// The vectors recomputed so far, by node, and the readers of the passages.
struct Recomputed {
    readers: Vec<LineReader>,
    rows: HashMap<u32, Vec<f32>>,
}

/// Distances to recomputed vectors, embedding those not yet known a neighbour list at a time.
struct Lazy<'a> {
    index: &'a OpenIndex,
    recomputed: &'a Mutex<Recomputed>,
    space: Space,
}

impl Distances for Lazy<'_> {
    type Error = PluginError;

    fn distances(&self, query: &[f32], nodes: &[u32], out: &mut Vec<f32>) -> Result<(), PluginError> {
        // A failed embedding leaves the map as it was, so a poisoned lock is still consistent.
        let mut recomputed = self.recomputed.lock().unwrap_or_else(PoisonError::into_inner);
        let Recomputed { readers, rows } = &mut *recomputed;
        let missing: Vec<u32> = nodes.iter().copied().filter(|node| !rows.contains_key(node)).collect();
        if !missing.is_empty() {
            let passages = missing
                .iter()
                .map(|node| self.index.passage(u64::from(*node), readers))
                .collect::<Result<Vec<_>, _>>()?;
            let vectors = self.index.recomputed_rows(&passages)?;
            let dimension = self.index.index.dimension as usize;
            for (node, row) in missing.iter().zip(vectors.chunks_exact(dimension)) {
                rows.insert(*node, row.to_vec());
            }
        }
        out.clear();
        for node in nodes {
            let row = rows
                .get(node)
                .ok_or_else(|| PluginError::new(ErrorCode::Internal, format!("node {node} was not recomputed")))?;
            out.push(self.space.distance(query, row));
        }
        Ok(())
    }
}

impl Loaded {
    pub fn load(index: OpenIndex) -> Result<Loaded, PluginError> {
        let parsed = index_file::read(&index.index_path, true)?;
        let graph = parsed
            .graph
            .ok_or_else(|| PluginError::new(ErrorCode::Internal, "the graph was asked for but not read"))?;
        let dimension = parsed.dimension as usize;
        let (ids, metric) = (index.ids.clone(), index.meta.metric);
        let vectors = match &parsed.vectors {
            Some(stored) => {
                let mut vectors = Vec::new();
                index_file::read_rows(&index.index_path, stored, 0, stored.rows, &mut vectors)?;
                if metric == DistanceMetric::Cosine {
                    normalize_rows(&mut vectors, dimension);
                }
                Vectors::Stored(vectors)
            }
            None => {
                index.require_model()?;
                let readers = index.passage_readers()?;
                Vectors::Recomputed(
                    Box::new(index),
                    Mutex::new(Recomputed {
                        readers,
                        rows: HashMap::new(),
                    }),
                )
            }
        };
        Ok(Loaded {
            graph,
            vectors,
            ids,
            dimension,
            metric,
        })
    }

    /// The `k` nearest records, with distances under the collection's metric.
    pub fn query(&self, vector: &[f32], k: usize, ef: usize) -> Result<Vec<Hit>, PluginError> {
        if vector.len() != self.dimension {
            return Err(PluginError::invalid_input(format!(
                "the query vector has {} dimensions, the collection has {}",
                vector.len(),
                self.dimension
            )));
        }
        let mut query = vector.to_vec();
        let space = match self.metric {
            DistanceMetric::L2 => Space::L2,
            DistanceMetric::Ip => Space::InnerProduct,
            DistanceMetric::Cosine => {
                normalize_rows(&mut query, self.dimension);
                Space::InnerProduct
            }
        };
        let searchable = Searchable {
            graph: &self.graph,
            entry_point: self.graph.entry_point,
            max_level: self.graph.max_level,
            nodes: self.ids.len(),
        };
        let found = match &self.vectors {
            Vectors::Stored(vectors) => {
                let points = Points {
                    vectors,
                    dimension: self.dimension,
                    space,
                };
                let Ok(found) = searchable.search(&points, &query, k, ef);
                found
            }
            Vectors::Recomputed(index, recomputed) => searchable.search(
                &Lazy {
                    index,
                    recomputed,
                    space,
                },
                &query,
                k,
                ef,
            )?,
        };
        Ok(found
            .into_iter()
            .map(|(distance, node)| Hit {
                id: self.ids[node as usize].clone(),
                // -a·b of unit vectors is cos - 1 away from ragged's 1 - cos.
                distance: if self.metric == DistanceMetric::Cosine {
                    1.0 + distance
                } else {
                    distance
                },
            })
            .collect())
    }
}

/// L2-normalises each row in place, as LEANN does for cosine (zero rows stay zero).
pub(crate) fn normalize_rows(vectors: &mut [f32], dimension: usize) {
    for row in vectors.chunks_exact_mut(dimension.max(1)) {
        let norm = row.iter().map(|x| f64::from(*x) * f64::from(*x)).sum::<f64>().sqrt() as f32;
        if norm > 0.0 {
            for x in row.iter_mut() {
                *x /= norm;
            }
        }
    }
}
