//! Interop tests against the official `chromadb==1.5.9` package.
//!
//! The Python side (`tests/python/chroma_tool.py`) builds stores with chromadb itself and dumps
//! what chromadb returns; these tests drive the plugin through the real FFI path
//! (`open_through_ffi`) and compare values bit for bit. Without the venv they print
//! "skipped: ..." unless `RAGGED_REQUIRE_INTEROP=1`, when they fail.

// The skip notice and the measured timings go to stderr by the project's interop convention.
#![allow(clippy::print_stderr)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use ragged_plugin_api::arrow::arrow_array::cast::AsArray;
use ragged_plugin_api::arrow::{batch_to_records, canonical_schema, records_to_batch};
use ragged_plugin_api::testing::open_through_ffi;
use ragged_plugin_api::{
    Access, Backend, BatchStream, CollectionInfo, DistanceMetric, ErrorCode, ExtractRequest, LoadMode, LoadRequest,
    OpenRequest, PluginError, Record,
};
use ragged_plugin_chroma::ChromaStore;
use serde_json::{Value, json};

// ------------------------------------------------------------------------------------------------
// Harness

fn python() -> Option<PathBuf> {
    ragged_interop::venv_python("chroma")
}

fn tool(python: &Path, args: &[&str]) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/chroma_tool.py");
    let output = Command::new(python)
        .arg(&script)
        .args(args)
        .env("ANONYMIZED_TELEMETRY", "False")
        .output()
        .expect("runs python");
    assert!(
        output.status.success(),
        "chroma_tool.py {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn open(path: &Path, access: Access) -> Result<Box<dyn Backend>, PluginError> {
    open_through_ffi::<ChromaStore>(&OpenRequest {
        location: path.display().to_string(),
        options: BTreeMap::new(),
        access,
    })
}

/// Records with their metadata in canonical form: key order carries no meaning.
fn sorted_metadata(records: Vec<Record>) -> Vec<Record> {
    records
        .into_iter()
        .map(|mut record| {
            record.metadata = record.metadata.as_deref().map(ragged_plugin_api::canonical_metadata);
            record
        })
        .collect()
}

fn extract(store: &dyn Backend, name: &str, batch_size: u32) -> Result<Vec<Record>, String> {
    let stream = store
        .extract(name, &ExtractRequest::records(batch_size, 0))
        .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for batch in stream.into_reader().map_err(|e| e.to_string())? {
        let batch = batch.map_err(|e| e.to_string())?;
        assert!(batch.num_rows() <= batch_size as usize);
        out.extend(batch_to_records(&batch).map_err(|e| e.to_string())?);
    }
    Ok(out)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("readdir").flatten() {
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).expect("copy");
        }
    }
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

