//! Removing collections from a store once a migration has proved itself, with a backup first.
//!
//! The backup saves the whole local store location (not only the removed collections' files:
//! some stores, like Chroma, keep every collection in one database), so restoring it with
//! `ragged backend rollback --backup FILE --confirm` returns the store byte-identical to its
//! state before the cleanup.

use std::path::PathBuf;

use anyhow::{Result, bail};
use serde::Serialize;

use crate::backup;
use crate::context::Context;
use crate::runs::Run;
use crate::store::{InStore, Store, local_path};

/// What a cleanup removes.
#[derive(Debug, Clone, Serialize)]
pub struct CleanupPlan {
    /// The store.
    pub store: String,
    /// The collections, with their record counts.
    pub collections: Vec<(String, u64)>,
    /// Bytes they occupy, when the plugin can say.
    pub bytes: Option<u64>,
}

/// What a cleanup did.
#[derive(Debug, Clone, Serialize)]
pub struct CleanupReport {
    /// What was removed.
    #[serde(flatten)]
    pub plan: CleanupPlan,
    /// The backup taken first, unless declined.
    pub backup: Option<PathBuf>,
}

/// The collections `names` (all of the store's when empty) with their counts and sizes.
pub fn plan(store: &Store, names: &[String]) -> Result<CleanupPlan> {
    let existing = store.backend.list_collections().in_store(store, "list collections")?;
    let names = if names.is_empty() {
        existing.clone()
    } else {
        names.to_vec()
    };
    let mut collections = Vec::new();
    let mut bytes = Some(0u64);
    for name in names {
        if !existing.contains(&name) {
            bail!("{} has no collection '{name}'", store.spec);
        }
        let count = store.backend.count(&name).in_store(store, &format!("count '{name}'"))?;
        bytes = match (bytes, store.backend.storage(&name)) {
            (Some(total), Ok(report)) => Some(total + report.total_bytes),
            _ => None,
        };
        collections.push((name, count));
    }
    Ok(CleanupPlan {
        store: store.spec.to_string(),
        collections,
        bytes,
    })
}

/// Backs up the store (when `backup`), then drops every planned collection.
pub fn execute(ctx: &Context, store: &Store, plan: CleanupPlan, backup: bool) -> Result<CleanupReport> {
    let archive = if backup {
        let Some(location) = local_path(&store.spec.location).filter(|p| p.exists()) else {
            bail!(
                "{} is not a local directory, so ragged cannot back it up; use --no-backup to remove without one",
                store.spec
            );
        };
        let archive = ctx
            .home
            .join("backups")
            .join(format!("cleanup-{}.tar.zst", Run::new_id()));
        let label = format!("{} before removing {}", store.spec, names(&plan).join(", "));
        backup::create(&archive, &label, &[location], &[])?;
        Some(archive)
    } else {
        None
    };
    for (name, _) in &plan.collections {
        store
            .backend
            .drop_collection(name)
            .in_store(store, &format!("remove '{name}'"))?;
    }
    Ok(CleanupReport { plan, backup: archive })
}

/// The planned collections' names.
pub fn names(plan: &CleanupPlan) -> Vec<String> {
    plan.collections.iter().map(|(name, _)| name.clone()).collect()
}
