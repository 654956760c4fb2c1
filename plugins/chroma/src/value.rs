//! Chroma's typed metadata values and their canonical JSON form.
//!
//! Chroma keeps strings, 64-bit integers, 64-bit floats, booleans and (since 1.5) homogeneous
//! arrays of those. The canonical ragged form is a JSON object whose integers have no fraction and
//! whose floats always have one, so the int/float distinction survives every hop.

use std::collections::BTreeMap;

use serde::ser::Error as _;
use serde::{Serialize, Serializer};
use serde_json::{Number, Value};

/// One metadata value as chroma stores it.
#[derive(Debug, Clone, PartialEq)]
pub enum MetaValue {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    StrArray(Vec<String>),
    IntArray(Vec<i64>),
    FloatArray(Vec<f64>),
    BoolArray(Vec<bool>),
}

/// A record's metadata, keyed and ordered by name so output is deterministic.
pub type Metadata = BTreeMap<String, MetaValue>;

/// The key under which chroma keeps a record's document inside its metadata.
pub const DOCUMENT_KEY: &str = "chroma:document";

impl MetaValue {
    /// The value as canonical JSON; fails only for floats JSON cannot hold (NaN, infinities).
    pub fn to_json(&self) -> Result<Value, String> {
        fn float(x: f64) -> Result<Value, String> {
            Number::from_f64(x)
                .map(Value::Number)
                .ok_or_else(|| format!("float {x} cannot be written as JSON"))
        }
        Ok(match self {
            MetaValue::Str(s) => Value::String(s.clone()),
            MetaValue::Int(i) => Value::from(*i),
            MetaValue::Float(x) => float(*x)?,
            MetaValue::Bool(b) => Value::Bool(*b),
            MetaValue::StrArray(v) => Value::Array(v.iter().cloned().map(Value::String).collect()),
            MetaValue::IntArray(v) => Value::Array(v.iter().map(|i| Value::from(*i)).collect()),
            MetaValue::FloatArray(v) => Value::Array(v.iter().map(|x| float(*x)).collect::<Result<_, _>>()?),
            MetaValue::BoolArray(v) => Value::Array(v.iter().map(|b| Value::Bool(*b)).collect()),
        })
    }

    /// The value for canonical JSON (already checked by `validate_metadata`). Integers outside
    /// i64 and empty arrays have no chroma form and are refused.
    pub fn from_json(key: &str, value: &Value) -> Result<MetaValue, String> {
        fn number(key: &str, n: &Number) -> Result<MetaValue, String> {
            if n.is_f64() {
                n.as_f64()
                    .map(MetaValue::Float)
                    .ok_or_else(|| format!("metadata key '{key}': float out of range"))
            } else {
                n.as_i64()
                    .map(MetaValue::Int)
                    .ok_or_else(|| format!("metadata key '{key}': integer {n} does not fit chroma's 64-bit integers"))
            }
        }
        match value {
            Value::String(s) => Ok(MetaValue::Str(s.clone())),
            Value::Bool(b) => Ok(MetaValue::Bool(*b)),
            Value::Number(n) => number(key, n),
            Value::Array(items) => {
                if items.is_empty() {
                    return Err(format!(
                        "metadata key '{key}' is an empty array, which chroma drops (leave the key out)"
                    ));
                }
                let scalars = items
                    .iter()
                    .map(|item| MetaValue::from_json(key, item))
                    .collect::<Result<Vec<_>, _>>()?;
                if scalars[0].is_array() {
                    return Err(format!("metadata key '{key}': arrays of arrays are not allowed"));
                }
                MetaValue::array(scalars).ok_or_else(|| format!("metadata key '{key}': array mixes types"))
            }
            Value::Null => Err(format!("metadata key '{key}' is null")),
            Value::Object(_) => Err(format!("metadata key '{key}' holds an object")),
        }
    }

    /// The array of these scalars, or `None` when there are none, they mix types or one is an
    /// array itself.
    pub fn array(items: Vec<MetaValue>) -> Option<MetaValue> {
        fn all<T>(items: Vec<MetaValue>, take: fn(MetaValue) -> Option<T>) -> Option<Vec<T>> {
            items.into_iter().map(take).collect()
        }
        match items.first()? {
            MetaValue::Str(_) => {
                all(items, |v| if let MetaValue::Str(s) = v { Some(s) } else { None }).map(MetaValue::StrArray)
            }
            MetaValue::Int(_) => {
                all(items, |v| if let MetaValue::Int(i) = v { Some(i) } else { None }).map(MetaValue::IntArray)
            }
            MetaValue::Float(_) => {
                all(items, |v| if let MetaValue::Float(x) = v { Some(x) } else { None }).map(MetaValue::FloatArray)
            }
            MetaValue::Bool(_) => {
                all(items, |v| if let MetaValue::Bool(b) = v { Some(b) } else { None }).map(MetaValue::BoolArray)
            }
            _ => None,
        }
    }

