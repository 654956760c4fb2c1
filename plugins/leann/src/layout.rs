//! Where a collection's files live, and how a rebuilt index replaces the old one.
//!
//! A store is a directory, a collection is one LEANN index. ragged writes LEANN's CLI layout,
//! `<store>/.leann/indexes/<collection>/documents.leann*`, so `leann list` and
//! `leann search <collection>` run in `<store>` see ragged's collections. It also reads indexes
//! that LEANN's Python API wrote directly into the store directory
//! (`<store>/<collection>.leann.meta.json`, the "flat" layout), but does not write there.
//!
//! A LEANN index is several files, which cannot be replaced in one rename. A rebuild therefore
//! writes the new files into `<collection>/ragged-build/`, syncs them, and writes the marker
//! `ragged-build/COMMIT` (the commit point), which lists the files to move into place and the old
//! files to remove. Moving them is idempotent: a writer that finds a marker finishes the job
//! first (roll forward), and one that finds a build directory without a marker removes it (roll
//! back). A reader that sees a marker reads each file from the build directory while it is still
//! there, so it always sees one complete index, old or new.

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use ragged_plugin_api::PluginError;
use serde::{Deserialize, Serialize};

/// The base name of an index in LEANN's CLI layout (`documents.leann`).
pub(crate) const CLI_BASE: &str = "documents";
const BUILD_DIR: &str = "ragged-build";
const COMMIT_MARKER: &str = "COMMIT";
pub(crate) const STAGING_DIR: &str = "ragged-staging";
/// Held (with an OS file lock) by a load, delete or drop, so two writers never rebuild at once.
pub(crate) const LOCK_FILE: &str = "ragged-write.lock";

/// An exclusive lock on a collection directory, released when dropped (or when the process dies).
pub(crate) struct WriteLock {
    _file: fs::File,
}

/// Waits for and takes the write lock of the collection directory `dir`.
pub(crate) fn lock(dir: &Path) -> Result<WriteLock, PluginError> {
    let path = dir.join(LOCK_FILE);
    let file = fs::File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| PluginError::io(&path, &e))?;
    file.lock().map_err(|e| PluginError::io(&path, &e))?;
    Ok(WriteLock { _file: file })
}

/// The directory LEANN's CLI keeps its indexes in, below a project (store) directory.
pub(crate) fn indexes_dir(root: &Path) -> PathBuf {
    root.join(".leann").join("indexes")
}

/// Checks that `name` can be a directory name on every platform.
pub(crate) fn check_name(name: &str) -> Result<(), PluginError> {
    let problem = if name.is_empty() {
        Some("is empty")
    } else if name.starts_with('.') {
        Some("starts with '.'")
    } else if name.contains(['/', '\\', '\0', ':']) {
        Some("contains '/', '\\', ':' or a NUL byte")
    } else if name.len() > 200 {
        Some("is longer than 200 bytes")
    } else {
        None
    };
    match problem {
        Some(problem) => Err(PluginError::invalid_input(format!(
            "collection name '{name}' {problem}; a LEANN collection is a directory"
        ))),
        None => Ok(()),
    }
}

/// The files of one index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct IndexPaths {
    pub name: String,
    /// The directory holding the files.
    pub dir: PathBuf,
    /// `documents` in the CLI layout, the collection name in the flat layout.
    pub base: String,
    /// Whether this is the CLI layout, the one ragged writes.
    pub cli: bool,
}

impl IndexPaths {
    /// The CLI-layout paths of `name` (whether or not it exists).
    pub fn cli(root: &Path, name: &str) -> Result<IndexPaths, PluginError> {
        check_name(name)?;
        Ok(IndexPaths {
            name: name.to_owned(),
            dir: indexes_dir(root).join(name),
            base: CLI_BASE.to_owned(),
            cli: true,
        })
    }

    /// The index named `name`: the CLI layout when it has a meta file, else the flat layout when
    /// that has one, else `None`.
    pub fn find(root: &Path, name: &str) -> Result<Option<IndexPaths>, PluginError> {
        let cli = IndexPaths::cli(root, name)?;
        if exists(&cli.resolve(&cli.meta_name()))? {
            return Ok(Some(cli));
        }
        let flat = IndexPaths {
            name: name.to_owned(),
            dir: root.to_owned(),
            base: name.to_owned(),
            cli: false,
        };
        Ok(exists(&flat.meta())?.then_some(flat))
    }

