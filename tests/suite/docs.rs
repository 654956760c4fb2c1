//! The docs test: every command shown in README.md and the tutorials runs, in the order shown, in
//! a fresh directory and ragged home per document, and its output must match what the document
//! shows under it.
//!
//! A session in a document is a fenced block with `$ COMMAND` lines, each followed by the output
//! it printed (standard error and standard output together, as a terminal shows them). The files
//! a session uses (`ragged ingest new-notes.jsonl`) are in `docs/examples/`, copied into the
//! directory first. `ragged` is a copy of the host with the store plugins beside it, as `cargo
//! xtask build` leaves them, so `plugin list` shows what a user sees. Matching is exact but for what differs between runs and machines:
//! - figures that are measurements: decimals, and numbers followed by a unit of time, size or
//!   rate, and every number in the output of the commands in [`MEASURING`];
//! - absolute paths (a temporary ragged home), and runs of spaces (column widths);
//! - a line `...` stands for any number of lines, and a line ending in ` ...` for any line that
//!   starts with what comes before it (an abridged listing).

use std::path::Path;
use std::process::{Command, Output};

use ragged_tests::{TestEnv, artifacts, staged_plugin_dir, store_plugins, workspace_root};

/// The documents whose sessions are tested, relative to the workspace root.
const DOCUMENTS: &[&str] = &["README.md", "docs/choosing-backends.md", "docs/switching.md"];

/// Commands whose every number is a measurement of this machine or this run.
const MEASURING: &[&str] = &[
    "backend benchmark",
    "backend platform",
    "backend recommend",
    "backend storage-info",
    "backend compare-storage",
    "plugin list",
];

/// Units after which a number is a measurement.
const UNITS: &[&str] = &["s", "ms", "µs", "B", "KiB", "MiB", "GiB", "%", "records/s", "r/s"];

#[test]
fn every_command_in_the_docs_prints_what_the_docs_show() {
    // Every difference is reported, not only the first: later steps depend on earlier commands
    // having run, not on their output.
    let mut differences = Vec::new();
    for document in DOCUMENTS {
        let text = std::fs::read_to_string(workspace_root().join(document)).unwrap();
        let steps = sessions(&text);
        assert!(!steps.is_empty(), "{document} shows no `$ ragged` session");
        let env = TestEnv::new();
        install_like_a_user(&env);
        copy_examples(&workspace_root().join("docs/examples"), env.dir.path());
        for step in steps {
            let output = shell(&env, &step.command);
            let printed = String::from_utf8_lossy(&output.stdout).into_owned();
            assert!(
                output.status.success(),
                "{document}:{}: `{}` failed with {}:\n{printed}",
                step.line,
                step.command,
                output.status
            );
            let measuring = MEASURING.iter().any(|c| step.command.contains(c));
            let expected: Vec<String> = step.expected.iter().map(|l| normalise(l, measuring)).collect();
            let actual: Vec<String> = printed
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(|l| normalise(l, measuring))
                .collect();
            if !matches(&expected, &actual) {
                differences.push(format!(
                    "{document}:{}: the output of `{}` no longer matches the document.\n--- the document shows\n{}\n--- ragged printed\n{printed}",
                    step.line,
                    step.command,
                    step.expected.join("\n"),
                ));
            }
        }
    }
    assert!(differences.is_empty(), "{}", differences.join("\n"));
}

/// One `$ COMMAND` line of a document and the non-blank lines shown under it.
struct Step {
    line: usize,
    command: String,
    expected: Vec<String>,
}

fn sessions(text: &str) -> Vec<Step> {
    let mut steps: Vec<Step> = Vec::new();
    let mut in_block = false;
    let mut in_step = false;
    for (number, line) in text.lines().enumerate() {
        if line.starts_with("```") {
            in_block = !in_block;
            in_step = false;
        } else if let Some(command) = line.strip_prefix("$ ").filter(|_| in_block) {
            steps.push(Step {
                line: number + 1,
                command: command.to_owned(),
                expected: Vec::new(),
            });
            in_step = true;
        } else if in_step && !line.trim().is_empty() {
            steps.last_mut().unwrap().expected.push(line.to_owned());
        }
    }
    steps
}

/// `<env>/bin/ragged` with the store plugins in `<env>/bin/plugins/`.
fn install_like_a_user(env: &TestEnv) {
    let plugins = env.path("bin/plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    let host = env.path("bin/ragged");
    std::fs::hard_link(&artifacts().host, &host)
        .or_else(|_| std::fs::copy(&artifacts().host, &host).map(drop))
        .unwrap();
    for plugin in store_plugins() {
        std::os::unix::fs::symlink(
            staged_plugin_dir().join("installed").join(&plugin),
            plugins.join(&plugin),
        )
        .unwrap();
    }
}

/// Runs a command line of a document in `env`, with standard error merged into standard output as
/// a terminal shows them.
fn shell(env: &TestEnv, line: &str) -> Output {
    let path = std::env::join_paths(
        std::iter::once(env.path("bin")).chain(std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())),
    )
    .unwrap();
    std::fs::create_dir_all(env.temp_dir()).unwrap();
    Command::new("sh")
        .arg("-c")
        .arg(format!("exec 2>&1; {line}"))
        .env("PATH", path)
        .env("RAGGED_HOME", env.path("home"))
        .env("TMPDIR", env.temp_dir())
        .env_remove("RAGGED_PLUGIN_PATH")
        .env_remove("RAGGED_LOG")
        .current_dir(env.dir.path())
        .output()
        .unwrap()
}

