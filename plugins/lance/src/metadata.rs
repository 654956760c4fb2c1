//! Record metadata in a LanceDB table, both ways.
//!
//! Written by ragged: the exact JSON object goes to `metadata_json` (the source of truth when
//! reading back), and scalar keys whose type is the same in every record of the first batch are
//! also *promoted* to typed top-level columns (`Int64`, `Float64`, `Boolean`, `Utf8`) so that
//! LanceDB users can filter on them (`tbl.search(v).where("page > 3")`). A record whose value does
//! not fit its key's column has a null there; its JSON still holds the value.
//!
//! Written by others: every column that is not the id, vector or text becomes a metadata key with
//! the value's JSON type; nulls are left out.

use std::sync::Arc;

use arrow_array::builder::{BooleanBuilder, Float64Builder, Int64Builder, StringBuilder};
use arrow_array::cast::AsArray;
use arrow_array::types::{
    Float16Type, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type, UInt8Type, UInt16Type,
    UInt32Type, UInt64Type,
};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_cast::display::{ArrayFormatter, FormatOptions};
use arrow_schema::{DataType, Field};
use ragged_plugin_api::{MetadataScalar, MetadataScalars, PluginError};
use serde_json::{Map, Number, Value};

use crate::schema::columns;

/// At most this many keys are promoted, so a store with free-form keys keeps a sane schema.
const MAX_PROMOTED: usize = 64;

/// The JSON type of a promoted key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Int,
    Float,
    Bool,
    Str,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Int => "int",
            Kind::Float => "float",
            Kind::Bool => "bool",
            Kind::Str => "string",
        }
    }

    fn parse(name: &str) -> Option<Kind> {
        [Kind::Int, Kind::Float, Kind::Bool, Kind::Str]
            .into_iter()
            .find(|k| k.name() == name)
    }

    fn of(value: &MetadataScalar<'_>) -> Option<Kind> {
        match value {
            MetadataScalar::Bool(_) => Some(Kind::Bool),
            MetadataScalar::Str(_) => Some(Kind::Str),
            MetadataScalar::Float(_) => Some(Kind::Float),
            MetadataScalar::Int(_) => Some(Kind::Int),
            // Arrays, and u64 beyond i64, which fits no Int64 column.
            MetadataScalar::Other => None,
        }
    }

    fn data_type(self) -> DataType {
        match self {
            Kind::Int => DataType::Int64,
            Kind::Float => DataType::Float64,
            Kind::Bool => DataType::Boolean,
            Kind::Str => DataType::Utf8,
        }
    }
}

/// The metadata keys of a table that have their own typed column.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Promoted {
    keys: Vec<(String, Kind)>,
}

