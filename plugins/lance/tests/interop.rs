//! Interop tests against the official `lancedb==0.40.0` / `pylance==14.0.2` packages.
//!
//! The Python side (`tests/python/lance_tool.py`) builds tables with lancedb itself and dumps what
//! lancedb returns; these tests drive the plugin through the real FFI path (`open_through_ffi`)
//! and compare values bit for bit. Without the venv they print "skipped: ..." unless
//! `RAGGED_REQUIRE_INTEROP=1`, when they fail.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use ragged_plugin_api::arrow::{batch_to_records, canonical_schema, records_to_batch};
use ragged_plugin_api::testing::open_through_ffi;
use ragged_plugin_api::{
    Access, Backend, BatchStream, CollectionInfo, DistanceMetric, ErrorCode, ExtractRequest, LoadMode, LoadRequest,
    OpenRequest, PluginError, Record,
};
use ragged_plugin_lance::LanceStore;
use serde_json::{Value, json};

// ------------------------------------------------------------------------------------------------
// Harness

fn tool(python: &Path, args: &[&str]) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/lance_tool.py");
    let output = Command::new(python)
        .arg(&script)
        .args(args)
        .output()
        .expect("runs python");
    assert!(
        output.status.success(),
        "lance_tool.py {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn open_with(path: &Path, access: Access, options: &[(&str, &str)]) -> Result<Box<dyn Backend>, PluginError> {
    open_through_ffi::<LanceStore>(&OpenRequest {
        location: path.display().to_string(),
        options: options
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        access,
    })
}

fn extract(store: &dyn Backend, name: &str, batch_size: u32) -> Result<Vec<Record>, PluginError> {
    let stream = store.extract(name, &ExtractRequest::records(batch_size, 0))?;
    let mut out = Vec::new();
    for batch in stream.into_reader().expect("reader") {
        let batch = batch.expect("batch");
        assert!(batch.num_rows() <= batch_size as usize);
        out.extend(batch_to_records(&batch).expect("canonical"));
    }
    Ok(out)
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("read json")).expect("json")
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// Every file under `dir` with its bytes: proof that nothing changed.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(dir).expect("readdir").flatten() {
        if entry.path().is_dir() {
            out.extend(snapshot(&entry.path()));
        } else {
            out.insert(entry.path(), std::fs::read(entry.path()).expect("read"));
        }
    }
    out
}

/// A metadata value in lance_tool.py's typed form: ["int", 2], ["float", f64 bits], ...
fn typed(value: &Value) -> Value {
    match value {
        Value::String(s) => json!(["str", s]),
        Value::Bool(b) => json!(["bool", b]),
        Value::Number(n) if n.is_f64() => json!(["float", n.as_f64().expect("f64").to_bits()]),
        Value::Number(n) => json!(["int", n]),
        Value::Array(items) if items.is_empty() => json!(["empty[]", []]),
        Value::Array(items) => {
            let kind = typed(&items[0])[0].as_str().expect("kind").to_owned();
            json!([
                format!("{kind}[]"),
                items.iter().map(|v| typed(v)[1].clone()).collect::<Vec<_>>()
            ])
        }
        other => panic!("unexpected metadata value {other}"),
    }
}

fn bits(vector: &[f32]) -> Vec<u32> {
    vector.iter().map(|x| x.to_bits()).collect()
}

fn stream_of(records: &[Record], dimension: u32, chunk: usize) -> BatchStream {
    let batches = records
        .chunks(chunk.max(1))
        .map(|c| records_to_batch(c, dimension).expect("valid records"))
        .collect();
    BatchStream::from_batches(canonical_schema(dimension), batches)
}