    /// Whether this is one of the array kinds.
    pub fn is_array(&self) -> bool {
        matches!(
            self,
            MetaValue::StrArray(_) | MetaValue::IntArray(_) | MetaValue::FloatArray(_) | MetaValue::BoolArray(_)
        )
    }

    /// The value as sqlite hands it back after chroma stored it: `-0.0` in a REAL column comes
    /// back as `0.0` (sqlite stores integral reals as integers).
    pub fn through_sqlite(self) -> MetaValue {
        fn zero(x: f64) -> f64 {
            if x == 0.0 { 0.0 } else { x }
        }
        match self {
            MetaValue::Float(x) => MetaValue::Float(zero(x)),
            MetaValue::FloatArray(v) => MetaValue::FloatArray(v.into_iter().map(zero).collect()),
            other => other,
        }
    }
}

/// Canonical metadata JSON text for a record, or `None` when nothing is left (chroma's `get()`
/// returns `None` for a record whose only key was its document). Written straight from the map,
/// keys in order, with no `serde_json::Value` in between.
pub fn metadata_to_json(metadata: &Metadata) -> Result<Option<String>, String> {
    if metadata.is_empty() {
        return Ok(None);
    }
    serde_json::to_string(metadata).map(Some).map_err(|e| {
        match metadata.iter().find(|(_, value)| value.to_json().is_err()) {
            Some((key, _)) => format!("metadata key '{key}': {e}"),
            None => e.to_string(),
        }
    })
}

/// Serialises as [`MetaValue::to_json`] would build it.
impl Serialize for MetaValue {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        /// A float JSON can hold: serde_json would write NaN and infinities as `null`.
        struct Finite(f64);
        impl Serialize for Finite {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                if !self.0.is_finite() {
                    return Err(S::Error::custom(format!("float {} cannot be written as JSON", self.0)));
                }
                serializer.serialize_f64(self.0)
            }
        }
        match self {
            MetaValue::Str(s) => serializer.serialize_str(s),
            MetaValue::Int(i) => serializer.serialize_i64(*i),
            MetaValue::Float(x) => Finite(*x).serialize(serializer),
            MetaValue::Bool(b) => serializer.serialize_bool(*b),
            MetaValue::StrArray(v) => serializer.collect_seq(v),
            MetaValue::IntArray(v) => serializer.collect_seq(v),
            MetaValue::FloatArray(v) => serializer.collect_seq(v.iter().map(|x| Finite(*x))),
            MetaValue::BoolArray(v) => serializer.collect_seq(v),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_json_keeps_int_and_float_apart() {
        let mut m = Metadata::new();
        m.insert("i".into(), MetaValue::Int(2));
        m.insert("f".into(), MetaValue::Float(2.0));
        m.insert("a".into(), MetaValue::FloatArray(vec![1.0, 0.5]));
        m.insert("b".into(), MetaValue::BoolArray(vec![true]));
        assert_eq!(
            metadata_to_json(&m).expect("encodes"),
            Some(r#"{"a":[1.0,0.5],"b":[true],"f":2.0,"i":2}"#.to_owned())
        );
        assert_eq!(metadata_to_json(&Metadata::new()).expect("encodes"), None);
        m.insert("s".into(), MetaValue::StrArray(vec!["\"q\"".into()]));
        m.insert("x".into(), MetaValue::Float(f64::INFINITY));
        let error = metadata_to_json(&m).expect_err("infinity");
        assert!(
            error.starts_with("metadata key 'x': float inf cannot be written"),
            "{error}"
        );
        m.remove("x");
        m.insert("n".into(), MetaValue::FloatArray(vec![0.5, f64::NAN]));
        let error = metadata_to_json(&m).expect_err("NaN");
        assert!(
            error.starts_with("metadata key 'n': float NaN cannot be written"),
            "{error}"
        );
        m.remove("n");
        assert_eq!(
            metadata_to_json(&m).expect("encodes"),
            Some(r#"{"a":[1.0,0.5],"b":[true],"f":2.0,"i":2,"s":["\"q\""]}"#.to_owned())
        );
    }

    #[test]
    fn from_json_refuses_what_chroma_cannot_keep() {
        let v: Value = serde_json::from_str(r#"{"e":[],"big":18446744073709551615,"ok":[1,2]}"#).expect("json");
        assert!(
            MetaValue::from_json("e", &v["e"])
                .expect_err("empty")
                .contains("empty array")
        );
        assert!(
            MetaValue::from_json("big", &v["big"])
                .expect_err("u64")
                .contains("64-bit")
        );
        assert_eq!(
            MetaValue::from_json("ok", &v["ok"]),
            Ok(MetaValue::IntArray(vec![1, 2]))
        );
    }

    #[test]
    fn negative_zero_comes_back_positive() {
        let MetaValue::Float(x) = MetaValue::Float(-0.0).through_sqlite() else {
            panic!("float expected")
        };
        assert_eq!(x.to_bits(), 0.0f64.to_bits());
    }
}
