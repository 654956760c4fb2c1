//! Embedders for ragged: turning texts into the vectors a store's embedding model would give them.
//!
//! The LEANN plugin uses this to recompute the vectors of LEANN indexes that keep none (compact
//! and pruned ones), and the host to embed a query (`ragged query TEXT`). Both go through
//! [`embedder_for`], which takes LEANN's own `embedding_mode`, `embedding_model` and
//! `embedding_options` (as in an index's `.meta.json`) and returns an [`Embedder`] that computes
//! what LEANN's `compute_embeddings` would:
//!
//! - `sentence-transformers`: [`SentenceTransformer`], BERT-family sentence-transformers models
//!   (all-MiniLM-L6-v2, bge, e5, contriever, ...) run natively on the CPU with candle, from a
//!   local directory or the offline Hugging Face cache ([`resolve_model`]). Nothing is ever
//!   downloaded.
//! - `openai`: [`OpenAiEmbedder`], any OpenAI-compatible `/embeddings` API.
//! - `ollama`: [`OllamaEmbedder`], Ollama's `/api/embed`.
//! - `mlx` and `gemini` are refused with [`EmbedError::Unsupported`].
//!
//! Nothing is cached globally: loading a model costs a fraction of a second, and callers keep the
//! embedder for as long as they need it. See `docs/embedding.md`.

#![forbid(unsafe_code)]

mod error;
mod http;
mod native;
mod resolve;

use std::ffi::OsString;
use std::path::PathBuf;

use serde_json::{Map, Value};

pub use error::EmbedError;
pub use http::{
    DEFAULT_OLLAMA_HOST, DEFAULT_OPENAI_BASE_URL, OllamaEmbedder, OpenAiEmbedder, normalize_like_leann_ollama,
};
pub use native::{DEFAULT_BATCH_SIZE, Pooling, SentenceTransformer, normalize_l2};
pub use resolve::{cache_roots_from, hf_cache_roots, resolve_model, resolve_model_in};

/// LEANN's default `embedding_model` (`LeannBuilder`; its CLI defaults to `facebook/contriever`).
pub const LEANN_DEFAULT_MODEL: &str = "sentence-transformers/all-MiniLM-L6-v2";

/// Turns texts into vectors.
pub trait Embedder: Send + Sync {
    /// What this embedder is, for messages: the model, where it runs, and its settings.
    fn describe(&self) -> String;

    /// One vector per text, in the order of `texts`.
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError>;

    /// The length of the vectors, when known without embedding anything (a local model knows it;
    /// an HTTP service tells only by answering).
    fn dimension(&self) -> Option<usize> {
        None
    }
}

/// The embedder LEANN would use for `mode` (its `embedding_mode`), `model` (its
/// `embedding_model`) and `options` (its `embedding_options`), with settings the options leave
/// open taken from the process environment as LEANN takes them.
///
/// It computes what LEANN's `compute_embeddings(texts, model, mode, provider_options=options)`
/// does, build-time prompt template included (`build_prompt_template`, else `prompt_template`,
/// prepended by the HTTP modes only, as LEANN does). LEANN's search-time embedding server gets the
/// options without any template; pass [`without_prompt_templates`] of them to reproduce that.
pub fn embedder_for(mode: &str, model: &str, options: &Map<String, Value>) -> Result<Box<dyn Embedder>, EmbedError> {
    embedder_for_env(mode, model, options, &|name| std::env::var_os(name))
}

