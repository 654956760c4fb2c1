//! Canonical batches on the host side: reading a plugin's stream and digesting records.

use arrow_array::cast::AsArray;
use arrow_array::ffi_stream::ArrowArrayStreamReader;
use arrow_array::{Array, RecordBatch, RecordBatchReader, StringArray};
use arrow_schema::{ArrowError, DataType, Schema};
use ragged_plugin_api::arrow::{batch_to_records, check_schema, columns};
use ragged_plugin_api::{BatchStream, Record, canonical_metadata};
use sha2::{Digest, Sha256};

/// Imports a stream, checking that it announces the canonical schema (with embeddings of
/// `dimension`, when given).
pub fn import_stream(stream: BatchStream, dimension: Option<u32>) -> anyhow::Result<ArrowArrayStreamReader> {
    let reader = stream.into_reader()?;
    let announced = check_schema(&reader.schema())?;
    if let Some(expected) = dimension
        && announced != expected
    {
        anyhow::bail!(
            "the stream's embeddings have {announced} dimensions, but the collection is described with {expected}"
        );
    }
    Ok(reader)
}

/// Reads every batch of a stream, checking the canonical schema (and `dimension`, when given).
pub fn read_stream(
    stream: BatchStream,
    dimension: Option<u32>,
) -> anyhow::Result<impl Iterator<Item = anyhow::Result<RecordBatch>>> {
    let reader = import_stream(stream, dimension)?;
    Ok(reader.map(|batch| batch.map_err(|error| anyhow::anyhow!(arrow_message(&error)))))
}

/// Checks the schema a stream announces: the canonical one, or, for an ids-only extraction
/// (`ids_allowed`), also the `id` column alone, which a plugin may send instead.
pub fn check_stream_schema(schema: &Schema, ids_allowed: bool) -> Result<(), String> {
    if ids_allowed && schema.fields().len() == 1 {
        let field = schema.field(0);
        if field.name() != columns::ID || field.data_type() != &DataType::Utf8 {
            return Err(format!(
                "an ids-only batch must hold the column '{}' (Utf8), not '{}' ({})",
                columns::ID,
                field.name(),
                field.data_type()
            ));
        }
        return Ok(());
    }
    check_schema(schema).map(drop).map_err(|error| error.message)
}

/// Reads the id columns of an ids-only extraction: batches of the `id` column alone, or whole
/// canonical records from a plugin that ignores the flag. A null id is an error.
pub fn read_id_stream(stream: BatchStream) -> anyhow::Result<impl Iterator<Item = anyhow::Result<StringArray>>> {
    let reader = stream.into_reader()?;
    check_stream_schema(&reader.schema(), true).map_err(anyhow::Error::msg)?;
    Ok(reader.map(|batch| {
        let batch = batch.map_err(|error| anyhow::anyhow!(arrow_message(&error)))?;
        check_batch(&batch).map_err(anyhow::Error::msg)?;
        let ids = batch
            .column(0)
            .as_string_opt::<i32>()
            .ok_or_else(|| anyhow::anyhow!("the id column is not Utf8"))?;
        Ok(ids.clone())
    }))
}

/// Checks a valid batch (see `BatchStream::into_validated_reader`) whose schema passed
/// [`check_stream_schema`] for what that schema cannot promise: no id, embedding or embedding
/// value may be null.
pub fn check_batch(batch: &RecordBatch) -> Result<(), String> {
    let nulls = batch.column(0).null_count();
    if nulls > 0 {
        return Err(format!("{nulls} of its {} ids are null", batch.num_rows()));
    }
    if batch.num_columns() == 1 {
        // An ids-only batch: the id column is all there is.
        return Ok(());
    }
    let embeddings = batch
        .column(3)
        .as_fixed_size_list_opt()
        .ok_or("column 'embedding' is not a fixed-size list")?;
    if embeddings.null_count() > 0 {
        return Err(format!("{} of its embeddings are null", embeddings.null_count()));
    }
    let dimension = embeddings.value_length() as usize;
    let values = embeddings
        .values()
        .slice(embeddings.value_offset(0) as usize, embeddings.len() * dimension);
    if values.null_count() > 0 {
        return Err(format!("its embeddings hold {} null values", values.null_count()));
    }
    Ok(())
}

