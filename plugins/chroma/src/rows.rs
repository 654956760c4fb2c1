//! The metadata rows of one batch, read without an allocation per row.
//!
//! A record's metadata (its document included) is spread over rows of `embedding_metadata` (one
//! per key) and `embedding_metadata_array` (one per array element). A batch reads the rows of all
//! its records into one text buffer and two sorted lists, and each record's values are then
//! borrowed from them: written as canonical JSON directly, or turned into a [`Metadata`] map only
//! for the few records whose metadata the log still changes.

use std::ops::Range;

use serde::ser::{Error as _, SerializeMap};
use serde::{Serialize, Serializer};

use crate::sqlite::Typed;
use crate::value::{DOCUMENT_KEY, MetaValue, Metadata};

/// One scalar as a row holds it; strings are ranges of [`BatchRows::text`].
#[derive(Debug, Clone, PartialEq)]
pub enum RowValue {
    Str(Range<usize>),
    Int(i64),
    Float(f64),
    Bool(bool),
}

impl RowValue {
    fn same_type(&self, other: &RowValue) -> bool {
        std::mem::discriminant(self) == std::mem::discriminant(other)
    }
}

#[derive(Debug)]
struct Row {
    id: i64,
    key: Range<usize>,
    value: RowValue,
}

/// The rows of a batch: ids sorted by row, scalars by (row, key), array elements by (row, key,
/// order written).
#[derive(Debug, Default)]
pub struct BatchRows {
    text: String,
    ids: Vec<(i64, Range<usize>)>,
    scalars: Vec<Row>,
    elements: Vec<Row>,
}

/// A record's final value for one key, borrowed from its batch's rows.
#[derive(Debug, Clone, Copy)]
enum Value<'a> {
    Scalar(&'a RowValue),
    /// Array elements, all of one type.
    Array(&'a [Row]),
}

/// A record's metadata: its keys in order with their values.
pub struct RecordRows<'a> {
    text: &'a str,
    values: Vec<(&'a str, Value<'a>)>,
}

impl BatchRows {
    /// Stores a string and returns where it is.
    pub fn push_text(&mut self, text: &str) -> Range<usize> {
        let start = self.text.len();
        self.text.push_str(text);
        start..self.text.len()
    }

    /// A value to add, its string stored.
    pub fn value(&mut self, value: Typed<'_>) -> RowValue {
        match value {
            Typed::Str(s) => RowValue::Str(self.push_text(s)),
            Typed::Int(i) => RowValue::Int(i),
            Typed::Float(x) => RowValue::Float(x),
            Typed::Bool(b) => RowValue::Bool(b),
        }
    }

    /// The text at `range`.
    pub fn text(&self, range: &Range<usize>) -> &str {
        &self.text[range.clone()]
    }

    /// Adds the id of a row of `embeddings`; ids must come in row order.
    pub fn push_id(&mut self, id: i64, text: &str) {
        let text = self.push_text(text);
        self.ids.push((id, text));
    }

    /// The id of row `id`, if it was read.
    pub fn id(&self, id: i64) -> Option<&str> {
        let at = self.ids.binary_search_by_key(&id, |(row, _)| *row).ok()?;
        Some(&self.text[self.ids[at].1.clone()])
    }

    /// Adds a row of `embedding_metadata`; rows must come in (row, key) order, or be put in it by
    /// [`sort_scalars`](Self::sort_scalars) before they are read.
    pub fn push_scalar(&mut self, id: i64, key: Range<usize>, value: RowValue) {
        self.scalars.push(Row { id, key, value });
    }

    /// Puts scalars that were added in storage order into (row, key) order. Rows come mostly
    /// grouped already (chroma stores a record's keys together), so this is a pass over the rows
    /// and a sort of each record's few keys.
    pub fn sort_scalars(&mut self) {
        self.scalars.sort_by_key(|row| row.id);
        let text = &self.text;
        for record in self.scalars.chunk_by_mut(|a, b| a.id == b.id) {
            record.sort_unstable_by(|a, b| text[a.key.clone()].cmp(&text[b.key.clone()]));
        }
    }

    /// Adds an array element; elements must come in (row, key, order written) order.
    pub fn push_element(&mut self, id: i64, key: Range<usize>, value: RowValue) {
        self.elements.push(Row { id, key, value });
    }

