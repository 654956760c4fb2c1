//! Loading plugin libraries: the host's half of the boundary (feature `host`).
//!
//! Libraries are never unloaded (abi_stable leaks them on purpose): batches a plugin produced
//! stay valid for the life of the process.

use std::path::{Path, PathBuf};

use abi_stable::library::{LibraryError, RootModule, lib_header_from_path};

use crate::ffi::{ForeignStore, PluginModuleRef, read_info};
use crate::{Backend, INTERFACE_VERSION, OpenRequest, PluginError, PluginInfo};

/// Why a library could not be used as a plugin.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The dynamic loader refused the file.
    #[error("{}: cannot load the library: {reason}", path.display())]
    Open {
        /// The library.
        path: PathBuf,
        /// The loader's message.
        reason: String,
    },
    /// The library loads but exports no ragged root module.
    #[error("{}: not a ragged plugin (it exports no ragged root module)", path.display())]
    NotAPlugin {
        /// The library.
        path: PathBuf,
    },
    /// The plugin was built against an interface version this host cannot use.
    #[error("{}: the plugin was {reason}", path.display())]
    IncompatibleInterface {
        /// The library.
        path: PathBuf,
        /// Which versions and the fix, from [`interface_incompatibility`].
        reason: String,
    },
    /// The versions agree but the type layouts do not (a plugin built from a modified interface).
    #[error("{}: the plugin's interface layout differs from this host's: {detail}", path.display())]
    Layout {
        /// The library.
        path: PathBuf,
        /// abi_stable's description of the difference.
        detail: String,
    },
}

/// Why a plugin built against interface `plugin` cannot load in this host, if it cannot.
///
/// The major versions must agree (for 0.x, the minors too), and the plugin's minor version must
/// be this host's or newer: abi_stable refuses a vtable shorter than the host's
/// (abi_stable_crates issue #118), so a plugin built before an operation was added cannot load in
/// a host that has it. A newer plugin loads; the host never calls what it does not know.
pub fn interface_incompatibility(plugin: &str) -> Option<String> {
    let host = INTERFACE_VERSION;
    let (Ok(plugin_version), Ok(host_version)) = (semver::Version::parse(plugin), semver::Version::parse(host)) else {
        return Some(format!(
            "built against interface version '{plugin}', which is not a semver version"
        ));
    };
    let (major, minor) = (host_version.major, host_version.minor);
    if plugin_version.major != major || (major == 0 && plugin_version.minor != minor) {
        return Some(format!(
            "built against plugin interface {plugin}, but this ragged implements interface {host}; \
             rebuild the plugin against ragged-plugin-api {major}.x, or use a ragged whose interface is {}.x",
            plugin_version.major
        ));
    }
    (plugin_version.minor < minor).then(|| {
        format!(
            "built against plugin interface {plugin}, older than this ragged's interface {host}, whose \
             operations it lacks; rebuild the plugin against ragged-plugin-api {major}.{minor} or later"
        )
    })
}

/// A loaded plugin library.
#[derive(Clone)]
pub struct LoadedPlugin {
    /// What the plugin says about itself.
    pub info: PluginInfo,
    module: PluginModuleRef,
}

impl LoadedPlugin {
    /// Opens a store through this plugin.
    pub fn open(&self, request: &OpenRequest) -> Result<Box<dyn Backend>, PluginError> {
        Ok(Box::new(ForeignStore::open(self.module, request)?))
    }
}

/// Loads the plugin library at `path`, checking the interface version, then the layout of every
/// type reachable from the root module, before anything in it runs.
pub fn load_plugin(path: &Path) -> Result<LoadedPlugin, LoadError> {
    let header = lib_header_from_path(path).map_err(|error| match error {
        LibraryError::GetSymbolError { .. } => LoadError::NotAPlugin { path: path.to_owned() },
        other => LoadError::Open {
            path: path.to_owned(),
            reason: other.to_string(),
        },
    })?;
    let plugin_interface = header.version_strings().version.to_string();
    // Checked before abi_stable's own checks, whose refusal of an older minor is a layout dump.
    if let Some(reason) = interface_incompatibility(&plugin_interface) {
        return Err(LoadError::IncompatibleInterface {
            path: path.to_owned(),
            reason,
        });
    }
    let module = header
        .init_root_module::<PluginModuleRef>()
        .map_err(|error| match error {
            LibraryError::IncompatibleVersionNumber { actual_version, .. } => LoadError::IncompatibleInterface {
                path: path.to_owned(),
                reason: interface_incompatibility(&actual_version.to_string())
                    .unwrap_or_else(|| format!("built against plugin interface {actual_version}")),
            },
            LibraryError::AbiInstability(detail) => LoadError::Layout {
                path: path.to_owned(),
                detail: detail.to_string(),
            },
            other => LoadError::Open {
                path: path.to_owned(),
                reason: other.to_string(),
            },
        })?;
    Ok(LoadedPlugin {
        info: read_info(module, &plugin_interface),
        module,
    })
}

/// The interface version the host was built with, as abi_stable records it.
pub fn host_interface_version() -> &'static str {
    PluginModuleRef::VERSION_STRINGS.version.as_str()
}
