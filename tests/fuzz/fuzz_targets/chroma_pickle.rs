//! Chroma's `index_metadata.pickle` (the id-to-label map of a vector segment).
#![no_main]

use libfuzzer_sys::fuzz_target;
use ragged_fuzz::{scratch, write};
use ragged_plugin_chroma::ids::Ids;
use ragged_plugin_chroma::pickle::{FILE, read_id_to_label};

fuzz_target!(|data: &[u8]| {
    let dir = scratch();
    let _ = read_id_to_label(&write(dir.path(), FILE, data), &mut Ids::default());
});
