//! `ragged plugin ...`: listing, packaging, installing (and refusing bad packages), removing.

use std::io::Read;
use std::path::{Path, PathBuf};

use ragged_tests::{TestEnv, artifacts, write_tar_zst};

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

/// The (path, bytes) entries of a package.
fn package_entries(package: &Path) -> Vec<(String, Vec<u8>)> {
    let mut archive = tar::Archive::new(zstd::Decoder::new(std::fs::File::open(package).unwrap()).unwrap());
    let mut entries = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().display().to_string();
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).unwrap();
        entries.push((path, bytes));
    }
    entries
}

/// Rewrites a package with `edit` applied to each (path, bytes) entry.
fn repack(package: &Path, out: &Path, edit: impl Fn(&str, Vec<u8>) -> Vec<(String, Vec<u8>)>) {
    let entries: Vec<(String, Vec<u8>)> = package_entries(package)
        .into_iter()
        .flat_map(|(path, bytes)| edit(&path, bytes))
        .collect();
    let entries: Vec<(&str, tar::EntryType, &[u8])> = entries
        .iter()
        .map(|(path, bytes)| (path.as_str(), tar::EntryType::Regular, bytes.as_slice()))
        .collect();
    write_tar_zst(out, &entries);
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
fn entries_that_are_absolute_parent_relative_or_links_are_refused() {
    let env = TestEnv::new();
    let package = parquet_package(&env);
    let original = package_entries(&package);
    let escaped = env.path("escaped.txt");
    let absolute = escaped.display().to_string();
    let hostile = env.path("hostile.tar.zst");
    for (name, kind, content, refusal) in [
        (
            "../escaped.txt",
            tar::EntryType::Regular,
            &b"gotcha"[..],
            "could escape the plugin directory",
        ),
        (
            absolute.as_str(),
            tar::EntryType::Regular,
            &b"gotcha"[..],
            "could escape the plugin directory",
        ),
        (
            "parquet/link",
            tar::EntryType::Symlink,
            absolute.as_bytes(),
            "is not a regular file",
        ),
        (
            "parquet/hard",
            tar::EntryType::Link,
            &b"parquet/plugin.toml"[..],
            "is not a regular file",
        ),
    ] {
        // The hostile entry first, so nothing of the package is unpacked before it.
        let mut entries = vec![(name, kind, content)];
        entries.extend(
            original
                .iter()
                .map(|(path, bytes)| (path.as_str(), tar::EntryType::Regular, bytes.as_slice())),
        );
        write_tar_zst(&hostile, &entries);
        env.ragged(&["plugin", "install", &hostile.display().to_string()])
            .code(2)
            .stderr_has(&format!("entry '{name}' "))
            .stderr_has(refusal);
        assert!(!escaped.exists(), "{name}: a file landed outside the plugin directory");
        assert!(!env.user_plugin_dir().join("parquet").exists(), "{name}");
    }
}

/// Runs `ragged ARGS` in `env` under umask 0, as a careless shell would.
#[cfg(unix)]
fn ragged_with_umask_0(env: &TestEnv, args: &[&str]) {
    let status = std::process::Command::new("sh")
        .args(["-c", "umask 0 && exec \"$0\" \"$@\""])
        .arg(&artifacts().host)
        .args(args)
        .env("RAGGED_HOME", env.path("home"))
        .status()
        .unwrap();
    assert!(status.success(), "ragged {args:?}: {status}");
}

#[cfg(unix)]
#[test]
fn install_writes_safe_modes_and_plugins_others_could_change_are_refused() {
    use std::os::unix::fs::PermissionsExt;

    let env = TestEnv::new();
    ragged_with_umask_0(
        &env,
        &["plugin", "install", &parquet_package(&env).display().to_string()],
    );
    let dir = env.user_plugin_dir().join("parquet");
    let library = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| !p.ends_with("plugin.toml"))
        .unwrap();
    let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o7777;
    for (path, expected) in [
        (env.user_plugin_dir(), 0o755),
        (dir.clone(), 0o755),
        (dir.join("plugin.toml"), 0o644),
        (library.clone(), 0o644),
    ] {
        assert_eq!(mode(&path), expected, "{} under umask 0", path.display());
    }
    let status = |env: &TestEnv| {
        let output = env
            .command()
            .env("RAGGED_PLUGIN_PATH", "")
            .args(["plugin", "list", "--json"])
            .output()
            .unwrap();
        let listed: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        let parquet = listed
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "parquet")
            .cloned();
        parquet.unwrap()["status"].clone()
    };
    assert_eq!(status(&env)["status"], "valid");
    for path in [library.clone(), dir.join("plugin.toml"), dir.clone()] {
        let before = mode(&path);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(before | 0o020)).unwrap();
        let refused = status(&env);
        let fix = format!("fix it with `chmod go-w {}`", path.display());
        let reason = refused["reason"].as_str().unwrap();
        assert_eq!(refused["status"], "invalid", "{refused}");
        assert!(
            reason.starts_with(&format!(
                "{} is writable by its group (mode {:04o})",
                path.display(),
                before | 0o020
            )) && reason.contains(&fix),
            "{reason}"
        );
        let output = env
            .command()
            .env("RAGGED_PLUGIN_PATH", "")
            .args(["backend", "collections", &env.store("parquet", "store")])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.code() == Some(2) && stderr.contains(&fix), "{stderr}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(before)).unwrap();
        assert_eq!(status(&env)["status"], "valid", "{} restored", path.display());
    }
    // Only root can give a file away; then the plugin is refused as someone else's.
    if std::os::unix::fs::chown(&library, Some(65534), None).is_ok() {
        let reason = status(&env)["reason"].as_str().unwrap().to_owned();
        assert!(
            reason.starts_with(&format!("{} is owned by user 65534, not by you", library.display())),
            "{reason}"
        );
    }
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
