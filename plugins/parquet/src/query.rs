//! Brute-force nearest neighbours: every embedding is compared with the query under the
//! collection's metric, streaming part by part and keeping only the best `k` so far.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use arrow_array::cast::AsArray;
use arrow_array::types::Float32Type;
use arrow_array::{Array, RecordBatch};
use ragged_plugin_api::{Hit, PluginError};

use crate::part::Columns;
use crate::read::Snapshot;

/// Rows per batch while scanning: large enough to amortise the per-batch work, small enough that
/// a 4096-dimension collection still scans in tens of megabytes.
const SCAN_BATCH_ROWS: usize = 2048;

/// The `k` records nearest to `vector`, closest first; equal distances are ordered by id.
pub(crate) fn nearest(snapshot: &Snapshot, vector: &[f32], k: u32) -> Result<Vec<Hit>, PluginError> {
    let dimension = snapshot.dimension() as usize;
    if vector.len() != dimension {
        return Err(PluginError::invalid_input(format!(
            "the query vector has {} dimensions, collection '{}' has {dimension}",
            vector.len(),
            snapshot.dir.name
        )));
    }
    snapshot.check_parts()?;
    let k = k as usize;
    if k == 0 {
        return Ok(Vec::new());
    }
    let metric = snapshot.manifest.collection.metric;
    let mut best = TopK::new(k);
    for index in 0..snapshot.manifest.parts.len() {
        let part = snapshot.open_part(index)?;
        let reader = part.reader(Columns::IdsAndEmbeddings, None, SCAN_BATCH_ROWS)?;
        for batch in reader {
            let batch = batch?;
            scan_batch(&batch, dimension, |id, embedding| {
                best.offer(metric.distance(vector, embedding), id)
            })
            .map_err(|problem| {
                let path = snapshot.dir.part_path(&snapshot.manifest.parts[index].file);
                PluginError::corrupt(format!("{}: {problem}", path.display()))
            })?;
        }
    }
    Ok(best
        .into_sorted()
        .into_iter()
        .map(|c| Hit {
            id: c.id,
            distance: c.distance,
        })
        .collect())
}

/// Calls `visit` with each row's id and embedding of an `[id, embedding]` batch.
fn scan_batch(batch: &RecordBatch, dimension: usize, mut visit: impl FnMut(&str, &[f32])) -> Result<(), String> {
    let ids = batch.column(0).as_string::<i32>();
    let embeddings = batch.column(1).as_fixed_size_list();
    let values = embeddings.values().as_primitive::<Float32Type>();
    if values.null_count() > 0 || embeddings.null_count() > 0 || ids.null_count() > 0 {
        return Err("a null id or embedding value".to_owned());
    }
    let values = values.values();
    for row in 0..batch.num_rows() {
        let start = embeddings.value_offset(row) as usize;
        visit(ids.value(row), &values[start..start + dimension]);
    }
    Ok(())
}

/// One candidate; ordered by distance (NaN last), then by id.
#[derive(Debug)]
struct Candidate {
    distance: f32,
    id: String,
}

fn order(a_distance: f32, a_id: &str, b_distance: f32, b_id: &str) -> Ordering {
    a_distance
        .is_nan()
        .cmp(&b_distance.is_nan())
        .then_with(|| a_distance.total_cmp(&b_distance))
        .then_with(|| a_id.cmp(b_id))
}

impl Ord for Candidate {
    fn cmp(&self, other: &Candidate) -> Ordering {
        order(self.distance, &self.id, other.distance, &other.id)
    }
}

