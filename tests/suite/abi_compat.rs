//! A plugin built against an incompatible interface version is refused with a message naming both
//! versions and the fix, at packaging, at install and at load; the host keeps working.

use std::path::Path;

use ragged_tests::{TestEnv, build_out_of_tree, workspace_root};

/// Copies the interface crate with its version changed to `version`.
fn interface_copy(version: &str, dest: &Path) {
    let source = workspace_root().join("plugin-api");
    for relative in ["build.rs", "src"] {
        copy_tree(&source.join(relative), &dest.join(relative));
    }
    let manifest = std::fs::read_to_string(source.join("Cargo.toml")).unwrap();
    // The copy is its own workspace: pin the dependencies the original inherits.
    let manifest = manifest
        .replace("version = \"1.1.0\"", &format!("version = \"{version}\""))
        .replace("edition.workspace = true", "edition = \"2024\"")
        .replace("rust-version.workspace = true", "")
        .replace("license.workspace = true", "")
        .replace(
            "abi_stable.workspace = true",
            "abi_stable = { version = \"0.11.3\", default-features = false }",
        )
        .replace(
            "serde.workspace = true",
            "serde = { version = \"1\", features = [\"derive\"] }",
        )
        .replace(
            "serde_json.workspace = true",
            "serde_json = { version = \"1\", features = [\"float_roundtrip\"] }",
        )
        .replace("thiserror.workspace = true", "thiserror = \"2\"")
        .replace(
            "arrow-array = { workspace = true, optional = true }",
            "arrow-array = { version = \"58\", features = [\"ffi\"], optional = true }",
        )
        .replace(
            "arrow-schema = { workspace = true, optional = true }",
            "arrow-schema = { version = \"58\", features = [\"ffi\"], optional = true }",
        )
        .replace(
            "semver = { workspace = true, optional = true }",
            "semver = { version = \"1\", optional = true }",
        )
        .replace("[lints]\nworkspace = true\n", "")
        + "\n[workspace]\n";
    std::fs::write(dest.join("Cargo.toml"), manifest).unwrap();
}

fn copy_tree(from: &Path, to: &Path) {
    if from.is_dir() {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            copy_tree(&entry.path(), &to.join(entry.file_name()));
        }
    } else {
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(from, to).unwrap();
    }
}

#[test]
fn a_plugin_built_against_interface_2_is_refused_everywhere() {
    let env = TestEnv::new();
    interface_copy("2.0.0", &env.path("api-2"));
    env.ragged(&[
        "plugin",
        "new",
        "future",
        "--path",
        &env.path("future").display().to_string(),
        "--api-path",
        &env.path("api-2").display().to_string(),
    ])
    .ok();
    let library = build_out_of_tree(&env.path("future"), "ragged_plugin_future");

    // Packaging loads the library first.
    env.ragged(&[
        "plugin",
        "package",
        &library.display().to_string(),
        "--out",
        &env.path("dist").display().to_string(),
    ])
    .code(2)
    .stderr_has("built against plugin interface 2.0.0, but this ragged implements interface 1.1.0")
    .stderr_has("rebuild the plugin against ragged-plugin-api 1.x");

    // A plugin directory that lies about its interface is caught when the library is loaded.
    let dir = env.user_plugin_dir().join("future");
    std::fs::create_dir_all(&dir).unwrap();
    let file_name = library.file_name().unwrap().to_string_lossy().into_owned();
    std::fs::copy(&library, dir.join(&file_name)).unwrap();
    let sha = ragged::plugin_manager::sha256_file(&library).unwrap();
    let manifest = format!(
        "name = \"future\"\nversion = \"0.1.0\"\ndescription = \"d\"\ninterface = \"1.0.0\"\ntarget = \"{}\"\n\
         platforms = [\"{}\"]\ncapabilities = [\"read\"]\nlibrary = \"{file_name}\"\nsha256 = \"{sha}\"\n",
        ragged_plugin_target(),
        std::env::consts::OS
    );
    std::fs::write(dir.join("plugin.toml"), manifest).unwrap();
    let listed = env.ragged(&["plugin", "list", "--json"]).ok().json();
    let future = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "future")
        .expect("listed");
    assert_eq!(future["status"]["status"], "invalid", "{future}");
    let reason = future["status"]["reason"].as_str().unwrap();
    assert!(
        reason.contains("plugin interface 2.0.0") && reason.contains("1.1.0"),
        "{reason}"
    );

    // Using it fails cleanly, and the host still serves other plugins in the same run.
    env.ragged(&["backend", "collections", &env.store("future", "s")])
        .code(2)
        .stderr_has("plugin interface 2.0.0");
    env.ragged(&["plugin", "list"]).ok().stdout_has("parquet");
}

fn ragged_plugin_target() -> String {
    let listed = TestEnv::new()
        .ragged(&["plugin", "info", "parquet", "--json"])
        .ok()
        .json();
    listed["manifest"]["target"].as_str().unwrap().to_owned()
}
