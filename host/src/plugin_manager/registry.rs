//! The registry file: a cache of library checks, so `ragged plugin list` does not load every
//! library each time. An entry is reused only while the library's size and mtime are unchanged.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use serde::{Deserialize, Serialize};

use super::{Manifest, Status, check_library, sha256_file};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
struct Entry {
    size: u64,
    modified_ns: u128,
    manifest_sha256: String,
    valid: bool,
    reason: String,
}

/// The registry as loaded from disk; unreadable or missing files start empty.
pub(super) struct Registry {
    path: PathBuf,
    entries: BTreeMap<String, Entry>,
    changed: bool,
}

impl Registry {
    pub(super) fn open(path: &Path) -> Registry {
        let entries = std::fs::read_to_string(path)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default();
        Registry {
            path: path.to_owned(),
            entries,
            changed: false,
        }
    }

    /// The status of `library`, checked now unless the cache holds a result for this very file.
    pub(super) fn validate(&mut self, library: &Path, manifest: &Manifest) -> Status {
        let Ok(metadata) = std::fs::metadata(library) else {
            return Status::Invalid(format!("{}: library file is missing", library.display()));
        };
        let modified_ns = metadata
            .modified()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map(|d| d.as_nanos());
        let key = library.display().to_string();
        if let Some(entry) = self.entries.get(&key)
            && entry.size == metadata.len()
            && Some(entry.modified_ns) == modified_ns
            && entry.manifest_sha256 == manifest.sha256
        {
            return if entry.valid {
                Status::Valid
            } else {
                Status::Invalid(entry.reason.clone())
            };
        }
        let outcome = match sha256_file(library) {
            Err(e) => Err(format!("{e:#}")),
            Ok(sha) if sha != manifest.sha256 => Err(format!(
                "{}: checksum mismatch (plugin.toml says {}, the file is {sha}); reinstall the plugin",
                library.display(),
                manifest.sha256
            )),
            Ok(_) => check_library(library, manifest),
        };
        let (valid, reason) = match &outcome {
            Ok(()) => (true, String::new()),
            Err(reason) => (false, reason.clone()),
        };
        let entry = Entry {
            size: metadata.len(),
            modified_ns: modified_ns.unwrap_or_default(),
            manifest_sha256: manifest.sha256.clone(),
            valid,
            reason: reason.clone(),
        };
        self.entries.insert(key, entry);
        self.changed = true;
        if valid { Status::Valid } else { Status::Invalid(reason) }
    }

    /// Writes the cache back; failing to is harmless (the next run checks again).
    pub(super) fn save(&self) {
        if !self.changed {
            return;
        }
        if let (Some(parent), Ok(text)) = (self.path.parent(), serde_json::to_string_pretty(&self.entries)) {
            let _ = std::fs::create_dir_all(parent);
            let temp = self.path.with_extension("json.tmp");
            if std::fs::write(&temp, text).is_ok() {
                let _ = std::fs::rename(&temp, &self.path);
            }
        }
    }
}
