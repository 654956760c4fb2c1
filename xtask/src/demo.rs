//! `cargo xtask demo`: builds everything, writes a sample store, migrates it to every other store
//! plugin built here, verifies each copy record by record, then compares their sizes and asks for a
//! recommendation.

use std::process::Command;

use anyhow::{Result, bail};

use crate::build::{build, plugin_crates};
use crate::{project_root, run};

/// The stores the demo prefers to start from, in order: most users start from ChromaDB.
const SOURCES: [&str; 2] = ["chroma", "parquet"];
/// Records in the sample collection.
const RECORDS: &str = "2000";

pub(crate) fn demo() -> Result<()> {
    let built = build(false)?;
    let work = project_root().join("target/demo");
    if work.exists() {
        std::fs::remove_dir_all(&work)?;
    }
    std::fs::create_dir_all(&work)?;
    let ragged = |args: &[&str]| -> Result<()> {
        println!("\n$ ragged {}", args.join(" "));
        run(Command::new(&built.host).args(args))
    };
    let available: Vec<String> = plugin_crates()?
        .into_iter()
        .filter(|p| p.supported)
        .map(|p| p.name)
        .collect();
    let Some(source_backend) = SOURCES.into_iter().find(|s| available.iter().any(|a| a == s)) else {
        bail!(
            "none of the demo's source plugins ({}) is built here",
            SOURCES.join(", ")
        );
    };
    let source = format!("{source_backend}:{}", work.join(source_backend).display());
    ragged(&["plugin", "list"])?;
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
    let mut targets: Vec<String> = available.into_iter().filter(|name| name != source_backend).collect();
    // With only the source plugin built, migrate into a second store of the same kind.
    if targets.is_empty() {
        targets.push(source_backend.to_owned());
    }
    for target_backend in &targets {
        let directory = if target_backend == source_backend {
            "copy".to_owned()
        } else {
            target_backend.clone()
        };
        let target = format!("{target_backend}:{}", work.join(directory).display());
        ragged(&["backend", "migrate", &source, &target])?;
        ragged(&["backend", "verify", &source, &target])?;
        ragged(&["backend", "compare-storage", &source, &target])?;
    }
    ragged(&["backend", "recommend", "--store", &source])?;
    println!("\ndemo finished: the stores are in {}", work.display());
    Ok(())
}
