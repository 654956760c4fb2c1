//! Embeddings from HTTP services, blocking: OpenAI-compatible APIs and Ollama, computed the way
//! LEANN's `compute_embeddings_openai` and `compute_embeddings_ollama` compute them.

use std::time::Duration;

use serde_json::{Value, json};

use crate::{EmbedError, Embedder};

/// Where an OpenAI-compatible API is when neither the options nor the environment say.
pub const DEFAULT_OPENAI_BASE_URL: &str = "https://api.openai.com/v1";
/// Where Ollama is when neither the options nor the environment say.
pub const DEFAULT_OLLAMA_HOST: &str = "http://localhost:11434";

/// The longest body excerpt an error quotes.
const EXCERPT: usize = 300;
/// The largest response read: a batch of 800 vectors of 3072 floats as JSON text.
const MAX_RESPONSE: u64 = 512 << 20;

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        // Error statuses come back as responses, so the error can quote the body.
        .http_status_as_error(false)
        .timeout_connect(Some(Duration::from_secs(10)))
        .timeout_global(Some(Duration::from_secs(600)))
        .build()
        .into()
}

/// POSTs `body` as JSON and returns the JSON answer; every failure names the URL.
fn post_json(agent: &ureq::Agent, url: &str, bearer: Option<&str>, body: &Value) -> Result<Value, EmbedError> {
    let fail = |status: Option<u16>, reason: String| EmbedError::Http {
        method: "POST",
        url: url.to_owned(),
        status,
        reason,
    };
    let mut request = agent.post(url).header("Content-Type", "application/json");
    if let Some(key) = bearer {
        request = request.header("Authorization", format!("Bearer {key}"));
    }
    let mut response = request
        .send(body.to_string().as_bytes())
        .map_err(|e| fail(None, e.to_string()))?;
    let status = response.status();
    let bytes = response
        .body_mut()
        .with_config()
        .limit(MAX_RESPONSE)
        .read_to_vec()
        .map_err(|e| {
            fail(
                Some(status.as_u16()),
                format!("HTTP {status}, reading the body failed: {e}"),
            )
        })?;
    let text = String::from_utf8_lossy(&bytes);
    if !status.is_success() {
        return Err(fail(
            Some(status.as_u16()),
            format!("HTTP {status}: {}", excerpt(&text)),
        ));
    }
    serde_json::from_str(&text).map_err(|e| {
        fail(
            Some(status.as_u16()),
            format!("the answer is not JSON ({e}): {}", excerpt(&text)),
        )
    })
}

fn excerpt(text: &str) -> String {
    let text = text.trim();
    match text.char_indices().nth(EXCERPT) {
        Some((at, _)) => format!("{}...", &text[..at]),
        None if text.is_empty() => "(empty body)".to_owned(),
        None => text.to_owned(),
    }
}

/// A JSON array of numbers as f32, or why not.
fn vector_of(value: &Value) -> Result<Vec<f32>, String> {
    let items = value.as_array().ok_or("an embedding is not an array")?;
    items
        .iter()
        .map(|x| x.as_f64().map(|x| x as f32).ok_or_else(|| format!("not a number: {x}")))
        .collect()
}

/// Prepends `template` to each text, as LEANN's HTTP modes do with a prompt template.
fn templated(template: Option<&str>, texts: &[&str]) -> Vec<String> {
    texts
        .iter()
        .map(|text| format!("{}{text}", template.unwrap_or_default()))
        .collect()
}

/// An OpenAI-compatible embeddings API: `POST {base_url}/embeddings`.
///
/// Mirrors LEANN's `compute_embeddings_openai`: the vectors are returned as the API gives them,
/// NOT normalised (OpenAI's own models return unit vectors anyway); a prompt template is
/// prepended; empty or whitespace-only texts are refused before any request; batches of 800
/// texts (500 when they average over 300 characters, at most 100 for Gemini's endpoint and 10 for
/// DashScope's).
#[derive(Debug, Clone)]
pub struct OpenAiEmbedder {
    base_url: String,
    model: String,
    api_key: Option<String>,
    prompt_template: Option<String>,
    agent: ureq::Agent,
}

impl OpenAiEmbedder {
    /// A client for `model` at `base_url` (e.g. `https://api.openai.com/v1`; a trailing `/` is
    /// dropped), sending `Authorization: Bearer API_KEY` when a key is given.
    pub fn new(base_url: &str, model: &str, api_key: Option<String>) -> Self {
        Self {
            base_url: base_url.trim_end_matches('/').to_owned(),
            model: model.to_owned(),
            api_key: api_key.filter(|key| !key.is_empty()),
            prompt_template: None,
            agent: agent(),
        }
    }

