//! The stable interface between the ragged host and its store plugins.
//!
//! A plugin is a `cdylib` that implements [`Plugin`] (how to open a store, what it can do) and
//! [`Backend`] (the operations on an open store), then calls [`export_plugin!`] once. Authors
//! never write `unsafe`, FFI types or `catch_unwind`: a panic inside a plugin reaches the host as
//! an error with [`ErrorCode::Panic`].
//!
//! ```
//! use ragged_plugin_api::{
//!     Backend, BatchStream, Capabilities, CollectionInfo, ExtractRequest, OpenRequest, Plugin,
//!     PluginError,
//! };
//!
//! struct EmptyStore;
//!
//! impl Backend for EmptyStore {
//!     fn list_collections(&self) -> Result<Vec<String>, PluginError> {
//!         Ok(Vec::new())
//!     }
//!     fn describe(&self, collection: &str) -> Result<CollectionInfo, PluginError> {
//!         Err(PluginError::not_found(format!("no collection '{collection}'")))
//!     }
//!     fn extract(&self, collection: &str, _: &ExtractRequest) -> Result<BatchStream, PluginError> {
//!         Err(PluginError::not_found(format!("no collection '{collection}'")))
//!     }
//! }
//!
//! impl Plugin for EmptyStore {
//!     const CAPABILITIES: Capabilities = Capabilities::READ;
//!     fn open(_: &OpenRequest) -> Result<Self, PluginError> {
//!         Ok(EmptyStore)
//!     }
//! }
//!
//! // In a plugin crate, next to its `plugin.toml`:
//! // ragged_plugin_api::export_plugin!(EmptyStore);
//! ```
//!
//! # The canonical batch schema
//!
//! Every stream of records, in both directions, has exactly these columns:
//!
//! | column | Arrow type | null | meaning |
//! |---|---|---|---|
//! | `id` | `Utf8` | no | the record's unique id |
//! | `document` | `Utf8` | yes | the text; null means the record has none (not the same as `""`) |
//! | `metadata` | `Utf8` | yes | a JSON object, see below; null means no metadata |
//! | `embedding` | `FixedSizeList<Float32, dim>` | no | the vector, bit-exact |
//!
//! Metadata is a JSON object whose values are strings, integers, floats, booleans or homogeneous
//! arrays of one of those. Typing is lossless: an integer is written without a fraction (`2`) and
//! a float always with one (`2.0`), so `2` and `2.0` stay different through every store.
//! [`validate_metadata`] checks a value.
//!
//! # Versioning
//!
//! This crate's version is the interface version ([`INTERFACE_VERSION`]). The host loads a plugin
//! only when both were built against the same major version; minor versions add optional
//! operations at the end of the vtable, and a host calling one that an older plugin lacks gets
//! [`ErrorCode::Unsupported`]. See `docs/plugins.md`.

#![deny(missing_docs)]

mod backend;
mod error;
#[doc(hidden)]
pub mod ffi;
mod records;
mod types;

#[cfg(feature = "arrow")]
pub mod arrow;
#[cfg(feature = "host")]
pub mod host;
#[cfg(feature = "sampling")]
pub mod sampling;
pub mod testing;

pub use backend::{Backend, Plugin};
pub use error::{ErrorCode, PluginError};
pub use ffi::BatchStream;
pub use records::{
    MetadataScalar, MetadataScalars, Record, canonical_metadata, metadata_scalars, parse_metadata, validate_metadata,
};
pub use types::{
    Access, Capabilities, CollectionInfo, DistanceMetric, ExtractRequest, Hit, LoadMode, LoadRequest, LoadSummary,
    OpenRequest, PluginInfo, StorageReport,
};

/// The version of this interface, which every plugin records when it is built.
pub const INTERFACE_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Exports a [`Plugin`] type as the library's root module.
///
/// Call it once, in the crate root of a `cdylib` whose directory holds a `plugin.toml`. The
/// expansion declares one `#[unsafe(export_name)]` static, so the crate can `deny(unsafe_code)`
/// but not `forbid` it.
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty) => {
        #[doc(hidden)]
        extern "C" fn __ragged_plugin_info() -> $crate::ffi::FfiPluginInfo {
            $crate::ffi::plugin_info::<$plugin>(
                include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/plugin.toml")),
                env!("CARGO_PKG_VERSION"),
            )
        }

        #[doc(hidden)]
        extern "C" fn __ragged_plugin_root() -> $crate::ffi::abi_stable::library::RootModuleResult {
            $crate::ffi::abi_stable::library::__call_root_module_loader(|| {
                $crate::ffi::root_module::<$plugin>(__ragged_plugin_info)
            })
        }

        #[doc(hidden)]
        #[allow(unsafe_code)]
        #[unsafe(export_name = "_1as_0lib_1header_0root_bmodule_bloader")]
        pub static __RAGGED_PLUGIN_ROOT: $crate::ffi::abi_stable::library::LibHeader =
            $crate::ffi::lib_header(__ragged_plugin_root);
    };
}
