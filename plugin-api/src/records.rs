//! One record of the canonical schema as plain Rust, and the metadata rules every store follows.

use std::borrow::Cow;
use std::fmt;

use serde::Deserializer as _;
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
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
    metadata_scalars(json).map(drop)
}

/// [`validate_metadata`], returning the object: for a store that needs the values, so that the
/// text is parsed once.
pub fn parse_metadata(json: &str) -> Result<Map<String, Value>, String> {
    let value: Value = serde_json::from_str(json).map_err(|e| format!("metadata is not valid JSON: {e}"))?;
    let Value::Object(map) = value else {
        return Err("metadata must be a JSON object".to_owned());
    };
    for (key, value) in &map {
        let kind = match value {
            Value::String(_) | Value::Number(_) | Value::Bool(_) => Kind::Scalar,
            Value::Array(items) => Kind::Array(items.iter().map(scalar_kind).collect()),
            Value::Null => Kind::Null,
            Value::Object(_) => Kind::Object,
        };
        check_value(key, &kind)?;
    }
    Ok(map)
}

/// What a metadata value is, as far as the rules care.
enum Kind {
    Scalar,
    /// The kinds of its elements, as [`scalar_kind`] names them.
    Array(Vec<&'static str>),
    Null,
    Object,
}

/// The metadata rules for one value.
fn check_value(key: &str, kind: &Kind) -> Result<(), String> {
    match kind {
        Kind::Scalar => Ok(()),
        Kind::Array(kinds) => {
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
            Ok(())
        }
        Kind::Null => Err(format!("metadata key '{key}' is null (leave the key out instead)")),
        Kind::Object => Err(format!(
            "metadata key '{key}' holds an object; only scalars and arrays are allowed"
        )),
    }
}

/// A scalar of metadata as [`metadata_scalars`] reads it, strings borrowed from the text when
/// they hold no escapes.
#[derive(Debug, Clone, PartialEq)]
pub enum MetadataScalar<'a> {
    /// A JSON string.
    Str(Cow<'a, str>),
    /// A JSON number written without fraction or exponent, within `i64`.
    Int(i64),
    /// A JSON number written with a fraction or an exponent.
    Float(f64),
    /// A JSON boolean.
    Bool(bool),
    /// An array, or an integer beyond `i64`: checked, not kept.
    Other,
}

impl MetadataScalar<'_> {
    /// The integer, if this is one.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            MetadataScalar::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// The float, if this is one (an integer is not).
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            MetadataScalar::Float(x) => Some(*x),
            _ => None,
        }
    }

    /// The boolean, if this is one.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            MetadataScalar::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            MetadataScalar::Str(s) => Some(s),
            _ => None,
        }
    }
}

/// The keys and scalars of one metadata object, sorted by key.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MetadataScalars<'a>(Vec<(Cow<'a, str>, MetadataScalar<'a>)>);

impl<'a> MetadataScalars<'a> {
    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&MetadataScalar<'a>> {
        let at = self.0.binary_search_by(|(k, _)| k.as_ref().cmp(key)).ok()?;
        Some(&self.0[at].1)
    }

    /// The keys and values, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &MetadataScalar<'a>)> {
        self.0.iter().map(|(key, value)| (key.as_ref(), value))
    }
}

/// [`parse_metadata`] for a store that needs only the scalars: the same rules and errors, without
/// building a JSON tree (a map, a `String` per key and string value). A repeated key keeps its
/// last value, as in [`parse_metadata`].
pub fn metadata_scalars(json: &str) -> Result<MetadataScalars<'_>, String> {
    let mut deserializer = serde_json::Deserializer::from_str(json);
    let read = (&mut deserializer)
        .deserialize_map(ObjectVisitor)
        .and_then(|entries| deserializer.end().map(|()| entries));
    let entries = match read {
        Ok(entries) => entries,
        // parse_metadata words the errors, so both say the same.
        Err(error) => return Err(parse_metadata(json).err().unwrap_or_else(|| error.to_string())),
    };
    // Last occurrence first, then a stable sort by key: deduplicating keeps the first of each key,
    // its last value in the text.
    let mut entries: Vec<_> = entries.into_iter().rev().collect();
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    entries.dedup_by(|next, kept| next.0 == kept.0);
    let mut scalars = Vec::with_capacity(entries.len());
    for (key, value) in entries {
        match value {
            Ok(value) => scalars.push((key, value)),
            Err(broken) => return Err(parse_metadata(json).err().unwrap_or(broken)),
        }
    }
    Ok(MetadataScalars(scalars))
}

