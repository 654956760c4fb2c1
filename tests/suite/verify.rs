//! `ragged backend verify` (full and sampled, query consistency), a store that corrupts records
//! after a load, `storage-info` and `cleanup`.

use ragged::tree::tree_digest;
use ragged_tests::{TestEnv, store_plugins};

/// The generator's id for record `index`.
fn id(index: u64) -> String {
    format!("doc-{index:08}")
}

#[test]
fn records_corrupted_between_load_and_verify_roll_the_target_back() {
    let env = TestEnv::new();
    let target = env.store("tampering", "target");
    env.generate(&target, "existing", 50, 8, &[]);
    let before = tree_digest(&env.path("target")).unwrap();
    let source = env.store("parquet", "source");
    env.generate(&source, "notes", 400, 8, &[]);
    let tampered = id(123);
    let tamper = format!("tamper={tampered}");
    // In full (the default below 100000 records) and on a sample that includes every record.
    for coverage in [&["--full"][..], &["--sample-rate", "1"][..]] {
        let mut args = vec![
            "backend",
            "migrate",
            &source,
            &target,
            "--target-option",
            &tamper,
            "--json",
        ];
        args.extend_from_slice(coverage);
        let run = env.ragged(&args);
        run.code(1);
        let report = run.json();
        assert_eq!(report["state"], "rolled-back", "{coverage:?}: {report:#}");
        let verification = &report["collections"][0]["verification"];
        assert_eq!(verification["different"], 1, "{verification:#}");
        assert_eq!(
            verification["first_mismatches"][0],
            format!("different vector: {tampered}"),
            "{verification:#}"
        );
        assert_eq!(
            before,
            tree_digest(&env.path("target")).unwrap(),
            "{coverage:?}: the rollback did not restore the target exactly"
        );
    }
}

#[test]
fn sampled_verification_checks_ids_in_full_and_content_on_the_sample() {
    let env = TestEnv::new();
    let source = env.store("parquet", "source");
    env.generate(&source, "notes", 1000, 8, &[]);
    let copy = env.store("parquet", "copy");
    env.ragged(&["backend", "migrate", &source, &copy, "--no-verify", "--json"])
        .ok();

    let report = env
        .ragged(&[
            "backend",
            "verify",
            &source,
            &copy,
            "--sample-rate",
            "0.1",
            "--seed",
            "7",
            "--json",
        ])
        .ok()
        .json();
    let notes = &report["collections"][0];
    assert_eq!(notes["mode"], "sampled", "{notes:#}");
    assert_eq!(notes["compared"], 100, "{notes:#}");
    assert_eq!(notes["exact"], 100, "{notes:#}");
    assert_eq!(notes["seed"], 7, "{notes:#}");
    assert_eq!(notes["vector_similarity"]["min"], 1.0, "{notes:#}");
    assert_eq!(notes["queries"]["queries"], 10, "{notes:#}");
    assert_eq!(
        notes["queries"]["mean_overlap"], 1.0,
        "brute force in both stores: {notes:#}"
    );

    // One record fewer: the id sets are compared in full, so a 1% sample still finds it.
    let short = env.store("parquet", "short");
    env.generate(&short, "notes", 999, 8, &[]);
    let run = env.ragged(&["backend", "verify", &source, &short, "--sample-rate", "0.01", "--json"]);
    run.code(1);
    let notes = &run.json()["collections"][0];
    assert_eq!(notes["missing"], 1, "{notes:#}");
    assert_eq!(
        notes["first_mismatches"][0],
        format!("missing: {}", id(999)),
        "{notes:#}"
    );

    // A corrupted record: found by a sample that holds it, and by the full digest comparison.
    let corrupted = env.store("tampering", "corrupted");
    env.ragged(&[
        "backend",
        "migrate",
        &source,
        &corrupted,
        "--no-verify",
        "--target-option",
        &format!("tamper={}", id(500)),
        "--json",
    ])
    .ok();
    for coverage in ["--full", "--sample-rate=1"] {
        let run = env.ragged(&["backend", "verify", &source, &corrupted, coverage, "--json"]);
        run.code(1);
        let notes = &run.json()["collections"][0];
        assert_eq!(notes["different"], 1, "{coverage}: {notes:#}");
        assert_eq!(notes["exact"], 999, "{coverage}: {notes:#}");
        assert_eq!(
            notes["first_mismatches"][0],
            format!("different vector: {}", id(500)),
            "{coverage}: {notes:#}"
        );
        assert!(notes["vector_similarity"]["min"].as_f64().unwrap() < 1.0, "{notes:#}");
        // The tampering store answers no queries; the check says so instead of failing.
        assert!(
            notes["queries"]["skipped"]
                .as_str()
                .unwrap()
                .contains("does not answer queries"),
            "{notes:#}"
        );
    }
    let text = env.ragged(&["backend", "verify", &source, &corrupted]).code(1).stdout();
    assert!(
        text.contains("VERIFICATION FAILED") && text.contains(&id(500)),
        "{text}"
    );
}

