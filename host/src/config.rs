//! `~/.ragged/config/backend.toml`: migration settings, named stores and personas.
//!
//! ```toml
//! default_store = "lance"              # the global default store: a name below or BACKEND:LOCATION
//!
//! [migration]
//! auto_backup = true                   # back up before writing (--no-backup overrides)
//! backup_retention = 5                 # after a completed migration, keep this many finished runs
//! compression = "zstd"                 # the only backup compression ragged writes
//! auto_verify = true                   # verify after loading (--no-verify overrides)
//! verification_sample_rate = 0.1       # collections this large or larger: compare a 10% sample...
//! full_verify_threshold = 100000       # ...smaller ones: every record (--full, --sample-rate override)
//! auto_rollback = true                 # restore the target when verification fails
//! require_confirmation = true          # ask before migrating, on a terminal (--yes skips)
//! batch_size = 1000
//! checkpoint_interval = 10000
//!
//! [plugins]
//! call_timeout_secs = 300              # a plugin call silent this long is hung: ragged exits (0: never)
//!
//! [stores.chroma]                      # `chroma` on the command line means this store
//! backend = "chroma"
//! location = "/home/me/.ragged/chroma_db"
//! options = {}
//!
//! [personas.researcher]                # `--persona researcher`
//! collections = ["researcher", "papers"]   # default: the collection named like the persona
//! store = "chroma"                     # its default store (`ragged backend set chroma --persona researcher`)
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use serde::{Deserialize, Serialize};

use crate::store::StoreSpec;

/// The whole configuration file; every part is optional.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The global default store.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_store: Option<String>,
    /// Migration defaults.
    pub migration: MigrationSettings,
    /// How the host treats plugins.
    pub plugins: PluginSettings,
    /// Named stores.
    pub stores: BTreeMap<String, NamedStore>,
    /// Personas: named sets of collections with a default store.
    pub personas: BTreeMap<String, Persona>,
}

/// Migration defaults; command-line flags override them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MigrationSettings {
    /// Back up the source collections and the target before writing.
    pub auto_backup: bool,
    /// Finished runs (and their backups) kept after a completed migration.
    pub backup_retention: usize,
    /// Backup compression; only `zstd` is written.
    pub compression: String,
    /// Verify after loading.
    pub auto_verify: bool,
    /// The fraction of records compared when a collection is verified on a sample.
    pub verification_sample_rate: f64,
    /// Collections with fewer records are verified in full; larger ones on a sample.
    pub full_verify_threshold: u64,
    /// Ask for confirmation before a migration starts writing, when a terminal is attached.
    pub require_confirmation: bool,
    /// Restore the target from its backup when verification fails or an error stops the run.
    pub auto_rollback: bool,
    /// Records per batch.
    pub batch_size: u32,
    /// Records per load and checkpoint.
    pub checkpoint_interval: u64,
}

impl Default for MigrationSettings {
    fn default() -> Self {
        MigrationSettings {
            auto_backup: true,
            backup_retention: 5,
            compression: "zstd".to_owned(),
            auto_verify: true,
            verification_sample_rate: 0.1,
            full_verify_threshold: 100_000,
            require_confirmation: true,
            auto_rollback: true,
            batch_size: 1000,
            checkpoint_interval: 10_000,
        }
    }
}

/// How the host treats plugins.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PluginSettings {
    /// Seconds a plugin call may go without returning (a load: without asking for its next batch)
    /// before ragged gives up on it as hung; 0 waits forever.
    pub call_timeout_secs: u64,
}

impl Default for PluginSettings {
    fn default() -> Self {
        PluginSettings { call_timeout_secs: 300 }
    }
}

/// A store with a name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamedStore {
    /// The plugin.
    pub backend: String,
    /// The location handed to the plugin.
    pub location: String,
    /// Store options.
    #[serde(default)]
    pub options: BTreeMap<String, String>,
}

/// A named set of collections with a default store.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Persona {
    /// Its collections; empty means the one collection named like the persona.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub collections: Vec<String>,
    /// Its default store.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub store: Option<String>,
}

impl Config {
    /// Where the file lives under ragged's home.
    pub fn path(home: &Path) -> PathBuf {
        home.join("config").join("backend.toml")
    }