fn load_request(name: &str, dimension: u32, metric: DistanceMetric, mode: LoadMode) -> LoadRequest {
    let mut metadata = serde_json::Map::new();
    metadata.insert("source".into(), json!("ragged"));
    LoadRequest {
        collection: CollectionInfo {
            name: name.into(),
            dimension,
            metric,
            count: 0,
            embedding_model: Some("test-model".into()),
            index_params: Some(json!({"hnsw": {"M": 16}})),
            metadata,
            extras: serde_json::Map::new(),
        },
        mode,
    }
}

/// Deterministic records with every kind of metadata, unicode, null and empty documents.
fn records(n: usize, dimension: usize) -> Vec<Record> {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
    };
    (0..n)
        .map(|i| {
            let metadata = match i % 5 {
                0 => None,
                1 => Some(json!({"page": i, "score": 2.0, "source": format!("s{}", i % 3), "flag": i % 2 == 0})),
                2 => Some(json!({"page": i, "score": i as f64 * 0.25, "tags": ["a", "b"], "mixed": 1})),
                3 => Some(json!({"page": i, "mixed": "one", "big": 9_007_199_254_740_993u64, "floats": [0.5, 2.0]})),
                _ => Some(json!({"page": i, "ünï": "ç", "bad key": true})),
            };
            Record {
                id: if i == 7 {
                    "unicode é 字 🦀".to_owned()
                } else {
                    format!("doc-{i:04}")
                },
                document: match i % 7 {
                    0 => None,
                    1 => Some(String::new()),
                    _ => Some(format!("document {i} ünïcödé")),
                },
                metadata: metadata.map(|m| m.to_string()),
                embedding: (0..dimension).map(|_| next()).collect(),
            }
        })
        .collect()
}

// ------------------------------------------------------------------------------------------------
// 1. Tables written by ragged, read by Python lancedb

