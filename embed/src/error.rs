//! The one error type of the crate.

use std::path::PathBuf;

/// Why an embedder could not be made or could not embed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EmbedError {
    /// No local directory or offline Hugging Face cache entry holds the model.
    #[error("{}", not_found_message(model, searched))]
    ModelNotFound {
        /// The name the caller asked for.
        model: String,
        /// Every place looked at, each with why it did not match.
        searched: Vec<String>,
    },
    /// A model file is missing, unreadable or describes something this crate cannot run.
    #[error("{}: {reason}", path.display())]
    ModelFile {
        /// The file at fault.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// Tokenizing or running the model failed.
    #[error("inference failed: {0}")]
    Inference(String),
    /// An HTTP embedding service failed or answered something unusable.
    #[error("{method} {url}: {reason}")]
    Http {
        /// The HTTP method.
        method: &'static str,
        /// The full URL requested.
        url: String,
        /// The HTTP status, when the server answered.
        status: Option<u16>,
        /// The status with an excerpt of the body, or the transport error.
        reason: String,
    },
    /// An embedding mode, model architecture or model setting this crate does not run.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// An option or input the caller passed is not acceptable.
    #[error("invalid input: {0}")]
    Invalid(String),
}

impl EmbedError {
    /// A service answered 200 with something this crate cannot use.
    pub(crate) fn bad_answer(url: &str, reason: String) -> Self {
        Self::Http {
            method: "POST",
            url: url.to_owned(),
            status: Some(200),
            reason,
        }
    }

    pub(crate) fn model_file(path: impl Into<PathBuf>, reason: impl std::fmt::Display) -> Self {
        Self::ModelFile {
            path: path.into(),
            reason: reason.to_string(),
        }
    }
}

fn not_found_message(model: &str, searched: &[String]) -> String {
    let mut message = format!("model `{model}` not found offline (nothing is ever downloaded); searched:");
    for place in searched {
        message.push_str("\n  - ");
        message.push_str(place);
    }
    message.push_str(
        "\nTo use it, copy the model directory (config.json, model.safetensors, tokenizer.json, modules.json, \
         ...) to this machine and pass its path as the model, or copy a Hugging Face cache entry \
         (models--ORG--NAME, from `huggingface-cli download ORG/NAME` on a machine with network) into \
         $HF_HUB_CACHE or ~/.cache/huggingface/hub.",
    );
    message
}
