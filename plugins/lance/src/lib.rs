//! The `lance` store plugin: a store is a LanceDB database directory (what `lancedb.connect(path)`
//! opens) and a collection is one of its tables, read and written with the `lancedb` crate.
//!
//! A tour of the crate, one concern per module:
//! - this file: opening a store, its capabilities, and the [`Backend`] operations;
//! - `options`: the store options (`vector_column`, `id_column`, `text_column`, `metric`, ...);
//! - `schema`: the table schema ragged writes, its schema-metadata keys, and how the columns of
//!   any table (also one written by others) are found;
//! - `metadata`: typed metadata, promoted to filterable columns and read back from foreign columns;
//! - `read`: extract, sample, fetch and query;
//! - `write`: `load` (appends of new ids in large commits, `merge_insert` for the rest) and
//!   `delete`; version tags before writing;
//! - `storage`: the directory on disk, the storage report;
//! - `runtime`: the plugin's tokio runtime and the async-to-blocking bridges.
//!
//! See `docs/backends/lance.md` for the mapping and its guarantees.

#![deny(unsafe_code)]

mod metadata;
mod options;
mod read;
mod runtime;
mod schema;
mod seen;
mod storage;
mod write;

use std::collections::HashMap;
use std::fs;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use lance::session::{CacheSpec, Session};
use lancedb::Connection;
use ragged_plugin_api::{
    Access, Backend, BatchStream, Capabilities, CollectionInfo, ErrorCode, ExtractRequest, Hit, LoadRequest,
    LoadSummary, OpenRequest, Plugin, PluginError, StorageReport,
};
use serde_json::Value;

use crate::options::StoreOptions;
use crate::read::Source;
use crate::runtime::{block_on, lance_error};
use crate::schema::Layout;

/// An open LanceDB database directory.
pub struct LanceStore {
    /// The database directory, absolute.
    root: PathBuf,
    access: Access,
    options: StoreOptions,
    db: Connection,
    /// What this store's loads wrote into the tables they created, per table.
    written: Mutex<HashMap<String, write::Written>>,
}

impl LanceStore {
    /// The table `name` with its column layout and metric.
    fn source(&self, name: &str) -> Result<Source, PluginError> {
        let context = format!("table '{name}' in {}", self.root.display());
        let table = block_on(self.db.open_table(name).execute())?.map_err(|e| match e {
            lancedb::Error::TableNotFound { .. } => PluginError::not_found(format!(
                "no table '{name}' in the LanceDB database {}",
                self.root.display()
            )),
            other => lance_error(&context, other),
        })?;
        let table_schema = block_on(table.schema())?.map_err(|e| lance_error(&context, e))?;
        let layout = Layout::resolve(name, &table_schema, &self.options.columns)?;
        let fallback = match self.options.metric {
            Some(metric) => Some(metric),
            None if !layout.ragged => read::index_metric(&table, &layout.vector, &context)?,
            None => None,
        };
        let info = schema::describe(name, &table_schema, &layout, fallback);
        Ok(Source {
            name: name.to_owned(),
            table,
            layout,
            metric: info.metric,
        })
    }

    /// Refuses `operation` when the store was opened read-only.
    fn writable(&self, operation: &str) -> Result<(), PluginError> {
        match self.access {
            Access::ReadWrite => Ok(()),
            Access::ReadOnly => Err(PluginError::new(
                ErrorCode::ReadOnly,
                format!(
                    "the LanceDB database at {} is open read-only, so {operation} is refused",
                    self.root.display()
                ),
            )),
        }
    }
}

impl Plugin for LanceStore {
    const CAPABILITIES: Capabilities = Capabilities::READ
        .union(Capabilities::WRITE)
        .union(Capabilities::UPSERT)
        .union(Capabilities::QUERY)
        .union(Capabilities::STORES_VECTORS)
        .union(Capabilities::DELETE);

    fn open(request: &OpenRequest) -> Result<LanceStore, PluginError> {
        let options = StoreOptions::parse(&request.options)?;
        if request.location.is_empty() {
            return Err(PluginError::invalid_input("the lance store location is empty"));
        }
        let root = std::path::absolute(&request.location)
            .map_err(|e| PluginError::invalid_input(format!("{}: {e}", request.location)))?;
        if request.access == Access::ReadWrite {
            fs::create_dir_all(&root).map_err(|e| PluginError::io(&root, &e))?;
        }
        storage::check_database_dir(&root)?;
        let uri = root
            .to_str()
            .ok_or_else(|| PluginError::invalid_input(format!("{} is not valid UTF-8", root.display())))?;
        let db = block_on(lancedb::connect(uri).session(session(METADATA_CACHE_BYTES)).execute())?
            .map_err(|e| lance_error(uri, e))?;
        Ok(LanceStore {
            root,
            access: request.access,
            options,
            db,
            written: Mutex::default(),
        })
    }
}

/// How many bytes of table metadata (manifests, data file footers) a store's session caches.
/// Lance caches the manifest of every version it commits, and each lists every fragment, so a
/// migration's one commit per checkpoint added up with the square of the loads: 7 MB after the
/// 100 loads of a million records, by the same growth hundreds of MB at ten million.
/// What is evicted is read again from the table when needed (docs/benchmarks.md, finding 31).
const METADATA_CACHE_BYTES: usize = 4 << 20;