impl Promoted {
    /// The keys of the first batch's metadata whose values all share one scalar type.
    pub(crate) fn infer(metadata: &[Option<MetadataScalars<'_>>]) -> Promoted {
        let mut seen: Vec<(String, Option<Kind>)> = Vec::new();
        for map in metadata.iter().flatten() {
            for (key, value) in map.iter() {
                let kind = Kind::of(value);
                match seen.iter_mut().find(|(k, _)| k == key) {
                    Some((_, known)) => {
                        if *known != kind {
                            *known = None;
                        }
                    }
                    None => seen.push((key.to_owned(), kind)),
                }
            }
        }
        let mut keys: Vec<(String, Kind)> = seen
            .into_iter()
            .filter_map(|(key, kind)| Some((key, kind?)))
            .filter(|(key, _)| promotable(key))
            .collect();
        keys.sort_by(|a, b| a.0.cmp(&b.0));
        keys.truncate(MAX_PROMOTED);
        Promoted { keys }
    }

    /// The promoted keys recorded in a table's schema metadata.
    pub(crate) fn from_json(text: Option<&str>) -> Promoted {
        let map: Map<String, Value> = text.and_then(|t| serde_json::from_str(t).ok()).unwrap_or_default();
        Promoted {
            keys: map
                .into_iter()
                .filter_map(|(key, kind)| Some((key, Kind::parse(kind.as_str()?)?)))
                .collect(),
        }
    }

    /// The JSON recorded in the schema metadata.
    pub(crate) fn to_json(&self) -> String {
        let map: Map<String, Value> = self
            .keys
            .iter()
            .map(|(key, kind)| (key.clone(), Value::String(kind.name().to_owned())))
            .collect();
        Value::Object(map).to_string()
    }

    /// The nullable typed fields, in key order.
    pub(crate) fn fields(&self) -> Vec<Field> {
        self.keys
            .iter()
            .map(|(key, kind)| Field::new(key, kind.data_type(), true))
            .collect()
    }

    /// The typed columns for a batch's parsed metadata.
    pub(crate) fn columns<'a>(&self, metadata: &'a [Option<MetadataScalars<'a>>]) -> Vec<ArrayRef> {
        // Borrowed: a value is read where it was parsed, never cloned.
        let get = |row: &'a Option<MetadataScalars<'a>>, key: &str| row.as_ref().and_then(|m| m.get(key));
        self.keys
            .iter()
            .map(|(key, kind)| -> ArrayRef {
                match kind {
                    Kind::Int => {
                        let mut b = Int64Builder::with_capacity(metadata.len());
                        metadata
                            .iter()
                            .for_each(|r| b.append_option(get(r, key).and_then(MetadataScalar::as_i64)));
                        Arc::new(b.finish())
                    }
                    Kind::Float => {
                        let mut b = Float64Builder::with_capacity(metadata.len());
                        metadata.iter().for_each(|r| {
                            b.append_option(get(r, key).and_then(MetadataScalar::as_f64));
                        });
                        Arc::new(b.finish())
                    }
                    Kind::Bool => {
                        let mut b = BooleanBuilder::with_capacity(metadata.len());
                        metadata
                            .iter()
                            .for_each(|r| b.append_option(get(r, key).and_then(MetadataScalar::as_bool)));
                        Arc::new(b.finish())
                    }
                    Kind::Str => {
                        let mut b = StringBuilder::with_capacity(metadata.len(), metadata.len() * 16);
                        metadata.iter().for_each(|r| {
                            b.append_option(get(r, key).and_then(MetadataScalar::as_str));
                        });
                        Arc::new(b.finish())
                    }
                }
            })
            .collect()
    }
}

/// Whether a key can become a column that SQL filters reach without quoting, and that cannot
/// collide with ragged's own columns or LanceDB's (`_distance`, `_rowid`, ...).
fn promotable(key: &str) -> bool {
    let reserved = [columns::ID, columns::VECTOR, columns::TEXT, columns::METADATA_JSON];
    let mut chars = key.chars();
    key.len() <= 64
        && chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !reserved.iter().any(|r| r.eq_ignore_ascii_case(key))
}

/// Parses canonical metadata text (already validated by the host's rules or refused here).
pub(crate) fn parse<'a>(text: Option<&'a str>, id: &str) -> Result<Option<MetadataScalars<'a>>, PluginError> {
    let Some(text) = text else { return Ok(None) };
    ragged_plugin_api::metadata_scalars(text)
        .map(Some)
        .map_err(|e| PluginError::invalid_input(format!("record '{id}': {e}")))
}

/// The metadata of every row of a foreign table's batch, built from `extra` columns.
pub(crate) fn from_columns(batch: &RecordBatch, extra: &[String]) -> Result<Vec<Option<String>>, PluginError> {
    let mut rows: Vec<Map<String, Value>> = vec![Map::new(); batch.num_rows()];
    for name in extra {
        let Some(column) = batch.column_by_name(name) else {
            continue;
        };
        add_column(&mut rows, name, column, true)?;
    }
    Ok(rows.into_iter().map(|m| Some(Value::Object(m).to_string())).collect())
}

