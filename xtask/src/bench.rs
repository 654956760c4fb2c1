//! `cargo xtask bench`: release figures of ragged next to the Python baseline and a plain copy of
//! the source store, written into docs/benchmarks.md between its generated-section markers (the
//! findings around them are kept).
//!
//! Every measured command runs as the only child of `xtask measure`, which reports the child's
//! wall time, its peak RSS (`ru_maxrss` of `RUSAGE_CHILDREN`, which then covers that one child
//! and its own children) and the bytes it read and wrote through system calls (`rchar`/`wchar` of
//! `/proc/PID/io`, read while the child is a zombie). Before each run the source store is read
//! once, so every figure is for a warm page cache.

use std::ffi::{OsStr, OsString};
use std::fmt::Write as _;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail, ensure};
use serde::{Deserialize, Serialize};

use crate::{build, project_root, venv};

/// The embedding length of every benchmark collection.
const DIMENSION: u32 = 384;
/// The collection every benchmark store holds.
const COLLECTION: &str = "bench";
/// The collection sizes of a default run; `--large` adds [`LARGE`] for chroma → lance.
const SIZES: [u64; 2] = [10_000, 100_000];
const LARGE: u64 = 1_000_000;
/// The size the targets are stated for.
const TARGET_SIZE: u64 = 100_000;
/// The store pairs measured at every size.
const PAIRS: [(&str, &str); 4] = [
    ("chroma", "lance"),
    ("chroma", "leann"),
    ("lance", "chroma"),
    ("parquet", "lance"),
];
/// The seed of every sampled verification, so ragged and Python check the same number of records.
const VERIFY_SEED: &str = "7";
const SAMPLE_RATE: &str = "0.1";
/// The markers around the part of docs/benchmarks.md this task rewrites.
const BEGIN: &str = "<!-- cargo xtask bench: generated from here -->";
const END: &str = "<!-- cargo xtask bench: generated up to here -->";

/// What one measured command used.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub(crate) struct Usage {
    seconds: f64,
    peak_rss_bytes: u64,
    /// Bytes read through read-like system calls (page-cache hits included, memory maps not).
    read_bytes: u64,
    /// Bytes written through write-like system calls.
    written_bytes: u64,
}

/// Why the benchmark does not run elsewhere.
const LINUX_ONLY: &str = "cargo xtask bench measures through /proc and runs on Linux only";

#[cfg(not(target_os = "linux"))]
pub(crate) fn measure(_: &Path, _: &[OsString]) -> Result<()> {
    bail!(LINUX_ONLY)
}

/// `xtask measure --out FILE -- COMMAND...`: runs COMMAND as this process's only child and writes
/// its [`Usage`] as JSON to FILE. Fails when COMMAND fails.
#[cfg(target_os = "linux")]
pub(crate) fn measure(out: &Path, command: &[OsString]) -> Result<()> {
    use nix::sys::resource::{UsageWho, getrusage};
    use nix::sys::wait::{Id, WaitPidFlag, waitid};
    use nix::unistd::Pid;

    let (program, args) = command.split_first().context("nothing to measure")?;
    let started = Instant::now();
    let mut child = Command::new(program)
        .args(args)
        .spawn()
        .with_context(|| format!("running {}", program.to_string_lossy()))?;
    let pid = i32::try_from(child.id()).context("pid out of range")?;
    // Waited for without reaping, so /proc still has the child's I/O counters.
    waitid(Id::Pid(Pid::from_raw(pid)), WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT)?;
    let seconds = started.elapsed().as_secs_f64();
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).context("reading the child's /proc/PID/io")?;
    let status = child.wait()?;
    if !status.success() {
        bail!("{} failed with {status}", program.to_string_lossy());
    }
    let counter = |name: &str| -> u64 {
        io.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
            .and_then(|value| value.trim().parse().ok())
            .unwrap_or(0)
    };
    let usage = Usage {
        seconds,
        // Linux reports ru_maxrss in KiB.
        peak_rss_bytes: u64::try_from(getrusage(UsageWho::RUSAGE_CHILDREN)?.max_rss()).unwrap_or(0) * 1024,
        read_bytes: counter("rchar"),
        written_bytes: counter("wchar"),
    };
    std::fs::write(out, serde_json::to_vec(&usage)?)?;
    Ok(())
}

