//! sentence-transformers BERT models run natively: candle for the transformer, `tokenizers` for
//! the tokenizer, and the Pooling / Normalize modules re-implemented as sentence-transformers 2.7
//! computes them.

use std::fs;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config as BertConfig};
use serde::Deserialize;
use serde_json::{Map, Value};
use tokenizers::{Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

use crate::{EmbedError, Embedder};

/// Texts per forward pass when the caller sets none: LEANN's CPU batch size.
pub const DEFAULT_BATCH_SIZE: usize = 32;

/// The `model_type`s whose checkpoints candle's BERT runs.
const BERT_MODEL_TYPES: &[&str] = &["bert"];

/// How token embeddings become one sentence vector (sentence-transformers' `Pooling` module).
/// Several modes may be on at once; their results are concatenated in this field order, as
/// sentence-transformers does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pooling {
    /// The first token (`[CLS]`).
    pub cls: bool,
    /// The element-wise maximum over the real (unmasked) tokens.
    pub max: bool,
    /// The mean over the real tokens.
    pub mean: bool,
    /// The sum over the real tokens divided by the square root of their count.
    pub mean_sqrt_len: bool,
}

impl Pooling {
    /// Mean pooling only: sentence-transformers' default for a plain Hugging Face model.
    pub const MEAN: Pooling = Pooling {
        cls: false,
        max: false,
        mean: true,
        mean_sqrt_len: false,
    };

    fn modes(self) -> usize {
        [self.cls, self.max, self.mean, self.mean_sqrt_len]
            .iter()
            .filter(|on| **on)
            .count()
    }

    fn describe(self) -> String {
        let names: Vec<&str> = [
            (self.cls, "cls"),
            (self.max, "max"),
            (self.mean, "mean"),
            (self.mean_sqrt_len, "mean_sqrt_len"),
        ]
        .iter()
        .filter(|(on, _)| *on)
        .map(|(_, name)| *name)
        .collect();
        names.join("+")
    }

    /// Pools one text: `tokens` holds `len` rows of `hidden` values for its real tokens (the
    /// padding, always at the end, is already cut off, which is what masking by the attention
    /// mask amounts to).
    pub(crate) fn pool(self, tokens: &[f32], len: usize, hidden: usize) -> Vec<f32> {
        let rows = || tokens.chunks_exact(hidden).take(len);
        let mut out = Vec::with_capacity(hidden * self.modes());
        if self.cls {
            out.extend_from_slice(&tokens[..hidden]);
        }
        if self.max {
            // sentence-transformers sets masked tokens to -1e9, so an empty text pools to -1e9.
            let mut max = vec![-1e9f32; hidden];
            for row in rows() {
                for (m, &x) in max.iter_mut().zip(row) {
                    *m = m.max(x);
                }
            }
            out.extend(max);
        }
        if self.mean || self.mean_sqrt_len {
            let mut sum = vec![0f32; hidden];
            for row in rows() {
                for (s, &x) in sum.iter_mut().zip(row) {
                    *s += x;
                }
            }
            // torch.clamp(sum_mask, min=1e-9)
            let count = (len as f32).max(1e-9);
            if self.mean {
                out.extend(sum.iter().map(|s| s / count));
            }
            if self.mean_sqrt_len {
                let root = count.sqrt();
                out.extend(sum.iter().map(|s| s / root));
            }
        }
        out
    }
}

/// Divides by the L2 norm as torch's `F.normalize(p=2, dim=1)` does (the norm clamped to 1e-12).
pub fn normalize_l2(vector: &mut [f32]) {
    let norm = vector.iter().map(|x| f64::from(*x) * f64::from(*x)).sum::<f64>().sqrt() as f32;
    let norm = norm.max(1e-12);
    for x in vector {
        *x /= norm;
    }
}

/// A sentence-transformers model (Transformer → Pooling → optional Normalize) with a BERT
/// transformer, loaded from a local directory and run on the CPU.
pub struct SentenceTransformer {
    dir: PathBuf,
    model: BertModel,
    tokenizer: Tokenizer,
    hidden: usize,
    pooling: Pooling,
    normalize: bool,
    max_seq_length: usize,
    lowercase: bool,
    prompt: String,
    batch_size: usize,
    device: Device,
}

