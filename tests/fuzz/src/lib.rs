//! What the fuzz targets share: scratch directories and inputs that hold several files.

use std::path::{Path, PathBuf};

/// Separates the files of an input that feeds a parser several files at once.
pub const SECTION_SEPARATOR: &[u8] = b"\n--ragged-fuzz-section--\n";

/// The first `count` sections of `data` (missing ones empty), the last taking the rest.
pub fn sections(data: &[u8], count: usize) -> Vec<&[u8]> {
    let mut parts = Vec::with_capacity(count);
    let mut rest = data;
    while parts.len() + 1 < count {
        match rest
            .windows(SECTION_SEPARATOR.len())
            .position(|w| w == SECTION_SEPARATOR)
        {
            Some(at) => {
                parts.push(&rest[..at]);
                rest = &rest[at + SECTION_SEPARATOR.len()..];
            }
            None => break,
        }
    }
    parts.push(rest);
    parts.resize(count, &[]);
    parts
}

/// A fresh directory removed when dropped.
pub fn scratch() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("ragged-fuzz-")
        .tempdir()
        .expect("a scratch directory")
}

/// Writes `bytes` to `dir/name` and returns the path.
pub fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("a scratch subdirectory");
    }
    std::fs::write(&path, bytes).expect("a scratch file");
    path
}

/// Whether anything other than `allowed` (names) exists directly in `dir`.
pub fn unexpected_entries(dir: &Path, allowed: &[&str]) -> Vec<String> {
    std::fs::read_dir(dir)
        .expect("listing the scratch directory")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| !allowed.contains(&name.as_str()))
        .collect()
}
