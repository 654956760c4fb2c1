//! Checking that two stores hold the same collections.
//!
//! Every verification compares the descriptions (dimension, metric), the counts and the id sets.
//! Record content is compared either in full, every record through order-independent content
//! digests (summed per bucket of ids, so agreeing stores are compared in constant memory), or on a
//! seeded random sample whose records are fetched from both stores. Optionally,
//! sampled vectors are queried in both stores and the top-k results compared.
//!
//! Ids, documents, metadata keys, strings, integers and booleans must match exactly. Vectors and
//! metadata floats must match bit for bit, except that some stores keep them only approximately:
//! Chroma keeps cosine collections as unit vectors times their norm (a value can move by an ulp),
//! and its number parser cannot produce some doubles (chromadb itself turns 0.9299999999999999
//! into 0.93). Records that are not identical are classified: within the tolerances they count as
//! `approximate`, with how they differ; otherwise as `different`.

use std::collections::{HashMap, HashSet};

use anyhow::{Context as _, Result};
use ragged_plugin_api::arrow::batch_to_records;
use ragged_plugin_api::{Capabilities, ErrorCode, ExtractRequest, Record};
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::records::{RecordDigest, collect_records, read_id_stream, read_stream, record_digest};
use crate::store::{InStore, Store};

/// How many mismatching ids a report names.
const NAMED_MISMATCHES: usize = 10;
/// Records fetched per request when comparing records one by one.
const FETCH_CHUNK: usize = 1000;
/// Neighbours compared per query in the query-consistency check.
const QUERY_K: u32 = 10;

/// How far two records may differ and still match.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tolerance {
    /// A vector that is not bit-exact still matches when `1 - cosine` is at most this; 0 demands
    /// exact bits.
    pub vector_tolerance: f64,
    /// A metadata float still matches when it is at most this many ulps away; 0 demands exact bits.
    pub float_ulps: u64,
}

impl Tolerance {
    /// Everything bit for bit.
    pub const EXACT: Tolerance = Tolerance {
        vector_tolerance: 0.0,
        float_ulps: 0,
    };
}

impl Default for Tolerance {
    fn default() -> Self {
        Tolerance {
            vector_tolerance: 1e-6,
            float_ulps: 1,
        }
    }
}

/// What a verification checks.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VerifyOptions {
    /// How far records may differ.
    pub tolerance: Tolerance,
    /// Compare this fraction of the records, sampled at random; `None` compares every record.
    pub sample_rate: Option<f64>,
    /// Collections with fewer records than this are compared in full even when sampling.
    pub full_below: u64,
    /// Query this many sampled vectors in both stores and compare the top-10 results.
    pub queries: u32,
    /// The query check fails when the mean top-k overlap is below this fraction.
    pub min_overlap: f64,
    /// Seed of the samples (reported, so a run can be repeated).
    pub seed: u64,
}

impl VerifyOptions {
    /// Every record, bit for bit, no queries: what tests and `--exact --full` ask for.
    pub fn full(tolerance: Tolerance) -> VerifyOptions {
        VerifyOptions {
            tolerance,
            sample_rate: None,
            full_below: 0,
            queries: 0,
            min_overlap: 0.0,
            seed: 0,
        }
    }

    /// The sample rate for a collection of `count` records, or `None` for a full comparison.
    fn rate_for(&self, count: u64) -> Option<f64> {
        self.sample_rate.filter(|_| count >= self.full_below)
    }
}

