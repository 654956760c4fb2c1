//! A migration's `run.json` (its plan and checkpoint), as `--resume` and `backups` read it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ragged::runs::Run;
use ragged_fuzz::{scratch, write};

fuzz_target!(|data: &[u8]| {
    let dir = scratch();
    if let Ok(mut run) = Run::load(&write(dir.path(), "run.json", data)) {
        let names: Vec<String> = run.collections.iter().map(|(name, _)| name.clone()).collect();
        for name in names {
            run.progress_mut(&name).expect("a listed collection has progress");
        }
    }
});
