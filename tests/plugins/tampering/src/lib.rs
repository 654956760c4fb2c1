//! A small but real store (one JSON file per collection) that corrupts one record right after a
//! load returns, as a faulty disk or a buggy store would: store option `tamper=ID` flips the
//! highest mantissa bit of that record's first vector component (far beyond any tolerance).
//! Migrations into it must fail verification and roll the store back.
//!
//! It also fails on demand, as a full disk would: while a file `refuse-writes` exists in the store
//! directory, a load fails before writing anything (if the file lists ids, one per line, only loads
//! holding one of them fail). Dual writes into it must lose nothing once the file is gone.

#![deny(unsafe_code)]

use std::path::{Path, PathBuf};

use ragged_plugin_api::arrow::{batch_to_records, canonical_schema, records_to_batch};
use ragged_plugin_api::{
    Access, Backend, BatchStream, Capabilities, CollectionInfo, ErrorCode, ExtractRequest, LoadMode, LoadRequest,
    LoadSummary, OpenRequest, Plugin, PluginError, Record,
};
use serde::{Deserialize, Serialize};

/// A store directory.
pub struct Tampering {
    root: PathBuf,
    access: Access,
    tamper: Option<String>,
}

/// One collection file.
#[derive(Serialize, Deserialize)]
struct CollectionFile {
    info: CollectionInfo,
    records: Vec<StoredRecord>,
}

/// A record with its vector as raw bits, so the file keeps it exactly.
#[derive(Serialize, Deserialize)]
struct StoredRecord {
    id: String,
    document: Option<String>,
    metadata: Option<String>,
    bits: Vec<u32>,
}

impl Plugin for Tampering {
    const CAPABILITIES: Capabilities = Capabilities::READ
        .union(Capabilities::WRITE)
        .union(Capabilities::UPSERT)
        .union(Capabilities::STORES_VECTORS)
        .union(Capabilities::DELETE);

    fn open(request: &OpenRequest) -> Result<Self, PluginError> {
        let mut tamper = None;
        for (key, value) in &request.options {
            match key.as_str() {
                "tamper" => tamper = Some(value.clone()),
                other => return Err(PluginError::invalid_input(format!("unknown option '{other}'"))),
            }
        }
        let root = PathBuf::from(&request.location);
        match request.access {
            Access::ReadWrite => std::fs::create_dir_all(&root).map_err(|e| io_error(&root, e))?,
            Access::ReadOnly if !root.is_dir() => {
                return Err(PluginError::not_found(format!("no store at {}", root.display())));
            }
            Access::ReadOnly => {}
        }
        Ok(Tampering {
            root,
            access: request.access,
            tamper,
        })
    }
}

impl Tampering {
    fn path(&self, collection: &str) -> PathBuf {
        self.root.join(format!("{collection}.json"))
    }

    fn read(&self, collection: &str) -> Result<CollectionFile, PluginError> {
        let path = self.path(collection);
        let text = std::fs::read_to_string(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => PluginError::not_found(format!("no collection '{collection}'")),
            _ => io_error(&path, e),
        })?;
        serde_json::from_str(&text).map_err(|e| PluginError::invalid_input(format!("{}: {e}", path.display())))
    }

    fn write(&self, file: &CollectionFile) -> Result<(), PluginError> {
        if self.access == Access::ReadOnly {
            return Err(PluginError::new(ErrorCode::ReadOnly, "the store is open read-only"));
        }
        let path = self.path(&file.info.name);
        let text = serde_json::to_string(file).map_err(|e| PluginError::new(ErrorCode::Internal, e.to_string()))?;
        std::fs::write(&path, text).map_err(|e| io_error(&path, e))
    }

    /// The ids `refuse-writes` lists (empty: every write is refused), or None without the file.
    fn refused_ids(&self) -> Option<Vec<String>> {
        let text = std::fs::read_to_string(self.root.join("refuse-writes")).ok()?;
        Some(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_owned)
                .collect(),
        )
    }

    fn stream(file: &CollectionFile, records: Vec<Record>) -> Result<BatchStream, PluginError> {
        let dimension = file.info.dimension;
        Ok(BatchStream::from_batches(
            canonical_schema(dimension),
            vec![records_to_batch(&records, dimension)?],
        ))
    }
}

impl Backend for Tampering {
    fn list_collections(&self) -> Result<Vec<String>, PluginError> {
        let mut names: Vec<String> = std::fs::read_dir(&self.root)
            .map_err(|e| io_error(&self.root, e))?
            .flatten()
            .filter_map(|entry| entry.file_name().to_str()?.strip_suffix(".json").map(str::to_owned))
            .collect();
        names.sort();
        Ok(names)
    }

