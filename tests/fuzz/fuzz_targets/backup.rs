//! A backup archive (a tar of `files/NUMBER` entries and `MANIFEST.json`), checked as a rollback
//! checks it before restoring. Input: the uncompressed tar, zstd-compressed here (the parsers
//! under test are the tar reading, the manifest and the path checks, not zstd's decoder).
#![no_main]

use libfuzzer_sys::fuzz_target;
use ragged_fuzz::{scratch, unexpected_entries, write};

fuzz_target!(|data: &[u8]| {
    let dir = scratch();
    let compressed = zstd::encode_all(data, 1).expect("compressing in memory");
    let archive = write(dir.path(), "backup.tar.zst", &compressed);
    let _ = ragged::fuzzing::backup(&archive);
    // Staging is removed, and nothing was written beside the archive or above it.
    let left = unexpected_entries(dir.path(), &["backup.tar.zst"]);
    assert!(left.is_empty(), "a backup check left {left:?} beside the archive");
});
