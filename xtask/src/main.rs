//! `cargo xtask`: the project's build, packaging, demo and test tasks, in Rust so they run the same
//! on every platform. Run `cargo xtask --help`.

#![forbid(unsafe_code)]
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod bench;
mod build;
mod demo;
mod fuzz;
mod protoc;
mod venv;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "ragged's development tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Build the host and every plugin, and install the plugins next to the host binary.
    Build {
        /// Build with the release profile.
        #[arg(long)]
        release: bool,
    },
    /// Build release packages (`.tar.zst`) of every plugin supported on this platform into dist/.
    Dist,
    /// Build release packages and install them into the user plugin dir (~/.ragged/plugins).
    Install,
    /// Create or update the Python venvs the interop tests use.
    Venv,
    /// Build everything, then run the demo: create a sample store, migrate it, verify it.
    Demo,
    /// Build everything, prepare the interop venvs, then run every test of the workspace.
    Test,
    /// Run every fuzz target of tests/fuzz for a bounded time (cargo-fuzz, installed if missing);
    /// fails on any crash, hang or oversized allocation.
    Fuzz {
        /// Seconds per target.
        #[arg(long, default_value_t = 60)]
        seconds: u32,
        /// Only these targets (default: all).
        targets: Vec<String>,
    },
    /// Release build, then measure migrations, verification, backups and start-up against the
    /// Python baseline and a plain copy; writes docs/benchmarks.md (Linux only).
    Bench {
        /// Also migrate 1M records (chroma → lance), about 5 GB of stores.
        #[arg(long)]
        large: bool,
        /// 10k records only, one run each: checks that the benchmark works.
        #[arg(long)]
        quick: bool,
        /// Measure these collection sizes instead of 10k and 100k (repeatable).
        #[arg(long = "records", value_name = "N")]
        sizes: Vec<u64>,
    },
    /// Runs COMMAND as the only child and writes its wall time, peak RSS and I/O as JSON to FILE
    /// (used by `bench`).
    #[command(hide = true)]
    Measure {
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        #[arg(last = true, required = true)]
        command: Vec<OsString>,
    },
}

fn main() -> Result<()> {
    match Cli::parse().task {
        Task::Build { release } => build::build(release).map(|_| ()),
        Task::Dist => build::dist().map(|_| ()),
        Task::Install => build::install(),
        Task::Venv => venv::prepare_all(),
        Task::Demo => demo::demo(),
        Task::Test => test(),
        Task::Fuzz { seconds, targets } => fuzz::fuzz(seconds, &targets),
        Task::Bench { large, quick, sizes } => bench::bench(&bench::Options { large, quick, sizes }),
        Task::Measure { out, command } => bench::measure(&out, &command),
    }
}

fn test() -> Result<()> {
    build::build(false)?;
    venv::prepare_all()?;
    run(cargo().args(["test", "--workspace", "--no-fail-fast"]))
}

/// The workspace root.
fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_owned)
        .unwrap_or_default()
}

/// The cargo that runs us, so toolchain overrides carry over.
fn cargo() -> Command {
    let mut command = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    command.current_dir(project_root());
    // lancedb's build scripts need protoc; a fresh machine gets the vendored one.
    protoc::configure(&mut command);
    command
}

/// Runs a command, failing with its command line when it fails.
fn run(command: &mut Command) -> Result<()> {
    let status = command.status().with_context(|| format!("running {command:?}"))?;
    if !status.success() {
        bail!("{command:?} failed with {status}");
    }
    Ok(())
}