#[test]
fn python_lancedb_reads_tables_written_by_ragged() {
    let Some(python) = ragged_interop::venv_python("lance") else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("db");
    let all = records(300, 8);
    {
        // A low threshold so that this small table gets the vector index a large one would.
        let store = open_with(&db, Access::ReadWrite, &[("index_min_rows", "256")]).expect("opens");
        let summary = store
            .load(
                &load_request("docs", 8, DistanceMetric::Cosine, LoadMode::Create),
                stream_of(&all, 8, 100),
            )
            .expect("loads");
        assert_eq!(summary.records_written, 300);
        // A replayed batch (one document changed) upserts.
        let mut replay = all[..50].to_vec();
        replay[3].document = Some("replaced".into());
        store
            .load(
                &load_request("docs", 8, DistanceMetric::Cosine, LoadMode::Upsert),
                stream_of(&replay, 8, 50),
            )
            .expect("replays");
        assert_eq!(store.count("docs").expect("counts"), 300);
    }
    let mut expected = all.clone();
    expected[3].document = Some("replaced".into());

    let sampled: Vec<&Record> = expected.iter().step_by(29).collect();
    let queries = dir.path().join("queries.json");
    std::fs::write(
        &queries,
        json!({"vectors": sampled.iter().map(|r| bits(&r.embedding)).collect::<Vec<_>>(), "k": 5}).to_string(),
    )
    .expect("writes");
    let out = dir.path().join("dump.json");
    tool(
        &python,
        &["dump", path_str(&db), "docs", path_str(&out), path_str(&queries)],
    );
    let dump = read_json(&out);

    // The schema Python users expect, with the collection description in its metadata.
    let schema: Vec<(String, String)> = dump["schema"]
        .as_array()
        .expect("schema")
        .iter()
        .map(|f| {
            (
                f[0].as_str().expect("name").to_owned(),
                f[1].as_str().expect("type").to_owned(),
            )
        })
        .collect();
    assert_eq!(
        schema[..4],
        [
            ("id".to_owned(), "string".to_owned()),
            ("vector".to_owned(), "fixed_size_list<item: float>[8]".to_owned()),
            ("text".to_owned(), "string".to_owned()),
            ("metadata_json".to_owned(), "string".to_owned()),
        ]
    );
    let promoted: Vec<&str> = schema[4..].iter().map(|(n, _)| n.as_str()).collect();
    // Keys of the first batch with one scalar type; "mixed" (int and string), "tags", "ünï" and
    // "bad key" are not promoted.
    assert_eq!(promoted, ["big", "flag", "page", "score", "source"]);
    let meta = &dump["schema_metadata"];
    assert_eq!(meta["ragged.metric"], "cosine");
    assert_eq!(meta["ragged.embedding_model"], "test-model");
    assert_eq!(meta["ragged.collection_metadata"], r#"{"source":"ragged"}"#);
    assert!(
        dump["tags"]
            .as_array()
            .expect("tags")
            .iter()
            .any(|t| t.as_str().is_some_and(|t| t.starts_with("ragged-before-v"))),
        "no pre-load tag: {}",
        dump["tags"]
    );

    // The vector index has the collection's metric, so a plain `tbl.search(v)` ranks as the source.
    assert_eq!(dump["indices"], json!([["IvfHnswSq", ["vector"], "cosine"]]));

    // Same rows, bit for bit.
    let rows = dump["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), 300);
    assert_eq!(dump["count"], 300);
    let by_id: BTreeMap<&str, &Value> = rows.iter().map(|r| (r["id"][1].as_str().expect("id"), r)).collect();
    for record in &expected {
        let row = by_id
            .get(record.id.as_str())
            .unwrap_or_else(|| panic!("python lacks '{}'", record.id));
        assert_eq!(row["vector"], json!(bits(&record.embedding)), "{}", record.id);
        assert_eq!(
            row["text"],
            record.document.as_ref().map_or(Value::Null, |d| json!(["str", d])),
            "{}",
            record.id
        );
        let metadata: Option<Value> = record
            .metadata
            .as_deref()
            .map(|m| serde_json::from_str(m).expect("json"));
        let stored: Option<Value> = row["metadata_json"][1]
            .as_str()
            .map(|m| serde_json::from_str(m).expect("json"));
        assert_eq!(stored, metadata, "{}", record.id);
        // Promoted columns hold the typed value, or null.
        let page = metadata
            .as_ref()
            .and_then(|m| m.get("page"))
            .map(typed)
            .unwrap_or(Value::Null);
        assert_eq!(row["page"], page, "{}", record.id);
        let score = metadata
            .as_ref()
            .and_then(|m| m.get("score"))
            .map(typed)
            .unwrap_or(Value::Null);
        assert_eq!(row["score"], score, "{}", record.id);
    }

    // LanceDB ranks each sampled record first (through the index, plus brute force over the 50
    // rows the replay rewrote after the index was built).
    let searches = dump["searches"].as_array().expect("searches");
    assert_eq!(searches.len(), sampled.len());
    for (record, hits) in sampled.iter().zip(searches) {
        assert_eq!(
            hits[0],
            json!(record.id),
            "search with the vector of '{}' gave {hits}",
            record.id
        );
    }

    // Python users can filter on the promoted columns.
    std::fs::write(
        &queries,
        json!({"vectors": [bits(&expected[0].embedding)], "k": 1000, "where": "page >= 280 AND score IS NOT NULL"})
            .to_string(),
    )
    .expect("writes");
    tool(
        &python,
        &["dump", path_str(&db), "docs", path_str(&out), path_str(&queries)],
    );
    let filtered: BTreeSet<String> = read_json(&out)["searches"][0]
        .as_array()
        .expect("hits")
        .iter()
        .map(|h| h.as_str().expect("id").to_owned())
        .collect();
    let want: BTreeSet<String> = expected
        .iter()
        .filter(|r| {
            let m: Value = r
                .metadata
                .as_deref()
                .map_or(Value::Null, |m| serde_json::from_str(m).expect("json"));
            m["page"].as_u64().is_some_and(|p| p >= 280) && m["score"].is_number()
        })
        .map(|r| r.id.clone())
        .collect();
    assert!(!want.is_empty());
    assert_eq!(filtered, want);
}

#[test]
fn python_lancedb_sees_exactly_the_rows_a_ragged_delete_left() {
    let Some(python) = ragged_interop::venv_python("lance") else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("db");
    let all = records(300, 8);
    // Every 11th record (the unicode id among them) and one that never existed.
    let doomed: Vec<String> = all
        .iter()
        .skip(7)
        .step_by(11)
        .map(|r| r.id.clone())
        .chain(["doc-9999".to_owned()])
        .collect();
    {
        let store = open_with(&db, Access::ReadWrite, &[]).expect("opens");
        store
            .load(
                &load_request("docs", 8, DistanceMetric::L2, LoadMode::Create),
                stream_of(&all, 8, 100),
            )
            .expect("loads");
        assert_eq!(store.delete("docs", &doomed).expect("deletes"), 27);
    }
    let out = dir.path().join("dump.json");
    tool(&python, &["dump", path_str(&db), "docs", path_str(&out)]);
    let dump = read_json(&out);
    let rows = dump["rows"].as_array().expect("rows");
    assert_eq!(dump["count"], 273);
    let kept: Vec<&Record> = all.iter().filter(|r| !doomed.contains(&r.id)).collect();
    assert_eq!(rows.len(), kept.len());
    for (row, record) in rows.iter().zip(&kept) {
        assert_eq!(row["id"], json!(["str", record.id]));
        assert_eq!(row["vector"], json!(bits(&record.embedding)), "{}", record.id);
    }
}

#[test]
fn rows_python_lancedb_deleted_are_gone_for_ragged() {
    let Some(python) = ragged_interop::venv_python("lance") else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("db");
    let vectors: Vec<Vec<u32>> = (0..20u32)
        .map(|i| (0..3u32).map(|j| (i as f32 - j as f32 * 0.5).to_bits()).collect())
        .collect();
    let ids: Vec<String> = (0..20).map(|i| format!("p{i}")).collect();
    let spec = json!({"tables": [{"name": "notes", "columns": [
        {"name": "id", "type": "string", "nullable": false, "values": ids},
        {"name": "vector", "type": "vector", "dim": 3, "values": vectors},
    ]}]});
    let spec_path = dir.path().join("spec.json");
    std::fs::write(&spec_path, spec.to_string()).expect("writes");
    tool(&python, &["build", path_str(&db), path_str(&spec_path)]);
    // One row from each of the two commits the tool makes.
    let gone = dir.path().join("gone.json");
    std::fs::write(&gone, json!(["p3", "p15"]).to_string()).expect("writes");
    tool(&python, &["delete", path_str(&db), "notes", path_str(&gone)]);

    let store = open_with(&db, Access::ReadOnly, &[]).expect("opens");
    assert_eq!(store.count("notes").expect("counts"), 18);
    let got = extract(store.as_ref(), "notes", 5).expect("extracts");
    let want: Vec<&String> = ids.iter().filter(|id| *id != "p3" && *id != "p15").collect();
    assert_eq!(got.iter().map(|r| &r.id).collect::<Vec<_>>(), want);
    for record in &got {
        let i: usize = record.id[1..].parse().expect("a number");
        assert_eq!(bits(&record.embedding), vectors[i], "{}", record.id);
    }
}

// ------------------------------------------------------------------------------------------------
// 2. Tables written by Python lancedb, read by ragged

fn column(name: &str, kind: &str, values: Value) -> Value {
    json!({"name": name, "type": kind, "values": values})
}

#[test]
fn ragged_reads_tables_written_by_python_lancedb_exactly() {
    let Some(python) = ragged_interop::venv_python("lance") else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("db");
    let n = 40usize;
    let vector = |i: usize, salt: u32| -> Vec<u32> {
        (0..4u32)
            .map(|j| ((i as u32 * 7 + j * 3 + salt) as f32 / 11.0 - 1.5).to_bits())
            .collect()
    };
    let nullable = |i: usize, v: Value| if i % 4 == 3 { Value::Null } else { v };
    let spec = json!({"tables": [
        {"name": "notes", "columns": [
            {"name": "id", "type": "string", "nullable": false, "values": (0..n).map(|i| format!("n{i}")).collect::<Vec<_>>()},
            {"name": "embedding", "type": "vector", "dim": 4, "values": (0..n).map(|i| vector(i, 0)).collect::<Vec<_>>()},
            column("text", "string", (0..n).map(|i| if i % 5 == 0 { Value::Null } else { json!(format!("note {i} ✓")) }).collect()),
            column("page", "int64", (0..n).map(|i| nullable(i, json!(i * 10))).collect()),
            column("ratio", "float32", (0..n).map(|i| nullable(i + 1, json!(i as f64 / 3.0))).collect()),
            column("score", "float64", (0..n).map(|i| json!(i as f64 * 0.5)).collect()),
            column("flag", "bool", (0..n).map(|i| nullable(i + 2, json!(i % 2 == 0))).collect()),
            column("tags", "list_string", (0..n).map(|i| nullable(i, json!(["x", format!("t{}", i % 3)]))).collect()),
            column("when", "timestamp", (0..n).map(|i| nullable(i + 3, json!(1_700_000_000 + i as i64 * 86_400))).collect()),
        ]},
        {"name": "indexed", "index": {"metric": "cosine", "column": "vec"}, "columns": [
            {"name": "id", "type": "string", "values": (0..300).map(|i| format!("x{i}")).collect::<Vec<_>>()},
            {"name": "vec", "type": "vector", "dim": 4, "values": (0..300).map(|i| vector(i * 13 % 97, i as u32)).collect::<Vec<_>>()},
        ]},
        {"name": "novec", "columns": [
            {"name": "id", "type": "string", "values": ["a"]},
            column("text", "string", json!(["only text"])),
        ]},
        {"name": "twovec", "columns": [
            {"name": "id", "type": "string", "values": ["a", "b"]},
            {"name": "a", "type": "vector", "dim": 2, "values": [vector(0, 1)[..2].to_vec(), vector(1, 1)[..2].to_vec()]},
            {"name": "b", "type": "vector", "dim": 3, "values": [vector(0, 2)[..3].to_vec(), vector(1, 2)[..3].to_vec()]},
        ]},
    ]});
    let spec_path = dir.path().join("spec.json");
    std::fs::write(&spec_path, spec.to_string()).expect("writes");
    tool(&python, &["build", path_str(&db), path_str(&spec_path)]);
    let out = dir.path().join("notes.json");
    tool(&python, &["dump", path_str(&db), "notes", path_str(&out)]);
    let dump = read_json(&out);
    let before = snapshot(&db);

    let store = open_with(&db, Access::ReadOnly, &[]).expect("opens");
    assert_eq!(
        store.list_collections().expect("lists"),
        ["indexed", "notes", "novec", "twovec"]
    );
    // A table with no metric of its own takes its vector index's.
    let indexed = store.describe("indexed").expect("describes");
    assert_eq!((indexed.metric, indexed.count), (DistanceMetric::Cosine, 300));
    let info = store.describe("notes").expect("describes");
    assert_eq!(
        (info.dimension, info.metric, info.count),
        (4, DistanceMetric::L2, n as u64)
    );
    assert_eq!(info.extras["lance_columns"]["vector"], "embedding");

    // Every row, in lancedb's own order, with the extra columns as typed metadata.
    let got = extract(store.as_ref(), "notes", 7).expect("extracts");
    let rows = dump["rows"].as_array().expect("rows");
    assert_eq!(got.len(), rows.len());
    for (record, row) in got.iter().zip(rows) {
        assert_eq!(json!(["str", record.id]), row["id"]);
        assert_eq!(json!(bits(&record.embedding)), row["embedding"], "{}", record.id);
        assert_eq!(
            record.document.as_ref().map_or(Value::Null, |d| json!(["str", d])),
            row["text"]
        );
        let metadata: serde_json::Map<String, Value> =
            serde_json::from_str(record.metadata.as_deref().expect("metadata")).expect("object");
        let mine: BTreeMap<String, Value> = metadata.iter().map(|(k, v)| (k.clone(), typed(v))).collect();
        let theirs: BTreeMap<String, Value> = ["page", "ratio", "score", "flag", "tags", "when"]
            .iter()
            .filter(|k| !row[**k].is_null())
            .map(|k| ((*k).to_owned(), row[*k].clone()))
            .collect();
        assert_eq!(mine, theirs, "{}", record.id);
        ragged_plugin_api::validate_metadata(record.metadata.as_deref().expect("metadata")).expect("canonical");
    }

    // Query, fetch and sample on the foreign table.
    let probe = &got[17];
    let hits = store.query("notes", &probe.embedding, 3).expect("queries");
    assert_eq!(hits[0].id, probe.id);
    assert_eq!(hits[0].distance, 0.0);
    let fetched = store
        .fetch("notes", &[probe.id.clone(), "nope".into(), got[2].id.clone()])
        .expect("fetches");
    let fetched: Vec<Record> = fetched
        .into_reader()
        .expect("reader")
        .flat_map(|b| batch_to_records(&b.expect("batch")).expect("records"))
        .collect();
    assert_eq!(fetched, vec![probe.clone(), got[2].clone()]);

    // Clear refusals.
    let error = store.describe("novec").expect_err("no vector column");
    assert_eq!(error.code, ErrorCode::Incompatible);
    assert!(
        error.message.contains("table 'novec' has no usable vector column")
            && error.message.contains("id (Utf8), text (Utf8)"),
        "{error}"
    );
    let error = store.describe("twovec").expect_err("two vector columns");
    assert!(error.message.contains("several vector columns (a, b)"), "{error}");
    drop(store);

    // The store option picks the column.
    let store = open_with(&db, Access::ReadOnly, &[("vector_column", "b")]).expect("opens");
    let two = extract(store.as_ref(), "twovec", 10).expect("extracts");
    assert_eq!(two.len(), 2);
    assert_eq!(bits(&two[1].embedding), vector(1, 2)[..3].to_vec());
    let metadata: Value = serde_json::from_str(two[1].metadata.as_deref().expect("metadata")).expect("json");
    assert_eq!(
        metadata["a"],
        json!(
            vector(1, 1)[..2]
                .iter()
                .map(|b| f64::from(f32::from_bits(*b)))
                .collect::<Vec<_>>()
        )
    );
    drop(store);

    // Reading changed nothing, and the store refuses writes while read-only.
    assert!(snapshot(&db) == before, "a read-only open changed the directory");
    let store = open_with(&db, Access::ReadOnly, &[]).expect("opens");
    let error = store
        .load(
            &load_request("x", 4, DistanceMetric::L2, LoadMode::Create),
            stream_of(&[], 4, 1),
        )
        .expect_err("read-only");
    assert_eq!(error.code, ErrorCode::ReadOnly);
    // ragged does not write into a table it did not create.
    let store = open_with(&db, Access::ReadWrite, &[]).expect("opens");
    let error = store
        .load(
            &load_request("notes", 4, DistanceMetric::L2, LoadMode::Upsert),
            stream_of(&records(2, 4), 4, 1),
        )
        .expect_err("foreign table");
    assert_eq!(error.code, ErrorCode::Unsupported);
    let error = store.delete("notes", &["n1".to_owned()]).expect_err("foreign table");
    assert_eq!(error.code, ErrorCode::Unsupported);
    assert_eq!(store.count("notes").expect("counts"), n as u64);
}
