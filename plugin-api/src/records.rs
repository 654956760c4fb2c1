//! One record of the canonical schema as plain Rust, and the metadata rules every store follows.

use serde_json::Value;

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
    Ok(())
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
    fn keeps_ints_and_floats_apart() {
        // The whole point of carrying metadata as text: 2 and 2.0 must not collapse.
        let value: Value = serde_json::from_str(r#"{"i": 2, "f": 2.0}"#).expect("valid json");
        assert_eq!(serde_json::to_string(&value).expect("encodes"), r#"{"f":2.0,"i":2}"#);
    }
}