    pub fn meta_name(&self) -> String {
        format!("{}.leann.meta.json", self.base)
    }
    pub fn passages_name(&self) -> String {
        format!("{}.leann.passages.jsonl", self.base)
    }
    pub fn offsets_name(&self) -> String {
        format!("{}.leann.passages.idx", self.base)
    }
    /// `.index` and `.ids.txt` drop the `.leann` suffix (LEANN uses `Path.stem`).
    pub fn index_name(&self) -> String {
        format!("{}.index", self.base)
    }
    pub fn ids_name(&self) -> String {
        format!("{}.ids.txt", self.base)
    }
    pub fn originals_name(&self) -> String {
        format!("{}.ragged-originals.f32", self.base)
    }
    pub fn bm25_name(&self) -> String {
        format!("{}.leann.bm25.sqlite", self.base)
    }

    pub fn meta(&self) -> PathBuf {
        self.resolve(&self.meta_name())
    }
    pub fn index(&self) -> PathBuf {
        self.resolve(&self.index_name())
    }
    pub fn ids(&self) -> PathBuf {
        self.resolve(&self.ids_name())
    }

    pub fn build_dir(&self) -> PathBuf {
        self.dir.join(BUILD_DIR)
    }
    pub fn staging_dir(&self) -> PathBuf {
        self.dir.join(STAGING_DIR)
    }

    /// The current version of the file `name`: the build directory's copy while a committed
    /// rebuild is being moved into place, the collection's otherwise.
    pub fn resolve(&self, name: &str) -> PathBuf {
        if self.cli {
            let build = self.build_dir();
            if build.join(COMMIT_MARKER).is_file() && build.join(name).is_file() {
                return build.join(name);
            }
        }
        self.dir.join(name)
    }

    /// Every file of the index that exists, for `files()` and the storage report.
    pub fn existing_files(&self, meta_sources: &[PathBuf]) -> Result<Vec<PathBuf>, PluginError> {
        let mut files = Vec::new();
        let names = [
            self.meta_name(),
            self.index_name(),
            self.ids_name(),
            self.originals_name(),
            self.bm25_name(),
        ];
        for name in names {
            let path = self.resolve(&name);
            if exists(&path)? {
                files.push(path);
            }
        }
        for path in meta_sources {
            if exists(path)? && !files.contains(path) {
                files.push(path.clone());
            }
        }
        Ok(files)
    }
}

/// Whether `path` exists, with I/O errors other than "not found" reported.
pub(crate) fn exists(path: &Path) -> Result<bool, PluginError> {
    match fs::metadata(path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
        Err(e) => Err(PluginError::io(path, &e)),
    }
}

/// The collections of a store: CLI-layout indexes, then flat ones, sorted and without duplicates.
pub(crate) fn list(root: &Path) -> Result<Vec<String>, PluginError> {
    let mut names = Vec::new();
    let indexes = indexes_dir(root);
    for entry in read_dir_if_exists(&indexes)? {
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        if check_name(&name).is_ok() && IndexPaths::find(root, &name)?.is_some_and(|p| p.cli) {
            names.push(name);
        }
    }
    for entry in read_dir_if_exists(root)? {
        if let Some(name) = entry
            .file_name()
            .to_str()
            .and_then(|f| f.strip_suffix(".leann.meta.json"))
            && check_name(name).is_ok()
        {
            names.push(name.to_owned());
        }
    }
    names.sort();
    names.dedup();
    Ok(names)
}

fn read_dir_if_exists(dir: &Path) -> Result<Vec<fs::DirEntry>, PluginError> {
    match fs::read_dir(dir) {
        Ok(entries) => entries.map(|e| e.map_err(|e| PluginError::io(dir, &e))).collect(),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(PluginError::io(dir, &e)),
    }
}

/// The commit marker's content.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Commit {
    /// Files of the build directory to move into the collection directory, meta file last.
    pub install: Vec<String>,
    /// Files of the old index the new one does not have.
    pub remove: Vec<String>,
}

/// Commits the files in the build directory: writes the marker, then moves them into place.
pub(crate) fn commit(paths: &IndexPaths, commit: &Commit) -> Result<(), PluginError> {
    let build = paths.build_dir();
    sync_dir(&build)?;
    let marker = build.join(COMMIT_MARKER);
    let bytes = serde_json::to_vec(commit).expect("a commit always serialises");
    write_synced(&marker, &bytes)?;
    sync_dir(&build)?;
    finish(paths)
}

