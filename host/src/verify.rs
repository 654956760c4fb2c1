//! Checking that two stores hold the same collections: counts, descriptions and every record
//! through an order-independent content digest.

use std::collections::HashMap;

use anyhow::Result;
use ragged_plugin_api::ExtractRequest;
use ragged_plugin_api::arrow::batch_to_records;
use serde::Serialize;

use crate::records::{read_stream, record_digest};
use crate::store::{InStore, Store};

/// How many mismatching ids a report names per kind.
const NAMED_MISMATCHES: usize = 10;

/// The comparison of one collection.
#[derive(Debug, Clone, Serialize)]
pub struct CollectionVerification {
    /// The collection.
    pub name: String,
    /// Whether everything matched.
    pub ok: bool,
    /// Records in the first store.
    pub source_count: u64,
    /// Records in the second store.
    pub target_count: u64,
    /// Whether dimension and metric are the same.
    pub description_matches: bool,
    /// Records only in the first store.
    pub missing: u64,
    /// Records only in the second store.
    pub extra: u64,
    /// Records in both whose content differs.
    pub different: u64,
    /// The first mismatching ids, by kind.
    pub first_mismatches: Vec<String>,
}

/// Compares collection `name` in both stores record by record.
pub fn compare_collection(source: &Store, target: &Store, name: &str) -> Result<CollectionVerification> {
    let source_info = source
        .backend
        .describe(name)
        .in_store(source, &format!("describe '{name}'"))?;
    let target_info = target
        .backend
        .describe(name)
        .in_store(target, &format!("describe '{name}'"))?;
    let mut digests: HashMap<String, [u8; 32]> = HashMap::with_capacity(source_info.count as usize);
    for_each_record(source, name, source_info.dimension, |record| {
        digests.insert(record.id.clone(), record_digest(&record));
    })?;
    let (mut extra, mut different) = (0u64, 0u64);
    let mut first_mismatches = Vec::new();
    let mut note = |kind: &str, id: &str| {
        if first_mismatches.len() < NAMED_MISMATCHES {
            first_mismatches.push(format!("{kind}: {id}"));
        }
    };
    for_each_record(target, name, target_info.dimension, |record| {
        match digests.remove(&record.id) {
            None => {
                extra += 1;
                note("extra", &record.id);
            }
            Some(digest) if digest != record_digest(&record) => {
                different += 1;
                note("different", &record.id);
            }
            Some(_) => {}
        }
    })?;
    let mut missing_ids: Vec<&String> = digests.keys().collect();
    missing_ids.sort();
    for id in missing_ids.iter().take(NAMED_MISMATCHES) {
        note("missing", id);
    }
    let description_matches =
        source_info.dimension == target_info.dimension && source_info.metric == target_info.metric;
    let missing = digests.len() as u64;
    Ok(CollectionVerification {
        name: name.to_owned(),
        ok: description_matches && missing == 0 && extra == 0 && different == 0,
        source_count: source_info.count,
        target_count: target_info.count,
        description_matches,
        missing,
        extra,
        different,
        first_mismatches,
    })
}

fn for_each_record(
    store: &Store,
    name: &str,
    dimension: u32,
    mut visit: impl FnMut(ragged_plugin_api::Record),
) -> Result<()> {
    let request = ExtractRequest {
        batch_size: 4096,
        start: 0,
    };
    let stream = store
        .backend
        .extract(name, &request)
        .in_store(store, &format!("extract '{name}'"))?;
    for batch in read_stream(stream, Some(dimension))? {
        batch_to_records(&batch?)?.into_iter().for_each(&mut visit);
    }
    Ok(())
}
