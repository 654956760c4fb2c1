//! The database directory on disk: what counts as a LanceDB database, where a table's files are,
//! and the bytes a table occupies.
//!
//! A table `<name>` is the directory `<db>/<name>.lance` holding `data/` (the data files),
//! `_indices/`, `_versions/` (manifests), `_transactions/`, `_deletions/` and `_refs/` (tags).

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use lancedb::Table;
use ragged_plugin_api::{ErrorCode, PluginError, StorageReport};

use crate::runtime::{block_on, lance_error};

/// Checks that `root` can be a LanceDB database: a directory that is empty or holds `*.lance`
/// tables. Anything else (a file, another store's directory) is refused by name.
pub(crate) fn check_database_dir(root: &Path) -> Result<(), PluginError> {
    match fs::metadata(root) {
        Ok(metadata) if metadata.is_dir() => {}
        Ok(_) => {
            return Err(PluginError::invalid_input(format!(
                "{} is a file, not a LanceDB database directory",
                root.display()
            )));
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {
            return Err(PluginError::not_found(format!(
                "no LanceDB database at {}: the directory does not exist",
                root.display()
            )));
        }
        Err(e) => return Err(PluginError::io(root, &e)),
    }
    if root.extension().is_some_and(|e| e == "lance") && root.join("_versions").is_dir() {
        return Err(PluginError::invalid_input(format!(
            "{} is a single Lance table, not a LanceDB database",
            root.display()
        ))
        .with_help("pass the directory that contains it (what lancedb.connect() opens)"));
    }
    let mut others = Vec::new();
    let mut tables = 0usize;
    for entry in fs::read_dir(root).map_err(|e| PluginError::io(root, &e))? {
        let entry = entry.map_err(|e| PluginError::io(root, &e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".lance") {
            tables += 1;
        } else if !name.starts_with('.') {
            others.push(name);
        }
    }
    if tables == 0 && !others.is_empty() {
        others.sort();
        others.truncate(5);
        return Err(PluginError::new(
            ErrorCode::Incompatible,
            format!(
                "{} is not a LanceDB database: it holds no *.lance table but other files ({})",
                root.display(),
                others.join(", ")
            ),
        ));
    }
    Ok(())
}

/// The directory of table `name`.
pub(crate) fn table_dir(root: &Path, name: &str) -> PathBuf {
    root.join(format!("{name}.lance"))
}

/// The bytes of every file under `path` (0 when it does not exist).
fn tree_bytes(path: &Path) -> Result<u64, PluginError> {
    let metadata = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(PluginError::io(path, &e)),
    };
    if !metadata.is_dir() {
        return Ok(metadata.len());
    }
    let mut total = 0;
    for entry in fs::read_dir(path).map_err(|e| PluginError::io(path, &e))? {
        let entry = entry.map_err(|e| PluginError::io(path, &e))?;
        total += tree_bytes(&entry.path())?;
    }
    Ok(total)
}

/// The storage of a table: the data files of the current version split into vectors and the rest
/// (by the raw size of the vectors, as Lance stores float vectors uncompressed), its indices, and
/// a total that also counts manifests, deletion files and the files of older versions.
pub(crate) fn report(
    root: &Path,
    name: &str,
    table: &Table,
    records: u64,
    dimension: u32,
) -> Result<StorageReport, PluginError> {
    let dir = table_dir(root, name);
    let context = format!("table '{name}'");
    let native = table
        .as_native()
        .ok_or_else(|| PluginError::new(ErrorCode::Internal, format!("{context} is not a local table")))?;
    let manifest = block_on(native.manifest())?.map_err(|e| lance_error(&context, e))?;
    let mut live = 0u64;
    for fragment in manifest.fragments.iter() {
        for file in &fragment.files {
            let in_data = dir.join("data").join(&file.path);
            let path = if in_data.exists() {
                in_data
            } else {
                dir.join(&file.path)
            };
            live += tree_bytes(&path)?;
        }
    }
    let vectors_bytes = live.min(records * u64::from(dimension) * 4);
    Ok(StorageReport {
        vectors_bytes,
        documents_bytes: live - vectors_bytes,
        index_bytes: tree_bytes(&dir.join("_indices"))?,
        total_bytes: tree_bytes(&dir)?,
        records,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn other_stores_are_not_lance_databases() {
        let dir = tempfile::tempdir().expect("tempdir");
        check_database_dir(dir.path()).expect("an empty directory is an empty database");
        fs::write(dir.path().join("chroma.sqlite3"), b"x").expect("write");
        let error = check_database_dir(dir.path()).expect_err("a chroma store");
        assert_eq!(error.code, ErrorCode::Incompatible);
        assert!(
            error
                .message
                .contains("holds no *.lance table but other files (chroma.sqlite3)"),
            "{error}"
        );
        let error = check_database_dir(&dir.path().join("chroma.sqlite3")).expect_err("a file");
        assert!(
            error.message.ends_with("is a file, not a LanceDB database directory"),
            "{error}"
        );
    }
}
