//! The ChromaDB store plugin: reads and writes chromadb 1.5 persistent directories (what
//! `chromadb.PersistentClient(path=...)` creates) with no Python and no Chroma server.
//!
//! Code map:
//! - [`sqlite`]: opening `chroma.sqlite3` (read-only without side effects), version checks;
//! - [`layout`]: the catalog (tenants, databases, collections, segments, distance space);
//! - [`hnsw`] and [`pickle`]: the persisted HNSW files and the id-to-label map;
//! - [`wal`]: the write-ahead log's encoding (chroma's own JSON number rules);
//! - [`read`]: a collection exactly as `collection.get()` returns it, streamed in batches;
//! - [`write`]: new stores and collections, records appended to (or deleted through) the log for
//!   chroma to index, dropped collections;
//! - [`value`]: typed metadata values.
//!
//! The design and its limits are described in `docs/backends/chroma.md`.

#![deny(unsafe_code)]

pub mod hnsw;
pub mod ids;
pub mod layout;
pub mod pickle;
pub mod read;
mod rows;
pub mod sqlite;
pub mod value;
pub mod wal;
pub mod write;

use std::collections::{BinaryHeap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use ragged_plugin_api::arrow::arrow_array::cast::AsArray;
use ragged_plugin_api::arrow::arrow_array::types::Float32Type;
use ragged_plugin_api::arrow::batch_to_records;
use ragged_plugin_api::sampling::choose_positions;
use ragged_plugin_api::{
    Access, Backend, BatchStream, Capabilities, CollectionInfo, ErrorCode, ExtractRequest, Hit, LoadRequest,
    LoadSummary, OpenRequest, Plugin, PluginError, StorageReport,
};
use rusqlite::Connection;
use serde_json::{Map, Value, json};

use crate::layout::Collection;
use crate::read::{Batches, Plan};

/// An open chroma persistent directory.
pub struct ChromaStore {
    root: PathBuf,
    access: Access,
    /// Plans by collection id, reused while the files they were read from are unchanged: a
    /// migration describes, counts, extracts and samples the same collection, and each plan
    /// reads every id, label and log row of it (a third of a chroma -> lance migration's time
    /// when each call built its own).
    plans: Mutex<HashMap<String, CachedPlan>>,
}

struct CachedPlan {
    stamp: FilesStamp,
    plan: Arc<Plan>,
}

/// Length and modification time of each file a plan is read from (`None` when absent). Writes
/// through this store also drop its plans, for filesystems whose timestamps are coarse.
type FilesStamp = Vec<Option<(u64, SystemTime)>>;

fn files_stamp(root: &Path, collection: &Collection) -> FilesStamp {
    let db = sqlite::db_path(root);
    let mut wal = db.clone().into_os_string();
    wal.push("-wal");
    let segment = collection.segment_dir(root);
    let files = [
        db,
        PathBuf::from(wal),
        segment.join(pickle::FILE),
        segment.join("header.bin"),
        segment.join("data_level0.bin"),
        segment.join("length.bin"),
    ];
    files
        .iter()
        .map(|path| {
            let meta = std::fs::metadata(path).ok()?;
            Some((meta.len(), meta.modified().ok()?))
        })
        .collect()
}

impl ChromaStore {
    fn db(&self) -> PathBuf {
        sqlite::db_path(&self.root)
    }

    /// A fresh read-only connection: every operation opens its own, so the store is `Sync`
    /// without locks and a stream owns the connection it reads from.
    fn connect(&self) -> Result<Connection, PluginError> {
        sqlite::open_read_only(&self.root)
    }

    fn catalog(&self, conn: &Connection) -> Result<Vec<Collection>, PluginError> {
        layout::read_catalog(conn, &self.db())
    }

    fn collection(&self, conn: &Connection, name: &str) -> Result<Collection, PluginError> {
        self.catalog(conn)?
            .into_iter()
            .find(|c| c.ragged_name() == name)
            .ok_or_else(|| PluginError::not_found(format!("{}: no collection '{name}'", self.root.display())))
    }

    /// Refuses any change to a store opened read-only, before anything is looked at.
    fn writable(&self) -> Result<(), PluginError> {
        if self.access == Access::ReadOnly {
            return Err(PluginError::new(
                ErrorCode::ReadOnly,
                format!("{}: store opened read-only", self.root.display()),
            ));
        }
        Ok(())
    }

    /// A connection and the collection's plan, built or reused.
    fn plan(&self, name: &str) -> Result<(Connection, Arc<Plan>), PluginError> {
        let conn = self.connect()?;
        let collection = self.collection(&conn, name)?;
        let stamp = files_stamp(&self.root, &collection);
        let mut plans = self.plans.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(cached) = plans.get(&collection.id)
            && cached.stamp == stamp
        {
            return Ok((conn, cached.plan.clone()));
        }
        let plan = Arc::new(Plan::build(&conn, &self.root, &collection)?);
        plans.insert(
            collection.id,
            CachedPlan {
                stamp,
                plan: plan.clone(),
            },
        );
        Ok((conn, plan))
    }

    /// Forgets every plan: called by each write.
    fn forget_plans(&self) {
        self.plans.lock().unwrap_or_else(PoisonError::into_inner).clear();
    }
}

/// The portable description of a collection.
fn describe(collection: &Collection, count: u64) -> Result<CollectionInfo, PluginError> {
    let mut metadata = Map::new();
    for (key, value) in &collection.metadata {
        // `hnsw:*` keys are index settings, reported as `index_params`.
        if key.starts_with("hnsw:") {
            continue;
        }
        let value = value
            .to_json()
            .map_err(|e| PluginError::corrupt(format!("collection '{}' metadata '{key}': {e}", collection.name)))?;
        metadata.insert(key.clone(), value);
    }
    let parse = |text: &Option<String>| -> Value {
        text.as_deref()
            .and_then(|t| serde_json::from_str(t).ok())
            .unwrap_or(Value::Null)
    };
    let mut extras = Map::new();
    extras.insert("tenant".into(), json!(collection.tenant));
    extras.insert("database".into(), json!(collection.database));
    extras.insert("collection_name".into(), json!(collection.name));
    extras.insert("collection_id".into(), json!(collection.id));
    extras.insert("vector_segment".into(), json!(collection.vector_segment));
    extras.insert("metadata_segment".into(), json!(collection.metadata_segment));
    extras.insert("config_json".into(), parse(&collection.config_json));
    extras.insert("schema".into(), parse(&collection.schema_json));
    let legacy: Map<String, Value> = collection
        .metadata
        .iter()
        .filter(|(k, _)| k.starts_with("hnsw:"))
        .filter_map(|(k, v)| v.to_json().ok().map(|v| (k.clone(), v)))
        .collect();
    if !legacy.is_empty() {
        extras.insert("legacy_hnsw_metadata".into(), Value::Object(legacy));
    }
    Ok(CollectionInfo {
        name: collection.ragged_name(),
        dimension: collection.dimension.unwrap_or(0),
        metric: collection.space,
        count,
        embedding_model: embedding_model(&extras["schema"], &extras["config_json"]),
        index_params: Some(collection.index_params.clone()),
        metadata,
        extras,
    })
}

/// The sentence-transformers model of the collection's embedding function, as chromadb records it
/// in the schema (chroma >= 1.3) or the configuration: `default` is chromadb's ONNX export of
/// all-MiniLM-L6-v2, `sentence_transformer` names its model. Other functions (OpenAI, Cohere...)
/// need their service, so they give `None`.
fn embedding_model(schema: &Value, config: &Value) -> Option<String> {
    let in_vector_index = |v: &Value| v.pointer("/float_list/vector_index/config/embedding_function").cloned();
    let function = schema
        .pointer("/keys/#embedding")
        .and_then(in_vector_index)
        .or_else(|| schema.get("defaults").and_then(in_vector_index))
        .or_else(|| config.get("embedding_function").cloned())?;
    match function.get("name").and_then(Value::as_str)? {
        "default" => Some("sentence-transformers/all-MiniLM-L6-v2".to_owned()),
        "sentence_transformer" => {
            let model = function.pointer("/config/model_name").and_then(Value::as_str)?;
            // sentence-transformers reads a bare name as one of its own models.
            Some(if model.contains('/') {
                model.to_owned()
            } else {
                format!("sentence-transformers/{model}")
            })
        }
        _ => None,
    }
}

impl Backend for ChromaStore {
    fn list_collections(&self) -> Result<Vec<String>, PluginError> {
        let conn = self.connect()?;
        let mut names: Vec<String> = self.catalog(&conn)?.iter().map(Collection::ragged_name).collect();
        names.sort();
        Ok(names)
    }

    fn describe(&self, collection: &str) -> Result<CollectionInfo, PluginError> {
        let (_, plan) = self.plan(collection)?;
        describe(&plan.collection, plan.len() as u64)
    }

    fn extract(&self, collection: &str, request: &ExtractRequest) -> Result<BatchStream, PluginError> {
        let (conn, plan) = self.plan(collection)?;
        let batches = Batches::new(conn, plan, request.start, request.batch_size, None);
        Ok(BatchStream::from_reader(if request.ids_only {
            batches.ids_only()
        } else {
            batches
        }))
    }

    fn load(&self, request: &LoadRequest, batches: BatchStream) -> Result<LoadSummary, PluginError> {
        self.writable()?;
        self.forget_plans();
        let reader = batches
            .into_reader()
            .map_err(|e| PluginError::invalid_input(format!("cannot read the incoming batches: {e}")))?;
        let stream = reader.map(|batch| {
            batch
                .map_err(|e| PluginError::invalid_input(format!("incoming batch: {e}")))
                .and_then(|b| batch_to_records(&b))
        });
        write::load(&self.root, request, stream)
    }

    fn sample(&self, collection: &str, n: u64, seed: u64) -> Result<BatchStream, PluginError> {
        let (conn, plan) = self.plan(collection)?;
        let positions: Vec<usize> = choose_positions(plan.len() as u64, n, seed)
            .into_iter()
            .map(|p| p as usize)
            .collect();
        Ok(BatchStream::from_reader(Batches::new(
            conn,
            plan,
            0,
            1000,
            Some(positions),
        )))
    }

    fn fetch(&self, collection: &str, ids: &[String]) -> Result<BatchStream, PluginError> {
        let (conn, plan) = self.plan(collection)?;
        let positions = plan.positions(&conn, ids)?;
        Ok(BatchStream::from_reader(Batches::new(
            conn,
            plan,
            0,
            1000,
            Some(positions),
        )))
    }

    fn query(&self, collection: &str, vector: &[f32], k: u32) -> Result<Vec<Hit>, PluginError> {
        // Brute force over the records as chroma returns them, with the collection's metric.
        let (conn, plan) = self.plan(collection)?;
        let dimension = plan.dimension() as usize;
        if vector.len() != dimension {
            return Err(PluginError::invalid_input(format!(
                "query vector has {} dimensions, collection '{collection}' has {dimension}",
                vector.len()
            )));
        }
        let metric = plan.collection.space;
        #[derive(PartialEq)]
        struct Candidate(f32, usize, String);
        impl Eq for Candidate {}
        impl PartialOrd for Candidate {
            fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
                Some(self.cmp(other))
            }
        }
        impl Ord for Candidate {
            fn cmp(&self, other: &Self) -> std::cmp::Ordering {
                self.0.total_cmp(&other.0).then(self.1.cmp(&other.1))
            }
        }
        let mut heap: BinaryHeap<Candidate> = BinaryHeap::new();
        let total = plan.len();
        let mut start = 0;
        while start < total && k > 0 {
            let end = (start + 1000).min(total);
            let positions: Vec<usize> = (start..end).collect();
            let batch = plan.batch(&conn, &positions)?;
            let ids = batch.column(0).as_string::<i32>();
            let embeddings = batch
                .column(3)
                .as_fixed_size_list()
                .values()
                .as_primitive::<Float32Type>();
            for (row, embedding) in embeddings.values().chunks_exact(dimension).enumerate() {
                let distance = metric.distance(vector, embedding);
                heap.push(Candidate(distance, start + row, ids.value(row).to_owned()));
                if heap.len() > k as usize {
                    heap.pop();
                }
            }
            start = end;
        }
        let mut hits: Vec<Candidate> = heap.into_vec();
        hits.sort();
        Ok(hits
            .into_iter()
            .map(|Candidate(distance, _, id)| Hit { id, distance })
            .collect())
    }

    fn storage(&self, collection: &str) -> Result<StorageReport, PluginError> {
        let (conn, plan) = self.plan(collection)?;
        write::storage(&conn, &self.root, &plan)
    }

    fn files(&self, collection: &str) -> Result<Vec<String>, PluginError> {
        let conn = self.connect()?;
        let collection = self.collection(&conn, collection)?;
        // The database is shared by every collection of the store, so it is always part of one.
        let mut files = vec![self.db().display().to_string()];
        let dir = collection.segment_dir(&self.root);
        if dir.is_dir() {
            files.push(dir.display().to_string());
        }
        Ok(files)
    }

    fn drop_collection(&self, collection: &str) -> Result<(), PluginError> {
        self.writable()?;
        self.forget_plans();
        write::drop_collection(&self.root, collection)
    }

    fn delete(&self, collection: &str, ids: &[String]) -> Result<u64, PluginError> {
        self.writable()?;
        self.forget_plans();
        write::delete(&self.root, collection, ids)
    }
}