/// A session like lancedb's default, with a metadata cache of `metadata_cache_bytes`.
fn session(metadata_cache_bytes: usize) -> Arc<Session> {
    Arc::new(Session::with_cache_backends(
        CacheSpec::Default,
        CacheSpec::Size(metadata_cache_bytes),
        Default::default(),
    ))
}

impl Backend for LanceStore {
    fn list_collections(&self) -> Result<Vec<String>, PluginError> {
        let context = format!("the LanceDB database {}", self.root.display());
        #[allow(deprecated)] // list_tables needs a namespace request; the root namespace is all we use.
        let mut names = block_on(self.db.table_names().execute())?.map_err(|e| lance_error(&context, e))?;
        names.sort();
        Ok(names)
    }

    fn describe(&self, collection: &str) -> Result<CollectionInfo, PluginError> {
        let source = self.source(collection)?;
        let context = format!("table '{collection}'");
        let table_schema = block_on(source.table.schema())?.map_err(|e| lance_error(&context, e))?;
        let mut info = schema::describe(collection, &table_schema, &source.layout, Some(source.metric));
        info.count = source.count()?;
        let (version, versions, tags) = block_on(async {
            let version = source.table.version().await?;
            let versions = source.table.list_versions().await?.len();
            let mut tags: Vec<String> = source.table.tags().await?.list().await?.into_keys().collect();
            tags.sort();
            Ok::<_, lancedb::Error>((version, versions, tags))
        })?
        .map_err(|e| lance_error(&context, e))?;
        info.extras.insert("lance_version".into(), Value::from(version));
        info.extras.insert("lance_versions".into(), Value::from(versions));
        if !tags.is_empty() {
            info.extras.insert("lance_tags".into(), Value::from(tags));
        }
        Ok(info)
    }

    fn count(&self, collection: &str) -> Result<u64, PluginError> {
        self.source(collection)?.count()
    }

    fn extract(&self, collection: &str, request: &ExtractRequest) -> Result<BatchStream, PluginError> {
        self.source(collection)?.extract(request)
    }

    fn load(&self, request: &LoadRequest, batches: BatchStream) -> Result<LoadSummary, PluginError> {
        self.writable("load")?;
        write::load(&self.db, &self.options, request, batches, &self.written)
    }

    fn sample(&self, collection: &str, n: u64, seed: u64) -> Result<BatchStream, PluginError> {
        self.source(collection)?.sample(n, seed)
    }

    fn fetch(&self, collection: &str, ids: &[String]) -> Result<BatchStream, PluginError> {
        self.source(collection)?.fetch(ids)
    }

    fn query(&self, collection: &str, vector: &[f32], k: u32) -> Result<Vec<Hit>, PluginError> {
        self.source(collection)?.query(vector, k)
    }

    fn storage(&self, collection: &str) -> Result<StorageReport, PluginError> {
        let source = self.source(collection)?;
        let records = source.count()?;
        storage::report(&self.root, collection, &source.table, records, source.layout.dimension)
    }

    fn files(&self, collection: &str) -> Result<Vec<String>, PluginError> {
        self.source(collection)?;
        Ok(vec![storage::table_dir(&self.root, collection).display().to_string()])
    }

    fn drop_collection(&self, collection: &str) -> Result<(), PluginError> {
        self.writable("drop")?;
        self.source(collection)?;
        let context = format!("table '{collection}' in {}", self.root.display());
        block_on(self.db.drop_table(collection, &[]))?.map_err(|e| lance_error(&context, e))
    }

    fn delete(&self, collection: &str, ids: &[String]) -> Result<u64, PluginError> {
        self.writable("delete")?;
        write::delete(&self.source(collection)?, ids)
    }
}

ragged_plugin_api::export_plugin!(LanceStore);

#[cfg(test)]
mod tests {
    use arrow_array::{Int32Array, RecordBatch};
    use arrow_schema::{DataType, Field, Schema};

    use super::*;

    /// What `session` caches beyond its start after a table is created and appended to, one row
    /// and one commit at a time, `commits` times in all.
    fn cached_by_commits(session: Arc<Session>, commits: i32) -> u64 {
        let dir = tempfile::tempdir().expect("temporary directory");
        let uri = dir.path().to_str().expect("UTF-8 path").to_owned();
        let before = session.size_bytes();
        let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int32, false)]));
        let row =
            |n: i32| RecordBatch::try_new(schema.clone(), vec![Arc::new(Int32Array::from(vec![n]))]).expect("row");
        block_on(async {
            let db = lancedb::connect(&uri)
                .session(session.clone())
                .execute()
                .await
                .expect("connect");
            let table = db.create_table("t", row(0)).execute().await.expect("create");
            for n in 1..commits {
                table.add(row(n)).execute().await.expect("append");
            }
        })
        .expect("runtime");
        session.size_bytes() - before
    }

    #[test]
    fn a_stores_metadata_cache_stays_within_its_bound_however_many_commits() {
        const BOUND: usize = 64 << 10;
        // Lance's default session keeps every version's manifest: far above the bound here.
        let unbounded = cached_by_commits(Arc::new(Session::default()), 60);
        assert!(
            unbounded > 2 * BOUND as u64,
            "the default session cached only {unbounded} bytes"
        );
        // The bound weighs the entries; the session's size also counts the cache's own tables.
        let bounded = cached_by_commits(session(BOUND), 60);
        assert!(
            bounded <= BOUND as u64 * 5 / 4,
            "a session bounded at {BOUND} bytes cached {bounded}"
        );
    }
}
