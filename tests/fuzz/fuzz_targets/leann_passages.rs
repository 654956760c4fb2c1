//! LEANN's `NAME.leann.passages.jsonl` (scanned for offsets, then read line by line) and
//! `NAME.ids.txt`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ragged_fuzz::{scratch, write};

fuzz_target!(|data: &[u8]| {
    let dir = scratch();
    let _ = ragged_plugin_leann::fuzzing::passages(&write(dir.path(), "documents.leann.passages.jsonl", data));
    let _ = ragged_plugin_leann::fuzzing::ids(&write(dir.path(), "documents.ids.txt", data));
});
