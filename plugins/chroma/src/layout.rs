//! The catalog of a persistent directory: tenants, databases, collections, their segments, and
//! the distance space and HNSW parameters exactly as chroma 1.5.9 resolves them.

use std::path::{Path, PathBuf};

use ragged_plugin_api::{DistanceMetric, PluginError};
use rusqlite::Connection;
use serde_json::{Map, Value, json};

use crate::sqlite::{classify, scalar};
use crate::value::{MetaValue, Metadata};

pub const DEFAULT_TENANT: &str = "default_tenant";
pub const DEFAULT_DATABASE: &str = "default_database";
pub const VECTOR_SEGMENT: &str = "urn:chroma:segment/vector/hnsw-local-persisted";
const VECTOR_SEGMENT_MEMORY: &str = "urn:chroma:segment/vector/hnsw-local-memory";
pub const METADATA_SEGMENT: &str = "urn:chroma:segment/metadata/sqlite";

/// One collection as the sysdb tables describe it.
#[derive(Debug, Clone)]
pub struct Collection {
    pub id: String,
    pub name: String,
    pub tenant: String,
    pub database: String,
    pub database_id: String,
    /// NULL until the first record is added.
    pub dimension: Option<u32>,
    pub config_json: Option<String>,
    pub schema_json: Option<String>,
    pub metadata: Metadata,
    pub vector_segment: String,
    /// Whether the vector segment is the persisted kind (in-memory segments have no files).
    pub vector_persisted: bool,
    pub metadata_segment: String,
    pub space: DistanceMetric,
    /// The HNSW parameters chroma resolved, with the space.
    pub index_params: Value,
}

impl Collection {
    /// The name ragged uses: plain in the default tenant and database, `tenant/database/name`
    /// elsewhere.
    pub fn ragged_name(&self) -> String {
        if self.tenant == DEFAULT_TENANT && self.database == DEFAULT_DATABASE {
            self.name.clone()
        } else {
            format!("{}/{}/{}", self.tenant, self.database, self.name)
        }
    }

    /// The vector segment's directory.
    pub fn segment_dir(&self, root: &Path) -> PathBuf {
        root.join(&self.vector_segment)
    }
}

/// Splits a ragged collection name into tenant, database and chroma name.
pub fn split_name(name: &str) -> Result<(String, String, String), PluginError> {
    let parts: Vec<&str> = name.split('/').collect();
    match parts.as_slice() {
        [plain] => Ok((DEFAULT_TENANT.into(), DEFAULT_DATABASE.into(), (*plain).to_owned())),
        [tenant, database, plain] => Ok(((*tenant).into(), (*database).into(), (*plain).into())),
        _ => Err(PluginError::invalid_input(format!(
            "collection name '{name}': use 'name' or 'tenant/database/name'"
        ))),
    }
}

