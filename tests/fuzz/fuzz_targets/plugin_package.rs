//! A plugin package (`.tar.zst` of `<name>/plugin.toml` and `<name>/<library>`), installed into a
//! scratch plugin directory. Input: the uncompressed tar, zstd-compressed here. Whatever the
//! archive says, nothing may land outside the plugin directory, and a refused package leaves the
//! plugin directory empty.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ragged::plugin_manager::package::install;
use ragged_fuzz::{scratch, unexpected_entries, write};

fuzz_target!(|data: &[u8]| {
    let dir = scratch();
    let compressed = zstd::encode_all(data, 1).expect("compressing in memory");
    let package = write(dir.path(), "package.tar.zst", &compressed);
    let plugin_dir = dir.path().join("plugins");
    let installed = install(&package, &plugin_dir, false);
    let escaped = unexpected_entries(dir.path(), &["package.tar.zst", "plugins"]);
    assert!(
        escaped.is_empty(),
        "install wrote {escaped:?} outside the plugin directory"
    );
    match installed {
        Ok(report) => assert_eq!(report.dir.parent(), Some(plugin_dir.as_path())),
        Err(_) => {
            let left = unexpected_entries(&plugin_dir, &[]);
            assert!(
                left.is_empty(),
                "a refused package left {left:?} in the plugin directory"
            );
        }
    }
});
