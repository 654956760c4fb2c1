//! LEANN's `NAME.leann.passages.idx` (a pickled dict of passage id to byte offset).
#![no_main]

use libfuzzer_sys::fuzz_target;
use ragged_fuzz::{scratch, write};

fuzz_target!(|data: &[u8]| {
    let dir = scratch();
    let _ = ragged_plugin_leann::fuzzing::offsets(&write(dir.path(), "documents.leann.passages.idx", data));
});