/// A metadata object's entries in text order; a value that breaks the rules is the rule's error.
type Entries<'a> = Vec<(Cow<'a, str>, Result<MetadataScalar<'a>, String>)>;

struct ObjectVisitor;

impl<'de> Visitor<'de> for ObjectVisitor {
    type Value = Entries<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a metadata object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key_seed(KeySeed)? {
            let value = match map.next_value_seed(ValueSeed)? {
                Ok(value) => Ok(value),
                Err(kind) => check_value(&key, &kind).map(|()| MetadataScalar::Other),
            };
            entries.push((key, value));
        }
        Ok(entries)
    }
}

/// A key, borrowed from the text when it holds no escapes.
struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a metadata key")
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_owned()))
    }
}

/// One value of the object: a scalar, or its [`Kind`] for the rules to judge.
struct ValueSeed;

impl<'de> DeserializeSeed<'de> for ValueSeed {
    type Value = Result<MetadataScalar<'de>, Kind>;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Result<MetadataScalar<'de>, Kind>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a metadata value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Ok(MetadataScalar::Bool(v)))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Ok(MetadataScalar::Int(v)))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Ok(i64::try_from(v).map_or(MetadataScalar::Other, MetadataScalar::Int)))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Ok(MetadataScalar::Float(v)))
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Ok(MetadataScalar::Str(Cow::Borrowed(v))))
    }

    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Ok(MetadataScalar::Str(Cow::Owned(v.to_owned()))))
    }

    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(Ok(MetadataScalar::Str(Cow::Owned(v))))
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Err(Kind::Null))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        Skip.visit_map(map)?;
        Ok(Err(Kind::Object))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut kinds = Vec::new();
        while let Some(kind) = seq.next_element_seed(ElementKind)? {
            kinds.push(kind);
        }
        Ok(Err(Kind::Array(kinds)))
    }
}

/// An array element's kind, as [`scalar_kind`] names it.
struct ElementKind;

impl<'de> DeserializeSeed<'de> for ElementKind {
    type Value = &'static str;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ElementKind {
    type Value = &'static str;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array element")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok("bool")
    }

    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok("int")
    }

    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok("int")
    }

    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok("float")
    }

    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok("string")
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok("other")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        Skip.visit_map(map)?;
        Ok("other")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        Skip.visit_seq(seq)?;
        Ok("other")
    }
}

/// A nested value, read in full and dropped: serde's `IgnoredAny` skips numbers and escapes
/// without checking them, while [`parse_metadata`] refuses a number out of range or a lone
/// surrogate at any depth.
struct Skip;

impl<'de> DeserializeSeed<'de> for Skip {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Skip {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while map.next_key_seed(Skip)?.is_some() {
            map.next_value_seed(Skip)?;
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(Skip)?.is_some() {}
        Ok(())
    }
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
    use proptest::prelude::*;

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

