//! `index_metadata.pickle`: the map from chroma's record ids to hnswlib labels.
//!
//! Chroma 1.x writes it with the `serde-pickle` crate (protocol 3, a plain dict), so the same
//! crate reads it. Python-era pickles (a `PersistentData` object) are refused as not chroma's
//! id map; such stores are too old for this plugin anyway.

use std::fmt;
use std::io::{BufReader, Read};
use std::path::Path;

use ragged_plugin_api::PluginError;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_pickle::DeOptions;

use crate::ids::Ids;

/// The file name inside a vector segment directory.
pub const FILE: &str = "index_metadata.pickle";

/// Reads `id_to_label` as (id number, label) pairs, each id interned in `ids`. No pairs means
/// chroma treats the segment as never persisted.
pub fn read_id_to_label(path: &Path, ids: &mut Ids) -> Result<Vec<(u32, u64)>, PluginError> {
    let file = std::fs::File::open(path).map_err(|e| PluginError::io(path, &e))?;
    parse_id_to_label(BufReader::new(file), path, ids)
}

fn parse_id_to_label(pickle: impl Read, path: &Path, ids: &mut Ids) -> Result<Vec<(u32, u64)>, PluginError> {
    let corrupt = |problem: String| PluginError::corrupt(format!("{}: {problem}", path.display()));
    // serde's messages name what is wrong: "missing field `id_to_label`", "invalid type: ...".
    let mut deserializer = serde_pickle::Deserializer::new(pickle, DeOptions::new());
    let pairs = PersistentData(ids)
        .deserialize(&mut deserializer)
        .and_then(|pairs| deserializer.end().map(|()| pairs))
        .map_err(|e| corrupt(format!("unreadable pickle or not chroma's id map ({e})")))?;
    pairs
        .into_iter()
        .map(|(number, label)| match u64::try_from(label) {
            Ok(label) if label > 0 => Ok((number, label)),
            _ => Err(corrupt(format!(
                "label of '{}' is {label}, expected a positive int",
                ids.get(number)
            ))),
        })
        .collect()
}

/// The dict chroma pickles, of which ragged reads `id_to_label`. Visiting it directly skips
/// serde-pickle's generic `Value` tree and a `String` per id.
struct PersistentData<'a>(&'a mut Ids);

impl<'de> DeserializeSeed<'de> for PersistentData<'_> {
    type Value = Vec<(u32, i64)>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for PersistentData<'_> {
    type Value = Vec<(u32, i64)>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a dict with id_to_label")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut pairs = None;
        while let Some(key) = map.next_key::<String>()? {
            if key == "id_to_label" {
                pairs = Some(map.next_value_seed(IdToLabel(&mut *self.0))?);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        pairs.ok_or_else(|| de::Error::missing_field("id_to_label"))
    }
}

/// `id_to_label`: a dict of id strings to ints.
struct IdToLabel<'a>(&'a mut Ids);

impl<'de> DeserializeSeed<'de> for IdToLabel<'_> {
    type Value = Vec<(u32, i64)>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for IdToLabel<'_> {
    type Value = Vec<(u32, i64)>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a dict of ids to labels")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut pairs = Vec::with_capacity(map.size_hint().unwrap_or(0));
        while let Some(number) = map.next_key_seed(Intern(&mut *self.0))? {
            pairs.push((number, map.next_value()?));
        }
        Ok(pairs)
    }
}

/// An id string, interned as it is read.
struct Intern<'a>(&'a mut Ids);

impl<'de> DeserializeSeed<'de> for Intern<'_> {
    type Value = u32;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<u32, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Intern<'_> {
    type Value = u32;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an id string")
    }

    fn visit_str<E: de::Error>(self, id: &str) -> Result<u32, E> {
        Ok(self.0.insert(id))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::BTreeMap;

    use serde_pickle::{HashableValue, Value};

    use super::*;

    /// A pickle shaped like chroma's (serde-pickle, protocol 3).
    pub(crate) fn chroma_pickle(ids: &[(&str, i64)]) -> Vec<u8> {
        let mut id_to_label = BTreeMap::new();
        let mut label_to_id = BTreeMap::new();
        for (id, label) in ids {
            id_to_label.insert(HashableValue::String((*id).to_owned()), Value::I64(*label));
            label_to_id.insert(HashableValue::I64(*label), Value::String((*id).to_owned()));
        }
        let mut dict = BTreeMap::new();
        dict.insert(HashableValue::String("dimensionality".into()), Value::None);
        dict.insert(
            HashableValue::String("total_elements_added".into()),
            Value::I64(ids.len() as i64),
        );
        dict.insert(HashableValue::String("id_to_label".into()), Value::Dict(id_to_label));
        dict.insert(HashableValue::String("label_to_id".into()), Value::Dict(label_to_id));
        serde_pickle::value_to_vec(&Value::Dict(dict), serde_pickle::SerOptions::new()).expect("pickles")
    }

    #[test]
    fn reads_chromas_id_map() {
        let bytes = chroma_pickle(&[("a", 1), ("b", 2)]);
        let mut ids = Ids::default();
        let mut pairs: Vec<(&str, u64)> = parse_id_to_label(&bytes[..], Path::new("x.pickle"), &mut ids)
            .expect("parses")
            .into_iter()
            .map(|(number, label)| (ids.get(number), label))
            .collect();
        pairs.sort();
        assert_eq!(pairs, [("a", 1), ("b", 2)]);
    }

    #[test]
    fn damaged_pickles_are_corrupt_by_name() {
        let bytes = chroma_pickle(&[("a", 1)]);
        let error = parse_id_to_label(
            &bytes[..bytes.len() / 2],
            Path::new("seg/index_metadata.pickle"),
            &mut Ids::default(),
        )
        .expect_err("truncated");
        assert!(
            error
                .message
                .starts_with("seg/index_metadata.pickle: unreadable pickle"),
            "{error}"
        );
        let list = serde_pickle::value_to_vec(&Value::List(vec![]), serde_pickle::SerOptions::new()).expect("pickles");
        let error = parse_id_to_label(&list[..], Path::new("p"), &mut Ids::default()).expect_err("list");
        assert!(error.message.contains("not chroma's id map"), "{error}");
        let no_map = serde_pickle::value_to_vec(&Value::Dict(BTreeMap::new()), serde_pickle::SerOptions::new())
            .expect("pickles");
        let error = parse_id_to_label(&no_map[..], Path::new("p"), &mut Ids::default()).expect_err("no id_to_label");
        assert!(error.message.contains("id_to_label"), "{error}");
        let error = parse_id_to_label(&chroma_pickle(&[("a", 0)])[..], Path::new("p"), &mut Ids::default())
            .expect_err("label 0");
        assert!(error.message.contains("label of 'a' is 0"), "{error}");
    }
}
