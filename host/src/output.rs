//! The one place that prints: human text and progress to stderr, `--json` documents to stdout.

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::io::{IsTerminal, Write};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

/// Prints a value as pretty JSON on stdout. A closed pipe (`ragged ... | head`) is not an error.
pub fn print_json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(value)?;
    write_stdout(&format!("{text}\n"))
}

/// Prints human-readable text on stdout.
pub fn print_text(text: &str) -> anyhow::Result<()> {
    write_stdout(text)
}

fn write_stdout(text: &str) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

/// A status line on stderr (`ragged: ...`).
pub fn status(message: &str) {
    eprintln!("{message}");
}

/// Prints an error with its chain of causes.
pub fn print_error(error: &anyhow::Error) {
    eprintln!("error: {error}");
    for cause in error.chain().skip(1) {
        eprintln!("  caused by: {cause}");
    }
}

/// A progress bar on a terminal; plain lines every few seconds otherwise (so logs stay readable).
pub struct Progress {
    bar: Option<ProgressBar>,
    quiet: bool,
    label: String,
    total: u64,
    done: u64,
    started: std::time::Instant,
    last_line: std::time::Instant,
}

impl Progress {
    /// Starts tracking `total` records; `quiet` shows nothing.
    pub fn new(label: &str, total: u64, quiet: bool) -> Progress {
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
            let style = ProgressStyle::with_template(
                "{msg} [{bar:30}] {percent:>3}% {pos}/{len} records, {elapsed} elapsed, ETA {eta}, {per_sec}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
            bar.set_style(style);
            bar.set_message(label.to_owned());
            bar
        });
        let now = std::time::Instant::now();
        Progress {
            bar,
            quiet,
            label: label.to_owned(),
            total,
            done: 0,
            started: now,
            last_line: now,
        }
    }

    /// Records that `n` more records are done.
    pub fn advance(&mut self, n: u64) {
        self.done += n;
        if let Some(bar) = &self.bar {
            bar.set_position(self.done);
        } else if !self.quiet && self.last_line.elapsed().as_secs() >= 5 {
            self.last_line = std::time::Instant::now();
            let rate = self.done as f64 / self.started.elapsed().as_secs_f64().max(1e-9);
            status(&format!(
                "{}: {}/{} records ({rate:.0} records/s)",
                self.label, self.done, self.total
            ));
        }
    }

    /// Removes the bar.
    pub fn finish(self) {
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
    }
}
