//! The `ragged` binary: installs logging, parses the command line, runs it, reports the outcome.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    limit_malloc_arenas();
    let cli = ragged::cli::Cli::parse();
    install_logging(cli.verbose);
    match ragged::cli::run(cli) {
        Ok(code) => code,
        Err(error) => {
            ragged::output::print_error(&error);
            ExitCode::from(ragged::cli::EXIT_ERROR)
        }
    }
}

/// glibc gives threads that allocate at once arenas of their own (up to eight per core) and keeps
/// what is freed in each for that arena: the reader, the writer and the plugins' runtime threads
/// of a migration held about 35 MB more at 100k records than with two arenas, at the same speed
/// (docs/benchmarks.md). `MALLOC_ARENA_MAX`, when set, still wins.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn limit_malloc_arenas() {
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only sets an allocator parameter, before any other thread exists.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 2);
        }
    }
}

/// `RAGGED_LOG` takes tracing's filter syntax; `-v`/`-vv` raise the default level.
fn install_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("RAGGED_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
