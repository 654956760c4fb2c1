//! `NAME.leann.meta.json`: LEANN's description of an index, read with LEANN's defaults, and
//! written the way `LeannBuilder.build_index_from_arrays` writes it (for the shape written) plus a
//! `"ragged"` object for what LEANN has no key for (the ragged metric name, the embedding model
//! exactly as given, the collection's own metadata, the file of exact originals for cosine).

use std::fs;
use std::path::{Path, PathBuf};

use ragged_plugin_api::{CollectionInfo, DistanceMetric, PluginError};
use serde_json::{Map, Value, json};

use crate::Shape;

/// LEANN's default embedding model (and `LeannBuilder`'s).
pub(crate) const DEFAULT_MODEL: &str = "sentence-transformers/all-MiniLM-L6-v2";
/// The version of the `"ragged"` object.
const RAGGED_FORMAT: u64 = 1;

/// One entry of `passage_sources`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PassageSource {
    pub passages: PathBuf,
    pub offsets: PathBuf,
}

/// LEANN's embedding model of an index: `embedding_mode`, `embedding_model` and
/// `embedding_options`, what its embedding server computes passage vectors with.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ModelSpec {
    pub mode: String,
    pub model: String,
    pub options: Map<String, Value>,
}

impl ModelSpec {
    /// A sentence-transformers model (LEANN's default mode) without options.
    pub fn sentence_transformers(model: &str) -> ModelSpec {
        ModelSpec {
            mode: "sentence-transformers".into(),
            model: model.to_owned(),
            options: Map::new(),
        }
    }
}

/// What ragged needs from a meta file.
#[derive(Debug, Clone)]
pub(crate) struct Meta {
    pub raw: Map<String, Value>,
    pub embedding_model: String,
    pub embedding_mode: String,
    pub embedding_options: Map<String, Value>,
    pub dimension: u32,
    pub is_compact: bool,
    pub is_pruned: bool,
    /// LEANN's name: `mips`, `l2` or `cosine`.
    pub distance_metric: String,
    pub metric: DistanceMetric,
    pub sources: Vec<PassageSource>,
    pub m: Option<u64>,
    pub ef_construction: Option<u64>,
    pub ragged: Option<Map<String, Value>>,
}

