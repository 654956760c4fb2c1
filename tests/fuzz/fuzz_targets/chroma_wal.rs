//! Chroma's write-ahead log rows: the `metadata` JSON (chroma's own number rules) and the
//! `FLOAT32` vector blob. Input: byte 0 the dimension, then the metadata text and the blob as
//! sections.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ragged_fuzz::sections;
use ragged_plugin_chroma::value::{Metadata, metadata_to_json};
use ragged_plugin_chroma::wal::{apply_update, cosine_round_trip, decode_vector, parse_metadata};

fuzz_target!(|data: &[u8]| {
    let [dimension, ref rest @ ..] = *data else { return };
    let [text, blob] = sections(rest, 2)[..] else { return };
    if let Ok(text) = std::str::from_utf8(text)
        && let Ok(update) = parse_metadata(text)
    {
        let mut metadata = Metadata::new();
        apply_update(&mut metadata, &update);
        let _ = metadata_to_json(&metadata);
    }
    if let Ok(mut vector) = decode_vector(blob, usize::from(dimension)) {
        cosine_round_trip(&mut vector);
    }
});