    /// The scalars of a parsed map, in the form [`metadata_scalars`] gives them.
    fn scalars_of(map: &Map<String, Value>) -> Vec<(String, MetadataScalar<'static>)> {
        let mut out: Vec<_> = map
            .iter()
            .map(|(key, value)| {
                let scalar = match value {
                    Value::String(s) => MetadataScalar::Str(Cow::Owned(s.clone())),
                    Value::Bool(b) => MetadataScalar::Bool(*b),
                    Value::Number(n) if n.is_f64() => MetadataScalar::Float(n.as_f64().expect("f64")),
                    Value::Number(n) => n.as_i64().map_or(MetadataScalar::Other, MetadataScalar::Int),
                    _ => MetadataScalar::Other,
                };
                (key.clone(), scalar)
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// JSON text of metadata-like objects: repeated keys, every kind of value (also the ones the
    /// rules refuse), escapes, big and negative numbers, and now and then broken text.
    fn json_text() -> impl Strategy<Value = String> {
        let scalar = prop_oneof![
            Just("null".to_owned()),
            any::<bool>().prop_map(|b| b.to_string()),
            any::<i64>().prop_map(|i| i.to_string()),
            any::<u64>().prop_map(|u| u.to_string()),
            Just("-0".to_owned()),
            any::<f64>()
                .prop_filter("finite", |x| x.is_finite())
                .prop_map(|x| format!("{x:?}")),
            Just("1e400".to_owned()),
            Just("18446744073709551616".to_owned()),
            Just(r#""\ud800""#.to_owned()),
            "[a-c\\\\\"é\\n]{0,6}".prop_map(|s| format!(
                "\"{}\"",
                s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
            )),
            Just(r#""tab\t\u00e9""#.to_owned()),
        ];
        let value = scalar.prop_recursive(2, 8, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(|items| format!("[{}]", items.join(","))),
                prop::collection::vec(("[ab]", inner), 0..3).prop_map(|entries| {
                    let entries: Vec<String> = entries.into_iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
                    format!("{{{}}}", entries.join(","))
                }),
            ]
        });
        let key = prop_oneof![
            Just("k".to_owned()),
            Just("page".to_owned()),
            Just(r#"e\u0073c"#.to_owned()),
            Just(r#"\udc00"#.to_owned()),
            "[a-z]{1,3}"
        ];
        let object = prop::collection::vec((key, value.clone()), 0..6).prop_map(|entries| {
            let entries: Vec<String> = entries.into_iter().map(|(k, v)| format!("\"{k}\": {v}")).collect();
            format!("{{{}}}", entries.join(", "))
        });
        prop_oneof![
            8 => object.clone(),
            1 => value,
            1 => (object, any::<prop::sample::Index>()).prop_map(|(text, cut)| {
                let end = (0..=cut.index(text.len() + 1)).rev().find(|&end| text.is_char_boundary(end));
                text[..end.unwrap_or(0)].to_owned()
            }),
        ]
    }

    proptest! {
        #[test]
        fn metadata_scalars_agree_with_parse_metadata(text in json_text()) {
            match (metadata_scalars(&text), parse_metadata(&text)) {
                (Ok(scalars), Ok(map)) => {
                    let scalars: Vec<_> = scalars.iter().map(|(k, v)| (k.to_owned(), v.clone())).collect();
                    let expected = scalars_of(&map);
                    prop_assert_eq!(scalars.len(), expected.len());
                    for ((key, got), (want_key, want)) in scalars.iter().zip(&expected) {
                        prop_assert_eq!(key, want_key);
                        match (got, want) {
                            // Bits, so that -0.0 and NaN-free floats compare exactly.
                            (MetadataScalar::Float(a), MetadataScalar::Float(b)) => prop_assert_eq!(a.to_bits(), b.to_bits()),
                            _ => prop_assert_eq!(got, want),
                        }
                    }
                }
                (Err(fast), Err(slow)) => prop_assert_eq!(fast, slow),
                (fast, slow) => prop_assert!(false, "{text}: metadata_scalars {fast:?}, parse_metadata {slow:?}"),
            }
        }
    }

    #[test]
    fn metadata_scalars_borrow_plain_text_and_keep_the_last_repeated_key() {
        let scalars = metadata_scalars(r#"{"b": "plain", "a": 1, "e\u0073c": "t\u00e9", "a": 2.5}"#).expect("valid");
        let entries: Vec<_> = scalars.iter().collect();
        assert_eq!(entries.len(), 3);
        assert_eq!(scalars.get("a"), Some(&MetadataScalar::Float(2.5)));
        assert!(matches!(
            scalars.get("b"),
            Some(MetadataScalar::Str(Cow::Borrowed("plain")))
        ));
        assert!(matches!(scalars.get("esc"), Some(MetadataScalar::Str(Cow::Owned(s))) if s == "té"));
        // A refused value that a later one replaces is no error, as in parse_metadata.
        assert!(metadata_scalars(r#"{"a": null, "a": 1}"#).is_ok());
        assert_eq!(
            metadata_scalars(r#"{"a": 1, "a": [1, 2.5]}"#),
            Err("metadata key 'a': array mixes types (int, float)".to_owned())
        );
    }
}
