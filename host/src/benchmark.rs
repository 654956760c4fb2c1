//! Benchmarking stores on the same records: ingest speed and memory, query latency and
//! throughput (one query at a time, and batches of concurrent queries), recall against exact
//! neighbours, and storage. Each store is a fresh one in a temporary directory, removed afterwards.

use std::time::Instant;

use anyhow::Result;
use ragged_plugin_api::arrow::{canonical_schema, records_to_batch};
use ragged_plugin_api::{
    Access, BatchStream, Capabilities, CollectionInfo, DistanceMetric, LoadMode, LoadRequest, Record,
};
use serde::Serialize;

use crate::context::Context;
use crate::store::{InStore, Store, StoreSpec};

/// Neighbours asked per query, and the k of recall@k.
pub const K: u32 = 10;
/// Queries issued together in the batch measurement.
pub const BATCH: usize = 10;
/// Records per batch handed to a store while ingesting.
const INGEST_BATCH: usize = 1000;

/// The records and queries every store is measured on.
#[derive(Debug, Clone)]
pub struct Workload {
    /// What the records are (for the report).
    pub description: String,
    /// The records ingested.
    pub records: Vec<Record>,
    /// The query vectors.
    pub queries: Vec<Vec<f32>>,
    /// Embedding length.
    pub dimension: u32,
    /// The metric of the collection.
    pub metric: DistanceMetric,
}

/// Distribution of latencies, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Latency {
    /// Median.
    pub p50_ms: f64,
    /// 95th percentile.
    pub p95_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Queries per second over the whole measurement.
    pub qps: f64,
}

/// One store's figures.
#[derive(Debug, Clone, Serialize)]
pub struct BackendResult {
    /// The plugin.
    pub backend: String,
    /// Records per second while loading.
    pub ingest_records_per_second: f64,
    /// Wall time of the load.
    pub ingest_seconds: f64,
    /// How far the process's resident memory rose above its level before the load, at its peak
    /// during the load (Linux only; earlier backends' libraries are not counted).
    pub ingest_memory_bytes: Option<u64>,
    /// One query at a time.
    pub query: Option<Latency>,
    /// Batches of [`BATCH`] concurrent queries; latencies are per batch.
    pub batch_query: Option<Latency>,
    /// Mean recall@[`K`] against exact neighbours.
    pub recall_at_10: Option<f64>,
    /// Bytes the collection occupies.
    pub storage_bytes: Option<u64>,
    /// Bytes per record.
    pub bytes_per_record: Option<f64>,
    /// Why a measurement is missing, when one is.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// The value at percentile `p` (0–100) of ascending `sorted` values, by nearest rank.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1]
}

/// Latency figures of `seconds`, one entry per operation that handled `per_operation` queries.
pub fn latency(mut seconds: Vec<f64>, per_operation: usize) -> Latency {
    seconds.sort_by(f64::total_cmp);
    let total: f64 = seconds.iter().sum();
    let ms: Vec<f64> = seconds.iter().map(|s| s * 1000.0).collect();
    Latency {
        p50_ms: percentile(&ms, 50.0),
        p95_ms: percentile(&ms, 95.0),
        p99_ms: percentile(&ms, 99.0),
        qps: if total > 0.0 {
            (seconds.len() * per_operation) as f64 / total
        } else {
            f64::INFINITY
        },
    }
}

/// The ids of the `k` records nearest to `query`, by brute force (ties broken by position).
pub fn exact_neighbours(records: &[Record], query: &[f32], metric: DistanceMetric, k: usize) -> Vec<String> {
    let mut scored: Vec<(f32, usize)> = records
        .iter()
        .enumerate()
        .map(|(i, r)| (metric.distance(query, &r.embedding), i))
        .collect();
    scored.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    scored.into_iter().take(k).map(|(_, i)| records[i].id.clone()).collect()
}

/// The fraction of `truth` found in `got`.
pub fn recall(truth: &[String], got: &[String]) -> f64 {
    if truth.is_empty() {
        return 1.0;
    }
    truth.iter().filter(|id| got.contains(id)).count() as f64 / truth.len() as f64
}

