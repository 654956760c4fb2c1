//! `BatchStream`: an Arrow C stream (the Arrow C Stream Interface) that is safe to pass through
//! abi_stable, without this crate depending on arrow.
//!
//! The struct mirrors `struct ArrowArrayStream` from the Arrow C data interface field by field,
//! so arrow-rs's `FFI_ArrowArrayStream` of any arrow version has the same layout and converts by
//! a move. Ownership moves with the value; dropping an unconsumed stream releases it.

use std::ffi::{c_char, c_int, c_void};

use abi_stable::StableAbi;

/// An Arrow C stream of record batches in the canonical schema.
#[repr(C)]
#[derive(StableAbi)]
pub struct BatchStream {
    get_schema: Option<unsafe extern "C" fn(*mut c_void, *mut c_void) -> c_int>,
    get_next: Option<unsafe extern "C" fn(*mut c_void, *mut c_void) -> c_int>,
    get_last_error: Option<unsafe extern "C" fn(*mut c_void) -> *const c_char>,
    release: Option<unsafe extern "C" fn(*mut c_void)>,
    private_data: *mut c_void,
}

// SAFETY: the Arrow C stream contract lets a stream move between threads; it only forbids
// concurrent calls, which `&mut`/by-value use of `BatchStream` already rules out.
unsafe impl Send for BatchStream {}

impl Drop for BatchStream {
    fn drop(&mut self) {
        if let Some(release) = self.release {
            // SAFETY: `release` belongs to the producer of this stream and is called at most once:
            // conversions out of `BatchStream` take it by value and forget it.
            unsafe { release(self as *mut BatchStream as *mut c_void) }
        }
    }
}

#[cfg(feature = "arrow")]
mod arrow_conversions {
    use std::panic::{AssertUnwindSafe, catch_unwind};

    use arrow_array::ffi_stream::{ArrowArrayStreamReader, FFI_ArrowArrayStream};
    use arrow_array::{RecordBatch, RecordBatchIterator, RecordBatchReader};
    use arrow_schema::{ArrowError, SchemaRef};

    use super::BatchStream;
    use crate::ffi::panic_message;

    // A compile-time check that the mirror and arrow-rs's struct have the same size; `transmute`
    // below would not compile otherwise either, this just says why.
    const _: () = assert!(std::mem::size_of::<BatchStream>() == std::mem::size_of::<FFI_ArrowArrayStream>());

    impl BatchStream {
        /// Exports a reader. A panic inside the reader becomes an Arrow error on the consumer's
        /// side instead of an abort.
        pub fn from_reader(reader: impl RecordBatchReader + Send + 'static) -> BatchStream {
            let guarded = PanicGuardedReader {
                inner: Box::new(reader),
                poisoned: false,
            };
            let stream = FFI_ArrowArrayStream::new(Box::new(guarded));
            // SAFETY: both types are `repr(C)` with the fields of the C `ArrowArrayStream` in the
            // same order, sizes and nullability; moving it is explicitly allowed by the C spec.
            unsafe { std::mem::transmute::<FFI_ArrowArrayStream, BatchStream>(stream) }
        }

        /// Exports batches held in memory.
        pub fn from_batches(schema: SchemaRef, batches: Vec<RecordBatch>) -> BatchStream {
            BatchStream::from_reader(RecordBatchIterator::new(batches.into_iter().map(Ok), schema))
        }

        /// Imports the stream as an arrow-rs reader (which validates the schema it announces).
        pub fn into_reader(self) -> Result<ArrowArrayStreamReader, ArrowError> {
            // SAFETY: see `from_reader`; the value is moved, so `Drop` does not run on `self`.
            let stream = unsafe { std::mem::transmute::<BatchStream, FFI_ArrowArrayStream>(self) };
            ArrowArrayStreamReader::try_new(stream)
        }
    }

    /// Turns panics of the wrapped reader into errors: an unwind out of arrow's `extern "C"`
    /// callbacks would abort the whole process.
    struct PanicGuardedReader {
        inner: Box<dyn RecordBatchReader + Send>,
        poisoned: bool,
    }

    impl Iterator for PanicGuardedReader {
        type Item = Result<RecordBatch, ArrowError>;

        fn next(&mut self) -> Option<Self::Item> {
            if self.poisoned {
                return None;
            }
            match catch_unwind(AssertUnwindSafe(|| self.inner.next())) {
                Ok(item) => item.map(|r| r.map_err(sanitize_error)),
                Err(payload) => {
                    self.poisoned = true;
                    let message = panic_message(&*payload);
                    Some(Err(ArrowError::ExternalError(
                        format!("plugin panicked: {message}").into(),
                    )))
                }
            }
        }
    }

    impl RecordBatchReader for PanicGuardedReader {
        fn schema(&self) -> SchemaRef {
            self.inner.schema()
        }
    }

    /// arrow-rs's exporter panics on messages containing NUL; keep them out.
    fn sanitize_error(error: ArrowError) -> ArrowError {
        let text = error.to_string();
        if text.contains('\0') {
            ArrowError::ExternalError(text.replace('\0', "\\0").into())
        } else {
            error
        }
    }
}