impl Meta {
    /// Reads and resolves `path`; `base` is the index's base name (`documents` for `documents.leann`).
    pub fn read(path: &Path, base: &str) -> Result<Meta, PluginError> {
        let text = fs::read_to_string(path).map_err(|e| PluginError::io(path, &e))?;
        let corrupt = |what: String| PluginError::corrupt(format!("{}: {what}", path.display()));
        let raw: Map<String, Value> =
            serde_json::from_str(&text).map_err(|e| corrupt(format!("not a JSON object: {e}")))?;
        match raw.get("backend_name").and_then(Value::as_str) {
            Some("hnsw") => {}
            Some(other) => {
                return Err(PluginError::new(
                    ragged_plugin_api::ErrorCode::Incompatible,
                    format!(
                        "{}: backend '{other}' is not supported, only LEANN's hnsw backend",
                        path.display()
                    ),
                ));
            }
            None => return Err(corrupt("no \"backend_name\"".into())),
        }
        let embedding_model = raw
            .get("embedding_model")
            .and_then(Value::as_str)
            .ok_or_else(|| corrupt("no \"embedding_model\"".into()))?
            .to_owned();
        let dimension = raw
            .get("dimensions")
            .and_then(Value::as_u64)
            .filter(|d| *d > 0 && *d <= u64::from(u32::MAX))
            .ok_or_else(|| corrupt("no positive \"dimensions\"".into()))? as u32;
        let kwargs = raw
            .get("backend_kwargs")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let flag = |key: &str| raw.get(key).and_then(Value::as_bool);
        // The searcher's defaults: compact unless said otherwise, pruned when recomputing.
        let is_compact = flag("is_compact")
            .or_else(|| kwargs.get("is_compact").and_then(Value::as_bool))
            .unwrap_or(true);
        let is_pruned = flag("is_pruned")
            .or_else(|| kwargs.get("is_recompute").and_then(Value::as_bool))
            .unwrap_or(is_compact);
        let distance_metric = kwargs
            .get("distance_metric")
            .and_then(Value::as_str)
            .unwrap_or("mips")
            .to_lowercase();
        let metric = match distance_metric.as_str() {
            "mips" => DistanceMetric::Ip,
            "l2" => DistanceMetric::L2,
            "cosine" => DistanceMetric::Cosine,
            other => return Err(corrupt(format!("unknown distance_metric '{other}'"))),
        };
        let dir = path.parent().unwrap_or(Path::new("."));
        let sources = match raw.get("passage_sources").and_then(Value::as_array) {
            Some(list) if !list.is_empty() => list
                .iter()
                .map(|source| resolve_source(source, dir, base).map_err(corrupt))
                .collect::<Result<Vec<_>, _>>()?,
            _ => vec![PassageSource {
                passages: dir.join(format!("{base}.leann.passages.jsonl")),
                offsets: dir.join(format!("{base}.leann.passages.idx")),
            }],
        };
        Ok(Meta {
            embedding_mode: raw
                .get("embedding_mode")
                .and_then(Value::as_str)
                .unwrap_or("sentence-transformers")
                .to_owned(),
            embedding_options: raw
                .get("embedding_options")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default(),
            ragged: raw.get("ragged").and_then(Value::as_object).cloned(),
            m: kwargs.get("M").and_then(Value::as_u64),
            ef_construction: kwargs.get("efConstruction").and_then(Value::as_u64),
            raw,
            embedding_model,
            dimension,
            is_compact,
            is_pruned,
            distance_metric,
            metric,
            sources,
        })
    }

    /// The index's shape: compact, else pruned (no vectors), else full.
    pub fn shape(&self) -> Shape {
        match (self.is_compact, self.is_pruned) {
            (true, _) => Shape::Compact,
            (false, true) => Shape::Pruned,
            (false, false) => Shape::Full,
        }
    }

    /// The model the index's passages are embedded with.
    pub fn model_spec(&self) -> ModelSpec {
        ModelSpec {
            mode: self.embedding_mode.clone(),
            model: self.embedding_model.clone(),
            options: self.embedding_options.clone(),
        }
    }

    /// The file of exact original vectors (cosine collections written by ragged), if any.
    pub fn originals_file(&self) -> Option<&str> {
        self.ragged.as_ref()?.get("originals")?.as_str()
    }

    /// The collection as ragged describes it.
    pub fn describe(&self, name: &str, count: u64) -> CollectionInfo {
        let ragged = self.ragged.clone().unwrap_or_default();
        let embedding_model = match ragged.get("embedding_model") {
            Some(Value::String(model)) => Some(model.clone()),
            Some(_) => None,
            None => Some(self.embedding_model.clone()),
        };
        let metadata = ragged
            .get("collection_metadata")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let mut index_params = Map::new();
        index_params.insert("backend".into(), json!("hnsw"));
        index_params.insert("distance_metric".into(), json!(self.distance_metric));
        if let Some(m) = self.m {
            index_params.insert("M".into(), json!(m));
        }
        if let Some(ef) = self.ef_construction {
            index_params.insert("efConstruction".into(), json!(ef));
        }
        let mut extras = Map::new();
        extras.insert("leann_shape".into(), json!(self.shape().name()));
        extras.insert("leann_embedding_model".into(), json!(self.embedding_model));
        extras.insert("leann_embedding_mode".into(), json!(self.embedding_mode));
        if let Some(version) = self.raw.get("version") {
            extras.insert("leann_meta_version".into(), version.clone());
        }
        CollectionInfo {
            name: name.to_owned(),
            dimension: self.dimension,
            metric: self.metric,
            count,
            embedding_model,
            index_params: Some(Value::Object(index_params)),
            metadata,
            extras,
        }
    }
}

