//! `index_metadata.pickle`: the map from chroma's record ids to hnswlib labels.
//!
//! Chroma 1.x writes it with the `serde-pickle` crate (protocol 3, a plain dict), so the same
//! crate reads it. Python-era pickles (a `PersistentData` object) are refused as an unknown
//! encoding; such stores are too old for this plugin anyway.

use std::collections::HashMap;
use std::path::Path;

use ragged_plugin_api::PluginError;
use serde_pickle::{DeOptions, HashableValue, Value};

/// The file name inside a vector segment directory.
pub const FILE: &str = "index_metadata.pickle";

/// Reads `id_to_label`. An empty map means chroma treats the segment as never persisted.
pub fn read_id_to_label(path: &Path) -> Result<HashMap<String, u64>, PluginError> {
    let bytes = std::fs::read(path).map_err(|e| PluginError::io(path, &e))?;
    parse_id_to_label(&bytes, path)
}

fn parse_id_to_label(bytes: &[u8], path: &Path) -> Result<HashMap<String, u64>, PluginError> {
    let corrupt = |problem: String| PluginError::corrupt(format!("{}: {problem}", path.display()));
    let value = serde_pickle::value_from_slice(bytes, DeOptions::new())
        .map_err(|e| corrupt(format!("unreadable pickle ({e})")))?;
    let Value::Dict(dict) = value else {
        return Err(corrupt("unknown encoding: expected a dict".to_owned()));
    };
    let Some(map) = dict.get(&HashableValue::String("id_to_label".to_owned())) else {
        return Err(corrupt("no 'id_to_label' entry".to_owned()));
    };
    let Value::Dict(map) = map else {
        return Err(corrupt("'id_to_label' is not a dict".to_owned()));
    };
    let mut out = HashMap::with_capacity(map.len());
    for (key, label) in map {
        let HashableValue::String(id) = key else {
            return Err(corrupt(format!("id {key:?} is not a string")));
        };
        let label = match label {
            Value::I64(n) if *n > 0 => *n as u64,
            Value::Int(n) => u64::try_from(n.clone()).map_err(|_| corrupt(format!("label of '{id}' out of range")))?,
            other => {
                return Err(corrupt(format!(
                    "label of '{id}' is {other:?}, expected a positive int"
                )));
            }
        };
        out.insert(id.clone(), label);
    }
    Ok(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::BTreeMap;

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
        let map = parse_id_to_label(&bytes, Path::new("x.pickle")).expect("parses");
        assert_eq!((map["a"], map["b"], map.len()), (1, 2, 2));
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
        assert!(error.message.contains("expected a dict"), "{error}");
    }
}
