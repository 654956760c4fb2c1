//! Writing the same records to several stores at once: dual-write while switching stores.
//!
//! Every store gets every write, in parallel; a store that fails does not stop the others. What a
//! store could not take goes to a retry file (JSON lines, each line flushed to disk before the
//! write returns) that [`replay`] applies later, so no record is lost. After a store's first
//! failure, its later writes go to the retry file as well: replaying them in order is the only way
//! a later version of a record is not overwritten by an earlier one.
//!
//! ```no_run
//! # fn main() -> anyhow::Result<()> {
//! use ragged::context::Context;
//! use ragged::dual_write::DualWriter;
//! use ragged::store::{Store, StoreSpec};
//! use ragged_plugin_api::{Access, CollectionInfo, DistanceMetric, Record};
//!
//! let ctx = Context::from_env(None)?;
//! let open = |spec: &str| Store::open(&ctx, &spec.parse().map_err(anyhow::Error::msg)?, &Default::default(), Access::ReadWrite);
//! let stores = vec![open("chroma:./chroma_db")?, open("lance:./lancedb")?];
//! let collection = CollectionInfo {
//!     name: "notes".into(), dimension: 3, metric: DistanceMetric::Cosine, count: 0,
//!     embedding_model: None, index_params: None, metadata: Default::default(), extras: Default::default(),
//! };
//! let mut writer = DualWriter::new(stores, collection, "notes.retry.jsonl".as_ref())?;
//! writer.write(&[Record { id: "a".into(), document: Some("hello".into()), metadata: None, embedding: vec![0.1, 0.2, 0.3] }])?;
//! writer.delete(&["b".to_owned()])?;
//! for store in writer.finish().stores {
//!     println!("{}: {} written, {} queued for retry", store.store, store.written, store.queued);
//! }
//! # Ok(())
//! # }
//! ```

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use arrow_array::RecordBatch;
use ragged_plugin_api::arrow::{canonical_schema, records_to_batch};
use ragged_plugin_api::{Access, BatchStream, CollectionInfo, ErrorCode, LoadMode, LoadRequest, PluginError, Record};
use serde::{Deserialize, Serialize};

use crate::context::Context;
use crate::runs::write_atomic;
use crate::store::{Store, StoreError};

/// Writes to several stores; see the module docs.
pub struct DualWriter {
    targets: Vec<Target>,
    collection: CollectionInfo,
    retry: RetryLog,
}

struct Target {
    store: Store,
    report: StoreReport,
}

/// What happened in one store.
#[derive(Debug, Clone, Serialize)]
pub struct StoreReport {
    /// The store.
    pub store: String,
    /// Records written.
    pub written: u64,
    /// Ids deleted (asked for; ids a store did not hold count too).
    pub deleted: u64,
    /// Records and ids put in the retry file for this store.
    pub queued: u64,
    /// The first error, when there was one.
    pub error: Option<String>,
}

/// What a dual writer did, store by store.
#[derive(Debug, Clone, Serialize)]
pub struct DualWriteReport {
    /// One entry per store, in the order given.
    pub stores: Vec<StoreReport>,
    /// The retry file, when anything was queued.
    pub retry_file: Option<PathBuf>,
}

impl StoreReport {
    fn new(store: String) -> StoreReport {
        StoreReport {
            store,
            written: 0,
            deleted: 0,
            queued: 0,
            error: None,
        }
    }

    fn applied(&mut self, write: &Prepared<'_>) {
        match write {
            Prepared::Upsert(batch) => self.written += batch.num_rows() as u64,
            Prepared::Delete(ids) => self.deleted += ids.len() as u64,
        }
    }

    fn queue(&mut self, operation: &Operation, error: String) {
        self.queued += operation.len();
        self.error.get_or_insert(error);
    }
}

impl DualWriteReport {
    /// Whether every store took every write.
    pub fn complete(&self) -> bool {
        self.stores.iter().all(|s| s.queued == 0)
    }
}

/// One queued write in the retry file.
#[derive(Debug, Serialize, Deserialize)]
struct RetryEntry {
    store: String,
    #[serde(default)]
    options: BTreeMap<String, String>,
    collection: CollectionInfo,
    error: String,
    #[serde(flatten)]
    operation: Operation,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
enum Operation {
    Upsert { records: Vec<QueuedRecord> },
    Delete { ids: Vec<String> },
}

/// A write as every store receives it: the batch is built once, whatever the number of stores.
enum Prepared<'a> {
    Upsert(RecordBatch),
    Delete(&'a [String]),
}

impl Operation {
    /// The write to hand to a store.
    fn prepare(&self, dimension: u32) -> Result<Prepared<'_>, PluginError> {
        match self {
            Operation::Upsert { records } => {
                let records: Vec<Record> = records.iter().cloned().map(Record::from).collect();
                Ok(Prepared::Upsert(records_to_batch(&records, dimension)?))
            }
            Operation::Delete { ids } => Ok(Prepared::Delete(ids)),
        }
    }

