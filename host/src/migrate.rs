//! Moving collections from one store to another, streaming batch by batch.
//!
//! Batches go from the source plugin's Arrow C stream to the target plugin's without copies: the
//! host imports the stream, checks each batch's schema, counts it and re-exports the same buffers.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Result, bail};
use arrow_array::{RecordBatch, RecordBatchReader};
use arrow_schema::{ArrowError, SchemaRef};
use ragged_plugin_api::{Access, BatchStream, Capabilities, ExtractRequest, LoadMode, LoadRequest};
use serde::Serialize;
use tracing::info;

use crate::store::{InStore, Store};
use crate::verify::{self, CollectionVerification, VerifyOptions};

/// What to migrate and how.
#[derive(Debug, Clone)]
pub struct MigrateOptions {
    /// Collections to move; empty means all of the source's.
    pub collections: Vec<String>,
    /// Records per batch asked of the source.
    pub batch_size: u32,
    /// Compare every record of source and target afterwards, with these options.
    pub verify: Option<VerifyOptions>,
}

/// Called from whichever thread the target consumes batches on.
pub type ProgressFn = Arc<dyn Fn(MigrateEvent) + Send + Sync>;

/// Progress of a migration.
#[derive(Debug, Clone)]
pub enum MigrateEvent {
    /// A collection starts; `records` is the source's count.
    CollectionStarted {
        /// The collection.
        name: String,
        /// Its record count.
        records: u64,
    },
    /// A batch of `records` reached the target.
    Batch {
        /// Records in the batch.
        records: u64,
    },
    /// The collection is written.
    CollectionLoaded,
}

/// What a migration did, printed by `--json`.
#[derive(Debug, Clone, Serialize)]
pub struct MigrateReport {
    /// The source store.
    pub source: String,
    /// The target store.
    pub target: String,
    /// One entry per collection.
    pub collections: Vec<CollectionReport>,
}

/// One migrated collection.
#[derive(Debug, Clone, Serialize)]
pub struct CollectionReport {
    /// Its name.
    pub name: String,
    /// Records read from the source.
    pub records: u64,
    /// Wall time of extract and load.
    pub seconds: f64,
    /// Records per second.
    pub records_per_second: f64,
    /// Verification, when asked.
    pub verification: Option<CollectionVerification>,
}

impl MigrateReport {
    /// Whether every verification that ran passed.
    pub fn verified_ok(&self) -> bool {
        self.collections
            .iter()
            .all(|c| c.verification.as_ref().is_none_or(|v| v.ok))
    }
}

/// Migrates collections from `source` (opened read-only) to `target`.
pub fn migrate(
    source: &Store,
    target: &Store,
    options: &MigrateOptions,
    progress: ProgressFn,
) -> Result<MigrateReport> {
    if source.access != Access::ReadOnly {
        bail!("internal: the source of a migration must be opened read-only");
    }
    source.require(Capabilities::READ, "be read")?;
    target.require(Capabilities::WRITE, "be written")?;
    let names = if options.collections.is_empty() {
        source.backend.list_collections().in_store(source, "list collections")?
    } else {
        options.collections.clone()
    };
    let mut collections = Vec::new();
    for name in names {
        let started = Instant::now();
        let info = source
            .backend
            .describe(&name)
            .in_store(source, &format!("describe '{name}'"))?;
        info!(collection = %name, records = info.count, "migrating");
        progress(MigrateEvent::CollectionStarted {
            name: name.clone(),
            records: info.count,
        });
        let request = ExtractRequest {
            batch_size: options.batch_size,
            start: 0,
        };
        let stream = source
            .backend
            .extract(&name, &request)
            .in_store(source, &format!("extract '{name}'"))?;
        let reader = stream.into_reader()?;
        let schema = ragged_plugin_api::arrow::canonical_schema(info.dimension);
        if reader.schema().fields() != schema.fields() {
            bail!(
                "{}: extract '{name}' returned columns that are not the canonical schema",
                source.spec
            );
        }
        let counted = CountingReader {
            inner: reader,
            schema,
            progress: progress.clone(),
        };
        let load = LoadRequest {
            collection: info.clone(),
            mode: LoadMode::Create,
        };
        let summary = target
            .backend
            .load(&load, BatchStream::from_reader(counted))
            .in_store(target, &format!("load '{name}'"))?;
        progress(MigrateEvent::CollectionLoaded);
        let target_count = target
            .backend
            .count(&name)
            .in_store(target, &format!("count '{name}'"))?;
        if target_count != info.count || summary.records_written != info.count {
            bail!(
                "collection '{name}': the source has {} records, {} were written and the target now has {target_count}",
                info.count,
                summary.records_written
            );
        }
        let seconds = started.elapsed().as_secs_f64();
        let verification = match &options.verify {
            Some(verify_options) => Some(verify::compare_collection(source, target, &name, verify_options)?),
            None => None,
        };
        collections.push(CollectionReport {
            name,
            records: info.count,
            seconds,
            records_per_second: info.count as f64 / seconds.max(1e-9),
            verification,
        });
    }
    Ok(MigrateReport {
        source: source.spec.to_string(),
        target: target.spec.to_string(),
        collections,
    })
}

/// Passes batches through, checking each against the canonical schema and reporting progress.
struct CountingReader<R> {
    inner: R,
    schema: SchemaRef,
    progress: ProgressFn,
}

impl<R: Iterator<Item = Result<RecordBatch, ArrowError>>> Iterator for CountingReader<R> {
    type Item = Result<RecordBatch, ArrowError>;

    fn next(&mut self) -> Option<Self::Item> {
        let batch = match self.inner.next()? {
            Ok(batch) => batch,
            Err(error) => return Some(Err(error)),
        };
        if batch.schema().fields() != self.schema.fields() {
            return Some(Err(ArrowError::SchemaError(
                "the source produced a batch outside the canonical schema".into(),
            )));
        }
        (self.progress)(MigrateEvent::Batch {
            records: batch.num_rows() as u64,
        });
        Some(Ok(batch))
    }
}

impl<R: Iterator<Item = Result<RecordBatch, ArrowError>>> RecordBatchReader for CountingReader<R> {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }
}
