//! Reading records from files for `ragged ingest`: JSON lines or Parquet, in chunks.
//!
//! JSON lines: one object per line, `{"id": "a", "document": "text", "metadata": {"k": 1},
//! "embedding": [0.1, 0.2]}`; `document` and `metadata` may be left out or null. Parquet: the
//! canonical columns `id`, `document`, `metadata` (JSON text) and `embedding` (a list of floats,
//! fixed-size or not, float32 or float64), as `ragged` exports them or pandas/pyarrow write them.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context as _, Result, bail};
use arrow_array::cast::AsArray;
use arrow_array::types::Float32Type;
use arrow_array::{Array, RecordBatch};
use arrow_schema::{DataType, Field};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use ragged_plugin_api::{Record, validate_metadata};
use serde::Deserialize;

/// A file of records, read a chunk at a time.
pub enum RecordFile {
    /// JSON lines.
    Jsonl {
        /// The file, for messages.
        path: PathBuf,
        /// The lines.
        lines: std::io::Lines<BufReader<File>>,
        /// The line last read.
        line: usize,
    },
    /// Parquet.
    Parquet {
        /// The file, for messages.
        path: PathBuf,
        /// The batches.
        reader: parquet::arrow::arrow_reader::ParquetRecordBatchReader,
        /// Records read so far.
        row: usize,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonRecord {
    id: String,
    #[serde(default)]
    document: Option<String>,
    #[serde(default)]
    metadata: Option<serde_json::Map<String, serde_json::Value>>,
    embedding: Vec<f32>,
}

impl RecordFile {
    /// Opens `path`, choosing the format from its extension (`.jsonl`, `.ndjson`, `.parquet`).
    pub fn open(path: &Path) -> Result<RecordFile> {
        let extension = path.extension().and_then(|e| e.to_str()).unwrap_or_default();
        let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
        match extension {
            "jsonl" | "ndjson" | "json" => Ok(RecordFile::Jsonl {
                path: path.to_owned(),
                lines: BufReader::new(file).lines(),
                line: 0,
            }),
            "parquet" => {
                let reader = ParquetRecordBatchReaderBuilder::try_new(file)
                    .and_then(|builder| builder.with_batch_size(1024).build())
                    .with_context(|| format!("{}: not a readable Parquet file", path.display()))?;
                Ok(RecordFile::Parquet {
                    path: path.to_owned(),
                    reader,
                    row: 0,
                })
            }
            other => bail!(
                "{}: unknown file type '.{other}'; ingest reads .jsonl (JSON lines) and .parquet",
                path.display()
            ),
        }
    }

    /// Up to `n` more records; empty at the end of the file.
    pub fn next_chunk(&mut self, n: usize) -> Result<Vec<Record>> {
        let mut records = Vec::new();
        match self {
            RecordFile::Jsonl { path, lines, line } => {
                while records.len() < n {
                    let Some(text) = lines.next() else { break };
                    *line += 1;
                    let text = text.with_context(|| format!("reading {}", path.display()))?;
                    if text.trim().is_empty() {
                        continue;
                    }
                    let parsed: JsonRecord = serde_json::from_str(&text)
                        .with_context(|| format!("{}:{line}: not a record", path.display()))?;
                    let metadata = parsed.metadata.map(|m| serde_json::Value::Object(m).to_string());
                    let record = Record {
                        id: parsed.id,
                        document: parsed.document,
                        metadata,
                        embedding: parsed.embedding,
                    };
                    check_record(&record).with_context(|| format!("{}:{line}", path.display()))?;
                    records.push(record);
                }
            }
            RecordFile::Parquet { path, reader, row } => {
                while records.len() < n {
                    let Some(batch) = reader.next() else { break };
                    let batch = batch.with_context(|| format!("reading {}", path.display()))?;
                    for record in parquet_records(&batch).with_context(|| format!("{}", path.display()))? {
                        *row += 1;
                        check_record(&record).with_context(|| format!("{}: row {row}", path.display()))?;
                        records.push(record);
                    }
                }
            }
        }
        Ok(records)
    }
}

fn check_record(record: &Record) -> Result<()> {
    if record.id.is_empty() {
        bail!("a record has an empty id");
    }
    if record.embedding.is_empty() {
        bail!("record '{}' has an empty embedding", record.id);
    }
    if let Some(metadata) = &record.metadata {
        validate_metadata(metadata).map_err(|e| anyhow::anyhow!("record '{}': {e}", record.id))?;
    }
    Ok(())
}

/// The records of a Parquet batch whose columns are the canonical ones, in any list encoding.
fn parquet_records(batch: &RecordBatch) -> Result<Vec<Record>> {
    let column = |name: &str| {
        batch
            .column_by_name(name)
            .with_context(|| format!("no '{name}' column (expected id, document, metadata, embedding)"))
    };
    let text = |name: &str, required: bool| -> Result<Option<Arc<dyn Array>>> {
        match batch.column_by_name(name) {
            None if !required => Ok(None),
            _ => {
                let array = arrow_cast::cast(column(name)?, &DataType::Utf8)
                    .with_context(|| format!("column '{name}' is not text"))?;
                Ok(Some(array))
            }
        }
    };
    let ids = text("id", true)?.context("no 'id' column")?;
    let documents = text("document", false)?;
    let metadata = text("metadata", false)?;
    let embeddings = column("embedding")?;
    let floats = DataType::List(Arc::new(Field::new("item", DataType::Float32, true)));
    let embeddings = arrow_cast::cast(embeddings, &floats)
        .with_context(|| format!("column 'embedding' is {}, not a list of floats", embeddings.data_type()))?;
    let embeddings = embeddings.as_list::<i32>();
    let (ids, documents, metadata) = (
        ids.as_string::<i32>(),
        documents.as_ref().map(|d| d.as_string::<i32>()),
        metadata.as_ref().map(|m| m.as_string::<i32>()),
    );
    let mut records = Vec::with_capacity(batch.num_rows());
    for row in 0..batch.num_rows() {
        if ids.is_null(row) || embeddings.is_null(row) {
            bail!("row {row} of a batch has a null id or embedding");
        }
        let values = embeddings.value(row);
        let values = values.as_primitive::<Float32Type>();
        if values.null_count() > 0 {
            bail!("record '{}' has a null inside its embedding", ids.value(row));
        }
        let cell = |column: Option<&arrow_array::StringArray>| {
            column.filter(|c| !c.is_null(row)).map(|c| c.value(row).to_owned())
        };
        records.push(Record {
            id: ids.value(row).to_owned(),
            document: cell(documents),
            metadata: cell(metadata),
            embedding: values.values().to_vec(),
        });
    }
    Ok(records)
}