/// The comparison of one collection.
#[derive(Debug, Clone, Serialize)]
pub struct CollectionVerification {
    /// The collection.
    pub name: String,
    /// Whether everything matched.
    pub ok: bool,
    /// `full` (every record) or `sampled`.
    pub mode: &'static str,
    /// The fraction of records sampled, when sampling.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sample_rate: Option<f64>,
    /// The seed of the samples.
    pub seed: u64,
    /// Records in the first store.
    pub source_count: u64,
    /// Records in the second store.
    pub target_count: u64,
    /// Whether dimension and metric are the same.
    pub description_matches: bool,
    /// Records whose content was compared (every record present in both, or the sample).
    pub compared: u64,
    /// How the compared records match.
    #[serde(flatten)]
    pub records: Tally,
    /// Cosine similarity of the compared records' vectors.
    pub vector_similarity: Option<SimilarityStats>,
    /// Records only in the first store.
    pub missing: u64,
    /// Records only in the second store.
    pub extra: u64,
    /// Whether the stores answer queries alike, when asked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queries: Option<QueryCheck>,
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

/// Compares a record with what another store holds for the same id; also returns the vectors'
/// cosine similarity (exactly 1 for bit-identical vectors).
pub fn compare_records(want: &Record, got: &Record, tolerance: &Tolerance) -> (RecordMatch, f64) {
    let vector_differs = want.embedding.len() != got.embedding.len()
        || want
            .embedding
            .iter()
            .zip(&got.embedding)
            .any(|(a, b)| a.to_bits() != b.to_bits());
    let similarity = if vector_differs {
        ragged_embed::cosine_similarity(&want.embedding, &got.embedding)
    } else {
        1.0
    };
    let vector_ok =
        !vector_differs || (tolerance.vector_tolerance > 0.0 && 1.0 - similarity <= tolerance.vector_tolerance);
    let metadata = compare_metadata(want.metadata.as_deref(), got.metadata.as_deref(), tolerance.float_ulps);
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
    pub fn add(&mut self, outcome: RecordMatch) {
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

/// The distribution of the cosine similarity between vectors and their counterparts.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SimilarityStats {
    /// The lowest similarity.
    pub min: f64,
    /// The mean similarity.
    pub mean: f64,
    /// 95% of the vectors are at least this similar (the 5th percentile, nearest rank).
    pub p95: f64,
}

/// Cosine similarities as they are measured; bit-identical vectors are only counted.
#[derive(Debug, Clone, Default)]
pub struct Similarities {
    identical: u64,
    measured: Vec<f64>,
}

impl Similarities {
    /// Adds one similarity.
    pub fn add(&mut self, similarity: f64) {
        if similarity == 1.0 {
            self.identical += 1;
        } else {
            self.measured.push(similarity);
        }
    }

    /// Adds `n` bit-identical vectors.
    pub fn add_identical(&mut self, n: u64) {
        self.identical += n;
    }

    /// Min, mean and 95th percentile, or `None` when nothing was measured.
    pub fn stats(&self) -> Option<SimilarityStats> {
        let n = self.identical + self.measured.len() as u64;
        if n == 0 {
            return None;
        }
        let mut sorted = self.measured.clone();
        sorted.sort_by(f64::total_cmp);
        let rank = ((n as f64) * 0.05).ceil().max(1.0) as usize;
        let sum: f64 = sorted.iter().sum::<f64>() + self.identical as f64;
        Some(SimilarityStats {
            min: sorted.first().copied().unwrap_or(1.0),
            mean: sum / n as f64,
            p95: sorted.get(rank - 1).copied().unwrap_or(1.0),
        })
    }
}

/// How alike two stores answer nearest-neighbour queries for the same vectors.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QueryCheck {
    /// Queries run in both stores.
    pub queries: u32,
    /// Neighbours asked per query.
    pub k: u32,
    /// Mean fraction of the first store's top-k ids that the second store also returned.
    pub mean_overlap: f64,
    /// The lowest such fraction.
    pub min_overlap: f64,
    /// Whether the mean reaches the required overlap (or the check was skipped).
    pub ok: bool,
    /// Why no query ran, when none did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
}

/// Fraction of `expected` ids found in `got` (1 when both are empty).
pub fn top_k_overlap(expected: &[String], got: &[String]) -> f64 {
    if expected.is_empty() {
        return if got.is_empty() { 1.0 } else { 0.0 };
    }
    let got: HashSet<&String> = got.iter().collect();
    expected.iter().filter(|id| got.contains(id)).count() as f64 / expected.len().max(got.len()) as f64
}

/// What the comparison of one collection found so far.
#[derive(Default)]
struct Findings {
    compared: u64,
    records: Tally,
    similarities: Similarities,
    missing: u64,
    extra: u64,
    first_mismatches: Vec<String>,
}

impl Findings {
    fn note(&mut self, kind: &str, id: &str) {
        if self.first_mismatches.len() < NAMED_MISMATCHES {
            self.first_mismatches.push(format!("{kind}: {id}"));
        }
    }

