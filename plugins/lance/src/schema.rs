//! How a collection maps onto a LanceDB table: the schema ragged writes, the schema-metadata keys
//! that carry the collection's description, and how the id, vector, text and metadata columns of
//! any table (also one written by someone else) are found.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_schema::{DataType, Field, Schema, SchemaRef};
use ragged_plugin_api::{CollectionInfo, DistanceMetric, ErrorCode, PluginError};
use serde_json::{Map, Value};

use crate::metadata::Promoted;
use crate::options::ColumnOptions;

/// Column names of a table written by ragged.
pub(crate) mod columns {
    /// `Utf8`, non-null: the record id.
    pub(crate) const ID: &str = "id";
    /// `FixedSizeList<Float32, dim>`: LanceDB's default vector column name.
    pub(crate) const VECTOR: &str = "vector";
    /// `Utf8`, nullable: the document.
    pub(crate) const TEXT: &str = "text";
    /// `Utf8`, nullable: the exact typed metadata as a JSON object.
    pub(crate) const METADATA_JSON: &str = "metadata_json";
}

/// Schema-metadata keys (on the Arrow schema of the table, visible as `tbl.schema.metadata`).
pub(crate) mod keys {
    /// Marks a table written by ragged; the value is the layout version.
    pub(crate) const FORMAT: &str = "ragged.format";
    /// `l2`, `cosine` or `ip`.
    pub(crate) const METRIC: &str = "ragged.metric";
    /// The embedding model, when known.
    pub(crate) const EMBEDDING_MODEL: &str = "ragged.embedding_model";
    /// The source's index parameters (JSON), as hints for the vector index.
    pub(crate) const INDEX_PARAMS: &str = "ragged.index_params";
    /// The collection's own metadata (JSON object).
    pub(crate) const COLLECTION_METADATA: &str = "ragged.collection_metadata";
    /// Store-specific facts of the source (JSON object).
    pub(crate) const EXTRAS: &str = "ragged.extras";
    /// The metadata keys promoted to typed columns (JSON object: key to type).
    pub(crate) const PROMOTED: &str = "ragged.promoted";
}

/// The layout version written into [`keys::FORMAT`].
pub(crate) const FORMAT_VERSION: &str = "1";

/// The element field of a vector, named as arrow-rs, pyarrow and LanceDB name it.
pub(crate) fn vector_item() -> Arc<Field> {
    Arc::new(Field::new("item", DataType::Float32, true))
}

/// The schema of a new table for `info`, with the promoted metadata columns.
pub(crate) fn ragged_schema(info: &CollectionInfo, promoted: &Promoted) -> Result<SchemaRef, PluginError> {
    let mut fields = vec![
        Field::new(columns::ID, DataType::Utf8, false),
        Field::new(
            columns::VECTOR,
            DataType::FixedSizeList(vector_item(), dimension_i32(info.dimension)?),
            false,
        ),
        Field::new(columns::TEXT, DataType::Utf8, true),
        Field::new(columns::METADATA_JSON, DataType::Utf8, true),
    ];
    fields.extend(promoted.fields());
    let mut metadata = HashMap::new();
    metadata.insert(keys::FORMAT.to_owned(), FORMAT_VERSION.to_owned());
    metadata.insert(keys::METRIC.to_owned(), info.metric.as_str().to_owned());
    if let Some(model) = &info.embedding_model {
        metadata.insert(keys::EMBEDDING_MODEL.to_owned(), model.clone());
    }
    if let Some(params) = &info.index_params {
        metadata.insert(keys::INDEX_PARAMS.to_owned(), params.to_string());
    }
    if !info.metadata.is_empty() {
        metadata.insert(
            keys::COLLECTION_METADATA.to_owned(),
            Value::Object(info.metadata.clone()).to_string(),
        );
    }
    if !info.extras.is_empty() {
        metadata.insert(keys::EXTRAS.to_owned(), Value::Object(info.extras.clone()).to_string());
    }
    metadata.insert(keys::PROMOTED.to_owned(), promoted.to_json());
    Ok(Arc::new(Schema::new_with_metadata(fields, metadata)))
}

fn dimension_i32(dimension: u32) -> Result<i32, PluginError> {
    match i32::try_from(dimension) {
        Ok(d) if d > 0 => Ok(d),
        _ => Err(PluginError::invalid_input(format!(
            "dimension {dimension} is not a usable vector length"
        ))),
    }
}

/// Where the parts of a record live in one table.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Layout {
    /// The id column (strings, or integers shown as strings).
    pub(crate) id: String,
    /// Whether the id column holds integers.
    pub(crate) id_is_integer: bool,
    /// The vector column, a `FixedSizeList` of floats.
    pub(crate) vector: String,
    /// Its length.
    pub(crate) dimension: u32,
    /// Whether the vector elements are `Float32` (anything else is converted, not bit-exact).
    pub(crate) float32: bool,
    /// The document column, if any.
    pub(crate) text: Option<String>,
    /// The JSON metadata column of a ragged table.
    pub(crate) metadata_json: Option<String>,
    /// Columns of a foreign table that become metadata keys.
    pub(crate) extra: Vec<String>,
    /// The promoted columns of a ragged table (derived from `metadata_json`, skipped on read).
    pub(crate) promoted: Promoted,
    /// Whether ragged wrote the table.
    pub(crate) ragged: bool,
}

