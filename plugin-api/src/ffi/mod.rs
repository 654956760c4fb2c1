//! The abi_stable layer. Not API: no semver guarantees for anything in here except through the
//! layouts abi_stable checks at load time. Plugin authors use [`crate::export_plugin!`]; the host
//! uses `crate::host`.
//!
//! Layout of this module: the boundary types, the root module, then the producer half (a plugin's
//! `Backend` exported as `FfiStore`) and the consumer half (`ForeignStore`, a `Backend` that calls
//! through the vtable), so a reviewer reads both sides of the contract in one place.

// abi_stable's `#[sabi_trait]` expansion trips this lint; nothing we can change.
#![allow(non_local_definitions)]

mod stream;

use std::any::Any;
use std::cell::RefCell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Once;

use abi_stable::library::RootModule;
use abi_stable::sabi_trait::prelude::TD_Opaque;
use abi_stable::std_types::{RBox, ROption, RResult, RSlice, RStr, RString, RVec};
use abi_stable::{StableAbi, declare_root_module_statics, package_version_strings, sabi_trait};

pub use self::stream::BatchStream;
#[cfg(feature = "arrow")]
pub use self::stream::ValidatedReader;
use crate::{
    Backend, Capabilities, CollectionInfo, ErrorCode, ExtractRequest, Hit, LoadRequest, LoadSummary, OpenRequest,
    Plugin, PluginError, PluginInfo, StorageReport,
};

pub use abi_stable;

/// The exported symbol abi_stable looks up (`abi_stable::library::ROOT_MODULE_LOADER_NAME`),
/// spelled out because `export_plugin!` must use a literal.
pub const ROOT_MODULE_SYMBOL: &str = "_1as_0lib_1header_0root_bmodule_bloader";

/// The target triple this crate (and so the plugin linking it) was compiled for.
pub const BUILD_TARGET: &str = env!("RAGGED_BUILD_TARGET");

/// A [`PluginError`] as it crosses the boundary.
#[repr(C)]
#[derive(StableAbi, Debug)]
pub struct FfiError {
    code: u32,
    message: RString,
    help: ROption<RString>,
}

impl From<PluginError> for FfiError {
    fn from(error: PluginError) -> FfiError {
        FfiError {
            code: error.code as u32,
            message: error.message.into(),
            help: error.help.map(RString::from).into(),
        }
    }
}

impl From<FfiError> for PluginError {
    fn from(error: FfiError) -> PluginError {
        PluginError {
            code: ErrorCode::from_u32(error.code),
            message: error.message.into(),
            help: error.help.map(String::from).into_option(),
        }
    }
}

/// A [`Hit`] as it crosses the boundary.
#[repr(C)]
#[derive(StableAbi)]
pub struct FfiHit {
    id: RString,
    distance: f32,
}

/// What a plugin library says about itself.
#[repr(C)]
#[derive(StableAbi)]
pub struct FfiPluginInfo {
    manifest_toml: RStr<'static>,
    plugin_version: RStr<'static>,
    build_target: RStr<'static>,
    capabilities: u64,
}

