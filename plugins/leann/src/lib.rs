//! The `leann` store plugin: LEANN indexes (PyPI `leann` 0.3.8, HNSW backend) read and written
//! with plain file I/O, without Python or faiss.
//!
//! A store is a directory (a LEANN "project"); a collection is one index in LEANN's CLI layout,
//! `<store>/.leann/indexes/<collection>/documents.leann*`, so `leann list` and
//! `leann search <collection>` run in the store directory see it. Indexes that LEANN's Python API
//! wrote straight into the store directory (`<store>/<name>.leann.meta.json`) are read too.
//!
//! It writes two shapes (store option `shape`): `full`, a real HNSW graph built in Rust plus the
//! stored vectors, exact and readable without a model, which LEANN searches without recomputing
//! anything; and `compact`, LEANN's CSR graph without vectors (its storage saving), written only
//! when a sample of the vectors is what the index's embedding model computes for the documents. It
//! reads every shape LEANN writes: full indexes exactly, compact and pruned ones with their vectors
//! recomputed from the passages by the model the index names (run by `ragged-embed`, natively or
//! over HTTP, never downloaded), which makes them approximate, not bit-exact.
//!
//! A tour of the crate, one concern per module:
//! - this file: opening a store, its options and capabilities, and the [`Backend`] operations;
//! - `layout`: where a collection's files are, listing, and the commit of a rebuilt index;
//! - `meta`: `NAME.leann.meta.json`;
//! - `passages`: the passages file, its offset pickle and `ids.txt`;
//! - `index_file`: faiss's `IndexHNSWFlat` binary in LEANN's three shapes;
//! - `hnsw`: building (with the neighbour-selection heuristic) and searching the graph;
//! - `recompute`: the embedding models of indexes without vectors, and the vectors they give;
//! - `staging`: the durable staging area of a load;
//! - `read` and `write`: the operations (`write` also deletes, by rebuilding).
//! - `fuzzing` (not API): entry points for the fuzz targets in `tests/fuzz`.
//!
//! See `docs/backends/leann.md` for the format mapping and its guarantees.

#![deny(unsafe_code)]

#[doc(hidden)]
pub mod fuzzing;
mod hnsw;
mod index_file;
mod layout;
mod meta;
mod passages;
mod read;
mod recompute;
mod staging;
mod write;

use std::collections::HashMap;
use std::fs;
use std::io::ErrorKind;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use ragged_plugin_api::{
    Access, Backend, BatchStream, Capabilities, CollectionInfo, ErrorCode, ExtractRequest, Hit, LoadRequest,
    LoadSummary, OpenRequest, Plugin, PluginError, StorageReport,
};

use crate::layout::IndexPaths;
use crate::read::{Loaded, OpenIndex};
use crate::recompute::Embedders;

/// The store options this plugin accepts.
const KNOWN_OPTIONS: &[&str] = &["shape", "model", "m", "ef_construction", "ef_search", "seed"];

/// The shape of an index: what its `.index` file keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    /// Graph plus stored vectors: exact, searchable and readable without a model.
    Full,
    /// LEANN's CSR graph without vectors (its storage saving): vectors are recomputed from the
    /// passages with the index's embedding model.
    Compact,
    /// faiss's graph layout without vectors (the `leann build` CLI's default). ragged writes it
    /// only to keep a pruned index pruned when it rewrites one.
    Pruned,
}

impl Shape {
    /// The shape in the words of the docs and of `CollectionInfo.extras.leann_shape`.
    pub fn name(self) -> &'static str {
        match self {
            Shape::Full => "full",
            Shape::Compact => "compact",
            Shape::Pruned => "pruned",
        }
    }
}

/// The options of an open store, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Settings {
    /// The shape loads write; `None` keeps an existing collection's shape and writes new ones
    /// full.
    pub shape: Option<Shape>,
    /// The model named in new indexes' meta; `None` means the collection's own, else LEANN's default.
    pub model: Option<String>,
    pub m: usize,
    pub ef_construction: usize,
    pub ef_search: usize,
    pub seed: u64,
}

impl Default for Settings {
    fn default() -> Settings {
        // LEANN's defaults: M = 32, efConstruction = 200, search complexity 64.
        Settings {
            shape: None,
            model: None,
            m: 32,
            ef_construction: 200,
            ef_search: 64,
            seed: 0,
        }
    }
}

/// An open LEANN store.
pub struct LeannStore {
    /// The store directory, absolute.
    root: PathBuf,
    access: Access,
    settings: Settings,
    /// Graphs and vectors loaded for queries, keyed by collection, valid while the index file is
    /// unchanged.
    loaded: Mutex<HashMap<String, (FileStamp, Arc<Loaded>)>>,
    /// Embedding models loaded for indexes that keep no vectors.
    embedders: Arc<Embedders>,
}

