//! The `parquet` store plugin: a store is a directory, a collection is a subdirectory of Parquet
//! files in the canonical schema plus a `_collection.json` manifest. It is the interchange and
//! export format: pandas, DuckDB and Hugging Face `datasets` read the part files directly.
//!
//! A tour of the crate, one concern per module:
//! - this file: opening a store, its options and capabilities, and the [`Backend`] operations,
//!   each a few lines that hand over to a module;
//! - `layout`: the directory layout, the manifest and its atomic replacement, orphan cleanup;
//! - `part`: writing and opening one Parquet part file;
//! - `read`: the extract, sample and fetch streams;
//! - `write`: `load`, with its id-keyed replacement, and `delete`;
//! - `query`: brute-force nearest neighbours.
//!
//! See `docs/backends/parquet.md` for the format and its guarantees.

#![deny(unsafe_code)]

mod layout;
mod part;
mod query;
mod read;
#[cfg(test)]
mod test_support;
mod write;

use std::fs;
use std::io::ErrorKind;
use std::path::PathBuf;

use ragged_plugin_api::{
    Access, Backend, BatchStream, Capabilities, CollectionInfo, ErrorCode, ExtractRequest, Hit, LoadRequest,
    LoadSummary, OpenRequest, Plugin, PluginError, StorageReport,
};

use crate::layout::{CollectionDir, sync_dir};
use crate::part::Compression;
use crate::read::Snapshot;

/// The store options this plugin accepts.
const KNOWN_OPTIONS: &[&str] = &["compression"];

/// An open parquet store.
#[derive(Debug)]
pub struct ParquetStore {
    /// The store directory, absolute.
    root: PathBuf,
    access: Access,
    compression: Compression,
}

impl ParquetStore {
    /// The snapshot of a collection as its manifest describes it now.
    fn snapshot(&self, collection: &str) -> Result<Snapshot, PluginError> {
        let dir = CollectionDir::new(&self.root, collection)?;
        let manifest = dir.read_manifest()?;
        Ok(Snapshot { dir, manifest })
    }

    /// Refuses `operation` when the store was opened read-only.
    fn writable(&self, operation: &str) -> Result<(), PluginError> {
        match self.access {
            Access::ReadWrite => Ok(()),
            Access::ReadOnly => Err(PluginError::new(
                ErrorCode::ReadOnly,
                format!(
                    "the parquet store at {} is open read-only, so {operation} is refused",
                    self.root.display()
                ),
            )),
        }
    }
}

/// Reads the `compression` option (the only one), refusing any other key.
fn parse_options(request: &OpenRequest) -> Result<Compression, PluginError> {
    let mut compression = Compression::Zstd;
    for (key, value) in &request.options {
        match key.as_str() {
            "compression" => {
                compression = Compression::parse(value).ok_or_else(|| {
                    PluginError::invalid_input(format!(
                        "unknown value '{value}' for option 'compression' (expected {})",
                        Compression::NAMES
                    ))
                })?;
            }
            other => {
                return Err(PluginError::invalid_input(format!(
                    "unknown option '{other}' for the parquet store (known options: {})",
                    KNOWN_OPTIONS.join(", ")
                )));
            }
        }
    }
    Ok(compression)
}

impl Plugin for ParquetStore {
    const CAPABILITIES: Capabilities = Capabilities::READ
        .union(Capabilities::WRITE)
        .union(Capabilities::UPSERT)
        .union(Capabilities::QUERY)
        .union(Capabilities::STORES_VECTORS)
        .union(Capabilities::DELETE);

    fn open(request: &OpenRequest) -> Result<ParquetStore, PluginError> {
        let compression = parse_options(request)?;
        if request.location.is_empty() {
            return Err(PluginError::invalid_input("the parquet store location is empty"));
        }
        let root = std::path::absolute(&request.location)
            .map_err(|e| PluginError::invalid_input(format!("{}: {e}", request.location)))?;
        if request.access == Access::ReadWrite {
            fs::create_dir_all(&root).map_err(|e| PluginError::io(&root, &e))?;
        }
        match fs::metadata(&root) {
            Ok(metadata) if metadata.is_dir() => {}
            Ok(_) => {
                return Err(PluginError::invalid_input(format!(
                    "{} is not a directory (a parquet store is a directory of collections)",
                    root.display()
                )));
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Err(PluginError::not_found(format!(
                    "no parquet store at {}: the directory does not exist",
                    root.display()
                )));
            }
            Err(e) => return Err(PluginError::io(&root, &e)),
        }
        Ok(ParquetStore {
            root,
            access: request.access,
            compression,
        })
    }
}

impl Backend for ParquetStore {
    fn list_collections(&self) -> Result<Vec<String>, PluginError> {
        layout::list_collections(&self.root)
    }

    fn describe(&self, collection: &str) -> Result<CollectionInfo, PluginError> {
        Ok(self.snapshot(collection)?.manifest.describe())
    }

    fn count(&self, collection: &str) -> Result<u64, PluginError> {
        Ok(self.snapshot(collection)?.manifest.count())
    }

    fn extract(&self, collection: &str, request: &ExtractRequest) -> Result<BatchStream, PluginError> {
        read::extract(self.snapshot(collection)?, request)
    }

    fn load(&self, request: &LoadRequest, batches: BatchStream) -> Result<LoadSummary, PluginError> {
        self.writable("load")?;
        write::load(&self.root, self.compression, request, batches)
    }

