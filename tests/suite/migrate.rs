//! Migrations between every ordered pair of store plugins: everything arrives, nothing changes in
//! the source, verification notices differences, a failed migration rolls the target back, and an
//! interrupted or killed one resumes to an exact copy.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use ragged::tree::tree_digest;
use ragged_tests::{TestEnv, store_plugins, write_tar_zst};

#[test]
fn every_pair_of_store_plugins_migrates_and_verifies() {
    for source_backend in store_plugins() {
        for target_backend in store_plugins() {
            let env = TestEnv::new();
            let source = env.store(&source_backend, "source");
            for (collection, metric, records) in [("notes", "cosine", 1500), ("faq", "l2", 300)] {
                env.generate(&source, collection, records, 32, &["--metric", metric]);
            }
            let before = tree_digest(&env.path("source")).unwrap();
            let target = env.store(&target_backend, "target");
            let report = env
                .ragged(&["backend", "migrate", &source, &target, "--json"])
                .ok()
                .json();
            let collections = report["collections"].as_array().unwrap();
            assert_eq!(collections.len(), 2, "{source_backend} -> {target_backend}: {report:#}");
            for collection in collections {
                assert_eq!(
                    collection["verification"]["ok"], true,
                    "{source_backend} -> {target_backend}: {collection:#}"
                );
            }
            assert_eq!(
                before,
                tree_digest(&env.path("source")).unwrap(),
                "{source_backend} changed the source"
            );
            let listed = env.ragged(&["backend", "collections", &target, "--json"]).ok().json();
            let counts: Vec<(String, u64)> = listed
                .as_array()
                .unwrap()
                .iter()
                .map(|c| (c["name"].as_str().unwrap().to_owned(), c["count"].as_u64().unwrap()))
                .collect();
            assert_eq!(
                counts,
                [("faq".to_owned(), 300), ("notes".to_owned(), 1500)],
                "{target_backend}"
            );
            env.ragged(&["backend", "verify", &source, &target]).ok();
            // The sampled path: every plugin samples as a source and fetches as a target.
            let sampled = env
                .ragged(&["backend", "verify", &source, &target, "--sample-rate", "0.2", "--json"])
                .ok()
                .json();
            for collection in sampled["collections"].as_array().unwrap() {
                assert_eq!(
                    collection["mode"], "sampled",
                    "{source_backend} -> {target_backend}: {collection:#}"
                );
                let expected = (collection["source_count"].as_f64().unwrap() * 0.2).ceil();
                assert_eq!(collection["compared"].as_f64().unwrap(), expected, "{collection:#}");
            }
        }
    }
}

#[test]
fn migrating_into_an_existing_collection_is_refused() {
    let env = TestEnv::new();
    let source = env.store("parquet", "source");
    env.generate(&source, "notes", 50, 8, &[]);
    let target = env.store("parquet", "target");
    env.ragged(&["backend", "migrate", &source, &target]).ok();
    env.ragged(&["backend", "migrate", &source, &target])
        .code(2)
        .stderr_has("already has 'notes'");
}

#[test]
fn verification_names_a_record_that_differs() {
    let env = TestEnv::new();
    let source = env.store("parquet", "source");
    env.generate(&source, "notes", 200, 8, &[]);
    let other = env.store("parquet", "other");
    env.generate(&other, "notes", 200, 8, &["--seed", "43"]);
    let run = env.ragged(&["backend", "verify", &source, &other, "--json"]);
    run.code(1);
    let report = run.json();
    assert_eq!(report["ok"], false);
    assert_eq!(report["collections"][0]["different"], 200, "{report:#}");
    assert!(
        report["collections"][0]["first_mismatches"][0]
            .as_str()
            .unwrap()
            .starts_with("different"),
        "{report:#}"
    );
}

#[test]
fn an_unknown_backend_is_a_clear_error() {
    let env = TestEnv::new();
    env.ragged(&["backend", "collections", "nosuchstore:./x"])
        .code(2)
        .stderr_has("no plugin named 'nosuchstore' is installed");
    env.ragged(&["backend", "collections", "./just-a-path"])
        .code(2)
        .stderr_has("write BACKEND:LOCATION");
}

