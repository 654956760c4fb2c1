//! `cargo xtask demo`: builds everything, creates a sample store, migrates it to every other
//! store plugin built here, and verifies each copy record by record.

use std::path::Path;
use std::process::Command;

use anyhow::{Result, bail};

use crate::build::{build, plugin_crates};
use crate::{project_root, run};

/// The store the demo starts from, and the sample it writes there.
const SOURCE: &str = "parquet";
const RECORDS: &str = "2000";

pub(crate) fn demo() -> Result<()> {
    let built = build(false)?;
    let work = project_root().join("target/demo");
    if work.exists() {
        std::fs::remove_dir_all(&work)?;
    }
    std::fs::create_dir_all(&work)?;
    let store = |backend: &str| format!("{backend}:{}", work.join(backend).display());
    let ragged = |args: &[&str]| -> Result<()> {
        println!("\n$ ragged {}", args.join(" "));
        run(Command::new(&built.host).args(args))
    };
    ragged(&["plugin", "list"])?;
    let source = store(SOURCE);
    ragged(&[
        "backend",
        "generate",
        &source,
        "--collection",
        "handbook",
        "--records",
        RECORDS,
        "--dim",
        "384",
    ])?;
    ragged(&["backend", "collections", &source])?;
    let targets: Vec<String> = plugin_crates()?
        .into_iter()
        .filter(|p| p.supported && p.name != SOURCE)
        .map(|p| p.name)
        .collect();
    // With only the source plugin built, migrate into a second store of the same kind.
    let targets = if targets.is_empty() {
        vec![SOURCE.to_owned()]
    } else {
        targets
    };
    for target in targets {
        let location = if target == SOURCE {
            work.join("copy")
        } else {
            work.join(&target)
        };
        let target = format!("{target}:{}", location.display());
        ragged(&["backend", "migrate", &source, &target])?;
        ragged(&["backend", "verify", &source, &target])?;
    }
    if !Path::new(&work).exists() {
        bail!("the demo left no output in {}", work.display());
    }
    println!("\ndemo finished: stores are in {}", work.display());
    Ok(())
}