/// An open store behind the boundary. Descriptions travel as JSON so that optional fields can be
/// added in minor interface versions; records travel as Arrow C streams.
#[sabi_trait]
pub trait FfiStore: Send + Sync {
    fn list_collections(&self) -> RResult<RVec<RString>, FfiError>;
    fn describe(&self, collection: RStr<'_>) -> RResult<RString, FfiError>;
    fn count(&self, collection: RStr<'_>) -> RResult<u64, FfiError>;
    fn extract(&self, collection: RStr<'_>, request_json: RStr<'_>) -> RResult<BatchStream, FfiError>;
    fn load(&self, request_json: RStr<'_>, batches: BatchStream) -> RResult<RString, FfiError>;
    fn sample(&self, collection: RStr<'_>, n: u64, seed: u64) -> RResult<BatchStream, FfiError>;
    fn fetch(&self, collection: RStr<'_>, ids: RVec<RString>) -> RResult<BatchStream, FfiError>;
    fn query(&self, collection: RStr<'_>, vector: RSlice<'_, f32>, k: u32) -> RResult<RVec<FfiHit>, FfiError>;
    fn storage(&self, collection: RStr<'_>) -> RResult<RString, FfiError>;
    fn files(&self, collection: RStr<'_>) -> RResult<RVec<RString>, FfiError>;
    // Methods added in later 1.x versions go below this line, each with a default body.
    #[sabi(last_prefix_field)]
    fn drop_collection(&self, collection: RStr<'_>) -> RResult<(), FfiError>;
    /// Added in 1.1. Hosts refuse plugins built against an older minor (`host::interface_incompatibility`),
    /// so every loaded vtable has this entry.
    fn delete(&self, collection: RStr<'_>, ids: RVec<RString>) -> RResult<u64, FfiError>;
}

/// The boxed trait object a plugin hands to the host.
pub type FfiStoreBox = FfiStore_TO<'static, RBox<()>>;

/// The root module every plugin library exports.
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = PluginModuleRef)))]
#[sabi(missing_field(panic))]
pub struct PluginModule {
    pub info: extern "C" fn() -> FfiPluginInfo,
    // Fields added in later 1.x versions go below `open`; older plugins lack them.
    #[sabi(last_prefix_field)]
    pub open: extern "C" fn(request_json: RStr<'_>) -> RResult<FfiStoreBox, FfiError>,
}

impl RootModule for PluginModuleRef {
    declare_root_module_statics! {PluginModuleRef}
    const BASE_NAME: &'static str = "ragged_plugin";
    const NAME: &'static str = "ragged_plugin";
    // The version of this crate is the interface version.
    const VERSION_STRINGS: abi_stable::sabi_types::VersionStrings = package_version_strings!();
}

// ---------------------------------------------------------------------------------------------
// Producer: a plugin's `Backend` exported through the vtable.

/// The plugin-side data behind an [`FfiStoreBox`].
struct ExportedStore<B>(B);

impl<B: Backend> FfiStore for ExportedStore<B> {
    fn list_collections(&self) -> RResult<RVec<RString>, FfiError> {
        guard("list_collections", || {
            Ok(self.0.list_collections()?.into_iter().map(RString::from).collect())
        })
    }

    fn describe(&self, collection: RStr<'_>) -> RResult<RString, FfiError> {
        guard("describe", || to_json(&self.0.describe(collection.as_str())?))
    }

    fn count(&self, collection: RStr<'_>) -> RResult<u64, FfiError> {
        guard("count", || self.0.count(collection.as_str()))
    }

    fn extract(&self, collection: RStr<'_>, request_json: RStr<'_>) -> RResult<BatchStream, FfiError> {
        guard("extract", || {
            let request: ExtractRequest = from_json(request_json.as_str(), "extract request")?;
            self.0.extract(collection.as_str(), &request)
        })
    }

    fn load(&self, request_json: RStr<'_>, batches: BatchStream) -> RResult<RString, FfiError> {
        guard("load", || {
            let request: LoadRequest = from_json(request_json.as_str(), "load request")?;
            to_json(&self.0.load(&request, batches)?)
        })
    }

    fn sample(&self, collection: RStr<'_>, n: u64, seed: u64) -> RResult<BatchStream, FfiError> {
        guard("sample", || self.0.sample(collection.as_str(), n, seed))
    }

    fn fetch(&self, collection: RStr<'_>, ids: RVec<RString>) -> RResult<BatchStream, FfiError> {
        guard("fetch", || {
            let ids: Vec<String> = ids.into_iter().map(String::from).collect();
            self.0.fetch(collection.as_str(), &ids)
        })
    }

    fn query(&self, collection: RStr<'_>, vector: RSlice<'_, f32>, k: u32) -> RResult<RVec<FfiHit>, FfiError> {
        guard("query", || {
            let hits = self.0.query(collection.as_str(), vector.as_slice(), k)?;
            Ok(hits
                .into_iter()
                .map(|h| FfiHit {
                    id: h.id.into(),
                    distance: h.distance,
                })
                .collect())
        })
    }

    fn storage(&self, collection: RStr<'_>) -> RResult<RString, FfiError> {
        guard("storage", || to_json(&self.0.storage(collection.as_str())?))
    }

    fn files(&self, collection: RStr<'_>) -> RResult<RVec<RString>, FfiError> {
        guard("files", || {
            Ok(self
                .0
                .files(collection.as_str())?
                .into_iter()
                .map(RString::from)
                .collect())
        })
    }

    fn drop_collection(&self, collection: RStr<'_>) -> RResult<(), FfiError> {
        guard("drop_collection", || self.0.drop_collection(collection.as_str()))
    }

    fn delete(&self, collection: RStr<'_>, ids: RVec<RString>) -> RResult<u64, FfiError> {
        guard("delete", || {
            let ids: Vec<String> = ids.into_iter().map(String::from).collect();
            self.0.delete(collection.as_str(), &ids)
        })
    }
}

/// Wraps an opened store for the boundary.
pub fn export_store<B: Backend + 'static>(store: B) -> FfiStoreBox {
    FfiStore_TO::from_value(ExportedStore(store), TD_Opaque)
}

/// The `PluginModule::info` function for plugin `P`. `manifest_toml` and `plugin_version` come
/// from the plugin crate (see `export_plugin!`).
pub fn plugin_info<P: Plugin>(manifest_toml: &'static str, plugin_version: &'static str) -> FfiPluginInfo {
    FfiPluginInfo {
        manifest_toml: manifest_toml.into(),
        plugin_version: plugin_version.into(),
        build_target: BUILD_TARGET.into(),
        capabilities: P::CAPABILITIES.bits(),
    }
}

/// An info block for in-process tests, which have no `plugin.toml` to embed.
pub(crate) fn plugin_info_for_tests() -> FfiPluginInfo {
    FfiPluginInfo {
        manifest_toml: "".into(),
        plugin_version: "0.0.0".into(),
        build_target: BUILD_TARGET.into(),
        capabilities: 0,
    }
}

/// The `PluginModule::open` function for plugin `P`.
pub extern "C" fn open_store<P: Plugin>(request_json: RStr<'_>) -> RResult<FfiStoreBox, FfiError> {
    guard("open", || {
        let request: OpenRequest = from_json(request_json.as_str(), "open request")?;
        Ok(export_store(P::open(&request)?))
    })
}

/// Runs `operation`, turning a panic into [`ErrorCode::Panic`]: an unwind must never reach
/// abi_stable's shims, which abort the process.
fn guard<T>(operation: &str, f: impl FnOnce() -> Result<T, PluginError>) -> RResult<T, FfiError> {
    install_panic_hook();
    IN_GUARD.with(|depth| *depth.borrow_mut() += 1);
    let outcome = catch_unwind(AssertUnwindSafe(f));
    IN_GUARD.with(|depth| *depth.borrow_mut() -= 1);
    match outcome {
        Ok(Ok(value)) => RResult::ROk(value),
        Ok(Err(error)) => RResult::RErr(error.into()),
        Err(payload) => {
            let location = PANIC_LOCATION.with(|l| l.borrow_mut().take()).unwrap_or_default();
            let message = format!("plugin panicked in {operation}: {}{location}", panic_message(&*payload));
            RResult::RErr(PluginError::new(ErrorCode::Panic, message).into())
        }
    }
}

thread_local! {
    static IN_GUARD: RefCell<u32> = const { RefCell::new(0) };
    static PANIC_LOCATION: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Inside a guard, a panic is reported once, as the host's error, so the hook only records where
/// it happened; elsewhere the previous hook runs as usual.
fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if IN_GUARD.with(|depth| *depth.borrow() > 0) {
                let location = info.location().map(|l| format!(" at {}:{}", l.file(), l.line()));
                PANIC_LOCATION.with(|slot| *slot.borrow_mut() = location);
            } else {
                previous(info);
            }
        }));
    });
}

