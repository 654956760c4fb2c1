//! A plugin that panics never takes the host down: each panic becomes an error with the plugin's
//! message and location, and the exit code says "error", not "killed by a signal".

use std::time::{Duration, Instant};

use ragged::tree::tree_digest;
use ragged_tests::TestEnv;

#[test]
fn a_panic_in_an_operation_is_an_error() {
    let env = TestEnv::new();
    env.ragged(&["backend", "collections", &env.store("panicky", "store")])
        .code(2)
        .stderr_has("plugin panicked in list_collections: list_collections exploded")
        .stderr_has("lib.rs");
}

#[test]
fn a_panic_inside_a_stream_is_an_error() {
    let env = TestEnv::new();
    let source = env.store("panicky", "store");
    let target = env.store("parquet", "target");
    let migrate = |extra: &[&str]| {
        let mut args = vec![
            "backend",
            "migrate",
            source.as_str(),
            target.as_str(),
            "--collection",
            "c",
        ];
        args.extend_from_slice(extra);
        env.ragged(&args)
    };
    migrate(&["--no-backup"])
        .code(2)
        .stderr_has("the stream exploded after the first batch");
    // The panicky plugin cannot list its files, so by default the backup is what refuses.
    migrate(&[])
        .code(2)
        .stderr_has("the source cannot be backed up: pass --no-backup");
}

#[test]
fn the_conformance_suite_reports_a_panicking_plugin_and_finishes() {
    let env = TestEnv::new();
    let run = env.ragged(&["plugin", "test", "panicky", "--json"]);
    run.code(1);
    let report = run.json();
    assert!(report["failed"].as_u64().unwrap() >= 1, "{report:#}");
    assert!(
        report["skipped"].as_u64().unwrap() >= 10,
        "write checks are skipped for a read-only plugin: {report:#}"
    );
}

/// Migrates collection `c` from a panicky store misbehaving as `kind` into a parquet store that
/// already holds a collection: the migration must fail (exit 2) and leave the target as it was.
/// Returns the run's report.
fn migrate_from_misbehaving(env: &TestEnv, kind: &str) -> serde_json::Value {
    let target = env.store("parquet", "target");
    env.generate(&target, "existing", 50, 4, &[]);
    let before = tree_digest(&env.path("target")).unwrap();
    let misbehave = format!("misbehave={kind}");
    let run = env.ragged(&[
        "backend",
        "migrate",
        &env.store("panicky", "source"),
        &target,
        "--collection",
        "c",
        "--source-option",
        &misbehave,
        "--json",
    ]);
    run.code(2);
    assert_eq!(
        before,
        tree_digest(&env.path("target")).unwrap(),
        "{kind}: the target changed"
    );
    let report = run.json();
    assert_eq!(report["state"], "rolled-back", "{kind}: {report:#}");
    report
}

#[test]
fn a_malformed_stream_fails_the_migration_naming_the_store_the_collection_and_the_problem() {
    for (kind, problems) in [
        (
            "missing-column",
            &[
                "extract 'c' failed: the panicky plugin returned a stream that is not canonical",
                "batch columns are [id, document, embedding], expected [id, document, metadata, embedding]",
            ][..],
        ),
        (
            "mistyped-column",
            &[
                "extract 'c' failed: the panicky plugin returned a stream that is not canonical: column 'embedding' is FixedSizeList(4 x Float64), expected FixedSizeList<Float32, dim>",
            ],
        ),
        (
            "wrong-dimension",
            &["extract 'c': the stream's embeddings have 3 dimensions, but the collection is described with 4"],
        ),
        (
            "mismatched-batch",
            &["extract 'c' failed after 0 records", "column 'embedding' is malformed"],
        ),
        (
            "null-ids",
            &[
                "extract 'c' failed after 10 records",
                "Column 'id' is declared as non-nullable but contains null values",
            ],
        ),
        (
            "stream-error",
            &["extract 'c' failed after 10 records: chunk-2.bin: read failed at offset 4096"],
        ),
    ] {
        let report = migrate_from_misbehaving(&TestEnv::new(), kind);
        let error = report["error"].as_str().unwrap();
        assert!(error.starts_with("panicky:"), "{kind}: {error}");
        for problem in problems {
            assert!(error.contains(problem), "{kind}: {error}");
        }
    }
}

#[test]
fn a_plugin_call_that_never_returns_times_out_and_ragged_exits() {
    let env = TestEnv::new();
    env.write_config("[plugins]\ncall_timeout_secs = 1\n");
    // Staging and first validating the plugins (checksums of large libraries) take long on a busy
    // machine; only the command itself is timed.
    env.ragged(&["plugin", "list"]).ok();
    let started = Instant::now();
    env.ragged(&[
        "backend",
        "collections",
        &env.store("panicky", "store"),
        "--option",
        "misbehave=hang",
    ])
    .code(2)
    .stderr_has("the panicky plugin did not return from list_collections within 1 s")
    .stderr_has("a hung plugin cannot be stopped")
    .stderr_has("raise plugins.call_timeout_secs in ");
    assert!(started.elapsed() < Duration::from_secs(30), "{:?}", started.elapsed());
}

#[test]
fn a_stream_that_stops_mid_way_fails_the_migration_within_the_timeout() {
    let env = TestEnv::new();
    env.write_config("[plugins]\ncall_timeout_secs = 1\n");
    env.ragged(&["plugin", "list"]).ok();
    let started = Instant::now();
    let report = migrate_from_misbehaving(&env, "stream-hang");
    assert!(started.elapsed() < Duration::from_secs(30), "{:?}", started.elapsed());
    let error = report["error"].as_str().unwrap();
    assert!(
        error.contains("the panicky plugin did not return from reading the next batch of extract 'c' within 1 s"),
        "{error}"
    );
}