/// Resolves one `passage_sources` entry as LEANN's `PassageManager` does: `path` (absolute, or
/// relative to the meta file), then `path_relative`, then the sibling default name.
fn resolve_source(source: &Value, dir: &Path, base: &str) -> Result<PassageSource, String> {
    if source.get("type").and_then(Value::as_str) != Some("jsonl") {
        return Err("a passage source is not of type \"jsonl\"".into());
    }
    let pick = |key: &str, relative_key: &str, default: String| -> PathBuf {
        let mut candidates = Vec::new();
        if let Some(path) = source.get(key).and_then(Value::as_str).filter(|p| !p.is_empty()) {
            candidates.push(dir.join(path));
        }
        if let Some(path) = source.get(relative_key).and_then(Value::as_str) {
            candidates.push(dir.join(path));
        }
        let fallback = dir.join(default);
        candidates.into_iter().find(|c| c.exists()).unwrap_or(fallback)
    };
    Ok(PassageSource {
        passages: pick("path", "path_relative", format!("{base}.leann.passages.jsonl")),
        offsets: pick(
            "index_path",
            "index_path_relative",
            format!("{base}.leann.passages.idx"),
        ),
    })
}

/// What the writer records about an index.
pub(crate) struct WriteMeta<'a> {
    pub base: &'a str,
    pub collection: &'a CollectionInfo,
    pub shape: Shape,
    /// The model named in the meta: LEANN embeds queries with it, and the passages too when the
    /// shape keeps no vectors.
    pub model: &'a ModelSpec,
    pub m: usize,
    pub ef_construction: usize,
    pub count: u64,
    pub originals: Option<&'a str>,
}

/// LEANN's name of a ragged metric.
pub(crate) fn leann_metric(metric: DistanceMetric) -> &'static str {
    match metric {
        DistanceMetric::Ip => "mips",
        DistanceMetric::L2 => "l2",
        DistanceMetric::Cosine => "cosine",
    }
}