/// The text of a panic payload.
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<RString, PluginError> {
    serde_json::to_string(value)
        .map(RString::from)
        .map_err(|e| PluginError::new(ErrorCode::Internal, format!("cannot encode reply: {e}")))
}

fn from_json<T: serde::de::DeserializeOwned>(json: &str, what: &str) -> Result<T, PluginError> {
    serde_json::from_str(json).map_err(|e| {
        PluginError::new(
            ErrorCode::Incompatible,
            format!("malformed {what} from the other side: {e}"),
        )
    })
}

// ---------------------------------------------------------------------------------------------
// Consumer: a `Backend` that calls a store through the vtable.

/// A store opened through a plugin's root module (or an in-process export, in tests).
pub struct ForeignStore {
    inner: FfiStoreBox,
}

impl ForeignStore {
    /// Opens a store through a module's `open` function.
    pub fn open(module: PluginModuleRef, request: &OpenRequest) -> Result<ForeignStore, PluginError> {
        let json = serde_json::to_string(request)
            .map_err(|e| PluginError::new(ErrorCode::Internal, format!("cannot encode open request: {e}")))?;
        let inner = (module.open())(RStr::from_str(&json)).into_result()?;
        Ok(ForeignStore { inner })
    }
}

fn reply<T>(result: RResult<T, FfiError>) -> Result<T, PluginError> {
    result.into_result().map_err(PluginError::from)
}

fn reply_json<T: serde::de::DeserializeOwned>(
    result: RResult<RString, FfiError>,
    what: &str,
) -> Result<T, PluginError> {
    from_json(reply(result)?.as_str(), what)
}

impl Backend for ForeignStore {
    fn list_collections(&self) -> Result<Vec<String>, PluginError> {
        Ok(reply(self.inner.list_collections())?
            .into_iter()
            .map(String::from)
            .collect())
    }

    fn describe(&self, collection: &str) -> Result<CollectionInfo, PluginError> {
        reply_json(self.inner.describe(collection.into()), "collection description")
    }

    fn count(&self, collection: &str) -> Result<u64, PluginError> {
        reply(self.inner.count(collection.into()))
    }

