//! Checking that two stores hold the same collections: counts, descriptions and every record
//! through an order-independent content digest.
//!
//! Ids, documents, metadata keys, strings, integers and booleans must match exactly. Vectors and
//! metadata floats must match bit for bit, except that some stores keep them only approximately:
//! Chroma keeps cosine collections as unit vectors times their norm (a value can move by an ulp),
//! and its number parser cannot produce some doubles (chromadb itself turns 0.9299999999999999
//! into 0.93). Records whose digests differ are fetched from both stores and classified: within
//! the tolerances they count as `approximate`, with how they differ; otherwise as `different`.

use std::collections::HashMap;

use anyhow::Result;
use ragged_plugin_api::arrow::batch_to_records;
use ragged_plugin_api::{ExtractRequest, Record};
use serde::Serialize;
use serde_json::Value;

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
    /// A metadata float still matches when it is at most this many ulps away; 0 demands exact bits.
    pub float_ulps: u64,
}

impl VerifyOptions {
    /// Everything bit for bit.
    pub const EXACT: VerifyOptions = VerifyOptions {
        vector_tolerance: 0.0,
        float_ulps: 0,
    };
}

impl Default for VerifyOptions {
    fn default() -> Self {
        VerifyOptions {
            vector_tolerance: 1e-6,
            float_ulps: 1,
        }
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
    /// How the records present in both stores compare.
    #[serde(flatten)]
    pub records: Tally,
    /// Records only in the first store.
    pub missing: u64,
    /// Records only in the second store.
    pub extra: u64,
    /// The first mismatching ids, by kind.
    pub first_mismatches: Vec<String>,
}

/// Counts of how records compare with their counterparts.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Tally {
    /// Identical, vectors and floats bit for bit.
    pub exact: u64,
    /// Identical but for vectors or metadata floats within the tolerances.
    pub approximate: u64,
    /// Approximate records whose vector is not bit-exact.
    pub inexact_vectors: u64,
    /// Approximate records with a metadata float a few ulps away.
    pub rounded_floats: u64,
    /// The lowest cosine similarity among vectors that are not bit-exact.
    pub min_vector_cosine: Option<f64>,
    /// Records whose content differs beyond the tolerances.
    pub different: u64,
}

/// How one record compares with its counterpart.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RecordMatch {
    /// Bit for bit.
    Exact,
    /// Within the tolerances.
    Approximate {
        /// The vector is not bit-exact.
        inexact_vector: bool,
        /// A metadata float is a few ulps away.
        rounded_floats: bool,
    },
    /// Beyond the tolerances; `vector` says whether the vector is what differs.
    Different {
        /// The vector is beyond the tolerance.
        vector: bool,
    },
}

/// Compares a record with what another store holds for the same id.
pub fn compare_records(want: &Record, got: &Record, options: &VerifyOptions) -> (RecordMatch, Option<f64>) {
    let vector_differs = want.embedding.len() != got.embedding.len()
        || want
            .embedding
            .iter()
            .zip(&got.embedding)
            .any(|(a, b)| a.to_bits() != b.to_bits());
    let similarity = vector_differs.then(|| cosine_similarity(&want.embedding, &got.embedding));
    let vector_ok = similarity.is_none_or(|s| options.vector_tolerance > 0.0 && 1.0 - s <= options.vector_tolerance);
    let metadata = compare_metadata(want.metadata.as_deref(), got.metadata.as_deref(), options.float_ulps);
    let outcome =
        if want.id != got.id || want.document != got.document || metadata == MetadataMatch::Different || !vector_ok {
            RecordMatch::Different { vector: !vector_ok }
        } else if vector_differs || metadata == MetadataMatch::RoundedFloats {
            RecordMatch::Approximate {
                inexact_vector: vector_differs,
                rounded_floats: metadata == MetadataMatch::RoundedFloats,
            }
        } else {
            RecordMatch::Exact
        };
    (outcome, similarity)
}

impl Tally {
    /// Counts one comparison.
    pub fn add(&mut self, outcome: RecordMatch, similarity: Option<f64>) {
        if let Some(s) = similarity {
            self.min_vector_cosine = Some(self.min_vector_cosine.map_or(s, |m| m.min(s)));
        }
        match outcome {
            RecordMatch::Exact => self.exact += 1,
            RecordMatch::Approximate {
                inexact_vector,
                rounded_floats,
            } => {
                self.approximate += 1;
                self.inexact_vectors += u64::from(inexact_vector);
                self.rounded_floats += u64::from(rounded_floats);
            }
            RecordMatch::Different { .. } => self.different += 1,
        }
    }
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
    let mut records = Tally::default();
    let mut extra = 0u64;
    let mut mismatched = Vec::new();
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
            Some(expected) if expected.full == record_digest(&record).full => records.exact += 1,
            Some(_) => mismatched.push(record.id),
        }
    })?;
    let mut missing_ids: Vec<&String> = digests.keys().collect();
    missing_ids.sort();
    for id in missing_ids.iter().take(NAMED_MISMATCHES) {
        note("missing", id);
    }
    // Only records whose digests differ are fetched again, to tell approximate from different.
    for chunk in mismatched.chunks(FETCH_CHUNK) {
        let from_source = fetch(source, name, chunk)?;
        let from_target = fetch(target, name, chunk)?;
        for id in chunk {
            let (Some(want), Some(got)) = (from_source.get(id.as_str()), from_target.get(id.as_str())) else {
                records.different += 1;
                note("different", id);
                continue;
            };
            let (outcome, similarity) = compare_records(want, got, options);
            if let RecordMatch::Different { vector } = outcome {
                note(if vector { "different vector" } else { "different" }, id);
            }
            records.add(outcome, similarity);
        }
    }
    let description_matches =
        source_info.dimension == target_info.dimension && source_info.metric == target_info.metric;
    let missing = digests.len() as u64;
    Ok(CollectionVerification {
        name: name.to_owned(),
        ok: description_matches && missing == 0 && extra == 0 && records.different == 0,
        source_count: source_info.count,
        target_count: target_info.count,
        description_matches,
        records,
        missing,
        extra,
        first_mismatches,
    })
}