/// Adds the values of one column as key `name` (structs: one key per field, `name.field`, except
/// at the top level of a struct column called `metadata`, whose fields are the keys).
fn add_column(rows: &mut [Map<String, Value>], name: &str, column: &ArrayRef, top: bool) -> Result<(), PluginError> {
    if let DataType::Struct(fields) = column.data_type() {
        let structs = column.as_struct();
        for (index, field) in fields.iter().enumerate() {
            let key = if top && name == "metadata" {
                field.name().clone()
            } else {
                format!("{name}.{}", field.name())
            };
            let child = structs.column(index).clone();
            // A null struct hides its children.
            let mut masked: Vec<Map<String, Value>> = vec![Map::new(); rows.len()];
            add_column(&mut masked, &key, &child, false)?;
            for (row, extra) in masked.into_iter().enumerate() {
                if structs.is_valid(row) {
                    rows[row].extend(extra);
                }
            }
        }
        return Ok(());
    }
    for (row, map) in rows.iter_mut().enumerate() {
        if let Some(value) = value_at(column, row)? {
            map.insert(name.to_owned(), value);
        }
    }
    Ok(())
}

/// One cell as a metadata value: `None` for null.
fn value_at(column: &ArrayRef, row: usize) -> Result<Option<Value>, PluginError> {
    if column.is_null(row) {
        return Ok(None);
    }
    let float = |x: f64| Number::from_f64(x).map_or_else(|| Value::String(x.to_string()), Value::Number);
    let value = match column.data_type() {
        DataType::Boolean => Value::Bool(column.as_boolean().value(row)),
        DataType::Int8 => Value::from(column.as_primitive::<Int8Type>().value(row)),
        DataType::Int16 => Value::from(column.as_primitive::<Int16Type>().value(row)),
        DataType::Int32 => Value::from(column.as_primitive::<Int32Type>().value(row)),
        DataType::Int64 => Value::from(column.as_primitive::<Int64Type>().value(row)),
        DataType::UInt8 => Value::from(column.as_primitive::<UInt8Type>().value(row)),
        DataType::UInt16 => Value::from(column.as_primitive::<UInt16Type>().value(row)),
        DataType::UInt32 => Value::from(column.as_primitive::<UInt32Type>().value(row)),
        DataType::UInt64 => Value::from(column.as_primitive::<UInt64Type>().value(row)),
        DataType::Float16 => float(f64::from(column.as_primitive::<Float16Type>().value(row))),
        DataType::Float32 => float(f64::from(column.as_primitive::<Float32Type>().value(row))),
        DataType::Float64 => float(column.as_primitive::<Float64Type>().value(row)),
        DataType::Utf8 => Value::String(column.as_string::<i32>().value(row).to_owned()),
        DataType::LargeUtf8 => Value::String(column.as_string::<i64>().value(row).to_owned()),
        DataType::Utf8View => Value::String(column.as_string_view().value(row).to_owned()),
        DataType::List(_) | DataType::LargeList(_) | DataType::FixedSizeList(_, _) => {
            let items: ArrayRef = match column.data_type() {
                DataType::List(_) => column.as_list::<i32>().value(row),
                DataType::LargeList(_) => column.as_list::<i64>().value(row),
                _ => column.as_fixed_size_list().value(row),
            };
            let mut values = Vec::with_capacity(items.len());
            for index in 0..items.len() {
                match value_at(&items, index)? {
                    // Metadata arrays hold scalars only: nested values are shown as text.
                    Some(Value::Array(_)) | Some(Value::Object(_)) | None => {}
                    Some(v) => values.push(v),
                }
            }
            Value::Array(values)
        }
        // Dates, timestamps, decimals, binaries...: their display text, as pandas would print it.
        _ => {
            let formatter = ArrayFormatter::try_new(column.as_ref(), &FormatOptions::default())
                .map_err(|e| PluginError::invalid_input(format!("cannot show a {} value: {e}", column.data_type())))?;
            Value::String(formatter.value(row).to_string())
        }
    };
    Ok(Some(value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::builder::ListBuilder;
    use arrow_array::{Float32Array, Int32Array, StringArray};
    use arrow_schema::Schema;

    fn maps<'a>(texts: &[&'a str]) -> Vec<Option<MetadataScalars<'a>>> {
        texts.iter().map(|t| parse(Some(t), "r").expect("valid")).collect()
    }

    #[test]
    fn only_consistent_plain_scalar_keys_are_promoted() {
        let promoted = Promoted::infer(&maps(&[
            r#"{"page": 1, "score": 2.0, "mixed": 1, "tags": ["a"], "id": "x", "bad key": 1, "ok": true}"#,
            r#"{"page": 2, "mixed": "one", "source": "s"}"#,
        ]));
        assert_eq!(
            promoted.to_json(),
            r#"{"ok":"bool","page":"int","score":"float","source":"string"}"#
        );
        assert_eq!(Promoted::from_json(Some(&promoted.to_json())), promoted);
    }

    #[test]
    fn promoted_columns_are_null_where_the_type_differs() {
        let promoted = Promoted::infer(&maps(&[r#"{"page": 1}"#]));
        let columns = promoted.columns(&maps(&[r#"{"page": 7}"#, r#"{"page": 2.5}"#, "{}"]));
        let pages = columns[0].as_primitive::<Int64Type>();
        assert_eq!(pages.iter().collect::<Vec<_>>(), vec![Some(7), None, None]);
    }

    #[test]
    fn foreign_columns_become_typed_metadata() {
        let mut tags = ListBuilder::new(StringBuilder::new());
        tags.values().append_value("a");
        tags.values().append_value("b");
        tags.append(true);
        tags.append(false);
        let schema = Schema::new(vec![
            Field::new("n", DataType::Int32, true),
            Field::new("f", DataType::Float32, true),
            Field::new("s", DataType::Utf8, true),
            Field::new(
                "tags",
                DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
                true,
            ),
        ]);
        let batch = RecordBatch::try_new(
            Arc::new(schema),
            vec![
                Arc::new(Int32Array::from(vec![Some(2), None])),
                Arc::new(Float32Array::from(vec![Some(0.5), Some(2.0)])),
                Arc::new(StringArray::from(vec![Some("x"), None])),
                Arc::new(tags.finish()),
            ],
        )
        .expect("batch");
        let got = from_columns(&batch, &["n".into(), "f".into(), "s".into(), "tags".into()]).expect("converts");
        let parsed: Vec<Value> = got
            .iter()
            .map(|t| serde_json::from_str(t.as_deref().expect("metadata")).expect("json"))
            .collect();
        assert_eq!(
            parsed,
            vec![
                serde_json::json!({"f": 0.5, "n": 2, "s": "x", "tags": ["a", "b"]}),
                serde_json::json!({"f": 2.0})
            ]
        );
        // 2.0 stays a float, 2 an int.
        assert!(parsed[1]["f"].is_f64() && parsed[0]["n"].is_i64());
    }

    #[test]
    fn struct_columns_are_flattened() {
        let fields = arrow_schema::Fields::from(vec![
            Field::new("page", DataType::Int64, true),
            Field::new("src", DataType::Utf8, true),
        ]);
        let children: Vec<ArrayRef> = vec![
            Arc::new(arrow_array::Int64Array::from(vec![Some(3), Some(4)])),
            Arc::new(StringArray::from(vec![Some("a"), None])),
        ];
        let nulls = arrow_buffer::NullBuffer::from(vec![true, false]);
        let metadata = arrow_array::StructArray::new(fields.clone(), children.clone(), Some(nulls));
        let other = arrow_array::StructArray::new(fields, children, None);
        let schema = Schema::new(vec![
            Field::new("metadata", metadata.data_type().clone(), true),
            Field::new("loc", other.data_type().clone(), true),
        ]);
        let batch = RecordBatch::try_new(Arc::new(schema), vec![Arc::new(metadata), Arc::new(other)]).expect("batch");
        let got = from_columns(&batch, &["metadata".into(), "loc".into()]).expect("converts");
        let parsed: Vec<Value> = got
            .iter()
            .map(|t| serde_json::from_str(t.as_deref().expect("json")).expect("json"))
            .collect();
        assert_eq!(
            parsed,
            vec![
                serde_json::json!({"page": 3, "src": "a", "loc.page": 3, "loc.src": "a"}),
                // The null `metadata` struct hides its fields.
                serde_json::json!({"loc.page": 4}),
            ]
        );
    }
}