/// Measures one backend on `workload`, in a store created in a temporary directory.
/// `truth` holds the exact neighbours of each query.
pub fn run_backend(ctx: &Context, backend: &str, workload: &Workload, truth: &[Vec<String>]) -> Result<BackendResult> {
    let scratch = tempfile::Builder::new().prefix("ragged-benchmark-").tempdir()?;
    let spec = StoreSpec {
        backend: backend.to_owned(),
        location: scratch.path().join("store").display().to_string(),
    };
    let store = Store::open(ctx, &spec, &Default::default(), Access::ReadWrite)?;
    store.require(Capabilities::WRITE, "be written")?;
    let name = "benchmark";
    let info = CollectionInfo {
        name: name.to_owned(),
        dimension: workload.dimension,
        metric: workload.metric,
        count: workload.records.len() as u64,
        embedding_model: None,
        index_params: None,
        metadata: Default::default(),
        extras: Default::default(),
    };
    let batches = workload
        .records
        .chunks(INGEST_BATCH)
        .map(|chunk| records_to_batch(chunk, workload.dimension))
        .collect::<Result<Vec<_>, _>>()?;
    let stream = BatchStream::from_batches(canonical_schema(workload.dimension), batches);
    // The allocator as a migration's stream has it, so ingest measures what a migration's load
    // does; the queries after it run with the process's settings, as `ragged backend query` does.
    let streaming = crate::allocator::streaming();
    let before = reset_peak_rss();
    let started = Instant::now();
    store
        .backend
        .load(
            &LoadRequest {
                collection: info,
                mode: LoadMode::Create,
            },
            stream,
        )
        .in_store(&store, "load the benchmark records")?;
    let ingest_seconds = started.elapsed().as_secs_f64();
    drop(streaming);
    let mut result = BackendResult {
        backend: backend.to_owned(),
        ingest_records_per_second: workload.records.len() as f64 / ingest_seconds.max(1e-9),
        ingest_seconds,
        ingest_memory_bytes: before
            .zip(rss_field("VmHWM:"))
            .map(|(before, peak)| peak.saturating_sub(before)),
        query: None,
        batch_query: None,
        recall_at_10: None,
        storage_bytes: None,
        bytes_per_record: None,
        notes: Vec::new(),
    };
    match store.backend.storage(name) {
        Ok(report) => {
            result.storage_bytes = Some(report.total_bytes);
            result.bytes_per_record = (report.records > 0).then(|| report.total_bytes as f64 / report.records as f64);
        }
        Err(error) => result.notes.push(format!("storage: {error}")),
    }
    if !store.capabilities.contains(Capabilities::QUERY) {
        result.notes.push("the plugin does not answer queries".to_owned());
        return Ok(result);
    }
    let query = |vector: &[f32]| -> Result<Vec<String>> {
        Ok(store
            .backend
            .query(name, vector, K)
            .in_store(&store, "query")?
            .into_iter()
            .map(|hit| hit.id)
            .collect())
    };
    let mut single = Vec::with_capacity(workload.queries.len());
    let mut recalls = Vec::with_capacity(workload.queries.len());
    for (vector, truth) in workload.queries.iter().zip(truth) {
        let started = Instant::now();
        let ids = query(vector)?;
        single.push(started.elapsed().as_secs_f64());
        recalls.push(recall(truth, &ids));
    }
    let mut batched = Vec::new();
    for batch in workload.queries.chunks(BATCH) {
        let started = Instant::now();
        std::thread::scope(|scope| {
            let handles: Vec<_> = batch.iter().map(|vector| scope.spawn(|| query(vector))).collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|_| anyhow::bail!("a query thread panicked")))
                .collect::<Result<Vec<_>>>()
        })?;
        batched.push(started.elapsed().as_secs_f64());
    }
    if !single.is_empty() {
        result.query = Some(latency(single, 1));
        result.batch_query = Some(latency(batched, BATCH));
        result.recall_at_10 = Some(recalls.iter().sum::<f64>() / recalls.len() as f64);
    }
    Ok(result)
}

/// Starts a new peak-memory measurement and returns the resident memory now (Linux: writing 5
/// to clear_refs resets the high-water mark VmHWM to the current VmRSS).
fn reset_peak_rss() -> Option<u64> {
    std::fs::write("/proc/self/clear_refs", "5").ok()?;
    rss_field("VmRSS:")
}