/// What to measure.
pub(crate) struct Options {
    /// Add 1M records for chroma → lance.
    pub(crate) large: bool,
    /// 10k records only, one run each: checks that the benchmark works.
    pub(crate) quick: bool,
    /// The collection sizes; empty means [`SIZES`].
    pub(crate) sizes: Vec<u64>,
}

/// One row of a result table.
struct Row {
    records: u64,
    what: String,
    usage: Usage,
    /// The exact command line, paths relative to the project root.
    command: String,
}

/// The tools of a benchmark run.
struct Bench {
    ragged: PathBuf,
    python: PathBuf,
    script: PathBuf,
    /// Where the stores live, relative to the project root.
    work: PathBuf,
    runs: usize,
    rows: Vec<Row>,
}

pub(crate) fn bench(options: &Options) -> Result<()> {
    if !cfg!(target_os = "linux") {
        bail!(LINUX_ONLY);
    }
    let root = project_root();
    let built = build::build(true)?;
    let python = venv::prepare_one("bench")?;
    let work = PathBuf::from("target/bench");
    std::fs::create_dir_all(root.join(&work))?;
    let mut bench = Bench {
        ragged: built.host.strip_prefix(&root).unwrap_or(&built.host).to_owned(),
        python,
        script: PathBuf::from("xtask/bench/python/baseline.py"),
        work,
        runs: if options.quick { 1 } else { 3 },
        rows: Vec::new(),
    };
    let started = jiff::Timestamp::now();
    let load_before = load_average()?;
    let sizes = match (options.quick, options.sizes.is_empty()) {
        (true, _) => vec![SIZES[0]],
        (false, true) => SIZES.to_vec(),
        (false, false) => options.sizes.clone(),
    };
    for &records in &sizes {
        bench.size(records)?;
    }
    if options.large {
        bench.large()?;
    }
    bench.startup()?;
    let load = [load_before, load_average()?];
    let report = bench.report(started, load, options)?;
    write_report(&root.join("docs/benchmarks.md"), &report)?;
    println!("{report}");
    Ok(())
}

impl Bench {
    /// Everything measured at one size.
    fn size(&mut self, records: u64) -> Result<()> {
        let runs = if records > TARGET_SIZE { 1 } else { self.runs };
        let dir = self.work.join(records.to_string());
        for backend in ["chroma", "lance", "parquet"] {
            self.generate(&dir, backend, records)?;
        }
        for (source, target) in PAIRS {
            // A LEANN index is one graph build over every record: once is enough.
            let runs = if target == "leann" { 1 } else { runs };
            self.migrate(&dir, records, source, target, runs)?;
        }
        self.baseline_and_copy(&dir, records, runs)?;
        self.verification(&dir, records, runs)?;
        self.backup_and_rollback(&dir, records, runs)
    }

    /// `--large`: chroma → lance, its baseline and its copy at 1M records, once each.
    fn large(&mut self) -> Result<()> {
        let dir = self.work.join(LARGE.to_string());
        self.generate(&dir, "chroma", LARGE)?;
        self.migrate(&dir, LARGE, "chroma", "lance", 1)?;
        self.baseline_and_copy(&dir, LARGE, 1)
    }

