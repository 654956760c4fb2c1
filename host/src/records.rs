//! Canonical batches on the host side: reading a plugin's stream and digesting records.

use arrow_array::{RecordBatch, RecordBatchReader};
use ragged_plugin_api::arrow::{batch_to_records, check_schema};
use ragged_plugin_api::{BatchStream, Record, canonical_metadata};
use sha2::{Digest, Sha256};

/// Reads every batch of a stream, checking the canonical schema (and `dimension`, when given).
pub fn read_stream(
    stream: BatchStream,
    dimension: Option<u32>,
) -> anyhow::Result<impl Iterator<Item = anyhow::Result<RecordBatch>>> {
    let reader = stream.into_reader()?;
    let announced = check_schema(&reader.schema())?;
    if let Some(expected) = dimension
        && announced != expected
    {
        anyhow::bail!("the stream's embeddings have {announced} dimensions, the collection has {expected}");
    }
    Ok(reader.map(|batch| Ok(batch?)))
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
}
