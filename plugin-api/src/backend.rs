//! The safe traits a plugin author implements.

use crate::{
    BatchStream, Capabilities, CollectionInfo, ExtractRequest, Hit, LoadRequest, LoadSummary, OpenRequest, PluginError,
    StorageReport,
};

/// An open store. Every operation names the collection it works on.
///
/// Batches cross as [`BatchStream`]s in the canonical schema (see the crate docs). Optional
/// operations default to [`crate::ErrorCode::Unsupported`]; declare what you implement in
/// [`Plugin::CAPABILITIES`].
pub trait Backend: Send + Sync {
    /// The names of the collections in the store, sorted.
    fn list_collections(&self) -> Result<Vec<String>, PluginError>;

    /// The description of one collection, with its current record count.
    fn describe(&self, collection: &str) -> Result<CollectionInfo, PluginError>;

    /// The number of records in a collection.
    fn count(&self, collection: &str) -> Result<u64, PluginError> {
        Ok(self.describe(collection)?.count)
    }

    /// Every record of a collection, in an order that is the same on every call for an unchanged
    /// store, starting `request.start` records in.
    fn extract(&self, collection: &str, request: &ExtractRequest) -> Result<BatchStream, PluginError>;

    /// Writes a stream of batches; see [`LoadRequest`] for the id-keyed semantics.
    fn load(&self, request: &LoadRequest, batches: BatchStream) -> Result<LoadSummary, PluginError> {
        let _ = (request, batches);
        Err(PluginError::unsupported("load"))
    }

    /// `n` records chosen at random with `seed`: the same seed gives the same records.
    fn sample(&self, collection: &str, n: u64, seed: u64) -> Result<BatchStream, PluginError> {
        let _ = (collection, n, seed);
        Err(PluginError::unsupported("sample"))
    }

    /// The records with these ids, in the order asked; ids that do not exist are left out.
    fn fetch(&self, collection: &str, ids: &[String]) -> Result<BatchStream, PluginError> {
        let _ = (collection, ids);
        Err(PluginError::unsupported("fetch"))
    }

    /// The `k` records nearest to `vector`, closest first.
    fn query(&self, collection: &str, vector: &[f32], k: u32) -> Result<Vec<Hit>, PluginError> {
        let _ = (collection, vector, k);
        Err(PluginError::unsupported("query"))
    }

    /// The bytes the collection occupies, measured from its files.
    fn storage(&self, collection: &str) -> Result<StorageReport, PluginError> {
        let _ = collection;
        Err(PluginError::unsupported("storage"))
    }

    /// Absolute paths of the files and directories that make up the collection, for backups.
    fn files(&self, collection: &str) -> Result<Vec<String>, PluginError> {
        let _ = collection;
        Err(PluginError::unsupported("files"))
    }

    /// Removes the collection and its files.
    fn drop_collection(&self, collection: &str) -> Result<(), PluginError> {
        let _ = collection;
        Err(PluginError::unsupported("drop_collection"))
    }

    /// Removes the records with these ids and returns how many existed; ids that do not exist are
    /// ignored. When it returns, the removal is durable. Added in interface 1.1.
    fn delete(&self, collection: &str, ids: &[String]) -> Result<u64, PluginError> {
        let _ = (collection, ids);
        Err(PluginError::unsupported("delete"))
    }
}

/// The entry point of a plugin: what it can do and how to open a store. Export it with
/// [`crate::export_plugin!`].
pub trait Plugin: Backend + Sized + 'static {
    /// The operations this plugin implements.
    const CAPABILITIES: Capabilities;

    /// Opens (or, with [`crate::Access::ReadWrite`], creates) the store at `request.location`.
    fn open(request: &OpenRequest) -> Result<Self, PluginError>;
}
