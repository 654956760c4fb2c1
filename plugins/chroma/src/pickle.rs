//! `index_metadata.pickle`: the map from chroma's record ids to hnswlib labels.
//!
//! Chroma 1.x writes it with the `serde-pickle` crate (protocol 3, a plain dict), so the same
//! crate reads it. Python-era pickles (a `PersistentData` object) are refused as not chroma's
//! id map; such stores are too old for this plugin anyway.

use std::collections::HashMap;
use std::path::Path;

use ragged_plugin_api::PluginError;
use serde::Deserialize;
use serde_pickle::DeOptions;

/// The file name inside a vector segment directory.
pub const FILE: &str = "index_metadata.pickle";

/// Reads `id_to_label` as (id, label) pairs. No pairs means chroma treats the segment as never
/// persisted.
pub fn read_id_to_label(path: &Path) -> Result<Vec<(String, u64)>, PluginError> {
    let bytes = std::fs::read(path).map_err(|e| PluginError::io(path, &e))?;
    parse_id_to_label(&bytes, path)
}

/// The part of chroma's pickle ragged reads. Deserialising into it directly skips
/// serde-pickle's generic `Value` tree (a `BTreeMap` ordered by whole keys), which cost a sixth
/// of a chroma -> lance migration.
#[derive(Deserialize)]
struct PersistentData {
    id_to_label: HashMap<String, i64, foldhash::fast::RandomState>,
}

fn parse_id_to_label(bytes: &[u8], path: &Path) -> Result<Vec<(String, u64)>, PluginError> {
    let corrupt = |problem: String| PluginError::corrupt(format!("{}: {problem}", path.display()));
    // serde's messages name what is wrong: "missing field `id_to_label`", "invalid type: ...".
    let data: PersistentData = serde_pickle::from_slice(bytes, DeOptions::new())
        .map_err(|e| corrupt(format!("unreadable pickle or not chroma's id map ({e})")))?;
    data.id_to_label
        .into_iter()
        .map(|(id, label)| match u64::try_from(label) {
            Ok(label) if label > 0 => Ok((id, label)),
            _ => Err(corrupt(format!("label of '{id}' is {label}, expected a positive int"))),
        })
        .collect()
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
        let mut pairs = parse_id_to_label(&bytes, Path::new("x.pickle")).expect("parses");
        pairs.sort();
        assert_eq!(pairs, [("a".to_owned(), 1), ("b".to_owned(), 2)]);
    }

    #[test]
    fn damaged_pickles_are_corrupt_by_name() {
        let bytes = chroma_pickle(&[("a", 1)]);
        let error = parse_id_to_label(&bytes[..bytes.len() / 2], Path::new("seg/index_metadata.pickle"))
            .expect_err("truncated");
        assert!(
            error
                .message
                .starts_with("seg/index_metadata.pickle: unreadable pickle"),
            "{error}"
        );
        let list = serde_pickle::value_to_vec(&Value::List(vec![]), serde_pickle::SerOptions::new()).expect("pickles");
        let error = parse_id_to_label(&list, Path::new("p")).expect_err("list");
        assert!(error.message.contains("not chroma's id map"), "{error}");
        let no_map = serde_pickle::value_to_vec(&Value::Dict(BTreeMap::new()), serde_pickle::SerOptions::new())
            .expect("pickles");
        let error = parse_id_to_label(&no_map, Path::new("p")).expect_err("no id_to_label");
        assert!(error.message.contains("id_to_label"), "{error}");
        let error = parse_id_to_label(&chroma_pickle(&[("a", 0)]), Path::new("p")).expect_err("label 0");
        assert!(error.message.contains("label of 'a' is 0"), "{error}");
    }
}
