//! What survives the worst: `kill -9` at random moments of every phase of a migration, a target
//! on a full disk, and another process writing to the source during a migration.

// The kill moments and figures are printed: docs/reliability.md reports them.
#![allow(clippy::print_stderr)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ragged::tree::tree_digest;
use ragged_tests::TestEnv;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Records in the crash test's source, as the issue asks.
const RECORDS: u64 = 50_000;
/// The seed of the kill moments; the test prints every moment it chose.
const SEED: u64 = 11;

/// Where a kill is aimed, in the order a migration goes through them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    Backup,
    Extract,
    Load,
    Checkpoint,
    Verification,
    Rollback,
}

impl Phase {
    /// The stderr line (at `RAGGED_LOG=ragged=debug`) announcing the phase, how many of them to
    /// let pass before the clock starts (the n-th one), and the range of the random delay after it.
    fn trigger(self, rng: &mut StdRng) -> (&'static str, usize, Duration) {
        let ms = |range: std::ops::Range<u64>, rng: &mut StdRng| Duration::from_millis(rng.random_range(range));
        match self {
            Phase::Backup => ("backing up the source collections", 1, ms(0..150, rng)),
            // Logged just before the extract call; the first batches follow within milliseconds.
            Phase::Extract => ("migrating", 1, ms(0..60, rng)),
            // After a checkpoint the next load is running: a load of 2500 records takes longer
            // than this on a debug build.
            Phase::Load => ("writing the checkpoint", rng.random_range(3..6), ms(60..300, rng)),
            // Logged right before the checkpoint's atomic write (temp file, fsync, rename).
            Phase::Checkpoint => ("writing the checkpoint", rng.random_range(3..8), ms(0..3, rng)),
            Phase::Verification => ("verifying", 1, ms(0..800, rng)),
            Phase::Rollback => ("rolling back", 1, ms(0..40, rng)),
        }
    }
}

/// How a process aimed at a phase ended.
enum Ending {
    /// Killed while it was still running.
    Killed,
    /// It exited on its own first (with this code) or never announced the phase.
    Exited(Option<i32>, String),
}

/// Runs `ragged ARGS` and sends SIGKILL `delay` after the `nth` stderr line containing `trigger`.
/// stderr is drained by a thread the whole time, so the process never blocks on a full pipe.
fn kill_after(env: &TestEnv, args: &[&str], trigger: &str, nth: usize, delay: Duration) -> Ending {
    let mut child: Child = env
        .command()
        .args(args)
        .env("RAGGED_LOG", "ragged=debug")
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (lines, received) = mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = lines.send(line);
        }
    });
    let mut log = String::new();
    let mut seen = 0;
    let deadline = Instant::now() + Duration::from_secs(180);
    while seen < nth {
        match received.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) => {
                seen += usize::from(line.contains(trigger));
                log.push_str(&line);
                log.push('\n');
            }
            Err(_) => {
                let status = child.wait().unwrap();
                return Ending::Exited(status.code(), log);
            }
        }
    }
    std::thread::sleep(delay);
    if child.try_wait().unwrap().is_some() {
        let status = child.wait().unwrap();
        return Ending::Exited(status.code(), log);
    }
    child.kill().unwrap();
    child.wait().unwrap();
    Ending::Killed
}

/// The run of `target` (this test starts one run per target).
fn run_of(env: &TestEnv, target: &str) -> Option<serde_json::Value> {
    env.runs().into_iter().find(|run| run["target"] == target)
}

/// The migration command: a fresh one, or `--resume` when `target` has a run to continue.
fn migrate_args<'a>(env: &TestEnv, source: &'a str, target: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["backend", "migrate", source, target, "--batch-size", "500"];
    if !extra.contains(&"--checkpoint-interval") {
        args.extend(["--checkpoint-interval", "2500"]);
    }
    args.extend_from_slice(extra);
    if run_of(env, target).is_some() {
        args.push("--resume");
    }
    args
}

/// Where a kill landed, from the checkpoint it left: the state a run records is the proof.
fn landed(run: Option<&serde_json::Value>, aimed: Phase) -> Phase {
    let Some(run) = run else { return Phase::Backup };
    let loaded = run["collections"]
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c[1]["loaded"] == true);
    match run["state"].as_str().unwrap() {
        "backing-up" => Phase::Backup,
        "rolling-back" => Phase::Rollback,
        _ if loaded => Phase::Verification,
        _ => aimed,
    }
}

