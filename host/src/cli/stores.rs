//! `ragged backend storage-info` and `ragged backend cleanup`: what a store occupies, and removing
//! collections from it.

use anyhow::Result;
use clap::Args;
use ragged_plugin_api::{Access, ErrorCode, StorageReport};
use serde::Serialize;

use super::backend::{OutputArgs, open_store, store_or_default};
use super::{EXIT_FINDINGS, EXIT_OK};
use crate::cleanup;
use crate::context::Context;
use crate::output::{human_bytes, print_json, print_text, status};
use crate::store::{InStore, Store};

pub(crate) const STORAGE_EXAMPLES: &str = "Examples:
  ragged backend storage-info
  ragged backend storage-info chroma:./chroma_db
  ragged backend storage-info lance:./lancedb --collection notes --json

Sizes are measured from the store's files by its plugin. Without a store, the default store
(`ragged backend set STORE --global`) is measured.";

pub(crate) const CLEANUP_EXAMPLES: &str = "Examples:
  ragged backend cleanup chroma:./chroma_db
  ragged backend cleanup chroma:./chroma_db --collection notes --confirm
  ragged backend cleanup chroma --confirm --no-backup

Without --confirm it only says what it would remove (exit 1). With --confirm it first backs up
the whole store location (restore with `ragged backend rollback --backup FILE --confirm`), then
removes the collections.";

#[derive(Debug, Args)]
pub(crate) struct StorageInfoArgs {
    /// The store (default: the configured default store).
    store: Option<String>,
    /// Only this collection (repeatable; default: all).
    #[arg(long = "collection", value_name = "NAME")]
    collections: Vec<String>,
    /// Store option KEY=VALUE (repeatable).
    #[arg(long = "option", value_name = "KEY=VALUE")]
    options: Vec<String>,
    #[command(flatten)]
    output: OutputArgs,
}

#[derive(Debug, Args)]
pub(crate) struct CleanupArgs {
    /// The store to remove collections from.
    store: String,
    /// Remove only this collection (repeatable; default: every collection of the store).
    #[arg(long = "collection", value_name = "NAME")]
    collections: Vec<String>,
    /// Really remove them.
    #[arg(long)]
    confirm: bool,
    /// Do not back up the store first (it cannot be restored then).
    #[arg(long)]
    no_backup: bool,
    /// Store option KEY=VALUE (repeatable).
    #[arg(long = "option", value_name = "KEY=VALUE")]
    options: Vec<String>,
    #[command(flatten)]
    output: OutputArgs,
}

/// One collection's storage.
#[derive(Debug, Serialize)]
struct CollectionStorage {
    name: String,
    #[serde(flatten)]
    report: Option<StorageReport>,
    bytes_per_record: Option<f64>,
    /// Why the size is unknown.
    #[serde(skip_serializing_if = "Option::is_none")]
    unknown: Option<String>,
}

pub(crate) fn storage_info(ctx: &Context, args: StorageInfoArgs) -> Result<u8> {
    let name = store_or_default(ctx, args.store, "store")?;
    let store = open_store(ctx, &name, &args.options, Access::ReadOnly)?;
    let names = if args.collections.is_empty() {
        store.backend.list_collections().in_store(&store, "list collections")?
    } else {
        args.collections
    };
    let collections = names
        .into_iter()
        .map(|name| measure(&store, name))
        .collect::<Result<Vec<_>>>()?;
    let total: u64 = collections
        .iter()
        .filter_map(|c| c.report.as_ref())
        .map(|r| r.total_bytes)
        .sum();
    if args.output.json {
        print_json(&serde_json::json!({
            "store": store.spec.to_string(),
            "total_bytes": total,
            "collections": collections,
        }))?;
        return Ok(EXIT_OK);
    }
    let mut text = format!("{}\n", store.spec);
    text.push_str(&format!(
        "{:<24} {:>10} {:>11} {:>11} {:>11} {:>11} {:>11}\n",
        "COLLECTION", "RECORDS", "VECTORS", "DOCS+META", "INDEX", "TOTAL", "PER RECORD"
    ));
    for c in &collections {
        match (&c.report, c.bytes_per_record) {
            (Some(r), per_record) => text.push_str(&format!(
                "{:<24} {:>10} {:>11} {:>11} {:>11} {:>11} {:>11}\n",
                c.name,
                r.records,
                human_bytes(r.vectors_bytes),
                human_bytes(r.documents_bytes),
                human_bytes(r.index_bytes),
                human_bytes(r.total_bytes),
                per_record.map_or_else(|| "-".to_owned(), |b| human_bytes(b.round() as u64)),
            )),
            (None, _) => text.push_str(&format!(
                "{:<24} {}\n",
                c.name,
                c.unknown.as_deref().unwrap_or("size unknown")
            )),
        }
    }
    text.push_str(&format!("total: {}\n", human_bytes(total)));
    print_text(&text)?;
    Ok(EXIT_OK)
}

fn measure(store: &Store, name: String) -> Result<CollectionStorage> {
    match store.backend.storage(&name) {
        Ok(report) => Ok(CollectionStorage {
            bytes_per_record: (report.records > 0).then(|| report.total_bytes as f64 / report.records as f64),
            report: Some(report),
            unknown: None,
            name,
        }),
        Err(error) if error.code == ErrorCode::Unsupported => Ok(CollectionStorage {
            name,
            report: None,
            bytes_per_record: None,
            unknown: Some(format!("the {} plugin cannot measure storage", store.spec.backend)),
        }),
        Err(error) => Err(error).in_store(store, &format!("measure '{name}'")),
    }
}

pub(crate) fn cleanup(ctx: &Context, args: CleanupArgs) -> Result<u8> {
    let access = if args.confirm {
        Access::ReadWrite
    } else {
        Access::ReadOnly
    };
    let store = open_store(ctx, &args.store, &args.options, access)?;
    let plan = cleanup::plan(&store, &args.collections)?;
    let listing: Vec<String> = plan
        .collections
        .iter()
        .map(|(name, count)| format!("{name} ({count} records)"))
        .collect();
    let size = plan
        .bytes
        .map(human_bytes)
        .unwrap_or_else(|| "an unknown size".to_owned());
    if !args.confirm {
        if args.output.json {
            print_json(&serde_json::json!({ "removed": false, "would_remove": plan }))?;
        } else {
            status(&format!(
                "would remove from {}: {} ({size})\nrun again with --confirm to do it",
                plan.store,
                listing.join(", ")
            ));
        }
        return Ok(EXIT_FINDINGS);
    }
    let report = cleanup::execute(ctx, &store, plan, !args.no_backup)?;
    if args.output.json {
        print_json(&serde_json::json!({ "removed": true, "report": report }))?;
    } else {
        let restore = match &report.backup {
            Some(archive) => format!(
                "backup: {}\nrestore with: ragged backend rollback --backup {} --confirm",
                archive.display(),
                archive.display()
            ),
            None => "no backup was taken (--no-backup)".to_owned(),
        };
        status(&format!(
            "removed from {}: {} ({size})\n{restore}",
            report.plan.store,
            listing.join(", ")
        ));
    }
    Ok(EXIT_OK)
}