/// [`embedder_for`] with the environment given as a lookup function, so that tests need not
/// change the process environment. Variables read: `HF_HUB_CACHE`, `HUGGINGFACE_HUB_CACHE`,
/// `HF_HOME`, `XDG_CACHE_HOME`, `SENTENCE_TRANSFORMERS_HOME`, `HOME` (finding a model);
/// `LEANN_OPENAI_BASE_URL`, `OPENAI_BASE_URL`, `LOCAL_OPENAI_BASE_URL`, `OPENAI_API_KEY` (openai);
/// `LEANN_LOCAL_LLM_HOST`, `LEANN_OLLAMA_HOST`, `OLLAMA_HOST`, `LOCAL_LLM_ENDPOINT` (ollama).
pub fn embedder_for_env(
    mode: &str,
    model: &str,
    options: &Map<String, Value>,
    env: &dyn Fn(&str) -> Option<OsString>,
) -> Result<Box<dyn Embedder>, EmbedError> {
    let var = |name: &str| env(name).and_then(|v| v.into_string().ok()).filter(|v| !v.is_empty());
    match mode {
        "sentence-transformers" => {
            let home = env("HOME").map(PathBuf::from);
            let dir = resolve_model_in(model, &cache_roots_from(env, home.as_deref()))?;
            let mut embedder = SentenceTransformer::load(dir)?;
            if let Some(batch_size) = batch_size_option(options)? {
                embedder = embedder.with_batch_size(batch_size);
            }
            Ok(Box::new(embedder))
        }
        "openai" => {
            // settings.resolve_openai_base_url / resolve_openai_api_key
            let base_url = string_option(options, "base_url")?
                .map(str::to_owned)
                .or_else(|| var("LEANN_OPENAI_BASE_URL"))
                .or_else(|| var("OPENAI_BASE_URL"))
                .or_else(|| var("LOCAL_OPENAI_BASE_URL"))
                .unwrap_or_else(|| DEFAULT_OPENAI_BASE_URL.to_owned());
            let api_key = string_option(options, "api_key")?
                .map(str::to_owned)
                .or_else(|| var("OPENAI_API_KEY"));
            let template = build_prompt_template(options)?.map(str::to_owned);
            Ok(Box::new(
                OpenAiEmbedder::new(&base_url, model, api_key).with_prompt_template(template),
            ))
        }
        "ollama" => {
            // settings.resolve_ollama_host
            let host = string_option(options, "host")?
                .map(str::to_owned)
                .or_else(|| var("LEANN_LOCAL_LLM_HOST"))
                .or_else(|| var("LEANN_OLLAMA_HOST"))
                .or_else(|| var("OLLAMA_HOST"))
                .or_else(|| var("LOCAL_LLM_ENDPOINT"))
                .unwrap_or_else(|| DEFAULT_OLLAMA_HOST.to_owned());
            let template = build_prompt_template(options)?.map(str::to_owned);
            Ok(Box::new(
                OllamaEmbedder::new(&host, model).with_prompt_template(template),
            ))
        }
        "mlx" => Err(EmbedError::Unsupported(format!(
            "embedding mode `mlx` (model `{model}`) runs Apple MLX models through mlx-lm, which ragged cannot \
             run; recompute with LEANN on a Mac, or rebuild the index with a sentence-transformers model"
        ))),
        "gemini" => Err(EmbedError::Unsupported(format!(
            "embedding mode `gemini` (model `{model}`) calls Google's genai SDK, which ragged does not \
             implement; Gemini's OpenAI-compatible endpoint works with mode `openai` and its base_url"
        ))),
        other => Err(EmbedError::Unsupported(format!(
            "unknown embedding mode `{other}`: LEANN's modes are sentence-transformers, openai, ollama, mlx \
             and gemini, and ragged runs the first three"
        ))),
    }
}

/// The template LEANN prepends to texts when it builds an index with an HTTP mode:
/// `build_prompt_template`, else `prompt_template` (empty strings count as absent).
pub fn build_prompt_template(options: &Map<String, Value>) -> Result<Option<&str>, EmbedError> {
    Ok(string_option(options, "build_prompt_template")?.or(string_option(options, "prompt_template")?))
}

/// The template LEANN prepends to a search query, in every mode: `query_prompt_template`, else
/// `prompt_template` (LeannSearcher.search; a caller's own override comes first).
pub fn query_prompt_template(options: &Map<String, Value>) -> Result<Option<&str>, EmbedError> {
    Ok(string_option(options, "query_prompt_template")?.or(string_option(options, "prompt_template")?))
}

/// `options` without the prompt templates: what LEANN's embedding server computes with when it
/// recomputes passage vectors during a search.
pub fn without_prompt_templates(options: &Map<String, Value>) -> Map<String, Value> {
    let mut options = options.clone();
    for key in ["build_prompt_template", "query_prompt_template", "prompt_template"] {
        options.remove(key);
    }
    options
}

/// A string option; null and "" count as absent, as they do for LEANN's `options.get(k) or ...`.
fn string_option<'a>(options: &'a Map<String, Value>, key: &str) -> Result<Option<&'a str>, EmbedError> {
    match options.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(EmbedError::Invalid(format!(
            "embedding option `{key}` must be a string, not {other}"
        ))),
    }
}

fn batch_size_option(options: &Map<String, Value>) -> Result<Option<usize>, EmbedError> {
    match options.get("batch_size") {
        None | Some(Value::Null) => Ok(None),
        Some(value) => match value.as_u64() {
            Some(n) if n > 0 => Ok(Some(n as usize)),
            _ => Err(EmbedError::Invalid(format!(
                "embedding option `batch_size` must be a positive integer, not {value}"
            ))),
        },
    }
}

