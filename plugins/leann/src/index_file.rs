//! `NAME.index`: faiss's `IndexHNSWFlat` binary as LEANN's faiss fork writes and reads it.
//!
//! Three shapes exist (see `docs/backends/leann.md`): compact (a CSR graph and no vectors),
//! non-compact with `null` storage (pruned), and non-compact with the flat vectors. Non-compact
//! files written by LEANN's C++ writer carry a `0x00` flag byte after `levels`; files rewritten by
//! LEANN's Python pruner (and upstream faiss files) do not. The reader tells them apart by the
//! known node count instead of probing the byte, and the writer always writes the flag byte:
//! without it LEANN's own reader misreads files with `N % 256 == 255` nodes.
//!
//! All integers are little-endian; a faiss vector is a `u64` count followed by the elements.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::Path;

use ragged_plugin_api::PluginError;

use crate::hnsw::Adjacency;

const FOURCC_HNSW_FLAT: &[u8; 4] = b"IHNf";
const FOURCC_NULL: &[u8; 4] = b"null";
const FOURCC_FLAT_IP: &[u8; 4] = b"IxFI";
const FOURCC_FLAT_L2: &[u8; 4] = b"IxF2";
const FOURCC_FLAT: &[u8; 4] = b"IxFl";
/// The two dummy `i64`s of faiss's index header.
const HEADER_DUMMY: i64 = 1 << 20;
/// Bytes of faiss's index header after the fourcc, without the optional metric argument.
#[cfg(test)]
const HEADER_BYTES: u64 = 4 + 8 + 8 + 8 + 1 + 4;
/// Arrays longer than this are certainly garbage (faiss's own reader refuses 2^40).
const MAX_ELEMENTS: u64 = 1 << 40;

/// faiss's metric type as stored in the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FaissMetric {
    /// `METRIC_INNER_PRODUCT` (0): LEANN's `mips` and `cosine`.
    InnerProduct,
    /// `METRIC_L2` (1): squared Euclidean distance.
    L2,
}

impl FaissMetric {
    fn code(self) -> i32 {
        match self {
            FaissMetric::InnerProduct => 0,
            FaissMetric::L2 => 1,
        }
    }
}

/// How the graph is laid out in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GraphLayout {
    /// LEANN's CSR layout (flag byte `0x01`).
    Compact,
    /// faiss's fixed-width slots, with LEANN's `0x00` flag byte.
    NonCompactFlagged,
    /// faiss's fixed-width slots without the flag byte (LEANN's Python pruner, upstream faiss).
    NonCompactUnflagged,
}

/// An HNSW graph in CSR form: node `i`'s list at level `l` is
/// `neighbors[level_ptr[node_offsets[i] + l] .. level_ptr[node_offsets[i] + l + 1]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Graph {
    /// Per node, the number of levels it lives on (faiss's `levels`: top level + 1).
    pub levels: Vec<u32>,
    pub node_offsets: Vec<usize>,
    pub level_ptr: Vec<usize>,
    pub neighbors: Vec<u32>,
    /// `None` for an empty graph.
    pub entry_point: Option<u32>,
    pub max_level: i32,
}

impl Graph {
    /// The CSR form of per-node, per-level neighbour lists.
    pub fn from_links(links: &[Vec<Vec<u32>>], entry_point: Option<u32>, max_level: i32) -> Graph {
        let mut graph = Graph {
            levels: Vec::with_capacity(links.len()),
            node_offsets: Vec::with_capacity(links.len() + 1),
            level_ptr: Vec::new(),
            neighbors: Vec::new(),
            entry_point,
            max_level,
        };
        for node in links {
            graph.levels.push(node.len() as u32);
            graph.node_offsets.push(graph.level_ptr.len());
            for list in node {
                graph.level_ptr.push(graph.neighbors.len());
                graph.neighbors.extend_from_slice(list);
            }
            graph.level_ptr.push(graph.neighbors.len());
        }
        graph.node_offsets.push(graph.level_ptr.len());
        graph
    }

    pub fn len(&self) -> usize {
        self.levels.len()
    }

    /// Per-node, per-level neighbour lists (the inverse of [`Graph::from_links`]).
    pub fn to_links(&self) -> Vec<Vec<Vec<u32>>> {
        (0..self.len())
            .map(|node| {
                (0..self.levels[node] as usize)
                    .map(|level| self.neighbors(node as u32, level).to_vec())
                    .collect()
            })
            .collect()
    }
}

