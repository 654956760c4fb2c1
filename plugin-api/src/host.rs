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
    #[error(
        "{}: the plugin was built against plugin interface {plugin}, but this ragged implements interface {host}; \
         rebuild the plugin against ragged-plugin-api {host_major}.x, or use a ragged whose interface is {plugin_major}.x",
        path.display(),
        host_major = major(host),
        plugin_major = major(plugin)
    )]
    IncompatibleInterface {
        /// The library.
        path: PathBuf,
        /// The interface version the plugin was built against.
        plugin: String,
        /// The host's interface version.
        host: String,
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

fn major(version: &str) -> &str {
    version.split('.').next().unwrap_or(version)
}

/// A loaded plugin library.
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
    let module = header
        .init_root_module::<PluginModuleRef>()
        .map_err(|error| match error {
            LibraryError::IncompatibleVersionNumber { actual_version, .. } => LoadError::IncompatibleInterface {
                path: path.to_owned(),
                plugin: actual_version.to_string(),
                host: INTERFACE_VERSION.to_owned(),
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
    let plugin_interface = header.version_strings().version.to_string();
    Ok(LoadedPlugin {
        info: read_info(module, &plugin_interface),
        module,
    })
}

/// The interface version the host was built with, as abi_stable records it.
pub fn host_interface_version() -> &'static str {
    PluginModuleRef::VERSION_STRINGS.version.as_str()
}
