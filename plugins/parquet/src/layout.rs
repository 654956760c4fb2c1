//! The on-disk layout of a store: one directory per collection holding `_collection.json` (the
//! manifest, and the commit point) and the `part-NNNNNN.parquet` files it lists.
//!
//! Everything that names, creates, renames or removes a file lives here, so the durability rules
//! (temp file, fsync, rename, fsync the directory) are written once.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

use ragged_plugin_api::{CollectionInfo, ErrorCode, PluginError};
use serde::{Deserialize, Serialize};

/// The manifest's file name inside a collection directory.
pub(crate) const MANIFEST_FILE: &str = "_collection.json";
/// The manifest format this plugin reads and writes.
pub(crate) const FORMAT_VERSION: u32 = 1;

/// Where a new manifest is written before the rename commits it. The leading dot keeps pyarrow
/// and Spark from taking it for data.
const MANIFEST_TEMP_FILE: &str = "._collection.json.tmp";
/// Held locked by the one writer of a collection, so two loads never interleave their commits.
const LOCK_FILE: &str = ".lock";
const PART_PREFIX: &str = "part-";
const PART_SUFFIX: &str = ".parquet";
/// A part still being written carries this name (`.part-000001.parquet.partial`) until it is
/// complete and synced, so no reader ever sees half a Parquet file under a part name.
const PARTIAL_PREFIX: &str = ".";
const PARTIAL_SUFFIX: &str = ".partial";

/// One part file listed in the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct PartEntry {
    /// The file name, relative to the collection directory.
    pub file: String,
    /// The number of rows in the file.
    pub rows: u64,
}

/// The contents of `_collection.json`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Manifest {
    /// The collection as it describes itself; `count` is not stored (it is the sum of `parts`).
    pub collection: CollectionInfo,
    /// The parts, in the order records are read.
    pub parts: Vec<PartEntry>,
}

/// The JSON shape of `_collection.json`.
#[derive(Serialize, Deserialize)]
struct ManifestJson {
    format: u32,
    collection: serde_json::Value,
    parts: Vec<PartEntry>,
}

impl Manifest {
    /// The number of records in the collection.
    pub fn count(&self) -> u64 {
        self.parts.iter().map(|p| p.rows).sum()
    }

    /// The collection description with `count` filled in.
    pub fn describe(&self) -> CollectionInfo {
        CollectionInfo {
            count: self.count(),
            ..self.collection.clone()
        }
    }

    fn to_json(&self) -> Result<String, PluginError> {
        let json = ManifestJson {
            format: FORMAT_VERSION,
            collection: info_to_json(&self.collection)?,
            parts: self.parts.clone(),
        };
        serde_json::to_string_pretty(&json)
            .map_err(|e| PluginError::new(ErrorCode::Internal, format!("cannot encode the manifest: {e}")))
    }

    /// Parses a manifest read from `path`, the directory of collection `name`.
    fn parse(text: &[u8], path: &Path, name: &str) -> Result<Manifest, PluginError> {
        let bad = |problem: String| PluginError::corrupt(format!("{}: {problem}", path.display()));
        let json: ManifestJson =
            serde_json::from_slice(text).map_err(|e| bad(format!("not a valid collection manifest: {e}")))?;
        if json.format != FORMAT_VERSION {
            return Err(PluginError::new(
                ErrorCode::Incompatible,
                format!(
                    "{}: manifest format {} is not supported (this plugin reads format {FORMAT_VERSION})",
                    path.display(),
                    json.format
                ),
            ));
        }
        let mut collection: CollectionInfo =
            serde_json::from_value(json.collection).map_err(|e| bad(format!("invalid collection description: {e}")))?;
        if collection.dimension == 0 {
            return Err(bad("the collection has dimension 0".to_owned()));
        }
        // The directory is how the collection is addressed, so its name wins over a stale copy
        // (a directory renamed by hand).
        collection.name = name.to_owned();
        collection.count = 0;
        let mut names = BTreeSet::new();
        let mut total = 0u64;
        for part in &json.parts {
            total = total
                .checked_add(part.rows)
                .ok_or_else(|| bad("the parts' row counts add up to more than 2^64".to_owned()))?;
            if parse_part_number(&part.file).is_none() {
                return Err(bad(format!("'{}' is not a part file name", part.file)));
            }
            if !names.insert(part.file.as_str()) {
                return Err(bad(format!("part '{}' is listed twice", part.file)));
            }
        }
        Ok(Manifest {
            collection,
            parts: json.parts,
        })
    }
}