/// Cosine similarity of two vectors, in f64 so the measurement adds no rounding of its own: two
/// zero vectors are the same (1), vectors of different lengths or one zero vector share nothing (0).
pub fn cosine_similarity(a: &[f32], b: &[f32]) -> f64 {
    let (mut dot, mut norm_a, mut norm_b) = (0.0f64, 0.0f64, 0.0f64);
    for (x, y) in a.iter().zip(b) {
        let (x, y) = (f64::from(*x), f64::from(*y));
        dot += x * y;
        norm_a += x * x;
        norm_b += y * y;
    }
    if norm_a == 0.0 && norm_b == 0.0 {
        1.0
    } else if norm_a == 0.0 || norm_b == 0.0 || a.len() != b.len() {
        0.0
    } else {
        dot / (norm_a.sqrt() * norm_b.sqrt())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn options(value: Value) -> Map<String, Value> {
        value.as_object().cloned().expect("an object")
    }

    fn no_env(_: &str) -> Option<OsString> {
        None
    }

    #[test]
    fn templates_follow_leann_precedence() {
        let both =
            options(json!({"build_prompt_template": "b: ", "prompt_template": "p: ", "query_prompt_template": "q: "}));
        assert_eq!(build_prompt_template(&both).expect("ok"), Some("b: "));
        assert_eq!(query_prompt_template(&both).expect("ok"), Some("q: "));
        let old = options(json!({"prompt_template": "p: ", "build_prompt_template": ""}));
        assert_eq!(build_prompt_template(&old).expect("ok"), Some("p: "));
        assert_eq!(query_prompt_template(&old).expect("ok"), Some("p: "));
        assert!(without_prompt_templates(&both).is_empty());
        let bad = options(json!({"prompt_template": 3}));
        assert!(matches!(build_prompt_template(&bad), Err(EmbedError::Invalid(_))));
    }

    #[test]
    fn mlx_gemini_and_unknown_modes_are_unsupported() {
        for mode in ["mlx", "gemini", "voyage", ""] {
            let err = embedder_for_env(mode, "some-model", &Map::new(), &no_env)
                .err()
                .expect("refused");
            assert!(matches!(err, EmbedError::Unsupported(_)), "{mode}: {err}");
            if !mode.is_empty() {
                assert!(err.to_string().contains(mode), "{err}");
            }
        }
    }

    #[test]
    fn http_modes_take_urls_from_options_then_the_environment() {
        let env = |name: &str| match name {
            "OPENAI_BASE_URL" => Some(OsString::from("http://env-openai/v1/")),
            "OLLAMA_HOST" => Some(OsString::from("env-ollama:11434")),
            _ => None,
        };
        let openai = embedder_for_env("openai", "m", &Map::new(), &env).expect("openai");
        assert!(
            openai.describe().contains("http://env-openai/v1/embeddings"),
            "{}",
            openai.describe()
        );
        let openai =
            embedder_for_env("openai", "m", &options(json!({"base_url": "http://opt/v1"})), &env).expect("openai");
        assert!(
            openai.describe().contains("http://opt/v1/embeddings"),
            "{}",
            openai.describe()
        );
        let openai = embedder_for_env("openai", "m", &Map::new(), &no_env).expect("openai");
        assert!(
            openai.describe().contains("https://api.openai.com/v1/embeddings"),
            "{}",
            openai.describe()
        );

        let ollama = embedder_for_env("ollama", "m", &Map::new(), &env).expect("ollama");
        assert!(
            ollama.describe().contains("http://env-ollama:11434/api/embed"),
            "{}",
            ollama.describe()
        );
        let ollama = embedder_for_env("ollama", "m", &Map::new(), &no_env).expect("ollama");
        assert!(
            ollama.describe().contains("http://localhost:11434/api/embed"),
            "{}",
            ollama.describe()
        );
        assert_eq!(ollama.dimension(), None);
    }

    #[test]
    fn a_bad_batch_size_is_refused() {
        let err = batch_size_option(&options(json!({"batch_size": 0}))).expect_err("refused");
        assert!(err.to_string().contains("batch_size"), "{err}");
        assert_eq!(
            batch_size_option(&options(json!({"batch_size": 8}))).expect("ok"),
            Some(8)
        );
    }

    #[test]
    fn cosine_similarity_is_measured_in_f64() {
        assert_eq!(cosine_similarity(&[1.0, 0.0], &[2.0, 0.0]), 1.0);
        assert_eq!(cosine_similarity(&[1.0, 0.0], &[0.0, 3.0]), 0.0);
        assert_eq!(cosine_similarity(&[0.0, 0.0], &[0.0, 0.0]), 1.0);
        assert_eq!(cosine_similarity(&[0.0, 0.0], &[1.0, 0.0]), 0.0);
        let one_ulp = f32::from_bits(1.0f32.to_bits() + 1);
        let similarity = cosine_similarity(&[1.0, 1.0], &[one_ulp, 1.0]);
        assert!(similarity < 1.0 && similarity > 0.999_999_999_999, "{similarity}");
    }
}
