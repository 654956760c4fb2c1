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
pub use arrow_conversions::ValidatedReader;

#[cfg(feature = "arrow")]
mod arrow_conversions {
    use std::ffi::CStr;
    use std::panic::{AssertUnwindSafe, catch_unwind};
    use std::sync::Arc;

    use arrow_array::ffi::{FFI_ArrowArray, FFI_ArrowSchema, from_ffi_and_data_type};
    use arrow_array::ffi_stream::{ArrowArrayStreamReader, FFI_ArrowArrayStream};
    use arrow_array::{RecordBatch, RecordBatchIterator, RecordBatchOptions, RecordBatchReader, StructArray};
    use arrow_schema::{ArrowError, DataType, Schema, SchemaRef};

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

        /// Imports the stream like [`into_reader`](Self::into_reader), but validates each batch's
        /// buffers (`ArrayData::validate_full`) before any array is built on them. arrow-rs
        /// imports without checks, and panics or reads out of bounds on a batch that does not
        /// match the announced schema; a consumer that does not trust the producer (the host
        /// reading a plugin) gets an error instead.
        pub fn into_validated_reader(self) -> Result<ValidatedReader, ArrowError> {
            // SAFETY: see `from_reader`; the value is moved, so `Drop` does not run on `self`.
            let mut stream = unsafe { std::mem::transmute::<BatchStream, FFI_ArrowArrayStream>(self) };
            let get_schema = stream
                .get_schema
                .ok_or_else(|| ArrowError::CDataInterface("the stream is already released".into()))?;
            let mut schema = FFI_ArrowSchema::empty();
            // SAFETY: the stream is live (it has its callbacks) and `schema` is a valid out-pointer.
            let code = unsafe { get_schema(&mut stream, &mut schema) };
            if code != 0 {
                return Err(ArrowError::CDataInterface(last_error(&mut stream, code)));
            }
            let schema = Arc::new(Schema::try_from(&schema)?);
            Ok(ValidatedReader { stream, schema })
        }
    }

    /// An imported stream whose batches are validated before use; see
    /// [`BatchStream::into_validated_reader`].
    pub struct ValidatedReader {
        stream: FFI_ArrowArrayStream,
        schema: SchemaRef,
    }

    impl Iterator for ValidatedReader {
        type Item = Result<RecordBatch, ArrowError>;

        fn next(&mut self) -> Option<Self::Item> {
            let get_next = self.stream.get_next?;
            let mut array = FFI_ArrowArray::empty();
            // SAFETY: the stream is live until `FFI_ArrowArrayStream`'s drop releases it, and
            // `array` is a valid out-pointer.
            let code = unsafe { get_next(&mut self.stream, &mut array) };
            if code != 0 {
                return Some(Err(ArrowError::CDataInterface(last_error(&mut self.stream, code))));
            }
            if array.is_released() {
                return None;
            }
            let fields = self.schema.fields().clone();
            // SAFETY: `array` came from this stream, which the C stream interface promises is in
            // its announced schema. Only its layout is trusted: the buffers are validated below,
            // before any array is built on them.
            let data = unsafe { from_ffi_and_data_type(array, DataType::Struct(fields)) };
            Some(data.and_then(|data| {
                // Column by column first, so the error names the column.
                for (field, column) in self.schema.fields().iter().zip(data.child_data()) {
                    column.validate_full().map_err(|error| {
                        ArrowError::InvalidArgumentError(format!("column '{}' is malformed: {error}", field.name()))
                    })?;
                }
                data.validate()?;
                // Nullability is checked by `try_new_with_options`, naming the column.
                let rows = data.len();
                RecordBatch::try_new_with_options(
                    self.schema.clone(),
                    StructArray::from(data).into_parts().1,
                    &RecordBatchOptions::new().with_row_count(Some(rows)),
                )
            }))
        }
    }

    impl RecordBatchReader for ValidatedReader {
        fn schema(&self) -> SchemaRef {
            self.schema.clone()
        }
    }

    /// The producer's message for the failure `code` of its last call.
    fn last_error(stream: &mut FFI_ArrowArrayStream, code: i32) -> String {
        let message = stream.get_last_error.and_then(|get_last_error| {
            // SAFETY: the stream is live, and the C stream interface lets the consumer ask for
            // the last error right after a failed call; the text stays valid until the next call.
            let text = unsafe { get_last_error(stream) };
            // SAFETY: a non-null result is a NUL-terminated string owned by the stream.
            (!text.is_null()).then(|| unsafe { CStr::from_ptr(text) }.to_string_lossy().into_owned())
        });
        message.unwrap_or_else(|| format!("the stream failed with error code {code}"))
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