/// Finishes a committed rebuild, or removes an uncommitted one. Idempotent.
pub(crate) fn recover(paths: &IndexPaths) -> Result<(), PluginError> {
    let build = paths.build_dir();
    if !exists(&build)? {
        return Ok(());
    }
    if exists(&build.join(COMMIT_MARKER))? {
        finish(paths)
    } else {
        fs::remove_dir_all(&build).map_err(|e| PluginError::io(&build, &e))?;
        sync_dir(&paths.dir)
    }
}

fn finish(paths: &IndexPaths) -> Result<(), PluginError> {
    let build = paths.build_dir();
    let marker = build.join(COMMIT_MARKER);
    let text = fs::read(&marker).map_err(|e| PluginError::io(&marker, &e))?;
    let commit: Commit = serde_json::from_slice(&text)
        .map_err(|e| PluginError::corrupt(format!("{}: unreadable commit marker: {e}", marker.display())))?;
    for name in &commit.remove {
        let path = paths.dir.join(name);
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(PluginError::io(&path, &e)),
        }
    }
    for name in &commit.install {
        let from = build.join(name);
        if exists(&from)? {
            let to = paths.dir.join(name);
            fs::rename(&from, &to).map_err(|e| PluginError::io(&to, &e))?;
        }
    }
    sync_dir(&paths.dir)?;
    fs::remove_dir_all(&build).map_err(|e| PluginError::io(&build, &e))?;
    sync_dir(&paths.dir)
}

/// Writes `bytes` to `path` and syncs the file.
pub(crate) fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), PluginError> {
    use std::io::Write;
    let mut file = fs::File::create(path).map_err(|e| PluginError::io(path, &e))?;
    file.write_all(bytes).map_err(|e| PluginError::io(path, &e))?;
    file.sync_all().map_err(|e| PluginError::io(path, &e))
}

/// Makes a directory's entries (creations, renames, removals) durable.
pub(crate) fn sync_dir(path: &Path) -> Result<(), PluginError> {
    // Windows cannot open a directory as a file; NTFS journals renames itself.
    if cfg!(windows) {
        return Ok(());
    }
    fs::File::open(path)
        .and_then(|dir| dir.sync_all())
        .map_err(|e| PluginError::io(path, &e))
}

/// Creates `path` and its parents, syncing each directory that gained an entry.
pub(crate) fn create_dir_synced(path: &Path) -> Result<(), PluginError> {
    if exists(path)? {
        return Ok(());
    }
    if let Some(parent) = path.parent() {
        create_dir_synced(parent)?;
    }
    match fs::create_dir(path) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::AlreadyExists => return Ok(()),
        Err(e) => return Err(PluginError::io(path, &e)),
    }
    if let Some(parent) = path.parent() {
        sync_dir(parent)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_must_be_plain_directory_names() {
        for good in ["docs", "a b", "ünï", "x.y"] {
            check_name(good).expect(good);
        }
        for (bad, why) in [
            ("", "is empty"),
            (".hidden", "starts with '.'"),
            ("..", "starts with '.'"),
            ("a/b", "contains '/'"),
        ] {
            let error = check_name(bad).expect_err(bad);
            assert!(error.message.contains(why), "{bad}: {}", error.message);
        }
    }

    #[test]
    fn a_committed_build_is_read_from_the_build_dir_until_it_is_moved() {
        let root = tempfile::tempdir().expect("temp dir");
        let paths = IndexPaths::cli(root.path(), "c").expect("name");
        create_dir_synced(&paths.build_dir()).expect("dirs");
        fs::write(paths.dir.join("documents.index"), b"old").expect("write");
        fs::write(paths.dir.join("stale"), b"x").expect("write");
        fs::write(paths.build_dir().join("documents.index"), b"new").expect("write");
        // Uncommitted: readers see the old file, and recovery removes the build.
        assert_eq!(fs::read(paths.index()).expect("read"), b"old");
        let marker = Commit {
            install: vec!["documents.index".into()],
            remove: vec!["stale".into()],
        };
        write_synced(
            &paths.build_dir().join(COMMIT_MARKER),
            &serde_json::to_vec(&marker).expect("json"),
        )
        .expect("marker");
        assert_eq!(fs::read(paths.index()).expect("read"), b"new");
        recover(&paths).expect("rolls forward");
        assert_eq!(fs::read(paths.index()).expect("read"), b"new");
        assert!(!paths.dir.join("stale").exists() && !paths.build_dir().exists());
        create_dir_synced(&paths.build_dir()).expect("dirs");
        fs::write(paths.build_dir().join("documents.index"), b"half").expect("write");
        recover(&paths).expect("rolls back");
        assert_eq!(fs::read(paths.index()).expect("read"), b"new");
        assert!(!paths.build_dir().exists());
    }
}