impl std::fmt::Debug for SentenceTransformer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SentenceTransformer")
            .field("dir", &self.dir)
            .field("dimension", &self.dimension())
            .field("pooling", &self.pooling)
            .field("normalize", &self.normalize)
            .field("max_seq_length", &self.max_seq_length)
            .field("lowercase", &self.lowercase)
            .field("batch_size", &self.batch_size)
            .finish_non_exhaustive()
    }
}

/// One entry of `modules.json`.
#[derive(Deserialize)]
struct ModuleEntry {
    #[serde(default)]
    path: String,
    #[serde(rename = "type")]
    kind: String,
}

/// The Pooling module's `config.json`.
#[derive(Deserialize)]
struct PoolingConfig {
    word_embedding_dimension: Option<usize>,
    #[serde(default)]
    pooling_mode_cls_token: bool,
    #[serde(default)]
    pooling_mode_mean_tokens: bool,
    #[serde(default)]
    pooling_mode_max_tokens: bool,
    #[serde(default)]
    pooling_mode_mean_sqrt_len_tokens: bool,
    #[serde(default)]
    pooling_mode_weightedmean_tokens: bool,
    #[serde(default)]
    pooling_mode_lasttoken: bool,
    #[serde(default = "yes")]
    include_prompt: bool,
}

fn yes() -> bool {
    true
}

/// What the modules of a model directory say, before any weight is read.
struct Layout {
    transformer_dir: PathBuf,
    pooling: Pooling,
    normalize: bool,
    include_prompt: bool,
    pooling_dimension: Option<(PathBuf, usize)>,
}

impl SentenceTransformer {
    /// Loads the model in `dir` (see [`crate::resolve_model`] to find one by name).
    ///
    /// Reads `modules.json` (without it, a plain Hugging Face BERT with mean pooling, as
    /// sentence-transformers does), the Pooling module's `config.json`, `sentence_bert_config.json`
    /// (`max_seq_length`, `do_lower_case`), `config_sentence_transformers.json` (a default prompt),
    /// `config.json`, `tokenizer.json` and `model.safetensors` (or `pytorch_model.bin`).
    pub fn load(dir: impl AsRef<Path>) -> Result<Self, EmbedError> {
        let dir = dir.as_ref().to_path_buf();
        if !dir.is_dir() {
            return Err(EmbedError::model_file(&dir, "not a directory"));
        }
        let layout = read_layout(&dir)?;
        let tdir = &layout.transformer_dir;

        let config_path = tdir.join("config.json");
        let config = bert_config(&config_path)?;
        let hidden = config.hidden_size;
        if let Some((path, dimension)) = &layout.pooling_dimension
            && *dimension != hidden
        {
            return Err(EmbedError::model_file(
                path,
                format!("word_embedding_dimension is {dimension} but the transformer's hidden_size is {hidden}"),
            ));
        }

        let st_config = read_json_if_exists(&tdir.join("sentence_bert_config.json"))?;
        let lowercase = st_config
            .as_ref()
            .and_then(|c| c.get("do_lower_case"))
            .and_then(Value::as_bool)
            == Some(true);
        let max_seq_length = match st_config
            .as_ref()
            .and_then(|c| c.get("max_seq_length"))
            .and_then(Value::as_u64)
        {
            Some(n) => n as usize,
            // sentence-transformers: min(max_position_embeddings, tokenizer.model_max_length)
            None => {
                let tokenizer_config = read_json_if_exists(&tdir.join("tokenizer_config.json"))?;
                let model_max = tokenizer_config
                    .as_ref()
                    .and_then(|c| c.get("model_max_length"))
                    .and_then(Value::as_u64);
                model_max.map_or(config.max_position_embeddings, |m| {
                    (m as usize).min(config.max_position_embeddings)
                })
            }
        };
        // More positions than the model has would fail inside the model.
        let max_seq_length = max_seq_length.min(config.max_position_embeddings);
        if max_seq_length < 2 {
            return Err(EmbedError::model_file(
                tdir.join("sentence_bert_config.json"),
                format!("max_seq_length {max_seq_length} leaves no room for a token"),
            ));
        }

        let prompt = default_prompt(&dir)?;
        if !prompt.is_empty() && !layout.include_prompt {
            return Err(EmbedError::Unsupported(format!(
                "{}: a default prompt with include_prompt = false (prompt tokens excluded from pooling)",
                dir.display()
            )));
        }

        let tokenizer_path = tdir.join("tokenizer.json");
        if !tokenizer_path.is_file() {
            return Err(EmbedError::model_file(
                &tokenizer_path,
                "missing (only fast tokenizers saved as tokenizer.json are supported)",
            ));
        }
        let mut tokenizer =
            Tokenizer::from_file(&tokenizer_path).map_err(|e| EmbedError::model_file(&tokenizer_path, e))?;
        // The Python side overrides tokenizer.json's own padding and truncation the same way.
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(Some(TruncationParams {
                direction: TruncationDirection::Right,
                max_length: max_seq_length,
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
            }))
            .map_err(|e| EmbedError::model_file(&tokenizer_path, e))?;

        let device = Device::Cpu;
        let (weights, vb) = weights(tdir, &device)?;
        let model = BertModel::load(vb, &config).map_err(|e| EmbedError::model_file(&weights, e))?;

        Ok(Self {
            dir,
            model,
            tokenizer,
            hidden,
            pooling: layout.pooling,
            normalize: layout.normalize,
            max_seq_length,
            lowercase,
            prompt,
            batch_size: DEFAULT_BATCH_SIZE,
            device,
        })
    }

