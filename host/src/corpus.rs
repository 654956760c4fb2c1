//! Deterministic synthetic collections: clustered vectors, prose-like documents and typed
//! metadata. The same seed gives the same records on every platform (ChaCha8 is portable).

use arrow_array::RecordBatch;
use ragged_plugin_api::arrow::records_to_batch;
use ragged_plugin_api::{DistanceMetric, Record};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const WORDS: &[&str] = &[
    "vector",
    "store",
    "migration",
    "embedding",
    "index",
    "query",
    "document",
    "record",
    "batch",
    "graph",
    "latency",
    "recall",
    "storage",
    "backup",
    "rollback",
    "cluster",
    "metric",
    "cosine",
    "distance",
    "model",
    "retrieval",
    "context",
    "answer",
    "persona",
    "chunk",
    "token",
    "search",
    "neighbour",
    "segment",
    "manifest",
];

/// A description of a synthetic collection.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Corpus {
    /// Number of records.
    pub records: u64,
    /// Embedding length.
    pub dimension: u32,
    /// Number of clusters the vectors gather around.
    pub clusters: u32,
    /// The seed everything derives from.
    pub seed: u64,
    /// The metric the collection is meant for (cosine corpora have unit vectors).
    pub metric: DistanceMetric,
}

impl Corpus {
    /// The centroids, one per cluster.
    fn centroids(&self) -> Vec<Vec<f32>> {
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        (0..self.clusters.max(1))
            .map(|_| (0..self.dimension).map(|_| gaussian(&mut rng) as f32).collect())
            .collect()
    }

    /// Record `index` (0-based).
    fn record(&self, index: u64, centroids: &[Vec<f32>]) -> Record {
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        rng.set_stream(index + 1);
        let cluster = (index % centroids.len() as u64) as usize;
        let mut embedding: Vec<f32> = centroids[cluster]
            .iter()
            .map(|c| c + 0.35 * gaussian(&mut rng) as f32)
            .collect();
        if self.metric == DistanceMetric::Cosine {
            let norm = embedding
                .iter()
                .map(|x| x * x)
                .sum::<f32>()
                .sqrt()
                .max(f32::MIN_POSITIVE);
            embedding.iter_mut().for_each(|x| *x /= norm);
        }
        let target_length = rng.random_range(200..=500);
        let mut document = String::with_capacity(target_length + 16);
        while document.len() < target_length {
            if !document.is_empty() {
                document.push(' ');
            }
            document.push_str(WORDS[rng.random_range(0..WORDS.len())]);
        }
        let metadata = serde_json::json!({
            "source": format!("handbook/chapter-{cluster:02}.md"),
            "chunk": index,
            "score": (rng.random_range(0..10_000) as f64) / 100.0 + 0.5,
            "weight": 2.0,
            "reviewed": index.is_multiple_of(3),
            "tags": [WORDS[cluster % WORDS.len()], WORDS[(cluster + 7) % WORDS.len()]],
        });
        Record {
            id: format!("doc-{index:08}"),
            // A few records without a document or metadata, as real stores have.
            document: (index % 50 != 49).then_some(document),
            metadata: (index % 70 != 69).then(|| metadata.to_string()),
            embedding,
        }
    }

    /// The records from `start`, in batches of at most `batch_size`.
    pub fn batches(&self, start: u64, batch_size: u32) -> impl Iterator<Item = RecordBatch> + Send + 'static {
        let corpus = *self;
        let centroids = self.centroids();
        let batch_size = u64::from(batch_size.max(1));
        (start..self.records).step_by(batch_size as usize).map(move |first| {
            let last = (first + batch_size).min(corpus.records);
            let records: Vec<Record> = (first..last).map(|i| corpus.record(i, &centroids)).collect();
            records_to_batch(&records, corpus.dimension).expect("generated embeddings have the corpus dimension")
        })
    }

    /// All records in memory (small corpora only).
    pub fn all_records(&self) -> Vec<Record> {
        let centroids = self.centroids();
        (0..self.records).map(|i| self.record(i, &centroids)).collect()
    }
}

/// A standard normal sample (Box–Muller).
fn gaussian(rng: &mut ChaCha8Rng) -> f64 {
    let u1: f64 = rng.random_range(f64::EPSILON..1.0);
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ragged_plugin_api::arrow::batch_to_records;

    fn corpus(metric: DistanceMetric) -> Corpus {
        Corpus {
            records: 150,
            dimension: 8,
            clusters: 4,
            seed: 7,
            metric,
        }
    }

    #[test]
    fn batches_from_any_start_equal_the_tail_of_the_whole() {
        let whole = corpus(DistanceMetric::L2).all_records();
        let tail: Vec<Record> = corpus(DistanceMetric::L2)
            .batches(37, 16)
            .flat_map(|b| batch_to_records(&b).expect("canonical"))
            .collect();
        assert_eq!(tail, whole[37..]);
    }

    #[test]
    fn records_are_typed_and_sometimes_empty() {
        let records = corpus(DistanceMetric::Cosine).all_records();
        assert_eq!(records.len(), 150);
        assert!(records[49].document.is_none());
        assert!(records[69].metadata.is_none());
        let metadata = records[0].metadata.as_deref().expect("has metadata");
        assert!(metadata.contains(r#""weight":2.0"#), "{metadata}");
        assert!(metadata.contains(r#""chunk":0"#), "{metadata}");
        let norm: f32 = records[5].embedding.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "cosine corpora are unit vectors, got {norm}");
        assert_ne!(
            corpus(DistanceMetric::L2).all_records()[0],
            Corpus {
                seed: 8,
                ..corpus(DistanceMetric::L2)
            }
            .all_records()[0]
        );
    }
}
