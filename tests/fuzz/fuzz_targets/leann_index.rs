//! LEANN's `NAME.index` (faiss `IndexHNSWFlat` in its three shapes): the graph and the stored
//! vectors.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ragged_fuzz::{scratch, write};

fuzz_target!(|data: &[u8]| {
    let dir = scratch();
    let _ = ragged_plugin_leann::fuzzing::index_file(&write(dir.path(), "documents.index", data));
});
