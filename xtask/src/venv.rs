//! The Python venvs of the interop tests: one per `plugins/<store>/tests/python/requirements.txt`,
//! at `${RAGGED_VENV_DIR:-~/.cache/ragged/venvs}/<store>`, rebuilt when the requirements change.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};

use crate::{project_root, run};

/// Where the venvs live.
pub(crate) fn venv_root() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("RAGGED_VENV_DIR") {
        return Ok(PathBuf::from(dir));
    }
    let home = std::env::var_os("HOME").context("HOME is not set; set RAGGED_VENV_DIR")?;
    Ok(PathBuf::from(home).join(".cache/ragged/venvs"))
}

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
    let venv = venv_root()?.join(name);
    let wanted = hex::encode(Sha256::digest(std::fs::read(requirements)?));
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
    std::fs::write(&stamp, wanted)?;
    Ok(())
}
