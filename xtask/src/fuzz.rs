//! `cargo xtask fuzz`: every fuzz target of `tests/fuzz` (one per parser of foreign files) for a
//! bounded time, one after the other; fails on any crash, hang or oversized allocation.
//!
//! cargo-fuzz needs nightly flags, which the stable toolchain accepts with `RUSTC_BOOTSTRAP=1`.
//! The build and each target's growing corpus live under `~/.cache/ragged/` (outside the clone),
//! so warm runs are fast and later runs start from what earlier ones found; the committed seeds in
//! `tests/fuzz/corpus-seeds/<target>` are read, never written.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::{cargo, project_root, run};

/// The fuzz crate, relative to the project root.
const FUZZ_DIR: &str = "tests/fuzz";
/// Memory a target may use in all (ASan's own overhead included).
const RSS_LIMIT_MB: u32 = 2048;
/// The largest single allocation: far above what any input of a few KB legitimately needs, so a
/// size field that drives an allocation is caught.
const MALLOC_LIMIT_MB: u32 = 256;
/// Seconds one input may take before it counts as a hang.
const INPUT_TIMEOUT_SECS: u32 = 10;

/// What one target did.
struct Outcome {
    target: String,
    seconds: f64,
    /// libFuzzer's `number_of_executed_units`: the inputs tried.
    executions: Option<u64>,
    /// Where the input that failed was saved, when one did.
    failure: Option<String>,
}

/// Builds the targets, then runs each (or those named) for `seconds`.
pub(crate) fn fuzz(seconds: u32, only: &[String]) -> Result<()> {
    ensure_cargo_fuzz()?;
    let cache = cache_dir()?;
    run(&mut cargo_fuzz(&cache, "build"))?;
    let targets = list_targets()?;
    if let Some(unknown) = only.iter().find(|name| !targets.contains(name)) {
        bail!("no fuzz target '{unknown}' (targets: {})", targets.join(", "));
    }
    let mut outcomes = Vec::new();
    for target in targets.iter().filter(|t| only.is_empty() || only.contains(t)) {
        println!("fuzz: {target} for {seconds} s");
        outcomes.push(run_target(&cache, target, seconds)?);
    }
    println!("\n{:<18} {:>8} {:>14}  result", "target", "seconds", "inputs tried");
    for outcome in &outcomes {
        let executions = outcome.executions.map_or("?".to_owned(), |n| n.to_string());
        let result = outcome.failure.as_deref().unwrap_or("no failure");
        println!(
            "{:<18} {:>8.0} {:>14}  {result}",
            outcome.target, outcome.seconds, executions
        );
    }
    let failed: Vec<&str> = outcomes
        .iter()
        .filter(|o| o.failure.is_some())
        .map(|o| o.target.as_str())
        .collect();
    if !failed.is_empty() {
        bail!(
            "fuzz targets failed: {} (reproduce with `cargo fuzz run --fuzz-dir {FUZZ_DIR} TARGET ARTIFACT`)",
            failed.join(", ")
        );
    }
    Ok(())
}

/// `~/.cache/ragged`, where the fuzz build, corpora and failing inputs are kept.
fn cache_dir() -> Result<PathBuf> {
    let home = std::env::var_os("HOME").context("HOME is not set")?;
    Ok(PathBuf::from(home).join(".cache/ragged"))
}

fn ensure_cargo_fuzz() -> Result<()> {
    let installed = cargo()
        .args(["fuzz", "--version"])
        .output()
        .is_ok_and(|output| output.status.success());
    if !installed {
        println!("fuzz: installing cargo-fuzz");
        run(cargo().args(["install", "cargo-fuzz", "--locked"]))?;
    }
    Ok(())
}

/// `cargo fuzz SUBCOMMAND` on the fuzz crate, with the build kept under `cache`.
fn cargo_fuzz(cache: &Path, subcommand: &str) -> Command {
    let mut command = cargo();
    command
        .env("RUSTC_BOOTSTRAP", "1")
        .args(["fuzz", subcommand])
        .args(["--fuzz-dir", FUZZ_DIR])
        .arg("--target-dir")
        .arg(cache.join("fuzz-target"));
    command
}

fn list_targets() -> Result<Vec<String>> {
    let mut command = cargo();
    command
        .env("RUSTC_BOOTSTRAP", "1")
        .args(["fuzz", "list", "--fuzz-dir", FUZZ_DIR]);
    let output = command.output().with_context(|| format!("running {command:?}"))?;
    if !output.status.success() {
        bail!("{command:?} failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .map(str::to_owned)
        .collect())
}

fn run_target(cache: &Path, target: &str, seconds: u32) -> Result<Outcome> {
    let corpus = cache.join("fuzz-corpus").join(target);
    let artifacts = cache.join("fuzz-artifacts").join(target);
    let seeds = project_root().join(FUZZ_DIR).join("corpus-seeds").join(target);
    for dir in [&corpus, &artifacts] {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let log = cache.join("fuzz-artifacts").join(format!("{target}.log"));
    let log_file = std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
    let mut command = cargo_fuzz(cache, "run");
    command
        .arg(target)
        .arg(&corpus)
        .arg(&seeds)
        .arg("--")
        .arg(format!("-max_total_time={seconds}"))
        .arg(format!("-rss_limit_mb={RSS_LIMIT_MB}"))
        .arg(format!("-malloc_limit_mb={MALLOC_LIMIT_MB}"))
        .arg(format!("-timeout={INPUT_TIMEOUT_SECS}"))
        .arg(format!("-artifact_prefix={}/", artifacts.display()))
        .arg("-print_final_stats=1")
        .stdout(log_file.try_clone()?)
        .stderr(log_file);
    let started = Instant::now();
    let status = command.status().with_context(|| format!("running {command:?}"))?;
    let seconds = started.elapsed().as_secs_f64();
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let executions = text
        .lines()
        .find_map(|line| line.strip_prefix("stat::number_of_executed_units:"))
        .and_then(|n| n.trim().parse().ok());
    let failure = (!status.success()).then(|| {
        let tail: Vec<&str> = text.lines().rev().take(40).collect();
        eprintln!("fuzz: {target} failed; the end of {}:", log.display());
        for line in tail.iter().rev() {
            eprintln!("  {line}");
        }
        text.lines()
            .find_map(|line| line.split("Test unit written to ").nth(1))
            .map_or_else(|| format!("failed ({status}), see {}", log.display()), str::to_owned)
    });
    Ok(Outcome {
        target: target.to_owned(),
        seconds,
        executions,
        failure,
    })
}
