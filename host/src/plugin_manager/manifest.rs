//! `plugin.toml`: what a plugin crate declares, and what an installed plugin or package records.

use serde::{Deserialize, Serialize};

use ragged_plugin_api::{Capabilities, PluginInfo};

/// The `plugin.toml` a plugin crate keeps next to its `Cargo.toml`; `export_plugin!` embeds it in
/// the library, so the library is the one source of truth.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceManifest {
    /// The store name used in `BACKEND:LOCATION`.
    pub name: String,
    /// One line for `ragged plugin list`.
    pub description: String,
    /// Where the plugin is supported: `os` or `os-arch` entries, with `std::env::consts` names.
    pub platforms: Vec<String>,
}

impl SourceManifest {
    /// Parses the embedded text, naming the plugin library in errors.
    pub fn parse(text: &str) -> Result<SourceManifest, String> {
        let manifest: SourceManifest = toml::from_str(text).map_err(|e| format!("embedded plugin.toml: {e}"))?;
        check_name(&manifest.name)?;
        Ok(manifest)
    }
}

/// The `plugin.toml` of an installed plugin directory or a package: the source manifest plus
/// what packaging measured.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// The store name.
    pub name: String,
    /// The plugin's own version.
    pub version: String,
    /// One line for `ragged plugin list`.
    pub description: String,
    /// The plugin interface version the library was built against.
    pub interface: String,
    /// The target triple the library was compiled for.
    pub target: String,
    /// Where the plugin is supported.
    pub platforms: Vec<String>,
    /// What the plugin can do.
    pub capabilities: Vec<String>,
    /// The library's file name, in the same directory.
    pub library: String,
    /// SHA-256 of the library, hex.
    pub sha256: String,
}

impl Manifest {
    /// The manifest of a library that was just loaded.
    pub fn for_library(info: &PluginInfo, library: &str, sha256: &str) -> Result<Manifest, String> {
        let source = SourceManifest::parse(&info.manifest_toml)?;
        Ok(Manifest {
            name: source.name,
            version: info.plugin_version.clone(),
            description: source.description,
            interface: info.interface_version.clone(),
            target: info.build_target.clone(),
            platforms: source.platforms,
            capabilities: info.capabilities.names().into_iter().map(str::to_owned).collect(),
            library: library.to_owned(),
            sha256: sha256.to_owned(),
        })
    }

    /// Parses an installed `plugin.toml`.
    pub fn parse(text: &str) -> Result<Manifest, String> {
        let manifest: Manifest = toml::from_str(text).map_err(|e| e.to_string())?;
        check_name(&manifest.name)?;
        if manifest.library.contains(['/', '\\']) || manifest.library.starts_with('.') {
            return Err(format!("library '{}' must be a plain file name", manifest.library));
        }
        Ok(manifest)
    }

    /// The text written to disk.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_default()
    }

    /// The capabilities as flags.
    pub fn capability_set(&self) -> Capabilities {
        self.capabilities
            .iter()
            .filter_map(|n| Capabilities::from_name(n))
            .fold(Capabilities::empty(), |a, b| a | b)
    }

    /// Why this plugin cannot run in this host, if it cannot: wrong target, platform or interface.
    pub fn incompatibility(&self) -> Option<String> {
        let host_target = ragged_plugin_api::ffi::BUILD_TARGET;
        if self.target != host_target {
            return Some(format!("built for {}, this host is {host_target}", self.target));
        }
        if !platform_supported(&self.platforms, std::env::consts::OS, std::env::consts::ARCH) {
            return Some(format!(
                "not supported on {}-{} (supported: {})",
                std::env::consts::OS,
                std::env::consts::ARCH,
                self.platforms.join(", ")
            ));
        }
        interface_incompatibility(&self.interface)
    }
}

pub use ragged_plugin_api::host::interface_incompatibility;

/// Whether `os`/`arch` is in a `platforms` list of `os` or `os-arch` entries.
pub fn platform_supported(platforms: &[String], os: &str, arch: &str) -> bool {
    platforms.iter().any(|p| p == os || *p == format!("{os}-{arch}"))
}

fn check_name(name: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        && name.starts_with(|c: char| c.is_ascii_lowercase());
    if valid {
        Ok(())
    } else {
        Err(format!(
            "plugin name '{name}' must be lowercase letters, digits, '-' or '_', starting with a letter"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platforms_match_by_os_or_os_and_arch() {
        let platforms = vec!["linux".to_owned(), "macos-aarch64".to_owned()];
        assert!(platform_supported(&platforms, "linux", "x86_64"));
        assert!(platform_supported(&platforms, "macos", "aarch64"));
        assert!(!platform_supported(&platforms, "macos", "x86_64"));
        assert!(!platform_supported(&platforms, "windows", "x86_64"));
    }

    #[test]
    fn interface_versions_follow_the_major_and_minor_rules() {
        assert_eq!(interface_incompatibility(ragged_plugin_api::INTERFACE_VERSION), None);
        assert_eq!(interface_incompatibility("1.7.3"), None);
        let older = interface_incompatibility("1.0.0").expect("an older minor is refused");
        assert!(older.contains("older than this ragged's interface 1.1.0"), "{older}");
        assert!(older.contains("ragged-plugin-api 1.1 or later"), "{older}");
        let refusal = interface_incompatibility("2.0.0").expect("another major is refused");
        assert!(refusal.contains("built against plugin interface 2.0.0"), "{refusal}");
        assert!(
            refusal.contains("rebuild the plugin against ragged-plugin-api 1.x"),
            "{refusal}"
        );
        assert!(interface_incompatibility("banana").is_some());
    }

    #[test]
    fn names_and_library_paths_are_checked() {
        let text = |name: &str, library: &str| {
            format!(
                "name = \"{name}\"\nversion = \"1.0.0\"\ndescription = \"d\"\ninterface = \"1.0.0\"\n\
                 target = \"t\"\nplatforms = [\"linux\"]\ncapabilities = [\"read\"]\nlibrary = \"{library}\"\nsha256 = \"00\"\n"
            )
        };
        assert!(Manifest::parse(&text("chroma", "libx.so")).is_ok());
        assert!(
            Manifest::parse(&text("Chroma", "libx.so"))
                .expect_err("upper case")
                .contains("lowercase")
        );
        assert!(
            Manifest::parse(&text("chroma", "../libx.so"))
                .expect_err("path")
                .contains("plain file name")
        );
    }
}