    /// Sets how many texts go through the model at once (memory against speed; the vectors do
    /// not depend on it).
    pub fn with_batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = batch_size.max(1);
        self
    }

    /// The length of the vectors this model produces.
    pub fn dimension(&self) -> usize {
        self.hidden * self.pooling.modes()
    }

    /// The directory the model was loaded from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Tokens per text, special tokens included; longer texts are truncated.
    pub fn max_seq_length(&self) -> usize {
        self.max_seq_length
    }

    /// Whether the model ends in a Normalize module (its vectors have norm 1).
    pub fn normalizes(&self) -> bool {
        self.normalize
    }

    /// The pooling the model uses.
    pub fn pooling(&self) -> Pooling {
        self.pooling
    }

    /// The number of tokens each text becomes after truncation, special tokens included.
    pub fn token_counts(&self, texts: &[&str]) -> Result<Vec<usize>, EmbedError> {
        let prepared: Vec<String> = texts.iter().map(|t| self.prepare(t)).collect();
        let encodings = self
            .tokenizer
            .encode_batch(prepared, true)
            .map_err(|e| EmbedError::Inference(format!("tokenizer: {e}")))?;
        Ok(encodings.iter().map(|e| e.get_ids().len()).collect())
    }

    /// What sentence-transformers does to a text before tokenizing it: the default prompt, then
    /// strip, then lowercase when the model asks for it.
    fn prepare(&self, text: &str) -> String {
        let text = if self.prompt.is_empty() {
            text.to_owned()
        } else {
            format!("{}{text}", self.prompt)
        };
        let text = text.trim();
        if self.lowercase {
            text.to_lowercase()
        } else {
            text.to_owned()
        }
    }

    fn embed_batch(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>, EmbedError> {
        let encodings = self
            .tokenizer
            .encode_batch(texts, true)
            .map_err(|e| EmbedError::Inference(format!("tokenizer: {e}")))?;
        let batch = encodings.len();
        let width = encodings.iter().map(|e| e.get_ids().len()).max().unwrap_or(0).max(1);
        // Right padding with id 0; the mask keeps padding out of attention and pooling.
        let mut ids = vec![0u32; batch * width];
        let mut type_ids = vec![0u32; batch * width];
        let mut mask = vec![0u32; batch * width];
        let mut lens = Vec::with_capacity(batch);
        for (row, encoding) in encodings.iter().enumerate() {
            let n = encoding.get_ids().len();
            let at = row * width;
            ids[at..at + n].copy_from_slice(encoding.get_ids());
            type_ids[at..at + n].copy_from_slice(encoding.get_type_ids());
            mask[at..at + n].copy_from_slice(encoding.get_attention_mask());
            lens.push(encoding.get_attention_mask().iter().filter(|m| **m != 0).count());
        }
        let inference = |e: candle_core::Error| EmbedError::Inference(e.to_string());
        let ids = Tensor::from_vec(ids, (batch, width), &self.device).map_err(inference)?;
        let type_ids = Tensor::from_vec(type_ids, (batch, width), &self.device).map_err(inference)?;
        let mask = Tensor::from_vec(mask, (batch, width), &self.device).map_err(inference)?;
        let hidden = self.model.forward(&ids, &type_ids, Some(&mask)).map_err(inference)?;
        let hidden = hidden
            .to_dtype(DType::F32)
            .map_err(inference)?
            .flatten_all()
            .map_err(inference)?;
        let hidden = hidden.to_vec1::<f32>().map_err(inference)?;
        let per_text = width * self.hidden;
        let mut out = Vec::with_capacity(batch);
        for (row, len) in lens.into_iter().enumerate() {
            let tokens = &hidden[row * per_text..(row + 1) * per_text];
            let mut vector = self.pooling.pool(tokens, len, self.hidden);
            if self.normalize {
                normalize_l2(&mut vector);
            }
            if vector.iter().any(|x| !x.is_finite()) {
                return Err(EmbedError::Inference(format!(
                    "NaN or infinite values from {}",
                    self.dir.display()
                )));
            }
            out.push(vector);
        }
        Ok(out)
    }
}

