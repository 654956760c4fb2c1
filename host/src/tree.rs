//! Digests of directory trees, to prove that a store was left byte-identical, and cheaper
//! fingerprints of file metadata, to notice that a store was written to.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use sha2::{Digest, Sha256};

/// A SHA-256 over every path, file type and file content under `root`, in sorted order.
/// Missing `root` digests as an empty tree.
pub fn tree_digest(root: &Path) -> Result<String> {
    let mut hasher = Sha256::new();
    if root.exists() {
        visit(root, root, &mut hasher)?;
    }
    Ok(hex::encode(hasher.finalize()))
}

/// A SHA-256 over the path, size and modification time of every file at or under `paths`, and
/// of the SQLite write-ahead log (`FILE-wal`) beside a listed file, where writes land before they
/// reach the database file. Reads change none of these, every write changes at least one, and
/// computing it costs no reading of file contents, so it suits stores of any size.
pub fn metadata_fingerprint(paths: &[PathBuf]) -> Result<String> {
    let mut hasher = Sha256::new();
    let mut paths = paths.to_vec();
    paths.sort();
    for path in &paths {
        let mut wal = path.as_os_str().to_owned();
        wal.push("-wal");
        for path in [path.clone(), PathBuf::from(wal)] {
            fingerprint_visit(&path, &mut hasher)?;
        }
    }
    Ok(hex::encode(hasher.finalize()))
}

/// The entries of the directory `dir`, sorted, so every walk over a tree visits it in one order.
pub(crate) fn sorted_children(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut children: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .with_context(|| format!("listing {}", dir.display()))?;
    children.sort();
    Ok(children)
}

fn fingerprint_visit(path: &Path, hasher: &mut Sha256) -> Result<()> {
    hasher.update(path.to_string_lossy().as_bytes());
    hasher.update([0]);
    let metadata = match std::fs::symlink_metadata(path) {
        Ok(metadata) => metadata,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            hasher.update(b"-");
            return Ok(());
        }
        Err(error) => return Err(error).with_context(|| format!("reading {}", path.display())),
    };
    if metadata.is_dir() {
        hasher.update(b"d");
        for child in sorted_children(path)? {
            fingerprint_visit(&child, hasher)?;
        }
    } else {
        let modified = metadata
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        hasher.update(b"f");
        hasher.update(metadata.len().to_le_bytes());
        hasher.update(modified.to_le_bytes());
    }
    Ok(())
}

fn visit(root: &Path, path: &Path, hasher: &mut Sha256) -> Result<()> {
    let metadata = std::fs::symlink_metadata(path).with_context(|| format!("reading {}", path.display()))?;
    let relative = path.strip_prefix(root).unwrap_or(path).to_string_lossy().into_owned();
    hasher.update(relative.as_bytes());
    hasher.update([0]);
    if metadata.is_dir() {
        hasher.update(b"d");
        for child in sorted_children(path)? {
            visit(root, &child, hasher)?;
        }
    } else if metadata.is_file() {
        hasher.update(b"f");
        let mut file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
        std::io::copy(&mut file, hasher).with_context(|| format!("reading {}", path.display()))?;
    } else {
        hasher.update(b"l");
        hasher.update(
            std::fs::read_link(path)
                .map(|t| t.to_string_lossy().into_owned())
                .unwrap_or_default()
                .as_bytes(),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_change_changes_the_digest() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("a"), b"1").expect("write");
        let before = tree_digest(dir.path()).expect("digest");
        assert_eq!(before, tree_digest(dir.path()).expect("digest"));
        std::fs::write(dir.path().join("a"), b"2").expect("write");
        let changed = tree_digest(dir.path()).expect("digest");
        assert_ne!(before, changed);
        std::fs::create_dir(dir.path().join("sub")).expect("mkdir");
        assert_ne!(changed, tree_digest(dir.path()).expect("digest"));
    }

    #[test]
    fn a_write_changes_the_fingerprint_and_a_read_does_not() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (db, segments) = (dir.path().join("db"), dir.path().join("segments"));
        std::fs::write(&db, b"1").expect("write");
        std::fs::create_dir(&segments).expect("mkdir");
        std::fs::write(segments.join("a"), b"a").expect("write");
        let listed = [db.clone(), segments.clone()];
        let before = metadata_fingerprint(&listed).expect("fingerprint");
        std::fs::read(segments.join("a")).expect("read");
        assert_eq!(before, metadata_fingerprint(&listed).expect("fingerprint"));
        std::fs::write(segments.join("b"), b"b").expect("write");
        let added = metadata_fingerprint(&listed).expect("fingerprint");
        assert_ne!(before, added, "a file added in a listed directory");
        std::fs::write(dir.path().join("db-wal"), b"w").expect("write");
        assert_ne!(
            added,
            metadata_fingerprint(&listed).expect("fingerprint"),
            "a write-ahead log"
        );
    }
}