    fn note_missing(&mut self, missing: HashSet<String>) {
        self.missing = missing.len() as u64;
        let mut ids: Vec<String> = missing.into_iter().collect();
        ids.sort();
        for id in ids.iter().take(NAMED_MISMATCHES) {
            self.note("missing", id);
        }
    }

    /// Compares records present in both stores.
    fn compare(&mut self, want: &Record, got: &Record, tolerance: &Tolerance) {
        let (outcome, similarity) = compare_records(want, got, tolerance);
        if let RecordMatch::Different { vector } = outcome {
            self.note(if vector { "different vector" } else { "different" }, &want.id);
        }
        self.compared += 1;
        self.records.add(outcome);
        self.similarities.add(similarity);
    }
}

/// Compares collection `name` in both stores.
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
    let sample = match options.rate_for(source_info.count) {
        Some(rate) => {
            let n = ((source_info.count as f64) * rate).ceil().min(source_info.count as f64) as u64;
            match source.backend.sample(name, n, options.seed) {
                Ok(stream) => Some((rate, stream)),
                // A store that cannot sample is compared in full.
                Err(error) if error.code == ErrorCode::Unsupported => None,
                Err(error) => return Err(error).in_store(source, &format!("sample '{name}'")),
            }
        }
        None => None,
    };
    let mut findings = Findings::default();
    let sample_rate = match sample {
        Some((rate, stream)) => {
            compare_ids(source, target, name, &mut findings)?;
            let batches = read_stream(stream, Some(source_info.dimension))
                .with_context(|| format!("{}: sample '{name}'", source.spec))?;
            for batch in batches {
                for wanted in batch_to_records(&batch?)?.chunks(FETCH_CHUNK) {
                    let ids: Vec<String> = wanted.iter().map(|r| r.id.clone()).collect();
                    let got = fetch(target, name, &ids)?;
                    // A sampled id the target lacks is already counted as missing.
                    for want in wanted {
                        if let Some(got) = got.get(&want.id) {
                            findings.compare(want, got, &options.tolerance);
                        }
                    }
                }
            }
            Some(rate)
        }
        None => {
            compare_digests(
                source,
                target,
                name,
                source_info.dimension,
                &options.tolerance,
                &mut findings,
            )?;
            None
        }
    };
    let queries = (options.queries > 0)
        .then(|| compare_queries(source, target, name, options))
        .transpose()?;
    let description_matches =
        source_info.dimension == target_info.dimension && source_info.metric == target_info.metric;
    Ok(CollectionVerification {
        name: name.to_owned(),
        ok: description_matches
            && findings.missing == 0
            && findings.extra == 0
            && findings.records.different == 0
            && queries.as_ref().is_none_or(|q| q.ok),
        mode: if sample_rate.is_some() { "sampled" } else { "full" },
        sample_rate,
        seed: options.seed,
        source_count: source_info.count,
        target_count: target_info.count,
        description_matches,
        compared: findings.compared,
        records: findings.records,
        vector_similarity: findings.similarities.stats(),
        missing: findings.missing,
        extra: findings.extra,
        queries,
        first_mismatches: findings.first_mismatches,
    })
}

/// Records are hashed by id into this many buckets, each summarised by an order-independent sum
/// of its records' digests, so two stores are compared in constant memory when they agree.
const BUCKETS: usize = 4096;

/// The order-independent summary of the records in one bucket: their number and the lane-wise
/// wrapping sum of their digests (a sum, unlike a XOR, does not cancel duplicates).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct BucketSum {
    count: u64,
    sum: [u64; 4],
}