impl Embedder for SentenceTransformer {
    fn describe(&self) -> String {
        format!(
            "sentence-transformers BERT model at {} (dimension {}, {} pooling{}, at most {} tokens)",
            self.dir.display(),
            self.dimension(),
            self.pooling.describe(),
            if self.normalize { ", normalized" } else { "" },
            self.max_seq_length,
        )
    }

    fn dimension(&self) -> Option<usize> {
        Some(SentenceTransformer::dimension(self))
    }

    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        // Longest first, as sentence-transformers does, so each batch pads little.
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(texts[i].chars().count()));
        let mut vectors: Vec<Vec<f32>> = vec![Vec::new(); texts.len()];
        for chunk in order.chunks(self.batch_size) {
            let batch: Vec<String> = chunk.iter().map(|&i| self.prepare(texts[i])).collect();
            for (&i, vector) in chunk.iter().zip(self.embed_batch(batch)?) {
                vectors[i] = vector;
            }
        }
        Ok(vectors)
    }
}

/// Which modules the model has, from `modules.json`, or the sentence-transformers default for a
/// plain Hugging Face model.
fn read_layout(dir: &Path) -> Result<Layout, EmbedError> {
    let modules_path = dir.join("modules.json");
    if !modules_path.exists() {
        return Ok(Layout {
            transformer_dir: dir.to_path_buf(),
            pooling: Pooling::MEAN,
            normalize: false,
            include_prompt: true,
            pooling_dimension: None,
        });
    }
    let modules: Vec<ModuleEntry> = read_json_as(&modules_path)?;
    let kinds: Vec<&str> = modules
        .iter()
        .map(|m| m.kind.rsplit('.').next().unwrap_or_default())
        .collect();
    let normalize = match kinds.as_slice() {
        ["Transformer", "Pooling"] => false,
        ["Transformer", "Pooling", "Normalize"] => true,
        _ => {
            let listed: Vec<&str> = modules.iter().map(|m| m.kind.as_str()).collect();
            return Err(EmbedError::model_file(
                &modules_path,
                format!(
                    "modules {listed:?} are not supported: only Transformer, Pooling and an optional \
                     Normalize, in that order"
                ),
            ));
        }
    };
    let transformer_dir = dir.join(&modules[0].path);
    let pooling_path = dir.join(&modules[1].path).join("config.json");
    let config: PoolingConfig = read_json_as(&pooling_path)?;
    if config.pooling_mode_weightedmean_tokens || config.pooling_mode_lasttoken {
        return Err(EmbedError::model_file(
            &pooling_path,
            "weightedmean and lasttoken pooling are not supported (only cls, max, mean, mean_sqrt_len)",
        ));
    }
    let pooling = Pooling {
        cls: config.pooling_mode_cls_token,
        max: config.pooling_mode_max_tokens,
        mean: config.pooling_mode_mean_tokens,
        mean_sqrt_len: config.pooling_mode_mean_sqrt_len_tokens,
    };
    if pooling.modes() == 0 {
        return Err(EmbedError::model_file(&pooling_path, "no pooling mode is enabled"));
    }
    Ok(Layout {
        transformer_dir,
        pooling,
        normalize,
        include_prompt: config.include_prompt,
        pooling_dimension: config.word_embedding_dimension.map(|d| (pooling_path, d)),
    })
}

