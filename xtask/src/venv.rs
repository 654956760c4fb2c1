//! The Python venvs of the interop tests: one per `plugins/<store>/tests/python/requirements.txt`,
//! at `${RAGGED_VENV_DIR:-~/.cache/ragged/venvs}/<store>`, rebuilt when the requirements change.
//! An optional `requirements-nodeps.txt` beside it is installed afterwards with `pip --no-deps`.

use std::process::Command;

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};

use crate::{project_root, run};

/// Creates or refreshes every venv.
pub(crate) fn prepare_all() -> Result<()> {
    let plugins = project_root().join("plugins");
    let mut stores: Vec<_> = std::fs::read_dir(&plugins)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    stores.sort();
    for store in stores {
        let requirements = store.join("tests/python/requirements.txt");
        if requirements.is_file() {
            let name = store
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            prepare(&name, &requirements)?;
        }
    }
    Ok(())
}

fn prepare(name: &str, requirements: &std::path::Path) -> Result<()> {
    let venv = ragged_interop::venv_root()
        .context("HOME is not set; set RAGGED_VENV_DIR")?
        .join(name);
    // Packages whose declared dependencies must not be installed (LEANN's pull a 6 GB CUDA torch)
    // go in `requirements-nodeps.txt` beside `requirements.txt`, installed after it with `--no-deps`.
    let nodeps = requirements.with_file_name("requirements-nodeps.txt");
    let mut hasher = Sha256::new();
    hasher.update(std::fs::read(requirements)?);
    if nodeps.is_file() {
        hasher.update(b"\0requirements-nodeps.txt\0");
        hasher.update(std::fs::read(&nodeps)?);
    }
    let wanted = hex::encode(hasher.finalize());
    let stamp = venv.join(".ragged-requirements.sha256");
    if std::fs::read_to_string(&stamp).ok().as_deref() == Some(wanted.as_str()) {
        return Ok(());
    }
    eprintln!("xtask: preparing the {name} venv at {}", venv.display());
    if venv.exists() {
        std::fs::remove_dir_all(&venv)?;
    }
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_owned());
    run(Command::new(&python).args(["-m", "venv"]).arg(&venv))?;
    let pip = venv.join("bin/pip");
    run(Command::new(&pip)
        .args(["install", "--quiet", "--disable-pip-version-check", "-r"])
        .arg(requirements))?;
    if nodeps.is_file() {
        run(Command::new(&pip)
            .args(["install", "--quiet", "--disable-pip-version-check", "--no-deps", "-r"])
            .arg(&nodeps))?;
    }
    std::fs::write(&stamp, wanted)?;
    Ok(())
}
