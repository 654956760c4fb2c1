//! Where ragged keeps its files, resolved once from the command line and the environment.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};

use crate::config::Config;

/// Paths and settings every engine may need. Built by `cli` and passed down by reference.
#[derive(Debug, Clone)]
pub struct Context {
    /// `~/.ragged` unless `RAGGED_HOME` says otherwise.
    pub home: PathBuf,
    /// Where `plugin install` puts plugins: `<home>/plugins` unless `--plugin-dir` says otherwise.
    pub user_plugin_dir: PathBuf,
    /// Every directory searched for plugins, in order: `$RAGGED_PLUGIN_PATH`, the user plugin dir,
    /// then `plugins/` next to the executable.
    pub plugin_search_path: Vec<PathBuf>,
    /// `<home>/config/backend.toml`, or the defaults when it does not exist.
    pub config: Config,
}

impl Context {
    /// Resolves the context from the environment; `plugin_dir` is the `--plugin-dir` flag.
    pub fn from_env(plugin_dir: Option<&Path>) -> Result<Context> {
        let home = match std::env::var_os("RAGGED_HOME") {
            Some(home) => PathBuf::from(home),
            None => directories::BaseDirs::new()
                .context("cannot find the home directory; set RAGGED_HOME")?
                .home_dir()
                .join(".ragged"),
        };
        let user_plugin_dir = plugin_dir.map(Path::to_owned).unwrap_or_else(|| home.join("plugins"));
        let mut plugin_search_path: Vec<PathBuf> = std::env::var_os("RAGGED_PLUGIN_PATH")
            .map(|paths| {
                std::env::split_paths(&paths)
                    .filter(|p| !p.as_os_str().is_empty())
                    .collect()
            })
            .unwrap_or_default();
        plugin_search_path.push(user_plugin_dir.clone());
        if let Some(exe_dir) = std::env::current_exe()
            .ok()
            .and_then(|exe| exe.parent().map(Path::to_owned))
        {
            plugin_search_path.push(exe_dir.join("plugins"));
        }
        let config = Config::load(&Config::path(&home))?;
        Ok(Context {
            config,
            home,
            user_plugin_dir,
            plugin_search_path,
        })
    }

    /// The configuration file.
    pub fn config_path(&self) -> PathBuf {
        Config::path(&self.home)
    }

    /// The cache of validated plugin manifests.
    pub fn registry_file(&self) -> PathBuf {
        self.home.join("plugin-registry.json")
    }
}
