//! The ids a plan's build meets, each stored once in one buffer and numbered.
//!
//! A collection's ids come from three places (the metadata segment, the HNSW id map and the
//! log) and are joined by value. A `String` per id and per place cost about 100 bytes a record;
//! here an id costs its length, its end offset and a slot of the hash table.

use std::hash::BuildHasher;

use hashbrown::HashTable;

/// Interned ids: `0..len()` in the order they were first inserted.
#[derive(Default)]
pub struct Ids {
    text: String,
    /// Where each id ends in `text`; it starts where the one before ends.
    ends: Vec<usize>,
    index: HashTable<u32>,
    hasher: foldhash::fast::RandomState,
}

impl Ids {
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The id numbered `number`.
    pub fn get(&self, number: u32) -> &str {
        id_at(&self.text, &self.ends, number)
    }

    fn hash(&self, id: &str) -> u64 {
        self.hasher.hash_one(id)
    }

    /// The number of `id`, if it was inserted.
    pub fn find(&self, id: &str) -> Option<u32> {
        self.index.find(self.hash(id), |&n| self.get(n) == id).copied()
    }

    /// The number of `id`, inserting it if it is new.
    pub fn insert(&mut self, id: &str) -> u32 {
        let hash = self.hash(id);
        if let Some(&number) = self.index.find(hash, |&n| self.get(n) == id) {
            return number;
        }
        let number = u32::try_from(self.ends.len()).expect("a collection has fewer than 2^32 ids");
        self.text.push_str(id);
        self.ends.push(self.text.len());
        // The table rehashes its entries when it grows: it sees numbers, the ids are here.
        let (text, ends, hasher) = (&self.text, &self.ends, &self.hasher);
        self.index
            .insert_unique(hash, number, |&n| hasher.hash_one(id_at(text, ends, n)));
        number
    }
}

fn id_at<'a>(text: &'a str, ends: &[usize], number: u32) -> &'a str {
    let number = number as usize;
    let start = if number == 0 { 0 } else { ends[number - 1] };
    &text[start..ends[number]]
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Numbers are dense, stable, and each names the id it was given for.
        #[test]
        fn an_id_keeps_its_number(ids in proptest::collection::vec("[a-c]{0,3}", 0..200)) {
            let mut interned = Ids::default();
            let mut first_seen: Vec<String> = Vec::new();
            for id in &ids {
                let number = interned.insert(id);
                if !first_seen.contains(id) {
                    prop_assert_eq!(number as usize, first_seen.len());
                    first_seen.push(id.clone());
                }
                prop_assert_eq!(interned.get(number), id.as_str());
            }
            prop_assert_eq!(interned.len(), first_seen.len());
            prop_assert_eq!(interned.is_empty(), ids.is_empty());
            for (number, id) in first_seen.iter().enumerate() {
                prop_assert_eq!(interned.find(id), Some(number as u32));
            }
            prop_assert_eq!(interned.find("zzzz"), None);
        }
    }
}