    fn len(&self) -> u64 {
        match self {
            Operation::Upsert { records } => records.len() as u64,
            Operation::Delete { ids } => ids.len() as u64,
        }
    }
}

/// A record with its vector as raw bits: JSON text would round floats through f64.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct QueuedRecord {
    id: String,
    document: Option<String>,
    metadata: Option<String>,
    embedding_bits: Vec<u32>,
}

impl From<&Record> for QueuedRecord {
    fn from(record: &Record) -> QueuedRecord {
        QueuedRecord {
            id: record.id.clone(),
            document: record.document.clone(),
            metadata: record.metadata.clone(),
            embedding_bits: record.embedding.iter().map(|v| v.to_bits()).collect(),
        }
    }
}

impl From<QueuedRecord> for Record {
    fn from(queued: QueuedRecord) -> Record {
        Record {
            id: queued.id,
            document: queued.document,
            metadata: queued.metadata,
            embedding: queued.embedding_bits.into_iter().map(f32::from_bits).collect(),
        }
    }
}

/// The retry file, created at the first failure and appended durably.
struct RetryLog {
    path: PathBuf,
    file: Option<File>,
}

impl RetryLog {
    fn append(&mut self, entry: &RetryEntry) -> Result<()> {
        if self.file.is_none() {
            let file = File::options()
                .create(true)
                .append(true)
                .open(&self.path)
                .with_context(|| format!("opening the retry file {}", self.path.display()))?;
            self.file = Some(file);
        }
        let mut line = serde_json::to_vec(entry)?;
        line.push(b'\n');
        let file = self.file.as_mut().context("the retry file is open")?;
        file.write_all(&line)
            .and_then(|()| file.sync_data())
            .with_context(|| format!("writing the retry file {}", self.path.display()))
    }
}

impl DualWriter {
    /// A writer into `collection` of every store in `stores`, queuing failures in `retry_path`
    /// (appended to if it exists). Fails before writing anything when a store holds the
    /// collection with another dimension or metric.
    pub fn new(stores: Vec<Store>, collection: CollectionInfo, retry_path: &Path) -> Result<DualWriter> {
        for store in &stores {
            check_compatible(store, &collection)?;
        }
        Ok(DualWriter {
            targets: stores
                .into_iter()
                .map(|store| Target {
                    report: StoreReport::new(store.spec.to_string()),
                    store,
                })
                .collect(),
            collection,
            retry: RetryLog {
                path: retry_path.to_owned(),
                file: None,
            },
        })
    }

    /// Writes (upserts) `records` into every store. Errs only when the records are invalid or the
    /// retry file cannot be written; a store's failure is queued and reported.
    pub fn write(&mut self, records: &[Record]) -> Result<()> {
        // Invalid records are the caller's error, not a store's: refuse them before any store sees them.
        let batch = records_to_batch(records, self.collection.dimension)?;
        self.apply(&Prepared::Upsert(batch), || Operation::Upsert {
            records: records.iter().map(QueuedRecord::from).collect(),
        })
    }

    /// Deletes `ids` from every store.
    pub fn delete(&mut self, ids: &[String]) -> Result<()> {
        self.apply(&Prepared::Delete(ids), || Operation::Delete { ids: ids.to_vec() })
    }

    /// The per-store report.
    pub fn finish(self) -> DualWriteReport {
        DualWriteReport {
            retry_file: self.retry.file.is_some().then_some(self.retry.path),
            stores: self.targets.into_iter().map(|t| t.report).collect(),
        }
    }

    /// Hands `write` to every store; `queued` gives its retry-file form, built only on a failure.
    fn apply(&mut self, write: &Prepared<'_>, queued: impl Fn() -> Operation) -> Result<()> {
        let collection = &self.collection;
        let outcomes: Vec<Option<Result<(), PluginError>>> = std::thread::scope(|scope| {
            let handles: Vec<_> = self
                .targets
                .iter()
                .map(|target| {
                    // A store that failed before only queues, to keep its writes in order.
                    (target.report.queued == 0).then(|| scope.spawn(|| perform(&target.store, collection, write)))
                })
                .collect();
            handles
                .into_iter()
                .map(|handle| {
                    handle.map(|h| {
                        h.join()
                            .unwrap_or_else(|_| Err(PluginError::new(ErrorCode::Panic, "the store's writer panicked")))
                    })
                })
                .collect()
        });
        let mut operation = None;
        for (target, outcome) in self.targets.iter_mut().zip(outcomes) {
            let error = match outcome {
                Some(Ok(())) => {
                    target.report.applied(write);
                    continue;
                }
                Some(Err(error)) => StoreError::new(&target.store.spec, "write", error).to_string(),
                None => "queued behind an earlier failure".to_owned(),
            };
            let operation = operation.get_or_insert_with(&queued);
            self.retry.append(&RetryEntry {
                store: target.store.spec.to_string(),
                options: target.store.options.clone(),
                collection: collection.clone(),
                error: error.clone(),
                operation: operation.clone(),
            })?;
            target.report.queue(operation, error);
        }
        Ok(())
    }
}