/// Reads every collection of every tenant and database, sorted by ragged name.
pub fn read_catalog(conn: &Connection, db: &Path) -> Result<Vec<Collection>, PluginError> {
    let err = |e| classify(db, e);
    let has_schema: bool = conn
        .prepare("SELECT 1 FROM pragma_table_info('collections') WHERE name='schema_str'")
        .and_then(|mut s| s.exists([]))
        .map_err(err)?;
    let schema_column = if has_schema { "c.schema_str" } else { "NULL" };
    let mut statement = conn
        .prepare(&format!(
            "SELECT c.id, c.name, c.dimension, c.config_json_str, {schema_column}, d.name, d.tenant_id, d.id \
             FROM collections c JOIN databases d ON d.id = c.database_id ORDER BY c.id"
        ))
        .map_err(err)?;
    #[allow(clippy::type_complexity)]
    let rows: Vec<(
        String,
        String,
        Option<i64>,
        Option<String>,
        Option<String>,
        String,
        String,
        String,
    )> = statement
        .query_map([], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
                r.get(7)?,
            ))
        })
        .and_then(|rows| rows.collect())
        .map_err(err)?;
    let mut out = Vec::with_capacity(rows.len());
    for (id, name, dimension, config_json, schema_json, database, tenant, database_id) in rows {
        let bad = |problem: String| PluginError::corrupt(format!("{}: collection '{name}': {problem}", db.display()));
        let dimension = match dimension {
            None => None,
            Some(d) if d > 0 && d <= i64::from(u32::MAX) => Some(d as u32),
            Some(d) => return Err(bad(format!("invalid dimension {d}"))),
        };
        let metadata = scalar_rows(
            conn,
            db,
            "SELECT key, str_value, int_value, float_value, bool_value FROM collection_metadata \
             WHERE collection_id=?1 ORDER BY key",
            &id,
        )?;
        let mut segments = conn
            .prepare("SELECT id, type, scope FROM segments WHERE collection=?1")
            .map_err(err)?;
        let segments: Vec<(String, String, String)> = segments
            .query_map([&id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .and_then(|rows| rows.collect())
            .map_err(err)?;
        let find = |scope: &str| segments.iter().find(|s| s.2 == scope);
        let (Some(vector), Some(meta)) = (find("VECTOR"), find("METADATA")) else {
            return Err(bad("missing its VECTOR or METADATA segment".into()));
        };
        if meta.1 != METADATA_SEGMENT {
            return Err(bad(format!("unknown metadata segment type '{}'", meta.1)));
        }
        if vector.1 != VECTOR_SEGMENT && vector.1 != VECTOR_SEGMENT_MEMORY {
            return Err(bad(format!("unknown vector segment type '{}'", vector.1)));
        }
        let segment_metadata = scalar_rows(
            conn,
            db,
            "SELECT key, str_value, int_value, float_value, bool_value FROM segment_metadata \
             WHERE segment_id=?1 ORDER BY key",
            &vector.0,
        )?;
        let (space, index_params) =
            resolve_space(schema_json.as_deref(), config_json.as_deref(), &segment_metadata).map_err(bad)?;
        out.push(Collection {
            id: id.clone(),
            name: name.clone(),
            tenant,
            database,
            database_id,
            dimension,
            config_json,
            schema_json,
            metadata,
            vector_segment: vector.0.clone(),
            vector_persisted: vector.1 == VECTOR_SEGMENT,
            metadata_segment: meta.0.clone(),
            space,
            index_params,
        });
    }
    out.sort_by_key(|c| c.ragged_name());
    Ok(out)
}

fn scalar_rows(conn: &Connection, db: &Path, sql: &str, id: &str) -> Result<Metadata, PluginError> {
    let mut statement = conn.prepare(sql).map_err(|e| classify(db, e))?;
    let mut rows = statement.query([id]).map_err(|e| classify(db, e))?;
    let mut out = Metadata::new();
    while let Some(row) = rows.next().map_err(|e| classify(db, e))? {
        let key: String = row.get(0).map_err(|e| classify(db, e))?;
        let value = (|| {
            scalar(row.get_ref(1)?, row.get_ref(2)?, row.get_ref(3)?, row.get_ref(4)?)
                .map_err(|e| rusqlite::Error::ToSqlConversionFailure(e.into()))
        })()
        .map_err(|e| PluginError::corrupt(format!("{}: metadata key '{key}': {e}", db.display())))?;
        if let Some(value) = value {
            out.insert(key, value);
        }
    }
    Ok(out)
}

/// chroma's HNSW defaults (`num_threads` defaults to the CPU count and is left out).
const DEFAULTS: [(&str, f64); 6] = [
    ("ef_construction", 100.0),
    ("max_neighbors", 16.0),
    ("ef_search", 100.0),
    ("sync_threshold", 1000.0),
    ("resize_factor", 1.2),
    ("batch_size", 100.0),
];

/// The space and HNSW parameters as chroma 1.5.9 resolves them:
/// 1. `schema_str`: `keys["#embedding"]`, else `defaults`, `float_list.vector_index.config`;
/// 2. else `config_json_str`: `vector_index.hnsw`;
/// 3. when that is the all-default configuration, legacy `hnsw:*` segment metadata wins.
///
/// `collection_metadata["hnsw:space"]` is not consulted: chroma ignores it when reading.
pub fn resolve_space(
    schema: Option<&str>,
    config: Option<&str>,
    segment_metadata: &Metadata,
) -> Result<(DistanceMetric, Value), String> {
    let parse = |text: Option<&str>, what: &str| -> Result<Option<Value>, String> {
        match text.map(str::trim) {
            None | Some("") | Some("null") => Ok(None),
            Some(text) => serde_json::from_str(text)
                .map(Some)
                .map_err(|e| format!("{what} is not valid JSON ({e})")),
        }
    };
    let from_vector_index = |v: &Value| -> Option<(String, Map<String, Value>)> {
        let config = v.get("float_list")?.get("vector_index")?.get("config")?;
        if config.get("spann").is_some_and(|s| !s.is_null()) {
            return None;
        }
        let space = config.get("space").and_then(Value::as_str).unwrap_or("l2").to_owned();
        let hnsw = config
            .get("hnsw")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        Some((space, hnsw))
    };
    let mut resolved = None;
    if let Some(schema) = parse(schema, "schema_str")? {
        resolved = schema
            .get("keys")
            .and_then(|k| k.get("#embedding"))
            .and_then(from_vector_index)
            .or_else(|| schema.get("defaults").and_then(from_vector_index));
    }
    if resolved.is_none() {
        let config = parse(config, "config_json_str")?;
        resolved = Some(
            match config
                .as_ref()
                .and_then(|c| c.get("vector_index"))
                .and_then(|v| v.get("hnsw"))
                .and_then(Value::as_object)
            {
                Some(hnsw) => (
                    hnsw.get("space").and_then(Value::as_str).unwrap_or("l2").to_owned(),
                    hnsw.clone(),
                ),
                None => ("l2".to_owned(), Map::new()),
            },
        );
    }
    let (mut space, mut params) = resolved.unwrap_or_else(|| ("l2".to_owned(), Map::new()));
    let is_default = space == "l2"
        && DEFAULTS
            .iter()
            .all(|(k, v)| params.get(*k).and_then(Value::as_f64).is_none_or(|x| x == *v));
    let legacy = |key: &str| segment_metadata.get(key);
    if is_default && segment_metadata.keys().any(|k| k.starts_with("hnsw:")) {
        if let Some(MetaValue::Str(s)) = legacy("hnsw:space") {
            space = s.clone();
        }
        for (legacy_key, key) in [
            ("hnsw:construction_ef", "ef_construction"),
            ("hnsw:M", "max_neighbors"),
            ("hnsw:search_ef", "ef_search"),
            ("hnsw:sync_threshold", "sync_threshold"),
            ("hnsw:resize_factor", "resize_factor"),
            ("hnsw:batch_size", "batch_size"),
        ] {
            match legacy(legacy_key) {
                Some(MetaValue::Int(i)) => {
                    params.insert(key.into(), json!(i));
                }
                Some(MetaValue::Float(x)) => {
                    params.insert(key.into(), json!(x));
                }
                _ => {}
            }
        }
    }
    let metric = match space.as_str() {
        "l2" => DistanceMetric::L2,
        "cosine" => DistanceMetric::Cosine,
        "ip" => DistanceMetric::Ip,
        other => return Err(format!("unknown distance space '{other}'")),
    };
    for (key, value) in DEFAULTS {
        if !params.contains_key(key) {
            let value = if value.fract() == 0.0 {
                json!(value as i64)
            } else {
                json!(value)
            };
            params.insert(key.into(), value);
        }
    }
    params.insert("space".into(), json!(space));
    Ok((metric, Value::Object(params)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_wins_over_config_and_legacy_metadata_only_when_default() {
        let schema = r##"{"keys":{"#embedding":{"float_list":{"vector_index":{"config":{"space":"ip","hnsw":{"max_neighbors":8}}}}}}}"##;
        let (metric, params) = resolve_space(Some(schema), Some("{}"), &Metadata::new()).expect("resolves");
        assert_eq!(metric, DistanceMetric::Ip);
        assert_eq!(params["max_neighbors"], json!(8));
        assert_eq!(params["ef_search"], json!(100));

        let config = r#"{"vector_index":{"hnsw":{"space":"cosine"}}}"#;
        let (metric, _) = resolve_space(None, Some(config), &Metadata::new()).expect("resolves");
        assert_eq!(metric, DistanceMetric::Cosine);

        let mut legacy = Metadata::new();
        legacy.insert("hnsw:space".into(), MetaValue::Str("cosine".into()));
        let (metric, _) = resolve_space(None, Some("{}"), &legacy).expect("resolves");
        assert_eq!(metric, DistanceMetric::Cosine);
        let (metric, _) =
            resolve_space(None, Some(r#"{"vector_index":{"hnsw":{"space":"ip"}}}"#), &legacy).expect("resolves");
        assert_eq!(
            metric,
            DistanceMetric::Ip,
            "an explicit configuration beats legacy metadata"
        );

        let error = resolve_space(
            None,
            Some(r#"{"vector_index":{"hnsw":{"space":"hamming"}}}"#),
            &Metadata::new(),
        )
        .expect_err("unknown");
        assert!(error.contains("unknown distance space 'hamming'"), "{error}");
    }

    #[test]
    fn names_carry_tenant_and_database_outside_the_default() {
        assert_eq!(
            split_name("a").expect("plain"),
            (DEFAULT_TENANT.into(), DEFAULT_DATABASE.into(), "a".into())
        );
        assert_eq!(split_name("t/d/a").expect("full"), ("t".into(), "d".into(), "a".into()));
        assert!(split_name("t/a").is_err());
    }
}
