//! Store specs (`BACKEND:LOCATION`) and stores opened through their plugin.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use anyhow::{Result, bail};
use ragged_plugin_api::{Access, Backend, Capabilities, OpenRequest, PluginError};

use crate::context::Context;
use crate::{guard, plugin_manager};

/// A store named on the command line: `chroma:./chroma_db`, `parquet:/data/export`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreSpec {
    /// The plugin name.
    pub backend: String,
    /// The location handed to the plugin.
    pub location: String,
}

impl FromStr for StoreSpec {
    type Err = String;

    fn from_str(spec: &str) -> Result<StoreSpec, String> {
        let parsed = spec.split_once(':').filter(|(backend, location)| {
            // "C:\data" is a Windows path, not backend "C": backend names have two or more chars.
            backend.len() > 1
                && !location.is_empty()
                && backend
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        });
        match parsed {
            Some((backend, location)) => Ok(StoreSpec {
                backend: backend.to_owned(),
                location: location.to_owned(),
            }),
            None => Err(format!(
                "'{spec}' is not a store; write BACKEND:LOCATION, for example chroma:./chroma_db"
            )),
        }
    }
}

impl fmt::Display for StoreSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.backend, self.location)
    }
}

/// A store opened through its plugin.
pub struct Store {
    /// What the user named.
    pub spec: StoreSpec,
    /// What the plugin declares it can do.
    pub capabilities: Capabilities,
    /// Whether it was opened read-only.
    pub access: Access,
    /// The store options it was opened with.
    pub options: BTreeMap<String, String>,
    /// Whether the location was a directory before the plugin opened it (None: not a local path);
    /// plugins create stores on a read-write open, so only this tells what "before" looked like.
    pub existed_before_open: Option<bool>,
    /// The store itself; every call is guarded (time limit, checked streams, see [`guard`]).
    pub backend: Box<dyn Backend>,
}

impl Store {
    /// Opens `spec` with its plugin.
    pub fn open(ctx: &Context, spec: &StoreSpec, options: &BTreeMap<String, String>, access: Access) -> Result<Store> {
        let (_, plugin) = plugin_manager::load(ctx, &spec.backend)?;
        let existed_before_open = local_path(&spec.location).map(|path| path.is_dir());
        let request = OpenRequest {
            location: spec.location.clone(),
            options: options.clone(),
            access,
        };
        let limits = guard::Limits::from_context(ctx);
        let backend = guard::open(&plugin, &spec.backend, &spec.to_string(), &request, &limits)
            .map_err(|error| StoreError::new(spec, "open", error))?;
        Ok(Store {
            spec: spec.clone(),
            capabilities: plugin.info.capabilities,
            access,
            options: options.clone(),
            existed_before_open,
            backend,
        })
    }

    /// Fails unless the plugin declares `needed`, naming the operation that needs it.
    pub fn require(&self, needed: Capabilities, operation: &str) -> Result<()> {
        if !self.capabilities.contains(needed) {
            bail!(
                "the {} plugin cannot {operation} (it declares: {})",
                self.spec.backend,
                self.capabilities.names().join(", ")
            );
        }
        Ok(())
    }
}

/// A plugin error with the store and operation it happened in.
#[derive(Debug, thiserror::Error)]
#[error("{store}: {operation} failed: {error}")]
pub struct StoreError {
    /// The store.
    pub store: String,
    /// What the host asked.
    pub operation: String,
    /// What the plugin answered.
    pub error: PluginError,
}

impl StoreError {
    pub(crate) fn new(spec: &StoreSpec, operation: &str, error: PluginError) -> StoreError {
        StoreError {
            store: spec.to_string(),
            operation: operation.to_owned(),
            error,
        }
    }
}

/// Attaches the store and operation to a plugin error.
pub trait InStore<T> {
    /// Converts the error, naming `store` and `operation`.
    fn in_store(self, store: &Store, operation: &str) -> Result<T>;
}

impl<T> InStore<T> for Result<T, PluginError> {
    fn in_store(self, store: &Store, operation: &str) -> Result<T> {
        self.map_err(|error| StoreError::new(&store.spec, operation, error).into())
    }
}

/// The location as an absolute local path, when it is one (not a URL).
pub fn local_path(location: &str) -> Option<std::path::PathBuf> {
    if location.contains("://") {
        return None;
    }
    std::path::absolute(location).ok()
}

/// Parses `KEY=VALUE` store options.
pub fn parse_options(pairs: &[String]) -> Result<BTreeMap<String, String>> {
    pairs
        .iter()
        .map(|pair| match pair.split_once('=') {
            Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
            _ => bail!("store option '{pair}' is not KEY=VALUE"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_split_at_the_backend_name() {
        let spec: StoreSpec = "chroma:./db:with:colons".parse().expect("valid");
        assert_eq!(
            spec,
            StoreSpec {
                backend: "chroma".into(),
                location: "./db:with:colons".into()
            }
        );
        assert!(
            "C:\\data"
                .parse::<StoreSpec>()
                .expect_err("windows path")
                .contains("BACKEND:LOCATION")
        );
        assert!("chroma".parse::<StoreSpec>().is_err());
        assert!("chroma:".parse::<StoreSpec>().is_err());
    }

    #[test]
    fn options_are_key_value_pairs() {
        let options = parse_options(&["shape=compact".into(), "model=a=b".into()]).expect("valid");
        assert_eq!(options.get("model").map(String::as_str), Some("a=b"));
        assert!(parse_options(&["=x".into()]).is_err());
        assert!(parse_options(&["novalue".into()]).is_err());
    }
}
