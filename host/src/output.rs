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

/// Whether a person can answer a question: stdin and stderr are terminals.
pub fn interactive() -> bool {
    std::io::stdin().is_terminal() && std::io::stderr().is_terminal()
}

/// Asks a yes/no question on stderr and reads the answer from stdin; anything but y/yes is no.
pub fn confirm(question: &str) -> anyhow::Result<bool> {
    eprint!("{question} [y/N] ");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    Ok(matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes"))
}

/// Bytes in binary units: `512 B`, `1.5 MiB`.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// A progress bar on a terminal; plain lines every few seconds otherwise (so logs stay readable).
pub struct Progress {
    bar: Option<ProgressBar>,
    quiet: bool,
    label: String,
    total: u64,
    done: u64,
    batches: BatchCount,
    started: std::time::Instant,
    last_line: std::time::Instant,
}

/// Batches seen of the batches expected; sources may cut smaller batches than asked, so the
/// expected number grows when the count passes it.
#[derive(Debug, Clone, Copy, PartialEq)]
struct BatchCount {
    seen: u64,
    expected: u64,
}

impl BatchCount {
    fn new(total: u64, done: u64, batch_size: u32) -> BatchCount {
        let per_batch = u64::from(batch_size.max(1));
        BatchCount {
            seen: done.div_ceil(per_batch),
            expected: total.div_ceil(per_batch).max(1),
        }
    }

    fn next(&mut self) {
        self.seen += 1;
        self.expected = self.expected.max(self.seen);
    }
}

impl std::fmt::Display for BatchCount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "batch {}/{}", self.seen, self.expected)
    }
}

impl Progress {
    /// Starts tracking `total` records of which `done` are already done, in batches of
    /// `batch_size`; `quiet` shows nothing.
    pub fn new(label: &str, total: u64, done: u64, batch_size: u32, quiet: bool) -> Progress {
        let batches = BatchCount::new(total, done, batch_size);
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
            let style = ProgressStyle::with_template(
                "{msg} [{bar:30}] {percent:>3}% {pos}/{len} records, {elapsed} elapsed, ETA {eta}, {prefix}, {per_sec}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
            bar.set_style(style);
            bar.set_message(label.to_owned());
            bar.set_prefix(batches.to_string());
            bar.set_position(done);
            bar
        });
        let now = std::time::Instant::now();
        Progress {
            bar,
            quiet,
            label: label.to_owned(),
            total,
            done,
            batches,
            started: now,
            last_line: now,
        }
    }

    /// Records that a batch of `n` records is done.
    pub fn batch(&mut self, n: u64) {
        self.done += n;
        self.batches.next();
        if let Some(bar) = &self.bar {
            bar.set_prefix(self.batches.to_string());
            bar.set_position(self.done);
        } else if !self.quiet && self.last_line.elapsed().as_secs() >= 5 {
            self.last_line = std::time::Instant::now();
            let rate = self.done as f64 / self.started.elapsed().as_secs_f64().max(1e-9);
            status(&format!(
                "{}: {}/{} records, {} ({rate:.0} records/s)",
                self.label, self.done, self.total, self.batches
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

#[cfg(test)]
mod tests {
    use super::BatchCount;

    #[test]
    fn batches_are_counted_against_the_expected_number() {
        let mut count = BatchCount::new(2500, 0, 1000);
        assert_eq!(count.to_string(), "batch 0/3");
        count.next();
        assert_eq!(count.to_string(), "batch 1/3");
        // A resumed collection starts after the batches already loaded.
        assert_eq!(BatchCount::new(2500, 2000, 1000).to_string(), "batch 2/3");
        // A source that cuts smaller batches than asked raises the expected number.
        let mut small = BatchCount::new(10, 0, 5);
        for _ in 0..3 {
            small.next();
        }
        assert_eq!(small.to_string(), "batch 3/3");
        assert_eq!(BatchCount::new(0, 0, 1000).to_string(), "batch 0/1");
    }
}
