//! Support for ragged's cross-crate tests: the built host and plugins, isolated environments in
//! which to run `ragged`, and out-of-tree plugin builds.

#![allow(clippy::unwrap_used, clippy::print_stderr)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_owned()
}

/// Cargo's target directory.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

fn cargo() -> Command {
    let mut command = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    // Variables cargo sets for the running test describe this crate and would leak into a nested
    // build; the user's own settings (CARGO_INCREMENTAL, CARGO_TARGET_DIR, RUSTFLAGS...) must
    // stay, or the nested build fingerprints differently and recompiles everything.
    const SET_FOR_TESTS: [&str; 7] = [
        "CARGO_PKG_",
        "CARGO_MANIFEST_",
        "CARGO_CRATE_",
        "CARGO_BIN_",
        "CARGO_PRIMARY_PACKAGE",
        "CARGO_TARGET_TMPDIR",
        "CARGO_RUSTC_CURRENT_DIR",
    ];
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy().into_owned();
        if SET_FOR_TESTS.iter().any(|prefix| key.starts_with(prefix)) {
            command.env_remove(key);
        }
    }
    command
}

/// The host binary and every plugin library of the workspace, built once per test process.
pub struct Artifacts {
    /// The `ragged` binary.
    pub host: PathBuf,
    /// Store name → library, for `plugins/*` and `tests/plugins/*`.
    pub plugins: BTreeMap<String, PathBuf>,
}

/// Builds (or finds up to date) the host and all plugins, reading paths from cargo's messages.
pub fn artifacts() -> &'static Artifacts {
    static ARTIFACTS: OnceLock<Artifacts> = OnceLock::new();
    ARTIFACTS.get_or_init(|| {
        let mut packages = vec![("ragged".to_owned(), String::new())];
        for dir in ["plugins", "tests/plugins"] {
            for (store, path) in plugin_dirs(&workspace_root().join(dir)) {
                let prefix = if dir == "plugins" {
                    "ragged-plugin-"
                } else {
                    "ragged-test-plugin-"
                };
                packages.push((
                    format!("{prefix}{}", path.file_name().unwrap().to_string_lossy()),
                    store,
                ));
            }
        }
        let mut command = cargo();
        command
            .current_dir(workspace_root())
            .args(["build", "--message-format=json-render-diagnostics"]);
        for (package, _) in &packages {
            command.args(["-p", package]);
        }
        let output = command
            .stderr(std::process::Stdio::inherit())
            .output()
            .expect("cargo runs");
        assert!(output.status.success(), "building the host and plugins failed");
        let mut host = None;
        let mut plugins = BTreeMap::new();
        for line in String::from_utf8_lossy(&output.stdout).lines() {
            let Ok(message) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            if message["reason"] != "compiler-artifact" {
                continue;
            }
            let package_name = message["target"]["name"].as_str().unwrap_or_default().replace('_', "-");
            for file in message["filenames"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|f| f.as_str())
            {
                let file = PathBuf::from(file);
                if message["target"]["kind"][0] == "bin" && package_name == "ragged" {
                    host = Some(file);
                } else if file.extension().and_then(|e| e.to_str()) == Some(std::env::consts::DLL_EXTENSION)
                    && let Some((_, store)) = packages.iter().find(|(p, _)| *p == package_name)
                {
                    plugins.insert(store.clone(), file);
                }
            }
        }
        Artifacts {
            host: host.expect("cargo built the ragged binary"),
            plugins,
        }
    })
}

/// `(store name, crate dir)` of every crate under `dir` with a `plugin.toml`.
pub fn plugin_dirs(dir: &Path) -> Vec<(String, PathBuf)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let manifest = entry.path().join("plugin.toml");
        if let Ok(text) = std::fs::read_to_string(&manifest) {
            let value: toml_lite::Table = toml_lite::parse(&text);
            if let Some(name) = value.get("name") {
                found.push((name.clone(), entry.path()));
            }
        }
    }
    found.sort();
    found
}

/// Just enough TOML for `name = "…"` lines, to keep this crate's dependencies small.
mod toml_lite {
    pub type Table = std::collections::BTreeMap<String, String>;

    pub fn parse(text: &str) -> Table {
        text.lines()
            .filter_map(|line| line.split_once('='))
            .filter_map(|(k, v)| {
                let v = v.trim();
                v.starts_with('"')
                    .then(|| (k.trim().to_owned(), v.trim_matches('"').to_owned()))
            })
            .collect()
    }
}