    fn extract(&self, collection: &str, request: &ExtractRequest) -> Result<BatchStream, PluginError> {
        let json = to_json(request)?;
        reply(self.inner.extract(collection.into(), json.as_rstr()))
    }

    fn load(&self, request: &LoadRequest, batches: BatchStream) -> Result<LoadSummary, PluginError> {
        let json = to_json(request)?;
        reply_json(self.inner.load(json.as_rstr(), batches), "load summary")
    }

    fn sample(&self, collection: &str, n: u64, seed: u64) -> Result<BatchStream, PluginError> {
        reply(self.inner.sample(collection.into(), n, seed))
    }

    fn fetch(&self, collection: &str, ids: &[String]) -> Result<BatchStream, PluginError> {
        let ids: RVec<RString> = ids.iter().map(|id| RString::from(id.as_str())).collect();
        reply(self.inner.fetch(collection.into(), ids))
    }

    fn query(&self, collection: &str, vector: &[f32], k: u32) -> Result<Vec<Hit>, PluginError> {
        let hits = reply(self.inner.query(collection.into(), vector.into(), k))?;
        Ok(hits
            .into_iter()
            .map(|h| Hit {
                id: h.id.into(),
                distance: h.distance,
            })
            .collect())
    }

    fn storage(&self, collection: &str) -> Result<StorageReport, PluginError> {
        reply_json(self.inner.storage(collection.into()), "storage report")
    }

    fn files(&self, collection: &str) -> Result<Vec<String>, PluginError> {
        Ok(reply(self.inner.files(collection.into()))?
            .into_iter()
            .map(String::from)
            .collect())
    }

    fn drop_collection(&self, collection: &str) -> Result<(), PluginError> {
        reply(self.inner.drop_collection(collection.into()))
    }

    fn delete(&self, collection: &str, ids: &[String]) -> Result<u64, PluginError> {
        let ids: RVec<RString> = ids.iter().map(|id| RString::from(id.as_str())).collect();
        reply(self.inner.delete(collection.into(), ids))
    }
}

/// Reads a module's self-description.
pub fn read_info(module: PluginModuleRef, interface_version: &str) -> PluginInfo {
    let info = (module.info())();
    PluginInfo {
        manifest_toml: info.manifest_toml.to_string(),
        plugin_version: info.plugin_version.to_string(),
        interface_version: interface_version.to_owned(),
        build_target: info.build_target.to_string(),
        capabilities: Capabilities::from_bits(info.capabilities),
    }
}

/// Builds the root module of plugin `P`; called once per library by abi_stable.
pub fn root_module<P: Plugin>(info: extern "C" fn() -> FfiPluginInfo) -> PluginModuleRef {
    use abi_stable::prefix_type::PrefixTypeTrait;
    PluginModule {
        info,
        open: open_store::<P>,
    }
    .leak_into_prefix()
}

/// The header abi_stable finds under [`ROOT_MODULE_SYMBOL`]; `constructor` must build a
/// [`PluginModuleRef`], as the one `export_plugin!` generates does.
pub const fn lib_header(
    constructor: extern "C" fn() -> abi_stable::library::RootModuleResult,
) -> abi_stable::library::LibHeader {
    // SAFETY: `constructor` returns the erased `PrefixRef` of a `PluginModuleRef` (it is only
    // ever `__ragged_plugin_root` from `export_plugin!`, which calls `root_module`), which is what
    // `from_constructor::<PluginModuleRef>` requires.
    unsafe {
        abi_stable::library::LibHeader::from_constructor::<PluginModuleRef>(
            constructor,
            abi_stable::library::CheckTypeLayout::Yes,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_module_symbol_matches_abi_stable() {
        assert_eq!(ROOT_MODULE_SYMBOL, abi_stable::library::ROOT_MODULE_LOADER_NAME);
    }

    #[test]
    fn error_codes_survive_the_boundary() {
        let original = PluginError::new(ErrorCode::Corrupt, "header.bin: truncated").with_help("restore a backup");
        let back = PluginError::from(FfiError::from(original.clone()));
        assert_eq!(back, original);
        let unknown = FfiError {
            code: 999,
            message: "x".into(),
            help: ROption::RNone,
        };
        assert_eq!(PluginError::from(unknown).code, ErrorCode::Internal);
    }

    #[test]
    fn guard_turns_a_panic_into_an_error_with_its_location() {
        let result: RResult<u32, FfiError> = guard("count", || panic!("boom at record 7"));
        let error = PluginError::from(result.into_result().expect_err("a panic must become an error"));
        assert_eq!(error.code, ErrorCode::Panic);
        assert!(
            error.message.contains("plugin panicked in count: boom at record 7"),
            "{}",
            error.message
        );
        assert!(error.message.contains("mod.rs"), "location missing: {}", error.message);
    }
}
