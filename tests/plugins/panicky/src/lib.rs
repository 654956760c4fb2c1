//! A plugin that misbehaves on purpose: it panics in operations and in the middle of a stream, and
//! returns plain errors elsewhere. The host must turn each into an error and keep working.

#![deny(unsafe_code)]

use ragged_plugin_api::arrow::arrow_array::{RecordBatch, RecordBatchReader};
use ragged_plugin_api::arrow::arrow_schema::{ArrowError, SchemaRef};
use ragged_plugin_api::arrow::{canonical_schema, records_to_batch};
use ragged_plugin_api::{
    Backend, BatchStream, Capabilities, CollectionInfo, DistanceMetric, ErrorCode, ExtractRequest, OpenRequest, Plugin,
    PluginError, Record,
};

/// The misbehaving store.
pub struct Panicky;

impl Plugin for Panicky {
    const CAPABILITIES: Capabilities = Capabilities::READ.union(Capabilities::STORES_VECTORS);

    fn open(_: &OpenRequest) -> Result<Self, PluginError> {
        Ok(Panicky)
    }
}

impl Backend for Panicky {
    fn list_collections(&self) -> Result<Vec<String>, PluginError> {
        panic!("list_collections exploded")
    }

    fn describe(&self, collection: &str) -> Result<CollectionInfo, PluginError> {
        Ok(CollectionInfo {
            name: collection.to_owned(),
            dimension: 4,
            metric: DistanceMetric::L2,
            count: 20,
            embedding_model: None,
            index_params: None,
            metadata: Default::default(),
            extras: Default::default(),
        })
    }

    fn count(&self, _: &str) -> Result<u64, PluginError> {
        Err(PluginError::new(
            ErrorCode::Corrupt,
            "count.bin: truncated after 3 bytes",
        ))
    }

    fn extract(&self, _: &str, _: &ExtractRequest) -> Result<BatchStream, PluginError> {
        Ok(BatchStream::from_reader(OneBatchThenPanic {
            schema: canonical_schema(4),
            sent: false,
        }))
    }
}

/// Yields ten good records, then panics.
struct OneBatchThenPanic {
    schema: SchemaRef,
    sent: bool,
}

impl Iterator for OneBatchThenPanic {
    type Item = Result<RecordBatch, ArrowError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.sent {
            panic!("the stream exploded after the first batch");
        }
        self.sent = true;
        let records: Vec<Record> = (0..10)
            .map(|i| Record {
                id: format!("r{i}"),
                document: None,
                metadata: None,
                embedding: vec![i as f32; 4],
            })
            .collect();
        Some(records_to_batch(&records, 4).map_err(|e| ArrowError::ExternalError(Box::new(e))))
    }
}

impl RecordBatchReader for OneBatchThenPanic {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }
}

ragged_plugin_api::export_plugin!(Panicky);