impl Adjacency for Graph {
    fn neighbors(&self, node: u32, level: usize) -> &[u32] {
        let node = node as usize;
        if level >= self.levels[node] as usize {
            return &[];
        }
        let base = self.node_offsets[node] + level;
        &self.neighbors[self.level_ptr[base]..self.level_ptr[base + 1]]
    }
}

/// Where the flat vectors sit in the file, if it has any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StoredVectors {
    /// Byte offset of row 0.
    pub offset: u64,
    pub rows: u64,
    pub dimension: u32,
}

/// What a parsed `.index` file holds (the graph only when asked for).
#[derive(Debug, Clone)]
pub(crate) struct IndexFile {
    pub dimension: u32,
    pub ntotal: u64,
    pub metric: FaissMetric,
    pub layout: GraphLayout,
    pub graph: Option<Graph>,
    /// `None` for `null` storage (a pruned or compact index).
    pub vectors: Option<StoredVectors>,
    /// Bytes of the storage section (fourcc, header and vectors), for the storage report.
    pub storage_bytes: u64,
    pub file_bytes: u64,
}

/// Parses `path`; reads the graph into memory only when `with_graph` is set, else skips it.
pub(crate) fn read(path: &Path, with_graph: bool) -> Result<IndexFile, PluginError> {
    let file = File::open(path).map_err(|e| PluginError::io(path, &e))?;
    let file_bytes = file.metadata().map_err(|e| PluginError::io(path, &e))?.len();
    let mut reader = Reader {
        inner: BufReader::new(file),
        path,
        len: file_bytes,
    };
    let mut parsed = reader.parse(with_graph)?;
    parsed.file_bytes = file_bytes;
    Ok(parsed)
}

/// Reads rows `first .. first + count` of the stored vectors into `out` (appending).
pub(crate) fn read_rows(
    path: &Path,
    vectors: &StoredVectors,
    first: u64,
    count: u64,
    out: &mut Vec<f32>,
) -> Result<(), PluginError> {
    if first + count > vectors.rows {
        return Err(PluginError::corrupt(format!(
            "{}: rows {first}..{} asked of {} stored vectors",
            path.display(),
            first + count,
            vectors.rows
        )));
    }
    let mut file = File::open(path).map_err(|e| PluginError::io(path, &e))?;
    let row_bytes = u64::from(vectors.dimension) * 4;
    file.seek(SeekFrom::Start(vectors.offset + first * row_bytes))
        .map_err(|e| PluginError::io(path, &e))?;
    let mut bytes = vec![0u8; (count * row_bytes) as usize];
    file.read_exact(&mut bytes).map_err(|e| PluginError::io(path, &e))?;
    out.extend(
        bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
    );
    Ok(())
}

/// What a written `.index` file holds besides the graph.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Body<'a> {
    /// faiss's fixed-width slots (with LEANN's flag byte) and the flat vectors, row `i` node
    /// `i`'s: the full shape.
    Full(&'a [f32]),
    /// faiss's fixed-width slots (with LEANN's flag byte) and `null` storage: LEANN's pruned shape.
    Pruned,
    /// LEANN's CSR graph and `null` storage: the compact shape.
    Compact,
}

/// What the writer needs besides the graph.
pub(crate) struct WriteParams<'a> {
    pub dimension: u32,
    pub metric: FaissMetric,
    pub m: usize,
    pub ef_construction: i32,
    pub ef_search: i32,
    pub body: Body<'a>,
}

