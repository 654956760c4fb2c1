//! Backups: a `.tar.zst` of directory trees and files, with a manifest of every file's SHA-256
//! (the archive's last entry, and a copy beside it). Restoring checks every checksum before it
//! touches anything, then makes each backed-up tree byte-identical to what was saved: files are
//! rewritten and files that appeared since are removed.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The name of the manifest inside an archive.
const MANIFEST_ENTRY: &str = "MANIFEST.json";

/// What a backup holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupManifest {
    /// What was backed up and why (for `backups list`).
    pub label: String,
    /// When (RFC 3339).
    pub created: String,
    /// The trees saved: restoring makes each exactly as it was.
    pub roots: Vec<PathBuf>,
    /// Every file saved.
    pub files: Vec<BackupFile>,
    /// Every directory under the roots (the roots included), so a restore recreates empty ones
    /// and removes ones that appeared since.
    #[serde(default)]
    pub directories: Vec<PathBuf>,
}

/// One saved file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupFile {
    /// Its name inside the archive.
    pub entry: String,
    /// Where it was (and is restored to).
    pub path: PathBuf,
    /// Its size in bytes.
    pub size: u64,
    /// Its SHA-256, hex.
    pub sha256: String,
}

impl BackupManifest {
    /// Total bytes saved.
    pub fn bytes(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }
}