/// What identifies a version of a file cheaply.
type FileStamp = (PathBuf, u64, Option<SystemTime>);

fn parse_options(request: &OpenRequest) -> Result<Settings, PluginError> {
    let mut settings = Settings::default();
    let number = |key: &str, value: &str, min: u64, max: u64| -> Result<u64, PluginError> {
        value
            .parse::<u64>()
            .ok()
            .filter(|n| (min..=max).contains(n))
            .ok_or_else(|| {
                PluginError::invalid_input(format!(
                    "option '{key}' must be a whole number from {min} to {max}, not '{value}'"
                ))
            })
    };
    for (key, value) in &request.options {
        match key.as_str() {
            "shape" => {
                settings.shape = match value.as_str() {
                    "full" => Some(Shape::Full),
                    "compact" => Some(Shape::Compact),
                    other => {
                        return Err(PluginError::invalid_input(format!(
                            "unknown value '{other}' for option 'shape' (expected full or compact)"
                        )));
                    }
                }
            }
            "model" if !value.is_empty() => settings.model = Some(value.clone()),
            "model" => return Err(PluginError::invalid_input("option 'model' is empty")),
            "m" => settings.m = number(key, value, 2, 512)? as usize,
            "ef_construction" => settings.ef_construction = number(key, value, 1, 100_000)? as usize,
            "ef_search" => settings.ef_search = number(key, value, 1, 100_000)? as usize,
            "seed" => settings.seed = number(key, value, 0, u64::MAX)?,
            other => {
                return Err(PluginError::invalid_input(format!(
                    "unknown option '{other}' for the leann store (known options: {})",
                    KNOWN_OPTIONS.join(", ")
                )));
            }
        }
    }
    Ok(settings)
}

impl LeannStore {
    /// The index of a collection that exists.
    fn open_index(&self, collection: &str) -> Result<OpenIndex, PluginError> {
        match IndexPaths::find(&self.root, collection)? {
            Some(paths) => OpenIndex::open(paths, self.embedders.clone()),
            None => Err(PluginError::not_found(format!(
                "no collection '{collection}' in the leann store at {}",
                self.root.display()
            ))),
        }
    }

    /// Refuses `operation` when the store was opened read-only.
    fn writable(&self, operation: &str) -> Result<(), PluginError> {
        match self.access {
            Access::ReadWrite => Ok(()),
            Access::ReadOnly => Err(PluginError::new(
                ErrorCode::ReadOnly,
                format!(
                    "the leann store at {} is open read-only, so {operation} is refused",
                    self.root.display()
                ),
            )),
        }
    }

    fn forget(&self, collection: &str) {
        if let Ok(mut loaded) = self.loaded.lock() {
            loaded.remove(collection);
        }
    }

    /// The graph and vectors of a collection, loaded once per version of its index file.
    fn loaded(&self, collection: &str) -> Result<Arc<Loaded>, PluginError> {
        let index = self.open_index(collection)?;
        let metadata = fs::metadata(&index.index_path).map_err(|e| PluginError::io(&index.index_path, &e))?;
        let stamp: FileStamp = (index.index_path.clone(), metadata.len(), metadata.modified().ok());
        if let Ok(cache) = self.loaded.lock()
            && let Some((cached, loaded)) = cache.get(collection)
            && *cached == stamp
        {
            return Ok(loaded.clone());
        }
        let loaded = Arc::new(Loaded::load(index)?);
        if let Ok(mut cache) = self.loaded.lock() {
            cache.insert(collection.to_owned(), (stamp, loaded.clone()));
        }
        Ok(loaded)
    }
}

impl Plugin for LeannStore {
    const CAPABILITIES: Capabilities = Capabilities::READ
        .union(Capabilities::WRITE)
        .union(Capabilities::UPSERT)
        .union(Capabilities::QUERY)
        .union(Capabilities::STORES_VECTORS)
        .union(Capabilities::NEEDS_EMBEDDER)
        .union(Capabilities::DELETE);

    fn open(request: &OpenRequest) -> Result<LeannStore, PluginError> {
        let settings = parse_options(request)?;
        if request.location.is_empty() {
            return Err(PluginError::invalid_input("the leann store location is empty"));
        }
        let root = std::path::absolute(&request.location)
            .map_err(|e| PluginError::invalid_input(format!("{}: {e}", request.location)))?;
        if request.access == Access::ReadWrite {
            layout::create_dir_synced(&root)?;
        }
        match fs::metadata(&root) {
            Ok(metadata) if metadata.is_dir() => {}
            Ok(_) => {
                return Err(PluginError::invalid_input(format!(
                    "{} is not a directory (a leann store is a project directory holding .leann/indexes)",
                    root.display()
                )));
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Err(PluginError::not_found(format!(
                    "no leann store at {}: the directory does not exist",
                    root.display()
                )));
            }
            Err(e) => return Err(PluginError::io(&root, &e)),
        }
        Ok(LeannStore {
            root,
            access: request.access,
            settings,
            loaded: Mutex::new(HashMap::new()),
            embedders: Arc::default(),
        })
    }
}