    /// Writes the source store `backend` of `records` records under `dir`, unless a complete one
    /// from the same command is there. A chroma store is then opened once by chromadb, which
    /// applies the log ragged wrote and builds its HNSW files, as in a store chromadb wrote itself.
    fn generate(&self, dir: &Path, backend: &str, records: u64) -> Result<()> {
        let store = dir.join(backend);
        let args = vec![
            "backend".into(),
            "generate".into(),
            store_spec(backend, &store),
            "--collection".into(),
            COLLECTION.into(),
            "--records".into(),
            records.to_string(),
            "--dim".into(),
            DIMENSION.to_string(),
        ];
        let stamp = dir.join(format!("{backend}.generated"));
        let mut command = format!("{} {}", self.ragged.display(), args.join(" "));
        if backend == "chroma" {
            command.push_str(" && baseline.py backfill && chroma vacuum");
        }
        let root = project_root();
        if std::fs::read_to_string(root.join(&stamp)).is_ok_and(|s| s == command) {
            return Ok(());
        }
        if root.join(&store).exists() {
            std::fs::remove_dir_all(root.join(&store))?;
        }
        std::fs::create_dir_all(root.join(dir))?;
        eprintln!("bench: {command}");
        crate::run(
            Command::new(root.join(&self.ragged))
                .args(&args)
                .env("RAGGED_HOME", root.join(&self.work).join("home"))
                .current_dir(&root),
        )?;
        if backend == "chroma" {
            crate::run(
                Command::new(&self.python)
                    .arg(&self.script)
                    .arg("backfill")
                    .arg(&store)
                    .current_dir(&root),
            )?;
            // chromadb deletes the log rows it applied, but SQLite keeps their pages as free
            // pages in the file; `chroma vacuum` is chroma's own command to give them back.
            crate::run(
                Command::new(self.python.with_file_name("chroma"))
                    .args(["vacuum", "--force", "--path"])
                    .arg(&store)
                    .current_dir(&root),
            )?;
        }
        std::fs::write(root.join(&stamp), command)?;
        Ok(())
    }

    /// `ragged backend migrate` from `source` to `target`, without backups or verification
    /// (measured on their own below), so it does what the baseline and the copy do.
    fn migrate(&mut self, dir: &Path, records: u64, source: &str, target: &str, runs: usize) -> Result<()> {
        let output = dir.join(format!("{source}-to-{target}"));
        let mut args: Vec<String> = vec![
            "backend".into(),
            "migrate".into(),
            store_spec(source, &dir.join(source)),
            store_spec(target, &output),
            "--yes".into(),
            "--no-backup".into(),
            "--no-verify".into(),
            "--quiet".into(),
        ];
        args.extend(target_options(target));
        let usage = self.median(runs, &dir.join(source), Some(&output), &self.ragged.clone(), &args)?;
        self.push(
            records,
            format!("ragged {source} → {target}"),
            usage,
            &self.ragged.clone(),
            &args,
        );
        Ok(())
    }

    /// The Python baseline (chromadb → lancedb) and the copy ceiling (`cp -r` and `sync`).
    fn baseline_and_copy(&mut self, dir: &Path, records: u64, runs: usize) -> Result<()> {
        let source = dir.join("chroma");
        let output = dir.join("python-chroma-to-lance");
        let args = [
            self.script.display().to_string(),
            "migrate".into(),
            source.display().to_string(),
            output.display().to_string(),
            COLLECTION.into(),
        ];
        let python = self.python.clone();
        let usage = self.median(runs, &source, Some(&output), &python, &args)?;
        self.push(records, "Python baseline chroma → lance".into(), usage, &python, &args);

        let copy = dir.join("chroma-copy");
        let script = format!("cp -r {} {} && sync", source.display(), copy.display());
        let args = ["-c".to_owned(), script];
        let sh = PathBuf::from("sh");
        let usage = self.median(runs, &source, Some(&copy), &sh, &args)?;
        self.push(records, "copy ceiling: cp -r chroma, sync".into(), usage, &sh, &args);
        Ok(())
    }

    /// Verification of the chroma → lance copy: ragged with a 10% sample and in full, and the
    /// same sampled check in Python.
    fn verification(&mut self, dir: &Path, records: u64, runs: usize) -> Result<()> {
        let (source, target) = (dir.join("chroma"), dir.join("chroma-to-lance"));
        self.migrate_once(&source, &target)?;
        let specs = [store_spec("chroma", &source), store_spec("lance", &target)];
        let ragged = self.ragged.clone();
        let common = ["--queries", "0", "--seed", VERIFY_SEED];
        let modes: [(&str, &[&str]); 2] = [
            ("ragged verify, 10% sample", &["--sample-rate", SAMPLE_RATE]),
            ("ragged verify, full digest", &["--full"]),
        ];
        for (what, mode) in modes {
            let mut args = vec!["backend".to_owned(), "verify".into()];
            args.extend(specs.iter().cloned());
            args.extend(mode.iter().chain(&common).map(|s| (*s).to_owned()));
            let usage = self.median(runs, &source, None, &ragged, &args)?;
            self.push(records, what.into(), usage, &ragged, &args);
        }
        let args = [
            self.script.display().to_string(),
            "verify".into(),
            source.display().to_string(),
            target.display().to_string(),
            COLLECTION.into(),
            SAMPLE_RATE.into(),
            VERIFY_SEED.into(),
        ];
        let python = self.python.clone();
        let usage = self.median(runs, &source, None, &python, &args)?;
        self.push(records, "Python verify, 10% sample".into(), usage, &python, &args);
        Ok(())
    }

