//! Switching without downtime: `backend sync` between every kind of store, dual-write through
//! `ingest` with a store that fails, `--retry`, `delete`, `cutover` and `sync --watch`.

use std::path::Path;

use ragged_tests::{TestEnv, store_plugins};
use serde_json::{Value, json};

const DIMENSION: usize = 8;

/// A record line for `ragged ingest`; `version` changes the document, metadata and vector.
fn record(id: &str, version: u32) -> Value {
    let embedding: Vec<f32> = (0..DIMENSION)
        .map(|i| ((i as f32 + 1.0) * 0.37 + version as f32 * 1.13).sin())
        .collect();
    json!({
        "id": id,
        "document": format!("{id}, version {version}"),
        "metadata": {"version": version, "weight": f64::from(version) + 0.5, "tags": ["a", "b"]},
        "embedding": embedding,
    })
}

fn write_jsonl(path: &Path, records: &[Value]) {
    let text: String = records.iter().map(|r| format!("{r}\n")).collect();
    std::fs::write(path, text).unwrap();
}

fn sync(env: &TestEnv, source: &str, target: &str) -> Value {
    let report = env.ragged(&["backend", "sync", source, target, "--json"]).ok().json();
    assert_eq!(report["ok"], true, "{report:#}");
    report["collections"][0].clone()
}

fn changes(report: &Value) -> [u64; 4] {
    ["added", "updated", "deleted", "unchanged"].map(|key| report[key].as_u64().unwrap())
}

#[test]
fn sync_carries_additions_updates_and_deletions_between_every_kind_of_store() {
    // Every plugin is a source once and a target once.
    let pairs = [
        ("parquet", "chroma"),
        ("chroma", "lance"),
        ("lance", "leann"),
        ("leann", "parquet"),
    ];
    let installed = store_plugins();
    for (from, to) in pairs {
        assert!(
            installed.iter().any(|p| p == from) && installed.iter().any(|p| p == to),
            "{from} or {to} is not built: {installed:?}"
        );
        let env = TestEnv::new();
        let (source, target) = (env.store(from, "source"), env.store(to, "target"));
        env.generate(&source, "notes", 200, DIMENSION as u32, &[]);
        env.ragged(&["backend", "migrate", &source, &target, "--json"]).ok();

        // Right after a migration the target is the baseline: nothing is missing or extra.
        let first = sync(&env, &source, &target);
        assert_eq!(first["baseline"], "target", "{from} -> {to}: {first:#}");
        let [added, updated, deleted, unchanged] = changes(&first);
        assert_eq!(
            (added, deleted, updated + unchanged),
            (0, 0, 200),
            "{from} -> {to}: {first:#}"
        );

        // Five new records, three changed, four deleted: in the source only.
        let mut lines: Vec<Value> = (0..5).map(|i| record(&format!("new-{i}"), 1)).collect();
        lines.extend([3, 50, 199].map(|i| record(&format!("doc-{i:08}"), 2)));
        write_jsonl(&env.path("changes.jsonl"), &lines);
        let ingested = env
            .ragged(&[
                "ingest",
                "changes.jsonl",
                "--to",
                &source,
                "--collection",
                "notes",
                "--json",
            ])
            .ok()
            .json();
        assert_eq!(ingested["stores"][0]["written"], 8, "{ingested:#}");
        let doomed = [7, 8, 120, 121].map(|i| format!("doc-{i:08}"));
        let mut delete = vec!["delete", "--from", &source, "--collection", "notes", "--json"];
        delete.extend(doomed.iter().map(String::as_str));
        env.ragged(&delete).ok();

        let second = sync(&env, &source, &target);
        assert_eq!(second["baseline"], "state", "{from} -> {to}: {second:#}");
        assert_eq!(changes(&second), [5, 3, 4, 193], "{from} -> {to}: {second:#}");
        assert_eq!(second["verification"]["ok"], true, "{second:#}");
        assert_eq!(second["verification"]["target_count"], 201, "{second:#}");

        // Nothing changed since: nothing is written.
        assert_eq!(changes(&sync(&env, &source, &target)), [0, 0, 0, 201], "{from} -> {to}");
        env.ragged(&["backend", "verify", &source, &target, "--full"]).ok();
    }
}

