//! Plugin packages: a `.tar.zst` holding `<name>/plugin.toml` and `<name>/<library>`.
//!
//! `package` loads the library first, so a package never records an interface or a name the
//! library does not have. `install` checks everything before it copies anything into the plugin
//! directory, and refuses archive entries that could land outside it.

use std::fs::File;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use serde::Serialize;

use super::manifest::{Manifest, interface_incompatibility};
use super::{load_library, sha256_file};

/// Largest library accepted from a package; a bigger entry is refused rather than unpacked.
const MAX_LIBRARY_BYTES: u64 = 2 << 30;
/// Largest `plugin.toml` accepted from a package.
const MAX_MANIFEST_BYTES: u64 = 64 << 10;

/// What `package` wrote.
#[derive(Debug, Serialize)]
pub struct PackageReport {
    /// The archive.
    pub path: PathBuf,
    /// Its manifest.
    pub manifest: Manifest,
}

/// Packages the plugin library at `library` into `out_dir`.
pub fn package(library: &Path, out_dir: &Path) -> Result<PackageReport> {
    let loaded = load_library(library)?;
    let file_name = library
        .file_name()
        .and_then(|n| n.to_str())
        .with_context(|| format!("{}: not a file name", library.display()))?;
    let sha256 = sha256_file(library)?;
    let manifest = Manifest::for_library(&loaded.info, file_name, &sha256)
        .map_err(|reason| anyhow::anyhow!("{}: {reason}", library.display()))?;
    std::fs::create_dir_all(out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let path = out_dir.join(format!(
        "{}-{}-{}.tar.zst",
        manifest.name, manifest.version, manifest.target
    ));
    let temp = path.with_extension("zst.tmp");
    let write = || -> Result<()> {
        let file = File::create(&temp).with_context(|| format!("creating {}", temp.display()))?;
        // Level 3 on every core: plugin libraries run to hundreds of MB (lancedb's debug build is
        // 424 MB), which level 19 took 11 minutes to pack for a package about 15% smaller.
        let mut encoder = zstd::Encoder::new(file, 3)?;
        let workers = std::thread::available_parallelism()
            .map(|n| n.get() as u32)
            .unwrap_or(1);
        encoder.multithread(workers)?;
        let encoder = encoder.auto_finish();
        let mut archive = tar::Builder::new(encoder);
        // Plain entries only: install accepts nothing else, and sparse entries surprise other tools.
        archive.sparse(false);
        let manifest_text = manifest.to_toml();
        let mut header = tar::Header::new_gnu();
        header.set_size(manifest_text.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        archive.append_data(
            &mut header,
            format!("{}/plugin.toml", manifest.name),
            manifest_text.as_bytes(),
        )?;
        archive.append_path_with_name(library, format!("{}/{}", manifest.name, file_name))?;
        archive.into_inner()?;
        Ok(())
    };
    write().with_context(|| format!("writing {}", path.display()))?;
    std::fs::rename(&temp, &path).with_context(|| format!("renaming {} to {}", temp.display(), path.display()))?;
    Ok(PackageReport { path, manifest })
}

/// What `install` did.
#[derive(Debug, Serialize)]
pub struct InstallReport {
    /// The installed plugin directory.
    pub dir: PathBuf,
    /// Its manifest.
    pub manifest: Manifest,
    /// Whether an older installation of the same plugin was replaced.
    pub replaced: bool,
}

/// Installs a package into `plugin_dir` after checking its entries, manifest, target, platform,
/// interface and checksum. `replace` allows overwriting an installed plugin of the same name.
pub fn install(package: &Path, plugin_dir: &Path, replace: bool) -> Result<InstallReport> {
    create_dir(plugin_dir).with_context(|| format!("creating {}", plugin_dir.display()))?;
    // Unpack into a staging directory inside the plugin dir (same filesystem, so the final move is
    // a rename); nothing is visible to discovery until every check has passed.
    let staging = tempfile::Builder::new()
        .prefix(".installing-")
        .tempdir_in(plugin_dir)
        .with_context(|| format!("creating a staging directory in {}", plugin_dir.display()))?;
    let name = unpack(package, staging.path())
        .with_context(|| format!("{}: not a valid plugin package", package.display()))?;
    let staged = staging.path().join(&name);
    let manifest_path = staged.join("plugin.toml");
    let manifest = Manifest::parse(&std::fs::read_to_string(&manifest_path)?)
        .map_err(|reason| anyhow::anyhow!("{}: plugin.toml: {reason}", package.display()))?;
    if manifest.name != name {
        bail!(
            "{}: plugin.toml names '{}' but the package directory is '{name}'",
            package.display(),
            manifest.name
        );
    }
    if let Some(reason) = manifest
        .incompatibility()
        .or_else(|| interface_incompatibility(&manifest.interface))
    {
        bail!("{}: plugin '{name}' cannot run here: {reason}", package.display());
    }
    let library = staged.join(&manifest.library);
    if !library.is_file() {
        bail!(
            "{}: the package has no library '{}'",
            package.display(),
            manifest.library
        );
    }
    let sha256 = sha256_file(&library)?;
    if sha256 != manifest.sha256 {
        bail!(
            "{}: checksum mismatch for {} (plugin.toml says {}, the file is {sha256}); the package is damaged or was altered",
            package.display(),
            manifest.library,
            manifest.sha256
        );
    }
    let target = plugin_dir.join(&name);
    let replaced = target.exists();
    if replaced && !replace {
        bail!(
            "plugin '{name}' is already installed at {}; pass --force to replace it",
            target.display()
        );
    }
    if replaced {
        let old = staging.path().join(".old");
        std::fs::rename(&target, &old).with_context(|| format!("moving the old {} aside", target.display()))?;
    }
    std::fs::rename(&staged, &target).with_context(|| format!("moving the plugin into {}", target.display()))?;
    Ok(InstallReport {
        dir: target,
        manifest,
        replaced,
    })
}

/// Unpacks the archive into `dest`, returning the one top-level directory name. Only regular
/// files at `<name>/<file>` are accepted: no links, no absolute paths, no `..`, no nesting.
fn unpack(package: &Path, dest: &Path) -> Result<String> {
    let file = File::open(package).with_context(|| format!("opening {}", package.display()))?;
    let decoder = zstd::Decoder::new(file).context("not zstd-compressed")?;
    let mut archive = tar::Archive::new(decoder);
    let mut top: Option<String> = None;
    for entry in archive.entries().context("not a tar archive")? {
        let mut entry = entry.context("reading an archive entry")?;
        let path = entry.path().context("reading an entry path")?.into_owned();
        let parts: Vec<&str> = path
            .components()
            .map(|c| match c {
                Component::Normal(part) => part.to_str().unwrap_or(""),
                _ => "",
            })
            .collect();
        if parts.len() != 2 || parts.iter().any(|p| p.is_empty() || p.starts_with('.')) {
            bail!(
                "entry '{}' is not of the form <plugin>/<file> (it could escape the plugin directory)",
                path.display()
            );
        }
        if !entry.header().entry_type().is_file() {
            bail!("entry '{}' is not a regular file", path.display());
        }
        match &top {
            None => top = Some(parts[0].to_owned()),
            Some(name) if name != parts[0] => {
                bail!("the package holds more than one plugin ('{name}', '{}')", parts[0])
            }
            Some(_) => {}
        }
        let limit = if parts[1] == "plugin.toml" {
            MAX_MANIFEST_BYTES
        } else {
            MAX_LIBRARY_BYTES
        };
        if entry.header().size()? > limit {
            bail!("entry '{}' is larger than {limit} bytes", path.display());
        }
        let out_dir = dest.join(parts[0]);
        create_dir(&out_dir)?;
        let mut out = create_file(&out_dir.join(parts[1]))?;
        std::io::copy(&mut (&mut entry).take(limit), &mut out)?;
    }
    top.context("the package is empty")
}

/// Creates `dir` and its parents writable by their owner only, whatever the umask: discovery
/// refuses plugin directories others can write.
fn create_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o755);
    builder.create(dir)
}

/// Creates a file writable by its owner only, whatever the umask (see [`create_dir`]).
fn create_file(path: &Path) -> std::io::Result<File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o644);
    options.open(path)
}

/// Removes an installed plugin from `plugin_dir`.
pub fn remove(name: &str, plugin_dir: &Path) -> Result<PathBuf> {
    let dir = plugin_dir.join(name);
    if !dir.join("plugin.toml").is_file() {
        bail!("plugin '{name}' is not installed in {}", plugin_dir.display());
    }
    std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    Ok(dir)
}