/// The collection description as JSON, without the record count (which would go stale).
pub(crate) fn info_to_json(info: &CollectionInfo) -> Result<serde_json::Value, PluginError> {
    let mut value = serde_json::to_value(info).map_err(|e| {
        PluginError::new(
            ErrorCode::Internal,
            format!("cannot encode the description of collection '{}': {e}", info.name),
        )
    })?;
    if let Some(object) = value.as_object_mut() {
        object.remove("count");
    }
    Ok(value)
}

/// The file name of part number `number`: `part-000001.parquet`.
pub(crate) fn part_file_name(number: u64) -> String {
    format!("{PART_PREFIX}{number:06}{PART_SUFFIX}")
}

/// The number in a part file name, or `None` when `name` is not one.
pub(crate) fn parse_part_number(name: &str) -> Option<u64> {
    let digits = name.strip_prefix(PART_PREFIX)?.strip_suffix(PART_SUFFIX)?;
    if digits.len() < 6 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Checks that `name` can be a directory name on every platform the plugin runs on.
pub(crate) fn check_collection_name(name: &str) -> Result<(), PluginError> {
    let problem = if name.is_empty() {
        Some("it is empty")
    } else if name == "." || name == ".." || name.starts_with('.') {
        Some("it starts with '.'")
    } else if name.len() > 255 {
        Some("it is longer than 255 bytes")
    } else if name.chars().any(|c| c.is_control() || "/\\<>:\"|?*".contains(c)) {
        Some("it contains a path separator, a control character or one of <>:\"|?*")
    } else {
        None
    };
    match problem {
        Some(problem) => Err(PluginError::invalid_input(format!(
            "invalid collection name '{name}': {problem}"
        ))),
        None => Ok(()),
    }
}

/// A collection's directory inside a store.
#[derive(Debug, Clone)]
pub(crate) struct CollectionDir {
    /// The collection's name (the directory's name).
    pub name: String,
    /// The directory.
    pub path: PathBuf,
}

impl CollectionDir {
    /// The directory of collection `name` under `root`; the name is checked, the directory is
    /// not touched.
    pub fn new(root: &Path, name: &str) -> Result<CollectionDir, PluginError> {
        check_collection_name(name)?;
        Ok(CollectionDir {
            name: name.to_owned(),
            path: root.join(name),
        })
    }

    pub fn manifest_path(&self) -> PathBuf {
        self.path.join(MANIFEST_FILE)
    }

    pub fn part_path(&self, file: &str) -> PathBuf {
        self.path.join(file)
    }

    /// Where part `file` is written before it is complete.
    pub fn partial_path(&self, file: &str) -> PathBuf {
        self.path.join(format!("{PARTIAL_PREFIX}{file}{PARTIAL_SUFFIX}"))
    }

    /// The manifest, or `None` when the collection does not exist.
    pub fn read_manifest_if_exists(&self) -> Result<Option<Manifest>, PluginError> {
        let path = self.manifest_path();
        match fs::read(&path) {
            Ok(text) => Manifest::parse(&text, &path, &self.name).map(Some),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(PluginError::io(&path, &e)),
        }
    }

    /// The manifest; a missing collection is [`ErrorCode::NotFound`].
    pub fn read_manifest(&self) -> Result<Manifest, PluginError> {
        self.read_manifest_if_exists()?.ok_or_else(|| {
            PluginError::not_found(format!(
                "no collection '{}' in {}",
                self.name,
                self.path.parent().unwrap_or(&self.path).display()
            ))
        })
    }

    /// Commits `manifest`: [`CollectionDir::stage_manifest`] then [`CollectionDir::commit_manifest`].
    #[cfg(test)]
    pub fn write_manifest(&self, manifest: &Manifest) -> Result<(), PluginError> {
        let staged = self.stage_manifest(manifest)?;
        self.commit_manifest(&staged)
    }

    /// Writes `manifest` to a temp file beside `_collection.json` and syncs it; nothing changes
    /// for readers yet.
    pub fn stage_manifest(&self, manifest: &Manifest) -> Result<StagedManifest, PluginError> {
        let text = manifest.to_json()?;
        let temp = self.path.join(MANIFEST_TEMP_FILE);
        let mut file = File::create(&temp).map_err(|e| PluginError::io(&temp, &e))?;
        file.write_all(text.as_bytes())
            .and_then(|()| file.write_all(b"\n"))
            .and_then(|()| file.sync_all())
            .map_err(|e| PluginError::io(&temp, &e))?;
        Ok(StagedManifest { temp })
    }

    /// Renames a staged manifest over `_collection.json` and syncs the directory, so a crash
    /// leaves either the old manifest or the new one.
    pub fn commit_manifest(&self, staged: &StagedManifest) -> Result<(), PluginError> {
        let target = self.manifest_path();
        fs::rename(&staged.temp, &target).map_err(|e| PluginError::io(&target, &e))?;
        sync_dir(&self.path)
    }

    /// Takes the collection's write lock, waiting for another writer to finish. The directory
    /// must exist.
    pub fn lock(&self) -> Result<WriteLock, PluginError> {
        let path = self.path.join(LOCK_FILE);
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| PluginError::io(&path, &e))?;
        file.lock().map_err(|e| PluginError::io(&path, &e))?;
        Ok(WriteLock { _file: file })
    }

    /// Removes what crashed writers left behind: part files the manifest does not list and
    /// unfinished temp files. Only names this plugin creates are touched. Call with the lock held.
    /// Best effort: a file that cannot go now (Windows refuses while a reader has it open) is
    /// retried by the next writer, and never blocks this one.
    pub fn remove_orphans(&self, manifest: Option<&Manifest>) -> Result<(), PluginError> {
        let listed: BTreeSet<&str> = manifest
            .map(|m| m.parts.iter().map(|p| p.file.as_str()).collect())
            .unwrap_or_default();
        for name in self.file_names()? {
            let orphan = if parse_part_number(&name).is_some() {
                !listed.contains(name.as_str())
            } else {
                name == MANIFEST_TEMP_FILE || is_partial_name(&name)
            };
            if orphan {
                remove_quietly(&self.path.join(&name));
            }
        }
        Ok(())
    }

    /// The number for the next new part: one past the highest that the manifest lists or any
    /// file still uses, so a new part never takes the name of an old one, not even of an orphan
    /// that could not be removed or of a part a slow reader still expects.
    pub fn next_part_number(&self, manifest: Option<&Manifest>) -> Result<u64, PluginError> {
        let listed = manifest.into_iter().flat_map(|m| &m.parts).map(|p| p.file.clone());
        let present = self.file_names()?.into_iter().map(|name| {
            match name
                .strip_prefix(PARTIAL_PREFIX)
                .and_then(|n| n.strip_suffix(PARTIAL_SUFFIX))
            {
                Some(inner) => inner.to_owned(),
                None => name,
            }
        });
        let highest = listed.chain(present).filter_map(|name| parse_part_number(&name)).max();
        Ok(highest.unwrap_or(0) + 1)
    }

    /// The names of the regular files in the directory.
    pub fn file_names(&self) -> Result<Vec<String>, PluginError> {
        let entries = fs::read_dir(&self.path).map_err(|e| PluginError::io(&self.path, &e))?;
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| PluginError::io(&self.path, &e))?;
            let is_file = entry
                .file_type()
                .map_err(|e| PluginError::io(entry.path(), &e))?
                .is_file();
            if is_file && let Some(name) = entry.file_name().to_str() {
                names.push(name.to_owned());
            }
        }
        names.sort();
        Ok(names)
    }

    /// The total size of the regular files in the directory.
    pub fn total_bytes(&self) -> Result<u64, PluginError> {
        let mut total = 0;
        for name in self.file_names()? {
            let path = self.path.join(&name);
            total += fs::metadata(&path).map_err(|e| PluginError::io(&path, &e))?.len();
        }
        Ok(total)
    }
}

