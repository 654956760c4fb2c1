//! LEANN's `NAME.leann.meta.json`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ragged_fuzz::{scratch, write};

fuzz_target!(|data: &[u8]| {
    let dir = scratch();
    let _ = ragged_plugin_leann::fuzzing::meta(&write(dir.path(), "documents.leann.meta.json", data), "documents");
});
