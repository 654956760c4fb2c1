//! Vectors recomputed from passages with an index's embedding model, as LEANN's embedding server
//! computes them for compact and pruned indexes, which keep no vectors.
//!
//! The model is the one LEANN's meta names (`embedding_mode`, `embedding_model`,
//! `embedding_options`), run by `ragged-embed`: sentence-transformers BERT models natively, from a
//! model directory or the offline Hugging Face cache, and the OpenAI-compatible and Ollama
//! services over HTTP. Nothing is downloaded. Each mode computes what LEANN's
//! `compute_embeddings` does (the sentence-transformers Normalize module when the model has one,
//! Ollama's normalisation); on top of that, cosine indexes get L2-normalised rows, because LEANN's
//! builder normalises vectors before it adds them to a cosine index.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use ragged_embed::{EmbedError, Embedder};
use ragged_plugin_api::{DistanceMetric, ErrorCode, PluginError};

use crate::meta::ModelSpec;
use crate::read::normalize_rows;

/// The embedders a store has loaded, one per model, kept while the store is open: loading a model
/// costs far more than embedding a batch.
#[derive(Default)]
pub(crate) struct Embedders {
    loaded: Mutex<HashMap<String, Arc<dyn Embedder>>>,
}

impl Embedders {
    /// The embedder of `spec`, loaded on first use; `purpose` says what needs it, for the error.
    pub fn get(&self, spec: &ModelSpec, purpose: &str) -> Result<Arc<dyn Embedder>, PluginError> {
        let key = serde_json::json!([spec.mode, spec.model, spec.options]).to_string();
        // A panic while loading leaves nothing half-inserted, so a poisoned map is still whole.
        let mut loaded = self.loaded.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(embedder) = loaded.get(&key) {
            return Ok(embedder.clone());
        }
        let embedder: Arc<dyn Embedder> = make(spec).map_err(|e| model_error(spec, purpose, e))?.into();
        loaded.insert(key, embedder.clone());
        Ok(embedder)
    }

    /// The vectors an index of `dimension` and `metric` holds for `texts` (row after row): the
    /// model's output, L2-normalised for cosine.
    pub fn passage_vectors(
        &self,
        spec: &ModelSpec,
        purpose: &str,
        texts: &[&str],
        dimension: u32,
        metric: DistanceMetric,
    ) -> Result<Vec<f32>, PluginError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let embedder = self.get(spec, purpose)?;
        let vectors = embedder.embed(texts).map_err(|e| model_error(spec, purpose, e))?;
        if vectors.len() != texts.len() {
            return Err(PluginError::new(
                ErrorCode::Internal,
                format!(
                    "{purpose}: the embedding model '{}' gave {} vectors for {} texts",
                    spec.model,
                    vectors.len(),
                    texts.len()
                ),
            ));
        }
        let mut rows = Vec::with_capacity(texts.len() * dimension as usize);
        for vector in vectors {
            if vector.len() != dimension as usize {
                return Err(PluginError::new(
                    ErrorCode::Incompatible,
                    format!(
                        "{purpose}: the embedding model '{}' gives {}-dimensional vectors, the index has {dimension} dimensions",
                        spec.model,
                        vector.len()
                    ),
                )
                .with_help("the index's meta.json must name the model its vectors came from"));
            }
            if vector.iter().any(|x| !x.is_finite()) {
                return Err(PluginError::new(
                    ErrorCode::Internal,
                    format!(
                        "{purpose}: the embedding model '{}' gave a NaN or infinite value",
                        spec.model
                    ),
                ));
            }
            rows.extend(vector);
        }
        if metric == DistanceMetric::Cosine {
            normalize_rows(&mut rows, dimension as usize);
        }
        Ok(rows)
    }
}

/// Makes the embedder of `spec` (tests add a deterministic stand-in for a model).
fn make(spec: &ModelSpec) -> Result<Box<dyn Embedder>, EmbedError> {
    #[cfg(test)]
    if let Some(fake) = fake::embedder(spec) {
        return Ok(fake);
    }
    ragged_embed::embedder_for(&spec.mode, &spec.model, &spec.options)
}

/// An embedding error as a plugin error that names the model, what needed it, and for a model
/// that is not there, how to provide it.
fn model_error(spec: &ModelSpec, purpose: &str, error: EmbedError) -> PluginError {
    let code = match &error {
        EmbedError::ModelNotFound { .. } => ErrorCode::NotFound,
        EmbedError::ModelFile { .. } | EmbedError::Unsupported(_) => ErrorCode::Unsupported,
        EmbedError::Invalid(_) => ErrorCode::InvalidInput,
        EmbedError::Http { .. } => ErrorCode::Io,
        _ => ErrorCode::Internal,
    };
    let error = PluginError::new(
        code,
        format!(
            "{purpose} needs the embedding model '{}' ({} mode): {error}",
            spec.model, spec.mode
        ),
    );
    if code == ErrorCode::NotFound {
        error.with_help(
            "nothing is downloaded: the model must be a model directory (an absolute path) or be in the offline Hugging Face cache ($HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub). An index names its model in the embedding_model of its meta.json; the store option model names it for the indexes ragged writes, and shape=full writes indexes that need no model",
        )
    } else {
        error
    }
}

/// A deterministic stand-in for an embedding model, for the crate's own tests: the model
/// `ragged-test/hash-D` embeds a text as a `D`-dimensional vector drawn from a hash of it.
#[cfg(test)]
pub(crate) mod fake {
    use rand::{Rng, SeedableRng};

    use super::*;

    /// The stand-in model of `dimension` dimensions.
    pub fn model(dimension: u32) -> String {
        format!("ragged-test/hash-{dimension}")
    }

    /// The stand-in model's vector of `text`.
    pub fn vector(text: &str, dimension: u32) -> Vec<f32> {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        text.hash(&mut hasher);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(hasher.finish());
        (0..dimension).map(|_| rng.random_range(-1.0f32..1.0)).collect()
    }

    struct Hashing(u32);

    impl Embedder for Hashing {
        fn describe(&self) -> String {
            format!("hashing stand-in of {} dimensions", self.0)
        }

        fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
            Ok(texts.iter().map(|text| vector(text, self.0)).collect())
        }
    }

    pub(super) fn embedder(spec: &ModelSpec) -> Option<Box<dyn Embedder>> {
        let dimension = spec.model.strip_prefix("ragged-test/hash-")?.parse().ok()?;
        Some(Box::new(Hashing(dimension)))
    }
}
