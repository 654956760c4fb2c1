//! `backend.toml`: migration settings, named stores and personas.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ragged::config::Config;
use ragged_fuzz::{scratch, write};

fuzz_target!(|data: &[u8]| {
    let dir = scratch();
    let Ok(config) = Config::load(&write(dir.path(), "backend.toml", data)) else {
        return;
    };
    for name in config.stores.keys() {
        config.resolve_store(name).expect("a configured store resolves");
    }
    for name in config.personas.keys() {
        let _ = (config.persona_collections(name), config.current_store(Some(name)));
    }
    if let Some(store) = &config.default_store {
        let _ = config.resolve_store(store);
    }
});