#[test]
fn a_lost_sync_state_is_rebuilt_from_the_target_without_copying() {
    let env = TestEnv::new();
    let (source, target) = (env.store("parquet", "source"), env.store("parquet", "target"));
    env.generate(&source, "notes", 300, DIMENSION as u32, &[]);
    assert_eq!(changes(&sync(&env, &source, &target)), [300, 0, 0, 0]);
    std::fs::remove_dir_all(env.path("home/sync")).unwrap();
    let rebuilt = sync(&env, &source, &target);
    assert_eq!(rebuilt["baseline"], "target", "{rebuilt:#}");
    assert_eq!(changes(&rebuilt), [0, 0, 0, 300], "{rebuilt:#}");
}

#[test]
fn a_store_failing_during_dual_write_loses_nothing_after_the_retry() {
    let env = TestEnv::new();
    let (good, flaky) = (env.store("parquet", "good"), env.store("tampering", "flaky"));
    // The flaky store refuses any write holding r-15: the second chunk of ten.
    std::fs::create_dir_all(env.path("flaky")).unwrap();
    std::fs::write(env.path("flaky/refuse-writes"), "r-15\n").unwrap();
    let mut lines: Vec<Value> = (0..50).map(|i| record(&format!("r-{i}"), 1)).collect();
    // r-15 comes back in a later chunk: only replaying in order leaves version 2 in place.
    lines[35] = record("r-15", 2);
    write_jsonl(&env.path("records.jsonl"), &lines);
    let both = format!("{good},{flaky}");
    let run = env.ragged(&[
        "ingest",
        "records.jsonl",
        "--to",
        &both,
        "--collection",
        "notes",
        "--chunk-size",
        "10",
        "--json",
    ]);
    run.code(1);
    let report = run.json();
    assert_eq!(report["stores"][0]["written"], 50, "{report:#}");
    assert_eq!(report["stores"][0]["queued"], 0, "{report:#}");
    assert_eq!(report["stores"][1]["written"], 10, "{report:#}");
    assert_eq!(report["stores"][1]["queued"], 40, "{report:#}");
    assert!(
        report["stores"][1]["error"].as_str().unwrap().contains("refuse-writes"),
        "{report:#}"
    );
    let retry = env.path("records.jsonl.retry.jsonl");
    assert_eq!(report["retry_file"], retry.display().to_string());

    // Still failing: the queue stays whole.
    let again = env.ragged(&["ingest", "--retry", &retry.display().to_string(), "--json"]);
    again.code(1);
    assert_eq!(again.json()["remaining"], 40);

    std::fs::remove_file(env.path("flaky/refuse-writes")).unwrap();
    let replayed = env
        .ragged(&["ingest", "--retry", &retry.display().to_string(), "--json"])
        .ok()
        .json();
    assert_eq!(replayed["stores"][0]["written"], 40, "{replayed:#}");
    assert!(!retry.exists(), "an applied retry file must be removed");
    env.ragged(&["backend", "verify", &good, &flaky, "--full", "--exact"])
        .ok();
    // The tampering store is one JSON file per collection: read r-15 straight from it.
    let stored: Value = serde_json::from_str(&std::fs::read_to_string(env.path("flaky/notes.json")).unwrap()).unwrap();
    let r15 = stored["records"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == "r-15")
        .expect("r-15 stored");
    assert_eq!(
        r15["document"], "r-15, version 2",
        "the replay must keep the later version"
    );
}