/// The names of the real store plugins (not test plugins) built here.
pub fn store_plugins() -> Vec<String> {
    plugin_dirs(&workspace_root().join("plugins"))
        .into_iter()
        .map(|(name, _)| name)
        .collect()
}

/// A directory where every built plugin is installed, once per test process. It lives in the
/// target directory, one per process so that test processes running at the same time never
/// replace each other's, and a later process removes those of processes that are gone (a
/// temporary directory would never be removed: statics are not dropped, and the debug Lance
/// library alone is hundreds of megabytes).
pub fn staged_plugin_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        const PREFIX: &str = "ragged-staged-plugins-";
        for entry in std::fs::read_dir(target_dir()).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(pid) = name.strip_prefix(PREFIX).and_then(|pid| pid.parse::<u32>().ok())
                && !process_may_be_running(pid, &entry.path())
            {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
        let dir = target_dir().join(format!("{PREFIX}{}", std::process::id()));
        if dir.exists() {
            std::fs::remove_dir_all(&dir).unwrap();
        }
        let packages = dir.join("packages");
        for library in artifacts().plugins.values() {
            let output = Command::new(&artifacts().host)
                .args(["plugin", "package"])
                .arg(library)
                .arg("--out")
                .arg(&packages)
                .output()
                .unwrap();
            assert!(
                output.status.success(),
                "packaging {}: {}",
                library.display(),
                String::from_utf8_lossy(&output.stderr)
            );
            let package = String::from_utf8_lossy(&output.stdout).trim().to_owned();
            let output = Command::new(&artifacts().host)
                .args(["plugin", "install", &package, "--plugin-dir"])
                .arg(dir.join("installed"))
                .output()
                .unwrap();
            assert!(
                output.status.success(),
                "installing {package}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        dir
    })
    .as_path()
}

/// Whether process `pid`, which staged plugins into `dir`, may still be using them: by `/proc`
/// where there is one, elsewhere for a day after the directory was last changed.
fn process_may_be_running(pid: u32, dir: &Path) -> bool {
    if Path::new("/proc/self").exists() {
        return Path::new("/proc").join(pid.to_string()).exists();
    }
    std::fs::metadata(dir)
        .and_then(|m| m.modified())
        .is_ok_and(|modified| modified.elapsed().is_ok_and(|age| age.as_secs() < 24 * 3600))
}

/// An isolated ragged environment: its own home and user plugin dir, with every built plugin
/// reachable through `RAGGED_PLUGIN_PATH`.
pub struct TestEnv {
    /// The scratch directory; stores and packages go here.
    pub dir: tempfile::TempDir,
}

impl Default for TestEnv {
    fn default() -> Self {
        TestEnv::new()
    }
}

impl TestEnv {
    /// A fresh environment.
    pub fn new() -> TestEnv {
        TestEnv {
            dir: tempfile::Builder::new().prefix("ragged-test-").tempdir().unwrap(),
        }
    }

    /// A path inside the scratch directory.
    pub fn path(&self, relative: &str) -> PathBuf {
        self.dir.path().join(relative)
    }

    /// `BACKEND:LOCATION` for a store inside the scratch directory.
    pub fn store(&self, backend: &str, relative: &str) -> String {
        format!("{backend}:{}", self.path(relative).display())
    }

    /// The user plugin directory of this environment.
    pub fn user_plugin_dir(&self) -> PathBuf {
        self.path("home/plugins")
    }

    /// The temporary directory `ragged` uses in this environment (scratch stores go there).
    pub fn temp_dir(&self) -> PathBuf {
        self.path("tmp")
    }

    /// A `ragged` command in this environment.
    pub fn command(&self) -> Command {
        std::fs::create_dir_all(self.temp_dir()).unwrap();
        let mut command = Command::new(&artifacts().host);
        command
            .env("RAGGED_HOME", self.path("home"))
            .env("TMPDIR", self.temp_dir())
            .env("RAGGED_PLUGIN_PATH", staged_plugin_dir().join("installed"))
            .env_remove("RAGGED_LOG")
            .current_dir(self.dir.path());
        command
    }

    /// Runs `ragged ARGS`.
    pub fn ragged(&self, args: &[&str]) -> Run {
        Run(self.command().args(args).output().unwrap(), args.join(" "))
    }

    /// Writes this environment's configuration file.
    pub fn write_config(&self, text: &str) {
        std::fs::create_dir_all(self.path("home/config")).unwrap();
        std::fs::write(self.path("home/config/backend.toml"), text).unwrap();
    }

