//! The plugin's own tokio runtime and the bridges between lancedb's async API and the synchronous
//! plugin interface: `block_on`, a blocking `RecordBatchReader` over an async stream, and the
//! mapping of lancedb errors to plugin error codes.

use std::sync::OnceLock;

use arrow_array::{RecordBatch, RecordBatchReader};
use arrow_schema::{ArrowError, SchemaRef};
use futures::StreamExt;
use lancedb::arrow::SendableRecordBatchStream;
use ragged_plugin_api::{ErrorCode, PluginError};
use tokio::runtime::Runtime;
use tokio::task::JoinHandle;

/// The runtime every lancedb call runs on. A cdylib cannot share the host's tokio (separate
/// statics), so the plugin owns one for the life of the process; it is never dropped.
fn runtime() -> Result<&'static Runtime, PluginError> {
    static RUNTIME: OnceLock<Result<Runtime, String>> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("ragged-lance")
                .enable_all()
                .build()
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| PluginError::new(ErrorCode::Internal, format!("cannot start the lance runtime: {e}")))
}

/// Runs a future to completion on the plugin runtime.
pub(crate) fn block_on<F: Future>(future: F) -> Result<F::Output, PluginError> {
    Ok(runtime()?.block_on(future))
}

/// Starts a future on the plugin runtime; `block_on` its handle waits for the output.
pub(crate) fn spawn<F>(future: F) -> Result<JoinHandle<F::Output>, PluginError>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    Ok(runtime()?.spawn(future))
}

/// A lancedb stream read synchronously, one batch per `next()`, with a conversion applied to every
/// batch. Memory stays bounded by what lancedb buffers ahead.
pub(crate) struct BlockingReader<F> {
    schema: SchemaRef,
    inner: SendableRecordBatchStream,
    convert: F,
}

impl<F> BlockingReader<F>
where
    F: FnMut(RecordBatch) -> Result<RecordBatch, PluginError>,
{
    /// A reader announcing `schema` whose batches come from `inner` through `convert`.
    pub(crate) fn new(schema: SchemaRef, inner: SendableRecordBatchStream, convert: F) -> Self {
        BlockingReader { schema, inner, convert }
    }
}

impl<F> Iterator for BlockingReader<F>
where
    F: FnMut(RecordBatch) -> Result<RecordBatch, PluginError>,
{
    type Item = Result<RecordBatch, ArrowError>;

    fn next(&mut self) -> Option<Self::Item> {
        let next = match runtime() {
            Ok(runtime) => runtime.block_on(self.inner.next()),
            Err(error) => return Some(Err(ArrowError::ExternalError(Box::new(error)))),
        };
        Some(match next? {
            Ok(batch) => (self.convert)(batch).map_err(|e| ArrowError::ExternalError(Box::new(e))),
            Err(error) => Err(ArrowError::ExternalError(Box::new(error))),
        })
    }
}

impl<F> RecordBatchReader for BlockingReader<F>
where
    F: FnMut(RecordBatch) -> Result<RecordBatch, PluginError>,
{
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }
}

/// A lancedb error as a plugin error, with `context` (which names the table or directory) first.
pub(crate) fn lance_error(context: &str, error: lancedb::Error) -> PluginError {
    let code = match &error {
        lancedb::Error::TableNotFound { .. } | lancedb::Error::DatabaseNotFound { .. } => ErrorCode::NotFound,
        lancedb::Error::TableAlreadyExists { .. } => ErrorCode::AlreadyExists,
        lancedb::Error::InvalidInput { .. }
        | lancedb::Error::InvalidTableName { .. }
        | lancedb::Error::Schema { .. }
        | lancedb::Error::ColumnNotFound { .. } => ErrorCode::InvalidInput,
        lancedb::Error::TableCorrupted { .. } => ErrorCode::Corrupt,
        lancedb::Error::CreateDir { .. } | lancedb::Error::ObjectStore { .. } => ErrorCode::Io,
        _ => ErrorCode::Internal,
    };
    PluginError::new(code, format!("{context}: {}", lowercase_first(&error.to_string())))
}

/// Messages are lowercase by the interface's convention; lancedb's start with a capital.
fn lowercase_first(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_keep_their_meaning_and_context() {
        let error = lance_error(
            "table 'docs' in /tmp/db",
            lancedb::Error::TableAlreadyExists { name: "docs".into() },
        );
        assert_eq!(error.code, ErrorCode::AlreadyExists);
        assert_eq!(error.message, "table 'docs' in /tmp/db: table 'docs' already exists");
    }

    #[test]
    fn block_on_runs_futures() {
        assert_eq!(block_on(async { 40 + 2 }).expect("runtime"), 42);
    }
}