#[test]
fn kill_9_at_several_moments_then_resume_gives_an_exact_copy() {
    let env = TestEnv::new();
    let source = env.store("parquet", "source");
    env.generate(&source, "big", 40000, 32, &[]);
    env.generate(&source, "small", 700, 32, &[]);
    let before = tree_digest(&env.path("source")).unwrap();
    let target = env.store("parquet", "target");
    let mut killed_midway = 0;
    for (attempt, delay_ms) in [150u64, 400, 250, 600, 300].into_iter().enumerate() {
        let mut args = vec![
            "backend",
            "migrate",
            &source,
            &target,
            "--batch-size",
            "250",
            "--checkpoint-interval",
            "1000",
            "-q",
        ];
        if attempt > 0 && !env.runs().is_empty() {
            args.push("--resume");
        }
        let mut child = env
            .command()
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // The delays count from the first checkpoint after the backups, which a resume takes
        // again when a kill interrupted them: a fixed delay from the start may never reach a load.
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        while child.try_wait().unwrap().is_none()
            && env.runs().iter().all(|run| run["state"] == "backing-up")
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(Duration::from_millis(delay_ms));
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap();
            child.wait().unwrap();
            let done: u64 = env
                .runs()
                .iter()
                .flat_map(|run| {
                    run["collections"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|c| c[1]["records_done"].as_u64().unwrap())
                })
                .sum();
            killed_midway += u64::from(done > 0 && done < 40_700);
        }
    }
    assert!(
        killed_midway >= 1,
        "no kill landed in the middle of a load; the test proves nothing"
    );
    let finished = if env.runs().iter().any(|r| r["state"] == "completed") {
        None
    } else {
        Some(
            env.ragged(&["backend", "migrate", &source, &target, "--resume", "--json"])
                .ok()
                .json(),
        )
    };
    if let Some(report) = finished {
        assert_eq!(report["state"], "completed", "{report:#}");
    }
    env.ragged(&["backend", "verify", &source, &target, "--exact"])
        .ok()
        .stdout_has("big: 40000 vs 40000 records");
    assert_eq!(before, tree_digest(&env.path("source")).unwrap(), "the source changed");
}

