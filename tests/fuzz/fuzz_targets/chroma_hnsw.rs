//! Chroma's HNSW segment files: `header.bin`, `data_level0.bin` (labels, delete marks, vectors)
//! and `length.bin`. Input: byte 0 the dimension, byte 1 odd for a cosine collection, then the
//! three files as sections.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ragged_fuzz::{scratch, sections, write};
use ragged_plugin_chroma::hnsw::Level0;

fuzz_target!(|data: &[u8]| {
    let [dimension, cosine, ref files @ ..] = *data else {
        return;
    };
    let [header, level0, lengths] = sections(files, 3)[..] else {
        return;
    };
    let dir = scratch();
    write(dir.path(), "header.bin", header);
    write(dir.path(), "data_level0.bin", level0);
    write(dir.path(), "length.bin", lengths);
    let Ok(segment) = Level0::open(dir.path(), usize::from(dimension), cosine % 2 == 1) else {
        return;
    };
    let _ = segment.for_each_live(|internal, _label| {
        let _ = segment.vector(internal);
    });
});
