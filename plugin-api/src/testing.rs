//! Helpers for a plugin's own tests: cross the real boundary without building a library.

use crate::ffi::{FfiPluginInfo, ForeignStore, root_module};
use crate::{Backend, OpenRequest, Plugin, PluginError};

/// Opens a store of plugin `P` through the same vtable, JSON encoding, Arrow C streams and panic
/// guards the host uses, but in-process.
pub fn open_through_ffi<P: Plugin>(request: &OpenRequest) -> Result<Box<dyn Backend>, PluginError> {
    extern "C" fn no_info() -> FfiPluginInfo {
        crate::ffi::plugin_info_for_tests()
    }
    let module = root_module::<P>(no_info);
    Ok(Box::new(ForeignStore::open(module, request)?))
}