#[test]
fn kill_9_at_20_moments_of_every_phase_then_resume_gives_an_exact_copy() {
    let env = TestEnv::new();
    let source = env.store("parquet", "source");
    env.generate(&source, "big", RECORDS, 16, &[]);
    let source_digest = tree_digest(&env.path("source")).unwrap();
    // Timed from here: building and staging the plugins and writing the source are set-up.
    let started = Instant::now();
    let mut rng = StdRng::seed_from_u64(SEED);
    use Phase::*;
    let mut pending: Vec<Phase> = [
        vec![Backup, Extract, Load, Checkpoint, Verification],
        vec![Backup, Extract, Checkpoint, Load, Verification],
        vec![Backup, Extract, Load, Checkpoint, Load, Checkpoint, Verification],
    ]
    .concat();
    pending.reverse();
    let mut kills: Vec<(Phase, Phase)> = Vec::new();
    let mut round = 0;
    while !pending.is_empty() {
        round += 1;
        assert!(round <= 6, "kills kept missing their phase: {kills:?}");
        let target = env.store("parquet", &format!("target-{round}"));
        // A round takes kills in the order a migration meets their phases; a backup kill only
        // opens one.
        let mut position = None;
        while let Some(&phase) = pending.last() {
            if position.is_some_and(|p| phase == Backup || p == Verification) {
                break;
            }
            let (trigger, nth, delay) = phase.trigger(&mut rng);
            let args = migrate_args(&env, &source, &target, &[]);
            match kill_after(&env, &args, trigger, nth, delay) {
                Ending::Killed => {
                    let run = run_of(&env, &target);
                    // The kill came after the run had completed (its last lines, on a busy
                    // machine): too late, like an exit. The remaining kills move to a new target.
                    if run.as_ref().is_some_and(|run| run["state"] == "completed") {
                        break;
                    }
                    pending.pop();
                    let landed = landed(run.as_ref(), phase);
                    eprintln!(
                        "{:>4} s  round {round}: {phase:?} (line {nth} of {trigger:?} + {delay:?}): landed in {landed:?}",
                        started.elapsed().as_secs()
                    );
                    kills.push((phase, landed));
                    position = Some(phase);
                }
                // Too late: the migration finished. The remaining kills move to a new target.
                Ending::Exited(Some(0), _) => break,
                Ending::Exited(code, log) => panic!("aimed at {phase:?}, ragged exited with {code:?}:\n{log}"),
            }
        }
        finish_and_check_an_exact_copy(&env, &source, &target);
        assert_eq!(
            source_digest,
            tree_digest(&env.path("source")).unwrap(),
            "the source changed"
        );
    }
    eprintln!("{:>4} s  rollbacks", started.elapsed().as_secs());
    let rollback_kills = kill_during_rollbacks(&env, &source, &mut rng);
    kills.extend(rollback_kills);
    assert_eq!(
        source_digest,
        tree_digest(&env.path("source")).unwrap(),
        "the source changed"
    );
    assert_eq!(kills.len(), 20, "{kills:?}");
    for phase in [Backup, Extract, Load, Checkpoint, Verification, Rollback] {
        let aimed = kills.iter().filter(|(aimed, _)| *aimed == phase).count();
        let landed = kills.iter().filter(|(_, landed)| *landed == phase).count();
        eprintln!("{phase:?}: {aimed} kills aimed, {landed} landed there by the checkpoint's evidence");
    }
    for phase in [Backup, Verification, Rollback] {
        assert!(
            kills.iter().any(|(_, landed)| *landed == phase),
            "no kill landed in {phase:?}: {kills:?}"
        );
    }
    eprintln!("20 kills survived, 0 records lost, {} s", started.elapsed().as_secs());
}