#[test]
fn storage_info_measures_each_collection_of_a_store_or_the_default_one() {
    let env = TestEnv::new();
    let store = env.store("parquet", "store");
    env.generate(&store, "notes", 300, 8, &[]);
    env.generate(&store, "faq", 100, 8, &[]);
    let report = env.ragged(&["backend", "storage-info", &store, "--json"]).ok().json();
    let collections = report["collections"].as_array().unwrap();
    assert_eq!(collections.len(), 2, "{report:#}");
    let on_disk = |collection: &str| -> u64 {
        std::fs::read_dir(env.path("store").join(collection))
            .unwrap()
            .map(|entry| entry.unwrap().metadata().unwrap().len())
            .sum()
    };
    for c in collections {
        let name = c["name"].as_str().unwrap();
        assert_eq!(c["total_bytes"].as_u64().unwrap(), on_disk(name), "{c:#}");
        assert_eq!(
            c["bytes_per_record"].as_f64().unwrap(),
            c["total_bytes"].as_f64().unwrap() / c["records"].as_f64().unwrap()
        );
    }
    assert_eq!(
        report["total_bytes"].as_u64().unwrap(),
        on_disk("notes") + on_disk("faq")
    );

    env.ragged(&["backend", "storage-info"])
        .code(2)
        .stderr_has("no default store set");
    env.ragged(&["backend", "set", &store, "--global"]).ok();
    env.ragged(&["backend", "storage-info"])
        .ok()
        .stdout_has("notes")
        .stdout_has("PER RECORD");

    let unmeasured = env.store("tampering", "unmeasured");
    env.generate(&unmeasured, "notes", 10, 8, &[]);
    env.ragged(&["backend", "storage-info", &unmeasured])
        .ok()
        .stdout_has("cannot measure storage");
}

#[test]
fn cleanup_asks_for_confirmation_backs_up_and_can_be_undone() {
    for backend in store_plugins() {
        let env = TestEnv::new();
        let store = env.store(&backend, "store");
        env.generate(&store, "old", 200, 8, &[]);
        env.generate(&store, "kept", 100, 8, &[]);
        let before = tree_digest(&env.path("store")).unwrap();

        env.ragged(&["backend", "cleanup", &store, "--collection", "old"])
            .code(1)
            .stderr_has("run again with --confirm");
        assert_eq!(
            before,
            tree_digest(&env.path("store")).unwrap(),
            "{backend}: changed without --confirm"
        );
        env.ragged(&["backend", "cleanup", &store, "--collection", "missing", "--confirm"])
            .code(2)
            .stderr_has("no collection 'missing'");

        let report = env
            .ragged(&[
                "backend",
                "cleanup",
                &store,
                "--collection",
                "old",
                "--confirm",
                "--json",
            ])
            .ok()
            .json();
        let archive = report["report"]["backup"].as_str().unwrap().to_owned();
        let listed = env.ragged(&["backend", "collections", &store, "--json"]).ok().json();
        assert_eq!(listed.as_array().unwrap().len(), 1, "{backend}: {listed:#}");
        assert_eq!(listed[0]["name"], "kept", "{backend}");
        let backups = env.ragged(&["backend", "backups", "list", "--json"]).ok().json();
        assert_eq!(backups["cleanups"][0]["file"], archive.as_str(), "{backups:#}");

        env.ragged(&["backend", "rollback", "--backup", &archive, "--confirm"])
            .ok();
        assert_eq!(
            before,
            tree_digest(&env.path("store")).unwrap(),
            "{backend}: restoring the cleanup backup did not give the store back exactly"
        );

        env.ragged(&["backend", "cleanup", &store, "--confirm", "--no-backup"])
            .ok()
            .stderr_has("no backup was taken");
        let listed = env.ragged(&["backend", "collections", &store, "--json"]).ok().json();
        assert!(listed.as_array().unwrap().is_empty(), "{backend}: {listed:#}");
    }
}
