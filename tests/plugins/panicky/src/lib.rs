//! A plugin that misbehaves on purpose: it panics in operations and in the middle of a stream, and
//! returns plain errors elsewhere. The host must turn each into an error and keep working.
//!
//! The store option `misbehave=KIND` picks another fault (the store then lists no files, so a
//! migration from it takes its backups): `missing-column`, `mistyped-column` and
//! `wrong-dimension` (3 against the 4 `describe` says) announce a bad schema; `mismatched-batch`
//! announces the canonical schema but sends 3-dimensional batches; `null-ids`, `stream-error` and
//! `stream-hang` send ten good records, then a batch with null ids, an error, or nothing ever;
//! `hang` never returns from any operation.

#![deny(unsafe_code)]

use std::collections::VecDeque;
use std::sync::Arc;

use ragged_plugin_api::arrow::arrow_array::{ArrayRef, RecordBatch, RecordBatchReader, StringArray};
use ragged_plugin_api::arrow::arrow_schema::{ArrowError, DataType, Field, Schema, SchemaRef};
use ragged_plugin_api::arrow::{canonical_schema, records_to_batch};
use ragged_plugin_api::{
    Backend, BatchStream, Capabilities, CollectionInfo, DistanceMetric, ErrorCode, ExtractRequest, OpenRequest, Plugin,
    PluginError, Record,
};

/// The misbehaving store.
pub struct Panicky {
    misbehave: Option<Misbehave>,
}

/// The faults `misbehave=KIND` selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Misbehave {
    MissingColumn,
    MistypedColumn,
    WrongDimension,
    MismatchedBatch,
    NullIds,
    StreamError,
    StreamHang,
    Hang,
}

impl Misbehave {
    fn parse(kind: &str) -> Result<Misbehave, PluginError> {
        Ok(match kind {
            "missing-column" => Misbehave::MissingColumn,
            "mistyped-column" => Misbehave::MistypedColumn,
            "wrong-dimension" => Misbehave::WrongDimension,
            "mismatched-batch" => Misbehave::MismatchedBatch,
            "null-ids" => Misbehave::NullIds,
            "stream-error" => Misbehave::StreamError,
            "stream-hang" => Misbehave::StreamHang,
            "hang" => Misbehave::Hang,
            other => return Err(PluginError::invalid_input(format!("unknown misbehaviour '{other}'"))),
        })
    }
}

impl Plugin for Panicky {
    const CAPABILITIES: Capabilities = Capabilities::READ.union(Capabilities::STORES_VECTORS);

    fn open(request: &OpenRequest) -> Result<Self, PluginError> {
        let mut misbehave = None;
        for (key, value) in &request.options {
            match key.as_str() {
                "misbehave" => misbehave = Some(Misbehave::parse(value)?),
                other => return Err(PluginError::invalid_input(format!("unknown store option '{other}'"))),
            }
        }
        Ok(Panicky { misbehave })
    }
}

impl Panicky {
    fn hang_if_asked(&self) {
        if self.misbehave == Some(Misbehave::Hang) {
            hang()
        }
    }
}

/// Never returns, like a plugin stuck on a lock or a dead network peer.
fn hang() -> ! {
    loop {
        std::thread::park();
    }
}

impl Backend for Panicky {
    fn list_collections(&self) -> Result<Vec<String>, PluginError> {
        self.hang_if_asked();
        panic!("list_collections exploded")
    }

    fn describe(&self, collection: &str) -> Result<CollectionInfo, PluginError> {
        self.hang_if_asked();
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
        self.hang_if_asked();
        Err(PluginError::new(
            ErrorCode::Corrupt,
            "count.bin: truncated after 3 bytes",
        ))
    }

    fn extract(&self, _: &str, _: &ExtractRequest) -> Result<BatchStream, PluginError> {
        let good = || Step::Batch(ten_records(4));
        let (schema, steps) = match self.misbehave {
            None => (canonical_schema(4), vec![good(), Step::Panic]),
            Some(Misbehave::MissingColumn) => {
                let mut fields: Vec<Field> = canonical_schema(4).fields().iter().map(|f| (**f).clone()).collect();
                fields.remove(2);
                (Arc::new(Schema::new(fields)), Vec::new())
            }
            Some(Misbehave::MistypedColumn) => {
                let mut fields: Vec<Field> = canonical_schema(4).fields().iter().map(|f| (**f).clone()).collect();
                let item = Arc::new(Field::new("item", DataType::Float64, true));
                fields[3] = Field::new("embedding", DataType::FixedSizeList(item, 4), false);
                (Arc::new(Schema::new(fields)), Vec::new())
            }
            Some(Misbehave::WrongDimension) => (canonical_schema(3), vec![Step::Batch(ten_records(3))]),
            Some(Misbehave::MismatchedBatch) => (canonical_schema(4), vec![Step::Batch(ten_records(3))]),
            Some(Misbehave::NullIds) => (canonical_schema(4), vec![good(), Step::Batch(null_ids())]),
            Some(Misbehave::StreamError) => (canonical_schema(4), vec![good(), Step::Fail]),
            Some(Misbehave::StreamHang) => (canonical_schema(4), vec![good(), Step::Hang]),
            Some(Misbehave::Hang) => hang(),
        };
        Ok(BatchStream::from_reader(Scripted {
            schema,
            steps: steps.into(),
        }))
    }

    fn files(&self, _: &str) -> Result<Vec<String>, PluginError> {
        match self.misbehave {
            None => Err(PluginError::unsupported("files")),
            Some(_) => Ok(Vec::new()),
        }
    }
}

/// Ten records `r0`..`r9` with `dimension`-long embeddings.
fn ten_records(dimension: u32) -> Result<RecordBatch, ArrowError> {
    let records: Vec<Record> = (0..10)
        .map(|i| Record {
            id: format!("r{i}"),
            document: None,
            metadata: None,
            embedding: vec![i as f32; dimension as usize],
        })
        .collect();
    records_to_batch(&records, dimension).map_err(|e| ArrowError::ExternalError(Box::new(e)))
}

/// Ten records whose ids are null every other row, in a batch whose own schema allows that (the
/// stream still announces the canonical schema, whose ids are not nullable).
fn null_ids() -> Result<RecordBatch, ArrowError> {
    let batch = ten_records(4)?;
    let ids: ArrayRef = Arc::new(StringArray::from_iter(
        (0..10).map(|i| (i % 2 == 0).then(|| format!("n{i}"))),
    ));
    let mut fields: Vec<Field> = batch.schema().fields().iter().map(|f| (**f).clone()).collect();
    fields[0] = fields[0].clone().with_nullable(true);
    let mut columns = batch.columns().to_vec();
    columns[0] = ids;
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
}

/// What a scripted stream does next.
enum Step {
    Batch(Result<RecordBatch, ArrowError>),
    Fail,
    Panic,
    Hang,
}

/// A stream that plays its steps in order.
struct Scripted {
    schema: SchemaRef,
    steps: VecDeque<Step>,
}

impl Iterator for Scripted {
    type Item = Result<RecordBatch, ArrowError>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.steps.pop_front()? {
            Step::Batch(batch) => Some(batch),
            Step::Fail => Some(Err(ArrowError::ExternalError(
                "chunk-2.bin: read failed at offset 4096".into(),
            ))),
            Step::Panic => panic!("the stream exploded after the first batch"),
            Step::Hang => hang(),
        }
    }
}

impl RecordBatchReader for Scripted {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }
}

ragged_plugin_api::export_plugin!(Panicky);