/// Resumes the run into `target` until it completes, then proves the copy exact, record by record.
fn finish_and_check_an_exact_copy(env: &TestEnv, source: &str, target: &str) {
    let unfinished = run_of(env, target).is_some_and(|run| run["state"] != "completed");
    if unfinished || run_of(env, target).is_none() {
        let args = migrate_args(env, source, target, &["--json"]);
        let report = env.ragged(&args).ok().json();
        assert_eq!(report["state"], "completed", "{report:#}");
    }
    // A resume after a kill during the backups took them again, instead of writing unprotected.
    let backup = run_of(env, target).unwrap()["backup"].clone();
    assert!(
        backup.as_str().is_some_and(|archive| Path::new(archive).is_file()),
        "the run has no target backup: {backup}"
    );
    let report = env
        .ragged(&["backend", "verify", source, target, "--full", "--exact", "--json"])
        .ok()
        .json();
    let big = &report["collections"][0];
    assert_eq!(
        (big["source_count"].as_u64(), big["target_count"].as_u64()),
        (Some(RECORDS), Some(RECORDS)),
        "{report:#}"
    );
    assert_eq!(
        big["exact"].as_u64(),
        Some(RECORDS),
        "records lost or changed: {report:#}"
    );
}

/// Three migrations into a target that corrupts a record, so verification fails, each killed
/// while rolling back and resumed: the resume finishes the rollback, and the target is
/// byte-identical to its state before the migration. Returns (aimed, landed) per kill.
fn kill_during_rollbacks(env: &TestEnv, source: &str, rng: &mut StdRng) -> Vec<(Phase, Phase)> {
    let mut kills = Vec::new();
    for attempt in 1..=6 {
        if kills.len() == 3 {
            break;
        }
        let relative = format!("tampering-{attempt}");
        let target = env.store("tampering", &relative);
        env.generate(&target, "existing", 20_000, 16, &[]);
        let before = tree_digest(&env.path(&relative)).unwrap();
        let (trigger, nth, delay) = Phase::Rollback.trigger(rng);
        // Few loads: this store rewrites its whole file on each.
        let extra = [
            "--target-option",
            "tamper=doc-00004242",
            "--checkpoint-interval",
            "25000",
        ];
        let args = migrate_args(env, source, &target, &extra);
        match kill_after(env, &args, trigger, nth, delay) {
            Ending::Killed => {
                let landed = landed(run_of(env, &target).as_ref(), Phase::Rollback);
                eprintln!("rollback {attempt}: line {nth} of {trigger:?} + {delay:?}: landed in {landed:?}");
                kills.push((Phase::Rollback, landed));
                let args = migrate_args(env, source, &target, &[]);
                let resumed = env.ragged(&args);
                resumed.code(1);
                if landed == Phase::Rollback {
                    resumed.stderr_has("stopped while rolling back; finishing the rollback");
                }
            }
            // Too late: the rollback had finished; try again with a new target.
            Ending::Exited(Some(1), _) => {}
            Ending::Exited(code, log) => panic!("aimed at the rollback, ragged exited with {code:?}:\n{log}"),
        }
        assert_eq!(run_of(env, &target).unwrap()["state"], "rolled-back");
        assert_eq!(
            before,
            tree_digest(&env.path(&relative)).unwrap(),
            "the rollback did not restore the target byte-identical"
        );
    }
    kills
}

