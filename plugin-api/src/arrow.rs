//! The canonical schema in arrow-rs (arrow 58) and conversions between batches and [`Record`]s.
//!
//! Enabled by the `arrow` feature. A plugin built on another arrow major version can still speak
//! the interface: the Arrow C stream layout does not change between versions.

use std::sync::Arc;

pub use arrow_array;
pub use arrow_schema;

use arrow_array::builder::{FixedSizeListBuilder, Float32Builder, StringBuilder};
use arrow_array::cast::AsArray;
use arrow_array::types::Float32Type;
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef};

pub use crate::ffi::ValidatedReader;
use crate::{PluginError, Record};

/// Column names of the canonical schema.
pub mod columns {
    /// `Utf8`, non-null.
    pub const ID: &str = "id";
    /// `Utf8`, nullable.
    pub const DOCUMENT: &str = "document";
    /// `Utf8` holding a JSON object, nullable.
    pub const METADATA: &str = "metadata";
    /// `FixedSizeList<Float32, dim>`, non-null.
    pub const EMBEDDING: &str = "embedding";
}

/// The field of one embedding element, as arrow-rs and LanceDB name it.
fn embedding_item() -> Arc<Field> {
    Arc::new(Field::new("item", DataType::Float32, true))
}

/// The canonical schema for embeddings of `dimension` floats.
pub fn canonical_schema(dimension: u32) -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new(columns::ID, DataType::Utf8, false),
        Field::new(columns::DOCUMENT, DataType::Utf8, true),
        Field::new(columns::METADATA, DataType::Utf8, true),
        Field::new(
            columns::EMBEDDING,
            DataType::FixedSizeList(embedding_item(), dimension as i32),
            false,
        ),
    ]))
}

/// The schema of the batches an `ExtractRequest::ids_only` extraction may send: the `id` column
/// alone.
pub fn ids_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new(columns::ID, DataType::Utf8, false)]))
}

/// Checks that `schema` is the canonical schema and returns its dimension.
pub fn check_schema(schema: &Schema) -> Result<u32, PluginError> {
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    let expected = [columns::ID, columns::DOCUMENT, columns::METADATA, columns::EMBEDDING];
    if names != expected {
        return Err(PluginError::invalid_input(format!(
            "batch columns are [{}], expected [{}]",
            names.join(", "),
            expected.join(", ")
        )));
    }
    for name in [columns::ID, columns::DOCUMENT, columns::METADATA] {
        let field = schema
            .field_with_name(name)
            .map_err(|e| PluginError::invalid_input(e.to_string()))?;
        if field.data_type() != &DataType::Utf8 {
            return Err(PluginError::invalid_input(format!(
                "column '{name}' is {}, expected Utf8",
                field.data_type()
            )));
        }
    }
    match schema.field(3).data_type() {
        DataType::FixedSizeList(item, dimension) if item.data_type() == &DataType::Float32 && *dimension > 0 => {
            Ok(*dimension as u32)
        }
        other => Err(PluginError::invalid_input(format!(
            "column 'embedding' is {other}, expected FixedSizeList<Float32, dim>"
        ))),
    }
}

/// Builds one canonical batch. Fails when an embedding's length differs from `dimension`.
pub fn records_to_batch(records: &[Record], dimension: u32) -> Result<RecordBatch, PluginError> {
    let mut ids = StringBuilder::new();
    let mut documents = StringBuilder::new();
    let mut metadata = StringBuilder::new();
    let values = Float32Builder::with_capacity(records.len() * dimension as usize);
    let mut embeddings = FixedSizeListBuilder::new(values, dimension as i32).with_field(embedding_item());
    for record in records {
        if record.embedding.len() != dimension as usize {
            return Err(PluginError::invalid_input(format!(
                "record '{}' has {} dimensions, the collection has {dimension}",
                record.id,
                record.embedding.len()
            )));
        }
        ids.append_value(&record.id);
        documents.append_option(record.document.as_deref());
        metadata.append_option(record.metadata.as_deref());
        embeddings.values().append_slice(&record.embedding);
        embeddings.append(true);
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(ids.finish()),
        Arc::new(documents.finish()),
        Arc::new(metadata.finish()),
        Arc::new(embeddings.finish()),
    ];
    RecordBatch::try_new(canonical_schema(dimension), columns).map_err(|e| PluginError::invalid_input(e.to_string()))
}