impl BucketSum {
    fn add(&mut self, digest: &[u8; 32]) {
        self.count += 1;
        for (lane, bytes) in self.sum.iter_mut().zip(digest.chunks_exact(8)) {
            let mut word = [0u8; 8];
            word.copy_from_slice(bytes);
            *lane = lane.wrapping_add(u64::from_le_bytes(word));
        }
    }
}

/// The bucket of an id: the same in every store and every run.
fn bucket_of(id: &str) -> usize {
    bucket_of_digest(&Sha256::digest(id.as_bytes()).into())
}

/// The bucket of the id whose SHA-256 is `digest`.
fn bucket_of_digest(digest: &[u8; 32]) -> usize {
    usize::from(u16::from_le_bytes([digest[0], digest[1]])) % BUCKETS
}

/// One pass over a store: the summary of every bucket under `digest`.
fn bucket_sums(
    store: &Store,
    name: &str,
    dimension: u32,
    digest: impl Fn(&Record) -> [u8; 32],
) -> Result<Vec<BucketSum>> {
    let mut sums = vec![BucketSum::default(); BUCKETS];
    for_each_record(store, name, dimension, |record| {
        sums[bucket_of(&record.id)].add(&digest(&record));
    })?;
    Ok(sums)
}

/// Which buckets differ between two stores, and how many records the equal buckets hold.
fn differing_buckets(source: &[BucketSum], target: &[BucketSum]) -> (Vec<bool>, u64) {
    let differing: Vec<bool> = source.iter().zip(target).map(|(a, b)| a != b).collect();
    let equal_records = source
        .iter()
        .zip(&differing)
        .filter(|(_, differs)| !**differs)
        .map(|(sum, _)| sum.count)
        .sum();
    (differing, equal_records)
}

/// Every record through its digest. Buckets whose sums agree are identical; only the records of
/// buckets that differ are held in memory and compared by id, and only records whose digests
/// differ are fetched again, to tell approximate from different.
fn compare_digests(
    source: &Store,
    target: &Store,
    name: &str,
    dimension: u32,
    tolerance: &Tolerance,
    findings: &mut Findings,
) -> Result<()> {
    let full = |record: &Record| record_digest(record).full;
    let (differing, identical) = differing_buckets(
        &bucket_sums(source, name, dimension, full)?,
        &bucket_sums(target, name, dimension, full)?,
    );
    findings.compared += identical;
    findings.records.exact += identical;
    findings.similarities.add_identical(identical);
    if !differing.contains(&true) {
        return Ok(());
    }
    let mut digests: HashMap<String, RecordDigest> = HashMap::new();
    for_each_record(source, name, dimension, |record| {
        if differing[bucket_of(&record.id)] {
            digests.insert(record.id.clone(), record_digest(&record));
        }
    })?;
    let mut mismatched = Vec::new();
    let mut identical = 0u64;
    for_each_record(target, name, dimension, |record| {
        if !differing[bucket_of(&record.id)] {
            return;
        }
        match digests.remove(&record.id) {
            None => {
                findings.extra += 1;
                findings.note("extra", &record.id);
            }
            Some(expected) if expected.full == record_digest(&record).full => identical += 1,
            Some(_) => mismatched.push(record.id),
        }
    })?;
    findings.note_missing(digests.into_keys().collect());
    findings.compared += identical;
    findings.records.exact += identical;
    findings.similarities.add_identical(identical);
    for chunk in mismatched.chunks(FETCH_CHUNK) {
        let from_source = fetch(source, name, chunk)?;
        let from_target = fetch(target, name, chunk)?;
        for id in chunk {
            match (from_source.get(id), from_target.get(id)) {
                (Some(want), Some(got)) => findings.compare(want, got, tolerance),
                _ => {
                    findings.records.different += 1;
                    findings.note("different", id);
                }
            }
        }
    }
    Ok(())
}

