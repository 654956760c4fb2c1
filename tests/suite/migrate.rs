//! Migrations between every ordered pair of store plugins: everything arrives, nothing changes in
//! the source, and verification notices a tampered target.

use ragged::tree::tree_digest;
use ragged_tests::{TestEnv, store_plugins};

#[test]
fn every_pair_of_store_plugins_migrates_and_verifies() {
    for source_backend in store_plugins() {
        for target_backend in store_plugins() {
            let env = TestEnv::new();
            let source = env.store(&source_backend, "source");
            for (collection, metric, records) in [("notes", "cosine", "1500"), ("faq", "l2", "300")] {
                env.ragged(&[
                    "backend",
                    "generate",
                    &source,
                    "--collection",
                    collection,
                    "--records",
                    records,
                    "--dim",
                    "32",
                    "--metric",
                    metric,
                ])
                .ok();
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
        }
    }
}

#[test]
fn migrating_into_an_existing_collection_is_refused() {
    let env = TestEnv::new();
    let source = env.store("parquet", "source");
    env.ragged(&[
        "backend",
        "generate",
        &source,
        "--collection",
        "notes",
        "--records",
        "50",
        "--dim",
        "8",
    ])
    .ok();
    let target = env.store("parquet", "target");
    env.ragged(&["backend", "migrate", &source, &target]).ok();
    env.ragged(&["backend", "migrate", &source, &target])
        .code(2)
        .stderr_has("already exists");
}

#[test]
fn verification_names_a_record_that_differs() {
    let env = TestEnv::new();
    let source = env.store("parquet", "source");
    env.ragged(&[
        "backend",
        "generate",
        &source,
        "--collection",
        "notes",
        "--records",
        "200",
        "--dim",
        "8",
    ])
    .ok();
    let other = env.store("parquet", "other");
    env.ragged(&[
        "backend",
        "generate",
        &other,
        "--collection",
        "notes",
        "--records",
        "200",
        "--dim",
        "8",
        "--seed",
        "43",
    ])
    .ok();
    let run = env.ragged(&["backend", "verify", &source, &other, "--json"]);
    run.code(1);
    let report = run.json();
    assert_eq!(report["ok"], false);
    assert_eq!(report["collections"][0]["different"], 200, "{report:#}");
    assert!(
        report["collections"][0]["first_mismatches"][0]
            .as_str()
            .unwrap()
            .starts_with("different: doc-"),
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