impl Layout {
    /// Finds the columns of a table, following the store options for foreign tables.
    pub(crate) fn resolve(table: &str, schema: &Schema, options: &ColumnOptions) -> Result<Layout, PluginError> {
        let ragged = schema.metadata().contains_key(keys::FORMAT);
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        let listing = || {
            schema
                .fields()
                .iter()
                .map(|f| format!("{} ({})", f.name(), f.data_type()))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let vector = match &options.vector {
            Some(name) => {
                let field = schema.field_with_name(name).map_err(|_| {
                    PluginError::invalid_input(format!(
                        "table '{table}' has no column '{name}' (option vector_column); its columns are: {}",
                        listing()
                    ))
                })?;
                if vector_dimension(field.data_type()).is_none() {
                    return Err(PluginError::invalid_input(format!(
                        "column '{name}' of table '{table}' is {}, not a fixed-size list of floats",
                        field.data_type()
                    )));
                }
                name.clone()
            }
            None => {
                let candidates: Vec<&str> = schema
                    .fields()
                    .iter()
                    .filter(|f| vector_dimension(f.data_type()).is_some())
                    .map(|f| f.name().as_str())
                    .collect();
                if candidates.contains(&columns::VECTOR) {
                    columns::VECTOR.to_owned()
                } else {
                    match candidates.as_slice() {
                        [one] => (*one).to_owned(),
                        [] => {
                            return Err(PluginError::new(
                                ErrorCode::Incompatible,
                                format!(
                                    "table '{table}' has no usable vector column (a fixed-size list of floats); its columns are: {}",
                                    listing()
                                ),
                            ));
                        }
                        several => {
                            return Err(PluginError::invalid_input(format!(
                                "table '{table}' has several vector columns ({}); choose one with the store option vector_column",
                                several.join(", ")
                            )));
                        }
                    }
                }
            }
        };
        let vector_type = schema
            .field_with_name(&vector)
            .map(|f| f.data_type().clone())
            .map_err(|e| PluginError::invalid_input(e.to_string()))?;
        let (dimension, float32) = vector_dimension(&vector_type).ok_or_else(|| {
            PluginError::invalid_input(format!("column '{vector}' of table '{table}' is not a vector column"))
        })?;

        let id = match &options.id {
            Some(name) => name.clone(),
            None if names.contains(&columns::ID) => columns::ID.to_owned(),
            None => {
                return Err(PluginError::invalid_input(format!(
                    "table '{table}' has no 'id' column; choose one with the store option id_column (its columns are: {})",
                    listing()
                )));
            }
        };
        check_column(table, schema, &id, "id_column", is_id_type)?;
        let id_is_integer = schema.field_with_name(&id).is_ok_and(|f| f.data_type().is_integer());

        let text = match &options.text {
            Some(name) if name.is_empty() => None,
            Some(name) => {
                check_column(table, schema, name, "text_column", is_text_type)?;
                Some(name.clone())
            }
            None => ["text", "document", "content", "page_content"]
                .into_iter()
                .find(|name| schema.field_with_name(name).is_ok_and(|f| is_text_type(f.data_type())))
                .map(str::to_owned),
        };

        let metadata_json = (ragged
            && schema
                .field_with_name(columns::METADATA_JSON)
                .is_ok_and(|f| is_text_type(f.data_type())))
        .then(|| columns::METADATA_JSON.to_owned());
        let promoted = if ragged {
            Promoted::from_json(schema.metadata().get(keys::PROMOTED).map(String::as_str))
        } else {
            Promoted::default()
        };
        let used = [Some(&id), Some(&vector), text.as_ref(), metadata_json.as_ref()];
        let extra = if metadata_json.is_some() {
            Vec::new()
        } else {
            names
                .iter()
                .filter(|name| !used.contains(&Some(&(**name).to_owned())))
                .map(|name| (*name).to_owned())
                .collect()
        };
        Ok(Layout {
            id,
            id_is_integer,
            vector,
            dimension,
            float32,
            text,
            metadata_json,
            extra,
            promoted,
            ragged,
        })
    }

    /// The columns a read needs, in table order.
    pub(crate) fn projection(&self) -> Vec<String> {
        let mut out = vec![self.id.clone(), self.vector.clone()];
        out.extend(self.text.iter().cloned());
        out.extend(self.metadata_json.iter().cloned());
        out.extend(self.extra.iter().cloned());
        out
    }
}

fn check_column(
    table: &str,
    schema: &Schema,
    name: &str,
    option: &str,
    accepts: fn(&DataType) -> bool,
) -> Result<(), PluginError> {
    let field = schema
        .field_with_name(name)
        .map_err(|_| PluginError::invalid_input(format!("table '{table}' has no column '{name}' (option {option})")))?;
    if !accepts(field.data_type()) {
        return Err(PluginError::invalid_input(format!(
            "column '{name}' of table '{table}' is {}, which cannot serve as {option}",
            field.data_type()
        )));
    }
    Ok(())
}

fn is_text_type(data_type: &DataType) -> bool {
    matches!(data_type, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
}

fn is_id_type(data_type: &DataType) -> bool {
    is_text_type(data_type) || data_type.is_integer()
}

/// The length of a vector column and whether its elements are `Float32`.
pub(crate) fn vector_dimension(data_type: &DataType) -> Option<(u32, bool)> {
    match data_type {
        DataType::FixedSizeList(item, dimension) if item.data_type().is_floating() && *dimension > 0 => {
            Some((*dimension as u32, item.data_type() == &DataType::Float32))
        }
        _ => None,
    }
}

/// The collection description kept in a table's schema metadata (defaults for foreign tables).
pub(crate) fn describe(
    name: &str,
    schema: &Schema,
    layout: &Layout,
    default_metric: Option<DistanceMetric>,
) -> CollectionInfo {
    let meta = schema.metadata();
    let json_object = |key: &str| -> Map<String, Value> {
        meta.get(key)
            .and_then(|text| serde_json::from_str::<Value>(text).ok())
            .and_then(|v| match v {
                Value::Object(map) => Some(map),
                _ => None,
            })
            .unwrap_or_default()
    };
    let metric = meta
        .get(keys::METRIC)
        .and_then(|m| m.parse().ok())
        .or(default_metric)
        .unwrap_or(DistanceMetric::L2);
    let mut extras = json_object(keys::EXTRAS);
    if !layout.ragged {
        extras.insert(
            "lance_columns".into(),
            serde_json::json!({
                "id": layout.id,
                "vector": layout.vector,
                "text": layout.text,
                "metadata": layout.extra,
            }),
        );
    }
    CollectionInfo {
        name: name.to_owned(),
        dimension: layout.dimension,
        metric,
        count: 0,
        embedding_model: meta.get(keys::EMBEDDING_MODEL).cloned(),
        index_params: meta
            .get(keys::INDEX_PARAMS)
            .and_then(|text| serde_json::from_str(text).ok()),
        metadata: json_object(keys::COLLECTION_METADATA),
        extras,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vector(name: &str, dim: i32) -> Field {
        Field::new(name, DataType::FixedSizeList(vector_item(), dim), true)
    }

    /// The id, vector, text and extra columns expected, or a fragment of the error.
    type Expected<'a> = Result<(&'a str, &'a str, Option<&'a str>, &'a [&'a str]), &'a str>;

    fn check(schema: Schema, options: ColumnOptions, expected: Expected<'_>) {
        match (Layout::resolve("t", &schema, &options), expected) {
            (Ok(layout), Ok((id, vec, text, extra))) => {
                assert_eq!(layout.id, id);
                assert_eq!(layout.vector, vec);
                assert_eq!(layout.text.as_deref(), text);
                assert_eq!(layout.extra, extra);
            }
            (Err(error), Err(fragment)) => assert!(error.message.contains(fragment), "{error}"),
            (got, want) => panic!("got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn foreign_tables_map_their_columns() {
        let schema = Schema::new(vec![
            Field::new("id", DataType::Utf8, false),
            vector("emb", 4),
            Field::new("text", DataType::Utf8, true),
            Field::new("page", DataType::Int64, true),
        ]);
        check(
            schema,
            ColumnOptions::default(),
            Ok(("id", "emb", Some("text"), &["page"])),
        );
    }

    #[test]
    fn options_choose_columns() {
        let schema = Schema::new(vec![
            Field::new("key", DataType::Int64, false),
            vector("a", 4),
            vector("b", 4),
            Field::new("body", DataType::Utf8, true),
        ]);
        check(
            schema.clone(),
            ColumnOptions::default(),
            Err("several vector columns (a, b)"),
        );
        let options = ColumnOptions {
            vector: Some("b".into()),
            id: Some("key".into()),
            text: Some("body".into()),
        };
        check(schema, options, Ok(("key", "b", Some("body"), &["a"])));
    }

    #[test]
    fn a_table_without_vectors_is_refused_listing_its_columns() {
        let schema = Schema::new(vec![
            Field::new("id", DataType::Utf8, false),
            Field::new("v", DataType::List(vector_item()), true),
        ]);
        check(
            schema,
            ColumnOptions::default(),
            Err("has no usable vector column (a fixed-size list of floats); its columns are: id (Utf8), v (List"),
        );
    }
}