    fn sample(&self, collection: &str, n: u64, seed: u64) -> Result<BatchStream, PluginError> {
        read::sample(self.snapshot(collection)?, n, seed)
    }

    fn fetch(&self, collection: &str, ids: &[String]) -> Result<BatchStream, PluginError> {
        read::fetch(self.snapshot(collection)?, ids)
    }

    fn query(&self, collection: &str, vector: &[f32], k: u32) -> Result<Vec<Hit>, PluginError> {
        query::nearest(&self.snapshot(collection)?, vector, k)
    }

    fn storage(&self, collection: &str) -> Result<StorageReport, PluginError> {
        let snapshot = self.snapshot(collection)?;
        let (mut vectors_bytes, mut documents_bytes) = (0, 0);
        for index in 0..snapshot.manifest.parts.len() {
            let (vectors, documents) = snapshot.open_part(index)?.column_bytes();
            vectors_bytes += vectors;
            documents_bytes += documents;
        }
        Ok(StorageReport {
            vectors_bytes,
            documents_bytes,
            index_bytes: 0,
            total_bytes: snapshot.dir.total_bytes()?,
            records: snapshot.manifest.count(),
        })
    }

    fn files(&self, collection: &str) -> Result<Vec<String>, PluginError> {
        let snapshot = self.snapshot(collection)?;
        let mut files = vec![snapshot.dir.manifest_path().display().to_string()];
        files.extend(
            snapshot
                .manifest
                .parts
                .iter()
                .map(|p| snapshot.dir.part_path(&p.file).display().to_string()),
        );
        Ok(files)
    }

    fn drop_collection(&self, collection: &str) -> Result<(), PluginError> {
        self.writable("drop_collection")?;
        let dir = CollectionDir::new(&self.root, collection)?;
        dir.read_manifest()?;
        {
            // Removing the manifest first is the commit: a crash after it leaves a directory
            // that is no longer a collection, never a collection with parts missing.
            let _lock = dir.lock()?;
            let manifest = dir.manifest_path();
            fs::remove_file(&manifest).map_err(|e| PluginError::io(&manifest, &e))?;
            sync_dir(&dir.path)?;
        }
        fs::remove_dir_all(&dir.path).map_err(|e| PluginError::io(&dir.path, &e))?;
        sync_dir(&self.root)
    }

    fn delete(&self, collection: &str, ids: &[String]) -> Result<u64, PluginError> {
        self.writable("delete")?;
        write::delete(&self.root, self.compression, collection, ids)
    }
}

ragged_plugin_api::export_plugin!(ParquetStore);

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn open(location: &std::path::Path, access: Access, options: &[(&str, &str)]) -> Result<ParquetStore, PluginError> {
        ParquetStore::open(&OpenRequest {
            location: location.display().to_string(),
            options: options
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect::<BTreeMap<_, _>>(),
            access,
        })
    }

    #[test]
    fn capabilities_are_everything_but_an_embedder() {
        assert_eq!(
            ParquetStore::CAPABILITIES.names(),
            vec!["read", "write", "upsert", "query", "stores_vectors", "delete"]
        );
    }

    #[test]
    fn options_are_checked_by_name_and_value() {
        let root = tempfile::tempdir().expect("temp dir");
        for (value, expected) in [
            ("zstd", Compression::Zstd),
            ("snappy", Compression::Snappy),
            ("none", Compression::None),
        ] {
            let store = open(root.path(), Access::ReadOnly, &[("compression", value)]).expect("opens");
            assert_eq!(store.compression, expected);
        }
        assert_eq!(
            open(root.path(), Access::ReadOnly, &[]).expect("opens").compression,
            Compression::Zstd
        );
        let error = open(root.path(), Access::ReadOnly, &[("compresion", "zstd")]).expect_err("typo");
        assert_eq!(error.code, ErrorCode::InvalidInput);
        assert_eq!(
            error.message,
            "unknown option 'compresion' for the parquet store (known options: compression)"
        );
        let error = open(root.path(), Access::ReadOnly, &[("compression", "lz4")]).expect_err("bad value");
        assert_eq!(
            error.message,
            "unknown value 'lz4' for option 'compression' (expected zstd, snappy or none)"
        );
    }

    #[test]
    fn read_write_creates_the_store_and_read_only_does_not() {
        let root = tempfile::tempdir().expect("temp dir");
        let location = root.path().join("a").join("store");
        let error = open(&location, Access::ReadOnly, &[]).expect_err("missing");
        assert_eq!(error.code, ErrorCode::NotFound);
        assert_eq!(
            error.message,
            format!(
                "no parquet store at {}: the directory does not exist",
                location.display()
            )
        );
        assert!(!location.exists());
        open(&location, Access::ReadWrite, &[]).expect("creates");
        assert!(location.is_dir());
        let file = root.path().join("file");
        fs::write(&file, b"x").expect("write");
        let error = open(&file, Access::ReadOnly, &[]).expect_err("a file");
        assert_eq!(error.code, ErrorCode::InvalidInput);
        assert!(error.message.contains("is not a directory"), "{}", error.message);
    }

    #[test]
    fn a_relative_location_becomes_absolute() {
        let store = open(std::path::Path::new("."), Access::ReadOnly, &[]).expect("opens");
        assert!(store.root.is_absolute(), "{}", store.root.display());
    }
}
