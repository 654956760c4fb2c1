//! Checking that two stores hold the same collections: counts, descriptions and every record
//! through an order-independent content digest.
//!
//! Ids, documents and metadata must match exactly. Vectors must match bit for bit, except that a
//! store may keep a vector only approximately (Chroma keeps cosine collections as unit vectors
//! times their norm, which can move a value by an ulp): such records are fetched from both stores,
//! measured by cosine similarity and counted as `approximate` when within the tolerance.

use std::collections::HashMap;

use anyhow::Result;
use ragged_plugin_api::arrow::batch_to_records;
use ragged_plugin_api::{ExtractRequest, Record};
use serde::Serialize;

use crate::records::{RecordDigest, collect_records, cosine_similarity, read_stream, record_digest};
use crate::store::{InStore, Store};

/// How many mismatching ids a report names.
const NAMED_MISMATCHES: usize = 10;
/// Records fetched per request when measuring approximate vectors.
const FETCH_CHUNK: usize = 1000;

/// How strict a comparison is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VerifyOptions {
    /// A vector that is not bit-exact still matches when `1 - cosine` is at most this; 0 demands
    /// exact bits.
    pub vector_tolerance: f64,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        VerifyOptions { vector_tolerance: 1e-6 }
    }
}

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
    /// Records identical in both stores, vectors bit for bit.
    pub exact: u64,
    /// Records identical but for vectors within the tolerance.
    pub approximate: u64,
    /// The lowest cosine similarity among approximate vectors.
    pub min_vector_cosine: Option<f64>,
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
pub fn compare_collection(
    source: &Store,
    target: &Store,
    name: &str,
    options: &VerifyOptions,
) -> Result<CollectionVerification> {
    let source_info = source
        .backend
        .describe(name)
        .in_store(source, &format!("describe '{name}'"))?;
    let target_info = target
        .backend
        .describe(name)
        .in_store(target, &format!("describe '{name}'"))?;
    let mut digests: HashMap<String, RecordDigest> = HashMap::with_capacity(source_info.count as usize);
    for_each_record(source, name, source_info.dimension, |record| {
        digests.insert(record.id.clone(), record_digest(&record));
    })?;
    let (mut exact, mut extra, mut different) = (0u64, 0u64, 0u64);
    let mut vector_only = Vec::new();
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
            Some(expected) => {
                let got = record_digest(&record);
                if got == expected {
                    exact += 1;
                } else if got.content == expected.content {
                    vector_only.push(record.id);
                } else {
                    different += 1;
                    note("different", &record.id);
                }
            }
        }
    })?;
    let mut missing_ids: Vec<&String> = digests.keys().collect();
    missing_ids.sort();
    for id in missing_ids.iter().take(NAMED_MISMATCHES) {
        note("missing", id);
    }
    let (mut approximate, mut min_vector_cosine) = (0u64, None::<f64>);
    for chunk in vector_only.chunks(FETCH_CHUNK) {
        let from_source = fetch(source, name, chunk)?;
        let from_target = fetch(target, name, chunk)?;
        for id in chunk {
            let similarity = match (from_source.get(id.as_str()), from_target.get(id.as_str())) {
                (Some(a), Some(b)) => cosine_similarity(&a.embedding, &b.embedding),
                _ => 0.0,
            };
            min_vector_cosine = Some(min_vector_cosine.map_or(similarity, |m| m.min(similarity)));
            if 1.0 - similarity <= options.vector_tolerance && options.vector_tolerance > 0.0 {
                approximate += 1;
            } else {
                different += 1;
                note("different vector", id);
            }
        }
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
        exact,
        approximate,
        min_vector_cosine,
        missing,
        extra,
        different,
        first_mismatches,
    })
}

fn fetch(store: &Store, name: &str, ids: &[String]) -> Result<HashMap<String, Record>> {
    let stream = store
        .backend
        .fetch(name, ids)
        .in_store(store, &format!("fetch from '{name}'"))?;
    Ok(collect_records(stream)?
        .into_iter()
        .map(|r| (r.id.clone(), r))
        .collect())
}

fn for_each_record(store: &Store, name: &str, dimension: u32, mut visit: impl FnMut(Record)) -> Result<()> {
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
