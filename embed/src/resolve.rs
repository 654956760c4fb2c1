//! Finding a model directory offline: a local path, or a snapshot in the Hugging Face cache.

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};

use crate::EmbedError;

/// The organisation sentence-transformers prefixes to a bare model name (`all-MiniLM-L6-v2`).
const SENTENCE_TRANSFORMERS_ORG: &str = "sentence-transformers";

/// The directories that may hold Hugging Face cache entries (`models--ORG--NAME`), read from the
/// process environment. See [`cache_roots_from`].
pub fn hf_cache_roots() -> Vec<PathBuf> {
    let home = std::env::var_os("HOME")
        .or_else(|| std::env::var_os("USERPROFILE"))
        .map(PathBuf::from);
    cache_roots_from(|name| std::env::var_os(name), home.as_deref())
}

/// The cache roots for a given environment, in the order they are searched:
/// `$SENTENCE_TRANSFORMERS_HOME` when set (sentence-transformers' own cache folder), then the
/// Hugging Face hub cache as `huggingface_hub` resolves it: `$HF_HUB_CACHE` (or the older
/// `$HUGGINGFACE_HUB_CACHE`), else `$HF_HOME/hub`, else `$XDG_CACHE_HOME/huggingface/hub`, else
/// `~/.cache/huggingface/hub`. Empty variables count as unset.
pub fn cache_roots_from(env: impl Fn(&str) -> Option<OsString>, home: Option<&Path>) -> Vec<PathBuf> {
    let var = |name: &str| env(name).filter(|value| !value.is_empty()).map(PathBuf::from);
    let mut roots = Vec::new();
    if let Some(st_home) = var("SENTENCE_TRANSFORMERS_HOME") {
        roots.push(st_home);
    }
    let hub = var("HF_HUB_CACHE")
        .or_else(|| var("HUGGINGFACE_HUB_CACHE"))
        .or_else(|| var("HF_HOME").map(|hf_home| hf_home.join("hub")))
        .or_else(|| var("XDG_CACHE_HOME").map(|cache| cache.join("huggingface").join("hub")))
        .or_else(|| home.map(|home| home.join(".cache").join("huggingface").join("hub")));
    if let Some(hub) = hub
        && !roots.contains(&hub)
    {
        roots.push(hub);
    }
    roots
}

/// [`resolve_model_in`] with the roots of [`hf_cache_roots`].
pub fn resolve_model(model: &str) -> Result<PathBuf, EmbedError> {
    resolve_model_in(model, &hf_cache_roots())
}

/// The directory of `model`, found without any network access.
///
/// An existing directory (absolute, or relative to the working directory) is returned as is.
/// Otherwise `model` is a Hugging Face id (`ORG/NAME`; a bare `NAME` is also tried as
/// `sentence-transformers/NAME`, as sentence-transformers does) looked up in each cache root as
/// `models--ORG--NAME/snapshots/REVISION/`, where `refs/main` names the revision; without
/// `refs/main`, a single snapshot is taken. The error lists every place searched.
pub fn resolve_model_in(model: &str, cache_roots: &[PathBuf]) -> Result<PathBuf, EmbedError> {
    let as_path = Path::new(model);
    if as_path.is_dir() {
        return Ok(as_path.to_path_buf());
    }
    let mut searched = vec![format!("{model} (not a directory)")];
    // What cannot be a hub id is only ever a path.
    if model.is_empty() || model.contains('\\') || model.matches('/').count() > 1 || as_path.is_absolute() {
        return Err(EmbedError::ModelNotFound {
            model: model.to_owned(),
            searched,
        });
    }
    let mut ids = Vec::new();
    if !model.contains('/') {
        ids.push(format!("{SENTENCE_TRANSFORMERS_ORG}/{model}"));
    }
    ids.push(model.to_owned());
    if cache_roots.is_empty() {
        searched.push("no Hugging Face cache directory (no HF_HUB_CACHE, HF_HOME or HOME)".to_owned());
    }
    for root in cache_roots {
        for id in &ids {
            let repo = root.join(format!("models--{}", id.replace('/', "--")));
            match snapshot_in(&repo) {
                Ok(dir) => return Ok(dir),
                Err(why) => searched.push(format!("{} ({why})", repo.display())),
            }
        }
    }
    Err(EmbedError::ModelNotFound {
        model: model.to_owned(),
        searched,
    })
}

/// The snapshot directory of one cache entry, or why there is none.
fn snapshot_in(repo: &Path) -> Result<PathBuf, String> {
    let snapshots = repo.join("snapshots");
    if !snapshots.is_dir() {
        return Err(if repo.is_dir() {
            "no snapshots/ directory".into()
        } else {
            "no such directory".into()
        });
    }
    if let Ok(revision) = fs::read_to_string(repo.join("refs").join("main")) {
        let revision = revision.trim();
        let dir = snapshots.join(revision);
        if !revision.is_empty() && dir.is_dir() {
            return Ok(dir);
        }
        return Err(format!("refs/main names revision `{revision}`, which has no snapshot"));
    }
    let mut dirs: Vec<PathBuf> = fs::read_dir(&snapshots)
        .map_err(|e| format!("cannot list snapshots/: {e}"))?
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.is_dir())
        .collect();
    match dirs.len() {
        1 => Ok(dirs.remove(0)),
        0 => Err("no snapshot in snapshots/".into()),
        n => Err(format!("no refs/main and {n} snapshots: which one is meant is unknown")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<OsString> + 'a {
        move |name| {
            vars.iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| OsString::from(value))
        }
    }

    #[test]
    fn the_hub_cache_follows_huggingface_hub_precedence() {
        let home = Path::new("/home/u");
        assert_eq!(
            cache_roots_from(env_of(&[]), Some(home)),
            vec![PathBuf::from("/home/u/.cache/huggingface/hub")]
        );
        assert_eq!(
            cache_roots_from(env_of(&[("XDG_CACHE_HOME", "/x")]), Some(home)),
            vec![PathBuf::from("/x/huggingface/hub")]
        );
        assert_eq!(
            cache_roots_from(env_of(&[("HF_HOME", "/hf"), ("XDG_CACHE_HOME", "/x")]), Some(home)),
            vec![PathBuf::from("/hf/hub")]
        );
        assert_eq!(
            cache_roots_from(env_of(&[("HF_HUB_CACHE", "/c"), ("HF_HOME", "/hf")]), Some(home)),
            vec![PathBuf::from("/c")]
        );
        assert_eq!(
            cache_roots_from(env_of(&[("HF_HUB_CACHE", ""), ("HF_HOME", "/hf")]), Some(home)),
            vec![PathBuf::from("/hf/hub")],
            "an empty variable counts as unset"
        );
        assert_eq!(
            cache_roots_from(env_of(&[("SENTENCE_TRANSFORMERS_HOME", "/st")]), None),
            vec![PathBuf::from("/st")]
        );
        assert!(cache_roots_from(env_of(&[]), None).is_empty());
    }
}