    /// Prepends `template` to every text before it is sent.
    pub fn with_prompt_template(mut self, template: Option<String>) -> Self {
        self.prompt_template = template.filter(|t| !t.is_empty());
        self
    }

    /// The URL requests go to.
    pub fn url(&self) -> String {
        format!("{}/embeddings", self.base_url)
    }

    fn batch_size(&self, texts: &[String]) -> usize {
        // LEANN: 500 when the average length in characters is over 300.
        let total: usize = texts.iter().map(|t| t.chars().count()).sum();
        let mut size = if total > 300 * texts.len() { 500 } else { 800 };
        if self.base_url.contains("generativelanguage.googleapis.com") {
            size = size.min(100);
        }
        if self.base_url.contains("dashscope") {
            size = size.min(10);
        }
        size
    }

    fn embed_batch(&self, url: &str, batch: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let answer = post_json(
            &self.agent,
            url,
            self.api_key.as_deref(),
            &json!({"model": self.model, "input": batch}),
        )?;
        let bad = |reason: String| EmbedError::bad_answer(url, reason);
        let data = answer
            .get("data")
            .and_then(Value::as_array)
            .ok_or_else(|| bad("no `data` array in the answer".into()))?;
        let mut indexed = Vec::with_capacity(data.len());
        for (position, item) in data.iter().enumerate() {
            // Results are ordered by `index`; an answer without indexes is taken in order.
            let index = item
                .get("index")
                .and_then(Value::as_u64)
                .map_or(position, |i| i as usize);
            let vector = item
                .get("embedding")
                .ok_or_else(|| bad(format!("data[{position}] has no `embedding`")))?;
            indexed.push((
                index,
                vector_of(vector).map_err(|e| bad(format!("data[{position}]: {e}")))?,
            ));
        }
        indexed.sort_by_key(|(index, _)| *index);
        if indexed.len() != batch.len() || indexed.iter().enumerate().any(|(i, (index, _))| i != *index) {
            let indexes: Vec<usize> = indexed.iter().map(|(index, _)| *index).collect();
            return Err(bad(format!(
                "sent {} texts but got embeddings for indexes {indexes:?}",
                batch.len()
            )));
        }
        Ok(indexed.into_iter().map(|(_, vector)| vector).collect())
    }
}

impl Embedder for OpenAiEmbedder {
    fn describe(&self) -> String {
        format!(
            "OpenAI-compatible embeddings API at {} (model {})",
            self.url(),
            self.model
        )
    }

    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let blank = texts.iter().filter(|t| t.trim().is_empty()).count();
        if blank > 0 {
            return Err(EmbedError::Invalid(format!(
                "{blank} empty or whitespace-only text(s): OpenAI-compatible APIs refuse them (LEANN filters them out first)"
            )));
        }
        let texts = templated(self.prompt_template.as_deref(), texts);
        let url = self.url();
        let mut out = Vec::with_capacity(texts.len());
        for batch in texts.chunks(self.batch_size(&texts)) {
            out.extend(self.embed_batch(&url, batch)?);
        }
        Ok(out)
    }
}

/// Ollama's embeddings API: `POST {host}/api/embed`.
///
/// Mirrors LEANN's `compute_embeddings_ollama`: a prompt template is prepended, texts go in
/// batches of 32, and every vector is L2-normalised as `e / (norm + 1e-8)`.
#[derive(Debug, Clone)]
pub struct OllamaEmbedder {
    host: String,
    model: String,
    prompt_template: Option<String>,
    agent: ureq::Agent,
}

impl OllamaEmbedder {
    /// Texts per request, LEANN's batch size for Ollama without CUDA.
    pub const BATCH_SIZE: usize = 32;

    /// A client for `model` on the Ollama server at `host` (e.g. `http://localhost:11434`; a
    /// trailing `/` is dropped, and `http://` is assumed when no scheme is given, as in the
    /// common `OLLAMA_HOST=0.0.0.0:11434`).
    pub fn new(host: &str, model: &str) -> Self {
        let host = host.trim_end_matches('/');
        let host = if host.contains("://") {
            host.to_owned()
        } else {
            format!("http://{host}")
        };
        Self {
            host,
            model: model.to_owned(),
            prompt_template: None,
            agent: agent(),
        }
    }