/// The text of a stream error without the prefixes arrow adds each time an error crosses an Arrow
/// C stream ("C Data interface error: External error: ...").
pub fn arrow_message(error: &ArrowError) -> String {
    let mut text = match error {
        ArrowError::ExternalError(inner) => inner.to_string(),
        ArrowError::CDataInterface(text) => text.clone(),
        other => other.to_string(),
    };
    while let Some(rest) = ["External error: ", "C Data interface error: "]
        .iter()
        .find_map(|prefix| text.strip_prefix(prefix))
    {
        text = rest.to_owned();
    }
    text
}

/// Reads every record of a stream into memory (for small streams: samples, fetches, tests).
pub fn collect_records(stream: BatchStream) -> anyhow::Result<Vec<Record>> {
    let mut records = Vec::new();
    for batch in read_stream(stream, None)? {
        records.extend(batch_to_records(&batch?)?);
    }
    Ok(records)
}

/// Digests of a record: `content` covers the id, the document (null differs from empty) and the
/// canonical metadata; `full` covers those and the exact bits of the embedding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordDigest {
    /// Everything but the embedding.
    pub content: [u8; 32],
    /// Everything.
    pub full: [u8; 32],
}

/// The digests of a record.
pub fn record_digest(record: &Record) -> RecordDigest {
    let mut hasher = Sha256::new();
    hasher.update((record.id.len() as u64).to_le_bytes());
    hasher.update(record.id.as_bytes());
    for field in [
        record.document.clone(),
        record.metadata.as_deref().map(canonical_metadata),
    ] {
        match field {
            None => hasher.update([0u8]),
            Some(text) => {
                hasher.update([1u8]);
                hasher.update((text.len() as u64).to_le_bytes());
                hasher.update(text.as_bytes());
            }
        }
    }
    let content: [u8; 32] = hasher.clone().finalize().into();
    for value in &record.embedding {
        hasher.update(value.to_bits().to_le_bytes());
    }
    RecordDigest {
        content,
        full: hasher.finalize().into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(document: Option<&str>, metadata: Option<&str>, embedding: Vec<f32>) -> Record {
        Record {
            id: "r".into(),
            document: document.map(str::to_owned),
            metadata: metadata.map(str::to_owned),
            embedding,
        }
    }

    #[test]
    fn digests_see_every_difference_that_matters() {
        let base = record(Some(""), Some(r#"{"a":1,"b":2.0}"#), vec![0.0, 1.0]);
        let same_reordered = record(Some(""), Some(r#"{"b":2.0,"a":1}"#), vec![0.0, 1.0]);
        assert_eq!(record_digest(&base), record_digest(&same_reordered));
        let vector_only = record(Some(""), Some(r#"{"a":1,"b":2.0}"#), vec![0.0, 1.0000001]);
        assert_eq!(record_digest(&base).content, record_digest(&vector_only).content);
        assert_ne!(record_digest(&base).full, record_digest(&vector_only).full);
        for different in [
            record(None, Some(r#"{"a":1,"b":2.0}"#), vec![0.0, 1.0]),
            record(Some(""), Some(r#"{"a":1,"b":2}"#), vec![0.0, 1.0]),
            record(Some(""), Some(r#"{"a":1.0,"b":2.0}"#), vec![0.0, 1.0]),
            record(Some(""), None, vec![0.0, 1.0]),
            record(Some(""), Some(r#"{"a":1,"b":2.0}"#), vec![-0.0, 1.0]),
        ] {
            assert_ne!(record_digest(&base), record_digest(&different), "{different:?}");
        }
    }

    fn batch(dimension: u32) -> RecordBatch {
        let records: Vec<Record> = (0..3)
            .map(|i| record(None, None, vec![i as f32; dimension as usize]))
            .collect();
        ragged_plugin_api::arrow::records_to_batch(&records, dimension).expect("batch")
    }

    /// `batch` sent through an Arrow C stream that announces `schema`, as a plugin would.
    fn through_a_stream(schema: arrow_schema::SchemaRef, batch: RecordBatch) -> Result<RecordBatch, ArrowError> {
        let stream = BatchStream::from_reader(arrow_array::RecordBatchIterator::new([Ok(batch)], schema));
        stream.into_validated_reader().expect("schema").next().expect("a batch")
    }

    #[test]
    fn batches_are_checked_for_what_the_schema_cannot_promise() {
        use std::sync::Arc;

        use arrow_array::builder::{FixedSizeListBuilder, Float32Builder};
        use arrow_array::{ArrayRef, StringArray};
        use ragged_plugin_api::arrow::canonical_schema;

        assert_eq!(check_batch(&batch(4)), Ok(()));

        let nullable_ids = {
            let batch = batch(2);
            let mut fields: Vec<arrow_schema::Field> = batch.schema().fields().iter().map(|f| (**f).clone()).collect();
            fields[0] = fields[0].clone().with_nullable(true);
            let mut columns = batch.columns().to_vec();
            columns[0] = Arc::new(StringArray::from(vec![Some("a"), None, None])) as ArrayRef;
            RecordBatch::try_new(Arc::new(arrow_schema::Schema::new(fields)), columns).expect("batch")
        };
        assert_eq!(check_batch(&nullable_ids), Err("2 of its 3 ids are null".into()));
        // Under the canonical schema, whose ids are not nullable, the import refuses them.
        let error = through_a_stream(canonical_schema(2), nullable_ids).expect_err("null ids");
        assert!(
            arrow_message(&error).contains("Column 'id' is declared as non-nullable"),
            "{error}"
        );

        let mut embeddings = FixedSizeListBuilder::new(Float32Builder::new(), 2).with_field(Arc::new(
            arrow_schema::Field::new("item", arrow_schema::DataType::Float32, true),
        ));
        for value in [Some(1.0), Some(2.0), Some(3.0), None, Some(5.0), Some(6.0)] {
            embeddings.values().append_option(value);
        }
        (0..3).for_each(|_| embeddings.append(true));
        let mut columns = batch(2).columns().to_vec();
        columns[3] = Arc::new(embeddings.finish());
        let null_value = RecordBatch::try_new(canonical_schema(2), columns).expect("batch");
        assert_eq!(
            check_batch(&null_value),
            Err("its embeddings hold 1 null values".into())
        );

        let mut embeddings = FixedSizeListBuilder::new(Float32Builder::new(), 2).with_field(Arc::new(
            arrow_schema::Field::new("item", arrow_schema::DataType::Float32, true),
        ));
        for valid in [true, false, true] {
            embeddings.values().append_slice(&[1.0, 2.0]);
            embeddings.append(valid);
        }
        let mut fields: Vec<arrow_schema::Field> = canonical_schema(2).fields().iter().map(|f| (**f).clone()).collect();
        fields[3] = fields[3].clone().with_nullable(true);
        let mut columns = batch(2).columns().to_vec();
        columns[3] = Arc::new(embeddings.finish());
        let null_embedding = RecordBatch::try_new(Arc::new(arrow_schema::Schema::new(fields)), columns).expect("batch");
        assert_eq!(check_batch(&null_embedding), Err("1 of its embeddings are null".into()));
    }

    #[test]
    fn stream_errors_lose_the_prefixes_of_each_crossing() {
        let crossed = ArrowError::CDataInterface("External error: chroma:/x: extract 'c' failed".into());
        assert_eq!(arrow_message(&crossed), "chroma:/x: extract 'c' failed");
        let plain = ArrowError::ExternalError("disk full".into());
        assert_eq!(arrow_message(&plain), "disk full");
    }
}
