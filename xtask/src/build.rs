//! Building the host and plugins, packaging plugins and installing them.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Deserialize;

use crate::{cargo, project_root, run};

/// The part of a plugin crate's `plugin.toml` xtask needs before building it.
#[derive(Deserialize)]
struct PluginToml {
    name: String,
    platforms: Vec<String>,
}

/// A plugin crate of the workspace.
pub(crate) struct PluginCrate {
    pub(crate) name: String,
    pub(crate) package: String,
    pub(crate) supported: bool,
}

/// Every `plugins/*` crate with a `plugin.toml`, and whether it supports this platform.
pub(crate) fn plugin_crates() -> Result<Vec<PluginCrate>> {
    plugin_crates_in(
        &project_root().join("plugins"),
        std::env::consts::OS,
        std::env::consts::ARCH,
    )
}

/// The plugin crates under `dir`, and whether each supports `os`/`arch`.
fn plugin_crates_in(dir: &Path, os: &str, arch: &str) -> Result<Vec<PluginCrate>> {
    let mut crates = Vec::new();
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for path in entries {
        let manifest = path.join("plugin.toml");
        if !manifest.is_file() {
            continue;
        }
        let text = std::fs::read_to_string(&manifest)?;
        let plugin: PluginToml = toml::from_str(&text).with_context(|| format!("parsing {}", manifest.display()))?;
        let supported = plugin.platforms.iter().any(|p| p == os || *p == format!("{os}-{arch}"));
        let package = format!(
            "ragged-plugin-{}",
            path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default()
        );
        crates.push(PluginCrate {
            name: plugin.name,
            package,
            supported,
        });
    }
    Ok(crates)
}

/// What a build produced.
pub(crate) struct Built {
    pub(crate) host: PathBuf,
    pub(crate) packages: Vec<PathBuf>,
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| project_root().join("target"))
}

/// Builds the host and the plugins supported here, packages each plugin into
/// `target/<profile>/dist/` and installs it into `target/<profile>/plugins/`, where the host finds
/// it (the `plugins` dir next to the executable).
pub(crate) fn build(release: bool) -> Result<Built> {
    let plugins = plugin_crates()?;
    let mut command = cargo();
    command.args(["build", "-p", "ragged"]);
    for plugin in &plugins {
        if plugin.supported {
            command.args(["-p", &plugin.package]);
        } else {
            eprintln!(
                "xtask: skipping plugin {}: its plugin.toml excludes {}",
                plugin.name,
                std::env::consts::OS
            );
        }
    }
    if release {
        command.arg("--release");
    }
    run(&mut command)?;
    let profile_dir = target_dir().join(if release { "release" } else { "debug" });
    let host = profile_dir.join(format!("ragged{}", std::env::consts::EXE_SUFFIX));
    let dist = profile_dir.join("dist");
    let plugin_dir = profile_dir.join("plugins");
    let mut packages = Vec::new();
    for plugin in plugins.iter().filter(|p| p.supported) {
        let library = profile_dir.join(format!(
            "{}{}{}",
            std::env::consts::DLL_PREFIX,
            plugin.package.replace('-', "_"),
            std::env::consts::DLL_SUFFIX
        ));
        let package = package(&host, &library, &dist)?;
        install_package(&host, &package, Some(&plugin_dir))?;
        packages.push(package);
    }
    Ok(Built { host, packages })
}

/// `ragged plugin package LIBRARY --out DIR`, returning the package path it prints.
fn package(host: &Path, library: &Path, out: &Path) -> Result<PathBuf> {
    let output = std::process::Command::new(host)
        .args(["plugin", "package"])
        .arg(library)
        .arg("--out")
        .arg(out)
        .output()
        .with_context(|| format!("running {}", host.display()))?;
    if !output.status.success() {
        bail!(
            "packaging {} failed:\n{}",
            library.display(),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(PathBuf::from(String::from_utf8_lossy(&output.stdout).trim()))
}

fn install_package(host: &Path, package: &Path, plugin_dir: Option<&Path>) -> Result<()> {
    let mut command = std::process::Command::new(host);
    command.args(["plugin", "install", "--force"]).arg(package);
    if let Some(dir) = plugin_dir {
        command.arg("--plugin-dir").arg(dir);
    }
    run(&mut command)
}

/// Release packages in `dist/`.
pub(crate) fn dist() -> Result<Vec<PathBuf>> {
    let built = build(true)?;
    let dist = project_root().join("dist");
    std::fs::create_dir_all(&dist)?;
    let mut copied = Vec::new();
    for package in built.packages {
        let destination = dist.join(package.file_name().context("package has a file name")?);
        std::fs::copy(&package, &destination)?;
        println!("{}", destination.display());
        copied.push(destination);
    }
    Ok(copied)
}

/// Release packages installed into the user plugin dir.
pub(crate) fn install() -> Result<()> {
    let built = build(true)?;
    for package in &built.packages {
        install_package(&built.host, package, None)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugins_whose_manifest_excludes_the_platform_are_marked_unsupported() {
        let dir = tempfile::tempdir().expect("temp dir");
        for (crate_dir, platforms) in [("leann", r#"["linux", "macos"]"#), ("winonly", r#"["windows-x86_64"]"#)] {
            std::fs::create_dir_all(dir.path().join(crate_dir)).expect("mkdir");
            let manifest = format!("name = \"{crate_dir}\"\ndescription = \"d\"\nplatforms = {platforms}\n");
            std::fs::write(dir.path().join(crate_dir).join("plugin.toml"), manifest).expect("write");
        }
        std::fs::create_dir_all(dir.path().join("not-a-plugin")).expect("mkdir");
        let support = |os, arch| -> Vec<(String, bool)> {
            let crates = plugin_crates_in(dir.path(), os, arch).expect("reads");
            crates.into_iter().map(|c| (c.package, c.supported)).collect()
        };
        let names = |pairs: [(&str, bool); 2]| pairs.map(|(n, s)| (n.to_owned(), s)).to_vec();
        assert_eq!(
            support("linux", "x86_64"),
            names([("ragged-plugin-leann", true), ("ragged-plugin-winonly", false)])
        );
        assert_eq!(
            support("windows", "x86_64"),
            names([("ragged-plugin-leann", false), ("ragged-plugin-winonly", true)])
        );
        assert_eq!(
            support("windows", "aarch64"),
            names([("ragged-plugin-leann", false), ("ragged-plugin-winonly", false)])
        );
    }
}
