//! `ragged plugin ...`: listing, packaging, installing (and refusing bad packages), removing.

use std::io::Read;
use std::path::{Path, PathBuf};

use ragged_tests::{TestEnv, artifacts};

fn parquet_package(env: &TestEnv) -> PathBuf {
    let library = artifacts().plugins.get("parquet").expect("the parquet plugin is built");
    let run = env.ragged(&[
        "plugin",
        "package",
        &library.display().to_string(),
        "--out",
        &env.path("dist").display().to_string(),
    ]);
    PathBuf::from(run.ok().stdout().trim())
}

/// Rewrites a package with `edit` applied to each (path, bytes) entry.
fn repack(package: &Path, out: &Path, edit: impl Fn(&str, Vec<u8>) -> Vec<(String, Vec<u8>)>) {
    let mut archive = tar::Archive::new(zstd::Decoder::new(std::fs::File::open(package).unwrap()).unwrap());
    let mut builder = tar::Builder::new(
        zstd::Encoder::new(std::fs::File::create(out).unwrap(), 3)
            .unwrap()
            .auto_finish(),
    );
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().display().to_string();
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).unwrap();
        for (path, bytes) in edit(&path, bytes) {
            let mut header = tar::Header::new_gnu();
            header.set_size(bytes.len() as u64);
            header.set_mode(0o644);
            // set_path refuses "..", so write the raw name the way a hostile archive would.
            let name = header.as_old_mut().name.as_mut();
            name[..path.len()].copy_from_slice(path.as_bytes());
            header.set_cksum();
            builder.append(&header, bytes.as_slice()).unwrap();
        }
    }
    builder.into_inner().unwrap();
}

#[test]
fn version_names_host_and_interface() {
    TestEnv::new()
        .ragged(&["--version"])
        .ok()
        .stdout_has("(plugin interface 1.1.0)");
}

#[test]
fn built_plugins_are_listed_valid_with_capabilities() {
    let env = TestEnv::new();
    let listed = env.ragged(&["plugin", "list", "--json"]).ok().json();
    let parquet = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "parquet")
        .expect("parquet listed");
    assert_eq!(parquet["status"]["status"], "valid", "{parquet}");
    let capabilities = parquet["manifest"]["capabilities"].as_array().unwrap();
    assert!(capabilities.iter().any(|c| c == "write"), "{parquet}");
    env.ragged(&["plugin", "info", "parquet"])
        .ok()
        .stdout_has("interface: 1.1.0");
}

#[test]
fn install_remove_and_reinstall() {
    let env = TestEnv::new();
    let package = parquet_package(&env);
    env.ragged(&["plugin", "install", &package.display().to_string()])
        .ok()
        .stderr_has("installed parquet");
    assert!(env.user_plugin_dir().join("parquet/plugin.toml").is_file());
    env.ragged(&["plugin", "install", &package.display().to_string()])
        .code(2)
        .stderr_has("already installed");
    env.ragged(&["plugin", "install", &package.display().to_string(), "--force"])
        .ok()
        .stderr_has("replaced");
    env.ragged(&["plugin", "remove", "parquet"]).ok();
    assert!(!env.user_plugin_dir().join("parquet").exists());
    env.ragged(&["plugin", "remove", "parquet"])
        .code(2)
        .stderr_has("is not installed");
}

#[test]
fn a_tampered_library_is_refused_before_anything_is_installed() {
    let env = TestEnv::new();
    let package = parquet_package(&env);
    let tampered = env.path("tampered.tar.zst");
    repack(&package, &tampered, |path, mut bytes| {
        if !path.ends_with("plugin.toml") {
            let middle = bytes.len() / 2;
            bytes[middle] ^= 0xff;
        }
        vec![(path.to_owned(), bytes)]
    });
    env.ragged(&["plugin", "install", &tampered.display().to_string()])
        .code(2)
        .stderr_has("checksum mismatch");
    assert!(
        !env.user_plugin_dir().join("parquet").exists(),
        "a refused package left files behind"
    );
}

#[test]
fn entries_that_escape_the_plugin_dir_are_refused() {
    let env = TestEnv::new();
    let package = parquet_package(&env);
    let hostile = env.path("hostile.tar.zst");
    repack(&package, &hostile, |path, bytes| {
        let mut entries = vec![(path.to_owned(), bytes)];
        if path.ends_with("plugin.toml") {
            entries.push(("parquet/../../escaped.txt".to_owned(), b"gotcha".to_vec()));
        }
        entries
    });
    env.ragged(&["plugin", "install", &hostile.display().to_string()])
        .code(2)
        .stderr_has("could escape the plugin directory");
    assert!(!env.path("home/escaped.txt").exists() && !env.path("escaped.txt").exists());
    assert!(!env.user_plugin_dir().join("parquet").exists());
}

#[test]
fn a_package_for_another_target_is_refused() {
    let env = TestEnv::new();
    let package = parquet_package(&env);
    let foreign = env.path("foreign.tar.zst");
    repack(&package, &foreign, |path, bytes| {
        let bytes = if path.ends_with("plugin.toml") {
            let text = String::from_utf8(bytes).unwrap();
            let line = text.lines().find(|l| l.starts_with("target")).unwrap().to_owned();
            text.replace(&line, "target = \"riscv64gc-unknown-none-elf\"")
                .into_bytes()
        } else {
            bytes
        };
        vec![(path.to_owned(), bytes)]
    });
    env.ragged(&["plugin", "install", &foreign.display().to_string()])
        .code(2)
        .stderr_has("built for riscv64gc-unknown-none-elf");
}

#[test]
fn a_library_changed_after_install_is_reported_invalid() {
    let env = TestEnv::new();
    env.ragged(&["plugin", "install", &parquet_package(&env).display().to_string()])
        .ok();
    let installed = env.user_plugin_dir().join("parquet");
    // Prime the registry cache, then change the library behind its back.
    env.command()
        .env("RAGGED_PLUGIN_PATH", "")
        .args(["plugin", "list"])
        .output()
        .unwrap();
    let library = std::fs::read_dir(&installed)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| !p.ends_with("plugin.toml"))
        .unwrap();
    let mut bytes = std::fs::read(&library).unwrap();
    bytes.push(0);
    std::fs::write(&library, bytes).unwrap();
    let output = env
        .command()
        .env("RAGGED_PLUGIN_PATH", "")
        .args(["plugin", "list"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("invalid") && stdout.contains("checksum mismatch"),
        "{stdout}"
    );
}

#[test]
fn the_conformance_suite_passes_for_every_store_plugin() {
    let env = TestEnv::new();
    for store in ragged_tests::store_plugins() {
        let run = env.ragged(&["plugin", "test", &store, "--json"]);
        let report = run.json();
        assert_eq!(report["failed"], 0, "{store} failed conformance checks: {report:#}");
        assert!(report["passed"].as_u64().unwrap() >= 15, "{store}: {report:#}");
        run.ok();
    }
}