    /// The `run.json` of every migration run of this environment, in no particular order.
    pub fn runs(&self) -> Vec<serde_json::Value> {
        let mut runs = Vec::new();
        for entry in std::fs::read_dir(self.path("home/runs"))
            .into_iter()
            .flatten()
            .flatten()
        {
            // A run being planned has its directory before its first run.json.
            let Ok(text) = std::fs::read_to_string(entry.path().join("run.json")) else {
                continue;
            };
            runs.push(serde_json::from_str(&text).unwrap());
        }
        runs
    }

    /// `ragged backend generate STORE --collection COLLECTION --records N --dim D EXTRA...`, which
    /// must succeed. Record `i` has the id `doc-{i:08}`.
    pub fn generate(&self, store: &str, collection: &str, records: u64, dimension: u32, extra: &[&str]) {
        let (records, dimension) = (records.to_string(), dimension.to_string());
        let mut args = vec![
            "backend",
            "generate",
            store,
            "--collection",
            collection,
            "--records",
            &records,
            "--dim",
            &dimension,
        ];
        args.extend_from_slice(extra);
        self.ragged(&args).ok();
    }
}

/// The output of one `ragged` run and the arguments it ran with, with assertions that print
/// everything on failure.
pub struct Run(pub Output, pub String);

impl Run {
    /// Standard output as text.
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.0.stdout).into_owned()
    }

    /// Standard error as text.
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.0.stderr).into_owned()
    }

    /// Asserts the exit code (a signal, such as an abort, is never accepted).
    pub fn code(&self, expected: i32) -> &Run {
        assert_eq!(
            self.0.status.code(),
            Some(expected),
            "`ragged {}` exited with {:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.1,
            self.0.status,
            self.stdout(),
            self.stderr()
        );
        self
    }

    /// Asserts success.
    pub fn ok(&self) -> &Run {
        self.code(0)
    }

    /// Asserts that stderr contains `fragment`.
    pub fn stderr_has(&self, fragment: &str) -> &Run {
        assert!(
            self.stderr().contains(fragment),
            "stderr of `ragged {}` lacks {fragment:?}:\n{}",
            self.1,
            self.stderr()
        );
        self
    }

    /// Asserts that stdout contains `fragment`.
    pub fn stdout_has(&self, fragment: &str) -> &Run {
        assert!(
            self.stdout().contains(fragment),
            "stdout of `ragged {}` lacks {fragment:?}:\n{}",
            self.1,
            self.stdout()
        );
        self
    }

    /// Parses stdout as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout())
            .unwrap_or_else(|e| panic!("`ragged {}` printed no JSON ({e}):\n{}", self.1, self.stdout()))
    }
}

/// Writes a `.tar.zst` with exactly these entries: (name, type, content, or the target of a
/// link). Names are written raw, since tar's own API refuses the `..` and absolute paths that
/// hostile archives hold.
pub fn write_tar_zst(path: &Path, entries: &[(&str, tar::EntryType, &[u8])]) {
    let encoder = zstd::Encoder::new(std::fs::File::create(path).unwrap(), 3).unwrap();
    let mut builder = tar::Builder::new(encoder.auto_finish());
    for (name, kind, content) in entries {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(*kind);
        header.set_mode(0o644);
        header.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        let data = if kind.is_file() {
            *content
        } else {
            header.as_old_mut().linkname[..content.len()].copy_from_slice(content);
            &[]
        };
        header.set_size(data.len() as u64);
        header.set_cksum();
        builder.append(&header, data).unwrap();
    }
    builder.into_inner().unwrap();
}

/// Builds an out-of-tree plugin crate with cargo and returns its library. All such builds share
/// one target dir, so their dependencies compile once.
pub fn build_out_of_tree(crate_dir: &Path, lib_name: &str) -> PathBuf {
    let target = target_dir().join("out-of-tree");
    let status = cargo()
        .current_dir(crate_dir)
        .env("CARGO_TARGET_DIR", &target)
        .args(["build", "--quiet"])
        .status()
        .unwrap();
    assert!(status.success(), "building {} failed", crate_dir.display());
    let library = target.join("debug").join(format!(
        "{}{lib_name}{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    ));
    assert!(library.is_file(), "{} was not built", library.display());
    library
}

/// Runs `cargo test` in an out-of-tree crate.
pub fn test_out_of_tree(crate_dir: &Path) {
    let status = cargo()
        .current_dir(crate_dir)
        .env("CARGO_TARGET_DIR", target_dir().join("out-of-tree"))
        .args(["test", "--quiet"])
        .status()
        .unwrap();
    assert!(status.success(), "cargo test in {} failed", crate_dir.display());
}