/// A memory field of /proc/self/status, in bytes, where the platform has one.
fn rss_field(name: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(name))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// A bar chart, one group per metric and one bar per backend, each group scaled to its largest
/// value (hand-written: a dozen SVG elements do not justify a plotting library).
pub fn svg_chart(results: &[BackendResult]) -> String {
    const COLORS: [&str; 6] = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#b07aa1"];
    type Metric = fn(&BackendResult) -> Option<f64>;
    let metrics: [(&str, Metric); 6] = [
        ("ingest records/s", |r| Some(r.ingest_records_per_second)),
        ("query p50 ms", |r| r.query.map(|q| q.p50_ms)),
        ("query p99 ms", |r| r.query.map(|q| q.p99_ms)),
        ("QPS", |r| r.query.map(|q| q.qps)),
        ("recall@10", |r| r.recall_at_10),
        ("bytes/record", |r| r.bytes_per_record),
    ];
    let (group_width, bar_width, height, top) = (150.0, 18.0, 200.0, 40.0);
    let width = group_width * metrics.len() as f64 + 40.0;
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{}" font-family="sans-serif" font-size="11">"#,
        top + height + 60.0 + 16.0 * results.len() as f64
    );
    for (g, (label, value)) in metrics.iter().enumerate() {
        let values: Vec<Option<f64>> = results.iter().map(value).collect();
        let max = values.iter().flatten().copied().fold(0.0f64, f64::max);
        let x0 = 20.0 + g as f64 * group_width;
        for (b, v) in values.iter().enumerate() {
            let Some(v) = v else { continue };
            let h = if max > 0.0 { height * v / max } else { 0.0 };
            let x = x0 + b as f64 * (bar_width + 4.0);
            svg.push_str(&format!(
                r#"<rect x="{x:.1}" y="{:.1}" width="{bar_width}" height="{h:.1}" fill="{}"><title>{}: {v:.3}</title></rect>"#,
                top + height - h,
                COLORS[b % COLORS.len()],
                results[b].backend
            ));
        }
        svg.push_str(&format!(
            r#"<text x="{x0:.1}" y="{:.1}">{label}</text>"#,
            top + height + 16.0
        ));
    }
    for (b, result) in results.iter().enumerate() {
        let y = top + height + 40.0 + 16.0 * b as f64;
        svg.push_str(&format!(
            r#"<rect x="20" y="{:.1}" width="10" height="10" fill="{}"/><text x="36" y="{y:.1}">{}</text>"#,
            y - 9.0,
            COLORS[b % COLORS.len()],
            result.backend
        ));
    }
    svg.push_str(r#"<text x="20" y="20" font-size="14">ragged backend benchmark (each group scaled to its largest value)</text></svg>"#);
    svg.push('\n');
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_by_nearest_rank() {
        let values: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&values, 50.0), 50.0);
        assert_eq!(percentile(&values, 95.0), 95.0);
        assert_eq!(percentile(&values, 99.0), 99.0);
        assert_eq!(percentile(&values, 100.0), 100.0);
        // Five values: p50 is rank ceil(2.5) = 3, p95 and p99 rank 5.
        let five = [1.0, 2.0, 3.0, 4.0, 10.0];
        assert_eq!(percentile(&five, 50.0), 3.0);
        assert_eq!(percentile(&five, 95.0), 10.0);
        assert_eq!(percentile(&[7.0], 1.0), 7.0);
        assert!(percentile(&[], 50.0).is_nan());
    }

    #[test]
    fn latency_in_milliseconds_and_queries_per_second() {
        // Four operations of 10 queries each, 0.1 s in total: 400 queries per second.
        let figures = latency(vec![0.04, 0.01, 0.02, 0.03], 10);
        assert_eq!(figures.p50_ms, 20.0);
        assert_eq!(figures.p99_ms, 40.0);
        assert!((figures.qps - 400.0).abs() < 1e-9, "{figures:?}");
    }

    #[test]
    fn recall_against_brute_force_neighbours() {
        let record = |id: &str, x: f32| Record {
            id: id.to_owned(),
            document: None,
            metadata: None,
            embedding: vec![x, 0.0],
        };
        let records = [record("a", 0.0), record("b", 1.0), record("c", 2.0), record("d", 3.5)];
        let truth = exact_neighbours(&records, &[1.9, 0.0], DistanceMetric::L2, 3);
        assert_eq!(truth, ["c", "b", "d"]);
        assert_eq!(recall(&truth, &["c".into(), "b".into(), "d".into()]), 1.0);
        assert!((recall(&truth, &["c".into(), "a".into(), "x".into()]) - 1.0 / 3.0).abs() < 1e-12);
        assert_eq!(recall(&[], &[]), 1.0);
    }
}
