//! One record of the canonical schema as plain Rust, and the metadata rules every store follows.

use serde_json::{Map, Value};

/// One record: what every vector store keeps.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// Unique within its collection.
    pub id: String,
    /// The text, if the record has one.
    pub document: Option<String>,
    /// A JSON object following [`validate_metadata`], if the record has metadata.
    pub metadata: Option<String>,
    /// The vector.
    pub embedding: Vec<f32>,
}

/// Checks that `json` is canonical metadata: an object whose values are strings, numbers,
/// booleans, or arrays whose elements are all of one of those types.
pub fn validate_metadata(json: &str) -> Result<(), String> {
    parse_metadata(json).map(drop)
}

/// [`validate_metadata`], returning the object: for a store that needs the values, so that the
/// text is parsed once.
pub fn parse_metadata(json: &str) -> Result<Map<String, Value>, String> {
    let value: Value = serde_json::from_str(json).map_err(|e| format!("metadata is not valid JSON: {e}"))?;
    let Value::Object(map) = value else {
        return Err("metadata must be a JSON object".to_owned());
    };
    for (key, value) in &map {
        match value {
            Value::String(_) | Value::Number(_) | Value::Bool(_) => {}
            Value::Array(items) => {
                let kinds: Vec<&str> = items.iter().map(scalar_kind).collect();
                if let Some(bad) = kinds.iter().find(|k| **k == "other") {
                    return Err(format!(
                        "metadata key '{key}': array elements must be scalars, found {bad}"
                    ));
                }
                if kinds.windows(2).any(|w| w[0] != w[1]) {
                    return Err(format!(
                        "metadata key '{key}': array mixes types ({})",
                        kinds.join(", ")
                    ));
                }
            }
            Value::Null => return Err(format!("metadata key '{key}' is null (leave the key out instead)")),
            Value::Object(_) => {
                return Err(format!(
                    "metadata key '{key}' holds an object; only scalars and arrays are allowed"
                ));
            }
        }
    }
    Ok(map)
}

/// Metadata in its canonical text form: keys sorted at every depth, numbers as written (ints stay
/// ints, floats stay floats). Key order carries no meaning, and sorting explicitly keeps the form
/// stable: serde_json keeps insertion order when any crate in a build enables its `preserve_order`
/// feature (lancedb's dependencies do). Text that is not JSON is returned unchanged.
pub fn canonical_metadata(json: &str) -> String {
    match serde_json::from_str::<Value>(json) {
        Ok(value) => sorted_keys(value).to_string(),
        Err(_) => json.to_owned(),
    }
}

fn sorted_keys(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(
                entries
                    .into_iter()
                    .map(|(key, value)| (key, sorted_keys(value)))
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(items.into_iter().map(sorted_keys).collect()),
        other => other,
    }
}

fn scalar_kind(value: &Value) -> &'static str {
    match value {
        Value::String(_) => "string",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float",
        Value::Number(_) => "int",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(json: &str, expected: Result<(), &str>) {
        let got = validate_metadata(json);
        match expected {
            Ok(()) => assert_eq!(got, Ok(()), "{json}"),
            Err(fragment) => {
                let message = got.expect_err(json);
                assert!(message.contains(fragment), "{json}: {message}");
            }
        }
    }

    #[test]
    fn accepts_typed_scalars_and_homogeneous_arrays() {
        check(
            r#"{"a": 1, "b": 2.0, "c": true, "d": "x", "e": [1, 2], "f": ["a"], "g": []}"#,
            Ok(()),
        );
    }

    #[test]
    fn refuses_what_stores_cannot_keep() {
        check("[1]", Err("must be a JSON object"));
        check("{", Err("not valid JSON"));
        check(r#"{"a": null}"#, Err("'a' is null"));
        check(r#"{"a": {"b": 1}}"#, Err("holds an object"));
        check(r#"{"a": [1, 2.5]}"#, Err("mixes types (int, float)"));
        check(r#"{"a": [[1]]}"#, Err("must be scalars"));
    }

    #[test]
    fn keeps_ints_and_floats_apart_and_sorts_keys() {
        // The whole point of carrying metadata as text: 2 and 2.0 must not collapse.
        assert_eq!(canonical_metadata(r#"{"i": 2, "f": 2.0}"#), r#"{"f":2.0,"i":2}"#);
        let nested = r#"{"b":{"z":1,"a":[{"y":2.0,"x":true}]},"a":"s"}"#;
        assert_eq!(
            canonical_metadata(nested),
            r#"{"a":"s","b":{"a":[{"x":true,"y":2.0}],"z":1}}"#
        );
        assert_eq!(canonical_metadata("not json"), "not json");
    }
}