    fn of(rows: &[Row], id: i64) -> &[Row] {
        let start = rows.partition_point(|r| r.id < id);
        let end = start + rows[start..].partition_point(|r| r.id == id);
        &rows[start..end]
    }

    /// The values of row `id`, keys in order. An array replaces a scalar of the same key, and an
    /// element of another type than the one before starts the array again: chroma reads arrays
    /// that way, so only the last run of same-typed elements survives.
    pub fn record(&self, id: i64) -> RecordRows<'_> {
        let key = |row: &Row| &self.text[row.key.clone()];
        let scalars = Self::of(&self.scalars, id);
        let mut elements = Self::of(&self.elements, id);
        let mut values: Vec<(&str, Value<'_>)> = scalars.iter().map(|r| (key(r), Value::Scalar(&r.value))).collect();
        while let Some(first) = elements.first() {
            let name = key(first);
            let count = elements.iter().take_while(|r| key(r) == name).count();
            let (array, rest) = elements.split_at(count);
            let run = array
                .iter()
                .rev()
                .take_while(|r| r.value.same_type(&array[count - 1].value))
                .count();
            let array = Value::Array(&array[count - run..]);
            match values.binary_search_by(|(k, _)| (*k).cmp(name)) {
                Ok(at) => values[at].1 = array,
                Err(at) => values.insert(at, (name, array)),
            }
            elements = rest;
        }
        RecordRows {
            text: &self.text,
            values,
        }
    }
}

impl<'a> RecordRows<'a> {
    /// A record without metadata rows (one the log added).
    pub fn empty() -> RecordRows<'a> {
        RecordRows {
            text: "",
            values: Vec::new(),
        }
    }

    /// The record's document: the string under [`DOCUMENT_KEY`].
    pub fn document(&self) -> Option<&'a str> {
        self.values.iter().find_map(|(key, value)| match value {
            Value::Scalar(RowValue::Str(range)) if *key == DOCUMENT_KEY => Some(&self.text[range.clone()]),
            _ => None,
        })
    }

    fn metadata(&self) -> impl Iterator<Item = &(&'a str, Value<'a>)> {
        self.values.iter().filter(|(key, _)| *key != DOCUMENT_KEY)
    }

    /// The canonical metadata JSON (as [`crate::value::metadata_to_json`] writes it), appended
    /// to `out`; false when there is no metadata besides the document.
    pub fn write_json(&self, out: &mut Vec<u8>) -> Result<bool, String> {
        if self.metadata().next().is_none() {
            return Ok(false);
        }
        serde_json::to_writer(&mut *out, self).map_err(|e| e.to_string())?;
        Ok(true)
    }

    /// The values as an owned map, document included.
    pub fn to_metadata(&self) -> Metadata {
        let scalar = |value: &RowValue| match value {
            RowValue::Str(range) => MetaValue::Str(self.text[range.clone()].to_owned()),
            RowValue::Int(i) => MetaValue::Int(*i),
            RowValue::Float(x) => MetaValue::Float(*x),
            RowValue::Bool(b) => MetaValue::Bool(*b),
        };
        // record() keeps only a non-empty run of one type, which is always an array.
        let array = |rows: &[Row]| {
            MetaValue::array(rows.iter().map(|r| scalar(&r.value)).collect()).expect("a run of one scalar type")
        };
        self.values
            .iter()
            .map(|(key, value)| {
                let value = match value {
                    Value::Scalar(value) => scalar(value),
                    Value::Array(rows) => array(rows),
                };
                ((*key).to_owned(), value)
            })
            .collect()
    }
}

/// A row value inside the record's JSON: floats JSON cannot hold are refused with their key.
struct Json<'a> {
    text: &'a str,
    key: &'a str,
    value: &'a RowValue,
}

impl Serialize for Json<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.value {
            RowValue::Str(range) => serializer.serialize_str(&self.text[range.clone()]),
            RowValue::Int(i) => serializer.serialize_i64(*i),
            RowValue::Float(x) if x.is_finite() => serializer.serialize_f64(*x),
            RowValue::Float(x) => Err(S::Error::custom(format!(
                "metadata key '{}': float {x} cannot be written as JSON",
                self.key
            ))),
            RowValue::Bool(b) => serializer.serialize_bool(*b),
        }
    }
}