    /// The chroma → lance migration with its backups (the extra time over the migration without
    /// them is the backup's), then the rollback of that run.
    fn backup_and_rollback(&mut self, dir: &Path, records: u64, runs: usize) -> Result<()> {
        let (source, target) = (dir.join("chroma"), dir.join("chroma-to-lance-with-backups"));
        let home = dir.join("home");
        let mut args = vec![
            "backend".to_owned(),
            "migrate".into(),
            store_spec("chroma", &source),
            store_spec("lance", &target),
            "--yes".into(),
            "--no-verify".into(),
            "--quiet".into(),
        ];
        args.extend(target_options("lance"));
        let ragged = self.ragged.clone();
        let mut migrations = Vec::new();
        let mut rollbacks = Vec::new();
        let mut rollback_args = Vec::new();
        for _ in 0..runs {
            let root = project_root();
            for path in [&target, &home] {
                if root.join(path).exists() {
                    std::fs::remove_dir_all(root.join(path))?;
                }
            }
            flush_writes()?;
            warm(&root.join(&source))?;
            migrations.push(self.measure_in(&home, &ragged, &args)?);
            let run = only_run(&root.join(&home))?;
            rollback_args = vec![
                "backend".to_owned(),
                "rollback".into(),
                "--run".into(),
                run,
                "--confirm".into(),
            ];
            rollbacks.push(self.measure_in(&home, &ragged, &rollback_args)?);
        }
        let with_backup = median_usage(migrations);
        let shown = format!("RAGGED_HOME={} {}", home.display(), command_line(&ragged, &args));
        self.rows.push(Row {
            records,
            what: "ragged chroma → lance with backups".into(),
            usage: with_backup,
            command: shown,
        });
        let shown = format!(
            "RAGGED_HOME={} {}",
            home.display(),
            command_line(&ragged, &rollback_args)
        );
        self.rows.push(Row {
            records,
            what: "ragged rollback of that run".into(),
            usage: median_usage(rollbacks),
            command: shown,
        });
        Ok(())
    }

    /// `ragged plugin list` and `ragged backend platform`, 10 runs each (the plugin registry
    /// cache is warm after the first).
    fn startup(&mut self) -> Result<()> {
        let ragged = self.ragged.clone();
        for (what, args) in [
            ("ragged plugin list", vec!["plugin".to_owned(), "list".into()]),
            ("ragged backend platform", vec!["backend".to_owned(), "platform".into()]),
        ] {
            self.measure_in(&self.work.join("home"), &ragged, &args)?;
            let usages = (0..10)
                .map(|_| self.measure_in(&self.work.join("home"), &ragged, &args))
                .collect::<Result<Vec<_>>>()?;
            self.push(0, what.into(), median_usage(usages), &ragged, &args);
        }
        Ok(())
    }

    /// A chroma → lance copy for verification, unless the last measured migration left one.
    fn migrate_once(&self, source: &Path, target: &Path) -> Result<()> {
        if project_root().join(target).exists() {
            return Ok(());
        }
        crate::run(
            Command::new(project_root().join(&self.ragged))
                .args(["backend", "migrate", "--yes", "--quiet", "--no-backup", "--no-verify"])
                .arg(store_spec("chroma", source))
                .arg(store_spec("lance", target))
                .args(target_options("lance"))
                .env("RAGGED_HOME", project_root().join(&self.work).join("home"))
                .current_dir(project_root()),
        )
    }

    /// The median of `runs` runs, each after removing `output`, flushing what earlier runs wrote
    /// (so that no run shares the disk and a core with the writeback of another's output) and
    /// warming `source`.
    fn median(
        &self,
        runs: usize,
        source: &Path,
        output: Option<&Path>,
        program: &Path,
        args: &[String],
    ) -> Result<Usage> {
        let root = project_root();
        let mut usages = Vec::new();
        for _ in 0..runs {
            if let Some(output) = output
                && root.join(output).exists()
            {
                std::fs::remove_dir_all(root.join(output))?;
            }
            flush_writes()?;
            warm(&root.join(source))?;
            usages.push(self.measure_in(&self.work.join("home"), program, args)?);
        }
        Ok(median_usage(usages))
    }

