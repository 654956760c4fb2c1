//! Finds, validates, loads, packages and installs plugins. The only module that reads plugin
//! directories, the registry file and packages.
//!
//! A plugin on disk is a directory holding `plugin.toml` ([`Manifest`]) and the library it names.
//! Directories are searched in [`Context::plugin_search_path`] order; the first plugin of a name
//! wins and later ones are reported as shadowed.

pub mod manifest;
pub mod package;
mod permissions;
mod registry;
pub mod scaffold;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, anyhow, bail};
use ragged_plugin_api::host::{LoadedPlugin, load_plugin};
use serde::Serialize;

pub use self::manifest::Manifest;
use crate::context::Context;

/// A plugin directory found during discovery.
#[derive(Debug, Clone, Serialize)]
pub struct PluginEntry {
    /// The plugin's name (from its manifest, or the directory name when the manifest is unreadable).
    pub name: String,
    /// The plugin directory.
    pub dir: PathBuf,
    /// The parsed manifest, when it parses.
    pub manifest: Option<Manifest>,
    /// Whether the host can use it.
    pub status: Status,
}

/// Whether a discovered plugin can be used, and why not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", content = "reason", rename_all = "lowercase")]
pub enum Status {
    /// Loads and matches its manifest.
    Valid,
    /// Cannot be used; the reason names the file and the problem.
    Invalid(String),
    /// Valid or not, an earlier directory has a plugin of the same name.
    Shadowed(String),
}

impl PluginEntry {
    /// The library file of this plugin.
    pub fn library_path(&self) -> Option<PathBuf> {
        self.manifest.as_ref().map(|m| self.dir.join(&m.library))
    }
}

/// Every plugin directory in the search path, validated (through the registry cache when the
/// library has not changed since it was last checked).
pub fn discover(ctx: &Context) -> Vec<PluginEntry> {
    let mut registry = registry::Registry::open(&ctx.registry_file());
    let mut entries = Vec::new();
    let mut seen = BTreeSet::new();
    for search_dir in &ctx.plugin_search_path {
        for dir in plugin_dirs(search_dir) {
            let mut entry = inspect(&dir, &mut registry);
            if !seen.insert(entry.name.clone()) {
                let first = entries
                    .iter()
                    .find(|e: &&PluginEntry| e.name == entry.name)
                    .map(|e| e.dir.display().to_string());
                entry.status = Status::Shadowed(format!("shadowed by {}", first.unwrap_or_default()));
            }
            entries.push(entry);
        }
    }
    registry.save();
    entries
}

/// The usable plugin called `name`, loaded.
pub fn load(ctx: &Context, name: &str) -> Result<(PluginEntry, LoadedPlugin)> {
    let entries = discover(ctx);
    let Some(entry) = entries
        .iter()
        .find(|e| e.name == name && !matches!(e.status, Status::Shadowed(_)))
    else {
        let available: Vec<&str> = entries
            .iter()
            .filter(|e| e.status == Status::Valid)
            .map(|e| e.name.as_str())
            .collect();
        let searched: Vec<String> = ctx.plugin_search_path.iter().map(|p| p.display().to_string()).collect();
        bail!(
            "no plugin named '{name}' is installed (available: {}; searched: {}); install one with `ragged plugin install PACKAGE.tar.zst`",
            if available.is_empty() {
                "none".to_owned()
            } else {
                available.join(", ")
            },
            searched.join(", ")
        );
    };
    if let Status::Invalid(reason) = &entry.status {
        bail!("plugin '{name}' at {} cannot be used: {reason}", entry.dir.display());
    }
    let library = entry
        .library_path()
        .ok_or_else(|| anyhow!("plugin '{name}' has no manifest"))?;
    let loaded = load_plugin(&library)?;
    Ok((entry.clone(), loaded))
}

/// Loads a library file directly (for `plugin test PATH` and packaging).
pub fn load_library(path: &Path) -> Result<LoadedPlugin> {
    Ok(load_plugin(path)?)
}

/// The subdirectories of `search_dir` that hold a `plugin.toml`, sorted.
fn plugin_dirs(search_dir: &Path) -> Vec<PathBuf> {
    let Ok(read) = std::fs::read_dir(search_dir) else {
        return Vec::new();
    };
    let mut dirs: Vec<PathBuf> = read
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.join("plugin.toml").is_file())
        .collect();
    dirs.sort();
    dirs
}

/// Validates one plugin directory.
fn inspect(dir: &Path, registry: &mut registry::Registry) -> PluginEntry {
    let fallback_name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let manifest_path = dir.join("plugin.toml");
    let manifest = std::fs::read_to_string(&manifest_path)
        .map_err(|e| e.to_string())
        .and_then(|text| Manifest::parse(&text));
    let manifest = match manifest {
        Ok(manifest) => manifest,
        Err(reason) => {
            let status = Status::Invalid(format!("{}: {reason}", manifest_path.display()));
            return PluginEntry {
                name: fallback_name,
                dir: dir.to_owned(),
                manifest: None,
                status,
            };
        }
    };
    let library = dir.join(&manifest.library);
    // Before the library is loaded (which runs its code), even through the registry's cache.
    let status = match permissions::check(&[dir, &manifest_path, &library]) {
        Err(reason) => Status::Invalid(reason),
        Ok(()) => match manifest.incompatibility() {
            Some(reason) => Status::Invalid(reason),
            None => registry.validate(&library, &manifest),
        },
    };
    PluginEntry {
        name: manifest.name.clone(),
        dir: dir.to_owned(),
        manifest: Some(manifest),
        status,
    }
}

/// Checks a library against its manifest by loading it: the embedded manifest, version and
/// interface must agree with what the directory claims.
fn check_library(library: &Path, manifest: &Manifest) -> Result<(), String> {
    let loaded = load_plugin(library).map_err(|e| e.to_string())?;
    let actual = Manifest::for_library(&loaded.info, &manifest.library, &manifest.sha256)?;
    let mut differences = Vec::new();
    for (field, claimed, found) in [
        ("name", &manifest.name, &actual.name),
        ("version", &manifest.version, &actual.version),
        ("interface", &manifest.interface, &actual.interface),
        ("target", &manifest.target, &actual.target),
    ] {
        if claimed != found {
            differences.push(format!(
                "{field} is '{found}' in the library but '{claimed}' in plugin.toml"
            ));
        }
    }
    if differences.is_empty() {
        Ok(())
    } else {
        Err(differences.join("; "))
    }
}

/// SHA-256 of a file, hex.
pub fn sha256_file(path: &Path) -> Result<String> {
    use sha2::Digest;
    let mut file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut hasher = sha2::Sha256::new();
    std::io::copy(&mut file, &mut hasher).with_context(|| format!("reading {}", path.display()))?;
    Ok(hex::encode(hasher.finalize()))
}