    /// Prepends `template` to every text before it is sent.
    pub fn with_prompt_template(mut self, template: Option<String>) -> Self {
        self.prompt_template = template.filter(|t| !t.is_empty());
        self
    }

    /// The URL requests go to.
    pub fn url(&self) -> String {
        format!("{}/api/embed", self.host)
    }
}

/// LEANN's normalisation of Ollama vectors: `embeddings / (norms + 1e-8)` in float32.
pub fn normalize_like_leann_ollama(vector: &mut [f32]) {
    let norm = vector.iter().map(|x| f64::from(*x) * f64::from(*x)).sum::<f64>().sqrt() as f32;
    let divisor = norm + 1e-8f32;
    for x in vector {
        *x /= divisor;
    }
}

impl Embedder for OllamaEmbedder {
    fn describe(&self) -> String {
        format!("Ollama embeddings at {} (model {}, normalized)", self.url(), self.model)
    }

    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let texts = templated(self.prompt_template.as_deref(), texts);
        let url = self.url();
        let mut out = Vec::with_capacity(texts.len());
        for batch in texts.chunks(Self::BATCH_SIZE) {
            let answer = post_json(&self.agent, &url, None, &json!({"model": self.model, "input": batch}))?;
            let bad = |reason: String| EmbedError::bad_answer(&url, reason);
            let embeddings = answer
                .get("embeddings")
                .and_then(Value::as_array)
                .ok_or_else(|| bad("no `embeddings` array in the answer".into()))?;
            if embeddings.len() != batch.len() {
                return Err(bad(format!(
                    "sent {} texts but got {} embeddings",
                    batch.len(),
                    embeddings.len()
                )));
            }
            for (i, vector) in embeddings.iter().enumerate() {
                let mut vector = vector_of(vector).map_err(|e| bad(format!("embeddings[{i}]: {e}")))?;
                normalize_like_leann_ollama(&mut vector);
                out.push(vector);
            }
        }
        if let Some(first) = out.first()
            && let Some(odd) = out.iter().position(|v| v.len() != first.len())
        {
            return Err(EmbedError::bad_answer(
                &url,
                format!(
                    "inconsistent dimensions: {} for text 0 but {} for text {odd}",
                    first.len(),
                    out[odd].len()
                ),
            ));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leann_ollama_normalization_adds_epsilon_to_the_norm() {
        let mut v = vec![3.0f32, 4.0];
        normalize_like_leann_ollama(&mut v);
        assert_eq!(v, vec![3.0 / (5.0 + 1e-8f32), 4.0 / (5.0 + 1e-8f32)]);
        let mut zero = vec![0.0f32; 2];
        normalize_like_leann_ollama(&mut zero);
        assert_eq!(zero, vec![0.0, 0.0], "a zero vector stays zero, no NaN");
    }

    #[test]
    fn excerpts_are_bounded() {
        assert_eq!(excerpt("  short \n"), "short");
        assert_eq!(excerpt(""), "(empty body)");
        let long = "é".repeat(1000);
        let cut = excerpt(&long);
        assert_eq!(cut.chars().count(), EXCERPT + 3);
    }

    #[test]
    fn openai_batches_follow_leann() {
        let openai = OpenAiEmbedder::new("https://api.openai.com/v1/", "m", None);
        assert_eq!(openai.url(), "https://api.openai.com/v1/embeddings");
        assert_eq!(openai.batch_size(&["short".to_owned()]), 800);
        assert_eq!(openai.batch_size(&["x".repeat(301)]), 500);
        assert_eq!(
            openai.batch_size(&["x".repeat(300), "x".repeat(301)]),
            500,
            "an average of 300.5 is over 300"
        );
        assert_eq!(openai.batch_size(&["x".repeat(300)]), 800);
        let gemini = OpenAiEmbedder::new("https://generativelanguage.googleapis.com/v1beta/openai", "m", None);
        assert_eq!(gemini.batch_size(&["short".to_owned()]), 100);
        let dashscope = OpenAiEmbedder::new("https://dashscope.aliyuncs.com/compatible-mode/v1", "m", None);
        assert_eq!(dashscope.batch_size(&["short".to_owned()]), 10);
    }

    #[test]
    fn ollama_hosts_get_a_scheme() {
        assert_eq!(
            OllamaEmbedder::new("0.0.0.0:11434", "m").url(),
            "http://0.0.0.0:11434/api/embed"
        );
        assert_eq!(
            OllamaEmbedder::new("https://o.example/", "m").url(),
            "https://o.example/api/embed"
        );
    }
}