/// The meta file of an index, with the flags of its shape (`is_compact`, and `is_pruned` for
/// every shape without vectors).
pub(crate) fn index_meta(spec: &WriteMeta<'_>) -> Vec<u8> {
    let collection = spec.collection;
    let passages = format!("{}.leann.passages.jsonl", spec.base);
    let offsets = format!("{}.leann.passages.idx", spec.base);
    let compact = spec.shape == Shape::Compact;
    let pruned = spec.shape != Shape::Full;
    let mut ragged = Map::new();
    ragged.insert("format".into(), json!(RAGGED_FORMAT));
    ragged.insert("metric".into(), json!(collection.metric.as_str()));
    ragged.insert("embedding_model".into(), json!(collection.embedding_model));
    ragged.insert("collection_metadata".into(), Value::Object(collection.metadata.clone()));
    if let Some(originals) = spec.originals {
        ragged.insert("originals".into(), json!(originals));
    }
    let mut meta = json!({
        "version": "1.1",
        "backend_name": "hnsw",
        "embedding_model": spec.model.model,
        "dimensions": collection.dimension,
        "backend_kwargs": {
            "is_compact": compact,
            "is_recompute": pruned,
            "M": spec.m,
            "efConstruction": spec.ef_construction,
            "distance_metric": leann_metric(collection.metric),
            "dimensions": collection.dimension,
        },
        "embedding_mode": spec.model.mode,
        "passage_sources": [{
            "type": "jsonl",
            "path": passages,
            "index_path": offsets,
            "path_relative": passages,
            "index_path_relative": offsets,
        }],
        "built_from_precomputed_embeddings": true,
        "is_compact": compact,
        "is_pruned": pruned,
        "total_passages": spec.count,
        "ragged": ragged,
    });
    // LEANN writes embedding_options only when there are some.
    if !spec.model.options.is_empty()
        && let Some(object) = meta.as_object_mut()
    {
        object.insert("embedding_options".into(), Value::Object(spec.model.options.clone()));
    }
    let mut bytes = serde_json::to_vec_pretty(&meta).expect("a JSON value always serialises");
    bytes.push(b'\n');
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(metric: DistanceMetric, model: Option<&str>) -> CollectionInfo {
        let mut metadata = Map::new();
        metadata.insert("topic".into(), json!("space"));
        metadata.insert("n".into(), json!(2.0));
        CollectionInfo {
            name: "c".into(),
            dimension: 3,
            metric,
            count: 0,
            embedding_model: model.map(str::to_owned),
            index_params: None,
            metadata,
            extras: Map::new(),
        }
    }

    #[test]
    fn written_meta_reads_back_as_the_same_collection() {
        let dir = tempfile::tempdir().expect("temp dir");
        for (metric, leann) in [
            (DistanceMetric::L2, "l2"),
            (DistanceMetric::Ip, "mips"),
            (DistanceMetric::Cosine, "cosine"),
        ] {
            for (model, shape) in [
                (None, Shape::Full),
                (Some("/abs/model"), Shape::Compact),
                (None, Shape::Pruned),
            ] {
                let collection = info(metric, model);
                let path = dir.path().join("documents.leann.meta.json");
                let mut spec = ModelSpec::sentence_transformers(model.unwrap_or(DEFAULT_MODEL));
                if shape == Shape::Pruned {
                    spec.mode = "ollama".into();
                    spec.options.insert("host".into(), json!("http://localhost:11434"));
                }
                let bytes = index_meta(&WriteMeta {
                    base: "documents",
                    collection: &collection,
                    shape,
                    model: &spec,
                    m: 32,
                    ef_construction: 200,
                    count: 5,
                    originals: None,
                });
                fs::write(&path, bytes).expect("write");
                let meta = Meta::read(&path, "documents").expect("reads");
                assert_eq!(meta.distance_metric, leann);
                assert_eq!(
                    (meta.is_compact, meta.is_pruned, meta.shape()),
                    (shape == Shape::Compact, shape != Shape::Full, shape)
                );
                assert_eq!(meta.model_spec(), spec);
                // LEANN's backend reads the flags from backend_kwargs too.
                assert_eq!(meta.raw["backend_kwargs"]["is_recompute"], json!(shape != Shape::Full));
                assert_eq!(meta.raw.contains_key("embedding_options"), shape == Shape::Pruned);
                let described = meta.describe("c", 5);
                assert_eq!(described.metric, metric);
                assert_eq!(described.embedding_model.as_deref(), model);
                assert_eq!(described.metadata, collection.metadata);
                assert_eq!(described.count, 5);
                assert_eq!(
                    meta.sources,
                    vec![PassageSource {
                        passages: dir.path().join("documents.leann.passages.jsonl"),
                        offsets: dir.path().join("documents.leann.passages.idx"),
                    }]
                );
            }
        }
    }

    #[test]
    fn leann_defaults_apply_to_a_minimal_meta() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("x.leann.meta.json");
        fs::write(
            &path,
            r#"{"backend_name":"hnsw","embedding_model":"m","dimensions":4,
                "passage_sources":[{"type":"jsonl","path":"x.leann.passages.jsonl","index_path":"x.leann.passages.idx"}]}"#,
        )
        .expect("write");
        let meta = Meta::read(&path, "x").expect("reads");
        assert_eq!(
            (meta.is_compact, meta.is_pruned, meta.metric),
            (true, true, DistanceMetric::Ip)
        );
        assert_eq!(meta.describe("x", 1).embedding_model.as_deref(), Some("m"));
        fs::write(
            &path,
            r#"{"backend_name":"diskann","embedding_model":"m","dimensions":4}"#,
        )
        .expect("write");
        let error = Meta::read(&path, "x").expect_err("other backend");
        assert!(
            error
                .message
                .ends_with("backend 'diskann' is not supported, only LEANN's hnsw backend")
        );
    }
}