fn check_compatible(store: &Store, collection: &CollectionInfo) -> Result<()> {
    match store.backend.describe(&collection.name) {
        Ok(existing) if existing.dimension != collection.dimension || existing.metric != collection.metric => bail!(
            "{}: '{}' has dimension {} and metric {}, the records have dimension {} and metric {}",
            store.spec,
            collection.name,
            existing.dimension,
            existing.metric,
            collection.dimension,
            collection.metric
        ),
        // A store that cannot even describe fails its writes too; they are queued then.
        _ => Ok(()),
    }
}

fn perform(store: &Store, collection: &CollectionInfo, write: &Prepared<'_>) -> Result<(), PluginError> {
    match write {
        Prepared::Upsert(batch) => {
            let request = LoadRequest {
                collection: collection.clone(),
                mode: LoadMode::Upsert,
            };
            store
                .backend
                .load(
                    &request,
                    BatchStream::from_batches(canonical_schema(collection.dimension), vec![batch.clone()]),
                )
                .map(|_| ())
        }
        Prepared::Delete(ids) => match store.backend.delete(&collection.name, ids) {
            // Deleting from a collection that was never created leaves nothing to delete.
            Err(error) if error.code == ErrorCode::NotFound => Ok(()),
            other => other.map(|_| ()),
        },
    }
}

/// What a replay did.
#[derive(Debug, Clone, Serialize)]
pub struct ReplayReport {
    /// Per store: records and ids applied, and what is still queued.
    pub stores: Vec<StoreReport>,
    /// The retry file, rewritten with what failed again, or removed when nothing did.
    pub retry_file: PathBuf,
    /// Whether anything is still queued.
    pub remaining: u64,
}

/// Applies the writes queued in `path`, store by store in file order; what fails again (and
/// everything after it for that store) stays in the file.
pub fn replay(ctx: &Context, path: &Path) -> Result<ReplayReport> {
    let file = File::open(path).with_context(|| format!("opening the retry file {}", path.display()))?;
    let mut entries = Vec::new();
    for (number, line) in BufReader::new(file).lines().enumerate() {
        let line = line.with_context(|| format!("reading {}", path.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        let entry: RetryEntry = serde_json::from_str(&line)
            .with_context(|| format!("{}:{}: not a ragged retry entry", path.display(), number + 1))?;
        entries.push(entry);
    }
    let mut reports: Vec<StoreReport> = Vec::new();
    let mut opened: BTreeMap<String, Result<Store, String>> = BTreeMap::new();
    let mut kept: Vec<RetryEntry> = Vec::new();
    for mut entry in entries {
        let index = match reports.iter().position(|r| r.store == entry.store) {
            Some(index) => index,
            None => {
                reports.push(StoreReport::new(entry.store.clone()));
                reports.len() - 1
            }
        };
        let report = &mut reports[index];
        let store = opened.entry(entry.store.clone()).or_insert_with(|| {
            let spec = entry.store.parse().map_err(|e: String| e)?;
            Store::open(ctx, &spec, &entry.options, Access::ReadWrite).map_err(|e| format!("{e:#}"))
        });
        let outcome = match store {
            _ if report.queued > 0 => Err("queued behind an earlier failure".to_owned()),
            Ok(store) => entry
                .operation
                .prepare(entry.collection.dimension)
                .and_then(|write| perform(store, &entry.collection, &write).map(|()| write))
                .map_err(|e| StoreError::new(&store.spec, "write", e).to_string()),
            Err(error) => Err(error.clone()),
        };
        match outcome {
            Ok(write) => report.applied(&write),
            Err(error) => {
                report.queue(&entry.operation, error.clone());
                entry.error = error;
                kept.push(entry);
            }
        }
    }
    let remaining = reports.iter().map(|r| r.queued).sum();
    if kept.is_empty() {
        std::fs::remove_file(path).with_context(|| format!("removing {}", path.display()))?;
    } else {
        let mut text = Vec::new();
        for entry in &kept {
            text.extend(serde_json::to_vec(entry)?);
            text.push(b'\n');
        }
        write_atomic(path, &text)?;
    }
    Ok(ReplayReport {
        stores: reports,
        retry_file: path.to_owned(),
        remaining,
    })
}
