//! `protoc` for the builds xtask runs: lancedb's crates compile Protocol Buffers in their build
//! scripts and need `protoc` plus the well-known `.proto` files (`google/protobuf/any.proto`, ...).
//! A system protoc is used when there is one; otherwise the binary and includes shipped by the
//! `protoc-bin-vendored` crate, so a fresh machine builds with no manual step.

use std::path::PathBuf;
use std::process::Command;

/// Points `PROTOC` (and `PROTOC_INCLUDE`) of `command` at a usable protoc, unless the caller set
/// `PROTOC` already or one is on `PATH`.
pub(crate) fn configure(command: &mut Command) {
    if std::env::var_os("PROTOC").is_some() || on_path("protoc") {
        return;
    }
    match (
        protoc_bin_vendored::protoc_bin_path(),
        protoc_bin_vendored::include_path(),
    ) {
        (Ok(protoc), Ok(include)) => {
            command.env("PROTOC", protoc);
            if std::env::var_os("PROTOC_INCLUDE").is_none() {
                command.env("PROTOC_INCLUDE", include);
            }
        }
        // No vendored binary for this platform: the build scripts will say protoc is missing.
        (Err(error), _) | (_, Err(error)) => eprintln!("xtask: no protoc on PATH and {error}"),
    }
}

/// Whether an executable called `name` is on `PATH`.
fn on_path(name: &str) -> bool {
    let file = format!("{name}{}", std::env::consts::EXE_SUFFIX);
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir: PathBuf| dir.join(&file).is_file()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_vendored_protoc_has_the_well_known_protos() {
        let include = protoc_bin_vendored::include_path().expect("a vendored protoc for this platform");
        for name in ["any", "empty", "timestamp"] {
            assert!(
                include.join(format!("google/protobuf/{name}.proto")).is_file(),
                "{name}.proto"
            );
        }
        assert!(protoc_bin_vendored::protoc_bin_path().expect("binary").is_file());
    }
}