impl Plugin for ChromaStore {
    const CAPABILITIES: Capabilities = Capabilities::READ
        .union(Capabilities::WRITE)
        .union(Capabilities::UPSERT)
        .union(Capabilities::QUERY)
        .union(Capabilities::STORES_VECTORS)
        .union(Capabilities::DELETE);

    fn open(request: &OpenRequest) -> Result<Self, PluginError> {
        if let Some(key) = request.options.keys().next() {
            return Err(PluginError::invalid_input(format!(
                "unknown chroma store option '{key}' (this plugin takes no options)"
            )));
        }
        let root = PathBuf::from(&request.location);
        match request.access {
            Access::ReadOnly => {
                let conn = sqlite::open_read_only(&root)?;
                let db = sqlite::db_path(&root);
                sqlite::check_migrations(&conn, &db)?;
                layout::read_catalog(&conn, &db)?;
            }
            Access::ReadWrite => {
                if !sqlite::db_path(&root).exists() {
                    write::create_store(&root)?;
                }
                write::check_writable(&root)?;
            }
        }
        Ok(ChromaStore {
            root,
            access: request.access,
            plans: Mutex::default(),
        })
    }
}

ragged_plugin_api::export_plugin!(ChromaStore);

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::embedding_model;

    #[test]
    fn the_embedding_function_chromadb_records_names_the_model() {
        let schema = |function: serde_json::Value| json!({"keys": {"#embedding": {"float_list": {"vector_index": {"config": {"embedding_function": function}}}}}});
        let none = serde_json::Value::Null;
        assert_eq!(
            embedding_model(
                &schema(json!({"type": "known", "name": "default", "config": {}})),
                &none
            )
            .as_deref(),
            Some("sentence-transformers/all-MiniLM-L6-v2")
        );
        let named =
            json!({"type": "known", "name": "sentence_transformer", "config": {"model_name": "all-mpnet-base-v2"}});
        assert_eq!(
            embedding_model(&schema(named), &none).as_deref(),
            Some("sentence-transformers/all-mpnet-base-v2")
        );
        let elsewhere = json!({"name": "sentence_transformer", "config": {"model_name": "BAAI/bge-small-en-v1.5"}});
        assert_eq!(
            embedding_model(&none, &json!({"embedding_function": elsewhere})).as_deref(),
            Some("BAAI/bge-small-en-v1.5")
        );
        assert_eq!(embedding_model(&schema(json!({"name": "openai"})), &none), None);
        assert_eq!(embedding_model(&json!({"keys": {}}), &json!({})), None);
    }
}