fn copy_examples(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, to.join(path.file_name().unwrap())).unwrap();
    }
}

/// `line` with its run-dependent parts masked (see the module docs).
fn normalise(line: &str, measuring: bool) -> String {
    let words: Vec<&str> = line.split_whitespace().collect();
    let mut out = Vec::with_capacity(words.len());
    for (i, word) in words.iter().enumerate() {
        let next_is_unit = words.get(i + 1).is_some_and(|next| {
            let next = next.trim_end_matches([',', ';', ')']);
            UNITS.contains(&next)
        });
        out.push(normalise_word(word, measuring || next_is_unit));
    }
    out.join(" ")
}

fn normalise_word(word: &str, mask_all_numbers: bool) -> String {
    let chars: Vec<char> = word.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let starts_path = c == '/' && (i == 0 || matches!(chars[i - 1], '(' | ':' | '='));
        if starts_path {
            out.push_str("<path>");
            while i < chars.len() && !matches!(chars[i], ')' | ',' | ';') {
                i += 1;
            }
            continue;
        }
        if c.is_ascii_digit() {
            let start = i;
            while i < chars.len() && chars[i].is_ascii_digit() {
                i += 1;
            }
            let mut decimal = false;
            if i + 1 < chars.len() && chars[i] == '.' && chars[i + 1].is_ascii_digit() {
                decimal = true;
                i += 1;
                while i < chars.len() && chars[i].is_ascii_digit() {
                    i += 1;
                }
            }
            let rest: String = chars[i..].iter().collect();
            let rest = rest.trim_end_matches([',', ';', ')']);
            // A letter before it, or a letter and a dash, makes it part of a name (`x86_64`,
            // `top-10`, `doc-00000042`).
            let in_name = match start {
                0 => false,
                1 => chars[0].is_alphabetic() || chars[0] == '_',
                _ => {
                    let before = chars[start - 1];
                    before.is_alphabetic() || before == '_' || (before == '-' && chars[start - 2].is_alphabetic())
                }
            };
            if !in_name && (mask_all_numbers || decimal || UNITS.contains(&rest)) {
                out.push('#');
            } else {
                out.extend(&chars[start..i]);
            }
            continue;
        }
        out.push(c);
        i += 1;
    }
    out
}

/// Whether `actual` matches `expected`, where an expected `...` line stands for any number of
/// lines and a line ending in ` ...` for any line with that prefix.
fn matches(expected: &[String], actual: &[String]) -> bool {
    match expected.split_first() {
        None => actual.is_empty(),
        Some((first, rest)) if first == "..." => (0..=actual.len()).any(|skip| matches(rest, &actual[skip..])),
        Some((first, rest)) => actual.split_first().is_some_and(|(line, actual_rest)| {
            let same = match first.strip_suffix(" ...") {
                Some(prefix) => line.starts_with(prefix),
                None => line == first,
            };
            same && matches(rest, actual_rest)
        }),
    }
}

#[test]
fn the_matcher_masks_measurements_and_keeps_facts() {
    assert_eq!(
        normalise("handbook: 2000 records (2000 loaded in 0.75s, 2671 records/s)", false),
        "handbook: 2000 records (2000 loaded in #s, # records/s)"
    );
    assert_eq!(
        normalise("chroma:./db   3.9 MiB   doc-00000042", false),
        "chroma:./db # MiB doc-00000042"
    );
    assert_eq!(normalise("lance  8963  49.2 MiB", true), "lance # # MiB");
    assert_eq!(
        normalise("(in /tmp/x/home/config.toml) x86_64 top-10", true),
        "(in <path>) x86_64 top-10"
    );
    let lines = |text: &str| text.lines().map(str::to_owned).collect::<Vec<_>>();
    assert!(matches(&lines("a\n...\nd"), &lines("a\nb\nc\nd")));
    assert!(matches(&lines("a\n...\nd"), &lines("a\nd")));
    assert!(matches(
        &lines("chroma 0.1.0 ..."),
        &lines("chroma 0.1.0 read,write /x/y")
    ));
    assert!(!matches(&lines("a\nb"), &lines("a\nc")));
    assert!(!matches(&lines("a"), &lines("a\nb")));
    assert!(!matches(&lines("a\n...\nd"), &lines("a\nb")));
}
