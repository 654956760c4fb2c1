//! Helpers shared by the unit tests of several modules: a store in a temp dir, records, loads
//! and reads through the `Backend` trait.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::{Field, Schema};
use ragged_plugin_api::arrow::{batch_to_records, canonical_schema, records_to_batch};
use ragged_plugin_api::{
    Access, Backend, BatchStream, CollectionInfo, DistanceMetric, ExtractRequest, LoadMode, LoadRequest, OpenRequest,
    Plugin, PluginError, Record,
};

use crate::ParquetStore;

/// A read-write store in a fresh temp dir (kept alive by the returned guard).
pub(crate) fn store() -> (tempfile::TempDir, ParquetStore) {
    let root = tempfile::tempdir().expect("temp dir");
    let store = ParquetStore::open(&OpenRequest {
        location: root.path().display().to_string(),
        options: BTreeMap::new(),
        access: Access::ReadWrite,
    })
    .expect("opens");
    (root, store)
}

pub(crate) fn info(name: &str, dimension: u32, metric: DistanceMetric) -> CollectionInfo {
    CollectionInfo {
        name: name.to_owned(),
        dimension,
        metric,
        count: 0,
        embedding_model: None,
        index_params: None,
        metadata: serde_json::Map::new(),
        extras: serde_json::Map::new(),
    }
}

/// A record whose document and embedding say which version of `id` it is.
pub(crate) fn record(id: &str, version: u32) -> Record {
    Record {
        id: id.to_owned(),
        document: Some(format!("{id} v{version}")),
        metadata: Some(format!("{{\"version\":{version}}}")),
        embedding: vec![version as f32, 1.0],
    }
}

pub(crate) fn batch(records: &[Record]) -> RecordBatch {
    records_to_batch(records, 2).expect("valid records")
}

/// Loads batches of `(id, version)` pairs into `docs` (dimension 2, l2).
pub(crate) fn load(store: &ParquetStore, mode: LoadMode, batches: &[&[(&str, u32)]]) -> Result<u64, PluginError> {
    let batches: Vec<RecordBatch> = batches
        .iter()
        .map(|b| batch(&b.iter().map(|(id, v)| record(id, *v)).collect::<Vec<_>>()))
        .collect();
    load_batches(store, mode, canonical_schema(2), batches)
}

pub(crate) fn load_batches(
    store: &ParquetStore,
    mode: LoadMode,
    schema: Arc<Schema>,
    batches: Vec<RecordBatch>,
) -> Result<u64, PluginError> {
    let request = LoadRequest {
        collection: info("docs", 2, DistanceMetric::L2),
        mode,
    };
    Ok(store
        .load(&request, BatchStream::from_batches(schema, batches))?
        .records_written)
}

/// Every record of a stream.
pub(crate) fn drain(stream: BatchStream) -> Vec<Record> {
    let mut records = Vec::new();
    for batch in stream.into_reader().expect("a readable stream") {
        records.extend(batch_to_records(&batch.expect("a batch")).expect("canonical batch"));
    }
    records
}

/// `(id, version)` of every record of `docs`, in extract order.
pub(crate) fn contents(store: &ParquetStore) -> Vec<(String, u32)> {
    let stream = store
        .extract("docs", &ExtractRequest::records(100, 0))
        .expect("extracts");
    drain(stream)
        .into_iter()
        .map(|r| (r.id, r.embedding[0] as u32))
        .collect()
}

/// The canonical schema with every column nullable, to carry null ids and embeddings into `load`.
pub(crate) fn schema_with_nullable_columns(dimension: u32) -> Arc<Schema> {
    let canonical = canonical_schema(dimension);
    let fields: Vec<Field> = canonical
        .fields()
        .iter()
        .map(|f| f.as_ref().clone().with_nullable(true))
        .collect();
    Arc::new(Schema::new(fields))
}