    fn describe(&self, collection: &str) -> Result<CollectionInfo, PluginError> {
        let file = self.read(collection)?;
        Ok(CollectionInfo {
            count: file.records.len() as u64,
            ..file.info
        })
    }

    fn extract(&self, collection: &str, request: &ExtractRequest) -> Result<BatchStream, PluginError> {
        let file = self.read(collection)?;
        let records = file
            .records
            .iter()
            .skip(request.start as usize)
            .map(to_record)
            .collect();
        Tampering::stream(&file, records)
    }

    fn fetch(&self, collection: &str, ids: &[String]) -> Result<BatchStream, PluginError> {
        let file = self.read(collection)?;
        let records = ids
            .iter()
            .filter_map(|id| file.records.iter().find(|r| &r.id == id))
            .map(to_record)
            .collect();
        Tampering::stream(&file, records)
    }

    fn load(&self, request: &LoadRequest, batches: BatchStream) -> Result<LoadSummary, PluginError> {
        let name = &request.collection.name;
        let mut file = match (self.read(name), request.mode) {
            (Ok(_), LoadMode::Create) => {
                return Err(PluginError::new(ErrorCode::AlreadyExists, format!("'{name}' exists")));
            }
            (Ok(file), _) => file,
            (Err(e), LoadMode::Append) if e.code == ErrorCode::NotFound => return Err(e),
            (Err(e), _) if e.code == ErrorCode::NotFound => CollectionFile {
                info: request.collection.clone(),
                records: Vec::new(),
            },
            (Err(e), _) => return Err(e),
        };
        let reader = batches
            .into_reader()
            .map_err(|e| PluginError::invalid_input(e.to_string()))?;
        let refused = self.refused_ids();
        let mut positions: std::collections::HashMap<String, usize> = file
            .records
            .iter()
            .enumerate()
            .map(|(i, r)| (r.id.clone(), i))
            .collect();
        let mut tamper_now = false;
        let mut written = 0;
        for batch in reader {
            let batch = batch.map_err(|e| PluginError::invalid_input(e.to_string()))?;
            for record in batch_to_records(&batch)? {
                if let Some(refused) = &refused
                    && (refused.is_empty() || refused.contains(&record.id))
                {
                    return Err(PluginError::new(
                        ErrorCode::Io,
                        format!(
                            "writing '{}' refused: {} exists",
                            record.id,
                            self.root.join("refuse-writes").display()
                        ),
                    ));
                }
                let stored = StoredRecord {
                    bits: record.embedding.iter().map(|v| v.to_bits()).collect(),
                    id: record.id,
                    document: record.document,
                    metadata: record.metadata,
                };
                tamper_now |= self.tamper.as_ref() == Some(&stored.id);
                match positions.get(&stored.id) {
                    Some(&i) => file.records[i] = stored,
                    None => {
                        positions.insert(stored.id.clone(), file.records.len());
                        file.records.push(stored);
                    }
                }
                written += 1;
            }
        }
        self.write(&file)?;
        // The load is done and durable; now the corruption strikes the record it just wrote.
        if tamper_now
            && let Some(id) = &self.tamper
            && let Some(record) = file.records.iter_mut().find(|r| &r.id == id)
            && let Some(first) = record.bits.first_mut()
        {
            *first ^= 1 << 22;
            self.write(&file)?;
        }
        Ok(LoadSummary {
            records_written: written,
        })
    }

    fn files(&self, collection: &str) -> Result<Vec<String>, PluginError> {
        Ok(vec![self.path(collection).display().to_string()])
    }

    fn drop_collection(&self, collection: &str) -> Result<(), PluginError> {
        let path = self.path(collection);
        std::fs::remove_file(&path).map_err(|e| io_error(&path, e))
    }

    fn delete(&self, collection: &str, ids: &[String]) -> Result<u64, PluginError> {
        let mut file = self.read(collection)?;
        let before = file.records.len();
        file.records.retain(|r| !ids.contains(&r.id));
        self.write(&file)?;
        Ok((before - file.records.len()) as u64)
    }
}

fn to_record(stored: &StoredRecord) -> Record {
    Record {
        id: stored.id.clone(),
        document: stored.document.clone(),
        metadata: stored.metadata.clone(),
        embedding: stored.bits.iter().map(|b| f32::from_bits(*b)).collect(),
    }
}

fn io_error(path: &Path, error: std::io::Error) -> PluginError {
    PluginError::new(ErrorCode::Io, format!("{}: {error}", path.display()))
}

ragged_plugin_api::export_plugin!(Tampering);
