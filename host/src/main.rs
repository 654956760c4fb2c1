//! The `ragged` binary: installs logging, parses the command line, runs it, reports the outcome.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    ragged::allocator::tune();
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
