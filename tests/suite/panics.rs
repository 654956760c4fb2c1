//! A plugin that panics never takes the host down: each panic becomes an error with the plugin's
//! message and location, and the exit code says "error", not "killed by a signal".

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