/// The id sets of both stores: which ids are missing from the target and which are extra. Like
/// [`compare_digests`], only the ids of buckets whose sums differ are held in memory.
fn compare_ids(source: &Store, target: &Store, name: &str, findings: &mut Findings) -> Result<()> {
    let (differing, _) = differing_buckets(&id_bucket_sums(source, name)?, &id_bucket_sums(target, name)?);
    if !differing.contains(&true) {
        return Ok(());
    }
    let mut ids = HashSet::new();
    for_each_id(source, name, |id| {
        if differing[bucket_of(id)] {
            ids.insert(id.to_owned());
        }
    })?;
    for_each_id(target, name, |id| {
        if differing[bucket_of(id)] && !ids.remove(id) {
            findings.extra += 1;
            findings.note("extra", id);
        }
    })?;
    findings.note_missing(ids);
    Ok(())
}

/// One pass over a store's ids: the summary of every bucket under the ids' own digests.
fn id_bucket_sums(store: &Store, name: &str) -> Result<Vec<BucketSum>> {
    let mut sums = vec![BucketSum::default(); BUCKETS];
    for_each_id(store, name, |id| {
        let digest: [u8; 32] = Sha256::digest(id.as_bytes()).into();
        sums[bucket_of_digest(&digest)].add(&digest);
    })?;
    Ok(sums)
}