/// The BERT configuration in `config.json`, refusing other architectures. Fields a config may
/// omit take BERT's defaults, as transformers' `BertConfig` does.
fn bert_config(path: &Path) -> Result<BertConfig, EmbedError> {
    let mut config: Map<String, Value> = read_json_as(path)?;
    let model_type = config
        .get("model_type")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    if !BERT_MODEL_TYPES.contains(&model_type.as_str()) {
        return Err(EmbedError::model_file(
            path,
            format!(
                "model_type `{model_type}` is not supported: the native embedder runs BERT models \
                 (model_type \"bert\", e.g. all-MiniLM-L6-v2, bge, e5, contriever)"
            ),
        ));
    }
    if let Some(kind) = config.get("position_embedding_type").and_then(Value::as_str)
        && kind != "absolute"
    {
        return Err(EmbedError::model_file(
            path,
            format!("position_embedding_type `{kind}` is not supported (only absolute)"),
        ));
    }
    // transformers' names for the tanh approximation, which candle calls gelu_approximate.
    if let Some(act) = config.get("hidden_act").and_then(Value::as_str)
        && matches!(act, "gelu_new" | "gelu_pytorch_tanh")
    {
        config.insert("hidden_act".into(), "geluapproximate".into());
    }
    let defaults = [
        ("vocab_size", Value::from(30522)),
        ("hidden_size", Value::from(768)),
        ("num_hidden_layers", Value::from(12)),
        ("num_attention_heads", Value::from(12)),
        ("intermediate_size", Value::from(3072)),
        ("hidden_act", Value::from("gelu")),
        ("hidden_dropout_prob", Value::from(0.1)),
        ("max_position_embeddings", Value::from(512)),
        ("type_vocab_size", Value::from(2)),
        ("initializer_range", Value::from(0.02)),
        ("layer_norm_eps", Value::from(1e-12)),
        ("pad_token_id", Value::from(0)),
    ];
    for (key, value) in defaults {
        if config.get(key).is_none_or(Value::is_null) {
            config.insert(key.into(), value);
        }
    }
    let config: BertConfig = serde_json::from_value(Value::Object(config))
        .map_err(|e| EmbedError::model_file(path, format!("not a BERT configuration this crate runs: {e}")))?;
    if config.num_attention_heads == 0 || !config.hidden_size.is_multiple_of(config.num_attention_heads) {
        return Err(EmbedError::model_file(
            path,
            format!(
                "hidden_size {} is not a multiple of num_attention_heads {}",
                config.hidden_size, config.num_attention_heads
            ),
        ));
    }
    Ok(config)
}

/// The weights file and a builder reading it as f32 on `device`.
fn weights(dir: &Path, device: &Device) -> Result<(PathBuf, VarBuilder<'static>), EmbedError> {
    let safetensors = dir.join("model.safetensors");
    if safetensors.is_file() {
        // Read rather than memory-mapped: mapping is unsafe (another process could truncate the
        // file), and the tensors are copied into owned storage during the load anyway.
        let bytes = std::fs::read(&safetensors).map_err(|e| EmbedError::model_file(&safetensors, e))?;
        let vb = VarBuilder::from_buffered_safetensors(bytes, DType::F32, device)
            .map_err(|e| EmbedError::model_file(&safetensors, e))?;
        return Ok((safetensors, vb));
    }
    let pth = dir.join("pytorch_model.bin");
    if pth.is_file() {
        let vb = VarBuilder::from_pth(&pth, DType::F32, device).map_err(|e| EmbedError::model_file(&pth, e))?;
        return Ok((pth, vb));
    }
    Err(EmbedError::model_file(
        safetensors,
        "missing (and no pytorch_model.bin either)",
    ))
}

/// The prompt `config_sentence_transformers.json` names as default, which `encode` prepends.
fn default_prompt(dir: &Path) -> Result<String, EmbedError> {
    let path = dir.join("config_sentence_transformers.json");
    let Some(config) = read_json_if_exists(&path)? else {
        return Ok(String::new());
    };
    let Some(name) = config.get("default_prompt_name").and_then(Value::as_str) else {
        return Ok(String::new());
    };
    match config.get("prompts").and_then(|p| p.get(name)).and_then(Value::as_str) {
        Some(prompt) => Ok(prompt.to_owned()),
        None => Err(EmbedError::model_file(
            &path,
            format!("default_prompt_name `{name}` is not in prompts"),
        )),
    }
}

fn read_json_as<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, EmbedError> {
    let text = fs::read_to_string(path).map_err(|e| EmbedError::model_file(path, e))?;
    serde_json::from_str(&text).map_err(|e| EmbedError::model_file(path, e))
}

