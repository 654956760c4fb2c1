//! Finding models offline, on fake Hugging Face cache layouts (only the directory structure
//! matters to resolution; loading is tested in `native.rs`).

use std::fs;
use std::path::{Path, PathBuf};

use ragged_embed::{EmbedError, resolve_model_in};

/// Makes `root/models--{id with -- for /}/snapshots/{revision}/config.json` for each revision, and
/// `refs/main` when given.
fn cache_entry(root: &Path, id: &str, revisions: &[&str], main: Option<&str>) -> PathBuf {
    let repo = root.join(format!("models--{}", id.replace('/', "--")));
    for revision in revisions {
        let snapshot = repo.join("snapshots").join(revision);
        fs::create_dir_all(&snapshot).expect("creates snapshot");
        fs::write(snapshot.join("config.json"), "{}").expect("writes config");
    }
    if let Some(main) = main {
        fs::create_dir_all(repo.join("refs")).expect("creates refs");
        fs::write(repo.join("refs").join("main"), main).expect("writes refs/main");
    }
    repo
}

fn not_found(result: Result<PathBuf, EmbedError>) -> (String, Vec<String>) {
    match result {
        Err(EmbedError::ModelNotFound { model, searched }) => (model, searched),
        other => panic!("expected ModelNotFound, got {other:?}"),
    }
}

#[test]
fn refs_main_picks_the_snapshot() {
    let cache = tempfile::tempdir().expect("tempdir");
    let repo = cache_entry(
        cache.path(),
        "BAAI/bge-small-en-v1.5",
        &["aaa111", "bbb222"],
        Some("bbb222\n"),
    );
    let found = resolve_model_in("BAAI/bge-small-en-v1.5", &[cache.path().to_path_buf()]).expect("found");
    assert_eq!(found, repo.join("snapshots").join("bbb222"));
}

#[test]
fn without_refs_main_the_only_snapshot_is_taken_and_several_are_ambiguous() {
    let cache = tempfile::tempdir().expect("tempdir");
    let repo = cache_entry(cache.path(), "org/one", &["only"], None);
    let roots = [cache.path().to_path_buf()];
    assert_eq!(
        resolve_model_in("org/one", &roots).expect("found"),
        repo.join("snapshots").join("only")
    );

    cache_entry(cache.path(), "org/two", &["r1", "r2"], None);
    let (_, searched) = not_found(resolve_model_in("org/two", &roots));
    assert!(
        searched
            .iter()
            .any(|s| s.contains("models--org--two") && s.contains("2 snapshots")),
        "{searched:?}"
    );
}

#[test]
fn refs_main_naming_a_missing_snapshot_is_reported() {
    let cache = tempfile::tempdir().expect("tempdir");
    cache_entry(cache.path(), "org/m", &["present"], Some("absent"));
    let (_, searched) = not_found(resolve_model_in("org/m", &[cache.path().to_path_buf()]));
    assert!(
        searched.iter().any(|s| s.contains("refs/main") && s.contains("absent")),
        "{searched:?}"
    );
}

#[test]
fn a_bare_name_is_tried_as_a_sentence_transformers_model_and_as_is() {
    let cache = tempfile::tempdir().expect("tempdir");
    let roots = [cache.path().to_path_buf()];
    let st = cache_entry(
        cache.path(),
        "sentence-transformers/all-MiniLM-L6-v2",
        &["r"],
        Some("r"),
    );
    assert_eq!(
        resolve_model_in("all-MiniLM-L6-v2", &roots).expect("found"),
        st.join("snapshots/r")
    );
    let plain = cache_entry(cache.path(), "bert-base-uncased", &["r"], Some("r"));
    assert_eq!(
        resolve_model_in("bert-base-uncased", &roots).expect("found"),
        plain.join("snapshots/r")
    );
}

#[test]
fn later_roots_are_searched_and_a_directory_wins_over_the_cache() {
    let empty = tempfile::tempdir().expect("tempdir");
    let cache = tempfile::tempdir().expect("tempdir");
    let repo = cache_entry(cache.path(), "org/m", &["r"], Some("r"));
    let roots = [empty.path().to_path_buf(), cache.path().to_path_buf()];
    assert_eq!(
        resolve_model_in("org/m", &roots).expect("found"),
        repo.join("snapshots/r")
    );

    // An existing directory is used as is, absolute or relative, even if the cache has the name.
    let snapshot = repo.join("snapshots/r");
    let absolute = snapshot.to_str().expect("utf-8");
    assert_eq!(resolve_model_in(absolute, &roots).expect("found"), snapshot);
    let relative = resolve_model_in("tests/data", &roots).expect("a relative directory");
    assert_eq!(relative, PathBuf::from("tests/data"));
}

#[test]
fn the_not_found_error_names_the_model_every_place_searched_and_what_to_do() {
    let first = tempfile::tempdir().expect("tempdir");
    let second = tempfile::tempdir().expect("tempdir");
    // An entry without snapshots is searched and explained too.
    fs::create_dir_all(second.path().join("models--org--missing")).expect("creates a bare entry");
    let roots = [first.path().to_path_buf(), second.path().to_path_buf()];
    let err = resolve_model_in("org/missing", &roots).expect_err("not found");
    let message = err.to_string();
    assert!(message.contains("`org/missing`"), "{message}");
    assert!(message.contains("org/missing (not a directory)"), "{message}");
    for root in &roots {
        let entry = root.join("models--org--missing");
        assert!(message.contains(&entry.display().to_string()), "{message}");
    }
    assert!(
        message.contains("no such directory") && message.contains("no snapshots/"),
        "{message}"
    );
    assert!(
        message.contains("pass its path") && message.contains("nothing is ever downloaded"),
        "{message}"
    );

    // A path that is no directory is not looked up as a hub id.
    let (model, searched) = not_found(resolve_model_in("/no/such/model/dir", &roots));
    assert_eq!(model, "/no/such/model/dir");
    assert_eq!(searched, vec!["/no/such/model/dir (not a directory)".to_owned()]);
    let (_, searched) = not_found(resolve_model_in("org/name", &[]));
    assert!(
        searched.iter().any(|s| s.contains("no Hugging Face cache directory")),
        "{searched:?}"
    );
}