fn is_partial_name(name: &str) -> bool {
    name.strip_prefix(PARTIAL_PREFIX)
        .and_then(|n| n.strip_suffix(PARTIAL_SUFFIX))
        .is_some_and(|n| parse_part_number(n).is_some())
}

/// A manifest written and synced under its temp name, waiting for the rename that commits it.
pub(crate) struct StagedManifest {
    temp: PathBuf,
}

/// Held while a collection is written; unlocks when dropped (the OS also releases it if the
/// process dies, so a crash never leaves a collection locked).
pub(crate) struct WriteLock {
    _file: File,
}

/// The sorted names of the collections under `root`: subdirectories holding a manifest.
pub(crate) fn list_collections(root: &Path) -> Result<Vec<String>, PluginError> {
    let entries = fs::read_dir(root).map_err(|e| PluginError::io(root, &e))?;
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| PluginError::io(root, &e))?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        if check_collection_name(&name).is_ok() && entry.path().join(MANIFEST_FILE).is_file() {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

/// Makes the entries of directory `path` (creations, renames) durable.
pub(crate) fn sync_dir(path: &Path) -> Result<(), PluginError> {
    // Windows cannot open a directory as a file; NTFS journals renames itself.
    if cfg!(windows) {
        return Ok(());
    }
    File::open(path)
        .and_then(|dir| dir.sync_all())
        .map_err(|e| PluginError::io(path, &e))
}

/// Removes a file whose loss only leaves an orphan behind; errors are ignored on purpose, the
/// next writer's cleanup retries.
pub(crate) fn remove_quietly(path: &Path) {
    let _ = fs::remove_file(path);
}

#[cfg(test)]
mod tests {
    use ragged_plugin_api::DistanceMetric;

    use super::*;

    fn info(name: &str) -> CollectionInfo {
        CollectionInfo {
            name: name.to_owned(),
            dimension: 3,
            metric: DistanceMetric::Cosine,
            count: 7,
            embedding_model: Some("m".to_owned()),
            index_params: None,
            metadata: serde_json::Map::new(),
            extras: serde_json::Map::new(),
        }
    }

    fn manifest(parts: &[(&str, u64)]) -> Manifest {
        Manifest {
            collection: CollectionInfo {
                count: 0,
                ..info("docs")
            },
            parts: parts
                .iter()
                .map(|(file, rows)| PartEntry {
                    file: (*file).to_owned(),
                    rows: *rows,
                })
                .collect(),
        }
    }

    fn check_parse(text: &str, expected: Result<(), (ErrorCode, &str)>) {
        let got = Manifest::parse(text.as_bytes(), Path::new("/s/docs/_collection.json"), "docs");
        match expected {
            Ok(()) => {
                got.expect("a valid manifest");
            }
            Err((code, fragment)) => {
                let error = got.expect_err(text);
                assert_eq!(error.code, code, "{error}");
                assert!(error.message.contains(fragment), "{}", error.message);
                assert!(
                    error.message.starts_with("/s/docs/_collection.json: "),
                    "{}",
                    error.message
                );
            }
        }
    }

    #[test]
    fn part_names_round_trip_and_strangers_are_not_parts() {
        assert_eq!(part_file_name(1), "part-000001.parquet");
        assert_eq!(part_file_name(1_234_567), "part-1234567.parquet");
        assert_eq!(parse_part_number("part-000042.parquet"), Some(42));
        assert_eq!(parse_part_number("part-1234567.parquet"), Some(1_234_567));
        for stranger in [
            "part-42.parquet",
            "part-00004x.parquet",
            "../part-000001.parquet",
            "data.parquet",
        ] {
            assert_eq!(parse_part_number(stranger), None, "{stranger}");
        }
        assert!(is_partial_name(".part-000003.parquet.partial"));
        assert!(!is_partial_name("part-000003.parquet.partial"));
    }

    #[test]
    fn collection_names_that_are_not_plain_directory_names_are_refused() {
        for good in ["docs", "my-coll_2", "naïve", "a.b"] {
            check_collection_name(good).expect(good);
        }
        for (bad, fragment) in [
            ("", "it is empty"),
            ("..", "starts with '.'"),
            (".hidden", "starts with '.'"),
            ("a/b", "path separator"),
            ("a\\b", "path separator"),
            ("a:b", "path separator"),
        ] {
            let error = check_collection_name(bad).expect_err(bad);
            assert_eq!(error.code, ErrorCode::InvalidInput);
            assert!(
                error.message.starts_with(&format!("invalid collection name '{bad}': ")),
                "{}",
                error.message
            );
            assert!(error.message.contains(fragment), "{}", error.message);
        }
    }

    #[test]
    fn manifest_round_trips_without_the_count() {
        let original = manifest(&[("part-000001.parquet", 5), ("part-000002.parquet", 2)]);
        let text = original.to_json().expect("encodes");
        assert!(!text.contains("\"count\""), "{text}");
        assert!(text.contains("\"format\": 1"), "{text}");
        let back = Manifest::parse(text.as_bytes(), Path::new("x"), "docs").expect("parses");
        assert_eq!(back, original);
        assert_eq!(back.count(), 7);
        assert_eq!(back.describe().count, 7);
    }

    #[test]
    fn the_directory_name_wins_over_the_name_in_the_manifest() {
        let text = manifest(&[]).to_json().expect("encodes");
        let back = Manifest::parse(text.as_bytes(), Path::new("x"), "renamed").expect("parses");
        assert_eq!(back.collection.name, "renamed");
    }

    #[test]
    fn damaged_manifests_are_corrupt_and_name_the_file() {
        check_parse("", Err((ErrorCode::Corrupt, "not a valid collection manifest")));
        check_parse("{\"format\": 1}", Err((ErrorCode::Corrupt, "missing field")));
        check_parse(
            r#"{"format": 2, "collection": {}, "parts": []}"#,
            Err((ErrorCode::Incompatible, "manifest format 2 is not supported")),
        );
        check_parse(
            r#"{"format": 1, "collection": {"name": "d"}, "parts": []}"#,
            Err((ErrorCode::Corrupt, "invalid collection description")),
        );
        check_parse(
            r#"{"format": 1, "collection": {"name": "d", "dimension": 0, "metric": "l2"}, "parts": []}"#,
            Err((ErrorCode::Corrupt, "dimension 0")),
        );
        check_parse(
            r#"{"format": 1, "collection": {"name": "d", "dimension": 2, "metric": "l2"},
                "parts": [{"file": "../../etc/passwd", "rows": 1}]}"#,
            Err((ErrorCode::Corrupt, "'../../etc/passwd' is not a part file name")),
        );
        check_parse(
            r#"{"format": 1, "collection": {"name": "d", "dimension": 2, "metric": "l2"},
                "parts": [{"file": "part-000001.parquet", "rows": 1}, {"file": "part-000001.parquet", "rows": 1}]}"#,
            Err((ErrorCode::Corrupt, "listed twice")),
        );
        check_parse(
            r#"{"format": 1, "collection": {"name": "d", "dimension": 2, "metric": "l2"},
                "parts": [{"file": "part-000001.parquet", "rows": 18446744073709551615},
                          {"file": "part-000002.parquet", "rows": 1}]}"#,
            Err((ErrorCode::Corrupt, "row counts add up to more than 2^64")),
        );
        check_parse(
            r#"{"format": 1, "collection": {"name": "d", "dimension": 2, "metric": "l2"}, "parts": []}"#,
            Ok(()),
        );
    }

    #[test]
    fn write_manifest_replaces_atomically_and_leaves_no_temp_file() {
        let root = tempfile::tempdir().expect("temp dir");
        let dir = CollectionDir::new(root.path(), "docs").expect("valid name");
        fs::create_dir(&dir.path).expect("mkdir");
        assert_eq!(dir.read_manifest_if_exists().expect("readable"), None);
        let error = dir.read_manifest().expect_err("missing");
        assert_eq!(error.code, ErrorCode::NotFound);
        assert!(error.message.contains("no collection 'docs' in "), "{}", error.message);

        dir.write_manifest(&manifest(&[("part-000001.parquet", 5)]))
            .expect("writes");
        dir.write_manifest(&manifest(&[("part-000002.parquet", 6)]))
            .expect("rewrites");
        assert_eq!(dir.read_manifest().expect("reads").count(), 6);
        assert_eq!(dir.file_names().expect("lists"), vec!["_collection.json"]);
    }

    #[test]
    fn orphans_are_removed_and_everything_else_is_kept() {
        let root = tempfile::tempdir().expect("temp dir");
        let dir = CollectionDir::new(root.path(), "docs").expect("valid name");
        fs::create_dir(&dir.path).expect("mkdir");
        let files = [
            "part-000001.parquet",
            "part-000002.parquet",
            ".part-000003.parquet.partial",
            "._collection.json.tmp",
            "notes.txt",
            ".lock",
        ];
        for name in files {
            fs::write(dir.path.join(name), b"x").expect("write");
        }
        let m = manifest(&[("part-000001.parquet", 1)]);
        dir.write_manifest(&m).expect("writes");
        dir.remove_orphans(Some(&m)).expect("cleans");
        assert_eq!(
            dir.file_names().expect("lists"),
            vec![".lock", "_collection.json", "notes.txt", "part-000001.parquet"]
        );
        assert_eq!(dir.next_part_number(Some(&m)), Ok(2));
        // An orphan that could not be removed still reserves its number.
        fs::write(dir.path.join(".part-000007.parquet.partial"), b"x").expect("write");
        assert_eq!(dir.next_part_number(Some(&m)), Ok(8));
        assert_eq!(dir.next_part_number(None), Ok(8));
        let empty = CollectionDir::new(root.path(), "empty").expect("valid name");
        fs::create_dir(&empty.path).expect("mkdir");
        assert_eq!(empty.next_part_number(None), Ok(1));
    }

    #[test]
    fn list_collections_finds_only_directories_with_a_manifest() {
        let root = tempfile::tempdir().expect("temp dir");
        for name in ["b", "a", "empty"] {
            let dir = CollectionDir::new(root.path(), name).expect("valid name");
            fs::create_dir(&dir.path).expect("mkdir");
            if name != "empty" {
                dir.write_manifest(&manifest(&[])).expect("writes");
            }
        }
        fs::write(root.path().join("stray.parquet"), b"x").expect("write");
        assert_eq!(list_collections(root.path()).expect("lists"), vec!["a", "b"]);
    }

    #[test]
    fn the_write_lock_excludes_a_second_writer_until_released() {
        let root = tempfile::tempdir().expect("temp dir");
        let dir = CollectionDir::new(root.path(), "docs").expect("valid name");
        fs::create_dir(&dir.path).expect("mkdir");
        let held = dir.lock().expect("first lock");
        let second = File::options()
            .write(true)
            .open(dir.path.join(LOCK_FILE))
            .expect("opens");
        assert!(second.try_lock().is_err(), "the lock must be exclusive");
        drop(held);
        second.try_lock().expect("free once the first writer is done");
    }
}