/// How two metadata objects compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MetadataMatch {
    Exact,
    RoundedFloats,
    Different,
}

/// Compares metadata: same keys and types, equal strings, integers and booleans, floats at most
/// `float_ulps` apart.
fn compare_metadata(want: Option<&str>, got: Option<&str>, float_ulps: u64) -> MetadataMatch {
    let parse = |text: Option<&str>| text.map(|t| serde_json::from_str::<Value>(t).ok());
    match (parse(want), parse(got)) {
        (None, None) => MetadataMatch::Exact,
        (Some(Some(a)), Some(Some(b))) => compare_values(&a, &b, float_ulps),
        _ => MetadataMatch::Different,
    }
}

fn compare_values(want: &Value, got: &Value, float_ulps: u64) -> MetadataMatch {
    let worst = |matches: Vec<MetadataMatch>| {
        if matches.contains(&MetadataMatch::Different) {
            MetadataMatch::Different
        } else if matches.contains(&MetadataMatch::RoundedFloats) {
            MetadataMatch::RoundedFloats
        } else {
            MetadataMatch::Exact
        }
    };
    match (want, got) {
        (Value::Object(a), Value::Object(b)) if a.len() == b.len() => worst(
            a.iter()
                .map(|(key, value)| {
                    b.get(key).map_or(MetadataMatch::Different, |other| {
                        compare_values(value, other, float_ulps)
                    })
                })
                .collect(),
        ),
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            worst(a.iter().zip(b).map(|(x, y)| compare_values(x, y, float_ulps)).collect())
        }
        (Value::Number(a), Value::Number(b)) if a.is_f64() && b.is_f64() => {
            let (x, y) = (a.as_f64().unwrap_or(f64::NAN), b.as_f64().unwrap_or(f64::NAN));
            if x.to_bits() == y.to_bits() {
                MetadataMatch::Exact
            } else if x.is_finite()
                && y.is_finite()
                && x.signum() == y.signum()
                && x.to_bits().abs_diff(y.to_bits()) <= float_ulps
            {
                MetadataMatch::RoundedFloats
            } else {
                MetadataMatch::Different
            }
        }
        (a, b) if a == b => MetadataMatch::Exact,
        _ => MetadataMatch::Different,
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn check(want: &str, got: &str, ulps: u64, expected: MetadataMatch) {
        assert_eq!(
            compare_metadata(Some(want), Some(got), ulps),
            expected,
            "{want} vs {got}"
        );
    }

    #[test]
    fn metadata_floats_may_round_by_an_ulp_nothing_else_may_change() {
        let exact = r#"{"a":1,"f":0.9299999999999999,"t":["x"],"b":true}"#;
        check(
            exact,
            r#"{"b":true,"t":["x"],"f":0.9299999999999999,"a":1}"#,
            1,
            MetadataMatch::Exact,
        );
        check(
            exact,
            r#"{"a":1,"f":0.93,"t":["x"],"b":true}"#,
            1,
            MetadataMatch::RoundedFloats,
        );
        check(
            exact,
            r#"{"a":1,"f":0.93,"t":["x"],"b":true}"#,
            0,
            MetadataMatch::Different,
        );
        check(
            exact,
            r#"{"a":1,"f":0.94,"t":["x"],"b":true}"#,
            1,
            MetadataMatch::Different,
        );
        check(
            exact,
            r#"{"a":1.0,"f":0.9299999999999999,"t":["x"],"b":true}"#,
            1,
            MetadataMatch::Different,
        );
        check(
            exact,
            r#"{"a":1,"f":0.9299999999999999,"t":["y"],"b":true}"#,
            1,
            MetadataMatch::Different,
        );
        check(
            exact,
            r#"{"a":1,"f":0.9299999999999999,"t":["x"]}"#,
            1,
            MetadataMatch::Different,
        );
        check(
            r#"{"f":[0.5,2.0]}"#,
            r#"{"f":[0.5,2.0000000000000004]}"#,
            1,
            MetadataMatch::RoundedFloats,
        );
        check(r#"{"f":-0.0}"#, r#"{"f":0.0}"#, 1, MetadataMatch::Different);
        assert_eq!(compare_metadata(None, Some("{}"), 1), MetadataMatch::Different);
        assert_eq!(compare_metadata(None, None, 0), MetadataMatch::Exact);
    }
}