/// Writes an `IndexHNSWFlat` in one of LEANN's shapes to `path` (non-compact ones always with
/// LEANN's `0x00` flag byte).
pub(crate) fn write(path: &Path, graph: &Graph, params: &WriteParams<'_>) -> Result<(), PluginError> {
    let file = File::create(path).map_err(|e| PluginError::io(path, &e))?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let io = |e: std::io::Error| PluginError::io(path, &e);
    let n = graph.len() as u64;
    let (assign_probas, cum) = default_probas(params.m);
    let max_levels = cum.len() - 1;
    let internal = |message: String| PluginError::new(ragged_plugin_api::ErrorCode::Internal, message);
    if let Some(level) = graph.levels.iter().find(|l| **l as usize > max_levels) {
        return Err(internal(format!(
            "a node has {level} levels, the format allows {max_levels} with M = {}",
            params.m
        )));
    }
    if params.body != Body::Compact {
        for node in 0..graph.len() {
            for level in 0..graph.levels[node] as usize {
                let width = (cum[level + 1] - cum[level]) as usize;
                let count = graph.neighbors(node as u32, level).len();
                if count > width {
                    return Err(internal(format!(
                        "node {node} has {count} neighbours at level {level}, the slots hold {width}"
                    )));
                }
            }
        }
    }
    out.write_all(FOURCC_HNSW_FLAT).map_err(io)?;
    write_header(&mut out, params.dimension, n, params.metric).map_err(io)?;
    write_vec_len(&mut out, assign_probas.len()).map_err(io)?;
    for p in &assign_probas {
        out.write_all(&p.to_le_bytes()).map_err(io)?;
    }
    write_vec_len(&mut out, cum.len()).map_err(io)?;
    for c in &cum {
        out.write_all(&c.to_le_bytes()).map_err(io)?;
    }
    write_vec_len(&mut out, graph.len()).map_err(io)?;
    for level in &graph.levels {
        out.write_all(&(*level as i32).to_le_bytes()).map_err(io)?;
    }
    if params.body == Body::Compact {
        out.write_all(&[1u8]).map_err(io)?;
        write_vec_len(&mut out, graph.level_ptr.len()).map_err(io)?;
        for pointer in &graph.level_ptr {
            out.write_all(&(*pointer as u64).to_le_bytes()).map_err(io)?;
        }
        write_vec_len(&mut out, graph.node_offsets.len()).map_err(io)?;
        for offset in &graph.node_offsets {
            out.write_all(&(*offset as u64).to_le_bytes()).map_err(io)?;
        }
    } else {
        out.write_all(&[0u8]).map_err(io)?;
        write_fixed_slots(&mut out, graph, &cum).map_err(io)?;
    }
    let entry_point = graph.entry_point.map_or(-1, |e| e as i32);
    for value in [
        entry_point,
        graph.max_level,
        params.ef_construction,
        params.ef_search,
        1,
    ] {
        out.write_all(&value.to_le_bytes()).map_err(io)?;
    }
    match params.body {
        Body::Pruned => out.write_all(FOURCC_NULL).map_err(io)?,
        Body::Compact => {
            // LEANN's reader wants the storage fourcc before the neighbour array.
            out.write_all(FOURCC_NULL).map_err(io)?;
            write_vec_len(&mut out, graph.neighbors.len()).map_err(io)?;
            for neighbor in &graph.neighbors {
                out.write_all(&(*neighbor as i32).to_le_bytes()).map_err(io)?;
            }
        }
        Body::Full(vectors) => {
            out.write_all(match params.metric {
                FaissMetric::InnerProduct => FOURCC_FLAT_IP,
                FaissMetric::L2 => FOURCC_FLAT_L2,
            })
            .map_err(io)?;
            write_header(&mut out, params.dimension, n, params.metric).map_err(io)?;
            write_vec_len(&mut out, vectors.len()).map_err(io)?;
            for value in vectors {
                out.write_all(&value.to_le_bytes()).map_err(io)?;
            }
        }
    }
    let file = out.into_inner().map_err(|e| PluginError::io(path, e.error()))?;
    file.sync_all().map_err(io)
}

/// faiss's `offsets` and fixed-width `neighbors`: `offsets[i + 1] - offsets[i] = cum[levels[i]]`,
/// every node owns all slots of its levels, lists padded with `-1` (they were checked to fit).
fn write_fixed_slots(out: &mut impl Write, graph: &Graph, cum: &[i32]) -> std::io::Result<()> {
    write_vec_len(out, graph.len() + 1)?;
    let mut offset = 0u64;
    out.write_all(&offset.to_le_bytes())?;
    for level in &graph.levels {
        offset += cum[*level as usize] as u64;
        out.write_all(&offset.to_le_bytes())?;
    }
    write_vec_len(out, offset as usize)?;
    for node in 0..graph.len() {
        for level in 0..graph.levels[node] as usize {
            let width = (cum[level + 1] - cum[level]) as usize;
            let list = graph.neighbors(node as u32, level);
            for neighbor in list {
                out.write_all(&(*neighbor as i32).to_le_bytes())?;
            }
            for _ in list.len()..width {
                out.write_all(&(-1i32).to_le_bytes())?;
            }
        }
    }
    Ok(())
}

/// faiss `HNSW::set_default_probas(M, 1 / ln M)`, bit for bit: the level probabilities and the
/// cumulative neighbour slots per level (`2M` at level 0, `M` above).
pub(crate) fn default_probas(m: usize) -> (Vec<f64>, Vec<i32>) {
    let level_mult = (1.0 / (m as f64).ln()) as f32;
    let mut assign_probas = Vec::new();
    let mut cum = vec![0i32];
    let mut total = 0i32;
    for level in 0.. {
        let a = f64::from(-(level as f32) / level_mult);
        let b = f64::from(-1.0f32 / level_mult);
        let proba = (a.exp() * (1.0 - b.exp())) as f32;
        if f64::from(proba) < 1e-9 {
            break;
        }
        assign_probas.push(f64::from(proba));
        total += if level == 0 { 2 * m as i32 } else { m as i32 };
        cum.push(total);
    }
    (assign_probas, cum)
}