#[test]
fn cutover_switches_the_default_only_when_the_stores_agree() {
    let env = TestEnv::new();
    let (source, target) = (env.store("parquet", "source"), env.store("parquet", "target"));
    env.generate(&source, "notes", 100, DIMENSION as u32, &[]);
    env.ragged(&["backend", "set", &source, "--global"]).ok();

    let corrupted = env.store("tampering", "corrupted");
    let refused = env.ragged(&[
        "backend",
        "cutover",
        &source,
        &corrupted,
        "--target-option",
        "tamper=doc-00000042",
    ]);
    refused.code(1).stderr_has("not switched");
    let current = env.ragged(&["backend", "current", "--json"]).ok().json();
    assert_eq!(current["store"], source.as_str(), "{current:#}");

    env.ragged(&["backend", "cutover", &source, &target])
        .ok()
        .stderr_has("switched");
    let current = env.ragged(&["backend", "current", "--json"]).ok().json();
    assert_eq!(current["store"], target.as_str(), "{current:#}");
    env.ragged(&["backend", "verify", &source, &target, "--full", "--exact"])
        .ok();
}

#[test]
fn ingest_reads_parquet_and_names_the_file_of_bad_input() {
    let env = TestEnv::new();
    // The parquet plugin's part files hold the canonical columns: a Parquet file any tool can write.
    let export = env.store("parquet", "export");
    env.generate(&export, "notes", 120, DIMENSION as u32, &[]);
    let part = std::fs::read_dir(env.path("export/notes"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "parquet"))
        .expect("a part file");
    let target = env.store("parquet", "target");
    env.ragged(&[
        "ingest",
        &part.display().to_string(),
        "--to",
        &target,
        "--collection",
        "notes",
    ])
    .ok();
    env.ragged(&["backend", "verify", &export, &target, "--full", "--exact"])
        .ok();

    std::fs::write(
        env.path("bad.jsonl"),
        format!("{}\n{{\"id\": \"x\", \"document\": \"no vector\"}}\n", record("ok", 1)),
    )
    .unwrap();
    env.ragged(&["ingest", "bad.jsonl", "--to", &target])
        .code(2)
        .stderr_has("bad.jsonl:2: not a record");
    std::fs::write(env.path("fake.parquet"), "not parquet").unwrap();
    env.ragged(&["ingest", "fake.parquet", "--to", &target])
        .code(2)
        .stderr_has("fake.parquet: not a readable Parquet file");
    std::fs::write(env.path("records.csv"), "id,embedding\n").unwrap();
    env.ragged(&["ingest", "records.csv", "--to", &target])
        .code(2)
        .stderr_has("records.csv: unknown file type '.csv'");
    std::fs::write(env.path("broken.retry.jsonl"), "{\"store\": 1}\n").unwrap();
    env.ragged(&["ingest", "--retry", "broken.retry.jsonl"])
        .code(2)
        .stderr_has("broken.retry.jsonl:1: not a ragged retry entry");
}

#[cfg(unix)]
#[test]
fn sync_watch_follows_the_source_until_interrupted() {
    let env = TestEnv::new();
    let (source, target) = (env.store("parquet", "source"), env.store("parquet", "target"));
    env.generate(&source, "notes", 50, DIMENSION as u32, &[]);
    let mut child = env
        .command()
        .args([
            "backend",
            "sync",
            &source,
            &target,
            "--watch",
            "1",
            "--json",
            "--queries",
            "0",
        ])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let count = || -> u64 {
        let run = env
            .command()
            .args(["backend", "collections", &target, "--json"])
            .output()
            .unwrap();
        serde_json::from_slice::<Value>(&run.stdout)
            .ok()
            .and_then(|v| v[0]["count"].as_u64())
            .unwrap_or(0)
    };
    let wait_for = |expected: u64| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        while count() != expected {
            assert!(
                std::time::Instant::now() < deadline,
                "the target never reached {expected} records"
            );
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    };
    wait_for(50);
    write_jsonl(&env.path("more.jsonl"), &[record("late-1", 1), record("late-2", 1)]);
    env.ragged(&["ingest", "more.jsonl", "--to", &source, "--collection", "notes"])
        .ok();
    wait_for(52);
    let pid = child.id().to_string();
    std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "Ctrl-C ends a watch as interrupted");
}
