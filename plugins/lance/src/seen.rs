//! The ids a store's loads wrote into a table, as 64-bit hashes, at 8 bytes an id: a sorted list
//! and a short sorted tail that each batch is merged into, the tail merged into the list when it
//! is full. A `HashSet<u64>` costs about 19 bytes an id at a million (buckets for a 7/8 load,
//! rounded up to a power of two) and half as much again while it grows.

/// Hashes in the tail before it is merged into the list: each batch costs a pass over the tail,
/// each full tail a pass over the list.
const TAIL: usize = 1 << 16;

pub(crate) struct SeenIds {
    sorted: Vec<u64>,
    tail: Vec<u64>,
    tail_limit: usize,
}

impl Default for SeenIds {
    fn default() -> Self {
        Self::with_tail_limit(TAIL)
    }
}

impl SeenIds {
    fn with_tail_limit(tail_limit: usize) -> Self {
        Self {
            sorted: Vec::new(),
            tail: Vec::new(),
            tail_limit,
        }
    }

    pub(crate) fn contains(&self, hash: u64) -> bool {
        self.sorted.binary_search(&hash).is_ok() || self.tail.binary_search(&hash).is_ok()
    }

    pub(crate) fn extend(&mut self, mut hashes: Vec<u64>) {
        hashes.sort_unstable();
        merge_into(&mut self.tail, &hashes);
        if self.tail.len() >= self.tail_limit {
            merge_into(&mut self.sorted, &self.tail);
            self.tail.clear();
        }
    }
}

/// Merges the sorted `from` into the sorted `into`, from the back, in place.
fn merge_into(into: &mut Vec<u64>, from: &[u64]) {
    let mut kept = into.len();
    into.resize(kept + from.len(), 0);
    let mut slot = into.len();
    for &hash in from.iter().rev() {
        // What `into` holds above `hash` moves up first.
        while kept > 0 && into[kept - 1] > hash {
            kept -= 1;
            slot -= 1;
            into[slot] = into[kept];
        }
        slot -= 1;
        into[slot] = hash;
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// After every batch, the hashes seen are those a `HashSet` holds, and both lists stay
        /// sorted (a tail of 8 makes the merge into the list happen often).
        #[test]
        fn holds_what_a_hash_set_holds(
            batches in prop::collection::vec(prop::collection::vec(0u64..500, 0..20), 0..40),
            probes in prop::collection::vec(0u64..500, 0..50),
        ) {
            let mut seen = SeenIds::with_tail_limit(8);
            let mut expected = HashSet::new();
            for batch in batches {
                expected.extend(batch.iter().copied());
                seen.extend(batch);
                prop_assert!(seen.sorted.is_sorted() && seen.tail.is_sorted());
                for probe in probes.iter().chain(&expected) {
                    prop_assert_eq!(seen.contains(*probe), expected.contains(probe), "{}", probe);
                }
            }
        }
    }
}