fn write_header(out: &mut impl Write, dimension: u32, n: u64, metric: FaissMetric) -> std::io::Result<()> {
    out.write_all(&(dimension as i32).to_le_bytes())?;
    out.write_all(&(n as i64).to_le_bytes())?;
    out.write_all(&HEADER_DUMMY.to_le_bytes())?;
    out.write_all(&HEADER_DUMMY.to_le_bytes())?;
    out.write_all(&[1u8])?;
    out.write_all(&metric.code().to_le_bytes())
}

fn write_vec_len(out: &mut impl Write, len: usize) -> std::io::Result<()> {
    out.write_all(&(len as u64).to_le_bytes())
}

/// A positioned reader that names the file in every error.
struct Reader<'a> {
    inner: BufReader<File>,
    path: &'a Path,
    len: u64,
}

struct Header {
    dimension: u32,
    ntotal: u64,
    metric: FaissMetric,
}

impl Reader<'_> {
    fn corrupt(&mut self, what: impl std::fmt::Display) -> PluginError {
        let position = self.inner.stream_position().unwrap_or(0);
        PluginError::corrupt(format!(
            "{}: {what} (at byte {position}); not a LEANN HNSW index",
            self.path.display()
        ))
    }

    fn bytes<const N: usize>(&mut self) -> Result<[u8; N], PluginError> {
        let mut buffer = [0u8; N];
        match self.inner.read_exact(&mut buffer) {
            Ok(()) => Ok(buffer),
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(self.corrupt("the file ends early")),
            Err(e) => Err(PluginError::io(self.path, &e)),
        }
    }

    fn u8(&mut self) -> Result<u8, PluginError> {
        Ok(self.bytes::<1>()?[0])
    }

    fn i32(&mut self) -> Result<i32, PluginError> {
        Ok(i32::from_le_bytes(self.bytes()?))
    }

    fn u64(&mut self) -> Result<u64, PluginError> {
        Ok(u64::from_le_bytes(self.bytes()?))
    }

    fn position(&mut self) -> Result<u64, PluginError> {
        self.inner.stream_position().map_err(|e| PluginError::io(self.path, &e))
    }

    fn seek_to(&mut self, position: u64) -> Result<(), PluginError> {
        if position > self.len {
            return Err(self.corrupt(format!(
                "a section ends at byte {position}, past the end ({})",
                self.len
            )));
        }
        self.inner
            .seek(SeekFrom::Start(position))
            .map(|_| ())
            .map_err(|e| PluginError::io(self.path, &e))
    }

    /// Reads a vector's count and checks that `count * width` bytes follow.
    fn vec_len(&mut self, width: u64, what: &str) -> Result<u64, PluginError> {
        let count = self.u64()?;
        let position = self.position()?;
        if count >= MAX_ELEMENTS || position + count * width > self.len {
            return Err(self.corrupt(format!("{what} claims {count} elements")));
        }
        Ok(count)
    }

    fn vec_u64(&mut self, what: &str) -> Result<Vec<u64>, PluginError> {
        let count = self.vec_len(8, what)?;
        (0..count).map(|_| self.u64()).collect()
    }

    fn vec_i32(&mut self, what: &str) -> Result<Vec<i32>, PluginError> {
        let count = self.vec_len(4, what)?;
        (0..count).map(|_| self.i32()).collect()
    }

    fn skip_vec(&mut self, width: u64, what: &str) -> Result<u64, PluginError> {
        let count = self.vec_len(width, what)?;
        let position = self.position()?;
        self.seek_to(position + count * width)?;
        Ok(count)
    }

    fn header(&mut self) -> Result<Header, PluginError> {
        let dimension = self.i32()?;
        let ntotal = self.u64()?;
        let _dummy = self.bytes::<16>()?;
        let _is_trained = self.u8()?;
        let metric = match self.i32()? {
            0 => FaissMetric::InnerProduct,
            1 => FaissMetric::L2,
            other => return Err(self.corrupt(format!("metric type {other} is neither inner product (0) nor L2 (1)"))),
        };
        if dimension <= 0 || ntotal >= MAX_ELEMENTS {
            return Err(self.corrupt(format!("header has dimension {dimension} and {ntotal} vectors")));
        }
        Ok(Header {
            dimension: dimension as u32,
            ntotal,
            metric,
        })
    }

    fn parse(&mut self, with_graph: bool) -> Result<IndexFile, PluginError> {
        let fourcc = self.bytes::<4>()?;
        if &fourcc != FOURCC_HNSW_FLAT {
            return Err(self.corrupt(format!(
                "starts with {:?}, expected \"IHNf\" (IndexHNSWFlat)",
                String::from_utf8_lossy(&fourcc)
            )));
        }
        let header = self.header()?;
        self.skip_vec(8, "assign_probas")?;
        let cum = self.vec_i32("cum_nneighbor_per_level")?;
        let levels_raw = self.vec_i32("levels")?;
        let n = levels_raw.len() as u64;
        if n != header.ntotal {
            return Err(self.corrupt(format!("{n} levels for {} vectors", header.ntotal)));
        }
        let mut levels = Vec::with_capacity(levels_raw.len());
        for level in levels_raw {
            if level < 1 || level as usize > cum.len().saturating_sub(1) {
                return Err(self.corrupt(format!("a node has {level} levels")));
            }
            levels.push(level as u32);
        }
        // Tell the three layouts apart by the known node count, not by guessing from one byte
        // (an unflagged file's first byte is 0x01 whenever N % 256 == 0, and 0x00 when
        // N % 256 == 255): the offsets count right here means no flag byte; a 0x00 byte followed
        // by it is the flagged form; otherwise 0x01 is the compact flag.
        let position = self.position()?;
        let count_here = self.u64()?;
        self.seek_to(position)?;
        let first = self.u8()?;
        let layout = if count_here == n + 1 {
            self.seek_to(position)?;
            GraphLayout::NonCompactUnflagged
        } else if first == 0 && self.u64()? == n + 1 {
            self.seek_to(position + 1)?;
            GraphLayout::NonCompactFlagged
        } else if first == 1 {
            self.seek_to(position + 1)?;
            GraphLayout::Compact
        } else {
            return Err(self.corrupt("the graph section is neither compact nor faiss's layout"));
        };
        let graph_data = match layout {
            GraphLayout::Compact => self.compact_graph(&levels, with_graph)?,
            _ => self.fixed_graph(&levels, &cum, with_graph)?,
        };
        let entry_point = self.i32()?;
        let max_level = self.i32()?;
        // A search walks every level down from max_level: a value past the nodes' own levels
        // would make it loop over levels nobody has.
        let highest = levels.iter().max().map_or(-1, |levels| *levels as i32 - 1);
        if max_level < -1 || max_level > highest {
            return Err(self.corrupt(format!(
                "max_level is {max_level}, but the highest node level is {highest}"
            )));
        }
        let _ef_construction = self.i32()?;
        let _ef_search = self.i32()?;
        let _upper_beam = self.i32()?;
        let storage_start = self.position()?;
        let storage_fourcc = self.bytes::<4>()?;
        let mut graph_data = graph_data;
        if layout == GraphLayout::Compact {
            // LEANN's compact files put the storage fourcc before the neighbour array.
            let neighbors = if with_graph {
                Some(self.vec_i32("compact_neighbors_data")?)
            } else {
                self.skip_vec(4, "compact_neighbors_data")?;
                None
            };
            if let (Some(graph), Some(neighbors)) = (graph_data.as_mut(), neighbors) {
                graph.neighbors = self.checked_ids(&neighbors, n)?;
                if graph.level_ptr.last().copied() != Some(graph.neighbors.len()) {
                    return Err(self.corrupt("compact_level_ptr does not end at the neighbour count"));
                }
            }
        }
        let (vectors, storage_bytes) = match &storage_fourcc {
            FOURCC_NULL => (None, 4),
            FOURCC_FLAT_IP | FOURCC_FLAT_L2 | FOURCC_FLAT if layout != GraphLayout::Compact => {
                let storage = self.header()?;
                let count = self.vec_len(4, "the stored vectors")?;
                if storage.ntotal != n
                    || count != n * u64::from(storage.dimension)
                    || storage.dimension != header.dimension
                {
                    return Err(self.corrupt(format!(
                        "the storage holds {} vectors of {} dimensions ({count} floats) for {n} nodes of {}",
                        storage.ntotal, storage.dimension, header.dimension
                    )));
                }
                let offset = self.position()?;
                let end = offset + count * 4;
                (
                    Some(StoredVectors {
                        offset,
                        rows: n,
                        dimension: storage.dimension,
                    }),
                    end - storage_start,
                )
            }
            other => {
                return Err(self.corrupt(format!(
                    "unsupported storage {:?} (expected \"null\", \"IxFI\" or \"IxF2\")",
                    String::from_utf8_lossy(other)
                )));
            }
        };
        let graph = match graph_data {
            Some(mut graph) => {
                graph.entry_point = if n == 0 {
                    None
                } else {
                    if entry_point < 0 || entry_point as u64 >= n {
                        return Err(self.corrupt(format!("entry point {entry_point} for {n} nodes")));
                    }
                    Some(entry_point as u32)
                };
                graph.max_level = max_level;
                Some(graph)
            }
            None => None,
        };
        Ok(IndexFile {
            dimension: header.dimension,
            ntotal: n,
            metric: header.metric,
            layout,
            graph,
            vectors,
            storage_bytes,
            file_bytes: 0,
        })
    }

    fn checked_ids(&mut self, raw: &[i32], n: u64) -> Result<Vec<u32>, PluginError> {
        let mut ids = Vec::with_capacity(raw.len());
        for id in raw {
            if *id < 0 || *id as u64 >= n {
                return Err(self.corrupt(format!("neighbour id {id} is outside 0..{n}")));
            }
            ids.push(*id as u32);
        }
        Ok(ids)
    }

    /// LEANN's CSR layout; the neighbour array comes later, after the storage fourcc.
    fn compact_graph(&mut self, levels: &[u32], with_graph: bool) -> Result<Option<Graph>, PluginError> {
        if !with_graph {
            self.skip_vec(8, "compact_level_ptr")?;
            self.skip_vec(8, "compact_node_offsets")?;
            return Ok(None);
        }
        let level_ptr = self.vec_u64("compact_level_ptr")?;
        let node_offsets = self.vec_u64("compact_node_offsets")?;
        if node_offsets.len() != levels.len() + 1 {
            return Err(self.corrupt(format!(
                "compact_node_offsets has {} entries for {} nodes",
                node_offsets.len(),
                levels.len()
            )));
        }
        for (node, level) in levels.iter().enumerate() {
            let (start, end) = (node_offsets[node], node_offsets[node + 1]);
            // A node owns one pointer per level plus the closing one.
            if end < start || end as usize > level_ptr.len() || end - start != u64::from(*level) + 1 {
                return Err(self.corrupt(format!(
                    "compact_node_offsets of node {node} do not match its {level} levels"
                )));
            }
        }
        if level_ptr.windows(2).any(|w| w[0] > w[1]) {
            return Err(self.corrupt("compact_level_ptr is not monotonic"));
        }
        Ok(Some(Graph {
            levels: levels.to_vec(),
            node_offsets: node_offsets.iter().map(|o| *o as usize).collect(),
            level_ptr: level_ptr.iter().map(|p| *p as usize).collect(),
            neighbors: Vec::new(),
            entry_point: None,
            max_level: -1,
        }))
    }

    /// faiss's fixed-width layout, turned into CSR (slots end at the first -1).
    fn fixed_graph(&mut self, levels: &[u32], cum: &[i32], with_graph: bool) -> Result<Option<Graph>, PluginError> {
        let n = levels.len() as u64;
        if !with_graph {
            self.skip_vec(8, "offsets")?;
            self.skip_vec(4, "neighbors")?;
            return Ok(None);
        }
        let offsets = self.vec_u64("offsets")?;
        let slots = self.vec_i32("neighbors")?;
        if offsets.len() as u64 != n + 1 || offsets.last().copied() != Some(slots.len() as u64) {
            return Err(self.corrupt("offsets do not match the neighbour slots"));
        }
        let mut links = Vec::with_capacity(levels.len());
        for (node, level) in levels.iter().enumerate() {
            let base = offsets[node];
            let mut node_links = Vec::with_capacity(*level as usize);
            for l in 0..*level as usize {
                // A damaged file can hold negative or decreasing cumulative counts and offsets.
                let slot = |c: i32| u64::try_from(c).ok().and_then(|c| base.checked_add(c));
                let range = slot(cum[l])
                    .zip(slot(cum[l + 1]))
                    .filter(|(begin, end)| begin <= end && *end <= offsets[node + 1].min(slots.len() as u64));
                let Some((begin, end)) = range else {
                    return Err(self.corrupt(format!("node {node}'s slots overflow its offsets")));
                };
                let list: Vec<i32> = slots[begin as usize..end as usize]
                    .iter()
                    .copied()
                    .take_while(|id| *id >= 0)
                    .collect();
                node_links.push(self.checked_ids(&list, n)?);
            }
            links.push(node_links);
        }
        Ok(Some(Graph::from_links(&links, None, -1)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the `leann_index` fuzz target: decreasing `cum_nneighbor_per_level` made a slice
    /// whose start was past its end, a panic instead of an error.
    /// A two-dimensional, one-node `IndexHNSWFlat` file without the flag byte or stored vectors,
    /// with the graph fields given.
    fn one_node_index(cum: &[i32], levels: i32, slots: usize, max_level: i32) -> Vec<u8> {
        let mut bytes = FOURCC_HNSW_FLAT.to_vec();
        write_header(&mut bytes, 2, 1, FaissMetric::L2).expect("header");
        let vec_u64 = |out: &mut Vec<u8>, values: &[u64]| {
            out.extend_from_slice(&(values.len() as u64).to_le_bytes());
            values.iter().for_each(|v| out.extend_from_slice(&v.to_le_bytes()));
        };
        let vec_i32 = |out: &mut Vec<u8>, values: &[i32]| {
            out.extend_from_slice(&(values.len() as u64).to_le_bytes());
            values.iter().for_each(|v| out.extend_from_slice(&v.to_le_bytes()));
        };
        vec_u64(&mut bytes, &[0]); // assign_probas (skipped)
        vec_i32(&mut bytes, cum); // cum_nneighbor_per_level
        vec_i32(&mut bytes, &[levels]);
        vec_u64(&mut bytes, &[0, slots as u64]); // offsets (no flag byte)
        vec_i32(&mut bytes, &vec![-1; slots]); // neighbors
        for value in [0i32, max_level, 40, 16, 1] {
            bytes.extend_from_slice(&value.to_le_bytes());
        }
        bytes.extend_from_slice(FOURCC_NULL);
        bytes
    }

    #[test]
    fn decreasing_cumulative_neighbour_counts_are_corrupt_not_a_panic() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("x.index");
        // cum_nneighbor_per_level decreasing; one node on two levels.
        std::fs::write(&path, one_node_index(&[0, 4, 2], 2, 4, 1)).expect("write");
        let error = read(&path, true).expect_err("corrupt");
        assert!(error.message.contains("node 0's slots overflow its offsets"), "{error}");
    }

    #[test]
    fn a_max_level_above_every_node_is_corrupt_not_a_long_search() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("x.index");
        std::fs::write(&path, one_node_index(&[0, 4, 6], 2, 6, 1)).expect("write");
        read(&path, true).expect("a node on two levels, max_level 1");
        std::fs::write(&path, one_node_index(&[0, 4, 6], 2, 6, 1_000_000)).expect("write");
        let error = read(&path, true).expect_err("corrupt");
        assert!(
            error
                .message
                .contains("max_level is 1000000, but the highest node level is 1"),
            "{error}"
        );
    }

    #[test]
    fn default_probas_match_faiss_for_m_32() {
        let (probas, cum) = default_probas(32);
        assert_eq!(
            probas,
            vec![
                0.96875,
                0.030273444950580597,
                0.0009460453293286264,
                2.9563916541519575e-05,
                9.238728466698376e-07,
                2.88710388929303e-08
            ]
        );
        assert_eq!(cum, vec![0, 64, 96, 128, 160, 192, 224]);
    }

    fn sample_graph() -> Graph {
        let links = vec![vec![vec![1, 2], vec![2]], vec![vec![0]], vec![vec![0, 1], vec![0]]];
        Graph::from_links(&links, Some(2), 1)
    }

    #[test]
    fn a_written_index_reads_back_in_every_shape() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("x.index");
        let graph = sample_graph();
        let vectors: Vec<f32> = (0..6).map(|i| i as f32 * 0.5 - 1.0).collect();
        let params = WriteParams {
            dimension: 2,
            metric: FaissMetric::L2,
            m: 32,
            ef_construction: 200,
            ef_search: 16,
            body: Body::Full(&vectors),
        };
        write(&path, &graph, &params).expect("writes");
        let parsed = read(&path, true).expect("reads");
        assert_eq!(parsed.layout, GraphLayout::NonCompactFlagged);
        assert_eq!(parsed.metric, FaissMetric::L2);
        assert_eq!(parsed.graph.as_ref(), Some(&graph));
        let stored = parsed.vectors.expect("vectors");
        let mut rows = Vec::new();
        read_rows(&path, &stored, 1, 2, &mut rows).expect("rows");
        assert_eq!(rows, vectors[2..6]);
        assert_eq!(parsed.storage_bytes, 4 + HEADER_BYTES + 8 + 24);
        let full_bytes = parsed.file_bytes;
        // Pruned and compact: the same graph, null storage.
        for (body, layout) in [
            (Body::Pruned, GraphLayout::NonCompactFlagged),
            (Body::Compact, GraphLayout::Compact),
        ] {
            write(&path, &graph, &WriteParams { body, ..params }).expect("writes");
            let parsed = read(&path, true).expect("reads");
            assert_eq!(parsed.layout, layout);
            assert_eq!(parsed.graph.as_ref(), Some(&graph), "{body:?}");
            assert!(parsed.vectors.is_none());
            assert!(parsed.file_bytes < full_bytes);
            let skipped = read(&path, false).expect("reads");
            assert!(skipped.vectors.is_none() && skipped.graph.is_none());
        }
    }

    #[test]
    fn the_compact_layout_is_leanns_csr() {
        // Hand-assembled from LEANN's reader: levels, 0x01, level_ptr, node_offsets, five i32s,
        // "null", then the neighbour array.
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("x.index");
        let graph = sample_graph();
        let params = WriteParams {
            dimension: 2,
            metric: FaissMetric::InnerProduct,
            m: 32,
            ef_construction: 200,
            ef_search: 16,
            body: Body::Compact,
        };
        write(&path, &graph, &params).expect("writes");
        let bytes = std::fs::read(&path).expect("read");
        let (probas, cum) = default_probas(32);
        let body_at = 4 + HEADER_BYTES as usize + 8 + 8 * probas.len() + 8 + 4 * cum.len() + 8 + 4 * 3;
        let mut want = vec![1u8];
        let vec_u64 = |out: &mut Vec<u8>, values: &[u64]| {
            out.extend((values.len() as u64).to_le_bytes());
            values.iter().for_each(|v| out.extend(v.to_le_bytes()));
        };
        // Node 0: levels 0 and 1 ([1, 2], [2]); node 1: [0]; node 2: [0, 1], [0].
        vec_u64(&mut want, &[0, 2, 3, 3, 4, 4, 6, 7]);
        vec_u64(&mut want, &[0, 3, 5, 8]);
        for value in [2i32, 1, 200, 16, 1] {
            want.extend(value.to_le_bytes());
        }
        want.extend(b"null");
        want.extend(7u64.to_le_bytes());
        for neighbor in [1i32, 2, 2, 0, 0, 1, 0] {
            want.extend(neighbor.to_le_bytes());
        }
        assert_eq!(bytes[body_at..], want[..]);
    }

    #[test]
    fn files_without_the_flag_byte_are_read_whatever_their_node_count() {
        // N % 256 == 0 puts 0x01 first (the compact flag), N % 256 == 255 puts 0x00 first.
        for n in [1usize, 255, 256, 300] {
            let links: Vec<Vec<Vec<u32>>> = (0..n).map(|i| vec![vec![((i + 1) % n) as u32]]).collect();
            let graph = Graph::from_links(&links, Some(0), 0);
            let dir = tempfile::tempdir().expect("temp dir");
            let path = dir.path().join("x.index");
            let params = WriteParams {
                dimension: 1,
                metric: FaissMetric::InnerProduct,
                m: 32,
                ef_construction: 40,
                ef_search: 16,
                body: Body::Pruned,
            };
            write(&path, &graph, &params).expect("writes");
            let mut bytes = std::fs::read(&path).expect("read");
            let (probas, cum) = default_probas(32);
            let flag_at = 4 + HEADER_BYTES as usize + 8 + 8 * probas.len() + 8 + 4 * cum.len() + 8 + 4 * n;
            assert_eq!(bytes[flag_at], 0);
            bytes.remove(flag_at);
            std::fs::write(&path, &bytes).expect("write");
            let parsed = read(&path, true).expect("reads");
            assert_eq!(parsed.layout, GraphLayout::NonCompactUnflagged, "n = {n}");
            assert_eq!(parsed.graph.as_ref(), Some(&graph), "n = {n}");
        }
    }

    #[test]
    fn garbage_is_corrupt_and_names_the_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("bad.index");
        std::fs::write(&path, b"IHNfxx").expect("write");
        let error = read(&path, true).expect_err("truncated");
        assert_eq!(error.code, ragged_plugin_api::ErrorCode::Corrupt);
        assert!(
            error.message.contains("bad.index: the file ends early"),
            "{}",
            error.message
        );
        std::fs::write(&path, b"IxFI").expect("write");
        let error = read(&path, true).expect_err("wrong fourcc");
        assert!(error.message.contains("expected \"IHNf\""), "{}", error.message);
    }
}
