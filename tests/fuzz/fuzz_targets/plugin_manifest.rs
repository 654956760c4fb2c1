//! `plugin.toml`, in its source form (embedded in a library) and its installed form.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ragged::plugin_manager::manifest::{Manifest, SourceManifest};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = SourceManifest::parse(text);
    if let Ok(manifest) = Manifest::parse(text) {
        let _ = (manifest.capability_set(), manifest.incompatibility());
        // What install writes back must parse again.
        Manifest::parse(&manifest.to_toml()).expect("a parsed manifest written back parses");
    }
});
