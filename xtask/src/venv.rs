//! The Python venvs of the interop tests, at `${RAGGED_VENV_DIR:-~/.cache/ragged/venvs}/<name>`,
//! rebuilt when their requirements change. Each comes from one directory holding a
//! `requirements.txt`:
//! - `plugins/<store>/tests/python/` makes the venv `<store>`;
//! - `plugins/<store>/tests/python-<variant>/` makes `<store>-<variant>`;
//! - `embed/tests/python/` makes `embed`;
//! - `xtask/bench/python/` makes `bench` (the Python baseline of `cargo xtask bench`).
//!
//! Beside `requirements.txt`, an optional `requirements-nodeps.txt` is installed afterwards with
//! `pip --no-deps` (for packages whose declared dependencies pull a 6 GB CUDA torch), and an
//! optional `system-packages.txt` names Debian packages (Debian's CPU-only `python3-torch`, which
//! PyPI does not offer) that the venv sees through `/usr/bin/python3 --system-site-packages`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};

use crate::{project_root, run};

/// The interpreter that sees Debian's Python packages.
const SYSTEM_PYTHON: &str = "/usr/bin/python3";

/// Creates or refreshes every venv.
pub(crate) fn prepare_all() -> Result<()> {
    for (name, dir) in sources()? {
        prepare(&name, &dir)?;
    }
    Ok(())
}

/// Creates or refreshes the venv `name` and returns its Python interpreter.
pub(crate) fn prepare_one(name: &str) -> Result<PathBuf> {
    let Some((_, dir)) = sources()?.into_iter().find(|(n, _)| n == name) else {
        bail!("no venv named {name}");
    };
    prepare(name, &dir)?;
    ragged_interop::venv_root()
        .map(|root| root.join(name).join("bin/python"))
        .filter(|python| python.is_file())
        .with_context(|| format!("the {name} venv has no bin/python"))
}

/// Every venv's name and the directory its requirements are in, in a stable order.
fn sources() -> Result<Vec<(String, PathBuf)>> {
    let root = project_root();
    let mut found = vec![
        ("embed".to_owned(), root.join("embed/tests/python")),
        ("bench".to_owned(), root.join("xtask/bench/python")),
    ];
    for store in std::fs::read_dir(root.join("plugins"))? {
        let store = store?.path();
        let Some(store_name) = store.file_name().map(|n| n.to_string_lossy().into_owned()) else {
            continue;
        };
        let Ok(entries) = std::fs::read_dir(store.join("tests")) else {
            continue;
        };
        for entry in entries {
            let dir = entry?.path();
            let dir_name = dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let name = match dir_name.strip_prefix("python") {
                Some("") => store_name.clone(),
                Some(variant) if variant.starts_with('-') => format!("{store_name}{variant}"),
                _ => continue,
            };
            found.push((name, dir));
        }
    }
    found.retain(|(_, dir)| dir.join("requirements.txt").is_file());
    found.sort();
    Ok(found)
}

fn prepare(name: &str, dir: &Path) -> Result<()> {
    let venv = ragged_interop::venv_root()
        .context("HOME is not set; set RAGGED_VENV_DIR")?
        .join(name);
    let requirements = dir.join("requirements.txt");
    let nodeps = dir.join("requirements-nodeps.txt");
    let system = dir.join("system-packages.txt");
    let mut hasher = Sha256::new();
    for file in [&requirements, &nodeps, &system] {
        if file.is_file() {
            hasher.update(file.file_name().map(|n| n.as_encoded_bytes()).unwrap_or_default());
            hasher.update(b"\0");
            hasher.update(std::fs::read(file)?);
        }
    }
    let wanted = hex::encode(hasher.finalize());
    let stamp = venv.join(".ragged-requirements.sha256");
    if std::fs::read_to_string(&stamp).ok().as_deref() == Some(wanted.as_str()) {
        return Ok(());
    }

    let mut create = if system.is_file() {
        let missing = missing_system_packages(&system)?;
        if !missing.is_empty() {
            let reason = format!(
                "the {name} venv needs Debian's {} (`apt-get install {}`), listed in {}",
                missing.join(", "),
                missing.join(" "),
                system.display()
            );
            if std::env::var("RAGGED_REQUIRE_INTEROP").is_ok_and(|v| v == "1") {
                bail!("{reason}");
            }
            eprintln!("xtask: skipping the {name} venv: {reason}; its interop tests will be skipped");
            return Ok(());
        }
        let mut command = Command::new(SYSTEM_PYTHON);
        command.args(["-m", "venv", "--system-site-packages"]);
        command
    } else {
        let mut command = Command::new(std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_owned()));
        command.args(["-m", "venv"]);
        command
    };
    eprintln!("xtask: preparing the {name} venv at {}", venv.display());
    if venv.exists() {
        std::fs::remove_dir_all(&venv)?;
    }
    run(create.arg(&venv))?;
    let pip = venv.join("bin/pip");
    run(Command::new(&pip)
        .args(["install", "--quiet", "--disable-pip-version-check", "-r"])
        .arg(&requirements))?;
    if nodeps.is_file() {
        run(Command::new(&pip)
            .args(["install", "--quiet", "--disable-pip-version-check", "--no-deps", "-r"])
            .arg(&nodeps))?;
    }
    std::fs::write(&stamp, wanted)?;
    Ok(())
}

/// The Debian packages named in `list` (one per line, `#` comments) that are not installed.
fn missing_system_packages(list: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(list).with_context(|| format!("reading {}", list.display()))?;
    let mut missing = Vec::new();
    for package in text
        .lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
    {
        let installed = Path::new(SYSTEM_PYTHON).is_file()
            && Command::new("dpkg-query")
                .args(["-W", "-f", "${Status}", package])
                .output()
                .is_ok_and(|out| out.status.success() && out.stdout.ends_with(b"install ok installed"));
        if !installed {
            missing.push(package.to_owned());
        }
    }
    Ok(missing)
}