impl PartialOrd for Candidate {
    fn partial_cmp(&self, other: &Candidate) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Candidate {
    fn eq(&self, other: &Candidate) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Candidate {}

/// The `k` smallest candidates seen, in a max-heap so the one to evict is on top.
struct TopK {
    k: usize,
    heap: BinaryHeap<Candidate>,
}

impl TopK {
    fn new(k: usize) -> TopK {
        TopK {
            k,
            heap: BinaryHeap::new(),
        }
    }

    fn offer(&mut self, distance: f32, id: &str) {
        if self.heap.len() < self.k {
            self.heap.push(Candidate {
                distance,
                id: id.to_owned(),
            });
            return;
        }
        // Only a winner pays for copying its id.
        if let Some(worst) = self.heap.peek()
            && order(distance, id, worst.distance, &worst.id) == Ordering::Less
        {
            self.heap.pop();
            self.heap.push(Candidate {
                distance,
                id: id.to_owned(),
            });
        }
    }

    fn into_sorted(self) -> Vec<Candidate> {
        self.heap.into_sorted_vec()
    }
}

#[cfg(test)]
mod tests {
    use ragged_plugin_api::{Backend, ErrorCode, LoadMode};

    use super::*;
    use crate::test_support::{load, store};

    #[test]
    fn a_query_scans_every_part_and_orders_by_distance_then_id() {
        let (_root, store) = store();
        // Embeddings are [version, 1.0]; the l2 distance to [2, 1] is (version - 2)^2.
        load(&store, LoadMode::Create, &[&[("a", 0), ("b", 4)]]).expect("loads");
        load(&store, LoadMode::Append, &[&[("c", 2), ("d", 3), ("e", 1)]]).expect("loads");
        let hits = store.query("docs", &[2.0, 1.0], 4).expect("queries");
        let got: Vec<(&str, f32)> = hits.iter().map(|h| (h.id.as_str(), h.distance)).collect();
        assert_eq!(got, vec![("c", 0.0), ("d", 1.0), ("e", 1.0), ("a", 4.0)]);
        assert_eq!(store.query("docs", &[2.0, 1.0], 100).expect("queries").len(), 5);
        assert!(store.query("docs", &[2.0, 1.0], 0).expect("queries").is_empty());
    }

    #[test]
    fn a_query_vector_of_the_wrong_length_is_refused() {
        let (_root, store) = store();
        load(&store, LoadMode::Create, &[&[("a", 0)]]).expect("loads");
        let error = store.query("docs", &[1.0, 2.0, 3.0], 1).expect_err("3 into 2");
        assert_eq!(error.code, ErrorCode::InvalidInput);
        assert_eq!(
            error.message,
            "the query vector has 3 dimensions, collection 'docs' has 2"
        );
    }

    fn check(offers: &[(f32, &str)], k: usize, expected: &[(f32, &str)]) {
        let mut top = TopK::new(k);
        for (distance, id) in offers {
            top.offer(*distance, id);
        }
        let got: Vec<(f32, String)> = top.into_sorted().into_iter().map(|c| (c.distance, c.id)).collect();
        let expected: Vec<(f32, String)> = expected.iter().map(|(d, id)| (*d, (*id).to_owned())).collect();
        assert_eq!(got, expected);
    }

    #[test]
    fn keeps_the_k_smallest_in_ascending_order() {
        check(
            &[(3.0, "c"), (1.0, "a"), (4.0, "d"), (2.0, "b")],
            2,
            &[(1.0, "a"), (2.0, "b")],
        );
        check(&[(3.0, "c")], 5, &[(3.0, "c")]);
        check(&[(3.0, "c")], 0, &[]);
    }

    #[test]
    fn ties_go_to_the_smaller_id_whatever_the_arrival_order() {
        check(&[(1.0, "z"), (1.0, "b"), (1.0, "m")], 2, &[(1.0, "b"), (1.0, "m")]);
        check(&[(1.0, "b"), (1.0, "m"), (1.0, "z")], 2, &[(1.0, "b"), (1.0, "m")]);
    }

    #[test]
    fn nan_distances_rank_after_every_number() {
        let mut top = TopK::new(2);
        top.offer(f32::NAN, "a");
        top.offer(-f32::NAN, "b");
        top.offer(f32::INFINITY, "c");
        top.offer(5.0, "d");
        let ids: Vec<String> = top.into_sorted().into_iter().map(|c| c.id).collect();
        assert_eq!(ids, vec!["d", "c"]);
    }
}