/// Saves the trees under `roots` into `archive`, returning the manifest. `absent` roots (and
/// missing ones) are recorded without content, so a restore removes whatever is there by then.
pub fn create(archive: &Path, label: &str, roots: &[PathBuf], absent: &[PathBuf]) -> Result<BackupManifest> {
    if let Some(parent) = archive.parent() {
        std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    let mut manifest = BackupManifest {
        label: label.to_owned(),
        created: jiff::Timestamp::now().to_string(),
        roots: roots.iter().chain(absent).cloned().collect(),
        files: Vec::new(),
        directories: roots.iter().flat_map(|root| directories_under(root)).collect(),
    };
    let temp = archive.with_extension("zst.partial");
    let mut write = || -> Result<()> {
        let encoder = zstd::Encoder::new(File::create(&temp)?, 3)?;
        let mut builder = tar::Builder::new(encoder);
        builder.sparse(false);
        for root in roots {
            for path in files_under(root)? {
                let entry = format!("files/{:06}", manifest.files.len() + 1);
                let mut file = File::open(&path).with_context(|| format!("opening {}", path.display()))?;
                let size = file.metadata()?.len();
                let mut header = tar::Header::new_gnu();
                header.set_size(size);
                header.set_mode(0o644);
                header.set_cksum();
                let mut hashing = HashingReader {
                    inner: &mut file,
                    hasher: Sha256::new(),
                };
                builder.append_data(&mut header, &entry, &mut hashing)?;
                let sha256 = hex::encode(hashing.hasher.finalize());
                manifest.files.push(BackupFile {
                    entry,
                    path,
                    size,
                    sha256,
                });
            }
        }
        let text = serde_json::to_vec_pretty(&manifest)?;
        let mut header = tar::Header::new_gnu();
        header.set_size(text.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder.append_data(&mut header, MANIFEST_ENTRY, text.as_slice())?;
        let mut encoder = builder.into_inner()?;
        encoder.flush()?;
        encoder.finish()?.sync_all()?;
        Ok(())
    };
    write().with_context(|| format!("writing backup {}", archive.display()))?;
    std::fs::rename(&temp, archive).with_context(|| format!("renaming {}", archive.display()))?;
    std::fs::write(manifest_path(archive), serde_json::to_vec_pretty(&manifest)?)?;
    Ok(manifest)
}

/// The manifest kept beside `archive`.
pub fn manifest_path(archive: &Path) -> PathBuf {
    archive.with_extension("").with_extension("manifest.json")
}

/// Reads the manifest beside an archive.
pub fn read_manifest(archive: &Path) -> Result<BackupManifest> {
    let path = manifest_path(archive);
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{}: not a backup manifest", path.display()))
}

/// Restores every root of `archive` to exactly its saved state.
pub fn restore(archive: &Path) -> Result<BackupManifest> {
    remove_stale_staging(archive);
    let (staging, manifest) = unpack_checked(archive)?;
    for root in &manifest.roots {
        let keep: Vec<&Path> = manifest
            .files
            .iter()
            .map(|f| f.path.as_path())
            .filter(|p| p.starts_with(root))
            .collect();
        remove_extra(root, &keep, &manifest.directories)?;
    }
    for directory in &manifest.directories {
        std::fs::create_dir_all(directory).with_context(|| format!("creating {}", directory.display()))?;
    }
    for file in &manifest.files {
        // An unchanged file costs no write; a changed one is removed before its copy is written,
        // so restoring onto a full disk needs no room for both (a crash in between leaves a file
        // missing, which the next restore writes: the backup is unchanged).
        match crate::plugin_manager::sha256_file(&file.path) {
            Ok(sha256) if sha256 == file.sha256 => continue,
            Ok(_) => std::fs::remove_file(&file.path).with_context(|| format!("removing {}", file.path.display()))?,
            Err(_) => {}
        }
        if let Some(parent) = file.path.parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        let temp = file.path.with_extension("ragged-restore");
        std::fs::copy(staging.path().join(&file.entry), &temp)
            .with_context(|| format!("writing {}", temp.display()))?;
        File::open(&temp)?.sync_all()?;
        std::fs::rename(&temp, &file.path).with_context(|| format!("restoring {}", file.path.display()))?;
    }
    Ok(manifest)
}

/// Unpacks `archive` next to it and checks its entries, its manifest's paths and every checksum,
/// changing nothing else: what `restore` does before it replaces anything.
pub(crate) fn unpack_checked(archive: &Path) -> Result<(tempfile::TempDir, BackupManifest)> {
    let staging = tempfile::Builder::new()
        .prefix(".restoring-")
        .tempdir_in(archive.parent().unwrap_or(Path::new(".")))
        .context("creating a staging directory")?;
    let decoder = zstd::Decoder::new(File::open(archive).with_context(|| format!("opening {}", archive.display()))?)?;
    let mut tar = tar::Archive::new(decoder);
    let mut manifest: Option<BackupManifest> = None;
    for entry in tar.entries()? {
        let mut entry = entry?;
        let name = entry.path()?.into_owned();
        if name == Path::new(MANIFEST_ENTRY) {
            let mut text = Vec::new();
            entry.read_to_end(&mut text)?;
            manifest = Some(serde_json::from_slice(&text).context("the archive's manifest is damaged")?);
            continue;
        }
        if !is_entry_name(&name) {
            bail!(
                "{}: entry '{}' is not of the form files/NUMBER (it could land outside the backup)",
                archive.display(),
                name.display()
            );
        }
        let kind = entry.header().entry_type();
        if !kind.is_file() {
            let link = entry
                .link_name()
                .ok()
                .flatten()
                .map(|target| format!(" to '{}'", target.display()))
                .unwrap_or_default();
            let kind = match kind {
                tar::EntryType::Symlink => "symbolic link",
                tar::EntryType::Link => "hard link",
                tar::EntryType::Directory => "directory",
                _ => "special entry",
            };
            bail!(
                "{}: entry '{}' is a {kind}{link}, not a regular file; a backup holds only files",
                archive.display(),
                name.display()
            );
        }
        let out = staging.path().join(&name);
        std::fs::create_dir_all(out.parent().unwrap_or(staging.path()))?;
        std::io::copy(&mut entry, &mut File::create(&out)?)?;
    }
    let manifest =
        manifest.with_context(|| format!("{}: no manifest (the archive is truncated)", archive.display()))?;
    check_paths(&manifest).map_err(|problem| anyhow::anyhow!("{}: {problem}", archive.display()))?;
    for file in &manifest.files {
        let staged = staging.path().join(&file.entry);
        let sha256 = crate::plugin_manager::sha256_file(&staged)
            .with_context(|| format!("{}: entry {} is missing", archive.display(), file.entry))?;
        if sha256 != file.sha256 {
            bail!(
                "{}: {} does not match its checksum; the backup is damaged",
                archive.display(),
                file.path.display()
            );
        }
    }
    Ok((staging, manifest))
}

/// Removes the staging directories of restores that were killed before they could (they sit
/// next to the archive, out of every tree a restore writes).
fn remove_stale_staging(archive: &Path) {
    let dir = archive.parent().unwrap_or(Path::new("."));
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.file_name().to_string_lossy().starts_with(".restoring-") {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// Whether an archive entry is named like the files `create` writes: `files/NUMBER`.
fn is_entry_name(name: &Path) -> bool {
    let parts: Vec<Component<'_>> = name.components().collect();
    matches!(parts.as_slice(), [Component::Normal(dir), Component::Normal(_)] if *dir == "files")
}

/// Checks where a manifest would write before anything is touched: every file and directory inside
/// one of its roots with no `..`, every entry named as `create` names them, and no symbolic link
/// (one that appeared since the backup) on the way from a root to what is restored.
fn check_paths(manifest: &BackupManifest) -> Result<(), String> {
    for root in &manifest.roots {
        if root.components().any(|c| c == Component::ParentDir) {
            return Err(format!("the manifest's root {} contains '..'", root.display()));
        }
    }
    let files = manifest.files.iter().map(|f| &f.path);
    for path in files.chain(&manifest.directories) {
        let root = manifest
            .roots
            .iter()
            .find(|root| path.starts_with(root))
            .ok_or_else(|| format!("the manifest names {}, outside the trees it backed up", path.display()))?;
        if path.components().any(|c| c == Component::ParentDir) {
            return Err(format!("the manifest names {}, a path with '..'", path.display()));
        }
        // A link above the root is the user's; one below it would redirect the restore.
        if let Some(link) = path
            .ancestors()
            .take_while(|ancestor| ancestor != root)
            .filter(|ancestor| std::fs::symlink_metadata(ancestor).is_ok_and(|m| m.file_type().is_symlink()))
            .last()
        {
            return Err(format!(
                "{} is now a symbolic link, which the restore of {} would follow; remove it and restore again",
                link.display(),
                path.display()
            ));
        }
    }
    if let Some(file) = manifest.files.iter().find(|f| !is_entry_name(Path::new(&f.entry))) {
        return Err(format!(
            "the manifest reads {} from entry '{}', which is not of the form files/NUMBER",
            file.path.display(),
            file.entry
        ));
    }
    Ok(())
}

/// Every regular file under `root` (or `root` itself), sorted; nothing for a missing root.
fn files_under(root: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let Ok(metadata) = std::fs::symlink_metadata(root) else {
        return Ok(files);
    };
    if metadata.is_file() {
        files.push(root.to_owned());
    } else if metadata.is_dir() {
        for child in crate::tree::sorted_children(root)? {
            files.extend(files_under(&child)?);
        }
    }
    Ok(files)
}

/// Every directory at or under `root`, parents first; nothing for a missing root.
fn directories_under(root: &Path) -> Vec<PathBuf> {
    if !std::fs::symlink_metadata(root).is_ok_and(|m| m.is_dir()) {
        return Vec::new();
    }
    let mut directories = vec![root.to_owned()];
    let mut children: Vec<PathBuf> = std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .collect();
    children.sort();
    for child in children {
        directories.extend(directories_under(&child));
    }
    directories
}

/// Removes what is under `root` but was not there at backup time: files not in `keep`, then
/// directories not in `directories` (the root itself, when it did not exist or held nothing).
fn remove_extra(root: &Path, keep: &[&Path], directories: &[PathBuf]) -> Result<()> {
    for path in files_under(root)? {
        if !keep.contains(&path.as_path()) {
            std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
        }
    }
    // Children before parents, so a removed parent never leaves an orphan to visit.
    for directory in directories_under(root).into_iter().rev() {
        if !directories.contains(&directory) {
            std::fs::remove_dir_all(&directory).with_context(|| format!("removing {}", directory.display()))?;
        }
    }
    Ok(())
}

struct HashingReader<'a, R> {
    inner: &'a mut R,
    hasher: Sha256,
}

impl<R: Read> Read for HashingReader<'_, R> {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buffer)?;
        self.hasher.update(&buffer[..n]);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::tree_digest;

    #[test]
    fn a_restore_is_byte_identical_and_removes_what_appeared_since() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = dir.path().join("store");
        std::fs::create_dir_all(store.join("a/b")).expect("mkdir");
        std::fs::create_dir_all(store.join("a/kept-empty")).expect("mkdir");
        std::fs::write(store.join("a/one"), b"one").expect("write");
        std::fs::write(store.join("a/b/two"), vec![7u8; 100_000]).expect("write");
        let missing = dir.path().join("not-there-yet");
        let before = tree_digest(&store).expect("digest");
        let archive = dir.path().join("backups/b.tar.zst");
        let manifest = create(
            &archive,
            "test",
            std::slice::from_ref(&store),
            std::slice::from_ref(&missing),
        )
        .expect("backup");
        assert_eq!(manifest.files.len(), 2);
        assert_eq!(read_manifest(&archive).expect("manifest beside"), manifest);

        std::fs::write(store.join("a/one"), b"changed").expect("write");
        std::fs::write(store.join("a/b/new"), b"new").expect("write");
        std::fs::create_dir_all(store.join("a/appeared/deeper")).expect("mkdir");
        std::fs::create_dir_all(store.join("a/appeared-empty")).expect("mkdir");
        std::fs::remove_file(store.join("a/b/two")).expect("remove");
        std::fs::remove_dir(store.join("a/kept-empty")).expect("rmdir");
        std::fs::create_dir_all(&missing).expect("mkdir");
        std::fs::write(missing.join("x"), b"x").expect("write");
        restore(&archive).expect("restores");
        assert_eq!(tree_digest(&store).expect("digest"), before);
        assert!(!missing.exists(), "a root that did not exist at backup time is removed");
    }

    /// Writes an archive with these raw entries (name, type, content or link target) and then
    /// `manifest`, the way a hostile or damaged archive would be made.
    fn craft(archive: &Path, entries: &[(&str, tar::EntryType, &str)], manifest: &BackupManifest) {
        let file = File::create(archive).expect("create");
        let mut builder = tar::Builder::new(zstd::Encoder::new(file, 3).expect("zstd").auto_finish());
        let manifest = serde_json::to_string(manifest).expect("json");
        let all = entries
            .iter()
            .copied()
            .chain([(MANIFEST_ENTRY, tar::EntryType::Regular, manifest.as_str())]);
        for (name, kind, content) in all {
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(kind);
            header.set_mode(0o644);
            // set_path refuses '..' and absolute paths: write the raw name.
            header.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
            let data = if kind.is_file() {
                content.as_bytes()
            } else {
                header.as_old_mut().linkname[..content.len()].copy_from_slice(content.as_bytes());
                b""
            };
            header.set_size(data.len() as u64);
            header.set_cksum();
            builder.append(&header, data).expect("append");
        }
        builder.into_inner().expect("finish");
    }

    /// A manifest restoring `data` to `path` under `root`, from entry `entry`.
    fn manifest_of(root: &Path, path: PathBuf, entry: &str) -> BackupManifest {
        BackupManifest {
            label: "crafted".into(),
            created: "2026-01-01T00:00:00Z".into(),
            roots: vec![root.to_owned()],
            files: vec![BackupFile {
                entry: entry.into(),
                path,
                size: 4,
                sha256: hex::encode(Sha256::digest(b"data")),
            }],
            directories: vec![root.to_owned()],
        }
    }

    #[test]
    fn entries_that_could_escape_are_refused_naming_the_backup_and_the_entry() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = dir.path().join("store");
        std::fs::create_dir_all(&store).expect("mkdir");
        std::fs::write(store.join("a"), b"current").expect("write");
        let archive = dir.path().join("backups/b.tar.zst");
        std::fs::create_dir_all(archive.parent().expect("parent")).expect("mkdir");
        let manifest = manifest_of(&store, store.join("a"), "files/000001");
        let outside = dir.path().join("escaped");
        let outside_name = outside.display().to_string();
        for (entry, kind, content, refusal) in [
            (
                "../escaped",
                tar::EntryType::Regular,
                "data",
                "is not of the form files/NUMBER",
            ),
            (
                outside_name.as_str(),
                tar::EntryType::Regular,
                "data",
                "is not of the form files/NUMBER",
            ),
            (
                "files/000001",
                tar::EntryType::Symlink,
                outside_name.as_str(),
                "is a symbolic link to",
            ),
            (
                "files/000001",
                tar::EntryType::Link,
                "../../escaped",
                "is a hard link to '../../escaped'",
            ),
            (
                "files",
                tar::EntryType::Directory,
                "",
                "is not of the form files/NUMBER",
            ),
        ] {
            craft(&archive, &[(entry, kind, content)], &manifest);
            let error = format!("{:#}", restore(&archive).expect_err(entry));
            assert!(
                error.contains(&format!("{}: entry '{entry}' ", archive.display())) && error.contains(refusal),
                "{error}"
            );
            assert!(!outside.exists(), "{entry} was written outside");
            assert_eq!(std::fs::read(store.join("a")).expect("read"), b"current", "{entry}");
        }
    }

    #[test]
    fn a_manifest_that_writes_outside_its_roots_is_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = dir.path().join("store");
        std::fs::create_dir_all(&store).expect("mkdir");
        let archive = dir.path().join("b.tar.zst");
        let good_entry = [("files/000001", tar::EntryType::Regular, "data")];
        for (manifest, refusal) in [
            (
                manifest_of(&store, dir.path().join("elsewhere"), "files/000001"),
                "outside the trees it backed up",
            ),
            (
                manifest_of(&store, store.join("../escaped"), "files/000001"),
                "a path with '..'",
            ),
            (
                manifest_of(&store, store.join("a"), "../../etc/passwd"),
                "from entry '../../etc/passwd', which is not of the form files/NUMBER",
            ),
        ] {
            craft(&archive, &good_entry, &manifest);
            let error = format!("{:#}", restore(&archive).expect_err(refusal));
            assert!(
                error.starts_with(&format!("{}: ", archive.display())) && error.contains(refusal),
                "{error}"
            );
            assert!(!dir.path().join("elsewhere").exists() && !dir.path().join("escaped").exists());
            assert!(!store.join("a").exists());
        }
    }

    #[test]
    fn a_link_that_appeared_under_a_root_is_not_followed() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = dir.path().join("store");
        std::fs::create_dir_all(store.join("data")).expect("mkdir");
        std::fs::write(store.join("data/x"), b"x").expect("write");
        let archive = dir.path().join("b.tar.zst");
        create(&archive, "test", std::slice::from_ref(&store), &[]).expect("backup");
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(&outside).expect("mkdir");
        std::fs::remove_dir_all(store.join("data")).expect("rm");
        #[cfg(unix)]
        std::os::unix::fs::symlink(&outside, store.join("data")).expect("symlink");
        #[cfg(windows)]
        std::os::windows::fs::symlink_dir(&outside, store.join("data")).expect("symlink");
        let error = format!("{:#}", restore(&archive).expect_err("through a link"));
        assert!(
            error.contains(&format!("{} is now a symbolic link", store.join("data").display())),
            "{error}"
        );
        assert!(!outside.join("x").exists(), "the restore wrote through the link");
    }

    #[test]
    fn a_damaged_backup_is_refused_before_anything_changes() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = dir.path().join("store");
        std::fs::create_dir_all(&store).expect("mkdir");
        std::fs::write(store.join("data"), vec![1u8; 50_000]).expect("write");
        let archive = dir.path().join("b.tar.zst");
        create(&archive, "test", std::slice::from_ref(&store), &[]).expect("backup");
        std::fs::write(store.join("data"), b"current").expect("write");
        let mut bytes = std::fs::read(&archive).expect("read");
        bytes.truncate(bytes.len() / 2);
        std::fs::write(&archive, bytes).expect("truncate");
        assert!(restore(&archive).is_err());
        assert_eq!(std::fs::read(store.join("data")).expect("read"), b"current");
    }
}
