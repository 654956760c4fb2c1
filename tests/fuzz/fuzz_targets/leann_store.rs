//! A whole LEANN index as the store opens it: meta, `.index`, `ids.txt`, passages and their offset
//! pickle, checked against each other, every record read and a query run. Input: the five files as
//! sections, in that order.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ragged_fuzz::{scratch, sections, write};

const FILES: [&str; 5] = [
    "documents.leann.meta.json",
    "documents.index",
    "documents.ids.txt",
    "documents.leann.passages.jsonl",
    "documents.leann.passages.idx",
];

fuzz_target!(|data: &[u8]| {
    let root = scratch();
    let dir = root.path().join(".leann/indexes/docs");
    for (name, bytes) in FILES.iter().zip(sections(data, FILES.len())) {
        // An empty section stands for a missing file (ids.txt and the pickle are optional).
        if !bytes.is_empty() {
            write(&dir, name, bytes);
        }
    }
    let _ = ragged_plugin_leann::fuzzing::index(root.path(), "docs");
});