impl Serialize for RecordRows<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let json = |key, value| Json {
            text: self.text,
            key,
            value,
        };
        let mut map = serializer.serialize_map(None)?;
        for (key, value) in self.metadata() {
            match value {
                Value::Scalar(value) => map.serialize_entry(key, &json(key, value))?,
                Value::Array(rows) => {
                    let items: Vec<Json<'_>> = rows.iter().map(|r| json(key, &r.value)).collect();
                    map.serialize_entry(key, &items)?
                }
            }
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::value::metadata_to_json;

    fn value(rows: &mut BatchRows, kind: u8, n: i64) -> RowValue {
        match kind % 4 {
            0 => RowValue::Str(rows.push_text(&format!("s\"{n}"))),
            1 => RowValue::Int(n),
            2 => RowValue::Float(n as f64 / 4.0),
            _ => RowValue::Bool(n % 2 == 0),
        }
    }

    #[test]
    fn array_elements_accumulate_by_type_and_replace_a_scalar() {
        let mut rows = BatchRows::default();
        let (a, b, d) = (rows.push_text("a"), rows.push_text("b"), rows.push_text(DOCUMENT_KEY));
        let doc = rows.push_text("the text");
        rows.push_scalar(1, a.clone(), RowValue::Int(7));
        rows.push_scalar(1, d, RowValue::Str(doc));
        let x = rows.push_text("x");
        rows.push_element(1, a.clone(), RowValue::Int(1));
        rows.push_element(1, a, RowValue::Int(2));
        rows.push_element(1, b.clone(), RowValue::Int(3));
        rows.push_element(1, b.clone(), RowValue::Str(x));
        rows.push_element(1, b, RowValue::Bool(true));
        let record = rows.record(1);
        assert_eq!(record.document(), Some("the text"));
        let metadata = record.to_metadata();
        assert_eq!(metadata["a"], MetaValue::IntArray(vec![1, 2]));
        assert_eq!(metadata["b"], MetaValue::BoolArray(vec![true]));
        let mut json = Vec::new();
        assert!(record.write_json(&mut json).expect("writes"));
        assert_eq!(String::from_utf8(json).expect("utf-8"), r#"{"a":[1,2],"b":[true]}"#);
        assert!(!rows.record(2).write_json(&mut Vec::new()).expect("writes"));
    }

    #[test]
    fn a_float_json_cannot_hold_is_refused_naming_its_key() {
        let mut rows = BatchRows::default();
        let key = rows.push_text("score");
        rows.push_scalar(3, key, RowValue::Float(f64::NAN));
        let error = rows.record(3).write_json(&mut Vec::new()).expect_err("NaN");
        assert!(error.starts_with("metadata key 'score': float NaN"), "{error}");
    }

    proptest! {
        /// The JSON written from the rows is the JSON of the map built from them, whatever the
        /// mix of scalars, arrays and types.
        #[test]
        fn written_json_equals_the_json_of_the_map(
            records in proptest::collection::vec(
                (
                    proptest::collection::btree_map(0u8..6, (any::<u8>(), -5i64..5), 0..5),
                    proptest::collection::btree_map(0u8..6, proptest::collection::vec((any::<u8>(), -5i64..5), 1..4), 0..3),
                ),
                1..4,
            )
        ) {
            let mut rows = BatchRows::default();
            let keys: Vec<Range<usize>> = ["a", "b", DOCUMENT_KEY, "k", "ka", "z"].iter().map(|k| rows.push_text(k)).collect();
            for (id, (scalars, _)) in records.iter().enumerate() {
                for (&k, &(kind, n)) in scalars {
                    let value = value(&mut rows, kind, n);
                    rows.push_scalar(id as i64, keys[k as usize].clone(), value);
                }
            }
            for (id, (_, arrays)) in records.iter().enumerate() {
                for (&k, elements) in arrays {
                    for &(kind, n) in elements {
                        let value = value(&mut rows, kind, n);
                        rows.push_element(id as i64, keys[k as usize].clone(), value);
                    }
                }
            }
            for id in 0..records.len() as i64 {
                let record = rows.record(id);
                let mut metadata = record.to_metadata();
                let document = match metadata.remove(DOCUMENT_KEY) {
                    Some(MetaValue::Str(s)) => Some(s),
                    _ => None,
                };
                prop_assert_eq!(record.document().map(str::to_owned), document);
                let mut json = Vec::new();
                let written = record.write_json(&mut json).expect("writes");
                let expected = metadata_to_json(&metadata).expect("encodes");
                prop_assert_eq!(written.then(|| String::from_utf8(json).expect("utf-8")), expected);
            }
        }
    }
}