    /// Runs `program args` under `xtask measure` from the project root, with `RAGGED_HOME=home`.
    fn measure_in(&self, home: &Path, program: &Path, args: &[String]) -> Result<Usage> {
        let root = project_root();
        eprintln!("bench: {}", command_line(program, args));
        let out = root.join(&self.work).join("usage.json");
        let xtask = std::env::current_exe()?;
        let output = Command::new(xtask)
            .args([
                OsStr::new("measure"),
                OsStr::new("--out"),
                out.as_os_str(),
                OsStr::new("--"),
            ])
            .arg(program)
            .args(args)
            .env("RAGGED_HOME", root.join(home))
            .current_dir(&root)
            .output()?;
        if !output.status.success() {
            bail!(
                "{} failed:\n{}{}",
                command_line(program, args),
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(serde_json::from_slice(&std::fs::read(&out)?)?)
    }

    fn push(&mut self, records: u64, what: String, usage: Usage, program: &Path, args: &[String]) {
        self.rows.push(Row {
            records,
            what,
            usage,
            command: command_line(program, args),
        });
    }

    fn find(&self, records: u64, what: &str) -> Option<&Usage> {
        self.rows
            .iter()
            .find(|r| r.records == records && r.what == what)
            .map(|r| &r.usage)
    }

    /// The generated section of docs/benchmarks.md.
    fn report(&self, started: jiff::Timestamp, load: [String; 2], options: &Options) -> Result<String> {
        let mut out = String::new();
        let mut flags = String::new();
        for (set, flag) in [(options.quick, " --quick"), (options.large, " --large")] {
            if set {
                flags.push_str(flag);
            }
        }
        for size in &options.sizes {
            flags.push_str(&format!(" --records {size}"));
        }
        writeln!(out, "## Latest run\n")?;
        writeln!(
            out,
            "`cargo xtask bench{flags}`, started {} UTC, release build. Each figure is the median of {} \
             runs (one at 1M records and for LEANN), each after a `sync` and reading the source \
             store once (warm page cache). Read and written are bytes through system calls \
             (`rchar`/`wchar`), page-cache hits included, memory maps not.\n",
            started.strftime("%Y-%m-%d %H:%M"),
            self.runs
        )?;
        writeln!(out, "Machine: {}\n", machine()?)?;
        writeln!(
            out,
            "Load average (1, 5, 15 min) before the run: {}; after it: {}. Anything above zero is \
             other processes sharing the cores.\n",
            load[0], load[1]
        )?;
        writeln!(out, "### Migrations and checks\n")?;
        writeln!(
            out,
            "| records | what | wall s | records/s | peak RSS MiB | read MiB | written MiB |"
        )?;
        writeln!(out, "|---:|---|---:|---:|---:|---:|---:|")?;
        for row in self.rows.iter().filter(|r| r.records > 0) {
            let u = &row.usage;
            writeln!(
                out,
                "| {} | {} | {:.2} | {:.0} | {:.0} | {:.0} | {:.0} |",
                row.records,
                row.what,
                u.seconds,
                row.records as f64 / u.seconds,
                mib(u.peak_rss_bytes),
                mib(u.read_bytes),
                mib(u.written_bytes)
            )?;
        }
        writeln!(out, "\n### Start-up\n")?;
        writeln!(out, "| what | wall ms | peak RSS MiB |")?;
        writeln!(out, "|---|---:|---:|")?;
        for row in self.rows.iter().filter(|r| r.records == 0) {
            writeln!(
                out,
                "| {} | {:.1} | {:.0} |",
                row.what,
                row.usage.seconds * 1000.0,
                mib(row.usage.peak_rss_bytes)
            )?;
        }
        writeln!(out, "\n### Targets (100k × 384, ratios from this run)\n")?;
        writeln!(out, "| target | measured | met |")?;
        writeln!(out, "|---|---|---|")?;
        for (target, measured, met) in self.targets() {
            let verdict = match met {
                Some(true) => "yes",
                Some(false) => "**no**",
                None => "not measured",
            };
            writeln!(out, "| {target} | {measured} | {verdict} |")?;
        }
        writeln!(out, "\n### Commands\n")?;
        writeln!(
            out,
            "Run from the project root; `RAGGED_HOME` is `target/bench/home` unless shown.\n"
        )?;
        writeln!(out, "```sh")?;
        for row in &self.rows {
            writeln!(out, "{}", row.command)?;
        }
        writeln!(out, "```")?;
        Ok(out)
    }

    /// Each target of the issue: the target, the measured figure, whether it is met.
    fn targets(&self) -> Vec<(String, String, Option<bool>)> {
        let n = TARGET_SIZE;
        let ragged = self.find(n, "ragged chroma → lance");
        let mut targets = Vec::new();
        let ratio = |a: Option<&Usage>, b: Option<&Usage>| a.zip(b).map(|(a, b)| a.seconds / b.seconds);
        let shown = |value: Option<f64>, unit: &str| value.map_or("—".to_owned(), |v| format!("{v:.2}{unit}"));
        let speedup = ratio(self.find(n, "Python baseline chroma → lance"), ragged);
        targets.push((
            "chroma → lance at least 15× faster than the Python baseline".into(),
            shown(speedup, "×"),
            speedup.map(|s| s >= 15.0),
        ));
        let ceiling = ratio(ragged, self.find(n, "copy ceiling: cp -r chroma, sync"));
        targets.push((
            "chroma → lance within 2.5× of the copy ceiling".into(),
            shown(ceiling, "× the copy"),
            ceiling.map(|c| c <= 2.5),
        ));
        let rss = ragged.map(|u| mib(u.peak_rss_bytes));
        targets.push((
            "chroma → lance peak RSS at most 200 MB".into(),
            shown(rss, " MiB"),
            ragged.map(|u| u.peak_rss_bytes <= 200_000_000),
        ));
        let large = self.find(LARGE, "ragged chroma → lance");
        let growth = large
            .zip(ragged)
            .map(|(l, r)| l.peak_rss_bytes as f64 / r.peak_rss_bytes as f64);
        targets.push((
            "peak RSS flat: 1M at most the 100k run plus 10%".into(),
            shown(growth, "× the 100k peak"),
            growth.map(|g| g <= 1.10),
        ));
        let verify = ratio(
            self.find(n, "Python verify, 10% sample"),
            self.find(n, "ragged verify, 10% sample"),
        );
        targets.push((
            "10% verification at least 8× faster than Python".into(),
            shown(verify, "×"),
            verify.map(|v| v >= 8.0),
        ));
        for (what, limit) in [("ragged plugin list", 0.050), ("ragged backend platform", 0.100)] {
            let usage = self.find(0, what);
            targets.push((
                format!("`{what}` under {:.0} ms", limit * 1000.0),
                shown(usage.map(|u| u.seconds * 1000.0), " ms"),
                usage.map(|u| u.seconds < limit),
            ));
        }
        targets
    }
}

/// The target options of every migration into `backend`: LEANN's full shape (with stored
/// vectors), and no Lance vector index, which the baseline does not build either (building one
/// is minutes of its own; see docs/backends/lance.md).
fn target_options(backend: &str) -> Vec<String> {
    let option = match backend {
        "leann" => "shape=full",
        "lance" => "vector_index=none",
        _ => return Vec::new(),
    };
    vec!["--target-option".into(), option.into()]
}

/// `BACKEND:PATH`.
fn store_spec(backend: &str, path: &Path) -> String {
    format!("{backend}:{}", path.display())
}

fn command_line(program: &Path, args: &[String]) -> String {
    let mut line = program.display().to_string();
    for arg in args {
        line.push(' ');
        if arg.contains([' ', '&', '%']) {
            line.push_str(&format!("'{arg}'"));
        } else {
            line.push_str(arg);
        }
    }
    line
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// The median of each figure on its own.
fn median_usage(usages: Vec<Usage>) -> Usage {
    let median = |figure: fn(&Usage) -> f64| {
        let mut values: Vec<f64> = usages.iter().map(figure).collect();
        values.sort_by(f64::total_cmp);
        values.get(values.len() / 2).copied().unwrap_or(0.0)
    };
    Usage {
        seconds: median(|u| u.seconds),
        peak_rss_bytes: median(|u| u.peak_rss_bytes as f64) as u64,
        read_bytes: median(|u| u.read_bytes as f64) as u64,
        written_bytes: median(|u| u.written_bytes as f64) as u64,
    }
}

/// Writes every dirty page to disk (`sync`).
fn flush_writes() -> Result<()> {
    let status = Command::new("sync").status().context("running sync")?;
    ensure!(status.success(), "sync failed with {status}");
    Ok(())
}

/// Reads every file under `dir` once, so the measured run finds them in the page cache.
fn warm(dir: &Path) -> Result<()> {
    let mut buffer = vec![0u8; 1 << 20];
    let mut pending = vec![dir.to_owned()];
    while let Some(path) = pending.pop() {
        if path.is_dir() {
            for entry in std::fs::read_dir(&path)? {
                pending.push(entry?.path());
            }
        } else {
            let mut file = std::fs::File::open(&path).with_context(|| format!("reading {}", path.display()))?;
            while file.read(&mut buffer)? > 0 {}
        }
    }
    Ok(())
}

/// The id of the one run under a fresh `RAGGED_HOME`.
fn only_run(home: &Path) -> Result<String> {
    let runs: Vec<String> = std::fs::read_dir(home.join("runs"))
        .with_context(|| format!("listing the runs in {}", home.display()))?
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect();
    match runs.as_slice() {
        [run] => Ok(run.clone()),
        _ => bail!("expected one run in {}, found {runs:?}", home.display()),
    }
}

/// The first three fields of /proc/loadavg.
fn load_average() -> Result<String> {
    let text = std::fs::read_to_string("/proc/loadavg")?;
    Ok(text.split_whitespace().take(3).collect::<Vec<_>>().join(", "))
}

/// CPU, cores, memory, kernel and the disk holding target/.
fn machine() -> Result<String> {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo")?;
    let cpu = cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")?
                .split_once(':')
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let meminfo = std::fs::read_to_string("/proc/meminfo")?;
    let memory_kib: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")?;
    let disk = Command::new("findmnt")
        .args(["-n", "-o", "SOURCE,FSTYPE,SIZE", "-T"])
        .arg(project_root().join("target"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|| "unknown".into());
    Ok(format!(
        "{cpu}, {cores} cores, {:.1} GiB RAM, Linux {}, target/ on {disk} (source, filesystem, size)",
        memory_kib as f64 / (1024.0 * 1024.0),
        kernel.trim()
    ))
}

/// Replaces the generated section of `path` (or creates the file with it).
fn write_report(path: &Path, report: &str) -> Result<()> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|_| format!("# Benchmarks\n\n{BEGIN}\n{END}\n"));
    let (Some(begin), Some(end)) = (text.find(BEGIN), text.find(END)) else {
        bail!("{} lacks the markers {BEGIN} and {END}", path.display());
    };
    let updated = format!("{}{BEGIN}\n{report}{}", &text[..begin], &text[end..]);
    std::fs::write(path, updated).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(seconds: f64, peak_rss_bytes: u64) -> Usage {
        Usage {
            seconds,
            peak_rss_bytes,
            ..Usage::default()
        }
    }

    #[test]
    fn each_figure_is_its_own_median() {
        let median = median_usage(vec![usage(3.0, 10), usage(1.0, 30), usage(2.0, 20)]);
        assert_eq!((median.seconds, median.peak_rss_bytes), (2.0, 20));
    }

    #[test]
    fn the_report_replaces_only_the_generated_section() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("benchmarks.md");
        write_report(&path, "first\n").expect("creates");
        let text = std::fs::read_to_string(&path).expect("reads") + "\n## Findings\n\nkept\n";
        std::fs::write(&path, text).expect("writes");
        write_report(&path, "second\n").expect("rewrites");
        let text = std::fs::read_to_string(&path).expect("reads");
        assert!(text.contains("second\n") && !text.contains("first"), "{text}");
        assert!(text.ends_with("## Findings\n\nkept\n"), "{text}");
    }
}