fn read_json_if_exists(path: &Path) -> Result<Option<Map<String, Value>>, EmbedError> {
    if path.exists() {
        read_json_as(path).map(Some)
    } else {
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two tokens of a text padded to three, hidden size 2.
    const TOKENS: [f32; 6] = [1.0, -2.0, 3.0, 4.0, 100.0, 100.0];

    #[test]
    fn pooling_ignores_the_padding() {
        let mean = Pooling::MEAN.pool(&TOKENS, 2, 2);
        assert_eq!(mean, vec![2.0, 1.0]);
        let max = Pooling {
            max: true,
            ..Pooling::default()
        }
        .pool(&TOKENS, 2, 2);
        assert_eq!(max, vec![3.0, 4.0]);
        let cls = Pooling {
            cls: true,
            ..Pooling::default()
        }
        .pool(&TOKENS, 2, 2);
        assert_eq!(cls, vec![1.0, -2.0]);
        let sqrt = Pooling {
            mean_sqrt_len: true,
            ..Pooling::default()
        }
        .pool(&TOKENS, 2, 2);
        assert_eq!(sqrt, vec![4.0 / 2f32.sqrt(), 2.0 / 2f32.sqrt()]);
    }

    #[test]
    fn several_pooling_modes_concatenate_in_sentence_transformers_order() {
        let all = Pooling {
            cls: true,
            max: true,
            mean: true,
            mean_sqrt_len: true,
        };
        assert_eq!(all.modes(), 4);
        let pooled = all.pool(&TOKENS, 2, 2);
        assert_eq!(pooled[..6], [1.0, -2.0, 3.0, 4.0, 2.0, 1.0]);
        assert_eq!(all.describe(), "cls+max+mean+mean_sqrt_len");
    }

    #[test]
    fn normalizing_gives_unit_norm_and_leaves_zero_alone() {
        let mut v = vec![3.0f32, 4.0];
        normalize_l2(&mut v);
        assert_eq!(v, vec![0.6, 0.8]);
        let mut zero = vec![0.0f32; 3];
        normalize_l2(&mut zero);
        assert_eq!(zero, vec![0.0; 3]);
    }

    fn write(dir: &Path, name: &str, text: &str) {
        let path = dir.join(name);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).expect("creates dir");
        }
        fs::write(path, text).expect("writes file");
    }

    #[test]
    fn a_model_that_is_not_bert_is_refused_naming_config_json() {
        let dir = tempfile::tempdir().expect("tempdir");
        write(
            dir.path(),
            "config.json",
            r#"{"model_type": "mpnet", "hidden_size": 768}"#,
        );
        let err = SentenceTransformer::load(dir.path()).expect_err("refused");
        let message = err.to_string();
        assert!(matches!(err, EmbedError::ModelFile { .. }), "{message}");
        assert!(
            message.contains("config.json") && message.contains("mpnet"),
            "{message}"
        );
    }

    #[test]
    fn unsupported_modules_and_pooling_are_refused_naming_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        write(
            dir.path(),
            "modules.json",
            r#"[{"path": "", "type": "sentence_transformers.models.Transformer"},
                {"path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
                {"path": "2_Dense", "type": "sentence_transformers.models.Dense"}]"#,
        );
        let err = SentenceTransformer::load(dir.path()).expect_err("refused").to_string();
        assert!(err.contains("modules.json") && err.contains("Dense"), "{err}");

        write(
            dir.path(),
            "modules.json",
            r#"[{"path": "", "type": "sentence_transformers.models.Transformer"},
                {"path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]"#,
        );
        write(
            dir.path(),
            "1_Pooling/config.json",
            r#"{"pooling_mode_lasttoken": true}"#,
        );
        let err = SentenceTransformer::load(dir.path()).expect_err("refused").to_string();
        assert!(err.contains("1_Pooling") && err.contains("lasttoken"), "{err}");
    }

    #[test]
    fn a_missing_file_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        write(
            dir.path(),
            "config.json",
            r#"{"model_type": "bert", "hidden_size": 8, "num_attention_heads": 2}"#,
        );
        let err = SentenceTransformer::load(dir.path()).expect_err("refused").to_string();
        assert!(err.contains("tokenizer.json") && err.contains("missing"), "{err}");
    }
}