    /// Reads the file; a missing file is the default configuration.
    pub fn load(path: &Path) -> Result<Config> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Config::default()),
            Err(error) => return Err(error).with_context(|| format!("reading {}", path.display())),
        };
        let config: Config =
            toml::from_str(&text).with_context(|| format!("{}: invalid configuration", path.display()))?;
        if config.migration.compression != "zstd" {
            bail!(
                "{}: migration.compression '{}' is not supported (ragged writes zstd)",
                path.display(),
                config.migration.compression
            );
        }
        let rate = config.migration.verification_sample_rate;
        if !(rate > 0.0 && rate <= 1.0) {
            bail!(
                "{}: migration.verification_sample_rate {rate} is not a fraction in (0, 1]",
                path.display()
            );
        }
        Ok(config)
    }

    /// Writes the file atomically (comments in it are not kept).
    pub fn save(&self, path: &Path) -> Result<()> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        let temp = path.with_extension("toml.tmp");
        std::fs::write(&temp, toml::to_string_pretty(self)?).with_context(|| format!("writing {}", temp.display()))?;
        std::fs::rename(&temp, path).with_context(|| format!("replacing {}", path.display()))
    }

    /// A store as the user named it: `BACKEND:LOCATION`, or the name of a configured store, with
    /// the options the configuration gives it.
    pub fn resolve_store(&self, name: &str) -> Result<(StoreSpec, BTreeMap<String, String>)> {
        if let Some(store) = self.stores.get(name) {
            let spec = StoreSpec {
                backend: store.backend.clone(),
                location: store.location.clone(),
            };
            return Ok((spec, store.options.clone()));
        }
        match name.parse::<StoreSpec>() {
            Ok(spec) => Ok((spec, BTreeMap::new())),
            Err(reason) => {
                let known: Vec<&str> = self.stores.keys().map(String::as_str).collect();
                bail!(
                    "{reason}, or the name of a store in the configuration (configured: {})",
                    if known.is_empty() {
                        "none".to_owned()
                    } else {
                        known.join(", ")
                    }
                )
            }
        }
    }

    /// The collections of persona `name`: as configured, or the collection named like it.
    pub fn persona_collections(&self, name: &str) -> Vec<String> {
        match self.personas.get(name) {
            Some(persona) if !persona.collections.is_empty() => persona.collections.clone(),
            _ => vec![name.to_owned()],
        }
    }

    /// Makes `store` the default store of `persona`, or the global default.
    pub fn set_default_store(&mut self, store: &str, persona: Option<&str>) {
        match persona {
            Some(name) => self.personas.entry(name.to_owned()).or_default().store = Some(store.to_owned()),
            None => self.default_store = Some(store.to_owned()),
        }
    }

    /// The default store for a persona (falling back to the global default), and where it came from.
    pub fn current_store(&self, persona: Option<&str>) -> Option<(String, String)> {
        if let Some(name) = persona
            && let Some(store) = self.personas.get(name).and_then(|p| p.store.clone())
        {
            return Some((store, format!("persona {name}")));
        }
        self.default_store
            .clone()
            .map(|store| (store, "global default".to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_file_parses_and_round_trips() {
        let text = r#"
default_store = "lance"
[migration]
batch_size = 500
[plugins]
call_timeout_secs = 20
[stores.chroma]
backend = "chroma"
location = "/data/chroma"
options = { tenant = "t1" }
[personas.researcher]
collections = ["papers", "notes"]
store = "chroma"
"#;
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("backend.toml");
        std::fs::write(&path, text).expect("write");
        let config = Config::load(&path).expect("parses");
        assert_eq!(config.migration.batch_size, 500);
        assert_eq!(
            config.migration.checkpoint_interval, 10_000,
            "unset keys keep their defaults"
        );
        assert_eq!(config.plugins.call_timeout_secs, 20);
        assert_eq!(PluginSettings::default().call_timeout_secs, 300);
        let (spec, options) = config.resolve_store("chroma").expect("named store");
        assert_eq!(
            (spec.backend.as_str(), spec.location.as_str()),
            ("chroma", "/data/chroma")
        );
        assert_eq!(options.get("tenant").map(String::as_str), Some("t1"));
        assert_eq!(config.resolve_store("parquet:/x").expect("spec").0.location, "/x");
        let unknown = config.resolve_store("nowhere").expect_err("unknown name").to_string();
        assert!(unknown.contains("configured: chroma"), "{unknown}");
        assert_eq!(config.persona_collections("researcher"), ["papers", "notes"]);
        assert_eq!(config.persona_collections("writer"), ["writer"]);
        assert_eq!(
            config.current_store(Some("researcher")),
            Some(("chroma".into(), "persona researcher".into()))
        );
        assert_eq!(
            config.current_store(Some("writer")),
            Some(("lance".into(), "global default".into()))
        );
        config.save(&path).expect("saves");
        assert_eq!(Config::load(&path).expect("reloads"), config);
    }

    #[test]
    fn mistakes_name_the_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("backend.toml");
        std::fs::write(&path, "[migration]\nbatch_sise = 5\n").expect("write");
        let error = format!("{:#}", Config::load(&path).expect_err("typo"));
        assert!(
            error.contains("backend.toml: invalid configuration") && error.contains("batch_sise"),
            "{error}"
        );
        std::fs::write(&path, "[migration]\ncompression = \"gzip\"\n").expect("write");
        let error = format!("{:#}", Config::load(&path).expect_err("gzip"));
        assert!(error.contains("'gzip' is not supported"), "{error}");
        std::fs::write(&path, "[migration]\nverification_sample_rate = 10\n").expect("write");
        let error = format!("{:#}", Config::load(&path).expect_err("rate"));
        assert!(
            error.contains("verification_sample_rate 10 is not a fraction"),
            "{error}"
        );
        assert_eq!(
            Config::load(&dir.path().join("missing.toml")).expect("default"),
            Config::default()
        );
    }
}
