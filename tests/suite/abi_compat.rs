//! A plugin built against an incompatible interface version is refused with a message naming both
//! versions and the fix, at packaging, at install and at load; the host keeps working. So is a
//! plugin built against an older minor version, whose vtable lacks what the host's has.

use std::path::{Path, PathBuf};

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
        .replace(
            "rand_chacha = { workspace = true, optional = true }",
            "rand_chacha = { version = \"0.9\", optional = true }",
        )
        // The property tests' dependency: no plugin build needs it.
        .replace("[dev-dependencies]\nproptest.workspace = true\n", "")
        .replace("[lints]\nworkspace = true\n", "")
        + "\n[workspace]\n";
    std::fs::write(dest.join("Cargo.toml"), manifest).unwrap();
}

/// Turns a copy of the interface into interface 1.0: the vtable ends at `drop_collection`.
fn downgrade_to_1_0(api: &Path) {
    let ffi = api.join("src/ffi/mod.rs");
    let mut text = std::fs::read_to_string(&ffi).unwrap();
    // Each piece must be found: when the interface changes, this test must be updated, not pass.
    for piece in [
        "    /// Added in 1.1. Hosts refuse plugins built against an older minor (`host::interface_incompatibility`),\n    /// so every loaded vtable has this entry.\n    fn delete(&self, collection: RStr<'_>, ids: RVec<RString>) -> RResult<u64, FfiError>;\n",
        "\n    fn delete(&self, collection: RStr<'_>, ids: RVec<RString>) -> RResult<u64, FfiError> {\n        guard(\"delete\", || {\n            let ids: Vec<String> = ids.into_iter().map(String::from).collect();\n            self.0.delete(collection.as_str(), &ids)\n        })\n    }\n",
        "\n    fn delete(&self, collection: &str, ids: &[String]) -> Result<u64, PluginError> {\n        let ids: RVec<RString> = ids.iter().map(|id| RString::from(id.as_str())).collect();\n        reply(self.inner.delete(collection.into(), ids))\n    }\n",
    ] {
        assert!(
            text.contains(piece),
            "the 1.1 addition changed; update this test:\n{piece}"
        );
        text = text.replace(piece, "");
    }
    std::fs::write(&ffi, text).unwrap();
}

#[test]
fn a_plugin_built_against_interface_1_0_is_refused_with_the_fix() {
    let env = TestEnv::new();
    let api = env.path("api-1.0");
    interface_copy("1.0.0", &api);
    downgrade_to_1_0(&api);
    let library = build_against(&env, &api, "older");
    env.ragged(&[
        "plugin",
        "package",
        &library.display().to_string(),
        "--out",
        &env.path("dist").display().to_string(),
    ])
    .code(2)
    .stderr_has("built against plugin interface 1.0.0, older than this ragged's interface 1.1.0")
    .stderr_has("rebuild the plugin against ragged-plugin-api 1.1 or later");

    // Installed by hand with a manifest that claims 1.1.0: the library itself is checked at load,
    // and the refusal names the versions (not abi_stable's layout dump).
    install_claiming_this_interface(&env, "older", &library);
    let run = env.ragged(&["backend", "collections", &env.store("older", "s")]);
    run.code(2).stderr_has("plugin interface 1.0.0, older than");
    assert!(!run.stderr().contains("Layout"), "{}", run.stderr());
    env.ragged(&["plugin", "list"]).ok().stdout_has("parquet");
}

/// `ragged plugin new NAME` against the interface copy at `api`, built out of tree.
fn build_against(env: &TestEnv, api: &Path, name: &str) -> PathBuf {
    let crate_dir = env.path(name);
    env.ragged(&[
        "plugin",
        "new",
        name,
        "--path",
        &crate_dir.display().to_string(),
        "--api-path",
        &api.display().to_string(),
    ])
    .ok();
    build_out_of_tree(&crate_dir, &format!("ragged_plugin_{name}"))
}

/// Installs `library` by hand with a manifest that claims this host's interface version, as a
/// plugin directory that lies about it would: only the library itself can tell.
fn install_claiming_this_interface(env: &TestEnv, name: &str, library: &Path) {
    let dir = env.user_plugin_dir().join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let file_name = library.file_name().unwrap().to_string_lossy().into_owned();
    std::fs::copy(library, dir.join(&file_name)).unwrap();
    let sha = ragged::plugin_manager::sha256_file(library).unwrap();
    let manifest = format!(
        "name = \"{name}\"\nversion = \"0.1.0\"\ndescription = \"d\"\ninterface = \"{}\"\ntarget = \"{}\"\n\
         platforms = [\"{}\"]\ncapabilities = [\"read\"]\nlibrary = \"{file_name}\"\nsha256 = \"{sha}\"\n",
        ragged_plugin_api::INTERFACE_VERSION,
        ragged_plugin_target(),
        std::env::consts::OS
    );
    std::fs::write(dir.join("plugin.toml"), manifest).unwrap();
    // The modes `plugin install` gives, whatever the umask: discovery refuses what others can write.
    #[cfg(unix)]
    for (path, mode) in [
        (dir.clone(), 0o755),
        (dir.join(&file_name), 0o644),
        (dir.join("plugin.toml"), 0o644),
    ] {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }
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
    let library = build_against(&env, &env.path("api-2"), "future");

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
    install_claiming_this_interface(&env, "future", &library);
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

#[test]
fn a_library_without_the_root_module_is_refused_everywhere() {
    let env = TestEnv::new();
    let crate_dir = env.path("not-a-plugin");
    std::fs::create_dir_all(crate_dir.join("src")).unwrap();
    std::fs::write(
        crate_dir.join("Cargo.toml"),
        "[package]\nname = \"not-a-plugin\"\nversion = \"0.1.0\"\nedition = \"2024\"\n\n\
         [lib]\ncrate-type = [\"cdylib\"]\n\n[workspace]\n",
    )
    .unwrap();
    std::fs::write(
        crate_dir.join("src/lib.rs"),
        "#[unsafe(no_mangle)]\npub extern \"C\" fn answer() -> u32 {\n    42\n}\n",
    )
    .unwrap();
    let library = build_out_of_tree(&crate_dir, "not_a_plugin");
    let path = library.display().to_string();
    let missing = "not a ragged plugin (it exports no ragged root module)";
    env.ragged(&["plugin", "test", &path])
        .code(2)
        .stderr_has(&format!("{path}: {missing}"));
    env.ragged(&[
        "plugin",
        "package",
        &path,
        "--out",
        &env.path("dist").display().to_string(),
    ])
    .code(2)
    .stderr_has(missing);

    install_claiming_this_interface(&env, "impostor", &library);
    let listed = env.ragged(&["plugin", "list", "--json"]).ok().json();
    let impostor = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "impostor")
        .expect("listed");
    assert_eq!(impostor["status"]["status"], "invalid", "{impostor}");
    assert!(
        impostor["status"]["reason"].as_str().unwrap().contains(missing),
        "{impostor}"
    );
    env.ragged(&["backend", "collections", &env.store("impostor", "s")])
        .code(2)
        .stderr_has(missing);
}

fn ragged_plugin_target() -> String {
    let listed = TestEnv::new()
        .ragged(&["plugin", "info", "parquet", "--json"])
        .ok()
        .json();
    listed["manifest"]["target"].as_str().unwrap().to_owned()
}