/// A value in the typed form chroma_tool.py writes: ["int", 2], ["float", bits], ...
fn typed(value: &Value) -> Value {
    match value {
        Value::String(s) => json!(["str", s]),
        Value::Bool(b) => json!(["bool", b]),
        Value::Number(n) if n.is_f64() => json!(["float", n.as_f64().expect("f64").to_bits()]),
        Value::Number(n) => json!(["int", n]),
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

fn typed_metadata(text: Option<&str>) -> Value {
    match text {
        None => Value::Null,
        Some(text) => {
            let Value::Object(map) = serde_json::from_str(text).expect("metadata json") else {
                panic!("metadata is not an object: {text}")
            };
            Value::Object(map.iter().map(|(k, v)| (k.clone(), typed(v))).collect())
        }
    }
}

/// A record in chroma_tool.py's dump form.
fn dump_form(record: &Record) -> Value {
    json!({
        "id": record.id,
        "document": record.document,
        "metadata": typed_metadata(record.metadata.as_deref()),
        "embedding": record.embedding.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
    })
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("read json")).expect("json")
}

/// Compares ragged's extraction of every collection with chromadb's dump, record by record.
fn assert_same_as_dump(store: &dyn Backend, dump: &Value) {
    let collections = dump["collections"].as_object().expect("collections");
    let names: Vec<String> = collections.keys().cloned().collect();
    assert_eq!(store.list_collections().expect("lists"), names);
    for (name, expected) in collections {
        let got = extract(store, name, 97).unwrap_or_else(|e| panic!("extract {name}: {e}"));
        let expected_records = expected["records"].as_array().expect("records");
        assert_eq!(got.len(), expected_records.len(), "{name}: record count");
        for (g, e) in got.iter().zip(expected_records) {
            assert_eq!(&dump_form(g), e, "{name}: record differs");
        }
        let info = store.describe(name).expect("describes");
        assert_eq!(info.count, expected["count"].as_u64().expect("count"), "{name}: count");
        // chroma's collection metadata = ours plus the legacy `hnsw:*` keys kept in extras.
        let mut metadata = info.metadata.clone();
        if let Some(Value::Object(legacy)) = info.extras.get("legacy_hnsw_metadata") {
            metadata.extend(legacy.clone());
        }
        let ours = if metadata.is_empty() {
            Value::Null
        } else {
            typed_metadata(Some(&Value::Object(metadata).to_string()))
        };
        assert_eq!(ours, expected["metadata"], "{name}: collection metadata");
    }
}

// ------------------------------------------------------------------------------------------------
// 1. Stores built by chromadb, read by ragged

#[test]
fn extraction_equals_chromadb_get_exactly() {
    let Some(python) = python() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let built = dir.path().join("built");
    tool(&python, &["build", built.to_str().expect("utf-8")]);
    // Chroma applies metadata to its tables at once, so log rows whose metadata is still pending
    // only come from other writers: append some by hand (merge, key deletion, document change,
    // upsert of a new id, delete), as another program would, for both readers to replay.
    {
        let conn = rusqlite::Connection::open(built.join("chroma.sqlite3")).expect("opens");
        let id: String = conn
            .query_row("SELECT id FROM collections WHERE name='small_l2'", [], |r| r.get(0))
            .expect("collection");
        let topic = format!("persistent://default/default/{id}");
        let vector: Vec<u8> = (0..8).flat_map(|i| (i as f32 * 0.5 - 1.0).to_le_bytes()).collect();
        type Row<'a> = (i64, &'a str, Option<&'a [u8]>, Option<&'a str>);
        let rows: [Row<'_>; 5] = [
            (
                1,
                "s1",
                None,
                Some(r#"{"s": null, "new": 5, "third": 90.33333333333333, "chroma:document": "raw doc"}"#),
            ),
            (1, "s2", Some(&vector), None),
            (
                2,
                "raw-new",
                Some(&vector),
                Some(r#"{"tags": ["x", "y"], "mixed": [1, 2.5], "gone": []}"#),
            ),
            (2, "s4", Some(&vector), Some(r#"{"i": -0, "f": 1e-400}"#)),
            (3, "s6", None, None),
        ];
        for (operation, record, vector, metadata) in rows {
            conn.execute(
                "INSERT INTO embeddings_queue (seq_id, operation, topic, id, vector, encoding, metadata) \
                 VALUES ((SELECT max(seq_id) + 1 FROM embeddings_queue), ?1, ?2, ?3, ?4, ?5, ?6)",
                rusqlite::params![operation, topic, record, vector, vector.map(|_| "FLOAT32"), metadata],
            )
            .expect("inserts");
        }
    }
    // chromadb applies its log when it opens a collection, so it reads a copy: ragged must see
    // the store exactly as chroma left it, tail and all.
    let copy = dir.path().join("copy");
    copy_dir(&built, &copy);
    let before = snapshot(&built);

    let store = open(&built, Access::ReadOnly).expect("opens");
    let dump_path = dir.path().join("dump.json");
    tool(
        &python,
        &[
            "dump",
            copy.to_str().expect("utf-8"),
            dump_path.to_str().expect("utf-8"),
        ],
    );
    let dump = read_json(&dump_path);
    assert_same_as_dump(store.as_ref(), &dump);

    // The hand-written log rows were replayed (and chroma agreed, above).
    let small = extract(store.as_ref(), "small_l2", 1000).expect("extracts");
    let raw = small.iter().find(|r| r.id == "raw-new").expect("upserted id");
    assert_eq!(raw.metadata.as_deref(), Some(r#"{"mixed":[1.0,2.5],"tags":["x","y"]}"#));
    assert_eq!(small.last().map(|r| r.id.as_str()), Some("raw-new"));
    let s1 = small.iter().find(|r| r.id == "s1").expect("s1");
    assert_eq!(s1.document.as_deref(), Some("raw doc"));
    assert!(
        s1.metadata
            .as_deref()
            .is_some_and(|m| m.contains(r#""new":5"#) && !m.contains(r#""s":"#))
    );
    assert!(!small.iter().any(|r| r.id == "s6"));
    // The interesting states are really there.
    let info = store.describe("big_cosine").expect("describes");
    assert_eq!(info.metric, DistanceMetric::Cosine);
    assert_eq!(info.dimension, 16);
    assert_eq!(
        store.describe("ip_legacy").expect("describes").metric,
        DistanceMetric::Ip
    );
    assert_eq!(
        store
            .describe("ip_legacy")
            .expect("describes")
            .index_params
            .expect("params")["max_neighbors"],
        json!(8)
    );
    assert_eq!(
        store.describe("small_l2").expect("describes").metric,
        DistanceMetric::L2
    );
    assert_eq!(store.describe("all_deleted").expect("describes").count, 0);
    // The embedding function chromadb records becomes the model `ragged query TEXT` embeds with.
    assert_eq!(
        store
            .describe("never_added")
            .expect("describes")
            .embedding_model
            .as_deref(),
        Some("sentence-transformers/all-MiniLM-L6-v2")
    );
    assert_eq!(info.embedding_model, None, "embedding_function=None records no model");
    let other = store.describe("tenant1/dbx/elsewhere").expect("describes");
    assert_eq!((other.count, other.extras["tenant"].clone()), (25, json!("tenant1")));
    assert!(
        built
            .join(info.extras["vector_segment"].as_str().expect("id"))
            .join("index_metadata.pickle")
            .is_file()
    );

    // Resuming from a cursor gives the same tail.
    let all = extract(store.as_ref(), "big_cosine", 500).expect("extracts");
    let stream = store
        .extract("big_cosine", &ExtractRequest::records(300, 2000))
        .expect("extracts");
    let mut tail = Vec::new();
    for batch in stream.into_reader().expect("reader") {
        tail.extend(batch_to_records(&batch.expect("batch")).expect("records"));
    }
    assert_eq!(tail, all[2000..].to_vec());

    // Query, fetch and storage on the read-only store.
    let probe = &all[1234];
    let hits = store.query("big_cosine", &probe.embedding, 3).expect("queries");
    assert_eq!(hits[0].id, probe.id);
    assert!(hits[0].distance.abs() < 1e-5, "{:?}", hits[0]);
    let fetched = store
        .fetch("big_cosine", &[probe.id.clone(), "nope".into()])
        .expect("fetches");
    let fetched: Vec<Record> = fetched
        .into_reader()
        .expect("reader")
        .flat_map(|b| batch_to_records(&b.expect("batch")).expect("records"))
        .collect();
    assert_eq!(fetched, vec![probe.clone()]);
    let storage = store.storage("big_cosine").expect("storage");
    assert_eq!(storage.records, all.len() as u64);
    assert!(storage.vectors_bytes >= all.len() as u64 * 16 * 4, "{storage:?}");
    assert!(storage.index_bytes > 0 && storage.documents_bytes > 0, "{storage:?}");

    // Read-only means read-only: not a byte changed, and writing is refused.
    drop(store);
    assert!(snapshot(&built) == before, "a read-only open changed the directory");
    let store = open(&built, Access::ReadOnly).expect("opens");
    let error = store
        .load(
            &load_request("x", 4, DistanceMetric::L2, LoadMode::Create),
            stream_of(&[], 4),
        )
        .expect_err("read-only");
    assert_eq!(error.code, ErrorCode::ReadOnly);

    // After chromadb has applied its log to the copy, ragged reads the new state the same way.
    let store = open(&copy, Access::ReadOnly).expect("opens");
    assert_same_as_dump(store.as_ref(), &dump);
}

/// A batch's metadata rows are read in storage order when they are stored together and through
/// the `(id, key)` index otherwise: whatever the order of `embedding_metadata`'s rows, every
/// collection reads the same, keys in the same order.
#[test]
fn metadata_rows_read_the_same_in_any_storage_order() {
    let Some(python) = python() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let built = dir.path().join("built");
    tool(&python, &["build", built.to_str().expect("utf-8")]);
    let read_all = |root: &Path| -> BTreeMap<String, Vec<Record>> {
        let store = open(root, Access::ReadOnly).expect("opens");
        let names = store.list_collections().expect("lists");
        (names.into_iter())
            .map(|name| (name.clone(), extract(store.as_ref(), &name, 100).expect("extracts")))
            .collect()
    };
    let expected = read_all(&built);
    assert!(
        expected["big_cosine"].len() > 2000,
        "the store has several batches a collection"
    );
    let orders = [
        // Together but backwards: every batch in one span, nothing in (row, key) order.
        "id DESC, key DESC",
        // Neighbouring records' keys interleaved within a span.
        "id / 4, key DESC, id",
        // Scattered: a batch's span covers most of the table (read through the index).
        "id % 3, id, key",
        "random()",
    ];
    for (n, order) in orders.into_iter().enumerate() {
        let copy = dir.path().join(format!("order{n}"));
        copy_dir(&built, &copy);
        let conn = rusqlite::Connection::open(copy.join("chroma.sqlite3")).expect("opens");
        conn.execute_batch(&format!(
            "CREATE TEMP TABLE rows AS SELECT * FROM embedding_metadata;
             DELETE FROM embedding_metadata;
             INSERT INTO embedding_metadata SELECT * FROM rows ORDER BY {order};"
        ))
        .expect("reorders");
        drop(conn);
        assert!(
            read_all(&copy) == expected,
            "the rows stored in the order {order} read differently"
        );
    }
}

// ------------------------------------------------------------------------------------------------
// 2. Stores written by ragged, read by chromadb

fn load_request(name: &str, dimension: u32, metric: DistanceMetric, mode: LoadMode) -> LoadRequest {
    let mut metadata = serde_json::Map::new();
    metadata.insert("source".into(), json!("ragged"));
    metadata.insert("version".into(), json!(3));
    metadata.insert("ratio".into(), json!(0.25));
    metadata.insert("flag".into(), json!(false));
    LoadRequest {
        collection: CollectionInfo {
            name: name.into(),
            dimension,
            metric,
            count: 0,
            embedding_model: None,
            index_params: None,
            metadata,
            extras: serde_json::Map::new(),
        },
        mode,
    }
}

fn stream_of(records: &[Record], dimension: u32) -> BatchStream {
    let batches = records
        .chunks(700)
        .map(|chunk| records_to_batch(chunk, dimension).expect("batch"))
        .collect();
    BatchStream::from_batches(canonical_schema(dimension), batches)
}

/// Varied records: unicode, no document, no metadata, arrays, awkward floats.
fn make_records(prefix: &str, n: usize, dimension: usize, seed: u64) -> Vec<Record> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    (0..n)
        .map(|i| {
            let embedding: Vec<f32> = (0..dimension)
                .map(|_| ((next() >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0)
                .collect();
            let document = match i % 7 {
                0 => None,
                1 => Some(format!("ünïcødé ☃ needle {i}")),
                2 => Some(String::new()),
                _ => Some(format!("document {i} of {prefix}")),
            };
            let metadata = match i % 5 {
                0 => None,
                1 => Some(json!({"i": i, "third": i as f64 / 3.0, "b": i % 2 == 0, "s": format!("s{i}")})),
                2 => Some(json!({"tags": ["a", format!("t{i}")], "nums": [i, -(i as i64)], "flts": [0.1, i as f64 * 1.5], "flags": [true, false]})),
                3 => Some(json!({"f": 2.0, "neg": -1.0e-7 * i as f64, "big": (1i64 << 50) + i as i64, "k": i % 3})),
                _ => Some(json!({"emoji": "😀", "k": i % 3})),
            };
            Record {
                id: format!("{prefix}-{i}"),
                document,
                metadata: metadata.map(|m| m.to_string()),
                embedding,
            }
        })
        .collect()
}

/// What chromadb will return for a record ragged wrote: floats as chroma's parser reads the
/// literal ragged chose, vectors of cosine collections through hnswlib's normalisation.
fn expected_from_chroma(record: &Record, metric: DistanceMetric) -> Value {
    let mut record = record.clone();
    if metric == DistanceMetric::Cosine {
        ragged_plugin_chroma::wal::cosine_round_trip(&mut record.embedding);
    }
    if let Some(text) = &record.metadata {
        let value: Value = serde_json::from_str(text).expect("json");
        let map = value.as_object().expect("object");
        if map.is_empty() {
            record.metadata = None;
        } else {
            let chroma_float = |v: &Value| -> Value {
                match v {
                    Value::Number(n) if n.is_f64() => {
                        json!(
                            ragged_plugin_chroma::wal::float_literal(n.as_f64().expect("f64"))
                                .expect("finite")
                                .1
                        )
                    }
                    other => other.clone(),
                }
            };
            let mapped: serde_json::Map<String, Value> = map
                .iter()
                .map(|(k, v)| {
                    let v = match v {
                        Value::Array(items) => Value::Array(items.iter().map(chroma_float).collect()),
                        other => chroma_float(other),
                    };
                    (k.clone(), v)
                })
                .collect();
            record.metadata = Some(Value::Object(mapped).to_string());
        }
    }
    dump_form(&record)
}

#[test]
fn chromadb_reads_back_what_ragged_wrote() {
    let Some(python) = python() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("written");
    let plans: [(&str, usize, usize, DistanceMetric); 4] = [
        ("big_l2", 1500, 16, DistanceMetric::L2),
        ("small_cosine", 300, 8, DistanceMetric::Cosine),
        ("small_ip", 120, 8, DistanceMetric::Ip),
        ("tenant9/db9/other", 40, 4, DistanceMetric::Cosine),
    ];
    let mut expected: BTreeMap<String, (DistanceMetric, Vec<Record>)> = BTreeMap::new();
    {
        let store = open(&root, Access::ReadWrite).expect("creates");
        for (index, (name, n, dimension, metric)) in plans.iter().enumerate() {
            let records = make_records(name, *n, *dimension, index as u64 + 1);
            let summary = store
                .load(
                    &load_request(name, *dimension as u32, *metric, LoadMode::Create),
                    stream_of(&records, *dimension as u32),
                )
                .expect("loads");
            assert_eq!(summary.records_written, *n as u64);
            expected.insert((*name).to_owned(), (*metric, records));
        }
        // A replayed, partly changed batch upserts: no duplicates, the new values win.
        let (metric, records) = expected.get_mut("small_ip").expect("planned");
        let mut replay: Vec<Record> = records[..50].to_vec();
        for record in &mut replay[..10] {
            record.document = Some(format!("replaced {}", record.id));
            record.metadata = Some(json!({"replaced": true}).to_string());
            record.embedding[0] += 1.0;
        }
        store
            .load(
                &load_request("small_ip", 8, *metric, LoadMode::Upsert),
                stream_of(&replay, 8),
            )
            .expect("replays");
        // Replaced records move to the end, as chroma orders re-added records.
        let mut reordered: Vec<Record> = records[50..].to_vec();
        reordered.extend(replay);
        *records = reordered;
        // ragged reads its own writes the way chroma will.
        for (name, (metric, records)) in &expected {
            let got = extract(store.as_ref(), name, 256).expect("extracts");
            assert_eq!(got.len(), records.len(), "{name}");
            for (g, e) in got.iter().zip(records) {
                assert_eq!(dump_form(g), expected_from_chroma(e, *metric), "{name}");
            }
        }
        let error = store
            .load(
                &load_request("small_ip", 8, DistanceMetric::Ip, LoadMode::Create),
                stream_of(&[], 8),
            )
            .expect_err("exists");
        assert_eq!(error.code, ErrorCode::AlreadyExists);
    }

    // Probes first (the first count is chroma's index build), then the full dump.
    let spec: BTreeMap<&String, Value> = expected
        .iter()
        .map(|(name, (_, records))| {
            (
                name,
                json!({
                    "query_ids": [records[3].id, records[records.len() / 2].id, records[records.len() - 1].id],
                    "where": {"k": 1},
                    "where_document": {"$contains": "needle"},
                }),
            )
        })
        .collect();
    let spec_path = dir.path().join("spec.json");
    std::fs::write(&spec_path, serde_json::to_string(&spec).expect("json")).expect("write");
    let probe_path = dir.path().join("probe.json");
    tool(
        &python,
        &[
            "probe",
            root.to_str().expect("utf-8"),
            spec_path.to_str().expect("utf-8"),
            probe_path.to_str().expect("utf-8"),
        ],
    );
    let probe = read_json(&probe_path);
    eprintln!(
        "chromadb first count() per collection (s): {}",
        probe["first_count_seconds"]
    );
    for (name, (_, records)) in &expected {
        let answer = &probe["collections"][name];
        assert_eq!(answer["count"], json!(records.len()), "{name}: count");
        for (id, nearest) in answer["nearest"].as_object().expect("nearest") {
            assert_eq!(nearest, &json!(id), "{name}: nearest neighbour of {id}");
        }
        let mut where_ids: Vec<&str> = records
            .iter()
            .filter(|r| {
                r.metadata
                    .as_deref()
                    .is_some_and(|m| serde_json::from_str::<Value>(m).expect("json")["k"] == json!(1))
            })
            .map(|r| r.id.as_str())
            .collect();
        where_ids.sort();
        assert!(!where_ids.is_empty());
        assert_eq!(answer["where_ids"], json!(where_ids), "{name}: where");
        let mut doc_ids: Vec<&str> = records
            .iter()
            .filter(|r| r.document.as_deref().is_some_and(|d| d.contains("needle")))
            .map(|r| r.id.as_str())
            .collect();
        doc_ids.sort();
        assert_eq!(answer["where_document_ids"], json!(doc_ids), "{name}: where_document");
    }

    let dump_path = dir.path().join("dump.json");
    tool(
        &python,
        &[
            "dump",
            root.to_str().expect("utf-8"),
            dump_path.to_str().expect("utf-8"),
        ],
    );
    let dump = read_json(&dump_path);
    for (name, (metric, records)) in &expected {
        let got = dump["collections"][name]["records"].as_array().expect("records");
        assert_eq!(got.len(), records.len(), "{name}");
        for (g, e) in got.iter().zip(records) {
            assert_eq!(g, &expected_from_chroma(e, *metric), "{name}");
        }
        let metadata = &dump["collections"][name]["metadata"];
        assert_eq!(metadata["version"], json!(["int", 3]), "{name}");
        assert_eq!(metadata["ratio"], json!(["float", 0.25f64.to_bits()]), "{name}");
    }
    // And ragged still reads the store chroma has now indexed, metric included.
    let store = open(&root, Access::ReadOnly).expect("opens");
    assert_same_as_dump(store.as_ref(), &dump);
    assert_eq!(
        store.describe("small_cosine").expect("describes").metric,
        DistanceMetric::Cosine
    );
    assert_eq!(
        store.describe("small_ip").expect("describes").metric,
        DistanceMetric::Ip
    );
}

#[test]
fn ragged_adds_to_a_store_chromadb_made() {
    let Some(python) = python() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("mixed");
    tool(&python, &["build", root.to_str().expect("utf-8")]);
    let added = make_records("added", 60, 8, 11);
    let mut appended = make_records("s", 30, 8, 12);
    // Ids that chroma wrote: "s0".."s29" exist (some were deleted); ragged's replace them.
    for (i, record) in appended.iter_mut().enumerate() {
        record.id = format!("s{i}");
    }
    let before: Vec<Record>;
    {
        let store = open(&root, Access::ReadWrite).expect("opens");
        before = extract(store.as_ref(), "small_l2", 1000).expect("extracts");
        store
            .load(
                &load_request("added", 8, DistanceMetric::Ip, LoadMode::Create),
                stream_of(&added, 8),
            )
            .expect("creates a collection");
        store
            .load(
                &load_request("small_l2", 8, DistanceMetric::L2, LoadMode::Append),
                stream_of(&appended, 8),
            )
            .expect("appends");
        let error = store
            .load(
                &load_request("small_l2", 8, DistanceMetric::Cosine, LoadMode::Append),
                stream_of(&appended, 8),
            )
            .expect_err("metric differs");
        assert!(error.message.contains("uses l2"), "{error}");
    }
    let dump_path = dir.path().join("dump.json");
    tool(
        &python,
        &[
            "dump",
            root.to_str().expect("utf-8"),
            dump_path.to_str().expect("utf-8"),
        ],
    );
    let dump = read_json(&dump_path);
    let got = dump["collections"]["added"]["records"].as_array().expect("records");
    let expected: Vec<Value> = added
        .iter()
        .map(|r| expected_from_chroma(r, DistanceMetric::Ip))
        .collect();
    assert_eq!(got, &expected);
    // small_l2: chroma's own records minus the replaced ids, then ragged's, in write order.
    let replaced: Vec<&str> = appended.iter().map(|r| r.id.as_str()).collect();
    let mut expected: Vec<Value> = before
        .iter()
        .filter(|r| !replaced.contains(&r.id.as_str()))
        .map(dump_form)
        .collect();
    expected.extend(appended.iter().map(|r| expected_from_chroma(r, DistanceMetric::L2)));
    assert_eq!(
        dump["collections"]["small_l2"]["records"].as_array().expect("records"),
        &expected
    );
    let store = open(&root, Access::ReadOnly).expect("opens");
    assert_same_as_dump(store.as_ref(), &dump);
}

// ------------------------------------------------------------------------------------------------
// 3. Refusals: an error naming the problem, no panic, nothing changed on disk

fn expect_refusal(root: &Path, fragment: &str, action: impl Fn(&dyn Backend) -> Result<(), PluginError>) {
    let before = snapshot(root);
    let result = open(root, Access::ReadOnly).and_then(|store| action(store.as_ref()));
    let error = result.expect_err(fragment);
    assert_ne!(error.code, ErrorCode::Panic, "{error}");
    assert!(error.message.contains(fragment), "expected '{fragment}' in: {error}");
    assert!(snapshot(root) == before, "refusing '{fragment}' changed the directory");
}

fn describe_all(store: &dyn Backend) -> Result<(), PluginError> {
    for name in store.list_collections()? {
        store.describe(&name)?;
        let stream = store.extract(&name, &ExtractRequest::records(1000, 0))?;
        for batch in stream.into_reader().map_err(|e| PluginError::corrupt(e.to_string()))? {
            batch.map_err(|e| PluginError::corrupt(e.to_string()))?;
        }
    }
    Ok(())
}

fn segment_of(root: &Path, name: &str) -> PathBuf {
    let store = open(root, Access::ReadOnly).expect("opens");
    let info = store.describe(name).expect("describes");
    root.join(info.extras["vector_segment"].as_str().expect("segment"))
}

#[test]
fn damaged_and_unknown_stores_are_refused() {
    let Some(python) = python() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let pristine = dir.path().join("pristine");
    tool(&python, &["build", pristine.to_str().expect("utf-8")]);
    let fresh = |label: &str| {
        let copy = dir.path().join(label);
        copy_dir(&pristine, &copy);
        copy
    };
    let sql = |root: &Path, statement: &str| {
        let conn = rusqlite::Connection::open(root.join("chroma.sqlite3")).expect("opens");
        conn.execute_batch(statement).expect("sql");
    };

    let root = fresh("newer");
    sql(
        &root,
        "INSERT INTO migrations VALUES ('sysdb', 11, '00011-future.sqlite.sql', 'SELECT 1', 'x')",
    );
    expect_refusal(&root, "chroma.sqlite3: schema sysdb version 11 is newer", |_| Ok(()));

    let root = fresh("foreign-dir");
    sql(
        &root,
        "INSERT INTO migrations VALUES ('vectordb', 1, '00001.sql', 'SELECT 1', 'x')",
    );
    expect_refusal(&root, "unknown migration directory 'vectordb'", |_| Ok(()));

    let root = fresh("journal");
    std::fs::write(
        root.join("chroma.sqlite3-journal"),
        [0xd9u8, 0xd5, 0x05, 0xf9, 0x20, 0xa1, 0x63, 0xd7, 1, 2, 3],
    )
    .expect("journal");
    expect_refusal(&root, "chroma.sqlite3-journal: hot rollback journal", |_| Ok(()));

    let root = fresh("truncated");
    let data = segment_of(&root, "big_cosine").join("data_level0.bin");
    let bytes = std::fs::read(&data).expect("read");
    std::fs::write(&data, &bytes[..bytes.len() / 3]).expect("truncate");
    expect_refusal(&root, "data_level0.bin: truncated", describe_all);

    let root = fresh("header");
    let header = segment_of(&root, "ip_legacy").join("header.bin");
    let mut bytes = std::fs::read(&header).expect("read");
    bytes[0] = 2;
    std::fs::write(&header, bytes).expect("write");
    expect_refusal(&root, "header.bin: unknown hnsw persistence version 2", describe_all);

    let root = fresh("pickle");
    std::fs::write(
        segment_of(&root, "big_cosine").join("index_metadata.pickle"),
        b"\x80\x03garbage",
    )
    .expect("write");
    expect_refusal(&root, "index_metadata.pickle: unreadable pickle", describe_all);

    let root = fresh("encoding");
    sql(
        &root,
        "UPDATE embeddings_queue SET encoding='INT32' WHERE seq_id=(SELECT max(seq_id) FROM embeddings_queue)",
    );
    expect_refusal(&root, "unknown vector encoding 'INT32'", describe_all);

    let root = fresh("json");
    sql(
        &root,
        "UPDATE embeddings_queue SET metadata='{\"a\": {\"b\": 1}}' WHERE seq_id=(SELECT max(seq_id) FROM embeddings_queue)",
    );
    expect_refusal(&root, "holds an object", describe_all);

    let root = fresh("short-vector");
    sql(
        &root,
        "UPDATE embeddings_queue SET vector=x'0000803f' WHERE seq_id=(SELECT max(seq_id) FROM embeddings_queue)",
    );
    expect_refusal(&root, "vector has 4 bytes, expected", describe_all);

    let root = dir.path().join("not-chroma");
    std::fs::create_dir_all(&root).expect("mkdir");
    std::fs::write(root.join("chroma.sqlite3"), b"definitely not sqlite").expect("write");
    expect_refusal(&root, "not a sqlite database", |_| Ok(()));
}

#[test]
fn writing_while_chromadb_has_the_store_open_is_refused() {
    let Some(python) = python() else { return };
    if !cfg!(target_os = "linux") {
        eprintln!("skipped: detecting a running chroma needs /proc");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("held");
    // Opened before chroma starts: the drop itself must notice the running chroma.
    let store = open(&root, Access::ReadWrite).expect("creates");
    let records = make_records("h", 20, 4, 3);
    store
        .load(
            &load_request("held", 4, DistanceMetric::L2, LoadMode::Create),
            stream_of(&records, 4),
        )
        .expect("loads");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/chroma_tool.py");
    let mut child = Command::new(&python)
        .arg(&script)
        .arg("hold")
        .arg(&root)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawns");
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().expect("stdout")),
        &mut line,
    )
    .expect("reads");
    assert_eq!(line.trim(), "ready");
    let before = snapshot(&root);
    let result = open(&root, Access::ReadWrite).map(|_| ());
    let dropped = store.drop_collection("held");
    let unchanged = snapshot(&root) == before;
    drop(child.stdin.take());
    let status = child.wait().expect("waits");
    assert!(status.success());
    for (what, result) in [("open", result), ("drop", dropped)] {
        let error = result.expect_err(what);
        assert!(
            error.message.contains("chroma must not run on a store ragged writes"),
            "{what}: {error}"
        );
    }
    assert!(unchanged, "the refused open or drop changed the directory");
    assert_eq!(store.list_collections().expect("lists"), vec!["held".to_owned()]);
}

#[test]
fn invalid_records_are_refused_before_anything_is_written() {
    // Pure Rust: no chromadb needed.
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("store");
    let store = open(&root, Access::ReadWrite).expect("creates");
    let mut records = make_records("v", 10, 4, 9);
    records[7].metadata = Some(json!({"chroma:document": "sneaky"}).to_string());
    let error = store
        .load(
            &load_request("vvv", 4, DistanceMetric::L2, LoadMode::Create),
            stream_of(&records, 4),
        )
        .expect_err("bad record");
    assert_eq!(error.code, ErrorCode::InvalidInput);
    assert!(
        error.message.contains("record 'v-7'") && error.message.contains("reserved"),
        "{error}"
    );
    // The collection exists (created before the batch) but holds nothing.
    assert_eq!(store.count("vvv").expect("counts"), 0);
    // Names chroma would refuse to open are refused before anything is created.
    let error = store
        .load(
            &load_request("x y", 4, DistanceMetric::L2, LoadMode::Create),
            stream_of(&records[..2], 4),
        )
        .expect_err("bad name");
    assert!(
        error.message.contains("collection name 'x y' is not valid for chroma"),
        "{error}"
    );
    assert_eq!(store.list_collections().expect("lists"), vec!["vvv".to_owned()]);
    let error = store.describe("nope").expect_err("missing");
    assert_eq!(error.code, ErrorCode::NotFound);
}

// ------------------------------------------------------------------------------------------------
// 4. Dropping collections

/// Every row of every table of the database (virtual tables through their module), sorted, so
/// two stores can be compared by content.
fn table_rows(root: &Path) -> BTreeMap<String, Vec<String>> {
    let conn =
        rusqlite::Connection::open_with_flags(root.join("chroma.sqlite3"), rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("opens");
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")
        .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
        .expect("tables");
    let mut out = BTreeMap::new();
    for table in tables {
        let mut statement = conn.prepare(&format!("SELECT * FROM \"{table}\"")).expect("select");
        let columns = statement.column_count();
        let mut rows: Vec<String> = statement
            .query_map([], |r| {
                (0..columns)
                    .map(|i| r.get::<_, rusqlite::types::Value>(i).map(|v| format!("{v:?}")))
                    .collect::<Result<Vec<_>, _>>()
                    .map(|values| values.join(" | "))
            })
            .and_then(|rows| rows.collect())
            .expect("rows");
        rows.sort();
        out.insert(table, rows);
    }
    out
}

/// Rows anywhere in the database that still belong to collection `id` (its own rows, its
/// segments' rows, its log rows), or records' rows whose `embeddings` row is gone.
fn leftovers(root: &Path, id: &str, segments: &[&str]) -> Vec<(String, i64)> {
    let conn = rusqlite::Connection::open(root.join("chroma.sqlite3")).expect("opens");
    let topic = format!("persistent://default/default/{id}");
    let segment_list = segments.iter().map(|s| format!("'{s}'")).collect::<Vec<_>>().join(",");
    let checks = [
        (
            "collections",
            format!("SELECT count(*) FROM collections WHERE id='{id}'"),
        ),
        (
            "collection_metadata",
            format!("SELECT count(*) FROM collection_metadata WHERE collection_id='{id}'"),
        ),
        (
            "segments",
            format!("SELECT count(*) FROM segments WHERE collection='{id}' OR id IN ({segment_list})"),
        ),
        (
            "segment_metadata",
            format!("SELECT count(*) FROM segment_metadata WHERE segment_id IN ({segment_list})"),
        ),
        (
            "max_seq_id",
            format!("SELECT count(*) FROM max_seq_id WHERE segment_id IN ({segment_list})"),
        ),
        (
            "embeddings",
            format!("SELECT count(*) FROM embeddings WHERE segment_id IN ({segment_list})"),
        ),
        (
            "embeddings_queue",
            format!("SELECT count(*) FROM embeddings_queue WHERE topic='{topic}'"),
        ),
        (
            "embedding_metadata (orphans)",
            "SELECT count(*) FROM embedding_metadata WHERE id NOT IN (SELECT id FROM embeddings)".to_owned(),
        ),
        (
            "embedding_metadata_array (orphans)",
            "SELECT count(*) FROM embedding_metadata_array WHERE id NOT IN (SELECT id FROM embeddings)".to_owned(),
        ),
        (
            "embedding_fulltext_search (orphans)",
            "SELECT count(*) FROM embedding_fulltext_search WHERE rowid NOT IN (SELECT id FROM embeddings)".to_owned(),
        ),
    ];
    checks
        .iter()
        .map(|(what, sql)| ((*what).to_owned(), conn.query_row(sql, [], |r| r.get(0)).expect(what)))
        .filter(|(_, n)| *n != 0)
        .collect()
}

fn ragged_store(root: &Path, plans: &[(&str, usize, usize, DistanceMetric)]) -> BTreeMap<String, Vec<Record>> {
    let store = open(root, Access::ReadWrite).expect("creates");
    let mut written = BTreeMap::new();
    for (index, (name, n, dimension, metric)) in plans.iter().enumerate() {
        let records = make_records(name, *n, *dimension, index as u64 + 21);
        store
            .load(
                &load_request(name, *dimension as u32, *metric, LoadMode::Create),
                stream_of(&records, *dimension as u32),
            )
            .expect("loads");
        written.insert((*name).to_owned(), records);
    }
    written
}

#[test]
fn a_store_rereads_a_collection_another_writer_changed() {
    // Pure Rust: no chromadb needed. Each store keeps the plan of a collection it read; a write
    // through another store (here another instance, as another process would) must show.
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("store");
    let written = ragged_store(&root, &[("docs", 40, 4, DistanceMetric::L2)]);
    let reader = open(&root, Access::ReadOnly).expect("opens");
    assert_eq!(reader.describe("docs").expect("describes").count, 40);
    let more = make_records("more", 15, 4, 5);
    open(&root, Access::ReadWrite)
        .expect("opens")
        .load(
            &load_request("docs", 4, DistanceMetric::L2, LoadMode::Append),
            stream_of(&more, 4),
        )
        .expect("appends");
    assert_eq!(reader.describe("docs").expect("describes").count, 55);
    let mut listed = Vec::new();
    for batch in reader
        .extract("docs", &ExtractRequest::ids(16))
        .expect("extracts ids")
        .into_reader()
        .expect("reader")
    {
        let batch = batch.expect("batch");
        assert_eq!(batch.num_columns(), 1, "an ids-only batch holds the id column alone");
        let ids = batch.column(0).as_string::<i32>();
        listed.extend(ids.iter().flatten().map(str::to_owned));
    }
    let expected: Vec<String> = written["docs"].iter().chain(&more).map(|r| r.id.clone()).collect();
    assert_eq!(
        listed, expected,
        "ids in chroma's order: the first load's, then the append's"
    );
    assert_eq!(
        sorted_metadata(fetched(reader.as_ref(), "docs", &ids(&["more-3", "docs-7"]))),
        sorted_metadata(vec![more[3].clone(), written["docs"][7].clone()])
    );
}

#[test]
fn dropping_is_refused_read_only_and_for_a_missing_collection() {
    // Pure Rust: no chromadb needed.
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("store");
    let written = ragged_store(
        &root,
        &[
            ("keep", 30, 4, DistanceMetric::L2),
            ("gone", 20, 4, DistanceMetric::Cosine),
            ("ten1/db1/gone", 10, 4, DistanceMetric::Ip),
        ],
    );
    let before = snapshot(&root);

    let store = open(&root, Access::ReadOnly).expect("opens");
    for name in ["gone", "nope"] {
        let error = store.drop_collection(name).expect_err("read-only");
        assert_eq!(error.code, ErrorCode::ReadOnly, "{error}");
    }
    drop(store);
    assert!(snapshot(&root) == before, "a refused drop changed the directory");

    let store = open(&root, Access::ReadWrite).expect("opens");
    for name in ["nope", "ten1/db1/nope", "ten1/other/gone", "default_tenant/db1/gone"] {
        let error = store.drop_collection(name).expect_err("missing");
        assert_eq!(error.code, ErrorCode::NotFound, "{error}");
        assert!(error.message.contains(&format!("no collection '{name}'")), "{error}");
    }
    let error = store.drop_collection("ten1/gone").expect_err("malformed");
    assert_eq!(error.code, ErrorCode::InvalidInput, "{error}");
    assert!(snapshot(&root) == before, "a refused drop changed the directory");

    // The plain name is the default tenant's: the other tenant's collection of that name stays.
    store.drop_collection("gone").expect("drops");
    assert_eq!(
        store.list_collections().expect("lists"),
        vec!["keep".to_owned(), "ten1/db1/gone".to_owned()]
    );
    for name in ["keep", "ten1/db1/gone"] {
        assert_eq!(
            extract(store.as_ref(), name, 7).expect("extracts").len(),
            written[name].len()
        );
    }
    assert_eq!(
        store.drop_collection("gone").expect_err("dropped").code,
        ErrorCode::NotFound
    );
    // The name can be used again at once.
    let again = make_records("again", 5, 4, 99);
    store
        .load(
            &load_request("gone", 4, DistanceMetric::L2, LoadMode::Create),
            stream_of(&again, 4),
        )
        .expect("re-creates");
    assert_eq!(
        sorted_metadata(extract(store.as_ref(), "gone", 100).expect("extracts")),
        sorted_metadata(again)
    );
}

#[test]
fn a_drop_that_fails_midway_changes_nothing() {
    // Pure Rust: a trigger makes the last statement of the drop fail, after every other delete.
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("store");
    let written = ragged_store(
        &root,
        &[
            ("keep", 30, 4, DistanceMetric::L2),
            ("doomed", 20, 4, DistanceMetric::L2),
        ],
    );
    {
        let conn = rusqlite::Connection::open(root.join("chroma.sqlite3")).expect("opens");
        conn.execute_batch(
            "CREATE TRIGGER refuse BEFORE DELETE ON collections BEGIN SELECT RAISE(ABORT, 'refused by test'); END",
        )
        .expect("trigger");
    }
    let before = table_rows(&root);
    let store = open(&root, Access::ReadWrite).expect("opens");
    let error = store.drop_collection("doomed").expect_err("trigger");
    assert!(error.message.contains("refused by test"), "{error}");
    assert!(table_rows(&root) == before, "a failed drop left part of its changes");
    assert!(!root.join("chroma.sqlite3-journal").exists());
    assert_eq!(
        sorted_metadata(extract(store.as_ref(), "doomed", 100).expect("extracts")),
        sorted_metadata(written["doomed"].clone())
    );
}

#[test]
fn chromadb_keeps_the_rest_after_ragged_drops_a_collection() {
    let Some(python) = python() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("built");
    let root_text = root.to_str().expect("utf-8");
    tool(&python, &["build-drop", root_text]);

    let store = open(&root, Access::ReadOnly).expect("opens");
    let kept = ["acme/prod/docs", "notes"];
    let before: BTreeMap<&str, Vec<Record>> = kept
        .iter()
        .map(|name| (*name, extract(store.as_ref(), name, 128).expect("extracts")))
        .collect();
    let info = store.describe("docs").expect("describes");
    assert!(info.count >= 1000, "{}", info.count);
    let id = info.extras["collection_id"].as_str().expect("id").to_owned();
    let vector = info.extras["vector_segment"].as_str().expect("segment").to_owned();
    let metadata = info.extras["metadata_segment"].as_str().expect("segment").to_owned();
    let segment_dir = root.join(&vector);
    assert!(
        segment_dir.join("index_metadata.pickle").is_file(),
        "no HNSW files to drop"
    );
    drop(store);

    let store = open(&root, Access::ReadWrite).expect("opens");
    assert_eq!(
        store.drop_collection("acme/prod/nope").expect_err("missing").code,
        ErrorCode::NotFound
    );
    store.drop_collection("docs").expect("drops");
    assert!(!segment_dir.exists(), "the segment directory is still there");
    assert_eq!(leftovers(&root, &id, &[&vector, &metadata]), vec![]);
    assert_eq!(store.list_collections().expect("lists"), kept.to_vec());
    for (name, records) in &before {
        assert_eq!(
            &extract(store.as_ref(), name, 128).expect("extracts"),
            records,
            "{name}"
        );
    }
    drop(store);

    // chromadb lists the other two, with exactly their records.
    let dump_path = dir.path().join("dump.json");
    let dump_text = dump_path.to_str().expect("utf-8");
    tool(&python, &["dump", root_text, dump_text]);
    let dump = read_json(&dump_path);
    let names: Vec<&String> = dump["collections"].as_object().expect("collections").keys().collect();
    assert_eq!(names, kept.to_vec());
    for (name, records) in &before {
        let got = &dump["collections"][name];
        assert_eq!(got["count"], json!(records.len()), "{name}: count");
        let expected: Vec<Value> = records.iter().map(dump_form).collect();
        assert_eq!(got["records"].as_array().expect("records"), &expected, "{name}: get");
    }

    // chromadb creates a collection of the dropped name and adds to it. Its records take the
    // dropped records' `embeddings.id`s, so leftover rows of those would show up here.
    tool(&python, &["recreate", root_text, "docs", "60", "4"]);
    tool(&python, &["dump", root_text, dump_text]);
    let dump = read_json(&dump_path);
    let docs = &dump["collections"]["docs"];
    assert_eq!(docs["count"], json!(60));
    for (i, record) in docs["records"].as_array().expect("records").iter().enumerate() {
        assert_eq!(record["id"], json!(format!("r{i}")));
        assert_eq!(record["document"], json!(format!("recreated {i}")));
        assert_eq!(record["metadata"], json!({"k": ["int", i]}), "stale metadata on r{i}");
    }
    let store = open(&root, Access::ReadOnly).expect("opens");
    assert_same_as_dump(store.as_ref(), &dump);
    for (name, records) in &before {
        assert_eq!(
            &extract(store.as_ref(), name, 128).expect("extracts"),
            records,
            "{name}"
        );
    }
}

#[test]
fn ragged_drop_leaves_what_chromadb_delete_leaves() {
    let Some(python) = python() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let by_ragged = dir.path().join("by-ragged");
    tool(&python, &["build-drop", by_ragged.to_str().expect("utf-8")]);
    let by_chroma = dir.path().join("by-chroma");
    copy_dir(&by_ragged, &by_chroma);
    let vector = {
        let store = open(&by_ragged, Access::ReadOnly).expect("opens");
        let info = store.describe("docs").expect("describes");
        info.extras["vector_segment"].as_str().expect("segment").to_owned()
    };

    open(&by_ragged, Access::ReadWrite)
        .expect("opens")
        .drop_collection("docs")
        .expect("drops");
    tool(&python, &["delete", by_chroma.to_str().expect("utf-8"), "docs"]);

    let ours = table_rows(&by_ragged);
    let mut theirs = table_rows(&by_chroma);
    // Every chroma process start adds an `acquire_write` row.
    let acquire = theirs.get_mut("acquire_write").expect("table");
    assert_eq!(acquire.len(), ours["acquire_write"].len() + 1);
    *acquire = ours["acquire_write"].clone();
    // chroma leaves the dropped records' array metadata behind; ragged deletes it. Without those
    // orphans, chroma's rows are ragged's.
    let conn = rusqlite::Connection::open(by_chroma.join("chroma.sqlite3")).expect("opens");
    let orphans: Vec<String> = conn
        .prepare("SELECT DISTINCT id FROM embedding_metadata_array WHERE id NOT IN (SELECT id FROM embeddings)")
        .and_then(|mut s| s.query_map([], |r| r.get::<_, i64>(0))?.collect::<Result<Vec<_>, _>>())
        .expect("orphans")
        .into_iter()
        .map(|id| format!("{:?} | ", rusqlite::types::Value::Integer(id)))
        .collect();
    assert!(
        !orphans.is_empty(),
        "chroma no longer leaves array metadata behind: update the docs"
    );
    let array = theirs.get_mut("embedding_metadata_array").expect("table");
    let before = array.len();
    array.retain(|row| !orphans.iter().any(|prefix| row.starts_with(prefix.as_str())));
    assert!(array.len() < before);
    for (table, rows) in &theirs {
        assert!(
            &ours[table] == rows,
            "{table} differs from what chromadb's delete leaves"
        );
    }
    assert_eq!(ours.keys().collect::<Vec<_>>(), theirs.keys().collect::<Vec<_>>());

    // chroma leaves the segment directory; ragged removes it. Everything else is the same.
    assert!(by_chroma.join(&vector).is_dir());
    assert!(!by_ragged.join(&vector).exists());
    let entries = |root: &Path| -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(root)
            .expect("readdir")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| *n != vector)
            .collect();
        names.sort();
        names
    };
    assert_eq!(entries(&by_ragged), entries(&by_chroma));

    // And chromadb reads both the same way.
    let dumps: Vec<Value> = [&by_ragged, &by_chroma]
        .iter()
        .enumerate()
        .map(|(i, root)| {
            let path = dir.path().join(format!("dump{i}.json"));
            tool(
                &python,
                &["dump", root.to_str().expect("utf-8"), path.to_str().expect("utf-8")],
            );
            read_json(&path)["collections"].clone()
        })
        .collect();
    assert_eq!(dumps[0], dumps[1]);
}

#[test]
fn chromadb_opens_a_ragged_store_after_a_drop() {
    let Some(python) = python() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("written");
    let root_text = root.to_str().expect("utf-8");
    let plans: [(&str, usize, usize, DistanceMetric); 3] = [
        ("alpha", 120, 8, DistanceMetric::L2),
        ("beta", 1100, 8, DistanceMetric::Cosine),
        ("ten2/db2/gamma", 60, 4, DistanceMetric::Ip),
    ];
    let written = ragged_store(&root, &plans);
    let metric = |name: &str| plans.iter().find(|p| p.0 == name).expect("planned").3;
    let dump_path = dir.path().join("dump.json");
    let dump_text = dump_path.to_str().expect("utf-8");
    let check = |expected: &BTreeMap<String, Vec<Record>>| {
        tool(&python, &["dump", root_text, dump_text]);
        let dump = read_json(&dump_path);
        let names: Vec<&String> = dump["collections"].as_object().expect("collections").keys().collect();
        assert_eq!(names, expected.keys().collect::<Vec<_>>());
        for (name, records) in expected {
            let want: Vec<Value> = records.iter().map(|r| expected_from_chroma(r, metric(name))).collect();
            assert_eq!(
                dump["collections"][name]["records"].as_array().expect("records"),
                &want,
                "{name}"
            );
        }
        let store = open(&root, Access::ReadOnly).expect("opens");
        assert_same_as_dump(store.as_ref(), &dump);
    };

    // Dropped while its records are still only in the log.
    let store = open(&root, Access::ReadWrite).expect("opens");
    let alpha = store.describe("alpha").expect("describes");
    store.drop_collection("alpha").expect("drops");
    let alpha_id = alpha.extras["collection_id"].as_str().expect("id");
    assert_eq!(leftovers(&root, alpha_id, &[]), vec![]);
    drop(store);
    let mut expected = written.clone();
    expected.remove("alpha");
    check(&expected);

    // Dropped after chromadb indexed it (HNSW files), then its name reused by ragged.
    let store = open(&root, Access::ReadWrite).expect("opens");
    let beta = store.describe("beta").expect("describes");
    let segment_dir = root.join(beta.extras["vector_segment"].as_str().expect("segment"));
    assert!(
        segment_dir.join("index_metadata.pickle").is_file(),
        "chromadb did not index beta"
    );
    store.drop_collection("beta").expect("drops");
    assert!(!segment_dir.exists());
    let again = make_records("alpha-again", 40, 4, 77);
    store
        .load(
            &load_request("alpha", 4, DistanceMetric::L2, LoadMode::Create),
            stream_of(&again, 4),
        )
        .expect("re-creates");
    drop(store);
    expected.remove("beta");
    expected.insert("alpha".into(), again);
    check(&expected);
}

// ------------------------------------------------------------------------------------------------
// 5. Deleting records

fn ids(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| (*s).to_owned()).collect()
}

fn fetched(store: &dyn Backend, name: &str, wanted: &[String]) -> Vec<Record> {
    store
        .fetch(name, wanted)
        .expect("fetches")
        .into_reader()
        .expect("reader")
        .flat_map(|b| batch_to_records(&b.expect("batch")).expect("records"))
        .collect()
}

#[test]
fn deleted_records_disappear_from_every_read() {
    // Pure Rust: no chromadb needed.
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("store");
    let written = ragged_store(
        &root,
        &[
            ("docs", 60, 4, DistanceMetric::L2),
            ("ten1/db1/docs", 10, 4, DistanceMetric::Ip),
        ],
    );
    let store = open(&root, Access::ReadWrite).expect("opens");
    // Duplicates count once, unknown ids are ignored.
    let doomed = ids(&["docs-3", "docs-10", "docs-10", "nope", "docs-59"]);
    assert_eq!(store.delete("docs", &doomed).expect("deletes"), 3);
    let gone = |r: &Record| ["docs-3", "docs-10", "docs-59"].contains(&r.id.as_str());
    let kept: Vec<Record> = written["docs"].iter().filter(|r| !gone(r)).cloned().collect();
    assert_eq!(
        sorted_metadata(extract(store.as_ref(), "docs", 7).expect("extracts")),
        sorted_metadata(kept.clone())
    );
    assert_eq!(store.count("docs").expect("counts"), 57);
    assert_eq!(store.describe("docs").expect("describes").count, 57);
    assert_eq!(store.storage("docs").expect("storage").records, 57);
    assert_eq!(
        sorted_metadata(fetched(store.as_ref(), "docs", &ids(&["docs-3", "docs-4", "docs-59"]))),
        sorted_metadata(vec![written["docs"][4].clone()])
    );
    let sampled = store.sample("docs", 100, 7).expect("samples");
    let sampled: Vec<Record> = sampled
        .into_reader()
        .expect("reader")
        .flat_map(|b| batch_to_records(&b.expect("batch")).expect("records"))
        .collect();
    assert_eq!(sampled.len(), 57);
    assert!(!sampled.iter().any(gone));
    // A deleted record's own vector now finds every other record, never the deleted one.
    let hits = store
        .query("docs", &written["docs"][10].embedding, 100)
        .expect("queries");
    assert_eq!(hits.len(), 57);
    assert!(
        !hits
            .iter()
            .any(|h| ["docs-3", "docs-10", "docs-59"].contains(&h.id.as_str()))
    );
    let hits = store.query("docs", &written["docs"][11].embedding, 1).expect("queries");
    assert_eq!(hits[0].id, "docs-11");
    // Deleting again finds nothing; other tenants' collections of the same name are untouched.
    assert_eq!(store.delete("docs", &doomed).expect("deletes"), 0);
    assert_eq!(store.delete("docs", &[]).expect("deletes"), 0);
    assert_eq!(
        sorted_metadata(extract(store.as_ref(), "ten1/db1/docs", 100).expect("extracts")),
        sorted_metadata(written["ten1/db1/docs"].clone())
    );
    // A missing collection is not found, whatever the ids.
    for name in ["nope", "ten1/db1/nope", "ten1/docs"] {
        let error = store.delete(name, &ids(&["docs-1"])).expect_err("missing");
        assert_eq!(error.code, ErrorCode::NotFound, "{error}");
        assert!(error.message.contains(&format!("no collection '{name}'")), "{error}");
    }
    assert_eq!(store.count("docs").expect("counts"), 57);
}

#[test]
fn deleting_is_refused_read_only() {
    // Pure Rust: no chromadb needed.
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("store");
    ragged_store(&root, &[("docs", 20, 4, DistanceMetric::Cosine)]);
    let before = snapshot(&root);
    let store = open(&root, Access::ReadOnly).expect("opens");
    for name in ["docs", "nope"] {
        let error = store.delete(name, &ids(&["docs-1", "docs-2"])).expect_err("read-only");
        assert_eq!(error.code, ErrorCode::ReadOnly, "{error}");
    }
    drop(store);
    assert!(snapshot(&root) == before, "a refused delete changed the directory");
    let store = open(&root, Access::ReadOnly).expect("opens");
    assert_eq!(store.count("docs").expect("counts"), 20);
}

#[test]
fn a_deleted_id_can_be_loaded_again() {
    // Pure Rust: no chromadb needed.
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("store");
    let written = ragged_store(&root, &[("docs", 30, 4, DistanceMetric::Cosine)]);
    let store = open(&root, Access::ReadWrite).expect("opens");
    assert_eq!(store.delete("docs", &ids(&["docs-5", "docs-6"])).expect("deletes"), 2);
    let mut back = written["docs"][5].clone();
    back.document = Some("back again".into());
    back.embedding[0] += 0.5;
    store
        .load(
            &load_request("docs", 4, DistanceMetric::Cosine, LoadMode::Append),
            stream_of(std::slice::from_ref(&back), 4),
        )
        .expect("re-adds");
    let got = extract(store.as_ref(), "docs", 100).expect("extracts");
    assert_eq!(got.len(), 29);
    // Re-added records go to the end, as chroma orders them; the old version is gone.
    let last = got.last().expect("records");
    assert_eq!(
        (last.id.as_str(), last.document.as_deref()),
        ("docs-5", Some("back again"))
    );
    assert_eq!(got.iter().filter(|r| r.id == "docs-5").count(), 1);
    assert!(!got.iter().any(|r| r.id == "docs-6"));
    // Fetching finds the new version, in the order asked, and not the deleted id.
    let by_id = |id: &str| got.iter().find(|r| r.id == id).expect("extracted").clone();
    assert_eq!(
        fetched(store.as_ref(), "docs", &ids(&["docs-6", "docs-5", "docs-4"])),
        vec![by_id("docs-5"), by_id("docs-4")]
    );
    assert_eq!(
        store.query("docs", &back.embedding, 1).expect("queries")[0].id,
        "docs-5"
    );
    // And it can be deleted again.
    assert_eq!(store.delete("docs", &ids(&["docs-5"])).expect("deletes"), 1);
    assert_eq!(store.count("docs").expect("counts"), 28);
}

#[test]
fn deleting_every_record_leaves_an_empty_collection() {
    // Pure Rust: no chromadb needed.
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("store");
    let written = ragged_store(&root, &[("docs", 25, 4, DistanceMetric::Ip)]);
    let store = open(&root, Access::ReadWrite).expect("opens");
    let all: Vec<String> = written["docs"].iter().map(|r| r.id.clone()).collect();
    assert_eq!(store.delete("docs", &all).expect("deletes"), 25);
    assert_eq!(store.list_collections().expect("lists"), vec!["docs".to_owned()]);
    let info = store.describe("docs").expect("describes");
    assert_eq!((info.count, info.dimension, info.metric), (0, 4, DistanceMetric::Ip));
    assert_eq!(extract(store.as_ref(), "docs", 10).expect("extracts"), vec![]);
    assert_eq!(store.query("docs", &[1.0, 0.0, 0.0, 0.0], 5).expect("queries"), vec![]);
    assert_eq!(store.delete("docs", &all).expect("deletes"), 0);
    // Still a collection: it takes records again.
    store
        .load(
            &load_request("docs", 4, DistanceMetric::Ip, LoadMode::Append),
            stream_of(&written["docs"][..3], 4),
        )
        .expect("loads");
    assert_eq!(
        sorted_metadata(extract(store.as_ref(), "docs", 10).expect("extracts")),
        sorted_metadata(written["docs"][..3].to_vec())
    );
}

#[test]
fn a_delete_that_fails_midway_changes_nothing() {
    // Pure Rust: a trigger refuses the log row of the second id, after the first was written.
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("store");
    let written = ragged_store(&root, &[("docs", 20, 4, DistanceMetric::L2)]);
    {
        let conn = rusqlite::Connection::open(root.join("chroma.sqlite3")).expect("opens");
        conn.execute_batch(
            "CREATE TRIGGER refuse BEFORE INSERT ON embeddings_queue WHEN NEW.id = 'docs-7' \
             BEGIN SELECT RAISE(ABORT, 'refused by test'); END",
        )
        .expect("trigger");
    }
    let before = table_rows(&root);
    let store = open(&root, Access::ReadWrite).expect("opens");
    let error = store
        .delete("docs", &ids(&["docs-1", "docs-7", "docs-9"]))
        .expect_err("trigger");
    assert!(error.message.contains("refused by test"), "{error}");
    assert!(table_rows(&root) == before, "a failed delete left part of its changes");
    assert!(!root.join("chroma.sqlite3-journal").exists());
    assert_eq!(
        sorted_metadata(extract(store.as_ref(), "docs", 100).expect("extracts")),
        sorted_metadata(written["docs"].clone())
    );
}

/// Asks chromadb, in a fresh process, for `count`, `get(ids=…)` and the neighbours of vectors.
fn probe_deletions(python: &Path, root: &Path, dir: &Path, spec: &Value) -> Value {
    let spec_path = dir.join("delete-spec.json");
    std::fs::write(&spec_path, spec.to_string()).expect("write");
    let probe_path = dir.join("delete-probe.json");
    tool(
        python,
        &[
            "probe",
            root.to_str().expect("utf-8"),
            spec_path.to_str().expect("utf-8"),
            probe_path.to_str().expect("utf-8"),
        ],
    );
    read_json(&probe_path)["collections"].clone()
}

#[test]
fn chromadb_does_not_see_what_ragged_deleted() {
    let Some(python) = python() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("written");
    let root_text = root.to_str().expect("utf-8");
    let plans: [(&str, usize, usize, DistanceMetric); 3] = [
        ("small", 200, 8, DistanceMetric::L2),
        ("big", 1300, 8, DistanceMetric::Cosine),
        ("emptied", 30, 4, DistanceMetric::Ip),
    ];
    let mut expected = ragged_store(&root, &plans);
    let metric = |name: &str| plans.iter().find(|p| p.0 == name).expect("planned").3;
    // chromadb indexes everything once, so `big` has HNSW files before the delete: the deletions
    // must then reach its persisted index, not only records still in the log.
    tool(
        &python,
        &[
            "dump",
            root_text,
            dir.path().join("first.json").to_str().expect("utf-8"),
        ],
    );
    let big_segment = {
        let store = open(&root, Access::ReadOnly).expect("opens");
        let info = store.describe("big").expect("describes");
        root.join(info.extras["vector_segment"].as_str().expect("segment"))
    };
    assert!(
        big_segment.join("index_metadata.pickle").is_file(),
        "chromadb did not index big"
    );

    let doomed: BTreeMap<&str, Vec<String>> = [
        ("small", (0..200).step_by(9).map(|i| format!("small-{i}")).collect()),
        ("big", (0..1300).step_by(13).map(|i| format!("big-{i}")).collect()),
        ("emptied", (0..30).map(|i| format!("emptied-{i}")).collect()),
    ]
    .into_iter()
    .collect();
    let mut vectors: BTreeMap<&str, Vec<Vec<f32>>> = BTreeMap::new();
    {
        let store = open(&root, Access::ReadWrite).expect("opens");
        for (name, gone) in &doomed {
            let mut asked = gone.clone();
            asked.push("never-there".into());
            assert_eq!(
                store.delete(name, &asked).expect("deletes"),
                gone.len() as u64,
                "{name}"
            );
            assert_eq!(store.delete(name, gone).expect("deletes"), 0, "{name}");
            let records = expected.get_mut(*name).expect("planned");
            vectors.insert(
                name,
                records
                    .iter()
                    .filter(|r| gone.contains(&r.id))
                    .map(|r| r.embedding.clone())
                    .collect(),
            );
            records.retain(|r| !gone.contains(&r.id));
        }
        // One deleted id of `small` comes back, with a new document: it goes to the end.
        let mut back = make_records("small", 1, 8, 5).remove(0);
        back.id = "small-9".into();
        back.document = Some("needle back again".into());
        store
            .load(
                &load_request("small", 8, DistanceMetric::L2, LoadMode::Append),
                stream_of(std::slice::from_ref(&back), 8),
            )
            .expect("re-adds");
        expected.get_mut("small").expect("planned").push(back);
    }

    let spec: serde_json::Map<String, Value> = doomed
        .iter()
        .map(|(name, gone)| {
            let records = &expected[*name];
            let mut asks = json!({"get_ids": gone, "query_ids": []});
            if !records.is_empty() {
                asks["query_ids"] = json!([records[0].id, records[records.len() - 1].id]);
                asks["query_vectors"] = json!(vectors[name]);
                asks["n_results"] = json!(records.len().min(250));
            }
            ((*name).to_owned(), asks)
        })
        .collect();
    let probe = probe_deletions(&python, &root, dir.path(), &Value::Object(spec));
    for (name, gone) in &doomed {
        let answer = &probe[*name];
        let records = &expected[*name];
        assert_eq!(answer["count"], json!(records.len()), "{name}: count");
        let back: Vec<&str> = if *name == "small" { vec!["small-9"] } else { vec![] };
        assert_eq!(answer["got_ids"], json!(back), "{name}: get of deleted ids");
        for (id, nearest) in answer["nearest"].as_object().expect("nearest") {
            assert_eq!(nearest, &json!(id), "{name}: nearest neighbour of {id}");
        }
        for neighbours in answer["neighbours"].as_array().into_iter().flatten() {
            let neighbours = neighbours.as_array().expect("ids");
            assert_eq!(neighbours.len(), records.len().min(250), "{name}: query result size");
            for id in neighbours {
                let id = id.as_str().expect("id");
                assert!(
                    !gone.contains(&id.to_owned()) || back.contains(&id),
                    "{name}: query returned deleted {id}"
                );
            }
        }
    }
    let dump_path = dir.path().join("dump.json");
    tool(&python, &["dump", root_text, dump_path.to_str().expect("utf-8")]);
    let dump = read_json(&dump_path);
    for (name, records) in &expected {
        let want: Vec<Value> = records.iter().map(|r| expected_from_chroma(r, metric(name))).collect();
        assert_eq!(
            dump["collections"][name]["records"].as_array().expect("records"),
            &want,
            "{name}"
        );
        assert_eq!(dump["collections"][name]["count"], json!(records.len()), "{name}");
    }
    let store = open(&root, Access::ReadOnly).expect("opens");
    assert_same_as_dump(store.as_ref(), &dump);
    drop(store);

    // The other way round: chromadb deletes records of a store it has indexed, and ragged reads
    // the directory exactly as chromadb left it (a copy, before any other chroma process opens it).
    let theirs: Vec<String> = expected["big"].iter().step_by(7).map(|r| r.id.clone()).collect();
    let mut args = vec!["delete-ids", root_text, "big"];
    args.extend(theirs.iter().map(String::as_str));
    tool(&python, &args);
    tool(&python, &["delete-ids", root_text, "small", "small-9", "small-1"]);
    let copy = dir.path().join("copy");
    copy_dir(&root, &copy);
    // chromadb persists its HNSW files only every 1000 operations, so its pickle still maps the
    // ids it deleted: only its tables and log say they are gone.
    let mut pickled = ragged_plugin_chroma::ids::Ids::default();
    ragged_plugin_chroma::pickle::read_id_to_label(
        &copy
            .join(big_segment.file_name().expect("segment"))
            .join("index_metadata.pickle"),
        &mut pickled,
    )
    .expect("pickle");
    let pickled = |wanted: &String| pickled.find(wanted).is_some();
    assert!(pickled(&theirs[0]) && pickled(&doomed["big"][0]));
    let store = open(&copy, Access::ReadOnly).expect("opens");
    let big = extract(store.as_ref(), "big", 500).expect("extracts");
    assert_eq!(big.len(), expected["big"].len() - theirs.len());
    assert!(!big.iter().any(|r| theirs.contains(&r.id)));
    // Fetching reads ids from the segment's table, which still has the rows the log deleted.
    let (first, last) = (big.first().expect("records"), big.last().expect("records"));
    assert_eq!(
        fetched(
            store.as_ref(),
            "big",
            &[last.id.clone(), theirs[0].clone(), first.id.clone()]
        ),
        vec![last.clone(), first.clone()]
    );
    let small = extract(store.as_ref(), "small", 500).expect("extracts");
    assert!(!small.iter().any(|r| r.id == "small-9" || r.id == "small-1"));
    assert_eq!(small.len(), expected["small"].len() - 2);
    tool(&python, &["dump", root_text, dump_path.to_str().expect("utf-8")]);
    assert_same_as_dump(store.as_ref(), &read_json(&dump_path));
}

// ------------------------------------------------------------------------------------------------
// Measurement (run by hand): how long chromadb's first open of a ragged-written store takes.
// `RAGGED_CHROMA_MEASURE=20000x384 cargo test -p ragged-plugin-chroma --test interop -- --ignored --nocapture`

#[test]
#[ignore = "a measurement, not a check; see docs/backends/chroma.md"]
fn measure_chromadb_first_open_of_a_ragged_store() {
    let Some(python) = python() else { return };
    let shape = std::env::var("RAGGED_CHROMA_MEASURE").unwrap_or_else(|_| "20000x384".into());
    let (n, dimension) = shape.split_once('x').expect("NxDIM");
    let (n, dimension): (usize, usize) = (n.parse().expect("n"), dimension.parse().expect("dim"));
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("measured");
    let records = make_records("m", n, dimension, 42);
    let started = std::time::Instant::now();
    {
        let store = open(&root, Access::ReadWrite).expect("creates");
        store
            .load(
                &load_request("measured", dimension as u32, DistanceMetric::Cosine, LoadMode::Create),
                stream_of(&records, dimension as u32),
            )
            .expect("loads");
    }
    let written = started.elapsed();
    let spec_path = dir.path().join("spec.json");
    std::fs::write(
        &spec_path,
        json!({"measured": {"query_ids": [records[n / 2].id], "where": null, "where_document": null}}).to_string(),
    )
    .expect("write");
    let probe_path = dir.path().join("probe.json");
    let root_text = root.to_str().expect("utf-8");
    tool(
        &python,
        &[
            "probe",
            root_text,
            spec_path.to_str().expect("utf-8"),
            probe_path.to_str().expect("utf-8"),
        ],
    );
    let first = read_json(&probe_path);
    tool(
        &python,
        &[
            "probe",
            root_text,
            spec_path.to_str().expect("utf-8"),
            probe_path.to_str().expect("utf-8"),
        ],
    );
    let second = read_json(&probe_path);
    let started = std::time::Instant::now();
    let store = open(&root, Access::ReadOnly).expect("opens");
    assert_eq!(extract(store.as_ref(), "measured", 1000).expect("extracts").len(), n);
    eprintln!(
        "{n}x{dimension} cosine: ragged load {:.2}s; chromadb first count() {:.2}s, next process {:.2}s; \
         ragged extract after indexing {:.2}s",
        written.as_secs_f64(),
        first["first_count_seconds"]["measured"].as_f64().expect("seconds"),
        second["first_count_seconds"]["measured"].as_f64().expect("seconds"),
        started.elapsed().as_secs_f64()
    );
    assert_eq!(
        first["collections"]["measured"]["nearest"][&records[n / 2].id],
        json!(records[n / 2].id)
    );
}