impl Backend for LeannStore {
    fn list_collections(&self) -> Result<Vec<String>, PluginError> {
        layout::list(&self.root)
    }

    fn describe(&self, collection: &str) -> Result<CollectionInfo, PluginError> {
        Ok(self.open_index(collection)?.describe())
    }

    fn count(&self, collection: &str) -> Result<u64, PluginError> {
        Ok(self.open_index(collection)?.count())
    }

    fn extract(&self, collection: &str, request: &ExtractRequest) -> Result<BatchStream, PluginError> {
        read::extract(Arc::new(self.open_index(collection)?), request)
    }

    fn load(&self, request: &LoadRequest, batches: BatchStream) -> Result<LoadSummary, PluginError> {
        self.writable("load")?;
        self.forget(&request.collection.name);
        write::load(&self.root, &self.settings, &self.embedders, request, batches)
    }

    fn sample(&self, collection: &str, n: u64, seed: u64) -> Result<BatchStream, PluginError> {
        read::sample(&self.open_index(collection)?, n, seed)
    }

    fn fetch(&self, collection: &str, ids: &[String]) -> Result<BatchStream, PluginError> {
        read::fetch(&self.open_index(collection)?, ids)
    }

    fn query(&self, collection: &str, vector: &[f32], k: u32) -> Result<Vec<Hit>, PluginError> {
        self.loaded(collection)?
            .query(vector, k as usize, self.settings.ef_search)
    }

    fn storage(&self, collection: &str) -> Result<StorageReport, PluginError> {
        self.open_index(collection)?.storage()
    }

    fn files(&self, collection: &str) -> Result<Vec<String>, PluginError> {
        Ok(self
            .open_index(collection)?
            .files()?
            .iter()
            .map(|p| p.display().to_string())
            .collect())
    }

    fn drop_collection(&self, collection: &str) -> Result<(), PluginError> {
        self.writable("drop_collection")?;
        self.forget(collection);
        let _lock = match IndexPaths::find(&self.root, collection)? {
            Some(paths) if paths.cli => Some(layout::lock(&paths.dir)?),
            _ => None,
        };
        let index = self.open_index(collection)?;
        let paths = index.paths.clone();
        let files = index.files()?;
        drop(index);
        // Removing the meta file first is the commit: a crash after it leaves files that no
        // longer form a collection, never a collection with files missing.
        let meta = paths.meta();
        fs::remove_file(&meta).map_err(|e| PluginError::io(&meta, &e))?;
        layout::sync_dir(meta.parent().unwrap_or(&paths.dir))?;
        if paths.cli {
            fs::remove_dir_all(&paths.dir).map_err(|e| PluginError::io(&paths.dir, &e))?;
            layout::sync_dir(&layout::indexes_dir(&self.root))
        } else {
            for file in files.iter().filter(|f| **f != meta) {
                match fs::remove_file(file) {
                    Ok(()) => {}
                    Err(e) if e.kind() == ErrorKind::NotFound => {}
                    Err(e) => return Err(PluginError::io(file, &e)),
                }
            }
            layout::sync_dir(&paths.dir)
        }
    }

    fn delete(&self, collection: &str, ids: &[String]) -> Result<u64, PluginError> {
        self.writable("delete")?;
        self.forget(collection);
        write::delete(&self.root, &self.settings, &self.embedders, collection, ids)
    }
}

/// Not API (no semver): the graph of a `.index` file, for the interop tests that compare the
/// shapes LEANN writes.
#[doc(hidden)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraphDump {
    /// Neighbour lists per node and level.
    pub lists: Vec<Vec<Vec<u32>>>,
    pub entry_point: Option<u32>,
    pub max_level: i32,
    /// `compact`, `flagged` (non-compact with LEANN's flag byte) or `unflagged`.
    pub layout: &'static str,
}

/// Not API (no semver): reads the graph of a `.index` file.
#[doc(hidden)]
pub fn inspect_graph(index_file: &std::path::Path) -> Result<GraphDump, PluginError> {
    let parsed = index_file::read(index_file, true)?;
    let graph = parsed
        .graph
        .ok_or_else(|| PluginError::new(ErrorCode::Internal, "the graph was asked for but not read"))?;
    let lists = graph.to_links();
    let layout = match parsed.layout {
        index_file::GraphLayout::Compact => "compact",
        index_file::GraphLayout::NonCompactFlagged => "flagged",
        index_file::GraphLayout::NonCompactUnflagged => "unflagged",
    };
    Ok(GraphDump {
        lists,
        entry_point: graph.entry_point,
        max_level: graph.max_level,
        layout,
    })
}

ragged_plugin_api::export_plugin!(LeannStore);

#[cfg(test)]
mod tests;