#[cfg(unix)]
#[test]
fn ctrl_c_stops_at_a_batch_boundary_and_prints_the_resume_command() {
    let env = TestEnv::new();
    let source = env.store("parquet", "source");
    env.generate(&source, "big", 60000, 32, &[]);
    let target = env.store("parquet", "target");
    let child = env
        .command()
        .args([
            "backend",
            "migrate",
            &source,
            &target,
            "--batch-size",
            "200",
            "--checkpoint-interval",
            "1000",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Interrupt once records are flowing (the handler is installed before the first load).
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while env
        .runs()
        .first()
        .is_none_or(|run| run["collections"][0][1]["records_done"].as_u64().unwrap_or(0) == 0)
    {
        assert!(std::time::Instant::now() < deadline, "the migration made no progress");
        std::thread::sleep(Duration::from_millis(20));
    }
    let status = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(130),
        "stdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("interrupted; resume with:") && stdout.contains("--resume --checkpoint"),
        "{stdout}"
    );
    let run = &env.runs()[0];
    assert_eq!(run["state"], "interrupted");
    let done = run["collections"][0][1]["records_done"].as_u64().unwrap();
    assert!(
        done > 0 && done < 60_000 && done.is_multiple_of(200),
        "stopped at a batch boundary: {done}"
    );
    env.ragged(&["backend", "migrate", &source, &target, "--resume"])
        .ok()
        .stdout_has("verified: every record matches");
    env.ragged(&["backend", "verify", &source, &target, "--exact"]).ok();
}

#[test]
fn a_failed_verification_restores_the_target_byte_identical() {
    let env = TestEnv::new();
    if !store_plugins().iter().any(|p| p == "chroma") {
        return;
    }
    // The target already holds a collection; the migration must leave it exactly as it was.
    let target = env.store("chroma", "target");
    env.generate(&target, "existing", 300, 16, &[]);
    let before = tree_digest(&env.path("target")).unwrap();
    let source = env.store("parquet", "source");
    env.generate(&source, "notes", 2000, 16, &["--metric", "cosine"]);
    // Chroma keeps cosine vectors as unit vectors times their norm, so --exact cannot be met.
    let run = env.ragged(&["backend", "migrate", &source, &target, "--exact", "--json"]);
    run.code(1);
    let report = run.json();
    assert_eq!(report["state"], "rolled-back", "{report:#}");
    assert!(
        report["error"]
            .as_str()
            .unwrap()
            .contains("verification failed for notes"),
        "{report:#}"
    );
    assert_eq!(
        before,
        tree_digest(&env.path("target")).unwrap(),
        "the rollback did not restore the target exactly"
    );
    let listed = env.ragged(&["backend", "collections", &target, "--json"]).ok().json();
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed:#}");
}

#[test]
fn a_rollback_removes_a_target_that_did_not_exist() {
    let env = TestEnv::new();
    if !store_plugins().iter().any(|p| p == "chroma") {
        return;
    }
    let source = env.store("parquet", "source");
    env.generate(&source, "notes", 500, 16, &["--metric", "cosine"]);
    let target = env.store("chroma", "fresh");
    env.ragged(&["backend", "migrate", &source, &target, "--exact"])
        .code(1)
        .stdout_has("restored to its state before");
    assert!(
        !env.path("fresh").exists(),
        "the rolled-back target directory is still there"
    );
}

#[test]
fn a_dry_run_writes_nothing_and_measures_what_would_happen() {
    let env = TestEnv::new();
    let source = env.store("parquet", "source");
    env.generate(&source, "notes", 3000, 16, &[]);
    let before = tree_digest(&env.path("source")).unwrap();
    let target = env.store("parquet", "target");
    let report = env
        .ragged(&["backend", "migrate", &source, &target, "--dry-run", "--json"])
        .ok()
        .json();
    assert_eq!(report["ok"], true, "{report:#}");
    let notes = &report["collections"][0];
    assert_eq!(
        (notes["records"].as_u64(), notes["probe_records"].as_u64()),
        (Some(3000), Some(2000)),
        "{report:#}"
    );
    assert_eq!(notes["probe"]["exact"], 2000, "{report:#}");
    assert!(
        notes["estimated_target_bytes"].as_u64().unwrap() > 3000 * 16 * 4,
        "{report:#}"
    );
    assert!(
        report["free_bytes"].as_u64().unwrap() > 0 && report["enough_space"] == true,
        "{report:#}"
    );
    assert!(!env.path("target").exists(), "a dry run created the target");
    assert!(!env.path("home/runs").exists(), "a dry run recorded a run");
    assert_eq!(before, tree_digest(&env.path("source")).unwrap());

    if store_plugins().iter().any(|p| p == "chroma") {
        let chroma = env.store("chroma", "chroma");
        let run = env.ragged(&["backend", "migrate", &source, &chroma, "--dry-run", "--exact"]);
        run.code(1)
            .stdout_has("verification would fail")
            .stdout_has("the migration would fail or lose data");
        assert!(!env.path("chroma").exists(), "a dry run created the target");
    }
}

#[test]
fn a_completed_migration_can_be_rolled_back_from_its_backup() {
    let env = TestEnv::new();
    let target = env.store("parquet", "target");
    env.generate(&target, "existing", 200, 8, &[]);
    let before = tree_digest(&env.path("target")).unwrap();
    let source = env.store("parquet", "source");
    env.generate(&source, "notes", 1200, 8, &[]);
    let report = env
        .ragged(&["backend", "migrate", &source, &target, "--json"])
        .ok()
        .json();
    let run_id = report["run_id"].as_str().unwrap().to_owned();
    assert_ne!(before, tree_digest(&env.path("target")).unwrap());

    let listed = env.ragged(&["backend", "backups", "list", "--json"]).ok().json();
    assert_eq!(listed["runs"][0]["id"], run_id.as_str(), "{listed:#}");
    assert_eq!(listed["runs"][0]["state"], "completed", "{listed:#}");
    assert_eq!(
        listed["runs"][0]["backup_files"].as_array().unwrap().len(),
        2,
        "{listed:#}"
    );

    // Without --confirm nothing happens.
    env.ragged(&["backend", "rollback", "--run", &run_id])
        .code(1)
        .stderr_has("run again with --confirm");
    assert_ne!(before, tree_digest(&env.path("target")).unwrap());
    env.ragged(&["backend", "rollback", "--run", &run_id, "--confirm"])
        .ok()
        .stderr_has("restored");
    assert_eq!(
        before,
        tree_digest(&env.path("target")).unwrap(),
        "the rollback did not restore the target exactly"
    );
    assert_eq!(env.runs()[0]["state"], "rolled-back");

    env.ragged(&["backend", "backups", "clean", "--keep-latest", "0"])
        .ok()
        .stderr_has("removed 1 run(s) and their backups, 0 cleanup backup(s)");
    assert!(env.runs().is_empty());
}

#[test]
fn a_rollback_refuses_backup_entries_that_could_escape() {
    let env = TestEnv::new();
    let target = env.store("parquet", "target");
    env.generate(&target, "existing", 200, 8, &[]);
    let source = env.store("parquet", "source");
    env.generate(&source, "notes", 300, 8, &[]);
    let report = env
        .ragged(&["backend", "migrate", &source, &target, "--json"])
        .ok()
        .json();
    let run_id = report["run_id"].as_str().unwrap();
    let archive = Path::new(report["run_dir"].as_str().unwrap()).join("target.tar.zst");
    let migrated = tree_digest(&env.path("target")).unwrap();
    let escaped = env.path("escaped");
    let escaped_name = escaped.display().to_string();
    for (name, kind, content) in [
        ("../../../escaped", tar::EntryType::Regular, &b"gotcha"[..]),
        (escaped_name.as_str(), tar::EntryType::Regular, &b"gotcha"[..]),
        ("files/000001", tar::EntryType::Symlink, escaped_name.as_bytes()),
    ] {
        write_tar_zst(&archive, &[(name, kind, content)]);
        env.ragged(&["backend", "rollback", "--run", run_id, "--confirm"])
            .code(2)
            .stderr_has(&format!("{}: entry '{name}' ", archive.display()));
        assert!(!escaped.exists(), "{name}");
        assert_eq!(
            migrated,
            tree_digest(&env.path("target")).unwrap(),
            "{name}: the target changed"
        );
    }
}