/// A tmpfs of `size` mounted on `dir` for the life of the guard (needs root: CI's tests run as
/// root). None, after saying why, when it cannot be mounted, unless `RAGGED_REQUIRE_INTEROP=1`
/// makes that a failure.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(dir).unwrap();
        let output = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output();
        match output {
            Ok(output) if output.status.success() => Some(Tmpfs(dir.to_owned())),
            failed => {
                let why = match failed {
                    Ok(output) => String::from_utf8_lossy(&output.stderr).trim().to_owned(),
                    Err(error) => error.to_string(),
                };
                let reason = format!(
                    "cannot mount a {size} tmpfs at {} ({why}); it needs root",
                    dir.display()
                );
                assert!(
                    std::env::var("RAGGED_REQUIRE_INTEROP").as_deref() != Ok("1"),
                    "{reason}; RAGGED_REQUIRE_INTEROP=1 makes this test mandatory"
                );
                eprintln!("skipped: {reason}");
                None
            }
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[cfg(target_os = "linux")]
#[test]
fn a_migration_onto_a_full_disk_fails_clearly_and_restores_the_target() {
    let env = TestEnv::new();
    let Some(_tmpfs) = Tmpfs::mount(&env.path("small-disk"), "8m") else {
        return;
    };
    let target = env.store("parquet", "small-disk/target");
    env.generate(&target, "existing", 2_000, 64, &[]);
    let target_digest = tree_digest(&env.path("small-disk/target")).unwrap();
    let source = env.store("parquet", "source");
    // About 16 MB of vectors alone: twice what the disk holds.
    env.generate(&source, "big", 60_000, 64, &[]);
    let source_digest = tree_digest(&env.path("source")).unwrap();
    let run = env.ragged(&["backend", "migrate", &source, &target, "--json"]);
    run.code(2);
    let report = run.json();
    assert_eq!(report["state"], "rolled-back", "{report:#}");
    let error = report["error"].as_str().unwrap();
    assert!(
        error.contains("No space left on device")
            && error.contains(&env.path("small-disk/target").display().to_string()),
        "{error}"
    );
    assert_eq!(
        target_digest,
        tree_digest(&env.path("small-disk/target")).unwrap(),
        "the target is not back to its state before the migration"
    );
    assert_eq!(
        source_digest,
        tree_digest(&env.path("source")).unwrap(),
        "the source changed"
    );
    env.ragged(&["backend", "collections", &target])
        .ok()
        .stdout_has("existing");
}

#[cfg(unix)]
#[test]
fn a_write_to_the_source_during_a_migration_is_detected_and_nothing_is_kept() {
    let env = TestEnv::new();
    let source = env.store("parquet", "source");
    env.generate(&source, "big", 20_000, 16, &[]);
    let target = env.store("parquet", "target");
    env.generate(&target, "existing", 500, 16, &[]);
    let target_digest = tree_digest(&env.path("target")).unwrap();
    // One record rewritten with the same id: the count stays, only the files tell.
    let changed = env.path("changed.jsonl");
    let vector: Vec<f32> = (0..16).map(|i| i as f32).collect();
    std::fs::write(
        &changed,
        format!(
            "{}\n",
            serde_json::json!({"id": "doc-00000007", "document": "rewritten", "embedding": vector})
        ),
    )
    .unwrap();
    let write_to_source = || {
        env.ragged(&[
            "ingest",
            changed.to_str().unwrap(),
            "--to",
            &source,
            "--collection",
            "big",
        ])
        .ok();
    };

    // A migration in the background (`--json` on stdout), returned once it has loaded records.
    let migrating = |json: bool| {
        let mut args = vec![
            "backend",
            "migrate",
            &source,
            &target,
            "--batch-size",
            "500",
            "--checkpoint-interval",
            "2000",
        ];
        if json {
            args.push("--json");
        }
        let child = env
            .command()
            .args(args)
            .stdout(if json { Stdio::piped() } else { Stdio::null() })
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(120);
        while env
            .runs()
            .iter()
            .all(|run| run["state"] != "running" || run["collections"][0][1]["records_done"].as_u64() == Some(0))
        {
            assert!(Instant::now() < deadline, "the migration made no progress");
            std::thread::sleep(Duration::from_millis(10));
        }
        child
    };

    // A write while the migration is stopped (SIGSTOP) mid-load: deterministic, and the same as a
    // writer that is merely faster.
    let child = migrating(true);
    let signal = |name: &str| {
        let status = Command::new("kill")
            .args([name, &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    };
    signal("-STOP");
    write_to_source();
    signal("-CONT");
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["state"], "rolled-back", "{report:#}");
    assert!(
        report["error"]
            .as_str()
            .unwrap()
            .contains(&format!("the source {source} changed during the migration")),
        "{report:#}"
    );
    assert_eq!(
        target_digest,
        tree_digest(&env.path("target")).unwrap(),
        "the target kept a mix"
    );

    // A write while a killed migration waits for its resume: the resume refuses and rolls back.
    let mut child = migrating(false);
    child.kill().unwrap();
    child.wait().unwrap();
    write_to_source();
    env.ragged(&["backend", "migrate", &source, &target, "--resume"])
        .code(2)
        .stdout_has("changed during the migration")
        .stdout_has("the target was restored to its state before the migration");
    assert_eq!(
        target_digest,
        tree_digest(&env.path("target")).unwrap(),
        "the target kept a mix"
    );

    // Once the writes stop, a new migration copies the source as it is now.
    env.ragged(&["backend", "migrate", &source, &target]).ok();
    env.ragged(&["backend", "verify", &source, &target, "--full", "--exact"])
        .ok();
}