/// Reads the records of one canonical batch, refusing null ids and null embeddings.
pub fn batch_to_records(batch: &RecordBatch) -> Result<Vec<Record>, PluginError> {
    let dimension = check_schema(&batch.schema())? as usize;
    let ids = batch.column(0).as_string::<i32>();
    let documents = batch.column(1).as_string::<i32>();
    let metadata = batch.column(2).as_string::<i32>();
    let embeddings = batch.column(3).as_fixed_size_list();
    let values = embeddings.values().as_primitive::<Float32Type>();
    let mut records = Vec::with_capacity(batch.num_rows());
    for row in 0..batch.num_rows() {
        if ids.is_null(row) {
            return Err(PluginError::invalid_input(format!("row {row} has a null id")));
        }
        if embeddings.is_null(row) {
            return Err(PluginError::invalid_input(format!(
                "record '{}' has a null embedding",
                ids.value(row)
            )));
        }
        let start = embeddings.value_offset(row) as usize;
        let slice = &values.values()[start..start + dimension];
        records.push(Record {
            id: ids.value(row).to_owned(),
            document: documents.is_valid(row).then(|| documents.value(row).to_owned()),
            metadata: metadata.is_valid(row).then(|| metadata.value(row).to_owned()),
            embedding: slice.to_vec(),
        });
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::BatchStream;

    fn sample_records() -> Vec<Record> {
        vec![
            Record {
                id: "a".into(),
                document: Some("héllo".into()),
                metadata: Some(r#"{"n":2,"f":2.0}"#.into()),
                embedding: vec![1.0, -0.0, f32::MIN_POSITIVE],
            },
            Record {
                id: "b".into(),
                document: Some(String::new()),
                metadata: None,
                embedding: vec![0.5, 0.25, 3.0],
            },
            Record {
                id: "c".into(),
                document: None,
                metadata: Some("{}".into()),
                embedding: vec![9.0, 8.0, 7.0],
            },
        ]
    }

    #[test]
    fn records_round_trip_through_a_c_stream_bit_exact() {
        let records = sample_records();
        let batch = records_to_batch(&records, 3).expect("valid records");
        let stream = BatchStream::from_batches(canonical_schema(3), vec![batch]);
        let mut back = Vec::new();
        for batch in stream.into_reader().expect("imports") {
            back.extend(batch_to_records(&batch.expect("batch")).expect("canonical"));
        }
        assert_eq!(back.len(), 3);
        for (a, b) in records.iter().zip(&back) {
            assert_eq!(a.id, b.id);
            assert_eq!(a.document, b.document);
            assert_eq!(a.metadata, b.metadata);
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&a.embedding), bits(&b.embedding));
        }
    }

    #[test]
    fn wrong_dimension_and_wrong_schema_are_refused() {
        let error = records_to_batch(&sample_records(), 4).expect_err("dimension 3 into 4");
        assert!(
            error
                .message
                .contains("record 'a' has 3 dimensions, the collection has 4"),
            "{error}"
        );
        let schema = Schema::new(vec![Field::new("id", DataType::Utf8, false)]);
        let error = check_schema(&schema).expect_err("one column");
        assert!(error.message.contains("batch columns are [id]"), "{error}");
    }

    #[test]
    fn a_validated_import_refuses_batches_that_do_not_match_the_announced_schema() {
        use arrow_array::RecordBatchReader;

        // Announced with 4 dimensions, sent with 3: a plain import builds arrays on buffers too
        // short for them (and panics on this one); the validated import reports it.
        let batch = records_to_batch(&sample_records(), 3).expect("valid records");
        let lying = BatchStream::from_batches(canonical_schema(4), vec![batch.clone()]);
        let mut reader = lying.into_validated_reader().expect("schema");
        assert_eq!(check_schema(&reader.schema()).expect("canonical"), 4);
        let error = reader.next().expect("an item").expect_err("refused");
        assert!(error.to_string().contains("column 'embedding' is malformed"), "{error}");
        let honest = BatchStream::from_batches(canonical_schema(3), vec![batch.clone()]);
        let mut reader = honest.into_validated_reader().expect("schema");
        assert_eq!(reader.next().expect("a batch").expect("valid"), batch);
        assert!(reader.next().is_none());
    }

    #[test]
    fn a_panicking_reader_becomes_an_error_for_the_consumer() {
        struct Panicky(SchemaRef);
        impl Iterator for Panicky {
            type Item = Result<RecordBatch, arrow_schema::ArrowError>;
            fn next(&mut self) -> Option<Self::Item> {
                panic!("reader exploded")
            }
        }
        impl arrow_array::RecordBatchReader for Panicky {
            fn schema(&self) -> SchemaRef {
                self.0.clone()
            }
        }
        let mut reader = BatchStream::from_reader(Panicky(canonical_schema(2)))
            .into_reader()
            .expect("schema");
        let error = reader.next().expect("an item").expect_err("an error, not an abort");
        assert!(
            error.to_string().contains("plugin panicked: reader exploded"),
            "{error}"
        );
    }
}