/// Queries sampled vectors in both stores and compares the top-k ids.
fn compare_queries(source: &Store, target: &Store, name: &str, options: &VerifyOptions) -> Result<QueryCheck> {
    let skipped = |why: String| QueryCheck {
        queries: 0,
        k: QUERY_K,
        mean_overlap: 0.0,
        min_overlap: 0.0,
        ok: true,
        skipped: Some(why),
    };
    for store in [source, target] {
        if !store.capabilities.contains(Capabilities::QUERY) {
            return Ok(skipped(format!("{} does not answer queries", store.spec)));
        }
    }
    let probes = match source
        .backend
        .sample(name, u64::from(options.queries), options.seed.wrapping_add(1))
    {
        Ok(stream) => collect_records(stream)?,
        Err(error) if error.code == ErrorCode::Unsupported => {
            return Ok(skipped(format!("{} cannot sample vectors to query with", source.spec)));
        }
        Err(error) => return Err(error).in_store(source, &format!("sample '{name}'")),
    };
    if probes.is_empty() {
        return Ok(skipped("the collection is empty".to_owned()));
    }
    let top_k = |store: &Store, vector: &[f32]| -> Result<Vec<String>> {
        Ok(store
            .backend
            .query(name, vector, QUERY_K)
            .in_store(store, &format!("query '{name}'"))?
            .into_iter()
            .map(|hit| hit.id)
            .collect())
    };
    let mut overlaps = Vec::with_capacity(probes.len());
    for probe in &probes {
        overlaps.push(top_k_overlap(
            &top_k(source, &probe.embedding)?,
            &top_k(target, &probe.embedding)?,
        ));
    }
    let mean_overlap = overlaps.iter().sum::<f64>() / overlaps.len() as f64;
    Ok(QueryCheck {
        queries: overlaps.len() as u32,
        k: QUERY_K,
        mean_overlap,
        min_overlap: overlaps.iter().copied().fold(1.0, f64::min),
        ok: mean_overlap >= options.min_overlap,
        skipped: None,
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

/// Visits every record; `dimension` 0 skips the dimension check.
/// Hands every id of a collection to `visit`, through an `ids_only` extraction.
fn for_each_id(store: &Store, name: &str, mut visit: impl FnMut(&str)) -> Result<()> {
    let stream = store
        .backend
        .extract(name, &ExtractRequest::ids(8192))
        .in_store(store, &format!("extract the ids of '{name}'"))?;
    let batches = read_id_stream(stream).with_context(|| format!("{}: extract the ids of '{name}'", store.spec))?;
    for ids in batches {
        ids?.iter().flatten().for_each(&mut visit);
    }
    Ok(())
}

pub(crate) fn for_each_record(store: &Store, name: &str, dimension: u32, mut visit: impl FnMut(Record)) -> Result<()> {
    let request = ExtractRequest::records(4096, 0);
    let stream = store
        .backend
        .extract(name, &request)
        .in_store(store, &format!("extract '{name}'"))?;
    let batches = read_stream(stream, (dimension > 0).then_some(dimension))
        .with_context(|| format!("{}: extract '{name}'", store.spec))?;
    for batch in batches {
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

    #[test]
    fn similarity_stats_by_hand() {
        assert_eq!(Similarities::default().stats(), None);
        // 20 values: 0.5, 0.9 and eighteen identical vectors. Nearest rank of the 5th percentile
        // is ceil(20 * 0.05) = 1, the lowest value; 95% of the vectors are at least that similar.
        let mut s = Similarities::default();
        s.add(0.9);
        s.add(0.5);
        s.add(1.0);
        s.add_identical(17);
        let stats = s.stats().expect("measured");
        assert_eq!(stats.min, 0.5);
        assert_eq!(stats.p95, 0.5);
        assert!((stats.mean - (0.5 + 0.9 + 18.0) / 20.0).abs() < 1e-12, "{stats:?}");
        // 21 values: rank ceil(1.05) = 2, the second lowest.
        s.add_identical(1);
        assert_eq!(s.stats().expect("measured").p95, 0.9);
        // 41 values: rank ceil(2.05) = 3, past the measured ones, so an identical vector.
        s.add_identical(20);
        assert_eq!(s.stats().expect("measured").p95, 1.0);
    }

    #[test]
    fn bucket_sums_ignore_order_but_not_duplicates_or_changes() {
        let digests: Vec<[u8; 32]> = (0u8..5).map(|i| Sha256::digest([i]).into()).collect();
        let sum = |order: &[usize]| {
            let mut bucket = BucketSum::default();
            for &i in order {
                bucket.add(&digests[i]);
            }
            bucket
        };
        assert_eq!(sum(&[0, 1, 2, 3]), sum(&[3, 1, 0, 2]));
        assert_ne!(sum(&[0, 1, 2, 3]), sum(&[0, 1, 2, 4]));
        // A XOR would let two copies of a record cancel out; a sum and a count do not.
        assert_ne!(sum(&[0, 1]), sum(&[0, 1, 2, 2]));
        let (differing, equal) = differing_buckets(&[sum(&[0, 1]), sum(&[2])], &[sum(&[1, 0]), sum(&[3])]);
        assert_eq!((differing, equal), (vec![false, true], 2));
        assert_eq!(bucket_of("doc-00000001"), bucket_of("doc-00000001"));
        assert!(bucket_of("doc-00000001") < BUCKETS);
    }

    #[test]
    fn top_k_overlap_counts_shared_ids() {
        let ids = |list: &[&str]| list.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(
            top_k_overlap(&ids(&["a", "b", "c", "d"]), &ids(&["d", "c", "b", "a"])),
            1.0
        );
        assert_eq!(
            top_k_overlap(&ids(&["a", "b", "c", "d"]), &ids(&["a", "x", "c", "y"])),
            0.5
        );
        assert_eq!(top_k_overlap(&ids(&["a", "b"]), &ids(&["a"])), 0.5);
        assert_eq!(top_k_overlap(&ids(&["a"]), &ids(&["a", "b"])), 0.5);
        assert_eq!(top_k_overlap(&[], &[]), 1.0);
        assert_eq!(top_k_overlap(&[], &ids(&["a"])), 0.0);
    }

    #[test]
    fn small_collections_are_compared_in_full_even_when_sampling() {
        let options = VerifyOptions {
            sample_rate: Some(0.1),
            full_below: 1000,
            ..VerifyOptions::full(Tolerance::default())
        };
        assert_eq!(options.rate_for(999), None);
        assert_eq!(options.rate_for(1000), Some(0.1));
        assert_eq!(VerifyOptions::full(Tolerance::EXACT).rate_for(1_000_000), None);
    }
}
